"""The public entry point: one call, any method, any input."""

from __future__ import annotations

from . import estimators
from .core.result import LogdetResult
from .sources import as_source


def logdet(A, *, method: str = "exact", assume: str = "spd", t: float = 1.0, d=0.0, block_size: int | None = None,
           budget=None, client=None, **options) -> LogdetResult:
    """log|det M| for M = t·A + diag(d), with the sign and the diagnostics to trust it.

    Parameters
    ----------
    A : array, path, source spec or TileSource
        A NumPy/CuPy array; a path to a ``.npy`` file (memory-mapped on the workers, never read whole here) or a
        zarr directory; a source spec such as ``"kernel:rbf:n=4000"`` (:mod:`dlogdet.sources.spec`); a
        ``zarr.Array``; a dask array; or a :class:`dlogdet.TileSource` such as :class:`dlogdet.KernelSource` whose
        tiles are generated on the workers.
    method : str
        ``"exact"``: the tiled factorization. ``"slq"``: stochastic Lanczos quadrature with an honest error bar
        (``rtol=0.01``, ``seed=``, ``precondition=rank`` for a Nyström preconditioner; ``stderr`` and
        ``diagnostics["error_bar"]``). ``"nystrom"``: randomized Nyström, ``rank=``; guaranteed ``lower`` and
        ``upper`` bounds on log det(K + σ²I) with σ² = d, the leading spectrum and its decay. ``"auto"``: exact
        when the planner says it fits the budget and ``time_limit`` (default 60 s), else preconditioned SLQ (the
        decision guide is :mod:`dlogdet.estimators.auto`). SLQ and Nyström take t·A positive semi-definite,
        t > 0, d ≥ 0, and compute products over the tiles (``product="matvec"``: the source's matrix-free
        ``matvec``, e.g. the NTK's).
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
        Tile size; by default chosen from n and the number of workers (:func:`dlogdet.engine.plan.auto_block_size`).
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
        at its first unfinished step; finished steps are not recomputed). An option that ``method`` does not take
        raises :class:`InputError` naming those it takes (:func:`dlogdet.estimators.check_options`).

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


def extrapolate(A, n_total: int | None = None, *, n_sub: int, window="auto", order="auto", subsamples="auto",
                rtol: float | None = None, max_cost: float | None = None, fallback: str | None = None,
                seed=None, rows_per_point: int | None = None, ridge: float = 0.0, weights=None,
                family: str = "auto", t: float = 1.0, d=0.0, block_size: int | None = None, budget=None,
                client=None, **options) -> LogdetResult:
    r"""log det of n points, extrapolated by a scaling law from exact factorizations of random subsamples.

    ℓ(n) = a₀ + a₁n + (b₀ + Σᵢ₌₁^q bᵢn⁻ⁱ)·ln n! + Σᵢ₌₁^r cᵢn⁻ⁱ is fitted to ℓ_k = log det of the first k points
    of a random subsample (k ≤ n_sub: the cumulative log-pivots of one exact factorization, grouped per point) and
    read at ``n_total``. Window and order are chosen by held-out validation on the tail of the curve; ``stderr``
    has a sampling part (the noise of the subsamples' curves, which more subsamples shrink) and a model part (the
    choice among the best windows/orders, the held-out check, the Box-Cox probe's distance), which only a larger
    n_sub shrinks. See :mod:`dlogdet.estimators.extrapolate` for the method and
    :mod:`dlogdet.estimators.extrapolate.adaptive` for how many subsamples are drawn.

    Parameters
    ----------
    A : array, path or TileSource
        The matrix of the whole data set, or of a sample of it (any input of :func:`logdet`; an
        :class:`~dlogdet.ntk.NTKSource` with ``outputs="full"`` counts O rows per point). Only the subsample's
        tiles are ever computed.
    n_total : int, optional
        Points of the full data set at which to read the curve (default: the points of ``A``).
    n_sub : int
        Points per subsample (≥ 20, ≤ the points of ``A``).
    window : "auto" or (n0, n1)
        Fit the curve between ℓ_{n0} and ℓ_{n1}, 1 ≤ n0 < n1 ≤ n_sub (default: chosen by validation).
    order : "auto", int or (q, r)
        q, r of the family (an integer k: q = r = k; default: chosen by validation among 0..2).
    subsamples : "auto" or int
        Independent random subsamples (each one exact factorization of n_sub points); their curves are averaged,
        which divides the sampling variance by their number. ``"auto"`` (default) draws them until the band's
        sampling part is below its model part (which more subsamples of this size cannot reduce), within
        ``max_cost`` of the predicted exact cost; an integer draws exactly that many (1: the published method).
    rtol : float, optional
        The accuracy asked for: draw subsamples, and double n_sub where the model part needs it, until the band's
        half-width 2·stderr is within ``rtol · |log det|``; stop before the total would pass the predicted cost of
        the exact factorization, with status ``rtol-not-reached`` and a warning that recommends the exact method.
    max_cost : float, optional
        Time budget of ``subsamples="auto"``, a fraction of the predicted exact cost (:func:`dlogdet.plan`'s time
        plus the source's tiles; default 0.1, :data:`dlogdet.estimators.extrapolate.MAX_COST`, or 1.0 with
        ``rtol``).
    fallback : {None, "exact"}
        With ``rtol``: run the exact factorization when the extrapolation cannot reach rtol below its cost.
    seed : int or numpy Generator, optional
        Seed of the subsamples.
    rows_per_point : int, optional
        Rows of ``A`` per point (default: O for a full-output NTK, else 1).
    ridge : float
        Penalty on the correction terms bᵢ, cᵢ (smoothness prior; default 0).
    weights : None, "inverse-variance" or array of n_sub numbers
        Weights of the least squares on the increments ℓ_k − ℓ_(k−1) (default None: equal weights).
    family : "auto", "scaling-law" or "boxcox"
        The curve that gives the estimate: the scaling-law family above, or the Box-Cox curvature probe
        δ_k = α + β·(k^γ − 1)/γ (the band holds both either way; ``"issue"``, the family's old name, still works
        with a deprecation warning). "auto" (default) takes the probe where the source reports a rank
        boundary between n_sub and n_total points (:meth:`~dlogdet.ntk.NTKSource.rank_boundaries`: a layer of a
        full-output NTK that runs out of new directions there, the mark of a network narrow for its data) and the
        family elsewhere.
    t, d, block_size, budget, client, **options
        As in :func:`logdet`, for the exact factorizations of the subsamples (``assume`` is ``"spd"``: every
        row's log-pivot is needed; add ``d=`` to a semi-definite matrix).

    Returns
    -------
    LogdetResult
        ``method="extrapolate"``, ``logdet`` the estimate, ``stderr`` its honest standard error (the band
        ``diagnostics["band"]`` is estimate ± 2·stderr), ``status`` :attr:`~dlogdet.core.status.Status.OK`,
        ``UNVALIDATED``, ``SCALING_LAW_REJECTED``, ``RTOL_NOT_REACHED`` or ``RANK_BOUNDARY``,
        ``diagnostics["family"]`` the family used, ``diagnostics["rank_boundaries"]`` the model's rank boundaries
        between n_sub and n_total, ``subsamples`` and ``stopped``/``stop_reason`` (how many were drawn and why no
        more), ``cost`` (seconds spent against the predicted exact cost), ``steps``, and ``coefficients``,
        ``window``, ``order``, ``components`` of the stderr (``sampling``, ``model`` and the model's parts),
        ``ell`` (the ℓ_k curves), ``curves`` (both families' curves as the estimate reads them), ``points``,
        ``candidates``, ``curvature_t``, ``upper_monotone`` and the wall times. With ``fallback="exact"`` where
        rtol was out of reach: the exact method's result.

    Raises
    ------
    InputError
        n_sub larger than the data, a window outside [1, n_sub], bad order, counts, rtol, max_cost or fallback.
    ExtrapolationError
        A curve too short for the order, or a singular subsample (non-finite ℓ_k): the message names the fix.
    """
    source = as_source(A)
    return estimators.get("extrapolate")(source, n_total, n_sub=n_sub, window=window, order=order,
                                         subsamples=subsamples, rtol=rtol, max_cost=max_cost, fallback=fallback,
                                         seed=seed, rows_per_point=rows_per_point,
                                         ridge=ridge, weights=weights, family=family, t=t, d=d,
                                         block_size=block_size, budget=budget, client=client,
                                         **options)


def spectrum(A, *, n0: int, samples: int = 1, seed=None, nested=(), t: float = 1.0, backend: str | None = None,
             client=None):
    r"""Eigenvalues of ``samples`` random n0×n0 principal submatrices of t·A, computed on the cluster, pooled.

    One task per submatrix forms it from the source's tiles on a worker and returns its eigenvalues (NumPy
    ``eigvalsh``, CuPy's where the backend is ``"cupy"``), and those of its leading blocks of the ``nested`` sizes.
    The result's :meth:`~dlogdet.estimators.freedecomp.spectra.SubmatrixSpectra.pooled` is the empirical law of
    n0×n0 submatrices, the input of free decompression (:func:`dlogdet.estimators.freedecomp.spectra.fit_spectra`,
    :mod:`dlogdet.linalg.freecurve`, ``logdet(A, method="freedecomp", n0=...)``).

    Parameters
    ----------
    A : array, path or TileSource
        Any input of :func:`logdet` (symmetric).
    n0 : int
        Submatrix size (2 ≤ n0 ≤ n).
    samples : int
        Independent random submatrices (default 1).
    seed : int or numpy Generator, optional
    nested : sequence of int
        Leading-block sizes k < n0 whose eigenvalues are returned too (``.nested[k]``).
    t : float
        Scale of A.
    backend : {"auto", "numpy", "cupy"}, optional
    client : distributed.Client, optional

    Returns
    -------
    dlogdet.estimators.freedecomp.spectra.SubmatrixSpectra
        ``eigenvalues`` (samples × n0), ``points``, ``nested``, ``n``, ``pooled()``, ``diagnostics``.
    """
    from .estimators.freedecomp.spectra import submatrix_spectra
    return submatrix_spectra(A, n0=n0, samples=samples, seed=seed, nested=nested, t=t, backend=backend,
                             client=client)
