"""L2 block kernels (dlogdet.kernels) on single tiles: no dask, milliseconds each.

References: ``numpy.linalg.slogdet`` / ``cholesky`` / ``eigvalsh`` / ``solve`` (LAPACK), and dense block
formulas (Schur complements). Tolerances follow conftest.logdet_tol: for a b×b tile of condition number κ,
|Δ log|det|| ≲ 10·b^1.5·κ·eps; dense formulas are compared with the same reasoning (backward-stable solves
give relative errors ~ b·κ·eps).
"""

from __future__ import annotations

import numpy as np
import pytest

from dlogdet.linalg import kernels as K
from dlogdet.core.errors import NonFiniteError, NotPSDError, NotSymmetricError, SingularMatrixError

from .conftest import EPS32, EPS64, cond_sym, general_matrix, logdet_tol, spectrum_matrix

B = 24  # tile size of these tests


def spd_tile(b=B, seed=0, lo=0.5, hi=4.0):
    lam = np.linspace(lo, hi, b)
    return spectrum_matrix(b, lam, seed)


def sym_tile(b=B, seed=1):
    lam = np.linspace(0.5, 3.0, b) * np.where(np.arange(b) % 3 == 0, -1.0, 1.0)
    return spectrum_matrix(b, lam, seed)


# --------------------------------------------------------------------------------------------------------------
# POTRF
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,eps", [(np.float64, EPS64), (np.float32, EPS32)])
def test_potrf_pivots_match_slogdet(dtype, eps):
    a, ld, _, _ = spd_tile()
    kappa = 8.0  # λ in [0.5, 4]
    f = K.potrf(a.astype(dtype), row0=0)
    assert f.pivots.log_abs.dtype == np.float64  # log-pivots are float64 whatever the tile dtype
    assert f.pivots.log_abs.shape == (B,)
    assert np.all(f.pivots.sign == 1)
    # float32: the tile itself is rounded to float32 (relative eps32 per entry), same first-order bound
    assert abs(f.pivots.log_abs.sum() - ld) <= logdet_tol(B, kappa, eps)
    s, ref = np.linalg.slogdet(a.astype(dtype).astype(np.float64))
    assert s == 1.0 and abs(f.pivots.log_abs.sum() - ref) <= logdet_tol(B, kappa, eps)
    # per row: log|pivot_r| = 2·log L_rr of LAPACK's Cholesky (numpy's own LAPACK call)
    L = np.linalg.cholesky(a.astype(dtype).astype(np.float64))
    np.testing.assert_allclose(f.pivots.log_abs, 2 * np.log(np.diag(L)), rtol=0, atol=10 * B * eps)
    # the factor reproduces the tile (backward stability: ‖L Lᵀ − A‖ ≤ c·b·eps·‖A‖)
    Lf = np.asarray(f.L, dtype=np.float64)
    np.testing.assert_allclose(np.tril(Lf) @ np.tril(Lf).T, a, rtol=0, atol=10 * B * eps * 4.0)


@pytest.mark.parametrize("r", [0, 3, B - 1])
@pytest.mark.parametrize("row0", [0, 128, 1000])
def test_potrf_not_psd_reports_global_row(r, row0):
    a = np.eye(B)
    a[r, r] = -1.0  # the leading (r+1)×(r+1) minor is the first that is not positive definite
    with pytest.raises(NotPSDError, match=f"global row {row0 + r}") as ei:
        K.potrf(a, row0=row0)
    assert ei.value.row == row0 + r
    assert isinstance(ei.value, ArithmeticError) and isinstance(ei.value, ValueError)


def test_potrf_not_psd_in_schur_complement():
    # leading 1×1 minor is 1 > 0; leading 2×2 minor [[1, 2], [2, 1]] has det -3: row 1 fails, not row 0
    a = np.eye(5)
    a[0, 1] = a[1, 0] = 2.0
    with pytest.raises(NotPSDError) as ei:
        K.potrf(a, row0=40)
    assert ei.value.row == 41
    # a positive semidefinite but singular tile fails too (the zero pivot is at row 2)
    z = np.diag([1.0, 2.0, 0.0, 3.0])
    with pytest.raises(NotPSDError) as ei:
        K.potrf(z, row0=0)
    assert ei.value.row == 2


# --------------------------------------------------------------------------------------------------------------
# SYTRF (Bunch–Kaufman LDLᵀ)
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sytrf_pivots_sign_inertia(seed):
    a, ld, sign, inertia = sym_tile(seed=seed)
    kappa = cond_sym(a)
    f = K.sytrf(a, row0=0, last=False)
    p = f.pivots
    assert p.log_abs.dtype == np.float64 and p.sign.dtype == np.int8
    assert abs(p.log_abs.sum() - ld) <= logdet_tol(B, kappa)
    s, ref = np.linalg.slogdet(a)
    assert float(np.prod(p.sign)) == sign == s
    assert abs(p.log_abs.sum() - ref) <= logdet_tol(B, kappa)
    # Sylvester: pivot signs count the eigenvalue signs
    assert (int(np.sum(p.sign > 0)), int(np.sum(p.sign < 0)), int(np.sum(p.sign == 0))) == inertia


def test_sytrf_two_by_two_block():
    # [[0, 1], [1, 0]] has no usable 1×1 pivot: Bunch–Kaufman must take a 2×2 block (det -1, eigenvalues ±1)
    a = np.array([[0.0, 1.0], [1.0, 0.0]])
    f = K.sytrf(a, row0=0, last=True)
    assert f.dinv_off is not None and np.count_nonzero(np.asarray(f.dinv_off)) == 1
    np.testing.assert_allclose(f.pivots.log_abs.sum(), 0.0, atol=1e-15)  # log|det| = log 1
    assert sorted(f.pivots.sign.tolist()) == [-1, 1]  # inertia 1+ / 1-
    assert float(np.prod(f.pivots.sign)) == -1.0  # det = -1

    # embedded in a larger tile with 1×1 pivots around it
    b = np.zeros((4, 4))
    b[0, 0] = 3.0
    b[1, 2] = b[2, 1] = 2.0   # the 2×2 block [[0, 2], [2, 0]]: det -4
    b[3, 3] = -5.0
    f = K.sytrf(b, row0=0)
    s, ref = np.linalg.slogdet(b)
    assert abs(f.pivots.log_abs.sum() - ref) <= 1e-14 * 10
    assert float(np.prod(f.pivots.sign)) == s == 1.0  # 3 · (-4) · (-5) > 0
    assert (int(np.sum(f.pivots.sign > 0)), int(np.sum(f.pivots.sign < 0))) == (2, 2)


@pytest.mark.parametrize("dm,do", [
    ([0.0, 0.0], [1.0]),                        # det -1: one +, one -
    ([1.0, 4.0], [1.0]),                        # det 3 > 0, trace > 0: + +
    ([-1.0, -4.0], [1.5]),                      # det 1.75 > 0, trace < 0: - -
    ([2.0, 0.0, 0.0, -3.0], [0.0, 1.0, 0.0]),   # 1×1, 2×2, 1×1
    ([0.5, 0.2, 7.0, -1.0, 2.0], [0.9, 0.0, 0.0, 3.0]),  # 2×2 (det -0.71), 1×1, 2×2 (det -11)
])
def test_ldl_pivots_formulas(dm, do):
    dm, do = np.array(dm), np.array(do)
    D = np.diag(dm) + np.diag(do, -1) + np.diag(do, 1)
    logp, sign, inv_m, inv_o, has2 = K._ldl_pivots(dm, do)
    assert has2 == bool(np.any(do != 0))
    s, ref = np.linalg.slogdet(D)
    assert abs(logp.sum() - ref) <= 10 * EPS64 * len(dm)
    assert float(np.prod(sign)) == s
    w = np.linalg.eigvalsh(D)
    assert (int(np.sum(sign > 0)), int(np.sum(sign < 0))) == (int(np.sum(w > 0)), int(np.sum(w < 0)))
    Dinv = np.diag(inv_m) + np.diag(inv_o, -1) + np.diag(inv_o, 1)
    np.testing.assert_allclose(Dinv, np.linalg.inv(D), rtol=1e-14, atol=1e-14)


def test_ldl_pivots_zero_block_has_sign_zero():
    logp, sign, *_ = K._ldl_pivots(np.array([1.0, 0.0, 2.0]), np.array([0.0, 0.0]))
    assert sign.tolist() == [1, 0, 1] and logp[1] == -np.inf


# --------------------------------------------------------------------------------------------------------------
# GETRF (LU with partial pivoting)
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("neg", [0, 1, 2, 5])
def test_getrf_pivots_match_slogdet(neg):
    s = np.linspace(0.5, 2.0, B)
    s[:neg] *= -1
    a, ld, sign, kappa = general_matrix(B, s, seed=neg)
    f = K.getrf(a, row0=0)
    assert f.pivots.log_abs.dtype == np.float64
    assert abs(f.pivots.log_abs.sum() - ld) <= logdet_tol(B, kappa)
    assert float(np.prod(f.pivots.sign)) == sign == np.linalg.slogdet(a)[0]
    # P A = L U with the returned row permutation
    L = np.tril(f.lu, -1) + np.eye(B)
    U = np.triu(f.lu)
    np.testing.assert_allclose(L @ U, a[f.perm], rtol=0, atol=10 * B * EPS64 * np.abs(a).max())


def test_getrf_permutation_sign():
    # a pure odd permutation: det = -1, all |U_rr| = 1; the parity must come through the sign
    p = np.eye(4)[[1, 0, 2, 3]]
    f = K.getrf(p)
    assert np.allclose(f.pivots.log_abs, 0.0) and float(np.prod(f.pivots.sign)) == -1.0
    p3 = np.eye(5)[[1, 2, 0, 3, 4]]  # a 3-cycle is even: det +1
    f = K.getrf(p3)
    assert float(np.prod(f.pivots.sign)) == 1.0


# --------------------------------------------------------------------------------------------------------------
# singular diagonal tiles
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # scipy's own note on the zero pivot
@pytest.mark.parametrize("kernel,name", [(K.sytrf, "LDL"), (K.getrf, "LU")])
def test_singular_tile_before_last_raises(kernel, name):
    a = np.diag([1.0, 0.0, 2.0, 3.0])  # exactly singular: the pivot of local row 1 is 0
    with pytest.raises(SingularMatrixError, match=f"zero {name} pivot at global row 51") as ei:
        kernel(a, row0=50, last=False)
    assert ei.value.row == 51
    assert isinstance(ei.value, ArithmeticError)
    # in the last tile the factorization can finish: log|det| = -inf, sign 0
    f = kernel(a, row0=50, last=True)
    assert np.any(f.pivots.sign == 0) and f.pivots.log_abs.sum() == -np.inf


def test_factor_diag_dispatch():
    a, *_ = spd_tile()
    assert isinstance(K.factor_diag(a, "spd"), K.CholFactor)
    assert isinstance(K.factor_diag(a, "sym"), K.LDLFactor)
    assert isinstance(K.factor_diag(a, "gen"), K.LUFactor)
    with pytest.raises(ValueError, match="assume must be one of"):
        K.factor_diag(a, "herm")


# --------------------------------------------------------------------------------------------------------------
# panel solves and trailing updates vs dense formulas
# --------------------------------------------------------------------------------------------------------------

def test_chol_trsm_and_update(rng):
    a, *_ = spd_tile()
    f = K.potrf(a)
    A_ik = rng.standard_normal((17, B))  # a ragged panel tile (17 rows)
    A_jk = rng.standard_normal((9, B))
    L = np.tril(np.asarray(f.L))
    X = K.trsm(f, A_ik)
    np.testing.assert_allclose(X @ L.T, A_ik, rtol=0, atol=100 * B * EPS64)  # X Lᵀ = A_ik
    Y = K.trsm(f, A_jk)
    C = rng.standard_normal((17, 9))
    C0 = C.copy()
    np.testing.assert_allclose(K.update(C, X, Y), C - X @ Y.T, rtol=0, atol=100 * B * EPS64)
    # Schur complement: C − A_ik A_kk⁻¹ A_jkᵀ
    np.testing.assert_allclose(K.update(C, X, Y), C - A_ik @ np.linalg.solve(a, A_jk.T), rtol=0,
                               atol=100 * B * 8 * EPS64)
    # SYRK path (the same object twice) and no input is modified
    Cd = rng.standard_normal((17, 17))
    Cd0 = Cd.copy()
    np.testing.assert_allclose(K.update(Cd, X, X), Cd - X @ X.T, rtol=0, atol=100 * B * EPS64)
    np.testing.assert_array_equal(C, C0)
    np.testing.assert_array_equal(Cd, Cd0)


@pytest.mark.parametrize("tile", ["random", "two_by_two"])
def test_ldl_trsm_and_update_give_schur_complement(rng, tile):
    if tile == "random":
        a, *_ = sym_tile(seed=4)
    else:  # forces 2×2 pivot blocks (zero diagonal)
        a = np.kron(np.eye(B // 2), np.array([[0.0, 1.0], [1.0, 0.0]])) + 0.01 * np.eye(B)[::-1]
        a = (a + a.T) / 2
    f = K.sytrf(a)
    if tile == "two_by_two":
        assert f.dinv_off is not None
    A_ik = rng.standard_normal((11, B))
    A_jk = rng.standard_normal((7, B))
    Wi, Wj = K.trsm(f, A_ik), K.trsm(f, A_jk)
    C = rng.standard_normal((11, 7))
    kappa = cond_sym(a)
    ref = C - A_ik @ np.linalg.solve(a, A_jk.T)
    np.testing.assert_allclose(K.update(C, Wi, Wj), ref, rtol=0, atol=100 * B * kappa * EPS64)
    Cd = rng.standard_normal((11, 11))
    Cd = Cd + Cd.T
    np.testing.assert_allclose(K.update(Cd, Wi, Wi), Cd - A_ik @ np.linalg.solve(a, A_ik.T), rtol=0,
                               atol=100 * B * kappa * EPS64)


def test_lu_trsm_and_update_give_schur_complement(rng):
    s = np.linspace(0.5, 2.0, B)
    s[::4] *= -1
    a, _, _, kappa = general_matrix(B, s, seed=9)
    f = K.getrf(a)
    A_ik = rng.standard_normal((13, B))  # column panel (below the diagonal tile)
    A_kj = rng.standard_normal((B, 6))   # row panel (right of the diagonal tile)
    L_ik = K.trsm(f, A_ik)
    U_kj = K.trsm_row(f, A_kj)
    U = np.triu(f.lu)
    Lk = np.tril(f.lu, -1) + np.eye(B)
    np.testing.assert_allclose(L_ik @ U, A_ik, rtol=0, atol=100 * B * EPS64)        # L_ik U = A_ik
    np.testing.assert_allclose(Lk @ U_kj, A_kj[f.perm], rtol=0, atol=100 * B * EPS64)  # L U_kj = P A_kj
    C = rng.standard_normal((13, 6))
    np.testing.assert_allclose(K.update_gen(C, L_ik, U_kj), C - A_ik @ np.linalg.solve(a, A_kj), rtol=0,
                               atol=100 * B * kappa * EPS64)


def test_trsm_rejects_unknown_factor():
    with pytest.raises(TypeError, match="unknown factor type"):
        K.trsm(object(), np.zeros((2, 2)))


# --------------------------------------------------------------------------------------------------------------
# prepare_tile: scale, shift, checks
# --------------------------------------------------------------------------------------------------------------

def test_prepare_tile_scale_and_shift(rng):
    a = rng.standard_normal((6, 6))
    a = a + a.T
    d = rng.uniform(0.1, 1.0, 6)
    np.testing.assert_array_equal(K.prepare_tile(a, r0=0, c0=0), a)
    np.testing.assert_allclose(K.prepare_tile(a, r0=0, c0=0, t=2.5, d=0.3), 2.5 * a + 0.3 * np.eye(6),
                               rtol=4 * EPS64)
    np.testing.assert_allclose(K.prepare_tile(a, r0=0, c0=0, t=-1.0, d=d), -a + np.diag(d), rtol=4 * EPS64)
    f32 = K.prepare_tile(a.astype(np.float32), r0=0, c0=0, t=2.5, d=d)
    assert f32.dtype == np.float32  # the shift does not promote a float32 tile


def test_prepare_tile_non_finite_names_global_entry():
    a = np.eye(5)
    a[3, 1] = np.nan
    with pytest.raises(NonFiniteError, match=r"row 103, column 199 \(tile \(2, 4\)"):
        K.prepare_tile(a, r0=100, c0=198, tile_index=(2, 4))
    a[3, 1] = np.inf
    with pytest.raises(NonFiniteError, match="row 103, column 199"):
        K.prepare_tile(a, r0=100, c0=198)
    # a NaN in the mirror (upper) tile: A_ji[r, c] is global row c0 + r, column r0 + c
    m = np.eye(5)
    m[2, 4] = np.nan
    with pytest.raises(NonFiniteError, match="row 200, column 104"):
        K.check_symmetric_pair(np.eye(5), m, 1e-8, 100, 198, 2, 4)


def test_prepare_tile_symmetry_checks(rng):
    a = rng.standard_normal((6, 6))
    s = a + a.T
    K.prepare_tile(s, r0=0, c0=0, symmetry_rtol=1e-12)  # a diagonal tile against its own transpose
    with pytest.raises(NotSymmetricError, match=r"tile \(3, 3\) = rows 30:36"):
        K.prepare_tile(a, r0=30, c0=30, symmetry_rtol=1e-8, tile_index=(3, 3))
    lo = rng.standard_normal((4, 6))
    # off-diagonal pairs: check_symmetric_pair(A_ij, A_ji, rtol, r0, c0, i, j)
    assert K.check_symmetric_pair(lo, lo.T.copy(), 1e-12, 6, 0, 1, 0) is None
    up = lo.T.copy()
    up[2, 1] += 1e-3
    with pytest.raises(NotSymmetricError, match=r"tile \(1, 0\).*assume='gen'"):
        K.check_symmetric_pair(lo, up, 1e-8, 6, 0, 1, 0)
    # within tolerance passes
    up[2, 1] = lo[1, 2] + 1e-12
    assert K.check_symmetric_pair(lo, up, 1e-8, 6, 0, 1, 0) is None
    with pytest.raises(NotSymmetricError, match="mirror tile has shape"):
        K.check_symmetric_pair(lo, lo, 1e-8, 6, 0, 1, 0)


# --------------------------------------------------------------------------------------------------------------
# array-api-strict: the kernels use only Array-API calls outside the backend layer
# --------------------------------------------------------------------------------------------------------------

xs = pytest.importorskip("array_api_strict")


def _np(x):
    return np.asarray(x)


def _close(x, ref, scale=1.0):
    # same LAPACK work in a different call sequence: agreement to rounding, c·b·eps·scale
    assert type(x).__module__.startswith("array_api_strict")  # the result stays in the tile's namespace
    np.testing.assert_allclose(_np(x), ref, rtol=0, atol=10 * B * EPS64 * scale)


def test_array_api_strict_potrf_trsm_update(rng):
    a, *_ = spd_tile()
    fn = K.potrf(a, row0=7)
    fs = K.potrf(xs.asarray(a), row0=7)
    assert type(fs.L).__module__.startswith("array_api_strict")
    np.testing.assert_array_equal(fs.pivots.sign, fn.pivots.sign)
    np.testing.assert_allclose(fs.pivots.log_abs, fn.pivots.log_abs, rtol=0, atol=10 * B * EPS64)
    _close(fs.L, np.tril(fn.L), scale=2.0)

    P = rng.standard_normal((10, B))
    Xn = K.trsm(fn, P)
    Xs = K.trsm(fs, xs.asarray(P))
    assert type(Xs).__module__.startswith("array_api_strict")
    _close(Xs, Xn, scale=np.abs(Xn).max())

    C = rng.standard_normal((10, 10))
    Un = K.update(C, Xn, Xn)
    Us = K.update(xs.asarray(C), Xs, Xs)
    assert type(Us).__module__.startswith("array_api_strict")
    _close(Us, Un, scale=np.abs(Un).max())


def test_array_api_strict_potrf_not_psd_row():
    a = np.eye(B)
    a[5, 5] = -2.0
    with pytest.raises(NotPSDError) as ei:
        K.potrf(xs.asarray(a), row0=64)
    assert ei.value.row == 69


def test_array_api_strict_prepare_tile(rng):
    a = rng.standard_normal((6, 6))
    a = a + a.T
    d = rng.uniform(0.1, 1.0, 6)
    for t, dd in [(2.5, 0.3), (2.5, d), (1.0, None)]:
        ref = K.prepare_tile(a, r0=0, c0=0, t=t, d=dd, symmetry_rtol=1e-12)
        out = K.prepare_tile(xs.asarray(a), r0=0, c0=0, t=t, d=dd, symmetry_rtol=1e-12)
        assert type(out).__module__.startswith("array_api_strict")
        np.testing.assert_allclose(_np(out), ref, rtol=0, atol=4 * EPS64 * np.abs(ref).max())
    bad = a.copy()
    bad[4, 2] = np.inf
    with pytest.raises(NonFiniteError, match="row 4, column 2"):
        K.prepare_tile(xs.asarray(bad), r0=0, c0=0)
    with pytest.raises(NotSymmetricError):
        K.prepare_tile(xs.asarray(rng.standard_normal((4, 4))), r0=0, c0=0, symmetry_rtol=1e-8)


def test_array_api_strict_ldl_chain(rng):
    a, *_ = sym_tile(seed=5)
    fn, fs = K.sytrf(a), K.sytrf(xs.asarray(a))
    np.testing.assert_array_equal(fs.pivots.sign, fn.pivots.sign)
    np.testing.assert_allclose(fs.pivots.log_abs, fn.pivots.log_abs, rtol=0, atol=10 * B * EPS64)
    P = rng.standard_normal((8, B))
    C = rng.standard_normal((8, 8))
    Un = K.update(C, K.trsm(fn, P), K.trsm(fn, P))
    Wsp = K.trsm(fs, xs.asarray(P))
    Us = K.update(xs.asarray(C), Wsp, Wsp)
    _close(Us, Un, scale=cond_sym(a) * np.abs(Un).max())


def test_array_api_strict_lu_chain(rng):
    s = np.linspace(0.5, 2.0, B)
    s[::3] *= -1
    a, _, _, kappa = general_matrix(B, s, seed=3)
    fn, fs = K.getrf(a), K.getrf(xs.asarray(a))
    np.testing.assert_array_equal(fs.pivots.sign, fn.pivots.sign)
    P = rng.standard_normal((8, B))
    R = rng.standard_normal((B, 8))
    Ln, Un = K.trsm(fn, P), K.trsm_row(fn, R)
    Ls, Us = K.trsm(fs, xs.asarray(P)), K.trsm_row(fs, xs.asarray(R))
    _close(Ls, Ln, scale=kappa * np.abs(Ln).max())
    _close(Us, Un, scale=kappa * np.abs(Un).max())
