"""Window and order of the scaling-law fit chosen by held-out validation, the band and its parts, the Box-Cox
probe's weight and the curves a plot draws: :func:`fit_curves` (the maths: :mod:`dlogdet.linalg.scalinglaw`)."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ...core.errors import ExtrapolationError, InputError, warn_renamed
from . import band
from .family import (CACHED_ROWS, MAX_ORDER, _above_floor, _design, _extrapolated, _extrapolated_many, _Fit, _fit,
                     _growth, _predict, features)
from .probe import MIN_START, _boxcox_increments, _boxcox_select, _sum_increments
from .probe import probe as _probe
from .records import BoxCoxProbe, Candidate, CurveFit, StderrParts

#: Window starts tried by ``window="auto"``, as fractions of n_s (why: from "almost everything" to "the last 70%";
#: early points carry small-k transients, late windows leave too few points for the slope).
WINDOW_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
#: Hold-out ratios of the validation: the window shrunk by ρ predicts the observed end (why: several ratios average
#: the noise of a single hold-out; 4 still leaves a quarter of the curve to fit).
HOLDOUT_RATIOS = (2.0, 3.0, 4.0)
#: Candidates whose prediction spread enters σ_sel (why: the few nearly as good as the best are the real
#: alternatives; the worst ones would only widen the band).
TOP_CANDIDATES = 5
#: Points of each extrapolation curve kept for a plot (``CurveFit.curves``: log-spaced, so ~10 KB of JSON).
CURVE_POINTS = 120
#: Families of ``family=``: "auto" (the default of :func:`dlogdet.extrapolate`: the Box-Cox probe where the source reports
#: a rank boundary between n_sub and n_total, the scaling-law family elsewhere), the scaling-law family ℓ(n) above, or the
#: Box-Cox probe.
FAMILIES = ("auto", "scaling-law", "boxcox")
#: Old spellings of the families, accepted with a deprecation warning.
RENAMED_FAMILIES: Mapping[str, str] = {"issue": "scaling-law"}
#: Weightings of ``weights=`` besides an array: "inverse-variance" weighs each increment by the inverse of its local
#: variance (the spread of the subsamples' increments around their mean, or with one subsample the squared
#: residuals of a quadratic-in-ln k fit), both smoothed over :data:`VARIANCE_SMOOTHING` of the curve.
WEIGHTINGS = ("inverse-variance",)
#: Half-width of the moving average of the local variance, as a fraction of n_s (why: a per-k variance from one
#: ordering is a single squared residual; 5% of the curve averages about 2·0.05·n_s of them).
VARIANCE_SMOOTHING = 0.05




def family_name(family: str, *, auto: bool = True) -> str:
    """The family ``family`` names (an old spelling with a deprecation warning), or an InputError listing them."""
    if family in RENAMED_FAMILIES:
        warn_renamed(family, RENAMED_FAMILIES[family], "family", stacklevel=4)
        family = RENAMED_FAMILIES[family]
    allowed = FAMILIES if auto else FAMILIES[1:]
    if family not in allowed:
        raise InputError(f"family must be one of {allowed}" + ("" if auto else " here (\"auto\" needs the source: "
                                                               "dlogdet.extrapolate)") + f", got {family!r}")
    return family


# ------------------------------------------------------------------------------------------------ the selection


def parse_order(order) -> list[tuple[int, int]]:
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


def parse_window(window, n_sub: int) -> list[tuple[int, int]] | None:
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


def _checked_curves(ell, loo, n_total: int) -> tuple[np.ndarray, np.ndarray | None, int]:
    """ℓ_k (and leave-one-out) curves as (S, n_s) float64 arrays, finite, with n_total ≥ n_s; else the error that
    names the fix."""
    ell = np.atleast_2d(np.asarray(ell, dtype=np.float64))
    if ell.ndim != 2 or ell.shape[1] < 2:
        raise ExtrapolationError(f"need ℓ_k curves of shape (n_s,) or (S, n_s) with n_s >= 2, got {ell.shape}")
    if not np.all(np.isfinite(ell)):
        bad = int(np.argmax(~np.all(np.isfinite(ell), axis=0))) + 1
        raise ExtrapolationError(f"the ℓ_k curve is not finite from k = {bad} on (a singular subsample): add a "
                                 "diagonal shift d= (jitter) or use a smaller n_sub")
    if loo is not None:
        loo = np.atleast_2d(np.asarray(loo, dtype=np.float64))
        if loo.ndim != 2 or loo.shape[1] != ell.shape[1] or not 1 <= loo.shape[0] <= ell.shape[0] \
                or not np.all(np.isfinite(loo)):
            raise ExtrapolationError(f"loo curves must be finite, of the length of ell {ell.shape} and at most as many, "
                                     f"got {loo.shape}")
    return ell, loo, int(n_total)


def _validation_error(d: np.ndarray, n0: int, n1: int, q: int, r: int, ridge: float, w, ratio: float) -> list[float]:
    """Squared held-out errors of a candidate, one per hold-out ratio ρ that leaves enough points: the window
    shrunk by ρ predicts the observed ℓ_{n_s}, its error scaled to the real extrapolation ratio (module doc)."""
    ns, p = d.size, 2 + q + r
    ell_end = float(d.sum())
    bias2 = []
    for rho in HOLDOUT_RATIOS:
        nh = int(round(ns / rho))
        h0, h1 = max(int(round(n0 / rho)), 1), max(int(round(n1 / rho)), 1)
        if h1 - h0 < max(3 * p, 10) or nh >= ns:
            continue
        hf = _fit(d, h0, h1, q, r, ridge, w)
        ph, _ = _predict(hf, nh, float(d[:nh].sum()), [ns])
        err = float(ph[0]) - ell_end
        scale = ns * _growth(ratio) / (nh * _growth(rho)) if ratio > 1 else 0.0
        # the whole held-out error, noise included: subtracting the noise's expected share left the bands too
        # narrow where the pre-asymptotic bias is systematic (docs/benchmarks/extrapolate.md)
        bias2.append(err * err * scale * scale)
    return bias2


def _candidates(d: np.ndarray, N: int, orders, windows, ridge: float, w) -> list[tuple[Candidate, _Fit]]:
    """Every window and order that has enough points, fitted, and validated where it can still be among the
    :data:`TOP_CANDIDATES` best (least estimated MSE) — a candidate whose prediction variance alone exceeds the
    MSE of the 5th best validated so far cannot, and keeps ``mse = inf``; best first."""
    ns = d.size
    ell_end = float(d.sum())
    auto_window = windows is None
    fits: list[tuple[float, float, _Fit]] = []
    for q, r in orders:
        p = 2 + q + r
        wins = windows if not auto_window else sorted({(max(int(round(f * ns)), MIN_START), ns)
                                                       for f in WINDOW_FRACTIONS})
        for n0, n1 in wins:
            if n1 - n0 < (_min_points(p) if auto_window else 3 * p):
                continue
            if w is not None and np.count_nonzero(w[n0:n1]) < 3 * p:
                continue                              # weights that leave too few increments in this window
            fit = _fit(d, n0, n1, q, r, ridge, w)
            preds, sds = _predict(fit, ns, ell_end, [N])
            fits.append((float(sds[0]), float(preds[0]), fit))
    out: list[tuple[Candidate, _Fit]] = []
    best: list[float] = []
    for sd, pred, fit in sorted(fits, key=lambda t: t[0]):
        if len(best) >= TOP_CANDIDATES and sd * sd >= best[TOP_CANDIDATES - 1]:
            out.append((Candidate(n0=fit.n0, n1=fit.n1, q=fit.q, r=fit.r, prediction=pred, sd=sd, model=math.nan,
                                  mse=math.inf, validated=False), fit))
            continue
        bias2 = _validation_error(d, fit.n0, fit.n1, fit.q, fit.r, ridge, w, N / ns)
        validated = bool(bias2)
        s_val = math.sqrt(max(float(np.mean(bias2)), 0.0)) if validated else sd
        out.append((Candidate(n0=fit.n0, n1=fit.n1, q=fit.q, r=fit.r, prediction=pred, sd=sd, model=s_val,
                              mse=sd * sd + s_val * s_val, validated=validated), fit))
        best = sorted(best + [sd * sd + s_val * s_val])
    if not out:
        p = 2 + min(q + r for q, r in orders)
        need = _min_points(p) if auto_window else 3 * p
        raise ExtrapolationError(
            f"the ℓ_k curve is too short for the order: a fit of order {orders[0] if len(orders) == 1 else 'auto'} "
            f"needs at least {need} points in the window, the subsample has n_s = {ns}"
            + ("" if auto_window else f" and the window {windows[0]} has {windows[0][1] - windows[0][0]}")
            + ("" if w is None else ", counting only increments of non-zero weight")
            + ": use a larger n_sub, a wider window or a lower order")
    out.sort(key=lambda cf: cf[0].mse)
    return out


def _per_subsample(fit: _Fit, curves: np.ndarray, ends: np.ndarray, N: int, ridge: float, w,
                   floor: float | None, upper: float) -> list | None:
    """Each subsample's own estimate with the chosen window and order, from the increment curve the family was
    fitted to (its leave-one-out curve, or its raw increments) anchored at its ℓ_{n_s}, read as the estimate is
    (through the floor, capped by the monotone bound): 2 or more subsamples; their spread enters the band's sampling
    part (:func:`~dlogdet.linalg.scalinglaw.band.pooled_sampling`)."""
    S, ns = curves.shape
    if S < 2:
        return None
    fits = [_fit(curves[s], fit.n0, fit.n1, fit.q, fit.r, ridge, w) for s in range(S)]
    if floor is None:
        est = [float(_predict(f, ns, float(ends[s]), [N])[0][0]) for s, f in enumerate(fits)]
    else:
        est = _extrapolated_many(np.stack([f.coef for f in fits], axis=1), fit.q, fit.r, ns, N, ends, floor).tolist()
    return [min(e, upper) for e in est]


def _cumulative(inc, a: int, points, floor: float | None) -> list[float]:
    """Σ_{k=a+1}^{n} of inc(k) through the floor (:func:`_sum_increments`) at each of the sorted ``points`` n ≥ a."""
    out, total, pos = [], 0.0, a
    for n in points:
        total += _sum_increments(inc, pos, int(n), floor)
        pos = max(pos, int(n))
        out.append(total)
    return out


def _curves(fit: _Fit, probe: BoxCoxProbe, ns: int, N: int, ell_end: float, floor: float | None,
            upper: float) -> dict:
    """Both curves as the estimate reads them, at ≤ :data:`CURVE_POINTS` log-spaced n from the window's start to
    n_total (n_s and n_total included), anchored at ℓ_{n_s}: the family's increments (through the floor) summed back
    inside the subsample and forward beyond it, capped by the monotone bound's line; the Box-Cox probe the same way
    from its window's start (None where it fell back to the family). Each ends at its estimate, so a plot's curve
    and point agree."""
    grid = np.unique(np.r_[np.geomspace(max(fit.n0, 1), N, CURVE_POINTS).round(), ns, N]).astype(int)
    inside, beyond = grid[grid <= ns], grid[grid > ns]
    cap = ell_end + (beyond - ns) * ((upper - ell_end) / (N - ns) if N > ns else 0.0)

    def curve(inc, start: int):
        mine = inside[inside >= start]
        lo = int(mine[0]) if mine.size else ns
        if N - lo <= CACHED_ROWS:            # all increments at once: C[j] = Σ_{k=lo+1}^{lo+j} (through the floor)
            v = inc(np.arange(lo + 1, N + 1, dtype=np.float64))
            C = np.r_[0.0, np.cumsum(v if floor is None else np.logaddexp(v, floor))]
            back = (ell_end - (C[ns - lo] - C[mine - lo])).tolist()
            ahead = np.minimum(ell_end + C[beyond - lo] - C[ns - lo], cap)
        else:
            back = [ell_end - _sum_increments(inc, int(n), ns, floor) for n in mine]
            ahead = np.minimum(ell_end + np.array(_cumulative(inc, ns, beyond, floor)), cap)
        return [*([None] * int(np.sum(inside < start))), *back, *ahead.tolist()]

    def fam(k):
        k = np.asarray(k)
        if k.size and k[0] >= 2 and k[-1] <= CACHED_ROWS and np.all(np.diff(k) == 1):
            return _design(int(k[0]) - 1, int(k[-1]), fit.q, fit.r) @ fit.coef
        return (features(k, fit.q, fit.r) - features(k - 1.0, fit.q, fit.r)) @ fit.coef

    out = {"n": grid.tolist(), "scaling-law": curve(fam, 0), "boxcox": None}
    if math.isfinite(probe.alpha):
        out["boxcox"] = curve(_boxcox_increments(probe.gamma, probe.alpha, probe.beta), probe.window[0])
    return out


def _probe_weight(d: np.ndarray, raw: np.ndarray, y: np.ndarray, fit: _Fit, probe: BoxCoxProbe,
                  floor: float | None) -> float:
    """The probe's weight against the chosen family fit, from their held-out errors: each refitted on its window
    shrunk by ρ ∈ :data:`HOLDOUT_RATIOS` predicts the sum of the observed curve ``raw`` over (n_s/ρ, n_s] — the raw
    increments, ℓ_{n_s} − ℓ_{n_s/ρ}, or the leave-one-out curve where the family was fitted to it (the same data for
    both, so its noise is common). With m = mean squared held-out error, the Gaussian profile likelihood of n
    residuals is ∝ m^(−n/2): w = m_F^(n/2) / (m_F^(n/2) + m_P^(n/2)). 1/2 where no hold-out fits."""
    ns = d.size
    eF, eP = [], []
    for rho in HOLDOUT_RATIOS:
        nh = int(round(ns / rho))
        h0, c0 = max(int(round(fit.n0 / rho)), 1), max(MIN_START, int(round(probe.window[0] / rho)))
        if nh - h0 < max(3 * (2 + fit.q + fit.r), 10) or nh - c0 < 10 or nh >= ns:
            continue
        observed = float(raw[nh:ns].sum())
        hf = _fit(d, h0, nh, fit.q, fit.r)
        eF.append(_extrapolated(hf, nh, ns, 0.0, floor)[0] - observed)
        g, a, b = _boxcox_select(y, c0, nh)
        eP.append(_sum_increments(_boxcox_increments(g, a, b), nh, ns, floor) - observed)
    if not eF:
        return 0.5
    half = len(eF) / 2.0
    mF, mP = float(np.mean(np.square(eF))), float(np.mean(np.square(eP)))
    if mF == mP:
        return 0.5
    return 1.0 / (1.0 + (mP / mF) ** half) if mF > 0 else 0.0


def _band(d: np.ndarray, raw: np.ndarray, fit: _Fit, g: np.ndarray, best: Candidate, cands: list, N: int,
          ell_end: float, floor: float | None, estimate: float, upper: float, probe: BoxCoxProbe,
          family: str, on_loo: bool, per: list | None = None) -> StderrParts:
    """The band's parts (:mod:`~dlogdet.linalg.scalinglaw.band`): the sampling part from the noise profile of the
    raw increments ``d`` (× :data:`~dlogdet.linalg.scalinglaw.band.LOO_SAMPLING` where the family was fitted to the
    leave-one-out curve) pooled with the spread of the subsamples' own estimates ``per`` (S ≥ 2), and the model
    part from the next best candidates, the held-out validation and the probe."""
    ns = d.size
    v = band.noise_profile(d)
    scale = band.LOO_SAMPLING ** 2 if on_loo else 1.0
    sampling = math.sqrt(scale * band.prediction_variance(fit.hat, g, v[fit.n0:fit.n1])
                         + band.anchor_variance(band.noise_profile(raw), ns, N))
    sampling, spread = band.pooled_sampling(sampling, per)
    # the choice: root mean square distance of the next best candidates' estimates (floored and capped alike)
    others = [min(_extrapolated(f, ns, N, ell_end, floor)[0], upper) for _, f in cands[1:TOP_CANDIDATES]]
    selection = math.sqrt(float(np.mean([(e - estimate) ** 2 for e in others]))) if others else 0.0
    # curvature beyond the window: the other curve's distance, weighed by how well it predicts held-out data
    curvature = band.curvature_part(family, probe.estimate, estimate, probe.weight)
    return band.parts(sampling, best.model, selection, curvature, spread)


def fit_curves(ell, n_total: int, *, window="auto", order="auto", ridge: float = 0.0, loo=None,
               family: str = "scaling-law", floor: float | None = None, weights=None) -> CurveFit:
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
        Leave-one-out increment curves (:func:`loo_increments`) of some of the subsamples (as long as ``ell``'s): the
        low-noise curve on which the Box-Cox curvature probe is fitted (default: the raw increments of ``ell``).
        With one per subsample (and no ``weights``), the family is fitted to their mean as well.
    family : "scaling-law" or "boxcox"
        Which curve gives the estimate: the scaling-law family (chosen by validation) or the Box-Cox probe's. The
        band holds the distance between the two either way. ("issue" is the deprecated spelling of
        "scaling-law".)
    floor : float, optional
        A lower bound of every increment (per point): rpp·log σ² when the matrix is ⪰ σ²·I (a jitter or a shift d).
        Extrapolated increments are raised to it (an RBF kernel's increments fall onto its jitter floor).
    weights : None, "inverse-variance" or array_like of shape (n_s,)
        Weights of the least squares on the increments δ_k (see :func:`increment_weights`); the sandwich
        covariance keeps the statistical error honest under any weighting. Default None: equal weights.

    Returns
    -------
    CurveFit
        The estimate, its stderr and their parts; also a read-only mapping (``fit["estimate"]``).
    """
    ell, loo, N = _checked_curves(ell, loo, n_total)
    S, ns = ell.shape
    family = family_name(family, auto=False)
    w = increment_weights(ell, weights)
    if N < ns:
        raise InputError(f"n_total = {N} is smaller than the subsample (n_s = {ns}); give n_total >= n_sub")
    deltas = np.diff(ell, axis=1, prepend=0.0)
    raw = deltas.mean(axis=0)
    ell_end = float(raw.sum())
    d = _above_floor(raw, floor)
    t_curv, slope_change = band.curvature_test(d, max(ns // 20, 1), ns)
    # the curve the family is fitted to: the mean leave-one-out curve where every subsample has one (the same
    # expectation as the increments, far less noise) and the law's test does not reject the law, else the mean
    # increments (where the law fails, the less noisy curve lets the selection follow the curvature that breaks it
    # further out than it goes: an RBF kernel on its way to its jitter floor)
    on_loo = (loo is not None and loo.shape[0] == S and w is None
              and not band.law_rejected(t_curv, slope_change))
    loo_mean = loo.mean(axis=0) if loo is not None else None
    y = _above_floor(loo_mean, floor) if loo_mean is not None else d
    fitted = y if on_loo else d
    cands = _candidates(fitted, N, parse_order(order), parse_window(window, ns), ridge, w)
    best, fit = cands[0]

    # the estimate: the chosen fit read at n (through the floor), capped by the monotone bound
    upper, falling = band.law_brackets(raw, N, floor)
    estimate, g = _extrapolated(fit, ns, N, ell_end, floor)
    estimate = min(estimate, upper)
    probe = _probe(y, ns, N, ell_end, floor, upper, estimate, "loo" if loo is not None else "increments")
    if math.isfinite(probe.alpha):
        # held out against the curve both were fitted to (the leave-one-out mean where the family read it: the
        # same expectation, and noise that no longer drowns the two curves' difference)
        observed = loo_mean if on_loo and loo_mean is not None else raw
        probe = probe.replace(weight=_probe_weight(fitted, observed, y, fit, probe, floor))
    per = _per_subsample(fit, _above_floor(loo, floor) if on_loo else _above_floor(deltas, floor), ell[:, -1], N,
                         ridge, w, floor, upper)
    parts = _band(d, raw, fit, g, best, cands, N, ell_end, floor, estimate, upper, probe, family, on_loo, per)
    coef = fit.coef
    coefficients = {"a0": ell_end - float(features([ns], fit.q, fit.r)[0] @ coef), "a1": float(coef[0]),
                    "b": [float(v) for v in coef[1:2 + fit.q]], "c": [float(v) for v in coef[2 + fit.q:]]}
    return CurveFit(
        estimate=float(probe.estimate if family == "boxcox" else estimate), stderr=band.stderr_of(parts),
        components=parts,
        family=family, weights=None if weights is None else (weights if isinstance(weights, str) else "array"),
        fitted_to="loo" if on_loo else "increments",
        boxcox=probe, scaling_law_estimate=float(estimate), window=(fit.n0, fit.n1), order=(fit.q, fit.r),
        coefficients=coefficients,
        extrapolation_ratio=N / ns, curvature_t=t_curv, slope_change=slope_change,
        law_rejected=band.law_rejected(t_curv, slope_change), upper_monotone=float(upper),
        falling_bracket=float(falling), validated=bool(best.validated), floor=floor,
        per_subsample=per,
        candidates=[c for c, _ in cands], ell_mean=np.cumsum(d),
        curves=_curves(fit, probe, ns, N, ell_end, floor, upper))
