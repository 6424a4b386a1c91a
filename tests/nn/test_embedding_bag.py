"""nn.EmbeddingBag and F.embedding_bag against a numpy loop over the bags: the three modes,
2-D input and offsets (empty bags, include_last_offset), padding_idx, per_sample_weights,
gradients by gradcheck, and the errors."""

from __future__ import annotations

import ember
import numpy as np
import pytest
from ember import nn
from ember.autograd import gradcheck

F = nn.functional


def reference(weight, indices, offsets, mode, psw=None, include_last_offset=False,
              padding_idx=None):
    """One bag at a time; left-out indices and empty bags as torch documents them."""
    ends = list(offsets[1:]) + ([] if include_last_offset else [len(indices)])
    starts = offsets[:-1] if include_last_offset else offsets
    out = np.zeros((len(starts), weight.shape[1]))
    for b, (start, end) in enumerate(zip(starts, ends)):
        picks = [i for i in range(start, end) if indices[i] != padding_idx]
        if not picks:
            continue
        rows = weight[[indices[i] for i in picks]]
        if psw is not None:
            rows = rows * psw[picks][:, None]
        out[b] = {"sum": rows.sum(0), "mean": rows.mean(0), "max": rows.max(0)}[mode]
    return out


def random_bags(seed, rows=7, count=12, bags=5):
    r = np.random.default_rng(seed)
    weight = r.standard_normal((rows, 3))
    indices = r.integers(0, rows, count)
    offsets = np.sort(r.integers(0, count + 1, bags))
    offsets[0] = 0
    return weight, indices, offsets


def run(weight, indices, offsets=None, **kwargs):
    offsets = None if offsets is None else ember.tensor(offsets)
    return F.embedding_bag(ember.tensor(indices), ember.tensor(weight), offsets, **kwargs).numpy()


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("seed", range(4))
def test_each_mode_with_offsets_is_the_loop_over_bags(mode, seed):
    weight, indices, offsets = random_bags(seed)
    np.testing.assert_allclose(run(weight, indices, offsets, mode=mode),
                               reference(weight, indices, offsets, mode), atol=1e-12)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_empty_bags_give_zeros(mode):
    weight = np.random.default_rng(0).standard_normal((5, 2))
    indices, offsets = np.array([1, 4, 2]), np.array([0, 0, 2, 2, 3])
    out = run(weight, indices, offsets, mode=mode)
    np.testing.assert_array_equal(out[[0, 2, 4]], 0)
    np.testing.assert_allclose(out, reference(weight, indices, offsets, mode), atol=1e-12)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_2d_input_is_bags_of_equal_length(mode):
    r = np.random.default_rng(1)
    weight, indices = r.standard_normal((6, 4)), r.integers(0, 6, (5, 3))
    expected = reference(weight, indices.reshape(-1), np.arange(0, 15, 3), mode)
    np.testing.assert_allclose(run(weight, indices, mode=mode), expected, atol=1e-12)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_include_last_offset_ends_the_last_bag_there(mode):
    weight, indices, offsets = random_bags(2)
    for last in (len(indices), len(indices) - 3):
        closed = np.append(offsets, last)
        out = run(weight, indices, closed, mode=mode, include_last_offset=True)
        assert out.shape == (len(offsets), 3)
        np.testing.assert_allclose(
            out, reference(weight, indices, closed, mode, include_last_offset=True), atol=1e-12)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("padding_idx", [3, -4])
def test_padding_idx_entries_are_left_out_of_their_bag(mode, padding_idx):
    weight, _, _ = random_bags(3)
    indices, offsets = np.array([3, 1, 3, 3, 5, 3, 0]), np.array([0, 2, 4, 6])
    out = run(weight, indices, offsets, mode=mode, padding_idx=padding_idx)
    np.testing.assert_allclose(out, reference(weight, indices, offsets, mode, padding_idx=3),
                               atol=1e-12)
    np.testing.assert_array_equal(out[1], 0)  # only padding: empty


def test_per_sample_weights_scale_each_row_of_a_sum():
    weight, indices, offsets = random_bags(4)
    psw = np.random.default_rng(5).standard_normal(len(indices))
    out = F.embedding_bag(ember.tensor(indices), ember.tensor(weight), ember.tensor(offsets),
                          mode="sum", per_sample_weights=ember.tensor(psw)).numpy()
    np.testing.assert_allclose(out, reference(weight, indices, offsets, "sum", psw), atol=1e-12)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_gradients_reach_the_weight(mode):
    r = np.random.default_rng(6)
    weight = ember.tensor(r.standard_normal((6, 3)), requires_grad=True)
    indices, offsets = ember.tensor([1, 2, 2, 5, 0, 3, 4]), ember.tensor([0, 3, 3, 5])
    assert gradcheck(
        lambda w: F.embedding_bag(indices, w, offsets, mode=mode, padding_idx=0), [weight])


def test_gradients_reach_per_sample_weights_and_the_weight():
    r = np.random.default_rng(7)
    weight = ember.tensor(r.standard_normal((5, 2)), requires_grad=True)
    psw = ember.tensor(r.standard_normal((3, 2)), requires_grad=True)
    indices = ember.tensor([[1, 2], [4, 4], [0, 3]])
    assert gradcheck(
        lambda w, p: F.embedding_bag(indices, w, mode="sum", per_sample_weights=p),
        [weight, psw])


def test_module_holds_the_weight_and_zeroes_the_padding_row():
    bag = nn.EmbeddingBag(10, 4, mode="max", padding_idx=2)
    assert bag.weight.shape == (10, 4) and not bag.weight[2].detach().numpy().any()
    indices, offsets = np.array([2, 7, 1, 9]), np.array([0, 1])
    expected = reference(bag.weight.detach().numpy(), indices, offsets, "max", padding_idx=2)
    out = bag(ember.tensor(indices), ember.tensor(offsets))
    np.testing.assert_allclose(out.detach().numpy(), expected)
    out.sum().backward()
    assert bag.weight.grad.shape == (10, 4)
    assert list(bag.state_dict()) == ["weight"]


def test_from_pretrained_freezes_unless_asked():
    weights = ember.tensor(np.arange(12.0).reshape(4, 3))
    bag = nn.EmbeddingBag.from_pretrained(weights, mode="sum")
    assert not bag.weight.requires_grad
    np.testing.assert_array_equal(bag(ember.tensor([[0, 3]])).numpy(), [[9.0, 11.0, 13.0]])
    assert nn.EmbeddingBag.from_pretrained(weights, freeze=False).weight.requires_grad


def test_max_norm_renormalizes_the_rows_used():
    weight = ember.tensor(np.full((3, 4), 2.0))
    F.embedding_bag(ember.tensor([[0, 1]]), weight, max_norm=1.0)
    norms = np.linalg.norm(weight.numpy(), axis=1)
    np.testing.assert_allclose(norms[:2], 1.0, rtol=1e-6)
    assert norms[2] == 4.0


@pytest.mark.parametrize(
    "call, kind, words",
    [
        (lambda w: F.embedding_bag(ember.tensor([[0, 1]]), w, ember.tensor([0])),
         ValueError, "offsets has to be None"),
        (lambda w: F.embedding_bag(ember.tensor([0, 1]), w), ValueError, "offsets"),
        (lambda w: F.embedding_bag(ember.zeros(1, 1, 1, dtype=ember.int64), w),
         ValueError, "dimension 3"),
        (lambda w: F.embedding_bag(ember.tensor([0, 1]), w, ember.tensor([1])),
         RuntimeError, "offsets[0] has to be 0"),
        (lambda w: F.embedding_bag(ember.tensor([0, 1]), w, ember.tensor([0, 5])),
         RuntimeError, "input's length 2"),
        (lambda w: F.embedding_bag(ember.tensor([0, 1, 2]), w, ember.tensor([0, 2, 1])),
         RuntimeError, "non-decreasing"),
        (lambda w: F.embedding_bag(ember.tensor([[0, 1]]), w, mode="median"),
         ValueError, "'median'"),
        (lambda w: F.embedding_bag(ember.tensor([[0, 1]]), w, per_sample_weights=ember.ones(1, 2)),
         NotImplementedError, "mode='mean'"),
        (lambda w: F.embedding_bag(ember.tensor([[0, 1]]), w, mode="sum",
                                   per_sample_weights=ember.ones(2)),
         ValueError, "[2]"),
        (lambda w: F.embedding_bag(ember.tensor([[0.0, 1.0]]), w), RuntimeError, "float32"),
        (lambda w: F.embedding_bag(ember.tensor([[0, 1]]), w, padding_idx=3),
         ValueError, "padding_idx"),
        (lambda w: F.embedding_bag(ember.tensor([[0, 1]]), w[0]), ValueError, "dimension 1"),
    ],
)
def test_bad_arguments_raise_ember_errors_naming_them(call, kind, words):
    with pytest.raises(ember.EmberError) as info:
        call(ember.randn(3, 2))
    assert isinstance(info.value, kind)
    assert words in str(info.value)
