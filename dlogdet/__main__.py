"""``python -m dlogdet``: the command line (see :mod:`dlogdet.cli`).

The ``__name__`` guard matters: worker processes of a ``LocalCluster`` are spawned and re-import this module.
"""

import sys

from dlogdet.cli import main

if __name__ == "__main__":
    sys.exit(main())
