"""Empirical NTK tiles (dlogdet.ntk) against an explicit dense Jacobian product.

Reference: J = ``jax.jacrev`` of f with respect to the whole flattened parameter vector
(``jax.flatten_util.ravel_pytree``) on all points, K_full = J Jᵀ, K_trace[i, j] = (1/O)·Σ_o J_(i,o)·J_(j,o). Each
implementation computes the same inner products by another summation order, so in float64 they agree to a few
eps relative to max|K| (an inner product of length P = 467 errs by ≲ √P·eps·‖a‖‖b‖ ≈ 5e-15): 1e-10 leaves
room for rounding while any wrong index, factor (1/√d, β, 1/O) or missing layer moves entries by O(1).
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import dlogdet  # noqa: E402
from dlogdet.core.errors import InputError  # noqa: E402
from dlogdet.ntk import MLP, NTKSource, jax_context, mlp  # noqa: E402

from .conftest import EPS64, cond_sym, logdet_tol  # noqa: E402

N, SIZES = 7, (8, 16, 16, 3)
O = SIZES[-1]
IMPLS = ("jacobian", "ntvp", "structured", "auto")
RTOL = 1e-10


def generic_f(params, x):
    """A non-zoo model (a plain JAX function with a shared weight and a product of layers)."""
    import jax.numpy as jnp

    h = jnp.sin(x @ params["A"]) * params["s"]
    return jnp.tanh(h @ params["A"].T) @ params["B"]


@pytest.fixture(scope="module")
def model():
    f, params = mlp(SIZES, "tanh", seed=1)
    x = np.random.default_rng(0).standard_normal((N, SIZES[0]))
    return f, params, x


def dense_ntk(f, params, x):
    """(K_full, K_trace) from the Jacobian of f(·, x) with respect to the flattened parameter vector."""
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    with jax_context():
        flat, unravel = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, params))
        J = np.asarray(jax.jacrev(lambda v: f(unravel(v), jnp.asarray(x)).reshape(-1))(flat))
    n = x.shape[0]
    Jp = J.reshape(n, -1, J.shape[1])
    return J @ J.T, np.einsum("iop,jop->ij", Jp, Jp) / Jp.shape[1]


@pytest.fixture(scope="module")
def reference(model):
    return dense_ntk(*model)


def rect_indices(m):
    """Non-contiguous, unsorted, repeated row and column index arrays of different lengths."""
    rows = np.array([5, 0, 13, 20, 7, 2, 5]) % m
    cols = np.array([1, 19, 4, 4, 12, 17, 8, 3, 11]) % m
    return rows, cols


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("outputs", ["full", "trace"])
@pytest.mark.parametrize("impl", IMPLS)
def test_blocks_equal_dense_jacobian_product(model, reference, impl, outputs):
    f, params, x = model
    K = reference[0] if outputs == "full" else reference[1]
    src = NTKSource(f, params, x, outputs=outputs, implementation=impl)
    m = N * O if outputs == "full" else N
    assert src.shape == (m, m) and src.dtype == np.float64 and src.symmetric
    rows, cols = rect_indices(m)
    assert rel_err(src.block(rows, cols), K[np.ix_(rows, cols)]) < RTOL
    assert rel_err(src.tile(2, m - 1, 0, m // 2), K[2:m - 1, : m // 2]) < RTOL
    D = src.dense()
    assert rel_err(D, K) < RTOL
    assert np.array_equal(D, D.T)
    assert np.linalg.eigvalsh(D).min() > -1e-12 * np.abs(D).max()   # PSD up to rounding


@pytest.mark.parametrize("outputs", ["full", "trace"])
@pytest.mark.parametrize("impl", ["jacobian", "ntvp", "structured", "auto"])
def test_generic_model(impl, outputs):
    rng = np.random.default_rng(3)
    params = {"A": rng.standard_normal((5, 6)), "s": np.array(0.7), "B": rng.standard_normal((5, 2))}
    x = rng.standard_normal((6, 5))
    Kf, Kt = dense_ntk(generic_f, params, x)
    K = Kf if outputs == "full" else Kt
    src = NTKSource(generic_f, params, x, outputs=outputs, implementation=impl)
    if impl == "auto":
        assert src.choose(12) == "structured"
    rows, cols = rect_indices(src.n)
    assert rel_err(src.block(rows, cols), K[np.ix_(rows, cols)]) < RTOL


@pytest.mark.parametrize("outputs", ["full", "trace"])
def test_matvec(model, reference, outputs):
    f, params, x = model
    K = reference[0] if outputs == "full" else reference[1]
    src = NTKSource(f, params, x, outputs=outputs)
    V = np.random.default_rng(5).standard_normal((src.n, 2))
    ref = K @ V
    assert rel_err(src.matvec(V[:, 0], chunk=3), ref[:, 0]) < RTOL       # several chunks, a ragged last one
    assert rel_err(src.matvec(V), ref) < RTOL
    with pytest.raises(InputError, match="v must have"):
        src.matvec(np.ones(src.n + 1))


def test_mlp_model():
    f, params = mlp((4, 5, 2), "relu", seed=0)
    assert isinstance(f, MLP) and f.n_layers == 2 and f.n_outputs == 2
    assert [(p["W"].shape, p["b"].shape) for p in params] == [((4, 5), (5,)), ((5, 2), (2,))]
    x = np.ones((3, 4))
    with jax_context():
        out = np.asarray(f(params, x))
    h = np.maximum(x @ params[0]["W"] / 2 + 0.1 * params[0]["b"], 0)
    assert np.allclose(out, h @ params[1]["W"] / np.sqrt(5) + 0.1 * params[1]["b"], rtol=1e-13)
    assert pickle.loads(pickle.dumps(f)) == f
    with pytest.raises(InputError, match="activation"):
        mlp((4, 2), "gelu")


def test_float32_tiles(model, reference):
    f, params, x = model
    src = NTKSource(f, params, x, outputs="trace", dtype=np.float32)
    B = src.dense()
    assert B.dtype == np.float32
    assert rel_err(B.astype(np.float64), reference[1]) < 1e-5


def test_logdet_through_engine(model, reference):
    f, params, x = model
    src = NTKSource(f, params, x, outputs="full")
    d = 1e-6
    M = reference[0] + d * np.eye(src.n)
    sign, ref = np.linalg.slogdet(M)
    assert sign == 1
    r = dlogdet.logdet(src, assume="spd", d=d, block_size=5)
    # tiles differ from the reference by ≲ 1e-15·max|K| and the factorizations are backward stable: the
    # first-order bound n^1.5·κ·eps of conftest.logdet_tol (κ(M) ≈ 1e6 here, through the d = 1e-6 floor)
    assert abs(r.logdet - ref) <= logdet_tol(src.n, cond_sym(M), EPS64)
    assert r.sign == 1 and r.n == N * O


@pytest.mark.parametrize("outputs", ["full", "trace"])
def test_pickle_roundtrip(model, outputs):
    f, params, x = model
    src = NTKSource(f, params, x, outputs=outputs)
    rows, cols = rect_indices(src.n)
    before = src.block(rows, cols)
    blob = pickle.dumps(src)
    assert b"jax" not in blob                                   # NumPy params, no jitted functions
    back = pickle.loads(blob)
    assert np.array_equal(back.block(rows, cols), before)
    assert back.token() == src.token()


def test_token(model):
    f, params, x = model
    t = NTKSource(f, params, x).token()
    assert t == NTKSource(f, params, x.copy()).token()
    x2 = x.copy()
    x2[3, 1] += 1e-9
    others = [NTKSource(f, params, x2), NTKSource(f, params, x, outputs="trace"),
              NTKSource(f, params, x, implementation="ntvp"), NTKSource(f, params, x, dtype=np.float32),
              NTKSource(f, mlp(SIZES, "tanh", seed=2)[1], x), NTKSource(MLP(SIZES, "relu"), params, x)]
    assert len({t, *(o.token() for o in others)}) == len(others) + 1


def failing_f(params, x):
    raise RuntimeError("boom")


def bad_shape_f(params, x):
    return (x @ params["A"]).sum(axis=1)


def test_bad_inputs(model):
    f, params, x = model
    with pytest.raises(InputError, match="x must hold n >= 1 points along its first axis"):
        NTKSource(f, params, x[0])
    with pytest.raises(InputError, match=r"the model's input width is 8.*x must have shape \(n, 8\)"):
        NTKSource(f, params, x[None])
    xn = x.copy()
    xn[2, 3] = np.nan
    with pytest.raises(InputError, match=r"x holds NaN or Inf \(first at point 2, feature 3\)"):
        NTKSource(f, params, xn)
    pn = [dict(layer) for layer in params]
    pn[1]["W"] = pn[1]["W"].copy()
    pn[1]["W"][0, 0] = np.inf
    with pytest.raises(InputError, match=r"params\[1\]\['W'\] holds NaN or Inf"):
        NTKSource(f, pn, x)
    with pytest.raises(InputError, match="params do not match MLP"):
        NTKSource(f, params[:2], x)
    with pytest.raises(InputError, match="params do not match MLP.*layer 1 has W"):
        NTKSource(f, [params[0], params[2], params[1]], x)
    with pytest.raises(InputError, match="x has 5 features but the model's input width is 8"):
        NTKSource(f, params, x[:, :5])
    g = {"A": np.ones((8, 2))}
    with pytest.raises(InputError, match="f=<function failing_f.*failed on a batch.*RuntimeError: boom"):
        NTKSource(failing_f, g, x)
    with pytest.raises(InputError, match=r"f=<function generic_f.*failed on a batch"):
        NTKSource(generic_f, g, x)                     # mismatched params: KeyError inside f
    with pytest.raises(InputError, match=r"outputs of shape \(n, O\), one vector per point.*returned shape \(3,\)"):
        NTKSource(bad_shape_f, g, x)
    with pytest.raises(InputError, match="outputs must be one of"):
        NTKSource(f, params, x, outputs="diag")
    with pytest.raises(InputError, match="implementation must be one of"):
        NTKSource(f, params, x, implementation="fast")


def test_x64_is_not_left_on(model):
    f, params, x = model
    NTKSource(f, params, x).block([0, 1], [2])
    assert not jax.config.jax_enable_x64


def test_import_dlogdet_does_not_import_jax():
    code = "import dlogdet, dlogdet.ntk, sys; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow   # 14 s: a fresh interpreter with JAX
def test_token_of_a_plain_function_is_the_same_in_another_process():
    """The token of a source built on a module-level function (no dataclass repr) must not depend on the process
    (memory addresses): the out-of-core tile store resumes a run only when the tokens agree."""
    code = ("import numpy as np; from dlogdet.ntk import NTKSource; from tests.test_ntk import generic_f; "
            "rng = np.random.default_rng(0); "
            "p = {'A': rng.standard_normal((4, 6)), 's': rng.standard_normal(6), 'B': rng.standard_normal((4, 2))}; "
            "print(NTKSource(generic_f, p, rng.standard_normal((5, 4))).token())")
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    tokens = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=root).stdout.strip() for _ in range(2)}
    assert len(tokens) == 1 and len(next(iter(tokens))) >= 16
    from dlogdet.ntk.source import model_identity

    assert model_identity(generic_f) != model_identity(failing_f)
