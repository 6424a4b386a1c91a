"""LLVM IR for an LSTM layer's recurrence over a whole sequence, forward and backward, in one
native call each (runtime/kernels/rnn.py calls them).

The caller has already projected every step's input with one GEMM (the gates' pre-activations
x @ W_ih^T + b_ih + b_hh, (T, B, 4H)); the forward then runs, per step, the GEMM that adds
h_{t-1} @ W_hh^T into that step's gates and a loop over (B, H) that applies the gates
(PyTorch's order: input, forget, cell, output) with the inline sigmoid and hyperbolic tangent
of mathlib.py, writes the activated gates back for the backward, and the step's c and h. The
backward walks the steps in reverse: a loop over (B, H) turns dh and dc into the gates'
gradients before their activations, and the next step's GEMM gives dh_{t-1} = dgates_t @ W_hh.
The weights' gradients are left to the caller, one GEMM over all steps each.

Each step's work is split by hidden unit over the native pool (codegen/llvm/pool.py): a chunk
of units j0:j1 needs only those columns of each gate, of h, c, dh and dc, so a thread runs the
GEMMs for its columns (OpenBLAS on one thread; B rows are too few to share one GEMM well) and
then its units' gates, and the pool's return is the step's barrier (the next step reads all of
h_t, or all of dgates_t). With one thread the chunk is every unit.

Sizes are arguments, not constants, so one compiled function serves every shape of a dtype.
The GEMM is the cblas sgemm/dgemm of numpy's own OpenBLAS (runtime/blas.py found it and
checked its ABI); its integer width is part of the function's name.

Calling convention (runtime/windows.py's tasks): `void name(ptr argv, i64, i64)`, argv a list
of 64-bit words (pointers and sizes, listed by FORWARD_ARGS and BACKWARD_ARGS); the two i64s
are unused. The module calls ember_parallel_for, so the pool's code must be loaded first.
"""

from __future__ import annotations

from llvmlite import ir

from . import mathlib
from .emit import I32, I64, PARALLEL_FOR, POINTER, STORAGE, Callee, counted_loop

ROW_MAJOR, NO_TRANS = 101, 111

# the outer functions' argv words; threads: how many threads share each step (1: no pool)
FORWARD_ARGS = ("gates", "output", "cells", "h0", "c0", "w_hh_t", "gemm", "steps", "batch",
                "hidden", "reverse", "threads")
BACKWARD_ARGS = ("gates", "cells", "c0", "w_hh", "grad_output", "grad_cell", "grad_hidden",
                 "grad_gates", "gemm", "steps", "batch", "hidden", "reverse", "threads")
# one step's words, as the outer function hands them to the step task
_FORWARD_STEP = ("gates", "h_prev", "c_prev", "cells", "out", "w_hh_t", "gemm", "batch",
                 "hidden")
_BACKWARD_STEP = ("gates", "grad_gates", "c_prev", "cells", "grad_out", "dh", "dc", "w_hh",
                  "gemm", "batch", "hidden", "grad_gates_next", "last")
_SIZES = {"steps", "batch", "hidden", "reverse", "threads", "last"}
# hidden units are shared out in blocks of this many (a vector's width or more)
UNIT_BLOCK = 16
_GATES = ("i", "f", "g", "o")


def lstm_name(direction: str, dtype: str, int_bits: int) -> str:
    """The symbol of the forward ("forward") or backward ("backward") function."""
    return f"ember_lstm_{direction}_{dtype}_i{int_bits}"


def _const(n: int) -> ir.Constant:
    return ir.Constant(I64, n)


class _Function:
    """One function `void name(ptr argv, i64 start, i64 end)` with its argv words loaded."""

    def __init__(self, module: ir.Module, name: str, dtype: str, int_bits: int, words: tuple):
        self.module = module
        self.t = STORAGE[dtype]
        self.blas_int = ir.IntType(int_bits)
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [POINTER, I64, I64]),
                         name=name)
        fn.attributes.add("nounwind")
        self.fn = fn
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        argv, self.start, self.end = fn.args
        self.args = {}
        for i, word in enumerate(words):
            slot = self.b.gep(argv, [_const(i)], inbounds=True, source_etype=I64)
            self.args[word] = self.b.load(slot, typ=I64 if word in _SIZES else POINTER)

    def real(self, x: float) -> ir.Constant:
        return ir.Constant(self.t, x)

    def at(self, pointer, index):
        return self.b.gep(pointer, [index], inbounds=True, source_etype=self.t)

    def loop(self, hi, body) -> None:
        """for i in [0, hi): body(i), hi an i64 value."""
        counted_loop(self.b, 0, hi, body)

    def gemm(self, m, n, k, a, lda, b_ptr, ldb, beta: float, c, ldc) -> None:
        """c = a @ b_ptr + beta * c, row-major, sizes i64 values."""
        index, enum = self.blas_int, I32
        fnty = ir.FunctionType(ir.VoidType(), [enum, enum, enum, index, index, index, self.t,
                                               POINTER, index, POINTER, index, self.t, POINTER,
                                               index])
        b = self.b

        def size(v):
            return v if index.width == 64 else b.trunc(v, index)

        b.call(Callee(self.args["gemm"], fnty),
               [ir.Constant(enum, ROW_MAJOR), ir.Constant(enum, NO_TRANS),
                ir.Constant(enum, NO_TRANS), size(m), size(n), size(k), self.real(1.0), a,
                size(lda), b_ptr, size(ldb), self.real(beta), c, size(ldc)])

    def units(self):
        """(j0, n): the hidden units [j0, j0 + n) of this chunk, blocks [start, end)."""
        b = self.b
        hidden = self.args["hidden"]
        j0 = b.mul(self.start, _const(UNIT_BLOCK))
        j1 = b.mul(self.end, _const(UNIT_BLOCK))
        j1 = b.select(b.icmp_signed("<", j1, hidden), j1, hidden)
        return j0, b.sub(j1, j0)

    def rows(self, fn: ir.Function, pointers: list, j0, n) -> None:
        """For each batch row r: fn(pointer + r * width + j0 ..., n), pointers being (base,
        width) pairs (a gate's base already at its block)."""
        b = self.b

        def call(r):
            b.call(fn, [self.at(base, b.add(b.mul(r, width), j0)) for base, width in pointers]
                   + [n])

        self.loop(self.args["batch"], call)


def _row_function(module: ir.Module, name: str, dtype: str, pointers: tuple, body):
    """`void name(ptr noalias <pointers>..., i64 n)` whose loop over j in [0, n) runs
    body(b, load, store, j). Each pointer is a row of one array, or one gate's block of a
    gates row, never overlapping another, so noalias is true and the loop vectorizes without
    runtime alias checks."""
    t = STORAGE[dtype]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [POINTER] * len(pointers) + [I64]),
                     name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    for arg in fn.args[:-1]:
        arg.add_attribute("noalias")
    named = dict(zip(pointers, fn.args))
    entry = fn.append_basic_block("entry")
    header, inner, done = (fn.append_basic_block(n) for n in ("loop", "body", "done"))
    b = ir.IRBuilder(entry)
    b.branch(header)
    b.position_at_end(header)
    j = b.phi(I64)
    j.add_incoming(_const(0), entry)
    b.cbranch(b.icmp_signed("<", j, fn.args[-1]), inner, done)
    b.position_at_end(inner)

    def at(name):
        return b.gep(named[name], [j], inbounds=True, source_etype=t)

    body(b, lambda name: b.load(at(name), typ=t), lambda value, name: b.store(value, at(name)),
         j)
    j.add_incoming(b.add(j, _const(1), flags=("nsw",)), b.block)
    b.branch(header)
    b.position_at_end(done)
    b.ret_void()
    return fn


def _gate_blocks(f: _Function, gates, width):
    """(pointer, width) of each gate's block in a (B, 4H) gates array."""
    hidden = f.args["hidden"]
    return [(f.at(gates, f.b.mul(hidden, _const(k))), width) for k in range(4)]


def _outer(module, name, dtype, int_bits, words, step_words, task, fill) -> None:
    """The function over all steps: for each step, fill(f, t, first, t_prev) gives the step's
    words, which go to `task` over the hidden units' blocks, on the pool when threads > 1."""
    f = _Function(module, name, dtype, int_bits, words)
    b, a = f.b, f.args
    pool = ir.Function(module, ir.FunctionType(ir.VoidType(), [POINTER, POINTER, I64, I64]),
                       name=PARALLEL_FOR)
    step_argv = b.alloca(ir.ArrayType(I64, len(step_words)))
    blocks = b.sdiv(b.add(a["hidden"], _const(UNIT_BLOCK - 1)), _const(UNIT_BLOCK))
    chunks = b.select(b.icmp_signed("<", a["threads"], blocks), a["threads"], blocks)
    shared = b.icmp_signed(">", chunks, _const(1))
    steps, reverse = a["steps"], b.icmp_signed("!=", a["reverse"], _const(0))
    last = b.sub(steps, _const(1))
    backward = "grad_gates" in words

    def one(s):
        # the forward visits 0..T-1, or T-1..0 when reversed; the backward the other way
        up, down = s, b.sub(last, s)
        t = b.select(reverse, up, down) if backward else b.select(reverse, down, up)
        forward_index = b.select(reverse, b.sub(last, t), t)
        first = b.icmp_signed("==", forward_index, _const(0))
        t_prev = b.select(reverse, b.add(t, _const(1)), b.sub(t, _const(1)))
        values = fill(f, s, t, first, t_prev)
        for i, word in enumerate(step_words):
            value = values[word]
            if value.type != I64:
                value = b.ptrtoint(value, I64)
            b.store(value, b.gep(step_argv, [_const(0), _const(i)], inbounds=True))
        with b.if_else(shared) as (then, otherwise):
            with then:
                b.call(pool, [task, step_argv, blocks, chunks])
            with otherwise:
                b.call(task, [step_argv, _const(0), blocks])

    f.loop(steps, one)
    b.ret_void()


def lstm_forward_ir(dtype: str, int_bits: int) -> str:
    """The forward over all steps: gates (T, B, 4H) holds the input projections and gets the
    activated gates; output (T, B, H) and cells (T, B, H) get every step's h and c. w_hh_t is
    W_hh^T (H, 4H), contiguous: OpenBLAS's GEMMs of B rows run ~1.7x faster on it than on
    W_hh read transposed."""
    name = lstm_name("forward", dtype, int_bits)
    module = ir.Module(name=name)

    def cell(b, load, store, j):
        sig, squash = (lambda x: mathlib.emit("sigmoid", b, x)), (
            lambda x: mathlib.emit("tanh", b, x))
        i_gate, f_gate = sig(load("i")), sig(load("f"))
        g_gate, o_gate = squash(load("g")), sig(load("o"))
        c = b.fadd(b.fmul(f_gate, load("c_prev")), b.fmul(i_gate, g_gate))
        for value, gate in zip((i_gate, f_gate, g_gate, o_gate), _GATES):
            store(value, gate)
        store(c, "c")
        store(b.fmul(o_gate, squash(c)), "h")

    row = _row_function(module, name + "_row", dtype, (*_GATES, "c_prev", "c", "h"), cell)
    task = _Function(module, name + "_step", dtype, int_bits, _FORWARD_STEP)
    b, a = task.b, task.args
    batch, hidden = a["batch"], a["hidden"]
    width = b.mul(hidden, _const(4))
    j0, n = task.units()
    with b.if_then(b.icmp_signed(">", n, _const(0))):
        for k in range(4):
            column = b.add(b.mul(hidden, _const(k)), j0)
            task.gemm(batch, n, hidden, a["h_prev"], hidden, task.at(a["w_hh_t"], column),
                      width, 1.0, task.at(a["gates"], column), width)
        task.rows(row, [*_gate_blocks(task, a["gates"], width), (a["c_prev"], hidden),
                        (a["cells"], hidden), (a["out"], hidden)], j0, n)
    b.ret_void()

    def fill(f, s, t, first, t_prev):
        b, a = f.b, f.args
        plane = b.mul(a["batch"], a["hidden"])
        gate_plane = b.mul(plane, _const(4))
        return {"gates": f.at(a["gates"], b.mul(t, gate_plane)),
                "h_prev": b.select(first, a["h0"], f.at(a["output"], b.mul(t_prev, plane))),
                "c_prev": b.select(first, a["c0"], f.at(a["cells"], b.mul(t_prev, plane))),
                "cells": f.at(a["cells"], b.mul(t, plane)),
                "out": f.at(a["output"], b.mul(t, plane)),
                **{w: a[w] for w in ("w_hh_t", "gemm", "batch", "hidden")}}

    _outer(module, name, dtype, int_bits, FORWARD_ARGS, _FORWARD_STEP, task.fn, fill)
    return str(module)


def lstm_backward_ir(dtype: str, int_bits: int) -> str:
    """The backward over all steps, in reverse: grad_output (T, B, H) is each step's dh from
    above, grad_cell (B, H) holds dc after the last step and gets dc0, grad_gates (T, B, 4H)
    gets the gradients of the gates before their activations. grad_hidden (B, H), zeros on
    entry, holds the recurrent dh of each step; dh0 = dgates of the forward's first step @
    W_hh is left to the caller."""
    name = lstm_name("backward", dtype, int_bits)
    module = ir.Module(name=name)

    def cell(b, load, store, j):
        one = ir.Constant(STORAGE[dtype], 1.0)
        i_gate, f_gate, g_gate, o_gate = (load(gate) for gate in _GATES)
        dh = b.fadd(load("grad_h"), load("dh"))
        squashed = mathlib.emit("tanh", b, load("c"))
        dc = b.fadd(load("dc"),
                    b.fmul(b.fmul(dh, o_gate), b.fsub(one, b.fmul(squashed, squashed))))
        d_o = b.fmul(b.fmul(dh, squashed), b.fmul(o_gate, b.fsub(one, o_gate)))
        d_i = b.fmul(b.fmul(dc, g_gate), b.fmul(i_gate, b.fsub(one, i_gate)))
        d_g = b.fmul(b.fmul(dc, i_gate), b.fsub(one, b.fmul(g_gate, g_gate)))
        d_f = b.fmul(b.fmul(dc, load("c_prev")), b.fmul(f_gate, b.fsub(one, f_gate)))
        for value, gate in zip((d_i, d_f, d_g, d_o), _GATES):
            store(value, "d" + gate)
        store(b.fmul(dc, f_gate), "dc")

    row = _row_function(module, name + "_row", dtype,
                        (*_GATES, "c_prev", "c", "grad_h", "dh", "dc",
                         *("d" + gate for gate in _GATES)), cell)
    task = _Function(module, name + "_step", dtype, int_bits, _BACKWARD_STEP)
    b, a = task.b, task.args
    batch, hidden = a["batch"], a["hidden"]
    width = b.mul(hidden, _const(4))
    j0, n = task.units()
    with b.if_then(b.icmp_signed(">", n, _const(0))):
        # this chunk's columns of dh = dgates of the step after (in the forward) @ W_hh
        with b.if_then(b.icmp_signed("==", a["last"], _const(0))):
            task.gemm(batch, n, width, a["grad_gates_next"], width, task.at(a["w_hh"], j0),
                      hidden, 0.0, task.at(a["dh"], j0), hidden)
        task.rows(row, [*_gate_blocks(task, a["gates"], width), (a["c_prev"], hidden),
                        (a["cells"], hidden), (a["grad_out"], hidden), (a["dh"], hidden),
                        (a["dc"], hidden), *_gate_blocks(task, a["grad_gates"], width)], j0, n)
    b.ret_void()

    def fill(f, s, t, first, t_prev):
        b, a = f.b, f.args
        plane = b.mul(a["batch"], a["hidden"])
        gate_plane = b.mul(plane, _const(4))
        reverse = b.icmp_signed("!=", a["reverse"], _const(0))
        t_next = b.select(reverse, b.sub(t, _const(1)), b.add(t, _const(1)))
        last = b.icmp_signed("==", s, _const(0))  # the forward's last step: no step after
        return {"gates": f.at(a["gates"], b.mul(t, gate_plane)),
                "grad_gates": f.at(a["grad_gates"], b.mul(t, gate_plane)),
                "c_prev": b.select(first, a["c0"], f.at(a["cells"], b.mul(t_prev, plane))),
                "cells": f.at(a["cells"], b.mul(t, plane)),
                "grad_out": f.at(a["grad_output"], b.mul(t, plane)),
                "dh": a["grad_hidden"], "dc": a["grad_cell"],
                # the backward's first step has none (its dh is zeros): any valid address
                "grad_gates_next": f.at(a["grad_gates"], b.mul(b.select(last, t, t_next),
                                                               gate_plane)),
                "last": b.zext(last, I64),
                **{w: a[w] for w in ("w_hh", "gemm", "batch", "hidden")}}

    _outer(module, name, dtype, int_bits, BACKWARD_ARGS, _BACKWARD_STEP, task.fn, fill)
    return str(module)
