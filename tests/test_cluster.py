"""The exact engine on a real distributed cluster: two worker processes on loopback.

Each result is compared with the same computation on the in-process threaded scheduler (same tiles, same
kernels, same update order, single-threaded BLAS in both: they agree to 1e-10 relative, in practice to the bit)
and with the exact log-determinant of a prescribed spectrum (tolerance from conftest.logdet_tol).
"""

from __future__ import annotations

import math

import dask

import numpy as np
import pytest

import dlogdet
from dlogdet.core.errors import NonFiniteError, NotPSDError, NotSymmetricError

from .conftest import ArrayBlockSource, general_matrix, log_uniform_spectrum, logdet_tol, spectrum_matrix

pytestmark = pytest.mark.cluster

distributed = pytest.importorskip("distributed")

N = 400
BS = 128  # 4 panels, ragged last tile of 16 rows
KAPPA = math.exp(2.0)  # |λ| log-uniform on [e^-1, e^1]


@pytest.fixture(scope="module")
def cluster():
    c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                 dashboard_address="127.0.0.1:0")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def client(cluster):
    # not the default client: calls with client=None in this module still get the threaded scheduler unless a
    # test makes a client active on purpose (as_current / with Client(...))
    c = distributed.Client(cluster, set_as_default=False)
    try:
        c.wait_for_workers(2, timeout=60)
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def spd():
    return spectrum_matrix(N, log_uniform_spectrum(N, -1.0, 1.0, seed=31), seed=32)


@pytest.fixture(scope="module")
def sym():
    a, ld, sign, inertia = spectrum_matrix(N, log_uniform_spectrum(N, -1.0, 1.0, seed=33, negative_every=3),
                                           seed=34)
    return a, ld, sign, inertia


def same(r, ref):
    """Distributed result r equals the threaded-scheduler result ref to 1e-10 relative."""
    assert r.logdet == pytest.approx(ref.logdet, rel=1e-10, abs=1e-10)
    assert r.sign == ref.sign
    np.testing.assert_allclose(r.log_pivots, ref.log_pivots, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(r.pivot_signs, ref.pivot_signs)
    assert r.inertia == ref.inertia


def on_cluster(r):
    dg = r.diagnostics
    assert dg["scheduler"].startswith("distributed"), dg["scheduler"]
    assert dg["workers"] == 2
    return dg


UserSource = ArrayBlockSource


# --------------------------------------------------------------------------------------------------------------
# which client runs the graph
# --------------------------------------------------------------------------------------------------------------

def test_explicit_client_numpy_input(client, spd):
    a, ld, *_ = spd
    ref = dlogdet.logdet(a, block_size=BS)
    assert ref.diagnostics["scheduler"].startswith("threads")  # no client is active by default here
    r = dlogdet.logdet(a, block_size=BS, client=client)
    dg = on_cluster(r)
    same(r, ref)
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA)
    assert len(dg["peak_rss_bytes_per_worker"]) == 2
    assert all(v > 0 for v in dg["peak_rss_bytes_per_worker"].values())
    assert dg["scheduler"].endswith(f"({client.scheduler.address})")


def test_scattered_tiles_start_on_their_owners(client, spd):
    """An in-memory matrix's tiles go each to the worker that owns it (block-cyclic, as the graph's tasks are
    placed), the lower triangle only; a failing check (run meanwhile) raises and releases what was sent."""
    import time

    from dlogdet.engine.placement import BlockCyclic
    from dlogdet.engine.schedule import Tiling
    from dlogdet.engine.tiles import scatter_tiles

    a, *_ = spd
    tiling = Tiling(N, BS)
    tiles = scatter_tiles(client, a, tiling, "spd")
    grid = BlockCyclic(sorted(client.scheduler_info()["workers"]))
    assert sorted(tiles) == [(i, j) for i in range(4) for j in range(i + 1)]
    who = client.who_has(list(tiles.values()))
    assert all(who[f.key] == (grid.owner(i, j),) for (i, j), f in tiles.items())
    np.testing.assert_array_equal(tiles[3, 1].result(), a[384:400, 128:256])
    del tiles, who        # released: the workers drop them

    def bad():
        raise NotSymmetricError("planted")

    with pytest.raises(NotSymmetricError, match="planted"):
        scatter_tiles(client, a, tiling, "spd", check=bad)
    deadline = time.monotonic() + 10          # releases reach the workers asynchronously
    while any(client.has_what().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(client.has_what().values())


def test_active_client_as_current(client, spd):
    a, *_ = spd
    ref = dlogdet.logdet(a, block_size=BS)
    with client.as_current():
        r = dlogdet.logdet(a, block_size=BS)  # client=None: the active client
    on_cluster(r)
    same(r, ref)


def test_active_client_context_manager(cluster, spd):
    a, *_ = spd
    ref = dlogdet.logdet(a, block_size=BS)
    with distributed.Client(cluster) as c2:  # the default client while the block runs
        r = dlogdet.logdet(a, block_size=BS)
        assert r.diagnostics["scheduler"] == f"distributed ({c2.scheduler.address})"
    same(r, ref)
    after = dlogdet.logdet(a, block_size=BS)  # closed: back to the threaded scheduler
    assert after.diagnostics["scheduler"].startswith("threads")


# --------------------------------------------------------------------------------------------------------------
# inputs and structures
# --------------------------------------------------------------------------------------------------------------

def test_npy_input(client, spd, tmp_path):
    a, ld, *_ = spd
    p = tmp_path / "a.npy"
    np.save(p, a)
    ref = dlogdet.logdet(str(p), block_size=BS)
    r = dlogdet.logdet(str(p), block_size=BS, client=client)
    on_cluster(r)
    same(r, ref)
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA)


def test_kernel_source_input(client):
    x = np.random.default_rng(35).standard_normal((N, 2))
    src = dlogdet.KernelSource(x, kernel="matern32", lengthscale=0.7, jitter=1e-2)
    s, ld = np.linalg.slogdet(src.dense())
    ref = dlogdet.logdet(src, block_size=BS)
    r = dlogdet.logdet(src, block_size=BS, client=client)
    on_cluster(r)
    same(r, ref)
    w = np.linalg.eigvalsh(src.dense())
    assert s == 1.0 and abs(r.logdet - ld) <= logdet_tol(N, w.max() / w.min())


def test_zarr_dask_and_user_sources(client, spd, tmp_path):
    import dask.array as da
    import zarr

    a, ld, *_ = spd
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=a.shape, chunks=(100, 100), dtype="f8")
    z[:] = a
    ref = dlogdet.logdet(a, assume="sym", block_size=BS)
    for src in (str(tmp_path / "a.zarr"), da.from_array(a, chunks=(90, 70)), UserSource(a)):
        r = dlogdet.logdet(src, assume="sym", block_size=BS, client=client)
        on_cluster(r)
        same(r, ref)


def test_sym_indefinite(client, sym):
    a, ld, sign, inertia = sym
    ref = dlogdet.logdet(a, assume="sym", block_size=BS)
    r = dlogdet.logdet(a, assume="sym", block_size=BS, client=client)
    on_cluster(r)
    same(r, ref)
    assert abs(r.logdet - ld) <= logdet_tol(N, KAPPA)
    assert r.sign == sign and tuple(r.inertia) == inertia


def test_gen(client):
    s = log_uniform_spectrum(N, -1.0, 1.0, seed=36, negative_every=7)  # 58 negative: det > 0
    s[0] = -s[0]                                                          # 57: det < 0
    a, ld, sign, kappa = general_matrix(N, s, seed=37)
    ref = dlogdet.logdet(a, assume="gen", block_size=BS)
    r = dlogdet.logdet(a, assume="gen", block_size=BS, client=client)
    on_cluster(r)
    same(r, ref)
    assert abs(r.logdet - ld) <= logdet_tol(N, kappa) and r.sign == sign == -1.0


def test_jitter_and_progress(client, sym):
    a, *_ = sym
    d = np.linspace(0.1, 1.0, N)
    ref = dlogdet.logdet(a, assume="gen", t=-2.0, d=d, block_size=BS)
    seen = []
    r = dlogdet.logdet(a, assume="gen", t=-2.0, d=d, block_size=BS, client=client, progress=seen.append)
    same(r, ref)
    s, ld = np.linalg.slogdet(-2.0 * a + np.diag(d))
    assert r.sign == s and abs(r.logdet - ld) <= 1e-8
    done = [p.panels_done for p in seen]
    assert done == sorted(done) and done[-1] == seen[-1].panels_total == 4


# --------------------------------------------------------------------------------------------------------------
# errors raised on the workers
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("row", [5, 200, 390])
def test_not_psd_on_worker_keeps_row(client, row):
    a = np.eye(N)
    a[row, row] = -1.0
    with pytest.raises(NotPSDError, match=f"global row {row}") as ei:
        dlogdet.logdet(a, block_size=BS, client=client)
    assert type(ei.value) is NotPSDError and ei.value.row == row


def test_not_psd_from_file_on_worker(client, tmp_path):
    a = np.eye(N)
    a[260, 260] = -3.0
    np.save(tmp_path / "bad.npy", a)
    with pytest.raises(NotPSDError) as ei:
        dlogdet.logdet(str(tmp_path / "bad.npy"), block_size=BS, client=client)
    assert ei.value.row == 260
    # the cluster is still usable after a failed graph
    assert dlogdet.logdet(np.eye(N), block_size=BS, client=client).logdet == 0.0


def test_input_errors_on_cluster(client, spd):
    a, *_ = spd
    b = a.copy()
    b[300, 20] += 1.0
    with pytest.raises(NotSymmetricError, match=r"tile \(2, 0\)"):
        dlogdet.logdet(b, block_size=BS, client=client)
    c = a.copy()
    c[300, 20] = np.nan
    with pytest.raises(NonFiniteError, match="row 300, column 20"):
        dlogdet.logdet(c, assume="gen", block_size=BS, client=client)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_upper_triangle_on_cluster(client, spd, bad):
    a, *_ = spd
    c = a.copy()
    c[10, 200] = bad
    with pytest.raises(NonFiniteError):  # what the threaded scheduler does (see test_errors)
        dlogdet.logdet(c, block_size=BS)
    with pytest.raises(NonFiniteError):
        dlogdet.logdet(c, block_size=BS, client=client)


@pytest.mark.slow
@pytest.mark.parametrize("assume", ["spd", "sym", "gen"])
def test_many_tiles(client, assume):
    # 16 panels (≈ 700 to 1400 tasks): priorities and placement on the cluster at a realistic graph size
    n, bs = 2500, 160
    neg = None if assume == "spd" else 3
    a, ld, sign, inertia = spectrum_matrix(n, log_uniform_spectrum(n, -1.0, 1.0, seed=38, negative_every=neg),
                                           seed=39)
    ref = dlogdet.logdet(a, assume=assume, block_size=bs)
    r = dlogdet.logdet(a, assume=assume, block_size=bs, client=client)
    on_cluster(r)
    same(r, ref)
    assert abs(r.logdet - ld) <= logdet_tol(n, KAPPA) and r.sign == sign
    assert r.diagnostics["n_panels"] == 16


def test_driver_waits_instead_of_polling(client, spd, tmp_path):
    """The driver blocks on the result between progress updates; it must not spin on the scheduler.

    Regression: ``distributed.wait`` looks for a *default* client; with an explicit, non-default client it failed
    at once, and the loop asked the scheduler for its state thousands of times a second, slowing the run ~30%.
    """
    a, *_ = spd
    np.save(tmp_path / "a.npy", a)
    calls = []
    original = client.scheduler_info

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    client.scheduler_info = counting
    try:
        interval = 0.25
        with dask.config.set({"dlogdet.progress-interval": interval}):
            r = dlogdet.logdet(str(tmp_path / "a.npy"), block_size=64, client=client)
    finally:
        del client.scheduler_info
    # one sample per interval, plus the calls made while setting up (worker count, placement)
    assert len(calls) <= r.diagnostics["wall_time"] / interval + 6, len(calls)
