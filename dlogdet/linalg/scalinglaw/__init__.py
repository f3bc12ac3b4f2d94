r"""The scaling law of log-determinants: its family (:mod:`.family`), its fit with window and order chosen by
validation (:mod:`.fit`), its band (:mod:`.band`) and the Box-Cox curvature probe (:mod:`.probe`) — pure maths on
ℓ_k curves; the method that factors the subsamples is :mod:`dlogdet.estimators.extrapolate`.

ℓ(n) = a₀ + a₁n + (b₀ + Σᵢ₌₁^q bᵢn⁻ⁱ)·ln n! + Σᵢ₌₁^r cᵢn⁻ⁱ, fitted to ℓ_k = log det K_k (k ≤ n_s) and read at n.

Why it works: under a scaling law, det K_n / det K_{n−1} ≈ c·n^(−ν), so the per-point increments
δ_k = ℓ_k − ℓ_{k−1} are ≈ a₁ − ν ln k plus corrections that vanish with k, which the family above integrates.

What :func:`fit_curves` adds to the published fit, whose error moves a great deal with the window and the order:

- **Fit on increments, anchored at the observed end.** ℓ_k is a cumulative sum whose noise is a random walk; the
  increments have nearly independent noise, so least squares on δ_k is the efficient (GLS) fit, and the estimate is
  ℓ̂(n) = ℓ_{n_s} + Σ_{k=n_s+1}^{n} δ̂(k): only the unobserved increments are modelled.
- **On the leave-one-out curves where every subsample has one** (:func:`loo_increments`: the mean increment of
  each of the first k points added last, the same expectation E δ_k from the same k points): the family, its
  window and order are fitted to their mean instead of the raw increments, unless the law's test rejects the law.
  Why: the estimate's spread is then about 0.6 of the raw fit's
  (:data:`~dlogdet.linalg.scalinglaw.band.LOO_SAMPLING`), and with less noise the held-out validation can afford the
  orders that follow a slope still steepening at n_s (a Matérn kernel in 3-D, whose corrections decay as k^(−2/3)).
- **Window and order by held-out validation.** Every candidate (window start n₀ ∈ n_s·:data:`WINDOW_FRACTIONS`,
  q, r ≤ :data:`MAX_ORDER`) is refitted on the same window shrunk by ρ ∈ :data:`HOLDOUT_RATIOS` and asked to
  predict the observed ℓ_{n_s}; its squared validation error (noise included, which keeps the band honest) is
  scaled to the real extrapolation ratio R = n/n_s (increment errors that grow linearly in log k: the extrapolated
  error grows as n_s·I(R) / (n_h·I(ρ)) with I(u) = u ln u − u + 1). The candidate with the least estimated mean
  squared error (prediction variance + scaled validation bias²) is kept.
- **An uncertainty that includes the model error.** stderr² = σ²_sampling + σ²_model (:mod:`.band`):
  the sampling part from the noise of the increments (it falls as 1/√S with S subsamples), the model part from the
  next best candidates, the held-out validation above and the Box-Cox probe's distance, weighed by how well each
  curve predicts held-out data. The estimate is capped by the monotone bound (E δ_k never increases with k, since
  conditioning on more points only shrinks a Schur complement).
- **A test of the law.** A quadratic-in-ln k term fitted to the tail of the increments measures log-log curvature
  that no member of the family can follow; with |t| ≥ 2 and a slope change ≥ 100% across the window the law is
  rejected (``law_rejected``, status ``scaling-law-rejected``).
- **Curvature beyond the window.** The Box-Cox probe (:mod:`.probe`) extrapolates with the curvature
  the subsample shows, fitted to the leave-one-out increments (:func:`loo_increments`: the same expectation as δ_k
  with far less noise) where the factor was kept; ``family="boxcox"`` returns its curve as the estimate with the same
  band. Why: the increments of a trained network's NTK fall faster than any power law beyond the subsample, which no
  held-out check inside the curve can see.
- **Weights.** ``weights="inverse-variance"`` (or an array, one weight per increment) makes the least squares
  weighted (the band's sampling part follows the weights). Not the default: it showed no consistent
  gain.
- **A known floor.** When M ⪰ a·I (a kernel's jitter, a shift d > 0), every increment is at least the floor
  f = rpp·log a. Where there is one the family is fitted to the increments' excess over it, log(e^δ − e^f), and read
  back as log(e^fit + e^f): near the floor the increments bend onto it smoothly, which a power law raised to the floor
  (the earlier rule) read as a corner, too low (an RBF kernel in 2-D at jitter 1e-4: 1.8% → 0.4% mean error on the
  calibration curves of ``benchmarks/extrapolate_calibration.py``). Far above the floor the excess is δ itself.

The measurements behind these choices, and the honesty of the band (estimate ± 2·stderr), are on the benchmark
page ``docs/benchmarks/extrapolate.md`` (``benchmarks/extrapolate.py``) and in ``tests/test_extrapolate.py``.
"""

from .band import CURVATURE_WEIGHT, NOISE_SMOOTHING, VALIDATION_WEIGHT
from .family import MAX_ORDER, evaluate, features
from .fit import (CURVE_POINTS, FAMILIES, HOLDOUT_RATIOS, RENAMED_FAMILIES, TOP_CANDIDATES, VARIANCE_SMOOTHING,
                  WEIGHTINGS, WINDOW_FRACTIONS, family_name, fit_curves, increment_weights, parse_order, parse_window)
from .probe import BOXCOX_GAMMAS, MIN_START, boxcox_fit, loo_increments
from .records import BoxCoxProbe, Candidate, CurveFit, StderrParts

__all__ = ["BOXCOX_GAMMAS", "CURVATURE_WEIGHT", "CURVE_POINTS", "FAMILIES", "HOLDOUT_RATIOS", "MAX_ORDER", "MIN_START",
           "NOISE_SMOOTHING", "RENAMED_FAMILIES", "TOP_CANDIDATES", "VALIDATION_WEIGHT", "VARIANCE_SMOOTHING",
           "WEIGHTINGS", "WINDOW_FRACTIONS", "BoxCoxProbe", "Candidate", "CurveFit", "StderrParts", "boxcox_fit",
           "evaluate", "features", "family_name", "fit_curves", "increment_weights", "loo_increments", "parse_order",
           "parse_window"]
