"""Degrees chosen for a spectrum: candidates scored by decompressing nested blocks back to n₀, and refused where the
law at the target size is not a valid density; and the closed-form Marchenko–Pastur law, the exact test of
decompression."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ...core.errors import InputError
from .algebra import AUTO_DEGREES, CurveFitError, SpectrumError
from .curve import Decompressed, SpectralCurve
from .fit import check_spectrum, fit_curve


def _quantile_fn(pred: Decompressed) -> Callable[[np.ndarray], np.ndarray]:
    """The predicted law's quantile function: piecewise linear through the bulk's quadrature nodes at their CDF
    midpoints, flat across each atom's jump."""
    pts = [(float(x), 0, float(w)) for x, w in zip(pred.nodes, pred.weights)]
    pts += [(float(at.location), 1, float(at.weight)) for at in pred.atoms]
    pts.sort()
    xs: list[float] = []
    cs: list[float] = []
    c = 0.0
    for x, is_atom, w in pts:
        if is_atom:
            xs += [x, x]
            cs += [c, c + w]
        else:
            xs.append(x)
            cs.append(c + 0.5 * w)
        c += w
    x_at, c_at = np.array(xs), np.array(cs) / max(c, 1e-300)
    return lambda q: np.interp(q, c_at, x_at)


def _w1(pred: Decompressed, obs: np.ndarray, log: bool = False) -> float:
    """Wasserstein-1 distance between a predicted law and the empirical law of ``obs``, over std(obs); with ``log``
    the distance of the laws of log λ over std(log λ) (λ > 0 only: a zero atom is the linear distance's job). The
    log distance bounds the error of the mean log, |E log λ̂ − E log λ| ≤ W₁(log λ̂, log λ), without the chance
    cancellations of comparing the mean logs themselves."""
    obs = np.sort(np.asarray(obs, dtype=np.float64))
    q = (np.arange(obs.size) + 0.5) / obs.size
    qs = _quantile_fn(pred)(q)
    if not log:
        return float(np.mean(np.abs(qs - obs)) / max(np.std(obs), 1e-300))
    tol = 1e-9 * max(float(obs[-1]), 1e-300)
    keep = (obs > tol) & (qs > tol)
    if keep.sum() < 2:
        return 0.0
    lo, lq = np.log(obs[keep]), np.log(qs[keep])
    return float(np.mean(np.abs(lq - lo)) / max(float(np.std(lo)), 1e-12))


def _valid(dec: Decompressed, positive: bool, negative_mass: float = 0.0) -> bool:
    """A density: some bulk, finite, mass within 5% of 1 and, for a positive spectrum, at most ``negative_mass``
    of it below 0 (the nested checks tolerate 1%: a curve fitted to a k×k block may carry a tiny spurious bulk
    below 0 that the W₁ scores then charge; the law used for the answer tolerates none)."""
    if not dec.intervals or not np.all(np.isfinite(dec.weights)):
        return False
    if abs(dec.mass - 1.0) > 0.05:
        return False
    if positive and dec.intervals[0][0] <= 0:
        below = float(np.sum(dec.weights[dec.nodes <= 0])) + sum(a.weight for a in dec.atoms if a.location < 0)
        return below <= negative_mass
    return True


def select_curve(eigs, n0: int, *, t_target: float = 0.0, nested: dict | None = None, scale: str = "auto",
                 candidates: Sequence[tuple[int, int]] = AUTO_DEGREES, atoms: bool = True,
                 parsimony: float = 1.25) -> tuple[SpectralCurve, list[dict]]:
    """Fit every candidate degree and keep the simplest of the best.

    Score of a candidate: with ``nested`` spectra ({k: eigenvalues of k×k leading blocks of the same submatrices,
    k < n₀}), the error of decompressing each of them to n₀ against the observed n₀ spectrum (W₁ over the spread,
    plus on a positive spectrum W₁ of log λ over its spread, which bounds the error of the mean log and sees a narrow
    low bulk that the linear distance does not): the task itself, on known data. Without them, the same distances
    of the fitted law at n₀. A candidate whose law at n₀ or at ``t_target`` is not a valid density (no
    bulk, a mass off by > 5 %, a positive spectrum decompressed below 0) is rejected. Among the rest, the fewest
    coefficients whose score is within ``parsimony`` × the best.
    """
    lam = check_spectrum(eigs)
    positive = bool(np.min(lam) >= -100.0 * n0 * np.finfo(np.float64).eps * np.max(np.abs(lam)))
    rows: list[dict[str, Any]] = []
    fits: list[SpectralCurve | None] = []
    for dz, dm in candidates:
        row: dict[str, Any] = {"degrees": (dz, dm), "score": math.inf, "valid": False}
        try:
            cur = fit_curve(lam, n0, degrees=(dz, dm), scale=scale, atoms=atoms)
            dt = cur.decompress(t=t_target, nodes=128)
            ok = _valid(dt, positive and not any(a.location <= 0 for a in cur.atoms))
            d0 = cur.decompress(t=0.0, nodes=128) if ok and not nested else dt
            if ok and nested:
                errs = {}
                for k, ek in sorted(nested.items()):
                    try:
                        ck = fit_curve(ek, int(k), degrees=(dz, dm), scale=cur.scale_kind, atoms=atoms)
                        dk = ck.decompress(n0, nodes=128)
                    except (CurveFitError, SpectrumError, np.linalg.LinAlgError):
                        errs[int(k)] = math.inf
                        continue
                    if not _valid(dk, positive, negative_mass=0.01):
                        errs[int(k)] = math.inf
                        continue
                    errs[int(k)] = _w1(dk, lam) + (_w1(dk, lam, log=True) if positive else 0.0)
                # and the fit itself, at t = 0: a curve that cannot hold the structure seen at n₀ (two bulks) fails
                # here even where the smaller blocks do not show that structure yet
                d0 = cur.decompress(t=0.0, nodes=128)
                errs[int(n0)] = _w1(d0, lam) + (_w1(d0, lam, log=True) if positive else 0.0)
                row["checks"] = errs
                score = float(np.median(list(errs.values())))     # rescored below, relative to the best
            elif ok:
                score = _w1(d0, lam) + (_w1(d0, lam, log=True) if positive else 0.0)
            else:
                score = math.inf
            row.update(score=score, valid=bool(ok and math.isfinite(score)), residual=cur.residual)
            fits.append(cur)
        except (CurveFitError, SpectrumError, np.linalg.LinAlgError) as e:
            row["error"] = str(e)
            fits.append(None)
        rows.append(row)
    if nested:
        # each check relative to the best candidate at that block size, and the median over the checks: a block too
        # small to show the structure (a bulk that appears only above its size) leaves every candidate far off, or
        # some without a valid density, and must not outvote the other checks
        best_k: dict[int, float] = {}
        for r in rows:
            for k, err in r.get("checks", {}).items():
                best_k[k] = min(best_k.get(k, math.inf), err)
        for r in rows:
            if r["valid"] and r.get("checks"):
                rel = [err / max(best_k[k], 1e-12) for k, err in r["checks"].items() if math.isfinite(best_k[k])]
                r["score"] = float(np.median(rel)) if rel else math.inf
                r["valid"] = math.isfinite(r["score"])
    good = [i for i, r in enumerate(rows) if r["valid"]]
    if not good:
        raise CurveFitError("no candidate degrees give a valid decompressed density ("
                            + "; ".join(f"{r['degrees']}: {r.get('error', 'invalid')}" for r in rows)
                            + "): give degrees=(d_z, d_m) explicitly, try scale='log', or use a larger n0")
    best = min(rows[i]["score"] for i in good)
    cands = [i for i in good if rows[i]["score"] <= parsimony * best + 1e-12]
    pick = min(cands, key=lambda i: ((rows[i]["degrees"][0] + 1) * (rows[i]["degrees"][1] + 1), rows[i]["score"]))
    for i, r in enumerate(rows):
        r["chosen"] = i == pick
    chosen = fits[pick]
    assert chosen is not None       # a valid candidate has its fit
    return chosen, rows


def marchenko_pastur_density(x, ratio: float, var: float = 1.0) -> np.ndarray:
    """Density of the bulk of Marchenko–Pastur(ratio) with variance ``var`` (eigenvalues of XᵀX/m, ratio = n/m)."""
    x = np.asarray(x, dtype=np.float64)
    a, b = var * (1 - math.sqrt(ratio)) ** 2, var * (1 + math.sqrt(ratio)) ** 2
    inside = (x > a) & (x < b)
    out = np.zeros_like(x)
    xi = x[inside]
    out[inside] = np.sqrt((b - xi) * (xi - a)) / (2 * np.pi * var * ratio * xi)
    return out


def marchenko_pastur_mean_log(ratio: float, var: float = 1.0) -> float:
    """∫ log x dMP(ratio) for ratio < 1: (ratio − 1)/ratio·log(1 − ratio) − 1 + log var."""
    if not 0 < ratio < 1:
        raise InputError("the mean log of Marchenko-Pastur is finite only for 0 < ratio < 1")
    return (ratio - 1) / ratio * math.log1p(-ratio) - 1.0 + math.log(var)
