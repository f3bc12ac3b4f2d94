r"""The band of a scaling-law extrapolation: a sampling part that more subsamples shrink, and a model part that only
a larger subsample (a smaller extrapolation ratio) shrinks (pure maths; the fit is :mod:`dlogdet.linalg.scalinglaw`).

stderr² = σ²_sampling + σ²_model,   σ²_model = λ·σ²_val + σ²_sel + σ²_curv.

- **Sampling (σ_sampling), from the noise of the increments.** The fit's coefficients are linear in the window's
  mean increments, ĉ = H·δ̄, and the estimate is ℓ̄_{n_s} + gᵀĉ with g the sum of the family's increment features
  over the extrapolated points (those an increment floor does not hold). The increments of a random ordering are
  nearly independent (the variance of ℓ_k across subsamples is 0.5–1.1 times the sum of the increments' variances
  on the calibration cases of ``benchmarks/extrapolate.py``), so Var = Σ_k (gᵀH)_k²·v_k + Var(ℓ̄_{n_s}), with
  v_k the noise variance of the mean increment. v comes from half the squared first differences of the mean curve
  (Rice's difference estimator: a smooth trend cancels in a difference, the noise does not), smoothed along k: it
  holds noise only, not the family's misfit, so it does not widen the band where the fit is merely imperfect
  (the residual sandwich did: an RBF kernel's misfit read as noise 30× its real spread). It falls as 1/S with S
  subsamples by construction, since the mean curve's differences do. Where the family is fitted to the
  leave-one-out curves (:func:`~dlogdet.linalg.scalinglaw.fit_curves`), the same Σ_k (gᵀH)_k²·v_k is scaled by
  :data:`LOO_SAMPLING`²: those curves' noise is correlated along k, so their own differences do not measure it,
  and the ratio of their fit's spread to this sum was measured instead. With S ≥ 2 subsamples their own estimates
  (the chosen window and order fitted to each one's curve) spread by s, and s²/S estimates the same variance from
  the data of this run, with S − 1 degrees of freedom: the two are pooled as a prior of :data:`SPREAD_PRIOR_DOF`
  degrees of freedom and the sample's, σ²_sampling = (ν₀·σ²_noise + (S − 1)·s²/S) / (ν₀ + S − 1)
  (:func:`pooled_sampling`): the noise profile's variance depends on the window and order chosen, and is several
  times too large in some runs; the subsamples' spread follows the run's own error.
- **Model (σ_model).** What more subsamples of the same size would not remove:

  - σ_sel: the root mean square distance of the next best windows and orders' estimates (floored and capped the
    same way) from the chosen one — the choice itself, and the pre-asymptotic bias that the candidates disagree on;
  - λ·σ²_val: the chosen candidate's held-out validation error (:func:`~dlogdet.linalg.scalinglaw.fit_curves`), noise
    included, with weight λ = :data:`VALIDATION_WEIGHT`: a held-out check from n_s/ρ points, scaled ~30–100× to the
    real ratio, is mostly noise at the sizes that matter, so its square counts at a tenth;
  - σ_curv: the Box-Cox probe's distance from the family (:data:`CURVATURE_WEIGHT`), weighed by how well each curve
    predicts held-out data (:func:`curvature_part`).

  The test of the law (log-log curvature of the tail, :func:`curvature_test`) sets ``law_rejected`` but stays out of
  the band: its t-statistic grows with the data while its brackets (:func:`law_brackets`) lie far from smooth kernels'
  values, so it made the model part several times their error. The monotone bound of :func:`law_brackets` caps the
  estimate.

The constants (λ and the curvature weight) were set on the calibration cases of ``benchmarks/extrapolate.py``
(other point sets, dimensions, lengthscales and networks than the cases whose bands are reported), not on the
reported cases: ``docs/benchmarks/extrapolate.md`` has the measurements.
"""

from __future__ import annotations

import math

import numpy as np

from .records import StderrParts

#: Weight λ of the squared held-out validation error in the band (why: the scaled validation error is an
#: unbiased but very noisy measure of the model error — its noise is 1.5–2× the sampling part's; at weight 1 the
#: bands were 2–4× wider than the errors, at 0.1 they covered 90–100% of runs on the calibration cases).
VALIDATION_WEIGHT = 0.1
#: Standard deviation of an extrapolation fitted to the leave-one-out curves, as a fraction of the sampling part the
#: raw increments' noise gives the same fit (why: the leave-one-out curve's noise is correlated along k, so its own
#: differences do not measure it; over 40 single subsamples of each calibration case the spread of the estimates,
#: window and order chosen as usual, was 0.43–0.98 of it, median 0.61 (0.45 with the window and order held fixed):
#: ``benchmarks/extrapolate_calibration.py --loo-ratio``).
LOO_SAMPLING = 0.6
#: Degrees of freedom of the noise profile's sampling part when it is pooled with the spread of S ≥ 2 subsamples'
#: own estimates (why: on the calibration cases of ``benchmarks/extrapolate_calibration.py`` the spread's level
#: relative to the errors' 90% quantile varies less across cases than the noise profile's, while with S − 1 degrees
#: of freedom it is noisy itself; 3–4 kept the calibration group's coverage and width (0.90, 3.1×) and narrowed the
#: other groups' bands most: docs/benchmarks/extrapolate.md).
SPREAD_PRIOR_DOF = 4.0
#: Half-width of the moving average of the noise profile, as a fraction of n_s (why: one squared difference is a
#: χ²₁ variable; 2·5% of the curve averages ~0.1·n_s of them, while the noise level changes slowly along k).
NOISE_SMOOTHING = 0.05
#: Weight of the Box-Cox probe's distance |probe − family| in the band (why: the probe follows curvature in log-log
#: that the family cannot, and a trained network's NTK bends beyond the subsample where no held-out check sees it;
#: measured on the calibration NTK, docs/benchmarks/extrapolate.md).
CURVATURE_WEIGHT = 1.0


def parts(sampling: float, validation: float, selection: float, curvature: float,
          spread: float = math.nan) -> StderrParts:
    """The band's parts and the model part they make (module doc)."""
    model = math.sqrt(VALIDATION_WEIGHT * validation ** 2 + selection ** 2 + curvature ** 2)
    return StderrParts(sampling=float(sampling), model=float(model), validation=float(validation),
                       selection=float(selection), curvature=float(curvature), stat=float(sampling),
                       spread=float(spread))


def stderr_of(p: StderrParts) -> float:
    """√(sampling² + model²)."""
    return math.hypot(p.sampling, p.model)


# --------------------------------------------------------------------------------------------- the sampling part


def noise_profile(d: np.ndarray) -> np.ndarray:
    """Noise variance of each increment of the curve ``d`` (k = 1..n_s): half the squared first differences,
    smoothed over ±:data:`NOISE_SMOOTHING`·n_s (module doc)."""
    d = np.asarray(d, dtype=np.float64)
    ns = d.size
    if ns < 3:
        return np.zeros(ns)
    r = np.diff(d) ** 2 / 2.0
    r = np.r_[r[:1], r]
    h = max(int(round(NOISE_SMOOTHING * ns)), 2)
    return np.convolve(np.pad(r, h, mode="edge"), np.ones(2 * h + 1) / (2 * h + 1), mode="valid")


def pooled_sampling(noise: float, per_subsample) -> tuple[float, float]:
    """The sampling part from the noise profile's ``noise`` and the S subsamples' own estimates ``per_subsample``:
    (√((ν₀·noise² + (S − 1)·s²/S) / (ν₀ + S − 1)), s/√S), s their standard deviation and ν₀
    :data:`SPREAD_PRIOR_DOF` (module doc); ``(noise, nan)`` with fewer than 2 (no spread to measure)."""
    e = np.asarray(per_subsample if per_subsample is not None else [], dtype=np.float64)
    S = e.size
    if S < 2 or not np.all(np.isfinite(e)):
        return float(noise), math.nan
    spread2 = float(np.var(e, ddof=1)) / S
    nu = SPREAD_PRIOR_DOF
    return math.sqrt((nu * noise * noise + (S - 1) * spread2) / (nu + S - 1)), math.sqrt(spread2)


def prediction_variance(hat: np.ndarray, g: np.ndarray, v_window: np.ndarray) -> float:
    """Var(gᵀĉ) for coefficients ĉ = hat·δ of the window's increments δ, independent with variances ``v_window``."""
    w = np.asarray(g, dtype=np.float64) @ hat
    return float(np.sum(w * w * v_window))


def anchor_variance(v: np.ndarray, ns: int, n_total: int) -> float:
    """Var(ℓ̄_{n_s}): the sum of the increments' noise, with the finite-population factor 1 − n_s/n (a subsample
    of all n points has no spread)."""
    return float(np.sum(v)) * max(1.0 - ns / n_total, 0.0)


# ------------------------------------------------------------------------------------------------ the law's test


def curvature_test(delta: np.ndarray, a: int, b: int) -> tuple[float, float]:
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


def law_brackets(d: np.ndarray, n_total: int, floor: float | None) -> tuple[float, float]:
    """The two brackets of σ_law: the monotone upper bound ℓ_{n_s} + (n − n_s)·(tail mean + 2 se) (E δ_k never
    increases with k: conditioning on more points only shrinks a Schur complement) and an increment curve that
    keeps falling linearly in k (raised to ``floor`` where there is one)."""
    ns = d.size
    N = int(n_total)
    ell_end = float(d.sum())
    m = max(ns // 10, min(10, ns))
    tail = d[ns - m:]
    upper = ell_end + (N - ns) * (float(tail.mean()) + 2.0 * float(tail.std(ddof=1) if m > 1 else 0.0) / math.sqrt(m))
    a = ns // 4
    kk = np.arange(a + 1, ns + 1, dtype=np.float64)
    lin, *_ = np.linalg.lstsq(np.stack([np.ones_like(kk), kk], axis=-1), d[a:], rcond=None)
    if floor is None:
        kf_sum = (N * (N + 1) - ns * (ns + 1)) / 2.0
        return upper, ell_end + lin[0] * (N - ns) + lin[1] * kf_sum
    kf = np.arange(ns + 1, N + 1, dtype=np.float64)
    return upper, ell_end + float(np.maximum(lin[0] + lin[1] * kf, floor).sum())


def curvature_part(family: str, probe: float, scaling_law: float, probe_weight: float) -> float:
    """σ_curv = :data:`CURVATURE_WEIGHT` × √w × |probe − family|, w the weight of the curve that does not give the
    estimate (the probe's held-out weight, or 1 minus it): were the truth on that curve with probability w and on
    the estimate's otherwise, the mean squared distance would be w·(probe − family)²."""
    w = probe_weight if family != "boxcox" else 1.0 - probe_weight
    return CURVATURE_WEIGHT * math.sqrt(min(max(w, 0.0), 1.0)) * abs(probe - scaling_law)


def law_rejected(t_curv: float, slope_change: float) -> bool:
    """The law fails: significant (|t| ≥ 2) and large (slope change ≥ 100%) curvature in log-log."""
    return abs(t_curv) >= 2.0 and slope_change >= 1.0
