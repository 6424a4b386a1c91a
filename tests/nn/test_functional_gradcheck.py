"""gradcheck in float64 of every function of ember.nn.functional, through the public API.

Each case is (function, inputs): float64 leaves that require grad, built from a seeded
generator, plus constants (targets, masks, running statistics). Inputs keep away from kinks
(0 for relu, the bounds of hardtanh, |d| = beta for smooth_l1, ties for max pooling). Random
functions (dropout) reseed before each call, so that every evaluation draws the same mask.
A coverage test fails when a differentiable function of F has no case.
"""

from __future__ import annotations

import inspect

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember.autograd import gradcheck, gradgradcheck

NOT_DIFFERENTIABLE = {"one_hot"}


def leaf(array) -> ember.Tensor:
    return ember.tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


def const(array, dtype=None) -> ember.Tensor:
    return ember.tensor(np.asarray(array), dtype=dtype)


def normal(r, *shape, std=1.0):
    return leaf(r.standard_normal(shape) * std)


def nonzero(r, *shape, low=0.2, high=1.5):
    """Magnitudes in [low, high] with random signs: away from the kink at 0."""
    return leaf(r.uniform(low, high, shape) * r.choice([-1.0, 1.0], shape))


def distinct(r, *shape):
    """Values 0.1 apart in random order: no ties for max pooling."""
    n = int(np.prod(shape))
    return leaf(((r.permutation(n) - n / 2) * 0.1 + 0.01).reshape(shape))


def probabilities(r, *shape, axis=-1):
    p = r.uniform(0.1, 1.0, shape)
    return p / p.sum(axis=axis, keepdims=True)


def seeded(fn, seed=0):
    """fn with the generator reseeded before each call: the same random draw every time."""

    def run(*args):
        ember.manual_seed(seed)
        return fn(*args)

    return run


def _cases():
    r = np.random.default_rng(0)
    x = nonzero(r, 2, 3)
    cases = {
        "relu": (F.relu, [x]),
        "relu6": (lambda x: F.relu6(x * 5), [x]),
        "hardtanh": (lambda x: F.hardtanh(x, -0.9, 0.8), [x]),
        "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), [x]),
        "elu": (lambda x: F.elu(x, 0.5), [x]),
        "celu": (lambda x: F.celu(x, 0.5), [x]),
        "softsign": (F.softsign, [x]),
        "selu": (F.selu, [x]),
        "gelu": (F.gelu, [x]),
        "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), [x]),
        "sigmoid": (F.sigmoid, [x]),
        "tanh": (F.tanh, [x]),
        "silu": (F.silu, [x]),
        "softplus": (lambda x: F.softplus(x * 4, beta=1.5, threshold=3.0), [x]),
        "logsigmoid": (lambda x: F.logsigmoid(x * 3), [x]),
        "hardsigmoid": (lambda x: F.hardsigmoid(x * 2), [x]),
        "hardswish": (lambda x: F.hardswish(x * 2.5), [x]),
        "mish": (F.mish, [x]),
        "prelu": (F.prelu, [nonzero(r, 2, 3, 2), leaf(r.uniform(0.1, 0.5, 3))]),
        "glu": (lambda x: F.glu(x, 1), [normal(r, 2, 4)]),
        "softmax": (lambda x: F.softmax(x, 1), [normal(r, 2, 4)]),
        "softmin": (lambda x: F.softmin(x, 0), [normal(r, 3, 2)]),
        "log_softmax": (lambda x: F.log_softmax(x, -1), [normal(r, 2, 4)]),
        "linear": (F.linear, [normal(r, 2, 3), normal(r, 4, 3), normal(r, 4)]),
        "bilinear": (F.bilinear, [normal(r, 2, 3), normal(r, 2, 4), normal(r, 5, 3, 4),
                                  normal(r, 5)]),
        "conv1d": (
            lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1),
            [normal(r, 1, 2, 5), normal(r, 2, 2, 3), normal(r, 2)],
        ),
        "conv2d": (
            lambda x, w, b: F.conv2d(x, w, b, padding="same", groups=2),
            [normal(r, 1, 2, 3, 4), normal(r, 2, 1, 2, 3), normal(r, 2)],
        ),
        "max_pool2d": (lambda x: F.max_pool2d(x, 2, 1, ceil_mode=True), [distinct(r, 1, 1, 3, 4)]),
        "avg_pool2d": (
            lambda x: F.avg_pool2d(x, 2, 1, 1, count_include_pad=False),
            [normal(r, 1, 1, 3, 3)],
        ),
        "max_pool1d": (lambda x: F.max_pool1d(x, 2, 2, 1), [distinct(r, 1, 2, 5)]),
        "avg_pool1d": (lambda x: F.avg_pool1d(x, 3, 2, 1), [normal(r, 1, 2, 5)]),
        "adaptive_avg_pool1d": (lambda x: F.adaptive_avg_pool1d(x, 3), [normal(r, 1, 2, 5)]),
        "adaptive_avg_pool2d": (
            lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
            [normal(r, 1, 2, 5, 4)],
        ),
        "dropout": (seeded(lambda x: F.dropout(x, 0.4)), [normal(r, 3, 4)]),
        # whole channels dropped: (N, C, L), (N, C, H, W), (N, C, D, H, W)
        "dropout1d": (seeded(lambda x: F.dropout1d(x, 0.4)), [normal(r, 2, 3, 4)]),
        "dropout2d": (seeded(lambda x: F.dropout2d(x, 0.4)), [normal(r, 2, 3, 2, 2)]),
        "dropout3d": (seeded(lambda x: F.dropout3d(x, 0.4)), [normal(r, 2, 3, 2, 1, 2)]),
        "instance_norm": (
            lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
            [normal(r, 2, 3, 4), normal(r, 3), normal(r, 3)],
        ),
        "layer_norm": (
            lambda x, w, b: F.layer_norm(x, [3], w, b),
            [normal(r, 2, 3), normal(r, 3), normal(r, 3)],
        ),
        "group_norm": (
            lambda x, w, b: F.group_norm(x, 2, w, b),
            [normal(r, 2, 4, 2), normal(r, 4), normal(r, 4)],
        ),
        "batch_norm": (
            lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
            [normal(r, 3, 2, 2), normal(r, 2), normal(r, 2)],
        ),
        "normalize": (lambda x: F.normalize(x, dim=0), [normal(r, 3, 2)]),
        # padding_idx and scale_grad_by_freq change the gradient on purpose: not checked here
        "embedding": (lambda w: F.embedding(const([[0, 2], [3, 0]]), w), [normal(r, 4, 2)]),
        "embedding_bag": (
            lambda w, p: F.embedding_bag(const([1, 2, 0, 3, 3]), w, const([0, 2, 2]),
                                         mode="sum", per_sample_weights=p),
            [normal(r, 4, 2), normal(r, 5)],
        ),
        "pad": (lambda x: F.pad(x, (1, 2, 2, 0), mode="reflect"), [normal(r, 1, 3, 3)]),
        "scaled_dot_product_attention": (
            lambda q, k, v: F.scaled_dot_product_attention(
                q, k, v, attn_mask=const([[True, False, True], [False, False, False]])
            ),
            [normal(r, 2, 2), normal(r, 3, 2), normal(r, 3, 2)],
        ),
        "scaled_dot_product_attention_composite": (  # the fused op's fallback
            lambda q, k, v: F.scaled_dot_product_attention_composite(
                q, k, v, attn_mask=const([[True, False, True], [False, False, False]])
            ),
            [normal(r, 2, 2), normal(r, 3, 2), normal(r, 3, 2)],
        ),
        "cross_entropy": (
            lambda x: F.cross_entropy(
                x, const([1, -100, 2]), const([0.5, 1.0, 2.0]), label_smoothing=0.2
            ),
            [normal(r, 3, 3)],
        ),
        "nll_loss": (
            lambda x: F.nll_loss(x, const([[0, 2], [1, 1]]), const([1.0, 0.5, 2.0])),
            [normal(r, 2, 3, 2)],
        ),
        # through log_softmax: torch's (and so ember's) log_probs gradient is the logits' one
        "ctc_loss": (
            lambda x: F.ctc_loss(F.log_softmax(x, 2), const([[1, 1, 2], [2, 0, 0]]), [5, 3],
                                 [3, 1], reduction="sum"),
            [normal(np.random.default_rng(7), 5, 2, 3)],
        ),
        "mse_loss": (F.mse_loss, [normal(r, 2, 3), normal(r, 2, 3)]),
        "l1_loss": (F.l1_loss, [normal(r, 2, 3), normal(r, 2, 3)]),
        "smooth_l1_loss": (
            lambda a, b: F.smooth_l1_loss(a, b, beta=0.5),
            [leaf([0.1, 1.0, -2.0, 0.3]), leaf([0.3, 0.2, -1.0, 0.1])],
        ),
        "huber_loss": (
            lambda a, b: F.huber_loss(a, b, delta=0.5),
            [leaf([0.1, 1.0, -2.0, 0.3]), leaf([0.3, 0.2, -1.0, 0.1])],
        ),
        "binary_cross_entropy": (
            lambda p, t: F.binary_cross_entropy(p, t, const([1.0, 2.0])),
            [leaf(r.uniform(0.1, 0.9, (3, 2))), leaf(r.uniform(0.0, 1.0, (3, 2)))],
        ),
        "binary_cross_entropy_with_logits": (
            lambda x, t, w: F.binary_cross_entropy_with_logits(x, t, pos_weight=w),
            [
                normal(r, 3, 2, std=2.0),
                leaf(r.uniform(0.0, 1.0, (3, 2))),
                leaf(r.uniform(0.5, 2.0, 2)),
            ],
        ),
        "kl_div": (
            lambda x, t: F.kl_div(x, t, reduction="batchmean"),
            [leaf(np.log(probabilities(r, 2, 3))), leaf(probabilities(r, 2, 3))],
        ),
    }
    return cases


CASES = _cases()

# -- issue 16: spatial functions (more settings of each in tests/nn/test_spatial.py) --------
_r = np.random.default_rng(16)
CASES.update({
    "conv_transpose1d": (lambda x, w: F.conv_transpose1d(x, w, stride=2, output_padding=1),
                         [normal(_r, 1, 2, 3), normal(_r, 2, 1, 2)]),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1),
                         [normal(_r, 1, 2, 2, 3), normal(_r, 2, 2, 3, 2), normal(_r, 2)]),
    "conv_transpose3d": (lambda x, w: F.conv_transpose3d(x, w, stride=(2, 1, 1)),
                         [normal(_r, 1, 2, 2, 2, 1), normal(_r, 2, 1, 2, 2, 2)]),
    "conv3d": (lambda x, w: F.conv3d(x, w, padding=(1, 0, 0)),
               [normal(_r, 1, 2, 2, 3, 3), normal(_r, 2, 2, 2, 2, 2)]),
    "interpolate": (lambda x: F.interpolate(x, size=(3, 5), mode="bicubic"),
                    [normal(_r, 1, 1, 2, 3)]),
    "upsample": (lambda x: F.upsample(x, scale_factor=2, mode="linear"), [normal(_r, 1, 2, 3)]),
    "upsample_nearest": (lambda x: F.upsample_nearest(x, size=(3, 4)), [normal(_r, 1, 1, 2, 3)]),
    "upsample_bilinear": (lambda x: F.upsample_bilinear(x, size=(3, 4)),
                          [normal(_r, 1, 1, 2, 3)]),
    "pixel_shuffle": (lambda x: F.pixel_shuffle(x, 2), [normal(_r, 1, 4, 2, 1)]),
    "pixel_unshuffle": (lambda x: F.pixel_unshuffle(x, 2), [normal(_r, 1, 1, 2, 4)]),
    "unfold": (lambda x: F.unfold(x, 2, padding=1, stride=2), [normal(_r, 1, 2, 3, 3)]),
    "fold": (lambda x: F.fold(x, (3, 3), 2), [normal(_r, 1, 8, 4)]),
    "max_pool3d": (lambda x: F.max_pool3d(x, 2, 1), [normal(_r, 1, 1, 3, 2, 3)]),
    "avg_pool3d": (lambda x: F.avg_pool3d(x, 2, 1, 1, count_include_pad=False),
                   [normal(_r, 1, 1, 2, 2, 3)]),
    "max_unpool1d": (lambda x: F.max_unpool1d(*F.max_pool1d(x, 2, return_indices=True), 2),
                     [normal(_r, 1, 2, 6)]),
    "max_unpool2d": (lambda x: F.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True), 2),
                     [normal(_r, 1, 1, 4, 4)]),
    "max_unpool3d": (lambda x: F.max_unpool3d(*F.max_pool3d(x, 2, return_indices=True), 2),
                     [normal(_r, 1, 1, 2, 2, 4)]),
    "adaptive_max_pool1d": (lambda x: F.adaptive_max_pool1d(x, 3), [normal(_r, 1, 2, 5)]),
    "adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, (2, 3)), [normal(_r, 1, 3, 5)]),
    "adaptive_max_pool3d": (lambda x: F.adaptive_max_pool3d(x, 2), [normal(_r, 1, 3, 3, 2)]),
    "lp_pool1d": (lambda x: F.lp_pool1d(x, 2, 2), [normal(_r, 1, 2, 4)]),
    "lp_pool2d": (lambda x: F.lp_pool2d(x, 3, 2), [leaf(_r.uniform(0.5, 2, (1, 2, 4)))]),
    "lp_pool3d": (lambda x: F.lp_pool3d(x, 2, (1, 2, 2)), [normal(_r, 1, 2, 2, 2)]),
    "grid_sample": (lambda x, g: F.grid_sample(x, g, padding_mode="reflection",
                                               align_corners=False),
                    [normal(_r, 1, 2, 3, 4), leaf(_r.uniform(-1.2, 1.2, (1, 2, 3, 2)))]),
    "affine_grid": (lambda t: F.affine_grid(t, (1, 1, 2, 3), align_corners=False),
                    [normal(_r, 1, 2, 3)]),
})

# further settings of the functions above, each checked on its own
VARIANTS = {
    "conv1d_dilated_unbatched": (
        lambda x, w: F.conv1d(x, w, dilation=2, padding="same"),
        lambda r: [normal(r, 2, 5), normal(r, 1, 2, 2)],
    ),
    "conv2d_strided_dilated": (
        lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=1, dilation=(1, 2)),
        lambda r: [normal(r, 1, 1, 4, 4), normal(r, 2, 1, 2, 2)],
    ),
    "max_pool2d_dilated_padded": (
        lambda x: F.max_pool2d(x, 2, 2, 1, dilation=2),
        lambda r: [distinct(r, 1, 1, 4, 4)],
    ),
    "avg_pool2d_divisor": (
        lambda x: F.avg_pool2d(x, (1, 2), ceil_mode=True, divisor_override=3),
        lambda r: [normal(r, 1, 2, 3)],
    ),
    "adaptive_avg_pool2d_divisible": (
        lambda x: F.adaptive_avg_pool2d(x, (2, None)),
        lambda r: [normal(r, 1, 4, 3)],
    ),
    "adaptive_avg_pool2d_upsampling": (
        lambda x: F.adaptive_avg_pool2d(x, 3),
        lambda r: [normal(r, 1, 2, 2)],
    ),
    "batch_norm_eval": (
        lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b, training=False),
        lambda r: [
            normal(r, 3, 2),
            normal(r, 2),
            leaf(r.uniform(0.5, 2, 2)),
            normal(r, 2),
            normal(r, 2),
        ],
    ),
    "normalize_p3": (lambda x: F.normalize(x, p=3.0, dim=-1), lambda r: [nonzero(r, 2, 3)]),
    "normalize_zero_row": (
        lambda x: F.normalize(x * const([[0.0], [1.0]])),
        lambda r: [normal(r, 2, 3)],
    ),
    "pad_circular": (lambda x: F.pad(x, (2, 1), mode="circular"), lambda r: [normal(r, 1, 3)]),
    "pad_replicate": (
        lambda x: F.pad(x, (1, 1, 0, 2), mode="replicate"),
        lambda r: [normal(r, 1, 2, 2)],
    ),
    "pad_constant_crop": (lambda x: F.pad(x, (-1, 2), value=3.0), lambda r: [normal(r, 2, 3)]),
    "sdpa_causal_float_mask": (
        lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
        lambda r: [normal(r, 1, 3, 2), normal(r, 1, 2, 2), normal(r, 1, 2, 1), normal(r, 3, 2)],
    ),
    "sdpa_causal": (
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        lambda r: [normal(r, 3, 2), normal(r, 3, 2), normal(r, 3, 2)],
    ),
    "sdpa_dropout": (
        seeded(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.3)),
        lambda r: [normal(r, 2, 2), normal(r, 3, 2), normal(r, 3, 2)],
    ),
    "cross_entropy_kdim_sum": (
        lambda x: F.cross_entropy(x, const([[2, 0], [1, 1]]), reduction="sum"),
        lambda r: [normal(r, 2, 3, 2)],
    ),
    "cross_entropy_probabilities": (
        lambda x, t: F.cross_entropy(x, t, const([1.0, 0.5, 2.0]), label_smoothing=0.1),
        lambda r: [normal(r, 2, 3), leaf(probabilities(r, 2, 3))],
    ),
    "cross_entropy_unbatched_none": (
        lambda x: F.cross_entropy(x, const(2), reduction="none", label_smoothing=0.3),
        lambda r: [normal(r, 4)],
    ),
    "nll_loss_none": (
        lambda x: F.nll_loss(x, const([0, 2, -100]), reduction="none"),
        lambda r: [normal(r, 3, 3)],
    ),
    "mse_loss_weighted": (
        lambda a, b, w: F.mse_loss(a, b, weight=w),
        lambda r: [normal(r, 3), normal(r, 3), leaf(r.uniform(0.5, 2, 3))],
    ),
    "l1_loss_weighted_sum": (
        lambda a, b, w: F.l1_loss(a, b, reduction="sum", weight=w),
        lambda r: [nonzero(r, 3), leaf([0.0, 0.0, 0.0]), leaf(r.uniform(0.5, 2, 3))],
    ),
    "binary_cross_entropy_with_logits_weighted": (
        lambda x, t, w: F.binary_cross_entropy_with_logits(x, t, w, reduction="none"),
        lambda r: [normal(r, 2, 2), leaf(r.uniform(0, 1, (2, 2))), leaf(r.uniform(0.5, 2, 2))],
    ),
    "kl_div_log_target": (
        lambda x, t: F.kl_div(x, t, reduction="sum", log_target=True),
        lambda r: [leaf(np.log(probabilities(r, 2, 3))), leaf(np.log(probabilities(r, 2, 3)))],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name):
    fn, inputs = CASES[name]
    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_gradcheck_variant(name):
    fn, make = VARIANTS[name]
    assert gradcheck(fn, make(np.random.default_rng(1)))


def test_every_differentiable_function_has_a_gradcheck_case():
    public = {
        name
        for name, value in vars(F).items()
        if not name.startswith("_")
        and inspect.isfunction(value)
        and value.__module__.startswith("ember.nn.")
    }
    missing = public - NOT_DIFFERENTIABLE - set(CASES)
    assert not missing, f"functions without a gradcheck case: {sorted(missing)}"


@pytest.mark.parametrize(
    "name",
    [
        "log_softmax",
        "softmax",
        "layer_norm",
        "cross_entropy",
        "binary_cross_entropy_with_logits",
        "gelu",
    ],
)
def test_gradgradcheck(name):
    fn, inputs = CASES[name]
    inputs = [leaf(x.detach().numpy()) for x in inputs]
    assert gradgradcheck(fn, inputs)
