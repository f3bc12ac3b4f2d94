"""L4 runtime: where graphs run and what they may hold.

The active client or the in-process scheduler (:mod:`~dlogdet.runtime.execute`), the memory budget
(:mod:`~dlogdet.runtime.memory`) and its accounting on a cluster (:mod:`~dlogdet.runtime.budget`), clusters from a
profile (:mod:`~dlogdet.runtime.deploy`; :func:`connect` is the documented entry point), timelines, products of a
source on the cluster (:mod:`~dlogdet.runtime.operator`) and the planner's time model
(:mod:`~dlogdet.runtime.planner`).
"""

from .deploy import connect
from .execute import MemoryWatch, Progress, ProgressCallback, RunStats, active_client, execute, n_workers

__all__ = ["connect", "execute", "active_client", "n_workers", "Progress", "ProgressCallback", "RunStats",
           "MemoryWatch"]
