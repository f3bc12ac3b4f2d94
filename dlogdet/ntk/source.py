"""Empirical NTK tiles K[I, J] = J(X_I)·J(X_J)ᵀ, computed from the points of the tile only, by three algorithms.

JAX is imported lazily (inside methods): ``import dlogdet`` never imports it. Every JAX computation of a source runs
inside :func:`jax_context`, which turns on 64-bit types and ``"highest"`` matmul precision through JAX's
thread-local context managers (``jax.enable_x64``, ``jax.default_matmul_precision``), so other users of JAX in the
same process keep their own settings.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.errors import InputError
from ..sources.base import TileSource, check_dtype, content_token
from .models import STRUCTURED_MODELS

OUTPUTS = ("full", "trace")
IMPLEMENTATIONS = ("auto", "jacobian", "ntvp", "structured")

#: ``implementation="auto"`` on a non-zoo model uses Jacobian contraction while the per-point Jacobians of a
#: tile's points take at most this many bytes, NTK-vector products above (why: the Jacobians are the only
#: memory Jacobian contraction needs beyond the tile, and 1 GiB leaves room on a worker of a few GiB).
JACOBIAN_BYTES = 1 << 30

#: The working set one task of the matrix-free product may take by default, as :meth:`NTKSource.matvec_plan`
#: estimates it (chunks shrink and column batches narrow to fit). Why 256 MiB: room for a few tasks on a worker
#: of a few GiB, and the fastest plans measured below fit in it (the slowest did not).
MATVEC_BYTES = 1 << 28

#: Points per chunk of the matrix-free product unless the caller or the memory bound says otherwise.
MATVEC_CHUNK = 512

#: Cotangents per call the product aims at (a column takes one, O for ``"trace"``): as many columns per batch as
#: this allows, at least one. Measured on this project's 2-core CPU (another job on the other core; seconds per
#: column, n = 2000, float64, interleaved rounds, best of 3–4), points per chunk × columns per batch:
#:
#: ============================  =========================================================================
#: MLP 40→512→512→10, "full"      1024 × 1: 0.141, 512 × 1: 0.113, 256 × 1: 0.115, 1024 × 4: 0.115,
#:                                512 × 4: 0.099, 256 × 4: 0.096, 512 × 16: 0.115, 256 × 16: 0.132
#: MLP 40→512→512→10, "trace"     1024 × 1: 1.19, 512 × 1: 1.04, 256 × 1: 1.12, 512 × 2: 1.13
#: MLP 40→128→128→10, "full"      1024 × 1: 0.013, 512 × 1: 0.014, 512 × 4: 0.008, 512 × 8: 0.008,
#:                                512 × 16: 0.009, 512 × 32: 0.012
#: MLP 40→128→128→10, "trace"     1024 × 1: 0.123, 512 × 1: 0.078, 256 × 1: 0.076, 512 × 2: 0.102,
#:                                512 × 4: 0.116
#: ============================  =========================================================================
#:
#: A batch shares the forward pass that each call reruns (a column alone: up to 1.75× slower per column); past a
#: few cotangents the wider buffers cost more than the wider matrix products gain, and a ``"trace"`` column
#: already brings O = 10. So: 512 points (one column at 1024 took 0.93–1.6× as long as at 512), batches of 4
#: columns for ``"full"``, single columns for ``"trace"`` on these CPUs. A GPU may well prefer wider batches
#: (not measured): pass ``columns=`` to :meth:`NTKSource.matvec`.
MATVEC_COTANGENTS = 4

#: Floating-point operations a call (a task on a cluster) should do at least: where
#: :data:`MATVEC_COTANGENTS` would leave less (small models, small chunks), the batch widens until it does
#: (within the memory bound). A task on a cluster costs milliseconds of scheduling whatever it computes, about
#: the time of 1e8 operations here. SLQ on a 4→32→32→3 MLP over 80 points (``"trace"``, 2 workers, 28
#: products of 128 columns): 13,468 tasks of single columns took 23 s, 196 tasks of 128 columns 4.2 s (the
#: workers' compiles included; in-process 1.5–1.9 s). The plans measured for :data:`MATVEC_COTANGENTS` stay as
#: they are: their narrowest calls do 1.9e8 (``"full"``, 4 columns) and 4.8e8 (``"trace"``, 1) operations.
MATVEC_MIN_FLOPS = 1e8


@contextlib.contextmanager
def jax_context(x64: bool = True):
    """Enable (thread-locally) 64-bit JAX types and full-precision matrix products; yields the ``jax`` module.

    ``"highest"`` precision matters on GPUs, where JAX's default TF32 products make Gram matrices visibly
    indefinite (jax issue 19444); on CPUs it costs nothing.
    """
    import jax

    with contextlib.ExitStack() as stack:
        if hasattr(jax, "enable_x64"):                       # jax >= 0.7: a thread-local context manager
            stack.enter_context(jax.enable_x64(x64))
        else:                                                # older jax: the experimental one
            from jax.experimental import enable_x64

            stack.enter_context(enable_x64(x64))
        stack.enter_context(jax.default_matmul_precision("highest"))
        yield jax


def _code_digest(code) -> str:
    """Digest of a code object: its bytecode, names and constants (nested functions' code included)."""
    import hashlib
    import types

    h = hashlib.sha256(code.co_code)
    h.update(repr(code.co_names).encode())
    for c in code.co_consts:
        h.update(_code_digest(c).encode() if isinstance(c, types.CodeType) else repr(c).encode())
    return h.hexdigest()[:16]


def model_identity(f) -> str:
    """What identifies a model across processes: a dataclass's repr (the zoo: its sizes and settings); a
    function's module, qualified name and code digest (so an edited function is another model); for other
    callables their repr, unless it holds a memory address, then a digest of their cloudpickle."""
    import dataclasses

    if dataclasses.is_dataclass(f) and not isinstance(f, type):
        return repr(f)
    code = getattr(f, "__code__", None)
    if code is not None:
        return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', '?')}:{_code_digest(code)}"
    r = repr(f)
    if " at 0x" not in r:
        return r
    import hashlib

    import cloudpickle

    return f"{type(f).__module__}.{type(f).__qualname__}:{hashlib.sha256(cloudpickle.dumps(f)).hexdigest()[:16]}"


def _leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


def _conv_grads(P, D, fan, beta):
    """Per-point gradients of a convolution layer, (n, O, C_out·F + C_out), from its patches P (n, F, L) and
    output cotangents D (n, O, C_out, L): ∂f_o/∂W = Σ_p δ_o(p) ⊗ patch(p)/√fan (one batched matrix product over
    the positions), ∂f_o/∂b = β·Σ_p δ_o(p)."""
    n, O, C, L = D.shape
    gW = np.matmul(D.reshape(n, O * C, L), P.transpose(0, 2, 1)).reshape(n, O, -1) / math.sqrt(fan)
    return np.concatenate([gW, beta * D.sum(axis=-1)], axis=-1)


@dataclass
class MatvecPlan:
    """A matrix-free product K·V as plain tasks, for any executor: :meth:`NTKSource.matvec` runs them in order,
    :class:`dlogdet.linop.SourceOperator` as a Dask graph on a cluster (this layer does not import Dask).

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
    """Jᵀ·W over points a:b (W: their rows of V), as the leaves of a parameter tree with the batch axes first."""
    pull, _ = source._fn("matvec")
    with jax_context(source.dtype == np.float64):
        return [np.asarray(leaf) for leaf in _leaves(pull(source._jparams(), source.x[a:b], W))]


def _matvec_push(source, g: list, a: int, b: int) -> np.ndarray:
    """Rows of J·G (``"trace"``: its output-wise trace) for points a:b, from the leaves of the summed Jᵀ·V."""
    import jax

    _, push = source._fn("matvec")
    with jax_context(source.dtype == np.float64):
        G = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(source.params), g)
        return np.asarray(push(source._jparams(), source.x[a:b], G))


def _matvec_add(s: list, t: list) -> list:
    """The sum of two partials (new arrays: a task's inputs may be shared)."""
    return [x + y for x, y in zip(s, t)]


class NTKSource(TileSource):
    r"""Empirical NTK K = J Jᵀ of a model ``f(params, x)``, J = ∂f(params, X)/∂params, produced tile by tile.

    ``outputs="full"``: the m × m matrix with m = n·O (O outputs per point), rows grouped by point: row r is
    output ``r % O`` of point ``r // O``, K[(i,o),(j,p)] = ⟨∂f_o(x_i)/∂θ, ∂f_p(x_j)/∂θ⟩ (the matrix of Novak et
    al. 2022 and of the log-determinant papers). ``outputs="trace"``: the n × n kernel
    K_ij = (1/O)·Σ_o ⟨∂f_o(x_i)/∂θ, ∂f_o(x_j)/∂θ⟩, the trace of each O×O block over O (O² times cheaper to
    factor).

    A tile needs the derivatives at its own points only, never the n × P Jacobian of the whole data set. Which
    algorithm computes them (N points in the tile, O outputs, P parameters, [FP] the cost of one forward pass):

    ``"structured"`` (zoo models only: :class:`~dlogdet.ntk.models.MLP`, ``FactorizedMLP``, ``CNN1D``, ``ResNet1D``)
        For a dense layer z = h·W/√d + β·b, ∂f_o/∂W = (h/√d) ⊗ δ_o with δ_o = ∂f_o/∂z, so
        ⟨∂f_o(x_i)/∂W, ∂f_p(x_j)/∂W⟩ = (h_i·h_j/d)(δ_{i,o}·δ_{j,p}) and the bias adds β²(δ_{i,o}·δ_{j,p}). The
        source computes h_l and δ_l (O backward passes per point) and sums
        (H_r H_cᵀ/d_l + β²) ⊙ (Δ_r Δ_cᵀ) over layers: time N·O·[FP] + N²·O²·Σ_l d_{l+1} + N²·Σ_l d_l, memory
        N·O·Σ_l d_l, a factor of width below Jacobian contraction (≈ 70× on an FCN in the paper, ≥ 100× here).
        A factorized layer z = (h·R)·W/√k + β·b (R fixed) is the same rule with the layer input h·R: the
        Gram (H_r R)(H_c R)ᵀ/k, so its cost drops by d/k with its parameters. A convolution
        z = conv(h, W)/√(C·q) + β·b shares W over the L positions, ∂f_o/∂W = Σ_p patch(p) ⊗ δ_o(p)/√(C·q):
        the source forms this per-point gradient (C_out·C·q numbers per point and output) from the patches and
        δ by one batched matrix product over positions and contracts it, time N·O·L·C·q·C_out +
        N²·O²·C·q·C_out: cheaper than the Σ_{p,q}(patch_i(p)·patch_j(q))(δ_i(p)·δ_j(q)) order whenever
        C·q·C_out < L² (always for small channel counts), and, unlike ``"jacobian"``, without a backward pass
        to every parameter of every layer.
    ``"jacobian"`` (Jacobian contraction; any model)
        Per-point Jacobians by ``vmap(jacrev)``, contracted leaf by leaf: time N·O·[FP] + N²·O²·P, memory
        N·O·P. In theory best for models with weight sharing ([FP] ≫ P) and few outputs, as long as the
        tile's Jacobians fit in memory; but per-point ``jacrev`` through ``lax.conv`` runs very slowly on CPUs
        (80 s for a 100×100 tile of ``CNN1D()``, 30× ``"ntvp"``): prefer ``"ntvp"`` for non-zoo CNNs.
    ``"ntvp"`` (NTK-vector products; any model)
        K·e_c = J(Jᵀe_c) by a ``vjp`` at the column's point and a ``jvp`` over the row points, one per column
        output, without ever forming J: time N²·O·[FP], memory N·[FP-activations]. Slowest for wide dense
        networks (N² forward passes), but its memory does not grow with P·O: the fallback when Jacobians are
        too large.
    ``"auto"``
        ``"structured"`` for the zoo models (MLP, FactorizedMLP, CNN1D; measured on 2 cores, a traced 100×100
        tile at 40→512→512→10: MLP 0.03 s structured vs 7.0 s jacobian, 1.9 s ntvp; factorized, k = 64:
        0.013 s vs 0.74 s, 0.31 s; ``CNN1D()`` (P = 3130) 0.12 s vs 80 s, 2.4 s: XLA's CPU convolutions under
        ``vmap(jacrev)`` are that slow, so Jacobian contraction is no choice for convolutions here); otherwise
        ``"jacobian"`` while a tile's per-point Jacobians take at most :data:`JACOBIAN_BYTES` (1 GiB), else
        ``"ntvp"``.

    All implementations agree to rounding (1e-10 relative in float64 in the tests).

    Parameters
    ----------
    f : callable
        ``f(params, x) -> (n, O)`` for ``x`` of shape (n, d); plain JAX, flax's ``apply`` or an equinox
        model's call all fit. It is pickled with the source: a module-level function or a class instance (such
        as :class:`~dlogdet.ntk.models.MLP`), not a lambda, when the run uses worker processes.
    params : pytree
        The parameters (dicts, lists, tuples of arrays). Kept as NumPy arrays of ``dtype``.
    x : array_like, shape (n, d)
        The data points.
    outputs : {"full", "trace"}
    implementation : {"auto", "jacobian", "ntvp", "structured"}
    dtype : float64 or float32
        Precision of the derivatives and of the tiles. float64 by default: forming an NTK in 32-bit moves its
        log-determinant by several percent (Ameli et al. 2025 report 4–14%).
    """

    symmetric = True

    def __init__(self, f, params, x, *, outputs: str = "full", implementation: str = "auto", dtype=np.float64):
        if outputs not in OUTPUTS:
            raise InputError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
        if implementation not in IMPLEMENTATIONS:
            raise InputError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        if not callable(f):
            raise InputError(f"f must be a callable f(params, x), got {type(f).__name__}")
        if implementation == "structured" and not isinstance(f, STRUCTURED_MODELS):
            raise InputError("implementation='structured' needs a model of the zoo (dlogdet.ntk.models: MLP, "
                             "FactorizedMLP, CNN1D, ResNet1D); "
                             f"got f={f!r}: use 'jacobian', 'ntvp' or 'auto'")
        self.dtype = check_dtype(dtype)
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise InputError(f"x must be 2-D, shape (n, d) with n, d >= 1; got shape {x.shape}")
        if x.dtype.kind not in "biuf":
            raise InputError(f"x must be numeric, got dtype {x.dtype}")
        if not np.all(np.isfinite(x)):
            bad = np.argwhere(~np.isfinite(x))[0]
            raise InputError(f"x holds NaN or Inf (first at point {bad[0]}, feature {bad[1]}); remove or impute "
                             "them before building an NTK")
        self.x = np.ascontiguousarray(x, dtype=self.dtype)

        import jax

        try:
            params = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=self.dtype), params)
        except (TypeError, ValueError) as e:
            raise InputError(f"params must be a pytree of numeric arrays: {e}") from e
        leaves = jax.tree_util.tree_leaves_with_path(params)
        if not leaves:
            raise InputError("params has no arrays: the NTK of a model without parameters is zero")
        for path, leaf in leaves:
            if not np.all(np.isfinite(leaf)):
                raise InputError(f"params{jax.tree_util.keystr(path)} holds NaN or Inf")
        self.params = params
        self.f = f
        self.outputs = outputs
        self.implementation = implementation
        if isinstance(f, STRUCTURED_MODELS):
            self._check_zoo_params()
            if self.x.shape[1] != f.n_features:
                raise InputError(f"x has {self.x.shape[1]} features but the model's input width is {f.n_features} "
                                 f"({f!r})")
        self.n_points = self.x.shape[0]
        self.n_params = int(sum(leaf.size for _, leaf in leaves))
        self.n_outputs = self._probe()
        m = self.n_points * self.n_outputs if outputs == "full" else self.n_points
        self.shape = (m, m)
        self._fns = {}

    # ---- validation ---------------------------------------------------------------------------------------------

    def _check_zoo_params(self):
        f, params = self.f, self.params
        shapes = f.param_shapes()
        if not isinstance(params, (list, tuple)) or len(params) != len(shapes):
            raise InputError(f"params do not match {f!r}: expected a list of {len(shapes)} layer dicts, got "
                             f"{type(params).__name__} of length {len(params) if hasattr(params, '__len__') else '?'}")
        for l, (layer, want) in enumerate(zip(params, shapes)):
            if not isinstance(layer, dict) or set(layer) != {"W", "b"}:
                raise InputError(f"params do not match {f!r}: layer {l} must be a dict with keys 'W' and 'b'")
            if layer["W"].shape != want["W"] or layer["b"].shape != want["b"]:
                raise InputError(f"params do not match {f!r}: layer {l} has W {layer['W'].shape} and b "
                                 f"{layer['b'].shape}, expected W {want['W']} and b {want['b']}")

    def _probe(self) -> int:
        """Run f on a batch of (at most) 2 points; return O, or raise an InputError naming f."""
        k = min(2, self.x.shape[0])
        with jax_context(self.dtype == np.float64):
            try:
                out = np.asarray(self.f(self._jparams(), self.x[:k]))
            except Exception as e:  # any failure of user code: name it, before the cluster does any work
                raise InputError(f"f={self.f!r} failed on a batch of {k} points of x (shape {self.x[:k].shape}) "
                                 f"with the given params: {type(e).__name__}: {e}") from e
        if out.ndim != 2 or out.shape[0] != k:
            raise InputError(f"f={self.f!r} must map x of shape (n, d) to outputs of shape (n, O); on {k} points "
                             f"it returned shape {out.shape}")
        if out.shape[1] == 0:
            raise InputError(f"f={self.f!r} returned no outputs (shape {out.shape})")
        if not np.all(np.isfinite(out)):
            raise InputError(f"f={self.f!r} returned NaN or Inf on the first {k} points of x")
        return int(out.shape[1])

    # ---- structure ---------------------------------------------------------------------------------------------

    def rank_boundaries(self) -> list[dict]:
        r"""Points at which a layer's part of a full-output NTK reaches its largest possible rank.

        Row (i, a) of a full-output NTK is the gradient of output a at point i, and its part in layer l's
        parameters lies in a space of dimension P_l (the layer's parameter count): once n·O ≥ P_l rows, that part
        of the kernel has no new direction to give. A dense last layer z = h·W/√d + β·b gives output a the features
        (h/√d, β) ⊗ e_a: O parts of rank at most d + 1 each, full at d + 1 points. ``dlogdet.extrapolate`` reports
        the ones between the subsample and the full set (``diagnostics["rank_boundaries"]``) and then takes the
        Box-Cox probe: such a boundary marks a network narrow for its data set, whose ℓ_k curve bends beyond the
        subsample (measured, and why it is a marker rather than the cause: :mod:`dlogdet.estimators.extrapolate`).

        Returns
        -------
        list of dict
            One per layer: ``layer`` (index), ``kind`` ("dense" or "conv"), ``parameters`` (P_l) and ``points``
            (the boundary, in points). Empty for a traced NTK (its per-layer spaces are O times larger and its last
            layer's is d + 1 for the sum of the outputs; not modelled here) and for a model that does not describe
            its layers (``param_shapes`` and ``layer_rules``, as the zoo's models do).
        """
        f = self.f
        if self.outputs != "full" or not (hasattr(f, "param_shapes") and hasattr(f, "layer_rules")):
            return []
        shapes, rules, O = f.param_shapes(), f.layer_rules(), self.n_outputs
        out = []
        for l, (shape, (kind, fan_in)) in enumerate(zip(shapes, rules)):
            P = int(sum(math.prod(s) for s in shape.values()))
            last_dense = l == len(shapes) - 1 and kind == "dense" and tuple(shape.get("W", ()))[-1:] == (O,)
            points = int(fan_in) + ("b" in shape) if last_dense else -(-P // O)
            out.append({"layer": l, "kind": kind, "parameters": P, "points": points})
        return out

    # ---- pickling and identity -----------------------------------------------------------------------------------

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fns"] = {}               # jitted functions are rebuilt on first use on the worker
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fns = {}

    def token(self) -> str:
        """Digest of f (:func:`model_identity`), the parameters, the points, the output mode, the implementation
        and the dtype: equal in every process for equal inputs (the tile store's resume relies on it)."""
        import jax

        leaves, treedef = jax.tree_util.tree_flatten(self.params)
        return content_token("ntk", model_identity(self.f), str(treedef), *leaves, self.x, self.outputs,
                             self.implementation, str(self.dtype))

    def __repr__(self):
        return (f"NTKSource(f={self.f!r}, n={self.n_points}, O={self.n_outputs}, P={self.n_params}, "
                f"outputs={self.outputs!r}, implementation={self.implementation!r}, dtype={self.dtype})")

    # ---- the three algorithms ------------------------------------------------------------------------------------

    def _jparams(self):
        import jax
        import jax.numpy as jnp

        return jax.tree_util.tree_map(jnp.asarray, self.params)

    def choose(self, n_tile_points: int) -> str:
        """The implementation ``"auto"`` resolves to for a tile touching ``n_tile_points`` distinct points."""
        if self.implementation != "auto":
            return self.implementation
        if isinstance(self.f, STRUCTURED_MODELS):
            return "structured"
        if n_tile_points * self.n_outputs * self.n_params * self.dtype.itemsize <= JACOBIAN_BYTES:
            return "jacobian"
        return "ntvp"

    def _fn(self, name: str):
        fn = self._fns.get(name)
        if fn is None:
            fn = self._fns[name] = getattr(self, f"_build_{name}")()
        return fn

    def _build_jacobian(self):
        import jax

        f = self.f

        def jac(params, x):  # leaves (n, O, *leaf.shape)
            return jax.vmap(lambda xp: jax.jacrev(lambda p: f(p, xp[None])[0])(params))(x)

        return jax.jit(jac)

    def _build_ntvp(self):
        import jax
        import jax.numpy as jnp

        f, n_out = self.f, self.n_outputs

        def ntvp(params, xr, xc):  # R[j, p, i, o] = K[(i, o), (j, p)]
            eye = jnp.eye(n_out, dtype=xr.dtype)

            def column(xj, e):
                _, pullback = jax.vjp(lambda p: f(p, xj[None]), params)
                (tangent,) = pullback(e[None])                       # Jᵀ e_(j,p): one row of J, never all of J
                return jax.jvp(lambda p: f(p, xr), (params,), (tangent,))[1]   # J_rows · that

            return jax.lax.map(lambda xj: jax.vmap(lambda e: column(xj, e))(eye), xc)

        return jax.jit(ntvp)

    def _build_structured(self):
        import jax
        import jax.numpy as jnp

        f = self.f

        def features(params, x):  # ([layer input of l], [δ_l (n, O, *z_l.shape)])
            _, hs = f.forward(params, x)

            def deltas(xp):
                zero = [jnp.zeros(s, dtype=x.dtype) for s in f.perturbation_shapes()]
                return jax.jacrev(lambda pert: f.forward(params, xp[None], [q[None] for q in pert])[0][0])(zero)

            return hs, jax.vmap(deltas)(x)

        return jax.jit(features)

    def _points(self, idx):
        """(distinct points, index of each entry's point among them, output of each entry) for matrix indices."""
        idx = np.asarray(idx, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"indices out of range for an NTK of shape {self.shape}")
        if self.outputs == "full":
            pts, out = np.divmod(idx, self.n_outputs)
        else:
            pts, out = idx, np.zeros_like(idx)
        upts, inv = np.unique(pts, return_inverse=True)
        return upts, inv.ravel(), out

    def block(self, rows, cols) -> np.ndarray:
        """K[rows][:, cols], from the derivatives at the rows' and columns' points only."""
        pr, ir, orow = self._points(rows)
        pc, ic, ocol = self._points(cols)
        if pr.size == 0 or pc.size == 0:
            return np.zeros((ir.size, ic.size), dtype=self.dtype)
        same = pr.size == pc.size and np.array_equal(pr, pc)
        impl = self.choose(pr.size + (0 if same else pc.size))
        full = self.outputs == "full"
        O = self.n_outputs
        with jax_context(self.dtype == np.float64):
            params = self._jparams()
            xr, xc = self.x[pr], self.x[pc]
            if impl == "ntvp":
                R = np.asarray(self._fn("ntvp")(params, xr, xc))            # (n_c, O, n_r, O)
                if full:
                    K = R[ic[None, :], ocol[None, :], ir[:, None], orow[:, None]]
                else:
                    K = np.einsum("joio->ij", R)[ir][:, ic] / O
            elif impl == "jacobian":
                fn = self._fn("jacobian")
                Jr = [np.asarray(a) for a in _leaves(fn(params, xr))]
                Jc = Jr if same else [np.asarray(a) for a in _leaves(fn(params, xc))]
                K = 0.0
                for a, b in zip(Jr, Jc):  # tree-wise sum of contractions over each leaf's parameters
                    if full:
                        K = K + a[ir, orow].reshape(ir.size, -1) @ b[ic, ocol].reshape(ic.size, -1).T
                    else:
                        K = K + (a.reshape(pr.size, -1) @ b.reshape(pc.size, -1).T)[ir][:, ic] / O
            else:
                fn = self._fn("structured")
                Hr, Dr = (list(map(np.asarray, t)) for t in fn(params, xr))
                Hc, Dc = (Hr, Dr) if same else (list(map(np.asarray, t)) for t in fn(params, xc))
                beta = self.f.beta
                K = 0.0
                for (kind, fan), hr, hc, dr, dc in zip(self.f.layer_rules(), Hr, Hc, Dr, Dc):
                    if kind == "dense":
                        G = hr @ hc.T / fan + beta ** 2                      # weight and bias factors
                        if full:
                            K = K + G[ir][:, ic] * (dr[ir, orow] @ dc[ic, ocol].T)
                        else:
                            K = K + (G * (dr.reshape(pr.size, -1) @ dc.reshape(pc.size, -1).T))[ir][:, ic] / O
                    else:  # convolution: per-point weight and bias gradients, contracted
                        gr = _conv_grads(hr, dr, fan, beta)
                        gc = gr if same else _conv_grads(hc, dc, fan, beta)
                        if full:
                            K = K + gr[ir, orow] @ gc[ic, ocol].T
                        else:
                            K = K + (gr.reshape(pr.size, -1) @ gc.reshape(pc.size, -1).T)[ir][:, ic] / O
        return np.ascontiguousarray(K, dtype=self.dtype)

    # ---- the matrix-free product ---------------------------------------------------------------------------------

    def _build_matvec(self):
        """(pull, push), jitted: pull(params, x, W) = Jᵀ·W and push(params, x, G) = J·G for a block of columns.

        The columns are a ``vmap`` axis of one ``vjp`` (pull) and one ``jvp`` (push) at the chunk's points: the
        forward pass is traced and run once per block, not once per column, and the per-layer products of the
        columns become one wider matrix product. ``"trace"`` needs O cotangents per column (output o of every
        point carries the column's entries), so its parameter-shaped results carry two batch axes (column,
        output), and push keeps output o of the o-th tangent.
        """
        import jax
        import jax.numpy as jnp

        f, n_out, trace = self.f, self.n_outputs, self.outputs == "trace"

        def pull(params, x, W):  # W (c·O, k) ("full", rows grouped by point) or (c, k); leaves (k, [O,] *leaf)
            _, pullback = jax.vjp(lambda p: f(p, x), params)

            def back(w):
                return pullback(w)[0]

            if trace:                                                   # (k, O, c, O): column j on output o
                eye = jnp.eye(n_out, dtype=W.dtype)
                return jax.vmap(jax.vmap(back))(W.T[:, None, :, None] * eye[None, :, None, :])
            return jax.vmap(back)(W.T.reshape(W.shape[1], x.shape[0], n_out))

        def push(params, x, G):  # J·G: (c·O, k) ("full"), or (c, k) with output o of the o-th tangent ("trace")
            def forward(g):  # the primal is not batched: vmap runs it once for all tangents
                return jax.jvp(lambda p: f(p, x), (params,), (g,))[1]

            if trace:
                return jnp.einsum("koio->ik", jax.vmap(jax.vmap(forward))(G)) / n_out
            t = jax.vmap(forward)(G)                                    # (k, c, O)
            return t.reshape(t.shape[0], -1).T

        return jax.jit(pull), jax.jit(push)

    def _forward_flops(self) -> float:
        """Floating-point operations of f's forward pass on one point, by XLA's cost analysis of the lowered
        function (2P, a dense network's count, where that is not available). A ``vjp`` or ``jvp`` costs about two
        forward passes per cotangent."""
        n = self.__dict__.get("_forward_flops_cache")
        if n is not None:
            return n
        import jax

        try:
            with jax_context(self.dtype == np.float64):
                cost = jax.jit(self.f).lower(self._jparams(), self.x[:1]).cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            n = float(cost["flops"])
        except Exception:  # no cost analysis on this backend or for this callable: the dense count
            n = 0.0
        n = n if n > 0 else 2.0 * self.n_params
        self._forward_flops_cache = n
        return n

    def _forward_numbers(self) -> int:
        """Numbers one point's forward pass creates: the sizes of the values of f's jaxpr on one point that depend
        on the point (parameter-only values such as a rescaled weight are not per point), sub-jaxprs included.

        An estimate, used to size the product's chunks and column batches: a backward or tangent pass through a
        chunk of c points holds about c times this per cotangent. It errs on the safe side, as XLA fuses
        elementwise steps: for a 40→512→512→10 MLP (A = 4126) the task sizes of :meth:`matvec_plan` were 1.5–2.1×
        the buffers XLA assigned to the compiled pull and push (``memory_analysis()``; 1024 points × 1 column to
        128 points × 16 columns, ``"full"`` and ``"trace"``).
        """
        n = self.__dict__.get("_forward_numbers_cache")
        if n is not None:
            return n
        import jax

        with jax_context(self.dtype == np.float64):
            closed = jax.make_jaxpr(self.f)(self._jparams(), self.x[:1])

        def size(v):
            return int(np.prod(getattr(v.aval, "shape", ()), dtype=np.int64))

        def subjaxprs(eqn):
            for p in eqn.params.values():
                for q in (p if isinstance(p, (list, tuple)) else (p,)):
                    j = getattr(q, "jaxpr", q)
                    if hasattr(j, "eqns"):
                        yield j

        def walk(jaxpr, live):  # live: the variables that depend on the point
            total = 0
            for eqn in jaxpr.eqns:
                if not any(not hasattr(v, "val") and v in live for v in eqn.invars):
                    continue
                total += sum(size(v) for v in eqn.outvars)
                live.update(eqn.outvars)
                for sub in subjaxprs(eqn):  # a nested call: what it creates besides its outputs (counted above)
                    total += max(0, walk(sub, set(sub.invars)) - sum(size(v) for v in sub.outvars))
            return total

        jaxpr = closed.jaxpr
        n = max(walk(jaxpr, set(jaxpr.invars[-1:])), self.x.shape[1] + self.n_outputs)
        self._forward_numbers_cache = n
        return n

    def matvec_plan(self, V, *, chunk: int | None = None, parts: int = 1, max_bytes: int | None = None,
                    columns: int | None = None) -> MatvecPlan:
        """The product K·V as tasks (:class:`MatvecPlan`): per batch of columns, one pull task per chunk of points,
        a sum of their cotangents, one push task per chunk.

        Sizes (N points in a chunk, b columns in a batch, A = :meth:`_forward_numbers` per point, P parameters,
        q = O cotangents per column for ``"trace"``, 1 for ``"full"``): a task holds about
        N·A + b·q·(N·A + 2P) numbers (the chunk's forward pass once, then per cotangent its backward or tangent
        pass and two parameter vectors: the partial Jᵀw and the sum it joins, or the tangent and its input).
        Points per chunk: ``chunk``, shrunk (not below one point) where one column does not fit in ``max_bytes``
        (:data:`MATVEC_BYTES` by default), unless its parameter vectors alone exceed it (no chunk would fit
        then). Columns per batch: ``columns``, by default :data:`MATVEC_COTANGENTS` // q, at least one (the
        widths measured fastest), or more while a call would do less than :data:`MATVEC_MIN_FLOPS` (2 forward
        passes per point and cotangent, :meth:`_forward_flops`); fewer where ``max_bytes`` says so, rounded down
        to a power of two. The k columns run
        as batches of that width, then the binary digits of the rest (k = 27 at width 16: 16 + 8 + 2 + 1): no
        padded columns, and only a few shapes to compile (1, 2, 4, …) however the active columns of a Lanczos
        block dwindle. A new width costs a compile (0.45 s for a 4→32→32→3 MLP, a hundred times its product on
        80 points), a new batch only one more forward pass per chunk.

        Parameters
        ----------
        V : array (m, k)
        chunk : int, optional
            Points per chunk (at most); default ``min(MATVEC_CHUNK, ⌈n / parts⌉)``.
        parts : int
            Chunks to aim for at least (the workers that will run them) when ``chunk`` is not given.
        max_bytes : int, optional
            The working set a task may take (default :data:`MATVEC_BYTES`).
        columns : int, optional
            Columns per batch (at most).
        """
        V = np.asarray(V, dtype=self.dtype)
        if V.ndim != 2 or V.shape[0] != self.n:
            raise InputError(f"V must have shape ({self.n}, k) for an NTK of shape {self.shape}, got {V.shape}")
        n, k, O = self.n_points, V.shape[1], self.n_outputs
        q = O if self.outputs == "trace" else 1
        A, P = self._forward_numbers(), self.n_params
        budget = (MATVEC_BYTES if max_bytes is None else int(max_bytes)) // self.dtype.itemsize
        c = min(n, int(chunk) if chunk is not None else min(MATVEC_CHUNK, -(-n // max(1, int(parts)))))
        if c < 1:
            raise InputError(f"chunk must be >= 1, got {chunk}")
        if 2 * P * q < budget < c * A * (1 + q) + 2 * P * q:  # one column does not fit: fewer points per chunk
            c = max(1, (budget - 2 * P * q) // (A * (1 + q)))
        if columns is None:  # MATVEC_COTANGENTS cotangents, more where a call would do less than MATVEC_MIN_FLOPS
            want = max(1, MATVEC_COTANGENTS // q, math.ceil(MATVEC_MIN_FLOPS / (2 * self._forward_flops() * c * q)))
        elif isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
            raise InputError(f"columns must be a positive integer, got {columns!r}")
        else:
            want = int(columns)
        fit = max(1, min(k, want, (budget - c * A) // (q * (c * A + 2 * P))))
        cap = 1 << (fit.bit_length() - 1)                     # the widest power of two that fits
        widths = [cap] * (k // cap) + [1 << i for i in reversed(range(cap.bit_length())) if (k % cap) >> i & 1]
        edges = np.cumsum([0, *widths]).tolist()
        spans = [(a, min(a + c, n)) for a in range(0, n, c)]
        rows = O if self.outputs == "full" else 1              # rows of V per point
        plan = MatvecPlan(columns=list(zip(edges[:-1], edges[1:])), pulls=[], pushes=[], add=_matvec_add,
                          chunk=c, task_bytes=self.dtype.itemsize * (c * A + q * max(widths, default=0) *
                                                                    (c * A + 2 * P)))
        for c0, c1 in plan.columns:
            plan.pulls.append([(_matvec_pull, (a, b, np.ascontiguousarray(V[a * rows:b * rows, c0:c1])))
                               for a, b in spans])
            plan.pushes.append([(_matvec_push, (a, b)) for a, b in spans])
        return plan

    def matvec(self, v, *, chunk: int = MATVEC_CHUNK, max_bytes: int | None = None,
               columns: int | None = None) -> np.ndarray:
        """K·v without forming K or J: J(Jᵀv), over chunks of ``chunk`` points and batches of ``columns`` columns
        (:meth:`matvec_plan` sizes both: a step holds at most about ``max_bytes``, one chunk's forward pass and per
        column its cotangent pass and two parameter vectors, O of each for ``"trace"``).

        ``v`` has shape (m,) or (m, k); the result has the same shape. A block is one pass over the data per
        batch of columns, not per column (each batch a ``vmap`` of one ``vjp`` and one ``jvp``); it equals the
        column-by-column product to rounding.
        """
        v = np.asarray(v, dtype=self.dtype)
        if v.ndim not in (1, 2) or v.shape[0] != self.n:
            raise InputError(f"v must have {self.n} rows for an NTK of shape {self.shape}, got shape {v.shape}")
        V = v.reshape(self.n, -1)
        plan = self.matvec_plan(V, chunk=chunk, max_bytes=max_bytes, columns=columns)
        Y = np.empty(V.shape, dtype=self.dtype)
        for (c0, c1), pulls, pushes in zip(plan.columns, plan.pulls, plan.pushes):
            g = None
            for fn, args in pulls:                             # the cotangent sum, accumulated in place
                part = fn(self, *args)
                if g is None:
                    g = [np.array(a) for a in part]
                else:
                    for s, a in zip(g, part):
                        s += a
            Y[:, c0:c1] = np.concatenate([fn(self, g, *args) for fn, args in pushes], axis=0)
        return Y.reshape(v.shape)

    def tile(self, r0, r1, c0, c1):
        k = self.block(np.arange(r0, r1), np.arange(c0, c1))
        if r0 == c0 and r1 == c1:  # diagonal tile: exactly symmetric whatever the rounding
            k = 0.5 * (k + k.T)
        return k

    def dense(self) -> np.ndarray:
        """The whole matrix (for tests and small references only)."""
        return self.tile(0, self.n, 0, self.n)
