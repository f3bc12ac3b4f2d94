"""Blocked matrix-block products Y = M·V, M = t·A + diag(d), as Dask graphs over a source's tiles.

One product is one pass over the tiles of the lower triangle: the task of tile (i, j), i ≥ j, reads (or
generates) A_ij on its worker, multiplies it by the row blocks V_j and V_i it needs, and hands on only the two
partial products A_ij·V_j (for row block i) and A_ijᵀ·V_i (for row block j); the tile is dropped as soon as the
task ends. One sum task per row block adds its partials and applies t and d. The symmetric source is read once
per product (half the tiles of the full matrix), and the widest object any task holds is one tile plus
2·b·k numbers of V and partials (b the tile size, k the block width).

==============================  ===================================================================
``("matmat-<tok>", i, j)``      partial products of tile (i, j), i ≥ j: (A_ij V_j, A_ijᵀ V_i or None)
``("matrow-<tok>", i)``         row block i of Y: t·Σ partials + d_i·V_i
``("matcheck-<tok>", i, j)``    symmetry/finiteness check of the pair A_ij, A_ji (first product only)
``("matdiag-<tok>", i)``        diagonal of M in row block i
``("matout-<tok>",)``           Y, gathered
==============================  ===================================================================

The matrix-free product of a source that offers a plan (the NTK's pull over chunks of points, a tree of sums,
push per chunk: :class:`dlogdet.ntk.source.MatvecPlan`) is a graph too, :func:`build_plan_graph`.

Graphs are built here and computed by :mod:`dlogdet.runtime.operator`.
"""

from __future__ import annotations

import uuid
from typing import Any
from dataclasses import dataclass

import numpy as np

from ..linalg import backend as B
from ..linalg import kernels as K
from .graph import raw_refs
from .schedule import Tiling
from ..sources import TileSource


# --------------------------------------------------------------------------------------------------------------
# Tasks (top-level functions: they are pickled into the graph)
# --------------------------------------------------------------------------------------------------------------

def tile_products(raw, vj: np.ndarray, vi: np.ndarray | None, diagonal: bool, check_finite: bool,
                  symmetry_rtol: float | None, r0: int, c0: int, i: int, j: int):
    """(A_ij·V_j, A_ijᵀ·V_i) of one tile of the lower triangle (the second None on a diagonal tile).

    With ``check_finite`` or ``symmetry_rtol`` (first product), a diagonal tile is checked as the exact engine
    checks it; off-diagonal pairs are checked by :func:`check_pair`.
    """
    a = B.aligned(B.to_host(raw))
    if diagonal and (check_finite or symmetry_rtol is not None):
        K.prepare_tile(a, r0=r0, c0=c0, check_finite=check_finite, symmetry_rtol=symmetry_rtol, tile_index=(i, j))
    elif check_finite:
        K.prepare_tile(a, r0=r0, c0=c0, check_finite=True, tile_index=(i, j))
    a = a.astype(np.float64, copy=False)
    yi = a @ vj
    yj = None if diagonal else a.T @ vi
    return yi, yj


def check_pair(raw_ij, raw_ji, rtol: float, r0: int, c0: int, i: int, j: int, check_finite: bool):
    """The symmetry of an off-diagonal pair (the exact engine's check and message)."""
    K.check_symmetric_pair(B.to_host(raw_ij), B.to_host(raw_ji), rtol, r0, c0, i, j, check_finite)
    return None


def row_sum(checks, t: float, d, v: np.ndarray, *parts):
    """t·Σ parts + d·v for one row block (``parts``: (tuple, index) pairs; ``checks`` must have passed)."""
    acc: Any = None
    for p, which in zip(parts[::2], parts[1::2]):
        y = p[which]
        acc = y.copy() if acc is None else acc + y
    out = t * acc
    if d is not None:
        out += (d[:, None] if np.ndim(d) else d) * v
    return out


def concat_rows(*rows):
    return np.concatenate(rows, axis=0)


def tile_diagonal(raw, t: float, d):
    """diag(t·A_ii + diag(d_i)) of a diagonal tile."""
    out = t * np.diagonal(B.to_host(raw)).astype(np.float64)
    return out + (d if d is not None else 0.0)


# --------------------------------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------------------------------

@dataclass
class ProductGraph:
    """A product graph and its output key (``Y`` of shape (n, k), or the diagonal of M)."""

    dsk: dict
    output_key: tuple
    n_tasks: int
    token: str


def _d_slice(d, r0: int, r1: int):
    if d is None:
        return None
    return float(d) if np.ndim(d) == 0 else np.asarray(d, dtype=np.float64)[r0:r1]


def build_matmat_graph(source: TileSource, tiling: Tiling, V: np.ndarray, *, t: float = 1.0, d=0.0,
                       check_finite: bool = False, symmetry_rtol: float | None = None, tiles: dict | None = None,
                       source_ref=None, token: str | None = None) -> ProductGraph:
    """The graph of ``Y = (t·A + diag(d))·V`` for a symmetric A read through its lower-triangle tiles.

    Parameters
    ----------
    source : TileSource
    tiling : Tiling
    V : array (n, k)
        The block; its row blocks are placed in the graph once each.
    t, d : scale and diagonal shift (d a scalar or an array of length n).
    check_finite, symmetry_rtol : check the input tiles (a first product): finiteness, and with a tolerance the
        symmetry of every pair A_ij, A_ji (which reads the upper triangle too).
    tiles, source_ref : as :func:`dlogdet.engine.graph.raw_refs` (scattered tiles, or the source on every worker).
    """
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2 or V.shape[0] != tiling.n:
        raise ValueError(f"V must have shape ({tiling.n}, k), got {V.shape}")
    token = token or uuid.uuid4().hex
    nt = tiling.nt
    dsk, ref = raw_refs(source, tiling, token, tiles, source_ref)
    name = {k: f"{k}-{token}" for k in ("matmat", "matrow", "matcheck", "matout", "vblock")}
    for i in range(nt):
        r0, r1 = tiling.bounds(i)
        dsk[(name["vblock"], i)] = V[r0:r1]
    checks = []
    for i in range(nt):
        r0, _ = tiling.bounds(i)
        for j in range(i + 1):
            c0, _ = tiling.bounds(j)
            diag = i == j
            dsk[(name["matmat"], i, j)] = (tile_products, ref(i, j), (name["vblock"], j),
                                           None if diag else (name["vblock"], i), diag, check_finite,
                                           symmetry_rtol if diag else None, r0, c0, i, j)
            if symmetry_rtol is not None and not diag:
                key = (name["matcheck"], i, j)
                dsk[key] = (check_pair, ref(i, j), ref(j, i), symmetry_rtol, r0, c0, i, j, check_finite)
                checks.append(key)
    rows = []
    for i in range(nt):
        r0, r1 = tiling.bounds(i)
        parts = []
        for j in range(i + 1):
            parts += [(name["matmat"], i, j), 0]
        for j in range(i + 1, nt):
            parts += [(name["matmat"], j, i), 1]
        row_key = (name["matrow"], i)
        dsk[row_key] = (row_sum, checks, float(t), _d_slice(d, r0, r1), (name["vblock"], i), *parts)
        rows.append(row_key)
    out = (name["matout"],)
    dsk[out] = (concat_rows, *rows)
    n_tasks = len(dsk) - nt - (1 if f"source-{token}" in dsk else 0)
    return ProductGraph(dsk, out, n_tasks, token)


def build_diagonal_graph(source: TileSource, tiling: Tiling, *, t: float = 1.0, d=0.0, tiles: dict | None = None,
                         source_ref=None, token: str | None = None) -> ProductGraph:
    """The graph of diag(M), M = t·A + diag(d), from the diagonal tiles only (nt tiles of the nt(nt+1)/2)."""
    token = token or uuid.uuid4().hex
    dsk, ref = raw_refs(source, tiling, token, tiles, source_ref)
    rows = []
    for i in range(tiling.nt):
        r0, r1 = tiling.bounds(i)
        key = (f"matdiag-{token}", i)
        dsk[key] = (tile_diagonal, ref(i, i), float(t), _d_slice(d, r0, r1))
        rows.append(key)
    out = (f"matout-{token}",)
    dsk[out] = (concat_rows, *rows)
    return ProductGraph(dsk, out, len(rows) + 1, token)


# --------------------------------------------------------------------------------------------------------------
# The matrix-free product as a graph (a source's matvec_plan, e.g. the NTK's pull / sum / push)
# --------------------------------------------------------------------------------------------------------------

def concat_columns(*blocks):
    return np.concatenate(blocks, axis=1)


def build_plan_graph(plan, source_ref, *, token: str | None = None) -> ProductGraph:
    """The graph of a matrix-free product from its plan (:class:`dlogdet.ntk.source.MatvecPlan`).

    ==============================  ===================================================================
    ``("mfpull-<tok>", g, j)``      partial of column batch g over chunk j: ``fn(source, *args)``
    ``("mfsum-<tok>", g, l, i)``    sum of two partials (level l of a binary tree)
    ``("mfpush-<tok>", g, j)``      row block j of the product's columns of batch g, from the total
    ``("mfcols-<tok>", g)``         the columns of batch g, rows stacked
    ``("mfout-<tok>",)``            the product, columns side by side
    ==============================  ===================================================================

    ``source_ref`` is what the tasks receive as the source: a future of it on every worker (or the source
    itself, which then travels in every task). A binary tree keeps a sum task at three partials (two in, one
    out; the in-process loop holds two) and its depth at log₂ of the chunks.
    """
    token = token or uuid.uuid4().hex
    dsk: dict = {}
    blocks = []
    for g in range(len(plan.columns)):
        level: list[tuple] = []
        for j, (fn, args) in enumerate(plan.pulls[g]):
            key = (f"mfpull-{token}", g, j)
            dsk[key] = (fn, source_ref, *args)
            level.append(key)
        depth = 0
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level) - 1, 2):
                sum_key = (f"mfsum-{token}", g, depth, i // 2)
                dsk[sum_key] = (plan.add, level[i], level[i + 1])
                nxt.append(sum_key)
            level = nxt + level[len(level) - len(level) % 2:]      # an odd one out moves up a level
            depth += 1
        rows = []
        for j, (fn, args) in enumerate(plan.pushes[g]):
            key = (f"mfpush-{token}", g, j)
            dsk[key] = (fn, source_ref, level[0], *args)
            rows.append(key)
        dsk[(f"mfcols-{token}", g)] = (concat_rows, *rows)
        blocks.append((f"mfcols-{token}", g))
    out = (f"mfout-{token}",)
    dsk[out] = (concat_columns, *blocks)
    return ProductGraph(dsk, out, len(dsk), token)
