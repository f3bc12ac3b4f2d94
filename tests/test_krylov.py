"""Unit tests of dlogdet.krylov (L2, pure NumPy): Lanczos, the Gauss / Gauss–Radau bracket, range finder, Nyström.

References are matrices with prescribed spectra, A = Q diag(λ) Qᵀ, so zᵀ log(A) z and log det are known exactly.
Every test runs in milliseconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from dlogdet.linalg import krylov as K

from .conftest import random_orthogonal


def prescribed(n, lam, seed=0):
    q = random_orthogonal(n, seed)
    a = (q * lam) @ q.T
    return (a + a.T) / 2, q


def run_lanczos(a, Z, steps, reorth="full"):
    lz = K.Lanczos(lambda V: a @ V, Z, reorth=reorth)
    for _ in range(steps):
        if not lz.step():
            break
    return lz


def test_probes_have_identity_second_moment():
    rng = np.random.default_rng(0)
    for kind in ("rademacher", "gaussian"):
        Z = K.probes(200, 4000, kind, rng)
        assert Z.shape == (200, 4000)
        second = Z @ Z.T / 4000
        assert np.abs(np.diag(second) - 1).max() < 0.1 and np.abs(second - np.diag(np.diag(second))).max() < 0.1
    assert set(np.unique(K.probes(50, 3, "rademacher", rng))) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="rademacher"):
        K.probes(5, 1, "uniform", rng)


def test_lanczos_tridiagonal_reproduces_ritz_values_and_orthogonality():
    n = 120
    lam = np.linspace(1.0, 10.0, n)
    a, _ = prescribed(n, lam)
    z = np.random.default_rng(1).standard_normal((n, 2))
    lz = run_lanczos(a, z, n)
    # a full run of Lanczos on a matrix with distinct eigenvalues and a generic start recovers the spectrum
    T = np.diag(lz.alpha[0]) + np.diag(lz.beta[0, : lz.size[0] - 1], 1) + np.diag(lz.beta[0, : lz.size[0] - 1], -1)
    assert lz.size[0] == n
    np.testing.assert_allclose(np.linalg.eigvalsh(T), lam, atol=1e-10)
    Q = lz.basis_matrix(0)
    assert np.abs(Q.T @ Q - np.eye(n)).max() < 1e-12
    # A Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ (Lanczos relation), at m = 30
    lz = run_lanczos(a, z, 30)
    Q = lz.basis_matrix(1)
    T = np.diag(lz.alpha[1]) + np.diag(lz.beta[1, :29], 1) + np.diag(lz.beta[1, :29], -1)
    R = a @ Q - Q @ T
    np.testing.assert_allclose(R[:, :-1], 0, atol=1e-11)
    assert lz.matvecs == 60


def test_exact_quadrature_on_few_distinct_eigenvalues_and_breakdown():
    # 4 distinct eigenvalues: z lies in the 4-dimensional invariant subspace spanned by its spectral components
    # P_i z. Lanczos must find that subspace, detect the breakdown there (however rounding of the BLAS kernel sets
    # the vanishing β) and stop, and the Gauss rule on what it found integrates log exactly.
    n = 60
    values = np.array([0.5, 1.0, 3.0, 7.0])
    lam = np.repeat(values, 15)
    a, q = prescribed(n, lam, seed=3)
    z = K.probes(n, 3, "rademacher", np.random.default_rng(2))
    lz = run_lanczos(a, z, 20)
    assert not lz.active.any(), "every column must detect the invariant subspace and stop"
    assert lz.matvecs == lz.size.sum()
    for c in range(3):
        Q = lz.basis_matrix(c)
        for v in values:                        # each spectral component of z lies in the column's Krylov space
            pz = q[:, lam == v] @ (q[:, lam == v].T @ z[:, c])
            assert np.linalg.norm(pz - Q @ (Q.T @ pz)) <= 1e-10 * np.linalg.norm(z[:, c])
        assert lz.size[c] <= n // 2            # and stopped there, not after exhausting the space
    exact = np.einsum("ik,ij,jk->k", z, (q * np.log(lam)) @ q.T, z)
    quad = K.quadrature(lz, np.log, lower=0.4)
    # the Gauss rule is exact for the discrete measure of 4 atoms; 1e-11 is rounding of a 60-dimensional problem
    np.testing.assert_allclose(quad.gauss, exact, rtol=1e-11)
    np.testing.assert_allclose(quad.radau, exact, rtol=1e-11)


def test_breakdown_threshold_sits_above_rounding_and_below_real_couplings():
    # β of an invariant step is rounding: in relative terms at most ~200 eps at these sizes (measured 60–180 eps
    # across BLAS kernels); a real coupling of a Jacobi matrix is not below 1e-9 relative here
    for n in (10, 60, 3000, 10**6):
        tol = K.breakdown_tol(n)
        assert tol >= 1000 * K.EPS and tol >= n * K.EPS
        assert tol <= max(n * K.EPS, 1e-11)
    # a Jacobi matrix is its own Lanczos recurrence from e_1: a real coupling of 1e-9·‖T‖ must not be taken for a
    # breakdown (the column goes on to the full order and the Gauss rule equals e_1ᵀ log(T) e_1)
    m = 8
    beta = np.ones(m - 1)
    beta[2] = 1e-9
    t = np.diag(np.linspace(2.0, 6.0, m)) + np.diag(beta, 1) + np.diag(beta, -1)
    lz = run_lanczos(t, np.eye(m)[:, 0], m)
    assert lz.size[0] == m
    np.testing.assert_allclose(lz.beta[0, : m - 1], beta, rtol=1e-6)
    w, v = np.linalg.eigh(t)
    np.testing.assert_allclose(K.quadrature(lz, np.log, lower=1.0).gauss, (v[0] ** 2 * np.log(w)).sum(), rtol=1e-12)
@pytest.mark.parametrize("spectrum", ["flat", "power", "exponential", "tiny-cluster"])
def test_gauss_radau_bracket_for_log(spectrum):
    n = 300
    i = np.arange(1, n + 1)
    lam = {"flat": np.linspace(0.8, 1.2, n), "power": 10.0 * i ** -1.0 + 1e-3,
           "exponential": np.exp(-0.05 * i) + 1e-4,
           "tiny-cluster": np.r_[np.linspace(1, 50, n - 40), np.full(40, 1e-6) * np.linspace(1, 2, 40)]}[spectrum]
    a, q = prescribed(n, lam, seed=4)
    Z = K.probes(n, 6, "rademacher", np.random.default_rng(5))
    exact = np.einsum("ik,ij,jk->k", Z, (q * np.log(lam)) @ q.T, Z)
    lower = lam.min() * 0.999
    widths = []
    for steps in (3, 8, 20):
        lz = run_lanczos(a, Z, steps)
        quad = K.quadrature(lz, np.log, lower=lower)
        slack = 1e-9 * np.abs(exact).max()
        assert np.all(quad.radau <= exact + slack), "Gauss–Radau(a) must not exceed zᵀ log(A) z"
        assert np.all(quad.gauss >= exact - slack), "Gauss must not fall below zᵀ log(A) z"
        assert np.all(quad.ritz_min >= lam.min() * (1 - 1e-9))
        widths.append(float(np.mean(quad.gauss - quad.radau)))
    assert widths[-1] <= widths[0]


def test_radau_node_is_an_eigenvalue_of_the_extended_matrix():
    rng = np.random.default_rng(6)
    alpha = rng.uniform(2, 3, (3, 5))
    off = rng.uniform(0.1, 0.5, (3, 4))
    last = rng.uniform(0.1, 0.5, 3)
    at = K.radau_alpha(alpha, off, last, 1.0)
    for c in range(3):
        T = np.diag(np.r_[alpha[c], at[c]]) + np.diag(np.r_[off[c], last[c]], 1) + np.diag(np.r_[off[c], last[c]], -1)
        assert np.min(np.abs(np.linalg.eigvalsh(T) - 1.0)) < 1e-12
    # a node above the smallest Ritz value is refused (NaN), not silently used
    assert np.isnan(K.radau_alpha(alpha, off, last, 10.0)).all()


def test_partial_reorthogonalization_keeps_orthogonality_with_fewer_inner_products():
    n = 400
    lam = np.exp(-0.05 * np.arange(n)) + 1e-3   # Ritz values converge one after another: ghosts without reorth
    a, q = prescribed(n, lam, seed=7)
    Z = K.probes(n, 2, "rademacher", np.random.default_rng(8))
    full = run_lanczos(a, Z, 120, "full")
    part = run_lanczos(a, Z, 120, "partial")
    none = run_lanczos(a, Z, 120, "none")
    Qp = part.basis_matrix(0)
    assert np.abs(Qp.T @ Qp - np.eye(Qp.shape[1])).max() < 1e-6
    assert part.reorthogonalizations < full.reorthogonalizations / 2
    exact = np.einsum("ik,ij,jk->k", Z, (q * np.log(lam)) @ q.T, Z)
    gf = K.quadrature(full).gauss
    gp = K.quadrature(part).gauss
    np.testing.assert_allclose(gp, gf, rtol=1e-8)
    np.testing.assert_allclose(gf, exact, rtol=1e-6)
    # without reorthogonalization the rule drifts by orders of magnitude more (still small here)
    gn = K.quadrature(none).gauss
    assert none.reorthogonalizations == 0
    assert np.abs(gn - exact).max() > 100 * np.abs(gf - exact).max()
    with pytest.raises(ValueError, match="no basis"):
        none.basis_matrix(0)


def test_range_finder_captures_low_rank_range():
    n, r = 200, 10
    lam = np.r_[np.geomspace(100, 1, r), np.zeros(n - r)]
    a, q = prescribed(n, lam, seed=9)
    Q = K.range_finder(lambda V: a @ V, n, r + 5, power=1, rng=0)
    assert Q.shape == (n, r + 5) and np.abs(Q.T @ Q - np.eye(r + 5)).max() < 1e-12
    np.testing.assert_allclose(Q @ (Q.T @ a), a, atol=1e-9 * 100)


def test_nystrom_exact_on_low_rank_and_below_a_in_general():
    n = 150
    lam = np.r_[np.geomspace(50, 0.5, 12), np.zeros(n - 12)]
    a, _ = prescribed(n, lam, seed=10)
    ny = K.randomized_nystrom(lambda V: a @ V, n, 20, power=0, rng=1)
    np.testing.assert_allclose(ny.lam[:12], lam[:12], rtol=1e-8)
    assert ny.matvecs == 20 and ny.passes == 1
    # a full-rank spectrum: Â ⪯ A (A − Â has no eigenvalue below −ν), and the bounds bracket log det(A + sI)
    lam = 1.0 / np.arange(1, n + 1)
    a, _ = prescribed(n, lam, seed=11)
    ny = K.randomized_nystrom(lambda V: a @ V, n, 30, power=1, rng=2)
    approx = (ny.U * ny.lam) @ ny.U.T
    assert np.linalg.eigvalsh(a - approx).min() > -1e-10
    s = 1e-2
    exact = float(np.sum(np.log(lam + s)))
    lo, up, up_trace = K.nystrom_logdet_bounds(ny.lam, s, np.trace(a) - ny.lam.sum(), n)
    assert lo <= exact <= up <= up_trace
    assert ny.matvecs == 60 and ny.passes == 2


def test_nystrom_preconditioner_closed_forms():
    n = 80
    rng = np.random.default_rng(12)
    U = np.linalg.qr(rng.standard_normal((n, 6)))[0]
    lam = np.geomspace(10, 0.1, 6)
    P = K.NystromPreconditioner(U, lam, 0.05)
    dense = (U * lam) @ U.T + 0.05 * np.eye(n)
    assert abs(P.logdet() - np.linalg.slogdet(dense)[1]) < 1e-10
    V = rng.standard_normal((n, 3))
    W = P.inv_sqrt(P.inv_sqrt(V))
    np.testing.assert_allclose(dense @ W, V, atol=1e-10)


def test_spectral_decay_detects_the_law():
    i = np.arange(1, 101)
    e = K.spectral_decay(np.exp(-0.1 * i))
    assert e["model"] == "exponential" and abs(e["rate"] - 0.1) < 1e-8
    p = K.spectral_decay(i ** -2.0)
    assert p["model"] == "power-law" and abs(p["rate"] - 2.0) < 1e-8
    assert K.spectral_decay(np.full(50, 3.0))["model"] == "flat"


# --------------------------------------------------------------------------------------------------- deflation


def _lanczos_samples(a, k, steps, seed):
    Z = K.probes(a.shape[0], k, "rademacher", np.random.default_rng(seed))
    lz = K.Lanczos(lambda V: a @ V, Z, reorth="full")
    for _ in range(steps):
        lz.step()
    return lz, Z, K.quadrature(lz, np.log).gauss


def test_ritz_pairs_of_krylov_union_are_eigenpairs_and_whole_space_deflation_is_exact():
    n = 60
    lam = np.geomspace(1e-2, 10.0, n)
    q = random_orthogonal(n, 3)
    a = (q * lam) @ q.T
    a = (a + a.T) / 2
    exact = float(np.sum(np.log(lam)))
    # 60 steps: each probe's Krylov space is R^60, its Gauss rule exact and its Ritz pairs the eigenpairs, so the
    # control is log(A) itself and every corrected sample is tr log A exactly (cross-fitted: each group's control
    # from the other 6 probes' vectors), while the plain samples spread
    lz, Z, x = _lanczos_samples(a, 8, 60, seed=0)
    basis = K.KrylovBasis.of(lz)
    ctl = K.ritz_control(basis, np.arange(8), n, float(x.mean()))
    assert ctl.rank == n
    assert np.allclose(np.sort(ctl.theta), lam, rtol=1e-9)
    assert np.max(ctl.residual / ctl.theta) < 1e-6
    y, ranks = K.deflated_samples(basis, Z, x, n, folds=4)
    assert ranks == [n] * 4
    assert np.allclose(y, exact, rtol=1e-9, atol=1e-9)
    assert np.std(x) > 1.0                         # the plain samples do vary


def test_deflated_samples_are_unbiased_with_smaller_spread():
    # a power law in a random basis, Krylov spaces far from spanning R^n (16 × 15 vectors of 400), 15 steps enough
    # for the Gauss rule on a condition number of 51: over independent runs the mean of the corrected estimate is
    # within 4 standard errors of the exact value (the control is built without the probes it corrects, so there
    # is no bias to find), and it spreads less than the plain estimate
    n = 400
    lam = 50.0 * np.arange(1, n + 1, dtype=float) ** -1.5 + 1.0
    q = random_orthogonal(n, 4)
    a = (q * lam) @ q.T
    a = (a + a.T) / 2
    exact = float(np.sum(np.log(lam)))
    plain, defl = [], []
    for seed in range(24):
        lz, Z, x = _lanczos_samples(a, 16, 15, seed)
        y, ranks = K.deflated_samples(K.KrylovBasis.of(lz), Z, x, n)
        assert min(ranks) > 10
        plain.append(x.mean())
        defl.append(y.mean())
    plain, defl = np.array(plain), np.array(defl)
    se = defl.std(ddof=1) / np.sqrt(defl.size)
    assert abs(defl.mean() - exact) <= 4 * se
    assert defl.std() < 0.3 * plain.std()      # measured: 17x smaller
