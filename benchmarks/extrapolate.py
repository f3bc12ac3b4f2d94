"""Scaling-law extrapolation (issue 5) against the exact engine and detkit's FitLogdet.

For each case: the exact log det of the full matrix by ``dlogdet.logdet`` (the reference, timed), then ``runs``
seeded extrapolations from random subsamples (``dlogdet.extrapolate``, one subsample and ``--subsamples``
subsamples), their relative errors, the coverage of their bands (estimate ± 2·stderr), and detkit's
``FitLogdet`` at its documented defaults (m=2, n=0, no regularization) fitted to the same ℓ_k curves (it reports no
band). Each run also reports the Box-Cox probe's estimate (what ``family="boxcox"`` returns: the same fit and
stderr, the probe's curve as the estimate). The last line gives the ratio exact time / extrapolation time at the largest n.

Cases (issue 5): Matérn-3/2 and Matérn-1/2 kernels on uniform points in 2 and 3 dimensions (jitter 1e-8),
n = 12,000 from n_s = 750 (target ≤ 3%); the traced NTK of a trained MLP (40-512-512-10) on MNIST-1D, n = 12,000
from 750 (≤ 2%); the full-output NTK of the same MLP, n = 1500 points (m = 15,000) from n_s = 300 (≤ 1%), whose
last layer runs out of new directions at 513 points, between the two (``family="auto"`` then takes the Box-Cox
probe); and, asked for by name, the same full-output NTK at widths 2048 and 4096, whose rank boundaries lie beyond
1500 points. Each case prints the estimate of ``family="auto"`` and of both families, with the same band.

    python benchmarks/extrapolate.py --quick            # smaller sizes, a couple of minutes
    python benchmarks/extrapolate.py                    # the issue's sizes (exact runs take minutes each)
    python benchmarks/extrapolate.py --cases matern32-2d,ntk-full
    python benchmarks/extrapolate.py --cases ntk-trace,ntk-full --runs 4 --limit 32   # + the family's model error
    python benchmarks/extrapolate.py --cases ntk-full,ntk-full-w2048,ntk-full-w4096 --limit 32   # width
    python benchmarks/extrapolate.py --cases ntk-full,ntk-full-w128 --size 1000,200 --runs 40   # rank boundaries
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

import dlogdet

numpy_trapz = getattr(np, "trapz", None)
if numpy_trapz is None:                       # detkit calls numpy.trapz, removed in numpy 2.4
    np.trapz = np.trapezoid


def kernel_case(kernel, d, lengthscale):
    def make(n, seed=0):
        x = np.random.default_rng(seed).uniform(size=(n, d))
        return dlogdet.KernelSource(x, kernel=kernel, lengthscale=lengthscale, jitter=1e-8), {}
    return make


def ntk_case(outputs, train_steps, width=512):
    def make(n, seed=0):
        from dlogdet import ntk

        x, y = ntk.load_dataset("mnist1d", n, seed=seed)
        f, params = ntk.mlp((x.shape[1], width, width, int(y.max()) + 1), seed=seed)
        if train_steps:
            params, _ = ntk.train(f, params, x, y, steps=train_steps, seed=seed)
        # a small jitter: the full-output NTK of 10 outputs on n points has rank up to P, but rounding can make it
        # numerically semi-definite; the same shift goes to the exact run and the subsamples
        return ntk.NTKSource(f, params, x, outputs=outputs), {"d": 1e-8}
    return make


#: name -> (factory, n, n_sub, target relative error, quick n, quick n_sub)
CASES = {
    "matern32-2d": (kernel_case("matern32", 2, 0.2), 12000, 750, 0.03, 4000, 250),
    "matern12-2d": (kernel_case("matern12", 2, 0.2), 12000, 750, 0.03, 4000, 250),
    "matern32-3d": (kernel_case("matern32", 3, 0.3), 12000, 750, 0.03, 4000, 250),
    "matern12-3d": (kernel_case("matern12", 3, 0.3), 12000, 750, 0.03, 4000, 250),
    "rbf-floor-2d": (kernel_case("rbf", 2, 0.1), 4000, 300, None, 2000, 200),
    "ntk-trace": (ntk_case("trace", 300), 12000, 750, 0.02, 3000, 200),
    "ntk-full": (ntk_case("full", 300), 1500, 300, 0.01, 500, 100),
    # the same at widths whose layers' rank boundaries (NTKSource.rank_boundaries) all lie beyond 1500 points
    "ntk-full-w2048": (ntk_case("full", 300, 2048), 1500, 300, 0.01, 500, 100),
    "ntk-full-w4096": (ntk_case("full", 300, 4096), 1500, 300, 0.01, 500, 100),
    # narrower: its first layer runs out of directions at 525 points, its last at 129
    "ntk-full-w128": (ntk_case("full", 300, 128), 1500, 300, 0.01, 500, 100),
}
#: cases run when --cases is not given (the wide NTKs take minutes each for the exact reference)
DEFAULT_CASES = [c for c in CASES if "-w" not in c]


def detkit_fit(ell, n_total):
    """detkit.FitLogdet at its documented defaults on one ℓ_k curve; None where detkit is missing."""
    try:
        from detkit import FitLogdet
    except ImportError:
        return None
    k = np.arange(1, ell.size + 1, dtype=float)
    fl = FitLogdet()
    fl.fit(k, ell)
    return float(fl.eval(np.array([float(n_total)]))[0])


def run_case(name, quick, runs, subsamples, limit=0, size=None):
    make, n, ns, target, qn, qns = CASES[name]
    if quick:
        n, ns = qn, qns
    if size:
        n, ns = size
    src, opts = make(n)
    rpp = src.rows_per_point
    t0 = time.perf_counter()
    exact = dlogdet.logdet(src, **opts)
    t_exact = time.perf_counter() - t0
    ref = exact.logdet
    rows = {}
    crossed = []
    for label, s in (("ours, 1 subsample", 1), (f"ours, {subsamples} subsamples", subsamples)):
        errs, hits, widths, times, dk = [], 0, [], [], []
        fam = {"scaling-law": [[], 0], "boxcox": [[], 0]}
        for seed in range(runs):
            t0 = time.perf_counter()
            r = dlogdet.extrapolate(src, n_sub=ns, seed=seed, subsamples=s, **opts)
            times.append(time.perf_counter() - t0)
            errs.append((r.logdet - ref) / abs(ref))
            lo, hi = r.diagnostics["band"]
            hits += lo <= ref <= hi
            widths.append(2 * r.stderr / abs(ref))
            crossed = r.diagnostics["rank_boundaries"]
            # family="scaling-law" / "boxcox" return the same fit's family or Box-Cox curve with the same stderr
            for key, v in (("scaling-law", r.diagnostics["scaling_law_estimate"]),
                           ("boxcox", r.diagnostics["boxcox"]["estimate"])):
                fam[key][0].append((v - ref) / abs(ref))
                fam[key][1] += abs(v - ref) <= 2 * r.stderr
            if s == 1:
                v = detkit_fit(np.asarray(r.diagnostics["ell"][0]), n)
                if v is not None:
                    dk.append((v - ref) / abs(ref))
        t_med = float(np.median(times))
        rows[label + f" (auto: {r.diagnostics['family']})"] = (np.array(errs), hits / runs, np.array(widths), t_med)
        for key, (e, h) in fam.items():
            rows[label + f", family={key}"] = (np.array(e), h / runs, np.array(widths), t_med)
        if dk:
            rows["detkit FitLogdet (same curves)"] = (np.array(dk), None, None, None)
    if limit:
        # the noise-free limit: the family fitted to `limit` subsample curves at once (≈ the mean curve ℓ_k of
        # random orderings): what no number of subsamples of this size can improve on, i.e. the model error
        r = dlogdet.extrapolate(src, n_sub=ns, seed=10_000, subsamples=limit, **opts)
        e = (r.diagnostics["scaling_law_estimate"] - ref) / abs(ref)
        b = (r.diagnostics["boxcox"]["estimate"] - ref) / abs(ref)
        dkl = detkit_fit(np.mean(np.asarray(r.diagnostics["ell"]), axis=0), n)
        limit_line = (f"  noise-free limit ({limit} subsamples at once): family {100 * e:+.2f}% (band ±"
                      f"{100 * 2 * r.stderr / abs(ref):.2f}%), Box-Cox {100 * b:+.2f}%"
                      + ("" if dkl is None else f", detkit on the mean curve {100 * (dkl - ref) / abs(ref):+.2f}%"))
    print(f"\n== {name}: n = {n} points ({src.n} rows, {rpp} per point), n_s = {ns}, ratio {n / ns:.1f}; exact "
          f"{ref:.8g} in {t_exact:.1f} s" + (f"; target <= {100 * target:g}%" if target else " (law fails)")
          + ("; rank boundaries crossed: " + ", ".join(f"layer {b['layer']} at {b['points']} points" for b in crossed)
             if crossed else ""))
    for label, (errs, cov, widths, t) in rows.items():
        a = np.abs(errs)
        line = (f"  {label:45s} |err| median {100 * np.median(a):6.2f}%  mean {100 * a.mean():6.2f}%  "
                f"max {100 * a.max():6.2f}%  bias {100 * errs.mean():+6.2f}%")
        if cov is not None:
            line += (f"  coverage {cov:4.2f}  band ±{100 * np.median(widths):.2f}% (median)  "
                     f"time {t:.2f} s  exact/extrapolation {t_exact / t:.0f}x")
        else:
            line += "  band: none reported"
        print(line, flush=True)
    if limit:
        print(limit_line, flush=True)
    return n, t_exact, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller n and n_s (a couple of minutes)")
    ap.add_argument("--runs", type=int, default=10, help="seeded extrapolations per case (default 10)")
    ap.add_argument("--subsamples", type=int, default=4, help="subsamples of the second variant (default 4)")
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES),
                    help=f"comma-separated among {', '.join(CASES)} (default: {', '.join(DEFAULT_CASES)})")
    ap.add_argument("--size", metavar="N,NS", default=None,
                    help="points n and subsample n_s instead of the case's (e.g. 1000,200)")
    ap.add_argument("--limit", type=int, default=0, metavar="K",
                    help="also fit K subsample curves at once: the noise-free limit of the family (its model error)")
    args = ap.parse_args()
    # the rank-boundary warning would repeat for every seeded run; the case's header line names the boundaries
    logging.getLogger("dlogdet.estimators.extrapolate").setLevel(logging.ERROR)

    largest = None
    for name in args.cases.split(","):
        size = tuple(int(v) for v in args.size.split(",")) if args.size else None
        n, t_exact, rows = run_case(name.strip(), args.quick, args.runs, args.subsamples, args.limit, size)
        t = next(v for k, v in rows.items() if k.startswith("ours, 1 subsample"))[3]
        if largest is None or t_exact > largest[1]:
            largest = (name, t_exact, t)
    if largest:
        name, t_exact, t = largest
        print(f"\nspeed at the largest exact run ({name}): exact {t_exact:.1f} s, extrapolation {t:.2f} s: "
              f"{t_exact / t:.0f}x faster (target >= 100x)")


if __name__ == "__main__":
    main()
