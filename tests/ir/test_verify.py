"""The verifier catches every broken invariant, each corrupted here by hand as a buggy pass
could, and accepts every graph the API builds."""

import numpy as np
import pytest
from ember.errors import IRError
from ember.ir.dtypes import float32, int64
from ember.ir.graph import Graph, Node, Value
from ember.ir.parser import parse_graph
from ember.ir.types import TensorType
from ember.ir.verify import verify

TEXT = """graph(%x: f32[B, 16], %w: f32[16, 4]):
  %c0: f32[] = constant(2.0)
  %0: f32[B, 4] = matmul(%x, %w)
  %1: f32[B, 4] = mul(%0, %c0)
  %2: f32[B], %3: i64[B] = max_dim(%1, dim=1, keepdim=False)
  return (%1, %3)
"""


@pytest.fixture
def graph():
    g = parse_graph(TEXT)
    verify(g)
    return g


def fails(graph, message):
    with pytest.raises(IRError, match=message):
        verify(graph)


def test_a_valid_graph_passes(graph):
    verify(graph)
    verify(Graph())


def test_a_use_before_its_definition(graph):
    graph.nodes[0], graph.nodes[1] = graph.nodes[1], graph.nodes[0]
    fails(graph, r"input 0 %0 is used before it is defined")


def test_a_value_defined_twice(graph):
    matmul, mul, _ = graph.nodes
    mul.outputs = (matmul.outputs[0],)
    fails(graph, "%0 is defined twice")


def test_two_values_with_one_name(graph):
    graph.nodes[1].outputs[0].name = "0"
    fails(graph, "the name %0 is already used")


def test_an_invalid_value_name(graph):
    graph.inputs[0].name = "a b"
    fails(graph, "not a valid value name")


def test_an_unknown_op(graph):
    graph.nodes[1].op = "frobnicate"
    fails(graph, "unknown op 'frobnicate'")


def test_an_output_type_that_differs_from_the_rule(graph):
    graph.nodes[1].outputs[0].type = TensorType(("B", 5), float32)
    fails(graph, "size must be an int or a SymInt")
    graph.nodes[1].outputs[0].type = TensorType((3, 4), float32)
    fails(graph, r"%1 is typed f32\[3, 4\] but mul gives f32\[B, 4\]")


def test_a_second_output_with_the_wrong_dtype(graph):
    graph.nodes[2].outputs[1].type = TensorType(graph.nodes[2].outputs[1].type.shape, float32)
    fails(graph, r"%3 is typed f32\[B\] but max_dim gives i64\[B\]")


def test_inputs_the_type_rule_rejects(graph):
    graph.inputs[1].type = TensorType((8, 4), float32)
    fails(graph, "type rule rejects the inputs: .*cannot be multiplied")


def test_users_out_of_date(graph):
    matmul = graph.nodes[0]
    matmul.outputs[0]._uses.clear()  # behind the bookkeeping's back
    fails(graph, "%0: users are out of date")


def test_inputs_changed_behind_the_bookkeeping(graph):
    mul = graph.nodes[1]
    mul._inputs = (mul.inputs[0], mul.inputs[0])
    fails(graph, "users are out of date")
    mul._inputs = (mul.inputs[0], 2.0)  # same types, but %c0 still lists mul as a user
    fails(graph, "%c0: users are out of date")


def test_a_user_that_was_erased(graph):
    stray = Node("exp", {}, None, graph)
    graph.inputs[0]._uses[stray] = 1
    fails(graph, "%x: users are out of date")


def test_an_input_from_another_graph(graph):
    other = Graph().add_input(TensorType((16, 4), float32), "w")
    node = graph.nodes[0]
    node._inputs = (node.inputs[0], other)
    fails(graph, "not defined in this graph")


def test_an_input_that_is_neither_value_nor_number(graph):
    node = graph.nodes[1]
    node._inputs = (node.inputs[0], "2")
    fails(graph, "input 1 is a str")


def test_attrs_that_are_not_plain_data(graph):
    graph.nodes[2].attrs["dim"] = np.int64(1)
    fails(graph, "attrs must be held normalized")
    graph.nodes[2].attrs["dim"] = object()
    fails(graph, "not plain data")


def test_a_wrong_number_of_outputs(graph):
    node = graph.nodes[2]
    node.outputs = node.outputs[:1]
    fails(graph, "max_dim has 2 outputs, the node 1")


def test_an_output_that_does_not_point_back(graph):
    graph.nodes[1].outputs[0].node = graph.nodes[0]
    fails(graph, "does not point back to its node")


def test_a_returned_value_that_is_not_defined(graph):
    graph.outputs.append(Value("ghost", TensorType((1,), float32), graph))
    fails(graph, "output 2: %ghost is not defined")
    graph.outputs[-1] = "not a value"
    fails(graph, "output 2: 'not a value' is not defined")


def test_a_constant_whose_array_does_not_match(graph):
    graph.constants[0].constant = np.zeros(3, dtype=np.float32)
    fails(graph, r"typed f32\[\] but holds a float32 array of shape \[3\]")
    graph.constants[0].constant = np.array(2, dtype=np.int64)
    fails(graph, "holds a int64 array")


def test_a_node_of_another_graph(graph):
    other = parse_graph("graph(%x: f32[4]):\n  %0 = relu(%x)\n  return (%0)\n")
    graph.nodes.append(other.nodes[0])
    fails(graph, "not a node of this graph")


def test_a_bad_source(graph):
    graph.nodes[0].source = "two\nlines"
    fails(graph, "source must be one line")


def test_an_input_marked_as_a_node_output(graph):
    graph.inputs[0].node = graph.nodes[0]
    fails(graph, "input 0: %x is marked as defined by a node")


def test_integer_outputs_are_checked_too():
    g = Graph()
    i = g.add_input(TensorType((3,), int64))
    node = g.add_node("sum", [i], {"dims": (0,), "keepdim": False})
    verify(g)
    node.attrs["keepdim"] = True  # the recorded type is now stale
    with pytest.raises(IRError, match=r"typed i64\[\] but sum gives i64\[1\]"):
        verify(g)
