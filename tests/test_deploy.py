"""Deployment: cluster profiles, job scripts, GPU refusal, TLS, and a worker killed by SIGKILL mid-run.

The Slurm tests proper (jobs submitted to a real slurmctld) are in tests/test_slurm.py.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import time

import numpy as np
import pytest

import dlogdet
from dlogdet.runtime.deploy import connect, gpu_count, job_script, load_profile
from dlogdet.core.errors import ClusterError

pytest.importorskip("dask_jobqueue")


def test_profiles_load_and_bad_profiles_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)            # the project's own profiles, found from anywhere (not only the checkout)
    for name, kind in (("slurm", "slurm"), ("pbs", "pbs"), ("gpu-slurm", "slurm"), ("local-cuda", "local-cuda")):
        prof = load_profile(name)
        assert prof["kind"] == kind and prof["name"] == name and prof["description"]
    assert load_profile("gpu-slurm")["gpu"] is True
    with pytest.raises(ClusterError, match="no cluster profile named 'nosuch'.*available: .*gpu-slurm"):
        load_profile("nosuch")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: slurm\nclustre: {cores: 1}\n")
    with pytest.raises(ClusterError, match=r"unknown keys \['clustre'\]"):
        load_profile(str(bad))
    bad.write_text("kind: sge\n")
    with pytest.raises(ClusterError, match="'kind' must be one of"):
        load_profile(str(bad))
    bad.write_text("kind: slurm\nscale: {jobs: 1}\nadapt: {maximum_jobs: 2}\n")
    with pytest.raises(ClusterError, match="'scale' or 'adapt', not both"):
        load_profile(str(bad))
    with pytest.raises(ClusterError, match="submits no job"):
        job_script("local-cuda")


def _lines(script: str) -> list[str]:
    return [line.replace(sys.executable, "PYTHON") for line in script.strip().splitlines()]


def test_gpu_slurm_job_script_line_by_line():
    assert _lines(job_script("gpu-slurm", scheduler="tcp://10.0.0.1:8786")) == [
        "#!/usr/bin/env bash",
        "",
        "#SBATCH -J dlogdet-gpu-worker",
        "#SBATCH -e dlogdet-slurm-logs/dlogdet-gpu-worker-%J.err",
        "#SBATCH -o dlogdet-slurm-logs/dlogdet-gpu-worker-%J.out",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=64G",
        "#SBATCH -t 04:00:00",
        "#SBATCH --gres=gpu:1",
        "export DASK_DLOGDET__BACKEND=cupy",
        "PYTHON -m distributed.cli.dask_worker tcp://10.0.0.1:8786 --name dlogdet-worker --nthreads 1 "
        "--memory-limit 64.00GiB --nanny --death-timeout 60 --resources GPU=1 --interface ib0",
    ]


def test_pbs_job_script_line_by_line():
    assert _lines(job_script("pbs", scheduler="tcp://10.0.0.1:8786")) == [
        "#!/usr/bin/env bash",
        "",
        "#PBS -N dlogdet-worker",
        "#PBS -q workq",
        "#PBS -l select=1:ncpus=8:mem=32GB",
        "#PBS -l walltime=04:00:00",
        "#PBS -e dlogdet-pbs-logs/",
        "#PBS -o dlogdet-pbs-logs/",
        "export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1",
        "PYTHON -m distributed.cli.dask_worker tcp://10.0.0.1:8786 --name dlogdet-worker --nthreads 1 "
        "--memory-limit 4.00GiB --nworkers 8 --nanny --death-timeout 60 --interface ib0",
    ]


@pytest.mark.skipif(gpu_count() > 0, reason="this machine has a GPU")
def test_gpu_profile_refuses_to_start_without_a_gpu():
    with pytest.raises(ClusterError, match="no GPU is visible here.*use a CPU profile"):
        with connect("local-cuda"):
            pass


def test_unreachable_scheduler_and_missing_scheduler_file(tmp_path):
    with pytest.raises(ClusterError, match="could not reach the Dask scheduler at tcp://127.0.0.1:9"):
        with connect("tcp://127.0.0.1:9", timeout=2):
            pass
    with pytest.raises(ClusterError, match="scheduler file .* does not exist"):
        with connect(str(tmp_path / "scheduler.json")):
            pass


# ---- TLS ------------------------------------------------------------------------------------------------------------

def _certificates(folder):
    """A CA and one certificate for 127.0.0.1/localhost signed by it (cryptography), as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("dlogdet test CA")).issuer_name(name("dlogdet test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {}
    for label, data in (("ca", ca.public_bytes(serialization.Encoding.PEM)),
                        ("cert", cert.public_bytes(serialization.Encoding.PEM)),
                        ("key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))):
        path = folder / f"{label}.pem"
        path.write_bytes(data)
        files[label] = str(path)
    return files


@pytest.mark.cluster
def test_tls_cluster_computes_and_refuses_plain_clients(tmp_path):
    pytest.importorskip("cryptography")
    import asyncio
    import socket
    import ssl

    from distributed.comm import connect as comm_connect

    tls = _certificates(tmp_path)
    a = np.random.default_rng(3).standard_normal((300, 300))
    A = a @ a.T / 300 + np.eye(300)
    with connect("local", workers=2, security=tls) as client:
        addr = client.scheduler.address
        assert addr.startswith("tls://127.0.0.1:")                      # encrypted, and on loopback
        assert all(w.startswith("tls://127.0.0.1:") for w in client.scheduler_info()["workers"])
        r = dlogdet.logdet(A, client=client, block_size=100)
        assert abs(r.logdet - np.linalg.slogdet(A)[1]) < 1e-9 * abs(r.logdet)
        # a client that trusts the CA but has no certificate of its own is refused by the scheduler (mutual TLS)
        ctx = ssl.create_default_context(cafile=tls["ca"])
        ctx.check_hostname = False

        async def handshake(**kw):
            comm = await comm_connect(addr, timeout=5, **kw)
            try:                                       # TLS 1.3 reports a refused client certificate on first use
                await comm.write({"op": "identity"})
                return await comm.read()
            finally:
                comm.abort()

        with pytest.raises((OSError, ssl.SSLError)):  # CommClosedError is an OSError
            asyncio.run(handshake(ssl_context=ctx))
        ok = ssl.create_default_context(cafile=tls["ca"])   # the control: the same call with the certificate works
        ok.check_hostname = False
        ok.load_cert_chain(tls["cert"], tls["key"])
        assert asyncio.run(handshake(ssl_context=ok))["type"] == "Scheduler"
        # plain TCP bytes to the TLS port: the server answers with nothing (or a TLS alert) and closes
        host, port = addr.removeprefix("tls://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"\x00" * 64)
            try:
                data = sock.recv(1024)
            except (ConnectionResetError, socket.timeout):
                data = b""
        assert data == b"" or data[:1] == b"\x15"


# ---- a worker killed by SIGKILL in the middle of a factorization --------------------------------------------------

@pytest.mark.cluster
@pytest.mark.slow   # 16 s; tests/test_resilience.py kills workers mid-run in the default run
@pytest.mark.timeout(240)
def test_worker_killed_mid_factorization_result_still_exact():
    x = np.random.default_rng(5).uniform(size=(2400, 3))
    src = dlogdet.KernelSource(x, "matern32", jitter=1e-6)
    ref = dlogdet.logdet(src, block_size=200)                           # threaded, in this process
    killed = {}
    with connect("local", workers=3) as client:
        pids = client.run(os.getpid)
        victim_addr, victim = sorted(pids.items())[1]

        def on_progress(p):
            if not killed and p.panels_done >= 3:                       # mid-run: 3 of 12 panels done
                os.kill(victim, signal.SIGKILL)
                killed["at"] = (p.panels_done, p.panels_total, time.perf_counter())

        t0 = time.perf_counter()
        r = dlogdet.logdet(src, client=client, block_size=200, progress=on_progress)
        wall = time.perf_counter() - t0
        assert killed, "the run finished before the kill"
        assert victim not in client.run(os.getpid).values()            # that process is gone (the nanny restarts)
    # lost results were recomputed (or the run started over): the same tiles, the same value to rounding
    assert abs(r.logdet - ref.logdet) <= 1e-10 * abs(ref.logdet)
    lost = r.diagnostics.get("time_lost", 0.0)
    print(f"killed worker {victim_addr} (pid {victim}) after panel {killed['at'][0]}/{killed['at'][1]}; run "
          f"completed in {wall:.1f} s, {r.diagnostics.get('restarts', 0)} restart(s), {lost:.1f} s lost")


@pytest.mark.cluster
def test_cli_cluster_option(tmp_path, capsys):
    """--cluster PATH-TO-PROFILE on the CLI, with a local profile written for the test."""
    import json

    from dlogdet.cli import main

    prof = tmp_path / "two.yaml"
    prof.write_text("kind: local\ndescription: two local workers\ncluster: {n_workers: 2}\n")
    a = np.random.default_rng(1).standard_normal((200, 200))
    path = tmp_path / "A.npy"
    np.save(path, a @ a.T / 200 + np.eye(200))
    assert main(["logdet", str(path), "--cluster", str(prof), "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["diagnostics"]["workers"] == 2
    assert abs(out["logdet"] - np.linalg.slogdet(np.load(path))[1]) < 1e-9 * abs(out["logdet"])
    assert main(["logdet", str(path), "--cluster", "nosuch"]) == 2
    assert "no cluster profile named 'nosuch'" in capsys.readouterr().err
