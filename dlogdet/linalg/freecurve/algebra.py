"""The algebra of spectral curves: the errors and constants of the fit, the decompressed polynomial Pₜ, the
physical branch of m on the real axis, and atoms with their weights under decompression (the maths:
:mod:`dlogdet.linalg.freecurve`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from math import comb

import numpy as np

from ...core.errors import InputError

class SpectrumError(InputError):
    """A spectrum that cannot be fitted or decompressed as given (empty, not finite, too small for the degrees)."""


class CurveFitError(InputError):
    """No algebraic curve of the requested degrees describes the spectrum (the message names the fix)."""


#: Degrees tried by ``degrees="auto"`` (why: (1, 2) is Marchenko–Pastur and the semicircle, (2, 3)–(3, 4) hold two
#: bulks or a bulk and an atom; beyond 5 the least squares fit the sampling noise, which decompression amplifies).
AUTO_DEGREES = ((1, 2), (2, 2), (1, 3), (2, 3), (3, 3), (2, 4), (3, 4))
#: Bernstein-ellipse parameters of the linear-scale contours (why: r ≥ 1.5 keeps the contour ≥ 0.08 half-widths from
#: the support, where the empirical Stieltjes transform of n₀ ≈ 10³ eigenvalues is smooth; r ≤ 3 keeps it near
#: enough to see the shape).
ELLIPSES = (1.5, 1.8, 2.2, 2.6, 3.0)
#: Angles of the log-scale rays z = x·e^{iφ} (why: φ ≥ π/8 keeps every point a fixed fraction of |x| away from the
#: spectrum at that scale).
RAY_ANGLES = (np.pi / 8, np.pi / 4, np.pi / 2, 3 * np.pi / 4, 7 * np.pi / 8)
#: Nodes of the quadrature per bulk interval (why: the θ-substituted integrand is smooth; 256 Gauss nodes reach
#: 1e-8 relative on Marchenko–Pastur).
QUAD_NODES = 256
#: Reweighting steps of the least squares (why: from unit rows to rows weighted by the relative error of m takes the
#: two-bulk fit from a near-atom to both bulks; the error settles within 3-5 steps).
IRLS_STEPS = 6


def _trim(P: np.ndarray, rtol: float = 1e-13) -> np.ndarray:
    """Drop vanishing outer z- and m-degrees and a common factor mᵏ (a spurious root m = 0)."""
    tol = rtol * np.max(np.abs(P))
    keep_i = np.nonzero(np.any(np.abs(P) > tol, axis=1))[0]
    keep_j = np.nonzero(np.any(np.abs(P) > tol, axis=0))[0]
    P = P[: keep_i[-1] + 1, keep_j[0]: keep_j[-1] + 1]
    return P / np.max(np.abs(P))


def decompressed_polynomial(P: np.ndarray, t: float) -> np.ndarray:
    r"""Pₜ(z, m) = m^{d_z}·P(z + (1 − e⁻ᵗ)/m, eᵗm), trimmed of a common factor mᵏ."""
    dz, dm = P.shape[0] - 1, P.shape[1] - 1
    a, e = -math.expm1(-t), math.exp(t)
    out = np.zeros((dz + 1, dm + dz + 1))
    for i in range(dz + 1):
        for j in range(dm + 1):
            c = P[i, j]
            if c == 0.0:
                continue
            for k in range(i + 1):                                  # (z + a/m)^i = Σ C(i,k) z^k a^{i−k} m^{k−i}
                out[k, j + dz - i + k] += c * e ** j * comb(i, k) * a ** (i - k)
    return _trim(out)


def _coeffs_in_m(P: np.ndarray, z: np.ndarray) -> np.ndarray:
    """aⱼ(z) = Σᵢ P[i, j] zⁱ for every z: shape (len(z), d_m + 1)."""
    zp = z[:, None] ** np.arange(P.shape[0])[None, :]
    return zp @ P


def _roots(P: np.ndarray, z: np.ndarray) -> np.ndarray:
    """All roots m of P(z, ·) for every z (companion matrices, batched): shape (len(z), d_m)."""
    a = _coeffs_in_m(P, z.astype(complex))
    d = a.shape[1] - 1
    if d < 1:
        raise CurveFitError("the curve does not depend on m: fit with d_m >= 2")
    lead = a[:, -1]
    tiny = np.abs(lead) < 1e-14 * np.max(np.abs(a), axis=1)
    lead = np.where(tiny, 1e-14 * np.max(np.abs(a), axis=1) + 0j, lead)
    C = np.zeros((z.size, d, d), dtype=complex)
    if d > 1:
        C[:, np.arange(1, d), np.arange(d - 1)] = 1.0
    C[:, :, -1] = -a[:, :-1] / lead[:, None]
    return np.linalg.eigvals(C)


def physical_branch(P: np.ndarray, x, *, mass: float = 1.0, eta_final: float = 0.0, levels: int = 30) -> np.ndarray:
    r"""The Herglotz root m(x + i·eta_final) of P(z, m) = 0 at real points x (normalized coordinates).

    Followed from z = x + iY with Y = 50(1 + |x|), where the physical branch is m ≈ −mass/z, down a geometric
    ladder of heights to the axis, taking at each height the root nearest to the one before (a linear prediction
    from the two before). Returns m with Im m ≥ 0 (the density is Im m / π).
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    Y = 50.0 * (1.0 + np.abs(x))
    hs = np.geomspace(1.0, 1e-10, levels)
    z = x + 1j * Y
    r = _roots(P, z)
    guess = -mass / z
    m = r[np.arange(x.size), np.argmin(np.abs(r - guess[:, None]), axis=1)]
    prev = m
    heights = [Y * h for h in hs[1:]] + [np.full_like(Y, eta_final)]
    for k, h in enumerate(heights):
        r = _roots(P, x + 1j * h)
        pred = m + 0.5 * (m - prev) if k > 0 else m
        prev, m = m, r[np.arange(x.size), np.argmin(np.abs(r - pred[:, None]), axis=1)]
    return np.where(m.imag < 0, m.real + 0j, m)


@dataclass(frozen=True)
class Atom:
    """A point mass of the eigenvalue law: ``weight`` of the eigenvalues sit at ``location``."""

    location: float
    weight: float


def evolve_atom_weight(w0: float, t: float) -> float:
    r"""w(t) = 1 − (1 − w₀)e⁻ᵗ: a multiplicity w·n of the n×n matrix leaves (w − 1 + n₀/n)·n in a submatrix."""
    return 1.0 - (1.0 - w0) * math.exp(-t)


def detect_atoms(eigs, n0: int, *, rtol: float | None = None,
                 min_weight: float = 0.01) -> tuple[list[Atom], np.ndarray]:
    """Atoms of a pooled submatrix spectrum and its bulk.

    An atom is a cluster of ≥ max(3, ``min_weight``·N) eigenvalues within ``rtol``·max|λ| of each other (default
    rtol = 100·n₀·eps: the error of a computed eigenvalue is ~n₀·eps·‖A‖, so 100× that separates a repeated
    eigenvalue from a close pair). Returns the atoms (location, weight) and the remaining eigenvalues.
    """
    lam = np.sort(np.asarray(eigs, dtype=np.float64).ravel())
    if rtol is None:
        rtol = 100.0 * n0 * np.finfo(np.float64).eps
    scale = max(np.max(np.abs(lam)), np.finfo(np.float64).tiny)
    tol = rtol * scale
    breaks = np.nonzero(np.diff(lam) > tol)[0] + 1
    groups = np.split(np.arange(lam.size), breaks)
    need = max(3, int(math.ceil(min_weight * lam.size)))
    atoms, keep = [], np.ones(lam.size, bool)
    for g in groups:
        if g.size >= need:
            loc = float(np.median(lam[g]))
            atoms.append(Atom(0.0 if abs(loc) <= tol else loc, g.size / lam.size))
            keep[g] = False
    return atoms, lam[keep]
