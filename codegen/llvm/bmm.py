"""LLVM IR of a stack of small matrix products, C[u] = A[u] @ B[u], specialized to one shape.

Attention written out by hand over (B, H, T, D), `q @ k.transpose(-2, -1)` and `att @ v` and
their gradients, is a stack of small products ((16, 16) @ (16, 16), 128 of them, in
makemore's Transformer). numpy's matmul runs each as its own BLAS call (~140 ns of call for
~100 of work); a general GEMM packs and tiles for sizes it never reaches. Here M, N and K are
constants of the kernel (its name says them), so the loops over a matrix are straight-line
code LLVM schedules whole:

- op(B)'s K rows are copied once per matrix into a stack buffer, [K][NV * lanes], the
  columns past N zero: a vector load per row where B's columns are contiguous, a gather
  where B is read transposed (k.transpose(-2, -1)).
- C's rows go in blocks of R, R * NV accumulators (at most ACCUMULATORS registers); per depth,
  one broadcast of op(A)'s element per row (a row-major or a transposed A) and one aligned
  load of the buffer per vector, R * NV fused multiply-adds. Stored with a mask past N.

The task `void task(i64 *argv, i64 start, i64 end)` runs matrices [start, end):

    argv = A, A's strides between matrices (elements: outer, inner), lda, B, its strides,
           ldb, C, its stride, ldc, inner

The stack is two levels deep, matrix u at (u // inner, u % inner): q of
x.view(B, T, H, D).transpose(1, 2) steps by T * H * D along B and by D along H. lda and ldb
are the strides of op(A)'s and op(B)'s non-unit dimension (row-major: of a row; transposed:
of a column), as cblas has them; a stride 0 repeats one matrix.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from .emit import I32, I64, POINTER, STORAGE, counted_loop
from .tiles import ACCUMULATORS, VECTOR_BYTES, lanes, splat

WORDS = 12
MAX_COLUMN_VECTORS = 4  # N up to 4 vectors of lanes (64 floats, 32 doubles)
MAX_DEPTH = 256  # the buffer, K x N, stays in L1


def fits(dtype: str, m: int, n: int, k: int) -> bool:
    """Whether one (m, k) @ (k, n) product of dtype has a kernel of this kind."""
    return 0 < n <= MAX_COLUMN_VECTORS * lanes(dtype) and 0 < k <= MAX_DEPTH and m > 0


def bmm_name(dtype: str, m: int, n: int, k: int, trans_a: bool, trans_b: bool) -> str:
    return f"ember_bmm_{dtype}_{m}x{n}x{k}_{'t' if trans_a else 'n'}{'t' if trans_b else 'n'}"


def bmm_ir(dtype: str, m: int, n: int, k: int, trans_a: bool, trans_b: bool) -> str:
    name = bmm_name(dtype, m, n, k, trans_a, trans_b)
    module = ir.Module(name=name)
    t = STORAGE[dtype]
    width = lanes(dtype)
    vec = ir.VectorType(t, width)
    mask_type = ir.VectorType(ir.IntType(1), width)
    size = np.dtype(dtype).itemsize
    vectors = -(-n // width)
    rows_per_block = max(1, min(m, ACCUMULATORS // vectors))
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [POINTER, I64, I64]), name=name)
    argv, start, end = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    words = [b.load(b.gep(argv, [ir.Constant(I64, i)], source_etype=I64), typ=I64)
             for i in range(WORDS)]
    (a_w, outer_a, inner_a, lda, b_w, outer_b, inner_b, ldb, c_w, stride_c, ldc,
     inner) = words
    buffer = b.alloca(ir.ArrayType(t, k * vectors * width))
    buffer.align = VECTOR_BYTES
    buffer.type = POINTER
    zero = ir.Constant(vec, [ir.Constant(t, 0.0)] * width)

    def c64(v: int) -> ir.Constant:
        return ir.Constant(I64, v)

    def at(base, index):
        return b.gep(base, [index], inbounds=True, source_etype=t)

    def intrinsic(name: str, ret, args) -> ir.Function:
        return module.globals.get(name) or ir.Function(module, ir.FunctionType(ret, args),
                                                       name=name)

    suffix = f"v{width}f{size * 8}"
    masked_load = intrinsic(f"llvm.masked.load.{suffix}.p0", vec,
                            [POINTER, I32, mask_type, vec])
    masked_store = intrinsic(f"llvm.masked.store.{suffix}.p0", ir.VoidType(),
                             [vec, POINTER, I32, mask_type])
    pointers_type = ir.VectorType(POINTER, width)
    gather = intrinsic(f"llvm.masked.gather.{suffix}.v{width}p0", vec,
                       [pointers_type, I32, mask_type, vec])
    fma = intrinsic(f"llvm.fma.{suffix}", vec, [vec] * 3)
    align = ir.Constant(I32, size)
    # lane masks of each vector of columns: all lanes but in the last, past N
    masks = [ir.Constant(mask_type, [ir.Constant(ir.IntType(1), int(v * width + i < n))
                                     for i in range(width)]) for v in range(vectors)]
    iota = [ir.Constant(ir.VectorType(I64, width), [ir.Constant(I64, v * width + i)
                                                    for i in range(width)])
            for v in range(vectors)]

    def matrix(u):
        outer, within = b.sdiv(u, inner), b.srem(u, inner)

        def offset(outer_stride, inner_stride):
            return b.add(b.mul(outer, outer_stride), b.mul(within, inner_stride))

        a = at(b.inttoptr(a_w, POINTER), offset(outer_a, inner_a))
        source = at(b.inttoptr(b_w, POINTER), offset(outer_b, inner_b))
        c = at(b.inttoptr(c_w, POINTER), b.mul(u, stride_c))
        if trans_b:  # op(B)[d, j] at j * ldb + d: a gather per row of the buffer
            offsets = [b.mul(lanes_at, splat(b, ldb, ir.VectorType(I64, width)))
                       for lanes_at in iota]

            def pack(d):
                base = at(source, d)
                for v in range(vectors):
                    pointers = b.gep(base, [offsets[v]], inbounds=True, source_etype=t)
                    pointers.type = pointers_type  # llvmlite types a GEP as scalar
                    value = b.call(gather, [pointers, align, masks[v], zero])
                    b.store(value, at(buffer, b.add(b.mul(d, c64(vectors * width)),
                                                    c64(v * width))), align=VECTOR_BYTES)
        else:
            def pack(d):
                row = at(source, b.mul(d, ldb))
                for v in range(vectors):
                    value = b.call(masked_load, [at(row, c64(v * width)), align, masks[v],
                                                 zero])
                    b.store(value, at(buffer, b.add(b.mul(d, c64(vectors * width)),
                                                    c64(v * width))), align=VECTOR_BYTES)
        counted_loop(b, 0, k, pack)
        def block(row0, count):
            """rows row0 .. row0 + count of C (row0 an i64 value, count a constant)."""
            # op(A)[i, d]: row-major at i * lda + d, transposed at d * lda + i
            if trans_a:
                starts = [at(a, b.add(row0, c64(r))) for r in range(count)]
                step_a = lda
            else:
                starts = [at(a, b.mul(b.add(row0, c64(r)), lda)) for r in range(count)]
                step_a = c64(1)

            def depth(d, acc):
                loaded = [b.load(at(buffer, b.add(b.mul(d, c64(vectors * width)),
                                                  c64(v * width))), typ=vec,
                                 align=VECTOR_BYTES) for v in range(vectors)]
                out = []
                for r, first in enumerate(starts):
                    x = splat(b, b.load(at(first, b.mul(d, step_a)), typ=t), vec)
                    for v in range(vectors):
                        out.append(b.call(fma, [x, loaded[v], acc[r * vectors + v]]))
                return out

            acc = counted_loop(b, 0, k, depth, carried=[zero] * (count * vectors))
            for r in range(count):
                row = at(c, b.mul(b.add(row0, c64(r)), ldc))
                for v in range(vectors):
                    b.call(masked_store, [acc[r * vectors + v], at(row, c64(v * width)),
                                          align, masks[v]])

        # the whole blocks in a loop (one copy of the code whatever M is), then the rest
        whole = m // rows_per_block
        counted_loop(b, 0, whole,
                     lambda i: block(b.mul(i, c64(rows_per_block)), rows_per_block))
        if m % rows_per_block:
            block(c64(whole * rows_per_block), m % rows_per_block)

    counted_loop(b, start, end, matrix)
    b.ret_void()
    return str(module)
