"""Sorting and selection: ember.sort, argsort, msort, topk, kthvalue, median, nanmedian, mode."""

from __future__ import annotations

from ...errors import index_error, runtime_error
from ...ir.dtypes import bool_, int64
from ...ir.schema import normalize_dim
from ..dispatch import dispatch
from ..factories import arange, ones_like, zeros
from ..tensor import Tensor
from .elementwise import clamp_min, gt, isnan, ne, where
from .index import gather
from .reduce import _numpy_keywords, _ValuesIndices, argmax, cummax, sum
from .shape import cat, narrow, select, squeeze


@_numpy_keywords
def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """(values, indices) along dim. Always stable (ties keep their order), which PyTorch's
    stable=False also allows; NaN sorts as the greatest value."""
    dim = normalize_dim(dim, max(input.ndim, 1))
    return _ValuesIndices(dispatch("sort", (input,), {"dim": dim, "descending": bool(descending)}))


@_numpy_keywords
def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    return sort(input, dim, descending, stable)[1]


def msort(input: Tensor) -> Tensor:
    return sort(input, 0)[0]


@_numpy_keywords
def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """The k largest (or smallest) values along dim and their indices, in order."""
    dim = normalize_dim(dim, max(input.ndim, 1))
    size = input.shape[dim] if input.ndim else 1
    if not 0 <= k <= size:
        raise runtime_error(f"selected index k out of range: k={k} for a dimension of size "
                            f"{size}")
    values, indices = sort(input, dim, descending=largest)
    if input.ndim == 0:
        return _ValuesIndices((values, indices))
    return _ValuesIndices((narrow(values, dim, 0, k), narrow(indices, dim, 0, k)))


@_numpy_keywords
def kthvalue(input: Tensor, k: int, dim: int = -1, keepdim: bool = False):
    """The k-th smallest value along dim (k counts from 1) and its index."""
    dim = normalize_dim(dim, max(input.ndim, 1))
    size = input.shape[dim] if input.ndim else 1
    if not 1 <= k <= size:
        raise runtime_error(f"kthvalue(): selected number k out of range for dimension {dim} "
                          f"of size {size}: k={k}")
    values, indices = sort(input, dim)
    if input.ndim == 0:
        return _ValuesIndices((values, indices))
    if keepdim:
        return _ValuesIndices((narrow(values, dim, k - 1, 1), narrow(indices, dim, k - 1, 1)))
    return _ValuesIndices((select(values, dim, k - 1), select(indices, dim, k - 1)))


def _along(input: Tensor, dim: int, n: int) -> Tensor:
    """0, 1, ..., n-1 laid along dim (size 1 elsewhere), to broadcast against input."""
    shape = [1] * input.ndim
    shape[dim] = n
    return arange(n, dtype=int64, device=input.device).reshape(tuple(shape))


def _pick_sorted(ordered, dim, keepdim, position):
    """(value, index) at `position` (a tensor of positions, size 1 along dim) of the sorted
    (values, indices)."""
    values, indices = ordered
    value, index = gather(values, dim, position), gather(indices, dim, position)
    if not keepdim:
        value, index = squeeze(value, dim), squeeze(index, dim)
    return _ValuesIndices((value, index))


def _median(op, input, dim, keepdim, ignore_nan):
    if dim is None:
        return dispatch("median", (input,), {"ignore_nan": ignore_nan})
    dim = normalize_dim(dim, max(input.ndim, 1))
    if input.ndim == 0:
        return _ValuesIndices((input.clone(), zeros((), dtype=int64, device=input.device)))
    n = input.shape[dim]
    if n == 0:
        raise index_error(f"{op}(): Expected reduction dim {dim} to have non-zero size, got "
                          f"shape {list(input.shape)}")
    if input.dtype.is_floating_point:
        nan_count = sum(isnan(input), dim, keepdim=True)
        if ignore_nan:  # the lower median of the rest (any NaN when all are)
            position = clamp_min((n - 1 - nan_count) // 2, 0)
        else:  # NaN when any is: the first NaN, which sorts first among the NaNs at the end
            position = where(gt(nan_count, 0), n - nan_count, (n - 1) // 2)
    else:
        position = zeros(tuple(1 if d == dim else s for d, s in enumerate(input.shape)),
                         dtype=int64, device=input.device) + (n - 1) // 2
    return _pick_sorted(sort(input, dim), dim, keepdim, position)


@_numpy_keywords
def median(input: Tensor, dim: int | None = None, keepdim: bool = False):
    """The lower median: of all elements (NaN if any is NaN, gradient shared by the elements
    equal to it), or (values, indices) along dim."""
    return _median("median", input, dim, keepdim, ignore_nan=False)


@_numpy_keywords
def nanmedian(input: Tensor, dim: int | None = None, keepdim: bool = False):
    """median with the NaNs left out (NaN only where every element is NaN)."""
    return _median("nanmedian", input, dim, keepdim, ignore_nan=True)


@_numpy_keywords
def mode(input: Tensor, dim: int = -1, keepdim: bool = False):
    """(values, indices): the most frequent value along dim (the smallest of equally frequent
    ones) and the index of its last occurrence, as PyTorch's."""
    dim = normalize_dim(dim, max(input.ndim, 1))
    if input.ndim == 0:
        return _ValuesIndices((input.clone(), zeros((), dtype=int64, device=input.device)))
    n = input.shape[dim]
    if n == 0:
        raise index_error(f"mode(): Expected reduction dim {dim} to have non-zero size, got "
                          f"shape {list(input.shape)}")
    ordered = sort(input, dim)
    values = ordered.values
    positions = _along(input, dim, n)
    # equal values are adjacent once sorted: the length of the run so far at each position
    # peaks at the end of each run, and the first peak ends the smallest most frequent value
    first = ones_like(narrow(values, dim, 0, 1), dtype=bool_)
    changed = ne(narrow(values, dim, 1, n - 1), narrow(values, dim, 0, n - 1))
    starts = cat([first, changed], dim)
    run_start = cummax(where(starts, positions, 0), dim).values
    end = argmax(positions - run_start, dim, keepdim=True)
    return _pick_sorted(ordered, dim, keepdim, end)
