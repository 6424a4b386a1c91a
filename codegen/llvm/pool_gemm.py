"""LLVM IR of the pool task that runs one GEMM as independent single-threaded BLAS calls.

OpenBLAS threads a GEMM by sharing packed panels between its threads, which wait for each
other at every panel; on the 2-core Xeon a (512, 128) @ (128, 512) took 293 us on two of its
threads, while either half of the rows took 213 us alone on one (PyTorch's MKL: 190). So the
pool cuts C into blocks of rows (or of columns, when it has more of them) and each thread
calls cblas_?gemm on its own block: nothing is shared but the read-only operands.

    void task(i64 *argv, i64 start, i64 end)

over units [start, end) of `unit` rows (columns) of C. argv: the cblas function, transA,
transB (0 or 1), axis (0: rows of C, 1: its columns), M, N, K, A, lda, B, ldb, C, ldc, unit,
accumulate (0 or 1), all row-major (CblasRowMajor): C = op(A) @ op(B), or C += op(A) @ op(B)
(beta = 1) where accumulate is 1.
"""

from __future__ import annotations

from .windows import IR_TYPES, task_header

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def gemm_task_name(dtype: str, int_bits: int) -> str:
    return f"ember_pool_gemm_{dtype}_i{int_bits}"


def gemm_task_ir(dtype: str, int_bits: int) -> str:
    """The task for dtype (float32, float64) and a cblas whose integers are int_bits wide
    (64 for ILP64 builds such as numpy's scipy-openblas64)."""
    ty = IR_TYPES[dtype]
    it = f"i{int_bits}"
    name = gemm_task_name(dtype, int_bits)
    words = [("fn", "ptr"), ("ta", "i64"), ("tb", "i64"), ("axis", "i64"), ("m", "i64"),
             ("n", "i64"), ("k", "i64"), ("A", "ptr"), ("lda", "i64"), ("B", "ptr"),
             ("ldb", "i64"), ("C", "ptr"), ("ldc", "i64"), ("unit", "i64"),
             ("accumulate", "i64")]
    lines = task_header(name, words)

    def narrow(value: str) -> str:
        if int_bits == 64:
            return f"i64 %{value}"
        lines.append(f"  %{value}.n = trunc i64 %{value} to {it}")
        return f"{it} %{value}.n"

    lines += [
        "  %cols = icmp ne i64 %axis, 0",
        "  %total = select i1 %cols, i64 %n, i64 %m",
        "  %lo.u = mul i64 %start, %unit",
        "  %hi.u = mul i64 %end, %unit",
        "  %lo.big = icmp ugt i64 %lo.u, %total",
        "  %lo = select i1 %lo.big, i64 %total, i64 %lo.u",
        "  %hi.big = icmp ugt i64 %hi.u, %total",
        "  %hi = select i1 %hi.big, i64 %total, i64 %hi.u",
        "  %count = sub i64 %hi, %lo",
        "  %none = icmp eq i64 %count, 0",
        "  br i1 %none, label %exit, label %call",
        "call:",
        # rows of C: rows of op(A), at A + lo * lda (A^T: column lo of A, A + lo)
        "  %a.row = mul i64 %lo, %lda",
        "  %ta.on = icmp ne i64 %ta, 0",
        "  %a.rows = select i1 %ta.on, i64 %lo, i64 %a.row",
        # columns of C: columns of op(B), at B + lo (B^T: row lo of B, B + lo * ldb)
        "  %b.row = mul i64 %lo, %ldb",
        "  %tb.on = icmp ne i64 %tb, 0",
        "  %b.cols = select i1 %tb.on, i64 %b.row, i64 %lo",
        "  %a.off = select i1 %cols, i64 0, i64 %a.rows",
        "  %b.off = select i1 %cols, i64 %b.cols, i64 0",
        "  %c.row = mul i64 %lo, %ldc",
        "  %c.off = select i1 %cols, i64 %lo, i64 %c.row",
        f"  %a.p = getelementptr inbounds {ty}, ptr %A, i64 %a.off",
        f"  %b.p = getelementptr inbounds {ty}, ptr %B, i64 %b.off",
        f"  %c.p = getelementptr inbounds {ty}, ptr %C, i64 %c.off",
        "  %mm = select i1 %cols, i64 %m, i64 %count",
        "  %nn = select i1 %cols, i64 %count, i64 %n",
        f"  %ta.flag = select i1 %ta.on, i32 {TRANS}, i32 {NO_TRANS}",
        f"  %tb.flag = select i1 %tb.on, i32 {TRANS}, i32 {NO_TRANS}",
        "  %adds = icmp ne i64 %accumulate, 0",
        f"  %beta = select i1 %adds, {ty} 1.0, {ty} 0.0",
    ]
    m, n, k = narrow("mm"), narrow("nn"), narrow("k")
    lda, ldb, ldc = narrow("lda"), narrow("ldb"), narrow("ldc")
    lines += [
        f"  call void %fn(i32 {ROW_MAJOR}, i32 %ta.flag, i32 %tb.flag, {m}, {n}, {k}, "
        f"{ty} 1.0, ptr %a.p, {lda}, ptr %b.p, {ldb}, {ty} %beta, ptr %c.p, {ldc})",
        "  br label %exit",
        "exit:",
        "  ret void",
        "}",
    ]
    return "\n".join(lines) + "\n"
