"""Program: runs a Graph on arrays through the eager kernels, with no tensors or autograd.

This is what a scripted function's cached graph runs on when no gradient is recorded, and
what a loaded graph file runs on: one kernel call per node over numbered slots, with every
decision that depends only on types (which inputs to cast to the compute dtype, which scalars
to convert) taken once, when the Program is built. A Program keeps no per-call state, so one
Program may be called from many threads at once.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Value
from .kernels import KERNELS


def _compute_dtype(node):
    """The dtype an elementwise node computes in (dispatch's rule), or None."""
    schema = node.schema
    if schema.compute_dtype is None:
        return None
    if schema.compute_dtype == "output":
        return node.outputs[0].type.dtype.np
    types = [x.type if isinstance(x, Value) else x for x in node.inputs]
    return schema.compute_dtype(types).np


def _scalar_as(dtype: np.dtype, x):
    """A Python number in the compute dtype, wrapping out-of-range integers (uint8 - 3 gives
    253) as eager arithmetic does."""
    try:
        return dtype.type(x)
    except OverflowError:
        return np.array(x).astype(dtype)[()]


def eager_step(node, slot: dict) -> tuple:
    """One node as (kernel, args, attrs, outs) over slots; gives its outputs new slots. An
    arg is (slot, cast dtype or None), or (None, scalar already in the compute dtype)."""
    compute = _compute_dtype(node)
    start = node.schema.cast_start
    args = []
    for i, x in enumerate(node.inputs):
        cast = compute if compute is not None and i >= start else None
        if isinstance(x, Value):
            needs = cast is not None and x.type.dtype.np != cast
            args.append((slot[x], cast if needs else None))
        else:
            args.append((None, _scalar_as(cast, x) if cast is not None else x))
    outs = []
    for v in node.outputs:
        slot[v] = len(slot)
        outs.append((slot[v], v.type.dtype.np))
    return (KERNELS[node.op], tuple(args), dict(node.attrs), tuple(outs))


def run_eager_step(xp, values, step) -> None:
    """Run one eager step, storing its outputs into values."""
    kernel, args, attrs, outs = step
    call = []
    for index, extra in args:
        if index is None:
            call.append(extra)  # a scalar, already in the compute dtype
        elif extra is None:
            call.append(values[index])
        else:
            call.append(values[index].astype(extra))
    result = kernel(xp, *call, **attrs)
    if len(outs) == 1:
        result = (result,)
    ndarray = np.ndarray if xp is np else xp.ndarray
    for (index, dtype), r in zip(outs, result):
        if type(r) is not ndarray:
            r = xp.asarray(r)
        values[index] = r if r.dtype == dtype else r.astype(dtype)


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
            # a memory-mapped constant (a loaded file's weight) as a plain array: every
            # view of a memmap is a memmap, with a Python hook per view
            array = c.constant
            self.constants.append(array.view(np.ndarray) if isinstance(array, np.memmap) else array)
        steps = []
        for node in graph.nodes:
            steps.append(eager_step(node, slot))
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
        for step in self.steps:
            run_eager_step(xp, values, step)
        return [values[i] for i in self.outputs]


def evaluate_with_kernels(op: str, inputs: tuple, attrs: dict):
    """Constant folding's evaluator (ir.passes.fold): the op's eager kernel on numpy constants,
    with dispatch's casts, so a folded constant equals what running the node would give."""
    from ..ir.dtypes import from_numpy
    from ..ir.schema import SCHEMAS
    from ..ir.types import TensorType

    schema = SCHEMAS[op]
    types = tuple(
        TensorType(x.shape, from_numpy(x.dtype)) if isinstance(x, np.ndarray) else x
        for x in inputs
    )
    out = schema.infer(types, attrs)
    args = list(inputs)
    if schema.compute_dtype is not None:
        if schema.compute_dtype == "output":
            compute = out.dtype.np
        else:
            compute = schema.compute_dtype(types).np
        for i in range(schema.cast_start, len(args)):
            a = args[i]
            args[i] = a.astype(compute) if isinstance(a, np.ndarray) else compute.type(a)
    return KERNELS[op](np, *args, **attrs)
