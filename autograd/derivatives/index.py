"""Derivatives of indexing: gathers scatter-add back, scatters gather back."""

from __future__ import annotations

from ..._tensor import dispatch, hooks
from ..._tensor import ops as E
from ..._tensor.factories import zeros
from .registry import derivative, save_all_but_first, save_second


def _zeros_of_input(node, i=0):
    shape, dtype, dev = node.input_meta[i]
    if hooks.active_trace is not None:
        # a zero expanded to the shape: a traced graph keeps symbolic sizes symbolic (the
        # kernels that take it copy their target first)
        return E.expand(zeros((), dtype=dtype, device=dev), tuple(shape))
    return zeros(shape, dtype=dtype, device=dev)


@derivative("index", save_inputs=save_all_but_first)
def _index(node, g):
    indices = node.inputs[1:]
    attrs = {"dims": node.attrs["dims"], "accumulate": True}
    gx = dispatch("index_put", (_zeros_of_input(node), g, *indices), attrs)
    return (gx,) + (None,) * len(indices)


@derivative("index_put", save_inputs=lambda needs: (False, False) + (True,) * (len(needs) - 2))
def _index_put(node, g):
    indices = node.inputs[2:]
    need_x, need_v = node.needs_input_grad[:2]
    dims = node.attrs["dims"]
    gx = gv = None
    if need_x:
        gx = (
            g
            if node.attrs["accumulate"]
            else dispatch(
                "index_put",
                (g, _zeros_of_input(node, 1), *indices),
                {"dims": dims, "accumulate": False},
            )
        )
    if need_v:
        gv = dispatch("index", (g, *indices), {"dims": dims})
    return (gx, gv) + (None,) * len(indices)


def _fit_to(node, i, g):
    """Pad g (shaped like the index) with zeros up to input i's shape."""
    shape = node.input_meta[i][0]
    if tuple(g.shape) == tuple(shape):
        return g
    pads = []
    for have, want in reversed(list(zip(g.shape, shape))):
        pads += [0, want - have]
    return E.pad(g, tuple(pads))


@derivative("gather", save_inputs=save_second)
def _gather(node, g):
    _, index = node.inputs
    attrs = {"dim": node.attrs["dim"], "shape": tuple(node.input_meta[0][0])}
    return dispatch("gather_backward", (g, index), attrs), None


@derivative("gather_backward", save_inputs=save_second)
def _gather_backward(node, g):
    _, index = node.inputs
    return E.gather(g, node.attrs["dim"], index), None


@derivative("scatter", save_inputs=save_second)
def _scatter(node, g):
    _, index, _ = node.inputs
    dim = node.attrs["dim"]
    need_x, _, need_src = node.needs_input_grad
    gx = E.scatter(g, dim, index, E.mul(E.gather(g, dim, index), 0)) if need_x else None
    gsrc = _fit_to(node, 2, E.gather(g, dim, index)) if need_src else None
    return gx, None, gsrc


@derivative("scatter_add", save_inputs=save_second)
def _scatter_add(node, g):
    _, index, _ = node.inputs
    dim = node.attrs["dim"]
    need_src = node.needs_input_grad[2]
    return g, None, (_fit_to(node, 2, E.gather(g, dim, index)) if need_src else None)


@derivative("index_select", save_inputs=save_second)
def _index_select(node, g):
    _, index = node.inputs
    dim = node.attrs["dim"]
    if len(node.input_meta[0][0]) == 0:
        return E.sum(g).reshape(()), None
    return E.index_add(_zeros_of_input(node), dim, index, g), None


@derivative("index_add", save_inputs=save_second)
def _index_add(node, g):
    _, index, _ = node.inputs
    dim = node.attrs["dim"]
    need_src = node.needs_input_grad[2]
    return g, None, (E.index_select(g, dim, index) if need_src else None)


def _narrow_to(x, shape):
    """x's leading block of the given shape (src may be larger than the index)."""
    if tuple(x.shape) == tuple(shape):
        return x
    return x[tuple(slice(0, s) for s in shape)]


@derivative("scatter_reduce", save_outputs=True)
def _scatter_reduce(node, g):
    """PyTorch's scatter_reduce_backward: exclusive products where zeros meet, the gradient
    of a max or min shared evenly by the elements equal to it."""
    x, index, src = node.inputs
    dim, reduce = node.attrs["dim"], node.attrs["reduce"]
    include_self = node.attrs["include_self"]
    out = node.outputs[0]
    src = _narrow_to(src, index.shape)
    if reduce == "sum":
        gx, gsrc = g, E.gather(g, dim, index)
    elif reduce == "mean":
        start = E.mul(g, 0) + (1 if include_self else 0)
        count = E.scatter_add(start, dim, index, E.mul(src, 0) + 1)
        count = E.where(E.eq(count, 0), 1.0, count)
        gx = E.div(g, count)
        gsrc = E.div(E.gather(g, dim, index), E.gather(count, dim, index))
    elif reduce == "prod":
        x_zero = E.eq(x, 0)
        masked_x = E.where(x_zero, 1.0, x)
        # the product of the others at a zero of x: the product with that zero read as 1
        gx = E.div(E.mul(g, E.scatter_reduce(masked_x, dim, index, src, "prod",
                                             include_self=include_self)), masked_x)
        src_zero = E.eq(src, 0)
        zeros_there = E.gather(E.scatter_add(E.mul(x, 0), dim, index, E.cast(src_zero, x.dtype)),
                               dim, index)
        single_zero = E.logical_and(src_zero, E.eq(zeros_there, 1))
        without_it = E.scatter_reduce(x, dim, index, E.where(single_zero, 1.0, src), "prod",
                                      include_self=include_self)
        gsrc = E.where(single_zero, E.gather(E.mul(g, without_it), dim, index),
                       E.div(E.gather(E.mul(g, out), dim, index), E.where(src_zero, 1.0, src)))
    else:  # amax, amin
        value = E.gather(out, dim, index)
        x_hit = E.cast(E.eq(x, out), x.dtype)
        src_hit = E.cast(E.eq(src, value), x.dtype)
        shared = E.div(g, E.scatter_add(x_hit, dim, index, src_hit))
        gx = E.mul(x_hit, shared)
        gsrc = E.mul(src_hit, E.gather(shared, dim, index))
    if not include_self:  # the places written never read input
        gx = E.scatter(gx, dim, index, value=0.0)
    return gx, None, _fit_to(node, 2, gsrc)
