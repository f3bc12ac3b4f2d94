"""``dlogdet spectrum SOURCE --n0 N``: submatrix spectra, the fitted curve, and the law at the matrix's size."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .options import add_freedecomp, add_output, add_where, positive_int, source_help
from .session import client_for

HELP = "spectrum of a large matrix by free decompression of small submatrices"
DESCRIPTION = ("Eigenvalues of random n0 x n0 principal submatrices (one task each, on the cluster), an algebraic "
               "spectral curve fitted to them and decompressed to the size of the matrix (or --sizes): support, "
               "atoms, moments and mean log.")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [positive_int(v) for v in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be positive integers N[,N...], got {text!r}") from None
    return sizes


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH",
                   help=source_help("a .npy file (memory-mapped tile by tile), a zarr directory or a source spec"))
    p.add_argument("--sizes", metavar="N[,N...]", type=_sizes, default=None,
                   help="sizes at which to read the law (default: the order of the matrix)")
    p.add_argument("--t", type=float, default=1.0, metavar="T", help="scale of A (default 1)")
    p.add_argument("--seed", type=int, default=None, help="seed of the submatrices")
    add_freedecomp(p, plot_help="save the submatrix histogram, the fitted and the decompressed densities "
                                "(.png, .svg or .pdf)", required=True)
    add_where(p)
    p.add_argument("--backend", choices=("auto", "numpy", "cupy"), default=None,
                   help="where the submatrix eigenvalues are computed (default: dask config dlogdet.backend)")
    add_output(p, progress=False)


def run(args: argparse.Namespace) -> int:
    """Compute the spectra, fit and decompress the curve, print."""
    from ..api import spectrum
    from ..ui.report import save_decompression
    from ..sources import source_from_spec
    from ..estimators.freedecomp.spectra import fit_spectra, laws
    from ..ui import table

    samples = 4 if args.samples is None else args.samples
    degrees = "auto" if args.degrees is None else args.degrees
    nested = tuple(k for k in (args.n0 // 4, args.n0 // 2) if k >= 40) if degrees == "auto" else ()
    t0 = time.perf_counter()
    source = source_from_spec(args.path)
    with client_for(args) as client:
        sp = spectrum(source, n0=args.n0, samples=samples, seed=args.seed, nested=nested, t=args.t,
                      backend=args.backend, client=client)
    sizes = [sp.n] if args.sizes is None else args.sizes
    cur, selection = fit_spectra(sp, n_target=max(sizes), degrees=degrees, scale=args.scale or "auto")
    at = laws(cur, sizes)
    if args.plot:
        save_decompression(cur, sizes, args.plot)
    out = {"n": sp.n, "n0": cur.n0, "samples": sp.samples, "degrees": list(cur.degrees), "scale": cur.scale_kind,
           "fit_residual": cur.residual, "atoms_n0": [{"location": a.location, "weight": a.weight}
                                                      for a in cur.atoms],
           "selection": [{"degrees": list(r["degrees"]), "score": r["score"], "chosen": r.get("chosen", False)}
                         for r in selection],
           "laws": at, "wall_time": time.perf_counter() - t0}
    if args.json:
        print(json.dumps(out, default=float), flush=True)
        return 0
    rows: list[tuple[str, Any]] = [
        ("submatrices", f"{sp.samples} x {cur.n0} of n = {sp.n} (eigenvalues in [{sp.pooled()[0]:.6g}, "
                        f"{sp.pooled()[-1]:.6g}])"),
        ("curve", f"degrees {cur.degrees}, {cur.scale_kind} scale, fit residual {cur.residual:.2g}"),
    ]
    for law in at:
        bulks = ", ".join(f"[{a:.6g}, {b:.6g}]" for a, b in law["support"])
        atoms = ", ".join(f"{a['weight']:.4f} at {a['location']:.6g}" for a in law["atoms"]) or "none"
        ml = "" if law["mean_log"] is None else f", mean log {law['mean_log']:.6g}"
        rows.append((f"n = {law['n']}", f"bulks {bulks}; atoms {atoms}; mean {law['moments'][1]:.6g}{ml}"))
    rows.append(("wall time", f"{out['wall_time']:.3f} s"))
    if args.plot:
        rows.append(("plot", args.plot))
    print(table(rows), flush=True)
    return 0
