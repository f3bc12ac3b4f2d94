"""Block Lanczos: one recurrence per column of the start block, advanced together, and random probes (the maths:
:mod:`dlogdet.linalg.krylov`)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

Matmat = Callable[[np.ndarray], np.ndarray]

REORTH = ("full", "partial", "none")
EPS = float(np.finfo(np.float64).eps)


def breakdown_tol(n: int) -> float:
    """Relative threshold of :class:`Lanczos`'s breakdown test: β_j ≤ max(n·eps, eps^(3/4))·‖T_j‖.

    β of a step whose Krylov space is invariant is pure rounding, and its size depends on the BLAS kernel that
    formed A·q (60–180 eps·‖T‖ measured at n = 60–3000 on matrices with four distinct eigenvalues): n·eps covers
    the recurrence's worst-case growth with n, and the floor eps^(3/4) (≈ 8,000 eps) keeps small problems clear
    of the kernel-dependent constant. A coupling that small moves the Gauss rule only at second order (β²).
    """
    return max(n * EPS, EPS ** 0.75)


# --------------------------------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------------------------------

def probes(n: int, k: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """k probe vectors of length n with E[z zᵀ] = I: ``"rademacher"`` (±1; the smallest variance of zᵀAz for a
    fixed A among such probes, 2·Σ_{i≠j} A_ij²) or ``"gaussian"`` (variance 2‖A‖_F²)."""
    if kind == "rademacher":
        return rng.integers(0, 2, size=(n, k)).astype(np.float64) * 2.0 - 1.0
    if kind == "gaussian":
        return rng.standard_normal((n, k))
    raise ValueError(f"probe kind must be 'rademacher' or 'gaussian', got {kind!r}")


# --------------------------------------------------------------------------------------------------------------
# Lanczos
# --------------------------------------------------------------------------------------------------------------

class Lanczos:
    """Independent Lanczos recurrences, one per column of ``V0``, advanced one block product per :meth:`step`.

    ``A q_j = β_{j−1} q_{j−1} + α_j q_j + β_j q_{j+1}`` per column. A column whose β falls below
    ``max(n·eps, eps^(3/4))·‖T‖`` (:func:`breakdown_tol`) has found an invariant subspace: its Jacobi matrix is
    final (its quadrature exact), it stops and leaves the block, so later products are narrower.

    Parameters
    ----------
    matmat : callable
        ``V (n, k) -> A·V``, A symmetric.
    V0 : array (n, k) or (n,)
        Start vectors (probes); need not be normalized.
    reorth : {"full", "partial", "none"}
        ``"full"``: every new vector is orthogonalized twice against all earlier ones of its column (classical
        Gram–Schmidt twice: "twice is enough"); stores m·n·k numbers. ``"partial"``: Simon's ω-recurrence
        estimates the loss of orthogonality and reorthogonalizes (this step and the next) only when it exceeds
        √eps; same storage, far fewer inner products. ``"none"``: three vectors per column; ghost copies of
        converged Ritz values appear, which Gauss quadrature tolerates in practice but which the bracket does
        not account for.
    """

    def __init__(self, matmat: Matmat, V0: np.ndarray, *, reorth: str = "full"):
        if reorth not in REORTH:
            raise ValueError(f"reorth must be one of {REORTH}, got {reorth!r}")
        V0 = np.asarray(V0, dtype=np.float64)
        if V0.ndim == 1:
            V0 = V0[:, None]
        self.n, self.k = V0.shape
        self.norms = np.linalg.norm(V0, axis=0)
        if np.any(self.norms == 0) or not np.all(np.isfinite(self.norms)):
            raise ValueError("start vectors must be finite and nonzero")
        self.matmat = matmat
        self.reorth = reorth
        self.q = V0 / self.norms
        self.q_prev = np.zeros_like(self.q)
        self.alpha = np.zeros((self.k, 0))
        self.beta = np.zeros((self.k, 0))       # beta[:, j] = β_{j+1}, the coupling of q_{j+1} and q_{j+2}
        self.size = np.zeros(self.k, dtype=int)  # steps taken by each column (its Jacobi matrix's order)
        self.active = np.ones(self.k, dtype=bool)
        # basis[c, j] = q_{j+1} of column c (contiguous per column: reorthogonalization is a batched GEMV)
        self._basis = np.zeros((self.k, 16 if reorth != "none" else 0, self.n))
        if reorth != "none":
            self._basis[:, 0, :] = self.q.T
        self.matvecs = 0
        self.reorthogonalizations = 0
        self._scale = np.zeros(self.k)
        self._omega = np.ones((self.k, 1))      # partial: ω_{j,i} ≈ q_jᵀ q_i (last row)
        self._omega_prev = np.zeros((self.k, 0))
        self._force = np.zeros(self.k, dtype=bool)

    @property
    def steps(self) -> int:
        """Steps taken so far (the longest recurrence)."""
        return self.alpha.shape[1]

    def step(self) -> bool:
        """One Lanczos step of every active column (one product of A with the active block).

        Returns False when no column is left active (every Krylov space is invariant).
        """
        act = np.flatnonzero(self.active)
        if act.size == 0:
            return False
        j = self.steps
        q = self.q[:, act]
        w = np.asarray(self.matmat(q), dtype=np.float64)
        if w.shape != q.shape:
            raise ValueError(f"matmat returned shape {w.shape} for a block of shape {q.shape}")
        self.matvecs += act.size
        prev_beta = self.beta[act, j - 1] if j > 0 else np.zeros(act.size)
        w -= self.q_prev[:, act] * prev_beta
        a = np.einsum("ij,ij->j", q, w)
        w -= q * a
        if self.reorth == "full":
            w = self._orthogonalize(w, act, j, twice=True)
        elif self.reorth == "partial":
            w = self._partial(w, act, j, a, prev_beta)
        b = np.linalg.norm(w, axis=0)

        alpha = np.zeros((self.k, j + 1))
        alpha[:, :j] = self.alpha
        alpha[act, j] = a
        beta = np.zeros((self.k, j + 1))
        beta[:, :j] = self.beta
        beta[act, j] = b
        self.alpha, self.beta = alpha, beta
        self.size[act] += 1
        self._scale[act] = np.maximum(self._scale[act], np.abs(a) + b + prev_beta)

        done = b <= breakdown_tol(self.n) * np.maximum(self._scale[act], np.finfo(float).tiny)
        b_safe = np.where(done, 1.0, b)
        new_q = np.zeros_like(self.q)
        new_q[:, act] = w / b_safe
        new_q[:, act[done]] = 0.0
        self.beta[act[done], j] = 0.0
        self.active[act[done]] = False
        self.q_prev, self.q = self.q, new_q
        if self.reorth != "none":
            if self._basis.shape[1] <= j + 1:
                grown = np.zeros((self.k, 2 * self._basis.shape[1], self.n))
                grown[:, : j + 1] = self._basis[:, : j + 1]
                self._basis = grown
            self._basis[:, j + 1, :] = self.q.T
        return bool(self.active.any())

    def _orthogonalize(self, w, act, j, twice=True):
        """w (columns ``act``) minus its components along the stored basis vectors q_1..q_{j+1} of each column."""
        Q = self._basis[:, : j + 1] if act.size == self.k else self._basis[act, : j + 1]   # (a, j+1, n)
        for _ in range(2 if twice else 1):
            c = np.matmul(Q, w.T[:, :, None])                     # (a, j+1, 1)
            w = w - np.matmul(Q.transpose(0, 2, 1), c)[:, :, 0].T
        self.reorthogonalizations += act.size
        return w

    def _partial(self, w, act, j, a, prev_beta):
        """Simon's partial reorthogonalization: ω-recurrence per column, reorthogonalize when max|ω| > √eps."""
        # ω_{j+1,i} for i = 1..j+1 (0-based columns 0..j) from ω_{j,·} (self._omega, length j+1 incl. ω_{j,j}=1)
        # and ω_{j−1,·}; β_j itself is not known before w is final, so estimate with its norm now (as PROPACK).
        bj = np.linalg.norm(w, axis=0)
        bj = np.where(bj > 0, bj, 1.0)
        om, omp = self._omega[act], self._omega_prev[act]
        al = np.concatenate([self.alpha[act], a[:, None]], axis=1)          # α_1..α_{j+1}
        be = self.beta[act]                                                # β_1..β_j
        norm_t = np.abs(al).max(axis=1) + 2 * (be.max(axis=1) if j > 0 else 0.0)
        psi = EPS * math.sqrt(self.n) * norm_t
        new = np.zeros((act.size, j + 2))
        for i in range(j):  # i: 0-based index of q_{i+1}
            term = (be[:, i] * om[:, i + 1] + (al[:, i] - al[:, j]) * om[:, i]
                    + (be[:, i - 1] * om[:, i - 1] if i > 0 else 0.0)
                    - (prev_beta * omp[:, i] if i < omp.shape[1] else 0.0))
            new[:, i] = (term + np.sign(term) * psi) / bj
        new[:, j] = psi / bj
        new[:, j + 1] = 1.0
        triggered = np.abs(new[:, : j + 1]).max(axis=1) > math.sqrt(EPS)
        forced = self._force[act]
        lost = triggered | forced
        # Simon: a vector reorthogonalized because ω grew takes the next vector with it (the next ω would be
        # computed from a q_j that still carries the lost components)
        self._force[act] = triggered & ~forced
        if lost.any() and j > 0:
            sel = np.flatnonzero(lost)
            w[:, sel] = self._orthogonalize(w[:, sel], act[sel], j, twice=True)
            new[sel, : j + 1] = EPS
        omega = np.zeros((self.k, j + 2))
        omega[act] = new
        omega_prev = np.zeros((self.k, j + 1))
        omega_prev[:, : self._omega.shape[1]] = self._omega
        self._omega, self._omega_prev = omega, omega_prev
        return w

    def basis_matrix(self, column: int) -> np.ndarray:
        """Q_m of one column (n × its size): for tests of orthogonality (needs reorth != "none")."""
        if self.reorth == "none":
            raise ValueError("reorth='none' keeps no basis")
        return self._basis[column, : self.size[column]].T.copy()
