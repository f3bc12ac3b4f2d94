"""The ``dlogdet`` command: its parser, built from the command modules of :data:`COMMANDS`, and its exit codes.

Exit codes: 0 success; 2 bad input (any :class:`dlogdet.InputError` and command-line usage errors); 1 any other
failure; 130 interrupted. Errors are printed as one line ``dlogdet: error: <message>`` on stderr; ``--debug``
re-raises them to show the traceback. Deprecation warnings of dlogdet (an old option spelling) are printed as
``dlogdet: warning: <message>``.

A command is one module of this package with ``HELP`` (its line in ``dlogdet --help``), ``DESCRIPTION``,
``arguments(parser)`` and ``run(args) -> int``, and one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
import warnings
from typing import Iterator, NoReturn, Sequence

from .. import __version__
from ..core.errors import DlogdetDeprecationWarning, DlogdetError, InputError
from .options import PROG, add_common

#: command -> its module, in the order of ``dlogdet --help``
COMMANDS: dict[str, str] = {
    "logdet": "dlogdet.cli.logdet",
    "spectrum": "dlogdet.cli.spectrum",
    "demo": "dlogdet.cli.demo",
    "plan": "dlogdet.cli.plan",
    "ntk": "dlogdet.cli.ntk",
    "extrapolate": "dlogdet.cli.extrapolate",
    "report": "dlogdet.cli.report",
}


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``dlogdet`` command (its errors raise :class:`UsageError`)."""
    parser = _Parser(prog=PROG, description="Exact, memory-bounded, distributed log-determinants of huge dense "
                                            "matrices as Dask task graphs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_common(parser, None)
    parser.set_defaults(verbose=0, debug=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        command = importlib.import_module(module)
        p = sub.add_parser(name, help=command.HELP, description=command.DESCRIPTION)
        command.arguments(p)
        add_common(p, argparse.SUPPRESS)
        p.set_defaults(func=command.run)
    return parser


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


@contextlib.contextmanager
def _logging(verbosity: int) -> Iterator[None]:
    """A stderr handler on the ``dlogdet`` logger (WARNING; INFO with -v; DEBUG with -vv), and dlogdet's
    deprecation warnings on stderr; both removed on exit."""
    logger = logging.getLogger(PROG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)

    try:
        with warnings.catch_warnings():
            others = warnings.showwarning

            def show(message, category, *args, **kwargs):
                if issubclass(category, DlogdetDeprecationWarning):
                    print(f"{PROG}: warning: {message}", file=sys.stderr)
                else:
                    others(message, category, *args, **kwargs)

            warnings.simplefilter("always", DlogdetDeprecationWarning)
            warnings.showwarning = show
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
        what = "" if isinstance(e, DlogdetError) else f"{type(e).__name__}: "
        print(f"{PROG}: error: {what}{_one_line(e)} (run with --debug for the traceback)", file=sys.stderr)
        return 1
