"""torch.autograd.Variable, the pre-0.4 wrapper old scripts still call: it returns a tensor
sharing the data with a fresh history, and every tensor is an instance of it."""

from __future__ import annotations

import warnings

import ember
import numpy as np
import pytest
from ember.autograd import Variable


def test_variable_of_a_tensor_is_a_leaf_that_shares_its_data():
    x = ember.tensor([1.0, 2.0, 3.0])
    v = Variable(x, requires_grad=True)
    assert v.is_leaf and v.requires_grad and v.grad_fn is None
    (v * v).sum().backward()
    np.testing.assert_allclose(v.grad.numpy(), [2.0, 4.0, 6.0])
    x[0] = 10.0
    assert v[0].item() == 10.0


def test_variable_cuts_the_history_of_a_computed_tensor():
    a = ember.ones(2, requires_grad=True)
    z = a * 3
    v = Variable(z)
    assert z.grad_fn is not None
    assert v.grad_fn is None and not v.requires_grad
    np.testing.assert_allclose(v.numpy(), [3.0, 3.0])


def test_every_tensor_is_a_variable():
    assert isinstance(ember.zeros(1), Variable)
    assert isinstance(ember.nn.Parameter(ember.zeros(1)), Variable)
    assert not isinstance([1.0], Variable)


def test_variable_of_data_that_is_not_a_tensor_is_a_type_error():
    with pytest.raises(ember.EmberError, match="has to be a tensor"):
        Variable([1.0, 2.0])
    with pytest.raises(TypeError):
        Variable(np.ones(2))


def test_volatile_warns_and_has_no_effect():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        v = Variable(ember.ones(2), volatile=True)
    assert any("volatile" in str(w.message) for w in caught)
    assert not v.requires_grad
