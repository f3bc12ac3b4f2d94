"""A fitted spectral curve and its decompressed law: density, support, atoms and the quadrature of the bulk at any
size n ≥ n₀ (the maths: :mod:`dlogdet.linalg.freecurve`)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...core.errors import InputError
from .algebra import QUAD_NODES, Atom, CurveFitError, _trim, decompressed_polynomial, evolve_atom_weight, physical_branch


@dataclass(frozen=True)
class _Frame:
    """Normalized coordinates y = (λ − center)/scale."""

    center: float
    scale: float

    def to_y(self, lam):
        return (np.asarray(lam, dtype=np.float64) - self.center) / self.scale

    def to_x(self, y):
        return self.center + self.scale * np.asarray(y)


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
        def power(p: int) -> Callable[[np.ndarray], np.ndarray]:
            return lambda x: x ** p

        return np.array([self.integrate(power(p)) for p in range(k + 1)])

    def density(self, x) -> np.ndarray:
        """ρₙ(x) of the bulk (eigenvalue units) at points x."""
        return self.curve.density(x, t=self.t)

    def edges(self) -> list:
        """The support intervals [(a, b), ...] (eigenvalue units)."""
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
        """The normalized coordinates of the fit."""
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
        """The atoms at t = log(n/n₀), their weights evolved."""
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
        starts: list[int] = [int(i) for i in np.nonzero(edges == 1)[0]]
        ends: list[int] = [int(i) for i in np.nonzero(edges == -1)[0]]
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
