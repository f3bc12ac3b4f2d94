"""The planner's time model: closed-form costs of an exact run, and the rates that turn them into seconds.

Counts are exact for a ragged last tile (:func:`matrix_tile_bytes`, :func:`traffic`, :func:`transfer_bytes`) or
leading order (:func:`flop_count`); rates are given, measured here (:func:`calibrate`, :func:`calibrate_cluster`) or
taken from dask config ``dlogdet.plan.*`` (:func:`resolve_rates`). The closed-form model (:func:`times`)::

    flops / (workers · tasks at once · gemm) + nt · (potrf + trsm + syrk of a tile) / gemm + I/O / (workers · io)
      + tile transfers / (workers · network) + tasks · scheduler's cost per task

the work spread over all task slots, plus the critical path (one diagonal factorization, panel solve and diagonal
update per panel, which no number of workers overlaps), plus the disk traffic, the tiles moved between workers and
the scheduler's time, none overlapped with compute (an upper estimate). :mod:`dlogdet.runtime.simulate` replays the
engine's graph with the same rates, overlaps included.
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
DEFAULT_NETWORK_BYTES = 1.25e9   # B/s into one worker: dask's TCP comm (10 GbE line rate; 1-2 GB/s on faster links)
DEFAULT_TASK_SECONDS = 1e-3      # the scheduler's cost per task (dask: "about 1 ms of overhead per task")
DEFAULT_TASK_LATENCY = 1e-3      # a worker's side of a task: messages to and from the scheduler, hand-off
DEFAULT_TRANSFER_LATENCY = 2e-3  # a fetch of a result from another worker besides its bytes: a round trip or two

CALIBRATION_GEMM = 1024            # order of the calibration GEMM
CALIBRATION_FILE = 64 * 2**20      # bytes of the calibration file


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


def _config_rate(key: str, default: float, zero_ok: bool = False) -> float:
    v = config.get(key, default)
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = math.nan
    if not (math.isfinite(f) and (f > 0 or zero_ok and f == 0)):
        raise InputError(f"dask config dlogdet.{key} must be a positive number, got {v!r}")
    return f


def _noop(i):
    return i


def _array(nbytes: int):
    import numpy as np
    return np.ones(nbytes // 8)


def _nbytes(x) -> int:
    return int(x.nbytes)


CALIBRATION_TASKS = 2000          # tiny tasks of the scheduler's calibration graph
CALIBRATION_CHAIN = 200           # tiny dependent tasks of the latency calibration
CALIBRATION_TRANSFER = 64 * 2**20  # bytes moved between two workers


def calibrate_cluster(client=None, *, tasks: int = CALIBRATION_TASKS, chain: int = CALIBRATION_CHAIN,
                      nbytes: int = CALIBRATION_TRANSFER) -> dict[str, tuple[float, str]]:
    """Measure the cluster's rates on ``client`` (None: two local worker processes started here, loopback only, and
    stopped): {"task_seconds", "task_latency", "network_bytes", "transfer_latency": (value, how)}.

    The scheduler's cost per task: a graph of 2000 independent tiny tasks, wall time / tasks (the scheduler handles
    them one at a time, so this is its throughput). A worker's latency per task: a chain of 200 tiny dependent tasks,
    wall time / tasks, less the scheduler's cost. The network: a 64 MiB array made on one worker and read by a task
    pinned to another, best of 3, less a tiny task's round trip. A fetch's latency: a chain of tiny tasks pinned
    alternately to two workers, less the same chain on one worker, per task.
    """
    import time as _t

    if client is None:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as c:
            return calibrate_cluster(c, tasks=tasks, chain=chain, nbytes=nbytes)
    workers = sorted(client.scheduler_info().get("workers", {}))
    client.get({("dlogdet-warm", i): (_noop, i) for i in range(50)}, [("dlogdet-warm", i) for i in range(50)])
    dsk = {("dlogdet-tiny", i): (_noop, i) for i in range(tasks)}
    t0 = _t.perf_counter()
    client.get(dsk, list(dsk))
    per_task = (_t.perf_counter() - t0) / tasks
    links: dict = {("dlogdet-chain", 0): (_noop, 0)}
    for i in range(1, chain):
        links[("dlogdet-chain", i)] = (_noop, ("dlogdet-chain", i - 1))
    t0 = _t.perf_counter()
    client.get(links, ("dlogdet-chain", chain - 1))
    per_link = (_t.perf_counter() - t0) / chain
    latency = max(0.0, per_link - per_task)
    out = {"task_seconds": (per_task, f"measured here: {tasks} tiny tasks on {len(workers)} workers, "
                                      f"{per_task * 1e3:.2f} ms per task"),
           "task_latency": (latency, f"measured here: a chain of {chain} tiny tasks, "
                                     f"{per_link * 1e3:.2f} ms per task less the scheduler's cost")}
    if len(workers) >= 2:
        # a chain of tiny tasks pinned alternately to two workers, against the same chain on one: each hop of the
        # first fetches its input from the other worker
        hops = {}
        for name, ws in (("one", [workers[0]]), ("two", workers[:2])):
            t0 = _t.perf_counter()
            f = client.submit(_noop, 0, workers=[ws[0]], pure=False)
            for i in range(1, chain):
                f = client.submit(_noop, f, workers=[ws[i % len(ws)]], allow_other_workers=False, pure=False)
            f.result()
            hops[name] = (_t.perf_counter() - t0) / chain
        fetch = max(0.0, hops["two"] - hops["one"])
        out["transfer_latency"] = (fetch, f"measured here: a chain of {chain} tiny tasks alternating between two "
                                          f"workers, {hops['two'] * 1e3:.2f} ms per task against "
                                          f"{hops['one'] * 1e3:.2f} on one")
        best = math.inf
        for _ in range(3):
            src = client.submit(_array, nbytes, workers=[workers[0]], pure=False)
            # made and read where it was made: nothing moves yet
            client.submit(_nbytes, src, workers=[workers[0]], allow_other_workers=False, pure=False).result()
            t0 = _t.perf_counter()
            client.submit(_nbytes, src, workers=[workers[1]], allow_other_workers=False, pure=False).result()
            best = min(best, _t.perf_counter() - t0)
            del src
        moved = max(best - per_link, 1e-9)
        out["network_bytes"] = (nbytes / moved, f"measured here: {nbytes / 2**20:g} MiB between two workers in "
                                                f"{best * 1e3:.0f} ms")
    return out


#: Task kinds whose flop rate task_rates_here measures, and their flops for a b×b tile (the simulation's counts).
KIND_FLOPS = {"potrf": 1 / 3, "trsm": 1.0, "syrk": 1.0, "gemm": 2.0}


def task_rates_here(b: int, source=None, scratch: str | None = None, rounds: int = 3,
                    min_seconds: float = 0.25) -> dict[str, float]:
    """What one task slot does here, median of ``rounds``, each kernel repeated for at least ``min_seconds`` (a
    sustained rate: on a shared machine a single short kernel after a pause runs faster than a steady stream of
    them, by about 15% measured here at load 5), with the engine's own kernels on one BLAS thread (its tasks run on
    one): ``gemm_flops`` of a b×b trailing update, ``potrf_flops``, ``trsm_flops``, ``syrk_flops`` of the
    factor, panel solve and diagonal update of a b×b tile (flops as :data:`KIND_FLOPS` counts them);
    ``load_bytes`` of producing a b×b input tile from ``source`` and checking it as the engine loads it;
    ``io_bytes`` of saving and loading a b×b tile in a tile store under ``scratch``; ``core_share``, the share of
    a core the kernels' thread had while they were timed (its CPU time over their wall time: below 1 when other
    processes took turns on its core), so that rate / core_share is the kernel's rate on a core of its own."""
    import shutil
    import statistics

    import numpy as np
    from threadpoolctl import threadpool_limits

    from ..engine.store import TileStore
    from ..linalg import kernels as K

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((b, b)), rng.standard_normal((b, b))
    spd = x @ x.T / b + np.eye(b)
    got: dict[str, list[float]] = {"gemm_flops": [], "potrf_flops": [], "trsm_flops": [], "syrk_flops": [],
                                   "load_bytes": [], "io_bytes": []}
    root = tempfile.mkdtemp(prefix="dlogdet-rate-", dir=scratch) if scratch else None

    cpu = {"wall": 0.0, "cpu": 0.0}

    def timed(f, *args):
        """The result of f(*args) and the seconds of one call, over repeated calls for at least min_seconds."""
        t0, c0 = time.perf_counter(), time.thread_time()
        calls = 0
        while True:
            out = f(*args)
            calls += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds:
                cpu["wall"] += elapsed
                cpu["cpu"] += time.thread_time() - c0
                return out, elapsed / calls

    try:
        with threadpool_limits(limits=1, user_api="blas"):
            K.update(spd, x, y)   # warm-up
            for i in range(rounds):
                factor, t = timed(K.potrf, spd)
                got["potrf_flops"].append(KIND_FLOPS["potrf"] * b ** 3 / t)
                panel, t = timed(K.trsm, factor, x)
                got["trsm_flops"].append(KIND_FLOPS["trsm"] * b ** 3 / t)
                _, t = timed(K.update, spd, panel, panel)
                got["syrk_flops"].append(KIND_FLOPS["syrk"] * b ** 3 / t)
                _, t = timed(K.update, spd, x, y)
                got["gemm_flops"].append(KIND_FLOPS["gemm"] * b ** 3 / t)
                if source is not None:
                    r0, c0 = min(b, source.n - b), 0
                    t0 = time.perf_counter()
                    tile = source.tile(r0, r0 + b, c0, c0 + b)
                    K.prepare_tile(tile, r0=r0, c0=c0, check_finite=True, tile_index=(1, 0))
                    got["load_bytes"].append(tile.nbytes / (time.perf_counter() - t0))
                if root is not None:
                    store = TileStore(root)
                    t0 = time.perf_counter()
                    store.save(f"t{i}.npy", x)
                    store.load(f"t{i}.npy")
                    got["io_bytes"].append(2 * x.nbytes / (time.perf_counter() - t0))
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    out = {k: statistics.median(v) for k, v in got.items() if v}
    out["core_share"] = min(1.0, cpu["cpu"] / cpu["wall"]) if cpu["wall"] > 0 else 1.0
    return out


def calibrate_tasks(client, b: int, source=None, scratch: str | None = None, rounds: int = 3,
                    min_seconds: float = 0.25) -> dict[str, tuple[float, str]]:
    """:func:`task_rates_here` on every worker of ``client`` at once (so the rates are those of a task while all
    workers are busy, on cores they may share), median over workers: {name: (rate, how)}."""
    import statistics

    per_worker = list(client.run(task_rates_here, b, source, scratch, rounds, min_seconds).values())
    how = {"gemm_flops": f"measured on {len(per_worker)} workers at once: {b}x{b} float64 GEMM on 1 BLAS thread",
           "potrf_flops": f"measured on the workers: Cholesky of a {b}x{b} tile",
           "trsm_flops": f"measured on the workers: a {b}x{b} panel solve",
           "syrk_flops": f"measured on the workers: a {b}x{b} diagonal update",
           "load_bytes": f"measured on the workers: a {b}x{b} tile from the source, checked",
           "io_bytes": f"measured on the workers: a {b}x{b} tile saved and loaded in the tile store",
           "core_share": "measured on the workers: CPU time of the kernels' thread over their wall time"}
    return {k: (statistics.median(w[k] for w in per_worker), how[k]) for k in per_worker[0]}


def cluster_pids(client) -> list[int]:
    """Process ids of a local cluster's workers and nannies, and of this process (the client, and the scheduler of
    a ``LocalCluster``): the processes whose CPU time is the run's."""
    import os as _os

    pids = {_os.getpid()}
    for nanny in (False, True):
        try:
            pids.update(client.run(_os.getpid, nanny=nanny).values())
        except Exception:   # workers without nannies
            pass
    return sorted(pids)


class CpuMeter:
    """CPU time spent on this machine while a block of code runs: by every process (the machine's busy time) and by
    the processes ``pids`` (a local cluster's, :func:`cluster_pids`); ``background`` is the rest, in cores: the load
    that other processes put on the cores the cluster shares (what :func:`dlogdet.runtime.simulate.replay` leaves
    out of ``cores``).

    ``with CpuMeter(pids) as m: ...`` then ``m.wall``, ``m.busy``, ``m.ours`` (seconds of CPU), ``m.background``.
    """

    def __init__(self, pids):
        self.pids = list(pids)
        self.wall = self.busy = self.ours = 0.0

    @staticmethod
    def _machine() -> float:
        import psutil

        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)

    def _ours(self) -> float:
        import psutil

        total = 0.0
        for pid in self.pids:
            try:
                c = psutil.Process(pid).cpu_times()
            except psutil.Error:     # gone: its time no longer counts on either side
                continue
            total += c.user + c.system
        return total

    def __enter__(self) -> "CpuMeter":
        self._t0, self._m0, self._o0 = time.perf_counter(), self._machine(), self._ours()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        self.busy = self._machine() - self._m0
        self.ours = self._ours() - self._o0

    @property
    def background(self) -> float:
        """Cores that other processes kept busy on average (0 when the machine ran only the cluster)."""
        return max(0.0, self.busy - self.ours) / self.wall if self.wall > 0 else 0.0


def _tile_task(x, b: int):
    """A calibration task: a fresh b×b tile from its input (or from nothing), and its thread's CPU seconds."""
    import numpy as np

    c0 = time.thread_time()
    out = np.add(x[0], 1.0) if x is not None else np.ones((b, b))
    return out, time.thread_time() - c0


def _tile_cpu(x) -> float:
    return x[1]


def calibrate_task_cpu(client, b: int, pids, per_worker: int = 12) -> tuple[float, str]:
    """The CPU seconds a local cluster's processes (``pids``: :func:`cluster_pids`) spend per task besides the
    task's own thread, measured in a graph: a chain of ``per_worker`` tasks on each worker at once, each making a
    b×b tile from the previous one (a result held, handed on and released, as the engine's tiles are). Less the
    scheduler's cost per task and the worker's latency, which the simulation charges apart (``task_seconds``,
    ``task_latency``), this is :class:`dlogdet.runtime.simulate.SimRates`' ``task_cpu``; here the whole of it."""
    workers = sorted(client.scheduler_info().get("workers", {}))
    with CpuMeter(pids) as m:
        ends = []
        for w in workers:
            f = None
            for _ in range(per_worker):
                f = client.submit(_tile_task, f, b, workers=[w], allow_other_workers=False, pure=False)
                ends.append(client.submit(_tile_cpu, f, workers=[w], allow_other_workers=False, pure=False))
        own = sum(client.gather(ends))
        del ends, f
    tasks = 2 * per_worker * len(workers)           # each tile task and the task reading its CPU time
    per_task = max(0.0, m.ours - own) / tasks
    return per_task, (f"measured here: {tasks} tasks of {b}x{b} tiles on {len(workers)} workers, "
                      f"{per_task * 1e3:.1f} ms of the cluster's CPU per task besides the task's own")


def _store_seed(root: str, names: tuple[str, ...], b: int) -> int:
    """Write the first tiles of a store calibration chain (outside the measured graph)."""
    import numpy as np

    from ..engine.store import TileStore

    store = TileStore(root)
    x = np.random.default_rng(len(names)).standard_normal((b, b))
    for name in names:
        store.save(name, x)
    return len(names)


def _store_task(root: str, name_in: str, panel: str, name_out: str, *after) -> tuple[float, float]:
    """One store task without its kernel: read its tile and a panel tile from the store, write its output (the
    tile read), log it, delete its input, as ``dlogdet.engine.store.run_task`` does; its thread's CPU seconds and its
    wall seconds."""
    from ..engine.store import TileStore

    store = TileStore(root)
    c0, t0 = time.thread_time(), time.perf_counter()
    c, p = store.load(name_in), store.load(panel)
    store.save(name_out, c)
    del c, p
    store.log_computed(name_out)
    store.delete(name_in)
    return time.thread_time() - c0, time.perf_counter() - t0


def calibrate_store_cpu(client, b: int, pids, scratch: str | None = None, task_cpu: float = 0.0,
                        per_worker: int | None = None) -> tuple[float, float, str]:
    """The tile store's rate on a core of its own as a running factorization uses it, measured in a graph: on
    every worker at once, a chain of ``per_worker`` store tasks (default: about 0.25 GB of store traffic per worker,
    at least 8 tasks), each reading its b×b tile and a panel tile, writing its output, logging it and deleting its
    input (``dlogdet.engine.store.run_task`` less its kernel) in a tile store under ``scratch``. The store's CPU is
    the CPU time of the cluster's processes (``pids``: :func:`cluster_pids`) during the graph less ``task_cpu``
    per task (the cluster's CPU per task besides the task's own thread, :func:`calibrate_task_cpu`, which the
    simulation charges apart), and at least the tasks' own threads' CPU time.

    Returns (bytes per CPU second: :class:`dlogdet.runtime.simulate.SimRates`' ``io_bytes`` on shared cores,
    bytes per CPU second of the tasks' own threads, how)."""
    import shutil

    workers = sorted(client.scheduler_info().get("workers", {}))
    tile = 8 * b * b
    per_task = 3 * tile                                   # two tiles read, one written
    if per_worker is None:
        per_worker = max(8, min(40, math.ceil(2.5e8 / per_task)))
    root = tempfile.mkdtemp(prefix="dlogdet-storecal-", dir=scratch)
    try:
        seeds = [client.submit(_store_seed, root, (f"p{i}.npy", f"c{i}-0.npy"), b, workers=[w],
                               allow_other_workers=False, pure=False) for i, w in enumerate(workers)]
        client.gather(seeds)
        del seeds
        with CpuMeter(pids) as m:
            ends = []
            for i, w in enumerate(workers):
                f = None
                for k in range(per_worker):
                    args = (root, f"c{i}-{k}.npy", f"p{i}.npy", f"c{i}-{k + 1}.npy") + ((f,) if f is not None else ())
                    f = client.submit(_store_task, *args, workers=[w], allow_other_workers=False, pure=False)
                    ends.append(f)
            got = client.gather(ends)
            own, wall = sum(g[0] for g in got), sum(g[1] for g in got)
            del ends, f
    finally:
        shutil.rmtree(root, ignore_errors=True)
    tasks = per_worker * len(workers)
    moved = tasks * per_task
    store_cpu = max(own, m.ours - tasks * task_cpu)
    rate = moved / store_cpu if store_cpu > 0 else math.inf
    own_rate = moved / own if own > 0 else math.inf
    return rate, own_rate, (f"measured here: {tasks} store tasks of {b}x{b} tiles on {len(workers)} workers "
                            f"({moved / 1e9:.2f} GB read and written), {store_cpu:.2f} s of the cluster's CPU "
                            f"besides {task_cpu * 1e3:.1f} ms per task ({own:.2f} s in the tasks' own threads, "
                            f"{wall:.2f} s of their wall time): "
                            f"{rate / 1e9:.2f} GB/s per core")


def resolve_rates(given: dict[str, float], do_calibrate: bool, gpu: bool,
                  cluster: dict[str, tuple[float, str]] | None = None) -> Rates:
    """The rates of a plan: given ones, else measured (``do_calibrate``: GEMM and disk here; ``cluster``: what
    :func:`calibrate_cluster` measured), else dask config ``dlogdet.plan.*``."""
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
