"""Sources backed by arrays: in memory, ``.npy`` files (memory-mapped on the worker), zarr, dask arrays."""

from __future__ import annotations

import functools
import os

import numpy as np

from ..core.errors import SourceError
from .base import TileSource, check_dtype, check_shape, content_token


class ArraySource(TileSource):
    """A matrix held in memory (NumPy, CuPy or ``numpy.memmap``).

    On a distributed cluster its tiles are scattered to the workers once (the lower triangle only where the
    upper one is not needed); with the in-process scheduler tiles are views, never copies.
    """

    in_memory = True

    def __init__(self, a):
        self.array = a
        self.shape = check_shape(a.shape)
        self.dtype = check_dtype(a.dtype)

    def tile(self, r0, r1, c0, c1):
        return self.array[r0:r1, c0:c1]

    def block(self, rows, cols):
        return self.array[np.ix_(np.asarray(rows), np.asarray(cols))]


@functools.lru_cache(maxsize=16)
def _open_npy(path: str, mtime_ns: int):
    return np.load(path, mmap_mode="r")


class NpySource(TileSource):
    """A ``.npy`` file, memory-mapped by each worker that reads a tile; only its header is read here."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.path.abspath(os.fspath(path))
        try:  # mapping the file reads its header only, not its data
            mm = np.load(self.path, mmap_mode="r")
        except FileNotFoundError:
            raise SourceError(f"no such file: {path}") from None
        except (OSError, ValueError, EOFError) as e:
            raise SourceError(f"cannot read {path} as a .npy file: {e}") from None
        if not isinstance(mm, np.ndarray):
            raise SourceError(f"{path} does not hold a single array")
        self.shape = check_shape(mm.shape)
        self.dtype = check_dtype(mm.dtype)
        self.offset = int(mm.offset)  # type: ignore[attr-defined]  # np.load(mmap_mode=) returns a numpy.memmap
        self.fortran_order = bool(mm.flags.f_contiguous and not mm.flags.c_contiguous)
        del mm

    #: set when the file is a spilled copy of an in-memory array: the array's content token (a rewrite of the
    #: same array must give the same keys, whatever the file's modification time)
    content: str | None = None

    def token(self) -> str:
        if self.content is not None:
            return self.content
        st = os.stat(self.path)
        return content_token("npy", self.path, st.st_size, st.st_mtime_ns, str(self.dtype), self.shape)

    def _mm(self) -> np.ndarray:
        try:
            return _open_npy(self.path, os.stat(self.path).st_mtime_ns)
        except OSError as e:
            raise SourceError(f"cannot read {self.path} on this worker: {e}; on a cluster the file must be on a "
                              "file system that every worker sees") from None

    def tile(self, r0, r1, c0, c1):
        """Tile ``[r0:r1, c0:c1]`` read with one positional read per row (per column for Fortran order).

        Reads go into a fresh array: unlike a memory map, nothing of the file stays mapped in the worker, so its
        resident memory is the tiles it holds, not the parts of the file it has touched.
        """
        if self.fortran_order:
            return self._read_lines(c0, c1, r0, r1).T
        return self._read_lines(r0, r1, c0, c1)

    def _read_lines(self, a0, a1, b0, b1) -> np.ndarray:
        """Lines a0:a1 of the file's storage order, elements b0:b1 of each, as a C-ordered (a1-a0, b1-b0) array."""
        out = np.empty((a1 - a0, b1 - b0), dtype=self.dtype)
        if out.size == 0:
            return out
        width = (b1 - b0) * self.dtype.itemsize
        line = self.shape[1] * self.dtype.itemsize
        buf = memoryview(out).cast("B")  # type: ignore[arg-type]  # an ndarray is a buffer
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise SourceError(f"cannot read {self.path} on this worker: {e}; on a cluster the file must be on a "
                              "file system that every worker sees") from None
        try:
            for a in range(a1 - a0):
                pos = self.offset + (a0 + a) * line + b0 * self.dtype.itemsize
                got = os.preadv(fd, [buf[a * width:(a + 1) * width]], pos)
                if got != width:
                    raise SourceError(f"{self.path} is shorter than its header says (truncated at byte {pos})")
        finally:
            os.close(fd)
        return out

    def block(self, rows, cols):
        return np.array(self._mm()[np.ix_(np.asarray(rows), np.asarray(cols))])

    def __repr__(self):
        return f"NpySource({self.path!r}, shape={self.shape}, dtype={self.dtype})"


class ZarrSource(TileSource):
    """A 2-D zarr array (a directory path or an opened ``zarr.Array``), read tile by tile on the workers."""

    def __init__(self, array_or_path):
        import zarr

        if isinstance(array_or_path, (str, os.PathLike)):
            path = os.fspath(array_or_path)
            if not os.path.exists(path):
                raise SourceError(f"no such zarr directory: {path}")
            try:
                array = zarr.open_array(path, mode="r")
            except Exception as e:
                raise SourceError(f"cannot open {path} as a zarr array: {e}") from None
            self.path = os.path.abspath(path)
        else:
            array, self.path = array_or_path, None
        self.shape = check_shape(array.shape)
        self.dtype = check_dtype(array.dtype)
        self._array = array

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.path is not None:  # workers reopen by path: no store object crosses the wire
            state["_array"] = None
        return state

    @property
    def array(self):
        if self._array is None:
            import zarr
            self._array = zarr.open_array(self.path, mode="r")
        return self._array

    def tile(self, r0, r1, c0, c1):
        return np.asarray(self.array[r0:r1, c0:c1])

    def block(self, rows, cols):
        rows, cols = np.asarray(rows), np.asarray(cols)
        return np.asarray(self.array.get_orthogonal_selection((rows, cols)))


class DaskArraySource(TileSource):
    """A dask array: its chunks are rechunked to the tile size and its graph merged into the factorization."""

    def __init__(self, array):
        self.array = array
        self.shape = check_shape(array.shape)
        self.dtype = check_dtype(array.dtype)

    def block(self, rows, cols):
        return np.asarray(self.array[np.asarray(rows)][:, np.asarray(cols)].compute())
