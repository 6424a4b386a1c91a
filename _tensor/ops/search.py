"""Searching and counting: ember.unique, unique_consecutive, searchsorted, bucketize, bincount,
histc."""

from __future__ import annotations

import builtins
import math

from ...errors import not_implemented_error, runtime_error
from ...ir.dtypes import float64, int64
from ...ir.schema import normalize_dim
from ..dispatch import dispatch
from ..factories import full, ones, tensor, zeros
from ..tensor import Tensor
from .elementwise import cast, floor, ge, le, logical_and, where
from .index import gather, index_add


def _unique(input, return_inverse, return_counts, dim, consecutive):
    if dim is not None:
        dim = normalize_dim(dim, input.ndim)
    values, inverse, counts = dispatch("unique", (input,),
                                       {"dim": dim, "consecutive": consecutive})
    extra = ((inverse,) if return_inverse else ()) + ((counts,) if return_counts else ())
    return (values, *extra) if extra else values


def unique(input: Tensor, sorted: bool = True, return_inverse: bool = False,
           return_counts: bool = False, dim: int | None = None):
    """The distinct elements (or slices along dim), in ascending order (also for
    sorted=False, which leaves the order to the implementation), with the inverse indices and
    the counts on request. Each NaN is distinct, as in PyTorch."""
    return _unique(input, return_inverse, return_counts, dim, consecutive=False)


def unique_consecutive(input: Tensor, return_inverse: bool = False,
                       return_counts: bool = False, dim: int | None = None):
    """The first element (or slice along dim) of each run of equal ones."""
    return _unique(input, return_inverse, return_counts, dim, consecutive=True)


def _right(side, right) -> bool:
    if side is None:
        return bool(right)
    if side not in ("left", "right"):
        raise runtime_error(f"torch.searchsorted(): side can only be 'left' or 'right' but got "
                            f"{side}")
    if right and side == "left":
        raise runtime_error("torch.searchsorted(): side and right can't be set to opposites, "
                            "got side of left while right was True")
    return side == "right"


def searchsorted(sorted_sequence: Tensor, input, *, out_int32: bool = False,
                 right: bool = False, side: str | None = None, sorter=None) -> Tensor:
    """Where each value of input would be inserted into the innermost dim of sorted_sequence
    to keep it sorted: before equal elements (side='left'), or after them (side='right')."""
    right = _right(side, right)
    if sorter is not None:
        if tuple(sorter.shape) != tuple(sorted_sequence.shape):
            raise runtime_error(
                f"torch.searchsorted(): boundary and sorter must have the same size, but got "
                f"boundary tensor {list(sorted_sequence.shape)} and got sorter tensor "
                f"{list(sorter.shape)}")
        sorted_sequence = gather(sorted_sequence, -1, sorter)
    if not isinstance(input, Tensor):
        input = tensor(input, device=sorted_sequence.device)
    return dispatch("searchsorted", (sorted_sequence, input),
                    {"right": right, "out_int32": bool(out_int32)})


def bucketize(input, boundaries: Tensor, *, out_int32: bool = False,
              right: bool = False) -> Tensor:
    """The bucket of each value: i with boundaries[i-1] < x <= boundaries[i] (right=False),
    or boundaries[i-1] <= x < boundaries[i] (right=True)."""
    if boundaries.ndim != 1:
        raise runtime_error(f"boundaries tensor must be 1 dimension, but got dim("
                            f"{boundaries.ndim})")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


def bincount(input: Tensor, weights: Tensor | None = None, minlength: int = 0) -> Tensor:
    """The count (or summed weight) of each value 0..max(input) of a 1-d non-negative
    integer tensor; at least minlength bins."""
    if input.dtype.is_floating_point:
        raise not_implemented_error(f'"bincount" not implemented for {input.dtype.name}: it '
                                    f"counts integers")
    if input.ndim != 1:
        raise runtime_error(f"bincount only supports 1-d non-negative integral inputs, got "
                            f"shape {list(input.shape)}.")
    if minlength < 0:
        raise runtime_error(f"minlength should be >= 0, got {minlength}")
    if weights is not None and (weights.ndim != 1 or weights.shape[0] != input.shape[0]):
        raise runtime_error(f"weights should be 1-d and have the same length as input: "
                            f"weights {list(weights.shape)}, input {list(input.shape)}")
    size = minlength
    if input.numel():
        if int(input.min()) < 0:
            raise runtime_error("bincount only supports 1-d non-negative integral inputs, got "
                                f"the value {int(input.min())}.")
        size = builtins.max(int(input.max()) + 1, minlength)
    if weights is None:
        counted = ones(tuple(input.shape), dtype=int64, device=input.device)
    else:  # float weights keep their dtype, other weights add up in float64, as PyTorch's
        counted = weights.detach()
        if not counted.dtype.is_floating_point:
            counted = cast(counted, float64)
    return index_add(zeros(size, dtype=counted.dtype, device=input.device), 0, input, counted)


def histc(input: Tensor, bins: int = 100, min=0, max=0) -> Tensor:
    """The histogram of input over bins equal-width bins from min to max (the data's own
    range when both are 0); values outside are left out, max falls in the last bin."""
    if not input.dtype.is_floating_point:
        raise not_implemented_error(f'"histc" not implemented for {input.dtype.name}: it takes '
                                    f"floating point input")
    if bins <= 0:
        raise runtime_error(f"torch.histogram(): bins must be > 0, but got {bins} for "
                            f"dimension 0")
    x = input.detach()
    low, high = float(min), float(max)
    if low == high and x.numel():
        low, high = float(x.min()), float(x.max())
    if low > high:
        raise runtime_error(f"torch.histc: max must be larger than min, got min={low} and "
                            f"max={high}")
    if low == high:
        low, high = low - 1, high + 1
    if not (math.isfinite(low) and math.isfinite(high)):
        raise runtime_error(f"torch.histc: range of [{low}, {high}] is not finite")
    inside = logical_and(ge(x, low), le(x, high))
    # the bin in the input's dtype, as PyTorch computes it; max itself closes the last bin
    width = full((), high, dtype=x.dtype, device=x.device) - low
    position = floor((x - low) * bins / width).clamp(0, bins - 1)
    position = cast(where(inside, position, 0), int64).reshape(-1)
    counted = cast(inside, x.dtype).reshape(-1)
    return index_add(zeros(bins, dtype=x.dtype, device=x.device), 0, position, counted)
