"""conv2d and its two backward ops, by im2col over the channels-first input.

The columns of an image are its (C*KH*KW, OH*OW) matrix, rows in the order of a flattened
(O, C, KH, KW) weight, so every GEMM reads the weight as it is stored (BLAS takes its
transpose as it lies), and a group's rows are one block.
The columns are laid out per image, (N, C*KH*KW, OH*OW), where the output is wanted channels
first (each image's GEMM writes its (O, OH*OW) block of the NCHW result: no copy of the
input, the output or the gradient), or as one
(C*KH*KW, N*OH*OW) matrix where one GEMM over the whole batch pays: the weight's gradient,
whose sum over the batch is then the GEMM's own, and conv2d and its input gradient when BLAS
has several threads to split that GEMM, or where it runs faster (_per_image). On the CPU,
im2col and col2im are native kernels (runtime/windows.py, codegen/llvm/columns.py); elsewhere
numpy or cupy take a strided window view and a loop over the kernel's taps.

On the CPU, conv2d with groups 1, its stride-1 input gradient (the convolution of the
gradient with the flipped weight), with several threads the columns of its other input
gradients (a pointwise convolution of the gradient by the weight's transpose, before col2im),
and its weight gradient where
the kernel's taps fill whole vectors (a convolution of the images by the gradient's planes)
run first as convolutions in the native entry's register tiles (runtime/conv_entry.py),
which match or beat these GEMMs on one thread and share the images with the native pool on
more. A depthwise convolution (groups == channels, one filter each) runs its forward, its
stride-1 input gradient and its weight gradient on the native depthwise kernels
(codegen/llvm/depthwise.py) instead: its grouped GEMMs have one row each.
"""

from __future__ import annotations

import numpy as np

from .. import conv_entry, windows
from ..threads import before_blas, threads
from .pool import pad_planes
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


def _reads_as_is(x_shape, kernel_hw, stride, padding, dilation) -> bool:
    """Whether each image is its own (C*KH*KW, OH*OW) columns: a 1x1 kernel at stride 1, or a
    kernel that covers the whole unpadded image once."""
    if tuple(padding) != (0, 0):
        return False
    if tuple(kernel_hw) == (1, 1):
        return tuple(stride) == (1, 1)
    return tuple(kernel_hw) == tuple(x_shape[2:]) and tuple(dilation) == (1, 1)


def _native(xp, *arrays) -> bool:
    return xp is np and windows.available(*arrays)


def _columns(xp, x, kernel_hw, stride, padding, dilation, per_image):
    """im2col of x (N, C, H, W): (N, C*KH*KW, OH*OW) per_image, else (C*KH*KW, N*OH*OW); and
    the output's (OH, OW)."""
    n, c, h, w = x.shape
    kh, kw = kernel_hw
    oh, ow = _out_hw((h, w), kernel_hw, stride, padding, dilation)
    depth, plane = c * kh * kw, oh * ow
    if per_image and _reads_as_is(x.shape, kernel_hw, stride, padding, dilation):
        return x.reshape(n, depth, plane), (oh, ow)
    if xp is np:
        x = np.ascontiguousarray(x)
    if _native(xp, x):
        cols = windows.im2col(x, kernel_hw, stride, padding, dilation, (oh, ow), per_image)
        return cols, (oh, ow)
    ph, pw = padding
    if ph or pw:
        padded = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
        padded[:, :, ph : ph + h, pw : pw + w] = x
    else:
        padded = xp.ascontiguousarray(x)
    s0, s1, s2, s3 = padded.strides
    taps = xp.lib.stride_tricks.as_strided(
        padded,
        shape=(n, c, kh, kw, oh, ow),
        strides=(s0, s1, s2 * dilation[0], s3 * dilation[1], s2 * stride[0], s3 * stride[1]),
    )
    if per_image:
        return xp.ascontiguousarray(taps).reshape(n, depth, plane), (oh, ow)
    cols = xp.ascontiguousarray(taps.transpose(1, 2, 3, 0, 4, 5))
    return cols.reshape(depth, n * plane), (oh, ow)


def _col2im(xp, cols, x_shape, kernel_hw, stride, padding, dilation, out_hw, per_image):
    """x (N, C, H, W): the sum of im2col's columns where they were read."""
    n, c, h, w = x_shape
    kh, kw = kernel_hw
    oh, ow = out_hw
    if per_image and _reads_as_is(x_shape, kernel_hw, stride, padding, dilation):
        return cols.reshape(x_shape)
    if xp is np:
        cols = np.ascontiguousarray(cols)
    if _native(xp, cols):
        return windows.col2im(cols, tuple(x_shape), kernel_hw, stride, padding, dilation,
                              out_hw, per_image)
    if per_image:
        taps = cols.reshape(n, c, kh, kw, oh, ow)
    else:
        taps = cols.reshape(c, kh, kw, n, oh, ow).transpose(3, 0, 1, 2, 4, 5)
    ph, pw = padding
    padded = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        r0 = i * dilation[0]
        rows = slice(r0, r0 + stride[0] * (oh - 1) + 1, stride[0])
        for j in range(kw):
            c0 = j * dilation[1]
            padded[:, :, rows, c0 : c0 + stride[1] * (ow - 1) + 1 : stride[1]] += taps[:, :, i, j]
    return xp.ascontiguousarray(padded[:, :, ph : ph + h, pw : pw + w])


def _batch_rows(xp, g, groups):
    """g (N, O, OH, OW) as (G, O/G, N*OH*OW): each output channel's values over the batch."""
    n, o = g.shape[:2]
    plane = g.shape[2] * g.shape[3]
    rows = g.reshape(n, groups, o // groups, plane).transpose(1, 2, 0, 3)
    return xp.ascontiguousarray(rows).reshape(groups, o // groups, n * plane)


# on one thread, one GEMM per image runs faster unless the planes are small; otherwise the
# batch's single GEMM does. Measured (04:10 UTC, one thread, median us, per image against
# batched, forward and input gradient): dcgan's 64-channel 4x4-plane layers 237/263 against
# 270/303, its 32-channel 8x8 274/373 against 411/493, the digits CNN's 64-channel 8x8 layer
# 1807/1892 against 2304/2425 (an earlier bound of 63 channels had it batched)
PER_IMAGE_MIN_PLANE = 16


def _per_image(xp, channels: int, plane: int) -> bool:
    """Whether conv2d and its input gradient take one GEMM per image (no copy of the output or
    the gradient: each image's product is its block of the NCHW array) or one over the whole
    batch, for `channels` output channels of `plane` values each. Several BLAS threads split
    one large product but leave a small per-image one to a single thread, so with a thread
    budget of more than one the batch's GEMM is taken."""
    if xp is not np:
        return True
    return threads() == 1 and plane >= PER_IMAGE_MIN_PLANE


def _depthwise(xp, x, w_shape, groups) -> bool:
    """Whether a conv2d is depthwise (one filter per channel: groups == C == O) on arrays the
    native depthwise kernels take (codegen/llvm/depthwise.py)."""
    return (xp is np and groups > 1 and x.ndim == 4 and x.shape[1] == groups == w_shape[0]
            and w_shape[1] == 1 and x.size > 0 and x.dtype.char in "fd" and x.dtype.isnative
            and windows.available())  # (any strides: the kernels read a padded copy)


def _zero_padded(x, padding):
    """x (N, C, H, W) with padding rows and columns of zeros on both sides, contiguous."""
    return np.ascontiguousarray(pad_planes(np, x, padding, (0, 0), 0))


def _depthwise_conv(x, w, stride, padding, dilation):
    """The depthwise convolution of x by w (C, 1, KH, KW) on the native kernel."""
    kh, kw = w.shape[2:]
    out_hw = _out_hw(x.shape[2:], (kh, kw), stride, padding, dilation)
    filters = np.ascontiguousarray(w.reshape(w.shape[0], kh * kw), dtype=x.dtype)
    return windows.depthwise_forward(_zero_padded(x, padding), filters, out_hw,
                                     (kh, kw, *stride, *dilation))


@kernel("conv2d")
def _conv2d(xp, x, w, stride, padding, dilation, groups):
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    if _depthwise(xp, x, w.shape, groups) and min(_out_hw(x.shape[2:], (kh, kw), stride,
                                                          padding, dilation)) > 0:
        return _depthwise_conv(x, w, stride, padding, dilation)
    if (xp is np and groups == 1 and windows.available()
            and not _reads_as_is(x.shape, (kh, kw), stride, padding, dilation)):
        out = conv_entry.conv2d(x, w, stride, padding, dilation)
        if out is not None:
            return out
    depth = cg * kh * kw
    oh, ow = _out_hw(x.shape[2:], (kh, kw), stride, padding, dilation)
    plane = oh * ow
    per_image = _per_image(xp, o, plane)
    cols, _ = _columns(xp, x, (kh, kw), stride, padding, dilation, per_image)
    weight = w.reshape(groups, o // groups, depth)
    if not per_image:  # (O/G, depth) @ (depth, N*P) per group, then to (N, O, P)
        out = _matmul(xp, weight[0] if groups == 1 else weight,
                      cols if groups == 1 else cols.reshape(groups, depth, n * plane))
        out = out.reshape(o, n, plane).transpose(1, 0, 2)
        return xp.ascontiguousarray(out).reshape(n, o, oh, ow)
    if groups == 1:  # (O, depth) @ (N, depth, P): each image's block of the NCHW result
        out = _matmul(xp, weight[0], cols)
    else:
        out = _matmul(xp, weight, cols.reshape(n, groups, depth, plane))  # (N, G, O/G, P)
    return out.reshape(n, o, oh, ow)


def _flipped_conv(g, w, input_shape, stride, padding, dilation, groups):
    """The input gradient of a stride-1 convolution as the convolution of g with the weight
    flipped in both taps and its channels swapped, padded by dilation*(k-1) - padding (the
    native entry's: runtime/conv_entry.py), or None where that does not apply."""
    o, _, kh, kw = w.shape
    n, _, oh, ow = g.shape
    if tuple(stride) != (1, 1) or groups != 1 or oh * ow < kh * kw or w.shape[1] < 8:
        # a plane smaller than the kernel (mostly padding), or too few channels to fill the
        # entry's register tiles: the GEMM and col2im win
        return None
    pads = tuple(d * (k - 1) - p for d, k, p in zip(dilation, (kh, kw), padding))
    if min(pads) < 0:
        return None
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    out = conv_entry.conv2d(g, flipped, (1, 1), pads, tuple(dilation))
    if out is not None and out.shape != tuple(input_shape):
        return None
    return out


@kernel("conv2d_backward_input")
def _conv2d_backward_input(xp, g, w, input_shape, stride, padding, dilation, groups):
    n, _, oh, ow = g.shape
    o, cg, kh, kw = w.shape
    reach = tuple(d * (k - 1) - p for d, k, p in zip(dilation, (kh, kw), padding))
    if (tuple(stride) == (1, 1) and min(reach) >= 0 and _depthwise(xp, g, w.shape, groups)
            and g.size):
        # stride 1: the convolution of g, padded by the kernel's reach, with the flipped
        # filter (codegen/llvm/depthwise.py)
        return _depthwise_conv(g, w[:, :, ::-1, ::-1], (1, 1), reach, tuple(dilation))
    if (xp is np and windows.available()
            and not _reads_as_is(input_shape, (kh, kw), stride, padding, dilation)):
        out = _flipped_conv(g, w, input_shape, stride, padding, dilation, groups)
        if out is not None:
            return out
    depth = cg * kh * kw
    plane = oh * ow
    if (xp is np and groups == 1 and plane >= PER_IMAGE_MIN_PLANE and threads() > 1
            and windows.available()
            and not _reads_as_is(input_shape, (kh, kw), stride, padding, dilation)):
        # with more than one thread: the entry shares the images with the pool, where the
        # batch's GEMM below copies the gradient and waits for OpenBLAS's threads (measured
        # under load, 5th percentile, us, entry against GEMM: a DCGAN's 16x16x16x16 layer
        # 245/323, its first 95/178, its 32x8x8 219/194; on one thread the GEMM is 5-8%
        # faster, so it stays there)
        cols = conv_entry.gradient_columns(g, w)
        if cols is not None:
            return _col2im(xp, cols, tuple(input_shape), (kh, kw), stride, padding, dilation,
                           (oh, ow), True)
    # (depth, O/G) per group: the weight's transpose, read in place
    wt = w.reshape(groups, o // groups, depth).transpose(0, 2, 1)
    per_image = _per_image(xp, o, plane)
    if per_image:
        rows = g.reshape(n, groups, o // groups, plane)
        cols = _matmul(xp, wt[0], rows[:, 0]) if groups == 1 else _matmul(xp, wt, rows)
        cols = cols.reshape(n, groups * depth, plane)
    else:  # (depth, O/G) @ (O/G, N*P) per group: the batch's single column matrix
        rows = _batch_rows(xp, g, groups)
        cols = _matmul(xp, wt[0], rows[0]) if groups == 1 else _matmul(xp, wt, rows)
        cols = cols.reshape(groups * depth, n * plane)
    return _col2im(xp, cols, tuple(input_shape), (kh, kw), stride, padding, dilation, (oh, ow),
                   per_image)


# the weight gradient's GEMM writes the weight's own layout up to this many output positions
# (N*OH*OW) in the batch (EPYC, ms, transposed product and copy against direct: 64x64x3x3 over
# 4x32x32 0.83/1.27, 128x128 over 4x16x16 0.84/0.95, 256x256 over 4x8x8 1.54/0.73)
DIRECT_WEIGHT_GRADIENT_MAX = 512


@kernel("conv2d_backward_weight")
def _conv2d_backward_weight(xp, x, g, weight_shape, stride, padding, dilation, groups):
    o, cg, kh, kw = weight_shape
    if _depthwise(xp, x, weight_shape, groups) and g.size:
        gw = windows.depthwise_weight_grad(_zero_padded(x, padding),
                                           np.ascontiguousarray(g, dtype=x.dtype),
                                           (kh, kw, *stride, *dilation))
        return gw.reshape(weight_shape)
    if xp is np and groups == 1 and windows.available():
        gw = conv_entry.conv2d_weight_gradient(x, g, tuple(weight_shape), stride, padding,
                                               dilation)
        if gw is not None:
            return gw
    cols, (oh, ow) = _columns(xp, x, (kh, kw), stride, padding, dilation, per_image=False)
    count = x.shape[0] * oh * ow
    cols = cols.reshape(groups, cg * kh * kw, count)
    rows = _batch_rows(xp, g, groups)  # (G, O/G, N*P)
    if count <= DIRECT_WEIGHT_GRADIENT_MAX:
        # a short inner dimension (deep layers' small planes): (O/G, N*P) @ (N*P, depth)
        # straight into the weight's layout, where the transposed product's copy back cost
        # more than the GEMM (EPYC, 512x512x3x3 over 4 images of 4x4: 7.1 ms against 0.8)
        return _matmul(xp, rows, cols.transpose(0, 2, 1)).reshape(weight_shape)
    # one GEMM per group over the whole batch, (depth, N*P) @ (N*P, O/G): the gradient's
    # transpose, which BLAS computes ~1.5x faster than (O/G, N*P) @ (N*P, depth) at these
    # shapes (a long inner dimension, few rows); the transpose back copies only the weight
    gw = _matmul(xp, cols, rows.transpose(0, 2, 1))  # (G, depth, O/G)
    return xp.ascontiguousarray(gw.transpose(0, 2, 1)).reshape(weight_shape)
