"""A user-defined op joins the op vocabulary: typed, dispatched, differentiable."""

import ember
import numpy as np
import pytest
from ember.autograd import gradcheck


@pytest.fixture(scope="module")
def scaled_tanh():
    @ember.library.custom_op("tests::scaled_tanh", infer=lambda inputs, attrs: inputs[0])
    def op(xp, x, scale):
        return xp.tanh(x) * scale

    @op.derivative(save_inputs=False, save_outputs=True)
    def _(node, g):
        out, scale = node.outputs[0], node.attrs["scale"]
        return (g * (scale - out * out / scale),)

    return op


def test_custom_op_runs_its_kernel(scaled_tanh):
    x = ember.randn(4, 3, dtype=ember.float64)
    np.testing.assert_allclose(scaled_tanh(x, scale=2.0).numpy(), np.tanh(x.numpy()) * 2.0)


def test_custom_op_is_differentiable(scaled_tanh):
    x = ember.randn(3, 2, dtype=ember.float64, requires_grad=True)
    assert gradcheck(lambda t: scaled_tanh(t, scale=1.5), (x,))
    y = scaled_tanh(x, scale=1.5)
    assert y.grad_fn is not None


def test_custom_op_is_in_the_op_tables(scaled_tanh):
    from ember.autograd.derivatives import DERIVATIVES
    from ember.ir.schema import SCHEMAS
    from ember.runtime.kernels import KERNELS

    assert {"tests::scaled_tanh"} <= set(SCHEMAS) & set(KERNELS) & set(DERIVATIVES)


def test_custom_op_name_needs_a_namespace_and_is_unique(scaled_tanh):
    with pytest.raises(ember.EmberError, match="namespace"):
        ember.library.custom_op("plain", infer=lambda i, a: i[0])
    with pytest.raises(ember.EmberError, match="already registered"):
        ember.library.custom_op("tests::scaled_tanh", infer=lambda i, a: i[0])


def test_non_differentiable_custom_op_gives_no_grad():
    @ember.library.custom_op(
        "tests::argsort",
        differentiable=False,
        infer=lambda inputs, attrs: ember.ir.types.TensorType(tuple(inputs[0].shape), ember.int64),
    )
    def argsort(xp, x):
        return xp.argsort(x, axis=-1)

    x = ember.tensor([3.0, 1.0, 2.0], requires_grad=True)
    out = argsort(x)
    assert out.tolist() == [1, 2, 0] and out.dtype is ember.int64 and not out.requires_grad
