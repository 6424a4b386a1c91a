"""Sorting and selection: ember.sort, argsort, msort, topk, kthvalue."""

from __future__ import annotations

from ...errors import index_error, runtime_error
from ...ir.schema import normalize_dim
from ..dispatch import dispatch
from ..tensor import Tensor
from .reduce import _numpy_keywords, _ValuesIndices
from .shape import narrow, select


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
        raise index_error(f"kthvalue(): selected number k out of range for dimension {dim} "
                          f"of size {size}: k={k}")
    values, indices = sort(input, dim)
    if input.ndim == 0:
        return _ValuesIndices((values, indices))
    if keepdim:
        return _ValuesIndices((narrow(values, dim, k - 1, 1), narrow(indices, dim, k - 1, 1)))
    return _ValuesIndices((select(values, dim, k - 1), select(indices, dim, k - 1)))
