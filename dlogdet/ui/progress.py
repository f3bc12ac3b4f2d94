"""Progress as text: one line per state (bar of the flops done, tiles and panels, elapsed, ETA), and a bar that
redraws it in place on a terminal, fed by ``dlogdet.logdet(progress=...)``."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import threading
import time
from typing import Iterator, TextIO

from ..runtime.execute import Progress

__all__ = ["format_progress", "ProgressBar", "terminal_bar"]


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
def terminal_bar(stream: TextIO | None = None, enabled: bool = True) -> Iterator[ProgressBar | None]:
    """A :class:`ProgressBar` on ``stream`` (default stderr) when ``enabled`` and the stream is a terminal, else
    None (a pipe or a log file gets no ``\\r`` redraws)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if not enabled or not (isatty and isatty()):
        yield None
        return
    with ProgressBar(stream) as bar:
        yield bar
