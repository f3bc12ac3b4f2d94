"""``kernel:NAME[:n=N,d=D,lengthscale=L,variance=V,jitter=J,seed=S]``: a covariance kernel on N points uniform in
the unit cube [0, 1]^D (seeded), as a :class:`~dlogdet.KernelSource` whose tiles are generated where needed."""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError
from ..kernel import KERNELS, KernelSource

USAGE = ("kernel:NAME[:n=N,d=D,lengthscale=L,variance=V,jitter=J,seed=S] (N points uniform in the unit cube)")

#: Defaults of the options (why: 4000 points in 2-D is a matrix a laptop factors in seconds; a short lengthscale
#: and a small jitter keep it well conditioned but far from diagonal).
DEFAULTS = {"n": 4000, "d": 2, "lengthscale": 0.2, "variance": 1.0, "jitter": 1e-8, "seed": 0}
TYPES = {"n": int, "d": int, "lengthscale": float, "variance": float, "jitter": float, "seed": int}


def build(spec) -> KernelSource:
    """The kernel source of a ``kernel:`` spec."""
    name = spec.fields[0] if spec.fields else ""
    if name not in KERNELS:
        raise InputError(f"a kernel spec is kernel:NAME[:n=...,d=...] with NAME one of {', '.join(KERNELS)}; "
                         f"got {spec.text!r}")
    o = spec.options(1, TYPES, DEFAULTS)
    if o["n"] < 1 or o["d"] < 1:
        raise InputError(f"a kernel spec needs n >= 1 and d >= 1, got n={o['n']}, d={o['d']}")
    x = np.random.default_rng(o["seed"]).uniform(size=(o["n"], o["d"]))
    return KernelSource(x, name, lengthscale=o["lengthscale"], variance=o["variance"], jitter=o["jitter"])
