r"""Free decompression on algebraic spectral curves: pure numerics (no dask), millisecond tests.

The Stieltjes transform m(z) = ∫ρ(x)/(x − z)dx of the eigenvalue law of a random n₀×n₀ principal submatrix of an
n×n matrix evolves with t = log(n/n₀) by ∂m/∂t = −m + (1/m)∂m/∂z (free decompression). If m₀ solves an algebraic
curve P(z, m) = Σ c_ij zⁱmʲ = 0, then mₜ solves the curve

    Pₜ(z, m) = m^{d_z} · P(z + (1 − e⁻ᵗ)/m, eᵗm) = 0,

(the characteristics z = z₀ + (1 − eᵗ)/m₀(z₀), mₜ = e⁻ᵗm₀(z₀) read backwards). Equivalently the R-transform
evolves as Rₜ(w) = R₀(eᵗw): free cumulants scale as κₖ(t) = e^{(k−1)t}κₖ(0) (the mean stays, the variance grows by
n/n₀), Marchenko–Pastur(λ) goes to Marchenko–Pastur(λ·n/n₀) exactly, and an atom of weight w₀ becomes
w(t) = 1 − (1 − w₀)e⁻ᵗ. Affine maps x ↦ (x − c)/s commute with the evolution, so every curve is fitted and
evolved in coordinates where the bulk spans [−1, 1] (or, on the log scale, (0, 1]).

Pipeline (each step a small function):

1. :func:`detect_atoms`: clusters of (numerically) equal eigenvalues, e.g. the zero atom of a rank-deficient matrix,
   are split off; the rest is the *bulk*.
2. :func:`fit_curve`: the curve P(z, m) of degrees (d_z, d_m) by least squares on contours around the support
   (Bernstein ellipses; on the log scale, the default for a positive spectrum, rays z = x·e^{iφ} at log-spaced x,
   which resolve every decade and so a bulk a decade below another), rows reweighted until the residual is the
   relative error of m the curve implies (not the algebraic residual, which lets a narrow bulk collapse into an
   atom), with the Laurent constraints that make m(z) = −Σμₖz^{−k−1} with μ₀ = 1 and the
   observed μ₁, μ₂ a solution at z → ∞. The curve holds the atoms as poles of m (Marchenko–Pastur with ratio > 1 is
   one (1, 2) curve with its zero atom); splitting the atoms off and composing them back in exactly was tried and
   dropped: the composed curve carries near-factors (aₖ − z) whose decompressed images are spurious branches.
   ``degrees="auto"`` chooses (d_z, d_m) by decompressing nested smaller spectra to n₀ (when given) and by the fit
   at n₀ itself: W₁ distances of λ and of log λ, each relative to the best candidate, median over the checks.
3. :meth:`SpectralCurve.decompress`: Pₜ in closed form; at every x the physical (Herglotz: Im m > 0 above the
   axis) root is followed from z = x + iY (Y large, m ≈ −1/z) down to the real axis; support edges by bisection,
   and a quadrature x = (a + b)/2 − (b − a)/2·cos θ per bulk, Gauss–Legendre in θ, which turns the square-root
   edges ρ ~ √(x − a) into a smooth integrand.
"""

from .algebra import (AUTO_DEGREES, Atom, CurveFitError, SpectrumError, decompressed_polynomial, detect_atoms,
                      evolve_atom_weight, physical_branch)
from .curve import Decompressed, SpectralCurve
from .fit import check_spectrum, choose_scale, fit_curve, parse_degrees
from .plot import plot_decompression
from .select import marchenko_pastur_density, marchenko_pastur_mean_log, select_curve

__all__ = ["SpectrumError", "CurveFitError", "AUTO_DEGREES", "Atom", "decompressed_polynomial", "physical_branch",
           "detect_atoms", "evolve_atom_weight", "Decompressed", "SpectralCurve", "check_spectrum", "choose_scale",
           "parse_degrees", "fit_curve", "select_curve", "marchenko_pastur_density", "marchenko_pastur_mean_log",
           "plot_decompression"]
