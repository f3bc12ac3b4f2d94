"""Pure block kernels of the tiled factorizations: no dask, no scheduling, only tiles in and tiles out.

Block equations (right-looking, step k, tiles of the lower triangle; ``A⁽ᵏ⁾`` is the Schur complement after
k panels):

* ``spd``  POTRF  L_kk L_kkᵀ = A_kk⁽ᵏ⁾;    TRSM  L_ik = A_ik⁽ᵏ⁾ L_kk⁻ᵀ;
  SYRK/GEMM  A_ij⁽ᵏ⁺¹⁾ = A_ij⁽ᵏ⁾ − L_ik L_jkᵀ  (i ≥ j > k).
* ``sym``  SYTRF  P A_kk⁽ᵏ⁾ Pᵀ = L D Lᵀ (Bunch–Kaufman inside the tile);  TRSM  W_ik = (A_ik⁽ᵏ⁾ Pᵀ) L⁻ᵀ;
  GEMM  A_ij⁽ᵏ⁺¹⁾ = A_ij⁽ᵏ⁾ − (W_ik D⁻¹) W_jkᵀ.
* ``gen``  GETRF  P A_kk⁽ᵏ⁾ = L U;  TRSM  U_kj = L⁻¹ P A_kj⁽ᵏ⁾ (row panel), L_ik = A_ik⁽ᵏ⁾ U⁻¹ (column panel);
  GEMM  A_ij⁽ᵏ⁺¹⁾ = A_ij⁽ᵏ⁾ − L_ik U_kj  (i, j > k).

``log det M = Σ_k log|det D_k|`` where D_k are the pivots of the diagonal tiles; each factor carries its
per-row ``log|pivot|`` in float64 (whatever the tile dtype) and the pivot signs, so only those leave the engine.
Every kernel uses the tile's own Array-API namespace; calls the Array API lacks come from
:mod:`dlogdet.backend`, so the same code serves NumPy, CuPy and any Array-API library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import config
from ..core.errors import NonFiniteError, NotPSDError, NotSymmetricError, SingularMatrixError
from . import backend as B

ASSUME = ("spd", "sym", "gen")


# --------------------------------------------------------------------------------------------------------------
# Factors of a diagonal tile (what POTRF/SYTRF/GETRF tasks return)
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pivots:
    """Per-row log|pivot| (float64) and pivot sign (int8) of one diagonal tile, on the host."""

    log_abs: np.ndarray
    sign: np.ndarray


@dataclass(frozen=True)
class CholFactor:
    """Cholesky factor L of a diagonal tile, and its pivots."""

    L: Any
    pivots: Pivots


@dataclass(frozen=True)
class LDLFactor:
    """Bunch–Kaufman LDLᵀ factor of a diagonal tile, and its pivots."""

    L: Any            # unit lower-triangular, in pivoted order
    perm: Any         # symmetric permutation of the tile's rows
    dinv_main: Any    # D⁻¹ is tridiagonal: its diagonal ...
    dinv_off: Any     # ... and its first sub-diagonal (zero outside 2×2 blocks), or None without 2×2 blocks
    pivots: Pivots


@dataclass(frozen=True)
class LUFactor:
    """LU factor of a diagonal tile with partial pivoting, and its pivots."""

    lu: Any           # L (unit, strictly lower part) and U (upper part) packed, as LAPACK getrf
    perm: Any         # row permutation: P A = A[perm]
    pivots: Pivots


@dataclass(frozen=True)
class SymPanel:
    """A panel tile of the LDLᵀ: W = A_ik Pᵀ L⁻ᵀ and the D⁻¹ of its step, applied lazily in the update."""

    W: Any
    dinv_main: Any
    dinv_off: Any


# --------------------------------------------------------------------------------------------------------------
# Loading: transform and validate an input tile
# --------------------------------------------------------------------------------------------------------------

def _where(mask) -> tuple[int, int]:
    idx = np.argwhere(B.to_host(mask))
    return (int(idx[0][0]), int(idx[0][1])) if idx.size else (-1, -1)


def _span(x) -> tuple[float, float]:
    """(min, max) of a tile in two fast passes; NaN or ±Inf anywhere shows in them (NaN propagates)."""
    if x.shape[0] == 0 or x.shape[1] == 0:
        return 0.0, 0.0
    xp = B.namespace(x)
    return float(xp.min(x)), float(xp.max(x))


def _check_finite(x, lo_hi, r0: int, c0: int, where: str) -> None:
    if all(np.isfinite(lo_hi)):
        return
    xp = B.namespace(x)
    r, c = _where(~xp.isfinite(x))
    raise NonFiniteError(f"the matrix holds NaN or Inf at row {r0 + r}, column {c0 + c} ({where}); "
                         "remove or replace non-finite entries before computing a log-determinant")


def _asymmetry(tile, mirror, rtol: float, scale: float, where: str) -> None:
    d = tile - mirror.mT
    lo, hi = _span(d)
    diff = max(-lo, hi)
    if diff > rtol * scale:
        raise NotSymmetricError(
            f"the matrix is not symmetric: in {where}, max|A_ij - A_ji| = {diff:.3g} exceeds "
            f"{rtol:.3g} x max|A| = {rtol * scale:.3g}; use assume='gen' for a general "
            "matrix, symmetrize it as (A + A.T)/2, or loosen dask config 'dlogdet.check.symmetry-rtol'")


def _where_str(i, j, r0, c0, shape) -> str:
    return f"tile ({i}, {j}) = rows {r0}:{r0 + shape[0]}, columns {c0}:{c0 + shape[1]}"


def symmetry_rtol_for(dtype) -> float:
    """Tolerance of the symmetry check: dask config ``dlogdet.check.symmetry-rtol``, else √eps of the dtype."""
    r = config.get("check.symmetry-rtol")
    return float(r) if r is not None else math.sqrt(B.eps(dtype))


def check_symmetric_pair(tile, mirror, rtol: float, r0: int, c0: int, i: int, j: int, check_finite: bool = True):
    """Refuse an off-diagonal pair of input tiles A_ij (rows r0:, columns c0:) and A_ji that differ.

    ``max|A_ij − A_jiᵀ| ≤ rtol · max(|A_ij|, |A_ji|)``; both tiles are also checked finite. Returns None.
    """
    if mirror.shape != tile.shape[::-1]:
        raise NotSymmetricError(f"{_where_str(i, j, r0, c0, tile.shape)}: mirror tile has shape {mirror.shape}, "
                                f"expected {tile.shape[::-1]}")
    a, b = _span(tile), _span(mirror)
    if check_finite:
        _check_finite(tile, a, r0, c0, _where_str(i, j, r0, c0, tile.shape))
        _check_finite(mirror, b, c0, r0, _where_str(j, i, c0, r0, mirror.shape))
    scale = max(-a[0], a[1], -b[0], b[1])
    _asymmetry(tile, mirror, rtol, scale, _where_str(i, j, r0, c0, tile.shape))
    return None


def prepare_tile(tile, *, r0: int, c0: int, t: float = 1.0, d=None, check_finite: bool = True,
                 symmetry_rtol: float | None = None, tile_index=(0, 0)):
    """M_ij = t·A_ij (+ diag(d) on a diagonal tile), after checking A_ij.

    Parameters
    ----------
    tile : array
        A_ij as read from the source, rows ``r0:r0+tile.shape[0]``, columns ``c0:...``.
    t : float
        Scale of A.
    d : None, float or 1-D array
        Diagonal shift of this diagonal tile (None off the diagonal).
    check_finite : bool
        Refuse NaN/Inf, naming the first bad entry.
    symmetry_rtol : float or None
        For a diagonal tile, check ``max|A_ii − A_iiᵀ| ≤ rtol · max|A_ii|`` (off-diagonal pairs are checked by
        :func:`check_symmetric_pair`); None skips the check.
    """
    i, j = tile_index
    where = _where_str(i, j, r0, c0, tile.shape)
    span = _span(tile) if (check_finite or symmetry_rtol is not None) else (0.0, 0.0)
    if check_finite:
        _check_finite(tile, span, r0, c0, where)
    if symmetry_rtol is not None and i == j:
        _asymmetry(tile, tile, symmetry_rtol, max(-span[0], span[1]), where)
    out = tile
    if t != 1.0:
        out = out * t
    if d is not None and not (np.isscalar(d) and d == 0):
        xp = B.namespace(out)
        dd = d if np.isscalar(d) else xp.asarray(np.asarray(d), dtype=out.dtype)
        out = out + xp.eye(out.shape[0], dtype=out.dtype) * dd
    return out


# --------------------------------------------------------------------------------------------------------------
# Diagonal factorizations
# --------------------------------------------------------------------------------------------------------------

def potrf(A, row0: int = 0):
    """Cholesky of a diagonal tile of the Schur complement: ``A = L Lᵀ``; log|pivot_r| = 2 log L_rr.

    Raises
    ------
    NotPSDError
        With the global row of the first non-positive pivot.
    """
    L, info = B.cholesky_lower(B.aligned(A))
    if info:
        row = row0 + info - 1
        raise NotPSDError(
            f"the matrix is not positive definite: the Cholesky pivot of global row {row} is not positive "
            f"(the leading {row + 1}x{row + 1} submatrix of M = t*A + diag(d) is not positive definite); "
            "use assume='sym' for a symmetric indefinite matrix, or add a diagonal shift d=... (jitter)",
            row=row)
    xp = B.namespace(L)
    dg = B.to_host(xp.linalg.diagonal(L)).astype(np.float64)
    if not np.all(np.isfinite(dg) & (dg > 0)):
        row = row0 + int(np.flatnonzero(~(np.isfinite(dg) & (dg > 0)))[0])
        raise NotPSDError(f"the Cholesky factor is not finite and positive at global row {row}; the matrix is "
                          "not numerically positive definite: use assume='sym' or add a diagonal shift d=...",
                          row=row)
    return CholFactor(L, Pivots(2.0 * np.log(dg), np.ones(dg.shape, np.int8)))


def _ldl_pivots(dm: np.ndarray, do: np.ndarray):
    """Per-row log|pivot|, signs and the tridiagonal D⁻¹ of a Bunch–Kaufman block diagonal D."""
    b = dm.shape[0]
    dm = dm.astype(np.float64)
    do = do.astype(np.float64)
    logp = np.empty(b)
    sign = np.empty(b, np.int8)
    inv_m = np.zeros(b)
    inv_o = np.zeros(max(b - 1, 0))
    first = np.zeros(b, bool)  # first row of a 2×2 block
    first[:-1] = do != 0
    second = np.zeros(b, bool)
    second[1:] = first[:-1]
    one = ~(first | second)
    with np.errstate(divide="ignore"):
        logp[one] = np.log(np.abs(dm[one]))
        sign[one] = np.sign(dm[one])
        inv_m[one] = np.where(dm[one] != 0, 1.0 / np.where(dm[one] != 0, dm[one], 1.0), np.inf)
        f = np.flatnonzero(first)
        a, c, e = dm[f], dm[f + 1], do[f]
        det = a * c - e * e
        half = 0.5 * np.log(np.abs(det))      # each row of a 2×2 block carries half of log|det|
        logp[f] = half
        logp[f + 1] = half
        neg = det < 0                          # one positive and one negative eigenvalue
        s = np.where(neg, 1, np.sign(a + c)).astype(np.int8)
        sign[f] = np.where(det == 0, 0, s)
        sign[f + 1] = np.where(det == 0, 0, np.where(neg, -1, s))
        safe = np.where(det != 0, det, 1.0)
        inv_m[f] = c / safe
        inv_m[f + 1] = a / safe
        inv_o[f] = -e / safe
    return logp, sign, inv_m, inv_o, bool(f.size)


def sytrf(A, row0: int = 0, last: bool = False):
    """Symmetric indefinite LDLᵀ of a diagonal tile with Bunch–Kaufman pivoting inside the tile.

    The factorization runs on the host (CuPy has no LDLᵀ); its factors go back to the tile's backend.

    Raises
    ------
    SingularMatrixError
        When a pivot block is exactly singular before the last tile (log det = -inf; the tiled LDLᵀ cannot go on).
    """
    Lt, perm, dm, do = B.ldl_host(A)
    logp, sign, inv_m, inv_o, has2 = _ldl_pivots(dm, do)
    zero = np.flatnonzero(sign == 0)
    if zero.size and not last:
        row = row0 + int(zero[0])
        raise SingularMatrixError(
            f"the matrix is singular to working precision: an exactly zero LDL pivot at global row {row} "
            "(determinant 0, log det = -inf). A tiled factorization cannot continue past it; add a diagonal "
            "shift d=... to regularize, or check the input", row=row)
    xp = B.namespace(A)
    as_tile = (lambda h: h) if B.is_numpy_like(A) and type(A).__module__.startswith("numpy") else \
        (lambda h: xp.asarray(h))
    dt = A.dtype
    return LDLFactor(as_tile(Lt.astype(Lt.dtype)), as_tile(perm), as_tile(inv_m.astype(str(dt).split(".")[-1])),
                     as_tile(inv_o.astype(str(dt).split(".")[-1])) if has2 else None,
                     Pivots(logp, sign))


def getrf(A, row0: int = 0, last: bool = False):
    """LU with partial pivoting inside a diagonal tile: ``A[perm] = L U``; log|pivot_r| = log|U_rr|.

    The sign of the row permutation is folded into the sign of the tile's first pivot.
    """
    lu, piv = B.lu_factor(A)
    piv = np.asarray(B.to_host(piv)).astype(np.int64)
    b = piv.shape[0]
    perm = np.arange(b)
    for r, p in enumerate(piv):  # LAPACK row interchanges, applied in order
        if p != r:
            perm[r], perm[p] = perm[p], perm[r]
    swaps = int(np.count_nonzero(piv != np.arange(b)))
    xp = B.namespace(lu)
    u = B.to_host(xp.linalg.diagonal(lu)).astype(np.float64)
    with np.errstate(divide="ignore"):
        logp = np.log(np.abs(u))
    sign = np.sign(u).astype(np.int8)
    if swaps % 2 and b:
        sign[0] = -sign[0]
    zero = np.flatnonzero(u == 0)
    if zero.size and not last:
        row = row0 + int(zero[0])
        raise SingularMatrixError(
            f"the matrix is singular to working precision: an exactly zero LU pivot at global row {row} "
            "(determinant 0, log det = -inf). A tiled factorization cannot continue past it; add a diagonal "
            "shift d=... to regularize, or check the input", row=row)
    return LUFactor(lu, perm if B.is_numpy_like(lu) and type(lu).__module__.startswith("numpy")
                    else xp.asarray(perm), Pivots(logp, sign))


def factor_diag(A, assume: str, row0: int = 0, last: bool = False):
    """Factor a diagonal tile with the kernel of ``assume`` (``spd``: POTRF, ``sym``: SYTRF, ``gen``: GETRF)."""
    A = B.aligned(A)
    if assume == "spd":
        return potrf(A, row0=row0)
    if assume == "sym":
        return sytrf(A, row0=row0, last=last)
    if assume == "gen":
        return getrf(A, row0=row0, last=last)
    raise ValueError(f"assume must be one of {ASSUME}, got {assume!r}")


def pivots(factor) -> Pivots:
    """The host-side log-pivots of a factor (what leaves the engine)."""
    return factor.pivots


# --------------------------------------------------------------------------------------------------------------
# Panel solves
# --------------------------------------------------------------------------------------------------------------

def _apply_dinv(W, dinv_main, dinv_off):
    """W · D⁻¹ for a symmetric tridiagonal D⁻¹ (1×1 and 2×2 blocks)."""
    V = W * dinv_main[None, :]
    if dinv_off is None:
        return V
    xp = B.namespace(W)
    e = dinv_off[None, :]
    z = xp.zeros((W.shape[0], 1), dtype=W.dtype)
    # V[:, c] += W[:, c+1] e[c]  and  V[:, c+1] += W[:, c] e[c]
    return V + xp.concat([W[:, 1:] * e, z], axis=1) + xp.concat([z, W[:, :-1] * e], axis=1)


def trsm(factor, A):
    """Column-panel solve of step k: L_ik (``spd``), W_ik (``sym``) or L_ik = A_ik U⁻¹ (``gen``)."""
    A = B.aligned(A)
    if isinstance(factor, CholFactor):
        return B.solve_lower_right_t(factor.L, A)
    if isinstance(factor, LDLFactor):
        xp = B.namespace(A)
        Ap = xp.take(A, factor.perm, axis=1)
        return SymPanel(B.solve_lower_right_t(factor.L, Ap, unit_diagonal=True), factor.dinv_main,
                        factor.dinv_off)
    if isinstance(factor, LUFactor):
        return B.solve_upper_right(factor.lu, A)
    raise TypeError(f"unknown factor type {type(factor).__name__}")


def trsm_row(factor: LUFactor, A):
    """Row-panel solve of step k for LU: U_kj = L⁻¹ P A_kj."""
    A = B.aligned(A)
    xp = B.namespace(A)
    return B.solve_lower_left(factor.lu, xp.take(A, factor.perm, axis=0), unit_diagonal=True)


# --------------------------------------------------------------------------------------------------------------
# Trailing update
# --------------------------------------------------------------------------------------------------------------

def update(C, Pi, Pj):
    """One trailing update of tile (i, j): C − L_ik L_jkᵀ (SYRK when Pi is Pj), C − W_ik D⁻¹ W_jkᵀ for ``sym``."""
    C = B.aligned(C)
    same = Pi is Pj  # one panel tile on both sides: a symmetric rank-k update (SYRK)
    if isinstance(Pi, SymPanel):
        Wj = B.aligned(Pj.W)
        Wi = Wj if same else B.aligned(Pi.W)
        return B.matmul_sub(C, _apply_dinv(Wi, Pi.dinv_main, Pi.dinv_off), Wj)
    Pj = B.aligned(Pj)
    return B.matmul_sub(C, Pj if same else B.aligned(Pi), Pj)


def update_gen(C, Lik, Ukj):
    """One trailing update of LU: C − L_ik U_kj."""
    return B.matmul_sub(B.aligned(C), B.aligned(Lik), B.aligned(Ukj), transpose_b=False)
