"""Argument types and option groups that several commands share: one spelling and one help text per option."""

from __future__ import annotations

import argparse
from typing import Any, Callable

PROG = "dlogdet"

CLUSTER_HELP = ("run on a cluster profile: a name (slurm, pbs, gpu-slurm, local-cuda: cluster/NAME.yaml) or a path "
                "to a profile YAML; 'local' for a local cluster")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``."""
    what = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = low - 1
        if v < low:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v

    return parse


positive_int = int_at_least(1)


def int_pair(what: str) -> Callable[[str], Any]:
    """An argparse type: ``auto`` or two integers ``A,B``."""
    def parse(text: str):
        if text == "auto":
            return "auto"
        try:
            a, b = (int(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be 'auto' or two integers {what}, got {text!r}") from None
        return (a, b)

    return parse


def add_common(p: argparse.ArgumentParser, default: Any) -> None:
    """-v and --debug (on the subcommands their defaults are SUPPRESS, so that ``dlogdet --debug logdet ...`` is not
    overwritten)."""
    p.add_argument("-v", "--verbose", action="count", default=default,
                   help="log INFO messages of the library on stderr (-vv: DEBUG)")
    p.add_argument("--debug", action="store_true", default=default,
                   help="re-raise errors to show their traceback")


def add_where(p: argparse.ArgumentParser) -> None:
    """Where a command runs: --workers K, --scheduler ADDRESS or --cluster NAME (one of them; default: the active
    client or threads in this process)."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, metavar="K",
                       help="start a local cluster of K worker processes on loopback for this run")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on the Dask scheduler at ADDRESS (e.g. tcp://10.0.0.1:8786) or of a scheduler "
                            "file (.json)")
    where.add_argument("--cluster", metavar="NAME", help=CLUSTER_HELP)


def add_output(p: argparse.ArgumentParser, progress: bool = True) -> None:
    """--json (and --no-progress where the command draws a progress bar)."""
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    if progress:
        p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    else:
        p.set_defaults(no_progress=True)


def add_freedecomp(p: argparse.ArgumentParser, plot_help: str, required: bool = False) -> None:
    """The options of free decompression: --n0, --samples, --degrees, --scale, --plot."""
    pre = "" if required else "freedecomp: "
    p.add_argument("--n0", type=int_at_least(2), metavar="N", required=required,
                   help=pre + "submatrix size (e.g. n // 8; required)")
    p.add_argument("--samples", type=positive_int, default=None, metavar="K",
                   help=pre + "random submatrices (default 4)")
    p.add_argument("--degrees", type=int_pair("DZ,DM such as 1,3"), default=None, metavar="DZ,DM",
                   help=pre + "degrees of the curve (default auto: chosen by decompressing nested blocks)")
    p.add_argument("--scale", choices=("auto", "linear", "log"), default=None,
                   help=pre + "contours on a linear or log scale (default auto: log for a positive spectrum)")
    p.add_argument("--plot", metavar="PATH", help=plot_help)


def source_help(what: str) -> str:
    """Help of a positional SOURCE: ``what`` it is, then every spelling of a source spec."""
    from ..sources.spec import usage

    return f"{what}: {usage()}"
