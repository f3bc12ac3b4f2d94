"""L3 engine: the exact factorization as Dask task graphs.

The one right-looking schedule (typed steps), its two emitters (tiles in worker memory, tiles in the on-disk tile
store), the exact plan (tile size, mode, slots, scratch, with the reason for each), blocked products and the
tasks of submatrix spectra. Graphs are built here and computed by :mod:`dlogdet.runtime`.
"""
