"""The one result type that every method of dlogdet returns."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

import numpy as np

from .diagnostics import Diagnostics
from .status import Status


class Inertia(NamedTuple):
    """Counts of positive, negative and zero pivots (Sylvester's law: the eigenvalue signs of M)."""

    positive: int
    negative: int
    zero: int


def _readonly(a: np.ndarray | None, dtype) -> np.ndarray | None:
    if a is None:
        return None
    a = np.array(a, dtype=dtype, copy=True)
    a.setflags(write=False)
    return a


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


@dataclass(frozen=True, eq=False)
class LogdetResult:
    """log|det M| and what a user needs to trust it.

    ``logdet = log|det M|`` and ``sign`` is the sign of ``det M`` (``+1``, ``-1`` or ``0``), so that
    ``det M = sign * exp(logdet)``.

    Attributes
    ----------
    logdet : float
        log|det M| with M = t·A + diag(d).
    sign : float
        +1.0, -1.0, or 0.0 for a singular matrix.
    method : str
        Name of the estimator that produced the result (``"exact"``, ...).
    n : int
        Order of M.
    dtype : str
        dtype in which the tiles were factorized (log-pivots are always accumulated in float64).
    stderr : float or None
        Standard error of an estimate; ``None`` for the exact method.
    lower, upper : float or None
        Guaranteed bounds where a method provides them.
    log_pivots : numpy.ndarray or None
        float64 log|pivot| per row in factorization order; ``cumsum`` gives log|det| of the leading principal
        submatrices (exactly for ``assume="spd"``; for ``"sym"``/``"gen"`` pivoting inside a diagonal tile
        permutes rows within that tile, so the cumsum is exact at tile boundaries).
    pivot_signs : numpy.ndarray or None
        int8 sign per row, same order as ``log_pivots``.
    inertia : Inertia or None
        Counts of positive/negative/zero pivots (``assume="sym"`` and ``"spd"``).
    assume : str or None
        Structure assumed by the exact method (``"spd"``, ``"sym"``, ``"gen"``).
    status : Status
        :attr:`Status.OK`, or the member that says why the number is degraded (its ``cause`` and ``remedy``);
        a ``str``, so ``r.status == "ok"`` reads as before. A string given here becomes its member.
    diagnostics : Diagnostics
        The method's typed diagnostics (:mod:`dlogdet.core.diagnostics`): wall time, block size, tile count, task
        count, peak bytes per worker where known, jitter, backend...; also a read-only mapping of the recorded
        keys. A plain mapping given here becomes the method's type.
    """

    logdet: float
    sign: float
    method: str
    n: int
    dtype: str
    stderr: float | None = None
    lower: float | None = None
    upper: float | None = None
    log_pivots: np.ndarray | None = None
    pivot_signs: np.ndarray | None = None
    inertia: Inertia | None = None
    assume: str | None = None
    status: Status = Status.OK
    diagnostics: Diagnostics = field(default_factory=Diagnostics)

    def __post_init__(self):
        object.__setattr__(self, "logdet", float(self.logdet))
        object.__setattr__(self, "sign", float(self.sign))
        object.__setattr__(self, "log_pivots", _readonly(self.log_pivots, np.float64))
        object.__setattr__(self, "pivot_signs", _readonly(self.pivot_signs, np.int8))
        if self.inertia is not None and not isinstance(self.inertia, Inertia):
            object.__setattr__(self, "inertia", Inertia(*self.inertia))
        object.__setattr__(self, "status", Status.coerce(self.status))
        object.__setattr__(self, "diagnostics", Diagnostics.for_method(self.method, self.diagnostics))

    def leading_logdets(self) -> np.ndarray:
        """log|det| of the leading k×k principal submatrices, k = 1..n (``cumsum`` of ``log_pivots``)."""
        if self.log_pivots is None:
            raise ValueError(f"method {self.method!r} does not produce per-row log-pivots; use method='exact'")
        return np.cumsum(self.log_pivots)

    def to_dict(self, *, pivots: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; ``pivots=True`` includes the per-row log-pivots."""
        out: dict[str, Any] = {
            "logdet": self.logdet,
            "sign": self.sign,
            "method": self.method,
            "n": self.n,
            "dtype": self.dtype,
            "stderr": self.stderr,
            "lower": self.lower,
            "upper": self.upper,
            "assume": self.assume,
            "inertia": self.inertia._asdict() if self.inertia is not None else None,
            "status": self.status.value,
            "diagnostics": dict(self.diagnostics),
        }
        if pivots and self.log_pivots is not None:
            out["log_pivots"] = self.log_pivots
            out["pivot_signs"] = self.pivot_signs
        return _jsonable(out)

    def rows(self) -> list[tuple[str, Any]]:
        """The (label, text) rows that describe this result to a person (what ``dlogdet logdet`` prints); the
        method's diagnostics choose them (:meth:`dlogdet.core.diagnostics.Diagnostics.rows`)."""
        return self.diagnostics.rows(self)

    def to_json(self, *, pivots: bool = False, **kwargs) -> str:
        """The result as one JSON line (:meth:`to_dict`; ``kwargs`` go to :func:`json.dumps`)."""
        return json.dumps(self.to_dict(pivots=pivots), **kwargs)

    def __repr__(self) -> str:
        extra = f" ± {self.stderr:.3g}" if self.stderr is not None else ""
        return (f"LogdetResult(logdet={self.logdet!r}{extra}, sign={self.sign:+.0f}, method={self.method!r}, "
                f"n={self.n}, dtype={self.dtype!r}, status={self.status.value!r})")
