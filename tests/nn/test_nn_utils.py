"""ember.nn.utils: gradient clipping by norm and by value, parameters <-> vector."""

import math

import ember
import numpy as np
import pytest
from ember import nn
from ember.nn.utils import (
    clip_grad_norm_,
    clip_grad_value_,
    get_total_norm,
    parameters_to_vector,
    vector_to_parameters,
)


def _params_with_grads(seed=0, scale=1.0, dtype="float64"):
    rng = np.random.default_rng(seed)
    params = []
    for shape in [(3, 4), (5,), (2, 2, 2)]:
        p = nn.Parameter(ember.tensor(rng.standard_normal(shape), dtype=dtype))
        p.grad = ember.tensor(rng.standard_normal(shape) * scale, dtype=dtype)
        params.append(p)
    return params


def _grads(params):
    return [p.grad.numpy().copy() for p in params]


def _norm(arrays, p):
    flat = np.concatenate([a.ravel() for a in arrays])
    if p == math.inf:
        return np.abs(flat).max()
    return (np.abs(flat) ** p).sum() ** (1 / p)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_scales_to_max_norm_and_returns_the_old_norm(norm_type):
    params = _params_with_grads(scale=5.0)
    before = _grads(params)
    expected = _norm(before, norm_type)
    total = clip_grad_norm_(params, max_norm=1.0, norm_type=norm_type)
    assert total.item() == pytest.approx(expected, rel=1e-12)
    after = _grads(params)
    assert _norm(after, norm_type) == pytest.approx(1.0, rel=1e-5)
    coef = 1.0 / (expected + 1e-6)
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b * coef, rtol=1e-12)


def test_clip_grad_norm_leaves_small_gradients_alone():
    params = _params_with_grads(scale=0.01)
    before = _grads(params)
    total = clip_grad_norm_(params, max_norm=10.0)
    assert total.item() == pytest.approx(_norm(before, 2))
    for a, b in zip(_grads(params), before):
        np.testing.assert_array_equal(a, b)


def test_clip_grad_norm_accepts_a_single_tensor_skips_missing_grads_and_is_float32_safe():
    params = _params_with_grads(scale=3.0, dtype="float32")
    params.append(nn.Parameter(ember.ones(3)))  # no .grad: ignored
    total = clip_grad_norm_(iter(params), 0.5)
    assert total.dtype == ember.float32
    assert _norm(_grads(params[:3]), 2) == pytest.approx(0.5, rel=1e-4)
    single = _params_with_grads(scale=4.0)[0]
    clip_grad_norm_(single, 1.0)
    assert np.linalg.norm(single.grad.numpy()) == pytest.approx(1.0, rel=1e-5)
    assert clip_grad_norm_([nn.Parameter(ember.ones(2))], 1.0).item() == 0.0


def test_clip_grad_norm_nonfinite():
    params = _params_with_grads()
    params[1].grad = ember.tensor([1.0, math.nan, 0.0, 0.0, 0.0], dtype="float64")
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    total = clip_grad_norm_(params, 1.0)
    assert math.isnan(total.item())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_eager_two_norm_clipping_runs_on_the_arrays_without_a_dispatch_per_gradient(
        monkeypatch, dtype):
    import ember.nn.utils.clip_grad as clip_module

    def tensor_path(*args, **kwargs):
        raise AssertionError("the eager 2-norm clip went op by op")

    monkeypatch.setattr(clip_module, "get_total_norm", tensor_path)
    params = _params_with_grads(seed=6, scale=4.0, dtype=dtype)
    # a transposed (non-contiguous) gradient is read through its strides
    params[0].grad = ember.tensor(np.random.default_rng(7).standard_normal((4, 3)) * 4.0,
                                  dtype=dtype).t()
    before = _grads(params)
    versions = [p.grad._version[0] for p in params]
    total = clip_grad_norm_(params, 0.75)
    expected = _norm(before, 2)
    assert total.dtype == params[0].dtype and total.shape == ()
    rtol = 1e-5 if dtype == "float32" else 1e-12
    assert total.item() == pytest.approx(expected, rel=rtol)
    for a, b in zip(_grads(params), before):
        np.testing.assert_allclose(a, b * (0.75 / (expected + 1e-6)), rtol=rtol)
    assert [p.grad._version[0] for p in params] == [v + 1 for v in versions]


def test_get_total_norm_matches_numpy():
    grads = [p.grad for p in _params_with_grads(seed=4)]
    arrays = [g.numpy() for g in grads]
    for p in (2.0, 1.0, math.inf):
        assert get_total_norm(grads, p).item() == pytest.approx(_norm(arrays, p))


def test_clip_grad_norm_after_backward_on_a_model():
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    (model(ember.randn(16, 4)) * 100).sum().backward()
    total = clip_grad_norm_(model.parameters(), 0.25)
    assert total.item() > 0.25
    assert _norm(_grads(model.parameters()), 2) == pytest.approx(0.25, rel=1e-4)


def test_clip_grad_value_clamps_each_element():
    params = _params_with_grads(scale=3.0)
    before = _grads(params)
    assert clip_grad_value_(params, 0.5) is None
    for a, b in zip(_grads(params), before):
        np.testing.assert_array_equal(a, np.clip(b, -0.5, 0.5))


def test_parameters_to_vector_and_back():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1, bias=False))
    params = list(model.parameters())
    vec = parameters_to_vector(params)
    assert tuple(vec.shape) == (3 * 2 + 2 + 2,)
    np.testing.assert_array_equal(
        vec.detach().numpy(), np.concatenate([p.detach().numpy().ravel() for p in params])
    )
    new = ember.arange(10, dtype="float32")
    vector_to_parameters(new, model.parameters())
    assert all(p is q for p, q in zip(model.parameters(), params))
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(model[0].bias.detach().numpy(), [6, 7])
    np.testing.assert_array_equal(model[1].weight.detach().numpy(), [[8, 9]])
    assert model[0].weight.requires_grad
    with pytest.raises(TypeError, match="expected ember.Tensor"):
        vector_to_parameters([1.0] * 10, model.parameters())


def test_parameters_to_vector_is_differentiable():
    model = nn.Linear(2, 2)
    vec = parameters_to_vector(model.parameters())
    (vec * ember.arange(6, dtype="float32")).sum().backward()
    np.testing.assert_array_equal(model.weight.grad.numpy(), [[0, 1], [2, 3]])
    np.testing.assert_array_equal(model.bias.grad.numpy(), [4, 5])
