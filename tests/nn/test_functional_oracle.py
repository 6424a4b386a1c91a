"""ember.nn.functional against torch.nn.functional: values and gradients, float32 and float64.

Each case is one lambda `case(f, *args)` called once with f = ember.nn.functional and once
with f = torch.nn.functional, on the same random inputs. Float arrays become tensors that
require grad (their gradients are compared after a backward with a random cotangent);
`Const` arrays, integer and bool arrays become constants. Inputs keep away from kinks (0 for
relu, the bounds of hardtanh, ties for max) where the two frameworks may pick different
subgradients.
"""

from __future__ import annotations

import math
import warnings

import ember
import ember.nn.functional as F
import numpy as np
import pytest

torch = pytest.importorskip("torch")
TF = torch.nn.functional
pytestmark = pytest.mark.oracle

DTYPES = ["float32", "float64"]
TOLERANCE = {"float32": {"rtol": 2e-4, "atol": 2e-5}, "float64": {"rtol": 1e-9, "atol": 1e-11}}


class Const:
    """A float input that takes no gradient (a target, a float mask, a running statistic)."""

    def __init__(self, array):
        self.array = np.asarray(array)


def _to_frameworks(value, dtype):
    """(ember value, torch value, differentiable?) for one case argument."""
    if isinstance(value, Const):
        a = value.array.astype(dtype) if value.array.dtype.kind == "f" else value.array
        return ember.tensor(a), torch.tensor(a), False
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            a = value.astype(dtype)
            return (ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True), True)
        return ember.tensor(value), torch.tensor(value), False
    return value, value, False


def _numpy(t) -> np.ndarray:
    if isinstance(t, ember.Tensor):
        return t.detach().numpy()
    return t.detach().numpy()


def assert_close(ours, theirs, dtype, what, scale=1.0):
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(
        _numpy(ours),
        _numpy(theirs),
        rtol=tol["rtol"] * scale,
        atol=tol["atol"] * scale,
        equal_nan=True,
        err_msg=what,
    )


def check(case, args, dtype, *, seed=0, scale=1.0, backward=True):
    """Run case on both frameworks; compare the output, then every input gradient."""
    pairs = [_to_frameworks(a, dtype) for a in args]
    ours_in = [p[0] for p in pairs]
    theirs_in = [p[1] for p in pairs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = case(F, *ours_in)
        theirs = case(TF, *theirs_in)
    assert tuple(ours.shape) == tuple(theirs.shape), (ours.shape, theirs.shape)
    assert ours.dtype.name == str(theirs.dtype).replace("torch.", "")
    assert_close(ours, theirs, dtype, "forward values", scale)
    if not backward or not any(p[2] for p in pairs):
        return ours, theirs
    cotangent = np.random.default_rng(seed + 1).standard_normal(tuple(ours.shape)).astype(dtype)
    ours.backward(ember.tensor(cotangent))
    theirs.backward(torch.tensor(cotangent))
    for i, (o, t, differentiable) in enumerate(pairs):
        if differentiable:
            assert o.grad is not None, f"no gradient for argument {i}"
            assert_close(o.grad, t.grad, dtype, f"gradient of argument {i}", scale)
    return ours, theirs


# -- inputs ----------------------------------------------------------------------------------


def rng(seed=0):
    return np.random.default_rng(seed)


def normal(r, *shape, std=1.0):
    return r.standard_normal(shape) * std


def nonzero(r, *shape, low=0.1, high=2.0):
    """Magnitudes in [low, high] with random signs: away from the kink at 0."""
    return r.uniform(low, high, shape) * r.choice([-1.0, 1.0], shape)


def distinct(r, *shape):
    """Values 0.13 apart in random order: no ties for max pooling."""
    n = int(np.prod(shape))
    return ((r.permutation(n) - n / 2) * 0.13 + 0.01).reshape(shape)


def probabilities(r, *shape, axis=-1):
    p = r.uniform(0.05, 1.0, shape)
    return p / p.sum(axis=axis, keepdims=True)


# -- elementwise and softmax family ----------------------------------------------------------

ELEMENTWISE = {
    "relu": lambda f, x: f.relu(x),
    "relu6": lambda f, x: f.relu6(x * 4),
    "hardtanh": lambda f, x: f.hardtanh(x, -0.5, 0.7),
    "leaky_relu": lambda f, x: f.leaky_relu(x),
    "leaky_relu_slope": lambda f, x: f.leaky_relu(x, 0.2),
    "elu": lambda f, x: f.elu(x, 0.7),
    # alpha 0.5: torch rounds 1/alpha in its backward (a 2e-8 error for alpha 0.7)
    "celu": lambda f, x: f.celu(x, 0.5),
    "softsign": lambda f, x: f.softsign(x),
    "selu": lambda f, x: f.selu(x),
    "gelu": lambda f, x: f.gelu(x),
    "gelu_tanh": lambda f, x: f.gelu(x, approximate="tanh"),
    "sigmoid": lambda f, x: f.sigmoid(x),
    "tanh": lambda f, x: f.tanh(x),
    "silu": lambda f, x: f.silu(x),
    "softplus": lambda f, x: f.softplus(x),
    "softplus_beta_threshold": lambda f, x: f.softplus(x * 10, beta=2.0, threshold=5.0),
    "logsigmoid": lambda f, x: f.logsigmoid(x * 5),
    "hardsigmoid": lambda f, x: f.hardsigmoid(x * 2),
    "hardswish": lambda f, x: f.hardswish(x * 2),
    "mish": lambda f, x: f.mish(x * 3),
}


def _tolerance_scale(name: str, dtype: str) -> float:
    """torch's float64 hardsigmoid and hardswish backward use 1/6 and 1/3 rounded to float32."""
    return 1e3 if name in ("hardsigmoid", "hardswish") and dtype == "float64" else 1.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_activation_matches_torch(name, dtype):
    x = nonzero(rng(), 4, 5)
    # keep clear of the kinks of relu6 (x * 4 = 6), hardtanh, hardsigmoid and hardswish (+-3)
    x = np.where(np.abs(np.abs(x) - 1.5) < 0.05, x + 0.2, x)
    x = np.where(np.abs(np.abs(x) - 0.6) < 0.05, x + 0.2, x)
    x = np.where(np.abs(np.abs(x) - 0.5) < 0.05, x + 0.2, x)
    x = np.where(np.abs(np.abs(x) - 0.7) < 0.05, x + 0.2, x)
    check(ELEMENTWISE[name], [x], dtype, scale=_tolerance_scale(name, dtype))


KINKS = {
    "relu": lambda f, x: f.relu(x),
    "relu6": lambda f, x: f.relu6(x * 2),
    "hardtanh": lambda f, x: f.hardtanh(x),
    "leaky_relu": lambda f, x: f.leaky_relu(x, 0.1),
    "elu": lambda f, x: f.elu(x, 0.5),
    "logsigmoid": lambda f, x: f.logsigmoid(x),
    "softplus": lambda f, x: f.softplus(x, beta=2.0, threshold=6.0),
    "hardsigmoid": lambda f, x: f.hardsigmoid(x),
    "hardswish": lambda f, x: f.hardswish(x),
    "l1_loss": lambda f, x: f.l1_loss(x, x.detach() * 0, reduction="none"),
    "smooth_l1_loss": lambda f, x: f.smooth_l1_loss(x, x.detach() * 0, reduction="none"),
    "huber_loss": lambda f, x: f.huber_loss(x, x.detach() * 0, reduction="none"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(KINKS))
def test_gradient_at_kinks_is_torchs_choice(name, dtype):
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0, 0.5])
    check(KINKS[name], [x], dtype, scale=_tolerance_scale(name, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu_matches_torch_per_channel_and_shared(dtype):
    r = rng(1)
    x = nonzero(r, 2, 3, 4)
    check(lambda f, x, w: f.prelu(x, w), [x, r.uniform(0.1, 0.5, 3)], dtype)
    check(lambda f, x, w: f.prelu(x, w), [x, r.uniform(0.1, 0.5, 1)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_glu_matches_torch(dim, dtype):
    check(lambda f, x: f.glu(x, dim), [normal(rng(2), 4, 6, 2)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_family_matches_torch(name, dim, dtype):
    x = normal(rng(3), 3, 4, 5, std=3.0)
    check(lambda f, x: getattr(f, name)(x, dim), [x], dtype)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dtype_argument_casts_first(name):
    x = normal(rng(4), 3, 5)
    ours, _theirs = check(
        lambda f, x: getattr(f, name)(x, 1, dtype=f_dtype(f, "float64")), [x], "float32"
    )
    assert ours.dtype is ember.float64


def f_dtype(f, name):
    return getattr(torch, name) if f is TF else getattr(ember, name)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_implicit_dim_picks_torchs_dim_and_warns(name):
    x = normal(rng(5), 2, 3, 4)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        ours = getattr(F, name)(ember.tensor(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = getattr(TF, name)(torch.tensor(x))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_logits_keep_softmax_and_log_softmax_exact(dtype):
    x = np.array([[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, 1000.0], [3.0, 1.0, 2.0]])
    check(lambda f, x: f.log_softmax(x, 1), [x], dtype)
    check(lambda f, x: f.softmax(x, 1), [x], dtype)


# -- linear, convolution and pooling ---------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_matches_torch(dtype):
    r = rng(6)
    x, w, b = normal(r, 2, 3, 4), normal(r, 5, 4), normal(r, 5)
    check(lambda f, x, w, b: f.linear(x, w, b), [x, w, b], dtype)
    check(lambda f, x, w: f.linear(x, w), [x, w], dtype)
    check(lambda f, x, w: f.linear(x, w), [normal(r, 4), normal(r, 4)], dtype)


CONV2D = {
    "plain": {},
    "stride_padding": {"stride": 2, "padding": 1},
    "tuple_args": {"stride": (1, 2), "padding": (2, 1), "dilation": (2, 1)},
    "groups": {"groups": 2},
    "same": {"padding": "same"},
    "same_dilated_even_kernel": {"padding": "same", "dilation": (1, 3)},
    "valid": {"padding": "valid"},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CONV2D))
def test_conv2d_matches_torch(name, dtype):
    r = rng(7)
    kwargs = CONV2D[name]
    groups = kwargs.get("groups", 1)
    kernel = (2, 3) if "even" in name else (3, 3)
    x, w, b = normal(r, 2, 4, 7, 8), normal(r, 6, 4 // groups, *kernel), normal(r, 6)
    check(lambda f, x, w, b: f.conv2d(x, w, b, **kwargs), [x, w, b], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_unbatched_without_bias_matches_torch(dtype):
    r = rng(8)
    check(
        lambda f, x, w: f.conv2d(x, w, padding=1),
        [normal(r, 3, 5, 5), normal(r, 2, 3, 3, 3)],
        dtype,
    )


CONV1D = {
    "plain": {},
    "stride_padding_dilation": {"stride": 2, "padding": 2, "dilation": 2},
    "tuple_args": {"stride": (2,), "padding": (1,)},
    "groups": {"groups": 2},
    "same": {"padding": "same"},
    "valid": {"padding": "valid"},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CONV1D))
def test_conv1d_matches_torch(name, dtype):
    r = rng(9)
    kwargs = CONV1D[name]
    groups = kwargs.get("groups", 1)
    x, w, b = normal(r, 2, 4, 11), normal(r, 6, 4 // groups, 4), normal(r, 6)
    check(lambda f, x, w, b: f.conv1d(x, w, b, **kwargs), [x, w, b], dtype)
    check(lambda f, x, w: f.conv1d(x, w, **kwargs), [x[0], w], dtype)


POOL2D = {
    "max_plain": lambda f, x: f.max_pool2d(x, 2),
    "max_stride_padding": lambda f, x: f.max_pool2d(x, 3, stride=2, padding=1),
    "max_dilation_ceil": lambda f, x: f.max_pool2d(
        x, (2, 3), stride=(2, 1), dilation=(2, 1), ceil_mode=True
    ),
    "avg_plain": lambda f, x: f.avg_pool2d(x, 2),
    "avg_padding_exclude": lambda f, x: f.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
    "avg_ceil": lambda f, x: f.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
    "avg_divisor": lambda f, x: f.avg_pool2d(x, 2, divisor_override=3),
    "max1d": lambda f, x: f.max_pool1d(x.flatten(2), 3, stride=2, padding=1),
    "max1d_dilated_ceil": lambda f, x: f.max_pool1d(x.flatten(2), 2, 3, 0, 2, True),
    "avg1d": lambda f, x: f.avg_pool1d(x.flatten(2), 4, stride=3, padding=2, ceil_mode=True),
    "avg1d_exclude": lambda f, x: f.avg_pool1d(x.flatten(2), 3, 2, 1, count_include_pad=False),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(POOL2D))
def test_pooling_matches_torch(name, dtype):
    check(POOL2D[name], [distinct(rng(10), 2, 3, 7, 6)], dtype)


ADAPTIVE = [(3, 2), 3, (None, 4), (7, 6), (4, None), 1, (5, 4), (2, 6), (9, 10)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_size", ADAPTIVE, ids=str)
def test_adaptive_avg_pool2d_matches_torch(output_size, dtype):
    x = normal(rng(11), 2, 3, 7, 6)
    check(lambda f, x: f.adaptive_avg_pool2d(x, output_size), [x], dtype)
    check(lambda f, x: f.adaptive_avg_pool2d(x, output_size), [x[0]], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_size", [1, 3, 4, 5, 9, 12])
def test_adaptive_avg_pool1d_matches_torch(output_size, dtype):
    x = normal(rng(12), 2, 3, 12)
    check(lambda f, x: f.adaptive_avg_pool1d(x, output_size), [x], dtype)
    check(lambda f, x: f.adaptive_avg_pool1d(x, output_size), [x[:, :, :7]], dtype)


# -- normalization ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_matches_torch(dtype):
    r = rng(13)
    x = normal(r, 2, 3, 4, 5, std=2.0) + 1.0
    check(
        lambda f, x, w, b: f.layer_norm(x, (4, 5), w, b),
        [x, normal(r, 4, 5), normal(r, 4, 5)],
        dtype,
    )
    check(lambda f, x: f.layer_norm(x, [5], eps=1e-3), [x], dtype)
    check(lambda f, x, w: f.layer_norm(x, [5], w), [x, normal(r, 5)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("groups", [1, 2, 6])
def test_group_norm_matches_torch(groups, dtype):
    r = rng(14)
    x = normal(r, 2, 6, 3, 4) * 3 + 1
    check(
        lambda f, x, w, b: f.group_norm(x, groups, w, b, eps=1e-4),
        [x, normal(r, 6), normal(r, 6)],
        dtype,
    )
    check(lambda f, x: f.group_norm(x, groups), [x[:, :, :, 0]], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6), (2, 3, 4, 5)], ids=str)
def test_batch_norm_training_matches_torch_values_grads_and_running_stats(shape, dtype):
    r = rng(15)
    x = normal(r, *shape) * 2 + 0.5
    w, b = normal(r, 3), normal(r, 3)
    mean0, var0 = normal(r, 3), r.uniform(0.5, 2.0, 3)
    ours_stats = [ember.tensor(mean0.astype(dtype)), ember.tensor(var0.astype(dtype))]
    theirs_stats = [torch.tensor(mean0.astype(dtype)), torch.tensor(var0.astype(dtype))]

    def case(f, x, w, b):
        rm, rv = ours_stats if f is F else theirs_stats
        return f.batch_norm(x, rm, rv, w, b, training=True, momentum=0.3, eps=1e-4)

    check(case, [x, w, b], dtype)
    for ours, theirs in zip(ours_stats, theirs_stats):
        assert_close(ours, theirs, dtype, "running statistics")
    assert not np.allclose(ours_stats[1].numpy(), var0)  # they did move


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_eval_uses_running_stats_like_torch(dtype):
    r = rng(16)
    x = normal(r, 4, 3, 5)
    mean, var = Const(normal(r, 3)), Const(r.uniform(0.5, 2.0, 3))
    check(
        lambda f, x, m, v, w, b: f.batch_norm(x, m, v, w, b),
        [x, mean, var, normal(r, 3), normal(r, 3)],
        dtype,
    )
    check(lambda f, x, m, v: f.batch_norm(x, m, v, training=False, eps=0.0), [x, mean, var], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_without_running_stats_uses_batch_stats_like_torch(dtype):
    check(
        lambda f, x: f.batch_norm(x, None, None, training=True), [normal(rng(17), 6, 2, 3)], dtype
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, math.inf])
def test_normalize_matches_torch(p, dtype):
    x = distinct(rng(18), 3, 4, 2)
    check(lambda f, x: f.normalize(x, p=p), [x], dtype)
    check(lambda f, x: f.normalize(x, p=p, dim=-1), [x], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalize_zero_vector_matches_torch(dtype):
    x = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 2.0]])
    check(lambda f, x: f.normalize(x, dim=1), [x], dtype)


# -- embedding, one_hot, pad, dropout --------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_matches_torch_with_repeats(dtype):
    r = rng(19)
    index = np.array([[1, 3, 1], [0, 4, 1]])
    check(lambda f, i, w: f.embedding(i, w), [index, normal(r, 5, 3)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_idx", [0, 2, -1])
def test_embedding_padding_idx_row_gets_no_gradient_like_torch(padding_idx, dtype):
    r = rng(20)
    index = np.array([[2, 0, 4, 2], [4, 1, 0, 3]])
    check(
        lambda f, i, w: f.embedding(i, w, padding_idx=padding_idx), [index, normal(r, 5, 3)], dtype
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 1])
def test_embedding_scale_grad_by_freq_matches_torch(padding_idx, dtype):
    index = np.array([[1, 3, 1], [1, 4, 3]])
    check(
        lambda f, i, w: f.embedding(i, w, padding_idx, scale_grad_by_freq=True),
        [index, normal(rng(21), 6, 2)],
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, 1.0])
def test_embedding_max_norm_renormalizes_looked_up_rows_in_place_like_torch(norm_type, dtype):
    weight = normal(rng(22), 6, 3) * 2
    index = np.array([0, 2, 2, 5])
    ours_w, theirs_w = ember.tensor(weight.astype(dtype)), torch.tensor(weight.astype(dtype))
    ours = F.embedding(ember.tensor(index), ours_w, max_norm=1.5, norm_type=norm_type)
    theirs = TF.embedding(torch.tensor(index), theirs_w, max_norm=1.5, norm_type=norm_type)
    assert_close(ours, theirs, dtype, "looked-up rows")
    assert_close(ours_w, theirs_w, dtype, "renormalized weight")
    untouched = [1, 3, 4]
    np.testing.assert_array_equal(ours_w.numpy()[untouched], weight.astype(dtype)[untouched])


@pytest.mark.parametrize("num_classes", [-1, 6])
def test_one_hot_matches_torch(num_classes):
    index = np.array([[0, 3], [2, 1]])
    ours = F.one_hot(ember.tensor(index), num_classes)
    theirs = TF.one_hot(torch.tensor(index), num_classes)
    assert ours.dtype is ember.int64
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


PADS = {
    "constant": lambda f, x: f.pad(x, (1, 2)),
    "constant_value_2d": lambda f, x: f.pad(x, (1, 0, 2, 1), value=-1.5),
    "constant_negative_crops": lambda f, x: f.pad(x, (-1, 2, 0, -1)),
    "constant_three_dims": lambda f, x: f.pad(x, (0, 1, 1, 0, 2, 1)),
    "reflect": lambda f, x: f.pad(x, (2, 1, 1, 2), mode="reflect"),
    "replicate": lambda f, x: f.pad(x, (3, 1, 0, 2), mode="replicate"),
    "circular": lambda f, x: f.pad(x, (2, 1, 1, 2), mode="circular"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(PADS))
def test_pad_matches_torch(name, dtype):
    check(PADS[name], [normal(rng(23), 2, 3, 4, 5)], dtype)


def test_dropout_in_eval_or_with_p0_is_identity_like_torch():
    x = normal(rng(24), 3, 4)
    for kwargs in ({"training": False}, {"p": 0.0}):
        ours = F.dropout(ember.tensor(x), **kwargs)
        theirs = TF.dropout(torch.tensor(x), **kwargs)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_p1_zeroes_everything_like_torch(dtype):
    check(lambda f, x: f.dropout(x, p=1.0), [normal(rng(25), 3, 4)], dtype)


# -- attention -------------------------------------------------------------------------------


def _qkv(r, batch=(2, 3), length=4, source=5, embed=6, value_embed=3):
    return (
        normal(r, *batch, length, embed),
        normal(r, *batch, source, embed),
        normal(r, *batch, source, value_embed),
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_sdpa_matches_torch_without_mask(dtype):
    check(lambda f, q, k, v: f.scaled_dot_product_attention(q, k, v), list(_qkv(rng(26))), dtype)
    check(
        lambda f, q, k, v: f.scaled_dot_product_attention(q, k, v, scale=0.3),
        list(_qkv(rng(27), batch=(2,))),
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_sdpa_bool_mask_true_takes_part_like_torch(dtype):
    r = rng(28)
    mask = r.random((4, 5)) < 0.6
    mask[:, 0] = True
    check(
        lambda f, q, k, v, m: f.scaled_dot_product_attention(q, k, v, attn_mask=m),
        [*_qkv(r), mask],
        dtype,
    )
    batched_mask = r.random((2, 1, 4, 5)) < 0.6
    batched_mask[..., 1] = True
    check(
        lambda f, q, k, v, m: f.scaled_dot_product_attention(q, k, v, attn_mask=m),
        [*_qkv(r), batched_mask],
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_sdpa_float_mask_is_added_like_torch_and_gets_gradient(dtype):
    r = rng(29)
    check(
        lambda f, q, k, v, m: f.scaled_dot_product_attention(q, k, v, attn_mask=m),
        [*_qkv(r), normal(r, 4, 5)],
        dtype,
    )
    additive = np.where(r.random((4, 5)) < 0.4, -np.inf, 0.0)
    additive[:, 2] = 0.0
    check(
        lambda f, q, k, v, m: f.scaled_dot_product_attention(q, k, v, attn_mask=m),
        [*_qkv(r), Const(additive)],
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("length,source", [(4, 4), (3, 5), (5, 3)])
def test_sdpa_causal_matches_torch(length, source, dtype):
    check(
        lambda f, q, k, v: f.scaled_dot_product_attention(q, k, v, is_causal=True),
        list(_qkv(rng(30), length=length, source=source)),
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_sdpa_fully_masked_rows_give_zeros_and_zero_gradients_like_torch(dtype):
    r = rng(31)
    mask = r.random((4, 5)) < 0.6
    mask[1] = False
    mask[3] = False
    mask[0, 0] = mask[2, 0] = True
    ours, _ = check(
        lambda f, q, k, v, m: f.scaled_dot_product_attention(q, k, v, attn_mask=m),
        [*_qkv(r), mask],
        dtype,
    )
    assert np.all(ours.detach().numpy()[..., [1, 3], :] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sdpa_grouped_query_attention_matches_torch(dtype):
    r = rng(32)
    q, k, v = normal(r, 2, 6, 4, 5), normal(r, 2, 2, 3, 5), normal(r, 2, 2, 3, 4)
    check(
        lambda f, q, k, v: f.scaled_dot_product_attention(q, k, v, enable_gqa=True),
        [q, k, v],
        dtype,
    )


def test_sdpa_dropout_p1_zeroes_the_output_like_torch():
    check(
        lambda f, q, k, v: f.scaled_dot_product_attention(q, k, v, dropout_p=1.0),
        list(_qkv(rng(33))),
        "float64",
    )


# -- losses ----------------------------------------------------------------------------------

REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 2, 3), (4,)], ids=str)
def test_cross_entropy_class_indices_matches_torch(shape, reduction, dtype):
    r = rng(34)
    logits = normal(r, *shape, std=2.0)
    classes = shape[0] if len(shape) == 1 else shape[1]
    target_shape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    target = r.integers(0, classes, target_shape)
    check(lambda f, x, t: f.cross_entropy(x, t, reduction=reduction), [logits, target], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5)], ids=str)
def test_cross_entropy_weight_ignore_index_and_smoothing_match_torch(
    shape, smoothing, reduction, dtype
):
    r = rng(35)
    logits = normal(r, *shape, std=2.0)
    target = r.integers(0, 4, (shape[0],) + shape[2:])
    target.reshape(-1)[::3] = 2  # ignored positions
    weight = Const(r.uniform(0.2, 2.0, 4))

    def case(f, x, t, w):
        return f.cross_entropy(
            x, t, weight=w, ignore_index=2, reduction=reduction, label_smoothing=smoothing
        )

    check(case, [logits, target, weight], dtype)
    check(
        lambda f, x, t: f.cross_entropy(
            x, t, ignore_index=2, reduction=reduction, label_smoothing=smoothing
        ),
        [logits, target],
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_all_targets_ignored_matches_torch(smoothing, dtype):
    r = rng(36)
    logits, target = normal(r, 3, 4), np.full(3, -100)
    for reduction in REDUCTIONS:
        ours, _ = check(
            lambda f, x, t, reduction=reduction: f.cross_entropy(
                x, t, reduction=reduction, label_smoothing=smoothing
            ),
            [logits, target],
            dtype,
        )
    weight = Const(r.uniform(0.5, 1.5, 4))
    ours, _ = check(
        lambda f, x, t, w: f.cross_entropy(x, t, w, label_smoothing=smoothing),
        [logits, target, weight],
        dtype,
    )
    assert math.isnan(ours.item())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
def test_cross_entropy_class_probabilities_match_torch(smoothing, reduction, dtype):
    r = rng(37)
    logits = normal(r, 3, 4, 2, std=2.0)
    target = probabilities(r, 3, 4, 2, axis=1)
    weight = Const(r.uniform(0.2, 2.0, 4))
    check(
        lambda f, x, t: f.cross_entropy(x, t, reduction=reduction, label_smoothing=smoothing),
        [logits, target],
        dtype,
    )
    check(
        lambda f, x, t, w: f.cross_entropy(x, t, w, reduction=reduction, label_smoothing=smoothing),
        [logits, Const(target), weight],
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_extreme_logits_stay_finite_and_match_torch(dtype):
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0], [0.0, 0.0, -1000.0]])
    target = np.array([1, 0, 2])
    for smoothing in (0.0, 0.1):
        ours, _ = check(
            lambda f, x, t, smoothing=smoothing: f.cross_entropy(x, t, label_smoothing=smoothing),
            [logits, target],
            dtype,
        )
        assert np.isfinite(ours.item())
    probs = Const(np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
    ours, _ = check(lambda f, x, t: f.cross_entropy(x, t), [logits, probs], dtype)
    assert np.isfinite(ours.item())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_matches_torch(reduction, dtype):
    r = rng(38)
    logp = np.log(probabilities(r, 5, 4, 3, axis=1))
    target = r.integers(0, 4, (5, 3))
    target[0, 1] = target[3, 2] = -100
    weight = Const(r.uniform(0.5, 2.0, 4))
    check(lambda f, x, t: f.nll_loss(x, t, reduction=reduction), [logp, target], dtype)
    check(
        lambda f, x, t, w: f.nll_loss(x, t, w, reduction=reduction), [logp, target, weight], dtype
    )
    check(
        lambda f, x, t: f.nll_loss(x, t, ignore_index=1, reduction=reduction),
        [logp[:, :, 0], target[:, 0] % 4],
        dtype,
    )
    check(
        lambda f, x, t: f.nll_loss(x, t, reduction=reduction),
        [logp[0, :, 0], np.array(target[1, 0])],
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses_match_torch(reduction, dtype):
    r = rng(39)
    x, y = normal(r, 4, 5, std=2.0), normal(r, 4, 5, std=2.0)
    weight = Const(r.uniform(0.1, 2.0, (4, 5)))
    for case in (
        lambda f, x, y: f.mse_loss(x, y, reduction=reduction),
        lambda f, x, y: f.l1_loss(x, y, reduction=reduction),
        lambda f, x, y: f.smooth_l1_loss(x, y, reduction=reduction),
        lambda f, x, y: f.smooth_l1_loss(x, y, reduction=reduction, beta=0.5),
        lambda f, x, y: f.smooth_l1_loss(x, y, reduction=reduction, beta=0.0),
        lambda f, x, y: f.huber_loss(x, y, reduction=reduction),
        lambda f, x, y: f.huber_loss(x, y, reduction=reduction, delta=2.5),
    ):
        check(case, [x, y], dtype)
    for case in (
        lambda f, x, y, w: f.mse_loss(x, y, reduction=reduction, weight=w),
        lambda f, x, y, w: f.l1_loss(x, y, reduction=reduction, weight=w),
        lambda f, x, y, w: f.huber_loss(x, y, reduction=reduction, delta=0.7, weight=w),
    ):
        check(case, [x, y, weight], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_losses_broadcast_targets_like_torch(dtype):
    r = rng(40)
    check(lambda f, x, y: f.mse_loss(x, y), [normal(r, 3, 4), normal(r, 4)], dtype)
    check(lambda f, x, y: f.l1_loss(x, y, reduction="sum"), [normal(r, 3, 1), normal(r, 4)], dtype)


def test_legacy_size_average_and_reduce_pick_torchs_reduction():
    r = rng(41)
    x, y = normal(r, 3, 4), normal(r, 3, 4)
    for size_average, reduce in [(False, None), (None, False), (True, True), (False, True)]:
        check(
            lambda f, x, y, size_average=size_average, reduce=reduce: f.mse_loss(
                x, y, size_average=size_average, reduce=reduce
            ),
            [x, y],
            "float64",
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_matches_torch(reduction, dtype):
    r = rng(42)
    p, t = r.uniform(0.05, 0.95, (4, 3)), Const(r.uniform(0, 1, (4, 3)))
    check(lambda f, x, t: f.binary_cross_entropy(x, t, reduction=reduction), [p, t], dtype)
    check(
        lambda f, x, t, w: f.binary_cross_entropy(x, t, w, reduction=reduction),
        [p, t, Const(r.uniform(0.5, 2, 3))],
        dtype,
    )
    check(
        lambda f, x, t: f.binary_cross_entropy(x, t, reduction=reduction),
        [p, r.uniform(0, 1, (4, 3))],
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_clamps_log_at_minus_100_like_torch(dtype):
    p = Const(np.array([0.0, 1.0, 0.0, 1.0, 1e-50 if dtype == "float64" else 0.0]))
    t = Const(np.array([1.0, 0.0, 0.0, 1.0, 1.0]))
    ours, _theirs = check(
        lambda f, x, t: f.binary_cross_entropy(x, t, reduction="none"), [p, t], dtype
    )
    np.testing.assert_array_equal(ours.numpy()[:2], [100.0, 100.0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits_matches_torch(reduction, dtype):
    r = rng(43)
    x, t = normal(r, 4, 3, std=3.0), r.uniform(0, 1, (4, 3))
    weight, pos_weight = Const(r.uniform(0.5, 2, (4, 1))), Const(r.uniform(0.5, 3, 3))
    check(
        lambda f, x, t: f.binary_cross_entropy_with_logits(x, t, reduction=reduction), [x, t], dtype
    )
    check(
        lambda f, x, t, w, pw: f.binary_cross_entropy_with_logits(
            x, t, w, reduction=reduction, pos_weight=pw
        ),
        [x, Const(t.round()), weight, pos_weight],
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_with_extreme_logits_stays_finite_like_torch(dtype):
    x = np.array([1000.0, -1000.0, 1000.0, -1000.0, 0.0])
    t = Const(np.array([0.0, 1.0, 1.0, 0.0, 1.0]))
    pos_weight = Const(np.array([2.0]))
    ours, _ = check(
        lambda f, x, t: f.binary_cross_entropy_with_logits(x, t, reduction="none"), [x, t], dtype
    )
    np.testing.assert_array_equal(ours.detach().numpy()[:4], [1000.0, 1000.0, 0.0, 0.0])
    ours, _ = check(
        lambda f, x, t, pw: f.binary_cross_entropy_with_logits(x, t, pos_weight=pw),
        [x, t, pos_weight],
        dtype,
    )
    assert np.isfinite(ours.item())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
def test_kl_div_matches_torch(reduction, dtype):
    r = rng(44)
    logq = np.log(probabilities(r, 3, 5))
    p = probabilities(r, 3, 5)
    check(lambda f, x, t: f.kl_div(x, t, reduction=reduction), [logq, p], dtype)
    p[0, 1] = 0.0  # 0 * log(0) counts as 0 (torch's target gradient there is NaN: not compared)
    check(lambda f, x, t: f.kl_div(x, t, reduction=reduction), [logq, Const(p)], dtype)
    check(
        lambda f, x, t: f.kl_div(x, t, reduction=reduction, log_target=True),
        [logq, np.log(probabilities(r, 3, 5))],
        dtype,
    )
