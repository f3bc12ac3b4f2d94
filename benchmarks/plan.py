"""The simulated cluster against measured local runs: predicted and measured wall time, side by side.

    python benchmarks/plan.py [--grid quick|full] [--scratch DIR]

For 1, 2 and 4 local worker processes (1 thread each, loopback only), in worker memory and out of core (the tile
store, forced by dask config dlogdet.memory.mode = store under a 96 MiB budget), n from 4,000 to 16,000: the
Kronecker matrix A ⊗ B (tiles generated on the workers, log det checked against its closed form) is factored by
dlogdet.logdet on the cluster, and the engine's graph for the same n, tile and workers is replayed by
dlogdet.runtime.simulate with rates measured here, just before the run:

* on every worker at once, median over workers and 2 rounds, each kernel repeated for at least 0.25 s
  (dlogdet.runtime.calibrate.calibrate_tasks): the flop rates of the engine's kernels on one BLAS thread at the run's
  tile size b (trailing update, factor, panel solve, diagonal update), and the share of a core their thread had
  meanwhile (its CPU time over its wall time); loads, generating one b×b tile of the source and checking it, as
  the first task that reads it does;
* out of core, the tile store's rate on a core of its own as the engine's store tasks use it, in a graph
  (dlogdet.runtime.calibrate.calibrate_store_cpu, before and after the run): chains of store tasks on every worker at
  once, each reading two b×b tiles, writing one, logging it and deleting its input in the scratch directory, charged
  with the CPU time of the cluster's processes less their CPU per task (calibrate_task_cpu): bytes per CPU second;
* per-task costs and network, just before the run: dlogdet.runtime.calibrate.calibrate_cluster on the same cluster
  (200 tiny tasks, chains of 40, alternating between two workers or not, a 16 MiB transfer between two workers);
* the cores: the local workers, the scheduler (a thread of this process) and everything else on the machine share
  its cores. The simulation gives each task its rate on a core of its own (the measured rate over the share of a
  core it had) and shares the cores the run had among the running tasks and the working scheduler (processor
  sharing, dlogdet.runtime.simulate.replay's cores): the machine's cores less the load of the other processes
  (dlogdet.runtime.calibrate.CpuMeter: the machine's busy time less the CPU time of this process and the workers).

The task rates are measured just before the run and again just after it: "simulated" uses both (harmonic means:
time per unit of work is what adds up) and the other processes' load during the run; "ahead" uses only what was
measured before the run, a forecast. Measured is the graph's wall time (diagnostics["wall_time"]: from submission
to the gathered log-pivots), the quantity the simulation predicts. The
target: within 25%. Both sides are measured on the same machine at the same
moment, but a machine shared with other jobs slows runs and calibrations unevenly: read the ratios together with
the load average printed at the start and the end.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import numpy as np

QUICK = {  # workers -> [(n, mode)]: every worker count in both modes, n from 4,000 to 16,000, a few minutes
    1: [(4000, "memory"), (4000, "store"), (8000, "memory")],
    2: [(4000, "memory"), (8000, "memory"), (8000, "store"), (16000, "memory"), (16000, "store")],
    4: [(4000, "memory"), (4000, "store"), (8000, "memory"), (8000, "store")],
}
FULL = {w: [(n, mode) for n in (4000, 8000, 16000) for mode in ("memory", "store")] for w in (1, 2, 4)}
FACTORS = {4000: (50, 80), 8000: (80, 100), 12000: (100, 120), 16000: (100, 160)}   # n = m·p
STORE_BUDGET = 96 * 2**20


KERNELS = ("potrf", "trsm", "syrk", "gemm")


def per_core(got: dict) -> dict:
    """Rates of a task on a core of its own: the measured rates over the share of a core the kernels' thread had
    while timed (the operating system's CPU time of the thread over its wall time). The tile store's and the
    loads' too: on this machine they are copies through the page cache, the core's work, slowed alike."""
    share = got["core_share"]
    return {k: v / share for k, v in got.items() if k != "core_share"}


def run_config(client, workers: int, n: int, mode: str, scratch: str, pids: list[int]) -> dict:
    import dask

    import dlogdet
    from dlogdet.engine.plan import plan_exact
    from dlogdet.runtime import memory
    from dlogdet.runtime.calibrate import (CpuMeter, calibrate_cluster, calibrate_store_cpu, calibrate_task_cpu,
                                           calibrate_tasks)
    from dlogdet.runtime.simulate import SimRates, simulate
    from dlogdet.sources.kron import KronSource

    m, p = FACTORS[n]
    src = KronSource.random(m, p, seed=n)
    cfg = {"dlogdet.memory.mode": mode}
    budget = STORE_BUDGET if mode == "store" else None
    cores = os.cpu_count() or 1
    with dask.config.set(cfg):
        resolved = memory.resolve(budget, client)
        ep = plan_exact(n, itemsize=8, assume="spd", workers=workers, budget=resolved.bytes)
        b = ep.block_size
        where = scratch if mode == "store" else None
        cal = calibrate_cluster(client, tasks=200, chain=40, nbytes=16 * 2**20)
        cal.setdefault("network_bytes", (math.inf, "one worker: nothing moves"))
        time.sleep(0.3)                   # the calibration's results released
        with CpuMeter(pids) as idle:      # the cluster's own load when it has nothing to do (heartbeats, monitors)
            time.sleep(1.0)
        task_cpu = calibrate_task_cpu(client, b, pids)[0]
        before = {k: v[0] for k, v in calibrate_tasks(client, b, src, where, rounds=2).items()}
        store_cpu = []                    # out of core: the store's rate per core, in a graph of store tasks

        def store_rate() -> None:
            if mode == "store":
                store_cpu.append(calibrate_store_cpu(client, b, pids, scratch, task_cpu)[0])
        store_rate()
        with CpuMeter(pids) as m_run:
            t0 = time.perf_counter()
            r = dlogdet.logdet(src, client=client, budget=budget, scratch=scratch)
            call = time.perf_counter() - t0
        after = {k: v[0] for k, v in calibrate_tasks(client, b, src, where, rounds=2).items()}
        store_rate()
    d = r.diagnostics
    assert d["block_size"] == b and d["mode"] == mode, (d["block_size"], b, d["mode"], mode)
    rel = abs(r.logdet - src.closed_form_logdet()) / abs(src.closed_form_logdet())

    def free_cores(share: float) -> float:
        """The cores this run's threads can have: the machine's, times the share of them its workers got when all
        of them computed at once (other processes, the hypervisor's steal and nice levels all show in it; fewer
        workers than cores measure the share of the cores they load), less the cluster's idle load."""
        return max(0.25, cores * min(1.0, share * workers / min(workers, cores)) - idle.ours / idle.wall)

    def sim_with(got: dict, free: float):
        rates = SimRates(gemm_flops=got["gemm_flops"], network_bytes=cal["network_bytes"][0],
                         io_bytes=got["io_bytes"] if mode == "store" else math.inf,
                         load_bytes=got["load_bytes"], task_seconds=cal["task_seconds"][0],
                         task_latency=cal["task_latency"][0],
                         transfer_latency=cal.get("transfer_latency", (0.0, ""))[0],
                         kind_flops={k: got[f"{k}_flops"] for k in KERNELS},
                         task_cpu=max(0.0, task_cpu - cal["task_seconds"][0] - cal["task_latency"][0]))
        return simulate(n, b, workers, rates, mode=mode, cores=free), rates

    # time per unit of work is what adds up: the per-core rates before and after are averaged harmonically
    pb, pa = per_core(before), per_core(after)
    alone = 2.0 / (1.0 / pb["io_bytes"] + 1.0 / pa["io_bytes"]) if store_cpu else math.inf
    if store_cpu:   # the store's CPU per byte in a graph (the cluster's, as the engine's store tasks use it), not
        # one tile's save and load timed alone over the kernels' share of a core
        pb["io_bytes"], pa["io_bytes"] = store_cpu
    both = {k: 2.0 / (1.0 / pb[k] + 1.0 / pa[k]) for k in pb}
    # during the run: the cores other processes left it (the machine's busy time less the cluster's), less the
    # cluster's idle load; before it (a forecast): what the workers' share of a core says
    free = max(0.25, cores - m_run.background - idle.ours / idle.wall)
    free_ahead = free_cores(before["core_share"])
    sim, rates = sim_with(both, free)
    sim_alone = sim_with({**both, "io_bytes": alone}, free)[0] if store_cpu else sim   # as before calibrate_store_cpu
    ahead, _ = sim_with(pb, free_ahead)
    return dict(n=n, workers=workers, mode=mode, b=b, tasks=d["n_tasks"], measured=d["wall_time"], call=call,
                sim=sim, sim_alone=sim_alone, ahead=ahead, rates=rates, rel=rel, drift=pa["gemm_flops"] / pb["gemm_flops"],
                cal=cal, cores=free, cores_ahead=free_ahead, task_cpu=task_cpu, share=before["core_share"],
                ours=m_run.ours / m_run.wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", choices=("quick", "full"), default="quick")
    ap.add_argument("--scratch", default=None, help="directory of the tile stores (default: the temporary one)")
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    import dlogdet
    grid = QUICK if args.grid == "quick" else FULL
    scratch = args.scratch or tempfile.gettempdir()
    t_start = time.perf_counter()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; Kronecker matrices A (x) B, "
          f"spd, float64; store runs under a {STORE_BUDGET // 2**20} MiB budget per worker", flush=True)
    rows = []
    for workers, configs in grid.items():
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as client:
            dlogdet.logdet("kron:m=20,p=20", client=client)          # warm-up: imports on the workers
            from dlogdet.runtime.calibrate import cluster_pids
            pids = cluster_pids(client)
            print(f"{workers} worker(s)", flush=True)
            for n, mode in configs:
                row = run_config(client, workers, n, mode, scratch, pids)
                rows.append(row)
                s, cal = row["sim"], row["cal"]
                print(f"  rates: scheduler {cal['task_seconds'][0] * 1e3:.1f} ms/task, worker "
                      f"{cal['task_latency'][0] * 1e3:.1f} ms/task, network {cal['network_bytes'][0] / 1e9:.2f} GB/s"
                      f" + {cal.get('transfer_latency', (0.0,))[0] * 1e3:.1f} ms/fetch, cluster CPU "
                      f"{row['task_cpu'] * 1e3:.1f} ms/task; cores free for the run {row['cores']:.2f} (before it "
                      f"{row['cores_ahead']:.2f}); the cluster's processes used {row['ours']:.2f} cores; kernels had "
                      f"{row['share']:.2f} of a core each when timed"
                      + (f"; store {row['rates'].io_bytes / 1e9:.2f} GB/s per core in a graph (simulated "
                         f"{row['sim_alone'].time_s:.2f} s, ratio {row['sim_alone'].time_s / row['measured']:.2f}, "
                         f"with the store timed alone)" if mode == "store" else ""), flush=True)
                print(f"  n={n:>6} {mode:<6} b={row['b']:>5} tasks={row['tasks']:>5}  measured {row['measured']:7.2f} s"
                      f"  simulated {s.time_s:7.2f} s  ratio {s.time_s / row['measured']:.2f}  (ahead "
                      f"{row['ahead'].time_s:.2f} s; GEMM {row['rates'].gemm_flops / 1e9:.1f} GFLOP/s, after/before "
                      f"{row['drift']:.2f}; |rel err| {row['rel']:.1e}; load average {os.getloadavg()[0]:.1f})", flush=True)

    print()
    head = (f"{'n':>6} {'workers':>7} {'mode':<6} {'tile':>5} {'tasks':>5} {'measured s':>10} {'simulated s':>11} "
            f"{'sim/meas':>8} {'ahead/meas':>10} {'cores':>5} {'compute':>7} {'transfers':>9} {'scheduler':>9} "
            f"{'crit.path':>9} {'net MB':>7}")
    print(head)
    print("-" * len(head))
    for row in rows:
        s = row["sim"]
        print(f"{row['n']:>6} {row['workers']:>7} {row['mode']:<6} {row['b']:>5} {row['tasks']:>5} "
              f"{row['measured']:>10.2f} {s.time_s:>11.2f} {s.time_s / row['measured']:>8.2f} "
              f"{row['ahead'].time_s / row['measured']:>10.2f} {row['cores']:>5.2f} {s.compute_s:>7.2f} "
              f"{s.transfers_s:>9.2f} {s.scheduler_s:>9.2f} {s.critical_path_s:>9.2f} {s.network_bytes / 1e6:>7.0f}")
    ratios = [row["sim"].time_s / row["measured"] for row in rows]
    within = sum(abs(r - 1) <= 0.25 for r in ratios)
    worst = max(abs(r - 1) for r in ratios)
    print()
    print(f"simulated / measured: median {float(np.median(ratios)):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}; "
          f"{within} of {len(ratios)} within 25% (target: all), worst {worst:.0%} off")
    alone = [row["sim_alone"].time_s / row["measured"] for row in rows]
    print(f"with the store timed alone (one tile saved and loaded, over the kernels' share of a core): median "
          f"{float(np.median(alone)):.2f}, range {min(alone):.2f}-{max(alone):.2f}; "
          f"{sum(abs(r - 1) <= 0.25 for r in alone)} of {len(alone)} within 25%")
    ahead = [row["ahead"].time_s / row["measured"] for row in rows]
    print(f"ahead (rates before the run only) / measured: median {float(np.median(ahead)):.2f}, range "
          f"{min(ahead):.2f}-{max(ahead):.2f}; {sum(abs(r - 1) <= 0.25 for r in ahead)} of {len(ahead)} within 25%")
    print(f"closed-form match: max |rel err| {max(row['rel'] for row in rows):.1e} (target 1e-10)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end; took {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
