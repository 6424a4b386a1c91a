"""Graph, Node and Value: typed by construction, users kept automatically, safe erasure."""

import copy

import numpy as np
import pytest
from ember.errors import EmberError, IRError
from ember.ir.dtypes import float16, float32, int32, int64
from ember.ir.graph import Graph
from ember.ir.symbolic import symbols
from ember.ir.types import TensorType
from ember.ir.verify import verify

B, H = symbols("B H")


def f32(*shape):
    return TensorType(tuple(shape), float32)


@pytest.fixture
def mlp():
    g = Graph()
    x = g.add_input(f32(B, 16), "x")
    w = g.add_input(f32(16, 4), "w")
    h = g.add_node("matmul", [x, w], source="model.py:12").output
    y = g.add_node("relu", [h]).output
    g.set_outputs([y])
    return g


def test_nodes_are_typed_by_their_type_rules(mlp):
    matmul, relu = mlp.nodes
    assert matmul.output.type == f32(B, 4)
    assert relu.output.type == f32(B, 4)
    assert matmul.source == "model.py:12"
    assert str(mlp) == (
        "graph(%x: f32[B, 16], %w: f32[16, 4]):\n"
        "  %0: f32[B, 4] = matmul(%x, %w)  # model.py:12\n"
        "  %1: f32[B, 4] = relu(%0)\n"
        "  return (%1)\n"
    )


def test_a_node_that_does_not_type_raises_the_eager_error():
    g = Graph()
    x = g.add_input(f32(B, 16))
    w = g.add_input(f32(8, 4))
    with pytest.raises(EmberError, match="cannot be multiplied"):
        g.add_node("matmul", [x, w])
    assert g.nodes == [] and x.users == []


def test_scalar_inputs_promote_as_in_eager_mode():
    g = Graph()
    i = g.add_input(TensorType((3,), int32))
    assert g.add_node("mul", [i, 2]).output.type.dtype is int32
    assert g.add_node("mul", [i, 2.5]).output.type.dtype is float32
    assert g.add_node("add", [i, np.int64(2)]).inputs[1].__class__ is int


def test_multi_output_ops_get_one_value_per_output():
    g = Graph()
    x = g.add_input(f32(B, H))
    node = g.add_node("max_dim", [x], {"dim": 1, "keepdim": False})
    values, indices = node.outputs
    assert values.type == f32(B) and indices.type == TensorType((B,), int64)
    assert (values.index, indices.index) == (0, 1) and values.node is node
    with pytest.raises(IRError, match="2 outputs"):
        _ = node.output


def test_users_are_kept_as_inputs_change(mlp):
    x = mlp.inputs[0]
    matmul, relu = mlp.nodes
    assert x.users == [matmul] and matmul.output.users == [relu]
    twice = mlp.add_node("add", [relu.output, relu.output])
    assert relu.output.users == [twice] and relu.output._uses[twice] == 2
    twice.inputs = [relu.output, matmul.output]
    assert relu.output._uses[twice] == 1 and matmul.output.users == [relu, twice]
    assert twice.replace_input(matmul.output, relu.output) == 1
    assert matmul.output.users == [relu] and relu.output._uses[twice] == 2
    verify(mlp)


def test_replace_all_uses_rewires_users_and_outputs(mlp):
    matmul, relu = mlp.nodes
    doubled = mlp.add_node("mul", [relu.output, 2.0])
    mlp.set_outputs([relu.output, doubled.output])
    other = mlp.add_node("neg", [matmul.output])
    assert mlp.replace_all_uses(relu.output, other.output) == 2
    assert relu.output.users == [] and doubled.inputs[0] is other.output
    assert mlp.outputs[0] is other.output


def test_replace_all_uses_refuses_another_type(mlp):
    x = mlp.inputs[0]
    with pytest.raises(IRError, match="types differ"):
        mlp.replace_all_uses(mlp.nodes[1].output, x)


def test_erase_node_refuses_a_node_still_used(mlp):
    matmul, relu = mlp.nodes
    with pytest.raises(IRError, match="still used by %1 = relu"):
        mlp.erase_node(matmul)
    with pytest.raises(IRError, match="the graph's outputs"):
        mlp.erase_node(relu)
    assert mlp.nodes == [matmul, relu]


def test_erase_node_drops_its_uses_and_detaches_it(mlp):
    matmul, relu = mlp.nodes
    extra = mlp.add_node("exp", [matmul.output])
    mlp.erase_node(extra)
    assert matmul.output.users == [relu] and extra.graph is None
    assert extra.output.graph is None
    with pytest.raises(IRError, match="erased value"):
        mlp.add_node("exp", [extra.output])
    verify(mlp)


def test_fresh_names_never_reuse_an_erased_name(mlp):
    extra = mlp.add_node("exp", [mlp.nodes[1].output])
    assert extra.output.name == "2"
    mlp.erase_node(extra)
    assert mlp.add_node("exp", [mlp.nodes[1].output]).output.name == "3"


def test_names_are_unique_and_well_formed():
    g = Graph()
    g.add_input(f32(2), "x")
    with pytest.raises(IRError, match="already defined"):
        g.add_input(f32(2), "x")
    with pytest.raises(IRError, match="value name"):
        g.add_input(f32(2), "a b")
    x = g.value("x")
    with pytest.raises(IRError, match="given twice"):
        g.add_node("max_dim", [x], {"dim": 0, "keepdim": False}, names=["m", "m"])
    with pytest.raises(IRError, match="no value %y"):
        g.value("y")


def test_unknown_ops_and_foreign_inputs_are_refused():
    g, other = Graph(), Graph()
    x = g.add_input(f32(2))
    y = other.add_input(f32(2))
    with pytest.raises(IRError, match="unknown op 'frob'"):
        g.add_node("frob", [x])
    with pytest.raises(IRError, match="another graph"):
        g.add_node("add", [x, y])
    with pytest.raises(IRError, match="Python number"):
        g.add_node("add", [x, "2"])
    with pytest.raises(IRError, match="one line"):
        g.add_node("relu", [x], source="a\nb")


def test_attrs_are_plain_data_copied_at_construction():
    g = Graph()
    x = g.add_input(f32(2, 3))
    shape = [3, 2]
    node = g.add_node("reshape", [x], {"shape": shape})
    shape.append(1)
    assert node.attrs == {"shape": [3, 2]}
    cast = g.add_node("cast", [x], {"dtype": float16})
    assert cast.attrs == {"dtype": "float16"} and cast.output.type.dtype is float16
    summed = g.add_node("sum", [x], {"dims": (np.int64(0),), "keepdim": np.bool_(False)})
    assert summed.attrs == {"dims": (0,), "keepdim": False}
    assert type(summed.attrs["dims"][0]) is int
    with pytest.raises(IRError, match="not plain data"):
        g.add_node("reshape", [x], {"shape": object()})
    with pytest.raises(IRError, match="keys must be strings"):
        g.add_node("relu", [x], {"extra": {1: 2}})


def test_constants_hold_read_only_typed_arrays():
    g = Graph()
    half = g.add_constant(0.5)
    assert half.type == f32() and half.is_constant and not half.is_input
    table = g.add_constant([[1, 2], [3, 4]], int32)
    assert table.type == TensorType((2, 2), int32)
    assert not table.constant.flags.writeable
    with pytest.raises(IRError, match="does not fit int32"):
        g.add_constant([1.5], int32)
    with pytest.raises(IRError, match="does not fit"):
        g.add_constant(300, "uint8")
    with pytest.raises(IRError, match="does not fit bool"):
        g.add_constant([2], "bool")
    x = g.add_input(f32(2, 2))
    used = g.add_node("mul", [x, half])
    g.set_outputs([used.output])
    with pytest.raises(IRError, match="still used"):
        g.erase_constant(half)
    g.erase_constant(table)
    assert g.constants == [half]


def test_an_unused_input_may_be_erased():
    g = Graph()
    x, spare = g.add_input(f32(2)), g.add_input(f32(2), "spare")
    g.set_outputs([g.add_node("neg", [x]).output])
    with pytest.raises(IRError, match="still used"):
        g.erase_input(x)
    g.erase_input(spare)
    assert g.inputs == [x] and spare.graph is None
    with pytest.raises(IRError, match="no value %spare"):
        g.value("spare")
    with pytest.raises(IRError, match="not an input"):
        g.erase_input(g.outputs[0])


def test_inserting_before_places_new_nodes(mlp):
    matmul, relu = mlp.nodes
    with mlp.inserting_before(relu):
        scaled = mlp.add_node("mul", [matmul.output, 2.0])
    assert mlp.nodes == [matmul, scaled, relu]
    assert mlp.add_node("exp", [relu.output]) is mlp.nodes[-1]


def test_topological_check_finds_a_use_before_definition(mlp):
    mlp.check_topological()
    mlp.nodes.reverse()
    with pytest.raises(IRError, match="before the node that defines it"):
        mlp.check_topological()


def test_set_outputs_takes_values_of_this_graph(mlp):
    with pytest.raises(IRError, match="output 0"):
        mlp.set_outputs([Graph().add_input(f32(1))])


def test_copies_are_independent(mlp):
    const = mlp.add_constant([1.0, 2.0, 3.0, 4.0])
    mlp.add_node("add", [mlp.nodes[1].output, const])
    mapping = {}
    copied = mlp.copy(mapping)
    assert str(copied) == str(mlp)
    assert mapping[mlp.inputs[0]] is copied.inputs[0]
    verify(copied)
    copied.add_node("exp", [copied.inputs[0]])
    copied.nodes[0].attrs["extra"] = 1
    assert len(mlp.nodes) == 3 and "extra" not in mlp.nodes[0].attrs
    assert mlp.inputs[0].users == [mlp.nodes[0]]
    assert copied.constants[0].constant is const.constant  # read-only: shared
    deep = copy.deepcopy(mlp)
    assert str(deep) == str(mlp) and deep.constants[0].constant is not const.constant
    assert str(copy.copy(mlp)) == str(mlp)
