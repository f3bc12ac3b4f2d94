"""A matrix larger than this machine's memory, with a known answer: A ⊗ B out of core on 2 local workers.

    python benchmarks/scale.py [--n 57600] [--workers 2] [--budget 2GiB] [--scratch DIR]

The Kronecker product of two seeded SPD factors of order m and p = n/m (dlogdet.sources.kron; n = 57,600 = 240²
is 26.5 GB in float64, more than the 24 GB of memory of the machine it was written for) is factored by
dlogdet.logdet on a LocalCluster of ``--workers`` worker processes (1 thread each, loopback only) with the tile store
forced (dask config dlogdet.memory.mode = store) under ``--budget`` per worker. Tiles are generated on the workers
from the two factors. Printed:

* the plan and the runtime estimate, before the run: the planner's closed form and its simulated cluster
  (dlogdet.runtime.simulate), with rates measured on these workers just before (calibrate_tasks: GEMM at the run's
  tile, tile generation, tile-store round trip; calibrate_cluster: the scheduler's and the workers' cost per task);
* the log-determinant against the closed form p·log det A + m·log det B (target: 1e-10 relative);
* wall time against the prediction (target: within 25%);
* peak RSS per worker against the budget, and what it grew by from the worker's RSS just before the run (the
  baseline is outside the budget): the scheduler's samples (every 0.25 s) and, on Linux, the operating system's
  exact high-water mark (VmHWM, reset just before the run through /proc/self/clear_refs, so that the calibration's
  kernels before it do not count), for the workers and for this process (the client and the scheduler);
* bytes read and written by the workers (their processes' I/O counters: through the file system, and from/to the
  device) against the planner's tile-store traffic; peak disk space of the tile store (sampled every second).

The same function (:func:`measure`) runs at n = 4,096 in tests/test_scale.py.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import threading
import time

from dlogdet.engine.store import dir_bytes


class DiskSampler:
    """Peak bytes under a directory, sampled every ``interval`` seconds in a thread."""

    def __init__(self, root: str, interval: float = 1.0):
        self.root, self.interval, self.peak = root, interval, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, dir_bytes(self.root))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def io_counters() -> dict[str, int]:
    """This process's I/O: bytes through read/write calls (``chars``) and from/to the storage device (``bytes``)."""
    import psutil

    c = psutil.Process().io_counters()
    return {"read_chars": getattr(c, "read_chars", c.read_bytes), "write_chars": getattr(c, "write_chars",
                                                                                         c.write_bytes),
            "read_bytes": c.read_bytes, "write_bytes": c.write_bytes}


def rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's high-water mark of resident memory to its current RSS (Linux ≥ 4.0: writing 5 to
    /proc/self/clear_refs); False where the system does not allow it (the peak then includes what came before)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int | None:
    """This process's largest resident set since it started or since :func:`reset_peak_rss`, as the kernel keeps it
    (VmHWM: exact, no sampling); None where /proc is not there."""
    return _status_kib("VmHWM")


def factors(n: int) -> tuple[int, int]:
    """m, p with m·p as close to n as two nearly equal factors get (m = ⌊√n⌋)."""
    m = max(1, math.isqrt(n))
    return m, max(1, round(n / m))


def say_now(*args) -> None:
    print(*args, flush=True)


def measure(n: int, workers: int, budget: str | int, scratch: str, *, say=say_now, seed: int = 0) -> dict:
    """Plan, predict, run and measure one out-of-core run of the Kronecker matrix (module doc); returns the numbers."""
    import dask
    from distributed import Client, LocalCluster

    import dlogdet
    from dlogdet.core.config import parse_bytes
    from dlogdet.engine.plan import plan_exact
    from dlogdet.runtime.calibrate import calibrate_cluster, calibrate_tasks
    from dlogdet.runtime.costs import human_time, traffic
    from dlogdet.runtime.simulate import SimRates, simulate
    from dlogdet.sources.kron import KronSource

    m, p = factors(n)
    src = KronSource.random(m, p, seed=seed)
    n = src.n
    budget_b = parse_bytes(budget)
    out: dict = {"n": n, "m": m, "p": p, "workers": workers, "budget": budget_b,
                 "matrix_bytes": n * n * 8}
    with dask.config.set({"dlogdet.memory.mode": "store"}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as client:
        ep = plan_exact(n, itemsize=8, assume="spd", workers=workers, budget=budget_b)
        b = ep.block_size
        say(f"n = {n:,} = {m} x {p} (A (x) B), {out['matrix_bytes'] / 1e9:.1f} GB in float64 "
            f"({ep.matrix_bytes / 1e9:.1f} GB lower triangle); {workers} workers x 1 thread, budget "
            f"{budget_b / 2**30:.2f} GiB per worker; tile {b} ({ep.block_size_limited_by}), {ep.n_panels} panels, "
            f"{ep.n_tasks} tasks; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        dlogdet.logdet("kron:m=16,p=16", client=client)                  # warm-up: imports on the workers
        cal = calibrate_cluster(client, tasks=300, chain=60, nbytes=16 * 2**20)
        got = calibrate_tasks(client, b, src, scratch)
        rates = SimRates(gemm_flops=got["gemm_flops"][0], io_bytes=got["io_bytes"][0],
                         load_bytes=got["load_bytes"][0], network_bytes=cal.get("network_bytes", (math.inf, ""))[0],
                         task_seconds=cal["task_seconds"][0], task_latency=cal["task_latency"][0],
                         transfer_latency=cal.get("transfer_latency", (0.0, ""))[0],
                         kind_flops={k: got[f"{k}_flops"][0] for k in ("potrf", "trsm", "syrk", "gemm")})
        sim = simulate(n, b, workers, rates, mode="store")
        plan = dlogdet.plan(n, workers=workers, budget=budget_b, rates={
            "gemm_flops": rates.gemm_flops, "io_bytes": rates.io_bytes, "task_seconds": rates.task_seconds,
            "task_latency": rates.task_latency})
        reads, writes = traffic(n, b, "spd", 8)
        out.update(block_size=b, n_panels=ep.n_panels, n_tasks=ep.n_tasks, predicted_s=sim.time_s,
                   plan_closed_form_s=plan.time_total_s, rates=rates, plan_store_read=reads - plan.matrix_bytes,
                   plan_store_write=writes, plan_scratch=plan.scratch_bytes)
        say(f"rates on the workers: GEMM {rates.gemm_flops / 1e9:.1f} GFLOP/s per task, tile generation "
            f"{rates.load_bytes / 1e9:.2f} GB/s, tile store {rates.io_bytes / 1e9:.2f} GB/s, scheduler "
            f"{rates.task_seconds * 1e3:.1f} ms/task, worker {rates.task_latency * 1e3:.1f} ms/task")
        say(f"runtime estimate: {human_time(sim.time_s)} (simulated cluster; compute {human_time(sim.compute_s)}, "
            f"scheduler {human_time(sim.scheduler_s)}, critical path {human_time(sim.critical_path_s)}); the "
            f"planner's closed form, nothing overlapped: {human_time(plan.time_total_s)}")

        before = client.run(io_counters)
        names = {a: str(w.get("name", a)) for a, w in client.scheduler_info()["workers"].items()}
        base = {names.get(a, a): v for a, v in client.run(rss).items()}
        # the exact high-water marks from here on: the calibration's b×b kernels just before are not the run's
        reset = all(client.run(reset_peak_rss).values()) and reset_peak_rss()
        with DiskSampler(scratch) as disk:
            t0 = time.perf_counter()
            r = dlogdet.logdet(src, client=client, budget=budget_b, scratch=scratch)
            call = time.perf_counter() - t0
        after = client.run(io_counters)
        hwm = {names.get(a, a): v for a, v in client.run(peak_rss).items()}
        hwm_here = peak_rss()
    d = r.diagnostics
    io = {k: sum(after[w][k] - before[w][k] for w in after) for k in ("read_chars", "write_chars", "read_bytes",
                                                                         "write_bytes")}
    exact = src.closed_form_logdet()
    out.update(logdet=r.logdet, closed_form=exact, rel_err=abs(r.logdet - exact) / abs(exact), wall_s=d["wall_time"],
               call_s=call, mode=d["mode"], peak_rss=dict(d.get("peak_rss_bytes_per_worker") or {}),
               disk_peak=disk.peak, io=io, status=str(r.status), baseline=base,
               peak_rss_exact=hwm if reset and None not in hwm.values() else {},
               peak_rss_client=hwm_here if reset else None)
    return out


def report(o: dict, say=print) -> None:
    gb = 1e9
    say("")
    say(f"log det            {o['logdet']:.12e}   closed form {o['closed_form']:.12e}   |rel err| {o['rel_err']:.1e}"
        f"   (target 1e-10: {'met' if o['rel_err'] <= 1e-10 else 'MISSED'})")
    ratio = o["wall_s"] / o["predicted_s"]
    say(f"wall time          {o['wall_s']:.1f} s (the graph; {o['call_s']:.1f} s the call)   predicted "
        f"{o['predicted_s']:.1f} s   measured/predicted {ratio:.2f}   (target within 25%: "
        f"{'met' if abs(ratio - 1) <= 0.25 else 'MISSED'})")
    for w, peak in sorted(o["peak_rss"].items()):
        b0 = o.get("baseline", {}).get(w, 0)
        say(f"peak RSS {w!s:<9} {peak / 2**30:.2f} GiB = {b0 / 2**30:.2f} GiB before the run + "
            f"{(peak - b0) / 2**30:.2f} GiB   budget {o['budget'] / 2**30:.2f} GiB for tiles   "
            f"(peak - before) / budget = {(peak - b0) / o['budget']:.2f}   (sampled every 0.25 s)")
    for w, peak in sorted(o.get("peak_rss_exact", {}).items()):
        b0 = o.get("baseline", {}).get(w, 0)
        say(f"peak RSS {w!s:<9} {peak / 2**30:.2f} GiB = {b0 / 2**30:.2f} GiB before the run + "
            f"{(peak - b0) / 2**30:.2f} GiB   (peak - before) / budget = {(peak - b0) / o['budget']:.2f}   "
            f"(the kernel's high-water mark during the run: exact)")
    if o.get("peak_rss_client") is not None:
        say(f"peak RSS here      {o['peak_rss_client'] / 2**30:.2f} GiB   (this process: the client and the scheduler; "
            f"the kernel's high-water mark during the run)")
    io = o["io"]
    say(f"store reads        {io['read_chars'] / gb:.2f} GB through the file system, {io['read_bytes'] / gb:.2f} GB "
        f"from the device   planner: {o['plan_store_read'] / gb:.2f} GB")
    say(f"store writes       {io['write_chars'] / gb:.2f} GB through the file system, {io['write_bytes'] / gb:.2f} GB "
        f"to the device   planner: {o['plan_store_write'] / gb:.2f} GB")
    say(f"disk space         peak {o['disk_peak'] / gb:.2f} GB under the scratch directory   planner's scratch: "
        f"{o['plan_scratch'] / gb:.2f} GB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=57_600)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--budget", default="2GiB", help="per worker, for tiles (default 2GiB: a 7,296-row tile at "
                                                    "n = 57,600; 5 tiles per task)")
    ap.add_argument("--scratch", default=None, help="directory of the tile store (default: the temporary one)")
    args = ap.parse_args()
    scratch = tempfile.mkdtemp(prefix="dlogdet-scale-", dir=args.scratch)
    t0 = time.perf_counter()
    try:
        o = measure(args.n, args.workers, args.budget, scratch)
        report(o)
    finally:
        import shutil
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"took {time.perf_counter() - t0:.0f} s in all; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
