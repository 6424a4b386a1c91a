"""Type rules of the reductions: dims (normalized by the caller), keepdim, result dtypes."""

from __future__ import annotations

from ...errors import index_error, not_implemented_error, runtime_error
from ..dtypes import FLOAT, INT, bool_, int64, uint8
from ..schema import (
    DIM,
    DIMS,
    KEEPDIM,
    bool_attr,
    int_attr,
    normalize_dim,
    normalize_dims,
    number_attr,
    register,
)

# the attrs of a reduction over dims, and of one along a dim
OVER_DIMS = {"dims": DIMS, "keepdim": KEEPDIM}
ALONG_DIM = {"dim": DIM}
_ONE = {"num_inputs": 1}
from ..types import TensorType


def reduced_shape(shape, dims, keepdim: bool) -> tuple:
    dims = normalize_dims(dims, len(shape))
    if keepdim:
        return tuple(1 if i in dims else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in dims)


def _accumulating_dtype(x):
    # integer and bool sums accumulate in int64, as PyTorch's
    return int64 if x.dtype.category in (INT, bool_.category) else x.dtype


@register("sum", kind="reduction", attrs=OVER_DIMS, **_ONE)
def _sum(inputs, attrs):
    (x,) = inputs
    return TensorType(reduced_shape(x.shape, attrs["dims"], attrs["keepdim"]), _accumulating_dtype(x))


@register("prod", kind="reduction", attrs=OVER_DIMS, **_ONE)
def _prod(inputs, attrs):
    return _sum(inputs, attrs)


def _float_reduction(op):
    def rule(inputs, attrs):
        (x,) = inputs
        if x.dtype.category != FLOAT:
            raise runtime_error(
                f"{op}(): could not infer output dtype. Input dtype must be either a floating "
                f"point or complex dtype. Got: {x.dtype.name}"
            )
        return TensorType(reduced_shape(x.shape, attrs["dims"], attrs["keepdim"]), x.dtype)

    return rule


register("mean", kind="reduction", attrs=OVER_DIMS, **_ONE)(_float_reduction("mean"))
register("var", kind="reduction", attrs={**OVER_DIMS, "correction": number_attr()},
         **_ONE)(_float_reduction("var"))
register("logsumexp", kind="reduction", attrs=OVER_DIMS, **_ONE)(_float_reduction("logsumexp"))


def _nonempty(op, x, dims):
    for d in normalize_dims(dims, len(x.shape)):
        if len(x.shape) and x.shape[d] == 0:
            raise index_error(
                f"{op}(): Expected reduction dim {d} to have non-zero size, got shape "
                f"{list(x.shape)}"
            )


@register("amax", kind="reduction", attrs=OVER_DIMS, **_ONE)
def _amax(inputs, attrs):
    (x,) = inputs
    _nonempty("amax", x, attrs["dims"])
    return TensorType(reduced_shape(x.shape, attrs["dims"], attrs["keepdim"]), x.dtype)


@register("amin", kind="reduction", attrs=OVER_DIMS, **_ONE)
def _amin(inputs, attrs):
    (x,) = inputs
    _nonempty("amin", x, attrs["dims"])
    return TensorType(reduced_shape(x.shape, attrs["dims"], attrs["keepdim"]), x.dtype)


def _with_indices(op):
    def rule(inputs, attrs):
        (x,) = inputs
        dim = normalize_dim(attrs["dim"], len(x.shape))
        _nonempty(op, x, dim)
        shape = reduced_shape(x.shape, dim, attrs["keepdim"])
        return TensorType(shape, x.dtype), TensorType(shape, int64)

    return rule


_ALONG_KEEPDIM = {"dim": DIM, "keepdim": KEEPDIM}
register("max_dim", kind="reduction", num_outputs=2, attrs=_ALONG_KEEPDIM, **_ONE)(
    _with_indices("max"))
register("min_dim", kind="reduction", num_outputs=2, attrs=_ALONG_KEEPDIM, **_ONE)(
    _with_indices("min"))


def _arg(op):
    def rule(inputs, attrs):
        (x,) = inputs
        dim = attrs["dim"]
        if dim is None:
            if 0 in x.shape:
                raise index_error(f"{op}(): Expected reduction dim to be specified for input.numel() == 0.")
            return TensorType((1,) * len(x.shape) if attrs["keepdim"] else (), int64)
        _nonempty(op, x, dim)
        return TensorType(reduced_shape(x.shape, dim, attrs["keepdim"]), int64)

    return rule


_ARG = {"dim": int_attr(nullable=True), "keepdim": KEEPDIM}
register("argmax", kind="reduction", differentiable=False, attrs=_ARG, **_ONE)(_arg("argmax"))
register("argmin", kind="reduction", differentiable=False, attrs=_ARG, **_ONE)(_arg("argmin"))


def _logical(inputs, attrs):
    (x,) = inputs
    # uint8 in, uint8 out: PyTorch keeps the old byte-mask convention here
    dtype = uint8 if x.dtype is uint8 else bool_
    return TensorType(reduced_shape(x.shape, attrs["dims"], attrs["keepdim"]), dtype)


register("all", kind="reduction", differentiable=False, attrs=OVER_DIMS, **_ONE)(_logical)
register("any", kind="reduction", differentiable=False, attrs=OVER_DIMS, **_ONE)(_logical)


@register("sort", kind="reduction", num_outputs=2, variants=("function", "method"),
          attrs={"dim": DIM, "descending": bool_attr()}, **_ONE)
def _sort(inputs, attrs):
    """(values, indices) along attrs["dim"], ascending or descending; stable."""
    (x,) = inputs
    normalize_dim(attrs["dim"], len(x.shape))
    return TensorType(tuple(x.shape), x.dtype), TensorType(tuple(x.shape), int64)


def _cumulative_extreme(inputs, attrs):
    """(running max or min, the index it came from) along attrs["dim"]."""
    (x,) = inputs
    normalize_dim(attrs["dim"], len(x.shape))
    return TensorType(tuple(x.shape), x.dtype), TensorType(tuple(x.shape), int64)


register("cummax", kind="reduction", num_outputs=2, variants=("function", "method"),
         attrs=ALONG_DIM, **_ONE)(_cumulative_extreme)
register("cummin", kind="reduction", num_outputs=2, variants=("function", "method"),
         attrs=ALONG_DIM, **_ONE)(_cumulative_extreme)


@register("cumsum", kind="reduction", attrs=ALONG_DIM, **_ONE)
def _cumsum(inputs, attrs):
    (x,) = inputs
    normalize_dim(attrs["dim"], len(x.shape))
    return TensorType(tuple(x.shape), _accumulating_dtype(x))


@register("cumprod", kind="reduction", attrs=ALONG_DIM, **_ONE)
def _cumprod(inputs, attrs):
    (x,) = inputs
    normalize_dim(attrs["dim"], len(x.shape))
    return TensorType(tuple(x.shape), _accumulating_dtype(x))


@register("logcumsumexp", kind="reduction", attrs=ALONG_DIM, **_ONE)
def _logcumsumexp(inputs, attrs):
    (x,) = inputs
    normalize_dim(attrs["dim"], len(x.shape))
    if x.dtype.category != FLOAT:
        raise not_implemented_error(
            f"logcumsumexp(): not implemented for {x.dtype.name} (a floating point input is "
            f"expected)")
    return TensorType(tuple(x.shape), x.dtype)


@register("median", kind="reduction", attrs={"ignore_nan": bool_attr()}, **_ONE)
def _median(inputs, attrs):
    """The lower median of all elements (attrs["ignore_nan"]: of the non-NaN ones)."""
    (x,) = inputs
    return TensorType((), x.dtype)
