"""Common-subexpression elimination: one node for each distinct pure computation."""

from __future__ import annotations

from ..attrs import freeze
from ..graph import Graph, Value

# ops whose two inputs may swap without changing the result (type promotion and broadcasting
# are symmetric too)
COMMUTATIVE = frozenset(
    {"add", "mul", "maximum", "minimum", "eq", "ne", "logical_and", "logical_or", "logical_xor"}
)


def _input_key(x):
    return ("value", id(x)) if isinstance(x, Value) else freeze(x)


def eliminate_common_subexpressions(graph: Graph) -> bool:
    """Merge nodes that apply the same pure op to the same inputs with equal attrs (and
    constants with equal types and bytes): later ones are replaced by the first. Random ops
    and ops with side effects never merge. Whether anything was merged."""
    changed = False
    constants: dict = {}
    for constant in list(graph.constants):
        key = (constant.type, constant.constant.tobytes())
        first = constants.setdefault(key, constant)
        if first is not constant:
            graph.replace_all_uses(constant, first)
            graph.erase_constant(constant)
            changed = True
    seen: dict = {}
    for node in list(graph.nodes):
        if not node.schema.pure:
            continue
        inputs = [_input_key(x) for x in node.inputs]
        if node.op in COMMUTATIVE and len(inputs) == 2:
            inputs.sort(key=repr)
        key = (node.op, tuple(inputs), freeze(node.attrs))
        first = seen.setdefault(key, node)
        if first is node:
            continue
        for old, new in zip(node.outputs, first.outputs):
            graph.replace_all_uses(old, new)
        graph.erase_node(node)
        changed = True
    return changed
