"""Graph rewrites that give the fusion pass more to fuse on the CPU: a linear's bias moves into
the elementwise epilogue after it, and a linear on a few rows becomes a dot-product reduction
that fuses with its bias and activation. Run on the compiled program's copy of a graph."""

from __future__ import annotations

import math

from ..ir.graph import Graph, Value
from .fusion import pointwise, static_shape


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
        out = node.outputs[0]
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
        if value.type != out.type:
            continue  # left for dead-code elimination; the linear stays
        graph.replace_all_uses(out, value)
        graph.erase_node(node)
        count += 1
    return count
