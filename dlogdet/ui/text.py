"""Results as text: aligned (label, value) tables, a result's summary, byte sizes."""

from __future__ import annotations

from typing import Any, Sequence

from ..core.diagnostics import format_bytes

__all__ = ["table", "format_result", "format_bytes"]


def table(rows: Sequence[tuple[str, Any]]) -> str:
    """Rows ``(label, value)`` as lines ``label  value``, the labels padded to the widest (at least two spaces
    between label and value, which is how a script splits them)."""
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def format_result(r: Any) -> str:
    """The human summary of a :class:`dlogdet.LogdetResult` (what ``dlogdet logdet`` prints): the rows its
    method's diagnostics choose (:meth:`dlogdet.LogdetResult.rows`)."""
    return table(r.rows())
