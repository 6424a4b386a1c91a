"""Type propagation with symbolic sizes, as IR text in and IR text out."""

import pytest
from ember.errors import IRError
from ember.ir.dtypes import float64
from ember.ir.parser import parse_graph
from ember.ir.passes import propagate_types
from ember.ir.symbolic import symbol
from ember.ir.types import TensorType
from ember.ir.verify import verify


def test_a_symbolic_batch_types_the_whole_graph(run_pass, dedent):
    changed, out = run_pass(
        propagate_types,
        """
        graph(%x: f32[8, 16], %w: f32[16, 4]):
          %0: f32[8, 4] = matmul(%x, %w)
          %1: f32[32] = reshape(%0, shape=(-1,))
          %2: f32[1] = sum(%1, dims=(0,), keepdim=True)
          %3: f32[8, 1] = sum(%0, dims=(1,), keepdim=True)
          %4: f32[8, 4] = sub(%0, %3)
          %5: f32[8, 20] = cat(%x, %4, dim=1)
          %6: f32[3, 20] = slice(%5, starts=(2, 0), stops=(8, 20), steps=(2, 1))
          return (%1, %2, %6)
    """,
        inputs={"x": {0: "B"}},
    )
    assert changed
    assert out == dedent("""
        graph(%x: f32[B, 16], %w: f32[16, 4]):
          %0: f32[B, 4] = matmul(%x, %w)
          %1: f32[B*4] = reshape(%0, shape=(-1,))
          %2: f32[1] = sum(%1, dims=(0,), keepdim=True)
          %3: f32[B, 1] = sum(%0, dims=(1,), keepdim=True)
          %4: f32[B, 4] = sub(%0, %3)
          %5: f32[B, 20] = cat(%x, %4, dim=1)
          %6: f32[3, 20] = slice(%5, starts=(2, 0), stops=(8, 20), steps=(2, 1))
          return (%1, %2, %6)
    """)


def test_symbolic_images_give_size_expressions(run_pass, dedent):
    changed, out = run_pass(
        propagate_types,
        """
        graph(%x: f32[2, 3, 32, 32], %w: f32[8, 3, 3, 3]):
          %0: f32[2, 8, 16, 16] = conv2d(%x, %w, stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1)
          %1: f32[2, 8, 8, 8] = max_pool2d(%0, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False)
          %2: f32[2, 512] = reshape(%1, shape=(2, -1))
          return (%2)
    """,
        inputs={"x": {2: "H", 3: symbol("W")}},
    )
    assert changed
    assert out == dedent("""
        graph(%x: f32[2, 3, H, W], %w: f32[8, 3, 3, 3]):
          %0: f32[2, 8, (H + 1)//2, (W + 1)//2] = conv2d(%x, %w, stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1)
          %1: f32[2, 8, (H + 1)//4, (W + 1)//4] = max_pool2d(%0, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False)
          %2: f32[2, ((H + 1)//4)*((W + 1)//4)*8] = reshape(%1, shape=(2, -1))
          return (%2)
    """)


def test_nothing_changes_without_new_input_types(run_pass, dedent):
    text = """
        graph(%x: f32[B, 4]):
          %0: f32[B, 4] = relu(%x)
          return (%0)
    """
    changed, out = run_pass(propagate_types, text)
    assert not changed and out == dedent(text)


def test_a_whole_new_input_type(run_pass, dedent):
    changed, out = run_pass(
        propagate_types,
        """
        graph(%x: f32[4]):
          %0: f32[4] = mul(%x, 2)
          return (%0)
    """,
        inputs={"x": TensorType((symbol("N"),), float64)},
    )
    assert changed
    assert out == dedent("""
        graph(%x: f64[N]):
          %0: f64[N] = mul(%x, 2)
          return (%0)
    """)


def test_a_size_fixed_in_an_attr_cannot_become_symbolic(dedent):
    graph = parse_graph(
        dedent("""
        graph(%x: f32[8, 16]):
          %0: f32[128] = reshape(%x, shape=(128,))
          return (%0)
    """)
    )
    with pytest.raises(IRError, match=r"%0: f32\[128\] = reshape.*invalid for input of size B\*16"):
        propagate_types(graph, {"x": {0: "B"}})


def test_bad_requests_are_refused(dedent):
    graph = parse_graph(
        dedent("""
        graph(%x: f32[8, 16]):
          %0: f32[8, 16] = relu(%x)
          return (%0)
    """)
    )
    with pytest.raises(IRError, match="has no dim 2"):
        propagate_types(graph, {"x": {2: "B"}})
    with pytest.raises(IRError, match="not an input"):
        propagate_types(graph, {"0": {0: "B"}})
    with pytest.raises(IRError, match="symbol"):
        propagate_types(graph, {"x": {0: "1B"}})
    verify(graph)
