"""A principal sub-matrix of another source, chosen by points: M[I, I] with I the rows of the chosen points."""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from .base import TileSource, content_token


class SubsetSource(TileSource):
    r"""S = M[I, I] for the rows I of a chosen list of points of a source M, in the order of that list.

    A *point* owns ``rows_per_point`` consecutive rows of M (1 for a kernel or an array; O for the full-output
    NTK of a model with O outputs, whose rows are grouped by point), so a subset of p points is a
    (p·rows_per_point)-square matrix whose row ``r`` is row ``rows_per_point·points[r // rows_per_point] +
    r % rows_per_point`` of M. Tiles are asked from the parent's :meth:`~TileSource.block` with the parent's
    indices, so a source that generates its tiles (a kernel, an NTK) computes them for the chosen points only.

    Why a source and not a copy: the subsample of an extrapolation is factored by the same engine, on the same
    workers, as the full matrix would be; this object travels to them as the parent plus an index vector.

    Parameters
    ----------
    parent : TileSource
        The matrix M (its shape must be a multiple of ``rows_per_point``).
    points : array_like of int
        Distinct point indices in ``[0, parent.n // rows_per_point)``, in the order the sub-matrix takes them.
    rows_per_point : int
        Rows of M per point (default 1).
    """

    def __init__(self, parent: TileSource, points, *, rows_per_point: int = 1):
        if not isinstance(parent, TileSource):
            raise InputError(f"parent must be a dlogdet.TileSource, got {type(parent).__name__}")
        rpp = int(rows_per_point)
        if rpp < 1 or rpp != rows_per_point:
            raise InputError(f"rows_per_point must be a positive integer, got {rows_per_point!r}")
        if parent.n % rpp:
            raise InputError(f"a matrix of order {parent.n} cannot be grouped in points of {rpp} rows: "
                             "rows_per_point must divide it")
        n_points = parent.n // rpp
        pts = np.asarray(points)
        if pts.ndim != 1 or pts.size == 0 or (pts.dtype.kind not in "iu"):
            raise InputError(f"points must be a non-empty 1-D array of integers, got shape {pts.shape} and dtype "
                             f"{pts.dtype}")
        pts = pts.astype(np.int64)
        if pts.min() < 0 or pts.max() >= n_points:
            raise InputError(f"points must lie in [0, {n_points}) (the source has {n_points} points of {rpp} "
                             f"rows), got range [{pts.min()}, {pts.max()}]")
        if np.unique(pts).size != pts.size:
            raise InputError("points must be distinct: a repeated point makes the sub-matrix singular")
        self.parent = parent
        self.points = pts
        self.rows_per_point = rpp
        self.dtype = parent.dtype
        self.symmetric = bool(parent.symmetric)
        self.shape = (pts.size * rpp, pts.size * rpp)

    @property
    def n_points(self) -> int:
        return int(self.points.size)

    def parent_rows(self, idx) -> np.ndarray:
        """Rows of the parent for rows ``idx`` of the sub-matrix."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.rows_per_point == 1:
            return self.points[idx]
        p, o = np.divmod(idx, self.rows_per_point)
        return self.points[p] * self.rows_per_point + o

    def block(self, rows, cols) -> np.ndarray:
        return self.parent.block(self.parent_rows(rows), self.parent_rows(cols))

    def tile(self, r0, r1, c0, c1):
        k = np.asarray(self.block(np.arange(r0, r1), np.arange(c0, c1)))
        if self.symmetric and r0 == c0 and r1 == c1:  # diagonal tile: exactly symmetric, as the parents make it
            k = 0.5 * (k + k.T)
        return k

    def token(self) -> str | None:
        t = self.parent.token()
        return None if t is None else content_token("subset", t, self.points, self.rows_per_point)

    def dense(self) -> np.ndarray:
        """The whole sub-matrix (for tests and small references only)."""
        return self.tile(0, self.n, 0, self.n)

    def __repr__(self) -> str:
        return (f"SubsetSource({self.parent!r}, points={self.n_points}, rows_per_point={self.rows_per_point}, "
                f"shape={self.shape})")
