"""The ONNX translation of each ember op, in TRANSLATIONS keyed by op name.

translate(builder, node, out) emits the ONNX nodes for one graph node, the last one
writing `out`; Unsupported says an op's attrs have no ONNX form (the exporter lists it).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import EmberError
from ..ir.dtypes import INT, as_dtype
from ..ir.ops.index import index_shape
from ..ir.schema import SCHEMAS, promoted
from ..ir.symbolic import SymInt

_INT64_MAX = np.iinfo(np.int64).max


def _onnx():
    try:
        import onnx
    except ImportError:
        raise EmberError("ember.onnx needs the onnx package: pip install 'ember[onnx]'") from None
    return onnx


class Unsupported(Exception):
    """A node that has a translation, but not for these attrs or dtypes."""


def _onnx_type(dtype) -> int:
    return _onnx().helper.np_dtype_to_tensor_dtype(as_dtype(dtype).np)


def _value_info(name: str, value_type):
    dims = [
        d if isinstance(d, int) else (str(d) if d.is_symbol else None) for d in value_type.shape
    ]
    return _onnx().helper.make_tensor_value_info(name, _onnx_type(value_type.dtype), dims)


def _operand(b, x, dtype) -> str:
    """A node input as an ONNX name in `dtype`: Python numbers become scalar constants."""
    if not hasattr(x, "type"):
        return b.scalar(x, dtype)
    if x.type.dtype is as_dtype(dtype):
        return x.name
    return b.node("Cast", [x.name], to=_onnx_type(dtype))


def _operands(b, node, dtype) -> list:
    return [_operand(b, x, dtype) for x in node.inputs]


# -- translations: translate(builder, node, out) emits nodes whose last output is `out` ----


def _elementwise(onnx_op: str):
    def translate(b, node, out):
        b.node(onnx_op, _operands(b, node, node.output.type.dtype), [out])

    return translate


def _compare(onnx_op: str, negate: bool = False):
    def translate(b, node, out):
        args = _operands(b, node, promoted(node.input_types()))
        if negate:
            b.node("Not", [b.node(onnx_op, args)], [out])
        else:
            b.node(onnx_op, args, [out])

    return translate


def _logical(onnx_op: str):
    def translate(b, node, out):
        b.node(onnx_op, _operands(b, node, "bool"), [out])

    return translate


def _composite(build):
    """A translation from a function of (builder, input names in the output dtype) that
    returns the name of its result."""

    def translate(b, node, out):
        result = build(b, _operands(b, node, node.output.type.dtype), node)
        b.node("Identity", [result], [out])

    return translate


def _remainder(b, node, out):
    dtype = node.output.type.dtype
    a, d = _operands(b, node, dtype)
    if dtype.np.kind in "iu":
        b.node("Mod", [a, d], [out], fmod=0)
    else:  # Python's sign convention: a - floor(a / d) * d
        b.node("Sub", [a, b.node("Mul", [b.node("Floor", [b.node("Div", [a, d])]), d])], [out])


def _where(b, node, out):
    cond, *rest = node.inputs
    dtype = node.output.type.dtype
    b.node("Where", [_operand(b, cond, "bool"), *(_operand(b, x, dtype) for x in rest)], [out])


def _clamp(b, node, out):
    dtype = node.output.type.dtype
    result = _operand(b, node.inputs[0], dtype)
    for onnx_op, key in (("Max", "min"), ("Min", "max")):
        if node.attrs.get(key) is not None:
            result = b.node(onnx_op, [result, b.scalar(node.attrs[key], dtype)])
    b.node("Identity", [result], [out])


def _masked_fill(b, node, out):
    x, mask = node.inputs
    fill = b.scalar(node.attrs["value"], x.type.dtype)
    b.node("Where", [mask.name, fill, x.name], [out])


def _linear(b, node, out):
    x, w, *bias = node.inputs
    if w.is_constant:  # transposed once, here, rather than at every call
        weight = b.constant(np.ascontiguousarray(w.constant.T), f"{w.name}.T")
    else:
        weight = b.node("Transpose", [w.name], perm=[1, 0])
    if not bias:
        b.node("MatMul", [x.name, weight], [out])
        return
    product = b.node("MatMul", [x.name, weight])
    b.node("Add", [product, bias[0].name], [out])


def _conv2d(b, node, out):
    x, w = node.inputs
    padding = list(node.attrs["padding"])
    b.node(
        "Conv",
        [x.name, w.name],
        [out],
        strides=list(node.attrs["stride"]),
        pads=padding + padding,
        dilations=list(node.attrs["dilation"]),
        group=node.attrs["groups"],
    )


def _conv2d_backward_input(b, node, out):
    """conv2d's input-gradient is ONNX's ConvTranspose (F.conv_transpose2d is this op); its
    output_padding is what the target size adds to the smallest output."""
    g, w = node.inputs
    attrs = node.attrs
    stride, padding, dilation = attrs["stride"], attrs["padding"], attrs["dilation"]
    sizes = (*g.type.shape[2:], *w.type.shape[2:], *attrs["input_shape"][2:])
    if not all(isinstance(s, int) for s in sizes):
        raise Unsupported("a transposed convolution over symbolic spatial sizes")
    output_padding = [
        target - ((size - 1) * s - 2 * p + d * (k - 1) + 1)
        for size, k, target, s, p, d in zip(
            g.type.shape[2:], w.type.shape[2:], attrs["input_shape"][2:], stride, padding,
            dilation)
    ]
    b.node(
        "ConvTranspose",
        [g.name, w.name],
        [out],
        strides=list(stride),
        pads=list(padding) + list(padding),
        dilations=list(dilation),
        group=attrs["groups"],
        output_padding=output_padding,
    )


def _pool(onnx_op: str):
    def translate(b, node, out):
        (x,) = node.inputs
        attrs = node.attrs
        padding = list(attrs["padding"])
        extra = {}
        if onnx_op == "MaxPool":
            extra["dilations"] = list(attrs.get("dilation", (1, 1)))
        else:
            if attrs.get("divisor_override"):
                raise Unsupported("divisor_override")
            extra["count_include_pad"] = int(attrs.get("count_include_pad", True))
        batched = len(x.type.shape) == 4
        source = x.name if batched else b.node("Unsqueeze", [x.name, b.ints([0])])
        pooled = b.node(
            onnx_op,
            [source],
            [out] if batched else None,
            kernel_shape=list(attrs["kernel_size"]),
            strides=list(attrs["stride"]),
            pads=padding + padding,
            ceil_mode=int(attrs["ceil_mode"]),
            **extra,
        )
        if not batched:
            b.node("Squeeze", [pooled, b.ints([0])], [out])

    return translate


def _axes(node) -> list:
    dims = node.attrs["dims"]
    return list(range(len(node.inputs[0].type.shape))) if dims is None else list(dims)


def _reduce_node(b, onnx_op: str, x: str, axes: list, keepdim: bool, out=None) -> str:
    outputs = [out] if out else None
    if onnx_op == "ReduceSum" or b.opset >= 18:
        return b.node(onnx_op, [x, b.ints(axes)], outputs, keepdims=int(keepdim))
    return b.node(onnx_op, [x], outputs, axes=axes, keepdims=int(keepdim))


def _reduction(onnx_op: str):
    def translate(b, node, out):
        x = _operand(b, node.inputs[0], node.output.type.dtype)
        if not _axes(node):
            b.node("Identity", [x], [out])
            return
        _reduce_node(b, onnx_op, x, _axes(node), node.attrs["keepdim"], out)

    return translate


def _logical_reduction(onnx_op: str):
    def translate(b, node, out):
        x = b.node("Cast", [_operand(b, node.inputs[0], "bool")], to=_onnx_type("int32"))
        reduced = _reduce_node(b, onnx_op, x, _axes(node), node.attrs["keepdim"])
        b.node("Cast", [reduced], [out], to=_onnx_type(node.output.type.dtype))

    return translate


def _var(b, node, out):
    (x,) = node.inputs
    axes, keepdim = _axes(node), node.attrs["keepdim"]
    dtype = x.type.dtype
    mean = _reduce_node(b, "ReduceMean", x.name, axes, True)
    deviation = b.node("Sub", [x.name, mean])
    total = _reduce_node(b, "ReduceSum", b.node("Mul", [deviation, deviation]), axes, keepdim)
    count = 1
    for axis in axes:
        count = count * x.type.shape[axis]
    if isinstance(count, SymInt):
        dof = b.node("Sub", [b.ints([count]), b.ints([node.attrs["correction"]])])
        dof = b.node("Cast", [b.node("Max", [dof, b.ints([0])])], to=_onnx_type(dtype))
        b.node("Div", [total, b.node("Reshape", [dof, b.ints([])])], [out])
    else:
        b.node("Div", [total, b.scalar(max(count - node.attrs["correction"], 0), dtype)], [out])


def _with_indices(reduce_op: str, arg_op: str):
    def translate(b, node, out):
        (x,) = node.inputs
        dim, keepdim = node.attrs["dim"] % max(len(x.type.shape), 1), node.attrs["keepdim"]
        values, indices = (v.name for v in node.outputs)
        _reduce_node(b, reduce_op, x.name, [dim], keepdim, values)
        b.node(arg_op, [x.name], [indices], axis=dim, keepdims=int(keepdim))

    return translate


def _arg(onnx_op: str):
    def translate(b, node, out):
        (x,) = node.inputs
        dim, keepdim = node.attrs["dim"], node.attrs["keepdim"]
        if dim is not None:
            b.node(onnx_op, [x.name], [out], axis=dim, keepdims=int(keepdim))
            return
        flat = b.node("Reshape", [x.name, b.ints([-1])])
        index = b.node(onnx_op, [flat], axis=0, keepdims=0)
        b.node("Reshape", [index, b.ints([1] * len(x.type.shape) if keepdim else [])], [out])

    return translate


def _cumsum(b, node, out):
    x = _operand(b, node.inputs[0], node.output.type.dtype)
    b.node("CumSum", [x, b.constant(np.array(node.attrs["dim"], np.int64), "axis")], [out])


def _to_output_shape(onnx_op: str):
    """reshape, view and expand: the output type's shape (symbolic sizes computed)."""

    def translate(b, node, out):
        b.node(onnx_op, [node.inputs[0].name, b.ints(node.output.type.shape)], [out])

    return translate


def _index(b, node, out):
    """Advanced indexing with integer index tensors (both take negative indices as PyTorch):
    one tensor (x[:, [-1], :], x[i]) is a Gather along its dim; several (x[i, j], x[:, i, j],
    x[i, :, j]) are a GatherND on x with the indexed dims moved to the front (see
    _to_front). As in PyTorch, the indices' dims take the indexed dims' place in the result
    when those are adjacent, and go first when they are not."""
    x, *indices = node.inputs
    dims = tuple(node.attrs["dims"])
    if any(i.type.dtype.category != INT for i in indices):
        raise Unsupported("advanced indexing with a boolean mask")
    if len(indices) == 1:
        index = _operand(b, indices[0], "int64")
        b.node("Gather", [x.name, index], [out], axis=dims[0])
        return
    source, stacked, to_result, _ = _to_front(b, x, indices, dims, node.output.type.shape)
    if to_result is None:
        b.node("GatherND", [source, stacked], [out])
    else:
        b.node("Transpose", [b.node("GatherND", [source, stacked])], [out], perm=to_result)


def _index_put(b, node, out):
    """x[indices] = values (accumulate: +=) as a ScatterND on x with the indexed dims moved
    to the front, the values broadcast to the indexed part, in that order; negative indices
    counted from the end first (ScatterND takes none)."""
    x, values, *indices = node.inputs
    dims = tuple(node.attrs["dims"])
    if any(i.type.dtype.category != INT for i in indices):
        raise Unsupported("index_put with a boolean mask")
    part = index_shape(x.type.shape, [i.type.shape for i in indices], dims)
    source, stacked, to_result, front = _to_front(b, x, indices, dims, part, positive=True)
    updates = b.node("Expand", [_operand(b, values, x.type.dtype), b.ints(part)])
    if to_result is not None:  # the part's order -> (indices' dims, kept dims)
        updates = b.node("Transpose", [updates], perm=[to_result.index(i)
                                                       for i in range(len(to_result))])
    extra = {"reduction": "add"} if node.attrs["accumulate"] else {}
    if front == list(range(len(front))):
        b.node("ScatterND", [source, stacked, updates], [out], **extra)
        return
    scattered = b.node("ScatterND", [source, stacked, updates], **extra)
    b.node("Transpose", [scattered], [out], perm=[front.index(i) for i in range(len(front))])


def _to_front(b, x, indices, dims, result_shape, positive=False):
    """For index tensors on `dims` of x: x transposed with those dims first, the indices
    broadcast together and stacked on a last axis (as GatherND/ScatterND take them), the
    permutation from the gathered (indices' dims, kept dims) to the result's order (None if
    the same), and the permutation that moved x's dims."""
    rank = len(x.type.shape)
    kept = [d for d in range(rank) if d not in dims]
    front = list(dims) + kept
    source = x.name if front == list(range(rank)) else b.node("Transpose", [x.name], perm=front)
    adjacent = list(dims) == list(range(dims[0], dims[0] + len(dims)))
    where = dims[0] if adjacent else 0  # where the indices' dims are in the result
    n_index = len(result_shape) - len(kept)  # the broadcast indices' rank
    shape = b.ints(result_shape[where:where + n_index])
    stacked = []
    for index, dim in zip(indices, dims):
        index = _operand(b, index, "int64")
        if positive:  # i + size * (i < 0)
            size = b.ints([x.type.shape[dim]])
            below = b.node("Cast", [b.node("Less", [index, b.ints([0])])],
                           to=_onnx_type("int64"))
            index = b.node("Add", [index, b.node("Mul", [below, size])])
        stacked.append(b.node("Unsqueeze", [b.node("Expand", [index, shape]), b.ints([-1])]))
    to_result = None
    if where:
        to_result = (list(range(n_index, n_index + where)) + list(range(n_index))
                     + list(range(n_index + where, n_index + len(kept))))
    return source, b.node("Concat", stacked, axis=-1), to_result, front


def _full(b, node, out):
    value = np.array([node.attrs["value"]], dtype=node.output.type.dtype.np)
    b.node("ConstantOfShape", [b.ints(node.output.type.shape)], [out],
           value=b.onnx.numpy_helper.from_array(value))


def _permute(b, node, out):
    b.node("Transpose", [node.inputs[0].name], [out], perm=list(node.attrs["dims"]))


def _squeeze(b, node, out):
    (x,) = node.inputs
    axes = [d for d in node.attrs["dims"] if x.type.shape[d] == 1]
    if axes:
        b.node("Squeeze", [x.name, b.ints(axes)], [out])
    else:
        b.node("Identity", [x.name], [out])


def _unsqueeze(b, node, out):
    b.node("Unsqueeze", [node.inputs[0].name, b.ints([node.attrs["dim"]])], [out])


def _slice(b, node, out):
    (x,) = node.inputs
    starts, stops, steps = (list(node.attrs[k]) for k in ("starts", "stops", "steps"))
    # a stop at the input's own size (often symbolic) is "to the end"
    stops = [_INT64_MAX if stop == size else stop for stop, size in zip(stops, x.type.shape)]
    axes = [
        i
        for i, (a, z, s) in enumerate(zip(starts, stops, steps))
        if (a, z, s) != (0, _INT64_MAX, 1)
    ]
    if not axes:
        b.node("Identity", [x.name], [out])
        return
    pick = [b.ints([values[i] for i in axes]) for values in (starts, stops)]
    b.node("Slice", [x.name, *pick, b.ints(axes), b.ints([steps[i] for i in axes])], [out])


def _cat(b, node, out):
    dim = node.attrs["dim"] % len(node.output.type.shape)
    b.node("Concat", _operands(b, node, node.output.type.dtype), [out], axis=dim)


def _flip(b, node, out):
    (x,) = node.inputs
    dims = list(node.attrs["dims"])
    if not dims:
        b.node("Identity", [x.name], [out])
        return
    starts = b.ints([-1] * len(dims))
    stops = b.ints([np.iinfo(np.int64).min] * len(dims))
    b.node("Slice", [x.name, starts, stops, b.ints(dims), b.ints([-1] * len(dims))], [out])


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad(b, node, out):
    (x,) = node.inputs
    pads, mode = list(node.attrs["pads"]), node.attrs.get("mode", "constant")
    if mode == "circular" and b.opset < 19:
        raise Unsupported("circular padding before opset 19")
    if mode != "constant" and min(pads, default=0) < 0:
        # PyTorch mirrors and wraps about the uncropped edges; ONNX crops first
        raise Unsupported(f"{mode} padding with negative pads")
    ndim = len(x.type.shape)
    begins, ends = [0] * ndim, [0] * ndim
    for i in range(len(pads) // 2):  # PyTorch's order: the last dim first
        begins[ndim - 1 - i], ends[ndim - 1 - i] = pads[2 * i], pads[2 * i + 1]
    inputs = [x.name, b.ints(begins + ends)]
    if mode == "constant":
        inputs.append(b.scalar(node.attrs.get("value", 0.0), x.type.dtype))
    b.node("Pad", inputs, [out], mode=_PAD_MODES[mode])


def _triangle(upper: int):
    def translate(b, node, out):
        (x,) = node.inputs
        k = b.constant(np.array(node.attrs.get("diagonal", 0), np.int64), "diagonal")
        b.node("Trilu", [x.name, k], [out], upper=upper)

    return translate


def _index_select(b, node, out):
    x, index = node.inputs
    if not x.type.shape:
        raise Unsupported("a 0-d input")
    index_name = index.name if index.type.shape else b.node("Reshape", [index.name, b.ints([1])])
    b.node("Gather", [x.name, index_name], [out], axis=node.attrs["dim"] % len(x.type.shape))


def _gather(b, node, out):
    x, index = node.inputs
    dim = node.attrs["dim"] % max(len(x.type.shape), 1)
    b.node("GatherElements", [x.name, index.name], [out], axis=dim)


def _one_hot(b, node, out):
    depth = b.constant(np.array(node.attrs["num_classes"], np.int64), "depth")
    values = b.constant(np.array([0, 1], np.int64), "one_hot_values")
    b.node("OneHot", [node.inputs[0].name, depth, values], [out], axis=-1)


def _is_float(dtype) -> bool:
    return as_dtype(dtype).np.kind == "f"


def _trunc(b, node, out):
    (x,) = node.inputs
    if not _is_float(x.type.dtype):
        b.node("Identity", [x.name], [out])
        return
    negative = b.node("Less", [x.name, b.scalar(0, x.type.dtype)])
    b.node("Where", [negative, b.node("Ceil", [x.name]), b.node("Floor", [x.name])], [out])


def _trunc_divide(b, node, out):
    dtype = node.output.type.dtype
    a, d = _operands(b, node, dtype)
    if not _is_float(dtype):  # ONNX's integer Div truncates, as C does
        b.node("Div", [a, d], [out])
        return
    quotient = b.node("Div", [a, d])
    negative = b.node("Less", [quotient, b.scalar(0, dtype)])
    b.node("Where", [negative, b.node("Ceil", [quotient]), b.node("Floor", [quotient])], [out])


def _floor_divide(b, node, out):
    """Python's a // b, as numpy's divmod computes it: floor(a / b) rounds wrongly where a / b
    rounds up to an integer (1 // 0.1 is 9)."""
    dtype = node.output.type.dtype
    a, d = _operands(b, node, dtype)
    zero = b.scalar(0, dtype)
    mod = b.node("Mod", [a, d], fmod=1)
    inexact = b.node("Not", [b.node("Equal", [mod, zero])])
    signs_differ = b.node("Xor", [b.node("Less", [d, zero]), b.node("Less", [mod, zero])])
    adjust = b.node("And", [inexact, signs_differ])
    if not _is_float(dtype):  # a truncated quotient, one less where it was rounded up
        quotient = b.node("Div", [a, d])
        b.node("Sub", [quotient, b.node("Cast", [adjust], to=_onnx_type(dtype))], [out])
        return
    one = b.scalar(1, dtype)
    div = b.node("Div", [b.node("Sub", [a, mod]), d])
    div = b.node("Where", [adjust, b.node("Sub", [div, one]), div])
    floored = b.node("Floor", [div])
    above_half = b.node("Greater", [b.node("Sub", [div, floored]), b.scalar(0.5, dtype)])
    floored = b.node("Where", [above_half, b.node("Add", [floored, one]), floored])
    true_quotient = b.node("Div", [a, d])
    signed_zero = b.node("Mul", [true_quotient, zero])  # 0 with the sign of a / b
    floored = b.node("Where", [b.node("Equal", [div, zero]), signed_zero, floored])
    b.node("Where", [b.node("Equal", [d, zero]), true_quotient, floored], [out])


def _repeat(b, node, out):
    (x,) = node.inputs
    repeats = list(node.attrs["repeats"])
    source = x.name
    extra = len(repeats) - len(x.type.shape)
    if extra:
        source = b.node("Unsqueeze", [source, b.ints(list(range(extra)))])
    b.node("Tile", [source, b.ints(repeats)], [out])


def _scatter(reduction: str):
    def translate(b, node, out):
        x, index, src = node.inputs
        if reduction != "none" and b.opset < 16:
            raise Unsupported(f"ScatterElements with reduction {reduction!r} before opset 16")
        dim = node.attrs["dim"] % max(len(x.type.shape), 1)
        updates = src.name
        if tuple(src.type.shape) != tuple(index.type.shape):  # the part index covers
            rank = len(index.type.shape)
            updates = b.node("Slice", [src.name, b.ints([0] * rank),
                                       b.ints(list(index.type.shape)), b.ints(list(range(rank)))])
        extra = {} if reduction == "none" else {"reduction": reduction}
        b.node("ScatterElements", [x.name, index.name, updates], [out], axis=dim, **extra)

    return translate


def _sort(b, node, out):
    """A TopK of the whole dim: ONNX breaks ties by the lower index, as ember's stable sort
    does in both directions."""
    (x,) = node.inputs
    if not x.type.shape:
        raise Unsupported("a 0-d input")
    dim = node.attrs["dim"] % len(x.type.shape)
    size = b.node("Gather", [b.node("Shape", [x.name]), b.ints([dim])], axis=0)
    values, indices = (v.name for v in node.outputs)
    b.node("TopK", [x.name, size], [values, indices], axis=dim,
           largest=int(bool(node.attrs["descending"])), sorted=1)


def _attention(b, node, out):
    """The fused attention op as the composite it fuses: MatMul, the mask, Softmax, MatMul;
    the row logsumexp (a ReduceLogSumExp of the masked scores) only where something reads
    it."""
    q, k, v, *masks = node.inputs
    attrs = node.attrs
    if attrs["dropout_p"] > 0:
        raise Unsupported("dropout (an exported graph is an inference graph)")
    dtype = q.type.dtype
    rank = len(k.type.shape)
    scale = attrs["scale"]
    if scale is None:
        head = q.type.shape[-1]
        if isinstance(head, SymInt):
            raise Unsupported("the default scale of a symbolic head size")
        scale = 1.0 / math.sqrt(head) if head else 1.0
    queries = b.node("Mul", [q.name, b.scalar(scale, dtype)])
    keys = b.node("Transpose", [k.name], perm=[*range(rank - 2), rank - 1, rank - 2])
    scores = b.node("MatMul", [queries, keys])
    dead = None
    if attrs["causal"]:
        # -inf above the diagonal (query i attends keys 0..i), 0 elsewhere, as the composite
        size = b.ints([q.type.shape[-2], k.type.shape[-2]])
        fill = _onnx().helper.make_tensor("value", _onnx_type(dtype), [1], [-math.inf])
        above = b.node("Trilu", [b.node("ConstantOfShape", [size], value=fill),
                                 b.constant(np.array(1, np.int64), "diagonal")], upper=1)
        scores = b.node("Add", [scores, above])
    elif attrs["mask"]:
        mask = masks[0]
        if mask.type.dtype.name == "bool":
            scores = b.node("Where", [mask.name, scores, b.scalar(-math.inf, dtype)])
        else:
            scores = b.node("Add", [scores, _operand(b, mask, dtype)])
        # a row that attends no key gives zeros, not Softmax's NaN
        top = _reduce_node(b, "ReduceMax", scores, [-1], True)
        dead = b.node("Equal", [top, b.scalar(-math.inf, dtype)])
    lse = node.outputs[1]
    if lse.users or lse in lse.graph.outputs:
        _reduce_node(b, "ReduceLogSumExp", scores, [-1], False, lse.name)
    zero = b.scalar(0.0, dtype)
    if dead is not None:
        scores = b.node("Where", [dead, zero, scores])
    weights = b.node("Softmax", [scores], axis=-1)
    if dead is not None:
        weights = b.node("Where", [dead, zero, weights])
    b.node("MatMul", [weights, v.name], [out])


def _recurrent_inputs(b, node, order: tuple, states) -> list:
    """ONNX's LSTM or GRU inputs for a one-direction layer op: X, W, R, B (both biases, or
    none) and the initial states (names), each weight's gate blocks taken in `order` (the
    positions of PyTorch's blocks in ONNX's order), a direction axis of 1 added."""
    x, w_ih, w_hh = node.inputs[0], node.inputs[len(states) + 1], node.inputs[len(states) + 2]
    biases = node.inputs[len(states) + 3:]
    blocks = b.ints([w_hh.type.shape[1]] * len(order))

    def onnx_order(weight: str) -> str:
        names = [b.fresh("gate") for _ in order]
        b.node("Split", [weight, blocks], names, axis=0)
        return b.node("Concat", [names[k] for k in order], axis=0)

    def one_direction(name: str) -> str:
        return b.node("Unsqueeze", [name, b.ints([0])])

    inputs = [x.name, one_direction(onnx_order(w_ih.name)), one_direction(onnx_order(w_hh.name))]
    if biases:
        both = b.node("Concat", [onnx_order(bias.name) for bias in biases], axis=0)
        inputs.append(one_direction(both))
    else:
        inputs.append("")
    return inputs + [""] + [one_direction(state) for state in states]


def _lstm_layer(b, node, out):
    """One LSTM layer as ONNX's LSTM (one direction, `reverse` as direction="reverse"), its
    weights' gate blocks reordered from PyTorch's (input, forget, cell, output) to ONNX's
    (input, output, forget, cell), and both biases in its one B input."""
    _x, h0, c0, _w_ih, w_hh, *_biases = node.inputs
    output, h_n, c_n, gates, cells = node.outputs
    for saved in (gates, cells):
        if saved.users or saved in saved.graph.outputs:
            raise Unsupported("the gates and cell states an LSTM layer keeps for its backward")
    inputs = _recurrent_inputs(b, node, (0, 3, 1, 2), (h0.name, c0.name))
    y, y_h, y_c = (b.fresh(n) for n in ("lstm_y", "lstm_y_h", "lstm_y_c"))
    b.node("LSTM", inputs, [y, y_h, y_c], hidden_size=int(w_hh.type.shape[1]),
           direction="reverse" if node.attrs["reverse"] else "forward")
    b.node("Squeeze", [y_h, b.ints([0])], [h_n.name])
    b.node("Squeeze", [y_c, b.ints([0])], [c_n.name])
    b.node("Squeeze", [y, b.ints([1])], [out])


def _gru_layer(b, node, out):
    """One GRU layer as ONNX's GRU with linear_before_reset (PyTorch's r * (W_hn h + b_hn)),
    one direction, its weights' gate blocks reordered from PyTorch's (reset, update, new) to
    ONNX's (update, reset, hidden), both biases in its one B input."""
    _x, h0, _w_ih, w_hh, *_biases = node.inputs
    output, h_n, saved = node.outputs
    if saved.users or saved in saved.graph.outputs:
        raise Unsupported("the gates a GRU layer keeps for its backward")
    inputs = _recurrent_inputs(b, node, (1, 0, 2), (h0.name,))
    y, y_h = b.fresh("gru_y"), b.fresh("gru_y_h")
    b.node("GRU", inputs, [y, y_h], hidden_size=int(w_hh.type.shape[1]), linear_before_reset=1,
           direction="reverse" if node.attrs["reverse"] else "forward")
    b.node("Squeeze", [y_h, b.ints([0])], [h_n.name])
    b.node("Squeeze", [y, b.ints([1])], [out])


def _identity(b, node, out):
    b.node("Identity", [node.inputs[0].name], [out])


TRANSLATIONS = {
    # the ops declared one to one with an ONNX operator (ir/ops: onnx=)
    **{s.name: _elementwise(s.onnx) for s in SCHEMAS.values() if s.onnx is not None},
    "rsqrt": _composite(lambda b, xs, node: b.node("Reciprocal", [b.node("Sqrt", xs)])),
    "log1p": _composite(
        lambda b, xs, node: b.node("Log", [b.node("Add", [xs[0], b.scalar(1, node.output.dtype)])])
    ),
    "expm1": _composite(
        lambda b, xs, node: b.node("Sub", [b.node("Exp", xs), b.scalar(1, node.output.dtype)])
    ),
    "remainder": _remainder,
    "fmod": lambda b, node, out: b.node(
        "Mod", _operands(b, node, node.output.type.dtype), [out], fmod=1
    ),
    "log2": _composite(
        lambda b, xs, node: b.node("Div", [b.node("Log", xs), b.scalar(math.log(2.0),
                                                                       node.output.dtype)])
    ),
    "log10": _composite(
        lambda b, xs, node: b.node("Div", [b.node("Log", xs), b.scalar(math.log(10.0),
                                                                       node.output.dtype)])
    ),
    "exp2": _composite(
        lambda b, xs, node: b.node("Pow", [b.scalar(2.0, node.output.dtype), xs[0]])
    ),
    **{
        op: _compare(onnx_op)
        for op, onnx_op in {
            "eq": "Equal",
            "lt": "Less",
            "le": "LessOrEqual",
            "gt": "Greater",
            "ge": "GreaterOrEqual",
        }.items()
    },
    "ne": _compare("Equal", negate=True),
    "logical_and": _logical("And"),
    "logical_or": _logical("Or"),
    "logical_xor": _logical("Xor"),
    "logical_not": _logical("Not"),
    "where": _where,
    "clamp": _clamp,
    "cast": lambda b, node, out: b.node(
        "Cast", [node.inputs[0].name], [out], to=_onnx_type(node.attrs["dtype"])
    ),
    "clone": _identity,
    "masked_fill": _masked_fill,
    "matmul": _elementwise("MatMul"),
    "linear": _linear,
    "conv2d": _conv2d,
    "conv2d_backward_input": _conv2d_backward_input,
    "max_pool2d": _pool("MaxPool"),
    "avg_pool2d": _pool("AveragePool"),
    "sum": _reduction("ReduceSum"),
    "mean": _reduction("ReduceMean"),
    "prod": _reduction("ReduceProd"),
    "amax": _reduction("ReduceMax"),
    "amin": _reduction("ReduceMin"),
    "logsumexp": _reduction("ReduceLogSumExp"),
    "all": _logical_reduction("ReduceMin"),
    "any": _logical_reduction("ReduceMax"),
    "var": _var,
    "max_dim": _with_indices("ReduceMax", "ArgMax"),
    "min_dim": _with_indices("ReduceMin", "ArgMin"),
    "argmax": _arg("ArgMax"),
    "argmin": _arg("ArgMin"),
    "cumsum": _cumsum,
    "reshape": _to_output_shape("Reshape"),
    "view": _to_output_shape("Reshape"),
    "expand": _to_output_shape("Expand"),
    "full": _full,
    "index": _index,
    "index_put": _index_put,
    "permute": _permute,
    "squeeze": _squeeze,
    "unsqueeze": _unsqueeze,
    "slice": _slice,
    "cat": _cat,
    "flip": _flip,
    "pad": _pad,
    "tril": _triangle(0),
    "triu": _triangle(1),
    "index_select": _index_select,
    "gather": _gather,
    "one_hot": _one_hot,
    "trunc": _trunc,
    "trunc_divide": _trunc_divide,
    "floor_divide": _floor_divide,
    "repeat": _repeat,
    "scatter": _scatter("none"),
    "scatter_add": _scatter("add"),
    "sort": _sort,
    "attention": _attention,
    "lstm_layer": _lstm_layer,
    "gru_layer": _gru_layer,
}

_BACKWARD = "a gradient op: an exported graph is an inference graph"
_COLLECTIVE = "a collective: an exported graph runs in one process"
_NOT_YET = "no ONNX translation yet"
# every op without a translation, and why (the op-table completeness test checks that each
# op is in TRANSLATIONS or here); the exporter names the op and this reason
NOT_EXPORTABLE = {
    "avg_pool2d_backward": _BACKWARD,
    "conv2d_backward_weight": _BACKWARD,
    "max_pool2d_backward": _BACKWARD,
    "slice_backward": _BACKWARD,
    "gather_backward": _BACKWARD,
    "attention_backward": _BACKWARD,
    "lstm_layer_backward": _BACKWARD,
    "gru_layer_backward": _BACKWARD,
    "linear_backward_weight": _BACKWARD,
    "batch_norm_train_backward": _BACKWARD,
    "batch_norm_train": "training batch norm's eager form (batch statistics, running-stat "
    "update): a trace records batch_norm's primitives, and an exported graph is an inference "
    "graph",
    "view_scatter": "an in-place write through a view, which ONNX graphs cannot express",
    "dist_all_gather": _COLLECTIVE,
    "dist_all_reduce": _COLLECTIVE,
    "dist_broadcast": _COLLECTIVE,
    "dist_reduce_scatter": _COLLECTIVE,
    "bernoulli": "random numbers: ONNX's Bernoulli does not draw ember's stream (dropout is "
    "exported in eval mode, where it is the identity)",
    "uniform": "random numbers: ONNX's RandomUniform does not draw ember's stream",
    "normal": "random numbers: ONNX's RandomNormal does not draw ember's stream",
    "randint": "random numbers: ONNX has no integer draw from ember's stream",
    "multinomial": "random numbers: ONNX's Multinomial does not draw ember's stream",
    "nonzero": "an output whose size depends on the data",
    "view_dtype": "a reinterpretation of the bits, which ONNX cannot express",
    "index_add": _NOT_YET,
    "atan2": _NOT_YET,
    "cummax": _NOT_YET,
    "cummin": _NOT_YET,
    "hypot": _NOT_YET,
    "logaddexp": _NOT_YET,
    "logaddexp2": _NOT_YET,
    "copysign": _NOT_YET,
    "xlogy": _NOT_YET,
    "erfc": "no ONNX operator (ONNX has Erf only)",
    "erfinv": "no ONNX operator",
    "lgamma": "no ONNX operator",
    "digamma": "no ONNX operator",
    "polygamma": "no ONNX operator",
    "bitwise_and": "ONNX's BitwiseAnd needs opset 18; ember exports opset 17",
    "bitwise_or": "ONNX's BitwiseOr needs opset 18; ember exports opset 17",
    "bitwise_xor": "ONNX's BitwiseXor needs opset 18; ember exports opset 17",
    "bitwise_not": "ONNX's BitwiseNot needs opset 18; ember exports opset 17",
    "bitwise_left_shift": "ONNX's BitShift takes unsigned integers only",
    "bitwise_right_shift": "ONNX's BitShift takes unsigned integers only",
    "cumprod": "ONNX has CumSum but no running product",
    "logcumsumexp": "ONNX has no running logaddexp (CumSum of exp would overflow)",
    "median": _NOT_YET,
    "unique": _NOT_YET,
    "searchsorted": _NOT_YET,
    "scatter_reduce": _NOT_YET,
}
