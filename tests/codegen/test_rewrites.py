"""The CPU rewrites of codegen/rewrites.py, as IR text in, IR text out, and their programs
against eager."""

import ember
import numpy as np
import pytest
from ember.codegen.rewrites import gather_gradient_as_select, slice_gradients_as_cat
from ember.ir.parser import parse_graph
from ember.runtime.compiled import CompiledProgram
from ember.runtime.program import Program

SPLIT_GRADIENT = """graph(%a: f32[3, 4], %b: f32[3, 4], %c: f32[3, 4]):
  %1: f32[3, 12] = slice_backward(%a, starts=(0, 8), stops=(3, 12), steps=(1, 1), shape=(3, 12))
  %2: f32[3, 12] = slice_backward(%b, starts=(0, 0), stops=(3, 4), steps=(1, 1), shape=(3, 12))
  %3: f32[3, 12] = add(%1, %2)
  %4: f32[3, 12] = slice_backward(%c, starts=(0, 4), stops=(3, 8), steps=(1, 1), shape=(3, 12))
  %5: f32[3, 12] = add(%3, %4)
  return (%5)
"""


def _ops(graph):
    return [n.op for n in graph.nodes]


def _arrays(graph, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(v.shape).astype(np.float32) for v in graph.inputs]


def test_summed_gradients_of_slices_that_tile_a_dim_become_one_cat_in_slice_order():
    graph = parse_graph(SPLIT_GRADIENT)
    arrays = _arrays(graph)
    want = Program(parse_graph(SPLIT_GRADIENT))(np, arrays)[0]
    assert slice_gradients_as_cat(graph) == 1
    assert _ops(graph) == ["cat"]
    (cat,) = graph.nodes
    assert [v.name for v in cat.inputs] == ["b", "c", "a"] and cat.attrs["dim"] == 1
    np.testing.assert_array_equal(Program(graph)(np, arrays)[0], want)


def test_slices_with_a_gap_an_overlap_or_another_use_stay_summed():
    gap = SPLIT_GRADIENT.replace("starts=(0, 4), stops=(3, 8)", "starts=(0, 4), stops=(3, 7)")
    gap = gap.replace("%c: f32[3, 4]", "%c: f32[3, 3]")
    overlap = SPLIT_GRADIENT.replace("starts=(0, 8), stops=(3, 12)",
                                     "starts=(0, 7), stops=(3, 11)")
    reused = SPLIT_GRADIENT.replace("return (%5)", "return (%5, %1)")
    for text in (gap, overlap, reused):
        graph = parse_graph(text)
        assert slice_gradients_as_cat(graph) == 0, text
        assert _ops(graph).count("slice_backward") == 3


def test_the_gradient_of_a_split_runs_as_a_cat_and_matches_eager():
    def f(x, w):
        q, k, v = x.split(4, -1)
        y = (q * w + k.exp() + v * v).sum()
        (g,) = ember.autograd.grad(y, [x])
        return g

    x, w = ember.randn(3, 12, requires_grad=True), ember.randn(3, 4)
    scripted = ember.script(f)
    np.testing.assert_allclose(scripted(x, w).numpy(), f(x, w).numpy(), rtol=1e-6)
    program = scripted.specializations[0].program
    assert isinstance(program, CompiledProgram)
    eager = [node.op for kind, _, node in program.steps if kind == "eager"]
    assert "cat" in eager and "slice_backward" not in eager, program.describe()


GATHER_GRADIENT = """graph(%x: f32[5, 7], %g: f32[5, 1], %i: i64[5, 1]):
  %0: f32[5, 1] = gather(%x, %i, dim=1)
  %1: f32[5, 7] = gather_backward(%g, %i, dim=1, shape=(5, 7))
  return (%0, %1)
"""


def _gather_arrays():
    rng = np.random.default_rng(0)
    return [rng.standard_normal((5, 7)).astype(np.float32),
            rng.standard_normal((5, 1)).astype(np.float32), np.array([[3], [0], [6], [3], [1]])]


def test_a_gather_gradient_of_one_position_per_row_becomes_a_select():
    graph = parse_graph(GATHER_GRADIENT)
    arrays = _gather_arrays()
    want = Program(parse_graph(GATHER_GRADIENT))(np, arrays)
    assert gather_gradient_as_select(graph) == 1
    assert _ops(graph) == ["gather", "eq", "where"]
    for got, expected in zip(Program(graph)(np, arrays), want):
        np.testing.assert_array_equal(got, expected)
    assert want[1].shape == (5, 7) and np.count_nonzero(want[1]) == 5


def test_gather_gradients_that_add_up_cover_fewer_rows_or_go_unchecked_stay():
    several = GATHER_GRADIENT.replace("f32[5, 1]", "f32[5, 2]").replace("i64[5, 1]",
                                                                      "i64[5, 2]")
    fewer_rows = GATHER_GRADIENT.replace("%g: f32[5, 1], %i: i64[5, 1]",
                                         "%g: f32[4, 1], %i: i64[4, 1]").replace(
                                             "%0: f32[5, 1]", "%0: f32[4, 1]")
    other_size = GATHER_GRADIENT.replace("%x: f32[5, 7]", "%x: f32[5, 9]")
    unchecked = GATHER_GRADIENT.replace("  %0: f32[5, 1] = gather(%x, %i, dim=1)\n", "")
    unchecked = unchecked.replace("return (%0, %1)", "return (%1)")
    for text in (several, fewer_rows, other_size, unchecked):
        graph = parse_graph(text)
        assert gather_gradient_as_select(graph) == 0, text
        assert "gather_backward" in _ops(graph)
    # an index the graph says its forward checked (a backward graph's)
    graph = parse_graph(unchecked)
    graph.checked_gathers = frozenset({"1"})
    assert gather_gradient_as_select(graph) == 1 and _ops(graph) == ["eq", "where"]


def test_a_scripted_cross_entropy_step_fuses_its_target_picks_and_matches_eager():
    def f(logits, target):
        loss = ember.nn.functional.cross_entropy(logits, target)
        (g,) = ember.autograd.grad(loss, [logits])
        return loss, g

    rng = np.random.default_rng(1)
    logits = ember.tensor(rng.standard_normal((16, 10)).astype(np.float32), requires_grad=True)
    target = ember.tensor(rng.integers(0, 10, 16))
    scripted = ember.script(f)
    for got, want in zip(scripted(logits, target), f(logits, target)):
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-6,
                                   atol=1e-7)
    program = scripted.specializations[0].program
    eager = [node.op for kind, _, node in program.steps if kind == "eager"]
    assert "gather_backward" not in eager and "scatter_add" not in eager, program.describe()
    bad = ember.tensor(np.full(16, 10))
    with pytest.raises(ember.EmberError, match="index 10 is out of bounds"):
        scripted(logits, bad)  # the forward's gather checks the targets


def test_a_gather_gradient_whose_index_nothing_checks_stays_a_checked_scatter():
    # only the gradient is returned: the forward gather is dead code, so the select, which
    # cannot tell an index out of range, would take the only check away
    def f(x, index, w):
        return ember.autograd.grad((x.gather(1, index) * w).sum(), x)[0]

    rng = np.random.default_rng(3)
    x = ember.tensor(rng.standard_normal((8, 10)).astype(np.float32), requires_grad=True)
    w = ember.tensor(rng.standard_normal((8, 1)).astype(np.float32))
    good = np.ones((8, 1), np.int64)
    scripted = ember.script(f)
    np.testing.assert_array_equal(scripted(x, ember.tensor(good), w).numpy(),
                                  f(x, ember.tensor(good), w).numpy())
    bad = good.copy()
    bad[3, 0] = 10
    with pytest.raises(ember.EmberError, match="index 10 is out of bounds"):
        scripted(x, ember.tensor(bad), w)


def test_a_scripted_models_backward_selects_the_targets_its_forward_checked():
    # ember.script(model): forward and backward are two programs; the backward recomputes
    # the index from the saved targets, which the forward's gather checked
    ember.manual_seed(0)
    model = ember.nn.Linear(12, 10)
    scripted = ember.script(model)
    x = ember.randn(16, 12)
    target = ember.tensor(np.random.default_rng(4).integers(0, 10, 16))

    def grads(forward, target):
        model.zero_grad()
        ember.nn.functional.cross_entropy(forward(x), target).backward()
        return model.weight.grad.numpy().copy()

    want = grads(model, target)
    for _ in range(2):
        np.testing.assert_allclose(grads(scripted, target), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ember.EmberError, match="out of bounds"):
        grads(scripted, ember.tensor(np.full(16, 10)))
