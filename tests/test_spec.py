"""Source specs (``kernel:...``, ``ntk:...``, paths): one parser that every command and ``as_source`` use.

A spec's matrix is compared with the one built by hand, tile for tile; through the command line its log det is
compared with ``numpy.linalg.slogdet`` of that dense matrix (1e-9 relative: well-conditioned kernels).
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

import dlogdet
from dlogdet.cli import main
from dlogdet.core.errors import InputError, SourceError
from dlogdet.sources import spec as S


def by_hand(kernel="matern32", n=300, d=2, lengthscale=0.2, variance=1.0, jitter=1e-8, seed=0):
    x = np.random.default_rng(seed).uniform(size=(n, d))
    return dlogdet.KernelSource(x, kernel, lengthscale=lengthscale, variance=variance, jitter=jitter)


def test_kernel_spec_is_the_kernel_built_by_hand():
    src = S.source_from_spec("kernel:rbf:n=120,d=3,lengthscale=0.5,variance=2,jitter=1e-3,seed=4")
    ref = by_hand("rbf", 120, 3, 0.5, 2.0, 1e-3, 4)
    np.testing.assert_array_equal(src.dense(), ref.dense())
    np.testing.assert_array_equal(S.source_from_spec("kernel:matern52").dense()[:5, :5], by_hand("matern52", 4000)
                                  .tile(0, 5, 0, 5))                          # the defaults: n=4000, d=2, seed 0


def test_as_source_and_logdet_take_specs_and_paths(tmp_path):
    a = by_hand(n=200).dense()
    np.save(tmp_path / "a.npy", a)
    assert isinstance(dlogdet.as_source("kernel:matern32:n=200"), dlogdet.KernelSource)
    assert isinstance(S.source_from_spec(str(tmp_path / "a.npy")), dlogdet.NpySource)
    assert isinstance(S.source_from_spec(tmp_path / "a.npy"), dlogdet.NpySource)      # a PathLike
    ref = np.linalg.slogdet(a)[1]
    assert dlogdet.logdet("kernel:matern32:n=200").logdet == pytest.approx(ref, rel=1e-9)
    with pytest.raises(SourceError, match="no such file"):
        S.source_from_spec(str(tmp_path / "kernelish:missing.npy"))                  # not a kind: a path


@pytest.mark.parametrize("text, match", [
    ("kernel:nope", "NAME one of rbf"),
    ("kernel:rbf:n=500,colour=3", "key=value with keys n, d"),
    ("kernel:rbf:n=many", "cannot read n='many'"),
    ("kernel:rbf:n=0", "n >= 1"),
    ("ntk:mlp", "an NTK spec is ntk:MODEL:DATASET"),
    ("ntk:transformer:digits", "mlp, factorized, cnn, resnet"),
])
def test_bad_specs_name_the_fix(text, match):
    with pytest.raises(InputError, match=match):
        S.source_from_spec(text)


def test_a_new_kind_is_one_module_and_one_registry_line(monkeypatch):
    mod = types.ModuleType("dlogdet_test_spec_diag")
    mod.USAGE = "diag:N (the identity times 2)"
    mod.build = lambda spec: dlogdet.ArraySource(2.0 * np.eye(int(spec.positional(1, "diag:N")[0])))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(S.KINDS, "diag", mod.__name__)
    assert dlogdet.logdet("diag:10").logdet == pytest.approx(10 * np.log(2.0))
    assert "diag:N (the identity times 2)" in S.usage()


@pytest.mark.parametrize("argv", [
    ["logdet", "kernel:matern32:n=300", "--block-size", "100", "--json"],
    ["logdet", "kernel:matern32:n=300", "--method", "slq", "--seed", "0", "--rtol", "0.01", "--json"],
])
def test_every_matrix_command_takes_a_spec(argv, capsys):
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    ref = np.linalg.slogdet(by_hand(n=300).dense())[1]
    tol = 1e-9 * abs(ref) if "slq" not in argv else out["diagnostics"]["error_bar"]
    assert abs(out["logdet"] - ref) <= tol


def test_spectrum_command_takes_a_spec(capsys):
    assert main(["spectrum", "kernel:matern32:n=400", "--n0", "100", "--seed", "0", "--degrees", "1,2",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 400 and out["n0"] == 100 and out["laws"][0]["n"] == 400


def test_ntk_spec_takes_the_implementation():
    pytest.importorskip("jax")
    a = S.source_from_spec("ntk:mlp:digits:n=8,outputs=trace,implementation=jacobian")
    b = S.source_from_spec("ntk:mlp:digits:n=8,outputs=trace")
    assert a.implementation == "jacobian" and b.implementation != "jacobian"
    np.testing.assert_allclose(a.dense(), b.dense(), rtol=1e-9, atol=1e-12 * np.abs(a.dense()).max())
