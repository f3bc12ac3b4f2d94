"""Empirical NTK tiles K[I, J] = J(X_I)·J(X_J)ᵀ, computed from the points of the tile only, by three algorithms.

JAX is imported lazily (inside methods): ``import dlogdet`` never imports it. Every JAX computation of a source runs
inside :func:`jax_context`, which turns on 64-bit types and ``"highest"`` matmul precision through JAX's
thread-local context managers (``jax.enable_x64``, ``jax.default_matmul_precision``), so other users of JAX in the
same process keep their own settings.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from ..errors import InputError
from ..sources.base import TileSource, check_dtype, content_token
from .models import STRUCTURED_MODELS

OUTPUTS = ("full", "trace")
IMPLEMENTATIONS = ("auto", "jacobian", "ntvp", "structured")

#: ``implementation="auto"`` on a non-zoo model uses Jacobian contraction while the per-point Jacobians of a
#: tile's points take at most this many bytes, NTK-vector products above (why: the Jacobians are the only
#: memory Jacobian contraction needs beyond the tile, and 1 GiB leaves room on a worker of a few GiB).
JACOBIAN_BYTES = 1 << 30


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

    def _build_matvec(self):
        import jax
        import jax.numpy as jnp

        f, n_out, trace = self.f, self.n_outputs, self.outputs == "trace"

        def pull(params, x, v):  # Jᵀ v for v of shape (n, O) ("full") or (O, n, O) (one cotangent per output)
            _, pullback = jax.vjp(lambda p: f(p, x), params)
            return jax.vmap(lambda w: pullback(w)[0])(v) if trace else pullback(v)[0]

        def push(params, x, g):  # J g: (n, O), or (n,) with output o of the o-th tangent ("trace")
            if trace:
                t = jax.vmap(lambda gi: jax.jvp(lambda p: f(p, x), (params,), (gi,))[1])(g)   # (O, n, O)
                return jnp.einsum("ono->n", t) / n_out
            return jax.jvp(lambda p: f(p, x), (params,), (g,))[1]

        return jax.jit(pull), jax.jit(push)

    def matvec(self, v, *, chunk: int = 1024) -> np.ndarray:
        """K·v without forming K or J: J(Jᵀv), accumulated over chunks of ``chunk`` points (memory ~ one chunk's
        forward pass plus two parameter vectors; ``"trace"`` does O such products, one per output).

        ``v`` has shape (m,) or (m, k); the result has the same shape.
        """
        import jax

        v = np.asarray(v, dtype=self.dtype)
        if v.shape[0] != self.n:
            raise InputError(f"v must have {self.n} rows for an NTK of shape {self.shape}, got shape {v.shape}")
        if v.ndim == 2:
            return np.stack([self.matvec(v[:, k], chunk=chunk) for k in range(v.shape[1])], axis=1)
        O, n = self.n_outputs, self.n_points
        pull, push = self._fn("matvec")
        with jax_context(self.dtype == np.float64):
            params = self._jparams()
            spans = [(a, min(a + chunk, n)) for a in range(0, n, chunk)]
            g = None
            for a, b in spans:
                if self.outputs == "full":
                    w = v[a * O:b * O].reshape(b - a, O)
                else:  # cotangent o: v on output o of every point
                    w = np.einsum("n,op->onp", v[a:b], np.eye(O, dtype=self.dtype))
                gi = pull(params, self.x[a:b], w)
                g = gi if g is None else jax.tree_util.tree_map(lambda s, t: s + t, g, gi)
            out = [np.asarray(push(params, self.x[a:b], g)).reshape(-1) for a, b in spans]
        return np.concatenate(out).astype(self.dtype, copy=False)

    def tile(self, r0, r1, c0, c1):
        k = self.block(np.arange(r0, r1), np.arange(c0, c1))
        if r0 == c0 and r1 == c1:  # diagonal tile: exactly symmetric whatever the rounding
            k = 0.5 * (k + k.T)
        return k

    def dense(self) -> np.ndarray:
        """The whole matrix (for tests and small references only)."""
        return self.tile(0, self.n, 0, self.n)
