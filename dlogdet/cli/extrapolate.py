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
    from ..linalg.scalinglaw import FAMILIES, RENAMED_FAMILIES
    from ..sources.spec import usage

    p.description = DESCRIPTION.format(specs=usage())
    p.add_argument("spec", metavar="SOURCE-SPEC",
                   help="a .npy file or zarr directory, kernel:NAME:..., ntk:MODEL:DATA:...")
    p.add_argument("--n-total", type=positive_int, default=None, metavar="N",
                   help="points of the full data set (default: the points of the source)")
    p.add_argument("--n-sub", type=positive_int, required=True, metavar="S", help="points per random subsample")
    p.add_argument("--subsamples", type=positive_int, default=1, metavar="K",
                   help="independent subsamples, each one exact factorization (default 1)")
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
                        subsamples=args.subsamples, seed=args.seed, d=args.d, client=client, family=args.family,
                        weights=args.weights)
    if args.plot:
        save_extrapolation_plot(r, args.plot)
    if args.json:
        out = r.to_dict()
        for key in ("points", "candidates"):
            out["diagnostics"].pop(key, None)
        out["diagnostics"]["ell"] = compact_curves(r.diagnostics["ell"])  # ≤ 200 log-spaced k: `dlogdet report`
        print(json.dumps(out), flush=True)
    else:
        print(table([*r.rows(), *([("plot", args.plot)] if args.plot else [])]), flush=True)
    return 0
