"""Activation checkpointing, as torch.utils.checkpoint: a segment keeps no activations for the
backward and runs its forward again there.

    y = checkpoint(block, x, use_reentrant=False)
    y = checkpoint_sequential(model.layers, segments=2, input=x)

The forward runs once with grad mode on, so autograd finds what the segment's gradient reaches
(its tensor arguments, and the parameters and other leaves it reads); that graph is dropped at
once and the outputs get one node whose backward runs the segment again, random streams put
back where they were (preserve_rng_state), and takes the gradients of those tensors through it.
Both `backward()` and `autograd.grad()` (double backward too) go through it, and gradients
equal the uncheckpointed segment's; use_reentrant is accepted either way and means this one
behaviour. Under ember.script the segment is traced as plain code: the compiled backward
chooses what to save and what to compute again itself (tracer/remat.py). The segment must
compute the same graph when run again (the same modes, no changed inputs), as in PyTorch.
"""

from __future__ import annotations

from ..autograd import grad_mode
from ..autograd.engine import grads_at_edges
from ..autograd.graph import AccumulateGrad, Node, edge_of, next_sequence_nr
from ..errors import type_error, value_error
from ..runtime import random
from ..tracer.pytree import flatten, unflatten

__all__ = ["checkpoint", "checkpoint_sequential"]


def checkpoint(function, *args, use_reentrant=None, context_fn=None, determinism_check="default",
               debug=False, preserve_rng_state=True, **kwargs):
    """function(*args, **kwargs), its activations recomputed in the backward (see the
    module's docstring)."""
    from .._tensor import Tensor, hooks

    if not callable(function):
        raise type_error(f"checkpoint: function must be callable, got {type(function).__name__}")
    if context_fn is not None:
        raise value_error("checkpoint: context_fn is not supported by ember")
    if not grad_mode.state.enabled or hooks.active_trace is not None:
        # no graph: nothing to keep or to recompute; under ember.script the compiled
        # backward decides what it saves and what it computes again (tracer/remat.py)
        return function(*args, **kwargs)
    streams = random.stream_state() if preserve_rng_state else None
    first = next_sequence_nr()  # the segment's nodes are numbered after this
    out = function(*args, **kwargs)
    out_leaves, out_spec = flatten(out)
    differentiable = [i for i, o in enumerate(out_leaves)
                      if isinstance(o, Tensor) and o.requires_grad]
    if not differentiable:
        return out
    arg_leaves, arg_spec = flatten((args, kwargs))
    sources = _sources([out_leaves[i] for i in differentiable], arg_leaves, first)
    if not sources:
        return out
    node = _CheckpointNode(function, arg_leaves, arg_spec, streams, sources,
                           [out_leaves[i] for i in differentiable])
    for n, i in enumerate(differentiable):
        o = out_leaves[i].detach()  # the segment's own graph is dropped with its activations
        o._requires_grad, o._grad_fn, o._output_nr = True, node, n
        out_leaves[i] = o
    return unflatten(out_leaves, out_spec)


def _sources(outputs: list, arg_leaves: list, first: int) -> list:
    """(argument index or None, tensor or None, edge) of what the outputs' gradient reaches:
    an argument's edge (its index, itself); a leaf the segment reads, a parameter (None,
    itself); or a node made before the segment ran, numbered below `first`, that the segment
    reads through a tensor from outside (None, None): the walk stops at these three."""
    from .._tensor import Tensor

    stops, sources, seen = set(), [], set()
    for i, a in enumerate(arg_leaves):
        if isinstance(a, Tensor) and a.requires_grad:
            edge = edge_of(a)
            if edge not in stops:
                stops.add(edge)
                sources.append((i, a, edge))
    stack = [o._grad_fn for o in outputs if o._grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for edge in node.next_functions:
            if edge is None or edge in stops:
                continue
            nxt = edge[0]
            if isinstance(nxt, AccumulateGrad) or nxt.sequence_nr < first:
                stops.add(edge)
                leaf = nxt.variable if isinstance(nxt, AccumulateGrad) else None
                sources.append((None, leaf, edge))
            elif id(nxt) not in seen:
                stack.append(nxt)
    return sources


class _CheckpointNode(Node):
    """The backward of a checkpointed segment: its forward again, then the gradients of its
    sources through it."""

    def __init__(self, function, arg_leaves, arg_spec, streams, sources, outputs):
        super().__init__()
        self.function = function
        self.arg_leaves = arg_leaves
        self.arg_spec = arg_spec
        self.streams = streams
        self.sources = sources
        self.meta = [(tuple(o.shape), o._dtype, o._device) for o in outputs]
        self.next_functions = tuple(edge for _, _, edge in sources)
        self.versions = [(a, a._version[0]) for i, a, _ in sources if i is not None]

    def name(self) -> str:
        return "CheckpointFunctionBackward"

    def num_outputs(self) -> int:
        return len(self.meta)

    def output_meta(self, i):
        return self.meta[i]

    def apply(self, grads: list) -> list:
        from .._tensor import Tensor
        from ..errors import runtime_error

        if self.function is None:
            from ..autograd.graph import _FREED_MESSAGE

            raise runtime_error(_FREED_MESSAGE)
        for a, version in self.versions:
            if a._version[0] != version:
                raise runtime_error(
                    f"checkpoint: an input of the checkpointed segment was modified in place "
                    f"after the forward (version {a._version[0]}, expected {version}); the "
                    f"recomputed forward would differ")
        # the arguments themselves: the gradients are taken at their edges (grads_at_edges
        # runs nothing behind them), and a double backward reaches them through this graph
        args, kwargs = unflatten(list(self.arg_leaves), self.arg_spec)
        create_graph = grad_mode.state.enabled  # the engine's create_graph
        now = random.stream_state() if self.streams is not None else None
        if self.streams is not None:
            random.restore_stream_state(self.streams)
        try:
            with grad_mode.enable_grad():
                out = self.function(*args, **kwargs)
        finally:
            if now is not None:
                random.restore_stream_state(now)
        outs = [o for o in flatten(out)[0] if isinstance(o, Tensor) and o.requires_grad]
        if len(outs) != len(self.meta):
            raise runtime_error(
                f"checkpoint: the recomputed forward gave {len(outs)} differentiable outputs, "
                f"the first {len(self.meta)}; the segment must compute the same graph again")
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
        if not pairs:
            return [None] * len(self.sources)
        with grad_mode.set_grad_enabled(create_graph):
            return grads_at_edges([o for o, _ in pairs], list(self.next_functions),
                                  [g for _, g in pairs], create_graph=create_graph,
                                  retain_graph=True)

    def release(self) -> None:
        self.function = self.arg_leaves = self.sources = None


def checkpoint_sequential(functions, segments, input, use_reentrant=None, **kwargs):
    """torch.utils.checkpoint.checkpoint_sequential: functions (an nn.Sequential or a list of
    modules) run in `segments` parts, each checkpointed but the last."""
    from ..nn.module import Module

    if isinstance(functions, Module):
        functions = list(functions.children())
    functions = list(functions)
    if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
        raise value_error(f"checkpoint_sequential: segments must be a positive integer, "
                          f"got {segments!r}")
    size = len(functions) // segments or 1

    def run(start, end):
        def forward(x):
            for f in functions[start:end]:
                x = f(x)
            return x
        return forward

    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(run(start, end + 1), input, **kwargs)
    return run(end + 1, len(functions))(input)
