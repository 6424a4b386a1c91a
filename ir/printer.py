"""The text form of a graph, which ir.parser reads back:

    graph(%x: f32[B, 16], %w: f32[16, 4]):
      %c0: f32[] = constant(0.5)
      %0: f32[B, 4] = matmul(%x, %w)  # model.py:12
      %1: f32[B, 4] = mul(%0, %c0)
      %2: f32[B], %3: i64[B] = max_dim(%1, dim=1, keepdim=False)
      return (%1, %3)

Types are a short dtype name and a shape whose sizes are ints or symbolic expressions. Inputs
are %values and Python numbers; attrs follow as name=value, written as Python literals: None,
True, 2, 2.5, inf, nan, "text", (1, 2) for a tuple, (1,) for a one-tuple, [1, 2] for a list,
{"key": 1} for a dict, and a symbolic size bare (B*4). Constants come first, one line each.
"""

from __future__ import annotations

import json
import math

import numpy as np

from .graph import Value
from .symbolic import SymInt

SHORT_DTYPE_NAMES = {
    "float16": "f16",
    "bfloat16": "bf16",
    "float32": "f32",
    "float64": "f64",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "bool": "bool",
}


def format_type(value_type) -> str:
    """f32[B, 16]"""
    sizes = ", ".join(str(d) for d in value_type.shape)
    return f"{SHORT_DTYPE_NAMES[value_type.dtype.name]}[{sizes}]"


def format_float(value: float) -> str:
    if math.isfinite(value):
        return repr(value)
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def format_literal(value) -> str:
    """An attr value (or a scalar input) as the parser reads it back."""
    if value is None or value is True or value is False:
        return repr(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, (int, SymInt)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        items = ", ".join(format_literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return "[" + ", ".join(format_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)}: {format_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"not an attr value: {value!r}")


def format_array(array: np.ndarray) -> str:
    """A constant's elements as nested lists, each float in the shortest text that reads back
    to the same value of its dtype."""
    if array.ndim == 0:
        item = array[()]
        # numpy prints a float16 or float32 in the fewest digits that read back the same
        return str(item) if array.dtype.kind == "f" else repr(item.item())
    return "[" + ", ".join(format_array(row) for row in array) + "]"


def format_input(x) -> str:
    return f"%{x.name}" if isinstance(x, Value) else format_literal(x)


def format_node(node) -> str:
    """One node as a line of IR text (without indentation)."""
    defs = ", ".join(f"%{v.name}: {format_type(v.type)}" for v in node.outputs)
    args = [format_input(x) for x in node.inputs]
    args += [f"{k}={format_literal(v)}" for k, v in node.attrs.items()]
    line = f"{defs} = {node.op}({', '.join(args)})"
    return f"{line}  # {node.source}" if node.source else line


def format_constant(value) -> str:
    return f"%{value.name}: {format_type(value.type)} = constant({format_array(value.constant)})"


def format_graph(graph) -> str:
    """The whole graph as IR text, ending in a newline."""
    params = ", ".join(f"%{v.name}: {format_type(v.type)}" for v in graph.inputs)
    lines = [f"graph({params}):"]
    lines += ["  " + format_constant(c) for c in graph.constants]
    lines += ["  " + format_node(n) for n in graph.nodes]
    lines.append("  return (" + ", ".join(f"%{v.name}" for v in graph.outputs) + ")")
    return "\n".join(lines) + "\n"
