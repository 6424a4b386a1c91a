"""A graph as plain JSON-able data (dicts, lists, str, int, float, bool, None) and back.

This is the graph part of a graph file. Loading checks every field, checks each node against
its op's declaration (the number of inputs, the attrs' names, kinds and ranges: check_node in
ir/schema.py) and rebuilds the graph through the Graph API, so the op's type rules re-derive
every type and a recorded type that differs is refused; a malformed, hostile or stale
document fails with an IRError naming the field (`graph data: nodes[2].inputs[0]: ...`).
Nothing is evaluated: sizes are read by the IR parser, which knows only literals.

    {"format": "ember.graph", "version": 1,
     "inputs": [{"name": "x", "type": {"dtype": "float32", "shape": ["B", 16]}}],
     "constants": [{"name": "c0", "type": {"dtype": "float32", "shape": [2]}, "data": [1.0, 2.0]}],
     "nodes": [{"op": "mul", "inputs": ["x", 2.0], "attrs": {},
                "outputs": [{"name": "0", "type": {"dtype": "float32", "shape": ["B", 16]}}],
                "source": "model.py:3"}],
     "outputs": ["0"]}

A node input is a value's name (a str) or a number. Attr values are JSON, except what JSON
lacks: a tuple is {"tuple": [...]}, a dict {"dict": {...}}, a symbolic size {"size": "B*4"},
and a float that is not finite {"float": "nan" | "inf" | "-inf"} (also in scalar inputs and
constant data), so the data stays strict JSON.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import EmberError, IRError
from .dtypes import ALL as ALL_DTYPES
from .graph import Graph, constant_array
from .schema import SCHEMAS, check_node
from .symbolic import SymInt
from .types import TensorType

FORMAT = "ember.graph"
VERSION = 1

_DTYPES = {d.name: d for d in ALL_DTYPES}
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


# -- to data -------------------------------------------------------------------------------


def _encode_float(value: float):
    if math.isfinite(value):
        return value
    return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def encode_attr(value):
    """An attr value as strict JSON data."""
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, SymInt):
        return {"size": str(value)}
    if isinstance(value, tuple):
        return {"tuple": [encode_attr(v) for v in value]}
    if isinstance(value, list):
        return [encode_attr(v) for v in value]
    if isinstance(value, dict):
        return {"dict": {k: encode_attr(v) for k, v in value.items()}}
    return value


def _encode_type(value_type: TensorType) -> dict:
    shape = [d if isinstance(d, int) else str(d) for d in value_type.shape]
    return {"dtype": value_type.dtype.name, "shape": shape}


def to_data(graph: Graph, *, constant_data: bool = True) -> dict:
    """The graph as JSON-able data. Without constant_data, constants are listed by name and
    type only, and from_data() takes their arrays separately (a graph file stores them as
    tensors)."""
    constants = []
    for c in graph.constants:
        entry = {"name": c.name, "type": _encode_type(c.type)}
        if constant_data:
            flat = c.constant.ravel().tolist()
            entry["data"] = [_encode_float(v) if isinstance(v, float) else v for v in flat]
        constants.append(entry)
    nodes = []
    for node in graph.nodes:
        entry = {
            "op": node.op,
            "inputs": [
                x.name if hasattr(x, "graph") else (_encode_float(x) if isinstance(x, float) else x)
                for x in node.inputs
            ],
            "attrs": {k: encode_attr(v) for k, v in node.attrs.items()},
            "outputs": [{"name": v.name, "type": _encode_type(v.type)} for v in node.outputs],
        }
        if node.source is not None:
            entry["source"] = node.source
        nodes.append(entry)
    return {
        "format": FORMAT,
        "version": VERSION,
        "inputs": [{"name": v.name, "type": _encode_type(v.type)} for v in graph.inputs],
        "constants": constants,
        "nodes": nodes,
        "outputs": [v.name for v in graph.outputs],
    }


# -- from data -----------------------------------------------------------------------------


def _fail(path: str, message: str) -> IRError:
    return IRError(f"graph data: {path}: {message}")


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _fields(value, path: str, required: tuple, optional: tuple = ()) -> dict:
    if not isinstance(value, dict):
        raise _fail(path, f"expected an object, got {_kind(value)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise _fail(path, f"missing field {missing[0]!r}")
    unknown = [k for k in value if k not in required and k not in optional]
    if unknown:
        raise _fail(path, f"unknown field {unknown[0]!r}")
    return value


def _list(value, path: str) -> list:
    if not isinstance(value, list):
        raise _fail(path, f"expected a list, got {_kind(value)}")
    return value


def _str(value, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"expected a string, got {_kind(value)}")
    return value


def _decode_float(value, path: str):
    if isinstance(value, dict):
        _fields(value, path, ("float",))
        if value["float"] not in _NONFINITE:
            raise _fail(path, f"a float is one of {sorted(_NONFINITE)}, got {value['float']!r}")
        return _NONFINITE[value["float"]]
    return value


def _decode_number(value, path: str):
    value = _decode_float(value, path)
    if value.__class__ not in (bool, int, float):
        raise _fail(path, f"expected a number, got {_kind(value)}")
    return value


def _decode_size(value, path: str):
    from .parser import parse_size

    if isinstance(value, str):
        try:
            return parse_size(value)
        except IRError as exc:
            raise _fail(path, f"bad size {value!r}: {getattr(exc, 'reason', exc)}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"a size is an int or an expression string, got {_kind(value)}")
    return value


def decode_attr(value, path: str):
    """An attr value from the data encode_attr() wrote."""
    if value is None or value.__class__ in (bool, int, float, str):
        return value
    if isinstance(value, list):
        return [decode_attr(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if len(value) != 1:
            raise _fail(path, "a tagged value has exactly one of 'tuple', 'dict', 'size', 'float'")
        ((tag, payload),) = value.items()
        if tag == "tuple":
            return tuple(
                decode_attr(v, f"{path}[{i}]")
                for i, v in enumerate(_list(payload, f"{path}.tuple"))
            )
        if tag == "dict":
            if not isinstance(payload, dict):
                raise _fail(f"{path}.dict", f"expected an object, got {_kind(payload)}")
            return {k: decode_attr(v, f"{path}[{k!r}]") for k, v in payload.items()}
        if tag == "size":
            size = _decode_size(_str(payload, f"{path}.size"), f"{path}.size")
            return size
        if tag == "float":
            return _decode_float(value, path)
        raise _fail(path, f"unknown tag {tag!r}; expected 'tuple', 'dict', 'size' or 'float'")
    raise _fail(path, f"not JSON data: {_kind(value)}")


def _decode_type(value, path: str) -> TensorType:
    _fields(value, path, ("dtype", "shape"))
    dtype = _DTYPES.get(value["dtype"]) if isinstance(value["dtype"], str) else None
    if dtype is None:
        raise _fail(
            f"{path}.dtype",
            f"unknown dtype {value['dtype']!r}; expected one of {', '.join(_DTYPES)}",
        )
    shape = _list(value["shape"], f"{path}.shape")
    return TensorType(
        tuple(_decode_size(d, f"{path}.shape[{i}]") for i, d in enumerate(shape)), dtype
    )


def _name(value, path: str, graph: Graph, defined: bool):
    name = _str(value, path)
    known = graph._names.get(name)
    if defined and known is None:
        raise _fail(path, f"%{name} is not defined before it is used")
    if not defined and known is not None:
        raise _fail(path, f"%{name} is defined twice")
    return known if defined else name


def from_data(data, arrays: dict | None = None) -> Graph:
    """The Graph that to_data() data describes; an IRError names the first bad field.
    `arrays` gives constants stored without data, by name."""
    _fields(data, "graph", ("format", "version", "inputs", "constants", "nodes", "outputs"))
    if data["format"] != FORMAT:
        raise _fail("format", f"expected {FORMAT!r}, got {data['format']!r}")
    if data["version"] != VERSION or isinstance(data["version"], bool):
        raise _fail("version", f"this ember reads version {VERSION}, got {data['version']!r}")
    graph = Graph()
    try:
        for i, entry in enumerate(_list(data["inputs"], "inputs")):
            path = f"inputs[{i}]"
            _fields(entry, path, ("name", "type"))
            graph.add_input(
                _decode_type(entry["type"], f"{path}.type"),
                _name(entry["name"], f"{path}.name", graph, False),
            )
        for i, entry in enumerate(_list(data["constants"], "constants")):
            _load_constant(graph, entry, f"constants[{i}]", arrays)
        for i, entry in enumerate(_list(data["nodes"], "nodes")):
            _load_node(graph, entry, f"nodes[{i}]")
        graph.set_outputs(
            [
                _name(v, f"outputs[{i}]", graph, True)
                for i, v in enumerate(_list(data["outputs"], "outputs"))
            ]
        )
    except IRError as exc:
        if str(exc).startswith("graph data: "):
            raise
        raise IRError(f"graph data: {exc}") from None
    return graph


def _load_constant(graph: Graph, entry, path: str, arrays: dict | None) -> None:
    _fields(entry, path, ("name", "type"), ("data",))
    name = _name(entry["name"], f"{path}.name", graph, False)
    value_type = _decode_type(entry["type"], f"{path}.type")
    if not all(isinstance(d, int) for d in value_type.shape):
        raise _fail(f"{path}.type", "a constant's shape is concrete")
    if "data" in entry:
        flat = [
            _decode_number(v, f"{path}.data[{i}]")
            for i, v in enumerate(_list(entry["data"], f"{path}.data"))
        ]
        if len(flat) != math.prod(value_type.shape):
            raise _fail(f"{path}.data", f"{len(flat)} values for shape {list(value_type.shape)}")
        try:
            array = constant_array(flat, value_type.dtype).reshape(value_type.shape)
        except IRError as exc:
            raise _fail(f"{path}.data", str(exc)) from None
    else:
        array = (arrays or {}).get(name)
        if not isinstance(array, np.ndarray):
            raise _fail(path, f"no data for constant %{name}, in the data or in arrays")
        if array.dtype != value_type.dtype.np or array.shape != value_type.shape:
            raise _fail(
                path,
                f"the array for %{name} is {array.dtype}{list(array.shape)}, the "
                f"type says {value_type.dtype.name}{list(value_type.shape)}",
            )
    graph.add_constant(array, value_type.dtype, name)


def _load_node(graph: Graph, entry, path: str) -> None:
    _fields(entry, path, ("op", "inputs", "attrs", "outputs"), ("source",))
    op = _str(entry["op"], f"{path}.op")
    inputs = []
    for i, x in enumerate(_list(entry["inputs"], f"{path}.inputs")):
        where = f"{path}.inputs[{i}]"
        inputs.append(
            _name(x, where, graph, True) if isinstance(x, str) else _decode_number(x, where)
        )
    attrs = entry["attrs"]
    if not isinstance(attrs, dict):
        raise _fail(f"{path}.attrs", f"expected an object, got {_kind(attrs)}")
    attrs = {k: decode_attr(v, f"{path}.attrs.{k}") for k, v in attrs.items()}
    outputs = _list(entry["outputs"], f"{path}.outputs")
    names, types = [], []
    for i, out in enumerate(outputs):
        where = f"{path}.outputs[{i}]"
        _fields(out, where, ("name", "type"))
        names.append(_name(out["name"], f"{where}.name", graph, False))
        types.append(_decode_type(out["type"], f"{where}.type"))
    source = entry.get("source")
    if source is not None:
        _str(source, f"{path}.source")
    if op in SCHEMAS:  # an unknown op is add_node's to refuse
        try:
            check_node(SCHEMAS[op], inputs, attrs)
        except IRError as exc:
            raise _fail(f"{path} ({op})", str(exc)) from None
    try:
        node = graph.add_node(op, inputs, attrs, source, names=names)
    except (EmberError, IRError) as exc:
        raise _fail(f"{path} ({op})", str(exc)) from None
    for i, (value, recorded) in enumerate(zip(node.outputs, types)):
        if value.type != recorded:
            from .printer import format_type

            raise _fail(
                f"{path}.outputs[{i}].type",
                f"recorded as {format_type(recorded)}, but {op} gives {format_type(value.type)}",
            )
