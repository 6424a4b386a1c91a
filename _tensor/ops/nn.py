"""Linear algebra and nn primitives: ember.matmul, ember.conv2d, the pools, ember.softmax, ..."""

from __future__ import annotations

import builtins
import operator

from ...autograd.graph import to_device
from ...errors import not_implemented_error, runtime_error, type_error, type_name, value_error
from ...ir.dtypes import as_dtype, promote_types
from ...ir.dtypes import result_type as rt
from .. import autocast, composites, hooks
from ..dispatch import dispatch
from ..factories import full_like
from ..out_arg import write_out
from ..tensor import Tensor
from .elementwise import cast, div, exp, sub
from .index import index_select
from .reduce import _numpy_keywords, amax, logsumexp, sum
from .shape import pad, squeeze, unsqueeze

# -- linear algebra and nn primitives --------------------------------------------------------


def matmul(input, other, *, out=None) -> Tensor:
    if not isinstance(other, Tensor) and not hasattr(other, "__ember_dispatch__") or (
            not isinstance(input, Tensor) and not hasattr(input, "__ember_dispatch__")):
        raise type_error(f"matmul(): argument 'other' must be Tensor, not {type_name(other)}")
    if out is None:
        return dispatch("matmul", (input, other))
    return write_out("matmul", dispatch("matmul", (input, other)), out)


def mm(input, mat2, *, out=None):
    if input.ndim != 2 or mat2.ndim != 2:
        raise runtime_error(f"mm: expected 2-D tensors, got {input.ndim}-D and {mat2.ndim}-D")
    return matmul(input, mat2, out=out)


def bmm(input, mat2, *, out=None):
    if input.ndim != 3 or mat2.ndim != 3:
        raise runtime_error(f"bmm: expected 3-D tensors, got {input.ndim}-D and {mat2.ndim}-D")
    return matmul(input, mat2, out=out)


def mv(input, vec):
    return matmul(input, vec)


def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise runtime_error(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


def outer(input, vec2):
    return unsqueeze(input, 1) * unsqueeze(vec2, 0)


def _int(v, name: str) -> int:
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise type_error(f"{name} must be an int or a tuple of ints, but found an element of "
                         f"type {type(v).__name__}: {v!r}")
    return v if v.__class__ is int else operator.index(v)


def _pair(v, name="value"):
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, str) or not hasattr(v, "__iter__"):
        raise type_error(f"{name} must be an int or a tuple of ints, got {type(v).__name__}: "
                         f"{v!r}")
    v = tuple(_int(e, name) for e in v)
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise value_error(f"{name} must be an int or a pair of ints, got {v}")
    return v


def _pool_stride(stride, kernel):
    """A pool's stride: the kernel's when not given (None or an empty sequence)."""
    if stride is None or (isinstance(stride, (tuple, list)) and not stride):
        return kernel
    return _pair(stride, "stride")


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
        if autocast.enabled:  # the bias joins the lower-precision output, as in PyTorch
            (bias,) = autocast.lower_precision_inputs((bias,), bias._device.type)
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
        "stride": _pool_stride(stride, kernel),
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
        "stride": _pool_stride(stride, kernel),
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
        if not 0 <= p <= 1:
            raise runtime_error(f"bernoulli expects p to be in [0, 1], but got p={p}")
        input = full_like(input, p)
    elif hooks.trace_here() is None:  # eager only: a graph does not read values
        if input.dtype.is_floating_point and not bool(((input >= 0) & (input <= 1)).all()):
            raise runtime_error("bernoulli: all probabilities must be in [0, 1] (NaN is not)")
    return dispatch("bernoulli", (input,))


def dropout(input, p: float = 0.5, training: bool = True) -> Tensor:
    if not 0 <= p <= 1:
        raise value_error(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0
    mask = dispatch("bernoulli", (full_like(input, 1 - p),))
    return input * mask * (1.0 / (1 - p))


def to_device_op(input, dev):
    return to_device(input, dev)


def result_type(a, b):
    ts = [(tuple(x.shape), x.dtype) for x in (a, b) if isinstance(x, Tensor)]
    ss = [x for x in (a, b) if not isinstance(x, Tensor)]
    return rt(ts, ss)


def can_cast(from_, to):
    from_, to = as_dtype(from_), as_dtype(to)
    return from_.category <= to.category


def promote_types_(a, b):
    return promote_types(as_dtype(a), as_dtype(b))


@_numpy_keywords
def softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    """exp(x) / sum(exp(x)) along dim, the max subtracted first (torch.softmax)."""
    if dtype is not None:
        input = cast(input, dtype)
    if not input._dtype.is_floating_point:
        _floating_only("softmax", input)
    if _last_dim(input, dim) and _SOFTMAX.wants(input):
        return _SOFTMAX(input)  # one compiled kernel (_composites.py)
    e = exp(_shifted(input, dim))
    return div(e, sum(e, dim, keepdim=True))


@_numpy_keywords
def log_softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    """x - logsumexp(x) along dim, finite for finite x (torch.log_softmax)."""
    if dtype is not None:
        input = cast(input, dtype)
    if not input._dtype.is_floating_point:
        _floating_only("log_softmax", input)
    if _last_dim(input, dim) and _LOG_SOFTMAX.wants(input):
        return _LOG_SOFTMAX(input)
    shifted = _shifted(input, dim)
    return sub(shifted, logsumexp(shifted, dim, keepdim=True))


def _floating_only(op: str, input: Tensor) -> None:
    if not input.dtype.is_floating_point:
        raise not_implemented_error(
            f"{op} is not implemented for {input.dtype.name} input; pass dtype=ember.float32 to "
            "compute it in floating point"
        )


def _last_dim(input: Tensor, dim) -> bool:
    ndim = input._data.ndim
    return isinstance(dim, int) and ndim > 0 and dim in (-1, ndim - 1)


_SOFTMAX = composites.Composite("softmax", lambda x: softmax(x, -1))
_LOG_SOFTMAX = composites.Composite("log_softmax", lambda x: log_softmax(x, -1))


def _shifted(input: Tensor, dim: int) -> Tensor:
    # softmax is shift-invariant, so the max carries no gradient and is detached
    return sub(input, amax(input, dim, keepdim=True).detach())


