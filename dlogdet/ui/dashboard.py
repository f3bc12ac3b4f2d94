"""The live page ``/dlogdet`` of the Dask dashboard: a run's tile grid, its panels and ETA, memory per worker.

:class:`DashboardPlugin` is a scheduler plugin. It is registered beside the memory accounting of
:mod:`dlogdet.runtime.budget` on every cluster a run uses (dask config ``dlogdet.scheduler-plugins``; or call
:func:`install`), and on its start it adds one Bokeh document to the scheduler's dashboard server, the way
``distributed`` adds its own pages (a ``BokehTornado`` application on the scheduler's ``http_application``).

What the page shows, refreshed twice a second while a browser has it open:

* the tile grid of the latest run (lower triangle; the whole matrix for ``assume="gen"``), each tile colored by
  its state: *waiting* (not touched yet), *in memory* (an update of it sits in a worker's memory), *on disk*
  (out of core: its current value is in the tile store), *done* (factored: its diagonal factorization or its
  panel solve finished);
* the same progress line as the command line's bar (panels done/total, tiles, elapsed, ETA from the flops left,
  :func:`dlogdet.ui.format_progress`);
* each worker's tracked bytes (the :class:`~dlogdet.runtime.budget.BudgetPlugin`'s accounting: working sets of its tasks
  plus results it holds) and their peak, against the run's budget (or against the worker's memory limit when the
  run had no budget).

The plugin learns the runs from the graphs submitted to the scheduler (the engine's keys ``potrf-TOKEN``,
``trsm-TOKEN``, ``gemm-TOKEN``...) and from the ``"dlogdet-run"`` event each run's driver logs (panels, tiles,
budget); it observes transitions, it never changes them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from distributed.diagnostics.plugin import SchedulerPlugin

from ..runtime.budget import EVENT as BUDGET_EVENT
from ..runtime.budget import RUN_EVENT, SCHEDULER_PLUGIN
from ..engine.schedule import panel_work_fraction
from ..runtime.execute import Progress

log = logging.getLogger(__name__)

PAGE = "/dlogdet"
PLUGIN = "dlogdet-dashboard"

WAITING, IN_MEMORY, ON_DISK, DONE = 0, 1, 2, 3
STATES = ("waiting", "in memory", "on disk", "done")
COLORS = ("#d9d9d9", "#fdae61", "#2c7bb6", "#1a9641")
OUTSIDE = -1  # the upper triangle of a symmetric run: not part of the factorization

FACTOR = ("potrf", "sytrf", "getrf")
UPDATE = ("gemm", "syrk")
KINDS = FACTOR + UPDATE + ("trsm", "trsmrow", "pivots", "done", "logdet")
MAX_RUNS = 8  # runs remembered by the plugin (the page shows the latest)


def _parse(key) -> tuple[str, str, tuple[int, ...]] | None:
    """``("gemm-TOKEN", 3, 2, 1)`` -> ``("gemm", "TOKEN", (3, 2, 1))``; None for keys of other graphs."""
    if isinstance(key, tuple) and key and isinstance(key[0], str):
        kind, sep, token = key[0].partition("-")
        if sep and kind in KINDS and all(isinstance(v, int) for v in key[1:]):
            return kind, token, tuple(key[1:])
    return None


class RunBoard:
    """Scheduler-side state of one factorization: the tile grid and the panels, from the graph's keys."""

    def __init__(self, token: str, nt: int, *, gen: bool, store: bool, start: int = 0):
        self.token = token
        self.nt = nt
        self.gen = gen
        self.store = store
        self.grid = np.full((nt, nt), WAITING, dtype=np.int8)
        if not gen:
            self.grid[np.triu_indices(nt, 1)] = OUTSIDE
        # a resumed out-of-core run: the steps before `start` are finished, the rest of the matrix is on disk
        self.grid[:, :start] = np.where(self.grid[:, :start] == OUTSIDE, OUTSIDE, DONE)
        if gen:
            self.grid[:start, :] = DONE
        rest = self.grid[start:, start:]
        rest[rest == WAITING] = ON_DISK if start else WAITING
        self.panels_done = start
        self.t0 = time.perf_counter()
        self.wall_started = time.time()
        self.t_end: float | None = None
        self.failed: str | None = None
        self.budget: int | None = None
        self.peaks: dict[str, int] = {}  # worker address -> peak tracked bytes (the accounting's events)
        self.tiles_total = int(np.count_nonzero(self.grid != OUTSIDE))

    @property
    def tiles_done(self) -> int:
        return int(np.count_nonzero(self.grid == DONE))

    def progress(self) -> Progress:
        """The run's progress in the form the command line draws (:class:`dlogdet.runtime.Progress`)."""
        end = self.t_end if self.t_end is not None else time.perf_counter()
        return Progress(self.panels_done, self.nt, self.tiles_done, self.tiles_total,
                        panel_work_fraction(self.nt, self.panels_done), end - self.t0)

    def finished(self, kind: str, idx: tuple[int, ...]) -> None:
        """A task of this run is in memory: move its tile (and the panel count) on."""
        if kind in FACTOR:
            self._set(idx[0], idx[0], DONE)
        elif kind == "trsm":
            self._set(idx[0], idx[1], DONE)
        elif kind == "trsmrow":
            self._set(idx[0], idx[1], DONE)
        elif kind in UPDATE:
            i, j = idx[0], idx[1]
            if self.grid[i, j] != DONE:
                self._set(i, j, ON_DISK if self.store else IN_MEMORY)
        elif kind == ("done" if self.store else "pivots"):  # the panel keys the driver's progress counts
            self.panels_done = min(self.nt, self.panels_done + 1)
        elif kind == "logdet":
            self.panels_done = self.nt
            self.t_end = time.perf_counter()

    def _set(self, i: int, j: int, state: int) -> None:
        if 0 <= i < self.nt and 0 <= j < self.nt and self.grid[i, j] != OUTSIDE:
            self.grid[i, j] = state

    def counts(self) -> dict[str, int]:
        return {name: int(np.count_nonzero(self.grid == s)) for s, name in enumerate(STATES)}


class DashboardPlugin(SchedulerPlugin):
    """Tracks dlogdet's runs on the scheduler and serves the page ``/dlogdet`` on its dashboard."""

    idempotent = True
    name = PLUGIN

    def __init__(self):
        self.scheduler = None
        self.runs: dict[str, RunBoard] = {}
        self.budgets: dict[str, int | None] = {}
        self.page = False

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        try:
            self.page = add_page(scheduler, self)
        except Exception as e:  # no bokeh, or a dashboard-less scheduler: the plugin still tracks runs
            log.warning("dlogdet could not add its dashboard page: %s", e)

    # ------------------------------------------------------------------------------------------- scheduler hooks

    def update_graph(self, scheduler, *, tasks=(), **kwargs: Any) -> None:
        seen: dict[str, dict[str, Any]] = {}
        for key in tasks:
            p = _parse(key)
            if p is None:
                continue
            kind, token, idx = p
            s = seen.setdefault(token, {"steps": [], "gen": False, "store": False})
            if kind in FACTOR and idx:
                s["steps"].append(idx[0])
            s["gen"] |= kind in ("getrf", "trsmrow")
            s["store"] |= kind == "done"
        for token, s in seen.items():
            if not s["steps"]:
                continue
            board = RunBoard(token, max(s["steps"]) + 1, gen=s["gen"], store=s["store"], start=min(s["steps"]))
            board.budget = self.budgets.get(token)
            self.runs.pop(token, None)
            self.runs[token] = board  # latest last
            while len(self.runs) > MAX_RUNS:
                self.runs.pop(next(iter(self.runs)))

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish not in ("memory", "erred"):
            return
        p = _parse(key)
        if p is None:
            return
        kind, token, idx = p
        board = self.runs.get(token)
        if board is None:
            return
        if finish == "erred":
            board.failed = f"{kind} {idx} failed"
            board.t_end = time.perf_counter()
        else:
            board.finished(kind, idx)

    def log_event(self, topic, msg) -> None:
        if not isinstance(msg, dict) or "run" not in msg:
            return
        if topic == BUDGET_EVENT:  # a new peak of tracked bytes: kept here, the accounting forgets it at the end
            board = self.runs.get(str(msg["run"]))
            if board is not None and "worker" in msg:
                w = str(msg["worker"])
                board.peaks[w] = max(board.peaks.get(w, 0), int(msg.get("tracked", 0)))
            return
        if topic != RUN_EVENT:
            return
        token = str(msg["run"])
        self.budgets[token] = msg.get("budget")
        while len(self.budgets) > 4 * MAX_RUNS:
            self.budgets.pop(next(iter(self.budgets)))
        if token in self.runs:
            self.runs[token].budget = msg.get("budget")

    # ------------------------------------------------------------------------------------------------ read-outs

    def latest(self) -> RunBoard | None:
        return next(reversed(self.runs.values()), None) if self.runs else None

    def memory(self, board: RunBoard | None) -> list[dict[str, Any]]:
        """Per worker: name, tracked bytes now, their peak in this run, and the limit they are drawn against."""
        sched = self.scheduler
        if sched is None:
            return []
        acct = sched.plugins.get(SCHEDULER_PLUGIN)
        out = []
        for addr, ws in sorted(sched.workers.items(), key=lambda aw: (str(aw[1].name), aw[0])):
            tracked = peak = 0
            if acct is not None and board is not None:
                tracked = int(acct.tracked(board.token, addr))
                peak = int(board.peaks.get(addr, 0))
            budget = board.budget if board is not None else None
            limit, what = (int(budget), "budget") if budget else (int(ws.memory_limit or 0), "memory limit")
            out.append({"worker": str(ws.name), "address": addr, "tracked": tracked, "peak": max(peak, tracked),
                        "limit": limit, "limit_kind": what})
        return out

    def snapshot(self) -> dict[str, Any]:
        """The page's data as plain values (also handy for tests: ``client.run_on_scheduler``)."""
        board = self.latest()
        out: dict[str, Any] = {"run": None, "memory": self.memory(board)}
        if board is not None:
            p = board.progress()
            out["run"] = {"token": board.token, "nt": board.nt, "mode": "store" if board.store else "memory",
                          "assume": "gen" if board.gen else "spd/sym", "panels_done": p.panels_done,
                          "panels_total": p.panels_total, "tiles_done": p.tiles_done, "tiles_total": p.tiles_total,
                          "eta": p.eta, "elapsed": p.elapsed, "finished": board.t_end is not None,
                          "failed": board.failed, "counts": board.counts(), "grid": board.grid.tolist()}
        return out


# ---------------------------------------------------------------------------------------------------------- page

def _bokeh_prefix(scheduler) -> str:
    """The URL prefix of the scheduler's own Bokeh pages (``distributed.scheduler.http.prefix``)."""
    for app in getattr(scheduler.http_application, "applications", []):
        prefix = getattr(app, "prefix", None)
        if prefix is not None and "bokeh" in type(app).__module__ + str(type(app).__mro__):
            return prefix
    return ""


def add_page(scheduler, plugin: DashboardPlugin) -> bool:
    """Serve :func:`page_doc` at ``/dlogdet`` on the scheduler's dashboard (once); False without a dashboard."""
    http = getattr(scheduler, "http_application", None)
    if http is None or not hasattr(http, "add_application"):
        return False
    if getattr(scheduler, "_dlogdet_page", None) is not None:
        return True
    from functools import partial

    from distributed.dashboard.core import BokehApplication
    from tornado.ioloop import IOLoop

    prefix = _bokeh_prefix(scheduler)
    extra: dict[str, Any] = {}
    try:  # the dashboard's navigation bar, with a link to this page on every page
        from distributed.dashboard.scheduler import template_variables
        extra = template_variables(scheduler)
        if "dlogdet" not in extra.get("pages", []):
            extra["pages"].append("dlogdet")
    except Exception as e:
        log.debug("no dashboard template variables: %s", e)
    app = BokehApplication({PAGE: partial(_page, plugin)}, scheduler, prefix=prefix, template_variables=extra)
    http.add_application(app)
    app.initialize(IOLoop.current())
    app.start()
    scheduler._dlogdet_page = app
    return True


def _page(plugin: DashboardPlugin, scheduler, extra, doc) -> None:
    page = Page(plugin)
    page.update()
    doc.add_periodic_callback(page.update, 500)
    doc.title = "Dask: dlogdet"
    doc.add_root(page.root)
    try:
        from distributed.dashboard.components.scheduler import BOKEH_THEME, env
        doc.template = env.get_template("simple.html")
        doc.template_variables.update(extra)
        doc.theme = BOKEH_THEME
    except Exception as e:  # an older or newer distributed: the page without the navigation bar
        log.debug("no dashboard template: %s", e)


class Page:
    """The Bokeh models of the page and their update from the plugin's state."""

    def __init__(self, plugin: DashboardPlugin):
        from bokeh.layouts import column, row
        from bokeh.models import ColumnDataSource, Div, HoverTool, Legend, LegendItem, Range1d
        from bokeh.plotting import figure

        self.plugin = plugin
        self.token: str | None = None
        self.header = Div(text="", name="dlogdet-status", sizing_mode="stretch_width")
        self.tiles = ColumnDataSource({"x": [], "y": [], "color": [], "state": [], "tile": []})
        self.grid = figure(title="tiles", width=460, height=460, tools="", toolbar_location=None,
                           x_axis_location="above", name="dlogdet-grid", match_aspect=True)
        self.grid.rect("x", "y", width=0.92, height=0.92, color="color", source=self.tiles)
        self.grid.add_tools(HoverTool(tooltips=[("tile", "@tile"), ("state", "@state")]))
        self.grid.xaxis.axis_label = "tile column j"
        self.grid.yaxis.axis_label = "tile row i"
        self.grid.xgrid.visible = self.grid.ygrid.visible = False
        self.grid.y_range.flipped = True  # row 0 on top, as the matrix is written
        # a legend of the four states (invisible glyphs, so that the colors are named even before a run)
        items = []
        for s, name in enumerate(STATES):
            r = self.grid.scatter([float("nan")], [float("nan")], color=COLORS[s], marker="square", size=10)
            items.append(LegendItem(label=name, renderers=[r]))
        self.grid.add_layout(Legend(items=items, orientation="horizontal", location="center"), "below")
        self.mem = ColumnDataSource({"worker": [], "tracked": [], "peak": [], "limit": [], "text": []})
        self.memfig = figure(title="tracked bytes per worker (MiB)", width=460, height=220, tools="",
                             toolbar_location=None, y_range=[], name="dlogdet-memory")
        self.memfig.hbar(y="worker", right="peak", height=0.7, color="#bbbbbb", source=self.mem,
                         legend_label="peak this run")
        self.memfig.hbar(y="worker", right="tracked", height=0.5, color="#2c7bb6", source=self.mem,
                         legend_label="tracked now")
        self.memfig.scatter(x="limit", y="worker", marker="dash", size=28, line_width=3, color="#d7191c",
                            source=self.mem, legend_label="budget")
        self.memfig.legend.location = "bottom_right"
        self.memfig.legend.label_text_font_size = "8pt"
        self.memfig.add_tools(HoverTool(tooltips=[("worker", "@worker"), ("", "@text")]))
        self.memfig.x_range = Range1d(0, 1)
        self.memdiv = Div(text="", name="dlogdet-memory-text")
        self.root = column(self.header, row(self.grid, column(self.memfig, self.memdiv)),
                           sizing_mode="stretch_width")

    def update(self) -> None:
        from . import format_bytes, format_progress

        snap_board = self.plugin.latest()
        if snap_board is None:
            self.header.text = ("<h3>dlogdet</h3><p id='dlogdet-progress'>No dlogdet run on this cluster yet: "
                                "the grid appears when a factorization is submitted.</p>")
        else:
            b = snap_board
            p = b.progress()
            state = ("failed: " + b.failed) if b.failed else ("finished" if b.t_end is not None else "running")
            counts = b.counts()
            self.header.text = (
                f"<h3>dlogdet run {b.token[:12]} ({'out of core' if b.store else 'in memory'}, "
                f"{b.nt}×{b.nt} tiles): {state}</h3>"
                f"<pre id='dlogdet-progress'>{format_progress(p)}</pre>"
                f"<p id='dlogdet-counts'>" + ", ".join(f"{k} {v}" for k, v in counts.items()) + "</p>")
            ii, jj = np.nonzero(b.grid != OUTSIDE)
            st = b.grid[ii, jj]
            data = {"x": jj.tolist(), "y": ii.tolist(), "color": [COLORS[s] for s in st],
                    "state": [STATES[s] for s in st], "tile": [f"({i}, {j})" for i, j in zip(ii, jj)]}
            if b.token != self.token or len(self.tiles.data["x"]) != len(ii):
                self.tiles.data = data
                self.token = b.token
            else:
                changed = [k for k, (a, c) in enumerate(zip(self.tiles.data["color"], data["color"])) if a != c]
                if changed:
                    self.tiles.patch({"color": [(k, data["color"][k]) for k in changed],
                                      "state": [(k, data["state"][k]) for k in changed]})
        mem = self.plugin.memory(snap_board)
        mib = 2.0 ** 20
        names = [m["worker"] for m in mem]
        self.memfig.y_range.factors = names
        self.memfig.x_range.end = 1.08 * max([1.0] + [max(m["limit"], m["peak"]) / mib for m in mem])
        self.mem.data = {"worker": names, "tracked": [m["tracked"] / mib for m in mem],
                         "peak": [m["peak"] / mib for m in mem], "limit": [m["limit"] / mib for m in mem],
                         "text": [f"{format_bytes(m['tracked'])} tracked, peak {format_bytes(m['peak'])}, "
                                  f"{m['limit_kind']} {format_bytes(m['limit'])}" for m in mem]}
        self.memdiv.text = "<br>".join(
            f"<span class='dlogdet-worker'>{m['worker']}: {format_bytes(m['tracked'])} tracked "
            f"(peak {format_bytes(m['peak'])}) of {m['limit_kind']} {format_bytes(m['limit'])}</span>" for m in mem)


# ------------------------------------------------------------------------------------------------- driver side

def install(client) -> str:
    """Register the plugin on ``client``'s scheduler (once) and return the page's URL.

    Runs register it by themselves (dask config ``dlogdet.scheduler-plugins``); call this to open the page before
    the first run.
    """
    plugins = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))
    if PLUGIN not in plugins:
        client.register_plugin(DashboardPlugin(), name=PLUGIN)
    return url(client)


def url(client) -> str:
    """The URL of the page on ``client``'s dashboard (from ``client.dashboard_link``)."""
    link = client.dashboard_link
    base = link[: -len("/status")] if link.endswith("/status") else link.rstrip("/")
    return base + PAGE


def snapshot(client) -> dict[str, Any]:
    """The page's data, read from the scheduler: the latest run's grid and progress, memory per worker."""
    def read(dask_scheduler):
        p = dask_scheduler.plugins.get(PLUGIN)
        return None if p is None else p.snapshot()

    return client.run_on_scheduler(read)
