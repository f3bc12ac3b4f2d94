"""SLQ's moving parts: a block of probes through Lanczos with its quadrature bracket, the Krylov deflation of the
first block, the progress of a run, and the Student-t and normal quantiles of the error bar (the method:
:mod:`dlogdet.estimators.slq`)."""

from __future__ import annotations

import math
import time

import numpy as np

from ...core.errors import InputError, NotPSDError
from ...linalg import krylov as Kr

# Lanczos steps between checks of the estimated (no spectrum bound) bias: equal spacing for the ratio test.
ESTIMATE_SPACING = 5
# Most Lanczos vectors of the first block that deflation uses (its SVDs cost O(n·K²)).
DEFLATE_VECTORS = 1024
# Least variance ratio (plain / deflated, cross-fitted on the first block) for the deflation to be kept: below it
# the control barely helps, costs its SVDs, and may add its own noise to later blocks (flat spectra and clusters
# of tiny eigenvalues gained nothing; docs/benchmarks/estimators.md).
DEFLATE_MIN_GAIN = 1.25
# Factor on the Gauss rules' estimated remainder (krylov.gauss_remainder) that bounds the quadrature bias inside
# the Gauss / Gauss–Radau bracket.
GAUSS_SAFETY = 2.0


def t_quantile(confidence: float, dof: int) -> float:
    from scipy.special import stdtrit   # scipy.special, not scipy.stats: an import of 0.02 s instead of 1 s

    return float(stdtrit(max(dof, 1), 0.5 + confidence / 2))


def z_quantile(confidence: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(0.5 + confidence / 2))


class Block:
    """One block of probes through Lanczos, with its per-probe samples (midpoints) and bias half-widths."""

    def __init__(self, matmat, Z, reorth, node, max_steps, min_steps):
        self.lz = Kr.Lanczos(matmat, Z, reorth=reorth)
        self.node = node
        self.max_steps = max_steps
        self.min_steps = min_steps
        self.history: list[np.ndarray] = []   # Gauss values at equally spaced checks (estimated bias)
        self.mid = None
        self.half = None
        self.ritz_min = math.inf

    def evaluate(self) -> None:
        q = Kr.quadrature(self.lz, np.log, self.node)
        self.ritz_min = float(np.nanmin(q.ritz_min))
        if not np.all(q.ritz_min > 0) or not np.all(np.isfinite(q.gauss)):
            raise NotPSDError(f"Lanczos found a Ritz value {self.ritz_min:.3e} <= 0: M = t·A + diag(d) is not positive "
                              "definite; use method='exact' with assume='sym', or add a shift d > 0")
        if self.node is not None:
            if np.any(q.ritz_min < self.node) or not np.all(np.isfinite(q.radau)):
                raise InputError(f"the spectrum lower bound {self.node:.6g} lies above a Ritz value "
                                 f"({self.ritz_min:.6g}), so it is not a lower bound of the spectrum of M: is A "
                                 "positive semi-definite? Pass a smaller spectrum_lower=, or use method='exact'")
            # the truth lies in [Radau, Gauss]; where the Gauss rules' own convergence says the rest of the way is
            # at most e, the interval narrows to [Gauss − GAUSS_SAFETY·e, Gauss] (never beyond the bracket). With
            # a loose node (a nugget far below λ_min) the Radau rule lags far behind Gauss, and the bracket's
            # midpoint would carry its bias (docs/benchmarks/estimators.md)
            lo = np.maximum(q.radau, q.gauss - GAUSS_SAFETY * Kr.gauss_remainder(self.lz, np.log, q.gauss))
            lo = np.minimum(lo, q.gauss)
            self.mid = 0.5 * (q.gauss + lo)
            self.half = 0.5 * (q.gauss - lo)
            return
        # no node: Gauss decreases monotonically to the truth (log's even derivatives are negative); estimate the
        # rest of the way from the ratio of the last two decrements over equal spacings
        g = q.gauss
        self.history.append(g)
        done = ~self.lz.active
        if len(self.history) < 3:
            bias = np.where(done, 0.0, np.abs(g) + 1.0) if len(self.history) < 2 else \
                np.where(done, 0.0, 20 * np.abs(self.history[-2] - g))
        else:
            d1 = self.history[-2] - g
            d0 = self.history[-3] - self.history[-2]
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(d0 > 0, d1 / d0, np.inf)
            r = np.clip(r, 0.0, np.inf)
            factor = np.where(r < 0.95, r / (1.0 - np.minimum(r, 0.95)), 20.0)
            bias = np.where(done, 0.0, np.abs(d1) * np.maximum(factor, 1.0))
        self.mid = g - bias
        self.half = bias

    def run(self, target, tracker=None) -> None:
        """Lanczos steps until the mean half-width is at most ``target(mean midpoint)`` or the step cap."""
        lz = self.lz
        next_check = self.min_steps
        while True:
            alive = lz.step()
            m = lz.steps
            if tracker is not None:
                tracker.step(int(lz.active.sum()), m, self.max_steps)
            if m >= next_check or not alive or m >= self.max_steps:
                self.evaluate()
                if not alive or m >= self.max_steps or float(np.mean(self.half)) <= target(float(np.mean(self.mid))):
                    return
                if self.node is None:
                    next_check = m + ESTIMATE_SPACING
                else:  # the quadrature costs O(k·m³): check about every 8% of the steps after 10
                    next_check = m + max(1, m // 12)


def deflate_first(b: Block, Z: np.ndarray, n: int, defl: dict) -> tuple[np.ndarray, dict]:
    """The first block's cross-fitted deflated samples, and the (lazy) control for later blocks.

    Kept only when they spread DEFLATE_MIN_GAIN times less than the plain samples: a control can add variance
    (never bias) when the Krylov spaces hold little of the spectrum, e.g. a flat one.
    """
    k = Z.shape[1]
    if k < 4:
        defl.update(enabled=False, reason="fewer than 4 probes in the first block")
        return b.mid, defl
    t0 = time.perf_counter()
    # the SVDs cost O(n·K²) for K vectors: at most DEFLATE_VECTORS of them, and at most n/2 (beyond, they would
    # cost more than an exact factorization); the first Lanczos vectors of each probe hold its dominant directions
    steps = min(int(b.lz.size.max()), min(DEFLATE_VECTORS, n // 2) // k)
    if steps < 4:
        defl.update(enabled=False, reason=f"too few Lanczos vectors fit the deflation cap ({steps} per probe)")
        return b.mid, defl
    basis = Kr.KrylovBasis.of(b.lz, steps)
    y, ranks = Kr.deflated_samples(basis, Z, b.mid, n)
    v0, v1 = float(np.var(b.mid, ddof=1)), float(np.var(y, ddof=1))
    defl.update(folds=len(ranks), ritz_pairs_per_fold=ranks, krylov_vectors=int(basis.zrows.size), steps_used=steps,
                variance_plain=v0, variance_deflated=v1, variance_ratio=(v0 / v1) if v1 > 0 else math.inf)
    if not v1 * DEFLATE_MIN_GAIN < v0:
        defl.update(enabled=False, reason=f"the deflated samples spread not even {DEFLATE_MIN_GAIN}x less than "
                    "the plain ones", seconds=time.perf_counter() - t0)
        return b.mid, defl
    mean = float(np.mean(b.mid))
    defl["control"] = lambda: Kr.ritz_control(basis, np.arange(k), n, mean)
    defl["seconds"] = time.perf_counter() - t0
    return y, defl


class Tracker:
    """Progress callbacks of an SLQ run (see ``progress`` in :func:`run`).

    The products still expected are those of the running block: its active probes × the steps left to the
    steps per probe of the blocks before it (``max_steps`` during the first block, so its bar is pessimistic).
    """

    def __init__(self, progress, op, t0):
        self.progress = progress
        self.op = op
        self.t0 = t0
        self.steps_guess: int | None = None

    def _emit(self, fraction: float, passes_total: int) -> None:
        from ...runtime.execute import Progress

        op = self.op
        per = op.tiling.tiles_lower() if op.product == "tiles" else 0
        done = per * op.passes if per else op.matvecs
        total = per * passes_total if per else int(round(op.matvecs / max(fraction, 1e-12)))
        self.progress(Progress(panels_done=op.passes, panels_total=max(passes_total, op.passes), tiles_done=done,
                               tiles_total=max(total, done), work_fraction=min(max(fraction, 0.0), 1.0),
                               elapsed=time.perf_counter() - self.t0))

    def step(self, active: int, steps_done: int, max_steps: int) -> None:
        if self.progress is None:
            return
        left = max((self.steps_guess or max_steps) - steps_done, 0) if active else 0
        total = self.op.matvecs + active * left
        self._emit(self.op.matvecs / max(total, 1), self.op.passes + left)

    def block_done(self, mean_steps: float) -> None:
        self.steps_guess = max(1, int(math.ceil(mean_steps)))

    def finish(self) -> None:
        if self.progress is not None:
            self._emit(1.0, self.op.passes)
