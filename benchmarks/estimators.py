"""Iterative estimators (issue 6) against exact values and imate's SLQ, side by side on the same matrices.

For each case the reference is exact: Σ log λ for a prescribed spectrum, the exact engine (``dlogdet.logdet``)
for kernels and the NTK. On every matrix, in one run:

* ``dlogdet slq``        : ``method="slq"`` at its defaults (rtol 1%, Rademacher blocks of 16, full reorth,
  Krylov deflation of the samples).
* ``dlogdet slq nodefl`` : the same probes and steps without the deflation (``deflate=False``).
* ``dlogdet slq+nys``    : the same with a rank-``--rank`` Nyström preconditioner (``precondition=``).
* ``dlogdet nystrom``    : ``method="nystrom", rank=--rank``: point estimate = guaranteed lower bound, and the
  guaranteed bracket [lower, upper].
* ``imate default``      : ``imate.logdet(A, method="slq")`` at its defaults (20 Lanczos steps, 10–50 probes,
  no reorthogonalization, 95% confidence on the sampling error only).
* ``imate matched``      : imate with its Lanczos degree and probe count set to dlogdet slq's mean steps and
  probes, i.e. the same matrix-vector products.

Errors are relative to the exact value; "bar" is the reported error (dlogdet: the error bar, sampling at 95% +
the quadrature bias bound; imate: its ``absolute_error``); "covers" says whether the bar contains the true error.
``--seeds`` repeats the SLQ runs and reports coverage over seeds. Every estimator sees the same dense array, so
times compare like with like (the products over generated tiles are timed separately on the RBF kernel).

    python benchmarks/estimators.py --quick        # n = 1000 kernels, n = 500 NTK, one seed (a minute or two)
    python benchmarks/estimators.py                # the issue's sizes: 4000-point RBF and Matérn, NTK of 1500 points
    python benchmarks/estimators.py --seeds 10 --cases rbf
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import dlogdet


def prescribed(n, lam, seed=0):
    g = np.random.default_rng(seed).standard_normal((n, n))
    q, r = np.linalg.qr(g)
    q = q * np.sign(np.diag(r))
    a = (q * lam) @ q.T
    return (a + a.T) / 2


def spectrum_case(kind):
    def make(n):
        i = np.arange(1, n + 1, dtype=float)
        lam, d = {"flat": (np.linspace(2.0, 3.0, n), 0.0),
                  "power-law": (50.0 * i ** -1.5, 1e-2),
                  "exponential": (20.0 * np.exp(-0.08 * i), 1e-3),
                  "tiny-cluster": (np.r_[np.linspace(0.05, 1.0, n - n // 5), np.full(n // 5, 1e-7)], 1e-4)}[kind]
        a = prescribed(n, lam) + d * np.eye(n)
        # the estimators get M itself (d = 0) and the spectrum's lower bound, as a user who knows it would
        return a, float(np.sum(np.log(lam + d))), float(lam.min() + d), None
    return make


def kernel_case(kind, d=5, lengthscale=1.0, jitter=1e-3):
    def make(n):
        x = np.random.default_rng(0).standard_normal((n, d))
        src = dlogdet.KernelSource(x, kernel=kind, lengthscale=lengthscale, jitter=jitter)
        t0 = time.perf_counter()
        exact = dlogdet.logdet(src).logdet
        return src.dense(), exact, jitter, (src, time.perf_counter() - t0)
    return make


def ntk_case(n_points):
    def make(n):
        from dlogdet import ntk

        x, y = ntk.load_dataset("mnist1d", n, seed=0)
        f, params = ntk.mlp((x.shape[1], 512, 512, int(y.max()) + 1), seed=0)
        src = ntk.NTKSource(f, params, x, outputs="trace")
        a = src.dense()
        jitter = 1e-3 * float(np.mean(np.diag(a)))        # a nugget relative to the kernel's scale
        t0 = time.perf_counter()
        exact = dlogdet.logdet(a, d=jitter).logdet
        return a + jitter * np.eye(n), exact, jitter, (None, time.perf_counter() - t0)
    return make


#: name -> (factory, n, quick n)
CASES = {
    "flat": (spectrum_case("flat"), 2000, 1000),
    "power-law": (spectrum_case("power-law"), 2000, 1000),
    "exponential": (spectrum_case("exponential"), 2000, 1000),
    "tiny-cluster": (spectrum_case("tiny-cluster"), 2000, 1000),
    "rbf": (kernel_case("rbf"), 4000, 1000),
    "matern32": (kernel_case("matern32"), 4000, 1000),
    "ntk-mlp": (ntk_case(1500), 1500, 500),
}


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


class Tally:
    """Per-seed relative errors, bar coverage, times and matvec counts of one method on one case."""

    def __init__(self, name):
        self.name, self.err, self.cov, self.secs, self.mv, self.note = name, [], [], [], [], ""

    def add(self, est, bar, exact, secs, matvecs, note=""):
        self.err.append(abs(est - exact) / abs(exact))
        self.cov.append(None if bar is None else abs(est - exact) <= bar)
        self.secs.append(secs)
        self.mv.append(matvecs)
        self.bar = None if bar is None else bar / abs(exact)
        if not self.note:
            self.note = note

    def line(self):
        k = len(self.err)
        cov = "" if self.cov[0] is None else f"covers {sum(self.cov)}/{k}"
        bar = "" if self.bar is None else f"bar(last) {100 * self.bar:7.3f}%"
        med = (f"median err {100 * np.median(self.err):7.3f}% rms {100 * np.sqrt(np.mean(np.square(self.err))):7.3f}% "
               f"max {100 * max(self.err):7.3f}%") if k > 1 else f"err {100 * self.err[0]:7.3f}%"
        return (f"  {self.name:<17} {med}  {bar:<18} {cov:<11} {np.mean(self.secs):7.2f} s  "
                f"{int(np.mean(self.mv)):6d} matvecs  {self.note}")


def run_case(name, make, n, args, imate):
    a, exact, lower, extra = make(n)
    print(f"\n{name}: n = {n}, exact log det = {exact:.6f}"
          + (f" (exact engine {extra[1]:.2f} s)" if extra is not None else ""), flush=True)
    opts = {"spectrum_lower": lower, "check_symmetry": False}
    rank = min(args.rank, n // 4)
    T = {k: Tally(k) for k in ("dlogdet slq", "dlogdet slq nodefl", "dlogdet slq+nys", "imate default",
                               "imate matched")}
    for seed in range(args.seeds):
        r, secs = timed(lambda: dlogdet.logdet(a, method="slq", seed=seed, **opts))
        D = r.diagnostics
        T["dlogdet slq"].add(r.logdet, D["error_bar"], exact, secs, D["matvecs"],
                             f"seed 0: {D['probes']} probes x {D['lanczos_steps_mean']:.0f} steps, bias bound "
                             f"{D['bias_bound']:.3g}, {r.status}")
        steps, probes = int(round(D["lanczos_steps_mean"])), int(D["probes"])
        defl = D["deflation"]
        T["dlogdet slq"].note += "" if T["dlogdet slq"].err[1:] else (
            f", deflation {defl.get('variance_ratio', 0):.2f}x less variance in {defl.get('seconds', 0):.2f} s"
            if defl["enabled"] else f", deflation off ({defl.get('reason', '')})")
        r, secs = timed(lambda: dlogdet.logdet(a, method="slq", seed=seed, deflate=False, min_probes=probes,
                                               max_probes=probes, **opts))
        T["dlogdet slq nodefl"].add(r.logdet, r.diagnostics["error_bar"], exact, secs, r.diagnostics["matvecs"],
                                    "the same probes without deflation")
        r, secs = timed(lambda: dlogdet.logdet(a, method="slq", seed=seed, precondition=rank, **opts))
        D = r.diagnostics
        T["dlogdet slq+nys"].add(r.logdet, D["error_bar"], exact, secs, D["matvecs"],
                                 f"rank {rank}; seed 0: {D['probes']} probes x {D['lanczos_steps_mean']:.0f} steps, "
                                 f"{r.status}")
        if imate is None:
            continue
        (ld, info), secs = timed(lambda: imate.logdet(a, method="slq", seed=seed, return_info=True))
        used = int(info["convergence"]["num_samples_used"])
        T["imate default"].add(ld, info["error"]["absolute_error"], exact, secs,
                               used * int(info["solver"]["lanczos_degree"]),
                               f"seed 0: {used} probes x {info['solver']['lanczos_degree']} steps")
        (ld, info), secs = timed(lambda: imate.logdet(a, method="slq", seed=seed, lanczos_degree=steps,
                                                      min_num_samples=probes, max_num_samples=probes,
                                                      return_info=True))
        T["imate matched"].add(ld, info["error"]["absolute_error"], exact, secs,
                               int(info["convergence"]["num_samples_used"]) * steps,
                               f"seed 0: {probes} probes x {steps} steps (dlogdet slq's)")
    for t in T.values():
        if t.err:
            print(t.line(), flush=True)
    r, secs = timed(lambda: dlogdet.logdet(a, method="nystrom", rank=rank, seed=0, **opts))
    D = r.diagnostics
    print(f"  {'dlogdet nystrom':<17} err {100 * abs(r.logdet - exact) / abs(exact):7.3f}%  guaranteed bracket "
          f"[{100 * (r.lower - exact) / abs(exact):+.3f}%, {100 * (r.upper - exact) / abs(exact):+.3f}%] holds: "
          f"{r.lower <= exact <= r.upper}  {secs:.2f} s  {D['matvecs']} matvecs  rank {rank}, decay "
          f"{D['spectral_decay']['model']} (rate {D['spectral_decay']['rate']:.3g})", flush=True)
    if extra is not None and extra[0] is not None and name == "rbf":
        src = extra[0]
        r, secs = timed(lambda: dlogdet.logdet(src, method="slq", seed=0))
        D = r.diagnostics
        print(f"  {'dlogdet slq tiles':<17} err {100 * abs(r.logdet - exact) / abs(exact):7.3f}%  bar "
              f"{100 * D['error_bar'] / abs(exact):.3f}%  {secs:.2f} s  {D['matvecs']} matvecs: KernelSource, tiles "
              f"generated on each of {D['passes']} passes (block {D['block_size']}, {D['n_tiles']} tiles)", flush=True)
    return T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--seeds", type=int, default=1, help="seeded SLQ runs per case (coverage)")
    ap.add_argument("--rank", type=int, default=200, help="Nyström rank (preconditioner and estimator)")
    args = ap.parse_args()
    try:
        import imate
        print(f"imate {imate.__version__}")
    except ImportError:
        imate = None
        print("imate is not installed (pip install imate): dlogdet's estimators only")
    summary = []
    for name in args.cases.split(","):
        make, n, nq = CASES[name]
        summary.append((name, run_case(name, make, nq if args.quick else n, args, imate)))
    if imate is None:
        return
    print("\nratios dlogdet slq / imate (RMS true error over seeds, mean time); < 1: dlogdet more accurate or faster")
    for name, T in summary:
        ours = T["dlogdet slq"]
        out = []
        rms = lambda e: float(np.sqrt(np.mean(np.square(e))))   # noqa: E731
        for k in ("imate default", "imate matched"):
            o = T[k]
            out.append(f"vs {k[6:]}: err {rms(ours.err) / max(rms(o.err), 1e-300):7.3f} time "
                       f"{np.mean(ours.secs) / np.mean(o.secs):6.2f} covers {sum(ours.cov)}/{len(ours.cov)} vs "
                       f"{sum(o.cov)}/{len(o.cov)}")
        print(f"  {name:<13} " + " | ".join(out))


if __name__ == "__main__":
    main()
