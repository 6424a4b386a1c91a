"""The out= keyword of the public functions (torch.add(x, y, out=r)): the result is written
into out, which is resized when its shape differs; errors as PyTorch gives them."""

from __future__ import annotations

import warnings

import ember
import numpy as np
import pytest


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name,np_fn", [
    ("add", np.add), ("mul", np.multiply), ("sub", np.subtract), ("maximum", np.maximum),
    ("matmul", np.matmul), ("div", np.divide), ("pow", lambda a, b: np.abs(a) ** b),
])
def test_binary_functions_write_into_out(name, np_fn):
    a, b = _rand(4, 4, seed=1), _rand(4, 4, seed=2)
    if name == "pow":
        a = np.abs(a)
    out = ember.empty(4, 4)
    got = getattr(ember, name)(ember.tensor(a), ember.tensor(b), out=out)
    assert got is out
    np.testing.assert_allclose(out.numpy(), np_fn(a, b), rtol=1e-5, atol=1e-6)


def test_unary_reduction_and_joining_functions_take_out():
    a = _rand(3, 5)
    out = ember.empty(3, 5)
    ember.exp(ember.tensor(a), out=out)
    np.testing.assert_allclose(out.numpy(), np.exp(a), rtol=1e-6)
    s = ember.empty(3)
    ember.sum(ember.tensor(a), 1, out=s)
    np.testing.assert_allclose(s.numpy(), a.sum(1), rtol=1e-5)
    c = ember.empty(6, 5)
    ember.cat([ember.tensor(a), ember.tensor(a)], 0, out=c)
    np.testing.assert_array_equal(c.numpy(), np.concatenate([a, a]))
    m = ember.empty(5)
    ember.mean(ember.tensor(a), 0, out=m)
    np.testing.assert_allclose(m.numpy(), a.mean(0), rtol=1e-5, atol=1e-6)
    st = ember.empty(2, 3, 5)
    ember.stack([ember.tensor(a), ember.tensor(a)], out=st)
    np.testing.assert_array_equal(st.numpy(), np.stack([a, a]))


def test_ember_ops_functions_are_the_public_ones_with_out():
    assert ember.ops.add is ember.add and ember.ops.exp is ember.exp
    out = ember.empty(2)
    ember.ops.sigmoid(ember.zeros(2), out=out)
    np.testing.assert_allclose(out.numpy(), [0.5, 0.5])


def test_out_keeps_its_dtype_and_storage():
    out = ember.zeros(3, dtype=ember.float64)
    view = out[:]
    ember.add(ember.tensor([1.0, 2.0, 3.0]), 1, out=out)
    assert out.dtype is ember.float64
    np.testing.assert_array_equal(view.numpy(), [2.0, 3.0, 4.0])


def test_an_empty_out_is_resized_silently_and_a_full_one_with_a_warning():
    a = ember.tensor(_rand(2, 3))
    out = ember.empty(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ember.mul(a, 2, out=out)
    assert tuple(out.shape) == (2, 3)
    out = ember.zeros(5)
    with pytest.warns(UserWarning, match="resized"):
        ember.mul(a, 2, out=out)
    np.testing.assert_allclose(out.numpy(), a.numpy() * 2)


def test_a_float_result_into_an_integer_out_is_refused():
    with pytest.raises(ember.EmberError, match="can't be cast"):
        ember.add(ember.tensor([1.5]), 1, out=ember.zeros(1, dtype=ember.int64))


def test_out_with_an_input_that_requires_grad_is_refused():
    x = ember.ones(2, requires_grad=True)
    with pytest.raises(ember.EmberError, match="automatic differentiation"):
        ember.mul(x, 2, out=ember.empty(2))
    with ember.no_grad():
        out = ember.empty(2)
        ember.mul(x, 2, out=out)
    np.testing.assert_array_equal(out.numpy(), [2.0, 2.0])


def test_out_that_is_not_a_tensor_is_a_type_error():
    with pytest.raises(TypeError):
        ember.add(ember.ones(1), 1, out=np.zeros(1))
    with pytest.raises(TypeError):
        ember.cat([ember.ones(1)], out=[ember.empty(1)])


def test_functions_without_an_out_variant_refuse_the_keyword():
    with pytest.raises(TypeError):
        ember.reshape(ember.ones(4), (2, 2), out=ember.empty(2, 2))
