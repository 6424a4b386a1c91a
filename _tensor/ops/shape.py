"""Shapes and views: ember.reshape, ember.permute, ember.cat, ember.split, ember.flip, ..."""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence

from ...errors import index_error, runtime_error, type_error, type_name, value_error
from ...ir.dtypes import as_dtype
from ...ir.schema import broadcast_shapes, normalize_dim
from ..dispatch import dispatch
from ..out_arg import write_out
from ..tensor import Tensor
from .reduce import _dims

# -- shapes and views ------------------------------------------------------------------------


def _shape_arg(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (Sequence,)) and not isinstance(shape[0], str):
        shape = tuple(shape[0])
    out = []
    for d in shape:
        if isinstance(d, Tensor):
            d = int(d)
        if not isinstance(d, int) or isinstance(d, bool):
            raise type_error(f"shape entries must be ints, got {type(d).__name__} in {shape}")
        out.append(d)
    return tuple(out)


def _infer_shape(input, shape) -> tuple:
    if shape and shape[0].__class__ is int:
        for d in shape:
            if d.__class__ is not int or d < 0:
                break
        else:
            return shape  # view(4, 32): plain sizes, nothing to infer (the type rule checks them)
    shape = _shape_arg(shape)
    if shape.count(-1) > 1:
        raise runtime_error("only one dimension can be inferred")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        n = input.numel()
        if known == 0 or n % known:
            raise runtime_error(
                f"shape '{list(shape)}' is invalid for input of size {n} (input shape "
                f"{list(input.shape)})"
            )
        shape = tuple(n // known if d == -1 else d for d in shape)
    return shape


def reshape(input, *shape) -> Tensor:
    shape = _infer_shape(input, shape)
    if tuple(input.shape) == shape:
        return dispatch("view", (input,), {"shape": shape})
    if not _viewable(input, shape):
        # PyTorch's reshape copies here, and the copy is no view of input: writing to it must
        # neither change input nor bump input's version
        input = clone(input)
    return dispatch("reshape", (input,), {"shape": shape})


_VIEWABLE: dict = {}  # (shape, strides, new shape) -> _viewable's answer


def _viewable(input, shape) -> bool:
    """Whether input's storage can be read in `shape` without a copy."""
    data = input._data
    if data.flags.c_contiguous:
        return True
    key = (data.shape, data.strides, shape)
    try:
        return _VIEWABLE[key]
    except KeyError:
        pass
    except TypeError:  # a shape of symbolic sizes
        key = None
    # numpy answers by trying (~11 us when it cannot, through its exception): kept per key
    probe = data.view()
    try:
        probe.shape = shape
        answer = True
    except AttributeError:
        answer = False
    if key is not None and len(_VIEWABLE) < 4096:
        _VIEWABLE[key] = answer
    return answer


def view(input, *shape) -> Tensor:
    if len(shape) == 1 and not isinstance(shape[0], (int, Sequence)):
        dtype = as_dtype(shape[0])
        if dtype is input.dtype:
            return dispatch("view", (input,), {"shape": tuple(input.shape)})
        return dispatch("view_dtype", (input,), {"dtype": dtype.name})
    return dispatch("view", (input,), {"shape": _infer_shape(input, shape)})


def view_as(input, other):
    return view(input, tuple(other.shape))


def reshape_as(input, other):
    return reshape(input, tuple(other.shape))


def permute(input, *dims) -> Tensor:
    dims = _shape_arg(dims)
    if len(dims) != input.ndim:
        raise runtime_error(
            f"permute(): number of dims don't match in permute: input has {input.ndim} dims but "
            f"{len(dims)} were given ({list(dims)})"
        )
    dims = tuple(normalize_dim(d, input.ndim) for d in dims)
    if len(set(dims)) != len(dims):
        raise runtime_error(f"permute(): duplicate dims are not allowed: {list(dims)}")
    return dispatch("permute", (input,), {"dims": dims})


def transpose(input, dim0: int, dim1: int) -> Tensor:
    n = input.ndim
    if n == 0:
        normalize_dim(dim0, 0), normalize_dim(dim1, 0)
        return dispatch("view", (input,), {"shape": ()})
    dim0, dim1 = normalize_dim(dim0, n), normalize_dim(dim1, n)
    dims = list(range(n))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return dispatch("permute", (input,), {"dims": tuple(dims)})


swapaxes = swapdims = transpose


def t(input) -> Tensor:
    if input.ndim > 2:
        raise runtime_error(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return transpose(input, 0, 1) if input.ndim == 2 else input.view(tuple(input.shape))


def mT(input) -> Tensor:
    if input.ndim < 2:
        raise runtime_error(
            "tensor.mT is only supported on matrices or batches of matrices. Got "
            f"{input.ndim}-D tensor."
        )
    return transpose(input, -2, -1)


def squeeze(input, dim=None) -> Tensor:
    if dim is None:
        dims = tuple(i for i, d in enumerate(input.shape) if d == 1)
    else:
        dims = _dims(input, dim)
    return dispatch("squeeze", (input,), {"dims": dims})


def unsqueeze(input, dim: int) -> Tensor:
    return dispatch("unsqueeze", (input,), {"dim": normalize_dim(dim, input.ndim + 1)})


def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if input.ndim == 0:
        return reshape(input, 1)
    start, end = normalize_dim(start_dim, input.ndim), normalize_dim(end_dim, input.ndim)
    if start > end:
        raise runtime_error("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = tuple(input.shape)
    return reshape(input, shape[:start] + (math.prod(shape[start : end + 1]),) + shape[end + 1 :])


def unflatten(input, dim, sizes):
    dim = normalize_dim(dim, input.ndim)
    shape = tuple(input.shape)
    return reshape(input, shape[:dim] + tuple(sizes) + shape[dim + 1 :])


def expand(input, *sizes) -> Tensor:
    return dispatch("expand", (input,), {"shape": _shape_arg(sizes)})


def expand_as(input, other) -> Tensor:
    return expand(input, tuple(other.shape))


def broadcast_to(input, shape) -> Tensor:
    return expand(input, tuple(shape))


def broadcast_tensors(*tensors):
    shape = broadcast_shapes(*[tuple(x.shape) for x in tensors])
    return tuple(expand(x, shape) for x in tensors)


def repeat(input, *repeats) -> Tensor:
    return dispatch("repeat", (input,), {"repeats": _shape_arg(repeats)})


def cat(tensors, dim: int = 0, *, out=None) -> Tensor:
    if out is not None:
        return write_out("cat", cat(tensors, dim), out)
    tensors = list(tensors)
    if not tensors:
        raise value_error("torch.cat(): expected a non-empty list of Tensors")
    for i, x in enumerate(tensors):
        if not isinstance(x, Tensor):
            raise type_error(f"cat(): expected Tensor as element {i}, but got {type_name(x)}")
        if x.ndim == 0:
            raise runtime_error(
                f"zero-dimensional tensor (at position {i}) cannot be concatenated"
            )
    # PyTorch skips legacy empty 1-d tensors
    kept = [x for x in tensors if not (x.ndim == 1 and x.shape[0] == 0)] or tensors[:1]
    dim = normalize_dim(dim, kept[0].ndim)
    if len(kept) == 1:
        return dispatch("clone", (kept[0],))
    return dispatch("cat", tuple(kept), {"dim": dim})


concat = concatenate = cat


def stack(tensors, dim: int = 0, *, out=None) -> Tensor:
    if out is not None:
        return write_out("stack", stack(tensors, dim), out)
    tensors = list(tensors)
    if not tensors:
        raise runtime_error("stack expects a non-empty TensorList")
    first = tuple(tensors[0].shape)
    for i, x in enumerate(tensors):
        if tuple(x.shape) != first:
            raise runtime_error(
                f"stack expects each tensor to be equal size, but got {list(first)} at entry 0 "
                f"and {list(x.shape)} at entry {i}"
            )
    dim = normalize_dim(dim, len(first) + 1)
    return cat([unsqueeze(x, dim) for x in tensors], dim)


def hstack(tensors):
    tensors = [x.reshape(1) if x.ndim == 0 else x for x in tensors]
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors):
    return cat([x.reshape(1, -1) if x.ndim < 2 else x for x in tensors], 0)


def narrow(input, dim: int, start: int, length: int) -> Tensor:
    dim = normalize_dim(dim, input.ndim)
    size = input.shape[dim]
    if start < 0:
        start += size
    if not (0 <= start and length >= 0 and start + length <= size):
        raise runtime_error(f"start ({start}) + length ({length}) exceeds dimension size ({size}).")
    return _slice_dim(input, dim, start, start + length, 1)


def index_error_(message):
    return index_error(message)


def _slice_dim(input, dim, start, stop, step) -> Tensor:
    shape = tuple(input.shape)
    starts = [0] * len(shape)
    stops = list(shape)
    steps = [1] * len(shape)
    starts[dim], stops[dim], steps[dim] = start, stop, step
    return dispatch(
        "slice", (input,), {"starts": tuple(starts), "stops": tuple(stops), "steps": tuple(steps)}
    )


def split(input, split_size_or_sections, dim: int = 0):
    dim = normalize_dim(dim, input.ndim)
    size = int(input.shape[dim])  # the number of pieces depends on it: exact under a trace
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            raise runtime_error(f"split_size can only be 0 if dimension size is 0, but got {step}")
        sections = [builtins.min(step, size - i) for i in range(0, size, step)] or [0]
    else:
        sections = list(split_size_or_sections)
        if builtins.sum(sections) != size:
            raise runtime_error(
                f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's "
                f"size at dimension {dim}), but got split_sizes={sections}"
            )
    out, start = [], 0
    for n in sections:
        out.append(_slice_dim(input, dim, start, start + n, 1))
        start += n
    return tuple(out)


def chunk(input, chunks: int, dim: int = 0):
    if chunks <= 0:
        raise runtime_error(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    dim = normalize_dim(dim, input.ndim)
    size = input.shape[dim]
    step = -(-size // chunks) if size else 1
    return split(input, step, dim) if size else (input,)


def unbind(input, dim: int = 0):
    dim = normalize_dim(dim, input.ndim)
    return tuple(select(input, dim, i) for i in range(int(input.shape[dim])))


def select(input, dim: int, index: int) -> Tensor:
    dim = normalize_dim(dim, input.ndim)
    size = input.shape[dim]
    if not -size <= index < size:
        raise index_error_(
            f"select(): index {index} out of range for tensor of size {list(input.shape)} at "
            f"dimension {dim}"
        )
    index %= size
    return squeeze(_slice_dim(input, dim, index, index + 1, 1), dim)


def flip(input, dims) -> Tensor:
    if isinstance(dims, int):
        dims = (dims,)
    return dispatch("flip", (input,), {"dims": _dims(input, tuple(dims))})


def pad(input, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise value_error(f"pad: unsupported mode {mode!r}")
    attrs = {"pads": tuple(int(p) for p in pad), "mode": mode}
    if mode == "constant":
        attrs["value"] = 0.0 if value is None else value
    return dispatch("pad", (input,), attrs)


def tril(input, diagonal: int = 0) -> Tensor:
    return dispatch("tril", (input,), {"diagonal": diagonal})


def triu(input, diagonal: int = 0) -> Tensor:
    return dispatch("triu", (input,), {"diagonal": diagonal})


def clone(input, *, memory_format=None) -> Tensor:
    if memory_format is not None:
        from ..memory_format import in_format  # deferred: most programs never load it

        return in_format(input, memory_format, "clone()", copy=True)
    return dispatch("clone", (input,))


def contiguous(input, memory_format=None) -> Tensor:
    if memory_format is not None:
        from ..memory_format import in_format

        return in_format(input, memory_format, "contiguous()")
    return input if input.is_contiguous() else clone(input)


def movedim(input, source, destination):
    if isinstance(source, int):
        source, destination = (source,), (destination,)
    n = input.ndim
    source = [normalize_dim(s, n) for s in source]
    destination = [normalize_dim(d, n) for d in destination]
    order = [d for d in range(n) if d not in source]
    for dst, src in sorted(zip(destination, source)):
        order.insert(dst, src)
    return permute(input, *order)


moveaxis = movedim
