"""Source specs: one text names a matrix for every command, ``PATH``, ``kernel:NAME[:k=v,...]`` or
``ntk:MODEL:DATASET[:k=v,...]``.

A spec is ``KIND:FIELD:...:FIELD[:k=v,k=v,...]``; the first field picks the kind in :data:`KINDS`, anything else
is a path (a ``.npy`` file or a zarr directory, :func:`dlogdet.as_source`). A kind is one module with ``USAGE`` (its
spelling, for help texts) and ``build(spec: Spec) -> TileSource``: a new kind is one new file and one line in
:data:`KINDS`. :func:`dlogdet.as_source`, and so every command and :func:`dlogdet.logdet`, reads specs through
:func:`source_from_spec`.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ...core.errors import InputError

#: kind -> module with USAGE and build(spec)
KINDS: dict[str, str] = {
    "kernel": "dlogdet.sources.spec.kernel",   # a covariance kernel on random points in the unit cube
    "ntk": "dlogdet.sources.spec.ntk",         # the NTK of a registered model on a local data set
    "kron": "dlogdet.sources.kron",            # A (x) B of two seeded SPD factors: log det in closed form
}


@dataclass(frozen=True)
class Spec:
    """A parsed spec: its text, its kind and the colon-separated fields after the kind."""

    text: str
    kind: str
    fields: tuple[str, ...]

    def positional(self, count: int, what: str) -> tuple[str, ...]:
        """The first ``count`` fields, or an InputError that says ``what`` the spec should be."""
        if len(self.fields) < count or not all(self.fields[:count]):
            raise InputError(f"{what}; got {self.text!r}")
        return self.fields[:count]

    def options(self, after: int, types: Mapping[str, Callable[[str], Any]],
                defaults: Mapping[str, Any]) -> dict[str, Any]:
        """``defaults`` updated by the ``k=v,...`` fields after the first ``after`` ones, each read with its type
        (``-`` in a key reads as ``_``)."""
        out = dict(defaults)
        for item in filter(None, ":".join(self.fields[after:]).split(",")):
            key, sep, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in types:
                raise InputError(f"cannot read {item!r} in a source spec: use key=value with keys {', '.join(types)}")
            try:
                out[key] = types[key](value)
            except ValueError:
                raise InputError(f"cannot read {key}={value!r} in a source spec as {types[key].__name__}") from None
        return out


def kind_of(text: str) -> str | None:
    """The registered kind a text names (``"kernel"`` for ``"kernel:rbf"``), or None for a path."""
    kind, sep, _ = text.partition(":")
    return kind if sep and kind in KINDS else None


def source_from_spec(spec):
    """The tile source a spec names: ``kernel:...``, ``ntk:...`` (:data:`KINDS`), or a path or anything else that
    :func:`dlogdet.as_source` takes."""
    text = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if isinstance(text, str) and (kind := kind_of(text)) is not None:
        parts = text.split(":")
        return importlib.import_module(KINDS[kind]).build(Spec(text, kind, tuple(parts[1:])))
    from .. import as_source

    return as_source(spec)


def usage() -> str:
    """The spellings a spec may take, for help texts: a path, then each kind's ``USAGE``."""
    kinds = [importlib.import_module(m).USAGE for m in KINDS.values()]
    return "; ".join(["a .npy file or zarr directory", *kinds[:-1]]) + ("; or " + kinds[-1] if kinds else "")
