"""Eigenvalues of random principal submatrices, the input of free decompression, and the curve fitted to them.

:func:`submatrix_spectra` draws the points and runs one task per submatrix (:mod:`dlogdet.engine.spectra`) where
the exact engine runs: the active distributed client, one given, or the in-process threaded scheduler.
:func:`fit_spectra` fits the algebraic curve of the pooled eigenvalues (:mod:`dlogdet.linalg.freecurve`), and
:func:`laws` reads its decompressed laws as plain values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ...linalg import backend as B
from ...core import config
from ...core.errors import InputError
from ...runtime.execute import active_client, execute
from ...sources import as_source
from ...engine.spectra import build_spectra_graph


@dataclass(frozen=True, eq=False)
class SubmatrixSpectra:
    """Eigenvalues of ``samples`` random n₀×n₀ principal submatrices.

    Attributes
    ----------
    eigenvalues : numpy.ndarray, shape (samples, n0)
        Ascending eigenvalues of t·S (S = A[I, I]) per sample.
    points : numpy.ndarray, shape (samples, n0)
        The points (rows of A) of each submatrix.
    nested : dict[int, numpy.ndarray]
        {k: eigenvalues of the leading k×k blocks of the same submatrices, shape (samples, k)}.
    n : int
        Order of the whole matrix.
    """

    eigenvalues: np.ndarray
    points: np.ndarray
    nested: dict
    n: int
    diagnostics: dict = field(default_factory=dict)

    @property
    def n0(self) -> int:
        return int(self.eigenvalues.shape[1])

    @property
    def samples(self) -> int:
        return int(self.eigenvalues.shape[0])

    def pooled(self) -> np.ndarray:
        """All eigenvalues of all samples, sorted (the empirical law of the n₀×n₀ submatrices)."""
        return np.sort(self.eigenvalues.ravel())


def submatrix_spectra(A, *, n0: int, samples: int = 1, seed=None, nested=(), t: float = 1.0, backend: str | None = None,
                      client=None) -> SubmatrixSpectra:
    """Eigenvalues of ``samples`` random n₀×n₀ principal submatrices of t·A, one task each.

    Parameters
    ----------
    A : array, path or TileSource
        Any input of :func:`dlogdet.logdet` (symmetric).
    n0 : int
        Submatrix size, 2 ≤ n0 ≤ n.
    samples : int
        Independent submatrices (points drawn without replacement within each, independently across them).
    seed : int or numpy Generator, optional
    nested : sequence of int
        Sizes k < n0 of leading blocks whose eigenvalues are returned too.
    t : float
        Scale of A.
    backend : {"auto", "numpy", "cupy"}, optional
        Where the eigenvalues are computed (default dask config ``dlogdet.backend``).
    client : distributed.Client, optional
    """
    source = as_source(A)
    n = source.n
    if isinstance(n0, bool) or not isinstance(n0, (int, np.integer)) or not 2 <= n0 <= n:
        raise InputError(f"n0 must be an integer in [2, n = {n}] (the submatrix size), got {n0!r}")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise InputError(f"samples must be a positive integer (submatrices to draw), got {samples!r}")
    nested = tuple(sorted({int(k) for k in nested}))
    if any(k < 2 or k >= n0 for k in nested):
        raise InputError(f"nested sizes must lie in [2, n0 = {n0}), got {nested}")
    if not np.isfinite(t) or t <= 0:
        raise InputError(f"t must be a positive finite scale, got {t!r}")
    backend = backend or config.get("backend", "auto")
    if backend != "auto":
        B.resolve_backend(backend)     # refuse an unknown backend, or cupy without a GPU, before any work
    rng = np.random.default_rng(seed)
    pts = np.stack([rng.choice(n, size=int(n0), replace=False) for _ in range(int(samples))])
    client = active_client(client)
    dsk, out = build_spectra_graph(source, pts, nested, t=float(t), backend=backend,
                                   check_finite=bool(config.get("check.finite", True)))
    t0 = time.perf_counter()
    parts, stats = execute(dsk, out, [], client=client)
    eig = np.stack([p["eigenvalues"] for p in parts])
    nest = {k: np.stack([p["nested"][k] for p in parts]) for k in nested}
    diag = {"wall_time": time.perf_counter() - t0, "eigh_times": [p["eigh_time"] for p in parts],
            "backend": parts[0]["backend"], "scheduler": stats.scheduler}
    return SubmatrixSpectra(eigenvalues=eig, points=pts, nested=nest, n=n, diagnostics=diag)


def fit_spectra(spectra: SubmatrixSpectra, *, n_target: float | None = None, degrees="auto", scale: str = "auto",
                atoms: bool = True):
    """The algebraic curve of the pooled submatrix spectrum (:mod:`dlogdet.linalg.freecurve`), and the selection table.

    ``degrees="auto"`` scores the candidates by decompressing the nested spectra (when the spectra hold any) to n₀,
    and rejects those whose law at ``n_target`` (default the whole matrix's order) is not a valid density.
    """
    from ...linalg import freecurve as FC

    n_target = spectra.n if n_target is None else n_target
    t_target = float(np.log(n_target / spectra.n0)) if n_target > spectra.n0 else 0.0
    pooled = spectra.pooled()
    if isinstance(degrees, str):
        if degrees != "auto":
            raise InputError(f"degrees must be 'auto' or a pair (d_z, d_m), got {degrees!r}")
        nested = {k: v.ravel() for k, v in spectra.nested.items()}
        return FC.select_curve(pooled, spectra.n0, t_target=t_target, nested=nested or None, scale=scale,
                               atoms=atoms)
    return FC.fit_curve(pooled, spectra.n0, degrees=degrees, scale=scale, atoms=atoms), []


def laws(curve, sizes) -> list[dict]:
    """The law of a fitted curve decompressed to each of ``sizes``, as plain values: ``n``, the bulks' ``support``,
    the ``atoms`` (location, weight), the ``mass``, the ``moments`` μ₀..μ₂ and the ``mean_log`` (None where the
    support reaches 0 or below)."""
    out = []
    for n in sizes:
        dec = curve.decompress(n)
        out.append({"n": n, "support": [list(map(float, iv)) for iv in dec.intervals],
                    "atoms": [{"location": a.location, "weight": a.weight} for a in dec.atoms],
                    "mass": dec.mass, "moments": [float(v) for v in dec.moments(2)],
                    "mean_log": dec.mean_log() if dec.intervals[0][0] > 0 else None})
    return out
