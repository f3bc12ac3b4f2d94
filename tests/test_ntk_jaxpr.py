"""One test per primitive of the structured NTK (dlogdet/ntk/jaxpr.py reads JAX's traced programs; rules.py applies
the rules): a JAX upgrade that changes what we read breaks these, loudly, and nothing else.

Each rule is checked against the per-point gradient taken by ``jax.vjp`` of the same primitive (an independent
derivative): a Gram factorisation against the inner products of those gradients, a gradient rule against them
directly, to 1e-12 relative in float64 (sums of a few dozen products).
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from dlogdet.ntk import NTKSource, jax_context  # noqa: E402
from dlogdet.ntk import jaxpr as jp  # noqa: E402
from dlogdet.ntk import rules  # noqa: E402
from dlogdet.ntk.structured import Structure, _chain_scale  # noqa: E402

from .test_ntk_structured import reference, rel_err  # noqa: E402

TOL = 1e-12


@pytest.fixture(autouse=True)
def x64():
    with jax_context():
        yield


def program(f, params, x1):
    """The program of f(params, x1) with every leaf of params trainable, and its only use."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    prog = jp.trace(lambda t, n, x: f(jax.tree_util.tree_unflatten(treedef, t), x), leaves, [], x1)
    return prog


def only_use(prog, name):
    uses = [u for u in prog.uses() if prog.nodes[u.node].name == name]
    assert len(uses) == 1, [prog.nodes[u.node].name for u in prog.uses()]
    return uses[0]


def per_point_grads(prog, use, xs, deltas):
    """∂f/∂u by jax.vjp of the node, for each point (its recorded operands) and cotangent."""
    node = prog.nodes[use.node]
    out = []
    for x, d in zip(xs, deltas):
        vals = {node.ins[1 - use.pos]: x, use.value: jnp.zeros(prog.shapes[use.value])}
        out.append(np.stack([np.asarray(rules.node_gradient(prog, use, vals, do)) for do in d]))
    return np.stack(out)                                        # (N, O, *u.shape)


def gram_from_gradients(G):
    G = G.reshape(G.shape[0] * G.shape[1], -1)
    return G @ G.T


def test_trace_classifies_and_inlines():
    def f(p, x):
        w = p["W"].T * 2.0                                     # a value of parameters only: class P
        h = jax.jit(lambda a, b: a @ b)(x, w)                  # a jit call: inlined, the use found inside
        k = jnp.argmax(p["b"])                                 # an integer computed from parameters: no derivative
        return jax.nn.relu(h + p["b"][k]) + jnp.ones(3)        # custom_jvp (relu) stays one node
    p = {"W": np.ones((3, 4)), "b": np.arange(3.0)}
    prog = program(f, p, np.ones((1, 4)))
    names = [n.name for n in prog.nodes]
    assert "jit" not in names and "pjit" not in names and "custom_jvp_call" in names
    uses = {prog.nodes[u.node].name for u in prog.uses()}
    assert uses == {"dot_general", "add"}
    assert [prog.kinds[v] for v in prog.t_ids] == ["P", "P"] and prog.kinds[prog.x_id] == "X"
    argmax = [n for n in prog.nodes if n.name == "argmax"][0]
    assert prog.kinds[argmax.outs[0]] == "C"
    dot = only_use(prog, "dot_general")
    assert _chain_scale(prog, prog.t_ids[0], dot.value) == 2.0        # W.T * 2: a scaled permutation
    assert prog.numbers_per_point() > 0


@pytest.mark.parametrize("dims,xshape,wshape", [
    ((((1,), (0,)), ((), ())), (1, 5), (5, 4)),              # dense: x @ W
    ((((1,), (1,)), ((), ())), (1, 5), (4, 5)),              # x @ W.T (Equinox's layout)
    ((((2,), (0,)), ((), ())), (1, 3, 5), (5, 2, 3)),        # per token, free axes (heads, dim) on W
    ((((1, 2), (1, 0)), ((), ())), (1, 5, 2), (2, 5, 3)),    # two contracting axes
])
@pytest.mark.parametrize("side", [1, 0])
def test_dot_general(dims, xshape, wshape, side):
    r = np.random.default_rng(0)
    (lc, rc), _ = dims
    if side == 0:                                            # the parameter on the left: swap the roles
        dims = (((rc, lc), ((), ())))

    def f(p, x):
        a, b = (x, p) if side == 1 else (p, x)
        return jax.lax.dot_general(a, b, dims).reshape(1, -1)

    prog = program(f, jnp.asarray(r.standard_normal(wshape)), jnp.ones(xshape))
    use = only_use(prog, "dot_general")
    assert rules.gram_kind(prog, use) == "dot"
    y = prog.shapes[prog.nodes[use.node].outs[0]]
    xs = r.standard_normal((3, *xshape))
    ds = r.standard_normal((3, 2, *y))
    A, D = rules.dot_factors(prog, use, jnp.asarray(xs), jnp.asarray(ds))
    G = per_point_grads(prog, use, xs, ds)
    want = gram_from_gradients(G).reshape(3, 2, 3, 2)
    got = np.einsum("irc,jsc,iorf,jpsf->iojp", A, A, D, D)
    assert rel_err(got, want) < TOL


def test_dot_general_with_batch_axes_has_no_gram():
    def f(p, x):                                              # per-head weights, heads a batch axis of both
        return jnp.einsum("thd,hde->the", x, p).reshape(1, -1)
    prog = program(f, jnp.ones((2, 3, 4)), jnp.ones((5, 2, 3)))
    assert rules.gram_kind(prog, only_use(prog, "dot_general")) is None


@pytest.mark.parametrize("case", [
    dict(xshape=(1, 7, 7, 4), wshape=(3, 3, 2, 6), strides=(2, 2), padding="SAME", dn=("NHWC", "HWIO", "NHWC"),
         groups=2),
    dict(xshape=(1, 4, 9, 8), wshape=(5, 4, 2, 3), strides=(1, 2), padding="VALID", dn=("NCHW", "OIHW", "NCHW"),
         rhs_dilation=(2, 1)),
    dict(xshape=(1, 3, 11), wshape=(4, 3, 3), strides=(1,), padding=((2, 1),), dn=("NCH", "OIH", "NCH"),
         lhs_dilation=(2,)),
    dict(xshape=(1, 10, 6), wshape=(3, 2, 6), strides=(3,), padding="SAME", dn=("NWC", "WIO", "NWC"), groups=3),
])
def test_conv_general_dilated(case):
    r = np.random.default_rng(1)

    def f(p, x):
        y = jax.lax.conv_general_dilated(x, p, case["strides"], case["padding"], case.get("lhs_dilation"),
                                         case.get("rhs_dilation"), case["dn"],
                                         feature_group_count=case.get("groups", 1))
        return y.reshape(1, -1)

    prog = program(f, jnp.asarray(r.standard_normal(case["wshape"])), jnp.ones(case["xshape"]))
    use = only_use(prog, "conv_general_dilated")
    assert rules.conv_patches_ok(prog, use)
    y = prog.shapes[prog.nodes[use.node].outs[0]]
    xs = r.standard_normal((2, *case["xshape"]))
    ds = r.standard_normal((2, 3, *y))
    G = np.asarray(rules.conv_gradient(prog, use, jnp.asarray(xs), jnp.asarray(ds)))
    assert rel_err(G, per_point_grads(prog, use, xs, ds)) < TOL


@pytest.mark.parametrize("mode", ["clip", "fill"])
def test_gather_rows(mode):
    r = np.random.default_rng(2)

    def f(p, x):
        return p.at[x.astype(jnp.int32)].get(mode=mode).reshape(1, -1)

    prog = program(f, jnp.asarray(r.standard_normal((6, 3))), jnp.ones((1, 4)))
    use = only_use(prog, "gather")
    assert rules.gram_kind(prog, use) == "gather"
    y = prog.shapes[prog.nodes[use.node].outs[0]]
    ids = np.array([[[0, 5, 2, 7]], [[2, 2, 1, 0]], [[3, -9, 5, 4]]])      # 7 and -9: out of bounds
    node = prog.nodes[use.node]
    xs = []                                                  # the gather's own index operand, per point
    for i in ids:
        env = prog.static([jnp.zeros((6, 3))], [])
        _, rec = prog.pointwise(env, jnp.asarray(i, jnp.float64), record=[node.ins[1]])
        xs.append(np.asarray(rec[node.ins[1]]))
    xs = np.stack(xs)
    ds = r.standard_normal((3, 2, *y))
    rows, D = rules.gather_factors(prog, use, jnp.asarray(xs), jnp.asarray(ds))
    rows, D = np.asarray(rows), np.asarray(D)
    if mode == "fill":
        assert rows[0, 3] == -1 and rows[2, 1] == -1
    else:
        assert rows[0, 3] == 5 and rows[2, 1] == 0
    G = per_point_grads(prog, use, xs, ds)
    same = (rows[:, None, :, None] == rows[None, :, None, :]) & (rows[:, None, :, None] >= 0)   # (i, j, r, s)
    got = np.einsum("ijrs,iorf,jpsf->iojp", same, D, D)
    assert rel_err(got, gram_from_gradients(G).reshape(3, 2, 3, 2)) < TOL


@pytest.mark.parametrize("name,f", [
    ("mul", lambda p, x: (jnp.tanh(x) * p).reshape(1, -1)),        # a scale, broadcast over the point axis
    ("add", lambda p, x: (x + p[None, :]).reshape(1, -1)),          # a bias, broadcast
    ("sub", lambda p, x: (p - x).reshape(1, -1)),
    ("div", lambda p, x: (x / p).reshape(1, -1)),                   # nonlinear in p: the vjp at its value
    ("concatenate", lambda p, x: jnp.concatenate([x, p[None, :]], axis=1)),
])
def test_elementwise(name, f):
    r = np.random.default_rng(3)
    p = jnp.asarray(1.5 + r.random(4))
    prog = program(f, p, jnp.ones((1, 4)))
    use = only_use(prog, name)
    node = prog.nodes[use.node]
    static = prog.static([p], [])
    xs = r.standard_normal((2, 1, 4))
    for x in xs:
        _, rec = prog.pointwise(static, jnp.asarray(x), record=[a for a in node.ins if isinstance(a, int)
                                                                and prog.kinds[a] == "X"])
        d = jnp.asarray(r.standard_normal(prog.shapes[node.outs[0]]))
        got = rules.node_gradient(prog, use, {**static, **rec}, d)
        u0 = static[use.value]
        want = jax.vjp(lambda u: prog.run(node, {**static, **rec}, {use.pos: u})[0], u0)[1](d)[0]
        # and the whole model's derivative with respect to p, by jax.vjp of f itself
        full = jax.vjp(lambda q: f(q, jnp.asarray(x)), p)[1](d.reshape(1, -1) if d.ndim != 2 else d)[0]
        assert rel_err(np.asarray(got), np.asarray(want)) < TOL
        if prog.shapes[use.value] == p.shape:
            assert rel_err(np.asarray(got), np.asarray(full)) < TOL


def test_bias_merges_with_scale_and_sign():
    """z = (h·W)/2 − 0.3·b: the bias joins the dense Gram with κ = −0.3/(1/2)."""
    def f(p, x):
        return jnp.tanh(x @ p["W"] / 2.0 - 0.3 * p["b"])
    s = Structure(lambda t, n, x: f({"W": t[1], "b": t[0]}, x), [jnp.ones(4), jnp.ones((3, 4))], [],
                  jnp.ones((1, 3)), 4)
    assert len(s.merged) == 1
    (m,) = s.merged.values()
    assert m.kappa == pytest.approx(-0.6)


def model_seq(p, x):
    """Tokens through an embedding and a dense layer per token (several rows per point): both Gram kinds."""
    h = p["E"][x.astype(jnp.int32)]                       # (n, T, D)
    h = jnp.tanh(h @ p["W"] + p["b"])
    return h.mean(axis=1) @ p["V"]


def model_scan(p, x):
    """A loop over layers (lax.scan): no rule for scan, so its weights come from the fallback."""
    def step(h, w):
        return jnp.tanh(h @ w), None
    h, _ = jax.lax.scan(step, x, p["Ws"])
    return h @ p["V"]


@pytest.mark.parametrize("force", ["gram", "gradient"])
def test_forced_plans_agree(force, monkeypatch):
    """Every use served by its Gram where it has one, then every use by per-point gradients: the same tile."""
    real = rules.costs

    def forced(*a, **k):
        c = dict(real(*a, **k))
        if c["gram"] is not None:
            c["gram"], c["gradient"] = (0.0, 1.0) if force == "gram" else (1.0, 0.0)
        return c

    monkeypatch.setattr(rules, "costs", forced)
    r = np.random.default_rng(4)
    p = {"E": r.standard_normal((9, 3)), "W": r.standard_normal((3, 4)), "b": r.standard_normal(4),
         "V": r.standard_normal((4, 2))}
    src = NTKSource(model_seq, p, r.integers(0, 9, (4, 3)).astype(float), implementation="structured")
    plan = src._structure().plan(4, True)
    assert len(plan.gram) == (3 if force == "gram" else 0)
    assert rel_err(src.dense(), reference(src)) < 1e-10


def test_scan_falls_back_exactly():
    r = np.random.default_rng(5)
    p = {"Ws": r.standard_normal((2, 3, 3)) / 2, "V": r.standard_normal((3, 2))}
    src = NTKSource(model_scan, p, r.standard_normal((4, 3)), implementation="structured")
    rules_ = {e["path"]: e["rule"] for e in src.explain()["leaves"]}
    assert rules_["params['Ws']"].startswith("fallback (no rule for scan)")
    assert rules_["params['V']"].startswith("dot_general")
    assert rel_err(src.dense(), reference(src)) < 1e-10
