"""The LSTM layer over a whole sequence, forward and backward, as PyTorch's CPU kernel runs it.

The forward projects the input of every step with one GEMM ((T*B, I) @ W_ih^T, both biases
added once), then per step adds h_{t-1} @ W_hh^T (one GEMM) and applies the gates in
PyTorch's order (input, forget, cell, output): c = f * c_prev + i * g, h = o * tanh(c). It keeps
the activated gates and every step's c for the backward, which walks the steps in reverse
(one GEMM per step for dh_{t-1}) and then takes dx, dW_ih and dW_hh with one GEMM each over
all steps.

On the CPU, for float32 and float64, each pass over the steps is one native call
(codegen/llvm/recurrent.py: the per-step products in register tiles, the gates in inline
polynomials); elsewhere (cupy, no llvmlite, an empty size) the same recurrence runs in
whole-array numpy-API calls per step.
"""

from __future__ import annotations

import numpy as np

from .. import packed_gemm, windows
from ..native import _pool, data_pointer, load_pool
from ..threads import before_blas
from .nn import _linear, _product
from .reduce import _leading_by_gemv, _leading_product
from .registry import kernel

# a pass shares its work over the native pool when it has at least this many multiply-adds
# in its steps' products (B * H * 4H a step): below, waking the pool costs more than a second
# core saves. The batch's rows are shared for the whole pass, a row's recurrence being its
# own; a batch of one row shares each step's hidden units instead, which costs a barrier a
# step, so there a step's product must reach it alone.
PARALLEL_MIN_STEP_WORK = 1 << 20


def _native(xp, *arrays) -> bool:
    """Whether the native passes can take these arrays."""
    return xp is np and windows.available(*arrays) and all(a.size for a in arrays)


# panels up to this size go into the calling thread's buffer (packed_gemm's), which is kept
# for its next GEMM or pass; larger ones (H past 1024 in float32) into an array of the call's
RETAINED_PANEL_BYTES = 1 << 24


def _panels(w_hh: np.ndarray) -> tuple[int, np.ndarray | None]:
    """(the address of the buffer the pass packs W_hh into (codegen/llvm/recurrent.py), the
    array to keep alive through the pass or None): either way 4H * H weights, H padded to
    whole vectors, on a cache line. Nothing else runs on the thread's buffer during the pass."""
    from ...codegen.llvm.tiles import lanes

    hidden = w_hh.shape[1]
    width = lanes(windows.dtype_name(w_hh))
    nbytes = 4 * hidden * -(-hidden // width) * width * w_hh.itemsize
    if nbytes <= RETAINED_PANEL_BYTES:
        return packed_gemm._packed_buffer(nbytes), None
    own = np.empty(nbytes + 64, np.uint8)
    return packed_gemm.line_address(own), own


def _native_pass(kind: str, dtype: str, words: list, steps: int, batch: int,
                 hidden: int) -> None:
    """Run the native forward or backward pass (codegen/llvm/recurrent.py) over the steps:
    the batch's rows shared by the pool's threads, or, for a batch of one row, each step's
    hidden units, when the work is large enough."""
    from ...codegen.llvm.recurrent import lstm_backward_ir, lstm_forward_ir, lstm_name

    make = lstm_forward_ir if kind == "forward" else lstm_backward_ir
    load_pool()  # the pass calls its ember_parallel_for
    threads = _pool.threads() if _pool.parallel_for() is not None else 1
    by_rows = batch > 1
    if batch * hidden * hidden * 4 * (steps if by_rows else 1) < PARALLEL_MIN_STEP_WORK:
        threads = 1
    windows.run_task(lstm_name(kind, dtype), lambda: make(dtype),
                     [*words, threads, int(by_rows)], 1, 0)


def _order(steps: int, reverse: bool):
    return range(steps - 1, -1, -1) if reverse else range(steps)


def _sigmoid(xp, x):
    """x <- sigmoid(x), in place: PyTorch's 1 / (1 + exp(-x)) (see kernels/elementwise.py).
    x is a strided view: numpy 2.4's negative writes it wrong at some strides (elementwise.py's
    negative kernel), multiply does not."""
    xp.multiply(x, -1, out=x)
    xp.exp(x, out=x)
    x += 1
    xp.reciprocal(x, out=x)


def _forward_steps(xp, gates, output, cells, h0, c0, w_hh_t, reverse):
    """The recurrence in numpy-API calls: gates (T, B, 4H) holds the input projections."""
    hidden = w_hh_t.shape[0]
    h, c = h0, c0
    recurrent = xp.empty(gates.shape[1:], gates.dtype)
    for t in _order(gates.shape[0], reverse):
        g = gates[t]
        g += xp.matmul(h, w_hh_t, out=recurrent)
        _sigmoid(xp, g[:, : 2 * hidden])
        _sigmoid(xp, g[:, 3 * hidden:])
        cell_gate = g[:, 2 * hidden: 3 * hidden]
        xp.tanh(cell_gate, out=cell_gate)
        c_new, h_new = cells[t], output[t]
        xp.multiply(g[:, hidden: 2 * hidden], c, out=c_new)
        c_new += g[:, :hidden] * cell_gate
        xp.tanh(c_new, out=h_new)
        h_new *= g[:, 3 * hidden:]
        h, c = h_new, c_new


@kernel("lstm_layer")
def _lstm_layer(xp, x, h0, c0, w_ih, w_hh, *biases, reverse):
    steps, batch, features = x.shape
    hidden = w_hh.shape[1]
    if xp is np:
        before_blas()
    x, h0, c0, w_hh = (xp.ascontiguousarray(a) for a in (x, h0, c0, w_hh))
    # both biases added as the product is stored (nn.py's linear), not in a pass of their own
    gates = _linear(xp, x.reshape(steps * batch, features), w_ih,
                    biases[0] + biases[1] if biases else None)
    gates = gates.reshape(steps, batch, 4 * hidden)
    output = xp.empty((steps, batch, hidden), x.dtype)
    cells = xp.empty((steps, batch, hidden), x.dtype)
    if not _native(xp, gates, h0, c0, w_hh):
        _forward_steps(xp, gates, output, cells, h0, c0, w_hh.T, reverse)
    else:
        panels, _kept = _panels(w_hh)
        _native_pass("forward", windows.dtype_name(x),
                     [data_pointer(gates), data_pointer(output), data_pointer(cells),
                      data_pointer(h0), data_pointer(c0), data_pointer(w_hh), panels, steps,
                      batch, hidden, int(reverse)], steps, batch, hidden)
    if steps:
        last = 0 if reverse else steps - 1
        h_n, c_n = output[last].copy(), cells[last].copy()
    else:
        h_n, c_n = h0.copy(), c0.copy()
    return output, h_n, c_n, gates, cells


def _backward_steps(xp, gates, cells, c0, w_hh, grad_output, dc, dh, grad_gates, reverse):
    """The reverse recurrence in numpy-API calls (see codegen/llvm/recurrent.py)."""
    hidden = w_hh.shape[1]
    steps = gates.shape[0]
    squashed = xp.empty_like(dc)
    for t in _order(steps, not reverse):
        forward_index = steps - 1 - t if reverse else t
        c_prev = c0 if forward_index == 0 else cells[t + 1 if reverse else t - 1]
        g = gates[t]
        i_gate, f_gate = g[:, :hidden], g[:, hidden: 2 * hidden]
        g_gate, o_gate = g[:, 2 * hidden: 3 * hidden], g[:, 3 * hidden:]
        d = grad_gates[t]
        dh += grad_output[t]
        xp.tanh(cells[t], out=squashed)
        # d_o = dh * tanh(c) * o * (1 - o)
        d_o = xp.multiply(dh, squashed, out=d[:, 3 * hidden:])
        d_o *= o_gate * (1 - o_gate)
        # dc += dh * o * (1 - tanh(c)^2)
        squashed *= squashed
        xp.subtract(1, squashed, out=squashed)
        squashed *= o_gate
        squashed *= dh
        dc += squashed
        xp.multiply(dc, g_gate * (i_gate * (1 - i_gate)), out=d[:, :hidden])
        xp.multiply(dc, c_prev * (f_gate * (1 - f_gate)), out=d[:, hidden: 2 * hidden])
        xp.multiply(dc, i_gate * (1 - g_gate * g_gate), out=d[:, 2 * hidden: 3 * hidden])
        dc *= f_gate
        xp.matmul(d, w_hh, out=dh)


@kernel("lstm_layer_backward")
def _lstm_layer_backward(xp, x, h0, c0, w_ih, w_hh, output, gates, cells, grad_output,
                         grad_h_n, grad_c_n, *, reverse):
    steps, batch, features = x.shape
    hidden = w_hh.shape[1]
    if xp is np:
        before_blas()
    gates, cells, c0, w_hh = (xp.ascontiguousarray(a) for a in (gates, cells, c0, w_hh))
    # each step's dh from above: the output's gradient, the last step's plus h_n's
    grad_output = xp.array(xp.broadcast_to(grad_output, output.shape), copy=True, order="C")
    if steps:
        grad_output[0 if reverse else steps - 1] += grad_h_n
    dc = xp.array(xp.broadcast_to(grad_c_n, c0.shape), copy=True, order="C")
    dh = xp.zeros(c0.shape, x.dtype)
    grad_gates = xp.empty(gates.shape, x.dtype)
    if not _native(xp, gates, cells, c0, w_hh, grad_output, dc, dh, grad_gates):
        _backward_steps(xp, gates, cells, c0, w_hh, grad_output, dc, dh, grad_gates, reverse)
    else:
        panels, _kept = _panels(w_hh)
        _native_pass("backward", windows.dtype_name(x),
                     [data_pointer(gates), data_pointer(cells), data_pointer(c0),
                      data_pointer(w_hh), panels, data_pointer(grad_output),
                      data_pointer(dc), data_pointer(dh), data_pointer(grad_gates), steps,
                      batch, hidden, int(reverse)], steps, batch, hidden)
        # dh0: the gradient of the forward's first step's h_prev
        dh = xp.matmul(grad_gates[steps - 1 if reverse else 0], w_hh)
    flat = grad_gates.reshape(steps * batch, 4 * hidden)
    grad_x = _product(xp, flat, w_ih).reshape(steps, batch, features)
    grad_w_ih = _product(xp, flat.T, x.reshape(steps * batch, features))
    # h_{t-1} of every step: the output shifted by one step, h0 before the first
    if steps:
        first, rest, before = ((steps - 1, slice(0, steps - 1), slice(1, steps)) if reverse
                               else (0, slice(1, steps), slice(0, steps - 1)))
        grad_w_hh = xp.matmul(grad_gates[first].T, h0)
        if steps > 1:
            grad_w_hh += _product(xp, grad_gates[rest].reshape(-1, 4 * hidden).T,
                                  output[before].reshape(-1, hidden))
    else:
        grad_w_hh = xp.zeros(w_hh.shape, x.dtype)
    return grad_x, dh, dc, grad_w_ih, grad_w_hh, _bias_gradient(xp, flat)


# -- the GRU layer ------------------------------------------------------------------------------
# As PyTorch's CPU cell: r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z),
# n = tanh(x_n + r * h_n), h' = n + z * (h - n), where x_* are the input's projections (one
# GEMM over all steps, b_ih added) and h_* the hidden state's (a GEMM a step, b_hh added): the
# stepped layer's operations in its order, so both give the same numbers. The forward keeps r,
# z, n and h_n of every step, (T, B, 4H), for the backward.


def _gru_forward_steps(xp, projected, output, saved, h0, w_hh, b_hh, reverse):
    hidden = w_hh.shape[1]
    w_hh_t = w_hh.T
    recurrent = xp.empty(projected.shape[1:], projected.dtype)
    h = h0
    for t in _order(projected.shape[0], reverse):
        x_proj, s = projected[t], saved[t]
        xp.matmul(h, w_hh_t, out=recurrent)
        if b_hh is not None:
            recurrent += b_hh
        reset, update = s[:, :hidden], s[:, hidden: 2 * hidden]
        new, h_new_gate = s[:, 2 * hidden: 3 * hidden], s[:, 3 * hidden:]
        xp.add(x_proj[:, :hidden], recurrent[:, :hidden], out=reset)
        _sigmoid(xp, reset)
        xp.add(x_proj[:, hidden: 2 * hidden], recurrent[:, hidden: 2 * hidden], out=update)
        _sigmoid(xp, update)
        h_new_gate[...] = recurrent[:, 2 * hidden:]
        xp.multiply(reset, h_new_gate, out=new)
        xp.add(x_proj[:, 2 * hidden:], new, out=new)
        xp.tanh(new, out=new)
        h_next = output[t]
        xp.subtract(h, new, out=h_next)
        xp.multiply(update, h_next, out=h_next)
        h_next += new
        h = h_next


@kernel("gru_layer")
def _gru_layer(xp, x, h0, w_ih, w_hh, *biases, reverse):
    steps, batch, features = x.shape
    hidden = w_hh.shape[1]
    if xp is np:
        before_blas()
    x, h0 = (xp.ascontiguousarray(a) for a in (x, h0))
    projected = _linear(xp, x.reshape(steps * batch, features), w_ih,
                        biases[0] if biases else None).reshape(steps, batch, 3 * hidden)
    output = xp.empty((steps, batch, hidden), x.dtype)
    saved = xp.empty((steps, batch, 4 * hidden), x.dtype)
    _gru_forward_steps(xp, projected, output, saved, h0, w_hh, biases[1] if biases else None,
                       reverse)
    h_n = output[0 if reverse else steps - 1].copy() if steps else h0.copy()
    return output, h_n, saved


@kernel("gru_layer_backward")
def _gru_layer_backward(xp, x, h0, w_ih, w_hh, output, saved, grad_output, grad_h_n, *,
                        reverse):
    steps, batch, features = x.shape
    hidden = w_hh.shape[1]
    if xp is np:
        before_blas()
    w_hh = xp.ascontiguousarray(w_hh)
    # each step's gradient from above: the output's, the last step's plus h_n's
    grad_output = xp.array(xp.broadcast_to(grad_output, output.shape), copy=True, order="C")
    if steps:
        grad_output[0 if reverse else steps - 1] += grad_h_n
    dh = xp.zeros(h0.shape, x.dtype)
    # the gradients of the input's and the hidden state's projections, (T, B, 3H) each: they
    # share the reset and update blocks and differ in the new gate's
    grad_input_proj = xp.empty((steps, batch, 3 * hidden), x.dtype)
    grad_hidden_proj = xp.empty((steps, batch, 3 * hidden), x.dtype)
    visited = list(_order(steps, reverse))
    for k in range(steps - 1, -1, -1):
        t = visited[k]
        h_prev = h0 if k == 0 else output[visited[k - 1]]
        s = saved[t]
        reset, update = s[:, :hidden], s[:, hidden: 2 * hidden]
        new, h_new_gate = s[:, 2 * hidden: 3 * hidden], s[:, 3 * hidden:]
        dh += grad_output[t]
        d_in, d_hid = grad_input_proj[t], grad_hidden_proj[t]
        d_update = xp.subtract(h_prev, new, out=d_in[:, hidden: 2 * hidden])
        d_update *= dh
        d_update *= update * (1 - update)
        d_new = xp.multiply(dh, 1 - update, out=d_in[:, 2 * hidden:])
        d_new *= 1 - new * new
        d_reset = xp.multiply(d_new, h_new_gate, out=d_in[:, :hidden])
        d_reset *= reset * (1 - reset)
        d_hid[:, : 2 * hidden] = d_in[:, : 2 * hidden]
        xp.multiply(d_new, reset, out=d_hid[:, 2 * hidden:])
        dh *= update
        dh += xp.matmul(d_hid, w_hh)
    flat_in = grad_input_proj.reshape(steps * batch, 3 * hidden)
    flat_hid = grad_hidden_proj.reshape(steps * batch, 3 * hidden)
    grad_x = _product(xp, flat_in, w_ih).reshape(steps, batch, features)
    grad_w_ih = _product(xp, flat_in.T, x.reshape(steps * batch, features))
    # h_{t-1} of every step: the output shifted by one step, h0 before the first
    if steps:
        h_prev = xp.empty_like(output)
        if reverse:
            h_prev[steps - 1], h_prev[: steps - 1] = h0, output[1:]
        else:
            h_prev[0], h_prev[1:] = h0, output[: steps - 1]
        grad_w_hh = _product(xp, flat_hid.T, h_prev.reshape(steps * batch, hidden))
    else:
        grad_w_hh = xp.zeros(w_hh.shape, x.dtype)
    grad_biases = xp.stack([_bias_gradient(xp, flat_in), _bias_gradient(xp, flat_hid)])
    return grad_x, dh, grad_w_ih, grad_w_hh, grad_biases


def _bias_gradient(xp, flat):
    """flat.sum(0), as a linear layer's bias gradient: ones @ flat on the CPU (reduce.py),
    22 us against numpy's 68 for the word-language model's (700, 800)."""
    if xp is np and _leading_product(flat, (0,)):
        return _leading_by_gemv(flat, (0,), False)
    return flat.sum(0)
