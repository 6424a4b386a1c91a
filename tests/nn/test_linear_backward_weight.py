"""A linear layer's weight and bias gradients in eager backward: one linear_backward_weight op
(g^T @ x and g.sum(0) from one packed GEMM that adds g's columns up as it copies them), equal
to numpy's; double backward and traced backward keep the product and the sum as they were."""

import ember
import numpy as np
import pytest
from ember import EmberError
from ember.runtime.kernels import KERNELS

F = ember.nn.functional


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, out, inp", [(512, 256, 64), (512, 64, 256), (37, 5, 3),
                                         (1024, 128, 128), (8, 300, 7)])
def test_the_kernel_gives_the_weight_and_bias_gradients(dtype, n, out, inp):
    rng = np.random.default_rng(n + out)
    g = rng.standard_normal((n, out)).astype(dtype)
    x = rng.standard_normal((n, inp)).astype(dtype)
    gw, gb = KERNELS["linear_backward_weight"](np, g, x)
    assert gw.shape == (out, inp) and gb.shape == (out,) and gw.dtype == gb.dtype == dtype
    tol = 2e-4 if dtype == np.float32 else 1e-11
    exact = g.astype(np.float64)
    np.testing.assert_allclose(gw, exact.T @ x.astype(np.float64), rtol=tol, atol=tol * n)
    np.testing.assert_allclose(gb, exact.sum(0), rtol=tol, atol=tol * n)


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
@pytest.mark.parametrize("lead", [(512,), (32, 16), (3,)])
def test_eager_backward_of_a_linear_with_a_bias_takes_the_op(dtype, lead, dispatched_ops):
    rng = np.random.default_rng(len(lead))
    xd = rng.standard_normal((*lead, 64))
    wd, bd = rng.standard_normal((256, 64)), rng.standard_normal(256)
    gd = rng.standard_normal((*lead, 256))
    x, w, b = (ember.tensor(a, dtype=dtype, requires_grad=True) for a in (xd, wd, bd))

    def run():
        F.linear(x, w, b).backward(ember.tensor(gd, dtype=dtype))

    assert dispatched_ops(run).count("linear_backward_weight") == 1
    g2, x2 = gd.reshape(-1, 256), xd.reshape(-1, 64)
    tol = 1e-4 if dtype is ember.float32 else 1e-11
    np.testing.assert_allclose(w.grad.numpy(), g2.T @ x2, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(b.grad.numpy(), g2.sum(0), rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(x.grad.numpy(), gd @ wd, rtol=tol, atol=tol * 10)


def test_without_a_bias_or_its_gradient_the_product_stays(dispatched_ops):
    x = ember.randn(16, 8, requires_grad=True)
    w = ember.randn(4, 8, requires_grad=True)
    b = ember.randn(4)  # no gradient wanted
    for bias in (None, b):
        seen = dispatched_ops(lambda: F.linear(x, w, bias).sum().backward())
        assert "linear_backward_weight" not in seen and "matmul" in seen


def test_double_backward_keeps_the_differentiable_formula():
    rng = np.random.default_rng(3)
    x, w, b = (ember.tensor(rng.standard_normal(s), requires_grad=True)
               for s in ((6, 5), (4, 5), (4,)))
    y = F.linear(x, w, b).square().sum()
    gw, gb = ember.autograd.grad(y, (w, b), create_graph=True)
    (ggx,) = ember.autograd.grad(gw.sum() + gb.sum(), x)
    xd, wd, bd = (t.detach().numpy() for t in (x, w, b))
    # d/dx of sum(gW) + sum(gB), with gW = 2 z^T x, gB = 2 z.sum(0), z = x w^T + b
    z = xd @ wd.T + bd
    ones_w, ones_b = np.ones_like(wd), np.ones_like(bd)
    want = 2 * (z @ ones_w) + 2 * (xd @ ones_w.T + ones_b) @ wd
    np.testing.assert_allclose(ggx.numpy(), want, rtol=1e-10)


def test_a_traced_backward_keeps_the_product_and_the_sum():
    """ember.script(model): the compiled program pairs the sum with its GEMM itself."""
    ember.manual_seed(0)
    model = ember.nn.Sequential(ember.nn.Linear(16, 32), ember.nn.ReLU(), ember.nn.Linear(32, 8))
    scripted = ember.script(model)
    x = ember.randn(64, 16)
    for _ in range(3):
        scripted(x).square().sum().backward()
    backward = scripted.specializations[-1].split.backward
    ops = [node.op for kind, _, node in backward.steps if kind == "eager"]
    assert "linear_backward_weight" not in ops, ops
    got = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    model(x).square().sum().backward()
    for a, p in zip(got, model.parameters()):
        np.testing.assert_allclose(a, 3 * p.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_mismatched_operands_are_refused():
    from ember._tensor import dispatch

    g, x = ember.randn(5, 3), ember.randn(4, 2)
    with pytest.raises(EmberError, match="same number of rows"):
        dispatch("linear_backward_weight", (g, x))
    with pytest.raises(EmberError, match="linear_backward_weight"):
        dispatch("linear_backward_weight", (ember.randn(4, 3), ember.randn(4, 2).double()))
