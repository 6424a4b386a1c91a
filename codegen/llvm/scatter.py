"""LLVM IR for eager index_add along the leading dim: out[index[i], :] += src[i, :].

An embedding's backward is one such call (the gradient rows added at the token ids). numpy
has no fast form of it: np.add.at and np.add.reduceat walk element by element (~250-550 us
for 512 rows of 128 on an AMD EPYC), where this loop is a vectorized row add per index.

The task runs over column ranges [start, end) of the rows, so the native pool may split the
columns between threads; within its columns each task adds the rows in index order, so equal
indices accumulate in the order PyTorch's CPU index_add adds them.

    void task(i64 *argv, i64 start, i64 end)
    argv: out, src, index (int64), n (rows of src), width (columns)
"""

from __future__ import annotations

from .windows import IR_TYPES, task_header


def index_add_rows_name(dtype: str) -> str:
    return f"ember_index_add_rows_{dtype}"


def index_add_rows_ir(dtype: str) -> str:
    ty = IR_TYPES[dtype]
    name = index_add_rows_name(dtype)
    lines = task_header(name, [("out", "ptr"), ("src", "ptr"), ("index", "ptr"),
                               ("n", "i64"), ("width", "i64")])
    lines += [
        "  %none = icmp sge i64 %start, %end",
        "  %norows = icmp sle i64 %n, 0",
        "  %skip = or i1 %none, %norows",
        "  br i1 %skip, label %exit, label %row",
        "row:",
        "  %i = phi i64 [ 0, %entry ], [ %i1, %rowend ]",
        "  %at = getelementptr i64, ptr %index, i64 %i",
        "  %r = load i64, ptr %at",
        "  %obase = mul i64 %r, %width",
        "  %sbase = mul i64 %i, %width",
        "  br label %col",
        "col:",
        "  %c = phi i64 [ %start, %row ], [ %c1, %col ]",
        "  %oi = add i64 %obase, %c",
        "  %si = add i64 %sbase, %c",
        f"  %op = getelementptr {ty}, ptr %out, i64 %oi",
        f"  %sp = getelementptr {ty}, ptr %src, i64 %si",
        f"  %o = load {ty}, ptr %op",
        f"  %s = load {ty}, ptr %sp",
        f"  %sum = fadd {ty} %o, %s",
        f"  store {ty} %sum, ptr %op",
        "  %c1 = add i64 %c, 1",
        "  %more = icmp slt i64 %c1, %end",
        "  br i1 %more, label %col, label %rowend",
        "rowend:",
        "  %i1 = add i64 %i, 1",
        "  %rows = icmp slt i64 %i1, %n",
        "  br i1 %rows, label %row, label %exit",
        "exit:",
        "  ret void",
        "}",
    ]
    return "\n".join(lines) + "\n"
