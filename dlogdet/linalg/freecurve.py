r"""Free decompression on algebraic spectral curves: pure numerics (no dask), millisecond tests.

The Stieltjes transform m(z) = ∫ρ(x)/(x − z)dx of the eigenvalue law of a random n₀×n₀ principal submatrix of an
n×n matrix evolves with t = log(n/n₀) by ∂m/∂t = −m + (1/m)∂m/∂z (free decompression). If m₀ solves an algebraic
curve P(z, m) = Σ c_ij zⁱmʲ = 0, then mₜ solves the curve

    Pₜ(z, m) = m^{d_z} · P(z + (1 − e⁻ᵗ)/m, eᵗm) = 0,

(the characteristics z = z₀ + (1 − eᵗ)/m₀(z₀), mₜ = e⁻ᵗm₀(z₀) read backwards). Equivalently the R-transform
evolves as Rₜ(w) = R₀(eᵗw): free cumulants scale as κₖ(t) = e^{(k−1)t}κₖ(0) (the mean stays, the variance grows by
n/n₀), Marchenko–Pastur(λ) goes to Marchenko–Pastur(λ·n/n₀) exactly, and an atom of weight w₀ becomes
w(t) = 1 − (1 − w₀)e⁻ᵗ. Affine maps x ↦ (x − c)/s commute with the evolution, so every curve is fitted and
evolved in coordinates where the bulk spans [−1, 1] (or, on the log scale, (0, 1]).

Pipeline (each step a small function):

1. :func:`detect_atoms`: clusters of (numerically) equal eigenvalues, e.g. the zero atom of a rank-deficient matrix,
   are split off; the rest is the *bulk*.
2. :func:`fit_curve`: the curve P(z, m) of degrees (d_z, d_m) by least squares on contours around the support
   (Bernstein ellipses; on the log scale, the default for a positive spectrum, rays z = x·e^{iφ} at log-spaced x,
   which resolve every decade and so a bulk a decade below another), rows reweighted until the residual is the
   relative error of m the curve implies (not the algebraic residual, which lets a narrow bulk collapse into an
   atom), with the Laurent constraints that make m(z) = −Σμₖz^{−k−1} with μ₀ = 1 and the
   observed μ₁, μ₂ a solution at z → ∞. The curve holds the atoms as poles of m (Marchenko–Pastur with ratio > 1 is
   one (1, 2) curve with its zero atom); splitting the atoms off and composing them back in exactly was tried and
   dropped: the composed curve carries near-factors (aₖ − z) whose decompressed images are spurious branches.
   ``degrees="auto"`` chooses (d_z, d_m) by decompressing nested smaller spectra to n₀ (when given) and by the fit
   at n₀ itself: W₁ distances of λ and of log λ, each relative to the best candidate, median over the checks.
3. :meth:`SpectralCurve.decompress`: Pₜ in closed form; at every x the physical (Herglotz: Im m > 0 above the
   axis) root is followed from z = x + iY (Y large, m ≈ −1/z) down to the real axis; support edges by bisection,
   and a quadrature x = (a + b)/2 − (b − a)/2·cos θ per bulk, Gauss–Legendre in θ, which turns the square-root
   edges ρ ~ √(x − a) into a smooth integrand.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from math import comb
from typing import Callable, Sequence

import numpy as np

from ..core.errors import InputError

# ------------------------------------------------------------------------------------------------------- errors


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


# -------------------------------------------------------------------------------------------- polynomial algebra


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


# ------------------------------------------------------------------------------------------------------- atoms


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


# ------------------------------------------------------------------------------------------------------- fitting


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


@dataclass(frozen=True)
class _Frame:
    """Normalized coordinates y = (λ − center)/scale."""

    center: float
    scale: float

    def to_y(self, lam):
        return (np.asarray(lam, dtype=np.float64) - self.center) / self.scale

    def to_x(self, y):
        return self.center + self.scale * np.asarray(y)


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
    best = None
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
    c, err = best
    return c.reshape(dz + 1, dm + 1), err


@dataclass(frozen=True, eq=False)
class Decompressed:
    """The law of the n×n matrix predicted from a curve: bulk intervals with quadrature, and atoms.

    ``nodes``, ``weights``: quadrature of the bulk, ∫f ρ dx ≈ Σ weights·f(nodes) (weights include ρ, in the units of
    the eigenvalues); ``density_at_nodes``; ``intervals`` (support edges, eigenvalue units); ``atoms`` at size n;
    ``mass``: the bulk mass before normalization (should be 1 − Σ atom weights).
    """

    n: float
    t: float
    intervals: list
    nodes: np.ndarray
    weights: np.ndarray
    density_at_nodes: np.ndarray
    atoms: list
    mass: float
    curve: "SpectralCurve" = field(repr=False)

    def integrate(self, f: Callable[[np.ndarray], np.ndarray]) -> float:
        """∫ f dμₙ over bulk and atoms."""
        out = float(np.sum(self.weights * f(self.nodes)))
        for a in self.atoms:
            out += a.weight * float(f(np.array([a.location]))[0])
        return out

    def moments(self, k: int = 4) -> np.ndarray:
        """μ₀..μ_k of the predicted law."""
        return np.array([self.integrate(lambda x, p=p: x ** p) for p in range(k + 1)])

    def density(self, x) -> np.ndarray:
        """ρₙ(x) of the bulk (eigenvalue units) at points x."""
        return self.curve.density(x, t=self.t)

    def edges(self) -> list:
        return list(self.intervals)

    def mean_log(self, shift: float = 0.0) -> float:
        """∫ log(x + shift) dμₙ: −inf when an atom or the bulk reaches x + shift ≤ 0."""
        if any(a.location + shift <= 0 for a in self.atoms):
            return -math.inf
        if self.nodes.size and (self.intervals[0][0] + shift) <= 0:
            return math.nan
        return self.integrate(lambda x: np.log(x + shift))

    def cdf(self, x) -> np.ndarray:
        """P(λ ≤ x), from the quadrature (bulk) and the atoms: within a bulk linear through the nodes at the midpoints
        of their weights, from 0 at its left edge to its mass at its right edge (a step at each node would be off by
        up to a node's weight, 1/256 of the bulk, at every x)."""
        x = np.atleast_1d(np.asarray(x, dtype=np.float64))
        out = np.zeros_like(x)
        for a, b in self.intervals:
            sel = (self.nodes >= a) & (self.nodes <= b)
            xs, ws = self.nodes[sel], self.weights[sel]
            o = np.argsort(xs)
            xs, ws = xs[o], ws[o]
            c = np.cumsum(ws)
            out += np.interp(x, np.concatenate([[a], xs, [b]]), np.concatenate([[0.0], c - 0.5 * ws, [c[-1]]]))
        for a in self.atoms:
            out = out + a.weight * (x >= a.location)
        return out


@dataclass(frozen=True, eq=False)
class SpectralCurve:
    r"""An algebraic curve fitted to the spectrum of an n₀×n₀ submatrix, ready to decompress.

    Attributes
    ----------
    Q : numpy.ndarray
        The fitted curve Q[i, j] (coefficient of zⁱmʲ) in normalized coordinates y = (λ − center)/scale.
    P : numpy.ndarray
        Q with vanishing outer degrees trimmed (what is decompressed).
    degrees : (int, int)
        (d_z, d_m) of Q.
    atoms : list of Atom
        Atoms of the submatrix spectrum (eigenvalue units, weights at n₀).
    n0 : int
        Submatrix size.
    scale_kind : str
        ``"linear"`` or ``"log"``.
    residual : float
        RMS relative residual of the least squares on the contours.
    """

    Q: np.ndarray
    P: np.ndarray
    degrees: tuple
    atoms: list
    n0: int
    center: float
    scale: float
    scale_kind: str
    residual: float
    bulk_range: tuple
    eigenvalues: np.ndarray = field(repr=False)

    @property
    def frame(self) -> _Frame:
        return _Frame(self.center, self.scale)

    def t_of(self, n: float) -> float:
        """t = log(n/n₀), refusing n < n₀."""
        if not (isinstance(n, (int, float, np.integer, np.floating)) and math.isfinite(n)) or n < self.n0:
            raise InputError(f"n = {n!r} is smaller than the submatrix size n0 = {self.n0}: free decompression "
                             f"only grows a spectrum; give n >= {self.n0} (or fit on smaller submatrices)")
        return math.log(n / self.n0)

    def polynomial(self, t: float = 0.0) -> np.ndarray:
        """Pₜ in normalized coordinates."""
        return _trim(self.P) if t == 0.0 else decompressed_polynomial(self.P, t)

    def stieltjes(self, z, *, t: float = 0.0) -> np.ndarray:
        """m(z) = ∫ρ(x)/(x − z)dx at real z (on the axis, from above) in eigenvalue units."""
        y = self.frame.to_y(np.real(z))
        return physical_branch(self.polynomial(t), y) / self.scale

    def density(self, x, *, t: float = 0.0) -> np.ndarray:
        """ρ(x) of the bulk at size n₀eᵗ (eigenvalue units)."""
        x = np.atleast_1d(np.asarray(x, dtype=np.float64))
        m = physical_branch(self.polynomial(t), self.frame.to_y(x))
        return np.maximum(m.imag, 0.0) / (np.pi * self.scale)

    def atoms_at(self, t: float) -> list:
        return [Atom(a.location, evolve_atom_weight(a.weight, t)) for a in self.atoms]

    def support(self, *, t: float = 0.0, grid: int = 600) -> list:
        """Bulk intervals [(a, b), ...] at size n₀eᵗ in eigenvalue units (edges by bisection)."""
        return [tuple(self.frame.to_x(np.array(iv))) for iv in self._support_y(t, grid)]

    def _support_y(self, t: float, grid: int = 600) -> list:
        P = self.polynomial(t)
        lo_b, hi_b = self.bulk_range
        mean = float(np.mean(self.frame.to_y(self.eigenvalues)))
        var = float(np.var(self.frame.to_y(self.eigenvalues)))
        sd = math.sqrt(max(var, 1e-300) * math.exp(t))
        lo, hi = min(lo_b, mean - 7.0 * sd) - 0.05, max(hi_b, mean + 7.0 * sd) + 0.05
        if self.scale_kind == "log":   # eigenvalue 0 sits at y = 0: a log-spaced grid resolves every decade
            pos = np.geomspace(max(lo_b, 1e-12) / 1e3, hi, grid - grid // 4)
            xs = np.concatenate([np.linspace(max(lo, -1.0), 0.0, grid // 4, endpoint=False), pos])
        else:
            xs = np.linspace(lo, hi, grid)
        thr = 1e-7
        inside = physical_branch(P, xs).imag > thr
        if not inside.any():
            raise CurveFitError("the decompressed curve has no continuous spectrum: the fit failed; try other "
                                "degrees=(d_z, d_m) or scale='log'")
        edges = np.diff(inside.astype(int))
        starts = list(np.nonzero(edges == 1)[0])
        ends = list(np.nonzero(edges == -1)[0])
        if inside[0]:
            starts = [-1] + starts
        if inside[-1]:
            ends = ends + [grid - 1]
        dx = float(np.min(np.diff(xs)))
        lo_br = [(xs[s], xs[s + 1]) for s in starts if s >= 0]
        hi_br = [(xs[e], xs[e + 1]) for e in ends if e < grid - 1]
        ref = self._refine(P, lo_br + hi_br, thr)
        rise = dict(zip([s for s in starts if s >= 0], ref[:len(lo_br)]))
        fall = dict(zip([e for e in ends if e < grid - 1], ref[len(lo_br):]))
        out = []
        for s, e in zip(starts, ends):
            a = xs[0] - dx if s < 0 else rise[s]
            b = xs[-1] + dx if e >= grid - 1 else fall[e]
            if (e - s) > 1 or b - a > 2.5 * dx:
                out.append((a, b))
        return out

    def _curve_atoms(self, P: np.ndarray, t: float, eps: float = 1e-7, min_weight: float = 1e-3) -> list:
        """Atoms the curve itself predicts at t: poles of m on the real axis, i.e. real zeros a of the leading
        coefficient (in m) of Pₜ, with weight w = lim ε·Im m(a + iε) (m ≈ w/(a − z) there). An atom that a
        submatrix does not show yet (a rank above n₀) appears this way once n exceeds the rank."""
        lead = P[:, -1]
        nz = np.nonzero(np.abs(lead) > 1e-12 * np.max(np.abs(P)))[0]
        if nz.size < 2:
            return []
        r = np.roots(lead[: nz[-1] + 1][::-1])
        r = np.real(r[np.abs(r.imag) <= 1e-8 * (1.0 + np.abs(r))])
        out = []
        for a in r:
            m = physical_branch(P, np.array([a]), eta_final=eps)[0]
            w = eps * m.imag
            if min_weight < w <= 1.0 + 1e-6:
                out.append(Atom(float(self.frame.to_x(a)), float(min(w, 1.0))))
        return out

    @staticmethod
    def _refine(P, brackets, thr, split: int = 16, iters: int = 8) -> list:
        """Edges inside brackets (lo, hi) whose ends differ in 'inside the support': all brackets at once, each
        iteration tries ``split`` points per bracket (bracket shrinks by split + 1)."""
        if not brackets:
            return []
        br = np.array(brackets, dtype=np.float64)
        ins_lo = physical_branch(P, br[:, 0]).imag > thr
        for _ in range(iters):
            xs = br[:, :1] + (br[:, 1:] - br[:, :1]) * np.arange(1, split + 1)[None, :] / (split + 1)
            ins = (physical_branch(P, xs.ravel()).imag > thr).reshape(xs.shape)
            allx = np.concatenate([br[:, :1], xs, br[:, 1:]], axis=1)
            flags = np.concatenate([ins_lo[:, None], ins, ~ins_lo[:, None]], axis=1)
            k = np.argmax(flags != ins_lo[:, None], axis=1)       # first point whose side differs from lo's
            br = np.stack([allx[np.arange(br.shape[0]), k - 1], allx[np.arange(br.shape[0]), k]], axis=1)
        return list(0.5 * (br[:, 0] + br[:, 1]))

    def decompress(self, n: float | None = None, *, t: float | None = None, nodes: int = QUAD_NODES) -> Decompressed:
        """The law at size n (or t = log(n/n₀)): support, quadrature of the bulk, atoms."""
        if t is None:
            t = self.t_of(self.n0 if n is None else n)
        n = self.n0 * math.exp(t)
        P = self.polynomial(t)
        ivs = self._support_y(t)
        g, gw = _leggauss(nodes)
        th = 0.5 * np.pi * (g + 1.0)
        wth = 0.5 * np.pi * gw
        ys, ws = [], []
        for a, b in ivs:
            ys.append(0.5 * (a + b) - 0.5 * (b - a) * np.cos(th))
            ws.append(0.5 * (b - a) * np.sin(th) * wth)
        y = np.concatenate(ys)
        w = np.concatenate(ws)
        found = self.atoms_at(t)
        for a in self._curve_atoms(P, t):   # poles of the curve not seen as atoms at n₀ (2% of the frame apart)
            if all(abs(self.frame.to_y(a.location) - self.frame.to_y(b.location)) > 2e-2 for b in found) \
                    and sum(b.weight for b in found) + a.weight <= 1.0 + 1e-9:
                found.append(a)
        mass_atoms = sum(a.weight for a in found)
        rho = np.maximum(physical_branch(P, y).imag, 0.0) / np.pi
        mass = float(np.sum(rho * w))
        bulk = max(1.0 - mass_atoms, 0.0)
        scale = bulk / mass if mass > 0 else 0.0
        return Decompressed(n=n, t=t, intervals=[tuple(self.frame.to_x(np.array(iv))) for iv in ivs],
                            nodes=self.frame.to_x(y), weights=rho * w * scale,
                            density_at_nodes=rho * scale / self.scale, atoms=found, mass=mass + mass_atoms,
                            curve=self)


@functools.lru_cache(maxsize=8)
def _leggauss(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(k)


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


def _parse_degrees(degrees) -> list[tuple[int, int]] | None:
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
    (dz, dm), = _parse_degrees(degrees)
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


# -------------------------------------------------------------------------------------------- degree selection


def _quantile_fn(pred: Decompressed) -> Callable[[np.ndarray], np.ndarray]:
    """The predicted law's quantile function: piecewise linear through the bulk's quadrature nodes at their CDF
    midpoints, flat across each atom's jump."""
    pts = [(float(x), 0, float(w)) for x, w in zip(pred.nodes, pred.weights)]
    pts += [(float(at.location), 1, float(at.weight)) for at in pred.atoms]
    pts.sort()
    xs, cs, c = [], [], 0.0
    for x, is_atom, w in pts:
        if is_atom:
            xs += [x, x]
            cs += [c, c + w]
        else:
            xs.append(x)
            cs.append(c + 0.5 * w)
        c += w
    xs, cs = np.array(xs), np.array(cs) / max(c, 1e-300)
    return lambda q: np.interp(q, cs, xs)


def _w1(pred: Decompressed, obs: np.ndarray, log: bool = False) -> float:
    """Wasserstein-1 distance between a predicted law and the empirical law of ``obs``, over std(obs); with ``log``
    the distance of the laws of log λ over std(log λ) (λ > 0 only: a zero atom is the linear distance's job). The
    log distance bounds the error of the mean log, |E log λ̂ − E log λ| ≤ W₁(log λ̂, log λ), without the chance
    cancellations of comparing the mean logs themselves."""
    obs = np.sort(np.asarray(obs, dtype=np.float64))
    q = (np.arange(obs.size) + 0.5) / obs.size
    qs = _quantile_fn(pred)(q)
    if not log:
        return float(np.mean(np.abs(qs - obs)) / max(np.std(obs), 1e-300))
    tol = 1e-9 * max(float(obs[-1]), 1e-300)
    keep = (obs > tol) & (qs > tol)
    if keep.sum() < 2:
        return 0.0
    lo, lq = np.log(obs[keep]), np.log(qs[keep])
    return float(np.mean(np.abs(lq - lo)) / max(float(np.std(lo)), 1e-12))


def _valid(dec: Decompressed, positive: bool, negative_mass: float = 0.0) -> bool:
    """A density: some bulk, finite, mass within 5% of 1 and, for a positive spectrum, at most ``negative_mass``
    of it below 0 (the nested checks tolerate 1%: a curve fitted to a k×k block may carry a tiny spurious bulk
    below 0 that the W₁ scores then charge; the law used for the answer tolerates none)."""
    if not dec.intervals or not np.all(np.isfinite(dec.weights)):
        return False
    if abs(dec.mass - 1.0) > 0.05:
        return False
    if positive and dec.intervals[0][0] <= 0:
        below = float(np.sum(dec.weights[dec.nodes <= 0])) + sum(a.weight for a in dec.atoms if a.location < 0)
        return below <= negative_mass
    return True


def select_curve(eigs, n0: int, *, t_target: float = 0.0, nested: dict | None = None, scale: str = "auto",
                 candidates: Sequence[tuple[int, int]] = AUTO_DEGREES, atoms: bool = True,
                 parsimony: float = 1.25) -> tuple[SpectralCurve, list[dict]]:
    """Fit every candidate degree and keep the simplest of the best.

    Score of a candidate: with ``nested`` spectra ({k: eigenvalues of k×k leading blocks of the same submatrices,
    k < n₀}), the error of decompressing each of them to n₀ against the observed n₀ spectrum (W₁ over the spread,
    plus on a positive spectrum W₁ of log λ over its spread, which bounds the error of the mean log and sees a narrow
    low bulk that the linear distance does not): the task itself, on known data. Without them, the same distances
    of the fitted law at n₀. A candidate whose law at n₀ or at ``t_target`` is not a valid density (no
    bulk, a mass off by > 5 %, a positive spectrum decompressed below 0) is rejected. Among the rest, the fewest
    coefficients whose score is within ``parsimony`` × the best.
    """
    lam = check_spectrum(eigs)
    positive = bool(np.min(lam) >= -100.0 * n0 * np.finfo(np.float64).eps * np.max(np.abs(lam)))
    rows, fits = [], []
    for dz, dm in candidates:
        row = {"degrees": (dz, dm), "score": math.inf, "valid": False}
        try:
            cur = fit_curve(lam, n0, degrees=(dz, dm), scale=scale, atoms=atoms)
            dt = cur.decompress(t=t_target, nodes=128)
            ok = _valid(dt, positive and not any(a.location <= 0 for a in cur.atoms))
            d0 = cur.decompress(t=0.0, nodes=128) if ok and not nested else dt
            if ok and nested:
                errs = {}
                for k, ek in sorted(nested.items()):
                    try:
                        ck = fit_curve(ek, int(k), degrees=(dz, dm), scale=cur.scale_kind, atoms=atoms)
                        dk = ck.decompress(n0, nodes=128)
                    except (CurveFitError, SpectrumError, np.linalg.LinAlgError):
                        errs[int(k)] = math.inf
                        continue
                    if not _valid(dk, positive, negative_mass=0.01):
                        errs[int(k)] = math.inf
                        continue
                    errs[int(k)] = _w1(dk, lam) + (_w1(dk, lam, log=True) if positive else 0.0)
                # and the fit itself, at t = 0: a curve that cannot hold the structure seen at n₀ (two bulks) fails
                # here even where the smaller blocks do not show that structure yet
                d0 = cur.decompress(t=0.0, nodes=128)
                errs[int(n0)] = _w1(d0, lam) + (_w1(d0, lam, log=True) if positive else 0.0)
                row["checks"] = errs
                score = float(np.median(list(errs.values())))     # rescored below, relative to the best
            elif ok:
                score = _w1(d0, lam) + (_w1(d0, lam, log=True) if positive else 0.0)
            else:
                score = math.inf
            row.update(score=score, valid=bool(ok and math.isfinite(score)), residual=cur.residual)
            fits.append(cur)
        except (CurveFitError, SpectrumError, np.linalg.LinAlgError) as e:
            row["error"] = str(e)
            fits.append(None)
        rows.append(row)
    if nested:
        # each check relative to the best candidate at that block size, and the median over the checks: a block too
        # small to show the structure (a bulk that appears only above its size) leaves every candidate far off, or
        # some without a valid density, and must not outvote the other checks
        best_k = {}
        for r in rows:
            for k, e in r.get("checks", {}).items():
                best_k[k] = min(best_k.get(k, math.inf), e)
        for r in rows:
            if r["valid"] and r.get("checks"):
                rel = [e / max(best_k[k], 1e-12) for k, e in r["checks"].items() if math.isfinite(best_k[k])]
                r["score"] = float(np.median(rel)) if rel else math.inf
                r["valid"] = math.isfinite(r["score"])
    good = [i for i, r in enumerate(rows) if r["valid"]]
    if not good:
        raise CurveFitError("no candidate degrees give a valid decompressed density ("
                            + "; ".join(f"{r['degrees']}: {r.get('error', 'invalid')}" for r in rows)
                            + "): give degrees=(d_z, d_m) explicitly, try scale='log', or use a larger n0")
    best = min(rows[i]["score"] for i in good)
    cands = [i for i in good if rows[i]["score"] <= parsimony * best + 1e-12]
    pick = min(cands, key=lambda i: ((rows[i]["degrees"][0] + 1) * (rows[i]["degrees"][1] + 1), rows[i]["score"]))
    for i, r in enumerate(rows):
        r["chosen"] = i == pick
    return fits[pick], rows


# ------------------------------------------------------------------------------------------------ exact laws


def marchenko_pastur_density(x, ratio: float, var: float = 1.0) -> np.ndarray:
    """Density of the bulk of Marchenko–Pastur(ratio) with variance ``var`` (eigenvalues of XᵀX/m, ratio = n/m)."""
    x = np.asarray(x, dtype=np.float64)
    a, b = var * (1 - math.sqrt(ratio)) ** 2, var * (1 + math.sqrt(ratio)) ** 2
    inside = (x > a) & (x < b)
    out = np.zeros_like(x)
    xi = x[inside]
    out[inside] = np.sqrt((b - xi) * (xi - a)) / (2 * np.pi * var * ratio * xi)
    return out


def marchenko_pastur_mean_log(ratio: float, var: float = 1.0) -> float:
    """∫ log x dMP(ratio) for ratio < 1: (ratio − 1)/ratio·log(1 − ratio) − 1 + log var."""
    if not 0 < ratio < 1:
        raise InputError("the mean log of Marchenko-Pastur is finite only for 0 < ratio < 1")
    return (ratio - 1) / ratio * math.log1p(-ratio) - 1.0 + math.log(var)


# ------------------------------------------------------------------------------------------------------- plots


def plot_decompression(curve: SpectralCurve, sizes: Sequence[int] = (), *, full_eigenvalues=None, path=None,
                       bins: int = 60):
    """Submatrix histogram, fitted density at n₀, decompressed densities at ``sizes`` and, where known, the
    histogram of the full matrix's eigenvalues. Matplotlib (Agg) is imported here, only when plotting.

    Returns the matplotlib Figure (saved to ``path`` when given: .png, .svg, .pdf).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    lam = curve.eigenvalues
    ax.hist(lam, bins=bins, density=True, alpha=0.35, color="tab:blue",
            label=f"submatrix eigenvalues (n0 = {curve.n0})")
    for k, n in enumerate([curve.n0, *sizes]):
        dec = curve.decompress(n, nodes=128)
        label = (f"fitted curve {curve.degrees}, n0 = {curve.n0}" if n == curve.n0 else f"decompressed, n = {n}")
        for i, (a, b) in enumerate(dec.intervals):
            x = np.linspace(a, b, 400)
            ax.plot(x, dec.density(x), color=f"C{k + 1}", lw=1.6, label=label if i == 0 else None)
        for at in dec.atoms:
            ax.axvline(at.location, color=f"C{k + 1}", ls=":", lw=1)
    if full_eigenvalues is not None:
        ax.hist(np.asarray(full_eigenvalues), bins=bins, density=True, histtype="step", color="k", lw=1,
                label="full matrix eigenvalues")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig
