"""The subsamples of an extrapolation: drawn at random, factored, read as ℓ_k curves (and leave-one-out curves).

A subsample of at most :data:`LOO_MAX_ROWS` rows is factored in this process, through the engine's own tile kernel
(:func:`dlogdet.linalg.kernels.prepare_tile` and :func:`dlogdet.linalg.kernels.potrf`: the same finiteness, symmetry and pivot
checks as the engine, on one tile), keeping the factor for its leave-one-out increments
(:func:`dlogdet.linalg.scalinglaw.loo_increments`), whose mean the family and the probe are fitted to; a larger one, or
any on a cluster (``client=``), goes through the exact engine, and both then read the raw increments. Why in-process for small ones: one LAPACK call on one
BLAS thread takes 0.08–0.2 s for 750 rows on the loaded 2-core machine, the engine's graph far longer.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ...core import config
from ...core.errors import ExtrapolationError, NotPSDError
from ...linalg import kernels as K
from ...linalg.scalinglaw import loo_increments
from ...sources import TileSource
from ...sources.subset import SubsetSource
from .. import get as _get_estimator

#: Largest subsample (rows) factored in-process with its inverse factor, which gives the leave-one-out increment
#: curve (why: two n×n float64 work arrays, 0.5 GiB each at this size); larger ones go through the engine.
LOO_MAX_ROWS = 8192
#: In-process factorizations up to this many rows run on one BLAS thread (why: on a loaded machine a small
#: Cholesky is several times faster on one thread than on two that compete; larger ones use all).
SINGLE_THREAD_ROWS = 4096


@functools.lru_cache(maxsize=1)
def _controller():
    """The process's BLAS libraries, found once (why: ``threadpool_limits()`` scans the loaded libraries on every
    call, 5 ms each — a tenth of a 500-point subsample's time)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def blas_threads_for(rows: int):
    """One BLAS thread for a factorization of at most :data:`SINGLE_THREAD_ROWS` rows, all of them above."""
    return _controller().limit(limits=1) if rows <= SINGLE_THREAD_ROWS else contextlib.nullcontext()


def factor_in_process(a: np.ndarray, sub: SubsetSource, t: float, d_sub, check_symmetry: bool | None) -> K.CholFactor:
    """Cholesky factor of M = t·S + diag(d) for the dense matrix ``a`` of a small subsample S, as one tile of the
    engine: checked finite (and symmetric unless the source is symmetric by construction), factored by
    :func:`dlogdet.linalg.kernels.potrf`, whose pivot checks raise :class:`~dlogdet.core.errors.NotPSDError` with the failing
    row."""
    if check_symmetry is None:
        check_symmetry = bool(config.get("check.symmetry", True))
    rtol = K.symmetry_rtol_for(sub.dtype) if check_symmetry and not sub.symmetric else None
    m = K.prepare_tile(np.asarray(a, dtype=np.float64), r0=0, c0=0, t=t, d=d_sub,
                       check_finite=bool(config.get("check.finite", True)), symmetry_rtol=rtol)
    with blas_threads_for(sub.n):
        return K.potrf(m)


@dataclass
class Pool:
    """The subsamples of one size drawn so far: their ℓ_k curves, leave-one-out curves (in-process only), points and
    factorization times. Draws come from one seeded generator, so the same seed gives the same subsamples in the
    same order whatever the loop decides."""

    source: TileSource
    rpp: int
    seed: object
    t: float
    d: object
    block_size: int | None
    budget: object
    client: object
    options: dict
    n_sub: int = 0
    ell: list = field(default_factory=list)
    loo: list = field(default_factory=list)
    points: list = field(default_factory=list)
    times: list = field(default_factory=list)
    in_process: bool = True

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.n_points = self.source.n // self.rpp

    def draw(self, n_sub: int, count: int) -> float | None:
        """Add ``count`` subsamples of n_sub points (dropping those of another size); return the seconds per entry
        their tiles took (in-process), or None."""
        if n_sub != self.n_sub:
            self.ell, self.loo, self.points, self.times = [], [], [], []
            self.n_sub = n_sub
        self.in_process = self.client is None and n_sub * self.rpp <= LOO_MAX_ROWS
        rates = []
        for _ in range(int(count)):
            pts = self.rng.choice(self.n_points, size=n_sub, replace=False)
            rate = self._one(SubsetSource(self.source, pts, rows_per_point=self.rpp), pts)
            if rate is not None:
                rates.append(rate)
        return float(np.mean(rates)) if rates else None

    def _d_of(self, sub: SubsetSource):
        return self.d if np.ndim(self.d) == 0 else np.asarray(self.d, dtype=np.float64)[sub.parent_rows(np.arange(sub.n))]

    def _one(self, sub: SubsetSource, pts: np.ndarray) -> float | None:
        d_sub = self._d_of(sub)
        tf = time.perf_counter()
        try:
            if self.in_process:
                return self._in_process(sub, pts, d_sub, tf)
            r = _get_estimator("exact")(sub, assume="spd", t=self.t, d=d_sub, block_size=self.block_size,
                                        budget=self.budget, client=self.client, **self.options)
        except NotPSDError as e:
            point = None if e.row is None else int(pts[e.row // self.rpp])
            raise ExtrapolationError(
                f"subsample {len(self.ell)} of {self.n_sub} points is not positive definite (failed at its row "
                f"{e.row}, point {point} of the source): ℓ_k is not finite there; add a diagonal shift d= (jitter) "
                "or use a smaller n_sub") from e
        lp = np.asarray(r.log_pivots, dtype=np.float64).reshape(self.n_sub, self.rpp).sum(axis=1)
        self.ell.append(np.cumsum(lp))
        self.points.append(pts)
        self.times.append(float(r.diagnostics.get("wall_time", math.nan)))
        return None

    def _in_process(self, sub: SubsetSource, pts: np.ndarray, d_sub, tf: float) -> float:
        t_tiles = time.perf_counter()
        a = sub.dense()
        t_tiles = time.perf_counter() - t_tiles            # the tiles' own time, for the cost of the exact run
        factor = factor_in_process(a, sub, self.t, d_sub, self.options.get("check_symmetry"))
        del a
        self.ell.append(np.cumsum(factor.pivots.log_abs.reshape(self.n_sub, self.rpp).sum(axis=1)))
        with blas_threads_for(sub.n):      # every subsample's: the family is fitted to their mean
            self.loo.append(loo_increments(np.asarray(factor.L), self.rpp))
        self.points.append(pts)
        self.times.append(time.perf_counter() - tf)
        return t_tiles / float(sub.n) ** 2

    def curves(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The ℓ_k curves (S × n_sub) and their leave-one-out curves (None on the
        engine's path, which keeps no factor)."""
        return np.array(self.ell), (np.array(self.loo) if self.loo and self.in_process else None)

