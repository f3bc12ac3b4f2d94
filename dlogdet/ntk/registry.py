"""The named models that command-line specs and ``dlogdet ntk --model`` build: one line per model.

A builder takes the data's input width, the number of classes and a seed, and returns ``(f, params)`` with
``f(params, x)`` the model. A new model is its module plus one line in :data:`MODELS`.
"""

from __future__ import annotations

from typing import Any, Callable

from ..core.errors import InputError

Builder = Callable[[int, int, int], tuple[Any, Any]]


def _mlp(features: int, classes: int, seed: int):
    from .models import mlp
    return mlp((features, 512, 512, classes), seed=seed)


def _factorized(features: int, classes: int, seed: int):
    from .models import factorized_mlp
    return factorized_mlp((features, 512, 512, classes), seed=seed)


def _cnn(features: int, classes: int, seed: int):
    from .models import cnn1d
    return cnn1d(outputs=classes, length=features, seed=seed)


def _resnet(features: int, classes: int, seed: int):
    from .models import resnet1d
    return resnet1d(outputs=classes, length=features, seed=seed)


#: name -> builder(features, classes, seed) -> (f, params)
MODELS: dict[str, Builder] = {
    "mlp": _mlp,                  # 512-512 MLP
    "factorized": _factorized,    # the same with factorized dense layers (rank 64)
    "cnn": _cnn,                  # 1-D CNN, two 16-channel convolutions
    "resnet": _resnet,            # 1-D ResNet, two residual blocks of width 16
}


def build_model(name: str, features: int, classes: int, seed: int = 0):
    """``(f, params)`` of the registered model ``name`` for inputs of ``features`` values and ``classes`` outputs."""
    try:
        builder = MODELS[name]
    except KeyError:
        raise InputError(f"unknown NTK model {name!r}: choose one of {', '.join(MODELS)}") from None
    return builder(int(features), int(classes), int(seed))
