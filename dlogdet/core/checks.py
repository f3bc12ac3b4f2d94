"""Checks of the numbers a caller passes: each refuses bad input with an :class:`~dlogdet.core.errors.InputError`
that names the value and the fix."""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError


def check_positive(name: str, value, *, allow_zero: bool = False, hint: str = "") -> float:
    """``value`` as a finite float > 0 (≥ 0 with ``allow_zero``), else an InputError naming the fix."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a real number, got {value!r}{hint}") from None
    if not math.isfinite(f) or f < 0 or (f == 0 and not allow_zero):
        raise InputError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}{hint}")
    return f


def check_int(name: str, value, low: int, high: int | None = None, hint: str = "") -> int:
    """``value`` as an int in [low, high], else an InputError naming the allowed range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer, got {value!r}{hint}")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InputError(f"{name} must be {rng}, got {value}{hint}")
    return int(value)


def check_shift(t, d, n: int) -> tuple[float, float | np.ndarray]:
    """t > 0 and d ≥ 0 (a scalar or a length-n vector): the iterative estimators take t·A ⪰ 0 and M = t·A + diag(d)."""
    t = check_positive("t", t, hint=" (the iterative estimators take t·A positive semi-definite)")
    if np.ndim(d) == 0:
        d = check_positive("d (sigma^2, the diagonal shift)", d, allow_zero=True,
                           hint="; a negative shift can make t·A + d·I indefinite: use method='exact' with "
                                "assume='sym' for that")
        return t, d
    a = np.asarray(d, dtype=np.float64)
    if a.shape != (n,):
        raise InputError(f"d must be a scalar or a vector of length n = {n}, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise InputError("d (sigma^2, the diagonal shift) must be finite and >= 0 everywhere; use method='exact' "
                         "with assume='sym' for an indefinite matrix")
    return t, a
