"""Compiled equals eager for the ops that joined through their declarations (sorting too):
the inverse trigonometric and hyperbolic functions, log2/log10/exp2, the binary float ops
(eager kernels inside a compiled program) and the bitwise ops (fused), values and gradients."""

import ember
import numpy as np
import pytest

UNIT = lambda r, n: r.uniform(-0.9, 0.9, n)  # noqa: E731
DOMAINS = {
    "asin": UNIT, "acos": UNIT, "atanh": UNIT,
    "atan": lambda r, n: r.standard_normal(n) * 3,
    "sinh": lambda r, n: r.standard_normal(n) * 3,
    "cosh": lambda r, n: r.standard_normal(n) * 3,
    "asinh": lambda r, n: r.standard_normal(n) * 3,
    "acosh": lambda r, n: r.uniform(1.05, 9.0, n),
    "log2": lambda r, n: r.uniform(0.01, 100.0, n),
    "log10": lambda r, n: r.uniform(0.01, 100.0, n),
    "exp2": lambda r, n: r.standard_normal(n) * 5,
}
BINARY = ["atan2", "hypot", "logaddexp", "logaddexp2", "copysign", "xlogy", "fmod"]


def _compare(fn, inputs, grad: bool):
    compiled = ember.script(fn, strict=True)
    eager_in = [ember.tensor(a, requires_grad=grad) for a in inputs]
    comp_in = [ember.tensor(a, requires_grad=grad) for a in inputs]
    for _ in range(2):  # the second call runs the cached program
        for t in comp_in:
            t.grad = None
        out = compiled(*comp_in)
        if grad:
            out.sum().backward()
    expected = fn(*eager_in)
    if grad:
        expected.sum().backward()
    np.testing.assert_array_equal(out.detach().numpy(), expected.detach().numpy())
    if grad:
        for c, e in zip(comp_in, eager_in):
            np.testing.assert_allclose(c.grad.numpy(), e.grad.numpy(), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(DOMAINS))
def test_compiled_unary_op_equals_eager(op, dtype):
    r = np.random.default_rng(len(op))
    x = DOMAINS[op](r, 64).astype(dtype)
    _compare(lambda t: getattr(ember, op)(t * 1.0) + 1, [x], grad=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", BINARY)
def test_compiled_binary_op_equals_eager(op, dtype):
    r = np.random.default_rng(len(op))
    a = (r.standard_normal((4, 8)) * 2).astype(dtype)
    b = (r.uniform(0.3, 2.0, 8) * r.choice([-1, 1], 8)).astype(dtype)
    if op == "xlogy":
        b = np.abs(b)
        a[0, :3] = 0  # x == 0 gives 0
    _compare(lambda s, t: getattr(ember, op)(s, t) * 2, [a, b], grad=True)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "int64", "bool"])
def test_compiled_bitwise_chain_equals_eager(dtype):
    r = np.random.default_rng(7)
    if dtype == "bool":
        a, b = r.random((5, 7)) < 0.5, r.random(7) < 0.5
    else:
        info = np.iinfo(dtype)
        a = r.integers(info.min, info.max, (5, 7), dtype=dtype, endpoint=True)
        b = r.integers(info.min, info.max, 7, dtype=dtype, endpoint=True)

    def chain(x, y):
        z = ember.bitwise_xor(ember.bitwise_and(x, y), ember.bitwise_or(x, ~y))
        return ember.bitwise_not(z) if dtype != "bool" else z | ~x

    _compare(chain, [a, b], grad=False)


def test_compiled_shifts_equal_eager_past_the_width():
    a = np.array([1, -8, 5, 127, -128], dtype=np.int32)
    n = np.array([0, 1, 31, 33, 40], dtype=np.int32)
    _compare(lambda x, k: (x << k) + (x >> k), [a, n], grad=False)


def test_bitwise_ops_refuse_floats_with_a_clear_error():
    x = ember.randn(3)
    with pytest.raises(ember.EmberError, match="bitwise.*float32"):
        x & x
    with pytest.raises(ember.EmberError, match="bitwise_not.*float32"):
        ~x


def test_bool_operators_stay_logical_ops():
    """& | ^ ~ on bool tensors record logical ops (they fuse and export as such)."""
    fn = ember.script(lambda a, b: (a & b) | (~a ^ b))
    a, b = ember.tensor([True, False, True]), ember.tensor([True, True, False])
    np.testing.assert_array_equal(fn(a, b).numpy(), [True, False, False])
    seen = {node.op for node in fn.graph.nodes}
    assert seen == {"logical_and", "logical_or", "logical_xor", "logical_not"}, seen


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_sort_and_topk_equal_eager(dtype):
    x = np.random.default_rng(3).permutation(48).reshape(6, 8).astype(dtype) / 7

    def fn(t):
        values, indices = t.sort(dim=0, descending=True)
        top = ember.topk(t, 3).values
        kth = t.kthvalue(2)[0].sum()
        return values[:2].sum(0) + top.sum(1).mean() + indices.float().mean() + kth

    _compare(fn, [x], grad=True)


def test_compiled_cummax_cummin_equal_eager():
    x = np.random.default_rng(4).permutation(40).reshape(5, 8).astype("float64")

    def fn(t):
        return ember.cummax(t, 1).values.sum(0) + t.cummin(0)[0].mean(1).sum()

    _compare(fn, [x], grad=True)
