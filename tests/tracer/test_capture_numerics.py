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


def _whole_range(dtype, n=20000, seed=0):
    """Values spread over every exponent of dtype, both signs, and the usual small ones."""
    rng = np.random.default_rng(seed)
    top = 127 if dtype == np.float32 else 1023
    x = rng.uniform(1, 2, n) * 2.0 ** rng.integers(-30, top, n) * rng.choice([-1, 1], n)
    x = np.concatenate([x, rng.uniform(-10, 10, n), [1e8, 1e30, 2.0**60, 123456.7, 1e5]])
    return x.astype(dtype)


def _ulps(got, want, dtype):
    spacing = np.spacing(np.maximum(np.abs(want), np.finfo(dtype).tiny).astype(dtype))
    return np.abs(got.astype(np.float64) - want.astype(np.float64)) / spacing


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_sin_and_cos_equal_eager_over_the_whole_range(dtype):
    """Past the range the inline reduction holds (1e5 for float32, 1e9 for float64), a fused
    kernel runs its rows again with libm: sin(1e8) has its sign, sin(1e30) is no 1.0."""
    x = ember.tensor(_whole_range(dtype))
    fused = ember.script(lambda x: (x.sin() * 2.0, x.cos() * 3.0, x.sin() * x.cos()))
    for _ in range(2):
        got = fused(x)
    assert fused.specializations[0].program.kernel_count >= 1  # really compiled
    s, c = np.sin(x.numpy()), np.cos(x.numpy())
    for g, w in zip(got, (s * 2.0, c * 3.0, s * c)):
        assert np.max(_ulps(g.numpy(), w.astype(dtype), dtype)) <= 4
    # the case the issue names
    small = ember.tensor(np.array([1e8, 1e30], dtype))
    assert np.sign(fused(small)[0].numpy()[0]) == np.sign(np.sin(dtype(1e8)))
    assert abs(fused(small)[0].numpy()[1] - 2 * np.sin(dtype(1e30))) < 1e-5


def test_an_in_place_sin_of_a_large_argument_is_exact():
    """A kernel writing over its input cannot run its rows twice: it calls libm throughout."""
    def f(x):
        x.sin_()
        return x * 1.0

    scripted = ember.script(f)
    values = np.array([1e8, 1e30, 0.5, -3.0], np.float32)
    for _ in range(3):
        x = ember.tensor(values.copy())
        got = scripted(x)
        np.testing.assert_allclose(x.numpy(), np.sin(values), rtol=1e-6)
        np.testing.assert_allclose(got.numpy(), np.sin(values), rtol=1e-6)
