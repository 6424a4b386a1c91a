"""Training batch norm's native kernels (codegen/llvm/norm.py): the eager batch_norm_train and
batch_norm_train_backward kernels take them on the CPU, equal their numpy forms to the
rounding of the statistics, give the same bits on one thread and two, and pass gradcheck in
float64 through F.batch_norm."""

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember.autograd import gradcheck
from ember.runtime import threads, windows
from ember.runtime.kernels import KERNELS

SHAPES = [(16, 32, 8, 8), (16, 64, 4, 4), (5, 3), (4, 6, 7), (2, 3, 2, 5, 3), (64, 32, 8, 8)]


def _operands(rng, shape, dtype):
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    per_channel = [rng.standard_normal(c).astype(dtype) for _ in range(2)]
    running = [rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)]
    return x, per_channel, running


def _both(x, per_channel, running, g):
    forward = KERNELS["batch_norm_train"](np, x, *per_channel, *running, 1e-5, 0.1)
    backward = KERNELS["batch_norm_train_backward"](np, g, x, per_channel[0], *forward[1:3])
    return forward + backward


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_kernels_equal_the_numpy_forms(shape, dtype, monkeypatch):
    rng = np.random.default_rng(len(shape) + shape[1])
    x, per_channel, running = _operands(rng, shape, dtype)
    g = rng.standard_normal(shape).astype(dtype)
    calls = []
    for name in ("batch_norm_train", "batch_norm_train_backward"):
        original = getattr(windows, name)
        monkeypatch.setattr(windows, name, lambda *a, original=original, name=name: (
            calls.append(name), original(*a))[1])
    native = _both(x, per_channel, running, g)
    assert calls == ["batch_norm_train", "batch_norm_train_backward"]
    with monkeypatch.context() as m:
        m.setattr(windows, "_broken", True)
        plain = _both(x, per_channel, running, g)
    assert len(calls) == 2  # the numpy forms ran without them
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for got, want in zip(native, plain):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_thread_and_two_give_the_same_bits(dtype, monkeypatch):
    """Each channel is one thread's sums in one order, however the pool splits them."""
    rng = np.random.default_rng(3)
    x, per_channel, running = _operands(rng, (64, 32, 8, 8), dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    monkeypatch.setattr(threads._budget, "now", lambda: 1)
    alone = _both(x, per_channel, running, g)
    monkeypatch.setattr(threads._budget, "now", lambda: 2)
    shared = _both(x, per_channel, running, g)
    for a, b in zip(alone, shared):
        np.testing.assert_array_equal(a, b)


def test_statistics_are_the_batch_s_and_the_running_update_is_pytorch_s():
    rng = np.random.default_rng(4)
    x, (weight, bias), (running_mean, running_var) = _operands(rng, (8, 5, 3, 3), np.float64)
    out, mean, invstd, new_mean, new_var = KERNELS["batch_norm_train"](
        np, x, weight, bias, running_mean, running_var, 1e-5, 0.1)
    axes = (0, 2, 3)
    np.testing.assert_allclose(mean, x.mean(axes), rtol=1e-13)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(x.var(axes) + 1e-5), rtol=1e-13)
    shape = (1, 5, 1, 1)
    want = (x - mean.reshape(shape)) * invstd.reshape(shape) * weight.reshape(shape)
    np.testing.assert_allclose(out, want + bias.reshape(shape), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new_mean, 0.1 * x.mean(axes) + 0.9 * running_mean, rtol=1e-13)
    np.testing.assert_allclose(new_var, 0.1 * x.var(axes, ddof=1) + 0.9 * running_var,
                               rtol=1e-13)


@pytest.mark.parametrize("shape", [(6, 3, 4, 4), (7, 4)], ids=str)
def test_gradcheck_of_training_batch_norm(shape, monkeypatch):
    calls = []
    for name in ("batch_norm_train", "batch_norm_train_backward"):
        original = getattr(windows, name)
        monkeypatch.setattr(windows, name, lambda *a, original=original, name=name: (
            calls.append(name), original(*a))[1])
    rng = np.random.default_rng(5)
    c = shape[1]
    x = ember.tensor(rng.standard_normal(shape), requires_grad=True)
    weight = ember.tensor(rng.uniform(0.5, 1.5, c), requires_grad=True)
    bias = ember.tensor(rng.standard_normal(c), requires_grad=True)

    def fn(x, weight, bias):
        running = (ember.zeros(c, dtype=ember.float64), ember.ones(c, dtype=ember.float64))
        return F.batch_norm(x, *running, weight, bias, training=True)

    assert gradcheck(fn, (x, weight, bias), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert {"batch_norm_train", "batch_norm_train_backward"} <= set(calls)
