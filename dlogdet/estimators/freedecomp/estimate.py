r"""Free decompression: log det of an n×n matrix from the spectra of random n₀×n₀ principal submatrices.

The pooled eigenvalues of ``samples`` random n₀×n₀ principal submatrices (one task each on the cluster,
:mod:`dlogdet.estimators.freedecomp.spectra`) are fitted by an algebraic spectral curve P(z, m) = 0
(:mod:`dlogdet.linalg.freecurve`: least squares on contours — log-scale rays for a positive spectrum — reweighted to
the relative error of m, with the moment constraints μ₀ = 1, μ₁, μ₂; atoms as poles of m; degrees chosen by
decompressing nested n₀/2 and n₀/4 blocks back to n₀ and by the fit at n₀). The curve is evolved in closed form to
t = log(n/n₀), and

    log det(t·A + σ²I) ≈ n·∫ log(λ + σ²) ρₙ(λ) dλ + n·Σₖ wₖ(t)·log(aₖ + σ²),

by Gauss–Legendre quadrature in θ with λ = (a + b)/2 − (b − a)/2·cos θ on each bulk [a, b] (square-root edges
become smooth), atoms aₖ with weights wₖ(t) = 1 − (1 − wₖ(0))e⁻ᵗ.

Uncertainty: stderr² = σ²_stat + σ²_model. σ_stat is the spread of the estimates of the individual submatrices
(same degrees) divided by √samples; σ_model is the error of the same procedure on tasks whose answer is known —
decompressing the pooled n₀/2 and n₀/4 blocks to n₀ and comparing the mean log with the observed n₀ spectrum — each
scaled to the real extrapolation by t/t_check (errors of the evolved curve grow with the evolution time), and the
larger of the two taken. Why both: on heavy-tailed spectra (an NTK) the n₀/2 check alone can be far smaller than
the real error, and the band then misses the truth; the price is a wide band where the small block misleads the
other way (docs/benchmarks/freedecomp.md).

Cost: ``samples`` eigendecompressions of n₀×n₀ (plus the nested blocks, 1/8 and 1/64 of that) and the tiles of the
submatrices; the curve numerics take a second or two.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from ...linalg import freecurve as FC
from ...core.diagnostics import ABSENT, Absent, Diagnostics, record
from ...core.errors import InputError
from ...core.checks import check_int, check_positive
from ...core.result import LogdetResult
from ...core.status import Status
from ...sources import TileSource
from .spectra import fit_spectra, submatrix_spectra

log = logging.getLogger(__name__)

#: Default number of submatrices (why: the stderr needs a spread; 4 give it to within ~40% and pool 4n₀
#: eigenvalues for the fit at 4 eigendecompositions of n₀).
DEFAULT_SAMPLES = 4
#: Largest distance of the decompressed law's mass from 1 for an ``ok`` status (why: a curve that loses more than
#: 1% of the mass has a wrong branch or pole somewhere, and its log det cannot be trusted to that level).
MASS_TOLERANCE = 0.01


@record
class FreeDecompDiagnostics(Diagnostics, method="freedecomp"):
    """What ``method="freedecomp"`` reports.

    Attributes
    ----------
    eigh_wall_time : float
        Seconds of the submatrices' eigendecompositions.
    n0, samples, n_total : int
        Submatrix size, submatrices, size at which the law is read.
    t_evolution : float
        log(n_total / n0), the evolution time of the curve.
    shift : float
        σ² = d.
    degrees : tuple
        (d_z, d_m) of the fitted curve; ``scale`` its contours' scale and ``fit_residual`` its residual;
        ``coefficients`` the curve's coefficients; ``selection`` the degrees tried.
    atoms, atoms_n : list of dict
        Atoms with their weights at n₀ and at n, and at n alone (with the poles the curve adds).
    support : list
        Bulk edges at n; ``mass`` the law's mass, ``moments`` μ₀..μ₂.
    per_sample, nested_checks, components : list, list, dict
        Each submatrix's estimate, the nested decompression checks, the stderr's parts (stat, model).
    submatrix_eigenvalues, density, spectra : array, dict, dict
        The eigenvalues (samples × n0), ρₙ on the quadrature nodes, the spectra's own diagnostics.
    seed
    """

    eigh_wall_time: float | Absent = ABSENT
    n0: int | Absent = ABSENT
    samples: int | Absent = ABSENT
    n_total: int | Absent = ABSENT
    t_evolution: float | Absent = ABSENT
    shift: float | Absent = ABSENT
    degrees: tuple[int, int] | Absent = ABSENT
    scale: str | Absent = ABSENT
    fit_residual: float | Absent = ABSENT
    coefficients: Any = ABSENT
    selection: list | Absent = ABSENT
    atoms: list | Absent = ABSENT
    atoms_n: list | Absent = ABSENT
    support: list | Absent = ABSENT
    mass: float | Absent = ABSENT
    moments: Any = ABSENT
    per_sample: list | Absent = ABSENT
    nested_checks: list | Absent = ABSENT
    components: dict | Absent = ABSENT
    submatrix_eigenvalues: Any = ABSENT
    density: dict | Absent = ABSENT
    spectra: dict | Absent = ABSENT
    seed: Any = ABSENT

    def method_rows(self, result) -> list:
        rows = []
        if result.stderr is not None:
            rows.append(("stderr", f"{result.stderr:.6g} ({100 * result.stderr / abs(result.logdet):.3g}%)"
                         if math.isfinite(result.logdet) and result.logdet != 0 else f"{result.stderr:.6g}"))
        rows.append(("submatrices", f"{self.samples} x n0 = {self.n0}, decompressed to n = {self.n_total}"))
        rows.append(("curve", f"degrees {tuple(self.degrees)}, {self.scale} scale"))
        rows.append(("support", ", ".join(f"[{a:.6g}, {b:.6g}]" for a, b in self.support)))
        if self.atoms_n:
            rows.append(("atoms", ", ".join(f"{a['weight']:.4f} at {a['location']:.6g}" for a in self.atoms_n)))
        return rows


def run(source: TileSource, *, n0: int | None = None, samples: int = DEFAULT_SAMPLES, seed=None, degrees="auto",
        scale: str = "auto", n_total: int | None = None, atoms: bool = True, assume: str = "spd", t: float = 1.0,
        d=0.0, block_size: int | None = None, budget=None, client=None, backend=None) -> LogdetResult:
    """log det(t·A + σ²I), σ² = d, of an n×n symmetric A from free decompression of n₀×n₀ submatrix spectra.

    Parameters
    ----------
    n0 : int
        Submatrix size (required; 2·(d_z + 1)(d_m + 1) ≤ n0 ≤ n).
    samples : int
        Random submatrices (default 4).
    seed : int, optional
    degrees : "auto" or (d_z, d_m)
        Degrees of the bulk curve (default: chosen by decompressing nested blocks).
    scale : {"auto", "linear", "log"}
        Contours and quadrature on a linear or a log scale (auto: log for a positive spectrum).
    n_total : int, optional
        Size at which to read the law (default n, the order of A).
    atoms : bool
        Detect atoms (repeated eigenvalues, e.g. the zero atom of a rank-deficient matrix) and evolve them.
    d : float
        σ² ≥ 0, a scalar shift (a vector d has no meaning for a spectrum).
    backend : {"auto", "numpy", "cupy"}, optional
        Where the submatrices' eigenvalues are computed (default: dask config ``dlogdet.backend``).
    block_size, budget
        Refused when given: a submatrix is one task, sized by ``n0``.

    Returns
    -------
    LogdetResult
        ``method="freedecomp"``, ``stderr``; ``diagnostics``: ``degrees``, ``selection``, ``atoms`` (at n₀ and at
        n), ``support`` (bulk edges at n), ``moments`` (μ₀..μ₂ at n), ``mass``, ``per_sample``, ``components``,
        ``submatrix_eigenvalues``, wall times. ``sign`` is 0 and ``logdet`` −inf for a zero atom without a shift.
    """
    t0 = time.perf_counter()
    n0, samples, n_total, shift, t = _checked(source, assume, n0, samples, n_total, d, t, degrees, block_size,
                                              budget)
    nested = tuple(k for k in (n0 // 4, n0 // 2) if k >= 40) if _auto(degrees) else ()
    spectra = submatrix_spectra(source, n0=n0, samples=samples, seed=seed, nested=nested, t=t,
                                backend=backend or None, client=client)
    t_eig = time.perf_counter() - t0
    curve, selection = fit_spectra(spectra, n_target=n_total, degrees=degrees, scale=scale, atoms=atoms)
    dec = curve.decompress(int(n_total))
    mean_log = dec.mean_log(shift)
    tt = math.log(n_total / n0)
    per_sample, s_stat = _statistical_error(spectra, curve, n_total, shift, atoms)
    checks, s_model = _model_error(spectra, curve, n_total, shift, atoms, tt)
    parts = [v for v in (s_stat, s_model) if math.isfinite(v)]
    stderr = math.sqrt(sum(v * v for v in parts)) if parts else None

    if math.isnan(mean_log):
        status, logdet, sign = Status.SUPPORT_BELOW_ZERO, math.nan, math.nan
    elif mean_log == -math.inf:
        status, logdet, sign = Status.SINGULAR, -math.inf, 0.0
    else:
        status = Status.OK if abs(dec.mass - 1.0) < MASS_TOLERANCE else Status.MASS_OFF
        logdet, sign = n_total * mean_log, 1.0
    at_n = dec.atoms
    diagnostics = FreeDecompDiagnostics(
        wall_time=time.perf_counter() - t0,
        eigh_wall_time=t_eig,
        n0=n0,
        samples=samples,
        n_total=int(n_total),
        t_evolution=tt,
        shift=shift,
        degrees=curve.degrees,
        scale=curve.scale_kind,
        fit_residual=curve.residual,
        coefficients=curve.Q,
        selection=selection,
        atoms=[{"location": a.location, "weight_n0": a.weight, "weight_n": b.weight}
               for a, b in zip(curve.atoms, at_n)],
        atoms_n=[{"location": a.location, "weight": a.weight} for a in at_n],   # with poles the curve adds
        support=dec.intervals,
        mass=dec.mass,
        moments=dec.moments(2),
        per_sample=per_sample,
        nested_checks=checks,
        components={"stat": s_stat, "model": s_model},
        submatrix_eigenvalues=spectra.eigenvalues,
        density=_density_samples(dec),
        spectra=spectra.diagnostics,
        seed=seed if seed is None or isinstance(seed, (int, np.integer)) else repr(seed),
    )
    log.info("freedecomp: %d x n0 = %d -> n = %d, degrees %s: %.6g ± %s", samples, n0, n_total, curve.degrees,
             logdet, stderr)
    return LogdetResult(logdet=logdet, sign=sign, method="freedecomp", n=int(n_total), dtype=str(source.dtype),
                        stderr=stderr, assume=assume, status=status, diagnostics=diagnostics)


def _auto(degrees) -> bool:
    return isinstance(degrees, str) and degrees == "auto"


def _checked(source: TileSource, assume, n0, samples, n_total, d, t, degrees, block_size, budget):
    """(n0, samples, n_total, shift σ², t), checked, or an InputError naming the fix."""
    if assume not in ("spd", "sym"):
        raise InputError(f"method='freedecomp' needs a symmetric matrix (assume='spd' or 'sym'), got assume={assume!r}")
    n = source.n
    if block_size is not None or budget is not None:
        given = ", ".join(k for k, v in (("block_size=", block_size), ("budget=", budget)) if v is not None)
        raise InputError(f"method='freedecomp' forms each n0 x n0 submatrix whole in one task, so {given} does not "
                         "apply: choose n0 (and samples) to fit a worker's memory instead")
    if n0 is None:
        raise InputError("method='freedecomp' needs n0= (the submatrix size, e.g. n0=1000 or n // 8)")
    n0 = check_int("n0", n0, 2, n, hint=f" (the submatrix size; the matrix has n = {n})")
    samples = check_int("samples", samples, 1)
    n_total = n if n_total is None else n_total
    if isinstance(n_total, bool) or not isinstance(n_total, (int, np.integer)) or n_total < n0:
        raise InputError(f"n_total = {n_total!r} is smaller than the submatrix size n0 = {n0}: free decompression "
                         f"only grows a spectrum; give n_total >= {n0}")
    if np.ndim(d) != 0:
        raise InputError("method='freedecomp' takes a scalar shift d = sigma^2 (log det(t·A + sigma^2 I)); a vector "
                         "diagonal does not act on the spectrum: use method='exact' or 'slq'")
    shift = check_positive("d (sigma^2, the shift)", d, allow_zero=True)
    t = check_positive("t", t)
    if not _auto(degrees):
        FC.parse_degrees(degrees)
    return n0, samples, n_total, shift, t


def _statistical_error(spectra, curve, n_total: int, shift: float, atoms: bool) -> tuple[list, float]:
    """Each submatrix's estimate with the same degrees, and their spread divided by √samples (NaN below 2)."""
    per_sample = []
    if spectra.samples >= 2:
        for s in range(spectra.samples):
            try:
                cs = FC.fit_curve(spectra.eigenvalues[s], spectra.n0, degrees=curve.degrees,
                                  scale=curve.scale_kind, atoms=atoms)
                per_sample.append(n_total * cs.decompress(int(n_total), nodes=128).mean_log(shift))
            except (FC.CurveFitError, FC.SpectrumError) as e:
                log.warning("freedecomp: sample %d could not be fitted alone: %s", s, e)
    fin = [v for v in per_sample if math.isfinite(v)]
    return per_sample, float(np.std(fin, ddof=1) / math.sqrt(len(fin))) if len(fin) >= 2 else math.nan


def _model_error(spectra, curve, n_total: int, shift: float, atoms: bool, tt: float) -> tuple[list, float]:
    """The nested checks (the pooled k×k blocks decompressed to n₀, against the observed n₀ spectrum), and the
    worst of them, each scaled to the real evolution time (module doc)."""
    n0 = spectra.n0
    checks = []
    for k, ek in sorted(spectra.nested.items()):
        try:
            ck = FC.fit_curve(ek.ravel(), k, degrees=curve.degrees, scale=curve.scale_kind, atoms=atoms)
            pred = ck.decompress(n0, nodes=128).mean_log(shift)
            pooled = spectra.pooled()
            obs = float(np.mean(np.log(pooled + shift))) if np.min(pooled) + shift > 0 else -math.inf
            if math.isfinite(pred) and math.isfinite(obs):
                checks.append({"k": k, "error_mean_log": pred - obs, "t_check": math.log(n0 / k)})
        except (FC.CurveFitError, FC.SpectrumError) as e:
            log.warning("freedecomp: nested check at k = %d failed: %s", k, e)
    s_model = max((abs(c["error_mean_log"]) * n_total * tt / c["t_check"] for c in checks), default=math.nan)
    return checks, s_model


def _density_samples(dec, points: int = 256) -> dict:
    """ρₙ on at most ``points`` of the bulk's quadrature nodes, in order (for plots of a finished run, e.g.
    ``dlogdet report``): ``{"x": [...], "density": [...]}``."""
    x = np.asarray(dec.nodes, dtype=float)
    rho = np.asarray(dec.density_at_nodes, dtype=float)
    order = np.argsort(x)
    x, rho = x[order], rho[order]
    if x.size > points:
        keep = np.unique(np.linspace(0, x.size - 1, points).round().astype(int))
        x, rho = x[keep], rho[keep]
    return {"x": x.tolist(), "density": rho.tolist()}
