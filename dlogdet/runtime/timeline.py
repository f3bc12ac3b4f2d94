"""Compact time series of a run: panels done over time and per-worker memory over time.

What ``dlogdet report`` plots after the fact (``diagnostics["timeline"]`` of an exact run). A run of hours
samples its memory thousands of times; the series keep at most ``max_points`` samples each by dropping every
other sample when full (the stride doubles), so the JSON of a result stays a few kilobytes whatever the run's
length while the first and the latest samples are always kept.
"""

from __future__ import annotations

from typing import Any


class Series:
    """Samples ``(t, *values)`` kept at a doubling stride, at most ``max_points`` of them plus the latest."""

    def __init__(self, max_points: int = 128):
        if max_points < 4:
            raise ValueError(f"max_points must be >= 4, got {max_points}")
        self.max_points = max_points
        self.stride = 1
        self.seen = 0
        self.points: list[tuple] = []
        self.last: tuple | None = None

    def add(self, t: float, *values) -> None:
        """Record one sample; kept when its index is a multiple of the current stride (the latest always is)."""
        row = (round(float(t), 3), *values)
        self.last = row
        if self.seen % self.stride == 0:
            self.points.append(row)
            if len(self.points) >= self.max_points:
                self.points = self.points[::2]
                self.stride *= 2
        self.seen += 1

    def rows(self) -> list[list]:
        out = [list(p) for p in self.points]
        if self.last is not None and (not self.points or self.points[-1] is not self.last):
            out.append(list(self.last))
        return out


class Timeline:
    """Panels done over time (every change kept up to ``max_points``) and memory per worker over time."""

    def __init__(self, max_points: int = 128):
        self.max_points = max_points
        self.panels = Series(max_points)
        self.memory: dict[str, Series] = {}
        self._done = -1

    def progress(self, t: float, panels_done: int) -> None:
        if panels_done != self._done:
            self.panels.add(t, int(panels_done))
            self._done = panels_done

    def sample(self, worker: str, t: float, rss: int | None, tracked: int | None = None) -> None:
        """One memory sample of ``worker``: its resident bytes (as last reported) and dlogdet's tracked bytes
        (the scheduler plugin's accounting of its tasks' working sets and held results; None on the threaded
        scheduler, which has no such accounting)."""
        s = self.memory.get(worker)
        if s is None:
            s = self.memory[worker] = Series(self.max_points)
        s.add(t, None if rss is None else int(rss), None if tracked is None else int(tracked))

    def to_dict(self) -> dict[str, Any]:
        """``{"panels": [[t, done], ...], "memory": {worker: [[t, rss, tracked], ...]}, "memory_columns": ...}``."""
        return {"panels": self.panels.rows(),
                "memory": {w: s.rows() for w, s in self.memory.items()},
                "memory_columns": ["t", "rss_bytes", "tracked_bytes"]}
