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
