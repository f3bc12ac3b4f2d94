"""The out-of-core engine: tile store, budget, refusals, idempotent tasks and resume.

References are independent of the engine: matrices with a prescribed spectrum (exact log|det|, sign and inertia)
and LAPACK's slogdet. Tolerances are those of tests/conftest.py (``logdet_tol``): the store changes where tiles
live, not the arithmetic, so the out-of-core result must equal the in-memory one to the last bits too.
"""

from __future__ import annotations

import os
import threading
import time

import dask
import numpy as np
import pytest

import dlogdet
from dlogdet.core.errors import MemoryBudgetError, ScratchSpaceError
from dlogdet.engine.plan import store_block_size
from dlogdet.engine.store import FromStore, TileStore, run_task

from .conftest import general_matrix, log_uniform_spectrum, logdet_tol, spectrum_matrix

N = 700
KAPPA = float(np.exp(4.0))  # log|λ| uniform on [-2, 2]


@pytest.fixture(autouse=True)
def small_tiles():
    """Tiles down to 64 (the default floor of 256 would make these matrices one or two tiles)."""
    with dask.config.set({"dlogdet.min-block-size": 64}):
        yield


def tile_budget(b: int, itemsize: int = 8) -> int:
    """The budget whose store tile size is b: five tiles of b² items (dlogdet.memory.tiles-per-task)."""
    return 5 * itemsize * b * b


@pytest.fixture(scope="module")
def spd():
    return spectrum_matrix(N, log_uniform_spectrum(N, -2.0, 2.0, seed=1), seed=2)


@pytest.fixture(scope="module")
def sym():
    return spectrum_matrix(N, log_uniform_spectrum(N, -2.0, 2.0, seed=3, negative_every=3), seed=4)


@pytest.mark.parametrize("assume", ["spd", "sym", "gen"])
def test_store_mode_matches_exact_values(spd, sym, assume, tmp_path):
    if assume == "gen":
        a, ld, sign, kappa = general_matrix(N, log_uniform_spectrum(N, -2.0, 2.0, seed=5, negative_every=7), seed=6)
        inertia = None
    else:
        a, ld, sign, inertia = spd if assume == "spd" else sym
        kappa = KAPPA
    r = dlogdet.logdet(a, assume=assume, budget=tile_budget(128), scratch=tmp_path)
    d = r.diagnostics
    assert d["mode"] == "store" and d["block_size"] == 128 and d["n_panels"] == 6   # 700 = 5·128 + 60
    assert abs(r.logdet - ld) <= logdet_tol(N, kappa)
    assert r.sign == sign
    if inertia is not None:
        assert tuple(r.inertia) == inertia
    # the same arithmetic as the in-memory engine, tile for tile; only memory layouts differ (tiles come back from
    # disk C-ordered, where in memory a solve may leave them Fortran-ordered), so BLAS may sum in another order:
    # per-pivot differences at the rounding level of the tile products, far below the engine's error
    m = dlogdet.logdet(a, assume=assume, block_size=128)
    assert m.diagnostics["mode"] == "memory"
    np.testing.assert_allclose(r.log_pivots, m.log_pivots, rtol=0, atol=1e-12)
    # every factor, solve and update task computed once (the rest: a done mark per step, the symmetry checks
    # of the off-diagonal pairs for spd/sym, the gather), and the store is gone after success
    nt = d["n_panels"]
    assert d["tasks_computed"] == d["n_tasks"] - nt - (nt * (nt - 1) // 2 if assume != "gen" else 0) - 1
    assert d["resumed_from_step"] == 0
    assert os.listdir(tmp_path) == []


def test_store_mode_from_npy_with_jitter(spd, tmp_path):
    a, *_ = spd
    np.save(tmp_path / "a.npy", a)
    dv = np.linspace(0.1, 0.5, N)
    r = dlogdet.logdet(str(tmp_path / "a.npy"), t=2.0, d=dv, budget=tile_budget(128), scratch=tmp_path / "s")
    ref = np.linalg.slogdet(2.0 * a + np.diag(dv))
    assert r.diagnostics["mode"] == "store"
    assert abs(r.logdet - ref[1]) <= logdet_tol(N, KAPPA) and r.sign == ref[0]


def test_budget_from_dask_config(spd, tmp_path):
    a, ld, *_ = spd
    with dask.config.set({"dlogdet.memory.budget": "700KiB", "dlogdet.scratch": str(tmp_path)}):
        r = dlogdet.logdet(a)
    assert r.diagnostics["mode"] == "store" and r.diagnostics["budget"] == 700 * 1024
    assert 5 * 8 * r.diagnostics["block_size"] ** 2 <= 700 * 1024
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA)


def test_budget_too_small_names_the_smallest_that_works(spd, tmp_path):
    a, ld, *_ = spd
    with pytest.raises(MemoryBudgetError, match=r"smallest budget that works is (\d+) bytes") as e:
        dlogdet.logdet(a, budget="100KB", scratch=tmp_path)
    smallest = int(e.value.args[0].split("smallest budget that works is ")[1].split(" bytes")[0])
    assert smallest == tile_budget(64)   # five tiles of the smallest tile (dlogdet.min-block-size)
    r = dlogdet.logdet(a, budget=smallest, scratch=tmp_path)
    assert r.diagnostics["mode"] == "store" and r.diagnostics["block_size"] == 64
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA)
    # an explicit tile too big for the budget is refused too
    with pytest.raises(MemoryBudgetError, match="block_size <= 64"):
        dlogdet.logdet(a, budget=smallest, block_size=100, scratch=tmp_path)


def test_not_enough_scratch_disk_is_refused(spd, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    a, *_ = spd
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(ScratchSpaceError, match=r"needs \d+ bytes .* which has 1000 bytes free"):
        dlogdet.logdet(a, budget=tile_budget(128), scratch=tmp_path)


def test_store_task_is_idempotent(tmp_path):
    """A task whose consumed input is gone has run before: it returns at once, reading nothing."""
    store = TileStore(str(tmp_path))
    c, li = np.eye(3), np.ones((3, 3))
    store.save("A-1-1-0.npy", c)
    store.save("L-1-0.npy", li)
    ref = run_task(store, "update", "A-1-1-1.npy", (FromStore("A-1-1-0.npy"), FromStore("L-1-0.npy"),
                                                    FromStore("L-1-0.npy")), ())
    assert ref.computed and not store.exists("A-1-1-0.npy")
    np.testing.assert_array_equal(store.load("A-1-1-1.npy"), c - li @ li.T)
    store.delete("A-1-1-1.npy")   # even with its output consumed downstream, a rerun does not recompute
    again = run_task(store, "update", "A-1-1-1.npy", (FromStore("A-1-1-0.npy"), FromStore("L-1-0.npy"),
                                                      FromStore("L-1-0.npy")), ())
    assert not again.computed and not store.exists("A-1-1-1.npy")


class Stop(Exception):
    pass


def test_resume_after_interrupted_run(spd, tmp_path):
    """A run stopped after 3 of 6 steps leaves its store; the same call resumes there and computes only the rest."""
    a, ld, *_ = spd
    np.save(tmp_path / "a.npy", a)
    path, scratch = str(tmp_path / "a.npy"), tmp_path / "scratch"
    budget = tile_budget(128)

    def stop_after_three(p):
        if p.panels_done >= 3:
            raise Stop()

    with pytest.raises(Stop):
        dlogdet.logdet(path, budget=budget, scratch=scratch, progress=stop_after_three)
    (store_dir,) = os.listdir(scratch)
    done = {int(f.split("-")[1]) for f in os.listdir(scratch / store_dir) if f.startswith("done-")}
    assert len(done) >= 3 and done == set(range(len(done)))   # marks are contiguous: steps 0..k complete

    full = dlogdet.logdet(path, budget=budget, scratch=tmp_path / "fresh")
    r = dlogdet.logdet(path, budget=budget, scratch=scratch)
    assert r.diagnostics["resumed_from_step"] == len(done)
    # step k has (6-k)(7-k)/2 tasks (factor, solves, updates); none of the finished steps' tasks ran again
    skipped = sum((6 - k) * (7 - k) // 2 for k in done)
    assert full.diagnostics["tasks_computed"] == sum((6 - k) * (7 - k) // 2 for k in range(6))
    assert r.diagnostics["tasks_computed"] <= full.diagnostics["tasks_computed"] - skipped
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA)
    # the same kernels on the same tiles, one BLAS thread per task: bit-equal. (Whole-suite runs once differed by
    # 2.4e-14: tasks of the interrupted run went on after it returned, with BLAS no longer pinned to one thread,
    # and wrote tiles the resume then read; see test_interrupted_run_leaves_no_task_running.)
    np.testing.assert_array_equal(r.log_pivots, full.log_pivots)
    assert os.listdir(scratch) == []


def test_interrupted_run_leaves_no_task_running(spd, tmp_path):
    """When a run fails (here its progress callback raises), no task of it runs on after the call returned: the
    store is exactly as the failure left it (before, tasks in flight went on writing it, BLAS no longer pinned)."""
    a, *_ = spd
    np.save(tmp_path / "a.npy", a)
    seen = []

    def stop_after_three(p):
        if p.panels_done >= 3:
            raise Stop()

    for trial in range(3):
        scratch = tmp_path / f"s{trial}"
        with pytest.raises(Stop):
            dlogdet.logdet(str(tmp_path / "a.npy"), budget=tile_budget(128), scratch=scratch,
                           progress=stop_after_three)
        (store_dir,) = os.listdir(scratch)
        before = sorted(os.listdir(scratch / store_dir))
        time.sleep(0.3)   # a task of a 128-row tile takes milliseconds: any left running would have written
        seen.append(sorted(os.listdir(scratch / store_dir)) == before)
    assert all(seen)


def test_resume_false_starts_over(spd, tmp_path):
    a, ld, *_ = spd
    np.save(tmp_path / "a.npy", a)
    path = str(tmp_path / "a.npy")

    def stop(p):
        if p.panels_done >= 2:
            raise Stop()

    with pytest.raises(Stop):
        dlogdet.logdet(path, budget=tile_budget(128), scratch=tmp_path / "s", progress=stop)
    r = dlogdet.logdet(path, budget=tile_budget(128), scratch=tmp_path / "s", resume=False)
    assert r.diagnostics["resumed_from_step"] == 0
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA)


def test_store_block_size_rule():
    with dask.config.set({"dlogdet.min-block-size": 256}):
        with pytest.raises(MemoryBudgetError):
            store_block_size(6000, 2, 2 * 2**20, 8)
    b = store_block_size(500_000, 32, 80 * 10**9, 8)
    assert 5 * 8 * b * b <= 80 * 10**9 and b % 64 == 0 and b <= 8192
    assert store_block_size(6000, 2, 64 * 2**20, 8) == 1280   # 5·8·1280² = 62.5 MiB <= 64 MiB


# --------------------------------------------------------------------------------------------------------------
# The promise, measured: a matrix larger than the summed budgets, each worker under its budget
# --------------------------------------------------------------------------------------------------------------

# What a worker may add to its start-of-run RSS beyond the budget: NumPy puts arrays >= 4 MiB on 2 MiB huge pages
# (up to 2 MiB rounding for each of the 5 tiles a task holds: 10 MiB), the allocator keeps freed small blocks and
# fragments (a few MiB), and the worker's own bookkeeping of ~200 tasks and their results grows by a few MiB.
# Measured growth on this machine: 50-62 MiB for a 64 MiB budget.
OVERHEAD = 32 * 2**20


@pytest.mark.cluster
@pytest.mark.timeout(240)
def test_two_workers_stay_under_64_mib_each(tmp_path):
    import distributed
    import psutil

    n = 6000
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, n // 4))
    a = x @ x.T / (n // 4)
    a[np.diag_indices(n)] += 1.0
    del x
    path = str(tmp_path / "a.npy")
    np.save(path, a)
    sign, ref = np.linalg.slogdet(a)
    matrix_bytes = a.nbytes
    del a
    budget = 64 * 2**20
    assert matrix_bytes > 2 * 2 * budget   # 275 MiB: more than twice the summed budgets

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        client.run(lambda: __import__("dlogdet.engine.store"))   # imports are part of the baseline, not of the run
        procs = {w: psutil.Process(pid) for w, pid in client.run(os.getpid).items()}
        start = {w: p.memory_info().rss for w, p in procs.items()}
        peak = dict(start)
        stop = threading.Event()

        def sample():
            while not stop.wait(0.01):
                for w, p in procs.items():
                    peak[w] = max(peak[w], p.memory_info().rss)

        th = threading.Thread(target=sample)
        th.start()
        try:
            r = dlogdet.logdet(path, budget=budget, scratch=tmp_path / "scratch", client=client)
        finally:
            stop.set()
            th.join()
    d = r.diagnostics
    assert d["mode"] == "store" and d["block_size"] == 1280
    assert abs(r.logdet - ref) <= 1e-10 * abs(ref) and r.sign == sign
    for w in procs:
        assert peak[w] - start[w] <= budget + OVERHEAD, (w, (peak[w] - start[w]) / 2**20)
    # the plugin's accounting and the workers' own 20 ms samples say the same
    assert len(d["peak_tracked_bytes_per_worker"]) == 2
    assert all(0 < v <= budget for v in d["peak_tracked_bytes_per_worker"].values())
    for w, p in d["peak_rss_sampled_bytes_per_worker"].items():
        assert p - d["rss_at_start_bytes_per_worker"][w] <= budget + OVERHEAD


def test_cli_budget_and_scratch(spd, tmp_path, capsys):
    import json

    from dlogdet.cli import main

    a, ld, *_ = spd
    np.save(tmp_path / "a.npy", a)
    rc = main(["logdet", str(tmp_path / "a.npy"), "--budget", str(tile_budget(128)), "--scratch",
               str(tmp_path / "s"), "--json", "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["diagnostics"]["mode"] == "store" and out["diagnostics"]["block_size"] == 128
    assert abs(out["logdet"] - ld) <= logdet_tol(N, KAPPA)
    assert os.listdir(tmp_path / "s") == []
    rc = main(["logdet", str(tmp_path / "a.npy"), "--budget", "100KB", "--scratch", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "smallest budget that works is 163840 bytes" in err[0]


def test_in_memory_array_resumes_too(spd, tmp_path):
    """An in-memory matrix goes out of core through a copy named by its content: the same call resumes."""
    a, ld, *_ = spd
    scratch = tmp_path / "s"

    def stop(p):
        if p.panels_done >= 2:
            raise Stop()

    with pytest.raises(Stop):
        dlogdet.logdet(a.copy(), budget=tile_budget(128), scratch=scratch, progress=stop)
    assert any(f.startswith("dlogdet-input-") for f in os.listdir(scratch))   # kept for the resume
    r = dlogdet.logdet(a.copy(), budget=tile_budget(128), scratch=scratch)
    assert r.diagnostics["resumed_from_step"] >= 2
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA)
    assert os.listdir(scratch) == []
