"""The three algorithms of an NTK tile over a subset of the leaves: Jacobian contraction, NTK-vector products and
the structured rules (:mod:`dlogdet.ntk.structured`, with the fallback for leaves without a rule). Each returns
the tile by points: (N_r, O, N_c, O) for ``"full"``, (N_r, N_c) for ``"trace"``."""

from __future__ import annotations

import numpy as np


def build_jacobian(source, S):
    """Per-point Jacobians with respect to the leaves at positions S: leaves (n, O, *leaf.shape)."""
    import jax

    g = source._subset_fn()

    def jac(leaves, x):
        sv = [leaves[i] for i in S]
        return jax.vmap(lambda xp: jax.jacrev(lambda s: g(leaves, S, s, xp[None])[0])(sv))(x)

    return jax.jit(jac)


def build_ntvp(source, S):
    """R[j, p, i, o] = K_S[(i, o), (j, p)]: the share of the leaves at positions S, by NTK-vector products."""
    import jax
    import jax.numpy as jnp

    g, n_out = source._subset_fn(), source.n_outputs

    def ntvp(leaves, xr, xc):
        eye = jnp.eye(n_out, dtype=xr.dtype)
        sv = [leaves[i] for i in S]

        def column(xj, e):
            _, pullback = jax.vjp(lambda s: g(leaves, S, s, xj[None]), sv)
            (tangent,) = pullback(e[None])                       # Jᵀ e_(j,p): one row of J, never all of J
            return jax.jvp(lambda s: g(leaves, S, s, xr), (sv,), (tangent,))[1]   # J_rows · that

        return jax.lax.map(lambda xj: jax.vmap(lambda e: column(xj, e))(eye), xc)

    return jax.jit(ntvp)


def build_structured(source, N):
    """(plan, the tile of one point set, the tile of two point sets) for tiles of N points, each one jitted program
    from the points to the tile: the per-point primaries and their contraction in one dispatch, which XLA can fuse
    (two dispatches cost a 64-point traced MLP tile a measurable share of its ~10 ms)."""
    import jax

    s, full = source._structure(), source.outputs == "full"
    plan = s.plan(N, full)
    primaries, same, cross = s.primaries(plan), s.contract(plan, full, True), s.contract(plan, full, False)

    def one(tv, nv, x):
        p = primaries(tv, nv, x)
        return same(tv, nv, p, p)

    def two(tv, nv, xr, xc):
        return cross(tv, nv, primaries(tv, nv, xr), primaries(tv, nv, xc))

    return plan, jax.jit(one), jax.jit(two)


def point_block(source, impl: str, S, xr, xc, same: bool):
    """The tile by points, (N_r, O, N_c, O) for ``"full"``, (N_r, N_c) for ``"trace"``, over leaves S."""
    full, O, leaves = source.outputs == "full", source.n_outputs, source._jleaves()
    if impl == "ntvp":
        R = np.asarray(source._fn("ntvp", tuple(S))(leaves, xr, xc))           # (n_c, O, n_r, O)
        return R.transpose(2, 3, 0, 1) if full else np.einsum("joio->ij", R) / O
    Jr = [np.asarray(a) for a in source._fn("jacobian", tuple(S))(leaves, xr)]
    Jc = Jr if same else [np.asarray(a) for a in source._fn("jacobian", tuple(S))(leaves, xc)]
    K = 0.0
    for a, b in zip(Jr, Jc):
        if full:
            K = K + (a.reshape(a.shape[0] * O, -1) @ b.reshape(b.shape[0] * O, -1).T).reshape(
                a.shape[0], O, b.shape[0], O)
        else:
            K = K + a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1).T / O
    return K


def structured_block(source, xr, xc, same: bool):
    """The structured tile: the rules' share from the per-point primaries, plus the fallback leaves' share."""
    s = source._structure()
    N = max(xr.shape[0], xc.shape[0])
    plan, tile_same, tile_cross = source._fn("structured", N)
    T = source._t_idx
    jl = source._jleaves()
    tv, nv = [jl[i] for i in T], [jl[i] for i in s.n_idx]
    O = source.n_outputs
    shape = (xr.shape[0], O, xc.shape[0], O) if source.outputs == "full" else (xr.shape[0], xc.shape[0])
    if plan.gram or plan.groups or plan.direct:
        K = np.asarray(tile_same(tv, nv, xr) if same else tile_cross(tv, nv, xr, xc))
    else:
        K = np.zeros(shape, source.dtype)
    algo, _ = source._fallback_cost(N)
    if algo is not None:
        K = K + point_block(source, algo, [T[l] for l in s.fallback], xr, xc, same)
    return K
