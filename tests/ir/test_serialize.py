"""Graph <-> plain JSON data: strict JSON out, and every malformed document refused by name."""

import copy
import json

import numpy as np
import pytest
from ember.errors import IRError
from ember.ir.parser import parse_graph
from ember.ir.schema import SCHEMAS, OpSchema
from ember.ir.serialize import FORMAT, VERSION, from_data, to_data
from ember.ir.types import TensorType
from ember.ir.verify import verify

TEXT = """graph(%x: f32[B, 16], %w: f32[16, 4], %m: bool[B, 1]):
  %c0: f32[] = constant(0.5)
  %c1: f16[3] = constant([0.1, nan, -inf])
  %c2: i64[2, 0] = constant([[], []])
  %0: f32[B, 4] = matmul(%x, %w)  # model.py:12
  %1: f32[B, 4] = mul(%0, %c0)
  %2: f32[B], %3: i64[B] = max_dim(%1, dim=1, keepdim=False)
  %4: f32[B*4] = reshape(%1, shape=(-1,))
  %5: f32[B*4] = clamp(%4, min=-inf, max=nan)
  %6: f32[B*4] = add(%5, inf)
  %7: f32[B - 1, 8] = slice(%x, starts=(0, 1), stops=(B - 1, 16), steps=(1, 2))
  %8: f32[B, 16] = masked_fill(%x, %m, value=-1.5)
  %9: f32[B*2, 4] = expand(%c0, shape=(B*2, 4))
  %10: f32[B, 4] = tagged(%1, extra={"a": [1, (2, None)], "b": "text", "c": {}, "d": []})
  return (%1, %3, %6, %7, %8, %9, %10)
"""


@pytest.fixture(autouse=True)
def tagged_op(monkeypatch):
    """An op that declares no attrs (a custom op's way), so its nodes may carry any: the
    attr values of every kind above."""

    def same_type(inputs, attrs):
        return TensorType(tuple(inputs[0].shape), inputs[0].dtype)

    monkeypatch.setitem(SCHEMAS, "tagged", OpSchema("tagged", same_type))


@pytest.fixture
def data():
    return to_data(parse_graph(TEXT))


def round_trip(data):
    return from_data(json.loads(json.dumps(data, allow_nan=False)))


def test_a_graph_round_trips_through_strict_json(data):
    graph = round_trip(data)
    verify(graph)
    assert str(graph) == TEXT
    assert to_data(graph) == data


def test_the_data_is_plain_and_readable(data):
    assert data["format"] == FORMAT and data["version"] == VERSION
    assert data["inputs"][0] == {"name": "x", "type": {"dtype": "float32", "shape": ["B", 16]}}
    node = data["nodes"][3]
    assert node["op"] == "reshape" and node["attrs"] == {"shape": {"tuple": [-1]}}
    assert node["outputs"] == [{"name": "4", "type": {"dtype": "float32", "shape": ["B*4"]}}]
    assert data["nodes"][0]["source"] == "model.py:12"
    assert data["nodes"][5]["inputs"] == ["5", {"float": "inf"}]
    assert data["constants"][1]["data"] == [
        pytest.approx(0.1, abs=1e-4),
        {"float": "nan"},
        {"float": "-inf"},
    ]


def test_constants_can_travel_apart_from_the_data():
    graph = parse_graph(TEXT)
    data = to_data(graph, constant_data=False)
    assert all("data" not in c for c in data["constants"])
    arrays = {c.name: c.constant for c in graph.constants}
    assert str(from_data(data, arrays)) == TEXT
    with pytest.raises(IRError, match=r"constants\[0\]: no data for constant %c0"):
        from_data(data)
    arrays["c0"] = np.zeros(2, dtype=np.float32)
    with pytest.raises(IRError, match=r"the array for %c0 is float32\[2\]"):
        from_data(data, arrays)


def broken(data, edit):
    data = copy.deepcopy(data)
    edit(data)
    return data


def set_path(data, path, value):
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


BAD = [
    (("format",), "other.format", r"format: expected 'ember.graph'"),
    (("version",), 2, r"version: this ember reads version 1, got 2"),
    (("version",), True, r"version: this ember reads version 1"),
    (("nodes", 0, "op"), "frobnicate", r"nodes\[0\] \(frobnicate\): unknown op 'frobnicate'"),
    (("nodes", 0, "op"), 3, r"nodes\[0\].op: expected a string, got int"),
    (("nodes", 1, "inputs", 0), "nope", r"nodes\[1\].inputs\[0\]: %nope is not defined"),
    (("nodes", 1, "inputs", 0), "6", r"nodes\[1\].inputs\[0\]: %6 is not defined"),
    (("nodes", 1, "inputs", 1), [1], r"nodes\[1\].inputs\[1\]: expected a number, got list"),
    (("nodes", 1, "inputs", 1), {"float": "big"}, r"a float is one of"),
    (
        ("nodes", 0, "outputs", 0, "type", "shape"),
        ["B", 5],
        r"nodes\[0\].outputs\[0\].type: recorded as f32\[B, 5\], but matmul gives f32\[B, 4\]",
    ),
    (
        ("nodes", 0, "outputs", 0, "type", "dtype"),
        "float99",
        r"nodes\[0\].outputs\[0\].type.dtype: unknown dtype 'float99'",
    ),
    (("nodes", 0, "outputs", 0, "name"), "x", r"nodes\[0\].outputs\[0\].name: %x is defined twice"),
    (
        ("nodes", 2, "outputs"),
        [{"name": "2", "type": {"dtype": "float32", "shape": ["B"]}}],
        r"nodes\[2\] \(max_dim\): max_dim: 1 names given for 2 outputs",
    ),
    (("inputs", 0, "type", "shape"), ["B+"], r"inputs\[0\].type.shape\[0\]: bad size 'B\+'"),
    (("inputs", 0, "type", "shape"), ["__import__('os').getpid()"], r"bad size"),
    (("inputs", 0, "type", "shape"), [1.5, 16], r"a size is an int or an expression string"),
    (("inputs", 0, "type", "shape"), [True, 16], r"a size is an int or an expression string"),
    (("inputs", 0, "type"), {"dtype": "float32"}, r"inputs\[0\].type: missing field 'shape'"),
    (("inputs", 0, "extra"), 1, r"inputs\[0\]: unknown field 'extra'"),
    (("inputs",), {}, r"inputs: expected a list, got dict"),
    (("nodes", 3, "attrs", "shape"), {"tuple": [-1], "list": []}, r"exactly one of"),
    (("nodes", 3, "attrs", "shape"), {"set": [-1]}, r"unknown tag 'set'"),
    (("nodes", 3, "attrs", "shape"), {"size": "B*"}, r"attrs.shape.size: bad size"),
    (("nodes", 3, "attrs", "shape"), {"tuple": [7]}, r"nodes\[3\] \(reshape\): shape '\[7\]'"),
    (("nodes", 3, "attrs"), [], r"nodes\[3\].attrs: expected an object, got list"),
    (("nodes", 0, "source"), 12, r"nodes\[0\].source: expected a string, got int"),
    (("constants", 1, "data"), [0.1, 0.2], r"constants\[1\].data: 2 values for shape \[3\]"),
    (("constants", 1, "data"), [0.1, "a", 0.3], r"constants\[1\].data\[1\]: expected a number"),
    (("constants", 0, "type", "shape"), ["B"], r"constants\[0\].type: a constant's shape is"),
    (("constants", 0, "type", "dtype"), "int8", r"constants\[0\].data: constant: \[0.5\] does"),
    (("outputs", 0), "99", r"outputs\[0\]: %99 is not defined"),
    (("outputs",), "1", r"outputs: expected a list, got str"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[m for _, _, m in BAD])
def test_malformed_data_is_refused_by_name(data, path, value, message):
    bad = broken(data, lambda d: set_path(d, path, value))
    with pytest.raises(IRError, match=message) as info:
        from_data(bad)
    assert str(info.value).startswith("graph data: ")


def test_missing_and_unexpected_top_level_fields(data):
    with pytest.raises(IRError, match="graph: missing field 'nodes'"):
        from_data(broken(data, lambda d: d.pop("nodes")))
    with pytest.raises(IRError, match="graph: unknown field 'extra'"):
        from_data(broken(data, lambda d: d.update(extra=1)))
    with pytest.raises(IRError, match="graph: expected an object, got list"):
        from_data([])


def test_a_value_used_before_its_node_is_refused(data):
    bad = broken(data, lambda d: d["nodes"].reverse())
    with pytest.raises(IRError, match=r"nodes\[\d+\].inputs\[0\]: %\d+ is not defined before"):
        from_data(bad)
