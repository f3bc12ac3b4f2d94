"""The matrix-free NTK product K·V = J(JᵀV) for any model, as plain tasks (:class:`MatvecPlan`).

Per batch of columns: pull tasks (Jᵀ·W over a chunk of points, one ``vjp`` with the columns as a ``vmap`` axis),
a sum of their cotangents, push tasks (J·G over a chunk, one ``jvp``). Only the trainable leaves are
differentiated. JAX is imported inside the functions; the functions are module-level (pickled by reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.errors import InputError

#: The working set one task of the matrix-free product may take by default, as :func:`matvec_plan` estimates it
#: (chunks shrink and column batches narrow to fit). Why 256 MiB: room for a few tasks on a worker of a few GiB,
#: and the fastest plans measured (docs/benchmarks/ntk_matvec.md) fit in it.
MATVEC_BYTES = 1 << 28

#: Points per chunk of the matrix-free product unless the caller or the memory bound says otherwise (512: one
#: column at 1024 points took 0.93–1.6× as long as at 512, docs/benchmarks/ntk_matvec.md).
MATVEC_CHUNK = 512

#: Cotangents per call the product aims at (a column takes one, O for ``"trace"``): as many columns per batch as
#: this allows, at least one. A batch shares the forward pass each call reruns, but past a few cotangents the
#: wider buffers cost more than the wider products gain (measured on 2 CPU cores: docs/benchmarks/ntk_matvec.md;
#: a GPU may prefer wider batches, not measured: pass ``columns=``).
MATVEC_COTANGENTS = 4

#: Floating-point operations a call (a task on a cluster) should do at least: where :data:`MATVEC_COTANGENTS`
#: would leave less, the batch widens until it does (within the memory bound). A task on a cluster costs
#: milliseconds of scheduling whatever it computes, about the time of 1e8 operations here: SLQ on a 4→32→32→3 MLP
#: over 80 points took 23 s as 13,468 single-column tasks and 4.2 s as 196 tasks of 128 columns.
MATVEC_MIN_FLOPS = 1e8


@dataclass
class MatvecPlan:
    """A matrix-free product K·V as plain tasks, for any executor: :meth:`NTKSource.matvec` runs them in order,
    :class:`dlogdet.runtime.operator.SourceOperator` as a Dask graph on a cluster (this layer does not import Dask).

    For column batch g (columns ``columns[g] = (c0, c1)`` of V): each ``(fn, args)`` of ``pulls[g]`` gives the
    partial ``fn(source, *args)`` of one chunk of points (a list of arrays); ``add(a, b)`` sums two partials
    (a new list; the inputs are left alone); each ``(fn, args)`` of ``pushes[g]`` gives ``fn(source, total,
    *args)``, the next row block of K·V[:, c0:c1] from the sum of all partials. The functions are module-level
    (pickled by reference) and take the source as first argument, so that an executor ships the source once
    and the tasks only their arguments: indices, and the rows of V the pull needs.

    ``chunk`` is the points per chunk, ``task_bytes`` the estimated working set of the widest task.
    """

    columns: list
    pulls: list
    pushes: list
    add: Callable
    chunk: int
    task_bytes: int


def _matvec_pull(source, a: int, b: int, W: np.ndarray) -> list:
    """Jᵀ·W over points a:b (W: their rows of V), as the trainable leaves with the batch axes first."""
    from .source import jax_context

    pull, _ = source._fn("matvec")
    with jax_context(source.dtype == np.float64):
        return [np.asarray(leaf) for leaf in pull(source._jleaves(), source.x[a:b], W)]


def _matvec_push(source, g: list, a: int, b: int) -> np.ndarray:
    """Rows of J·G (``"trace"``: its output-wise trace) for points a:b, from the summed Jᵀ·V."""
    from .source import jax_context

    _, push = source._fn("matvec")
    with jax_context(source.dtype == np.float64):
        return np.asarray(push(source._jleaves(), source.x[a:b], list(g)))


def _matvec_add(s: list, t: list) -> list:
    """The sum of two partials (new arrays: a task's inputs may be shared)."""
    return [x + y for x, y in zip(s, t)]


def build_matvec(source):
    """(pull, push), jitted: pull(leaves, x, W) = Jᵀ·W and push(leaves, x, G) = J·G for a block of columns.

    The columns are a ``vmap`` axis of one ``vjp`` (pull) and one ``jvp`` (push) at the chunk's points: the forward
    pass is traced and run once per block, not once per column. ``"trace"`` needs O cotangents per column (output o
    of every point carries the column's entries), so its results carry two batch axes (column, output), and push
    keeps output o of the o-th tangent.
    """
    import jax
    import jax.numpy as jnp

    g, T = source._subset_fn(), source._t_idx
    n_out, trace = source.n_outputs, source.outputs == "trace"

    def pull(leaves, x, W):  # W (c·O, k) ("full", rows grouped by point) or (c, k)
        _, pullback = jax.vjp(lambda t: g(leaves, T, t, x), [leaves[i] for i in T])

        def back(w):
            return pullback(w)[0]

        if trace:                                                   # (k, O, c, O): column j on output o
            eye = jnp.eye(n_out, dtype=W.dtype)
            return jax.vmap(jax.vmap(back))(W.T[:, None, :, None] * eye[None, :, None, :])
        return jax.vmap(back)(W.T.reshape(W.shape[1], x.shape[0], n_out))

    def push(leaves, x, G):
        primal = [leaves[i] for i in T]

        def forward(t):  # the primal is not batched: vmap runs it once for all tangents
            return jax.jvp(lambda p: g(leaves, T, p, x), (primal,), (t,))[1]

        if trace:
            return jnp.einsum("koio->ik", jax.vmap(jax.vmap(forward))(G)) / n_out
        y = jax.vmap(forward)(G)                                    # (k, c, O)
        return y.reshape(y.shape[0], -1).T

    return jax.jit(pull), jax.jit(push)


def matvec_plan(source, V, *, chunk: int | None = None, parts: int = 1, max_bytes: int | None = None,
                columns: int | None = None) -> MatvecPlan:
    """The product K·V as tasks: per batch of columns, one pull task per chunk of points, a sum of their
    cotangents, one push task per chunk (:meth:`dlogdet.ntk.NTKSource.matvec_plan` documents the sizes)."""
    V = np.asarray(V, dtype=source.dtype)
    if V.ndim != 2 or V.shape[0] != source.n:
        raise InputError(f"V must have shape ({source.n}, k) for an NTK of shape {source.shape}, got {V.shape}")
    n, k, O = source.n_points, V.shape[1], source.n_outputs
    q = O if source.outputs == "trace" else 1
    A, P = source._forward_numbers(), source.n_params
    budget = (MATVEC_BYTES if max_bytes is None else int(max_bytes)) // source.dtype.itemsize
    c = min(n, int(chunk) if chunk is not None else min(MATVEC_CHUNK, -(-n // max(1, int(parts)))))
    if c < 1:
        raise InputError(f"chunk must be >= 1, got {chunk}")
    if 2 * P * q < budget < c * A * (1 + q) + 2 * P * q:  # one column does not fit: fewer points per chunk
        c = max(1, (budget - 2 * P * q) // (A * (1 + q)))
    if columns is None:  # MATVEC_COTANGENTS cotangents, more where a call would do less than MATVEC_MIN_FLOPS
        want = max(1, MATVEC_COTANGENTS // q, math.ceil(MATVEC_MIN_FLOPS / (2 * source._forward_flops() * c * q)))
    elif isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise InputError(f"columns must be a positive integer, got {columns!r}")
    else:
        want = int(columns)
    fit = max(1, min(k, want, (budget - c * A) // (q * (c * A + 2 * P))))
    cap = 1 << (fit.bit_length() - 1)                     # the widest power of two that fits
    widths = [cap] * (k // cap) + [1 << i for i in reversed(range(cap.bit_length())) if (k % cap) >> i & 1]
    edges = np.cumsum([0, *widths]).tolist()
    spans = [(a, min(a + c, n)) for a in range(0, n, c)]
    rows = O if source.outputs == "full" else 1              # rows of V per point
    plan = MatvecPlan(columns=list(zip(edges[:-1], edges[1:])), pulls=[], pushes=[], add=_matvec_add, chunk=c,
                      task_bytes=source.dtype.itemsize * (c * A + q * max(widths, default=0) * (c * A + 2 * P)))
    for c0, c1 in plan.columns:
        plan.pulls.append([(_matvec_pull, (a, b, np.ascontiguousarray(V[a * rows:b * rows, c0:c1])))
                           for a, b in spans])
        plan.pushes.append([(_matvec_push, (a, b)) for a, b in spans])
    return plan


def matvec(source, v, *, chunk: int = MATVEC_CHUNK, max_bytes: int | None = None, columns: int | None = None):
    """K·v by the plan of :func:`matvec_plan`, in this process; the cotangent sums accumulate in place."""
    v = np.asarray(v, dtype=source.dtype)
    if v.ndim not in (1, 2) or v.shape[0] != source.n:
        raise InputError(f"v must have {source.n} rows for an NTK of shape {source.shape}, got shape {v.shape}")
    V = v.reshape(source.n, -1)
    plan = matvec_plan(source, V, chunk=chunk, max_bytes=max_bytes, columns=columns)
    Y = np.empty(V.shape, dtype=source.dtype)
    for (c0, c1), pulls, pushes in zip(plan.columns, plan.pulls, plan.pushes):
        g = None
        for fn, args in pulls:
            part = fn(source, *args)
            if g is None:
                g = [np.array(a) for a in part]
            else:
                for s, a in zip(g, part):
                    s += a
        Y[:, c0:c1] = np.concatenate([fn(source, g, *args) for fn, args in pushes], axis=0)
    return Y.reshape(v.shape)
