"""The eager ops on a CUDA device (cupy) match the CPU (numpy) results, values and grads."""

import ember
import numpy as np
import pytest
from ember import ops as E

pytestmark = pytest.mark.cuda

UNARY = [
    "neg",
    "abs",
    "sign",
    "exp",
    "log1p",
    "expm1",
    "sin",
    "cos",
    "tanh",
    "sigmoid",
    "relu",
    "erf",
    "floor",
    "ceil",
    "round",
]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "remainder", "pow"]


def _pair(*shape, positive=False):
    x = ember.randn(*shape, dtype=ember.float64)
    if positive:
        x = x.abs() + 0.5
    return x, x.to("cuda")


def _close(cpu, gpu, tol=1e-6):
    np.testing.assert_allclose(cpu.detach().numpy(), gpu.detach().cpu().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("op", UNARY)
def test_unary_matches_cpu(op):
    x, xg = _pair(5, 7)
    x.requires_grad_(True)
    xg = xg.detach().requires_grad_(True)
    out, outg = getattr(E, op)(x), getattr(E, op)(xg)
    _close(out, outg)
    out.sum().backward()
    outg.sum().backward()
    _close(x.grad, xg.grad)


@pytest.mark.parametrize("op", BINARY)
def test_binary_broadcast_matches_cpu(op):
    a, ag = _pair(4, 1, 3, positive=True)
    b, bg = _pair(5, 3, positive=True)
    for t in (a, ag, b, bg):
        t.requires_grad_(True)
    out, outg = getattr(E, op)(a, b), getattr(E, op)(ag, bg)
    _close(out, outg)
    out.sum().backward()
    outg.sum().backward()
    _close(a.grad, ag.grad)
    _close(b.grad, bg.grad)


@pytest.mark.parametrize("reduction", ["sum", "mean", "prod", "amax", "logsumexp", "var"])
def test_reductions_match_cpu(reduction):
    x, xg = _pair(3, 4, 5)
    dims = (0, 2)
    fn = getattr(E, reduction)
    _close(fn(x, dims, keepdim=True), fn(xg, dims, keepdim=True))


def test_matmul_conv_pool_indexing_match_cpu():
    a, ag = _pair(2, 3, 4)
    b, bg = _pair(4, 5)
    _close(a @ b, ag @ bg)
    x, xg = _pair(2, 4, 9, 9)
    w, wg = _pair(6, 2, 3, 3)
    _close(
        E.conv2d(x, w, stride=2, padding=1, groups=2),
        E.conv2d(xg, wg, stride=2, padding=1, groups=2),
    )
    _close(E.max_pool2d(x, 3, 2, 1), E.max_pool2d(xg, 3, 2, 1))
    _close(E.avg_pool2d(x, 2), E.avg_pool2d(xg, 2))
    idx = ember.tensor([0, 2, 2])
    _close(a[:, idx], ag[:, idx.to("cuda")])
    _close(a[a > 0], ag[ag > 0])


def test_mixing_devices_is_an_error():
    x, xg = _pair(3)
    with pytest.raises(ember.EmberError, match="same device"):
        x + xg


def test_numpy_refuses_cuda_tensor():
    _, xg = _pair(3)
    with pytest.raises(TypeError, match="cpu"):
        xg.numpy()
