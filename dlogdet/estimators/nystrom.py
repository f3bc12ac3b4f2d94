"""Randomized Nyström: the leading spectrum of M = t·A + diag(d), its decay, and guaranteed bounds on log det M.

With a ≤ λ_min(M) known (σ² = d, plus a kernel's nugget), C = M − aI ⪰ 0 is sketched by a randomized range
finder (oversampling, power iterations) and the stable shifted single-pass Nyström rule
(:func:`dlogdet.linalg.krylov.randomized_nystrom`), giving Ĉ = U diag(λ̂) Uᵀ ⪯ C. Then

    lower = log det(Ĉ + aI) = Σ log(λ̂ᵢ + a) + (n − ℓ) log a  ≤  log det M
    upper = lower + (n − ℓ)·log(1 + tr(C − Ĉ) / ((n − ℓ)·a))  ≤  lower + tr(C − Ĉ)/a

(:func:`dlogdet.linalg.krylov.nystrom_logdet_bounds`); tr C comes from the diagonal tiles, so the bounds cost one
more read of nt of the nt(nt+1)/2 tiles. The point estimate is the lower bound, the classic Nyström estimate:
it is good when the spectrum decays fast beyond the sketch, and the bracket says how good. On slowly decaying
spectra the bracket is wide: use ``method="slq", precondition=rank`` there, which uses this same sketch as a
preconditioner.
"""

from __future__ import annotations

import time

from typing import Any

import numpy as np

from ..linalg import krylov as Kr
from ..core.diagnostics import ABSENT, Absent, record
from ..core.errors import InputError
from ..core.checks import check_int, check_shift
from ..runtime.operator import ProductDiagnostics, SourceOperator
from ..sources.bounds import spectrum_lower_bound
from ..core.result import LogdetResult
from ..sources import TileSource


@record
class NystromDiagnostics(ProductDiagnostics, method="nystrom"):
    """What ``method="nystrom"`` reports besides the products' cost.

    Attributes
    ----------
    rank, sketch, oversample, power : int
        Eigenvalues returned, sketch columns, oversampling, power iterations; ``seed``.
    shift : float
        a ≤ λ_min(M), the shift of the bounds.
    residual_trace : float
        tr(C − Ĉ), what the sketch missed.
    upper_trace_bound : float
        lower + tr(C − Ĉ)/a, the looser upper bound.
    error_bar : float
        upper − lower; ``interval`` [lower, upper].
    leading_eigenvalues : array
        The leading eigenvalues of M, descending; ``spectral_decay`` their decay
        (:func:`dlogdet.linalg.krylov.spectral_decay`).
    """

    rank: int | Absent = ABSENT
    sketch: int | Absent = ABSENT
    oversample: int | Absent = ABSENT
    power: int | Absent = ABSENT
    seed: Any = ABSENT
    shift: float | Absent = ABSENT
    residual_trace: float | Absent = ABSENT
    upper_trace_bound: float | Absent = ABSENT
    error_bar: float | Absent = ABSENT
    interval: list | Absent = ABSENT
    leading_eigenvalues: Any = ABSENT
    spectral_decay: Any = ABSENT


def run(source: TileSource, *, assume: str = "spd", t: float = 1.0, d=0.0, block_size: int | None = None,
        budget=None, client=None, rank: int | None = None, oversample: int = 10, power: int = 1, seed=None,
        spectrum_lower=None, product: str = "auto", check_symmetry: bool | None = None,
        progress=None) -> LogdetResult:
    """Bounds on log det(K + σ²I), K = t·A ⪰ 0, σ² = d (+ a kernel's nugget), from a rank-``rank`` Nyström sketch.

    Parameters
    ----------
    rank : int
        Eigenvalues to return (default min(n, 200)); the sketch has ``rank + oversample`` columns (at most n), and
        the bounds use all of them.
    oversample : int
        Extra sketch columns (default 10: the range finder's failure probability falls like 10^(−oversample)
        at fixed rank, Halko et al. 2011 §10).
    power : int
        Power iterations (default 1: one more pass, and the sketch sees the decay λ³ instead of λ).
    seed : int or None
        Seed of the sketch.
    spectrum_lower : float, optional
        The shift a ≤ λ_min(M) of the bounds, if larger than the default ``min(d)`` (+ t·jitter of a
        :class:`~dlogdet.KernelSource`).
    progress : callable, optional
        Called with a :class:`dlogdet.runtime.Progress` after each pass over the matrix (``power + 2`` of them:
        the range finder's, the sketch's, the diagonal's).

    Returns
    -------
    LogdetResult
        ``logdet`` = ``lower``; ``upper``; ``diagnostics["leading_eigenvalues"]`` (of M, descending),
        ``["spectral_decay"]`` (:func:`dlogdet.linalg.krylov.spectral_decay`), ``["upper_trace_bound"]`` (lower +
        tr(C − Ĉ)/a), ``["residual_trace"]``, ``["matvecs"]``, ``["passes"]``.
    """
    t0 = time.perf_counter()
    if assume != "spd":
        raise InputError(f"method='nystrom' needs a symmetric positive semi-definite A (assume='spd'), got "
                         f"assume={assume!r}; use method='exact' for an indefinite or general matrix")
    n = source.n
    t, d = check_shift(t, d, n)
    if rank is None:
        rank = min(n, 200)
    rank = check_int("rank", rank, 1, n, hint=f" (the rank of the Nyström approximation cannot exceed n = {n})")
    oversample = check_int("oversample", oversample, 0)
    power = check_int("power", power, 0)
    a = spectrum_lower_bound(source, t, d, spectrum_lower)
    if a is None:
        raise InputError("method='nystrom' bounds log det(K + sigma^2 I) for sigma^2 > 0, but M = t·A + diag(d) has "
                         "no known positive lower bound on its spectrum: pass d=sigma^2 > 0 (or spectrum_lower=)")
    sketch = min(n, rank + oversample)
    rng = np.random.default_rng(seed)
    with SourceOperator(source, t=t, d=d, block_size=block_size, budget=budget, client=client, product=product,
                        check_symmetry=check_symmetry) as op:
        op.check_block(sketch)

        passes_total = power + 2          # the range finder's passes, the sketch's, and one for the diagonal

        def report(done):
            if progress is not None:
                from ..runtime.execute import Progress

                per = op.tiling.tiles_lower() if op.product == "tiles" else sketch
                progress(Progress(panels_done=done, panels_total=passes_total, tiles_done=per * done,
                                  tiles_total=per * passes_total, work_fraction=done / passes_total,
                                  elapsed=time.perf_counter() - t0))

        def shifted(V):
            out = op.matmat(V) - a * V
            report(min(op.passes, passes_total - 1))
            return out

        ny = Kr.randomized_nystrom(shifted, n, sketch, power=power, rng=rng)
        diag = op.diagonal()
        report(passes_total)
        summary = op.summary()
    residual = float(np.sum(diag) - a * n - np.sum(ny.lam))
    lower, upper, upper_trace = Kr.nystrom_logdet_bounds(ny.lam, a, residual, n)
    lam_m = ny.lam[:rank] + a
    diagnostics = NystromDiagnostics.from_mapping({
        "wall_time": time.perf_counter() - t0,
        "rank": rank, "sketch": sketch, "oversample": oversample, "power": power, "seed": seed,
        "shift": a, "residual_trace": max(residual, 0.0), "upper_trace_bound": upper_trace,
        "error_bar": upper - lower, "interval": [lower, upper],
        "leading_eigenvalues": lam_m, "spectral_decay": Kr.spectral_decay(ny.lam[:rank]),
        **summary, "t": t, "d": d if np.ndim(d) == 0 else "vector",
    })
    return LogdetResult(logdet=lower, sign=1.0, method="nystrom", n=n, dtype=str(source.dtype), lower=lower,
                        upper=upper, assume="spd", diagnostics=diagnostics)
