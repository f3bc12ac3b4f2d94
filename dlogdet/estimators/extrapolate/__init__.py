r"""Scaling-law extrapolation: log det of n points from the log-pivots of a few small random subsamples.

ℓ(n) = a₀ + a₁n + (b₀ + Σᵢ₌₁^q bᵢn⁻ⁱ)·ln n! + Σᵢ₌₁^r cᵢn⁻ⁱ, fitted to ℓ_k = log det K_k (k ≤ n_s) and read at n.
One exact factorization of a random subsample of n_s points gives ℓ_k for every k ≤ n_s at once: the cumulative sums
of its log-pivots, grouped by point (:attr:`~dlogdet.TileSource.rows_per_point` rows per point: O for a
full-output NTK with O outputs).

Its parts: the method, its options and its result (:mod:`~dlogdet.estimators.extrapolate.estimate`); how many
subsamples, and how large, for the accuracy asked (:mod:`~dlogdet.estimators.extrapolate.adaptive`); drawing and
factoring them (:mod:`~dlogdet.estimators.extrapolate.subsamples`); the fit of their curves, its band and the Box-Cox
probe (:mod:`dlogdet.linalg.scalinglaw`, pure maths, whose names are re-exported here).
"""

from ...linalg.scalinglaw import (FAMILIES, RENAMED_FAMILIES, BoxCoxProbe, Candidate, CurveFit, StderrParts,
                                  boxcox_fit, evaluate, family_name, features, fit_curves, increment_weights,
                                  loo_increments, parse_order, parse_window)
from .adaptive import MAX_COST, Stop
from .estimate import PASSES_TO, ExtrapolateDiagnostics, crossed_boundaries, gemm_rate, run
from .subsamples import LOO_MAX_ROWS, SINGLE_THREAD_ROWS

__all__ = ["run", "ExtrapolateDiagnostics", "PASSES_TO", "MAX_COST", "Stop", "crossed_boundaries", "gemm_rate",
           "LOO_MAX_ROWS", "SINGLE_THREAD_ROWS", "FAMILIES",
           "RENAMED_FAMILIES", "BoxCoxProbe", "Candidate", "CurveFit", "StderrParts", "boxcox_fit", "evaluate",
           "family_name", "features", "fit_curves", "increment_weights", "loo_increments", "parse_order",
           "parse_window"]
