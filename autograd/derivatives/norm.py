"""Derivative of training batch norm as one op (batch_norm_train; its backward op is a
primitive too)."""

from __future__ import annotations

from ..._tensor import dispatch
from ..._tensor import ops as E
from ..grad_mode import is_grad_enabled
from .registry import derivative


def _x_and_weight(needs: tuple) -> tuple:
    """Only x and weight: the running statistics, which the caller overwrites with the new
    ones right after the call, are never read by the backward (nor is the bias)."""
    return (True, True, False, False, False)


# only the mean and invstd: the output may be written in place (an in-place ReLU after it)
@derivative("batch_norm_train", save_inputs=_x_and_weight,
            save_outputs=(False, True, True, False, False), optional_grads=(1, 2, 3, 4))
def _batch_norm_train(node, g_out, g_mean, g_invstd, g_new_mean, g_new_var):
    """One batch_norm_train_backward op for the output's gradient. The statistics are outputs
    the caller reads only to update the running ones: a gradient reaches them only when a
    program differentiates them itself, which, like create_graph, runs the formulas in Tensor
    ops."""
    stats = (g_mean, g_invstd, g_new_mean, g_new_var)
    if is_grad_enabled() or any(g is not None for g in stats):
        return _backward_in_tensor_ops(node, g_out, *stats)
    x, weight = node.inputs[:2]
    _out, mean, invstd = node.outputs[:3]
    gx, gw, gb = dispatch("batch_norm_train_backward", (g_out, x, weight, mean, invstd))
    return gx, gw, gb, None, None


def _backward_in_tensor_ops(node, g_out, g_mean, g_invstd, g_new_mean, g_new_var):
    """batch_norm_train_backward's formulas in Tensor ops, with the gradients of the
    statistics added: for double backward."""
    x, weight = node.inputs[:2]
    _out, mean, invstd = node.outputs[:3]
    momentum = node.attrs["momentum"]
    c = x.shape[1]
    count = x.numel() // c
    shape = (1, c) + (1,) * (x.ndim - 2)
    dims = (0,) + tuple(range(2, x.ndim))
    invstd_b = E.reshape(invstd, shape)
    centered = E.sub(x, E.reshape(mean, shape))
    xhat = E.mul(centered, invstd_b)
    g_bias = E.sum(g_out, dims)
    g_weight = E.sum(E.mul(g_out, xhat), dims)
    g_xhat = E.mul(g_out, E.reshape(weight, shape))
    mean_g = E.div(E.sum(g_xhat, dims, keepdim=True), count)
    mean_gx = E.div(E.sum(E.mul(g_xhat, xhat), dims, keepdim=True), count)
    gx = E.mul(E.sub(E.sub(g_xhat, mean_g), E.mul(xhat, mean_gx)), invstd_b)
    # new_mean = momentum * mean + keep * running_mean: its gradient reaches mean
    if g_new_mean is not None:
        g_mean = E.mul(g_new_mean, momentum) if g_mean is None else E.add(
            g_mean, E.mul(g_new_mean, momentum))
    if g_mean is not None:  # d mean / dx = 1 / count
        gx = E.add(gx, E.reshape(E.div(g_mean, count), shape))
    if g_invstd is not None:  # d invstd / dx = -invstd^2 * xhat / count
        scale = E.div(E.mul(E.mul(g_invstd, invstd), invstd), -count)
        gx = E.add(gx, E.mul(xhat, E.reshape(scale, shape)))
    if g_new_var is not None:  # new_var's momentum * squares / (count - 1): 2 (x - mean)
        scale = E.mul(g_new_var, 2 * momentum / (count - 1))
        gx = E.add(gx, E.mul(centered, E.reshape(scale, shape)))
    keep = 1 - momentum
    g_running_mean = None if g_new_mean is None else E.mul(g_new_mean, keep)
    g_running_var = None if g_new_var is None else E.mul(g_new_var, keep)
    return gx, g_weight, g_bias, g_running_mean, g_running_var
