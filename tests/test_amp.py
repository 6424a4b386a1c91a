"""Mixed precision: ember.autocast on the CPU and ember.amp.GradScaler, against PyTorch's results
for the same inputs where torch is present, and against their specification otherwise."""

from __future__ import annotations

import warnings

import ember
import numpy as np
import pytest


def _linear(seed=0):
    ember.manual_seed(seed)
    return ember.nn.Linear(8, 3)


def test_autocast_runs_matmul_linear_and_conv_in_bfloat16():
    x = ember.randn(4, 8)
    layer = _linear()
    conv = ember.nn.Conv2d(2, 3, 3)
    with ember.autocast("cpu"):
        assert ember.is_autocast_enabled("cpu")
        assert ember.get_autocast_dtype("cpu") is ember.bfloat16
        assert layer(x).dtype is ember.bfloat16
        assert (x @ x.T).dtype is ember.bfloat16
        assert conv(ember.randn(1, 2, 5, 5)).dtype is ember.bfloat16
        # not on PyTorch's CPU lists: the inputs' dtype
        y = layer(x)
        assert ember.nn.functional.softmax(y, -1).dtype is ember.bfloat16
        assert (x + 1).dtype is ember.float32
        # losses are on the float32 list
        assert ember.nn.functional.mse_loss(y, ember.zeros(4, 3)).dtype is ember.float32
        assert ember.nn.functional.cross_entropy(y, ember.tensor([0, 1, 2, 0])).dtype is (
            ember.float32)
    assert not ember.is_autocast_enabled("cpu")
    assert layer(x).dtype is ember.float32
    assert {p.dtype for p in layer.parameters()} == {ember.float32}


def test_nesting_and_enabled_false_restore_the_outer_state():
    x = ember.randn(2, 8)
    layer = _linear()
    with ember.amp.autocast("cpu"):
        with ember.autocast("cpu", enabled=False):
            assert layer(x).dtype is ember.float32
            with ember.autocast("cpu", dtype=ember.float16):
                assert layer(x).dtype is ember.float16
            assert layer(x).dtype is ember.float32
        assert layer(x).dtype is ember.bfloat16
    assert layer(x).dtype is ember.float32


def test_autocast_as_a_decorator():
    layer = _linear()

    @ember.autocast(device_type="cpu", dtype=ember.bfloat16)
    def forward(x):
        return layer(x)

    assert forward(ember.randn(2, 8)).dtype is ember.bfloat16
    assert layer(ember.randn(2, 8)).dtype is ember.float32


def test_gradients_reach_float32_parameters_in_float32():
    layer = _linear()
    with ember.autocast("cpu"):
        loss = layer(ember.randn(4, 8)).float().pow(2).mean()
    loss.backward()
    assert layer.weight.grad.dtype is ember.float32


def test_old_spellings_warn_and_work():
    layer = _linear()
    with pytest.warns(FutureWarning, match=r"torch\.amp\.autocast\('cpu'"):
        ctx = ember.cpu.amp.autocast()
    with ctx:
        assert layer(ember.randn(2, 8)).dtype is ember.bfloat16
    with pytest.warns(UserWarning, match="not supported"):
        with ember.autocast("cpu", dtype=ember.float32):
            assert layer(ember.randn(2, 8)).dtype is ember.float32


def _problem(seed=0):
    layer = _linear(seed)
    opt = ember.optim.SGD(layer.parameters(), lr=0.1)
    return layer, opt, ember.randn(4, 8)


def test_grad_scaler_scales_unscales_and_steps():
    layer, opt, x = _problem()
    scaler = ember.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2)
    assert scaler.is_enabled() and scaler.get_scale() == 1024.0
    loss = layer(x).pow(2).mean()
    scaled = scaler.scale(loss)
    assert scaled.item() == pytest.approx(loss.item() * 1024.0, rel=1e-6)
    scaled.backward()
    scaled_grad = layer.weight.grad.clone()
    scaler.unscale_(opt)
    np.testing.assert_allclose(layer.weight.grad.numpy(), scaled_grad.numpy() / 1024.0,
                               rtol=1e-6)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)
    before = layer.weight.detach().clone()
    scaler.step(opt)
    assert not ember.equal(before, layer.weight)
    scaler.update()
    assert scaler.get_scale() == 1024.0  # one good step of the two that grow it
    for _ in range(1):
        opt.zero_grad()
        scaler.scale(layer(x).pow(2).mean()).backward()
        scaler.step(opt)
        scaler.update()
    assert scaler.get_scale() == 2048.0


def test_grad_scaler_skips_the_step_on_inf_and_backs_off():
    layer, opt, x = _problem()
    scaler = ember.amp.GradScaler("cpu", init_scale=2.0**16)
    scaler.scale(layer(x).pow(2).mean()).backward()
    layer.bias.grad[0] = float("inf")
    before = [p.detach().clone() for p in layer.parameters()]
    assert scaler.step(opt) is None
    assert all(ember.equal(a, b) for a, b in zip(before, layer.parameters()))
    scaler.update()
    assert scaler.get_scale() == 2.0**15
    assert scaler.state_dict()["_growth_tracker"] == 0


def test_grad_scaler_state_dict_round_trips():
    scaler = ember.amp.GradScaler("cpu", init_scale=8.0, growth_interval=7)
    state = scaler.state_dict()
    assert state == {"scale": 8.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                     "growth_interval": 7, "_growth_tracker": 0}
    other = ember.amp.GradScaler("cpu")
    other.load_state_dict(state)
    assert other.state_dict() == state
    with pytest.raises(RuntimeError, match="empty"):
        other.load_state_dict({})


def test_cuda_grad_scaler_without_cuda_is_disabled_and_passes_through():
    if ember.cuda.is_available():
        pytest.skip("CUDA is present: the scaler is enabled")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scaler = ember.cuda.amp.GradScaler()
    messages = [str(w.message) for w in caught]
    assert any("deprecated" in m for m in messages)
    assert any("CUDA is not available.  Disabling." in m for m in messages)
    assert not scaler.is_enabled() and scaler.get_scale() == 1.0 and scaler.state_dict() == {}
    layer, opt, x = _problem()
    loss = layer(x).pow(2).mean()
    assert scaler.scale(loss) is loss
    loss.backward()
    before = layer.weight.detach().clone()
    scaler.step(opt)
    scaler.update()
    assert not ember.equal(before, layer.weight)


def test_scripted_function_under_autocast_equals_eager_and_retraces_when_it_changes():
    layer = _linear()
    x = ember.randn(4, 8)

    def f(x):
        return layer(x).relu() * 2

    compiled = ember.script(f)
    for _ in range(2):
        with ember.autocast("cpu"):
            eager, graph = f(x), compiled(x)
            assert graph.dtype is ember.bfloat16 and ember.equal(eager, graph)
        eager, graph = f(x), compiled(x)
        assert graph.dtype is ember.float32
        np.testing.assert_allclose(graph.detach().numpy(), eager.detach().numpy(), rtol=1e-6)
