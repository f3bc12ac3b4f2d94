"""A Kronecker product A ⊗ B of two small SPD factors: a matrix of any size whose log-determinant is known.

log det(A ⊗ B) = p·log det A + m·log det B for A of order m and B of order p (the eigenvalues of A ⊗ B are the
products λᵢ(A)·μⱼ(B)), so a run of the exact engine on an n = m·p matrix that does not fit in memory can be
checked against a closed form computed from two m×m and p×p factors. Tiles are generated on the worker that needs
them from the factors (m² + p² numbers travel, not n²).

Spec: ``kron:[m=M,p=P,ridge=R,seed=S]`` (the spec registry, :mod:`dlogdet.sources.spec`, maps ``kron`` to this
module).
"""

from __future__ import annotations

import math

import numpy as np

from ..core.errors import InputError
from .base import TileSource, check_dtype, content_token

USAGE = "kron:[m=M,p=P,ridge=R,seed=S] (A (x) B of two seeded SPD factors, n = M*P, log det known in closed form)"

#: Defaults of the spec's options (why: 64 x 64 = 4096 rows factor in seconds on a laptop; a ridge of 0.5 on a
#: Wishart factor with aspect 1/2 bounds its condition number by about 6, so the product's is below 40 and the
#: engine's log-determinant matches the closed form to ~1e-13 relative).
DEFAULTS = {"m": 64, "p": 64, "ridge": 0.5, "seed": 0}
TYPES = {"m": int, "p": int, "ridge": float, "seed": int}


def spd_factor(order: int, ridge: float, rng: np.random.Generator) -> np.ndarray:
    """G·Gᵀ/(2·order) + ridge·I with G of shape (order, 2·order) standard normal: SPD for ridge > 0 (eigenvalues in
    about [(1 − 1/√2)² + ridge, (1 + 1/√2)² + ridge]), exactly symmetric."""
    g = rng.standard_normal((order, 2 * order))
    a = g @ g.T / (2 * order)
    a = 0.5 * (a + a.T)
    a[np.diag_indices(order)] += ridge
    return a


class KronSource(TileSource):
    r"""M = A ⊗ B, M[i·p + k, j·p + l] = A[i, j]·B[k, l], tiles generated where needed.

    Parameters
    ----------
    a : array_like, shape (m, m)
        Symmetric positive definite factor (checked by a Cholesky factorization).
    b : array_like, shape (p, p)
        Symmetric positive definite factor.
    dtype : float32 or float64
        dtype of the tiles (products are formed in float64).
    """

    symmetric = True   # A and B exactly symmetric: M[r, c] and M[c, r] are the same product of the same numbers

    def __init__(self, a, b, *, dtype=np.float64):
        self.a = self._factor(a, "a")
        self.b = self._factor(b, "b")
        self.m, self.p = self.a.shape[0], self.b.shape[0]
        self.dtype = check_dtype(dtype)
        self.shape = (self.m * self.p, self.m * self.p)

    @staticmethod
    def _factor(x, name: str) -> np.ndarray:
        x = np.array(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != x.shape[1] or x.shape[0] == 0:
            raise InputError(f"factor {name} must be a non-empty square matrix, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise InputError(f"factor {name} holds NaN or Inf")
        if not np.array_equal(x, x.T):
            raise InputError(f"factor {name} must be exactly symmetric: pass 0.5 * ({name} + {name}.T)")
        try:
            np.linalg.cholesky(x)
        except np.linalg.LinAlgError:
            raise InputError(f"factor {name} is not positive definite: add a ridge to its diagonal") from None
        return np.ascontiguousarray(x)

    @classmethod
    def random(cls, m: int, p: int, *, ridge: float = 0.5, seed: int = 0, dtype=np.float64) -> "KronSource":
        """A ⊗ B with seeded Wishart-plus-ridge factors (:func:`spd_factor`) of orders m and p."""
        if m < 1 or p < 1:
            raise InputError(f"a Kronecker source needs m >= 1 and p >= 1, got m={m}, p={p}")
        if not (ridge > 0 and math.isfinite(ridge)):
            raise InputError(f"ridge must be a positive number (it keeps the factors positive definite), got {ridge}")
        rng = np.random.default_rng(seed)
        return cls(spd_factor(m, ridge, rng), spd_factor(p, ridge, rng), dtype=dtype)

    def closed_form_logdet(self) -> float:
        """p·log det A + m·log det B, from Cholesky factorizations of the two factors."""
        la = 2.0 * float(np.sum(np.log(np.diag(np.linalg.cholesky(self.a)))))
        lb = 2.0 * float(np.sum(np.log(np.diag(np.linalg.cholesky(self.b)))))
        return self.p * la + self.m * lb

    def token(self) -> str:
        return content_token("kron", self.a, self.b, str(self.dtype))

    def block(self, rows, cols):
        ra, rb = np.divmod(np.asarray(rows), self.p)
        ca, cb = np.divmod(np.asarray(cols), self.p)
        out = self.a[np.ix_(ra, ca)]
        out *= self.b[np.ix_(rb, cb)]
        return out.astype(self.dtype, copy=False)

    def dense(self) -> np.ndarray:
        """The whole matrix (for tests and small references only)."""
        return np.kron(self.a, self.b).astype(self.dtype, copy=False)

    def __repr__(self) -> str:
        return f"KronSource(m={self.m}, p={self.p}, n={self.n}, dtype={self.dtype})"


def build(spec) -> KronSource:
    """The Kronecker source of a ``kron:`` spec."""
    o = spec.options(0, TYPES, DEFAULTS)
    return KronSource.random(o["m"], o["p"], ridge=o["ridge"], seed=o["seed"])
