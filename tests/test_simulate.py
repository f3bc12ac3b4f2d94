"""The simulated cluster (dlogdet.runtime.simulate) against schedules computed by hand, to the exact event times;
the engine's graph it replays against the graph the engine builds; its network bytes against the closed form of
dlogdet.runtime.costs.transfer_bytes; the planner's --simulate.

Hand schedules use round numbers (1 GFLOP/s, 0.1 s per task for the scheduler, ...) so each event time is a short
sum written out in the test; the comparison is to 1e-12 relative (float rounding of those sums only).
"""

from __future__ import annotations

import pytest

import dlogdet
from dlogdet import cli
from dlogdet.engine.schedule import Tiling
from dlogdet.engine.tiles import build_factor_graph
from dlogdet.runtime.costs import transfer_bytes
from dlogdet.runtime.simulate import PIVOT_BYTES_PER_ROW, SimRates, SimTask, engine_tasks, replay, simulate
from dlogdet.sources.kron import KronSource

EXACT = dict(rel=1e-12, abs=1e-12)


def test_a_chain_on_one_worker():
    """Three dependent tasks: each waits for the scheduler (0.5 s), then runs latency (0.25 s) + flops / rate."""
    tasks = [SimTask("a", (), 1e9), SimTask("b", (0,), 2e9), SimTask("c", (1,), 3e9)]
    sim = replay(tasks, 1, SimRates(gemm_flops=1e9, task_seconds=0.5, task_latency=0.25))
    # a: dispatched 0.5, runs 1.25 -> 1.75; b: 1.75 + 0.5 = 2.25, runs 2.25 -> 4.5; c: 5.0, runs 3.25 -> 8.25
    assert sim.start_s == pytest.approx((0.5, 2.25, 5.0), **EXACT)
    assert sim.end_s == pytest.approx((1.75, 4.5, 8.25), **EXACT)
    assert sim.time_s == pytest.approx(8.25, **EXACT)
    assert sim.critical_path_s == pytest.approx(8.25, **EXACT)      # a chain is its own critical path
    assert sim.scheduler_s == pytest.approx(1.5, **EXACT)
    assert sim.compute_s == pytest.approx(1.25 + 2.25 + 3.25, **EXACT)
    assert sim.network_bytes == 0 and sim.transfers_s == 0


def test_a_chain_across_two_workers_moves_each_result():
    """The same chain on workers 0, 1, 0: each result (1 GB at 2 GB/s) crosses the next worker's link (0.5 s)."""
    tasks = [SimTask("a", (), 1e9, out_bytes=10**9, worker=0), SimTask("b", (0,), 2e9, out_bytes=10**9, worker=1),
             SimTask("c", (1,), 3e9, worker=0)]
    sim = replay(tasks, 2, SimRates(gemm_flops=1e9, network_bytes=2e9, task_seconds=0.5, task_latency=0.25))
    # b: dispatched 2.25, its input arrives 2.75, ends 5.0; c: dispatched 5.5, input at 6.0, ends 9.25
    assert sim.start_s == pytest.approx((0.5, 2.75, 6.0), **EXACT)
    assert sim.end_s == pytest.approx((1.75, 5.0, 9.25), **EXACT)
    assert sim.network_bytes == 2 * 10**9
    assert sim.transfers_s == pytest.approx(0.5, **EXACT)            # 1 s of link time over 2 workers
    assert sim.critical_path_s == pytest.approx(9.25, **EXACT)
    # a fetch's latency (0.125 s) delays each moved input without holding the link
    late = replay(tasks, 2, SimRates(gemm_flops=1e9, network_bytes=2e9, task_seconds=0.5, task_latency=0.25,
                                     transfer_latency=0.125))
    assert late.start_s == pytest.approx((0.5, 2.875, 6.25), **EXACT)
    assert late.end_s == pytest.approx((1.75, 5.125, 9.5), **EXACT)
    assert late.critical_path_s == pytest.approx(9.5, **EXACT)


def test_one_link_carries_one_transfer_at_a_time_and_a_copy_stays():
    """Two tasks on worker 1 read the same result of worker 0: one transfer; a third input queues on the link."""
    tasks = [SimTask("x", (), 0.0, out_bytes=10**9, worker=0), SimTask("y", (), 0.0, out_bytes=10**9, worker=0),
             SimTask("u", (0, 1), 0.0, worker=1), SimTask("v", (0,), 0.0, worker=1)]
    sim = replay(tasks, 2, SimRates(gemm_flops=1.0, network_bytes=1e9, task_seconds=1.0))
    # x dispatched 1, y 2 (ends 2); u and v ready at 2: u dispatched 3 (x's copy 3 -> 4, y's 4 -> 5), v at 4 (x's
    # copy arrives at 4, already on its way for u)
    assert sim.end_s == pytest.approx((1.0, 2.0, 5.0, 4.0), **EXACT)
    assert sim.network_bytes == 2 * 10**9


def test_a_single_panel_step_on_two_workers():
    """n = 2b: factor (0, 0), panel solve (1, 0), update (1, 1), factor (1, 1), their pivots and the gather. Block-
    cyclic over 2 workers puts tile row i on worker i % 2, so only the factor tile crosses (to the panel solve)."""
    b = 1000
    tasks = engine_tasks(2 * b, b, 2)
    names = [t.key[0].split("-")[0] for t in tasks]
    assert names == ["potrf", "pivots", "trsm", "syrk", "potrf", "pivots", "logdet"]
    assert [t.worker for t in tasks] == [0, 0, 1, 1, 1, 1, None]
    rates = SimRates(gemm_flops=1e9, network_bytes=8e8, load_bytes=8e8, task_seconds=0.1)
    sim = replay(tasks, 2, rates)
    tile_s = 8e6 / 8e8            # a 1000 x 1000 float64 tile over the link, or read from the source: 0.01 s
    potrf = 1e9 / 3 / 1e9         # b^3 / 3 flops
    t = {}
    t["potrf0"] = (0.1, 0.1 + potrf + tile_s)
    # potrf0 done: pivots0 (priority 30) and trsm (29) go to the scheduler in that order
    t["pivots0"] = (t["potrf0"][1] + 0.1,) * 2
    disp = t["potrf0"][1] + 0.2
    t["trsm"] = (disp + tile_s, disp + tile_s + 1.0 + tile_s)                 # factor tile in, b^3 flops, load A_10
    t["syrk"] = (t["trsm"][1] + 0.1, t["trsm"][1] + 0.1 + 1.0 + tile_s)        # SYRK b^3 flops, load A_11
    t["potrf1"] = (t["syrk"][1] + 0.1, t["syrk"][1] + 0.1 + potrf)
    t["pivots1"] = (t["potrf1"][1] + 0.1,) * 2
    gather = t["pivots1"][1] + 0.1 + PIVOT_BYTES_PER_ROW * b / 8e8           # on worker 0: pivots1 crosses
    want = list(t.values()) + [(gather, gather)]
    assert list(zip(sim.start_s, sim.end_s)) == [pytest.approx(w, **EXACT) for w in want]
    assert sim.time_s == pytest.approx(gather, **EXACT)
    assert sim.network_bytes == 8 * b * b + PIVOT_BYTES_PER_ROW * b
    # the idle-cluster critical path: no waiting for the scheduler behind pivots0
    cp = (0.1 + potrf + tile_s) + tile_s + 3 * 0.1 + 2 * (1.0 + tile_s) + potrf + 0.1 + 0.1
    assert sim.critical_path_s == pytest.approx(cp, **EXACT)


@pytest.mark.parametrize("mode", ["memory", "store"])
@pytest.mark.parametrize("assume, n, b", [("spd", 1000, 300), ("gen", 700, 200), ("sym", 900, 300)])
def test_the_simulated_graph_is_the_engines(assume, n, b, mode, tmp_path):
    tasks = engine_tasks(n, b, 3, assume=assume, mode=mode)
    if mode == "memory":
        g = build_factor_graph(KronSource.random(10, n // 10), assume, Tiling(n, b), symmetry_rtol=None)
        keys = {k for k in g.dsk if not str(k).startswith("source-")}
    else:
        from dlogdet.engine.store import TileStore, build_store_graph
        g = build_store_graph(KronSource.random(10, n // 10), assume, Tiling(n, b), TileStore(str(tmp_path)),
                              token="sim")
        keys = {k for k in g.dsk if not str(k).startswith("source-")}
    tok = g.token

    def rename(key):
        return (key[0].replace("-sim", f"-{tok}"), *key[1:])
    assert {rename(t.key) for t in tasks} == keys
    index = {rename(t.key): t for t in tasks}
    for key, task in index.items():   # dependencies: the graph's keys that the task's entry names
        deps = {rename(tasks[d].key) for d in task.deps}
        assert deps <= keys and all(_mentions(g.dsk[key], d) for d in deps)


def _mentions(task, key) -> bool:
    if task == key:
        return True
    if isinstance(task, (tuple, list)):
        return any(_mentions(x, key) for x in task)
    return False


@pytest.mark.parametrize("n, b, workers, assume", [(8000, 1000, 2, "spd"), (7000, 900, 6, "spd"),
                                                   (5000, 700, 9, "sym"), (4000, 700, 4, "gen"),
                                                   (10000, 1000, 64, "spd"), (3000, 1000, 1, "spd")])
def test_network_bytes_follow_the_closed_form(n, b, workers, assume):
    sim = simulate(n, b, workers, SimRates(gemm_flops=1e9), assume=assume)
    closed = transfer_bytes(n, b, assume, 8, workers)
    assert 0 <= sim.network_bytes - closed <= PIVOT_BYTES_PER_ROW * n   # the gather's pivots travel too
    assert (closed == 0) == (workers == 1)


def test_store_mode_moves_no_tiles_and_charges_the_disk():
    rates = SimRates(gemm_flops=1e9, io_bytes=1e8, load_bytes=1e9, network_bytes=1e9)
    mem = simulate(4000, 1000, 2, rates, mode="memory")
    store = simulate(4000, 1000, 2, rates, mode="store")
    assert store.network_bytes < 200 * store.n_tasks and mem.network_bytes > 8 * 1000 ** 2
    assert store.time_s > mem.time_s and store.compute_s > mem.compute_s


def test_more_workers_are_faster_until_the_scheduler_binds():
    rates = SimRates(gemm_flops=5e10, network_bytes=1e10, task_seconds=1e-3, task_latency=1e-3)
    t = [simulate(20000, 1000, w, rates).time_s for w in (1, 4, 16)]
    assert t[0] > t[1] > t[2]
    slow = simulate(20000, 1000, 16, SimRates(gemm_flops=5e10, network_bytes=1e10, task_seconds=0.5))
    assert slow.time_s >= slow.scheduler_s     # one scheduler, one task at a time: a lower bound


def test_cores_are_shared_by_the_running_tasks():
    """Processor sharing: 4 one-second tasks on 4 workers and 2 cores all run at half speed and end at 2 s; tasks of
    1 s and 2 s on 1 core run at half speed until the first ends (at 2 s, having done 1 s of work each), then the
    second alone at full speed (1 s left: 3 s); 1.5 cores give two one-second tasks 0.75 each (4/3 s); a working
    scheduler takes its turn on the cores too."""
    tasks = [SimTask(i, (), 1e9, worker=i) for i in range(4)]
    free = replay(tasks, 4, SimRates(gemm_flops=1e9))
    shared = replay(tasks, 4, SimRates(gemm_flops=1e9), cores=2)
    assert free.time_s == pytest.approx(1.0, **EXACT) and shared.end_s == pytest.approx((2.0,) * 4, **EXACT)
    two = [SimTask("a", (), 1e9, worker=0), SimTask("b", (), 2e9, worker=1)]
    sim = replay(two, 2, SimRates(gemm_flops=1e9), cores=1)
    assert sim.start_s == pytest.approx((0.0, 0.0), **EXACT) and sim.end_s == pytest.approx((2.0, 3.0), **EXACT)
    assert sim.compute_s == pytest.approx(3.0, **EXACT)                 # 3 s of work on the one core
    frac = replay([SimTask("a", (), 1e9, worker=0), SimTask("b", (), 1e9, worker=1)], 2, SimRates(gemm_flops=1e9),
                  cores=1.5)
    assert frac.end_s == pytest.approx((4 / 3, 4 / 3), **EXACT)
    # the scheduler (0.5 s a task) is one more thread on the core while it works. a, b dispatched at 0.5 and 1.0:
    # a shares the core with the scheduler 0.5-1.0 (0.25 s done), then with b: a ends at 2.5 (b has done 0.75 s);
    # c released at 2.5, dispatched at 3.0: b shares with the scheduler 2.5-3.0 (1.0 s done), then with c: c ends at
    # 5.0 (b 2.0 s done); b alone again: 6.0
    chain = [SimTask("a", (), 1e9, worker=0), SimTask("b", (), 3e9, worker=1), SimTask("c", (0,), 1e9, worker=0)]
    sim = replay(chain, 2, SimRates(gemm_flops=1e9, task_seconds=0.5), cores=1)
    assert sim.start_s == pytest.approx((0.5, 1.0, 3.0), **EXACT)
    assert sim.end_s == pytest.approx((2.5, 6.0, 5.0), **EXACT)
    # on a core per task slot (cores=None) the scheduler takes nothing from the tasks: 0.5-1.5, 1.0-4.0, 2.0-3.0
    free = replay(chain, 2, SimRates(gemm_flops=1e9, task_seconds=0.5))
    assert free.end_s == pytest.approx((1.5, 4.0, 3.0), **EXACT)


def test_a_busy_link_and_the_cluster_cpu_take_turns_on_shared_cores():
    """On 1 core: x (worker 0) ends at once; v (2 s) starts at 0 on worker 2 while x's 1 GB crosses worker 1's link
    (1 GB/s, 0-1 s): v shares the core with the link (0.5 s done by 1 s); u (1 s, on worker 1, reads x) then shares
    it with v: u ends at 3, v (1.5 s done) alone to 3.5. ``task_cpu`` lengthens a task only where cores are
    shared."""
    tasks = [SimTask("x", (), 0.0, out_bytes=10**9, worker=0), SimTask("v", (), 2e9, worker=2),
             SimTask("u", (0,), 1e9, worker=1)]
    sim = replay(tasks, 3, SimRates(gemm_flops=1e9, network_bytes=1e9), cores=1)
    assert sim.start_s == pytest.approx((0.0, 0.0, 1.0), **EXACT)
    assert sim.end_s == pytest.approx((0.0, 3.5, 3.0), **EXACT)
    one = [SimTask("a", (), 1e9)]
    assert replay(one, 1, SimRates(gemm_flops=1e9, task_cpu=0.5), cores=1).time_s == pytest.approx(1.5, **EXACT)
    assert replay(one, 1, SimRates(gemm_flops=1e9, task_cpu=0.5)).time_s == pytest.approx(1.0, **EXACT)


def test_plan_simulates_and_cli_prints_the_parts(capsys):
    p = dlogdet.plan(80_000, workers=8, budget="100GB", simulate=True, rates={"task_seconds": 2e-3})
    s = p.simulated
    assert s is not None and p.mode == "memory" and s["n_tasks"] == p.n_tasks + 1          # + the gather
    assert s["network_bytes"] >= p.network_bytes > 0
    assert s["time_s"] >= max(s["compute_s"], s["scheduler_s"], s["critical_path_s"]) > 0
    assert p.time_scheduler_s == pytest.approx(p.n_tasks * 2e-3)
    assert cli.main(["plan", "--n", "80000", "--workers", "8", "--budget", "100GB", "--simulate",
                     "--network-bytes", "1e9"]) == 0
    out = capsys.readouterr().out
    for row in ("simulated time", "  compute", "  transfers", "  scheduler", "  critical path", "  busiest worker",
                "tile size"):
        assert row in out


# --------------------------------------------------------------------------------------------------------------
# the tile rule with per-task overhead
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gemm, s, lat, slots", [(20e12, 1e-3, 1e-3, 64), (5e10, 1e-3, 1e-3, 2), (67e12, 3e-3, 0, 8),
                                                 (1e12, 0, 5e-3, 4)])
def test_overhead_tile_is_the_smallest_multiple_of_64_under_the_share(gemm, s, lat, slots):
    from dlogdet.engine.plan import overhead_tile

    b = overhead_tile(gemm, s, lat, slots, 0.05).size
    need = max(slots * s, lat) / 0.05
    assert b % 64 == 0
    assert 2.0 * b ** 3 / gemm >= need > 2.0 * (b - 64) ** 3 / gemm


def test_gpu_plan_keeps_the_scheduler_under_five_percent_and_says_so():
    from dlogdet.runtime.planner import overhead_share

    p = dlogdet.plan(1_000_000, workers=64, gpus_per_worker=1, gpu_memory="141GB", worker_memory="512GB")
    assert p.block_size_limited_by.startswith("per-task overhead: 64 task slots x 1 ms of the scheduler")
    assert overhead_share(p.block_size, p.rates, 64) <= 0.05 < overhead_share(p.block_size - 64, p.rates, 64)
    assert p.block_size != p.engine_block_size and any(f"pass block_size={p.block_size}" in w for w in p.warnings)
    assert not any("per-task overhead" in w for w in p.warnings)
    # the reason stays true when another limit binds: 4 tiles of 20k in 16 GB of GPU memory do not fit
    q = dlogdet.plan(1_000_000, workers=64, gpus_per_worker=1, gpu_memory="16GB", worker_memory="512GB")
    assert q.block_size_limited_by.startswith("GPU memory") and "the per-task overhead asks for" in \
        q.block_size_limited_by
    assert q.gpu_working_set_bytes <= q.gpu_memory_bytes
    assert any("per-task overhead" in w and "more than dlogdet.plan.max-overhead" in w for w in q.warnings)


def test_cpu_plan_warns_when_the_scheduler_binds():
    p = dlogdet.plan(400_000, workers=256, budget="100GB")
    assert any("per-task overhead" in w for w in p.warnings)
    q = dlogdet.plan(20_000, workers=2, budget="10GB")
    assert not any("per-task overhead" in w for w in q.warnings)


def test_calibrate_network_between_two_local_workers():
    """Two local worker processes (loopback), a graph of tiny tasks, a chain, an 8 MiB transfer: positive rates."""
    from dlogdet.runtime.calibrate import calibrate_cluster

    got = calibrate_cluster(tasks=200, chain=40, nbytes=8 * 2**20)
    assert set(got) == {"task_seconds", "task_latency", "network_bytes", "transfer_latency"}
    assert 0 < got["task_seconds"][0] < 1 and 0 <= got["task_latency"][0] < 1 and got["network_bytes"][0] > 1e6
    assert 0 <= got["transfer_latency"][0] < 1
    assert all(how.startswith("measured here") for _, how in got.values())


def test_task_rates_and_the_share_of_a_core():
    """The kernels' rates on one BLAS thread, positive; the share of a core their thread had is in (0, 1]."""
    from dlogdet.runtime.calibrate import task_rates_here

    got = task_rates_here(96, KronSource.random(8, 16), rounds=1, min_seconds=0.02)
    assert {"gemm_flops", "potrf_flops", "trsm_flops", "syrk_flops", "load_bytes", "core_share"} <= set(got)
    assert all(v > 0 for v in got.values()) and got["core_share"] <= 1.0


def test_cpu_meter_counts_our_processes_and_the_rest():
    """A busy loop in this process shows in ``ours`` (to the 10 ms tick of the OS counters) and in the machine's
    busy time; what other processes did is ``background``, in cores, never negative."""
    import os
    import time

    from dlogdet.runtime.calibrate import CpuMeter

    with CpuMeter([os.getpid()]) as m:
        c0 = time.thread_time()
        while time.thread_time() - c0 < 0.3:
            pass
        spun = time.thread_time() - c0
    assert m.ours >= spun - 0.03 and m.busy >= m.ours - 0.05
    assert m.wall >= spun and m.background >= 0.0


def test_calibrate_task_cpu_in_a_graph_of_tiles():
    """The cluster's CPU per task besides the task's own thread, on two local workers: positive, well under a
    second for 256x256 tiles, and said how it was measured."""
    from distributed import Client, LocalCluster

    from dlogdet.runtime.calibrate import calibrate_task_cpu, cluster_pids

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as client:
        pids = cluster_pids(client)
        assert len(pids) == 3                      # this process (client, scheduler, nannies) and two workers
        per_task, how = calibrate_task_cpu(client, 256, pids, per_worker=4)
    assert 0 < per_task < 1 and how.startswith("measured here: 16 tasks of 256x256 tiles on 2 workers")


def test_calibrate_store_cpu_in_a_graph_of_store_tasks(tmp_path):
    """The tile store's rate per core in a graph of store tasks on two local workers: bytes over CPU seconds, so at
    most the rate of the tasks' own threads (the cluster's CPU is at least theirs); the store's files are gone
    afterwards; and it says what it measured (2 workers x 8 tasks, each moving three 128x128 float64 tiles)."""
    from distributed import Client, LocalCluster

    from dlogdet.runtime.calibrate import calibrate_store_cpu, cluster_pids

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as client:
        pids = cluster_pids(client)
        rate, own, how = calibrate_store_cpu(client, 128, pids, str(tmp_path), task_cpu=0.0, per_worker=8)
    assert 0 < rate <= own < float("inf")
    assert list(tmp_path.iterdir()) == []
    moved = 2 * 8 * 3 * 8 * 128 * 128
    assert how.startswith(f"measured here: 16 store tasks of 128x128 tiles on 2 workers ({moved / 1e9:.2f} GB")
