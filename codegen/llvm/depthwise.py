"""LLVM IR for depthwise convolution (groups == channels, one filter per channel), whose
im2col + grouped GEMM spends its time on copies: a 7x7 over (4, 64, 32, 32) wrote 49 columns
per output element and ran 64 GEMMs of one row each (forward + backward 40 ms on the EPYC,
PyTorch 6).

    forward      out[p, oh, ow] = sum over taps t = (i, j) of
                     w[c, t] * x[p, oh*sh + i*dh, ow*sw + j*dw]
    weight grad  gw[c, t] = sum over images n and (oh, ow) of g[n, c, oh, ow] * x[n, c, ...]

over x padded with zeros (the caller pads). The input gradient at stride 1 is the forward of
the gradient (padded by the kernel's reach) with the flipped filter, so it needs no kernel of
its own. Every function is a native pool task (codegen/llvm/pool.py) over rows [start, end):
the forward's rows are the N*C planes (each reads its channel's filter, c = plane % C), the
weight gradient's are the C channels (each sums over the batch alone, so no two rows write
the same memory). The taps are compile-time constants, unrolled in the forward; the output
loop runs along a row, so at stride 1 its loads are contiguous and LLVM vectorizes it. The
weight gradient's sums are `reassoc`, so they vectorize too (their order is not numpy's).
"""

from __future__ import annotations

from .windows import IR_TYPES, plane_loops, plane_loops_end, tap_load, tap_offsets, task_header


def depthwise_name(kind: str, dtype: str, geometry: tuple) -> str:
    return f"ember_depthwise_{kind}_{dtype}_" + "_".join(map(str, geometry))


def depthwise_forward_ir(dtype: str, geometry: tuple) -> str:
    """geometry: kh, kw, stride_h, stride_w, dilation_h, dilation_w.
    argv: x (padded: N*C planes of HP x WP), w (C, kh*kw), out (N*C planes of OH x OW), C,
    HP, WP, OH, OW. Rows: N*C planes."""
    kh, kw, sh, sw, dh, dw = geometry
    taps = kh * kw
    ty = IR_TYPES[dtype]
    fma = f"@llvm.fma.{_suffix(ty)}"
    name = depthwise_name("fwd", dtype, geometry)
    lines = task_header(name, [("x", "ptr"), ("w", "ptr"), ("out", "ptr"), ("C", "i64"),
                               ("HP", "i64"), ("WP", "i64"), ("OH", "i64"), ("OW", "i64")])
    lines += tap_offsets("WP", kh, kw, dh, dw)
    filters = ["  %c = urem i64 %r, %C", f"  %wb = mul i64 %c, {taps}"]
    for t in range(taps):  # the plane's filter, loaded once
        filters += [f"  %wi{t} = add i64 %wb, {t}",
                    f"  %wp{t} = getelementptr {ty}, ptr %w, i64 %wi{t}",
                    f"  %w{t} = load {ty}, ptr %wp{t}"]
    lines += plane_loops(sh, sw, filters)
    for t in range(taps):
        lines += tap_load(ty, t)
        lines.append(f"  %acc0 = fmul {ty} %w0, %v0" if t == 0 else
                     f"  %acc{t} = call {ty} {fma}({ty} %w{t}, {ty} %v{t}, {ty} %acc{t - 1})")
    lines += [
        "  %oi = add i64 %orow, %o",
        f"  %po = getelementptr {ty}, ptr %out, i64 %oi",
        f"  store {ty} %acc{taps - 1}, ptr %po",
        "  %o1 = add i64 %o, 1",
        "  %more = icmp slt i64 %o1, %OW",
        "  br i1 %more, label %col, label %row_end",
        *plane_loops_end(),
        f"declare {ty} {fma}({ty}, {ty}, {ty})",
    ]
    return "\n".join(lines) + "\n"


def depthwise_weight_grad_ir(dtype: str, geometry: tuple) -> str:
    """geometry as the forward's. argv: x (padded: N*C planes of HP x WP), g (N*C planes of
    OH x OW), gw (C, kh*kw), C, N, HP, WP, OH, OW. Rows: the C channels; each tap's sum runs
    over the batch, the output rows and (vectorized) along them."""
    kh, kw, sh, sw, dh, dw = geometry
    taps = kh * kw
    ty = IR_TYPES[dtype]
    name = depthwise_name("wgrad", dtype, geometry)
    lines = task_header(name, [("x", "ptr"), ("g", "ptr"), ("gw", "ptr"), ("C", "i64"),
                               ("N", "i64"), ("HP", "i64"), ("WP", "i64"), ("OH", "i64"),
                               ("OW", "i64")])
    sum_flags = "reassoc contract"
    lines += [
        "  %plane = mul i64 %HP, %WP",
        "  %oplane = mul i64 %OH, %OW",
        f"  %rowstep = mul i64 %WP, {sh}",
        "  %xstride = mul i64 %C, %plane",  # from one image's plane of c to the next's
        "  %gstride = mul i64 %C, %oplane",
        "  %none = icmp sge i64 %start, %end",
        "  br i1 %none, label %exit, label %chan_top",
        "chan_top:",
        "  %c = phi i64 [ %start, %entry ], [ %c1, %chan_end ]",
        "  %xc = mul i64 %c, %plane",
        "  %gc = mul i64 %c, %oplane",
        "  br label %tap_top",
        "tap_top:",
        "  %t = phi i64 [ 0, %chan_top ], [ %t1, %tap_end ]",
        f"  %ti = udiv i64 %t, {kw}",
        f"  %tj = urem i64 %t, {kw}",
        f"  %tih = mul i64 %ti, {dh}",
        "  %tiw = mul i64 %tih, %WP",
        f"  %tjw = mul i64 %tj, {dw}",
        "  %off = add i64 %tiw, %tjw",
        "  %xoff = add i64 %xc, %off",
        "  br label %img",
        "img:",
        "  %n = phi i64 [ 0, %tap_top ], [ %n1, %img_end ]",
        f"  %acc_img = phi {ty} [ 0.0, %tap_top ], [ %acc_rows, %img_end ]",
        "  %xn0 = mul i64 %n, %xstride",
        "  %xn = add i64 %xn0, %xoff",
        "  %gn0 = mul i64 %n, %gstride",
        "  %gn = add i64 %gn0, %gc",
        "  br label %row",
        "row:",
        "  %oh = phi i64 [ 0, %img ], [ %oh1, %row_end ]",
        f"  %acc_row = phi {ty} [ %acc_img, %img ], [ %acc_cols, %row_end ]",
        "  %xr0 = mul i64 %oh, %rowstep",
        "  %xr = add i64 %xn, %xr0",
        "  %gr0 = mul i64 %oh, %OW",
        "  %gr = add i64 %gn, %gr0",
        "  br label %col",
        "col:",
        "  %o = phi i64 [ 0, %row ], [ %o1, %col ]",
        f"  %acc = phi {ty} [ 0.0, %row ], [ %acc_next, %col ]",
        f"  %xo = mul i64 %o, {sw}",
        "  %xi = add i64 %xr, %xo",
        f"  %px = getelementptr {ty}, ptr %x, i64 %xi",
        f"  %vx = load {ty}, ptr %px",
        "  %gi = add i64 %gr, %o",
        f"  %pg = getelementptr {ty}, ptr %g, i64 %gi",
        f"  %vg = load {ty}, ptr %pg",
        f"  %prod = fmul {sum_flags} {ty} %vx, %vg",
        f"  %acc_next = fadd {sum_flags} {ty} %acc, %prod",
        "  %o1 = add i64 %o, 1",
        "  %more = icmp slt i64 %o1, %OW",
        "  br i1 %more, label %col, label %row_end",
        "row_end:",
        f"  %row_sum = phi {ty} [ %acc_next, %col ]",
        f"  %acc_cols = fadd {sum_flags} {ty} %acc_row, %row_sum",
        "  %oh1 = add i64 %oh, 1",
        "  %hmore = icmp slt i64 %oh1, %OH",
        "  br i1 %hmore, label %row, label %img_end",
        "img_end:",
        f"  %acc_rows = phi {ty} [ %acc_cols, %row_end ]",
        "  %n1 = add i64 %n, 1",
        "  %nmore = icmp slt i64 %n1, %N",
        "  br i1 %nmore, label %img, label %tap_end",
        "tap_end:",
        f"  %total = phi {ty} [ %acc_rows, %img_end ]",
        f"  %wbase = mul i64 %c, {taps}",
        "  %wi = add i64 %wbase, %t",
        f"  %pw = getelementptr {ty}, ptr %gw, i64 %wi",
        f"  store {ty} %total, ptr %pw",
        "  %t1 = add i64 %t, 1",
        f"  %tmore = icmp slt i64 %t1, {taps}",
        "  br i1 %tmore, label %tap_top, label %chan_end",
        "chan_end:",
        "  %c1 = add i64 %c, 1",
        "  %cmore = icmp slt i64 %c1, %end",
        "  br i1 %cmore, label %chan_top, label %exit",
        "exit:",
        "  ret void",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _suffix(ty: str) -> str:
    return "f32" if ty == "float" else "f64"
