"""Free decompression (issue 7): accuracy and time against exact references, the scaling-law extrapolation and
freealg (optional ``bench`` extra) on the same submatrix spectra.

Cases: Marchenko–Pastur (Wishart XᵀX/m, n = 8000, m = 20,000, from n0 = 1000), a matrix with a zero atom, a two-bulk
spectrum (sum of two Wisharts at different scales) and an MLP NTK (traced, MNIST-1D, n = 8000 from n0 = 1000).
Exact references (log-dets and eigenvalues of the n×n matrices) are cached in ``$DLOGDET_BENCH_CACHE`` (default: the
system's temporary directory).

    python benchmarks/freedecomp.py [--cases mp,atom,twobulk,ntk] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dlogdet  # noqa: E402
from dlogdet.linalg import freecurve as F  # noqa: E402
from tests.test_freedecomp import WishartSource  # noqa: E402

CACHE = Path(os.environ.get("DLOGDET_BENCH_CACHE", tempfile.gettempdir())) / "dlogdet-bench-freedecomp"


def cached(name, fn):
    CACHE.mkdir(parents=True, exist_ok=True)
    p = CACHE / f"{name}.npy"
    if p.exists():
        return np.load(p)
    v = np.asarray(fn())
    np.save(p, v)
    return v


def tv(density_fn, ref_fn, lo, hi, k=6000):
    x = np.linspace(lo, hi, k)
    return 0.5 * np.trapezoid(np.abs(density_fn(x) - ref_fn(x)), x)


def binned_tv(cdf_fn, eigs, bins=100):
    """½Σ|P̂(bin) − P(bin)| over ``bins`` bins (log-spaced over the positive eigenvalues, the first open below) between
    a predicted law (its CDF) and the exact eigenvalues: a total variation that counts atoms and bulks alike."""
    eigs = np.sort(np.asarray(eigs))
    pos = eigs[eigs > 1e-9 * eigs[-1]]
    edges = np.geomspace(pos[0] / 1.5, pos[-1] * 1.5, bins + 1)      # a first bin (-inf, ...] holds a zero atom
    edges = np.concatenate([[-np.inf], edges[1:-1], [np.inf]])
    ref = np.diff(np.searchsorted(eigs, edges, side="right")) / eigs.size
    pred = np.diff(np.concatenate([[0.0], cdf_fn(edges[1:-1]), [1.0]]))
    return 0.5 * float(np.sum(np.abs(pred - ref)))


def ours_cdf(dec):
    return lambda x: dec.cdf(x) / max(dec.mass, 1e-300)


def freealg_run(eigs, n0, n, degrees, shift, hi, log=False, exact=None):
    """freealg's AlgebraicForm on the same pooled eigenvalues and degrees: its decompressed density at n on a grid
    over (0, 1.5·hi] and its own atoms (``return_atoms``; its ``slogdet`` fails in 0.12.2 without a grid), log-det
    = n·(∫log(x + shift)ρ(x)dx + Σ w·log(a + shift)) by the trapezoid rule, the binned TV against ``exact``."""
    try:
        np.trapz = np.trapezoid  # freealg 0.12.2 calls numpy.trapz, removed in numpy 2.4
        import freealg
    except Exception as e:  # optional peer
        return {"error": f"freealg not importable: {e}"}
    out = {}
    t0 = time.perf_counter()
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            af = freealg.AlgebraicForm(np.asarray(eigs), n=n0, log=log)
            af.fit(deg_m=degrees[1], deg_z=degrees[0])
            x = np.concatenate([np.geomspace(1e-6 * hi, 1e-2 * hi, 400, endpoint=False),
                                np.linspace(1e-2 * hi, 1.5 * hi, 8000)])
            rho, atoms = af.decompress(n, x=x, return_atoms=True)
        rho = np.real(np.asarray(rho, dtype=complex)).ravel()
        rho = np.where(np.isfinite(rho), np.maximum(rho, 0.0), 0.0)
        atoms = [(float(a), float(np.ravel(w)[0])) for a, w in atoms]
        mass = float(np.trapezoid(rho, x))
        ld = float(n * np.trapezoid(np.log(x + shift) * rho, x))
        for a, w in atoms:
            ld += n * w * (math.log(a + shift) if a + shift > 0 else -math.inf)
        out.update(logdet=ld, mass=mass + sum(w for _, w in atoms), atoms=atoms, time=time.perf_counter() - t0)
        if exact is not None:
            cum = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(x))])

            def cdf(v):
                c = np.interp(v, x, cum, left=0.0, right=cum[-1])
                return (c + sum(w * (v >= a) for a, w in atoms)) / max(out["mass"], 1e-300)

            out["tv"] = binned_tv(cdf, exact)
        out["density"] = (x, rho)
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"[:200]
        out["time"] = time.perf_counter() - t0
    return out


ROWS = []


def report(name, n, ref, r, t_ours, dec, exact, peers, extra=""):
    """One line per method (ours, freealg with linear and log contours) and a table row for the summary."""
    err = (r.logdet - ref) / abs(ref)
    d = r.diagnostics
    tv_ours = binned_tv(ours_cdf(dec), exact) if exact is not None else math.nan
    atoms = [(round(a["location"], 4), round(a["weight"], 4)) for a in d["atoms_n"]]
    bulks = [tuple(round(float(v), 3) for v in iv) for iv in d["support"]]
    print(f"{name}\n  exact log-det {ref:.4f}", flush=True)
    print(f"  freedecomp   {r.logdet:12.4f}  err {100 * err:+8.3f}%  stderr {r.stderr:.3g} "
          f"({abs(r.logdet - ref) / r.stderr:.2f} sigma)  TV(100 bins) {100 * tv_ours:.2f}%  {t_ours:6.1f} s  "
          f"degrees {d['degrees']} {d['scale']}  bulks {bulks}  atoms {atoms}", flush=True)
    row = {"case": name, "err": err, "stderr_rel": r.stderr / abs(ref), "tv": tv_ours, "time": t_ours, "peers": {}}
    for label, peer in peers.items():
        if "logdet" in peer:
            perr = (peer["logdet"] - ref) / abs(peer["logdet"] if ref == 0 else ref)
            pa = [(round(a, 4), round(w, 4)) for a, w in peer["atoms"]]
            print(f"  {label:<12} {peer['logdet']:12.4f}  err {100 * perr:+8.3f}%  mass {peer['mass']:.3f}  "
                  f"TV(100 bins) {100 * peer.get('tv', math.nan):.2f}%  {peer['time']:6.1f} s  atoms {pa}",
                  flush=True)
            row["peers"][label] = {"err": perr, "tv": peer.get("tv", math.nan), "time": peer["time"]}
        else:
            print(f"  {label:<12} failed: {peer.get('error')}", flush=True)
            row["peers"][label] = {"err": math.nan, "tv": math.nan, "time": peer.get("time", math.nan)}
    if extra:
        print(extra, flush=True)
    ROWS.append(row)


def peers_on(eigs, n0, n, degrees, shift, hi, exact):
    out = {"freealg": freealg_run(eigs, n0, n, degrees, shift, hi, exact=exact)}
    if np.min(eigs) > 0:
        out["freealg log"] = freealg_run(eigs, n0, n, degrees, shift, hi, log=True, exact=exact)
    return out


def run_ours(src, n0, shift):
    t0 = time.perf_counter()
    r = dlogdet.logdet(src, method="freedecomp", n0=n0, seed=0, d=shift)
    t = time.perf_counter() - t0
    eigs = np.asarray(r.diagnostics["submatrix_eigenvalues"])
    cur = F.fit_curve(eigs.ravel(), n0, degrees=r.diagnostics["degrees"], scale=r.diagnostics["scale"])
    return r, t, eigs, cur


def case_mp(quick):
    n, m, n0 = (2000, 5000, 500) if quick else (8000, 20000, 1000)
    src = WishartSource(n, m, seed=1)
    exact = cached(f"mp_{n}_{m}_eigenvalues", lambda: np.linalg.eigvalsh(src.dense()))
    ref = float(np.sum(np.log(exact)))
    r, t, eigs, cur = run_ours(src, n0, 0.0)
    dec = cur.decompress(n)
    ratio = n / m
    x = np.linspace(0.0, 3.2, 4000)
    tv_mp = tv(dec.density, lambda v: F.marchenko_pastur_density(v, ratio), 0.0, 3.2)
    peers = peers_on(eigs.ravel(), n0, n, r.diagnostics["degrees"], 0.0, dec.intervals[-1][1], exact)
    extra = f"  TV against the exact law MP({ratio}): freedecomp {100 * tv_mp:.3f}%"
    for label, peer in peers.items():
        if "density" in peer:
            xp, rho = peer["density"]
            tvp = 0.5 * np.trapezoid(np.abs(np.interp(x, xp, rho) - F.marchenko_pastur_density(x, ratio)), x)
            extra += f", {label} {100 * tvp:.3f}%"
    report(f"Marchenko-Pastur {n0}->{n}", n, ref, r, t, dec, exact, peers, extra)


def case_atom(quick):
    n, rank, n0, shift = 2000, 300, 500, 0.1
    rng = np.random.default_rng(1)
    X = rng.standard_normal((rank, n))
    A = X.T @ X / rank
    ev = np.linalg.eigvalsh(A)
    ref = float(np.sum(np.log(ev + shift)))
    r, t, eigs, cur = run_ours(A, n0, shift)
    dec = cur.decompress(n)
    peers = peers_on(eigs.ravel(), n0, n, r.diagnostics["degrees"], shift, ev[-1], ev)
    at = r.diagnostics["atoms"]
    extra = (f"  zero atom: n0 weight {at[0]['weight_n0']:.4f} -> n weight {at[0]['weight_n']:.4f} "
             f"(exact {np.mean(ev < 1e-8):.4f}); exact bulk [{ev[ev > 1e-8].min():.3f}, {ev.max():.3f}]")
    report(f"zero atom (rank {rank}) {n0}->{n}, d={shift}", n, ref, r, t, dec, ev, peers, extra)


def case_twobulk(quick):
    n, n0 = 2000, 500
    rng = np.random.default_rng(1)
    X1 = rng.standard_normal((2 * n, n))
    X2 = rng.standard_normal((250, n))
    A = X1.T @ X1 / (2 * n) + 10 * X2.T @ X2 / 250
    ev = np.linalg.eigvalsh(A)
    ref = float(np.sum(np.log(ev)))
    r, t, eigs, cur = run_ours(A, n0, 0.0)
    dec = cur.decompress(n)
    peers = peers_on(eigs.ravel(), n0, n, r.diagnostics["degrees"], 0.0, ev[-1], ev)
    g = int(np.argmax(np.diff(ev)))
    low = float(np.sum(dec.weights[dec.nodes < 0.5 * (ev[g] + ev[g + 1])]))
    extra = (f"  exact bulks [{ev[0]:.3f}, {ev[g]:.3f}] (weight {(g + 1) / n:.4f}) and [{ev[g + 1]:.3f}, "
             f"{ev[-1]:.3f}]; freedecomp's lower bulk weight {low:.4f}")
    report(f"two bulks {n0}->{n}", n, ref, r, t, dec, ev, peers, extra)


def case_ntk(quick):
    from dlogdet.ntk import NTKSource, load_dataset, mlp

    n, n0 = (2000, 500) if quick else (8000, 1000)
    x, _ = load_dataset("mnist1d", n, seed=0)
    f, params = mlp((x.shape[1], 256, 256, 10), seed=0)
    src = NTKSource(f, params, x, outputs="trace")
    shift = 1e-6
    exact = cached(f"ntk_mlp_{n}_eigenvalues", lambda: np.linalg.eigvalsh(np.asarray(src.dense())))
    ref = float(np.sum(np.log(exact + shift)))
    r, t, eigs, cur = run_ours(src, n0, shift)
    dec = cur.decompress(n)
    t0 = time.perf_counter()
    e = dlogdet.extrapolate(src, n_sub=n0, subsamples=4, seed=0, d=shift)
    te = time.perf_counter() - t0
    peers = peers_on(eigs.ravel(), n0, n, r.diagnostics["degrees"], shift, exact[-1], exact)
    err_e = (e.logdet - ref) / abs(ref)
    other = []
    for deg in ((1, 2), (1, 3), (1, 4), (1, 5)):
        ld = n * F.fit_curve(eigs.ravel(), n0, degrees=deg).decompress(n).mean_log(shift)
        other.append(f"{deg}: {100 * (ld - ref) / abs(ref):+.2f}%")
    srt = np.sort(exact)
    qs = [float(np.interp(q, ours_cdf(dec)(srt), srt)) for q in (0.01, 0.5, 0.99)]
    extra = (f"  extrapolate (same budget: 4 x n_sub = {n0}) {e.logdet:.4f}  err {100 * err_e:+.3f}%  stderr "
             f"{e.stderr:.3g} ({abs(e.logdet - ref) / e.stderr:.2f} sigma)  {te:.1f} s\n"
             f"  freedecomp at other degrees (same spectra): {', '.join(other)}\n"
             f"  quantiles 1/50/99%: exact {np.round(np.quantile(exact, [0.01, 0.5, 0.99]), 4).tolist()}, "
             f"freedecomp {np.round(qs, 4).tolist()}")
    report(f"MLP NTK (trace) {n0}->{n}, d=1e-6", n, ref, r, t, dec, exact, peers, extra)
    ROWS[-1]["peers"]["extrapolate"] = {"err": err_e, "tv": math.nan, "time": te}


def summary():
    if not ROWS:
        return
    labels = sorted({k for r in ROWS for k in r["peers"]})
    print("\n| case | freedecomp err | stderr | TV | time | " + " | ".join(f"{k} err | TV | time" for k in labels)
          + " |")
    print("|---" * (5 + 3 * len(labels)) + "|")
    for r in ROWS:
        cells = [r["case"], f"{100 * r['err']:+.3f}%", f"{100 * r['stderr_rel']:.2f}%", f"{100 * r['tv']:.2f}%",
                 f"{r['time']:.1f} s"]
        for k in labels:
            p = r["peers"].get(k)
            cells += ([f"{100 * p['err']:+.2f}%", f"{100 * p['tv']:.2f}%", f"{p['time']:.1f} s"] if p
                      else ["", "", ""])
        print("| " + " | ".join(cells) + " |")


CASES = {"mp": case_mp, "atom": case_atom, "twobulk": case_twobulk, "ntk": case_ntk}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--quick", action="store_true", help="smaller sizes (n = 2000)")
    args = ap.parse_args()
    for c in args.cases.split(","):
        try:
            CASES[c](args.quick)
        except Exception as ex:  # a benchmark reports every case it can
            print(f"{c}: failed: {type(ex).__name__}: {ex}", flush=True)
    summary()


if __name__ == "__main__":
    main()
