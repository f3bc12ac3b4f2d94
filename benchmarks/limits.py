"""No budget given, workers with memory limits: the automatic budget against the same run with a budget given.

    python benchmarks/limits.py [--n 12000] [--memory-limit 200MiB] [--budget 64MiB] [--rounds 3] [--scratch DIR]

On a LocalCluster of 2 worker processes x 1 thread with ``--memory-limit`` each (what dask-jobqueue gives the
workers of small jobs), a .npy matrix A = X Xᵀ/m + I (X: n×m Gaussian, m = n//8; ``benchmarks/budget.py``'s
writer) is factored by ``dlogdet.logdet(path, client=client)`` with no budget (``"auto"``: from the workers'
limits) and with ``budget=--budget``, in interleaved rounds. Prints per run the mode, tile and budget chosen, the
wall time, the peak RSS per worker against the limit (scheduler heartbeats), the relative error against LAPACK
(log det(I + X Xᵀ/m) = log det(I + Xᵀ X/m), Sylvester's identity, an m×m slogdet), the planner's predicted mode
for the same cluster, and the median time ratio auto / given. Target: exact (1e-10) and about the time of the
given budget; before the automatic budget, this run ended in a FutureCancelledError or hung.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from budget import write_spd_npy  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12000)
    ap.add_argument("--memory-limit", default="200MiB")
    ap.add_argument("--budget", default="64MiB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scratch", default=None)
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    import dlogdet

    root = tempfile.mkdtemp(prefix="dlogdet-limits-", dir=args.scratch)
    path = os.path.join(root, "a.npy")
    write_spd_npy(path, args.n)
    m = max(1, args.n // 8)
    x = np.random.default_rng(0).standard_normal((args.n, m))
    _, ref = np.linalg.slogdet(np.eye(m) + x.T @ x / m)
    del x
    print(f"n = {args.n} ({args.n ** 2 * 8 / 2**30:.2f} GiB), 2 workers x {args.memory_limit}; reference "
          f"{ref:.10g} (Sylvester + LAPACK)")
    times: dict[str, list[float]] = {"auto": [], "given": []}
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=args.memory_limit, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
        plan = dlogdet.plan(args.n, client=client)
        print(f"plan for this cluster: mode {plan.mode}, tile {plan.block_size}, budget "
              f"{plan.budget_bytes / 2**20:.1f} MiB ({plan.budget_source})")
        for rnd in range(args.rounds):
            for name, budget in (("auto", None), ("given", args.budget)):
                t0 = time.perf_counter()
                r = dlogdet.logdet(path, client=client, budget=budget, scratch=os.path.join(root, "s"))
                wall = time.perf_counter() - t0
                times[name].append(wall)
                d = r.diagnostics
                peaks = ", ".join(f"{v / 2**20:.0f}" for v in d["peak_rss_bytes_per_worker"].values())
                print(f"round {rnd} {name:5s}: {d['mode']} tile {d['block_size']}, budget "
                      f"{d['budget'] / 2**20:.1f} MiB, {wall:.2f} s, peak RSS {peaks} MiB of "
                      f"{args.memory_limit}, rel. error {abs(r.logdet - ref) / abs(ref):.1e}")
    ratio = statistics.median(times["auto"]) / statistics.median(times["given"])
    print(f"median time: auto {statistics.median(times['auto']):.2f} s, given {statistics.median(times['given']):.2f}"
          f" s; ratio auto/given {ratio:.2f}")
    import shutil
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
