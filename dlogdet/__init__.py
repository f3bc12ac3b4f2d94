"""dlogdet: exact, memory-bounded, distributed log-determinants of huge dense matrices, as Dask task graphs."""

from . import config  # noqa: F401  (registers the dlogdet.* defaults in dask.config)
from .api import extrapolate, logdet, spectrum
from .errors import (DlogdetError, ExtrapolationError, InputError, MemoryBudgetError, NonFiniteError, NotPSDError,
                     NotSquareError, NotSymmetricError, ScratchSpaceError, SingularMatrixError, SourceError,
                     UnsupportedDtypeError, WorkerMemoryError)
from .planner import plan
from .result import Inertia, LogdetResult
from .status import Status
from .sources import ArraySource, DaskArraySource, KernelSource, NpySource, TileSource, ZarrSource, as_source

__version__ = "0.1.0"

__all__ = [
    "logdet", "extrapolate", "spectrum", "ExtrapolationError", "LogdetResult", "Inertia", "Status", "KernelSource",
    "TileSource",
    "ArraySource", "NpySource", "ZarrSource",
    "DaskArraySource", "as_source", "DlogdetError", "InputError", "NotPSDError", "NotSquareError",
    "NotSymmetricError", "NonFiniteError", "SingularMatrixError", "SourceError", "UnsupportedDtypeError",
    "MemoryBudgetError", "ScratchSpaceError", "WorkerMemoryError", "plan", "__version__",
]
