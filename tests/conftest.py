"""Shared fixtures and reference builders of the dlogdet test suite.

Every numerical test compares against an independent reference: LAPACK through ``numpy.linalg`` or a matrix
built from a prescribed spectrum, ``A = Q·diag(λ)·Qᵀ`` with a random orthogonal Q, whose exact log-determinant
(Σ log|λ|), sign (Π sign λ) and inertia (counts of positive/negative/zero λ) are known before any
factorization runs.

Tolerances (see :func:`logdet_tol`): a backward-stable factorization (Cholesky, Bunch–Kaufman LDLᵀ, LU with
partial pivoting, tiled or not) computes the exact factors of M + ΔM with ‖ΔM‖ ≤ c·n·eps·‖M‖ in the worst case
and about √n·eps·‖M‖ in practice (rounding errors of length-n inner products add up like a random walk).
First-order perturbation of the log-determinant gives Δ log|det M| = tr(M⁻¹ΔM), so
|Δ| ≤ n·‖M⁻¹‖·‖ΔM‖ ≲ n·√n·κ(M)·eps. Forming A = Q diag(λ) Qᵀ in floating point perturbs it by the same order.
We allow a factor 10 on top: float64 tests pass at ~1e-13 where this bound is ~1e-9, while any real defect
(a wrong permutation, a dropped update, a pivot of the wrong tile) moves the log-determinant by O(1).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import dlogdet
from dlogdet.linalg import backend as _backend

EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)


# --------------------------------------------------------------------------------------------------------------
# markers
# --------------------------------------------------------------------------------------------------------------

def pytest_collection_modifyitems(config, items):
    """Skip ``@pytest.mark.gpu`` tests where CuPy or a CUDA device is missing."""
    if _backend.gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device (dlogdet.backend.gpu_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# --------------------------------------------------------------------------------------------------------------
# reference matrices
# --------------------------------------------------------------------------------------------------------------

def random_orthogonal(n: int, seed, *, det_positive: bool = False) -> np.ndarray:
    """Haar-distributed orthogonal Q: QR of a Gaussian matrix with the signs of diag(R) folded into Q."""
    g = np.random.default_rng(seed).standard_normal((n, n))
    q, r = np.linalg.qr(g)
    q = q * np.sign(np.diag(r))
    if det_positive and np.linalg.slogdet(q)[0] < 0:  # det Q = ±1 exactly; make it +1
        q[:, 0] = -q[:, 0]
    return q


def spectrum_matrix(n: int, eigenvalues, seed=0):
    """Symmetric A = Q·diag(λ)·Qᵀ with prescribed eigenvalues.

    Returns
    -------
    A : (n, n) float64, exactly symmetric ((A + Aᵀ)/2 after forming it)
    exact_logdet : float
        Σ log|λ| (``-inf`` if a λ is 0).
    sign : float
        Π sign(λ).
    inertia : tuple
        (#λ > 0, #λ < 0, #λ == 0).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    assert lam.shape == (n,)
    q = random_orthogonal(n, seed)
    a = (q * lam) @ q.T
    a = (a + a.T) / 2
    with np.errstate(divide="ignore"):
        ld = float(np.sum(np.log(np.abs(lam))))
    sign = float(np.prod(np.sign(lam)))
    inertia = (int(np.sum(lam > 0)), int(np.sum(lam < 0)), int(np.sum(lam == 0)))
    return a, ld, sign, inertia


def general_matrix(n: int, signed_singular_values, seed=0):
    """Non-symmetric A = U·diag(s)·Vᵀ with det U = det V = +1, so det A = Π s exactly.

    Returns (A, exact_logdet = Σ log|s|, sign = Π sign s, condition number max|s| / min|s|).
    """
    s = np.asarray(signed_singular_values, dtype=np.float64)
    u = random_orthogonal(n, (seed, 1), det_positive=True)
    v = random_orthogonal(n, (seed, 2), det_positive=True)
    a = (u * s) @ v.T
    return a, float(np.sum(np.log(np.abs(s)))), float(np.prod(np.sign(s))), float(np.abs(s).max() / np.abs(s).min())


def log_uniform_spectrum(n: int, lo: float, hi: float, seed=0, negative_every: int | None = None) -> np.ndarray:
    """n eigenvalues with log|λ| uniform on [lo, hi]; every ``negative_every``-th one negated."""
    lam = np.exp(np.random.default_rng((seed, 7)).uniform(lo, hi, n))
    if negative_every:
        lam[::negative_every] *= -1
    return lam


def logdet_tol(n: int, kappa: float, eps: float = EPS64, factor: float = 10.0) -> float:
    """Absolute tolerance on log|det| of an n×n matrix of condition number κ: factor·n^1.5·κ·eps (module doc)."""
    return factor * n ** 1.5 * kappa * eps


def cond_sym(a: np.ndarray) -> float:
    """2-norm condition number of a symmetric matrix from its eigenvalues (LAPACK syevd)."""
    w = np.abs(np.linalg.eigvalsh(a))
    return float(w.max() / w.min())


def cond(a: np.ndarray) -> float:
    return float(np.linalg.cond(a))


# --------------------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------------------

@pytest.fixture
def rng():
    return np.random.default_rng(20260101)


@pytest.fixture(autouse=True)
def _no_default_client():
    """Tests outside test_cluster run on the in-process threaded scheduler: make sure no client leaks out."""
    yield
    distributed = sys.modules.get("distributed")
    if distributed is None:  # never imported: no client can exist
        return
    try:
        c = distributed.default_client()
    except ValueError:  # "No clients found"
        return
    assert c.status in ("closed", "closing"), "a test left an active distributed client behind; close it in teardown"


class ArrayBlockSource(dlogdet.TileSource):
    """A user-defined source that implements ``block`` only (``tile`` falls back to it); pickled by reference
    to worker processes, as a user's own source class would be."""

    def __init__(self, a):
        self.a = a
        self.shape = a.shape
        self.dtype = a.dtype

    def block(self, rows, cols):
        return self.a[np.ix_(rows, cols)]
