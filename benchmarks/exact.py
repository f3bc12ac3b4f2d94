"""Exact engine vs its peers, in one process, on one matrix: prints wall-time ratios.

    python benchmarks/exact.py [--n 8000] [--block-size auto] [--repeat 3] [--workers 2]

Peers (same SPD float64 matrix, same machine, same moment):
  (a) scipy.linalg.cho_factor with 2 BLAS threads: LAPACK potrf in memory, the floor for the same flops;
  (b) numpy.linalg.slogdet with 2 BLAS threads: what users call today (LU, twice the flops);
  (c) a dask.array.linalg.cholesky log-determinant on the same 2-worker cluster, reading the same .npy tiles.
dlogdet reads the matrix from a .npy file on disk (memory-mapped on the workers) and, separately, from the
in-memory array (tiles scattered to the workers). Targets: <= 1.3x (a), < 1x (b), < 1x (c).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

import numpy as np


def spd_matrix(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n // 4))
    A = X @ X.T / (n // 4)
    A += np.eye(n)
    return A


class PeakSampler:
    """Peak managed and RSS bytes per worker, from the scheduler's heartbeats."""

    def __init__(self, client, interval=0.1):
        self.client, self.interval = client, interval
        self.managed, self.rss = {}, {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            for addr, w in self.client.scheduler_info().get("workers", {}).items():
                m = w.get("metrics", {})
                self.managed[addr] = max(self.managed.get(addr, 0), m.get("managed_bytes", 0))
                self.rss[addr] = max(self.rss.get(addr, 0), m.get("memory", 0))

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def _read(path, r0, r1, c0, c1):
    return np.array(np.load(path, mmap_mode="r")[r0:r1, c0:c1])


def dask_cholesky_logdet(path: str, n: int, bs: int, client):
    """log det through dask.array.linalg.cholesky on tiles read from the same .npy file."""
    import dask
    import dask.array as da

    blocks = [[da.from_delayed(dask.delayed(_read)(path, i, min(i + bs, n), j, min(j + bs, n)),
                               shape=(min(i + bs, n) - i, min(j + bs, n) - j), dtype=np.float64)
               for j in range(0, n, bs)] for i in range(0, n, bs)]
    X = da.block(blocks)
    L = da.linalg.cholesky(X, lower=True)
    ld = 2.0 * da.log(da.diagonal(L)).sum()
    n_tasks = len(ld.__dask_graph__())
    return float(client.compute(ld).result()), n_tasks


def timed(f, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8000)
    ap.add_argument("--block-size", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import scipy.linalg
    from distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    import dlogdet
    from dlogdet.graph import auto_block_size

    n, R = args.n, args.repeat
    A = spd_matrix(n)
    tmp = tempfile.mkdtemp(prefix="dlogdet-bench-")
    path = os.path.join(tmp, "A.npy")
    np.save(path, A)
    bs = args.block_size or auto_block_size(n, args.workers)
    print(f"n = {n}, float64 SPD, block size {bs}, {args.workers} workers x 1 thread, median of {R} runs")

    with threadpool_limits(limits=2, user_api="blas"):
        t_a, cf = timed(lambda: scipy.linalg.cho_factor(A, lower=True, check_finite=False), R)
        ref = 2.0 * np.sum(np.log(np.diag(cf[0])))
        t_b, (s, ld_b) = timed(lambda: np.linalg.slogdet(A), R)
    print(f"(a) scipy cho_factor, 2 BLAS threads : {t_a:7.2f} s")
    print(f"(b) numpy slogdet,    2 BLAS threads : {t_b:7.2f} s   (|logdet - (a)| = {abs(ld_b - ref):.2e})")

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        small = spd_matrix(600)
        dlogdet.logdet(small, client=client, block_size=200)          # warm-up: imports on the workers
        dask_cholesky_logdet(path, 2 * bs, bs, client)

        with PeakSampler(client) as ps_c:
            t_c, (ld_c, tasks_c) = timed(lambda: dask_cholesky_logdet(path, n, bs, client), R)
        print(f"(c) dask.array cholesky, cluster     : {t_c:7.2f} s   ({tasks_c} tasks, |err| = {abs(ld_c - ref):.2e},"
              f" peak managed/worker {max(ps_c.managed.values()) / 2**20:.0f} MiB)")

        with PeakSampler(client) as ps_d:
            t_d, r = timed(lambda: dlogdet.logdet(path, block_size=bs, client=client), R)
        print(f"dlogdet, .npy on disk, cluster       : {t_d:7.2f} s   ({r.diagnostics['n_tasks']} tasks, "
              f"|err| = {abs(r.logdet - ref):.2e}, peak managed/worker "
              f"{max(ps_d.managed.values()) / 2**20:.0f} MiB)")
        t_m, r_m = timed(lambda: dlogdet.logdet(A, block_size=bs, client=client), R)
        print(f"dlogdet, in-memory array, cluster    : {t_m:7.2f} s   (|err| = {abs(r_m.logdet - ref):.2e})")

    t_l, r_l = timed(lambda: dlogdet.logdet(A, block_size=bs), R)
    print(f"dlogdet, in-memory array, threads    : {t_l:7.2f} s   (|err| = {abs(r_l.logdet - ref):.2e})")
    print()
    print(f"ratio dlogdet(.npy, cluster) / (a) cho_factor : {t_d / t_a:5.2f}   target <= 1.3")
    print(f"ratio dlogdet(.npy, cluster) / (b) slogdet    : {t_d / t_b:5.2f}   target <  1")
    print(f"ratio dlogdet(.npy, cluster) / (c) dask chol. : {t_d / t_c:5.2f}   target <  1")
    print(f"ratio dlogdet(array, cluster) / (a)            : {t_m / t_a:5.2f}")
    print(f"ratio dlogdet(array, threads) / (a)            : {t_l / t_a:5.2f}")
    os.remove(path)
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
