"""What a command runs with: the Dask client its --workers / --scheduler / --cluster name, and a progress bar."""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import sys
from typing import Any, Iterator

from ..ui import ProgressBar, terminal_bar
from .options import PROG


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now."""
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
def client_for(args: argparse.Namespace) -> Iterator[Any]:
    """The client of ``--workers`` / ``--scheduler`` / ``--cluster``, or None (dlogdet's default: the active client
    or threads in this process)."""
    if args.workers:
        from . import local_client as start        # the package's name, which tests may replace

        with start(args.workers) as client:
            print(f"{PROG}: dashboard: {client.dashboard_link}", file=sys.stderr, flush=True)
            yield client
    elif args.scheduler or args.cluster:
        from ..runtime.deploy import connect

        with connect(args.scheduler or args.cluster) as client:
            if args.cluster:
                print(f"{PROG}: dashboard: {client.dashboard_link}", file=sys.stderr, flush=True)
            yield client
    else:
        yield None


def progress_for(args: argparse.Namespace) -> contextlib.AbstractContextManager[ProgressBar | None]:
    """A progress bar on stderr if it is a terminal and neither --json nor --no-progress was given, else None."""
    return terminal_bar(sys.stderr, enabled=not (args.json or args.no_progress))
