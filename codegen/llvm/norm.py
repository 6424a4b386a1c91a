"""LLVM IR for training batch norm's two eager kernels (ir/ops/norm.py), one channel per row.

numpy takes a dozen passes over the batch for each (einsum sums, the centering, the scale and
shift, each a fresh array): ~85 us a call for a DCGAN's 16x32x8x8 activations on the Xeon.
Here a channel is read from cache two or three times in one call. Row c is channel c of
x (N, C, HW): its N stretches of HW values; rows write only their own channel, so the native
pool may split them anywhere (runtime/windows.py runs them).

Sums accumulate in float64 for both dtypes (numpy's einsum keeps float32 partial sums: the
two agree to the float32 rounding of the statistics), with `reassoc` so that LLVM vectorizes
them. The elementwise parts compute in the input's dtype, in numpy's order of operations.

forward, argv: x, out, weight, bias, mean, invstd, squares, N, C, HW, eps (float64 bits):
    mean = sum(x) / count, squares = sum((x - mean)^2), invstd = 1 / sqrt(squares / count
    + eps), out = (x - mean) * (invstd * weight) + bias
backward, argv: g, x, weight, mean, invstd, gx, g_weight, g_bias, N, C, HW:
    g_bias = sum(g), dot = sum(g * (x - mean)), scale = invstd * weight,
    gx = g * scale - (x - mean) * (scale * invstd * invstd * dot / count)
         - scale * g_bias / count, g_weight = dot * invstd
"""

from __future__ import annotations

from llvmlite import ir

from .emit import counted_loop

_TYPES = {"float32": ir.FloatType(), "float64": ir.DoubleType()}
_I64 = ir.IntType(64)
_F64 = ir.DoubleType()
_PTR = ir.PointerType()
_SUM = ("reassoc",)  # lets the vectorizer split a sum into partial sums

FORWARD_WORDS = ("x", "out", "weight", "bias", "mean", "invstd", "squares", "N", "C", "HW",
                 "eps")
BACKWARD_WORDS = ("g", "x", "weight", "mean", "invstd", "gx", "g_weight", "g_bias", "N", "C",
                  "HW")
_POINTERS = {"forward": 7, "backward": 8}  # leading argv words that are pointers


def batch_norm_name(mode: str, dtype: str) -> str:
    return f"ember_batch_norm_train_{mode}_{dtype}"


class _Task:
    """`name(argv, start, end)` calling an inlined body whose pointers are noalias."""

    def __init__(self, mode: str, dtype: str):
        words = FORWARD_WORDS if mode == "forward" else BACKWARD_WORDS
        pointers = _POINTERS[mode]
        name = batch_norm_name(mode, dtype)
        self.module = ir.Module(name=name)
        self.ty = _TYPES[dtype]
        kinds = [_PTR] * pointers + [_I64] * (len(words) - pointers)
        task = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [_PTR, _I64, _I64]), name)
        body = ir.Function(self.module, ir.FunctionType(ir.VoidType(), kinds + [_I64, _I64]),
                           name + ".body")
        body.linkage = "internal"
        body.attributes.add("alwaysinline")
        for arg in body.args[:pointers]:
            arg.add_attribute("noalias")
        b = ir.IRBuilder(task.append_basic_block("entry"))
        loaded = [b.load(b.gep(task.args[0], [ir.Constant(_I64, k)], source_etype=_I64),
                         typ=kind) for k, kind in enumerate(kinds)]
        b.call(body, [*loaded, task.args[1], task.args[2]])
        b.ret_void()
        self.b = ir.IRBuilder(body.append_basic_block("entry"))
        self.w = dict(zip(words, body.args))
        self.start, self.end = body.args[-2], body.args[-1]

    def load(self, name, index):
        b = self.b
        return b.load(b.gep(self.w[name], [index], inbounds=True, source_etype=self.ty),
                      typ=self.ty)

    def store(self, value, name, index):
        b = self.b
        b.store(value, b.gep(self.w[name], [index], inbounds=True, source_etype=self.ty))

    def wide(self, value):
        return value if self.ty is _F64 else self.b.fpext(value, _F64)

    def narrow(self, value):
        return value if self.ty is _F64 else self.b.fptrunc(value, self.ty)

    def channel_sum(self, c, term):
        """sum over the channel's values of term(element index), in float64."""
        b, w = self.b, self.w
        with b.goto_entry_block():  # entry-block slots: LLVM keeps them in registers
            total = b.alloca(_F64)
            part = b.alloca(_F64)
        b.store(ir.Constant(_F64, 0.0), total)

        def image(n):
            base = b.mul(b.add(b.mul(n, w["C"]), c), w["HW"])
            b.store(ir.Constant(_F64, 0.0), part)

            def value(i):
                b.store(b.fadd(b.load(part, typ=_F64), term(b.add(base, i)), flags=_SUM), part)

            counted_loop(b, 0, w["HW"], value)
            b.store(b.fadd(b.load(total, typ=_F64), b.load(part, typ=_F64)), total)

        counted_loop(b, 0, w["N"], image)
        return b.load(total, typ=_F64)

    def each_value(self, c, body):
        b, w = self.b, self.w

        def image(n):
            base = b.mul(b.add(b.mul(n, w["C"]), c), w["HW"])
            counted_loop(b, 0, w["HW"], lambda i: body(b.add(base, i)))

        counted_loop(b, 0, w["N"], image)

    def finish(self) -> str:
        self.b.ret_void()
        return str(self.module)


def _forward(t: _Task, c):
    b, w = t.b, t.w
    count = b.sitofp(b.mul(w["N"], w["HW"]), _F64)
    mean = t.narrow(b.fdiv(t.channel_sum(c, lambda k: t.wide(t.load("x", k))), count))

    def square(k):
        centered = t.wide(b.fsub(t.load("x", k), mean))
        return b.fmul(centered, centered)

    squares = t.narrow(t.channel_sum(c, square))
    eps = t.narrow(b.bitcast(w["eps"], _F64))
    variance = b.fadd(b.fdiv(squares, t.narrow(count)), eps)
    sqrt = t.module.declare_intrinsic("llvm.sqrt", [t.ty])
    invstd = b.fdiv(ir.Constant(t.ty, 1.0), b.call(sqrt, [variance]))
    scale = b.fmul(invstd, t.load("weight", c))
    bias = t.load("bias", c)
    t.each_value(c, lambda k: t.store(
        b.fadd(b.fmul(b.fsub(t.load("x", k), mean), scale), bias), "out", k))
    t.store(mean, "mean", c)
    t.store(invstd, "invstd", c)
    t.store(squares, "squares", c)


def _backward(t: _Task, c):
    b, w = t.b, t.w
    mean, invstd = t.load("mean", c), t.load("invstd", c)
    g_bias = t.narrow(t.channel_sum(c, lambda k: t.wide(t.load("g", k))))
    dot = t.narrow(t.channel_sum(c, lambda k: t.wide(
        b.fmul(t.load("g", k), b.fsub(t.load("x", k), mean)))))
    count = t.narrow(b.sitofp(b.mul(w["N"], w["HW"]), _F64))
    scale = b.fmul(invstd, t.load("weight", c))
    centered_scale = b.fdiv(b.fmul(b.fmul(b.fmul(scale, invstd), invstd), dot), count)
    shift = b.fdiv(b.fmul(scale, g_bias), count)

    def value(k):
        gx = b.fmul(t.load("g", k), scale)
        gx = b.fsub(gx, b.fmul(b.fsub(t.load("x", k), mean), centered_scale))
        t.store(b.fsub(gx, shift), "gx", k)

    t.each_value(c, value)
    t.store(b.fmul(dot, invstd), "g_weight", c)
    t.store(g_bias, "g_bias", c)


def batch_norm_ir(mode: str, dtype: str) -> str:
    """The task of `mode` (forward, backward) for dtype over rows (channels) [start, end)."""
    t = _Task(mode, dtype)
    step = _forward if mode == "forward" else _backward
    counted_loop(t.b, t.start, t.end, lambda c: step(t, c))
    return t.finish()
