"""The matrix-free NTK product K·V = J(JᵀV) on blocks of columns: batched in one pass, sized to a memory bound,
and run on a Dask cluster as pull tasks → a tree sum of cotangents → push tasks.

References: the column-by-column product (one column per call) and the dense NTK (``NTKSource.dense()``, from
structured tiles, an independent algorithm). Both agree with the block product to rounding (1e-12 relative in
float64; measured ~1e-15).
"""

from __future__ import annotations

import numpy as np
import pytest

import dlogdet

pytest.importorskip("jax")

from dlogdet.runtime.operator import SourceOperator  # noqa: E402
from dlogdet.engine.products import build_plan_graph  # noqa: E402
from dlogdet.ntk import NTKSource, mlp  # noqa: E402
from dlogdet.ntk import products as ntk_products  # noqa: E402
from dlogdet.ntk.source import MATVEC_COTANGENTS  # noqa: E402

RTOL = 1e-12


def rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def model():
    f, params = mlp((4, 32, 32, 3), seed=0)
    x = np.random.default_rng(0).standard_normal((80, 4))
    return f, params, x


@pytest.fixture(scope="module", params=["trace", pytest.param("full", marks=pytest.mark.slow)])
def ntk(request, model):
    f, params, x = model
    src = NTKSource(f, params, x, outputs=request.param)
    return src, src.dense()


def test_block_equals_columns_and_dense(ntk):
    src, K = ntk
    V = np.random.default_rng(1).standard_normal((src.n, 7))
    Y = src.matvec(V)
    cols = np.stack([src.matvec(V[:, j]) for j in range(V.shape[1])], axis=1)
    assert Y.shape == V.shape and Y.dtype == np.float64
    assert rel(Y, cols) < RTOL
    assert rel(Y, K @ V) < RTOL
    # several chunks (a ragged last one) and several column batches (a small memory bound)
    plan = src.matvec_plan(V, chunk=30, max_bytes=700_000, columns=8)
    assert len(plan.columns) > 1 and max(b - a for a, b in plan.columns) > 1 and len(plan.pulls[0]) > 1
    assert rel(src.matvec(V, chunk=30, max_bytes=700_000, columns=8), cols) < RTOL
    assert rel(src.matvec(V, columns=1), cols) < RTOL


def test_plan_batches_and_memory(ntk, monkeypatch):
    src, _ = ntk
    V = np.zeros((src.n, 27))
    # this model's calls are tiny (< MATVEC_MIN_FLOPS): the batch takes the whole block, in powers of two (binary
    # digits of 27: few shapes to compile, nothing padded)
    assert [b - a for a, b in src.matvec_plan(V).columns] == [16, 8, 2, 1]
    assert [b - a for a, b in src.matvec_plan(V, columns=8).columns] == [8, 8, 8, 2, 1]
    monkeypatch.setattr(ntk_products, "MATVEC_MIN_FLOPS", 0.0)  # as for bigger models: MATVEC_COTANGENTS cotangents
    q = src.n_outputs if src.outputs == "trace" else 1
    want = max(1, MATVEC_COTANGENTS // q)
    widths = [b - a for a, b in src.matvec_plan(V).columns]
    assert widths == [want] * (27 // want) + [w for w in (8, 4, 2, 1) if w < want and (27 % want) & w]
    for max_bytes in (10**6, 3 * 10**6):
        plan = src.matvec_plan(V, max_bytes=max_bytes, columns=32)
        widths = [b - a for a, b in plan.columns]
        assert sum(widths) == 27 and all(w & (w - 1) == 0 for w in widths)
        assert plan.task_bytes <= max_bytes
        assert plan.columns[0] == (0, widths[0]) and all(a[1] == b[0] for a, b in zip(plan.columns, plan.columns[1:]))
    # a bound below one column at the asked chunk shrinks the chunk
    assert src.matvec_plan(V, chunk=80, max_bytes=200_000).chunk < 80
    # chunks aimed at the workers when none is asked
    assert src.matvec_plan(V, parts=4).chunk == 20
    assert src.matvec_plan(np.zeros((src.n, 0))).columns == []
    assert src.matvec(np.zeros((src.n, 0))).shape == (src.n, 0)


def test_plan_graph_shape(ntk):
    src, K = ntk
    V = np.random.default_rng(2).standard_normal((src.n, 3))
    plan = src.matvec_plan(V, chunk=15)                  # 6 chunks: sums at 3 levels, one odd partial moving up
    g = build_plan_graph(plan, src)
    kinds = [k[0].split("-")[0] for k in g.dsk]
    assert kinds.count("mfpull") == kinds.count("mfpush") == 6 * len(plan.columns)
    assert kinds.count("mfsum") == 5 * len(plan.columns)
    import dask

    Y = dask.get(g.dsk, g.output_key)                    # the graph, on the synchronous scheduler
    assert rel(Y, K @ V) < RTOL


# ---------------------------------------------------------------------------------------------------- cluster

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    # worker processes: the source (a zoo MLP, NumPy parameters) pickles, and JAX runs in each worker. The
    # dashboard on a free loopback port (dashboard_address=None means the default :8787, taken by any other
    # cluster running beside this one)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0")
    try:
        c = distributed.Client(cluster, set_as_default=False)
        try:
            c.wait_for_workers(2, timeout=60)
            yield c
        finally:
            c.close()
    finally:
        cluster.close()


def prefixes(client) -> set:
    return set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes)))


@pytest.mark.cluster
def test_distributed_product(ntk, client):
    src, K = ntk
    V = np.random.default_rng(3).standard_normal((src.n, 5))
    with SourceOperator(src, t=2.0, d=0.5, client=client, product="matvec") as op:
        assert op.remote
        Y = op.matmat(V)
        y = op.matmat(V[:, 0])
        futures = list(op._futures)
        s = op.summary()
    assert rel(Y, 2.0 * K @ V + 0.5 * V) < RTOL
    assert rel(y, Y[:, 0]) < RTOL
    assert len(futures) == 1                             # the source scattered once for both products
    assert s["scheduler"] == f"distributed ({client.scheduler.address})"
    assert s["matvec_tasks"] > 0 and s["matvec_chunk"] == 40 and s["passes"] == 2 and s["matvecs"] == 6
    assert {"mfpull", "mfsum", "mfpush"} <= prefixes(client)


def test_without_client_stays_in_process(ntk):
    src, K = ntk
    V = np.random.default_rng(4).standard_normal((src.n, 4))
    with SourceOperator(src, client=None, product="matvec") as op:
        assert not op.remote
        assert rel(op.matmat(V), K @ V) < RTOL
        assert op.summary()["scheduler"] == "in-process" and "matvec_tasks" not in op.summary()


@pytest.mark.cluster
@pytest.mark.slow        # SLQ over the product on a cluster (23 s); test_distributed_product covers the product there
def test_slq_matvec_on_a_cluster(model, client):
    f, params, x = model
    src = NTKSource(f, params, x, outputs="trace")
    exact = dlogdet.logdet(src, d=1e-2, client=None).logdet
    r = dlogdet.logdet(src, method="slq", product="matvec", client=client, d=1e-2, seed=0, rtol=0.02)
    d = r.diagnostics
    assert d["product"] == "matvec" and d["scheduler"].startswith("distributed") and d["matvec_tasks"] > 0
    assert abs(r.logdet - exact) <= d["error_bar"] <= 0.02 * abs(exact) * 1.05
