"""The planner's time model: closed-form costs of an exact run, and the rates that turn them into seconds.

Counts are exact for a ragged last tile (:func:`matrix_tile_bytes`, :func:`traffic`, :func:`transfer_bytes`) or
leading order (:func:`flop_count`); rates are given, measured here (:mod:`dlogdet.runtime.calibrate`) or taken from
dask config ``dlogdet.plan.*`` (:func:`resolve_rates`). The closed-form model (:func:`times`)::

    flops / (workers · tasks at once · gemm) + nt · (potrf + trsm + syrk of a tile) / gemm + I/O / (workers · io)
      + tile transfers / (workers · network) + tasks · scheduler's cost per task

the work spread over all task slots, plus the critical path (one diagonal factorization, panel solve and diagonal
update per panel, which no number of workers overlaps), plus the disk traffic, the tiles moved between workers and
the scheduler's time, none overlapped with compute (an upper estimate). :mod:`dlogdet.runtime.simulate` replays the
engine's graph with the same rates, overlaps included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from ..core import config
from ..core.errors import InputError
from .calibrate import calibrate

# Defaults of the rates, used when dask config has no value (the keys and the reasons for these values are in
# dlogdet.yaml: dlogdet.plan.*).
DEFAULT_GEMM_FLOPS = 50e9        # float64 flop/s of one CPU task (one core, AVX2/AVX-512 DGEMM: 40-70 GFLOP/s)
DEFAULT_GPU_GEMM_FLOPS = 20e12   # float64 flop/s of one GPU (A100: 19.5 TFLOP/s FP64 tensor; H100: 67)
DEFAULT_IO_BYTES = 1e9           # B/s of one worker's scratch disk (a local NVMe SSD; a parallel file system share)
DEFAULT_NETWORK_BYTES = 1.25e9   # B/s into one worker: dask's TCP comm (10 GbE line rate; 1-2 GB/s on faster links)
DEFAULT_TASK_SECONDS = 1e-3      # the scheduler's cost per task (dask: "about 1 ms of overhead per task")
DEFAULT_TASK_LATENCY = 1e-3      # a worker's side of a task: messages to and from the scheduler, hand-off
DEFAULT_TRANSFER_LATENCY = 2e-3  # a fetch of a result from another worker besides its bytes: a round trip or two



RATE_NAMES = {
    "gemm_flops": "flop/s of one task slot",
    "io_bytes": "disk bytes/s of one worker",
    "network_bytes": "bytes/s into one worker from the others",
    "task_seconds": "the scheduler's seconds per task",
    "task_latency": "a worker's seconds per task besides its work",
    "transfer_latency": "seconds of a fetch from another worker besides its bytes",
}


@dataclass(frozen=True)
class Rates:
    """Rates of the time model and where each came from ("given", "measured here: ...", "default (...)")."""

    gemm_flops: float
    io_bytes: float
    gemm_source: str
    io_source: str
    network_bytes: float = DEFAULT_NETWORK_BYTES
    task_seconds: float = DEFAULT_TASK_SECONDS
    task_latency: float = DEFAULT_TASK_LATENCY
    network_source: str = "default"
    task_source: str = "default"
    transfer_latency: float = DEFAULT_TRANSFER_LATENCY


# ------------------------------------------------------------------------------------------------ rates


def check_rates(rates) -> dict[str, float]:
    if rates is None:
        return {}
    if not isinstance(rates, Mapping):
        raise InputError(f"rates must be a dict such as {{'gemm_flops': 5e10, 'io_bytes': 1e9}}, got {rates!r}")
    unknown = set(rates) - set(RATE_NAMES)
    if unknown:
        raise InputError(f"unknown rates {sorted(unknown)}: give any of "
                         + ", ".join(f"{k} ({v})" for k, v in RATE_NAMES.items()))
    out = {}
    for k, v in rates.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        if not (math.isfinite(f) and (f > 0 or f == 0 and k in ("task_seconds", "task_latency", "transfer_latency"))):
            raise InputError(f"rates[{k!r}] must be a positive number{' or 0' if 'latency' in k or 'task' in k else ''}, "
                             f"got {v!r}")
        out[k] = f
    return out


def _config_rate(key: str, default: float, zero_ok: bool = False) -> float:
    v = config.get(key, default)
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = math.nan
    if not (math.isfinite(f) and (f > 0 or zero_ok and f == 0)):
        raise InputError(f"dask config dlogdet.{key} must be a positive number, got {v!r}")
    return f


def resolve_rates(given: dict[str, float], do_calibrate: bool, gpu: bool,
                  cluster: dict[str, tuple[float, str]] | None = None) -> Rates:
    """The rates of a plan: given ones, else measured (``do_calibrate``: GEMM and disk here; ``cluster``: what
    :func:`~dlogdet.runtime.calibrate.calibrate_cluster` measured), else dask config ``dlogdet.plan.*``."""
    measured = calibrate() if do_calibrate else {}
    measured.update(cluster or {})
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
    out: dict[str, tuple[float, str]] = {}
    for name, key, default in (("io_bytes", "plan.io-bytes", DEFAULT_IO_BYTES),
                               ("network_bytes", "plan.network-bytes", DEFAULT_NETWORK_BYTES),
                               ("task_seconds", "plan.task-seconds", DEFAULT_TASK_SECONDS),
                               ("task_latency", "plan.task-latency", DEFAULT_TASK_LATENCY),
                               ("transfer_latency", "plan.transfer-latency", DEFAULT_TRANSFER_LATENCY)):
        if name in given:
            out[name] = (given[name], "given (rates=)")
        elif name in measured:
            out[name] = measured[name]
        else:
            out[name] = (_config_rate(key, default, zero_ok="latency" in name or name.startswith("task")),
                         f"default (dask config dlogdet.{key})")
    task_src = out["task_seconds"][1] + "; latency " + out["task_latency"][1]
    return Rates(float(gemm), float(out["io_bytes"][0]), gsrc, out["io_bytes"][1],
                 network_bytes=float(out["network_bytes"][0]), task_seconds=float(out["task_seconds"][0]),
                 task_latency=float(out["task_latency"][0]), network_source=out["network_bytes"][1],
                 transfer_latency=float(out["transfer_latency"][0]),
                 task_source=task_src)


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


def _count(lo: int, hi: int, m: int) -> int:
    """|{x mod m : lo <= x < hi}|."""
    return max(0, min(m, hi - lo))


def _has(x: int, lo: int, hi: int, m: int) -> bool:
    """x mod m ∈ {y mod m : lo <= y < hi}."""
    return hi > lo and (hi - lo >= m or (x - lo) % m < hi - lo)


def transfer_bytes(n: int, b: int, assume: str, itemsize: int, workers: int) -> int:
    """Bytes of tiles moved between workers by a run in worker memory under the engine's 2-D block-cyclic placement
    (:class:`dlogdet.engine.placement.BlockCyclic`, tile (i, j) on grid cell (i mod pr, j mod pc)): each factor and
    panel tile is copied once to every other worker that runs a task reading it (a copy stays where it was fetched);
    the trailing matrix does not move (every update of a tile runs on its owner); input tiles are read from the
    source where they are used. O(nt²) arithmetic on residues.

    Step k: the factor (k, k) goes to the owners of the panel solves (i, k), i > k (and (k, j) for LU); panel tile
    (i, k) to the owners of the updates that read it: (i, j), k < j ≤ i, and (j, i), j > i (LU: row i of the
    trailing square; row-panel tile (k, j): column j). Out of core, tiles travel through the tile store: 0 here.
    """
    if workers <= 1:
        return 0
    import numpy as np

    from ..engine.placement import BlockCyclic

    grid = BlockCyclic(list(range(workers)))
    pr, pc = grid.pr, grid.pc
    nt, r = _sizes(n, b)
    gen = assume == "gen"
    total = 0
    for k in range(nt):
        sk = b if k < nt - 1 else r
        kr, kc = k % pr, k % pc
        rows = _count(k + 1, nt, pr)                     # grid rows of the tiles below (k, k)
        if gen:
            cols = _count(k + 1, nt, pc)
            in_r, in_c = _has(kr, k + 1, nt, pr), _has(kc, k + 1, nt, pc)
            total += (rows + cols - (in_r and in_c) - (in_r or in_c)) * sk * sk
        else:
            total += (rows - _has(kr, k + 1, nt, pr)) * sk * sk
        if k == nt - 1:
            continue
        i = np.arange(k + 1, nt)
        si = np.where(i < nt - 1, b, r)
        ir, ic = i % pr, i % pc
        if gen:
            # L_ik to row i of the trailing square, U_ki to its column i; each less its own cell
            moved = np.full(i.shape, _count(k + 1, nt, pc) - _has(kc, k + 1, nt, pc)
                            + _count(k + 1, nt, pr) - _has(kr, k + 1, nt, pr))
        else:
            span1, span2 = i - k, nt - 1 - i         # row i: updates (i, j), k < j <= i; column i: (j, i), j > i
            c1, r2 = np.minimum(pc, span1), np.minimum(pr, span2)
            in1 = (span1 >= pc) | ((ic - (k + 1)) % pc < span1)          # cell (ir, ic) among row i's
            in2 = (span2 > 0) & ((span2 >= pr) | ((ir - (i + 1)) % pr < span2))
            home = (span1 >= pc) | ((kc - (k + 1)) % pc < span1) | ((ic == kc) & in2)
            moved = c1 + r2 - (in1 & in2) - home
        total += int(np.sum(moved * si)) * sk
    return total * itemsize


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


def times(flops: float, nt: int, b: int, assume: str, bytes_moved: int, workers: int, at_once: int,
          rates: Rates, network: int = 0, tasks: int = 0) -> tuple[float, float, float, float, float]:
    """(compute, critical path, I/O, transfers, scheduler) seconds of the closed-form model (module doc)."""
    return (flops / (workers * at_once * rates.gemm_flops), nt * critical_path_flops(b, assume) / rates.gemm_flops,
            bytes_moved / (workers * rates.io_bytes), network / (workers * rates.network_bytes),
            tasks * rates.task_seconds)


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
