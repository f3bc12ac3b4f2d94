"""Estimators of log-determinants, one module each, meeting only in this registry.

Each entry maps a method name to ``"module:function"``; the function takes ``(source, **options)`` and
returns a :class:`dlogdet.LogdetResult`. A new method is one file and one line here.
"""

from __future__ import annotations

import importlib
from typing import Callable

from ..errors import InputError

REGISTRY: dict[str, str] = {
    "exact": "dlogdet.estimators.exact:run",
    "extrapolate": "dlogdet.estimators.extrapolate:run",
    "slq": "dlogdet.estimators.slq:run",
    "nystrom": "dlogdet.estimators.nystrom:run",
    "auto": "dlogdet.estimators.auto:run",
    "freedecomp": "dlogdet.estimators.freedecomp:run",
}


def get(method: str) -> Callable:
    """The estimator function registered under ``method``."""
    try:
        target = REGISTRY[method]
    except KeyError:
        raise InputError(f"unknown method {method!r}; available: {', '.join(sorted(REGISTRY))}") from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)
