"""The op functions users call (ember.add, ember.sum, x.permute, ...), over dispatch().

Each function normalizes its arguments (dims, shapes, defaults) into a primitive's attrs, or
composes primitives. Composites here are differentiable and traceable for free.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence

from . import _composites as composites
from ._tensor import Tensor, dispatch
from .errors import runtime_error, type_error, value_error
from .ir.dtypes import as_dtype, int64, promote_types
from .ir.schema import NUMBER, normalize_dim, normalize_dims

# -- elementwise -----------------------------------------------------------------------------


def _unary(op):
    def fn(input: Tensor) -> Tensor:
        return dispatch(op, (input,))

    fn.__name__ = op
    fn.__doc__ = f"Elementwise {op}."
    return fn


neg = _unary("neg")
abs = _unary("abs")
sign = _unary("sign")
exp = _unary("exp")
log = _unary("log")
log1p = _unary("log1p")
expm1 = _unary("expm1")
sqrt = _unary("sqrt")
rsqrt = _unary("rsqrt")
reciprocal = _unary("reciprocal")
sin = _unary("sin")
cos = _unary("cos")
tanh = _unary("tanh")
sigmoid = _unary("sigmoid")
relu = _unary("relu")
erf = _unary("erf")
floor = _unary("floor")
ceil = _unary("ceil")
trunc = _unary("trunc")
logical_not = _unary("logical_not")
negative = neg
absolute = abs


def round(input: Tensor, decimals: int = 0) -> Tensor:
    if decimals:
        scale = 10.0**decimals
        return dispatch("round", (input * scale,)) / scale
    return dispatch("round", (input,))


def _check_operand(op, x):
    if not isinstance(x, (Tensor, *NUMBER)):
        raise type_error(
            f"{op}(): argument 'other' must be Tensor or Number, not {type(x).__name__}"
        )


def _binary(op):
    def fn(input, other) -> Tensor:
        return dispatch(op, (input, other))

    fn.__name__ = op
    fn.__doc__ = f"Elementwise {op} with broadcasting and type promotion."
    return fn


mul = multiply = _binary("mul")
maximum = _binary("maximum")
minimum = _binary("minimum")
remainder = _binary("remainder")
eq = _binary("eq")
ne = _binary("ne")
lt = less = _binary("lt")
le = less_equal = _binary("le")
gt = greater = _binary("gt")
ge = greater_equal = _binary("ge")
logical_and = _binary("logical_and")
logical_or = _binary("logical_or")
logical_xor = _binary("logical_xor")
floor_divide = _binary("floor_divide")


def add(input, other, *, alpha=1) -> Tensor:
    if alpha != 1:
        other = mul(other, alpha)
    return dispatch("add", (input, other))


def sub(input, other, *, alpha=1) -> Tensor:
    if alpha != 1:
        other = mul(other, alpha)
    _check_operand("sub", other)
    return dispatch("sub", (input, other))


subtract = sub


def div(input, other, *, rounding_mode: str | None = None) -> Tensor:
    _check_operand("div", other)
    if rounding_mode is None:
        return dispatch("div", (input, other))
    if rounding_mode == "floor":
        return dispatch("floor_divide", (input, other))
    if rounding_mode == "trunc":
        return dispatch("trunc_divide", (input, other))
    raise value_error(
        f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
        f"'{rounding_mode}'"
    )


divide = true_divide = div


def pow(input, exponent) -> Tensor:
    _check_operand("pow", exponent)
    return dispatch("pow", (input, exponent))


def where(condition: Tensor, input=None, other=None) -> Tensor:
    if input is None and other is None:
        return nonzero(condition, as_tuple=True)
    return dispatch("where", (condition, input, other))


def clamp(input: Tensor, min=None, max=None) -> Tensor:
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        # where, not maximum/minimum: at a tie the gradient goes to input, as PyTorch's
        out = input
        if min is not None:
            out = where(lt(out, min), min, out)
        if max is not None:
            out = where(gt(out, max), max, out)
        return out
    return dispatch("clamp", (input,), {"min": min, "max": max})


clip = clamp


def clamp_min(input, min):
    return clamp(input, min=min)


def clamp_max(input, max):
    return clamp(input, max=max)


def cast(input: Tensor, dtype) -> Tensor:
    dtype = as_dtype(dtype)
    if input._dtype is dtype:
        return input
    return dispatch("cast", (input,), {"dtype": dtype.name})


def square(input):
    return mul(input, input)


def isnan(input):
    return ne(input, input)


def isinf(input):
    return eq(abs(input), math.inf) if input.dtype.is_floating_point else zeros_like_bool(input)


def isfinite(input):
    if not input.dtype.is_floating_point:
        return logical_not(zeros_like_bool(input))
    return logical_not(logical_or(isnan(input), isinf(input)))


def zeros_like_bool(input):
    return ne(input, input) if input.dtype.is_floating_point else dispatch("ne", (input, input))


def lerp(input, end, weight):
    return input + weight * (end - input)


def allclose(input, other, rtol=1e-5, atol=1e-8, equal_nan=False) -> bool:
    import numpy as np

    a = input.detach().numpy(force=True)
    b = other.detach().numpy(force=True) if isinstance(other, Tensor) else other
    return bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(input, other) -> bool:
    return input.shape == other.shape and bool(eq(input, other).all())


# -- reductions ------------------------------------------------------------------------------


def _dims(input, dim):
    return normalize_dims(dim, input.ndim)


def _sum_dims(input, dim):
    # sum, prod, mean and var read an empty dim list as every dim (all and any do not), as
    # PyTorch's sum, mean and var do
    return normalize_dims(None if isinstance(dim, (tuple, list)) and not dim else dim, input.ndim)


def sum(input, dim=None, keepdim=False, *, dtype=None) -> Tensor:
    if dtype is not None:
        input = cast(input, dtype)
    return dispatch("sum", (input,), {"dims": _sum_dims(input, dim), "keepdim": keepdim})


def prod(input, dim=None, keepdim=False, *, dtype=None) -> Tensor:
    if dtype is not None:
        input = cast(input, dtype)
    return dispatch("prod", (input,), {"dims": _sum_dims(input, dim), "keepdim": keepdim})


def mean(input, dim=None, keepdim=False, *, dtype=None) -> Tensor:
    if dtype is not None:
        input = cast(input, dtype)
    return dispatch("mean", (input,), {"dims": _sum_dims(input, dim), "keepdim": keepdim})


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None) -> Tensor:
    if isinstance(dim, bool):  # var(x, False): the positional 'unbiased' form
        unbiased, dim = dim, None
    if correction is None:
        correction = 0 if unbiased is False else 1
    return dispatch(
        "var",
        (input,),
        {"dims": _sum_dims(input, dim), "keepdim": keepdim, "correction": correction},
    )


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None) -> Tensor:
    return _root(var(input, dim, unbiased, keepdim, correction=correction), 2)


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(dim, bool):  # var_mean(x, False): the positional 'unbiased' form
        unbiased, dim = dim, None
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(dim, bool):
        unbiased, dim = dim, None
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def logsumexp(input, dim, keepdim=False) -> Tensor:
    if not input.dtype.is_floating_point:  # integers and bool reduce in the default float
        from .ir.dtypes import get_default_dtype

        input = cast(input, get_default_dtype())
    return dispatch("logsumexp", (input,), {"dims": _dims(input, dim), "keepdim": keepdim})


def amax(input, dim=(), keepdim=False) -> Tensor:
    dims = _dims(input, None if dim == () else dim)
    return dispatch("amax", (input,), {"dims": dims, "keepdim": keepdim})


def amin(input, dim=(), keepdim=False) -> Tensor:
    dims = _dims(input, None if dim == () else dim)
    return dispatch("amin", (input,), {"dims": dims, "keepdim": keepdim})


class _ValuesIndices(tuple):
    """(values, indices), also readable as .values and .indices, as PyTorch returns."""

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]


def _max_or_min(op, full_op, input, dim, keepdim, other):
    if isinstance(dim, Tensor):
        other, dim = dim, None
    if other is not None:
        return dispatch("maximum" if op == "max_dim" else "minimum", (input, other))
    if dim is None:
        return dispatch(full_op, (input,), {"dims": _dims(input, None), "keepdim": False})
    dim = normalize_dim(dim, input.ndim) if input.ndim else normalize_dim(dim, 0)
    if input.ndim == 0:
        from .factories import zeros

        index = zeros((), dtype=int64, device=input.device)
        return _ValuesIndices((dispatch("clone", (input,)), index))
    return _ValuesIndices(dispatch(op, (input,), {"dim": dim, "keepdim": keepdim}))


def max(input, dim=None, keepdim=False, *, other=None):
    return _max_or_min("max_dim", "amax", input, dim, keepdim, other)


def min(input, dim=None, keepdim=False, *, other=None):
    return _max_or_min("min_dim", "amin", input, dim, keepdim, other)


def argmax(input, dim=None, keepdim=False) -> Tensor:
    if dim is not None:
        dim = normalize_dim(dim, input.ndim)
    return dispatch("argmax", (input,), {"dim": dim, "keepdim": keepdim})


def argmin(input, dim=None, keepdim=False) -> Tensor:
    if dim is not None:
        dim = normalize_dim(dim, input.ndim)
    return dispatch("argmin", (input,), {"dim": dim, "keepdim": keepdim})


def all(input, dim=None, keepdim=False) -> Tensor:
    return dispatch("all", (input,), {"dims": _dims(input, dim), "keepdim": keepdim})


def any(input, dim=None, keepdim=False) -> Tensor:
    return dispatch("any", (input,), {"dims": _dims(input, dim), "keepdim": keepdim})


def cumsum(input, dim, *, dtype=None) -> Tensor:
    if dtype is not None:
        input = cast(input, dtype)
    return dispatch("cumsum", (input,), {"dim": normalize_dim(dim, input.ndim)})


def norm(input, p=2, dim=None, keepdim=False):
    if p == 2 or p == "fro":
        return _root(sum(input * input, dim, keepdim), 2)
    if p == 1:
        return sum(abs(input), dim, keepdim)
    if p == math.inf:
        return amax(abs(input), () if dim is None else dim, keepdim)
    if p == 0:  # the count of non-zero entries, with a zero gradient
        return sum(where(ne(input, 0), 1.0, input * 0), dim, keepdim)
    return _root(sum(pow(abs(input), p), dim, keepdim), p)


def _root(total, p):
    """total ** (1 / p), with PyTorch's zero gradient (not inf * 0 = nan) where total is 0."""
    zero = eq(total, 0)
    safe = where(zero, 1.0, total)
    return where(zero, 0.0, sqrt(safe) if p == 2 else pow(safe, 1.0 / p))


def count_nonzero(input, dim=None):
    return sum(ne(input, 0), dim)


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


def _viewable(input, shape) -> bool:
    """Whether input's storage can be read in `shape` without a copy."""
    if input._data.flags.c_contiguous:
        return True
    probe = input._data.view()
    try:
        probe.shape = shape
    except AttributeError:
        return False
    return True


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
            f"tensor.mT is only supported on matrices or batches of matrices. Got {input.ndim}-D tensor."
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
    from .ir.schema import broadcast_shapes

    shape = broadcast_shapes(*[tuple(x.shape) for x in tensors])
    return tuple(expand(x, shape) for x in tensors)


def repeat(input, *repeats) -> Tensor:
    return dispatch("repeat", (input,), {"repeats": _shape_arg(repeats)})


def cat(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise value_error("torch.cat(): expected a non-empty list of Tensors")
    for i, x in enumerate(tensors):
        if not isinstance(x, Tensor):
            raise type_error(f"cat(): expected Tensor as element {i}, but got {type(x).__name__}")
    # PyTorch skips legacy empty 1-d tensors
    kept = [x for x in tensors if not (x.ndim == 1 and x.shape[0] == 0)] or tensors[:1]
    dim = normalize_dim(dim, kept[0].ndim)
    if len(kept) == 1:
        return dispatch("clone", (kept[0],))
    return dispatch("cat", tuple(kept), {"dim": dim})


concat = concatenate = cat


def stack(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise value_error("stack expects a non-empty TensorList")
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
    from .errors import index_error

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


def clone(input) -> Tensor:
    return dispatch("clone", (input,))


def contiguous(input) -> Tensor:
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


# -- indexing ops ----------------------------------------------------------------------------


def gather(input, dim: int, index) -> Tensor:
    if input.ndim == 0:  # a 0-d input gathers as a 1-element vector
        normalize_dim(dim, 0)
        return gather(input.reshape(1), 0, index.reshape(1)).reshape(())
    return dispatch("gather", (input, index), {"dim": normalize_dim(dim, input.ndim)})


def _scatter_src(input, index, src):
    if isinstance(src, Tensor):
        return src
    from .factories import full

    return full(tuple(index.shape), src, dtype=input.dtype, device=input.device)


def scatter(input, dim: int, index, src=None, *, value=None) -> Tensor:
    src = _scatter_src(input, index, value if src is None else src)
    return dispatch("scatter", (input, index, src), {"dim": normalize_dim(dim, input.ndim)})


def scatter_add(input, dim: int, index, src) -> Tensor:
    return dispatch("scatter_add", (input, index, src), {"dim": normalize_dim(dim, input.ndim)})


def index_select(input, dim: int, index) -> Tensor:
    dim = normalize_dim(dim, input.ndim) if input.ndim else normalize_dim(dim, 0)
    return dispatch("index_select", (input, index), {"dim": dim})


def index_add(input, dim: int, index, source, *, alpha=1) -> Tensor:
    if alpha != 1:
        source = source * alpha
    return dispatch("index_add", (input, index, source), {"dim": normalize_dim(dim, input.ndim)})


def masked_fill(input, mask, value) -> Tensor:
    if isinstance(value, Tensor):
        if value.ndim:
            raise runtime_error(
                f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                f"{value.ndim} dimension(s)."
            )
        return where(mask, cast(value, input.dtype), input)
    return dispatch("masked_fill", (input, mask), {"value": value})


def masked_select(input, mask):
    input, mask = broadcast_tensors(input, mask)
    return input[mask]


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    if num_classes == -1:
        num_classes = int(tensor.max()) + 1 if tensor.numel() else 0
    return dispatch("one_hot", (tensor,), {"num_classes": num_classes})


def nonzero(input, *, as_tuple: bool = False):
    out = dispatch("nonzero", (input,))
    if as_tuple:
        if input.ndim == 0:  # PyTorch reads a 0-d input as 1-d here
            return nonzero(input.reshape(1), as_tuple=True)
        return tuple(select(out, 1, i) for i in range(out.shape[1]))
    return out


def argwhere(input):
    return nonzero(input)


def take_along_dim(input, indices, dim=None):
    if dim is None:  # indices into the flattened input
        return gather(input.reshape(-1), 0, indices.reshape(-1))
    return gather(input, dim, indices)


# -- linear algebra and nn primitives --------------------------------------------------------


def matmul(input, other) -> Tensor:
    if not isinstance(other, Tensor) or not isinstance(input, Tensor):
        raise type_error(f"matmul(): argument 'other' must be Tensor, not {type(other).__name__}")
    return dispatch("matmul", (input, other))


def mm(input, mat2):
    if input.ndim != 2 or mat2.ndim != 2:
        raise runtime_error(f"mm: expected 2-D tensors, got {input.ndim}-D and {mat2.ndim}-D")
    return matmul(input, mat2)


def bmm(input, mat2):
    if input.ndim != 3 or mat2.ndim != 3:
        raise runtime_error(f"bmm: expected 3-D tensors, got {input.ndim}-D and {mat2.ndim}-D")
    return matmul(input, mat2)


def mv(input, vec):
    return matmul(input, vec)


def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise runtime_error(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


def outer(input, vec2):
    return unsqueeze(input, 1) * unsqueeze(vec2, 0)


def _pair(v, name="value"):
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise value_error(f"{name} must be an int or a pair of ints, got {v}")
    return v


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    batched = input.ndim == 4
    if input.ndim == 3:
        input = unsqueeze(input, 0)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if builtins.any(s != 1 for s in stride):
                raise value_error("padding='same' is not supported for strided convolutions")
            total = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
            lo = [p // 2 for p in total]
            if builtins.any(p % 2 for p in total):
                input = pad(input, (lo[1], total[1] - lo[1], lo[0], total[0] - lo[0]))
                lo = [0, 0]
            padding = tuple(lo)
        else:
            raise value_error(
                f"Invalid padding string '{padding}', should be one of ['valid', 'same']"
            )
    attrs = {
        "stride": stride,
        "padding": _pair(padding, "padding"),
        "dilation": dilation,
        "groups": groups,
    }
    out = dispatch("conv2d", (input, weight), attrs)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out if batched else squeeze(out, 0)


def max_pool2d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    if return_indices:
        raise value_error("max_pool2d(return_indices=True) is not supported by ember yet")
    kernel = _pair(kernel_size, "kernel_size")
    attrs = {
        "kernel_size": kernel,
        "stride": _pair(stride if stride else kernel, "stride"),
        "padding": _pair(padding, "padding"),
        "dilation": _pair(dilation, "dilation"),
        "ceil_mode": bool(ceil_mode),
    }
    return dispatch("max_pool2d", (input,), attrs)


def avg_pool2d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    kernel = _pair(kernel_size, "kernel_size")
    attrs = {
        "kernel_size": kernel,
        "stride": _pair(stride if stride else kernel, "stride"),
        "padding": _pair(padding, "padding"),
        "ceil_mode": bool(ceil_mode),
        "count_include_pad": bool(count_include_pad),
        "divisor_override": divisor_override,
    }
    return dispatch("avg_pool2d", (input,), attrs)


def embedding(input, weight) -> Tensor:
    return index_select(weight, 0, input.reshape(-1)).reshape(*input.shape, weight.shape[1])


def bernoulli(input, p=None) -> Tensor:
    if p is not None:
        from .factories import full_like

        input = full_like(input, p)
    return dispatch("bernoulli", (input,))


def dropout(input, p: float = 0.5, training: bool = True) -> Tensor:
    if not 0 <= p <= 1:
        raise value_error(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0
    from .factories import full_like

    mask = dispatch("bernoulli", (full_like(input, 1 - p),))
    return input * mask * (1.0 / (1 - p))


def to_device_op(input, dev):
    from .autograd.graph import to_device

    return to_device(input, dev)


def result_type(a, b):
    from .ir.dtypes import result_type as rt

    ts = [(tuple(x.shape), x.dtype) for x in (a, b) if isinstance(x, Tensor)]
    ss = [x for x in (a, b) if not isinstance(x, Tensor)]
    return rt(ts, ss)


def can_cast(from_, to):
    from_, to = as_dtype(from_), as_dtype(to)
    return from_.category <= to.category


def promote_types_(a, b):
    return promote_types(as_dtype(a), as_dtype(b))


def softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    """exp(x) / sum(exp(x)) along dim, the max subtracted first (torch.softmax)."""
    if dtype is not None:
        input = cast(input, dtype)
    if _last_dim(input, dim) and _SOFTMAX.wants(input):
        return _SOFTMAX(input)  # one compiled kernel (_composites.py)
    e = exp(_shifted(input, dim))
    return div(e, sum(e, dim, keepdim=True))


def log_softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    """x - logsumexp(x) along dim, finite for finite x (torch.log_softmax)."""
    if dtype is not None:
        input = cast(input, dtype)
    if _last_dim(input, dim) and _LOG_SOFTMAX.wants(input):
        return _LOG_SOFTMAX(input)
    shifted = _shifted(input, dim)
    return sub(shifted, logsumexp(shifted, dim, keepdim=True))


def _last_dim(input: Tensor, dim) -> bool:
    ndim = input._data.ndim
    return isinstance(dim, int) and ndim > 0 and dim in (-1, ndim - 1)


_SOFTMAX = composites.Composite("softmax", lambda x: softmax(x, -1))
_LOG_SOFTMAX = composites.Composite("log_softmax", lambda x: log_softmax(x, -1))


def _shifted(input: Tensor, dim: int) -> Tensor:
    # softmax is shift-invariant, so the max carries no gradient and is detached
    return sub(input, amax(input, dim, keepdim=True).detach())


from . import methods  # noqa: F401  (binds these functions as Tensor methods and operators)
