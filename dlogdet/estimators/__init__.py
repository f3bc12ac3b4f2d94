"""Estimators of log-determinants, one module each, meeting only in this registry.

Each entry maps a method name to ``"module:function"``; the function takes ``(source, **options)`` and
returns a :class:`dlogdet.LogdetResult`. A new method is one file and one line here.

The options a method takes are the keyword parameters of its function; a function that passes ``**options`` on
to other methods names them in its module's ``PASSES_TO``. :func:`get` refuses any other option before the method
runs, naming the ones it takes (and the methods that take the refused ones), so that an option meant for another
method is never silently ignored.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Callable

from ..core.errors import InputError

REGISTRY: dict[str, str] = {
    "exact": "dlogdet.estimators.exact:run",
    "extrapolate": "dlogdet.estimators.extrapolate:run",
    "slq": "dlogdet.estimators.slq:run",
    "nystrom": "dlogdet.estimators.nystrom:run",
    "auto": "dlogdet.estimators.auto:run",
    "freedecomp": "dlogdet.estimators.freedecomp:run",
}

_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _load(method: str) -> Callable:
    try:
        target = REGISTRY[method]
    except KeyError:
        raise InputError(f"unknown method {method!r}; available: {', '.join(sorted(REGISTRY))}") from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


@functools.cache
def options_of(method: str) -> tuple[str, ...]:
    """The keyword options ``method`` takes, in the order of its signature (then those it passes on)."""
    fn = _load(method)
    params = list(inspect.signature(fn).parameters.values())[1:]          # after the source
    names = [p.name for p in params if p.kind in _KEYWORD]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        for other in getattr(importlib.import_module(fn.__module__), "PASSES_TO", ()):
            names += [k for k in options_of(other) if k not in names]
    return tuple(names)


def check_options(method: str, options: dict[str, Any]) -> None:
    """An :class:`InputError` naming the options ``method`` does not take, those it takes, and which methods take
    the refused ones."""
    takes = options_of(method)
    bad = [k for k in options if k not in takes]
    if not bad:
        return
    where = []
    for k in bad:
        others = [m for m in REGISTRY if m != method and k in options_of(m)]
        if others:
            where.append(f"{k}= is an option of method {' and '.join(map(repr, others))}")
    raise InputError(f"method {method!r} does not take {', '.join(k + '=' for k in bad)}"
                     + (f" ({'; '.join(where)})" if where else "")
                     + f"; it takes {', '.join(takes)}")


def get(method: str) -> Callable:
    """The estimator function registered under ``method``, refusing options that are not its own."""
    fn = _load(method)

    @functools.wraps(fn)
    def checked(*args: Any, **options: Any):
        check_options(method, options)
        return fn(*args, **options)

    return checked
