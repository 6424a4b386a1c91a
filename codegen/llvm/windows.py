"""LLVM IR for the window kernels numpy runs slowly: tiled max pooling and the backward of any
max pooling, with the pieces other window kernels share (task_header, tap_offsets, tap_load,
plane_loops; depthwise.py's convolutions use them; im2col and col2im are in columns.py).

numpy does these as one strided pass per kernel tap, and when the windows are small (2x2 max
pooling, a 3x3 convolution over 8x8 images) its inner loops run 4 or 8 elements between
Python-level iterator steps: a (64, 64, 8, 8) max-pool backward took ~600 us. Written as plain
loops they are a few microseconds of arithmetic per thousand windows.

Every function is a task of the native pool (codegen/llvm/pool.py),

    void task(i64 *argv, i64 start, i64 end)

over rows [start, end): window rows (N*C*OH), or whole planes (N*C) where windows overlap,
so that no two rows write the same memory.
argv holds pointers and sizes as 64-bit words. The kernel size is a compile-time constant
(its taps are unrolled); everything else is read from argv.
"""

from __future__ import annotations

IR_TYPES = {"float32": "float", "float64": "double"}


def task_header(name: str, words: list[tuple[str, str]]) -> list[str]:
    """The task: every argv word loaded and passed to the body, `name`.body, whose pointer
    parameters are noalias (the arrays never overlap), so LLVM may vectorize its loops; the
    body's lines follow, starting at its entry block."""
    lines = [f"define void @{name}(ptr %argv, i64 %start, i64 %end) {{", "entry:"]
    params = []
    for k, (word, kind) in enumerate(words):
        lines.append(f"  %a{k} = getelementptr i64, ptr %argv, i64 {k}")
        lines.append(f"  %{word} = load {kind}, ptr %a{k}")
        params.append(f"{kind} %{word}")
    lines.append(f"  call void @{name}.body({', '.join(params)}, i64 %start, i64 %end)")
    lines += ["  ret void", "}", ""]
    formals = [f"ptr noalias %{w}" if kind == "ptr" else f"i64 %{w}" for w, kind in words]
    lines.append(f"define internal void @{name}.body({', '.join(formals)}, i64 %start, "
                 f"i64 %end) alwaysinline {{")
    lines.append("entry:")
    return lines


# on the selects of a window's winner: random data takes either side half the time, and
# without it x86's cmov conversion turned them into branches in the loops too short to
# vectorize (OW = 4 for the digits CNN's 8x8 planes), a misprediction per tap: 0.85 ms for
# a (64, 64, 8, 8) backward on the Xeon, 0.23 ms with it
UNPREDICTABLE = ", !unpredictable !0"


def tap_offsets(width: str, kh: int, kw: int, dh: int = 1, dw: int = 1) -> list[str]:
    """%off{t}: tap t = (i, j)'s offset from its window's first element, i*dh rows of %{width}
    elements plus j*dw, taps in row-major order."""
    lines = []
    for i in range(kh):
        for j in range(kw):
            t = i * kw + j
            lines.append(f"  %iw{t} = mul i64 %{width}, {i * dh}")
            lines.append(f"  %off{t} = add i64 %iw{t}, {j * dw}")
    return lines


def tap_load(ty: str, t: int) -> list[str]:
    """%v{t}: tap t of the window at %base in %x (its index %idx{t})."""
    return [f"  %idx{t} = add i64 %base, %off{t}",
            f"  %p{t} = getelementptr {ty}, ptr %x, i64 %idx{t}",
            f"  %v{t} = load {ty}, ptr %p{t}"]


def plane_loops(sh: int, sw: int, per_plane: list[str] = ()) -> list[str]:
    """The opening of a task over whole planes (rows [start, end) are planes of HP x WP in,
    OH x OW out, windows sh rows and sw columns apart): nothing runs for an empty range or
    output. Defines %r (the plane; per_plane's lines run once for it), %xb and %ob (its first
    input and output element), %oh, %rb and %orow (an output row's), %o and %base (an output
    element and its window's first input element); the caller's column loop branches back to
    `col` and on to `row_end` (plane_loops_end)."""
    return [
        "  %plane = mul i64 %HP, %WP",
        "  %oplane = mul i64 %OH, %OW",
        f"  %rowstep = mul i64 %WP, {sh}",
        "  %none = icmp sge i64 %start, %end",
        "  %norows = icmp sle i64 %OH, 0",
        "  %nocols = icmp sle i64 %OW, 0",
        "  %empty = or i1 %norows, %nocols",
        "  %skip = or i1 %none, %empty",
        "  br i1 %skip, label %exit, label %plane_top",
        "plane_top:",
        "  %r = phi i64 [ %start, %entry ], [ %r1, %plane_end ]",
        *per_plane,
        "  %xb = mul i64 %r, %plane",
        "  %ob = mul i64 %r, %oplane",
        "  br label %row",
        "row:",
        "  %oh = phi i64 [ 0, %plane_top ], [ %oh1, %row_end ]",
        "  %rowoff = mul i64 %oh, %rowstep",
        "  %rb = add i64 %xb, %rowoff",
        "  %or0 = mul i64 %oh, %OW",
        "  %orow = add i64 %ob, %or0",
        "  br label %col",
        "col:",
        "  %o = phi i64 [ 0, %row ], [ %o1, %col ]",
        f"  %ok = mul i64 %o, {sw}",
        "  %base = add i64 %rb, %ok",
    ]


def plane_loops_end() -> list[str]:
    """The close of plane_loops: the next output row, the next plane, and the task's end."""
    return [
        "row_end:",
        "  %oh1 = add i64 %oh, 1",
        "  %hmore = icmp slt i64 %oh1, %OH",
        "  br i1 %hmore, label %row, label %plane_end",
        "plane_end:",
        "  %r1 = add i64 %r, 1",
        "  %rmore = icmp slt i64 %r1, %end",
        "  br i1 %rmore, label %plane_top, label %exit",
        "exit:",
        "  ret void",
        "}",
    ]


def _winner(ty: str, taps: int) -> list[str]:
    """The lines that read each tap t at %base + %off{t} of %x and leave the window's value
    in %best{last} and its winner's index in %win{last}: the first maximum, or the first NaN
    (which is also the forward's value, as NaN propagates): PyTorch's rule."""
    lines = []
    for t in range(taps):
        lines += tap_load(ty, t)
        if t == 0:  # the first tap as read (v0 + 0.0 would turn -0.0 into 0.0)
            lines.append(f"  %best0 = select i1 true, {ty} %v0, {ty} %v0")
            lines.append("  %win0 = add i64 %idx0, 0")
            continue
        lines += [
            f"  %gt{t} = fcmp ogt {ty} %v{t}, %best{t - 1}",
            f"  %nan{t} = fcmp uno {ty} %v{t}, 0.0",
            f"  %num{t} = fcmp ord {ty} %best{t - 1}, 0.0",
            f"  %firstnan{t} = and i1 %nan{t}, %num{t}",
            f"  %take{t} = or i1 %gt{t}, %firstnan{t}",
            f"  %best{t} = select i1 %take{t}, {ty} %v{t}, {ty} %best{t - 1}{UNPREDICTABLE}",
            f"  %win{t} = select i1 %take{t}, i64 %idx{t}, i64 %win{t - 1}{UNPREDICTABLE}",
        ]
    return lines


def max_pool_name(mode: str, dtype: str, kh: int, kw: int) -> str:
    return f"ember_max_pool_{mode}_{dtype}_{kh}x{kw}"


def max_pool_ir(mode: str, dtype: str, kh: int, kw: int) -> str:
    """Max pooling over windows that tile the input (stride == kernel, no padding): `fwd`
    writes each window's maximum, `bwd` stores each output gradient at its window's winning
    element of `out`, which starts zeroed. The winner is the first maximum, or the first NaN
    (which is also the forward's value, as NaN propagates): PyTorch's rule.

    argv: x, out, g (bwd), W (input width), OW (output width). Rows: N*C*OH."""
    ty = IR_TYPES[dtype]
    name = max_pool_name(mode, dtype, kh, kw)
    lines = task_header(name, [("x", "ptr"), ("out", "ptr"), ("g", "ptr"), ("W", "i64"),
                           ("OW", "i64")])
    taps = kh * kw
    lines.append(f"  %rowstride = mul i64 %W, {kh}")
    lines += tap_offsets("W", kh, kw)
    lines += [
        "  %none = icmp sge i64 %start, %end",
        "  %nocols = icmp sle i64 %OW, 0",
        "  %skip = or i1 %none, %nocols",
        "  br i1 %skip, label %exit, label %row",
        "row:",
        "  %r = phi i64 [ %start, %entry ], [ %r1, %rowend ]",
        "  %rb = mul i64 %r, %rowstride",
        "  %gb = mul i64 %r, %OW",
        "  br label %col",
        "col:",
        "  %o = phi i64 [ 0, %row ], [ %o1, %col ]",
        f"  %ok = mul i64 %o, {kw}",
        "  %base = add i64 %rb, %ok",
    ]
    lines += _winner(ty, taps)
    last = taps - 1
    lines.append("  %gi = add i64 %gb, %o")
    if mode == "fwd":
        lines.append(f"  %po = getelementptr {ty}, ptr %out, i64 %gi")
        lines.append(f"  store {ty} %best{last}, ptr %po")
    else:
        # out starts zeroed: the gradient is stored at the winner alone
        lines.append(f"  %pg = getelementptr {ty}, ptr %g, i64 %gi")
        lines.append(f"  %gv = load {ty}, ptr %pg")
        lines.append(f"  %q = getelementptr {ty}, ptr %out, i64 %win{last}")
        lines.append(f"  store {ty} %gv, ptr %q")
    lines += [
        "  %o1 = add i64 %o, 1",
        "  %more = icmp slt i64 %o1, %OW",
        "  br i1 %more, label %col, label %rowend",
        "rowend:",
        "  %r1 = add i64 %r, 1",
        "  %rmore = icmp slt i64 %r1, %end",
        "  br i1 %rmore, label %row, label %exit",
        "exit:",
        "  ret void",
        "}",
        "!0 = !{}",
    ]
    return "\n".join(lines) + "\n"


def max_pool_planes_name(dtype: str, geometry: tuple) -> str:
    return f"ember_max_pool_planes_bwd_{dtype}_" + "_".join(map(str, geometry))


def max_pool_planes_ir(dtype: str, geometry: tuple) -> str:
    """Max pooling's backward for any windows (overlapping, strided, dilated) over a padded
    input: each output gradient is added at its window's winner (the tiled kernel's rule,
    _winner). Windows that overlap may share a winner, so a task takes whole planes and adds
    in order; `out` (the padded input's gradient) starts zeroed. A row of windows finds its
    winners first (into a scratch row) and adds after: with the add in the same loop, each
    window's load of `out` waited for the last window's whole compare chain (the store's
    address), 14 ns a 3x3 window against ~3.

    geometry (compile-time): kh, kw, stride_h, stride_w, dilation_h, dilation_w.
    argv: x (padded, N*C planes of HP x WP), out (as x), g (N*C planes of OH x OW), HP, WP,
    OH, OW. Rows: N*C planes."""
    kh, kw, sh, sw, dh, dw = geometry
    ty = IR_TYPES[dtype]
    name = max_pool_planes_name(dtype, geometry)
    lines = task_header(name, [("x", "ptr"), ("out", "ptr"), ("g", "ptr"), ("HP", "i64"),
                               ("WP", "i64"), ("OH", "i64"), ("OW", "i64")])
    taps = kh * kw
    lines += tap_offsets("WP", kh, kw, dh, dw)
    lines.append("  %scratch = alloca i64, i64 %OW")
    lines += plane_loops(sh, sw)
    lines += _winner(ty, taps)
    lines += [
        "  %ps = getelementptr i64, ptr %scratch, i64 %o",
        f"  store i64 %win{taps - 1}, ptr %ps",
        "  %o1 = add i64 %o, 1",
        "  %more = icmp slt i64 %o1, %OW",
        "  br i1 %more, label %col, label %add",
        "add:",
        "  %a = phi i64 [ 0, %col ], [ %a1, %add ]",
        "  %pw = getelementptr i64, ptr %scratch, i64 %a",
        "  %w = load i64, ptr %pw",
        "  %gi = add i64 %orow, %a",
        f"  %pg = getelementptr {ty}, ptr %g, i64 %gi",
        f"  %gv = load {ty}, ptr %pg",
        f"  %q = getelementptr {ty}, ptr %out, i64 %w",
        f"  %had = load {ty}, ptr %q",
        f"  %sum = fadd {ty} %had, %gv",
        f"  store {ty} %sum, ptr %q",
        "  %a1 = add i64 %a, 1",
        "  %amore = icmp slt i64 %a1, %OW",
        "  br i1 %amore, label %add, label %row_end",
        *plane_loops_end(),
        "!0 = !{}",
    ]
    return "\n".join(lines) + "\n"
