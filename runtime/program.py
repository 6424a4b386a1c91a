"""Program: runs a Graph on arrays through the eager kernels, with no tensors or autograd.

This is what a scripted function's cached graph runs on when no gradient is recorded, and
what a loaded graph file runs on: one kernel call per node over planned values, the graph's
constants bound once. (The compile issue puts fused native kernels behind the same Program.)
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Value
from .kernels import KERNELS


class Program:
    """A graph turned into a list of steps over numbered slots."""

    def __init__(self, graph: Graph):
        self.graph = graph
        slot: dict[Value, int] = {}
        for v in graph.inputs:
            slot[v] = len(slot)
        self.constants = []
        for c in graph.constants:
            slot[c] = len(slot)
            self.constants.append(c.constant)
        steps = []
        for node in graph.nodes:
            args = tuple((True, slot[x]) if isinstance(x, Value) else (False, x)
                         for x in node.inputs)
            outs = []
            for v in node.outputs:
                slot[v] = len(slot)
                outs.append(slot[v])
            steps.append((KERNELS[node.op], args, dict(node.attrs), tuple(outs),
                          node.schema.compute_dtype is not None, node))
        self.steps = steps
        self.outputs = tuple(slot[v] for v in graph.outputs)
        self.size = len(slot)
        self.n_inputs = len(graph.inputs)

    def __call__(self, xp, arrays):
        """Run on input arrays (numpy or cupy, as xp says); returns the output arrays."""
        values = [None] * self.size
        values[: self.n_inputs] = arrays
        values[self.n_inputs : self.n_inputs + len(self.constants)] = [
            c if xp is np else xp.asarray(c) for c in self.constants
        ]
        for kernel, args, attrs, outs, casts, node in self.steps:
            call = [values[i] if is_value else i for is_value, i in args]
            if casts:
                call = _cast_inputs(node, call)
            result = kernel(xp, *call, **attrs)
            if len(outs) == 1:
                result = (result,)
            for i, r, v in zip(outs, result, node.outputs):
                r = xp.asarray(r)
                expected = v.type.dtype.np
                values[i] = r if r.dtype == expected else r.astype(expected)
        return [values[i] for i in self.outputs]


def _cast_inputs(node, call):
    """Elementwise kernels get their inputs in the compute dtype, as eager dispatch does."""
    schema = node.schema
    types = [x.type if isinstance(x, Value) else x for x in node.inputs]
    if schema.compute_dtype == "output":
        compute = node.outputs[0].type.dtype.np
    else:
        compute = schema.compute_dtype(types).np
    out = list(call)
    for i in range(schema.cast_start, len(out)):
        a = out[i]
        if hasattr(a, "dtype") and getattr(a, "ndim", None) is not None:
            if a.dtype != compute:
                out[i] = a.astype(compute)
        else:
            out[i] = compute.type(a)
    return out
