"""The picture of a decompression: submatrix histogram, fitted and decompressed densities (matplotlib, imported only
when drawing)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .curve import SpectralCurve


def plot_decompression(curve: SpectralCurve, sizes: Sequence[int] = (), *, full_eigenvalues=None, path=None,
                       bins: int = 60):
    """Submatrix histogram, fitted density at n₀, decompressed densities at ``sizes`` and, where known, the
    histogram of the full matrix's eigenvalues. Matplotlib (Agg) is imported here, only when plotting.

    Returns the matplotlib Figure (saved to ``path`` when given: .png, .svg, .pdf).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    lam = curve.eigenvalues
    ax.hist(lam, bins=bins, density=True, alpha=0.35, color="tab:blue",
            label=f"submatrix eigenvalues (n0 = {curve.n0})")
    for k, n in enumerate([curve.n0, *sizes]):
        dec = curve.decompress(n, nodes=128)
        label = (f"fitted curve {curve.degrees}, n0 = {curve.n0}" if n == curve.n0 else f"decompressed, n = {n}")
        for i, (a, b) in enumerate(dec.intervals):
            x = np.linspace(a, b, 400)
            ax.plot(x, dec.density(x), color=f"C{k + 1}", lw=1.6, label=label if i == 0 else None)
        for at in dec.atoms:
            ax.axvline(at.location, color=f"C{k + 1}", ls=":", lw=1)
    if full_eigenvalues is not None:
        ax.hist(np.asarray(full_eigenvalues), bins=bins, density=True, histtype="step", color="k", lw=1,
                label="full matrix eigenvalues")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig
