"""The nn.functional functions PyTorch also has at the top level (torch.conv3d, torch.celu,
torch.batch_norm, torch.embedding, ...): ember has each, called with torch's top-level
arguments (ATen's order and reduction enum where they differ from nn.functional's), giving
torch's numbers."""

from __future__ import annotations

import ember
import numpy as np
import pytest

F = ember.nn.functional


def randn(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape)


# each: fn(module, *tensors) calling the top-level form as a torch script would, its inputs
CALLS = {
    "adaptive_avg_pool1d": (lambda m, x: m.adaptive_avg_pool1d(x, 3), [randn(2, 3, 7)]),
    "adaptive_max_pool1d": (lambda m, x: m.adaptive_max_pool1d(x, 3), [randn(2, 3, 7)]),
    "avg_pool1d": (lambda m, x: m.avg_pool1d(x, 3, 2, 1, True, False), [randn(2, 3, 8)]),
    "batch_norm_training": (
        lambda m, x, w, b: m.batch_norm(x, w, b, m.zeros(3, dtype=x.dtype),
                                        m.ones(3, dtype=x.dtype), True, 0.1, 1e-5, False),
        [randn(4, 3, 5), randn(3, seed=1), randn(3, seed=2)]),
    "batch_norm_eval": (
        lambda m, x, w, b: m.batch_norm(x, w, b, m.tensor(randn(3, seed=3)),
                                        m.ones(3, dtype=x.dtype) * 2, False, 0.1, 1e-3, True),
        [randn(4, 3), randn(3, seed=1), randn(3, seed=2)]),
    "bilinear": (lambda m, a, b, w, c: m.bilinear(a, b, w, c),
                 [randn(4, 3), randn(4, 2, seed=1), randn(5, 3, 2, seed=2), randn(5, seed=3)]),
    "binary_cross_entropy_with_logits": (
        lambda m, x: m.binary_cross_entropy_with_logits(
            x, m.ones_like(x) * 0.25, m.tensor(randn(3, seed=1)), m.tensor(randn(3) ** 2), 2),
        [randn(4, 3)]),
    "binary_cross_entropy_with_logits_mean": (
        lambda m, x: m.binary_cross_entropy_with_logits(x, m.ones_like(x) * 0.5, None, None, 1),
        [randn(4, 3)]),
    "binary_cross_entropy_with_logits_default": (
        lambda m, x: m.binary_cross_entropy_with_logits(x, m.zeros_like(x)), [randn(4, 3)]),
    "celu": (lambda m, x: m.celu(x, 0.5), [randn(3, 4)]),
    "conv1d": (lambda m, x, w, b: m.conv1d(x, w, b, 2, 1, 1, 1),
               [randn(2, 4, 9), randn(6, 4, 3, seed=1), randn(6, seed=2)]),
    "conv3d": (lambda m, x, w: m.conv3d(x, w, None, 1, 1, 2, 2),
               [randn(1, 4, 5, 5, 4), randn(2, 2, 2, 2, 2, seed=1)]),
    "conv_transpose1d": (lambda m, x, w: m.conv_transpose1d(x, w, None, 2, 1, 1, 2, 1),
                         [randn(2, 4, 5), randn(4, 3, 3, seed=1)]),
    "conv_transpose2d": (lambda m, x, w, b: m.conv_transpose2d(x, w, b, 2, 1, 1, 1, 2),
                         [randn(1, 2, 4, 3), randn(2, 3, 3, 2, seed=1), randn(3, seed=2)]),
    "conv_transpose3d": (lambda m, x, w: m.conv_transpose3d(x, w, None, (2, 1, 1)),
                         [randn(1, 2, 2, 3, 2), randn(2, 3, 2, 2, 2, seed=1)]),
    "ctc_loss": (
        lambda m, x: m.ctc_loss(x.log_softmax(2), m.tensor([[1, 2, 2], [3, 1, 0]]), [6, 4],
                                [3, 2], 0, 2, False),
        [randn(6, 2, 4)]),
    "ctc_loss_default": (
        lambda m, x: m.ctc_loss(x.log_softmax(2), m.tensor([2, 2, 1, 0]), m.tensor([5, 3]),
                                m.tensor([3, 1]), 3),
        [randn(5, 2, 4)]),
    "dropout_eval": (lambda m, x: m.dropout(x, 0.5, False), [randn(3, 4)]),
    "dropout_all": (lambda m, x: m.dropout(x, 1.0, train=True), [randn(3, 4)]),
    "embedding": (lambda m, w: m.embedding(w, m.tensor([[1, 0], [3, 1]])), [randn(4, 3)]),
    "embedding_padding_idx": (
        lambda m, w: m.embedding(w, m.tensor([[1, 0], [3, 1]]), 1, True), [randn(4, 3)]),
    "embedding_bag": (
        lambda m, w: m.embedding_bag(w, m.tensor([1, 0, 3, 3, 2]), m.tensor([0, 2, 2]), False, 1),
        [randn(4, 3)]),
    "embedding_bag_max": (
        lambda m, w: m.embedding_bag(w, m.tensor([1, 0, 3, 2, 0]), m.tensor([0, 3]), False, 2,
                                     False, None, False, 0),
        [randn(4, 3)]),
    "group_norm": (lambda m, x, w, b: m.group_norm(x, 2, w, b, 1e-3, True),
                   [randn(3, 4, 5), randn(4, seed=1), randn(4, seed=2)]),
    "instance_norm": (lambda m, x, w, b: m.instance_norm(x, w, b, None, None, True, 0.1, 1e-3,
                                                         False),
                      [randn(3, 4, 5), randn(4, seed=1), randn(4, seed=2)]),
    "kl_div": (lambda m, x, t: m.kl_div(x, t, 2, log_target=True),
               [randn(3, 4), randn(3, 4, seed=1)]),
    "kl_div_default": (lambda m, x, t: m.kl_div(x, t), [randn(3, 4), randn(3, 4) ** 2]),
    "kl_div_mean": (lambda m, x, t: m.kl_div(x, t, 1), [randn(3, 4), randn(3, 4) ** 2]),
    "layer_norm": (lambda m, x, w, b: m.layer_norm(x, (4,), w, b, 1e-3, False),
                   [randn(3, 4), randn(4, seed=1), randn(4, seed=2)]),
    "max_pool1d": (lambda m, x: m.max_pool1d(x, 3, 2, 1, 1, True), [randn(2, 3, 8)]),
    "max_pool3d": (lambda m, x: m.max_pool3d(x, 2, 1, 1, 2, False), [randn(1, 2, 4, 5, 4)]),
    "pixel_shuffle": (lambda m, x: m.pixel_shuffle(x, 2), [randn(1, 8, 2, 3)]),
    "pixel_unshuffle": (lambda m, x: m.pixel_unshuffle(x, 2), [randn(1, 2, 4, 6)]),
    "prelu": (lambda m, x, w: m.prelu(x, w), [randn(2, 3, 4), randn(3, seed=1)]),
    "selu": (lambda m, x: m.selu(x), [randn(3, 4)]),
}


def _run(m, fn, arrays):
    inputs = [m.tensor(a).requires_grad_(True) for a in arrays]
    out = fn(m, *inputs)
    outs = out if isinstance(out, tuple) else (out,)
    loss = sum((o * o).sum() for o in outs if o.dtype.is_floating_point)
    grads = m.autograd.grad(loss, inputs)
    return [o.detach().numpy() for o in outs], [g.numpy() for g in grads]


def test_forms_that_take_nn_functionals_arguments_are_the_same_callables():
    for name in ("conv3d", "conv_transpose2d", "pixel_shuffle", "celu", "max_pool1d", "prelu"):
        assert getattr(ember, name) is getattr(F, name)


def test_aten_forms_take_atens_arguments():
    x = ember.tensor(randn(4, 3))
    w, b = ember.tensor(randn(3, seed=1)), ember.tensor(randn(3, seed=2))
    mean, var = ember.zeros(3, dtype=x.dtype), ember.ones(3, dtype=x.dtype)
    np.testing.assert_allclose(
        ember.batch_norm(x, w, b, mean, var, False, 0.1, 1e-5, False).numpy(),
        F.batch_norm(x, mean, var, w, b, eps=1e-5).numpy())
    t = ember.tensor(randn(4, 3, seed=3))
    for enum, name in [(0, "none"), (2, "sum"), (7, "none")]:
        np.testing.assert_array_equal(ember.kl_div(x, t, enum).numpy(),
                                      F.kl_div(x, t, reduction=name).numpy())
    assert ember.kl_div(x, t).shape == (4, 3)  # torch's binding passes reduction 0
    values, indices = ember.adaptive_max_pool1d(ember.tensor(randn(1, 2, 6)), 2)
    assert values.shape == indices.shape == (1, 2, 2) and indices.dtype == ember.int64
    with pytest.raises(ember.EmberError) as info:
        ember.binary_cross_entropy_with_logits(x, t, None, None, "mean")
    assert isinstance(info.value, TypeError)


@pytest.mark.oracle
def test_every_top_level_form_of_a_functional_ember_has_is_exported():
    torch = pytest.importorskip("torch")
    shared = {n for n in dir(torch) if not n.startswith("_") and n in dir(torch.nn.functional)
              and callable(getattr(torch, n))}
    missing = sorted(n for n in shared if hasattr(F, n) and not hasattr(ember, n))
    assert not missing, f"torch.<name> forms ember lacks though F has them: {missing}"
    untested = sorted(n for n in shared if hasattr(F, n) and n in _exported()
                      and not any(c == n or c.startswith(n + "_") for c in CALLS))
    assert not untested, f"top-level forms without an oracle call: {untested}"


def _exported():
    return {n for n, module in ember._EXPORTS.items() if module == "nn._toplevel"}


@pytest.mark.oracle
@pytest.mark.parametrize("name", sorted(CALLS))
def test_top_level_form_matches_torch(name):
    torch = pytest.importorskip("torch")
    fn, arrays = CALLS[name]
    (ours, our_grads), (theirs, their_grads) = _run(ember, fn, arrays), _run(torch, fn, arrays)
    assert len(ours) == len(theirs)
    for a, b in zip(ours + our_grads, theirs + their_grads):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
