"""LLVM IR for where(cond, a, b) over contiguous arrays: one pass that reads the condition's
bytes and each side's bits and writes the chosen bits.

numpy's where branches per element (~4 ns each on a random mask), and the bitwise blend that
runtime/kernels/elementwise.py uses instead takes two to four passes and a mask array of the
values' width: ~150 us for relu's backward over 262K floats on the Xeon, where one pass is
~20 us. Each side is an array of the output's shape or one value (a number, or a 0-d
array), fixed when the kernel is compiled, so the loop has no branch and LLVM vectorizes it.
The values move as integers of their width, so NaN payloads and -0.0 stay, as where's do.

The task (windows.task_header's calling convention) writes out[start:end]. argv: cond, a, b,
out; a side that is one value points at it.

A condition that repeats along leading dims (an attention's causal mask, (1, 1, T, T), over
scores of (B, H, T, T): masked_fill written by hand in GPT code) has the `repeated` form: its
rows are the repeats, each `period` elements (an argv word) long, and the condition's
elements are read again for each, where numpy's blend made a broadcast mask array of the
values' size and two passes.
"""

from __future__ import annotations

from .windows import task_header

_BITS = {"float32": "i32", "float64": "i64"}


def select_name(dtype: str, a_scalar: bool, b_scalar: bool, repeated: bool = False) -> str:
    sides = "".join("s" if scalar else "a" for scalar in (a_scalar, b_scalar))
    return f"ember_select_{dtype}_{sides}" + ("_repeated" if repeated else "")


def select_ir(dtype: str, a_scalar: bool, b_scalar: bool, repeated: bool = False) -> str:
    """The task out[i] = cond[i] ? a[i] : b[i] for i in [start, end) (a[0] for a side that
    is one value). cond holds one byte per element, nonzero for true. repeated: [start, end)
    are rows of `period` elements (argv's fifth word), and row r reads cond[0:period]."""
    ty = _BITS[dtype]
    name = select_name(dtype, a_scalar, b_scalar, repeated)
    words = [("cond", "ptr"), ("a", "ptr"), ("b", "ptr"), ("out", "ptr")]
    if repeated:
        words.append(("period", "i64"))
    lines = task_header(name, words)
    for side, scalar in (("a", a_scalar), ("b", b_scalar)):
        if scalar:
            lines.append(f"  %{side}.one = load {ty}, ptr %{side}")
    if repeated:
        # the element range of rows [start, end); the condition's index is i - the row's start
        lines += [
            "  %rows = icmp slt i64 %start, %end",
            "  %wide = icmp sgt i64 %period, 0",
            "  %any = and i1 %rows, %wide",
            "  br i1 %any, label %row, label %exit",
            "row:",
            "  %r = phi i64 [ %start, %entry ], [ %r.next, %row.end ]",
            "  %base = mul i64 %r, %period",
            "  br label %loop",
            "loop:",
            "  %j = phi i64 [ 0, %row ], [ %j.next, %loop ]",
            "  %i = add i64 %base, %j",
            "  %cp = getelementptr inbounds i8, ptr %cond, i64 %j",
        ]
    else:
        lines += [
            "  %any = icmp slt i64 %start, %end",
            "  br i1 %any, label %loop, label %exit",
            "loop:",
            "  %i = phi i64 [ %start, %entry ], [ %next, %loop ]",
            "  %cp = getelementptr inbounds i8, ptr %cond, i64 %i",
        ]
    lines += [
        "  %c = load i8, ptr %cp",
        "  %take = icmp ne i8 %c, 0",
    ]
    for side, scalar in (("a", a_scalar), ("b", b_scalar)):
        if scalar:
            lines.append(f"  %{side}.v = add {ty} %{side}.one, 0")
        else:
            lines += [f"  %{side}.p = getelementptr inbounds {ty}, ptr %{side}, i64 %i",
                      f"  %{side}.v = load {ty}, ptr %{side}.p"]
    lines += [
        f"  %v = select i1 %take, {ty} %a.v, {ty} %b.v",
        f"  %op = getelementptr inbounds {ty}, ptr %out, i64 %i",
        f"  store {ty} %v, ptr %op",
    ]
    if repeated:
        lines += [
            "  %j.next = add i64 %j, 1",
            "  %more = icmp slt i64 %j.next, %period",
            "  br i1 %more, label %loop, label %row.end",
            "row.end:",
            "  %r.next = add i64 %r, 1",
            "  %rows.more = icmp slt i64 %r.next, %end",
            "  br i1 %rows.more, label %row, label %exit",
        ]
    else:
        lines += [
            "  %next = add i64 %i, 1",
            "  %more = icmp slt i64 %next, %end",
            "  br i1 %more, label %loop, label %exit",
        ]
    lines += [
        "exit:",
        "  ret void",
        "}",
        "",
    ]
    return "\n".join(lines)
