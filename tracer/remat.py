"""Recomputation of saved values: what a compiled backward recomputes instead of reading.

A split scripted call (compiled_autograd.split) runs a forward program that returns, besides
its results, every forward value the traced backward reads. For an elementwise chain those
are many full-size intermediates: exact GELU's backward read three (8, 64, 512) arrays that
the forward wrote (x / 2, x / sqrt(2) and 1 + erf(x / sqrt(2))); layer_norm's read the
normalized input, which (x - mean) * rstd gives back from the input and two per-row values.

rematerialize() walks back from each saved value through views and cheap arithmetic to the
values it is computed from: the call's inputs, its constants, and values made by other ops
(reductions, products, and the math functions such as exp and erf, which cost more to
recompute than to read). When those cost fewer bytes to keep than the value itself (inputs
and results cost nothing: they are kept anyway), the backward graph gets a copy of that
chain, computed from them, and the forward stops returning the value. This is the
rematerialization of AOTAutograd's min-cut partitioner, with a greedy, per-value rule; GELU
now keeps its input and the erf term, layer_norm its input and row statistics.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import EmberError
from ..ir.graph import Graph, Value

_RECOMPUTED_KINDS = ("elementwise", "view")
MAX_CHAIN = 64  # nodes recomputed for one saved value: a longer chain is kept as it is


def _static(value: Value) -> bool:
    return all(d.__class__ is int for d in value.type.shape)


def _nbytes(value: Value) -> int:
    return math.prod(value.type.shape) * np.dtype(value.type.dtype.np).itemsize


def _cheap(schema) -> bool:
    """Whether recomputing the op costs less than reading its result back: views and
    arithmetic, not the polynomial math functions (exp, erf, ...) nor pow. Measured on
    exact GELU (8, 64, 512) float32 forward and backward, one thread: recomputing its erf made
    the pair 1.3x to 2.4x slower than reading the erf back; recomputing x / sqrt(2) and x / 2
    is free."""
    if schema.side_effects or schema.kind not in _RECOMPUTED_KINDS:
        return False
    return schema.kind == "view" or not (schema.mathlib or schema.name == "pow")


def _chain(value: Value, free: set):
    """(the nodes that compute value from its frontier, the frontier), or None when value is
    no elementwise or view result, or its chain is too long or symbolic."""
    nodes = []
    frontier = []
    seen = set()
    stack = [value]
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        node = v.node
        schema = None if node is None else node.schema
        recompute = (v is value or v not in free) and schema is not None \
            and _cheap(schema) and len(node.outputs) == 1 and _static(v)
        if not recompute:
            if v is value:
                return None
            frontier.append(v)
            continue
        nodes.append(node)
        if len(nodes) > MAX_CHAIN:
            return None
        stack.extend(x for x in node.inputs if isinstance(x, Value))
    return nodes, frontier


def rematerialize(forward: Graph, saved: list, backward: Graph, n_grads: int,
                  written: set) -> tuple[list, Graph]:
    """(the forward values to save, the backward graph that reads them): saved and backward
    themselves when nothing is worth recomputing. backward's inputs are n_grads output
    gradients, then one per saved value, in order; `written` holds the forward inputs the call
    writes (their values after the call are not the ones the chain read)."""
    placeholders = backward.inputs[n_grads:]
    if len(placeholders) != len(saved) or len(set(saved)) != len(saved):
        return saved, backward
    results = set(forward.outputs)
    # what the backward may read at no cost: the call's inputs (its node keeps them) and its
    # results; an input the call writes is read before the write, so never from a chain
    free = {v for v in forward.inputs if v not in written} | results
    keep = set(saved)
    chains = {}
    for value in sorted(saved, key=_nbytes, reverse=True):
        if value in results or value.node is None or not _static(value):
            continue
        found = _chain(value, free)
        if found is None:
            continue
        nodes, frontier = found
        if any(f in written for f in frontier):
            continue
        extra = sum(_nbytes(f) for f in frontier
                    if f not in keep and f not in free and not f.is_constant)
        if extra >= _nbytes(value):
            continue
        keep.discard(value)
        keep.update(f for f in frontier if not f.is_constant)
        chains[value] = nodes
    if not chains:
        return saved, backward
    try:
        return _rebuild(forward, saved, backward, n_grads, keep, chains)
    except EmberError:  # a chain the backward graph would type differently: keep the reads
        return saved, backward


def _rebuild(forward, saved, backward, n_grads, keep, chains):
    """A copy of backward reading the values in `keep` (in `saved`'s order, then the new ones
    in the forward's), each chain's nodes copied in before its first node."""
    mapping: dict = {}
    graph = backward.copy(mapping)
    placeholder = {v: mapping[p] for v, p in zip(saved, backward.inputs[n_grads:])}
    new_saved = [v for v in saved if v in keep]
    for value in forward.values():  # the new reads, in the forward's order
        if value in keep and value not in placeholder and not value.is_constant:
            new_saved.append(value)
            placeholder[value] = graph.add_input(value.type)
    # the chains' nodes, once each, in the forward's order, before the backward's first node
    wanted = set()
    for nodes in chains.values():
        wanted.update(nodes)
    copied: dict = {}

    def operand(x):
        if not isinstance(x, Value):
            return x
        if x in copied:
            return copied[x]
        if x.is_constant:
            copied[x] = graph.add_constant(x.constant, x.type.dtype)
            return copied[x]
        return placeholder[x]

    def emit():
        for node in forward.nodes:
            if node in wanted:
                new = graph.add_node(node.op, [operand(x) for x in node.inputs],
                                     dict(node.attrs), node.source)
                copied[node.outputs[0]] = new.outputs[0]

    if graph.nodes:
        with graph.inserting_before(graph.nodes[0]):
            emit()
    else:
        emit()
    for value in chains:
        old = placeholder.pop(value)
        graph.replace_all_uses(old, copied[value])
        graph.erase_input(old)
    graph.inputs = graph.inputs[:n_grads] + [placeholder[v] for v in new_saved]
    graph.check_topological()
    return new_saved, graph
