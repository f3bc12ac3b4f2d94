"""Stochastic Lanczos quadrature: log det M = tr log M ≈ mean over probes z of zᵀ log(M) z, each by Lanczos.

The error bar is honest about both of its parts:

* **quadrature bias**, per probe: with a lower bound ``a ≤ λ_min(M)`` (the shift d, a kernel's nugget, the
  preconditioned spectrum's 1, or ``spectrum_lower=``) the Gauss rule (an upper bound for log) and the
  Gauss–Radau rule with a node at a (a lower bound) bracket zᵀ log(M) z. Inside the bracket, the Gauss rules'
  own convergence (the geometric tail of their last decrements, :func:`dlogdet.krylov.gauss_remainder`, times 2)
  narrows it to [Gauss − 2e, Gauss]: a node far below λ_min leaves Radau lagging far behind Gauss. The midpoint of
  what is left is the sample and its half-width the bias bound. Without a bound the bias is *estimated* from the
  convergence of successive Gauss rules alone, and the diagnostics say so.
* **sampling error**: Student-t quantile × standard error of the probe samples.

``error_bar = t_{N−1, (1+confidence)/2} · s/√N + mean half-width``; Lanczos runs on each block of probes until
its mean half-width is below a quarter of the tolerance, and blocks of probes are added until
``error_bar ≤ rtol·|logdet| + atol``.

**Deflation** (on by default): the Lanczos vectors of the first block of probes span the dominant eigenvectors
of M many times over. Rayleigh–Ritz on the union of their Krylov spaces (known from the recurrences, no product
with M) gives Ritz pairs (θᵢ, yᵢ), and ``G = Σ (log θᵢ − c) yᵢyᵢᵀ`` is a control variate: each sample becomes
``zᵀ log(M) z − zᵀGz + tr G``, unbiased as long as G does not depend on z. The first block is cross-fitted (its
probes in 4 groups, each corrected with the control of the other three); later blocks use the control of the
whole first block. Why on by default: at the same matrix-vector products it roughly halves the RMS error where
the spectrum has dominant directions (an NTK, kernels; docs/benchmarks/estimators.md). Its cost is dense linear
algebra on the stored Lanczos vectors (SVDs of n × K, K = probes × steps), small beside the passes
over the tiles of a large matrix, not beside the products with a small in-memory one.

With ``precondition=r``, a rank-r randomized Nyström approximation Ĉ of C = M − aI gives P = Ĉ + aI with
log det M = log det P + log det(P^{-1/2} M P^{-1/2}); the first term is exact, the second is by SLQ on a
spectrum in [1, 1 + ‖C − Ĉ‖/a], where few Lanczos steps and probes suffice.
"""

from __future__ import annotations

import logging
import math
import time

from typing import Any

import numpy as np

from ..linalg import krylov as Kr
from ..core.diagnostics import ABSENT, Absent, record
from ..core.errors import InputError, NotPSDError
from ..runtime.operator import (ProductDiagnostics, SourceOperator, check_int, check_positive, check_shift,
                                spectrum_lower_bound)
from ..core.result import LogdetResult
from ..sources import TileSource
from ..core.status import Status

log = logging.getLogger(__name__)

PROBES = ("rademacher", "gaussian")

# Share of the tolerance a block's quadrature bias may take before Lanczos stops: the rest is left to the
# sampling error, which more probes reduce (more Lanczos steps cannot).
BIAS_SHARE = 0.25
# Relative margin below a spectrum bound for the Gauss–Radau node: kernels and Nyström residuals are PSD only to
# rounding (eigenvalues of −1e-13·‖A‖), which must not put the node above λ_min.
NODE_MARGIN = 1e-6
# Largest next block of probes, in blocks: the next block is sized by the probes the sampling error still needs.
GROWTH = 8
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


@record
class SLQDiagnostics(ProductDiagnostics, method="slq"):
    """What ``method="slq"`` reports besides the products' cost.

    Attributes
    ----------
    rtol, atol, confidence : float
        The tolerance asked for and the confidence of the sampling part.
    error_bar : float
        Half-width of the confidence interval: sampling error + quadrature bias bound; ``interval`` the interval.
    sampling_error, sampling_stderr : float
        Student-t quantile × standard error of the probes, and that standard error.
    bias_bound : float
        Mean half-width of the probes' quadrature brackets; ``bias_kind`` says how it was bounded.
    spectrum_lower, radau_node : float or None
        The lower spectrum bound used, and the Gauss–Radau node.
    probes, block : int
        Probes used, probes per block; ``probe`` their kind, ``seed``.
    lanczos_steps_mean, lanczos_steps_max : float, int
    reorth : str
    reorthogonalized_vectors : int
    deflation : dict
        Whether the Krylov deflation was kept, and its Ritz pairs and variance gain.
    precondition_rank, precondition_power, precondition_mu, logdet_preconditioner, precondition_matvecs
        The Nyström preconditioner, where one was used; ``leading_eigenvalues`` and ``spectral_decay`` its sketch.
    """

    rtol: float | Absent = ABSENT
    atol: float | Absent = ABSENT
    confidence: float | Absent = ABSENT
    error_bar: float | Absent = ABSENT
    interval: list | Absent = ABSENT
    sampling_error: float | Absent = ABSENT
    sampling_stderr: float | Absent = ABSENT
    bias_bound: float | Absent = ABSENT
    bias_kind: str | Absent = ABSENT
    spectrum_lower: float | None | Absent = ABSENT
    radau_node: float | None | Absent = ABSENT
    probes: int | Absent = ABSENT
    probe: str | Absent = ABSENT
    block: int | Absent = ABSENT
    seed: Any = ABSENT
    lanczos_steps_mean: float | Absent = ABSENT
    lanczos_steps_max: int | Absent = ABSENT
    reorth: str | Absent = ABSENT
    reorthogonalized_vectors: int | Absent = ABSENT
    deflation: dict | Absent = ABSENT
    precondition_rank: int | Absent = ABSENT
    precondition_power: int | Absent = ABSENT
    precondition_mu: float | Absent = ABSENT
    logdet_preconditioner: float | Absent = ABSENT
    precondition_matvecs: int | Absent = ABSENT
    leading_eigenvalues: Any = ABSENT
    spectral_decay: Any = ABSENT

    def method_rows(self, result) -> list:
        if "error_bar" not in self or result.stderr is None:
            return []
        return [("error bar", f"± {self.error_bar:.6g} ({100 * self.error_bar / abs(result.logdet):.3g}%; "
                              f"{self.get('confidence', 0.95):g} confidence, quadrature bias "
                              f"{self.get('bias_bound', 0.0):.3g} included)")]


def _t_quantile(confidence: float, dof: int) -> float:
    from scipy.special import stdtrit   # scipy.special, not scipy.stats: an import of 0.02 s instead of 1 s

    return float(stdtrit(max(dof, 1), 0.5 + confidence / 2))


def _z_quantile(confidence: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(0.5 + confidence / 2))


class _Block:
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


def _deflate_first(b: _Block, Z: np.ndarray, n: int, defl: dict) -> tuple[np.ndarray, dict]:
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


class _Tracker:
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
        from ..runtime.execute import Progress

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


def run(source: TileSource, *, assume: str = "spd", t: float = 1.0, d=0.0, block_size: int | None = None,
        budget=None, client=None, rtol: float = 0.01, atol: float = 0.0, seed=None, probe: str = "rademacher",
        block: int = 16, min_probes: int | None = None, max_probes: int = 512, min_steps: int = 10,
        max_steps: int = 400, reorth: str = "full", confidence: float = 0.95, precondition: int | None = None,
        power: int = 1, spectrum_lower=None, product: str = "auto", check_symmetry: bool | None = None,
        deflate: bool | None = None, progress=None) -> LogdetResult:
    """log det M, M = t·A + diag(d) symmetric positive definite, by stochastic Lanczos quadrature.

    See :func:`dlogdet.logdet` for the common parameters and the module doc for the method.

    Parameters
    ----------
    rtol, atol : float
        Stop when the error bar is at most ``rtol·|logdet| + atol`` (default 1%).
    seed : int or None
        Seed of the probes (and of the preconditioner's sketch).
    probe : {"rademacher", "gaussian"}
        Rademacher (±1) probes have the smaller variance (2Σ_{i≠j} f_ij² against 2‖f‖_F²), the default.
    block : int
        Probes per block: one pass over the tiles per Lanczos step serves all of them (default 16; the first
        block holds ``min_probes`` of them, 32 by default). Later blocks take as many
        probes as the sampling error says are still needed, up to 8 blocks' worth (and the budget's widest block).
    min_probes, max_probes : int
        Probes before stopping is considered (default: two blocks, 32; why: a stop after the first 16, when their
        spread happens to be small, can miss the true error, docs/benchmarks/estimators.md) and the cap (default
        512).
    min_steps, max_steps : int
        Lanczos steps before the first quadrature check (default 10) and the cap per probe (default 400: an RBF
        kernel with a 1e-3 nugget needs 100–200 without a preconditioner).
    reorth : {"full", "partial", "none"}
        Reorthogonalization of the Lanczos vectors (:class:`dlogdet.krylov.Lanczos`). Full by default: its
        cost, m·n·k per step, is small beside a pass over n²/2 tile entries, and it keeps the bracket honest.
    confidence : float
        Confidence of the sampling part of the error bar (default 0.95).
    precondition : int, optional
        Rank r of a randomized Nyström preconditioner (0 or None: none). It costs ``(power + 1)·r`` products in
        ``power + 1`` passes, and pays off on spectra with a few large and many small eigenvalues (kernels).
    power : int
        Power iterations of the preconditioner's range finder (default 1).
    spectrum_lower : float, optional
        A lower bound of λ_min(M) for the Gauss–Radau node; default ``min(d)`` (+ t·jitter for a
        :class:`~dlogdet.KernelSource`), taking t·A ⪰ 0.
    product : {"auto", "tiles", "direct", "matvec"}
        How M·V is computed (:mod:`dlogdet.linop`); ``"matvec"`` uses the source's matrix-free product.
    deflate : bool, optional
        Krylov deflation of the samples (module doc). Default: on when ``reorth`` keeps the Lanczos vectors
        (``"full"``, ``"partial"``), off for ``"none"``. It is also switched off, and the diagnostics say so, when
        the first block's corrected samples do not spread at least 1.25× less than the plain ones.
    progress : callable, optional
        Called with a :class:`dlogdet.runtime.Progress` after every Lanczos step: ``panels`` count the passes
        over the matrix (block products), ``tiles`` the tile products (the matrix-vector products on the
        ``"direct"`` and ``"matvec"`` paths), and ``work_fraction`` the products done over the products the
        error bar is expected to need (an estimate that grows with the blocks the sampling error asks for).
    """
    t0 = time.perf_counter()
    if assume != "spd":
        raise InputError(f"method='slq' needs a symmetric positive definite M (assume='spd'), got assume={assume!r}; "
                         "use method='exact' for an indefinite or general matrix")
    n = source.n
    t, d = check_shift(t, d, n)
    rtol = check_positive("rtol", rtol, hint=" (the relative tolerance, e.g. rtol=0.01 for 1%)")
    atol = check_positive("atol", atol, allow_zero=True)
    if probe not in PROBES:
        raise InputError(f"probe must be one of {PROBES}, got {probe!r}")
    if reorth not in Kr.REORTH:
        raise InputError(f"reorth must be one of {Kr.REORTH}, got {reorth!r}")
    confidence = check_positive("confidence", confidence)
    if confidence >= 1:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    block = check_int("block", block, 1, hint=" (probes per block)")
    max_probes = check_int("max_probes", max_probes, 2)
    min_probes = check_int("min_probes", min(2 * block, max_probes) if min_probes is None else min_probes, 2,
                           max_probes)
    max_steps = check_int("max_steps", max_steps, 1)
    min_steps = check_int("min_steps", min_steps, 1)
    max_steps = min(max_steps, n)
    power = check_int("power", power, 0)
    if precondition is not None and precondition != 0:
        precondition = check_int("precondition", precondition, 1, n - 1,
                                 hint=f" (the rank of the Nyström preconditioner must be below n = {n})")
    else:
        precondition = 0
    if deflate is None:
        deflate = reorth != "none"
    elif deflate and reorth == "none":
        raise InputError("deflate=True needs the Lanczos vectors, which reorth='none' does not keep; use "
                         "reorth='full' or 'partial', or deflate=False")
    a = spectrum_lower_bound(source, t, d, spectrum_lower)
    rng = np.random.default_rng(seed)

    with SourceOperator(source, t=t, d=d, block_size=block_size, budget=budget, client=client, product=product,
                        check_symmetry=check_symmetry) as op:
        op.check_block(max(block, precondition))
        offset = 0.0
        matmat = op.matmat
        node = None if a is None else a * (1 - NODE_MARGIN)
        pre = {}
        if precondition:
            shift = a if a is not None else 0.0

            def shifted(V):
                return op.matmat(V) - shift * V

            ny = Kr.randomized_nystrom(shifted, n, precondition, power=power, rng=rng)
            mu = a if a is not None else max(float(ny.lam[-1]), float(ny.lam[0]) * Kr.EPS * n, np.finfo(float).tiny)
            P = Kr.NystromPreconditioner(ny.U, ny.lam, mu)
            offset = P.logdet()

            def matmat(V):
                return P.inv_sqrt(op.matmat(P.inv_sqrt(V)))

            node = None if a is None else 1.0 - NODE_MARGIN
            pre = {"precondition_rank": precondition, "precondition_power": power, "precondition_mu": mu,
                   "logdet_preconditioner": offset, "precondition_matvecs": ny.matvecs,
                   "leading_eigenvalues": ny.lam[: min(precondition, 20)] + shift,
                   "spectral_decay": Kr.spectral_decay(ny.lam)}

        mids: list[np.ndarray] = []
        halves: list[np.ndarray] = []
        steps: list[np.ndarray] = []
        defl: dict = {"enabled": bool(deflate)}
        tracker = _Tracker(progress, op, t0)
        status = Status.OK
        reorths = 0
        widest = op.max_columns()
        k = max(block, min_probes)      # the first min_probes probes in one pass per Lanczos step
        while True:
            k = min(k, max_probes - sum(x.size for x in mids))
            if widest is not None:
                k = max(1, min(k, widest))
            Z = Kr.probes(n, k, probe, rng)
            known = np.concatenate(mids) if mids else None

            def target(block_mean, known=known):
                est = offset + (block_mean if known is None else float(np.mean(np.concatenate([known, [block_mean]]))))
                return BIAS_SHARE * (rtol * abs(est) + atol)

            b = _Block(matmat, Z, reorth, node, max_steps, min(min_steps, max_steps))
            b.run(target, tracker)
            reorths += b.lz.reorthogonalizations
            sample = b.mid
            if deflate and not mids:
                sample, defl = _deflate_first(b, Z, n, defl)
            elif defl.get("control") is not None:
                ctl = defl["control"]
                if callable(ctl):                   # built from the first block on the first later block
                    ctl = defl["control"] = ctl()
                    defl["ritz_pairs_later_blocks"] = 0 if ctl is None else ctl.rank
                if ctl is not None:
                    sample = b.mid - ctl.quad(Z) + ctl.trace
            mids.append(sample)
            halves.append(b.half)
            steps.append(b.lz.size.copy())
            tracker.block_done(float(np.mean(np.concatenate(steps))))
            x = np.concatenate(mids)
            h = np.concatenate(halves)
            N = x.size
            est = offset + float(np.mean(x))
            se = float(np.std(x, ddof=1) / math.sqrt(N)) if N > 1 else math.inf
            bias = float(np.mean(h))
            tq = _t_quantile(confidence, N - 1)
            bar = tq * se + bias
            goal = rtol * abs(est) + atol
            log.info("slq: %d probes, est %.6g, sampling %.3g, bias %.3g, bar %.3g (goal %.3g), matvecs %d", N, est,
                     tq * se, bias, bar, goal, op.matvecs)
            if N >= min_probes and bar <= goal:
                break
            if bias > goal and b.lz.steps >= max_steps and not (~b.lz.active).all():
                status = Status.UNCONVERGED
                log.warning("slq: the quadrature bias %.3g exceeds the tolerance %.3g at max_steps=%d; raise "
                            "max_steps or use precondition=", bias, goal, max_steps)
                break
            if N >= max_probes:
                status = Status.UNCONVERGED
                log.warning("slq: error bar %.3g above the tolerance %.3g after max_probes=%d probes", bar, goal, N)
                break
            # the next block: as many probes as the sampling error says are still needed (s/√N falls like 1/√N),
            # at least one block and at most GROWTH blocks, so that a pass over the tiles serves them all
            k = block
            if goal > bias and N > 1:
                need = N * ((tq * se) / (goal - bias)) ** 2 - N
                k = int(min(GROWTH * block, max(block, math.ceil(1.1 * need))))
        tracker.finish()
        summary = op.summary()

    z = _z_quantile(confidence)
    all_steps = np.concatenate(steps)
    diagnostics = SLQDiagnostics.from_mapping({
        "wall_time": time.perf_counter() - t0,
        "rtol": rtol, "atol": atol, "confidence": confidence,
        "error_bar": bar, "interval": [est - bar, est + bar],
        "sampling_error": tq * se, "sampling_stderr": se, "bias_bound": bias,
        "bias_kind": "estimated from successive Gauss rules (no spectrum lower bound known)" if node is None
        else "Gauss / Gauss-Radau bracket, narrowed by the Gauss rules' convergence (x2)",
        "spectrum_lower": a, "radau_node": node,
        "probes": N, "probe": probe, "block": block, "seed": seed,
        "lanczos_steps_mean": float(all_steps.mean()), "lanczos_steps_max": int(all_steps.max()),
        "reorth": reorth, "reorthogonalized_vectors": reorths,
        "deflation": {k: v for k, v in defl.items() if k != "control"},
        **summary, "t": t, "d": d if np.ndim(d) == 0 else "vector", **pre,
    })
    return LogdetResult(logdet=est, sign=1.0, method="slq", n=n, dtype=str(source.dtype), stderr=bar / z,
                        assume="spd", status=status, diagnostics=diagnostics)
