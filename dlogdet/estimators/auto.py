"""``method="auto"``: the exact engine when it fits the budget and the time, otherwise the best estimator.

Decision guide (what :func:`run` does, in this order; ``diagnostics["auto"]`` records the choice and why):

1. **Not symmetric positive definite** (``assume="sym"``/``"gen"``): exact. The estimators need M ≻ 0.
2. **rtol below 1e-4**: exact. SLQ's sampling error falls like 1/√probes: 1e-4 would need ~10⁴× the probes of
   1%, far more work than a factorization at any size the estimators serve.
3. **Exact fits**: the dry-run planner (:func:`dlogdet.plan`, the engine's own tiling rules and time model)
   predicts the exact run on these workers and this budget; if it takes at most ``time_limit`` seconds
   (default 60), or no more than the estimator would (≈ 2n²·2000 flops: ~2000 matrix-vector products), exact:
   an exact answer for the same price. With no budget the planner uses the memory the workers have.
4. **Otherwise**: ``method="slq"`` with a rank-``min(256, n/8)`` Nyström preconditioner when a lower bound of
   the spectrum is known (d > 0 or a kernel's nugget: the bracketed estimator, whose preconditioner cuts the
   Lanczos steps per probe by more than half on kernels), plain SLQ without one. ``method="nystrom"`` is never
   chosen: its bounds are guaranteed but its point estimate is only as good as the spectral decay beyond the
   sketch (tens of percent off on slowly decaying kernel spectra); call it directly for the leading spectrum and
   the bracket. The measurements: docs/benchmarks/estimators.md.

Options for the chosen estimator pass through (``seed``, ``precondition``, ``max_steps``, ...), except those of
the other branch; an option that neither takes is refused (:func:`dlogdet.estimators.check_options`).
"""

from __future__ import annotations

import logging
import os

from ..core import config
from ..runtime import memory
from ..sources.bounds import spectrum_lower_bound
from ..runtime.execute import active_client, n_workers
from ..sources import TileSource

log = logging.getLogger(__name__)

#: The methods whose options ``run`` takes and passes on (the registry checks options against them).
PASSES_TO = ("exact", "slq")
ESTIMATOR_MATVECS = 2000  # products of a typical SLQ run at rtol=1% (16 probes × ~100 steps, or a preconditioner)


def decide(source: TileSource, *, assume: str, t, d, rtol: float, budget, client, time_limit: float,
           block_size=None) -> tuple[str, str]:
    """The method ``run`` would choose, and why (see the module doc)."""
    from ..core.errors import DlogdetError
    from ..runtime.planner import plan

    if assume != "spd":
        return "exact", f"assume={assume!r}: the estimators need a positive definite M"
    if rtol < 1e-4:
        return "exact", f"rtol={rtol:g} is below 1e-4, out of the estimators' reach"
    n = source.n
    workers = n_workers(client)
    try:
        b = memory.resolve(budget, client).bytes
        if b is None:   # no budget: plan for the memory the workers have
            b = memory.resolve(memory.AUTO, client).bytes
        p = plan(n, workers=workers, budget=b, dtype=str(source.dtype),
                 assume=assume, block_size=block_size)
    except DlogdetError as e:
        return "slq", f"the exact run does not fit: {e}"
    rate = p.rates.gemm_flops * workers
    est_time = 2.0 * n * n * ESTIMATOR_MATVECS / rate
    if p.mode == "store":
        import shutil
        import tempfile
        root = config.get("scratch") or tempfile.gettempdir()
        if os.path.isdir(root) and shutil.disk_usage(root).free < p.scratch_bytes:
            return "slq", (f"the exact run needs the on-disk tile store ({p.scratch_bytes / 2**30:.1f} GiB of "
                           f"scratch), more than {root} has free")
    if p.time_total_s <= time_limit:
        return "exact", (f"the planner predicts {p.time_total_s:.3g} s for the exact run ({p.mode} mode), within "
                         f"time_limit={time_limit:g} s")
    if p.time_total_s <= est_time:
        return "exact", (f"the planner predicts {p.time_total_s:.3g} s for the exact run, no more than an "
                         f"estimator's ~{est_time:.3g} s")
    return "slq", (f"the planner predicts {p.time_total_s:.3g} s for the exact run ({p.mode} mode), more than "
                   f"time_limit={time_limit:g} s and the estimator's ~{est_time:.3g} s")


def run(source: TileSource, *, assume: str = "spd", t: float = 1.0, d=0.0, block_size: int | None = None,
        budget=None, client=None, rtol: float = 0.01, time_limit: float = 60.0, **options):
    """Exact when it fits the budget and ``time_limit`` seconds, else the preconditioned SLQ estimator.

    See the module doc for the decision guide; the result's ``diagnostics["auto"]`` holds the choice and the
    reason.
    """
    import dataclasses

    from . import get, options_of
    from ..core.checks import check_positive

    rtol = check_positive("rtol", rtol, hint=" (the relative tolerance, e.g. rtol=0.01 for 1%)")
    time_limit = check_positive("time_limit", time_limit, hint=" (seconds the exact run may take)")
    client = active_client(client)
    method, reason = decide(source, assume=assume, t=t, d=d, rtol=rtol, budget=budget, client=client,
                            time_limit=time_limit, block_size=block_size)
    log.info("auto: %s (%s)", method, reason)
    opts = {k: v for k, v in options.items() if k in options_of(method)}
    if method == "exact":
        r = get("exact")(source, assume=assume, t=t, d=d, block_size=block_size, budget=budget, client=client,
                         **opts)
    else:
        if "precondition" not in opts and spectrum_lower_bound(source, float(t), d, opts.get("spectrum_lower")) \
                is not None:
            opts["precondition"] = int(min(256, max(1, source.n // 8)))
        r = get("slq")(source, assume=assume, t=t, d=d, block_size=block_size, budget=budget, client=client,
                       rtol=rtol, **opts)
    return dataclasses.replace(r, diagnostics=r.diagnostics.replace(auto={"method": method, "reason": reason}))
