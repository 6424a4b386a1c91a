"""Column sums (codegen/fusion.py): a sum over leading dims joins the CPU kernel of the rows it
sums, which adds each row onto the sums in one serial call; eager's values, no eager sum step,
and the limits (a member never reads its group's sums, large inputs and GEMM-paired sums stay
as they were, the CUDA backend's groups never hold them)."""

import copy

import ember
import numpy as np
import pytest
from ember import nn
from ember.codegen import fusion
from ember.ir.passes import run_pipeline
from ember.runtime.compiled import CompiledProgram
from ember.runtime.program import Program, evaluate_with_kernels


def _graph(fn, *arrays):
    graph = ember.trace(fn, tuple(ember.tensor(a) for a in arrays))
    run_pipeline(graph, evaluate=evaluate_with_kernels)
    return graph


def _both(fn, *arrays):
    graph = _graph(fn, *arrays)
    eager = Program(graph)
    compiled = CompiledProgram(graph, "test")
    want = eager(np, [a.copy() for a in arrays])
    got = compiled(np, [a.copy() for a in arrays])
    return compiled, got, want


def _eager_ops(compiled):
    return [node.op for kind, _, node in compiled.steps if kind == "eager"]


def _serial_kernels(compiled):
    return [step.spec for kind, step, _ in compiled.steps
            if kind == "native" and step.spec.serial]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, dims, keepdim", [
    ((37, 5), (0,), False),
    ((6, 11, 19), (0, 1), False),
    ((6, 11, 19), (0, 1), True),
    ((4, 3, 2, 9), (0,), True),
    ((300, 70), (0,), False),
])
def test_a_sum_over_leading_dims_is_its_producers_column_sums(dtype, shape, dims, keepdim):
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal(shape).astype(dtype) for _ in range(2))

    def fn(x, y):
        z = x * y + 1.5
        return z.sum(dims, keepdim=keepdim), z.tanh()

    compiled, got, want = _both(fn, x, y)
    assert "sum" not in _eager_ops(compiled), compiled.describe()
    assert len(_serial_kernels(compiled)) == 1, compiled.describe()
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * shape[0])
    # the kernel zeroes its sums at each call: a second call gives the same numbers
    again = compiled(np, [x.copy(), y.copy()])
    np.testing.assert_array_equal(again[0], got[0])


def test_a_kernel_with_column_sums_runs_its_rows_in_one_call():
    x = np.random.default_rng(1).standard_normal((512, 256)).astype(np.float32)
    compiled, got, want = _both(lambda x: (x * 3).sum(0), x)
    (kernel,) = [step for kind, step, _ in compiled.steps if kind == "native"]
    assert kernel.spec.serial and not kernel.parallel  # 131072 elements would be shared
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-4)


def test_a_member_never_reads_its_own_groups_column_sums():
    x = np.random.default_rng(2).standard_normal((64, 16)).astype(np.float64)

    def fn(x):
        y = x * 2
        return y * y.sum(0)

    compiled, got, want = _both(fn, x)
    assert compiled.kernel_count == 2, compiled.describe()
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)


def test_large_inputs_keep_the_eager_sum(monkeypatch):
    monkeypatch.setattr(fusion, "COLUMN_SUM_MAX_ELEMENTS", 100)
    x = np.random.default_rng(3).standard_normal((64, 16)).astype(np.float32)
    compiled, got, want = _both(lambda x: (x + 1).sum(0), x)
    assert "sum" in _eager_ops(compiled) and not _serial_kernels(compiled)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)


def test_the_cuda_backends_groups_hold_no_column_sums():
    x = np.ones((8, 4), np.float32)
    graph = _graph(lambda x: (x * 2).sum(0), x)
    units = fusion.fusion_groups(graph)  # columns=False: what the cuda backend asks for
    assert [u.op for u in units if not isinstance(u, fusion.Group)] == ["sum"]
    units = fusion.fusion_groups(graph, columns=True)
    assert all(isinstance(u, fusion.Group) for u in units)


def test_a_linear_layers_bias_gradient_stays_in_its_gemm():
    # dY^T @ X adds up dY's rows as it copies them (compiled.py's pairing): not a kernel's
    ember.manual_seed(0)
    layer = nn.Linear(64, 96)
    x = ember.randn(128, 64)

    def step(x):
        layer.zero_grad()
        (layer(x).relu() ** 2).sum().backward()
        return layer.weight.grad, layer.bias.grad

    scripted = ember.script(step)
    want = [t.numpy().copy() for t in step(x)]
    got = [t.numpy().copy() for t in scripted(x)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    program = scripted.specializations[0].program
    kernels = [getattr(step.kernel, "__name__", "") for kind, step, _ in program.steps
               if kind == "eager"]
    assert "matmul_with_row_sum" in kernels, program.describe()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_scripted_layer_norm_step_takes_its_weight_and_bias_gradients_in_its_kernel(dtype):
    ember.manual_seed(4)
    eager = nn.Sequential(nn.Linear(32, 48), nn.LayerNorm(48), nn.Linear(48, 8)).to(
        getattr(ember, dtype))
    compiled = copy.deepcopy(eager)
    x = ember.tensor(np.random.default_rng(5).standard_normal((6, 20, 32)).astype(dtype))

    def grads(model, forward):
        model.zero_grad()
        (forward(x) ** 2).mean().backward()
        return [p.grad.numpy().copy() for p in model.parameters()]

    scripted = ember.script(compiled)
    want = grads(eager, eager)
    for _ in range(2):
        got = grads(compiled, scripted)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)
    backward = scripted.specializations[0].split.backward
    assert "sum" not in _eager_ops(backward), backward.describe()
    assert _serial_kernels(backward), backward.describe()


def test_a_column_sum_is_never_written_over_what_it_reads():
    # the kernel zeroes its sums and reads them back at every row: neither a planned buffer
    # it reads (b, dead after it) nor a donated input (p, copied into) may hold them
    rng = np.random.default_rng(6)
    x = ember.tensor(rng.standard_normal((64, 16)).astype(np.float32))
    y = ember.tensor(rng.standard_normal((16, 8)).astype(np.float32))

    def planned(x, y):
        b = y.cumsum(1)[:, -1].exp()  # an eager step: the program runs step by step
        return ((x + b) * 2).sum(0) * 0.5 + 1.0

    scripted = ember.script(planned)
    want = planned(x, y).numpy()
    for _ in range(3):
        np.testing.assert_allclose(scripted(x, y).numpy(), want, rtol=1e-5)

    def donated(x, p):
        with ember.no_grad():
            p.copy_(((x + p) * 0.5).sum(0))
        return p

    p0 = rng.standard_normal(16).astype(np.float32)
    p = ember.tensor(p0.copy())
    donated(x, p)
    want = p.numpy().copy()
    scripted = ember.script(donated)
    for _ in range(3):
        p = ember.tensor(p0.copy())
        scripted(x, p)
        np.testing.assert_allclose(p.numpy(), want, rtol=1e-5, atol=1e-5)
