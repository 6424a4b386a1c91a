"""LLVM IR for im2col and col2im over channels-first (NCHW) images, the column layout a
convolution's GEMMs read and write without any transposed copy.

The columns of image n are rows k = (c*KH + i)*KW + j (channel, kernel row, kernel column: the
order of a (O, C, KH, KW) weight's flattened rows) of OH*OW values each, at
cols + n*SN + k*SK: SN, SK = C*KH*KW*OH*OW, OH*OW lays the images one after another
(N, C*KH*KW, OH*OW); SN, SK = OH*OW, N*OH*OW lays every image's row k side by side
(C*KH*KW, N*OH*OW), one matrix for a GEMM over the whole batch.

Both are tasks of the native pool (windows.task_header's convention: argv words, then rows
[start, end)) over rows r = n*C + c, one input plane each: im2col reads plane r alone and
col2im writes plane r alone, so the pool may split the rows anywhere. The geometry (channels,
image, kernel, output sizes, stride, padding, dilation) is compiled in: the rows of these
small images are a few values long, and with constant trip counts and strides LLVM turns
each row's copy into a handful of vector moves instead of a loop with runtime checks. A
model has a few geometries; each is compiled once per machine (the kernel cache). The batch
size is not compiled in, so every batch size shares a kernel.
"""

from __future__ import annotations

from llvmlite import ir

from .emit import counted_loop

_TYPES = {"float32": ir.FloatType(), "float64": ir.DoubleType()}
_SIZES = {"float32": 4, "float64": 8}
_I64 = ir.IntType(64)
_PTR = ir.PointerType()
# the geometry, compile-time constants of each kernel; SN and SK, the layout, come from argv
GEOMETRY = ("C", "H", "W", "KH", "KW", "OH", "OW", "SH", "SW", "PH", "PW", "DH", "DW")


def _const(n: int) -> ir.Constant:
    return ir.Constant(_I64, n)


def kernel_name(kind: str, dtype: str, geometry: tuple, per_image: bool) -> str:
    """The task's name: its kind (im2col, col2im), dtype, geometry (GEOMETRY's values) and
    row order (per_image: r = n*C + c; else r = c*N + n)."""
    order = "nc" if per_image else "cn"
    return f"ember_{kind}_nchw_{dtype}_{order}_" + "_".join(map(str, geometry))


class _Task:
    """A pool task `name(argv, start, end)` under construction, argv = x, cols, SN, SK, N: it
    calls an inlined body whose x and cols are noalias (they never overlap, so LLVM need not
    check before it vectorizes), where `words` holds x, cols, SN, SK, N and the geometry as
    constants, and a counted-loop helper.

    Rows are planes (n, c), in the order the columns are written: per image, r = n*C + c
    (each image's block is one stretch of memory); for the batch's single matrix, r = c*N + n,
    so that neighbouring rows write neighbouring stretches of each column row (image n's
    OH*OW values of row k sit right after image n-1's)."""

    def __init__(self, kind: str, dtype: str, geometry: tuple, per_image: bool):
        name = kernel_name(kind, dtype, geometry, per_image)
        self.per_image = per_image
        self.module = ir.Module(name=name)
        self.ty = _TYPES[dtype]
        task = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [_PTR, _I64, _I64]), name)
        body = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [_PTR, _PTR, _I64, _I64,
                                                                         _I64, _I64, _I64]),
                           name + ".body")
        body.linkage = "internal"
        body.attributes.add("alwaysinline")
        for arg in body.args[:2]:
            arg.add_attribute("noalias")
        b = ir.IRBuilder(task.append_basic_block("entry"))
        argv = task.args[0]
        loaded = [b.load(b.gep(argv, [_const(k)], source_etype=_I64), typ=_PTR if k < 2 else _I64)
                  for k in range(5)]
        b.call(body, [*loaded, task.args[1], task.args[2]])
        b.ret_void()
        self.fn = body
        self.geometry = dict(zip(GEOMETRY, geometry))
        self.b = ir.IRBuilder(body.append_basic_block("entry"))
        x, cols, sn, sk, n, self.start, self.end = body.args
        self.words = {"x": x, "cols": cols, "SN": sn, "SK": sk, "N": n,
                      **{k: _const(v) for k, v in zip(GEOMETRY, geometry)}}

    def loop(self, lo, hi, body, vectorize: bool = True) -> None:
        """for i in [lo, hi): body(i); vectorize=False keeps LLVM's vectorizer off it."""
        counted_loop(self.b, lo, hi, body, None if vectorize else self._no_vectorize())

    def _no_vectorize(self):
        """A fresh loop ID `!N = !{!N, !{"llvm.loop.vectorize.enable", i1 false}}` (a loop
        ID names itself first; a counter keeps add_metadata from sharing it)."""
        module = self.module
        option = module.add_metadata([ir.MetaDataString(module, "llvm.loop.vectorize.enable"),
                                      ir.Constant(ir.IntType(1), 0)])
        loop_id = module.add_metadata([option, _const(len(module.metadata))])
        loop_id.operands = (loop_id, option)
        return loop_id

    def at(self, pointer, index):
        return self.b.gep(pointer, [index], inbounds=True, source_etype=self.ty)

    def plane(self, r):
        """(n, c, the element offset of x's plane (n, c)) of row r."""
        b, w = self.b, self.words
        if self.per_image:
            n, c = b.sdiv(r, w["C"]), b.srem(r, w["C"])
            index = r
        else:
            c, n = b.sdiv(r, w["N"]), b.srem(r, w["N"])
            index = b.add(b.mul(n, w["C"]), c)
        return n, c, b.mul(index, b.mul(w["H"], w["W"]))

    def taps(self, body) -> None:
        """For every row r in [start, end) and tap (i, j) of its plane: body(plane, row,
        i, j) with plane = x's plane r (as an element offset) and row = the offset of the
        tap's column row of OH*OW values."""
        b, w = self.b, self.words

        def plane_row(r):
            n, c, plane = self.plane(r)
            first_tap = b.mul(c, b.mul(w["KH"], w["KW"]))
            image = b.mul(n, w["SN"])

            def kernel_row(i):
                def kernel_column(j):
                    k = b.add(first_tap, b.add(b.mul(i, w["KW"]), j))
                    body(plane, b.add(image, b.mul(k, w["SK"])), i, j)

                self.loop(0, w["KW"], kernel_column)

            self.loop(0, w["KH"], kernel_row)

        self.loop(self.start, self.end, plane_row)

    def finish(self) -> str:
        self.b.ret_void()
        return str(self.module)


# output values per vector step along a strided row (the widest that fits first, then the
# rest one by one). LLVM vectorizes a stride-2 row into AVX-512 gathers and scatters, which
# cost ~0.7 ns (im2col) and ~1.2 ns (col2im) a value on Zen 4 against ~0.1 for a stride-1
# row: a step instead loads the row's stretch whole and picks or spreads every SW-th lane
VECTOR_WIDTHS = (8, 4)


def _row_steps(task: _Task, lo, hi, vector_step, scalar_step) -> None:
    """for ow in [lo, hi): vector_step(ow, width) over whole steps of each width in
    VECTOR_WIDTHS while they fit, then scalar_step(ow) for the rest."""
    b = task.b
    start = lo
    for width in VECTOR_WIDTHS:
        steps = b.sdiv(b.sub(hi, start), _const(width))  # hi >= start
        first = start

        def step(k, first=first, width=width):
            vector_step(b.add(first, b.mul(k, _const(width))), width)

        task.loop(_const(0), steps, step, vectorize=False)
        start = b.add(first, b.mul(steps, _const(width)))
    # at most VECTOR_WIDTHS[-1] - 1 values: vectorized, they would be gathers again
    task.loop(start, hi, scalar_step, vectorize=False)


def _stretch(task: _Task, width: int) -> ir.VectorType:
    """The vector of x values a step of `width` outputs spans: SW * (width - 1) + 1 (never a
    value past the last one read, so never past the end of x)."""
    return ir.VectorType(task.ty, task.geometry["SW"] * (width - 1) + 1)


def _lanes(values) -> ir.Constant:
    """A shuffle's lane indices."""
    values = list(values)
    return ir.Constant(ir.VectorType(ir.IntType(32), len(values)), values)


def _input_row(task: _Task, oh, i):
    """(whether output row oh of tap row i reads inside x, the input row it reads)."""
    b, w = task.b, task.words
    h = b.add(b.sub(b.mul(oh, w["SH"]), w["PH"]), b.mul(i, w["DH"]))
    return b.icmp_unsigned("<", h, w["H"]), h  # unsigned: a negative row is outside too


def _inside_columns(task: _Task, j):
    """(the input column output column 0 of tap column j reads, and [lo, hi): the output
    columns whose input column ow*SW + that lies inside [0, W))."""
    b, w = task.b, task.words
    first = b.sub(b.mul(j, w["DW"]), w["PW"])
    sw = w["SW"]
    # lo = ceil(-first / SW) where first < 0, else 0
    lo = b.sdiv(b.add(b.neg(first), b.sub(sw, _const(1))), sw)
    lo = b.select(b.icmp_signed("<", first, _const(0)), lo, _const(0))
    lo = b.select(b.icmp_signed("<", lo, w["OW"]), lo, w["OW"])
    # hi = floor((W - 1 - first) / SW) + 1 where that is >= 0, else 0; at most OW, at least lo
    room = b.sub(b.sub(w["W"], _const(1)), first)
    hi = b.add(b.sdiv(room, sw), _const(1))
    hi = b.select(b.icmp_signed("<", room, _const(0)), _const(0), hi)
    hi = b.select(b.icmp_signed("<", hi, w["OW"]), hi, w["OW"])
    hi = b.select(b.icmp_signed("<", hi, lo), lo, hi)
    return first, lo, hi


def im2col_ir(dtype: str, geometry: tuple, per_image: bool) -> str:
    """cols[n, (c*KH + i)*KW + j, oh*OW + ow] = x[n, c, oh*SH - PH + i*DH, ow*SW - PW + j*DW],
    0 where that falls in the padding. argv: x, cols, SN, SK, N. Rows: N*C."""
    task = _Task("im2col", dtype, geometry, per_image)
    b, w = task.b, task.words
    zero = ir.Constant(task.ty, 0.0)
    stride, size = task.geometry["SW"], _SIZES[dtype]

    def tap(plane, row, i, j):
        first, lo, hi = _inside_columns(task, j)

        def zeros(dst, start, stop):
            task.loop(start, stop, lambda ow: b.store(zero, task.at(w["cols"], b.add(dst, ow))))

        def out_row(oh):
            inside, h = _input_row(task, oh, i)
            dst = b.add(row, b.mul(oh, w["OW"]))
            source = b.add(plane, b.add(b.mul(h, w["W"]), first))
            with b.if_else(inside) as (then, otherwise):
                with then:
                    def copy(ow):
                        read = b.add(source, b.mul(ow, w["SW"]))
                        value = b.load(task.at(w["x"], read), typ=task.ty)
                        b.store(value, task.at(w["cols"], b.add(dst, ow)))

                    def copy_vector(ow, width):
                        read = task.at(w["x"], b.add(source, b.mul(ow, w["SW"])))
                        stretch = b.load(read, typ=_stretch(task, width), align=size)
                        picked = b.shuffle_vector(stretch, stretch, _lanes(
                            range(0, stride * width, stride)))
                        b.store(picked, task.at(w["cols"], b.add(dst, ow)), align=size)

                    zeros(dst, 0, lo)
                    if stride == 1:  # contiguous: LLVM's own vectorizer does it well
                        task.loop(lo, hi, copy)
                    else:
                        _row_steps(task, lo, hi, copy_vector, copy)
                    zeros(dst, hi, w["OW"])
                with otherwise:
                    zeros(dst, 0, w["OW"])

        task.loop(0, w["OH"], out_row)

    task.taps(tap)
    return task.finish()


def col2im_ir(dtype: str, geometry: tuple, per_image: bool) -> str:
    """The sum back into x (N, C, H, W) of every column value where im2col read it (the
    values it wrote as padding are dropped); each plane is zeroed first, so x's contents on
    entry do not matter. argv: x, cols, SN, SK, N. Rows: N*C."""
    task = _Task("col2im", dtype, geometry, per_image)
    b, w = task.b, task.words
    zero = ir.Constant(task.ty, 0.0)
    x, cols = w["x"], w["cols"]
    stride, size = task.geometry["SW"], _SIZES[dtype]

    def negative_zeros(width):
        return ir.Constant(ir.VectorType(task.ty, width), [-0.0] * width)

    def zero_plane(r):
        plane = task.plane(r)[2]
        task.loop(0, b.mul(w["H"], w["W"]), lambda e: b.store(zero, task.at(x, b.add(plane, e))))

    task.loop(task.start, task.end, zero_plane)

    def tap(plane, row, i, j):
        first, lo, hi = _inside_columns(task, j)

        def out_row(oh):
            inside, h = _input_row(task, oh, i)
            src = b.add(row, b.mul(oh, w["OW"]))
            target = b.add(plane, b.add(b.mul(h, w["W"]), first))
            with b.if_then(inside):
                def add(ow):
                    p = task.at(x, b.add(target, b.mul(ow, w["SW"])))
                    value = b.load(task.at(cols, b.add(src, ow)), typ=task.ty)
                    b.store(b.fadd(b.load(p, typ=task.ty), value), p)

                def add_vector(ow, width):
                    # the values spread over every SW-th lane of x's stretch, -0.0 between
                    # (x + -0.0 is x, bit for bit, for every x): each x value gets the sums
                    # it gets one by one, in the same order
                    p = task.at(x, b.add(target, b.mul(ow, w["SW"])))
                    kind = _stretch(task, width)
                    values = b.load(task.at(cols, b.add(src, ow)),
                                    typ=ir.VectorType(task.ty, width), align=size)
                    spread = b.shuffle_vector(values, negative_zeros(width), _lanes(
                        lane // stride if lane % stride == 0 else width
                        for lane in range(kind.count)))
                    b.store(b.fadd(b.load(p, typ=kind, align=size), spread), p, align=size)

                if stride == 1:  # contiguous: LLVM's own vectorizer does it well
                    task.loop(lo, hi, add)
                else:
                    _row_steps(task, lo, hi, add_vector, add)

        task.loop(0, w["OH"], out_row)

    task.taps(tap)
    return task.finish()


# col2im_rows_ir unrolls a plane's rows and taps: at most this many (row, tap) vector sums,
# and rows of at most ROWS_MAX_WIDTH values (a few registers each)
ROWS_MAX_SUMS = 1024
ROWS_MAX_WIDTH = 64


def rows_fit(geometry: tuple) -> bool:
    """Whether col2im_rows_ir takes this geometry (GEOMETRY's values): small planes, whose
    rows and taps it unrolls."""
    g = dict(zip(GEOMETRY, geometry))
    return (g["W"] <= ROWS_MAX_WIDTH and g["OW"] <= ROWS_MAX_WIDTH
            and g["H"] * g["KH"] * g["KW"] <= ROWS_MAX_SUMS)


def _row_lanes(g: dict, j: int) -> list[int] | None:
    """For kernel column j: per value w of an x row, the output column ow whose tap j reads it
    (w = ow*SW - PW + j*DW), or OW (a lane of the -0.0 operand) where none does; None where
    no value of the row is read."""
    lanes = []
    for w in range(g["W"]):
        u = w + g["PW"] - j * g["DW"]
        inside = u >= 0 and u % g["SW"] == 0 and u // g["SW"] < g["OW"]
        lanes.append(u // g["SW"] if inside else g["OW"])
    return lanes if any(lane < g["OW"] for lane in lanes) else None


def col2im_rows_ir(dtype: str, geometry: tuple, per_image: bool) -> str:
    """col2im_ir's sums, written row by row of x: each row of a plane is one vector, the sum
    of the column rows that read it (every tap (i, j) and output row oh with oh*SH - PH +
    i*DH = h), each spread over the row's lanes by a shuffle, -0.0 between, and stored
    once. col2im_ir instead adds each column row into x where it was read, a load and a
    store of x per tap, each reading what the previous tap's store wrote (a stall when the
    stretches overlap unaligned): 136 us against ~25 for a DCGAN's 16x16 planes at stride 2.
    The sums run in the same order (taps (i, j) in turn from +0.0, x + -0.0 being x), so
    the two agree bit for bit. Only for geometries rows_fit takes: everything is unrolled."""
    task = _Task("col2im_rows", dtype, geometry, per_image)
    b, w, g = task.b, task.words, task.geometry
    x, cols = w["x"], w["cols"]
    size = _SIZES[dtype]
    row_type = ir.VectorType(task.ty, g["W"])
    source_type = ir.VectorType(task.ty, g["OW"])
    negative_zeros = ir.Constant(source_type, [-0.0] * g["OW"])
    lanes = {j: _row_lanes(g, j) for j in range(g["KW"])}

    def plane_rows(r):
        n, c, plane = task.plane(r)
        first_tap = b.mul(c, _const(g["KH"] * g["KW"]))
        image = b.mul(n, w["SN"])
        for h in range(g["H"]):
            total = ir.Constant(row_type, [0.0] * g["W"])
            for i in range(g["KH"]):
                t = h + g["PH"] - i * g["DH"]
                if t < 0 or t % g["SH"] or t // g["SH"] >= g["OH"]:
                    continue
                oh = t // g["SH"]
                for j in range(g["KW"]):
                    if lanes[j] is None:
                        continue
                    k = b.add(first_tap, _const(i * g["KW"] + j))
                    start = b.add(image, b.add(b.mul(k, w["SK"]), _const(oh * g["OW"])))
                    values = b.load(task.at(cols, start), typ=source_type, align=size)
                    spread = b.shuffle_vector(values, negative_zeros, _lanes(lanes[j]))
                    total = b.fadd(total, spread)
            b.store(total, task.at(x, b.add(plane, _const(h * g["W"]))), align=size)

    task.loop(task.start, task.end, plane_rows)
    return task.finish()


def im2col_rows_fit(geometry: tuple) -> bool:
    """Whether im2col_rows_ir takes this geometry (GEOMETRY's values): small planes, whose
    output rows and taps it unrolls, read at a stride. At stride 1 im2col_ir's rows are
    contiguous copies LLVM vectorizes itself, as fast or faster (EPYC, us, rows against
    plain: (4, 64, 32, 32) 3x3 91/72, (64, 32, 8, 8) 41/42; at stride 2, (16, 16, 32, 32)
    4x4 41/119), and the unrolled kernel took ~300 ms to compile where it has 288 rows."""
    g = dict(zip(GEOMETRY, geometry))
    return (g["SW"] > 1 and g["W"] <= ROWS_MAX_WIDTH and g["OW"] <= ROWS_MAX_WIDTH
            and g["OH"] * g["KH"] * g["KW"] <= ROWS_MAX_SUMS)


def im2col_rows_ir(dtype: str, geometry: tuple, per_image: bool) -> str:
    """im2col_ir's copies, a column row at a time: for each kernel row i and output row oh,
    x's row oh*SH - PH + i*DH loaded as one vector (zeros where it lies in the padding) and
    each tap j's OW values picked out of it by a shuffle (zeros in the padding) and stored
    whole. im2col_ir copies a stride-2 row in steps of a 15-value stretch load and a shuffle
    per 8 values, a zero store per padded value: 128 us against ~40 for a DCGAN's 16x16
    planes. Only for geometries im2col_rows_fit takes: everything is unrolled."""
    task = _Task("im2col_rows", dtype, geometry, per_image)
    b, w, g = task.b, task.words, task.geometry
    x, cols = w["x"], w["cols"]
    size = _SIZES[dtype]
    row_type = ir.VectorType(task.ty, g["W"])
    out_type = ir.VectorType(task.ty, g["OW"])
    zero_row = ir.Constant(row_type, [0.0] * g["W"])
    zero_out = ir.Constant(out_type, [0.0] * g["OW"])
    lanes = []
    for j in range(g["KW"]):
        picked = [ow * g["SW"] - g["PW"] + j * g["DW"] for ow in range(g["OW"])]
        lanes.append(_lanes(v if 0 <= v < g["W"] else g["W"] for v in picked))

    def plane_rows(r):
        n, c, plane = task.plane(r)
        first_tap = b.mul(c, _const(g["KH"] * g["KW"]))
        image = b.mul(n, w["SN"])
        for i in range(g["KH"]):
            for oh in range(g["OH"]):
                y = oh * g["SH"] - g["PH"] + i * g["DH"]
                row = None
                if 0 <= y < g["H"]:
                    row = b.load(task.at(x, b.add(plane, _const(y * g["W"]))), typ=row_type,
                                 align=size)
                for j in range(g["KW"]):
                    k = b.add(first_tap, _const(i * g["KW"] + j))
                    at = b.add(image, b.add(b.mul(k, w["SK"]), _const(oh * g["OW"])))
                    value = zero_out if row is None else b.shuffle_vector(row, zero_row,
                                                                          lanes[j])
                    b.store(value, task.at(cols, at), align=size)

    task.loop(task.start, task.end, plane_rows)
    return task.finish()
