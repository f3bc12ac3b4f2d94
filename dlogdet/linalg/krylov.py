"""Krylov and randomized kernels: Lanczos, Gauss quadrature of log, range finders, Nyström. Pure NumPy, no dask.

Everything here sees the matrix only through ``matmat(V) -> A·V`` for a block V of shape (n, k), so the same code
runs on an in-memory array, on a Dask graph over tiles (:mod:`dlogdet.matvec`) or on a matrix-free product.

Maths in one place:

* **Lanczos** (one independent recurrence per column of the start block, advanced together so that one block
  product serves every column): ``A q_j = β_{j−1} q_{j−1} + α_j q_j + β_j q_{j+1}``; after m steps the Jacobi
  matrix ``T_m = tridiag(β, α, β)`` gives ``zᵀ f(A) z ≈ ‖z‖² e₁ᵀ f(T_m) e₁`` (the m-node **Gauss** rule of the
  spectral measure of A seen from z).
* **Quadrature bracket for f = log.** The even derivatives of log are negative and the odd ones positive, so
  the Gauss rule overestimates, ``zᵀ log(A) z ≤ Gauss_m``, and the **Gauss–Radau** rule with a prescribed node
  ``a ≤ λ_min(A)`` (the (m+1)×(m+1) Jacobi matrix extended by ``α̃ = a + β_m² / e_mᵀ(T_m − aI)⁻¹e_m``)
  underestimates: ``Radau_m(a) ≤ zᵀ log(A) z``. The bracket is exact arithmetic's guarantee (Golub & Meurant,
  *Matrices, Moments and Quadrature*, 2010, ch. 6), and its width is the quadrature bias, per probe.
* **Randomized range finder** (Halko, Martinsson & Tropp 2011): ``Q = orth(Aᵖ A G)`` with ``p`` power
  iterations, re-orthonormalized after every product.
* **Stable shifted single-pass Nyström** (Tropp, Yurtsever, Udell & Cevher 2017): with Ω orthonormal and
  ``Y = AΩ``: ``ν = eps·√n·‖Y‖_F``, ``Y_ν = Y + νΩ``, ``C = chol(ΩᵀY_ν)``, ``B = Y_ν C⁻¹``, ``B = UΣVᵀ``,
  ``Â = U max(Σ² − ν, 0) Uᵀ``. ``0 ⪯ Â ⪯ A`` (up to ν), which makes ``log det(Â + sI)`` a lower bound of
  ``log det(A + sI)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


# --------------------------------------------------------------------------------------------------------------
# Quadrature
# --------------------------------------------------------------------------------------------------------------

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
    radau = np.full(k, np.nan) if lower is not None else None
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
        if lower is not None:
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


# --------------------------------------------------------------------------------------------------------------
# Deflation: a control variate from the probes' own Krylov spaces
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KrylovBasis:
    """The stored Lanczos vectors of some columns of a run, with their Gram matrix and what A does to them.

    ``X = [Q_1, q⁺_1, Q_2, q⁺_2, …]`` (each column's basis Q_c of its ``size`` vectors, then its next vector q⁺_c)
    and ``T`` with ``A·X[:, zrows] = X·T`` (``A Q_c = Q_c T_c + β_c q⁺_c e_mᵀ``): products with A are known
    without another matvec. X is a copy of the run's stored basis (n × K doubles).
    """

    X: np.ndarray
    T: np.ndarray
    zrows: np.ndarray       # indices of the Q parts among X's columns
    owner: np.ndarray       # the probe column each of X's columns belongs to

    @classmethod
    def of(cls, lz: "Lanczos", steps: int | None = None) -> "KrylovBasis":
        """The first ``steps`` Lanczos vectors of every column (all of them by default)."""
        if lz.reorth == "none":
            raise ValueError("reorth='none' keeps no basis to deflate with")
        parts, owner, zrows = [], [], []
        pos = 0
        blocks = []
        for c in range(lz.k):
            m = int(lz.size[c]) if steps is None else min(int(lz.size[c]), int(steps))
            if m == 0:
                continue
            parts.append(lz._basis[c, : m + 1])
            owner += [c] * (m + 1)
            zrows.extend(range(pos, pos + m))
            blocks.append((pos, m, c))
            pos += m + 1
        X = np.ascontiguousarray(np.concatenate(parts, axis=0).T)        # n × K
        T = np.zeros((pos, len(zrows)))
        col = 0
        for p0, m, c in blocks:
            a = lz.alpha[c, :m]
            b = lz.beta[c, :m]
            Tc = np.diag(a)
            if m > 1:
                Tc += np.diag(b[: m - 1], 1) + np.diag(b[: m - 1], -1)
            T[p0:p0 + m, col:col + m] = Tc
            T[p0 + m, col + m - 1] = b[m - 1]
            col += m
        return cls(X, T, np.asarray(zrows), np.asarray(owner))


@dataclass(frozen=True)
class RitzControl:
    """The control variate ``G = Σᵢ gᵢ yᵢyᵢᵀ`` with Ritz pairs (θᵢ, yᵢ) and ``gᵢ = log θᵢ − c``.

    ``z ↦ zᵀGz`` is known exactly for any z and so is ``tr G = Σ gᵢ‖yᵢ‖²``; with probes z independent of G,
    ``zᵀ log(A) z − zᵀGz + tr G`` is an unbiased sample of ``tr log A`` whose variance lacks the deflated
    directions. Both are computed from the same explicit Y, so rounding in θ can cost variance, never bias.
    """

    Y: np.ndarray           # n × r Ritz vectors
    g: np.ndarray
    trace: float
    theta: np.ndarray
    residual: np.ndarray

    @property
    def rank(self) -> int:
        return int(self.g.size)

    def quad(self, Z: np.ndarray) -> np.ndarray:
        """zᵀGz for each column z of Z."""
        p = self.Y.T @ Z
        return np.einsum("ij,i,ij->j", p, self.g, p)


def ritz_control(basis: KrylovBasis, probe_cols, n: int, estimate: float, *, rank_rtol: float = 1e-8,
                 max_residual: float = 1.0) -> RitzControl | None:
    """Rayleigh–Ritz on the union of the Krylov spaces of start vectors ``probe_cols`` and the control built on it.

    The union is spanned by their Lanczos vectors; its orthonormal basis W comes from their SVD (directions below
    ``rank_rtol``·the largest singular value dropped: independent probes share their dominant eigenvectors), and
    ``AW`` from the Lanczos recurrences, so no product with A is needed. Ritz pairs with θ > 0 and
    ``‖Ay − θy‖ ≤ max_residual·θ`` enter G with weight ``log θ − c``, where ``c`` spreads what they leave of
    ``estimate`` (the probes' own mean of zᵀ log(A) z) evenly over the other n − r directions, so that G removes
    each deflated direction's deviation from a typical log-eigenvalue. Returns None when nothing qualifies.
    """
    probe_cols = np.asarray(probe_cols)
    sub = np.flatnonzero(np.isin(basis.owner, probe_cols))        # X columns of these probes (Q and q⁺)
    zmask = np.isin(basis.zrows, sub)
    zcols = basis.zrows[zmask]                                     # Q columns among them
    if zcols.size == 0:
        return None
    # the SVD of the vectors themselves, not the eigendecomposition of their Gram matrix: that would square the
    # condition number and drop every direction below √eps (measured on an MLP NTK: 268 Ritz pairs instead of 300,
    # and an RMS error of 0.199% instead of 0.167%);
    # below 1e-8 the recovered A·W is rounding noise (measured: 1e-10 gave Ritz values of garbage)
    try:
        W, sv, Vt = np.linalg.svd(basis.X[:, zcols], full_matrices=False)
    except np.linalg.LinAlgError:           # gesdd gives up on some highly degenerate sets; gesvd is slower, surer
        from scipy.linalg import LinAlgError, svd

        try:
            W, sv, Vt = svd(basis.X[:, zcols], full_matrices=False, lapack_driver="gesvd", check_finite=False)
        except (LinAlgError, ValueError):
            return None
    keep = sv > rank_rtol * sv[0]
    W = W[:, keep]
    AW = basis.X[:, sub] @ (basis.T[np.ix_(sub, np.flatnonzero(zmask))] @ (Vt[keep].T / sv[keep]))
    H = W.T @ AW
    theta, s = np.linalg.eigh(0.5 * (H + H.T))
    Y = W @ s
    res = np.linalg.norm(AW @ s - Y * theta, axis=0)
    sel = (theta > 0) & (res <= max_residual * np.abs(theta))
    if not sel.any():
        return None
    Y, theta, res = Y[:, sel], theta[sel], res[sel]
    lt = np.log(theta)
    r = theta.size
    c = (estimate - float(lt.sum())) / (n - r) if n - r >= 1 else 0.0
    g = lt - c
    return RitzControl(Y, g, float(np.sum(g * np.einsum("ij,ij->j", Y, Y))), theta, res)


def deflated_samples(basis: KrylovBasis, Z: np.ndarray, samples: np.ndarray, n: int, folds: int = 4
                     ) -> tuple[np.ndarray, list[int]]:
    """Cross-fitted control-variate samples of ``tr log A`` from one Lanczos run over probes Z (k columns).

    The probes are split into ``folds`` groups; each group's samples are corrected with the control built from
    the other groups' Krylov spaces (independent of the group, so the correction is unbiased). Returns the
    corrected samples and the rank of each group's control. Costs ``folds`` SVDs of n × (1 − 1/folds)·K for the
    K stored Lanczos vectors, and no product with A.
    """
    k = Z.shape[1]
    out = samples.astype(np.float64).copy()
    ranks = []
    for grp in np.array_split(np.arange(k), folds):
        other = np.setdiff1d(np.arange(k), grp)
        ctl = ritz_control(basis, other, n, float(np.mean(samples[other])))
        if ctl is None:
            ranks.append(0)
            continue
        out[grp] = samples[grp] - ctl.quad(Z[:, grp]) + ctl.trace
        ranks.append(ctl.rank)
    return out, ranks


# --------------------------------------------------------------------------------------------------------------
# Randomized range finder and Nyström
# --------------------------------------------------------------------------------------------------------------

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
    out = {"model": "unknown", "rate": None, "r2": None, "ratio_last_first": None}
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
