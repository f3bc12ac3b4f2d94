"""Empirical NTK tiles K[I, J] = J(X_I)·J(X_J)ᵀ of any JAX model, computed from the points of the tile only.

JAX is imported lazily (inside methods): ``import dlogdet`` never imports it. Every JAX computation of a source runs
inside :func:`jax_context`, which turns on 64-bit types and ``"highest"`` matmul precision through JAX's
thread-local context managers (``jax.enable_x64``, ``jax.default_matmul_precision``), so other users of JAX in the
same process keep their own settings.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from ..sources.base import TileSource, check_dtype, content_token
from . import algorithms, checks, products
from .context import _code_digest, jax_context, model_identity  # noqa: F401 (re-exported)
from .products import (MATVEC_BYTES, MATVEC_CHUNK, MATVEC_COTANGENTS, MATVEC_MIN_FLOPS,  # noqa: F401 (re-exported)
                       MatvecPlan)

OUTPUTS = ("full", "trace")
IMPLEMENTATIONS = ("auto", "jacobian", "ntvp", "structured")

#: Jacobian contraction (alone, or as the fallback of ``"structured"``) is used only while a tile's per-point
#: Jacobians take at most this many bytes (why: they are the only memory it needs beyond the tile, and 1 GiB leaves
#: room on a worker of a few GiB); NTK-vector products above.
JACOBIAN_BYTES = 1 << 30


class NTKSource(TileSource):
    r"""Empirical NTK K = J Jᵀ of a model ``f(params, x)``, J = ∂f(params, X)/∂θ over the trainable leaves θ.

    ``outputs="full"``: the m × m matrix with m = n·O (O outputs per point), rows grouped by point: row r is
    output ``r % O`` of point ``r // O``, K[(i,o),(j,p)] = ⟨∂f_o(x_i)/∂θ, ∂f_p(x_j)/∂θ⟩ (the matrix of Novak et
    al. 2022 and of the log-determinant papers). ``outputs="trace"``: the n × n kernel
    K_ij = (1/O)·Σ_o ⟨∂f_o(x_i)/∂θ, ∂f_o(x_j)/∂θ⟩ (O² times cheaper to factor).

    A tile needs the derivatives at its own points only. Which algorithm computes them (N points in the tile, O
    outputs, P trainable parameters, [FP] the flops of one forward pass on one point, by XLA's cost analysis;
    O_e = O² for ``"full"``, O for ``"trace"``):

    ``"structured"`` (any model; :mod:`dlogdet.ntk.structured`)
        ``f`` is traced on one point, and every place where a trainable parameter (or a value computed from
        parameters alone: a rescaled, transposed or tied weight) meets the point gets a rule of its primitive
        (:mod:`dlogdet.ntk.rules`): dense products and embeddings by a factored Gram, e.g.
        ⟨∂f_o(x_i)/∂W, ∂f_p(x_j)/∂W⟩ = (h_i·h_j)(δ_{i,o}·δ_{j,p}) for y = h·W, biases folded into it,
        convolutions by per-point weight gradients from input patches, scales and the rest by the node's
        vector-Jacobian product; leaves that meet the point only through primitives without a rule (control flow,
        custom derivatives, ``pow``, …) come from Jacobian contraction or NTK-vector products restricted to them,
        so the tile is exact for every model. Time N·[FP]·(1 + O) for δ = ∂f/∂y (O backward passes per point
        to the activations only, no weight gradients) plus per use the cheaper of 2N²·M²·(C + O_e·F) (Gram; M
        rows per point, C contracted, F free) and 2N·O·M·C·F + 2N²·O_e·C·F (gradient); :meth:`explain` lists the
        rule and cost of every leaf.
    ``"jacobian"`` (Jacobian contraction)
        Per-point Jacobians by ``vmap(jacrev)``, contracted leaf by leaf: time N·[FP]·(1 + 2O) + 2N²·O_e·P
        (a backward pass to the weights costs about two forward passes), memory N·O·P. Per-point ``jacrev``
        through ``lax.conv`` runs very slowly on CPUs.
    ``"ntvp"`` (NTK-vector products)
        K·e_c = J(Jᵀe_c) by a ``vjp`` at the column's point and a ``jvp`` over the row points, without forming J:
        time 3N·O·(N + 1)·[FP], memory N·[FP-activations]: the fallback when Jacobians are too large.
    ``"auto"``
        ``"structured"`` wherever the model traces: by the formulas above its time is at most Jacobian
        contraction's up to the per-use terms (the same backward passes, without the weight gradients, which the
        rules form where they are cheapest), its memory is the per-point factors rather than N·O·P, and it is far
        below NTK-vector products' N²·O forward passes. Where the flop counts tie, they do not rank the two: on conv
        nets per-point ``jacrev`` through convolutions runs 9–36× slower on CPUs than the patches product, while on
        a small transformer block (P ≈ 61,000, O = 10) Jacobian contraction took 0.6–1.2× structured's time on
        tiles of 64 and 256 points (two runs). There its Jacobians outgrow :data:`JACOBIAN_BYTES` from 221 points per tile, so
        picking by flops would gain at most 1.7× on smaller tiles, and lose 9–36× wherever the tie misleads the
        other way (measured: docs/benchmarks/ntk.md). Where
        the model does not trace, the cheaper by :meth:`estimates` of ``"jacobian"`` (while a tile's Jacobians
        take at most :data:`JACOBIAN_BYTES`) and ``"ntvp"``.

    All implementations agree to rounding (1e-10 relative in float64 in the tests).

    Parameters
    ----------
    f : callable
        ``f(params, x) -> (n, O)`` for ``x`` of shape ``(n, *point_shape)``; plain JAX, or a Flax / Equinox model
        through :meth:`from_flax`, :meth:`from_nnx`, :meth:`from_equinox`. It is pickled with the source: a
        module-level function or a class instance, not a lambda, when the run uses worker processes. Its output
        for a point must not depend on the other points of the batch (checked).
    params : pytree
        The parameters and any other array state (dicts, lists, tuples, dataclass pytrees). Floating leaves are
        kept as NumPy arrays of ``dtype``, others as they are.
    x : array_like, shape ``(n, d)`` or ``(n, *point_shape)``
        The n points, one per row of the kernel (O rows per point for ``outputs="full"``).
    outputs : {"full", "trace"}
        The full n·O × n·O NTK (default) or the n × n kernel averaged over the outputs.
    implementation : {"auto", "jacobian", "ntvp", "structured"}
        The tile algorithm (above); ``"auto"`` by default.
    dtype : float64 or float32
        Precision of the derivatives and of the tiles. float64 by default: forming an NTK in 32-bit moves its
        log-determinant by several percent (Ameli et al. 2025 report 4–14%).
    trainable : None, pytree of bool, or callable
        Which leaves count: every floating leaf by default; else a pytree of booleans with the structure of
        ``params``, or a predicate on the leaf's path string (``"['params']['Dense_0']['kernel']"``). The others
        are held fixed (BatchNorm statistics, frozen layers).
    """

    symmetric = True

    def __init__(self, f, params, x, *, outputs: str = "full", implementation: str = "auto", dtype=np.float64,
                 trainable=None):
        if outputs not in OUTPUTS:
            raise InputError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
        if implementation not in IMPLEMENTATIONS:
            raise InputError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        if not callable(f):
            raise InputError(f"f must be a callable f(params, x), got {type(f).__name__}")
        self.dtype = check_dtype(dtype)
        self.x = checks.check_x(x, self.dtype)
        leaves, treedef, self.paths, self.trainable = checks.leaves_and_mask(params, trainable, self.dtype)
        checks.check_zoo(f, leaves, treedef, self.x)
        import jax

        self.params = jax.tree_util.tree_unflatten(treedef, leaves)
        self._leaves = leaves
        self._t_idx = [i for i, m in enumerate(self.trainable) if m]
        self.f, self.outputs, self.implementation = f, outputs, implementation
        self._default_trainable = trainable is None
        self.n_points = self.x.shape[0]
        self.n_params = int(sum(leaves[i].size for i in self._t_idx))
        with jax_context(self.dtype == np.float64):
            self.n_outputs = checks.probe(f, self._jparams(), self.x, self.dtype)
        self.rows_per_point = self.n_outputs if outputs == "full" else 1     # rows come grouped by point
        self.shape = (self.n_points * self.rows_per_point,) * 2
        self._fns = {}
        if implementation == "structured":
            self._structure()                                 # trace now: a model that does not trace says so here

    # ---- adapters ----------------------------------------------------------------------------------------------

    @classmethod
    def from_flax(cls, module, variables, x, **kwargs) -> NTKSource:
        """The NTK of a Flax linen module with its ``variables`` (collection ``"params"`` trainable, the others,
        such as ``"batch_stats"``, held fixed); ``apply_kwargs=`` (e.g. ``{"train": False}``) go to ``apply``."""
        from .adapters import flax_linen

        f, params, trainable = flax_linen(module, variables, kwargs.pop("apply_kwargs", None))
        return cls(f, params, x, trainable=kwargs.pop("trainable", trainable), **kwargs)

    @classmethod
    def from_nnx(cls, model, x, **kwargs) -> NTKSource:
        """The NTK of a Flax NNX module (its ``nnx.Param`` variables trainable, other state fixed; call
        ``model.eval()`` first when it has BatchNorm or dropout)."""
        from .adapters import flax_nnx

        f, params, trainable = flax_nnx(model)
        return cls(f, params, x, trainable=kwargs.pop("trainable", trainable), **kwargs)

    @classmethod
    def from_equinox(cls, model, x, **kwargs) -> NTKSource:
        """The NTK of an Equinox module that maps one point to its O outputs (its floating arrays trainable,
        static fields fixed, as ``eqx.partition(model, eqx.is_inexact_array)``)."""
        from .adapters import equinox_module

        f, params = equinox_module(model)
        return cls(f, params, x, **kwargs)

    # ---- structure and costs ---------------------------------------------------------------------------------------

    @property
    def _treedef(self):
        """The structure of ``params`` (recomputed after unpickling: the source pickles NumPy arrays only)."""
        t = self.__dict__.get("_treedef_cache")
        if t is None:
            import jax

            t = self._treedef_cache = jax.tree_util.tree_structure(self.params)
        return t

    def _jparams(self):
        import jax
        import jax.numpy as jnp

        return jax.tree_util.tree_unflatten(self._treedef, [jnp.asarray(a) for a in self._leaves])

    def _jleaves(self) -> list:
        """The leaves as JAX arrays (converted once per process)."""
        jl = self.__dict__.get("_jleaves_cache")
        if jl is None or jl[0] != self.dtype:
            import jax.numpy as jnp

            jl = self._jleaves_cache = (self.dtype, [jnp.asarray(a) for a in self._leaves])
        return jl[1]

    def _subset_fn(self):
        """g(leaves, S, values, x) = f at the leaves with positions S replaced by ``values``."""
        import jax

        f, treedef = self.f, self._treedef

        def g(leaves, S, values, x):
            ls = list(leaves)
            for i, v in zip(S, values):
                ls[i] = v
            return f(jax.tree_util.tree_unflatten(treedef, ls), x)

        return g

    def _structure(self):
        """The traced program's analysis (:class:`dlogdet.ntk.structured.Structure`), built once per process."""
        s = self.__dict__.get("_structure_cache")
        if s is None:
            from .structured import Structure

            g, T = self._subset_fn(), self._t_idx
            N_idx = [i for i in range(len(self._leaves)) if i not in set(T)]

            def fn(tvals, nvals, x):
                leaves = [None] * len(self._leaves)
                for i, v in zip(T, tvals):
                    leaves[i] = v
                for i, v in zip(N_idx, nvals):
                    leaves[i] = v
                return g(leaves, (), (), x)

            with jax_context(self.dtype == np.float64):
                jl = self._jleaves()
                try:
                    s = Structure(fn, [jl[i] for i in T], [jl[i] for i in N_idx], self.x[:1], self.n_outputs)
                except Exception as e:
                    raise InputError(f"f={self.f!r} could not be traced on one point for implementation="
                                     f"'structured': {type(e).__name__}: {e}; use 'jacobian' or 'ntvp'") from e
            s.fn, s.n_idx = fn, N_idx
            self._structure_cache = s
        return s

    def estimates(self, n_tile_points: int) -> dict:
        """Estimated flops of a tile touching ``n_tile_points`` points by each implementation (class docstring),
        and whether its memory fits: ``{"structured": …, "jacobian": …, "ntvp": …, "jacobian_fits": bool}``."""
        N, O, P, FP = int(n_tile_points), self.n_outputs, self.n_params, self._forward_flops()
        Oe = O * O if self.outputs == "full" else O
        out = {"jacobian": N * FP * (1.0 + 2.0 * O) + 2.0 * N * N * Oe * P, "ntvp": 3.0 * N * O * (N + 1) * FP,
               "jacobian_fits": N * O * P * self.dtype.itemsize <= JACOBIAN_BYTES}
        try:
            s = self._structure()
        except InputError:
            out["structured"] = None
            return out
        full = self.outputs == "full"
        plan = s.plan(N, full)
        units = sum(rules_cost(s, k, N, full, "gram") for k, _, _ in plan.gram)
        units += sum(rules_cost(s, k, N, full, "build") for k in plan.gradient)
        contracted = [self._t_idx[l] for l in plan.grad_leaves] + [self._t_idx[l] for k, _ in plan.direct
                                                                    for l in s.use_leaves[k]]
        units += sum(2.0 * N * N * Oe * self._leaves[i].size for i in contracted)
        out["structured"] = N * FP * (1.0 + O) + units + self._fallback_cost(N)[1]
        return out

    def _fallback_cost(self, N: int) -> tuple[str | None, float]:
        """(algorithm, flops) for the leaves without a rule: Jacobian contraction where their Jacobians fit and it
        is cheaper, else NTK-vector products restricted to them."""
        s = self._structure()
        if not s.fallback:
            return None, 0.0
        O, FP = self.n_outputs, self._forward_flops()
        Oe = O * O if self.outputs == "full" else O
        P_F = sum(self._leaves[self._t_idx[l]].size for l in s.fallback)
        jac, ntvp = N * FP * (1.0 + 2.0 * O) + 2.0 * N * N * Oe * P_F, 3.0 * N * O * (N + 1) * FP
        if N * O * P_F * self.dtype.itemsize <= JACOBIAN_BYTES and jac <= ntvp:
            return "jacobian", jac
        return "ntvp", ntvp

    def choose(self, n_tile_points: int) -> str:
        """The implementation ``"auto"`` resolves to for a tile touching ``n_tile_points`` distinct points."""
        if self.implementation != "auto":
            return self.implementation
        cache = self.__dict__.setdefault("_choice_cache", {})
        if n_tile_points in cache:
            return cache[n_tile_points]
        e = self.estimates(n_tile_points)
        if e["structured"] is not None:
            choice = "structured"
        else:
            choice = "jacobian" if e["jacobian_fits"] and e["jacobian"] <= e["ntvp"] else "ntvp"
        cache[n_tile_points] = choice
        return choice

    def explain(self, tile_points: int | None = None) -> dict:
        """Per parameter leaf: the rule that serves it and its estimated cost on a diagonal tile of
        ``tile_points`` points (default min(n, 1024)); JSON-able (what ``--json`` diagnostics carry)."""
        from .explain import explain

        return explain(self, int(tile_points or min(self.n_points, 1024)))

    def rank_boundaries(self) -> list[dict]:
        r"""Points at which a layer's part of a full-output NTK reaches its largest possible rank.

        Row (i, a) of a full-output NTK is the gradient of output a at point i; its part in the parameters of a
        layer (the leaves that meet the point at one dense product or convolution, with the bias added after it)
        lies in a space of dimension P_l, so it has no new direction to give once n·O ≥ P_l rows. A dense last layer
        z = h·W·s + b that gives output a its own column of W has O parts of rank at most d + 1 each (d = width of
        h), full at d + 1 points. The layers come from the traced program (:meth:`explain`), for any model.
        ``dlogdet.extrapolate`` reports the ones between the subsample and the full set
        (``diagnostics["rank_boundaries"]``) and then takes the Box-Cox probe (measured, and why it is a marker
        rather than the cause: :mod:`dlogdet.estimators.extrapolate`).

        Returns
        -------
        list of dict
            One per layer in program order: ``layer`` (index), ``kind`` ("dense", "conv", "embedding" or the
            primitive), ``parameters`` (P_l), ``points`` (the boundary, in points) and ``leaves`` (their paths).
            Empty for a traced NTK (its per-layer spaces are O times larger; not modelled) and for a model that
            does not trace.
        """
        if self.outputs != "full":
            return []
        try:
            s = self._structure()
        except InputError:
            return []
        from .explain import layers

        out = []
        for l, (kind, leaves, last) in enumerate(layers(s)):
            P = int(sum(self._leaves[self._t_idx[q]].size for q in leaves))
            points = int(last) if last is not None else -(-P // self.n_outputs)
            out.append({"layer": l, "kind": kind, "parameters": P, "points": points,
                        "leaves": [self.paths[self._t_idx[q]] for q in leaves]})
        return out

    # ---- pickling and identity -----------------------------------------------------------------------------------

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fns"] = {}               # jitted functions and the traced structure are rebuilt on the worker
        state.pop("_structure_cache", None)
        state.pop("_treedef_cache", None)
        state.pop("_jleaves_cache", None)
        state.pop("_choice_cache", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fns = {}

    def token(self) -> str:
        """Digest of f (:func:`model_identity`), the parameters, the points, the output mode, the implementation,
        the dtype and (when not the default) the trainable leaves: equal in every process for equal inputs (the
        tile store's resume relies on it)."""
        extra = () if self._default_trainable else ("trainable", tuple(self.trainable))
        return content_token("ntk", model_identity(self.f), str(self._treedef), *self._leaves, self.x, self.outputs,
                             self.implementation, str(self.dtype), *extra)

    def __repr__(self):
        return (f"NTKSource(f={self.f!r}, n={self.n_points}, O={self.n_outputs}, P={self.n_params}, "
                f"outputs={self.outputs!r}, implementation={self.implementation!r}, dtype={self.dtype})")

    # ---- tiles ---------------------------------------------------------------------------------------------------

    def _fn(self, name: str, *key):
        fn = self._fns.get((name, *key))
        if fn is None:
            fn = self._fns[(name, *key)] = getattr(self, f"_build_{name}")(*key)
        return fn

    def _build_matvec(self):
        return products.build_matvec(self)

    def _build_jacobian(self, S):
        return algorithms.build_jacobian(self, S)

    def _build_ntvp(self, S):
        return algorithms.build_ntvp(self, S)

    def _build_structured(self, N):
        return algorithms.build_structured(self, N)

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
        with jax_context(self.dtype == np.float64):
            xr, xc = self.x[pr], self.x[pc]
            if impl == "structured":
                K = algorithms.structured_block(self, xr, xc, same)
            else:
                K = algorithms.point_block(self, impl, self._t_idx, xr, xc, same)
        K = np.asarray(K)
        if self.outputs == "full":
            if _whole(ir, orow, pr.size, self.n_outputs) and _whole(ic, ocol, pc.size, self.n_outputs):
                K = K.reshape(ir.size, ic.size)                # every output of every point, in order: no copy
            else:
                K = K[ir[:, None], orow[:, None], ic[None, :], ocol[None, :]]
        elif not (_whole(ir, 0, pr.size, 1) and _whole(ic, 0, pc.size, 1)):
            K = K[ir][:, ic]
        return np.ascontiguousarray(K, dtype=self.dtype)

    def tile(self, r0, r1, c0, c1):
        k = self.block(np.arange(r0, r1), np.arange(c0, c1))
        if r0 == c0 and r1 == c1:  # diagonal tile: exactly symmetric whatever the rounding
            k = 0.5 * (k + k.T)
        return k

    def dense(self) -> np.ndarray:
        """The whole matrix (for tests and small references only)."""
        return self.tile(0, self.n, 0, self.n)

    # ---- the matrix-free product ---------------------------------------------------------------------------------

    def _forward_flops(self) -> float:
        """Floating-point operations of f's forward pass on one point, by XLA's cost analysis of the lowered
        function (2P, a dense network's count, where that is not available)."""
        n = self.__dict__.get("_forward_flops_cache")
        if n is None:
            import jax

            try:
                with jax_context(self.dtype == np.float64):
                    cost = jax.jit(self.f).lower(self._jparams(), self.x[:1]).cost_analysis()
                cost = cost[0] if isinstance(cost, (list, tuple)) else cost
                n = float(cost["flops"])
            except Exception:  # no cost analysis on this backend or for this callable: the dense count
                n = 0.0
            n = self._forward_flops_cache = n if n > 0 else 2.0 * self.n_params
        return n

    def _forward_numbers(self) -> int:
        """Numbers one point's forward pass creates (the values of the traced program that depend on the point).

        An estimate, used to size the product's chunks and column batches; it errs on the safe side, as XLA fuses
        elementwise steps (1.5–2.1× the buffers XLA assigned, for a 40→512→512→10 MLP).
        """
        n = self.__dict__.get("_forward_numbers_cache")
        if n is None:
            try:
                A = self._structure().prog.numbers_per_point()
            except InputError:
                A = 0
            n = self._forward_numbers_cache = max(A, int(np.prod(self.x.shape[1:])) + self.n_outputs)
        return n

    def matvec_plan(self, V, *, chunk: int | None = None, parts: int = 1, max_bytes: int | None = None,
                    columns: int | None = None) -> MatvecPlan:
        """The product K·V as tasks (:class:`MatvecPlan`): per batch of columns, one pull task per chunk of points,
        a sum of their cotangents, one push task per chunk.

        Sizes (N points in a chunk, b columns in a batch, A = :meth:`_forward_numbers` per point, P parameters,
        q = O cotangents per column for ``"trace"``, 1 for ``"full"``): a task holds about
        N·A + b·q·(N·A + 2P) numbers. Points per chunk: ``chunk``, shrunk (not below one point) where one column
        does not fit in ``max_bytes`` (:data:`MATVEC_BYTES` by default). Columns per batch: ``columns``, by default
        :data:`MATVEC_COTANGENTS` // q, at least one, or more while a call would do less than
        :data:`MATVEC_MIN_FLOPS`; fewer where ``max_bytes`` says so, rounded down to a power of two. The k columns
        run as batches of that width, then the binary digits of the rest (k = 27 at width 16: 16 + 8 + 2 + 1): no
        padded columns, and only a few shapes to compile however the active columns of a Lanczos block dwindle.

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
        return products.matvec_plan(self, V, chunk=chunk, parts=parts, max_bytes=max_bytes, columns=columns)

    def matvec(self, v, *, chunk: int = MATVEC_CHUNK, max_bytes: int | None = None,
               columns: int | None = None) -> np.ndarray:
        """K·v without forming K or J: J(Jᵀv), over chunks of ``chunk`` points and batches of ``columns`` columns
        (:meth:`matvec_plan` sizes both). ``v`` has shape (m,) or (m, k); the result has the same shape."""
        return products.matvec(self, v, chunk=chunk, max_bytes=max_bytes, columns=columns)


def _whole(pts, outs, n: int, O: int) -> bool:
    """Whether matrix indices run through every output of points 0…n-1 in order (a tile's usual rows)."""
    return (pts.size == n * O and np.array_equal(pts, np.repeat(np.arange(n), O))
            and (O == 1 or np.array_equal(outs, np.tile(np.arange(O), n))))


def rules_cost(s, k: int, N: int, full: bool, mode: str) -> float:
    """Estimated flops of use k of structure s on a tile of N points, served by ``mode``."""
    from . import rules

    return float(rules.costs(s.prog, s.uses[k], N, s.O, full)[mode])
