"""LLVM IR of scaled dot-product attention, forward and backward, as tasks of the native pool.

Both run a (batch, head) item's queries in blocks of `block` rows against every key they
attend (under causal masking, keys 0..r1 - 1 of a block ending at row r1): the block's scores
are one GEMM (BLAS, through the pointer argv holds: runtime/blas.py) into a scratch of
block x S numbers on the stack of the thread that runs it, so memory stays linear in S. The
softmax of each row is exact, no running rescale: the row's max, its exps (the inline exp of
mathlib.py) and their sum, in one vectorized pass each (`softmax_row`, which the inference
entry's attention shares: entry.py).

    forward   task(argv, start, end) over units item * blocks + block: out and the rows'
              logsumexp; the block's weights times v (a second GEMM) give its output rows.
    backward  task(argv, start, end) over items (dk and dv sum over an item's query blocks,
              so one thread owns an item): P recomputed from the logsumexp, dP = dO V^T,
              dS = P * (dP - D) with D = rowsum(dO * O) - grad_lse (FlashAttention-2); then
              dV += P^T dO, dQ = scale * dS K, dK += scale * dS^T Q, each one GEMM.

A dropout keep mask (0 or 1 per weight) scales the kept weights by 1 / (1 - p) after the
softmax, and dP by the same factors in the backward. An attention mask (bool: False drops
the key; float: added to the scores) is read through row and column strides (0 where it
broadcasts), its item's plane at an offset from a table, as every operand's is: argv holds an
int64 offset per item for q, k, v, out, grad_out and the masks, so broadcast batch dims and
views (a transposed (B, T, H, E) projection) are read in place.

Compile-time: the dtype, causal, the mask's kind, dropout, BLAS's integer width. Everything
else (sizes, leading dims, strides, scale) is read from argv, so one kernel serves every shape.
"""

from __future__ import annotations

from llvmlite import ir

from . import mathlib
from .emit import I32, I64, POINTER, STORAGE, Callee, counted_loop, intrinsic

I8 = ir.IntType(8)
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

# the scores' rows start on this boundary (a cache line, AVX-512's vector)
VECTOR_BYTES = 64

# argv words of each task, in order; pointers, int64 sizes and float64 bit patterns (`f`)
FORWARD_WORDS = (
    ("q", "p"), ("k", "p"), ("v", "p"), ("out", "p"), ("lse", "p"), ("mask", "p"),
    ("keep", "p"), ("gemm", "p"), ("q_at", "p"), ("k_at", "p"), ("v_at", "p"),
    ("mask_at", "p"), ("keep_at", "p"), ("L", "i"), ("S", "i"), ("E", "i"), ("Ev", "i"),
    ("ldq", "i"), ("ldk", "i"), ("ldv", "i"), ("mask_rows", "i"), ("mask_cols", "i"),
    ("keep_rows", "i"), ("keep_cols", "i"), ("block", "i"), ("blocks", "i"),
    ("scale", "f"), ("kept_scale", "f"),
)
BACKWARD_WORDS = FORWARD_WORDS + (
    ("grad_out", "p"), ("grad_out_at", "p"), ("ldg", "i"), ("out_at", "p"), ("ldo", "i"),
    ("grad_lse", "p"), ("dq", "p"), ("dk", "p"), ("dv", "p"),
)


def kernel_name(direction: str, dtype: str, causal: bool, mask: str | None, dropout: bool,
                int_bits: int) -> str:
    """mask: None, "bool" or "float"."""
    parts = [direction, dtype, "causal" if causal else "full", mask or "nomask",
             "dropout" if dropout else "nodropout", f"blas{int_bits}"]
    return "ember_attention_" + "_".join(parts)


def exp_weight(b: ir.IRBuilder, x, masked: bool):
    """exp(x). masked: x may be -inf (a masked score), which gives 0 without computing
    exp(-inf): its range reduction's last scaling would make a denormal, and the CPU's assist
    per lane cost more than the rest of the row (a causal row's -inf tail ran its forward
    1.5x slower). Without a mask the two selects are left out: they cost ~13%."""
    if not masked:
        return mathlib.emit("exp", b, x)
    t = x.type
    dropped = b.fcmp_ordered("==", x, ir.Constant(t, float("-inf")))
    y = mathlib.emit("exp", b, b.select(dropped, ir.Constant(t, 0.0), x))
    return b.select(dropped, ir.Constant(t, 0.0), y)


def softmax_row(em, t: ir.Type, score, n, width, masked: bool, row_max: str = "llvm.maxnum"):
    """Row softmax in place over scores score(0..n-1), zeros in n..width-1; returns the row's
    logsumexp. masked: the row may attend no key (its max -inf): then weights 0, logsumexp
    -inf, as the eager kernel has them. em: an emitter with b, module, loop, local.

    row_max: the intrinsic of the row's max. llvm.maxnum (a NaN score is passed over)
    vectorizes as a reduction where llvm.maximum does not; a NaN still reaches the row
    through its exp and the sum, as numpy has it. The inference entry keeps llvm.maximum: on
    one of its float64 loops (a masked MultiheadAttention of test_symbolic_leaks.py)
    llvmlite's LLVM 22 failed an assertion of the loop vectorizer's cost models with maxnum
    (codegen/llvm/attention.py's own loops compile with it: test_native_attention.py)."""
    b = em.b
    zero, one = ir.Constant(t, 0.0), ir.Constant(t, 1.0)
    maximum = intrinsic(em.module, row_max, t, 2)
    top = em.local(t, ir.Constant(t, float("-inf")))
    em.loop(0, n, lambda j: b.store(
        b.call(maximum, [b.load(top, typ=t), b.load(score(j), typ=t)]), top))
    peak = b.load(top, typ=t)
    if masked:
        # a row that attends no key keeps -inf as its max: exp against 0 gives 0
        peak = b.select(b.fcmp_ordered("==", peak, ir.Constant(t, float("-inf"))), zero, peak)
    total = em.local(t, zero)

    def exponentiate(j):
        p = exp_weight(b, b.fsub(b.load(score(j), typ=t), peak), masked)
        b.store(p, score(j))
        b.store(b.fadd(b.load(total, typ=t), p, flags=("reassoc",)), total)

    em.loop(0, n, exponentiate)
    em.loop(n, width, lambda j: b.store(zero, score(j)))
    sum_ = b.load(total, typ=t)
    inverse = b.fdiv(one, sum_)
    if masked:  # no key attended: weights 0, not 0 / 0
        attended = b.fcmp_ordered(">", sum_, zero)
        inverse = b.select(attended, inverse, one)
    em.loop(0, n, lambda j: b.store(b.fmul(b.load(score(j), typ=t), inverse), score(j)))
    log_sum = b.fadd(peak, mathlib.emit("log", b, sum_))
    if masked:
        log_sum = b.select(attended, log_sum, ir.Constant(t, float("-inf")))
    return log_sum


class _Task:
    """One task `void name(ptr argv, i64 start, i64 end)` in its own module, its argv words
    loaded as named values, and the helpers softmax_row and the bodies use."""

    def __init__(self, name: str, words, dtype: str, int_bits: int, causal: bool,
                 mask: str | None, dropout: bool):
        self.causal, self.mask_kind, self.dropout = causal, mask, dropout
        self.module = ir.Module(name=name)
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [POINTER, I64, I64]),
                         name=name)
        fn.attributes.add("nounwind")
        self.argv, self.start, self.end = fn.args
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        self.dtype = dtype
        self.t = STORAGE[dtype]
        self.blas_int = ir.IntType(int_bits)
        self._no_unroll = None
        self.w = {}
        for k, (word, kind) in enumerate(words):
            slot = self.b.gep(self.argv, [ir.Constant(I64, k)], inbounds=True, source_etype=I64)
            if kind == "p":
                self.w[word] = self.b.load(slot, typ=POINTER)
            elif kind == "i":
                self.w[word] = self.b.load(slot, typ=I64)
            else:
                value = self.b.load(slot, typ=ir.DoubleType())
                if self.t != ir.DoubleType():
                    value = self.b.fptrunc(value, self.t)
                self.w[word] = value

    def loop(self, lo, hi, body) -> None:
        counted_loop(self.b, lo, hi, body, self._rolled())

    def _rolled(self):
        """A loop ID asking the unroller to leave the loop alone (the vectorizer still works:
        as entry.py's loops)."""
        module = self.module
        if self._no_unroll is None:
            self._no_unroll = module.add_metadata(
                [ir.MetaDataString(module, "llvm.loop.unroll.disable")])
        loop_id = module.add_metadata([self._no_unroll, ir.Constant(I64, len(module.metadata))])
        loop_id.operands = (loop_id, self._no_unroll)
        return loop_id

    def local(self, t, initial):
        with self.b.goto_entry_block():
            slot = self.b.alloca(t)
        self.b.store(initial, slot)
        return slot

    def element(self, pointer, index, dtype: str | None = None):
        etype = self.t if dtype is None else STORAGE[dtype]
        return self.b.gep(pointer, [index], inbounds=True, source_etype=etype)

    def at(self, name: str, item):
        """The word `name` (a pointer) advanced by its item's offset from the table name_at."""
        b = self.b
        offset = b.load(b.gep(self.w[name + "_at"], [item], inbounds=True, source_etype=I64),
                        typ=I64)
        return self.element(self.w[name], offset, "bool" if name == "mask" and
                            self.mask_kind == "bool" else None)

    def min(self, x, y):
        b = self.b
        return b.select(b.icmp_signed("<", x, y), x, y)

    def gemm(self, trans_a: bool, trans_b: bool, m, n, k, alpha, a, lda, b_ptr, ldb, beta,
             c, ldc) -> None:
        """C = alpha op(A) op(B) + beta C through cblas ?gemm (row-major)."""
        b = self.b
        index = self.blas_int
        fnty = ir.FunctionType(ir.VoidType(), [I32, I32, I32, index, index, index, self.t,
                                               POINTER, index, POINTER, index, self.t, POINTER,
                                               index])
        fn = Callee(self.w["gemm"], fnty)

        def size(v):
            return b.trunc(v, index) if index.width < 64 else v

        b.call(fn, [ir.Constant(I32, ROW_MAJOR), ir.Constant(I32, TRANS if trans_a else NO_TRANS),
                    ir.Constant(I32, TRANS if trans_b else NO_TRANS), size(m), size(n),
                    size(k), alpha, a, size(lda), b_ptr, size(ldb), ir.Constant(self.t, beta),
                    c, size(ldc)])

    def padded(self, n):
        """n rounded up to whole VECTOR_BYTES: the scores' leading dim."""
        b = self.b
        lanes = ir.Constant(I64, VECTOR_BYTES // (4 if self.dtype == "float32" else 8))
        return b.mul(b.udiv(b.add(n, b.sub(lanes, ir.Constant(I64, 1))), lanes), lanes)

    def scratch(self, count: int):
        """count buffers of block rows of padded(S) elements on the stack, allocated once per
        task."""
        b = self.b
        elements = b.mul(self.w["block"], self.padded(self.w["S"]))
        buffers = []
        for _ in range(count):
            buffer = b.alloca(self.t, size=elements)
            buffer.align = 64
            buffers.append(buffer)
        return buffers

    def block_span(self, item, block):
        """(r0, rows, keys) of a query block: its first row, its rows, the keys it attends."""
        b, w = self.b, self.w
        r0 = b.mul(block, w["block"])
        r1 = self.min(b.add(r0, w["block"]), w["L"])
        keys = self.min(r1, w["S"]) if self.causal else w["S"]
        return r0, b.sub(r1, r0), keys

    def attended(self, row, keys):
        """The keys row `row` (of the item) attends: keys, or under causal masking row + 1.
        (Rounding it up to whole vectors, the scores past it -inf, ran slower: exp(-inf) takes
        a denormal assist per lane, and the selects that skip it cost more than the scalar
        remainder they save.)"""
        if not self.causal:
            return keys
        return self.min(self.b.add(row, ir.Constant(I64, 1)), keys)

    def mask_row(self, item, row, n, score) -> None:
        """The attention mask applied to row `row`'s scores score(0..n-1)."""
        if self.mask_kind is None:
            return
        b, w, t = self.b, self.w, self.t
        kind = "bool" if self.mask_kind == "bool" else self.dtype
        base = self.element(self.at("mask", item), b.mul(row, w["mask_rows"]), kind)

        def apply(j):
            value = b.load(self.element(base, b.mul(j, w["mask_cols"]), kind),
                           typ=STORAGE[kind])
            current = b.load(score(j), typ=t)
            if self.mask_kind == "bool":
                keep = b.icmp_unsigned("!=", value, ir.Constant(I8, 0))
                current = b.select(keep, current, ir.Constant(t, float("-inf")))
            else:
                current = b.fadd(current, value)
            b.store(current, score(j))

        self.loop(0, n, apply)

    def kept(self, item, row):
        """j -> the dropout factor of weight (row, j): keep * 1 / (1 - p)."""
        b, w, t = self.b, self.w, self.t
        base = self.element(self.at("keep", item), b.mul(row, w["keep_rows"]))

        def factor(j):
            value = b.load(self.element(base, b.mul(j, w["keep_cols"])), typ=t)
            return b.fmul(value, w["kept_scale"])

        return factor


def forward_ir(dtype: str, causal: bool, mask: str | None, dropout: bool, int_bits: int) -> str:
    """The forward task over units [start, end) (unit = item * blocks + block)."""
    name = kernel_name("forward", dtype, causal, mask, dropout, int_bits)
    task = _Task(name, FORWARD_WORDS, dtype, int_bits, causal, mask, dropout)
    b, w, t = task.b, task.w, task.t
    (scores,) = task.scratch(1)

    def unit(u):
        item = b.udiv(u, w["blocks"])
        r0, rows, keys = task.block_span(item, b.urem(u, w["blocks"]))
        q = task.element(task.at("q", item), b.mul(r0, w["ldq"]))
        ld = task.padded(keys)
        task.gemm(False, True, rows, keys, w["E"], w["scale"], q, w["ldq"], task.at("k", item),
                  w["ldk"], 0.0, scores, ld)

        def row(r):
            at = b.add(r0, r)
            base = b.mul(r, ld)

            def score(j):
                return task.element(scores, b.add(base, j))

            task.mask_row(item, at, keys, score)
            n = task.attended(at, keys)
            lse = softmax_row(task, t, score, n, keys, mask is not None)
            b.store(lse, task.element(w["lse"], b.add(b.mul(item, w["L"]), at)))
            if dropout:
                factor = task.kept(item, at)
                task.loop(0, n, lambda j: b.store(
                    b.fmul(b.load(score(j), typ=t), factor(j)), score(j)))

        task.loop(0, rows, row)
        out = task.element(w["out"], b.mul(b.add(b.mul(item, w["L"]), r0), w["Ev"]))
        task.gemm(False, False, rows, w["Ev"], keys, ir.Constant(t, 1.0), scores, ld,
                  task.at("v", item), w["ldv"], 0.0, out, w["Ev"])

    task.loop(task.start, task.end, unit)
    b.ret_void()
    return str(task.module)


def backward_ir(dtype: str, causal: bool, mask: str | None, dropout: bool, int_bits: int) -> str:
    """The backward task over items [start, end); dq, dk, dv written whole for each."""
    name = kernel_name("backward", dtype, causal, mask, dropout, int_bits)
    task = _Task(name, BACKWARD_WORDS, dtype, int_bits, causal, mask, dropout)
    b, w, t = task.b, task.w, task.t
    probs, grads = task.scratch(2)
    zero, one = ir.Constant(t, 0.0), ir.Constant(t, 1.0)
    memset = task.module.declare_intrinsic("llvm.memset", [POINTER, I64])
    size = 4 if dtype == "float32" else 8

    def clear(pointer, elements):
        b.call(memset, [pointer, ir.Constant(I8, 0), b.mul(elements, ir.Constant(I64, size)),
                        ir.Constant(ir.IntType(1), 0)])

    def item_body(item):
        dk = task.element(w["dk"], b.mul(item, b.mul(w["S"], w["E"])))
        dv = task.element(w["dv"], b.mul(item, b.mul(w["S"], w["Ev"])))
        clear(dk, b.mul(w["S"], w["E"]))
        clear(dv, b.mul(w["S"], w["Ev"]))
        k, v = task.at("k", item), task.at("v", item)
        q_item, g_item = task.at("q", item), task.at("grad_out", item)
        o_item = task.at("out", item)

        def block(blk):
            r0, rows, keys = task.block_span(item, blk)
            q = task.element(q_item, b.mul(r0, w["ldq"]))
            g = task.element(g_item, b.mul(r0, w["ldg"]))
            ld = task.padded(keys)
            task.gemm(False, True, rows, keys, w["E"], w["scale"], q, w["ldq"], k, w["ldk"],
                      0.0, probs, ld)
            task.gemm(False, True, rows, keys, w["Ev"], one, g, w["ldg"], v, w["ldv"], 0.0,
                      grads, ld)

            def row(r):
                at = b.add(r0, r)
                base = b.mul(r, ld)

                def p_at(j):
                    return task.element(probs, b.add(base, j))

                def g_at(j):
                    return task.element(grads, b.add(base, j))

                task.mask_row(item, at, keys, p_at)
                n = task.attended(at, keys)
                g_row = task.element(g_item, b.mul(at, w["ldg"]))
                o_row = task.element(o_item, b.mul(at, w["ldo"]))
                total = task.local(t, zero)
                task.loop(0, w["Ev"], lambda c: b.store(b.fadd(
                    b.load(total, typ=t), b.fmul(b.load(task.element(g_row, c), typ=t),
                                                 b.load(task.element(o_row, c), typ=t)),
                    flags=("reassoc",)), total))
                flat = b.add(b.mul(item, w["L"]), at)
                delta = b.fsub(b.load(total, typ=t),
                               b.load(task.element(w["grad_lse"], flat), typ=t))
                lse = b.load(task.element(w["lse"], flat), typ=t)
                # a row that attends no key (logsumexp -inf) has P = exp(s - inf) = 0
                lse = b.select(b.fcmp_ordered("==", lse, ir.Constant(t, float("-inf"))),
                               ir.Constant(t, float("inf")), lse)
                factor = task.kept(item, at) if dropout else None

                def gradient(j):
                    p = exp_weight(b, b.fsub(b.load(p_at(j), typ=t), lse), mask is not None)
                    dp = b.load(g_at(j), typ=t)
                    weight = p
                    if factor is not None:
                        f = factor(j)
                        dp = b.fmul(dp, f)
                        weight = b.fmul(p, f)
                    b.store(b.fmul(p, b.fsub(dp, delta)), g_at(j))
                    b.store(weight, p_at(j))

                task.loop(0, n, gradient)
                task.loop(n, keys, lambda j: (b.store(zero, p_at(j)), b.store(zero, g_at(j))))

            task.loop(0, rows, row)
            task.gemm(True, False, keys, w["Ev"], rows, one, probs, ld, g, w["ldg"], 1.0,
                      dv, w["Ev"])
            dq = task.element(w["dq"], b.mul(b.add(b.mul(item, w["L"]), r0), w["E"]))
            task.gemm(False, False, rows, w["E"], keys, w["scale"], grads, ld, k, w["ldk"],
                      0.0, dq, w["E"])
            task.gemm(True, False, keys, w["E"], rows, w["scale"], grads, ld, q, w["ldq"],
                      1.0, dk, w["E"])

        task.loop(0, w["blocks"], block)

    task.loop(task.start, task.end, item_body)
    b.ret_void()
    return str(task.module)
