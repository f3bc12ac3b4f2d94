"""Quick training of ``f(params, x)`` models with optax, and pickle-free saving and loading of their parameters.

``train(f, params, x, y)`` fits a classifier: Adam on the mean softmax cross-entropy of ``f``'s outputs against
integer labels, minibatches drawn with a seed, all in float64 through :func:`~dlogdet.ntk.source.jax_context`.
It is meant to make "the NTK of a trained network" one call away, not to be a training framework.

``save_params(path, params, model)`` writes a ``.npz`` holding one array per parameter leaf, keyed by its pytree
path (``"[0]['W']"``, …), plus a JSON header under the key ``"__dlogdet_params__"`` with the model's signature
(its ``repr`` for the zoo dataclasses) and every leaf's path, shape and dtype. ``load_params(path, model)`` reads
it with ``allow_pickle=False`` and refuses a file whose leaves or signature do not match the model, naming the
mismatch. JAX and optax are imported inside the functions only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import zipfile

import numpy as np

from ..core.errors import InputError, SourceError
from .source import jax_context

META_KEY = "__dlogdet_params__"
FORMAT = "dlogdet.ntk.params"
VERSION = 1


# ---- training ----------------------------------------------------------------------------------------------------

def train(f, params, x, y, *, steps: int = 200, lr: float = 1e-3, batch: int = 128, seed: int = 0):
    """Train ``f`` on ``(x, y)`` with Adam and softmax cross-entropy; return ``(params, history)``.

    Parameters
    ----------
    f : callable
        ``f(params, x) -> (n, O)`` logits; O must be at least ``max(y) + 1``.
    params : pytree of arrays
        Initial parameters (not modified).
    x : array_like, shape (n, d)
    y : array_like of int, shape (n,)
        Class labels in ``0 … O-1``.
    steps : int
        Number of Adam steps (>= 0; 0 returns the parameters unchanged).
    lr : float
        Adam learning rate.
    batch : int
        Minibatch size; ``min(batch, n)`` points per step, drawn from successive seeded permutations of the
        data (every point once per epoch), so every step has the same shape and the step compiles once.
    seed : int
        Seed of the minibatch order.

    Returns
    -------
    params : pytree of NumPy arrays
        Same structure as the input, each leaf in its input dtype.
    history : dict
        ``"loss"``: float64 array (steps,) of each step's minibatch loss (before its update);
        ``"loss_initial"`` / ``"loss_final"``: the full-data mean loss before and after training;
        ``"accuracy_initial"`` / ``"accuracy_final"``: full-data accuracy; ``"steps"``, ``"lr"``, ``"batch"``,
        ``"seed"``.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"x must be 2-D, shape (n, d) with n, d >= 1; got shape {x.shape}")
    if x.dtype.kind not in "biuf" or not np.all(np.isfinite(x)):
        raise InputError("x must be numeric and finite (no NaN or Inf)")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise InputError(f"y must be 1-D with one label per point of x ({x.shape[0]}); got shape {y.shape}")
    if y.dtype.kind not in "iu" or y.min() < 0:
        raise InputError(f"y must hold non-negative integer class labels; got dtype {y.dtype}, min {y.min()}")
    for name, v, lo in (("steps", steps, 0), ("batch", batch, 1), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise InputError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not (isinstance(lr, (int, float, np.floating)) and np.isfinite(lr) and lr > 0):
        raise InputError(f"lr must be a positive finite number, got {lr!r}")
    if not callable(f):
        raise InputError(f"f must be a callable f(params, x), got {type(f).__name__}")
    n, steps, batch = x.shape[0], int(steps), min(int(batch), x.shape[0])
    n_classes = int(y.max()) + 1

    import jax
    import jax.numpy as jnp
    import optax

    leaves, treedef = jax.tree_util.tree_flatten(params)
    if not leaves:
        raise InputError("params has no arrays")
    dtypes = [np.asarray(a).dtype for a in leaves]
    for path, a in jax.tree_util.tree_flatten_with_path(params)[0]:
        a = np.asarray(a)
        if a.dtype.kind not in "fc" or not np.all(np.isfinite(a)):
            raise InputError(f"params{jax.tree_util.keystr(path)} must be a finite floating-point array "
                             f"(dtype {a.dtype})")

    with jax_context(True):
        p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.float64), params)
        xj = jnp.asarray(x, dtype=jnp.float64)
        yj = jnp.asarray(y, dtype=jnp.int32)
        try:
            out = f(p, xj[: min(2, n)])
        except Exception as e:
            raise InputError(f"f={f!r} failed on a batch of x with the given params: {type(e).__name__}: {e}") from e
        if out.ndim != 2 or out.shape[0] != min(2, n):
            raise InputError(f"f={f!r} must return logits of shape (n, O); it returned shape {out.shape}")
        if out.shape[1] < n_classes:
            raise InputError(f"f={f!r} has {out.shape[1]} outputs but the labels need at least max(y)+1 = "
                             f"{n_classes} (one logit per class)")

        def loss_fn(p, xb, yb):
            logits = f(p, xb)
            return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(logits, yb))

        opt = optax.adam(lr)

        @jax.jit
        def step(p, state, xb, yb):
            loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
            updates, state = opt.update(g, state, p)
            return optax.apply_updates(p, updates), state, loss

        @jax.jit
        def evaluate(p):
            logits = f(p, xj)
            loss = jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(logits, yj))
            return loss, jnp.mean(jnp.argmax(logits, axis=1) == yj)

        loss0, acc0 = evaluate(p)
        state = opt.init(p)
        rng = np.random.default_rng(seed)
        order = np.empty(0, dtype=np.int64)
        losses = []
        for _ in range(steps):
            while order.size < batch:
                order = np.concatenate([order, rng.permutation(n)])
            idx, order = order[:batch], order[batch:]
            p, state, loss = step(p, state, xj[idx], yj[idx])
            losses.append(loss)
        loss1, acc1 = evaluate(p)
        losses = np.asarray(jnp.stack(losses), dtype=np.float64) if losses else np.zeros(0)
        out_leaves = [np.asarray(a).astype(dt, copy=False) for a, dt in zip(jax.tree_util.tree_leaves(p), dtypes)]
    if not np.all(np.isfinite(losses)) or not all(np.all(np.isfinite(a)) for a in out_leaves):
        raise InputError(f"training diverged (NaN or Inf loss or parameters) with lr={lr}: lower the learning rate")
    history = {"loss": losses, "loss_initial": float(loss0), "loss_final": float(loss1),
               "accuracy_initial": float(acc0), "accuracy_final": float(acc1),
               "steps": steps, "lr": float(lr), "batch": batch, "seed": int(seed)}
    return jax.tree_util.tree_unflatten(treedef, out_leaves), history


# ---- saving and loading ------------------------------------------------------------------------------------------

def model_signature(model) -> str:
    """A string naming the model: ``repr`` for dataclasses (the zoo), ``module.qualname`` for functions.

    Reprs that hold a memory address (``<… at 0x…>``) are replaced by the type's qualified name.
    """
    if dataclasses.is_dataclass(model) and not isinstance(model, type):
        return repr(model)
    qual = getattr(model, "__qualname__", None)
    if qual is not None and hasattr(model, "__module__"):        # functions, classes
        return f"{model.__module__}.{qual}"
    r = repr(model)
    if " at 0x" in r:
        t = type(model)
        return f"{t.__module__}.{t.__qualname__}"
    return r


def _flatten(params):
    import jax

    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    return [(jax.tree_util.keystr(path), np.asarray(a)) for path, a in flat], treedef


def _template(model, like):
    """Expected leaves (path, shape) and treedef: from ``like`` if given, else ``model.init()``."""
    if like is None:
        if not callable(getattr(model, "init", None)):
            raise InputError(f"model {model_signature(model)} has no init(): pass like=<params of the right "
                             "structure> so the file can be checked and unflattened")
        like = model.init()
    return _flatten(like)


def _mismatches(expected, found) -> list[str]:
    """Human-readable differences between two lists of (path, shape)."""
    exp, fnd = dict(expected), dict(found)
    out = []
    for path, shape in expected:
        if path not in fnd:
            out.append(f"leaf {path} is missing from the file (the model expects shape {tuple(shape)})")
        elif tuple(fnd[path]) != tuple(shape):
            out.append(f"leaf {path}: the model expects shape {tuple(shape)}, the file has {tuple(fnd[path])}")
    for path, shape in found:
        if path not in exp:
            out.append(f"leaf {path} (shape {tuple(shape)}) is in the file but not in the model")
    return out


def save_params(path, params, model) -> None:
    """Write ``params`` of ``model`` to ``path`` as an ``.npz`` (no pickle); see the module docstring.

    The file is written to a temporary name beside ``path`` and renamed, so a crash never leaves half a file.
    ``path`` is used as given (no ``.npz`` is appended). If ``model`` has ``init()`` the params must match its
    structure and shapes.
    """
    leaves, _ = _flatten(params)
    if not leaves:
        raise InputError("params has no arrays")
    if callable(getattr(model, "init", None)):
        expected, _ = _template(model, None)
        bad = _mismatches([(p, a.shape) for p, a in expected], [(p, a.shape) for p, a in leaves])
        if bad:
            raise InputError(f"params do not match {model_signature(model)}: " + "; ".join(bad[:5]))
    for p, a in leaves:
        if a.dtype.kind not in "biufc":
            raise InputError(f"params{p} is not numeric (dtype {a.dtype})")
        if p == META_KEY:
            raise InputError(f"a parameter path may not be {META_KEY!r}")
    meta = {"format": FORMAT, "version": VERSION, "model": model_signature(model),
            "leaves": [{"path": p, "shape": list(a.shape), "dtype": a.dtype.str} for p, a in leaves]}
    arrays = {p: a for p, a in leaves}
    arrays[META_KEY] = np.array(json.dumps(meta))
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".params-", suffix=".npz.tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_params(path, model, *, like=None):
    """Parameters saved by :func:`save_params`, checked against ``model`` and returned in its structure.

    The expected structure comes from ``model.init()`` (zoo models) or from ``like`` (any pytree of arrays
    of the right shapes). Raises :class:`~dlogdet.errors.SourceError` if the file cannot be read or is not a
    dlogdet parameter file, and :class:`~dlogdet.errors.InputError` naming the leaf (expected vs found shape)
    or the signatures if it does not match the model.
    """
    import jax

    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if META_KEY not in files:
                raise SourceError(f"{path} is not a dlogdet parameter file (no {META_KEY!r} entry); write it "
                                  "with dlogdet.ntk.save_params")
            meta = json.loads(str(z[META_KEY][()]))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise SourceError(f"{path} is not a dlogdet parameter file (format {meta.get('format')!r})")
            if meta.get("version") != VERSION:
                raise SourceError(f"{path} has parameter-file version {meta.get('version')!r}; this dlogdet "
                                  f"reads version {VERSION}")
            stored = {}
            for entry in meta["leaves"]:
                p = entry["path"]
                if p not in files:
                    raise SourceError(f"{path} is corrupt: leaf {p} is listed in the header but has no array")
                a = z[p]
                if list(a.shape) != list(entry["shape"]) or a.dtype.str != entry["dtype"]:
                    raise SourceError(f"{path} is corrupt: leaf {p} has shape {a.shape} dtype {a.dtype.str}, the "
                                      f"header says {tuple(entry['shape'])} {entry['dtype']}")
                stored[p] = a
    except (SourceError, InputError):
        raise
    except FileNotFoundError as e:
        raise SourceError(f"parameter file {path} does not exist") from e
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise SourceError(f"cannot read parameter file {path} (corrupt or not an .npz written by "
                          f"save_params): {type(e).__name__}: {e}") from e

    expected, treedef = _template(model, like)
    found = [(e["path"], tuple(e["shape"])) for e in meta["leaves"]]
    bad = _mismatches([(p, a.shape) for p, a in expected], found)
    sig = model_signature(model)
    if bad:
        raise InputError(f"{path} does not match the model {sig}: " + "; ".join(bad[:5])
                         + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
                         + f". The file was saved for {meta.get('model')}")
    if meta.get("model") != sig:
        raise InputError(f"{path} was saved for the model {meta.get('model')}, not {sig} (same leaf shapes, "
                         "different model signature)")
    for p, a in stored.items():
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            raise InputError(f"{path}: leaf {p} holds NaN or Inf")
    return jax.tree_util.tree_unflatten(treedef, [stored[p] for p, _ in expected])
