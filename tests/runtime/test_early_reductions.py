"""A compiled program runs an eager sum right after the step that writes what it reads (while
that is still in cache), not where the graph lists it, and computes what the eager program
computes."""

import ember
import numpy as np
from ember.ir.passes import run_pipeline
from ember.runtime.compiled import CompiledProgram
from ember.runtime.program import Program, evaluate_with_kernels


def _bias_gradient_after_products(grad, x, w):
    # a linear's backward as a graph lists it: the two products, then the bias gradient
    g = grad * 2.0 + 1.0
    dx = g @ w
    dw = g.transpose(0, 1) @ x
    db = g.sum(0)
    return dx, dw, db


def test_a_sum_runs_right_after_the_kernel_that_writes_its_input():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(64, 16), (64, 8), (16, 8)]]
    graph = ember.trace(_bias_gradient_after_products, tuple(ember.tensor(a) for a in arrays))
    run_pipeline(graph, evaluate=evaluate_with_kernels)
    eager = Program(graph)
    program = CompiledProgram(graph, "early")
    order = [("kernel" if kind == "native" else node.op) for kind, _, node in program.steps]
    assert order.index("sum") == order.index("kernel") + 1, order
    assert order.index("sum") < order.index("matmul"), order
    for seed in range(3):
        arrays = [np.random.default_rng(seed).standard_normal(a.shape).astype(np.float32)
                  for a in arrays]
        got = program(np, [a.copy() for a in arrays])
        want = eager(np, [a.copy() for a in arrays])
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
