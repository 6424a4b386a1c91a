"""A scripted call's compiled backward reads saved values: an input or a result it saved, changed
in place between the call and backward(), fails backward as eager autograd's does, instead of
giving the gradient of the new values."""

import ember
import numpy as np
import pytest


def _product_sum(x, w):
    return (x * w).sum()


def _exp(x):
    return ember.exp(x)


def _sum_and_square(x, w):
    return (x + w).sum() + (x * x).sum()


def _tanh_twice(x):
    return ember.tanh(x) * 2.0


def _warm(fn, *shapes):
    """fn scripted, called twice (traced, then its compiled split)."""
    scripted = ember.script(fn)
    for _ in range(2):
        scripted(ember.randn(*shapes[0], requires_grad=True),
                 *(ember.randn(*s) for s in shapes[1:]))
    return scripted


@pytest.mark.parametrize("scripted", [False, True])
def test_saved_input_changed_in_place_fails_backward(scripted):
    f = _warm(_product_sum, (4,), (4,)) if scripted else _product_sum
    x = ember.randn(4, requires_grad=True)
    w = ember.randn(4)
    y = f(x, w)
    w.add_(1.0)
    with pytest.raises(ember.EmberError, match="modified by an inplace operation"):
        y.backward()


def test_saved_input_each_call_checked():
    scripted = ember.script(_product_sum)
    for _ in range(3):
        x, w = ember.randn(4, requires_grad=True), ember.randn(4)
        y = scripted(x, w)
        w.mul_(2.0)
        with pytest.raises(ember.EmberError, match="modified by an inplace operation"):
            y.backward()
    x, w = ember.randn(4, requires_grad=True), ember.randn(4)
    scripted(x, w).backward()  # unchanged: the gradient is w
    np.testing.assert_array_equal(x.grad.numpy(), w.numpy())


@pytest.mark.parametrize("scripted", [False, True])
def test_saved_result_changed_in_place_fails_backward(scripted):
    f = _warm(_exp, (4,)) if scripted else _exp
    x = ember.randn(4, requires_grad=True)
    y = f(x)
    y.add_(1.0)
    with pytest.raises(ember.EmberError, match="modified by an inplace operation"):
        y.sum().backward()


def test_eager_composite_result_changed_in_place():
    # eager softmax saves its inputs, not its result: a change of the result in place is
    # allowed, on the op-by-op calls and on the compiled composite's (from the fourth)
    g = np.arange(16.0)
    names = set()
    for _ in range(6):
        x = ember.randn(8, 16, requires_grad=True)
        p = ember.softmax(x, dim=-1)
        names.add(p.grad_fn.name())
        p.mul_(2.0)
        (p * ember.tensor(g, dtype=ember.float32)).sum().backward()
        xs = x.detach().numpy().astype(np.float64)
        e = np.exp(xs - xs.max(-1, keepdims=True))
        s = e / e.sum(-1, keepdims=True)
        expected = s * (2.0 * g - (s * 2.0 * g).sum(-1, keepdims=True))
        np.testing.assert_allclose(x.grad.numpy(), expected, atol=1e-5)
    assert "CompiledFunctionBackward" in names


def test_changes_the_backward_does_not_read_are_allowed():
    scripted = ember.script(_sum_and_square)
    for _ in range(3):
        x, w = ember.randn(4, requires_grad=True), ember.randn(4)
        y = scripted(x, w)
        w.add_(1.0)  # read by the forward only
        y.backward()
        np.testing.assert_allclose(x.grad.numpy(), 1.0 + 2.0 * x.detach().numpy(), rtol=1e-6)
    scripted = ember.script(_tanh_twice)
    for _ in range(3):
        x = ember.randn(4, requires_grad=True)
        y = scripted(x)
        y.add_(1.0)  # tanh's output is saved, not y
        y.sum().backward()
        t = np.tanh(x.detach().numpy())
        np.testing.assert_allclose(x.grad.numpy(), 2.0 * (1.0 - t * t), rtol=1e-5)
