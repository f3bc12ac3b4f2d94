"""Matrices as tiles: arrays, files, dask arrays and kernel functions behind one protocol."""

from __future__ import annotations

import os

import numpy as np

from ..core.errors import InputError, SourceError
from .arrays import ArraySource, DaskArraySource, NpySource, ZarrSource
from .base import TileSource, check_dtype, check_shape
from .kernel import KERNELS, KernelSource
from . import spec

__all__ = ["TileSource", "ArraySource", "NpySource", "ZarrSource", "DaskArraySource", "KernelSource",
           "KERNELS", "as_source", "check_dtype", "check_shape", "source_from_spec"]

source_from_spec = spec.source_from_spec


def as_source(A) -> TileSource:
    """A tile source for any accepted input.

    Accepted: a :class:`TileSource`; a NumPy (or CuPy) array; a ``numpy.memmap`` of a ``.npy`` file; a path to
    a ``.npy`` file or a zarr directory; a source spec such as ``"kernel:rbf:n=2000"`` or
    ``"ntk:mlp:digits:n=500"`` (:mod:`dlogdet.sources.spec`); a ``zarr.Array``; a dask array.
    """
    if isinstance(A, TileSource):
        return A
    if isinstance(A, str) and spec.kind_of(A) is not None:
        return spec.source_from_spec(A)
    if isinstance(A, (str, os.PathLike)):
        path = os.fspath(A)
        if path.endswith(".npy"):
            return NpySource(path)
        if os.path.isdir(path):
            return ZarrSource(path)
        if not os.path.exists(path):
            raise SourceError(f"no such file or directory: {path}")
        raise SourceError(f"cannot tell the format of {path}: give a .npy file or a zarr directory")
    mod = type(A).__module__.split(".")[0]
    if mod == "dask":
        return DaskArraySource(A)
    if mod == "zarr":
        return ZarrSource(A)
    if isinstance(A, np.ndarray) or mod == "cupy":
        if A.ndim != 2:
            check_shape(A.shape)
        return ArraySource(A)
    if hasattr(A, "__array__") or isinstance(A, (list, tuple)):
        a = np.asarray(A)
        if a.dtype == object:
            raise InputError(f"cannot read {type(A).__name__} as a numeric matrix")
        return ArraySource(a)
    raise InputError(f"cannot use {type(A).__name__} as a matrix: give a NumPy/CuPy/dask/zarr array, a .npy or "
                     "zarr path, or a dlogdet.TileSource (e.g. dlogdet.KernelSource)")
