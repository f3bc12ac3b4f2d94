r"""The method ``extrapolate``: its options, the loop over subsamples (:mod:`.adaptive`), the fit of their curves
(:mod:`dlogdet.linalg.scalinglaw`) and the result.

This module checks the options, prices the exact run the loop is measured against, refits the curves after each
batch of subsamples (:mod:`.subsamples`) and reads the last fit:

- **Where a subsample is factored.** Subsamples of at most :data:`LOO_MAX_ROWS` rows are factored in-process
  (LAPACK, with the factor kept), which also gives the low-noise leave-one-out increments the family and the probe
  are fitted to (:func:`~dlogdet.linalg.scalinglaw.loo_increments`); larger ones, or runs on a cluster (``client=``),
  go through the exact engine and both use the raw increments.
- **Rank boundaries and ``family="auto"`` (the default of :func:`run`).** Row (i, a) of a full-output NTK is the
  gradient of output a at point i; its part in one layer's parameters lies in a space of the layer's parameter
  count P_l (a dense last layer: O spaces of dimension fan_in + 1), so past n·O = P_l rows the layer has no new
  direction to give. :meth:`~dlogdet.TileSource.rank_boundaries` lists those points. A boundary between n_sub and
  n_total marks a network that is narrow for its data set, whose curve bends beyond the subsample: there
  ``"auto"`` takes the Box-Cox probe and says so (:attr:`~dlogdet.core.status.Status.RANK_BOUNDARY`, a warning naming
  the layer); elsewhere the scaling-law family, which is as good or better without a boundary.
- **A known floor.** t·A + diag(d) ⪰ a·I with a = t·jitter + min d for a kernel source
  (:func:`dlogdet.sources.bounds.spectrum_lower_bound`), so no increment falls below rpp·log a.
- **Status.** :attr:`~dlogdet.core.status.Status.SCALING_LAW_REJECTED` when the law's test fails,
  ``RTOL_NOT_REACHED`` when ``rtol`` would cost more than the exact factorization, ``RANK_BOUNDARY`` across a
  boundary, ``UNVALIDATED`` when no held-out check of the chosen fit was possible.

The measurements behind each choice are on the benchmark page ``docs/benchmarks/extrapolate.md``.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from typing import Any, Callable

import numpy as np

from ...core.diagnostics import ABSENT, Absent, Diagnostics, record
from ...core.errors import DlogdetError, InputError
from ...core.result import LogdetResult
from ...core.status import Status
from ...linalg.scalinglaw import (BoxCoxProbe, CurveFit, StderrParts, family_name, fit_curves, increment_weights,
                                  parse_order, parse_window)
from ...sources import TileSource
from ...sources.bounds import spectrum_lower_bound
from .. import get as _get_estimator
from . import adaptive
from .subsamples import LOO_MAX_ROWS, SINGLE_THREAD_ROWS, Pool  # noqa: F401  (their home)

log = logging.getLogger(__name__)

#: The method whose options ``run`` passes on to the factorizations of the subsamples (the registry checks them).
PASSES_TO = ("exact",)

#: Order of the GEMM that measures this machine's rate for the predicted exact cost (why: ~20 ms in all, long enough
#: to reach the BLAS kernel's speed).
RATE_GEMM = 384
#: Smallest number of points in a subsample (why: the smallest window of the fit needs 20 increments).
MIN_SUB = 20


# --------------------------------------------------------------------------------------------------- the method


@record
class ExtrapolateDiagnostics(Diagnostics, method="extrapolate"):
    """What ``method="extrapolate"`` reports: the run (these fields) and the fit (:class:`CurveFit`'s, without
    the estimate and stderr, which are the result's).

    Attributes
    ----------
    factor_wall_times : list of float
        Seconds of each subsample's factorization.
    n_total, n_sub, subsamples : int
        Points of the full set, points per subsample, subsamples.
    subsample_sizes : list of int
    subsample_rows, rows_per_point : int
    seed
    band : tuple
        estimate ± 2·stderr.
    ell : numpy.ndarray
        The ℓ_k curves (subsamples × n_sub); ``points`` the subsamples' points.
    ridge : float
    factorization : {"in-process", "engine"}
    t, d
    family_asked : str
        The ``family=`` asked for; ``family`` (a fit field) the one used.
    rank_boundaries : list of dict
        The source's rank boundaries between n_sub and n_total.
    stopped, stop_reason : str
        Why no more subsamples were drawn (:class:`~dlogdet.estimators.extrapolate.adaptive.Stop`), in words.
    rtol, fallback
        As asked.
    cost : Cost
        Seconds spent, the predicted cost of the exact factorization, and the ceiling that applied.
    steps : list of Step
        Each refit: subsamples and n_sub so far, estimate, stderr and its sampling and model parts.
    curves : dict
        The family's and the probe's curves as the estimate reads them (for a plot).
    """

    RENAMED = CurveFit.RENAMED

    factor_wall_times: list | Absent = ABSENT
    n_total: int | Absent = ABSENT
    n_sub: int | Absent = ABSENT
    subsample_sizes: list | Absent = ABSENT
    subsample_rows: int | Absent = ABSENT
    rows_per_point: int | Absent = ABSENT
    subsamples: int | Absent = ABSENT
    seed: Any = ABSENT
    band: tuple | Absent = ABSENT
    ell: Any = ABSENT
    points: Any = ABSENT
    ridge: float | Absent = ABSENT
    factorization: str | Absent = ABSENT
    t: float | Absent = ABSENT
    d: Any = ABSENT
    family_asked: str | Absent = ABSENT
    rank_boundaries: list | Absent = ABSENT
    components: StderrParts | Absent = ABSENT
    stopped: str | Absent = ABSENT
    stop_reason: str | Absent = ABSENT
    rtol: float | None | Absent = ABSENT
    fallback: str | None | Absent = ABSENT
    cost: adaptive.Cost | Absent = ABSENT
    steps: list | Absent = ABSENT
    curves: dict | Absent = ABSENT
    family: str | Absent = ABSENT
    weights: str | None | Absent = ABSENT
    fitted_to: str | Absent = ABSENT
    boxcox: BoxCoxProbe | Absent = ABSENT
    scaling_law_estimate: float | Absent = ABSENT
    window: tuple | Absent = ABSENT
    order: tuple | Absent = ABSENT
    coefficients: dict | Absent = ABSENT
    extrapolation_ratio: float | Absent = ABSENT
    curvature_t: float | Absent = ABSENT
    slope_change: float | Absent = ABSENT
    law_rejected: bool | Absent = ABSENT
    upper_monotone: float | Absent = ABSENT
    falling_bracket: float | Absent = ABSENT
    validated: bool | Absent = ABSENT
    floor: float | None | Absent = ABSENT
    per_subsample: list | None | Absent = ABSENT
    candidates: list | Absent = ABSENT

    def rows(self, result) -> list:
        """The estimate, its stderr and band, the status, and how the curve was fitted."""
        lo, hi = self.band
        c = self.components
        rows = [
            ("logdet (estimate)", repr(result.logdet)),
            ("stderr", f"{result.stderr:.6g} ({100 * result.stderr / abs(result.logdet):.3g}%): sampling "
                       f"{c['sampling']:.3g}, model {c['model']:.3g} (selection {c['selection']:.3g}, validation "
                       f"{c['validation']:.3g}, curvature {c['curvature']:.3g})"),
            ("band (± 2 stderr)", f"[{lo!r}, {hi!r}]"),
            ("status", result.status.describe()),
            ("n_total", f"{self.n_total} points ({result.n} rows), ratio {self.extrapolation_ratio:.3g}"),
            ("subsamples", f"{self.subsamples} x {self.n_sub} points"
                           + (f" (stopped: {self.stop_reason})" if self.get("stop_reason") else "")),
        ]
        if self.get("cost"):
            k = self.cost
            rows.append(("cost", f"{k['spent_s']:.3g} s; exact predicted {k['exact_predicted_s']:.3g} s, ceiling "
                                 f"{k['max_cost']:g} x that" + (f"; rtol {self.rtol:g}" if self.get("rtol") else "")))
        rows += [
            ("window, order", f"{tuple(self.window)}, (q, r) = {tuple(self.order)}, fitted to the "
                              + ("leave-one-out curves" if self.get("fitted_to") == "loo" else "increments")),
            ("curvature t", f"{self.curvature_t:.2f} (slope change {self.slope_change:.2f})"),
            ("Box-Cox probe", f"gamma {self.boxcox['gamma']:.2f}, estimate {self.boxcox['estimate']!r} "
                              f"(family {self.family})"),
        ]
        if self.get("rank_boundaries"):
            rows.append(("rank boundaries", ", ".join(f"layer {b['layer']} at {b['points']} points"
                                                      for b in self.rank_boundaries)))
        rows.append(("wall time", f"{self.wall_time:.3f} s"))
        return rows




def crossed_boundaries(source: TileSource, n_sub: int, n_total: int) -> list[dict]:
    """The source's rank boundaries (:meth:`~dlogdet.TileSource.rank_boundaries`, e.g. an NTK's layers) with
    n_sub < points ≤ n_total: structure that the subsample's ℓ_k cannot show and the full set has."""
    return [b for b in source.rank_boundaries() if n_sub < int(b["points"]) <= n_total]


def _is_count(v, low: int) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= low


def _checked_options(source: TileSource, n_total, n_sub, window, order, rows_per_point, family, weights, assume,
                     d) -> tuple[int, int, int, str]:
    """(rows per point, n_sub, n_total, family) of valid options, or the InputError naming the bad one (before any
    work)."""
    rpp = int(source.rows_per_point) if rows_per_point is None else int(rows_per_point)
    if rpp < 1 or source.n % rpp:
        raise InputError(f"rows_per_point = {rows_per_point!r} must be a positive divisor of the order {source.n}")
    n_points = source.n // rpp
    if assume != "spd":
        raise InputError(f"extrapolate needs the log-pivot of every row, exact only for assume='spd' (Cholesky); "
                         f"got assume={assume!r}: add a diagonal shift d= if the matrix is only semi-definite")
    if not _is_count(n_sub, MIN_SUB):
        raise InputError(f"n_sub must be an integer >= {MIN_SUB} (points of the subsample), got {n_sub!r}")
    n_sub = int(n_sub)
    if n_sub > n_points:
        raise InputError(f"n_sub = {n_sub} is larger than the data ({n_points} points"
                         + (f" of {rpp} rows" if rpp > 1 else "") + f"): use n_sub <= {n_points}")
    n_total = n_points if n_total is None else n_total
    if not _is_count(n_total, n_sub):
        raise InputError(f"n_total must be an integer >= n_sub = {n_sub} (points of the full data), got {n_total!r}")
    parse_window(window, n_sub)
    parse_order(order)
    family = family_name(family)
    if weights is not None:
        increment_weights(np.zeros((1, n_sub)), weights)
    if np.ndim(d) not in (0, 1):
        raise InputError("d must be a scalar or a vector with one entry per row")
    if np.ndim(d) == 1 and np.shape(d)[0] != source.n:
        raise InputError(f"d must be a scalar or a vector of length {source.n}, got shape {np.shape(d)}")
    return rpp, n_sub, int(n_total), family


def _warn_boundaries(crossed: list[dict], n_sub: int, n_total: int, family: str, used: str) -> None:
    where = ", ".join(f"layer {b['layer']} ({b['kind']}, {b['parameters']} parameters) at {b['points']} points"
                      for b in crossed)
    log.warning("extrapolate: rank boundaries of the model lie between n_sub = %d and n_total = %d points (%s): the "
                "network is narrow for this data set, and the curves of such NTKs bend beyond the subsample, where "
                "the scaling law reads them too high and the Box-Cox probe follows the bend. %s", n_sub, n_total,
                where, "The estimate is the probe's (family='auto')." if used == "boxcox" else
                f"family={family!r} was asked for.")




@functools.lru_cache(maxsize=1)
def gemm_rate() -> float:
    """Flop/s of a float64 GEMM on one BLAS thread here, now (the rate of one engine task; best of 3 products of
    order :data:`RATE_GEMM`, measured once per process)."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((RATE_GEMM, RATE_GEMM))
    best = math.inf
    with threadpool_limits(1, user_api="blas"):
        a @ a
        for _ in range(3):
            t = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - t)
    return 2.0 * RATE_GEMM ** 3 / best


def _process_setup(in_process: bool) -> None:
    """What only the first extrapolation of a process pays (the GEMM rate measured, the BLAS libraries found, the
    planner's and LAPACK's modules imported), done before the budget's clock starts: ``max_cost`` buys subsamples,
    not setup (with the clock around it, the first call of a process drew 3–4 subsamples of 500 points where the
    next ones drew 8, at n = 6000)."""
    import scipy.linalg  # noqa: F401

    from ...runtime import planner  # noqa: F401
    from .subsamples import _controller

    _controller()
    if in_process:
        gemm_rate()


def _exact_seconds(source: TileSource, rows: int, client, budget) -> Callable[[float | None], float]:
    """Predicted seconds of the exact factorization of ``rows`` rows: :func:`dlogdet.plan`'s time on these workers
    and budget (at this machine's GEMM rate, :func:`gemm_rate`, in-process; the planner's rates on a cluster), plus
    the source's tiles (the lower triangle) at the measured seconds per entry of the subsamples'."""
    from ...runtime import n_workers
    from ...runtime.memory import resolve
    from ...runtime.planner import plan as plan_exact_run

    try:
        held = resolve(budget, client).bytes        # None: no budget, every tile in memory
        rates = None if client is not None else {"gemm_flops": gemm_rate()}
        plan = plan_exact_run(rows, workers=n_workers(client), budget=held if held else 1 << 62, rates=rates)
        factor = float(plan.time_total_s)
    except DlogdetError as e:      # no plan for this budget: the flops at the planner's default rate
        log.info("extrapolate: no plan of the exact run (%s); its cost is taken as its flops at 50 GFLOP/s", e)
        factor = rows ** 3 / 3.0 / 50e9
    return lambda per_entry: factor + (per_entry or 0.0) * rows * rows / 2.0


def run(source: TileSource, n_total: int | None = None, *, n_sub: int, window="auto", order="auto",
        subsamples="auto", rtol: float | None = None, max_cost: float | None = None, fallback: str | None = None,
        seed=None, rows_per_point: int | None = None, ridge: float = 0.0, family: str = "auto", weights=None,
        assume: str = "spd", t: float = 1.0, d=0.0, block_size: int | None = None, budget=None, client=None,
        **options) -> LogdetResult:
    r"""log det of ``n_total`` points extrapolated from exact factorizations of random subsamples of n_sub points.

    See :func:`dlogdet.extrapolate` for the parameters. ``options`` go to the exact engine (``backend``,
    ``progress``, ``check_symmetry``, ``scratch``, ``resume``).
    """
    started = time.perf_counter()
    _process_setup(client is None)
    t0 = time.perf_counter()                    # the budget's clock
    count, rtol, max_cost, fallback = adaptive.checked(subsamples, rtol, max_cost, fallback)
    rpp, n_sub, n_total, family = _checked_options(source, n_total, n_sub, window, order, rows_per_point, family,
                                                   weights, assume, d)
    if rtol is not None and (not isinstance(window, str) or (weights is not None and not isinstance(weights, str))):
        raise InputError("rtol= may grow n_sub: give window='auto' and weights=None or 'inverse-variance', not a "
                         "window or weights of the first n_sub's length")
    pool = Pool(source, rpp, seed, t, d, block_size, budget, client, options)
    a = spectrum_lower_bound(source, t, d)      # t·A + diag(d) ⪰ a·I: no increment falls below rpp·log a
    floor = rpp * math.log(a) if a is not None else None
    fits: list = []

    def refit() -> tuple[float, float, float, float]:
        ell, loo = pool.curves()
        crossed = crossed_boundaries(source, pool.n_sub, n_total)
        used = family if family != "auto" else ("boxcox" if crossed else "scaling-law")
        fit = fit_curves(ell, n_total, window=window, order=order, ridge=ridge, loo=loo, family=used, floor=floor,
                         weights=weights)
        fits.append((fit, crossed))
        return fit.estimate, fit.stderr, fit.components.sampling, fit.components.model

    loop = adaptive.Loop(pool.draw, refit, n_sub, pool.n_points, rtol, max_cost,
                         _exact_seconds(source, n_total * rpp, client, budget), t0=t0)
    stop = loop.fixed(count) if count is not None else loop.auto()
    fit, crossed = fits[-1]
    if crossed:
        _warn_boundaries(crossed, pool.n_sub, n_total, family, fit.family)
    if stop is adaptive.Stop.EXACT_CHEAPER:
        out = _rtol_not_reached(source, fit, rtol, fallback, loop, n_total, rpp, t=t, d=d, block_size=block_size,
                                budget=budget, client=client, options=options)
        if out is not None:
            return out
    return _result(source, fit, crossed, pool, loop, stop, n_total=n_total, rpp=rpp, seed=seed, ridge=ridge, t=t,
                   d=d, family=family, rtol=rtol, fallback=fallback, started=started)


def _rtol_not_reached(source, fit, rtol, fallback, loop, n_total, rpp, **exact_options) -> LogdetResult | None:
    """Say that rtol is out of reach below the exact cost; with ``fallback="exact"`` (and the whole data at hand)
    run the exact factorization and return its result."""
    cost = loop.cost()
    half = 2.0 * fit.stderr / abs(fit.estimate)
    at_hand = n_total * rpp == source.n
    log.warning("extrapolate: the band is ±%.3g of |log det| after %.3g s, and narrowing it to rtol = %.3g would take "
                "longer than the exact factorization (predicted %.3g s): %s", half, cost.spent_s, rtol,
                cost.exact_predicted_s,
                "running it (fallback='exact')" if fallback == "exact" and at_hand else
                "use method='exact' (dlogdet.logdet) for this accuracy" if at_hand else
                "the source holds fewer points than n_total, so no exact run can replace it: loosen rtol")
    if fallback != "exact" or not at_hand:
        return None
    opts = exact_options.pop("options")
    return _get_estimator("exact")(source, assume="spd", **exact_options, **opts)


def _result(source, fit, crossed, pool, loop, stop, *, n_total, rpp, seed, ridge, t, d, family, rtol,
            fallback, started: float) -> LogdetResult:
    est, se = fit.estimate, fit.stderr
    status = (Status.SCALING_LAW_REJECTED if fit.law_rejected
              else Status.RTOL_NOT_REACHED if stop is adaptive.Stop.EXACT_CHEAPER
              else Status.RANK_BOUNDARY if crossed else Status.OK if fit.validated else Status.UNVALIDATED)
    ell, _ = pool.curves()
    diagnostics = ExtrapolateDiagnostics.from_mapping({
        "wall_time": time.perf_counter() - started,      # the whole call, the process's setup included
        "factor_wall_times": pool.times,
        "n_total": n_total,
        "n_sub": pool.n_sub,
        "subsample_sizes": [pool.n_sub] * len(pool.ell),
        "subsample_rows": pool.n_sub * rpp,
        "rows_per_point": rpp,
        "subsamples": len(pool.ell),
        "stopped": str(stop),
        "stop_reason": stop.reason,
        "rtol": rtol,
        "fallback": fallback,
        "cost": loop.cost(),
        "steps": list(loop.steps),
        "seed": seed if seed is None or isinstance(seed, (int, np.integer)) else repr(seed),
        "band": (est - 2.0 * se, est + 2.0 * se),
        "ell": ell,
        "points": np.array(pool.points),
        "ridge": ridge,
        "factorization": "in-process" if pool.in_process else "engine",
        "t": t,
        "d": d if np.ndim(d) == 0 else "vector",
        "family_asked": family,
        "rank_boundaries": crossed,
        **{k: v for k, v in fit.items() if k not in ("estimate", "stderr", "ell_mean")},
    })
    log.info("extrapolate: %d subsample(s) of %d points -> n = %d: %.6g ± %.3g (window %s, order %s; %s)",
             len(pool.ell), pool.n_sub, n_total, est, se, fit.window, fit.order, stop.reason)
    return LogdetResult(logdet=est, sign=1.0, method="extrapolate", n=n_total * rpp, dtype=str(source.dtype),
                        stderr=se, assume="spd", status=status, diagnostics=diagnostics)
