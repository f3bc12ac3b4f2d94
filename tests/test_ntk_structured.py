"""Structured NTK tiles of any model against a dense ``jax.jacrev`` contraction (the correctness table).

Reference: J = ``jax.jacrev`` of the model on all points with respect to the vector of all *trainable* leaves
(concatenated), K_full = J Jᵀ, K_trace[i, j] = (1/O)·Σ_o J_(i,o)·J_(j,o): one differentiation of the user's own
function, independent of the traced program, the rules and the factors. Each structured tile computes the same
inner products by another summation order, so in float64 they agree to a few eps relative to max|K|; 1e-10 leaves
room for rounding while a wrong index, factor, missing use or missing cross term moves entries by O(1). float32
tiles: float32 rounding of sums of a few hundred terms, ~1e-6 relative; 1e-4 leaves room.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from dlogdet.core.errors import InputError  # noqa: E402
from dlogdet.ntk import NTKSource, jax_context  # noqa: E402

RTOL = 1e-10
N = 5


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def reference(src: NTKSource):
    """(K_full or K_trace) of ``src``'s model by jacrev over its trainable leaves (float64)."""
    import jax.numpy as jnp

    with jax_context():
        leaves = [jnp.asarray(a, jnp.float64) if a.dtype.kind == "f" else jnp.asarray(a) for a in src._leaves]
        T = src._t_idx
        sizes = [leaves[i].size for i in T]

        def g(v):
            ls, k = list(leaves), 0
            for i, s in zip(T, sizes):
                ls[i] = v[k:k + s].reshape(leaves[i].shape)
                k += s
            return src.f(jax.tree_util.tree_unflatten(src._treedef, ls), jnp.asarray(src.x, jnp.float64)).reshape(-1)

        J = np.asarray(jax.jit(jax.jacrev(g))(jnp.concatenate([leaves[i].ravel() for i in T])))
    if src.outputs == "full":
        return J @ J.T
    Jp = J.reshape(src.n_points, -1, J.shape[1])
    return np.einsum("iop,jop->ij", Jp, Jp) / Jp.shape[1]


def rng(seed=0):
    return np.random.default_rng(seed)


# ---- models (module-level functions: picklable, and each is what a user would write) -------------------------------

def mlp_plain(p, x):
    """A user's MLP as a plain JAX function (gelu, bias added by broadcasting)."""
    h = x
    for l, layer in enumerate(p):
        h = h @ layer["w"] + layer["b"]
        if l < len(p) - 1:
            h = jax.nn.gelu(h)
    return h


def cnn2d(p, x):
    """2-D CNN: strided 'SAME' grouped convolution, a dilated convolution, global mean, dense head. x (n, 8, 8, 4)."""
    dn = ("NHWC", "HWIO", "NHWC")
    h = jax.lax.conv_general_dilated(x, p["c1"], (2, 2), "SAME", dimension_numbers=dn, feature_group_count=2)
    h = jnp_tanh(h + p["b1"])
    h = jax.lax.conv_general_dilated(h, p["c2"], (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=dn)
    return jnp_tanh(h).mean(axis=(1, 2)) @ p["w"]


def jnp_tanh(a):
    return jax.numpy.tanh(a)


def tied(p, x):
    """One weight used twice (an autoencoder's encoder W and decoder Wᵀ): cross terms between the uses."""
    h = jnp_tanh(x @ p["W"])
    return jnp_tanh(h @ p["W"].T) @ p["V"]


def sin_scale(p, x):
    """A parameter inside jnp.sin(w * x): the product meets the point (mul rule); sin follows."""
    return jax.numpy.sin(p["w"] * x) @ p["V"]


def power(p, x):
    """A parameter as an exponent, (1 + x²) ** e: ``pow`` has no rule, so e comes from the fallback."""
    return ((1.0 + x * x) ** p["e"]) @ p["V"]


def _mlp_params(sizes, seed):
    r = rng(seed)
    return [{"w": r.standard_normal((a, b)) / np.sqrt(a), "b": 0.1 * r.standard_normal(b)}
            for a, b in zip(sizes[:-1], sizes[1:])]


def case_mlp_plain(**kw):
    return NTKSource(mlp_plain, _mlp_params((4, 6, 5, 3), 1), rng(2).standard_normal((N, 4)), **kw)


def case_cnn2d(**kw):
    r = rng(3)
    p = {"c1": r.standard_normal((3, 3, 2, 4)) / 3, "b1": 0.1 * r.standard_normal(4),
         "c2": r.standard_normal((2, 2, 4, 3)) / 3, "w": r.standard_normal((3, 2))}
    return NTKSource(cnn2d, p, r.standard_normal((N, 8, 8, 4)), **kw)


def case_tied(**kw):
    r = rng(4)
    return NTKSource(tied, {"W": r.standard_normal((4, 3)), "V": r.standard_normal((4, 2))},
                     r.standard_normal((N, 4)), **kw)


def case_sin(**kw):
    r = rng(5)
    return NTKSource(sin_scale, {"w": r.standard_normal(4), "V": r.standard_normal((4, 3))},
                     r.standard_normal((N, 4)), **kw)


def case_power(**kw):
    r = rng(6)
    return NTKSource(power, {"e": 0.5 + r.random(4), "V": r.standard_normal((4, 3))}, r.standard_normal((N, 4)),
                     **kw)


def case_partial(**kw):
    """Only some leaves trainable: the first layer frozen (by a predicate on the path)."""
    return NTKSource(mlp_plain, _mlp_params((4, 6, 3), 7), rng(8).standard_normal((N, 4)),
                     trainable=lambda path: not path.startswith("[0]"), **kw)


def case_flax_mlp(**kw):
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.tanh(nn.Dense(6)(x))
            return nn.Dense(3)(nn.relu(nn.Dense(5)(x)))

    x = rng(9).standard_normal((N, 4))
    v = MLP().init(jax.random.PRNGKey(0), x[:1])
    return NTKSource.from_flax(MLP(), v, x, **kw)


def case_eqx_mlp(**kw):
    eqx = pytest.importorskip("equinox")
    model = eqx.nn.MLP(4, 3, 5, 2, activation=jax.nn.tanh, key=jax.random.PRNGKey(1))
    return NTKSource.from_equinox(model, rng(10).standard_normal((N, 4)), **kw)


def case_eqx_cnn(**kw):
    eqx = pytest.importorskip("equinox")

    class CNN(eqx.Module):
        conv: eqx.nn.Conv2d
        head: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.conv = eqx.nn.Conv2d(2, 4, 3, stride=2, padding="SAME", key=k1)
            self.head = eqx.nn.Linear(4, 3, key=k2)

        def __call__(self, x):                      # one point (C, H, W)
            return self.head(jax.numpy.tanh(self.conv(x)).mean(axis=(1, 2)))

    return NTKSource.from_equinox(CNN(jax.random.PRNGKey(2)), rng(11).standard_normal((N, 2, 6, 6)), **kw)


DEFAULT = {"mlp_plain": case_mlp_plain, "cnn2d": case_cnn2d, "tied": case_tied, "sin": case_sin,
           "power": case_power, "partial": case_partial, "flax_mlp": case_flax_mlp, "eqx_mlp": case_eqx_mlp,
           "eqx_cnn": case_eqx_cnn}


def rect(m):
    """Non-contiguous, unsorted, repeated row and column indices of different lengths."""
    return np.array([5, 0, 13, 9, 7, 2, 5]) % m, np.array([1, 12, 4, 4, 8, 3, 11, 14]) % m


# every model in both output modes; the default run takes one mode per model (the mode changes only the
# contraction, covered by both halves), the slow run the other
FULL_DEFAULT = ("mlp_plain", "tied", "flax_mlp", "eqx_cnn", "partial")
TABLE = [(m, o) if (o == "full") == (m in FULL_DEFAULT) else pytest.param(m, o, marks=pytest.mark.slow)
         for m in DEFAULT for o in ("full", "trace")]


@pytest.mark.parametrize("name,outputs", TABLE)
def test_structured_equals_jacrev(name, outputs):
    src = DEFAULT[name](outputs=outputs, implementation="structured")
    K = reference(src)
    D = src.dense()
    assert rel_err(D, K) < RTOL
    rows, cols = rect(src.n)
    assert rel_err(src.block(rows, cols), K[np.ix_(rows, cols)]) < RTOL


@pytest.mark.parametrize("name", ["cnn2d"])
def test_float32_tiles(name):
    src = DEFAULT[name](outputs="full", implementation="structured", dtype=np.float32)
    B = src.dense()
    assert B.dtype == np.float32 and rel_err(B.astype(np.float64), reference(src)) < 1e-4


def test_rules_that_served():
    """explain() names the rule of every leaf; the fallback and the held-fixed leaves say so."""
    e = case_power(outputs="trace").explain()
    rules = {leaf["path"]: leaf["rule"] for leaf in e["leaves"]}
    assert rules["params['e']"].startswith("fallback (no rule for pow)")
    assert rules["params['V']"].startswith("dot_general")
    assert e["chosen"] == "structured"
    e = case_partial(outputs="full").explain()
    r = {leaf["path"]: leaf["rule"] for leaf in e["leaves"]}
    assert r["params[0]['w']"] == r["params[0]['b']"] == "held fixed (not trainable)"
    assert r["params[1]['w']"].startswith("dot_general: factored Gram") and "bias after dot_general" in \
        r["params[1]['b']"]
    e = case_tied(outputs="full").explain()
    assert {leaf["path"]: leaf["rule"] for leaf in e["leaves"]}["params['W']"].startswith("tied: per-point gradients "
                                                                                         "of its 2 uses")
    import json

    json.dumps(e)                                                      # JSON-able as it is


def test_auto_picks_structured_and_matvec_works():
    src = case_mlp_plain(outputs="full")
    assert src.choose(N) == "structured"
    e = src.estimates(64)                      # a dense network: the Gram removes a factor of width
    assert e["structured"] < min(e["jacobian"], e["ntvp"]) / 5
    K = reference(src)
    V = rng(12).standard_normal((src.n, 3))
    assert rel_err(src.matvec(V), K @ V) < RTOL
    src = case_partial(outputs="trace")                                # matvec differentiates trainable leaves only
    assert rel_err(src.matvec(V[:src.n]), reference(src) @ V[:src.n]) < RTOL


# ---- heavier models: ResNet-18-style with BatchNorm, a transformer block ------------------------------------------

def _resnet18(width):
    nn = pytest.importorskip("flax.linen")

    class Block(nn.Module):
        features: int
        stride: int

        @nn.compact
        def __call__(self, x):
            y = nn.Conv(self.features, (3, 3), self.stride, padding="SAME", use_bias=False)(x)
            y = nn.relu(nn.BatchNorm(use_running_average=True)(y))
            y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False)(y)
            y = nn.BatchNorm(use_running_average=True)(y)
            if self.stride != 1 or x.shape[-1] != self.features:
                x = nn.BatchNorm(use_running_average=True)(
                    nn.Conv(self.features, (1, 1), self.stride, use_bias=False)(x))
            return nn.relu(x + y)

    class ResNet18(nn.Module):
        width: int
        classes: int = 3

        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.BatchNorm(use_running_average=True)(nn.Conv(self.width, (3, 3), use_bias=False)(x)))
            for stage, mult in enumerate((1, 2, 4, 8)):
                for b in range(2):
                    x = Block(self.width * mult, 2 if stage and not b else 1)(x)
            return nn.Dense(self.classes)(x.mean(axis=(1, 2)))

    return ResNet18(width)


def case_resnet18(width=2, n=3, **kw):
    model = _resnet18(width)
    x = rng(13).standard_normal((n, 32, 32, 3))
    v = model.init(jax.random.PRNGKey(0), x[:1])
    r = rng(14)                                       # non-trivial running statistics, as after training
    v = {"params": v["params"], "batch_stats": jax.tree_util.tree_map(
        lambda a: 0.2 * r.standard_normal(a.shape) + (1.0 if a.ndim and a.shape else 0.0), v["batch_stats"])}
    v["batch_stats"] = jax.tree_util.tree_map(np.abs, v["batch_stats"])
    return NTKSource.from_flax(model, v, x, **kw)


def _transformer(vocab=64, d=8, heads=2, classes=3):
    nn = pytest.importorskip("flax.linen")

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):                        # x (n, T): token ids as floats
            ids = x.astype(jax.numpy.int32)
            h = nn.Embed(vocab, d)(ids) + self.param("pos", nn.initializers.normal(0.1), (x.shape[1], d))
            h = h + nn.MultiHeadDotProductAttention(num_heads=heads)(nn.LayerNorm()(h))
            y = nn.Dense(d)(nn.gelu(nn.Dense(2 * d)(nn.LayerNorm()(h))))
            return nn.Dense(classes)((h + y).mean(axis=1))

    return Block()


def case_transformer(n=N, T=4, **kw):
    model = _transformer()
    x = rng(15).integers(0, 64, (n, T)).astype(float)
    v = model.init(jax.random.PRNGKey(1), x[:1])
    return NTKSource.from_flax(model, v, x, **kw)


@pytest.mark.slow   # 22 s per output mode; attention's products are dot_general rules, tested in the default run
@pytest.mark.parametrize("outputs", ["trace", "full"])
def test_transformer_block(outputs):
    src = case_transformer(outputs=outputs, implementation="structured")
    e = {leaf["path"]: leaf["rule"] for leaf in src.explain()["leaves"]}
    assert e["params['params']['Embed_0']['embedding']"].startswith("gather")
    assert not any(r.startswith("fallback") for r in e.values())
    assert rel_err(src.dense(), reference(src)) < RTOL


@pytest.mark.slow
@pytest.mark.parametrize("outputs", ["full", "trace"])
def test_resnet18_batchnorm(outputs):
    src = case_resnet18(outputs=outputs, implementation="structured")
    e = {leaf["path"]: leaf["rule"] for leaf in src.explain()["leaves"]}
    assert all(r == "held fixed (not trainable)" for p, r in e.items() if "batch_stats" in p)
    assert not any(r.startswith("fallback") for r in e.values())
    assert rel_err(src.dense(), reference(src)) < RTOL


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DEFAULT))
def test_float32_every_model(name):
    src = DEFAULT[name](outputs="trace", implementation="structured", dtype=np.float32)
    assert rel_err(src.dense().astype(np.float64), reference(src)) < 1e-4


# ---- bad input: a clear error before any work --------------------------------------------------------------------

def batch_mixing(p, x):
    """Normalises with the batch's statistics (what BatchNorm in training mode does)."""
    h = x @ p["W"]
    return (h - h.mean(axis=0)) / (h.std(axis=0) + 1.0)


def scaled(p, x):
    return x @ p["W"] * p["k"]


def vector_out(p, x):
    return (x @ p["W"]).sum(axis=1)


def test_bad_inputs():
    r = rng(16)
    p = {"W": r.standard_normal((4, 3))}
    x = r.standard_normal((N, 4))
    with pytest.raises(InputError, match="one vector per point.*returned shape"):
        NTKSource(vector_out, p, x)
    with pytest.raises(InputError, match="other outputs one at a time than together.*inference mode"):
        NTKSource(batch_mixing, p, x)
    with pytest.raises(InputError, match=r"params\['k'\] has dtype int64 and is marked trainable"):
        NTKSource(scaled, {"W": p["W"], "k": np.array(2)}, x, trainable={"W": True, "k": True})
    with pytest.raises(InputError, match="x must hold n >= 1 points"):
        NTKSource(mlp_plain, _mlp_params((4, 3), 0), x[0])
    with pytest.raises(InputError, match=r"failed on a batch.*shape \(3, 5\).*point shape f expects"):
        NTKSource(mlp_plain, _mlp_params((4, 3), 0), r.standard_normal((N, 5)))
    with pytest.raises(InputError, match="trainable must be a pytree of booleans with the structure of params"):
        NTKSource(mlp_plain, _mlp_params((4, 3), 0), x, trainable=[True])


def test_flax_batchnorm_in_training_mode_names_the_fix():
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(nn.BatchNorm(use_running_average=False)(nn.Dense(3)(x)))

    x = rng(17).standard_normal((N, 4))
    v = Net().init(jax.random.PRNGKey(0), x)
    with pytest.raises(InputError, match="use_running_average=True"):
        NTKSource.from_flax(Net(), v, x)


def test_primaries_in_batches_of_points(monkeypatch):
    """A memory bound of two points' passes: the backward passes run in batches of 2 points (5 = 2 + 2 + 1, a
    ragged last one), and the tile does not change."""
    from dlogdet.ntk import structured

    src = case_cnn2d(outputs="trace", implementation="structured")
    per_point = (1 + src.n_outputs) * src._structure().prog.numbers_per_point() * 8
    monkeypatch.setattr(structured, "PRIMARIES_BYTES", 2 * per_point + 1)
    assert rel_err(src.dense(), reference(src)) < RTOL
