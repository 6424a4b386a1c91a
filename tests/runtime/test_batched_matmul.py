"""Stacks of small products (runtime/packed_gemm.py batched, codegen/llvm/bmm.py): attention
written out by hand, q @ k.transpose(-2, -1) and att @ v over (B, H, T, D) views, against
float64 numpy for each layout, on one thread and on the pool; the stacks it refuses; and
matmul's values and gradients through it."""

import ember
import numpy as np
import pytest
from ember.runtime import packed_gemm

RNG = np.random.default_rng(11)


def _heads(batch, t, heads, d, dtype):
    """(batch, heads, t, d) as x.view(batch, t, heads, d).transpose(1, 2): a two-level stack."""
    x = RNG.standard_normal((batch, t, heads * d)).astype(dtype)
    return x.reshape(batch, t, heads, d).transpose(0, 2, 1, 3)


def _windows(dtype):
    """(4, 6, 5) overlapping windows of 64 numbers: rows 1 apart, matrices 8 apart."""
    item = np.dtype(dtype).itemsize
    return np.lib.stride_tricks.as_strided(RNG.standard_normal(64).astype(dtype), (4, 6, 5),
                                           (8 * item, item, item))


def _check(a, b, dtype):
    out = packed_gemm.batched(a, b)
    assert out is not None
    assert out.flags.c_contiguous and out.dtype == dtype
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance * a.shape[-1])


STACKS = {
    "q@kT": lambda dt: (_heads(4, 16, 4, 16, dt), _heads(4, 16, 4, 16, dt).swapaxes(-1, -2)),
    "att@v": lambda dt: (RNG.standard_normal((4, 4, 16, 16)).astype(dt),
                         _heads(4, 16, 4, 16, dt)),
    "attT@g": lambda dt: (RNG.standard_normal((4, 4, 16, 16)).astype(dt).swapaxes(-1, -2),
                          _heads(4, 16, 4, 16, dt)),
    "odd sizes": lambda dt: (_heads(3, 13, 5, 7, dt), _heads(3, 7, 5, 9, dt)),
    "wide": lambda dt: (RNG.standard_normal((6, 33, 20)).astype(dt),
                        RNG.standard_normal((6, 20, 32)).astype(dt)),
    "broadcast": lambda dt: (RNG.standard_normal((3, 1, 5, 7)).astype(dt),
                             RNG.standard_normal((1, 4, 7, 6)).astype(dt)),
    "one matrix repeated": lambda dt: (RNG.standard_normal((5, 8, 7)).astype(dt),
                                       RNG.standard_normal((7, 3)).astype(dt).reshape(1, 7, 3)),
    "2-D times a stack": lambda dt: (RNG.standard_normal((8, 7)).astype(dt),
                                     RNG.standard_normal((4, 7, 5)).astype(dt)),
    "rows broadcast (expand)": lambda dt: (
        np.broadcast_to(RNG.standard_normal((4, 1, 5)).astype(dt), (4, 3, 5)),
        RNG.standard_normal((4, 5, 6)).astype(dt)),
    "B's rows broadcast": lambda dt: (
        RNG.standard_normal((4, 3, 5)).astype(dt),
        np.broadcast_to(RNG.standard_normal((4, 1, 6)).astype(dt), (4, 5, 6))),
    "columns broadcast": lambda dt: (
        np.broadcast_to(RNG.standard_normal((4, 3, 1)).astype(dt), (4, 3, 5)),
        np.broadcast_to(RNG.standard_normal((4, 5, 1)).astype(dt), (4, 5, 6))),
    "overlapping windows": lambda dt: (_windows(dt), RNG.standard_normal((4, 5, 6)).astype(dt)),
    "tall": lambda dt: (RNG.standard_normal((2, 1000, 3)).astype(dt),
                        RNG.standard_normal((2, 3, 3)).astype(dt)),
    "deep": lambda dt: (RNG.standard_normal((2, 9, 256)).astype(dt),
                        RNG.standard_normal((2, 256, 24)).astype(dt)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("stack", sorted(STACKS))
def test_stacks_match_numpy(stack, dtype, budget):
    a, b = STACKS[stack](dtype)
    _check(a, b, dtype)


def test_a_kernel_is_the_same_size_whatever_m():
    # the whole blocks of rows run in a loop: (100000, 3) @ (3, 3) compiles as fast as (16, 3)
    from ember.codegen.llvm.bmm import bmm_ir

    small, tall = bmm_ir("float32", 24, 3, 3, False, False), bmm_ir("float32", 10**5, 3, 3,
                                                                      False, False)
    assert tall.count("\n") <= 2 * small.count("\n")  # a block and the rest


def test_the_pool_shares_large_stacks(budget):
    a, b = _heads(32, 16, 4, 16, np.float32), _heads(32, 16, 4, 16, np.float32)
    _check(a, b.swapaxes(-1, -2), np.float32)


@pytest.mark.parametrize("case", ["2-D", "too wide", "too wide for float64", "too deep",
                                  "int", "mixed dtypes", "three levels", "reversed",
                                  "neither dim contiguous", "one matrix"])
def test_refused_stacks_are_left_to_numpy(case):
    f = np.float32
    a, b = {
        "2-D": (np.ones((4, 5), f), np.ones((5, 6), f)),
        "too wide": (np.ones((2, 4, 5), f), np.ones((2, 5, 65), f)),
        "too wide for float64": (np.ones((2, 4, 5)), np.ones((2, 5, 33))),
        "too deep": (np.ones((2, 4, 257), f), np.ones((2, 257, 6), f)),
        "int": (np.ones((2, 4, 5), np.int64), np.ones((2, 5, 6), np.int64)),
        "mixed dtypes": (np.ones((2, 4, 5), f), np.ones((2, 5, 6), np.float64)),
        "three levels": (np.ones((2, 3, 4, 5, 7), f).transpose(1, 0, 2, 3, 4),
                         np.ones((7, 6), f)),
        "reversed": (np.ones((4, 5, 7), f)[::-1], np.ones((4, 7, 6), f)),
        "neither dim contiguous": (np.ones((3, 8, 10), f)[:, ::2, ::2], np.ones((3, 5, 6), f)),
        "one matrix": (np.ones((1, 4, 5), f), np.ones((1, 5, 6), f)),
    }[case]
    assert packed_gemm.batched(a, b) is None
    if a.dtype != b.dtype:
        return  # matmul refuses it (test_errors)
    np.testing.assert_array_equal(ember.matmul(ember.from_numpy(a), ember.from_numpy(b)).numpy(),
                                  np.matmul(a, b))


def test_matmul_gradients_through_stacks():
    q = ember.tensor(RNG.standard_normal((2, 6, 3, 4)), requires_grad=True)
    k = ember.tensor(RNG.standard_normal((2, 6, 3, 4)), requires_grad=True)

    def attention_scores(q, k):
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        return (q @ k.transpose(-2, -1)).softmax(-1) @ k

    assert ember.autograd.gradcheck(attention_scores, (q, k))


def test_hand_written_attention_scripted_equals_eager():
    ember.manual_seed(0)
    x = ember.randn(4, 16, 64, requires_grad=True)
    mask = ember.tril(ember.ones(16, 16)).view(1, 1, 16, 16)

    def attention(x):
        q, k, v = x, x * 0.5, x * 2.0
        q = q.view(4, 16, 4, 16).transpose(1, 2)
        k = k.view(4, 16, 4, 16).transpose(1, 2)
        v = v.view(4, 16, 4, 16).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * 0.25
        att = att.masked_fill(mask == 0, float("-inf")).softmax(-1)
        return (att @ v).transpose(1, 2).contiguous().view(4, 16, 64)

    scripted = ember.script(attention)
    for _ in range(3):
        x.grad = None
        scripted(x).square().sum().backward()
        got = x.grad.clone()
        x.grad = None
        attention(x).square().sum().backward()
        np.testing.assert_allclose(got.numpy(), x.grad.numpy(), rtol=1e-5, atol=1e-5)
