"""Constant folding: a pure node whose tensor inputs are all constants becomes a constant.

The IR does not compute tensors: ir/ may not import the runtime. The caller injects the
computation as `evaluate(op, inputs, attrs)`, where inputs are the constants' numpy arrays and
the node's Python numbers; it returns the output array (a tuple of them for several outputs),
or None to leave the node alone. It must compute what eager dispatch computes (casting to the
compute dtype included): the compiler passes one that runs the op through dispatch.

The default, evaluate_scalars, needs no runtime: it folds 0-d constants and Python numbers
through the arithmetic, comparison, logical and cast ops, in pure Python, rounding the result
to the output dtype (for +, -, * and / of float16/float32 values, float64 arithmetic rounded
once more is exact) and wrapping integers as the kernels do.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ...errors import IRError
from ..dtypes import FLOAT, INT, as_dtype
from ..graph import Graph, Value
from ..schema import SCHEMAS
from ..types import TensorType

Evaluate = Callable[[str, tuple, dict], object]

# larger results stay computed at run time: a constant is stored in the graph and its file
MAX_FOLDED_ELEMENTS = 4096


def _is_nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _maximum(a, b):
    return a if _is_nan(a) or a > b else b  # NaN wins, as in PyTorch


def _minimum(a, b):
    return a if _is_nan(a) or a < b else b


def _floor_divide(a, b):
    return a // b if isinstance(a, int) and isinstance(b, int) else None


def _remainder(a, b):
    return a % b if isinstance(a, int) and isinstance(b, int) else None


# each takes Python numbers already in the compute dtype
SCALAR_OPS: dict[str, Callable] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "neg": lambda a: -a,
    "abs": abs,
    "maximum": _maximum,
    "minimum": _minimum,
    "floor_divide": _floor_divide,
    "remainder": _remainder,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "logical_and": lambda a, b: bool(a) and bool(b),
    "logical_or": lambda a, b: bool(a) or bool(b),
    "logical_xor": lambda a, b: bool(a) != bool(b),
    "logical_not": lambda a: not a,
    "cast": lambda a: a,
}


def _to_python(value, dtype) -> object:
    """A number or 0-d array as the Python number of dtype (rounded to it first)."""
    with np.errstate(all="ignore"):
        return np.asarray(value).astype(dtype.np)[()].item()


def _store(result, dtype) -> np.ndarray | None:
    """A Python result as a 0-d array of dtype; integers wrap around as numpy's do."""
    if dtype.category == INT and not isinstance(result, bool):
        if isinstance(result, float):
            return None
        bits = dtype.itemsize * 8
        low = -(1 << (bits - 1)) if dtype.is_signed else 0
        result = (result - low) % (1 << bits) + low
    with np.errstate(all="ignore"):  # a float that overflows its dtype is inf, silently
        return np.asarray(result).astype(dtype.np)


def evaluate_scalars(op: str, inputs: tuple, attrs: dict):
    """The default evaluator: 0-d constants and numbers through SCALAR_OPS, else None."""
    fn = SCALAR_OPS.get(op)
    if fn is None or any(isinstance(x, np.ndarray) and x.ndim for x in inputs):
        return None
    schema = SCHEMAS[op]
    types = tuple(
        TensorType((), as_dtype(x.dtype)) if isinstance(x, np.ndarray) else x for x in inputs
    )
    out_dtype = schema.infer(types, attrs).dtype
    if any(t.dtype.name == "bfloat16" for t in (*types, schema.infer(types, attrs))
           if isinstance(t, TensorType)):
        # eager rounds float32 results to bfloat16; Python's float64 would round differently
        return None
    if op == "cast":  # the number becomes one of the target dtype
        compute_dtype = out_dtype
        if out_dtype.category != FLOAT and not np.isfinite(inputs[0]).all():
            return None  # NaN and inf have no integer value
    else:
        compute_dtype = schema.compute_dtype_of(types, out_dtype)
    args = []
    for x in inputs:
        if compute_dtype is not None:
            args.append(_to_python(x, compute_dtype))
        else:
            args.append(x[()].item() if isinstance(x, np.ndarray) else x)
    try:
        result = fn(*args)
    except (ZeroDivisionError, OverflowError):
        return None  # the kernel decides what dividing by zero gives
    return None if result is None else _store(result, out_dtype)


def _concrete_size(value_type) -> int | None:
    if all(d.__class__ is int for d in value_type.shape):
        return math.prod(value_type.shape)
    return None


def fold_constants(
    graph: Graph,
    evaluate: Evaluate | None = None,
    max_elements: int = MAX_FOLDED_ELEMENTS,
) -> bool:
    """Replace each pure node whose Value inputs are all constants by constants holding its
    outputs, as `evaluate` computes them (default: evaluate_scalars). Outputs of more than
    max_elements elements are not folded. Whether anything was folded."""
    evaluate = evaluate_scalars if evaluate is None else evaluate
    changed = False
    for node in list(graph.nodes):
        if not node.schema.pure:
            continue
        values = [x for x in node.inputs if isinstance(x, Value)]
        if not values or not all(x.is_constant for x in values):
            continue
        sizes = [_concrete_size(v.type) for v in node.outputs]
        if any(size is None or size > max_elements for size in sizes):
            continue
        args = tuple(x.constant if isinstance(x, Value) else x for x in node.inputs)
        result = evaluate(node.op, args, node.attrs)
        if result is None:
            continue
        results = (result,) if len(node.outputs) == 1 else tuple(result)
        arrays = []
        for value, array in zip(node.outputs, results):
            array = np.asarray(array)
            if array.shape != value.type.shape:
                raise IRError(
                    f"fold_constants: evaluating {node.op} gave shape {list(array.shape)}, its "
                    f"type rule says {list(value.type.shape)}"
                )
            # as eager dispatch does, the output takes the dtype the type rule gives
            arrays.append(array.astype(value.type.dtype.np, copy=False))
        for value, array in zip(node.outputs, arrays):
            graph.replace_all_uses(value, graph.add_constant(array, value.type.dtype))
        graph.erase_node(node)
        changed = True
    return changed
