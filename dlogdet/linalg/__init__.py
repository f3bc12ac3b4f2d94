"""L1 linalg: pure mathematics, on one machine: the array backend (NumPy/CuPy), the tile kernels, Krylov and
randomized kernels, the algebraic spectral curves of free decompression and the scaling-law fit.

No Dask, no distributed, no JAX: everything here runs in milliseconds on small arrays, and is tested that way.
"""
