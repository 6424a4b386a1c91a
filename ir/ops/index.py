"""Type rules of indexing: advanced (tensor) indices, gather/scatter, masked_fill, one_hot."""

from __future__ import annotations

import math

from ...errors import EmberError, index_error, runtime_error, type_error
from ..dtypes import INT, bool_, int32, int64
from ..schema import (
    DIM,
    NUMBER,
    bool_attr,
    broadcast_shapes,
    choice_attr,
    fmt_shape,
    int_attr,
    ints_attr,
    normalize_dim,
    number_attr,
    register,
)

_ALONG = {"dim": DIM}
from ..symbolic import definitely_less
from ..types import TensorType


def _check_index_dtype(op, index):
    # a RuntimeError, as PyTorch's gather, scatter, index_select and index_add raise
    if index.dtype.category != INT:
        raise runtime_error(f"{op}(): Expected dtype int32/int64 for index, got "
                            f"{index.dtype.name}")


def _check_index_dims(op, dims, indices):
    """One dim per index tensor, increasing (the order index_shape() and the kernel read
    them in)."""
    if len(dims) != len(indices) or list(dims) != sorted(set(dims)):
        raise index_error(
            f"{op}: dims {list(dims)} must name {len(indices)} different dims in increasing "
            "order, one per index tensor"
        )


def index_shape(x_shape, index_shapes, dims) -> tuple:
    """numpy's (and PyTorch's) result shape of x[...] with integer arrays at `dims`."""
    broadcast = broadcast_shapes(*index_shapes)
    dims = list(dims)
    adjacent = dims == list(range(dims[0], dims[0] + len(dims)))
    rest = [d for i, d in enumerate(x_shape) if i not in dims]
    if adjacent:
        before = [d for i, d in enumerate(x_shape) if i < dims[0]]
        after = [d for i, d in enumerate(x_shape) if i > dims[-1]]
        return tuple(before) + broadcast + tuple(after)
    return broadcast + tuple(rest)


@register("index", kind="index", num_inputs=(2, None), attrs={"dims": ints_attr(0)})
def _index(inputs, attrs):
    x, *indices = inputs
    dims = attrs["dims"]
    _check_index_dims("index", dims, indices)
    for i in indices:
        _check_index_dtype("index", i)
    for d in dims:
        if d >= len(x.shape):
            raise index_error(f"too many indices for tensor of dimension {len(x.shape)}")
    return TensorType(index_shape(x.shape, [i.shape for i in indices], dims), x.dtype)


@register("index_put", kind="index", num_inputs=(3, None),
          attrs={"dims": ints_attr(0), "accumulate": bool_attr()})
def _index_put(inputs, attrs):
    x, values, *indices = inputs
    _check_index_dims("index_put", attrs["dims"], indices)
    for i in indices:
        _check_index_dtype("index_put", i)
    for d in attrs["dims"]:
        if d >= len(x.shape):
            raise index_error(f"too many indices for tensor of dimension {len(x.shape)}")
    shape = index_shape(x.shape, [i.shape for i in indices], attrs["dims"])
    try:
        broadcast_shapes(shape, values.shape)
    except EmberError:
        raise runtime_error(
            f"shape mismatch: value tensor of shape {fmt_shape(values.shape)} cannot be "
            f"broadcast to indexing result of shape {fmt_shape(shape)}"
        ) from None
    return TensorType(tuple(x.shape), x.dtype)


@register("gather", kind="index", num_inputs=2, attrs=_ALONG)
def _gather(inputs, attrs):
    x, index = inputs
    _check_index_dtype("gather", index)
    dim = normalize_dim(attrs["dim"], len(x.shape))
    if len(index.shape) != len(x.shape):
        raise runtime_error("Index tensor must have the same number of dimensions as input tensor")
    for d, (a, b) in enumerate(zip(x.shape, index.shape)):
        if d != dim and definitely_less(a, b):
            raise runtime_error(
                f"Size does not match at dimension {d} expected index {fmt_shape(index.shape)} "
                f"to be smaller than self {fmt_shape(x.shape)} apart from dimension {dim}"
            )
    return TensorType(tuple(index.shape), x.dtype)


@register("gather_backward", kind="index", num_inputs=2,
          attrs={"dim": DIM, "shape": ints_attr(0, symbolic=True)})
def _gather_backward(inputs, attrs):
    """gather's gradient: zeros of the gathered tensor's `shape` with g (index's shape) added
    at the gathered places, as scatter_add does. Only gather's derivative makes it, after the
    forward gather checked the index: the compiled CPU program may then turn it into a select
    that fuses with what reads it (codegen/rewrites.py)."""
    g, index = inputs
    _check_index_dtype("gather_backward", index)
    shape = tuple(attrs["shape"])
    normalize_dim(attrs["dim"], len(shape))
    if tuple(g.shape) != tuple(index.shape) or len(shape) != len(index.shape):
        raise runtime_error(
            f"gather_backward: the gradient {fmt_shape(g.shape)} and index "
            f"{fmt_shape(index.shape)} do not fit a gather from {fmt_shape(shape)}"
        )
    return TensorType(shape, g.dtype)


def _scatter(op):
    def rule(inputs, attrs):
        x, index, src = inputs
        _check_index_dtype(op, index)
        dim = normalize_dim(attrs["dim"], len(x.shape))
        if len(index.shape) != len(x.shape):
            raise runtime_error(
                "Index tensor must have the same number of dimensions as self tensor"
            )
        for d, (a, b) in enumerate(zip(x.shape, index.shape)):
            if (d != dim and definitely_less(a, b)) or definitely_less(src.shape[d], b):
                raise runtime_error(
                    f"Expected index {fmt_shape(index.shape)} to be smaller than self "
                    f"{fmt_shape(x.shape)} apart from dimension {dim} and to be smaller size "
                    f"than src {fmt_shape(src.shape)}"
                )
        if src.dtype is not x.dtype:
            raise runtime_error(
                f"{op}(): Expected self.dtype to be equal to src.dtype ({x.dtype.name} vs "
                f"{src.dtype.name})"
            )
        return TensorType(tuple(x.shape), x.dtype)

    return rule


register("scatter", kind="index", num_inputs=3, attrs=_ALONG)(_scatter("scatter"))
register("scatter_add", kind="index", num_inputs=3, attrs=_ALONG)(_scatter("scatter_add"))

SCATTER_REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")


@register("scatter_reduce", kind="index", num_inputs=3, attrs={
    "dim": DIM, "reduce": choice_attr(*SCATTER_REDUCTIONS), "include_self": bool_attr()})
def _scatter_reduce(inputs, attrs):
    """input with each src element reduced into the place index names along attrs["dim"]:
    attrs["reduce"] one of SCATTER_REDUCTIONS, over input's own value too when
    attrs["include_self"]."""
    if attrs["reduce"] not in SCATTER_REDUCTIONS:
        raise runtime_error(f"reduce argument must be either sum, prod, mean, amax or amin, "
                            f"got {attrs['reduce']}")
    return _scatter("scatter_reduce")(inputs, attrs)


@register("index_select", kind="index", num_inputs=2, attrs=_ALONG)
def _index_select(inputs, attrs):
    x, index = inputs
    _check_index_dtype("index_select", index)
    if len(index.shape) > 1:
        raise index_error("index_select(): Index is supposed to be a vector")
    dim = normalize_dim(attrs["dim"], len(x.shape))
    shape = list(x.shape)
    if shape:
        shape[dim] = index.shape[0] if index.shape else 1
    elif math.prod(index.shape) != 1:
        raise runtime_error(
            f"index_select(): Index to scalar can have only 1 value, got "
            f"{math.prod(index.shape)} value(s)"
        )
    return TensorType(tuple(shape), x.dtype)


@register("index_add", kind="index", num_inputs=3, attrs=_ALONG)
def _index_add(inputs, attrs):
    x, index, src = inputs
    _check_index_dtype("index_add", index)
    normalize_dim(attrs["dim"], len(x.shape))
    if len(index.shape) > 1:
        raise index_error(f"index_add_(): Index is supposed to be a vector, got shape "
                          f"{fmt_shape(index.shape)}")
    if len(x.shape):
        # the source has the input's shape, with the indices' count along dim
        expected = list(x.shape)
        expected[attrs["dim"]] = math.prod(index.shape)
        if all(d.__class__ is int for d in (*expected, *src.shape)) \
                and tuple(src.shape) != tuple(expected):
            raise runtime_error(
                f"index_add_(): source of shape {fmt_shape(src.shape)} does not match the "
                f"input of shape {fmt_shape(x.shape)} with {expected[attrs['dim']]} indices "
                f"along dim {attrs['dim']}: expected {fmt_shape(tuple(expected))}")
    return TensorType(tuple(x.shape), x.dtype)


@register("masked_fill", kind="elementwise", variants=("function", "method", "inplace"),
          fuse="fiub", num_inputs=2, attrs={"value": number_attr()})
def _masked_fill(inputs, attrs):
    x, mask = inputs
    if mask.dtype is not bool_:
        raise runtime_error(
            f"masked_fill_ only supports boolean masks, but got mask with dtype {mask.dtype.name}"
        )
    shape = broadcast_shapes(x.shape, mask.shape)
    if not isinstance(attrs["value"], NUMBER):
        raise type_error("masked_fill: value must be a Python number")
    return TensorType(shape, x.dtype)


@register("one_hot", kind="index", differentiable=False, num_inputs=1,
          attrs={"num_classes": int_attr(0)})
def _one_hot(inputs, attrs):
    (x,) = inputs
    if x.dtype is not int64:
        raise runtime_error("one_hot is only applicable to index tensor of type LongTensor.")
    return TensorType(tuple(x.shape) + (attrs["num_classes"],), int64)


@register("nonzero", kind="index", differentiable=False, num_inputs=1, attrs={})
def _nonzero(inputs, attrs):
    (x,) = inputs
    # data-dependent: the count is only known to the kernel; -1 marks it here
    return TensorType((-1, len(x.shape)), int64)


@register("unique", kind="index", num_outputs=3, differentiable=False, num_inputs=1,
          attrs={"dim": int_attr(nullable=True), "consecutive": bool_attr()})
def _unique(inputs, attrs):
    """(the distinct values or slices along attrs["dim"], sorted, or of each run when
    attrs["consecutive"]; the inverse index of every element or slice; the counts). The
    count is known to the kernel only: -1 marks it."""
    (x,) = inputs
    dim = attrs["dim"]
    if dim is None:
        return (TensorType((-1,), x.dtype), TensorType(tuple(x.shape), int64),
                TensorType((-1,), int64))
    dim = normalize_dim(dim, len(x.shape))
    shape = list(x.shape) or [1]
    shape[dim] = -1
    size = x.shape[dim] if len(x.shape) else 1
    return (TensorType(tuple(shape), x.dtype), TensorType((size,), int64),
            TensorType((-1,), int64))


@register("searchsorted", kind="index", differentiable=False, num_inputs=2,
          attrs={"right": bool_attr(), "out_int32": bool_attr()})
def _searchsorted(inputs, attrs):
    """For each value, the index at which it would enter the sorted innermost dim of the
    sequence: before equal elements, or after them when attrs["right"]."""
    sequence, values = inputs
    if len(sequence.shape) == 0:
        raise runtime_error("torch.searchsorted(): boundaries tensor should have positive "
                            "dimension, but got 0 dimension")
    if len(sequence.shape) > 1 and (len(values.shape) == 0 or tuple(sequence.shape[:-1])
                                    != tuple(values.shape[:-1])):
        if len(values.shape) == 0:
            raise runtime_error(
                f"torch.searchsorted(): input value can be a scalar only when boundaries "
                f"tensor dimension is 1, but we got boundaries tensor dim("
                f"{len(sequence.shape)}) and input value's dim(0)")
        raise runtime_error(
            f"torch.searchsorted(): boundaries tensor should be 1 dimension or the first N-1 "
            f"dimensions of boundaries tensor and input value tensor must match, but we got "
            f"boundaries tensor {fmt_shape(sequence.shape)} and input value tensor "
            f"{fmt_shape(values.shape)}")
    return TensorType(tuple(values.shape), int32 if attrs["out_int32"] else int64)
