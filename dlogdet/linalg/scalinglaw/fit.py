"""Window and order of the scaling-law fit chosen by held-out validation, the stderr and its parts, the Box-Cox probe
and the law's brackets: :func:`fit_curves` (the maths: :mod:`dlogdet.linalg.scalinglaw`)."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ...core.errors import ExtrapolationError, InputError, warn_renamed
from .family import _Fit, _fit, _floored, _growth, _predict, boxcox_fit, features
from .records import BoxCoxProbe, Candidate, CurveFit, StderrParts

#: Window starts tried by ``window="auto"``, as fractions of n_s (why: from "almost everything" to "the last 70%";
#: early points carry small-k transients, late windows leave too few points for the slope).
WINDOW_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
#: Largest q and r tried by ``order="auto"`` (why: higher orders extrapolate noise at ratios of 10 and more).
MAX_ORDER = 2
#: Hold-out ratios of the validation: the window shrunk by ρ predicts the observed end (why: several ratios average
#: the noise of a single hold-out; 4 still leaves a quarter of the curve to fit).
HOLDOUT_RATIOS = (2.0, 3.0, 4.0)
#: Candidates whose prediction spread enters σ_sel (why: the few nearly as good as the best are the real
#: alternatives; the worst ones would only widen the band).
TOP_CANDIDATES = 5
#: Earliest automatic window start (why: the first increments, before the points fill the domain, follow no law).
MIN_START = 10
#: Weight of the curvature probe's distance in the band (why: the probe's γ, fitted inside the subsample, trails
#: the growing curvature beyond it, and with weight 1 the band covered too few runs on a full-output NTK).
CURVATURE_WEIGHT = 1.5
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
        if loo.shape != ell.shape or not np.all(np.isfinite(loo)):
            raise ExtrapolationError(f"loo curves must be finite with the shape of ell {ell.shape}, got {loo.shape}")
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
    """Every window and order that has enough points, fitted and validated, best (least estimated MSE) first."""
    ns = d.size
    ell_end = float(d.sum())
    auto_window = windows is None
    out = []
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
            pred, sd = _predict(fit, ns, ell_end, [N])
            bias2 = _validation_error(d, n0, n1, q, r, ridge, w, N / ns)
            validated = bool(bias2)
            s_val = math.sqrt(max(float(np.mean(bias2)), 0.0)) if validated else float(sd[0])
            out.append((Candidate(n0=n0, n1=n1, q=q, r=r, prediction=float(pred[0]), sd=float(sd[0]), model=s_val,
                                  mse=float(sd[0]) ** 2 + s_val ** 2, validated=validated), fit))
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


def _stat_variance(best: Candidate, fit: _Fit, deltas: np.ndarray, N: int, ridge: float, w) -> tuple[float, list | None]:
    """σ²_stat: the chosen fit's prediction variance plus the anchor's sampling variance, or with 2 or more
    subsamples the spread of their own estimates if larger; and those per-subsample estimates."""
    S, ns = deltas.shape
    anchor_var = ns * fit.resid_var * max(1.0 - ns / N, 0.0)
    s_stat2 = best.sd ** 2 + anchor_var
    if S < 2:
        return s_stat2, None
    per_sub = []
    for s in range(S):
        fs = _fit(deltas[s], fit.n0, fit.n1, fit.q, fit.r, ridge, w)
        per_sub.append(float(_predict(fs, ns, float(deltas[s].sum()), [N])[0][0]))
    return max(s_stat2, float(np.var(per_sub, ddof=1)) / S + anchor_var), per_sub


def _law_brackets(d: np.ndarray, N: int, floor: float | None) -> tuple[float, float]:
    """The two brackets of σ_law: the monotone upper bound ℓ_{n_s} + (n − n_s)·(tail mean + 2 se) and an increment
    curve that keeps falling linearly in k (raised to ``floor`` where there is one)."""
    ns = d.size
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


def _law_weight(t_curv: float, slope_change: float) -> float:
    """Weight of the law's failure in [0, 1]: significant (|t| from 1 to 2) and large (the local log-log slope
    changing by 50% to 100% across the window; Matérn kernels stay below, RBF kernels before their jitter floor
    above)."""
    return min(max(abs(t_curv) - 1.0, 0.0), 1.0) * min(max((slope_change - 0.5) / 0.5, 0.0), 1.0)


def _probe(y: np.ndarray, ns: int, N: int, ell_end: float, floor: float | None, upper: float, fallback: float,
           on: str) -> BoxCoxProbe:
    """The Box-Cox probe on the increment curve ``y``, fitted on (n_s/10, n_s], anchored at ℓ_{n_s} = ``ell_end``
    and capped by the monotone bound; the scaling law's ``fallback`` (γ = 0) where the curve is too short or there is
    nothing to extrapolate."""
    b0 = max(MIN_START, int(round(0.1 * ns)))
    if ns - b0 >= 10 and N > ns:
        est, gamma = boxcox_fit(y, b0, ns, N, ell_end, floor)
        return BoxCoxProbe(gamma=float(gamma), estimate=float(min(est, upper)), window=(b0, ns), on=on)
    return BoxCoxProbe(gamma=0.0, estimate=float(fallback), window=(b0, ns), on=on)


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
        Leave-one-out increment curves (:func:`loo_increments`), same shape as ``ell``: the low-noise curve on which
        the Box-Cox curvature probe is fitted (default: the raw increments of ``ell``).
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
    d = deltas.mean(axis=0)
    ell_end = float(d.sum())
    orders = parse_order(order)
    cands = _candidates(d, N, orders, parse_window(window, ns), ridge, w)
    best, fit = cands[0]

    s_stat2, per_sub = _stat_variance(best, fit, deltas, N, ridge, w)
    # the choice: root mean square distance of the next best candidates' predictions from the chosen one
    top = np.array([c.prediction for c, _ in cands[1:TOP_CANDIDATES]])
    s_sel = float(np.sqrt(np.mean((top - best.prediction) ** 2))) if top.size else 0.0

    # the law itself: log-log curvature of the tail, and the brackets it opens
    t_curv, slope_change = _curvature(d, max(ns // 20, 1), ns)
    upper, falling = _law_brackets(d, N, floor)
    estimate = best.prediction if floor is None else _floored(fit, ns, N, ell_end, floor)
    estimate = min(estimate, upper)
    s_law = _law_weight(t_curv, slope_change) * max(abs(estimate - falling), abs(upper - estimate)) / 2.0
    # curvature beyond the window: the distance between the probe's extrapolation and the family's is model risk
    # that the held-out validation cannot see
    probe = _probe(loo.mean(axis=0) if loo is not None else d, ns, N, ell_end, floor, upper, estimate,
                   "loo" if loo is not None else "increments")
    s_curv = CURVATURE_WEIGHT * abs(probe.estimate - estimate)
    stderr = math.sqrt(s_stat2 + max(best.model, s_curv) ** 2 + s_sel ** 2 + s_law ** 2)

    coef = fit.coef
    a0 = ell_end - float(features([ns], fit.q, fit.r)[0] @ coef)
    return CurveFit(
        estimate=float(probe.estimate if family == "boxcox" else estimate), stderr=float(stderr),
        components=StderrParts(stat=math.sqrt(s_stat2), validation=best.model, selection=s_sel, law=s_law,
                               curvature=s_curv),
        family=family, weights=None if weights is None else (weights if isinstance(weights, str) else "array"),
        boxcox=probe, scaling_law_estimate=float(estimate), window=(fit.n0, fit.n1), order=(fit.q, fit.r),
        coefficients={"a0": a0, "a1": float(coef[0]), "b": [float(v) for v in coef[1:2 + fit.q]],
                      "c": [float(v) for v in coef[2 + fit.q:]]},
        extrapolation_ratio=N / ns, curvature_t=t_curv, slope_change=slope_change,
        law_rejected=abs(t_curv) >= 2.0 and slope_change >= 1.0, upper_monotone=float(upper),
        falling_bracket=float(falling), validated=bool(best.validated), floor=floor, per_subsample=per_sub,
        candidates=[c for c, _ in cands], ell_mean=np.cumsum(d))
