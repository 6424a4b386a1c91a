"""conv2d and its two backward ops, by im2col over a channels-last copy of the input.

Channels-last makes every column copy move runs of C contiguous values (the im2col of a
channels-first input gathers single elements), and the weight is reordered to match, which
costs little: weights are small.
"""

from __future__ import annotations

import numpy as np

from .. import windows
from ..threads import before_blas
from .registry import kernel


def _matmul(xp, a, b):
    """a @ b through BLAS, its threads from the one budget (runtime/threads.py)."""
    if xp is np:
        before_blas()
    return xp.matmul(a, b)


def _out_hw(hw, kernel_hw, stride, padding, dilation):
    return tuple(
        (hw[i] + 2 * padding[i] - dilation[i] * (kernel_hw[i] - 1) - 1) // stride[i] + 1
        for i in range(2)
    )


def _channels_last_padded(xp, x, padding):
    nhwc = x.transpose(0, 2, 3, 1)
    ph, pw = padding
    if not (ph or pw):
        return xp.ascontiguousarray(nhwc)
    # zeros and one slice assignment: far cheaper than xp.pad on small inputs
    n, h, w, c = nhwc.shape
    padded = xp.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
    padded[:, ph : ph + h, pw : pw + w] = nhwc
    return padded


def _columns(xp, x, kernel_hw, stride, padding, dilation):
    """im2col: (N*OH*OW, KH, KW, C) rows, channels innermost, and the output's (OH, OW)."""
    n, c = x.shape[:2]
    oh, ow = _out_hw(x.shape[2:], kernel_hw, stride, padding, dilation)
    if x.__class__ is np.ndarray and c >= 4 and windows.available(x):
        # (with fewer channels the per-tap loops cost more than numpy's window copy)
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        cols = windows.im2col(nhwc, kernel_hw, stride, padding, dilation, (oh, ow))
        return cols.reshape(n * oh * ow, kernel_hw[0], kernel_hw[1], c), (oh, ow)
    padded = _channels_last_padded(xp, x, padding)
    s0, s1, s2, s3 = padded.strides
    taps = xp.lib.stride_tricks.as_strided(
        padded,
        shape=(n, oh, ow, kernel_hw[0], kernel_hw[1], c),
        strides=(s0, s1 * stride[0], s2 * stride[1], s1 * dilation[0], s2 * dilation[1], s3),
    )
    return xp.ascontiguousarray(taps).reshape(n * oh * ow, kernel_hw[0], kernel_hw[1], c), (oh, ow)


def _grouped_columns(cols, groups):
    """(N*OH*OW, KH, KW, C) -> (G, N*OH*OW, KH*KW*C/G)."""
    m, kh, kw, c = cols.shape
    if groups == 1:
        return cols.reshape(1, m, kh * kw * c)
    split = cols.reshape(m, kh * kw, groups, c // groups).transpose(2, 0, 1, 3)
    return split.reshape(groups, m, kh * kw * (c // groups))


def _grouped_weight(w, groups):
    """(O, C/G, KH, KW) -> (G, KH*KW*C/G, O/G), rows ordered as the columns are."""
    o, cg, kh, kw = w.shape
    og = o // groups
    reordered = w.reshape(groups, og, cg, kh, kw).transpose(0, 3, 4, 2, 1)
    return reordered.reshape(groups, kh * kw * cg, og)


def _grouped_grad_output(g, groups):
    """(N, O, OH, OW) -> (G, N*OH*OW, O/G)."""
    n, o, oh, ow = g.shape
    rows = g.transpose(0, 2, 3, 1).reshape(n * oh * ow, groups, o // groups)
    return rows.transpose(1, 0, 2)


@kernel("conv2d")
def _conv2d(xp, x, w, stride, padding, dilation, groups):
    n, o = x.shape[0], w.shape[0]
    cols, (oh, ow) = _columns(xp, x, w.shape[2:], stride, padding, dilation)
    if groups == 1:  # one plain 2-d product: BLAS's fastest path
        out = _matmul(xp, _grouped_columns(cols, 1)[0], _grouped_weight(w, 1)[0])
    else:
        out = _matmul(xp, _grouped_columns(cols, groups), _grouped_weight(w, groups))  # (G, M, Og)
        out = out.transpose(1, 0, 2)
    out = out.reshape(n, oh, ow, o)
    return xp.ascontiguousarray(out.transpose(0, 3, 1, 2))


@kernel("conv2d_backward_input")
def _conv2d_backward_input(xp, g, w, input_shape, stride, padding, dilation, groups):
    n, c, h, wd = input_shape
    _, cg, kh, kw = w.shape
    oh, ow = g.shape[2:]
    wt = _grouped_weight(w, groups)  # (G, KK*Cg, Og)
    cols = _matmul(xp, _grouped_grad_output(g, groups), wt.transpose(0, 2, 1))  # (G, M, KK*Cg)
    cols = cols.reshape(groups, n, oh, ow, kh, kw, cg).transpose(1, 2, 3, 4, 5, 0, 6)
    cols = cols.reshape(n, oh, ow, kh, kw, c)
    # col2im: each kernel tap adds its rows back where it read them, channels last
    ph, pw = padding
    padded_shape = (n, h + 2 * ph, wd + 2 * pw, c)
    if cols.__class__ is np.ndarray:
        cols = np.ascontiguousarray(cols)  # already, unless the groups reordered it
    if windows.available(cols):
        padded = windows.col2im(cols, padded_shape, stride, dilation)
        inside = padded[:, ph : ph + h, pw : pw + wd]
        return xp.ascontiguousarray(inside.transpose(0, 3, 1, 2))
    padded = xp.zeros(padded_shape, dtype=g.dtype)
    for i in range(kh):
        r0 = i * dilation[0]
        rows = slice(r0, r0 + stride[0] * (oh - 1) + 1, stride[0])
        for j in range(kw):
            c0 = j * dilation[1]
            padded[:, rows, c0 : c0 + stride[1] * (ow - 1) + 1 : stride[1]] += cols[:, :, :, i, j]
    inside = padded[:, ph : ph + h, pw : pw + wd]
    return xp.ascontiguousarray(inside.transpose(0, 3, 1, 2))


@kernel("conv2d_backward_weight")
def _conv2d_backward_weight(xp, x, g, weight_shape, stride, padding, dilation, groups):
    o, cg, kh, kw = weight_shape
    cols, _ = _columns(xp, x, (kh, kw), stride, padding, dilation)
    gw = _matmul(xp, _grouped_grad_output(g, groups).transpose(0, 2, 1),
                   _grouped_columns(cols, groups))  # (G, Og, KK*Cg)
    gw = gw.reshape(groups, o // groups, kh, kw, cg).transpose(0, 1, 4, 2, 3)
    return xp.ascontiguousarray(gw).reshape(weight_shape)
