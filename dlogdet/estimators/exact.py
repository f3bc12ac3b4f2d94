"""The exact engine: log|det(t·A + diag(d))| by a tiled Cholesky / LDLᵀ / LU on a Dask graph."""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import shutil
import tempfile
import time
import uuid

import numpy as np

from ..core import config
from ..core.errors import InputError, ScratchSpaceError
from ..core.result import Inertia, LogdetResult
from ..engine.graph import check_in_memory, graph_token
from ..engine.plan import ExactPlan, plan_exact
from ..engine.store import TileStore, build_store_graph, dir_bytes, remove_partial, resume_step
from ..engine.tiles import build_factor_graph, scatter_tiles
from ..linalg import backend as B
from ..linalg import kernels as K
from ..linalg.kernels import ASSUME
from ..runtime import memory
from ..runtime.execute import MemoryWatch, ProgressCallback, active_client, execute, n_workers
from ..sources import ArraySource, DaskArraySource, NpySource, TileSource
from ..sources.base import content_token

log = logging.getLogger(__name__)


def _check_scalar(name: str, v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a real number, got {v!r}") from None
    if not math.isfinite(f):
        raise InputError(f"{name} must be finite, got {v!r}")
    return f


def _check_d(d, n: int):
    if np.isscalar(d) or np.ndim(d) == 0:
        return _check_scalar("d", d)
    a = np.asarray(d, dtype=np.float64)
    if a.shape != (n,):
        raise InputError(f"d must be a scalar or a vector of length n = {n}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError("d holds NaN or Inf")
    return a


def _check_block_size(block_size) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise InputError(f"block_size must be a positive integer, got {block_size!r}")
    return int(block_size)


def _scratch_root(scratch) -> str:
    root = scratch if scratch is not None else config.get("scratch")
    return os.path.abspath(os.fspath(root)) if root else tempfile.gettempdir()


def run(source: TileSource, *, assume: str = "spd", t: float = 1.0, d=0.0, block_size: int | None = None,
        budget=None, client=None, backend: str | None = None, progress: ProgressCallback | None = None,
        check_symmetry: bool | None = None, scratch=None, resume: bool = True) -> LogdetResult:
    """Exact log|det M|, M = t·A + diag(d), by a right-looking tiled factorization on a Dask graph.

    See :func:`dlogdet.logdet` for the parameters. What the run does (mode, tile, slots, scratch) is the plan of
    :func:`dlogdet.engine.plan.plan_exact`, the same that :func:`dlogdet.plan` reports.
    """
    if assume not in ASSUME:
        raise InputError(f"assume must be one of {ASSUME}, got {assume!r}")
    t = _check_scalar("t", t)
    d = _check_d(d, source.n)
    backend = backend or config.get("backend", "auto")
    if backend not in B.BACKENDS:
        raise InputError(f"backend must be one of {B.BACKENDS}, got {backend!r}")
    client = active_client(client)
    plan, budget_source = _plan(source, assume, block_size, budget, client)
    plan.check_task_count()
    if check_symmetry is None:
        check_symmetry = bool(config.get("check.symmetry", True))
    rtol = None
    if assume != "gen" and check_symmetry and not source.symmetric:
        rtol = K.symmetry_rtol_for(source.dtype)
    how = dict(t=t, d=d, backend=backend, rtol=rtol, client=client, progress=progress,
               check_symmetry=check_symmetry, budget_source=budget_source)
    if plan.mode == "store":
        return _run_store(source, plan, scratch=scratch, resume=resume, **how)
    return _run_memory(source, plan, **how)


def _plan(source: TileSource, assume: str, block_size, budget, client) -> tuple[ExactPlan, str]:
    """The run's plan, from the budget (resolved on ``client``'s workers) and the tile given or configured; and
    how the budget was obtained."""
    resolved = memory.resolve(budget, client)
    given = "given (block_size=)"
    if block_size is None and config.get("block-size"):
        block_size, given = config.get("block-size"), "dask config dlogdet.block-size"
    plan = plan_exact(source.n, itemsize=source.dtype.itemsize, assume=assume, workers=n_workers(client),
                      budget=resolved.bytes, block_size=None if block_size is None else _check_block_size(block_size),
                      block_source=given, auto_budget=resolved.source if resolved.is_auto else None)
    return plan, resolved.source


def _run_memory(source: TileSource, plan: ExactPlan, *, t, d, backend, rtol, client, progress, check_symmetry,
                budget_source) -> LogdetResult:
    """The run with tiles in worker memory; started over (at most ``dlogdet.lost-input-retries`` times) when a lost
    worker took results along that dask cannot recompute."""
    tiling = plan.tiling
    scattered = client is not None and isinstance(source, ArraySource)
    check = None
    if scattered and rtol is not None:
        # an in-memory matrix on a cluster: checked here while its tiles are scattered, before any work
        check = functools.partial(check_in_memory, B.to_host(source.array), tiling, rtol,
                                  bool(config.get("check.finite", True)))
        rtol = None
    # a worker lost mid-run can take along results that dask cannot recompute: scattered input tiles (they exist
    # once), and intermediate tiles whose inputs were already forgotten after their last consumer ran (the
    # scheduler drops those tasks, so the lost result's future is cancelled). The run then starts over.
    retries = int(config.get("lost-input-retries", 1)) if client is not None else 0
    restarts, time_lost, t_start = 0, 0.0, time.perf_counter()
    while True:
        tiles, source_ref, futures = None, None, []
        if scattered:
            # scatter the tiles the factorization reads once, each to the worker that uses it, instead of
            # pickling the array into the graph (a restart checks nothing again)
            tiles = scatter_tiles(client, B.to_host(source.array), tiling, plan.assume, check)
            check = None
            futures = list(tiles.values())
        elif client is not None and not isinstance(source, DaskArraySource):
            # a small source (a path, points) on every worker: loads go wherever the scheduler balances best
            futures = client.scatter([source], broadcast=True, hash=False)
            source_ref = futures[0]
        g = build_factor_graph(source, plan.assume, tiling, t=t, d=d, backend=backend,
                               check_finite=bool(config.get("check.finite", True)), symmetry_rtol=rtol,
                               tiles=tiles, source_ref=source_ref)
        log.info("exact %s: n=%d, block size %d, %d panels, %d tasks", plan.assume, plan.n, plan.block_size,
                 tiling.nt, g.n_tasks)
        try:
            (logp, sign), stats = execute(g.dsk, g.output_key, g.panel_keys, client=client, progress=progress,
                                          tiles_total=plan.n_tiles, run=g.token, task_bytes=plan.task_bytes(),
                                          release=futures, budget=plan.budget,
                                          watch=MemoryWatch(plan.held_bytes(), "memory"))
            break
        except BaseException as e:  # FutureCancelledError derives from asyncio's CancelledError (BaseException)
            # scattered tiles exist once: a worker lost before their first consumer ran takes them along, and
            # dask cannot recompute them. The array is still here: scatter it again and start over.
            from distributed.client import FutureCancelledError
            if not (isinstance(e, FutureCancelledError) and retries > 0):
                raise
            retries -= 1
            restarts += 1
            time_lost = time.perf_counter() - t_start
            log.warning("a worker was lost with results that cannot be recomputed; starting the run over (%s)", e)
        finally:
            for f in futures:
                f.release()

    extra = {"restarts": restarts, "time_lost": time_lost} if restarts else {}
    extra["budget_source"] = budget_source
    return _result(source, plan, logp, sign, stats, g, backend=backend, client=client, t=t, d=d,
                   check_symmetry=check_symmetry, **extra)


def _result(source, plan: ExactPlan, logp, sign, stats, g, *, backend, client, t, d, check_symmetry,
            **extra) -> LogdetResult:
    n = plan.n
    if np.any(np.isnan(logp)):
        raise ArithmeticError("the factorization produced NaN pivots; this is a bug or an overflow in the input "
                              "scale: please report it with the matrix's dtype and size")
    total_sign = 0.0 if np.any(sign == 0) else float(np.prod(sign.astype(np.float64)))
    logdet = float(np.sum(logp)) if total_sign != 0 else -math.inf
    inertia = None
    if plan.assume in ("spd", "sym"):
        inertia = Inertia(int(np.count_nonzero(sign > 0)), int(np.count_nonzero(sign < 0)),
                          int(np.count_nonzero(sign == 0)))
    diagnostics = {
        "wall_time": stats.wall_time,
        "block_size": plan.block_size,
        "n_panels": plan.n_panels,
        "n_tiles": plan.n_tiles,
        "n_tasks": g.n_tasks,
        "workers": plan.workers,
        "scheduler": stats.scheduler,
        "backend": B.resolve_backend(backend) if client is None else f"{backend} (resolved on each worker)"
        if backend == "auto" else backend,
        "t": t,
        "d": d if np.isscalar(d) else "vector",
        "symmetry_checked": plan.assume != "gen" and check_symmetry and not source.symmetric,
        "peak_managed_bytes_per_worker": stats.peak_managed_bytes,
        "peak_rss_bytes_per_worker": stats.peak_rss_bytes,
        "budget": plan.budget,
        **stats.memory,
        "mode": plan.mode,
        "token": g.token,
        **extra,
    }
    if stats.timeline:
        diagnostics["timeline"] = stats.timeline  # panels done and memory per worker over time (dlogdet report)
    return LogdetResult(logdet=logdet, sign=total_sign, method="exact", n=n, dtype=str(source.dtype),
                        log_pivots=logp, pivot_signs=sign, inertia=inertia, assume=plan.assume,
                        status="ok" if total_sign != 0 else "singular", diagnostics=diagnostics)


def _run_store(source, plan: ExactPlan, *, scratch, resume, **how) -> LogdetResult:
    """The out-of-core run: tiles in ``<scratch>/dlogdet-<token>``, resumed from it when it holds finished steps;
    a scratch directory that fills up, turns read-only or vanishes mid-run ends in one :class:`ScratchSpaceError`
    that says where the same call resumes."""
    root = _scratch_root(scratch)
    try:
        os.makedirs(root, exist_ok=True)
        return _run_store_in(source, plan, root=root, resume=resume, **how)
    except OSError as e:
        failure = scratch_failure(e, root, plan.n_panels, plan.scratch_bytes)
        if failure is None:
            raise
        raise failure from None


def _spill(source: ArraySource, root: str) -> tuple[TileSource, str]:
    """An in-memory matrix larger than the budgets, as a ``.npy`` file the workers read like any other. The copy is
    named by the array's content and kept until the run succeeds, so that the same call resumes."""
    host = B.to_host(source.array)
    tok = content_token("array", host)
    spilled = os.path.join(root, f"dlogdet-input-{tok}.npy")
    if not os.path.exists(spilled):
        tmp = f"{spilled}.tmp-{uuid.uuid4().hex}.npy"
        np.save(tmp, host)
        os.replace(tmp, spilled)
    npy = NpySource(spilled)
    npy.content = tok
    return npy, spilled


def _open_store(source, plan: ExactPlan, root: str, *, t, d, backend, rtol, resume) -> tuple[TileStore, int, str]:
    """The run's tile store (resumed from its first unfinished step, or cleared), checked for free disk; the step
    the run starts at; the graph's token (which names the store)."""
    check_finite = bool(config.get("check.finite", True))
    token = graph_token(source, plan.assume, plan.tiling, t, d, backend, check_finite, rtol)
    store = TileStore(os.path.join(root, f"dlogdet-{token}"), slots=plan.store_slots or 1,
                      backend="numpy" if backend == "auto" else backend, run=uuid.uuid4().hex)
    start = 0
    if os.path.isdir(store.root):
        if resume:
            remove_partial(store.root)
            start = resume_step(store, plan.n_panels)
        else:
            store.clear()
    need, have = plan.scratch_bytes, dir_bytes(store.root)
    free = shutil.disk_usage(root).free
    if free + have < need:
        raise ScratchSpaceError(f"the tile store needs {need} bytes ({need / 2**30:.2f} GiB) of free disk under "
                                f"{root}, which has {free} bytes free; give scratch= (or dask config "
                                "'dlogdet.scratch') a larger file system", needed=need)
    os.makedirs(store.root, exist_ok=True)
    return store, start, token


def _run_store_in(source, plan: ExactPlan, *, root, t, d, backend, rtol, resume, client, progress, check_symmetry,
                  budget_source) -> LogdetResult:
    spilled = None
    if isinstance(source, ArraySource):
        source, spilled = _spill(source, root)
    store, start, token = _open_store(source, plan, root, t=t, d=d, backend=backend, rtol=rtol, resume=resume)
    source_ref = None
    futures = []
    if client is not None and not isinstance(source, DaskArraySource):
        futures = client.scatter([source], broadcast=True, hash=False)
        source_ref = futures[0]
    g = build_store_graph(source, plan.assume, plan.tiling, store, t=t, d=d, backend=backend,
                          check_finite=bool(config.get("check.finite", True)), symmetry_rtol=rtol,
                          source_ref=source_ref, token=token, start=start)
    log.info("exact %s out of core: n=%d, block size %d, %d panels from step %d, %d tasks, store %s", plan.assume,
             plan.n, plan.block_size, plan.n_panels, start, g.n_tasks, store.root)
    try:
        # a store task holds its input tiles, its output and a temporary: the working set it was sized for
        (logp, sign, computed), stats = execute(g.dsk, g.output_key, g.panel_keys, client=client,
                                                progress=progress, tiles_total=plan.n_tiles, run=token,
                                                task_bytes=plan.task_bytes(), budget=plan.budget,
                                                watch=MemoryWatch(plan.held_bytes(), "store"))
    finally:
        for f in futures:
            f.release()
    result = _result(source, plan, logp, sign, stats, g, backend=backend, client=client, t=t, d=d,
                     check_symmetry=check_symmetry, scratch=store.root, resumed_from_step=start,
                     tasks_computed=computed, tiles_per_task=plan.tiles_per_task, slots_per_worker=store.slots,
                     budget_source=budget_source)
    store.clear()
    if spilled:
        os.remove(spilled)
    return result


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def scratch_failure(e: OSError, root: str, nt: int, need: int) -> ScratchSpaceError | None:
    """The one-line error of a tile store that failed mid-run (full, not writable, or gone), or None when ``e`` is
    not about the scratch directory ``root``. Finished steps stay on disk, and the message says where the same call
    resumes; a store that lost files is removed (the same call starts over)."""
    where = os.path.abspath(getattr(e, "filename", None) or "")
    if where and not where.startswith(os.path.abspath(root) + os.sep) and where != os.path.abspath(root):
        return None
    cause = e.strerror or str(e)
    stores = [os.path.join(root, f) for f in os.listdir(root) if f.startswith("dlogdet-") and
              os.path.isdir(os.path.join(root, f))] if os.path.isdir(root) else []
    store = next((s for s in stores if where.startswith(s + os.sep)), None)
    k = resume_step(TileStore(store), nt) if store else 0
    kept = f"{k} of {nt} steps are finished and kept in {store}" if store and k else "no step is finished yet"
    again = (f"then run the same command again: it resumes from step {k}" if k
             else "then run the same command again")
    free = shutil.disk_usage(root).free if os.path.isdir(root) else 0
    short = e.errno is None and free < need - (dir_bytes(store) if store else 0)   # numpy's short write
    if e.errno in _FULL or short:
        more = max(0, need - (dir_bytes(store) if store else 0) - free)
        msg = (f"the scratch file system under {root} filled up during the out-of-core run ({cause}): {kept}; the "
               f"run needs {need} bytes ({need / 2**30:.2f} GiB) in all, {more} bytes ({more / 2**30:.2f} GiB) more "
               f"than is free now. Free space there or give scratch= a larger file system, {again}")
    elif e.errno in _DENIED:
        msg = (f"the scratch directory {root} is not writable ({cause}): {kept}. Fix its permissions or give "
               f"scratch= a directory you can write, {again}")
    elif e.errno == errno.ENOENT:
        # files of the store were deleted under it: what is left cannot be trusted, so it goes, and the same
        # call starts over instead of resuming into missing tiles
        if store:
            shutil.rmtree(store, ignore_errors=True)
        msg = (f"the tile store under {root} vanished during the run ({cause}: deleted by another process?); what "
               "was left of it was removed. Keep the scratch directory in place and run the same command again: it "
               "starts over")
    else:
        msg = f"the tile store under {root} failed ({cause}): {kept}; {again}"
    return ScratchSpaceError(msg, needed=need)
