"""A tile source as a linear operator ``V ↦ M·V``, M = t·A + diag(d), for the iterative estimators.

Three ways to compute a product (``product=``):

* ``"tiles"``: a Dask graph over the lower-triangle tiles (:mod:`dlogdet.engine.products`), run where the exact engine
  runs (the active distributed client, one given, or the in-process threaded scheduler). Tiles are read or
  generated on the workers once per product; an in-memory array on a cluster is scattered once per operator and
  its tiles are reused by every product.
* ``"direct"``: one BLAS product in this process, for an in-memory NumPy array without a client (the tiles of
  such an array would be views of it anyway; one GEMM is faster than a graph of them).
* ``"matvec"``: the source's own matrix-free product (e.g. the NTK's J(JᵀV)); no tile is formed. Without a
  client, ``source.matvec(V)`` in this process. With a distributed client, a source that offers
  ``matvec_plan(V, *, parts, max_bytes)`` (the protocol of :class:`dlogdet.ntk.source.MatvecPlan`: per batch of
  columns, pull tasks over chunks of the source's data, a sum of their partials, push tasks giving row blocks)
  runs on the cluster: the source is broadcast to the workers once per operator, and each product is a small
  graph (:func:`dlogdet.engine.products.build_plan_graph`) of pull tasks → a binary tree of sums → push tasks → the block, so that a
  task holds one chunk's work for one batch of columns; a source without a plan still runs ``matvec`` here.

``"auto"`` takes ``"direct"`` where it applies and ``"tiles"`` otherwise (the matrix-free NTK product is
slower than structured tiles for the models of the zoo, DESIGN.md §3: ask for it explicitly).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..linalg import backend as B
from ..core import config
from ..linalg import kernels as K
from . import memory
from ..core.diagnostics import ABSENT, Absent, Diagnostics, record
from ..core.errors import InputError, MemoryBudgetError
from ..engine.graph import check_in_memory
from ..engine.plan import auto_block_size
from ..engine.schedule import Tiling
from ..engine.products import build_diagonal_graph, build_matmat_graph, build_plan_graph
from .execute import active_client, execute, n_workers
from ..sources import ArraySource, DaskArraySource, TileSource

log = logging.getLogger(__name__)

PRODUCTS = ("auto", "tiles", "direct", "matvec")


@record
class ProductDiagnostics(Diagnostics):
    """What the products with M cost (:meth:`SourceOperator.summary`): the part the matrix-free methods share.

    Attributes
    ----------
    product : {"tiles", "direct", "matvec"}
        How M·V was computed.
    matvecs, passes : int
        Matrix-vector products, and passes over the matrix (block products).
    product_time : float
        Seconds spent in the products.
    block_size, n_panels, n_tiles : int
        The tiling of the ``"tiles"`` products.
    matvec_tasks, matvec_chunk, matvec_column_batches, matvec_task_bytes : int
        The cluster graphs of the ``"matvec"`` products (:mod:`dlogdet.engine.products`).
    workers : int
    scheduler : str
    t : float
    d : float or "vector"
    """

    product: str | Absent = ABSENT
    matvecs: int | Absent = ABSENT
    passes: int | Absent = ABSENT
    product_time: float | Absent = ABSENT
    block_size: int | Absent = ABSENT
    n_panels: int | Absent = ABSENT
    n_tiles: int | Absent = ABSENT
    matvec_tasks: int | Absent = ABSENT
    matvec_chunk: int | Absent = ABSENT
    matvec_column_batches: int | Absent = ABSENT
    matvec_task_bytes: int | Absent = ABSENT
    workers: int | Absent = ABSENT
    scheduler: str | Absent = ABSENT
    t: float | Absent = ABSENT
    d: float | str | Absent = ABSENT


class SourceOperator:
    """``matmat(V) = (t·A + diag(d))·V`` for a symmetric source A, counting what it costs.

    Attributes
    ----------
    matvecs : int
        Products of M with one vector so far (a block of k columns counts k).
    passes : int
        Block products so far (each reads every lower-triangle tile once on the ``"tiles"`` path).
    product : str
        The path in use: ``"tiles"``, ``"direct"`` or ``"matvec"``.
    remote : bool
        ``"matvec"`` products run on the cluster (a client and a source with ``matvec_plan``).
    remote_tasks : int
        Tasks of the matrix-free products run on the cluster so far.
    """

    def __init__(self, source: TileSource, *, t: float = 1.0, d=0.0, block_size: int | None = None, budget=None,
                 client=None, product: str = "auto", check_symmetry: bool | None = None):
        if product not in PRODUCTS:
            raise InputError(f"product must be one of {PRODUCTS}, got {product!r}")
        self.source = source
        self.n = source.n
        self.t = float(t)
        self.d = d
        self.client = active_client(client)
        self.workers = n_workers(self.client)
        self.budget = memory.resolve(budget, self.client).bytes
        in_memory = isinstance(source, ArraySource) and B.is_numpy_like(source.array)
        if product == "auto":
            product = "direct" if in_memory and self.client is None else "tiles"
        if product == "matvec" and not callable(getattr(source, "matvec", None)):
            raise InputError(f"{type(source).__name__} has no matrix-free matvec: use product='tiles' (the default), "
                             "or give a source with a matvec(V) method such as dlogdet.ntk.NTKSource")
        if product == "direct" and not isinstance(source, ArraySource):
            raise InputError(f"product='direct' needs an in-memory array, got {type(source).__name__}; use "
                             "product='tiles'")
        self.product = product
        if check_symmetry is None:
            check_symmetry = bool(config.get("check.symmetry", True))
        self.check_symmetry = check_symmetry and not source.symmetric
        self.check_finite = bool(config.get("check.finite", True))
        self.matvecs = 0
        self.passes = 0
        self.time = 0.0
        self._checked = False
        self._futures: list = []
        self._tiles = None
        self._source_ref = None
        has_plan = callable(getattr(source, "matvec_plan", None))
        self.remote = product == "matvec" and self.client is not None and has_plan
        self.remote_tasks = 0
        self._plan = {}
        if block_size is None:
            block_size = config.get("block-size") or auto_block_size(self.n, self.workers,
                                                                     itemsize=source.dtype.itemsize, budget=self.budget)
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise InputError(f"block_size must be a positive integer, got {block_size!r}")
        self.tiling = Tiling(self.n, min(int(block_size), self.n))

    # ---------------------------------------------------------------------------------------------- public

    def check_block(self, k: int) -> None:
        """Refuse a block of k columns whose working set exceeds the budget (one tile, V and Y row blocks ×4)."""
        if self.budget is None or self.product != "tiles":
            return
        b = self.tiling.block_size
        need = 8 * (b * b + 4 * b * k)
        if need > self.budget:
            kmax = max(0, (self.budget // 8 - b * b) // (4 * b))
            raise MemoryBudgetError(f"a product with {k} columns on tiles of {b} needs {need / 2**20:.1f} MiB per "
                                    f"task, more than the budget of {self.budget / 2**20:.1f} MiB; use at most "
                                    f"{kmax} columns per block or a smaller block_size", needed=need)

    def max_columns(self) -> int | None:
        """The widest block a product may take within the budget (None: no limit)."""
        if self.budget is None or self.product != "tiles":
            return None
        b = self.tiling.block_size
        return max(0, (self.budget // 8 - b * b) // (4 * b))

    def matmat(self, V: np.ndarray) -> np.ndarray:
        """M·V for V of shape (n, k) (or (n,))."""
        V = np.asarray(V, dtype=np.float64)
        vec = V.ndim == 1
        if vec:
            V = V[:, None]
        t0 = time.perf_counter()
        if self.product == "direct":
            Y = self._direct(V)
        elif self.product == "matvec":
            W = V.astype(self.source.dtype, copy=False)
            KV = self._remote_matvec(W) if self.remote else self.source.matvec(W)
            Y = self.t * np.asarray(KV, dtype=np.float64).reshape(V.shape) + self._dv(V)
        else:
            Y = self._tiles_product(V)
        self.time += time.perf_counter() - t0
        self.matvecs += V.shape[1]
        self.passes += 1
        return Y[:, 0] if vec else Y

    __call__ = matmat

    def diagonal(self) -> np.ndarray:
        """diag(M) (for trace bounds): from the diagonal tiles, or the array's diagonal."""
        if isinstance(self.source, ArraySource) and B.is_numpy_like(self.source.array) and self.client is None:
            return self.t * np.diagonal(np.asarray(self.source.array)).astype(np.float64) + self._dvec()
        self._prepare()
        g = build_diagonal_graph(self.source, self.tiling, t=self.t, d=self.d, tiles=self._tiles,
                                 source_ref=self._source_ref)
        value, _ = execute(g.dsk, g.output_key, [], client=self.client)
        return np.asarray(value, dtype=np.float64)

    def close(self) -> None:
        """Release the tiles or source scattered to the cluster."""
        for f in self._futures:
            f.release()
        self._futures, self._tiles, self._source_ref = [], None, None

    def __enter__(self) -> SourceOperator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def summary(self) -> dict:
        """What the products cost: for a result's diagnostics."""
        return {"product": self.product, "matvecs": self.matvecs, "passes": self.passes,
                "product_time": self.time,
                **({"block_size": self.tiling.block_size, "n_panels": self.tiling.nt,
                    "n_tiles": self.tiling.tiles_lower()} if self.product == "tiles" else {}),
                **({"matvec_tasks": self.remote_tasks, **self._plan} if self.remote else {}),
                "workers": self.workers,
                "scheduler": "in-process" if self.product != "tiles" and not self.remote else
                ("threads" if self.client is None else f"distributed ({self.client.scheduler.address})")}

    # --------------------------------------------------------------------------------------------- private

    def _dvec(self):
        return np.asarray(self.d, dtype=np.float64) if np.ndim(self.d) else float(self.d)

    def _dv(self, V):
        d = self._dvec()
        return (d[:, None] if np.ndim(d) else d) * V

    def _direct(self, V):
        a = self.source.array
        if not self._checked:
            self._check_in_memory(np.asarray(a))
            self._checked = True
        return self.t * (np.asarray(a) @ V.astype(a.dtype, copy=False)).astype(np.float64) + self._dv(V)

    def _check_in_memory(self, a):
        """Finiteness and symmetry of an in-memory matrix, tile pair by tile pair (the engine's checks)."""
        rtol = K.symmetry_rtol_for(a.dtype) if self.check_symmetry else None
        check_in_memory(a, self.tiling, rtol, self.check_finite)

    def _prepare(self):
        """Scatter what every product reads, once: an in-memory array's lower tiles, or a small source (to every
        worker: the tiles or the matrix-free product's tasks read it)."""
        if self.client is None or self._futures:
            return
        src, tl = self.source, self.tiling
        if isinstance(src, ArraySource) and not self.remote:
            a = B.to_host(src.array)
            self._check_in_memory(a)
            self._checked = True
            idx = [(i, j) for i in range(tl.nt) for j in range(i + 1)]
            futures = self.client.scatter([a[slice(*tl.bounds(i)), slice(*tl.bounds(j))] for i, j in idx],
                                          hash=False, direct=True)
            self._tiles = dict(zip(idx, futures))
            self._futures = list(futures)
        elif self.remote or not isinstance(src, DaskArraySource):
            self._futures = self.client.scatter([src], broadcast=True, hash=False)
            self._source_ref = self._futures[0]

    def _remote_matvec(self, V):
        """source·V on the cluster, from the source's :meth:`matvec_plan` (the source scattered once).

        Chunks are aimed at one per thread of the cluster (more where the data needs them). With a budget, a task
        may take half of it: a sum task holds three partials, and a push's input arrives while another runs.
        """
        if V.shape[1] == 0:
            return np.zeros(V.shape)
        self._prepare()
        threads = sum(self.client.nthreads().values()) or self.workers
        plan = self.source.matvec_plan(V, parts=threads,
                                       max_bytes=None if self.budget is None else self.budget // 2)
        g = build_plan_graph(plan, self._source_ref)
        value, _ = execute(g.dsk, g.output_key, [], client=self.client)
        self.remote_tasks += g.n_tasks
        self._plan = {"matvec_chunk": plan.chunk, "matvec_column_batches": len(plan.columns),
                      "matvec_task_bytes": plan.task_bytes}
        return value

    def _tiles_product(self, V):
        self.check_block(V.shape[1])
        self._prepare()
        first = not self._checked
        rtol = None
        if first and self.check_symmetry:
            rtol = K.symmetry_rtol_for(self.source.dtype)
        g = build_matmat_graph(self.source, self.tiling, V, t=self.t, d=self.d,
                               check_finite=first and self.check_finite, symmetry_rtol=rtol, tiles=self._tiles,
                               source_ref=self._source_ref)
        value, _ = execute(g.dsk, g.output_key, [], client=self.client)
        self._checked = True
        return np.asarray(value, dtype=np.float64)
