"""Algebraic simplification: rewrite rules keyed by op name (and by op kind), applied in order.

Each rule looks at one node and returns the Value that replaces its output, True when it
rewrote the node in place, or None. A replacement must have the node's exact type (dtype and
shape), so an identity never drops a broadcast or a type promotion: x * 1 is x only where the
product is typed as x.

    x * 1, 1 * x, x / 1         -> x          (exact for every dtype)
    x - 0, x + (-0.0), -0.0 + x -> x          (exact for floats too, -0.0 included)
    x + 0, 0 + x                -> x          (integers only: for floats -0.0 + 0 is +0.0)
    x - x                       -> zeros      (integers only: for floats inf - inf is nan)
    permute(permute(x))         -> permute(x) (and x when the composition is the identity)
    reshape/view of reshape/view -> one reshape (a view of a view stays a view)
    cast(cast(x, a), b)         -> cast(x, b) when casting x to a loses nothing
    identity reshape, view, permute, cast, expand, slice -> x
    an elementwise op's input expand(s) -> s where broadcasting gives the same type
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ...errors import EmberError, IRError
from ..dtypes import FLOAT, INT, bool_
from ..graph import Graph, Node, Value, infer_types

Rule = Callable[[Graph, Node], "Value | bool | None"]


def _is_number(x, target) -> bool:
    """Whether x is the number target: a Python number, or a constant whose every element
    equals it."""
    if isinstance(x, Value):
        array = x.constant
        return array is not None and array.size > 0 and bool(np.all(array == target))
    return x.__class__ in (bool, int, float) and x == target


def _typed_as_output(node: Node, x):
    """x, when it is a Value of exactly the node's output type (so it can stand for it)."""
    return x if isinstance(x, Value) and x.type == node.outputs[0].type else None


def _producer(x, *ops: str) -> Node | None:
    node = x.node if isinstance(x, Value) else None
    return node if node is not None and node.op in ops else None


def _add_node(graph: Graph, before: Node, op: str, inputs: list, attrs: dict) -> Value:
    with graph.inserting_before(before):
        return graph.add_node(op, inputs, attrs, before.source).outputs[0]


# -- arithmetic identities -----------------------------------------------------------------


def _drop_neutral(neutral, right_only: bool = False) -> Rule:
    def rule(graph: Graph, node: Node):
        a, b = node.inputs
        if _is_number(b, neutral) and _typed_as_output(node, a):
            return a
        if not right_only and _is_number(a, neutral) and _typed_as_output(node, b):
            return b
        return None

    rule.__name__ = f"drop_{neutral}"
    return rule


def _signed_zero(x, negative: bool) -> bool:
    """Whether x is zero with this sign everywhere (a Python int 0 counts as +0.0)."""
    if isinstance(x, Value):
        array = x.constant
        return (array is not None and array.size > 0 and bool(np.all(array == 0))
                and bool(np.all(np.signbit(array) == negative)))
    return (x.__class__ in (bool, int, float) and x == 0
            and (math.copysign(1, x) < 0) == negative)


def _drop_zero(subtract: bool) -> Rule:
    """x + 0 and x - 0 -> x where IEEE agrees: for integers always; for floats only the zero
    that keeps -0.0 (x + (-0.0), x - (+0.0)), since -0.0 + 0.0 is +0.0."""

    def rule(graph: Graph, node: Node):
        a, b = node.inputs
        if node.outputs[0].type.dtype.category != FLOAT:
            sides = [(b, a)] if subtract else [(b, a), (a, b)]
            for zero, x in sides:
                if _is_number(zero, 0) and _typed_as_output(node, x):
                    return x
            return None
        sides = [(b, a)] if subtract else [(b, a), (a, b)]
        for zero, x in sides:
            if _signed_zero(zero, negative=not subtract) and _typed_as_output(node, x):
                return x
        return None

    rule.__name__ = "drop_zero"
    return rule


def _self_subtraction(graph: Graph, node: Node):
    a, b = node.inputs
    out = node.outputs[0].type
    # for floats x - x is nan where x is inf or nan: only integers give zeros for sure
    if a is not b or not isinstance(a, Value) or out.dtype.category != INT:
        return None
    zero = graph.add_constant(0, out.dtype)
    if not out.shape:
        return zero
    return _add_node(graph, node, "expand", [zero], {"shape": tuple(out.shape)})


# -- shape ops -----------------------------------------------------------------------------


def _identity(graph: Graph, node: Node):
    """A reshape, view, expand or cast whose output has its input's type is the identity."""
    return _typed_as_output(node, node.inputs[0])


def _identity_slice(graph: Graph, node: Node):
    # unit steps and an unchanged shape: every start is 0 and every stop the size
    if any(step != 1 for step in node.attrs["steps"]):
        return None
    return _typed_as_output(node, node.inputs[0])


def _identity_permute(graph: Graph, node: Node):
    # a permute of equal sizes keeps the type yet moves the data: look at the dims
    dims = tuple(node.attrs["dims"])
    return node.inputs[0] if dims == tuple(range(len(dims))) else None


def _permute_of_permute(graph: Graph, node: Node):
    inner = _producer(node.inputs[0], "permute")
    if inner is None:
        return None
    source = inner.inputs[0]
    dims = tuple(inner.attrs["dims"][d] for d in node.attrs["dims"])
    if dims == tuple(range(len(dims))):
        return _typed_as_output(node, source)
    return _add_node(graph, node, "permute", [source], {"dims": dims})


def _reshape_of_reshape(graph: Graph, node: Node):
    inner = _producer(node.inputs[0], "reshape", "view")
    if inner is None:
        return None
    source = inner.inputs[0]
    if source.type == node.outputs[0].type:
        return source  # the reshapes undo each other
    # a view of a view stays a view; a reshape may copy, which a view must not
    op = "view" if node.op == inner.op == "view" else "reshape"
    return _add_node(graph, node, op, [source], dict(node.attrs))


_MANTISSA_BITS = {"float16": 11, "bfloat16": 8, "float32": 24, "float64": 53}
# the largest binary exponent: bfloat16 has float32's range in float16's size
_MAX_EXPONENT = {"float16": 16, "bfloat16": 128, "float32": 128, "float64": 1024}


def lossless_cast(src, dst) -> bool:
    """Whether every value of dtype src is exactly a value of dtype dst."""
    if src is dst or src is bool_:
        return True
    if src.category == INT and dst.category == INT:
        if src.is_signed == dst.is_signed:
            return dst.itemsize >= src.itemsize
        return dst.is_signed and dst.itemsize > src.itemsize  # uint8 fits int16, not int8
    if src.category == INT and dst.category == FLOAT:
        return src.itemsize * 8 - src.is_signed <= _MANTISSA_BITS[dst.name]
    return (
        src.category == FLOAT
        and dst.category == FLOAT
        and _MANTISSA_BITS[dst.name] >= _MANTISSA_BITS[src.name]
        and _MAX_EXPONENT[dst.name] >= _MAX_EXPONENT[src.name]
    )


def _cast_of_cast(graph: Graph, node: Node):
    inner = _producer(node.inputs[0], "cast")
    if inner is None:
        return None
    source = inner.inputs[0]
    if not lossless_cast(source.dtype, inner.outputs[0].dtype):
        return None
    if source.type == node.outputs[0].type:
        return source
    return _add_node(graph, node, "cast", [source], {"dtype": node.attrs["dtype"]})


# -- broadcasting ----------------------------------------------------------------------------


def _unexpand_inputs(graph: Graph, node: Node):
    """An elementwise op broadcasts its inputs itself: an input expand(s) can be s where the
    op's output types stay the same (a scalar expanded to a shape, mostly)."""
    changed = False
    for i, x in enumerate(node.inputs):
        expand = _producer(x, "expand")
        if expand is None:
            continue
        inputs = list(node.inputs)
        inputs[i] = expand.inputs[0]
        try:
            types = infer_types(
                node.schema,
                tuple(v.type if isinstance(v, Value) else v for v in inputs),
                node.attrs,
            )
        except (EmberError, IRError):  # the rule refuses the unexpanded input: keep the expand
            continue
        if types == tuple(v.type for v in node.outputs):
            node.inputs = inputs
            changed = True
    return changed or None


RULES: dict[str, list[Rule]] = {
    "add": [_drop_zero(subtract=False)],
    "sub": [_drop_zero(subtract=True), _self_subtraction],
    "mul": [_drop_neutral(1)],
    "div": [_drop_neutral(1, right_only=True)],
    "permute": [_identity_permute, _permute_of_permute],
    "reshape": [_identity, _reshape_of_reshape],
    "view": [_identity, _reshape_of_reshape],
    "cast": [_identity, _cast_of_cast],
    "expand": [_identity],
    "slice": [_identity_slice],
}

# rules for every op of a kind, after the op's own
KIND_RULES: dict[str, list[Rule]] = {
    "elementwise": [_unexpand_inputs],
}


def simplify_algebra(graph: Graph) -> bool:
    """Apply RULES and KIND_RULES to every node, in order; whether anything changed."""
    changed = False
    for node in list(graph.nodes):
        if node.graph is None:
            continue
        for rule in RULES.get(node.op, []) + KIND_RULES.get(node.schema.kind, []):
            result = rule(graph, node)
            if result is None:
                continue
            changed = True
            if result is not True:
                graph.replace_all_uses(node.outputs[0], result)
                graph.erase_node(node)
            break
    return changed
