"""Free decompression: log det of an n×n matrix from the spectra of random n₀×n₀ principal submatrices.

Its parts: the spectra of the submatrices (:mod:`~dlogdet.estimators.freedecomp.spectra`, tasks of
:mod:`dlogdet.engine.spectra`), the algebraic spectral curve fitted to them and evolved to n
(:mod:`dlogdet.linalg.freecurve`, pure maths), and the estimate with its uncertainty
(:mod:`~dlogdet.estimators.freedecomp.estimate`).
"""

from .estimate import DEFAULT_SAMPLES, MASS_TOLERANCE, FreeDecompDiagnostics, run

__all__ = ["run", "FreeDecompDiagnostics", "DEFAULT_SAMPLES", "MASS_TOLERANCE"]
