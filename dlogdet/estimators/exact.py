"""The exact engine: log|det(t·A + diag(d))| by a tiled Cholesky / LDLᵀ / LU on a Dask graph."""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import tempfile
import time
import uuid

import numpy as np

from ..linalg import backend as B
from ..core import config
from ..linalg import kernels as K
from ..runtime import memory
from ..core.errors import InputError, MemoryBudgetError, ScratchSpaceError
from ..engine.graph import (Tiling, auto_block_size, build_factor_graph, choose_mode, matrix_bytes, store_block_size,
                            task_count)
from ..linalg.kernels import ASSUME
from ..core.result import Inertia, LogdetResult
from ..runtime.execute import MemoryWatch, ProgressCallback, active_client, execute, n_workers
from ..sources import ArraySource, DaskArraySource, TileSource

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


def symmetry_rtol_for(dtype) -> float:
    """Tolerance of the symmetry check: ``dlogdet.check.symmetry-rtol``, else √eps of the dtype."""
    r = config.get("check.symmetry-rtol")
    return float(r) if r is not None else math.sqrt(B.eps(dtype))


def check_symmetric_in_memory(a, tiling: Tiling, rtol: float, check_finite: bool = True) -> None:
    """Symmetry (and finiteness) of an in-memory matrix, pair of tiles by pair of tiles, on this machine's cores.

    The same checks, and the same messages, as the graph's ``symcheck`` tasks; used before an in-memory matrix
    is scattered to a cluster, so that bad input is refused before any work or transfer.
    """
    from concurrent.futures import ThreadPoolExecutor

    def check(ij):
        i, j = ij
        r0, r1 = tiling.bounds(i)
        c0, c1 = tiling.bounds(j)
        if i == j:
            K.prepare_tile(a[r0:r1, c0:c1], r0=r0, c0=c0, check_finite=check_finite, symmetry_rtol=rtol,
                           tile_index=(i, j))
        else:
            K.check_symmetric_pair(a[r0:r1, c0:c1], a[c0:c1, r0:r1], rtol, r0, c0, i, j, check_finite)

    pairs = [(i, j) for i in range(tiling.nt) for j in range(i + 1)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as ex:  # NumPy releases the GIL on big arrays
        list(ex.map(check, pairs))


def _scratch_root(scratch) -> str:
    root = scratch if scratch is not None else config.get("scratch")
    return os.path.abspath(os.fspath(root)) if root else tempfile.gettempdir()


def run(source: TileSource, *, assume: str = "spd", t: float = 1.0, d=0.0, block_size: int | None = None,
        budget=None, client=None, backend: str | None = None, progress: ProgressCallback | None = None,
        check_symmetry: bool | None = None, scratch=None, resume: bool = True) -> LogdetResult:
    """Exact log|det M|, M = t·A + diag(d), by a right-looking tiled factorization on a Dask graph.

    See :func:`dlogdet.logdet` for the parameters.
    """
    if assume not in ASSUME:
        raise InputError(f"assume must be one of {ASSUME}, got {assume!r}")
    n = source.n
    t = _check_scalar("t", t)
    d = _check_d(d, n)
    backend = backend or config.get("backend", "auto")
    if backend not in B.BACKENDS:
        raise InputError(f"backend must be one of {B.BACKENDS}, got {backend!r}")
    client = active_client(client)
    resolved = memory.resolve(budget, client)
    budget = resolved.bytes
    workers = n_workers(client)
    itemsize = source.dtype.itemsize
    use_store = choose_mode(n, itemsize, budget, workers, assume) == "store"
    if block_size is None:
        try:
            block_size = config.get("block-size") or (
                store_block_size(n, workers, budget, itemsize) if use_store
                else auto_block_size(n, workers, itemsize=itemsize, budget=budget))
        except MemoryBudgetError as e:
            if not resolved.is_auto:
                raise
            raise MemoryBudgetError(f"{e}. The budget was set automatically ({resolved.source}): give workers "
                                    "more memory, or budget= explicitly", needed=e.needed) from None
    block_size = min(_check_block_size(block_size), n)
    if use_store and budget is not None:
        per_task = int(config.get("memory.tiles-per-task", 5))
        if per_task * block_size * block_size * itemsize > budget:
            raise MemoryBudgetError(
                f"block_size={block_size} needs {per_task} tiles = "
                f"{per_task * block_size ** 2 * itemsize / 2**20:.1f} MiB per task, more than the budget of "
                f"{budget / 2**20:.1f} MiB; use block_size <= {math.isqrt(budget // (per_task * itemsize))}",
                needed=per_task * block_size * block_size * itemsize)
    tiling = Tiling(n, block_size)
    max_tasks = int(config.get("max-tasks", 2_000_000))
    if task_count(tiling.nt, assume) > max_tasks:
        suggest = math.ceil(n / math.floor((6 * max_tasks) ** (1 / 3)))
        raise InputError(f"block_size={block_size} cuts n={n} into {tiling.nt} panels, a graph of "
                         f"{task_count(tiling.nt, assume)} tasks (more than dlogdet.max-tasks = {max_tasks}); "
                         f"use block_size >= {suggest}")

    if check_symmetry is None:
        check_symmetry = bool(config.get("check.symmetry", True))
    rtol = None
    if assume != "gen" and check_symmetry and not source.symmetric:
        rtol = symmetry_rtol_for(source.dtype)

    if use_store:
        return _run_store(source, assume, tiling, t=t, d=d, backend=backend, rtol=rtol, client=client,
                          progress=progress, budget=budget, scratch=scratch, resume=resume, workers=workers,
                          check_symmetry=check_symmetry, budget_source=resolved.source)
    scattered = client is not None and isinstance(source, ArraySource)
    if scattered and rtol is not None:
        # an in-memory matrix on a cluster: check it here, before any work or transfer
        check_symmetric_in_memory(B.to_host(source.array), tiling, rtol, bool(config.get("check.finite", True)))
        rtol = None
    n_tiles = tiling.nt * tiling.nt if assume == "gen" else tiling.tiles_lower()
    tb = block_size * block_size * source.dtype.itemsize
    # tracked working set per task (inputs are counted where they are held): the output tile, plus the
    # two raw tiles and their difference for a symmetry check
    per_kind = {k: 2 * tb for k in ("potrf", "sytrf", "getrf", "trsm", "trsmrow", "gemm", "syrk")}
    per_kind["symcheck"] = 3 * tb
    # a worker lost mid-run can take along results that dask cannot recompute: scattered input tiles (they exist
    # once), and intermediate tiles whose inputs were already forgotten after their last consumer ran (the
    # scheduler drops those tasks, so the lost result's future is cancelled). The run then starts over.
    retries = int(config.get("lost-input-retries", 1)) if client is not None else 0
    # what a worker holds: its share of the matrix, plus a task's output and inputs at a time
    held = -(-matrix_bytes(n, itemsize, assume) // workers) + 3 * tb
    restarts, time_lost, t_start = 0, 0.0, time.perf_counter()
    while True:
        tiles, source_ref, futures = None, None, []
        if scattered:
            # scatter the tiles the factorization reads (the lower triangle for spd/sym) once, instead of
            # pickling the array into the graph; direct=True: straight to the workers (measured 6x faster)
            a = B.to_host(source.array)
            idx = [(i, j) for i in range(tiling.nt) for j in range(tiling.nt if assume == "gen" else i + 1)]
            futures = client.scatter([a[slice(*tiling.bounds(i)), slice(*tiling.bounds(j))] for i, j in idx],
                                     hash=False, direct=True)
            tiles = dict(zip(idx, futures))
        elif client is not None and not isinstance(source, DaskArraySource):
            # a small source (a path, points) on every worker: loads go wherever the scheduler balances best
            futures = client.scatter([source], broadcast=True, hash=False)
            source_ref = futures[0]
        g = build_factor_graph(source, assume, tiling, t=t, d=d, backend=backend,
                               check_finite=bool(config.get("check.finite", True)), symmetry_rtol=rtol,
                               tiles=tiles, source_ref=source_ref)
        log.info("exact %s: n=%d, block size %d, %d panels, %d tasks", assume, n, block_size, tiling.nt,
                 g.n_tasks)
        try:
            (logp, sign), stats = execute(g.dsk, g.output_key, g.panel_keys, client=client, progress=progress,
                                          tiles_total=n_tiles, run=g.token, task_bytes=per_kind, release=futures,
                                          budget=budget, watch=MemoryWatch(held, "memory"))
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
    extra["budget_source"] = resolved.source
    return _result(source, assume, tiling, logp, sign, stats, g, workers=workers, backend=backend, client=client,
                   t=t, d=d, check_symmetry=check_symmetry, budget=budget, n_tiles=n_tiles, mode="memory", **extra)


def _result(source, assume, tiling, logp, sign, stats, g, *, workers, backend, client, t, d, check_symmetry, budget,
            n_tiles, mode, **extra) -> LogdetResult:
    n = tiling.n
    block_size = tiling.block_size
    if np.any(np.isnan(logp)):
        raise ArithmeticError("the factorization produced NaN pivots; this is a bug or an overflow in the input "
                              "scale: please report it with the matrix's dtype and size")
    total_sign = 0.0 if np.any(sign == 0) else float(np.prod(sign.astype(np.float64)))
    logdet = float(np.sum(logp)) if total_sign != 0 else -math.inf
    inertia = None
    if assume in ("spd", "sym"):
        inertia = Inertia(int(np.count_nonzero(sign > 0)), int(np.count_nonzero(sign < 0)),
                          int(np.count_nonzero(sign == 0)))
    diagnostics = {
        "wall_time": stats.wall_time,
        "block_size": block_size,
        "n_panels": tiling.nt,
        "n_tiles": n_tiles,
        "n_tasks": g.n_tasks,
        "workers": workers,
        "scheduler": stats.scheduler,
        "backend": B.resolve_backend(backend) if client is None else f"{backend} (resolved on each worker)"
        if backend == "auto" else backend,
        "t": t,
        "d": d if np.isscalar(d) else "vector",
        "symmetry_checked": assume != "gen" and check_symmetry and not source.symmetric,
        "peak_managed_bytes_per_worker": stats.peak_managed_bytes,
        "peak_rss_bytes_per_worker": stats.peak_rss_bytes,
        "budget": budget,
        **stats.memory,
        "mode": mode,
        "token": g.token,
        **extra,
    }
    if stats.timeline:
        diagnostics["timeline"] = stats.timeline  # panels done and memory per worker over time (dlogdet report)
    return LogdetResult(logdet=logdet, sign=total_sign, method="exact", n=n, dtype=str(source.dtype),
                        log_pivots=logp, pivot_signs=sign, inertia=inertia, assume=assume,
                        status="ok" if total_sign != 0 else "singular", diagnostics=diagnostics)


def _run_store(source, assume, tiling, *, t, d, backend, rtol, client, progress, budget, scratch, resume, workers,
               check_symmetry, budget_source) -> LogdetResult:
    """The out-of-core run: tiles in ``<scratch>/dlogdet-<token>``, resumed from it when it holds finished steps;
    a scratch directory that fills up, turns read-only or vanishes mid-run ends in one :class:`ScratchSpaceError`
    that says where the same call resumes."""
    n, itemsize = tiling.n, source.dtype.itemsize
    root = _scratch_root(scratch)
    # free disk: the trailing matrix once, plus one step's factor and panel tiles
    need = matrix_bytes(n, itemsize, assume) + 2 * tiling.nt * tiling.block_size ** 2 * itemsize
    try:
        os.makedirs(root, exist_ok=True)
        return _run_store_in(source, assume, tiling, root=root, need=need, t=t, d=d, backend=backend, rtol=rtol,
                             client=client, progress=progress, budget=budget, resume=resume, workers=workers,
                             check_symmetry=check_symmetry, budget_source=budget_source)
    except OSError as e:
        failure = scratch_failure(e, root, tiling.nt, need)
        if failure is None:
            raise
        raise failure from None


def _run_store_in(source, assume, tiling, *, root, need, t, d, backend, rtol, client, progress, budget, resume,
                  workers, check_symmetry, budget_source) -> LogdetResult:
    from ..engine.graph import graph_token
    from ..engine.store import TileStore, build_store_graph, remove_partial, resume_step

    n, itemsize = tiling.n, source.dtype.itemsize
    spilled = None
    if isinstance(source, ArraySource):
        # an in-memory matrix larger than the budgets: the workers read it from disk like any .npy file. The
        # copy is named by the array's content, kept until the run succeeds, so that the same call resumes
        from ..sources import NpySource
        from ..sources.base import content_token
        host = B.to_host(source.array)
        tok = content_token("array", host)
        spilled = os.path.join(root, f"dlogdet-input-{tok}.npy")
        if not os.path.exists(spilled):
            tmp = f"{spilled}.tmp-{uuid.uuid4().hex}.npy"
            np.save(tmp, host)
            os.replace(tmp, spilled)
        source = NpySource(spilled)
        source.content = tok
    check_finite = bool(config.get("check.finite", True))
    token = graph_token(source, assume, tiling, t, d, backend, check_finite, rtol)
    per_task = int(config.get("memory.tiles-per-task", 5))
    tile_bytes = tiling.block_size ** 2 * itemsize
    store = TileStore(os.path.join(root, f"dlogdet-{token}"), slots=max(1, budget // (per_task * tile_bytes)),
                      backend="numpy" if backend == "auto" else backend, run=uuid.uuid4().hex)
    start = 0
    if os.path.isdir(store.root):
        if resume:
            remove_partial(store.root)
            start = resume_step(store, tiling.nt)
        else:
            store.clear()
    have = _dir_bytes(store.root)
    free = shutil.disk_usage(root).free
    if free + have < need:
        raise ScratchSpaceError(f"the tile store needs {need} bytes ({need / 2**30:.2f} GiB) of free disk under "
                                f"{root}, which has {free} bytes free; give scratch= (or dask config "
                                "'dlogdet.scratch') a larger file system", needed=need)
    os.makedirs(store.root, exist_ok=True)
    source_ref = None
    futures = []
    from ..sources import DaskArraySource
    if client is not None and not isinstance(source, DaskArraySource):
        futures = client.scatter([source], broadcast=True, hash=False)
        source_ref = futures[0]
    g = build_store_graph(source, assume, tiling, store, t=t, d=d, backend=backend, check_finite=check_finite,
                          symmetry_rtol=rtol, source_ref=source_ref, token=token, start=start)
    log.info("exact %s out of core: n=%d, block size %d, %d panels from step %d, %d tasks, store %s", assume, n,
             tiling.block_size, tiling.nt, start, g.n_tasks, store.root)
    n_tiles = tiling.nt * tiling.nt if assume == "gen" else tiling.tiles_lower()
    try:
        # a store task holds its input tiles, its output and a temporary: the working set it was sized for
        tb = tile_bytes
        per_kind = {"potrf": 3 * tb, "sytrf": 3 * tb, "getrf": 3 * tb, "trsm": 4 * tb, "trsmrow": 4 * tb,
                    "gemm": per_task * tb, "syrk": per_task * tb, "symcheck": 3 * tb}
        (logp, sign, computed), stats = execute(g.dsk, g.output_key, g.panel_keys, client=client,
                                                progress=progress, tiles_total=n_tiles, run=token,
                                                task_bytes=per_kind, budget=budget,
                                                watch=MemoryWatch(store.slots * per_task * tb, "store"))
    finally:
        for f in futures:
            f.release()
    result = _result(source, assume, tiling, logp, sign, stats, g, workers=workers, backend=backend, client=client,
                     t=t, d=d, check_symmetry=check_symmetry, budget=budget, n_tiles=n_tiles, mode="store",
                     scratch=store.root, resumed_from_step=start, tasks_computed=computed,
                     tiles_per_task=per_task, slots_per_worker=store.slots, budget_source=budget_source)
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
    from ..engine.store import resume_step, TileStore

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
    short = e.errno is None and free < need - (_dir_bytes(store) if store else 0)   # numpy's short write
    if e.errno in _FULL or short:
        more = max(0, need - (_dir_bytes(store) if store else 0) - free)
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


def _dir_bytes(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total
