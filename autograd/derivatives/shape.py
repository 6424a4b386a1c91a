"""Derivatives of the shape ops: each is the inverse view, a pad, or a sum."""

from __future__ import annotations

from ..._tensor import dispatch
from ..._tensor import ops as E
from ..._tensor.factories import tensor, zeros, zeros_like
from ...runtime.kernels.shape import pad_source_index
from .registry import derivative


@derivative("reshape", "view", "squeeze", "unsqueeze", save_inputs=False)
def _reshape(node, g):
    return (E.reshape(g, node.input_meta[0][0]),)


@derivative("permute", save_inputs=False)
def _permute(node, g):
    dims = node.attrs["dims"]
    inverse = [0] * len(dims)
    for i, d in enumerate(dims):
        inverse[d] = i
    return (E.permute(g, *inverse),)


@derivative("expand", save_inputs=False)
def _expand(node, g):
    return (g,)  # the engine sums it back to the input's shape


def _slice_into(node, held, g) -> bool:
    """A slice's gradient added into the region it read of the input's gradient so far."""
    data, grad = held._data, g._data
    if grad.dtype != data.dtype or grad.__class__ is not data.__class__:
        return False
    attrs = node.attrs
    region = tuple(slice(a, b, c) for a, b, c in zip(attrs["starts"], attrs["stops"],
                                                      attrs["steps"]))
    target = data[region]
    if target.shape != grad.shape:
        return False
    target += grad
    held._version[0] += 1
    return True


@derivative("slice", save_inputs=False, accumulate=_slice_into)
def _slice(node, g):
    attrs = dict(node.attrs, shape=node.input_meta[0][0])
    return (dispatch("slice_backward", (g,), attrs),)


@derivative("slice_backward", save_inputs=False)
def _slice_backward(node, g):
    attrs = {k: node.attrs[k] for k in ("starts", "stops", "steps")}
    return (dispatch("slice", (g,), attrs),)


@derivative("view_scatter", save_inputs=False)
def _view_scatter(node, g):
    view_attrs = {k: v for k, v in node.attrs.items() if k != "view_op"}
    region = dispatch(node.attrs["view_op"], (g,), view_attrs)
    # base's gradient: g with the overwritten region zeroed; src's: that region of g
    return dispatch("view_scatter", (g, zeros_like(region)), node.attrs), region


@derivative("repeat", save_inputs=False)
def _repeat(node, g):
    shape = node.input_meta[0][0]
    repeats = node.attrs["repeats"]
    padded = (1,) * (len(repeats) - len(shape)) + tuple(shape)
    interleaved = []
    for r, s in zip(repeats, padded):
        interleaved += [r, s]
    g = E.reshape(g, tuple(interleaved))
    g = E.sum(g, tuple(range(0, 2 * len(repeats), 2)))
    return (E.reshape(g, shape),)


@derivative("cat", save_inputs=False)
def _cat(node, g):
    dim = node.attrs["dim"]
    sizes = [meta[0][dim] for meta in node.input_meta]
    return E.split(g, sizes, dim)


@derivative("flip", save_inputs=False)
def _flip(node, g):
    return (E.flip(g, node.attrs["dims"]),)


@derivative("pad", save_inputs=False)
def _pad(node, g):
    pads, mode = node.attrs["pads"], node.attrs.get("mode", "constant")
    if mode == "constant":
        return (E.pad(g, tuple(-p for p in pads)),)
    shape = list(node.input_meta[0][0])
    ndim = len(shape)
    for i in range(len(pads) // 2):
        d = ndim - 1 - i
        index = tensor(pad_source_index(int(shape[d]), pads[2 * i], pads[2 * i + 1], mode),
                       device=g.device)
        target = list(g.shape)
        target[d] = shape[d]
        g = E.index_add(zeros(tuple(target), dtype=g.dtype, device=g.device), d, index, g)
    return (g,)


@derivative("tril", save_inputs=False)
def _tril(node, g):
    return (E.tril(g, node.attrs.get("diagonal", 0)),)


@derivative("triu", save_inputs=False)
def _triu(node, g):
    return (E.triu(g, node.attrs.get("diagonal", 0)),)
