"""The exact engine on one GPU: factorization rate as a fraction of the GPU's FP64 matrix-multiply rate.

    python benchmarks/gpu.py [--n 65536] [--block-size 8192] [--gemm 8192] [--ntk-tile 1000]

1. FP64 GEMM rate: C = A @ B for --gemm x --gemm CuPy float64 matrices, best of 5 (2 n^3 flops each), measured
   in this run on this GPU (what the factorization could reach at best).
2. Factorization: log det of an n x n SPD matrix A = G Gᵀ/k + I (G Gaussian, n x k, k = 1024), formed in GPU
   memory (a CuPy array: no host transfer), by dlogdet's tiled Cholesky with the CuPy backend, threaded scheduler
   in this process (one GPU). Rate = (n^3 / 3) / wall time; printed as a fraction of (1). Target: >= 70% at n = 65,536.
   For n where an in-GPU cupy.linalg.cholesky of the whole matrix fits, it is timed too, as the vendor baseline.
3. NTK tiles per second on the GPU (structured, MLP 40-512-512-10, traced and full) when JAX sees a GPU.

Needs CuPy and a CUDA device; without them it says so and exits with status 2 (nothing is measured).
"""

from __future__ import annotations

import argparse
import sys
import time


def gemm_rate(cp, m: int) -> float:
    a = cp.random.standard_normal((m, m))
    b = cp.random.standard_normal((m, m))
    cp.matmul(a, b)
    cp.cuda.Device().synchronize()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        cp.matmul(a, b)
        cp.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * m ** 3 / best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[16384, 65536])
    ap.add_argument("--block-size", type=int, default=8192)
    ap.add_argument("--gemm", type=int, default=8192)
    ap.add_argument("--ntk-tile", type=int, default=1000)
    args = ap.parse_args()
    try:
        import cupy as cp

        cp.cuda.runtime.getDeviceCount()
        name = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception as e:  # no CuPy, no driver, no device
        print(f"benchmarks/gpu.py: no usable CUDA device ({type(e).__name__}: {e}); nothing measured")
        sys.exit(2)

    import dlogdet

    peak = gemm_rate(cp, args.gemm)
    print(f"[GPU] {name}: FP64 GEMM {args.gemm}^2: {peak / 1e12:.2f} TFLOP/s (best of 5)")
    for n in args.n:
        k = 1024
        G = cp.random.default_rng(0).standard_normal((n, k))
        A = G @ G.T / k
        A[cp.diag_indices(n)] += 1.0
        del G
        bs = min(args.block_size, n)
        dlogdet.logdet(A[:2 * bs, :2 * bs], block_size=bs, backend="cupy")      # warm-up: cuBLAS/cuSOLVER
        cp.cuda.Device().synchronize()
        t = time.perf_counter()
        r = dlogdet.logdet(A, block_size=bs, backend="cupy")
        wall = time.perf_counter() - t
        rate = n ** 3 / 3 / wall
        line = (f"[factorization] n = {n}, block {bs}: {wall:.2f} s, {rate / 1e12:.2f} TFLOP/s = "
                f"{100 * rate / peak:.1f}% of FP64 GEMM (target >= 70% at n = 65,536); logdet {r.logdet:.10g}")
        if 8 * n * n * 1.2 < cp.cuda.Device().mem_info[0]:
            t = time.perf_counter()
            L = cp.linalg.cholesky(A)
            ref = 2 * float(cp.log(cp.diagonal(L)).sum())
            wall_c = time.perf_counter() - t
            line += (f"; cupy.linalg.cholesky whole: {wall_c:.2f} s ({100 * n ** 3 / 3 / wall_c / peak:.1f}%), "
                     f"|diff| {abs(ref - r.logdet):.1e}")
            del L
        del A
        cp.get_default_memory_pool().free_all_blocks()
        print(line, flush=True)
    try:
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
    except Exception:
        gpus = []
    if not gpus:
        print("[NTK] JAX sees no GPU (install jax[cuda12]); NTK tiles on the GPU not measured")
        return
    from dlogdet.ntk import NTKSource, load_dataset, mlp

    f, params = mlp((40, 512, 512, 10))
    x, _ = load_dataset("mnist1d", args.ntk_tile, seed=0)
    for outputs, pts in (("trace", args.ntk_tile), ("full", args.ntk_tile // 10)):
        s = NTKSource(f, params, x[:pts], outputs=outputs, implementation="structured")
        s.tile(0, s.n, 0, s.n)
        t = time.perf_counter()
        s.tile(0, s.n, 0, s.n)
        dt = time.perf_counter() - t
        print(f"[NTK] MLP 40-512-512-10 {outputs} {s.n}x{s.n} tile on {gpus[0]}: {dt:.3f} s, {1 / dt:.1f} tiles/s")


if __name__ == "__main__":
    main()
