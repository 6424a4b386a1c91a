"""nn.utils.weight_norm and spectral_norm: the weight each computes before forward, the
gradients reaching their parameters, their removal, the power iteration's convergence and
state_dict keys."""

from __future__ import annotations

import ember
import numpy as np
import pytest
from ember import nn
from ember.autograd import gradcheck


def numpy_weight_norm(g, v, dim):
    if dim is None:
        return g * v / np.linalg.norm(v)
    others = tuple(d for d in range(v.ndim) if d != dim % v.ndim)
    return g * v / np.sqrt((v * v).sum(others, keepdims=True))


def conv():
    return nn.Conv2d(3, 4, 3).double()


def linear():
    return nn.Linear(5, 3).double()


@pytest.mark.parametrize("make, dim, g_shape", [
    (linear, 0, (3, 1)), (linear, 1, (1, 5)), (linear, None, ()),
    (conv, 0, (4, 1, 1, 1)), (conv, 1, (1, 3, 1, 1)), (conv, -2, (1, 1, 3, 1)),
])
def test_weight_norm_forward_uses_g_times_v_over_its_norm(make, dim, g_shape):
    module = make()
    before = module.weight.detach().numpy().copy()
    nn.utils.weight_norm(module, dim=dim)
    assert module.weight_g.shape == g_shape and module.weight_v.shape == before.shape
    assert "weight" not in dict(module.named_parameters())
    with ember.no_grad():
        module.weight_g.mul_(ember.tensor(np.linspace(0.5, 2.0, module.weight_g.numel()))
                             .reshape(g_shape))
    x = ember.randn(2, 3, 5, 5, dtype=ember.float64) if make is conv else ember.randn(
        2, 5, dtype=ember.float64)
    out = module(x)
    expected = numpy_weight_norm(module.weight_g.detach().numpy(), before, dim)
    np.testing.assert_allclose(module.weight.detach().numpy(), expected, rtol=1e-12)
    plain = make()
    plain.load_state_dict({"weight": ember.tensor(expected), "bias": module.bias.detach()})
    np.testing.assert_allclose(out.detach().numpy(), plain(x).detach().numpy(), rtol=1e-10)


def test_weight_norm_at_start_leaves_the_weight_unchanged():
    module = linear()
    before = module.weight.detach().numpy().copy()
    nn.utils.weight_norm(module)
    np.testing.assert_allclose(module.weight.detach().numpy(), before, rtol=1e-12)


@pytest.mark.parametrize("dim", [0, 1, None])
def test_weight_norm_gradients_reach_g_and_v(dim):
    module = nn.utils.weight_norm(linear(), dim=dim)
    x = ember.randn(4, 5, dtype=ember.float64)

    def forward(g, v):
        # the hook reads whatever tensors the module holds; these keep gradcheck's graph
        module._parameters["weight_g"], module._parameters["weight_v"] = g, v
        return module(x)

    g = module.weight_g.detach().clone().requires_grad_(True)
    v = module.weight_v.detach().clone().requires_grad_(True)
    assert gradcheck(forward, [g, v])
    forward(g, v).sum().backward()
    assert g.grad.shape == g.shape and v.grad.shape == v.shape


def test_remove_weight_norm_folds_it_into_one_parameter():
    module = nn.utils.weight_norm(conv())
    with ember.no_grad():
        module.weight_g.mul_(3.0)
    x = ember.randn(1, 3, 6, 6, dtype=ember.float64)
    out = module(x).detach().numpy()
    nn.utils.remove_weight_norm(module)
    assert isinstance(module.weight, nn.Parameter) and module.weight.requires_grad
    assert list(module.state_dict()) == ["bias", "weight"]  # as torch: appended
    assert not module._forward_pre_hooks
    np.testing.assert_allclose(module(x).detach().numpy(), out, rtol=1e-12)


def test_weight_norm_state_dict_round_trips():
    source = nn.utils.weight_norm(linear())
    assert list(source.state_dict()) == ["bias", "weight_g", "weight_v"]
    target = nn.utils.weight_norm(linear())
    target.load_state_dict(source.state_dict())
    x = ember.randn(3, 5, dtype=ember.float64)
    np.testing.assert_array_equal(target(x).detach().numpy(), source(x).detach().numpy())


def largest_singular_value(module, dim=0):
    w = module.weight_orig.detach().numpy()
    w = np.moveaxis(w, dim, 0).reshape(w.shape[dim], -1)
    return np.linalg.svd(w, compute_uv=False)[0]


def sigma(module):
    return (module.weight_orig / module.weight).detach().numpy().reshape(-1)[0]


@pytest.mark.parametrize("make, dim", [(linear, 0), (conv, 0), (conv, 1)])
def test_spectral_norm_sigma_converges_to_the_largest_singular_value(make, dim):
    module = nn.utils.spectral_norm(make(), dim=dim, n_power_iterations=3)
    x = ember.randn(2, 3, 5, 5, dtype=ember.float64) if make is conv else ember.randn(
        2, 5, dtype=ember.float64)
    for _ in range(100):
        module(x)
    np.testing.assert_allclose(sigma(module), largest_singular_value(module, dim), rtol=1e-6)
    w = np.moveaxis(module.weight.detach().numpy(), dim, 0)
    assert np.isclose(np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)[0], 1.0)


def test_spectral_norm_buffers_start_normalized_and_only_training_updates_them():
    module = nn.utils.spectral_norm(linear())
    assert list(module.state_dict()) == ["bias", "weight_orig", "weight_u", "weight_v"]
    assert module.weight_u.shape == (3,) and module.weight_v.shape == (5,)
    for b in (module.weight_u, module.weight_v):
        assert np.isclose(np.linalg.norm(b.numpy()), 1.0)
        assert not b.requires_grad
    x = ember.randn(2, 5, dtype=ember.float64)
    module.eval()
    u = module.weight_u.numpy().copy()
    module(x)
    np.testing.assert_array_equal(module.weight_u.numpy(), u)
    module.train()
    module(x)
    w = module.weight_orig.detach().numpy()
    v = w.T @ u / np.linalg.norm(w.T @ u)
    np.testing.assert_allclose(module.weight_v.numpy(), v, rtol=1e-12)
    np.testing.assert_allclose(module.weight_u.numpy(), w @ v / np.linalg.norm(w @ v),
                               rtol=1e-12)


def test_spectral_norm_gradient_flows_through_the_weight_not_u_and_v():
    module = nn.utils.spectral_norm(linear()).eval()
    x = ember.randn(4, 5, dtype=ember.float64)
    u, v = module.weight_u.clone(), module.weight_v.clone()

    def forward(w):
        return ember.nn.functional.linear(x, w / ember.dot(u, ember.mv(w, v)), module.bias)

    w = module.weight_orig.detach().clone().requires_grad_(True)
    assert gradcheck(forward, [w])
    module(x).sum().backward()
    expected = ember.autograd.grad(forward(w).sum(), [w])[0]
    np.testing.assert_allclose(module.weight_orig.grad.numpy(), expected.numpy(), rtol=1e-10)
    assert module.weight_u.grad is None


def test_remove_spectral_norm_keeps_the_normalized_weight():
    module = nn.utils.spectral_norm(conv())
    x = ember.randn(1, 3, 5, 5, dtype=ember.float64)
    module(x)
    out = module.eval()(x).detach().numpy()
    nn.utils.remove_spectral_norm(module)
    assert list(module.state_dict()) == ["bias", "weight"]  # as torch: appended
    assert isinstance(module.weight, nn.Parameter)
    np.testing.assert_allclose(module(x).detach().numpy(), out, rtol=1e-12)


def test_spectral_norm_of_a_transposed_convolution_normalizes_its_output_dim():
    module = nn.utils.spectral_norm(nn.ConvTranspose2d(2, 5, 3))
    assert module.weight_u.shape == (5,) and module.weight_v.shape == (18,)


@pytest.mark.parametrize("apply, remove", [
    (nn.utils.weight_norm, nn.utils.remove_weight_norm),
    (nn.utils.spectral_norm, nn.utils.remove_spectral_norm),
])
def test_misuse_raises_ember_errors(apply, remove):
    module = apply(nn.Linear(3, 2))
    with pytest.raises(ember.EmberError, match="two"):
        apply(module)
    with pytest.raises(ember.EmberError, match="'bias'"):
        remove(module, "bias")
    with pytest.raises(ember.EmberError, match="no parameter 'kernel'"):
        apply(nn.Linear(3, 2), "kernel")
    with pytest.raises(ember.EmberError, match="out of range"):
        apply(nn.Linear(3, 2), dim=4)
