"""weight_norm and spectral_norm against PyTorch's: a torch state_dict loads, and forward and
parameter gradients agree (spectral_norm in eval mode, and one training step from the same u)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import ember  # noqa: E402
import numpy as np  # noqa: E402

pytestmark = pytest.mark.oracle

def to_ember(state):
    return {k: ember.tensor(v.detach().numpy()) for k, v in state.items()}


def pair(kind):
    """The same layer in torch and ember, float64 (so 1e-5 measures the method, not float32
    rounding), and an input."""
    torch.manual_seed(0)
    r = np.random.default_rng(0)
    if kind == "linear":
        return torch.nn.Linear(5, 3).double(), ember.nn.Linear(5, 3).double(), \
            r.standard_normal((4, 5))
    return torch.nn.Conv2d(3, 4, 3).double(), ember.nn.Conv2d(3, 4, 3).double(), \
        r.standard_normal((2, 3, 6, 6))


def compare(theirs, ours, x, names):
    tx, ex = torch.tensor(x), ember.tensor(x)
    t_out, e_out = theirs(tx), ours(ex)
    np.testing.assert_allclose(e_out.detach().numpy(), t_out.detach().numpy(), atol=1e-5)
    (t_out * t_out).sum().backward()
    (e_out * e_out).sum().backward()
    for name in names:
        np.testing.assert_allclose(getattr(ours, name).grad.numpy(),
                                   getattr(theirs, name).grad.numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:.*weight_norm.*is deprecated:FutureWarning")
@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("dim", [0, 1, None])
def test_weight_norm_matches_torch(kind, dim):
    theirs, ours, x = pair(kind)
    torch.nn.utils.weight_norm(theirs, dim=dim)
    ember.nn.utils.weight_norm(ours, dim=dim)
    with torch.no_grad():
        theirs.weight_g.mul_(torch.rand_like(theirs.weight_g) + 0.5)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(to_ember(theirs.state_dict()))
    compare(theirs, ours, x, ["weight_g", "weight_v", "bias"])
    torch.nn.utils.remove_weight_norm(theirs)
    ember.nn.utils.remove_weight_norm(ours)
    np.testing.assert_allclose(ours.weight.detach().numpy(), theirs.weight.detach().numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("training", [False, True])
def test_spectral_norm_matches_torch(kind, training):
    theirs, ours, x = pair(kind)
    torch.nn.utils.spectral_norm(theirs)
    ember.nn.utils.spectral_norm(ours)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(to_ember(theirs.state_dict()))
    theirs.train(training)
    ours.train(training)
    compare(theirs, ours, x, ["weight_orig", "bias"])
    for name in ("weight_u", "weight_v"):
        np.testing.assert_allclose(getattr(ours, name).numpy(),
                                   getattr(theirs, name).numpy(), atol=1e-6)
    torch.nn.utils.remove_spectral_norm(theirs)
    ember.nn.utils.remove_spectral_norm(ours)
    np.testing.assert_allclose(ours.weight.detach().numpy(), theirs.weight.detach().numpy(),
                               atol=1e-6)


def test_spectral_norm_of_conv_transpose_matches_torch_in_training():
    torch.manual_seed(1)
    theirs = torch.nn.utils.spectral_norm(torch.nn.ConvTranspose2d(3, 4, 3).double())
    ours = ember.nn.utils.spectral_norm(ember.nn.ConvTranspose2d(3, 4, 3).double())
    ours.load_state_dict(to_ember(theirs.state_dict()))
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5))
    compare(theirs, ours, x, ["weight_orig", "bias"])
