"""A simulated cluster: the engine's own schedule replayed as a discrete-event simulation.

:func:`engine_tasks` walks the engine's schedule with :func:`dlogdet.engine.graph.emit` (the walk both emitters use),
so the simulated graph has the engine's tasks, keys and dependencies: per step a factor (and in memory its pivots
task), panel solves, trailing updates (and out of core the step's end mark), then the gather. Each task gets its
flops, the bytes of its output, its tile-store reads and writes, the input tiles it loads from the source, its
priority (:class:`~dlogdet.engine.placement.PanelPriority`) and its worker (the 2-D block-cyclic owner of its tile,
:class:`~dlogdet.engine.placement.BlockCyclic`, as the engine annotates it on a cluster).

:func:`replay` runs a list of such tasks on K workers. The model, event by event:

* **scheduler**: one process; a task whose dependencies are all done waits for it, and it spends ``task_seconds``
  on each task, one at a time (tasks ready at the same moment in priority order);
* **transfers**: a dispatched task fetches each input held on another worker (once per worker: a copy stays there)
  over the receiving worker's link, one transfer at a time, at ``network_bytes`` per second, and waits
  ``transfer_latency`` more for each (messages, which do not hold the link);
* **workers**: ``slots`` tasks at once each (1 per CPU worker, 1 per GPU); among the tasks whose inputs are there,
  the highest priority runs first;
* **cores** (``cores``, when given: local workers sharing one machine): the operating system shares the cores
  among the tasks running on all workers, the scheduler while it works (on a local cluster, a thread of the
  client's process) and each link while it carries a transfer (the workers copying bytes through the loopback),
  so while N of them run on C cores each task progresses at min(1, C/N) of its speed (processor sharing; C may be
  fractional: the cores that other processes leave free);
* **a task's time**: ``task_latency`` (the worker's side of a task: messages, deserialization, thread hand-off) +
  flops / ``gemm_flops`` + tile-store bytes / ``io_bytes`` + source bytes / ``load_bytes`` (+ ``task_cpu`` on
  shared cores: the cluster's other CPU per task, which takes its turn on the same cores).

The result (:class:`Simulation`) has the predicted time (the last event), its parts (compute, transfers, scheduler,
each as the busy time of the resource divided by how many of it there are), the critical path (the longest chain of
dependent tasks, each with its scheduler cost, latency, inputs' transfers and run time, on an idle cluster), the
busiest worker and the bytes on the network. It is deterministic: equal inputs, equal event times.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

from ..engine.graph import emit
from ..engine.placement import BlockCyclic, PanelPriority
from ..engine.schedule import Factor, PanelSolve, RowSolve, Schedule, Tiling, Update

#: Bytes of what a task returns besides tiles: log-pivots per row (float64 + sign), a tile-store reference.
PIVOT_BYTES_PER_ROW = 9
REF_BYTES = 200


@dataclass(frozen=True)
class SimTask:
    """One task of a simulated graph.

    ``deps`` are indices of earlier tasks; ``worker`` the worker it must run on (None: any, the one holding most
    of its inputs' bytes); ``priority``: higher first; ``flops``, ``io_bytes`` (tile store), ``load_bytes`` (input
    tiles read from the source inside the task), ``out_bytes`` (its result, what moves to another worker).
    """

    key: Any
    deps: tuple[int, ...] = ()
    flops: float = 0.0
    out_bytes: int = 0
    io_bytes: int = 0
    load_bytes: int = 0
    worker: int | None = None
    priority: int = 0
    kind: str = ""


@dataclass(frozen=True)
class SimRates:
    """Rates of the simulation: flop/s of one task slot, bytes/s of a worker's network link, of its disk, and of
    loading input tiles from the source; the scheduler's seconds per task and the worker's latency per task; the latency
    of a fetch from another worker besides its bytes (``transfer_latency``: it does not hold the link).
    ``kind_flops`` (optional) gives the flop rate of a kind of task (``"potrf"``, ``"trsm"``, ``"syrk"``,
    ``"gemm"``) where it differs from ``gemm_flops``. ``task_cpu``: CPU seconds the cluster's processes spend per
    task beyond those two (messages, (de)serialization, the client's bookkeeping), which tasks on shared cores
    wait for: added to each task's run time when ``cores`` are given, ignored otherwise."""

    gemm_flops: float
    network_bytes: float = math.inf
    io_bytes: float = math.inf
    load_bytes: float = math.inf
    task_seconds: float = 0.0
    task_latency: float = 0.0
    kind_flops: Mapping[str, float] | None = None
    transfer_latency: float = 0.0
    task_cpu: float = 0.0


@dataclass(frozen=True)
class Simulation:
    """What a simulated run took; times in seconds.

    Attributes
    ----------
    time_s : the last task's end (the predicted wall time of the graph).
    compute_s : run time of all tasks (flops, store I/O, loads, latency) / task slots.
    transfers_s : time the workers' links were busy / workers.
    scheduler_s : time the scheduler was busy (tasks × its cost per task).
    critical_path_s : longest chain of dependent tasks on an idle cluster.
    busiest_worker, busiest_worker_s : the worker whose slots ran longest, and how long (summed over its slots).
    network_bytes : bytes moved between workers.
    n_tasks, workers, slots : the graph and the cluster.
    start_s, end_s : per task (indices of the task list), for tests and timelines.
    """

    time_s: float
    compute_s: float
    transfers_s: float
    scheduler_s: float
    critical_path_s: float
    busiest_worker: int
    busiest_worker_s: float
    network_bytes: int
    n_tasks: int
    workers: int
    slots: int
    start_s: tuple[float, ...] = field(default=(), repr=False)
    end_s: tuple[float, ...] = field(default=(), repr=False)

    def parts(self) -> dict[str, float]:
        """The time and its parts, by name."""
        return {"time": self.time_s, "compute": self.compute_s, "transfers": self.transfers_s,
                "scheduler": self.scheduler_s, "critical path": self.critical_path_s}


# --------------------------------------------------------------------------------------------------------------
# The engine's graph as simulated tasks
# --------------------------------------------------------------------------------------------------------------

class _SimEmitter:
    """An emitter of :func:`dlogdet.engine.graph.emit` that records tasks instead of building a dask graph."""

    def __init__(self, schedule: Schedule, mode: str, itemsize: int, owner: Callable[[tuple], int | None],
                 priority: Callable[[tuple], int]):
        self.schedule, self.mode, self.itemsize = schedule, mode, itemsize
        self.owner, self.priority = owner, priority
        self.dsk: dict = {}                 # key -> task index (emit counts its entries)
        self.panel_keys: list = []
        self.tasks: list[SimTask] = []
        self.step: list[int] = []           # the current step's tasks (out of core: its end mark waits for them)

    def _size(self, k: int) -> int:
        r0, r1 = self.schedule.tiling.bounds(k)
        return r1 - r0

    def _add(self, key, ins: Sequence[Any], flops: float, out_elems: int, read_elems: int = 0) -> int:
        deps, load = [], 0
        for ref in ins:
            if isinstance(ref, int):
                deps.append(ref)
            else:                       # ("input", i, j): a tile read from the source inside this task
                load += self._size(ref[1]) * self._size(ref[2]) * self.itemsize
        store = self.mode == "store"
        out = out_elems * self.itemsize
        task = SimTask(key, tuple(dict.fromkeys(deps)), float(flops), REF_BYTES if store else out,
                       (read_elems * self.itemsize + out) if store else 0, load, self.owner(key), self.priority(key),
                       key[0].split("-", 1)[0])
        self.tasks.append(task)
        self.dsk[key] = len(self.tasks) - 1
        self.step.append(len(self.tasks) - 1)
        return len(self.tasks) - 1

    def _read(self, ins: Sequence[Any], sizes: Sequence[int]) -> int:
        """Elements read from the store: every input written by a task (source tiles are loaded instead), each
        distinct one once (a SYRK reads its panel tile once)."""
        seen, total = set(), 0
        for ref, size in zip(ins, sizes):
            if isinstance(ref, int) and ref not in seen:
                seen.add(ref)
                total += size
        return total

    def tile(self, i: int, j: int) -> Any:
        return ("input", i, j)

    def factor(self, step: Factor, key: tuple, a: Any) -> Any:
        b = self._size(step.k)
        self.step = []
        scale = 2.0 if self.schedule.general else 1.0
        idx = self._add(key, [a], scale * b ** 3 / 3.0, b * b, self._read([a], [b * b]))
        if self.mode == "memory":
            pkey = (self.schedule.name("pivots"), step.k)
            self.tasks.append(SimTask(pkey, (idx,), 0.0, PIVOT_BYTES_PER_ROW * b, 0, 0, self.owner(pkey),
                                      self.priority(pkey)))
            self.dsk[pkey] = len(self.tasks) - 1
            self.panel_keys.append(len(self.tasks) - 1)
        return idx

    def solve(self, step: PanelSolve | RowSolve, key: tuple, a: Any, factor: Any) -> Any:
        k = step.k
        other = step.i if isinstance(step, PanelSolve) else step.j
        bk, bo = self._size(k), self._size(other)
        return self._add(key, [a, factor], float(bo) * bk * bk, bo * bk, self._read([a, factor], [bo * bk, bk * bk]))

    def update(self, step: Update, key: tuple, c: Any, left: Any, right: Any) -> Any:
        bi, bj, bk = self._size(step.i), self._size(step.j), self._size(step.k)
        syrk = step.i == step.j and not self.schedule.general     # one panel tile on both sides: half the flops
        flops = float(bi) * bi * bk if syrk else 2.0 * bi * bj * bk
        return self._add(key, [c, left, right], flops, bi * bj, self._read([c, left, right], [bi * bj, bi * bk, bj * bk]))

    def end(self, step: Any, key: tuple) -> None:
        if self.mode != "store":
            return
        deps = tuple(self.step) + tuple(self.panel_keys[-1:])
        self.tasks.append(SimTask(key, deps, 0.0, REF_BYTES, 0, 0, self.owner(key), self.priority(key)))
        self.dsk[key] = len(self.tasks) - 1
        self.panel_keys.append(len(self.tasks) - 1)

    def output(self, checks: list) -> Any:
        key = self.schedule.output_key
        out = self.schedule.tiling.n * PIVOT_BYTES_PER_ROW
        self.tasks.append(SimTask(key, tuple(self.panel_keys), 0.0, out, 0, 0, None, 0))
        return len(self.tasks) - 1


def engine_tasks(n: int, block_size: int, workers: int, *, assume: str = "spd", mode: str = "memory",
                 itemsize: int = 8, placement: str = "block-cyclic", priority: str = "panel") -> list[SimTask]:
    """The engine's factorization graph for n rows in tiles of ``block_size`` on ``workers`` workers, as simulated
    tasks (module doc): the walk of :func:`dlogdet.engine.graph.emit`, the engine's priorities and placement
    (``placement="block-cyclic"`` as dask config ``dlogdet.scheduling.placement``; on one worker there is none)."""
    if mode not in ("memory", "store"):
        raise ValueError(f"mode must be 'memory' or 'store', got {mode!r}")
    schedule = Schedule(Tiling(n, block_size), assume, "sim")
    if placement == "block-cyclic" and workers > 1:
        cyclic = BlockCyclic(list(range(workers)))

        def owner(key) -> int | None:
            where = cyclic(key)
            return where[0] if len(where) == 1 else None
    else:
        def owner(key) -> int | None:
            return None
    order: dict = {}
    prio_rule = PanelPriority() if priority == "panel" else (lambda key: -order.setdefault(key, len(order)))
    emitter = _SimEmitter(schedule, mode, itemsize, owner, prio_rule)
    inputs = SimpleNamespace(symmetry_rtol=None, source_key=None)   # no symmetry checks: a symmetric source
    emit(schedule, emitter, inputs)  # type: ignore[arg-type]
    return emitter.tasks


# --------------------------------------------------------------------------------------------------------------
# The replay
# --------------------------------------------------------------------------------------------------------------

_DONE, _DISPATCH, _INPUTS, _LINK = 0, 1, 2, 3


def replay(tasks: Sequence[SimTask], workers: int, rates: SimRates, *, slots: int = 1,
           cores: float | None = None) -> Simulation:
    """Run ``tasks`` (dependencies before dependents) on ``workers`` workers of ``slots`` task slots each (module
    doc); ``cores``: the cores all workers' tasks share (processor sharing, module doc), None for a core per slot."""
    nt = len(tasks)
    if workers < 1 or slots < 1 or (cores is not None and not cores > 0):
        raise ValueError(f"need workers, slots (and cores) >= 1, got {workers}, {slots}, {cores}")
    dependents: list[list[int]] = [[] for _ in range(nt)]
    waiting = [0] * nt
    for t, task in enumerate(tasks):
        for d in task.deps:
            if d >= t:
                raise ValueError(f"task {t} ({task.key}) depends on task {d}, which comes after it")
            dependents[d].append(t)
        waiting[t] = len(task.deps)
        if task.worker is not None and not 0 <= task.worker < workers:
            raise ValueError(f"task {task.key} is placed on worker {task.worker}, outside 0..{workers - 1}")

    kind_flops = dict(rates.kind_flops or {})

    overhead = rates.task_latency + (rates.task_cpu if cores is not None else 0.0)

    def run_time(task: SimTask) -> float:
        return (overhead + task.flops / kind_flops.get(task.kind, rates.gemm_flops)
                + task.io_bytes / rates.io_bytes + task.load_bytes / rates.load_bytes)

    events: list[tuple[float, int, int, int]] = []     # (time, sequence, kind, task)
    seq = [0]

    def push(t: float, kind: int, task: int) -> None:
        heapq.heappush(events, (t, seq[0], kind, task))
        seq[0] += 1

    sched_free = 0.0
    link_free = [0.0] * workers
    busy = [0.0] * workers
    running = [0] * workers
    queues: list[list[tuple[int, int, int]]] = [[] for _ in range(workers)]   # (-priority, sequence, task)
    where = [-1] * nt
    copies: dict[tuple[int, int], float] = {}           # (task, worker) -> time its output is there
    start, end = [math.nan] * nt, [math.nan] * nt
    net_bytes = 0
    link_busy = 0.0
    placed = [0] * workers
    # processor sharing (cores given): every running task has done `work` seconds of its run time when the virtual
    # clock has advanced by `work` since it started; the virtual clock runs at min(1, cores / tasks running)
    shared: list[tuple[float, int, int]] = []          # (virtual time it ends, sequence, task)
    clock = [0.0, 0.0]                                 # [virtual time, real time it was read at]

    def speed() -> float:
        # the scheduler while it works, and each link while it carries a transfer, is one more thread on the
        # shared cores (on a local cluster the scheduler is a thread of the client's process, and a transfer is
        # the two workers copying bytes through the loopback)
        n_run = len(shared) + (clock[1] < sched_free) + sum(clock[1] < f for f in link_free)
        return 1.0 if cores is None or n_run <= cores else cores / n_run

    def advance(t: float) -> None:
        clock[0] += (t - clock[1]) * speed()
        clock[1] = t

    def release(t: float, ready: list[int]) -> None:
        nonlocal sched_free
        for r in sorted(ready, key=lambda x: (-tasks[x].priority, x)):
            sched_free = max(sched_free, t) + rates.task_seconds
            push(sched_free, _DISPATCH, r)

    def choose(task: int) -> int:
        w = tasks[task].worker
        if w is not None:
            return w
        held = [0] * workers
        for d in tasks[task].deps:
            held[where[d]] += tasks[d].out_bytes
        best = max(held)
        if best > 0:
            return held.index(best)
        return min(range(workers), key=lambda x: (placed[x], x))

    def try_start(t: float, w: int) -> None:
        while queues[w] and running[w] < slots:
            _, _, task = heapq.heappop(queues[w])
            running[w] += 1
            start[task] = t
            dt = run_time(tasks[task])
            busy[w] += dt
            if cores is None:
                push(t + dt, _DONE, task)
            else:
                advance(t)
                heapq.heappush(shared, (clock[0] + dt, seq[0], task))
                seq[0] += 1

    def finish(t: float, task: int) -> None:
        w = where[task]
        end[task] = t
        running[w] -= 1
        ready = []
        for r in dependents[task]:
            waiting[r] -= 1
            if waiting[r] == 0:
                ready.append(r)
        release(t, ready)
        try_start(t, w)

    release(0.0, [t for t in range(nt) if waiting[t] == 0])
    while events or shared:
        if shared:
            t_end = clock[1] + max(0.0, shared[0][0] - clock[0]) / speed()
            if not events or t_end <= events[0][0]:
                advance(t_end)
                _, _, task = heapq.heappop(shared)
                finish(t_end, task)
                continue
        t, _, kind, task = heapq.heappop(events)
        if cores is not None:
            advance(t)
        if kind == _DISPATCH:
            w = choose(task)
            where[task] = w
            placed[w] += 1
            arrive = t
            for d in tasks[task].deps:
                if where[d] == w:
                    continue
                got = copies.get((d, w))
                if got is None:
                    size = tasks[d].out_bytes
                    dt = size / rates.network_bytes
                    link_free[w] = max(link_free[w], t) + dt
                    got = copies[d, w] = link_free[w] + rates.transfer_latency
                    if cores is not None:
                        push(link_free[w], _LINK, w)      # the link's end: the cores' sharing changes
                    net_bytes += size
                    link_busy += dt
                arrive = max(arrive, got)
            push(arrive, _INPUTS, task)
        elif kind == _INPUTS:
            w = where[task]
            heapq.heappush(queues[w], (-tasks[task].priority, task, task))
            try_start(t, w)
        elif kind == _DONE:
            finish(t, task)
    if any(math.isnan(e) for e in end):
        raise RuntimeError("the simulation ended with tasks that never ran (a dependency cycle?)")
    cp = critical_path(tasks, rates, run_time)
    top = max(range(workers), key=lambda w: (busy[w], -w))
    lanes = workers * slots if cores is None else min(workers * slots, cores)
    return Simulation(time_s=max(end) if nt else 0.0, compute_s=sum(busy) / lanes,
                      transfers_s=link_busy / workers, scheduler_s=nt * rates.task_seconds, critical_path_s=cp,
                      busiest_worker=top, busiest_worker_s=busy[top], network_bytes=net_bytes, n_tasks=nt,
                      workers=workers, slots=slots, start_s=tuple(start), end_s=tuple(end))


def critical_path(tasks: Sequence[SimTask], rates: SimRates, run_time: Callable[[SimTask], float]) -> float:
    """The longest chain of dependent tasks on an idle cluster: each task's scheduler cost, the transfer of an input
    from another worker (when both are placed), and its run time."""
    finish = [0.0] * len(tasks)
    for t, task in enumerate(tasks):
        ready = 0.0
        for d in task.deps:
            moved = (tasks[d].worker is not None and task.worker is not None and tasks[d].worker != task.worker)
            ready = max(ready, finish[d] + (tasks[d].out_bytes / rates.network_bytes + rates.transfer_latency
                                            if moved else 0.0))
        finish[t] = ready + rates.task_seconds + run_time(task)
    return max(finish, default=0.0)


def simulate(n: int, block_size: int, workers: int, rates: SimRates, *, assume: str = "spd", mode: str = "memory",
             itemsize: int = 8, slots: int = 1, cores: float | None = None, placement: str = "block-cyclic",
             priority: str = "panel") -> Simulation:
    """The engine's graph (:func:`engine_tasks`) replayed on ``workers`` workers (:func:`replay`)."""
    tasks = engine_tasks(n, block_size, workers, assume=assume, mode=mode, itemsize=itemsize, placement=placement,
                         priority=priority)
    return replay(tasks, workers, rates, slots=slots, cores=cores)
