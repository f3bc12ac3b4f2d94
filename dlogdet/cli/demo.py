"""``dlogdet demo``: dlogdet on a local cluster against ``numpy.linalg.slogdet`` on a kernel matrix; exit 1 if they
differ (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from ..core.errors import InputError
from .options import PROG, add_output, int_at_least, positive_int
from .session import port_free, progress_for

HELP = "compare with numpy.linalg.slogdet on a kernel matrix, on a local cluster"
DESCRIPTION = ("Start a local cluster on loopback, compute the log-determinant of a built-in kernel matrix (tiles "
               "generated on the workers) and compare it with numpy.linalg.slogdet on the dense matrix. Exits 1 if "
               "they differ by more than 1e-8 relative.")

#: Largest relative difference from LAPACK (why: both are backward stable on this well-conditioned matrix and
#: agree to ~1e-14; 1e-8 leaves room for any tile size without hiding a wrong tile).
DEMO_RTOL = 1e-8


def arguments(p: argparse.ArgumentParser) -> None:
    from ..sources import KERNELS

    p.add_argument("--n", type=int_at_least(2), default=4000, help="order of the matrix (default 4000)")
    p.add_argument("--workers", type=positive_int, default=2, metavar="K", help="worker processes (default 2)")
    p.add_argument("--kernel", choices=KERNELS, default="rbf", help="covariance kernel (default rbf)")
    add_output(p)


def _check_reference_fits(n: int) -> None:
    import psutil

    from ..ui import format_bytes

    need = 2 * 8 * n * n  # the dense matrix and the LU copy that slogdet makes
    avail = psutil.virtual_memory().available
    if need > avail:
        raise InputError(f"--n {n} is too large for the reference: numpy.linalg.slogdet needs about "
                         f"{format_bytes(need)} here but {format_bytes(avail)} is available; choose a smaller --n")


def run(args: argparse.Namespace) -> int:
    """Both computations, the comparison, and exit 1 if they disagree."""
    import numpy as np

    from . import local_client           # the package's name, which tests may replace
    from ..api import logdet
    from ..sources import source_from_spec
    from ..ui import table

    n = args.n
    _check_reference_fits(n)
    # n points uniform in the unit cube [0, 1]^3 (seed 0)
    src = source_from_spec(f"kernel:{args.kernel}:n={n},d=3,lengthscale=0.5,variance=1,jitter=1e-3,seed=0")
    human = not args.json
    dash = "127.0.0.1:8787" if port_free("127.0.0.1", 8787) else "127.0.0.1:0"
    with local_client(args.workers, dash) as client:
        link = client.dashboard_link
        print(f"dashboard: {link}", file=sys.stdout if human else sys.stderr, flush=True)
        if human:
            print(f"matrix: {src!r} on {n} points uniform in [0, 1]^3 (seed 0), tiles generated on "
                  f"{args.workers} worker(s)", flush=True)
        t0 = time.perf_counter()
        with progress_for(args) as bar:
            r = logdet(src, client=client, progress=bar)
        t_dlogdet = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref_sign, ref_logdet = np.linalg.slogdet(src.dense())
    t_numpy = time.perf_counter() - t0
    ref_sign, ref_logdet = float(ref_sign), float(ref_logdet)

    abs_diff = abs(r.logdet - ref_logdet)
    rel_diff = abs_diff / abs(ref_logdet) if ref_logdet != 0 else abs_diff
    ok = r.sign == ref_sign and rel_diff < DEMO_RTOL
    dg = r.diagnostics
    if args.json:
        print(json.dumps({"n": n, "kernel": args.kernel, "workers": args.workers, "dashboard": link,
                          "dlogdet": {**r.to_dict(), "wall_time_total": t_dlogdet},
                          "numpy": {"logdet": ref_logdet, "sign": ref_sign, "wall_time": t_numpy},
                          "abs_diff": abs_diff, "rel_diff": rel_diff, "rtol": DEMO_RTOL, "ok": ok}), flush=True)
    else:
        print(table([
            ("dlogdet logdet", f"{r.logdet!r} (sign {r.sign:+.0f})"),
            ("numpy slogdet", f"{ref_logdet!r} (sign {ref_sign:+.0f})"),
            ("abs difference", f"{abs_diff:.3e}"),
            ("rel difference", f"{rel_diff:.3e} (must be < {DEMO_RTOL:g})"),
            ("dlogdet wall time", f"{t_dlogdet:.3f} s ({dg.get('wall_time', math.nan):.3f} s in the graph)"),
            ("numpy wall time", f"{t_numpy:.3f} s (dense matrix built and factored on the client)"),
            ("block size", f"{dg.get('block_size')} ({dg.get('n_panels')} panels)"),
            ("tasks", dg.get("n_tasks")),
            ("scheduler", dg.get("scheduler")),
            ("peak memory/worker", "; ".join(dg.peak_memory() or ["n/a"])),
        ]), flush=True)
    if not ok:
        print(f"{PROG}: error: dlogdet and numpy.linalg.slogdet disagree: logdet {r.logdet!r} (sign "
              f"{r.sign:+.0f}) vs {ref_logdet!r} (sign {ref_sign:+.0f}), relative difference {rel_diff:.3e} "
              f"is not below {DEMO_RTOL:g}", file=sys.stderr, flush=True)
        return 1
    return 0
