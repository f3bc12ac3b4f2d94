"""The NTK model zoo beyond the MLP: factorized dense MLP (Ailon & Shit 2022), a 1-D CNN and a 1-D ResNet.

Every implementation's tiles are compared with an explicit dense Jacobian product (``jax.jacrev`` on the whole
flattened parameter vector, as in tests/test_ntk.py) to 1e-10 relative in float64, for both output modes, on
rectangular, non-contiguous, unsorted, repeated index sets.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from dlogdet.core.errors import InputError  # noqa: E402
from dlogdet.ntk import NTKSource, jax_context  # noqa: E402
from dlogdet.ntk.models import CNN1D, FactorizedMLP, ResNet1D, cnn1d, factorized_mlp, resnet1d  # noqa: E402

from .test_ntk import RTOL, dense_ntk, rect_indices, rel_err  # noqa: E402

N = 7
IMPLS = ("jacobian", "ntvp", "structured", "auto")


def _fmlp():
    f, params = factorized_mlp((8, 16, 16, 3), k=5, activation="tanh", seed=1)
    return f, params, np.random.default_rng(0).standard_normal((N, 8))


def _fmlp_ratio():
    f, params = factorized_mlp((6, 12, 3), k=0.5, activation="erf", seed=4, beta=0.3)
    return f, params, np.random.default_rng(2).standard_normal((N, 6))


def _cnn(pool):
    def make():
        f, params = cnn1d((2, 3, 4), kernel=3, hidden=(5,), outputs=3, activation="tanh", seed=2, length=6,
                          pool=pool)
        return f, params, np.random.default_rng(1).standard_normal((N, 12))
    return make


def _resnet():
    f, params = resnet1d(width=3, blocks=2, kernel=3, hidden=(4,), outputs=3, activation="tanh", seed=3, length=5,
                         in_channels=2, alpha=0.7)
    return f, params, np.random.default_rng(5).standard_normal((N, 10))


MODELS = {"fmlp": _fmlp, "fmlp_ratio": _fmlp_ratio, "cnn_avg": _cnn("avg"), "cnn_flatten": _cnn("flatten"),
          "resnet": _resnet}


_REFS = {}


def reference(name):
    if name not in _REFS:
        f, params, x = MODELS[name]()
        _REFS[name] = f, params, x, dense_ntk(f, params, x)
    return _REFS[name]


# every model on every path; in the default run the structured path (the generic rules, as for any model),
# Jacobian contraction and NTK-vector products on the factorized MLP, the zoo's conv nets in the slow run
# (tests/test_ntk_structured.py runs the rules on convolutions and residual nets in the default run; "auto" is
# "structured" here: test_auto_choices)
CASES = ([(m, "structured") for m in ("fmlp", "fmlp_ratio")]
         + [pytest.param(m, "structured", marks=pytest.mark.slow) for m in ("cnn_avg", "cnn_flatten", "resnet")]
         + [("fmlp", i) for i in ("jacobian", "ntvp")]
         + [pytest.param("cnn_avg", i, marks=pytest.mark.slow) for i in ("jacobian", "ntvp")]
         + [pytest.param(m, i, marks=pytest.mark.slow) for m, i in
            [("fmlp", "auto")] + [(m, i) for m in ("fmlp_ratio", "resnet") for i in ("jacobian", "ntvp", "auto")]])


@pytest.mark.parametrize("outputs", ["full", "trace"])
@pytest.mark.parametrize("name,impl", CASES)
def test_blocks_equal_dense_jacobian_product(name, impl, outputs):
    f, params, x, (Kf, Kt) = reference(name)
    K = Kf if outputs == "full" else Kt
    src = NTKSource(f, params, x, outputs=outputs, implementation=impl)
    m = src.n
    assert m == (N * f.n_outputs if outputs == "full" else N)
    rows, cols = rect_indices(m)
    assert rel_err(src.block(rows, cols), K[np.ix_(rows, cols)]) < RTOL
    assert rel_err(src.tile(2, m - 1, 0, m // 2), K[2:m - 1, : m // 2]) < RTOL
    D = src.dense()
    assert rel_err(D, K) < RTOL
    assert np.linalg.eigvalsh(D).min() > -1e-12 * np.abs(D).max()


def test_auto_choices():
    f, params, x = _fmlp()
    assert NTKSource(f, params, x).choose(N) == "structured"
    f, params, x = _cnn("avg")()
    assert NTKSource(f, params, x).choose(N) == "structured"
    f, params, x = _resnet()
    assert NTKSource(f, params, x).choose(N) == "structured"


def test_factorized_model():
    f, params = factorized_mlp((40, 512, 512, 10), k=64, activation="relu", seed=0)
    assert f.ranks == (40, 64, 64)                       # the 40-wide input layer stays dense
    assert f.projections[0] is None and f.projections[1].shape == (512, 64)
    assert [p["W"].shape for p in params] == [(40, 512), (64, 512), (64, 10)]
    n_par = sum(p["W"].size + p["b"].size for p in params)
    assert n_par < 0.2 * (40 * 512 + 512 * 512 + 512 * 10)
    assert FactorizedMLP((40, 512, 10), 0.25).ranks == (10, 128)
    # forward pass by hand
    g, q = factorized_mlp((4, 6, 2), k=3, activation="relu", seed=5)
    x = np.random.default_rng(0).standard_normal((3, 4))
    with jax_context():
        out = np.asarray(g(q, x))
    R0, R1 = g.projections
    h = np.maximum((x @ R0) @ q[0]["W"] / np.sqrt(3) + 0.1 * q[0]["b"], 0)
    assert np.allclose(out, (h @ R1) @ q[1]["W"] / np.sqrt(3) + 0.1 * q[1]["b"], rtol=1e-13)
    # the projection is fixed by the seed, pickled with the model and part of its identity
    back = pickle.loads(pickle.dumps(g))
    assert back == g and repr(back) == repr(g) and np.array_equal(back.projections[0], R0)
    assert FactorizedMLP((4, 6, 2), 3, seed=5) == g
    assert FactorizedMLP((4, 6, 2), 3, seed=6) != g
    t = NTKSource(g, q, x).token()
    assert t == NTKSource(FactorizedMLP((4, 6, 2), 3, seed=5), q, x).token()
    assert t != NTKSource(FactorizedMLP((4, 6, 2), 3, seed=6), q, x).token()
    src = NTKSource(g, q, x)
    assert pickle.loads(pickle.dumps(src)).token() == t
    for bad in (0, -2, 1.5, 0.0, True):
        with pytest.raises(InputError, match="rank_or_ratio"):
            FactorizedMLP((4, 2), bad)
    with pytest.raises(InputError, match="params do not match FactorizedMLP.*layer 0 has W"):
        NTKSource(g, [{"W": np.ones((4, 6)), "b": np.ones(6)}, q[1]], x)


def test_cnn_model():
    f, params = cnn1d()
    assert isinstance(f, CNN1D) and f.n_outputs == 10 and f.n_features == 40
    assert [p["W"].shape for p in params] == [(16, 1, 5), (16, 16, 5), (16, 64), (64, 10)]
    x = np.random.default_rng(0).standard_normal((3, 40))
    with jax_context():
        out = np.asarray(f(params, x))
    # one convolution by hand ('SAME' padding, cross-correlation), then the rest of the network
    g, q = cnn1d((1, 2), kernel=3, hidden=(), outputs=1, activation="relu", length=5, pool="flatten")
    xs = np.arange(10.0).reshape(2, 5) / 7
    with jax_context():
        o = np.asarray(g(q, xs))
    xp = np.pad(xs, ((0, 0), (1, 1)))
    z = np.stack([sum(q[0]["W"][c, 0, t] * xp[:, t:t + 5] for t in range(3)) for c in range(2)], axis=1)
    h = np.maximum(z / np.sqrt(3) + 0.1 * q[0]["b"][None, :, None], 0).reshape(2, -1)
    assert np.allclose(o, h @ q[1]["W"] / np.sqrt(10) + 0.1 * q[1]["b"], rtol=1e-13)
    assert out.shape == (3, 10)
    assert pickle.loads(pickle.dumps(f)) == f
    with pytest.raises(InputError, match="x has 30 features but the model's input width is 40"):
        NTKSource(f, params, x[:, :30])
    with pytest.raises(InputError, match="pool"):
        CNN1D(pool="max")


def test_resnet_model():
    f, params = resnet1d()
    assert isinstance(f, ResNet1D) and f.n_outputs == 10 and f.n_features == 40 and f.n_layers == 7
    assert [p["W"].shape for p in params] == [(16, 1, 3)] + [(16, 16, 3)] * 4 + [(16, 64), (64, 10)]
    # the skip connections by hand: a ResNet with zero residual branches (alpha = 0) is the CNN of its stem
    g, q = resnet1d(width=4, blocks=2, kernel=3, hidden=(6,), outputs=2, length=8, seed=1, alpha=0.0)
    c, _ = cnn1d((1, 4), kernel=3, hidden=(6,), outputs=2, length=8)
    x = np.random.default_rng(0).standard_normal((3, 8))
    with jax_context():
        # relu is idempotent, so φ(h + 0·branch) = φ(φ(stem)) = φ(stem): the same output as the one-conv CNN
        assert np.allclose(np.asarray(g(q, x)), np.asarray(c([q[0], *q[5:]], x)), rtol=1e-13, atol=0)
        # and with the branches on, the output differs (the blocks are really used)
        g1 = ResNet1D(1, 4, 2, 3, (6,), 2, length=8, alpha=1.0)
        assert not np.allclose(np.asarray(g1(q, x)), np.asarray(g(q, x)))
    assert pickle.loads(pickle.dumps(f)) == f
    with pytest.raises(InputError, match="params do not match ResNet1D.*layer 1 has W"):
        NTKSource(g, [q[0], q[0], *q[2:]], x)
    with pytest.raises(InputError, match="blocks >= 0"):
        ResNet1D(blocks=-1)


@pytest.mark.parametrize("name", ["fmlp"] + [pytest.param(m, marks=pytest.mark.slow) for m in ("cnn_avg", "resnet")])
def test_logdet_through_engine_and_float32(name):
    """Through the engine (several tiles, both output modes) against LAPACK on the dense reference; and float32
    tiles, whose entries carry float32 rounding (≈ 1e-7 relative, 1e-5 leaves room for the sums)."""
    from dlogdet import logdet

    from .conftest import EPS64, cond_sym, logdet_tol

    f, params, x, (Kf, Kt) = reference(name)
    for outputs, K in (("full", Kf), ("trace", Kt)):
        src = NTKSource(f, params, x, outputs=outputs)
        d = 1e-6 * np.mean(np.diag(K))
        M = K + d * np.eye(src.n)
        sign, ref = np.linalg.slogdet(M)
        r = logdet(src, d=d, block_size=4)
        assert sign == 1 and r.sign == 1
        assert abs(r.logdet - ref) <= logdet_tol(src.n, cond_sym(M), EPS64)
        B = NTKSource(f, params, x, outputs=outputs, dtype=np.float32).dense()
        assert B.dtype == np.float32 and rel_err(B.astype(np.float64), K) < 1e-5


def test_neural_tangents_cross_check():
    """neural-tangents' own empirical NTK (structured derivatives) of the same MLP, where it imports: its
    releases do not import with current JAX (``from jax.core import Jaxpr``), so this usually skips here;
    benchmarks/ntk.py --nt-python runs the same comparison against a separate environment where it does."""
    nt = pytest.importorskip("neural_tangents")
    from dlogdet.ntk import mlp

    f, params = mlp((8, 16, 16, 3), seed=1)
    x = np.random.default_rng(0).standard_normal((N, 8))
    with jax_context():
        pj = jax.tree_util.tree_map(jax.numpy.asarray, params)
        for outputs, axes in (("full", ()), ("trace", (-1,))):
            K = np.asarray(nt.empirical_ntk_fn(f, trace_axes=axes, vmap_axes=0, implementation=3)(x, None, pj))
            if outputs == "full":
                K = K.transpose(0, 2, 1, 3).reshape(N * 3, N * 3)
            assert rel_err(NTKSource(f, params, x, outputs=outputs).dense(), K) < RTOL
