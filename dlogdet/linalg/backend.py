"""Array backends of a tile: NumPy/SciPy on CPU, CuPy on GPU, any other Array-API namespace as a fallback.

The kernels in :mod:`dlogdet.linalg.kernels` use only Array-API calls on the tile's own namespace; the linear-algebra
calls the Array API lacks (triangular solves, LDLᵀ, LU, LAPACK info codes) live here, one function each,
dispatched on the tile's type. CuPy is imported lazily, only when a CuPy tile or ``backend="cupy"`` is seen.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
import scipy.linalg
import scipy.linalg.lapack as lapack
from array_api_compat import array_namespace, is_cupy_array, is_numpy_array

from ..core.errors import InputError

BACKENDS = ("auto", "numpy", "cupy")

__all__ = [
    "BACKENDS", "namespace", "to_host", "to_backend", "resolve_backend", "gpu_available",
    "cholesky_lower", "solve_lower_right_t", "solve_lower_left", "solve_upper_right",
    "ldl_host", "lu_factor", "matmul_sub", "is_numpy_like", "aligned",
]


def namespace(x) -> Any:
    """Array-API namespace of ``x`` (``array_api_compat`` wrapper for NumPy and CuPy)."""
    return array_namespace(x)


def is_numpy_like(x) -> bool:
    """True for NumPy and CuPy arrays (which take ``out=`` and the LAPACK-style calls below)."""
    return is_numpy_array(x) or is_cupy_array(x)


@functools.lru_cache(maxsize=1)
def gpu_available() -> bool:
    """Whether CuPy imports and sees at least one CUDA device in this process."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, CUDARuntimeError without a driver, ...
        return False


def resolve_backend(name: str) -> str:
    """``"numpy"`` or ``"cupy"`` for a requested backend (``"auto"`` picks CuPy where a GPU is present)."""
    if name not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "auto":
        return "cupy" if gpu_available() else "numpy"
    if name == "cupy" and not gpu_available():
        raise InputError("backend='cupy' needs CuPy and a CUDA device on the worker; install dlogdet[gpu] "
                         "or use backend='numpy'")
    return name


def aligned(x):
    """``x``, or an aligned copy of it when its buffer is not aligned to its item size.

    Arrays that arrive over the network can sit at any byte offset of a receive buffer; NumPy cannot hand
    misaligned arrays to BLAS and falls back to loops that run up to twice as slow (measured on a 2-worker
    cluster: SYRK 23 ms instead of 13 ms for 1000×1000 tiles), so a copy (~1 ms) pays for itself.
    """
    if is_numpy_array(x) and not x.flags.aligned:
        return np.array(x)
    return x


def to_host(x) -> np.ndarray:
    """A NumPy array with the values of ``x`` (a device-to-host copy for CuPy)."""
    if is_numpy_array(x):
        return x
    if is_cupy_array(x):
        return x.get()
    return np.from_dlpack(x) if hasattr(x, "__dlpack__") else np.asarray(x)


def to_backend(x, backend: str):
    """``x`` as an array of ``backend`` (``"numpy"`` or ``"cupy"``; ``"auto"`` is resolved here)."""
    backend = resolve_backend(backend)
    if backend == "cupy":
        import cupy
        return cupy.asarray(x)
    return to_host(x)


def _like(x, host: np.ndarray):
    """``host`` moved to the array type of ``x``."""
    if is_numpy_array(x):
        return host
    if is_cupy_array(x):
        import cupy
        return cupy.asarray(host)
    return namespace(x).asarray(host)


# --------------------------------------------------------------------------------------------------------------
# Cholesky
# --------------------------------------------------------------------------------------------------------------

def cholesky_lower(a) -> tuple[Any, int]:
    """Lower Cholesky factor L (a = L Lᵀ, lower triangle of ``a`` read) and a LAPACK-style ``info``.

    ``info == 0`` on success, ``info = j > 0`` when the leading j×j minor is not positive definite (1-based, as
    LAPACK). Every backend is checked the same way: CuPy's potrf can return garbage silently, so its diagonal
    is verified finite and positive here.
    """
    if is_numpy_array(a):
        potrf = lapack.dpotrf if a.dtype == np.float64 else lapack.spotrf
        c, info = potrf(a, lower=1, clean=1, overwrite_a=0)
        if info < 0:  # an argument error is a bug, not a property of the matrix
            raise RuntimeError(f"LAPACK potrf argument {-info} is invalid")
        return c, int(info)
    xp = namespace(a)
    if is_cupy_array(a):
        import cupy
        with cupy.cuda.Device(a.device.id):
            L = cupy.linalg.cholesky(a)
    else:
        try:
            L = xp.linalg.cholesky(a, upper=False)
        except Exception:  # generic namespaces raise on failure; find the row on the host
            _, info = cholesky_lower(to_host(a))
            return a, info
    dg = to_host(xp.linalg.diagonal(L))
    bad = np.flatnonzero(~(np.isfinite(dg) & (dg > 0)))
    if bad.size:
        # the first bad diagonal entry of L, or the row whose minor failed, computed again on the host for the index
        _, info = cholesky_lower(to_host(a).astype(np.float64))
        return L, int(info) if info else int(bad[0]) + 1
    return L, 0


# --------------------------------------------------------------------------------------------------------------
# Triangular solves
# --------------------------------------------------------------------------------------------------------------

def _tri(T, *, lower: bool, unit: bool = False):
    """The triangle that a triangular solve reads from a packed factor (LAPACK semantics), as a dense matrix."""
    xp = namespace(T)
    if not lower:
        return xp.triu(T)
    if unit:
        return xp.tril(T, k=-1) + xp.eye(T.shape[0], dtype=T.dtype)
    return xp.tril(T)


def solve_lower_right_t(L, B, *, unit_diagonal: bool = False):
    """X = B · L⁻ᵀ for lower-triangular L (the panel solve of Cholesky/LDLᵀ: X Lᵀ = B)."""
    if is_numpy_array(L):
        # X Lᵀ = B  <=>  L Xᵀ = Bᵀ ; solve on the transposed (Fortran-ordered view) without copies
        return scipy.linalg.solve_triangular(L, B.T, lower=True, unit_diagonal=unit_diagonal,
                                             check_finite=False).T
    if is_cupy_array(L):
        from cupyx.scipy.linalg import solve_triangular
        return solve_triangular(L, B.T, lower=True, unit_diagonal=unit_diagonal).T
    return namespace(L).linalg.solve(_tri(L, lower=True, unit=unit_diagonal), B.mT).mT  # generic Array API


def solve_lower_left(L, B, *, unit_diagonal: bool = False):
    """X = L⁻¹ · B for lower-triangular L (the row-panel solve of LU)."""
    if is_numpy_array(L):
        return scipy.linalg.solve_triangular(L, B, lower=True, unit_diagonal=unit_diagonal, check_finite=False)
    if is_cupy_array(L):
        from cupyx.scipy.linalg import solve_triangular
        return solve_triangular(L, B, lower=True, unit_diagonal=unit_diagonal)
    return namespace(L).linalg.solve(_tri(L, lower=True, unit=unit_diagonal), B)


def solve_upper_right(U, B):
    """X = B · U⁻¹ for upper-triangular U (the column-panel solve of LU: X U = B ⇔ Uᵀ Xᵀ = Bᵀ)."""
    if is_numpy_array(U):
        return scipy.linalg.solve_triangular(U, B.T, lower=False, trans="T", check_finite=False).T
    if is_cupy_array(U):
        from cupyx.scipy.linalg import solve_triangular
        return solve_triangular(U, B.T, lower=False, trans="T").T
    return namespace(U).linalg.solve(_tri(U, lower=False).mT, B.mT).mT


# --------------------------------------------------------------------------------------------------------------
# LDLᵀ and LU of a diagonal tile
# --------------------------------------------------------------------------------------------------------------

def ldl_host(a):
    """Bunch–Kaufman LDLᵀ of the lower triangle of a symmetric tile, on the host.

    Returns ``(Lt, perm, d_main, d_off)`` as NumPy arrays: ``a[perm][:, perm] = Lt · D · Ltᵀ`` with ``Lt`` unit
    lower-triangular and D symmetric tridiagonal with 1×1 and 2×2 blocks (``d_main`` its diagonal, ``d_off`` its
    first sub-diagonal, zero outside 2×2 blocks). CuPy has no LDLᵀ, so GPU tiles come here and go back.
    """
    h = to_host(a)
    with warnings.catch_warnings():  # singular pivots are reported by the caller, with the global row
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        lu, d, perm = scipy.linalg.ldl(h, lower=True, hermitian=True, check_finite=False)
    Lt = lu[perm]
    return Lt, perm, np.ascontiguousarray(np.diagonal(d)), np.ascontiguousarray(np.diagonal(d, -1))


def lu_factor(a):
    """LU with partial pivoting of a tile: ``(lu, piv)`` in LAPACK getrf convention (0-based ``piv``)."""
    if is_cupy_array(a):
        from cupyx.scipy.linalg import lu_factor as cu_lu
        return cu_lu(a)
    with warnings.catch_warnings():  # an exactly zero pivot is reported by the caller, with the global row
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        lu, piv = scipy.linalg.lu_factor(to_host(a), check_finite=False)
    return (lu, piv) if is_numpy_array(a) else (_like(a, lu), piv)


def matmul_sub(C, A, B, *, transpose_b: bool = True):
    """C − A·Bᵀ (or C − A·B with ``transpose_b=False``) as a new array.

    Pass the same object as ``A`` and ``B`` for a symmetric rank-k update: NumPy then calls SYRK (half the
    flops). The product's buffer takes the difference in place, so the update costs one allocation.
    """
    out = A @ (B.mT if transpose_b else B)
    if is_numpy_array(out):
        return np.subtract(C, out, out=out)
    if is_cupy_array(out):
        import cupy
        return cupy.subtract(C, out, out=out)
    return C - out


def finite_all(x) -> bool:
    xp = namespace(x)
    return bool(xp.all(xp.isfinite(x)))


def max_abs(x) -> float:
    xp = namespace(x)
    if x.shape[0] == 0 or x.shape[1] == 0:
        return 0.0
    return float(xp.max(xp.abs(x)))


def eps(dtype) -> float:
    """Machine epsilon of a float32/float64 dtype of any backend."""
    return float(np.finfo(np.float32 if "float32" in str(dtype) else np.float64).eps)
