"""The on-disk tile store and the out-of-core factorization graph.

When the matrix does not fit in the workers' memory budgets, the trailing matrix lives on disk: every task reads
its input tiles from the store, writes its output tile, and hands on only a :class:`StoreRef` (a path), so a
worker holds the tiles of the task it runs and nothing else. The graph is the same right-looking factorization
as :mod:`dlogdet.graph` (same keys, same kernels); only where tiles live changes.

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
from typing import Any

import numpy as np

from ..linalg import backend as B
from ..linalg import kernels as K
from .graph import FactorGraph, LoadSpec, Tiling, load_tile, raw_refs, read_tile


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


OPS = {"factor": _op_factor, "trsm": _op_trsm, "trsmrow": _op_trsmrow, "update": _op_update,
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


def build_store_graph(source, assume: str, tiling: Tiling, store: TileStore, *, t: float = 1.0, d=0.0,
                      backend: str = "numpy", check_finite: bool = True, symmetry_rtol: float | None = None,
                      source_ref=None, token: str, start: int = 0) -> FactorGraph:
    """The out-of-core factorization graph, from step ``start`` on (0: a fresh run; > 0: a resumed one).

    Keys are those of :func:`dlogdet.graph.build_factor_graph`, plus ``("done-<tok>", k)`` per step; the
    output is ``(log_pivots, signs, tasks_computed)``.
    """
    nt = tiling.nt
    gen = assume == "gen"
    fname = {"spd": "potrf", "sym": "sytrf", "gen": "getrf"}[assume]
    names = {k: f"{k}-{token}" for k in (fname, "trsm", "trsmrow", "syrk", "gemm", "done", "symcheck", "logdet")}
    d_vec = None if np.isscalar(d) else np.asarray(d, dtype=np.float64)
    dsk, ref = raw_refs(source, tiling, token, None, source_ref)
    src_arg = source_ref if source_ref is not None else (f"source-{token}" if f"source-{token}" in dsk else None)
    dask_src = src_arg is None  # a dask array: raw tiles are keys of its graph

    def first_input(i, j):
        r0, r1 = tiling.bounds(i)
        c0, c1 = tiling.bounds(j)
        if start > 0:
            return FromStore(f"A-{i}-{j}-{start}.npy"), None
        dd = (float(d) if d_vec is None else d_vec[r0:r1]) if i == j else None
        spec = LoadSpec(t=float(t), d=dd, check_finite=check_finite, symmetry_rtol=symmetry_rtol, backend=backend)
        return FromSource(i, j, r0, r1, c0, c1, spec), (ref(i, j) if dask_src else None)

    cur: dict[tuple[int, int], tuple] = {}     # tile -> (input descriptor, dependency key or None, raw)
    for i in range(start, nt):
        for j in range(start, nt if gen else i + 1):
            inp, raw = first_input(i, j)
            cur[i, j] = (inp, None, raw)

    def task(op, out, ins, params, piv=None):
        """A store task; ``ins`` are (descriptor, dependency key, raw) triples, the first one consumed."""
        deps = [key for _, key, _ in ins if key is not None]
        return (run_task, store, op, out, tuple(x for x, _, _ in ins), params, src_arg, ins[0][2], piv, *deps)

    ext = _panel_ext(assume)
    done_keys = []
    for k in range(start, nt):
        r0, _ = tiling.bounds(k)
        fk = (names[fname], k)
        fout = f"F-{k}.pkl"
        dsk[fk] = task("factor", fout, [cur[k, k]], (assume, r0, k == nt - 1), piv=f"P-{k}.npz")
        step_refs = [fk]
        to_delete = [fout]
        fin = (FromStore(fout), fk, None)
        col, row = {}, {}
        for i in range(k + 1, nt):
            key = (names["trsm"], i, k)
            lname = f"L-{i}-{k}{ext}"
            dsk[key] = task("trsm", lname, [cur[i, k], fin], ())
            col[i] = (FromStore(lname), key, None)
            step_refs.append(key)
            to_delete.append(lname)
            if gen:
                key = (names["trsmrow"], k, i)
                uname = f"U-{k}-{i}.npy"
                dsk[key] = task("trsmrow", uname, [cur[k, i], fin], ())
                row[i] = (FromStore(uname), key, None)
                step_refs.append(key)
                to_delete.append(uname)
        for i in range(k + 1, nt):
            for j in range(k + 1, nt if gen else i + 1):
                key = (names["syrk"] if i == j else names["gemm"], i, j, k)
                aname = f"A-{i}-{j}-{k + 1}.npy"
                if gen:
                    dsk[key] = task("update_gen", aname, [cur[i, j], col[i], row[j]], ())
                else:
                    dsk[key] = task("update", aname, [cur[i, j], col[i], col[j]], ())
                cur[i, j] = (FromStore(aname), key, None)
                step_refs.append(key)
        dk = (names["done"], k)
        # after the previous mark too: marks are then contiguous, so "done-k" means steps 0..k are complete
        dsk[dk] = (finish_step, store, k, to_delete, *step_refs, *done_keys[-1:])
        done_keys.append(dk)

    checks = []
    if symmetry_rtol is not None and start == 0:
        for i in range(nt):
            for j in range(i):
                key = (names["symcheck"], i, j)
                dsk[key] = (K.check_symmetric_pair, ref(i, j), ref(j, i), symmetry_rtol, tiling.bounds(i)[0],
                            tiling.bounds(j)[0], i, j, check_finite)
                checks.append(key)
    out = (names["logdet"],)
    dsk[out] = (_gather_after_checks, store, nt, checks, *done_keys)
    n_tasks = len(dsk) - (1 if f"source-{token}" in dsk else 0)
    return FactorGraph(dsk, out, done_keys, tiling, assume, token, n_tasks, names)


def _gather_after_checks(store: TileStore, nt: int, checks: list, *done: int):
    return gather(store, nt)
