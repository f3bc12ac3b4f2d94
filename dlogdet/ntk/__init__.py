"""Empirical neural tangent kernels as tile sources: ``NTKSource(f, params, x)`` for any JAX model, and a small zoo.

JAX is needed only here and is imported lazily: ``import dlogdet.ntk`` works without JAX; building a source or a
model's parameters with it does not. Flax and Equinox models enter through ``NTKSource.from_flax``,
``NTKSource.from_nnx`` and ``NTKSource.from_equinox``.
"""

from __future__ import annotations

from .models import ACTIVATIONS, MLP, mlp
from .source import IMPLEMENTATIONS, JACOBIAN_BYTES, OUTPUTS, NTKSource, jax_context
from .data import DATASETS, load_dataset
from .train import load_params, save_params, train

__all__ = ["NTKSource", "MLP", "mlp", "ACTIVATIONS", "IMPLEMENTATIONS", "OUTPUTS", "JACOBIAN_BYTES", "jax_context",
           "DATASETS", "load_dataset", "train", "save_params", "load_params"]

from .models import CNN1D, FactorizedMLP, ResNet1D, cnn1d, factorized_mlp, resnet1d  # noqa: E402

__all__ += ["FactorizedMLP", "factorized_mlp", "CNN1D", "cnn1d", "ResNet1D", "resnet1d"]
