"""Data sets for NTK experiments, made or shipped locally: nothing is downloaded, ever.

``load_dataset(name, n, seed=...)`` returns ``(x, y)``: features ``x`` of shape (n, d) and integer class labels
``y`` of shape (n,) in ``0 … 9``, deterministic given ``(name, n, seed)``.

``"mnist1d"`` (d = 40)
    MNIST-1D (Greydanus 2020) *generated* by the ``mnist1d`` package's own generator,
    ``mnist1d.data.make_dataset(args)`` with the package's default arguments
    (``mnist1d.data.get_dataset_args()``) except ``num_samples`` (n rounded up to a multiple of 10, then cut to n),
    ``train_split=1`` and ``seed``. Its ``get_dataset`` is never called: that one downloads a pickle.
    Any n. The generator seeds NumPy's *global* RNG; the global state (``numpy.random`` and ``random``) is
    saved before and restored after, under a lock, so callers' random streams are not disturbed.
``"digits"`` (d = 64)
    scikit-learn's 8×8 handwritten digits (``sklearn.datasets.load_digits``, which ships its 1797 images inside
    the package), pixels scaled from 0…16 to [0, 1]. n ≤ 1797; for n < 1797 a random subset drawn with ``seed``
    (without replacement), for n = 1797 all images in their stored order.
``"synthetic"`` (d = 16)
    A Gaussian mixture of 10 classes: class means drawn N(0, 4·I), points = mean of their class + N(0, I)
    (classes well separated but overlapping a little); labels balanced (n // 10 or n // 10 + 1 per class) and
    shuffled. Any n; no dependency.

Standardization (``standardize=True``, the default): each feature (column) is centered to mean 0 and divided by
its standard deviation over the n returned points (population std, ``ddof=0``); a constant column (e.g. the
always-blank corner pixels of ``digits``) is only centered, i.e. it becomes all zeros. So every column has
mean 0 and std 1 or 0. The statistics are those of the returned set itself (no held-out split is involved).
With ``standardize=False`` the features are returned on their native scale: digits in [0, 1], MNIST-1D as the
package normalizes it (whole-set mean 0, std 1), synthetic as drawn.

The optional packages (``mnist1d``, ``scikit-learn``) are imported inside the loaders only.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ..core.errors import InputError

DATASETS = ("mnist1d", "digits", "synthetic")
#: number of features of each data set
N_FEATURES = {"mnist1d": 40, "digits": 64, "synthetic": 16}
N_CLASSES = 10
DIGITS_MAX = 1797

_GLOBAL_RNG_LOCK = threading.Lock()


def load_dataset(name: str, n: int, *, seed: int = 0, dtype=np.float64, standardize: bool = True):
    """``(x, y)``: ``x`` of shape (n, d) and ``dtype``, ``y`` int64 labels of shape (n,); see the module docs.

    Parameters
    ----------
    name : {"mnist1d", "digits", "synthetic"}
    n : int
        Number of points, >= 1 (at most 1797 for ``"digits"``).
    seed : int
        Non-negative; the same seed gives identical arrays.
    dtype : float64 or float32
    standardize : bool
        Per-feature z-scoring over the returned points (see the module docstring).
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}: choose one of {DATASETS}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n must be an integer >= 1 (points of dataset {name!r}; datasets: {DATASETS}), got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise InputError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise InputError(f"dtype must be float64 or float32, got {dtype}")
    n, seed = int(n), int(seed)
    if name == "digits" and n > DIGITS_MAX:
        raise InputError(f"dataset 'digits' has {DIGITS_MAX} images: n must be at most {DIGITS_MAX}, got {n} "
                         "(use 'mnist1d' or 'synthetic' for any n)")
    x, y = {"mnist1d": _mnist1d, "digits": _digits, "synthetic": _synthetic}[name](n, seed)
    x = np.asarray(x, dtype=np.float64)
    if standardize:
        x = standardize_features(x)
    return np.ascontiguousarray(x, dtype=dtype), np.ascontiguousarray(y, dtype=np.int64)


def standardize_features(x: np.ndarray) -> np.ndarray:
    """Columns centered to mean 0 and scaled to std 1 (``ddof=0``); constant columns are only centered."""
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    sd = np.where(sd > 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0))), sd, 1.0)
    return (x - mu) / sd


def _mnist1d(n: int, seed: int):
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
        raise InputError("dataset 'mnist1d' needs the mnist1d package (pip install mnist1d); it is generated "
                         f"locally, never downloaded: {e}") from e
    import random

    args = get_dataset_args()                    # an ObjectView of the package defaults
    args.num_samples = 10 * math.ceil(n / 10)    # the generator makes num_samples // 10 per class
    args.train_split = 1.0
    args.seed = seed
    args.url = None                              # not used by make_dataset; make sure nothing could fetch it
    with _GLOBAL_RNG_LOCK:
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            data = make_dataset(args)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
    x, y = np.asarray(data["x"])[:n], np.asarray(data["y"])[:n]
    if x.shape != (n, N_FEATURES["mnist1d"]):
        raise InputError(f"mnist1d generator returned x of shape {x.shape}, expected {(n, N_FEATURES['mnist1d'])}")
    return x, y


def _digits(n: int, seed: int):
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise InputError(f"dataset 'digits' needs scikit-learn (pip install scikit-learn): {e}") from e
    d = load_digits()                            # shipped inside scikit-learn: no download
    x = np.asarray(d.data, dtype=np.float64) / 16.0
    y = np.asarray(d.target)
    if n < x.shape[0]:
        idx = np.random.default_rng(seed).choice(x.shape[0], size=n, replace=False)
        x, y = x[idx], y[idx]
    return x, y


def _synthetic(n: int, seed: int):
    d = N_FEATURES["synthetic"]
    rng = np.random.default_rng(seed)
    means = 2.0 * rng.standard_normal((N_CLASSES, d))
    y = rng.permutation(np.arange(n) % N_CLASSES)
    x = means[y] + rng.standard_normal((n, d))
    return x, y
