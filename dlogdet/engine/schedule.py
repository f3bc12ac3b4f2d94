"""The right-looking schedule of a tiled factorization, as typed steps: written once, emitted twice.

Right-looking, lower triangle only (all of the matrix for LU), one trailing update per task, as PLASMA/DPLASMA do
(:mod:`dlogdet.linalg.kernels` has the block equations). Step k of nt:

==========================  ======================  ==============================================================
step                        key                     what the task does
==========================  ======================  ==============================================================
``Factor(k)``               ``("potrf-<tok>", k)``  factor diagonal tile k (``sytrf`` for ``sym``, ``getrf`` for
                                                    ``gen``)
``PanelSolve(i, k)``        ``("trsm-<tok>", i, k)``  column-panel solve of tile (i, k), i > k
``RowSolve(k, j)``          ``("trsmrow-<tok>", k, j)``  row-panel solve of tile (k, j), j > k (``gen`` only)
``Update(i, j, k)``         ``("syrk-<tok>", i, i, k)``,  trailing update of tile (i, j) by panel k: i ≥ j > k (all
                            ``("gemm-<tok>", i, j, k)``   i, j > k for ``gen``)
``StepEnd(k)``              ``("done-<tok>", k)``   step k is complete (the tile store marks it on disk)
``SymmetryCheck(i, j)``     ``("symcheck-<tok>", i, j)``  symmetry of the input pair A_ij, A_ji, i > j (``spd``/``sym``
                                                    on unverified sources), off the critical path
==========================  ======================  ==============================================================

Besides, ``("pivots-<tok>", k)`` holds the log-pivots of panel k in memory (a few kB: what leaves the engine) and
``("logdet-<tok>",)`` gathers them all. Keys tell the story in the dashboard's task stream, and
:func:`tile_and_step` reads them back for the scheduling hints and the memory accounting.

:func:`dlogdet.engine.graph.emit` walks the steps once; an emitter turns each into a task: tiles held in worker
memory (:mod:`dlogdet.engine.tiles`) or tiles in the on-disk tile store (:mod:`dlogdet.engine.store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Union

#: The factorization of a diagonal tile, per ``assume``.
FACTOR = {"spd": "potrf", "sym": "sytrf", "gen": "getrf"}
#: Every kind of task a factorization graph holds (the first part of its keys).
KINDS = ("potrf", "sytrf", "getrf", "trsm", "trsmrow", "syrk", "gemm", "pivots", "done", "symcheck", "logdet")


@dataclass(frozen=True)
class Tiling:
    """Tiles of size ``block_size`` over ``n`` rows; the last one is ragged."""

    n: int
    block_size: int

    @property
    def nt(self) -> int:
        """Tiles per side (panels)."""
        return -(-self.n // self.block_size)

    def bounds(self, k: int) -> tuple[int, int]:
        """First and one-past-last row of tile k."""
        return k * self.block_size, min((k + 1) * self.block_size, self.n)

    def tiles_lower(self) -> int:
        """Tiles of the lower triangle, nt(nt+1)/2."""
        return self.nt * (self.nt + 1) // 2


# ------------------------------------------------------------------------------------------------------ the steps

@dataclass(frozen=True)
class Factor:
    """Factor diagonal tile k (``last``: the last one, where a singular pivot is allowed)."""

    k: int
    last: bool


@dataclass(frozen=True)
class PanelSolve:
    """Column-panel solve of tile (i, k), i > k."""

    i: int
    k: int


@dataclass(frozen=True)
class RowSolve:
    """Row-panel solve of tile (k, j), j > k (LU only)."""

    k: int
    j: int


@dataclass(frozen=True)
class Update:
    """Trailing update of tile (i, j) by panel k."""

    i: int
    j: int
    k: int


@dataclass(frozen=True)
class StepEnd:
    """Step k is complete."""

    k: int


@dataclass(frozen=True)
class SymmetryCheck:
    """Symmetry of the input pair A_ij, A_ji, i > j."""

    i: int
    j: int


Step = Union[Factor, PanelSolve, RowSolve, Update, StepEnd]


@dataclass(frozen=True)
class Schedule:
    """The steps of one factorization from step ``start`` on (0: a fresh run; > 0: a run resumed there), and its
    key names (``token``: same inputs, same keys)."""

    tiling: Tiling
    assume: str
    token: str
    start: int = 0

    @property
    def nt(self) -> int:
        """Panels."""
        return self.tiling.nt

    @property
    def general(self) -> bool:
        """LU: the whole matrix, row panels too."""
        return self.assume == "gen"

    @property
    def names(self) -> dict[str, str]:
        """Kind -> key name, for every kind of task (``names["trsm"] == "trsm-<tok>"``)."""
        return {kind: self.name(kind) for kind in (FACTOR[self.assume],) + KINDS[3:]}

    def name(self, kind: str) -> str:
        """The first part of the keys of ``kind``."""
        return f"{kind}-{self.token}"

    def key(self, step: Step | SymmetryCheck) -> tuple:
        """The key of a step's task."""
        if isinstance(step, Factor):
            return self.name(FACTOR[self.assume]), step.k
        if isinstance(step, PanelSolve):
            return self.name("trsm"), step.i, step.k
        if isinstance(step, RowSolve):
            return self.name("trsmrow"), step.k, step.j
        if isinstance(step, Update):
            return self.name("syrk" if step.i == step.j else "gemm"), step.i, step.j, step.k
        if isinstance(step, StepEnd):
            return self.name("done"), step.k
        return self.name("symcheck"), step.i, step.j

    @property
    def output_key(self) -> tuple:
        """The key of the gathered log-pivots."""
        return (self.name("logdet"),)

    def input_tiles(self) -> Iterator[tuple[int, int]]:
        """The tiles (i, j) the factorization reads, as they stand before step ``start``."""
        for i in range(self.start, self.nt):
            for j in range(self.start, self.nt if self.general else i + 1):
                yield i, j

    def steps(self) -> Iterator[Step]:
        """The steps in the order their tasks enter the graph: per panel k, the factor, the panel solves, the
        trailing updates, the end of the step."""
        nt = self.nt
        for k in range(self.start, nt):
            yield Factor(k, k == nt - 1)
            for i in range(k + 1, nt):
                yield PanelSolve(i, k)
                if self.general:
                    yield RowSolve(k, i)
            for i in range(k + 1, nt):
                for j in range(k + 1, nt if self.general else i + 1):
                    yield Update(i, j, k)
            yield StepEnd(k)

    def symmetry_checks(self) -> Iterator[SymmetryCheck]:
        """One check per off-diagonal pair of input tiles (none in a resumed run: they passed before)."""
        if self.start:
            return
        for i in range(self.nt):
            for j in range(i):
                yield SymmetryCheck(i, j)


# ------------------------------------------------------------------------------------------- counts in closed form

def task_count(nt: int, assume: str) -> int:
    """Tasks of the factorization graph with nt panels: factor and pivots per panel, panel solves and updates
    (without the gather task and the symmetry checks)."""
    if assume == "gen":
        return sum(2 + 2 * (nt - k - 1) + (nt - k - 1) ** 2 for k in range(nt))
    return sum(2 + (nt - k - 1) + (nt - k - 1) * (nt - k) // 2 for k in range(nt))


def tile_count(nt: int, assume: str) -> int:
    """Tiles the factorization touches: nt² for LU, the lower triangle nt(nt+1)/2 otherwise."""
    return nt * nt if assume == "gen" else nt * (nt + 1) // 2


def panel_work_fraction(nt: int, done: int) -> float:
    """Fraction of the flops of a right-looking factorization spent in its first ``done`` of nt panels."""
    if nt <= 0:
        return 1.0
    return 1.0 - ((nt - done) / nt) ** 3


# ----------------------------------------------------------------------------------------------- keys read back

def tile_and_step(key) -> tuple[tuple[int, int] | None, int | None, str]:
    """The tile a task writes, the step (panel) it belongs to, and its kind, from its key."""
    if not (isinstance(key, tuple) and key and isinstance(key[0], str)):
        return None, None, ""
    kind, idx = key[0].split("-", 1)[0], tuple(int(v) for v in key[1:])
    if kind in ("potrf", "sytrf", "getrf", "pivots"):
        return (idx[0], idx[0]), idx[0], kind
    if kind == "trsm":
        return (idx[0], idx[1]), idx[1], kind
    if kind == "trsmrow":
        return (idx[0], idx[1]), idx[0], kind
    if kind in ("gemm", "syrk"):
        return (idx[0], idx[1]), idx[2], kind
    if kind == "symcheck":
        return (idx[0], idx[1]), idx[1], kind
    return None, None, kind
