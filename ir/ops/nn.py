"""Type rules of the extern ops: matmul, conv2d and pooling (with their backward ops), random,
fused attention, the LSTM layer."""

from __future__ import annotations

from ...errors import EmberError, IRError, index_error, runtime_error, type_error
from ..dtypes import FLOAT, as_dtype, bool_, float32, float64
from ..schema import (
    SHAPE,
    bool_attr,
    broadcast_shapes,
    dtype_attr,
    fmt_shape,
    int_attr,
    ints_attr,
    number_attr,
    register,
)

# (height, width) pairs of a convolution or pooling window
_POSITIVE_PAIR = ints_attr(1, length=2)
CONV = {"stride": _POSITIVE_PAIR, "padding": ints_attr(0, length=2), "dilation": _POSITIVE_PAIR,
        "groups": int_attr(1)}
MAX_POOL = {"kernel_size": _POSITIVE_PAIR, "stride": _POSITIVE_PAIR,
            "padding": ints_attr(0, length=2), "ceil_mode": bool_attr(),
            "dilation": ints_attr(1, length=2, optional=True)}
AVG_POOL = {"kernel_size": _POSITIVE_PAIR, "stride": _POSITIVE_PAIR,
            "padding": ints_attr(0, length=2), "ceil_mode": bool_attr(),
            "count_include_pad": bool_attr(optional=True),
            "divisor_override": int_attr(1, nullable=True, optional=True)}
FACTORY = {"shape": SHAPE, "dtype": dtype_attr()}
from ..symbolic import definitely_less
from ..types import TensorType


def _same_dtype(op, a, b):
    if a.dtype is not b.dtype:
        raise runtime_error(
            f"{op}: expected both inputs to have the same dtype, but got: {a.dtype.name} != "
            f"{b.dtype.name}"
        )


@register("matmul", kind="extern", num_inputs=2, attrs={})
def _matmul(inputs, attrs):
    a, b = inputs
    _same_dtype("matmul", a, b)
    sa, sb = tuple(a.shape), tuple(b.shape)
    if not sa or not sb:
        raise runtime_error(
            f"both arguments to matmul need to be at least 1D, but they are {len(sa)}D and "
            f"{len(sb)}D"
        )
    k_a = sa[-1]
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    if k_a != k_b:
        if len(sa) == 1 and len(sb) == 1:
            raise runtime_error(
                f"inconsistent tensor size, expected tensor [{k_a}] and src [{k_b}] to have the "
                f"same number of elements, but got {k_a} and {k_b} elements respectively"
            )
        rows = sa[-2] if len(sa) > 1 else 1
        cols = sb[-1] if len(sb) > 1 else 1
        raise runtime_error(
            f"mat1 and mat2 shapes cannot be multiplied ({rows}x{k_a} and {k_b}x{cols}); "
            f"matmul of shapes {fmt_shape(sa)} and {fmt_shape(sb)}"
        )
    batch = broadcast_shapes(sa[:-2], sb[:-2]) if len(sa) > 2 or len(sb) > 2 else ()
    shape = batch + (sa[-2:-1] if len(sa) > 1 else ()) + (sb[-1:] if len(sb) > 1 else ())
    return TensorType(shape, a.dtype)


def conv_out_size(size, kernel, stride, padding, dilation, ceil_mode=False):
    """The output size of a convolution or pooling window sliding over `size` (an int, or a
    SymInt, which gives an expression such as (H - 1)//2 + 1)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = (span + stride - 1) // stride + 1
        # the last window must start inside the input or the left padding
        last_start, bound = (out - 1) * stride, size + padding
        if last_start.__class__ is int and bound.__class__ is int:
            if last_start >= bound:
                out -= 1
        elif padding + stride >= dilation * (kernel - 1) + 2:
            # only then can the last window start past the input (ceil(span/s)*s is at most
            # span + s - 1), and whether it does depends on the size modulo the stride
            raise IRError(
                f"ceil_mode: the output size for the symbolic input size {size} depends on "
                f"{size} modulo the stride {stride} (kernel {kernel}, padding {padding})"
            )
        return out
    return span // stride + 1


def _pairs(attrs, *names):
    return [tuple(attrs[n]) for n in names]


def _check_conv_args(kernel, stride, padding, dilation, groups) -> None:
    """PyTorch's checks of a convolution's arguments (before any size is computed from them)."""
    if any(s <= 0 for s in stride):
        raise runtime_error("non-positive stride is not supported")
    if any(p < 0 for p in padding):
        raise runtime_error("negative padding is not supported")
    if any(d <= 0 for d in dilation):
        raise runtime_error(f"dilation should be greater than zero, but got {list(dilation)}")
    if groups <= 0:
        raise runtime_error("non-positive groups is not supported")
    if any(definitely_less(k, 1) for k in kernel):
        raise runtime_error(
            f"kernel size should be greater than zero, but got {' x '.join(map(str, kernel))}"
        )


def _check_pool_args(op, kernel, stride, padding, dilation) -> None:
    """PyTorch's checks of a pooling window's arguments."""
    for name, values in (("kernel_size", kernel), ("stride", stride), ("dilation", dilation)):
        if any(v <= 0 for v in values):
            raise runtime_error(
                f"{op}: {name} should be greater than zero, but got {name}={list(values)}"
            )
    if any(p < 0 for p in padding):
        raise runtime_error(f"{op}: pad must be non-negative, but got pad={list(padding)}")


@register("conv2d", kind="extern", num_inputs=2, attrs=CONV)
def _conv2d(inputs, attrs):
    x, w = inputs
    _same_dtype("conv2d", x, w)
    if x.dtype.category != FLOAT:
        raise type_error(f"conv2d: expected a floating-point input, got {x.dtype.name}")
    if len(x.shape) != 4 or len(w.shape) != 4:
        raise runtime_error(
            f"conv2d: expected 4-D input and weight, got input {fmt_shape(x.shape)} and weight "
            f"{fmt_shape(w.shape)}"
        )
    stride, padding, dilation = _pairs(attrs, "stride", "padding", "dilation")
    groups = attrs["groups"]
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    _check_conv_args((kh, kw), stride, padding, dilation, groups)
    if c != cg * groups or o % groups:
        raise runtime_error(
            f"Given groups={groups}, weight of size {fmt_shape(w.shape)}, expected input"
            f"{fmt_shape(x.shape)} to have {cg * groups} channels, but got {c} channels instead"
        )
    oh = conv_out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = conv_out_size(wd, kw, stride[1], padding[1], dilation[1])
    if definitely_less(oh, 1) or definitely_less(ow, 1):
        raise runtime_error(
            f"conv2d: calculated output size ({o}x{oh}x{ow}) is too small for input "
            f"{fmt_shape(x.shape)} and kernel {kh}x{kw}"
        )
    return TensorType((n, o, oh, ow), x.dtype)


@register("conv2d_backward_input", kind="extern", num_inputs=2,
          attrs={"input_shape": SHAPE, **CONV})
def _conv2d_backward_input(inputs, attrs):
    g, _w = inputs
    return TensorType(tuple(attrs["input_shape"]), g.dtype)


@register("conv2d_backward_weight", kind="extern", num_inputs=2,
          attrs={"weight_shape": SHAPE, **CONV})
def _conv2d_backward_weight(inputs, attrs):
    _x, g = inputs
    return TensorType(tuple(attrs["weight_shape"]), g.dtype)


def _pool_shape(op, x, attrs):
    if len(x.shape) not in (3, 4):
        raise runtime_error(f"{op}: expected a 3-D or 4-D input, got {fmt_shape(x.shape)}")
    kernel, stride, padding = _pairs(attrs, "kernel_size", "stride", "padding")
    dilation = tuple(attrs.get("dilation", (1, 1)))
    _check_pool_args(op, kernel, stride, padding, dilation)
    for k, p in zip(kernel, padding):
        if p * 2 > k:
            raise runtime_error(
                f"{op}: pad should be at most half of effective kernel size, but got pad={p}, "
                f"kernel_size={k}"
            )
    h, w = x.shape[-2:]
    oh = conv_out_size(h, kernel[0], stride[0], padding[0], dilation[0], attrs["ceil_mode"])
    ow = conv_out_size(w, kernel[1], stride[1], padding[1], dilation[1], attrs["ceil_mode"])
    if definitely_less(oh, 1) or definitely_less(ow, 1):
        raise runtime_error(
            f"{op}: output size is too small ({oh}x{ow}) for input {fmt_shape(x.shape)} and "
            f"kernel {kernel}"
        )
    return TensorType(tuple(x.shape[:-2]) + (oh, ow), x.dtype)


@register("max_pool2d", kind="extern", num_inputs=1, attrs=MAX_POOL)
def _max_pool2d(inputs, attrs):
    return _pool_shape("max_pool2d", inputs[0], attrs)


@register("avg_pool2d", kind="extern", num_inputs=1, attrs=AVG_POOL)
def _avg_pool2d(inputs, attrs):
    if inputs[0].dtype.category != FLOAT:
        raise type_error(f"avg_pool2d: expected a floating-point input, got {inputs[0].dtype.name}")
    return _pool_shape("avg_pool2d", inputs[0], attrs)


@register("max_pool2d_backward", kind="extern", differentiable=False, num_inputs=2,
          attrs=MAX_POOL)
def _max_pool2d_backward(inputs, attrs):
    _g, x = inputs
    return TensorType(tuple(x.shape), x.dtype)


@register("avg_pool2d_backward", kind="extern", num_inputs=1,
          attrs={"input_shape": SHAPE, **AVG_POOL})
def _avg_pool2d_backward(inputs, attrs):
    (g,) = inputs
    return TensorType(tuple(attrs["input_shape"]), g.dtype)


@register("bernoulli", kind="random", differentiable=False, num_inputs=1, attrs={})
def _bernoulli(inputs, attrs):
    (p,) = inputs
    if p.dtype.category != FLOAT:
        raise type_error(f"bernoulli: expected floating-point probabilities, got {p.dtype.name}")
    return TensorType(tuple(p.shape), p.dtype)


@register("linear", kind="extern", num_inputs=(2, 3), attrs={})
def _linear(inputs, attrs):
    """x @ w.T (+ b) for a weight w of shape (out_features, in_features) and an optional bias
    of shape (out_features,), as nn.Linear stores them."""
    x, w, *bias = inputs
    _same_dtype("linear", x, w)
    if len(w.shape) != 2 or not len(x.shape) or x.shape[-1] != w.shape[1]:
        raise runtime_error(
            f"linear: input {fmt_shape(x.shape)} and weight {fmt_shape(w.shape)} do not fit "
            f"(the input's last dim must equal the weight's second)"
        )
    if bias:
        (b,) = bias
        _same_dtype("linear", x, b)
        if tuple(b.shape) != (w.shape[0],):
            raise runtime_error(
                f"linear: bias {fmt_shape(b.shape)} does not fit weight {fmt_shape(w.shape)} "
                f"(expected [{w.shape[0]}])"
            )
    return TensorType(tuple(x.shape[:-1]) + (w.shape[0],), x.dtype)



@register("linear_backward_weight", kind="extern", differentiable=False, num_inputs=2,
          num_outputs=2, attrs={})
def _linear_backward_weight(inputs, attrs):
    """(g, x) -> (g^T @ x, g.sum(0)) for a linear layer's output gradient g (N, out) and
    input x (N, in): its weight's and bias's gradients. The eager backward of a linear with
    a bias makes it (autograd/derivatives/nn.py): one GEMM that adds g's columns up as it
    copies them, where the bias's gradient was an eager sum that read g once more."""
    g, x = inputs
    _same_dtype("linear_backward_weight", g, x)
    if len(g.shape) != 2 or len(x.shape) != 2 or g.shape[0] != x.shape[0]:
        raise runtime_error(
            f"linear_backward_weight: the gradient {fmt_shape(g.shape)} and input "
            f"{fmt_shape(x.shape)} must be matrices of the same number of rows"
        )
    return (TensorType((g.shape[1], x.shape[1]), g.dtype), TensorType((g.shape[1],), g.dtype))

# -- factories under capture: a tensor of a shape (symbolic or not), filled or drawn ---------
# Outside a trace the factories fill arrays directly; a trace records them as these ops, so a
# size taken from an input (zeros_like(x), x.new_zeros(x.shape)) stays symbolic and random
# numbers are drawn on every call, from the same stream and in the same order as eager.


def _made(inputs, attrs):
    if inputs:
        raise type_error(f"a factory takes no tensor inputs, got {len(inputs)}")
    return TensorType(tuple(attrs["shape"]), as_dtype(attrs["dtype"]))


register("full", kind="extern", differentiable=False, num_inputs=0,
         attrs={**FACTORY, "value": number_attr()})(_made)
register("uniform", kind="random", differentiable=False, num_inputs=0, attrs=FACTORY)(_made)
register("normal", kind="random", differentiable=False, num_inputs=0, attrs=FACTORY)(_made)


@register("randint", kind="random", differentiable=False, num_inputs=0,
          attrs={**FACTORY, "low": int_attr(), "high": int_attr()})
def _randint(inputs, attrs):
    if not attrs["low"] < attrs["high"]:
        raise runtime_error(f"random_ expects 'from' to be less than 'to', but got "
                            f"from={attrs['low']} >= to={attrs['high']}")
    return _made(inputs, attrs)


@register("multinomial", kind="random", differentiable=False, num_inputs=1,
          attrs={"num_samples": int_attr(1), "replacement": bool_attr()})
def _multinomial(inputs, attrs):
    """num_samples category indices per row of a 1-D or 2-D weight tensor (see
    _tensor/ops/sampling.py); the draw is a graph op, the weights' values checked at run
    time."""
    (probs,) = inputs
    n, count = attrs["num_samples"], probs.shape[-1] if probs.shape else 0
    if len(probs.shape) not in (1, 2):
        raise runtime_error(f"prob_dist must be 1 or 2 dim, got {len(probs.shape)}")
    if probs.dtype.category != FLOAT:
        raise runtime_error(f"multinomial only supports floating-point dtypes for input, got: "
                            f"{probs.dtype.name}")
    if n <= 0:
        raise runtime_error(f"cannot sample n_sample <= 0 samples, got {n}")
    if count == 0:
        raise runtime_error("multinomial: the distribution has no categories (size 0)")
    if not attrs["replacement"] and definitely_less(count, n):
        raise runtime_error(f"cannot sample n_sample > prob_dist.size(-1) samples without "
                            f"replacement (n_sample = {n}, categories = {count})")
    return TensorType((*probs.shape[:-1], n), as_dtype("int64"))


# -- fused attention: softmax(q @ k^T * scale + mask) @ v in one op, forward and backward -----
# Inputs q (..., L, E), k (..., S, E), v (..., S, Ev), then the attn mask where `mask` (bool:
# True = attend, or float, added to the scores; broadcastable to (..., L, S)), then the
# dropout keep mask where dropout_p > 0 (bernoulli draws, 0 or 1, over (..., L, S), drawn by
# the caller from the stream as F.dropout draws them). scale None: 1 / sqrt(E).
ATTENTION = {"scale": number_attr(nullable=True), "causal": bool_attr(), "mask": bool_attr(),
             "dropout_p": number_attr()}


def _attention_types(op, inputs, attrs, first_mask):
    """(batch, q, k, v) of an attention op's inputs: checked, the batch dims broadcast."""
    q, k, v = inputs[:3]
    extra = inputs[first_mask:]
    wanted = int(attrs["mask"]) + int(attrs["dropout_p"] > 0)
    if len(extra) != wanted:
        raise runtime_error(
            f"{op}: expected {first_mask + wanted} inputs for mask={attrs['mask']} and "
            f"dropout_p={attrs['dropout_p']}, got {len(inputs)}"
        )
    if not 0 <= attrs["dropout_p"] < 1:
        raise runtime_error(f"{op}: dropout_p must be in [0, 1), got {attrs['dropout_p']}")
    if attrs["causal"] and attrs["mask"]:
        raise runtime_error(
            "_scaled_dot_product_attention: Explicit attn_mask should not be set when "
            "is_causal=True"
        )
    for name, t in (("query", q), ("key", k), ("value", v)):
        if len(t.shape) < 2:
            raise runtime_error(
                f"scaled_dot_product_attention: {name} must be at least 2-D, got "
                f"{fmt_shape(t.shape)}"
            )
    if q.dtype is not k.dtype or q.dtype is not v.dtype:
        raise runtime_error(
            f"scaled_dot_product_attention: expected query, key and value to have the same "
            f"dtype, but got query {q.dtype.name}, key {k.dtype.name}, value {v.dtype.name}"
        )
    if q.dtype.category != FLOAT:
        raise type_error(
            f"scaled_dot_product_attention: expected floating-point inputs, got {q.dtype.name}"
        )
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise runtime_error(
            f"scaled_dot_product_attention: query {fmt_shape(q.shape)}, key {fmt_shape(k.shape)} "
            f"and value {fmt_shape(v.shape)} do not fit (query and key need the same last dim, "
            "key and value the same number of positions)"
        )
    length, source = q.shape[-2], k.shape[-2]
    batch = broadcast_shapes(tuple(q.shape[:-2]), tuple(k.shape[:-2]), tuple(v.shape[:-2]))
    for name, m in zip(("attn_mask", "dropout mask")[1 - int(attrs["mask"]):], extra):
        if m.dtype is not bool_ and m.dtype.category != FLOAT:
            raise runtime_error(
                f"scaled_dot_product_attention: expected {name} dtype to be bool or float, "
                f"got {m.dtype.name}"
            )
        if len(m.shape) < 2:  # PyTorch reads the mask's dim -2 and raises IndexError
            raise index_error(
                f"scaled_dot_product_attention: {name} {fmt_shape(m.shape)} needs at least 2 "
                f"dims (L, S): Dimension out of range (expected to be in range of "
                f"[-{max(len(m.shape), 1)}, {max(len(m.shape), 1) - 1}], but got -2)"
            )
        try:
            full = broadcast_shapes(tuple(m.shape), batch + (length, source))
        except EmberError:
            full = ()
        if tuple(full[-2:]) != (length, source):
            raise runtime_error(
                f"scaled_dot_product_attention: {name} {fmt_shape(m.shape)} does not broadcast "
                f"to the scores' shape {fmt_shape(batch + (length, source))}"
            )
        batch = tuple(full[:-2])
    return batch, q, k, v


def lse_dtype(dtype):
    """The dtype of attention's row logsumexp: float64 for float64 inputs, else float32."""
    return dtype if dtype is float64 else float32


@register("attention", kind="extern", num_inputs=(3, 5), num_outputs=2, attrs=ATTENTION)
def _attention(inputs, attrs):
    """out (..., L, Ev) and the rows' logsumexp (..., L) of the scores (-inf for a row that
    attends no key; its out is zeros), which the backward reuses."""
    batch, q, _k, v = _attention_types("attention", inputs, attrs, 3)
    length = q.shape[-2]
    return (TensorType(batch + (length, v.shape[-1]), q.dtype),
            TensorType(batch + (length,), lse_dtype(q.dtype)))


@register("attention_backward", kind="extern", differentiable=False, num_inputs=(7, 9),
          num_outputs=3, attrs=ATTENTION)
def _attention_backward(inputs, attrs):
    """(q, k, v, out, lse, grad_out, grad_lse[, mask][, keep]) -> dq, dk, dv, each of its
    input's shape (broadcast batch dims summed)."""
    _batch, q, k, v = _attention_types("attention_backward", inputs, attrs, 7)
    return tuple(TensorType(tuple(t.shape), t.dtype) for t in (q, k, v))


# -- one LSTM layer over a whole sequence, forward and backward ------------------------------
# Inputs x (T, B, I), h0 (B, H), c0 (B, H), w_ih (4H, I), w_hh (4H, H), then b_ih and b_hh
# (4H,) when the layer has biases; gates in PyTorch's order (input, forget, cell, output).
# reverse: the steps run from T - 1 down to 0 (a bidirectional LSTM's backward direction).
LSTM_LAYER = {"reverse": bool_attr()}


def _lstm_layer_types(op, inputs):
    """(x, h0, c0, w_ih, w_hh) of an lstm op's inputs, checked; returns (T, B, I, H)."""
    x, h0, c0, w_ih, w_hh, *biases = inputs
    return _layer_types(op, x, (("h0", h0), ("c0", c0)), w_ih, w_hh, biases, 4)


def _layer_types(op, x, states, w_ih, w_hh, biases, gates_per_unit: int):
    """Check a recurrent layer op's inputs: x, its states (name, type), the weights and the
    biases, whose rows are gates_per_unit * hidden; returns (T, B, I, H)."""
    named = (("input", x), *states, ("weight_ih", w_ih), ("weight_hh", w_hh),
             *zip(("bias_ih", "bias_hh"), biases))
    for name, t in named:
        if t.dtype is not x.dtype:
            raise runtime_error(
                f"{op}: expected {name} to have the input's dtype {x.dtype.name}, got "
                f"{t.dtype.name}"
            )
    if x.dtype not in (float32, float64):
        raise type_error(f"{op}: expected a float32 or float64 input, got {x.dtype.name}")
    if len(x.shape) != 3 or len(w_hh.shape) != 2 or len(w_ih.shape) != 2:
        raise runtime_error(
            f"{op}: expected a 3-D input (seq, batch, input_size) and 2-D weights, got input "
            f"{fmt_shape(x.shape)}, weight_ih {fmt_shape(w_ih.shape)}, weight_hh "
            f"{fmt_shape(w_hh.shape)}"
        )
    steps, batch, features = x.shape
    hidden = w_hh.shape[1]
    gates = w_hh.shape[0]
    expected = {"weight_ih": (gates, features), "h0": (batch, hidden), "c0": (batch, hidden),
                "bias_ih": (gates,), "bias_hh": (gates,)}
    for name, t in named[1:]:
        want = expected.get(name, (gates, hidden))
        if tuple(t.shape) != want or gates != gates_per_unit * hidden:
            raise runtime_error(
                f"{op}: {name} {fmt_shape(t.shape)} does not fit input {fmt_shape(x.shape)} "
                f"and weight_hh {fmt_shape(w_hh.shape)} (expected {fmt_shape(want)}, the "
                f"weights with {gates_per_unit} * hidden_size rows)"
            )
    return steps, batch, features, hidden


@register("lstm_layer", kind="extern", num_inputs=(5, 7), num_outputs=5, attrs=LSTM_LAYER)
def _lstm_layer(inputs, attrs):
    """output (T, B, H), h_n (B, H), c_n (B, H), and what the backward reads: the gates after
    their activations (T, B, 4H) and the cell state of every step (T, B, H)."""
    steps, batch, _features, hidden = _lstm_layer_types("lstm_layer", inputs)
    dtype = inputs[0].dtype
    return (TensorType((steps, batch, hidden), dtype), TensorType((batch, hidden), dtype),
            TensorType((batch, hidden), dtype), TensorType((steps, batch, 4 * hidden), dtype),
            TensorType((steps, batch, hidden), dtype))


@register("lstm_layer_backward", kind="extern", differentiable=False, num_inputs=11,
          num_outputs=6, attrs=LSTM_LAYER)
def _lstm_layer_backward(inputs, attrs):
    """(x, h0, c0, w_ih, w_hh, output, gates, cells, grad_output, grad_h_n, grad_c_n) -> the
    gradients of x, h0, c0, w_ih, w_hh and of the biases (both get the same one, (4H,))."""
    x, h0, c0, w_ih, w_hh, output, gates, cells, *grads = inputs
    _lstm_layer_types("lstm_layer_backward", (x, h0, c0, w_ih, w_hh))
    for name, t in (("output", output), ("gates", gates), ("cells", cells),
                    ("grad_output", grads[0]), ("grad_h_n", grads[1]), ("grad_c_n", grads[2])):
        if t.dtype is not x.dtype:
            raise runtime_error(
                f"lstm_layer_backward: {name} has dtype {t.dtype.name}, expected "
                f"{x.dtype.name}"
            )
    dtype = x.dtype
    return (*(TensorType(tuple(t.shape), dtype) for t in (x, h0, c0, w_ih, w_hh)),
            TensorType((w_hh.shape[0],), dtype))


# -- one GRU layer over a whole sequence, forward and backward -------------------------------
# Inputs x (T, B, I), h0 (B, H), w_ih (3H, I), w_hh (3H, H), then b_ih and b_hh (3H,) when the
# layer has biases; gates in PyTorch's order (reset, update, new); reverse as the LSTM's.


@register("gru_layer", kind="extern", num_inputs=(4, 6), num_outputs=3, attrs=LSTM_LAYER)
def _gru_layer(inputs, attrs):
    """output (T, B, H), h_n (B, H), and what the backward reads: each step's reset, update
    and new gates after their activations and the hidden projection of the new gate,
    (T, B, 4H)."""
    x, h0, w_ih, w_hh, *biases = inputs
    steps, batch, _features, hidden = _layer_types("gru_layer", x, (("h0", h0),), w_ih, w_hh,
                                                   biases, 3)
    dtype = x.dtype
    return (TensorType((steps, batch, hidden), dtype), TensorType((batch, hidden), dtype),
            TensorType((steps, batch, 4 * hidden), dtype))


@register("gru_layer_backward", kind="extern", differentiable=False, num_inputs=8,
          num_outputs=5, attrs=LSTM_LAYER)
def _gru_layer_backward(inputs, attrs):
    """(x, h0, w_ih, w_hh, output, saved, grad_output, grad_h_n) -> the gradients of x, h0,
    w_ih, w_hh, and of b_ih and b_hh stacked (2, 3H): they differ in the new gate's block."""
    x, h0, w_ih, w_hh, output, saved, *grads = inputs
    _layer_types("gru_layer_backward", x, (("h0", h0),), w_ih, w_hh, (), 3)
    for name, t in (("output", output), ("saved", saved), ("grad_output", grads[0]),
                    ("grad_h_n", grads[1])):
        if t.dtype is not x.dtype:
            raise runtime_error(
                f"gru_layer_backward: {name} has dtype {t.dtype.name}, expected {x.dtype.name}"
            )
    dtype = x.dtype
    return (*(TensorType(tuple(t.shape), dtype) for t in (x, h0, w_ih, w_hh)),
            TensorType((2, w_hh.shape[0]), dtype))
