"""The dry-run planner: what an exact run of n rows on K workers under a memory budget will cost, without running it.

:func:`plan` answers in closed form (no graph is built, nothing touches a cluster), so it is instant even for
n = 10⁶: tile size b, panels nt = ⌈n/b⌉, tiles, tasks, whether the matrix stays in worker memory or lives in the
on-disk tile store, tiles resident per worker, bytes read and written, scratch disk, flops and a predicted time.

One set of rules: mode, tile, store slots and scratch are the engine's own plan
(:func:`dlogdet.engine.plan.plan_exact`, the function :mod:`dlogdet.estimators.exact` runs), so on CPU workers a
plan's ``block_size`` and ``mode`` are what ``dlogdet.logdet`` reports in ``diagnostics["block_size"]`` and
``["mode"]`` for the same n, workers, budget, dtype, assume and dask config, and a budget too small for the smallest
tile raises the engine's :class:`~dlogdet.core.errors.MemoryBudgetError` (``.needed``: the smallest budget that
works). The planner adds its time model (:mod:`dlogdet.runtime.costs`) and two caps of GPU workers the engine does
not know, taken as a min on top of its choice: ``tiles-per-task`` tiles must fit in one GPU's memory, and
b ≤ 46340 (b² < 2³¹); the plan then says which tile to pass as ``block_size``.

The memory model (per worker, host memory). The budget (``dlogdet.memory.budget``) is for tiles; the worker
process's own baseline (Python, NumPy, dask, task state, buffers) is outside it and is estimated by
``dlogdet.memory.overhead``::

    working set      = tiles_per_task · tasks at once · b² · itemsize
    tiles in memory  = working set (+ ⌈matrix bytes / workers⌉ in memory mode)          the budget's share
    expected peak RSS = overhead + tiles in memory

``tasks at once`` is one per CPU worker (one BLAS thread per task) and one per GPU on a GPU worker, and out of
core at most the tile store's slots, ``budget // (tiles_per_task · tile bytes)``, which bound the store tasks a
worker runs at once. ``tiles_per_task`` is ``dlogdet.memory.tiles-per-task`` (3 inputs, 1 output, 1 temporary).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..core import config
from ..core.diagnostics import format_bytes
from ..core.errors import InputError, MemoryBudgetError
from ..engine.plan import ExactPlan, largest_tile, overhead_tile, plan_exact
from ..sources.base import check_dtype
from . import memory
from .calibrate import calibrate_cluster
from .costs import (Rates, check_rates, flop_count, human_time, matrix_tile_bytes, resolve_rates, times, traffic,
                    transfer_bytes)

log = logging.getLogger(__name__)

ASSUME = ("spd", "sym", "gen")
FACTORIZATION = {"spd": "Cholesky", "sym": "LDL^T (Bunch-Kaufman)", "gen": "LU (partial pivoting)"}

# Largest GPU tile: b² must stay below 2³¹ elements (int32 index overflow in some cupyx kernels; DESIGN.md §2).
GPU_MAX_TILE = 46340
# A tile cut down by a GPU cap is a multiple of this, the granularity of the engine's out-of-core tile.
GPU_QUANTUM = 64
DEFAULT_OVERHEAD = "256MiB"      # expected baseline RSS of a worker process, outside the budget (dlogdet.yaml)


@dataclass(frozen=True)
class Plan:
    """What an exact run would do and cost (see :func:`plan`); sizes in bytes, times in seconds.

    ``to_dict()`` gives a JSON-ready dict; ``summary()`` an aligned human-readable table.
    """

    n: int
    dtype: str
    assume: str
    workers: int
    gpus_per_worker: int
    slots_per_worker: int                  # task slots of a worker: 1 per CPU worker, 1 per GPU
    tasks_at_once_per_worker: int          # slots, at most the tile store's slots out of core
    store_slots_per_worker: int | None     # the engine's TileStore.slots: budget // (tiles_per_task · tile_bytes)
    budget_bytes: int                      # per worker, for tiles (host memory)
    gpu_memory_bytes: int | None           # per GPU
    overhead_bytes: int                    # dlogdet.memory.overhead: expected baseline RSS, outside the budget
    tiles_per_task: int                    # dlogdet.memory.tiles-per-task
    block_size: int
    block_size_limited_by: str
    engine_block_size: int                 # what dlogdet.logdet picks (differs from block_size only under a GPU cap)
    n_panels: int
    n_tiles: int                           # lower triangle nt(nt+1)/2; nt² for gen
    n_tasks: int                           # dlogdet.engine.schedule.task_count (no gather, no symmetry checks)
    mode: str                              # "memory" or "store": dlogdet.engine.plan.choose_mode
    mode_reason: str
    matrix_bytes: int                      # the tiles the factorization touches: lower triangle (all for gen)
    tile_bytes: int                        # one full b×b tile
    resident_tiles_per_worker: int         # store: working set; memory: + the worker's share of the matrix
    working_set_bytes: int                 # tiles_per_task · tasks_at_once · tile_bytes
    tile_memory_bytes_per_worker: int      # working set (+ the worker's share of the matrix in memory mode)
    peak_rss_bytes_per_worker: int         # expected: overhead + tile_memory_bytes_per_worker
    gpu_working_set_bytes: int | None      # per GPU: tiles_per_task · tile_bytes
    source_read_bytes: int                 # every input tile once, at its first use (step 0)
    store_read_bytes: int                  # tile store (store mode; 0 in memory mode)
    store_write_bytes: int
    scratch_bytes: int                     # free disk the engine asks for: matrix + 2 · nt · tile_bytes
    flops: float
    rates: Rates
    time_compute_s: float
    time_critical_path_s: float
    time_io_s: float
    time_total_s: float
    warnings: tuple[str, ...] = field(default=())
    budget_source: str = "given"           # how the budget was obtained (dlogdet.runtime.memory.resolve's words)
    network_bytes: int = 0                 # tiles moved between workers (costs.transfer_bytes; 0 out of core)
    time_transfer_s: float = 0.0           # network_bytes / (workers x network rate)
    time_scheduler_s: float = 0.0          # tasks x the scheduler's cost per task
    simulated: dict[str, Any] | None = None  # the simulated cluster (dlogdet.runtime.simulate), if asked for

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (``rates`` nested, ``warnings`` a list)."""
        d = dataclasses.asdict(self)
        d["warnings"] = list(self.warnings)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def summary(self) -> str:
        """An aligned table: quantity, value with units, and how it was obtained."""
        return _format_plan(self)


# ------------------------------------------------------------------------------------------------ validation


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    v = int(value.__index__()) if not isinstance(value, int) else value
    if v < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    return v


def _workers(workers, client) -> int:
    if workers is None:
        if client is None:
            raise InputError("give workers= (the number of dask workers) or client= (a cluster to plan for)")
        from .execute import n_workers
        workers = n_workers(client)
    return _check_int("workers", workers, 1)


def _gpus(gpus_per_worker, gpu_memory) -> tuple[int, int | None]:
    """GPUs per worker and the memory of one, both or neither."""
    gpus = _check_int("gpus_per_worker", gpus_per_worker, 0)
    if gpus and gpu_memory is None:
        raise InputError(f"gpus_per_worker={gpus} needs gpu_memory (device memory of one GPU, such as '80GB')")
    if not gpus and gpu_memory is not None:
        raise InputError("gpu_memory was given without gpus_per_worker: give both (GPUs per worker, memory of one "
                         "GPU) or neither")
    return gpus, config.parse_bytes(gpu_memory) if gpus else None


def _given_block_size(block_size) -> tuple[int | None, str]:
    """The tile given (``block_size=``, else dask config ``dlogdet.block-size``), checked, and where it came from."""
    source = "given (block_size=)"
    if block_size is None and config.get("block-size"):
        block_size, source = config.get("block-size"), "dask config dlogdet.block-size"
    if block_size is not None:
        block_size = _check_int("block_size" if source.startswith("given") else "dask config dlogdet.block-size",
                                block_size, 1)
    return block_size, source


# ------------------------------------------------------------------------------------------------------ GPU caps


def _gpu_cap(b: int, lo: int, gpu_b: int, per_task: int, itemsize: int, given: bool) -> tuple[int, str | None]:
    """The tile under the GPU caps (``tiles_per_task`` tiles in one GPU's memory, b ≤ GPU_MAX_TILE): (tile, the
    cap that cut it, or None)."""
    if given:
        if b > GPU_MAX_TILE:
            raise InputError(f"block_size={b} is too large for a GPU tile: keep it <= {GPU_MAX_TILE} "
                             "(b^2 must stay below 2^31 elements)")
        need = per_task * b * b * itemsize
        if need > gpu_b:
            fit = math.isqrt(gpu_b // (per_task * itemsize))
            raise MemoryBudgetError(
                f"gpu_memory of {gpu_b} bytes ({format_bytes(gpu_b)}) per GPU cannot hold {per_task} tiles of "
                f"block_size={b}; the smallest gpu_memory that works is {need} bytes ({format_bytes(need)}); "
                f"or use block_size <= {fit}", needed=need)
        return b, None
    mem_cap = largest_tile(gpu_b, per_task, itemsize, lo, lambda need: (
        f"gpu_memory of {gpu_b} bytes ({format_bytes(gpu_b)}) per GPU cannot hold {per_task} tiles of the "
        f"smallest tile ({lo}x{lo}, dlogdet.min-block-size); the smallest gpu_memory that works is {need} bytes "
        f"({format_bytes(need)})"))
    cap, why = min((mem_cap, f"GPU memory (gpu_memory: {per_task} tiles per GPU)"),
                   (GPU_MAX_TILE, f"GPU tile limit ({GPU_MAX_TILE}: b^2 < 2^31)"), key=lambda x: x[0])
    if b <= cap:
        return b, None
    if cap >= GPU_QUANTUM:
        cap = max(lo, cap - cap % GPU_QUANTUM)
    return cap, why


def _max_overhead() -> float:
    v = config.get("plan.max-overhead", 0.05)
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = math.nan
    if not 0 < f < 1:
        raise InputError(f"dask config dlogdet.plan.max-overhead must be a fraction in (0, 1), got {v!r}")
    return f


def overhead_share(b: int, rates: Rates, task_slots: int) -> float:
    """The per-task overhead (the scheduler's cost for every slot it serves, or a worker's own) as a share of a
    b×b tile update's time (2b³ flops)."""
    return max(task_slots * rates.task_seconds, rates.task_latency) / (2.0 * float(b) ** 3 / rates.gemm_flops)


def _on_gpus(ep: ExactPlan, gpus: int, gpu_b: int, given: bool, warnings: list[str], rates: Rates) -> ExactPlan:
    """The engine's plan with its tile for GPUs: at least the per-task overhead's floor
    (:func:`dlogdet.engine.plan.overhead_tile`), within the host budget, and under the GPU caps; a warning names the
    tile to pass when it differs from the engine's own choice, which does not know the GPUs' rate."""
    lo = min(int(config.get("min-block-size", 256)), ep.n)
    per_task = ep.tiles_per_task
    want, want_why, floor = ep.block_size, None, None
    if not given:
        floor = overhead_tile(rates.gemm_flops, rates.task_seconds, rates.task_latency, ep.workers * gpus,
                              _max_overhead())
        if floor.size > ep.block_size:
            want, want_why = floor.size, floor.limited_by
            if ep.budget is not None:
                # the host budget still holds what it held for the engine's tile
                share = per_task if ep.mode == "store" else 8
                fit = math.isqrt(ep.budget // (share * ep.itemsize))
                fit = max(ep.block_size, fit - fit % GPU_QUANTUM)
                if want > fit:
                    want, want_why = fit, (f"memory budget: {share} tiles per task (the per-task overhead asks for "
                                           f"{floor.size})")
            if want >= ep.n:
                want, want_why = ep.n, f"n: one tile (the per-task overhead asks for {floor.size})"
    b, gpu_why = _gpu_cap(want, lo, gpu_b, per_task, ep.itemsize, given=given)
    if gpu_why is None and want == ep.block_size:
        return ep
    why = gpu_why or want_why
    if gpu_why and want_why and floor is not None:
        why = f"{gpu_why} (the per-task overhead asks for {floor.size})"
    warnings.append(f"dlogdet.logdet(..., block_size=None) picks block_size={ep.block_size}, a tile for CPU workers "
                    f"(its rule knows neither the GPUs' memory nor their rate): pass block_size={b} to run this plan")
    return dataclasses.replace(ep, block_size=b, block_size_limited_by=f"{why}; the engine alone picks "
                                                                        f"{ep.block_size}")


# --------------------------------------------------------------------------------------------------- the plan


def plan(n: int, *, workers: int | None = None, budget=None, dtype="float64", assume: str = "spd",
         block_size: int | None = None, gpus_per_worker: int = 0, gpu_memory=None,
         rates: Mapping[str, float] | None = None, calibrate: bool = False, worker_memory=None,
         client=None, calibrate_network: bool = False, simulate: bool = False) -> Plan:
    """Dry run of an exact log-determinant: tile size, tasks, memory, disk, flops and time, in closed form.

    Mode and tile size are the engine's (module doc): mode :func:`dlogdet.engine.plan.choose_mode` (``"store"``, the
    on-disk tile store, when the matrix's lower triangle exceeds half of the workers' summed budgets, unless
    ``dlogdet.memory.mode`` forces one); tile ``block_size``, else dask config ``dlogdet.block-size``, else
    :func:`dlogdet.engine.plan.store_block_size` out of core and :func:`dlogdet.engine.plan.auto_block_size` in memory. On GPU
    workers the tile is further capped so that ``tiles-per-task`` tiles fit in one GPU and b ≤ 46340.

    Parameters
    ----------
    n : int
        Order of the matrix.
    workers : int, optional
        Dask workers (default: those of ``client``).
    budget : int or str
        Memory per worker for tiles, such as ``"80GB"`` (as ``dlogdet.logdet(budget=)``; the worker's own
        baseline, ``dlogdet.memory.overhead``, is outside it); None reads ``dlogdet.memory.budget`` (default
        ``"auto"``: the engine's rule, :mod:`dlogdet.runtime.memory`, from ``client``'s workers or from
        ``worker_memory``).
    dtype : {"float64", "float32"}
    assume : {"spd", "sym", "gen"}
    block_size : int, optional
        Plan this tile size instead of the engine's choice (refused out of core when ``tiles-per-task`` tiles
        exceed the budget, as the engine refuses it).
    gpus_per_worker : int
        GPUs per worker (0: CPU workers). With GPUs, ``gpu_memory`` (per GPU) is required.
    gpu_memory : int or str, optional
        Device memory of one GPU for tiles.
    rates : dict, optional
        ``{"gemm_flops": flop/s of one task slot, "io_bytes": disk B/s of one worker, "network_bytes": B/s into one
        worker, "task_seconds": the scheduler's cost per task, "task_latency": a worker's seconds per task besides
        its work}``; missing ones are measured (``calibrate=True``, ``calibrate_network=True``) or taken from dask
        config ``dlogdet.plan.*`` (defaults 50e9 per CPU task, 20e12 per GPU, 1e9 B/s disk, 1.25e9 B/s network,
        1 ms per task for the scheduler and 1 ms for the worker).
    calibrate : bool
        Measure the rates here (about a second): a single-threaded 1024² float64 GEMM and a 64 MiB disk round trip.
    calibrate_network : bool
        Measure the network rate and the per-task costs on ``client`` or, without one, between two local worker
        processes started here (:func:`dlogdet.runtime.calibrate.calibrate_cluster`, about 10 s).
    simulate : bool
        Replay the engine's graph on a simulated cluster with these rates (:mod:`dlogdet.runtime.simulate`): the
        plan's ``simulated`` holds its time and parts. Seconds for a graph of 10⁵ tasks.
    worker_memory : int or str, optional
        Memory limit of one worker, for ``budget="auto"`` without a cluster.
    client : distributed.Client, optional
        Plan for this cluster: its workers, and ``budget="auto"`` from their memory limits and the memory they use
        now, exactly as ``dlogdet.logdet`` on it would.

    Returns
    -------
    Plan

    Raises
    ------
    InputError
        Bad n, workers, dtype (``UnsupportedDtypeError``), assume, sizes, rates, dask config, or GPU options half
        given.
    MemoryBudgetError
        The engine's refusal: the budget cannot hold the working set of the smallest tile, or (out of core) of
        ``block_size``; or one GPU's memory cannot. ``.needed`` is the smallest budget (or gpu_memory) that works.
    """
    t_start = time.perf_counter()
    n = _check_int("n", n, 1)
    workers = _workers(workers, client)
    dt = check_dtype(dtype)
    if assume not in ASSUME:
        raise InputError(f"assume must be one of {ASSUME}, got {assume!r}")
    gpus, gpu_b = _gpus(gpus_per_worker, gpu_memory)
    resolved = memory.for_plan(budget, worker_memory=worker_memory, client=client,
                               gpu_memory=gpus * gpu_b if gpus and gpu_b else None)
    if resolved.bytes is None:
        raise InputError("give a memory budget per worker, such as budget='80GB', or budget='auto' with "
                         "worker_memory= (dask config dlogdet.memory.budget is null)")
    block_size, block_source = _given_block_size(block_size)
    given_rates = check_rates(rates)
    overhead = config.parse_bytes(config.get("memory.overhead", DEFAULT_OVERHEAD))
    warnings: list[str] = []
    # mode and tile: the engine's plan; then the GPU caps
    ep = plan_exact(n, itemsize=dt.itemsize, assume=assume, workers=workers, budget=resolved.bytes,
                    block_size=block_size, block_source=block_source)
    engine_b = ep.block_size
    cluster = calibrate_cluster(client) if calibrate_network else None
    r = resolve_rates(given_rates, calibrate, bool(gpus), cluster)
    if gpus:
        assert gpu_b is not None
        ep = _on_gpus(ep, gpus, gpu_b, block_size is not None, warnings, r)
    mem = _memory_model(ep, gpus or 1, overhead)
    flops = flop_count(n, assume)
    moved = mem["source_read_bytes"] + mem["store_read_bytes"] + mem["store_write_bytes"]
    network = transfer_bytes(n, ep.block_size, assume, ep.itemsize, workers) if ep.mode == "memory" else 0
    t_compute, t_cp, t_io, t_net, t_sched = times(flops, ep.n_panels, ep.block_size, assume, moved, workers,
                                                  mem["tasks_at_once_per_worker"], r, network, ep.n_tasks)
    simulated = _simulate(ep, r, workers, mem["tasks_at_once_per_worker"]) if simulate else None
    warnings += _warnings(ep, mem, gpus, given_rates, r)
    p = Plan(n=n, dtype=dt.name, assume=assume, workers=workers, gpus_per_worker=gpus, slots_per_worker=gpus or 1,
             budget_bytes=ep.budget or 0, budget_source=resolved.source, gpu_memory_bytes=gpu_b,
             overhead_bytes=overhead, tiles_per_task=ep.tiles_per_task, block_size=ep.block_size,
             block_size_limited_by=ep.block_size_limited_by, engine_block_size=engine_b, n_panels=ep.n_panels,
             n_tiles=ep.n_tiles, n_tasks=ep.n_tasks, mode=ep.mode, mode_reason=ep.mode_reason,
             tile_bytes=ep.tile_bytes, gpu_working_set_bytes=ep.tiles_per_task * ep.tile_bytes if gpus else None,
             flops=flops, rates=r, time_compute_s=t_compute, time_critical_path_s=t_cp, time_io_s=t_io,
             time_total_s=t_compute + t_cp + t_io + t_net + t_sched, warnings=tuple(warnings),
             network_bytes=network, time_transfer_s=t_net, time_scheduler_s=t_sched, simulated=simulated, **mem)
    log.debug("plan n=%d workers=%d: b=%d, %s mode, %d tasks (%.3f s)", n, workers, ep.block_size, ep.mode,
              ep.n_tasks, time.perf_counter() - t_start)
    return p


def _simulate(ep: ExactPlan, r: Rates, workers: int, slots: int) -> dict[str, Any]:
    """The engine's graph on a simulated cluster with the plan's rates (input tiles read at the disk rate)."""
    from .simulate import SimRates, simulate

    t0 = time.perf_counter()
    sim = simulate(ep.n, ep.block_size, workers,
                   SimRates(gemm_flops=r.gemm_flops, network_bytes=r.network_bytes, io_bytes=r.io_bytes,
                            load_bytes=r.io_bytes, task_seconds=r.task_seconds, task_latency=r.task_latency,
                            transfer_latency=r.transfer_latency),
                   assume=ep.assume, mode=ep.mode, itemsize=ep.itemsize, slots=slots,
                   placement=str(config.get("scheduling.placement", "block-cyclic")),
                   priority=str(config.get("scheduling.priority", "panel")))
    out = {k: getattr(sim, k) for k in ("time_s", "compute_s", "transfers_s", "scheduler_s", "critical_path_s",
                                        "busiest_worker", "busiest_worker_s", "network_bytes", "n_tasks")}
    out["seconds_to_simulate"] = time.perf_counter() - t0
    return out


def _memory_model(ep: ExactPlan, slots: int, overhead: int) -> dict[str, Any]:
    """Tiles resident per worker, working set, memory and RSS, bytes read and written (module doc)."""
    per_task, tile_bytes = ep.tiles_per_task, ep.tile_bytes
    tiles_bytes = matrix_tile_bytes(ep.n, ep.block_size, ep.assume, ep.itemsize)
    if ep.mode == "memory":
        at_once = slots
        share = -(-tiles_bytes // ep.workers)
        resident = -(-ep.n_tiles // ep.workers) + per_task * at_once
        store_reads = store_writes = 0
    else:
        at_once = min(slots, ep.store_slots or 1)
        share = 0
        resident = per_task * at_once
        reads, store_writes = traffic(ep.n, ep.block_size, ep.assume, ep.itemsize)
        store_reads = reads - tiles_bytes
    working_set = per_task * at_once * tile_bytes
    return dict(tasks_at_once_per_worker=at_once, store_slots_per_worker=ep.store_slots, matrix_bytes=tiles_bytes,
                resident_tiles_per_worker=resident, working_set_bytes=working_set,
                tile_memory_bytes_per_worker=working_set + share,
                peak_rss_bytes_per_worker=overhead + working_set + share, source_read_bytes=tiles_bytes,
                store_read_bytes=store_reads, store_write_bytes=store_writes, scratch_bytes=ep.scratch_bytes)


def _warnings(ep: ExactPlan, mem: dict[str, Any], gpus: int, given_rates: Mapping, rates: Rates) -> list[str]:
    """What the plan's reader should know: idle task slots, GPUs waiting, a budget exceeded, a graph refused, the
    per-task overhead above its share."""
    warnings = []
    slots = gpus or 1
    limit = _max_overhead()
    share = overhead_share(ep.block_size, rates, ep.workers * slots)
    if share > limit:
        floor = overhead_tile(rates.gemm_flops, rates.task_seconds, rates.task_latency, ep.workers * slots, limit)
        warnings.append(f"the per-task overhead ({ep.workers * slots} task slots x {rates.task_seconds * 1e3:g} ms of "
                        f"the scheduler, {rates.task_latency * 1e3:g} ms of a worker) is {share:.0%} of a tile "
                        f"update's time, more than dlogdet.plan.max-overhead = {limit:.0%}: tasks wait for the "
                        f"scheduler; block_size >= {floor.size} keeps it under (if the budget holds it)")
    nt, at_once, tile_bytes, per_task = ep.n_panels, mem["tasks_at_once_per_worker"], ep.tile_bytes, ep.tiles_per_task
    task_slots = ep.workers * slots
    nt_min = max(1, math.ceil(math.sqrt(8 * task_slots)))
    if task_slots > 1 and nt < nt_min:
        warnings.append(f"only {nt} panels: the first trailing update has {nt * (nt - 1) // 2} tasks for "
                        f"{task_slots} task slots, which sit idle for much of the run (a smaller block_size, if "
                        "n allows, or fewer workers)")
    if at_once < slots:
        warnings.append(f"the budget admits {at_once} store task{'s' if at_once > 1 else ''} at once per worker "
                        f"(budget // ({per_task} tiles of {format_bytes(tile_bytes)})), so {slots - at_once} of its "
                        f"{slots} GPUs wait: a budget of {per_task * slots * tile_bytes} bytes "
                        f"({format_bytes(per_task * slots * tile_bytes)}) runs one task per GPU")
    tile_memory, budget = mem["tile_memory_bytes_per_worker"], ep.budget or 0
    if tile_memory > budget:
        what = "its working set and its share of the matrix" if ep.mode == "memory" else "its working set"
        warnings.append(f"a worker's tiles ({what}: {format_bytes(tile_memory)}) exceed the budget "
                        f"({format_bytes(budget)}): the engine does not refuse this run, but expect "
                        f"{format_bytes(mem['peak_rss_bytes_per_worker'])} RSS per worker")
    if ep.n_tasks > ep.max_tasks:
        warnings.append(f"{ep.n_tasks} tasks exceed dask config dlogdet.max-tasks = {ep.max_tasks}: the engine "
                        "refuses this graph (give a larger block_size or budget)")
    if ep.itemsize == 4 and not gpus and "gemm_flops" not in given_rates:
        warnings.append("the GEMM rate is a float64 rate; float32 runs about twice as fast on CPUs")
    return warnings


# ------------------------------------------------------------------------------------------------ formatting


def _format_plan(p: Plan) -> str:
    ws = "s" if p.workers > 1 else ""
    workers = (f"{p.workers} GPU worker{ws} x {p.gpus_per_worker} GPU (one task per GPU)" if p.gpus_per_worker
               else f"{p.workers} CPU worker{ws} x 1 task")
    at_once = (f"{p.tiles_per_task} per task x {p.tasks_at_once_per_worker} task(s) at once"
               + (f" (store slots {p.store_slots_per_worker})" if p.store_slots_per_worker is not None else ""))
    rows: list[tuple[str, str, str]] = [
        ("matrix", f"n = {p.n:,} {p.dtype}", f"assume {p.assume}: {FACTORIZATION[p.assume]}"),
        ("workers", workers, ""),
        ("budget", f"{format_bytes(p.budget_bytes)} / worker", f"for tiles; the baseline is outside it; "
                                                               f"{p.budget_source}"),
    ]
    if p.gpu_memory_bytes is not None:
        rows.append(("GPU memory", f"{format_bytes(p.gpu_memory_bytes)} / GPU",
                     f"working set {format_bytes(p.gpu_working_set_bytes)} / GPU"))
    rows += [
        ("tile size", f"{p.block_size:,}", f"limited by {p.block_size_limited_by}"),
        ("tile", format_bytes(p.tile_bytes), ""),
        ("panels", f"{p.n_panels:,}", ""),
        ("tiles", f"{p.n_tiles:,}", "all (LU)" if p.assume == "gen" else "lower triangle"),
        ("tasks", f"{p.n_tasks:,}", "factor, pivots, panel solves, updates"),
        ("mode", p.mode, p.mode_reason),
        ("matrix tiles", format_bytes(p.matrix_bytes),
         "all tiles" if p.assume == "gen" else "lower-triangle tiles, diagonal tiles whole"),
        ("resident tiles", f"{p.resident_tiles_per_worker:,} / worker",
         at_once + (" + the worker's share of the matrix" if p.mode == "memory" else "")),
        ("working set", f"{format_bytes(p.working_set_bytes)} / worker", "tiles of the running tasks"),
        ("tiles in memory", f"{format_bytes(p.tile_memory_bytes_per_worker)} / worker",
         f"{100 * p.tile_memory_bytes_per_worker / p.budget_bytes:.0f}% of the budget"
         + (": working set + share of the matrix" if p.mode == "memory" else ": the working set")),
        ("baseline", f"{format_bytes(p.overhead_bytes)} / worker",
         "expected: Python, NumPy, dask (dlogdet.memory.overhead)"),
        ("peak RSS", f"{format_bytes(p.peak_rss_bytes_per_worker)} / worker",
         "expected: baseline + tiles in memory"),
        ("source reads", format_bytes(p.source_read_bytes), "every input tile once"),
        ("store reads", format_bytes(p.store_read_bytes), "tile store" if p.mode == "store" else "no tile store"),
        ("store writes", format_bytes(p.store_write_bytes), ""),
        ("scratch disk", format_bytes(p.scratch_bytes), "free disk the engine asks for: matrix + 2 x panels x tile"
         if p.mode == "store" else ""),
        ("flops", f"{p.flops / 1e12:,.1f} TFLOP" if p.flops >= 1e12 else f"{p.flops / 1e9:,.3f} GFLOP",
         "2n^3/3" if p.assume == "gen" else "n^3/3"),
        ("network", format_bytes(p.network_bytes), "tiles moved between workers (block-cyclic placement)"
         if p.mode == "memory" else "out of core: tiles travel through the tile store"),
        ("GEMM rate", f"{p.rates.gemm_flops / 1e9:,.1f} GFLOP/s / task", p.rates.gemm_source),
        ("disk rate", f"{p.rates.io_bytes / 1e9:,.2f} GB/s / worker", p.rates.io_source),
        ("network rate", f"{p.rates.network_bytes / 1e9:,.2f} GB/s / worker + "
                         f"{p.rates.transfer_latency * 1e3:,.2f} ms / fetch", p.rates.network_source),
        ("per-task cost", f"{p.rates.task_seconds * 1e3:,.2f} ms scheduler + {p.rates.task_latency * 1e3:,.2f} ms "
                          "worker", p.rates.task_source),
        ("time: compute", human_time(p.time_compute_s), "flops / (workers x tasks at once x GEMM rate)"),
        ("time: critical path", human_time(p.time_critical_path_s), "panels x (factor + solve + update of a tile)"),
        ("time: I/O", human_time(p.time_io_s), "bytes / (workers x disk rate), not overlapped"),
        ("time: transfers", human_time(p.time_transfer_s), "network bytes / (workers x network rate), not overlapped"),
        ("time: scheduler", human_time(p.time_scheduler_s), "tasks x the scheduler's cost per task, not overlapped"),
        ("predicted time", human_time(p.time_total_s), f"{p.time_total_s:,.0f} s: the sum above, nothing overlapped"),
    ]
    if p.simulated is not None:
        s = p.simulated
        slots = p.workers * p.tasks_at_once_per_worker
        rows += [
            ("simulated time", human_time(s["time_s"]), f"{s['time_s']:,.0f} s: the engine's {s['n_tasks']:,} tasks "
                                                        f"replayed on {p.workers} simulated workers"),
            ("  compute", human_time(s["compute_s"]), f"task run times / {slots} task slots"),
            ("  transfers", human_time(s["transfers_s"]), f"{format_bytes(s['network_bytes'])} over the workers' "
                                                          "links / workers"),
            ("  scheduler", human_time(s["scheduler_s"]), "tasks x the scheduler's cost per task (one process)"),
            ("  critical path", human_time(s["critical_path_s"]), "longest chain of dependent tasks"),
            ("  busiest worker", f"worker {s['busiest_worker']}", f"{human_time(s['busiest_worker_s'])} of tasks"),
        ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]
    lines += [f"warning: {w}" for w in p.warnings]
    return "\n".join(lines)
