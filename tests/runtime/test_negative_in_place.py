"""Negation into a strided output: numpy 2.4's negative writes wrong elements into an out of
some strides (a float32 column of a 4-wide matrix, 16 bytes apart; float64's 64), so
x[:, 3:].neg_() gave [-4, -5] for [-4, -8]; ember's kernel negates apart and copies."""

import ember
import numpy as np
import pytest


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("shape, columns", [((5, 4), slice(3, 4)), ((2, 4), slice(0, 1)),
                                            ((9, 8), slice(5, 6)), ((33, 4), slice(1, 3)),
                                            ((6, 16), slice(3, 4))], ids=str)
def test_neg_in_place_on_a_strided_view_negates_only_the_view(dtype, shape, columns):
    a = (np.arange(np.prod(shape)) % 7 + 1).astype(dtype).reshape(shape)
    t = ember.tensor(a.copy())
    t[:, columns].neg_()
    want = a.copy()
    want[:, columns] = -want[:, columns]
    np.testing.assert_array_equal(t.numpy(), want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_neg_into_a_strided_out_and_of_a_strided_input(dtype):
    a = (np.arange(64) + 1).astype(dtype)
    t = ember.tensor(a.copy())
    view = t[::8 if dtype == "float64" else 4]
    ember.neg(view.clone(), out=view)
    want = a.copy()
    want[::8 if dtype == "float64" else 4] *= -1
    np.testing.assert_array_equal(t.numpy(), want)
    np.testing.assert_array_equal((-ember.tensor(a)[::4]).numpy(), -a[::4])
    x = ember.tensor(a.reshape(16, 4).copy(), requires_grad=True)
    y = x[:, 3:].neg()
    y.sum().backward()
    np.testing.assert_array_equal(y.detach().numpy()[:, 0], -a.reshape(16, 4)[:, 3])
    grad = np.zeros((16, 4), dtype)
    grad[:, 3] = -1
    np.testing.assert_array_equal(x.grad.numpy(), grad)
