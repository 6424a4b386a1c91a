"""Derivatives of the reductions: gradients are expanded back over the reduced dims."""

from __future__ import annotations

import math

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
