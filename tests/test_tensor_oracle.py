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


@pytest.mark.parametrize("spec", ["", ".2f", "8.3e", ">12", "g"])
def test_format_reads_as_torchs(spec):
    # a 0-d tensor formats as its number with or without a spec ('{}'.format(acc) prints
    # 42.857..., not tensor(42.8571)); a 1-d one takes only the empty spec
    for make in (lambda fw: fw.tensor(3) * 100 / 7, lambda fw: fw.tensor(2.5, dtype=fw.float64),
                 lambda fw: fw.tensor(7), lambda fw: fw.tensor(True)):
        e, t = make(ember), make(torch)
        if spec and isinstance(t.item(), bool) and spec not in (">12",):
            continue  # bool's own formatting refuses float specs in both
        assert format(e, spec) == format(t, spec)
    assert format(ember.ones(2), "") == format(torch.ones(2), "")
    if spec:
        with pytest.raises(TypeError):
            format(ember.ones(2), spec)


def test_ember_from_dlpack_shares_a_torch_tensors_memory():
    t = torch.arange(4.0)
    e = ember.from_dlpack(t)
    assert e.dtype == ember.float32 and e.tolist() == [0.0, 1.0, 2.0, 3.0]
    t[1] = -5.0
    assert e[1].item() == -5.0


def test_a_torch_tensor_handed_to_ember_is_named_with_the_way_to_convert_it():
    # the bare type names read "expected Tensor ..., got Tensor"
    for call in (lambda: ember.ones(2) + torch.ones(2),
                 lambda: ember.nn.Linear(2, 2)(torch.ones(2)),
                 lambda: ember.cat([ember.ones(2), torch.ones(2)]),
                 lambda: ember.ones(2) @ torch.ones(2)):
        with pytest.raises(ember.EmberError, match=r"torch\.Tensor \(a PyTorch tensor.*"
                                                   r"from_dlpack"):
            call()
