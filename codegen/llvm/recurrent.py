"""LLVM IR for an LSTM layer's recurrence over a whole sequence, forward and backward, in one
native call each (runtime/kernels/rnn.py calls them).

The caller has already projected every step's input with one GEMM (the gates' pre-activations
x @ W_ih^T + b_ih + b_hh, (T, B, 4H)); the forward then runs, per step, the product that adds
h_{t-1} @ W_hh^T into that step's gates and a loop over (B, H) that applies the gates
(PyTorch's order: input, forget, cell, output) with the inline sigmoid and hyperbolic tangent
of mathlib.py, writes the activated gates back for the backward, and the step's c and h. The
backward walks the steps in reverse: a loop over (B, H) turns dh and dc into the gates'
gradients before their activations, and the next step's product gives dh_{t-1} = dgates_t @
W_hh. The weights' gradients are left to the caller, one GEMM over all steps each.

The per-step products are this module's register tiles, not BLAS calls. A step's product is
small ((B, H) @ (H, 4H)) and its weight the same at every step, yet each OpenBLAS call packed
its slice of W_hh again: at B = 20, H = 200 (the word language model) a forward step took
~55 us on two threads, a backward step ~81, the second thread gaining 1.25-1.4x. A pass now
first packs W_hh into `panels` (a pool job over unit blocks), one panel per block of `lanes`
hidden units, the lanes past H zero, aligned:

- forward: [i][k][lanes], depth i, then gate k: a depth's four gates of the block's units are
  one 256-byte run (float32), gathered down W_hh's columns;
- backward: [k][lanes], the 4H gates deep, from W_hh's rows.

A forward tile is MR_FORWARD rows x the four gates of one unit block, a backward tile
MR_BACKWARD rows x two unit blocks: per depth, one broadcast of the left operand (h_{t-1}, or
the step after's dgates) per row, one aligned load per panel vector, a fused multiply-add per
accumulator. The tiles' sums go into the gates (forward) or dh (backward), and the gate loop
runs over the block's units.

The pool shares a pass one of two ways (`split`):

- 1, the batch's rows: each thread runs every step for its rows, since a row's recurrence
  reads only that row of h, c and the gates; the threads never wait for each other, and only
  the panels pass between the cores. B = 20, H = 200 on two threads: ~34 us a forward step
  and ~45 a backward one.
- 0, each step's unit blocks (a batch of one row): a thread runs its blocks' tiles and gates,
  and the pool's return is the step's barrier (the next step reads all of h_t, or all of
  dgates_t). The step's left operand is prefetched first: the other core wrote half of it.

With one thread the pass runs on the caller alone. Sizes are arguments, not constants, so one
compiled function serves every shape of a dtype.

Calling convention (runtime/windows.py's tasks): `void name(ptr argv, i64, i64)`, argv a list
of 64-bit words (pointers and sizes, listed by FORWARD_ARGS and BACKWARD_ARGS); the two i64s
are unused. The module calls ember_parallel_for, so the pool's code must be loaded first.
"""

from __future__ import annotations

from llvmlite import ir

from . import mathlib
from .emit import I32, I64, PARALLEL_FOR, POINTER, STORAGE, counted_loop
from .gemm import _Task
from .tiles import VECTOR_BYTES, lanes

# the outer functions' argv words: panels, the buffer W_hh is packed into; threads, how many
# threads share the pass (1: no pool); split, 1 to share the batch's rows, 0 each step's units
FORWARD_ARGS = ("gates", "output", "cells", "h0", "c0", "w_hh", "panels", "steps", "batch",
                "hidden", "reverse", "threads", "split")
BACKWARD_ARGS = ("gates", "cells", "c0", "w_hh", "panels", "grad_output", "grad_cell",
                 "grad_hidden", "grad_gates", "steps", "batch", "hidden", "reverse", "threads",
                 "split")
# one step's words, as the outer function hands them to the step task
_FORWARD_STEP = ("gates", "h_prev", "c_prev", "cells", "out", "panels", "batch", "hidden")
_BACKWARD_STEP = ("gates", "grad_gates", "c_prev", "cells", "grad_out", "dh", "dc", "panels",
                  "batch", "hidden", "grad_gates_next", "last")
_SIZES = {"steps", "batch", "hidden", "reverse", "threads", "split", "last"}
# a step word's row, in hidden sizes (the words not named hold no rows: panels, sizes)
_ROWS = {"gates": 4, "grad_gates": 4, "grad_gates_next": 4, "h_prev": 1, "c_prev": 1,
         "cells": 1, "out": 1, "grad_out": 1, "dh": 1, "dc": 1}
# rows of a tile: the forward's 4 gates x 6 rows and the backward's 2 unit blocks x 12 rows of
# accumulators leave registers for the panels' vectors and a broadcast (AVX-512 has 32)
MR_FORWARD = 6
MR_BACKWARD = 12
_GATES = ("i", "f", "g", "o")


def lstm_name(direction: str, dtype: str) -> str:
    """The symbol of the forward ("forward") or backward ("backward") function."""
    return f"ember_lstm_{direction}_{dtype}"


def _const(n: int) -> ir.Constant:
    return ir.Constant(I64, n)


class _Step(_Task):
    """A task `void name(ptr argv, i64 start, i64 end)`, its argv words by name (pointers as
    pointers): a step's over unit blocks [start, end), the packing's, the passes'."""

    def __init__(self, module: ir.Module, name: str, dtype: str, words: tuple):
        super().__init__(module, name, dtype, len(words))
        self.fn.attributes.add("nounwind")
        self.args = {w: v if w in _SIZES else self.pointer(v)
                     for w, v in zip(words, self.words)}

    def each(self, lo, hi, body) -> None:
        """for i in [lo, hi): body(i)."""
        counted_loop(self.b, lo, hi, body)

    def prefetch(self, base, count, locality: int) -> None:
        """Prefetch count elements from base, a cache line at a time. Where a step's units
        are shared, its left operand (h_{t-1}, or the step after's dgates) was written by
        every thread in the step before: the tiles' broadcasts read it a scalar at a time, in
        a few rows' streams, so each line the other core held cost a transfer in series;
        prefetched at once, the transfers overlap (B = 20, H = 200, two threads sharing
        units: 39 us a forward step against 42, 43 a backward one against 47)."""
        b = self.b
        prefetch = self.intrinsic("llvm.prefetch.p0", ir.VoidType(), [POINTER, I32, I32, I32])
        per_line = 64 // self.size
        lines = b.sdiv(b.add(count, _const(per_line - 1)), _const(per_line))
        self.each(_const(0), lines, lambda i: b.call(prefetch, [
            self.at(base, b.mul(i, _const(per_line))), ir.Constant(I32, 0),
            ir.Constant(I32, locality), ir.Constant(I32, 1)]))

    def blocks(self, body, span: int = 1) -> None:
        """body(u, count, j, n, masks) over the unit blocks of the chunk, `span` (1 or 2)
        blocks at a time, then the one left: the first block u, the blocks' first unit j, their n
        units below H and each block's mask of those lanes."""
        b, hidden = self.b, self.args["hidden"]

        def blocks(u, count):
            j = b.mul(u, _const(self.width))
            left = b.sub(hidden, j)
            n = b.select(b.icmp_signed("<", left, _const(count * self.width)), left,
                         _const(count * self.width))
            masks = [self.lanes_below(b.add(j, _const(v * self.width)), hidden)
                     for v in range(count)]
            body(u, count, j, n, masks)

        groups = b.sdiv(b.sub(self.end, self.start), _const(span))
        self.each(_const(0), groups,
                  lambda g: blocks(b.add(self.start, b.mul(g, _const(span))), span))
        if span == 2:  # the last block, alone
            tail = b.add(self.start, b.mul(groups, _const(span)))
            with b.if_then(b.icmp_signed("<", tail, self.end)):
                blocks(tail, 1)

    def row_tiles(self, most: int, tile) -> None:
        """tile(first_row, rows) over the batch: whole tiles of `most` rows in a loop, then
        one of the remaining rows (a tile's rows are a constant: one variant per count)."""
        b, batch = self.b, self.args["batch"]
        whole = b.sdiv(batch, _const(most))
        self.each(_const(0), whole, lambda r: tile(b.mul(r, _const(most)), most))
        first, left = b.mul(whole, _const(most)), b.srem(batch, _const(most))
        for rows in range(1, most):
            with b.if_then(b.icmp_signed("==", left, _const(rows))):
                tile(first, rows)

    def panel(self, block, size):
        """Where unit block `block`'s panel starts, each `size` vectors long."""
        return self.at(self.args["panels"], self.b.mul(block, self.b.mul(size,
                                                                         _const(self.width))))

    def product(self, rows: int, columns: list, stride, depth, left, left_stride,
                store) -> None:
        """acc[r][v] = sum over d < depth of left[r * left_stride + d] * columns[v][d *
        stride ...], one vector each, then store(r, v, acc): the left operand's rows
        broadcast, the panels' vectors loaded (aligned)."""
        b = self.b
        vectors = len(columns)

        def step(d, acc):
            offset = b.mul(d, stride)
            ws = [b.load(self.at(base, offset), typ=self.vec, align=VECTOR_BYTES)
                  for base in columns]
            out = []
            for r in range(rows):
                x = b.load(self.at(left, b.add(b.mul(_const(r), left_stride), d)), typ=self.t)
                x = self.splat(x)
                out += [self.fma(x, ws[v], acc[r * vectors + v]) for v in range(vectors)]
            return out

        acc = self.loop(_const(0), depth, step, [self.zero] * (rows * vectors))
        for r in range(rows):
            for v in range(vectors):
                store(r, v, acc[r * vectors + v])

    def rows(self, fn: ir.Function, pointers: list, j0, n) -> None:
        """For each batch row r: fn(pointer + r * width + j0 ..., n), pointers being (base,
        width) pairs (a gate's base already at its block)."""
        b = self.b

        def call(r):
            b.call(fn, [self.at(base, b.add(b.mul(r, width), j0)) for base, width in pointers]
                   + [n])

        self.each(_const(0), self.args["batch"], call)

    def gate_blocks(self, gates, width):
        """(pointer, width) of each gate's block in a (B, 4H) gates array."""
        hidden = self.args["hidden"]
        return [(self.at(gates, self.b.mul(hidden, _const(k))), width) for k in range(4)]


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


def _pack_task(module: ir.Module, name: str, dtype: str, words: tuple) -> ir.Function:
    """The task that packs W_hh (4H, H) into `panels`, units [start, end) of unit blocks,
    the lanes past H zero: for the forward, block u's panel is [i][k][lanes], W_hh[k * H + u
    * lanes + l, i] (a gather down W_hh's columns), so a depth's four gates are one 256-byte
    run (float32); for the backward, [k][lanes], W_hh[k, u * lanes + l], 4H deep."""
    e = _Step(module, name + "_pack", dtype, words)
    b, a = e.b, e.args
    hidden, w = a["hidden"], a["w_hh"]
    backward = "grad_gates" in words
    gates = 1 if backward else 4
    depth = b.mul(hidden, _const(4)) if backward else hidden
    pointers = ir.VectorType(POINTER, e.width)
    gather = e.intrinsic(f"llvm.masked.gather.{e.suffix()}.v{e.width}p0", e.vec,
                         [pointers, I32, e.mask_type, e.vec])

    def block(u):
        j = b.mul(u, _const(e.width))
        mask = e.lanes_below(j, hidden)
        panel = e.at(a["panels"], b.mul(u, b.mul(depth, _const(gates * e.width))))
        # the forward's lanes: rows k * H + j + l of W_hh, one column i at a time
        rows = [b.mul(b.add(e.splat_i64(b.add(b.mul(_const(k), hidden), j)), e.iota),
                      e.splat_i64(hidden)) for k in range(gates)]

        def depth_step(d):
            for k in range(gates):
                to = e.at(panel, b.mul(b.add(b.mul(d, _const(gates)), _const(k)),
                                       _const(e.width)))
                if backward:
                    value = e.masked_load(e.at(w, b.add(b.mul(d, hidden), j)), mask)
                else:
                    at = b.gep(e.at(w, d), [rows[k]], inbounds=True, source_etype=e.t)
                    at.type = pointers  # llvmlite types a GEP as scalar
                    value = b.call(gather, [at, ir.Constant(I32, e.size), mask, e.zero])
                b.store(value, to, align=VECTOR_BYTES)

        e.each(_const(0), depth, depth_step)

    e.each(e.start, e.end, block)
    b.ret_void()
    return e.fn


def _outer(module, name, dtype, words, step_words, task, fill) -> None:
    """The function over all steps. Its rows [start, end) of the batch run every step: for
    each, fill(f, s, t, first, t_prev) gives the step's words at row 0 (`batch` the whole
    batch's), moved here to the rows' first and `batch` set to their count; they go to `task`
    over the unit blocks, on the pool when split = 0 and threads > 1. With split = 1 the
    exported function runs the rows of the batch on the pool instead, min(threads, B) parts: a
    row's recurrence reads only that row of h, c and the gates, so the parts never wait for
    each other, where sharing a step's units costs a barrier per step and the transfer of h_t
    (or dgates_t) between the cores."""
    f = _Step(module, name + "_rows", dtype, words)
    f.fn.linkage = "internal"
    b, a = f.b, f.args
    pool = ir.Function(module, ir.FunctionType(ir.VoidType(), [POINTER, POINTER, I64, I64]),
                       name=PARALLEL_FOR)
    step_argv = b.alloca(ir.ArrayType(I64, len(step_words)))
    width = lanes(dtype)
    blocks = b.sdiv(b.add(a["hidden"], _const(width - 1)), _const(width))
    chunks = b.select(b.icmp_signed("<", a["threads"], blocks), a["threads"], blocks)
    by_rows = b.icmp_signed("!=", a["split"], _const(0))
    shared = b.and_(b.icmp_signed(">", chunks, _const(1)), b.not_(by_rows))
    steps, reverse = a["steps"], b.icmp_signed("!=", a["reverse"], _const(0))
    last = b.sub(steps, _const(1))
    backward = "grad_gates" in words
    rows = b.sub(f.end, f.start)

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
            if word == "batch":
                value = rows
            elif word in _ROWS:
                value = f.at(value, b.mul(f.start, b.mul(a["hidden"], _const(_ROWS[word]))))
            if value.type != I64:
                value = b.ptrtoint(value, I64)
            b.store(value, b.gep(step_argv, [_const(0), _const(i)], inbounds=True))
        with b.if_else(shared) as (then, otherwise):
            with then:
                b.call(pool, [task, step_argv, blocks, chunks])
            with otherwise:
                b.call(task, [step_argv, _const(0), blocks])

    f.each(_const(0), steps, one)
    b.ret_void()

    outer = _Step(module, name, dtype, words)
    b, a = outer.b, outer.args
    argv = outer.fn.args[0]
    # W_hh into its panels first, the panels shared out (a pool job of its own: every step
    # reads all of them)
    pack = _pack_task(module, name, dtype, words)
    pack_units = b.sdiv(b.add(a["hidden"], _const(width - 1)), _const(width))
    few = b.icmp_signed("<", a["threads"], pack_units)
    chunks = b.select(few, a["threads"], pack_units)
    with b.if_else(b.icmp_signed(">", chunks, _const(1))) as (then, otherwise):
        with then:
            b.call(pool, [pack, argv, pack_units, chunks])
        with otherwise:
            b.call(pack, [argv, _const(0), pack_units])
    parts = b.select(b.icmp_signed("<", a["threads"], a["batch"]), a["threads"], a["batch"])
    with b.if_else(b.icmp_signed("!=", a["split"], _const(0))) as (then, otherwise):
        with then:
            b.call(pool, [f.fn, argv, a["batch"], parts])
        with otherwise:
            b.call(f.fn, [argv, _const(0), a["batch"]])
    b.ret_void()


def lstm_forward_ir(dtype: str) -> str:
    """The forward over all steps: gates (T, B, 4H) holds the input projections and gets the
    activated gates; output (T, B, H) and cells (T, B, H) get every step's h and c. panels
    is W_hh packed for the forward (the module's docstring)."""
    name = lstm_name("forward", dtype)
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
    task = _Step(module, name + "_step", dtype, _FORWARD_STEP)
    b, a = task.b, task.args
    hidden = a["hidden"]
    width = b.mul(hidden, _const(4))

    task.prefetch(a["h_prev"], b.mul(a["batch"], hidden), 3)

    def block(u, _, j, n, masks):
        mask = masks[0]

        def tile(first, rows):
            h_rows = task.at(a["h_prev"], b.mul(first, hidden))
            gate_rows = task.at(a["gates"], b.mul(first, width))

            def add_into_gate(r, k, acc):  # gates[row, k * H + j ...] += acc
                at = task.at(gate_rows, b.add(b.add(b.mul(_const(r), width),
                                                    b.mul(_const(k), hidden)), j))
                task.masked_store(b.fadd(task.masked_load(at, mask), acc), at, mask)

            panel = task.panel(u, width)
            columns = [task.at(panel, _const(k * task.width)) for k in range(4)]
            task.product(rows, columns, _const(4 * task.width), hidden, h_rows, hidden,
                         add_into_gate)

        task.row_tiles(MR_FORWARD, tile)
        task.rows(row, [*task.gate_blocks(a["gates"], width), (a["c_prev"], hidden),
                        (a["cells"], hidden), (a["out"], hidden)], j, n)

    task.blocks(block)
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
                **{w: a[w] for w in ("panels", "batch", "hidden")}}

    _outer(module, name, dtype, FORWARD_ARGS, _FORWARD_STEP, task.fn, fill)
    return str(module)


def lstm_backward_ir(dtype: str) -> str:
    """The backward over all steps, in reverse: grad_output (T, B, H) is each step's dh from
    above, grad_cell (B, H) holds dc after the last step and gets dc0, grad_gates (T, B, 4H)
    gets the gradients of the gates before their activations. grad_hidden (B, H), zeros on
    entry, holds the recurrent dh of each step; dh0 = dgates of the forward's first step @
    W_hh is left to the caller. panels is W_hh packed for the backward."""
    name = lstm_name("backward", dtype)
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
    task = _Step(module, name + "_step", dtype, _BACKWARD_STEP)
    b, a = task.b, task.args
    hidden = a["hidden"]
    width = b.mul(hidden, _const(4))

    with b.if_then(b.icmp_signed("==", a["last"], _const(0))):
        task.prefetch(a["grad_gates_next"], b.mul(a["batch"], width), 2)

    def block(u, count, j, n, masks):
        # these blocks' columns of dh = dgates of the step after (in the forward) @ W_hh
        with b.if_then(b.icmp_signed("==", a["last"], _const(0))):
            columns = [task.panel(b.add(u, _const(v)), width) for v in range(count)]

            def tile(first, rows):
                dh_rows = task.at(a["dh"], b.add(b.mul(first, hidden), j))

                def store(r, v, acc):
                    at = task.at(dh_rows, b.add(b.mul(_const(r), hidden), _const(v * task.width)))
                    task.masked_store(acc, at, masks[v])

                task.product(rows, columns, _const(task.width), width,
                             task.at(a["grad_gates_next"], b.mul(first, width)), width, store)

            task.row_tiles(MR_BACKWARD, tile)
        task.rows(row, [*task.gate_blocks(a["gates"], width), (a["c_prev"], hidden),
                        (a["cells"], hidden), (a["grad_out"], hidden), (a["dh"], hidden),
                        (a["dc"], hidden), *task.gate_blocks(a["grad_gates"], width)], j, n)

    task.blocks(block, span=2)
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
                **{w: a[w] for w in ("panels", "batch", "hidden")}}

    _outer(module, name, dtype, BACKWARD_ARGS, _BACKWARD_STEP, task.fn, fill)
    return str(module)
