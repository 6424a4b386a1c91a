"""The IR text form: graphs print readably and parse back to the same graph; bad text fails
with its line and column."""

import math

import numpy as np
import pytest
from ember.ir.attrs import freeze
from ember.ir.dtypes import float16, float32, int64
from ember.ir.graph import Graph
from ember.ir.parser import IRParseError, parse_graph, parse_literal, parse_type
from ember.ir.printer import format_literal, format_type
from ember.ir.symbolic import symbols
from ember.ir.types import TensorType
from ember.ir.verify import verify

B, H = symbols("B H")

FULL = """
graph(%x: f32[B, 16], %w: f32[16, 4], %i: i64[B]):
  %c0: f32[] = constant(0.5)
  %c1: i32[2, 2] = constant([[1, -2], [3, 4]])
  %c2: f16[3] = constant([0.1, nan, -inf])
  %c3: bool[0, 2] = constant([])
  %c4: u8[2] = constant([0, 255])
  %0: f32[B, 4] = matmul(%x, %w)  # model.py:12
  %1: f32[B, 4] = mul(%0, %c0)
  %2: f32[B], %3: i64[B] = max_dim(%1, dim=1, keepdim=False)
  %4: f32[B*4] = reshape(%1, shape=(-1,))
  %5: f32[B*4] = clamp(%4, min=-inf, max=None)
  %6: f32[B*4] = add(%5, 2.5)
  %7: f32[B - 1, 8] = slice(%x, starts=(0, 1), stops=(B - 1, 16), steps=(1, 2))
  return (%1, %3, %6)
"""


def test_a_full_graph_round_trips(dedent):
    text = dedent(FULL)
    graph = parse_graph(text)
    verify(graph)
    assert str(graph) == text
    assert str(parse_graph(str(graph))) == text


def test_the_example_from_the_design_reads_as_printed(dedent):
    g = Graph()
    x = g.add_input(TensorType((B, 16), float32), "x")
    w = g.add_input(TensorType((16, 4), float32), "w")
    h = g.add_node("matmul", [x, w], source="model.py:12").output
    g.set_outputs([g.add_node("relu", [h]).output])
    assert str(g) == dedent("""
        graph(%x: f32[B, 16], %w: f32[16, 4]):
          %0: f32[B, 4] = matmul(%x, %w)  # model.py:12
          %1: f32[B, 4] = relu(%0)
          return (%1)
    """)
    assert str(parse_graph(str(g))) == str(g)


ATTR_VALUES = [
    None,
    True,
    False,
    0,
    -7,
    12345678901234567890,
    0.0,
    -0.0,
    2.5,
    1e-05,
    1e20,
    math.inf,
    -math.inf,
    "",
    "constant",
    'quote " backslash \\ newline \n tab \t unicode é ☃',
    (),
    (1,),
    (1, 2),
    [],
    [1],
    [1, [2.5, "a"], (None, (True,))],
    {},
    {"a": [1, (2,)], "b": {"c": None}},
    B * 4,
    (H - 1) // 2 + 1,
    (B, H * 2, -1),
]


@pytest.mark.parametrize("value", ATTR_VALUES, ids=repr)
def test_every_kind_of_attr_value_round_trips_with_its_type(value):
    g = Graph()
    x = g.add_input(TensorType((B, H), float32), "x")
    g.set_outputs([g.add_node("relu", [x], {"value": value}).output])
    parsed = parse_graph(str(g)).nodes[0].attrs["value"]
    # freeze tells 1 from 1.0 and True, and (1,) from [1]
    assert freeze(parsed) == freeze(value)
    assert str(parse_graph(str(g))) == str(g)


def test_nan_attrs_round_trip():
    assert math.isnan(parse_literal(format_literal(math.nan)))


def test_tuples_and_lists_print_differently():
    assert format_literal((1,)) == "(1,)"
    assert format_literal([1]) == "[1]"
    assert format_literal(()) == "()" and format_literal([]) == "[]"
    assert parse_literal("(1)") == 1  # parentheses alone make no tuple, as in Python
    assert parse_literal("((1, 2),)") == ((1, 2),)


def test_constants_round_trip_exactly():
    g = Graph()
    values = {
        "f16": np.array([0.1, 65504.0, -0.0, np.nan, np.inf], dtype=np.float16),
        "f32": np.array([[1 / 3, 1e-30], [3.4e38, -2.5]], dtype=np.float32),
        "f64": np.array(np.pi),
        "i64": np.array([-(2**63), 2**63 - 1]),
        "bool": np.array([True, False]),
        "empty": np.zeros((0, 3), dtype=np.int8),
    }
    consts = {k: g.add_constant(v, name=k) for k, v in values.items()}
    g.set_outputs(list(consts.values()))
    parsed = parse_graph(str(g))
    for name, array in values.items():
        back = parsed.value(name).constant
        assert back.dtype == array.dtype and back.shape == array.shape
        assert back.tobytes() == array.tobytes(), name
    assert str(parsed) == str(g)


def test_node_types_may_be_left_out_and_are_inferred(dedent):
    graph = parse_graph(
        dedent("""
        graph(%x: f32[B, 16]):
          # a comment line, and a blank one

          %0 = sum(%x, dims=(1,), keepdim=True)
          %1, %2 = max_dim(%x, dim=0, keepdim=False)
          return (%0, %2)
    """)
    )
    assert str(graph) == dedent("""
        graph(%x: f32[B, 16]):
          %0: f32[B, 1] = sum(%x, dims=(1,), keepdim=True)
          %1: f32[16], %2: i64[16] = max_dim(%x, dim=0, keepdim=False)
          return (%0, %2)
    """)


def test_types_print_short_and_parse_long_or_short():
    t = TensorType((B, (H - 1) // 2 + 1, 3), float16)
    assert format_type(t) == "f16[B, (H + 1)//2, 3]"
    assert parse_type(format_type(t)) == t
    assert parse_type("float32[]") == TensorType((), float32)
    assert parse_type("i64[B*2]") == TensorType((B * 2,), int64)


def test_scalar_inputs_print_as_numbers(dedent):
    text = dedent("""
        graph(%x: f32[3], %b: bool[3]):
          %0: f32[3] = add(%x, -1)
          %1: f32[3] = mul(%0, inf)
          %2: bool[3] = logical_and(%b, True)
          %3: f32[3] = pow(%1, 2.0)
          return (%2, %3)
    """)
    graph = parse_graph(text)
    assert graph.nodes[0].inputs[1] == -1 and type(graph.nodes[0].inputs[1]) is int
    assert graph.nodes[2].inputs[1] is True
    assert str(graph) == text


def parse_error(text: str) -> IRParseError:
    with pytest.raises(IRParseError) as info:
        parse_graph(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("graph(%x: f32[4]):\n  %0 = relu(%y)\n  return (%0)\n", 2, 13, "%y is not defined"),
        (
            "graph(%x: f32[4]):\n  %0: f32[5] = relu(%x)\n  return (%0)\n",
            2,
            7,
            "declared f32[5] but relu gives f32[4]",
        ),
        ("graph(%x: f32[4]):\n  %0 = frob(%x)\n  return (%0)\n", 2, 8, "unknown op 'frob'"),
        (
            "graph(%x: f32[4], %w: f32[3, 2]):\n  %0 = matmul(%x, %w)\n  return (%0)\n",
            2,
            8,
            "cannot be multiplied",
        ),
        ("graph(%x: f32[4], %x: f32[4]):\n  return (%x)\n", 1, 19, "%x is defined twice"),
        ("graph(%x: f33[4]):\n  return (%x)\n", 1, 11, "expected a type"),
        (
            "graph(%x: f32[4]):\n  %0 = relu(%x) junk\n  return (%0)\n",
            2,
            17,
            "expected the end of the line",
        ),
        ("graph(%x: f32[B/2]):\n  return (%x)\n", 1, 16, "divide with //"),
        (
            "graph(%x: f32[4]):\n  %c: i32[2] = constant([1.5, 2])\n  return (%x)\n",
            2,
            25,
            "does not fit int32",
        ),
        (
            "graph(%x: f32[4]):\n  %c: i32[3] = constant([1, 2])\n  return (%x)\n",
            2,
            25,
            "shape [2], the type says [3]",
        ),
        (
            "graph(%x: f32[4]):\n  %0 = add(%x, alpha=1, 2)\n  return (%0)\n",
            2,
            25,
            "inputs come before the attrs",
        ),
        ("graph(%x: f32[4]):\n  return (%x)\nextra\n", 3, 1, "end of the graph"),
        (
            "graph(%x: f32[4]):\n  %0 = relu(%x, a=1, a=2)\n  return (%0)\n",
            2,
            22,
            "attr a is given twice",
        ),
        ("graph(%x: f32[4]):\n  %0 = relu(%x, a=(1, 2)\n  return (%0)\n", 3, 3, "expected ')'"),
        (
            "graph(%x: f32[4]):\n  %0 = max_dim(%x, dim=0, keepdim=False)\n  return (%0)\n",
            2,
            8,
            "1 names given for 2 outputs",
        ),
        (
            "graph(%x: f32[4]):\n  %0 = add(%x, B)\n  return (%0)\n",
            2,
            16,
            "an input is a %value or a number",
        ),
        (
            'graph(%x: f32[4]):\n  %0 = relu(%x, a="x" * 2)\n  return (%0)\n',
            2,
            23,
            "arithmetic (*) is only for sizes",
        ),
        ("graph(%x: f32[4]):\n  %0 = relu(%x)\n", 3, 1, "expected a line"),
        ("graph(%x: f32[4]) \n  return (%x)\n", 2, 3, "expected ':'"),
        (
            "graph(%x: f32[4]):\n  %c: f32[B] = constant([1.0])\n  return (%x)\n",
            2,
            7,
            "constant's shape is concrete",
        ),
        (
            "graph(%x: f32[4]):\n  %0 = relu(%x, a={1: 2})\n  return (%0)\n",
            2,
            20,
            "dict keys are strings",
        ),
        (
            'graph(%x: f32[4]):\n  %0 = relu(%x, a="unterminated)\n  return (%0)\n',
            2,
            19,
            "expected a value",
        ),
    ],
)
def test_parse_errors_say_where(text, line, column, message):
    error = parse_error(text)
    assert (error.line, error.column) == (line, column), str(error)
    assert message in str(error)
    assert f"line {line}, column {column}:" in str(error)
    # the message shows the line and points at the column
    source_line = text.split("\n")[line - 1]
    assert f"  {source_line}\n  {' ' * (column - 1)}^" in str(error)


def test_parsing_never_evaluates_python():
    with pytest.raises(IRParseError):
        parse_graph('graph(%x: f32[__import__("os").getpid()]):\n  return (%x)\n')
