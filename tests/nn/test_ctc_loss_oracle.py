"""nn.functional.ctc_loss and nn.CTCLoss against torch's: the losses and the gradients of
log_probs (torch's own, which is the logits' gradient under log_softmax) for random batches."""

from __future__ import annotations

import ember
import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.oracle

TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-10)}


def random_case(seed, dtype, blank, steps=12, batch=5, classes=6, longest=5):
    """Unnormalized log-probabilities (so that torch's gradient convention shows), padded
    targets without the blank, input lengths of at least twice the target lengths plus one
    (every alignment possible), and a weight per output for a random upstream gradient."""
    rng = np.random.default_rng(seed)
    log_probs = (rng.standard_normal((steps, batch, classes)) - 1.5).astype(dtype)
    labels = [c for c in range(classes) if c != blank]
    targets = rng.choice(labels, (batch, longest))
    target_lengths = rng.integers(0, longest + 1, batch)
    input_lengths = rng.integers(np.minimum(2 * target_lengths + 1, steps), steps + 1)
    return log_probs, targets, input_lengths, target_lengths, rng.standard_normal(batch)


def run(m, log_probs, targets, input_lengths, target_lengths, weights, **kwargs):
    leaf = m.tensor(log_probs, requires_grad=True)
    loss = m.nn.functional.ctc_loss(leaf, m.tensor(targets), m.tensor(input_lengths),
                                    m.tensor(target_lengths), **kwargs)
    scale = m.tensor(weights if loss.ndim else weights[:1].reshape(()), dtype=loss.dtype)
    (grad,) = m.autograd.grad((loss * scale).sum(), leaf)
    return loss.detach().numpy(), grad.numpy()


def assert_same(ours, theirs, dtype):
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blank", [0, 5])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_losses_and_gradients_match_torch(seed, zero_infinity, reduction, blank, dtype):
    case = random_case(seed, dtype, blank)
    kwargs = dict(blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    assert_same(run(ember, *case, **kwargs), run(torch, *case, **kwargs), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(3))
def test_concatenated_targets_and_short_inputs_match_torch(seed, dtype):
    log_probs, targets, _, target_lengths, weights = random_case(seed, dtype, 0)
    rng = np.random.default_rng(100 + seed)
    input_lengths = rng.integers(0, log_probs.shape[0] + 1, len(target_lengths))
    flat = np.concatenate([targets[n, :k] for n, k in enumerate(target_lengths)])
    for targets_form in (targets, flat):
        ours = run(ember, log_probs, targets_form, input_lengths, target_lengths, weights,
                   reduction="none", zero_infinity=True)
        theirs = run(torch, log_probs, targets_form, input_lengths, target_lengths, weights,
                     reduction="none", zero_infinity=True)
        assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_infinite_losses_match_torchs_values(reduction):
    log_probs, targets, _, _, weights = random_case(7, np.float64, 0, steps=4, batch=3)
    targets[0, :3] = 1  # three repeats need five steps
    input_lengths, target_lengths = [4, 4, 2], [3, 1, 2]
    args = (log_probs, targets, input_lengths, target_lengths, weights)
    ours, _ = run(ember, *args, reduction=reduction)
    theirs, _ = run(torch, *args, reduction=reduction)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    assert np.isinf(ours).any()
    assert_same(run(ember, *args, reduction=reduction, zero_infinity=True),
                run(torch, *args, reduction=reduction, zero_infinity=True), np.float64)


def test_unbatched_input_matches_torch():
    log_probs, targets, input_lengths, target_lengths, weights = random_case(3, np.float64, 0)
    for reduction in ("none", "mean"):
        args = (log_probs[:, 0], targets[0, : target_lengths[0]], input_lengths[:1],
                target_lengths[:1], weights)
        assert_same(run(ember, *args, reduction=reduction), run(torch, *args, reduction=reduction),
                    np.float64)


@pytest.mark.parametrize("blank", [0, 5])
def test_ctc_loss_module_matches_torch(blank):
    log_probs, targets, input_lengths, target_lengths, _ = random_case(11, np.float32, blank)
    losses = []
    for m in (ember, torch):
        module = m.nn.CTCLoss(blank=blank, reduction="mean", zero_infinity=True)
        leaf = m.tensor(log_probs).log_softmax(2).detach().requires_grad_(True)
        loss = module(leaf, m.tensor(targets), m.tensor(input_lengths), m.tensor(target_lengths))
        loss.backward()
        losses.append((loss.detach().numpy(), leaf.grad.numpy()))
    assert_same(losses[0], losses[1], np.float32)
