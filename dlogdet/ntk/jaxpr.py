"""Everything this project reads of JAX's traced programs (jaxprs), in this one module.

A model ``f(params, x)`` is traced on one point (:func:`trace`); the program is flattened into a list of
:class:`Node` (calls to ``jit``, ``closed_call`` and ``checkpoint`` are inlined: they are plain calls; custom
derivative calls and control flow stay single nodes), and every value is classified:

* ``"X"``: depends on the point;
* ``"P"``: depends on trainable parameters only (a leaf, a rescaled or transposed weight, a tied copy);
* ``"C"``: neither (literals, constants, non-trainable state such as BatchNorm statistics).

A *use* is an operand of class P of a node whose outputs are of class X: where a parameter meets the point. The
structured NTK (:mod:`dlogdet.ntk.structured`) applies one rule per use (:mod:`dlogdet.ntk.rules`). The readers of
primitive parameters (:func:`dot_dims`, :func:`conv_dims`, :func:`row_gather`) and the primitive names live here
too, so that a JAX upgrade that moves any of this breaks this file, loudly, and its tests
(``tests/test_ntk_jaxpr.py``, one per primitive). Public ``jax.extend.core`` types are used where they exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from jax.extend import core as jcore

#: Call primitives whose body is inlined (plain calls: inlining changes neither values nor derivatives).
INLINED = {"jit", "pjit", "closed_call", "core_call", "checkpoint", "remat", "remat2"}

#: Single-operand primitives that move or rescale entries without mixing them (a permutation up to a scale, when
#: the other operands are scalar literals): the links a "chain" from a parameter leaf to its use may have.
PERMUTING = {"transpose", "reshape", "squeeze", "expand_dims", "convert_element_type", "copy", "copy_p", "neg"}
SCALING = {"mul", "div"}


@dataclass(frozen=True)
class Lit:
    """A literal operand (a constant known when the program is traced)."""

    value: Any


@dataclass(frozen=True)
class Node:
    """One primitive application: ``outs = prim(*ins, **params)``; ``ins`` are value ids or :class:`Lit`."""

    index: int
    prim: Any
    params: dict
    ins: tuple
    outs: tuple
    ctx: Any = None

    @property
    def name(self) -> str:
        return self.prim.name


@dataclass(frozen=True)
class Use:
    """Operand ``pos`` (value ``value``, class P) of node ``node``, whose outputs depend on the point."""

    node: int
    pos: int
    value: int


@dataclass
class Program:
    """A model's program on one point, flattened, with every value classified (module docstring)."""

    nodes: list
    shapes: list            # per value id
    dtypes: list            # per value id
    kinds: list             # per value id: "X", "P" or "C"
    t_ids: list             # trainable leaves' value ids, in leaf order
    n_ids: list             # non-trainable leaves' value ids
    x_id: int
    out_ids: list
    consts: dict            # value id -> array (the traced program's constants)
    producer: dict = field(default_factory=dict)
    consumers: dict = field(default_factory=dict)

    # ---- structure ---------------------------------------------------------------------------------------------

    def uses(self) -> list[Use]:
        """Every place where a value of class P meets the point, in program order."""
        out = []
        for node in self.nodes:
            if self.kinds[node.outs[0]] != "X":
                continue
            for pos, v in enumerate(node.ins):
                if isinstance(v, int) and self.kinds[v] == "P":
                    out.append(Use(node.index, pos, v))
        return out

    def outputs_of_params(self) -> list[int]:
        """Outputs of the program that are of class P (a parameter reaching the output without meeting x)."""
        return [v for v in self.out_ids if isinstance(v, int) and self.kinds[v] == "P"]

    def leaves_of(self, value: int) -> set[int]:
        """Positions (in ``t_ids``) of the trainable leaves a value of class P depends on."""
        pos = {v: k for k, v in enumerate(self.t_ids)}
        seen, stack, out = set(), [value], set()
        while stack:
            v = stack.pop()
            if v in seen or self.kinds[v] != "P":
                continue
            seen.add(v)
            if v in pos:
                out.add(pos[v])
            node = self.producer.get(v)
            if node is not None:
                stack.extend(i for i in self.nodes[node].ins if isinstance(i, int))
        return out

    def size(self, v: int) -> int:
        return int(math.prod(self.shapes[v]))

    def numbers_per_point(self) -> int:
        """Numbers one point's forward pass creates: the sizes of the values of class X (outputs included)."""
        return int(sum(self.size(v) for v in range(len(self.kinds)) if self.kinds[v] == "X"))

    # ---- evaluation ----------------------------------------------------------------------------------------------

    def static(self, tvals, nvals) -> dict:
        """The values of class P and C from the leaves' values (no point needed): value id -> array."""
        env = dict(self.consts)
        env.update(zip(self.t_ids, tvals))
        env.update(zip(self.n_ids, nvals))
        for node in self.nodes:
            if self.kinds[node.outs[0]] != "X":
                env.update(zip(node.outs, bind(node, [_read(env, v) for v in node.ins])))
        return env

    def pointwise(self, static: dict, x1, taps: dict | None = None, record=()):
        """Evaluate the nodes of class X on one point ``x1`` (shape (1, ...)): returns (outputs, recorded).

        ``taps`` maps value ids to arrays added to those values as they are computed (zero perturbations whose
        derivative is ∂f/∂value); ``record`` lists value ids whose values are returned.
        """
        env = dict(static)
        env[self.x_id] = x1
        taps = taps or {}
        for node in self.nodes:
            if self.kinds[node.outs[0]] != "X":
                continue
            outs = bind(node, [_read(env, v) for v in node.ins])
            for v, val in zip(node.outs, outs):
                env[v] = val + taps[v] if v in taps else val
        return [_read(env, v) for v in self.out_ids], {v: env[v] for v in record}

    def run(self, node: Node, values: dict, replace: dict | None = None):
        """``node`` applied to operands from ``values`` (value id -> array), with operand positions in ``replace``
        substituted; returns its outputs (a list)."""
        replace = replace or {}
        args = [replace[p] if p in replace else _read(values, v) for p, v in enumerate(node.ins)]
        return bind(node, args)


def _read(env, v):
    return v.value if isinstance(v, Lit) else env[v]


def bind(node: Node, args) -> list:
    """Apply a node's primitive to ``args`` as ``jax.core.eval_jaxpr`` does; always a list of outputs."""
    params = node.prim.get_bind_params(node.params)
    if isinstance(params, tuple):                 # jax < 0.7: (subfuns, params)
        subfuns, params = params
        args = [*subfuns, *args]
    manager = getattr(node.ctx, "manager", None)
    if manager is not None:
        with manager:
            out = node.prim.bind(*args, **params)
    else:
        out = node.prim.bind(*args, **params)
    return list(out) if node.prim.multiple_results else [out]


# ---- tracing ---------------------------------------------------------------------------------------------------

def trace(fn, tvals: list, nvals: list, x1) -> Program:
    """Trace ``fn(tvals, nvals, x1)`` (lists of leaves and one point of shape (1, ...)) into a :class:`Program`."""
    closed = jax.make_jaxpr(fn)(tvals, nvals, x1)
    b = _Builder()
    t_ids = [b.new(a.shape, a.dtype, "P" if _inexact(a.dtype) else "C") for a in tvals]
    n_ids = [b.new(a.shape, a.dtype, "C") for a in nvals]
    x_id = b.new(x1.shape, x1.dtype, "X")
    out_ids = b.inline(closed.jaxpr, list(closed.consts), [*t_ids, *n_ids, x_id])
    prog = Program(b.nodes, b.shapes, b.dtypes, b.kinds, t_ids, n_ids, x_id, out_ids, b.consts)
    for node in prog.nodes:
        for v in node.outs:
            prog.producer[v] = node.index
        for pos, v in enumerate(node.ins):
            if isinstance(v, int):
                prog.consumers.setdefault(v, []).append((node.index, pos))
    for pos, v in enumerate(out_ids):
        if isinstance(v, int):
            prog.consumers.setdefault(v, []).append((-1, pos))       # -1: the program's output
    return prog


def _inexact(dtype) -> bool:
    return bool(np.issubdtype(np.dtype(dtype), np.inexact))


class _Builder:
    def __init__(self):
        self.nodes, self.shapes, self.dtypes, self.kinds, self.consts = [], [], [], [], {}

    def new(self, shape, dtype, kind) -> int:
        self.shapes.append(tuple(shape))
        self.dtypes.append(dtype)
        self.kinds.append(kind)
        return len(self.kinds) - 1

    def inline(self, jaxpr, consts, ins) -> list:
        env = {}
        for var, c in zip(jaxpr.constvars, consts):
            env[var] = i = self.new(np.shape(c), getattr(c, "dtype", np.asarray(c).dtype), "C")
            self.consts[i] = c
        env.update(zip(jaxpr.invars, ins))

        def read(var):
            return Lit(var.val) if isinstance(var, jcore.Literal) else env[var]

        for eqn in jaxpr.eqns:
            args = [read(v) for v in eqn.invars]
            sub = _inlinable(eqn)
            if sub is not None:
                outs = self.inline(sub[0], sub[1], args)
            else:
                kinds = {self.kinds[a] for a in args if isinstance(a, int)}
                kind = "X" if "X" in kinds else "P" if "P" in kinds else "C"
                outs = []
                for v in eqn.outvars:
                    k = kind if kind != "P" or _inexact(v.aval.dtype) else "C"   # an integer: no derivative
                    outs.append(self.new(getattr(v.aval, "shape", ()), getattr(v.aval, "dtype", None), k))
                self.nodes.append(Node(len(self.nodes), eqn.primitive, dict(eqn.params), tuple(args), tuple(outs),
                                       getattr(eqn, "ctx", None)))
            for var, o in zip(eqn.outvars, outs):
                if not isinstance(var, jcore.DropVar):
                    env[var] = o
        return [read(v) for v in jaxpr.outvars]


def _inlinable(eqn):
    """(jaxpr, consts) of a call primitive's body, or None."""
    if eqn.primitive.name not in INLINED:
        return None
    for key in ("jaxpr", "call_jaxpr"):
        body = eqn.params.get(key)
        if isinstance(body, jcore.ClosedJaxpr):
            return body.jaxpr, list(body.consts)
        if isinstance(body, jcore.Jaxpr):
            return body, []
    return None


# ---- readers of primitive parameters -------------------------------------------------------------------------

def dot_dims(node: Node):
    """``((lhs_contract, rhs_contract), (lhs_batch, rhs_batch))`` of a ``dot_general`` node."""
    (lc, rc), (lb, rb) = node.params["dimension_numbers"]
    return (tuple(lc), tuple(rc)), (tuple(lb), tuple(rb))


@dataclass(frozen=True)
class ConvDims:
    """What a ``conv_general_dilated`` node does, in the terms of ``jax.lax.conv_general_dilated``."""

    window_strides: tuple
    padding: tuple
    lhs_dilation: tuple
    rhs_dilation: tuple
    lhs_spec: tuple       # (batch axis, feature axis, spatial axes...)
    rhs_spec: tuple       # (out-feature axis, in-feature axis, spatial axes...)
    out_spec: tuple       # (batch axis, feature axis, spatial axes...)
    feature_group_count: int
    batch_group_count: int
    precision: Any


def conv_dims(node: Node) -> ConvDims:
    p = node.params
    dn = p["dimension_numbers"]
    return ConvDims(tuple(p["window_strides"]), tuple(tuple(q) for q in p["padding"]), tuple(p["lhs_dilation"]),
                    tuple(p["rhs_dilation"]), tuple(dn.lhs_spec), tuple(dn.rhs_spec), tuple(dn.out_spec),
                    int(p["feature_group_count"]), int(p["batch_group_count"]), p.get("precision"))


def row_gather(node: Node, operand_shape: tuple) -> bool:
    """Whether a ``gather`` node picks whole rows of a 2-D operand (``table[ids]``, an embedding lookup): each
    output row (the last output axis) is row ``ids[...]`` of the table, in order."""
    if node.name != "gather" or len(operand_shape) != 2:
        return False
    d = node.params["dimension_numbers"]
    return (tuple(d.collapsed_slice_dims) == (0,) and tuple(d.start_index_map) == (0,)
            and tuple(getattr(d, "operand_batching_dims", ())) == ()
            and tuple(node.params["slice_sizes"]) == (1, operand_shape[1])
            and len(d.offset_dims) == 1)


def gather_offset_axis(node: Node) -> int:
    """The output axis of a row gather that runs along the table's row."""
    return int(node.params["dimension_numbers"].offset_dims[0])


def literal_scalar(v) -> float | None:
    """The value of a scalar literal operand, else None."""
    if isinstance(v, Lit) and np.ndim(v.value) == 0:
        return float(v.value)
    return None


def chain_step(prog: Program, node: Node, value: int) -> bool:
    """Whether ``node`` moves or rescales the entries of its operand ``value`` without mixing them: a permuting
    primitive, a ``broadcast_in_dim`` that only adds unit axes, or a product or quotient by a scalar literal
    (``value`` being the numerator)."""
    name = node.name
    if name in PERMUTING:
        return len(node.ins) == 1 and _inexact(prog.dtypes[node.outs[0]])
    if name == "broadcast_in_dim":
        return len(node.ins) == 1 and prog.size(node.outs[0]) == prog.size(value)
    if name in SCALING and len(node.ins) == 2:
        other = node.ins[1] if node.ins[0] == value else node.ins[0]
        if name == "div" and node.ins[0] != value:
            return False
        return literal_scalar(other) is not None and prog.shapes[node.outs[0]] == prog.shapes[value]
    return False
