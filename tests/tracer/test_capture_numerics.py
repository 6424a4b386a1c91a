"""Compiled numerics equal eager's: scalar arithmetic eager does in Python double precision
stays double in a graph, and simplifications keep IEEE semantics."""

from __future__ import annotations

import ember
import ember.nn as nn
import numpy as np
import pytest


def _train(scripted, dtype, optimizer, steps=5):
    ember.manual_seed(0)
    net = nn.Linear(5, 3).to(dtype)
    opt = getattr(ember.optim, optimizer)(net.parameters(), lr=0.01)

    def step(x, y):
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    run = ember.script(step) if scripted else step
    rng = np.random.default_rng(0)
    for _ in range(steps):
        run(ember.tensor(rng.standard_normal((8, 5)), dtype=dtype),
            ember.tensor(rng.standard_normal((8, 3)), dtype=dtype))
    if scripted:
        assert run.specializations[-1].calls >= steps - 2 and not run.fallbacks
    return [p.detach().numpy() for p in net.parameters()]


@pytest.mark.parametrize("optimizer", ["Adam", "AdamW"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_scripted_adam_step_equals_eager_bit_for_bit(optimizer, dtype):
    """The bias corrections 1 - beta**t are computed in double from the step counter (which
    is float32), then rounded to the parameter's dtype, as eager's Python floats are."""
    dtype = getattr(ember, dtype)
    for got, want in zip(_train(True, dtype, optimizer), _train(False, dtype, optimizer)):
        np.testing.assert_array_equal(got, want)


def test_compiled_zero_additions_keep_ieee_signed_zeros():
    def f(x):
        return x + 0.0, 0.0 + x, x - 0.0, x + (-0.0), x - (-0.0), x * 1.0

    scripted = ember.script(f)
    x = ember.tensor([-0.0, 0.0, 1.5, -2.0])
    for _ in range(3):
        got = scripted(x)
    for g, w in zip(got, f(x)):
        assert np.signbit(g.numpy()).tolist() == np.signbit(w.numpy()).tolist()
        np.testing.assert_array_equal(g.numpy(), w.numpy())
