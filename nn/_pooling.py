"""The pooling forms the 2-d primitives do not cover: max pooling that returns indices (1-d to
3-d), max_pool3d and avg_pool3d, max_unpool1d/2d/3d, adaptive max pooling and power-average
(lp) pooling, composed from slices, gather and scatter.

Each window is read as K strided slices of the padded input (one per kernel tap) stacked on a
new dim; the max is the gather at argmax, so the gradient reaches the one element PyTorch
picks (the first maximum in the window's row-major order), and its index comes from a
constant table of the flat input position each tap reads. nn.functional re-exports these.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .._tensor import Tensor
from .._tensor import ops as E
from .._tensor.factories import tensor, zeros
from ..errors import runtime_error, value_error
from ._conv import _ntuple


def _pool_args(op, n, kernel_size, stride, padding, dilation):
    kernel = _ntuple(kernel_size, n, "kernel_size")
    stride = kernel if stride is None or stride == () else _ntuple(stride, n, "stride")
    padding, dilation = _ntuple(padding, n, "padding"), _ntuple(dilation, n, "dilation")
    for name, values in (("kernel_size", kernel), ("stride", stride), ("dilation", dilation)):
        if any(v <= 0 for v in values):
            raise runtime_error(
                f"{op}: {name} should be greater than zero, but got {name}={list(values)}"
            )
    if any(p < 0 for p in padding):
        raise runtime_error(f"{op}: pad must be non-negative, but got pad={list(padding)}")
    for k, p in zip(kernel, padding):
        if 2 * p > k:
            raise runtime_error(
                f"{op}: pad should be at most half of effective kernel size, but got pad={p}, "
                f"kernel_size={k}"
            )
    return kernel, stride, padding, dilation


def _out_size(size, k, s, p, d, ceil_mode) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside
        out -= 1
    return out


def _batched(op: str, input: Tensor, n: int) -> tuple[Tensor, bool]:
    if input.ndim not in (n + 1, n + 2):
        raise runtime_error(
            f"{op}: Expected {n + 1}D or {n + 2}D (batch mode) tensor for input, but got "
            f"{list(input.shape)}"
        )
    batched = input.ndim == n + 2
    return (input if batched else E.unsqueeze(input, 0)), batched


def _windows(op, x, n, kernel, stride, padding, dilation, ceil_mode, fill):
    """(taps (N, C, K, *out): the K window elements of every output position, padding read
    as `fill`; the output sizes)."""
    spatial = tuple(x.shape[2:])
    outs = tuple(_out_size(*a, ceil_mode) for a in zip(spatial, kernel, stride, padding, dilation))
    if any(o < 1 for o in outs):
        raise runtime_error(
            f"{op}: Given input size {list(spatial)}, calculated output size {list(outs)} is "
            "too small"
        )
    # the right side pads up to where the last window ends (ceil_mode's windows may pass it)
    pads = []
    for size, k, s, p, d, o in reversed(list(zip(spatial, kernel, stride, padding, dilation,
                                                 outs))):
        pads += [p, max(p, (o - 1) * s + d * (k - 1) + 1 - size - p)]
    if any(pads):
        x = E.pad(x, pads, value=fill)
    taps = []
    for offsets in itertools.product(*(range(k) for k in kernel)):
        index = (slice(None), slice(None)) + tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, o, s in zip(offsets, dilation, outs, stride)
        )
        taps.append(x[index])
    return E.stack(taps, 2), outs


def _source_table(spatial, kernel, stride, padding, dilation, outs) -> np.ndarray:
    """(K, *out): the flat input position each tap of each window reads; a tap in the
    padding reads the window's first position inside the input (what PyTorch reports when
    a window holds only -inf)."""
    grids = []
    for size, k, s, p, d, o in zip(spatial, kernel, stride, padding, dilation, outs):
        start = np.arange(o) * s - p
        pos = start[None, :] + d * np.arange(k)[:, None]  # (k, o)
        first = np.where(start < 0, start + d * ((-start + d - 1) // d), start)
        grids.append(np.where((pos >= 0) & (pos < size), pos, first[None, :]))
    n = len(spatial)
    flat = np.zeros(tuple(kernel) + tuple(outs), dtype=np.int64)
    for axis, grid in enumerate(grids):
        shape = [1] * (2 * n)
        shape[axis], shape[n + axis] = grid.shape
        flat = flat * spatial[axis] + grid.reshape(shape)
    return flat.reshape((-1,) + tuple(outs))


def _max_pool(op, n, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    x, batched = _batched(op, input, n)
    kernel, stride, padding, dilation = _pool_args(op, n, kernel_size, stride, padding, dilation)
    taps, outs = _windows(op, x, n, kernel, stride, padding, dilation, ceil_mode, -math.inf)
    best = E.argmax(taps, 2, keepdim=True)
    values = E.squeeze(E.gather(taps, 2, best), 2)
    if not return_indices:
        return values if batched else E.squeeze(values, 0)
    table = _source_table(tuple(x.shape[2:]), kernel, stride, padding, dilation, outs)
    table = E.expand(tensor(table, device=x.device)[None, None], tuple(taps.shape))
    indices = E.squeeze(E.gather(table, 2, best), 2)
    if not batched:
        values, indices = E.squeeze(values, 0), E.squeeze(indices, 0)
    return values, indices


def _max_pool_with_indices(n, input, kernel_size, stride=None, padding=0, dilation=1,
                          ceil_mode=False, return_indices=False):
    """max_pool{n}d: the max of each window and, with return_indices, its flat position in
    the input's spatial dims."""
    return _max_pool(f"max_pool{n}d", n, input, kernel_size, stride, padding, dilation,
                     ceil_mode, return_indices)


def max_pool3d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """The max of each window of (N, C, D, H, W) or (C, D, H, W) input."""
    return _max_pool("max_pool3d", 3, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def avg_pool3d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """The mean of each window of (N, C, D, H, W) or (C, D, H, W) input."""
    x, batched = _batched("avg_pool3d", input, 3)
    kernel, stride, padding, _ = _pool_args("avg_pool3d", 3, kernel_size, stride, padding, 1)
    if divisor_override is not None and divisor_override == 0:
        raise runtime_error("divisor must be not zero")
    taps, outs = _windows("avg_pool3d", x, 3, kernel, stride, padding, (1, 1, 1), ceil_mode, 0.0)
    total = E.sum(taps, 2)
    if divisor_override:
        out = E.div(total, float(divisor_override))
    else:
        divisor = np.ones(outs)
        for axis, (size, k, s, p, o) in enumerate(zip(x.shape[2:], kernel, stride, padding,
                                                      outs)):
            start = np.arange(o) * s - p
            end = np.minimum(start + k, size + p)
            if not count_include_pad:
                start, end = np.maximum(start, 0), np.minimum(end, size)
            shape = [1, 1, 1]
            shape[axis] = o
            divisor = divisor * (end - start).reshape(shape)
        out = E.div(total, tensor(divisor, dtype=x.dtype, device=x.device))
    return out if batched else E.squeeze(out, 0)


def _max_unpool(op, n, input, indices, kernel_size, stride, padding, output_size):
    kernel = _ntuple(kernel_size, n, "kernel_size")
    stride = kernel if stride is None or stride == () else _ntuple(stride, n, "stride")
    padding = _ntuple(padding, n, "padding")
    x, batched = _batched(op, input, n)
    if tuple(indices.shape) != tuple(input.shape):
        raise runtime_error(
            f"{op}: Expected shape of indices to be same as that of the input tensor "
            f"({list(input.shape)}) but got indices tensor with shape: {list(indices.shape)}"
        )
    default = tuple((i - 1) * s - 2 * p + k
                    for i, s, p, k in zip(x.shape[2:], stride, padding, kernel))
    if output_size is None:
        sizes = default
    else:
        sizes = tuple(output_size)
        if len(sizes) == n + 2 or (len(sizes) == n + 1 and not batched):
            sizes = sizes[-n:]
        if len(sizes) != n:
            raise value_error(
                f"output_size should be a sequence containing {n} or {n + 2} elements, but it "
                f"has a length of '{len(output_size)}'"
            )
        for d, (size, low) in enumerate(zip(sizes, default)):
            high = low + 2 * stride[d]  # PyTorch's bounds: one stride either side
            if not low - stride[d] < size < high:
                raise value_error(
                    f"invalid output_size {list(sizes)} (dim {d} must be between "
                    f"{low - stride[d]} and {high})"
                )
    index = indices if batched else E.unsqueeze(indices, 0)
    nb, c = x.shape[:2]
    flat_x = E.reshape(x, (nb, c, -1))
    plane = math.prod(sizes)
    out = E.scatter(zeros((nb, c, plane), dtype=x.dtype, device=x.device), 2,
                    E.reshape(index, (nb, c, -1)), flat_x)
    out = E.reshape(out, (nb, c) + sizes)
    return out if batched else E.squeeze(out, 0)


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The partial inverse of max_pool1d: each value written at its index, zeros elsewhere."""
    return _max_unpool("max_unpool1d", 1, input, indices, kernel_size, stride, padding,
                       output_size)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The partial inverse of max_pool2d: each value written at its index, zeros elsewhere."""
    return _max_unpool("max_unpool2d", 2, input, indices, kernel_size, stride, padding,
                       output_size)


def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The partial inverse of max_pool3d: each value written at its index, zeros elsewhere."""
    return _max_unpool("max_unpool3d", 3, input, indices, kernel_size, stride, padding,
                       output_size)


def _adaptive_bins(size: int, out: int) -> np.ndarray:
    """(out, widest bin): PyTorch's adaptive bins [floor(i*size/out), ceil((i+1)*size/out)),
    each padded to the widest by repeating its last position."""
    start = np.arange(out) * size // out
    end = -(-(np.arange(out) + 1) * size // out)
    width = int((end - start).max())
    return np.minimum(start[:, None] + np.arange(width)[None, :], end[:, None] - 1)


def _adaptive_max(op, n, input, output_size, return_indices):
    x, batched = _batched(op, input, n)
    sizes = (output_size,) * n if isinstance(output_size, int) else tuple(output_size)
    if len(sizes) != n:
        raise runtime_error(f"{op}: internal error, output_size must have {n} elements, got "
                            f"{list(sizes)}")
    spatial = tuple(x.shape[2:])
    sizes = tuple(s if o is None else int(o) for o, s in zip(sizes, spatial))
    if any(o <= 0 for o in sizes) or any(s <= 0 for s in spatial):
        raise runtime_error(
            f"{op}: elements of output_size must be greater than zero and the input's spatial "
            f"sizes non-zero, got output_size={list(sizes)} for input {list(x.shape)}"
        )
    bins = [_adaptive_bins(s, o) for s, o in zip(spatial, sizes)]
    # gather every bin along each dim in turn: (N, C, o1, w1, o2, w2, ...)
    taps = x
    for axis, b in enumerate(bins):
        dim = 2 + 2 * axis
        taps = E.index_select(taps, dim, tensor(b.reshape(-1), device=x.device))
        taps = E.reshape(taps, tuple(taps.shape[:dim]) + b.shape + tuple(taps.shape[dim + 1 :]))
    order = [0, 1] + [2 + 2 * a for a in range(n)] + [3 + 2 * a for a in range(n)]
    nb, c = x.shape[:2]
    window = math.prod(b.shape[1] for b in bins)
    taps = E.reshape(E.permute(taps, *order), (nb, c) + sizes + (window,))
    best = E.argmax(taps, -1, keepdim=True)
    values = E.squeeze(E.gather(taps, -1, best), -1)
    if not return_indices:
        return values if batched else E.squeeze(values, 0)
    flat = np.zeros(sizes + tuple(b.shape[1] for b in bins), dtype=np.int64)
    for axis, b in enumerate(bins):
        shape = [1] * (2 * n)
        shape[axis], shape[n + axis] = b.shape
        flat = flat * spatial[axis] + b.reshape(shape)
    table = tensor(flat.reshape(sizes + (-1,)), device=x.device)
    indices = E.squeeze(E.gather(E.expand(table[None, None], tuple(taps.shape)), -1, best), -1)
    if not batched:
        values, indices = E.squeeze(values, 0), E.squeeze(indices, 0)
    return values, indices


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False):
    """The max of each of output_size adaptive bins of (N, C, L) or (C, L) input."""
    return _adaptive_max("adaptive_max_pool1d", 1, input, output_size, return_indices)


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False):
    """The max of each adaptive bin of (N, C, H, W) or (C, H, W) input (None in output_size
    keeps that size)."""
    return _adaptive_max("adaptive_max_pool2d", 2, input, output_size, return_indices)


def adaptive_max_pool3d(input: Tensor, output_size, return_indices: bool = False):
    """The max of each adaptive bin of (N, C, D, H, W) or (C, D, H, W) input."""
    return _adaptive_max("adaptive_max_pool3d", 3, input, output_size, return_indices)


def _lp(out: Tensor, norm_type: float, window: int) -> Tensor:
    return E.pow(E.mul(E.mul(E.sign(out), E.relu(E.abs(out))), window), 1.0 / norm_type)


def lp_pool1d(input: Tensor, norm_type: float, kernel_size: int, stride=None,
              ceil_mode: bool = False) -> Tensor:
    """(sum of x^p over each window)^(1/p) of (N, C, L) or (C, L) input."""
    from .functional import avg_pool1d

    out = avg_pool1d(E.pow(input, norm_type), kernel_size, stride, 0, ceil_mode)
    return _lp(out, norm_type, _ntuple(kernel_size, 1, "kernel_size")[0])


def lp_pool2d(input: Tensor, norm_type: float, kernel_size, stride=None,
              ceil_mode: bool = False) -> Tensor:
    """(sum of x^p over each window)^(1/p) of (N, C, H, W) or (C, H, W) input."""
    from .functional import avg_pool2d

    kh, kw = _ntuple(kernel_size, 2, "kernel_size")
    out = avg_pool2d(E.pow(input, norm_type), kernel_size, stride, 0, ceil_mode)
    return _lp(out, norm_type, kh * kw)


def lp_pool3d(input: Tensor, norm_type: float, kernel_size, stride=None,
              ceil_mode: bool = False) -> Tensor:
    """(sum of x^p over each window)^(1/p) of (N, C, D, H, W) or (C, D, H, W) input."""
    kernel = _ntuple(kernel_size, 3, "kernel_size")
    out = avg_pool3d(E.pow(input, norm_type), kernel_size, stride, 0, ceil_mode)
    return _lp(out, norm_type, math.prod(kernel))
