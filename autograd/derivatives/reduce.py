"""Derivatives of the reductions: gradients are expanded back over the reduced dims."""

from __future__ import annotations

import math

import numpy as np

from ..._tensor import ops as E
from ..._tensor.factories import zeros
from .registry import derivative


def _expand_back(node, g):
    """g with the reduced dims restored (size 1 where keepdim=False dropped them)."""
    shape = node.input_meta[0][0]
    dims, keepdim = node.attrs["dims"], node.attrs["keepdim"]
    if not keepdim:
        kept = [1 if i in dims else d for i, d in enumerate(shape)]
        g = E.reshape(g, tuple(kept))
    return g


def _reduced_count(node) -> int:
    shape = node.input_meta[0][0]
    return math.prod(shape[d] for d in node.attrs["dims"])


@derivative("sum", save_inputs=False)
def _sum(node, g):
    return (E.expand(_expand_back(node, g), node.input_meta[0][0]),)


@derivative("mean", save_inputs=False)
def _mean(node, g):
    g = E.div(_expand_back(node, g), _reduced_count(node))
    return (E.expand(g, node.input_meta[0][0]),)


@derivative("prod", save_outputs=False)
def _prod(node, g):
    (x,) = node.inputs
    dims = node.attrs["dims"]
    zero = E.eq(x, 0)
    safe = E.where(zero, E.mul(x, 0) + 1, x)
    zeros_in_group = E.sum(zero, dims, keepdim=True)
    prod_nonzero = E.prod(safe, dims, keepdim=True)
    # product of the other elements: exact even when the group holds zeros
    others = E.where(
        zero,
        E.where(E.eq(zeros_in_group, 1), prod_nonzero, E.mul(prod_nonzero, 0)),
        E.where(E.eq(zeros_in_group, 0), E.div(prod_nonzero, safe), E.mul(prod_nonzero, 0)),
    )
    return (E.mul(_expand_back(node, g), others),)


@derivative("var")
def _var(node, g):
    (x,) = node.inputs
    dims = node.attrs["dims"]
    # int(): a size under a symbolic trace becomes exact (2.0 / n would read it unseen)
    denom = max(int(_reduced_count(node)) - node.attrs["correction"], 0)
    centered = E.sub(x, E.mean(x, dims, keepdim=True))
    return (E.mul(_expand_back(node, g), E.mul(centered, 2.0 / denom if denom else math.inf)),)


@derivative("logsumexp", save_outputs=True)
def _logsumexp(node, g):
    (x,) = node.inputs
    out = _expand_back(node, node.outputs[0])
    return (E.mul(_expand_back(node, g), E.exp(E.sub(x, out))),)


@derivative("amax", "amin", save_outputs=True)
def _amax(node, g):
    (x,) = node.inputs
    out = _expand_back(node, node.outputs[0])
    hit = E.eq(x, out)
    # ties share the gradient evenly, as in PyTorch
    count = E.sum(hit, node.attrs["dims"], keepdim=True)
    return (E.div(E.mul(_expand_back(node, g), hit), count),)


@derivative("max_dim", "min_dim", save_inputs=False, save_outputs=True)
def _max_dim(node, g_values, g_indices):
    shape, dtype, dev = node.input_meta[0]
    dim, keepdim = node.attrs["dim"], node.attrs["keepdim"]
    indices = node.outputs[1]
    if not keepdim:
        g_values = E.unsqueeze(g_values, dim)
        indices = E.unsqueeze(indices, dim)
    return (E.scatter(zeros(shape, dtype=dtype, device=dev), dim, indices, g_values),)


@derivative("sort", "cummax", "cummin", save_inputs=False, save_outputs=True)
def _from_source_index(node, g_values, g_indices):
    shape, dtype, dev = node.input_meta[0]
    if len(shape) == 0:
        return (g_values,)
    # each output value's gradient goes back to the element it came from (summed where a
    # running extreme repeats it; a sort's indices are a permutation)
    return (E.scatter_add(zeros(shape, dtype=dtype, device=dev), node.attrs["dim"],
                          node.outputs[1], g_values),)


@derivative("cumsum", save_inputs=False)
def _cumsum(node, g):
    dim = node.attrs["dim"]
    if g.ndim == 0:
        return (g,)
    return (E.flip(E.cumsum(E.flip(g, dim), dim), dim),)


def _reverse_cumsum(x, dim):
    return E.flip(E.cumsum(E.flip(x, dim), dim), dim)


@derivative("cumprod", save_outputs=True)
def _cumprod(node, g):
    (x,) = node.inputs
    dim = node.attrs["dim"]
    if g.ndim == 0:
        return (g,)
    # dx_i = sum_{j >= i} g_j prod_{k <= j, k != i} x_k. Before the first zero z along dim it
    # is reverse_cumsum(g * out) / x_i. At z, the same sum with x_z read as 1. Past z every
    # product holds x_z: zero, but not its derivative, which double backward needs: up to the
    # second zero w it is x_z times the sum with x_z (and at w, x_w too) read as 1. Past w
    # the gradient and its first derivative are both zero.
    zero = E.eq(x, 0)
    zeros_so_far = E.cumsum(zero, dim)
    before = E.eq(zeros_so_far, 0)
    first_zero = E.logical_and(zero, E.eq(zeros_so_far, 1))
    second_zero = E.logical_and(zero, E.eq(zeros_so_far, 2))
    between = E.logical_and(E.logical_not(zero), E.eq(zeros_so_far, 1))
    one = E.mul(x, 0) + 1
    nonzero_x = E.where(zero, one, x)
    first_x = E.sum(E.where(first_zero, x, E.mul(x, 0)), dim, keepdim=True)

    def sums_from(y):
        return _reverse_cumsum(E.mul(g, E.cumprod(y, dim)), dim)

    past_first = sums_from(E.where(first_zero, one, x))
    past_second = sums_from(E.where(E.logical_or(first_zero, second_zero), one, x))
    grad = E.where(second_zero, E.mul(first_x, past_second), E.mul(g, 0))
    grad = E.where(between, E.div(E.mul(first_x, past_first), nonzero_x), grad)
    grad = E.where(first_zero, past_first, grad)
    out = node.outputs[0]
    return (E.where(before, E.div(_reverse_cumsum(E.mul(g, out), dim), nonzero_x), grad),)


@derivative("logcumsumexp", save_outputs=True)
def _logcumsumexp(node, g):
    (x,) = node.inputs
    dim = node.attrs["dim"]
    if g.ndim == 0:
        return (g,)
    out = node.outputs[0]
    # dx_i = sum_{j >= i} g_j exp(x_i - out_j), summed in log space for the positive and the
    # negative parts of g apart, as PyTorch does (the log of a missing part is the lowest
    # finite value, not -inf, which would make the second derivative nan)
    lowest = float(np.finfo(np.dtype(g.dtype.name)).min)

    def part(positive):
        mask = E.gt(g, 0) if positive else E.lt(g, 0)
        log_g = E.where(mask, E.log(E.where(mask, E.abs(g), E.mul(g, 0) + 1)), lowest)
        reversed_lse = E.flip(E.logcumsumexp(E.flip(E.sub(log_g, out), dim), dim), dim)
        return E.exp(E.add(reversed_lse, x))

    return (E.sub(part(True), part(False)),)


@derivative("median", save_outputs=True)
def _median(node, g):
    (x,) = node.inputs
    out = node.outputs[0]
    # shared evenly by the elements equal to the median (or, when it is NaN, by the NaNs), as
    # PyTorch's median and nanmedian over all elements do
    hit = E.where(E.isnan(out), E.isnan(x), E.eq(x, out))
    return (E.div(E.mul(g, hit), E.sum(hit)),)
