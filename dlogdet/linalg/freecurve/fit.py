"""The least-squares fit of an algebraic curve P(z, m) = 0 to a submatrix spectrum: contours around the spectrum,
moment constraints, reweighting to the relative error of m (the maths: :mod:`dlogdet.linalg.freecurve`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...core.errors import InputError
from .algebra import ELLIPSES, IRLS_STEPS, RAY_ANGLES, Atom, CurveFitError, SpectrumError, _trim, detect_atoms
from .curve import SpectralCurve, _Frame

def check_spectrum(eigs, what: str = "spectrum") -> np.ndarray:
    """A finite, non-empty 1-D float64 spectrum, else a :class:`SpectrumError` naming the fix."""
    lam = np.asarray(eigs, dtype=np.float64).ravel() if np.size(eigs) else np.zeros(0)
    if lam.size == 0:
        raise SpectrumError(f"the {what} is empty: give the eigenvalues of at least one n0 x n0 submatrix "
                            "(dlogdet.spectrum(source, n0=...))")
    if not np.all(np.isfinite(lam)):
        bad = int(np.sum(~np.isfinite(lam)))
        raise SpectrumError(f"the {what} holds {bad} NaN/Inf value(s): the submatrix was not finite; check the "
                            "source (dlogdet checks tiles with dlogdet.check.finite) or drop the bad points")
    return lam


def _contour(scale_kind: str, lo: float, hi: float) -> np.ndarray:
    """Fitting points in the upper half-plane (normalized coordinates); the lower half is their conjugate."""
    if scale_kind == "linear":
        th = np.linspace(0, np.pi, 66)[1:-1]
        zs = [0.5 * (r * np.exp(1j * th) + np.exp(-1j * th) / r) for r in ELLIPSES]   # Bernstein ellipses of [−1, 1]
        return np.concatenate(zs)
    # log scale: rays x·e^{iφ} at log-spaced x from a decade below the bulk to above it, plus an outer circle
    xs = np.geomspace(lo / 4.0, hi * 2.0, 80)
    zs = [xs * np.exp(1j * phi) for phi in RAY_ANGLES]
    th = np.linspace(0, np.pi, 34)[1:-1]
    zs.append(2.5 * hi * np.exp(1j * th))
    return np.concatenate(zs)


def _series_constraints(dz: int, dm: int, mu: Sequence[float]) -> np.ndarray:
    r"""Rows C such that C·c = 0 makes the Laurent coefficients of P(z, m(z)) at z^{d_z}, z^{d_z−1}, z^{d_z−2}
    vanish, m(z) = −Σₖ μₖ z^{−k−1} (μ₀ = 1, μ₁, μ₂)."""
    K = len(mu)
    # S^j as a power series in w = 1/z up to order K − 1, S(w) = Σ μₖ wᵏ
    pows = [np.eye(1, K)[0]]
    for _ in range(dm):
        nxt = np.convolve(pows[-1], mu)[:K]
        pows.append(nxt)
    rows = np.zeros((K, (dz + 1) * (dm + 1)))
    for r in range(K):
        for i in range(dz + 1):
            for j in range(dm + 1):
                q = i - j - dz + r                                    # z^i m^j = (−1)^j Σ_q S^j_q z^{i−j−q}
                if 0 <= q < K:
                    rows[r, i * (dm + 1) + j] = (-1) ** j * pows[j][q]
    return rows


def _fit_Q(y: np.ndarray, dz: int, dm: int, scale_kind: str, n_moments: int = 3, bulk_lo: float | None = None,
           refine: int = IRLS_STEPS) -> tuple[np.ndarray, float]:
    """Least-squares curve Q (shape (dz+1, dm+1)) of the empirical Stieltjes transform of y, and the RMS relative
    error of m that it implies on the contour.

    The algebraic residual P(z, m̂) of the empirical m̂ weighs the contour points very unequally: where a bulk is
    narrow on the frame's scale (a second bulk a decade below the first), |∂P/∂m| is small and a curve that turns
    that bulk into a near-atom costs almost nothing. So the rows are reweighted (``refine`` steps, from rows of unit
    norm) by 1/|m̂·∂P/∂m(z, m̂)| of the previous fit: P(z, m̂)/(m̂·∂P/∂m) ≈ (m̂ − m)/m̂, the relative error of the
    Stieltjes transform the curve implies, which is what the least squares then minimize.
    """
    lo, hi = (float(y.min()) if bulk_lo is None else bulk_lo), float(y.max())
    z = _contour(scale_kind, lo, hi)
    m = np.mean(1.0 / (y[None, :] - z[:, None]), axis=1)
    zi = z[:, None] ** np.arange(dz + 1)[None, :]
    mj = m[:, None] ** np.arange(dm + 1)[None, :]
    dmj = np.zeros_like(mj)
    dmj[:, 1:] = mj[:, :-1] * np.arange(1, dm + 1)[None, :]
    A0 = (zi[:, :, None] * mj[:, None, :]).reshape(z.size, -1)
    D0 = (zi[:, :, None] * dmj[:, None, :]).reshape(z.size, -1)          # rows of ∂P/∂m
    mu = [float(np.mean(y ** k)) for k in range(n_moments)]
    C = _series_constraints(dz, dm, mu)
    # null space of the constraints, then the smallest right singular vector of A restricted to it
    _, s, Vt = np.linalg.svd(C)
    rank = int(np.sum(s > 1e-12 * max(s.max(), 1.0)))
    Nsp = Vt[rank:].T
    if Nsp.shape[1] == 0:
        raise CurveFitError(f"degrees (d_z={dz}, d_m={dm}) leave no freedom after the moment constraints: "
                            "use larger degrees")
    w = 1.0 / np.linalg.norm(A0, axis=1)
    best: tuple[np.ndarray, float] | None = None
    for _ in range(refine + 1):
        A = A0 * w[:, None]
        B = np.vstack([A.real, A.imag]) @ Nsp
        colnorm = np.linalg.norm(B, axis=0)
        colnorm = np.where(colnorm > 0, colnorm, 1.0)
        _, _, Wt = np.linalg.svd(B / colnorm, full_matrices=False)
        c = Nsp @ (Wt[-1] / colnorm)
        c = c / np.max(np.abs(c))
        denom = np.abs(m * (D0 @ c))
        rel = np.abs(A0 @ c) / np.maximum(denom, 1e-300)
        err = float(np.sqrt(np.mean(np.minimum(rel, 1.0) ** 2)))
        if best is None or err < best[1]:
            best = (c, err)
        # next weights: 1/|m ∂P/∂m|, floored so that no point near a branch point of the fit dominates
        floor = 1e-3 * float(np.median(denom))
        w = 1.0 / np.maximum(denom, max(floor, 1e-300))
    assert best is not None   # the loop runs at least once
    c, err = best
    return c.reshape(dz + 1, dm + 1), err


def _frame_for(bulk: np.ndarray, scale_kind: str) -> _Frame:
    lo, hi = float(bulk.min()), float(bulk.max())
    if scale_kind == "log":
        return _Frame(0.0, hi)
    half = 0.5 * (hi - lo)
    return _Frame(0.5 * (lo + hi), half if half > 0 else max(abs(hi), 1.0))


def choose_scale(bulk: np.ndarray, atoms: Sequence[Atom] = ()) -> str:
    """``"log"`` when the bulk is positive and no atom is negative (a PSD matrix), else ``"linear"``.

    Why: the rays z = x·e^{iφ} of the log scale sit at a fixed fraction of |x| from every part of the spectrum, so a
    bulk a decade or more below another is seen as a bulk, not as a point; Bernstein ellipses of the whole range see
    it as an atom (two Wisharts at scales 1 and 10: +72% on the log-det, against 0.1% on rays). On single-scale
    spectra the two agree (Marchenko-Pastur 1000 -> 8000: 0.03% linear, 0.01% log).
    """
    lo = float(np.min(bulk))
    return "log" if lo > 0 and all(a.location >= 0 for a in atoms) else "linear"


def parse_degrees(degrees) -> list[tuple[int, int]] | None:
    """``[(d_z, d_m)]`` of a given pair, None for ``"auto"``; an InputError or CurveFitError naming the fix."""
    if isinstance(degrees, str):
        if degrees != "auto":
            raise InputError(f"degrees must be 'auto' or a pair (d_z, d_m), got {degrees!r}")
        return None
    try:
        dz, dm = degrees
        ok = float(dz) == int(dz) and float(dm) == int(dm)
        dz, dm = int(dz), int(dm)
    except (TypeError, ValueError):
        raise InputError(f"degrees must be 'auto' or a pair of integers (d_z, d_m), got {degrees!r}") from None
    if not ok or dz < 1 or dm < 2:
        raise CurveFitError(f"degrees (d_z={degrees[0]}, d_m={degrees[1]}) cannot describe a continuous spectrum: "
                            "a curve needs d_z >= 1 and d_m >= 2 (Marchenko-Pastur is (1, 2)); or use degrees='auto'")
    return [(dz, dm)]


def fit_curve(eigs, n0: int, *, degrees=(1, 2), scale: str = "auto", atoms: bool = True,
              atom_rtol: float | None = None) -> SpectralCurve:
    """Fit the algebraic curve of a submatrix spectrum (pooled eigenvalues of submatrices of size n₀).

    Parameters
    ----------
    eigs : array_like
        Eigenvalues (one or several submatrices of the same size n₀, pooled).
    n0 : int
        Submatrix size.
    degrees : (d_z, d_m)
        Degrees of the bulk's curve (``"auto"`` is :func:`select_curve`'s job).
    scale : {"auto", "linear", "log"}
        Contours and quadrature on a linear or a log scale (auto: log for a positive spectrum, :func:`choose_scale`).
    atoms : bool
        Split off atoms (:func:`detect_atoms`) and compose them into the curve exactly.
    """
    lam = check_spectrum(eigs)
    if isinstance(n0, bool) or not isinstance(n0, (int, np.integer)) or n0 < 1:
        raise InputError(f"n0 must be a positive integer (the submatrix size), got {n0!r}")
    parsed = parse_degrees(degrees)
    if parsed is None:
        raise InputError("fit_curve takes degrees=(d_z, d_m); degrees='auto' is select_curve's")
    (dz, dm), = parsed
    found, bulk = detect_atoms(lam, int(n0), rtol=atom_rtol) if atoms else ([], lam)
    if bulk.size == 0:
        raise SpectrumError("the spectrum is all atoms (every eigenvalue repeated): there is no bulk to decompress; "
                            "its log-determinant is n times the mean log of the atoms")
    p = (dz + 1) * (dm + 1)
    if np.unique(bulk).size < 2 * p:
        raise CurveFitError(f"degrees (d_z={dz}, d_m={dm}) have {p} coefficients but the bulk has only "
                            f"{np.unique(bulk).size} distinct eigenvalues: use lower degrees or a larger n0")
    if scale == "auto":
        scale = choose_scale(bulk, found)
    if scale not in ("linear", "log"):
        raise InputError(f"scale must be 'auto', 'linear' or 'log', got {scale!r}")
    if scale == "log" and (bulk.min() <= 0 or any(a.location < 0 for a in found)):
        raise InputError("scale='log' needs a positive bulk spectrum; use scale='linear' (or shift the matrix)")
    # the curve describes the whole law, atoms included (an atom is a pole of m: Marchenko-Pastur with ratio > 1 is
    # one (1, 2) curve with its zero atom); the atoms found are reported and their weights evolved in closed form
    fr = _frame_for(lam, scale)
    y = fr.to_y(lam)
    Q, resid = _fit_Q(y, dz, dm, scale, bulk_lo=float(fr.to_y(bulk).min()))
    return SpectralCurve(Q=Q, P=_trim(Q), degrees=(dz, dm), atoms=list(found), n0=int(n0), center=fr.center,
                         scale=fr.scale, scale_kind=scale, residual=resid,
                         bulk_range=(float(fr.to_y(bulk).min()), float(fr.to_y(bulk).max())), eigenvalues=lam)
