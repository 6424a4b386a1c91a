"""Derivatives that route a gradient by a mask (where, masked_fill, clamp, relu, maximum,
minimum) give exact zeros where the mask blocks it, even when the incoming gradient is inf:
g * 0 would be NaN there, PyTorch's where(mask, g, 0) is 0."""

from __future__ import annotations

import math

import ember
import numpy as np
import pytest
from ember import ops as E

CASES = {
    "where": lambda x: E.where(E.gt(x, 0), x, 0.0),
    "masked_fill": lambda x: E.masked_fill(x, E.le(x, 0), 0.0),
    "clamp": lambda x: E.clamp(x, min=0.0),
    "relu": E.relu,
    "maximum": lambda x: E.maximum(x, ember.zeros_like(x)),
    "minimum": lambda x: E.neg(E.minimum(E.neg(x), ember.zeros_like(x))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_blocked_gradient_is_zero_not_nan_under_an_infinite_incoming_gradient(name):
    x = ember.tensor([-1.0, 2.0], dtype="float64", requires_grad=True)
    out = CASES[name](x)
    (g,) = ember.autograd.grad([out], [x], [ember.tensor([math.inf, 1.0], dtype="float64")])
    np.testing.assert_array_equal(g.numpy(), [0.0, 1.0])
