"""Stochastic Lanczos quadrature: log det M = tr log M, averaged over random probes, with an honest error bar.

Its parts: the method and its options (:mod:`~dlogdet.estimators.slq.estimate`), a block of probes through Lanczos
with its quadrature bracket and the Krylov deflation (:mod:`~dlogdet.estimators.slq.blocks`), the products with M
on the cluster (:mod:`dlogdet.runtime.operator`, graphs of :mod:`dlogdet.engine.products`) and the Krylov kernels
(:mod:`dlogdet.linalg.krylov`, pure maths).
"""

from .estimate import PROBES, SLQDiagnostics, run

__all__ = ["run", "SLQDiagnostics", "PROBES"]
