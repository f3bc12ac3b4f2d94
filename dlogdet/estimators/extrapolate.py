r"""Scaling-law extrapolation: log det of n points from the log-pivots of one small random subsample.

ℓ(n) = a₀ + a₁n + (b₀ + Σᵢ₌₁^q bᵢn⁻ⁱ)·ln n! + Σᵢ₌₁^r cᵢn⁻ⁱ, fitted to ℓ_k = log det K_k (k ≤ n_s) and read at n.

Why it works: under a scaling law, det K_n / det K_{n−1} ≈ c·n^(−ν), so the per-point increments
δ_k = ℓ_k − ℓ_{k−1} are ≈ a₁ − ν ln k plus corrections that vanish with k, which the family above integrates. One
exact factorization of a random subsample of n_s points gives ℓ_k for every k ≤ n_s at once: the cumulative sums
of the engine's log-pivots, grouped by point (O rows per point for a full-output NTK with O outputs).

What this module adds to the published fit (whose error moved from 2.5% to 53% with the window and order):

- **Fit on increments, anchored at the observed end.** ℓ_k is a cumulative sum whose noise is a random walk; the
  increments have nearly independent noise, so least squares on δ_k is the efficient (GLS) fit, and the estimate is
  ℓ̂(n) = ℓ_{n_s} + Σ_{k=n_s+1}^{n} δ̂(k): only the unobserved increments are modelled.
- **Window and order by held-out validation.** Every candidate (window start n₀ ∈ n_s·{1, 2, 5, 10, 20, 30}%,
  q, r ∈ {0, 1, 2}) is refitted on the same window shrunk by ρ ∈ {2, 3, 4} and asked to predict the observed
  ℓ_{n_s}; its squared validation error (noise included, which keeps the band honest) is scaled to the real
  extrapolation
  ratio R = n/n_s (increment errors that grow linearly in log k: the extrapolated error grows as
  n_s·I(R) / (n_h·I(ρ)) with I(u) = u ln u − u + 1). The candidate with the least estimated mean squared error
  (prediction variance + scaled validation bias²) is kept.
- **An uncertainty that includes the model error.** stderr² = σ²_stat (sandwich variance of the fit's prediction,
  and the spread over subsamples when there are several) + σ²_val (the scaled validation error above) + σ²_sel
  (the spread of the five best candidates' predictions: the choice of window and order) + σ²_law (below) +
  σ²_curv (the curvature probe, below).
- **A test of the law itself.** A quadratic-in-ln k term fitted to the tail of the increments measures curvature in
  log-log that no member of the family can follow (an RBF kernel whose posterior variance falls faster than any
  power and then hits its jitter floor). Its t-statistic and the relative change of the local log-log slope across
  the window weigh σ_law = half the larger distance from the estimate
  to two brackets: the monotone bound (E δ_k never increases with k, since conditioning on more points can only
  shrink a Schur complement: ℓ_n ≤ ℓ_{n_s} + (n − n_s)·δ̄_tail) and an increment curve that keeps falling
  linearly in k. With |t| ≥ 2 and a slope change ≥ 100% the status says ``"scaling-law-rejected"``. The estimate is also capped by the
  monotone bound.

- **Curvature beyond the window (σ_curv).** Measured on cached curves (the exact ℓ_k of full random orderings):
  the increments of a trained MLP's NTK fall faster than any power law, δ_k ≈ α + β·(k^γ − 1)/γ with γ ≈ 0.25
  inside a 300-point subsample and 0.3-0.4 beyond it (full-output, 1500 points), γ ≈ 0 inside 750 points and
  ≈ 0.3 beyond (traced, 12,000 points), while Matérn kernels show γ ≈ 0.1 transients inside that fade to a power
  law beyond. The family read the full-output NTK 11% too high and its band covered 65% of runs: no held-out
  check inside the curve sees that bend. The Box-Cox probe (:func:`boxcox_fit`: δ_k = α + β·(k^γ − 1)/γ, γ by
  profile least squares over :data:`BOXCOX_GAMMAS`, fitted on (n_s/10, n_s]) extrapolates with the curvature the
  subsample shows; σ_curv = :data:`CURVATURE_WEIGHT` × |probe − family| enters the band (coverage on the cached
  curves of every case ≥ 0.95 with 1 subsample, 40 runs). ``family="boxcox"`` returns the probe's curve as the
  estimate with the same band (full-output NTK: 3.1% median error instead of 11%; Matérn kernels: 2-3× worse
  than the family, so it is not the default).
- **Leave-one-out increments for the probe.** A single ordering's increments are noisy (sd 2.9 per point at
  k = 300 on the full-output NTK, against a mean of −15.5) and the probe's γ wanders with them (8% median error);
  :func:`loo_increments` gives, from the same factor and one triangular inversion, the mean increment of each of
  the first k points added last, for every k (sd 0.17), which the probe fits instead (3.1%). Subsamples of at most
  :data:`LOO_MAX_ROWS` rows are therefore factored in-process (LAPACK, with the factor kept); larger ones, or runs
  on a cluster (``client=``), go through the engine and the probe uses the raw increments.

- **Rank boundaries and ``family="auto"`` (the default of :func:`run`).** Row (i, a) of a full-output NTK is the
  gradient of output a at point i; its part in one layer's parameters lies in a space of the layer's parameter
  count P_l (a dense last layer: O spaces of dimension fan_in + 1), so past n·O = P_l rows (fan_in + 1 points) the
  layer has no new direction to give. :meth:`dlogdet.ntk.NTKSource.rank_boundaries` lists those points (checked
  against the SVD rank of each layer's Jacobian block in ``tests/test_extrapolate.py``). A boundary between n_sub
  and n_total marks a network that is narrow for its data set, and those are the NTKs whose curve bends beyond the
  subsample. Measured on cached curves of full-output NTKs of trained 40-w-w-10 MLPs on MNIST-1D (30-40 runs per
  configuration, 1 subsample, median error family → probe):

  =====  ===================  =============================================================================
  width  boundary crossed     n from n_s: family → probe
  =====  ===================  =============================================================================
  512    last layer, 513      1500/300: 11.4 → 3.1%, 1000/200: 8.9 → 4.7%, 800/160: 9.5 → 4.5%, 600/120: 7.0 → 9.1%
  128    first layer, 525     1500/300: 19.5 → 4.9%, 1000/200: 19.2 → 4.6%; (last layer, 129) 500/100: 16.0 → 8.5%
  512    none (n ≤ 513)       500/100: 8.8 → 7.0%
  2048   none                 1500/300: 4.4 → 2.7%, 1000/200: 3.5 → 4.8%, 500/100: 6.4 → 7.3%
  4096   none                 1500/300: 3.0 → 2.6%, 1000/200: 3.4 → 4.3%, 500/100: 7.3 → 8.7%
  =====  ===================  =============================================================================

  Across a boundary the family was 7-20% off in all 7 configurations and the probe better in 6 (by 4-15 points;
  worse by 2.1 in one); without one the two are within 0.4-1.7 points, the family ahead in 4 of 7. So ``"auto"``
  takes the probe where a boundary is crossed, and says so (``status="rank-boundary"``, a warning naming the layer).
  The boundary is a marker, not the whole cause: the 512-wide MLP's NTK without its last layer (K − I_O ⊗ ΦΦᵀ, Φ
  the last layer's features, known exactly) extrapolates +11.5%, as K does (+11.2%); its other layers' effective
  ranks are far below their parameter counts. With the noise gone (32 curves at once) the family reads +10.1%,
  +3.07%, +1.36% at widths 512, 2048, 4096 and the probe +3.77%, +0.96%, +0.18%. A traced NTK reports no boundary:
  there the family beat the probe every time (2.95% against 5.58% at 12,000 from 750; 2.75% against 4.46% at
  3000 from 300, across its last layer's boundary at 513).
- **Weights.** ``weights="inverse-variance"`` (or an array, one weight per increment) makes the least squares
  weighted; the HC1 sandwich keeps σ_stat honest under any weighting. Not the default: on the cached curves it moved
  the median error by 0.2-0.5 points either way (Matérn-3/2 2-D 2.26% → 1.76%, Matérn-1/2 2-D 1.71% → 2.23%).

- **A known floor.** t·A + d·I ⪰ (t·jitter + d)·I for a kernel source with a jitter (or any shift d > 0), so no
  increment falls below rpp·log(t·jitter + d): every extrapolated increment (family, probe, falling bracket) is
  raised to that floor. An RBF kernel whose increments reach the jitter floor between n_s and n went from 65-75%
  to 2.5% median error (its band stays wide: the law is still rejected).

The honesty of the band (estimate ± 2·stderr) is measured in ``tests/test_extrapolate.py`` and
``benchmarks/extrapolate.py``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.special import gammaln

from ..errors import ExtrapolationError, InputError, NotPSDError
from ..result import LogdetResult
from ..sources import TileSource
from ..sources.subset import SubsetSource
from . import get as _get_estimator

log = logging.getLogger(__name__)

#: Window starts tried by ``window="auto"``, as fractions of n_s (why: from "almost everything" to "the last 70%";
#: early points carry small-k transients, late windows leave too few points for the slope).
WINDOW_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
#: Largest q and r tried by ``order="auto"`` (why: higher orders extrapolate noise at ratios of 10 and more).
MAX_ORDER = 2
#: Hold-out ratios of the validation: the window shrunk by ρ predicts the observed end (why: several ratios average
#: the noise of a single hold-out; 4 still leaves a quarter of the curve to fit).
HOLDOUT_RATIOS = (2.0, 3.0, 4.0)
#: Candidates whose prediction spread enters σ_sel.
TOP_CANDIDATES = 5
#: Earliest automatic window start (why: the first increments, before the points fill the domain, follow no law).
MIN_START = 10
#: Smallest number of points in a subsample.
MIN_SUB = 20
#: Exponents γ of the Box-Cox curvature probe δ_k = α + β·(k^γ − 1)/γ (γ = 0: α + β ln k, the issue's law).
#: Why this range: γ < 0 flattens towards a floor (a jitter floor), γ > 0 falls faster than any power law
#: (measured: γ ≈ 0.3 on the late curve of a trained MLP's NTK, 0 on Matérn kernels' late curves).
BOXCOX_GAMMAS = tuple(round(-0.5 + 0.05 * i, 2) for i in range(31))
#: Largest subsample (rows) factored in-process with its inverse factor, which gives the leave-one-out increment
#: curve (why: two n×n float64 work arrays, 0.5 GiB each at this size); larger ones go through the engine.
LOO_MAX_ROWS = 8192
#: In-process factorizations up to this many rows run on one BLAS thread (why: measured on a loaded 2-core
#: machine, a 750-row Cholesky took 0.58-1.1 s on two OpenBLAS threads and 0.08-0.2 s on one; larger ones use all).
SINGLE_THREAD_ROWS = 4096
#: Weight of the curvature probe's distance in the band (why: the probe's γ, fitted inside the subsample, trails
#: the growing curvature beyond it; measured on the full-output NTK, 1 and 4 subsamples: coverage 0.90 and 0.80
#: with weight 1, see the module docstring).
CURVATURE_WEIGHT = 1.5
#: Families of ``family=``: "auto" (the default of :func:`run`: the Box-Cox probe where the source reports a rank
#: boundary between n_sub and n_total, the issue's family elsewhere), the issue's family, or the Box-Cox probe.
FAMILIES = ("auto", "issue", "boxcox")
#: Weightings of ``weights=`` besides an array: "inverse-variance" weighs each increment by the inverse of its local
#: variance (the spread of the subsamples' increments around their mean, or with one subsample the squared
#: residuals of a quadratic-in-ln k fit), both smoothed over :data:`VARIANCE_SMOOTHING` of the curve.
WEIGHTINGS = ("inverse-variance",)
#: Half-width of the moving average of the local variance, as a fraction of n_s (why: a per-k variance from one
#: ordering is a single squared residual; 5% of the curve averages about 2·0.05·n_s of them).
VARIANCE_SMOOTHING = 0.05


# ---------------------------------------------------------------------------------------------------- the family


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
    (ℓ_{ns} + Σ_{k=ns+1}^{n_total} max(δ̂(k), floor), γ). γ = 0 is the plain power law of the issue's family; γ ≠ 0 is
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
    is far lower (measured on the full-output NTK, k = 300: sd 0.17 against 2.9 for the single increment). With
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


# ------------------------------------------------------------------------------------------------ the selection


def _parse_order(order) -> list[tuple[int, int]]:
    if isinstance(order, str):
        if order != "auto":
            raise InputError(f"order must be 'auto', an integer or a pair (q, r), got {order!r}")
        return [(q, r) for q in range(MAX_ORDER + 1) for r in range(MAX_ORDER + 1)]
    if isinstance(order, (int, np.integer)) and not isinstance(order, bool):
        qr = (int(order), int(order))
    else:
        try:
            q, r = order
            qr = (int(q), int(r))
        except (TypeError, ValueError):
            raise InputError(f"order must be 'auto', an integer or a pair (q, r), got {order!r}") from None
    if min(qr) < 0:
        raise InputError(f"order (q, r) must be non-negative, got {order!r}")
    return [qr]


def _parse_window(window, n_sub: int) -> list[tuple[int, int]] | None:
    if isinstance(window, str):
        if window != "auto":
            raise InputError(f"window must be 'auto' or a pair (n0, n1) with 1 <= n0 < n1 <= n_sub = {n_sub}, "
                             f"got {window!r}")
        return None
    try:
        n0, n1 = (int(v) for v in window)
        ok = all(float(v) == int(v) for v in window)
    except (TypeError, ValueError):
        raise InputError(f"window must be 'auto' or a pair of integers (n0, n1), got {window!r}") from None
    if not ok or not (1 <= n0 < n1 <= n_sub):
        raise InputError(f"window {tuple(window)!r} is outside [1, n_sub = {n_sub}]: give 1 <= n0 < n1 <= {n_sub} "
                         "(points of the subsample), or window='auto'")
    return [(n0, n1)]


def _min_points(p: int) -> int:
    return max(5 * p, 20)


def _curvature(delta: np.ndarray, a: int, b: int) -> tuple[float, float]:
    """Log-log curvature of the increments that the family cannot follow: fit δ_k = α + β ln k + γ (ln k)² on
    k ∈ (a, b] and return the t-statistic of γ and the relative change of the local slope dδ/d ln k across the
    window, |2γ·ln(b/a)| / |β| (0 for a power law; ≈ 2 for an RBF kernel on its way to the jitter floor)."""
    k = np.arange(a + 1, b + 1, dtype=np.float64)
    if k.size < 10:
        return 0.0, 0.0
    lk = np.log(k)
    u = lk - lk.mean()
    X = np.stack([np.ones_like(k), u, u * u], axis=-1)
    c, *_ = np.linalg.lstsq(X, delta[a:b], rcond=None)
    e = delta[a:b] - X @ c
    cov = (e @ e / (k.size - 3)) * np.linalg.pinv(X.T @ X)
    t = float(c[2] / math.sqrt(cov[2, 2])) if cov[2, 2] > 0 else 0.0
    change = abs(2.0 * c[2] * (lk[-1] - lk[0])) / max(abs(c[1]), 1e-300)
    return t, float(change)


def increment_weights(ell, weights) -> np.ndarray | None:
    """Per-increment least-squares weights of ``weights=`` for ℓ_k curves of shape (S, n_s): None (equal weights),
    "inverse-variance" (see :data:`WEIGHTINGS`) or an array of n_s non-negative finite numbers, one per k."""
    if weights is None:
        return None
    S, ns = ell.shape
    if isinstance(weights, str):
        if weights not in WEIGHTINGS:
            raise InputError(f"weights must be None, one of {WEIGHTINGS} or an array of n_s = {ns} non-negative "
                             f"numbers, got {weights!r}")
        deltas = np.diff(ell, axis=1, prepend=0.0)
        d = deltas.mean(axis=0)
        if S >= 2:
            v = deltas.var(axis=0, ddof=1) / S
        else:
            k = np.arange(1.0, ns + 1.0)
            lk = np.log(k)
            X = np.stack([np.ones_like(lk), lk, lk * lk], axis=-1)
            a = min(MIN_START, ns // 2)
            c, *_ = np.linalg.lstsq(X[a:], d[a:], rcond=None)
            v = (d - X @ c) ** 2
        h = max(int(round(VARIANCE_SMOOTHING * ns)), 2)
        v = np.convolve(np.pad(v, h, mode="edge"), np.ones(2 * h + 1) / (2 * h + 1), mode="valid")
        pos = v[v > 0]
        if pos.size == 0:
            return None
        return 1.0 / np.maximum(v, 1e-3 * float(np.median(pos)))
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (ns,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise InputError(f"weights must hold n_s = {ns} finite non-negative numbers (one per increment ℓ_k − "
                         f"ℓ_(k−1), k = 1..n_s), not all zero; got shape {w.shape}")
    return w


def fit_curves(ell, n_total: int, *, window="auto", order="auto", ridge: float = 0.0, loo=None,
               family: str = "issue", floor: float | None = None, weights=None) -> dict[str, Any]:
    """Extrapolate ℓ_k curves of one or more random subsamples to ``n_total`` points.

    Parameters
    ----------
    ell : array_like, shape (n_s,) or (S, n_s)
        ℓ_k = log det of the first k points of each subsample's random ordering, k = 1..n_s.
    n_total : int
        Points at which to read the curve (≥ n_s).
    window : "auto" or (n0, n1)
        Fit the increments between ℓ_{n0} and ℓ_{n1} (1 ≤ n0 < n1 ≤ n_s).
    order : "auto", int or (q, r)
        Terms of the family; an integer k means q = r = k.
    ridge : float
        Penalty on the correction coefficients bᵢ, cᵢ (0: none).
    loo : array_like, optional
        Leave-one-out increment curves (:func:`loo_increments`), same shape as ``ell``: the low-noise curve on which
        the Box-Cox curvature probe is fitted (default: the raw increments of ``ell``).
    family : "issue" or "boxcox"
        Which curve gives the estimate: the issue's family (chosen by validation) or the Box-Cox probe's. The band
        holds the distance between the two either way.
    floor : float, optional
        A lower bound of every increment (per point): rpp·log σ² when the matrix is ⪰ σ²·I (a jitter or a shift d).
        Extrapolated increments are raised to it (an RBF kernel's increments fall onto its jitter floor).
    weights : None, "inverse-variance" or array_like of shape (n_s,)
        Weights of the least squares on the increments δ_k (see :func:`increment_weights`); the sandwich
        covariance keeps the statistical error honest under any weighting. Default None: equal weights (measured
        on the cached curves, inverse-variance weights moved the median error both ways by 0.2-0.5%, within the
        noise of 40 runs).

    Returns
    -------
    dict
        ``estimate``, ``stderr``, ``components`` (σ_stat, σ_val, σ_sel, σ_law, σ_curv), ``window``, ``order``,
        ``coefficients`` (a0, a1, b, c), ``curvature_t``, ``upper_monotone``, ``law_rejected``, ``validated``,
        ``candidates`` (one row per candidate tried), ``boxcox`` (γ, estimate, window of the probe), ``family``
        and ``ell_mean``.
    """
    ell = np.atleast_2d(np.asarray(ell, dtype=np.float64))
    if ell.ndim != 2 or ell.shape[1] < 2:
        raise ExtrapolationError(f"need ℓ_k curves of shape (n_s,) or (S, n_s) with n_s >= 2, got {ell.shape}")
    if not np.all(np.isfinite(ell)):
        bad = int(np.argmax(~np.all(np.isfinite(ell), axis=0))) + 1
        raise ExtrapolationError(f"the ℓ_k curve is not finite from k = {bad} on (a singular subsample): add a "
                                 "diagonal shift d= (jitter) or use a smaller n_sub")
    S, ns = ell.shape
    if family not in FAMILIES[1:]:
        raise InputError(f"family must be one of {FAMILIES[1:]} here (\"auto\" needs the source: "
                         f"dlogdet.extrapolate), got {family!r}")
    w = increment_weights(ell, weights)
    if loo is not None:
        loo = np.atleast_2d(np.asarray(loo, dtype=np.float64))
        if loo.shape != ell.shape or not np.all(np.isfinite(loo)):
            raise ExtrapolationError(f"loo curves must be finite with the shape of ell {ell.shape}, got {loo.shape}")
    N = int(n_total)
    if N < ns:
        raise InputError(f"n_total = {N} is smaller than the subsample (n_s = {ns}); give n_total >= n_sub")
    deltas = np.diff(ell, axis=1, prepend=0.0)
    d = deltas.mean(axis=0)
    ell_end = float(d.sum())
    R = N / ns
    orders = _parse_order(order)
    windows = _parse_window(window, ns)
    auto_window = windows is None

    cands = []
    for q, r in orders:
        p = 2 + q + r
        wins = windows if windows is not None else sorted({(max(int(round(f * ns)), MIN_START), ns) for f in WINDOW_FRACTIONS})
        for n0, n1 in wins:
            if n1 - n0 < (_min_points(p) if auto_window else 3 * p):
                continue
            if w is not None and np.count_nonzero(w[n0:n1]) < 3 * p:
                continue                              # weights that leave too few increments in this window
            fit = _fit(d, n0, n1, q, r, ridge, w)
            pred, sd = _predict(fit, ns, ell_end, [N])
            bias2 = []
            for rho in HOLDOUT_RATIOS:
                nh = int(round(ns / rho))
                h0, h1 = max(int(round(n0 / rho)), 1), max(int(round(n1 / rho)), 1)
                if h1 - h0 < max(3 * p, 10) or nh >= ns:
                    continue
                hf = _fit(d, h0, h1, q, r, ridge, w)
                ph, sh = _predict(hf, nh, float(d[:nh].sum()), [ns])
                err = float(ph[0]) - ell_end
                scale = ns * _growth(R) / (nh * _growth(rho)) if R > 1 else 0.0
                # the whole held-out error, noise included: subtracting the noise's expected share left the bands
                # too narrow where the pre-asymptotic bias is systematic (Matérn-3/2 in 3-D: coverage 0.7 at R = 10)
                bias2.append(err * err * scale * scale)
            validated = bool(bias2)
            s_val = math.sqrt(max(float(np.mean(bias2)), 0.0)) if validated else float(sd[0])
            cands.append({"n0": n0, "n1": n1, "q": q, "r": r, "prediction": float(pred[0]), "sd": float(sd[0]),
                          "model": s_val, "mse": float(sd[0]) ** 2 + s_val ** 2, "validated": validated,
                          "_fit": fit})
    if not cands:
        p = 2 + min(q + r for q, r in orders)
        need = _min_points(p) if auto_window else 3 * p
        raise ExtrapolationError(
            f"the ℓ_k curve is too short for the order: a fit of order {orders[0] if len(orders) == 1 else 'auto'} "
            f"needs at least {need} points in the window, the subsample has n_s = {ns}"
            + ("" if auto_window else f" and the window {windows[0]} has {windows[0][1] - windows[0][0]}")
            + ("" if w is None else ", counting only increments of non-zero weight")
            + ": use a larger n_sub, a wider window or a lower order")
    cands.sort(key=lambda c: c["mse"])
    best = cands[0]
    fit: _Fit = best["_fit"]
    estimate = best["prediction"]

    # statistical part: the fit's prediction variance, the anchor's sampling variance, the subsamples' spread
    anchor_var = ns * fit.resid_var * max(1.0 - ns / N, 0.0)
    s_stat2 = best["sd"] ** 2 + anchor_var
    per_sub = None
    if S >= 2:
        per_sub = []
        for s in range(S):
            fs = _fit(deltas[s], fit.n0, fit.n1, fit.q, fit.r, ridge, w)
            per_sub.append(float(_predict(fs, ns, float(deltas[s].sum()), [N])[0][0]))
        s_stat2 = max(s_stat2, float(np.var(per_sub, ddof=1)) / S + anchor_var)
    # the choice: root mean square distance of the next best candidates' predictions from the chosen one
    top = np.array([c["prediction"] for c in cands[1:TOP_CANDIDATES]])
    s_sel = float(np.sqrt(np.mean((top - best["prediction"]) ** 2))) if top.size else 0.0

    # the law itself: log-log curvature of the tail, and the brackets it opens
    t_curv, slope_change = _curvature(d, max(ns // 20, 1), ns)
    m = max(ns // 10, min(10, ns))
    tail = d[ns - m:]
    upper = ell_end + (N - ns) * (float(tail.mean()) + 2.0 * float(tail.std(ddof=1) if m > 1 else 0.0) / math.sqrt(m))
    a = ns // 4
    kk = np.arange(a + 1, ns + 1, dtype=np.float64)
    lin, *_ = np.linalg.lstsq(np.stack([np.ones_like(kk), kk], axis=-1), d[a:], rcond=None)
    kf_sum = (N * (N + 1) - ns * (ns + 1)) / 2.0
    falling = ell_end + lin[0] * (N - ns) + lin[1] * kf_sum
    if floor is not None:
        estimate = _floored(fit, ns, N, ell_end, floor)
        kf = np.arange(ns + 1, N + 1, dtype=np.float64)
        falling = ell_end + float(np.maximum(lin[0] + lin[1] * kf, floor).sum())
    estimate = min(estimate, upper)
    # weight of the law's failure: significant (|t| from 1 to 2) and large (the local log-log slope changing by
    # 50% to 100% across the window; measured: 0.15-0.3 typical, at most 1.0, for Matérn kernels, 1.8-2.6 for RBF
    # kernels before their jitter floor)
    w_law = min(max(abs(t_curv) - 1.0, 0.0), 1.0) * min(max((slope_change - 0.5) / 0.5, 0.0), 1.0)
    s_law = w_law * max(abs(estimate - falling), abs(upper - estimate)) / 2.0
    # curvature beyond the window: the Box-Cox probe on the (leave-one-out) increments; the distance between its
    # extrapolation and the family's is model risk that the held-out validation cannot see (measured: the
    # full-output NTK's increments bend from γ ≈ 0.25 in the subsample to 0.3-0.4 beyond it, the family read 11%
    # too high with a band covering 65% of runs; Matérn kernels show γ ≈ 0.1 transients that fade)
    b0 = max(MIN_START, int(round(0.1 * ns)))
    if ns - b0 >= 10 and N > ns:
        y = (loo.mean(axis=0) if loo is not None else d)
        bc_est, bc_gamma = boxcox_fit(y, b0, ns, N, ell_end, floor)
        bc_est = min(bc_est, upper)
    else:
        bc_est, bc_gamma = estimate, 0.0
    s_curv = CURVATURE_WEIGHT * abs(bc_est - estimate)
    issue_estimate = estimate
    if family == "boxcox":
        estimate = bc_est
    stderr = math.sqrt(s_stat2 + max(best["model"], s_curv) ** 2 + s_sel ** 2 + s_law ** 2)

    coef = fit.coef
    a0 = ell_end - float(features([ns], fit.q, fit.r)[0] @ coef)
    return {
        "estimate": float(estimate),
        "stderr": float(stderr),
        "components": {"stat": math.sqrt(s_stat2), "validation": best["model"], "selection": s_sel,
                       "law": s_law, "curvature": s_curv},
        "family": family,
        "weights": None if weights is None else (weights if isinstance(weights, str) else "array"),
        "boxcox": {"gamma": float(bc_gamma), "estimate": float(bc_est), "window": (b0, ns),
                   "on": "loo" if loo is not None else "increments"},
        "issue_estimate": float(issue_estimate),
        "window": (fit.n0, fit.n1),
        "order": (fit.q, fit.r),
        "coefficients": {"a0": a0, "a1": float(coef[0]), "b": [float(v) for v in coef[1:2 + fit.q]],
                         "c": [float(v) for v in coef[2 + fit.q:]]},
        "extrapolation_ratio": R,
        "curvature_t": t_curv,
        "slope_change": slope_change,
        "law_rejected": abs(t_curv) >= 2.0 and slope_change >= 1.0,
        "upper_monotone": float(upper),
        "falling_bracket": float(falling),
        "validated": bool(best["validated"]),
        "floor": floor,
        "per_subsample": per_sub,
        "candidates": [{k: v for k, v in c.items() if k != "_fit"} for c in cands],
        "ell_mean": np.cumsum(d),
    }


# --------------------------------------------------------------------------------------------------- the method


def rows_per_point_of(source: TileSource) -> int:
    """Rows per point of a source: O for a full-output NTK (``outputs="full"``, ``n_outputs``), else 1."""
    if getattr(source, "outputs", None) == "full" and getattr(source, "n_outputs", None):
        return int(source.n_outputs)
    return 1


def _factor_in_process(sub: SubsetSource, t: float, d_sub) -> np.ndarray | None:
    """Cholesky factor of t·S + diag(d) for a small subsample S (float64, LAPACK); None where it is not positive
    definite (the engine then names the failing row)."""
    from scipy.linalg import LinAlgError, cholesky
    from threadpoolctl import threadpool_limits

    a = np.array(sub.dense(), dtype=np.float64) * t          # the source's tiles, with its own threading
    a[np.diag_indices_from(a)] += d_sub
    if not np.all(np.isfinite(a)):
        return None
    try:
        with threadpool_limits(1 if sub.n <= SINGLE_THREAD_ROWS else None):
            L = cholesky(a, lower=True, overwrite_a=True, check_finite=False)
    except LinAlgError:
        return None
    return L if np.all(np.diagonal(L) > 0) else None


def crossed_boundaries(source: TileSource, n_sub: int, n_total: int) -> list[dict]:
    """The source's rank boundaries (``source.rank_boundaries()``, e.g. an NTK's layers) with n_sub < points ≤
    n_total: structure that the subsample's ℓ_k cannot show and the full set has."""
    fn = getattr(source, "rank_boundaries", None)
    if not callable(fn):
        return []
    return [b for b in fn() if n_sub < int(b["points"]) <= n_total]


def run(source: TileSource, n_total: int | None = None, *, n_sub: int, window="auto", order="auto",
        subsamples: int = 1, seed=None, rows_per_point: int | None = None, ridge: float = 0.0,
        family: str = "auto", weights=None, assume: str = "spd", t: float = 1.0, d=0.0,
        block_size: int | None = None, budget=None, client=None, **options) -> LogdetResult:
    r"""log det of ``n_total`` points extrapolated from ``subsamples`` exact factorizations of n_sub random points.

    See :func:`dlogdet.extrapolate` for the parameters. ``options`` go to the exact engine (``backend``,
    ``progress``, ``check_symmetry``, ...).
    """
    t0 = time.perf_counter()
    rpp = rows_per_point_of(source) if rows_per_point is None else int(rows_per_point)
    if rpp < 1 or source.n % rpp:
        raise InputError(f"rows_per_point = {rows_per_point!r} must be a positive divisor of the order {source.n}")
    n_points = source.n // rpp
    if assume != "spd":
        raise InputError(f"extrapolate needs the log-pivot of every row, exact only for assume='spd' (Cholesky); "
                         f"got assume={assume!r}: add a diagonal shift d= if the matrix is only semi-definite")
    if isinstance(n_sub, bool) or not isinstance(n_sub, (int, np.integer)) or n_sub < MIN_SUB:
        raise InputError(f"n_sub must be an integer >= {MIN_SUB} (points of the subsample), got {n_sub!r}")
    n_sub = int(n_sub)
    if n_sub > n_points:
        raise InputError(f"n_sub = {n_sub} is larger than the data ({n_points} points"
                         + (f" of {rpp} rows" if rpp > 1 else "") + f"): use n_sub <= {n_points}")
    n_total = n_points if n_total is None else n_total
    if isinstance(n_total, bool) or not isinstance(n_total, (int, np.integer)) or n_total < n_sub:
        raise InputError(f"n_total must be an integer >= n_sub = {n_sub} (points of the full data), got {n_total!r}")
    if isinstance(subsamples, bool) or not isinstance(subsamples, (int, np.integer)) or subsamples < 1:
        raise InputError(f"subsamples must be a positive integer, got {subsamples!r}")
    _parse_window(window, n_sub)          # refuse bad options before any work
    _parse_order(order)
    if family not in FAMILIES:
        raise InputError(f"family must be one of {FAMILIES}, got {family!r}")
    if weights is not None:
        increment_weights(np.zeros((1, n_sub)), weights)      # refuse bad weights before any work
    if np.ndim(d) not in (0, 1):
        raise InputError("d must be a scalar or a vector with one entry per row")
    if np.ndim(d) == 1 and np.shape(d)[0] != source.n:
        raise InputError(f"d must be a scalar or a vector of length {source.n}, got shape {np.shape(d)}")

    exact = _get_estimator("exact")
    rng = np.random.default_rng(seed)
    curves, loos, points, factor_times = [], [], [], []
    # small subsamples are factored in-process (LAPACK), which also gives the leave-one-out curve; a cluster
    # (client=) or a larger subsample goes through the engine, and the curvature probe uses the raw increments
    in_process = client is None and n_sub * rpp <= LOO_MAX_ROWS
    for s in range(int(subsamples)):
        pts = rng.choice(n_points, size=n_sub, replace=False)
        sub = SubsetSource(source, pts, rows_per_point=rpp)
        d_sub = d if np.ndim(d) == 0 else np.asarray(d, dtype=np.float64)[sub.parent_rows(np.arange(sub.n))]
        if in_process:
            tf = time.perf_counter()
            L = _factor_in_process(sub, t, d_sub)
            if L is not None:
                lp = 2.0 * np.log(np.diagonal(L)).reshape(n_sub, rpp).sum(axis=1)
                curves.append(np.cumsum(lp))
                from threadpoolctl import threadpool_limits

                with threadpool_limits(1 if sub.n <= SINGLE_THREAD_ROWS else None):
                    loos.append(loo_increments(L, rpp))
                points.append(pts)
                factor_times.append(time.perf_counter() - tf)
                continue
        try:
            r = exact(sub, assume="spd", t=t, d=d_sub, block_size=block_size, budget=budget, client=client,
                      **options)
        except NotPSDError as e:
            point = None if e.row is None else int(pts[e.row // rpp])
            raise ExtrapolationError(
                f"subsample {s} is not positive definite (failed at its row {e.row}, point {point} of the source): "
                "ℓ_k is not finite there; add a diagonal shift d= (jitter) or use a smaller n_sub") from e
        lp = np.asarray(r.log_pivots, dtype=np.float64).reshape(n_sub, rpp).sum(axis=1)
        curves.append(np.cumsum(lp))
        points.append(pts)
        factor_times.append(float(r.diagnostics.get("wall_time", math.nan)))
    loo = np.array(loos) if len(loos) == len(curves) else None
    crossed = crossed_boundaries(source, n_sub, int(n_total))
    used_family = family if family != "auto" else ("boxcox" if crossed else "issue")
    if crossed:
        where = ", ".join(f"layer {b['layer']} ({b['kind']}, {b['parameters']} parameters) at {b['points']} points"
                          for b in crossed)
        log.warning("extrapolate: rank boundaries of the model lie between n_sub = %d and n_total = %d points (%s): "
                    "the network is narrow for this data set, and such NTKs' curves bend beyond the subsample "
                    "(measured on full-output MLP NTKs: the scaling law 7-20%% off, the Box-Cox probe 3-9%%). %s",
                    n_sub, int(n_total), where,
                    "The estimate is the probe's (family='auto')." if used_family == "boxcox" else
                    f"family={family!r} was asked for.")
    # t·A + d·I ⪰ (t·jitter + min d)·I for a kernel source with a jitter: no increment falls below its log
    shift = t * float(getattr(source, "jitter", 0.0) or 0.0) + float(np.min(d))
    floor = rpp * math.log(shift) if shift > 0 else None
    fit = fit_curves(np.array(curves), int(n_total), window=window, order=order, ridge=ridge, loo=loo,
                     family=used_family, floor=floor, weights=weights)
    est, se = fit["estimate"], fit["stderr"]
    status = ("scaling-law-rejected" if fit["law_rejected"] else "rank-boundary" if crossed
              else "ok" if fit["validated"] else "unvalidated")
    diagnostics = {
        "wall_time": time.perf_counter() - t0,
        "factor_wall_times": factor_times,
        "n_total": int(n_total),
        "n_sub": n_sub,
        "subsample_sizes": [n_sub] * int(subsamples),
        "subsample_rows": n_sub * rpp,
        "rows_per_point": rpp,
        "subsamples": int(subsamples),
        "seed": seed if seed is None or isinstance(seed, (int, np.integer)) else repr(seed),
        "band": (est - 2.0 * se, est + 2.0 * se),
        "ell": np.array(curves),
        "points": np.array(points),
        "ridge": ridge,
        "factorization": "in-process" if in_process else "engine",
        "t": t,
        "d": d if np.ndim(d) == 0 else "vector",
        "family_asked": family,
        "rank_boundaries": crossed,
        **{k: v for k, v in fit.items() if k not in ("estimate", "stderr", "ell_mean")},
    }
    log.info("extrapolate: %d subsample(s) of %d points -> n = %d: %.6g ± %.3g (window %s, order %s)",
             subsamples, n_sub, n_total, est, se, fit["window"], fit["order"])
    return LogdetResult(logdet=est, sign=1.0, method="extrapolate", n=int(n_total) * rpp, dtype=str(source.dtype),
                        stderr=se, assume="spd", status=status, diagnostics=diagnostics)
