"""The pass pipeline: listed in one place, run to a fixed point, verified in debug mode."""

import numpy as np
import pytest
from ember.errors import IRError
from ember.ir.parser import parse_graph
from ember.ir.passes import (
    PIPELINE,
    eliminate_common_subexpressions,
    eliminate_dead_code,
    fold_constants,
    run_pipeline,
    simplify_algebra,
)
from ember.ir.verify import verify

TEXT = """
graph(%x: f32[B, 16], %w: f32[16, 4], %p: f32[B, 4]):
  %c0: f32[] = constant(2.0)
  %c1: f32[] = constant(0.5)
  %0: f32[] = mul(%c0, %c1)
  %1: f32[B, 4] = matmul(%x, %w)  # model.py:3
  %2: f32[B, 4] = mul(%1, %0)  # model.py:4
  %3: f32[B, 4] = permute(%2, dims=(0, 1))
  %4: f32[B, 4] = relu(%3)
  %5: f32[B, 4] = relu(%2)
  %6: f32[B, 4] = add(%4, %5)
  %7: f32[B, 4] = bernoulli(%p)
  %8: f32[B, 4] = exp(%6)
  return (%6)
"""


def test_the_pipeline_lists_the_passes_in_order():
    assert PIPELINE == [
        simplify_algebra,
        fold_constants,
        eliminate_common_subexpressions,
        eliminate_dead_code,
    ]


def test_the_pipeline_runs_until_nothing_changes(dedent):
    graph = parse_graph(dedent(TEXT))
    assert run_pipeline(graph, verify=True)
    assert str(graph) == dedent("""
        graph(%x: f32[B, 16], %w: f32[16, 4], %p: f32[B, 4]):
          %1: f32[B, 4] = matmul(%x, %w)  # model.py:3
          %4: f32[B, 4] = relu(%1)
          %6: f32[B, 4] = add(%4, %4)
          %7: f32[B, 4] = bernoulli(%p)
          return (%6)
    """)
    assert not run_pipeline(graph)


def test_an_injected_evaluator_reaches_constant_folding(dedent):
    calls = []

    def evaluate(op, inputs, attrs):
        calls.append(op)
        return np.add(*inputs) if op == "add" else None

    graph = parse_graph(
        dedent("""
        graph():
          %c0: f32[2] = constant([1.0, 2.0])
          %0: f32[2] = add(%c0, %c0)
          return (%0)
    """)
    )
    run_pipeline(graph, evaluate=evaluate)
    assert calls == ["add"]
    assert str(graph) == dedent("""
        graph():
          %c1: f32[2] = constant([2.0, 4.0])
          return (%c1)
    """)


def corrupting_pass(graph) -> bool:
    """A buggy pass: it retypes a value behind the type rule's back."""
    node = graph.nodes[0]
    node.outputs[0].type = node.outputs[0].type._replace(shape=(7,))
    return True


def test_verification_between_passes_names_the_pass_that_broke_the_graph(dedent, monkeypatch):
    monkeypatch.delenv("EMBER_DEBUG", raising=False)
    text = dedent("""
        graph(%x: f32[4]):
          %0: f32[4] = relu(%x)
          return (%0)
    """)
    graph = parse_graph(text)
    with pytest.raises(IRError, match="after pass corrupting_pass: .*typed f32\\[7\\]"):
        run_pipeline(graph, verify=True, passes=[corrupting_pass])
    # without verification the broken graph goes unnoticed
    graph = parse_graph(text)
    run_pipeline(graph, passes=[corrupting_pass])
    with pytest.raises(IRError):
        verify(graph)


def test_ember_debug_turns_verification_on(dedent, monkeypatch):
    text = dedent("""
        graph(%x: f32[4]):
          %0: f32[4] = relu(%x)
          return (%0)
    """)
    monkeypatch.setenv("EMBER_DEBUG", "1")
    with pytest.raises(IRError, match="after pass corrupting_pass"):
        run_pipeline(parse_graph(text), passes=[corrupting_pass])
    monkeypatch.setenv("EMBER_DEBUG", "0")
    run_pipeline(parse_graph(text), passes=[corrupting_pass])


def test_an_invalid_graph_is_refused_before_any_pass(dedent):
    graph = parse_graph(
        dedent("""
        graph(%x: f32[4]):
          %0: f32[4] = relu(%x)
          return (%0)
    """)
    )
    graph.nodes[0].op = "frob"
    with pytest.raises(IRError, match="unknown op 'frob'"):
        run_pipeline(graph, verify=True)
