"""Behaviour of ember.nn.functional that needs no oracle: dropout's statistics, batch_norm's
running statistics, embedding's padding and max_norm, in-place forms, exact adaptive-pooling
bins, and the errors PyTorch raises for bad arguments."""

from __future__ import annotations

import ember
import ember.nn.functional as F
import numpy as np
import pytest


def leaf(values, dtype="float64") -> ember.Tensor:
    return ember.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


# -- dropout ---------------------------------------------------------------------------------


def test_dropout_zeroes_about_p_and_scales_survivors_by_one_over_keep():
    ember.manual_seed(0)
    x = leaf(np.full((200, 100), 2.0))
    out = F.dropout(x, p=0.3)
    values = out.detach().numpy()
    dropped = values == 0
    assert abs(dropped.mean() - 0.3) < 0.01
    np.testing.assert_allclose(values[~dropped], 2.0 / 0.7)
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.where(dropped, 0.0, 1.0 / 0.7))


def test_dropout_draws_a_new_mask_each_call_and_repeats_under_the_same_seed():
    x = ember.ones(50, 20)
    ember.manual_seed(3)
    first = F.dropout(x).numpy()
    second = F.dropout(x).numpy()
    ember.manual_seed(3)
    again = F.dropout(x).numpy()
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again)


def test_dropout_outside_training_returns_the_input_unchanged():
    x = ember.randn(4, 5)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x


def test_dropout_inplace_writes_into_the_input():
    ember.manual_seed(1)
    x = ember.ones(30, 30)
    out = F.dropout(x, 0.5, inplace=True)
    assert out is x
    assert 0.3 < (x.numpy() == 0).mean() < 0.7
    np.testing.assert_array_equal(np.unique(x.numpy()), [0.0, 2.0])


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_rejects_probabilities_outside_0_1(p):
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(ember.ones(3), p)


# -- batch_norm ------------------------------------------------------------------------------


def test_batch_norm_training_updates_running_stats_with_unbiased_variance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 4)) * 2 + 1
    running_mean, running_var = ember.zeros(3, dtype="float64"), ember.ones(3, dtype="float64")
    out = F.batch_norm(ember.tensor(x), running_mean, running_var, training=True, momentum=0.2)
    batch_mean = x.mean(axis=(0, 2))
    np.testing.assert_allclose(running_mean.numpy(), 0.2 * batch_mean, rtol=1e-12)
    np.testing.assert_allclose(
        running_var.numpy(), 0.8 + 0.2 * x.var(axis=(0, 2), ddof=1), rtol=1e-12
    )
    # the output uses the biased batch variance
    expected = (x - batch_mean[None, :, None]) / np.sqrt(x.var(axis=(0, 2))[None, :, None] + 1e-5)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10)


def test_batch_norm_running_stats_update_without_entering_the_graph():
    x = leaf(np.random.default_rng(1).standard_normal((5, 2)))
    running_mean, running_var = ember.zeros(2, dtype="float64"), ember.ones(2, dtype="float64")
    version = running_mean._version_counter
    out = F.batch_norm(x, running_mean, running_var, training=True)
    assert running_mean._version_counter > version
    assert running_mean.grad_fn is None and not running_mean.requires_grad
    assert running_var.grad_fn is None and not running_var.requires_grad
    out.sum().backward()  # the in-place update did not invalidate anything backward needs
    assert x.grad is not None


def test_batch_norm_eval_uses_running_stats_and_leaves_them_alone():
    x = ember.tensor(np.array([[1.0, 2.0], [3.0, 6.0]]))
    mean, var = (
        ember.tensor([1.0, 2.0], dtype="float64"),
        ember.tensor([4.0, 16.0], dtype="float64"),
    )
    out = F.batch_norm(x, mean, var, eps=0.0)
    np.testing.assert_allclose(out.numpy(), [[0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(mean.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(var.numpy(), [4.0, 16.0])


def test_batch_norm_errors_like_pytorch():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(ember.ones(1, 3), None, None, training=True)
    with pytest.raises(RuntimeError, match="running_mean and running_var must be defined"):
        F.batch_norm(ember.ones(2, 3), None, None, training=False)


# -- embedding -------------------------------------------------------------------------------


def test_embedding_padding_row_gets_no_gradient_but_keeps_its_value():
    weight = leaf(np.arange(8.0).reshape(4, 2))
    out = F.embedding(ember.tensor([[1, 0, 1], [3, 0, 2]]), weight, padding_idx=0)
    np.testing.assert_array_equal(out.detach().numpy()[0, 1], [0.0, 1.0])
    out.sum().backward()
    np.testing.assert_array_equal(weight.grad.numpy(), [[0, 0], [2, 2], [1, 1], [1, 1]])


def test_embedding_scale_grad_by_freq_divides_each_rows_gradient_by_its_count():
    weight = leaf(np.ones((3, 2)))
    out = F.embedding(ember.tensor([2, 2, 2, 1]), weight, scale_grad_by_freq=True)
    np.testing.assert_array_equal(out.detach().numpy(), np.ones((4, 2)))
    out.sum().backward()
    np.testing.assert_allclose(weight.grad.numpy(), [[0, 0], [1, 1], [1, 1]])


def test_embedding_max_norm_rescales_only_looked_up_rows_in_place():
    weight = ember.tensor([[3.0, 4.0], [6.0, 8.0], [0.3, 0.4]], dtype="float64")
    out = F.embedding(ember.tensor([0, 2]), weight, max_norm=1.0)
    scale = 1.0 / (5.0 + 1e-7)
    np.testing.assert_allclose(weight.numpy(), [[3 * scale, 4 * scale], [6, 8], [0.3, 0.4]])
    np.testing.assert_allclose(out.numpy(), weight.numpy()[[0, 2]])


def test_embedding_rejects_sparse_gradients_and_bad_padding_idx():
    weight = ember.ones(3, 2)
    with pytest.raises(NotImplementedError, match="sparse"):
        F.embedding(ember.tensor([0]), weight, sparse=True)
    with pytest.raises(ValueError, match="Padding_idx"):
        F.embedding(ember.tensor([0]), weight, padding_idx=3)


# -- in-place activations --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "relu",
        "relu6",
        "leaky_relu",
        "elu",
        "selu",
        "silu",
        "hardsigmoid",
        "hardswish",
        "mish",
        "hardtanh",
    ],
)
def test_inplace_activation_writes_into_its_input(name):
    x = ember.tensor([-2.0, -0.5, 0.5, 7.0])
    expected = getattr(F, name)(x).numpy().copy()
    out = getattr(F, name)(x, inplace=True)
    assert out is x
    np.testing.assert_array_equal(x.numpy(), expected)


def test_inplace_relu_on_an_intermediate_keeps_gradients_right():
    x = leaf([-1.0, 2.0, 3.0])
    y = x * 2
    F.relu(y, inplace=True)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 2.0, 2.0])


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_inplace_relu_and_leaky_relu_write_without_a_copy_and_keep_gradients(name,
                                                                            monkeypatch):
    # their backward reads their output or their scale, never the input the write destroys:
    # no clone of it first
    from ember.runtime.kernels import KERNELS

    x = leaf([-1.5, -0.0, 0.0, 2.0, 3.0])
    y = x * 2
    calls = []
    clone = KERNELS["clone"]
    monkeypatch.setitem(KERNELS, "clone", lambda *a, **k: calls.append(1) or clone(*a, **k))
    out = getattr(F, name)(y, inplace=True)
    assert out is y and not calls
    slope = 0.0 if name == "relu" else 0.01
    np.testing.assert_array_equal(y.detach().numpy(), [-3.0 * slope, -0.0, 0.0, 4.0, 6.0])
    (y * ember.tensor([1.0, 2.0, 3.0, 4.0, 5.0])).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2 * slope, 4 * slope, 6 * slope, 8.0, 10.0])


def test_inplace_relu_after_an_op_that_saved_its_output_fails_as_in_pytorch():
    x = leaf([-1.0, 2.0])
    y = x.sigmoid()  # its backward reads y, which relu_ overwrites
    F.relu(y, inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_leaky_relu_backward_is_one_product_with_the_saved_scale(monkeypatch):
    # PyTorch's rule, g where x > 0 else slope * g, as one kernel call: a where() of x and
    # slope * x would backpropagate through two wheres, a product and a sum
    from ember.runtime.kernels import KERNELS

    x = leaf([-2.0, -0.0, 0.0, 0.5, 3.0])
    out = F.leaky_relu(x, 0.2)
    calls = []
    for op, fn in list(KERNELS.items()):
        monkeypatch.setitem(KERNELS, op, lambda *a, _op=op, _fn=fn, **k: calls.append(_op)
                            or _fn(*a, **k))
    out.backward(ember.tensor([1.0, 2.0, 3.0, np.inf, 5.0], dtype=ember.float64))
    assert calls.count("mul") == 1 and not {"where", "add"} & set(calls), calls
    np.testing.assert_array_equal(x.grad.numpy(), [1.0 * 0.2, 2.0 * 0.2, 3.0 * 0.2, np.inf, 5.0])


# -- pooling, attention, one_hot -------------------------------------------------------------


def test_adaptive_avg_pool_uses_pytorchs_overlapping_bins():
    x = ember.tensor(np.arange(5.0)).reshape(1, 1, 5)
    # bins [0, 2), [1, 4), [3, 5)
    np.testing.assert_allclose(F.adaptive_avg_pool1d(x, 3).numpy().ravel(), [0.5, 2.0, 3.5])
    image = ember.tensor(np.arange(20.0).reshape(1, 4, 5))
    out = F.adaptive_avg_pool2d(image, (2, 3))
    rows = np.arange(20.0).reshape(4, 5)
    expected = [
        [rows[r0:r1, c0:c1].mean() for c0, c1 in ((0, 2), (1, 4), (3, 5))]
        for r0, r1 in ((0, 2), (2, 4))
    ]
    np.testing.assert_allclose(out.numpy()[0], expected)
    assert F.adaptive_avg_pool2d(image, (None, 5)).shape == (1, 4, 5)
    np.testing.assert_allclose(F.adaptive_avg_pool2d(image, 1).numpy().ravel(), [9.5])


def test_sdpa_is_causal_equals_an_explicit_lower_triangular_mask():
    rng = np.random.default_rng(2)
    q, k, v = (ember.tensor(rng.standard_normal((2, 4, 3))) for _ in range(3))
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    mask = ember.tensor(np.tril(np.ones((4, 4), dtype=bool)))
    explicit = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    np.testing.assert_allclose(causal.numpy(), explicit.numpy(), rtol=1e-12)
    # the first query sees only the first key
    np.testing.assert_allclose(causal.numpy()[:, 0], v.numpy()[:, 0], rtol=1e-12)
    with pytest.raises(RuntimeError, match="is_causal"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)


def test_one_hot_marks_each_class():
    out = F.one_hot(ember.tensor([2, 0]), 3)
    assert out.dtype is ember.int64
    np.testing.assert_array_equal(out.numpy(), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(F.one_hot(ember.tensor([1])).numpy(), [[0, 1]])


# -- argument errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "loss",
    [
        "mse_loss",
        "l1_loss",
        "smooth_l1_loss",
        "huber_loss",
        "binary_cross_entropy_with_logits",
        "kl_div",
    ],
)
def test_losses_reject_an_unknown_reduction(loss):
    x = ember.rand(2, 3)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        getattr(F, loss)(x, x, reduction="average")


def test_cross_entropy_and_nll_loss_check_their_arguments():
    logits = ember.randn(3, 4)
    with pytest.raises(RuntimeError, match="label_smoothing"):
        F.cross_entropy(logits, ember.tensor([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        F.nll_loss(logits, ember.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="weight tensor should be defined"):
        F.nll_loss(logits, ember.tensor([0, 1, 2]), weight=ember.ones(3))
    with pytest.raises(ValueError, match="different to the input size"):
        F.binary_cross_entropy(ember.rand(3), ember.rand(2, 3))


def test_legacy_reduction_flags_warn_and_choose_the_reduction():
    x, y = ember.tensor([1.0, 2.0]), ember.tensor([0.0, 0.0])
    with pytest.warns(UserWarning, match="size_average and reduce"):
        assert F.mse_loss(x, y, size_average=False).item() == 5.0
    with pytest.warns(UserWarning):
        assert F.mse_loss(x, y, reduce=False).shape == (2,)


def test_kl_div_mean_reduction_warns_like_pytorch():
    with pytest.warns(UserWarning, match="batchmean"):
        F.kl_div(ember.zeros(2, 2), ember.ones(2, 2))


def test_shape_errors_name_the_shapes():
    with pytest.raises(RuntimeError, match=r"normalized_shape=\[4\]"):
        F.layer_norm(ember.ones(2, 3), [4])
    with pytest.raises(RuntimeError, match="divisible by num_groups"):
        F.group_norm(ember.ones(2, 6, 3), 4)
    with pytest.raises(RuntimeError, match="Halving dimension must be even"):
        F.glu(ember.ones(2, 3))
    with pytest.raises(RuntimeError, match="conv1d"):
        F.conv1d(ember.ones(1, 1, 1, 3), ember.ones(1, 1, 2))
    with pytest.raises(RuntimeError, match="approximate"):  # PyTorch's class for it
        F.gelu(ember.ones(2), approximate="fast")


def test_training_batch_norm_updates_running_stats_in_place_without_more_kernels(monkeypatch):
    from ember.runtime.kernels import KERNELS

    bn = ember.nn.BatchNorm2d(3)
    mean, var = bn.running_mean, bn.running_var
    versions = (mean._version[0], var._version[0])
    x = ember.tensor(np.arange(48.0, dtype=np.float32).reshape(2, 3, 2, 4))
    calls = []
    for op, fn in list(KERNELS.items()):
        monkeypatch.setitem(KERNELS, op, lambda *a, _op=op, _fn=fn, **k: calls.append(_op)
                            or _fn(*a, **k))
    bn(x)
    assert sorted(calls) == ["add", "batch_norm_train"], calls  # add: num_batches_tracked
    assert bn.running_mean is mean and bn.running_var is var
    assert (mean._version[0], var._version[0]) == (versions[0] + 1, versions[1] + 1)
    values = x.numpy().transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(mean.numpy(), 0.1 * values.mean(1), rtol=1e-6)
    np.testing.assert_allclose(var.numpy(), 0.9 + 0.1 * values.var(1, ddof=1), rtol=1e-6)


def test_overwrite_refuses_another_dtype_or_shape():
    from ember._tensor.inplace import overwrite

    target = ember.zeros(3)
    with pytest.raises(ember.EmberError, match="float32"):
        overwrite(target, ember.zeros(3, dtype=ember.float64))
    with pytest.raises(ember.EmberError, match="shape"):
        overwrite(target, ember.zeros(4))
    overwrite(target, ember.ones(3))
    np.testing.assert_array_equal(target.numpy(), [1.0, 1.0, 1.0])
