"""``ntk:MODEL:DATASET[:n=N,outputs=full|trace,implementation=I,train_steps=K,seed=S]``: the empirical NTK of a
model of :data:`dlogdet.ntk.registry.MODELS` on N points of a local data set (:data:`dlogdet.ntk.DATASETS`),
optionally trained first; also what ``dlogdet ntk`` builds (:func:`build_ntk`). JAX is imported only when a source
is built."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

USAGE = ("ntk:MODEL:DATASET[:n=N,outputs=full|trace,implementation=I,train_steps=K,seed=S] (the NTK of a model "
         "of the zoo on a local data set)")

#: Defaults of the options (why: 1000 points keep a full-output NTK of 10 outputs at 10,000 rows, an in-memory
#: size; untrained, so that a spec costs no training unless asked).
DEFAULTS = {"n": 1000, "outputs": "full", "implementation": "auto", "train_steps": 0, "seed": 0}
TYPES = {"n": int, "outputs": str, "implementation": str, "train_steps": int, "seed": int}


@dataclass(frozen=True)
class NTKBuild:
    """An NTK source and how it was made: the training history (None untrained) and its seconds."""

    source: Any
    history: dict | None
    train_time: float


def build_ntk(model: str, dataset: str, n: int, *, outputs: str = "full", implementation: str = "auto",
              train_steps: int = 0, seed: int = 0) -> NTKBuild:
    """Load ``n`` points of ``dataset``, build the registered ``model`` for them, train it ``train_steps`` Adam
    steps, and return its NTK source."""
    from ... import ntk
    from ...core.errors import InputError
    from ...ntk.registry import MODELS, build_model

    if model not in MODELS:
        raise InputError(f"unknown NTK model {model!r}: choose one of {', '.join(MODELS)}")
    if train_steps < 0:
        raise InputError(f"train_steps must be >= 0, got {train_steps}")
    x, y = ntk.load_dataset(dataset, n, seed=seed)
    f, params = build_model(model, x.shape[1], int(np.max(y)) + 1, seed=seed)
    history = None
    t0 = time.perf_counter()
    if train_steps:
        params, history = ntk.train(f, params, x, y, steps=train_steps, seed=seed)
    t_train = time.perf_counter() - t0
    return NTKBuild(ntk.NTKSource(f, params, x, outputs=outputs, implementation=implementation), history, t_train)


def build(spec):
    """The NTK source of an ``ntk:`` spec."""
    from ...ntk.registry import MODELS

    model, dataset = spec.positional(2, "an NTK spec is ntk:MODEL:DATASET[:n=...,outputs=...] with MODEL one of "
                                        + ", ".join(MODELS))
    o = spec.options(2, TYPES, DEFAULTS)
    return build_ntk(model, dataset, o["n"], outputs=o["outputs"], implementation=o["implementation"],
                     train_steps=o["train_steps"], seed=o["seed"]).source
