"""The dry-run planner: what an exact run of n rows on K workers under a memory budget will cost, without running it.

:func:`plan` answers in closed form (no graph is built, nothing touches a cluster), so it is instant even for
n = 10⁶: tile size b, panels nt = ⌈n/b⌉, tiles, tasks, whether the matrix stays in worker memory or lives in the
on-disk tile store, tiles resident per worker, bytes read and written, scratch disk, flops and a predicted time.

One set of rules: the mode and the tile size are the engine's own (:func:`dlogdet.graph.choose_mode`,
:func:`dlogdet.graph.store_block_size` out of core, :func:`dlogdet.graph.auto_block_size` in memory, after
``block_size=`` and dask config ``dlogdet.block-size``), so on CPU workers a plan's ``block_size`` and ``mode`` are
what ``dlogdet.logdet`` reports in ``diagnostics["block_size"]`` and ``["mode"]`` for the same n, workers, budget,
dtype, assume and dask config, and a budget too small for the smallest tile raises the engine's
:class:`~dlogdet.errors.MemoryBudgetError` (``.needed``: the smallest budget that works). GPU workers add two caps
the engine does not know, taken as a min on top of its choice: ``tiles-per-task`` tiles must fit in one GPU's
memory, and b ≤ 46340 (b² < 2³¹); the plan then says which tile to pass as ``block_size``.

The memory model (per worker, host memory). The budget (``dlogdet.memory.budget``) is for tiles; the worker
process's own baseline (Python, NumPy, dask, task state, buffers) is outside it and is estimated by
``dlogdet.memory.overhead``::

    working set      = tiles_per_task · tasks at once · b² · itemsize
    tiles in memory  = working set (+ ⌈matrix bytes / workers⌉ in memory mode)          the budget's share
    expected peak RSS = overhead + tiles in memory

``tasks at once`` is one per CPU worker (one BLAS thread per task) and one per GPU on a GPU worker, and out of
core at most the tile store's slots, ``budget // (tiles_per_task · tile bytes)``, which bound the store tasks a
worker runs at once. ``tiles_per_task`` is ``dlogdet.memory.tiles-per-task`` (3 inputs, 1 output, 1 temporary).

The time model::

    flops / (workers · tasks at once · gemm) + nt · (potrf + trsm + syrk of a tile) / gemm + I/O / (workers · io)

the work spread over all task slots, plus the critical path (one diagonal factorization, panel solve and diagonal
update per panel, which no number of workers overlaps), plus the disk traffic, not overlapped with compute (an
upper estimate: the engine prefetches).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..core import config
from . import memory
from ..core.errors import InputError, MemoryBudgetError
from ..engine.graph import Tiling, auto_block_size, choose_mode, store_block_size, task_count
from ..sources.base import check_dtype

log = logging.getLogger(__name__)

ASSUME = ("spd", "sym", "gen")
FACTORIZATION = {"spd": "Cholesky", "sym": "LDL^T (Bunch-Kaufman)", "gen": "LU (partial pivoting)"}

# Largest GPU tile: b² must stay below 2³¹ elements (int32 index overflow in some cupyx kernels; DESIGN.md §2).
GPU_MAX_TILE = 46340
# A tile cut down by a GPU cap is a multiple of this, the granularity of graph.store_block_size.
GPU_QUANTUM = 64

# Defaults of the rates and the memory model, used when dask config has no value (the keys and the reasons for
# these values are in dlogdet.yaml: dlogdet.plan.*, dlogdet.memory.overhead).
DEFAULT_GEMM_FLOPS = 50e9        # float64 flop/s of one CPU task (one core, AVX2/AVX-512 DGEMM: 40-70 GFLOP/s)
DEFAULT_GPU_GEMM_FLOPS = 20e12   # float64 flop/s of one GPU (A100: 19.5 TFLOP/s FP64 tensor; H100: 67)
DEFAULT_IO_BYTES = 1e9           # B/s of one worker's scratch disk (a local NVMe SSD; a parallel file system share)
DEFAULT_OVERHEAD = "256MiB"      # expected baseline RSS of a worker process, outside the budget
DEFAULT_TILES_PER_TASK = 5       # graph.store_block_size's default: 3 inputs + 1 output + 1 temporary

CALIBRATION_GEMM = 1024            # order of the calibration GEMM
CALIBRATION_FILE = 64 * 2**20      # bytes of the calibration file


@dataclass(frozen=True)
class Rates:
    """Rates of the time model and where each came from ("given", "measured here: ...", "default (...)")."""

    gemm_flops: float
    io_bytes: float
    gemm_source: str
    io_source: str


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
    n_tasks: int                           # dlogdet.graph.task_count (no gather, no symmetry checks)
    mode: str                              # "memory" or "store": dlogdet.graph.choose_mode
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
    budget_source: str = "given"           # how the budget was obtained (dlogdet.memory.resolve's words)

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


def _check_rates(rates) -> dict[str, float]:
    if rates is None:
        return {}
    if not isinstance(rates, Mapping):
        raise InputError(f"rates must be a dict such as {{'gemm_flops': 5e10, 'io_bytes': 1e9}}, got {rates!r}")
    unknown = set(rates) - {"gemm_flops", "io_bytes"}
    if unknown:
        raise InputError(f"unknown rates {sorted(unknown)}: give gemm_flops (flop/s of one task slot) and/or "
                         "io_bytes (disk bytes/s of one worker)")
    out = {}
    for k, v in rates.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        if not (math.isfinite(f) and f > 0):
            raise InputError(f"rates[{k!r}] must be a positive number, got {v!r}")
        out[k] = f
    return out


# ------------------------------------------------------------------------------------------------ calibration


def calibrate(scratch: str | None = None) -> dict[str, tuple[float, str]]:
    """Measure the rates here, in about a second: {"gemm_flops": (rate, how), "io_bytes": (rate, how)}.

    GEMM: a 1024×1024 float64 matrix product on one BLAS thread (the engine pins one thread per task), best of up
    to 3 after a warm-up. Disk: write, fsync, evict from the page cache and read back a 64 MiB file in ``scratch``
    (``dlogdet.scratch``, else the system's temporary directory), the way the tile store moves tiles.
    """
    import numpy as np
    from threadpoolctl import threadpool_limits

    m = CALIBRATION_GEMM
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, m))
    b = rng.standard_normal((m, m))
    best = math.inf
    with threadpool_limits(limits=1, user_api="blas"):
        a @ b  # warm-up: first-touch of the output, BLAS initialization
        t_end = time.perf_counter() + 0.6
        for _ in range(3):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
            if time.perf_counter() > t_end:
                break
    gemm = 2.0 * m ** 3 / best

    root = scratch if scratch is not None else config.get("scratch", None)
    root = os.fspath(root) if root else tempfile.gettempdir()
    chunk = np.ones(4 * 2**20, dtype=np.uint8)
    buf = bytearray(len(chunk))
    fd, path = tempfile.mkstemp(prefix="dlogdet-calibrate-", dir=root)
    try:
        t0 = time.perf_counter()
        with os.fdopen(fd, "wb", buffering=0) as f:
            for _ in range(CALIBRATION_FILE // len(chunk)):
                f.write(chunk)
            os.fsync(f.fileno())
            if hasattr(os, "posix_fadvise"):  # drop the clean pages, so the read comes from the disk
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
        t_read = time.perf_counter() - t0
    finally:
        os.unlink(path)
    io = 2.0 * CALIBRATION_FILE / max(t_write + t_read, 1e-9)
    return {
        "gemm_flops": (gemm, f"measured here: {m}x{m} float64 GEMM on 1 BLAS thread, {best * 1e3:.1f} ms"),
        "io_bytes": (io, f"measured here: 64 MiB written, fsynced and read back in {root} "
                         f"({t_write * 1e3:.0f} + {t_read * 1e3:.0f} ms)"),
    }


def _config_rate(key: str, default: float) -> float:
    v = config.get(key, default)
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = math.nan
    if not (math.isfinite(f) and f > 0):
        raise InputError(f"dask config dlogdet.{key} must be a positive number, got {v!r}")
    return f


def _resolve_rates(given: dict[str, float], do_calibrate: bool, gpu: bool) -> Rates:
    measured = calibrate() if do_calibrate else {}
    if "gemm_flops" in given:
        gemm, gsrc = given["gemm_flops"], "given (rates=)"
    elif gpu:
        gemm = _config_rate("plan.gpu-gemm-flops", DEFAULT_GPU_GEMM_FLOPS)
        gsrc = "default (dask config dlogdet.plan.gpu-gemm-flops)"
        if do_calibrate:
            gsrc += "; calibration measures CPU GEMM only"
    elif "gemm_flops" in measured:
        gemm, gsrc = measured["gemm_flops"]
    else:
        gemm = _config_rate("plan.gemm-flops", DEFAULT_GEMM_FLOPS)
        gsrc = "default (dask config dlogdet.plan.gemm-flops)"
    if "io_bytes" in given:
        io, isrc = given["io_bytes"], "given (rates=)"
    elif "io_bytes" in measured:
        io, isrc = measured["io_bytes"]
    else:
        io = _config_rate("plan.io-bytes", DEFAULT_IO_BYTES)
        isrc = "default (dask config dlogdet.plan.io-bytes)"
    return Rates(float(gemm), float(io), gsrc, isrc)


# ------------------------------------------------------------------------------------------ closed-form counts


def _sizes(n: int, b: int) -> tuple[int, int]:
    """(nt, size of the last, ragged tile)."""
    nt = -(-n // b)
    return nt, n - (nt - 1) * b


def matrix_tile_bytes(n: int, b: int, assume: str, itemsize: int) -> int:
    """Bytes of the tiles the factorization touches: Σ_{i≥j} s_i·s_j (all i, j for gen), s = tile sizes."""
    if assume == "gen":
        return n * n * itemsize
    nt, r = _sizes(n, b)
    sum_sq = (nt - 1) * b * b + r * r
    return (n * n + sum_sq) // 2 * itemsize


def traffic(n: int, b: int, assume: str, itemsize: int) -> tuple[int, int]:
    """(bytes read, bytes written) by all tasks when every task reads its inputs from, and writes its output to,
    the tile store; exact for a ragged last tile, in O(nt).

    Per step k with trailing tile sizes s_i (i > k), R = Σ s_i, Q = Σ s_i², m = nt − k − 1:
    factor reads and writes s_k²; each panel solve reads L_kk and A_ik, writes L_ik; each off-diagonal update
    (GEMM) reads A_ij, L_ik, L_jk, writes A_ij; each diagonal update (SYRK) reads A_ii and L_ik, writes A_ii. So
    Σ_{i>j} s_i s_j = (R² − Q)/2 and Σ_{i>j} (s_i + s_j) = (m − 1)·R. LU has row-panel solves too and updates of
    every (i, j) in the trailing square.
    """
    nt, r = _sizes(n, b)
    reads = writes = 0
    for k in range(nt):
        sk = b if k < nt - 1 else r
        m = nt - k - 1
        R = n - (k + 1) * b if m else 0
        Q = (m - 1) * b * b + r * r if m else 0
        reads += sk * sk
        writes += sk * sk
        if assume == "gen":
            reads += 2 * (m * sk * sk + sk * R) + R * R + 2 * sk * m * R
            writes += 2 * sk * R + R * R
        else:
            off = (R * R - Q) // 2
            reads += (m * sk * sk + sk * R) + (off + sk * (m - 1) * R if m else 0) + (Q + sk * R)
            writes += sk * R + off + Q
    return reads * itemsize, writes * itemsize


def flop_count(n: int, assume: str) -> float:
    """Leading-order flops of the factorization: n³/3 (Cholesky, LDLᵀ), 2n³/3 (LU)."""
    return (2.0 if assume == "gen" else 1.0) * float(n) ** 3 / 3.0


def critical_path_flops(b: int, assume: str) -> float:
    """Flops of one panel's critical path: factor a diagonal tile, one panel solve, one diagonal update.

    Cholesky/LDLᵀ: b³/3 + b³ + b³ (SYRK touches the lower half); LU: 2b³/3 + b³ + 2b³ (the row and column panel
    solves run side by side, the update is a full GEMM).
    """
    b3 = float(b) ** 3
    return b3 * (2 / 3 + 1 + 2) if assume == "gen" else b3 * (1 / 3 + 1 + 1)


# ------------------------------------------------------------------------------------------------ tile size
#
# The tile size is the engine's (dlogdet.graph); the functions below only say in words which of its limits bound
# the tile. They retrace the engine's steps and fall back to naming the engine's function if the retraced value
# ever differs from the engine's, so a wording never disagrees with the number.


def _limit_memory_mode(n: int, workers: int, itemsize: int, budget: int, b: int) -> str:
    """Which limit of :func:`dlogdet.graph.auto_block_size` gave ``b``."""
    fallback = "the engine's in-memory rule (graph.auto_block_size)"
    lo = int(config.get("min-block-size", 256))
    hi = int(config.get("max-block-size", 2048))
    nt = max(8, math.ceil(math.sqrt(8 * max(1, workers))))
    want = math.ceil(n / nt)
    bs = max(lo, min(hi, want))
    why = (f"smallest tile (dlogdet.min-block-size = {lo})" if want < lo and bs == lo
           else f"dlogdet.max-block-size = {hi}" if want > hi
           else f"parallelism: {nt} panels (at least 8 and ceil(sqrt(8 x workers)))")
    max_tasks = int(config.get("max-tasks", 2_000_000))
    nt_cap = max(1, int((6 * max_tasks / 4) ** (1 / 3)))
    if math.ceil(n / bs) > nt_cap:
        bs = math.ceil(n / nt_cap)
        why = f"dlogdet.max-tasks = {max_tasks}: at most {nt_cap} panels"
    cap = int(math.sqrt(budget / 8 / itemsize))
    if cap < bs:
        bs = cap
        why = "memory budget: a tile takes at most budget/8 in memory mode"
    if n <= bs:
        bs = n
        why = "n: one tile"
    return why if max(1, bs) == b else fallback


def _limit_store_mode(n: int, workers: int, itemsize: int, budget: int, per_task: int, b: int) -> str:
    """Which limit of :func:`dlogdet.graph.store_block_size` gave ``b``."""
    fallback = "the engine's out-of-core rule (graph.store_block_size)"
    lo = min(int(config.get("min-block-size", 256)), n)
    nt_min = max(2, math.ceil(math.sqrt(8 * max(1, workers))))
    store_max = int(config.get("memory.store-max-block-size", 8192))
    limits = [
        (math.isqrt(budget // (per_task * itemsize)), f"memory budget: {per_task} tiles per task"),
        (store_max, f"dlogdet.memory.store-max-block-size = {store_max}"),
        (max(lo, math.ceil(n / nt_min)),
         f"parallelism: at least {nt_min} panels (ceil(sqrt(8 x workers)), at least 2)"
         if math.ceil(n / nt_min) >= lo else f"smallest tile (dlogdet.min-block-size = {lo})"),
    ]
    raw, why = min(limits, key=lambda x: x[0])
    bs = raw
    if raw >= 64:
        bs = max(lo, raw - raw % 64)
        if bs != raw:
            why += ", rounded down to a multiple of 64"
    if n <= bs:
        bs, why = n, "n: one tile"
    return why if bs == b else fallback


def _store_block_check(b: int, budget: int, per_task: int, itemsize: int) -> None:
    """The engine's refusal of a given tile size out of core (``estimators.exact.run``), same message and
    ``needed``."""
    need = per_task * b * b * itemsize
    if need > budget:
        raise MemoryBudgetError(
            f"block_size={b} needs {per_task} tiles = {need / 2**20:.1f} MiB per task, more than the budget of "
            f"{budget / 2**20:.1f} MiB; use block_size <= {math.isqrt(budget // (per_task * itemsize))}",
            needed=need)


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
                f"gpu_memory of {gpu_b} bytes ({_human_bytes(gpu_b)}) per GPU cannot hold {per_task} tiles of "
                f"block_size={b}; the smallest gpu_memory that works is {need} bytes ({_human_bytes(need)}); "
                f"or use block_size <= {fit}", needed=need)
        return b, None
    mem_cap = math.isqrt(gpu_b // (per_task * itemsize))
    if mem_cap < lo:
        need = per_task * itemsize * lo * lo
        raise MemoryBudgetError(
            f"gpu_memory of {gpu_b} bytes ({_human_bytes(gpu_b)}) per GPU cannot hold {per_task} tiles of the "
            f"smallest tile ({lo}x{lo}, dlogdet.min-block-size); the smallest gpu_memory that works is {need} bytes "
            f"({_human_bytes(need)})", needed=need)
    cap, why = min((mem_cap, f"GPU memory (gpu_memory: {per_task} tiles per GPU)"),
                   (GPU_MAX_TILE, f"GPU tile limit ({GPU_MAX_TILE}: b^2 < 2^31)"), key=lambda x: x[0])
    if b <= cap:
        return b, None
    if cap >= GPU_QUANTUM:
        cap = max(lo, cap - cap % GPU_QUANTUM)
    return cap, why


# --------------------------------------------------------------------------------------------------- the plan


def plan(n: int, *, workers: int | None = None, budget=None, dtype="float64", assume: str = "spd",
         block_size: int | None = None, gpus_per_worker: int = 0, gpu_memory=None,
         rates: Mapping[str, float] | None = None, calibrate: bool = False, worker_memory=None,
         client=None) -> Plan:
    """Dry run of an exact log-determinant: tile size, tasks, memory, disk, flops and time, in closed form.

    Mode and tile size are the engine's (module doc): mode :func:`dlogdet.graph.choose_mode` (``"store"``, the
    on-disk tile store, when the matrix's lower triangle exceeds half of the workers' summed budgets, unless
    ``dlogdet.memory.mode`` forces one); tile ``block_size``, else dask config ``dlogdet.block-size``, else
    :func:`dlogdet.graph.store_block_size` out of core and :func:`dlogdet.graph.auto_block_size` in memory. On GPU
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
        ``"auto"``: the engine's rule, :mod:`dlogdet.memory`, from ``client``'s workers or from
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
        ``{"gemm_flops": flop/s of one task slot, "io_bytes": disk B/s of one worker}``; missing ones are measured
        (``calibrate=True``) or taken from dask config ``dlogdet.plan.*`` (defaults 50e9 per CPU task, 20e12 per
        GPU, 1e9 B/s).
    calibrate : bool
        Measure the rates here (about a second): a single-threaded 1024² float64 GEMM and a 64 MiB disk round trip.
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
    if workers is None:
        if client is None:
            raise InputError("give workers= (the number of dask workers) or client= (a cluster to plan for)")
        from .execute import n_workers
        workers = n_workers(client)
    workers = _check_int("workers", workers, 1)
    dt = check_dtype(dtype)
    itemsize = dt.itemsize
    if assume not in ASSUME:
        raise InputError(f"assume must be one of {ASSUME}, got {assume!r}")
    resolved = memory.for_plan(budget, worker_memory=worker_memory, client=client)
    if resolved.bytes is None:
        raise InputError("give a memory budget per worker, such as budget='80GB', or budget='auto' with "
                         "worker_memory= (dask config dlogdet.memory.budget is null)")
    budget_b = resolved.bytes
    gpus = _check_int("gpus_per_worker", gpus_per_worker, 0)
    if gpus and gpu_memory is None:
        raise InputError(f"gpus_per_worker={gpus} needs gpu_memory (device memory of one GPU, such as '80GB')")
    if not gpus and gpu_memory is not None:
        raise InputError("gpu_memory was given without gpus_per_worker: give both (GPUs per worker, memory of one "
                         "GPU) or neither")
    gpu_b = config.parse_bytes(gpu_memory) if gpus else None
    block_source = "given (block_size=)"
    if block_size is None and config.get("block-size"):
        block_size, block_source = config.get("block-size"), "dask config dlogdet.block-size"
    if block_size is not None:
        block_size = _check_int("block_size" if block_source.startswith("given") else "dask config "
                                "dlogdet.block-size", block_size, 1)
    given_rates = _check_rates(rates)
    overhead = config.parse_bytes(config.get("memory.overhead", DEFAULT_OVERHEAD))
    per_task = _check_int("dask config dlogdet.memory.tiles-per-task",
                          config.get("memory.tiles-per-task", DEFAULT_TILES_PER_TASK), 1)
    slots = gpus if gpus else 1
    lo = min(int(config.get("min-block-size", 256)), n)
    warnings: list[str] = []

    # mode and tile: the engine's rules (estimators.exact.run), in its order
    mode = choose_mode(n, itemsize, budget_b, workers, assume)
    matrix_approx = n * n * itemsize if assume == "gen" else n * (n + 1) // 2 * itemsize  # as choose_mode counts
    half = 0.5 * budget_b * workers
    mode_cfg = config.get("memory.mode", "auto")
    if mode_cfg != "auto":
        reason = f"forced by dask config dlogdet.memory.mode = {mode_cfg}"
    elif mode == "memory":
        reason = (f"the matrix ({_human_bytes(matrix_approx)}) takes at most half of the summed budgets "
                  f"({_human_bytes(half)})")
    else:
        reason = (f"the matrix ({_human_bytes(matrix_approx)}) takes more than half of the summed budgets "
                  f"({_human_bytes(half)}): tiles live in the on-disk tile store")
    if block_size is not None:
        b = min(block_size, n)
        why = block_source
        if mode == "store":
            _store_block_check(b, budget_b, per_task, itemsize)
    elif mode == "store":
        b = min(store_block_size(n, workers, budget_b, itemsize), n)
        why = _limit_store_mode(n, workers, itemsize, budget_b, per_task, b)
    else:
        b = min(auto_block_size(n, workers, itemsize=itemsize, budget=budget_b), n)
        why = _limit_memory_mode(n, workers, itemsize, budget_b, b)
    engine_b = b
    if gpus:
        b, gpu_why = _gpu_cap(b, lo, gpu_b, per_task, itemsize, given=block_size is not None)
        if gpu_why is not None:
            why = f"{gpu_why}; the engine alone picks {engine_b}"
            warnings.append(f"dlogdet.logdet(..., block_size=None) picks block_size={engine_b}, whose "
                            f"{per_task} tiles per task do not fit in one GPU ({_human_bytes(gpu_b)}) or exceed "
                            f"the GPU tile limit: pass block_size={b} to run this plan")

    tiling = Tiling(n, b)
    nt = tiling.nt
    n_tiles = nt * nt if assume == "gen" else tiling.tiles_lower()
    n_tasks = task_count(nt, assume)
    tile_bytes = b * b * itemsize
    matrix_bytes = matrix_tile_bytes(n, b, assume, itemsize)
    if mode == "memory":
        store_slots = None
        at_once = slots
        share = -(-matrix_bytes // workers)
        resident = -(-n_tiles // workers) + per_task * at_once
        source_reads = matrix_bytes
        store_reads = store_writes = scratch = 0
    else:
        store_slots = max(1, budget_b // (per_task * tile_bytes))  # estimators.exact._run_store: TileStore(slots=)
        at_once = min(slots, store_slots)
        share = 0
        resident = per_task * at_once
        reads, writes = traffic(n, b, assume, itemsize)
        source_reads = matrix_bytes
        store_reads = reads - source_reads
        store_writes = writes
        scratch = matrix_approx + 2 * nt * tile_bytes  # estimators.exact._run_store: the free disk it asks for
    working_set = per_task * at_once * tile_bytes
    tile_memory = working_set + share
    peak_rss = overhead + tile_memory

    flops = flop_count(n, assume)
    r = _resolve_rates(given_rates, calibrate, bool(gpus))
    t_compute = flops / (workers * at_once * r.gemm_flops)
    t_cp = nt * critical_path_flops(b, assume) / r.gemm_flops
    t_io = (source_reads + store_reads + store_writes) / (workers * r.io_bytes)

    task_slots = workers * slots
    nt_min = max(1, math.ceil(math.sqrt(8 * task_slots)))
    if task_slots > 1 and nt < nt_min:
        warnings.append(f"only {nt} panels: the first trailing update has {nt * (nt - 1) // 2} tasks for "
                        f"{task_slots} task slots, which sit idle for much of the run (a smaller block_size, if "
                        "n allows, or fewer workers)")
    if at_once < slots:
        warnings.append(f"the budget admits {at_once} store task{'s' if at_once > 1 else ''} at once per worker "
                        f"(budget // ({per_task} tiles of {_human_bytes(tile_bytes)})), so {slots - at_once} of its "
                        f"{slots} GPUs wait: a budget of {per_task * slots * tile_bytes} bytes "
                        f"({_human_bytes(per_task * slots * tile_bytes)}) runs one task per GPU")
    if tile_memory > budget_b:
        what = "its working set and its share of the matrix" if share else "its working set"
        warnings.append(f"a worker's tiles ({what}: {_human_bytes(tile_memory)}) exceed the budget "
                        f"({_human_bytes(budget_b)}): the engine does not refuse this run, but expect "
                        f"{_human_bytes(peak_rss)} RSS per worker")
    max_tasks = int(config.get("max-tasks", 2_000_000))
    if n_tasks > max_tasks:
        warnings.append(f"{n_tasks} tasks exceed dask config dlogdet.max-tasks = {max_tasks}: the engine refuses "
                        "this graph (give a larger block_size or budget)")
    if itemsize == 4 and not gpus and "gemm_flops" not in given_rates:
        warnings.append("the GEMM rate is a float64 rate; float32 runs about twice as fast on CPUs")
    gpu_ws = per_task * tile_bytes if gpus else None

    p = Plan(n=n, dtype=dt.name, assume=assume, workers=workers, gpus_per_worker=gpus, slots_per_worker=slots,
             tasks_at_once_per_worker=at_once, store_slots_per_worker=store_slots, budget_bytes=budget_b,
             budget_source=resolved.source,
             gpu_memory_bytes=gpu_b, overhead_bytes=overhead, tiles_per_task=per_task, block_size=b,
             block_size_limited_by=why, engine_block_size=engine_b, n_panels=nt, n_tiles=n_tiles, n_tasks=n_tasks,
             mode=mode, mode_reason=reason, matrix_bytes=matrix_bytes, tile_bytes=tile_bytes,
             resident_tiles_per_worker=resident, working_set_bytes=working_set,
             tile_memory_bytes_per_worker=tile_memory, peak_rss_bytes_per_worker=peak_rss,
             gpu_working_set_bytes=gpu_ws, source_read_bytes=source_reads, store_read_bytes=store_reads,
             store_write_bytes=store_writes, scratch_bytes=scratch, flops=flops, rates=r,
             time_compute_s=t_compute, time_critical_path_s=t_cp, time_io_s=t_io,
             time_total_s=t_compute + t_cp + t_io, warnings=tuple(warnings))
    log.debug("plan n=%d workers=%d: b=%d, %s mode, %d tasks (%.3f s)", n, workers, b, mode, n_tasks,
              time.perf_counter() - t_start)
    return p


# ------------------------------------------------------------------------------------------------ formatting


def _human_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KiB"`` (binary units)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_time(s: float) -> str:
    """Seconds as ``"42.0 s"``, ``"3 min 20 s"``, ``"5 h 07 min"`` or ``"2.3 days"``."""
    if not math.isfinite(s):
        return "n/a"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        m, sec = divmod(int(round(s)), 60)
        return f"{m} min {sec:02d} s"
    if s < 48 * 3600:
        h, m = divmod(int(round(s / 60)), 60)
        return f"{h} h {m:02d} min"
    return f"{s / 86400:.1f} days"


def _format_plan(p: Plan) -> str:
    ws = "s" if p.workers > 1 else ""
    workers = (f"{p.workers} GPU worker{ws} x {p.gpus_per_worker} GPU (one task per GPU)" if p.gpus_per_worker
               else f"{p.workers} CPU worker{ws} x 1 task")
    at_once = (f"{p.tiles_per_task} per task x {p.tasks_at_once_per_worker} task(s) at once"
               + (f" (store slots {p.store_slots_per_worker})" if p.store_slots_per_worker is not None else ""))
    rows: list[tuple[str, str, str]] = [
        ("matrix", f"n = {p.n:,} {p.dtype}", f"assume {p.assume}: {FACTORIZATION[p.assume]}"),
        ("workers", workers, ""),
        ("budget", f"{_human_bytes(p.budget_bytes)} / worker", f"for tiles; the baseline is outside it; "
                                                               f"{p.budget_source}"),
    ]
    if p.gpu_memory_bytes is not None:
        rows.append(("GPU memory", f"{_human_bytes(p.gpu_memory_bytes)} / GPU",
                     f"working set {_human_bytes(p.gpu_working_set_bytes)} / GPU"))
    rows += [
        ("tile size", f"{p.block_size:,}", f"limited by {p.block_size_limited_by}"),
        ("tile", _human_bytes(p.tile_bytes), ""),
        ("panels", f"{p.n_panels:,}", ""),
        ("tiles", f"{p.n_tiles:,}", "all (LU)" if p.assume == "gen" else "lower triangle"),
        ("tasks", f"{p.n_tasks:,}", "factor, pivots, panel solves, updates"),
        ("mode", p.mode, p.mode_reason),
        ("matrix tiles", _human_bytes(p.matrix_bytes),
         "all tiles" if p.assume == "gen" else "lower-triangle tiles, diagonal tiles whole"),
        ("resident tiles", f"{p.resident_tiles_per_worker:,} / worker",
         at_once + (" + the worker's share of the matrix" if p.mode == "memory" else "")),
        ("working set", f"{_human_bytes(p.working_set_bytes)} / worker", "tiles of the running tasks"),
        ("tiles in memory", f"{_human_bytes(p.tile_memory_bytes_per_worker)} / worker",
         f"{100 * p.tile_memory_bytes_per_worker / p.budget_bytes:.0f}% of the budget"
         + (": working set + share of the matrix" if p.mode == "memory" else ": the working set")),
        ("baseline", f"{_human_bytes(p.overhead_bytes)} / worker",
         "expected: Python, NumPy, dask (dlogdet.memory.overhead)"),
        ("peak RSS", f"{_human_bytes(p.peak_rss_bytes_per_worker)} / worker",
         "expected: baseline + tiles in memory"),
        ("source reads", _human_bytes(p.source_read_bytes), "every input tile once"),
        ("store reads", _human_bytes(p.store_read_bytes), "tile store" if p.mode == "store" else "no tile store"),
        ("store writes", _human_bytes(p.store_write_bytes), ""),
        ("scratch disk", _human_bytes(p.scratch_bytes), "free disk the engine asks for: matrix + 2 x panels x tile"
         if p.mode == "store" else ""),
        ("flops", f"{p.flops / 1e12:,.1f} TFLOP" if p.flops >= 1e12 else f"{p.flops / 1e9:,.3f} GFLOP",
         "2n^3/3" if p.assume == "gen" else "n^3/3"),
        ("GEMM rate", f"{p.rates.gemm_flops / 1e9:,.1f} GFLOP/s / task", p.rates.gemm_source),
        ("disk rate", f"{p.rates.io_bytes / 1e9:,.2f} GB/s / worker", p.rates.io_source),
        ("time: compute", human_time(p.time_compute_s), "flops / (workers x tasks at once x GEMM rate)"),
        ("time: critical path", human_time(p.time_critical_path_s), "panels x (factor + solve + update of a tile)"),
        ("time: I/O", human_time(p.time_io_s), "bytes / (workers x disk rate), not overlapped"),
        ("predicted time", human_time(p.time_total_s), f"{p.time_total_s:,.0f} s"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]
    lines += [f"warning: {w}" for w in p.warnings]
    return "\n".join(lines)
