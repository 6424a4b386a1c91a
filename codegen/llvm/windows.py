"""LLVM IR for the window kernels numpy runs slowly: tiled max pooling, col2im and im2col.

numpy does these as one strided pass per kernel tap, and when the windows are small (2x2 max
pooling, a 3x3 convolution over 8x8 images) its inner loops run 4 or 8 elements between
Python-level iterator steps: a (64, 64, 8, 8) max-pool backward took ~600 us. Written as plain
loops they are a few microseconds of arithmetic per thousand windows.

Every function is a task of the native pool (codegen/llvm/pool.py),

    void task(i64 *argv, i64 start, i64 end)

over rows [start, end): window rows (N*C*OH) for pooling, images (N) for col2im, so that no
two rows write the same memory. argv holds pointers and sizes as 64-bit words. The kernel
size is a compile-time constant (its taps are unrolled); everything else is read from argv.
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


def max_pool_name(mode: str, dtype: str, kh: int, kw: int) -> str:
    return f"ember_max_pool_{mode}_{dtype}_{kh}x{kw}"


def max_pool_ir(mode: str, dtype: str, kh: int, kw: int) -> str:
    """Max pooling over windows that tile the input (stride == kernel, no padding): `fwd`
    writes each window's maximum, `bwd` stores each output gradient at its window's winning
    element of `out`, which starts zeroed. The winner is the first maximum, or the first NaN (which is
    also the forward's value, as NaN propagates): PyTorch's rule.

    argv: x, out, g (bwd), W (input width), OW (output width). Rows: N*C*OH."""
    ty = IR_TYPES[dtype]
    name = max_pool_name(mode, dtype, kh, kw)
    lines = task_header(name, [("x", "ptr"), ("out", "ptr"), ("g", "ptr"), ("W", "i64"),
                           ("OW", "i64")])
    taps = [(i, j) for i in range(kh) for j in range(kw)]
    lines.append(f"  %rowstride = mul i64 %W, {kh}")
    for t, (i, j) in enumerate(taps):
        lines.append(f"  %iw{t} = mul i64 %W, {i}")
        lines.append(f"  %off{t} = add i64 %iw{t}, {j}")
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
    for t in range(len(taps)):
        lines.append(f"  %idx{t} = add i64 %base, %off{t}")
        lines.append(f"  %p{t} = getelementptr {ty}, ptr %x, i64 %idx{t}")
        lines.append(f"  %v{t} = load {ty}, ptr %p{t}")
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
            f"  %best{t} = select i1 %take{t}, {ty} %v{t}, {ty} %best{t - 1}",
            f"  %win{t} = select i1 %take{t}, i64 %idx{t}, i64 %win{t - 1}",
        ]
    last = len(taps) - 1
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
    ]
    return "\n".join(lines) + "\n"


def col2im_name(dtype: str, kh: int, kw: int) -> str:
    return f"ember_col2im_{dtype}_{kh}x{kw}"


def col2im_ir(dtype: str, kh: int, kw: int) -> str:
    """col2im, channels last: every tap's row of C values in cols (N, OH, OW, KH, KW, C) is
    added where that tap read it, into padded (N, HP, WP, C), which starts zeroed.

    argv: cols, padded, OH, OW, HP, WP, C, stride h, stride w, dilation h, dilation w.
    Rows: N (one image's taps never write another image)."""
    ty = IR_TYPES[dtype]
    lines = task_header(col2im_name(dtype, kh, kw),
                    [("cols", "ptr"), ("out", "ptr"), ("OH", "i64"), ("OW", "i64"),
                     ("HP", "i64"), ("WP", "i64"), ("C", "i64"), ("SH", "i64"), ("SW", "i64"),
                     ("DH", "i64"), ("DW", "i64")])

    def tap(t, i, j, previous):
        return [
            f"  %src{t}.0 = add i64 %pixel, {t}",
            f"  %src{t} = mul i64 %src{t}.0, %C",
            f"  %di{t} = mul i64 %DH, {i}",
            f"  %dj{t} = mul i64 %DW, {j}",
            f"  %r{t} = add i64 %prow, %di{t}",
            f"  %rw{t} = mul i64 %r{t}, %WP",
            f"  %cc{t} = add i64 %ows, %dj{t}",
            f"  %pix{t} = add i64 %rw{t}, %cc{t}",
            f"  %dst{t} = mul i64 %pix{t}, %C",
            f"  br label %chan{t}",
            f"chan{t}:",
            f"  %c{t} = phi i64 [ 0, %{previous} ], [ %c{t}.1, %chan{t} ]",
            f"  %si{t} = add i64 %src{t}, %c{t}",
            f"  %di{t}.x = add i64 %dst{t}, %c{t}",
            f"  %ps{t} = getelementptr {ty}, ptr %cols, i64 %si{t}",
            f"  %pd{t} = getelementptr {ty}, ptr %out, i64 %di{t}.x",
            f"  %vs{t} = load {ty}, ptr %ps{t}",
            f"  %vd{t} = load {ty}, ptr %pd{t}",
            f"  %sum{t} = fadd {ty} %vd{t}, %vs{t}",
            f"  store {ty} %sum{t}, ptr %pd{t}",
            f"  %c{t}.1 = add i64 %c{t}, 1",
            f"  %cm{t} = icmp slt i64 %c{t}.1, %C",
            f"  br i1 %cm{t}, label %chan{t}, label %tap{t}.end",
        ]

    _pixel_loops(lines, kh, kw, image=["  %np = mul i64 %n, %HP"],
                 row=["  %prow = add i64 %np, %ohs"], pixel=[], tap=tap)
    return "\n".join(lines) + "\n"


def _pixel_loops(lines: list, kh: int, kw: int, image: list, row: list, pixel: list,
                 tap) -> None:
    """The loop nest col2im and im2col share, appended to lines: images [start, end), then
    output rows and columns, then every tap. image, row, pixel: extra lines at each level;
    tap(t, i, j, previous): tap t's lines, entered from block `previous` and ending with a
    branch to tap{t}.end. Defined for them: %n, %oh, %ow, %ohs (oh * SH), %ows (ow * SW)
    and %pixel, the output pixel's first tap in (N, OH, OW, KH*KW) order."""
    lines += [
        "  %none = icmp sge i64 %start, %end",
        "  %empty = icmp sle i64 %C, 0",
        "  %noh = icmp sle i64 %OH, 0",
        "  %now = icmp sle i64 %OW, 0",
        "  %s1 = or i1 %none, %empty",
        "  %s2 = or i1 %s1, %noh",
        "  %skip = or i1 %s2, %now",
        "  br i1 %skip, label %exit, label %image",
        "image:",
        "  %n = phi i64 [ %start, %entry ], [ %n1, %imageend ]",
        "  %nh = mul i64 %n, %OH",
        *image,
        "  br label %orow",
        "orow:",
        "  %oh = phi i64 [ 0, %image ], [ %oh1, %orowend ]",
        "  %rowindex = add i64 %nh, %oh",
        "  %ohs = mul i64 %oh, %SH",
        *row,
        "  br label %ocol",
        "ocol:",
        "  %ow = phi i64 [ 0, %orow ], [ %ow1, %ocolend ]",
        "  %pixel.0 = mul i64 %rowindex, %OW",
        "  %pixel.1 = add i64 %pixel.0, %ow",
        f"  %pixel = mul i64 %pixel.1, {kh * kw}",
        "  %ows = mul i64 %ow, %SW",
        *pixel,
    ]
    previous = "ocol"
    for t, (i, j) in enumerate((i, j) for i in range(kh) for j in range(kw)):
        lines += tap(t, i, j, previous)
        lines.append(f"tap{t}.end:")
        previous = f"tap{t}.end"
    lines += [
        "  br label %ocolend",
        "ocolend:",
        "  %ow1 = add i64 %ow, 1",
        "  %owm = icmp slt i64 %ow1, %OW",
        "  br i1 %owm, label %ocol, label %orowend",
        "orowend:",
        "  %oh1 = add i64 %oh, 1",
        "  %ohm = icmp slt i64 %oh1, %OH",
        "  br i1 %ohm, label %orow, label %imageend",
        "imageend:",
        "  %n1 = add i64 %n, 1",
        "  %nm = icmp slt i64 %n1, %end",
        "  br i1 %nm, label %image, label %exit",
        "exit:",
        "  ret void",
        "}",
    ]


def im2col_name(dtype: str, kh: int, kw: int) -> str:
    return f"ember_im2col_{dtype}_{kh}x{kw}"


def im2col_ir(dtype: str, kh: int, kw: int) -> str:
    """im2col, channels last: cols (N, OH, OW, KH, KW, C) gets, for every output pixel and
    tap, the C values the tap reads from x (N, H, W, C), or zeros where it falls in the
    padding (so no padded copy of x is made).

    argv: x, cols, H, W, OH, OW, C, stride h, stride w, padding h, padding w, dilation h,
    dilation w. Rows: N."""
    ty = IR_TYPES[dtype]
    lines = task_header(im2col_name(dtype, kh, kw),
                    [("x", "ptr"), ("out", "ptr"), ("H", "i64"), ("W", "i64"), ("OH", "i64"),
                     ("OW", "i64"), ("C", "i64"), ("SH", "i64"), ("SW", "i64"), ("PH", "i64"),
                     ("PW", "i64"), ("DH", "i64"), ("DW", "i64")])

    def tap(t, i, j, previous):
        return [
            f"  %dst{t}.0 = add i64 %pixel, {t}",
            f"  %dst{t} = mul i64 %dst{t}.0, %C",
            f"  %di{t} = mul i64 %DH, {i}",
            f"  %dj{t} = mul i64 %DW, {j}",
            f"  %h{t} = add i64 %hbase, %di{t}",
            f"  %w{t} = add i64 %wbase, %dj{t}",
            # unsigned compares: a negative row or column is out of range too
            f"  %hin{t} = icmp ult i64 %h{t}, %H",
            f"  %win{t} = icmp ult i64 %w{t}, %W",
            f"  %in{t} = and i1 %hin{t}, %win{t}",
            f"  %hr{t} = add i64 %nH, %h{t}",
            f"  %hw{t} = mul i64 %hr{t}, %W",
            f"  %pix{t} = add i64 %hw{t}, %w{t}",
            f"  %src{t} = mul i64 %pix{t}, %C",
            f"  br i1 %in{t}, label %copy{t}, label %zero{t}",
            f"copy{t}:",
            f"  %c{t} = phi i64 [ 0, %{previous} ], [ %c{t}.1, %copy{t} ]",
            f"  %si{t} = add i64 %src{t}, %c{t}",
            f"  %di{t}.x = add i64 %dst{t}, %c{t}",
            f"  %ps{t} = getelementptr {ty}, ptr %x, i64 %si{t}",
            f"  %pd{t} = getelementptr {ty}, ptr %out, i64 %di{t}.x",
            f"  %v{t} = load {ty}, ptr %ps{t}",
            f"  store {ty} %v{t}, ptr %pd{t}",
            f"  %c{t}.1 = add i64 %c{t}, 1",
            f"  %cm{t} = icmp slt i64 %c{t}.1, %C",
            f"  br i1 %cm{t}, label %copy{t}, label %tap{t}.end",
            f"zero{t}:",
            f"  %z{t} = phi i64 [ 0, %{previous} ], [ %z{t}.1, %zero{t} ]",
            f"  %zi{t} = add i64 %dst{t}, %z{t}",
            f"  %pz{t} = getelementptr {ty}, ptr %out, i64 %zi{t}",
            f"  store {ty} 0.0, ptr %pz{t}",
            f"  %z{t}.1 = add i64 %z{t}, 1",
            f"  %zm{t} = icmp slt i64 %z{t}.1, %C",
            f"  br i1 %zm{t}, label %zero{t}, label %tap{t}.end",
        ]

    _pixel_loops(lines, kh, kw, image=["  %nH = mul i64 %n, %H"],
                 row=["  %hbase = sub i64 %ohs, %PH"], pixel=["  %wbase = sub i64 %ows, %PW"],
                 tap=tap)
    return "\n".join(lines) + "\n"
