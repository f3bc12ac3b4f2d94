"""The scaling-law family ℓ(n): its features, its evaluation, one least-squares fit of the increments, and the
reading of a fit at n through an increment floor (the maths: :mod:`dlogdet.linalg.scalinglaw`)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

#: Largest q and r tried by ``order="auto"`` (why: higher orders extrapolate noise at ratios of 10 and more).
MAX_ORDER = 2


def features(n, q: int, r: int) -> np.ndarray:
    r"""Columns of ℓ(n) − a₀: [n, ln n!, ln n!/n, …, ln n!/n^q, 1/n, …, 1/n^r], shape (len(n), 2 + q + r)."""
    n = np.asarray(n, dtype=np.float64)
    lf = gammaln(n + 1.0)
    cols = [n, lf] + [lf / n ** i for i in range(1, q + 1)] + [n ** -float(i) for i in range(1, r + 1)]
    return np.stack(cols, axis=-1)


def evaluate(coefficients: dict, n) -> np.ndarray:
    """ℓ(n) of fitted coefficients (``diagnostics["coefficients"]`` of an extrapolation) at points n ≥ 1."""
    c = coefficients
    q, r = len(c["b"]) - 1, len(c["c"])
    vec = np.array([c["a1"], *c["b"], *c["c"]], dtype=np.float64)
    return c["a0"] + features(n, q, r) @ vec


@dataclass(frozen=True)
class _Fit:
    n0: int
    n1: int
    q: int
    r: int
    coef: np.ndarray          # [a1, b0, b1..bq, c1..cr]
    cov: np.ndarray           # sandwich covariance of coef
    resid_var: float          # mean squared residual of the increments
    hat: np.ndarray           # coef = hat @ delta[n0:n1]: the fit is linear in the window's increments


@functools.lru_cache(maxsize=8)
def _increment_features(n_max: int) -> np.ndarray:
    """Row k (1 < k ≤ n_max): features(k) − features(k − 1) at the largest orders (q = r = :data:`MAX_ORDER`), the
    design of every fit on k ≤ n_max (columns picked by :func:`_columns`); rows 0 and 1 unused. Read-only."""
    k = np.arange(2, n_max + 1, dtype=np.float64)
    X = np.full((n_max + 1, 2 + 2 * MAX_ORDER), np.nan)
    X[2:] = features(k, MAX_ORDER, MAX_ORDER) - features(k - 1.0, MAX_ORDER, MAX_ORDER)
    X.setflags(write=False)
    return X


def _columns(q: int, r: int) -> list[int]:
    return [0, 1, *range(2, 2 + q), *range(2 + MAX_ORDER, 2 + MAX_ORDER + r)]


#: Largest k of the cached design (why: 2^21 rows × 6 columns is 100 MB; beyond, the sums go in chunks).
CACHED_ROWS = 1 << 21


def _design(n0: int, n1: int, q: int, r: int) -> np.ndarray:
    """The differenced family on k ∈ (n0, n1]: rows of :func:`_increment_features` (cached up to the next power of
    two, so that every window, hold-out and extrapolation of a curve reads one array) where the orders allow."""
    if q <= MAX_ORDER and r <= MAX_ORDER and n0 >= 1 and n1 <= CACHED_ROWS:
        cap = max(64, 1 << (int(n1) - 1).bit_length())
        return _increment_features(cap)[n0 + 1:n1 + 1][:, _columns(q, r)]
    k = np.arange(n0 + 1, n1 + 1, dtype=np.float64)
    return features(k, q, r) - features(k - 1.0, q, r)


def _pinv_sym(A: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a symmetric positive semi-definite matrix (eigenvalues below 1e-15 × the largest dropped,
    as :func:`numpy.linalg.pinv`), from one eigendecomposition."""
    w, V = np.linalg.eigh(A)
    keep = w > 1e-15 * max(float(w[-1]), 0.0)
    inv = np.zeros_like(w)
    inv[keep] = 1.0 / w[keep]
    return (V * inv) @ V.T


@functools.lru_cache(maxsize=256)
def _features_at(n: int, q: int, r: int) -> np.ndarray:
    return features([float(n)], q, r)[0]


def _fit(delta: np.ndarray, n0: int, n1: int, q: int, r: int, ridge: float = 0.0,
         weights: np.ndarray | None = None) -> _Fit:
    """Least squares of the increments δ_k, k ∈ (n0, n1], on the differenced family (columns scaled to unit RMS;
    ``ridge`` penalizes the correction terms bᵢ, cᵢ in those units: a smoothness prior towards the plain law)."""
    X = _design(n0, n1, q, r)
    y = delta[n0:n1]
    s = np.sqrt(np.mean(X * X, axis=0))
    Xs = X / s
    w = np.ones_like(y) if weights is None else weights[n0:n1]
    A = Xs.T @ (w[:, None] * Xs)
    if ridge:
        A = A + np.diag([0.0, 0.0] + [ridge * y.size] * (q + r))
    Ai = _pinv_sym(A)
    c = Ai @ (Xs.T @ (w * y))
    e = y - Xs @ c
    m, p = y.size, X.shape[1]
    meat = Xs.T @ ((w * w * e * e * (m / max(m - p, 1)))[:, None] * Xs)   # HC1 sandwich: heteroscedastic noise
    cov = Ai @ meat @ Ai
    hat = (Ai @ (Xs.T * w)) / s[:, None]
    return _Fit(n0, n1, q, r, c / s, cov / (s[:, None] * s[None, :]), float(np.mean(e * e)), hat)


def _predict(fit: _Fit, n_anchor: int, ell_anchor: float, targets) -> tuple[np.ndarray, np.ndarray]:
    """ℓ̂ at targets anchored at the observed ℓ at ``n_anchor``, and the prediction's standard deviation."""
    g = np.stack([_features_at(int(t), fit.q, fit.r) for t in targets]) - _features_at(int(n_anchor), fit.q, fit.r)
    return ell_anchor + g @ fit.coef, np.sqrt(np.maximum(np.einsum("ti,ij,tj->t", g, fit.cov, g), 0.0))


def _extrapolated(fit: _Fit, ns: int, n_total: int, ell_end: float, floor: float | None) -> tuple[float, np.ndarray]:
    """ℓ̂(n_total) of a fit anchored at ℓ_{n_s}, and g = ∂ℓ̂/∂(coefficients). Where there is a floor (a known lower
    bound of every increment: log of the smallest eigenvalue of the shift, per point) the fit is of the increments'
    excess over it (:func:`_above_floor`), read back as log(e^fit + e^floor), and g weighs each point's features by
    the derivative of that map."""
    out, step = ell_end, 1 << 20
    g = np.zeros(fit.coef.size)
    for a in range(ns + 1, n_total + 1, step):
        b = min(a + step, n_total + 1)
        G = _design(a - 1, b - 1, fit.q, fit.r)
        inc = G @ fit.coef
        if floor is None:
            out += float(inc.sum())
            g += G.sum(axis=0)
        else:
            out += float(np.logaddexp(inc, floor).sum())
            g += (G * (1.0 / (1.0 + np.exp(np.minimum(floor - inc, 700.0))))[:, None]).sum(axis=0)
    return out, g


def _extrapolated_many(coefs: np.ndarray, q: int, r: int, ns: int, n_total: int, ends, floor: float) -> np.ndarray:
    """:func:`_extrapolated`'s ℓ̂(n_total) through the floor for several fits of one order at once (the columns of
    ``coefs``, anchored at ``ends``): the design of the extrapolated points is built once for all of them."""
    out = np.array(ends, dtype=np.float64)
    step = max((1 << 22) // max(coefs.shape[1], 1), 1 << 12)
    for a in range(ns + 1, n_total + 1, step):
        out += np.logaddexp(_design(a - 1, min(a + step, n_total + 1) - 1, q, r) @ coefs, floor).sum(axis=0)
    return out


def _above_floor(d: np.ndarray, floor: float | None) -> np.ndarray:
    """The increments' excess over the floor, log(e^δ − e^floor) (at least log(1e-6) + floor: an increment on the
    floor carries no law): the part of an increment that follows the scaling law, where δ itself bends onto the
    floor (an RBF kernel's increments reach their jitter's)."""
    if floor is None:
        return d
    return floor + np.log(np.maximum(np.expm1(np.minimum(d - floor, 700.0)), 1e-6))


def _growth(u: float) -> float:
    return u * math.log(u) - u + 1.0
