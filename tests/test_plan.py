"""The dry-run planner ``dlogdet.plan`` / ``dlogdet plan``: the engine's own mode and tile size (checked against
runs of ``dlogdet.logdet``), closed-form counts checked against built graphs and brute-force enumeration, the
memory model, the engine's refusals (``MemoryBudgetError.needed``), the CLI.

Sizes are checked against the plan's own reported model parameters (``tiles_per_task``, ``overhead_bytes``), so the
tests hold whatever ``dlogdet.memory.*`` says in dask config; tests that need a specific setting pin it.
"""

from __future__ import annotations

import json
import math
import re
import time
import types

import dask.config
import numpy as np
import pytest

import dlogdet
from dlogdet import cli
from dlogdet.core.errors import InputError, MemoryBudgetError, ScratchSpaceError, UnsupportedDtypeError
from dlogdet.engine.plan import auto_block_size, store_block_size
from dlogdet.engine.schedule import Tiling, task_count
from dlogdet.engine.tiles import build_factor_graph
from dlogdet.runtime.costs import matrix_tile_bytes, traffic
from dlogdet.runtime.planner import GPU_MAX_TILE, Plan
from dlogdet.sources import ArraySource

BIG = [
    dict(n=500_000, workers=32, budget="80GB"),
    dict(n=1_000_000, workers=64, budget="80GB"),
]


def check_sane(p: Plan, n: int, workers: int, budget: int) -> None:
    """Invariants every plan satisfies."""
    itemsize = np.dtype(p.dtype).itemsize
    assert 1 <= p.block_size <= n
    assert p.n_panels == Tiling(n, p.block_size).nt
    assert p.n_panels * p.block_size >= n > (p.n_panels - 1) * p.block_size
    assert p.n_tasks == task_count(p.n_panels, p.assume)
    assert p.n_tiles == (p.n_panels ** 2 if p.assume == "gen" else p.n_panels * (p.n_panels + 1) // 2)
    assert p.tile_bytes == p.block_size ** 2 * itemsize
    assert p.budget_bytes == budget
    # the memory model: the budget is for tiles; the baseline (overhead) is beside it, in the expected RSS
    assert p.working_set_bytes == p.tiles_per_task * p.tasks_at_once_per_worker * p.tile_bytes
    share = math.ceil(p.matrix_bytes / workers) if p.mode == "memory" else 0
    assert p.tile_memory_bytes_per_worker == p.working_set_bytes + share
    assert p.peak_rss_bytes_per_worker == p.overhead_bytes + p.tile_memory_bytes_per_worker
    assert 1 <= p.tasks_at_once_per_worker <= p.slots_per_worker == max(1, p.gpus_per_worker)
    assert p.flops == pytest.approx((2 if p.assume == "gen" else 1) * n ** 3 / 3, rel=1e-12)
    assert p.mode in ("memory", "store")
    if p.mode == "store":
        assert p.store_slots_per_worker == max(1, budget // (p.tiles_per_task * p.tile_bytes))
        assert p.tasks_at_once_per_worker == min(p.slots_per_worker, p.store_slots_per_worker)
        assert p.tile_memory_bytes_per_worker <= budget  # the engine refuses a store tile that does not fit
        assert p.resident_tiles_per_worker == p.tiles_per_task * p.tasks_at_once_per_worker
        assert p.store_write_bytes > 0 and (p.store_read_bytes > 0 or p.n_panels == 1)
        triangle = n * n if p.assume == "gen" else n * (n + 1) // 2
        assert p.scratch_bytes == triangle * itemsize + 2 * p.n_panels * p.tile_bytes
    else:
        assert p.store_slots_per_worker is None
        assert p.tasks_at_once_per_worker == p.slots_per_worker
        assert p.store_read_bytes == p.store_write_bytes == p.scratch_bytes == 0
    assert p.source_read_bytes == p.matrix_bytes
    assert p.time_total_s == pytest.approx(p.time_compute_s + p.time_critical_path_s + p.time_io_s
                                           + p.time_transfer_s + p.time_scheduler_s)
    assert all(t > 0 for t in (p.time_compute_s, p.time_critical_path_s, p.time_io_s))
    json.dumps(p.to_dict())


# --------------------------------------------------------------------------------------------------------------
# the two big cases: instant, sane, and the engine's tile
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", BIG, ids=lambda c: f"n{c['n']}-w{c['workers']}")
def test_big_cases_answer_in_well_under_a_second(case):
    dlogdet.plan(**case)  # warm: lazy imports, config
    t0 = time.perf_counter()
    p = dlogdet.plan(**case)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.1, elapsed
    budget = 80 * 10**9
    check_sane(p, case["n"], case["workers"], budget)
    # enough panels to keep every worker busy: the first trailing update has ~nt²/2 independent tasks
    assert p.n_panels >= math.sqrt(8 * case["workers"])
    assert p.flops == pytest.approx(case["n"] ** 3 / 3)
    s = p.summary()
    for word in ("tile size", "tasks", "GiB", "TFLOP", "predicted time", "default (dask config", "peak RSS",
                 "baseline"):
        assert word in s


def test_the_two_cases_take_the_two_modes_and_the_engines_tiles():
    # 0.5M float64: lower triangle 1.0 TB, half of 32 x 80 GB is 1.28 TB: stays in memory
    # 1M: 4 TB > half of 64 x 80 GB: the on-disk tile store, with the matrix once on disk
    with dask.config.set({"dlogdet.memory.mode": "auto", "dlogdet.memory.tiles-per-task": 5,
                          "dlogdet.block-size": None}):
        a = dlogdet.plan(**BIG[0])
        b = dlogdet.plan(**BIG[1])
        assert a.mode == "memory" and b.mode == "store"
        assert a.block_size == a.engine_block_size == auto_block_size(500_000, 32, itemsize=8, budget=80 * 10**9)
        assert b.block_size == b.engine_block_size == store_block_size(1_000_000, 64, 80 * 10**9, 8)
    assert a.resident_tiles_per_worker == 5 + math.ceil(a.n_tiles / 32)
    assert b.resident_tiles_per_worker == 5
    n, bs = b.n, b.block_size
    assert b.scratch_bytes == n * (n + 1) // 2 * 8 + 2 * b.n_panels * bs * bs * 8
    assert not a.warnings and not b.warnings


# --------------------------------------------------------------------------------------------------------------
# one set of rules: the plan's tile and mode are the engine's
# --------------------------------------------------------------------------------------------------------------

# (n, workers, budget, assume, dtype, extra dask config): small n with dlogdet.min-block-size = 8, so the engine
# runs in a fraction of a second on the in-process scheduler; every limit of both tile rules is hit somewhere
ENGINE_CASES = [
    (200, 2, 10**6, "spd", "float64", {}),                                    # memory: parallelism (8 panels)
    (250, 4, 10**6, "sym", "float64", {}),                                    # memory, LDL^T
    (200, 32, 10_500, "spd", "float64", {}),                                  # memory: budget/8 per tile
    (200, 32, 5_300, "spd", "float32", {}),                                   # memory: float32 budget cap
    (200, 2, 10**6, "spd", "float64", {"dlogdet.max-tasks": 200}),            # memory: max-tasks
    (120, 1, 10**6, "gen", "float64", {}),                                    # memory, LU
    (600, 2, 400_000, "spd", "float64", {}),                                  # store: budget, multiple of 64
    (400, 2, 100_000, "sym", "float64", {}),                                  # store: budget, below 64
    (300, 3, 30_000, "gen", "float64", {}),                                   # store, LU
    (200, 2, 10**6, "spd", "float64", {"dlogdet.memory.mode": "store"}),      # store forced: parallelism
    (600, 2, 2 * 10**7, "spd", "float64", {"dlogdet.memory.mode": "store",
                                           "dlogdet.memory.store-max-block-size": 130}),  # store-max-block-size
    (300, 2, 200_000, "spd", "float64", {"dlogdet.memory.mode": "memory"}),   # memory forced
    (200, 2, 10**6, "spd", "float64", {"dlogdet.block-size": 48}),            # dask config block-size
    (200, 2, 100_000, "spd", "float64", {"dlogdet.block-size": 40}),          # ... out of core
]


@pytest.mark.parametrize("n,workers,budget,assume,dtype,cfg", ENGINE_CASES)
def test_plan_picks_the_engines_mode_and_tile(tmp_path, n, workers, budget, assume, dtype, cfg):
    settings = {"dlogdet.min-block-size": 8, "dlogdet.local.workers": workers, "dlogdet.scratch": str(tmp_path),
                **cfg}
    with dask.config.set(settings):
        p = dlogdet.plan(n, workers=workers, budget=budget, assume=assume, dtype=dtype)
        r = dlogdet.logdet((np.eye(n) * 2).astype(dtype), assume=assume, budget=budget, check_symmetry=False)
    check_sane(p, n, workers, budget)
    d = r.diagnostics
    assert (p.block_size, p.mode) == (d["block_size"], d["mode"])
    assert p.engine_block_size == p.block_size
    assert "engine's" not in p.block_size_limited_by  # the limit is named, not the fallback wording
    assert (p.n_panels, p.n_tiles) == (d["n_panels"], d["n_tiles"])
    if p.mode == "memory":
        assert p.n_tasks + 1 == d["n_tasks"]  # + the gather of the log-pivots
    else:
        assert (p.tiles_per_task, p.store_slots_per_worker) == (d["tiles_per_task"], d["slots_per_worker"])
    assert r.logdet == pytest.approx(n * math.log(2), rel=1e-5 if dtype == "float32" else 1e-12)


def test_the_engine_picks_both_modes_in_the_grid():
    modes = set()
    for n, workers, budget, assume, dtype, cfg in ENGINE_CASES:
        with dask.config.set({"dlogdet.min-block-size": 8, **cfg}):
            modes.add(dlogdet.plan(n, workers=workers, budget=budget, assume=assume, dtype=dtype).mode)
    assert modes == {"memory", "store"}


@pytest.mark.parametrize("n,workers,budget", [(40, 2, 1_000),    # store: 5 tiles of 8x8
                                              (20, 2, 2_000)])   # memory: budget/8 per tile
def test_plan_refuses_what_the_engine_refuses_with_the_same_needed(tmp_path, n, workers, budget):
    settings = {"dlogdet.min-block-size": 8, "dlogdet.local.workers": workers, "dlogdet.scratch": str(tmp_path)}
    with dask.config.set(settings):
        with pytest.raises(MemoryBudgetError) as plan_err:
            dlogdet.plan(n, workers=workers, budget=budget)
        with pytest.raises(MemoryBudgetError) as run_err:
            dlogdet.logdet(np.eye(n) * 2, budget=budget, check_symmetry=False)
        need = plan_err.value.needed
        assert need == run_err.value.needed is not None
        # and the budget it names works, in the same mode, for both
        p = dlogdet.plan(n, workers=workers, budget=need)
        r = dlogdet.logdet(np.eye(n) * 2, budget=need, check_symmetry=False)
        assert (p.mode, p.block_size) == (r.diagnostics["mode"], r.diagnostics["block_size"]) == (p.mode, 8)


def test_scratch_is_the_free_disk_the_engine_asks_for(tmp_path, monkeypatch):
    import dlogdet.estimators.exact as exact

    n, workers, budget = 600, 2, 400_000
    monkeypatch.setattr(exact.shutil, "disk_usage", lambda path: types.SimpleNamespace(total=0, used=0, free=0))
    with dask.config.set({"dlogdet.min-block-size": 8, "dlogdet.local.workers": workers}):
        p = dlogdet.plan(n, workers=workers, budget=budget)
        with pytest.raises(ScratchSpaceError) as e:
            dlogdet.logdet(np.eye(n) * 2, budget=budget, scratch=tmp_path, check_symmetry=False)
    assert p.mode == "store"
    assert p.scratch_bytes == e.value.needed


def test_the_baseline_is_outside_the_budget():
    # dlogdet.memory.overhead changes the expected RSS only: not the tile, not the mode
    with dask.config.set({"dlogdet.memory.overhead": "1MiB"}):
        small = [dlogdet.plan(**c) for c in BIG]
    with dask.config.set({"dlogdet.memory.overhead": "64GiB"}):
        big = [dlogdet.plan(**c) for c in BIG]
    for a, b in zip(small, big):
        assert (a.block_size, a.mode, a.working_set_bytes, a.tile_memory_bytes_per_worker) == \
            (b.block_size, b.mode, b.working_set_bytes, b.tile_memory_bytes_per_worker)
        assert a.overhead_bytes == 2**20 and b.overhead_bytes == 64 * 2**30
        assert b.peak_rss_bytes_per_worker - a.peak_rss_bytes_per_worker == 64 * 2**30 - 2**20
    # the smallest budget that works is the engine's, with no overhead added
    with dask.config.set({"dlogdet.memory.overhead": "64GiB", "dlogdet.memory.tiles-per-task": 5}):
        with pytest.raises(MemoryBudgetError) as e:
            dlogdet.plan(6000, workers=2, budget="1MiB")
    assert e.value.needed == 5 * 8 * 256 ** 2


# --------------------------------------------------------------------------------------------------------------
# closed forms against the graph and against enumeration
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("assume", ["spd", "sym", "gen"])
@pytest.mark.parametrize("n,workers,block_size", [(1000, 2, None), (1100, 3, 256), (700, 1, 300)])
def test_task_count_equals_the_built_graph(assume, n, workers, block_size):
    p = dlogdet.plan(n, workers=workers, budget="1GiB", assume=assume, block_size=block_size)
    check_sane(p, n, workers, 2**30)
    if block_size is not None:
        assert p.block_size == block_size
    g = build_factor_graph(ArraySource(np.eye(n)), assume, Tiling(n, p.block_size), symmetry_rtol=None)
    tasks = [k for k in g.dsk if not (isinstance(k, str) and k.startswith("source-"))]
    assert len(tasks) - 1 == p.n_tasks          # minus the gather of the log-pivots
    assert g.n_tasks - 1 == p.n_tasks
    assert p.n_panels == len(g.panel_keys)


def brute_force_traffic(n: int, b: int, assume: str, itemsize: int) -> tuple[int, int, int]:
    """(reads, writes, first reads of input tiles) enumerating every task's tiles."""
    t = Tiling(n, b)
    nt = t.nt

    def sz(i, j):
        (r0, r1), (c0, c1) = t.bounds(i), t.bounds(j)
        return (r1 - r0) * (c1 - c0) * itemsize

    reads = writes = 0
    touched = set()
    first = 0

    def read(i, j, current=False):
        nonlocal reads, first
        reads += sz(i, j)
        if current and (i, j) not in touched:
            touched.add((i, j))
            first += sz(i, j)

    for k in range(nt):
        read(k, k, True)
        writes += sz(k, k)
        for i in range(k + 1, nt):
            read(k, k)
            read(i, k, True)
            writes += sz(i, k)
            if assume == "gen":
                read(k, k)
                read(k, i, True)
                writes += sz(k, i)
        for i in range(k + 1, nt):
            for j in range(k + 1, nt if assume == "gen" else i + 1):
                read(i, j, True)
                read(i, k)
                if assume == "gen":
                    read(k, j)
                elif i != j:            # SYRK reads its one panel tile once
                    read(j, k)
                writes += sz(i, j)
    return reads, writes, first


@pytest.mark.parametrize("assume", ["spd", "gen"])
@pytest.mark.parametrize("n,b", [(1000, 256), (1024, 256), (257, 256), (100, 256), (3000, 512)])
def test_traffic_closed_form_equals_enumeration(assume, n, b):
    reads, writes, first = brute_force_traffic(n, b, assume, 8)
    assert traffic(n, b, assume, 8) == (reads, writes)
    assert matrix_tile_bytes(n, b, assume, 8) == first


def test_store_mode_bytes_follow_the_closed_form():
    with dask.config.set({"dlogdet.memory.mode": "store"}):
        p = dlogdet.plan(3000, workers=2, budget="1GiB", block_size=512)
    reads, writes, first = brute_force_traffic(3000, 512, "spd", 8)
    assert p.mode == "store"
    assert p.source_read_bytes == first
    assert p.store_read_bytes == reads - first
    assert p.store_write_bytes == writes


# --------------------------------------------------------------------------------------------------------------
# the memory model and its refusals
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(n=6000, workers=2, budget="1MiB"),                  # store: 5 tiles
                                dict(n=100_000, workers=8, budget=10**6, dtype="float32"),  # store
                                dict(n=200, workers=1, budget=10**6)])                   # memory: budget/8
def test_too_small_budget_names_one_that_works(kw):
    with pytest.raises(MemoryBudgetError) as e:
        dlogdet.plan(**kw)
    need = e.value.needed
    assert need is not None and need > config_bytes(kw["budget"])
    assert "MiB" in str(e.value)  # also human-readable
    p = dlogdet.plan(**{**kw, "budget": need})
    check_sane(p, kw["n"], kw["workers"], need)
    assert p.block_size == min(256, kw["n"])
    with pytest.raises(MemoryBudgetError):
        dlogdet.plan(**{**kw, "budget": need - 1})


def config_bytes(v) -> int:
    from dlogdet.core.config import parse_bytes
    return parse_bytes(v)


def test_given_block_size_too_large_out_of_core_is_refused_as_the_engine_does():
    with dask.config.set({"dlogdet.memory.tiles-per-task": 5}):
        with pytest.raises(MemoryBudgetError) as e:
            dlogdet.plan(50_000, workers=4, budget="1GiB", block_size=8192)
        need = e.value.needed
        assert need == 5 * 8 * 8192 ** 2
        fit = math.isqrt(2**30 // (5 * 8))
        assert f"block_size <= {fit}" in str(e.value)
        assert dlogdet.plan(50_000, workers=4, budget=need, block_size=8192).block_size == 8192
        assert dlogdet.plan(50_000, workers=4, budget="1GiB", block_size=fit).block_size == fit
        with pytest.raises(MemoryBudgetError):
            dlogdet.plan(50_000, workers=4, budget="1GiB", block_size=fit + 1)


def test_block_size_is_the_largest_that_fits_when_the_budget_limits_it():
    with dask.config.set({"dlogdet.memory.mode": "store", "dlogdet.memory.store-max-block-size": 10**6,
                          "dlogdet.memory.tiles-per-task": 5}):
        p = dlogdet.plan(1_000_000, workers=4, budget="8GiB")
    raw = math.isqrt(8 * 2**30 // (5 * 8))
    assert p.block_size == raw - raw % 64
    assert p.block_size_limited_by.startswith("memory budget")
    # the largest: one more step of 64 would not fit
    assert p.working_set_bytes <= 8 * 2**30 < 5 * 8 * (p.block_size + 64) ** 2
    assert p.peak_rss_bytes_per_worker == p.overhead_bytes + p.working_set_bytes


def test_memory_mode_peak_includes_the_share_of_the_matrix():
    p = dlogdet.plan(20_000, workers=4, budget="2GiB")
    assert p.mode == "memory"
    assert p.tile_memory_bytes_per_worker == p.working_set_bytes + math.ceil(p.matrix_bytes / 4) <= 2 * 2**30
    assert p.peak_rss_bytes_per_worker == p.overhead_bytes + p.tile_memory_bytes_per_worker
    assert "share" in p.summary()
    # the engine's rule: the matrix (400 MB) takes less than half of the summed budgets (600 MB), so it stays in
    # memory, whatever the baseline (which is outside the budget)
    with dask.config.set({"dlogdet.memory.mode": "auto", "dlogdet.memory.overhead": "256MiB"}):
        q = dlogdet.plan(10_000, workers=4, budget="300MB")
    assert q.mode == "memory" and q.tile_memory_bytes_per_worker <= 300e6
    assert "at most half" in q.mode_reason


def test_forced_memory_mode_that_overflows_the_budget_is_a_warning():
    # the engine does not refuse it, so the plan does not either: it says what a worker will hold
    with dask.config.set({"dlogdet.memory.mode": "memory"}):
        p = dlogdet.plan(100_000, workers=2, budget="1GB")
    assert p.mode == "memory" and p.tile_memory_bytes_per_worker > 10**9
    assert any("exceed the budget" in w for w in p.warnings)


def test_gpu_workers():
    with dask.config.set({"dlogdet.memory.mode": "store", "dlogdet.memory.store-max-block-size": 10**6,
                          "dlogdet.memory.tiles-per-task": 5}):
        p = dlogdet.plan(2_000_000, workers=4, budget="2TB", gpus_per_worker=2, gpu_memory="200GB")
        assert p.engine_block_size == store_block_size(2_000_000, 4, 2 * 10**12, 8)
        assert p.block_size == GPU_MAX_TILE - GPU_MAX_TILE % 64  # the GPU tile limit, on top of the engine's
        assert p.block_size_limited_by.startswith("GPU tile limit")
        assert any(f"pass block_size={p.block_size}" in w for w in p.warnings)
        q = dlogdet.plan(2_000_000, workers=4, budget="2TB", gpus_per_worker=2, gpu_memory="16GB")
        fit = math.isqrt(16 * 10**9 // (5 * 8))
        assert q.block_size == fit - fit % 64 and q.block_size_limited_by.startswith("GPU memory")
    for r in (p, q):
        check_sane(r, 2_000_000, 4, 2 * 10**12)
        assert r.slots_per_worker == r.tasks_at_once_per_worker == 2
        assert r.gpu_working_set_bytes == r.tiles_per_task * r.tile_bytes <= r.gpu_memory_bytes
        assert r.time_compute_s == pytest.approx(r.flops / (8 * r.rates.gemm_flops))
        assert "gpu-gemm-flops" in r.rates.gemm_source
    # the engine's tile already fits the GPU and no per-task overhead asks for more (tests/test_simulate.py checks
    # that rule): unchanged, no warning
    with dask.config.set({"dlogdet.memory.tiles-per-task": 5}):
        s = dlogdet.plan(20_000, workers=2, budget="8GB", gpus_per_worker=1, gpu_memory="80GB",
                         rates={"task_seconds": 0, "task_latency": 0})
        assert s.block_size == s.engine_block_size == auto_block_size(20_000, 2, itemsize=8, budget=8 * 10**9)
        assert not s.warnings


def test_gpu_worker_whose_budget_admits_fewer_store_tasks_than_gpus():
    with dask.config.set({"dlogdet.memory.mode": "auto", "dlogdet.memory.tiles-per-task": 5,
                          "dlogdet.memory.store-max-block-size": 8192}):
        p = dlogdet.plan(200_000, workers=1, budget="4GB", gpus_per_worker=2, gpu_memory="80GB")
    assert p.mode == "store" and p.block_size == 8192
    assert p.store_slots_per_worker == 1 and p.tasks_at_once_per_worker == 1
    check_sane(p, 200_000, 1, 4 * 10**9)
    assert p.time_compute_s == pytest.approx(p.flops / p.rates.gemm_flops)
    assert any("GPUs wait" in w for w in p.warnings)


def test_gpu_memory_refusals_carry_needed():
    with dask.config.set({"dlogdet.memory.tiles-per-task": 5}):
        with pytest.raises(MemoryBudgetError) as e:
            dlogdet.plan(10_000, workers=1, budget="8GB", gpus_per_worker=1, gpu_memory="2MiB")
        need = e.value.needed
        assert need == 5 * 8 * 256 ** 2 and "gpu_memory" in str(e.value)
        assert dlogdet.plan(10_000, workers=1, budget="8GB", gpus_per_worker=1, gpu_memory=need).block_size == 256
        with pytest.raises(MemoryBudgetError):
            dlogdet.plan(10_000, workers=1, budget="8GB", gpus_per_worker=1, gpu_memory=need - 1)
        with pytest.raises(MemoryBudgetError) as e:
            dlogdet.plan(10_000, workers=1, budget="8GB", gpus_per_worker=1, gpu_memory="1GB", block_size=8000)
        assert e.value.needed == 5 * 8 * 8000 ** 2


# --------------------------------------------------------------------------------------------------------------
# rates and bad input
# --------------------------------------------------------------------------------------------------------------

def test_given_rates_are_used_and_said_to_be_given():
    p = dlogdet.plan(100_000, workers=10, budget="16GB", rates={"gemm_flops": 1e10, "io_bytes": 2e8})
    assert p.rates.gemm_flops == 1e10 and p.rates.io_bytes == 2e8
    assert p.rates.gemm_source.startswith("given") and p.rates.io_source.startswith("given")
    assert p.time_compute_s == pytest.approx(p.flops / (10 * 1e10))
    assert p.time_critical_path_s == pytest.approx(p.n_panels * (7 / 3) * p.block_size ** 3 / 1e10)
    io = p.source_read_bytes + p.store_read_bytes + p.store_write_bytes
    assert p.time_io_s == pytest.approx(io / (10 * 2e8))


def test_calibrate_measures_here_quickly():
    t0 = time.perf_counter()
    p = dlogdet.plan(100_000, workers=10, budget="16GB", calibrate=True, rates={"io_bytes": 3e9})
    assert time.perf_counter() - t0 < 2.0
    assert p.rates.gemm_source.startswith("measured here") and 1e8 < p.rates.gemm_flops < 1e13
    assert p.rates.io_source.startswith("given") and p.rates.io_bytes == 3e9


@pytest.mark.parametrize("kw,err", [
    (dict(n=0), InputError), (dict(n=-5), InputError), (dict(n=10.5), InputError),
    (dict(workers=0), InputError), (dict(dtype="int8"), UnsupportedDtypeError),
    (dict(dtype="complex128"), UnsupportedDtypeError), (dict(assume="chol"), InputError),
    (dict(gpus_per_worker=2), InputError), (dict(gpu_memory="80GB"), InputError),
    (dict(budget="lots"), InputError), (dict(budget=-1), InputError), (dict(block_size=0), InputError),
    (dict(rates={"gemm": 1e9}), InputError), (dict(rates={"io_bytes": 0}), InputError),
    (dict(gpus_per_worker=1, gpu_memory="80GB", block_size=50_000), InputError),
])
def test_bad_input_is_an_input_error(kw, err):
    args = {"n": 100_000, "workers": 4, "budget": "64GB", **kw}
    n = args.pop("n")
    with pytest.raises(err):
        dlogdet.plan(n, **args)


@pytest.mark.parametrize("key,value", [("dlogdet.plan.gemm-flops", "fast"), ("dlogdet.plan.io-bytes", 0),
                                       ("dlogdet.plan.gemm-flops", float("inf")),
                                       ("dlogdet.memory.tiles-per-task", 0), ("dlogdet.memory.mode", "disk"),
                                       ("dlogdet.block-size", -3)])
def test_bad_dask_config_is_an_input_error(key, value):
    with dask.config.set({key: value}):
        with pytest.raises(InputError, match=re.escape(key.split(".", 1)[1])):
            dlogdet.plan(100_000, workers=4, budget="64GB")


def test_rates_come_from_dask_config():
    with dask.config.set({"dlogdet.plan.gemm-flops": 2e10, "dlogdet.plan.io-bytes": 5e8}):
        p = dlogdet.plan(100_000, workers=10, budget="16GB")
    assert (p.rates.gemm_flops, p.rates.io_bytes) == (2e10, 5e8)
    assert "dlogdet.plan.gemm-flops" in p.rates.gemm_source and "dlogdet.plan.io-bytes" in p.rates.io_source


def test_budget_from_dask_config():
    with dask.config.set({"dlogdet.memory.budget": "8GB"}):
        assert dlogdet.plan(50_000, workers=2, budget=None).budget_bytes == 8 * 10**9
    with dask.config.set({"dlogdet.memory.budget": None}):
        with pytest.raises(InputError, match="budget"):
            dlogdet.plan(50_000, workers=2, budget=None)


# --------------------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------------------

def test_cli_plan_json(capsys):
    rc = cli.main(["plan", "--n", "500000", "--workers", "32", "--budget", "80GB", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    d = json.loads(out)
    p = dlogdet.plan(500_000, workers=32, budget="80GB")
    assert d == json.loads(p.to_json())
    assert d["n_tasks"] == task_count(d["n_panels"], "spd")
    assert set(d["rates"]) == {"gemm_flops", "io_bytes", "gemm_source", "io_source", "network_bytes", "task_seconds",
                              "task_latency", "network_source", "task_source", "transfer_latency"}


def test_cli_plan_table_and_options(capsys):
    rc = cli.main(["plan", "--n", "200000", "--workers", "4", "--budget", "64GiB", "--assume", "gen",
                   "--dtype", "float32", "--gpus-per-worker", "2", "--gpu-memory", "40GB", "--gemm-flops", "1e13"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "LU" in out and "float32" in out and "given (rates=)" in out and "GPU memory" in out
    # an aligned table: every value starts in the same column (labels hold single spaces, columns two or more)
    rows = [line for line in out.splitlines() if not line.startswith("warning")]
    starts = {re.match(r"^\S.*?\s{2,}(\S)", line).start(1) for line in rows}
    assert len(rows) > 20 and len(starts) == 1


@pytest.mark.parametrize("argv", [
    ["--budget", "80 parsecs"],
    ["--budget", "1MiB"],                       # MemoryBudgetError
    ["--budget", "8GB", "--gpus-per-worker", "1"],
    ["--budget", "8GB", "--dtype", "int32"],
    ["--budget", "8GB", "--n", "0"],
])
def test_cli_plan_bad_input_exits_2(capsys, argv):
    base = {"--n": "10000", "--workers": "2"}
    for k, v in zip(argv[::2], argv[1::2]):
        base[k] = v
    rc = cli.main(["plan", *[x for kv in base.items() for x in kv]])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == "" and err.startswith("dlogdet: error:") and len(err.strip().splitlines()) == 1
