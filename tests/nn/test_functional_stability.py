"""Numerical stability of ember.nn.functional, without torch: extreme inputs give the exact
finite values and finite gradients that the stable formulas promise (no exp overflow, no
log(0), no 0 * inf in a discarded branch)."""

from __future__ import annotations

import math

import ember
import ember.nn.functional as F
import numpy as np
import pytest

DTYPES = ["float32", "float64"]


def leaf(values, dtype="float64") -> ember.Tensor:
    return ember.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


def grad_of(output: ember.Tensor, x: ember.Tensor) -> np.ndarray:
    (g,) = ember.autograd.grad([output.sum()], [x])
    return g.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_of_huge_gap_is_exact(dtype):
    x = leaf([1000.0, 0.0], dtype)
    out = F.log_softmax(x, 0)
    np.testing.assert_array_equal(out.detach().numpy(), [0.0, -1000.0])
    np.testing.assert_array_equal(F.softmax(x, 0).detach().numpy(), [1.0, 0.0])
    (g,) = ember.autograd.grad([out[1]], [x])
    np.testing.assert_array_equal(g.numpy(), [-1.0, 1.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_of_equal_huge_logits_is_minus_log_n(dtype):
    for value in (1000.0, -1000.0, 3e4):
        out = F.log_softmax(leaf([value] * 4, dtype), 0).detach().numpy()
        np.testing.assert_allclose(out, [-math.log(4)] * 4, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_rows_sum_to_one_for_wide_logits(dtype):
    x = ember.tensor(np.array([[500.0, -500.0, 499.0], [-80.0, -90.0, -100.0]], dtype=dtype))
    np.testing.assert_allclose(F.softmax(x, 1).sum(1).numpy(), [1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_with_logits_1000_apart_is_exact_and_finite(dtype):
    x = leaf([[1000.0, -1000.0], [1000.0, -1000.0]], dtype)
    loss = F.cross_entropy(x, ember.tensor([1, 0]), reduction="none")
    np.testing.assert_array_equal(loss.detach().numpy(), [2000.0, 0.0])
    np.testing.assert_array_equal(grad_of(loss, x), [[1.0, -1.0], [0.0, 0.0]])
    smoothed = F.cross_entropy(x, ember.tensor([1, 0]), label_smoothing=0.5)
    assert np.isfinite(smoothed.item())
    assert np.all(np.isfinite(grad_of(smoothed, x)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_of_plus_minus_1000_is_exact_and_finite(dtype):
    x = leaf([1000.0, -1000.0, 1000.0, -1000.0], dtype)
    t = ember.tensor(np.array([0.0, 1.0, 1.0, 0.0], dtype=dtype))
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_array_equal(loss.detach().numpy(), [1000.0, 1000.0, 0.0, 0.0])
    np.testing.assert_array_equal(grad_of(loss, x), [1.0, -1.0, 0.0, 0.0])
    weighted = F.binary_cross_entropy_with_logits(
        x, t, pos_weight=ember.tensor(np.array([3.0], dtype=dtype)), reduction="none"
    )
    np.testing.assert_array_equal(weighted.detach().numpy(), [1000.0, 3000.0, 0.0, 0.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsigmoid_softplus_elu_and_mish_do_not_overflow(dtype):
    x = leaf([-1000.0, 1000.0], dtype)
    np.testing.assert_array_equal(F.logsigmoid(x).detach().numpy(), [-1000.0, 0.0])
    np.testing.assert_array_equal(grad_of(F.logsigmoid(x), x), [1.0, 0.0])
    np.testing.assert_array_equal(F.softplus(x).detach().numpy(), [0.0, 1000.0])
    np.testing.assert_array_equal(grad_of(F.softplus(x), x), [0.0, 1.0])
    np.testing.assert_array_equal(F.elu(x).detach().numpy(), [-1.0, 1000.0])
    np.testing.assert_array_equal(grad_of(F.elu(x), x), [0.0, 1.0])
    np.testing.assert_array_equal(F.mish(x).detach().numpy(), [-0.0, 1000.0])
    assert np.all(np.isfinite(grad_of(F.mish(x), x)))
    assert np.all(np.isfinite(grad_of(F.gelu(x * 0.04), x)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_at_0_and_1_clamps_to_100_with_finite_gradient(dtype):
    p = leaf([0.0, 1.0, 0.0, 1.0], dtype)
    t = ember.tensor(np.array([1.0, 0.0, 0.0, 1.0], dtype=dtype))
    loss = F.binary_cross_entropy(p, t, reduction="none")
    np.testing.assert_array_equal(loss.detach().numpy(), [100.0, 100.0, 0.0, 0.0])
    assert np.all(np.isfinite(grad_of(loss, p)))


def test_kl_div_with_zero_target_probabilities_has_finite_gradients():
    logq = leaf(np.log([[0.2, 0.3, 0.5]]))
    p = leaf([[0.0, 0.4, 0.6]])
    loss = F.kl_div(logq, p, reduction="batchmean")
    expected = 0.4 * (math.log(0.4) - math.log(0.3)) + 0.6 * (math.log(0.6) - math.log(0.5))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    gq, gp = ember.autograd.grad([loss], [logq, p])
    assert np.all(np.isfinite(gq.numpy())) and np.all(np.isfinite(gp.numpy()))


def test_normalize_of_a_zero_vector_gives_zeros_and_a_zero_gradient():
    x = leaf([[0.0, 3.0], [0.0, 4.0]])
    out = F.normalize(x, dim=0)
    np.testing.assert_array_equal(out.detach().numpy(), [[0.0, 0.6], [0.0, 0.8]])
    g = grad_of(out, x)
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g[:, 0], [1e12, 1e12])  # 1 / eps, as PyTorch
    for p in (1.0, 3.0, math.inf):
        assert np.all(np.isfinite(grad_of(F.normalize(x, p=p, dim=0), x)))


def test_sdpa_row_with_every_key_masked_gives_zeros_and_finite_gradients():
    q, k, v = leaf(np.ones((2, 3))), leaf(np.ones((4, 3))), leaf(np.arange(8.0).reshape(4, 2))
    mask = ember.tensor(np.array([[True, False, True, False], [False] * 4]))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    np.testing.assert_allclose(out.detach().numpy(), [[2.0, 3.0], [0.0, 0.0]])
    for g in ember.autograd.grad([out.sum()], [q, k, v]):
        assert np.all(np.isfinite(g.numpy()))


def test_nll_loss_with_every_target_ignored_is_nan_with_a_zero_gradient():
    x = leaf(np.log([[0.2, 0.8], [0.5, 0.5]]))
    loss = F.cross_entropy(x, ember.tensor([-100, -100]))
    assert math.isnan(loss.item())
    np.testing.assert_array_equal(grad_of(loss, x), np.zeros((2, 2)))
    assert F.cross_entropy(x, ember.tensor([-100, -100]), reduction="sum").item() == 0.0


def test_layer_norm_of_values_with_a_large_offset_stays_accurate():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((3, 8))
    x = ember.tensor(noise + 1e6)
    expected = (noise - noise.mean(1, keepdims=True)) / np.sqrt(noise.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(F.layer_norm(x, [8]).numpy(), expected, atol=1e-8)
