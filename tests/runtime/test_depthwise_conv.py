"""Depthwise conv2d (groups == channels, one filter each) on its native kernels
(codegen/llvm/depthwise.py): forward, input and weight gradients against a tap-by-tap numpy
reference and against the grouped GEMM path they replace; and the two layouts of the
weight gradient's GEMM."""

from __future__ import annotations

import ember
import numpy as np
import pytest
from ember.runtime.kernels import conv


def _reference(x, w, stride, padding, dilation):
    n, c, h, wd = x.shape
    _, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            tap = xp[:, :, r0 : r0 + stride[0] * (oh - 1) + 1 : stride[0],
                     c0 : c0 + stride[1] * (ow - 1) + 1 : stride[1]]
            out += w[None, :, 0, i, j, None, None] * tap
    return out


_GEOMETRIES = [((3, 3), (1, 1), (1, 1), (1, 1)),
               ((7, 7), (1, 1), (3, 3), (1, 1)),
               ((5, 3), (2, 1), (2, 0), (1, 1)),
               ((3, 3), (2, 2), (1, 1), (1, 1)),
               ((3, 3), (1, 1), (2, 2), (2, 2)),
               ((2, 4), (1, 3), (0, 1), (2, 1))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel,stride,padding,dilation", _GEOMETRIES)
def test_depthwise_conv_and_its_gradients_match_the_reference(dtype, kernel, stride, padding,
                                                               dilation, monkeypatch):
    rng = np.random.default_rng(sum(kernel) + sum(stride) + sum(padding))
    x = rng.standard_normal((2, 5, 11, 9))
    w = rng.standard_normal((5, 1, *kernel))
    want = _reference(x, w, stride, padding, dilation)
    g = rng.standard_normal(want.shape)
    tol = 2e-5 if dtype == "float32" else 1e-12
    results = []
    for native in (True, False):
        if not native:  # the grouped GEMM path the native kernels replace
            monkeypatch.setattr(conv, "_depthwise", lambda *args: False)
        xt = ember.tensor(x, dtype=getattr(ember, dtype), requires_grad=True)
        wt = ember.tensor(w, dtype=getattr(ember, dtype), requires_grad=True)
        out = ember.nn.functional.conv2d(xt, wt, stride=stride, padding=padding,
                                         dilation=dilation, groups=5)
        np.testing.assert_allclose(out.detach().numpy(), want, rtol=tol, atol=tol)
        out.backward(ember.tensor(g, dtype=out.dtype))
        results.append((xt.grad.numpy(), wt.grad.numpy()))
    (gx, gw), (gx_gemm, gw_gemm) = results
    np.testing.assert_allclose(gx, gx_gemm, rtol=tol, atol=tol)
    np.testing.assert_allclose(gw, gw_gemm, rtol=tol, atol=10 * tol)
    assert gx.dtype == np.dtype(dtype) and gw.dtype == np.dtype(dtype)


def test_depthwise_gradients_pass_gradcheck():
    x = ember.randn(2, 3, 6, 5, dtype=ember.float64, requires_grad=True)
    w = ember.randn(3, 1, 3, 2, dtype=ember.float64, requires_grad=True)
    for stride, padding, dilation in (((1, 1), (1, 1), (1, 1)), ((2, 1), (0, 1), (1, 2))):
        assert ember.autograd.gradcheck(
            lambda a, b: ember.nn.functional.conv2d(a, b, stride=stride, padding=padding,
                                                    dilation=dilation, groups=3), (x, w))


def test_a_depthwise_layer_takes_the_native_kernels_and_others_do_not(monkeypatch):
    calls = []
    real = conv._depthwise_conv
    monkeypatch.setattr(conv, "_depthwise_conv", lambda *a: calls.append(1) or real(*a))
    layer = ember.nn.Conv2d(8, 8, 3, padding=1, groups=8)
    layer(ember.randn(2, 8, 6, 6, requires_grad=True)).sum().backward()
    assert len(calls) == 2  # the forward and the input gradient
    calls.clear()
    ember.nn.Conv2d(8, 16, 3, padding=1, groups=8)(ember.randn(2, 8, 6, 6))  # two per channel
    ember.nn.Conv2d(8, 8, 3, padding=1, groups=4)(ember.randn(2, 8, 6, 6))
    ember.nn.Conv2d(8, 8, 3, padding=1, groups=8).double()(
        ember.randn(2, 8, 6, 6, dtype=ember.float64))
    assert len(calls) == 1  # only the last


@pytest.mark.parametrize("groups", [1, 2])
def test_weight_gradient_direct_and_transposed_products_agree(groups, monkeypatch):
    # the weight gradient's GEMM writes the weight's layout directly for a short inner
    # dimension (conv.DIRECT_WEIGHT_GRADIENT_MAX), else the transposed product and a copy
    rng = np.random.default_rng(groups)
    x = rng.standard_normal((2, 4, 6, 5))
    g = rng.standard_normal((2, 6, 6, 5))
    results = []
    for limit in (10**9, 0):
        monkeypatch.setattr(conv, "DIRECT_WEIGHT_GRADIENT_MAX", limit)
        results.append(conv._conv2d_backward_weight(np, x, g, (6, 4 // groups, 3, 3), (1, 1),
                                                    (1, 1), (1, 1), groups))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-12)
    want = np.zeros((6, 4 // groups, 3, 3))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    per = 6 // groups
    for o in range(6):
        for c in range(4 // groups):
            ci = (o // per) * (4 // groups) + c
            for i in range(3):
                for j in range(3):
                    want[o, c, i, j] = (g[:, o] * xp[:, ci, i:i + 6, j:j + 5]).sum()
    np.testing.assert_allclose(results[0], want, rtol=1e-12, atol=1e-12)
