"""Recomputation in split scripted calls (tracer/remat.py): the backward recomputes elementwise
chains from the call's inputs and small values instead of reading full-size intermediates, with
the values and gradients of op-by-op eager."""

from __future__ import annotations

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember.nn import _activations


def _saved(composite_or_script, arrays):
    """The arrays the forward program returns besides the results, for the last
    specialization of a composite's or a script's split."""
    script = getattr(composite_or_script, "_script", composite_or_script)
    split = script.specializations[-1].split
    assert split is not None
    outs = split.forward(np, arrays)
    return outs[split.n_outputs:]


def _op_by_op(monkeypatch):
    monkeypatch.setattr(ember._tensor.composites, "MIN_ELEMENTS", 1 << 40)


def _fresh(composite, monkeypatch):
    """The composite with a script of its own for this test: _saved runs the last
    specialization's forward on this test's arrays, and other tests' calls (other shapes,
    dynamic sizes) would have added theirs after it."""
    monkeypatch.setattr(composite, "_script", None)
    monkeypatch.setattr(composite, "_seen", 0)


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_gelu_saves_its_input_and_erf_term_and_matches_op_by_op(dtype, monkeypatch):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4, 16, 64))
    grad = ember.tensor(rng.standard_normal((4, 16, 64)), dtype=dtype)
    x = ember.tensor(data, dtype=dtype, requires_grad=True)
    _fresh(_activations._GELU, monkeypatch)
    for _ in range(4):
        y = F.gelu(x)
    assert y.grad_fn.name() == "CompiledFunctionBackward"
    saved = _saved(_activations._GELU, [x._data])
    # the input itself and the erf term (costlier to recompute than to read); x / 2 and
    # x / sqrt(2) are recomputed from the input
    assert len(saved) == 2 and any(a is x._data for a in saved)
    (gx,) = ember.autograd.grad(y, x, grad)
    _op_by_op(monkeypatch)
    x2 = ember.tensor(data, dtype=dtype, requires_grad=True)
    y2 = F.gelu(x2)
    assert y2.grad_fn.name() != "CompiledFunctionBackward"
    (gx2,) = ember.autograd.grad(y2, x2, grad)
    tol = 1e-5 if dtype is ember.float32 else 1e-12
    np.testing.assert_allclose(y.detach().numpy(), y2.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(gx.numpy(), gx2.numpy(), rtol=tol, atol=tol)


def test_layer_norm_saves_row_statistics_not_the_normalized_input(monkeypatch):
    rng = np.random.default_rng(1)
    shape = (4, 16, 32)
    x = ember.tensor(rng.standard_normal(shape), requires_grad=True)
    w = ember.tensor(rng.standard_normal(32), requires_grad=True)
    b = ember.tensor(rng.standard_normal(32), requires_grad=True)
    grad = ember.tensor(rng.standard_normal(shape))
    _fresh(F._LAYER_NORM, monkeypatch)
    for _ in range(4):
        y = F.layer_norm(x, (32,), w, b)
    saved = _saved(F._LAYER_NORM, [x._data, w._data, b._data])
    inputs = (x._data, w._data, b._data)
    full = [a for a in saved if a.shape == shape and not any(a is i for i in inputs)]
    assert not full, [a.shape for a in saved]
    got = ember.autograd.grad(y, (x, w, b), grad)
    _op_by_op(monkeypatch)
    want = ember.autograd.grad(F.layer_norm(x, (32,), w, b), (x, w, b), grad)
    for a, c in zip(got, want):
        np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-5, atol=1e-5)


def test_a_scripted_chain_recomputes_and_matches_eager():
    def f(x, w):
        h = (x * w) * 0.5 + x * x - w / 3  # arithmetic: recomputed
        return (h * h).sum(-1).exp().mean()

    script = ember.script(f)
    rng = np.random.default_rng(2)
    for call in range(3):
        xd, wd = rng.standard_normal((8, 32)), rng.standard_normal((8, 32))
        x, w = (ember.tensor(a, requires_grad=True) for a in (xd, wd))
        got = ember.autograd.grad(script(x, w), (x, w))
        x2, w2 = (ember.tensor(a, requires_grad=True) for a in (xd, wd))
        want = ember.autograd.grad(f(x2, w2), (x2, w2))
        for a, c in zip(got, want):
            np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-10, atol=1e-12)
    saved = _saved(script, [xd, wd])
    # the chain's full-size values come back from x and w: what stays saved is x, w and the
    # per-row sums (the exp's input), never a (8, 32) intermediate
    assert all(a.shape != (8, 32) or a is xd or a is wd for a in saved), \
        [a.shape for a in saved]


def test_dropout_masks_are_saved_not_drawn_again():
    def f(x):
        return F.dropout(x.tanh(), 0.5, training=True).sin().sum()

    script = ember.script(f)
    data = np.random.default_rng(3).standard_normal((16, 16))
    for call in range(3):
        ember.manual_seed(call)
        x = ember.tensor(data, requires_grad=True)
        (got,) = ember.autograd.grad(script(x), x)
        ember.manual_seed(call)
        x2 = ember.tensor(data, requires_grad=True)
        (want,) = ember.autograd.grad(f(x2), x2)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


def test_an_input_written_by_the_call_is_not_read_again():
    """A buffer the call updates in place: the backward must use the value the forward read,
    never the written one."""

    class Scaled(ember.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("scale", ember.ones(8, dtype=ember.float64))

        def forward(self, x):
            y = (x + self.scale).sin()  # sin keeps x + scale, a chain of the buffer
            with ember.no_grad():
                self.scale.mul_(2.0)
            return y

    eager, scripted = Scaled(), Scaled()
    model = ember.script(scripted)
    data = np.random.default_rng(4).standard_normal((4, 8))
    for _ in range(3):
        x = ember.tensor(data, requires_grad=True)
        (got,) = ember.autograd.grad(model(x).sum(), x)
        x2 = ember.tensor(data, requires_grad=True)
        (want,) = ember.autograd.grad(eager(x2).sum(), x2)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(scripted.scale.numpy(), eager.scale.numpy())


def _mlp_split(hidden=64):
    ember.manual_seed(0)
    model = ember.nn.Sequential(ember.nn.Linear(16, hidden), ember.nn.GELU(),
                                ember.nn.Linear(hidden, 16))
    scripted = ember.script(model)
    x = ember.randn(8, 16)
    for _ in range(3):
        scripted(x).square().sum().backward()
    return model, scripted, x


def test_gelu_after_a_linear_saves_the_linear_output_not_its_halves():
    """x / 2 and x / sqrt(2) both come back from x, the linear's output, which the forward
    stores anyway: the forward saves x, the erf term and GELU's output (the next linear's
    input), and no longer x / 2 and x / sqrt(2)."""
    model, scripted, x = _mlp_split()
    split = scripted.specializations[-1].split
    params = [p._data for p in model.parameters()]
    saved = _saved(scripted, [x._data, *params])
    hidden = [a for a in saved if a.shape == (8, 64)]
    assert len(hidden) == 3, [a.shape for a in saved]
    first = model[0]
    linear_out = x._data @ first.weight._data.T + first.bias._data
    assert any(np.allclose(a, linear_out, rtol=1e-5, atol=1e-6) for a in hidden)
    assert split is not None
    got = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    model(x).square().sum().backward()
    for a, p in zip(got, model.parameters()):
        np.testing.assert_allclose(a, 3 * p.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_a_value_a_linear_reads_is_saved_not_recomputed():
    """x * 2 is the linear's input: the forward stores it for its GEMM whatever the backward
    reads, and the weight's gradient is a GEMM of it again, so the backward reads it rather
    than computing it once more from x."""
    def f(x, w):
        return ember.nn.functional.linear(x * 2.0, w).sin().sum()

    script = ember.script(f)
    rng = np.random.default_rng(5)
    xd, wd = rng.standard_normal((8, 12)), rng.standard_normal((6, 12))
    for _ in range(3):
        x, w = (ember.tensor(a, requires_grad=True) for a in (xd, wd))
        got = ember.autograd.grad(script(x, w), (x, w))
    saved = _saved(script, [xd, wd])
    assert any(a.shape == (8, 12) and np.allclose(a, xd * 2.0) for a in saved), \
        [a.shape for a in saved]
    x2, w2 = (ember.tensor(a, requires_grad=True) for a in (xd, wd))
    want = ember.autograd.grad(f(x2, w2), (x2, w2))
    for a, c in zip(got, want):
        np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-12, atol=1e-12)
