"""Derivatives of matmul, conv2d, pooling, attention and the LSTM layer (the backward ops are
primitives too)."""

from __future__ import annotations

import math

from ..._tensor import dispatch
from ..._tensor import hooks as _hooks
from ..._tensor import ops as E
from ..._tensor.factories import full, zeros_like
from ...errors import runtime_error
from ...ir.dtypes import bool_
from ..grad_mode import is_grad_enabled
from .registry import derivative, save_other


@derivative("matmul", save_inputs=save_other)
def _matmul(node, g):
    a, b = node.inputs  # a is kept only when b needs a gradient, and b only for a
    need_a, need_b = node.needs_input_grad
    a_1d, b_1d = len(node.input_meta[0][0]) == 1, len(node.input_meta[1][0]) == 1
    g2 = g
    if a_1d:
        g2 = E.unsqueeze(g2, 0 if b_1d else -2)
    if b_1d:
        g2 = E.unsqueeze(g2, -1)
    ga = gb = None
    if need_a:
        b2 = E.unsqueeze(b, -1) if b_1d else b
        ga = E.matmul(g2, E.mT(b2))
        if a_1d:
            ga = E.squeeze(ga, -2)
    if need_b:
        a2 = E.unsqueeze(a, 0) if a_1d else a
        if a2.ndim > 2 and len(node.input_meta[1][0]) == 2 and a2.shape[-1] and g2.numel():
            # a stack times one matrix: b's gradient is one GEMM over the stacked rows
            # instead of a product per matrix summed afterwards
            k, n = a2.shape[-1], g2.shape[-1]
            gb = E.matmul(E.mT(E.reshape(a2, -1, k)), E.reshape(g2, -1, n))
        else:
            gb = E.matmul(E.mT(a2), g2)
        if b_1d:
            gb = E.squeeze(gb, -1)
    return ga, gb


def _conv_attrs(node):
    return {k: node.attrs[k] for k in ("stride", "padding", "dilation", "groups")}


@derivative("conv2d", save_inputs=save_other)
def _conv2d(node, g):
    x, w = node.inputs  # x is kept only when w needs a gradient, and w only for x
    need_x, need_w = node.needs_input_grad
    attrs = _conv_attrs(node)
    gx = gw = None
    if need_x:
        gx = dispatch(
            "conv2d_backward_input", (g, w), dict(attrs, input_shape=tuple(node.input_meta[0][0]))
        )
    if need_w:
        gw = dispatch(
            "conv2d_backward_weight", (x, g), dict(attrs, weight_shape=tuple(node.input_meta[1][0]))
        )
    return gx, gw


@derivative("conv2d_backward_input")
def _conv2d_backward_input(node, h):
    g, w = node.inputs
    need_g, need_w = node.needs_input_grad
    attrs = _conv_attrs(node)
    gg = dispatch("conv2d", (h, w), attrs) if need_g else None
    gw = (
        dispatch("conv2d_backward_weight", (h, g), dict(attrs, weight_shape=tuple(w.shape)))
        if need_w
        else None
    )
    return gg, gw


@derivative("conv2d_backward_weight")
def _conv2d_backward_weight(node, h):
    x, g = node.inputs
    need_x, need_g = node.needs_input_grad
    attrs = _conv_attrs(node)
    gx = (
        dispatch("conv2d_backward_input", (g, h), dict(attrs, input_shape=tuple(x.shape)))
        if need_x
        else None
    )
    gg = dispatch("conv2d", (x, h), attrs) if need_g else None
    return gx, gg


_POOL_KEYS = ("kernel_size", "stride", "padding", "ceil_mode")


@derivative("max_pool2d")
def _max_pool2d(node, g):
    (x,) = node.inputs
    attrs = {k: node.attrs[k] for k in (*_POOL_KEYS, "dilation")}
    return (dispatch("max_pool2d_backward", (g, x), attrs),)


@derivative("avg_pool2d", save_inputs=False)
def _avg_pool2d(node, g):
    attrs = dict(node.attrs, input_shape=node.input_meta[0][0])
    return (dispatch("avg_pool2d_backward", (g,), attrs),)


@derivative("avg_pool2d_backward", save_inputs=False)
def _avg_pool2d_backward(node, h):
    attrs = {k: v for k, v in node.attrs.items() if k != "input_shape"}
    return (dispatch("avg_pool2d", (h,), attrs),)


@derivative("linear", save_inputs=lambda needs: (needs[1], needs[0], False)[: len(needs)])
def _linear(node, g):
    x, w = node.inputs[:2]  # x is kept only when w needs a gradient, and w only for x
    need_x, need_w = node.needs_input_grad[:2]
    need_b = len(node.needs_input_grad) > 2 and node.needs_input_grad[2]
    gx = E.matmul(g, w) if need_x else None
    gw = None
    if need_w:
        out_features, in_features = node.input_meta[1][0]
        g2 = g if g.ndim == 2 else E.reshape(g, -1, out_features)
        x2 = x if x.ndim == 2 else E.reshape(x, -1, in_features)
        if need_b and not is_grad_enabled() and _hooks.active_trace is None:
            # eager: both gradients from one GEMM (a trace keeps the product and the sum,
            # which the compiled program pairs itself, runtime/compiled.py)
            return (gx, *dispatch("linear_backward_weight", (g2, x2)))
        # the weight's gradient comes out in the weight's own (out, in) layout, contiguous
        gw = E.matmul(E.mT(g2), x2)
    if len(node.input_meta) == 2:
        return gx, gw
    # the bias's gradient: summed over every leading dim (the engine's sum_to does it)
    return gx, gw, (g if need_b else None)


@derivative("attention", save_outputs=True)
def _attention(node, g_out, g_lse):
    """One attention_backward op recomputes each key block's probabilities from the saved
    logsumexp (FlashAttention-2), so no (L, S) array is kept between forward and backward."""
    q, k, v, *masks = node.inputs
    out, lse = node.outputs
    if node.attrs["mask"] and node.needs_input_grad[3]:
        raise runtime_error(
            "attention: the fused op does not differentiate a float attn_mask; "
            "F.scaled_dot_product_attention takes the composite path for a mask that requires "
            "grad"
        )
    if g_out is None:
        g_out = zeros_like(out)
    if g_lse is None:
        g_lse = zeros_like(lse)
    if is_grad_enabled():
        # create_graph: a backward that is itself differentiable (attention_backward is not)
        grads = _attention_backward_in_tensor_ops(node, q, k, v, masks, out, lse, g_out, g_lse)
    else:
        grads = dispatch("attention_backward", (q, k, v, out, lse, g_out, g_lse, *masks),
                         node.attrs)
    return (*grads, *(None for _ in masks))


def _attention_backward_in_tensor_ops(node, q, k, v, masks, out, lse, g_out, g_lse):
    """attention_backward's formulas in Tensor ops, over the whole (..., L, S) scores: for
    double backward only."""
    attrs = node.attrs
    scale = attrs["scale"]
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0
    queries = E.mul(q, scale)
    scores = E.matmul(queries, E.mT(k))
    masks = list(masks)
    if attrs["causal"]:
        above = full((q.shape[-2], k.shape[-2]), -math.inf, dtype=scores.dtype, device=q.device)
        scores = E.add(scores, E.triu(above, 1))
    elif attrs["mask"]:
        mask = masks.pop(0)
        if mask.dtype is bool_:
            scores = E.masked_fill(scores, E.logical_not(mask), -math.inf)
        else:
            scores = E.add(scores, mask)
    # rows that attend no key (lse -inf): P = exp(s - inf) = 0
    lse = E.where(E.eq(lse, -math.inf), math.inf, lse.to(scores.dtype))
    probs = E.exp(E.sub(scores, E.unsqueeze(lse, -1)))
    weights = probs
    if attrs["dropout_p"] > 0:
        kept = E.mul(masks.pop(0).to(probs.dtype), 1.0 / (1 - attrs["dropout_p"]))
        weights = E.mul(probs, kept)
    dv = E.matmul(E.mT(weights), g_out)
    dp = E.matmul(g_out, E.mT(v))
    if attrs["dropout_p"] > 0:
        dp = E.mul(dp, kept)
    delta = E.sub(E.sum(E.mul(g_out, out), -1), g_lse.to(out.dtype))
    ds = E.mul(probs, E.sub(dp, E.unsqueeze(delta, -1)))
    return E.mul(E.matmul(ds, k), scale), E.matmul(E.mT(ds), queries), dv


@derivative("lstm_layer", save_outputs=True, optional_grads=(3, 4))
def _lstm_layer(node, g_out, g_h_n, g_c_n, g_gates, g_cells):
    """One lstm_layer_backward op walks the steps in reverse (a GEMM per step for dh) and
    takes the weights' gradients with one GEMM each over all steps. The saved gates and
    cells are outputs only the backward reads: a gradient reaches them only in double
    backward, which, like create_graph, runs the same formulas in Tensor ops."""
    x, h0, c0, w_ih, w_hh, *biases = node.inputs
    out, _h_n, _c_n, gates, cells = node.outputs
    if is_grad_enabled() or g_gates is not None or g_cells is not None:
        grads = _lstm_backward_in_tensor_ops(node, g_out, g_h_n, g_c_n, g_gates, g_cells)
    else:
        g_out = zeros_like(out) if g_out is None else g_out
        g_h_n = zeros_like(h0) if g_h_n is None else g_h_n
        g_c_n = zeros_like(c0) if g_c_n is None else g_c_n
        grads = dispatch("lstm_layer_backward",
                         (x, h0, c0, w_ih, w_hh, out, gates, cells, g_out, g_h_n, g_c_n),
                         node.attrs)
    *grads, g_bias = grads
    return (*grads, *(g_bias for _ in biases))


def _lstm_backward_in_tensor_ops(node, g_out, g_h_n, g_c_n, g_gates, g_cells):
    """lstm_layer_backward's formulas in Tensor ops, step by step, with the gradients of the
    saved gates and cells added where they were made: for double backward."""
    x, h0, c0, w_ih, w_hh, *_ = node.inputs
    out, _h_n, _c_n, gates, cells = node.outputs
    steps, hidden = x.shape[0], w_hh.shape[1]
    visited = list(range(steps - 1, -1, -1) if node.attrs["reverse"] else range(steps))
    dh = zeros_like(h0) if g_h_n is None else g_h_n
    dc = zeros_like(c0) if g_c_n is None else g_c_n
    d_pre = [None] * steps
    for k in range(steps - 1, -1, -1):
        t = visited[k]
        c_prev = c0 if k == 0 else cells[visited[k - 1]]
        i_gate, f_gate, g_gate, o_gate = E.chunk(gates[t], 4, -1)
        if g_out is not None:
            dh = dh + g_out[t]
        squashed = E.tanh(cells[t])
        dc = dc + dh * o_gate * (1 - squashed * squashed)
        if g_cells is not None:
            dc = dc + g_cells[t]
        # the gradients of the activated gates, then through each activation
        d_act = [dc * g_gate, dc * c_prev, dc * i_gate, dh * squashed]
        if g_gates is not None:
            d_act = [d + g for d, g in zip(d_act, E.chunk(g_gates[t], 4, -1))]
        d_i, d_f, d_g, d_o = d_act
        d_pre[t] = E.cat([d_i * i_gate * (1 - i_gate), d_f * f_gate * (1 - f_gate),
                          d_g * (1 - g_gate * g_gate), d_o * o_gate * (1 - o_gate)], -1)
        dc = dc * f_gate
        dh = E.matmul(d_pre[t], w_hh)
    flat = E.reshape(E.stack(d_pre, 0), -1, 4 * hidden)
    h_prev = _previous_states(h0, out, visited)
    return (E.reshape(E.matmul(flat, w_ih), *x.shape), dh, dc,
            E.matmul(E.mT(flat), E.reshape(x, -1, x.shape[-1])),
            E.matmul(E.mT(flat), E.reshape(h_prev, -1, hidden)), E.sum(flat, 0))


def _previous_states(h0, out, visited: list):
    """Each step's h_{t-1}, in the steps' order, stacked: h0 before the first step visited,
    else the output of the step visited before it."""
    before = {t: h0 if k == 0 else out[visited[k - 1]] for k, t in enumerate(visited)}
    return E.stack([before[t] for t in range(len(visited))], 0)


@derivative("gru_layer", save_outputs=True, optional_grads=(2,))
def _gru_layer(node, g_out, g_h_n, g_saved):
    """One gru_layer_backward op walks the steps in reverse (a GEMM per step for dh) and takes
    the weights' gradients with one GEMM each; with create_graph, or a gradient reaching the
    saved gates (double backward), the same formulas in Tensor ops."""
    x, h0, w_ih, w_hh, *biases = node.inputs
    out, _h_n, saved = node.outputs
    if is_grad_enabled() or g_saved is not None:
        grads = _gru_backward_in_tensor_ops(node, g_out, g_h_n, g_saved)
    else:
        g_out = zeros_like(out) if g_out is None else g_out
        g_h_n = zeros_like(h0) if g_h_n is None else g_h_n
        grads = dispatch("gru_layer_backward", (x, h0, w_ih, w_hh, out, saved, g_out, g_h_n),
                         node.attrs)
    *grads, g_biases = grads
    return (*grads, *(E.unbind(g_biases, 0) if biases else ()))


def _gru_backward_in_tensor_ops(node, g_out, g_h_n, g_saved):
    """gru_layer_backward's formulas in Tensor ops, step by step, with the gradients of the
    saved gates added where they were made: for double backward."""
    x, h0, w_ih, w_hh, *_ = node.inputs
    out, _h_n, saved = node.outputs
    steps, hidden = x.shape[0], w_hh.shape[1]
    visited = list(range(steps - 1, -1, -1) if node.attrs["reverse"] else range(steps))
    dh = zeros_like(h0) if g_h_n is None else g_h_n
    d_in, d_hid = [None] * steps, [None] * steps
    for k in range(steps - 1, -1, -1):
        t = visited[k]
        h_prev = h0 if k == 0 else out[visited[k - 1]]
        reset, update, new, h_new_gate = E.chunk(saved[t], 4, -1)
        if g_out is not None:
            dh = dh + g_out[t]
        # the gradients of the activated gates (plus the saved gates' own), then through
        # each activation
        d_update = dh * (h_prev - new)
        d_new = dh * (1 - update)
        if g_saved is not None:
            g_reset, g_update, g_new, g_h_new_gate = E.chunk(g_saved[t], 4, -1)
            d_update, d_new = d_update + g_update, d_new + g_new
        d_new = d_new * (1 - new * new)
        d_reset = d_new * h_new_gate
        d_h_new_gate = d_new * reset
        if g_saved is not None:
            d_reset, d_h_new_gate = d_reset + g_reset, d_h_new_gate + g_h_new_gate
        d_reset = d_reset * reset * (1 - reset)
        d_update = d_update * update * (1 - update)
        d_in[t] = E.cat([d_reset, d_update, d_new], -1)
        d_hid[t] = E.cat([d_reset, d_update, d_h_new_gate], -1)
        dh = dh * update + E.matmul(d_hid[t], w_hh)
    flat_in = E.reshape(E.stack(d_in, 0), -1, 3 * hidden)
    flat_hid = E.reshape(E.stack(d_hid, 0), -1, 3 * hidden)
    h_prev = _previous_states(h0, out, visited)
    return (E.reshape(E.matmul(flat_in, w_ih), *x.shape), dh,
            E.matmul(E.mT(flat_in), E.reshape(x, -1, x.shape[-1])),
            E.matmul(E.mT(flat_hid), E.reshape(h_prev, -1, hidden)),
            E.stack([E.sum(flat_in, 0), E.sum(flat_hid, 0)], 0))
