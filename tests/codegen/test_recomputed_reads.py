"""A value computed from a graph's inputs alone is recomputed by every kernel that reads it
(codegen/fusion.py's Group.inline, codegen/lower.py): no kernel stores it for such readers,
even where its own group was merged into a kernel that runs anyway, and the results equal the
step-by-step program's."""

import ember
import numpy as np
import pytest
from ember.ir.passes import run_pipeline
from ember.runtime.compiled import CompiledProgram
from ember.runtime.program import Program, evaluate_with_kernels


def _compiled(fn, *arrays):
    graph = ember.trace(fn, tuple(ember.tensor(a) for a in arrays))
    run_pipeline(graph, evaluate=evaluate_with_kernels)
    return CompiledProgram(graph, "test"), Program(graph)


def _unread_outputs(compiled):
    """Kernel outputs no later step reads and the program does not return."""
    read = set(compiled.outputs)
    for kind, step, _ in compiled.steps:
        if kind == "native":
            read.update(step.inputs)
        else:
            read.update(a.slot for a in step.args if a.slot is not None)
    return [(step.spec.name, out.shape) for kind, step, _ in compiled.steps if kind == "native"
            for out in step.outputs if out.slot not in read]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_recomputed_value_is_not_stored_by_a_merged_kernel(dtype):
    rng = np.random.default_rng(0)
    x, w = (rng.standard_normal((24, 24)).astype(dtype) for _ in range(2))

    def fn(x, w):
        p = (x * 0.5).exp()  # from the input alone: recomputed where it is read
        q = x + 1.0  # the same loop space, read by a matmul: stored
        y = q @ w
        return y * p

    compiled, eager = _compiled(fn, x, w)
    assert _unread_outputs(compiled) == [], compiled.describe()
    stored = [out.shape for kind, step, _ in compiled.steps if kind == "native"
              for out in step.outputs]
    assert stored.count((24, 24)) == 2, compiled.describe()  # q, and the result
    got = compiled(np, [x.copy(), w.copy()])
    want = eager(np, [x.copy(), w.copy()])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6 if dtype == np.float32 else 1e-13)


def test_a_recomputable_value_the_graph_returns_is_still_stored():
    rng = np.random.default_rng(1)
    x, w = (rng.standard_normal((16, 16)) for _ in range(2))

    def fn(x, w):
        p = (x * 0.5).exp()
        return (x + 1.0) @ w * p, p

    compiled, eager = _compiled(fn, x, w)
    got = compiled(np, [x.copy(), w.copy()])
    want = eager(np, [x.copy(), w.copy()])
    np.testing.assert_allclose(got[1], np.exp(x * 0.5), rtol=1e-13)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_a_scripted_training_step_stores_nothing_its_backward_recomputes():
    """The backward of stacked GELU blocks: each block's factors of the saved values alone
    (exp(-x^2 / 2)) were computed and stored by the first kernel of their loop space."""
    ember.manual_seed(0)
    layers = []
    for _ in range(3):
        layers += [ember.nn.Linear(16, 64), ember.nn.GELU(), ember.nn.Linear(64, 16)]
    model = ember.nn.Sequential(*layers)
    scripted = ember.script(model)
    x = ember.randn(8, 16)
    for _ in range(3):
        scripted(x).square().sum().backward()
    split = scripted.specializations[-1].split
    assert split is not None
    assert _unread_outputs(split.backward) == [], split.backward.describe()
    got = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    model(x).square().sum().backward()
    for a, p in zip(got, model.parameters()):
        np.testing.assert_allclose(a, 3 * p.grad.numpy(), rtol=1e-4, atol=1e-5)
