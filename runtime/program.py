"""Program: runs a Graph on arrays through the eager kernels, with no tensors or autograd.

This is what a scripted function's cached graph runs on when no gradient is recorded, and
what a loaded graph file runs on: one kernel call per node over numbered slots, with every
decision that depends only on types (which inputs to cast to the compute dtype, which scalars
to convert) taken once, when the Program is built. A Program keeps no per-call state, so one
Program may be called from many threads at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.graph import Graph, Value
from .kernels import KERNELS
from .kernels.casting import (
    BFLOAT16,
    FLOAT32_SCALAR_OPS,
    cast_operands,
    cast_scalar,
    compute_as,
    widen_bfloat16,
)


class Slots:
    """Numbers the values of a graph into slots, the indices of a call's list of values: the
    graph's inputs first, then its constants, then each step's outputs as the steps are
    built (add)."""

    def __init__(self, graph: Graph):
        self._slot: dict[Value, int] = {}
        for v in graph.inputs:
            self.add(v)
        for c in graph.constants:
            self.add(c)

    def add(self, value: Value) -> int:
        """Give value the next slot; returns it."""
        slot = self._slot[value] = len(self._slot)
        return slot

    def __getitem__(self, value: Value) -> int:
        return self._slot[value]

    def __len__(self) -> int:
        return len(self._slot)


def constant_arrays(graph: Graph) -> list:
    """The graph's constants, in slot order, as plain arrays: a memory-mapped constant (a
    loaded file's weight) as an ndarray, since every view of a memmap is a memmap, with a
    Python hook per view."""
    arrays = []
    for c in graph.constants:
        array = c.constant
        arrays.append(array.view(np.ndarray) if isinstance(array, np.memmap) else array)
    return arrays


@dataclass(slots=True, frozen=True)
class Operand:
    """An eager step's argument: the value in `slot`, cast to `extra` unless extra is None
    (to each dtype in turn where extra is a tuple); or, where slot is None, `extra` itself (a
    scalar, already in the compute dtype)."""

    slot: int | None
    extra: object


@dataclass(slots=True, frozen=True)
class Output:
    """An eager step's output: stored in `slot`, as `dtype` (the type rule's)."""

    slot: int
    dtype: np.dtype


@dataclass(slots=True, frozen=True)
class EagerStep:
    """One node run on its eager kernel: kernel(xp, *args, **attrs) gives the outputs."""

    kernel: object
    args: tuple  # an Operand per input
    attrs: dict
    outs: tuple  # an Output per output


def eager_step(node, slots: Slots) -> EagerStep:
    """One node as an eager step over slots, its casts decided once: tensor inputs cast to
    the compute dtype where theirs differs, scalars converted now. Gives its outputs new
    slots."""
    schema = node.schema
    compute = None
    if schema.compute_dtype is not None:
        compute = schema.compute_dtype_of(node.input_types(), node.outputs[0].type.dtype).np
    start = schema.cast_start
    args = []
    for i, x in enumerate(node.inputs):
        cast = compute if i >= start else None
        if isinstance(x, Value):
            stored = x.type.dtype.np
            if cast == BFLOAT16 and stored != BFLOAT16:
                # rounded to bfloat16, then widened: two casts, except for an opmath scalar
                # (see kernels/casting.py)
                opmath = node.op in FLOAT32_SCALAR_OPS and i == 1 and len(x.type.shape) == 0
                widened = compute_as(cast)
                args.append(Operand(slots[x], widened if opmath else (BFLOAT16, widened)))
                continue
            if stored == BFLOAT16 and not schema.view:
                cast = compute_as(BFLOAT16)  # bfloat16 is stored, never computed in
            needs = cast is not None and stored != cast
            args.append(Operand(slots[x], cast if needs else None))
        else:
            value = cast_scalar(cast, x, node.op) if cast is not None else x
            args.append(Operand(None, value))
    outs = tuple(Output(slots.add(v), v.type.dtype.np) for v in node.outputs)
    return EagerStep(KERNELS[node.op], tuple(args), dict(node.attrs), outs)


def run_eager_step(xp, values, step: EagerStep) -> None:
    """Run one eager step, storing its outputs into values."""
    call = []
    for arg in step.args:
        index = arg.slot
        if index is None:
            call.append(arg.extra)  # a scalar, already in the compute dtype
        elif arg.extra is None:
            call.append(values[index])
        elif type(arg.extra) is tuple:
            value = values[index]
            for dtype in arg.extra:
                value = value.astype(dtype)
            call.append(value)
        else:
            call.append(values[index].astype(arg.extra))
    result = step.kernel(xp, *call, **step.attrs)
    outs = step.outs
    if len(outs) == 1:
        result = (result,)
    ndarray = np.ndarray if xp is np else xp.ndarray
    for out, r in zip(outs, result):
        if type(r) is not ndarray:
            r = xp.asarray(r)
        dtype = out.dtype
        values[out.slot] = r if r.dtype == dtype else r.astype(dtype)


class Program:
    """A graph turned into a list of eager steps over numbered slots."""

    def __init__(self, graph: Graph):
        self.graph = graph
        slots = Slots(graph)
        self.constants = constant_arrays(graph)
        self.steps: list[EagerStep] = [eager_step(node, slots) for node in graph.nodes]
        self.outputs = tuple(slots[v] for v in graph.outputs)
        self.size = len(slots)
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
        compute = schema.compute_dtype_of(types, out.dtype).np
        cast_operands(args, schema.cast_start, compute, op)
    if not schema.view:
        widen_bfloat16(args)
    return KERNELS[op](np, *args, **attrs)
