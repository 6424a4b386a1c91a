"""Emit an EntryPlan (codegen/entry.py) as one LLVM module: the graph's kernels and its entry.

`i64 <name>(ptr argv, i64 threads)` runs every call of the plan in order and returns 0, or the
error number of the call that stopped it (an index out of range: EntryPlan.errors). Kernels are
called directly, or through the native pool (ember_parallel_for, resolved when the object code
loads) when they are parallel and `threads` > 1. GEMMs call the cblas sgemm/dgemm whose
addresses argv holds (runtime/blas.py found them and checked their ABI); a convolution with a
small weight multiplies in register tiles instead (tiles.py), its epilogue on the tiles, and a
3x3 stride-1 one as Winograd products (winograd.py), its weight's transform made on the first
call on each arena (the arena's tag word says whose prepared values it holds). im2col
and pooling are plain loops with every size a constant: a tap's valid output range is computed
here, so the copies have no bounds checks (a stride-1 row is a memcpy); max pooling whose
windows tile the plane works on whole rows as vectors. Attention is, per (batch, head), a GEMM of
scores, a softmax per row (attention.softmax_row, shared with the eager kernels' native
attention) and a GEMM into the output; views read in place where a call takes strides, copied
where it needs contiguous values (CopyCall).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from llvmlite import ir

from ..entry import (
    AttentionCall,
    BiasCall,
    ConvCall,
    ConvWeightCall,
    CopyCall,
    EntryPlan,
    GatherCall,
    GemmCall,
    ImageChain,
    KernelCall,
    PoolCall,
    Ref,
    StridedConvCall,
    WinogradWeightCall,
    conv_operand,
)
from . import winograd
from .attention import softmax_row
from .emit import (
    CHUNKS_PER_THREAD,
    I32,
    I64,
    PARALLEL_FOR,
    POINTER,
    STORAGE,
    Callee,
    counted_loop,
    emit_kernel,
    symbol,
    task_symbol,
)
from .tiles import columns_ld, emit_tiled_gemm, row_blocks

I8 = ir.IntType(8)
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
# a convolution whose columns of one image take at most this many bytes shares its images
# with the pool, each chunk's columns on its thread's stack (threads have 8 MiB stacks)
STACK_COLUMNS_MAX = 1 << 19
# a convolution whose weight takes at most this many bytes multiplies it by its columns in
# register tiles (tiles.py) rather than through BLAS; larger ones are BLAS's strength
TILED_WEIGHT_MAX = 1 << 20
# ... and so does any weight whose planes are whole vectors of at most this many positions:
# the tiles read a plane's vectors for every weight row where BLAS packs the weight, which
# costs it most when the planes are short. Measured on the Xeon, one thread, float32, tiles
# against BLAS: a (288, 4096) weight by a 64-position plane 0.89 against 1.36 ms (the digits
# CNN's weight gradient as a product), (1024, 1024) by 4x4 planes 0.79 / 1.03, a 256-channel
# 3x3 convolution of 8x8 images 4.1 / 5.4; 128 positions were even (2.1 / 2.1 ms), and 7x7
# planes (49 positions in 64-lane rows) twice as slow tiled, so they stay with BLAS
TILED_PLANE_MAX = 64
# a convolution of one image with at least this many multiply-adds shares its weight rows
# with the pool. The digits CNN's second (64 x 288 x 64, 1.2M) gained on an AMD Zen 4 at 512K;
# on an Intel Xeon (AVX-512, KVM) its batch-1 entry took 26 us shared against 15 us on one
# thread (the worker reads the caller's columns, the caller the worker's rows, each a
# core-to-core copy there), so only products four times its size are shared
SHARED_ROWS_MIN = 1 << 22
# an attention with fewer (batch, head) items runs them on the calling thread, its GEMMs free
# to use OpenBLAS's threads (a GPT at batch 1 has 4 heads of 64 x 64 scores)
SHARED_ITEMS_MIN = 16
# a depthwise conv with at least this many multiply-adds shares its planes with the pool
DEPTHWISE_SHARED_MIN = 1 << 16


def _const(n: int) -> ir.Constant:
    return ir.Constant(I64, n)


class _EntryEmitter:
    def __init__(self, plan: EntryPlan, module: ir.Module):
        self.plan = plan
        self.module = module
        fn = ir.Function(module, ir.FunctionType(I64, [POINTER, I64]), name=symbol(plan.name))
        fn.attributes.add("nounwind")
        self.fn = fn
        self.argv, self.threads = fn.args
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        self.bases = {}
        self.blas_int = ir.IntType(plan.blas_int_bits)
        self.pool = None
        self.argv_buffer = None
        self._no_unroll = None

    # -- pointers ----------------------------------------------------------------------------

    def _base(self, arg: int):
        base = self.bases.get(arg)
        if base is None:
            b = self.b
            with b.goto_entry_block():
                slot = b.gep(self.argv, [_const(arg)], inbounds=True, source_etype=POINTER)
                base = self.bases[arg] = b.load(slot, typ=POINTER)
        return base

    def ref(self, ref: Ref):
        base = self._base(ref.arg)
        if not ref.offset:
            return base
        return self.b.gep(base, [_const(ref.offset)], inbounds=True, source_etype=I8)

    def element(self, pointer, index, dtype: str):
        return self.b.gep(pointer, [index], inbounds=True, source_etype=STORAGE[dtype])

    def loop(self, lo, hi, body) -> None:
        """for i in [lo, hi): body(i), lo and hi ints or i64 values."""
        counted_loop(self.b, lo, hi, body, self._rolled())

    def _rolled(self):
        """A fresh loop ID asking the unroller to leave the loop alone: fully unrolled, the
        nests of a convolution's im2col took LLVM over a second to compile, and they run no
        faster (the vectorizer still works on the inner loops)."""
        module = self.module
        if self._no_unroll is None:
            self._no_unroll = module.add_metadata(
                [ir.MetaDataString(module, "llvm.loop.unroll.disable")])
        loop_id = module.add_metadata([self._no_unroll, _const(len(module.metadata))])
        loop_id.operands = (loop_id, self._no_unroll)
        return loop_id

    def gemm_arg(self, dtype: str) -> int:
        return self.plan.sgemm_arg if dtype == "float32" else self.plan.dgemm_arg

    def parallel_for(self, task, pointers, rows: int) -> None:
        """task(argv, 0, rows) on this thread, or shared with the native pool when the
        call's `threads` is above 1 (argv: the pointers, in a stack array)."""
        b = self.b
        if self.pool is None:
            self.pool = self.module.globals.get(PARALLEL_FOR) or ir.Function(
                self.module, ir.FunctionType(ir.VoidType(), [POINTER, POINTER, I64, I64]),
                name=PARALLEL_FOR)
        with b.goto_entry_block():
            argv = b.alloca(ir.ArrayType(POINTER, len(pointers)))
        for i, p in enumerate(pointers):
            b.store(p, b.gep(argv, [_const(0), _const(i)], inbounds=True))
        shared = b.icmp_signed(">", self.threads, _const(1))
        with b.if_else(shared) as (then, otherwise):
            with then:
                wanted = b.mul(self.threads, _const(CHUNKS_PER_THREAD))
                chunks = b.select(b.icmp_signed("<", wanted, _const(rows)), wanted,
                                  _const(rows))
                b.call(self.pool, [task, argv, _const(rows), chunks])
            with otherwise:
                b.call(task, [argv, _const(0), _const(rows)])

    # -- calls -------------------------------------------------------------------------------

    def emit(self) -> None:
        plan = self.plan
        prepare = [c for c in plan.calls if isinstance(c, WinogradWeightCall)]
        if plan.tag_word is not None:
            b = self.b
            word = self.ref(plan.tag_word)
            tag = _const(plan.tag if prepare else 0)
            if prepare:
                # the arena holds another plan's values, or none yet: prepare ours
                with b.if_then(b.icmp_unsigned("!=", b.load(word, typ=I64), tag)):
                    for call in prepare:
                        winograd.emit_weight_transform(self, call, self.ref(call.weight),
                                                       self.ref(call.out))
            b.store(tag, word)
        for call in plan.calls:
            if not isinstance(call, WinogradWeightCall):
                getattr(self, "_" + type(call).__name__)(call)
        self.b.ret(_const(0))

    def local(self, t, initial):
        """A stack slot of type t (mem2reg makes it a register), set to initial here."""
        with self.b.goto_entry_block():
            slot = self.b.alloca(t)
        self.b.store(initial, slot)
        return slot

    def memcpy(self, dst, src, nbytes) -> None:
        fn = self.module.globals.get("llvm.memcpy.p0.p0.i64") or ir.Function(
            self.module, ir.FunctionType(ir.VoidType(), [POINTER, POINTER, I64, ir.IntType(1)]),
            name="llvm.memcpy.p0.p0.i64")
        self.b.call(fn, [dst, src, nbytes, ir.Constant(ir.IntType(1), 0)])

    def _CopyCall(self, call: CopyCall) -> None:
        """dst[i] (row-major) = src[sum(i_d * strides[d])], one loop per dim; a last dim of
        stride 1 copies whole rows."""
        b = self.b
        src, dst = self.ref(call.src), self.ref(call.dst)
        t = STORAGE[call.dtype]
        shape, strides = call.shape, call.strides
        size = np.dtype(call.dtype).itemsize
        dense = strides[-1] == 1
        inner = [1]
        for d in reversed(shape[1:]):
            inner.insert(0, inner[0] * d)

        def level(d, at_src, at_dst):
            if dense and d == len(shape) - 1:
                self.memcpy(self.element(dst, at_dst, call.dtype),
                            self.element(src, at_src, call.dtype), _const(shape[d] * size))
                return

            def body(i):
                s_at = b.add(at_src, b.mul(i, _const(strides[d])))
                d_at = b.add(at_dst, b.mul(i, _const(inner[d])))
                if d == len(shape) - 1:
                    v = b.load(self.element(src, s_at, call.dtype), typ=t)
                    b.store(v, self.element(dst, d_at, call.dtype))
                else:
                    level(d + 1, s_at, d_at)

            self.loop(0, shape[d], body)

        level(0, _const(0), _const(0))

    def _GatherCall(self, call: GatherCall) -> None:
        """out[o, i, :] = table[o, index[i], :]; an index outside [0, rows) returns."""
        b = self.b
        table, index, out = self.ref(call.table), self.ref(call.index), self.ref(call.out)
        row_bytes = call.inner * call.itemsize
        it = STORAGE[call.index_dtype]

        def outer(o):
            def one(i):
                k = b.load(self.element(index, i, call.index_dtype), typ=it)
                if it.width < 64:
                    k = b.sext(k, I64)
                bad = b.icmp_unsigned(">=", k, _const(call.rows))  # negative: huge unsigned
                fail = b.append_basic_block("index_out_of_range")
                ok = b.append_basic_block("index_ok")
                b.cbranch(bad, fail, ok)
                b.position_at_end(fail)
                word = self.ref(self.plan.error_word)
                b.store(k, word)
                b.ret(_const(call.error))
                b.position_at_end(ok)
                source = b.mul(b.add(b.mul(o, _const(call.rows)), k), _const(row_bytes))
                target = b.mul(b.add(b.mul(o, _const(call.count)), i), _const(row_bytes))
                self.memcpy(b.gep(out, [target], inbounds=True, source_etype=I8),
                            b.gep(table, [source], inbounds=True, source_etype=I8),
                            _const(row_bytes))

            self.loop(0, call.count, one)

        self.loop(0, call.outer, outer)

    def _AttentionCall(self, call: AttentionCall) -> None:
        pointers = [self.ref(call.q.ref), self.ref(call.k.ref), self.ref(call.v.ref),
                    self.ref(call.out), self.ref(call.lse)]
        if call.mask is not None:
            pointers.append(self.ref(call.mask.ref))
        items = math.prod(call.batch)
        if call.scratch is None:
            task = _AttentionTask(self, call).fn
            self.parallel_for(task, [*pointers, self._base(self.gemm_arg(call.dtype))], items)
            return
        self._attention_items(call, pointers, self.ref(call.scratch), _const(0), _const(items))

    def _attention_items(self, call: AttentionCall, pointers, scores, first, last) -> None:
        """Batch items [first, last) of an attention, scores in the (l, s) scratch."""
        b = self.b
        q, k, v, out, lse = pointers[:5]
        t = STORAGE[call.dtype]
        dtype = call.dtype
        inner = [1]
        for d in reversed(call.batch[1:]):
            inner.insert(0, inner[0] * d)

        def at(p, operand, item, element_dtype=dtype):
            offset = _const(0)
            for d, stride in enumerate(operand.batch_strides):
                if stride and call.batch[d] > 1:
                    index = b.urem(b.udiv(item, _const(inner[d])), _const(call.batch[d]))
                    offset = b.add(offset, b.mul(index, _const(stride)))
            return self.element(p, offset, element_dtype)

        def item(i):
            # the scale goes into the GEMM's alpha
            self._gemm(dtype, call.l, call.s, call.e, at(q, call.q, i), call.q.ld,
                       at(k, call.k, i), call.k.ld, True, scores, call.s, alpha=call.scale)

            if call.mask is not None:
                mask = at(pointers[5], call.mask, i, "bool" if call.mask.is_bool else dtype)

            def row(r):
                base = b.mul(r, _const(call.s))
                if call.causal:
                    n = b.add(r, _const(1))
                    n = b.select(b.icmp_signed("<", n, _const(call.s)), n, _const(call.s))
                else:
                    n = _const(call.s)

                def score(j):
                    return self.element(scores, b.add(base, j), dtype)

                if call.mask is not None:
                    self._mask_row(call, mask, r, score)

                log_sum = softmax_row(self, t, score, n, _const(call.s),
                                      call.mask is not None, row_max="llvm.maximum")
                row_index = b.add(b.mul(i, _const(call.l)), r)
                b.store(log_sum, self.element(lse, row_index, dtype))

            self.loop(0, call.l, row)
            target = self.element(out, b.mul(i, _const(call.l * call.ev)), dtype)
            self._gemm(dtype, call.l, call.ev, call.s, scores, call.s, at(v, call.v, i),
                       call.v.ld, False, target, call.ev)

        self.loop(first, last, item)

    def _mask_row(self, call: AttentionCall, mask, r, score) -> None:
        """Row r of an item's scores under its mask: -inf where a bool mask is False, the
        mask added where it is float."""
        b = self.b
        m = call.mask
        t = STORAGE[call.dtype]
        kind = "bool" if m.is_bool else call.dtype
        row = self.element(mask, b.mul(r, _const(m.row_stride)), kind)

        def apply(j):
            value = b.load(self.element(row, b.mul(j, _const(m.col_stride)), kind),
                           typ=STORAGE[kind])
            current = b.load(score(j), typ=t)
            if m.is_bool:
                keep = b.icmp_unsigned("!=", value, ir.Constant(STORAGE[kind], 0))
                current = b.select(keep, current, ir.Constant(t, float("-inf")))
            else:
                current = b.fadd(current, value)
            b.store(current, score(j))

        self.loop(0, call.s, apply)

    def _KernelCall(self, call: KernelCall) -> None:
        b = self.b
        kernel = self.module.get_global(symbol(call.spec.name))
        pointers = [self.ref(r) for r in call.refs]
        rows = _const(call.spec.rows)
        if not call.parallel:
            b.call(kernel, [*pointers, _const(0), rows])
            return
        if self.pool is None:
            self.pool = self.module.globals.get(PARALLEL_FOR) or ir.Function(
                self.module, ir.FunctionType(ir.VoidType(), [POINTER, POINTER, I64, I64]),
                name=PARALLEL_FOR)
        widest = max(len(c.refs) for c in self.plan.calls
                     if isinstance(c, KernelCall) and c.parallel)
        if self.argv_buffer is None:
            with b.goto_entry_block():
                self.argv_buffer = b.alloca(ir.ArrayType(POINTER, widest))
        shared = b.icmp_signed(">", self.threads, _const(1))
        with b.if_else(shared) as (then, otherwise):
            with then:
                for i, p in enumerate(pointers):
                    b.store(p, b.gep(self.argv_buffer, [_const(0), _const(i)], inbounds=True))
                wanted = b.mul(self.threads, _const(CHUNKS_PER_THREAD))
                chunks = b.select(b.icmp_signed("<", wanted, rows), wanted, rows)
                b.call(self.pool, [self.module.get_global(task_symbol(call.spec.name)),
                                   self.argv_buffer, rows, chunks])
            with otherwise:
                b.call(kernel, [*pointers, _const(0), rows])

    def _ImageChain(self, call: ImageChain) -> None:
        refs = chain_refs(call)
        task = _ChainTask(self, call, refs).fn
        self.parallel_for(task, [self.ref(r) for r in refs], call.n)

    def _gemm(self, dtype: str, m, n, k, a, lda, b_ptr, ldb, trans_b: bool, c, ldc,
              alpha: float = 1.0, beta=0.0) -> None:
        """c (m, n) = alpha * a (m, k) @ b (k, n), or b's transpose stored (n, k), plus beta
        * c (beta: a number or a value of the dtype)."""
        real = STORAGE[dtype]
        index = self.blas_int
        enum = I32
        fnty = ir.FunctionType(ir.VoidType(), [enum, enum, enum, index, index, index, real,
                                               POINTER, index, POINTER, index, real, POINTER,
                                               index])
        fn = Callee(self._base(self.gemm_arg(dtype)), fnty)

        def size(v):
            return ir.Constant(index, v)

        self.b.call(fn, [ir.Constant(enum, ROW_MAJOR), ir.Constant(enum, NO_TRANS),
                         ir.Constant(enum, TRANS if trans_b else NO_TRANS), size(m), size(n),
                         size(k), ir.Constant(real, alpha), a, size(lda), b_ptr, size(ldb),
                         ir.Constant(real, beta) if isinstance(beta, float) else beta, c,
                         size(ldc)])

    def _GemmCall(self, call: GemmCall) -> None:
        a, bm, c = self.ref(call.a), self.ref(call.b), self.ref(call.c)

        def one(i):
            def at(p, stride):
                if not stride:
                    return p
                return self.element(p, self.b.mul(i, _const(stride)), call.dtype)

            self._gemm(call.dtype, call.m, call.n, call.k, at(a, call.stride_a), call.lda,
                       at(bm, call.stride_b), call.ldb, call.trans_b, at(c, call.stride_c),
                       call.ldc)

        if call.batch == 1:
            one(_const(0))
        else:
            self.loop(0, call.batch, one)

    def _BiasCall(self, call: BiasCall) -> None:
        b = self.b
        out, bias = self.ref(call.out), self.ref(call.bias)
        t = STORAGE[call.dtype]

        def row(r):
            base = b.mul(r, _const(call.cols))

            def column(j):
                p = self.element(out, b.add(base, j), call.dtype)
                value = b.fadd(b.load(p, typ=t),
                               b.load(self.element(bias, j, call.dtype), typ=t))
                b.store(value, p)

            self.loop(0, call.cols, column)

        self.loop(0, call.rows, row)

    def _ConvCall(self, call: ConvCall) -> None:
        if shares_images(call):
            # images shared with the pool, each chunk's columns on its own stack, or (slots)
            # each part of the batch's in its slot of the columns
            task = _ConvTask(self, call).fn
            arg = self.gemm_arg(call.dtype)
            extra = [self.ref(r) for r in call.epilogue.refs] if call.epilogue else []
            pointers = [self.ref(call.x), self.ref(call.weight), self.ref(call.out),
                        self._base(arg), *extra]
            if call.slots:
                pointers.append(self.ref(call.cols))
            self.parallel_for(task, pointers, call.slots or call.n)
            return
        if shares_rows(call):
            # one image: its columns here, then its blocks of weight rows shared with the pool
            x = self.ref(call.x)
            columns = x
            if call.winograd:
                columns = self.ref(call.cols)
                winograd.emit_input_transform(self, call, x, columns)
            elif call.cols is not None:
                columns = self.ref(call.cols)
                self._im2col(call, x, columns, columns_ld(plane_of(call), call.dtype))
            extra = [self.ref(r) for r in call.epilogue.refs] if call.epilogue else []
            task = _ConvRowsTask(self, call).fn
            self.parallel_for(task, [columns, self.ref(call.weight), self.ref(call.out),
                                     *extra], conv_row_blocks(call))
            return
        self._conv_images(call, _const(0), _const(call.n))

    def _ConvWeightCall(self, call: ConvWeightCall) -> None:
        conv = call.conv
        x, g, out, cols = (self.ref(r) for r in (conv.x, call.g, call.out, conv.cols))
        if conv.slots > 1:
            task = _ConvWeightTask(self, call).fn
            self.parallel_for(task, [x, g, out, self._base(self.gemm_arg(conv.dtype)), cols],
                              conv.slots)
        else:
            depth, _, ld = weight_gradient_sizes(conv)
            self._weight_images(call, x, g, self.element(cols, _const(depth * ld), conv.dtype),
                                cols, _const(0), _const(conv.n))
        self._add_partial_sums(call, out, cols)

    def _weight_images(self, call: ConvWeightCall, x, g, acc, cols, first, last) -> None:
        """acc (depth, o) = the sum over images [first, last) of columns_n @ g_n^T, each
        image's columns made in cols; the first image's GEMM writes acc, the others add. (The
        transposed gradient: OpenBLAS on one thread, EPYC, 64 channels over 32x32 images:
        0.34 ms an image against 0.48 for g_n @ columns_n^T.)"""
        b = self.b
        conv = call.conv
        depth, plane, ld = weight_gradient_sizes(conv)
        real = STORAGE[conv.dtype]

        def image(n):
            source = self.element(x, b.mul(n, _const(conv.c * conv.h * conv.w)), conv.dtype)
            self._im2col(conv, source, cols, ld)
            grad = self.element(g, b.mul(n, _const(conv.o * plane)), conv.dtype)
            beta = b.select(b.icmp_signed("==", n, first), ir.Constant(real, 0.0),
                            ir.Constant(real, 1.0))
            self._gemm(conv.dtype, depth, conv.o, plane, cols, ld, grad, plane, True, acc,
                       conv.o, beta=beta)

        self.loop(first, last, image)

    def _add_partial_sums(self, call: ConvWeightCall, out, cols) -> None:
        """out (o, depth) = the sum of the slots' partial sums (depth, o), transposed."""
        b = self.b
        conv = call.conv
        t = STORAGE[conv.dtype]
        depth, _, ld = weight_gradient_sizes(conv)
        slot = weight_gradient_slot(conv)

        def row(d):
            def element(i):
                at = b.add(b.mul(d, _const(conv.o)), i)
                total = None
                for s in range(max(1, conv.slots)):
                    partial = self.element(cols, b.add(at, _const(s * slot + depth * ld)),
                                           conv.dtype)
                    value = b.load(partial, typ=t)
                    total = value if total is None else b.fadd(total, value)
                b.store(total, self.element(out, b.add(b.mul(i, _const(depth)), d), conv.dtype))

            self.loop(0, conv.o, element)

        self.loop(0, depth, row)

    def _conv_images(self, call: ConvCall, first, last) -> None:
        b = self.b
        (kh, kw), (oh, ow) = call.kernel, call.out_hw
        depth = call.c * kh * kw
        plane = oh * ow
        x, weight, out = self.ref(call.x), self.ref(call.weight), self.ref(call.out)
        cols = self.columns(call)
        ld = plane if cols is None else columns_ld(plane, call.dtype)
        tiled = tiles_conv(call)
        epilogue = None
        if call.epilogue is not None:
            assert tiled, "an epilogue needs the register tiles"
            epilogue = (call.epilogue.spec, [self.ref(r) for r in call.epilogue.refs],
                        call.epilogue.source, call.epilogue.channel)

        def image(n):
            source = self.element(x, b.mul(n, _const(call.c * call.h * call.w)), call.dtype)
            target = self.element(out, b.mul(n, _const(call.o * plane)), call.dtype)
            if call.winograd:
                winograd.emit_input_transform(self, call, source, cols)
                winograd.emit_products(self, call, weight, cols, target, epilogue)
                return
            if cols is None:
                columns = source
            else:
                self._im2col(call, source, cols, ld)
                columns = cols
            if tiled:
                emit_tiled_gemm(self, call.dtype, call.o, plane, depth, weight, columns, ld,
                                target, epilogue)
            else:
                self._gemm(call.dtype, call.o, plane, depth, weight, depth, columns, ld, False,
                           target, plane)

        self.loop(first, last, image)

    def columns(self, call: ConvCall):
        return self.ref(call.cols) if call.cols is not None else None

    def _im2col(self, call: ConvCall, x, cols, ld: int) -> None:
        """cols[(ci*kh + i)*kw + j, oy*ow + ox] = x[ci, oy*sh - ph + i*dh, ox*sw - pw + j*dw],
        0 outside x, the rows of cols `ld` elements apart. Each tap's ranges of output rows
        and columns inside x are computed here, so per channel and tap the rows of zeros and
        the copies have constant lengths (a stride-1 copy is a memcpy LLVM expands inline)
        and no bounds checks."""
        b = self.b
        (kh, kw), (oh, ow) = call.kernel, call.out_hw
        (sh, sw), (ph, pw), (dh, dw) = call.stride, call.padding, call.dilation
        t = STORAGE[call.dtype]
        size = np.dtype(call.dtype).itemsize
        rows = sw > 1 and strided_rows_fit(call)

        def valid(extent, out_size, stride, pad, offset):
            # the outputs o with 0 <= o*stride - pad + offset < extent: [lo, hi)
            lo = max(0, -(-(pad - offset) // stride))
            last = extent - 1 + pad - offset
            hi = min(out_size, last // stride + 1) if last >= 0 else 0
            return min(lo, out_size), max(min(lo, out_size), hi)

        def zeros(at, count):
            if count:
                self.memset(self.element(cols, at, call.dtype), count * size)

        def channel(ci):
            plane_in = b.mul(ci, _const(call.h * call.w))
            if rows:
                for i in range(kh):
                    y_lo, y_hi = valid(call.h, oh, sh, ph, i * dh)
                    for j in range(kw):
                        row = b.mul(b.add(b.mul(ci, _const(kh * kw)), _const(i * kw + j)),
                                    _const(ld))
                        zeros(row, y_lo * ow)
                        zeros(b.add(row, _const(y_hi * ow)), (oh - y_hi) * ow)
                self._im2col_rows(call, x, cols, ld, ci, plane_in)
                return
            for i in range(kh):
                y_lo, y_hi = valid(call.h, oh, sh, ph, i * dh)
                for j in range(kw):
                    x_lo, x_hi = valid(call.w, ow, sw, pw, j * dw)
                    row = b.mul(b.add(b.mul(ci, _const(kh * kw)), _const(i * kw + j)),
                                _const(ld))
                    zeros(row, y_lo * ow)
                    zeros(b.add(row, _const(y_hi * ow)), (oh - y_hi) * ow)
                    if y_lo == y_hi:
                        continue

                    def out_row(oy, row=row, i=i, j=j, x_lo=x_lo, x_hi=x_hi):
                        start = b.add(row, b.mul(oy, _const(ow)))
                        zeros(start, x_lo)
                        zeros(b.add(start, _const(x_hi)), ow - x_hi)
                        if x_lo == x_hi:
                            return
                        iy = b.add(b.mul(oy, _const(sh)), _const(i * dh - ph))
                        src = b.add(b.add(plane_in, b.mul(iy, _const(call.w))),
                                    _const(x_lo * sw + j * dw - pw))
                        dst = b.add(start, _const(x_lo))
                        if sw == 1:
                            self.memcpy(self.element(cols, dst, call.dtype),
                                        self.element(x, src, call.dtype),
                                        _const((x_hi - x_lo) * size))
                            return

                        def copy(k):
                            v = b.load(self.element(x, b.add(src, b.mul(k, _const(sw))),
                                                    call.dtype), typ=t)
                            b.store(v, self.element(cols, b.add(dst, k), call.dtype))

                        self.loop(0, x_hi - x_lo, copy)

                    self.loop(y_lo, y_hi, out_row)

        self.loop(0, call.c, channel)

    def _im2col_rows(self, call: ConvCall, x, cols, ld: int, ci, plane_in) -> None:
        """_im2col's copies for channel ci of a strided convolution (strided_rows_fit): each
        row of x loaded once as a vector, and every output row that reads it (tap (i, j),
        output row oy with oy*sh - ph + i*dh = y) picked from it by a shuffle, its lanes in
        the padding zeros, and stored whole. The copy one value at a time that a stride
        above 1 otherwise takes cost ~0.5 ns a value (a DCGAN's stride-2 4x4 convolutions:
        most of the columns' time)."""
        b = self.b
        (kh, kw), (oh, ow) = call.kernel, call.out_hw
        (sh, sw), (ph, pw), (dh, dw) = call.stride, call.padding, call.dilation
        t = STORAGE[call.dtype]
        align = np.dtype(call.dtype).itemsize
        row_type = ir.VectorType(t, call.w)
        zero_row = ir.Constant(row_type, [0.0] * call.w)
        lanes = []
        for j in range(kw):
            picked = [ox * sw - pw + j * dw for ox in range(ow)]
            lanes.append(ir.Constant(ir.VectorType(I32, ow), [
                ir.Constant(I32, v if 0 <= v < call.w else call.w) for v in picked]))
        first_row = b.mul(ci, _const(kh * kw))
        for y in range(call.h):
            loaded = None
            for i in range(kh):
                offset = y + ph - i * dh
                if offset < 0 or offset % sh or offset // sh >= oh:
                    continue
                oy = offset // sh
                if loaded is None:
                    loaded = b.load(self.element(x, b.add(plane_in, _const(y * call.w)),
                                                 call.dtype), typ=row_type, align=align)
                for j in range(kw):
                    at = b.add(b.mul(b.add(first_row, _const(i * kw + j)), _const(ld)),
                               _const(oy * ow))
                    b.store(b.shuffle_vector(loaded, zero_row, lanes[j]),
                            self.element(cols, at, call.dtype), align=align)

    def memset(self, dst, nbytes: int) -> None:
        fn = self.module.globals.get("llvm.memset.p0.i64") or ir.Function(
            self.module, ir.FunctionType(ir.VoidType(), [POINTER, I8, I64, ir.IntType(1)]),
            name="llvm.memset.p0.i64")
        self.b.call(fn, [dst, ir.Constant(I8, 0), _const(nbytes), ir.Constant(ir.IntType(1), 0)])

    def _pool_rows(self, call: PoolCall, first, last) -> None:
        """whole_row_pool: per output row, its kh input rows loaded as vectors of w, and per
        tap (i, j) the lanes j, j + kw, ... of row i picked by a shuffle; the taps combined in
        the scalar loop's order with numpy's maximum (NaN wins, the later one on a tie)."""
        b = self.b
        (kh, kw), (oh, ow) = call.kernel, call.out_hw
        t = STORAGE[call.dtype]
        row = ir.VectorType(t, call.w)
        x, out = self.ref(call.x), self.ref(call.out)
        align = np.dtype(call.dtype).itemsize
        undefined = ir.Constant(row, ir.Undefined)

        def output_row(first_in, at_out):
            """Output row at element at_out from the kh input rows from row first_in."""
            src = b.mul(first_in, _const(call.w))
            loaded = [b.load(self.element(x, b.add(src, _const(i * call.w)), call.dtype),
                             typ=row, align=align) for i in range(kh)]
            acc = None
            for i in range(kh):
                for j in range(kw):
                    mask = ir.Constant(ir.VectorType(I32, ow),
                                       [ir.Constant(I32, j + kw * k) for k in range(ow)])
                    v = b.shuffle_vector(loaded[i], undefined, mask)
                    if acc is None:
                        acc = v
                    else:
                        keep = b.or_(b.fcmp_ordered(">=", acc, v),
                                     b.fcmp_unordered("uno", acc, acc))
                        acc = b.select(keep, acc, v)
            b.store(acc, self.element(out, at_out, call.dtype), align=align)

        if call.h == oh * kh:  # the planes' rows in one loop: output row r reads from r*kh
            self.loop(b.mul(first, _const(oh)), b.mul(last, _const(oh)),
                      lambda r: output_row(b.mul(r, _const(kh)), b.mul(r, _const(ow))))
            return

        def plane(p):
            self.loop(0, oh, lambda y: output_row(
                b.add(b.mul(p, _const(call.h)), b.mul(y, _const(kh))),
                b.mul(b.add(b.mul(p, _const(oh)), y), _const(ow))))

        self.loop(first, last, plane)

    def _StridedConvCall(self, call: StridedConvCall) -> None:
        if call.depthwise:
            planes = call.n * call.o
            if depthwise_shared(call):
                task = _DepthwiseTask(self, call).fn
                self.parallel_for(task, [self.ref(call.x), self.ref(call.weight),
                                         self.ref(call.out)], planes)
                return
            self._depthwise_planes(call, self.ref(call.x), self.ref(call.weight),
                                   self.ref(call.out), _const(0), _const(planes))
            return
        b = self.b
        (kh, kw), (oh, ow) = call.kernel, call.out_hw
        sn, sc, _, _ = call.x_strides
        cg, og = call.c // call.groups, call.o // call.groups
        depth, plane = cg * kh * kw, oh * ow
        x, weight, out = self.ref(call.x), self.ref(call.weight), self.ref(call.out)
        cols = None if call.cols is None else self.ref(call.cols)
        direct = conv_operand(call)

        def image(n):
            source = self.element(x, b.mul(n, _const(sn)), call.dtype)

            def group(g):
                channels = self.element(source, b.mul(g, _const(cg * sc)), call.dtype)
                if cols is None:
                    operand, ld, trans = channels, *direct
                else:
                    self._strided_im2col(call, channels, cg, cols)
                    operand, ld, trans = cols, plane, False
                rows = b.add(b.mul(n, _const(call.o)), b.mul(g, _const(og)))
                target = self.element(out, b.mul(rows, _const(plane)), call.dtype)
                w = self.element(weight, b.mul(g, _const(og * depth)), call.dtype)
                self._gemm(call.dtype, og, plane, depth, w, depth, operand, ld, trans, target,
                           plane)

            self.loop(0, call.groups, group)

        self.loop(0, call.n, image)

    def _tap_table(self, call):
        """A constant table, per tap (i, j) of the kernel: the output rows [y_lo, y_hi) and
        columns [x_lo, x_hi) whose tap falls inside the input, and the tap's input offsets
        i*dh - ph, j*dw - pw."""
        (kh, kw), (oh, ow) = call.kernel, call.out_hw
        (sh, sw), (ph, pw), (dh, dw) = call.stride, call.padding, call.dilation

        def valid(size, out_size, stride, pad, offset):
            lo = max(0, -(-(pad - offset) // stride))
            last = size - 1 + pad - offset
            hi = min(out_size, last // stride + 1) if last >= 0 else 0
            return lo, max(lo, hi)

        rows = [[*valid(call.h, oh, sh, ph, i * dh), *valid(call.w, ow, sw, pw, j * dw),
                 i * dh - ph, j * dw - pw] for i in range(kh) for j in range(kw)]
        table_type = ir.ArrayType(ir.ArrayType(I64, 6), len(rows))
        table = ir.GlobalVariable(self.module, table_type,
                                  name=f"{symbol(self.plan.name)}_taps{len(self.module.globals)}")
        table.global_constant = True
        table.linkage = "internal"
        table.initializer = ir.Constant(table_type, [
            ir.Constant(ir.ArrayType(I64, 6), [_const(v) for v in r]) for r in rows])

        def fields(tap):
            return [self.b.load(self.b.gep(table, [_const(0), tap, _const(f)], inbounds=True),
                                typ=I64) for f in range(6)]

        return fields

    def _strided_im2col(self, call: StridedConvCall, x, channels: int, cols) -> None:
        """cols[(ci*kh + i)*kw + j, oy*ow + ox] = x[ci, oy*sh - ph + i*dh, ox*sw - pw + j*dw]
        for the `channels` channels at x, read through call.x_strides; 0 outside x."""
        b = self.b
        (kh, kw), (oh, ow) = call.kernel, call.out_hw
        sh, sw = call.stride
        _, xc, xh, xw = call.x_strides
        t = STORAGE[call.dtype]
        zero = ir.Constant(t, 0.0)
        taps = self._tap_table(call)
        count = kh * kw

        def column_row(r):
            y_lo, y_hi, x_lo, x_hi, y_off, x_off = taps(b.urem(r, _const(count)))
            channel = b.mul(b.udiv(r, _const(count)), _const(xc))
            row = b.mul(r, _const(oh * ow))

            def out_row(oy):
                start = b.add(row, b.mul(oy, _const(ow)))
                inside = b.and_(b.icmp_signed(">=", oy, y_lo), b.icmp_signed("<", oy, y_hi))

                def zero_at(ox):
                    b.store(zero, self.element(cols, b.add(start, ox), call.dtype))

                with b.if_else(inside) as (then, otherwise):
                    with then:
                        iy = b.add(b.mul(oy, _const(sh)), y_off)
                        src = b.add(b.add(channel, b.mul(iy, _const(xh))),
                                    b.mul(x_off, _const(xw)))

                        def copy(ox):
                            at = b.add(src, b.mul(ox, _const(sw * xw)))
                            v = b.load(self.element(x, at, call.dtype), typ=t)
                            b.store(v, self.element(cols, b.add(start, ox), call.dtype))

                        self.loop(_const(0), x_lo, zero_at)
                        self.loop(x_lo, x_hi, copy)
                        self.loop(x_hi, _const(ow), zero_at)
                    with otherwise:
                        self.loop(0, ow, zero_at)

            self.loop(0, oh, out_row)

        self.loop(0, channels * count, column_row)

    def _depthwise_planes(self, call: StridedConvCall, x, weight, out, first, last) -> None:
        """Output planes [first, last) (image * o + channel) of a depthwise conv: each plane
        zeroed, then per tap, weight * the tap's shifted input added over the outputs it
        falls inside for (no bounds checks in the loop over a row)."""
        b = self.b
        (kh, kw), (oh, ow) = call.kernel, call.out_hw
        sh, sw = call.stride
        sn, sc, xh, xw = call.x_strides
        t = STORAGE[call.dtype]
        size = np.dtype(call.dtype).itemsize
        taps = self._tap_table(call)
        count = kh * kw
        per_group = call.o // call.groups
        memset = self.module.globals.get("llvm.memset.p0.i64") or ir.Function(
            self.module, ir.FunctionType(ir.VoidType(), [POINTER, I8, I64, ir.IntType(1)]),
            name="llvm.memset.p0.i64")

        def plane(p):
            n, oc = b.udiv(p, _const(call.o)), b.urem(p, _const(call.o))
            channel = b.udiv(oc, _const(per_group))
            src = self.element(x, b.add(b.mul(n, _const(sn)), b.mul(channel, _const(sc))),
                               call.dtype)
            dst = self.element(out, b.mul(p, _const(oh * ow)), call.dtype)
            b.call(memset, [dst, ir.Constant(I8, 0), _const(oh * ow * size),
                            ir.Constant(ir.IntType(1), 0)])

            def tap(k):
                y_lo, y_hi, x_lo, x_hi, y_off, x_off = taps(k)
                wt = b.load(self.element(weight, b.add(b.mul(oc, _const(count)), k),
                                         call.dtype), typ=t)

                def out_row(oy):
                    iy = b.add(b.mul(oy, _const(sh)), y_off)
                    row_in = self.element(src, b.add(b.mul(iy, _const(xh)),
                                                     b.mul(x_off, _const(xw))), call.dtype)
                    row_out = self.element(dst, b.mul(oy, _const(ow)), call.dtype)

                    def add(ox):
                        v = b.load(self.element(row_in, b.mul(ox, _const(sw * xw)), call.dtype),
                                   typ=t)
                        at = self.element(row_out, ox, call.dtype)
                        b.store(b.fadd(b.load(at, typ=t), b.fmul(wt, v)), at)

                    self.loop(x_lo, x_hi, add)

                self.loop(y_lo, y_hi, out_row)

            self.loop(0, count, tap)

        self.loop(first, last, plane)

    def _PoolCall(self, call: PoolCall) -> None:
        self._pool_planes(call, _const(0), _const(call.rows))

    def _pool_planes(self, call: PoolCall, first, last) -> None:
        """Planes [first, last) of a pooling."""
        if whole_row_pool(call):
            self._pool_rows(call, first, last)
            return
        b = self.b
        (kh, kw), (oh, ow) = call.kernel, call.out_hw
        (sh, sw), (ph, pw), (dh, dw) = call.stride, call.padding, call.dilation
        t = STORAGE[call.dtype]
        x, out = self.ref(call.x), self.ref(call.out)
        is_max = call.kind == "max"
        pad_value = ir.Constant(t, float("-inf") if is_max else 0.0)
        divisors = None
        if call.divisors is not None:
            table = ir.Constant(ir.ArrayType(t, len(call.divisors)),
                                [ir.Constant(t, d) for d in call.divisors])
            divisors = ir.GlobalVariable(self.module, table.type,
                                         name=f"{symbol(self.plan.name)}_div{id(call)}")
            divisors.global_constant = True
            divisors.linkage = "internal"
            divisors.initializer = table

        def plane(r):
            src = b.mul(r, _const(call.h * call.w))
            dst = b.mul(r, _const(oh * ow))

            def out_row(oy):
                def out_col(ox):
                    acc = None
                    for i in range(kh):
                        iy = b.add(b.mul(oy, _const(sh)), _const(i * dh - ph))
                        y_ok = b.and_(b.icmp_signed(">=", iy, _const(0)),
                                      b.icmp_signed("<", iy, _const(call.h)))
                        cy = b.select(y_ok, iy, _const(0))
                        for j in range(kw):
                            ix = b.add(b.mul(ox, _const(sw)), _const(j * dw - pw))
                            ok = b.and_(y_ok, b.and_(b.icmp_signed(">=", ix, _const(0)),
                                                     b.icmp_signed("<", ix, _const(call.w))))
                            cx = b.select(ok, ix, _const(0))
                            at = b.add(src, b.add(b.mul(cy, _const(call.w)), cx))
                            v = b.select(ok, b.load(self.element(x, at, call.dtype), typ=t),
                                         pad_value)
                            if acc is None:
                                acc = (b.select(b.fcmp_ordered(">=", pad_value, v), pad_value, v)
                                       if is_max else v)
                            elif is_max:  # numpy's maximum: (a >= b or isnan(a)) ? a : b
                                keep = b.or_(b.fcmp_ordered(">=", acc, v),
                                             b.fcmp_unordered("uno", acc, acc))
                                acc = b.select(keep, acc, v)
                            else:
                                acc = b.fadd(acc, v)
                    position = b.add(b.mul(oy, _const(ow)), ox)
                    if divisors is not None:
                        d = b.load(b.gep(divisors, [_const(0), position], inbounds=True), typ=t)
                        acc = b.fdiv(acc, d)
                    elif call.divisor is not None:
                        acc = b.fdiv(acc, ir.Constant(t, call.divisor))
                    b.store(acc, self.element(out, b.add(dst, position), call.dtype))

                self.loop(0, ow, out_col)

            self.loop(0, oh, out_row)

        self.loop(first, last, plane)


def whole_row_pool(call: PoolCall) -> bool:
    """Max pooling whose windows tile the plane without padding, dilation or overlap, rows
    of at most 64 elements: each output row is computed from its input rows as vectors."""
    return (call.kind == "max" and call.stride == call.kernel and call.dilation == (1, 1)
            and call.padding == (0, 0) and call.w <= 64
            and call.out_hw[1] * call.kernel[1] <= call.w
            and call.out_hw[0] * call.kernel[0] <= call.h)


def shares_items(call: AttentionCall) -> bool:
    """Whether an attention's (batch, head) items are shared with the pool, each chunk's
    scores on its thread's stack."""
    size = 4 if call.dtype == "float32" else 8
    return math.prod(call.batch) >= SHARED_ITEMS_MIN and call.l * call.s * size <= STACK_COLUMNS_MAX


def depthwise_shared(call: StridedConvCall) -> bool:
    """Whether a depthwise conv's output planes are shared with the pool."""
    work = call.n * call.o * call.out_hw[0] * call.out_hw[1] * call.kernel[0] * call.kernel[1]
    return call.n * call.o >= 2 and work >= DEPTHWISE_SHARED_MIN


def tiles_conv(call: ConvCall) -> bool:
    """Whether a convolution multiplies in register tiles (tiles.py) rather than by BLAS:
    float weights of at most TILED_WEIGHT_MAX bytes, or planes of whole vectors of at most
    TILED_PLANE_MAX positions, and columns the tiles may read whole vectors of (a pointwise
    convolution reads its image, unpadded, as its columns)."""
    plane = call.out_hw[0] * call.out_hw[1]
    whole = columns_ld(plane, call.dtype) == plane
    return ((tiled_weight(call.o, call.c * call.kernel[0] * call.kernel[1], call.dtype)
             or (whole and plane <= TILED_PLANE_MAX))
            and (call.cols is not None or whole))


def tiled_weight(o: int, depth: int, dtype: str) -> bool:
    """Whether an (o, depth) weight is small enough for the register tiles."""
    return o * depth * np.dtype(dtype).itemsize <= TILED_WEIGHT_MAX


def column_bytes(call: ConvCall) -> int:
    """The bytes of one image's columns (their rows columns_ld apart), or of its Winograd
    scratch."""
    if call.winograd:
        return winograd.scratch_elements(call) * np.dtype(call.dtype).itemsize
    depth = call.c * call.kernel[0] * call.kernel[1]
    plane = call.out_hw[0] * call.out_hw[1]
    return depth * columns_ld(plane, call.dtype) * np.dtype(call.dtype).itemsize


def conv_row_blocks(call: ConvCall) -> int:
    """The blocks of output channels a one-image convolution's pool task shares."""
    if call.winograd:
        return winograd.row_blocks(call)
    return row_blocks(call.o, plane_of(call), call.dtype)


def plane_of(call: ConvCall) -> int:
    return call.out_hw[0] * call.out_hw[1]


def shares_rows(call: ConvCall) -> bool:
    """Whether a convolution of one image shares its blocks of weight rows with the pool:
    in register tiles, and at least SHARED_ROWS_MIN multiply-adds (a smaller one ends before
    the workers would start)."""
    depth = call.c * call.kernel[0] * call.kernel[1]
    return (call.n == 1 and tiles_conv(call) and call.o * depth * plane_of(call) >= SHARED_ROWS_MIN
            and conv_row_blocks(call) > 1)


# _im2col_rows unrolls a channel's rows and taps: at most this many row copies, from rows of
# at most STRIDED_ROWS_MAX_WIDTH values
STRIDED_ROWS_MAX_COPIES = 1024
STRIDED_ROWS_MAX_WIDTH = 64


def strided_rows_fit(call: ConvCall) -> bool:
    """Whether a convolution's im2col copies its channels row by row (_im2col_rows)."""
    return (call.w <= STRIDED_ROWS_MAX_WIDTH and call.out_hw[1] <= STRIDED_ROWS_MAX_WIDTH
            and call.h * call.kernel[0] * call.kernel[1] <= STRIDED_ROWS_MAX_COPIES)


def shares_images(call: ConvCall) -> bool:
    """Whether a convolution's images are shared with the pool: each chunk's columns on its
    thread's stack (see STACK_COLUMNS_MAX), or larger ones in slots of `cols` (ConvCall.slots)."""
    return call.n > 1 and (column_bytes(call) <= STACK_COLUMNS_MAX or call.slots > 1)


def weight_gradient_sizes(conv: ConvCall) -> tuple[int, int, int]:
    """(depth, plane, ld) of a weight gradient's columns: c*kh*kw rows of oh*ow positions,
    the rows ld apart."""
    plane = conv.out_hw[0] * conv.out_hw[1]
    return conv.c * conv.kernel[0] * conv.kernel[1], plane, columns_ld(plane, conv.dtype)


def weight_gradient_slot(conv: ConvCall) -> int:
    """The elements of one slot of a weight gradient's scratch (ConvWeightCall): an image's
    columns, then an (o, depth) partial sum, rounded up to whole 64-byte lines."""
    depth, _, ld = weight_gradient_sizes(conv)
    line = 64 // np.dtype(conv.dtype).itemsize
    return depth * ld + -(-conv.o * depth // line) * line


def column_slots(n: int, per_image: int, threads: int) -> int:
    """The column slots (ConvCall.slots) of a convolution of n images whose columns take
    per_image bytes each, with `threads` threads: one per thread where the columns are too
    large for a stack and there are images to share, else 0. A 64-channel 3x3 convolution of
    32x32 images (2.4 MB of columns each) ran on one thread before: 15.9 ms at batch 32 with
    two threads, PyTorch 9.4."""
    if n < 2 or threads < 2 or per_image <= STACK_COLUMNS_MAX:
        return 0
    return min(n, threads)


class _Task(_EntryEmitter):
    """A pool task of the entry: `task(argv, start, end)`, an internal function of the
    entry's module whose pointers come from argv (the base of _ConvTask, _AttentionTask)."""

    def _task(self, parent: _EntryEmitter, kind: str):
        """Make the task's function and builder; its (start, end) arguments."""
        module = parent.module
        self.plan = parent.plan
        self.module = module
        name = f"{symbol(parent.plan.name)}_{kind}{len(module.globals)}"
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [POINTER, I64, I64]), name=name)
        fn.attributes.add("nounwind")
        fn.linkage = "internal"
        self.fn = fn
        self.argv, start, end = fn.args
        self.threads = None
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        self.bases = {}
        self.blas_int = parent.blas_int
        self.pool = None
        self.argv_buffer = None
        self._no_unroll = None
        return start, end


    def stack_buffer(self, nbytes: int, dtype: str):
        """An untyped pointer to nbytes of this task's stack, 64-byte aligned (untyped, so
        vectors as well as elements are stored through it)."""
        b = self.b
        stack = b.alloca(ir.ArrayType(STORAGE[dtype], nbytes // np.dtype(dtype).itemsize))
        stack.align = 64
        # llvmlite keeps the array's pointer type through a bitcast; a load makes it `ptr`
        slot = b.alloca(POINTER)
        b.store(stack, slot)
        return b.load(slot, typ=POINTER)

    def slot_images(self, s, call: ConvCall):
        """(first, last): the images [s*n // slots, (s+1)*n // slots) of slot s (i64)."""
        b = self.b
        first = b.udiv(b.mul(s, _const(call.n)), _const(call.slots))
        last = b.udiv(b.mul(b.add(s, _const(1)), _const(call.n)), _const(call.slots))
        return first, last


class _ConvTask(_Task):
    """`task(argv, start, end)`: a convolution's images [start, end), argv = x, weight, out,
    the GEMM, the epilogue's pointers; its columns on the stack of the thread that runs the
    chunk."""

    def __init__(self, parent: _EntryEmitter, call: ConvCall):
        start, end = self._task(parent, "conv")
        self.stack = None
        epilogue = call.epilogue
        extra = len(epilogue.refs) if epilogue is not None else 0
        if epilogue is not None:  # its pointers follow the GEMM's in argv
            epilogue = dataclasses.replace(
                epilogue, refs=tuple(Ref(4 + i) for i in range(extra)))
        local = dataclasses.replace(call, x=Ref(0), weight=Ref(1), out=Ref(2),
                                    epilogue=epilogue)
        if not call.slots:
            if call.cols is not None:
                self.stack = self.stack_buffer(column_bytes(call), call.dtype)
            self._conv_images(local, start, end)
            self.b.ret_void()
            return
        # [start, end) are slots: slot s takes images [s*n // slots, (s+1)*n // slots) and
        # its columns in the slot's part of argv's last pointer
        b = self.b
        cols = self._base(4 + extra)

        def part(s):
            self.stack = b.gep(cols, [b.mul(s, _const(column_bytes(call)))], inbounds=True,
                               source_etype=I8)
            self._conv_images(local, *self.slot_images(s, call))

        self.loop(start, end, part)
        self.b.ret_void()

    def gemm_arg(self, dtype: str) -> int:
        return 3

    def columns(self, call: ConvCall):
        return self.stack


class _ConvWeightTask(_Task):
    """`task(argv, start, end)`: slots [start, end) of a weight gradient (ConvWeightCall);
    argv = x, g, out, the GEMM, the scratch. Slot s sums images [s*n // slots,
    (s+1)*n // slots) into its partial sum, its columns in its slot."""

    def __init__(self, parent: _EntryEmitter, call: ConvWeightCall):
        start, end = self._task(parent, "conv_weight")
        conv = call.conv
        b = self.b
        x, g, out, cols = (self._base(i) for i in (0, 1, 2, 4))
        depth, _, ld = weight_gradient_sizes(conv)

        def part(s):
            at = b.mul(s, _const(weight_gradient_slot(conv)))
            columns = self.element(cols, at, conv.dtype)
            partial = self.element(cols, b.add(at, _const(depth * ld)), conv.dtype)
            self._weight_images(call, x, g, partial, columns, *self.slot_images(s, conv))

        self.loop(start, end, part)
        b.ret_void()

    def gemm_arg(self, dtype: str) -> int:
        return 3


class _DepthwiseTask(_Task):
    """`task(argv, start, end)`: a depthwise conv's output planes [start, end), argv = x,
    weight, out."""

    def __init__(self, parent: _EntryEmitter, call: StridedConvCall):
        start, end = self._task(parent, "depthwise")
        self._depthwise_planes(call, *(self._base(i) for i in range(3)), start, end)
        self.b.ret_void()


def chain_refs(call: ImageChain) -> list:
    """The distinct pointers an image chain's calls use, in order (its task's argv)."""
    refs = []
    for c in call.calls:
        found = [c.x, c.out]
        if isinstance(c, ConvCall):
            found.append(c.weight)
            if c.epilogue is not None:
                found += list(c.epilogue.refs)
        for r in found:
            if r not in refs:
                refs.append(r)
    return refs


class _ChainTask(_Task):
    """`task(argv, start, end)`: images [start, end) of an ImageChain, each through all its
    calls in turn; argv = chain_refs; the convolutions' columns on the stack of the thread
    that runs the chunk (one buffer, the largest they need)."""

    def __init__(self, parent: _EntryEmitter, call: ImageChain, refs: list):
        start, end = self._task(parent, "chain")
        local = {r: Ref(i) for i, r in enumerate(refs)}
        convs = [c for c in call.calls if isinstance(c, ConvCall) and c.cols is not None]
        self.stack = None
        if convs:
            self.stack = self.stack_buffer(max(column_bytes(c) for c in convs),
                                           convs[0].dtype)
        calls = []
        for c in call.calls:
            moved = dict(x=local[c.x], out=local[c.out])
            if isinstance(c, ConvCall):
                moved["weight"] = local[c.weight]
                if c.epilogue is not None:
                    moved["epilogue"] = dataclasses.replace(
                        c.epilogue, refs=tuple(local[r] for r in c.epilogue.refs))
            calls.append(dataclasses.replace(c, **moved))
        b = self.b

        def image(n):
            for c in calls:
                if isinstance(c, ConvCall):
                    self._conv_images(c, n, b.add(n, _const(1)))
                else:
                    planes = c.rows // call.n
                    first = b.mul(n, _const(planes))
                    self._pool_planes(c, first, b.add(first, _const(planes)))

        self.loop(start, end, image)
        self.b.ret_void()

    def columns(self, call: ConvCall):
        return self.stack if call.cols is not None else None


class _ConvRowsTask(_Task):
    """`task(argv, start, end)`: blocks [start, end) of weight rows (tiles.row_blocks) of a
    one-image convolution whose columns are made; argv = columns, weight, out, the
    epilogue's pointers."""

    def __init__(self, parent: _EntryEmitter, call: ConvCall):
        start, end = self._task(parent, "conv_rows")
        epilogue = None
        if call.epilogue is not None:
            epilogue = (call.epilogue.spec,
                        [self._base(3 + i) for i in range(len(call.epilogue.refs))],
                        call.epilogue.source, call.epilogue.channel)
        if call.winograd:  # argv's columns: the Winograd scratch, its V made
            winograd.emit_products(self, call, self._base(1), self._base(0), self._base(2),
                                   epilogue, blocks=(start, end))
        else:
            plane = plane_of(call)
            ld = plane if call.cols is None else columns_ld(plane, call.dtype)
            emit_tiled_gemm(self, call.dtype, call.o, plane,
                            call.c * call.kernel[0] * call.kernel[1], self._base(1),
                            self._base(0), ld, self._base(2), epilogue, blocks=(start, end))
        self.b.ret_void()


class _AttentionTask(_Task):
    """`task(argv, start, end)`: an attention's batch items [start, end), argv = q, k, v,
    out, lse[, mask], the GEMM; the scores on the stack of the thread that runs the chunk."""

    def __init__(self, parent: _EntryEmitter, call: AttentionCall):
        start, end = self._task(parent, "attention")
        stack = self.b.alloca(ir.ArrayType(STORAGE[call.dtype], call.l * call.s))
        scores = self.b.gep(stack, [_const(0), _const(0)], inbounds=True)
        self.operands = 5 if call.mask is None else 6
        pointers = [self._base(i) for i in range(self.operands)]
        self._attention_items(call, pointers, scores, start, end)
        self.b.ret_void()

    def gemm_arg(self, dtype: str) -> int:
        return self.operands


def emit_entry_module(plan: EntryPlan) -> str:
    """The LLVM IR of the plan's kernels and its entry function (named plan.name)."""
    module = ir.Module(name=symbol(plan.name) + "_module")
    seen = set()
    for call in plan.calls:
        if isinstance(call, KernelCall) and call.spec.name not in seen:
            seen.add(call.spec.name)
            emit_kernel(module, call.spec)
    _EntryEmitter(plan, module).emit()
    return str(module)
