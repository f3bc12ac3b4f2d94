"""Gauss and Gauss–Radau quadrature of zᵀ f(A) z from a Lanczos recurrence (the bracket of :mod:`dlogdet.linalg.krylov`),
and the Gauss rules' own convergence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .lanczos import Lanczos


def _quad(alpha, off, f) -> tuple[np.ndarray, np.ndarray]:
    """e₁ᵀ f(T) e₁ for a batch of Jacobi matrices, and the smallest Ritz value of each.

    LAPACK's tridiagonal eigensolver per matrix (O(s²)); a batched dense ``eigh`` is O(s³) and measured 100×
    slower at s = 120.
    """
    from scipy.linalg import eigh_tridiagonal

    k, s = alpha.shape
    vals = np.empty(k)
    rmin = np.empty(k)
    for c in range(k):
        if s == 1:
            theta, first = alpha[c], np.ones(1)
        else:
            theta, vecs = eigh_tridiagonal(alpha[c], off[c])
            first = vecs[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            vals[c] = np.sum(first ** 2 * f(theta))
        rmin[c] = theta[0]
    return vals, rmin


def radau_alpha(alpha: np.ndarray, beta_prev: np.ndarray, beta_last: np.ndarray, node: float) -> np.ndarray:
    """α̃ that extends T_m (diagonal ``alpha``, off-diagonal ``beta_prev``) by ``beta_last`` so that ``node`` is an
    eigenvalue: ``α̃ = a + β_m² / e_mᵀ(T_m − aI)⁻¹e_m``, with the last pivot of the LDLᵀ of T_m − aI.

    Returns NaN for a column where T_m − aI is not positive definite (``node`` above a Ritz value).
    """
    k, m = alpha.shape
    d = alpha[:, 0] - node
    bad = d <= 0
    for i in range(1, m):
        d = alpha[:, i] - node - beta_prev[:, i - 1] ** 2 / np.where(d == 0, np.nan, d)
        bad |= ~(d > 0)
    out = node + beta_last ** 2 / np.where(d > 0, d, np.nan)
    out[bad] = np.nan
    return out


@dataclass(frozen=True)
class Quadrature:
    """Per-column quadrature of ``zᵀ f(A) z`` from a Lanczos run (``norms²`` folded in).

    ``gauss``: the m-node Gauss rule (an upper bound for f = log); ``radau``: Gauss–Radau with the node at
    ``lower`` (a lower bound for f = log when ``lower ≤ λ_min``), None without a node; ``ritz_min``: smallest
    Ritz value per column; ``size``: order of each column's Jacobi matrix.
    """

    gauss: np.ndarray
    radau: np.ndarray | None
    ritz_min: np.ndarray
    size: np.ndarray


def quadrature(lz: Lanczos, f: Callable = np.log, lower: float | None = None) -> Quadrature:
    """Gauss (and, with a node ``lower``, Gauss–Radau) rules of every column of a Lanczos run."""
    k = lz.k
    gauss = np.full(k, np.nan)
    radau: np.ndarray | None = np.full(k, np.nan) if lower is not None else None
    rmin = np.full(k, np.nan)
    n2 = lz.norms ** 2
    for s in np.unique(lz.size):
        cols = np.flatnonzero(lz.size == s)
        if s == 0:
            continue
        al = lz.alpha[cols, :s]
        off = lz.beta[cols, : s - 1]
        g, r = _quad(al, off, f)
        gauss[cols] = n2[cols] * g
        rmin[cols] = r
        if radau is not None and lower is not None:
            bl = lz.beta[cols, s - 1]
            at = radau_alpha(al, off, bl, lower)
            al2 = np.concatenate([al, at[:, None]], axis=1)
            off2 = np.concatenate([off, bl[:, None]], axis=1)
            ok = np.isfinite(at)
            vals = np.full(cols.size, np.nan)
            if ok.any():
                vals[ok], _ = _quad(al2[ok], off2[ok], f)
            radau[cols] = n2[cols] * vals
    return Quadrature(gauss, radau, rmin, lz.size.copy())


def gauss_remainder(lz: Lanczos, f: Callable = np.log, current: np.ndarray | None = None) -> np.ndarray:
    """Per column, an estimate of how far the m-node Gauss rule still is from ``zᵀ f(A) z``, from its own history.

    The Gauss rules of the leading Jacobi matrices T_{m−2s}, T_{m−s}, T_m (s = max(2, m // 5)) decrease for log
    (monotone in m); with decrements d₀, d₁ the geometric tail ``d₁·ρ/(1 − ρ)``, ρ = d₁/d₀, is what is left if the
    convergence rate stays ρ. Gauss rules of analytic functions converge ever faster as the Ritz values settle, so
    this tends to overestimate. ``inf`` where the history is too short or ρ ≥ 0.95 (no estimate); 0 for a column
    whose Krylov space is invariant (its rule is exact). ``current``: the m-node Gauss values already computed
    (:func:`quadrature`'s ``gauss``), so that only the two shorter rules are evaluated.
    """
    k = lz.k
    out = np.full(k, np.inf)
    n2 = lz.norms ** 2
    for m in np.unique(lz.size):
        cols = np.flatnonzero(lz.size == m)
        sp = max(2, int(m) // 5)
        if m - 2 * sp < 1:
            continue
        vals = []
        for mm in (m - 2 * sp, m - sp, m):
            if mm == m and current is not None:
                vals.append(current[cols])
                continue
            g, _ = _quad(lz.alpha[cols, :mm], lz.beta[cols, : mm - 1], f)
            vals.append(n2[cols] * g)
        d0, d1 = vals[0] - vals[1], vals[1] - vals[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.where(d0 > 0, np.maximum(d1, 0.0) / d0, np.inf)
        est = np.where(rho < 0.95, np.maximum(d1, 0.0) * rho / (1.0 - np.minimum(rho, 0.95)), np.inf)
        out[cols] = est
    out[~lz.active] = 0.0
    return out
