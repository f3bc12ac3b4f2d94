"""The public entry point: one call, any method, any input."""

from __future__ import annotations

from . import estimators
from .result import LogdetResult
from .sources import as_source


def logdet(A, *, method: str = "exact", assume: str = "spd", t: float = 1.0, d=0.0, block_size: int | None = None,
           budget=None, client=None, **options) -> LogdetResult:
    """log|det M| for M = t·A + diag(d), with the sign and the diagnostics to trust it.

    Parameters
    ----------
    A : array, path or TileSource
        A NumPy/CuPy array; a path to a ``.npy`` file (memory-mapped on the workers, never read whole here) or a
        zarr directory; a ``zarr.Array``; a dask array; or a :class:`dlogdet.TileSource` such as
        :class:`dlogdet.KernelSource` whose tiles are generated on the workers.
    method : str
        ``"exact"``: the tiled factorization (the only method so far; estimators register beside it).
    assume : {"spd", "sym", "gen"}
        ``"spd"``: symmetric positive definite, Cholesky (the fastest; raises :class:`NotPSDError` naming the
        failed row otherwise). ``"sym"``: symmetric, possibly indefinite, LDLᵀ with Bunch–Kaufman pivoting
        inside diagonal tiles; gives the sign and the inertia. ``"gen"``: general, LU with partial pivoting
        inside diagonal tiles. Pivoting does not cross tile boundaries (as in the MEMDET algorithm): a
        symmetric matrix whose leading tiles are singular needs ``d=`` or another block size.
    t : float
        Scale of A (default 1).
    d : float or array of length n
        Diagonal shift (jitter; default 0): cheap regularization without copying A.
    block_size : int, optional
        Tile size; by default chosen from n and the number of workers (:func:`dlogdet.graph.auto_block_size`).
    budget : int or str, optional
        Per-worker memory budget for tiles, such as ``"2GiB"`` (default: dask config ``dlogdet.memory.budget``).
        When the matrix's lower triangle exceeds half of the workers' summed budgets, the run goes out of core:
        the trailing matrix lives in an on-disk tile store and every worker holds only the tiles of the task it
        runs (``dlogdet.memory.tiles-per-task`` tiles, sized to fit the budget). A budget too small for the
        smallest tile raises :class:`MemoryBudgetError` naming the smallest one that works.
    client : distributed.Client, optional
        Where to run. ``None`` uses the active distributed client if there is one, otherwise dask's threaded
        scheduler in this process (``dlogdet.local.workers`` threads, BLAS pinned to one thread per task).
    **options
        Method options. For ``"exact"``: ``backend`` (``"auto"``, ``"numpy"``, ``"cupy"``), ``progress`` (a
        callable receiving :class:`dlogdet.runtime.Progress` as panels finish), ``check_symmetry`` (bool);
        out of core: ``scratch`` (directory of the tile store, default dask config ``dlogdet.scratch`` or the
        system's temporary directory; on a cluster a file system every worker sees) and ``resume`` (default
        True: a run that finds the tile store of an identical earlier run that failed or was killed continues
        at its first unfinished step; finished steps are not recomputed).

    Returns
    -------
    LogdetResult

    Raises
    ------
    InputError
        Bad input (not square, unsupported dtype, NaN/Inf, not symmetric, not positive definite for "spd").
    SingularMatrixError
        An exactly singular diagonal block before the last tile ("sym", "gen").
    """
    source = as_source(A)
    return estimators.get(method)(source, assume=assume, t=t, d=d, block_size=block_size, budget=budget,
                                  client=client, **options)
