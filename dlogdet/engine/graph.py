"""A factorization graph from the schedule: the inputs every emitter reads, and the one walk over the steps.

:func:`emit` walks :meth:`Schedule.steps <dlogdet.engine.schedule.Schedule.steps>` once, keeping the current
reference of every tile (its input, then its latest update), of the panel tiles of the step and of its factor; an
emitter turns each step into a task. Two emitters exist: tiles held in worker memory (:mod:`dlogdet.engine.tiles`)
and tiles in the on-disk tile store (:mod:`dlogdet.engine.store`). Both read their input tiles through
:class:`Inputs`: inside the first task that needs them (a nested task), so a tile travels from its source straight
to the worker that uses it; symmetry checks of the input pairs are tasks of their own, off the critical path, that
the result waits for.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
from dask.base import tokenize

from ..linalg import backend as B
from ..linalg import kernels as K
from ..sources import DaskArraySource, TileSource
from .schedule import Factor, PanelSolve, RowSolve, Schedule, Tiling, Update

# --------------------------------------------------------------------------------------------------------------
# Tasks that read input tiles (top-level functions: they are pickled into the graph)
# --------------------------------------------------------------------------------------------------------------


def read_tile(source: TileSource, r0: int, r1: int, c0: int, c1: int):
    """The raw tile A[r0:r1, c0:c1] of a source."""
    return source.tile(r0, r1, c0, c1)


def whole(x):
    """A scattered tile as it is."""
    return x


@dataclass(frozen=True)
class LoadSpec:
    """How an input tile becomes a tile of M = t·A + diag(d): scale, shift, checks, backend."""

    t: float = 1.0
    d: Any = None              # None, a float, or the slice of the d vector of this diagonal tile
    check_finite: bool = True
    symmetry_rtol: float | None = None
    backend: str = "numpy"


def load_tile(raw, spec: LoadSpec, r0: int, c0: int, i: int, j: int):
    """Tile (i, j) of M from the raw tile of A (on the backend, checked)."""
    tile = B.to_backend(raw, spec.backend)
    return K.prepare_tile(tile, r0=r0, c0=c0, t=spec.t, d=spec.d, check_finite=spec.check_finite,
                          symmetry_rtol=spec.symmetry_rtol, tile_index=(i, j))


# --------------------------------------------------------------------------------------------------------------
# Tokens and references of the input tiles
# --------------------------------------------------------------------------------------------------------------

def source_token(source: TileSource) -> str:
    """A token for the source: the source's own ``token()`` if it has a deterministic one, else unique per call.

    Keys must differ whenever matrices differ (two runs on one cluster would otherwise share results), so a
    source without a content-based token gets a random one.
    """
    tok = getattr(source, "token", None)
    t = tok() if callable(tok) else None
    return t if t is not None else uuid.uuid4().hex


def graph_token(source: TileSource, assume: str, tiling: Tiling, t, d, backend, check_finite, symmetry_rtol) -> str:
    """The token of a factorization's keys (and of its tile-store directory): same inputs, same token."""
    return tokenize(source_token(source), assume, tiling, t, d if np.isscalar(d) else tokenize(np.asarray(d)),
                    backend, check_finite, symmetry_rtol)


def raw_refs(source: TileSource, tiling: Tiling, token: str, tiles: dict | None = None,
             source_ref=None) -> tuple[dict, Callable[[int, int], Any]]:
    """Graph entries and a function (i, j) -> task argument yielding the raw input tile A_ij.

    ``tiles`` maps (i, j) to objects already on the cluster (scattered futures); otherwise dask arrays are
    rechunked and merged, and any other source is read by nested tasks from ``source_ref`` (a future of the
    source already on every worker) or from a data node placed in the graph once.
    """
    if tiles is not None:
        return {}, lambda i, j: (whole, tiles[i, j])
    if isinstance(source, DaskArraySource):
        arr = source.array.rechunk((tiling.block_size, tiling.block_size))
        dsk = dict(arr.__dask_graph__())
        return dsk, lambda i, j: (arr.name, i, j)
    skey = f"source-{token}"

    def ref(i, j):
        r0, r1 = tiling.bounds(i)
        c0, c1 = tiling.bounds(j)
        return (read_tile, skey if source_ref is None else source_ref, r0, r1, c0, c1)

    return ({skey: source} if source_ref is None else {}), ref


class Inputs:
    """Where a factorization reads its input tiles, and how each becomes a tile of M = t·A + diag(d).

    Parameters
    ----------
    source, tiling, token
        The matrix, its tiles, the keys' token.
    t, d : scale and diagonal shift (d a scalar or an array of length n).
    backend : "numpy", "cupy" or "auto" (resolved on each worker).
    check_finite : refuse NaN/Inf in input tiles.
    symmetry_rtol : check symmetry (reading the mirror tiles) with this tolerance; None to skip.
    tiles : pre-scattered input tiles {(i, j): future}, for in-memory arrays on a cluster.
    source_ref : a future of ``source`` broadcast to the workers (so no worker is preferred for loading).
    """

    def __init__(self, source: TileSource, tiling: Tiling, token: str, *, t: float = 1.0, d=0.0,
                 backend: str = "numpy", check_finite: bool = True, symmetry_rtol: float | None = None,
                 tiles: dict | None = None, source_ref=None):
        self.source, self.tiling, self.token = source, tiling, token
        self.t, self.backend, self.check_finite, self.symmetry_rtol = float(t), backend, check_finite, symmetry_rtol
        self.d = d
        self.d_vec = None if np.isscalar(d) else np.asarray(d, dtype=np.float64)
        self.entries, self.ref = raw_refs(source, tiling, token, tiles, source_ref)
        self.source_key = f"source-{token}"
        # what a task receives as the source: the future on every worker, or the graph's data node (None: a dask
        # array, whose raw tiles are keys of its own graph)
        self.source_arg = source_ref if source_ref is not None else (
            self.source_key if self.source_key in self.entries else None)

    def spec(self, i: int, j: int) -> LoadSpec:
        """How raw tile (i, j) becomes tile (i, j) of M (the shift d on diagonal tiles only)."""
        dd = None
        if i == j:
            r0, r1 = self.tiling.bounds(i)
            dd = float(self.d) if self.d_vec is None else self.d_vec[r0:r1]
        return LoadSpec(t=self.t, d=dd, check_finite=self.check_finite, symmetry_rtol=self.symmetry_rtol,
                        backend=self.backend)

    def symmetry_check(self, i: int, j: int) -> tuple:
        """The task checking the input pair A_ij, A_ji (and their finiteness)."""
        return (K.check_symmetric_pair, self.ref(i, j), self.ref(j, i), self.symmetry_rtol, self.tiling.bounds(i)[0],
                self.tiling.bounds(j)[0], i, j, self.check_finite)


def check_in_memory(a, tiling: Tiling, rtol: float | None, check_finite: bool = True) -> None:
    """Symmetry (with ``rtol``; None: not checked) and finiteness of an in-memory matrix, pair of tiles by pair of
    tiles, on this machine's cores.

    The same checks, and the same messages, as a graph's symmetry checks and tile loads; used before an in-memory
    matrix is scattered to a cluster or multiplied here, so that bad input is refused before any work or transfer.
    """
    def check(ij):
        i, j = ij
        r0, r1 = tiling.bounds(i)
        c0, c1 = tiling.bounds(j)
        if i == j:
            K.prepare_tile(a[r0:r1, c0:c1], r0=r0, c0=c0, check_finite=check_finite, symmetry_rtol=rtol,
                           tile_index=(i, j))
        elif rtol is not None:
            K.check_symmetric_pair(a[r0:r1, c0:c1], a[c0:c1, r0:r1], rtol, r0, c0, i, j, check_finite)
        elif check_finite:
            K.prepare_tile(a[r0:r1, c0:c1], r0=r0, c0=c0, check_finite=True, tile_index=(i, j))

    pairs = [(i, j) for i in range(tiling.nt) for j in range(i + 1)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as ex:  # NumPy releases the GIL on big arrays
        list(ex.map(check, pairs))


# --------------------------------------------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------------------------------------------

@dataclass
class FactorGraph:
    """A factorization graph and the keys a driver needs (``panel_keys``: one per step, done when it is)."""

    dsk: dict
    output_key: tuple
    panel_keys: list
    tiling: Tiling
    assume: str
    token: str
    n_tasks: int
    names: dict = field(default_factory=dict)


class Emitter(Protocol):
    """Turns steps into tasks of ``dsk``; each method returns the reference of the tile its task produces."""

    dsk: dict
    panel_keys: list

    def tile(self, i: int, j: int) -> Any:
        """The reference of input tile (i, j) as it stands before the schedule's first step."""

    def factor(self, step: Factor, key: tuple, a: Any) -> Any:
        """Factor diagonal tile ``a``."""

    def solve(self, step: PanelSolve | RowSolve, key: tuple, a: Any, factor: Any) -> Any:
        """Solve panel tile ``a`` with the step's factor."""

    def update(self, step: Update, key: tuple, c: Any, left: Any, right: Any) -> Any:
        """Update tile ``c`` by the panel tiles ``left`` (column i) and ``right`` (column j, or row j for LU)."""

    def end(self, step: Any, key: tuple) -> None:
        """The step is complete (after all its tasks)."""

    def output(self, checks: list) -> tuple:
        """The task that gathers the log-pivots, after the symmetry ``checks``."""


def emit(schedule: Schedule, emitter: Emitter, inputs: Inputs) -> FactorGraph:
    """The graph of ``schedule``: each step made a task by ``emitter``, then the symmetry checks and the output."""
    cur = {ij: emitter.tile(*ij) for ij in schedule.input_tiles()}
    factor: Any = None
    col: dict[int, Any] = {}
    row: dict[int, Any] = {}
    for step in schedule.steps():
        key = schedule.key(step)
        if isinstance(step, Factor):
            factor, col, row = emitter.factor(step, key, cur[step.k, step.k]), {}, {}
        elif isinstance(step, PanelSolve):
            col[step.i] = emitter.solve(step, key, cur[step.i, step.k], factor)
        elif isinstance(step, RowSolve):
            row[step.j] = emitter.solve(step, key, cur[step.k, step.j], factor)
        elif isinstance(step, Update):
            right = row[step.j] if schedule.general else col[step.j]
            cur[step.i, step.j] = emitter.update(step, key, cur[step.i, step.j], col[step.i], right)
        else:
            emitter.end(step, key)
    dsk = emitter.dsk
    checks = []
    if inputs.symmetry_rtol is not None:
        for check in schedule.symmetry_checks():
            key = schedule.key(check)
            dsk[key] = inputs.symmetry_check(check.i, check.j)
            checks.append(key)
    out = schedule.output_key
    dsk[out] = emitter.output(checks)
    n_tasks = len(dsk) - (1 if inputs.source_key in dsk else 0)
    return FactorGraph(dsk, out, emitter.panel_keys, schedule.tiling, schedule.assume, schedule.token, n_tasks,
                       schedule.names)
