"""``dlogdet report RESULT.json -o PATH``: the plots of a finished run, as HTML (self-contained) or PNG."""

from __future__ import annotations

import argparse

HELP = "plots of a finished run (the JSON --json printed) as HTML or PNG"
DESCRIPTION = ("Render the plots of a finished run: factorization progress and memory per worker over time (exact), "
               "the scaling-law curve with its band (extrapolate), spectra (nystrom, freedecomp), to a "
               "self-contained HTML page or a PNG.")


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("result", metavar="RESULT.json", help="the JSON that a dlogdet command printed with --json")
    p.add_argument("-o", "--output", metavar="PATH", required=True, help="the report file: .html or .png")


def run(args: argparse.Namespace) -> int:
    """Render and name the plots drawn."""
    from ..ui.report import render

    names = render(args.result, args.output)
    print(f"{args.output}: {', '.join(names)}", flush=True)
    return 0
