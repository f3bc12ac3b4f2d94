"""The exact plan: mode, tile size, store slots, scratch and memory of a run, decided once, with the reason for each.

:func:`plan_exact` is the one place these rules live. :mod:`dlogdet.estimators.exact` runs what it decides, and
:func:`dlogdet.plan` reports it with its time model on top, so a plan's tile and mode are the engine's by
construction. The rules:

* **mode** (:func:`choose_mode`): ``"store"`` (the trailing matrix in the on-disk tile store) when the matrix's lower
  triangle (all of it for ``gen``) exceeds half of the workers' summed budgets, unless dask config
  ``dlogdet.memory.mode`` forces one; ``"memory"`` without a budget.
* **tile** in memory (:func:`memory_tile`): at least 8 panels and √(8·workers) of them, within
  ``dlogdet.min-block-size``/``max-block-size``, at most a quarter of ``dlogdet.max-tasks`` tasks, and a tile of at
  most budget/8 bytes (an update holds three tiles and its output; the rest is headroom).
* **tile** out of core (:func:`store_tile`): the largest multiple of 64 whose ``dlogdet.memory.tiles-per-task``
  tiles fit in the budget, at most ``dlogdet.memory.store-max-block-size``, with √(8·workers) panels (at least 2).
* **given** ``block_size=`` or dask config ``dlogdet.block-size``: taken as it is, refused out of core when its
  working set exceeds the budget (:func:`check_store_tile`).
* **per-task overhead** (:func:`overhead_tile`, applied by :func:`dlogdet.plan` on GPU workers, whose rate the engine
  does not know): the smallest tile whose trailing update takes 1/``dlogdet.plan.max-overhead`` times the
  scheduler's cost per task for every task slot it serves (one scheduler feeds all slots), and the worker's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

from ..core import config
from ..core.diagnostics import format_bytes
from ..core.errors import InputError, MemoryBudgetError
from .schedule import FACTOR, Tiling, task_count, tile_count

MODES = ("auto", "memory", "store")


def matrix_bytes(n: int, itemsize: int, assume: str) -> int:
    """Bytes of what the factorization reads: the lower triangle (all of it for ``gen``)."""
    return n * n * itemsize if assume == "gen" else n * (n + 1) // 2 * itemsize


def tiles_per_task() -> int:
    """``dlogdet.memory.tiles-per-task``, checked: the tiles one task holds at once (3 inputs, 1 output, 1
    temporary by default)."""
    v = config.get("memory.tiles-per-task", 5)
    if isinstance(v, bool) or not isinstance(v, int) and not hasattr(v, "__index__") or int(v) < 1:
        raise InputError(f"dask config dlogdet.memory.tiles-per-task must be an integer >= 1, got {v!r}")
    return int(v)


# ------------------------------------------------------------------------------------------------------------ mode

def mode_and_reason(n: int, itemsize: int, budget: int | None, workers: int, assume: str) -> tuple[str, str]:
    """``("store" | "memory", why)``: the tile store when the matrix exceeds half of the workers' summed budgets
    (dask config ``dlogdet.memory.mode`` may force either)."""
    mode = config.get("memory.mode", "auto")
    if mode not in MODES:
        raise InputError(f"dask config 'dlogdet.memory.mode' must be auto, memory or store, got {mode!r}")
    if mode != "auto":
        if mode == "store" and budget is None:
            raise InputError("dlogdet.memory.mode='store' needs a budget: pass budget='2GiB' (per worker)")
        return mode, f"forced by dask config dlogdet.memory.mode = {mode}"
    if budget is None:
        return "memory", "no budget (dask config dlogdet.memory.budget is null): tiles stay in worker memory"
    size, half = matrix_bytes(n, itemsize, assume), 0.5 * budget * workers
    if size > half:
        return "store", (f"the matrix ({format_bytes(size)}) takes more than half of the summed budgets "
                         f"({format_bytes(half)}): tiles live in the on-disk tile store")
    return "memory", (f"the matrix ({format_bytes(size)}) takes at most half of the summed budgets "
                      f"({format_bytes(half)})")


def choose_mode(n: int, itemsize: int, budget: int | None, workers: int, assume: str) -> str:
    """``"store"`` (out of core) or ``"memory"`` (:func:`mode_and_reason` without the reason)."""
    return mode_and_reason(n, itemsize, budget, workers, assume)[0]


# ------------------------------------------------------------------------------------------------------- tile size

class Tile(NamedTuple):
    """A tile size and the limit that chose it, in words."""

    size: int
    limited_by: str


def memory_tile(n: int, workers: int = 1, *, itemsize: int = 8, budget: int | None = None) -> Tile:
    """The tile of a run in worker memory, and which limit chose it.

    Big tiles make BLAS efficient and keep the per-task overhead (~3 ms) small; enough tiles keep every worker
    busy: the first trailing update has about nt²/2 independent tasks, so we ask for nt ≥ √(8·workers), and for
    at least 8 panels, which keeps the critical path (one POTRF, TRSM and SYRK per panel) short on small clusters.
    Bounded by ``dlogdet.min-block-size``/``max-block-size`` (exceeded only when n needs more than a quarter of
    ``dlogdet.max-tasks`` tasks) and, with a budget, by budget/8 bytes per tile.

    Raises
    ------
    MemoryBudgetError
        When the budget cannot hold the working set of the smallest tile.
    """
    lo = int(config.get("min-block-size", 256))
    hi = int(config.get("max-block-size", 2048))
    nt = max(8, math.ceil(math.sqrt(8 * max(1, workers))))
    want = math.ceil(n / nt)
    bs = max(lo, min(hi, want))
    why = (f"smallest tile (dlogdet.min-block-size = {lo})" if want < lo
           else f"dlogdet.max-block-size = {hi}" if want > hi
           else f"parallelism: {nt} panels (at least 8 and ceil(sqrt(8 x workers)))")
    # a huge n: grow the tile past max-block-size rather than build a graph of more than a quarter of
    # dlogdet.max-tasks tasks (about nt³/6 of them)
    max_tasks = int(config.get("max-tasks", 2_000_000))
    nt_cap = max(1, int((6 * max_tasks / 4) ** (1 / 3)))
    if math.ceil(n / bs) > nt_cap:
        bs = math.ceil(n / nt_cap)
        why = f"dlogdet.max-tasks = {max_tasks}: at most {nt_cap} panels"
    if budget is not None:
        cap = int(math.sqrt(budget / 8 / itemsize))
        smallest = min(lo, n)
        if cap < smallest:
            need = 8 * itemsize * smallest * smallest
            raise MemoryBudgetError(
                f"a budget of {budget} bytes per worker cannot hold the working set of the smallest tile "
                f"({smallest}x{smallest}); give at least {need} bytes ({need / 2**20:.1f} MiB) per worker", needed=need)
        if cap < bs:
            bs, why = cap, "memory budget: a tile takes at most budget/8 in memory mode"
    if n <= bs:
        return Tile(max(1, n), "n: one tile")
    return Tile(max(1, bs), why)


def auto_block_size(n: int, workers: int = 1, *, itemsize: int = 8, budget: int | None = None) -> int:
    """Tile size for n rows on ``workers`` workers in worker memory (:func:`memory_tile`)."""
    return memory_tile(n, workers, itemsize=itemsize, budget=budget).size


def largest_tile(capacity: int, per_task: int, itemsize: int, smallest: int, refusal: Callable[[int], str]) -> int:
    """The largest b whose ``per_task`` tiles of b² items fit in ``capacity`` bytes; a :class:`MemoryBudgetError`
    (``refusal(needed bytes)``) when not even ``smallest`` fits."""
    fit = math.isqrt(capacity // (per_task * itemsize))
    if fit < smallest:
        need = per_task * itemsize * smallest * smallest
        raise MemoryBudgetError(refusal(need), needed=need)
    return fit


def store_tile(n: int, workers: int, budget: int, itemsize: int) -> Tile:
    """The tile of an out-of-core run, and which limit chose it: the largest b whose task working set
    (``dlogdet.memory.tiles-per-task`` tiles of b² items) fits in the budget, a multiple of 64, with enough panels
    to keep every worker busy.

    Raises
    ------
    MemoryBudgetError
        When the budget cannot hold the working set of the smallest tile (``dlogdet.min-block-size``).
    """
    per_task = tiles_per_task()
    lo = min(int(config.get("min-block-size", 256)), n)
    fit = largest_tile(budget, per_task, itemsize, lo, lambda need: (
        f"a budget of {budget} bytes ({budget / 2**20:.1f} MiB) per worker cannot hold one task's working set "
        f"({per_task} tiles of {lo}x{lo}); the smallest budget that works is {need} bytes ({need / 2**20:.1f} MiB)"))
    nt_min = max(2, math.ceil(math.sqrt(8 * max(1, workers))))
    store_max = int(config.get("memory.store-max-block-size") or 8192)
    wide = max(lo, math.ceil(n / nt_min))
    b, why = min(((fit, f"memory budget: {per_task} tiles per task"),
                  (store_max, f"dlogdet.memory.store-max-block-size = {store_max}"),
                  (wide, f"parallelism: at least {nt_min} panels (ceil(sqrt(8 x workers)), at least 2)"
                   if math.ceil(n / nt_min) >= lo else f"smallest tile (dlogdet.min-block-size = {lo})")),
                 key=lambda limit: limit[0])
    if b >= 64 and max(lo, b - b % 64) != b:
        b, why = max(lo, b - b % 64), why + ", rounded down to a multiple of 64"
    return Tile(b, "n: one tile") if n <= b else Tile(b, why)


def overhead_tile(gemm_flops: float, task_seconds: float, task_latency: float, task_slots: int,
                  fraction: float) -> Tile:
    """The smallest tile whose trailing update keeps the per-task overhead under ``fraction`` of its time, a multiple
    of 64, and the limit in words.

    An update of a b×b tile is 2b³ flops, b³ = t·gemm/2 for t seconds. One scheduler hands out every task, one at a
    time, so while a task runs it serves the ``task_slots`` slots of the cluster: its cost is
    ``task_slots · task_seconds`` per task's time, next to the worker's own ``task_latency``; both must stay under
    ``fraction`` of t.
    """
    if not 0 < fraction < 1:
        raise InputError(f"dask config dlogdet.plan.max-overhead must be a fraction in (0, 1), got {fraction!r}")
    per_task = max(task_slots * task_seconds, task_latency)
    t = per_task / fraction
    b = math.ceil((t * gemm_flops / 2.0) ** (1.0 / 3.0))
    b = -(-b // 64) * 64
    who = (f"{task_slots} task slots x {task_seconds * 1e3:g} ms of the scheduler per task"
           if task_slots * task_seconds >= task_latency else f"{task_latency * 1e3:g} ms of a worker per task")
    return Tile(b, f"per-task overhead: {who} <= {fraction:.0%} of a tile update (2b^3 flops at "
                   f"{gemm_flops / 1e12:g} TFLOP/s: {2.0 * b ** 3 / gemm_flops:.2f} s)")


def store_block_size(n: int, workers: int, budget: int, itemsize: int) -> int:
    """Tile size of an out-of-core run (:func:`store_tile`)."""
    return store_tile(n, workers, budget, itemsize).size


def check_store_tile(b: int, budget: int, per_task: int, itemsize: int) -> None:
    """Refuse a given tile out of core whose ``per_task`` tiles exceed the budget, naming the largest that fits."""
    need = per_task * b * b * itemsize
    if need > budget:
        raise MemoryBudgetError(
            f"block_size={b} needs {per_task} tiles = {need / 2**20:.1f} MiB per task, more than the budget of "
            f"{budget / 2**20:.1f} MiB; use block_size <= {math.isqrt(budget // (per_task * itemsize))}",
            needed=need)


# ------------------------------------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class ExactPlan:
    """What an exact run does, decided by :func:`plan_exact`; sizes in bytes.

    Attributes
    ----------
    mode, mode_reason : str
        ``"memory"`` or ``"store"``, and why.
    block_size, block_size_limited_by : int, str
        The tile, and the limit that chose it.
    tiles_per_task : int
        Tiles one store task holds at once (``dlogdet.memory.tiles-per-task``).
    max_tasks : int
        The largest graph the engine builds (``dlogdet.max-tasks``).
    """

    n: int
    itemsize: int
    assume: str
    workers: int
    budget: int | None
    mode: str
    mode_reason: str
    block_size: int
    block_size_limited_by: str
    tiles_per_task: int
    max_tasks: int

    @property
    def tiling(self) -> Tiling:
        return Tiling(self.n, self.block_size)

    @property
    def n_panels(self) -> int:
        return self.tiling.nt

    @property
    def n_tiles(self) -> int:
        """Tiles the factorization touches (all for ``gen``, the lower triangle otherwise)."""
        return tile_count(self.n_panels, self.assume)

    @property
    def n_tasks(self) -> int:
        """Tasks of the graph (:func:`dlogdet.engine.schedule.task_count`)."""
        return task_count(self.n_panels, self.assume)

    @property
    def tile_bytes(self) -> int:
        return self.block_size * self.block_size * self.itemsize

    @property
    def matrix_bytes(self) -> int:
        """What the factorization reads (:func:`matrix_bytes`)."""
        return matrix_bytes(self.n, self.itemsize, self.assume)

    @property
    def store_slots(self) -> int | None:
        """Store tasks that hold tiles at once in one worker process (``TileStore.slots``); None in memory."""
        if self.mode != "store" or self.budget is None:
            return None
        return max(1, self.budget // (self.tiles_per_task * self.tile_bytes))

    @property
    def scratch_bytes(self) -> int:
        """Free disk the tile store needs: the trailing matrix once, plus one step's factor and panel tiles."""
        return self.matrix_bytes + 2 * self.n_panels * self.tile_bytes if self.mode == "store" else 0

    def task_bytes(self) -> dict[str, int]:
        """The working set of one task, per kind (the budget accounting's annotation).

        In memory: the output tile (inputs are counted where they are held), plus the two raw tiles and their
        difference for a symmetry check. Out of core: a task's input tiles, its output and a temporary.
        """
        tb = self.tile_bytes
        if self.mode == "memory":
            out = {kind: 2 * tb for kind in ("potrf", "sytrf", "getrf", "trsm", "trsmrow", "gemm", "syrk")}
            out["symcheck"] = 3 * tb
            return out
        per_task = self.tiles_per_task
        return {"potrf": 3 * tb, "sytrf": 3 * tb, "getrf": 3 * tb, "trsm": 4 * tb, "trsmrow": 4 * tb,
                "gemm": per_task * tb, "syrk": per_task * tb, "symcheck": 3 * tb}

    def held_bytes(self) -> int:
        """Tiles a worker holds: its share of the matrix and a task's tiles in memory; the slots' working sets out
        of core."""
        if self.mode == "memory":
            return -(-self.matrix_bytes // self.workers) + 3 * self.tile_bytes
        return (self.store_slots or 1) * self.tiles_per_task * self.tile_bytes

    def check_task_count(self) -> None:
        """Refuse a graph of more than ``dlogdet.max-tasks`` tasks, naming a block size that fits."""
        if self.n_tasks > self.max_tasks:
            suggest = math.ceil(self.n / math.floor((6 * self.max_tasks) ** (1 / 3)))
            raise InputError(f"block_size={self.block_size} cuts n={self.n} into {self.n_panels} panels, a graph of "
                             f"{self.n_tasks} tasks (more than dlogdet.max-tasks = {self.max_tasks}); "
                             f"use block_size >= {suggest}")


def plan_exact(n: int, *, itemsize: int, assume: str, workers: int, budget: int | None,
               block_size: int | None = None, block_source: str = "given (block_size=)",
               auto_budget: str | None = None) -> ExactPlan:
    """The plan of an exact run: mode first, then the tile (``block_size``, already checked, if given).

    ``auto_budget``: how an automatic budget was obtained; a budget too small for the smallest tile then says so
    and that it can be given explicitly.

    Raises
    ------
    MemoryBudgetError
        The budget cannot hold the working set of the smallest tile, or (out of core) of the given tile.
    """
    if assume not in FACTOR:
        raise InputError(f"assume must be one of {tuple(FACTOR)}, got {assume!r}")
    mode, mode_reason = mode_and_reason(n, itemsize, budget, workers, assume)
    per_task = tiles_per_task()
    if block_size is not None:
        tile = Tile(min(block_size, n), block_source)
        if mode == "store" and budget is not None:
            check_store_tile(tile.size, budget, per_task, itemsize)
    else:
        try:
            tile = (store_tile(n, workers, budget, itemsize) if mode == "store" and budget is not None
                    else memory_tile(n, workers, itemsize=itemsize, budget=budget))
        except MemoryBudgetError as e:
            if auto_budget is None:
                raise
            raise MemoryBudgetError(f"{e}. The budget was set automatically ({auto_budget}): give workers more "
                                    "memory, or budget= explicitly", needed=e.needed) from None
    return ExactPlan(n=n, itemsize=itemsize, assume=assume, workers=workers, budget=budget, mode=mode,
                     mode_reason=mode_reason, block_size=tile.size, block_size_limited_by=tile.limited_by,
                     tiles_per_task=per_task, max_tasks=int(config.get("max-tasks", 2_000_000)))
