"""Measuring the time model's rates where the run will happen: the GEMM and disk of this machine
(:func:`calibrate`), the scheduler's and the workers' costs per task and the network between two workers
(:func:`calibrate_cluster`), and, on a running cluster at a run's tile size, the engine's kernels
(:func:`calibrate_tasks`), the cluster's CPU per task (:func:`calibrate_task_cpu`) and the tile store's
(:func:`calibrate_store_cpu`), with the processes' CPU (:class:`CpuMeter`) for cores shared with other jobs.

The model these rates feed is :mod:`dlogdet.runtime.costs` (closed form) and :mod:`dlogdet.runtime.simulate`
(the engine's graph replayed); :func:`dlogdet.runtime.costs.resolve_rates` picks given, measured or configured rates.
"""

from __future__ import annotations

import math
import os
import tempfile
import time

from ..core import config

CALIBRATION_GEMM = 1024            # order of the calibration GEMM
CALIBRATION_FILE = 64 * 2**20      # bytes of the calibration file


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
