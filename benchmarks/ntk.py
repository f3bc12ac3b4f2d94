"""NTK tile sources: throughput and memory per tile, float32 vs float64 formation, end-to-end log-determinant.

    python benchmarks/ntk.py [--tile 200] [--tile-full 20] [--tile-cnn 200] [--cap 30] [--repeat 1]
                             [--f32-n 300] [--f32-n-full 40] [--e2e-n 300] [--workers 2] [--skip ...]
                             [--nt-python PYTHON [--nt-pythonpath DIRS] [--nt-tile 1000] [--nt-sizes ...]]

Sections (all in one process; within a section the contenders run back to back, round by round, and every ratio
is taken within a round, then its median over rounds is printed):

1. Tile throughput. One diagonal tile (default 200 x 200: 200 points traced, 20 points x 10 outputs full) of the
   MLP 40->512->512->10 (outputs "trace" and "full") and of ``cnn1d()`` ("trace"), on MNIST-1D inputs, by each
   ``NTKSource`` implementation and by the naive reference: ``jax.jacrev`` of the model on the tile's points with
   respect to the whole ``ravel_pytree``-flattened parameter vector, J (N*O, P), then K = J Jᵀ (traced: the
   per-output products summed over O). Every contender is called once on the same tile shape before it is timed
   (warm-up: JIT compilation is excluded from the times). A contender whose time (or Jacobian memory) on the full
   tile is bounded above ``--cap`` seconds (max of the fit below and a power-law extrapolation with the probes'
   exponent, clipped to [2, 3]) (or a quarter of the machine's memory) is not run there: it is timed on two
   smaller tiles, the time fitted as a*N + b*N^2 (N = points) and extrapolated; such rows say "est.".
2. Memory per tile: peak RSS growth over the RSS just before the call (psutil, sampled every 10 ms in a thread)
   during the timed call of section 1, as a multiple of the tile's bytes (float64). An estimated row reports the
   memory of its largest measured tile, as a multiple of that tile's bytes.
3. float32 vs float64 formation: an MLP trained a few Adam steps on MNIST-1D; log det(K + d I) for K formed in
   float64 (reference), in float32 and cast to float64 for the factorization, and in float32 and factored in
   float32 (scipy's spotrf), for d = rel * mean(diag K); relative errors against the float64 reference.
4. End-to-end: log det of the full-output NTK of a trained MLP (n = --e2e-n points, m = 10 n) on a local
   cluster of --workers processes x 1 thread. Split: the run is timed once with the NTKSource (tiles computed
   on the workers, inside the factorization's tasks) and once on the same matrix saved to a .npy file
   (factorization only, memory-mapped on the workers); tile time = first - second. The issue's size is
   ``--e2e-n 2000`` (m = 20,000).
5. neural-tangents (only with ``--nt-python``): its structured derivatives (``empirical_ntk_fn``,
   implementation 3) against ours on the same MLP, weights and points: one traced tile of --nt-tile points and
   one full tile of --nt-tile/10 points, for each of --nt-sizes. neural-tangents does not import with current
   JAX, so it runs in its own environment (e.g. its GitHub head on jax 0.5.3): benchmarks/nt_peer.py is run by
   that Python once per round, interleaved with ours, and times its calls itself after a warm-up; the tiles are
   compared entry by entry (a cross-check of both). A peer environment that works (nothing of it is committed):
       python3.11 -m venv PEER && PEER/bin/pip install "jax[cpu]==0.5.3" frozendict absl-py
       git clone https://github.com/google/neural-tangents NT      # its GitHub head (the releases need older JAX)
       python benchmarks/ntk.py --skip tiles cnn f32 e2e --nt-python PEER/bin/python --nt-pythonpath NT
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

import numpy as np

IMPLS = ("structured", "ntvp", "jacobian")


# ---- measurement helpers -------------------------------------------------------------------------------------------

class RSSPeak:
    """Peak RSS growth of this process over its RSS at entry, sampled every ``interval`` seconds in a thread."""

    def __init__(self, interval=0.01):
        import psutil

        self.proc, self.interval = psutil.Process(), interval
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self.base = self.peak = self.proc.memory_info().rss
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.growth = self.peak - self.base


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


class Naive:
    """The reference: jax.jacrev w.r.t. the whole flattened parameter vector on the tile's points, K = J Jᵀ."""

    def __init__(self, f, params, x, outputs):
        import jax
        import jax.numpy as jnp
        from jax.flatten_util import ravel_pytree

        from dlogdet.ntk import jax_context

        self.x, self.outputs, self.ctx = x, outputs, jax_context
        with jax_context(True):
            theta, unravel = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, params))
        self.theta, self.P = theta, theta.size

        def tile(theta, xs):  # diagonal tile: the rows' and the columns' points are the same
            J = jax.jacrev(lambda th: f(unravel(th), xs).reshape(-1))(theta)      # (N*O, P)
            if outputs == "full":
                return J @ J.T
            N = xs.shape[0]
            J = J.reshape(N, -1, J.shape[-1])
            return jnp.einsum("iop,jop->ij", J, J) / J.shape[1]

        self.fn = jax.jit(tile)

    def tile(self, r0, r1, c0, c1):
        assert (r0, r1) == (c0, c1)
        with self.ctx(True):
            return np.asarray(self.fn(self.theta, self.x[self.pts(r0, r1)]))

    def pts(self, r0, r1):
        return slice(r0 // self.O, r1 // self.O) if self.outputs == "full" else slice(r0, r1)


def _contenders(f, params, x, outputs):
    from dlogdet.ntk import NTKSource

    out = {impl: NTKSource(f, params, x, outputs=outputs, implementation=impl) for impl in IMPLS}
    naive = Naive(f, params, x, outputs)
    naive.O = out["structured"].n_outputs
    out["jacrev (naive)"] = naive
    return out


def _jac_bytes(name, src, n_pts, O, P):
    """Bytes of the Jacobians a contender holds for a diagonal tile of n_pts points (0 if it forms none)."""
    if name in ("jacobian", "jacrev (naive)"):
        return 2 * n_pts * O * P * 8            # the Jacobian and (jacrev's) the cotangent batch of the same size
    return 0


def tile_section(label, f, params, x, outputs, n_pts, args, rows):
    """Time (and measure the memory of) one n_pts-point diagonal tile by every contender."""
    import psutil

    srcs = _contenders(f, params, x, outputs)
    s = srcs["structured"]
    O, P = s.n_outputs, s.n_params
    per = O if outputs == "full" else 1
    T = n_pts * per
    mem_cap = psutil.virtual_memory().total / 4
    print(f"\n[{label}] outputs={outputs}, P = {P}, O = {O}; tile {T} x {T} ({n_pts} points), "
          f"{T * T * 8 / 2**20:.2f} MiB in float64", flush=True)
    res = {}
    ref = None
    for name in ("structured", "ntvp", "jacobian", "jacrev (naive)"):
        if name in args.skip:
            continue
        src = srcs[name]
        # a ladder of diagonal tiles of k = n1, 2 n1, 4 n1, ... points up to n_pts (each shape called once to
        # compile, then timed with its memory): climb while the next rung, predicted from the last rung with the
        # last two rungs' exponent (clipped to [2, 3]: a tile has N^2 entries), costs at most cap/2 for its two
        # calls and its Jacobians fit in a quarter of RAM. Small probes alone mislead: CNN1D's vmap(jacrev) looked
        # quadratic from 10 and 20 points and then took minutes on 200.
        k = max(1, min(n_pts, args.probe if outputs == "trace" else max(1, args.probe // 10)))
        probes, expo, stop = [], 2.0, ""
        while True:
            src.tile(0, k * per, 0, k * per)                          # warm-up (compilation)
            with RSSPeak() as mem:
                t, _ = timed(lambda: src.tile(0, k * per, 0, k * per))
            probes.append((k, t, mem.growth))
            if len(probes) >= 2 and probes[-2][1] > 0 and t > 0:
                expo = float(np.clip(np.log(t / probes[-2][1]) / np.log(k / probes[-2][0]), 2, 3))
            if k >= n_pts:
                break
            k_next = min(n_pts, 2 * k)
            if _jac_bytes(name, src, k_next, O, P) > mem_cap:
                stop = (f"; its Jacobians at {k_next} points, ~{_jac_bytes(name, src, k_next, O, P) / 2**30:.1f} "
                        f"GiB, exceed 1/4 of RAM")
                break
            if 2 * t * (k_next / k) ** expo > args.cap:
                stop = f"; {k_next} points predicted at {t * (k_next / k) ** expo:.1f} s per call"
                break
            k = k_next
        kl, tl, ml = probes[-1]
        if kl < n_pts:
            est = tl * (n_pts / kl) ** expo
            lo = f"{probes[-2][0]} and " if len(probes) >= 2 else ""
            why = f"est. from tiles of {lo}{kl} points (exponent {expo:.2f}){stop}"
            res[name] = dict(times=[est], est=True, mem=ml / ((kl * per) ** 2 * 8), why=why, mem_tile=kl * per)
            print(f"  {name:15s} not run on the full tile (cap {args.cap:g} s per call, or memory): {why}",
                  flush=True)
            continue
        res[name] = dict(times=[], est=False, mem=0.0, why="", mem_tile=T)
    # the measured contenders, interleaved round by round
    live = [n for n in res if not res[n]["est"]]
    for rnd in range(args.repeat):
        for name in live:
            with RSSPeak() as mem:
                t, K = timed(lambda: srcs[name].tile(0, T, 0, T))
            res[name]["times"].append(t)
            res[name]["mem"] = max(res[name]["mem"], mem.growth / (T * T * 8))
            if ref is None:
                ref = K
            else:
                err = np.abs(K - ref).max() / np.abs(ref).max()
                res[name]["why"] = f"max rel. diff. vs structured {err:.1e}"
            del K
    base = "jacrev (naive)"
    for name, r in res.items():
        t = statistics.median(r["times"])
        ratio = ""
        if base in res and name != base:
            # ratios within rounds where both ran; else of the medians (one side estimated)
            if not r["est"] and not res[base]["est"]:
                q = statistics.median(b / a for a, b in zip(r["times"], res[base]["times"]))
            else:
                q = statistics.median(res[base]["times"]) / t
            ratio = f"{q:9.1f}x"
        e = " est." if r["est"] else "     "
        print(f"  {name:15s} {t:10.4f} s/tile{e}  {1 / t:10.3f} tiles/s  naive/this {ratio:>10s}   "
              f"peak RSS growth {r['mem']:7.1f}x tile ({r['mem_tile']}x{r['mem_tile']})   {r['why']}", flush=True)
        rows.append((label, outputs, name, t, r["est"]))
    return res


# ---- section 3: float32 vs float64 ------------------------------------------------------------------------------

def _logdet_chol(K, d, dtype):
    import scipy.linalg

    M = np.array(K, dtype=dtype)
    M[np.diag_indices_from(M)] += dtype(d)
    try:
        c, _ = scipy.linalg.cho_factor(M, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return float("nan")
    diag = np.diag(c).astype(np.float64)
    if not np.all(diag > 0):
        return float("nan")
    return 2.0 * float(np.sum(np.log(diag)))


def f32_section(args):
    from dlogdet.ntk import NTKSource, load_dataset, mlp, train

    n_train = max(args.f32_n, args.f32_n_full)
    x, y = load_dataset("mnist1d", n_train, seed=0)
    f, p0 = mlp((40, 512, 512, 10))
    t, (params, hist) = timed(lambda: train(f, p0, x, y, steps=args.train_steps, lr=1e-3, batch=128))
    print(f"\n[float32 vs float64 formation] MLP 40->512->512->10 trained {args.train_steps} Adam steps on "
          f"{n_train} MNIST-1D points ({t:.1f} s; accuracy {hist['accuracy_initial']:.2f} -> "
          f"{hist['accuracy_final']:.2f}); structured tiles; d = rel * mean(diag K)")
    print(f"  {'kernel':22s} {'rel':>8s} {'logdet f64':>14s} {'f32 form, f64 chol':>20s} {'f32 form+chol':>16s}")
    for outputs, n in (("trace", args.f32_n), ("full", args.f32_n_full)):
        xs = x[:n]
        K64 = NTKSource(f, params, xs, outputs=outputs, implementation="structured").dense()
        K32 = NTKSource(f, params, xs, outputs=outputs, implementation="structured", dtype=np.float32).dense()
        assert K32.dtype == np.float32
        scale = float(np.mean(np.diag(K64)))
        for rel in args.f32_rel:
            d = rel * scale
            ref = _logdet_chol(K64, d, np.float64)
            a = _logdet_chol(K32.astype(np.float64), d, np.float64)
            b = _logdet_chol(K32, d, np.float32)

            def fmt(v):
                return "not PD" if np.isnan(v) else f"{abs(v - ref) / abs(ref):.2e}"

            print(f"  {outputs + f' m={K64.shape[0]}':22s} {rel:8.0e} {ref:14.6g} {fmt(a):>20s} {fmt(b):>16s}",
                  flush=True)


# ---- section 4: end to end --------------------------------------------------------------------------------------

def e2e_section(args):
    from distributed import Client, LocalCluster

    import dlogdet
    from dlogdet.engine.plan import auto_block_size
    from dlogdet.ntk import NTKSource, load_dataset, mlp, train

    n = args.e2e_n
    x, y = load_dataset("mnist1d", n, seed=0)
    f, p0 = mlp((40, 512, 512, 10))
    t_train, (params, hist) = timed(lambda: train(f, p0, x, y, steps=args.train_steps, lr=1e-3, batch=128))
    src = NTKSource(f, params, x, outputs="full", implementation="structured")
    m = src.shape[0]
    tmp = tempfile.mkdtemp(prefix="dlogdet-ntk-bench-")
    path = os.path.join(tmp, "K.npy")
    # the same matrix on disk, formed here row panel by row panel (serial; reported, not part of the split)
    t0 = time.perf_counter()
    K = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(m, m))
    step = 10 * max(1, 2000 // 10)
    diag_sum = 0.0
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        panel = src.tile(r0, r1, 0, m)
        K[r0:r1] = panel
        diag_sum += float(np.trace(panel[:, r0:r1]))
    K.flush()
    del K, panel
    t_form = time.perf_counter() - t0
    d = args.e2e_rel * diag_sum / m
    print(f"\n[end-to-end] full-output NTK of the MLP trained {args.train_steps} steps ({t_train:.1f} s) on n = {n} "
          f"MNIST-1D points: m = {m}, d = {args.e2e_rel:g} * mean(diag K) = {d:.3g}; {args.workers} workers x 1 "
          f"thread; the .npy formed serially here in {t_form:.1f} s (not in the split)", flush=True)
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as client:
        bs = args.block_size or auto_block_size(m, args.workers)
        # warm-up at the same block size (imports, JIT of the diagonal and off-diagonal tile shapes on the
        # workers); a last partial tile row of the real run may still compile inside its timing
        small = NTKSource(f, params, x[:min(n, 3 * -(-bs // 10))], outputs="full", implementation="structured")
        dlogdet.logdet(small, d=d, client=client, block_size=bs)
        dlogdet.logdet(small.dense(), d=d, client=client, block_size=bs)
        t_src, r_src = timed(lambda: dlogdet.logdet(src, d=d, client=client, block_size=bs))
        t_npy, r_npy = timed(lambda: dlogdet.logdet(path, d=d, client=client, block_size=bs))
    print(f"  NTKSource (tiles + factorization) : {t_src:8.2f} s   logdet {r_src.logdet:.10g}, block size {bs}")
    print(f"  same matrix from .npy (factor.)   : {t_npy:8.2f} s   logdet {r_npy.logdet:.10g} "
          f"(|diff| {abs(r_src.logdet - r_npy.logdet):.1e})")
    print(f"  split (timing difference, .npy method): NTK tiles {t_src - t_npy:8.2f} s "
          f"({100 * (t_src - t_npy) / t_src:.0f}%), factorization {t_npy:8.2f} s ({100 * t_npy / t_src:.0f}%)")
    os.remove(path)
    os.rmdir(tmp)


# ---- section 5: neural-tangents ----------------------------------------------------------------------------------

def nt_section(args):
    import subprocess

    from dlogdet.ntk import NTKSource, load_dataset, mlp

    peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nt_peer.py")
    env = dict(os.environ)
    if args.nt_pythonpath:
        env["PYTHONPATH"] = args.nt_pythonpath
    tmp = tempfile.mkdtemp(prefix="dlogdet-nt-bench-")
    print(f"\n[neural-tangents] structured derivatives (empirical_ntk_fn, implementation=3) in {args.nt_python}, "
          f"vs dlogdet structured here; float64, median of {args.repeat} round(s), peer times measured inside its "
          f"process after a warm-up call", flush=True)
    for sizes in args.nt_sizes:
        sizes = tuple(int(v) for v in sizes.split(","))
        f, params = mlp(sizes, seed=0)
        if sizes[0] == 40:
            x, _ = load_dataset("mnist1d", args.nt_tile, seed=0)
            what = "MNIST-1D"
        else:
            x = np.random.default_rng(0).standard_normal((args.nt_tile, sizes[0]))
            what = "Gaussian"
        for outputs, n_pts in (("trace", args.nt_tile), ("full", max(1, args.nt_tile // 10))):
            xs = x[:n_pts]
            inp, out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
            arrays = {f"W{l}": q["W"] for l, q in enumerate(params)} | {f"b{l}": q["b"] for l, q in enumerate(params)}
            np.savez(inp, x=xs, beta=f.beta, outputs=int(outputs == "full"), **arrays)
            src = NTKSource(f, params, xs, outputs=outputs, implementation="structured")
            T = src.n
            src.tile(0, T, 0, T)                                       # warm-up: compilation
            ours, theirs, ratios = [], [], []
            for _ in range(args.repeat):
                t, K = timed(lambda: src.tile(0, T, 0, T))
                proc = subprocess.run([args.nt_python, peer, inp, out], env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"  the neural-tangents run failed:\n{proc.stderr[-2000:]}")
                    return
                res = np.load(out)
                tp = float(np.median(res["times"]))
                ours.append(t)
                theirs.append(tp)
                ratios.append(tp / t)
            err = np.abs(res["K"] - K).max() / np.abs(K).max()
            q = statistics.median(ratios)
            print(f"  MLP {'-'.join(map(str, sizes))} on {what}, {outputs:5s} tile {T}x{T}: dlogdet "
                  f"{statistics.median(ours):8.3f} s, neural-tangents {statistics.median(theirs):8.3f} s (jax "
                  f"{res['jax']}): nt/dlogdet {q:6.2f}x {'(faster: MET)' if q > 1 else '(NOT MET)'}; "
                  f"max rel. diff. {err:.1e}", flush=True)
    for name in os.listdir(tmp):
        os.remove(os.path.join(tmp, name))
    os.rmdir(tmp)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tile", type=int, default=200, help="points of the traced tile (tile = tile x tile)")
    ap.add_argument("--tile-full", type=int, default=20, help="points of the full-output tile (10x as many rows)")
    ap.add_argument("--tile-cnn", type=int, default=200, help="points of the CNN's traced tile")
    ap.add_argument("--probe", type=int, default=10, help="points of the smaller probe tile (traced; /10 full)")
    ap.add_argument("--cap", type=float, default=30.0, help="seconds per call: a slower contender is estimated, not run")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the measured contenders in section 1")
    ap.add_argument("--f32-n", type=int, default=300)
    ap.add_argument("--f32-n-full", type=int, default=40)
    ap.add_argument("--f32-rel", type=float, nargs="+", default=[1e-6, 1e-4, 1e-2])
    ap.add_argument("--train-steps", type=int, default=50)
    ap.add_argument("--e2e-n", type=int, default=300)
    ap.add_argument("--e2e-rel", type=float, default=1e-6, help="jitter d as a multiple of mean(diag K)")
    ap.add_argument("--block-size", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--nt-python", metavar="PYTHON", default=None,
                    help="a Python in which neural_tangents imports: run section 5 against it")
    ap.add_argument("--nt-pythonpath", metavar="DIRS", default=None, help="PYTHONPATH for --nt-python")
    ap.add_argument("--nt-tile", type=int, default=1000, help="points of section 5's traced tile (full: /10)")
    ap.add_argument("--nt-sizes", nargs="+", default=["40,512,512,10", "784,512,512,10"],
                    help="MLP widths of section 5 (input 40: MNIST-1D points; else Gaussian points)")
    ap.add_argument("--skip", nargs="*", default=[],
                    help="sections (tiles, cnn, f32, e2e) or contenders (structured, ntvp, jacobian, "
                         "'jacrev (naive)') to leave out")
    args = ap.parse_args()

    from dlogdet.ntk import cnn1d, load_dataset, mlp

    t_all = time.perf_counter()
    print("Times exclude JIT compilation (each contender is called once on the same tile shape first); "
          "float64, 'highest' matmul precision; ratios naive/this > 1 mean faster than the naive jacrev.")
    rows = []
    n_x = max(args.tile, args.tile_full, args.tile_cnn)
    x, _ = load_dataset("mnist1d", n_x, seed=0)
    if "tiles" not in args.skip:
        f, params = mlp((40, 512, 512, 10))
        r_tr = tile_section("MLP 40-512-512-10", f, params, x, "trace", args.tile, args, rows)
        r_fu = tile_section("MLP 40-512-512-10", f, params, x, "full", args.tile_full, args, rows)
    if "cnn" not in args.skip:
        f, params = cnn1d()
        tile_section("CNN1D()", f, params, x, "trace", args.tile_cnn, args, rows)
    if "tiles" not in args.skip:
        print()
        for lab, r in (("traced", r_tr), ("full", r_fu)):
            if "structured" in r and "jacobian" in r:
                q = statistics.median(r["jacobian"]["times"]) / statistics.median(r["structured"]["times"])
                e = " (jacobian estimated)" if r["jacobian"]["est"] else ""
                print(f"target: structured >= 100x faster than Jacobian contraction, MLP {lab:6s}: {q:8.1f}x{e}  "
                      f"{'MET' if q >= 100 else 'NOT MET'}")
    if "f32" not in args.skip:
        f32_section(args)
    if "e2e" not in args.skip:
        e2e_section(args)
    if args.nt_python and "nt" not in args.skip:
        nt_section(args)
    print(f"\ntotal wall time {time.perf_counter() - t_all:.1f} s")


if __name__ == "__main__":
    main()
