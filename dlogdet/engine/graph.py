"""Tiled factorizations as Dask task graphs (built here, computed by :mod:`dlogdet.runtime`).

Right-looking, lower triangle only, one trailing update per task, as PLASMA/DPLASMA do (see
:mod:`dlogdet.kernels` for the block equations). Keys tell the story in the dashboard's task stream:

==========================  =============================================================
``("potrf-<tok>", k)``      factor diagonal tile k (``sytrf`` for ``sym``, ``getrf`` for ``gen``)
``("trsm-<tok>", i, k)``    column-panel solve of tile (i, k)
``("trsmrow-<tok>", k, j)`` row-panel solve of tile (k, j) (``gen`` only)
``("syrk-<tok>", i, i, k)`` trailing update of diagonal tile i by panel k
``("gemm-<tok>", i, j, k)`` trailing update of off-diagonal tile (i, j) by panel k
``("pivots-<tok>", k)``     the log-pivots of panel k (a few kB: what leaves the engine)
``("symcheck-<tok>", i, j)``  symmetry check of the input pair A_ij, A_ji (``spd``/``sym`` on unverified sources)
``("logdet-<tok>",)``       all log-pivots, gathered
==========================  =============================================================

Input tiles are read inside the first task that needs them (a nested task), so a tile travels from its
source straight to the worker that uses it. A factor tile is released as soon as its panel's updates ran.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from dask.base import tokenize

from ..linalg import backend as B
from ..core import config
from ..linalg import kernels as K
from ..core.errors import InputError, MemoryBudgetError
from ..sources import ArraySource, DaskArraySource, TileSource


@dataclass(frozen=True)
class Tiling:
    """Tiles of size ``block_size`` over ``n`` rows; the last one is ragged."""

    n: int
    block_size: int

    @property
    def nt(self) -> int:
        return -(-self.n // self.block_size)

    def bounds(self, k: int) -> tuple[int, int]:
        return k * self.block_size, min((k + 1) * self.block_size, self.n)

    def tiles_lower(self) -> int:
        return self.nt * (self.nt + 1) // 2


def auto_block_size(n: int, workers: int = 1, *, itemsize: int = 8, budget: int | None = None) -> int:
    """Tile size for n rows on ``workers`` workers.

    Big tiles make BLAS efficient and keep the per-task overhead (~3 ms) small; enough tiles keep every worker
    busy: the first trailing update has about nt²/2 independent tasks, so we ask for nt ≥ √(8·workers), and for
    at least 8 panels, which keeps the critical path (one POTRF, TRSM and SYRK per panel) short on small clusters.
    Bounded by ``dlogdet.min-block-size``/``max-block-size`` (exceeded only when n needs more than a quarter of
    ``dlogdet.max-tasks`` tasks) and, with a budget, by budget/8 bytes per tile (an update holds three tiles and its
    output; the rest is headroom).
    """
    lo = int(config.get("min-block-size", 256))
    hi = int(config.get("max-block-size", 2048))
    nt = max(8, math.ceil(math.sqrt(8 * max(1, workers))))
    bs = max(lo, min(hi, math.ceil(n / nt)))
    # a huge n: grow the tile past max-block-size rather than build a graph of more than a quarter of
    # dlogdet.max-tasks tasks (about nt³/6 of them)
    nt_cap = max(1, int((6 * int(config.get("max-tasks", 2_000_000)) / 4) ** (1 / 3)))
    if math.ceil(n / bs) > nt_cap:
        bs = math.ceil(n / nt_cap)
    if budget is not None:
        cap = int(math.sqrt(budget / 8 / itemsize))
        smallest = min(lo, n)
        if cap < smallest:
            need = 8 * itemsize * smallest * smallest
            raise MemoryBudgetError(
                f"a budget of {budget} bytes per worker cannot hold the working set of the smallest tile "
                f"({smallest}x{smallest}); give at least {need} bytes ({need / 2**20:.1f} MiB) per worker", needed=need)
        bs = min(bs, cap)
    return max(1, min(bs, n))


def store_block_size(n: int, workers: int, budget: int, itemsize: int) -> int:
    """Tile size of an out-of-core run: the largest b whose task working set (``dlogdet.memory.tiles-per-task``
    tiles of b² items) fits in the budget, a multiple of 64, with enough panels to keep every worker busy.

    Raises
    ------
    MemoryBudgetError
        When the budget cannot hold the working set of the smallest tile (``dlogdet.min-block-size``).
    """
    per_task = int(config.get("memory.tiles-per-task", 5))
    lo = min(int(config.get("min-block-size", 256)), n)
    b = int(math.isqrt(budget // (per_task * itemsize)))
    if b < lo:
        need = per_task * itemsize * lo * lo
        raise MemoryBudgetError(
            f"a budget of {budget} bytes ({budget / 2**20:.1f} MiB) per worker cannot hold one task's working set "
            f"({per_task} tiles of {lo}x{lo}); the smallest budget that works is {need} bytes "
            f"({need / 2**20:.1f} MiB)", needed=need)
    nt_min = max(2, math.ceil(math.sqrt(8 * max(1, workers))))
    b = min(b, int(config.get("memory.store-max-block-size") or 8192), max(lo, math.ceil(n / nt_min)))
    return max(lo, b - b % 64) if b >= 64 else b


def choose_mode(n: int, itemsize: int, budget: int | None, workers: int, assume: str) -> str:
    """``"store"`` (out of core) or ``"memory"``: dask config ``dlogdet.memory.mode``, or with ``auto`` the store
    when the matrix's lower triangle (all of it for ``gen``) exceeds half of the workers' summed budgets."""
    mode = config.get("memory.mode", "auto")
    if mode not in ("auto", "memory", "store"):
        raise InputError(f"dask config 'dlogdet.memory.mode' must be auto, memory or store, got {mode!r}")
    if mode != "auto":
        if mode == "store" and budget is None:
            raise InputError("dlogdet.memory.mode='store' needs a budget: pass budget='2GiB' (per worker)")
        return mode
    if budget is None:
        return "memory"
    return "store" if matrix_bytes(n, itemsize, assume) > 0.5 * budget * workers else "memory"


def matrix_bytes(n: int, itemsize: int, assume: str) -> int:
    """Bytes of what the factorization reads: the lower triangle (all of it for ``gen``)."""
    return n * n * itemsize if assume == "gen" else n * (n + 1) // 2 * itemsize


def task_count(nt: int, assume: str) -> int:
    """Tasks of the factorization graph with nt panels (without the gather task)."""
    if assume == "gen":
        return sum(2 + 2 * (nt - k - 1) + (nt - k - 1) ** 2 for k in range(nt))
    return sum(2 + (nt - k - 1) + (nt - k - 1) * (nt - k) // 2 for k in range(nt))


# --------------------------------------------------------------------------------------------------------------
# Tasks (top-level functions: they are pickled into the graph)
# --------------------------------------------------------------------------------------------------------------

def read_tile(source: TileSource, r0: int, r1: int, c0: int, c1: int):
    return source.tile(r0, r1, c0, c1)


def whole(x):
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
    tile = B.to_backend(raw, spec.backend)
    return K.prepare_tile(tile, r0=r0, c0=c0, t=spec.t, d=spec.d, check_finite=spec.check_finite,
                          symmetry_rtol=spec.symmetry_rtol, tile_index=(i, j))


def gather_pivots(checks: list, *pivots: K.Pivots) -> tuple[np.ndarray, np.ndarray]:
    """All log-pivots and signs, in row order (``checks``: the symmetry checks, which must have passed)."""
    return (np.concatenate([p.log_abs for p in pivots]),
            np.concatenate([p.sign for p in pivots]).astype(np.int8))


# --------------------------------------------------------------------------------------------------------------
# Graph
# --------------------------------------------------------------------------------------------------------------

@dataclass
class FactorGraph:
    """A factorization graph and the keys a driver needs."""

    dsk: dict
    output_key: tuple
    panel_keys: list
    tiling: Tiling
    assume: str
    token: str
    n_tasks: int
    names: dict = field(default_factory=dict)


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


def raw_refs(source: TileSource, tiling: Tiling, token: str, tiles: dict | None = None, source_ref=None):
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


def build_factor_graph(source: TileSource, assume: str, tiling: Tiling, *, t: float = 1.0, d=0.0,
                       backend: str = "numpy", check_finite: bool = True, symmetry_rtol: float | None = None,
                       tiles: dict | None = None, source_ref=None, token: str | None = None) -> FactorGraph:
    """The task graph of the tiled factorization of M = t·A + diag(d).

    Parameters
    ----------
    source : TileSource
    assume : {"spd", "sym", "gen"}
    tiling : Tiling
    t, d : scale and diagonal shift (d a scalar or an array of length n).
    backend : "numpy", "cupy" or "auto" (resolved on each worker).
    check_finite : refuse NaN/Inf in input tiles.
    symmetry_rtol : check symmetry (reading the mirror tiles) with this tolerance; None to skip.
    tiles : pre-scattered input tiles {(i, j): future}, for in-memory arrays on a cluster.
    source_ref : a future of ``source`` broadcast to the workers (so no worker is preferred for loading).
    """
    if assume not in K.ASSUME:
        raise ValueError(f"assume must be one of {K.ASSUME}, got {assume!r}")
    token = token or graph_token(source, assume, tiling, t, d, backend, check_finite, symmetry_rtol)
    nt = tiling.nt
    gen = assume == "gen"
    dsk, ref = raw_refs(source, tiling, token, tiles, source_ref)
    fname = {"spd": "potrf", "sym": "sytrf", "gen": "getrf"}[assume]
    names = {k: f"{k}-{token}" for k in (fname, "trsm", "trsmrow", "syrk", "gemm", "pivots", "symcheck", "logdet")}
    d_vec = None if np.isscalar(d) else np.asarray(d, dtype=np.float64)

    def load(i, j):
        r0, r1 = tiling.bounds(i)
        c0, c1 = tiling.bounds(j)
        dd = None
        if i == j:
            dd = float(d) if d_vec is None else d_vec[r0:r1]
        spec = LoadSpec(t=float(t), d=dd, check_finite=check_finite, symmetry_rtol=symmetry_rtol,
                        backend=backend)
        return (load_tile, ref(i, j), spec, r0, c0, i, j)

    # current expression of each tile: a nested load task until its first update, then a key
    cur: dict[tuple[int, int], Any] = {}
    for i in range(nt):
        for j in range(nt if gen else i + 1):
            cur[i, j] = load(i, j)

    panel_keys = []
    for k in range(nt):
        r0, _ = tiling.bounds(k)
        fk = (names[fname], k)
        dsk[fk] = (K.factor_diag, cur[k, k], assume, r0, k == nt - 1) if assume != "spd" else \
            (K.potrf, cur[k, k], r0)
        pk = (names["pivots"], k)
        dsk[pk] = (K.pivots, fk)
        panel_keys.append(pk)
        col = {}
        row = {}
        for i in range(k + 1, nt):
            key = (names["trsm"], i, k)
            dsk[key] = (K.trsm, fk, cur[i, k])
            col[i] = key
            if gen:
                key = (names["trsmrow"], k, i)
                dsk[key] = (K.trsm_row, fk, cur[k, i])
                row[i] = key
        for i in range(k + 1, nt):
            for j in range(k + 1, nt if gen else i + 1):
                name = names["syrk"] if i == j else names["gemm"]
                key = (name, i, j, k)
                if gen:
                    dsk[key] = (K.update_gen, cur[i, j], col[i], row[j])
                else:
                    dsk[key] = (K.update, cur[i, j], col[i], col[j])
                cur[i, j] = key
    # symmetry of the off-diagonal pairs: tasks of their own, off the critical path, that the result waits for
    checks = []
    if symmetry_rtol is not None:
        for i in range(nt):
            for j in range(i):
                key = (names["symcheck"], i, j)
                dsk[key] = (K.check_symmetric_pair, ref(i, j), ref(j, i), symmetry_rtol, *tiling.bounds(i)[:1],
                            tiling.bounds(j)[0], i, j, check_finite)
                checks.append(key)
    out = (names["logdet"],)
    dsk[out] = (gather_pivots, checks, *panel_keys)
    n_tasks = len(dsk) - (1 if f"source-{token}" in dsk else 0)
    return FactorGraph(dsk, out, panel_keys, tiling, assume, token, n_tasks, names)


def panel_work_fraction(nt: int, done: int) -> float:
    """Fraction of the flops of a right-looking factorization spent in its first ``done`` of nt panels."""
    if nt <= 0:
        return 1.0
    return 1.0 - ((nt - done) / nt) ** 3


# --------------------------------------------------------------------------------------------------------------
# Scheduling hints for a distributed cluster (picklable callables of the key, used with dask.annotate)
# --------------------------------------------------------------------------------------------------------------

def _kind_and_indices(key) -> tuple[str, tuple[int, ...]]:
    if isinstance(key, tuple) and key and isinstance(key[0], str):
        return key[0].split("-", 1)[0], tuple(int(v) for v in key[1:])
    return "", ()


def tile_and_step(key) -> tuple[tuple[int, int] | None, int | None, str]:
    """The tile a task writes, the step (panel) it belongs to, and its kind."""
    kind, idx = _kind_and_indices(key)
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
