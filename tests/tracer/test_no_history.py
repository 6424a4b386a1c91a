"""A scripted call whose results and writes carry no autograd history (every op under
no_grad, as an optimizer's step runs) runs its compiled program, not op by op through
dispatch, even though its inputs require grad; one whose results do carry history still
records it as eager does."""

import importlib

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import nn

script_module = importlib.import_module("ember.tracer.script")  # the module, not the function


def _params(seed):
    ember.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5))
    x = ember.randn(8, 12)
    F.cross_entropy(model(x), ember.tensor(np.arange(8) % 5)).backward()
    return model


def _replays(monkeypatch):
    calls = []
    original = script_module.Specialization._replay

    def spy(self, inputs):
        calls.append(1)
        return original(self, inputs)

    monkeypatch.setattr(script_module.Specialization, "_replay", spy)
    return calls


@pytest.mark.parametrize("make", [
    lambda ps: ember.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    lambda ps: ember.optim.Adam(ps, lr=1e-2),
    lambda ps: ember.optim.SGD(ps, lr=0.1, momentum=0.9),
], ids=["adamw", "adam", "sgd-momentum"])
def test_a_scripted_optimizer_step_runs_compiled_and_leaves_what_eager_leaves(monkeypatch,
                                                                              make):
    eager_model, scripted_model = _params(0), _params(0)
    replays = _replays(monkeypatch)  # from here on: the optimizer's steps only
    eager_opt = make(list(eager_model.parameters()))
    scripted_opt = make(list(scripted_model.parameters()))
    step = ember.script(scripted_opt.step)
    for _ in range(4):
        eager_opt.step()
        step()
    assert not replays, "the optimizer's step ran op by op"
    # the first call makes the optimizer's state, the second finds it made: two graphs
    assert len(step.specializations) == 2
    assert all(sp.no_history for sp in step.specializations)
    for a, b in zip(eager_model.parameters(), scripted_model.parameters()):
        assert b.requires_grad and b.grad_fn is None and b.is_leaf
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
    for a, b in zip(eager_opt.state.values(), scripted_opt.state.values()):
        for key in a:
            np.testing.assert_allclose(np.asarray(b[key].numpy()), np.asarray(a[key].numpy()),
                                       rtol=1e-5, atol=1e-7)


def test_a_call_whose_result_carries_history_still_records_it(monkeypatch):
    w = ember.randn(4, 4, requires_grad=True)

    def f(x):
        with ember.no_grad():
            scale = x.abs().amax()  # no history
        return (x @ w) / scale  # history through w

    scripted = ember.script(f)
    x = ember.randn(3, 4)
    for _ in range(2):
        out = scripted(x)
        assert out.grad_fn is not None
        out.sum().backward()
    assert not scripted.specializations[0].no_history
    want = np.abs(x.numpy()).max()
    np.testing.assert_allclose(w.grad.numpy() / 2, np.tile(x.numpy().sum(0)[:, None], (1, 4))
                               / want, rtol=1e-5)


def test_an_in_place_write_with_history_still_records_it():
    w = ember.randn(4, requires_grad=True)

    def f(buffer):
        buffer.add_(w * 2)  # the buffer now carries w's history, as in eager
        return buffer

    scripted = ember.script(f)
    buffer = ember.zeros(4)
    out = scripted(buffer)
    assert not scripted.specializations[0].no_history
    assert out.grad_fn is not None
    out.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), np.full(4, 2.0))


def test_a_grad_that_carries_history_retraces_and_records_it():
    """A call traced on a plain .grad has nothing to record; the same call on a .grad made
    under create_graph=True (a gradient penalty's) must record, as eager does: the .grad's
    requires_grad is part of its guard."""
    p = ember.randn(4, requires_grad=True)

    def f(p):
        return p.grad * 2

    scripted = ember.script(f)
    (p * p).sum().backward()
    assert scripted(p).grad_fn is None and scripted.specializations[0].no_history
    p.grad = None
    (p * p * p).sum().backward(create_graph=True)
    out = scripted(p)
    assert len(scripted.specializations) == 2 and out.grad_fn is not None
    second = ember.autograd.grad(out.sum(), p)[0]  # d/dp sum(2 * 3p^2) = 12p
    np.testing.assert_allclose(second.numpy(), 12 * p.detach().numpy(), rtol=1e-5)
