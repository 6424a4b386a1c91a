"""LLVM IR for an LSTM layer's recurrence over a whole sequence, forward and backward, in one
native call each (runtime/kernels/rnn.py calls them).

The caller has already projected every step's input with one GEMM (the gates' pre-activations
x @ W_ih^T + b_ih + b_hh, (T, B, 4H)); the forward then runs, per step, one GEMM that adds
h_{t-1} @ W_hh^T into that step's gates and one loop over (B, H) that applies the gates
(PyTorch's order: input, forget, cell, output) with the inline sigmoid and hyperbolic tangent
of mathlib.py, writes the activated gates back for the backward, and the step's c and h. The
backward walks the steps in reverse: one loop over (B, H) turns dh and dc into the gates'
gradients before their activations, then one GEMM gives dh_{t-1} = dgates_t @ W_hh. The
weights' gradients are left to the caller, one GEMM over all steps each.

Sizes are arguments, not constants, so one compiled function serves every shape of a dtype.
The GEMM is the cblas sgemm/dgemm of numpy's own OpenBLAS (runtime/blas.py found it and
checked its ABI); its integer width is part of the function's name.

Calling convention (runtime/windows.py's tasks): `void name(ptr argv, i64, i64)`, argv a list
of 64-bit words (pointers and sizes, listed by FORWARD_ARGS and BACKWARD_ARGS); the two i64s
are unused.
"""

from __future__ import annotations

from llvmlite import ir

from . import mathlib
from .emit import I32, I64, POINTER, STORAGE

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

FORWARD_ARGS = ("gates", "output", "cells", "h0", "c0", "w_hh_t", "gemm", "steps", "batch",
                "hidden", "reverse")
BACKWARD_ARGS = ("gates", "cells", "c0", "w_hh", "grad_output", "grad_cell", "grad_hidden",
                 "grad_gates", "gemm", "steps", "batch", "hidden", "reverse")


def lstm_name(direction: str, dtype: str, int_bits: int) -> str:
    """The symbol of the forward ("forward") or backward ("backward") function."""
    return f"ember_lstm_{direction}_{dtype}_i{int_bits}"


class _Emitter:
    def __init__(self, name: str, dtype: str, int_bits: int, args: tuple):
        self.module = ir.Module(name=name)
        self.t = STORAGE[dtype]
        self.blas_int = ir.IntType(int_bits)
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [POINTER, I64, I64]),
                         name=name)
        fn.attributes.add("nounwind")
        self.fn = fn
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        argv = fn.args[0]
        self.args = {}
        for i, arg in enumerate(args):
            slot = self.b.gep(argv, [ir.Constant(I64, i)], inbounds=True, source_etype=I64)
            is_pointer = arg not in ("steps", "batch", "hidden", "reverse")
            self.args[arg] = self.b.load(slot, typ=POINTER if is_pointer else I64)

    def const(self, n: int) -> ir.Constant:
        return ir.Constant(I64, n)

    def real(self, x: float) -> ir.Constant:
        return ir.Constant(self.t, x)

    def at(self, pointer, index):
        return self.b.gep(pointer, [index], inbounds=True, source_etype=self.t)

    def load(self, pointer, index):
        return self.b.load(self.at(pointer, index), typ=self.t)

    def store(self, value, pointer, index) -> None:
        self.b.store(value, self.at(pointer, index))

    def loop(self, hi, body) -> None:
        """for i in [0, hi): body(i), hi an i64 value."""
        b = self.b
        pre = b.block
        header = b.append_basic_block("loop")
        inner = b.append_basic_block("body")
        done = b.append_basic_block("done")
        b.branch(header)
        b.position_at_end(header)
        i = b.phi(I64)
        i.add_incoming(self.const(0), pre)
        b.cbranch(b.icmp_signed("<", i, hi), inner, done)
        b.position_at_end(inner)
        body(i)
        i.add_incoming(b.add(i, self.const(1), flags=("nsw",)), b.block)
        b.branch(header)
        b.position_at_end(done)

    def gemm(self, m, n, k, a, lda, b_ptr, ldb, trans_b: bool, beta: float, c, ldc) -> None:
        """c = a @ (b_ptr^T if trans_b else b_ptr) + beta * c, row-major, sizes i64 values."""
        index, enum = self.blas_int, I32
        fnty = ir.FunctionType(ir.VoidType(), [enum, enum, enum, index, index, index, self.t,
                                               POINTER, index, POINTER, index, self.t, POINTER,
                                               index])
        b = self.b

        def size(v):
            return v if index.width == 64 else b.trunc(v, index)

        callee = _Callee(self.args["gemm"], fnty)
        b.call(callee, [ir.Constant(enum, ROW_MAJOR), ir.Constant(enum, NO_TRANS),
                        ir.Constant(enum, TRANS if trans_b else NO_TRANS), size(m), size(n),
                        size(k), self.real(1.0), a, size(lda), b_ptr, size(ldb),
                        self.real(beta), c, size(ldc)])

    def steps(self, body, backward: bool) -> None:
        """body(t, first, t_prev) over the steps in the order the pass visits them: t the
        step, first whether it is the forward's first step (whose h and c before it are h0
        and c0), t_prev the step the forward visited before t."""
        b, a = self.b, self.args
        steps, reverse = a["steps"], b.icmp_signed("!=", a["reverse"], self.const(0))
        last = b.sub(steps, self.const(1))

        def one(s):
            # the forward visits 0..T-1, or T-1..0 when reversed; the backward the other way
            up, down = s, b.sub(last, s)
            t = b.select(reverse, up, down) if backward else b.select(reverse, down, up)
            forward_index = b.select(reverse, b.sub(last, t), t)
            first = b.icmp_signed("==", forward_index, self.const(0))
            t_prev = b.select(reverse, b.add(t, self.const(1)), b.sub(t, self.const(1)))
            body(t, first, t_prev)

        self.loop(steps, one)

    def row_function(self, name: str, pointers: tuple, body) -> ir.Function:
        """A function `void name(ptr noalias <pointers>..., i64 hidden)` whose loop over
        j in [0, hidden) runs body(row, j), row a _Row of its arguments. Each pointer is a
        row of one array, or one gate's block of a gates row, never overlapping another, so
        noalias is true and the loop vectorizes without runtime alias checks."""
        fnty = ir.FunctionType(ir.VoidType(), [POINTER] * len(pointers) + [I64])
        fn = ir.Function(self.module, fnty, name=f"{self.fn.name}_{name}")
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        for arg in fn.args[:-1]:
            arg.add_attribute("noalias")
        outer = self.b
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        row = _Row(self, dict(zip(pointers, fn.args)))
        self.loop(fn.args[-1], lambda j: body(row, j))
        self.b.ret_void()
        self.b = outer
        return fn

    def rows(self, fn: ir.Function, pointers: list) -> None:
        """for each batch row r: fn(pointer_k + r * width_k ..., hidden), pointers being
        (base, width) pairs; width 4H bases take a gate's offset k * H already."""
        b = self.b
        hidden = self.args["hidden"]

        def call(r):
            b.call(fn, [self.at(base, b.mul(r, width)) for base, width in pointers]
                   + [hidden])

        self.loop(self.args["batch"], call)

    def done(self) -> str:
        self.b.ret_void()
        return str(self.module)


class _Callee:
    """A function pointer loaded as an opaque `ptr`, callable with llvmlite's builder."""

    def __init__(self, value, function_type):
        self.value = value
        self.function_type = function_type
        self.type = value.type

    def get_reference(self):
        return self.value.get_reference()


class _Row:
    """The arguments of a row function, loaded and stored at column j."""

    def __init__(self, e: _Emitter, pointers: dict):
        self.e, self.pointers = e, pointers

    def load(self, name: str, j):
        return self.e.load(self.pointers[name], j)

    def store(self, value, name: str, j) -> None:
        self.e.store(value, self.pointers[name], j)

    def sigmoid(self, x):
        return mathlib.emit("sigmoid", self.e.b, x)

    def squash(self, x):
        return mathlib.emit("tanh", self.e.b, x)


_GATES = ("i", "f", "g", "o")


def _gate_rows(e: _Emitter, gates, width):
    """(pointer, width) of each gate's block in a (B, 4H) gates array."""
    hidden = e.args["hidden"]
    return [(e.at(gates, e.b.mul(hidden, e.const(k))), width) for k in range(4)]


def lstm_forward_ir(dtype: str, int_bits: int) -> str:
    """The forward over all steps: gates (T, B, 4H) holds the input projections and gets the
    activated gates; output (T, B, H) and cells (T, B, H) get every step's h and c. w_hh_t is
    W_hh^T (H, 4H), contiguous: OpenBLAS's small GEMMs (B rows) run ~1.7x faster on it than
    on W_hh read transposed."""
    e = _Emitter(lstm_name("forward", dtype, int_bits), dtype, int_bits, FORWARD_ARGS)

    def cell(r: _Row, j):
        b = e.b
        i_gate, f_gate = r.sigmoid(r.load("i", j)), r.sigmoid(r.load("f", j))
        g_gate, o_gate = r.squash(r.load("g", j)), r.sigmoid(r.load("o", j))
        c = b.fadd(b.fmul(f_gate, r.load("c_prev", j)), b.fmul(i_gate, g_gate))
        for value, name in zip((i_gate, f_gate, g_gate, o_gate), _GATES):
            r.store(value, name, j)
        r.store(c, "c", j)
        r.store(b.fmul(o_gate, r.squash(c)), "h", j)

    row = e.row_function("row", (*_GATES, "c_prev", "c", "h"), cell)
    b, a = e.b, e.args
    batch, hidden = a["batch"], a["hidden"]
    width = b.mul(hidden, e.const(4))
    plane, gate_plane = b.mul(batch, hidden), b.mul(batch, width)

    def step(t, first, t_prev):
        gates = e.at(a["gates"], b.mul(t, gate_plane))
        h_prev = b.select(first, a["h0"], e.at(a["output"], b.mul(t_prev, plane)))
        c_prev = b.select(first, a["c0"], e.at(a["cells"], b.mul(t_prev, plane)))
        e.gemm(batch, width, hidden, h_prev, hidden, a["w_hh_t"], width, False, 1.0, gates,
               width)
        e.rows(row, [*_gate_rows(e, gates, width), (c_prev, hidden),
                     (e.at(a["cells"], b.mul(t, plane)), hidden),
                     (e.at(a["output"], b.mul(t, plane)), hidden)])

    e.steps(step, backward=False)
    return e.done()


def lstm_backward_ir(dtype: str, int_bits: int) -> str:
    """The backward over all steps, in reverse: grad_output (T, B, H) is each step's dh from
    above, grad_cell (B, H) holds dc after the last step and gets dc0, grad_hidden (B, H)
    (zeros on entry) the recurrent dh and at the end dh0; grad_gates (T, B, 4H) gets the
    gradients of the gates before their activations."""
    e = _Emitter(lstm_name("backward", dtype, int_bits), dtype, int_bits, BACKWARD_ARGS)
    one = e.real(1.0)

    def cell(r: _Row, j):
        b = e.b
        i_gate, f_gate, g_gate, o_gate = (r.load(name, j) for name in _GATES)
        dh = b.fadd(r.load("grad_h", j), r.load("dh", j))
        squashed = r.squash(r.load("c", j))
        dc = b.fadd(r.load("dc", j),
                    b.fmul(b.fmul(dh, o_gate), b.fsub(one, b.fmul(squashed, squashed))))
        d_o = b.fmul(b.fmul(dh, squashed), b.fmul(o_gate, b.fsub(one, o_gate)))
        d_i = b.fmul(b.fmul(dc, g_gate), b.fmul(i_gate, b.fsub(one, i_gate)))
        d_g = b.fmul(b.fmul(dc, i_gate), b.fsub(one, b.fmul(g_gate, g_gate)))
        d_f = b.fmul(b.fmul(dc, r.load("c_prev", j)), b.fmul(f_gate, b.fsub(one, f_gate)))
        for value, name in zip((d_i, d_f, d_g, d_o), _GATES):
            r.store(value, "d" + name, j)
        r.store(b.fmul(dc, f_gate), "dc", j)

    row = e.row_function("row", (*_GATES, "c_prev", "c", "grad_h", "dh", "dc",
                                 *("d" + name for name in _GATES)), cell)
    b, a = e.b, e.args
    batch, hidden = a["batch"], a["hidden"]
    width = b.mul(hidden, e.const(4))
    plane, gate_plane = b.mul(batch, hidden), b.mul(batch, width)

    def step(t, first, t_prev):
        gates = e.at(a["gates"], b.mul(t, gate_plane))
        grad_gates = e.at(a["grad_gates"], b.mul(t, gate_plane))
        c_prev = b.select(first, a["c0"], e.at(a["cells"], b.mul(t_prev, plane)))
        e.rows(row, [*_gate_rows(e, gates, width), (c_prev, hidden),
                     (e.at(a["cells"], b.mul(t, plane)), hidden),
                     (e.at(a["grad_output"], b.mul(t, plane)), hidden),
                     (a["grad_hidden"], hidden), (a["grad_cell"], hidden),
                     *_gate_rows(e, grad_gates, width)])
        e.gemm(batch, hidden, width, grad_gates, width, a["w_hh"], hidden, False, 0.0,
               a["grad_hidden"], hidden)

    e.steps(step, backward=True)
    return e.done()
