"""Type propagation: re-derive every value's type from the inputs' types, forward.

Given new types for some graph inputs, or symbols for some of their sizes, it re-runs each
node's type rule in order, so the whole graph is typed from them: a [B, 16] input through
matmul with a [16, 4] weight and reshape(-1) gives [B*4]. A rule that rejects the new types
(a reshape to a fixed size the symbolic input no longer has, say) raises an IRError naming
the node.
"""

from __future__ import annotations

from ...errors import EmberError, IRError
from ..graph import Graph, Value, check_type
from ..printer import format_node
from ..symbolic import SymInt
from ..types import TensorType


def _new_input_type(value: Value, given) -> TensorType:
    if isinstance(given, dict):
        shape = list(value.type.shape)
        for dim, size in given.items():
            if not isinstance(dim, int) or not -len(shape) <= dim < len(shape):
                raise IRError(
                    f"propagate_types: %{value.name} has no dim {dim!r} (it has {len(shape)})"
                )
            shape[dim] = SymInt(size) if isinstance(size, str) else size
        return check_type(TensorType(tuple(shape), value.type.dtype), f"%{value.name}")
    return check_type(given, f"%{value.name}")


def propagate_types(graph: Graph, inputs: dict | None = None) -> bool:
    """Retype the graph forward. `inputs` maps graph inputs (Values or names) to a new
    TensorType, or to {dim: size} where a size is an int, a SymInt or a symbol's name:
    propagate_types(g, {"x": {0: "B"}}) makes x's first dim the symbol B. Whether any type
    changed."""
    changed = False
    for key, given in (inputs or {}).items():
        value = key if isinstance(key, Value) else graph.value(key)
        if not value.is_input or value.graph is not graph:
            raise IRError(f"propagate_types: %{value.name} is not an input of this graph")
        new_type = _new_input_type(value, given)
        if new_type != value.type:
            value.type = new_type
            changed = True
    for node in graph.nodes:
        try:
            types = node.infer()
        except (EmberError, IRError) as exc:
            raise IRError(f"propagate_types: {format_node(node)}: {exc}") from None
        for value, new_type in zip(node.outputs, types):
            if new_type != value.type:
                value.type = new_type
                changed = True
    return changed
