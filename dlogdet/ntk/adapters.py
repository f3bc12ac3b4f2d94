"""Adapters from the conventions users have to ``f(params, x)``: Flax linen, Flax NNX, Equinox.

Each returns a picklable callable ``f`` and the array state as ``params`` (plus, where the framework says which
arrays are parameters, a ``trainable`` predicate). Flax and Equinox are optional: imported only when an adapter is
called (``pip install dlogdet[flax]`` / ``dlogdet[equinox]``).
"""

from __future__ import annotations

from ..core.errors import InputError


def _digest(*objs) -> str:
    """A digest of the non-array parts of a model (its structure and static fields) by their reprs, memory
    addresses removed: the same in every process (a pickle's bytes are not: they follow object identities)."""
    import hashlib
    import re

    return hashlib.sha256(re.sub(r" at 0x[0-9a-fA-F]+", "", repr(objs)).encode()).hexdigest()[:16]


def _need(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise InputError(f"{module} is not installed: pip install 'dlogdet[{extra}]'") from e


class FlaxLinen:
    """``f(variables, x) = module.apply(variables, x, **apply_kwargs)`` (no mutable collections)."""

    def __init__(self, module, apply_kwargs=None):
        self.module = module
        self.apply_kwargs = dict(apply_kwargs or {})

    def __call__(self, variables, x):
        return self.module.apply(variables, x, **self.apply_kwargs)

    def __repr__(self):
        return f"FlaxLinen({self.module!r}, apply_kwargs={self.apply_kwargs!r})"


def _params_collection(path: str) -> bool:
    return path.startswith("['params']")


def flax_linen(module, variables, apply_kwargs=None):
    """(f, params, trainable) of a linen module: every collection of ``variables`` is passed, the ``"params"``
    collection is trainable, the others (``"batch_stats"``, …) are held fixed."""
    _need("flax", "flax")
    if not hasattr(variables, "keys") or "params" not in variables:
        raise InputError("variables must be the dict module.init(...) returned, with a 'params' collection; got "
                         f"{type(variables).__name__}" + (f" with keys {sorted(variables)}"
                                                          if hasattr(variables, "keys") else ""))
    return FlaxLinen(module, apply_kwargs), {k: variables[k] for k in variables}, _params_collection


class FlaxNNX:
    """``f(state, x) = nnx.merge(graphdef, state)(x)``, with non-array state (RNG keys, counters) kept here."""

    def __init__(self, graphdef, static_state, template):
        self.graphdef, self.static_state, self.template = graphdef, static_state, template

    def __call__(self, params, x):
        import jax
        from flax import nnx

        state = jax.tree_util.tree_map(lambda a: a, self.template)
        nnx.replace_by_pure_dict(state, {"params": params["params"], "state": params["state"]})
        return nnx.merge(self.graphdef, state["params"], state["state"], self.static_state)(x)

    def __repr__(self):
        return f"FlaxNNX({self.graphdef.nodes[0].type.__name__})"

    def ntk_identity(self) -> str:
        return f"{self!r}:{_digest(self.graphdef, self.static_state)}"


def flax_nnx(model):
    """(f, params, trainable) of an NNX module: ``nnx.Param`` variables trainable; other floating state
    (``nnx.BatchStat``, …) held fixed; non-array and non-floating state (RNG keys) kept with the graph."""
    _need("flax", "flax")
    import numpy as np
    from flax import nnx

    if not isinstance(model, nnx.Module):
        raise InputError(f"from_nnx needs a flax.nnx.Module, got {type(model).__name__}")

    def is_array_state(path, v):
        try:
            return np.issubdtype(np.asarray(v.get_value() if hasattr(v, "get_value") else v[...]).dtype,
                                 np.floating)
        except Exception:
            return False

    graphdef, params, state, static = nnx.split(model, nnx.Param, is_array_state, ...)
    template = nnx.State({"params": params, "state": state})
    pure = nnx.to_pure_dict(template)
    import jax

    shapes = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), template)  # no copy
    return FlaxNNX(graphdef, static, shapes), {"params": pure["params"], "state": pure["state"]}, \
        _params_collection


class Equinox:
    """``f(params, x) = vmap(eqx.combine(params, static))(x)``: an Equinox model maps one point to O outputs."""

    def __init__(self, static):
        self.static = static

    def __call__(self, params, x):
        import equinox as eqx
        import jax

        model = eqx.combine(params, self.static)
        return jax.vmap(model)(x)

    def __repr__(self):
        return f"Equinox({type(self.static).__name__})"

    def ntk_identity(self) -> str:
        """The static part's structure and leaves, functions by module, name and code (their reprs and pickles
        change when a worker unpickles them)."""
        import jax

        from .source import _code_digest

        def name(a):
            if not callable(a):
                return repr(a)
            code = getattr(a, "__code__", None)
            return (f"{getattr(a, '__module__', '?')}.{getattr(a, '__qualname__', type(a).__qualname__)}"
                    + (f":{_code_digest(code)}" if code is not None else ""))

        leaves, treedef = jax.tree_util.tree_flatten(self.static)
        return f"{self!r}:{_digest(str(treedef), [name(a) for a in leaves])}"


def equinox_module(model):
    """(f, params) of an Equinox module, split by ``eqx.partition(model, eqx.is_inexact_array)``."""
    eqx = _need("equinox", "equinox")
    params, static = eqx.partition(model, eqx.is_inexact_array)
    return Equinox(static), params
