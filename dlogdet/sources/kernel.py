"""Covariance-kernel matrices generated tile by tile from their points (Gaussian-process covariances)."""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from .base import TileSource, check_dtype, content_token


def _rbf(d2: np.ndarray, ls: float) -> np.ndarray:
    d2 *= -0.5 / (ls * ls)
    return np.exp(d2, out=d2)


def _matern12(d2: np.ndarray, ls: float) -> np.ndarray:
    r = np.sqrt(d2, out=d2)
    r *= -1.0 / ls
    return np.exp(r, out=r)


def _matern32(d2: np.ndarray, ls: float) -> np.ndarray:
    s = np.sqrt(d2, out=d2)
    s *= np.sqrt(3.0) / ls
    e = np.exp(np.negative(s))
    s += 1.0
    s *= e
    return s


def _matern52(d2: np.ndarray, ls: float) -> np.ndarray:
    s = np.sqrt(d2, out=d2)
    s *= np.sqrt(5.0) / ls
    e = np.exp(np.negative(s))
    p = s / 3.0                                          # 1 + s + s²/3 = 1 + s·(1 + s/3)
    p += 1.0
    p *= s
    p += 1.0
    p *= e
    return p


#: Each kernel as a function of the squared distance and the lengthscale, computed in the array it is given.
_OF_SQUARED_DISTANCE = {"rbf": _rbf, "matern12": _matern12, "matern32": _matern32, "matern52": _matern52}
KERNELS = tuple(_OF_SQUARED_DISTANCE)


def _same_points(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) where rows[i] == cols[j]: the entries where a point meets itself (the diagonal when both are the same
    distinct points, as a tile or a subsample asks)."""
    if rows.shape == cols.shape and np.array_equal(rows, cols) and np.unique(rows).size == rows.size:
        i = np.arange(rows.size)
        return i, i
    i, j = np.nonzero(rows[:, None] == cols[None, :])
    return i, j


class KernelSource(TileSource):
    r"""K_ij = σ²·k(‖x_i − x_j‖/ℓ) + jitter·δ_ij, produced on the worker that needs the tile.

    Kernels of the scaled distance r: ``rbf`` exp(−r²/2); ``matern12`` exp(−r); ``matern32``
    (1 + √3 r) exp(−√3 r); ``matern52`` (1 + √5 r + 5r²/3) exp(−√5 r). All are positive definite for any
    distinct points; ``jitter`` (a nugget, σ_noise²) keeps K well conditioned when points nearly coincide.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,)
        The points (only they travel to the workers: n·d numbers, not n²).
    kernel : str
        One of ``"rbf"``, ``"matern12"``, ``"matern32"``, ``"matern52"``.
    lengthscale : float
        ℓ > 0.
    variance : float
        σ² > 0.
    jitter : float
        Added to the diagonal, ≥ 0.
    dtype : float32 or float64
        dtype of the tiles (distances are computed in float64 either way).
    """

    symmetric = True

    def __init__(self, x, kernel: str = "rbf", *, lengthscale: float = 1.0, variance: float = 1.0,
                 jitter: float = 0.0, dtype=np.float64):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[0] == 0:
            raise InputError(f"points x must have shape (n, d) with n >= 1, got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise InputError("points x hold NaN or Inf; remove them before building a kernel matrix")
        if kernel not in KERNELS:
            raise InputError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if not (lengthscale > 0 and variance > 0 and jitter >= 0):
            raise InputError(f"need lengthscale > 0, variance > 0, jitter >= 0; got lengthscale={lengthscale}, "
                             f"variance={variance}, jitter={jitter}")
        self.x = np.ascontiguousarray(x)
        self.kernel = kernel
        self.lengthscale = float(lengthscale)
        self.variance = float(variance)
        self.jitter = float(jitter)
        self.dtype = check_dtype(dtype)
        self.shape = (x.shape[0], x.shape[0])
        self._sq = np.einsum("ij,ij->i", self.x, self.x)

    def token(self) -> str:
        return content_token("kernel", self.x, self.kernel, self.lengthscale, self.variance, self.jitter, str(self.dtype))

    def block(self, rows, cols):
        rows, cols = np.asarray(rows), np.asarray(cols)
        # squared distances and the kernel computed in place in one array (no n×n temporaries, no n×n mask)
        d2 = self.x[rows] @ self.x[cols].T
        d2 *= -2.0
        d2 += self._sq[rows][:, None]
        d2 += self._sq[cols][None, :]
        i, j = _same_points(rows, cols)
        d2[i, j] = 0.0                                  # exact zeros where a point meets itself
        np.maximum(d2, 0.0, out=d2)
        k = _OF_SQUARED_DISTANCE[self.kernel](d2, self.lengthscale)
        k *= self.variance
        if self.jitter:
            k[i, j] += self.jitter
        return k.astype(self.dtype, copy=False)

    def tile(self, r0, r1, c0, c1):
        k = self.block(np.arange(r0, r1), np.arange(c0, c1))
        if r0 == c0 and r1 == c1:  # diagonal tile: exactly symmetric whatever the rounding of x xᵀ
            k = 0.5 * (k + k.T)
        return k

    def dense(self) -> np.ndarray:
        """The whole matrix (for tests and small references only)."""
        return self.tile(0, self.n, 0, self.n)

    def __repr__(self):
        return (f"KernelSource(n={self.n}, d={self.x.shape[1]}, kernel={self.kernel!r}, "
                f"lengthscale={self.lengthscale}, variance={self.variance}, jitter={self.jitter})")
