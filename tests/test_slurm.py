"""Against a real Slurm: the single-node cluster of cluster/local-slurm.sh (started by .ci/run, or by hand:
``cluster/local-slurm.sh start`` and ``export SLURM_CONF=...`` as it prints). Skipped when no Slurm answers.

Every job runs this test's Python (dask-jobqueue's default), on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import dlogdet
from dlogdet.runtime.deploy import connect, load_profile
from dlogdet.core.errors import ClusterError

pytest.importorskip("dask_jobqueue")
ROOT = Path(__file__).resolve().parent.parent


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and any(s.strip() in ("idle", "mixed", "allocated") for s in out.stdout.split())


pytestmark = [pytest.mark.slurm,
              # one Slurm cluster serves the suite: its tests count jobs, so they run one at a time on one xdist worker
              pytest.mark.xdist_group("slurm"),
              pytest.mark.skipif(not _slurm_up(), reason="no Slurm cluster answers (cluster/local-slurm.sh start)")]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)            # job logs (dlogdet-slurm-logs/) and scheduler files land here
    # the jobs of an earlier test end asynchronously after its cluster closed: start from an empty queue, so that
    # counting this test's jobs counts only them (bounded wait)
    deadline = time.monotonic() + 60
    while _queued() and time.monotonic() < deadline:
        time.sleep(0.5)
    return tmp_path


def _queued() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=10)
    return out.stdout.split()


def _jobs(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True, timeout=10)
    return [line.split()[0] for line in out.stdout.splitlines() if "RUNNING" in line]


@pytest.mark.timeout(240)
def test_logdet_through_two_slurm_jobs_equals_local(in_tmp):
    x = np.random.default_rng(2).uniform(size=(1500, 3))
    src = dlogdet.KernelSource(x, "matern32", jitter=1e-6)
    local = dlogdet.logdet(src, block_size=250)
    with connect("slurm") as client:
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2 and all(a.startswith("tcp://127.0.0.1:") for a in workers)
        assert len(_jobs("dlogdet-worker")) == 2                       # two real Slurm jobs
        r = dlogdet.logdet(src, client=client, block_size=250)
    assert r.logdet == pytest.approx(local.logdet, rel=1e-12, abs=0)
    assert r.diagnostics["workers"] == 2


@pytest.mark.timeout(120)
def test_gpu_profile_refused_by_a_slurm_without_gpus(in_tmp):
    prof = load_profile("gpu-slurm")
    prof["cluster"] = dict(prof["cluster"], interface="lo")
    with pytest.raises(ClusterError, match="Slurm refuses the job of cluster profile 'gpu-slurm'.*gres.*GPU profile"):
        with connect(prof):
            pass


@pytest.mark.slow   # ~23 s: a job cancelled and replaced by Slurm
@pytest.mark.timeout(300)
def test_preempted_job_is_replaced_and_the_run_completes(in_tmp):
    """scancel one of two worker jobs mid-run: adaptive scaling submits a replacement and the result is exact."""
    x = np.random.default_rng(4).uniform(size=(3000, 3))
    src = dlogdet.KernelSource(x, "matern32", jitter=1e-6)
    ref = dlogdet.logdet(src, block_size=250)
    prof = load_profile("slurm")
    prof.pop("scale")
    prof["adapt"] = {"minimum_jobs": 2, "maximum_jobs": 2}
    prof["wait"] = 2
    cancelled = {}
    with connect(prof) as client:
        t0 = time.perf_counter()
        undisturbed = dlogdet.logdet(src, client=client, block_size=250)
        t_clean = time.perf_counter() - t0
        before = set(_jobs("dlogdet-worker"))
        assert len(before) == 2

        def on_progress(p):
            if not cancelled and p.panels_done >= 3:
                job = sorted(before)[0]
                subprocess.run(["scancel", job], check=True, timeout=10)
                cancelled["job"], cancelled["panel"] = job, p.panels_done

        t0 = time.perf_counter()
        r = dlogdet.logdet(src, client=client, block_size=250, progress=on_progress)
        t_preempted = time.perf_counter() - t0
        assert cancelled, "the run finished before the job was cancelled"
        deadline = time.time() + 120                                  # adaptive scaling replaces the job
        while time.time() < deadline and not (set(_jobs("dlogdet-worker")) - before):
            time.sleep(1)
        after = set(_jobs("dlogdet-worker"))
    assert cancelled["job"] not in after and after - before, f"no replacement job: before {before}, after {after}"
    assert r.logdet == pytest.approx(ref.logdet, rel=1e-10, abs=0)
    assert undisturbed.logdet == pytest.approx(ref.logdet, rel=1e-10, abs=0)
    print(f"\nscancel {cancelled['job']} after panel {cancelled['panel']}/{r.diagnostics['n_panels']}: "
          f"{t_preempted:.1f} s vs {t_clean:.1f} s undisturbed ({t_preempted - t_clean:+.1f} s lost), "
          f"{r.diagnostics.get('restarts', 0)} restart(s) after {r.diagnostics.get('time_lost', 0):.1f} s; "
          f"replacement job(s) {sorted(after - before)}")


@pytest.mark.slow   # ~10 s: a whole batch allocation
@pytest.mark.timeout(300)
def test_batch_run_inside_one_allocation(in_tmp):
    """cluster/run.sbatch: scheduler, client and 2 workers as the 4 tasks of one job (SLURMRunner)."""
    a = np.random.default_rng(0).standard_normal((600, 600))
    A = a @ a.T / 600 + np.eye(600)
    np.save(in_tmp / "A.npy", A)
    dlogdet_bin = str(Path(sys.executable).with_name("dlogdet"))
    env = dict(os.environ, DLOGDET=dlogdet_bin)
    out = subprocess.run(["sbatch", "--wait", "--parsable", "-o", "run-%j.out", str(ROOT / "cluster" / "run.sbatch"),
                          "logdet", "A.npy", "--json", "--no-progress"], env=env, capture_output=True, text=True,
                         timeout=280)
    job = out.stdout.strip()
    log = (in_tmp / f"run-{job}.out").read_text() if (in_tmp / f"run-{job}.out").exists() else out.stderr
    assert out.returncode == 0, log[-3000:]
    lines = [line for line in log.splitlines() if line.startswith('{"logdet"')]
    assert len(lines) == 1, log[-3000:]                               # printed once, by the client task
    res = json.loads(lines[0])
    assert res["diagnostics"]["workers"] == 2
    assert res["logdet"] == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-12, abs=0)
