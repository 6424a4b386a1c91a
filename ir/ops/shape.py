"""Type rules of the shape ops: views (reshape, permute, slice, expand, ...) and copies.

Sizes may be symbolic (ir.symbolic.SymInt), in the input shapes and in shape attrs alike; a
symbolic size in an attr is taken to be a valid size, so only ints are checked for sign.
"""

from __future__ import annotations

import math

from ...errors import IRError, index_error, runtime_error, value_error
from ..dtypes import as_dtype, promote_types
from ..schema import (
    DIM,
    SHAPE,
    choice_attr,
    dtype_attr,
    fmt_shape,
    int_attr,
    ints_attr,
    normalize_dim,
    normalize_dims,
    number_attr,
    register,
)

_ONE = {"num_inputs": 1}
# a shape to reshape or expand to: sizes, or -1 for the one inferred or kept
TARGET_SHAPE = ints_attr(-1, symbolic=True)
# a slice of every dim: steps are positive, as PyTorch's
SLICE = {"starts": ints_attr(0, symbolic=True), "stops": ints_attr(0, symbolic=True),
         "steps": ints_attr(1, symbolic=True)}
from ..symbolic import definitely_less, definitely_less_equal
from ..types import TensorType


def _numel(shape) -> int:
    return math.prod(shape)


def _reshape_error(shape, new_shape, numel):
    return runtime_error(
        f"shape '{fmt_shape(new_shape)}' is invalid for input of size {numel} "
        f"(input shape {fmt_shape(shape)})"
    )


def _infer_size(shape, new_shape, numel) -> tuple:
    """new_shape with its one -1 replaced by the size that keeps the number of elements."""
    if new_shape.count(-1) > 1:
        raise runtime_error(f"only one dimension can be inferred: {fmt_shape(new_shape)}")
    known = _numel(d for d in new_shape if d != -1)
    if known == 0:
        raise _reshape_error(shape, new_shape, numel)
    inferred = numel // known
    if inferred * known != numel:  # structural for symbolic sizes: B*16 // 3 does not divide
        raise _reshape_error(shape, new_shape, numel)
    return tuple(inferred if d == -1 else d for d in new_shape)


def check_reshape(shape, new_shape) -> tuple:
    """The shape a reshape of `shape` to `new_shape` gives (one -1 is inferred)."""
    new_shape = tuple(new_shape)
    numel = _numel(shape)
    if -1 in new_shape:
        new_shape = _infer_size(shape, new_shape, numel)
    if numel != _numel(new_shape) or any(d < 0 for d in new_shape if d.__class__ is int):
        raise _reshape_error(shape, new_shape, numel)
    return new_shape


@register("reshape", kind="view", view=True, attrs={"shape": TARGET_SHAPE}, **_ONE)
def _reshape(inputs, attrs):
    (x,) = inputs
    return TensorType(check_reshape(x.shape, attrs["shape"]), x.dtype)


@register("view", kind="view", view=True, attrs={"shape": TARGET_SHAPE}, **_ONE)
def _view(inputs, attrs):
    return _reshape(inputs, attrs)


@register("view_dtype", kind="view", view=True, differentiable=False,
          attrs={"dtype": dtype_attr()}, **_ONE)
def _view_dtype(inputs, attrs):
    (x,) = inputs
    dtype = as_dtype(attrs["dtype"])
    if dtype.itemsize != x.dtype.itemsize:
        raise runtime_error(
            f"view({dtype.name}): reinterpreting {x.dtype.name} as a dtype of another element "
            "size is not supported by ember"
        )
    return TensorType(tuple(x.shape), dtype)


@register("permute", kind="view", view=True, attrs={"dims": ints_attr()}, **_ONE)
def _permute(inputs, attrs):
    (x,) = inputs
    dims = attrs["dims"]
    if sorted(dims) != list(range(len(x.shape))):
        raise runtime_error(
            f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
            f"length of the desired ordering of dimensions i.e. input.dim() = {len(x.shape)} is "
            f"not equal to len(dims) = {len(dims)}"
            if len(dims) != len(x.shape)
            else f"permute: dims {list(dims)} are not a permutation of 0..{len(x.shape) - 1}"
        )
    return TensorType(tuple(x.shape[d] for d in dims), x.dtype)


@register("squeeze", kind="view", view=True, attrs={"dims": ints_attr(0)}, **_ONE)
def _squeeze(inputs, attrs):
    (x,) = inputs
    dims = attrs["dims"]
    normalize_dims(dims, len(x.shape))  # in range, and each once
    return TensorType(
        tuple(d for i, d in enumerate(x.shape) if not (i in dims and d == 1)), x.dtype
    )


@register("unsqueeze", kind="view", view=True, attrs={"dim": int_attr(0)}, **_ONE)
def _unsqueeze(inputs, attrs):
    (x,) = inputs
    dim = attrs["dim"]
    shape = list(x.shape)
    if not 0 <= dim <= len(shape):
        raise index_error(f"unsqueeze: dim {dim} out of range for a {len(shape)}-d tensor")
    shape.insert(dim, 1)
    return TensorType(tuple(shape), x.dtype)


@register("expand", kind="view", view=True, attrs={"shape": TARGET_SHAPE}, **_ONE)
def _expand(inputs, attrs):
    (x,) = inputs
    target = tuple(attrs["shape"])
    if len(target) < len(x.shape):
        raise runtime_error(
            f"expand: the number of sizes provided ({len(target)}) must be greater or equal to "
            f"the number of dimensions in the tensor ({len(x.shape)})"
        )
    offset = len(target) - len(x.shape)
    out = list(target)
    for i, d in enumerate(x.shape):
        t = target[offset + i]
        if t == -1:
            out[offset + i] = d
        elif d != 1 and d != t:
            raise runtime_error(
                f"The expanded size of the tensor ({t}) must match the existing size ({d}) at "
                f"non-singleton dimension {offset + i}.  Target sizes: {fmt_shape(target)}.  "
                f"Tensor sizes: {fmt_shape(x.shape)}"
            )
    if any(d < 0 for d in out if d.__class__ is int):
        raise runtime_error(
            f"expand: -1 is not allowed in a leading, new dimension: {fmt_shape(target)}"
        )
    return TensorType(tuple(out), x.dtype)


def _slice_length(start, stop, step):
    # the length is max(0, ceil((stop - start) / step)) for a positive step
    if definitely_less_equal(start, stop):
        return (stop - start + step - 1) // step
    if definitely_less(stop, start):
        return 0
    raise IRError(
        f"slice {start}:{stop}:{step}: whether it is empty depends on the sizes' values, so no "
        "one expression gives its length"
    )


def slice_shape(shape, starts, stops, steps) -> tuple:
    try:
        return tuple(len(range(a, b, c)) for a, b, c in zip(starts, stops, steps))
    except IRError:  # a symbolic start or stop: range() cannot take it
        return tuple(_slice_length(a, b, c) for a, b, c in zip(starts, stops, steps))


def _check_slice(shape, attrs) -> None:
    """A slice gives a start, stop and step for every dim of the shape, its bounds inside
    the dim (as slice.indices() leaves them)."""
    counts = {len(attrs[k]) for k in ("starts", "stops", "steps")}
    if counts != {len(shape)}:
        raise runtime_error(
            f"slice: starts, stops and steps give {sorted(counts)} dims for a tensor of shape "
            f"{fmt_shape(shape)}"
        )
    for d, (size, start, stop) in enumerate(zip(shape, attrs["starts"], attrs["stops"])):
        if definitely_less(size, start) or definitely_less(size, stop):
            raise index_error(
                f"slice: {start}:{stop} of dim {d} reaches past its size {size} (shape "
                f"{fmt_shape(shape)})"
            )


@register("slice", kind="view", view=True, attrs=SLICE, **_ONE)
def _slice(inputs, attrs):
    (x,) = inputs
    _check_slice(x.shape, attrs)
    return TensorType(
        slice_shape(x.shape, attrs["starts"], attrs["stops"], attrs["steps"]), x.dtype
    )


@register("slice_backward", kind="shape", attrs={"shape": SHAPE, **SLICE}, **_ONE)
def _slice_backward(inputs, attrs):
    (g,) = inputs
    _check_slice(attrs["shape"], attrs)
    shape = slice_shape(attrs["shape"], attrs["starts"], attrs["stops"], attrs["steps"])
    if tuple(shape) != tuple(g.shape):
        raise runtime_error(
            f"slice_backward: the gradient {fmt_shape(g.shape)} is not the slice "
            f"{fmt_shape(shape)} of {fmt_shape(attrs['shape'])}"
        )
    return TensorType(tuple(attrs["shape"]), g.dtype)


# the view ops a write through a view can be scattered back through (see view_scatter)
SCATTERABLE_VIEWS = frozenset({"reshape", "view", "permute", "squeeze", "unsqueeze", "slice"})


@register("view_scatter", kind="shape", num_inputs=2, attrs_of="view_op",
          attrs={"view_op": choice_attr(*sorted(SCATTERABLE_VIEWS))})
def _view_scatter(inputs, attrs):
    """base with the view `view_op(base, **view attrs)` replaced by src: the functional form
    of an in-place write through a view (PyTorch's slice_scatter and kin, one op for every
    view). The result has base's type."""
    from ..schema import SCHEMAS

    base, src = inputs
    op = attrs["view_op"]
    if op not in SCATTERABLE_VIEWS:
        raise runtime_error(f"view_scatter: cannot scatter through {op!r}")
    view = SCHEMAS[op].infer((base,), {k: v for k, v in attrs.items() if k != "view_op"})
    if tuple(view.shape) != tuple(src.shape):
        raise runtime_error(
            f"view_scatter: the {op} view of a tensor of shape {fmt_shape(base.shape)} has "
            f"shape {fmt_shape(view.shape)}, but the values scattered into it have shape "
            f"{fmt_shape(src.shape)}"
        )
    return TensorType(tuple(base.shape), base.dtype)


@register("clone", kind="elementwise", variants=("function", "method"), fuse="fiub", attrs={},
          **_ONE)
def _clone(inputs, attrs):
    (x,) = inputs
    return TensorType(tuple(x.shape), x.dtype)


@register("repeat", kind="shape", attrs={"repeats": ints_attr(0, symbolic=True)}, **_ONE)
def _repeat(inputs, attrs):
    (x,) = inputs
    repeats = tuple(attrs["repeats"])
    if any(definitely_less(r, 0) for r in repeats):
        raise runtime_error(
            f"Trying to create tensor with negative dimension: repeats {list(repeats)} for "
            f"shape {fmt_shape(x.shape)}"
        )
    if len(repeats) < len(x.shape):
        raise runtime_error(
            "Number of dimensions of repeat dims can not be smaller than number of dimensions "
            f"of tensor: repeat {list(repeats)} for shape {fmt_shape(x.shape)}"
        )
    shape = (1,) * (len(repeats) - len(x.shape)) + tuple(x.shape)
    return TensorType(tuple(a * b for a, b in zip(shape, repeats)), x.dtype)


@register("cat", kind="shape", num_inputs=(1, None), attrs={"dim": DIM})
def _cat(inputs, attrs):
    if not inputs:
        raise value_error("torch.cat(): expected a non-empty list of Tensors")
    first = inputs[0]
    for i, x in enumerate(inputs):
        if not x.shape:
            raise runtime_error(
                f"zero-dimensional tensor (at position {i}) cannot be concatenated"
            )
    dim = normalize_dim(attrs["dim"], len(first.shape))
    dtype = first.dtype
    size = 0
    for i, x in enumerate(inputs):
        if len(x.shape) != len(first.shape):
            raise runtime_error(
                f"Tensors must have same number of dimensions: got {len(first.shape)} and "
                f"{len(x.shape)} (shapes {fmt_shape(first.shape)} and {fmt_shape(x.shape)})"
            )
        for d, (a, b) in enumerate(zip(first.shape, x.shape)):
            if d != dim and a != b:
                raise runtime_error(
                    f"Sizes of tensors must match except in dimension {dim}. Expected size {a} "
                    f"but got size {b} for tensor number {i} in the list (shapes "
                    f"{fmt_shape(first.shape)} and {fmt_shape(x.shape)})."
                )
        dtype = promote_types(dtype, x.dtype)
        size += x.shape[dim]
    shape = list(first.shape)
    shape[dim] = size
    return TensorType(tuple(shape), dtype)


@register("flip", kind="shape", attrs={"dims": ints_attr()}, **_ONE)
def _flip(inputs, attrs):
    (x,) = inputs
    normalize_dims(attrs["dims"], len(x.shape))
    return TensorType(tuple(x.shape), x.dtype)


@register("pad", kind="shape", attrs={
    "pads": ints_attr(symbolic=True),
    "mode": choice_attr("constant", "reflect", "replicate", "circular", optional=True),
    "value": number_attr(optional=True)}, **_ONE)
def _pad(inputs, attrs):
    (x,) = inputs
    pads = attrs["pads"]
    if len(pads) % 2 or len(pads) // 2 > len(x.shape):
        raise value_error(
            f"Padding length must be divisible by 2 and at most twice the input's dims; got "
            f"{len(pads)} for a {len(x.shape)}-d tensor"
        )
    shape = list(x.shape)
    for i in range(len(pads) // 2):
        d = len(shape) - 1 - i
        shape[d] += pads[2 * i] + pads[2 * i + 1]
        if definitely_less(shape[d], 0):
            raise runtime_error(f"pad: resulting size of dim {d} would be negative ({shape[d]})")
    mode = attrs.get("mode", "constant")
    if mode != "constant":
        # PyTorch's bounds: a reflection mirrors once (pad < size), a circular pad wraps once
        # (pad <= size); negative pads crop
        for i in range(len(pads) // 2):
            d = len(shape) - 1 - i
            lo, hi = pads[2 * i], pads[2 * i + 1]
            size = x.shape[d]
            if mode == "circular" and definitely_less(size, max(lo, hi)):
                raise runtime_error(
                    f"Padding value causes wrapping around more than once: circular padding "
                    f"({lo}, {hi}) of dim {d} of input {fmt_shape(x.shape)}"
                )
            if mode == "reflect" and definitely_less(size - 1, max(lo, hi)):
                raise runtime_error(
                    f"Argument #4: Padding size should be less than the corresponding input "
                    f"dimension, but got: padding ({lo}, {hi}) at dimension {d} of input "
                    f"{fmt_shape(x.shape)}"
                )
            if mode != "circular" and (definitely_less(shape[d], 1) or definitely_less(size, 1)):
                raise runtime_error(
                    f"{mode} padding: input (size {size} at dim {d}) is too small. Calculated "
                    f"output size: {shape[d]}"
                )
    return TensorType(tuple(shape), x.dtype)


def _triangle(inputs, attrs):
    (x,) = inputs
    if len(x.shape) < 2:
        raise runtime_error(
            f"tril/triu: input tensor must have at least 2 dimensions, got {len(x.shape)}"
        )
    return TensorType(tuple(x.shape), x.dtype)


_DIAGONAL = {"diagonal": int_attr(optional=True)}
register("tril", kind="shape", attrs=_DIAGONAL, **_ONE)(_triangle)
register("triu", kind="shape", attrs=_DIAGONAL, **_ONE)(_triangle)
