"""Tensor API checks that need PyTorch itself, not a value it computes: interoperability with
torch. Everything with a fixed expected value lives in test_tensor.py, which runs without torch."""

from __future__ import annotations

import ember
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.oracle


def test_torch_from_dlpack_shares_memory():
    t = ember.arange(4.0)
    u = torch.from_dlpack(t)
    assert u.dtype == torch.float32 and tuple(u.shape) == (4,)
    assert u.tolist() == [0.0, 1.0, 2.0, 3.0]
    t[2] = -1.0
    assert u[2].item() == -1.0


@pytest.mark.parametrize("shape", [(12,), (2, 12), (3, 20), (2, 3, 17), (1, 9), (40,)])
@pytest.mark.parametrize("scale", [1.0, 1e-4, 1e5])
def test_repr_wraps_lines_and_suffixes_as_torch_does(shape, scale):
    import numpy as np

    a = (np.random.default_rng(0).standard_normal(shape) * scale).astype(np.float32)
    assert repr(ember.tensor(a)) == repr(torch.tensor(a))
    e = ember.tensor(a, requires_grad=True) * 2
    t = torch.tensor(a, requires_grad=True) * 2
    assert repr(e) == repr(t)
