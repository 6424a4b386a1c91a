"""An eager composite's compiled call of one result (softmax, log_softmax) that autograd
records runs the split's forward and backward node directly (compiled_autograd's
one_result_call): the values, gradients and autograd graph are run_split's."""

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import autograd
from ember._tensor.ops import nn as ops_nn


@pytest.fixture(autouse=True)
def fresh_composites(monkeypatch):
    """The composites' scripts as a new process has them: the process-wide ones may have
    made their sizes dynamic already (a new size then replays op by op)."""
    for composite in (ops_nn._SOFTMAX, ops_nn._LOG_SOFTMAX):
        monkeypatch.setattr(composite, "_script", None)
        monkeypatch.setattr(composite, "_seen", 0)


def _specialization(composite, x):
    script = composite._script
    facts = next(k for k in script._by_facts if k[1][0] == tuple(x.shape))
    return script._by_facts[facts]


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_repeated_calls_take_the_short_call_and_match_numpy(name, dtype):
    rng = np.random.default_rng(7)
    data = rng.standard_normal((6, 37))
    weights = rng.standard_normal((6, 37))
    fn = getattr(F, name)
    for call in range(5):  # warm-up calls op by op, then compiled, then the short call
        x = ember.tensor(data, dtype=dtype, requires_grad=True)
        y = fn(x, -1)
        (y * ember.tensor(weights, dtype=dtype)).sum().backward()
        shifted = data - data.max(-1, keepdims=True)
        p = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
        if name == "softmax":
            want = p
            grad = p * (weights - (weights * p).sum(-1, keepdims=True))
        else:
            want = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
            grad = weights - p * weights.sum(-1, keepdims=True)
        tol = 1e-5 if dtype == ember.float32 else 1e-12
        np.testing.assert_allclose(y.detach().numpy(), want, rtol=tol, atol=tol)
        np.testing.assert_allclose(x.grad.numpy(), grad, rtol=tol * 10, atol=tol * 10)
        assert y.requires_grad and y.grad_fn is not None and y.dtype == dtype
    composite = ops_nn._SOFTMAX if name == "softmax" else ops_nn._LOG_SOFTMAX
    sp = _specialization(composite, x)
    assert callable(sp._one_result)


def test_the_short_call_keeps_create_graph():
    x = ember.randn(4, 40, dtype=ember.float64, requires_grad=True)
    for _ in range(4):
        y = F.softmax(x, -1)
    assert y.grad_fn.name() == "CompiledFunctionBackward"
    assert callable(_specialization(ops_nn._SOFTMAX, x)._one_result)
    (g,) = autograd.grad((y[:, 0] ** 2).sum(), (x,), create_graph=True)
    (gg,) = autograd.grad(g.sum(), (x,))  # a second order: the forward recomputed
    x64 = x.detach().numpy()

    def first(a):
        e = np.exp(a - a.max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
        w = np.zeros_like(p)
        w[:, 0] = 2 * p[:, 0]
        return p * (w - (w * p).sum(-1, keepdims=True))

    eps = 1e-6
    numeric = np.zeros_like(x64)
    for i in range(x64.shape[0]):
        for j in range(x64.shape[1]):
            d = np.zeros_like(x64)
            d[i, j] = eps
            numeric[i, j] = (first(x64 + d).sum() - first(x64 - d).sum()) / (2 * eps)
    np.testing.assert_allclose(gg.numpy(), numeric, rtol=1e-5, atol=1e-7)
