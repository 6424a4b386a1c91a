"""Type rules of training batch norm as one op, forward and backward.

F.batch_norm in training mode is written from primitives (mean, centered squares, rsqrt,
the affine step), which is what a trace records and fusion compiles. Run eagerly, those are
a dozen dispatches and autograd nodes per call, and the running-stat update another ten
small ops; batch_norm_train is the eager call as one op, as PyTorch's native_batch_norm is:
the statistics, the normalized output and the updated running statistics from one kernel,
and one backward op for the three gradients.
"""

from __future__ import annotations

from ...errors import runtime_error, type_error
from ..dtypes import float32, float64
from ..schema import fmt_shape, number_attr, register
from ..types import TensorType

BATCH_NORM_TRAIN = {"eps": number_attr(), "momentum": number_attr()}
_NAMES = ("input", "weight", "bias", "running_mean", "running_var")


def _check(op: str, x, per_channel: tuple) -> int:
    """x (N, C, *) and the (C,) tensors beside it, all of x's float dtype; returns C."""
    if x.dtype not in (float32, float64):
        raise type_error(f"{op}: expected a float32 or float64 input, got {x.dtype.name}")
    if len(x.shape) < 2:
        raise runtime_error(f"{op}: expected an input of at least 2 dims (N, C, ...), got "
                            f"{fmt_shape(x.shape)}")
    channels = x.shape[1]
    for name, t in per_channel:
        if tuple(t.shape) != (channels,) or t.dtype is not x.dtype:
            raise runtime_error(
                f"{op}: expected {name} of shape ({channels},) and dtype {x.dtype.name} (the "
                f"input {fmt_shape(x.shape)}'s channels), got {fmt_shape(t.shape)} "
                f"{t.dtype.name}")
    return channels


@register("batch_norm_train", kind="extern", num_inputs=5, num_outputs=5,
          attrs=BATCH_NORM_TRAIN)
def _batch_norm_train(inputs, attrs):
    """(x, weight, bias, running_mean, running_var) -> the normalized, scaled and shifted x;
    the batch's mean and 1 / sqrt(biased variance + eps) per channel, which the backward
    reads; the running statistics after the update with momentum and the unbiased variance."""
    x = inputs[0]
    channels = _check("batch_norm_train", x, tuple(zip(_NAMES[1:], inputs[1:])))
    stat = TensorType((channels,), x.dtype)
    return (TensorType(tuple(x.shape), x.dtype), stat, stat, stat, stat)


@register("batch_norm_train_backward", kind="extern", differentiable=False, num_inputs=5,
          num_outputs=3, attrs={})
def _batch_norm_train_backward(inputs, attrs):
    """(grad_out, x, weight, mean, invstd) -> the gradients of x, weight and bias."""
    g, x, weight, mean, invstd = inputs
    channels = _check("batch_norm_train_backward", x,
                      (("weight", weight), ("mean", mean), ("invstd", invstd)))
    if tuple(g.shape) != tuple(x.shape) or g.dtype is not x.dtype:
        raise runtime_error(
            f"batch_norm_train_backward: expected grad_out like the input "
            f"{fmt_shape(x.shape)} {x.dtype.name}, got {fmt_shape(g.shape)} {g.dtype.name}")
    stat = TensorType((channels,), x.dtype)
    return (TensorType(tuple(x.shape), x.dtype), stat, stat)
