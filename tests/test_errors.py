"""Every bad input raises the right class of dlogdet.errors, with a message that says what is wrong and the fix."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import dlogdet
from dlogdet.core.errors import (DlogdetError, InputError, MemoryBudgetError, NonFiniteError, NotPSDError,
                                 NotSquareError, NotSymmetricError, SingularMatrixError, SourceError,
                                 UnsupportedDtypeError)

from .conftest import spectrum_matrix

N = 300
BS = 128  # tiles: rows 0:128, 128:256, 256:300


@pytest.fixture(scope="module")
def spd():
    a, *_ = spectrum_matrix(N, np.linspace(0.5, 2.0, N), seed=3)
    return a


# --------------------------------------------------------------------------------------------------------------
# the error tree
# --------------------------------------------------------------------------------------------------------------

def test_error_tree():
    for cls in (NotSquareError, UnsupportedDtypeError, NotSymmetricError, NonFiniteError, SourceError,
                NotPSDError, MemoryBudgetError):
        assert issubclass(cls, InputError) and issubclass(cls, ValueError) and issubclass(cls, DlogdetError)
    assert issubclass(SingularMatrixError, DlogdetError) and not issubclass(SingularMatrixError, InputError)
    assert issubclass(NotPSDError, ArithmeticError) and issubclass(SingularMatrixError, ArithmeticError)


@pytest.mark.parametrize("cls", [NotPSDError, SingularMatrixError])
def test_row_survives_pickling(cls):
    e = cls("the pivot of global row 41 failed", row=41)
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is cls and e2.row == 41 and str(e2) == str(e)


def test_not_psd_from_graph_keeps_row_through_pickling():
    # the error as raised inside a task of the graph (what a worker would send back)
    a = np.eye(N)
    a[200, 200] = -1.0
    with pytest.raises(NotPSDError) as ei:
        dlogdet.logdet(a, block_size=BS)
    assert ei.value.row == 200
    e2 = pickle.loads(pickle.dumps(ei.value))
    assert type(e2) is NotPSDError and e2.row == 200 and "global row 200" in str(e2)


# --------------------------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,match", [
    ((3, 4), r"must be square, got shape \(3, 4\)"),
    ((3, 3, 3), r"2-D and square, got 3-D shape"),
    ((5,), r"2-D and square, got 1-D shape"),
])
def test_not_square(shape, match):
    with pytest.raises(NotSquareError, match=match):
        dlogdet.logdet(np.ones(shape))


def test_empty():
    with pytest.raises(InputError, match=r"empty \(shape \(0, 0\)\)"):
        dlogdet.logdet(np.zeros((0, 0)))


def test_not_square_npy_and_dask(tmp_path):
    import dask.array as da

    np.save(tmp_path / "r.npy", np.ones((3, 4)))
    with pytest.raises(NotSquareError, match="square"):
        dlogdet.logdet(str(tmp_path / "r.npy"))
    x = da.ones((10, 10), chunks=5)
    x = x[x[:, 0] > 0]  # unknown number of rows
    with pytest.raises(NotSquareError, match="compute_chunk_sizes"):
        dlogdet.logdet(x)


# --------------------------------------------------------------------------------------------------------------
# symmetry
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("assume", ["spd", "sym"])
def test_not_symmetric_names_tile(spd, assume):
    a = spd.copy()
    a[200, 10] += 1.0  # tile (1, 0): rows 128:256, columns 0:128
    with pytest.raises(NotSymmetricError, match=r"not symmetric: in tile \(1, 0\) = rows 128:256, columns 0:128"
                       r".*assume='gen'"):
        dlogdet.logdet(a, assume=assume, block_size=BS)


def test_not_symmetric_in_diagonal_tile(spd):
    a = spd.copy()
    a[290, 260] += 1.0  # the last diagonal tile (2, 2)
    with pytest.raises(NotSymmetricError, match=r"tile \(2, 2\) = rows 256:300, columns 256:300"):
        dlogdet.logdet(a, assume="spd", block_size=BS)


def test_not_symmetric_accepted_with_gen(spd):
    a = spd.copy()
    a[200, 10] += 1.0
    s, ld = np.linalg.slogdet(a)
    r = dlogdet.logdet(a, assume="gen", block_size=BS)
    # κ(a) ≈ 4 after a unit perturbation of a matrix with spectrum [0.5, 2]; bound 10·n^1.5·κ·eps ≈ 5e-11
    assert r.sign == s and abs(r.logdet - ld) <= 1e-10


def test_symmetry_rtol_config(spd):
    import dask

    a = spd.copy()
    a[200, 10] += 1e-6  # relative asymmetry 1e-6/2: above √eps64 ≈ 1.5e-8, below 1e-4
    with pytest.raises(NotSymmetricError):
        dlogdet.logdet(a, block_size=BS)
    with dask.config.set({"dlogdet.check.symmetry-rtol": 1e-4}):
        dlogdet.logdet(a, block_size=BS)


# --------------------------------------------------------------------------------------------------------------
# non-finite entries
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("assume", ["spd", "sym", "gen"])
def test_non_finite_names_row_and_column(spd, bad, assume):
    a = spd.copy()
    a[200, 10] = bad
    a[10, 200] = bad
    # gen reads both tiles (1, 0) and (0, 1); whichever load runs first names its own entry
    where = "row 200, column 10" if assume != "gen" else "row (200, column 10|10, column 200)"
    with pytest.raises(NonFiniteError, match=rf"NaN or Inf at {where} .*replace non-finite"):
        dlogdet.logdet(a, assume=assume, block_size=BS)


@pytest.mark.parametrize("assume", ["spd", "sym"])
def test_non_finite_in_upper_triangle(spd, assume):
    # only the upper triangle is bad: the symmetry check reads it and names the entry
    a = spd.copy()
    a[10, 200] = np.nan
    with pytest.raises(NonFiniteError, match="row 10, column 200"):
        dlogdet.logdet(a, assume=assume, block_size=BS)


def test_non_finite_in_diagonal_tile(spd):
    a = spd.copy()
    a[5, 5] = np.nan
    with pytest.raises(NonFiniteError, match=r"row 5, column 5 \(tile \(0, 0\)"):
        dlogdet.logdet(a, block_size=BS)


# --------------------------------------------------------------------------------------------------------------
# not positive definite / singular
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("row", [0, 127, 128, 200, 299])
def test_indefinite_with_spd_names_global_row(row):
    a = np.eye(N)
    a[row, row] = -1.0
    with pytest.raises(NotPSDError, match=rf"global row {row}.*assume='sym'.*d=") as ei:
        dlogdet.logdet(a, assume="spd", block_size=BS)
    assert ei.value.row == row


def test_indefinite_schur_complement_names_row():
    # positive diagonal, but the 2×2 leading minor of rows (130, 131) is [[1, 2], [2, 1]]: row 131 fails
    a = np.eye(N)
    a[130, 131] = a[131, 130] = 2.0
    with pytest.raises(NotPSDError) as ei:
        dlogdet.logdet(a, block_size=BS)
    assert ei.value.row == 131
    r = dlogdet.logdet(a, assume="sym", block_size=BS)  # the suggested fix works
    assert r.sign == -1.0 and abs(r.logdet - np.log(3.0)) <= 1e-14 and tuple(r.inertia) == (N - 1, 1, 0)
    r = dlogdet.logdet(a, assume="spd", d=2.5, block_size=BS)  # and so does jitter: eigenvalues 3.5 (n-2), 5.5, 1.5
    assert abs(r.logdet - ((N - 2) * np.log(3.5) + np.log(5.5) + np.log(1.5))) <= 1e-11


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
@pytest.mark.parametrize("assume,name", [("sym", "LDL"), ("gen", "LU")])
def test_singular_before_last_tile(spd, assume, name):
    a = spd.copy()
    a[5, :] = 0.0
    a[:, 5] = 0.0
    with pytest.raises(SingularMatrixError, match=rf"zero {name} pivot at global row 5.*d=") as ei:
        dlogdet.logdet(a, assume=assume, block_size=BS)
    assert ei.value.row == 5


# --------------------------------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,hint", [(np.int64, True), (np.complex128, False), (np.float16, True),
                                        (bool, True), (object, False)])
def test_unsupported_dtypes(dtype, hint):
    a = np.eye(4).astype(dtype)
    with pytest.raises(UnsupportedDtypeError, match="float32 and float64") as ei:
        dlogdet.logdet(a)
    assert ("astype(numpy.float64)" in str(ei.value)) == hint


def test_unsupported_dtype_in_npy_file(tmp_path):
    np.save(tmp_path / "i.npy", np.eye(4, dtype=np.int32))
    with pytest.raises(UnsupportedDtypeError, match="int32"):
        dlogdet.logdet(str(tmp_path / "i.npy"))


# --------------------------------------------------------------------------------------------------------------
# files and sources
# --------------------------------------------------------------------------------------------------------------

def test_missing_npy(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        dlogdet.logdet(str(tmp_path / "missing.npy"))


def test_corrupt_npy(tmp_path):
    (tmp_path / "garbage.npy").write_bytes(b"this is not a numpy file" * 4)
    with pytest.raises(SourceError, match=r"cannot read .*garbage.npy as a .npy file"):
        dlogdet.logdet(str(tmp_path / "garbage.npy"))
    good = tmp_path / "good.npy"
    np.save(good, np.eye(50))
    (tmp_path / "truncated.npy").write_bytes(good.read_bytes()[:1000])
    with pytest.raises(SourceError, match="truncated.npy"):
        dlogdet.logdet(str(tmp_path / "truncated.npy"))


def test_unknown_path_kinds(tmp_path):
    with pytest.raises(SourceError, match="no such file or directory"):
        dlogdet.logdet(str(tmp_path / "nothing.bin"))
    (tmp_path / "a.txt").write_text("1 0\n0 1\n")
    with pytest.raises(SourceError, match="cannot tell the format"):
        dlogdet.logdet(str(tmp_path / "a.txt"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(SourceError, match="cannot open .* as a zarr array"):
        dlogdet.logdet(str(tmp_path / "empty_dir"))


def test_unusable_object():
    with pytest.raises(InputError, match="cannot use"):
        dlogdet.logdet(object())
    with pytest.raises(InputError):
        dlogdet.logdet({"a": 1})


# --------------------------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------------------------

def test_bad_assume(spd):
    with pytest.raises(InputError, match=r"assume must be one of \('spd', 'sym', 'gen'\), got 'posdef'"):
        dlogdet.logdet(spd, assume="posdef")


def test_bad_method(spd):
    with pytest.raises(InputError, match="unknown method 'magic'; available: .*exact"):
        dlogdet.logdet(spd, method="magic")


@pytest.mark.parametrize("bs", [0, -3, 2.5, True, "128"])
def test_bad_block_size(spd, bs):
    with pytest.raises(InputError, match=r"block_size must be a positive integer, got"):
        dlogdet.logdet(spd, block_size=bs)


def test_d_of_wrong_length(spd):
    with pytest.raises(InputError, match=r"d must be a scalar or a vector of length n = 300, got shape \(299,\)"):
        dlogdet.logdet(spd, d=np.ones(N - 1))
    with pytest.raises(InputError, match="d must be a scalar or a vector"):
        dlogdet.logdet(spd, d=np.ones((N, N)))
    bad = np.ones(N)
    bad[7] = np.nan
    with pytest.raises(InputError, match="d holds NaN or Inf"):
        dlogdet.logdet(spd, d=bad)


@pytest.mark.parametrize("t,match", [(np.nan, "t must be finite"), (np.inf, "t must be finite"),
                                     ("big", "t must be a real number")])
def test_bad_t(spd, t, match):
    with pytest.raises(InputError, match=match):
        dlogdet.logdet(spd, t=t)


def test_bad_scalar_d(spd):
    with pytest.raises(InputError, match="d must be finite"):
        dlogdet.logdet(spd, d=float("nan"))


def test_bad_backend(spd):
    with pytest.raises(InputError, match="backend must be one of"):
        dlogdet.logdet(spd, backend="tpu")


@pytest.mark.parametrize("budget,match", [("lots", "cannot read 'lots' as a memory size"),
                                          (-5, "must be positive"), (True, "number of bytes")])
def test_bad_budget(spd, budget, match):
    with pytest.raises(InputError, match=match):
        dlogdet.logdet(spd, budget=budget)


def test_budget_too_small(spd):
    with pytest.raises(MemoryBudgetError, match="budget"):
        dlogdet.logdet(spd, budget=1000)


def test_negative_t_makes_spd_fail(spd):
    with pytest.raises(NotPSDError, match="global row 0"):
        dlogdet.logdet(spd, t=-1.0, block_size=BS)


# --------------------------------------------------------------------------------------------------------------
# KernelSource
# --------------------------------------------------------------------------------------------------------------

def test_kernel_source_bad_kernel():
    with pytest.raises(InputError, match=r"kernel must be one of \('rbf', 'matern12', 'matern32', 'matern52'\)"):
        dlogdet.KernelSource(np.ones((4, 2)), kernel="gaussian")


@pytest.mark.parametrize("kw", [{"lengthscale": -1.0}, {"lengthscale": 0.0}, {"variance": -2.0},
                                {"jitter": -1e-3}, {"lengthscale": float("nan")}])
def test_kernel_source_bad_parameters(kw):
    with pytest.raises(InputError, match="need lengthscale > 0, variance > 0, jitter >= 0"):
        dlogdet.KernelSource(np.ones((4, 2)), **kw)


def test_kernel_source_bad_points():
    with pytest.raises(InputError, match="points x must have shape"):
        dlogdet.KernelSource(np.ones((0, 2)))
    with pytest.raises(InputError, match="points x hold NaN or Inf"):
        dlogdet.KernelSource(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(UnsupportedDtypeError):
        dlogdet.KernelSource(np.ones((4, 2)), dtype=np.int32)
