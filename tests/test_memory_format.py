"""Memory formats (ember.channels_last and friends), as PyTorch's: the strides below are the
ones torch 2.13 gives for the same calls."""

from __future__ import annotations

import copy
import pickle

import ember
import ember.nn as nn
import ember.nn.functional as F
import numpy as np
import pytest

NCHW = (60, 20, 5, 1)  # the strides of a contiguous (2, 3, 4, 5) tensor
NHWC = (60, 1, 15, 3)  # and of a channels-last one


def test_to_channels_last_lays_the_bytes_out_nhwc_and_keeps_the_values():
    x = ember.randn(2, 3, 4, 5)
    y = x.to(memory_format=ember.channels_last)
    assert y.shape == (2, 3, 4, 5) and y.stride() == NHWC
    assert not y.is_contiguous()
    assert y.is_contiguous(memory_format=ember.channels_last)
    assert not x.is_contiguous(memory_format=ember.channels_last)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    # already in the format: the same tensor, as PyTorch returns self
    assert y.to(memory_format=ember.channels_last) is y
    assert y.contiguous(memory_format=ember.channels_last) is y
    back = y.contiguous()
    assert back.stride() == NCHW and back.is_contiguous()
    np.testing.assert_array_equal(back.numpy(), x.numpy())


def test_channels_last_3d_and_formats_as_arguments():
    x = ember.randn(2, 3, 4, 5, 6)
    y = x.to(memory_format=ember.channels_last_3d)
    assert y.stride() == (360, 1, 90, 18, 3)
    assert y.is_contiguous(memory_format=ember.channels_last_3d)
    assert y.contiguous(memory_format=ember.contiguous_format).stride() == (360, 120, 30, 6, 1)
    assert repr(ember.channels_last) == "ember.channels_last"
    assert isinstance(ember.preserve_format, ember.memory_format)
    # one object per format through pickle and deepcopy (a saved config keeps comparing by is)
    assert pickle.loads(pickle.dumps(ember.channels_last)) is ember.channels_last
    assert copy.deepcopy(ember.channels_last_3d) is ember.channels_last_3d


def test_the_copy_is_an_identity_for_autograd():
    x = ember.randn(2, 3, 4, 5, dtype=ember.float64, requires_grad=True)
    w = ember.randn(2, 3, 4, 5, dtype=ember.float64)
    y = x.to(memory_format=ember.channels_last)
    (y * w).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), w.numpy())
    assert ember.autograd.gradcheck(
        lambda a: a.contiguous(memory_format=ember.channels_last) * 3, (x,))


def test_to_with_a_dtype_and_a_format_and_copy():
    x = ember.randn(2, 3, 4, 5)
    y = x.to(ember.float64, memory_format=ember.channels_last)
    assert y.dtype is ember.float64 and y.stride() == NHWC
    z = x.to(memory_format=ember.contiguous_format, copy=True)
    assert z is not x and z.stride() == NCHW
    assert x.to(memory_format=ember.preserve_format) is x


def test_clone_with_a_format():
    y = ember.randn(2, 3, 4, 5).to(memory_format=ember.channels_last)
    c = y.clone(memory_format=ember.channels_last)
    assert c is not y and c.stride() == NHWC
    assert y.clone(memory_format=ember.contiguous_format).stride() == NCHW
    np.testing.assert_array_equal(c.numpy(), y.numpy())


def test_factories_take_memory_format_and_like_factories_preserve_it():
    y = ember.randn(2, 3, 4, 5).to(memory_format=ember.channels_last)
    for make in (ember.empty_like, ember.zeros_like, ember.ones_like, ember.rand_like,
                 ember.randn_like):
        assert make(y).stride() == NHWC, make
        assert make(y, memory_format=ember.contiguous_format).stride() == NCHW, make
    assert ember.full_like(y, 2.0).stride() == NHWC
    assert ember.ones_like(y).numpy().sum() == 120
    leaf = ember.zeros_like(y, requires_grad=True)
    assert leaf.is_leaf and leaf.requires_grad and leaf.stride() == NHWC
    assert ember.empty(2, 3, 4, 5, memory_format=ember.channels_last).stride() == NHWC
    assert ember.zeros_like(ember.randn(2, 3, 4, 5)).stride() == NCHW


def test_module_to_changes_only_4d_and_5d_tensors():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 2))
    weight = model[0].weight
    model.to(memory_format=ember.channels_last)
    assert model[0].weight is weight  # the Parameter object stays
    assert model[0].weight.stride() == (27, 1, 9, 3)
    assert model[0].weight.is_contiguous(memory_format=ember.channels_last)
    assert model[0].bias.shape == (8,) and model[3].weight.stride() == (8, 1)
    x = ember.randn(2, 3, 3, 3).to(memory_format=ember.channels_last)
    model.eval()
    out = model(x)
    expect = model[3](model[1](F.conv2d(x.contiguous(), model[0].weight.contiguous(),
                                        model[0].bias)).flatten(1))
    np.testing.assert_allclose(out.detach().numpy(), expect.detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_a_scripted_function_may_change_the_format():
    x = ember.randn(2, 3, 4, 5)
    f = ember.script(lambda a: a.to(memory_format=ember.channels_last) * 2 + 1)
    for _ in range(2):
        np.testing.assert_allclose(f(x).numpy(), x.numpy() * 2 + 1, rtol=1e-6)


def test_bad_formats_are_refused_as_pytorch_refuses_them():
    with pytest.raises(ember.EmberError, match="required rank 4 tensor to use channels_last"):
        ember.randn(3, 4).to(memory_format=ember.channels_last)
    with pytest.raises(RuntimeError, match="required rank 5 tensor to use channels_last_3d"):
        ember.randn(2, 3, 4, 5).contiguous(memory_format=ember.channels_last_3d)
    with pytest.raises(ember.EmberError, match="preserve memory format is unsupported"):
        ember.randn(2, 3, 4, 5).is_contiguous(memory_format=ember.preserve_format)
    with pytest.raises(TypeError, match="memory_format' must be ember.memory_format, not str"):
        ember.randn(2, 3, 4, 5).to(memory_format="channels_last")
    with pytest.raises(ember.EmberError, match="required rank 4"):
        nn.Conv3d(1, 1, 1).to(memory_format=ember.channels_last)
