"""ember.nn.init: each initialiser's statistics match its formula, in place and seeded."""

import math
import warnings

import ember
import numpy as np
import pytest
from ember import nn
from ember.nn import init


def _values(t) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


def _fresh(*shape, dtype="float32"):
    return nn.Parameter(ember.empty(*shape, dtype=dtype))


# With n samples the sample mean is off by about sigma / sqrt(n); 6 of those is a safe margin
# that still fails for any wrong constant in a formula.
def _assert_moments(values, mean, std):
    n = values.size
    assert abs(values.mean() - mean) < 6 * std / math.sqrt(n)
    assert abs(values.std() - std) < 6 * std / math.sqrt(2 * n)


# -- gains and fans ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nonlinearity", "param", "gain"),
    [
        ("linear", None, 1.0),
        ("conv2d", None, 1.0),
        ("sigmoid", None, 1.0),
        ("tanh", None, 5.0 / 3),
        ("relu", None, math.sqrt(2.0)),
        ("leaky_relu", None, math.sqrt(2.0 / (1 + 0.01**2))),
        ("leaky_relu", 0.2, math.sqrt(2.0 / (1 + 0.2**2))),
        ("leaky_relu", math.sqrt(5), math.sqrt(2.0 / 6)),
        ("selu", None, 0.75),
    ],
)
def test_calculate_gain_follows_pytorch_table(nonlinearity, param, gain):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(gain)


def test_calculate_gain_rejects_unknown_nonlinearity_and_bad_slope():
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", True)


def test_fans_count_the_receptive_field():
    weight = ember.empty(8, 3, 5, 7)
    assert init._calculate_fan_in_and_fan_out(weight) == (3 * 35, 8 * 35)
    assert init._calculate_fan_in_and_fan_out(ember.empty(4, 6)) == (6, 4)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(ember.empty(5))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(ember.empty(3, 3), mode="fan_avg")


# -- simple fills ------------------------------------------------------------------------------


def test_uniform_stays_in_bounds_with_uniform_moments():
    ember.manual_seed(1)
    t = init.uniform_(_fresh(400, 500), -2.0, 3.0)
    v = _values(t)
    assert v.min() >= -2.0 and v.max() <= 3.0
    assert v.min() < -1.99 and v.max() > 2.99
    _assert_moments(v, 0.5, 5.0 / math.sqrt(12))


def test_normal_has_requested_mean_and_std():
    ember.manual_seed(2)
    v = _values(init.normal_(_fresh(400, 500), mean=1.5, std=0.3))
    _assert_moments(v, 1.5, 0.3)


def test_constant_ones_zeros_eye():
    t = _fresh(3, 4)
    assert np.all(_values(init.constant_(t, 2.5)) == 2.5)
    assert np.all(_values(init.ones_(t)) == 1.0)
    assert np.all(_values(init.zeros_(t)) == 0.0)
    np.testing.assert_array_equal(_values(init.eye_(t)), np.eye(3, 4))
    with pytest.raises(ValueError, match="2 dimensions"):
        init.eye_(ember.empty(2, 2, 2))


def test_dirac_keeps_centre_taps_per_group():
    w = init.dirac_(ember.empty(4, 2, 3, 3), groups=2)
    v = _values(w)
    expected = np.zeros((4, 2, 3, 3))
    for g in range(2):
        for d in range(2):
            expected[g * 2 + d, d, 1, 1] = 1
    np.testing.assert_array_equal(v, expected)
    with pytest.raises(ValueError, match="3, 4, or 5 dimensions"):
        init.dirac_(ember.empty(3, 3))


def test_initialisers_work_in_place_without_recording_autograd():
    p = _fresh(30, 40)
    for fn in (
        init.uniform_,
        init.normal_,
        init.xavier_uniform_,
        init.xavier_normal_,
        init.kaiming_uniform_,
        init.kaiming_normal_,
        init.trunc_normal_,
        init.orthogonal_,
        init.zeros_,
    ):
        version = p._version_counter
        out = fn(p)
        assert out is p, fn.__name__
        assert p.is_leaf and p.grad_fn is None and p.requires_grad, fn.__name__
        assert p._version_counter > version, fn.__name__


def test_initialisers_keep_dtype():
    for dtype in ("float32", "float64"):
        p = _fresh(10, 10, dtype=dtype)
        init.kaiming_uniform_(p)
        init.trunc_normal_(p)
        init.orthogonal_(p)
        assert p.dtype.name == dtype


# -- Xavier and Kaiming ------------------------------------------------------------------------


def test_xavier_uniform_bound_and_std():
    ember.manual_seed(3)
    t = init.xavier_uniform_(_fresh(300, 200, 3), gain=2.0)
    fan_in, fan_out = 200 * 3, 300 * 3
    bound = 2.0 * math.sqrt(6.0 / (fan_in + fan_out))
    v = _values(t)
    assert np.abs(v).max() <= bound * (1 + 1e-6)
    assert np.abs(v).max() > 0.99 * bound
    _assert_moments(v, 0.0, bound / math.sqrt(3))


def test_xavier_normal_std():
    ember.manual_seed(4)
    v = _values(init.xavier_normal_(_fresh(400, 300), gain=0.5))
    _assert_moments(v, 0.0, 0.5 * math.sqrt(2.0 / 700))


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize(("nonlinearity", "a"), [("relu", 0), ("leaky_relu", 0.1), ("tanh", 0)])
def test_kaiming_uniform_bound_follows_mode_and_gain(mode, nonlinearity, a):
    ember.manual_seed(5)
    t = init.kaiming_uniform_(_fresh(120, 60, 3, 3), a=a, mode=mode, nonlinearity=nonlinearity)
    fan = 60 * 9 if mode == "fan_in" else 120 * 9
    bound = init.calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    v = _values(t)
    assert np.abs(v).max() <= bound * (1 + 1e-6)
    assert np.abs(v).max() > 0.99 * bound
    _assert_moments(v, 0.0, bound / math.sqrt(3))


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_normal_std_follows_mode(mode):
    ember.manual_seed(6)
    v = _values(init.kaiming_normal_(_fresh(200, 500), mode=mode, nonlinearity="relu"))
    fan = 500 if mode == "fan_in" else 200
    _assert_moments(v, 0.0, math.sqrt(2.0) / math.sqrt(fan))


def test_kaiming_on_zero_element_tensor_warns_and_does_nothing():
    t = ember.empty(0, 3)
    with pytest.warns(UserWarning, match="zero-element"):
        assert init.kaiming_uniform_(t) is t


# -- truncated normal --------------------------------------------------------------------------


def _phi(x):
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _cdf(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


@pytest.mark.parametrize(
    ("mean", "std", "a", "b"),
    [(0.0, 1.0, -2.0, 2.0), (1.0, 2.0, -1.0, 2.0), (0.0, 0.02, -0.04, 0.01)],
)
def test_trunc_normal_bounds_and_moments(mean, std, a, b):
    ember.manual_seed(7)
    v = _values(init.trunc_normal_(_fresh(300, 400, dtype="float64"), mean, std, a, b))
    assert v.min() >= a and v.max() <= b
    alpha, beta = (a - mean) / std, (b - mean) / std
    z = _cdf(beta) - _cdf(alpha)
    shift = (_phi(alpha) - _phi(beta)) / z
    expected_mean = mean + std * shift
    expected_std = std * math.sqrt(1 + (alpha * _phi(alpha) - beta * _phi(beta)) / z - shift**2)
    _assert_moments(v, expected_mean, expected_std)


def test_trunc_normal_inverse_cdf_is_accurate():
    x = ember.linspace(-4.0, 4.0, 401, dtype="float64")
    back = init._erfinv(ember.erf(x))
    np.testing.assert_allclose(back.numpy(), x.numpy(), rtol=0, atol=1e-9)


def test_trunc_normal_warns_when_mean_is_far_outside():
    with pytest.warns(UserWarning, match="mean is more than 2 std"):
        init.trunc_normal_(ember.empty(10), mean=10.0, std=1.0, a=-2.0, b=2.0)


# -- orthogonal --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4), (5, 2, 3, 3)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    ember.manual_seed(8)
    v = _values(init.orthogonal_(_fresh(*shape, dtype="float64"), gain=1.0))
    flat = v.reshape(shape[0], -1)
    rows, cols = flat.shape
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-10)


def test_orthogonal_gain_scales_and_small_dims_fail():
    ember.manual_seed(9)
    v = _values(init.orthogonal_(_fresh(5, 5, dtype="float64"), gain=3.0))
    np.testing.assert_allclose(v @ v.T, 9 * np.eye(5), atol=1e-9)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(ember.empty(4))


def test_orthogonal_matrices_differ_between_draws():
    a = _values(init.orthogonal_(_fresh(4, 4)))
    b = _values(init.orthogonal_(_fresh(4, 4)))
    assert not np.allclose(a, b)


# -- seeding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        init.uniform_,
        init.normal_,
        init.xavier_uniform_,
        init.kaiming_normal_,
        init.trunc_normal_,
        init.orthogonal_,
    ],
)
def test_same_seed_gives_same_values(fn):
    ember.manual_seed(123)
    first = _values(fn(_fresh(8, 5)))
    ember.manual_seed(123)
    second = _values(fn(_fresh(8, 5)))
    third = _values(fn(_fresh(8, 5)))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(second, third)


def test_same_seed_gives_same_model():
    def build():
        return nn.Sequential(nn.Linear(4, 8), nn.Conv2d(8, 4, 3), nn.Embedding(5, 3))

    ember.manual_seed(11)
    a = build().state_dict()
    ember.manual_seed(11)
    b = build().state_dict()
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_generator_argument_gives_its_own_stream():
    gen = ember.Generator().manual_seed(5)
    first = _values(init.kaiming_uniform_(_fresh(6, 6), generator=gen))
    gen.manual_seed(5)
    ember.manual_seed(99)  # the global stream must not matter
    second = _values(init.kaiming_uniform_(_fresh(6, 6), generator=gen))
    np.testing.assert_array_equal(first, second)


# -- default initialisation of layers ---------------------------------------------------------


def _check_default_linear_like(weight, bias, fan_in):
    bound = 1 / math.sqrt(fan_in)
    w, b = _values(weight), _values(bias)
    assert np.abs(w).max() <= bound * (1 + 1e-6) and np.abs(w).max() > 0.99 * bound
    _assert_moments(w, 0.0, bound / math.sqrt(3))
    assert np.abs(b).max() <= bound * (1 + 1e-6)
    assert np.abs(b).max() > 0.9 * bound


def test_linear_default_init_matches_pytorch_formula():
    ember.manual_seed(12)
    layer = nn.Linear(300, 400)
    _check_default_linear_like(layer.weight, layer.bias, 300)


def test_conv2d_default_init_matches_pytorch_formula():
    ember.manual_seed(13)
    layer = nn.Conv2d(16, 256, kernel_size=(3, 5), groups=2)
    assert tuple(layer.weight.shape) == (256, 8, 3, 5)
    _check_default_linear_like(layer.weight, layer.bias, 8 * 15)


def test_conv1d_default_init_matches_pytorch_formula():
    ember.manual_seed(14)
    layer = nn.Conv1d(20, 500, kernel_size=7)
    _check_default_linear_like(layer.weight, layer.bias, 140)


def test_embedding_default_init_is_standard_normal_with_zero_padding_row():
    ember.manual_seed(15)
    layer = nn.Embedding(1000, 64, padding_idx=3)
    v = _values(layer.weight)
    assert np.all(v[3] == 0)
    rest = np.delete(v, 3, axis=0)
    _assert_moments(rest, 0.0, 1.0)


def test_norm_layers_start_at_identity_affine():
    for layer in (nn.BatchNorm2d(5), nn.LayerNorm(5), nn.GroupNorm(5, 5)):
        assert np.all(_values(layer.weight) == 1) and np.all(_values(layer.bias) == 0)
    bn = nn.BatchNorm1d(5)
    assert np.all(_values(bn.running_mean) == 0) and np.all(_values(bn.running_var) == 1)
    assert bn.num_batches_tracked.item() == 0 and bn.num_batches_tracked.dtype == ember.int64


def test_multihead_attention_default_init():
    ember.manual_seed(16)
    mha = nn.MultiheadAttention(96, 4)
    bound = math.sqrt(6.0 / (96 + 3 * 96))
    w = _values(mha.in_proj_weight)
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    _assert_moments(w, 0.0, bound / math.sqrt(3))
    assert np.all(_values(mha.in_proj_bias) == 0) and np.all(_values(mha.out_proj.bias) == 0)
    # out_proj keeps Linear's own initialisation
    out_bound = 1 / math.sqrt(96)
    assert np.abs(_values(mha.out_proj.weight)).max() <= out_bound * (1 + 1e-6)


def test_reset_parameters_redraws():
    ember.manual_seed(17)
    layer = nn.Linear(10, 10)
    before = _values(layer.weight).copy()
    layer.reset_parameters()
    assert not np.array_equal(before, _values(layer.weight))


def test_no_warnings_from_default_construction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.TransformerEncoderLayer(16, 4, 32)
