"""``dlogdet extrapolate SOURCE-SPEC --n-sub S [--n-total N]``: subsample, factor, fit, print (and plot)."""

from __future__ import annotations

import argparse
import json

from ..core.errors import InputError
from .options import add_output, add_where, int_pair, positive_int
from .session import client_for

HELP = "scaling-law extrapolation of log det from random subsamples"
DESCRIPTION = ("Estimate log det of the matrix of n_total points from exact factorizations of random subsamples of "
               "n_sub points: the fitted scaling law of the leading log-determinants, read at n_total, with an "
               "error bar that includes the model error. SOURCE-SPEC: {specs}.")


def arguments(p: argparse.ArgumentParser) -> None:
    from ..estimators.extrapolate import MAX_COST
    from ..linalg.scalinglaw import FAMILIES, RENAMED_FAMILIES
    from ..sources.spec import usage

    p.description = DESCRIPTION.format(specs=usage())
    p.add_argument("spec", metavar="SOURCE-SPEC",
                   help="a .npy file or zarr directory, kernel:NAME:..., ntk:MODEL:DATA:...")
    p.add_argument("--n-total", type=positive_int, default=None, metavar="N",
                   help="points of the full data set (default: the points of the source)")
    p.add_argument("--n-sub", type=positive_int, required=True, metavar="S", help="points per random subsample")
    p.add_argument("--subsamples", type=_auto_or_count, default="auto", metavar="K|auto",
                   help="independent subsamples, each one exact factorization: a count, or auto (default): until the "
                        "band's sampling part is below its model part, within --max-cost of the exact cost")
    p.add_argument("--rtol", type=_fraction, default=None, metavar="R",
                   help="accuracy asked for: grow the subsamples (and n_sub) until the band's half-width is within "
                        "R x abs(log det), or say that the exact method is cheaper (0.01 for 1%%)")
    p.add_argument("--max-cost", type=_positive_float, default=None, metavar="F",
                   help="time budget of --subsamples auto, a fraction of the predicted exact cost (default "
                        f"{MAX_COST:g}; 1 with --rtol)")
    p.add_argument("--fallback", choices=("exact",), default=None,
                   help="with --rtol: compute the exact log det when the extrapolation cannot reach it for less")
    p.add_argument("--window", metavar="N0,N1", type=int_pair("N0,N1 such as 10,750"), default="auto",
                   help="fit window in points of the subsample, 1 <= N0 < N1 <= S (default auto: held-out validation)")
    p.add_argument("--order", metavar="Q,R", type=int_pair("Q,R such as 1,1"), default="auto",
                   help="orders q, r of the family (default auto: held-out validation)")
    p.add_argument("--seed", type=int, default=None, help="seed of the subsamples")
    p.add_argument("--family", choices=(*FAMILIES, *RENAMED_FAMILIES), default="auto",
                   help="curve that gives the estimate: the scaling-law family, the Box-Cox curvature probe's (same "
                        "band), or auto (default): the probe where the model has a rank boundary between the "
                        "subsample and the full set (a full-output NTK's layer), the family elsewhere ("
                        + ", ".join(f"{old}: the old name of {new}" for old, new in RENAMED_FAMILIES.items()) + ")")
    p.add_argument("--weights", choices=("inverse-variance",), default=None,
                   help="weigh the increments of the least squares by their inverse local variance (default: "
                        "equal weights)")
    p.add_argument("--d", type=float, default=0.0, metavar="D", help="diagonal shift, jitter (default 0)")
    add_where(p)
    p.add_argument("--plot", metavar="PATH", help="save a plot of the curve, the fit and the band (.png or .svg)")
    add_output(p, progress=False)


def _auto_or_count(text: str):
    return "auto" if text == "auto" else _count(text)


def _count(text: str) -> int:
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a positive integer, got {text!r}") from None


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _fraction(text: str) -> float:
    v = _positive_float(text)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1) such as 0.01, got {text!r}")
    return v


def run(args: argparse.Namespace) -> int:
    """Extrapolate, print (one JSON object with the curves compacted, or a table), and plot."""
    from ..api import extrapolate
    from ..ui.report import compact_curves, save_extrapolation_plot
    from ..sources import source_from_spec
    from ..ui import table

    if args.plot and not args.plot.lower().endswith((".png", ".svg")):
        raise InputError(f"--plot must name a .png or .svg file, got {args.plot!r}")
    src = source_from_spec(args.spec)
    with client_for(args) as client:
        r = extrapolate(src, args.n_total, n_sub=args.n_sub, window=args.window, order=args.order,
                        subsamples=args.subsamples, rtol=args.rtol, max_cost=args.max_cost, fallback=args.fallback,
                        seed=args.seed, d=args.d, client=client, family=args.family, weights=args.weights)
    plotted = args.plot if args.plot and r.method == "extrapolate" else None   # fallback='exact': no curve
    if plotted:
        save_extrapolation_plot(r, plotted)
    if args.json:
        out = r.to_dict()
        for key in ("points", "candidates"):
            out["diagnostics"].pop(key, None)
        if "ell" in r.diagnostics:                      # not after fallback='exact', an exact result
            out["diagnostics"]["ell"] = compact_curves(r.diagnostics["ell"])  # ≤ 200 log-spaced k: `dlogdet report`
        print(json.dumps(out), flush=True)
    else:
        print(table([*r.rows(), *([("plot", plotted)] if plotted else [])]), flush=True)
    return 0
