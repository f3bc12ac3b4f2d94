r"""The scaling law of log-determinants: its family, its fit with window and order chosen by validation, the
Box-Cox curvature probe and the leave-one-out increments (pure maths on ℓ_k curves; the method that factors the
subsamples is :mod:`dlogdet.estimators.extrapolate`).

ℓ(n) = a₀ + a₁n + (b₀ + Σᵢ₌₁^q bᵢn⁻ⁱ)·ln n! + Σᵢ₌₁^r cᵢn⁻ⁱ, fitted to ℓ_k = log det K_k (k ≤ n_s) and read at n.

Why it works: under a scaling law, det K_n / det K_{n−1} ≈ c·n^(−ν), so the per-point increments
δ_k = ℓ_k − ℓ_{k−1} are ≈ a₁ − ν ln k plus corrections that vanish with k, which the family above integrates.

What :func:`fit_curves` adds to the published fit, whose error moves a great deal with the window and the order:

- **Fit on increments, anchored at the observed end.** ℓ_k is a cumulative sum whose noise is a random walk; the
  increments have nearly independent noise, so least squares on δ_k is the efficient (GLS) fit, and the estimate is
  ℓ̂(n) = ℓ_{n_s} + Σ_{k=n_s+1}^{n} δ̂(k): only the unobserved increments are modelled.
- **Window and order by held-out validation.** Every candidate (window start n₀ ∈ n_s·:data:`WINDOW_FRACTIONS`,
  q, r ≤ :data:`MAX_ORDER`) is refitted on the same window shrunk by ρ ∈ :data:`HOLDOUT_RATIOS` and asked to
  predict the observed ℓ_{n_s}; its squared validation error (noise included, which keeps the band honest) is
  scaled to the real extrapolation ratio R = n/n_s (increment errors that grow linearly in log k: the extrapolated
  error grows as n_s·I(R) / (n_h·I(ρ)) with I(u) = u ln u − u + 1). The candidate with the least estimated mean
  squared error (prediction variance + scaled validation bias²) is kept.
- **An uncertainty that includes the model error.** stderr² = σ²_stat (sandwich variance of the fit's prediction,
  and the spread over subsamples when there are several) + max(σ_val, σ_curv)² (the scaled validation error above;
  the curvature probe, below) + σ²_sel (the spread of the best candidates' predictions: the choice of window and
  order) + σ²_law (below).
- **A test of the law itself.** A quadratic-in-ln k term fitted to the tail of the increments measures curvature in
  log-log that no member of the family can follow. Its t-statistic and the relative change of the local log-log
  slope across the window weigh σ_law = half the larger distance from the estimate to two brackets: the monotone
  bound (E δ_k never increases with k, since conditioning on more points can only shrink a Schur complement:
  ℓ_n ≤ ℓ_{n_s} + (n − n_s)·δ̄_tail) and an increment curve that keeps falling linearly in k. With |t| ≥ 2 and a
  slope change ≥ 100% the law is rejected (``law_rejected``). The estimate is also capped by the monotone bound.
- **Curvature beyond the window (σ_curv).** The Box-Cox probe (:func:`boxcox_fit`: δ_k = α + β·(k^γ − 1)/γ, γ by
  profile least squares over :data:`BOXCOX_GAMMAS`, fitted on (n_s/10, n_s]) extrapolates with the curvature the
  subsample shows; σ_curv = :data:`CURVATURE_WEIGHT` × |probe − family| enters the band. Why: the increments of a
  trained network's NTK fall faster than any power law beyond the subsample, which no held-out check inside the
  curve can see. ``family="boxcox"`` returns the probe's curve as the estimate with the same band.
- **Leave-one-out increments for the probe.** :func:`loo_increments` gives, from a subsample's Cholesky factor and
  one triangular inversion, the mean increment of each of the first k points added last, for every k: the same
  expectation as δ_k with far less noise, which the probe fits instead of the raw increments.
- **Weights.** ``weights="inverse-variance"`` (or an array, one weight per increment) makes the least squares
  weighted; the HC1 sandwich keeps σ_stat honest under any weighting. Not the default: it showed no consistent
  gain.
- **A known floor.** When M ⪰ a·I (a kernel's jitter, a shift d > 0), no increment falls below rpp·log a: every
  extrapolated increment (family, probe, falling bracket) is raised to that ``floor`` (an RBF kernel's increments
  reach it between n_s and n).

The measurements behind these choices, and the honesty of the band (estimate ± 2·stderr), are on the benchmark
page ``docs/benchmarks/extrapolate.md`` (``benchmarks/extrapolate.py``) and in ``tests/test_extrapolate.py``.
"""

from .family import BOXCOX_GAMMAS, boxcox_fit, evaluate, features, loo_increments
from .fit import (CURVATURE_WEIGHT, FAMILIES, HOLDOUT_RATIOS, MAX_ORDER, MIN_START, RENAMED_FAMILIES,
                  TOP_CANDIDATES, VARIANCE_SMOOTHING, WEIGHTINGS, WINDOW_FRACTIONS, family_name, fit_curves,
                  increment_weights, parse_order, parse_window)
from .records import BoxCoxProbe, Candidate, CurveFit, StderrParts

__all__ = ["BOXCOX_GAMMAS", "CURVATURE_WEIGHT", "FAMILIES", "HOLDOUT_RATIOS", "MAX_ORDER", "MIN_START",
           "RENAMED_FAMILIES", "TOP_CANDIDATES", "VARIANCE_SMOOTHING", "WEIGHTINGS", "WINDOW_FRACTIONS", "BoxCoxProbe",
           "Candidate", "CurveFit", "StderrParts", "boxcox_fit", "evaluate", "features", "family_name", "fit_curves",
           "increment_weights", "loo_increments", "parse_order", "parse_window"]
