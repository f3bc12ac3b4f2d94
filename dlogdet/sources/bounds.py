"""What is known of a source's spectrum without computing it."""

from __future__ import annotations

import numpy as np

from ..core.checks import check_positive
from .base import TileSource
from .kernel import KernelSource


def spectrum_lower_bound(source: TileSource, t: float, d, given=None) -> float | None:
    """A lower bound a ≤ λ_min(t·A + diag(d)), or None when none is known.

    ``given`` (the user's ``spectrum_lower=``) wins; otherwise ``min(d)`` plus, for a
    :class:`dlogdet.KernelSource`, ``t·jitter`` (a covariance kernel is positive semi-definite, so its nugget
    bounds its spectrum from below). None when that is 0: the estimators then cannot bracket the quadrature and
    say so.
    """
    if given is not None:
        return check_positive("spectrum_lower", given,
                              hint=" (a positive lower bound on the smallest eigenvalue of t·A + diag(d))")
    a = float(np.min(d)) if np.ndim(d) else float(d)
    if isinstance(source, KernelSource):
        a += t * source.jitter
    return a if a > 0 else None
