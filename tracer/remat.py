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
chain, computed from them, and the forward stops returning the value. Values that one new
read gives back together are recomputed together (_share_frontiers: x / 2 and x / sqrt(2)
from x). A value the forward stores anyway, for a step that is no fused kernel (a linear's
input), stays saved (_stored_anyway). This is the rematerialization of AOTAutograd's min-cut
partitioner, with greedy rules; GELU keeps its input and the erf term, layer_norm its input
and row statistics.
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


def _stored_anyway(value: Value) -> bool:
    """Whether the forward stores value whether it is saved or not: a step that is no fused
    kernel reads it (a linear's input, an attention's query), directly or through views.
    Saving it then costs no pass, while recomputing it would cost the backward one (its
    reader there is a GEMM too: a layer norm's output, read by the next linear's weight
    gradient)."""
    for user in value.users:
        kind = user.schema.kind
        if kind == "view":
            if any(_stored_anyway(v) for v in user.outputs):
                return True
        elif kind not in ("elementwise", "reduction"):
            return True
    return False


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
    found_chains = {}  # saved value -> (its chain's nodes, its frontier), the candidates
    for value in sorted(saved, key=_nbytes, reverse=True):
        if (value in results or value.node is None or not _static(value)
                or _stored_anyway(value)):
            continue
        found = _chain(value, free)
        if found is None or any(f in written for f in found[1]):
            continue
        nodes, frontier = found_chains[value] = found
        extra = sum(_nbytes(f) for f in frontier
                    if f not in keep and f not in free and not f.is_constant)
        if extra >= _nbytes(value):
            continue
        keep.discard(value)
        keep.update(f for f in frontier if not f.is_constant)
        chains[value] = nodes
    _share_frontiers(found_chains, chains, keep, free)
    if not chains:
        return saved, backward
    try:
        return _rebuild(forward, saved, backward, n_grads, keep, chains)
    except EmberError:  # a chain the backward graph would type differently: keep the reads
        return saved, backward


def _share_frontiers(found_chains: dict, chains: dict, keep: set, free: set) -> None:
    """Recompute the saved values that one new read gives back together: exact GELU saved
    x / 2 and x / sqrt(2), each as large as x, the product before it, so neither alone was
    worth reading x for, while both are (its forward kernel stored two arrays fewer). Only
    one read: a chain that needs several (a layer norm's input, the residual stream, is the
    sum of every layer's outputs before it) would have the backward read them all where it
    read one. Updates chains and keep in place, the largest saving first."""
    while True:
        by_read: dict = {}  # the one value to read -> the saved values it gives back
        for value, (_, frontier) in found_chains.items():
            if value in chains:
                continue
            missing = [f for f in frontier
                       if f not in keep and f not in free and not f.is_constant]
            if len(missing) == 1:
                by_read.setdefault(missing[0], []).append(value)
        best, gain = None, 0
        for read, values in by_read.items():
            saving = sum(_nbytes(v) for v in values) - _nbytes(read)
            if saving > gain:
                best, gain = read, saving
        if best is None:
            return
        for value in by_read[best]:
            nodes, frontier = found_chains[value]
            keep.discard(value)
            keep.update(f for f in frontier if not f.is_constant)  # best among them
            chains[value] = nodes


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
