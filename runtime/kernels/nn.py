"""Extern kernels: matmul (BLAS through the array module), conv2d by im2col, 2-d pooling."""

from __future__ import annotations

import numpy as np

from . import random_ops  # noqa: F401  (registers bernoulli)
from .registry import kernel


@kernel("matmul")
def _matmul(xp, a, b):
    return xp.matmul(a, b)


def _windows(xp, x, kernel_size, stride, dilation, out_hw):
    """A strided view (N, C, OH, OW, KH, KW) of every window of a padded 4-d input."""
    n, c = x.shape[:2]
    s0, s1, s2, s3 = x.strides
    shape = (n, c, out_hw[0], out_hw[1], kernel_size[0], kernel_size[1])
    strides = (s0, s1, s2 * stride[0], s3 * stride[1], s2 * dilation[0], s3 * dilation[1])
    return xp.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)


def _pad_hw(xp, x, padding, extra=(0, 0), value=0.0):
    (ph, pw), (eh, ew) = padding, extra
    if not (ph or pw or eh or ew):
        return x
    return xp.pad(x, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)), constant_values=value)


def _conv_out_hw(x_shape, w_shape, stride, padding, dilation):
    return tuple(
        (x_shape[2 + i] + 2 * padding[i] - dilation[i] * (w_shape[2 + i] - 1) - 1) // stride[i] + 1
        for i in range(2)
    )


def _columns(xp, x, w_shape, stride, padding, dilation, groups):
    """im2col: (G, N*OH*OW, C/G*KH*KW) and the output's (OH, OW)."""
    out_hw = _conv_out_hw(x.shape, w_shape, stride, padding, dilation)
    xp_ = _pad_hw(xp, x, padding)
    win = _windows(xp, xp_, w_shape[2:], stride, dilation, out_hw)
    n, c = x.shape[:2]
    cg = c // groups
    # (N, G, Cg, OH, OW, KH, KW) -> (G, N, OH, OW, Cg, KH, KW)
    win = win.reshape(n, groups, cg, *out_hw, *w_shape[2:]).transpose(1, 0, 3, 4, 2, 5, 6)
    cols = xp.ascontiguousarray(win).reshape(groups, n * out_hw[0] * out_hw[1], -1)
    return cols, out_hw


@kernel("conv2d")
def _conv2d(xp, x, w, stride, padding, dilation, groups):
    o = w.shape[0]
    cols, (oh, ow) = _columns(xp, x, w.shape, stride, padding, dilation, groups)
    wg = w.reshape(groups, o // groups, -1).transpose(0, 2, 1)  # (G, Cg*K*K, Og)
    out = xp.matmul(cols, wg)  # (G, N*OH*OW, Og)
    n = x.shape[0]
    out = out.reshape(groups, n, oh, ow, o // groups).transpose(1, 0, 4, 2, 3)
    return xp.ascontiguousarray(out).reshape(n, o, oh, ow)


def _grad_output_groups(g, groups):
    n, o, oh, ow = g.shape
    # (N, G, Og, OH, OW) -> (G, N*OH*OW, Og)
    return g.reshape(n, groups, o // groups, oh, ow).transpose(1, 0, 3, 4, 2).reshape(
        groups, n * oh * ow, o // groups
    )


@kernel("conv2d_backward_input")
def _conv2d_backward_input(xp, g, w, input_shape, stride, padding, dilation, groups):
    n, c, h, wd = input_shape
    o, cg, kh, kw = w.shape
    oh, ow = g.shape[2:]
    gg = _grad_output_groups(g, groups)
    wg = w.reshape(groups, o // groups, cg * kh * kw)
    cols = xp.matmul(gg, wg).reshape(groups, n, oh, ow, cg, kh, kw)
    # col2im: add each kernel tap's contribution back into the padded input
    padded = xp.zeros((n, c, h + 2 * padding[0], wd + 2 * padding[1]), dtype=g.dtype)
    view = padded.reshape(n, groups, cg, *padded.shape[2:])
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            tap = cols[..., i, j].transpose(1, 0, 4, 2, 3)  # (N, G, Cg, OH, OW)
            view[:, :, :, r0 : r0 + stride[0] * oh : stride[0], c0 : c0 + stride[1] * ow : stride[1]] += tap
    return padded[:, :, padding[0] : padding[0] + h, padding[1] : padding[1] + wd]


@kernel("conv2d_backward_weight")
def _conv2d_backward_weight(xp, x, g, weight_shape, stride, padding, dilation, groups):
    o = weight_shape[0]
    cols, _ = _columns(xp, x, weight_shape, stride, padding, dilation, groups)
    gg = _grad_output_groups(g, groups)  # (G, NOHW, Og)
    gw = xp.matmul(gg.transpose(0, 2, 1), cols)  # (G, Og, Cg*K*K)
    return gw.reshape(weight_shape)


def _pool_geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    h, w = x_shape[-2:]
    out, extra = [], []
    for size, k, s, p, d in zip((h, w), kernel_size, stride, padding, dilation):
        span = size + 2 * p - d * (k - 1) - 1
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= size + p:
            o -= 1
        out.append(o)
        extra.append(max(0, (o - 1) * s + d * (k - 1) + 1 - (size + 2 * p)))
    return tuple(out), tuple(extra)


def _as4d(x):
    return x if x.ndim == 4 else x[None]


@kernel("max_pool2d")
def _max_pool2d(xp, x, kernel_size, stride, padding, ceil_mode, dilation=(1, 1)):
    x4 = _as4d(x)
    out_hw, extra = _pool_geometry(x4.shape, kernel_size, stride, padding, dilation, ceil_mode)
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    padded = _pad_hw(xp, x4, padding, extra, value=low)
    out = _windows(xp, padded, kernel_size, stride, dilation, out_hw).max(axis=(4, 5))
    return out if x.ndim == 4 else out[0]


@kernel("max_pool2d_backward")
def _max_pool2d_backward(xp, g, x, kernel_size, stride, padding, ceil_mode, dilation=(1, 1)):
    x4, g4 = _as4d(x), _as4d(g)
    out_hw, extra = _pool_geometry(x4.shape, kernel_size, stride, padding, dilation, ceil_mode)
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    padded = _pad_hw(xp, x4, padding, extra, value=low)
    win = _windows(xp, padded, kernel_size, stride, dilation, out_hw)
    kh, kw = kernel_size
    flat = win.reshape(*win.shape[:4], kh * kw)
    arg = flat.argmax(axis=-1)
    grad = xp.zeros(padded.shape, dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            tap = xp.where(arg == i * kw + j, g4, g4.dtype.type(0))
            grad[:, :, r0 : r0 + stride[0] * out_hw[0] : stride[0], c0 : c0 + stride[1] * out_hw[1] : stride[1]] += tap
    h, w = x4.shape[2:]
    grad = grad[:, :, padding[0] : padding[0] + h, padding[1] : padding[1] + w]
    return grad if x.ndim == 4 else grad[0]


def _avg_divisor(xp, hw, kernel_size, stride, padding, extra, out_hw, count_include_pad, dtype):
    # windows count the padded border (count_include_pad) but never the ceil_mode overhang
    h, w = hw
    inside = xp.zeros((1, 1, h + 2 * padding[0] + extra[0], w + 2 * padding[1] + extra[1]), dtype)
    if count_include_pad:
        inside[..., : h + 2 * padding[0], : w + 2 * padding[1]] = 1
    else:
        inside[..., padding[0] : padding[0] + h, padding[1] : padding[1] + w] = 1
    return _windows(xp, inside, kernel_size, stride, (1, 1), out_hw).sum(axis=(4, 5))[0, 0]


@kernel("avg_pool2d")
def _avg_pool2d(xp, x, kernel_size, stride, padding, ceil_mode, count_include_pad=True,
                divisor_override=None):
    x4 = _as4d(x)
    out_hw, extra = _pool_geometry(x4.shape, kernel_size, stride, padding, (1, 1), ceil_mode)
    padded = _pad_hw(xp, x4, padding, extra)
    total = _windows(xp, padded, kernel_size, stride, (1, 1), out_hw).sum(axis=(4, 5))
    if divisor_override:
        out = total / x.dtype.type(divisor_override)
    else:
        out = total / _avg_divisor(xp, x4.shape[2:], kernel_size, stride, padding, extra, out_hw,
                                   count_include_pad, x.dtype)
    return out if x.ndim == 4 else out[0]


@kernel("avg_pool2d_backward")
def _avg_pool2d_backward(xp, g, input_shape, kernel_size, stride, padding, ceil_mode,
                         count_include_pad=True, divisor_override=None):
    g4 = _as4d(g)
    shape4 = tuple(input_shape) if len(input_shape) == 4 else (1, *input_shape)
    out_hw, extra = _pool_geometry(shape4, kernel_size, stride, padding, (1, 1), ceil_mode)
    if divisor_override:
        scaled = g4 / g.dtype.type(divisor_override)
    else:
        scaled = g4 / _avg_divisor(xp, shape4[2:], kernel_size, stride, padding, extra, out_hw,
                                   count_include_pad, g.dtype)
    h, w = shape4[2:]
    grad = xp.zeros((*shape4[:2], h + 2 * padding[0] + extra[0], w + 2 * padding[1] + extra[1]),
                    dtype=g.dtype)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            grad[:, :, i : i + stride[0] * out_hw[0] : stride[0], j : j + stride[1] * out_hw[1] : stride[1]] += scaled
    grad = grad[:, :, padding[0] : padding[0] + h, padding[1] : padding[1] + w]
    return grad if len(input_shape) == 4 else grad[0]


@kernel("linear")
def _linear(xp, x, w):
    # BLAS takes the transposed weight as a flag: no copy of w.T is made
    return xp.matmul(x, w.T)
