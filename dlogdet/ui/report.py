"""Plots of a run and ``dlogdet report RESULT.json -o PATH``: what a person would rather look at than read.

* :func:`plot_extrapolation` — ℓ_k of the subsamples, the curve that gave the estimate out to n (and the other
  family's, lighter) and the estimate with its band (``method="extrapolate"``); :func:`plot_leading_logdets` — ℓ_k of an exact run (its cumulative
  log-pivots, when the JSON holds them);
* :func:`plot_spectra` — spectral densities: a submatrix spectrum, a decompressed law, an exact spectrum, the
  leading eigenvalues of a randomized Nyström approximation;
* :func:`plot_progress` — panels factored over time (and the fraction of the flops they are);
* :func:`plot_memory` — each worker's tracked bytes over time against the budget, and its RSS growth;
* :func:`save_extrapolation_plot`, :func:`save_decompression_plot` — one plot of a result to a file (what
  ``--plot PATH`` of the commands writes).

:func:`render` writes those that a result holds to one self-contained HTML file (PNG images embedded, a table of
the result) or to one PNG. Matplotlib is imported when a plot is drawn, with the Agg backend when none was
chosen (no display needed), so that ``import dlogdet`` never pays for it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..core.errors import InputError
from ..engine.schedule import panel_work_fraction
from ..linalg.scalinglaw import evaluate

MIB = 2.0 ** 20
# Points kept per ℓ_k curve in a result's JSON (log-spaced in k): enough for a smooth plot on a log axis, small
# enough that the JSON of a 4-subsample run stays ~10 KB.
CURVE_POINTS = 200


def _pyplot():
    import sys

    import matplotlib

    # Agg unless a backend was chosen: by pyplot already imported, MPLBACKEND, or a Jupyter kernel (inline plots)
    if not ("matplotlib.pyplot" in sys.modules or os.environ.get("MPLBACKEND") or "ipykernel" in sys.modules):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def compact_curves(ell, points: int = CURVE_POINTS) -> dict[str, list]:
    """ℓ_k curves (subsamples × n_sub) at ≤ ``points`` log-spaced k, for a small JSON: ``{"k": [...], "ell":
    [[...], ...]}`` (k from 1; the last k always kept)."""
    ell = np.atleast_2d(np.asarray(ell, dtype=np.float64))
    ns = ell.shape[1]
    k = np.unique(np.geomspace(1, ns, min(points, ns)).round().astype(int))
    return {"k": k.tolist(), "ell": ell[:, k - 1].tolist()}


def _curves(ell) -> tuple[np.ndarray, np.ndarray]:
    """(k, curves) from full ℓ_k curves or from :func:`compact_curves`."""
    if isinstance(ell, Mapping):
        return np.asarray(ell["k"], dtype=np.float64), np.atleast_2d(np.asarray(ell["ell"], dtype=np.float64))
    curves = np.atleast_2d(np.asarray(ell, dtype=np.float64))
    return np.arange(1, curves.shape[1] + 1, dtype=np.float64), curves


def as_dict(result) -> dict[str, Any]:
    """A result's JSON form: a :class:`~dlogdet.LogdetResult`, a dict of its JSON, or the JSON of ``dlogdet demo``
    (whose result sits under ``"dlogdet"``)."""
    if hasattr(result, "to_dict"):
        d = result.to_dict()
        if getattr(result, "log_pivots", None) is not None and result.n <= 200_000:
            d["log_pivots"] = np.asarray(result.log_pivots).tolist()
        ell = (result.diagnostics or {}).get("ell")
        if ell is not None:
            d["diagnostics"]["ell"] = compact_curves(ell)
        return d
    if not isinstance(result, Mapping):
        raise InputError(f"a report needs a LogdetResult or the JSON of one, got {type(result).__name__}")
    if "logdet" not in result and isinstance(result.get("dlogdet"), Mapping):
        return dict(result["dlogdet"])
    if "logdet" not in result or "method" not in result:
        raise InputError("this JSON is not a dlogdet result: it has no 'logdet' and 'method' (give the JSON that "
                         "`dlogdet logdet ... --json` or `dlogdet extrapolate ... --json` printed)")
    return dict(result)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """A result JSON from a file (the one line ``--json`` printed; the last JSON line of a longer log is taken)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise InputError(f"cannot read the result file {os.fspath(path)!r}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
        for line in reversed(text.strip().splitlines()):
            try:
                data = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
        if data is None:
            raise InputError(f"{os.fspath(path)!r} holds no JSON: give the output of a dlogdet command run with "
                             "--json") from None
    return as_dict(data)


# -------------------------------------------------------------------------------------------------------- plots

def _ax(ax, figsize=(7, 4.2)):
    if ax is not None:
        return ax.figure, ax
    fig, ax = _pyplot().subplots(figsize=figsize)
    return fig, ax


def plot_extrapolation(result, ax=None):
    """ℓ_k of the subsamples, the curve that produced the estimate out to n_total, and the estimate with its
    ± 2·stderr band; the other family's curve lighter, for comparison.

    The curves are ``diagnostics["curves"]``: each family as the estimate reads it (increments raised to the floor,
    capped by the monotone bound), so the drawn curve ends at the estimate. Results saved before those curves were
    kept draw the scaling-law family ℓ(n) from its coefficients. ``result``: a LogdetResult of
    :func:`dlogdet.extrapolate` or its JSON. Returns the matplotlib Axes.
    """
    d = as_dict(result)
    dg = d["diagnostics"]
    missing = [k for k in ("ell", "coefficients", "window", "order", "band", "n_total") if k not in dg]
    if missing:
        raise InputError(f"this result has no extrapolation curve ({', '.join(missing)} missing): it is not from "
                         "method 'extrapolate', or its JSON was trimmed")
    fig, ax = _ax(ax)
    k, ell = _curves(dg["ell"])
    N = int(dg["n_total"])
    for i, c in enumerate(ell):
        ax.plot(k, c, color="0.6", lw=0.8, label="ℓ_k of the subsamples" if i == 0 else None)
    w0, w1 = dg["window"]
    used = dg.get("family", "scaling-law")
    labels = {"scaling-law": f"scaling law: window ({w0}, {w1}), order (q, r) = {tuple(dg['order'])}",
              "boxcox": f"Box-Cox probe: gamma {dg.get('boxcox', {}).get('gamma', float('nan')):.2f}"}
    curves = dg.get("curves") or {}
    if curves:
        n = np.asarray(curves["n"], dtype=np.float64)
        for fam in sorted(labels, key=lambda f: f == used):          # the one used last, on top
            values = curves.get(fam)
            if values is None:
                continue
            y = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            mine = fam == used
            ax.plot(n, y, color="C0" if mine else "C1", lw=1.6 if mine else 1.0, ls="-" if mine else "--",
                    alpha=1.0 if mine else 0.5, label=labels[fam] + (" (the estimate)" if mine else ""))
    else:
        grid = np.unique(np.geomspace(max(w0, 1), N, 400).round())
        ax.plot(grid, evaluate(dg["coefficients"], grid), color="C0", label=labels["scaling-law"])
    ax.axvspan(w0, w1, color="C0", alpha=0.08)
    lo, hi = dg["band"]
    est = float(d["logdet"])
    stderr = d.get("stderr")
    ax.errorbar([N], [est], yerr=[[est - lo], [hi - est]], fmt="o", color="C3", capsize=4,
                label=f"estimate at n = {N}: {est:.6g}" + (f" ± {2 * stderr:.3g} (2 stderr)" if stderr else ""))
    ax.set_xscale("log")
    ax.set_xlabel("points n")
    ax.set_ylabel("log det of the first n points")
    subs = dg.get("subsamples")
    ax.set_title(f"scaling-law extrapolation ({d.get('status', 'ok')})"
                 + (f", {subs} x {dg.get('n_sub')} points" if subs else ""), fontsize=10)
    ax.legend(fontsize=8)
    return ax


def plot_leading_logdets(result, ax=None):
    """ℓ_k = log|det| of the leading k×k submatrices of an exact run (cumulative log-pivots; tile boundaries
    marked)."""
    d = as_dict(result)
    if d.get("log_pivots") is None:
        raise InputError("this result holds no log-pivots (an exact run's JSON has them with pivots=True)")
    lp = np.asarray(d["log_pivots"], dtype=np.float64)
    fig, ax = _ax(ax)
    k = np.arange(1, lp.size + 1)
    ax.plot(k, np.cumsum(lp), color="C0", label="ℓ_k (cumulative log-pivots)")
    b = (d.get("diagnostics") or {}).get("block_size")
    if b:
        for e in range(int(b), lp.size, int(b)):
            ax.axvline(e, color="0.85", lw=0.6, zorder=0)
    ax.set_xlabel("k")
    ax.set_ylabel("log|det| of the leading k×k block")
    ax.set_title(f"exact: log det = {d['logdet']:.10g} (n = {d['n']})")
    ax.legend(fontsize=8)
    return ax


def _density_pair(dec, lo: float, hi: float):
    """(x, ρ(x)) from a pair, a dict {"x", "density"} or an object with ``density(x)`` (and ``intervals``)."""
    if isinstance(dec, Mapping):
        return np.asarray(dec["x"], float), np.asarray(dec.get("density", dec.get("y")), float)
    if isinstance(dec, (tuple, list)) and len(dec) == 2:
        return np.asarray(dec[0], float), np.asarray(dec[1], float)
    intervals = getattr(dec, "intervals", None) or [(lo, hi)]
    x = np.concatenate([np.linspace(a, b, 300) for a, b in intervals])
    return x, np.asarray(dec.density(x), float)


def plot_spectra(ax=None, *, submatrix=None, decompressed=None, exact=None, nystrom=None, log_scale: bool | None = None,
                 bins: int = 60, labels: Mapping[str, str] | None = None):
    """Spectral densities on one axis: histograms of a submatrix spectrum and of an exact spectrum, a decompressed
    density (a curve), and the leading Nyström eigenvalues (ticks on the axis).

    Parameters
    ----------
    submatrix, exact : array of eigenvalues, optional
        Eigenvalues (any shape; pooled).
    decompressed : optional
        The predicted law of the whole matrix: ``(x, density)``, ``{"x": ..., "density": ...}`` or an object with
        ``density(x)`` and ``intervals`` (:class:`dlogdet.linalg.freecurve.Decompressed`).
    nystrom : array, optional
        Leading eigenvalues of a Nyström approximation (``diagnostics["leading_eigenvalues"]``).
    log_scale : bool, optional
        Eigenvalues on a log axis (densities of log λ); default: when the spectra span more than 3 decades.
    labels : dict, optional
        Legend labels for the keys ``submatrix``, ``decompressed``, ``exact``, ``nystrom``.
    """
    labels = {"submatrix": "submatrix", "decompressed": "decompressed", "exact": "exact",
              "nystrom": "Nyström leading eigenvalues", **(labels or {})}
    arrays = {k: np.ravel(np.asarray(v, dtype=np.float64)) for k, v in
              (("submatrix", submatrix), ("exact", exact), ("nystrom", nystrom)) if v is not None}
    if not arrays and decompressed is None:
        raise InputError("plot_spectra needs at least one of submatrix=, decompressed=, exact=, nystrom=")
    pos = np.concatenate([a[a > 0] for a in arrays.values()]) if arrays else np.array([1.0])
    lo, hi = (float(pos.min()), float(pos.max())) if pos.size else (1e-12, 1.0)
    if log_scale is None:
        log_scale = pos.size > 0 and hi / max(lo, 1e-300) > 1e3
    fig, ax = _ax(ax)
    edges = np.geomspace(lo, hi, bins + 1) if log_scale else np.linspace(min(lo, 0.0), hi, bins + 1)
    for key, color in (("exact", "0.5"), ("submatrix", "C0")):
        if key in arrays:
            a = arrays[key]
            a = a[a > 0] if log_scale else a
            ax.hist(a, bins=edges, density=True, histtype="stepfilled" if key == "exact" else "step",
                    alpha=0.35 if key == "exact" else 1.0, color=color, lw=1.4,
                    label=f"{labels[key]} ({a.size} eigenvalues)")
    if decompressed is not None:
        x, rho = _density_pair(decompressed, lo, hi)
        ax.plot(x, rho, color="C3", lw=1.6, label=labels["decompressed"])
    if "nystrom" in arrays:
        a = arrays["nystrom"]
        ymax = ax.get_ylim()[1]
        ax.vlines(a, 0, 0.06 * ymax, color="C2", lw=0.8, label=f"{labels['nystrom']} ({a.size})")
    if log_scale:
        ax.set_xscale("log")
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density")
    ax.set_title("spectral densities")
    ax.legend(fontsize=8)
    return ax


def plot_progress(result, ax=None):
    """Panels factored over time (steps), and the fraction of the flops done (right axis)."""
    d = as_dict(result)
    tl = (d.get("diagnostics") or {}).get("timeline") or {}
    rows = tl.get("panels")
    if not rows:
        raise InputError("this result has no progress timeline (diagnostics['timeline']['panels']): only exact "
                         "runs record one")
    t = np.array([r[0] for r in rows], float)
    done = np.array([r[1] for r in rows], float)
    nt = int(d["diagnostics"].get("n_panels") or done.max())
    fig, ax = _ax(ax)
    ax.step(t, done, where="post", color="C0", label="panels done")
    ax.set_xlabel("seconds since the graph was submitted")
    ax.set_ylabel(f"panels done (of {nt})")
    ax.set_ylim(0, nt * 1.02)
    ax2 = ax.twinx()
    ax2.step(t, [100 * panel_work_fraction(nt, int(v)) for v in done], where="post", color="C1", ls="--",
             label="flops done (%)")
    ax2.set_ylim(0, 102)
    ax2.set_ylabel("flops done (%)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower right")
    ax.set_title(f"tile factorization: {nt} panels in {d['diagnostics'].get('wall_time', t[-1]):.3g} s")
    return ax


def plot_memory(result, ax=None):
    """Each worker's tracked bytes over time against the budget (solid), and its RSS growth since the run
    started (dashed: what the operating system saw, sampled at heartbeats)."""
    d = as_dict(result)
    dg = d.get("diagnostics") or {}
    tl = dg.get("timeline") or {}
    mem = tl.get("memory")
    if not mem:
        raise InputError("this result has no memory timeline (diagnostics['timeline']['memory'])")
    cols = tl.get("memory_columns", ["t", "rss_bytes", "tracked_bytes"])
    ir, it = cols.index("rss_bytes"), cols.index("tracked_bytes")
    start = dg.get("rss_at_start_bytes_per_worker") or {}
    fig, ax = _ax(ax)
    for c, (w, rows) in enumerate(sorted(mem.items())):
        t = np.array([r[0] for r in rows], float)
        tracked = [r[it] for r in rows]
        if any(v is not None for v in tracked):
            ax.plot(t, [np.nan if v is None else v / MIB for v in tracked], color=f"C{c}",
                    label=f"worker {w}: tracked")
        rss = np.array([np.nan if r[ir] is None else r[ir] for r in rows], float)
        base = start.get(w, np.nanmin(rss) if np.isfinite(rss).any() else 0.0)
        ax.plot(t, (rss - base) / MIB, color=f"C{c}", ls="--", lw=0.9, label=f"worker {w}: RSS growth")
    budget = dg.get("budget")
    if budget:
        ax.axhline(budget / MIB, color="C3", lw=1.5, label=f"budget {budget / MIB:.0f} MiB per worker")
    ax.set_xlabel("seconds since the graph was submitted")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.set_title(f"memory per worker ({dg.get('mode', 'memory')} mode)")
    ax.legend(fontsize=7, ncol=2, loc="best")
    return ax


def save_figure(draw, path: str | os.PathLike) -> None:
    """Draw on the Axes of a new figure with ``draw(ax)`` and save it to ``path`` (its suffix picks the format)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        draw(ax)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def save_extrapolation_plot(result, path: str | os.PathLike) -> None:
    """:func:`plot_extrapolation` of ``result`` saved to ``path`` (.png, .svg)."""
    save_figure(lambda ax: plot_extrapolation(result, ax), path)


def save_decompression(curve, sizes: Sequence[int], path: str | os.PathLike) -> None:
    """The submatrix histogram, the fitted density at n₀ and the densities decompressed to ``sizes`` (those above
    n₀) of a :class:`dlogdet.linalg.freecurve.SpectralCurve`, saved to ``path`` (.png, .svg, .pdf)."""
    from ..linalg.freecurve import plot_decompression

    fig = plot_decompression(curve, sizes=[int(n) for n in sizes if n > curve.n0], path=path)
    _pyplot().close(fig)


def save_decompression_plot(result, path: str | os.PathLike) -> None:
    """:func:`save_decompression` of a ``method="freedecomp"`` result: its curve refitted from the submatrix
    eigenvalues it kept, at its degrees and scale, decompressed to its size."""
    from ..linalg.freecurve import fit_curve

    dg = as_dict(result)["diagnostics"] if not hasattr(result, "diagnostics") else result.diagnostics
    if "submatrix_eigenvalues" not in dg:
        raise InputError("this result holds no submatrix eigenvalues: only method 'freedecomp' results have them")
    curve = fit_curve(np.ravel(np.asarray(dg["submatrix_eigenvalues"], dtype=np.float64)), int(dg["n0"]),
                      degrees=tuple(dg["degrees"]), scale=dg["scale"])
    save_decompression(curve, [int(dg["n_total"])], path)


# -------------------------------------------------------------------------------------------------------- report

def panels(result) -> list[tuple[str, Any]]:
    """The plots a result supports, as (title, function drawing on an Axes)."""
    d = as_dict(result)
    dg = d.get("diagnostics") or {}
    out: list[tuple[str, Any]] = []
    if "ell" in dg and "coefficients" in dg:
        out.append(("scaling-law extrapolation", lambda ax: plot_extrapolation(d, ax)))
    if d.get("log_pivots") is not None:
        out.append(("leading log-determinants", lambda ax: plot_leading_logdets(d, ax)))
    spectra = {}
    if dg.get("submatrix_eigenvalues") is not None:
        spectra["submatrix"] = dg["submatrix_eigenvalues"]
    if dg.get("leading_eigenvalues") is not None:
        spectra["nystrom"] = dg["leading_eigenvalues"]
    dens = dg.get("density")
    if isinstance(dens, Mapping) and "x" in dens:
        spectra["decompressed"] = dens
    if spectra:
        out.append(("spectra", lambda ax: plot_spectra(ax, **spectra)))
    tl = dg.get("timeline") or {}
    if tl.get("panels"):
        out.append(("factorization progress", lambda ax: plot_progress(d, ax)))
    if tl.get("memory"):
        out.append(("memory per worker", lambda ax: plot_memory(d, ax)))
    return out


def _summary_rows(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    dg = d.get("diagnostics") or {}
    rows = [("log det", repr(d["logdet"])), ("sign", str(d.get("sign"))), ("method", str(d["method"])),
            ("n", str(d.get("n"))), ("status", str(d.get("status")))]
    if d.get("stderr") is not None:
        rows.append(("stderr", f"{d['stderr']:.6g}"))
    for lo_hi in ("lower", "upper"):
        if d.get(lo_hi) is not None:
            rows.append((lo_hi, repr(d[lo_hi])))
    for key in ("wall_time", "block_size", "n_panels", "n_tasks", "workers", "scheduler", "mode", "budget",
                "peak_tracked_bytes_per_worker"):
        if dg.get(key) is not None:
            v = dg[key]
            rows.append((key.replace("_", " "), f"{v:.4g}" if isinstance(v, float) else str(v)))
    return rows


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def render(result, path: str | os.PathLike, *, title: str | None = None) -> list[str]:
    """Write the plots of ``result`` (a LogdetResult, its JSON as a dict, or a path to that JSON) to ``path``.

    ``.html``: one self-contained page (images embedded as PNG, a table of the result); ``.png``: the plots in
    one image. Returns the titles of the plots drawn. Raises :class:`InputError` for another suffix or a result
    with nothing to plot.
    """
    path = os.fspath(path)
    d = load(result) if isinstance(result, (str, os.PathLike)) else as_dict(result)
    kind = os.path.splitext(path)[1].lower()
    if kind not in (".html", ".htm", ".png"):
        raise InputError(f"the report is written as .html or .png, got {path!r}")
    todo = panels(d)
    if not todo:
        raise InputError(f"a result of method {d['method']!r} without a timeline, curve or spectrum has nothing to "
                         "plot (exact runs record a timeline; extrapolate a curve; nystrom and freedecomp spectra)")
    plt = _pyplot()
    title = title or f"dlogdet report: {d['method']}, n = {d.get('n')}"
    if kind == ".png":
        cols = 1 if len(todo) == 1 else 2
        rows = math.ceil(len(todo) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.4 * rows), squeeze=False)
        for (name, draw), ax in zip(todo, axes.ravel()):
            draw(ax)
        for ax in axes.ravel()[len(todo):]:
            ax.set_visible(False)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return [name for name, _ in todo]
    parts = []
    for name, draw in todo:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        draw(ax)
        fig.tight_layout()
        img = base64.b64encode(_png(fig)).decode("ascii")
        plt.close(fig)
        parts.append(f"<figure><figcaption>{html.escape(name)}</figcaption>"
                     f"<img alt='{html.escape(name)}' src='data:image/png;base64,{img}'></figure>")
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _summary_rows(d))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:64em}} table{{border-collapse:collapse}}
th,td{{text-align:left;padding:2px 12px;border-bottom:1px solid #ddd;font-size:90%}}
figure{{margin:1.5em 0}} figcaption{{font-weight:bold;margin-bottom:.3em}} img{{max-width:100%}}</style>
</head><body><h1>{html.escape(title)}</h1><table>{table}</table>
{''.join(parts)}
</body></html>
"""
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return [name for name, _ in todo]


def figure_grid(result, names: Sequence[str] | None = None):
    """The plots of :func:`panels` in one matplotlib Figure (for a notebook), optionally only those named."""
    todo = [(n, f) for n, f in panels(result) if names is None or n in names]
    if not todo:
        raise InputError("nothing to plot for this result")
    plt = _pyplot()
    cols = 1 if len(todo) == 1 else 2
    fig, axes = plt.subplots(math.ceil(len(todo) / cols), cols, figsize=(7 * cols, 4.2 * math.ceil(len(todo) / cols)),
                             squeeze=False)
    for (name, draw), ax in zip(todo, axes.ravel()):
        draw(ax)
    for ax in axes.ravel()[len(todo):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
