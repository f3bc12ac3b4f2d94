"""The JAX context every NTK computation runs in, and what identifies a model across processes."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def jax_context(x64: bool = True):
    """Enable (thread-locally) 64-bit JAX types and full-precision matrix products; yields the ``jax`` module.

    ``"highest"`` precision matters on GPUs, where JAX's default TF32 products make Gram matrices visibly
    indefinite (jax issue 19444); on CPUs it costs nothing.

    Parameters
    ----------
    x64 : bool
        64-bit types inside the block (False: 32-bit types, still with full-precision matrix products).
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
    """What identifies a model across processes: an adapter's ``ntk_identity()``; a dataclass's repr (the zoo: its
    sizes and settings); a function's module, qualified name and code digest (so an edited function is another
    model); for other callables their repr, unless it holds a memory address, then a digest of their cloudpickle."""
    import dataclasses

    if hasattr(f, "ntk_identity"):                 # the adapters of dlogdet.ntk.adapters
        return f.ntk_identity()
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
