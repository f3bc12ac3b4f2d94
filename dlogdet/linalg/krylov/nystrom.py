"""The randomized range finder, the stable shifted single-pass Nyström approximation and its preconditioner, and
what a sketch says of the spectrum: its decay and bounds on log det."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .lanczos import EPS, Matmat


def orthonormalize(Y: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns of Y (thin QR)."""
    q, _ = np.linalg.qr(Y)
    return q


def range_finder(matmat: Matmat, n: int, size: int, *, power: int = 0,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Orthonormal Q (n × size) whose span captures the dominant range of A: ``Q = orth(Aᵖ·A·G)``.

    Each power iteration costs one more product with ``size`` columns and sharpens the decay seen by the sketch
    from λ to λ^(2p+1) (Halko, Martinsson & Tropp 2011, §4.5); Q is re-orthonormalized after every product so
    that the small directions are not lost to rounding.
    """
    rng = np.random.default_rng(rng)
    Q = orthonormalize(rng.standard_normal((n, size)))
    for _ in range(power):
        Q = orthonormalize(np.asarray(matmat(Q), dtype=np.float64))
    return Q


def nystrom(Omega: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable shifted Nyström approximation ``A ≈ U diag(λ) Uᵀ`` from an orthonormal sketch Ω and ``Y = AΩ``.

    Returns U (n × ℓ, orthonormal) and λ (ℓ, descending, ≥ 0). ``U diag(λ) Uᵀ ⪯ A`` up to the shift
    ν = eps·√n·‖Y‖_F (Tropp et al. 2017, Alg. 3); the shift keeps the Cholesky of ΩᵀYν defined when A is singular
    to working precision, and where it still fails the small core is inverted by its eigendecomposition.
    """
    n, ell = Y.shape
    nu = EPS * math.sqrt(n) * float(np.linalg.norm(Y))   # ‖Y‖_F ≥ ‖Y‖₂: a slightly larger, safe shift, no SVD
    nu = max(nu, np.finfo(float).tiny)
    Yn = Y + nu * Omega
    core = Omega.T @ Yn
    core = 0.5 * (core + core.T)
    try:
        C = np.linalg.cholesky(core)              # core = C Cᵀ
        F = np.linalg.solve(C, Yn.T).T            # Yν C⁻ᵀ
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(core)
        keep = w > w.max() * ell * EPS
        F = (Yn @ V[:, keep]) / np.sqrt(w[keep])
    U, s, _ = np.linalg.svd(F, full_matrices=False)
    lam = np.maximum(s ** 2 - nu, 0.0)
    return U, lam


@dataclass(frozen=True)
class NystromApprox:
    """``Â = U diag(lam) Uᵀ`` (ℓ columns) and what it cost (``matvecs``, products of A with one vector)."""

    U: np.ndarray
    lam: np.ndarray
    matvecs: int
    passes: int

    @property
    def sketch(self) -> int:
        """Columns of the sketch."""
        return int(self.lam.size)


def randomized_nystrom(matmat: Matmat, n: int, sketch: int, *, power: int = 1,
                       rng: np.random.Generator | None = None) -> NystromApprox:
    """Randomized Nyström of a PSD A with a sketch of ``sketch`` columns and ``power`` power iterations.

    Ω = range_finder(power) (a Gaussian block when power = 0), Y = AΩ, then :func:`nystrom`. Products:
    ``(power + 1)·sketch`` matrix-vector products in ``power + 1`` block products.
    """
    if not 1 <= sketch <= n:
        raise ValueError(f"sketch must be in [1, n={n}], got {sketch}")
    Omega = range_finder(matmat, n, sketch, power=power, rng=rng)
    Y = np.asarray(matmat(Omega), dtype=np.float64)
    U, lam = nystrom(Omega, Y)
    return NystromApprox(U, lam, (power + 1) * sketch, power + 1)


@dataclass(frozen=True)
class NystromPreconditioner:
    """``P = U diag(λ) Uᵀ + μI`` (λ from a Nyström approximation of A − μI ⪰ 0).

    ``log det P = Σ log(λᵢ + μ) + (n − ℓ) log μ`` and ``P^{-1/2} = U diag((λ+μ)^{-1/2} − μ^{-1/2}) Uᵀ + μ^{-1/2} I``
    in closed form. When A − μI ⪰ 0 and Û ⪯ A − μI, ``P^{-1/2} A P^{-1/2} ⪰ I``: the preconditioned spectrum
    starts at 1, a node Gauss–Radau can use.
    """

    U: np.ndarray
    lam: np.ndarray
    mu: float

    def logdet(self) -> float:
        """log det P."""
        n, ell = self.U.shape
        return float(np.sum(np.log(self.lam + self.mu)) + (n - ell) * math.log(self.mu))

    def inv_sqrt(self, V: np.ndarray) -> np.ndarray:
        """P^{-1/2} V."""
        c = (self.lam + self.mu) ** -0.5 - self.mu ** -0.5
        return self.U @ (c[:, None] * (self.U.T @ V)) + V * self.mu ** -0.5


# --------------------------------------------------------------------------------------------------------------
# Spectra: decay and log-determinant bounds
# --------------------------------------------------------------------------------------------------------------

def spectral_decay(lam: np.ndarray) -> dict:
    """Which law the leading eigenvalues follow: exponential (log λᵢ linear in i) or power law (log λᵢ linear
    in log i), fitted by least squares on the eigenvalues above 1e-12·λ₁; the better fit (R²) wins.

    Returns ``{"model": "exponential"|"power-law"|"flat"|"unknown", "rate": ..., "r2": ..., ...}``: for the
    exponential law λᵢ ∝ exp(−rate·i), for the power law λᵢ ∝ i^(−rate). A spectrum whose last kept eigenvalue is
    within 10% of the first is ``"flat"`` (no decay for a low-rank method to use).
    """
    lam = np.sort(np.asarray(lam, dtype=np.float64))[::-1]
    out: dict[str, Any] = {"model": "unknown", "rate": None, "r2": None, "ratio_last_first": None}
    if lam.size == 0 or lam[0] <= 0:
        return out
    keep = lam > 1e-12 * lam[0]
    lam = lam[keep]
    out["ratio_last_first"] = float(lam[-1] / lam[0])
    if lam.size < 4:
        return out
    if lam[-1] >= 0.9 * lam[0]:
        out.update(model="flat", rate=0.0, r2=1.0)
        return out
    i = np.arange(1, lam.size + 1, dtype=np.float64)
    y = np.log(lam)

    def fit(x):
        A = np.stack([np.ones_like(x), x], axis=1)
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        res = y - A @ coef
        ss = float(np.sum((y - y.mean()) ** 2))
        return float(-coef[1]), (1.0 - float(res @ res) / ss) if ss > 0 else 1.0

    r_exp, r2_exp = fit(i)
    r_pow, r2_pow = fit(np.log(i))
    if r2_exp >= r2_pow:
        out.update(model="exponential", rate=r_exp, r2=r2_exp, r2_other=r2_pow)
    else:
        out.update(model="power-law", rate=r_pow, r2=r2_pow, r2_other=r2_exp)
    return out


def nystrom_logdet_bounds(lam: np.ndarray, shift: float, residual_trace: float, n: int) -> tuple[float, float, float]:
    """Guaranteed bounds on ``log det(A + sI)`` from a Nyström ``Â = U diag(λ) Uᵀ ⪯ A`` with ℓ = len(λ) columns.

    ``lower = Σ log(λᵢ + s) + (n − ℓ) log s`` = log det(Â + sI) (monotonicity of log det in the Loewner order).
    With ``E = A − Â ⪰ 0`` of rank ≤ n − ℓ (EΩ = 0) and ``t = tr E = residual_trace``:
    ``log det(A + sI) − lower = Σ log(1 + εⱼ)`` over the eigenvalues of (Â + sI)^{-1/2}E(Â + sI)^{-1/2}, whose
    sum is at most t/s, so by concavity of log it is at most ``(n − ℓ)·log(1 + t / ((n − ℓ)s))`` ≤ t/s.

    Returns (lower, upper by concavity, upper = lower + t/s as in the trace bound).
    """
    lam = np.asarray(lam, dtype=np.float64)
    ell = lam.size
    t = max(float(residual_trace), 0.0)
    lower = float(np.sum(np.log(lam + shift)) + (n - ell) * math.log(shift))
    rest = n - ell
    upper_concave = lower + (rest * math.log1p(t / (rest * shift)) if rest > 0 else 0.0)
    return lower, upper_concave, lower + t / shift
