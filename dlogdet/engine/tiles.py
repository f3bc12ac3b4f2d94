"""The factorization graph with its tiles in worker memory: the emitter of the schedule for matrices that fit.

Every task's output is a tile (or a factor) held by the worker that computed it; input tiles are read inside the
first task that needs them, and a factor tile is released as soon as its panel's updates ran. Per step, a small
``("pivots-<tok>", k)`` task keeps the log-pivots of the panel: what leaves the engine.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from ..linalg import kernels as K
from ..sources import TileSource
from .graph import FactorGraph, Inputs, emit, graph_token, load_tile
from .placement import block_cyclic
from .schedule import Factor, PanelSolve, RowSolve, Schedule, Tiling, Update


def gather_pivots(checks: list, *pivots: K.Pivots) -> tuple[np.ndarray, np.ndarray]:
    """All log-pivots and signs, in row order (``checks``: the symmetry checks, which must have passed)."""
    return (np.concatenate([p.log_abs for p in pivots]),
            np.concatenate([p.sign for p in pivots]).astype(np.int8))


class TileTasks:
    """Steps as tasks on tiles held in worker memory (the tile reference is the key of its latest task)."""

    def __init__(self, schedule: Schedule, inputs: Inputs):
        self.schedule, self.inputs = schedule, inputs
        self.dsk = dict(inputs.entries)
        self.panel_keys: list = []

    def tile(self, i: int, j: int) -> Any:
        # a nested load task until the tile's first update
        r0, _ = self.schedule.tiling.bounds(i)
        c0, _ = self.schedule.tiling.bounds(j)
        return (load_tile, self.inputs.ref(i, j), self.inputs.spec(i, j), r0, c0, i, j)

    def factor(self, step: Factor, key: tuple, a: Any) -> Any:
        assume = self.schedule.assume
        r0, _ = self.schedule.tiling.bounds(step.k)
        self.dsk[key] = (K.potrf, a, r0) if assume == "spd" else (K.factor_diag, a, assume, r0, step.last)
        pivots = (self.schedule.name("pivots"), step.k)
        self.dsk[pivots] = (K.pivots, key)
        self.panel_keys.append(pivots)
        return key

    def solve(self, step: PanelSolve | RowSolve, key: tuple, a: Any, factor: Any) -> Any:
        self.dsk[key] = (K.trsm if isinstance(step, PanelSolve) else K.trsm_row, factor, a)
        return key

    def update(self, step: Update, key: tuple, c: Any, left: Any, right: Any) -> Any:
        self.dsk[key] = (K.update_gen if self.schedule.general else K.update, c, left, right)
        return key

    def end(self, step: Any, key: tuple) -> None:
        """Nothing: the step's pivots task marks it."""

    def output(self, checks: list) -> tuple:
        return (gather_pivots, checks, *self.panel_keys)


def build_factor_graph(source: TileSource, assume: str, tiling: Tiling, *, t: float = 1.0, d=0.0,
                       backend: str = "numpy", check_finite: bool = True, symmetry_rtol: float | None = None,
                       tiles: dict | None = None, source_ref=None, token: str | None = None) -> FactorGraph:
    """The task graph of the tiled factorization of M = t·A + diag(d), tiles in worker memory.

    Parameters
    ----------
    source : TileSource
    assume : {"spd", "sym", "gen"}
    tiling : Tiling
    t, d, backend, check_finite, symmetry_rtol, tiles, source_ref
        As :class:`dlogdet.engine.graph.Inputs`.
    token : str, optional
        The keys' token (default: :func:`dlogdet.engine.graph.graph_token` of the inputs).
    """
    if assume not in K.ASSUME:
        raise ValueError(f"assume must be one of {K.ASSUME}, got {assume!r}")
    token = token or graph_token(source, assume, tiling, t, d, backend, check_finite, symmetry_rtol)
    inputs = Inputs(source, tiling, token, t=t, d=d, backend=backend, check_finite=check_finite,
                    symmetry_rtol=symmetry_rtol, tiles=tiles, source_ref=source_ref)
    schedule = Schedule(tiling, assume, token)
    return emit(schedule, TileTasks(schedule, inputs), inputs)


def scatter_tiles(client, a, tiling: Tiling, assume: str, check: Callable[[], None] | None = None) -> dict:
    """The input tiles of the in-memory matrix ``a`` on the workers of ``client``: {(i, j): future}.

    Each tile goes straight to the worker that owns it under the block-cyclic placement the graph is annotated
    with (dask config ``dlogdet.scheduling.placement``), so no input tile moves again between workers; the lower
    triangle only where the upper one is not needed. ``check`` (the matrix's symmetry and finiteness checks) runs
    on this machine's other threads meanwhile; when it fails, the scattered tiles are released and its error
    raised.
    """
    idx = sorted(Schedule(tiling, assume, "").input_tiles(), key=lambda ij: (ij[1], ij[0]))  # first panel first
    grid = block_cyclic(client.scheduler_info().get("workers", {}))
    groups: dict[Any, list] = {}
    for i, j in idx:
        groups.setdefault(None if grid is None else grid.owner(i, j), []).append((i, j))
    tiles: dict = {}
    with ThreadPoolExecutor(max_workers=1) as pool:
        checking = pool.submit(check) if check is not None else None
        try:
            for where, group in groups.items():
                # direct=True: from here to the worker, not through the scheduler (measured 6x faster)
                got = client.scatter([a[slice(*tiling.bounds(i)), slice(*tiling.bounds(j))] for i, j in group],
                                     workers=None if where is None else [where], hash=False, direct=True)
                tiles.update(zip(group, got))
            if checking is not None:
                checking.result()
        except BaseException:
            for f in tiles.values():
                f.release()
            raise
    return tiles
