"""Specialize a graph with symbolic sizes to one set of concrete sizes.

A graph file may keep its batch size symbolic (B); the native code generator needs every size.
`specialize(graph, {"B": 32})` rebuilds the graph with those sizes: inputs get concrete types,
every attr holding a SymInt (a reshape to B*4) gets its value, and each node's output type is
inferred again by its type rule, so the result is checked as any new graph is. The constants
are shared, not copied: every specialization of a loaded file reads the same (memory-mapped)
weights.
"""

from __future__ import annotations

from .graph import Graph, Value
from .symbolic import SymInt
from .types import TensorType


def resolve(value, sizes: dict):
    """An attr (or shape) with its symbolic sizes replaced by the given ints."""
    if isinstance(value, SymInt):
        return value.subs(sizes)
    if isinstance(value, (list, tuple)):
        items = [resolve(v, sizes) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: resolve(v, sizes) for k, v in value.items()}
    return value


def specialize(graph: Graph, sizes: dict) -> Graph:
    """A copy of graph with every symbolic size in `sizes` made concrete (names kept)."""
    new = Graph()
    mapping: dict = {}
    for v in graph.inputs:
        shape = tuple(resolve(d, sizes) for d in v.shape)
        mapping[v] = new.add_input(TensorType(shape, v.dtype), v.name)
    for c in graph.constants:
        mapping[c] = new.share_constant(c)  # the same array: a file's mapped weight
    for node in graph.nodes:
        inputs = [mapping[x] if isinstance(x, Value) else x for x in node.inputs]
        added = new.add_node(node.op, inputs, resolve(node.attrs, sizes), node.source,
                             names=[v.name for v in node.outputs])
        mapping.update(zip(node.outputs, added.outputs))
    new.set_outputs([mapping[v] for v in graph.outputs])
    return new
