"""A whole training step is traced again only for facts it depends on: zero_grad() does not
make the .grad it clears an input, and a carried state the step detaches first (truncated
backpropagation through time) may come back requiring grad without a new graph."""

import copy

import ember
import numpy as np
from ember import nn, optim


def _tbptt(seed=0):
    ember.manual_seed(seed)
    model = nn.RNN(3, 4)
    return model, optim.SGD(model.parameters(), lr=0.1)


def _batches(n):
    rng = np.random.default_rng(1)
    return [ember.tensor(rng.standard_normal((5, 2, 3)).astype(np.float32)) for _ in range(n)]


def _make_step(model, optimizer):
    def step(x, h):
        h = h.detach()  # repackage the hidden state: truncated BPTT
        optimizer.zero_grad()
        out, h = model(x, h)
        loss = out.pow(2).mean()
        loss.backward()
        optimizer.step()
        return loss, h

    return step


def test_a_step_that_detaches_its_carried_state_traces_once():
    eager_model, eager_opt = _tbptt()
    model = copy.deepcopy(eager_model)
    opt = optim.SGD(model.parameters(), lr=0.1)
    eager_step = _make_step(eager_model, eager_opt)
    scripted = ember.script(_make_step(model, opt))
    h_eager = h_scripted = ember.zeros(1, 2, 4)
    for k, x in enumerate(_batches(4)):
        loss_e, h_eager = eager_step(x, h_eager)
        loss_s, h_scripted = scripted(x, h_scripted)
        np.testing.assert_allclose(loss_s.item(), loss_e.item(), rtol=1e-5, err_msg=f"step {k}")
        np.testing.assert_allclose(h_scripted.detach().numpy(), h_eager.detach().numpy(),
                                   rtol=1e-5, atol=1e-6)
        # as eager: the returned state requires grad (its graph spent by the backward)
        assert h_scripted.requires_grad and h_eager.requires_grad
    for p, q in zip(model.parameters(), eager_model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
    assert len(scripted.specializations) == 1 and not scripted.recompiles
    assert scripted.specializations[0].calls == 3


def test_a_step_that_reads_requires_grad_still_retraces_when_it_changes():
    def make(model, optimizer):
        def step(x, h):
            scale = 2.0 if h.requires_grad else 1.0  # the step depends on the flag
            h = h.detach() * scale
            optimizer.zero_grad()
            out, h = model(x, h)
            out.pow(2).mean().backward()
            optimizer.step()
            return h

        return step

    eager_model, eager_opt = _tbptt()
    model = copy.deepcopy(eager_model)
    eager = make(eager_model, eager_opt)
    scripted = ember.script(make(model, optim.SGD(model.parameters(), lr=0.1)))
    x = _batches(1)[0]
    plain = ember.full((1, 2, 4), 0.5)
    flagged = ember.full((1, 2, 4), 0.5, requires_grad=True)
    for h in (plain, flagged, flagged, plain):
        np.testing.assert_allclose(scripted(x, h).detach().numpy(), eager(x, h).detach().numpy(),
                                   rtol=1e-5, atol=1e-6)
    assert len(scripted.specializations) == 2
    assert "requires_grad: False -> True" in scripted.recompiles[0]


def test_zero_grad_does_not_make_the_gradients_it_clears_an_input_of_the_step():
    ember.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)

    def step(x):
        opt.zero_grad()
        loss = model(x).pow(2).sum()
        loss.backward()
        opt.step()
        return loss

    scripted = ember.script(step)
    x = ember.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert model.weight.grad is None
    for _ in range(3):  # the first call finds no .grad, the later ones the last step's
        scripted(x)
    assert len(scripted.specializations) == 1 and not scripted.recompiles
    assert not scripted.specializations[0].grad_guards
