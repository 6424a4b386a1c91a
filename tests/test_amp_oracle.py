"""autocast and GradScaler against PyTorch on the CPU: the same inputs and weights give the same
dtypes and values."""

from __future__ import annotations

import ember
import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.oracle


def _pair_linear(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, 8)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    e, t = ember.nn.Linear(8, 3), torch.nn.Linear(8, 3)
    with ember.no_grad(), torch.no_grad():
        e.weight.copy_(ember.tensor(w))
        e.bias.copy_(ember.tensor(b))
        t.weight.copy_(torch.tensor(w))
        t.bias.copy_(torch.tensor(b))
    return e, t, rng.standard_normal((4, 8)).astype(np.float32)


def _same(e, t):
    assert e.dtype.name == str(t.dtype).removeprefix("torch.")
    np.testing.assert_allclose(e.detach().float().numpy(), t.detach().float().numpy(),
                               rtol=2**-7, atol=1e-2)


def test_autocast_linear_softmax_and_loss_match_pytorch():
    e, t, x = _pair_linear()
    with ember.autocast("cpu"), torch.autocast("cpu"):
        ey, ty = e(ember.tensor(x)), t(torch.tensor(x))
        _same(ey, ty)
        _same(ember.nn.functional.softmax(ey, -1), torch.softmax(ty, -1))
        target = np.zeros((4, 3), np.float32)
        _same(ember.nn.functional.mse_loss(ey, ember.tensor(target)),
              torch.nn.functional.mse_loss(ty, torch.tensor(target)))
        _same(ember.tensor(x) @ ember.tensor(x).T, torch.tensor(x) @ torch.tensor(x).T)
    with ember.autocast("cpu", dtype=ember.float16), torch.autocast("cpu", dtype=torch.float16):
        _same(e(ember.tensor(x)), t(torch.tensor(x)))


def test_grad_scaler_matches_pytorch_over_steps_with_an_overflow():
    e, t, x = _pair_linear(1)
    eo, to = ember.optim.SGD(e.parameters(), lr=0.1), torch.optim.SGD(t.parameters(), lr=0.1)
    es = ember.amp.GradScaler("cpu", init_scale=256.0, growth_interval=2)
    ts = torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=2)
    for step in range(5):
        eo.zero_grad()
        to.zero_grad()
        es.scale(e(ember.tensor(x)).pow(2).mean()).backward()
        ts.scale(t(torch.tensor(x)).pow(2).mean()).backward()
        if step == 2:
            e.bias.grad[1] = float("nan")
            t.bias.grad[1] = float("nan")
        es.step(eo)
        ts.step(to)
        es.update()
        ts.update()
        assert es.get_scale() == ts.get_scale()
        assert es.state_dict() == ts.state_dict()
        np.testing.assert_allclose(e.weight.detach().numpy(), t.weight.detach().numpy(),
                                   rtol=1e-5, atol=1e-6)
