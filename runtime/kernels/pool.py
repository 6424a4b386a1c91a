"""2-d max and average pooling and their backward ops, one strided slice per kernel tap.

Each tap (i, j) of the kernel is a strided view of the padded input with the output's shape;
pooling is an elementwise max or sum over the taps (KH*KW passes at output size), far faster
than reducing a 6-d window view over its two small trailing axes.
"""

from __future__ import annotations

import numpy as np

from .. import windows
from .elementwise import select
from .registry import kernel


def _geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    """The output's (OH, OW) and the extra bottom/right padding ceil_mode needs."""
    out, extra = [], []
    for size, k, s, p, d in zip(x_shape[-2:], kernel_size, stride, padding, dilation):
        span = size + 2 * p - d * (k - 1) - 1
        o = (-(-span // s) if ceil_mode else span // s) + 1
        # the last window must start inside the input or the left padding
        if ceil_mode and (o - 1) * s >= size + p:
            o -= 1
        out.append(o)
        extra.append(max(0, (o - 1) * s + d * (k - 1) + 1 - (size + 2 * p)))
    return tuple(out), tuple(extra)


def pad_planes(xp, x, padding, extra, value):
    """x (..., H, W) with `value` in padding rows and columns on both sides, and `extra` more
    below and to the right; x itself where there is none."""
    (ph, pw), (eh, ew) = padding, extra
    if not (ph or pw or eh or ew):
        return x
    h, w = x.shape[-2:]
    padded = xp.full((*x.shape[:-2], h + 2 * ph + eh, w + 2 * pw + ew), value, dtype=x.dtype)
    padded[..., ph : ph + h, pw : pw + w] = x
    return padded


def _tap_slices(kernel_size, stride, dilation, out_hw):
    """(tap number, the (rows, cols) slices of that tap) for every kernel position."""
    for i in range(kernel_size[0]):
        r0 = i * dilation[0]
        rows = slice(r0, r0 + stride[0] * (out_hw[0] - 1) + 1, stride[0])
        for j in range(kernel_size[1]):
            c0 = j * dilation[1]
            yield i * kernel_size[1] + j, rows, slice(c0, c0 + stride[1] * (out_hw[1] - 1) + 1,
                                                      stride[1])


def _lowest(dtype):
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _native_tiles(x, kernel_size, stride, padding, dilation, extra) -> bool:
    """Whether the windows tile x exactly (stride == kernel, no padding or dilation, sizes
    divisible) and the native kernels take it."""
    return (tuple(stride) == tuple(kernel_size) and not any(padding) and not any(extra)
            and tuple(dilation) == (1, 1) and x.ndim >= 3 and x.size
            and x.shape[-2] % kernel_size[0] == 0 and x.shape[-1] % kernel_size[1] == 0
            and windows.available(x))


@kernel("max_pool2d")
def _max_pool2d(xp, x, kernel_size, stride, padding, ceil_mode, dilation=(1, 1)):
    out_hw, extra = _geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    if _native_tiles(x, kernel_size, stride, padding, dilation, extra):
        return windows.max_pool_tiled(x, *kernel_size)
    padded = pad_planes(xp, x, padding, extra, _lowest(x.dtype))
    out = None
    for _, rows, cols in _tap_slices(kernel_size, stride, dilation, out_hw):
        tap = padded[..., rows, cols]
        # np.maximum propagates NaN, as PyTorch's max pooling does
        out = tap.copy() if out is None else xp.maximum(out, tap, out=out)
    return out


def _tiled_max_backward(xp, g, x, kernel_size, out_hw):
    """max_pool2d's backward when the windows tile the input (stride == kernel, no padding,
    no dilation): tap by tap, the gradient goes to the first tap equal to the window's
    maximum, or to its first NaN (PyTorch's rule). Each tap is a strided view, so nothing
    is transposed or copied, and no argmax runs over windows of 4."""
    kh, kw = kernel_size
    oh, ow = out_hw
    taps = [((i, j), x[..., i : oh * kh : kh, j : ow * kw : kw])
            for i in range(kh) for j in range(kw)]
    peak = taps[0][1]
    for _, tap in taps[1:]:
        peak = xp.maximum(peak, tap)  # propagates NaN
    grad = xp.zeros(x.shape, dtype=g.dtype)
    zero = g.dtype.type(0)
    nan = x.dtype.kind == "f" and bool(xp.isnan(peak).any())  # else no tap is NaN
    taken = None
    last = len(taps) - 1
    for k, ((i, j), tap) in enumerate(taps):
        win = tap == peak
        if nan:
            win |= xp.isnan(tap)
        if taken is None:
            taken = win
        else:
            win &= ~taken
            if k != last:
                taken |= win
        grad[..., i : oh * kh : kh, j : ow * kw : kw] = select(xp, win, g, zero)
    return grad


@kernel("max_pool2d_backward")
def _max_pool2d_backward(xp, g, x, kernel_size, stride, padding, ceil_mode, dilation=(1, 1)):
    out_hw, extra = _geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    if (_native_tiles(x, kernel_size, stride, padding, dilation, extra)
            and g.__class__ is np.ndarray):
        return windows.max_pool_tiled(x, *kernel_size, g=np.ascontiguousarray(g, dtype=x.dtype))
    if (tuple(stride) == tuple(kernel_size) and not any(padding) and not any(extra)
            and tuple(dilation) == (1, 1) and x.ndim >= 3):
        return _tiled_max_backward(xp, g, x, tuple(kernel_size), out_hw)
    padded = pad_planes(xp, x, padding, extra, _lowest(x.dtype))
    h, w = x.shape[-2:]
    if (g.__class__ is np.ndarray and x.ndim >= 3 and x.size and windows.available(padded)
            and out_hw[1] <= windows.MAX_POOL_ROW):
        # overlapping or padded windows: one native pass adds each gradient at its winner
        geometry = (*kernel_size, *stride, *dilation)
        grad = windows.max_pool_backward_planes(
            np.ascontiguousarray(padded), np.ascontiguousarray(g, dtype=x.dtype), geometry)
        grad = grad[..., padding[0] : padding[0] + h, padding[1] : padding[1] + w]
        return _lost_to_padding(xp, grad, g, x, kernel_size, stride, padding, ceil_mode,
                                dilation, out_hw)
    taps = list(_tap_slices(kernel_size, stride, dilation, out_hw))
    # the winning tap of each window: the first maximum, or a NaN (PyTorch's rule)
    best, winner = None, None
    for t, rows, cols in taps:
        tap = padded[..., rows, cols]
        if best is None:
            best, winner = tap.copy(), xp.zeros(tap.shape, dtype=np.int32)
            continue
        better = tap > best
        if x.dtype.kind == "f":
            better |= xp.isnan(tap)
        best = xp.where(better, tap, best)
        winner = xp.where(better, np.int32(t), winner)
    grad = xp.zeros(padded.shape, dtype=g.dtype)
    zero = g.dtype.type(0)
    for t, rows, cols in taps:
        grad[..., rows, cols] += select(xp, winner == t, g, zero)
    grad = grad[..., padding[0] : padding[0] + h, padding[1] : padding[1] + w]
    return _lost_to_padding(xp, grad, g, x, kernel_size, stride, padding, ceil_mode, dilation,
                            out_hw)


def _first_inside(start, step: int):
    """The first of start, start + step, ... that is >= 0, for int arrays start."""
    behind = -np.minimum(start, 0)
    return start + -(-behind // step) * step


def _lost_to_padding(xp, grad, g, x, kernel_size, stride, padding, ceil_mode, dilation,
                     out_hw):
    """grad with the gradient of every window whose inputs are all -inf given to its first
    input element, as PyTorch gives it: ties go to a window's first tap, and for a window
    that starts in the top or left padding (itself -inf) that tap is padding, cropped away."""
    if not any(padding) or x.dtype.kind != "f" or not bool(xp.isneginf(x).any()):
        return grad
    pooled = _max_pool2d(xp, x, kernel_size, stride, padding, ceil_mode, dilation)
    oh, ow = out_hw
    row0 = np.arange(oh) * stride[0] - padding[0]
    col0 = np.arange(ow) * stride[1] - padding[1]
    rows = _first_inside(row0, dilation[0])
    cols = _first_inside(col0, dilation[1])
    starts_outside = (row0 < 0)[:, None] | (col0 < 0)[None, :]
    inside = ((rows < x.shape[-2]) & (rows <= row0 + dilation[0] * (kernel_size[0] - 1)))[
        :, None] & ((cols < x.shape[-1]) & (cols <= col0 + dilation[1] * (kernel_size[1] - 1)))
    lost = xp.isneginf(pooled) & xp.asarray(starts_outside & inside)
    if not bool(lost.any()):
        return grad
    grad = grad.copy() if not grad.flags.writeable or grad.base is not None else grad
    flat_grad = grad.reshape(-1, *grad.shape[-2:])
    plane, r, c = xp.nonzero(lost.reshape(-1, oh, ow))
    values = g.reshape(-1, oh, ow)[plane, r, c].astype(grad.dtype, copy=False)
    if xp is np:
        np.add.at(flat_grad, (plane, xp.asarray(rows)[r], xp.asarray(cols)[c]), values)
    else:
        import cupyx

        cupyx.scatter_add(flat_grad, (plane, xp.asarray(rows)[r], xp.asarray(cols)[c]), values)
    return grad


def _divisor(xp, hw, kernel_size, stride, padding, extra, out_hw, count_include_pad, dtype):
    # windows count the padded border (count_include_pad) but never the ceil_mode overhang
    h, w = hw
    inside = xp.zeros((h + 2 * padding[0] + extra[0], w + 2 * padding[1] + extra[1]), dtype)
    if count_include_pad:
        inside[: h + 2 * padding[0], : w + 2 * padding[1]] = 1
    else:
        inside[padding[0] : padding[0] + h, padding[1] : padding[1] + w] = 1
    total = xp.zeros(out_hw, dtype)
    for _, rows, cols in _tap_slices(kernel_size, stride, (1, 1), out_hw):
        total += inside[rows, cols]
    return total


def _tiled(kernel_size, stride, padding, extra) -> bool:
    """Whether pooling windows tile the plane: stride == kernel, no padding and no ceil_mode
    overhang (global pooling, F.avg_pool2d(x, x.size(2)), among them). Each window is then
    a block of a reshape, and its sum one reduction, where the taps' loop runs kh*kw numpy
    calls (SENet18's 32x32 global pools at batch 16: 1.6 ms forward, 3.9 backward)."""
    return tuple(stride) == tuple(kernel_size) and not any(padding) and not any(extra)


def _blocks(x, kernel_size, out_hw):
    """x (..., H, W) cut to the windows' rows and columns, as (..., OH, KH, OW, KW)."""
    (kh, kw), (oh, ow) = kernel_size, out_hw
    return x[..., : oh * kh, : ow * kw].reshape(*x.shape[:-2], oh, kh, ow, kw)


@kernel("avg_pool2d")
def _avg_pool2d(xp, x, kernel_size, stride, padding, ceil_mode, count_include_pad=True,
                divisor_override=None):
    out_hw, extra = _geometry(x.shape, kernel_size, stride, padding, (1, 1), ceil_mode)
    if _tiled(kernel_size, stride, padding, extra):
        total = _blocks(x, kernel_size, out_hw).sum(axis=(-3, -1), dtype=x.dtype)
        divisor = divisor_override or kernel_size[0] * kernel_size[1]
        return total / x.dtype.type(divisor)
    padded = pad_planes(xp, x, padding, extra, 0)
    total = None
    for _, rows, cols in _tap_slices(kernel_size, stride, (1, 1), out_hw):
        tap = padded[..., rows, cols]
        total = tap.copy() if total is None else xp.add(total, tap, out=total)
    if divisor_override:
        return total / x.dtype.type(divisor_override)
    return total / _divisor(xp, x.shape[-2:], kernel_size, stride, padding, extra, out_hw,
                            count_include_pad, x.dtype)


@kernel("avg_pool2d_backward")
def _avg_pool2d_backward(xp, g, input_shape, kernel_size, stride, padding, ceil_mode,
                         count_include_pad=True, divisor_override=None):
    out_hw, extra = _geometry(input_shape, kernel_size, stride, padding, (1, 1), ceil_mode)
    if _tiled(kernel_size, stride, padding, extra):
        (kh, kw), (oh, ow) = kernel_size, out_hw
        scaled = g / g.dtype.type(divisor_override or kh * kw)
        spread = xp.broadcast_to(scaled[..., :, None, :, None], (*g.shape[:-2], oh, kh, ow, kw))
        if (oh * kh, ow * kw) == tuple(input_shape[-2:]):
            return xp.ascontiguousarray(spread).reshape(input_shape)
        grad = xp.zeros(input_shape, dtype=g.dtype)  # rows and columns past the windows: 0
        grad[..., : oh * kh, : ow * kw] = spread.reshape(*g.shape[:-2], oh * kh, ow * kw)
        return grad
    if divisor_override:
        scaled = g / g.dtype.type(divisor_override)
    else:
        scaled = g / _divisor(xp, input_shape[-2:], kernel_size, stride, padding, extra, out_hw,
                              count_include_pad, g.dtype)
    h, w = input_shape[-2:]
    grad = xp.zeros((*input_shape[:-2], h + 2 * padding[0] + extra[0],
                     w + 2 * padding[1] + extra[1]), dtype=g.dtype)
    for _, rows, cols in _tap_slices(kernel_size, stride, (1, 1), out_hw):
        grad[..., rows, cols] += scaled
    return grad[..., padding[0] : padding[0] + h, padding[1] : padding[1] + w]
