"""Calibration of the extrapolation's band (issue 20): coverage and width per case, on banks of cached curves.

For each case (``benchmarks/extrapolate.py``'s ``CASES``): the exact log det of the full matrix (LAPACK Cholesky of
its dense form), and a bank of ``--bank`` subsample curves: random orderings of the points, the leading ``--mult``
× n_s of them factored once, their ℓ_k and leave-one-out curves kept (a prefix of a random ordering is a random
subsample, so one bank serves every n_sub up to its length). Both are kept in ``--cache DIR`` and reused.

Then, for S = 1, 4, 8 subsamples: ``runs`` disjoint draws of S curves from the bank, each fitted by
``dlogdet.linalg.scalinglaw.fit_curves`` exactly as ``dlogdet.extrapolate`` fits them (same floor, same leave-one-out
curves), and per case: mean |error|, bias, coverage of estimate ± 2·stderr, the median half-width over the median
|error| (a calibrated Gaussian band: 2.97), the median sampling and model parts and the model's pieces. Many runs
cost one factorization of the bank, which is what made it possible to set the band's constants
(``dlogdet.linalg.scalinglaw.band``) on the ``calibration`` group and only check them on the others.

    python benchmarks/extrapolate_calibration.py --cache DIR                         # the calibration group
    python benchmarks/extrapolate_calibration.py --cache DIR --cases validation,unseen
    python benchmarks/extrapolate_calibration.py --cache DIR --set CURVATURE_WEIGHT=0  # a constant changed
    python benchmarks/extrapolate_calibration.py --cache DIR --loo-ratio --runs 40           # LOO_SAMPLING
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
from scipy.linalg import cholesky
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import extrapolate as bx  # noqa: E402  (the case registry of the benchmark beside this one)

from dlogdet.estimators.extrapolate import crossed_boundaries  # noqa: E402
from dlogdet.linalg.scalinglaw import band as scalingband  # noqa: E402
from dlogdet.linalg.scalinglaw import fit as scalingfit  # noqa: E402
from dlogdet.linalg.scalinglaw import fit_curves, loo_increments  # noqa: E402
from dlogdet.sources.bounds import spectrum_lower_bound  # noqa: E402


def bank(name: str, cache: str, size: int, mult: int) -> dict:
    """The case's exact log det and ``size`` cached curves of length ``mult`` × n_s (built on first use)."""
    make, n, ns = bx.CASES[name][:3]
    if "ntk" in name:               # NTK tiles cost far more: fewer, shorter curves
        size, mult = min(size, 80), 1
    path = os.path.join(cache, f"bank-{name}-{n}-{ns}.npz")
    if not os.path.exists(path):
        src, opts = make(n)
        rpp = src.rows_per_point
        a = np.array(src.dense(), dtype=np.float64)
        d = float(opts.get("d", 0.0))
        full = a + d * np.eye(a.shape[0])
        exact = 2.0 * float(np.log(np.diagonal(cholesky(full, lower=True, overwrite_a=True))).sum())
        del full
        nmax = min(mult * ns, n)
        ell, loo = [], []
        with threadpool_limits(1):
            for b in range(size):
                pts = np.random.default_rng(100_000 + b).permutation(n)[:nmax]
                rows = (rpp * pts[:, None] + np.arange(rpp)[None, :]).ravel()
                s = a[np.ix_(rows, rows)] + d * np.eye(rows.size)
                L = cholesky(s, lower=True, overwrite_a=True, check_finite=False)
                ell.append(np.cumsum(2.0 * np.log(np.diagonal(L)).reshape(nmax, rpp).sum(axis=1)))
                loo.append(loo_increments(L, rpp))
        os.makedirs(cache, exist_ok=True)
        np.savez(path, exact=exact, ell=np.array(ell), loo=np.array(loo), n=n, ns=ns, rpp=rpp)
    z = np.load(path)
    return {k: z[k] for k in z.files}


def floor_and_family(name: str) -> tuple[float | None, str]:
    """The case's increment floor (rpp·log of the shift's least eigenvalue) and the family ``"auto"`` takes (the
    Box-Cox probe across a rank boundary between n_s and n)."""
    make, n, ns = bx.CASES[name][:3]
    src, opts = make(n)
    a = spectrum_lower_bound(src, 1.0, opts.get("d", 0.0))
    floor = src.rows_per_point * math.log(a) if a is not None else None
    return floor, "boxcox" if crossed_boundaries(src, ns, n) else "scaling-law"


def evaluate(name: str, z: dict, subsamples, runs: int) -> list[tuple]:
    N, ns, ex = int(z["n"]), int(z["ns"]), float(z["exact"])
    A = abs(ex)
    fl, family = floor_and_family(name)
    B = z["ell"].shape[0]
    out = []
    for S in subsamples:
        fits = []
        for r in range(min(runs, B // S)):
            idx = list(range(r * S, (r + 1) * S))
            loo = z["loo"][idx, :ns]        # every subsample's, as the estimator computes them
            fits.append(fit_curves(z["ell"][idx, :ns], N, loo=loo, floor=fl, family=family))
        e = np.array([(f["estimate"] - ex) / A for f in fits])
        se = np.array([f["stderr"] / A for f in fits])
        cov = float(np.mean(np.abs(e) <= 2 * se))
        ratio = float(2 * np.median(se) / np.median(np.abs(e)))
        parts = {k: 100 * float(np.median([f["components"][k] for f in fits])) / A
                 for k in ("sampling", "model", "selection", "validation", "curvature")}
        print(f"{name:26s} S={S} runs {len(fits):2d} {family[:5]}  |err| mean {100 * np.abs(e).mean():5.2f}%  bias "
              f"{100 * e.mean():+5.2f}%  coverage {cov:4.2f}  half-width/|err| {ratio:5.2f}  | "
              + "  ".join(f"{k} {v:.2f}%" for k, v in parts.items()), flush=True)
        out.append((name, S, cov, ratio, float(np.abs(e).mean())))
    return out


def loo_ratio(name: str, z: dict, runs: int) -> float | None:
    """sd of single-subsample scaling-law estimates fitted to their leave-one-out curves, window and order chosen as
    the estimator chooses them (and, in brackets, held at (n_s/20, n_s] and (1, 1)), over the median sampling part the
    raw increments' noise gives the same fits: ``LOO_SAMPLING`` of ``dlogdet.linalg.scalinglaw.band`` is the median
    of the first over the calibration group. None where fewer than half the fits were on the leave-one-out curves
    (the law's test rejected the law)."""
    N, ns = int(z["n"]), int(z["ns"])
    fl, _ = floor_and_family(name)
    old, scalingband.LOO_SAMPLING = scalingband.LOO_SAMPLING, 1.0
    out, used = [], []
    try:
        for fixed in ({}, {"window": (ns // 20, ns), "order": (1, 1)}):
            fits = [fit_curves(z["ell"][r, :ns], N, loo=z["loo"][r:r + 1, :ns], floor=fl, **fixed)
                    for r in range(min(runs, z["ell"].shape[0]))]
            fits = [f for f in fits if f["fitted_to"] == "loo"]
            used.append(len(fits))
            out.append(float(np.std([f["scaling_law_estimate"] for f in fits])
                             / np.median([f["components"]["sampling"] for f in fits])) if fits else math.nan)
    finally:
        scalingband.LOO_SAMPLING = old
    if used[0] < runs / 2:
        print(f"{name:26s} leave-one-out fit: {used[0]} of {runs} (the law's test rejected the rest): skipped")
        return None
    print(f"{name:26s} leave-one-out fit: sd / raw sampling part {out[0]:.2f} ({out[1]:.2f} with the window and order "
          f"fixed; {used[0]} single subsamples)", flush=True)
    return out[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", metavar="DIR", required=True, help="where the banks are kept")
    ap.add_argument("--cases", default="calibration", help="case names or groups of benchmarks/extrapolate.py")
    ap.add_argument("--bank", type=int, default=150, help="curves per bank (default 150)")
    ap.add_argument("--mult", type=int, default=2, help="bank curves' length in n_s (default 2)")
    ap.add_argument("--runs", type=int, default=30, help="draws per case and S (default 30)")
    ap.add_argument("--subsamples", default="1,4,8", help="values of S (default 1,4,8)")
    ap.add_argument("--loo-ratio", action="store_true",
                    help="only measure LOO_SAMPLING's ratio per case (single subsamples, --runs of them)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="change a constant of dlogdet.linalg.scalinglaw.band or .fit for this run (to see what it "
                         "does); a tuple as comma-separated numbers, empty for none")
    args = ap.parse_args()
    for kv in args.set:
        k, v = kv.split("=")
        mod = next((m for m in (scalingband, scalingfit) if hasattr(m, k)), None)
        if mod is None:
            raise SystemExit(f"dlogdet.linalg.scalinglaw.band and .fit have no constant {k}")
        old = getattr(mod, k)
        setattr(mod, k, tuple(float(x) for x in v.split(",") if x) if isinstance(old, tuple) else type(old)(float(v)))
    names = []
    for item in args.cases.split(","):
        names += bx.GROUPS.get(item.strip(), [item.strip()])
    if args.loo_ratio:
        ratios = [loo_ratio(name, bank(name, args.cache, args.bank, args.mult), args.runs) for name in names]
        ratios = [r for r in ratios if r is not None]
        print(f"\nmedian over {len(ratios)} cases: {np.median(ratios):.2f}")
        return
    rows = []
    for name in names:
        t0 = time.perf_counter()
        z = bank(name, args.cache, args.bank, args.mult)
        rows += evaluate(name, z, [int(s) for s in args.subsamples.split(",")], args.runs)
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    for S in sorted({r[1] for r in rows}):
        errs = [r[4] for r in rows if r[1] == S]
        print(f"S={S}: mean |error| over the {len(errs)} cases {100 * np.mean(errs):.2f}%")
    groups = {g: [r for r in rows if r[0] in members] for g, members in bx.GROUPS.items()}
    groups = {g: rs for g, rs in groups.items() if rs and len(rs) < len(rows)}
    groups["validation + unseen"] = [r for r in rows if r[0] in bx.GROUPS["validation"] + bx.GROUPS["unseen"]]
    print()
    for label, rs in [*groups.items(), (f"all {len(rows)}", rows)]:
        if not rs:
            continue
        cov = np.array([r[2] for r in rs])
        ratio = np.array([r[3] for r in rs])
        print(f"{label} ({len(rs)} (case, S)): coverage mean {cov.mean():.3f}, below 0.9 in {int((cov < 0.9).sum())}, "
              f"above 0.98 in {int((cov > 0.98).sum())}; half-width/|err| median {np.median(ratio):.2f}, above 3 in "
              f"{int((ratio > 3).sum())}")


if __name__ == "__main__":
    main()
