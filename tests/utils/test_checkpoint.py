"""ember.utils.checkpoint: gradients through recomputed segments equal the plain ones."""

from __future__ import annotations

import ember
import ember.nn as nn
import numpy as np
import pytest
from ember.utils.checkpoint import checkpoint, checkpoint_sequential


def _block(width=8):
    return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))


def _grads(model, x):
    return [p.grad.numpy().copy() for p in model.parameters()] + (
        [x.grad.numpy().copy()] if x.grad is not None else [])


@pytest.mark.parametrize("reentrant", [None, True, False])
@pytest.mark.parametrize("input_requires_grad", [True, False])
def test_checkpointed_blocks_give_the_plain_gradients(reentrant, input_requires_grad):
    ember.manual_seed(0)
    blocks = nn.ModuleList([_block() for _ in range(3)])
    data = ember.randn(4, 8)
    results = []
    for use_checkpoint in (False, True):
        blocks.zero_grad()
        x = data.clone().requires_grad_(input_requires_grad)
        h = x
        for b in blocks:
            h = checkpoint(b, h, use_reentrant=reentrant) if use_checkpoint else b(h)
        loss = (h ** 2).sum()
        loss.backward()
        results.append((loss.item(), _grads(blocks, x)))
    (l0, g0), (l1, g1) = results
    assert l0 == l1 and len(g0) == len(g1)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_the_segment_keeps_no_graph_and_runs_again_in_the_backward():
    calls = []
    lin = nn.Linear(3, 3)

    def segment(x):
        calls.append(ember.is_grad_enabled())
        return lin(x).tanh()

    y = checkpoint(segment, ember.randn(2, 3, requires_grad=True), use_reentrant=False)
    assert y.grad_fn.name() == "CheckpointFunctionBackward"
    assert y.grad_fn.next_functions  # the argument and the linear's two parameters
    assert len(y.grad_fn.next_functions) == 3
    y.sum().backward()
    assert calls == [True, True]
    with pytest.raises(ember.EmberError, match="second time"):
        y.sum().backward()


def test_dropout_draws_the_same_mask_when_recomputed():
    ember.manual_seed(1)
    lin = nn.Linear(16, 16)
    drop = nn.Dropout(0.5)
    x = ember.randn(8, 16, requires_grad=True)
    ember.manual_seed(5)
    y_plain = drop(lin(x))
    y_plain.sum().backward()
    plain = (x.grad.numpy().copy(), lin.weight.grad.numpy().copy())
    x.grad = None
    lin.zero_grad()
    ember.manual_seed(5)
    y = checkpoint(lambda t: drop(lin(t)), x, use_reentrant=False)
    after = ember.rand(3)  # the stream goes on from after the forward's draw
    y.sum().backward()
    np.testing.assert_array_equal(y.detach().numpy(), y_plain.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), plain[0], rtol=1e-6)
    np.testing.assert_allclose(lin.weight.grad.numpy(), plain[1], rtol=1e-6)
    ember.manual_seed(5)
    drop(lin(x))
    np.testing.assert_array_equal(ember.rand(3).numpy(), after.numpy())


def test_autograd_grad_and_double_backward_go_through_a_checkpoint():
    x = ember.randn(5, dtype=ember.float64, requires_grad=True)
    w = ember.randn(5, dtype=ember.float64, requires_grad=True)

    def f(t):
        return (t * w).sin()

    (gx,) = ember.autograd.grad(checkpoint(f, x).sum(), [x], create_graph=True)
    np.testing.assert_allclose(gx.detach().numpy(), (w * (x * w).cos()).detach().numpy())
    (ggx,) = ember.autograd.grad(gx.sum(), [x])
    np.testing.assert_allclose(ggx.numpy(), (-(w ** 2) * (x * w).sin()).detach().numpy())
    assert ember.autograd.gradcheck(lambda a, b: checkpoint(lambda t: (t * b).sin(), a),
                                    (x, w))


def test_checkpoint_sequential_equals_the_sequential():
    ember.manual_seed(2)
    model = nn.Sequential(*[nn.Linear(6, 6) for _ in range(5)])
    x = ember.randn(3, 6, requires_grad=True)
    model(x).pow(2).sum().backward()
    plain = _grads(model, x)
    model.zero_grad()
    x.grad = None
    out = checkpoint_sequential(model, 2, x, use_reentrant=False)
    out.pow(2).sum().backward()
    for a, b in zip(plain, _grads(model, x)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ember.EmberError, match="segments must be a positive integer"):
        checkpoint_sequential(model, 0, x)


def test_under_no_grad_the_function_just_runs_and_kwargs_and_tuples_pass():
    lin = nn.Linear(2, 2)
    with ember.no_grad():
        y = checkpoint(lin, ember.ones(1, 2))
    assert y.grad_fn is None
    a, b = checkpoint(lambda t, scale=1.0: (lin(t) * scale, t.shape[0]), ember.ones(1, 2),
                      scale=2.0, use_reentrant=False)
    assert b == 1
    a.sum().backward()
    np.testing.assert_allclose(lin.bias.grad.numpy(), [2.0, 2.0])


def test_an_input_changed_in_place_before_the_backward_is_refused():
    lin = nn.Linear(2, 2)
    x = ember.ones(1, 2, requires_grad=True) * 1
    y = checkpoint(lin, x, use_reentrant=False)
    x.mul_(3)
    with pytest.raises(ember.EmberError, match="modified in place"):
        y.sum().backward()


def test_a_scripted_step_with_checkpoints_equals_eager():
    ember.manual_seed(3)
    blocks = nn.ModuleList([_block() for _ in range(2)])
    opt = ember.optim.SGD(blocks.parameters(), lr=0.05)

    def step(x):
        opt.zero_grad()
        h = x
        for b in blocks:
            h = checkpoint(b, h, use_reentrant=False)
        loss = h.pow(2).mean()
        loss.backward()
        opt.step()
        return loss

    data = [ember.randn(4, 8) for _ in range(4)]
    state = {k: v.clone() for k, v in blocks.state_dict().items()}
    eager = [step(x).item() for x in data]
    blocks.load_state_dict(state)
    scripted = ember.script(step)
    compiled = [scripted(x).item() for x in data]
    np.testing.assert_allclose(compiled, eager, rtol=1e-5)
    assert not scripted.fallbacks


def test_a_segment_reading_a_tensor_with_its_own_graph_hands_its_gradient_on():
    # y comes from before the segment and the loss reads it too: the segment's node sends y's
    # share to y's own node (made earlier, so the walk stops there), which runs once with
    # both shares; walking through it to `a` ran it twice, the second time freed
    results = []
    for use_checkpoint in (False, True):
        a = ember.tensor([0.1, 0.2, 0.3], requires_grad=True)
        y = a.exp()
        x = ember.tensor([1.0, 2.0, 3.0], requires_grad=True)

        def segment(t):
            return (t * y).sin()

        o = checkpoint(segment, x, use_reentrant=False) if use_checkpoint else segment(x)
        if use_checkpoint:
            assert len(o.grad_fn.next_functions) == 2  # x's and y's node, not a's
        (o.sum() + y.sum()).backward()
        results.append((a.grad.numpy(), x.grad.numpy()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-6)
    np.testing.assert_allclose(results[0][0], [1.6013725, -0.6488653, -1.1419916], rtol=1e-5)


def test_checkpoints_over_a_recurrence_equal_the_plain_gradients():
    # an RNN-style loop: each segment reads the state made by the one before
    ember.manual_seed(4)
    cell = nn.Linear(6, 6)
    xs = ember.randn(5, 3, 6)
    results = []
    for use_checkpoint in (False, True):
        cell.zero_grad()
        h = ember.zeros(3, 6)
        for t in range(5):
            step = lambda x, h: (cell(x) + h).tanh()  # noqa: E731
            h = checkpoint(step, xs[t], h, use_reentrant=False) if use_checkpoint else step(
                xs[t], h)
        h.pow(2).sum().backward()
        results.append([p.grad.numpy().copy() for p in cell.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
