"""The tile-source protocol: a matrix as tiles, never the whole matrix in one place."""

from __future__ import annotations

import hashlib

import numpy as np

from ..core.errors import InputError, NotSquareError, UnsupportedDtypeError

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype) -> np.dtype:
    """The dtype if the engine factorizes it (float32, float64), else an ``UnsupportedDtypeError``."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in SUPPORTED_DTYPES:
        hint = " (cast with A.astype(numpy.float64))" if dt is not None and dt.kind in "biuf" else ""
        raise UnsupportedDtypeError(f"unsupported dtype {dtype}: dlogdet factorizes float32 and float64 "
                                    f"matrices{hint}")
    return dt


def check_shape(shape) -> tuple[int, int]:
    """(n, n) for a square 2-D shape, else a ``NotSquareError``."""
    shape = tuple(shape)
    if len(shape) != 2:
        raise NotSquareError(f"the matrix must be 2-D and square, got {len(shape)}-D shape {shape}")
    if any(not isinstance(s, (int, np.integer)) for s in shape):
        raise NotSquareError(f"the matrix shape must be known, got {shape}; for a dask array call "
                             "compute_chunk_sizes() first")
    if shape[0] != shape[1]:
        raise NotSquareError(f"the matrix must be square, got shape {shape}")
    if shape[0] == 0:
        raise InputError("the matrix is empty (shape (0, 0)); its determinant is 1 by convention, nothing to compute")
    return int(shape[0]), int(shape[1])


def content_token(*parts) -> str:
    """A hex digest of strings, numbers and arrays (arrays by their bytes, dtype and shape)."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(f"{p.dtype}{p.shape}".encode())
            h.update(np.ascontiguousarray(p).data)
        else:
            h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()


class TileSource:
    """A square matrix that produces its sub-matrices on demand, on the worker that needs them.

    Subclasses set ``shape`` and ``dtype`` and implement :meth:`block`; they override :meth:`tile` when
    contiguous slices are cheaper than fancy indexing. A source is pickled once into the task graph and shipped
    to each worker that loads a tile, so it must stay small: it holds a path, points or parameters, not the
    matrix.

    Attributes
    ----------
    shape : tuple[int, int]
    dtype : numpy.dtype
    symmetric : bool
        True when the source is symmetric by construction (a kernel, a Gram matrix): the engine then skips
        the symmetry check, which would read the upper triangle too.
    rows_per_point : int
        Consecutive rows per data point: 1 (a kernel, an array), O for the full-output NTK of a model with O
        outputs. Methods that work per point (the scaling-law extrapolation) group rows by it.
    """

    shape: tuple[int, int]
    dtype: np.dtype
    symmetric: bool = False
    rows_per_point: int = 1

    @property
    def n(self) -> int:
        return self.shape[0]

    def block(self, rows, cols) -> np.ndarray:
        """The dense sub-matrix ``M[rows][:, cols]`` for two integer index arrays."""
        raise NotImplementedError

    def tile(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """The contiguous tile ``M[r0:r1, c0:c1]``."""
        return self.block(np.arange(r0, r1), np.arange(c0, c1))

    def rank_boundaries(self) -> list[dict]:
        """Points at which a part of the matrix stops gaining rank: one dict per part with at least ``"points"``
        (and ``"layer"``, ``"kind"``, ``"parameters"`` for an NTK's layers). None by default."""
        return []

    def token(self) -> str | None:
        """A deterministic token of the matrix's content, or None when there is no cheap one (keys then get a
        random token per run). Override it only when equal tokens guarantee equal matrices."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype})"
