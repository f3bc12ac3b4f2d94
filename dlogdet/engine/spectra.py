"""Submatrix spectra as tasks: one per random principal submatrix.

A task forms the n₀×n₀ principal submatrix of its points from the source's tiles (so a generated source, a kernel
or an NTK, computes those entries only, on the worker) and returns its eigenvalues — and those of its leading
blocks of the ``nested`` sizes, which a degree selection can decompress back to n₀ as a check — from NumPy's
``eigvalsh`` or, where the backend is CuPy, CuPy's.

==============================  =============================================================
``("spectrum-eigh-<tag>", s)``  eigenvalues of submatrix s (and of its nested leading blocks)
``"spectrum-gather-<tag>"``     all of them, in sample order
==============================  =============================================================
"""

from __future__ import annotations

import time
import uuid

import numpy as np

from ..core.errors import NonFiniteError
from ..linalg import backend as B
from ..sources import TileSource
from ..sources.subset import SubsetSource


def _eig_task(source: TileSource, points: np.ndarray, nested: tuple, t: float, backend: str, check_finite: bool):
    """Eigenvalues of t·A[I, I] and of its leading k×k blocks (a task on a worker)."""
    sub = SubsetSource(source, points)
    a = np.asarray(B.to_host(sub.dense()), dtype=np.float64)
    if check_finite and not np.all(np.isfinite(a)):
        raise NonFiniteError(f"the submatrix of points {points[:5].tolist()}... holds NaN or Inf: the matrix is not "
                             "finite there")
    a = t * 0.5 * (a + a.T)
    name = B.resolve_backend(backend)
    t0 = time.perf_counter()
    if name == "cupy":
        import cupy
        g = cupy.asarray(a)
        full = cupy.linalg.eigvalsh(g).get()
        nest = {k: cupy.linalg.eigvalsh(g[:k, :k]).get() for k in nested}
    else:
        full = np.linalg.eigvalsh(a)
        nest = {k: np.linalg.eigvalsh(a[:k, :k]) for k in nested}
    return {"eigenvalues": full, "nested": nest, "eigh_time": time.perf_counter() - t0, "backend": name}


def _gather(*parts):
    return list(parts)


def build_spectra_graph(source: TileSource, points: np.ndarray, nested: tuple, *, t: float, backend: str,
                        check_finite: bool) -> tuple[dict, str]:
    """The graph of the spectra of the submatrices ``points[s]`` (one row of points per sample), and its output
    key."""
    tag = uuid.uuid4().hex[:12]
    dsk: dict = {}
    keys = []
    for s in range(len(points)):
        k = (f"spectrum-eigh-{tag}", s)
        dsk[k] = (_eig_task, source, points[s], nested, t, backend, check_finite)
        keys.append(k)
    out = f"spectrum-gather-{tag}"
    dsk[out] = (_gather, *keys)
    return dsk, out
