"""The type rules with symbolic sizes: broadcasting, reshape, matmul, reductions, slices, cat,
conv and pooling give exact expressions, and refuse what could fail for some size."""

import itertools

import ember.ir.ops  # noqa: F401  (registers the schemas)
import pytest
from ember.errors import EmberError, IRError
from ember.ir.dtypes import bool_, float32, int64
from ember.ir.ops.nn import conv_out_size
from ember.ir.schema import SCHEMAS
from ember.ir.symbolic import SymInt, symbols
from ember.ir.types import TensorType

B, C, H, W = symbols("B C H W")


def f32(*shape):
    return TensorType(tuple(shape), float32)


def infer(op, *inputs, **attrs):
    return SCHEMAS[op].infer(inputs, attrs)


def test_a_symbol_broadcasts_against_one_and_itself():
    assert infer("add", f32(B, 16), f32(1, 16)).shape == (B, 16)
    assert infer("add", f32(B, 1), f32(16)).shape == (B, 16)
    assert infer("mul", f32(B, H), f32(B, H)).shape == (B, H)
    assert infer("where", TensorType((B, 1), bool_), f32(1, H), 0.0).shape == (B, H)


@pytest.mark.parametrize(("a", "b"), [((B,), (C,)), ((B,), (4,)), ((B * 2, 3), (B, 3))])
def test_different_sizes_do_not_broadcast(a, b):
    with pytest.raises(EmberError, match="must match the size of tensor b"):
        infer("add", f32(*a), f32(*b))


def test_reshape_infers_minus_one_over_symbols():
    assert infer("reshape", f32(B, 4), shape=(-1,)).shape == (B * 4,)
    assert infer("reshape", f32(B, 16), shape=(-1, 4)).shape == (B * 4, 4)
    assert infer("reshape", f32(B, 16), shape=(B, -1)).shape == (B, 16)
    assert infer("reshape", f32(B, H, W), shape=(B, -1)).shape == (B, H * W)
    assert infer("view", f32(B * 4, 4), shape=(B, 16)).shape == (B, 16)


@pytest.mark.parametrize("shape", [(-1, 3), (B, 15), (C, -1), (-1, -1), (0, -1), (B * 16, -2)])
def test_reshape_refuses_a_shape_that_loses_elements(shape):
    with pytest.raises(EmberError, match="invalid for input of size B\\*16|only one dimension"):
        infer("reshape", f32(B, 16), shape=shape)


def test_reshape_minus_one_still_works_for_ints():
    assert infer("reshape", f32(6, 4), shape=(-1, 8)).shape == (3, 8)
    with pytest.raises(EmberError, match="invalid for input of size 24"):
        infer("reshape", f32(6, 4), shape=(-1, 5))


def test_matmul_needs_equal_inner_sizes():
    assert infer("matmul", f32(B, 16), f32(16, 4)).shape == (B, 4)
    assert infer("matmul", f32(B, H, C), f32(C, W)).shape == (B, H, W)
    with pytest.raises(EmberError, match="cannot be multiplied"):
        infer("matmul", f32(B, C), f32(H, 4))


def test_reductions_keep_or_drop_symbolic_dims():
    assert infer("sum", f32(B, H), dims=(1,), keepdim=False).shape == (B,)
    assert infer("mean", f32(B, H), dims=(0,), keepdim=True).shape == (1, H)
    values, indices = infer("max_dim", f32(B, H), dim=0, keepdim=False)
    assert values.shape == indices.shape == (H,) and indices.dtype is int64
    assert infer("argmax", f32(B, H), dim=None, keepdim=False).shape == ()


def test_slices_of_symbolic_dims():
    out = infer("slice", f32(B, H), starts=(0, 1), stops=(B, H - 1), steps=(1, 2))
    assert out.shape == (B, (H - 1) // 2)
    assert infer("slice", f32(B, 8), starts=(1, 0), stops=(B, 8), steps=(1, 3)).shape == (B - 1, 3)


def test_a_slice_that_may_be_empty_has_no_single_length():
    # stop - start is H//2 - 2 + 1: negative for H = 2 (empty), positive for large H
    with pytest.raises(IRError, match="whether it is empty depends on the sizes"):
        infer("slice", f32(H), starts=(1,), stops=((H + 1) // 2 - 1,), steps=(1,))
    assert infer("slice", f32(H), starts=(5,), stops=(2,), steps=(1,)).shape == (0,)
    assert infer("slice", f32(B), starts=(2,), stops=(B,), steps=(1,)).shape == (B - 2,)


def test_cat_sums_symbolic_sizes():
    assert infer("cat", f32(B, H), f32(C, H), f32(2, H), dim=0).shape == (B + C + 2, H)
    with pytest.raises(EmberError, match="Sizes of tensors must match"):
        infer("cat", f32(B, H), f32(B, W), dim=0)


def test_expand_repeat_and_pad_with_symbols():
    assert infer("expand", f32(1, 16), shape=(B, -1)).shape == (B, 16)
    assert infer("expand", f32(), shape=(B, H)).shape == (B, H)
    assert infer("repeat", f32(B, H), repeats=(2, 3)).shape == (B * 2, H * 3)
    assert infer("pad", f32(B, H), pads=(1, 2)).shape == (B, H + 3)
    assert infer("pad", f32(B, H), pads=(-1, 0)).shape == (B, H - 1)
    with pytest.raises(EmberError, match="negative"):
        infer("pad", f32(4, 3), pads=(-2, -2))


def test_conv_output_sizes_are_expressions():
    x, w = f32(B, 3, H, W), f32(8, 3, 3, 3)
    same = infer("conv2d", x, w, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    assert same.shape == (B, 8, H, W)
    strided = infer("conv2d", x, w, stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1)
    assert strided.shape == (B, 8, (H + 1) // 2, (W + 1) // 2)
    pooled = infer(
        "max_pool2d",
        f32(B, 3, H * 2, W),
        kernel_size=(2, 2),
        stride=(2, 2),
        padding=(0, 0),
        ceil_mode=False,
    )
    assert pooled.shape == (B, 3, H, W // 2)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "ceil_mode"),
    list(itertools.product([1, 2, 3], [1, 2, 3], [0, 1], [1, 2], [False, True])),
)
def test_symbolic_conv_sizes_match_concrete_ones(kernel, stride, padding, dilation, ceil_mode):
    if padding * 2 > kernel:
        return
    try:
        expr = conv_out_size(H, kernel, stride, padding, dilation, ceil_mode)
    except IRError as exc:
        # only where the size modulo the stride decides it
        assert ceil_mode and "modulo the stride" in str(exc)
        return
    for size in range(max(2, dilation * (kernel - 1) + 1), 30):
        concrete = conv_out_size(size, kernel, stride, padding, dilation, ceil_mode)
        value = expr.subs({"H": size}) if isinstance(expr, SymInt) else expr
        assert value == concrete, (size, expr)


def test_gather_only_refuses_an_index_that_is_surely_too_large():
    index = TensorType((B, 2), int64)
    assert infer("gather", f32(B, H), index, dim=1).shape == (B, 2)
    with pytest.raises(EmberError, match="Size does not match"):
        infer("gather", f32(B, H), TensorType((B + 1, 2), int64), dim=1)
