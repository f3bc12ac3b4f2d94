"""Where graphs run: the active distributed client, one given, or dask's threaded scheduler in this process.

``client=None`` means: the active ``distributed`` client if there is one (``distributed.default_client()``),
otherwise dask's threaded scheduler in this process with ``dlogdet.local.workers`` threads (default: all cores)
and BLAS pinned to one thread per task, so that tasks, not BLAS threads, share the cores.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..core import config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """Panel-level progress of a factorization (what progress bars show)."""

    panels_done: int
    panels_total: int
    tiles_done: int
    tiles_total: int
    work_fraction: float
    elapsed: float

    @property
    def eta(self) -> float | None:
        """Seconds left, from the flops still to do (panels late in the factorization are cheaper)."""
        f = self.work_fraction
        if f <= 0:
            return None
        return self.elapsed * (1.0 - f) / f


ProgressCallback = Callable[[Progress], None]


def active_client(client=None):
    """``client`` if given, else the active distributed client, else None (the in-process scheduler)."""
    if client is not None:
        return client
    try:
        from distributed import default_client
        return default_client()
    except (ImportError, ValueError):
        return None


def n_workers(client) -> int:
    """Workers the graph will run on (threads of the local scheduler without a client)."""
    if client is None:
        return int(config.get("local.workers") or os.cpu_count() or 1)
    info = client.scheduler_info()
    return max(1, len(info.get("workers", {})))


@dataclass
class RunStats:
    wall_time: float
    peak_managed_bytes: dict
    peak_rss_bytes: dict
    scheduler: str
    memory: dict = field(default_factory=dict)
    timeline: dict = field(default_factory=dict)  # panels done and memory over time (dlogdet.runtime.timeline)


def _progress_for(done: int, nt: int, tiles_total: int, t0: float):
    from ..engine.schedule import panel_work_fraction
    left = nt - done  # the trailing matrix still to factor: left² tiles (general) or left(left+1)/2 (lower)
    tiles_done = tiles_total - (left * left if tiles_total == nt * nt and nt > 1 else left * (left + 1) // 2)
    return Progress(done, nt, tiles_done, tiles_total, panel_work_fraction(nt, done), time.perf_counter() - t0)


def execute(dsk: dict, out_key, panel_keys: list, *, client=None, progress: ProgressCallback | None = None,
            tiles_total: int = 0, run: str | None = None, task_bytes: dict[str, int] | None = None,
            release: list = (), budget: int | None = None, watch: MemoryWatch | None = None
            ) -> tuple[Any, RunStats]:
    """Compute ``out_key`` of ``dsk`` and report progress as panels finish.

    On a cluster, ``task_bytes`` (working-set bytes per task kind) is annotated on every task of run ``run`` for
    the memory accounting of :mod:`dlogdet.runtime.budget`. Futures in ``release`` (data the graph was built on) are
    released as soon as the graph is submitted: the scheduler then frees each piece after its last consumer
    instead of holding it to the end. ``budget`` (bytes per worker) is announced to the scheduler with the run
    (the dashboard page draws it); ``watch`` (:class:`MemoryWatch`, with what the run holds per worker) turns a
    worker lost to memory into a :class:`~dlogdet.core.errors.WorkerMemoryError`. Returns the value of ``out_key`` and
    run statistics (wall time, peak memory per worker where known, and a compact timeline of panels done and
    memory per worker).
    """
    client = active_client(client)
    if client is None:
        return _execute_local(dsk, out_key, panel_keys, progress, tiles_total)
    return _execute_distributed(client, dsk, out_key, panel_keys, progress, tiles_total, run, task_bytes, release,
                                budget, watch)


def _execute_local(dsk, out_key, panel_keys, progress, tiles_total):
    from concurrent.futures import ThreadPoolExecutor

    import dask.threaded
    import psutil
    from dask.callbacks import Callback
    from threadpoolctl import threadpool_limits

    from .timeline import Timeline

    nt = len(panel_keys)
    pset = set(panel_keys)
    done = [0]
    t0 = time.perf_counter()
    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    stop = threading.Event()
    timeline = Timeline()
    timeline.progress(0.0, 0)
    interval = float(config.get("progress-interval", 0.25))

    def sample():
        last = -interval
        while not stop.wait(0.05):
            rss = proc.memory_info().rss
            peak[0] = max(peak[0], rss)
            now = time.perf_counter() - t0
            if now - last >= interval:
                timeline.sample("local", now, rss)
                last = now

    def posttask(key, result, dsk_, state, worker_id):
        if key in pset:
            done[0] += 1
            timeline.progress(time.perf_counter() - t0, done[0])
            if progress is not None:
                progress(_progress_for(done[0], nt, tiles_total, t0))

    workers = n_workers(None)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    # our own pool, shut down (running tasks awaited, queued ones cancelled) before BLAS is unpinned: when a task
    # or a progress callback raises, dask returns while other tasks still run, and those would go on writing the
    # tile store after the call returned, with multi-threaded BLAS (other rounding than a resumed run's)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="dlogdet")
    try:
        with threadpool_limits(limits=1, user_api="blas"), Callback(posttask=posttask):
            try:
                value = dask.threaded.get(dsk, out_key, num_workers=workers, pool=pool)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        stop.set()
        th.join()
    wall = time.perf_counter() - t0
    timeline.sample("local", wall, peak[0])
    return value, RunStats(wall, {}, {"local": peak[0]}, f"threads ({workers})", timeline=timeline.to_dict())


#: Seconds a failed run waits for a nanny's restart-for-memory event before it reports the failure as it came.
RESTART_EVENT_WAIT = 2.0


def _lost_data(e: BaseException) -> bool:
    """A failure by lost data or a killed worker (what a worker lost to memory looks like), not by a task's error."""
    import asyncio
    import concurrent.futures

    from distributed import KilledWorker

    return isinstance(e, (asyncio.CancelledError, concurrent.futures.CancelledError, KilledWorker))


class MemoryWatch:
    """Workers lost to memory during a run, from the samples of its progress loop.

    A worker that its nanny restarted for memory (the scheduler's ``worker-restart-memory`` event: direct
    evidence), whose address vanishes after it was seen at or above dask's pause threshold
    (``distributed.worker.memory.pause`` × its limit), or that stays paused, was out of memory. The run then ends
    with :class:`~dlogdet.core.errors.WorkerMemoryError` instead of waiting for data dask lost with the worker (a hang)
    or a bare ``FutureCancelledError``: at once when the run fails, and after ``grace`` seconds without a
    finished panel otherwise (dask may recompute what it lost, and a run that goes on is not interrupted).
    """

    def __init__(self, needed: int | None = None, mode: str | None = None, grace: float = 30.0):
        import dask
        self.pause = float(dask.config.get("distributed.worker.memory.pause", 0.8) or 0.8)
        self.needed, self.mode, self.grace = needed, mode, grace
        self.workers: dict[str, dict] = {}      # addr -> name, limit, peak memory, paused since
        self.seen: dict[str, dict] = {}         # every worker seen during the run, also those gone
        self.vanished: set[str] = set()         # gone without evidence of memory (yet)
        self.since = time.time()                # the run's start, on the scheduler's events' clock
        self.lost: list[dict] = []
        self.lost_at: float | None = None
        self.progress_at = time.perf_counter()
        self.longest_panel = 0.0

    def observe(self, workers: dict) -> None:
        now = time.perf_counter()
        for addr, w in workers.items():
            rec = self.workers.setdefault(addr, {"name": w.get("name", addr), "limit": int(w.get("memory_limit") or 0),
                                                 "peak": 0, "paused_since": None, "addr": addr})
            self.seen[addr] = rec
            rec["peak"] = max(rec["peak"], int(w.get("metrics", {}).get("memory") or 0))
            if w.get("status") == "paused":
                rec["paused_since"] = rec["paused_since"] or now
            else:
                rec["paused_since"] = None
        for addr in set(self.workers) - set(workers):
            rec = self.workers.pop(addr)
            if rec["limit"] and (rec["peak"] >= self.pause * rec["limit"] or rec["paused_since"]):
                self._lose(rec, now)
            else:
                self.vanished.add(addr)

    def restarted(self, events) -> None:
        """The nannies' ``worker-restart-memory`` events ``[(time, {"worker", "rss", ...}), ...]``: each restart
        since the run began is a worker lost to memory (its memory then: the event's RSS)."""
        for t, e in events:
            addr = e.get("worker") if isinstance(e, dict) else None
            if t < self.since or addr is None or any(r.get("addr") == addr for r in self.lost):
                continue
            rec = self.seen.get(addr) or {"name": addr, "limit": 0, "peak": 0, "paused_since": None}
            rec["peak"] = max(rec["peak"], int(e.get("rss") or 0))
            self.vanished.discard(addr)
            self._lose(rec, time.perf_counter())

    def _lose(self, rec: dict, now: float) -> None:
        self.lost.append(rec)
        self.lost_at = self.lost_at or now

    def progressed(self) -> None:
        now = time.perf_counter()
        self.longest_panel = max(self.longest_panel, now - self.progress_at)
        self.progress_at = now

    def stuck(self) -> bool:
        """Lost to memory and no panel since, or every worker paused as long: for ``grace`` seconds or three times
        the longest wait for a panel so far, whichever is longer."""
        now = time.perf_counter()
        grace = max(self.grace, 3.0 * self.longest_panel)
        if self.lost and now - max(self.lost_at or now, self.progress_at) > grace:
            return True
        paused = [w["paused_since"] for w in self.workers.values()]
        return bool(paused) and all(p is not None and now - max(p, self.progress_at) > grace for p in paused)

    def error(self):
        """The :class:`~dlogdet.core.errors.WorkerMemoryError` that says what happened, or None if nothing did."""
        from ..core.errors import WorkerMemoryError

        if self.lost:
            w = self.lost[0]
            what = (f"worker {w['name']} (memory limit {w['limit'] / 2**20:.0f} MiB; last seen using "
                    f"{w['peak'] / 2**20:.0f} MiB) was restarted by its nanny")
        else:
            paused = [w for w in self.workers.values() if w["paused_since"]]
            if not paused:
                return None
            w = paused[0]
            what = (f"worker {w['name']} (memory limit {w['limit'] / 2**20:.0f} MiB) stayed paused by dask at "
                    f"{w['peak'] / 2**20:.0f} MiB")
        held = (f"; the run holds about {self.needed / 2**20:.0f} MiB of tiles per worker"
                + (" (in memory mode: its share of the matrix)" if self.mode == "memory" else "")
                if self.needed else "")
        return WorkerMemoryError(
            f"{what}{held}, more than the worker can hold beside its own memory. Fix: leave budget= unset (the "
            f"default 'auto' follows the workers' limits; dask config dlogdet.memory.budget must not be null), give a "
            f"smaller budget=, or start workers with more memory", needed=self.needed)


def _annotations(client, run: str | None, task_bytes: dict | None, nt: int, tiles_total: int, budget):
    """The scheduling hints of a run on a cluster (priorities, block-cyclic placement, tracked bytes per task) and
    its memory accounting (None for products and spectra, which still get the dashboard page)."""
    from ..engine.placement import PanelPriority, block_cyclic
    from .budget import Accounting, TaskBytes, register_extensions

    annotations: dict[str, Any] = {}
    if config.get("scheduling.priority", "panel") == "panel":
        annotations["priority"] = PanelPriority()
    owners = block_cyclic(client.scheduler_info().get("workers", {}))
    if owners is not None:                       # the same owners the exact engine's scatter placed the tiles on
        annotations["workers"] = owners
        annotations["allow_other_workers"] = True
    accounting = None
    if run is not None and task_bytes is not None:
        accounting = Accounting(client, run)
        accounting.announce(panels=nt, tiles=tiles_total, budget=budget)
        if accounting.ok:
            annotations["dlogdet"] = TaskBytes(run, task_bytes)
    else:
        register_extensions(client)
    return annotations, accounting


class _Samples:
    """Memory of the workers during a run, from the scheduler: peaks per worker, the timeline, the watch."""

    def __init__(self, client, accounting, watch: MemoryWatch, t0: float):
        from .timeline import Timeline

        self.client, self.accounting, self.watch, self.t0 = client, accounting, watch, t0
        self.peak_managed: dict = {}
        self.peak_rss: dict = {}
        self.timeline = Timeline()

    def restarts(self) -> None:
        """Ask the scheduler for the nannies' restarts for memory (a worker killed between two samples leaves no
        high-memory sample behind)."""
        try:
            events = self.client.get_events("worker-restart-memory")
        except Exception:  # an older scheduler, or one that is gone: the samples' evidence stands alone
            return
        self.watch.restarted(events)

    def sample(self) -> None:
        try:
            info = self.client.scheduler_info()
            tracked = self.accounting.tracked_now() if self.accounting is not None else {}
        except Exception:  # the scheduler may be busy or gone; the run's own result reports that
            return
        self.watch.observe(info.get("workers", {}))
        if self.watch.vanished:
            self.restarts()
        for addr, w in info.get("workers", {}).items():
            m = w.get("metrics", {})
            name = w.get("name", addr)
            key = f"{name}" if not isinstance(name, str) else name
            if "managed_bytes" in m:
                self.peak_managed[key] = max(self.peak_managed.get(key, 0), int(m["managed_bytes"]))
            if "memory" in m:
                self.peak_rss[key] = max(self.peak_rss.get(key, 0), int(m["memory"]))
            self.timeline.sample(key, time.perf_counter() - self.t0, m.get("memory"), tracked.get(addr))


def _execute_distributed(client, dsk, out_key, panel_keys, progress, tiles_total, run=None, task_bytes=None,
                         release=(), budget=None, watch: MemoryWatch | None = None):
    import dask

    nt = len(panel_keys)
    interval = float(config.get("progress-interval", 0.25))
    t0 = time.perf_counter()
    annotations, accounting = _annotations(client, run, task_bytes, nt, tiles_total, budget)
    with dask.annotate(**annotations):
        futures = client.get(dsk, [out_key, *panel_keys], sync=False)
    for f in release:
        f.release()
    out, panels = futures[0], futures[1:]
    finished = threading.Event()
    out.add_done_callback(lambda _: finished.set())      # finished, failed or cancelled
    watch = watch or MemoryWatch()
    samples = _Samples(client, accounting, watch, t0)
    last_done = -1
    try:
        while True:
            done = sum(f.done() for f in panels)
            if done != last_done:
                samples.timeline.progress(time.perf_counter() - t0, done)
                if progress is not None:
                    progress(_progress_for(done, nt, tiles_total, t0))
                last_done = done
                watch.progressed()
            samples.sample()
            if watch.stuck():
                raise watch.error()
            # wait up to `interval` for the result. Not out.result(timeout=): under load, asyncio's wait_for
            # can let its own cancellation escape when the timeout and the result coincide, and distributed's
            # sync() then fails with UnboundLocalError; a done-callback and an event have no such race
            if not finished.wait(interval):
                continue
            try:
                value = out.result()
                break
            except BaseException as e:   # FutureCancelledError is a BaseException (asyncio's CancelledError)
                samples.sample()
                # a nanny's restart event may reach the scheduler just after the run failed: look for a moment
                deadline = time.perf_counter() + RESTART_EVENT_WAIT
                while not watch.lost and _lost_data(e):
                    samples.restarts()
                    if watch.lost or time.perf_counter() > deadline:
                        break
                    time.sleep(0.1)
                err = watch.error() if watch.lost else None
                if err is not None:
                    raise err from e
                raise
        samples.timeline.progress(time.perf_counter() - t0, nt)
        if progress is not None and last_done != nt:
            progress(_progress_for(nt, nt, tiles_total, t0))
    finally:
        for f in futures:
            f.release()
    wall = time.perf_counter() - t0
    memory = accounting.finish() if accounting is not None else {}
    return value, RunStats(wall, samples.peak_managed, samples.peak_rss, f"distributed ({client.scheduler.address})",
                           memory, samples.timeline.to_dict())
