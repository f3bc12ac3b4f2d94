"""Scheduling hints for a distributed cluster: picklable callables of a task's key, used with ``dask.annotate``."""

from __future__ import annotations

import math

from ..core import config
from .schedule import tile_and_step


class PanelPriority:
    """Priority of a task: earlier panels first, the critical path first, and one panel of lookahead.

    Within step k: the diagonal factorization, then the panel solve of tile (k+1, k) and the update of the next
    diagonal tile (k+1, k+1) (the critical path to step k+1), then the other panel solves and the updates of
    column k+1 (which feed the next panel), then the bulk of the trailing update. The critical tasks of step
    k+1 rank above the bulk of step k, so the next panel starts while the trailing update still runs.
    The symmetry checks of the input pairs of column j rank below the bulk of step j and above that of step
    j+1: they fill the gaps while the first panels wait on their critical path, and fail early on bad input.
    """

    def __call__(self, key) -> int:
        tile, k, kind = tile_and_step(key)
        if k is None:
            return 0
        base = -20 * k
        if kind == "symcheck":
            return base - 10
        if kind in ("potrf", "sytrf", "getrf", "pivots"):
            return base + 30
        assert tile is not None
        i, j = tile
        if kind in ("trsm", "trsmrow"):
            return base + (29 if k + 1 in (i, j) else 25)
        if i == j == k + 1:
            return base + 28
        return base + 25 if k + 1 in (i, j) else base


class BlockCyclic:
    """2-D block-cyclic owner of each tile over a pr × pc grid of workers (ScaLAPACK's distribution).

    Every update of tile (i, j) runs where the tile lives, so the Schur complement never moves; only panel tiles
    travel, along their block row and column. Used as a loose restriction: a lost worker's tiles move on.
    """

    def __init__(self, workers: list[str]):
        self.workers = list(workers)
        p = len(self.workers)
        pc = int(math.isqrt(p))
        while p % pc:
            pc -= 1
        # pr >= pc: tile rows are spread over more workers, so the panel solves of one step run in parallel
        self.pr, self.pc = p // pc, pc

    def owner(self, i: int, j: int) -> str:
        return self.workers[(i % self.pr) * self.pc + (j % self.pc)]

    def __call__(self, key):
        tile, _, _ = tile_and_step(key)
        return list(self.workers) if tile is None else [self.owner(*tile)]


def block_cyclic(workers) -> BlockCyclic | None:
    """The tiles' owners on these workers: block-cyclic over them when dask config ``dlogdet.scheduling.placement``
    says so (the default) and there is more than one, else None (no placement)."""
    workers = sorted(workers)
    if len(workers) > 1 and config.get("scheduling.placement", "block-cyclic") == "block-cyclic":
        return BlockCyclic(workers)
    return None
