"""The Kronecker source A ⊗ B: its tiles are those of numpy.kron, its closed form matches LAPACK, and the exact engine
reproduces both, in memory and out of core.

References: ``numpy.kron`` for the entries (bit-equal: each entry is one product of the same two numbers) and
LAPACK's ``slogdet`` of the dense product at small n for the closed form p·log det A + m·log det B. Tolerances are
``logdet_tol`` of tests/conftest.py with the condition number κ(A ⊗ B) = κ(A)·κ(B) computed from the factors.
"""

from __future__ import annotations

import dask.config
import numpy as np
import pytest

import dlogdet
from dlogdet.core.errors import InputError
from dlogdet.sources import spec as S
from dlogdet.sources.kron import KronSource

from .conftest import cond_sym, logdet_tol


def kappa(src: KronSource) -> float:
    return cond_sym(src.a) * cond_sym(src.b)


def test_tiles_are_those_of_numpy_kron_including_ragged_ones():
    src = KronSource.random(7, 11, seed=3)
    dense = np.kron(src.a, src.b)
    assert src.shape == (77, 77) and src.symmetric
    np.testing.assert_array_equal(src.dense(), dense)
    for r0, r1, c0, c1 in [(0, 77, 0, 77), (5, 30, 12, 77), (70, 77, 0, 9), (11, 22, 11, 22)]:
        np.testing.assert_array_equal(src.tile(r0, r1, c0, c1), dense[r0:r1, c0:c1])
    np.testing.assert_array_equal(dense, dense.T)   # exactly symmetric: the engine may skip the symmetry check


@pytest.mark.parametrize("m, p", [(1, 9), (6, 13), (24, 20)])
def test_closed_form_matches_lapack(m, p):
    src = KronSource.random(m, p, seed=m + p)
    sign, ref = np.linalg.slogdet(src.dense())
    assert sign == 1.0
    assert src.closed_form_logdet() == pytest.approx(ref, abs=logdet_tol(m * p, kappa(src)))


def test_engine_in_memory_matches_closed_form_and_lapack():
    src = KronSource.random(16, 25, seed=1)   # n = 400, 4 panels of 100
    ref = np.linalg.slogdet(src.dense())[1]
    with dask.config.set({"dlogdet.min-block-size": 64}):
        r = dlogdet.logdet(src, block_size=100)
    tol = logdet_tol(src.n, kappa(src))
    assert r.status == "ok" and r.diagnostics["n_panels"] == 4
    assert r.logdet == pytest.approx(ref, abs=tol)
    assert r.logdet == pytest.approx(src.closed_form_logdet(), abs=tol)


def test_engine_out_of_core_matches_closed_form(tmp_path):
    """n = 4096 (64 ⊗ 64) under a 16 MiB budget per worker: the tile store, 7 panels; against the closed form."""
    src = dlogdet.as_source("kron:m=64,p=64,seed=2")
    r = dlogdet.logdet(src, budget="16MiB", scratch=tmp_path)
    d = r.diagnostics
    assert d["mode"] == "store" and d["n_panels"] >= 4
    assert r.logdet == pytest.approx(src.closed_form_logdet(), rel=1e-10, abs=logdet_tol(src.n, kappa(src)))
    assert list(tmp_path.iterdir()) == []          # the store is gone after success


def test_spec_reads_options_and_refuses_bad_ones():
    src = S.source_from_spec("kron:m=5,p=7,ridge=0.25,seed=9")
    assert isinstance(src, KronSource) and (src.m, src.p, src.n) == (5, 7, 35)
    again = KronSource.random(5, 7, ridge=0.25, seed=9)
    np.testing.assert_array_equal(src.dense(), again.dense())
    assert src.token() == again.token() != KronSource.random(5, 7, ridge=0.25, seed=10).token()
    assert "kron:" in S.usage()
    for text, words in [("kron:m=0", "m >= 1"), ("kron:ridge=0", "ridge must be a positive"),
                        ("kron:q=3", "key=value with keys m, p")]:
        with pytest.raises(InputError, match=words):
            S.source_from_spec(text)


def test_bad_factors_are_refused_with_the_fix():
    with pytest.raises(InputError, match="exactly symmetric"):
        KronSource(np.array([[2.0, 1.0], [0.5, 2.0]]), np.eye(2))
    with pytest.raises(InputError, match="not positive definite"):
        KronSource(np.eye(2), np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(InputError, match="square"):
        KronSource(np.ones((2, 3)), np.eye(2))
