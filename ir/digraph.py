"""A directed graph for the compiler's graph algorithms: fusion's reachability and
contraction (codegen/fusion.py) and a program's topological order (runtime/compiled.py).

These ran on networkx's DiGraph, as DESIGN.md had it, but importing networkx took 110-230 ms
here: a third to a half of a warm start from the disk cache (target 0.3 s), for adjacency sets
and one sort. This keeps networkx's semantics for what they used: nodes and each node's
successors and predecessors in insertion order, and lexicographical_topological_sort."""

from __future__ import annotations

import heapq


class DiGraph:
    __slots__ = ("_succ", "_pred")

    def __init__(self):
        self._succ: dict = {}  # node -> {successor: None}, in insertion order
        self._pred: dict = {}

    def add_node(self, node) -> None:
        if node not in self._succ:
            self._succ[node] = {}
            self._pred[node] = {}

    def add_nodes_from(self, nodes) -> None:
        for node in nodes:
            self.add_node(node)

    def add_edge(self, a, b) -> None:
        self.add_node(a)
        self.add_node(b)
        self._succ[a][b] = None
        self._pred[b][a] = None

    def remove_node(self, node) -> None:
        """node and its edges (KeyError where it is not in the graph)."""
        for s in self._succ.pop(node):
            if s != node:
                del self._pred[s][node]
        for p in self._pred.pop(node):
            if p != node:
                del self._succ[p][node]

    def successors(self, node):
        return iter(self._succ[node])

    def predecessors(self, node):
        return iter(self._pred[node])

    def __contains__(self, node) -> bool:
        return node in self._succ

    def __len__(self) -> int:
        return len(self._succ)

    def __iter__(self):
        return iter(self._succ)

    @property
    def edges(self) -> list:
        """(a, b) per edge, by a's insertion order, then b's."""
        return [(a, b) for a, succ in self._succ.items() for b in succ]


def lexicographical_topological_sort(graph: DiGraph, key=None) -> list:
    """The nodes, each after its predecessors, taking among the nodes ready at each step the
    one of least key(node) (the node itself without key); ValueError on a cycle."""
    key = key or (lambda node: node)
    waiting = {node: len(graph._pred[node]) for node in graph}
    ready = [(key(node), i, node) for i, (node, n) in enumerate(waiting.items()) if n == 0]
    heapq.heapify(ready)
    order_of = {node: i for i, node in enumerate(waiting)}  # ties on key: insertion order
    out = []
    while ready:
        _, _, node = heapq.heappop(ready)
        out.append(node)
        for s in graph._succ[node]:
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(ready, (key(s), order_of[s], s))
    if len(out) != len(waiting):
        raise ValueError("the graph has a cycle: no topological order")
    return out
