"""The command line of dlogdet: parse, call the library, show.

``dlogdet logdet SOURCE`` computes log|det(t·A + diag(d))| of a ``.npy`` file, a zarr directory or a source spec
(``kernel:...``, ``ntk:...``: :mod:`dlogdet.sources.spec`); ``dlogdet demo`` starts a local cluster and checks the
engine against ``numpy.linalg.slogdet`` (what ``make demo`` runs); ``dlogdet --help`` lists the others.

Layout: :mod:`~dlogdet.cli.dispatch` builds the parser from the command modules and maps errors to exit codes
(0 success, 2 bad input or usage, 1 failure, 130 interrupted); one module per command (``logdet``, ``spectrum``,
``demo``, ``plan``, ``ntk``, ``extrapolate``, ``report``), each ``HELP``, ``DESCRIPTION``, ``arguments(parser)``
and ``run(args)``; :mod:`~dlogdet.cli.options` the option groups they share; :mod:`~dlogdet.cli.session` the client
and the progress bar they run with. What is shown comes from :mod:`dlogdet.ui` and from the results themselves.
"""

from ..sources.spec import source_from_spec
from ..ui import ProgressBar, format_bytes, format_progress, format_result
from .dispatch import COMMANDS, UsageError, build_parser, main
from .options import PROG
from .session import client_for, local_client

__all__ = ["main", "build_parser", "COMMANDS", "UsageError", "PROG", "source_from_spec", "ProgressBar",
           "format_progress", "format_result", "format_bytes", "local_client", "client_for"]
