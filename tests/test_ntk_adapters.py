"""The one-line adapters: Flax NNX (with BatchNorm), and pickling of adapted sources (what Dask workers receive).

Tiles are compared with the jacrev reference of tests/test_ntk_structured.py (1e-10 relative in float64).
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from dlogdet.core.errors import InputError  # noqa: E402
from dlogdet.ntk import NTKSource  # noqa: E402

from .test_ntk_structured import reference, rel_err  # noqa: E402

nnx = pytest.importorskip("flax.nnx")
linen = pytest.importorskip("flax.linen")
eqx = pytest.importorskip("equinox")


class NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(3, 4, rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.out = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(jax.nn.tanh(self.bn(self.dense(x)))))


class LinenNet(linen.Module):
    @linen.compact
    def __call__(self, x, train: bool = True):
        x = linen.BatchNorm(use_running_average=not train)(linen.Dense(4)(x))
        return linen.Dense(2)(jax.nn.tanh(x))


def nnx_model():
    m = NNXNet(nnx.Rngs(0))
    m.bn.mean[...] = m.bn.mean[...] + 0.3              # running statistics as after training
    m.bn.var[...] = m.bn.var[...] * 1.7
    return m


X = np.random.default_rng(0).standard_normal((5, 3))


def test_nnx_batchnorm_eval_mode_equals_jacrev():
    m = nnx_model()
    with pytest.raises(InputError, match=r"training mode.*model\.eval\(\)"):
        NTKSource.from_nnx(m, X)                           # training mode: batch statistics
    m.eval()
    src = NTKSource.from_nnx(m, X, outputs="full", implementation="structured")
    fixed = [e["path"] for e in src.explain()["leaves"] if not e["trainable"]]
    assert fixed == ["params['state']['bn']['mean']", "params['state']['bn']['var']"]
    K = src.dense()
    assert rel_err(K, reference(src)) < 1e-10
    shipped(src, K)


def test_linen_apply_kwargs_and_batch_stats_fixed():
    v = LinenNet().init(jax.random.PRNGKey(0), X, train=False)
    v = {"params": v["params"], "batch_stats": jax.tree_util.tree_map(lambda a: a + 0.5, v["batch_stats"])}
    src = NTKSource.from_flax(LinenNet(), v, X, apply_kwargs={"train": False}, outputs="trace")
    assert [e["trainable"] for e in src.explain()["leaves"]].count(False) == 2
    K = src.dense()
    assert rel_err(K, reference(src)) < 1e-10
    shipped(src, K)
    with pytest.raises(InputError, match="batch_stats.*use_running_average=True"):
        NTKSource.from_flax(LinenNet(), v, X)               # train=True by default: BatchNorm would update
    with pytest.raises(InputError, match="'params' collection"):
        NTKSource.from_flax(LinenNet(), v["params"]["Dense_0"], X)


def shipped(src, K):
    """A worker receives the pickled source: the same tiles, the same token (the tile store's resume key). As Dask
    ships it: pickle, or cloudpickle where pickle cannot (Equinox's MLP holds jax.nn.relu, which plain pickle
    refuses: the name refers to its jit wrapper)."""
    from distributed.protocol.pickle import dumps, loads

    back = loads(dumps(src))
    assert back.token() == src.token()
    assert np.array_equal(back.dense(), K)


def test_equinox_source_ships():
    model = eqx.nn.MLP(3, 2, 4, 1, key=jax.random.PRNGKey(3))
    src = NTKSource.from_equinox(model, X, outputs="trace")
    shipped(src, src.dense())
