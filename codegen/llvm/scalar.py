"""LLVM templates of the scalar vocabulary (codegen/scalar.py): one function per op name.

A template takes the emitter's context, its operands as LLVM values of the compute dtype and
the expression, and returns the result. Values live in registers as LLVM types: float, double,
iN for integers (signedness is the dtype's), i1 for bool. float16 never reaches a template: the
emitter widens it to float32 and rounds the result back, as numpy computes float16 ops.

NaN, infinities and signed zeros follow numpy's ufuncs exactly: maximum/minimum propagate NaN
and, between equal operands, return the second (so maximum(-0.0, 0.0) is 0.0), relu(-0.0) is
0.0, sign(NaN) is 0 (PyTorch's), round is round-half-to-even.
"""

from __future__ import annotations

from collections.abc import Callable

from llvmlite import ir

from ...ir import ops as _ops  # noqa: F401  (registers the declarations)
from ...ir.schema import SCHEMAS

TEMPLATES: dict[str, Callable] = {}


def template(*names: str):
    def register(fn):
        for name in names:
            TEMPLATES[name] = fn
        return fn

    return register


def _is_float(v: ir.Value) -> bool:
    return isinstance(v.type, (ir.FloatType, ir.DoubleType, ir.HalfType))


def _const(v: ir.Value, number) -> ir.Constant:
    if _is_float(v):
        return ir.Constant(v.type, float(number))
    return ir.Constant(v.type, int(number))


def _isnan(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return b.fcmp_unordered("uno", x, x)


# -- arithmetic ------------------------------------------------------------------------------


@template("add")
def _add(ctx, a, b, expr):
    if _is_float(a):
        return ctx.b.fadd(a, b, flags=ctx.fmf)
    return ctx.b.or_(a, b) if a.type.width == 1 else ctx.b.add(a, b)


@template("sub")
def _sub(ctx, a, b, expr):
    return ctx.b.fsub(a, b, flags=ctx.fmf) if _is_float(a) else ctx.b.sub(a, b)


@template("mul")
def _mul(ctx, a, b, expr):
    if _is_float(a):
        return ctx.b.fmul(a, b, flags=ctx.fmf)
    return ctx.b.and_(a, b) if a.type.width == 1 else ctx.b.mul(a, b)


@template("div")
def _div(ctx, a, b, expr):
    if ctx.per_row_divisor[ctx.current]:
        # x / s for s a row's reduction: x * (1 / s), the reciprocal hoisted out of the loop
        # (as PyTorch's softmax does); within an ulp, and inf/nan/0 behave as in x / s
        return ctx.b.fmul(a, ctx.b.fdiv(_const(b, 1), b), flags=ctx.fmf)
    return ctx.b.fdiv(a, b, flags=ctx.fmf)


@template("neg")
def _neg(ctx, a, expr):
    return ctx.b.fneg(a) if _is_float(a) else ctx.b.sub(_const(a, 0), a)


@template("abs")
def _abs(ctx, a, expr):
    if _is_float(a):
        return ctx.call("llvm.fabs", a)
    if not ctx.signed(expr):
        return a
    return ctx.b.select(ctx.b.icmp_signed("<", a, _const(a, 0)), ctx.b.sub(_const(a, 0), a), a)


def _greater(ctx, a, b, expr):
    if _is_float(a):
        return ctx.b.fcmp_ordered(">", a, b)
    if a.type.width == 1:
        return ctx.b.and_(a, ctx.b.not_(b))
    return (ctx.b.icmp_signed if ctx.signed(expr) else ctx.b.icmp_unsigned)(">", a, b)


def _pick_first(ctx, a, b, expr, symbol):
    """numpy's choice of a in maximum (">") or minimum ("<"): a wins, or a is NaN (a NaN in b
    falls through to b). float32/64 give b on a tie (maximum(-0.0, 0.0) is 0.0); float16
    gives a."""
    if expr.dtype == "float16":
        symbol += "="
    if _is_float(a):
        return ctx.b.or_(ctx.b.fcmp_ordered(symbol, a, b), _isnan(ctx.b, a))
    return _greater(ctx, a, b, expr) if symbol == ">" else _greater(ctx, b, a, expr)


@template("maximum")
def _maximum(ctx, a, b, expr):
    return ctx.b.select(_pick_first(ctx, a, b, expr, ">"), a, b)


@template("minimum")
def _minimum(ctx, a, b, expr):
    return ctx.b.select(_pick_first(ctx, a, b, expr, "<"), a, b)


@template("relu")
def _relu(ctx, a, expr):
    return _maximum(ctx, a, _const(a, 0), expr)


@template("clamp")
def _clamp(ctx, a, expr):
    lo, hi = expr.attr.get("min"), expr.attr.get("max")
    if lo is not None:
        a = _maximum(ctx, a, _const(a, lo), expr)
    if hi is not None:
        a = _minimum(ctx, a, _const(a, hi), expr)
    return a


@template("sign")
def _sign(ctx, a, expr):
    b = ctx.b
    zero = _const(a, 0)
    if _is_float(a):
        pos, neg = b.fcmp_ordered(">", a, zero), b.fcmp_ordered("<", a, zero)
        return b.fsub(b.uitofp(pos, a.type), b.uitofp(neg, a.type))
    if not ctx.signed(expr):
        return b.zext(b.icmp_unsigned("!=", a, zero), a.type)
    pos, neg = b.icmp_signed(">", a, zero), b.icmp_signed("<", a, zero)
    return b.sub(b.zext(pos, a.type), b.zext(neg, a.type))


def _rounding(intrinsic):
    def emit(ctx, a, expr):
        return ctx.call(intrinsic, a) if _is_float(a) else a

    return emit


for _name, _intrinsic in (("floor", "llvm.floor"), ("ceil", "llvm.ceil"),
                          ("trunc", "llvm.trunc"), ("round", "llvm.roundeven")):
    TEMPLATES[_name] = _rounding(_intrinsic)


@template("pow")
def _pow(ctx, a, expr):
    # only the exponents of codegen.scalar.POW_EXPONENTS reach here: numpy computes them as
    # x*x, sqrt(x) and 1/x too, and the eager kernel x ** 3 as (x*x)*x (PyTorch's)
    e = float(expr.attr["exponent"])
    b = ctx.b
    if e == 1.0:
        return a
    if e == 0.5:
        return ctx.call("llvm.sqrt", a)
    if e == -1.0:
        return b.fdiv(_const(a, 1), a) if _is_float(a) else b.sdiv(_const(a, 1), a)
    if not _is_float(a):
        square = b.mul(a, a)
        return b.mul(square, a) if e == 3.0 else square
    square = b.fmul(a, a, flags=ctx.fmf)
    return b.fmul(square, a, flags=ctx.fmf) if e == 3.0 else square


@template("sqrt")
def _sqrt(ctx, a, expr):
    return ctx.call("llvm.sqrt", a)


@template("rsqrt")
def _rsqrt(ctx, a, expr):
    root = ctx.call("llvm.sqrt", a)
    if expr.dtype == "float16":  # eager: 1 / sqrt(x), with sqrt rounded to float16 first
        root = ctx.round_half(root)
    return ctx.b.fdiv(_const(a, 1), root)


@template("reciprocal")
def _reciprocal(ctx, a, expr):
    return ctx.b.fdiv(_const(a, 1), a)


def _bits(a) -> int:
    return 64 if isinstance(a.type, ir.DoubleType) else 32


def _transcendental(name):
    def emit(ctx, a, expr):
        from . import mathlib  # inline polynomial code, emitted only where a kernel needs it

        if name in mathlib.REDUCED and ctx.trig_flag is not None:
            if ctx.exact_trig:  # the kernel's second pass: libm's full range reduction
                return ctx.call(f"llvm.{name}", a)
            # past the range the inline reduction holds, the kernel runs its rows again
            big = ctx.b.fcmp_ordered(">", ctx.call("llvm.fabs", a),
                                     _const(a, mathlib.REDUCED[name][_bits(a)]))
            ctx.b.store(ctx.b.or_(ctx.b.load(ctx.trig_flag), big), ctx.trig_flag)
        return mathlib.emit(name, ctx.b, a)

    return emit


# the ops declared `mathlib` (ir/ops): inline polynomial code
for _schema in SCHEMAS.values():
    if _schema.mathlib:
        TEMPLATES[_schema.name] = _transcendental(_schema.name)


@template("isfinite")
def _isfinite(ctx, a, expr):
    return ctx.b.fcmp_ordered("!=", ctx.call("llvm.fabs", a), _const(a, float("inf")))


# -- comparisons and logic -------------------------------------------------------------------

_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _comparison(symbol):
    def emit(ctx, a, b, expr):
        if _is_float(a):
            if symbol == "!=":  # NaN != anything is true
                return ctx.b.fcmp_unordered(symbol, a, b)
            return ctx.b.fcmp_ordered(symbol, a, b)
        signed = ctx.signed_args(expr)
        return (ctx.b.icmp_signed if signed else ctx.b.icmp_unsigned)(symbol, a, b)

    return emit


for _name, _symbol in _COMPARE.items():
    TEMPLATES[_name] = _comparison(_symbol)


def _truth(ctx, a):
    if a.type == ir.IntType(1):
        return a
    if _is_float(a):
        return ctx.b.fcmp_unordered("!=", a, _const(a, 0))
    return ctx.b.icmp_unsigned("!=", a, _const(a, 0))


@template("logical_and")
def _logical_and(ctx, a, b, expr):
    return ctx.b.and_(_truth(ctx, a), _truth(ctx, b))


@template("logical_or")
def _logical_or(ctx, a, b, expr):
    return ctx.b.or_(_truth(ctx, a), _truth(ctx, b))


@template("logical_xor")
def _logical_xor(ctx, a, b, expr):
    return ctx.b.xor(_truth(ctx, a), _truth(ctx, b))


@template("logical_not")
def _logical_not(ctx, a, expr):
    return ctx.b.not_(_truth(ctx, a))


@template("bitwise_and")
def _bitwise_and(ctx, a, b, expr):
    return ctx.b.and_(a, b)


@template("bitwise_or")
def _bitwise_or(ctx, a, b, expr):
    return ctx.b.or_(a, b)


@template("bitwise_xor")
def _bitwise_xor(ctx, a, b, expr):
    return ctx.b.xor(a, b)


@template("bitwise_not")
def _bitwise_not(ctx, a, expr):
    return ctx.b.not_(a)  # every bit flipped: on i1 (bool), logical not


@template("where", "select")
def _where(ctx, cond, a, b, expr):
    return ctx.b.select(_truth(ctx, cond), a, b)


@template("masked_fill")
def _masked_fill(ctx, x, mask, value, expr):
    return ctx.b.select(_truth(ctx, mask), value, x)


@template("clone")
def _clone(ctx, a, expr):
    return a
