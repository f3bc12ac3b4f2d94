"""The exact engine and its kernels on CuPy tiles (skipped without CuPy and a CUDA device; see conftest).

Same references and tolerances as test_exact / test_kernels: prescribed spectra (exact log|det|, sign, inertia)
and 10·n^1.5·κ·eps (conftest.logdet_tol). cuSOLVER's potrf/getrf are backward stable like LAPACK's; the LDLᵀ
of a diagonal tile runs on the host by design.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import dlogdet
from dlogdet.linalg import kernels as K
from dlogdet.core.errors import NotPSDError

from .conftest import EPS32, general_matrix, log_uniform_spectrum, logdet_tol, spectrum_matrix

pytestmark = pytest.mark.gpu

N = 1001
BS = 128
KAPPA = math.exp(4.0)


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def spd():
    return spectrum_matrix(N, log_uniform_spectrum(N, -2.0, 2.0, seed=41), seed=42)


@pytest.fixture(scope="module")
def sym():
    return spectrum_matrix(N, log_uniform_spectrum(N, -2.0, 2.0, seed=43, negative_every=2), seed=44)


@pytest.fixture(scope="module")
def gen():
    return general_matrix(N, log_uniform_spectrum(N, -2.0, 2.0, seed=45, negative_every=5), seed=46)


def test_gpu_available():
    assert dlogdet.backend.gpu_available()
    assert dlogdet.backend.resolve_backend("auto") == "cupy"


@pytest.mark.parametrize("container", ["cupy", "numpy"])
def test_spd_cupy(cp, spd, container):
    a, ld, sign, inertia = spd
    x = cp.asarray(a) if container == "cupy" else a
    r = dlogdet.logdet(x, assume="spd", backend="cupy", block_size=BS)
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA)
    assert r.sign == sign == 1.0 and tuple(r.inertia) == inertia
    assert r.log_pivots.dtype == np.float64 and isinstance(r.log_pivots, np.ndarray)  # back on the host
    assert r.diagnostics["backend"] == "cupy"
    ref = 2.0 * np.cumsum(np.log(np.diag(np.linalg.cholesky(a))))
    np.testing.assert_allclose(np.cumsum(r.log_pivots), ref, rtol=0, atol=logdet_tol(N, KAPPA))


@pytest.mark.parametrize("container", ["cupy", "numpy"])
def test_sym_cupy(cp, sym, container):
    a, ld, sign, inertia = sym
    x = cp.asarray(a) if container == "cupy" else a
    r = dlogdet.logdet(x, assume="sym", backend="cupy", block_size=BS)
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA)
    assert r.sign == sign == -1.0 and tuple(r.inertia) == inertia


@pytest.mark.parametrize("container", ["cupy", "numpy"])
def test_gen_cupy(cp, gen, container):
    a, ld, sign, kappa = gen
    x = cp.asarray(a) if container == "cupy" else a
    r = dlogdet.logdet(x, assume="gen", backend="cupy", block_size=BS)
    assert abs(r.logdet - ld) <= logdet_tol(N, kappa)
    assert r.sign == sign == -1.0


def test_gpu_matches_cpu(cp, sym):
    a, *_ = sym
    for assume in ("sym", "gen"):
        rc = dlogdet.logdet(a, assume=assume, backend="numpy", block_size=BS)
        rg = dlogdet.logdet(cp.asarray(a), assume=assume, backend="cupy", block_size=BS)
        assert rg.sign == rc.sign
        assert abs(rg.logdet - rc.logdet) <= 2 * logdet_tol(N, KAPPA)


def test_float32_cupy(cp, spd):
    a, ld, *_ = spd
    r = dlogdet.logdet(cp.asarray(a, dtype=cp.float32), assume="spd", backend="cupy", block_size=BS)
    assert r.dtype == "float32" and r.log_pivots.dtype == np.float64
    assert abs(r.logdet - ld) <= N ** 1.5 * EPS32  # as in test_exact.test_float32_tiles


def test_jitter_cupy(cp, sym):
    a, *_ = sym
    d = np.linspace(0.1, 1.0, N)
    s, ld = np.linalg.slogdet(2.5 * a + np.diag(d))
    r = dlogdet.logdet(cp.asarray(a), assume="gen", t=2.5, d=d, backend="cupy", block_size=BS)
    assert r.sign == s and abs(r.logdet - ld) <= 1e-7


def test_kernel_source_cupy(cp):
    x = np.random.default_rng(47).standard_normal((700, 3))
    src = dlogdet.KernelSource(x, kernel="rbf", lengthscale=0.9, jitter=1e-2)
    dense = src.dense()
    s, ld = np.linalg.slogdet(dense)
    w = np.linalg.eigvalsh(dense)
    r = dlogdet.logdet(src, backend="cupy", block_size=BS)
    assert s == 1.0 and abs(r.logdet - ld) <= logdet_tol(700, w.max() / w.min())


@pytest.mark.parametrize("row", [0, 200, 1000])
def test_not_psd_row_cupy(cp, row):
    a = np.eye(N)
    a[row, row] = -1.0
    with pytest.raises(NotPSDError) as ei:
        dlogdet.logdet(cp.asarray(a), backend="cupy", block_size=BS)
    assert ei.value.row == row


def test_kernels_on_cupy_tiles(cp):
    b = 64
    a, ld, *_ = spectrum_matrix(b, np.linspace(0.5, 4.0, b), seed=48)
    g = cp.asarray(a)
    f = K.potrf(g, row0=0)
    assert isinstance(f.L, cp.ndarray)
    assert abs(f.pivots.log_abs.sum() - ld) <= logdet_tol(b, 8.0)
    rng = np.random.default_rng(49)
    P = rng.standard_normal((30, b))
    C = rng.standard_normal((30, 30))
    X = K.trsm(f, cp.asarray(P))
    U = K.update(cp.asarray(C), X, X)
    assert isinstance(U, cp.ndarray)
    ref = C - P @ np.linalg.solve(a, P.T)
    np.testing.assert_allclose(cp.asnumpy(U), ref, rtol=0, atol=100 * b * 8 * np.finfo(float).eps)

    s = np.linspace(0.5, 2.0, b)
    s[::3] *= -1
    m, ldm, sign, kappa = general_matrix(b, s, seed=50)
    fl = K.getrf(cp.asarray(m))
    assert abs(fl.pivots.log_abs.sum() - ldm) <= logdet_tol(b, kappa)
    assert float(np.prod(fl.pivots.sign)) == sign
    fs = K.sytrf(cp.asarray((m + m.T) / 2))
    s2, ld2 = np.linalg.slogdet((m + m.T) / 2)
    assert float(np.prod(fs.pivots.sign)) == s2 and abs(fs.pivots.log_abs.sum() - ld2) <= 1e-9
