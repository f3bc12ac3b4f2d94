"""The command line of dlogdet: parse, call :func:`dlogdet.logdet`, print.

``dlogdet logdet PATH`` computes log|det(t·A + diag(d))| of a ``.npy`` file or a zarr directory;
``dlogdet demo`` starts a local cluster and checks the engine against ``numpy.linalg.slogdet`` on a built-in
kernel matrix (what ``make demo`` runs).

Exit codes: 0 success; 2 bad input (any :class:`dlogdet.InputError` and command-line usage errors); 1 any other
failure; 130 interrupted. Errors are printed as one line ``dlogdet: error: <message>`` on stderr; ``--debug``
re-raises them to show the traceback.
"""

from __future__ import annotations

import argparse
import json
import contextlib
import dataclasses
import logging
import math
import socket
import sys
import threading
import time
from typing import Any, Iterator, Mapping, NoReturn, Sequence, TextIO

import numpy as np

from . import __version__
from .errors import InputError
from .ntk.registry import MODELS as NTK_REGISTRY, build_model
from .runtime import Progress

PROG = "dlogdet"


# --------------------------------------------------------------------------------------------------- parsing


class UsageError(Exception):
    """A command-line usage error (exit code 2), raised instead of argparse's print-and-exit.

    Attributes
    ----------
    prog : str
        The (sub)command whose arguments were wrong, e.g. ``"dlogdet logdet"``.
    """

    def __init__(self, message: str, prog: str = PROG):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are raised, so that :func:`main` prints them as one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)


def _int_at_least(low: int):
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


_positive_int = _int_at_least(1)
_order = _int_at_least(2)


def _degrees(text: str):
    """An argparse type: ``auto`` or ``DZ,DM`` (the degrees of a free-decompression curve)."""
    if text == "auto":
        return "auto"
    try:
        dz, dm = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or two integers DZ,DM such as 1,3, got {text!r}") from None
    return (dz, dm)


def _add_freedecomp_args(p: argparse.ArgumentParser, plot_help: str, required: bool = False) -> None:
    pre = "" if required else "freedecomp: "
    p.add_argument("--n0", type=_int_at_least(2), metavar="N", required=required,
                   help=pre + "submatrix size (e.g. n // 8; required)")
    p.add_argument("--samples", type=_positive_int, default=None, metavar="K",
                   help=pre + "random submatrices (default 4)")
    p.add_argument("--degrees", type=_degrees, default=None, metavar="DZ,DM",
                   help=pre + "degrees of the curve (default auto: chosen by decompressing nested blocks)")
    p.add_argument("--scale", choices=("auto", "linear", "log"), default=None,
                   help=pre + "contours on a linear or log scale (default auto: log for a positive spectrum)")
    p.add_argument("--plot", metavar="PATH", help=plot_help)


def _add_common(p: argparse.ArgumentParser, default: Any) -> None:
    # on the subcommands the defaults are SUPPRESS, so that `dlogdet --debug logdet ...` is not overwritten
    p.add_argument("-v", "--verbose", action="count", default=default,
                   help="log INFO messages of the library on stderr (-vv: DEBUG)")
    p.add_argument("--debug", action="store_true", default=default,
                   help="re-raise errors to show their traceback")


CLUSTER_HELP = ("run on a cluster profile: a name (slurm, pbs, gpu-slurm, local-cuda: cluster/NAME.yaml) or a path "
                "to a profile YAML; 'local' for a local cluster")


def _add_where(p: argparse.ArgumentParser) -> None:
    """Where a command runs: --workers K, --scheduler ADDRESS or --cluster NAME (one of them; default: the active
    client or threads in this process)."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, metavar="K",
                       help="start a local cluster of K worker processes on loopback for this run")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on the Dask scheduler at ADDRESS (e.g. tcp://10.0.0.1:8786) or of a scheduler "
                            "file (.json)")
    where.add_argument("--cluster", metavar="NAME", help=CLUSTER_HELP)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``dlogdet`` command (its errors raise :class:`UsageError`)."""
    from .sources import KERNELS

    parser = _Parser(prog=PROG, description="Exact, memory-bounded, distributed log-determinants of huge dense "
                                            "matrices as Dask task graphs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common(parser, None)
    parser.set_defaults(verbose=0, debug=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("logdet", help="log|det(t*A + diag(d))| of a .npy file or a zarr directory",
                       description="log|det(t*A + diag(d))| of a .npy file or a zarr directory, by a tiled "
                                   "Cholesky (spd), LDL^T (sym) or LU (gen) on a Dask graph.")
    p.add_argument("path", metavar="PATH", help="a .npy file (memory-mapped tile by tile) or a zarr directory")
    p.add_argument("--assume", choices=("spd", "sym", "gen"), default="spd",
                   help="structure of the matrix: spd (Cholesky, the default), sym (symmetric indefinite, "
                        "LDL^T), gen (general, LU)")
    p.add_argument("--block-size", type=_positive_int, metavar="N",
                   help="tile size (default: chosen from n, the workers and --budget)")
    p.add_argument("--t", type=float, default=1.0, metavar="T", help="scale of A (default 1)")
    p.add_argument("--d", type=float, default=0.0, metavar="D", help="diagonal shift, jitter (default 0)")
    _add_where(p)
    p.add_argument("--budget", metavar="SIZE",
                   help="memory budget per worker for tiles, such as 2GiB (default: dask config dlogdet.memory.budget); "
                        "a matrix larger than half the summed budgets runs out of core, from an on-disk tile store")
    p.add_argument("--scratch", metavar="DIR",
                   help="directory of the tile store of an out-of-core run (default: dask config dlogdet.scratch or "
                        "the system's temporary directory; on a cluster, a file system every worker sees); a run "
                        "that was killed resumes from it when started again with the same arguments")
    p.add_argument("--backend", choices=("auto", "numpy", "cupy"), default=None,
                   help="compute backend of the tiles (default: dask config dlogdet.backend, auto)")
    p.add_argument("--method", choices=("exact", "slq", "nystrom", "freedecomp", "auto"), default="exact",
                   help="exact (tiled factorization, the default); slq (stochastic Lanczos quadrature with an error "
                        "bar); nystrom (randomized Nystrom: guaranteed bounds for d > 0); freedecomp (free "
                        "decompression of random --n0 x --n0 submatrix spectra, a scalar --d); auto (exact when it "
                        "fits the budget and time, else preconditioned slq)")
    p.add_argument("--rtol", type=float, default=None, metavar="R",
                   help="slq/auto: relative tolerance of the error bar (default 0.01)")
    p.add_argument("--rank", type=_positive_int, default=None, metavar="K",
                   help="nystrom: rank of the approximation (default min(n, 200)); slq: rank of a Nystrom "
                        "preconditioner")
    p.add_argument("--seed", type=int, default=None,
                   help="slq/nystrom: seed of the probes and sketches; freedecomp: of the submatrices")
    _add_freedecomp_args(p, plot_help="freedecomp: save the submatrix histogram, the fitted and the decompressed "
                                      "densities (.png, .svg or .pdf)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_common(p, argparse.SUPPRESS)
    p.set_defaults(func=cmd_logdet)

    sp = sub.add_parser("spectrum", help="spectrum of a large matrix by free decompression of small submatrices",
                        description="Eigenvalues of random n0 x n0 principal submatrices (one task each, on the "
                                    "cluster), an algebraic spectral curve fitted to them and decompressed to the "
                                    "size of the matrix (or --sizes): support, atoms, moments and mean log.")
    sp.add_argument("path", metavar="PATH", help="a .npy file (memory-mapped tile by tile) or a zarr directory")
    sp.add_argument("--sizes", metavar="N[,N...]", default=None,
                    help="sizes at which to read the law (default: the order of the matrix)")
    sp.add_argument("--t", type=float, default=1.0, metavar="T", help="scale of A (default 1)")
    sp.add_argument("--seed", type=int, default=None, help="seed of the submatrices")
    _add_freedecomp_args(sp, plot_help="save the submatrix histogram, the fitted and the decompressed densities "
                                       "(.png, .svg or .pdf)", required=True)
    spw = sp.add_mutually_exclusive_group()
    spw.add_argument("--workers", type=_positive_int, metavar="K",
                     help="start a local cluster of K worker processes on loopback for this run")
    spw.add_argument("--scheduler", metavar="ADDRESS", help="run on the Dask scheduler at ADDRESS")
    spw.add_argument("--cluster", metavar="NAME", help=CLUSTER_HELP)
    sp.add_argument("--backend", choices=("auto", "numpy", "cupy"), default=None,
                    help="where the submatrix eigenvalues are computed (default: dask config dlogdet.backend)")
    sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _add_common(sp, argparse.SUPPRESS)
    sp.set_defaults(func=cmd_spectrum, no_progress=True)

    q = sub.add_parser("demo", help="compare with numpy.linalg.slogdet on a kernel matrix, on a local cluster",
                       description="Start a local cluster on loopback, compute the log-determinant of a "
                                   "built-in kernel matrix (tiles generated on the workers) and compare it with "
                                   "numpy.linalg.slogdet on the dense matrix. Exits 1 if they differ by more "
                                   "than 1e-8 relative.")
    q.add_argument("--n", type=_order, default=4000, help="order of the matrix (default 4000)")
    q.add_argument("--workers", type=_positive_int, default=2, metavar="K", help="worker processes (default 2)")
    q.add_argument("--kernel", choices=KERNELS, default="rbf", help="covariance kernel (default rbf)")
    q.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    q.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_common(q, argparse.SUPPRESS)
    q.set_defaults(func=cmd_demo)

    r = sub.add_parser("plan", help="dry run: tile size, tasks, memory, disk, flops and predicted time of a run",
                       description="Dry run of an exact log-determinant of an n x n matrix on K workers under a "
                                   "memory budget per worker: tile size, panels, tiles, tasks, in-memory or "
                                   "on-disk tile store, resident tiles, bytes read and written, scratch disk, "
                                   "flops and a predicted time, in closed form (nothing is built or run).")
    r.add_argument("--n", type=_positive_int, required=True, metavar="N", help="order of the matrix")
    r.add_argument("--workers", type=_positive_int, required=True, metavar="K", help="Dask workers")
    r.add_argument("--budget", metavar="SIZE",
                   help="host memory per worker such as 80GB (default: dask config dlogdet.memory.budget)")
    r.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    r.add_argument("--assume", choices=("spd", "sym", "gen"), default="spd",
                   help="spd (Cholesky, the default), sym (LDL^T) or gen (LU)")
    r.add_argument("--block-size", type=_positive_int, metavar="N", help="plan this tile size instead of choosing")
    r.add_argument("--gpus-per-worker", type=_int_at_least(0), default=0, metavar="G",
                   help="GPUs per worker (default 0: CPU workers); needs --gpu-memory")
    r.add_argument("--gpu-memory", metavar="SIZE", help="memory of one GPU such as 80GB")
    r.add_argument("--calibrate", action="store_true",
                   help="measure the GEMM and disk rates here (about a second) instead of the defaults")
    r.add_argument("--gemm-flops", type=float, metavar="RATE", help="flop/s of one task slot (overrides)")
    r.add_argument("--io-bytes", type=float, metavar="RATE", help="disk bytes/s of one worker (overrides)")
    r.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _add_common(r, argparse.SUPPRESS)
    r.set_defaults(func=cmd_plan)

    k = sub.add_parser("ntk", help="log-determinant of the empirical NTK of a (trained) network on a data set",
                       description="Build a model of the zoo, optionally train it (optax, Adam), and compute the "
                                   "log-determinant of its empirical NTK on n points of a locally generated data "
                                   "set through the exact engine; NTK tiles are computed on the workers.")
    k.add_argument("--model", choices=NTK_MODELS, default="mlp", help="model of the zoo (default mlp)")
    k.add_argument("--dataset", choices=("mnist1d", "digits", "synthetic"), default="mnist1d",
                   help="data set, generated or shipped locally, no download (default mnist1d)")
    k.add_argument("--n", type=_positive_int, default=1000, metavar="N", help="points (default 1000)")
    k.add_argument("--outputs", choices=("full", "trace"), default="trace",
                   help="full: the n*O x n*O NTK (O outputs per point); trace: the n x n kernel averaged over "
                        "outputs (default)")
    k.add_argument("--implementation", choices=("auto", "jacobian", "ntvp", "structured"), default="auto",
                   help="NTK algorithm (default auto: structured for zoo models)")
    k.add_argument("--train-steps", type=int, default=0, metavar="K", help="Adam steps before the NTK (default 0)")
    k.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and training (default 0)")
    k.add_argument("--d", type=float, default=0.0, metavar="D", help="diagonal shift, jitter (default 0)")
    k.add_argument("--block-size", type=_positive_int, metavar="N", help="tile size (default: automatic)")
    _add_where(k)
    k.add_argument("--budget", metavar="SIZE", help="memory budget per worker for tiles, such as 2GiB")
    k.add_argument("--scratch", metavar="DIR", help="directory of the tile store of an out-of-core run")
    k.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    k.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_common(k, argparse.SUPPRESS)
    k.set_defaults(func=cmd_ntk, backend=None)

    e = sub.add_parser("extrapolate", help="scaling-law extrapolation of log det from random subsamples",
                       description="Estimate log det of the matrix of n_total points from exact factorizations of "
                                   "random subsamples of n_sub points: the fitted scaling law of the leading "
                                   "log-determinants, read at n_total, with an error bar that includes the model "
                                   "error. SOURCE-SPEC: a .npy file or zarr directory; "
                                   "kernel:NAME[:n=N,d=D,lengthscale=L,variance=V,jitter=J,seed=S] (N points "
                                   "uniform in the unit cube); or ntk:MODEL:DATASET[:n=N,outputs=full|trace,"
                                   "train_steps=K,seed=S] (the NTK of a model of the zoo on a local data set).")
    e.add_argument("spec", metavar="SOURCE-SPEC", help="a .npy file or zarr directory, kernel:NAME:..., ntk:MODEL:DATA:...")
    e.add_argument("--n-total", type=_positive_int, default=None, metavar="N",
                   help="points of the full data set (default: the points of the source)")
    e.add_argument("--n-sub", type=_positive_int, required=True, metavar="S", help="points per random subsample")
    e.add_argument("--subsamples", type=_positive_int, default=1, metavar="K",
                   help="independent subsamples, each one exact factorization (default 1)")
    e.add_argument("--window", metavar="N0,N1", default="auto",
                   help="fit window in points of the subsample, 1 <= N0 < N1 <= S (default auto: held-out validation)")
    e.add_argument("--order", metavar="Q,R", default="auto",
                   help="orders q, r of the family (default auto: held-out validation)")
    e.add_argument("--seed", type=int, default=None, help="seed of the subsamples")
    e.add_argument("--family", choices=("auto", "issue", "boxcox"), default="auto",
                   help="curve that gives the estimate: the issue's family, the Box-Cox curvature probe's (same "
                        "band), or auto (default): the probe where the model has a rank boundary between the "
                        "subsample and the full set (a full-output NTK's layer), the family elsewhere")
    e.add_argument("--weights", choices=("inverse-variance",), default=None,
                   help="weigh the increments of the least squares by their inverse local variance (default: "
                        "equal weights)")
    e.add_argument("--d", type=float, default=0.0, metavar="D", help="diagonal shift, jitter (default 0)")
    _add_where(e)
    e.add_argument("--plot", metavar="PATH", help="save a plot of the curve, the fit and the band (.png or .svg)")
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _add_common(e, argparse.SUPPRESS)
    e.set_defaults(func=cmd_extrapolate, no_progress=True)

    rp = sub.add_parser("report", help="plots of a finished run (the JSON --json printed) as HTML or PNG",
                        description="Render the plots of a finished run: factorization progress and memory per "
                                    "worker over time (exact), the scaling-law curve with its band (extrapolate), "
                                    "spectra (nystrom, freedecomp), to a self-contained HTML page or a PNG.")
    rp.add_argument("result", metavar="RESULT.json", help="the JSON that a dlogdet command printed with --json")
    rp.add_argument("-o", "--output", metavar="PATH", required=True, help="the report file: .html or .png")
    _add_common(rp, argparse.SUPPRESS)
    rp.set_defaults(func=cmd_report)
    return parser


# -------------------------------------------------------------------------------------------------- progress


def _clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    s = int(round(max(seconds, 0.0)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_progress(p: Progress, width: int = 24) -> str:
    """One line of progress: a bar of the work done, tiles and panels done/total, elapsed time and ETA.

    The bar and the percentage follow ``p.work_fraction`` (flops, not panels: late panels are cheaper).

    Parameters
    ----------
    p : dlogdet.runtime.Progress
    width : int
        Characters of the bar between the brackets.

    Returns
    -------
    str
        Without a line ending, e.g. ``[#######.........]  42% tiles 30/55 panels 4/10 elapsed 00:12 ETA 00:16``.
    """
    f = min(max(float(p.work_fraction), 0.0), 1.0)
    fill = int(f * width)
    bar = "#" * fill + "." * (width - fill)
    eta = 0.0 if p.panels_done >= p.panels_total else p.eta
    return (f"[{bar}] {f * 100:3.0f}% tiles {p.tiles_done}/{p.tiles_total} panels {p.panels_done}/{p.panels_total}"
            f" elapsed {_clock(p.elapsed)} ETA {_clock(eta)}")


class ProgressBar:
    """A progress bar on one ``\\r``-updated line of a stream, fed by ``dlogdet.logdet(progress=...)``.

    Use it as a context manager: leaving it ends the line with a newline if anything was drawn.

    Parameters
    ----------
    stream : text stream
        Where to draw (a terminal: stderr).
    min_interval : float
        Seconds between redraws (the first and the last state are always drawn).
    refresh : float or None
        Seconds between redraws of the last state while no panel finishes, so that the elapsed time and the ETA
        keep moving during a long panel (which may take minutes); ``None``: redraw only on updates.
    """

    def __init__(self, stream: TextIO, min_interval: float = 0.1, refresh: float | None = 1.0):
        self.stream = stream
        self.min_interval = min_interval
        self.refresh = refresh
        self._last_draw = -math.inf
        self._width = 0
        self._lock = threading.Lock()
        self._latest: tuple[Progress, float] | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        final = p.panels_done >= p.panels_total
        with self._lock:
            self._latest = (p, now)
            if not final and self._width and now - self._last_draw < self.min_interval:
                return
            self._draw(p, now)
        if self.refresh and self._ticker is None and not final:
            self._ticker = threading.Thread(target=self._tick, name="dlogdet-progress", daemon=True)
            self._ticker.start()

    def _draw(self, p: Progress, now: float) -> None:
        line = format_progress(p)
        pad = " " * max(self._width - len(line), 0)  # clear what a longer previous line left behind
        self.stream.write("\r" + line + pad)
        self.stream.flush()
        self._width = len(line)
        self._last_draw = now

    def _tick(self) -> None:
        while not self._stop.wait(self.refresh):
            with self._lock:
                if self._latest is None or not self._width:
                    continue
                p, at = self._latest
                if p.panels_done >= p.panels_total:
                    return
                now = time.monotonic()
                if now - self._last_draw >= self.refresh:
                    self._draw(dataclasses.replace(p, elapsed=p.elapsed + (now - at)), now)

    def close(self) -> None:
        """Stop redrawing and end the line (once) if anything was drawn."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            if self._width:
                self.stream.write("\n")
                self.stream.flush()
                self._width = 0

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def _progress(args: argparse.Namespace) -> Iterator[ProgressBar | None]:
    """A progress bar on stderr if it is a terminal and neither --json nor --no-progress was given."""
    stream = sys.stderr
    isatty = getattr(stream, "isatty", None)
    if args.json or args.no_progress or not (isatty and isatty()):
        yield None
        return
    with ProgressBar(stream) as bar:
        yield bar


# --------------------------------------------------------------------------------------------------- clients


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def local_client(n_workers: int, dashboard_address: str = "127.0.0.1:0") -> Iterator[Any]:
    """A ``distributed.Client`` of a ``LocalCluster`` of worker processes on loopback, closed on exit.

    One thread per worker, since the tasks are BLAS calls pinned to one thread each. The workers' own logs are
    silenced below CRITICAL (unless the library logs at INFO, ``-v``): an input error raised in a task reaches
    the user once, as the CLI's one-line message, not also as a worker's "Compute Failed" traceback.
    """
    from distributed import Client, LocalCluster

    quiet = logging.getLogger("dlogdet").getEffectiveLevel() > logging.INFO
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=dashboard_address,
                      silence_logs=logging.CRITICAL if quiet else logging.WARNING) as cluster, \
            Client(cluster) as client:
        yield client


@contextlib.contextmanager
def _client_for(args: argparse.Namespace) -> Iterator[Any]:
    """The client of ``--workers`` / ``--scheduler`` / ``--cluster``, or None (dlogdet's default: active client or
    threads)."""
    if args.workers:
        with local_client(args.workers) as client:
            print(f"{PROG}: dashboard: {client.dashboard_link}", file=sys.stderr, flush=True)
            yield client
    elif args.scheduler or getattr(args, "cluster", None):
        from .deploy import connect

        with connect(args.scheduler or args.cluster) as client:
            if getattr(args, "cluster", None):
                print(f"{PROG}: dashboard: {client.dashboard_link}", file=sys.stderr, flush=True)
            yield client
    else:
        yield None


# ------------------------------------------------------------------------------------------------ formatting


def format_bytes(n: float | None) -> str:
    """``1536`` → ``"1.5 KiB"``; None → ``"n/a"``."""
    if n is None:
        return "n/a"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _peak_memory(diag: Mapping[str, Any]) -> list[str]:
    rss = dict(diag.get("peak_rss_bytes_per_worker") or {})
    managed = dict(diag.get("peak_managed_bytes_per_worker") or {})
    out = []
    for name in sorted(set(rss) | set(managed), key=str):
        s = f"{name}: {format_bytes(rss.get(name))} RSS"
        if name in managed:
            s += f" ({format_bytes(managed[name])} managed)"
        out.append(s)
    return out


def _summary(rows: Sequence[tuple[str, Any]]) -> str:
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def format_result(r: Any) -> str:
    """The human summary of a :class:`dlogdet.LogdetResult` printed by ``dlogdet logdet``."""
    diag = r.diagnostics
    rows: list[tuple[str, Any]] = [
        ("logdet", repr(r.logdet)),
        ("sign", f"{r.sign:+.0f}"),
        ("n", r.n),
        ("dtype", r.dtype),
        ("assume", r.assume),
    ]
    if r.inertia is not None:
        i = r.inertia
        rows.append(("inertia", f"{i.positive} positive, {i.negative} negative, {i.zero} zero"))
    if r.status != "ok":
        rows.append(("status", r.status))
    if r.method != "exact":
        rows.append(("method", r.method + (f" (auto: {diag['auto']['reason']})" if "auto" in diag else "")))
    if "error_bar" in diag and r.stderr is not None:
        rows.append(("error bar", f"± {diag['error_bar']:.6g} ({100 * diag['error_bar'] / abs(r.logdet):.3g}%; "
                                  f"{diag.get('confidence', 0.95):g} confidence, quadrature bias "
                                  f"{diag.get('bias_bound', 0.0):.3g} included)"))
    if r.lower is not None and r.upper is not None:
        rows.append(("bounds", f"[{r.lower!r}, {r.upper!r}] (guaranteed)"))
    if r.method == "freedecomp" and "degrees" in diag:
        if r.stderr is not None:
            rows.append(("stderr", f"{r.stderr:.6g} ({100 * r.stderr / abs(r.logdet):.3g}%)"
                         if math.isfinite(r.logdet) and r.logdet != 0 else f"{r.stderr:.6g}"))
        rows.append(("submatrices", f"{diag['samples']} x n0 = {diag['n0']}, decompressed to n = {diag['n_total']}"))
        rows.append(("curve", f"degrees {tuple(diag['degrees'])}, {diag['scale']} scale"))
        rows.append(("support", ", ".join(f"[{a:.6g}, {b:.6g}]" for a, b in diag["support"])))
        if diag.get("atoms_n"):
            rows.append(("atoms", ", ".join(f"{a['weight']:.4f} at {a['location']:.6g}" for a in diag["atoms_n"])))
    if "matvecs" in diag:
        rows.append(("matvecs", f"{diag['matvecs']} in {diag.get('passes', '?')} passes ({diag.get('product')})"))
    if "wall_time" in diag:
        rows.append(("wall time", f"{diag['wall_time']:.3f} s"))
    if "block_size" in diag:
        rows.append(("block size", f"{diag['block_size']} ({diag.get('n_panels', '?')} panels, "
                                   f"{diag.get('n_tiles', '?')} tiles)"))
    if "n_tasks" in diag:
        rows.append(("tasks", diag["n_tasks"]))
    if "scheduler" in diag:
        rows.append(("scheduler", diag["scheduler"]))
    if diag.get("mode") == "store":
        rows.append(("mode", f"out of core (tile store {diag.get('scratch')}), resumed from step "
                             f"{diag.get('resumed_from_step', 0)}, {diag.get('tasks_computed', '?')} tasks computed"))
    if diag.get("budget"):
        tracked = diag.get("peak_tracked_bytes_per_worker") or {}
        line = f"{diag['budget'] / 2**20:.1f} MiB per worker"
        if tracked:
            line += "; peak tracked " + ", ".join(f"{w}: {b / 2**20:.1f} MiB" for w, b in sorted(tracked.items()))
        rows.append(("budget", line))
    peaks = _peak_memory(diag)
    if peaks:
        rows.append(("peak memory", "; ".join(peaks)))
    return _summary(rows)


# -------------------------------------------------------------------------------------------------- commands


def cmd_logdet(args: argparse.Namespace) -> int:
    """``dlogdet logdet PATH ...``: compute and print."""
    from .api import logdet

    options: dict[str, Any] = {}
    if args.backend is not None:
        options["backend"] = args.backend
    if args.scratch is not None:
        options["scratch"] = args.scratch
    method = args.method
    fd = [f for f, v in (("--n0", args.n0), ("--samples", args.samples), ("--degrees", args.degrees),
                         ("--scale", args.scale), ("--plot", args.plot)) if v is not None]
    if method == "freedecomp":
        if args.rtol is not None or args.rank is not None:
            raise InputError("--rtol and --rank do not apply to --method freedecomp; its accuracy is set by --n0 "
                             "and --samples")
        if args.n0 is None:
            raise InputError("--method freedecomp needs --n0 N (the submatrix size, e.g. n // 8)")
        for key in ("n0", "samples", "degrees", "scale", "seed"):
            if getattr(args, key) is not None:
                options[key] = getattr(args, key)
    elif fd:
        raise InputError(f"{', '.join(fd)}: only for --method freedecomp")
    elif method == "exact":
        given = [f for f, v in (("--rtol", args.rtol), ("--rank", args.rank), ("--seed", args.seed)) if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} apply to --method slq, nystrom or auto, not to exact")
    else:
        if args.rtol is not None:
            if method == "nystrom":
                raise InputError("--rtol applies to --method slq or auto; nystrom's accuracy is set by --rank")
            options["rtol"] = args.rtol
        if args.rank is not None:
            options["rank" if method == "nystrom" else "precondition"] = args.rank
        if args.seed is not None:
            options["seed"] = args.seed
    from .estimators import options_of

    with _client_for(args) as client, _progress(args) as bar:
        if bar is not None and "progress" in options_of(method):
            options["progress"] = bar
        r = logdet(args.path, method=method, assume=args.assume, t=args.t, d=args.d, block_size=args.block_size,
                   budget=args.budget, client=client, **options)
    if method == "freedecomp" and args.plot:
        _plot_freedecomp(r.diagnostics["submatrix_eigenvalues"], r.diagnostics["n0"], r.diagnostics["degrees"],
                         r.diagnostics["scale"], [r.diagnostics["n_total"]], args.plot)
    print(r.to_json() if args.json else format_result(r), flush=True)
    return 0


def _plot_freedecomp(eigs, n0: int, degrees, scale: str, sizes, path: str) -> None:
    from .freecurve import fit_curve, plot_decompression

    cur = fit_curve(np.ravel(eigs), int(n0), degrees=tuple(degrees), scale=scale)
    plot_decompression(cur, sizes=[int(v) for v in sizes if v > n0], path=path)


def cmd_spectrum(args: argparse.Namespace) -> int:
    """``dlogdet spectrum PATH --n0 N``: submatrix spectra, the fitted curve and the law at the matrix's size."""
    from .api import spectrum
    from .spectra import fit_spectra

    samples = 4 if args.samples is None else args.samples
    degrees = "auto" if args.degrees is None else args.degrees
    auto = degrees == "auto"
    nested = tuple(k for k in (args.n0 // 4, args.n0 // 2) if k >= 40) if auto else ()
    t0 = time.perf_counter()
    with _client_for(args) as client:
        sp = spectrum(args.path, n0=args.n0, samples=samples, seed=args.seed, nested=nested, t=args.t,
                      backend=args.backend, client=client)
    sizes = [sp.n] if args.sizes is None else [int(v) for v in str(args.sizes).split(",")]
    cur, selection = fit_spectra(sp, n_target=max(sizes), degrees=degrees, scale=args.scale or "auto")
    laws = []
    for n in sizes:
        dec = cur.decompress(n)
        laws.append({"n": n, "support": [list(map(float, iv)) for iv in dec.intervals],
                     "atoms": [{"location": a.location, "weight": a.weight} for a in dec.atoms],
                     "mass": dec.mass, "moments": [float(v) for v in dec.moments(2)],
                     "mean_log": dec.mean_log() if dec.intervals[0][0] > 0 else None})
    if args.plot:
        from .freecurve import plot_decompression

        plot_decompression(cur, sizes=[n for n in sizes if n > cur.n0], path=args.plot)
    out = {"n": sp.n, "n0": cur.n0, "samples": sp.samples, "degrees": list(cur.degrees), "scale": cur.scale_kind,
           "fit_residual": cur.residual, "atoms_n0": [{"location": a.location, "weight": a.weight}
                                                      for a in cur.atoms],
           "selection": [{"degrees": list(r["degrees"]), "score": r["score"], "chosen": r.get("chosen", False)}
                         for r in selection],
           "laws": laws, "wall_time": time.perf_counter() - t0}
    if args.json:
        print(json.dumps(out, default=float), flush=True)
        return 0
    rows: list[tuple[str, Any]] = [
        ("submatrices", f"{sp.samples} x {cur.n0} of n = {sp.n} (eigenvalues in [{sp.pooled()[0]:.6g}, "
                        f"{sp.pooled()[-1]:.6g}])"),
        ("curve", f"degrees {cur.degrees}, {cur.scale_kind} scale, fit residual {cur.residual:.2g}"),
    ]
    for law in laws:
        bulks = ", ".join(f"[{a:.6g}, {b:.6g}]" for a, b in law["support"])
        atoms = ", ".join(f"{a['weight']:.4f} at {a['location']:.6g}" for a in law["atoms"]) or "none"
        ml = "" if law["mean_log"] is None else f", mean log {law['mean_log']:.6g}"
        rows.append((f"n = {law['n']}", f"bulks {bulks}; atoms {atoms}; mean {law['moments'][1]:.6g}"
                                        f"{ml}"))
    rows.append(("wall time", f"{out['wall_time']:.3f} s"))
    if args.plot:
        rows.append(("plot", args.plot))
    print(_summary(rows), flush=True)
    return 0


DEMO_RTOL = 1e-8


def _check_reference_fits(n: int) -> None:
    import psutil

    need = 2 * 8 * n * n  # the dense matrix and the LU copy that slogdet makes
    avail = psutil.virtual_memory().available
    if need > avail:
        raise InputError(f"--n {n} is too large for the reference: numpy.linalg.slogdet needs about "
                         f"{format_bytes(need)} here but {format_bytes(avail)} is available; choose a smaller --n")


def cmd_demo(args: argparse.Namespace) -> int:
    """``dlogdet demo``: dlogdet on a local cluster against ``numpy.linalg.slogdet``; exit 1 if they differ."""
    import numpy as np

    from .api import logdet
    from .sources import KernelSource

    n = args.n
    _check_reference_fits(n)
    x = np.random.default_rng(0).uniform(size=(n, 3))  # n points in the unit cube [0, 1]^3
    src = KernelSource(x, kernel=args.kernel, lengthscale=0.5, variance=1.0, jitter=1e-3)
    human = not args.json
    dash = "127.0.0.1:8787" if _port_free("127.0.0.1", 8787) else "127.0.0.1:0"
    with local_client(args.workers, dash) as client:
        link = client.dashboard_link
        print(f"dashboard: {link}", file=sys.stdout if human else sys.stderr, flush=True)
        if human:
            print(f"matrix: {src!r} on {n} points uniform in [0, 1]^3 (seed 0), tiles generated on "
                  f"{args.workers} worker(s)", flush=True)
        t0 = time.perf_counter()
        with _progress(args) as bar:
            r = logdet(src, client=client, progress=bar)
        t_dlogdet = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref_sign, ref_logdet = np.linalg.slogdet(src.dense())
    t_numpy = time.perf_counter() - t0
    ref_sign, ref_logdet = float(ref_sign), float(ref_logdet)

    abs_diff = abs(r.logdet - ref_logdet)
    rel_diff = abs_diff / abs(ref_logdet) if ref_logdet != 0 else abs_diff
    ok = r.sign == ref_sign and rel_diff < DEMO_RTOL
    diag = r.diagnostics
    if args.json:
        import json

        print(json.dumps({"n": n, "kernel": args.kernel, "workers": args.workers, "dashboard": link,
                          "dlogdet": {**r.to_dict(), "wall_time_total": t_dlogdet},
                          "numpy": {"logdet": ref_logdet, "sign": ref_sign, "wall_time": t_numpy},
                          "abs_diff": abs_diff, "rel_diff": rel_diff, "rtol": DEMO_RTOL, "ok": ok}), flush=True)
    else:
        peaks = _peak_memory(diag) or ["n/a"]
        print(_summary([
            ("dlogdet logdet", f"{r.logdet!r} (sign {r.sign:+.0f})"),
            ("numpy slogdet", f"{ref_logdet!r} (sign {ref_sign:+.0f})"),
            ("abs difference", f"{abs_diff:.3e}"),
            ("rel difference", f"{rel_diff:.3e} (must be < {DEMO_RTOL:g})"),
            ("dlogdet wall time", f"{t_dlogdet:.3f} s ({diag.get('wall_time', math.nan):.3f} s in the graph)"),
            ("numpy wall time", f"{t_numpy:.3f} s (dense matrix built and factored on the client)"),
            ("block size", f"{diag.get('block_size')} ({diag.get('n_panels')} panels)"),
            ("tasks", diag.get("n_tasks")),
            ("scheduler", diag.get("scheduler")),
            ("peak memory/worker", "; ".join(peaks)),
        ]), flush=True)
    if not ok:
        print(f"{PROG}: error: dlogdet and numpy.linalg.slogdet disagree: logdet {r.logdet!r} (sign "
              f"{r.sign:+.0f}) vs {ref_logdet!r} (sign {ref_sign:+.0f}), relative difference {rel_diff:.3e} "
              f"is not below {DEMO_RTOL:g}", file=sys.stderr, flush=True)
        return 1
    return 0


NTK_MODELS = tuple(NTK_REGISTRY)


def cmd_ntk(args: argparse.Namespace) -> int:
    """``dlogdet ntk --model M --dataset D --n N ...``: train (optionally), build the NTK source, compute."""
    from . import ntk
    from .api import logdet

    if args.train_steps < 0:
        raise InputError(f"--train-steps must be >= 0, got {args.train_steps}")
    x, y = ntk.load_dataset(args.dataset, args.n, seed=args.seed)
    f, params = build_model(args.model, x.shape[1], int(np.max(y)) + 1, seed=args.seed)
    history = None
    t0 = time.perf_counter()
    if args.train_steps:
        params, history = ntk.train(f, params, x, y, steps=args.train_steps, seed=args.seed)
    t_train = time.perf_counter() - t0
    src = ntk.NTKSource(f, params, x, outputs=args.outputs, implementation=args.implementation)
    options: dict[str, Any] = {}
    if args.scratch is not None:
        options["scratch"] = args.scratch
    with _client_for(args) as client, _progress(args) as bar:
        r = logdet(src, d=args.d, block_size=args.block_size, budget=args.budget, client=client, progress=bar,
                   **options)
    if args.json:
        out = r.to_dict()
        out["ntk"] = {"model": args.model, "dataset": args.dataset, "n_points": args.n, "outputs": args.outputs,
                      "implementation": src.implementation, "m": src.n, "train_steps": args.train_steps,
                      "train_time": t_train,
                      "final_loss": float(history["loss_final"]) if history is not None else None,
                      "final_accuracy": float(history["accuracy_final"]) if history is not None else None}
        print(json.dumps(out), flush=True)
    else:
        print(f"NTK of {args.model} on {args.n} points of {args.dataset} ({args.outputs} outputs: m = {src.n}, "
              f"{src.implementation}), trained {args.train_steps} steps in {t_train:.1f} s"
              + (f" (loss {history['loss_initial']:.3f} -> {history['loss_final']:.3f}, accuracy "
                 f"{history['accuracy_final']:.2f})" if history is not None else ""), flush=True)
        print(format_result(r), flush=True)
    return 0


def _spec_options(text: str, allowed: dict[str, type]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in allowed:
            raise InputError(f"cannot read {item!r} in a source spec: use key=value with keys {', '.join(allowed)}")
        try:
            out[key] = allowed[key](value)
        except ValueError:
            raise InputError(f"cannot read {key}={value!r} in a source spec as {allowed[key].__name__}") from None
    return out


def source_from_spec(spec: str):
    """A tile source from a SOURCE-SPEC: a path, ``kernel:NAME[:k=v,...]`` or ``ntk:MODEL:DATASET[:k=v,...]``."""
    from .sources import KERNELS, KernelSource, as_source

    parts = spec.split(":")
    if parts[0] == "kernel":
        if len(parts) < 2 or parts[1] not in KERNELS:
            raise InputError(f"a kernel spec is kernel:NAME[:n=...,d=...] with NAME one of {', '.join(KERNELS)}; "
                             f"got {spec!r}")
        o = {"n": 4000, "d": 2, "lengthscale": 0.2, "variance": 1.0, "jitter": 1e-8, "seed": 0}
        o.update(_spec_options(":".join(parts[2:]), {"n": int, "d": int, "lengthscale": float, "variance": float,
                                                     "jitter": float, "seed": int}))
        if o["n"] < 1 or o["d"] < 1:
            raise InputError(f"a kernel spec needs n >= 1 and d >= 1, got n={o['n']}, d={o['d']}")
        x = np.random.default_rng(o["seed"]).uniform(size=(o["n"], o["d"]))
        return KernelSource(x, parts[1], lengthscale=o["lengthscale"], variance=o["variance"], jitter=o["jitter"])
    if parts[0] == "ntk":
        from . import ntk

        if len(parts) < 3 or parts[1] not in NTK_MODELS:
            raise InputError(f"an NTK spec is ntk:MODEL:DATASET[:n=...,outputs=...] with MODEL one of "
                             f"{', '.join(NTK_MODELS)}; got {spec!r}")
        o = {"n": 1000, "outputs": "full", "train_steps": 0, "seed": 0}
        o.update(_spec_options(":".join(parts[3:]), {"n": int, "outputs": str, "train_steps": int, "seed": int}))
        x, y = ntk.load_dataset(parts[2], o["n"], seed=o["seed"])
        f, params = build_model(parts[1], x.shape[1], int(np.max(y)) + 1, seed=o["seed"])
        if o["train_steps"]:
            params, _ = ntk.train(f, params, x, y, steps=o["train_steps"], seed=o["seed"])
        return ntk.NTKSource(f, params, x, outputs=o["outputs"])
    return as_source(spec)


def _pair(text: str, what: str):
    if text == "auto":
        return "auto"
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--{what} must be 'auto' or two integers such as 10,750; got {text!r}") from None
    return (a, b)


def plot_extrapolation(r: Any, path: str) -> None:
    """Save a plot of ℓ_k of the subsamples, the fitted curve out to n_total, and the estimate with its band
    (:func:`dlogdet.report.plot_extrapolation`)."""
    from . import report

    plt = report._pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    report.plot_extrapolation(r, ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cmd_extrapolate(args: argparse.Namespace) -> int:
    """``dlogdet extrapolate SOURCE-SPEC --n-sub S [--n-total N]``: subsample, factor, fit, print (and plot)."""
    from .api import extrapolate

    if args.plot and not args.plot.lower().endswith((".png", ".svg")):
        raise InputError(f"--plot must name a .png or .svg file, got {args.plot!r}")
    window, order = _pair(args.window, "window"), _pair(args.order, "order")
    src = source_from_spec(args.spec)
    with _client_for(args) as client:
        r = extrapolate(src, args.n_total, n_sub=args.n_sub, window=window, order=order,
                        subsamples=args.subsamples, seed=args.seed, d=args.d, client=client, family=args.family,
                        weights=args.weights)
    if args.plot:
        plot_extrapolation(r, args.plot)
    dg = r.diagnostics
    if args.json:
        from .report import compact_curves

        out = r.to_dict()
        for key in ("points", "candidates"):
            out["diagnostics"].pop(key, None)
        out["diagnostics"]["ell"] = compact_curves(dg["ell"])  # ≤ 200 log-spaced k per curve: `dlogdet report`
        print(json.dumps(out), flush=True)
    else:
        lo, hi = dg["band"]
        comp = dg["components"]
        print(_summary([
            ("logdet (estimate)", repr(r.logdet)),
            ("stderr", f"{r.stderr:.6g} ({100 * r.stderr / abs(r.logdet):.3g}%): stat {comp['stat']:.3g}, "
                       f"validation {comp['validation']:.3g}, selection {comp['selection']:.3g}, "
                       f"law {comp['law']:.3g}, curvature {comp['curvature']:.3g}"),
            ("band (± 2 stderr)", f"[{lo!r}, {hi!r}]"),
            ("status", r.status),
            ("n_total", f"{dg['n_total']} points ({r.n} rows), ratio {dg['extrapolation_ratio']:.3g}"),
            ("subsamples", f"{dg['subsamples']} x {dg['n_sub']} points"),
            ("window, order", f"{tuple(dg['window'])}, (q, r) = {tuple(dg['order'])}"),
            ("curvature t", f"{dg['curvature_t']:.2f} (slope change {dg['slope_change']:.2f})"),
            ("Box-Cox probe", f"gamma {dg['boxcox']['gamma']:.2f}, estimate {dg['boxcox']['estimate']!r} "
                              f"(family {dg['family']})"),
        ] + ([("rank boundaries", ", ".join(f"layer {b['layer']} at {b['points']} points"
                                            for b in dg["rank_boundaries"]))] if dg.get("rank_boundaries") else []) + [
            ("wall time", f"{dg['wall_time']:.3f} s"),
        ] + ([("plot", args.plot)] if args.plot else [])), flush=True)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``dlogdet report RESULT.json -o PATH``: the plots of a finished run, as HTML (self-contained) or PNG."""
    from .report import render

    names = render(args.result, args.output)
    print(f"{args.output}: {', '.join(names)}", flush=True)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """``dlogdet plan --n N --workers K --budget SIZE ...``: a dry run, printed as a table or one JSON object."""
    from .planner import plan

    rates = {k: v for k, v in (("gemm_flops", args.gemm_flops), ("io_bytes", args.io_bytes)) if v is not None}
    p = plan(args.n, workers=args.workers, budget=args.budget, dtype=args.dtype, assume=args.assume,
             block_size=args.block_size, gpus_per_worker=args.gpus_per_worker, gpu_memory=args.gpu_memory,
             rates=rates or None, calibrate=args.calibrate)
    print(p.to_json() if args.json else p.summary(), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------------ main


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


@contextlib.contextmanager
def _logging(verbosity: int) -> Iterator[None]:
    """A stderr handler on the ``dlogdet`` logger (WARNING; INFO with -v; DEBUG with -vv), removed on exit."""
    logger = logging.getLogger(PROG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dlogdet`` command line and return its exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 success, 1 failure, 2 bad input or usage, 130 interrupted.
    """
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"{PROG}: error: {_one_line(e)} (see {e.prog} --help)", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    try:
        with _logging(args.verbose):
            return int(args.func(args))
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except InputError as e:
        if args.debug:
            raise
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if args.debug:
            raise
        from .errors import DlogdetError

        what = "" if isinstance(e, DlogdetError) else f"{type(e).__name__}: "
        print(f"{PROG}: error: {what}{_one_line(e)} (run with --debug for the traceback)", file=sys.stderr)
        return 1
