"""The on-disk tile store and the out-of-core factorization graph.

When the matrix does not fit in the workers' memory budgets, the trailing matrix lives on disk: every task reads
its input tiles from the store, writes its output tile, and hands on only a :class:`StoreRef` (a path), so a
worker holds the tiles of the task it runs and nothing else. The graph is the same right-looking factorization
as in worker memory (:mod:`dlogdet.engine.tiles`: the same schedule, keys and kernels); only where tiles live
changes.

Files under ``<scratch>/dlogdet-<token>/`` (written to a temporary name, then renamed: a file that exists is
complete):

=====================  ===========================================================================
``A-i-j-k.npy``         tile (i, j) of the Schur complement after k panels (deleted by its consumer)
``F-k.pkl``             factor of diagonal tile k;  ``P-k.npz``: its log-pivots and signs (kept)
``L-i-k.npy|pkl``       panel tile (i, k) (``U-k-j.npy`` row panel for LU); deleted when step k is done
``src-i-j.done``        the input tile (i, j) was consumed from the source
``done-k``              step k is complete: a resumed run starts at the first step without this mark
=====================  ===========================================================================

Every task is idempotent: its first input is consumed only by that task, so a task whose first input is gone
(or whose source tile is marked consumed) has already run and returns at once. This makes reruns after a lost
worker, and resumes after a lost client, skip finished work instead of repeating it.
"""

from __future__ import annotations

import os
import pickle
import shutil
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..linalg import backend as B
from ..linalg import kernels as K
from .graph import FactorGraph, Inputs, LoadSpec, emit, load_tile, read_tile
from .schedule import Factor, PanelSolve, RowSolve, Schedule, StepEnd, Tiling, Update


@dataclass(frozen=True)
class StoreRef:
    """What a store task returns: where its output lives, and whether it computed (False: done before)."""

    path: str
    computed: bool = True


@dataclass(frozen=True)
class TileStore:
    """A directory of tiles; ``slots`` bounds the store tasks that run at once in one worker process."""

    root: str
    slots: int = 1
    backend: str = "numpy"
    run: str = "run"   # names this run's log of computed tasks (a resumed run has its own)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def exists(self, name: str) -> bool:
        return os.path.exists(self.path(name))

    def save(self, name: str, obj) -> None:
        final = self.path(name)
        tmp = f"{final}{TMP}{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                if name.endswith(".npy"):
                    np.save(f, np.ascontiguousarray(B.to_host(obj)), allow_pickle=False)
                elif name.endswith(".npz"):
                    np.savez(f, **obj)
                else:
                    pickle.dump(obj, f, protocol=5)
            os.replace(tmp, final)  # atomic: a file that exists is complete
        except OSError as e:
            # a full or failing file system: leave no partial file behind (it would hold the space), and say what
            # failed; the driver turns this into its one-line message (estimators.exact)
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise StoreWriteError(e.errno, f"{e.strerror or e}", final) from None

    def load(self, name: str):
        p = self.path(name)
        if name.endswith(".npy"):
            return B.to_backend(np.load(p, allow_pickle=False), self.backend)
        if name.endswith(".npz"):
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        with open(p, "rb") as f:  # written by this run's own tasks, under its own scratch directory
            return pickle.load(f)

    def delete(self, name: str) -> None:
        try:
            os.remove(self.path(name))
        except FileNotFoundError:
            pass

    def mark(self, name: str) -> None:
        with open(self.path(name), "wb"):
            pass

    def log_computed(self, what: str) -> None:
        """Append a line to this run's log of tasks that computed (one O_APPEND write: safe across processes)."""
        fd = os.open(self.path(f"computed-{self.run}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{what}\n".encode())
        finally:
            os.close(fd)

    def count_computed(self) -> int:
        try:
            with open(self.path(f"computed-{self.run}.log"), "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


#: Infix of a tile's temporary name while it is written (renamed to its final name when complete).
TMP = ".tmp-"


class StoreWriteError(OSError):
    """A tile could not be written to the store (``errno``, the OS's words, the file): what the worker saw."""


def dir_bytes(path: str) -> int:
    """Bytes of the files under ``path`` (a tile store's size on disk; files that vanish meanwhile count 0)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def remove_partial(root: str) -> int:
    """Delete temporary files left by writes that never completed (a killed or failed run); returns bytes freed."""
    freed = 0
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return 0
    for name in names:
        if TMP in name:
            p = os.path.join(root, name)
            try:
                freed += os.path.getsize(p)
                os.remove(p)
            except OSError:
                pass
    return freed


_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def _slot(n: int) -> threading.BoundedSemaphore:
    """Per-process admission control: at most ``n`` store tasks hold tiles at once in this worker."""
    with _SLOTS_LOCK:
        if n not in _SLOTS:
            _SLOTS[n] = threading.BoundedSemaphore(n)
        return _SLOTS[n]


# --------------------------------------------------------------------------------------------------------------
# Inputs of a store task
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FromStore:
    name: str


@dataclass(frozen=True)
class FromSource:
    """An input tile read from the source (step 0), with the load spec that turns A_ij into M_ij."""

    i: int
    j: int
    r0: int
    r1: int
    c0: int
    c1: int
    spec: LoadSpec

    @property
    def marker(self) -> str:
        return f"src-{self.i}-{self.j}.done"


def _read(store: TileStore, inp, source, raw):
    if isinstance(inp, FromStore):
        return store.load(inp.name)
    tile = raw if raw is not None else read_tile(source, inp.r0, inp.r1, inp.c0, inp.c1)
    return load_tile(tile, inp.spec, inp.r0, inp.c0, inp.i, inp.j)


def _op_factor(A, assume, row0, last):
    return K.factor_diag(A, assume, row0, last)


def _op_trsm(A, F):
    return K.trsm(F, A)


def _op_trsmrow(A, F):
    return K.trsm_row(F, A)


def _op_update(C, Pi, Pj):
    return K.update(C, Pi, Pj)


def _op_update_gen(C, L, U):
    return K.update_gen(C, L, U)


OPS: dict[str, Callable[..., Any]] = {"factor": _op_factor, "trsm": _op_trsm, "trsmrow": _op_trsmrow, "update": _op_update,
       "update_gen": _op_update_gen}


def run_task(store: TileStore, op: str, out: str, inputs: tuple, params: tuple, source=None, raw=None,
             pivots_name: str | None = None, *after) -> StoreRef:
    """Run one store task: skip if done before, else read inputs, compute, write the output, consume input 0.

    ``after`` are the references returned by the tasks that wrote the inputs (dependencies for ordering only).
    """
    first = inputs[0]

    def done_before() -> bool:
        if isinstance(first, FromStore):
            return not store.exists(first.name)
        return store.exists(first.marker)

    if done_before():
        return StoreRef(store.path(out), computed=False)
    with _slot(store.slots):
        # a twin of this task (from a killed client's graph, or on another worker after a lost one) may have
        # finished while this one waited for its slot or read its inputs: its output is then complete
        if done_before():
            return StoreRef(store.path(out), computed=False)
        values: dict[Any, Any] = {}
        args = []
        for inp in inputs:  # one read per distinct file: a SYRK gets the same panel object twice
            ident = inp.name if isinstance(inp, FromStore) else id(inp)
            if ident not in values:
                try:
                    values[ident] = _read(store, inp, source, raw if inp is first else None)
                except FileNotFoundError:
                    # the first input goes only once its consumer's output is complete, and a step's factor and
                    # panel tiles only once every task of the step is complete (finish_step): either way a twin
                    # of this task has finished between the check and the read
                    return StoreRef(store.path(out), computed=False)
            args.append(values[ident])
        result = OPS[op](*args, *params)
        del values, args
        if pivots_name is not None:
            piv = K.pivots(result)
            store.save(pivots_name, {"log_abs": piv.log_abs, "sign": piv.sign})
        store.save(out, result)
        del result
    store.log_computed(out)   # before the input goes: a worker lost in between repeats (and logs) the task
    if isinstance(first, FromStore):
        store.delete(first.name)
    else:
        store.mark(first.marker)
    return StoreRef(store.path(out), computed=True)


def finish_step(store: TileStore, k: int, names: list[str], *after) -> int:
    """Step k is complete (``after``: its tasks and the previous mark): delete its factor and panel tiles, mark it."""
    for name in names:
        store.delete(name)
    store.mark(f"done-{k}")
    return k


def gather(store: TileStore, nt: int) -> tuple[np.ndarray, np.ndarray, int]:
    """All log-pivots and signs from the store, and the number of tasks that computed in this run (from its log:
    a count kept in task results would lose the work of a worker that died after it)."""
    piv = [store.load(f"P-{k}.npz") for k in range(nt)]
    return (np.concatenate([p["log_abs"] for p in piv]),
            np.concatenate([p["sign"] for p in piv]).astype(np.int8), store.count_computed())


def resume_step(store: TileStore, nt: int) -> int:
    """The first step without a ``done`` mark: where a resumed run starts."""
    k = 0
    while k < nt and store.exists(f"done-{k}"):
        k += 1
    return k


def _panel_ext(assume: str) -> str:
    return ".pkl" if assume == "sym" else ".npy"


class StoreTasks:
    """Steps as tasks on the tile store: a tile's reference is (what reads it, the key of the task that wrote it
    or None, the raw tile of a dask array or None); every task consumes its first input."""

    def __init__(self, schedule: Schedule, inputs: Inputs, store: TileStore):
        self.schedule, self.inputs, self.store = schedule, inputs, store
        self.dsk = dict(inputs.entries)
        self.panel_keys: list = []          # the steps' done marks
        self.ext = _panel_ext(schedule.assume)
        self.step_refs: list = []
        self.to_delete: list[str] = []

    def tile(self, i: int, j: int) -> tuple:
        start = self.schedule.start
        if start > 0:
            return FromStore(f"A-{i}-{j}-{start}.npy"), None, None
        r0, r1 = self.schedule.tiling.bounds(i)
        c0, c1 = self.schedule.tiling.bounds(j)
        raw = self.inputs.ref(i, j) if self.inputs.source_arg is None else None  # a dask array's tile
        return FromSource(i, j, r0, r1, c0, c1, self.inputs.spec(i, j)), None, raw

    def _task(self, key: tuple, op: str, out: str, ins: list, params: tuple, piv: str | None = None) -> tuple:
        """A store task writing ``out``; ``ins`` are tile references, the first one consumed."""
        deps = [dep for _, dep, _ in ins if dep is not None]
        self.dsk[key] = (run_task, self.store, op, out, tuple(x for x, _, _ in ins), params, self.inputs.source_arg,
                         ins[0][2], piv, *deps)
        self.step_refs.append(key)
        return FromStore(out), key, None

    def factor(self, step: Factor, key: tuple, a: tuple) -> tuple:
        r0, _ = self.schedule.tiling.bounds(step.k)
        out = f"F-{step.k}.pkl"
        self.step_refs, self.to_delete = [], [out]
        return self._task(key, "factor", out, [a], (self.schedule.assume, r0, step.last), piv=f"P-{step.k}.npz")

    def solve(self, step: PanelSolve | RowSolve, key: tuple, a: tuple, factor: tuple) -> tuple:
        if isinstance(step, PanelSolve):
            op, out = "trsm", f"L-{step.i}-{step.k}{self.ext}"
        else:
            op, out = "trsmrow", f"U-{step.k}-{step.j}.npy"
        self.to_delete.append(out)
        return self._task(key, op, out, [a, factor], ())

    def update(self, step: Update, key: tuple, c: tuple, left: tuple, right: tuple) -> tuple:
        op = "update_gen" if self.schedule.general else "update"
        return self._task(key, op, f"A-{step.i}-{step.j}-{step.k + 1}.npy", [c, left, right], ())

    def end(self, step: StepEnd, key: tuple) -> None:
        # after the previous mark too: marks are then contiguous, so "done-k" means steps 0..k are complete
        self.dsk[key] = (finish_step, self.store, step.k, self.to_delete, *self.step_refs, *self.panel_keys[-1:])
        self.panel_keys.append(key)

    def output(self, checks: list) -> tuple:
        return (_gather_after_checks, self.store, self.schedule.nt, checks, *self.panel_keys)


def build_store_graph(source, assume: str, tiling: Tiling, store: TileStore, *, t: float = 1.0, d=0.0,
                      backend: str = "numpy", check_finite: bool = True, symmetry_rtol: float | None = None,
                      source_ref=None, token: str, start: int = 0) -> FactorGraph:
    """The out-of-core factorization graph, from step ``start`` on (0: a fresh run; > 0: a resumed one).

    Keys are those of the schedule (:mod:`dlogdet.engine.schedule`), with ``("done-<tok>", k)`` per step; the
    output is ``(log_pivots, signs, tasks_computed)``.
    """
    inputs = Inputs(source, tiling, token, t=t, d=d, backend=backend, check_finite=check_finite,
                    symmetry_rtol=symmetry_rtol, source_ref=source_ref)
    schedule = Schedule(tiling, assume, token, start)
    return emit(schedule, StoreTasks(schedule, inputs, store), inputs)


def _gather_after_checks(store: TileStore, nt: int, checks: list, *done: int):
    return gather(store, nt)
