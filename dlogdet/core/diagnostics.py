"""Typed diagnostics: what a method reports beside its number, as fields an editor completes and as a mapping.

Each method's result carries a frozen dataclass, a subclass of :class:`Diagnostics` defined beside the method,
whose fields are the keys it reports (``r.diagnostics.wall_time``). It is also a read-only mapping of the fields
that were recorded, so ``r.diagnostics["wall_time"]``, ``.get``, ``in``, ``dict(...)`` and the JSON output read
as they always did. A field a run did not record (a store-mode key of an in-memory run) holds :data:`ABSENT` and
is not a key of the mapping. Keys a method reports without a field are kept in ``extra``: nothing is lost.

A diagnostics class also says what a person should see about its result: :meth:`Diagnostics.rows` gives the
(label, text) rows that the command line prints, so that no face keys its formatting on diagnostics names.
"""

from __future__ import annotations

import enum
import functools
import reprlib
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar, Iterator, Mapping, TypeVar, dataclass_transform

from .errors import warn_renamed


class Absent(enum.Enum):
    """The type of :data:`ABSENT`: a diagnostics field that a run did not record."""

    ABSENT = "absent"

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "ABSENT"


#: A field not recorded by a run: not a key of the mapping (``"scratch" in r.diagnostics`` is False).
ABSENT = Absent.ABSENT

R = TypeVar("R", bound="Record")

_repr = reprlib.Repr()
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 6
_repr.maxstring = _repr.maxother = 60


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.name != "extra")


def _rebuild(cls: type[R], items: dict[str, Any]) -> R:
    return cls.from_mapping(items)


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
def record(cls: type[R]) -> type[R]:
    """The decorator of a :class:`Record` subclass: a frozen, keyword-only dataclass that keeps the record's
    ``repr`` (recorded keys only) and its mapping equality."""
    return dataclass(frozen=True, eq=False, kw_only=True, repr=False)(cls)


@record
class Record(Mapping[str, Any]):
    """A frozen dataclass that reads as a read-only mapping of its recorded fields.

    ``RENAMED`` maps old key spellings to new ones: reading an old key still works, with a
    :class:`~dlogdet.core.errors.DlogdetDeprecationWarning`.
    """

    RENAMED: ClassVar[Mapping[str, str]] = MappingProxyType({})

    def __post_init__(self) -> None:
        if "extra" in self.__dataclass_fields__:
            object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))  # type: ignore[attr-defined]

    def _extra(self) -> Mapping[str, Any]:
        return getattr(self, "extra", MappingProxyType({}))

    def __getitem__(self, key: str) -> Any:
        if key in _field_names(type(self)):
            value = getattr(self, key)
            if value is not ABSENT:
                return value
            raise KeyError(key)
        extra = self._extra()
        if key in extra:
            return extra[key]
        new = self.RENAMED.get(key) if isinstance(key, str) else None
        if new is not None and new in self:
            warn_renamed(key, new, "diagnostics key")
            return self[new]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if key in _field_names(type(self)):
            return getattr(self, key) is not ABSENT
        if key in self._extra():
            return True
        new = self.RENAMED.get(key) if isinstance(key, str) else None
        return new is not None and new in self

    def __iter__(self) -> Iterator[str]:
        for name in _field_names(type(self)):
            if getattr(self, name) is not ABSENT:
                yield name
        yield from self._extra()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={_repr.repr(v)}' for k, v in self.items())})"

    def __reduce__(self):
        return (_rebuild, (type(self), dict(self.items())))

    @classmethod
    def from_mapping(cls: type[R], mapping: Mapping[str, Any]) -> R:
        """The record of ``mapping``'s keys: fields by name, the rest in ``extra`` (a ``TypeError`` for a record
        without ``extra``)."""
        names = set(_field_names(cls))
        known = {k: v for k, v in mapping.items() if k in names}
        rest = {k: v for k, v in mapping.items() if k not in names}
        if "extra" in cls.__dataclass_fields__:
            return cls(**known, extra=rest)  # type: ignore[call-arg]  # subclasses with an ``extra`` field
        if rest:
            raise TypeError(f"{cls.__name__} has no field {', '.join(map(repr, rest))}")
        return cls(**known)

    def replace(self: R, **changes: Any) -> R:
        """A copy with ``changes`` (keys without a field go to ``extra``)."""
        return type(self).from_mapping({**dict(self.items()), **changes})


def format_bytes(n: float | None) -> str:
    """``1536`` → ``"1.5 KiB"``; None → ``"n/a"`` (binary units, as the budgets are given)."""
    if n is None:
        return "n/a"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


Row = tuple[str, Any]


@record
class Diagnostics(Record):
    """What any method reports beside its number; subclasses add their own fields.

    A subclass declared as ``class SLQDiagnostics(Diagnostics, method="slq")`` is the type a plain mapping
    given to a result of that method becomes (:meth:`for_method`).

    Attributes
    ----------
    wall_time : float
        Seconds the whole call took.
    auto : Mapping
        Set by ``method="auto"``: ``{"method": the method it chose, "reason": why}``.
    extra : Mapping
        Keys the method reported that have no field here.
    """

    _BY_METHOD: ClassVar[dict[str, type[Diagnostics]]] = {}

    wall_time: float | Absent = ABSENT
    auto: Mapping[str, str] | Absent = ABSENT
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __init_subclass__(cls, method: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if method is not None:
            Diagnostics._BY_METHOD[method] = cls

    @classmethod
    def for_method(cls, method: str, diagnostics: Mapping[str, Any] | None) -> Diagnostics:
        """``diagnostics`` as the registered type of ``method`` (kept as it is when already a Diagnostics)."""
        if isinstance(diagnostics, Diagnostics):
            return diagnostics
        return cls._BY_METHOD.get(method, Diagnostics).from_mapping(diagnostics or {})

    # ------------------------------------------------------------------------------------------ what to show

    def rows(self, result: Any) -> list[Row]:
        """The (label, text) rows that describe ``result`` to a person: what it is, what the method adds, what
        it cost. Subclasses override :meth:`method_rows` (or this, for a different layout)."""
        return [*self.header_rows(result), *self.method_rows(result), *self.cost_rows()]

    def header_rows(self, result: Any) -> list[Row]:
        """The number, its sign and what it is of; the status when not ok; the method and bounds when given."""
        rows: list[Row] = [("logdet", repr(result.logdet)), ("sign", f"{result.sign:+.0f}"), ("n", result.n),
                           ("dtype", result.dtype), ("assume", result.assume)]
        if result.inertia is not None:
            i = result.inertia
            rows.append(("inertia", f"{i.positive} positive, {i.negative} negative, {i.zero} zero"))
        if not result.status.ok:
            rows.append(("status", result.status.describe()))
        if result.method != "exact":
            rows.append(("method", result.method + (f" (auto: {self.auto['reason']})"
                                                    if isinstance(self.auto, Mapping) else "")))
        if result.lower is not None and result.upper is not None:
            rows.append(("bounds", f"[{result.lower!r}, {result.upper!r}] (guaranteed)"))
        return rows

    def method_rows(self, result: Any) -> list[Row]:
        """Rows particular to the method (none here)."""
        return []

    def cost_rows(self) -> list[Row]:
        """Products, wall time, tiles, tasks, scheduler, out-of-core mode, budget and peak memory, where
        recorded."""
        g = self.get
        rows: list[Row] = []
        if "matvecs" in self:
            rows.append(("matvecs", f"{g('matvecs')} in {g('passes', '?')} passes ({g('product')})"))
        if "wall_time" in self:
            rows.append(("wall time", f"{g('wall_time'):.3f} s"))
        if "block_size" in self:
            rows.append(("block size", f"{g('block_size')} ({g('n_panels', '?')} panels, {g('n_tiles', '?')} tiles)"))
        if "n_tasks" in self:
            rows.append(("tasks", g("n_tasks")))
        if "scheduler" in self:
            rows.append(("scheduler", g("scheduler")))
        if g("mode") == "store":
            rows.append(("mode", f"out of core (tile store {g('scratch')}), resumed from step "
                                 f"{g('resumed_from_step', 0)}, {g('tasks_computed', '?')} tasks computed"))
        budget = g("budget")
        if budget:
            tracked = g("peak_tracked_bytes_per_worker") or {}
            line = f"{budget / 2**20:.1f} MiB per worker"
            if g("budget_source"):
                line += f" ({g('budget_source')})"
            if tracked:
                line += "; peak tracked " + ", ".join(f"{w}: {b / 2**20:.1f} MiB" for w, b in sorted(tracked.items()))
            rows.append(("budget", line))
        peaks = self.peak_memory()
        if peaks:
            rows.append(("peak memory", "; ".join(peaks)))
        return rows

    def peak_memory(self) -> list[str]:
        """``"<worker>: <RSS> RSS (<managed> managed)"`` per worker, where the run measured them."""
        rss = dict(self.get("peak_rss_bytes_per_worker") or {})
        managed = dict(self.get("peak_managed_bytes_per_worker") or {})
        out = []
        for name in sorted(set(rss) | set(managed), key=str):
            s = f"{name}: {format_bytes(rss.get(name))} RSS"
            if name in managed:
                s += f" ({format_bytes(managed[name])} managed)"
            out.append(s)
        return out


@record
class ExactDiagnostics(Diagnostics, method="exact"):
    """What the exact engine reports (:mod:`dlogdet.estimators.exact`; its home once that module is reshaped).

    Attributes
    ----------
    block_size, n_panels, n_tiles, n_tasks : int
        Tile size, panels (tiles per side), tiles factored, tasks of the graph.
    workers : int
    scheduler : str
        ``"threads"`` or ``"distributed (ADDRESS)"``.
    backend : str
    t : float
    d : float or "vector"
    symmetry_checked : bool
    budget : int or None
        Bytes per worker for tiles.
    budget_source : str
        How the budget was obtained: given, dask config, or ``"auto: ..."`` from the workers' memory limits
        (:mod:`dlogdet.runtime.memory`).
    mode : {"memory", "store"}
        In memory, or out of core from the on-disk tile store.
    token : str
        The graph's token (its keys; the tile store's folder).
    peak_managed_bytes_per_worker, peak_rss_bytes_per_worker : Mapping[str, int]
    peak_tracked_bytes_per_worker, peak_rss_sampled_bytes_per_worker, rss_at_start_bytes_per_worker : Mapping
        The budget accounting's measurements (on a distributed cluster).
    timeline : Mapping
        Panels done and memory per worker over time (``dlogdet report``).
    restarts, time_lost : int, float
        Runs started over after a worker was lost with results that cannot be recomputed.
    scratch, resumed_from_step, tasks_computed, tiles_per_task, slots_per_worker
        Out of core: the tile store, the step a run resumed from, tasks run, tiles per task and per worker.
    """

    block_size: int | Absent = ABSENT
    n_panels: int | Absent = ABSENT
    n_tiles: int | Absent = ABSENT
    n_tasks: int | Absent = ABSENT
    workers: int | Absent = ABSENT
    scheduler: str | Absent = ABSENT
    backend: str | Absent = ABSENT
    t: float | Absent = ABSENT
    d: float | str | Absent = ABSENT
    symmetry_checked: bool | Absent = ABSENT
    peak_managed_bytes_per_worker: Mapping[str, int] | Absent = ABSENT
    peak_rss_bytes_per_worker: Mapping[str, int] | Absent = ABSENT
    budget: int | None | Absent = ABSENT
    budget_source: str | Absent = ABSENT
    peak_tracked_bytes_per_worker: Mapping[str, int] | Absent = ABSENT
    peak_rss_sampled_bytes_per_worker: Mapping[str, int] | Absent = ABSENT
    rss_at_start_bytes_per_worker: Mapping[str, int] | Absent = ABSENT
    mode: str | Absent = ABSENT
    token: str | Absent = ABSENT
    timeline: Mapping[str, Any] | Absent = ABSENT
    restarts: int | Absent = ABSENT
    time_lost: float | Absent = ABSENT
    scratch: str | Absent = ABSENT
    resumed_from_step: int | Absent = ABSENT
    tasks_computed: int | Absent = ABSENT
    tiles_per_task: int | Absent = ABSENT
    slots_per_worker: int | Absent = ABSENT

