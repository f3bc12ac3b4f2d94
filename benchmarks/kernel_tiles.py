"""Kernel tiles: dlogdet.KernelSource against scikit-learn's kernels on the same points, in one process.

    python benchmarks/kernel_tiles.py [--n-sub 500] [--d 3] [--rounds 5]

A subsample's tile (``n_sub`` random points of 6,000 uniform in [0, 1]^d, the block an extrapolation factors for each
subsample) and a contiguous 1,000 × 1,000 tile (the exact engine's), for each kernel: dlogdet's ``block`` / ``tile``
and scikit-learn's ``RBF`` / ``Matern(nu=0.5, 1.5, 2.5)`` called on the same points (distances through
scipy's cdist), both on one BLAS thread, interleaved, median of ``--rounds`` rounds of repeated calls. Prints the
median time of each and their ratio, and the largest difference between the two (they compute the same matrix).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def timed(f, min_seconds: float = 0.2) -> float:
    f()
    reps, t0 = 0, time.perf_counter()
    while True:
        f()
        reps += 1
        if time.perf_counter() - t0 >= min_seconds:
            return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-sub", type=int, default=500)
    ap.add_argument("--d", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from sklearn.gaussian_process.kernels import RBF, Matern
    from threadpoolctl import threadpool_limits

    import dlogdet

    x = np.random.default_rng(0).uniform(size=(6000, args.d))
    pts = np.random.default_rng(1).permutation(6000)[:args.n_sub]
    ls = 0.2
    peers = {"rbf": RBF(ls), "matern12": Matern(ls, nu=0.5), "matern32": Matern(ls, nu=1.5),
             "matern52": Matern(ls, nu=2.5)}
    print(f"{args.n_sub}-point subsample tile and 1000 x 1000 tile of 6000 points in [0, 1]^{args.d}, lengthscale "
          f"{ls}; one BLAS thread; median of {args.rounds} interleaved rounds")
    with threadpool_limits(1):
        for name, peer in peers.items():
            src = dlogdet.KernelSource(x, kernel=name, lengthscale=ls)
            xs, xt = x[pts], x[:1000]
            diff = max(float(np.max(np.abs(src.block(pts, pts) - peer(xs)))),
                       float(np.max(np.abs(src.tile(0, 1000, 0, 1000) - peer(xt)))))
            ours, theirs, ours_t, theirs_t = [], [], [], []
            for _ in range(args.rounds):
                ours.append(timed(lambda: src.block(pts, pts)))
                theirs.append(timed(lambda: peer(xs)))
                ours_t.append(timed(lambda: src.tile(0, 1000, 0, 1000)))
                theirs_t.append(timed(lambda: peer(xt)))
            o, t = statistics.median(ours), statistics.median(theirs)
            ot, tt = statistics.median(ours_t), statistics.median(theirs_t)
            print(f"  {name:9s} subsample: dlogdet {o * 1e3:6.2f} ms, scikit-learn {t * 1e3:6.2f} ms, ratio "
                  f"{o / t:.2f};  1000-tile: dlogdet {ot * 1e3:6.2f} ms, scikit-learn {tt * 1e3:6.2f} ms, ratio "
                  f"{ot / tt:.2f};  max |difference| {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
