"""Stochastic Lanczos quadrature: log det M = tr log M ≈ mean over probes z of zᵀ log(M) z, each by Lanczos.

The error bar is honest about both of its parts:

* **quadrature bias**, per probe: with a lower bound ``a ≤ λ_min(M)`` (the shift d, a kernel's nugget, the
  preconditioned spectrum's 1, or ``spectrum_lower=``) the Gauss rule (an upper bound for log) and the
  Gauss–Radau rule with a node at a (a lower bound) bracket zᵀ log(M) z. Inside the bracket, the Gauss rules'
  own convergence (the geometric tail of their last decrements, :func:`dlogdet.linalg.krylov.gauss_remainder`, times 2)
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
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ...core.checks import check_int, check_positive, check_shift
from ...core.diagnostics import ABSENT, Absent, record
from ...core.errors import InputError
from ...core.result import LogdetResult
from ...core.status import Status
from ...linalg import krylov as Kr
from ...runtime.operator import ProductDiagnostics, SourceOperator
from ...sources import TileSource
from ...sources.bounds import spectrum_lower_bound
from .blocks import Block, Tracker, deflate_first, t_quantile, z_quantile

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
        Reorthogonalization of the Lanczos vectors (:class:`dlogdet.linalg.krylov.Lanczos`). Full by default: its
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
        How M·V is computed (:mod:`dlogdet.runtime.operator`); ``"matvec"`` uses the source's matrix-free product.
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
    o = _Options.checked(n, rtol=rtol, atol=atol, probe=probe, block=block, min_probes=min_probes,
                         max_probes=max_probes, min_steps=min_steps, max_steps=max_steps, reorth=reorth,
                         confidence=confidence, precondition=precondition, power=power, deflate=deflate)
    a = spectrum_lower_bound(source, t, d, spectrum_lower)
    rng = np.random.default_rng(seed)

    with SourceOperator(source, t=t, d=d, block_size=block_size, budget=budget, client=client, product=product,
                        check_symmetry=check_symmetry) as op:
        op.check_block(max(o.block, o.precondition))
        pre = _preconditioned(op, a, o, rng, n)
        tracker = Tracker(progress, op, t0)
        est = _estimate(pre, op, o, rng, n, tracker)
        tracker.finish()
        summary = op.summary()

    z = z_quantile(o.confidence)
    all_steps = np.concatenate(est.steps)
    diagnostics = SLQDiagnostics.from_mapping({
        "wall_time": time.perf_counter() - t0,
        "rtol": o.rtol, "atol": o.atol, "confidence": o.confidence,
        "error_bar": est.bar, "interval": [est.value - est.bar, est.value + est.bar],
        "sampling_error": est.tq * est.se, "sampling_stderr": est.se, "bias_bound": est.bias,
        "bias_kind": "estimated from successive Gauss rules (no spectrum lower bound known)" if pre.node is None
        else "Gauss / Gauss-Radau bracket, narrowed by the Gauss rules' convergence (x2)",
        "spectrum_lower": a, "radau_node": pre.node,
        "probes": est.probes, "probe": o.probe, "block": o.block, "seed": seed,
        "lanczos_steps_mean": float(all_steps.mean()), "lanczos_steps_max": int(all_steps.max()),
        "reorth": o.reorth, "reorthogonalized_vectors": est.reorths,
        "deflation": {k: v for k, v in est.deflation.items() if k != "control"},
        **summary, "t": t, "d": d if np.ndim(d) == 0 else "vector", **pre.diagnostics,
    })
    return LogdetResult(logdet=est.value, sign=1.0, method="slq", n=n, dtype=str(source.dtype), stderr=est.bar / z,
                        assume="spd", status=est.status, diagnostics=diagnostics)


@dataclass(frozen=True)
class _Options:
    """The run's options, checked."""

    rtol: float
    atol: float
    probe: str
    block: int
    min_probes: int
    max_probes: int
    min_steps: int
    max_steps: int
    reorth: str
    confidence: float
    precondition: int
    power: int
    deflate: bool

    @classmethod
    def checked(cls, n: int, *, rtol, atol, probe, block, min_probes, max_probes, min_steps, max_steps, reorth,
                confidence, precondition, power, deflate) -> _Options:
        """The options of :func:`run`, or an InputError naming the fix."""
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
        return cls(rtol=rtol, atol=atol, probe=probe, block=block, min_probes=min_probes, max_probes=max_probes,
                   min_steps=min_steps, max_steps=max_steps, reorth=reorth, confidence=confidence,
                   precondition=precondition, power=power, deflate=bool(deflate))


@dataclass(frozen=True)
class _Preconditioned:
    """The operator SLQ runs on (M, or P^{-1/2} M P^{-1/2}), log det P, the Gauss–Radau node and what to report."""

    matmat: Callable
    offset: float
    node: float | None
    diagnostics: dict


def _preconditioned(op: SourceOperator, a: float | None, o: _Options, rng, n: int) -> _Preconditioned:
    """M itself, or with ``precondition=r`` the rank-r Nyström preconditioned operator (module doc)."""
    node = None if a is None else a * (1 - NODE_MARGIN)
    if not o.precondition:
        return _Preconditioned(op.matmat, 0.0, node, {})
    shift = a if a is not None else 0.0

    def shifted(V):
        return op.matmat(V) - shift * V

    ny = Kr.randomized_nystrom(shifted, n, o.precondition, power=o.power, rng=rng)
    mu = a if a is not None else max(float(ny.lam[-1]), float(ny.lam[0]) * Kr.EPS * n, np.finfo(float).tiny)
    P = Kr.NystromPreconditioner(ny.U, ny.lam, mu)
    offset = P.logdet()

    def matmat(V):
        return P.inv_sqrt(op.matmat(P.inv_sqrt(V)))

    return _Preconditioned(matmat, offset, None if a is None else 1.0 - NODE_MARGIN, {
        "precondition_rank": o.precondition, "precondition_power": o.power, "precondition_mu": mu,
        "logdet_preconditioner": offset, "precondition_matvecs": ny.matvecs,
        "leading_eigenvalues": ny.lam[: min(o.precondition, 20)] + shift,
        "spectral_decay": Kr.spectral_decay(ny.lam)})


@dataclass
class _Estimate:
    """Where the blocks of probes ended: the estimate, its error bar and its parts."""

    value: float
    bar: float
    se: float
    tq: float
    bias: float
    probes: int
    status: Status
    steps: list
    deflation: dict
    reorths: int


def _estimate(pre: _Preconditioned, op: SourceOperator, o: _Options, rng, n: int, tracker: Tracker) -> _Estimate:
    """Blocks of probes until the error bar meets the tolerance, or max_probes / max_steps stop them."""
    mids: list[np.ndarray] = []
    halves: list[np.ndarray] = []
    steps: list[np.ndarray] = []
    defl: dict = {"enabled": o.deflate}
    status = Status.OK
    reorths = 0
    widest = op.max_columns()
    k = max(o.block, o.min_probes)      # the first min_probes probes in one pass per Lanczos step
    while True:
        k = min(k, o.max_probes - sum(x.size for x in mids))
        if widest is not None:
            k = max(1, min(k, widest))
        Z = Kr.probes(n, k, o.probe, rng)
        known = np.concatenate(mids) if mids else None

        def target(block_mean, known=known):
            est = pre.offset + (block_mean if known is None else float(np.mean(np.concatenate([known, [block_mean]]))))
            return BIAS_SHARE * (o.rtol * abs(est) + o.atol)

        b = Block(pre.matmat, Z, o.reorth, pre.node, o.max_steps, min(o.min_steps, o.max_steps))
        b.run(target, tracker)
        reorths += b.lz.reorthogonalizations
        sample = b.mid
        if o.deflate and not mids:
            sample, defl = deflate_first(b, Z, n, defl)
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
        est = pre.offset + float(np.mean(x))
        se = float(np.std(x, ddof=1) / math.sqrt(N)) if N > 1 else math.inf
        bias = float(np.mean(h))
        tq = t_quantile(o.confidence, N - 1)
        bar = tq * se + bias
        goal = o.rtol * abs(est) + o.atol
        log.info("slq: %d probes, est %.6g, sampling %.3g, bias %.3g, bar %.3g (goal %.3g), matvecs %d", N, est,
                 tq * se, bias, bar, goal, op.matvecs)
        if N >= o.min_probes and bar <= goal:
            break
        if bias > goal and b.lz.steps >= o.max_steps and not (~b.lz.active).all():
            status = Status.UNCONVERGED
            log.warning("slq: the quadrature bias %.3g exceeds the tolerance %.3g at max_steps=%d; raise "
                        "max_steps or use precondition=", bias, goal, o.max_steps)
            break
        if N >= o.max_probes:
            status = Status.UNCONVERGED
            log.warning("slq: error bar %.3g above the tolerance %.3g after max_probes=%d probes", bar, goal, N)
            break
        # the next block: as many probes as the sampling error says are still needed (s/√N falls like 1/√N),
        # at least one block and at most GROWTH blocks, so that a pass over the tiles serves them all
        k = o.block
        if goal > bias and N > 1:
            need = N * ((tq * se) / (goal - bias)) ** 2 - N
            k = int(min(GROWTH * o.block, max(o.block, math.ceil(1.1 * need))))
    return _Estimate(est, bar, se, tq, bias, N, status, steps, defl, reorths)
