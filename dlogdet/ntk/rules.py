"""Rules per primitive: a parameter's share of the NTK where it meets the point, from per-point factors.

At a use (:class:`~dlogdet.ntk.jaxpr.Use`) the node ``y = prim(..., u, ...)`` takes a parameter value u (class P)
and values that depend on the point. With δ_o = ∂f_o/∂y (one backward pass per output), the per-point gradient is
∂f_o/∂u = (∂y/∂u)ᵀ δ_o, the vector-Jacobian product of this one node: exact for any primitive, and for the
primitives below cheap (one small product per point). Two rules go further and never form it:

* ``dot_general`` (dense layers, einsum, attention projections) with y = a·u contracted over C and a's free
  rows r = 1…M: ⟨∂f_o(x_i)/∂u, ∂f_p(x_j)/∂u⟩ = Σ_{r,s} (a_{i,r}·a_{j,s})(δ_{i,o,r}·δ_{j,p,s}), the factored Gram
  (time N²·M²·(C + O²·F) against N·O·M·C·F + N²·O²·C·F for the gradient; it wins by about a width when M = 1);
* ``gather`` of whole rows of a table (embeddings): ∂f_o/∂u = Σ_r e_{id_r} ⊗ δ_{o,r}, so the Gram is
  Σ_{r,s} [id_{i,r} = id_{j,s}] (δ_{i,o,r}·δ_{j,p,s}) (time N²·M²·O²·D, against N²·O²·V·D for the gradient).

A convolution's per-point weight gradient is a product of its input patches and δ over the output positions
(:func:`conv_gradient`), one batched matrix product, not a transposed convolution per point (slow on CPUs).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from . import jaxpr as jp

#: Primitives with a rule. Others (control flow, custom derivative calls, ``pow``, ``max``, …) leave their
#: parameters to the fallback: NTK-vector products or Jacobian contraction restricted to those leaves.
RULES = ("dot_general", "conv_general_dilated", "gather", "add", "add_any", "sub", "mul", "div", "concatenate",
         "select_n", "dynamic_slice", "dynamic_update_slice", "pad", "reduce_sum")


def has_rule(prog: jp.Program, use: jp.Use) -> bool:
    node = prog.nodes[use.node]
    return node.name in RULES and len(node.outs) == 1


# ---- dot_general -------------------------------------------------------------------------------------------------

def dot_layout(prog: jp.Program, use: jp.Use):
    """(x_pos, x_perm, (B, M, C), out_perm, F): how to bring the point operand a to (B, M, C) (batch, free rows,
    contracted) and δ (leading output axis) to (O, B, M, F) (F: the parameter's free entries)."""
    node = prog.nodes[use.node]
    (lc, rc), (lb, rb) = jp.dot_dims(node)
    p = use.pos
    xpos = 1 - p
    xc, xb = (lc, lb) if xpos == 0 else (rc, rb)
    pc, pb = (lc, lb) if p == 0 else (rc, rb)
    xs, ps = prog.shapes[_val(node.ins[xpos])], prog.shapes[use.value]
    xfree = [a for a in range(len(xs)) if a not in xc and a not in xb]
    pfree = [a for a in range(len(ps)) if a not in pc and a not in pb]
    nb, nl = len(lb), (len(xfree) if xpos == 0 else len(pfree))
    lhs_free = list(range(nb, nb + nl))
    rhs_free = list(range(nb + nl, nb + nl + (len(pfree) if xpos == 0 else len(xfree))))
    out_x, out_p = (lhs_free, rhs_free) if xpos == 0 else (rhs_free, lhs_free)
    B = math.prod(xs[a] for a in xb)
    M = math.prod(xs[a] for a in xfree)
    C = math.prod(xs[a] for a in xc)
    F = math.prod(ps[a] for a in pfree)
    return xpos, (*xb, *xfree, *xc), (B, M, C), [*range(nb), *out_x, *out_p], F, out_p


def _val(v):
    return v if isinstance(v, int) else None


def dot_factors(prog, use, a, delta):
    """Gram factors of a dot use: A (N, M, C) from the point operand a (N, …), D (N, O, M, F) from δ (N, O, …)."""
    xpos, xperm, (B, M, C), out_perm, F, _ = dot_layout(prog, use)
    N, O = delta.shape[:2]
    A = jnp.transpose(a, (0, *(1 + q for q in xperm))).reshape(N, M, C)
    D = jnp.transpose(delta, (0, 1, *(2 + q for q in out_perm))).reshape(N, O, M, F)
    return A, D


def dot_gradient(prog, use, a, delta):
    """∂f_o/∂u for each point and output (N, O, *u.shape): Σ_r a_r ⊗ δ_{o,r} per batch entry, one batched product
    over the points (a vmap of the node's vjp per point and output runs as many small products)."""
    node = prog.nodes[use.node]
    (lc, rc), (lb, rb) = jp.dot_dims(node)
    pc, pb = (lc, lb) if use.pos == 0 else (rc, rb)
    ps = prog.shapes[use.value]
    pfree = [q for q in range(len(ps)) if q not in pc and q not in pb]
    _, xperm, (B, M, C), out_perm, F, _ = dot_layout(prog, use)
    N, O = delta.shape[:2]
    A = jnp.transpose(a, (0, *(1 + q for q in xperm))).reshape(N, B, M, C)
    D = jnp.transpose(delta, (0, 1, *(2 + q for q in out_perm))).reshape(N, O, B, M, F)
    G = jnp.einsum("nbmc,nobmf->nobcf", A, D)
    G = G.reshape(N, O, *[ps[q] for q in pb], *[ps[q] for q in pc], *[ps[q] for q in pfree])
    return jnp.transpose(G, (0, 1, *(2 + int(q) for q in np.argsort([*pb, *pc, *pfree]))))


def dot_costs(prog, use, N: int, O: int, full: bool) -> dict:
    """Estimated flops on a tile of N points: ``gram`` (None where batch axes forbid it) and ``gradient``."""
    _, _, (B, M, C), _, F, _ = dot_layout(prog, use)
    Oe = O * O if full else O
    gram = 2.0 * N * N * M * M * (C + Oe * F) if B == 1 else None
    build = 2.0 * N * O * B * M * C * F
    return {"gram": gram, "gradient": build + 2.0 * N * N * Oe * B * C * F, "build": build,
            "gram_bytes": M * (C + O * F), "gradient_bytes": O * B * C * F}


# ---- gather -----------------------------------------------------------------------------------------------------

def gather_gram_ok(prog, use) -> bool:
    node = prog.nodes[use.node]
    return use.pos == 0 and jp.row_gather(node, prog.shapes[use.value])


def gather_factors(prog, use, idx, delta):
    """Gram factors of a row gather: ids (N, M) (−1 where a row is filled, not read) and D (N, O, M, D)."""
    node = prog.nodes[use.node]
    V, Dd = prog.shapes[use.value]
    axis = jp.gather_offset_axis(node)
    table = jnp.broadcast_to(jnp.arange(V, dtype=delta.dtype)[:, None], (V, Dd))

    def ids(ix):                                                    # the rows the gather reads, by its own rule
        out = jp.bind(node, [table, ix])[0]
        return jnp.moveaxis(out, axis, -1)[..., 0].reshape(-1)

    rows = jax.vmap(ids)(idx)
    rows = jnp.where(jnp.isnan(rows), -1, rows).astype(jnp.int32)
    N, O = delta.shape[:2]
    D = jnp.moveaxis(delta, 2 + axis, -1).reshape(N, O, -1, Dd)
    return rows, D


def gather_costs(prog, use, N, O, full) -> dict:
    V, Dd = prog.shapes[use.value]
    M = prog.size(prog.nodes[use.node].outs[0]) // Dd
    Oe = O * O if full else O
    build = 2.0 * N * O * M * Dd
    return {"gram": 2.0 * N * N * M * M * (1 + Oe * Dd), "gradient": build + 2.0 * N * N * Oe * V * Dd,
            "build": build, "gram_bytes": M * (1 + O * Dd), "gradient_bytes": O * V * Dd}


# ---- convolution ---------------------------------------------------------------------------------------------------

def conv_patches_ok(prog, use) -> bool:
    node = prog.nodes[use.node]
    return node.name == "conv_general_dilated" and use.pos == 1 and jp.conv_dims(node).batch_group_count == 1


def conv_gradient(prog, use, lhs, delta):
    """∂f_o/∂W for each point and output (N, O, *W.shape): Σ over output positions of δ_o(p) ⊗ patch(p), per
    feature group, from the input patches (``jax.lax.conv_general_dilated_patches``) and δ (N, O, *y.shape)."""
    node = prog.nodes[use.node]
    c = jp.conv_dims(node)
    wshape = prog.shapes[use.value]
    window = tuple(wshape[a] for a in c.rhs_spec[2:])
    K = math.prod(window)
    g = c.feature_group_count
    cout, cin_g = wshape[c.rhs_spec[0]], wshape[c.rhs_spec[1]]
    dn = jax.lax.ConvDimensionNumbers(c.lhs_spec, c.rhs_spec, c.out_spec)

    def patches(x):                                                 # (1, …) -> (b, Cin·K, L)
        p = jax.lax.conv_general_dilated_patches(x, window, c.window_strides, c.padding, c.lhs_dilation,
                                                 c.rhs_dilation, dn, precision=jax.lax.Precision.HIGHEST)
        p = jnp.transpose(p, c.out_spec)
        return p.reshape(p.shape[0], p.shape[1], -1)

    P = jax.vmap(patches)(lhs)                                      # (N, b, Cin·K, L)
    N, b, _, L = P.shape
    O = delta.shape[1]
    P = P.reshape(N, b, g, cin_g, K, L)
    D = jnp.transpose(delta, (0, 1, *(2 + q for q in c.out_spec))).reshape(N, O, b, g, cout // g, L)
    G = jnp.einsum("nobgml,nbgikl->nogmik", D, P).reshape(N, O, cout, cin_g, *window)
    return jnp.transpose(G, (0, 1, *(2 + q for q in np.argsort(c.rhs_spec))))


def conv_costs(prog, use, N, O, full) -> dict:
    node = prog.nodes[use.node]
    P = prog.size(use.value)
    L = prog.size(node.outs[0]) // max(1, prog.shapes[node.outs[0]][jp.conv_dims(node).out_spec[1]])
    Oe = O * O if full else O
    return {"gram": None, "gradient": 2.0 * N * O * L * P + 2.0 * N * N * Oe * P, "build": 2.0 * N * O * L * P,
            "gram_bytes": 0, "gradient_bytes": O * P}


# ---- any other rule: the vector-Jacobian product of the node -----------------------------------------------------

def node_gradient(prog, use, values: dict, delta):
    """(∂y/∂u)ᵀ δ for one point and output: the node's own vjp at its operands' values (exact for any
    primitive; linear in u for most, so the point of linearisation does not matter there)."""
    node = prog.nodes[use.node]
    u = values[use.value]
    _, pull = jax.vjp(lambda w: prog.run(node, values, {use.pos: w})[0], u)
    return pull(delta)[0]


def elementwise_costs(prog, use, N, O, full) -> dict:
    y = prog.size(prog.nodes[use.node].outs[0])
    P = prog.size(use.value)
    Oe = O * O if full else O
    return {"gram": None, "gradient": 2.0 * N * O * y + 2.0 * N * N * Oe * P, "build": 2.0 * N * O * y,
            "gram_bytes": 0, "gradient_bytes": O * P}


def costs(prog, use, N, O, full) -> dict:
    """Estimated flops of a use on a tile of N points: ``gram`` (None without one), ``gradient`` (``build``, the
    per-point gradients, plus their contraction), and the per-point bytes of each."""
    name = prog.nodes[use.node].name
    if name == "dot_general":
        return dot_costs(prog, use, N, O, full)
    if name == "gather" and gather_gram_ok(prog, use):
        return gather_costs(prog, use, N, O, full)
    if conv_patches_ok(prog, use):
        return conv_costs(prog, use, N, O, full)
    return elementwise_costs(prog, use, N, O, full)


def gram_kind(prog, use) -> str | None:
    """``"dot"`` or ``"gather"`` where the use has a factored Gram, else None."""
    node = prog.nodes[use.node]
    if node.name == "dot_general" and dot_layout(prog, use)[2][0] == 1:
        return "dot"
    if node.name == "gather" and gather_gram_ok(prog, use):
        return "gather"
    return None


def feature_axes(prog, use) -> list[int] | None:
    """The axes of the node's output that index the parameter's free entries (where a bias added after the node
    lands), for dense layers and convolutions; else None."""
    node = prog.nodes[use.node]
    if node.name == "dot_general":
        return list(dot_layout(prog, use)[5])
    if node.name == "conv_general_dilated" and use.pos == 1:
        return [jp.conv_dims(node).out_spec[1]]
    return None


def describe(prog, use, mode: str) -> str:
    name = prog.nodes[use.node].name
    if mode == "gram":
        return ("dot_general: factored Gram (a_i·a_j)(δ_i·δ_j)" if name == "dot_general"
                else "gather: rows matched by index, Σ[id_i = id_j](δ_i·δ_j)")
    if conv_patches_ok(prog, use):
        return "conv_general_dilated: per-point gradient from input patches and δ"
    return f"{name}: per-point gradient (the node's vector-Jacobian product)"
