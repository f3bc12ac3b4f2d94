"""Memory accounting on a distributed cluster: a scheduler plugin and a worker plugin.

* :class:`BudgetPlugin` (scheduler) tracks, per worker, the bytes of dlogdet's tasks in flight (their declared
  working set, from the ``dlogdet`` annotation of every task) and of the results they hold, keeps the peak per
  run, and publishes each new peak as an event ``"dlogdet-budget"`` (``client.get_events("dlogdet-budget")``).
  A scheduler plugin can observe but not veto (DESIGN.md): the budget itself is enforced where tasks start, by
  sizing every out-of-core task to fit it and by the worker-side slots of :mod:`dlogdet.engine.store`; the plugin's
  accounting is the check that this held, reported in the result's diagnostics.
* :class:`WorkerPlugin` samples its process's resident memory every 20 ms (heartbeats are too sparse to catch
  a peak) and prefetches: when a task is ready to run behind the one executing, it asks the kernel to read the
  task's input tiles from the tile store (``posix_fadvise(WILLNEED)``), so disk and compute overlap.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin

log = logging.getLogger(__name__)

EVENT = "dlogdet-budget"
RUN_EVENT = "dlogdet-run"      # a run's shape and budget, announced by the driver when it starts
SCHEDULER_PLUGIN = "dlogdet-budget"
WORKER_PLUGIN = "dlogdet-worker"


class TaskBytes:
    """Annotation of a run's tasks: ``{"run": token, "bytes": working set}`` (picklable callable of the key)."""

    def __init__(self, token: str, per_kind: dict[str, int]):
        self.token = token
        self.per_kind = per_kind

    def __call__(self, key) -> dict:
        from ..engine.schedule import tile_and_step
        _, _, kind = tile_and_step(key)
        return {"run": self.token, "bytes": int(self.per_kind.get(kind, 0))}


class BudgetPlugin(SchedulerPlugin):
    """Per-worker accounting of dlogdet's tracked bytes: working sets of running tasks plus held results."""

    idempotent = True
    name = SCHEDULER_PLUGIN

    def __init__(self):
        self.scheduler = None
        self.held_bytes: dict[tuple[str, str], int] = {}     # (run, worker) -> bytes of results held
        self.peak: dict[tuple[str, str], int] = {}           # (run, worker) -> peak tracked bytes
        self.queued: dict[tuple[str, str], dict[Any, int]] = {}  # (run, worker) -> {key: working set}
        self.running: dict[Any, tuple[str, str]] = {}
        self.held: dict[Any, list[tuple[str, str, int]]] = {}

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler

    def tracked(self, run: str, worker: str) -> int:
        """Held results plus the working sets that can execute at once: the largest ``nthreads`` of the tasks
        assigned to the worker (the scheduler knows which tasks a worker has, not which one runs now)."""
        k = (run, worker)
        ws = self.scheduler.workers.get(worker) if self.scheduler is not None else None
        slots = ws.nthreads if ws is not None else 1
        running = sorted(self.queued.get(k, {}).values(), reverse=True)[:slots]
        return self.held_bytes.get(k, 0) + sum(running)

    def _update(self, run: str, worker: str) -> None:
        now = self.tracked(run, worker)
        k = (run, worker)
        if now > self.peak.get(k, 0):
            self.peak[k] = now
            if self.scheduler is not None:
                self.scheduler.log_event(EVENT, {"run": run, "worker": worker, "tracked": now})

    def _hold(self, run: str, worker: str, nbytes: int) -> None:
        k = (run, worker)
        self.held_bytes[k] = self.held_bytes.get(k, 0) + nbytes
        self._update(run, worker)

    def transition(self, key, start, finish, *args, stimulus_id=None, **kwargs) -> None:
        if start == "processing" and key in self.running:
            run, worker = self.running.pop(key)
            self.queued.get((run, worker), {}).pop(key, None)
        if start == "memory" and key in self.held:
            for run, worker, nb in self.held.pop(key):
                self._hold(run, worker, -nb)
        ts = self.scheduler.tasks.get(key) if self.scheduler is not None else None
        ann = (ts.annotations or {}).get("dlogdet") if ts is not None else None
        if not isinstance(ann, dict):
            return
        run = ann["run"]
        if finish == "processing" and ts.processing_on is not None:
            worker = ts.processing_on.address
            self.running[key] = (run, worker)
            self.queued.setdefault((run, worker), {})[key] = int(ann["bytes"])
            self._update(run, worker)
        elif finish == "memory":
            entries = [(run, ws.address, int(ts.nbytes or 0)) for ws in ts.who_has]
            self.held[key] = entries
            for e in entries:
                self._hold(*e)

    def peaks(self, run: str) -> dict[str, int]:
        return {w: b for (r, w), b in self.peak.items() if r == run}

    def forget(self, run: str) -> None:
        for d in (self.held_bytes, self.peak, self.queued):
            for k in [k for k in d if k[0] == run]:
                del d[k]


class WorkerPlugin(_WorkerPlugin):
    """Samples the worker's RSS every 20 ms and prefetches the tile-store inputs of ready tasks."""

    idempotent = True
    name = WORKER_PLUGIN

    def __init__(self, interval: float = 0.02):
        self.interval = interval

    def setup(self, worker) -> None:
        import psutil

        self.worker = worker
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self.base = self.peak
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="dlogdet-rss", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                rss = self.proc.memory_info().rss
            except Exception:  # the process is going away
                return
            if rss > self.peak:
                self.peak = rss

    def teardown(self, worker) -> None:
        self._stop.set()

    def reset(self) -> int:
        self.peak = self.base = self.proc.memory_info().rss
        return self.base

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "ready" or not hasattr(os, "posix_fadvise"):
            return
        from ..engine.store import StoreRef

        ts = self.worker.state.tasks.get(key)
        if ts is None:
            return
        for dep in ts.dependencies:
            ref = self.worker.data.get(dep.key) if dep.key in self.worker.data else None
            if isinstance(ref, StoreRef) and ref.computed:
                try:
                    fd = os.open(ref.path, os.O_RDONLY)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                finally:
                    os.close(fd)


# ----------------------------------------------------------------------------------------------------------------
# Driver side
# ----------------------------------------------------------------------------------------------------------------

def _scheduler_peaks(dask_scheduler, run: str) -> dict[str, int]:
    p = dask_scheduler.plugins.get(SCHEDULER_PLUGIN)
    if p is None:
        return {}
    out = p.peaks(run)
    p.forget(run)
    return out


def _scheduler_tracked(dask_scheduler, run: str) -> dict[str, int]:
    p = dask_scheduler.plugins.get(SCHEDULER_PLUGIN)
    return {} if p is None else {w: p.tracked(run, w) for w in dask_scheduler.workers}


def _worker_reset(dask_worker) -> int:
    p = dask_worker.plugins.get(WORKER_PLUGIN)
    return p.reset() if p is not None else 0


def _worker_peak(dask_worker) -> tuple[int, int]:
    p = dask_worker.plugins.get(WORKER_PLUGIN)
    return (p.peak, p.base) if p is not None else (0, 0)


_EXTENDED: set[str] = set()  # schedulers (by address) that have this process's extensions


def register_extensions(client, plugins=None) -> None:
    """Register the scheduler plugins named by ``dlogdet.scheduler-plugins`` ("module:Class"; by default the
    dashboard page at /dlogdet) on ``client``'s scheduler, once per scheduler. Named in config rather than
    imported, so that this layer does not depend on the faces above it; a failure costs the extension, not the
    run."""
    from importlib import import_module

    from ..core import config

    specs = config.get("scheduler-plugins", None) or ()
    addr = getattr(client.scheduler, "address", None)
    key = f"{addr}|{','.join(map(str, specs))}"
    if not specs or (plugins is None and key in _EXTENDED):  # a fresh listing (an exact run's) checks again
        return
    try:
        if plugins is None:
            plugins = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))
    except Exception as e:
        log.warning("dlogdet could not list the scheduler's plugins: %s", e)
        return
    for spec in specs:
        try:
            mod, _, cls = str(spec).partition(":")
            plugin = getattr(import_module(mod), cls)
            if getattr(plugin, "name", None) not in plugins:
                client.register_plugin(plugin(), name=plugin.name)
        except Exception as e:
            log.warning("dlogdet could not register the scheduler plugin %r: %s", spec, e)
    _EXTENDED.add(key)


class Accounting:
    """Registers the plugins on a client (once), and reads a run's peaks per worker."""

    def __init__(self, client, run: str):
        self.client = client
        self.run = run
        self.ok = True
        try:
            plugins = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))
            if SCHEDULER_PLUGIN not in plugins:
                client.register_plugin(BudgetPlugin(), name=SCHEDULER_PLUGIN)
            client.register_plugin(WorkerPlugin(), name=WORKER_PLUGIN)
            self.base = client.run(_worker_reset)
        except Exception as e:  # e.g. a scheduler without dlogdet installed: accounting is then unavailable
            log.warning("dlogdet memory accounting is unavailable on this cluster: %s", e)
            self.ok = False
            return
        register_extensions(client, plugins)

    def announce(self, **info) -> None:
        """Tell the scheduler's plugins (the dashboard page) about this run: ``RUN_EVENT`` with ``run`` and ``info``."""
        try:
            self.client.log_event(RUN_EVENT, {"run": self.run, **info})
        except Exception as e:  # a cosmetic message: never fail a run for it
            log.debug("could not announce run %s to the scheduler: %s", self.run, e)

    def names(self) -> dict[str, str]:
        info = self.client.scheduler_info().get("workers", {})
        return {addr: str(w.get("name", addr)) for addr, w in info.items()}

    def tracked_now(self) -> dict[str, int]:
        """Tracked bytes per worker (by address) at this moment: the memory timeline's samples."""
        return self.client.run_on_scheduler(_scheduler_tracked, run=self.run) if self.ok else {}

    def finish(self) -> dict[str, dict[str, int]]:
        if not self.ok:
            return {}
        names = self.names()
        tracked = self.client.run_on_scheduler(_scheduler_peaks, run=self.run)
        rss = self.client.run(_worker_peak)
        return {
            "peak_tracked_bytes_per_worker": {names.get(w, w): b for w, b in tracked.items()},
            "peak_rss_sampled_bytes_per_worker": {names.get(w, w): p for w, (p, _) in rss.items()},
            "rss_at_start_bytes_per_worker": {names.get(w, w): b for w, (_, b) in rss.items()},
        }
