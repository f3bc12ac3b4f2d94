"""Data sets without downloads, quick training with optax, and pickle-free parameter files (dlogdet.ntk)."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys

import numpy as np
import pytest

import dlogdet  # noqa: F401
from dlogdet.core.errors import InputError, SourceError
from dlogdet.ntk.data import DATASETS, DIGITS_MAX, N_FEATURES, load_dataset


def _need(name):
    return pytest.importorskip(name)


# ---- data --------------------------------------------------------------------------------------------------------

@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _skip_missing(name):
    if name == "mnist1d":
        _need("mnist1d")
    elif name == "digits":
        _need("sklearn")


@pytest.mark.parametrize("name", DATASETS)
def test_shapes_and_standardization(name, no_network):
    _skip_missing(name)
    x, y = load_dataset(name, 137, seed=3)
    assert x.shape == (137, N_FEATURES[name]) and x.dtype == np.float64
    assert y.shape == (137,) and y.dtype == np.int64 and y.min() >= 0 and y.max() <= 9
    assert len(np.unique(y)) == 10
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-12)
    sd = x.std(axis=0)
    assert np.all((np.abs(sd - 1) < 1e-12) | (sd == 0)), sd      # std 1, or 0 for a constant column
    x32, y32 = load_dataset(name, 137, seed=3, dtype=np.float32)
    assert x32.dtype == np.float32 and np.array_equal(y32, y)
    np.testing.assert_allclose(x32, x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", DATASETS)
def test_deterministic(name, no_network):
    _skip_missing(name)
    a = load_dataset(name, 50, seed=7)
    b = load_dataset(name, 50, seed=7)
    c = load_dataset(name, 50, seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_mnist1d_generated_locally_any_n(no_network):
    _need("mnist1d")
    np.random.seed(123)
    random.seed(123)
    before_np, before_py = np.random.get_state(), random.getstate()
    for n in (1, 9, 10, 11, 1003):
        x, y = load_dataset("mnist1d", n, seed=1)
        assert x.shape == (n, 40) and y.shape == (n,)
    # the package seeds NumPy's global RNG: load_dataset restores the caller's state
    after_np = np.random.get_state()
    assert np.array_equal(before_np[1], after_np[1]) and before_np[2:] == after_np[2:]
    assert random.getstate() == before_py
    # a prefix of a larger draw is not promised, but the labels are balanced up to one per class
    x, y = load_dataset("mnist1d", 1000, seed=1)
    assert np.array_equal(np.bincount(y), np.full(10, 100))
    raw, _ = load_dataset("mnist1d", 1000, seed=1, standardize=False)
    assert abs(raw.mean()) < 1e-12 and abs(raw.std() - 1) < 1e-12      # the package's whole-set normalization


def test_digits_limits(no_network):
    _need("sklearn")
    x, y = load_dataset("digits", DIGITS_MAX, standardize=False)
    assert x.shape == (1797, 64) and x.min() == 0.0 and x.max() == 1.0
    assert np.array_equal(y[:10], np.arange(10))                          # all images, stored order
    x, _ = load_dataset("digits", 200, seed=0, standardize=False)
    assert x.min() >= 0 and x.max() <= 1
    with pytest.raises(InputError, match="at most 1797"):
        load_dataset("digits", 1798)


def test_bad_dataset_arguments():
    with pytest.raises(InputError, match="mnist1d.*digits.*synthetic"):
        load_dataset("mnist", 10)
    for n in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="mnist1d.*digits.*synthetic"):
            load_dataset("synthetic", n)
    with pytest.raises(InputError, match="seed"):
        load_dataset("synthetic", 10, seed=-1)
    with pytest.raises(InputError, match="dtype"):
        load_dataset("synthetic", 10, dtype=np.int32)


# ---- training and parameter files --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    _need("jax")
    _need("optax")
    _need("mnist1d")
    from dlogdet.ntk import mlp, train

    x, y = load_dataset("mnist1d", 256, seed=0)
    f, p0 = mlp((40, 64, 64, 10), seed=0)
    p1, hist = train(f, p0, x, y, steps=100, lr=1e-2, batch=128, seed=0)
    return f, p0, p1, hist, x, y


def test_training_decreases_loss_and_changes_ntk(trained):
    from dlogdet.ntk import NTKSource

    f, p0, p1, hist, x, y = trained
    assert hist["loss"].shape == (100,) and np.all(np.isfinite(hist["loss"]))
    assert hist["loss_final"] < 0.5 * hist["loss_initial"], hist      # 2.45 -> 0.80 here
    assert hist["loss"][-10:].mean() < hist["loss"][:10].mean()
    assert hist["accuracy_final"] > hist["accuracy_initial"]
    # same structure, NumPy leaves, input dtype; the input params are untouched
    assert isinstance(p1, list) and len(p1) == 3
    for a, b in zip(p0, p1):
        assert set(b) == {"W", "b"}
        for k in ("W", "b"):
            assert type(b[k]) is np.ndarray and b[k].shape == a[k].shape and b[k].dtype == a[k].dtype
    p0_again = type(f)((40, 64, 64, 10)).init(0)
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(p0, p0_again) for k in ("W", "b"))
    k0 = NTKSource(f, p0, x[:12], outputs="trace").tile(0, 12, 0, 12)
    k1 = NTKSource(f, p1, x[:12], outputs="trace").tile(0, 12, 0, 12)
    assert np.linalg.norm(k1 - k0) > 1e-3 * np.linalg.norm(k0)


def test_training_is_deterministic(trained):
    from dlogdet.ntk import train

    f, p0, p1, hist, x, y = trained
    p1b, hist_b = train(f, p0, x, y, steps=100, lr=1e-2, batch=128, seed=0)
    assert np.array_equal(hist["loss"], hist_b["loss"])
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(p1, p1b) for k in ("W", "b"))


def test_train_checks_output_width():
    _need("jax")
    _need("optax")
    from dlogdet.ntk import mlp, train

    f, p = mlp((16, 8, 3))
    x, y = load_dataset("synthetic", 40)
    with pytest.raises(InputError, match="3 outputs.*10"):
        train(f, p, x, y, steps=1)
    with pytest.raises(InputError, match="y must"):
        train(f, p, x, y[:-1], steps=1)
    with pytest.raises(InputError, match="lr"):
        train(f, p, x, y % 3, steps=1, lr=0)
    _, hist = train(f, p, x, y % 3, steps=3, batch=1000)          # batch larger than n: one full batch
    assert hist["batch"] == 40 and hist["loss"].shape == (3,)


def test_save_load_roundtrip(trained, tmp_path):
    from dlogdet.ntk import NTKSource, load_params, save_params

    f, p0, p1, hist, x, y = trained
    path = tmp_path / "mlp.npz"
    save_params(path, p1, f)
    with np.load(path, allow_pickle=False) as z:                      # plain npz, readable without pickle
        meta = json.loads(str(z["__dlogdet_params__"][()]))
        assert meta["model"] == repr(f)
        assert [e["path"] for e in meta["leaves"]] == ["[0]['W']", "[0]['b']", "[1]['W']", "[1]['b']",
                                                      "[2]['W']", "[2]['b']"]
        assert z["[1]['W']"].shape == (64, 64)
    q = load_params(path, f)
    assert isinstance(q, list) and len(q) == 3
    assert all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for a, b in zip(p1, q) for k in ("W", "b"))
    k1 = NTKSource(f, p1, x[:10]).tile(0, 100, 0, 100)
    kq = NTKSource(f, q, x[:10]).tile(0, 100, 0, 100)
    assert np.array_equal(k1, kq)


def test_load_refuses_other_model(trained, tmp_path):
    from dlogdet.ntk import MLP, load_params, save_params

    f, p0, p1, hist, x, y = trained
    path = tmp_path / "mlp.npz"
    save_params(path, p1, f)
    with pytest.raises(InputError, match=r"leaf \[0\]\['W'\].*\(40, 32\).*\(40, 64\)"):
        load_params(path, MLP((40, 32, 64, 10)))
    with pytest.raises(InputError, match=r"leaf \[3\]\['W'\] is missing"):
        load_params(path, MLP((40, 64, 64, 64, 10)))
    with pytest.raises(InputError, match="saved for the model.*tanh"):
        load_params(path, MLP((40, 64, 64, 10), activation="tanh"))
    with pytest.raises(InputError, match="do not match"):
        save_params(tmp_path / "x.npz", p1, MLP((40, 32, 10)))


def test_load_corrupt_files(trained, tmp_path):
    from dlogdet.ntk import load_params, save_params

    f, p0, p1, hist, x, y = trained
    good = tmp_path / "good.npz"
    save_params(good, p1, f)
    data = good.read_bytes()
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all" * 10)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.ones(3))
    for p in (truncated, garbage):
        with pytest.raises(SourceError, match="cannot read parameter file"):
            load_params(p, f)
    with pytest.raises(SourceError, match="not a dlogdet parameter file"):
        load_params(foreign, f)
    with pytest.raises(SourceError, match="does not exist"):
        load_params(tmp_path / "missing.npz", f)
    # pickled object arrays are refused, never unpickled
    obj = tmp_path / "obj.npz"
    np.savez(obj, __dlogdet_params__=np.array([{"x": 1}], dtype=object))
    with pytest.raises(SourceError):
        load_params(obj, f)


def test_import_dlogdet_ntk_imports_no_optional_packages():
    code = ("import dlogdet, dlogdet.ntk, dlogdet.ntk.data, dlogdet.ntk.train, sys; "
            "bad = [m for m in ('jax', 'optax', 'mnist1d', 'sklearn') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
