"""The planner's time model: closed-form costs of an exact run, and the rates that turn them into seconds.

Counts are exact for a ragged last tile (:func:`matrix_tile_bytes`, :func:`traffic`) or leading order
(:func:`flop_count`); rates are given, measured here (:func:`calibrate`) or taken from dask config
``dlogdet.plan.*`` (:func:`resolve_rates`). The model (:func:`times`)::

    flops / (workers · tasks at once · gemm) + nt · (potrf + trsm + syrk of a tile) / gemm + I/O / (workers · io)

the work spread over all task slots, plus the critical path (one diagonal factorization, panel solve and diagonal
update per panel, which no number of workers overlaps), plus the disk traffic, not overlapped with compute (an
upper estimate: the engine prefetches).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Mapping

from ..core import config
from ..core.errors import InputError

# Defaults of the rates, used when dask config has no value (the keys and the reasons for these values are in
# dlogdet.yaml: dlogdet.plan.*).
DEFAULT_GEMM_FLOPS = 50e9        # float64 flop/s of one CPU task (one core, AVX2/AVX-512 DGEMM: 40-70 GFLOP/s)
DEFAULT_GPU_GEMM_FLOPS = 20e12   # float64 flop/s of one GPU (A100: 19.5 TFLOP/s FP64 tensor; H100: 67)
DEFAULT_IO_BYTES = 1e9           # B/s of one worker's scratch disk (a local NVMe SSD; a parallel file system share)

CALIBRATION_GEMM = 1024            # order of the calibration GEMM
CALIBRATION_FILE = 64 * 2**20      # bytes of the calibration file


@dataclass(frozen=True)
class Rates:
    """Rates of the time model and where each came from ("given", "measured here: ...", "default (...)")."""

    gemm_flops: float
    io_bytes: float
    gemm_source: str
    io_source: str


# ------------------------------------------------------------------------------------------------ rates


def check_rates(rates) -> dict[str, float]:
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


def resolve_rates(given: dict[str, float], do_calibrate: bool, gpu: bool) -> Rates:
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


def times(flops: float, nt: int, b: int, assume: str, bytes_moved: int, workers: int, at_once: int,
          rates: Rates) -> tuple[float, float, float]:
    """(compute, critical path, I/O) seconds of the model (module doc)."""
    return (flops / (workers * at_once * rates.gemm_flops), nt * critical_path_flops(b, assume) / rates.gemm_flops,
            bytes_moved / (workers * rates.io_bytes))


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
