"""The peer side of benchmarks/ntk.py's neural-tangents comparison; runs under the peer's own Python.

    PEER_PYTHON benchmarks/nt_peer.py IN.npz OUT.npz [--repeat R] [--implementation 1|2|3]

neural-tangents does not import with current JAX (``from jax.core import Jaxpr`` fails on jax >= 0.6), so
benchmarks/ntk.py runs this file in a separate environment that has one it imports with (its GitHub head on
jax 0.5.3; see ``--nt-python`` there). This file imports nothing from dlogdet: IN.npz holds the MLP's weights
``W0, b0, W1, b1, ...``, the points ``x`` and the scalars ``beta`` and ``outputs`` (1: full, 0: trace); the MLP
is written out again here in plain JAX, in the same NTK parameterization as ``dlogdet.ntk.MLP`` (relu hidden
layers, z = h·W/√d + β·b).

It times ``nt.empirical_ntk_fn(..., implementation=I)`` (3: structured derivatives, neural-tangents' fastest;
1: Jacobian contraction; 2: NTK-vector products) on the diagonal tile of all the points, after one warm-up call
(JIT compilation excluded, as for our contenders), and writes the tile and the times to OUT.npz.
"""

from __future__ import annotations

import argparse
import sys
import time
import types

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--implementation", type=int, default=3)
    args = ap.parse_args()

    # neural_tangents/__init__ imports its TensorFlow port, which needs tensorflow; the port is not used here
    sys.modules.setdefault("neural_tangents.experimental", types.ModuleType("neural_tangents.experimental"))
    import jax
    import jax.numpy as jnp
    import neural_tangents as nt

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")

    data = np.load(args.inp)
    L = sum(1 for k in data.files if k.startswith("W"))
    params = [{"W": jnp.asarray(data[f"W{l}"]), "b": jnp.asarray(data[f"b{l}"])} for l in range(L)]
    x = jnp.asarray(data["x"])
    beta, full = float(data["beta"]), bool(data["outputs"])

    def f(params, x):
        h = x
        for l, p in enumerate(params):
            z = h @ p["W"] / np.sqrt(p["W"].shape[0]) + beta * p["b"]
            h = jax.nn.relu(z) if l < L - 1 else z
        return h

    fn = jax.jit(nt.empirical_ntk_fn(f, trace_axes=() if full else (-1,), vmap_axes=0,
                                     implementation=args.implementation))
    K = fn(x, None, params).block_until_ready()                    # warm-up: compilation
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        K = fn(x, None, params).block_until_ready()
        times.append(time.perf_counter() - t)
    K = np.asarray(K)
    if full:  # (n, n, O, O) -> rows grouped by point, as dlogdet's "full"
        n, _, O, _ = K.shape
        K = K.transpose(0, 2, 1, 3).reshape(n * O, n * O)
    # traced: neural-tangents averages over the traced axis, as dlogdet's "trace" does
    np.savez(args.out, K=K, times=np.array(times), version=np.array(nt.__version__ if hasattr(nt, "__version__")
                                                                   else "head"), jax=np.array(jax.__version__))


if __name__ == "__main__":
    main()
