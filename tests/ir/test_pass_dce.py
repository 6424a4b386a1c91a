"""Dead-code elimination, as IR text in and IR text out."""

from ember.ir.passes import eliminate_dead_code
from ember.ir.schema import SCHEMAS, OpSchema
from ember.ir.types import TensorType


def test_an_unused_chain_goes_in_one_run(run_pass, dedent):
    changed, out = run_pass(
        eliminate_dead_code,
        """
        graph(%x: f32[B, 4]):
          %0: f32[B, 4] = relu(%x)
          %1: f32[B, 4] = exp(%0)
          %2: f32[B] = sum(%1, dims=(1,), keepdim=False)
          %3: f32[B, 4] = neg(%x)
          return (%3)
    """,
    )
    assert changed
    assert out == dedent("""
        graph(%x: f32[B, 4]):
          %3: f32[B, 4] = neg(%x)
          return (%3)
    """)


def test_used_nodes_stay(run_pass, dedent):
    text = """
        graph(%x: f32[B, 4]):
          %0: f32[B, 4] = relu(%x)
          %1: f32[B, 4] = exp(%0)
          %2: f32[B, 4] = add(%0, %1)
          return (%2, %0)
    """
    changed, out = run_pass(eliminate_dead_code, text)
    assert not changed and out == dedent(text)


def test_a_node_stays_while_any_of_its_outputs_is_used(run_pass, dedent):
    text = """
        graph(%x: f32[B, 4]):
          %0: f32[B], %1: i64[B] = max_dim(%x, dim=1, keepdim=False)
          return (%1)
    """
    changed, out = run_pass(eliminate_dead_code, text)
    assert not changed and out == dedent(text)


def test_random_ops_are_never_eliminated(run_pass, dedent):
    text = """
        graph(%p: f32[B, 4]):
          %0: f32[B, 4] = bernoulli(%p)
          %1: f32[B, 4] = relu(%p)
          return (%p)
    """
    changed, out = run_pass(eliminate_dead_code, text)
    assert changed
    assert out == dedent("""
        graph(%p: f32[B, 4]):
          %0: f32[B, 4] = bernoulli(%p)
          return (%p)
    """)


def test_ops_with_side_effects_are_never_eliminated(run_pass, dedent, monkeypatch):
    def same_type(inputs, attrs):
        return TensorType(tuple(inputs[0].shape), inputs[0].dtype)

    monkeypatch.setitem(SCHEMAS, "test_print", OpSchema("test_print", same_type, side_effects=True))
    text = """
        graph(%x: f32[4]):
          %0: f32[4] = test_print(%x)
          return (%x)
    """
    changed, out = run_pass(eliminate_dead_code, text)
    assert not changed and out == dedent(text)
    assert not SCHEMAS["test_print"].pure and not SCHEMAS["bernoulli"].pure
    assert SCHEMAS["relu"].pure


def test_unused_constants_go_and_used_ones_stay(run_pass, dedent):
    changed, out = run_pass(
        eliminate_dead_code,
        """
        graph(%x: f32[4]):
          %c0: f32[] = constant(1.0)
          %c1: f32[] = constant(2.0)
          %c2: f32[] = constant(3.0)
          %0: f32[4] = mul(%x, %c1)
          %1: f32[4] = add(%x, %c2)
          return (%0, %c0)
    """,
    )
    assert changed
    assert out == dedent("""
        graph(%x: f32[4]):
          %c0: f32[] = constant(1.0)
          %c1: f32[] = constant(2.0)
          %0: f32[4] = mul(%x, %c1)
          return (%0, %c0)
    """)


def test_a_second_run_finds_nothing(run_pass):
    text = """
        graph(%x: f32[4]):
          %0: f32[4] = relu(%x)
          return (%x)
    """
    _, out = run_pass(eliminate_dead_code, text)
    changed, again = run_pass(eliminate_dead_code, out)
    assert not changed and again == out
