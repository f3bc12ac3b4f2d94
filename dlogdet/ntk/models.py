"""Model zoo in the ``f(params, x)`` convention: plain JAX, picklable, with the layer structure exposed.

The models are small classes with ``__call__(params, x)``, not closures: a source that holds one is pickled into
the task graph and shipped to the workers, and a class pickles by reference to this module. JAX is imported only
when a model is initialised or called, so importing this module (and ``dlogdet``) never imports JAX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

ACTIVATIONS = ("relu", "tanh", "erf")


def _activation(name: str):
    import jax
    import jax.numpy as jnp

    if name == "relu":
        return jax.nn.relu
    if name == "tanh":
        return jnp.tanh
    return jax.scipy.special.erf


@dataclass(frozen=True)
class MLP:
    r"""Fully connected network in the NTK parameterization: z_l = h_l·W_l/√d_l + β·b_l, h_{l+1} = φ(z_l).

    ``h_0 = x``; the last pre-activation ``z_L`` is the output (no activation on it). The weights ``W_l``
    (d_l × d_{l+1}) and biases ``b_l`` are initialised N(0, 1): the 1/√d_l factor in the forward pass keeps the
    pre-activations O(1) at any width, which is what makes the infinite-width NTK limit exist (Jacot et al.
    2018). β = 0.1 by default, the usual small bias scale of neural-tangents' examples (it keeps the bias terms
    from dominating the kernel of a narrow network).

    Parameters
    ----------
    sizes : tuple of int
        Layer widths, input first and output last, e.g. ``(40, 512, 512, 10)``.
    activation : {"relu", "tanh", "erf"}
        Non-linearity of the hidden layers.
    beta : float
        Bias scale β.

    Calling ``mlp(params, x)`` with ``x`` of shape (n, sizes[0]) returns (n, sizes[-1]). ``params`` is a list of
    ``{"W": (d_in, d_out), "b": (d_out,)}`` dicts, one per layer.
    """

    sizes: tuple[int, ...]
    activation: str = "relu"
    beta: float = 0.1

    def __post_init__(self):
        sizes = tuple(int(s) for s in self.sizes)
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise InputError(f"MLP sizes must hold at least an input and an output width, all >= 1; got {self.sizes}")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "beta", float(self.beta))

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    def init(self, seed: int = 0, dtype=np.float64) -> list[dict[str, np.ndarray]]:
        """N(0, 1) weights and biases as NumPy arrays (deterministic given ``seed``)."""
        rng = np.random.default_rng(seed)
        return [{"W": rng.standard_normal((a, b)).astype(dtype), "b": rng.standard_normal(b).astype(dtype)}
                for a, b in zip(self.sizes[:-1], self.sizes[1:])]

    def __call__(self, params, x):
        out, _ = self.forward(params, x)
        return out

    def forward(self, params, x, perturbations=None):
        """(output, layer inputs ``[h_0, …, h_{L−1}]``); ``perturbations[l]`` is added to ``z_l`` if given.

        Differentiating the output with respect to the perturbation at zero gives δ_l = ∂f/∂z_l, the factor the
        structured NTK algorithm needs beside h_l.
        """
        phi = _activation(self.activation)
        h = x
        hs = []
        for l, layer in enumerate(params):
            hs.append(h)
            z = h @ layer["W"] / math.sqrt(self.sizes[l]) + self.beta * layer["b"]
            if perturbations is not None:
                z = z + perturbations[l]
            h = phi(z) if l < self.n_layers - 1 else z
        return h, hs


def mlp(sizes=(40, 512, 512, 10), activation: str = "relu", seed: int = 0, dtype=np.float64, beta: float = 0.1):
    """An :class:`MLP` and its initial parameters: ``f, params = mlp((8, 16, 3))``; then ``f(params, x)``.

    The parameters are NumPy arrays (they pickle and hash cheaply; JAX converts them on use).
    """
    f = MLP(tuple(sizes), activation, beta)
    return f, f.init(seed, dtype)
