"""The per-worker memory budget of a run: given, or ``"auto"`` from the workers' memory limits (one rule).

``budget="auto"`` (the default, dask config ``dlogdet.memory.budget``) gives every worker

    budget = f · memory_limit − memory in use now

with f = ``dlogdet.memory.auto-fraction`` (0.6, dask's own ``target``: the worker's process memory, baseline and
our tiles together, stays below the point where dask starts spilling, pausing or restarting it) and the memory in
use the worker's resident set at the call (what dask compares with those thresholds). The run's budget is the
smallest over the workers. Workers without a limit, and the in-process scheduler, take the machine's available
memory instead of the limit, shared by the workers (or threads) on that machine, with no baseline subtracted (it
is already outside the available memory). Without a cluster (``dlogdet.plan`` from sizes alone) the baseline is
``dlogdet.memory.overhead``.

A budget of ``None`` (dask config ``dlogdet.memory.budget: null``) is none at all: tiles stay in worker memory
whatever the matrix, as before budgets existed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from ..core import config
from ..core.errors import InputError, MemoryBudgetError

AUTO = "auto"


@dataclass(frozen=True)
class Budget:
    """A resolved budget: ``bytes`` per worker (None: no budget) and how it was obtained, in words."""

    bytes: int | None
    source: str
    limits: Mapping[str, int] | None = None     # worker -> memory limit in bytes, where the rule read them

    @property
    def is_auto(self) -> bool:
        return self.source.startswith(AUTO)


def auto_fraction() -> float:
    """``dlogdet.memory.auto-fraction``, checked: a number in (0, 1]."""
    v = config.get("memory.auto-fraction", 0.6)
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = math.nan
    if not 0.0 < f <= 1.0:
        raise InputError(f"dask config dlogdet.memory.auto-fraction must be a number in (0, 1], got {v!r}")
    return f


def _mib(b: float) -> str:
    return f"{b / 2**20:.0f} MiB"


def from_limit(limit: int, in_use: int, fraction: float, *, who: str) -> int:
    """f · limit − in use, refused (with the fix) when nothing is left for tiles."""
    b = int(fraction * limit - in_use)
    if b <= 0:
        need = int(math.ceil((in_use + 8 * 2**20) / fraction))
        raise MemoryBudgetError(
            f"{who} has a memory limit of {_mib(limit)} and already uses {_mib(in_use)}: the automatic budget "
            f"({fraction:g} x limit - memory in use) leaves nothing for tiles. Start workers with more memory "
            f"(at least {_mib(need)}), free the memory they hold (client.restart()), or give budget= explicitly",
            needed=need)
    return b


def _available_memory() -> int:  # runs on a worker (client.run) or here
    import psutil
    return int(psutil.virtual_memory().available)


def _in_process(fraction: float) -> Budget:
    threads = int(config.get("local.workers") or os.cpu_count() or 1)
    avail = _available_memory()
    b = int(fraction * avail / threads)
    return Budget(b, f"auto: {fraction:g} x available memory ({_mib(avail)}) / {threads} threads")


def _on_cluster(client, fraction: float) -> Budget:
    workers: dict[str, Any] = client.scheduler_info().get("workers", {})
    if not workers:
        return _in_process(fraction)
    unlimited = [a for a, w in workers.items() if not w.get("memory_limit")]
    avail = client.run(_available_memory, workers=unlimited) if unlimited else {}
    per_host: dict[str, int] = {}
    for w in workers.values():
        per_host[w.get("host", "")] = per_host.get(w.get("host", ""), 0) + 1
    best: tuple[int, str] | None = None
    limits = {}
    for addr, w in workers.items():
        limit = int(w.get("memory_limit") or 0)
        if limit:
            limits[addr] = limit
            in_use = int(w.get("metrics", {}).get("memory") or 0)
            b = from_limit(limit, in_use, fraction, who=f"worker {w.get('name', addr)}")
            why = (f"auto: {fraction:g} x worker memory limit ({_mib(limit)}) - memory in use ({_mib(in_use)}), "
                   "the smallest over the workers")
        else:
            share = per_host.get(w.get("host", ""), 1)
            b = int(fraction * int(avail.get(addr, _available_memory())) / share)
            why = (f"auto: {fraction:g} x the host's available memory / {share} workers on it (the workers have no "
                   "memory limit)")
        if best is None or b < best[0]:
            best = (b, why)
    assert best is not None
    return Budget(best[0], best[1], limits or None)


def resolve(budget=None, client=None) -> Budget:
    """The budget of a run: ``budget`` if given (bytes or a string such as ``"2GiB"``), else dask config
    ``dlogdet.memory.budget``; ``"auto"`` follows the workers' memory limits (module doc); None is no budget.

    Raises
    ------
    InputError
        A budget that cannot be read; ``MemoryBudgetError`` when a worker's limit leaves nothing for tiles.
    """
    source = "given (budget=)"
    if budget is None:
        budget, source = config.get("memory.budget", AUTO), "dask config dlogdet.memory.budget"
        if budget is None:
            return Budget(None, "none (dask config dlogdet.memory.budget is null)")
    if isinstance(budget, str) and budget.strip().lower() == AUTO:
        fraction = auto_fraction()
        return _in_process(fraction) if client is None else _on_cluster(client, fraction)
    return Budget(config.parse_bytes(budget), source)


def for_plan(budget, *, worker_memory=None, client=None, gpu_memory=None) -> Budget:
    """The budget :func:`dlogdet.plan` uses: :func:`resolve`'s rule; ``"auto"`` without a cluster needs the
    workers' memory (``worker_memory``) and takes ``dlogdet.memory.overhead`` as their memory in use. A GPU
    worker given without its host memory (``gpu_memory``: its GPUs' memory together) is planned as if its host
    memory equalled its GPUs' (a GPU node's host holds at least the tiles of its GPUs), and the source says so."""
    if budget is None:
        budget = config.get("memory.budget", AUTO)
    auto = isinstance(budget, str) and budget.strip().lower() == AUTO
    if not auto or client is not None:
        if budget is None:
            raise InputError("give a memory budget per worker, such as budget='80GB', or budget='auto' with "
                             "worker_memory= (or set dask config dlogdet.memory.budget)")
        return resolve(budget, client)
    assumed = ""
    if worker_memory is None and gpu_memory is not None:
        worker_memory = gpu_memory
        assumed = "; no worker memory given: taken to be its GPUs' memory"
    if worker_memory is None:
        raise InputError("budget='auto' needs the workers' memory to plan without a cluster: give worker_memory= "
                         "(dlogdet plan --worker-memory; such as '16GB', the memory limit of one worker), client=, "
                         "or an explicit budget=")
    limit = config.parse_bytes(worker_memory)
    fraction = auto_fraction()
    overhead = config.parse_bytes(config.get("memory.overhead", "256MiB"))
    b = from_limit(limit, overhead, fraction, who="a worker")
    return Budget(b, f"auto: {fraction:g} x worker memory ({_mib(limit)}{assumed}) - baseline ({_mib(overhead)}, "
                     "dlogdet.memory.overhead)", None)
