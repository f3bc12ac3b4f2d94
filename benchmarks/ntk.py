"""NTK tiles of any JAX model: the generic structured path against NTK-vector products, Jacobian contraction and the
zoo's former hand-written path; memory per tile; an end-to-end log-determinant.

    python benchmarks/ntk.py [--sections zoo plain flax e2e] [--tiles 64 256] [--rounds 5] [--cap 20]
                             [--resnet-width 8] [--flax-models resnet transformer] [--e2e-n 10000]
                             [--e2e-sub 1000] [--workers 2]
                             [--nt-python PYTHON [--nt-pythonpath DIRS]]

All times exclude JIT compilation (every contender is called once on the tile's shape first), float64, "highest"
matmul precision. Within a section the contenders run back to back, round by round (the machine may be shared),
every ratio is taken within a round and its median over rounds printed; a round's sample of a contender is its best
of a burst of calls (as many as fit in 0.5 s, at least 3 for tiles under a second, the same number for each
contender), so that a tile of a few milliseconds is not timed against the time slices of other jobs. A tile of N points is N x N ("trace") or
10N x 10N ("full", O = 10 outputs).

* zoo: each zoo model (``mlp``, ``factorized_mlp``, ``cnn1d``, ``resnet1d`` on MNIST-1D) through the generic
  structured path against the hand-written one that served the zoo until the generic path replaced it (kept below
  as the peer, ``HandWritten``). Target: generic/hand <= 1.25.
* plain: the 40-512-512-10 MLP written as a user would (a plain JAX function over the zoo's parameters) against the
  zoo's MLP, both structured (target: plain/zoo <= 1.25), and structured against NTK-vector products and Jacobian
  contraction on it.
* flax: a Flax ResNet-18 (BatchNorm in inference mode, base width ``--resnet-width``) on 32x32x3 inputs and a
  transformer block (token embedding, 4-head attention, LayerNorm, MLP; 32 tokens, width 64): structured against
  NTK-vector products (target >= 10x faster) and Jacobian contraction (structured timed twice, the others once);
  memory per tile: the working set XLA assigns to the structured tile's compiled stages, as a multiple of the tile
  plus the per-point factors it caches (deltas and recorded operands), and the RSS growth seen during the call.
  A contender whose time on the full tile would exceed ``--cap`` seconds is estimated (rows say "est."): NTK-vector
  products from a strip of the tile (all N row points by c column points, scaled by N/c), Jacobian contraction from
  smaller tiles (doubling from 4 points) by a*N + b*N^2 fitted to its last two.
* e2e: the traced NTK of a Flax 1-D CNN on ``--e2e-n`` MNIST-1D points through the exact engine on ``--workers``
  local worker processes: wall time split into tiles and factorization (the factorization alone timed on a
  same-size SPD matrix read from .npy: Cholesky's work does not depend on the values), peak RSS per worker; then
  ``dlogdet.extrapolate`` from ``--e2e-sub``-point subsamples, its band against the exact value.
* nt (with ``--nt-python``): neural-tangents' structured derivatives in their own environment (its GitHub head on
  jax 0.5.3; benchmarks/nt_peer.py) against ours on the zoo MLP, tile for tile.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import threading
import time

import numpy as np

# ---- measurement helpers ----------------------------------------------------------------------------------------


class RSSPeak:
    """Peak RSS growth of this process over its RSS at entry, sampled every 5 ms in a thread."""

    def __init__(self):
        import psutil

        self.proc, self._stop = psutil.Process(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(0.005)

    def __enter__(self):
        self.base = self.peak = self.proc.memory_info().rss
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.growth = max(self.peak, self.proc.memory_info().rss) - self.base


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def rows(src, N):
    return N * (src.n_outputs if src.outputs == "full" else 1)


def tile_time(src, N):
    m = rows(src, N)
    t, _ = timed(lambda: src.tile(0, m, 0, m))
    return t


#: A round's sample of a contender is its best of as many calls as fit in this many seconds (at least 3 for tiles
#: under a second, one above): a tile of a few milliseconds is otherwise timed against the scheduler's time slices
#: on a shared machine, and a single call of a 0.2 s tile read 0.14-0.70 s for the same contender under load.
BURST = 0.5


def burst_time(src, N, repeats: int) -> float:
    return min(tile_time(src, N) for _ in range(repeats))


def interleaved(contenders: dict, N: int, rounds: int) -> dict:
    """Median time per contender on an N-point diagonal tile, and per-round ratios to the first contender; each
    round's sample is the best of a burst of calls (:data:`BURST`), the same number for every contender."""
    first_times = []
    for s in contenders.values():
        tile_time(s, N)                                             # warm-up: compilation
        first_times.append(tile_time(s, N))
    slowest = max(max(first_times), 1e-4)
    repeats = 1 if slowest > 1.0 else max(3, min(50, int(BURST / slowest)))
    times = {k: [] for k in contenders}
    for _ in range(rounds):
        for k, s in contenders.items():
            times[k].append(burst_time(s, N, repeats))
    first = next(iter(contenders))
    return {k: (statistics.median(v), statistics.median(a / b for a, b in zip(v, times[first])))
            for k, v in times.items()}


def ladder(src, N: int, cap: float) -> tuple[float, bool]:
    """(time, estimated): the N-point tile if predicted within ``cap`` s, else a*k + b*k² fitted on smaller tiles."""
    probes, k = [], min(4, N)
    while True:
        tile_time(src, k)                                           # compile this shape
        probes.append((k, tile_time(src, k)))
        if k >= N:
            return probes[-1][1], False
        nxt = min(N, 2 * k)
        if probes[-1][1] * (nxt / k) ** 2 > cap:
            break
        k = nxt
    if len(probes) == 1:
        (k1, t1), = probes
        return t1 * (N / k1) ** 2, True
    (k1, t1), (k2, t2) = probes[-2:]
    b = max(0.0, (t2 / k2 - t1 / k1) / (k2 - k1))
    a = max(0.0, t2 / k2 - b * k2)
    return a * N + b * N * N, True


def strip(src, N: int, cap: float) -> tuple[float, bool]:
    """(time, estimated) of NTK-vector products on the N-point tile: the tile itself where a strip of its columns
    predicts it within ``cap`` s, else N/c × the time of the strip of all N row points by c column points (c doubled
    while the strip takes under cap/8). The algorithm is a loop over column points (a ``vjp`` at the column, a
    ``jvp`` over all rows), so a strip's time per column is the tile's, at the tile's row count; the a·N + b·N²
    ladder fitted on small tiles read the per-column cost at a few rows and, under load, came out linear (b = 0)."""
    rows_per = src.n_outputs if src.outputs == "full" else 1
    m, c = N * rows_per, 1
    while True:
        cols = np.arange(c * rows_per)
        src.block(np.arange(m), cols)                               # compile this shape
        t, _ = timed(lambda: src.block(np.arange(m), cols))
        if t * N / c <= cap:
            tile_time(src, N)                                       # compile the tile's shape
            return tile_time(src, N), False
        if 2 * c > N or 2 * t > cap / 8:
            return t * N / c, True
        c *= 2


def xla_bytes(src, N) -> int:
    """The structured tile's working set by XLA's buffer assignment (deterministic, unlike RSS on a shared machine):
    temporaries + output of the one program from the points to the tile (primaries and their contraction)."""
    from dlogdet.ntk import jax_context

    _, tile_same, _ = src._fn("structured", N)
    s = src._structure()
    jl = src._jleaves()
    tv, nv, x = [jl[i] for i in src._t_idx], [jl[i] for i in s.n_idx], src.x[:N]
    with jax_context(src.dtype == np.float64):
        m = tile_same.lower(tv, nv, x).compile().memory_analysis()
    return int(m.temp_size_in_bytes + m.output_size_in_bytes)


def factor_bytes(src, N) -> int:
    """Bytes of the per-point factors a structured tile of N points caches: deltas (N·O per tapped value) and the
    recorded point-side operands (N per value)."""
    s = src._structure()
    plan = s.plan(N, src.outputs == "full")
    per = sum(s.prog.size(v) * src.n_outputs for v in plan.taps) + sum(s.prog.size(v) for v in plan.records)
    return int(N * per * src.dtype.itemsize)


# ---- the peer: the hand-written structured path that served the zoo before the generic one ----------------------

class HandWritten:
    """Today's algorithm for the zoo until issue 16: the models' layers written out with a perturbation added to
    each pre-activation z_l; δ_l = ∂f/∂z_l by one jacrev per point; dense layers by (H Hᵀ/d + β²) ⊙ (Δ Δᵀ),
    convolutions by per-point gradients from patches (one batched product over positions)."""

    def __init__(self, f, params, x, outputs):
        import jax

        from dlogdet.ntk import jax_context

        self.f, self.x, self.outputs, self.ctx = f, x, outputs, jax_context
        self.params = jax.tree_util.tree_map(np.asarray, params)
        self.n_outputs = f.n_outputs
        self.fn = jax.jit(self._features)

    def _forward(self, params, x, pert):
        """(output, layer inputs): a convolution's input is its patches, a dense layer's what multiplies W."""
        import jax
        import jax.numpy as jnp

        from dlogdet.ntk.models import CNN1D, FactorizedMLP, ResNet1D, _activation

        f, hs, beta = self.f, [], self.f.beta
        phi = _activation(f.activation)

        def dense(h, l, d, R=None):
            u = h if R is None else h @ jnp.asarray(R, h.dtype)
            hs.append(u)
            return u @ params[l]["W"] / math.sqrt(d) + beta * params[l]["b"] + pert[l]

        def conv(h, l):
            W = params[l]["W"]
            hs.append(jax.lax.conv_general_dilated_patches(h, (f.kernel,), (1,), "SAME"))
            z = jax.lax.conv_general_dilated(h, W, (1,), "SAME") / math.sqrt(W.shape[1] * f.kernel)
            return z + beta * params[l]["b"][:, None] + pert[l]

        if isinstance(f, (CNN1D, ResNet1D)):
            c0 = f.channels[0] if isinstance(f, CNN1D) else f.in_channels
            h = x.reshape(x.shape[0], c0, f.length)
            if isinstance(f, CNN1D):
                for l in range(f.n_conv):
                    h = phi(conv(h, l))
            else:
                h = phi(conv(h, 0))
                for k in range(f.blocks):
                    h = phi(h + f.alpha * conv(phi(conv(h, 1 + 2 * k)), 2 + 2 * k))
            h = h.mean(axis=-1) if f.pool == "avg" else h.reshape(h.shape[0], -1)
            sizes, first = f.head_sizes, f.n_conv
        else:
            h, sizes, first = x, f.sizes, 0
        for m in range(len(sizes) - 1):
            l = first + m
            R = f.projections[l] if isinstance(f, FactorizedMLP) else None
            d = f.ranks[l] if isinstance(f, FactorizedMLP) else sizes[m]
            z = dense(h, l, d, R)
            h = phi(z) if m < len(sizes) - 2 else z
        return h, hs

    def _features(self, params, x):
        import jax
        import jax.numpy as jnp

        _, hs = self._forward(params, x, [0.0] * len(params))
        zs = [jnp.zeros(s) for s in self._z_shapes()]

        def deltas(xp):
            return jax.jacrev(lambda p: self._forward(params, xp[None], [q[None] for q in p])[0][0])(zs)

        return hs, jax.vmap(deltas)(x)

    def _z_shapes(self):
        f = self.f
        conv = getattr(f, "_conv_pairs", lambda: [])()
        head = f.head_sizes if conv else f.sizes
        return [(b, f.length) for _, b in conv] + [(b,) for b in head[1:]]

    def tile(self, r0, r1, c0, c1):
        O, full = self.n_outputs, self.outputs == "full"
        N = (r1 - r0) // (O if full else 1)
        with self.ctx(True):
            H, D = (list(map(np.asarray, t)) for t in self.fn(self.params, self.x[:N]))
        K = 0.0
        n_conv = len(getattr(self.f, "_conv_pairs", lambda: [])())
        for l, (h, d) in enumerate(zip(H, D)):
            beta = self.f.beta
            if l >= n_conv:
                fan = h.shape[1]
                G = h @ h.T / fan + beta ** 2
                R = d.reshape(N * O, -1) @ d.reshape(N * O, -1).T if full else d.reshape(N, -1) @ d.reshape(N, -1).T / O
                K = K + (np.kron(G, np.ones((O, O))) * R if full else G * R)
            else:
                n, _, C, L = d.shape
                g = np.matmul(d.reshape(n, O * C, L), h.transpose(0, 2, 1)).reshape(n, O, -1) / math.sqrt(h.shape[1])
                g = np.concatenate([g, beta * d.sum(axis=-1)], axis=-1)
                K = K + (g.reshape(N * O, -1) @ g.reshape(N * O, -1).T if full
                         else g.reshape(N, -1) @ g.reshape(N, -1).T / O)
        return K


# ---- the sections ---------------------------------------------------------------------------------------------

def zoo_section(args, x):
    from dlogdet.ntk import NTKSource, cnn1d, factorized_mlp, mlp, resnet1d

    print("\n[zoo] generic structured path / the hand-written one (target <= 1.25)", flush=True)
    models = {"mlp 40-512-512-10": mlp((40, 512, 512, 10)), "factorized_mlp k=64": factorized_mlp(),
              "cnn1d()": cnn1d(), "resnet1d()": resnet1d()}
    worst = 0.0
    for name, (f, params) in models.items():
        for outputs in ("trace", "full"):
            for N in args.tiles:
                src = NTKSource(f, params, x, outputs=outputs, implementation="structured")
                peer = HandWritten(f, params, x, outputs)
                m = rows(src, N)
                err = float(np.abs(src.tile(0, m, 0, m) - peer.tile(0, m, 0, m)).max()
                            / np.abs(peer.tile(0, m, 0, m)).max())
                r = interleaved({"hand": peer, "generic": src}, N, args.rounds)
                worst = max(worst, r["generic"][1])
                print(f"  {name:20s} {outputs:5s} N={N:4d}: generic {r['generic'][0]:8.4f} s, hand-written "
                      f"{r['hand'][0]:8.4f} s, generic/hand {r['generic'][1]:5.2f}  (max rel. diff {err:.0e})",
                      flush=True)
    print(f"  worst generic/hand {worst:.2f}: {'MET' if worst <= 1.25 else 'NOT MET'} (<= 1.25)")


def plain_mlp(params, x):
    """The zoo's MLP as a user writes it: a plain JAX function over the same parameters (NTK parameterization)."""
    import jax

    h = x
    for l, p in enumerate(params):
        h = h @ p["W"] / np.sqrt(p["W"].shape[0]) + 0.1 * p["b"]
        h = jax.nn.relu(h) if l < len(params) - 1 else h
    return h


def versus(label, src_of, N, args, extra=None):
    """Structured against NTK-vector products and Jacobian contraction on an N-point tile (ladder for the slow)."""
    src = src_of("structured")
    m = rows(src, N)
    tile_time(src, N)
    with RSSPeak() as mem:
        t_s = tile_time(src, N)
    t_s = statistics.median([t_s] + [tile_time(src, N) for _ in range(min(args.rounds, 2) - 1)])
    fb, xb = factor_bytes(src, N), xla_bytes(src, N)
    base = m * m * 8 + fb
    out = {"structured": t_s, "memory": xb / base}
    line = (f"  {label:24s} {src.outputs:5s} N={N:4d} (P={src.n_params}): structured {t_s:7.3f} s; memory: XLA "
            f"{xb / 2**20:.0f} MiB = {xb / base:4.2f}x (tile {m * m * 8 / 2**20:.0f} + factors {fb / 2**20:.0f} MiB), "
            f"RSS growth {mem.growth / 2**20:.0f} MiB")
    for impl in ("ntvp", "jacobian"):
        t, est = (strip if impl == "ntvp" else ladder)(src_of(impl), N, args.cap)
        out[impl] = t
        line += f"; {impl} {t:8.2f} s{' est.' if est else ''} ({t / t_s:6.1f}x structured)"
    print(line, flush=True)
    return out


def plain_section(args, x):
    from dlogdet.ntk import NTKSource, mlp

    f, params = mlp((40, 512, 512, 10))
    print("\n[plain] the MLP as a user's plain JAX function / the zoo's MLP, both structured (target <= 1.25)",
          flush=True)
    worst = 0.0
    for outputs in ("trace", "full"):
        for N in args.tiles:
            r = interleaved({"zoo": NTKSource(f, params, x, outputs=outputs),
                             "plain": NTKSource(plain_mlp, params, x, outputs=outputs)}, N, args.rounds)
            worst = max(worst, r["plain"][1])
            print(f"  {outputs:5s} N={N:4d}: plain {r['plain'][0]:8.4f} s, zoo {r['zoo'][0]:8.4f} s, plain/zoo "
                  f"{r['plain'][1]:5.2f}", flush=True)
    print(f"  worst plain/zoo {worst:.2f}: {'MET' if worst <= 1.25 else 'NOT MET'}")
    print("  structured against the other algorithms on the plain function:", flush=True)
    for outputs in ("trace", "full"):
        for N in args.tiles:
            versus("plain MLP 40-512-512-10", lambda i: NTKSource(plain_mlp, params, x, outputs=outputs,
                                                                  implementation=i), N, args)


def flax_models(width: int, classes: int = 10):
    """A ResNet-18 (He et al. 2016's basic blocks, 2 per stage, widths w, 2w, 4w, 8w, BatchNorm in inference mode)
    for 32x32x3 inputs, and a transformer block (token embedding, positions, pre-LayerNorm multi-head attention and
    MLP, mean over tokens, dense head)."""
    import flax.linen as nn
    import jax

    class Block(nn.Module):
        features: int
        stride: int

        @nn.compact
        def __call__(self, x):
            bn = lambda: nn.BatchNorm(use_running_average=True)  # noqa: E731
            y = nn.relu(bn()(nn.Conv(self.features, (3, 3), self.stride, use_bias=False)(x)))
            y = bn()(nn.Conv(self.features, (3, 3), use_bias=False)(y))
            if self.stride != 1 or x.shape[-1] != self.features:
                x = bn()(nn.Conv(self.features, (1, 1), self.stride, use_bias=False)(x))
            return nn.relu(x + y)

    class ResNet18(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.BatchNorm(use_running_average=True)(nn.Conv(width, (3, 3), use_bias=False)(x)))
            for stage, mult in enumerate((1, 2, 4, 8)):
                for b in range(2):
                    x = Block(width * mult, 2 if stage and not b else 1)(x)
            return nn.Dense(classes)(x.mean(axis=(1, 2)))

    class Transformer(nn.Module):
        vocab: int = 128
        d: int = 64
        heads: int = 4

        @nn.compact
        def __call__(self, x):
            h = nn.Embed(self.vocab, self.d)(x.astype(jax.numpy.int32))
            h = h + self.param("pos", nn.initializers.normal(0.1), (x.shape[1], self.d))
            h = h + nn.MultiHeadDotProductAttention(num_heads=self.heads)(nn.LayerNorm()(h))
            h = h + nn.Dense(self.d)(nn.gelu(nn.Dense(4 * self.d)(nn.LayerNorm()(h))))
            return nn.Dense(classes)(h.mean(axis=1))

    return ResNet18(), Transformer()


def flax_section(args):
    import jax

    from dlogdet.ntk import NTKSource

    n = max(args.tiles)
    rng = np.random.default_rng(0)
    res, tr = flax_models(args.resnet_width)
    xr = rng.standard_normal((n, 32, 32, 3))
    v = res.init(jax.random.PRNGKey(0), xr[:1])
    v = {"params": v["params"], "batch_stats": jax.tree_util.tree_map(      # running statistics as after training
        lambda a: np.abs(0.2 * rng.standard_normal(a.shape) + 1.0), v["batch_stats"])}
    xt = rng.integers(0, 128, (n, 32)).astype(float)
    vt = tr.init(jax.random.PRNGKey(1), xt[:1])
    print(f"\n[flax] structured against NTK-vector products (target >= 10x) and Jacobian contraction; ResNet-18 "
          f"(base width {args.resnet_width}, BatchNorm inference) on 32x32x3, transformer block (vocab 128, 32 tokens, "
          f"d 64, 4 heads, MLP 256)", flush=True)
    worst, most = math.inf, 0.0
    for key, label, model, var, xs in (("resnet", "Flax ResNet-18", res, v, xr),
                                       ("transformer", "Flax transformer block", tr, vt, xt)):
        if key not in args.flax_models:
            continue
        for outputs in ("trace", "full"):
            for N in args.tiles:
                r = versus(label, lambda i: NTKSource.from_flax(model, var, xs, outputs=outputs, implementation=i),
                           N, args)
                worst = min(worst, r["ntvp"] / r["structured"])
                most = max(most, r["memory"])
    print(f"  least ntvp/structured {worst:.1f}x: {'MET' if worst >= 10 else 'NOT MET'} (>= 10x); memory per tile at "
          f"most {most:.2f}x the tile plus the per-point factors (XLA's buffers)")


def e2e_section(args):
    import jax
    from distributed import Client, LocalCluster

    import dlogdet
    from dlogdet.engine.plan import auto_block_size
    from dlogdet.ntk import NTKSource, load_dataset

    n = args.e2e_n
    x, _ = load_dataset("mnist1d", n, seed=0)
    model = E2ECNN()
    v = model.init(jax.random.PRNGKey(0), x[:1])
    src = NTKSource.from_flax(model, v, x, outputs="trace")
    d = 1e-6 * float(np.mean([src.tile(i, i + 1, i, i + 1)[0, 0] for i in range(0, n, max(1, n // 50))]))
    tmp = tempfile.mkdtemp(prefix="dlogdet-ntk-bench-")
    path = os.path.join(tmp, "spd.npy")
    A = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, n))
    rng, step = np.random.default_rng(0), 1000
    for r0 in range(0, n, step):                 # a same-size symmetric matrix, entries in [0, 1): + n·I is SPD
        for c0 in range(0, r0 + 1, step):
            R = rng.random((min(step, n - r0), min(step, n - c0)))
            R = (R + R.T) / 2 if r0 == c0 else R
            A[r0:r0 + step, c0:c0 + step] = R
            A[c0:c0 + step, r0:r0 + step] = R.T
    A.flush()
    del A
    print(f"\n[e2e] traced NTK of a Flax 1-D CNN ({src.n_params} parameters) on n = {n} MNIST-1D points, d = 1e-6 * "
          f"mean(diag K) = {d:.3g}; {args.workers} worker processes x 1 thread", flush=True)
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as client:
        bs = auto_block_size(n, args.workers)
        # warm-up: the workers compile every tile shape of the run (a source on 2 block rows plus the last, partial
        # one) into JAX's persistent cache, which the run's own source (another object, the same programs) reads
        cache = os.path.join(tmp, "jax-cache")
        client.run(_persistent_cache, cache)
        _persistent_cache(cache)
        small = NTKSource.from_flax(model, v, x[:2 * bs + n % bs], outputs="trace")
        dlogdet.logdet(small, d=d, client=client, block_size=bs)
        t_src, r = timed(lambda: dlogdet.logdet(src, d=d, client=client, block_size=bs))
        t_npy, _ = timed(lambda: dlogdet.logdet(path, d=float(n), client=client, block_size=bs))
        peaks = r.diagnostics.get("peak_rss_bytes_per_worker") or {}
        print(f"  exact: logdet {r.logdet:.10g} in {t_src:.1f} s (block size {bs}); split: factorization {t_npy:.1f} "
              f"s ({100 * t_npy / t_src:.0f}%), tiles {t_src - t_npy:.1f} s ({100 * (t_src - t_npy) / t_src:.0f}%); "
              f"peak RSS per worker {', '.join(f'{b / 2**30:.2f} GiB' for b in peaks.values())}", flush=True)
        t_e, e = timed(lambda: dlogdet.extrapolate(src, n_sub=args.e2e_sub, subsamples=args.e2e_subsamples, seed=0,
                                                   d=d, client=client))
    lo, hi = e.diagnostics["band"]
    err = (e.logdet - r.logdet) / abs(r.logdet)
    print(f"  extrapolate from {args.e2e_subsamples} subsamples of {args.e2e_sub}: {e.logdet:.10g} ({100 * err:+.2f}% "
          f"of the exact), band [{lo:.6g}, {hi:.6g}] {'contains' if lo <= r.logdet <= hi else 'MISSES'} the exact "
          f"value; status {e.status}; {t_e:.1f} s ({t_src / t_e:.0f}x faster than exact)", flush=True)
    import shutil

    shutil.rmtree(tmp)


def _persistent_cache(path):
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _e2e_cnn():
    import flax.linen as nn

    class CNN(nn.Module):
        """Two 1-D convolutions (8 channels, kernel 5, the second strided) and a dense head, on MNIST-1D's 40
        samples."""

        @nn.compact
        def __call__(self, x):
            h = nn.relu(nn.Conv(8, (5,))(x[..., None]))
            h = nn.relu(nn.Conv(8, (5,), strides=2)(h))
            return nn.Dense(10)(nn.relu(nn.Dense(32)(h.reshape(h.shape[0], -1))))

    return CNN


def E2ECNN():
    return _e2e_cnn()()


def nt_section(args, x):
    """neural-tangents (empirical_ntk_fn, implementation 3) in its own Python against ours on the zoo MLP."""
    import subprocess

    from dlogdet.ntk import NTKSource, mlp

    peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nt_peer.py")
    env = dict(os.environ, **({"PYTHONPATH": args.nt_pythonpath} if args.nt_pythonpath else {}))
    f, params = mlp((40, 512, 512, 10), seed=0)
    tmp = tempfile.mkdtemp(prefix="dlogdet-nt-bench-")
    inp, out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
    print(f"\n[nt] neural-tangents' structured derivatives in {args.nt_python} (its own timing after a warm-up) "
          f"against ours", flush=True)
    for outputs in ("trace", "full"):
        for N in args.tiles:
            arrays = {f"W{l}": q["W"] for l, q in enumerate(params)} | {f"b{l}": q["b"] for l, q in enumerate(params)}
            np.savez(inp, x=x[:N], beta=f.beta, outputs=int(outputs == "full"), **arrays)
            src = NTKSource(f, params, x[:N], outputs=outputs, implementation="structured")
            tile_time(src, N)
            ratios = []
            for _ in range(args.rounds):
                t = tile_time(src, N)
                proc = subprocess.run([args.nt_python, peer, inp, out], env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"  the neural-tangents run failed:\n{proc.stderr[-2000:]}")
                    return
                ratios.append(float(np.median(np.load(out)["times"])) / t)
            print(f"  MLP 40-512-512-10 {outputs:5s} N={N:4d}: neural-tangents / dlogdet {statistics.median(ratios):6.2f}",
                  flush=True)
    for name in os.listdir(tmp):
        os.remove(os.path.join(tmp, name))
    os.rmdir(tmp)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", nargs="+", default=["zoo", "plain", "flax", "e2e"],
                    choices=["zoo", "plain", "flax", "e2e", "nt"])
    ap.add_argument("--tiles", type=int, nargs="+", default=[64, 256], help="points per tile")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cap", type=float, default=20.0, help="seconds per call above which a contender is estimated")
    ap.add_argument("--resnet-width", type=int, default=8)
    ap.add_argument("--flax-models", nargs="+", default=["resnet", "transformer"], choices=["resnet", "transformer"],
                    help="the flax section's models (the ResNet-18 rows take most of the run)")
    ap.add_argument("--e2e-n", type=int, default=10000)
    ap.add_argument("--e2e-sub", type=int, default=1000)
    ap.add_argument("--e2e-subsamples", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--nt-python", default=None)
    ap.add_argument("--nt-pythonpath", default=None)
    args = ap.parse_args()

    from dlogdet.ntk import load_dataset

    t0 = time.perf_counter()
    print(f"Times exclude JIT compilation; float64; {args.rounds} interleaved rounds, medians; tiles of {args.tiles} "
          f"points (full: 10x the rows); machine: {os.cpu_count()} CPUs", flush=True)
    x, _ = load_dataset("mnist1d", max(args.tiles), seed=0)
    if "zoo" in args.sections:
        zoo_section(args, x)
    if "plain" in args.sections:
        plain_section(args, x)
    if "flax" in args.sections:
        flax_section(args)
    if "e2e" in args.sections:
        e2e_section(args)
    if "nt" in args.sections and args.nt_python:
        nt_section(args, x)
    print(f"\ntotal wall time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
