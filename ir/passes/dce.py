"""Dead-code elimination: erase pure nodes and constants that nothing uses."""

from __future__ import annotations

from ..graph import Graph


def eliminate_dead_code(graph: Graph) -> bool:
    """Erase every node whose outputs are unused and not returned, unless its op is impure
    (random, or marked side_effects in its schema), and every unused constant. Whether
    anything was erased."""
    returned = {id(v) for v in graph.outputs}
    changed = False
    # from the end, so a chain of dead nodes goes in one sweep
    for node in reversed(list(graph.nodes)):
        if not node.schema.pure:
            continue
        if any(v._uses or id(v) in returned for v in node.outputs):
            continue
        graph.erase_node(node)
        changed = True
    for constant in list(graph.constants):
        if not constant._uses and id(constant) not in returned:
            graph.erase_constant(constant)
            changed = True
    return changed
