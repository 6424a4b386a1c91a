"""Reduction kernels. dims arrive normalized (a tuple of non-negative ints), or None for all."""

from __future__ import annotations

import math

import numpy as np

from ..threads import before_blas
from .registry import kernel


def _axis(dims):
    """dims as numpy's axis: None (every dim, as a graph may say) or a tuple."""
    return None if dims is None else tuple(dims)


def _acc_dtype(x):
    return np.int64 if x.dtype.kind in "biu" else None


@kernel("sum")
def _sum(xp, x, dims, keepdim):
    axis = _axis(dims)
    if xp is np:
        # a sum over every dim (loss.sum()) is numpy's single pass: no split to look for
        if axis is not None and len(axis) < x.ndim and x.flags.c_contiguous:
            if _leading_product(x, axis):
                return _leading_by_gemv(x, axis, keepdim)
            split = _leading_then_rest(x, axis, keepdim) if len(axis) > 1 else None
            if split is not None:
                return split
        # the ufunc called from this module: an overflow warning is this module's, which the
        # kernels' warning filter silences (np.sum would warn from numpy's own module)
        return np.add.reduce(x, axis=axis, dtype=_acc_dtype(x), keepdims=keepdim)
    with np.errstate(all="ignore"):
        return xp.sum(x, axis=axis, keepdims=keepdim, dtype=_acc_dtype(x))


# a sum over leading dims goes to BLAS from this many rows (of at least GEMV_MIN_COLUMNS)
GEMV_MIN_ROWS = 64
GEMV_MIN_COLUMNS = 16


def _leading_product(x, axis) -> bool:
    """Whether the sum is over the leading dims (0..k-1) of a float32/float64 array with
    enough rows and columns for a GEMV to pay."""
    lead = len(axis)
    if x.dtype not in _BLAS_FLOATS or not lead or sorted(axis) != list(range(lead)):
        return False
    rows = math.prod(x.shape[:lead])
    return rows >= GEMV_MIN_ROWS and math.prod(x.shape[lead:]) >= GEMV_MIN_COLUMNS


_BLAS_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


_ONES: dict = {}  # (rows, dtype) -> a read-only vector of ones, made once


def _ones(rows: int, dtype) -> np.ndarray:
    key = (rows, dtype)
    ones = _ONES.get(key)
    if ones is None:
        ones = np.ones(rows, dtype=dtype)
        ones.flags.writeable = False
        if len(_ONES) < 64:
            _ONES[key] = ones
    return ones


def _leading_by_gemv(x, axis, keepdim):
    """The sum over the leading dims as ones @ x (rows, rest): a linear layer's bias gradient
    and layer norm's weight and bias gradients, about 3x numpy's add.reduce over the rows
    (34 us against 11 us for (8, 64, 512) float32). A sum that is all -0.0 gives +0.0."""
    before_blas()
    lead = len(axis)
    rest = x.shape[lead:]
    rows = math.prod(x.shape[:lead])
    out = _ones(rows, x.dtype) @ x.reshape(rows, math.prod(rest))
    shape = (1,) * lead + rest if keepdim else rest
    # the product itself where it has the shape already: a reshape would be a view, and a
    # leaf's AccumulateGrad copies a gradient that is a view rather than keep it
    return out if out.shape == shape else out.reshape(shape)


def _leading_then_rest(x, axis, keepdim):
    """A sum over leading dims and later ones (a conv bias's gradient over N, H, W) in two
    steps: the leading dims first, as whole contiguous slabs added together, then the rest.
    numpy reduces (0, 2, 3) of (64, 64, 8, 8) in one strided pass 5x slower. None when the
    dims are not a leading run plus others."""
    dims = sorted(axis)
    lead = 0
    while lead < len(dims) and dims[lead] == lead:
        lead += 1
    if lead == 0 or lead == len(dims):
        return None
    acc = _acc_dtype(x)
    partial = np.add.reduce(x, axis=tuple(range(lead)), dtype=acc)
    out = np.add.reduce(partial, axis=tuple(d - lead for d in dims[lead:]), dtype=acc)
    if keepdim:
        out = out.reshape(tuple(1 if i in axis else n for i, n in enumerate(x.shape)))
    return out


@kernel("prod")
def _prod(xp, x, dims, keepdim):
    with np.errstate(all="ignore"):
        return xp.prod(x, axis=_axis(dims), keepdims=keepdim, dtype=_acc_dtype(x))


@kernel("mean")
def _mean(xp, x, dims, keepdim):
    axis = _axis(dims)
    if xp is np and x.dtype.kind == "f" and x.dtype.itemsize >= 4:
        # np.mean's own steps (the ufunc's sum, then a division by the count in the same
        # dtype) without its Python wrappers; warnings are this module's, which are silenced
        count = x.size if axis is None else math.prod(x.shape[d] for d in axis)
        return np.true_divide(np.add.reduce(x, axis=axis, keepdims=keepdim),
                              x.dtype.type(count))
    with np.errstate(all="ignore"):
        return xp.mean(x, axis=axis, keepdims=keepdim)


@kernel("var")
def _var(xp, x, dims, keepdim, correction):
    with np.errstate(all="ignore"):
        n = 1
        for d in range(x.ndim) if dims is None else dims:
            n *= x.shape[d]
        mean = xp.mean(x, axis=_axis(dims), keepdims=True)
        dev = x - mean
        total = xp.sum(dev * dev, axis=_axis(dims), keepdims=keepdim)
        # a correction leaving no degrees of freedom divides by 0: inf, or nan for 0 / 0
        return total / x.dtype.type(max(n - correction, 0))


@kernel("logsumexp")
def _logsumexp(xp, x, dims, keepdim):
    with np.errstate(all="ignore"):
        axis = _axis(dims) if dims is not None else tuple(range(x.ndim))
        if x.size:
            m = xp.max(x, axis=axis, keepdims=True)
            m = xp.where(xp.isfinite(m), m, x.dtype.type(0))
        else:  # an empty input has no max to subtract: the result is log(0) = -inf
            m = xp.zeros_like(xp.sum(x, axis=axis, keepdims=True))
        out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
        return out if keepdim else xp.squeeze(out, axis=axis)


@kernel("amax")
def _amax(xp, x, dims, keepdim):
    return xp.max(x, axis=_axis(dims), keepdims=keepdim)


@kernel("amin")
def _amin(xp, x, dims, keepdim):
    return xp.min(x, axis=_axis(dims), keepdims=keepdim)


def _values_indices(xp, x, dim, keepdim, pick):
    # numpy's argmax/argmin already return the first NaN, as PyTorch's max/min do
    if x.ndim == 0:
        return x.copy(), xp.zeros((), dtype=np.int64)
    idx = pick(x, axis=dim, keepdims=True)
    values = xp.take_along_axis(x, idx, axis=dim)
    if not keepdim:
        values, idx = xp.squeeze(values, axis=dim), xp.squeeze(idx, axis=dim)
    return values, idx.astype(np.int64, copy=False)


@kernel("sort")
def _sort(xp, x, dim, descending):
    """Stable, NaN last ascending and first descending (NaN is the greatest), as PyTorch's."""
    if x.ndim == 0:
        return x.copy(), xp.zeros((), dtype=np.int64)
    if descending:
        # the reversed row sorted ascending, reversed back: descending, ties in their order
        n = x.shape[dim]
        flipped = xp.flip(x, axis=dim)
        idx = xp.flip(xp.argsort(flipped, axis=dim, kind="stable"), axis=dim)
        idx = (n - 1) - idx
    else:
        idx = xp.argsort(x, axis=dim, kind="stable")
    return xp.take_along_axis(x, idx, axis=dim), idx.astype(np.int64, copy=False)


def _cumulative_extreme(xp, x, dim, take_max):
    """PyTorch's cummax/cummin: the running extreme, NaN sticking once seen, and the index of
    the element it came from (on a tie the later one; each new NaN moves it)."""
    if x.ndim == 0:
        return x.copy(), xp.zeros((), dtype=np.int64)
    values = (xp.maximum if take_max else xp.minimum).accumulate(x, axis=dim)
    if x.dtype.kind == "f":
        start = -np.inf if take_max else np.inf
    elif x.dtype.kind == "b":
        start = not take_max
    else:
        info = np.iinfo(x.dtype)
        start = info.min if take_max else info.max
    head = xp.full(x.shape[:dim] + (1,) + x.shape[dim + 1:], start, dtype=x.dtype)
    # a slice, not take(range(...)): numpy turns a range into an index array element by
    # element in Python (~50 ms for 1M)
    before_last = values[(slice(None),) * dim + (slice(0, x.shape[dim] - 1),)]
    previous = xp.concatenate([head, before_last], axis=dim)
    with np.errstate(invalid="ignore"):
        starts = (x >= previous) if take_max else (x <= previous)
    if x.dtype.kind == "f":
        starts |= xp.isnan(x)
    shape = [1] * x.ndim
    shape[dim] = x.shape[dim]
    positions = xp.arange(x.shape[dim], dtype=np.int64).reshape(shape)
    indices = xp.maximum.accumulate(xp.where(starts, positions, 0), axis=dim)
    return values, indices


@kernel("cummax")
def _cummax(xp, x, dim):
    return _cumulative_extreme(xp, x, dim, True)


@kernel("cummin")
def _cummin(xp, x, dim):
    return _cumulative_extreme(xp, x, dim, False)


@kernel("max_dim")
def _max_dim(xp, x, dim, keepdim):
    return _values_indices(xp, x, dim, keepdim, xp.argmax)


@kernel("min_dim")
def _min_dim(xp, x, dim, keepdim):
    return _values_indices(xp, x, dim, keepdim, xp.argmin)


def _arg(xp, x, dim, keepdim, pick):
    if dim is None:
        idx = pick(x.reshape(-1))
        idx = xp.asarray(idx, dtype=np.int64)
        return idx.reshape((1,) * x.ndim) if keepdim else idx
    if x.ndim == 0:
        return xp.zeros((), dtype=np.int64)
    return pick(x, axis=dim, keepdims=keepdim).astype(np.int64, copy=False)


@kernel("argmax")
def _argmax(xp, x, dim, keepdim):
    return _arg(xp, x, dim, keepdim, xp.argmax)


@kernel("argmin")
def _argmin(xp, x, dim, keepdim):
    return _arg(xp, x, dim, keepdim, xp.argmin)


@kernel("all")
def _all(xp, x, dims, keepdim):
    return xp.all(x, axis=_axis(dims), keepdims=keepdim)


@kernel("any")
def _any(xp, x, dims, keepdim):
    return xp.any(x, axis=_axis(dims), keepdims=keepdim)


@kernel("cumsum")
def _cumsum(xp, x, dim):
    if x.ndim == 0:
        return x.astype(_acc_dtype(x) or x.dtype)
    return xp.cumsum(x, axis=dim, dtype=_acc_dtype(x))


@kernel("cumprod")
def _cumprod(xp, x, dim):
    if x.ndim == 0:
        return x.astype(_acc_dtype(x) or x.dtype)
    with np.errstate(all="ignore"):
        return xp.cumprod(x, axis=dim, dtype=_acc_dtype(x))


@kernel("logcumsumexp")
def _logcumsumexp(xp, x, dim):
    """log(cumsum(exp(x))) as a running logaddexp: each step shifts by its own maximum, so
    neither a large nor a very negative element overflows or loses the smaller ones."""
    if x.ndim == 0:
        return x.copy()
    with np.errstate(all="ignore"):
        return xp.logaddexp.accumulate(x, axis=dim)


@kernel("median")
def _median(xp, x, ignore_nan):
    """The lower median of all elements: NaN if any is NaN, or, ignoring NaN, of the rest."""
    flat = xp.sort(x.reshape(-1))  # NaN sorts last
    count = flat.size
    if x.dtype.kind == "f":
        nan_count = int(xp.count_nonzero(xp.isnan(flat)))
        if nan_count and not ignore_nan:
            return xp.asarray(np.nan, dtype=x.dtype)
        count -= nan_count
    if count == 0:
        return xp.asarray(np.nan, dtype=x.dtype)
    return flat[(count - 1) // 2].copy()
