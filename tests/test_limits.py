"""Runs that meet the machine's limits: workers' memory limits (the automatic budget), and a scratch file system
that fills up or loses the tile store in the middle of an out-of-core run.

The references are LAPACK's log-determinant of the same matrix (``numpy.linalg.slogdet``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import dask
import numpy as np
import pytest

import dlogdet
from dlogdet.runtime import memory
from dlogdet.cli import main
from dlogdet.core.errors import MemoryBudgetError, ScratchSpaceError, WorkerMemoryError

from .conftest import log_uniform_spectrum, spectrum_matrix

pytestmark = pytest.mark.timeout(240)


def spd_npy(path, n, seed=0):
    """An SPD matrix with eigenvalues log-uniform in [e^-3, e^3] saved as .npy: (exact log det, κ bound)."""
    a, ld, _, _ = spectrum_matrix(n, log_uniform_spectrum(n, -3.0, 3.0, seed=seed), seed=seed)
    np.save(path, a)
    return ld, float(np.exp(6.0))


@pytest.fixture()
def small_workers():
    """Two worker processes with 200 MiB each: what dask-jobqueue gives workers of small jobs."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="200MiB", processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


# --------------------------------------------------------------------------------------------------------------
# the automatic budget
# --------------------------------------------------------------------------------------------------------------

def test_auto_budget_rule():
    # f·limit − memory in use, with dask's target fraction (0.6 by default)
    assert memory.auto_fraction() == 0.6
    assert memory.from_limit(200 * 2**20, 80 * 2**20, 0.6, who="w") == int(0.6 * 200 * 2**20 - 80 * 2**20)
    with pytest.raises(MemoryBudgetError, match="memory limit of 100 MiB and already uses 70 MiB") as e:
        memory.from_limit(100 * 2**20, 70 * 2**20, 0.6, who="worker w")
    assert e.value.needed > 70 * 2**20 / 0.6
    with dask.config.set({"dlogdet.memory.auto-fraction": 1.5}):
        with pytest.raises(dlogdet.InputError, match="auto-fraction"):
            memory.auto_fraction()
    # in-process: a share of the available memory per thread; a given budget is taken as it is
    b = memory.resolve()
    assert b.is_auto and b.bytes > 0 and "available memory" in b.source
    assert memory.resolve("2GiB").bytes == 2 * 2**30
    with dask.config.set({"dlogdet.memory.budget": None}):
        assert memory.resolve().bytes is None
    # the planner, without a cluster, needs the workers' memory and uses dlogdet.memory.overhead as their baseline
    p = dlogdet.plan(200_000, workers=16, worker_memory="64GB")
    assert p.budget_bytes == int(0.6 * 64e9 - 256 * 2**20) and p.budget_source.startswith("auto")
    with pytest.raises(dlogdet.InputError, match="worker_memory"):
        dlogdet.plan(200_000, workers=16)
    # a GPU worker without its host memory: planned as if the host held its GPUs' memory, and said so
    g = dlogdet.plan(200_000, workers=16, gpus_per_worker=2, gpu_memory="80GB")
    assert g.budget_bytes == int(0.6 * 160e9 - 256 * 2**20) and "taken to be its GPUs' memory" in g.budget_source


def test_workers_memory_limits_set_the_budget(small_workers, tmp_path):
    """No budget given, 200 MiB workers, a matrix whose lower triangle (100 MB) exceeds what the limits leave for
    tiles: the run goes out of core by itself, is exact, and the planner, asked about the same cluster, predicts
    the mode and tile it runs with."""
    n, m = 5000, 40
    x = np.random.default_rng(0).standard_normal((n, m)) / np.sqrt(m)
    path = tmp_path / "a.npy"
    np.save(path, np.eye(n) + x @ x.T)
    # the reference: log det(I_n + X Xᵀ) = log det(I_m + Xᵀ X) (Sylvester's determinant identity), by LAPACK
    s, ref = np.linalg.slogdet(np.eye(m) + x.T @ x)
    plan = dlogdet.plan(n, client=small_workers)
    t0 = time.perf_counter()
    r = dlogdet.logdet(str(path), client=small_workers, scratch=tmp_path / "s")
    t_auto = time.perf_counter() - t0
    d = r.diagnostics
    assert d["mode"] == "store" == plan.mode and d["block_size"] == plan.block_size
    assert d["budget_source"].startswith("auto") and "200 MiB" in d["budget_source"]
    assert d["budget"] < 0.6 * 200 * 2**20
    assert r.sign == s and abs(r.logdet - ref) <= 1e-10 * abs(ref)
    # the same run with the budget given explicitly (the time ratio is printed, not asserted: a shared machine)
    t0 = time.perf_counter()
    e = dlogdet.logdet(str(path), client=small_workers, scratch=tmp_path / "s", budget=d["budget"])
    t_given = time.perf_counter() - t0
    assert e.diagnostics["mode"] == "store" and e.logdet == pytest.approx(r.logdet, rel=1e-12)
    print(f"\n[auto budget] {d['budget'] / 2**20:.1f} MiB per worker, tile {d['block_size']}: {t_auto:.2f} s; "
          f"the same budget given: {t_given:.2f} s")


def test_worker_lost_to_memory_names_limit_and_fix(tmp_path):
    """With the budget switched off (dask config null) and dask's own spilling off too, a matrix larger than the
    workers makes the nanny restart one: the run ends, bounded in time, with an error that names the worker's
    limit, what the run held per worker, and the fix (a hang or a bare FutureCancelledError before)."""
    from distributed import Client, LocalCluster

    n = 7000          # 196 MB lower triangle: ~98 MB per worker of 200 MiB, beside a ~90 MB baseline
    path = tmp_path / "a.npy"
    a = np.eye(n) * 2.0
    np.save(path, a)
    del a
    cfg = {"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
           "distributed.worker.memory.pause": False}
    with dask.config.set(cfg), LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="200MiB",
                                            processes=True, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t0 = time.perf_counter()
        with dask.config.set({"dlogdet.memory.budget": None}):
            with pytest.raises(WorkerMemoryError) as e:
                dlogdet.logdet(str(path), client=client, check_symmetry=False)
        msg = str(e.value)
        assert "memory limit 200 MiB" in msg and "budget" in msg and "MiB of tiles per worker" in msg
        assert time.perf_counter() - t0 < 120


# --------------------------------------------------------------------------------------------------------------
# a scratch file system that fails in the middle of an out-of-core run
# --------------------------------------------------------------------------------------------------------------

N, BS = 700, 128


@pytest.fixture()
def small_tiles():
    with dask.config.set({"dlogdet.min-block-size": 64}):
        yield


def store_budget(b: int = BS) -> int:
    return 5 * b * b * 8 + 8 * b * b   # one task's working set, and less than two


@pytest.fixture()
def after_step(monkeypatch):
    """``after_step(k, action)``: once the tile store has marked step ``k`` done, do ``action(store_dir)`` (fill the
    file system, or remove the store) before each of its tile writes, as another process keeping the disk full
    would, until the test sets ``["stopped"]``. The run executes in this process, so hooks on the store are
    deterministic: a thread polling the directory lost the race to a fast run, and one fill at the mark could be
    undone by the tiles that later steps delete before their next write."""
    from dlogdet.engine.store import TileStore

    def install(step: int, action):
        mark, save = TileStore.mark, TileStore.save
        state = {"marked": False, "fired": False, "stopped": False}

        def hooked_mark(store, name):
            mark(store, name)
            if name == f"done-{step}":
                state["marked"] = True

        def hooked_save(store, name, obj):
            if state["marked"] and not state["stopped"]:
                state["fired"] = True
                action(store.root)
            save(store, name, obj)
        monkeypatch.setattr(TileStore, "mark", hooked_mark)
        monkeypatch.setattr(TileStore, "save", hooked_save)
        return state
    return install


def _mount_tmpfs(where, size: str) -> bool:
    os.makedirs(where, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


def test_scratch_file_system_fills_up_mid_run_then_resumes(tmp_path, capsys, small_tiles, after_step):
    """A 16 MiB file system (a tmpfs) holds the tile store of a 13-step run; another writer fills it after step 1.
    The command ends with exit status 2 and one line that says what happened, how much space the run needs and
    where it resumes; with the space freed, the same command resumes there and is exact."""
    mnt = tmp_path / "scratch"
    if not _mount_tmpfs(mnt, "16m"):
        pytest.skip("cannot mount a tmpfs here (needs root); test_tile_store_that_vanishes covers the message")
    try:
        path = tmp_path / "a.npy"
        spd_npy(path, 1600)
        filler = mnt / "filler"

        def fill(_store):                    # every free byte: the next tile write fails with ENOSPC
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                while os.write(fd, b"\0" * 65536):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)

        argv = ["logdet", str(path), "--budget", str(store_budget()), "--scratch", str(mnt), "--json"]
        hook = after_step(1, fill)
        rc = main(argv)
        hook["stopped"] = True
        assert hook["fired"], "no tile was written after step 1: the test's matrix no longer has several steps"
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1, err
        assert "filled up" in err[0] and "bytes" in err[0] and "resumes from step" in err[0]
        k = int(err[0].split("resumes from step ")[1].split()[0].rstrip(".,"))
        assert k >= 2
        os.remove(filler)
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["diagnostics"]["resumed_from_step"] == k
        s, ref = np.linalg.slogdet(np.load(path))
        assert out["sign"] == s and abs(out["logdet"] - ref) <= 1e-10 * abs(ref)
        assert [f for f in os.listdir(mnt)] == []     # the store is gone after success
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_tile_store_that_vanishes_mid_run(tmp_path, capsys, small_tiles, after_step):
    """Another process removes the tile store after step 1: exit status 2, one line naming what happened; what is
    left of the store is removed, and the same command then runs again from the start and is exact."""
    path = tmp_path / "a.npy"
    spd_npy(path, N)
    scratch = tmp_path / "scratch"
    argv = ["logdet", str(path), "--budget", str(store_budget()), "--scratch", str(scratch), "--json"]
    hook = after_step(1, lambda store: shutil.rmtree(store, ignore_errors=True))
    rc = main(argv)
    hook["stopped"] = True
    assert hook["fired"], "no tile was written after step 1: the test's matrix no longer has several steps"
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "vanished" in err[0] and "run the same command again" in err[0] and "starts over" in err[0]
    assert os.listdir(scratch) == []
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    s, ref = np.linalg.slogdet(np.load(path))
    assert out["sign"] == s and abs(out["logdet"] - ref) <= 1e-10 * abs(ref)


def test_short_write_without_errno_is_read_as_a_full_disk(tmp_path):
    # numpy reports a short write as OSError("... requested and ... written") with no errno: with less free space
    # than the run needs, that is a full disk too
    from dlogdet.estimators.exact import scratch_failure
    from dlogdet.engine.store import StoreWriteError

    store = tmp_path / "dlogdet-abc"
    store.mkdir()
    (store / "done-0").touch()
    (store / "done-1").touch()
    e = StoreWriteError(None, "1638400 requested and 1308144 written", str(store / "A-3-3-2.npy"))
    free = shutil.disk_usage(tmp_path).free
    err = scratch_failure(e, str(tmp_path), nt=6, need=free + 10**9)
    assert isinstance(err, ScratchSpaceError) and "filled up" in str(err) and "resumes from step 2" in str(err)
    assert "\n" not in str(err)
    # an OSError about another file is not the tile store's
    assert scratch_failure(FileNotFoundError(2, "No such file", "/elsewhere/x.npy"), str(tmp_path), 6, 1) is None


def test_a_nanny_restart_event_is_evidence_of_memory():
    """A worker killed between two samples leaves no high-memory sample behind; its nanny's restart event is the
    evidence, and only restarts during the run count."""
    from dlogdet.runtime.execute import MemoryWatch

    w = MemoryWatch(needed=150 * 2**20, mode="memory")
    limit = 200 * 2**20
    w.observe({"tcp://a": {"name": 0, "memory_limit": limit, "metrics": {"memory": 90 * 2**20}},
               "tcp://b": {"name": 1, "memory_limit": limit, "metrics": {"memory": 90 * 2**20}}})
    w.observe({"tcp://b": {"name": 1, "memory_limit": limit, "metrics": {"memory": 95 * 2**20}}})
    assert not w.lost and w.vanished == {"tcp://a"} and w.error() is None      # gone, no evidence yet
    w.restarted([(w.since - 60, {"worker": "tcp://b", "rss": 199 * 2**20})])    # before the run: not this run's
    assert not w.lost
    w.restarted([(w.since + 1, {"worker": "tcp://a", "pid": 1, "rss": 196 * 2**20})])
    assert not w.vanished and len(w.lost) == 1
    msg = str(w.error())
    assert "worker 0 (memory limit 200 MiB; last seen using 196 MiB) was restarted by its nanny" in msg
    assert "about 150 MiB of tiles per worker" in msg
