"""What a person sees: progress bars, result tables and byte sizes (the library never imports this package).

The command line (:mod:`dlogdet.cli`), the notebook display (:mod:`dlogdet.ui.notebook`) and the dashboard page
(:mod:`dlogdet.ui.dashboard`) draw with these; a result says *what* to show about itself
(:meth:`dlogdet.LogdetResult.rows`), this package says *how*.
"""

from .progress import ProgressBar, format_progress, terminal_bar
from .text import format_bytes, format_result, table

__all__ = ["ProgressBar", "format_progress", "terminal_bar", "format_bytes", "format_result", "table"]
