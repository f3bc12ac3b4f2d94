"""The dry-run planner ``dlogdet.plan`` / ``dlogdet plan``: closed-form counts checked against built graphs and
brute-force enumeration, the memory model against the budget, refusals that name a budget that works, the CLI.

Sizes are checked against the plan's own reported model parameters (``tiles_per_task``, ``overhead_bytes``), so the
tests hold whatever ``dlogdet.memory.*`` says in dask config; tests that need a specific setting pin it.
"""

from __future__ import annotations

import json
import math
import re
import time

import dask.config
import numpy as np
import pytest

import dlogdet
from dlogdet import cli
from dlogdet.errors import InputError, MemoryBudgetError, UnsupportedDtypeError
from dlogdet.graph import Tiling, build_factor_graph, task_count
from dlogdet.plan import GPU_MAX_TILE, Plan, matrix_tile_bytes, traffic
from dlogdet.sources import ArraySource

BIG = [
    dict(n=500_000, workers=32, budget="80GB"),
    dict(n=1_000_000, workers=64, budget="80GB"),
]
NEED = re.compile(r"the smallest [A-Za-z_ ]+ that works is (\d+) bytes")


def check_sane(p: Plan, n: int, workers: int, budget: int) -> None:
    """Invariants every plan satisfies."""
    lo = min(256, n)
    assert lo <= p.block_size <= n
    if p.block_size >= 256 and p.block_size < n and p.block_size_limited_by != "given (block_size=)":
        assert p.block_size % 256 == 0
    assert p.n_panels == Tiling(n, p.block_size).nt
    assert p.n_panels * p.block_size >= n > (p.n_panels - 1) * p.block_size
    assert p.n_tasks == task_count(p.n_panels, p.assume)
    assert p.n_tiles == (p.n_panels ** 2 if p.assume == "gen" else p.n_panels * (p.n_panels + 1) // 2)
    assert p.tile_bytes == p.block_size ** 2 * np.dtype(p.dtype).itemsize
    assert p.working_set_bytes == p.overhead_bytes + p.tiles_per_task * p.slots_per_worker * p.tile_bytes
    assert p.working_set_bytes <= p.peak_bytes_per_worker <= budget
    assert p.flops == pytest.approx((2 if p.assume == "gen" else 1) * n ** 3 / 3, rel=1e-12)
    assert p.mode in ("memory", "store")
    if p.mode == "store":
        assert p.resident_tiles_per_worker == p.tiles_per_task * p.slots_per_worker
        assert p.store_write_bytes > 0 and (p.store_read_bytes > 0 or p.n_panels == 1)
        assert p.scratch_bytes >= p.matrix_bytes
    else:
        assert p.store_read_bytes == p.store_write_bytes == p.scratch_bytes == 0
    assert p.source_read_bytes == p.matrix_bytes
    assert p.time_total_s == pytest.approx(p.time_compute_s + p.time_critical_path_s + p.time_io_s)
    assert all(t > 0 for t in (p.time_compute_s, p.time_critical_path_s, p.time_io_s))
    json.dumps(p.to_dict())


# --------------------------------------------------------------------------------------------------------------
# the two cases of issue 3: instant and sane
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", BIG, ids=lambda c: f"n{c['n']}-w{c['workers']}")
def test_big_cases_answer_in_well_under_a_second(case):
    dlogdet.plan(**case)  # warm: lazy imports, config
    t0 = time.perf_counter()
    p = dlogdet.plan(**case)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, elapsed
    budget = 80 * 10**9
    check_sane(p, case["n"], case["workers"], budget)
    # enough panels to keep every worker busy: the first trailing update has ~nt²/2 independent tasks
    assert p.n_panels >= math.sqrt(8 * case["workers"])
    assert p.flops == pytest.approx(case["n"] ** 3 / 3)
    s = p.summary()
    for word in ("tile size", "tasks", "GiB", "TFLOP", "predicted time", "default (dask config"):
        assert word in s


def test_the_two_cases_take_the_two_modes():
    # 0.5M float64: lower triangle 1.0 TB, half of 32 x 80 GB is 1.28 TB: stays in memory
    # 1M: 4 TB > half of 64 x 80 GB: the on-disk tile store, with the matrix once on disk
    with dask.config.set({"dlogdet.memory.mode": "auto", "dlogdet.memory.tiles-per-task": 4}):
        a = dlogdet.plan(**BIG[0])
        b = dlogdet.plan(**BIG[1])
    assert a.mode == "memory" and b.mode == "store"
    assert a.resident_tiles_per_worker == 4 + math.ceil(a.n_tiles / 32)
    assert b.resident_tiles_per_worker == 4
    n, bs = b.n, b.block_size
    assert b.scratch_bytes == b.matrix_bytes + n * bs * 8


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

@pytest.mark.parametrize("kw", [dict(n=6000, workers=2, budget="64MiB"),
                                dict(n=100_000, workers=8, budget=10**6, dtype="float32"),
                                dict(n=200, workers=1, budget="100MiB")])
def test_too_small_budget_names_one_that_works(kw):
    with pytest.raises(MemoryBudgetError) as e:
        dlogdet.plan(**kw)
    m = NEED.search(str(e.value))
    assert m, str(e.value)
    need = int(m.group(1))
    assert "MiB" in str(e.value) or "GiB" in str(e.value)  # also human-readable
    p = dlogdet.plan(**{**kw, "budget": need})
    check_sane(p, kw["n"], kw["workers"], need)
    assert p.block_size == min(256, kw["n"])
    with pytest.raises(MemoryBudgetError):
        dlogdet.plan(**{**kw, "budget": need - 1})


def test_given_block_size_too_large_names_budget_and_block_size_that_work():
    with pytest.raises(MemoryBudgetError) as e:
        dlogdet.plan(50_000, workers=4, budget="1GiB", block_size=8192)
    msg = str(e.value)
    need = int(NEED.search(msg).group(1))
    fit = int(re.search(r"block_size <= (\d+)", msg).group(1))
    assert dlogdet.plan(50_000, workers=4, budget=need, block_size=8192).block_size == 8192
    assert dlogdet.plan(50_000, workers=4, budget="1GiB", block_size=fit).block_size == fit
    with pytest.raises(MemoryBudgetError):
        dlogdet.plan(50_000, workers=4, budget="1GiB", block_size=fit + 1)


def test_block_size_is_the_largest_that_fits_when_the_budget_limits_it():
    with dask.config.set({"dlogdet.memory.mode": "store", "dlogdet.memory.store-max-block-size": None,
                          "dlogdet.memory.tiles-per-task": 4, "dlogdet.memory.overhead": "256MiB"}):
        p = dlogdet.plan(1_000_000, workers=4, budget="8GiB")
    raw = math.isqrt((8 * 2**30 - 256 * 2**20) // (4 * 8))
    assert p.block_size == raw - raw % 256
    assert p.block_size_limited_by.startswith("memory budget")
    # the largest: one more step of 256 would not fit
    grown = p.working_set_bytes + 4 * 8 * ((p.block_size + 256) ** 2 - p.block_size ** 2)
    assert p.working_set_bytes <= 8 * 2**30 < grown


def test_memory_mode_peak_includes_the_share_of_the_matrix():
    p = dlogdet.plan(20_000, workers=4, budget="2GiB")
    assert p.mode == "memory"
    assert p.peak_bytes_per_worker == p.working_set_bytes + math.ceil(p.matrix_bytes / 4) <= 2 * 2**30
    # the matrix (400 MB) takes less than half of the summed budgets (600 MB), but a worker's share (100 MB) does
    # not fit beside the working set (overhead 256 MiB + tiles): the tile store
    with dask.config.set({"dlogdet.memory.mode": "auto", "dlogdet.memory.overhead": "256MiB"}):
        q = dlogdet.plan(10_000, workers=4, budget="300MB")
    assert q.mode == "store" and q.peak_bytes_per_worker <= 300e6
    assert "share" in q.mode_reason


def test_gpu_workers():
    with dask.config.set({"dlogdet.memory.mode": "store", "dlogdet.memory.store-max-block-size": None}):
        p = dlogdet.plan(2_000_000, workers=4, budget="2TB", gpus_per_worker=2, gpu_memory="200GB")
        assert p.block_size < GPU_MAX_TILE + 1 and p.block_size % 256 == 0
        assert p.block_size_limited_by.startswith("GPU tile limit")
        q = dlogdet.plan(2_000_000, workers=4, budget="2TB", gpus_per_worker=2, gpu_memory="16GB")
    for r in (p, q):
        assert r.slots_per_worker == 2
        assert r.gpu_working_set_bytes == r.overhead_bytes + r.tiles_per_task * r.tile_bytes <= r.gpu_memory_bytes
        assert r.working_set_bytes <= r.budget_bytes
        assert r.time_compute_s == pytest.approx(r.flops / (8 * r.rates.gemm_flops))
        assert "gpu-gemm-flops" in r.rates.gemm_source
    assert q.block_size_limited_by.startswith("GPU memory")
    with pytest.raises(MemoryBudgetError) as e:
        dlogdet.plan(10_000, workers=1, budget="8GB", gpus_per_worker=1, gpu_memory="200MiB")
    need = int(NEED.search(str(e.value)).group(1))
    assert "gpu_memory" in str(e.value)
    dlogdet.plan(10_000, workers=1, budget="8GB", gpus_per_worker=1, gpu_memory=need)


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
    assert set(d["rates"]) == {"gemm_flops", "io_bytes", "gemm_source", "io_source"}


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
