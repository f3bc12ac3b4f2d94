"""The typed results of the scaling-law fit: the band's parts, the Box-Cox probe, a candidate window and order, and
the whole fit (the maths: :mod:`dlogdet.linalg.scalinglaw`)."""

from __future__ import annotations

import math

import numpy as np

from ...core.diagnostics import Record, record


@record
class StderrParts(Record):
    """The parts of an extrapolation's stderr (module doc): stderr² = sampling² + model², model² =
    λ·validation² + selection² + curvature²; ``stat`` is the sampling part's old name (the same number); ``spread``
    the standard deviation of the subsamples' own estimates over √S, pooled into the sampling part (nan with one
    subsample)."""

    sampling: float
    model: float
    validation: float
    selection: float
    curvature: float
    stat: float
    spread: float = math.nan


@record
class BoxCoxProbe(Record):
    """The Box-Cox curvature probe: its exponent γ, its estimate, the window (n0, n_s] it was fitted on, the
    curve it was fitted to (``"loo"``: the leave-one-out increments; ``"increments"``: the raw ones), its
    coefficients α, β, and its weight against the family from their held-out errors (0 where it fell back to the
    family)."""

    gamma: float
    estimate: float
    window: tuple[int, int]
    on: str
    alpha: float = math.nan
    beta: float = math.nan
    weight: float = 0.0


@record
class Candidate(Record):
    """One window and order tried: its prediction and standard deviation, its scaled validation error
    (``model``), its estimated mean squared error, and whether a held-out check fitted."""

    n0: int
    n1: int
    q: int
    r: int
    prediction: float
    sd: float
    model: float
    mse: float
    validated: bool


@record
class CurveFit(Record):
    """What :func:`fit_curves` finds: the estimate at n_total, its stderr and how both were chosen.

    Attributes
    ----------
    estimate, stderr : float
    components : StderrParts
    family : str
        The curve that gave the estimate ("scaling-law" or "boxcox").
    weights : str or None
        "inverse-variance", "array" or None.
    fitted_to : str
        The curve the family was fitted to: "loo" (the mean leave-one-out curve, where every subsample had one and
        no weights were given) or "increments" (the mean raw increments).
    boxcox : BoxCoxProbe
    scaling_law_estimate : float
        The scaling-law family's estimate (the estimate unless ``family="boxcox"``).
    window, order : tuple
        The chosen (n0, n1) and (q, r).
    coefficients : dict
        a0, a1, b, c of the chosen fit (:func:`evaluate`; of the increments' excess over the floor where there is
        one, anchored at ℓ_{n_s}).
    extrapolation_ratio : float
        n_total / n_s.
    curvature_t, slope_change : float
        The test of the law; ``law_rejected`` its verdict.
    upper_monotone, falling_bracket : float
        The monotone bound that caps the estimate, and an increment curve that keeps falling linearly in k (a
        pessimistic bracket, reported beside it).
    validated : bool
        Whether a held-out check of the chosen candidate fitted.
    floor : float or None
        The increments' lower bound that was applied.
    per_subsample : list or None
        Each subsample's estimate (2 or more subsamples).
    candidates : list of Candidate
    ell_mean : numpy.ndarray
        The mean ℓ_k curve.
    curves : dict
        ``{"n": [...], "scaling-law": [...], "boxcox": [...] or None}``: both curves as the estimate reads them,
        from the window's start to n_total (:func:`_curves`), for a plot whose curve ends at the estimate.
    """

    RENAMED = {"issue_estimate": "scaling_law_estimate"}

    estimate: float
    stderr: float
    components: StderrParts
    family: str
    weights: str | None
    fitted_to: str
    boxcox: BoxCoxProbe
    scaling_law_estimate: float
    window: tuple[int, int]
    order: tuple[int, int]
    coefficients: dict
    extrapolation_ratio: float
    curvature_t: float
    slope_change: float
    law_rejected: bool
    upper_monotone: float
    falling_bracket: float
    validated: bool
    floor: float | None
    per_subsample: list | None
    candidates: list
    ell_mean: np.ndarray
    curves: dict
