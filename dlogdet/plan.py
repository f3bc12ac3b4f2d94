"""The dry-run planner: what an exact run of n rows on K workers under a memory budget will cost, without running it.

:func:`plan` answers in closed form (no graph is built, nothing touches a cluster), so it is instant even for
n = 10⁶: tile size b, panels nt = ⌈n/b⌉, tiles, tasks, whether the matrix stays in worker memory or lives in the
on-disk tile store, tiles resident per worker, bytes read and written, scratch disk, flops and a predicted time.

The memory model (per worker, host memory)::

    working set = overhead + tiles_per_task · slots · b² · itemsize      ≤ budget          (store mode)
    working set + ⌈matrix bytes / workers⌉                               ≤ budget          (memory mode)

``slots`` is the number of tasks a worker runs at once: 1 on a CPU worker (one BLAS thread per task), one per GPU
on a GPU worker, whose device memory must also hold ``overhead + tiles_per_task · b² · itemsize`` per GPU.
``tiles_per_task`` is ``dlogdet.memory.tiles-per-task`` (a task's 3 inputs and 1 output, plus the engine's
temporaries) and ``overhead`` is ``dlogdet.memory.overhead`` (default 256 MiB: what a worker holds besides the tiles
of its running tasks: log-pivots, task and graph state, communication buffers, LAPACK workspace, allocator slack).

The time model::

    flops / (workers · slots · gemm) + nt · (potrf + trsm + syrk of one tile) / gemm + I/O bytes / (workers · io)

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

from . import config
from .errors import InputError, MemoryBudgetError
from .graph import Tiling, auto_block_size, task_count
from .sources.base import check_dtype

log = logging.getLogger(__name__)

ASSUME = ("spd", "sym", "gen")
FACTORIZATION = {"spd": "Cholesky", "sym": "LDL^T (Bunch-Kaufman)", "gen": "LU (partial pivoting)"}

# Tile sizes are multiples of this (once they are at least this big): whole cache-line and SIMD panels for BLAS,
# and tile boundaries that a human can read.
QUANTUM = 256
# Largest GPU tile: b² must stay below 2³¹ elements (int32 index overflow in some cupyx kernels; DESIGN.md §2).
GPU_MAX_TILE = 46340

# Defaults of the rates and the memory model, used when dask config has no value (keys: see the README of plan).
DEFAULT_GEMM_FLOPS = 50e9        # float64 flop/s of one CPU task (one core, AVX2/AVX-512 DGEMM: 40-70 GFLOP/s)
DEFAULT_GPU_GEMM_FLOPS = 20e12   # float64 flop/s of one GPU (A100: 19.5 TFLOP/s FP64 tensor; H100: 67)
DEFAULT_IO_BYTES = 1e9           # B/s of one worker's scratch disk (a local NVMe SSD; a parallel file system share)
DEFAULT_OVERHEAD = "256MiB"
DEFAULT_TILES_PER_TASK = 4       # 3 inputs + 1 output of a trailing update

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
    slots_per_worker: int                  # tasks a worker runs at once (1 per CPU worker, 1 per GPU)
    budget_bytes: int                      # per worker (host memory)
    gpu_memory_bytes: int | None           # per GPU
    overhead_bytes: int                    # dlogdet.memory.overhead, inside the budget
    tiles_per_task: int                    # dlogdet.memory.tiles-per-task
    block_size: int
    block_size_limited_by: str
    n_panels: int
    n_tiles: int                           # lower triangle nt(nt+1)/2; nt² for gen
    n_tasks: int                           # dlogdet.graph.task_count (no gather, no symmetry checks)
    mode: str                              # "memory" or "store"
    mode_reason: str
    matrix_bytes: int                      # the tiles the factorization touches: lower triangle (all for gen)
    tile_bytes: int                        # one full b×b tile
    resident_tiles_per_worker: int         # store: working set; memory: + the worker's share of the matrix
    working_set_bytes: int                 # overhead + tiles_per_task · slots · tile_bytes
    peak_bytes_per_worker: int             # working set (+ the share of the matrix in memory mode)
    gpu_working_set_bytes: int | None      # per GPU: overhead + tiles_per_task · tile_bytes
    source_read_bytes: int                 # every input tile once, at its first use (step 0)
    store_read_bytes: int                  # tile store (store mode; 0 in memory mode)
    store_write_bytes: int
    scratch_bytes: int                     # peak disk of the tile store: matrix + one panel of factor tiles
    flops: float
    rates: Rates
    time_compute_s: float
    time_critical_path_s: float
    time_io_s: float
    time_total_s: float
    warnings: tuple[str, ...] = field(default=())

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


def _resolve_rates(given: dict[str, float], do_calibrate: bool, gpu: bool) -> Rates:
    measured = calibrate() if do_calibrate else {}
    if "gemm_flops" in given:
        gemm, gsrc = given["gemm_flops"], "given (rates=)"
    elif gpu:
        gemm = float(config.get("plan.gpu-gemm-flops", DEFAULT_GPU_GEMM_FLOPS))
        gsrc = "default (dask config dlogdet.plan.gpu-gemm-flops)"
        if do_calibrate:
            gsrc += "; calibration measures CPU GEMM only"
    elif "gemm_flops" in measured:
        gemm, gsrc = measured["gemm_flops"]
    else:
        gemm = float(config.get("plan.gemm-flops", DEFAULT_GEMM_FLOPS))
        gsrc = "default (dask config dlogdet.plan.gemm-flops)"
    if "io_bytes" in given:
        io, isrc = given["io_bytes"], "given (rates=)"
    elif "io_bytes" in measured:
        io, isrc = measured["io_bytes"]
    else:
        io = float(config.get("plan.io-bytes", DEFAULT_IO_BYTES))
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


def _quantize_down(cap: int, n: int) -> int:
    if cap >= n:
        return n
    return cap - cap % QUANTUM if cap >= QUANTUM else cap


def _budget_error(what: str, have: int, need: int, detail: str) -> MemoryBudgetError:
    return MemoryBudgetError(
        f"a {what} of {have} bytes ({_human_bytes(have)}) cannot hold {detail}; the smallest {what} that works is "
        f"{need} bytes ({_human_bytes(need)})")


def _auto_block_size(n: int, cap: int, cap_why: str, nt_min: int, smallest: int) -> tuple[int, str]:
    """The tile size: tiles no larger than ``cap``, at least ``nt_min`` panels where tiles of ``smallest`` allow it,
    a multiple of 256, and, for that panel count, the smallest such tile (balanced panels, no thin ragged last
    one: same tasks, less memory and a shorter critical path than the largest tile with the same count)."""
    b0 = _quantize_down(cap, n)
    nt = max(nt_min, -(-n // b0))
    target = -(-n // nt)
    up = -(-target // QUANTUM) * QUANTUM
    down = target - target % QUANTUM
    if target >= QUANTUM and up <= b0 and -(-n // up) >= nt_min:
        b = up
    elif target >= QUANTUM and down >= smallest:
        b = down
    else:
        b = min(max(target, smallest), b0)
    b = min(b, n)
    if b == n:
        why = "n: one tile"
    elif nt_min > -(-n // b0) and b > smallest:
        why = f"parallelism: at least ceil(sqrt(8 * task slots)) = {nt_min} panels"
    elif b == smallest and target < smallest:
        why = f"smallest tile (dlogdet.min-block-size = {smallest})"
    else:
        why = cap_why
    return b, why


# --------------------------------------------------------------------------------------------------- the plan


def plan(n: int, *, workers: int, budget, dtype="float64", assume: str = "spd", block_size: int | None = None,
         gpus_per_worker: int = 0, gpu_memory=None, rates: Mapping[str, float] | None = None,
         calibrate: bool = False) -> Plan:
    """Dry run of an exact log-determinant: tile size, tasks, memory, disk, flops and time, in closed form.

    Tile size b: the largest multiple of 256 whose working set fits (module doc), clipped to leave at least
    ⌈√(8·workers·slots)⌉ panels (enough independent updates to keep every task slot busy) and to n; out of core,
    also at most ``dlogdet.memory.store-max-block-size`` when that is set; below 46341 on GPUs. Mode: "memory" when
    the matrix's tiles take at most half of the workers' summed budgets (the engine's ``dlogdet.memory.mode: auto``
    rule; the other half holds working sets and panel copies) and the per-worker share fits beside the working set,
    else "store" (the on-disk tile store).

    Parameters
    ----------
    n : int
        Order of the matrix.
    workers : int
        Dask workers.
    budget : int or str
        Host memory per worker, such as ``"80GB"``; None reads ``dlogdet.memory.budget``.
    dtype : {"float64", "float32"}
    assume : {"spd", "sym", "gen"}
    block_size : int, optional
        Plan this tile size instead of choosing one (refused if its working set does not fit).
    gpus_per_worker : int
        GPUs per worker (0: CPU workers). With GPUs, ``gpu_memory`` (per GPU) is required.
    gpu_memory : int or str, optional
        Device memory of one GPU.
    rates : dict, optional
        ``{"gemm_flops": flop/s of one task slot, "io_bytes": disk B/s of one worker}``; missing ones are measured
        (``calibrate=True``) or taken from dask config ``dlogdet.plan.*`` (defaults 50e9 per CPU task, 20e12 per
        GPU, 1e9 B/s).
    calibrate : bool
        Measure the rates here (about a second): a single-threaded 1024² float64 GEMM and a 64 MiB disk round trip.

    Returns
    -------
    Plan

    Raises
    ------
    InputError
        Bad n, workers, dtype (``UnsupportedDtypeError``), assume, sizes, rates, or GPU options half given.
    MemoryBudgetError
        The budget (or GPU memory) cannot hold the working set of the smallest tile, or of ``block_size``; the
        message names the smallest budget that works.
    """
    t_start = time.perf_counter()
    n = _check_int("n", n, 1)
    workers = _check_int("workers", workers, 1)
    dt = check_dtype(dtype)
    itemsize = dt.itemsize
    if assume not in ASSUME:
        raise InputError(f"assume must be one of {ASSUME}, got {assume!r}")
    if budget is None:
        budget = config.get("memory.budget", None)
        if budget is None:
            raise InputError("give a memory budget per worker, such as budget='80GB' (or set dask config "
                             "dlogdet.memory.budget)")
    budget_b = config.parse_bytes(budget)
    gpus = _check_int("gpus_per_worker", gpus_per_worker, 0)
    if gpus and gpu_memory is None:
        raise InputError(f"gpus_per_worker={gpus} needs gpu_memory (device memory of one GPU, such as '80GB')")
    if not gpus and gpu_memory is not None:
        raise InputError("gpu_memory was given without gpus_per_worker: give both (GPUs per worker, memory of one "
                         "GPU) or neither")
    gpu_b = config.parse_bytes(gpu_memory) if gpus else None
    if block_size is not None:
        block_size = _check_int("block_size", block_size, 1)
    given_rates = _check_rates(rates)
    overhead = config.parse_bytes(config.get("memory.overhead", DEFAULT_OVERHEAD))
    per_task = _check_int("dask config dlogdet.memory.tiles-per-task",
                          config.get("memory.tiles-per-task", DEFAULT_TILES_PER_TASK), 1)
    mode_cfg = config.get("memory.mode", "auto")
    if mode_cfg not in ("auto", "memory", "store"):
        raise InputError(f"dask config 'dlogdet.memory.mode' must be auto, memory or store, got {mode_cfg!r}")
    store_max = config.get("memory.store-max-block-size", None)
    lo = int(config.get("min-block-size", 256))

    slots = gpus if gpus else 1
    task_slots = workers * slots
    smallest = min(lo, n)
    per_slot = per_task * itemsize               # bytes per b² of one slot's working set
    nt_min = max(1, math.ceil(math.sqrt(8 * task_slots)))
    matrix_approx = n * n * itemsize if assume == "gen" else n * (n + 1) // 2 * itemsize

    # the smallest working set must fit, whatever the mode (store mode needs nothing else)
    min_tile = block_size if block_size is not None else smallest
    min_tile = min(min_tile, n)
    need_host = overhead + per_slot * slots * min_tile * min_tile
    tile_words = f"tile{'s' if slots * per_task > 1 else ''}"
    if budget_b < need_host:
        what = f"block_size={min_tile}" if block_size is not None else f"the smallest tile ({min_tile}x{min_tile})"
        fit = math.isqrt(max(budget_b - overhead, 0) // (per_slot * slots))
        alt = f"; or use block_size <= {fit}" if block_size is not None and fit >= smallest else ""
        raise _budget_error("budget per worker", budget_b, need_host,
                            f"the working set of {what}: {slots * per_task} {tile_words} ({per_task} per task x "
                            f"{slots} task slot{'s' if slots > 1 else ''}) + overhead {_human_bytes(overhead)} "
                            f"(dlogdet.memory.overhead){alt}")
    if gpus:
        if block_size is not None and block_size > GPU_MAX_TILE:
            raise InputError(f"block_size={block_size} is too large for a GPU tile: keep it <= {GPU_MAX_TILE} "
                             "(b^2 must stay below 2^31 elements)")
        need_gpu = overhead + per_slot * min_tile * min_tile
        if gpu_b < need_gpu:
            what = f"block_size={min_tile}" if block_size is not None else f"the smallest tile ({min_tile}x{min_tile})"
            raise _budget_error("gpu_memory per GPU", gpu_b, need_gpu,
                                f"the working set of {what}: {per_task} tiles + overhead {_human_bytes(overhead)}")

    caps_auto = []  # limits of an automatic tile beside memory
    if gpus:
        caps_auto.append((math.isqrt((gpu_b - overhead) // per_slot), "GPU memory (gpu_memory)"))
        caps_auto.append((GPU_MAX_TILE, f"GPU tile limit ({GPU_MAX_TILE}: b^2 < 2^31)"))
    warnings: list[str] = []

    def fits(mode: str, b: int) -> bool:
        share = -(-matrix_tile_bytes(n, b, assume, itemsize) // workers) if mode == "memory" else 0
        return overhead + per_slot * slots * b * b + share <= budget_b

    def choose(mode: str) -> tuple[int, str] | None:
        """The tile size in this mode, or None if even the smallest tile does not fit."""
        if block_size is not None:
            b = min(block_size, n)
            return (b, "given (block_size=)") if fits(mode, b) else None
        share = -(-matrix_approx // workers) if mode == "memory" else 0
        avail = budget_b - overhead - share
        cap = math.isqrt(avail // (per_slot * slots)) if avail > 0 else 0
        caps = [(cap, "memory budget" + (" beside the worker's share of the matrix" if share else ""))]
        if mode == "store" and store_max:
            caps.append((int(store_max), f"dlogdet.memory.store-max-block-size = {int(store_max)}"))
        while True:
            c, c_why = min(caps + caps_auto, key=lambda x: x[0])
            if c < smallest:
                return None
            b, why = _auto_block_size(n, c, c_why, nt_min, smallest)
            if fits(mode, b):  # the exact share of a ragged tiling is a little above the estimate
                return b, why
            caps[0] = (b - 1, caps[0][1])

    # mode: the engine's rule (dlogdet.memory.mode), then the share of the matrix must fit beside the working set
    half = 0.5 * budget_b * workers
    if mode_cfg != "auto":
        modes = [mode_cfg]
        reason = f"forced by dask config dlogdet.memory.mode = {mode_cfg}"
    elif matrix_approx <= half:
        modes = ["memory", "store"]
        reason = (f"the matrix ({_human_bytes(matrix_approx)}) takes at most half of the summed budgets "
                  f"({_human_bytes(half)})")
    else:
        modes = ["store"]
        reason = (f"the matrix ({_human_bytes(matrix_approx)}) takes more than half of the summed budgets "
                  f"({_human_bytes(half)}): tiles live in the on-disk tile store")
    chosen = None
    for mode in modes:
        chosen = choose(mode)
        if chosen is not None:
            break
    if chosen is None:  # only memory mode can fail here: the store working set was checked above
        b = min(block_size, n) if block_size is not None else smallest
        share = -(-matrix_tile_bytes(n, b, assume, itemsize) // workers)
        raise _budget_error("budget per worker", budget_b, overhead + per_slot * slots * b * b + share,
                            f"the share of the matrix ({_human_bytes(share)}) beside the working set of a "
                            f"{b}x{b} tile (memory mode forced by dask config dlogdet.memory.mode)")
    b, why = chosen
    if mode == "store" and len(modes) > 1:
        reason = ("the worker's share of the matrix does not fit beside the working set of a task: tiles live "
                  "in the on-disk tile store")

    tiling = Tiling(n, b)
    nt = tiling.nt
    n_tiles = nt * nt if assume == "gen" else tiling.tiles_lower()
    n_tasks = task_count(nt, assume)
    tile_bytes = b * b * itemsize
    working_set = overhead + per_task * slots * tile_bytes
    matrix_bytes = matrix_tile_bytes(n, b, assume, itemsize)
    if mode == "memory":
        share = -(-matrix_bytes // workers)
        resident = -(-n_tiles // workers) + per_task * slots
        peak = working_set + share
        source_reads = matrix_bytes
        store_reads = store_writes = scratch = 0
    else:
        resident = per_task * slots
        peak = working_set
        reads, writes = traffic(n, b, assume, itemsize)
        source_reads = matrix_bytes
        store_reads = reads - source_reads
        store_writes = writes
        panel = (2 * n * b - b * b) if assume == "gen" else n * b
        scratch = matrix_bytes + min(panel, n * n) * itemsize

    flops = flop_count(n, assume)
    r = _resolve_rates(given_rates, calibrate, bool(gpus))
    t_compute = flops / (task_slots * r.gemm_flops)
    t_cp = nt * critical_path_flops(b, assume) / r.gemm_flops
    t_io = (source_reads + store_reads + store_writes) / (workers * r.io_bytes)

    if task_slots > 1 and nt < nt_min:
        warnings.append(f"only {nt} panels: the first trailing update has {nt * (nt - 1) // 2} tasks for "
                        f"{task_slots} task slots, which sit idle for much of the run (a smaller block_size, if "
                        "n allows, or fewer workers)")
    max_tasks = int(config.get("max-tasks", 2_000_000))
    if n_tasks > max_tasks:
        warnings.append(f"{n_tasks} tasks exceed dask config dlogdet.max-tasks = {max_tasks}: the engine refuses "
                        "this graph (give a larger block_size or budget)")
    if mode == "memory" and block_size is None:
        engine_b = auto_block_size(n, workers, itemsize=itemsize, budget=budget_b)
        if engine_b != b:
            warnings.append(f"dlogdet.logdet(..., budget=) picks block_size={engine_b} for an in-memory run "
                            f"(at most dlogdet.max-block-size); pass block_size={b} to run this plan")
    if itemsize == 4 and not gpus and "gemm_flops" not in given_rates:
        warnings.append("the GEMM rate is a float64 rate; float32 runs about twice as fast on CPUs")
    gpu_ws = overhead + per_task * tile_bytes if gpus else None

    p = Plan(n=n, dtype=dt.name, assume=assume, workers=workers, gpus_per_worker=gpus, slots_per_worker=slots,
             budget_bytes=budget_b, gpu_memory_bytes=gpu_b, overhead_bytes=overhead, tiles_per_task=per_task,
             block_size=b, block_size_limited_by=why, n_panels=nt, n_tiles=n_tiles, n_tasks=n_tasks, mode=mode,
             mode_reason=reason, matrix_bytes=matrix_bytes, tile_bytes=tile_bytes,
             resident_tiles_per_worker=resident, working_set_bytes=working_set, peak_bytes_per_worker=peak,
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
    rows: list[tuple[str, str, str]] = [
        ("matrix", f"n = {p.n:,} {p.dtype}", f"assume {p.assume}: {FACTORIZATION[p.assume]}"),
        ("workers", workers, ""),
        ("budget", f"{_human_bytes(p.budget_bytes)} / worker",
         f"incl. overhead {_human_bytes(p.overhead_bytes)} (dlogdet.memory.overhead)"),
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
         f"{p.tiles_per_task} per task x {p.slots_per_worker} slot(s)"
         + (" + the worker's share of the matrix" if p.mode == "memory" else "")),
        ("working set", f"{_human_bytes(p.working_set_bytes)} / worker", "overhead + tiles of the running tasks"),
        ("peak memory", f"{_human_bytes(p.peak_bytes_per_worker)} / worker",
         f"{100 * p.peak_bytes_per_worker / p.budget_bytes:.0f}% of the budget"),
        ("source reads", _human_bytes(p.source_read_bytes), "every input tile once"),
        ("store reads", _human_bytes(p.store_read_bytes), "tile store" if p.mode == "store" else "no tile store"),
        ("store writes", _human_bytes(p.store_write_bytes), ""),
        ("scratch disk", _human_bytes(p.scratch_bytes), "peak: matrix + one panel of factor tiles"
         if p.mode == "store" else ""),
        ("flops", f"{p.flops / 1e12:,.1f} TFLOP" if p.flops >= 1e12 else f"{p.flops / 1e9:,.3f} GFLOP",
         "2n^3/3" if p.assume == "gen" else "n^3/3"),
        ("GEMM rate", f"{p.rates.gemm_flops / 1e9:,.1f} GFLOP/s / task", p.rates.gemm_source),
        ("disk rate", f"{p.rates.io_bytes / 1e9:,.2f} GB/s / worker", p.rates.io_source),
        ("time: compute", human_time(p.time_compute_s), "flops / (task slots x GEMM rate)"),
        ("time: critical path", human_time(p.time_critical_path_s), "panels x (factor + solve + update of a tile)"),
        ("time: I/O", human_time(p.time_io_s), "bytes / (workers x disk rate), not overlapped"),
        ("predicted time", human_time(p.time_total_s), f"{p.time_total_s:,.0f} s"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]
    lines += [f"warning: {w}" for w in p.warnings]
    return "\n".join(lines)
