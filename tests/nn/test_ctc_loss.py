"""nn.functional.ctc_loss and nn.CTCLoss against a brute-force reference that enumerates every
alignment (every path of T classes), collapses it (merge repeats, drop blanks) and sums the
probabilities of the paths that give the target; without torch."""

from __future__ import annotations

import itertools

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember.autograd import gradcheck


def log_softmax(x: np.ndarray) -> np.ndarray:
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def collapse(path, blank: int) -> tuple:
    merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
    return tuple(c for c in merged if c != blank)


def brute_force_loss(log_probs: np.ndarray, target, blank: int) -> float:
    """-log sum over the paths of log_probs (T, C) that collapse to target."""
    steps, classes = log_probs.shape
    total = 0.0
    for path in itertools.product(range(classes), repeat=steps):
        if collapse(path, blank) == tuple(target):
            total += np.exp(sum(log_probs[t, c] for t, c in enumerate(path)))
    return -np.log(total) if total > 0 else np.inf


def random_batch(rng, steps, batch, classes, longest, blank):
    """log_probs (T, N, C), padded targets without the blank, and random lengths."""
    log_probs = log_softmax(rng.standard_normal((steps, batch, classes)))
    labels = [c for c in range(classes) if c != blank]
    targets = rng.choice(labels, (batch, longest))
    input_lengths = rng.integers(0, steps + 1, batch)
    target_lengths = rng.integers(0, longest + 1, batch)
    return log_probs, targets, input_lengths, target_lengths


def reference(log_probs, targets, input_lengths, target_lengths, blank):
    return np.array([
        brute_force_loss(log_probs[: input_lengths[n], n], targets[n, : target_lengths[n]], blank)
        for n in range(len(input_lengths))
    ])


@pytest.mark.parametrize("blank", [0, 2])
@pytest.mark.parametrize("seed", range(4))
def test_per_sample_losses_match_the_sum_over_all_alignments(seed, blank):
    rng = np.random.default_rng(seed)
    log_probs, targets, input_lengths, target_lengths = random_batch(rng, 5, 4, 3, 3, blank)
    expected = reference(log_probs, targets, input_lengths, target_lengths, blank)
    got = F.ctc_loss(ember.tensor(log_probs), ember.tensor(targets), ember.tensor(input_lengths),
                     ember.tensor(target_lengths), blank=blank, reduction="none")
    assert got.shape == (4,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_repeated_labels_need_a_blank_between_them():
    log_probs = log_softmax(np.random.default_rng(1).standard_normal((5, 1, 3)))
    for target, steps in [([1, 1], 3), ([1, 1, 1], 5), ([1, 2, 1], 3)]:
        expected = brute_force_loss(log_probs[:steps, 0], target, 0)
        got = F.ctc_loss(ember.tensor(log_probs[:steps]), ember.tensor([target]), [steps],
                         [len(target)], reduction="sum")
        assert np.isfinite(expected)
        np.testing.assert_allclose(got.item(), expected, rtol=1e-12)
    # [1, 1, 1] needs five steps (1 blank 1 blank 1); [1, 1] in one step is impossible
    assert F.ctc_loss(ember.tensor(log_probs), ember.tensor([[1, 1, 1]]), [4], [3],
                      reduction="sum").item() == np.inf
    assert F.ctc_loss(ember.tensor(log_probs), ember.tensor([[1, 1]]), [1], [2],
                      reduction="sum").item() == np.inf


def test_concatenated_targets_give_the_padded_targets_losses():
    rng = np.random.default_rng(5)
    log_probs, targets, input_lengths, target_lengths = random_batch(rng, 5, 4, 4, 3, 0)
    flat = np.concatenate([targets[n, : target_lengths[n]] for n in range(4)]).astype(np.int64)
    padded = F.ctc_loss(ember.tensor(log_probs), ember.tensor(targets), tuple(input_lengths),
                        tuple(target_lengths), reduction="none")
    concatenated = F.ctc_loss(ember.tensor(log_probs), ember.tensor(flat), list(input_lengths),
                              list(target_lengths), reduction="none")
    np.testing.assert_array_equal(padded.numpy(), concatenated.numpy())
    np.testing.assert_allclose(
        padded.numpy(), reference(log_probs, targets, input_lengths, target_lengths, 0),
        rtol=1e-12)


def test_padding_past_the_target_length_is_ignored():
    log_probs = ember.tensor(log_softmax(np.random.default_rng(2).standard_normal((5, 2, 4))))
    a = F.ctc_loss(log_probs, ember.tensor([[1, 2, 0], [3, 0, 0]]), [5, 4], [2, 1],
                   reduction="none")
    b = F.ctc_loss(log_probs, ember.tensor([[1, 2, 3], [3, -7, 99]]), [5, 4], [2, 1],
                   reduction="none")
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_reductions_mean_divides_by_the_target_lengths_first():
    rng = np.random.default_rng(3)
    log_probs, targets, _, _ = random_batch(rng, 5, 3, 3, 3, 0)
    input_lengths, target_lengths = [5, 4, 3], [3, 0, 1]
    losses = reference(log_probs, targets, input_lengths, target_lengths, 0)
    args = (ember.tensor(log_probs), ember.tensor(targets), input_lengths, target_lengths)
    np.testing.assert_allclose(F.ctc_loss(*args, reduction="sum").item(), losses.sum(),
                               rtol=1e-12)
    # an empty target counts as length 1
    expected = np.mean(losses / np.array([3, 1, 1]))
    np.testing.assert_allclose(F.ctc_loss(*args).item(), expected, rtol=1e-12)
    np.testing.assert_allclose(ember.nn.CTCLoss()(*args).item(), expected, rtol=1e-12)


def test_unbatched_input_takes_its_target_whole_or_padded():
    log_probs = log_softmax(np.random.default_rng(4).standard_normal((4, 3)))
    expected = brute_force_loss(log_probs, [1, 2], 0)
    got = F.ctc_loss(ember.tensor(log_probs), ember.tensor([1, 2]), ember.tensor(4),
                     ember.tensor(2), reduction="none")
    assert got.shape == ()
    np.testing.assert_allclose(got.item(), expected, rtol=1e-12)
    mean = F.ctc_loss(ember.tensor(log_probs), ember.tensor([[1, 2, 0]]), [4], [2])
    np.testing.assert_allclose(mean.item(), expected / 2, rtol=1e-12)
    with pytest.raises(RuntimeError, match="sum\\(target_lengths\\) = 2 labels"):
        F.ctc_loss(ember.tensor(log_probs), ember.tensor([1, 2, 0]), [4], [2])


def test_zero_input_length_fits_only_the_empty_target():
    log_probs = ember.tensor(log_softmax(np.random.default_rng(6).standard_normal((3, 2, 3))))
    got = F.ctc_loss(log_probs, ember.tensor([[1], [1]]), [0, 0], [0, 1], reduction="none")
    assert got.tolist() == [0.0, np.inf]


def test_impossible_alignments_are_infinite_without_nan_gradients():
    rng = np.random.default_rng(7)
    logits = ember.tensor(rng.standard_normal((3, 2, 4)), requires_grad=True)
    targets = ember.tensor([[1, 1, 2], [1, 2, 0]])  # the first needs five steps
    loss = F.ctc_loss(F.log_softmax(logits, 2), targets, [3, 3], [3, 2], reduction="none")
    assert loss[0].item() == np.inf and np.isfinite(loss[1].item())
    (grad,) = ember.autograd.grad(loss[1], logits, retain_graph=True)
    assert np.isfinite(grad.numpy()).all()
    (grad,) = ember.autograd.grad(loss[0], logits)
    np.testing.assert_array_equal(grad.numpy(), 0.0)


def test_zero_infinity_zeroes_infinite_losses_and_their_gradients():
    rng = np.random.default_rng(8)
    logits = ember.tensor(rng.standard_normal((3, 2, 4)), requires_grad=True)
    targets = ember.tensor([[1, 1, 2], [1, 2, 0]])
    args = (F.log_softmax(logits, 2), targets, [3, 3], [3, 2])
    loss = F.ctc_loss(*args, reduction="none", zero_infinity=True)
    finite = F.ctc_loss(*args, reduction="none")[1].item()
    assert loss.tolist() == [0.0, finite]
    (grad,) = ember.autograd.grad(F.ctc_loss(*args, reduction="sum", zero_infinity=True), logits)
    np.testing.assert_array_equal(grad.numpy()[:, 0], 0.0)
    assert np.abs(grad.numpy()[:, 1]).sum() > 0
    module = ember.nn.CTCLoss(zero_infinity=True, reduction="mean")
    np.testing.assert_allclose(module(*args).item(), finite / 2 / 2, rtol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_gradcheck_through_log_softmax(reduction):
    rng = np.random.default_rng(9)
    logits = ember.tensor(rng.standard_normal((5, 3, 4)), requires_grad=True)
    targets = ember.tensor([[1, 1, 2], [3, 0, 0], [2, 3, 2]])

    def fn(x):
        return F.ctc_loss(F.log_softmax(x, 2), targets, [5, 3, 4], [3, 1, 2], blank=0,
                          reduction=reduction)

    assert gradcheck(fn, [logits])


def test_log_probs_gradient_is_torchs_true_gradient_plus_exp_log_probs():
    rng = np.random.default_rng(10)
    log_probs = 0.5 * log_softmax(rng.standard_normal((4, 2, 3)))  # not normalized
    targets, input_lengths, target_lengths = ember.tensor([[1, 2], [2, 0]]), [4, 2], [2, 1]

    def loss_of(array):
        return F.ctc_loss(ember.tensor(array), targets, input_lengths, target_lengths,
                          blank=0, reduction="sum").item()

    leaf = ember.tensor(log_probs, requires_grad=True)
    (grad,) = ember.autograd.grad(
        F.ctc_loss(leaf, targets, input_lengths, target_lengths, reduction="sum"), leaf)
    numeric = np.zeros_like(log_probs)
    for index in np.ndindex(log_probs.shape):
        step = np.zeros_like(log_probs)
        step[index] = 1e-6
        numeric[index] = (loss_of(log_probs + step) - loss_of(log_probs - step)) / 2e-6
    within = (np.arange(4)[:, None] < np.array(input_lengths)[None, :])[:, :, None]
    np.testing.assert_allclose(grad.numpy(), numeric + np.exp(log_probs) * within, atol=1e-8)


def test_float32_log_probs_give_float32_losses():
    log_probs = log_softmax(np.random.default_rng(11).standard_normal((5, 2, 3)))
    args = (ember.tensor([[1, 2], [2, 2]]), [5, 5], [2, 2])
    single = F.ctc_loss(ember.tensor(log_probs.astype(np.float32)), *args, reduction="none")
    double = F.ctc_loss(ember.tensor(log_probs), *args, reduction="none")
    assert single.dtype == ember.float32
    np.testing.assert_allclose(single.numpy(), double.numpy(), rtol=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda lp, t: F.ctc_loss(lp, t, [6, 4], [2, 1]), "input_lengths to have value at most 5"),
    (lambda lp, t: F.ctc_loss(lp, t, [5, 4], [3, 1]), "target_lengths to have value at most 2"),
    (lambda lp, t: F.ctc_loss(lp, t, [-1, 4], [2, 1]), "input_lengths to have value at least 0"),
    (lambda lp, t: F.ctc_loss(lp, t, [5, 4], [2, -1]), "target_lengths to have value at least 0"),
    (lambda lp, t: F.ctc_loss(lp, t, [5, 4], [2, 1], blank=4), "blank must be in label range"),
    (lambda lp, t: F.ctc_loss(lp, t, [5, 4], [2, 1], blank=-1), "blank must be in label range"),
    (lambda lp, t: F.ctc_loss(lp, t, [5, 4, 3], [2, 1]), "input_lengths must be of size"),
    (lambda lp, t: F.ctc_loss(lp, t, [5, 4], [2]), "target_lengths must be of size"),
    (lambda lp, t: F.ctc_loss(lp, t[:1], [5, 4], [2, 1]), "shape [1, 2]"),
    (lambda lp, t: F.ctc_loss(lp, ember.tensor([1, 2]), [5, 4], [2, 1]), "= 3 labels"),
    (lambda lp, t: F.ctc_loss(lp[0, 0], t, [5, 4], [2, 1]), "got shape [4]"),
    (lambda lp, t: F.ctc_loss(lp, t, ember.tensor([5.0, 4.0]), [2, 1]), "must be integral"),
])
def test_bad_lengths_and_shapes_raise_runtime_errors(call, message):
    log_probs = ember.tensor(log_softmax(np.random.default_rng(12).standard_normal((5, 2, 4))))
    with pytest.raises(ember.EmberError) as info:
        call(log_probs, ember.tensor([[1, 2], [3, 0]]))
    assert isinstance(info.value, RuntimeError)
    assert message in str(info.value)


def test_bad_reduction_dtype_and_labels_raise():
    log_probs = ember.tensor(log_softmax(np.random.default_rng(13).standard_normal((5, 2, 4))))
    targets = ember.tensor([[1, 2], [3, 0]])
    with pytest.raises(ValueError, match="foo is not a valid value for reduction"):
        F.ctc_loss(log_probs, targets, [5, 4], [2, 1], reduction="foo")
    with pytest.raises(NotImplementedError, match="int64"):
        F.ctc_loss(ember.tensor([[[0, 1]]]), targets[:1], [1], [1])
    with pytest.raises(IndexError, match="target 7 is out of bounds"):
        F.ctc_loss(log_probs, ember.tensor([[1, 7], [3, 0]]), [5, 4], [2, 1])


def test_ctc_loss_module_keeps_its_settings():
    module = ember.nn.CTCLoss(blank=3, reduction="sum", zero_infinity=True)
    assert (module.blank, module.reduction, module.zero_infinity) == (3, "sum", True)
    log_probs = log_softmax(np.random.default_rng(14).standard_normal((4, 2, 4)))
    targets, input_lengths, target_lengths = np.array([[1, 1], [2, 0]]), [4, 3], [2, 1]
    expected = reference(log_probs, targets, input_lengths, target_lengths, 3).sum()
    got = module(ember.tensor(log_probs), ember.tensor(targets), ember.tensor(input_lengths),
                 ember.tensor(target_lengths))
    np.testing.assert_allclose(got.item(), expected, rtol=1e-12)
