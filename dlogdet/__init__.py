"""dlogdet: exact, memory-bounded, distributed log-determinants of huge dense matrices, as Dask task graphs."""

from .core import config  # noqa: F401  (registers the dlogdet.* defaults in dask.config)
from .core import moved
from .api import extrapolate, logdet, spectrum
from .core.errors import (DlogdetError, ExtrapolationError, InputError, MemoryBudgetError, NonFiniteError,
                          NotPSDError, NotSquareError, NotSymmetricError, ScratchSpaceError, SingularMatrixError,
                          SourceError, UnsupportedDtypeError, WorkerMemoryError)
from .runtime.planner import plan
from .core.result import Inertia, LogdetResult
from .core.status import Status
from .sources import ArraySource, DaskArraySource, KernelSource, NpySource, TileSource, ZarrSource, as_source

__version__ = "0.1.0"

moved.install()   # the module paths of before the layers (dlogdet.ui.report, ...) as deprecated aliases

__all__ = [
    "logdet", "extrapolate", "spectrum", "ExtrapolationError", "LogdetResult", "Inertia", "Status", "KernelSource",
    "TileSource",
    "ArraySource", "NpySource", "ZarrSource",
    "DaskArraySource", "as_source", "DlogdetError", "InputError", "NotPSDError", "NotSquareError",
    "NotSymmetricError", "NonFiniteError", "SingularMatrixError", "SourceError", "UnsupportedDtypeError",
    "MemoryBudgetError", "ScratchSpaceError", "WorkerMemoryError", "plan", "__version__",
]
