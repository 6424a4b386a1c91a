"""replace_pattern: find every copy of a pattern's dataflow in a GraphModule's graph and
replace it with a replacement's.

The pattern and the replacement are functions (or GraphModules) traced with
symbolic_trace; their inputs (placeholders) match any value, their other nodes must match
op, target and non-node arguments exactly, and only the pattern's output and the nodes it
depends on count. A match's inner nodes may not be read from outside the match. Matches do
not overlap; each is replaced where its first user stands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import value_error
from ._symbolic_trace import symbolic_trace
from .graph import Graph
from .graph_module import GraphModule
from .node import Node, map_arg


class Match(NamedTuple):
    """One match: the graph node matching the pattern's output (anchor), and the graph
    node each pattern node matched (nodes_map)."""

    anchor: Node
    nodes_map: dict[Node, Node]


def _outputs(graph: Graph) -> list[Node]:
    output = [n for n in graph.nodes if n.op == "output"]
    if len(output) != 1:
        raise value_error("replace_pattern(): a pattern must have exactly one output node")
    returned = []
    map_arg(output[0].args[0], returned.append)
    if not returned:
        raise value_error("replace_pattern(): the pattern returns no traced value")
    return returned


class _Matcher:
    def __init__(self, pattern: Graph) -> None:
        self.pattern = pattern
        self.pattern_outputs = _outputs(pattern)
        self.placeholders = [n for n in pattern.nodes if n.op == "placeholder"]

    def match_at(self, anchor: Node, taken: set[Node]) -> dict[Node, Node] | None:
        nodes_map: dict[Node, Node] = {}
        if len(self.pattern_outputs) != 1:
            raise value_error("replace_pattern(): the pattern must return one value")
        if not self._match_node(self.pattern_outputs[0], anchor, nodes_map, taken):
            return None
        # inner nodes of the match may not be read from outside it
        inner = {gn for pn, gn in nodes_map.items() if pn.op != "placeholder"}
        for pn, gn in nodes_map.items():
            if pn.op == "placeholder" or pn in self.pattern_outputs:
                continue
            if any(user not in inner for user in gn.users):
                return None
        return nodes_map

    def _match_node(self, pn: Node, gn: Node, nodes_map: dict, taken: set) -> bool:
        if pn in nodes_map:
            return nodes_map[pn] is gn
        if pn.op == "placeholder":
            nodes_map[pn] = gn
            return True
        if gn in taken or gn in nodes_map.values():
            return False
        if pn.op != gn.op or pn.target != gn.target:
            return False
        if len(pn.args) != len(gn.args) or set(pn.kwargs) != set(gn.kwargs):
            return False
        nodes_map[pn] = gn
        saved = dict(nodes_map)
        if (self._match_arg(pn.args, gn.args, nodes_map, taken)
                and all(self._match_arg(pn.kwargs[k], gn.kwargs[k], nodes_map, taken)
                        for k in pn.kwargs)):
            return True
        nodes_map.clear()
        nodes_map.update(saved)
        del nodes_map[pn]
        return False

    def _match_arg(self, pa: Any, ga: Any, nodes_map: dict, taken: set) -> bool:
        if isinstance(pa, Node):
            return isinstance(ga, Node) and self._match_node(pa, ga, nodes_map, taken)
        if isinstance(pa, (list, tuple)):
            return (type(pa) is type(ga) and len(pa) == len(ga)
                    and all(self._match_arg(p, g, nodes_map, taken) for p, g in zip(pa, ga)))
        if isinstance(pa, dict):
            return (isinstance(ga, dict) and set(pa) == set(ga)
                    and all(self._match_arg(pa[k], ga[k], nodes_map, taken) for k in pa))
        return not isinstance(ga, Node) and type(pa) is type(ga) and pa == ga


def _as_graph(fn: Callable | GraphModule) -> Graph:
    return fn.graph if isinstance(fn, GraphModule) else symbolic_trace(fn).graph


def replace_pattern(gm: GraphModule, pattern: Callable | GraphModule,
                    replacement: Callable | GraphModule) -> list[Match]:
    """Replace every non-overlapping match of pattern in gm's graph by replacement (both
    taking the same inputs), recompile gm, and return the matches."""
    if not isinstance(gm, GraphModule):
        raise value_error(f"replace_pattern(): expected a GraphModule, got {type(gm).__name__}")
    pattern_graph = _as_graph(pattern)
    replacement_graph = _as_graph(replacement)
    matcher = _Matcher(pattern_graph)
    replacement_placeholders = [n for n in replacement_graph.nodes if n.op == "placeholder"]
    if len(replacement_placeholders) != len(matcher.placeholders):
        raise value_error(f"replace_pattern(): the pattern takes {len(matcher.placeholders)} "
                          f"inputs but the replacement takes {len(replacement_placeholders)}")

    graph = gm.graph
    matches: list[Match] = []
    taken: set[Node] = set()
    for node in graph.nodes:
        if node.op in ("placeholder", "output") or node in taken:
            continue
        nodes_map = matcher.match_at(node, taken)
        if nodes_map is None:
            continue
        matches.append(Match(node, nodes_map))
        taken |= {gn for pn, gn in nodes_map.items() if pn.op != "placeholder"}

    for match in matches:
        val_map = {rn: match.nodes_map[pn]
                   for rn, pn in zip(replacement_placeholders, matcher.placeholders)}
        anchor = match.anchor
        order = {n: i for i, n in enumerate(graph.nodes)}
        first_user = min(anchor.users, key=order.__getitem__) if anchor.users else anchor.next
        with graph.inserting_before(first_user):
            copied = graph.graph_copy(replacement_graph, val_map)
        if not isinstance(copied, Node):
            raise value_error("replace_pattern(): the replacement must return one traced "
                              "value")
        anchor.replace_all_uses_with(copied)
        for pn in reversed(list(pattern_graph.nodes)):
            if pn.op not in ("placeholder", "output"):
                graph.erase_node(match.nodes_map[pn])
    gm.recompile()
    return matches
