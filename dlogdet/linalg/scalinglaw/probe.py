r"""The Box-Cox curvature probe of a scaling-law extrapolation and the leave-one-out increments it reads (pure maths;
the family and its fit are :mod:`dlogdet.linalg.scalinglaw`).

δ_k = α + β·(k^γ − 1)/γ, γ by profile least squares over :data:`BOXCOX_GAMMAS`, fitted on (n_s/10, n_s] of the
increment curve and summed beyond n_s: γ = 0 is the scaling law's own α + β ln k, γ > 0 a curve that falls faster than
any power law (a trained network's NTK), γ < 0 one that flattens towards a floor.
"""

from __future__ import annotations

import functools

import numpy as np

from .records import BoxCoxProbe

#: Earliest start of the probe's window and of the family's automatic windows (why: the first increments, before
#: the points fill the domain, follow no law).
MIN_START = 10

#: Exponents γ of the Box-Cox curvature probe δ_k = α + β·(k^γ − 1)/γ (γ = 0: α + β ln k, the scaling law's).
#: Why this range: γ < 0 flattens towards a floor (a jitter floor), γ > 0 falls faster than any power law, as the
#: late curves of trained networks' NTKs do.
BOXCOX_GAMMAS = tuple(round(-0.5 + 0.05 * i, 2) for i in range(31))

def _boxcox_basis(k: np.ndarray, gamma: float) -> np.ndarray:
    return np.log(k) if gamma == 0 else np.expm1(gamma * np.log(k)) / gamma


def _boxcox_select(delta: np.ndarray, n0: int, ns: int) -> tuple[float, float, float]:
    """(γ, α, β) of least residual of δ_k = α + β·(k^γ − 1)/γ on k ∈ (n0, ns] over :data:`BOXCOX_GAMMAS` (each γ a
    straight-line least squares in the basis, all at once; the first γ of least residual)."""
    k = np.arange(n0 + 1, ns + 1, dtype=np.float64)
    y = delta[n0:ns]
    B = np.stack([_boxcox_basis(k, g) for g in BOXCOX_GAMMAS], axis=1)        # (points, gammas)
    Bc = B - B.mean(axis=0)
    yc = y - y.mean()
    sxx = np.einsum("ij,ij->j", Bc, Bc)
    beta = (Bc.T @ yc) / np.where(sxx > 0, sxx, 1.0)
    rss = float(yc @ yc) - beta * (Bc.T @ yc)
    i = int(np.argmin(np.round(rss, 12)))
    g = BOXCOX_GAMMAS[i]
    return g, float(y.mean() - beta[i] * B[:, i].mean()), float(beta[i])


def boxcox_fit(delta: np.ndarray, n0: int, ns: int, n_total: int, ell_end: float,
               floor: float | None = None) -> tuple[float, float]:
    r"""Box-Cox curvature probe: fit δ_k = α + β·(k^γ − 1)/γ on k ∈ (n0, ns] for every γ of
    :data:`BOXCOX_GAMMAS` (profile least squares), keep the γ of least residual and return
    (ℓ_{ns} + Σ_{k=ns+1}^{n_total} log(e^δ̂(k) + e^floor), γ): with a floor, ``delta`` is the increments' excess over
    it. γ = 0 is the plain power law of the scaling-law family; γ ≠ 0 is
    curvature in log-log that the family cannot follow."""
    g, a, b = _boxcox_select(delta, n0, ns)
    inc = _boxcox_increments(g, a, b)
    return ell_end + _sum_increments(inc, ns, n_total, floor), g


def _boxcox_increments(gamma: float, alpha: float, beta: float):
    return lambda k: alpha + beta * _boxcox_basis(k, gamma)


def _sum_increments(inc, a: int, b: int, floor: float | None) -> float:
    """Σ_{k=a+1}^{b} of inc(k) read through the floor, log(e^inc + e^floor) (inc: the increments' excess over the
    floor), in chunks (n may be millions)."""
    out, step = 0.0, 1 << 20
    for lo in range(a + 1, b + 1, step):
        v = inc(np.arange(lo, min(lo + step, b + 1), dtype=np.float64))
        out += float((v if floor is None else np.logaddexp(v, floor)).sum())
    return out


@functools.lru_cache(maxsize=4)
def _lower(m: int) -> np.ndarray:
    """The lower triangle (diagonal included) of an m × m matrix, as a read-only mask."""
    t = np.tri(m, dtype=bool)
    t.setflags(write=False)
    return t


def loo_increments(L: np.ndarray, rows_per_point: int = 1) -> np.ndarray:
    r"""Leave-one-out increment curve of one ordering from its Cholesky factor L (lower, rows grouped by point).

    δ̄_k = (1/k)·Σ_{i ≤ k} [ℓ(P_k) − ℓ(P_k ∖ i)] for every prefix P_k of the first k points: the mean increment of
    adding each of them last, −log det of its diagonal block of K_{P_k}⁻¹. Its expectation is the expected
    increment E δ_k (P_k ∖ i is a random (k−1)-subset) and it uses only the first k points, like ℓ_k, but its noise
    is far lower (an order of magnitude on a full-output NTK, docs/benchmarks/extrapolate.md). With
    W = L⁻¹, K_{P_k}⁻¹ = W_kᵀW_k for the leading block W_k of W, so the diagonal blocks of all prefixes are
    cumulative sums of W's column blocks' Gram matrices: one triangular inversion for the whole curve.
    """
    from scipy.linalg import lapack

    m = L.shape[0]
    O = int(rows_per_point)
    ns = m // O
    # LAPACK's triangular inverse (n³/3 flops; a triangular solve against the identity costs n³); it leaves the
    # strictly upper part of its input in place, which the cumulative sums below must read as zeros
    W, info = lapack.dtrtri(np.asarray(L, dtype=np.float64), lower=1)
    if info != 0:
        raise ValueError(f"the factor is singular (dtrtri: info = {info}): no leave-one-out curve")
    W = np.tril(W)
    if O == 1:
        np.multiply(W, W, out=W)
        D = np.cumsum(W, axis=0, out=W)                   # D[k, i] = [K_{P_(k+1)}^-1]_ii for i <= k
        logs = np.zeros_like(D)
        np.log(D, out=logs, where=_lower(m))              # in place, and no index arrays: ~30% faster at 500 rows
        return -logs.sum(axis=1) / np.arange(1, m + 1)
    tot = np.zeros(ns)
    for i in range(ns):
        Wi = W[i * O:, i * O:(i + 1) * O].reshape(ns - i, O, O)
        G = np.cumsum(np.einsum("jab,jac->jbc", Wi, Wi), axis=0)
        tot[i:] -= np.linalg.slogdet(G)[1]
    return tot / np.arange(1, ns + 1)


def probe(y: np.ndarray, ns: int, N: int, ell_end: float, floor: float | None, upper: float, fallback: float,
           on: str) -> BoxCoxProbe:
    """The Box-Cox probe on the increment curve ``y``, fitted on (n_s/10, n_s], anchored at ℓ_{n_s} = ``ell_end``
    and capped by the monotone bound; the scaling law's ``fallback`` (γ = 0) where the curve is too short or there is
    nothing to extrapolate."""
    b0 = max(MIN_START, int(round(0.1 * ns)))
    if ns - b0 >= 10 and N > ns:
        gamma, alpha, beta = _boxcox_select(y, b0, ns)
        est = ell_end + _sum_increments(_boxcox_increments(gamma, alpha, beta), ns, N, floor)
        return BoxCoxProbe(gamma=float(gamma), estimate=float(min(est, upper)), window=(b0, ns), on=on, alpha=alpha,
                           beta=beta)
    return BoxCoxProbe(gamma=0.0, estimate=float(fallback), window=(b0, ns), on=on)
