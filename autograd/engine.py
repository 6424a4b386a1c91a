"""The backward engine: one iterative pass over the graph in dependency order.

No recursion anywhere, so a 10,000-op chain is as easy as a 10-op one. Nodes run once all the
gradients flowing into them have arrived; saved tensors are freed after use unless
retain_graph. backward() accumulates into leaves' .grad; grad() returns the gradients of
chosen inputs and touches no .grad.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

from .._tensor import hooks
from ..errors import runtime_error
from . import grad_mode
from .graph import AccumulateGrad, OpNode, edge_of, run_post_accumulate_grad_hooks


class _Callbacks(threading.local):
    def __init__(self):
        self.stack: list[list] = []  # one list per running backward; nested ones push theirs


_callbacks = _Callbacks()


def queue_callback(callback) -> None:
    """Run callback() when the backward pass now running has finished every node (PyTorch's
    Variable._execution_engine.queue_callback). DDP waits for its reductions from one."""
    if not _callbacks.stack:
        raise runtime_error("Final callbacks can only be installed during backward pass.")
    _callbacks.stack[-1].append(callback)


def _as_list(x):
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _root_grads(outputs, grad_outputs):
    from .._tensor import Tensor
    from .._tensor.factories import ones_like

    grads = []
    for i, out in enumerate(outputs):
        if not isinstance(out, Tensor):
            raise runtime_error(f"backward/grad: element {i} of outputs is not a Tensor")
        g = grad_outputs[i] if i < len(grad_outputs) else None
        if g is None:
            if out._data.size != 1:
                raise runtime_error(
                    f"grad can be implicitly created only for scalar outputs (output {i} has "
                    f"shape {list(out.shape)}); pass a gradient of that shape"
                )
            g = ones_like(out)
        elif isinstance(g, Tensor):
            if tuple(g.shape) != tuple(out.shape):
                raise runtime_error(
                    f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} and "
                    f"output[{i}] has a shape of {out.shape}."
                )
            if out._grad_fn is None:
                g = g.clone()  # the caller keeps its tensor; a leaf root must not alias it
        else:
            from .._tensor.factories import full_like

            g = full_like(out, g)
        if not out._requires_grad:
            raise runtime_error(
                f"element {i} of tensors does not require grad and does not have a grad_fn"
            )
        grads.append(g)
    return grads


def _collect(roots):
    """Every node reachable from the roots, with how many edges lead into it."""
    dependencies: dict = {}
    seen = set()
    stack = []
    for node, _ in roots:
        if node not in seen:
            seen.add(node)
            stack.append(node)
    while stack:
        node = stack.pop()
        for edge in node.next_functions:
            if edge is None:
                continue
            child = edge[0]
            dependencies[child] = dependencies.get(child, 0) + 1
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return dependencies, seen


def _needed(nodes, targets, local=False):
    """The nodes from which a target can be reached through an edge: only these need to run.
    A target itself runs only when another target lies behind it (grad() w.r.t. a non-leaf
    stops at its grad_fn, as PyTorch's does: what produced the input is not run). local: a
    target never runs, so a gradient reaches a target only on paths through no other one."""
    parents: dict = {}
    for node in nodes:
        for edge in node.next_functions:
            if edge is not None:
                parents.setdefault(edge[0], []).append(node)
    needed = set()
    stack = list(targets)
    while stack:
        node = stack.pop()
        for parent in parents.get(node, ()):
            if parent not in needed and not (local and parent in targets):
                needed.add(parent)
                stack.append(parent)
    return needed


def _zeros_for(node, i):
    from .._tensor.factories import zeros

    shape, dtype, dev = node.output_meta(i)
    if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None:
        # an output's sizes are kept as plain ints: under a symbolic trace every size
        # becomes exact, since this constant could have any of them (3*s0 as well as s0)
        trace.fix(list(trace.sizes))
    return zeros(shape, dtype=dtype, device=dev)


def _own(slots: dict, nr: int):
    """slots[nr] when it may be added to in place: nothing but this slot refers to it or its
    array (a fresh gradient an op's backward made: a split's pieces, a tensor read by two
    ops), the array is writable numpy memory of its own, and no graph or trace records the
    sum. None otherwise."""
    held = slots[nr]
    data = held._data
    # references: the slot's (or the tensor's), the local name's, getrefcount's argument
    if (sys.getrefcount(held) == 3 and data.__class__ is np.ndarray
            and sys.getrefcount(data) == 3 and data.base is None and data.flags.owndata
            and data.flags.writeable
            and not grad_mode.state.enabled and hooks.active_trace is None
            and not held._requires_grad):
        return held
    return None


def _accumulate(slots: dict, nr: int, g):
    """slots[nr] + g, added in place where the slot's tensor is its own (_own): the
    out-of-place add allocated and wrote a fresh output, most of the backward's `add` time."""
    held = _own(slots, nr)
    if (held is not None and g.__class__ is held.__class__
            and g._data.__class__ is np.ndarray and g._data.shape == held._data.shape
            and g._data.dtype == held._data.dtype):
        held.add_(g)
        return held
    return slots[nr] + g


def _accumulated_in_place(node, grads, edges, buffers) -> bool:
    """Whether node's rule added its one input's gradient into that input's gradient so far,
    in place (Rule.accumulate: a slice adds into its region instead of making a zero tensor
    of the input's size that the engine then adds)."""
    edge = edges[0]
    if edge is None or grads[0] is None:
        return False
    child, nr = edge
    slots = buffers.get(child)
    if slots is None or nr not in slots:
        return False
    held = _own(slots, nr)
    return held is not None and node.rule.accumulate(node, held, grads[0])


def _execute(
    roots, root_grads, retain_graph, create_graph, capture=None, accumulate=True, on_done=None,
    local=False,
):
    """Run backward from the root edges. capture maps (node, output_nr) -> slot index;
    on_done(captured) runs once every node has, before the queued callbacks; local: see
    _needed."""
    dependencies, nodes = _collect(roots)
    needed = None
    if capture is not None:
        needed = _needed(nodes, {node for node, _ in capture}, local)
    captured = {}
    buffers: dict = {}
    for (node, nr), g in zip(roots, root_grads):
        slots = buffers.setdefault(node, {})
        slots[nr] = g if nr not in slots else slots[nr] + g
    ready = [node for node, _ in roots if dependencies.get(node, 0) == 0]
    ready = list(dict.fromkeys(ready))
    prev = grad_mode.state.enabled
    grad_mode.state.enabled = create_graph
    callbacks: list = []
    _callbacks.stack.append(callbacks)
    try:
        plain = capture is None and accumulate  # (a leaf's accumulator just accumulates)
        while ready:
            node = ready.pop()
            slots = buffers.pop(node, None)
            if plain and node.__class__ is AccumulateGrad and not node.pre_hooks:
                # a leaf's sink: no outputs to hand on, nothing to release
                g = None if slots is None else slots.pop(0, None)
                if g is not None:
                    # references: the name g's and getrefcount's argument (the producer's
                    # results were dropped below): a gradient nothing else holds
                    data = g._data
                    owned = sys.getrefcount(g) == 2 and sys.getrefcount(data) == 3
                    del data
                    node.accumulate(g, owned)
                continue
            n_out = node.num_outputs()
            if slots is None:
                grads = [None] * n_out
            elif n_out == 1:
                grads = [slots.get(0)]
                if grads[0] is None and node.zero_fills(0):
                    grads[0] = _zeros_for(node, 0)
            else:
                if len(slots) < n_out:
                    for i in range(n_out):
                        if i not in slots and node.zero_fills(i):
                            slots[i] = _zeros_for(node, i)
                grads = [slots.get(i) for i in range(n_out)]
            if node.pre_hooks:
                for i, pre_hooks in node.pre_hooks.items():
                    for hook in pre_hooks:
                        if grads[i] is not None:
                            new = hook(grads[i])
                            if new is not None:
                                grads[i] = new
            if capture is not None:
                for i in range(n_out):
                    key = (node, i)
                    if key in capture and grads[i] is not None:
                        captured[key] = grads[i]
            run = needed is None or node in needed
            if not accumulate and node.__class__ is AccumulateGrad:
                run = False
            edges = node.next_functions
            if not run or (grads[0] is None if n_out == 1
                           else all(g is None for g in grads)):
                results = [None] * len(edges)
            elif (node.__class__ is OpNode and node.rule.accumulate is not None
                  and len(edges) == 1 and _accumulated_in_place(node, grads, edges, buffers)):
                results = [None]  # its gradient is in its input's slot already
                if not retain_graph:
                    node.release()
            else:
                if hooks.op_profiler is None:
                    results = node.apply(grads)
                else:
                    with hooks.op_profiler.range(
                            f"autograd::engine::evaluate_function: {node.name()}"):
                        results = node.apply(grads)
                if not retain_graph:
                    node.release()
            # a tensor handed to several edges (add's backward gives g to both inputs) is
            # shared among ops' backwards, which only read it, as PyTorch's engine shares it;
            # a leaf may keep what it receives as .grad, so an edge to one gets its own
            handed_out = {} if len(edges) > 1 else None
            for edge, g in zip(edges, results):
                if edge is None:
                    continue
                child, nr = edge
                if g is not None:
                    if handed_out is not None:
                        leaf = child.__class__ is AccumulateGrad
                        first_leaf = handed_out.get(id(g))
                        if first_leaf is not None and (leaf or first_leaf):
                            g = g.clone()
                        handed_out[id(g)] = leaf or bool(first_leaf)
                    slots = buffers.get(child)
                    if slots is None:
                        buffers[child] = {nr: g}
                    else:
                        slots[nr] = g if nr not in slots else _accumulate(slots, nr, g)
                left = dependencies[child] - 1
                dependencies[child] = left
                if left == 0:
                    ready.append(child)
            results = g = None  # so a leaf's accumulator sees its gradient's true references
        if on_done is not None:
            on_done(captured)
        # a callback may queue another: it runs too, after the ones before it
        for callback in callbacks:
            callback()
    finally:
        _callbacks.stack.pop()
        grad_mode.state.enabled = prev
    return captured


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Compute the gradient of tensors w.r.t. the graph leaves, accumulating into .grad."""

    trace = hooks.trace_here()
    if trace is not None:
        trace.ran_backward = True  # the trace holds a whole training step
    tensors = _as_list(tensors)
    grads = _root_grads(tensors, _as_list(grad_tensors))
    if retain_graph is None:
        retain_graph = create_graph
    roots = [edge_of(t) for t in tensors]
    if inputs is None:
        _execute(roots, grads, retain_graph, create_graph)
        return
    inputs = _as_list(inputs)
    edges = [edge_of(x) for x in inputs]
    for i, e in enumerate(edges):
        if e is None:
            raise runtime_error(f"backward(inputs=...): input {i} does not require grad")
    capture = {e: i for i, e in enumerate(edges)}

    def accumulate(captured):
        for x, e in zip(inputs, edges):
            g = captured.get(e)
            if g is None:
                continue
            g = g if create_graph else g.detach()
            x.grad = g.clone() if x.grad is None else x.grad + g
            if x._grad_fn is None:
                run_post_accumulate_grad_hooks(x)

    _execute(roots, grads, retain_graph, create_graph, capture, False, accumulate)


def grad(
    outputs,
    inputs,
    grad_outputs=None,
    retain_graph=None,
    create_graph=False,
    allow_unused=None,
    materialize_grads=False,
):
    """The gradients of outputs w.r.t. inputs, as a tuple; .grad is left untouched."""
    return _grad(outputs, inputs, grad_outputs, retain_graph, create_graph, allow_unused,
                 materialize_grads)


def partial_grad(outputs, inputs, grad_outputs, create_graph=False, retain_graph=True):
    """grad() with every input held fixed: a path from an output to one input through
    another is left out, so each gradient is the partial derivative in that input alone (a
    compiled call's backward: autograd adds what flows through the inputs). Unused inputs
    give None."""
    return _grad(outputs, inputs, grad_outputs, retain_graph, create_graph, True, False,
                 local=True)


def grads_at_edges(outputs, edges, grad_outputs, create_graph=False, retain_graph=True):
    """partial_grad at graph edges (node, output number) instead of tensors: the gradient that
    reaches each edge from the outputs on paths through no other edge, None where none does
    (a checkpointed segment's backward hands these on to the nodes before it)."""
    outputs = _as_list(outputs)
    grads = _root_grads(outputs, _as_list(grad_outputs))
    captured = _captured(outputs, edges, grads, retain_graph, create_graph, True)
    found = [captured.get(e) for e in edges]
    return found if create_graph else [None if g is None else g.detach() for g in found]


def _captured(outputs: list, edges: list, grads: list, retain_graph, create_graph,
              local) -> dict:
    """{edge: the gradient that reached it} for a backward from outputs (their root gradients
    `grads`) that runs no leaf's accumulator (autograd.grad's and its relatives')."""
    return _execute([edge_of(t) for t in outputs], grads, retain_graph, create_graph,
                    {e: i for i, e in enumerate(edges)}, accumulate=False, local=local)


def _grad(outputs, inputs, grad_outputs, retain_graph, create_graph, allow_unused,
          materialize_grads, local=False):
    outputs, inputs = _as_list(outputs), _as_list(inputs)
    if not inputs:
        raise runtime_error("`inputs` argument to `grad()` cannot be empty.")
    grads = _root_grads(outputs, _as_list(grad_outputs))
    if retain_graph is None:
        retain_graph = create_graph
    edges = []
    for i, x in enumerate(inputs):
        e = edge_of(x)
        if e is None:
            raise runtime_error(
                f"One of the differentiated Tensors (input {i}) does not require grad"
            )
        edges.append(e)
    captured = _captured(outputs, edges, grads, retain_graph, create_graph, local)
    result = []
    for i, (x, e) in enumerate(zip(inputs, edges)):
        g = captured.get(e)
        if g is None:
            if materialize_grads:
                from .._tensor.factories import zeros_like

                g = zeros_like(x)
            elif not allow_unused:
                raise runtime_error(
                    f"One of the differentiated Tensors (input {i}) appears to not have been "
                    "used in the graph. Set allow_unused=True if this is the desired behavior."
                )
        elif not create_graph:
            g = g.detach()
        result.append(g)
    return tuple(result)
