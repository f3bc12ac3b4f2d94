"""The exact engine end to end on dask's in-process threaded scheduler (client=None).

References: matrices with a prescribed spectrum (exact log|det|, sign and inertia known in advance) and LAPACK
(numpy.linalg.slogdet / cholesky) on the dense matrix. Tolerances: conftest.logdet_tol (10·n^1.5·κ·eps, the
first-order effect tr(M⁻¹ΔM) of a backward error ‖ΔM‖ ~ √n·eps·‖M‖ summed over n pivots); measured errors are
~1e-13 where these bounds are ~1e-9, and every defect we guard against (wrong pivot order, lost update, wrong
tile) moves the answer by O(1).
"""

from __future__ import annotations

import dataclasses
import json
import math

import dask
import dask.array as da
import numpy as np
import pytest
from dask.utils import key_split

import dlogdet
from dlogdet.engine.schedule import Tiling
from dlogdet.engine.tiles import build_factor_graph
from dlogdet.runtime.execute import Progress

from .conftest import (EPS32, ArrayBlockSource, cond, cond_sym, general_matrix, log_uniform_spectrum, logdet_tol,
                       spectrum_matrix)

N = 1001          # ragged: 7 full tiles of 128 and one of 105
BS = 128
NT = 8
BOUNDARIES = [128, 256, 384, 512, 640, 768, 896, 1001]
KAPPA = math.exp(4.0)  # |λ| log-uniform on [e^-2, e^2]


# --------------------------------------------------------------------------------------------------------------
# module fixtures: the big matrices are built once
# --------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spd():
    lam = log_uniform_spectrum(N, -2.0, 2.0, seed=1)
    return spectrum_matrix(N, lam, seed=11)


@pytest.fixture(scope="module")
def sym_neg():
    """Indefinite, every second eigenvalue negative: 501 negative of 1001, so det < 0."""
    lam = log_uniform_spectrum(N, -2.0, 2.0, seed=2, negative_every=2)
    a, ld, sign, inertia = spectrum_matrix(N, lam, seed=12)
    assert sign == -1.0 and inertia == (500, 501, 0)
    return a, ld, sign, inertia, lam


@pytest.fixture(scope="module")
def gen_neg():
    """Non-symmetric with det < 0: signed singular values, 201 of them negative."""
    s = log_uniform_spectrum(N, -2.0, 2.0, seed=3, negative_every=5)
    a, ld, sign, kappa = general_matrix(N, s, seed=13)
    assert sign == -1.0 and np.abs(a - a.T).max() > 0.1
    return a, ld, sign, kappa


@pytest.fixture(scope="module")
def small_spd():
    lam = log_uniform_spectrum(300, -1.0, 1.0, seed=4)
    return spectrum_matrix(300, lam, seed=14)


def check_result_shape(r, n, assume, dtype="float64"):
    assert isinstance(r, dlogdet.LogdetResult)
    assert r.method == "exact" and r.assume == assume and r.n == n and r.dtype == dtype
    assert r.log_pivots.shape == (n,) and r.log_pivots.dtype == np.float64
    assert r.pivot_signs.shape == (n,) and r.pivot_signs.dtype == np.int8
    assert r.stderr is None


# --------------------------------------------------------------------------------------------------------------
# spd / sym / gen on prescribed spectra, n = 1001, block 128 (ragged last tile)
# --------------------------------------------------------------------------------------------------------------

def test_spd_prescribed_spectrum(spd):
    a, ld, sign, inertia = spd
    r = dlogdet.logdet(a, assume="spd", block_size=BS)
    check_result_shape(r, N, "spd")
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA)
    assert r.sign == 1.0 and r.status == "ok"
    assert tuple(r.inertia) == inertia == (N, 0, 0)
    assert r.diagnostics["block_size"] == BS and r.diagnostics["n_tiles"] == NT * (NT + 1) // 2
    assert r.diagnostics["scheduler"].startswith("threads")


def test_spd_leading_minors_every_k(spd):
    a, *_ = spd
    r = dlogdet.logdet(a, assume="spd", block_size=BS)
    cs = np.cumsum(r.log_pivots)
    np.testing.assert_array_equal(r.leading_logdets(), cs)
    # every leading minor of an SPD matrix is SPD with κ(A_k) ≤ κ(A) (Cauchy interlacing): one bound for all k.
    # Reference for every k at once: LAPACK's Cholesky of the whole matrix, log det A_k = 2·Σ_{i<k} log L_ii.
    ref = 2.0 * np.cumsum(np.log(np.diag(np.linalg.cholesky(a))))
    np.testing.assert_allclose(cs, ref, rtol=0, atol=logdet_tol(N, KAPPA))
    for k in (1, 2, 127, 128, 129, 500, 1000, N):
        s, ldk = np.linalg.slogdet(a[:k, :k])
        assert s == 1.0 and abs(cs[k - 1] - ldk) <= logdet_tol(k, KAPPA), k


def test_sym_indefinite_sign_inertia(sym_neg):
    a, ld, sign, inertia, lam = sym_neg
    r = dlogdet.logdet(a, assume="sym", block_size=BS)
    check_result_shape(r, N, "sym")
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA)
    assert r.sign == sign == -1.0
    assert tuple(r.inertia) == inertia
    assert float(np.prod(r.pivot_signs.astype(float))) == r.sign


def test_sym_leading_minors_at_tile_boundaries(sym_neg):
    a, *_ = sym_neg
    r = dlogdet.logdet(a, assume="sym", block_size=BS)
    cs = np.cumsum(r.log_pivots)
    for k in BOUNDARIES:  # pivoting stays inside a tile, so the cumsum is exact at tile boundaries
        ak = a[:k, :k]
        s, ldk = np.linalg.slogdet(ak)
        assert abs(cs[k - 1] - ldk) <= logdet_tol(k, cond_sym(ak)), k
        assert float(np.prod(r.pivot_signs[:k].astype(float))) == s, k


def test_sym_on_spd_matches_spd(spd):
    a, ld, _, inertia = spd
    r = dlogdet.logdet(a, assume="sym", block_size=BS)
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA) and r.sign == 1.0 and tuple(r.inertia) == inertia


def test_gen_negative_determinant(gen_neg):
    a, ld, sign, kappa = gen_neg
    r = dlogdet.logdet(a, assume="gen", block_size=BS)
    check_result_shape(r, N, "gen")
    assert abs(r.logdet - ld) <= logdet_tol(N, kappa)
    assert r.sign == sign == -1.0
    assert r.inertia is None  # LU pivots say nothing about eigenvalue signs
    assert r.diagnostics["n_tiles"] == NT * NT
    cs = np.cumsum(r.log_pivots)
    for k in BOUNDARIES:
        ak = a[:k, :k]
        s, ldk = np.linalg.slogdet(ak)
        assert abs(cs[k - 1] - ldk) <= logdet_tol(k, cond(ak)), k
        assert float(np.prod(r.pivot_signs[:k].astype(float))) == s, k


def test_gen_on_symmetric_indefinite(sym_neg):
    a, ld, sign, _, _ = sym_neg
    r = dlogdet.logdet(a, assume="gen", block_size=BS)
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA) and r.sign == sign


def test_sym_two_by_two_pivots_through_the_engine(rng):
    # zero diagonal: Bunch–Kaufman must use 2×2 pivot blocks in the first tile, then updates carry D⁻¹'s
    # off-diagonal into the trailing tiles (block size even so no 2×2 block would straddle a tile boundary)
    n, m = 200, 100
    a = np.kron(np.eye(m), np.array([[0.0, 1.0], [1.0, 0.0]]))
    c = 0.02 * rng.standard_normal((n, n))
    c = c + c.T
    np.fill_diagonal(c, 0.0)
    a = a + c
    w = np.linalg.eigvalsh(a)
    s, ld = np.linalg.slogdet(a)
    r = dlogdet.logdet(a, assume="sym", block_size=64)
    assert abs(r.logdet - ld) <= logdet_tol(n, np.abs(w).max() / np.abs(w).min())
    assert r.sign == s
    assert tuple(r.inertia) == (int(np.sum(w > 0)), int(np.sum(w < 0)), 0)


# --------------------------------------------------------------------------------------------------------------
# float32 tiles
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("assume", ["spd", "sym", "gen"])
def test_float32_tiles(spd, assume):
    a, ld, _, _ = spd
    r = dlogdet.logdet(a.astype(np.float32), assume=assume, block_size=BS)
    check_result_shape(r, N, assume, dtype="float32")
    # Each pivot carries a relative error of about √n·eps32 (rounding A to float32, then inner products of
    # length ≤ n accumulating like a random walk); n pivots give at most n·√n·eps32 ≈ 3.8e-3 here. The
    # spectrum is well conditioned (κ ≈ 55) and the errors have random signs: measured ≤ 1e-5.
    assert abs(r.logdet - ld) <= N ** 1.5 * EPS32
    assert r.sign == 1.0


# --------------------------------------------------------------------------------------------------------------
# jitter: M = t·A + diag(d)
# --------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sym_shiftable():
    """|λ| on [1, e²]: 2.5·λ + 0.3 stays away from 0 for either sign (its log det is known exactly)."""
    lam = log_uniform_spectrum(N, 0.0, 2.0, seed=5, negative_every=4)
    a, *_ = spectrum_matrix(N, lam, seed=15)
    return a, lam


@pytest.mark.parametrize("assume", ["spd", "sym", "gen"])
def test_scalar_jitter_against_shifted_spectrum(spd, sym_shiftable, assume):
    if assume == "spd":
        a, *_ = spd
        lam = log_uniform_spectrum(N, -2.0, 2.0, seed=1)  # the spectrum the `spd` fixture was built from
    else:
        a, lam = sym_shiftable
    mu = 2.5 * lam + 0.3  # eigenvalues of 2.5·A + 0.3·I
    ld = float(np.sum(np.log(np.abs(mu))))
    kappa = np.abs(mu).max() / np.abs(mu).min()
    r = dlogdet.logdet(a, assume=assume, t=2.5, d=0.3, block_size=BS)
    assert abs(r.logdet - ld) <= logdet_tol(N, kappa)
    assert r.sign == float(np.prod(np.sign(mu)))
    s, ref = np.linalg.slogdet(2.5 * a + 0.3 * np.eye(N))  # and LAPACK on the dense shifted matrix
    assert r.sign == s and abs(r.logdet - ref) <= logdet_tol(N, kappa)
    assert r.diagnostics["t"] == 2.5 and r.diagnostics["d"] == 0.3
    if assume != "gen":
        assert tuple(r.inertia) == (int(np.sum(mu > 0)), int(np.sum(mu < 0)), 0)


@pytest.mark.parametrize("assume", ["spd", "sym", "gen"])
def test_vector_jitter_against_slogdet(small_spd, rng, assume):
    a, *_ = small_spd
    n = a.shape[0]
    if assume == "gen":
        a = a + 0.3 * rng.standard_normal((n, n)) / np.sqrt(n)  # non-symmetric
    d = rng.uniform(0.0, 2.0, n)
    m = -1.5 * a + np.diag(d) if assume == "sym" else 1.5 * a + np.diag(d)
    t = -1.5 if assume == "sym" else 1.5
    s, ld = np.linalg.slogdet(m)
    r = dlogdet.logdet(a, assume=assume, t=t, d=d, block_size=128)
    kappa = cond(m)
    assert abs(r.logdet - ld) <= logdet_tol(n, kappa) and r.sign == s
    assert r.diagnostics["d"] == "vector"
    r2 = dlogdet.logdet(a, assume=assume, t=t, d=list(d), block_size=128)  # any sequence of length n
    assert r2.logdet == r.logdet


# --------------------------------------------------------------------------------------------------------------
# block sizes
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("assume", ["spd", "sym", "gen"])
def test_block_size_larger_than_n(small_spd, assume):
    a, ld, *_ = small_spd
    r = dlogdet.logdet(a, assume=assume, block_size=5000)
    assert r.diagnostics["block_size"] == 300 and r.diagnostics["n_panels"] == 1
    assert abs(r.logdet - ld) <= logdet_tol(300, math.e ** 2)


@pytest.mark.parametrize("assume", ["spd", "sym", "gen"])
def test_block_size_one(assume):
    # 1×1 tiles: every row is a tile boundary, so every leading minor must match (no pivoting is possible)
    lam = np.array([3.0, -0.5, 2.0, 1.5, -4.0]) if assume != "spd" else np.array([3.0, 0.5, 2.0, 1.5, 4.0])
    a, ld, sign, inertia = spectrum_matrix(5, lam, seed=21)
    if assume == "gen":
        a = a + np.triu(np.full((5, 5), 0.1), 1)  # break symmetry
        sign, ld = np.linalg.slogdet(a)
    r = dlogdet.logdet(a, assume=assume, block_size=1)
    assert r.diagnostics["n_panels"] == 5
    assert abs(r.logdet - ld) <= 1e-12 and r.sign == sign
    for k in range(1, 6):
        s, ldk = np.linalg.slogdet(a[:k, :k])
        assert abs(np.cumsum(r.log_pivots)[k - 1] - ldk) <= logdet_tol(k, cond(a[:k, :k])), k
        assert float(np.prod(r.pivot_signs[:k].astype(float))) == s
    if assume != "gen":
        assert tuple(r.inertia) == inertia


def test_default_block_size_config_and_budget(small_spd):
    a, ld, *_ = small_spd
    tol = logdet_tol(300, math.e ** 2)
    r = dlogdet.logdet(a)  # automatic tile size
    assert 1 <= r.diagnostics["block_size"] <= 300 and abs(r.logdet - ld) <= tol
    with dask.config.set({"dlogdet.block-size": 100}):
        r = dlogdet.logdet(a)
    assert r.diagnostics["block_size"] == 100 and r.diagnostics["n_panels"] == 3 and abs(r.logdet - ld) <= tol
    r = dlogdet.logdet(a, budget="4MiB")  # a tile of b² float64 fits budget/8 bytes: b ≤ √(2²²/64) = 256
    assert r.diagnostics["block_size"] <= 256 and r.diagnostics["budget"] == 2 ** 22
    assert abs(r.logdet - ld) <= tol


# --------------------------------------------------------------------------------------------------------------
# every kind of input
# --------------------------------------------------------------------------------------------------------------

LowerOnlySource = ArrayBlockSource


class SymmetricSource(LowerOnlySource):
    symmetric = True  # skips the symmetry check

    def tile(self, r0, r1, c0, c1):
        return self.a[r0:r1, c0:c1].copy()


def _inputs(a, tmp_path):
    import zarr

    np.save(tmp_path / "c.npy", a)
    np.save(tmp_path / "f.npy", np.asfortranarray(a))
    assert np.load(tmp_path / "f.npy", mmap_mode="r").flags.f_contiguous
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=a.shape, chunks=(100, 100), dtype="f8")
    z[:] = a
    return {
        "numpy": lambda: a,
        "npy-path-str": lambda: str(tmp_path / "c.npy"),
        "npy-pathlib": lambda: tmp_path / "c.npy",
        "npy-fortran": lambda: str(tmp_path / "f.npy"),
        "memmap": lambda: np.load(tmp_path / "c.npy", mmap_mode="r"),
        "zarr-dir": lambda: str(tmp_path / "a.zarr"),
        "zarr-array": lambda: zarr.open_array(str(tmp_path / "a.zarr"), mode="r"),
        "dask": lambda: da.from_array(a, chunks=(70, 90)),
        "tilesource-block": lambda: LowerOnlySource(a),
        "tilesource-tile": lambda: SymmetricSource(a),
    }


INPUT_KINDS = ["numpy", "npy-path-str", "npy-pathlib", "npy-fortran", "memmap", "zarr-dir", "zarr-array", "dask",
               "tilesource-block", "tilesource-tile"]


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("assume", ["spd", "gen"])
def test_every_input_kind(small_spd, tmp_path, kind, assume):
    a, ld, *_ = small_spd
    src = _inputs(a, tmp_path)[kind]()
    r = dlogdet.logdet(src, assume=assume, block_size=128)
    assert abs(r.logdet - ld) <= logdet_tol(300, math.e ** 2), kind
    assert r.sign == 1.0 and r.n == 300
    assert r.diagnostics["symmetry_checked"] == (assume != "gen" and kind != "tilesource-tile")


def test_every_input_kind_agrees(small_spd, tmp_path):
    # same tiles, same kernels, same update order: the containers agree to rounding (in practice to the bit;
    # a BLAS may pick another summation order for a Fortran-ordered tile, hence 1e-12 on a log det of ~±10)
    a, *_ = small_spd
    vals = {k: dlogdet.logdet(f(), assume="sym", block_size=128).logdet for k, f in _inputs(a, tmp_path).items()}
    ref = vals["numpy"]
    assert all(abs(v - ref) <= 1e-12 for v in vals.values()), vals


@pytest.mark.parametrize("kernel", ["rbf", "matern12", "matern32", "matern52"])
def test_kernel_source(rng, kernel):
    x = rng.standard_normal((260, 3))
    src = dlogdet.KernelSource(x, kernel=kernel, lengthscale=1.3, variance=0.7, jitter=1e-2)
    assert src.symmetric and src.shape == (260, 260)
    dense = src.dense()
    np.testing.assert_array_equal(dense, dense.T)
    s, ld = np.linalg.slogdet(dense)
    r = dlogdet.logdet(src, assume="spd", block_size=64)
    kappa = cond_sym(dense)
    assert s == 1.0 and abs(r.logdet - ld) <= logdet_tol(260, kappa)
    assert r.diagnostics["symmetry_checked"] is False  # a kernel is symmetric by construction
    # its tiles are slices of the dense matrix
    np.testing.assert_allclose(src.tile(64, 128, 0, 64), dense[64:128, 0:64], rtol=0, atol=1e-15)


def test_kernel_source_values(rng):
    # K_ij = σ²·k(‖x_i − x_j‖/ℓ) + jitter·δ_ij, against the formulas written out directly
    x = rng.standard_normal((7, 2))
    r = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)) / 0.8
    refs = {"rbf": np.exp(-0.5 * r ** 2), "matern12": np.exp(-r),
            "matern32": (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r),
            "matern52": (1 + np.sqrt(5) * r + 5 * r ** 2 / 3) * np.exp(-np.sqrt(5) * r)}
    for name, k in refs.items():
        src = dlogdet.KernelSource(x, kernel=name, lengthscale=0.8, variance=2.0, jitter=0.1)
        np.testing.assert_allclose(src.dense(), 2.0 * k + 0.1 * np.eye(7), rtol=1e-12, atol=1e-12)
    s32 = dlogdet.KernelSource(x, dtype=np.float32)
    assert s32.dense().dtype == np.float32
    # a block of other rows than columns (a subsample's): the jitter exactly where a point meets itself
    rows, cols = np.array([0, 3, 5, 3]), np.array([5, 1, 0, 3, 6])
    for name in refs:
        src = dlogdet.KernelSource(x, kernel=name, lengthscale=0.8, variance=2.0, jitter=0.1)
        np.testing.assert_allclose(src.block(rows, cols), src.dense()[np.ix_(rows, cols)], rtol=1e-12, atol=1e-12)
        assert src.block(rows, rows)[1, 3] == src.block(rows, rows)[0, 0] == 2.0 + 0.1      # row 3 twice


def test_input_is_not_modified(small_spd):
    a, *_ = small_spd
    a = a.copy()
    before = a.copy()
    for assume in ("spd", "sym", "gen"):
        dlogdet.logdet(a, assume=assume, block_size=128)
    np.testing.assert_array_equal(a, before)


def test_check_symmetry_off_reads_lower_triangle(small_spd, rng):
    a, *_ = small_spd
    skew = a + np.triu(rng.standard_normal(a.shape), 1)  # garbage above the diagonal
    ref = np.tril(skew) + np.tril(skew, -1).T             # what a lower-triangle factorization sees
    s, ld = np.linalg.slogdet(ref)
    with pytest.raises(dlogdet.NotSymmetricError):
        dlogdet.logdet(skew, block_size=128)
    r = dlogdet.logdet(skew, block_size=128, check_symmetry=False)
    assert abs(r.logdet - ld) <= logdet_tol(300, math.e ** 2) and r.diagnostics["symmetry_checked"] is False
    with dask.config.set({"dlogdet.check.symmetry": False}):
        assert dlogdet.logdet(skew, block_size=128).logdet == r.logdet


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
@pytest.mark.parametrize("assume", ["sym", "gen"])
def test_singular_in_last_tile(small_spd, assume):
    # a zero last row and column: every Schur complement keeps it exactly zero, so the last pivot is exactly 0
    a, *_ = small_spd
    a = a.copy()
    a[-1, :] = 0.0
    a[:, -1] = 0.0
    assert np.linalg.slogdet(a)[0] == 0.0
    r = dlogdet.logdet(a, assume=assume, block_size=128)
    assert r.logdet == -math.inf and r.sign == 0.0 and r.status == "singular"
    if assume == "sym":
        assert tuple(r.inertia) == (299, 0, 1)
    assert json.loads(r.to_json())["logdet"] == "-inf"


# --------------------------------------------------------------------------------------------------------------
# the result object
# --------------------------------------------------------------------------------------------------------------

def test_result_is_frozen_and_readonly(small_spd):
    a, *_ = small_spd
    r = dlogdet.logdet(a, block_size=128)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.logdet = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.sign = -1.0
    with pytest.raises(ValueError, match="read-only"):
        r.log_pivots[0] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        r.pivot_signs[0] = -1
    with pytest.raises(TypeError):
        r.diagnostics["wall_time"] = 0.0
    assert "LogdetResult(logdet=" in repr(r)


def test_result_to_json_round_trip(small_spd):
    a, ld, *_ = small_spd
    r = dlogdet.logdet(a, block_size=128)
    j = json.loads(r.to_json())
    assert {"logdet", "sign", "method", "n", "diagnostics", "dtype", "assume", "inertia", "status"} <= set(j)
    assert j["logdet"] == r.logdet and j["sign"] == 1.0 and j["method"] == "exact" and j["n"] == 300
    assert j["inertia"] == {"positive": 300, "negative": 0, "zero": 0}
    assert "log_pivots" not in j
    jp = json.loads(r.to_json(pivots=True))
    assert len(jp["log_pivots"]) == 300 and jp["log_pivots"] == r.log_pivots.tolist()
    assert set(jp["pivot_signs"]) == {1}


def test_diagnostics_and_graph_keys(small_spd):
    a, *_ = small_spd
    nt = 3  # 300 = 128 + 128 + 44
    # independent count of a right-looking tiled factorization: factor + pivots per panel, one panel solve
    # per sub-diagonal tile (two for LU), one update per trailing tile per step, one gather
    upd_sym = sum(m * (m + 1) // 2 for m in range(nt))
    upd_gen = sum(m * m for m in range(nt))
    expected_tasks = {"spd": 2 * nt + nt * (nt - 1) // 2 + upd_sym + 1,
                      "sym": 2 * nt + nt * (nt - 1) // 2 + upd_sym + 1,
                      "gen": 2 * nt + nt * (nt - 1) + upd_gen + 1}
    factor_name = {"spd": "potrf", "sym": "sytrf", "gen": "getrf"}
    for assume in ("spd", "sym", "gen"):
        r = dlogdet.logdet(a, assume=assume, block_size=128)
        dg = r.diagnostics
        assert {"wall_time", "block_size", "n_tiles", "n_tasks"} <= set(dg)
        assert isinstance(dg["wall_time"], float) and dg["wall_time"] > 0
        assert dg["block_size"] == 128 and dg["n_panels"] == nt
        assert dg["n_tiles"] == (nt * nt if assume == "gen" else nt * (nt + 1) // 2)
        # spd/sym on an unverified source add one symmetry-check task per off-diagonal tile pair
        checks = nt * (nt - 1) // 2 if assume != "gen" else 0
        assert dg["symmetry_checked"] == (assume != "gen")
        assert dg["n_tasks"] == expected_tasks[assume] + checks
        assert dg["peak_rss_bytes_per_worker"]["local"] > 0

        g = build_factor_graph(dlogdet.as_source(a), assume, Tiling(300, 128))
        assert g.n_tasks == expected_tasks[assume]
        names = {key_split(k) for k in g.dsk}
        expected = {factor_name[assume], "trsm", "gemm", "syrk", "pivots", "logdet", "source"}
        if assume == "gen":
            expected.add("trsmrow")
        assert names == expected
        assert key_split((g.names[factor_name[assume]], 0)) == factor_name[assume]
        assert all(key_split(k) == "gemm" for k in g.dsk if isinstance(k, tuple) and len(k) == 4 and k[1] != k[2])
        assert all(key_split(k) == "syrk" for k in g.dsk if isinstance(k, tuple) and len(k) == 4 and k[1] == k[2])
        gc = build_factor_graph(dlogdet.as_source(a), assume, Tiling(300, 128), symmetry_rtol=1e-8)
        assert {key_split(k) for k in gc.dsk} == expected | {"symcheck"}
        assert gc.n_tasks == expected_tasks[assume] + nt * (nt - 1) // 2


def test_graph_tokens_deterministic_for_files(small_spd, tmp_path):
    a, *_ = small_spd
    np.save(tmp_path / "a.npy", a)
    s = dlogdet.as_source(str(tmp_path / "a.npy"))
    t1 = build_factor_graph(s, "spd", Tiling(300, 128)).token
    assert build_factor_graph(dlogdet.as_source(str(tmp_path / "a.npy")), "spd", Tiling(300, 128)).token == t1
    assert build_factor_graph(s, "sym", Tiling(300, 128)).token != t1
    assert build_factor_graph(s, "spd", Tiling(300, 100)).token != t1
    assert build_factor_graph(s, "spd", Tiling(300, 128), t=2.0).token != t1
    # in-memory arrays get a fresh token per call (never a stale cluster result for a mutated array)
    m = dlogdet.as_source(a)
    assert build_factor_graph(m, "spd", Tiling(300, 128)).token != build_factor_graph(m, "spd", Tiling(300, 128)).token


@pytest.mark.parametrize("case", ["user-tilesource", "opened-zarr", "kernel-dtype"])
def test_graph_tokens_differ_for_different_matrices(small_spd, tmp_path, case):
    import zarr

    a, *_ = small_spd
    tiling = Tiling(300, 128)

    def tok(src):
        return build_factor_graph(src, "spd", tiling).token

    if case == "user-tilesource":
        s1, s2 = LowerOnlySource(a), LowerOnlySource(2.0 * a)
    elif case == "opened-zarr":
        for name, v in (("1", a), ("2", 2.0 * a)):
            z = zarr.create_array(str(tmp_path / f"{name}.zarr"), shape=a.shape, chunks=(100, 100), dtype="f8")
            z[:] = v
        s1 = dlogdet.ZarrSource(zarr.open_array(str(tmp_path / "1.zarr")))
        s2 = dlogdet.ZarrSource(zarr.open_array(str(tmp_path / "2.zarr")))
    else:
        x = np.random.default_rng(0).standard_normal((300, 2))
        s1, s2 = dlogdet.KernelSource(x, dtype=np.float32), dlogdet.KernelSource(x, dtype=np.float64)
    assert tok(s1) != tok(s2)


# --------------------------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("assume", ["spd", "gen"])
def test_progress_callback(small_spd, assume):
    a, *_ = small_spd
    seen: list[Progress] = []
    dlogdet.logdet(a, assume=assume, block_size=64, progress=seen.append)
    nt = 5
    assert seen, "the progress callback was never called"
    done = [p.panels_done for p in seen]
    assert done == sorted(done) and len(set(done)) == len(done)  # strictly increasing
    assert done[-1] == nt and all(p.panels_total == nt for p in seen)
    fr = [p.work_fraction for p in seen]
    assert fr == sorted(fr) and fr[-1] == pytest.approx(1.0)
    assert seen[-1].tiles_done == seen[-1].tiles_total
    assert all(p.elapsed >= 0 for p in seen) and seen[-1].eta == pytest.approx(0.0)


# --------------------------------------------------------------------------------------------------------------
# smallest cases and the public namespace
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [2.0, -2.0])
@pytest.mark.parametrize("assume", ["spd", "sym", "gen"])
def test_one_by_one(value, assume):
    a = np.array([[value]])
    if assume == "spd" and value < 0:
        with pytest.raises(dlogdet.NotPSDError) as ei:
            dlogdet.logdet(a, assume=assume)
        assert ei.value.row == 0
        return
    r = dlogdet.logdet(a, assume=assume)
    assert r.logdet == pytest.approx(math.log(2.0), rel=1e-15) and r.sign == math.copysign(1.0, value)
    assert r.n == 1 and r.log_pivots.shape == (1,)
    if assume != "gen":
        assert tuple(r.inertia) == ((1, 0, 0) if value > 0 else (0, 1, 0))


def test_public_namespace():
    for name in dlogdet.__all__:
        assert hasattr(dlogdet, name), name
    assert isinstance(dlogdet.__version__, str)
    assert issubclass(dlogdet.KernelSource, dlogdet.TileSource)
