"""Graph rewrites that give the fusion pass more to fuse on the CPU: a linear's bias moves into
the elementwise epilogue after it, a linear on a few rows becomes a dot-product reduction
that fuses with its bias and activation, and a reduction over leading dims (a batch norm's
statistics and gradients, over N, H and W) reads its input through a permute that puts the
reduced dims last, so that it fuses as a trailing-dims reduction; and one that saves passes:
the gradients of slices that tile a tensor are joined by one cat. Run on the compiled
program's copy of a graph."""

from __future__ import annotations

import math

import numpy as np

from ..ir.graph import Graph, Value
from .fusion import REDUCTIONS, pointwise, reduction, static_shape


def split_linear_bias(graph: Graph) -> int:
    """Rewrite linear(x, w, b) whose result feeds a fusable op as linear(x, w) + b, so the bias
    joins the epilogue kernel (bias + activation in one pass); the number rewritten."""
    count = 0
    for node in list(graph.nodes):
        if node.op != "linear" or len(node.inputs) != 3 or not isinstance(node.inputs[2], Value):
            continue
        out = node.outputs[0]
        if not any(pointwise(u) for u in out.users) or len(out.shape) < 1:
            continue
        x, w, b = node.inputs
        with graph.inserting_before(node):
            product = graph.add_node("linear", [x, w], {}, node.source).outputs[0]
            biased = graph.add_node("add", [product, b], {}, node.source).outputs[0]
        if biased.type != out.type:
            graph.erase_node(biased.node)
            graph.erase_node(product.node)
            continue
        graph.replace_all_uses(out, biased)
        graph.erase_node(node)
        count += 1
    return count


# a linear layer with at most this many rows runs as a fused dot-product kernel (bias and
# activation included), where BLAS's call overhead outweighs its speed
SMALL_LINEAR_ROWS = 4


def small_linear_as_reduction(graph: Graph) -> int:
    """Rewrite linear(x, w[, b]) on a few rows of float x as sum(x[..., None, :] * w, -1)
    (+ b): a reduction kernel that fuses with its epilogue; the number rewritten."""
    count = 0
    for node in list(graph.nodes):
        if node.op != "linear":
            continue
        x, w = node.inputs[0], node.inputs[1]
        if (not static_shape(x.shape) or len(x.shape) < 1 or x.dtype.np.kind != "f"
                or math.prod(x.shape[:-1]) > SMALL_LINEAR_ROWS):
            continue
        with graph.inserting_before(node):
            rows = graph.add_node("unsqueeze", [x], {"dim": len(x.shape) - 1},
                                  node.source).outputs[0]
            products = graph.add_node("mul", [rows, w], {}, node.source).outputs[0]
            value = graph.add_node("sum", [products], {"dims": (len(products.shape) - 1,),
                                                      "keepdim": False}, node.source).outputs[0]
            if len(node.inputs) == 3 and isinstance(node.inputs[2], Value):
                value = graph.add_node("add", [value, node.inputs[2]], {},
                                       node.source).outputs[0]
        count += _replaced(graph, node, value)  # (else the linear stays)
    return count


def slice_gradients_as_cat(graph: Graph) -> int:
    """Rewrite a sum of slice_backward(g_i) whose slices tile one dim of the same shape
    (the gradient of q, k, v = x.split(n, dim)) as cat(g_i, dim): one copy where each term
    was a zero tensor of the full shape written once more, and the sum a pass over all of
    them; the number rewritten."""
    count = 0
    for node in list(graph.nodes):
        if node.op != "add" or node.graph is not graph:
            continue
        out = node.outputs[0]
        terms = _sum_terms(node)
        if terms is None or len(terms) < 2:
            continue
        tiling = _tiling(terms, out)
        if tiling is None:
            continue
        dim, grads = tiling
        with graph.inserting_before(node):
            joined = graph.add_node("cat", grads, {"dim": dim}, node.source).outputs[0]
        if joined.type != out.type:
            graph.erase_node(joined.node)
            continue
        graph.replace_all_uses(out, joined)
        _erase_tree(graph, node)
        count += 1
    return count


def _sole_use(value: Value, user) -> bool:
    return len(value.users) == 1 and value.users[0] is user and value not in value.graph.outputs


def _sum_terms(node) -> list | None:
    """The leaves of the tree of adds rooted at node (its inner adds used only inside it),
    or None where an add has a number operand."""
    terms = []
    for x in node.inputs:
        if not isinstance(x, Value):
            return None
        inner = x.node
        if inner is not None and inner.op == "add" and _sole_use(x, node):
            below = _sum_terms(inner)
            if below is None:
                return None
            terms += below
        else:
            terms.append(x)
    return terms


def _tiling(terms: list, out: Value) -> tuple | None:
    """(dim, gradients in order) where every term is a slice_backward used only by the sum,
    of out's shape and dtype, with unit steps, that differ only in one dim and cover it
    exactly once; else None."""
    slices = []
    for t in terms:
        n = t.node
        if (n is None or n.op != "slice_backward" or len(t.users) != 1 or t in t.graph.outputs
                or t.type != out.type or any(s != 1 for s in n.attrs["steps"])):
            return None
        slices.append((n.attrs["starts"], n.attrs["stops"], n.inputs[0]))
    shape = tuple(out.shape)
    if not static_shape(shape):
        return None
    varying = {d for d in range(len(shape))
               for starts, stops, _ in slices
               if (starts[d], stops[d]) != (0, shape[d])}
    if len(varying) != 1:
        return None
    (dim,) = varying
    ordered = sorted(slices, key=lambda s: s[0][dim])
    position = 0
    for starts, stops, _ in ordered:
        if starts[dim] != position or stops[dim] <= position:
            return None
        position = stops[dim]
    if position != shape[dim]:
        return None
    return dim, [g for _, _, g in ordered]


def _erase_tree(graph: Graph, node) -> None:
    """Erase the add tree rooted at node and the slice_backwards it summed (all now unused)."""
    inputs = [x for x in node.inputs if isinstance(x, Value)]
    graph.erase_node(node)
    for x in inputs:
        if x.node is not None and not x.users and x not in graph.outputs:
            _erase_tree(graph, x.node) if x.node.op == "add" else graph.erase_node(x.node)


def reduced_dims_last(graph: Graph) -> int:
    """Rewrite a reduction over the last dim and others not next to it (a batch norm's
    (0, 2, 3)), reduce(x, dims), as reduce(permute(x, kept + dims), trailing dims), reshaped
    to keepdim's shape where it keeps them: the fused reduction kernels take trailing dims
    only, and a permute is a view their index arithmetic reads through, so the reduction, and
    the elementwise work before it, become one kernel instead of an eager pass over a
    materialized input. The number rewritten."""
    count = 0
    for node in list(graph.nodes):
        if node.op not in REDUCTIONS or len(node.outputs) != 1 or len(node.inputs) != 1:
            continue
        x = node.inputs[0]
        dims = node.attrs.get("dims")
        if (not isinstance(x, Value) or dims is None or not static_shape(x.shape)
                or reduction(node) is not None or x.dtype.np.kind != "f"):
            continue
        ndim = len(x.shape)
        dims = tuple(sorted(dims))
        kept = tuple(d for d in range(ndim) if d not in dims)
        # the last dim reduced: the permuted read still walks runs of contiguous values (a
        # sum over dim 0 alone would stride across rows, where numpy's row adds do better)
        if not dims or not kept or dims[-1] != ndim - 1:
            continue
        out = node.outputs[0]
        attrs = {k: v for k, v in node.attrs.items() if k not in ("dims", "keepdim")}
        with graph.inserting_before(node):
            moved = graph.add_node("permute", [x], {"dims": kept + dims}, node.source).outputs[0]
            reduced = graph.add_node(node.op, [moved],
                                     {**attrs, "dims": tuple(range(len(kept), ndim)),
                                      "keepdim": False}, node.source)
            value = reduced.outputs[0]
            if node.attrs.get("keepdim"):
                value = graph.add_node("reshape", [value], {"shape": tuple(out.shape)},
                                       node.source).outputs[0]
        if reduction(reduced) is not None:
            count += _replaced(graph, node, value)  # (else the reduction stays)
    return count


def gather_gradient_as_select(graph: Graph) -> int:
    """Rewrite gather_backward(g, index) whose index holds one position per line along dim
    and covers every other dim (a cross-entropy's target picks: g (N, 1) into (N, C)) as
    where(index == arange(C), g, 0): a select that fuses into the kernel reading it, where
    the scatter into zeros wrote and read back a whole (N, C) array (~0.2 ms of a GPT step
    at N = C = 512, most of it the fill of the zeros). The select cannot tell an index out
    of range (it would pick nothing): only an index something else checks is rewritten, by a
    gather of this graph along the same dim of the same size (a whole training step's), or
    by the forward of a backward graph (Graph's checked_gathers); the number rewritten."""
    count = 0
    for node in list(graph.nodes):
        if node.op != "gather_backward":
            continue
        g, index = node.inputs
        out = node.outputs[0]
        shape = tuple(out.shape)
        if (not static_shape(shape) or not static_shape(index.shape)
                or g.dtype.np.kind != "f"):
            continue
        dim = node.attrs["dim"] % len(shape)
        if out.name not in graph.checked_gathers and not _gathered(index, dim, shape[dim]):
            continue
        if index.shape[dim] != 1 or any(index.shape[d] != shape[d]
                                        for d in range(len(shape)) if d != dim):
            continue
        positions = np.arange(shape[dim], dtype=np.int64).reshape(
            (shape[dim],) + (1,) * (len(shape) - dim - 1))
        with graph.inserting_before(node):
            iota = graph.add_constant(positions)
            hit = graph.add_node("eq", [index, iota], {}, node.source).outputs[0]
            value = graph.add_node("where", [hit, g, 0.0], {}, node.source).outputs[0]
        count += _replaced(graph, node, value)  # (else the gather_backward stays)
    return count


def _gathered(index: Value, dim: int, size: int) -> bool:
    """Whether a gather reads index along dim of a tensor of that size (and so checks it)."""
    for user in index.users:
        if user.op != "gather" or user.inputs[1] is not index:
            continue
        x = user.inputs[0]
        if user.attrs["dim"] % len(x.shape) == dim and x.shape[dim] == size:
            return True
    return False


def _replaced(graph: Graph, node, value: Value) -> bool:
    """Whether node's output was replaced by value, built in its place, and node erased: not
    where value's type differs (node stays; what was built is left for dead-code
    elimination)."""
    out = node.outputs[0]
    if value.type != out.type:
        return False
    graph.replace_all_uses(out, value)
    graph.erase_node(node)
    return True
