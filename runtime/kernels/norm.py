"""Training batch norm's kernels (ir/ops/norm.py): statistics, output and running-stat update
in one call, and the backward's three gradients in another.

The per-channel sums over (N, *) go through einsum, which reduces the (N, C, rest) view in
one pass with vector partial sums: ~5 us for 32K float32 where sum(axis=(0, 2)) takes ~15 us,
and as close to the float64 sum (a relative 1e-7 on 4096 values a channel).

On the CPU both run first as native kernels, a channel per row of the native pool
(codegen/llvm/norm.py): the numpy forms' dozen passes took 2.5 to 3 times as long on a
DCGAN's activations.
"""

from __future__ import annotations

import numpy as np

from .. import windows
from .registry import kernel


def _channels(a):
    """a (N, C, *) as (N, C, rest): a view of a contiguous array."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def _native(xp, *arrays) -> bool:
    x = arrays[0]
    return (xp is np and x.ndim >= 2 and x.size > 0 and windows.available(*arrays)
            and all(a.dtype == x.dtype for a in arrays))


@kernel("batch_norm_train")
def _batch_norm_train(xp, x, weight, bias, running_mean, running_var, eps, momentum):
    rows = _channels(x)
    count = rows.shape[0] * rows.shape[2]
    if _native(xp, x, weight, bias):
        out, mean, invstd, squares = windows.batch_norm_train(x, weight, bias, eps)
        keep = 1 - momentum
        new_mean = mean * momentum + running_mean * keep
        new_var = (squares / (count - 1)) * momentum + running_var * keep
        return out, mean, invstd, new_mean, new_var
    mean = xp.einsum("nci->c", rows) / count
    centered = rows - mean[:, None]
    squares = xp.einsum("nci,nci->c", centered, centered)
    invstd = 1 / xp.sqrt(squares / count + eps)
    out = centered
    out *= (invstd * weight)[:, None]  # centered is a fresh array: scaled in place
    out += bias[:, None]
    keep = 1 - momentum
    # PyTorch's update: the batch's unbiased variance (count - 1 > 0: F.batch_norm checks)
    new_mean = mean * momentum + running_mean * keep
    new_var = (squares / (count - 1)) * momentum + running_var * keep
    return out.reshape(x.shape), mean, invstd, new_mean, new_var


@kernel("batch_norm_train_backward")
def _batch_norm_train_backward(xp, g, x, weight, mean, invstd):
    # grad_x = (g - mean(g) - xhat * mean(g * xhat)) * invstd * weight, per channel, with
    # xhat = (x - mean) * invstd; the sums over the batch are the bias's and weight's grads
    if _native(xp, g, x, weight, mean, invstd):
        return windows.batch_norm_train_backward(g, x, weight, mean, invstd)
    grows = _channels(g)
    count = grows.shape[0] * grows.shape[2]
    centered = _channels(x) - mean[:, None]
    g_bias = xp.einsum("nci->c", grows)
    dot = xp.einsum("nci,nci->c", grows, centered)
    scale = invstd * weight
    gx = grows * scale[:, None]
    centered *= (scale * invstd * invstd * dot / count)[:, None]
    gx -= centered
    gx -= (scale * g_bias / count)[:, None]
    return gx.reshape(x.shape), dot * invstd, g_bias
