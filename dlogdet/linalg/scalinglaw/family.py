"""The scaling-law family ℓ(n) and the Box-Cox curvature probe: features, evaluation, one least-squares fit, and the
leave-one-out increments of a factor (the maths: :mod:`dlogdet.linalg.scalinglaw`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

#: Exponents γ of the Box-Cox curvature probe δ_k = α + β·(k^γ − 1)/γ (γ = 0: α + β ln k, the scaling law's).
#: Why this range: γ < 0 flattens towards a floor (a jitter floor), γ > 0 falls faster than any power law, as the
#: late curves of trained networks' NTKs do.
BOXCOX_GAMMAS = tuple(round(-0.5 + 0.05 * i, 2) for i in range(31))


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


def _fit(delta: np.ndarray, n0: int, n1: int, q: int, r: int, ridge: float = 0.0,
         weights: np.ndarray | None = None) -> _Fit:
    """Least squares of the increments δ_k, k ∈ (n0, n1], on the differenced family (columns scaled to unit RMS;
    ``ridge`` penalizes the correction terms bᵢ, cᵢ in those units: a smoothness prior towards the plain law)."""
    k = np.arange(n0 + 1, n1 + 1, dtype=np.float64)
    X = features(k, q, r) - features(k - 1.0, q, r)
    y = delta[n0:n1]
    s = np.sqrt(np.mean(X * X, axis=0))
    Xs = X / s
    w = np.ones_like(y) if weights is None else weights[n0:n1]
    A = Xs.T @ (w[:, None] * Xs)
    if ridge:
        A = A + np.diag([0.0, 0.0] + [ridge * y.size] * (q + r))
    Ai = np.linalg.pinv(A)
    c = Ai @ (Xs.T @ (w * y))
    e = y - Xs @ c
    m, p = y.size, X.shape[1]
    meat = Xs.T @ ((w * w * e * e * (m / max(m - p, 1)))[:, None] * Xs)   # HC1 sandwich: heteroscedastic noise
    cov = Ai @ meat @ Ai
    return _Fit(n0, n1, q, r, c / s, cov / np.outer(s, s), float(np.mean(e * e)))


def _predict(fit: _Fit, n_anchor: int, ell_anchor: float, targets) -> tuple[np.ndarray, np.ndarray]:
    """ℓ̂ at targets anchored at the observed ℓ at ``n_anchor``, and the prediction's standard deviation."""
    g = features(np.asarray(targets, dtype=np.float64), fit.q, fit.r) - features([n_anchor], fit.q, fit.r)
    return ell_anchor + g @ fit.coef, np.sqrt(np.maximum(np.einsum("ti,ij,tj->t", g, fit.cov, g), 0.0))


def _floored(fit: _Fit, ns: int, n_total: int, ell_end: float, floor: float) -> float:
    """ℓ̂(n_total) of a fit with every extrapolated increment raised to ``floor`` (a known lower bound: log of the
    smallest eigenvalue of the shift, per point)."""
    out, step = ell_end, 1 << 20
    for a in range(ns + 1, n_total + 1, step):
        k = np.arange(a, min(a + step, n_total + 1), dtype=np.float64)
        inc = (features(k, fit.q, fit.r) - features(k - 1.0, fit.q, fit.r)) @ fit.coef
        out += float(np.maximum(inc, floor).sum())
    return out


def _growth(u: float) -> float:
    return u * math.log(u) - u + 1.0


def _boxcox_basis(k: np.ndarray, gamma: float) -> np.ndarray:
    return np.log(k) if gamma == 0 else np.expm1(gamma * np.log(k)) / gamma


def boxcox_fit(delta: np.ndarray, n0: int, ns: int, n_total: int, ell_end: float,
               floor: float | None = None) -> tuple[float, float]:
    r"""Box-Cox curvature probe: fit δ_k = α + β·(k^γ − 1)/γ on k ∈ (n0, ns] for every γ of
    :data:`BOXCOX_GAMMAS` (profile least squares), keep the γ of least residual and return
    (ℓ_{ns} + Σ_{k=ns+1}^{n_total} max(δ̂(k), floor), γ). γ = 0 is the plain power law of the scaling-law family; γ ≠ 0 is
    curvature in log-log that the family cannot follow."""
    k = np.arange(n0 + 1, ns + 1, dtype=np.float64)
    kk = np.arange(ns + 1, n_total + 1, dtype=np.float64)
    y = delta[n0:ns]
    best = None
    for g in BOXCOX_GAMMAS:
        X = np.stack([np.ones_like(k), _boxcox_basis(k, g)], axis=-1)
        c, *_ = np.linalg.lstsq(X, y, rcond=None)
        rss = float(np.sum((y - X @ c) ** 2))
        if best is None or rss < best[0]:
            inc = c[0] + c[1] * _boxcox_basis(kk, g)
            pred = ell_end + float((inc if floor is None else np.maximum(inc, floor)).sum())
            best = (rss, pred, g)
    return best[1], best[2]


def loo_increments(L: np.ndarray, rows_per_point: int = 1) -> np.ndarray:
    r"""Leave-one-out increment curve of one ordering from its Cholesky factor L (lower, rows grouped by point).

    δ̄_k = (1/k)·Σ_{i ≤ k} [ℓ(P_k) − ℓ(P_k ∖ i)] for every prefix P_k of the first k points: the mean increment of
    adding each of them last, −log det of its diagonal block of K_{P_k}⁻¹. Its expectation is the expected
    increment E δ_k (P_k ∖ i is a random (k−1)-subset) and it uses only the first k points, like ℓ_k, but its noise
    is far lower (an order of magnitude on a full-output NTK, docs/benchmarks/extrapolate.md). With
    W = L⁻¹, K_{P_k}⁻¹ = W_kᵀW_k for the leading block W_k of W, so the diagonal blocks of all prefixes are
    cumulative sums of W's column blocks' Gram matrices: one triangular inversion for the whole curve.
    """
    from scipy.linalg import solve_triangular

    m = L.shape[0]
    O = int(rows_per_point)
    ns = m // O
    W = solve_triangular(L, np.eye(m), lower=True, check_finite=False)
    if O == 1:
        D = np.cumsum(W * W, axis=0)                      # D[k, i] = [K_{P_(k+1)}^-1]_ii for i <= k
        D[np.triu_indices(m, 1)] = 1.0
        return -np.log(D).sum(axis=1) / np.arange(1, m + 1)
    tot = np.zeros(ns)
    for i in range(ns):
        Wi = W[i * O:, i * O:(i + 1) * O].reshape(ns - i, O, O)
        G = np.cumsum(np.einsum("jab,jac->jbc", Wi, Wi), axis=0)
        tot[i:] -= np.linalg.slogdet(G)[1]
    return tot / np.arange(1, ns + 1)
