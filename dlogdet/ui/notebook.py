"""Progress of a factorization in a notebook: the command line's panel-level bar, as an updating cell output.

``dlogdet.logdet(A, progress=cb)`` calls ``cb`` with a :class:`dlogdet.runtime.Progress` as panels finish. The
command line draws it with :class:`dlogdet.ui.ProgressBar`; :class:`ProgressDisplay` draws the same object with
the same text (:func:`dlogdet.ui.format_progress`: bar of the flops done, tiles and panels done/total, elapsed,
ETA) in a Jupyter output that updates in place, and as plain lines outside Jupyter::

    from dlogdet.ui.notebook import ProgressDisplay
    with ProgressDisplay() as bar:
        r = dlogdet.logdet(src, client=client, progress=bar)
"""

from __future__ import annotations

import html
import sys
import threading
import time
from typing import TextIO

from .progress import format_progress
from ..runtime.execute import Progress


def _in_notebook() -> bool:
    ip = sys.modules.get("IPython")
    shell = ip.get_ipython() if ip is not None and hasattr(ip, "get_ipython") else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class ProgressDisplay:
    """A progress callback drawing :func:`dlogdet.ui.format_progress` in a notebook cell (or on ``stream``).

    Parameters
    ----------
    stream : text stream, optional
        Write one line per update to it instead of an HTML display (default outside a notebook: stderr).
    min_interval : float
        Seconds between redraws; the first and the final state are always drawn.
    label : str
        Text in front of the bar.

    Attributes
    ----------
    lines : list of str
        Every line drawn, in order (what a test or a log can read back).
    last : Progress or None
        The latest state received.
    """

    def __init__(self, stream: TextIO | None = None, *, min_interval: float = 0.2, label: str = "dlogdet"):
        self.stream = stream
        self.min_interval = min_interval
        self.label = label
        self.lines: list[str] = []
        self.last: Progress | None = None
        self._t = -float("inf")
        self._handle = None
        self._lock = threading.Lock()
        self._html = stream is None and _in_notebook()
        if stream is None and not self._html:
            self.stream = sys.stderr

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        final = p.panels_done >= p.panels_total
        with self._lock:
            self.last = p
            if not final and self.lines and now - self._t < self.min_interval:
                return
            self._t = now
            self._draw(p)

    def _draw(self, p: Progress) -> None:
        line = format_progress(p)
        self.lines.append(line)
        if self._html:
            from IPython.display import HTML, display

            f = min(max(float(p.work_fraction), 0.0), 1.0)
            body = HTML(f"<div><b>{html.escape(self.label)}</b> <progress value='{f:.4f}' max='1' "
                        f"style='width:16em;vertical-align:middle'></progress> <code>{html.escape(line)}</code></div>")
            if self._handle is None:
                self._handle = display(body, display_id=True)
            else:
                self._handle.update(body)
        elif self.stream is not None:
            self.stream.write(f"{self.label}: {line}\n")
            self.stream.flush()

    def close(self) -> None:
        """Draw the latest state if it was skipped by the rate limit."""
        with self._lock:
            if self.last is not None and (not self.lines or self.lines[-1] != format_progress(self.last)):
                self._draw(self.last)

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
