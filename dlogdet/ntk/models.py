"""Model zoo in the ``f(params, x)`` convention: plain JAX, picklable, with the layer structure exposed.

The models are small classes with ``__call__(params, x)``, not closures: a source that holds one is pickled into
the task graph and shipped to the workers, and a class pickles by reference to this module. JAX is imported only
when a model is initialised or called, so importing this module (and ``dlogdet``) never imports JAX.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError

ACTIVATIONS = ("relu", "tanh", "erf")

#: Models whose NTK ``NTKSource(..., implementation="structured")`` computes from per-layer factors. Each has
#: ``param_shapes()``, ``perturbation_shapes()`` (per point), ``layer_rules()`` (``("dense", fan_in)`` or
#: ``("conv", fan_in)`` per layer), ``beta`` and ``forward(params, x, perturbations) -> (out, layer_inputs)``,
#: where a dense layer's input is what multiplies its weight (h·R for a factorized layer) and a convolution's is
#: its patches (n, C_in·kernel, L).
STRUCTURED_MODELS: tuple = ()


def _activation(name: str):
    import jax
    import jax.numpy as jnp

    if name == "relu":
        return jax.nn.relu
    if name == "tanh":
        return jnp.tanh
    return jax.scipy.special.erf


class _Layered:
    """Sizes of a stack of dense layers: ``sizes = (d_in, ..., d_out)``."""

    sizes: tuple

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    @property
    def n_features(self) -> int:
        return self.sizes[0]


@dataclass(frozen=True)
class MLP(_Layered):
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

    def param_shapes(self) -> list[dict[str, tuple]]:
        return [{"W": (a, b), "b": (b,)} for a, b in zip(self.sizes[:-1], self.sizes[1:])]

    def perturbation_shapes(self) -> list[tuple]:
        return [(b,) for b in self.sizes[1:]]

    def layer_rules(self) -> list[tuple[str, int]]:
        return [("dense", a) for a in self.sizes[:-1]]

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


def _rank(rank_or_ratio, d: int) -> int:
    """The factor rank of a layer with input width d: an int k, or a float ratio r in (0, 1] giving ⌈r·d⌉."""
    if isinstance(rank_or_ratio, (bool, np.bool_)):
        raise InputError(f"rank_or_ratio must be an int >= 1 or a float in (0, 1], got {rank_or_ratio!r}")
    if isinstance(rank_or_ratio, (int, np.integer)):
        if rank_or_ratio < 1:
            raise InputError(f"rank_or_ratio must be an int >= 1 or a float in (0, 1], got {rank_or_ratio!r}")
        return min(int(rank_or_ratio), d)
    r = float(rank_or_ratio)
    if not 0 < r <= 1:
        raise InputError(f"rank_or_ratio must be an int >= 1 or a float in (0, 1], got {rank_or_ratio!r}")
    return max(1, min(d, math.ceil(r * d)))


class FactorizedMLP(_Layered):
    r"""MLP whose dense layers are factorized (Ailon & Shit 2022): z_l = (h_l·R_l)·W_l/√k_l + β·b_l.

    R_l (d_l × k_l) is a FIXED random projection with N(0, 1/d_l) entries (so h·R stays O(1)): it is not a
    parameter, it is drawn from ``seed`` and stored in the model (pickled with it; its content enters the
    model's ``repr``, hence every source token). W_l (k_l × d_{l+1}) and b_l are the trainable parameters,
    N(0, 1) as in :class:`MLP` (NTK parameterization). Layer l is factorized when k_l < d_l, where k_l is
    ``rank_or_ratio`` (an int, capped at d_l) or ⌈ratio·d_l⌉ (a float in (0, 1]); a layer with k_l = d_l
    (e.g. a 40-wide input layer with k = 64) stays a plain dense layer (R_l = None). Parameters and NTK cost
    of a factorized layer drop by d_l/k_l.

    Calling ``model(params, x)`` with x of shape (n, sizes[0]) returns (n, sizes[-1]); ``params`` is a list of
    ``{"W": (k_l, d_{l+1}), "b": (d_{l+1},)}`` dicts.
    """

    def __init__(self, sizes, rank_or_ratio, activation: str = "relu", beta: float = 0.1, seed: int = 0):
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise InputError(f"FactorizedMLP sizes must hold at least an input and an output width, all >= 1; "
                             f"got {sizes}")
        if activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.sizes = sizes
        self.rank_or_ratio = rank_or_ratio
        self.activation = activation
        self.beta = float(beta)
        self.seed = int(seed)
        self.ranks = tuple(_rank(rank_or_ratio, d) for d in sizes[:-1])
        rng = np.random.default_rng([self.seed, 0x5EED])
        self.projections = tuple(
            None if k == d else rng.standard_normal((d, k)) / math.sqrt(d) for d, k in zip(sizes[:-1], self.ranks))
        h = hashlib.blake2b(digest_size=8)
        for R in self.projections:
            h.update(b"-" if R is None else np.ascontiguousarray(R).tobytes())
        self._digest = h.hexdigest()

    def __repr__(self):
        return (f"FactorizedMLP(sizes={self.sizes}, ranks={self.ranks}, activation={self.activation!r}, "
                f"beta={self.beta}, seed={self.seed}, projections={self._digest})")

    def __eq__(self, other):
        return isinstance(other, FactorizedMLP) and repr(self) == repr(other)

    def __hash__(self):
        return hash(repr(self))

    def param_shapes(self) -> list[dict[str, tuple]]:
        return [{"W": (k, b), "b": (b,)} for k, b in zip(self.ranks, self.sizes[1:])]

    def perturbation_shapes(self) -> list[tuple]:
        return [(b,) for b in self.sizes[1:]]

    def layer_rules(self) -> list[tuple[str, int]]:
        return [("dense", k) for k in self.ranks]

    def init(self, seed: int = 0, dtype=np.float64) -> list[dict[str, np.ndarray]]:
        """N(0, 1) factors and biases as NumPy arrays (deterministic given ``seed``)."""
        rng = np.random.default_rng(seed)
        return [{"W": rng.standard_normal(s["W"]).astype(dtype), "b": rng.standard_normal(s["b"]).astype(dtype)}
                for s in self.param_shapes()]

    def __call__(self, params, x):
        out, _ = self.forward(params, x)
        return out

    def forward(self, params, x, perturbations=None):
        """(output, layer inputs ``[h_l·R_l]``); ``perturbations[l]`` is added to ``z_l`` if given."""
        import jax.numpy as jnp

        phi = _activation(self.activation)
        h = x
        hs = []
        for l, layer in enumerate(params):
            R = self.projections[l]
            u = h if R is None else h @ jnp.asarray(R, dtype=h.dtype)
            hs.append(u)
            z = u @ layer["W"] / math.sqrt(self.ranks[l]) + self.beta * layer["b"]
            if perturbations is not None:
                z = z + perturbations[l]
            h = phi(z) if l < self.n_layers - 1 else z
        return h, hs


def factorized_mlp(sizes=(40, 512, 512, 10), k=64, activation: str = "relu", seed: int = 0, dtype=np.float64,
                   beta: float = 0.1):
    """A :class:`FactorizedMLP` (projections drawn from ``seed``) and its initial parameters (from ``seed``).

    ``k`` is the rank (int) or the ratio k/d (float in (0, 1]).
    """
    f = FactorizedMLP(tuple(sizes), k, activation, beta, seed)
    return f, f.init(seed, dtype)


POOLS = ("avg", "flatten")


class _Convolutional:
    """Sizes, shapes and layer rules of a 1-D convolutional stack (``_conv_pairs()``: (C_in, C_out) of each
    convolution, all of length ``length``) followed by pooling and a dense head (``hidden``, ``outputs``)."""

    length: int
    pool: str
    hidden: tuple
    outputs: int
    kernel: int

    def _conv_pairs(self) -> list[tuple[int, int]]:
        raise NotImplementedError

    @property
    def n_conv(self) -> int:
        return len(self._conv_pairs())

    @property
    def head_sizes(self) -> tuple[int, ...]:
        d = self._conv_pairs()[-1][1] * (self.length if self.pool == "flatten" else 1)
        return (d, *self.hidden, self.outputs)

    @property
    def n_layers(self) -> int:
        return self.n_conv + len(self.head_sizes) - 1

    @property
    def n_outputs(self) -> int:
        return self.outputs

    @property
    def n_features(self) -> int:
        return self._conv_pairs()[0][0] * self.length

    def param_shapes(self) -> list[dict[str, tuple]]:
        conv = [{"W": (b, a, self.kernel), "b": (b,)} for a, b in self._conv_pairs()]
        hs = self.head_sizes
        return conv + [{"W": (a, b), "b": (b,)} for a, b in zip(hs[:-1], hs[1:])]

    def perturbation_shapes(self) -> list[tuple]:
        return [(b, self.length) for _, b in self._conv_pairs()] + [(b,) for b in self.head_sizes[1:]]

    def layer_rules(self) -> list[tuple[str, int]]:
        return ([("conv", a * self.kernel) for a, _ in self._conv_pairs()]
                + [("dense", a) for a in self.head_sizes[:-1]])

    def init(self, seed: int = 0, dtype=np.float64) -> list[dict[str, np.ndarray]]:
        """N(0, 1) weights and biases as NumPy arrays (deterministic given ``seed``)."""
        rng = np.random.default_rng(seed)
        return [{"W": rng.standard_normal(s["W"]).astype(dtype), "b": rng.standard_normal(s["b"]).astype(dtype)}
                for s in self.param_shapes()]

    def __call__(self, params, x):
        out, _ = self.forward(params, x, inputs=False)
        return out


@dataclass(frozen=True)
class CNN1D(_Convolutional):
    r"""Small 1-D convolutional network (signals such as MNIST-1D's 40 samples), NTK parameterization.

    Convolutions z = conv(h, W)/√(C_in·kernel) + β·b ('SAME' padding, stride 1, ``jax.lax.conv_general_dilated``,
    W of shape (C_out, C_in, kernel), one bias per output channel), each followed by the activation; then a
    global average over positions (``pool="avg"``) or a flatten (``pool="flatten"``); then a dense head as in
    :class:`MLP` (widths ``hidden``, then ``outputs``, no activation on the last layer).

    ``x`` has shape (n, channels[0]·length), read as (n, channels[0], length) (channel-major; one channel: the
    signal itself). ``params`` is a list of ``{"W", "b"}`` dicts: the convolutions first, then the head.
    """

    channels: tuple[int, ...] = (1, 16, 16)
    kernel: int = 5
    hidden: tuple[int, ...] = (64,)
    outputs: int = 10
    activation: str = "relu"
    beta: float = 0.1
    length: int = 40
    pool: str = "avg"

    def __post_init__(self):
        channels = tuple(int(c) for c in self.channels)
        hidden = tuple(int(h) for h in self.hidden)
        if len(channels) < 2 or any(c < 1 for c in channels):
            raise InputError(f"CNN1D channels must hold the input channels and at least one convolution's, all "
                             f">= 1; got {self.channels}")
        if int(self.kernel) < 1 or int(self.length) < 1 or int(self.outputs) < 1 or any(h < 1 for h in hidden):
            raise InputError(f"CNN1D kernel, length, outputs and hidden widths must be >= 1; got kernel="
                             f"{self.kernel}, length={self.length}, outputs={self.outputs}, hidden={self.hidden}")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.pool not in POOLS:
            raise InputError(f"pool must be one of {POOLS}, got {self.pool!r}")
        for name, v in (("channels", channels), ("hidden", hidden), ("kernel", int(self.kernel)),
                        ("outputs", int(self.outputs)), ("length", int(self.length)), ("beta", float(self.beta))):
            object.__setattr__(self, name, v)

    def _conv_pairs(self) -> list[tuple[int, int]]:
        return list(zip(self.channels[:-1], self.channels[1:]))

    def forward(self, params, x, perturbations=None, inputs: bool = True):
        """(output, layer inputs): a convolution's are its patches (n, C_in·kernel, length), channel-major like
        W.reshape(C_out, C_in·kernel); a dense layer's its input. ``perturbations[l]`` is added to z_l."""
        phi = _activation(self.activation)
        h = x.reshape(x.shape[0], self.channels[0], self.length)
        hs = [] if inputs else None
        for l in range(self.n_conv):
            h = phi(_conv(h, params, l, self.kernel, self.beta, perturbations, hs))
        return _head(h, params, self.n_conv, self.head_sizes, self.pool, phi, self.beta, perturbations, hs), hs


def _conv(h, params, l, kernel, beta, perturbations, hs):
    """Pre-activation z_l = conv(h, W_l)/√(C_in·kernel) + β·b_l (+ perturbation); records h's patches in hs."""
    import jax

    W, b = params[l]["W"], params[l]["b"]
    if hs is not None:
        hs.append(jax.lax.conv_general_dilated_patches(h, (kernel,), (1,), "SAME"))
    z = jax.lax.conv_general_dilated(h, W, (1,), "SAME") / math.sqrt(W.shape[1] * kernel) + beta * b[:, None]
    return z if perturbations is None else z + perturbations[l]


def _head(h, params, first, sizes, pool, phi, beta, perturbations, hs):
    """Pool the (n, C, L) feature maps (mean over positions or flatten), then the dense layers ``first…``."""
    h = h.mean(axis=-1) if pool == "avg" else h.reshape(h.shape[0], -1)
    n_head = len(sizes) - 1
    for m in range(n_head):
        l = first + m
        if hs is not None:
            hs.append(h)
        z = h @ params[l]["W"] / math.sqrt(sizes[m]) + beta * params[l]["b"]
        if perturbations is not None:
            z = z + perturbations[l]
        h = phi(z) if m < n_head - 1 else z
    return h


def cnn1d(channels=(1, 16, 16), kernel: int = 5, hidden=(64,), outputs: int = 10, activation: str = "relu",
          seed: int = 0, dtype=np.float64, beta: float = 0.1, length: int = 40, pool: str = "avg"):
    """A :class:`CNN1D` and its initial parameters: ``f, params = cnn1d()``; then ``f(params, x)`` for x (n, 40)."""
    f = CNN1D(tuple(channels), kernel, tuple(hidden), outputs, activation, beta, length, pool)
    return f, f.init(seed, dtype)


@dataclass(frozen=True)
class ResNet1D(_Convolutional):
    r"""Small 1-D residual network (He et al. 2016's basic block, for signals such as MNIST-1D's), NTK
    parameterization.

    A stem convolution ``in_channels → width`` then ``blocks`` residual blocks
    h ← φ(h + α·conv_b(φ(conv_a(h)))) at constant width, every convolution as in :class:`CNN1D`
    (z = conv(h, W)/√(C_in·kernel) + β·b, 'SAME' padding, stride 1); then a global average over positions
    (``pool="avg"``) or a flatten, and a dense head (widths ``hidden``, then ``outputs``).

    The skip connections change nothing in the structured NTK algorithm: each layer still contributes
    ⟨∂f/∂W_l⟩ products of its input patches and δ_l = ∂f/∂z_l, and δ_l (which now flows through the skips too) is
    computed by automatic differentiation of the whole network.

    ``x`` has shape (n, in_channels·length). ``params`` is a list of ``{"W", "b"}`` dicts: stem, then
    conv_a and conv_b of each block, then the head.
    """

    in_channels: int = 1
    width: int = 16
    blocks: int = 2
    kernel: int = 3
    hidden: tuple[int, ...] = (64,)
    outputs: int = 10
    activation: str = "relu"
    beta: float = 0.1
    length: int = 40
    pool: str = "avg"
    alpha: float = 1.0

    def __post_init__(self):
        hidden = tuple(int(h) for h in self.hidden)
        ints = {k: int(getattr(self, k)) for k in ("in_channels", "width", "kernel", "outputs", "length")}
        if min(ints.values()) < 1 or int(self.blocks) < 0 or any(h < 1 for h in hidden):
            raise InputError(f"ResNet1D in_channels, width, kernel, outputs, length and hidden widths must be >= 1 "
                             f"and blocks >= 0; got {ints}, blocks={self.blocks}, hidden={self.hidden}")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.pool not in POOLS:
            raise InputError(f"pool must be one of {POOLS}, got {self.pool!r}")
        for name, v in (*ints.items(), ("hidden", hidden), ("blocks", int(self.blocks)),
                        ("beta", float(self.beta)), ("alpha", float(self.alpha))):
            object.__setattr__(self, name, v)

    def _conv_pairs(self) -> list[tuple[int, int]]:
        return [(self.in_channels, self.width)] + [(self.width, self.width)] * (2 * self.blocks)

    def forward(self, params, x, perturbations=None, inputs: bool = True):
        """(output, layer inputs) as :meth:`CNN1D.forward`; ``perturbations[l]`` is added to z_l."""
        phi = _activation(self.activation)
        h = x.reshape(x.shape[0], self.in_channels, self.length)
        hs = [] if inputs else None
        h = phi(_conv(h, params, 0, self.kernel, self.beta, perturbations, hs))
        for k in range(self.blocks):
            u = phi(_conv(h, params, 1 + 2 * k, self.kernel, self.beta, perturbations, hs))
            h = phi(h + self.alpha * _conv(u, params, 2 + 2 * k, self.kernel, self.beta, perturbations, hs))
        return _head(h, params, self.n_conv, self.head_sizes, self.pool, phi, self.beta, perturbations, hs), hs


def resnet1d(width: int = 16, blocks: int = 2, kernel: int = 3, hidden=(64,), outputs: int = 10,
             activation: str = "relu", seed: int = 0, dtype=np.float64, beta: float = 0.1, length: int = 40,
             pool: str = "avg", in_channels: int = 1, alpha: float = 1.0):
    """A :class:`ResNet1D` and its initial parameters: ``f, params = resnet1d()``; then ``f(params, x)``."""
    f = ResNet1D(in_channels, width, blocks, kernel, tuple(hidden), outputs, activation, beta, length, pool, alpha)
    return f, f.init(seed, dtype)


STRUCTURED_MODELS = (MLP, FactorizedMLP, CNN1D, ResNet1D)
