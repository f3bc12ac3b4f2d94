"""``dlogdet logdet SOURCE``: log|det(t·A + diag(d))| by any method, printed as a table or one JSON object."""

from __future__ import annotations

import argparse
from typing import Any

from ..core.errors import InputError
from .options import add_freedecomp, add_output, add_where, positive_int, source_help
from .session import client_for, progress_for

HELP = "log|det(t*A + diag(d))| of a .npy file, a zarr directory or a source spec"
DESCRIPTION = ("log|det(t*A + diag(d))| of a .npy file, a zarr directory or a source spec, by a tiled Cholesky "
               "(spd), LDL^T (sym) or LU (gen) on a Dask graph, or by an estimator (--method).")

#: the flags of free decompression (refused with another --method)
FREEDECOMP_FLAGS = ("n0", "samples", "degrees", "scale", "plot")


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH",
                   help=source_help("a .npy file (memory-mapped tile by tile), a zarr directory or a source spec"))
    p.add_argument("--assume", choices=("spd", "sym", "gen"), default="spd",
                   help="structure of the matrix: spd (Cholesky, the default), sym (symmetric indefinite, "
                        "LDL^T), gen (general, LU)")
    p.add_argument("--block-size", type=positive_int, metavar="N",
                   help="tile size (default: chosen from n, the workers and --budget)")
    p.add_argument("--t", type=float, default=1.0, metavar="T", help="scale of A (default 1)")
    p.add_argument("--d", type=float, default=0.0, metavar="D", help="diagonal shift, jitter (default 0)")
    add_where(p)
    p.add_argument("--budget", metavar="SIZE",
                   help="memory budget per worker for tiles, such as 2GiB (default: dask config dlogdet.memory.budget); "
                        "a matrix larger than half the summed budgets runs out of core, from an on-disk tile store")
    p.add_argument("--scratch", metavar="DIR",
                   help="directory of the tile store of an out-of-core run (default: dask config dlogdet.scratch or "
                        "the system's temporary directory; on a cluster, a file system every worker sees); a run "
                        "that was killed resumes from it when started again with the same arguments")
    p.add_argument("--backend", choices=("auto", "numpy", "cupy"), default=None,
                   help="compute backend of the tiles (default: dask config dlogdet.backend, auto)")
    from ..estimators import REGISTRY

    # every registered method but extrapolate, which has its own command (it needs --n-sub)
    p.add_argument("--method", choices=tuple(m for m in REGISTRY if m != "extrapolate"), default="exact",
                   help="exact (tiled factorization, the default); slq (stochastic Lanczos quadrature with an error "
                        "bar); nystrom (randomized Nystrom: guaranteed bounds for d > 0); freedecomp (free "
                        "decompression of random --n0 x --n0 submatrix spectra, a scalar --d); auto (exact when it "
                        "fits the budget and time, else preconditioned slq)")
    p.add_argument("--rtol", type=float, default=None, metavar="R",
                   help="slq/auto: relative tolerance of the error bar (default 0.01)")
    p.add_argument("--rank", type=positive_int, default=None, metavar="K",
                   help="nystrom: rank of the approximation (default min(n, 200)); slq: rank of a Nystrom "
                        "preconditioner")
    p.add_argument("--seed", type=int, default=None,
                   help="slq/nystrom: seed of the probes and sketches; freedecomp: of the submatrices")
    add_freedecomp(p, plot_help="freedecomp: save the submatrix histogram, the fitted and the decompressed "
                                "densities (.png, .svg or .pdf)")
    add_output(p)


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``--method`` from the flags given, or an InputError naming a flag that is not its own."""
    method = args.method
    given = {f: getattr(args, f) for f in ("rtol", "rank", "seed", *FREEDECOMP_FLAGS) if getattr(args, f) is not None}
    if method == "freedecomp":
        if "rtol" in given or "rank" in given:
            raise InputError("--rtol and --rank do not apply to --method freedecomp; its accuracy is set by --n0 "
                             "and --samples")
        if "n0" not in given:
            raise InputError("--method freedecomp needs --n0 N (the submatrix size, e.g. n // 8)")
        return {k: v for k, v in given.items() if k != "plot"}
    fd = [f"--{f}" for f in FREEDECOMP_FLAGS if f in given]
    if fd:
        raise InputError(f"{', '.join(fd)}: only for --method freedecomp")
    if method == "exact" and given:
        raise InputError(f"{', '.join('--' + f for f in given)} apply to --method slq, nystrom or auto, not to exact")
    if method == "nystrom" and "rtol" in given:
        raise InputError("--rtol applies to --method slq or auto; nystrom's accuracy is set by --rank")
    if "rank" in given:
        given["rank" if method == "nystrom" else "precondition"] = given.pop("rank")
    return given


def run(args: argparse.Namespace) -> int:
    """Compute and print."""
    from ..api import logdet
    from ..estimators import options_of
    from ..ui.report import save_decompression_plot
    from ..sources import source_from_spec
    from ..ui import format_result

    options = method_options(args)
    options.update({k: v for k, v in (("backend", args.backend), ("scratch", args.scratch)) if v is not None})
    source = source_from_spec(args.path)
    with client_for(args) as client, progress_for(args) as bar:
        if bar is not None and "progress" in options_of(args.method):
            options["progress"] = bar
        r = logdet(source, method=args.method, assume=args.assume, t=args.t, d=args.d, block_size=args.block_size,
                   budget=args.budget, client=client, **options)
    if args.plot:
        save_decompression_plot(r, args.plot)
    print(r.to_json() if args.json else format_result(r), flush=True)
    return 0
