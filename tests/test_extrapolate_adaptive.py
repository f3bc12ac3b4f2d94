"""Issue 20: an extrapolation that spends what its accuracy needs, and a band whose parts are measured.

- The band's sampling part (:mod:`dlogdet.linalg.scalinglaw.band`) against Monte Carlo: planted increment curves with known
  noise, the empirical variance of the fitted estimate over many draws (an independent reference).
- The loop of ``subsamples="auto"`` and ``rtol=`` (:mod:`dlogdet.estimators.extrapolate.adaptive`) on scripted
  draws and fits, where every stop is known in advance; then on real kernels against LAPACK.
- The in-process factorization goes through the engine's tile kernel: the same refusals as the engine.
- The plot's curve ends at the estimate, for either family.
"""

from __future__ import annotations

import functools
import json
import math
import time

import numpy as np
import pytest

import dlogdet
from dlogdet.core.errors import InputError, NonFiniteError, NotSymmetricError
from dlogdet.estimators.extrapolate import adaptive
from dlogdet.linalg.scalinglaw import band as scalingband
from dlogdet.linalg.scalinglaw import evaluate, fit_curves, loo_increments
from dlogdet.linalg.scalinglaw.family import _extrapolated, _fit


def uniform_kernel(n, d, kernel, lengthscale, seed=0, jitter=1e-8):
    x = np.random.default_rng(seed).uniform(size=(n, d))
    return dlogdet.KernelSource(x, kernel=kernel, lengthscale=lengthscale, jitter=jitter)


# ------------------------------------------------------------------------------------------ the sampling part


def test_noise_profile_recovers_a_planted_noise_level():
    # a smooth trend plus independent noise whose sd doubles along the curve: half the squared differences,
    # smoothed over 2·5% of 4000 = 401 values, estimate sd²: each local mean of ~400 χ²₁ terms (neighbours share
    # a difference, ×1.5 in variance) has a 9% relative sd, so every point within 4 sd (35%), the median within 5%
    k = np.arange(1.0, 4001.0)
    sd = 0.5 * (1.0 + k / 4000.0)
    d = 2.0 - 0.8 * np.log(k) + sd * np.random.default_rng(0).standard_normal(k.size)
    v = scalingband.noise_profile(d)
    inner = slice(400, 3600)
    ratio = v[inner] / sd[inner] ** 2
    assert 0.95 < np.median(ratio) < 1.05 and np.all((ratio > 0.65) & (ratio < 1.35)), (ratio.min(), ratio.max())


def test_prediction_variance_is_the_variance_of_the_estimate_over_noise_draws():
    # Monte Carlo reference: 400 noisy copies of a curve of the family, the same window and order, the estimate's
    # empirical variance; the variance formula with the planted noise level must match within 20% (the empirical
    # variance of 400 draws has a 7% relative sd)
    k = np.arange(1.0, 401.0)
    mean = 1.5 - 0.7 * np.log(k) + 3.0 / k
    sd = 0.3
    rng = np.random.default_rng(1)
    ests = []
    for _ in range(400):
        d = mean + sd * rng.standard_normal(k.size)
        fit = _fit(d, 20, 400, 1, 1)
        ests.append(_extrapolated(fit, 400, 4000, float(d.sum()), None)[0] - float(d.sum()))
    fit = _fit(mean, 20, 400, 1, 1)
    _, g = _extrapolated(fit, 400, 4000, float(mean.sum()), None)
    predicted = scalingband.prediction_variance(fit.hat, g, np.full(380, sd * sd))
    assert 0.8 < np.var(ests) / predicted < 1.2, (np.var(ests), predicted)


def test_sampling_part_falls_as_one_over_root_S_and_the_model_part_does_not():
    k = np.arange(1.0, 301.0)
    mean = 1.0 - 0.9 * np.log(k)
    rng = np.random.default_rng(2)
    one, four = [], []
    for _ in range(10):
        curves = np.cumsum(mean + 0.5 * rng.standard_normal((4, k.size)), axis=1)
        one.append(fit_curves(curves[:1], 3000, window=(10, 300), order=(0, 0))["components"]["sampling"])
        four.append(fit_curves(curves, 3000, window=(10, 300), order=(0, 0))["components"]["sampling"])
    assert 1.6 < np.median(one) / np.median(four) < 2.4            # √4 = 2, within the noise of the profile
    parts = fit_curves(curves, 3000)["components"]
    assert parts["stat"] == parts["sampling"] and parts["model"] >= 0
    assert math.isclose(fit_curves(curves, 3000)["stderr"], math.hypot(parts["sampling"], parts["model"]))


def _orderings(src, n_sub: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ℓ_k and leave-one-out curves of ``count`` random subsamples of n_sub points (LAPACK Cholesky of each)."""
    a = src.dense()
    rng = np.random.default_rng(seed)
    ell, loo = [], []
    for _ in range(count):
        pts = rng.choice(a.shape[0], size=n_sub, replace=False)
        L = np.linalg.cholesky(a[np.ix_(pts, pts)])
        ell.append(np.cumsum(2.0 * np.log(np.diagonal(L))))
        loo.append(loo_increments(L))
    return np.array(ell), np.array(loo)


@pytest.mark.slow   # a 3000-point LAPACK log det and 32 subsamples with their leave-one-out curves: ~10 s on 2 cores
def test_family_fitted_to_the_leave_one_out_curves_is_closer_to_lapack():
    # Matern-3/2 in 3-D, n = 3000 from 300 (ratio 10, pre-asymptotic: the slope still steepens at n_s), 8 draws of 4
    # subsamples: fitted to the mean leave-one-out curve (the default, where every subsample has one) against the
    # same fit on the raw increments (one leave-one-out curve for four subsamples: the family falls back to them)
    src = uniform_kernel(3000, 3, "matern32", 0.25, seed=12)
    exact = np.linalg.slogdet(src.dense())[1]
    ell, loo = _orderings(src, 300, 32, seed=0)
    floor = math.log(1e-8)
    on_loo, on_raw = [], []
    for s in range(8):
        c = slice(4 * s, 4 * s + 4)
        f = fit_curves(ell[c], 3000, loo=loo[c], floor=floor)
        g = fit_curves(ell[c], 3000, loo=loo[c][:1], floor=floor)
        assert f["fitted_to"] == "loo" and g["fitted_to"] == "increments"
        on_loo.append(abs(f["scaling_law_estimate"] - exact) / abs(exact))
        on_raw.append(abs(g["scaling_law_estimate"] - exact) / abs(exact))
    # measured: 2.8% against 3.7% mean |error|; at least a tenth closer (the calibration group: 2.2% against 2.9%)
    assert np.mean(on_loo) < 0.9 * np.mean(on_raw), (np.round(on_loo, 4), np.round(on_raw, 4))


def test_sampling_part_of_a_leave_one_out_fit_is_the_spread_of_its_estimates():
    # LOO_SAMPLING scales the raw increments' sampling part to a fit on the leave-one-out curves (whose own noise is
    # correlated along k); on a kernel outside its calibration group, the spread of 40 single-subsample estimates
    # (window and order chosen as usual) must match their median sampling part: the sd of ~40 draws is known to ±11%
    # (1/√78), and the calibration group's ratios spread 0.7-1.6x around the median that set the constant
    src = uniform_kernel(2000, 2, "matern12", 0.15, seed=13)
    ell, loo = _orderings(src, 200, 40, seed=1)
    fits = [fit_curves(ell[i], 2000, loo=loo[i:i + 1], floor=math.log(1e-8)) for i in range(40)]
    fits = [f for f in fits if f["fitted_to"] == "loo"]          # not where the law's test rejected the law
    assert len(fits) >= 30
    ratio = np.std([f["scaling_law_estimate"] for f in fits]) / np.median([f["components"]["sampling"] for f in fits])
    assert 0.6 <= ratio <= 1.8, ratio         # measured: 1.13 (35 fits)


# ---------------------------------------------------------------------------------------------------- the loop


class Scripted:
    """Draws that cost nothing and fits whose band follows a law: sampling = s/√S/n_sub, model = m/n_sub."""

    def __init__(self, s=10.0, m=3.0, estimate=-1000.0):
        self.s, self.m, self.estimate = s, m, estimate
        self.n_sub, self.count, self.draws = 0, 0, []

    def draw(self, n_sub, count):
        if n_sub != self.n_sub:
            self.count = 0
        self.n_sub, self.count = n_sub, self.count + count
        self.draws.append((n_sub, count))
        return None

    def refit(self):
        samp = self.s / math.sqrt(self.count) * 100.0 / self.n_sub
        model = self.m * 100.0 / self.n_sub
        return self.estimate, math.hypot(samp, model), samp, model


def loop(script, *, n_sub=100, n_points=10_000, rtol=None, max_cost=None, exact=1e9):
    return adaptive.Loop(script.draw, script.refit, n_sub, n_points, rtol, max_cost, lambda rate: exact)


def test_auto_draws_until_the_sampling_part_is_below_the_model_part():
    # 10/√S ≤ 3 from S = 12: each step draws the S·(sampling/model)² − S it needs, at most 3·S more (STEP_GROWTH)
    # except that the first goes straight to MIN_AUTO = 8 without a fit (1 to time one, then 7), then the 4 that
    # make 12
    s = Scripted(s=10.0, m=3.0)
    lp = loop(s)
    assert lp.auto() is adaptive.Stop.SAMPLING_BELOW_MODEL
    assert s.draws == [(100, 1), (100, 7), (100, 4)] and lp.pool == 12
    assert [st["subsamples"] for st in lp.steps] == [8, 12]
    assert lp.steps[-1]["sampling"] <= lp.steps[-1]["model"] < lp.steps[-2]["sampling"]
    # a model part above the sampling part from the first subsample: still MIN_AUTO before the parts are compared
    s = Scripted(s=1.0, m=3.0)
    lp = loop(s)
    assert lp.auto() is adaptive.Stop.SAMPLING_BELOW_MODEL and s.draws == [(100, 1), (100, adaptive.MIN_AUTO - 1)]


def test_auto_stops_at_the_budget_and_fixed_draws_exactly_k():
    s = Scripted(s=10.0, m=0.0)                    # no model part: only the budget stops it
    lp = loop(s, exact=0.0)
    assert lp.auto() is adaptive.Stop.BUDGET and s.draws == [(100, 1)]
    assert lp.cost()["max_cost"] == adaptive.MAX_COST and lp.cost()["ceiling_s"] == 0.0
    s = Scripted()
    assert loop(s).fixed(5) is adaptive.Stop.FIXED and s.draws == [(100, 5)]


class Slowing(Scripted):
    """Draws whose time grows fivefold after the first (a machine whose load rises): 10 ms, then 50 ms each."""

    def draw(self, n_sub, count):
        time.sleep((0.01 if not self.draws else 0.05) * count)
        return super().draw(n_sub, count)


class Warming(Scripted):
    """Draws whose first subsample pays a one-time cost (fresh memory, first calls): 30 ms, then 5 ms each."""

    def draw(self, n_sub, count):
        time.sleep((0.03 + 0.005 * (count - 1)) if not self.draws else 0.005 * count)
        return super().draw(n_sub, count)


def test_first_subsample_of_a_size_does_not_set_the_time_of_the_next():
    # the loop's time per subsample is the mean of those after the first of a size (the first of a process took 2x
    # the next ones at 500 points and left it 3-4 subsamples where later calls drew 8): 5 ms here, where the mean of
    # all four draws would be 11 ms
    s = Warming()
    lp = loop(s)
    for count in (1, 1, 2):
        lp._draw(100, count)
    assert lp.pool == 4 and lp.sizes[100] == pytest.approx(0.005, rel=0.5)
    # a new size starts over, with its own first draw
    lp._draw(200, 2)
    assert lp.pool == 2 and lp.sizes[200] == pytest.approx(0.005, rel=0.5) and lp.sizes[100] < 0.0075


def test_auto_keeps_to_the_budget_when_subsamples_slow_down():
    # the first subsample (10 ms) makes the next 7 look affordable within 0.1 x 1.5 s = 150 ms; drawn at once they
    # would take 350 ms. One at a time near the budget, the loop stops within one subsample's time of the ceiling.
    s = Slowing(s=10.0, m=0.0)
    lp = loop(s, max_cost=0.1, exact=1.5)
    assert lp.auto() is adaptive.Stop.BUDGET
    assert all(c == 1 for _, c in s.draws[1:]) and 2 <= s.count < adaptive.MIN_AUTO
    assert lp.cost()["spent_s"] <= lp.cost()["ceiling_s"] + 0.12    # at most a subsample (and slack) past it


def test_rtol_grows_n_sub_where_the_model_part_is_too_wide_then_draws_subsamples():
    # rtol 1% of 1000: stderr ≤ 5. The model part 3·100/n_sub needs n_sub ≥ 85 for ≤ 5/√2: 100 is enough at
    # once; then subsamples until the sampling part fits in √(25 − 9) = 4
    s = Scripted(s=10.0, m=3.0)
    lp = loop(s, rtol=0.01)
    assert lp.auto() is adaptive.Stop.RTOL_REACHED and {n for n, _ in s.draws} == {100}
    assert lp.steps[-1]["stderr"] <= 5.0
    # a model part 30·100/n_sub: n_sub doubles from 100 while the band is wider than asked; at 800 the model part
    # (3.75) and one subsample's sampling part (1.25) make a stderr of 3.95 ≤ 5
    s = Scripted(s=10.0, m=30.0)
    lp = loop(s, rtol=0.01)
    assert lp.auto() is adaptive.Stop.RTOL_REACHED
    assert s.draws == [(100, 1), (200, 1), (400, 1), (800, 1)] and lp.steps[-1]["stderr"] <= 5.0


def test_rtol_out_of_reach_stops_before_the_exact_cost():
    s = Scripted(s=10.0, m=30.0)
    lp = loop(s, rtol=0.01, exact=0.0)             # the exact factorization is (predicted) free
    assert lp.auto() is adaptive.Stop.EXACT_CHEAPER and len(s.draws) == 1
    s = Scripted(s=10.0, m=30.0)
    lp = loop(s, rtol=0.01, n_points=150)          # n_sub cannot grow past the data: subsamples until the ceiling
    assert lp.auto() in (adaptive.Stop.EXACT_CHEAPER, adaptive.Stop.MAX_SUBSAMPLES)
    assert max(n for n, _ in s.draws) == 150


@pytest.mark.parametrize("kwargs, match", [
    ({"subsamples": "many"}, "'auto' or a positive integer"),
    ({"subsamples": 0}, "'auto' or a positive integer"),
    ({"subsamples": True}, "'auto' or a positive integer"),
    ({"rtol": 0.0}, "rtol must be a number in"),
    ({"rtol": 1.5}, "rtol must be a number in"),
    ({"rtol": "1%"}, "rtol must be a number in"),
    ({"rtol": 0.01, "subsamples": 3}, "give subsamples='auto'"),
    ({"rtol": 0.01, "window": (10, 50)}, "rtol= may grow n_sub"),
    ({"max_cost": 0}, "max_cost must be a positive number"),
    ({"max_cost": float("inf")}, "max_cost must be a positive number"),
    ({"fallback": "slq", "rtol": 0.01}, "fallback must be None or 'exact'"),
    ({"fallback": "exact"}, "give rtol= with it"),
])
def test_bad_adaptive_options_name_the_fix(kwargs, match):
    with pytest.raises(InputError, match=match):
        dlogdet.extrapolate(uniform_kernel(300, 2, "matern32", 0.3), n_sub=50, **kwargs)


# ---------------------------------------------------------------------------------------- on real kernels


def test_default_is_auto_and_says_how_many_and_why():
    src = uniform_kernel(3000, 2, "matern32", 0.15)
    r = dlogdet.extrapolate(src, n_sub=200, seed=0)
    dg = r.diagnostics
    assert dg["stopped"] in ("sampling-below-model", "budget", "max-subsamples")
    assert dg["subsamples"] == len(dg["ell"]) == len(dg["points"]) >= 1 and dg["stop_reason"]
    assert [st["subsamples"] for st in dg["steps"]][-1] == dg["subsamples"]
    cost = dg["cost"]
    assert cost["max_cost"] == adaptive.MAX_COST and cost["exact_predicted_s"] > 0
    # the last draw started within the ceiling (each draw is predicted to fit before it is made)
    assert dg["steps"][-2]["seconds"] <= cost["ceiling_s"] if len(dg["steps"]) > 1 else True
    assert ("subsamples", f"{dg['subsamples']} x 200 points (stopped: {dg['stop_reason']})") in r.rows()


def test_rtol_reaches_its_accuracy_or_says_the_exact_method_is_cheaper():
    src = uniform_kernel(2000, 2, "matern12", 0.2, seed=3)
    exact = np.linalg.slogdet(src.dense())[1]
    r = dlogdet.extrapolate(src, n_sub=100, seed=1, rtol=0.02)
    cost = r.diagnostics["cost"]
    assert cost["max_cost"] == 1.0
    if r.status == "rtol-not-reached":
        assert r.diagnostics["stopped"] == "exact-cheaper"
    else:
        assert r.diagnostics["stopped"] == "rtol-reached" and 2 * r.stderr <= 0.02 * abs(r.logdet)
        # one seeded run: its error within 1.5 half-widths (3 stderr; a calibrated band misses that 0.3% of runs)
        assert abs(r.logdet - exact) <= 0.03 * abs(exact), (r.logdet, exact)
    sizes = [st["n_sub"] for st in r.diagnostics["steps"]]
    assert sizes == sorted(sizes) and sizes[0] == 100


def test_rtol_out_of_reach_warns_and_falls_back_to_the_exact_value(caplog):
    src = uniform_kernel(800, 2, "matern32", 0.2, seed=4)
    exact = np.linalg.slogdet(src.dense())[1]
    with caplog.at_level("WARNING", logger="dlogdet"):
        r = dlogdet.extrapolate(src, n_sub=60, seed=0, rtol=1e-4, max_cost=1e-9)
    assert r.status == "rtol-not-reached" and r.diagnostics["stopped"] == "exact-cheaper"
    assert "use method='exact'" in caplog.text and "rtol = 0.0001" in caplog.text
    assert "%" not in caplog.text                  # the finding of this run, not a benchmark's percentages
    e = dlogdet.extrapolate(src, n_sub=60, seed=0, rtol=1e-4, max_cost=1e-9, fallback="exact")
    assert e.method == "exact" and abs(e.logdet - exact) < 1e-9 * abs(exact)


# ------------------------------------------------------------------------- the engine's tile kernel in-process


def test_in_process_factorization_refuses_what_the_engine_refuses():
    a = uniform_kernel(200, 2, "matern32", 0.3).dense()
    bent = a.copy()
    bent[5, 17] += 1e-3                              # not symmetric (ArraySource is not symmetric by construction)
    with pytest.raises(NotSymmetricError):
        dlogdet.extrapolate(bent, n_sub=200, subsamples=1, seed=0)
    holed = a.copy()
    holed[3, 3] = np.nan
    with pytest.raises(NonFiniteError):
        dlogdet.extrapolate(holed, n_sub=200, subsamples=1, seed=0)
    r = dlogdet.extrapolate(a, n_sub=200, subsamples=1, seed=0)
    assert r.diagnostics["factorization"] == "in-process" and r.diagnostics["boxcox"]["on"] == "loo"
    assert r.logdet == pytest.approx(np.linalg.slogdet(a)[1], rel=1e-12)


# ---------------------------------------------------------------------------------------------------- the plot


@pytest.mark.parametrize("family", ["scaling-law", "boxcox"])
def test_the_plotted_curve_is_the_one_that_gave_the_estimate(family):
    from dlogdet.ui import report

    src = uniform_kernel(1500, 2, "matern32", 0.2)
    r = dlogdet.extrapolate(src, n_sub=150, seed=0, subsamples=2, family=family)
    c = r.diagnostics["curves"]
    assert c["n"][-1] == 1500 and c[family][-1] == pytest.approx(r.logdet, rel=1e-12)
    i = c["n"].index(150)
    assert c["scaling-law"][i] == pytest.approx(r.diagnostics["ell"][:, -1].mean(), rel=1e-12)
    # inside the subsample the family's curve is ℓ(n) of its coefficients
    inside = [j for j, n in enumerate(c["n"]) if n <= 150]
    assert np.allclose([c["scaling-law"][j] for j in inside], evaluate(r.diagnostics["coefficients"],
                                                                        [c["n"][j] for j in inside]))
    ax = report.plot_extrapolation(json.loads(r.to_json()))
    line = next(ln for ln in ax.lines if ln.get_label().endswith("(the estimate)"))
    assert line.get_ydata()[-1] == pytest.approx(r.logdet, rel=1e-12)
    other = next(ln for ln in ax.lines if ln.get_label().startswith("scaling law" if family == "boxcox" else "Box-Cox"))
    assert other.get_alpha() < 1.0
    import matplotlib.pyplot as plt
    plt.close(ax.figure)


# ------------------------------------------------------------------------------- issue 20's check, in CI (slow)


@functools.lru_cache(maxsize=1)
def _unseen_runs() -> tuple[np.ndarray, int]:
    """Relative errors and band hits of 24 extrapolations: kernels that neither the band's calibration nor the
    benchmark's reported cases use (lengthscales 0.12, 0.25, 0.35), n = 6000 from 500 as issue 20 asks, 8 seeds each,
    with the MIN_AUTO = 8 subsamples that subsamples="auto" draws before it compares the band's parts (a fixed count:
    how many "auto" affords depends on the machine's load, which the benchmark measures)."""
    errors, hits = [], 0
    for kernel, d, ls in (("matern12", 2, 0.12), ("matern32", 3, 0.25), ("matern52", 4, 0.35)):
        src = uniform_kernel(6000, d, kernel, ls, seed=11)
        exact = dlogdet.logdet(src).logdet
        for seed in range(8):
            r = dlogdet.extrapolate(src, n_sub=500, seed=seed, subsamples=adaptive.MIN_AUTO)
            errors.append(abs(r.logdet - exact) / abs(exact))
            lo, hi = r.diagnostics["band"]
            hits += lo <= exact <= hi
    return np.array(errors), hits


@pytest.mark.slow   # three exact 6000 x 6000 factorizations and 24 extrapolations of 8 subsamples: ~1-2 min
def test_unseen_matern_kernels_band_covers():
    # a calibrated band misses ~1.2 of 24 runs; 5 misses or more has a probability under 1%
    errors, hits = _unseen_runs()
    assert hits >= 20, (hits, np.round(errors, 4))


@pytest.mark.slow
def test_unseen_matern_kernels_mean_error_within_3_percent():
    # issue 20's target; measured 2.85% (per kernel 2.4%, 4.0%, 2.1%) since the family is fitted to the
    # leave-one-out curves, 4.2% on the raw increments before (docs/benchmarks/extrapolate.md)
    errors, _ = _unseen_runs()
    assert np.mean(errors) <= 0.03, np.round(errors, 4)


# ----------------------------------------------------------------------------------------------------------- CLI


def test_cli_subsamples_auto_rtol_and_max_cost(capsys):
    from dlogdet.cli import main

    assert main(["extrapolate", "kernel:matern32:n=600,d=2,lengthscale=0.2", "--n-sub", "60", "--seed", "0",
                 "--subsamples", "auto", "--max-cost", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    dg = out["diagnostics"]
    assert dg["stopped"] in ("sampling-below-model", "budget", "max-subsamples") and dg["cost"]["max_cost"] == 0.5
    assert dg["subsamples"] >= 1 and len(dg["ell"]["ell"]) == dg["subsamples"]
    assert main(["extrapolate", "kernel:matern32:n=600,d=2,lengthscale=0.2", "--n-sub", "60", "--seed", "0",
                 "--rtol", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "rtol 0.5" in text and "stopped: " in text


@pytest.mark.parametrize("argv, match", [
    (["--subsamples", "many"], "'auto' or a positive integer"),
    (["--rtol", "2"], "fraction in (0, 1)"),
    (["--max-cost", "-1"], "positive number"),
    (["--fallback", "exact"], "give rtol= with it"),
])
def test_cli_bad_adaptive_options_exit_2(argv, match, capsys):
    from dlogdet.cli import main

    assert main(["extrapolate", "kernel:matern32:n=300", "--n-sub", "40", *argv]) == 2
    assert match in capsys.readouterr().err
