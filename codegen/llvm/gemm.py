"""LLVM IR of ember's own GEMM: C = A @ B (+ a bias row), packed and tiled, as a pool task.

The eager GEMMs of a training step are small and many: (512, 128) @ (128, 512) and the like,
51 a GPT step, each operand in either layout. OpenBLAS's SkylakeX sgemm ran them 15-25%
behind PyTorch's MKL, shape by shape, on one core and on two. A register-tile kernel that
read both operands in place matched MKL in isolation only with B 64-byte aligned, and lost
inside the step (the ninth session's note). This one packs, as BLAS libraries do:

- B (K, N), whatever its strides, is copied into panels of NR columns, each (K, NR)
  contiguous and 64-byte aligned, the columns past N zero: a vector load per depth where B's
  columns are contiguous, else a gather (a weight read transposed, W^T).
- For each block of MR rows of C and each KC-deep slice of the depth, the rows' slice of A is
  copied into a buffer on the stack, [MR][KC] from a row-major A (a row copy each), [KC][MR]
  from a column-major one (a short copy per depth), so the tile reads A at constant offsets
  from one pointer and the buffer stays in L1 over the panels. Rows past M are zero there
  and never stored.
- A tile is MR x NR accumulators (24 of the 32 AVX-512 registers): per depth, one broadcast
  of A per row, one aligned load of the panel per vector of columns, MR * NR / lanes fused
  multiply-adds. It is stored with masks past N: C = acc (+ bias) on the first slice, C += acc
  on the others.

The task, `void task(i64 *argv, i64 start, i64 end)`, runs units [start, end):

    argv = A, its strides along m and k (elements), B, its strides along k and n, packed,
           C, ldc, M, N, K, bias (0: none), group, parts, sub, region, colsum (0: none),
           rowsum (0: none)

Where colsum is given, the sums of B's columns (B.sum(0), N numbers) are stored there too,
added up as the panels are packed; part 0 of each group stores its panels' sums. Where
rowsum is given (A column-major only), the sums of A's rows (A.sum(1), M numbers), added up
as A's slices are copied; the units of group 0 store them. Either is a linear layer's bias
gradient beside its weight's (dY^T @ X or X^T @ dY): the step reads dY once for both.

Unit u packs the panels of group u // parts (`group` panels from (u // parts) * group on)
into its own region of `packed` (`region` elements from u * region), then runs them, `sub`
panels at a time (their packed slice stays in L2), over its part u % parts of the blocks of
rows. So a thread reads only panels it packed itself: runtime/packed_gemm.py gives each
thread a group of C's columns, or, for a C taller than wide, a part of its rows (B then
packed by each).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from .emit import I1, I32, I64, POINTER, STORAGE, counted_loop
from .tiles import VECTOR_BYTES, lanes, splat

MR = 12  # rows of C per tile (broadcasts of A per depth step)
NR_VECTORS = 2  # vectors of C's columns per tile (aligned loads of the panel per depth step)
KC = 256  # depth per slice: the A buffer, MR x KC, stays in L1 over every panel
WORDS = 19


def panel_width(dtype: str) -> int:
    """NR: the columns of one packed panel of B."""
    return NR_VECTORS * lanes(dtype)


def task_name(dtype: str) -> str:
    return f"ember_gemm_{dtype}"


def small_name(dtype: str) -> str:
    return f"ember_small_gemm_{dtype}"


def gemm_ir(dtype: str) -> str:
    """The task for float32 or float64, and the small GEMM (_emit_small) beside it."""
    module = ir.Module(name=task_name(dtype))
    _emit_task(module, task_name(dtype), dtype)
    _emit_small(module, small_name(dtype), dtype)
    return str(module)


def _c(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


class _Task:
    """A function's builder and small helpers: a task's (argv words read) by default, or one
    of the given type."""

    def __init__(self, module: ir.Module, name: str, dtype: str, words: int = 0,
                 fn_type: ir.FunctionType | None = None):
        self.module = module
        self.t = STORAGE[dtype]
        self.width = lanes(dtype)
        self.vec = ir.VectorType(self.t, self.width)
        self.mask_type = ir.VectorType(I1, self.width)
        self.size = np.dtype(dtype).itemsize
        task = fn_type is None
        fn_type = fn_type or ir.FunctionType(ir.VoidType(), [POINTER, I64, I64])
        fn = ir.Function(module, fn_type, name=name)
        self.fn = fn
        self.b = b = ir.IRBuilder(fn.append_basic_block("entry"))
        if task:
            argv, self.start, self.end = fn.args
            self.words = [b.load(b.gep(argv, [_c(i)], source_etype=I64), typ=I64)
                          for i in range(words)]
        self.zero = ir.Constant(self.vec, [ir.Constant(self.t, 0.0)] * self.width)
        self.iota = ir.Constant(ir.VectorType(I64, self.width),
                                [ir.Constant(I64, i) for i in range(self.width)])

    def pointer(self, word):
        return self.b.inttoptr(word, POINTER)

    def at(self, base, index):
        return self.b.gep(base, [index], inbounds=True, source_etype=self.t)

    def intrinsic(self, name: str, ret, args) -> ir.Function:
        found = self.module.globals.get(name)
        return found or ir.Function(self.module, ir.FunctionType(ret, args), name=name)

    def splat_i64(self, value):
        return splat(self.b, value, ir.VectorType(I64, self.width))

    def splat(self, value):
        return splat(self.b, value, self.vec)

    def lanes_below(self, first, bound):
        """The mask of lanes first + i < bound (i64 values)."""
        b = self.b
        return b.icmp_signed("<", b.add(self.splat_i64(first), self.iota), self.splat_i64(bound))

    def suffix(self) -> str:
        return f"v{self.width}f{self.size * 8}"

    def masked_load(self, pointer, mask):
        f = self.intrinsic(f"llvm.masked.load.{self.suffix()}.p0", self.vec,
                           [POINTER, I32, self.mask_type, self.vec])
        return self.b.call(f, [pointer, ir.Constant(I32, self.size), mask, self.zero])

    def masked_store(self, value, pointer, mask):
        f = self.intrinsic(f"llvm.masked.store.{self.suffix()}.p0", ir.VoidType(),
                           [self.vec, POINTER, I32, self.mask_type])
        self.b.call(f, [value, pointer, ir.Constant(I32, self.size), mask])

    def fma(self, x, y, z):
        f = self.intrinsic(f"llvm.fma.{self.suffix()}", self.vec, [self.vec] * 3)
        return self.b.call(f, [x, y, z])

    def loop(self, lo, hi, body, carried=()):
        """for i in [lo, hi): carried = body(i, carried); returns the carried values after."""
        return counted_loop(self.b, lo, hi, body, carried=tuple(carried))


def _pack_panel(e: "_Task", source, sk, sn, k, n, p, out, colsum=None, store_sum=None) -> None:
    """Panel p of B (columns p * NR ...) into out: depth d, column j at d * NR + j; the
    columns past n zero. A vector load per row where B's columns are contiguous, else a
    gather (B a weight read transposed). With `colsum` (a pointer, null for none), the
    panel's column sums are stored there where `store_sum` (an i1) holds."""
    b = e.b
    summing = colsum is not None
    nr = NR_VECTORS * e.width
    pointer_vector = ir.VectorType(POINTER, e.width)
    gather = e.intrinsic(f"llvm.masked.gather.{e.suffix()}.v{e.width}p0", e.vec,
                         [pointer_vector, I32, e.mask_type, e.vec])
    first = b.mul(p, _c(nr))
    masks = [e.lanes_below(b.add(first, _c(v * e.width)), n) for v in range(NR_VECTORS)]
    sums = []  # per layout: (its block, its column sums as they leave the loop)
    with b.if_else(b.icmp_signed("==", sn, _c(1))) as (contiguous, strided):
        with contiguous:
            def row(d, acc):
                src = e.at(source, b.add(b.mul(d, sk), first))
                dst = e.at(out, b.mul(d, _c(nr)))
                out_acc = []
                for v in range(NR_VECTORS):
                    value = e.masked_load(e.at(src, _c(v * e.width)), masks[v])
                    b.store(value, e.at(dst, _c(v * e.width)), align=VECTOR_BYTES)
                    if summing:
                        out_acc.append(b.fadd(acc[v], value))
                return out_acc
            found = e.loop(0, k, row, carried=[e.zero] * NR_VECTORS if summing else ())
            sums.append((b.block, found))
        with strided:
            # a gather's lane offsets along n: (first + v * lanes + i) * sn
            offsets = [b.mul(b.add(e.splat_i64(b.add(first, _c(v * e.width))), e.iota),
                             e.splat_i64(sn)) for v in range(NR_VECTORS)]

            def row_gathered(d, acc):
                base = e.at(source, b.mul(d, sk))
                dst = e.at(out, b.mul(d, _c(nr)))
                out_acc = []
                for v in range(NR_VECTORS):
                    pointers = b.gep(base, [offsets[v]], inbounds=True, source_etype=e.t)
                    pointers.type = pointer_vector  # llvmlite types a GEP as scalar
                    value = b.call(gather, [pointers, ir.Constant(I32, e.size), masks[v],
                                            e.zero])
                    b.store(value, e.at(dst, _c(v * e.width)), align=VECTOR_BYTES)
                    if summing:
                        out_acc.append(b.fadd(acc[v], value))
                return out_acc
            found = e.loop(0, k, row_gathered,
                           carried=[e.zero] * NR_VECTORS if summing else ())
            sums.append((b.block, found))
    if not summing:
        return
    totals = []
    for v in range(NR_VECTORS):
        phi = b.phi(e.vec)
        for block, found in sums:
            phi.add_incoming(found[v], block)
        totals.append(phi)
    with b.if_then(store_sum):
        for v in range(NR_VECTORS):
            e.masked_store(totals[v], e.at(colsum, b.add(first, _c(v * e.width))), masks[v])


def _emit_task(module: ir.Module, name: str, dtype: str) -> None:
    e = _Task(module, name, dtype, WORDS)
    b = e.b
    (a_w, sam, sak, b_w, sbk, sbn, packed_w, c_w, ldc, m, n, k, bias_w, group, parts, sub,
     region, colsum_w, rowsum_w) = e.words
    a, source, packed, c, bias, colsum, rowsum = (
        e.pointer(w) for w in (a_w, b_w, packed_w, c_w, bias_w, colsum_w, rowsum_w))
    has_colsum = b.icmp_signed("!=", colsum_w, _c(0))
    has_rowsum = b.icmp_signed("!=", rowsum_w, _c(0))
    nr = panel_width(dtype)
    width = e.width
    # the A buffer: MR x KC elements and one vector of slack (a column-major copy stores a
    # whole vector per depth step), on a cache line
    copies = -(-MR // width)  # vectors per depth step of a column-major copy
    buffer_type = ir.ArrayType(e.t, MR * KC + copies * width)
    with b.goto_entry_block():
        buffer = b.alloca(buffer_type)
        buffer.align = VECTOR_BYTES
    buffer.type = POINTER  # untyped, as every other pointer here (llvmlite types allocas)
    row_major = b.icmp_signed("==", sak, _c(1))
    has_bias = b.icmp_signed("!=", bias_w, _c(0))
    panels = b.sdiv(b.add(n, _c(nr - 1)), _c(nr))
    slices = b.sdiv(b.add(k, _c(KC - 1)), _c(KC))
    blocks = b.sdiv(b.add(m, _c(MR - 1)), _c(MR))
    memcpy = e.intrinsic("llvm.memcpy.p0.p0.i64", ir.VoidType(), [POINTER, POINTER, I64, I1])
    memset = e.intrinsic("llvm.memset.p0.i64", ir.VoidType(), [POINTER, ir.IntType(8), I64, I1])

    def unit(u, _):
        # unit u: the group of panels u // parts, packed into its own region, times the
        # part u % parts of the blocks of rows
        g = b.sdiv(u, parts)
        part = b.srem(u, parts)
        q0 = b.mul(g, group)
        q_end = b.add(q0, group)
        q1 = b.select(b.icmp_signed("<", q_end, panels), q_end, panels)
        mine = e.at(packed, b.mul(u, region))
        store_sum = b.and_(has_colsum, b.icmp_signed("==", part, _c(0)))
        e.loop(q0, q1, lambda p, _: _pack_panel(
            e, source, sbk, sbn, k, n, p, e.at(mine, b.mul(b.sub(p, q0), b.mul(k, _c(nr)))),
            colsum, store_sum))
        r0 = b.sdiv(b.mul(part, blocks), parts)
        r1 = b.sdiv(b.mul(b.add(part, _c(1)), blocks), parts)

        def panels_of(s0, _):  # sub panels at a time: their packed slice stays in L2
            p0 = b.add(q0, b.mul(s0, sub))
            p_end = b.add(p0, sub)
            p1 = b.select(b.icmp_signed("<", p_end, q1), p_end, q1)
            # A's row sums: from the first copies of its blocks by group 0's units
            sum_rows = b.and_(has_rowsum, b.and_(b.icmp_signed("==", g, _c(0)),
                                                 b.icmp_signed("==", s0, _c(0))))
            e.loop(r0, r1, lambda r, _: block(r, p0, p1, q0, mine, sum_rows))

        subs = b.sdiv(b.add(b.sub(q1, q0), b.sub(sub, _c(1))), sub)
        e.loop(0, subs, panels_of)

    def block(r, p0, p1, q0, mine, sum_rows):
        row0 = b.mul(r, _c(MR))
        left = b.sub(m, row0)
        valid = b.select(b.icmp_signed("<", left, _c(MR)), left, _c(MR))
        # the lanes (rows) of a column-major copy's vectors
        row_masks = [e.lanes_below(_c(j * width), valid) for j in range(copies)]

        def depth_slice(s, _):
            d0 = b.mul(s, _c(KC))
            rest = b.sub(k, d0)
            kc = b.select(b.icmp_signed("<", rest, _c(KC)), rest, _c(KC))
            first_slice = b.icmp_signed("==", s, _c(0))
            add_c = b.icmp_signed("!=", s, _c(0))
            add_bias = b.and_(first_slice, has_bias)
            with b.if_else(row_major) as (rows_layout, columns_layout):
                with rows_layout:  # buffer[i][d]: row i's slice, a row copy each
                    for i in range(MR):
                        dst = e.at(buffer, _c(i * KC))
                        if i == 0:
                            inside = ir.Constant(I1, 1)
                        else:
                            inside = b.icmp_signed("<", _c(i), valid)
                        with b.if_else(inside) as (copy, clear):
                            with copy:
                                src = e.at(a, b.add(b.mul(b.add(row0, _c(i)), sam), d0))
                                b.call(memcpy, [dst, src, b.mul(kc, _c(e.size)),
                                                ir.Constant(I1, 0)])
                            with clear:
                                b.call(memset, [dst, ir.Constant(ir.IntType(8), 0),
                                                _c(KC * e.size), ir.Constant(I1, 0)])
                    _panels(e, p0, p1, q0, mine, k, d0, kc, buffer, c, ldc, n, row0, valid,
                            add_c, add_bias, bias, rows_layout=True)
                with columns_layout:  # buffer[d][i]: depth d's MR rows, one vector copy
                    def copy_depth(d, acc):
                        src = e.at(a, b.add(b.mul(b.add(d0, d), sak), b.mul(row0, sam)))
                        dst = e.at(buffer, b.mul(d, _c(MR)))
                        out = []
                        for j in range(copies):
                            value = e.masked_load(e.at(src, _c(j * width)), row_masks[j])
                            b.store(value, e.at(dst, _c(j * width)), align=e.size)
                            out.append(b.fadd(acc[j], value))
                        return out
                    sums = e.loop(0, kc, copy_depth, carried=[e.zero] * copies)
                    with b.if_then(sum_rows):  # this slice's part of the rows' sums
                        for j in range(copies):
                            at = e.at(rowsum, b.add(row0, _c(j * width)))
                            with b.if_else(first_slice) as (first, later):
                                with first:
                                    e.masked_store(sums[j], at, row_masks[j])
                                with later:
                                    e.masked_store(b.fadd(e.masked_load(at, row_masks[j]),
                                                          sums[j]), at, row_masks[j])
                    _panels(e, p0, p1, q0, mine, k, d0, kc, buffer, c, ldc, n, row0, valid,
                            add_c, add_bias, bias, rows_layout=False)

        e.loop(0, slices, depth_slice)

    e.loop(e.start, e.end, unit)
    b.ret_void()


def _panels(e: _Task, p0, p1, q0, packed, k, d0, kc, buffer, c, ldc, n, row0, valid, add_c,
            add_bias, bias, rows_layout: bool) -> None:
    """The tiles of panels [p0, p1) for one block of rows and one depth slice; panel p is
    packed at packed + (p - q0) * K * NR."""
    b = e.b
    width = e.width
    nr = NR_VECTORS * width

    def panel(p, _):
        col0 = b.mul(p, _c(nr))
        tile = e.at(packed, b.add(b.mul(b.sub(p, q0), b.mul(k, _c(nr))), b.mul(d0, _c(nr))))

        def step(d, acc):
            loaded = [b.load(e.at(tile, b.add(b.mul(d, _c(nr)), _c(v * width))), typ=e.vec,
                             align=VECTOR_BYTES) for v in range(NR_VECTORS)]
            out = []
            for i in range(MR):
                at = (b.add(d, _c(i * KC)) if rows_layout
                      else b.add(b.mul(d, _c(MR)), _c(i)))
                x = e.splat(b.load(e.at(buffer, at), typ=e.t))
                for v in range(NR_VECTORS):
                    out.append(e.fma(x, loaded[v], acc[i * NR_VECTORS + v]))
            return out

        acc = e.loop(0, kc, step, carried=[e.zero] * (MR * NR_VECTORS))
        _store_tile(e, acc, c, ldc, n, row0, valid, col0, add_c, add_bias, bias)

    e.loop(p0, p1, panel)


def _store_tile(e: _Task, acc, c, ldc, n, row0, valid, col0, add_c, add_bias, bias) -> None:
    """C's tile from the accumulators: rows below `valid`, columns below n; onto C where
    add_c, plus the bias where add_bias."""
    b = e.b
    width = e.width
    masks = [e.lanes_below(b.add(col0, _c(v * width)), n) for v in range(NR_VECTORS)]
    with b.if_else(add_bias) as (with_bias, without):
        with with_bias:
            loaded = [e.masked_load(e.at(bias, b.add(col0, _c(v * width))), masks[v])
                      for v in range(NR_VECTORS)]
            bias_block = b.block
        with without:
            without_block = b.block
    offsets = []
    for v in range(NR_VECTORS):
        phi = b.phi(e.vec)
        phi.add_incoming(loaded[v], bias_block)
        phi.add_incoming(e.zero, without_block)
        offsets.append(phi)
    with b.if_else(add_c) as (onto, fresh):
        with onto:
            _store_rows(e, acc, c, ldc, row0, valid, col0, masks, None)
        with fresh:
            _store_rows(e, acc, c, ldc, row0, valid, col0, masks, offsets)


def _store_rows(e: _Task, acc, c, ldc, row0, valid, col0, masks, offsets) -> None:
    """Each valid row's vectors: C = acc + offsets, or C += acc for offsets None."""
    b = e.b
    for i in range(MR):
        inside = ir.Constant(I1, 1) if i == 0 else b.icmp_signed("<", _c(i), valid)
        with b.if_then(inside):
            row = e.at(c, b.add(b.mul(b.add(row0, _c(i)), ldc), col0))
            for v in range(NR_VECTORS):
                at = e.at(row, _c(v * e.width))
                value = acc[i * NR_VECTORS + v]
                if offsets is None:
                    value = b.fadd(value, e.masked_load(at, masks[v]))
                else:
                    value = b.fadd(value, offsets[v])
                e.masked_store(value, at, masks[v])


NO_TRANS = 111  # cblas's CblasNoTrans (CblasTrans is 112)


def _emit_small(module: ir.Module, name: str, dtype: str) -> None:
    """cblas's row-major ?gemm with int64 sizes, for the small products of the attention
    kernels (codegen/llvm/attention.py calls it through the same pointer as BLAS's):

        void f(i32 order, i32 trans_a, i32 trans_b, i64 M, i64 N, i64 K, T alpha, T *A,
               i64 lda, T *B, i64 ldb, T beta, T *C, i64 ldc)

    C = alpha op(A) op(B) + beta C (order must be row-major: nothing else calls it). A GPT's
    attention runs hundreds of (64, 32) @ (32, 64)-sized products a step, on one thread each;
    OpenBLAS's interface and packing took most of their time. Here, on the calling thread:
    for each panel of NR columns of op(B) and each KC-deep slice, the slice is packed into a
    stack buffer (_pack_panel: vector loads, or a gather for a transposed B), and each block
    of MR rows is one register tile that reads op(A) in place, one broadcast load per row and
    depth (rows past M read row M - 1 and are never stored). beta is applied on the first
    slice (C is not read where beta is 0, so an uninitialised C is fine, as BLAS's), the later
    slices add onto C."""
    t = STORAGE[dtype]
    fn_type = ir.FunctionType(ir.VoidType(), [I32, I32, I32, I64, I64, I64, t, POINTER, I64,
                                              POINTER, I64, t, POINTER, I64])
    e = _Task(module, name, dtype, fn_type=fn_type)
    b = e.b
    _, trans_a, trans_b, m, n, k, alpha, a, lda, source, ldb, beta, c, ldc = e.fn.args
    nr = panel_width(dtype)
    width = e.width
    with b.goto_entry_block():
        buffer = b.alloca(ir.ArrayType(e.t, KC * nr))
        buffer.align = VECTOR_BYTES
    buffer.type = POINTER
    plain_a = b.icmp_signed("==", trans_a, ir.Constant(I32, NO_TRANS))
    plain_b = b.icmp_signed("==", trans_b, ir.Constant(I32, NO_TRANS))
    one = _c(1)
    sam, sak = b.select(plain_a, lda, one), b.select(plain_a, one, lda)
    sbk, sbn = b.select(plain_b, ldb, one), b.select(plain_b, one, ldb)
    panels = b.sdiv(b.add(n, _c(nr - 1)), _c(nr))
    # at least one slice: K = 0 still stores beta C
    slices = b.sdiv(b.add(k, _c(KC - 1)), _c(KC))
    slices = b.select(b.icmp_signed("<", slices, one), one, slices)
    blocks = b.sdiv(b.add(m, _c(MR - 1)), _c(MR))
    last_row = b.sub(m, one)
    alphas = e.splat(alpha)
    zero = ir.Constant(e.t, 0.0)

    def panel(p, _):
        col0 = b.mul(p, _c(nr))
        masks = [e.lanes_below(b.add(col0, _c(v * width)), n) for v in range(NR_VECTORS)]

        def depth_slice(s, _):
            d0 = b.mul(s, _c(KC))
            rest = b.sub(k, d0)
            kc = b.select(b.icmp_signed("<", rest, _c(KC)), rest, _c(KC))
            _pack_panel(e, e.at(source, b.mul(d0, sbk)), sbk, sbn, kc, n, p, buffer)
            # C's factor: beta on the first slice, 1 (add onto C) on the others
            factor = b.select(b.icmp_signed("==", s, _c(0)), beta, ir.Constant(e.t, 1.0))
            reads_c = b.fcmp_unordered("!=", factor, zero)
            factors = e.splat(factor)

            def block(r, _):
                row0 = b.mul(r, _c(MR))
                left = b.sub(m, row0)
                valid = b.select(b.icmp_signed("<", left, _c(MR)), left, _c(MR))
                rows = []
                for i in range(MR):
                    row = b.add(row0, _c(i))
                    row = b.select(b.icmp_signed("<", row, m), row, last_row)
                    rows.append(e.at(a, b.add(b.mul(row, sam), b.mul(d0, sak))))

                def step(d, acc):
                    loaded = [b.load(e.at(buffer, b.add(b.mul(d, _c(nr)), _c(v * width))),
                                     typ=e.vec, align=VECTOR_BYTES)
                              for v in range(NR_VECTORS)]
                    at = b.mul(d, sak)
                    out = []
                    for i in range(MR):
                        x = e.splat(b.load(e.at(rows[i], at), typ=e.t))
                        for v in range(NR_VECTORS):
                            out.append(e.fma(x, loaded[v], acc[i * NR_VECTORS + v]))
                    return out

                acc = e.loop(0, kc, step, carried=[e.zero] * (MR * NR_VECTORS))
                acc = [b.fmul(x, alphas) for x in acc]

                def store(onto_c: bool):
                    for i in range(MR):
                        inside = (ir.Constant(I1, 1) if i == 0
                                  else b.icmp_signed("<", _c(i), valid))
                        with b.if_then(inside):
                            row = e.at(c, b.add(b.mul(b.add(row0, _c(i)), ldc), col0))
                            for v in range(NR_VECTORS):
                                at = e.at(row, _c(v * width))
                                value = acc[i * NR_VECTORS + v]
                                if onto_c:
                                    value = e.fma(e.masked_load(at, masks[v]), factors, value)
                                e.masked_store(value, at, masks[v])

                with b.if_else(reads_c) as (onto, fresh):
                    with onto:
                        store(True)
                    with fresh:
                        store(False)

            e.loop(0, blocks, block)

        e.loop(0, slices, depth_slice)

    e.loop(0, panels, panel)
    b.ret_void()
