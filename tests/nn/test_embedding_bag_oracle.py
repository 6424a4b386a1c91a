"""nn.EmbeddingBag against PyTorch's: a torch state_dict loads, and the output and the
gradients of the weight (and of per_sample_weights) agree in every mode and input form."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import ember  # noqa: E402
import numpy as np  # noqa: E402

pytestmark = pytest.mark.oracle

INDICES = [4, 1, 1, 9, 0, 3, 7, 7, 2, 5]
FORMS = {
    "2d": (np.array(INDICES).reshape(5, 2), None, False),
    "offsets": (np.array(INDICES), np.array([0, 3, 3, 6, 9]), False),
    "empty_last": (np.array(INDICES), np.array([0, 4, 10]), False),
    "include_last_offset": (np.array(INDICES), np.array([0, 2, 2, 7, 10]), True),
}


def run(lib, state, mode, form, padding_idx, per_sample):
    indices, offsets, last = FORMS[form]
    bag = lib.nn.EmbeddingBag(10, 3, mode=mode, include_last_offset=last,
                              padding_idx=padding_idx)
    bag.load_state_dict({"weight": lib.tensor(state)})
    psw = None
    if per_sample:
        psw = lib.tensor(np.linspace(-1, 2, indices.size, dtype=np.float32)
                         .reshape(indices.shape), requires_grad=True)
    out = bag(lib.tensor(indices), None if offsets is None else lib.tensor(offsets), psw)
    (out * out).sum().backward()
    grads = [bag.weight.grad.numpy()] + ([psw.grad.numpy()] if per_sample else [])
    return out.detach().numpy(), grads


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("padding_idx", [None, 7])
def test_embedding_bag_matches_torch(mode, form, padding_idx):
    torch.manual_seed(0)
    state = torch.nn.EmbeddingBag(10, 3, padding_idx=padding_idx).state_dict()["weight"].numpy()
    ours, our_grads = run(ember, state, mode, form, padding_idx, False)
    theirs, their_grads = run(torch, state, mode, form, padding_idx, False)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    for a, b in zip(our_grads, their_grads):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_per_sample_weights_match_torch(form):
    state = np.random.default_rng(2).standard_normal((10, 3)).astype(np.float32)
    ours, our_grads = run(ember, state, "sum", form, None, True)
    theirs, their_grads = run(torch, state, "sum", form, None, True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    for a, b in zip(our_grads, their_grads):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_functional_form_and_state_dict_keys_match_torch():
    weight = np.random.default_rng(3).standard_normal((6, 4))
    indices, offsets = np.array([0, 5, 5, 2]), np.array([0, 1, 1])
    for mode in ("sum", "mean", "max"):
        ours = ember.nn.functional.embedding_bag(
            ember.tensor(indices), ember.tensor(weight), ember.tensor(offsets), mode=mode)
        theirs = torch.nn.functional.embedding_bag(
            torch.tensor(indices), torch.tensor(weight), torch.tensor(offsets), mode=mode)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-12)
    assert list(ember.nn.EmbeddingBag(4, 2).state_dict()) == list(
        torch.nn.EmbeddingBag(4, 2).state_dict())
