"""Constant folding, as IR text in and IR text out: the default pure-Python scalar evaluator,
and an injected one (the runtime's, in the compiler)."""

import numpy as np
import pytest
from ember.errors import EmberError, IRError
from ember.ir.parser import parse_graph
from ember.ir.passes import evaluate_scalars, fold_constants
from hypothesis import given, settings
from hypothesis import strategies as st


def test_scalar_arithmetic_folds_to_a_constant(run_pass, dedent):
    changed, out = run_pass(
        fold_constants,
        """
        graph(%x: f32[B]):
          %c0: f32[] = constant(2.0)
          %c1: f32[] = constant(3.0)
          %0: f32[] = add(%c0, %c1)
          %1: f32[] = mul(%0, 0.5)
          %2: f32[B] = mul(%x, %1)
          return (%2)
    """,
    )
    assert changed
    assert out == dedent("""
        graph(%x: f32[B]):
          %c0: f32[] = constant(2.0)
          %c1: f32[] = constant(3.0)
          %c2: f32[] = constant(5.0)
          %c3: f32[] = constant(2.5)
          %2: f32[B] = mul(%x, %c3)
          return (%2)
    """)


def test_folding_rounds_and_wraps_as_the_dtype_does(run_pass, dedent):
    changed, out = run_pass(
        fold_constants,
        """
        graph():
          %c0: f32[] = constant(0.1)
          %c1: f32[] = constant(0.2)
          %c2: i8[] = constant(100)
          %c3: u8[] = constant(3)
          %c4: i32[] = constant(7)
          %0: f32[] = add(%c0, %c1)
          %1: i8[] = add(%c2, %c2)
          %2: u8[] = sub(%c3, 5)
          %3: i32[] = floor_divide(%c4, -2)
          %4: i32[] = remainder(%c4, -2)
          %5: f32[] = div(%c4, 2)
          %6: bool[] = lt(%c0, %c1)
          %7: i8[] = cast(%c0, dtype="int8")
          %8: f32[] = maximum(%c0, nan)
          return (%0, %1, %2, %3, %4, %5, %6, %7, %8)
    """,
    )
    assert changed
    expected_sum = np.float32(0.1) + np.float32(0.2)
    assert out == dedent(f"""
        graph():
          %c0: f32[] = constant(0.1)
          %c1: f32[] = constant(0.2)
          %c2: i8[] = constant(100)
          %c3: u8[] = constant(3)
          %c4: i32[] = constant(7)
          %c5: f32[] = constant({expected_sum!s})
          %c6: i8[] = constant(-56)
          %c7: u8[] = constant(254)
          %c8: i32[] = constant(-4)
          %c9: i32[] = constant(-1)
          %c10: f32[] = constant(3.5)
          %c11: bool[] = constant(True)
          %c12: i8[] = constant(0)
          %c13: f32[] = constant(nan)
          return (%c5, %c6, %c7, %c8, %c9, %c10, %c11, %c12, %c13)
    """)


def test_nodes_with_graph_inputs_or_random_ops_do_not_fold(run_pass, dedent):
    text = """
        graph(%x: f32[]):
          %c0: f32[] = constant(0.5)
          %0: f32[] = add(%x, %c0)
          %1: f32[] = bernoulli(%c0)
          return (%0, %1)
    """
    changed, out = run_pass(fold_constants, text)
    assert not changed and out == dedent(text)


def test_the_default_evaluator_leaves_tensors_and_divisions_by_zero(run_pass, dedent):
    text = """
        graph():
          %c0: f32[2] = constant([1.0, 2.0])
          %c1: i32[] = constant(0)
          %c2: f32[] = constant(1.0)
          %0: f32[2] = add(%c0, 1.0)
          %1: i32[] = floor_divide(7, %c1)
          %2: f32[] = div(%c2, 0.0)
          %3: f32[] = exp(%c2)
          return (%0, %1, %2, %3)
    """
    changed, out = run_pass(fold_constants, text)
    assert not changed and out == dedent(text)


def numpy_evaluator(op, inputs, attrs):
    """What the runtime's evaluator does, for the ops these tests use."""
    if op == "add":
        return np.add(*inputs)
    if op == "max_dim":
        (x,) = inputs
        return x.max(axis=attrs["dim"]), x.argmax(axis=attrs["dim"])
    return None


def test_an_injected_evaluator_folds_tensors(run_pass, dedent):
    changed, out = run_pass(
        fold_constants,
        """
        graph():
          %c0: f32[2, 2] = constant([[1.0, 5.0], [3.0, 2.0]])
          %0: f32[2, 2] = add(%c0, 1)
          %1: f32[2], %2: i64[2] = max_dim(%0, dim=1, keepdim=False)
          return (%1, %2)
    """,
        evaluate=numpy_evaluator,
    )
    assert changed
    # numpy's float64 result of add is cast to the type rule's float32, as dispatch does
    assert out == dedent("""
        graph():
          %c0: f32[2, 2] = constant([[1.0, 5.0], [3.0, 2.0]])
          %c1: f32[2, 2] = constant([[2.0, 6.0], [4.0, 3.0]])
          %c2: f32[2] = constant([6.0, 4.0])
          %c3: i64[2] = constant([1, 0])
          return (%c2, %c3)
    """)


def test_large_results_stay_computed_at_run_time(run_pass, dedent):
    text = """
        graph():
          %c0: f32[3] = constant([1.0, 2.0, 3.0])
          %0: f32[3] = add(%c0, 1)
          return (%0)
    """
    changed, out = run_pass(fold_constants, text, evaluate=numpy_evaluator, max_elements=2)
    assert not changed and out == dedent(text)


def test_an_evaluator_that_disagrees_with_the_type_rule_is_an_error(dedent):
    graph = parse_graph(
        dedent("""
        graph():
          %c0: f32[3] = constant([1.0, 2.0, 3.0])
          %0: f32[3] = add(%c0, 1)
          return (%0)
    """)
    )
    with pytest.raises(IRError, match=r"gave shape \[2\], its type rule says \[3\]"):
        fold_constants(graph, evaluate=lambda op, inputs, attrs: np.zeros(2))


def test_evaluate_scalars_is_plain_python_over_numbers():
    out = evaluate_scalars("mul", (np.array(3, dtype=np.int16), 4), {})
    assert out.dtype == np.int16 and out == 12
    assert evaluate_scalars("relu", (np.array(1.0),), {}) is None
    assert evaluate_scalars("add", (np.ones(2), 1), {}) is None


# -- the default evaluator computes what eager mode computes ---------------------------------

DTYPES = ["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool"]
BINARY = [
    "add",
    "sub",
    "mul",
    "div",
    "maximum",
    "minimum",
    "floor_divide",
    "remainder",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "logical_and",
    "logical_or",
    "logical_xor",
]
UNARY = ["neg", "abs", "logical_not"]


def scalar_operands():
    values = (
        st.integers(-300, 300)
        | st.floats(-1e6, 1e6, width=32)
        | st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.0])
    )
    tensor = st.tuples(st.sampled_from(DTYPES), values)
    number = st.integers(-300, 300) | st.floats(-1e3, 1e3, width=32) | st.booleans()
    return tensor, number


def as_array(dtype, value):
    with np.errstate(all="ignore"):
        return np.asarray(value).astype(dtype)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_default_folding_matches_eager_execution(data):
    import ember
    from ember._tensor import dispatch

    tensor, number = scalar_operands()
    op = data.draw(st.sampled_from(BINARY + UNARY + ["cast"]))
    first = as_array(*data.draw(tensor))
    if op in UNARY:
        inputs, attrs = (first,), {}
    elif op == "cast":
        inputs, attrs = (first,), {"dtype": data.draw(st.sampled_from(DTYPES))}
    else:
        other = as_array(*data.draw(tensor)) if data.draw(st.booleans()) else data.draw(number)
        inputs = (first, other) if data.draw(st.booleans()) else (other, first)
        attrs = {}
    try:
        expected = dispatch(
            op,
            tuple(
                ember.from_numpy(np.array(x)) if isinstance(x, np.ndarray) else x for x in inputs
            ),
            attrs,
        ).numpy()
    except EmberError:
        return  # the type rule refuses these operands, in the graph as in eager mode
    folded = evaluate_scalars(op, inputs, attrs)
    if folded is None:
        return  # left to the kernel: a division by zero, NaN to an integer
    assert folded.dtype == expected.dtype, (op, inputs)
    assert folded.shape == expected.shape == ()
    if expected.dtype.kind == "f":
        np.testing.assert_array_equal(folded, expected, err_msg=f"{op}{inputs}")
    else:
        assert folded == expected, (op, inputs, folded, expected)
