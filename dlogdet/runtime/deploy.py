"""Where a run's workers come from: a local cluster, a scheduler address, or a named cluster profile.

``connect(spec)`` is a context manager that yields a ``distributed.Client`` and closes whatever it started::

    with dlogdet.runtime.connect("slurm") as client:      # cluster/slurm.yaml: SLURMCluster, 2 jobs
        r = dlogdet.logdet("K.npy", client=client)

``spec`` is one of

- ``None`` or ``"local"``: a ``LocalCluster`` of worker processes on loopback, one thread each (the tasks are
  BLAS calls pinned to one thread), ``workers=`` of them (default: ``dlogdet.local.workers`` or the cores);
- an address, ``"tcp://host:port"``, ``"tls://host:port"`` or ``"host:port"``: an existing scheduler;
- a profile: a name such as ``"slurm"`` (looked up as ``NAME.yaml`` in ``$DLOGDET_CLUSTER_PATH``, in
  ``./cluster`` and in the project's ``cluster/`` folder) or a path to a YAML file.

A profile is a small YAML document::

    kind: slurm                 # slurm | pbs | local-cuda | local
    cluster:                    # keyword arguments of SLURMCluster / PBSCluster / LocalCUDACluster / LocalCluster
      cores: 2
      memory: 4GiB
      processes: 1
    scale: {jobs: 2}            # or {workers: K}; or instead:
    adapt: {minimum_jobs: 1, maximum_jobs: 4}
    wait: 2                     # workers to wait for before the run starts (default: what scale/adapt asks)
    timeout: 300                # seconds to wait for them
    gpu: true                   # the workers need GPUs: local-cuda refuses to start without one
    security: {ca: ca.pem, cert: cert.pem, key: key.pem}   # TLS between client, scheduler and workers

Everything listens on loopback unless the profile says otherwise (``interface``, ``scheduler_options``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

from ..core import config
from ..core.errors import ClusterError

log = logging.getLogger(__name__)

KINDS = ("local", "slurm", "pbs", "local-cuda")
PROFILE_KEYS = {"kind", "cluster", "scale", "adapt", "wait", "timeout", "gpu", "security", "description", "name",
                "path"}
DEFAULT_TIMEOUT = 300.0


# ---- profiles --------------------------------------------------------------------------------------------------

def profile_dirs() -> list[Path]:
    """Folders searched for ``NAME.yaml``, in order."""
    dirs = [Path(p) for p in os.environ.get("DLOGDET_CLUSTER_PATH", "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "cluster")
    dirs.append(Path(__file__).resolve().parents[2] / "cluster")     # the project's own, in a source checkout
    out = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def find_profile(name: str) -> Path:
    """The YAML file of profile ``name`` (a name or a path); ClusterError listing what exists otherwise."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or os.sep in name:
        if not p.is_file():
            raise ClusterError(f"cluster profile file {name!r} does not exist")
        return p
    for d in profile_dirs():
        for ext in (".yaml", ".yml"):
            if (d / f"{name}{ext}").is_file():
                return d / f"{name}{ext}"
    found = sorted({q.stem for d in profile_dirs() if d.is_dir() for q in d.glob("*.y*ml")})
    raise ClusterError(f"no cluster profile named {name!r}; searched {', '.join(map(str, profile_dirs()))}; "
                       f"available: {', '.join(found) or 'none'}. Give a path to a YAML file, a scheduler address "
                       f"(tcp://host:port), or 'local'")


def load_profile(name) -> dict:
    """Read and check a profile (a name, a path, or an already loaded mapping; see the module doc);
    ClusterError naming the bad key otherwise."""
    import yaml

    if isinstance(name, dict):
        prof, path = dict(name), Path(name.get("path", name.get("name", "<mapping>")))
    else:
        path = find_profile(name)
        try:
            prof = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ClusterError(f"cluster profile {path} is not valid YAML: {e}") from None
    if not isinstance(prof, dict):
        raise ClusterError(f"cluster profile {path} must be a mapping with at least 'kind'")
    unknown = set(prof) - PROFILE_KEYS
    if unknown:
        raise ClusterError(f"cluster profile {path}: unknown keys {sorted(unknown)}; allowed: {sorted(PROFILE_KEYS)}")
    if prof.get("kind") not in KINDS:
        raise ClusterError(f"cluster profile {path}: 'kind' must be one of {KINDS}, got {prof.get('kind')!r}")
    for key in ("cluster", "scale", "adapt", "security"):
        if key in prof and not isinstance(prof[key], dict):
            raise ClusterError(f"cluster profile {path}: {key!r} must be a mapping, got {prof[key]!r}")
    if "scale" in prof and "adapt" in prof:
        raise ClusterError(f"cluster profile {path}: give 'scale' or 'adapt', not both")
    prof = dict(prof)
    prof.setdefault("path", str(path))
    prof.setdefault("name", path.stem)
    return prof


# ---- GPUs and security ------------------------------------------------------------------------------------------

def gpu_count() -> int:
    """NVIDIA GPUs visible here (``nvidia-smi -L``; 0 without the tool or a driver)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def security_from(spec) -> Any:
    """A ``distributed.Security`` from None, a Security, or a mapping with ``ca``, ``cert``, ``key`` files
    (one certificate for client, scheduler and workers; ``require_encryption``)."""
    if spec is None:
        return None
    from distributed.security import Security

    if isinstance(spec, Security):
        return spec
    missing = [k for k in ("ca", "cert", "key") if not spec.get(k)]
    if missing:
        raise ClusterError(f"TLS security needs the files 'ca', 'cert' and 'key'; missing: {missing}")
    for k in ("ca", "cert", "key"):
        if not Path(spec[k]).expanduser().is_file():
            raise ClusterError(f"TLS {k} file {spec[k]!r} does not exist")
    ca, cert, key = (str(Path(spec[k]).expanduser()) for k in ("ca", "cert", "key"))
    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, tls_scheduler_cert=cert,
                    tls_scheduler_key=key, tls_worker_cert=cert, tls_worker_key=key, require_encryption=True)


# ---- building clusters ------------------------------------------------------------------------------------------

def _local_kwargs(workers: int | None, security) -> dict:
    n = workers or config.get("local.workers") or os.cpu_count() or 1
    kw = dict(n_workers=int(n), threads_per_worker=1, processes=True, host="127.0.0.1",
              dashboard_address="127.0.0.1:0")
    if security is not None:
        kw.update(security=security, protocol="tls://")
    return kw


def build_cluster(prof: dict, *, workers: int | None = None, security=None):
    """The (unstarted-jobs) cluster object of a profile; GPU profiles refuse to start without GPUs."""
    kind, kw = prof["kind"], dict(prof.get("cluster") or {})
    if security is not None and kind in ("slurm", "pbs"):
        kw.setdefault("security", security)
        kw.setdefault("protocol", "tls://")
    if kind == "local":
        base = _local_kwargs(workers, security)
        base.update(kw)
        from distributed import LocalCluster

        return LocalCluster(**base)
    if kind == "local-cuda":
        n = gpu_count()
        if n == 0:
            raise ClusterError(f"cluster profile {prof['name']!r} runs one worker per NVIDIA GPU, but no GPU is "
                               f"visible here (nvidia-smi lists none); run it on a GPU node, or use a CPU profile "
                               f"('local', --workers K)")
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise ClusterError("cluster profile kind 'local-cuda' needs dask-cuda: pip install 'dlogdet[cluster]'") \
                from None
        kw.setdefault("ip", "127.0.0.1")
        kw.setdefault("dashboard_address", "127.0.0.1:0")
        kw.setdefault("threads_per_worker", 1)
        kw.setdefault("resources", {"GPU": 1})
        try:
            import rmm  # noqa: F401

            kw.setdefault("rmm_pool_size", "80%")
        except ImportError:
            pass
        if security is not None:
            kw.update(security=security, protocol="tls://")
        return LocalCUDACluster(**kw)
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterError(f"cluster profile kind {kind!r} needs dask-jobqueue: pip install 'dlogdet[cluster]'") \
            from None
    cls = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
    try:
        return cls(**kw)
    except (TypeError, ValueError, RuntimeError) as e:  # unknown option; no such interface; scheduler failed
        raise ClusterError(f"cluster profile {prof['name']!r}: {cls.__name__} could not start with its 'cluster' "
                           f"options: {e}") from None


def job_script(spec, scheduler: str = "tcp://SCHEDULER:8786") -> str:
    """The batch script one job of a Slurm or PBS profile would run, without starting a scheduler (for review
    before submitting, and for tests)."""
    prof = load_profile(spec)
    if prof["kind"] not in ("slurm", "pbs"):
        raise ClusterError(f"cluster profile {prof['name']!r} is of kind {prof['kind']!r}, which submits no job")
    from dask_jobqueue.pbs import PBSJob
    from dask_jobqueue.slurm import SLURMJob

    kw = {k: v for k, v in (prof.get("cluster") or {}).items() if k not in ("scheduler_options", "n_workers")}
    job = (SLURMJob if prof["kind"] == "slurm" else PBSJob)(scheduler=scheduler, name="dlogdet-worker", **kw)
    return job.job_script()


def _expected_workers(prof: dict, cluster) -> int:
    if "wait" in prof:
        return int(prof["wait"])
    per_job = int(getattr(cluster, "_dummy_job", None) and cluster._dummy_job.worker_processes or 1)
    if "scale" in prof:
        s = prof["scale"]
        return int(s.get("workers", s.get("jobs", 1) * per_job))
    if "adapt" in prof:
        a = prof["adapt"]
        return int(a.get("minimum", a.get("minimum_jobs", 1) * per_job)) or 1
    return 1


def preflight(prof: dict, cluster) -> None:
    """Ask the batch system whether it would run the profile's job script (``sbatch --test-only``; PBS has no
    such dry run), so that a refused job (no GPUs, bad partition) is a clear error now, not a silent wait."""
    if prof["kind"] != "slurm":
        return
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ClusterError(f"cluster profile {prof['name']!r} submits Slurm jobs, but sbatch is not on PATH: run on "
                           f"a Slurm login node, or start the local test cluster (cluster/local-slurm.sh start)")
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as fh:
        fh.write(cluster.job_script())
    try:
        out = subprocess.run([sbatch, "--test-only", fh.name], capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(fh.name)
    if out.returncode != 0:
        why = " ".join(line.removeprefix("sbatch: error: ").strip() for line in out.stderr.splitlines()).strip()
        hint = ("; this is a GPU profile: run it where Slurm has GPUs (gres/gpu), or use a CPU profile"
                if prof.get("gpu") else "")
        raise ClusterError(f"Slurm refuses the job of cluster profile {prof['name']!r}: {why}{hint}")


def _start_jobs(prof: dict, cluster) -> None:
    if "scale" in prof:
        cluster.scale(**prof["scale"])
    elif "adapt" in prof:
        cluster.adapt(**prof["adapt"])


def is_address(spec: str) -> bool:
    """``tcp://h:p``, ``tls://h:p`` or ``host:port`` (a profile name or a path is not)."""
    if "://" in spec:
        return True
    host, _, port = spec.rpartition(":")
    return bool(host) and port.isdigit() and os.sep not in spec


@contextlib.contextmanager
def connect(spec: str | dict | None = None, *, workers: int | None = None, security=None,
            timeout: float | None = None) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for ``spec`` (see the module doc) and close what was started on exit.

    ``workers`` sets the local cluster's size; ``security`` (a ``distributed.Security`` or a mapping of TLS
    files) encrypts and authenticates every connection; ``timeout`` bounds the wait for a profile's workers
    (default: the profile's ``timeout`` or 300 s), after which ClusterError says what the batch system shows.
    """
    from distributed import Client

    if spec is None or spec == "local":
        from distributed import LocalCluster

        sec = security_from(security)
        with LocalCluster(**_local_kwargs(workers, sec)) as cluster, Client(cluster, security=sec) as client:
            yield client
        return
    if spec == "batch:slurm":
        yield from _slurm_runner(security_from(security), timeout)
        return
    if isinstance(spec, str) and spec.endswith(".json"):
        sec = security_from(security)
        if not Path(spec).is_file():
            raise ClusterError(f"scheduler file {spec!r} does not exist (dask scheduler --scheduler-file writes it)")
        with Client(scheduler_file=spec, security=sec, timeout=timeout or 30) as client:
            yield client
        return
    if isinstance(spec, str) and is_address(spec):
        sec = security_from(security)
        try:
            client = Client(spec, security=sec, timeout=timeout or 30)
        except (OSError, TimeoutError) as e:
            raise ClusterError(f"could not reach the Dask scheduler at {spec}: {e}; is it running, and does its "
                               f"protocol (tcp:// or tls://) and security match?") from None
        with client:
            yield client
        return
    prof = load_profile(spec)
    sec = security_from(security if security is not None else prof.get("security"))
    cluster = build_cluster(prof, workers=workers, security=sec)
    try:
        preflight(prof, cluster)
        _start_jobs(prof, cluster)
        with Client(cluster, security=sec) as client:
            want = _expected_workers(prof, cluster)
            limit = float(timeout or prof.get("timeout") or DEFAULT_TIMEOUT)
            try:
                client.wait_for_workers(want, timeout=limit)
            except TimeoutError:
                raise ClusterError(f"cluster profile {prof['name']!r}: {len(client.scheduler_info()['workers'])} of "
                                   f"{want} workers joined within {limit:g} s; the batch system says: "
                                   f"{_queue_state(prof)}") from None
            log.info("cluster %s: %d workers, dashboard %s", prof["name"], want, client.dashboard_link)
            yield client
    finally:
        cluster.close()


def _slurm_runner(sec, timeout):
    """Inside one Slurm allocation (``srun dlogdet ... --cluster batch:slurm``): task 0 runs the scheduler, task 1
    this client, the others workers (``dask_jobqueue.slurm.SLURMRunner``); the scheduler and worker tasks never
    get past this point and exit when the client closes. ``DLOGDET_INTERFACE`` names the network interface (the
    nodes' network on a real cluster; ``lo`` on one node)."""
    import tempfile

    from distributed import Client

    try:
        from dask_jobqueue.slurm import SLURMRunner
    except ImportError:
        raise ClusterError("--cluster batch:slurm needs dask-jobqueue: pip install 'dlogdet[cluster]'") from None
    if "SLURM_PROCID" not in os.environ or "SLURM_JOB_ID" not in os.environ:
        raise ClusterError("--cluster batch:slurm runs inside a Slurm allocation, one srun task per process (see "
                           "cluster/run.sbatch); SLURM_PROCID is not set here")
    iface = os.environ.get("DLOGDET_INTERFACE")
    folder = os.environ.get("DLOGDET_SCHEDULER_DIR", os.getcwd() if os.access(os.getcwd(), os.W_OK)
                            else tempfile.gettempdir())
    sched = {"dashboard_address": os.environ.get("DLOGDET_DASHBOARD", "127.0.0.1:8787")}
    work = {"nthreads": 1}
    if iface:
        sched["interface"] = work["interface"] = iface
    if sec is not None:
        sched.update(security=sec, protocol="tls://")
        work["security"] = sec
    with SLURMRunner(scheduler_file=os.path.join(folder, "dlogdet-scheduler-{job_id}.json"),
                     scheduler_options=sched, worker_options=work) as runner:
        with Client(runner, security=sec) as client:
            limit = float(timeout or DEFAULT_TIMEOUT)
            try:
                client.wait_for_workers(runner.n_workers, timeout=limit)
            except TimeoutError:
                raise ClusterError(f"{len(client.scheduler_info()['workers'])} of {runner.n_workers} workers of "
                                   f"the allocation joined within {limit:g} s") from None
            yield client


def _queue_state(prof: dict) -> str:
    """One line on the profile's jobs from squeue/qstat, for error messages."""
    cmd = {"slurm": ["squeue", "-h", "-u", os.environ.get("USER", "root"), "-o", "%i %T %r"],
           "pbs": ["qstat"]}.get(prof["kind"])
    if cmd is None or shutil.which(cmd[0]) is None:
        return "(no queue command here)"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return f"({cmd[0]} failed: {e})"
    text = (out.stdout + out.stderr).strip().replace("\n", "; ")
    return text or "no jobs queued"
