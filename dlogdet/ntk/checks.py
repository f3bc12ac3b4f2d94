"""Checks of an NTK source's inputs, each before any tile is computed, each naming the problem and the fix."""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError


def check_x(x, dtype) -> np.ndarray:
    """x as a contiguous array of ``dtype``, shape (n, *point_shape) with n >= 1."""
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] == 0 or 0 in x.shape:
        raise InputError(f"x must hold n >= 1 points along its first axis, shape (n, d) or (n, *point_shape) with "
                         f"no empty axis; got shape {x.shape} (one point: x[None])")
    if x.dtype.kind not in "biuf":
        raise InputError(f"x must be numeric, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        where = f"point {bad[0]}, feature {bad[1]}" if x.ndim == 2 else f"point {bad[0]}, index {tuple(bad[1:])}"
        raise InputError(f"x holds NaN or Inf (first at {where}); remove or impute them before building an NTK")
    return np.ascontiguousarray(x, dtype=dtype)


def leaves_and_mask(params, trainable, dtype):
    """(leaves, treedef, paths, mask): the leaves of ``params`` (floating ones cast to ``dtype``, others kept), their
    path strings, and which are trainable (``trainable``: None for every floating leaf, a pytree of booleans with
    the structure of ``params``, or a predicate on the path string such as ``"['params']['Dense_0']['kernel']"``)."""
    import jax

    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    if not flat:
        raise InputError("params has no arrays: the NTK of a model without parameters is zero")
    leaves, paths = [], []
    for path, leaf in flat:
        name = "params" + jax.tree_util.keystr(path)
        try:
            a = np.asarray(leaf)
        except Exception as e:
            raise InputError(f"{name} is not an array ({type(leaf).__name__}): {e}") from e
        if a.dtype.kind not in "biufc":
            raise InputError(f"{name} is not numeric (dtype {a.dtype}); keep such state out of params (in the "
                             "model object) or pass it as a non-array static field")
        if a.dtype.kind == "f":
            a = a.astype(dtype)
            if not np.all(np.isfinite(a)):
                raise InputError(f"{name} holds NaN or Inf")
        leaves.append(a)
        paths.append(name)
    floating = [a.dtype.kind == "f" for a in leaves]
    if trainable is None:
        mask = floating
    elif callable(trainable):
        mask = [bool(trainable(p[len("params"):])) for p in paths]
    else:
        t_flat, t_def = jax.tree_util.tree_flatten(trainable)
        if t_def != treedef:
            raise InputError(f"trainable must be a pytree of booleans with the structure of params, or a predicate "
                             f"on the leaf path; its structure {t_def} differs from params' {treedef}")
        mask = [bool(t) for t in t_flat]
    for p, m, fl, a in zip(paths, mask, floating, leaves):
        if m and not fl:
            raise InputError(f"{p} has dtype {a.dtype} and is marked trainable: an NTK differentiates floating "
                             f"parameters only; mark it False in trainable= (it is then held fixed)")
    if not any(mask):
        raise InputError("no parameter is trainable (no floating leaf, or trainable= marks none): the NTK would be "
                         "zero")
    return leaves, treedef, paths, mask


def check_zoo(f, leaves, treedef, x):
    """A model that states its parameter shapes and input width (the zoo's ``param_shapes()``, ``n_features``)
    gets them checked with a message that says which layer differs."""
    import jax

    if hasattr(f, "param_shapes"):
        want = f.param_shapes()
        got = jax.tree_util.tree_unflatten(treedef, leaves)
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            raise InputError(f"params do not match {f!r}: expected a list of {len(want)} layer dicts, got "
                             f"{type(got).__name__} of length {len(got) if hasattr(got, '__len__') else '?'}")
        for l, (layer, w) in enumerate(zip(got, want)):
            if not isinstance(layer, dict) or set(layer) != set(w):
                raise InputError(f"params do not match {f!r}: layer {l} must be a dict with keys {sorted(w)}")
            if any(tuple(layer[k].shape) != tuple(w[k]) for k in w):
                have = " and ".join(f"{k} {layer[k].shape}" for k in sorted(w))
                exp = " and ".join(f"{k} {w[k]}" for k in sorted(w))
                raise InputError(f"params do not match {f!r}: layer {l} has {have}, expected {exp}")
    d = getattr(f, "n_features", None)
    if d is not None and (x.ndim != 2 or x.shape[1] != d):
        raise InputError(f"x has {x.shape[1] if x.ndim == 2 else x.shape[1:]} features but the model's input "
                         f"width is {d} ({f!r}): x must have shape (n, {d})")


_BATCH_HINT = ("an NTK needs each point's output to depend on that point only. BatchNorm in training mode does "
               "this (batch statistics): run it in inference mode (flax linen: BatchNorm(use_running_average=True) "
               "or the module's train=False; flax nnx: model.eval(); equinox: inference=True)")


def probe(f, params, x, dtype) -> int:
    """Run f on (at most) 3 points together and one by one: O, or an InputError naming what is wrong."""
    import jax

    k = min(3, x.shape[0])
    try:
        out = np.asarray(f(params, x[:k]))
    except Exception as e:  # any failure of user code: name it, before the cluster does any work
        hint = ""
        if "batch_stats" in str(e):
            hint = f" ({_BATCH_HINT})"
        raise InputError(f"f={f!r} failed on a batch of {k} points of x (shape {x[:k].shape}) with the given "
                         f"params: {type(e).__name__}: {e}{hint}; check that x has shape (n, *point_shape) with the "
                         f"point shape f expects") from e
    if out.ndim != 2 or out.shape[0] != k:
        raise InputError(f"f={f!r} must map x of shape (n, ...) to outputs of shape (n, O), one vector per point; "
                         f"on {k} points it returned shape {out.shape}")
    if out.shape[1] == 0:
        raise InputError(f"f={f!r} returned no outputs (shape {out.shape})")
    if not np.all(np.isfinite(out)):
        raise InputError(f"f={f!r} returned NaN or Inf on the first {k} points of x")
    if k > 1:
        try:
            alone = np.asarray(jax.vmap(lambda xi: f(params, xi[None])[0])(x[:k]))
        except Exception as e:
            raise InputError(f"f={f!r} failed on single points (vmapped): {type(e).__name__}: {e}; if the model "
                             f"is in training mode (it updates state as it runs): {_BATCH_HINT}") from e
        tol = 10 * np.sqrt(np.finfo(dtype).eps) * max(1.0, float(np.abs(out).max()))
        diff = float(np.abs(alone - out).max())
        if not diff <= tol:
            raise InputError(f"f={f!r} gives the first {k} points of x other outputs one at a time than together "
                             f"(max difference {diff:.3g}): {_BATCH_HINT}")
    return int(out.shape[1])
