"""Error tree of dlogdet: every problem a user can hit has one class and a message that names the fix.

``InputError`` (also a ``ValueError``) is bad input: the CLI maps it to exit code 2. Everything else that
derives from ``DlogdetError`` is a failure of the computation (exit code 1).
"""

from __future__ import annotations


class DlogdetError(Exception):
    """Base class of every error raised by dlogdet."""


class InputError(DlogdetError, ValueError):
    """The input cannot be used as given (shape, dtype, values, file, option)."""


class NotSquareError(InputError):
    """The matrix is not 2-D and square."""


class UnsupportedDtypeError(InputError):
    """The matrix has a dtype the engine does not factorize (it supports float32 and float64)."""


class NotSymmetricError(InputError):
    """``assume="spd"`` or ``"sym"`` was asked for a matrix that is not symmetric within tolerance."""


class NonFiniteError(InputError):
    """The matrix holds NaN or Inf."""


class SourceError(InputError):
    """A file or source cannot be opened or read."""


class ClusterError(InputError):
    """A cluster profile, address or deployment that cannot be used (missing, malformed, no GPU, no workers)."""


class ExtrapolationError(InputError):
    """A subsample's ℓ_k curve cannot be extrapolated as asked: too short for the order, or not finite (a singular
    subsample)."""


class _PivotError(ArithmeticError):
    """An error at a pivot of the factorization; ``row`` (0-based, global) is kept through pickling."""

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.row = row

    def __reduce__(self):  # keep ``row`` when the error crosses process boundaries
        return (type(self), (self.args[0], self.row))


class NotPSDError(_PivotError, InputError):
    """``assume="spd"`` but a Cholesky pivot was not positive.

    Attributes
    ----------
    row : int
        Global row (0-based) of the first pivot that failed.
    """


class SingularMatrixError(_PivotError, DlogdetError):
    """A diagonal tile became exactly singular, so the tiled LDLᵀ/LU cannot go on past it.

    The determinant of the matrix is then 0 (log det = -inf) to working precision.

    Attributes
    ----------
    row : int
        Global row (0-based) of the first zero pivot.
    """


class _NeedsBytes(InputError):
    """An input error that names the bytes a run would need (``needed``), kept through pickling."""

    def __init__(self, message: str, needed: int | None = None):
        super().__init__(message)
        self.needed = needed

    def __reduce__(self):
        return (type(self), (self.args[0], self.needed))


class MemoryBudgetError(_NeedsBytes):
    """The requested memory budget is smaller than the smallest working set that can run.

    Attributes
    ----------
    needed : int or None
        The smallest budget in bytes that would work (also named in the message).
    """


class WorkerMemoryError(MemoryBudgetError):
    """A worker ran out of memory during a run: its nanny restarted it at its memory limit, or dask kept it paused.

    The message names the worker, its memory limit, what the run held per worker, and the fix (the default
    ``budget="auto"``, a smaller ``budget=``, or workers with more memory).
    """


class ScratchSpaceError(_NeedsBytes):
    """The scratch directory of the on-disk tile store cannot hold the run: too little free space at the start, or
    a file system that filled up, turned read-only or lost the store during the run.

    Finished steps stay on disk: once the cause is fixed, the same call resumes from them (the message says from
    which step). The command line exits with status 2.

    Attributes
    ----------
    needed : int or None
        Bytes of free disk the run needs.
    """


class DlogdetDeprecationWarning(DeprecationWarning):
    """An old spelling of a renamed option value or diagnostics key: it still works, the message names the new one
    (the command line shows these warnings; Python hides DeprecationWarning outside ``__main__`` by default)."""


def warn_renamed(old: str, new: str, what: str, stacklevel: int = 3) -> None:
    """Warn that ``what`` ``old`` is now spelled ``new`` (a :class:`DlogdetDeprecationWarning`)."""
    import warnings

    warnings.warn(f"{what} {old!r} is renamed {new!r}; the old spelling still works but will be removed",
                  DlogdetDeprecationWarning, stacklevel=stacklevel)
