r"""How many subsamples, and how large: an extrapolation that spends what its accuracy needs.

The band of an extrapolation (:mod:`dlogdet.linalg.scalinglaw.band`) has a *sampling* part, which falls as 1/√S with S
subsamples, and a *model* part, which more subsamples of the same size do not remove; only a larger subsample (a
smaller extrapolation ratio n/n_sub) does. So:

- ``subsamples="auto"`` (the default of :func:`dlogdet.extrapolate`) draws subsamples until the sampling part is
  below the model part (past that point each one buys less than the model error costs), within a time budget of
  ``max_cost`` × the predicted cost of the exact factorization (default :data:`MAX_COST`);
- ``rtol=`` draws subsamples, and doubles n_sub where the model part alone would keep the band wider than asked,
  until the half-width 2·stderr is within ``rtol · |log det|``, or until the next step would take the total past the
  predicted exact cost (× ``max_cost`` when given): then the result says so (:attr:`~dlogdet.core.status.Status.
  RTOL_NOT_REACHED`) and recommends the exact method, or runs it (``fallback="exact"``).

The predicted exact cost is :func:`dlogdet.plan`'s time for the full matrix (its rates: dask config
``dlogdet.plan.*``) plus the source's time to produce its tiles, measured on the subsamples' own tiles and scaled
by the number of entries. Time spent is the wall time of the whole call (tiles, factorizations and fits), so the
number of subsamples drawn under a binding budget depends on the machine's load; give ``subsamples=K`` for a run
that draws exactly K.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from ...core.diagnostics import Record, record
from ...core.errors import InputError

log = logging.getLogger(__name__)

#: Default time budget of ``subsamples="auto"`` without ``rtol``, as a fraction of the predicted exact cost (why: it
#: keeps an extrapolation at least 10× faster than the exact run even where the stop rule does not end the loop — at
#: 0.25 such runs at n = 12,000 were 4× faster only — while 0.05 left 6000-point kernels 1–3 subsamples and a mean
#: error higher by 0.4 point: docs/benchmarks/extrapolate.md).
MAX_COST = 0.1
#: Fewest subsamples before the sampling and model parts are compared, where the budget allows (why: with few, the
#: model part is itself noisy — the probe's exponent and the held-out checks read noisy curves — and was as large as
#: the sampling part in runs whose error then kept falling: on the calibration cases of benchmarks/extrapolate.py
#: the mean error went from 4.4% with 1 subsample to 3.3% with 4 and 3.1% with 8, the Matérn ones' 4.1% → 3.2%
#: from 4 to 8).
MIN_AUTO = 8
#: Most a step multiplies the subsamples by (why: each refit costs a fit of the curves, so the loop draws what the
#: sampling part asks for at once; the first estimate of that part is noisy, so not more than this).
STEP_GROWTH = 4
#: Most subsamples one size may take (why: the sampling part is then 1/16 of one subsample's, far below any model
#: part measured; a bound on the loop whatever the budget).
MAX_SUBSAMPLES = 256
#: Growth of n_sub when ``rtol`` asks for a model part that this size cannot give (why: the model part shrank by
#: about half when n_sub doubled on the calibration cases; the factorizations cost 8× more).
GROWTH = 2
#: Margin on the predicted time of a subsample size not drawn yet (the measured time of the nearest size scaled by
#: the cube of the sizes) when the loop decides whether it fits the budget (why: that prediction missed by 1.4× on a
#: loaded machine and the step to n_sub = 2000 took two rtol runs past the exact cost; a measured size needs none).
UNMEASURED_MARGIN = 2.0
#: Values of ``fallback=``.
FALLBACKS = (None, "exact")


class Stop(enum.StrEnum):
    """Why an extrapolation stopped drawing subsamples (``diagnostics["stopped"]``)."""

    def __new__(cls, value: str, reason: str = "") -> Stop:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.reason = reason
        return obj

    FIXED = ("fixed", "subsamples=K was given")
    SAMPLING_BELOW_MODEL = ("sampling-below-model", "the sampling part of the band fell below its model part, which "
                            "more subsamples of this size do not reduce")
    RTOL_REACHED = ("rtol-reached", "the band's half-width reached rtol x |log det|")
    BUDGET = ("budget", "the next subsample would have taken the time past max_cost x the predicted exact cost")
    EXACT_CHEAPER = ("exact-cheaper", "reaching rtol would cost more than the exact factorization is predicted to")
    MAX_SUBSAMPLES = ("max-subsamples", f"{MAX_SUBSAMPLES} subsamples of one size were drawn")


@record
class Step(Record):
    """One refit of the loop: the subsamples so far, their size, and the band then."""

    n_sub: int
    subsamples: int
    estimate: float
    stderr: float
    sampling: float
    model: float
    seconds: float


@record
class Cost(Record):
    """Seconds spent (the whole call), the predicted cost of the exact factorization, and the ceiling used."""

    spent_s: float
    exact_predicted_s: float
    ceiling_s: float
    max_cost: float


def checked(subsamples, rtol, max_cost, fallback) -> tuple[int | None, float | None, float | None, str | None]:
    """(fixed count or None for auto, rtol, max_cost, fallback) of valid options, or the InputError naming the bad
    one."""
    if isinstance(subsamples, str):
        if subsamples != "auto":
            raise InputError(f"subsamples must be 'auto' or a positive integer, got {subsamples!r}")
        count = None
    elif isinstance(subsamples, bool) or not isinstance(subsamples, int) or subsamples < 1:
        raise InputError(f"subsamples must be 'auto' or a positive integer, got {subsamples!r}")
    else:
        count = int(subsamples)
    if rtol is not None:
        if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 0.0 < float(rtol) < 1.0:
            raise InputError(f"rtol must be a number in (0, 1): the half-width of the band asked for, as a fraction "
                             f"of |log det| (0.01 for 1%), got {rtol!r}")
        if count is not None:
            raise InputError("rtol= chooses how many subsamples to draw and how large: give subsamples='auto' (the "
                             f"default) with it, not subsamples={count}")
    if max_cost is not None and (isinstance(max_cost, bool) or not isinstance(max_cost, (int, float))
                                 or not (float(max_cost) > 0 and math.isfinite(float(max_cost)))):
        raise InputError(f"max_cost must be a positive number, a fraction of the predicted exact cost (0.1 for "
                         f"10%), got {max_cost!r}")
    if fallback not in FALLBACKS:
        raise InputError(f"fallback must be None or 'exact', got {fallback!r}")
    if fallback is not None and rtol is None:
        raise InputError("fallback='exact' runs the exact method when rtol cannot be reached: give rtol= with it")
    return count, None if rtol is None else float(rtol), None if max_cost is None else float(max_cost), fallback


@dataclass
class Loop:
    """The state of the loop: what was asked, and the steps so far.

    ``draw(n_sub, count)`` adds ``count`` subsamples of n_sub points to the pool (dropping those of another size)
    and returns the seconds their tiles took per entry (or None); ``refit()`` fits the pool and returns
    ``(estimate, stderr, sampling part, model part)``.
    """

    draw: Callable[[int, int], float | None]
    refit: Callable[[], tuple[float, float, float, float]]
    n_sub: int
    n_points: int
    rtol: float | None
    max_cost: float | None
    exact_seconds: Callable[[float | None], float]
    t0: float = field(default_factory=time.perf_counter)
    steps: list = field(default_factory=list)
    sizes: dict = field(default_factory=dict)          # n_sub -> seconds per subsample (see _draw)
    later: dict = field(default_factory=dict)          # n_sub -> (seconds, subsamples) drawn after the first
    tile_rate: float | None = None
    pool: int = 0
    fit_seconds: float = 0.0                           # the last fit's (the budget keeps room for one more)

    def spent(self) -> float:
        return time.perf_counter() - self.t0

    def _draw(self, n_sub: int, count: int) -> None:
        if n_sub != self.n_sub:
            self.pool = 0
        t = time.perf_counter()
        rate = self.draw(n_sub, count)
        spent = time.perf_counter() - t
        # seconds per subsample: the mean of those drawn after the first of this size, once there are any (the first
        # pays the size's one-time costs: fresh memory for its arrays, first calls; 2x the next ones' time measured
        # at 500 points, which left the first call of a process 3-4 subsamples where the next drew 8)
        later, n_later = spent, count
        if n_sub not in self.sizes:
            self.sizes[n_sub] = spent / count
            later, n_later = spent * (count - 1) / count, count - 1
        if n_later:
            s0, c0 = self.later.get(n_sub, (0.0, 0))
            self.later[n_sub] = (s0 + later, c0 + n_later)
            self.sizes[n_sub] = self.later[n_sub][0] / self.later[n_sub][1]
        self.tile_rate = rate if rate is not None else self.tile_rate
        self.n_sub, self.pool = n_sub, self.pool + count

    def _fit(self) -> tuple[float, float, float, float]:
        t = time.perf_counter()
        out = self.refit()
        self.fit_seconds = time.perf_counter() - t
        self.steps.append(Step(n_sub=self.n_sub, subsamples=self.pool, estimate=out[0], stderr=out[1],
                               sampling=out[2], model=out[3], seconds=self.spent()))
        return out

    def ceiling(self) -> float:
        frac = self.max_cost if self.max_cost is not None else (1.0 if self.rtol is not None else MAX_COST)
        return frac * self.exact_seconds(self.tile_rate)

    def fixed(self, count: int) -> Stop:
        self._draw(self.n_sub, count)
        self._fit()
        return Stop.FIXED

    def auto(self) -> Stop:
        """Draw one subsample, then as many more (and as much larger) as the band asks for and the budget allows."""
        self._draw(self.n_sub, 1)
        if self.rtol is None and MIN_AUTO > 1:
            # no comparison is made before MIN_AUTO subsamples, so no fit either (one costs a few subsamples' time)
            count = self._affordable(self.n_sub, MIN_AUTO - 1)
            if count >= 1:
                self._draw_within(self.n_sub, count)
        est, se, samp, model = self._fit()
        while True:
            done, n_next, count = self._next(est, se, samp, model)
            if done is not None:
                return done
            count = self._affordable(n_next, count)
            if count < 1:
                return Stop.EXACT_CHEAPER if self.rtol is not None else Stop.BUDGET
            self._draw_within(n_next, count)
            est, se, samp, model = self._fit()

    def _left(self, n_sub: int) -> float:
        """Seconds of the budget left after one more fit (before the first fit: as long as one subsample)."""
        return self.ceiling() - self.spent() - (self.fit_seconds or self._seconds_per_subsample(n_sub))

    def _affordable(self, n_sub: int, count: int) -> int:
        """At most ``count`` subsamples of n_sub points: as many as the budget still allows after one more fit (a
        size not drawn yet is priced at :data:`UNMEASURED_MARGIN` × its prediction)."""
        each = self._seconds_per_subsample(n_sub) * (1.0 if n_sub in self.sizes else UNMEASURED_MARGIN)
        return min(count, int(self._left(n_sub) // each)) if each > 0 else count

    def _draw_within(self, n_sub: int, count: int) -> None:
        """Draw ``count`` subsamples: at once while far from the budget, else one at a time with the budget checked
        before each (on a loaded machine a subsample can take several times the first one's time)."""
        each = self._seconds_per_subsample(n_sub)
        if each <= 0 or count * each <= 0.5 * self._left(n_sub):
            self._draw(n_sub, count)
            return
        self._draw(n_sub, 1)
        for _ in range(count - 1):
            if self._seconds_per_subsample(n_sub) > self._left(n_sub):
                return
            self._draw(n_sub, 1)

    def _next(self, est: float, se: float, samp: float, model: float) -> tuple[Stop | None, int, int]:
        """(a reason to stop, or None and the next size and count)."""
        if self.rtol is None:
            if samp <= model and self.pool >= MIN_AUTO:
                return Stop.SAMPLING_BELOW_MODEL, 0, 0
            goal = model
        else:
            half = self.rtol * abs(est) / 2.0          # the stderr that makes 2·stderr = rtol·|log det|
            if se <= half:
                return Stop.RTOL_REACHED, 0, 0
            if model > half / math.sqrt(2.0) and self.n_sub < self.n_points:
                # the model part alone keeps the band too wide: a larger subsample, which has a smaller one
                return None, min(GROWTH * self.n_sub, self.n_points), 1
            goal = math.sqrt(max(half * half - model * model, (half * half) / 2.0))
        if self.pool >= MAX_SUBSAMPLES:
            return Stop.MAX_SUBSAMPLES, 0, 0
        # the sampling part falls as 1/√S: the subsamples that would bring it to the goal, at most STEP_GROWTH x (but
        # MIN_AUTO at once without rtol: no comparison is made before)
        need = math.ceil(self.pool * (samp / goal) ** 2) - self.pool if goal > 0 else self.pool
        most = (STEP_GROWTH - 1) * self.pool
        if self.rtol is None and self.pool < MIN_AUTO:
            need, most = max(need, MIN_AUTO - self.pool), max(most, MIN_AUTO - self.pool)
        return None, self.n_sub, max(1, min(need, most, MAX_SUBSAMPLES - self.pool))

    def _seconds_per_subsample(self, n_sub: int) -> float:
        """Measured at this size, else the nearest measured size scaled by the cube of the sizes (a Cholesky)."""
        if n_sub in self.sizes:
            return self.sizes[n_sub]
        m, t = min(self.sizes.items(), key=lambda kv: abs(kv[0] - n_sub))
        return t * (n_sub / m) ** 3

    def cost(self) -> Cost:
        frac = self.max_cost if self.max_cost is not None else (1.0 if self.rtol is not None else MAX_COST)
        exact = self.exact_seconds(self.tile_rate)
        return Cost(spent_s=self.spent(), exact_predicted_s=exact, ceiling_s=frac * exact, max_cost=frac)
