r"""Structured NTK tiles for any model ``f(params, x)``: the analysis of its traced program and the tile's maths.

K = J Jᵀ is a sum over parameter leaves, K = Σ_l J_l J_lᵀ, and J_l is the sum over the uses of leaf l (where it,
or a value computed from parameters alone, meets the point) of (∂f/∂y_u)(∂y_u/∂u)(∂u/∂θ_l). Each leaf is served
in one of four ways (:meth:`Structure.plan` picks, per tile size, by the cost model of :mod:`dlogdet.ntk.rules`):

* ``gram``: its only use is a dense product or a row gather reached from the leaf through transposes, reshapes
  and scalar factors c (a scaled permutation: inner products scale by c²), and the factored Gram is cheaper than
  the gradient: never a per-parameter quantity;
* ``bias``: its only use adds it, broadcast, after a dense product or convolution (through scalar factors and
  permutations): δ of that product, summed over the broadcast axes, times κ = c/s. Next to a ``gram`` use it only
  adds κ² to the left Gram: (a_i·a_j·c² + κ²)(δ_i·δ_j), the bias at no extra cost;
* ``gradient``: per-point gradients of every use (:mod:`dlogdet.ntk.rules`), pulled back to the leaves through
  the parameter-only part of the program by one vector-Jacobian product (tied weights: the uses' gradients add up,
  cross terms included), then contracted: time N·O·(rule) + N²·O²·P_l, memory N·O·P_l;
* ``fallback``: some use has no rule (or the leaf reaches the output without meeting the point): the leaf's share
  comes from Jacobian contraction or NTK-vector products restricted to such leaves (:class:`NTKSource`).

The per-point factors a tile caches (its primaries) are one ``vmap`` over its points of one ``jacrev`` (O backward
passes) of the program with zero perturbations added where the uses' outputs' linear chains end (δ there; δ at a
use's output follows by the vjp of the linear nodes between: a convolution, its BatchNorm scale and bias share one
δ), and the recorded point-side operands. Per-point gradients are formed group by group inside the contraction
and dropped once contracted: a tile's working set is the tile, its primaries (N·O numbers per tapped value, N per
recorded one), one group's gradients (or :data:`JOIN_BYTES` of joined ones) and a few tile-sized temporaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import jaxpr as jp
from . import rules


#: Per-point gradients are joined (along the parameter axis) into one product until they take this many bytes:
#: each product adds a tile-sized matrix to the sum, which costs as much as the product of a few dozen parameters
#: (why 64 MiB: bounded extra memory, and the biases and scales of a layer join its weights).
JOIN_BYTES = 1 << 26


#: The backward passes of the primaries run over batches of points whose passes (forward values and O cotangents
#: per point, :meth:`Program.numbers_per_point` each) take about this many bytes: a ResNet-18's 256-point tile
#: otherwise held all its points' passes at once beside the factors it keeps (3.6x the factors).
PRIMARIES_BYTES = 1 << 28


@dataclass(frozen=True)
class Merge:
    """A bias use merged into the upstream use ``up``: ∂f/∂b = κ·Σ δ_up over the axes other than ``axes``."""

    up: int
    kappa: float
    axes: tuple


@dataclass(frozen=True)
class Plan:
    """How a tile of a given size is computed: the uses served by a Gram (use index -> c²) and the rest."""

    gram: tuple            # ((use, c2, kappa2), ...)
    gradient: tuple        # uses whose per-point gradients are pulled back to the leaves
    direct: tuple          # ((bias use, Merge), ...) with upstream not in gram
    grad_leaves: tuple     # leaves (positions in the trainable list) served by the pullback
    groups: tuple          # ((uses, leaves), ...): gradient uses joined by the leaves they share
    taps: tuple            # value ids perturbed for δ
    records: tuple         # value ids recorded per point
    derived: tuple = ()    # ((value, tap, nodes), ...): δ at value from δ at tap, back through linear nodes


class Structure:
    """The analysis of one model (module docstring), independent of the tile."""

    def __init__(self, fn, tvals, nvals, x1, n_outputs: int):
        self.prog = prog = jp.trace(fn, tvals, nvals, x1)
        self.O = int(n_outputs)
        self.uses = uses = prog.uses()
        self.use_leaves = [prog.leaves_of(u.value) for u in uses]
        self.n_leaves = len(tvals)
        self.no_rule: dict[int, str] = {}
        for u, ls in zip(uses, self.use_leaves):
            if not rules.has_rule(prog, u):
                for l in ls:
                    self.no_rule.setdefault(l, prog.nodes[u.node].name)
        for v in prog.outputs_of_params():
            for l in prog.leaves_of(v):
                self.no_rule.setdefault(l, "the output itself")
        self.fallback = tuple(sorted(self.no_rule))
        fb = set(self.fallback)
        self.served = [k for k, u in enumerate(uses) if rules.has_rule(prog, u) and self.use_leaves[k] - fb]
        self.leaf_uses = {l: [k for k in range(len(uses)) if l in self.use_leaves[k]] for l in range(len(tvals))}
        self.chain: dict[int, float] = {}          # use -> c of its leaf's scaled-permutation chain
        for k in self.served:
            if rules.gram_kind(prog, uses[k]) and len(self.use_leaves[k]) == 1:
                (l,) = self.use_leaves[k]
                if self.leaf_uses[l] == [k]:
                    c = _chain_scale(prog, prog.t_ids[l], uses[k].value)
                    if c is not None:
                        self.chain[k] = c
        self.merged: dict[int, Merge] = {}
        for k in self.served:
            m = self._merge(k)
            if m is not None:
                self.merged[k] = m

    # ---- analysis ------------------------------------------------------------------------------------------------

    def _merge(self, k: int) -> Merge | None:
        """A :class:`Merge` if use k adds a bias leaf (its only use) right after a dense product or convolution."""
        prog, use = self.prog, self.uses[k]
        node = prog.nodes[use.node]
        if node.name not in ("add", "add_any", "sub") or len(self.use_leaves[k]) != 1 or len(node.ins) != 2:
            return None
        (l,) = self.use_leaves[k]
        if self.leaf_uses[l] != [k] or l in self.no_rule:
            return None
        z = node.ins[1 - use.pos]
        if not isinstance(z, int) or prog.kinds[z] != "X" or prog.shapes[z] != prog.shapes[node.outs[0]]:
            return None
        steps, v = [], z
        while True:                                   # back from z to the output of a dense product or conv
            if len(prog.consumers.get(v, [])) != 1:    # δ there must be δ of the sum, rescaled
                return None
            n = prog.producer.get(v)
            if n is None:
                return None
            up = [j for j in self.served if self.uses[j].node == n and j not in self.merged]
            if up:
                break
            src = [p for p, a in enumerate(prog.nodes[n].ins) if isinstance(a, int) and prog.kinds[a] == "X"]
            if len(src) != 1 or not jp.chain_step(prog, prog.nodes[n], prog.nodes[n].ins[src[0]]):
                return None
            steps.append((n, src[0]))
            v = prog.nodes[n].ins[src[0]]
        j = up[0]
        axes = rules.feature_axes(prog, self.uses[j])
        if axes is None or len(up) != 1:
            return None
        return self._encode(k, j, v, steps[::-1], axes)

    def _encode(self, k, j, y, steps, axes) -> Merge | None:
        """Check, on index-encoded values, that bias entry b lands exactly where the upstream output's feature
        index is b, and read off the scalar factors: κ = ±c/s."""
        prog, use = self.prog, self.uses[k]
        node = prog.nodes[use.node]
        yshape = prog.shapes[y]
        F = [yshape[a] for a in axes]
        pos = np.zeros(yshape)
        grid = np.indices(yshape)
        flat = np.ravel_multi_index([grid[a] for a in axes], F) + 1.0 if F else np.ones(yshape)
        pos[...] = flat

        (l,) = self.use_leaves[k]
        leaf = prog.t_ids[l]
        chain = _bias_chain(prog, leaf, use.value)
        n_b = prog.size(leaf)
        if chain is None or n_b != math.prod(F):
            return None
        dt = prog.dtypes[y]
        s = _run_chain(prog, steps, np.ones(yshape, dt))
        zpos = _run_chain(prog, steps, pos.astype(dt))
        c = _run_chain(prog, chain, np.ones(prog.shapes[leaf], dt))
        enc = _run_chain(prog, chain, (np.arange(n_b, dtype=dt) + 1).reshape(prog.shapes[leaf]))
        s0, c0 = float(s.flat[0]), float(c.flat[0])
        if s0 == 0 or c0 == 0 or not (np.all(s == s0) and np.all(c == c0)):
            return None
        if not np.allclose(np.broadcast_to(enc / c0, zpos.shape), zpos / s0, rtol=1e-9, atol=0):  # small integers
            return None
        sign = -1.0 if node.name == "sub" and use.pos == 1 else 1.0
        return Merge(j, sign * c0 / s0, tuple(axes))

    # ---- plans ---------------------------------------------------------------------------------------------------

    def plan(self, N: int, full: bool) -> Plan:
        """The cheapest way (rules' cost model) to serve each leaf on a tile of N points."""
        prog, uses = self.prog, self.uses
        gram = {}
        for k, c in self.chain.items():
            cost = rules.costs(prog, uses[k], N, self.O, full)
            if cost["gram"] is not None and cost["gram"] <= cost["gradient"]:
                gram[k] = c * c
        direct, kappa2 = [], {k: 0.0 for k in gram}
        for k, m in self.merged.items():
            if m.up in gram:
                kappa2[m.up] += m.kappa ** 2
            else:
                direct.append((k, m))
        gradient = tuple(k for k in self.served if k not in gram and k not in self.merged)
        fixed = set(self.fallback) | {l for k in gram for l in self.use_leaves[k]}
        fixed |= {l for k in self.merged for l in self.use_leaves[k]}
        grad_leaves = tuple(sorted({l for k in gradient for l in self.use_leaves[k]} - fixed))
        wanted = sorted({prog.nodes[uses[k].node].outs[0] for k in (*gram, *gradient)})
        derived = tuple((v, *_linear_path(prog, v)) for v in wanted)
        taps = sorted({t for _, t, _ in derived})
        derived = tuple(d for d in derived if d[2])
        records = set()
        for k in (*gram, *gradient):
            node = prog.nodes[uses[k].node]
            if k in gram or rules.conv_patches_ok(prog, uses[k]) or node.name == "dot_general":
                records.add(node.ins[1 - uses[k].pos])
            else:
                records.update(a for a in node.ins if isinstance(a, int) and prog.kinds[a] == "X")
        return Plan(tuple((k, gram[k], kappa2[k]) for k in sorted(gram)), gradient, tuple(direct), grad_leaves,
                    _groups(gradient, {k: self.use_leaves[k] & set(grad_leaves) for k in gradient}), tuple(taps),
                    tuple(sorted(records)), derived)

    # ---- the tile ------------------------------------------------------------------------------------------------

    def primaries(self, plan: Plan):
        """``fn(tvals, nvals, x) -> (delta, rec)``: the per-point factors a tile caches for its points x (N, …):
        δ = ∂f/∂y at every tapped value (N, O, *y.shape), one ``jacrev`` (O backward passes) per point, and the
        recorded point-side operands (N, *shape)."""
        prog = self.prog

        def fn(tvals, nvals, x):
            static = prog.static(tvals, nvals)
            zeros = {v: jnp.zeros(prog.shapes[v], prog.dtypes[v]) for v in plan.taps}

            def point(xi):
                def run(eps):
                    outs, rec = prog.pointwise(static, xi[None], eps, plan.records)
                    return outs[0][0], rec
                return jax.jacrev(run, has_aux=True)(zeros)

            itemsize = np.dtype(prog.dtypes[prog.x_id]).itemsize
            batch = max(1, PRIMARIES_BYTES // ((1 + self.O) * prog.numbers_per_point() * itemsize))
            if batch >= x.shape[0]:
                return jax.vmap(point)(x)
            return jax.lax.map(point, x, batch_size=batch)       # vmap within batches of points, in turn

        return fn

    def contract(self, plan: Plan, full: bool, same: bool):
        """``fn(tvals, nvals, pr, pc) -> K`` from the primaries of the row and column points: (N_r, O, N_c, O) or
        (N_r, N_c). Per-point gradients are formed group by group (the uses that share leaves) and contracted at
        once, so that only one group's gradients live at a time; ``same``: the rows' and columns' points are the
        same, each gradient is formed once."""
        O = self.O

        def dot(Gr, Gc):
            nr, nc = Gr.shape[0], Gc.shape[0]
            if full:
                return (Gr.reshape(nr * O, -1) @ Gc.reshape(nc * O, -1).T).reshape(nr, O, nc, O)
            return Gr.reshape(nr, -1) @ Gc.reshape(nc, -1).T / O

        def fn(tvals, nvals, pr, pc):
            nr, nc = jax.tree_util.tree_leaves(pr)[0].shape[0], jax.tree_util.tree_leaves(pc)[0].shape[0]
            K = jnp.zeros((nr, O, nc, O) if full else (nr, nc), tvals[0].dtype)
            static = self.prog.static(tvals, nvals)
            pr, pc = _Deltas(self.prog, plan, static, pr), (None if same else _Deltas(self.prog, plan, static, pc))
            for k, c2, k2 in plan.gram:
                dense = self.prog.nodes[self.uses[k].node].name == "dot_general"
                fr = self._gram_factors(k, pr)
                K = K + _gram(*fr, *(fr if same else self._gram_factors(k, pc)), dense, c2, k2, full)
            batch = []                                    # gradients joined into fewer, wider products

            def flush(K):
                if batch:
                    a = jnp.concatenate([g for g, _ in batch], axis=2) if len(batch) > 1 else batch[0][0]
                    b = a if same else (jnp.concatenate([g for _, g in batch], axis=2) if len(batch) > 1
                                        else batch[0][1])
                    K = K + dot(a, b)
                    batch.clear()
                return K

            def add(K, a, b):
                batch.append((a, b))
                if sum(g.size for g, _ in batch) * a.dtype.itemsize >= JOIN_BYTES:
                    K = flush(K)
                return K

            for group in plan.groups:
                Gr = self._group_gradients(group, tvals, nvals, static, pr)
                Gc = Gr if same else self._group_gradients(group, tvals, nvals, static, pc)
                for g, h in zip(Gr, Gc):
                    K = add(K, g, h)
            for k, m in plan.direct:
                g = self._direct(k, m, pr)
                K = add(K, g, g if same else self._direct(k, m, pc))
            return flush(K)

        return fn

    def _gram_factors(self, k, prim):
        node = self.prog.nodes[self.uses[k].node]
        operand, d = prim.rec[node.ins[1 - self.uses[k].pos]], prim.delta(node.outs[0])
        if node.name == "dot_general":
            return rules.dot_factors(self.prog, self.uses[k], operand, d)
        return rules.gather_factors(self.prog, self.uses[k], operand, d)

    def _direct(self, k, m, prim):
        """A bias's per-point gradient from δ of the node it follows: κ·Σ over the non-feature axes (N, O, P_b)."""
        d = prim.delta(self.prog.nodes[self.uses[m.up].node].outs[0])
        rest = [2 + a for a in range(d.ndim - 2) if a not in m.axes]
        d = jnp.transpose(d, (0, 1, *rest, *(2 + a for a in m.axes)))
        return m.kappa * d.reshape(*d.shape[:2], -1, self.prog.size(self.uses[k].value)).sum(axis=2)

    def _group_gradients(self, group, tvals, nvals, static, prim) -> list:
        """Per-point gradients of a group's uses, pulled back to the group's leaves: [(N, O, P_l)]."""
        prog, uses = self.prog, self.uses
        ks, leaves = group
        rec = prim.rec
        G = []
        for k in ks:
            use, node = uses[k], prog.nodes[uses[k].node]
            d = prim.delta(node.outs[0])
            if rules.conv_patches_ok(prog, use):
                G.append(rules.conv_gradient(prog, use, rec[node.ins[0]], d))
                continue
            if node.name == "dot_general":
                G.append(rules.dot_gradient(prog, use, rec[node.ins[1 - use.pos]], d))
                continue
            xs = {a: rec[a] for a in node.ins if isinstance(a, int) and prog.kinds[a] == "X"}
            fixed = {a: static[a] for a in node.ins if isinstance(a, int) and prog.kinds[a] != "X"}

            def one(xv, dv, use=use, fixed=fixed):
                return jax.vmap(lambda do: rules.node_gradient(prog, use, {**fixed, **xv}, do))(dv)

            G.append(jax.vmap(one)(xs, d))
        if len(ks) == 1 and len(leaves) == 1 and uses[ks[0]].value == prog.t_ids[leaves[0]]:
            out = G                                           # the use is the leaf itself: nothing to pull back
        else:
            def h(tg):
                t = list(tvals)
                for l, v in zip(leaves, tg):
                    t[l] = v
                env = prog.static(t, nvals)
                return [env[uses[k].value] for k in ks]

            _, pull = jax.vjp(h, [tvals[l] for l in leaves])
            out = jax.vmap(jax.vmap(lambda *g: pull(list(g))[0]))(*G)
        return [g.reshape(*g.shape[:2], -1) for g in out]


#: Nodes linear in their one point-side operand (the others parameters or constants): δ before them follows from
#: δ after them by their vector-Jacobian product, without the point's values.
LINEAR = {"add", "add_any", "sub", "mul", "neg", "convert_element_type", "reshape", "transpose", "squeeze",
          "expand_dims", "copy", "copy_p", "broadcast_in_dim", "reduce_sum"}


def _linear_path(prog, v) -> tuple:
    """(tap, nodes): follow v through single consumers that are linear in it (:data:`LINEAR`; ``div`` with v the
    numerator) to the value whose δ gives v's; nodes in program order."""
    nodes = []
    while True:
        cons = prog.consumers.get(v, [])
        if len(cons) != 1 or cons[0][0] < 0:
            return v, tuple(nodes)
        n, pos = cons[0]
        node = prog.nodes[n]
        others = [a for p, a in enumerate(node.ins) if p != pos]
        if any(isinstance(a, int) and prog.kinds[a] == "X" for a in others) or a_repeat(node, v):
            return v, tuple(nodes)
        if not (node.name in LINEAR or (node.name == "div" and pos == 0)) or len(node.outs) != 1:
            return v, tuple(nodes)
        if not jp._inexact(prog.dtypes[node.outs[0]]):
            return v, tuple(nodes)
        nodes.append(n)
        v = node.outs[0]


def a_repeat(node, v) -> bool:
    return sum(1 for a in node.ins if a == v and isinstance(a, int)) > 1


class _Deltas:
    """The primaries of a tile's points, with δ at derived values computed on demand (per point and output, by
    the vector-Jacobian product of the linear nodes between the value and its tap)."""

    def __init__(self, prog, plan, static, prim):
        self.prog, self.static = prog, static
        self.taps, self.rec = prim
        self.paths = {v: (t, nodes) for v, t, nodes in plan.derived}

    def delta(self, v):
        if v not in self.paths:
            return self.taps[v]
        t, nodes = self.paths[v]
        prog, static = self.prog, self.static

        def forward(y):
            env = dict(static)
            env[v] = y
            for n in nodes:
                node = prog.nodes[n]
                env[node.outs[0]] = prog.run(node, env)[0]
            return env[t]

        _, pull = jax.vjp(forward, jnp.zeros(prog.shapes[v], prog.dtypes[v]))
        return jax.vmap(jax.vmap(lambda d: pull(d)[0]))(self.taps[t])


def _groups(ks, leaves_of) -> tuple:
    """Connected components of uses that share leaves: ((uses, leaves), ...), in program order."""
    parent = {k: k for k in ks}

    def root(k):
        while parent[k] != k:
            k = parent[k]
        return k

    owner = {}
    for k in ks:
        for l in leaves_of[k]:
            if l in owner:
                parent[root(k)] = root(owner[l])
            else:
                owner[l] = k
    comps: dict = {}
    for k in ks:
        comps.setdefault(root(k), []).append(k)
    return tuple((tuple(c), tuple(sorted(set().union(*(leaves_of[k] for k in c))))) for c in comps.values())


def _gram(Lr, Dr, Lc, Dc, dense: bool, c2: float, k2: float, full: bool):
    """Σ_{r,s} (c²·left(r, s) + κ²) ⊙ (δ_r·δ_s) over the M rows per point of both sides."""
    nr, O, M, F = Dr.shape
    nc = Dc.shape[0]

    def left(r, s):
        if dense:
            return c2 * (Lr[:, r] @ Lc[:, s].T) + k2
        a, b = Lr[:, r][:, None], Lc[:, s][None, :]
        return c2 * ((a == b) & (a >= 0)).astype(Dr.dtype) + k2

    def right(r, s):
        if full:
            return (Dr[:, :, r].reshape(nr * O, F) @ Dc[:, :, s].reshape(nc * O, F).T).reshape(nr, O, nc, O)
        return Dr[:, :, r].reshape(nr, O * F) @ Dc[:, :, s].reshape(nc, O * F).T / O

    def term(r, s):
        L = left(r, s)
        return L[:, None, :, None] * right(r, s) if full else L * right(r, s)

    if M == 1:
        return term(0, 0)

    def body(q, acc):
        return acc + term(q // M, q % M)

    shape = (nr, O, nc, O) if full else (nr, nc)
    return jax.lax.fori_loop(0, M * M, body, jnp.zeros(shape, Dr.dtype))


def _chain_scale(prog: jp.Program, leaf: int, value: int) -> float | None:
    """c if ``value`` = c·(a permutation of the leaf) by single-consumer chain steps, else None."""
    c, v = 1.0, value
    while v != leaf:
        n = prog.producer.get(v)
        if n is None:
            return None
        node = prog.nodes[n]
        src = [a for a in node.ins if isinstance(a, int) and prog.kinds[a] == "P"]
        if len(src) != 1 or not jp.chain_step(prog, node, src[0]) or len(prog.consumers.get(src[0], [])) != 1:
            return None
        if node.name == "neg":
            c = -c
        elif node.name in jp.SCALING:
            s = jp.literal_scalar(node.ins[1] if node.ins[0] == src[0] else node.ins[0])
            c = c * s if node.name == "mul" else c / s
        v = src[0]
    return c


def _bias_chain(prog: jp.Program, leaf: int, value: int) -> list | None:
    """The nodes from a bias leaf to its use (permuting steps, scalar factors and broadcasts), in order."""
    steps, v = [], value
    while v != leaf:
        n = prog.producer.get(v)
        if n is None:
            return None
        node = prog.nodes[n]
        src = [p for p, a in enumerate(node.ins) if isinstance(a, int) and prog.kinds[a] == "P"]
        if len(src) != 1 or len(prog.consumers.get(node.ins[src[0]], [])) != 1:
            return None
        a = node.ins[src[0]]
        if not (node.name == "broadcast_in_dim" and len(node.ins) == 1) and not jp.chain_step(prog, node, a):
            return None
        steps.append((n, src[0]))
        v = a
    return steps[::-1]


def _run_chain(prog, steps, a):
    for n, p in steps:
        a = np.asarray(prog.run(prog.nodes[n], {}, {p: a})[0])
    return a

