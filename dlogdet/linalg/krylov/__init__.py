"""Krylov and randomized kernels: Lanczos, Gauss quadrature of log, range finders, Nyström. Pure NumPy, no dask.

Everything here sees the matrix only through ``matmat(V) -> A·V`` for a block V of shape (n, k), so the same code
runs on an in-memory array, on a Dask graph over tiles (:mod:`dlogdet.engine.products`) or on a matrix-free product.

Maths in one place:

* **Lanczos** (one independent recurrence per column of the start block, advanced together so that one block
  product serves every column): ``A q_j = β_{j−1} q_{j−1} + α_j q_j + β_j q_{j+1}``; after m steps the Jacobi
  matrix ``T_m = tridiag(β, α, β)`` gives ``zᵀ f(A) z ≈ ‖z‖² e₁ᵀ f(T_m) e₁`` (the m-node **Gauss** rule of the
  spectral measure of A seen from z).
* **Quadrature bracket for f = log.** The even derivatives of log are negative and the odd ones positive, so
  the Gauss rule overestimates, ``zᵀ log(A) z ≤ Gauss_m``, and the **Gauss–Radau** rule with a prescribed node
  ``a ≤ λ_min(A)`` (the (m+1)×(m+1) Jacobi matrix extended by ``α̃ = a + β_m² / e_mᵀ(T_m − aI)⁻¹e_m``)
  underestimates: ``Radau_m(a) ≤ zᵀ log(A) z``. The bracket is exact arithmetic's guarantee (Golub & Meurant,
  *Matrices, Moments and Quadrature*, 2010, ch. 6), and its width is the quadrature bias, per probe.
* **Randomized range finder** (Halko, Martinsson & Tropp 2011): ``Q = orth(Aᵖ A G)`` with ``p`` power
  iterations, re-orthonormalized after every product.
* **Stable shifted single-pass Nyström** (Tropp, Yurtsever, Udell & Cevher 2017): with Ω orthonormal and
  ``Y = AΩ``: ``ν = eps·√n·‖Y‖_F``, ``Y_ν = Y + νΩ``, ``C = chol(ΩᵀY_ν)``, ``B = Y_ν C⁻¹``, ``B = UΣVᵀ``,
  ``Â = U max(Σ² − ν, 0) Uᵀ``. ``0 ⪯ Â ⪯ A`` (up to ν), which makes ``log det(Â + sI)`` a lower bound of
  ``log det(A + sI)``.
"""

from .deflation import KrylovBasis, RitzControl, deflated_samples, ritz_control
from .lanczos import EPS, REORTH, Lanczos, Matmat, breakdown_tol, probes
from .nystrom import (NystromApprox, NystromPreconditioner, nystrom, nystrom_logdet_bounds, orthonormalize,
                      randomized_nystrom, range_finder, spectral_decay)
from .quadrature import Quadrature, gauss_remainder, quadrature, radau_alpha

__all__ = ["EPS", "REORTH", "Matmat", "breakdown_tol", "probes", "Lanczos", "Quadrature", "quadrature",
           "radau_alpha", "gauss_remainder", "KrylovBasis", "RitzControl", "ritz_control", "deflated_samples",
           "orthonormalize", "range_finder", "nystrom", "NystromApprox", "randomized_nystrom",
           "NystromPreconditioner", "spectral_decay", "nystrom_logdet_bounds"]
