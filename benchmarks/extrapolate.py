"""Scaling-law extrapolation against the exact engine (and detkit's FitLogdet): error, band and cost per case.

For each case: the exact log det of the full matrix by ``dlogdet.logdet`` (the reference, timed; ``--cache DIR``
keeps it in a file and reuses it), then ``--runs`` seeded extrapolations, each variant on the same seeds:

- ``auto (defaults)``: ``dlogdet.extrapolate(src, n_sub=...)`` as a user calls it (``subsamples="auto"``);
- ``1 subsample``: ``subsamples=1`` (the published method), with detkit's ``FitLogdet`` at its documented defaults
  (m=2, n=0, no regularization) fitted to the same ℓ_k curve (it reports no band);
- ``rtol=R`` with ``--rtol R``: the accuracy asked for (reached, or "rtol-not-reached" before the exact cost).

Per variant: |error| median, mean and max, bias, the coverage of the band estimate ± 2·stderr, the median
half-width over the median |error| (a calibrated Gaussian band: 2.97), the subsamples drawn, why the loop stopped,
the median time and exact time / extrapolation time. The last line gives that ratio with the defaults at the
largest exact run (the target of issue 20: >= 10x at n = 12,000).

Case groups (``--cases``, comma-separated names or groups):

- ``validation`` (the default): Matérn-3/2 and Matérn-1/2 kernels on uniform points in 2 and 3 dimensions
  (jitter 1e-8), n = 12,000 from n_s = 750; an RBF kernel that reaches its jitter floor between n_s and n (the law
  fails there); the traced NTK of a trained MLP (40-512-512-10) on MNIST-1D, n = 12,000 from 750; its full-output
  NTK, n = 1500 points (m = 15,000) from n_s = 300, across its last layer's rank boundary at 513 points;
- ``unseen``: Matérn-1/2, 3/2, 5/2 in 2, 3 and 4 dimensions at lengthscales no other case uses, n = 6000 from 500,
  and an RBF kernel in 5-D at jitter 1e-3 (issue 20's check);
- ``calibration``: the cases the band's constants were set on (other point sets, dimensions 1 and 5, other
  lengthscales and jitters, other networks; ``benchmarks/extrapolate_calibration.py``);
- by name: the full-output NTK at widths 128, 2048 and 4096.

    python benchmarks/extrapolate.py --quick                      # smaller sizes, a few minutes
    python benchmarks/extrapolate.py --cache DIR                  # the validation cases at their sizes
    python benchmarks/extrapolate.py --cases unseen --runs 20 --cache DIR
    python benchmarks/extrapolate.py --cases matern32-2d --rtol 0.01 --runs 5 --cache DIR
    python benchmarks/extrapolate.py --cases ntk-trace,ntk-full --runs 20 --cache DIR
    python benchmarks/extrapolate.py --cases ntk-full,ntk-full-w2048,ntk-full-w4096 --limit 32   # model error
    python benchmarks/extrapolate.py --cases ntk-full,ntk-full-w128 --size 1000,200 --runs 40   # rank boundaries
    python benchmarks/extrapolate.py --cases matern32-2d --speed 3 --runs 5 --max-cost 0.1   # time, interleaved
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import numpy as np

import dlogdet

numpy_trapz = getattr(np, "trapz", None)
if numpy_trapz is None:                       # detkit calls numpy.trapz, removed in numpy 2.4
    np.trapz = np.trapezoid


def points(kind, n, d, seed):
    """n points in d dimensions: uniform on the unit cube, standard normal, or a mixture of 8 tight clusters."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.uniform(size=(n, d))
    if kind == "gauss":
        return rng.standard_normal((n, d))
    centres = rng.uniform(size=(8, d))
    return centres[rng.integers(0, 8, n)] + 0.05 * rng.standard_normal((n, d))


def kernel_case(kernel, d, lengthscale, jitter=1e-8, where="uniform"):
    def make(n, seed=0):
        x = points(where, n, d, seed)
        return dlogdet.KernelSource(x, kernel=kernel, lengthscale=lengthscale, jitter=jitter), {}
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
#: unseen kernels (issue 20): Matérn-1/2, 3/2, 5/2 in 2-4 dimensions at lengthscales none of the cases above
#: or the calibration cases use, n = 6000 from 500; and the issue's RBF in 5-D at its jitter floor
UNSEEN = {f"matern{nu}-{d}d-l{ls:g}": (kernel_case(f"matern{nu}", d, ls), 6000, 500, 0.03, 3000, 250)
          for nu in ("12", "32", "52") for d, ls in ((2, 0.1), (3, 0.2), (4, 0.4))}
UNSEEN["rbf-5d-j1e-3"] = (kernel_case("rbf", 5, 0.5, jitter=1e-3), 5000, 400, None, 2500, 200)
#: calibration cases: other point sets (normal, clustered), dimensions 1 and 5, other lengthscales and jitters,
#: another NTK; the constants of the band were set on these, never on the cases above
CALIBRATION = {
    "cal-matern32-2d-gauss": (kernel_case("matern32", 2, 0.5, where="gauss"), 4000, 400, None, 2000, 200),
    "cal-matern12-1d": (kernel_case("matern12", 1, 0.05), 4000, 400, None, 2000, 200),
    "cal-matern52-5d": (kernel_case("matern52", 5, 0.8), 4000, 400, None, 2000, 200),
    "cal-rbf-3d-j1e-6": (kernel_case("rbf", 3, 0.3, jitter=1e-6), 4000, 400, None, 2000, 200),
    "cal-matern32-4d-gauss": (kernel_case("matern32", 4, 1.0, where="gauss"), 6000, 500, None, 3000, 250),
    "cal-matern12-2d-clusters": (kernel_case("matern12", 2, 0.3, where="clusters"), 6000, 500, None, 3000, 250),
    "cal-rbf-2d-j1e-4": (kernel_case("rbf", 2, 0.2, jitter=1e-4), 5000, 400, None, 2500, 200),
    "cal-matern52-2d-gauss": (kernel_case("matern52", 2, 0.3, where="gauss"), 6000, 500, None, 3000, 250),
    "cal-matern12-5d": (kernel_case("matern12", 5, 1.0), 6000, 400, None, 3000, 200),
    "cal-matern32-1d": (kernel_case("matern32", 1, 0.02), 8000, 500, None, 4000, 250),
}
CASES.update(UNSEEN)
CASES.update(CALIBRATION)
CASES["cal-ntk-full-w128"] = CASES["ntk-full-w128"]
CASES["cal-ntk-trace-w256"] = (ntk_case("trace", 300, 256), 6000, 500, None, 3000, 250)

#: groups of --cases
GROUPS = {
    "validation": [c for c in CASES if "-w" not in c and c not in UNSEEN and not c.startswith("cal-")],
    "unseen": list(UNSEEN),
    "calibration": [c for c in CASES if c.startswith("cal-")],
}


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


def exact_value(name, n, src, opts, cache):
    """(log det, seconds) of the case's full matrix by dlogdet.logdet, from ``cache`` when it holds them."""
    path = os.path.join(cache, f"exact-{name}-{n}.json") if cache else None
    if path and os.path.exists(path):
        with open(path) as f:
            d = json.load(f)
        return d["logdet"], d["seconds"]
    t0 = time.perf_counter()
    ref = dlogdet.logdet(src, **opts).logdet
    seconds = time.perf_counter() - t0
    if path:
        os.makedirs(cache, exist_ok=True)
        with open(path, "w") as f:
            json.dump({"logdet": ref, "seconds": seconds}, f)
    return ref, seconds


def run_variant(src, opts, ns, ref, runs, detkit_n=None, **kw):
    """Seeded extrapolations: relative errors, band hits, half-widths, subsamples, stop reasons, times."""
    out = {"err": [], "hit": [], "half": [], "subs": [], "stop": [], "time": [], "detkit": [], "scaling-law": [],
           "boxcox": [], "spent": []}
    for seed in range(runs):
        t0 = time.perf_counter()
        r = dlogdet.extrapolate(src, n_sub=ns, seed=seed, **opts, **kw)
        out["time"].append(time.perf_counter() - t0)
        if r.method != "extrapolate":                       # fallback='exact'
            out["err"].append((r.logdet - ref) / abs(ref))
            out["hit"].append(True), out["half"].append(0.0), out["subs"].append(0), out["stop"].append("exact")
            continue
        lo, hi = r.diagnostics["band"]
        out["err"].append((r.logdet - ref) / abs(ref))
        out["hit"].append(lo <= ref <= hi)
        out["half"].append(2 * r.stderr / abs(ref))
        out["subs"].append(f"{r.diagnostics['subsamples']}x{r.diagnostics['n_sub']}")
        out["stop"].append(r.diagnostics["stopped"])
        cost = r.diagnostics["cost"]
        out["spent"].append(cost["spent_s"] / cost["exact_predicted_s"])
        # family="scaling-law" / "boxcox" return the same fit's family or Box-Cox curve with the same stderr
        out["scaling-law"].append((r.diagnostics["scaling_law_estimate"] - ref) / abs(ref))
        out["boxcox"].append((r.diagnostics["boxcox"]["estimate"] - ref) / abs(ref))
        if detkit_n is not None:
            v = detkit_fit(np.asarray(r.diagnostics["ell"][0]), detkit_n)
            if v is not None:
                out["detkit"].append((v - ref) / abs(ref))
    return out


def line(label, v, t_exact):
    e = np.array(v["err"])
    a = np.abs(e)
    half = np.array(v["half"])
    ratio = np.median(half) / max(np.median(a), 1e-300)
    subs = {}
    for s_ in v["subs"]:
        subs[s_] = subs.get(s_, 0) + 1
    stops = {}
    for s_ in v["stop"]:
        stops[s_] = stops.get(s_, 0) + 1
    t = float(np.median(v["time"]))
    t_max = float(np.max(v["time"]))
    return (f"  {label:22s} |err| median {100 * np.median(a):5.2f}%  mean {100 * a.mean():5.2f}%  max "
            f"{100 * a.max():5.2f}%  bias {100 * e.mean():+5.2f}%  coverage {np.mean(v['hit']):4.2f}  half-width "
            f"{100 * np.median(half):5.2f}% = {ratio:4.2f}x |err|  subsamples "
            + ", ".join(f"{k}: {c}" for k, c in sorted(subs.items(), key=lambda kv: -kv[1])[:3])
            + "  stopped " + ", ".join(f"{k}: {c}" for k, c in stops.items())
            + f"  time {t:.2f} s (max {t_max:.2f} s)  exact/this {t_exact / t:.0f}x (at the max {t_exact / t_max:.1f}x)"
            + (f"  spent/predicted exact max {max(v['spent']):.2f}" if v["spent"] else ""))


def run_case(name, quick, runs, rtol=None, size=None, cache=None, one=True, limit=0, max_costs=None, auto=True):
    make, n, ns, target, qn, qns = CASES[name]
    if quick:
        n, ns = qn, qns
    if size:
        n, ns = size
    src, opts = make(n)
    rpp = src.rows_per_point
    ref, t_exact = exact_value(name, n, src, opts, cache)
    print(f"\n== {name}: n = {n} points ({src.n} rows, {rpp} per point), n_s = {ns}, ratio {n / ns:.1f}; exact "
          f"{ref:.8g} in {t_exact:.1f} s" + (f"; target <= {100 * target:g}%" if target else ""), flush=True)
    results = {}
    variants = ([("auto (defaults)", {})] if auto else []) + ([("1 subsample", {"subsamples": 1})] if one else [])
    for mc in max_costs or ():
        variants.append((f"auto max_cost={mc:g}", {"max_cost": mc}))
    if rtol:
        variants.append((f"rtol={rtol:g}", {"rtol": rtol}))
    for label, kw in variants:
        v = run_variant(src, opts, ns, ref, runs, detkit_n=n if label == "1 subsample" else None, **kw)
        results[label] = v
        print(line(label, v, t_exact), flush=True)
        if label == "1 subsample":
            for fam in ("scaling-law", "boxcox"):
                e = np.array(v[fam])
                print(f"  {'  family=' + fam:22s} |err| median {100 * np.median(np.abs(e)):5.2f}%  mean "
                      f"{100 * np.abs(e).mean():5.2f}%  bias {100 * e.mean():+5.2f}%  coverage "
                      f"{np.mean(np.abs(e) <= np.array(v['half'])):4.2f}", flush=True)
        if v["detkit"]:
            a = np.abs(v["detkit"])
            print(f"  {'detkit FitLogdet':22s} |err| median {100 * np.median(a):5.2f}%  mean {100 * a.mean():5.2f}%  "
                  f"max {100 * a.max():5.2f}%  (same curves as 1 subsample; no band)", flush=True)
    if limit:
        # the noise-free limit: `limit` subsamples at once (≈ the mean curve ℓ_k of random orderings): what no
        # number of subsamples of this size can improve on, i.e. the model error of each family
        r = dlogdet.extrapolate(src, n_sub=ns, seed=10_000, subsamples=limit, **opts)
        e = (r.diagnostics["scaling_law_estimate"] - ref) / abs(ref)
        b = (r.diagnostics["boxcox"]["estimate"] - ref) / abs(ref)
        print(f"  noise-free limit ({limit} subsamples at once): family {100 * e:+.2f}%, Box-Cox {100 * b:+.2f}% "
              f"(band ±{100 * 2 * r.stderr / abs(ref):.2f}%: sampling {100 * r.diagnostics['components']['sampling'] / abs(ref):.2f}%, "
              f"model {100 * r.diagnostics['components']['model'] / abs(ref):.2f}%)", flush=True)
    return n, t_exact, results


def speed(name, rounds, runs, max_costs, size=None):
    """Interleaved rounds at the case's size: the exact run, then ``runs`` extrapolations with the defaults (and
    with each ``max_cost``), so that both meet the same load; per round exact / median extrapolation time."""
    make, n, ns = CASES[name][:3]
    if size:
        n, ns = size
    src, opts = make(n)
    variants = [("defaults", {})] + [(f"max_cost={mc:g}", {"max_cost": mc}) for mc in max_costs or ()]
    ratios = {label: [] for label, _ in variants}
    worst = {label: [] for label, _ in variants}
    print(f"\n== speed, {name}: n = {n} from n_s = {ns}, {rounds} interleaved rounds", flush=True)
    for rnd in range(rounds):
        t0 = time.perf_counter()
        dlogdet.logdet(src, **opts)
        t_exact = time.perf_counter() - t0
        row = [f"  round {rnd}: exact {t_exact:6.1f} s"]
        for label, kw in variants:
            ts, subs = [], []
            for seed in range(rnd * runs, (rnd + 1) * runs):
                t0 = time.perf_counter()
                r = dlogdet.extrapolate(src, n_sub=ns, seed=seed, **opts, **kw)
                ts.append(time.perf_counter() - t0)
                subs.append(r.diagnostics["subsamples"])
            ratios[label].append(t_exact / float(np.median(ts)))
            worst[label].append(t_exact / max(ts))
            row.append(f"{label}: median {np.median(ts):.2f} s, max {max(ts):.2f} s ({ratios[label][-1]:.1f}x, at "
                       f"the max {worst[label][-1]:.1f}x; subsamples {sorted(subs)})")
        print(";  ".join(row), flush=True)
    for label, _ in variants:
        print(f"  {label}: exact / extrapolation (median over rounds) {np.median(ratios[label]):.1f}x, at the slowest "
              f"run of each round {np.median(worst[label]):.1f}x (target >= 10x)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller n and n_s (a few minutes)")
    ap.add_argument("--runs", type=int, default=10, help="seeded extrapolations per case and variant (default 10)")
    ap.add_argument("--cases", default="validation",
                    help=f"comma-separated case names or groups ({', '.join(GROUPS)}); default: validation")
    ap.add_argument("--size", metavar="N,NS", default=None,
                    help="points n and subsample n_s instead of the case's (e.g. 1000,200)")
    ap.add_argument("--rtol", type=float, default=None, help="also run with rtol= this")
    ap.add_argument("--max-cost", default=None, metavar="F[,F...]",
                    help="also run subsamples='auto' with these max_cost= (fractions of the predicted exact cost)")
    ap.add_argument("--no-single", action="store_true", help="skip the 1-subsample variant")
    ap.add_argument("--no-auto", action="store_true", help="skip the defaults (with --rtol or --max-cost)")
    ap.add_argument("--cache", metavar="DIR", default=None, help="keep and reuse the exact values in DIR")
    ap.add_argument("--limit", type=int, default=0, metavar="K",
                    help="also fit K subsample curves at once: the noise-free limit of each family (its model error)")
    ap.add_argument("--speed", type=int, default=0, metavar="R",
                    help="only time: R interleaved rounds of the exact run and --runs extrapolations per variant")
    args = ap.parse_args()
    if args.speed:
        for name in args.cases.split(","):
            speed(name.strip(), args.speed, args.runs,
                  [float(v) for v in args.max_cost.split(",")] if args.max_cost else None,
                  tuple(int(v) for v in args.size.split(",")) if args.size else None)
        return
    # the rank-boundary warning would repeat for every seeded run; the case's header line names the boundaries
    logging.getLogger("dlogdet.estimators.extrapolate").setLevel(logging.ERROR)

    names = []
    for item in args.cases.split(","):
        names += GROUPS.get(item.strip(), [item.strip()])
    largest = None
    size = tuple(int(v) for v in args.size.split(",")) if args.size else None
    for name in names:
        n, t_exact, res = run_case(name, args.quick, args.runs, args.rtol, size, args.cache, not args.no_single,
                                   args.limit, [float(v) for v in args.max_cost.split(",")] if args.max_cost else None,
                                   not args.no_auto)
        if "auto (defaults)" not in res:
            continue
        t = float(np.median(res["auto (defaults)"]["time"]))
        if largest is None or t_exact > largest[1]:
            largest = (name, t_exact, t, n)
    if largest:
        name, t_exact, t, n = largest
        print(f"\nspeed with the defaults at the largest exact run ({name}, n = {n}): exact {t_exact:.1f} s, "
              f"extrapolation {t:.2f} s (median): {t_exact / t:.1f}x faster (target >= 10x)")


if __name__ == "__main__":
    main()
