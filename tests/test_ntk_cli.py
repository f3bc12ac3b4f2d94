"""`dlogdet ntk` end to end: the CLI's NTK log-determinant equals LAPACK's on the same NTK built by the API."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")
pytest.importorskip("mnist1d")

from dlogdet.cli import main  # noqa: E402
from dlogdet.ntk import NTKSource, load_dataset, mlp, train  # noqa: E402


def reference(n, outputs, steps, d, seed=0):
    x, y = load_dataset("mnist1d", n, seed=seed)
    f, params = mlp((x.shape[1], 512, 512, int(y.max()) + 1), seed=seed)
    if steps:
        params, _ = train(f, params, x, y, steps=steps, seed=seed)
    k = NTKSource(f, params, x, outputs=outputs).dense()
    return np.linalg.slogdet(k + d * np.eye(k.shape[0]))


@pytest.mark.parametrize("outputs,n,steps", [("trace", 120, 0), ("trace", 120, 20), ("full", 12, 0)])
def test_ntk_cli_matches_lapack(capsys, outputs, n, steps):
    d = 1e-8
    rc = main(["ntk", "--model", "mlp", "--dataset", "mnist1d", "--n", str(n), "--outputs", outputs,
               "--train-steps", str(steps), "--d", str(d), "--block-size", "64", "--json", "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    sign, ref = reference(n, outputs, steps, d)
    # same NTK entries (same model, data, training and float64 JAX): the engine's backward error only
    assert out["sign"] == sign and abs(out["logdet"] - ref) <= 1e-8 * abs(ref)
    assert out["ntk"]["m"] == (n * 10 if outputs == "full" else n) and out["n"] == out["ntk"]["m"]
    if steps:
        assert out["ntk"]["final_loss"] is not None


def test_ntk_cli_bad_input(capsys):
    assert main(["ntk", "--dataset", "digits", "--n", "5000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1797" in err[0]
    assert main(["ntk", "--train-steps", "-3"]) == 2


# the convolutional models in the slow run (test_every_registered_model_through_a_spec builds each in the default one)
@pytest.mark.parametrize("model,dataset,factory", [
    ("factorized", "mnist1d", "factorized_mlp"),
    pytest.param("cnn", "digits", "cnn1d", marks=pytest.mark.slow),
    pytest.param("resnet", "digits", "resnet1d", marks=pytest.mark.slow)])
def test_ntk_cli_other_models(capsys, model, dataset, factory):
    rc = main(["ntk", "--model", model, "--dataset", dataset, "--n", "40", "--d", "1e-8", "--json",
               "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["n"] == 40 and out["sign"] == 1.0
    assert out["ntk"]["model"] == model and out["ntk"]["dataset"] == dataset
    # the same model, data and seed built by hand: its dense NTK (Jacobian contraction) through LAPACK
    import dlogdet.ntk as ntk

    x, y = ntk.load_dataset(dataset, 40, seed=0)
    classes = int(y.max()) + 1
    if model == "factorized":
        f, params = ntk.factorized_mlp((x.shape[1], 512, 512, classes), seed=0)
    else:
        f, params = getattr(ntk, factory)(outputs=classes, length=x.shape[1], seed=0)
    K = ntk.NTKSource(f, params, x, outputs="trace", implementation="jacobian").dense()
    sign, ref = np.linalg.slogdet(K + 1e-8 * np.eye(40))
    assert sign == 1 and abs(out["logdet"] - ref) <= 1e-8 * abs(ref)


@pytest.mark.parametrize("model", sorted(__import__("dlogdet.ntk.registry", fromlist=["MODELS"]).MODELS))
def test_every_registered_model_through_a_spec(model):
    # `dlogdet extrapolate ntk:MODEL:...` and `dlogdet ntk --model MODEL` build through the same registry: the
    # source a spec gives equals the one built by hand from that registry entry, tile for tile
    from dlogdet.cli import source_from_spec
    from dlogdet.ntk import load_dataset
    from dlogdet.ntk.registry import build_model

    src = source_from_spec(f"ntk:{model}:digits:n=12,outputs=trace,seed=1")
    x, y = load_dataset("digits", 12, seed=1)
    f, params = build_model(model, x.shape[1], int(y.max()) + 1, seed=1)
    ref = NTKSource(f, params, x, outputs="trace", implementation="jacobian").dense()
    assert src.n == 12
    np.testing.assert_allclose(src.tile(0, 12, 0, 12), ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_unknown_model_in_a_spec_names_the_registered_ones():
    from dlogdet.cli import source_from_spec
    from dlogdet.core.errors import InputError

    with pytest.raises(InputError, match="mlp, factorized, cnn, resnet"):
        source_from_spec("ntk:transformer:digits:n=12")
