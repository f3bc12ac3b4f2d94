"""Settings of dlogdet, kept under the ``dlogdet.`` namespace of :mod:`dask.config`.

The defaults live in ``dlogdet.yaml`` beside this file; users override them with ``dask.config.set``, their
own dask YAML files or ``DASK_DLOGDET__*`` environment variables.
"""

from __future__ import annotations

import os
import re
from typing import Any

import dask.config
import yaml

_fn = os.path.join(os.path.dirname(__file__), "dlogdet.yaml")
with open(_fn) as _f:
    _defaults = yaml.safe_load(_f)

dask.config.update_defaults(_defaults)


def get(key: str, default: Any = None) -> Any:
    """Value of ``dlogdet.<key>`` in dask.config."""
    return dask.config.get(f"dlogdet.{key}", default=default)


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value: int | float | str) -> int:
    """Bytes from an int or a string such as ``"2GiB"`` or ``"500 MB"``.

    Raises
    ------
    InputError
        When the value cannot be read as a positive size.
    """
    from .errors import InputError

    if isinstance(value, bool):
        raise InputError(f"a memory size must be a number of bytes or a string like '2GiB', not {value!r}")
    if isinstance(value, (int, float)):
        n = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _UNITS:
            raise InputError(f"cannot read {value!r} as a memory size: write bytes or a string like '2GiB' or '500MB'")
        n = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not n > 0:
        raise InputError(f"a memory size must be positive, got {value!r}")
    return int(n)
