"""Transcendental functions emitted inline as straight-line LLVM IR, so loops over them vectorize.

LLVM's loop vectorizer keeps a scalar call per element for `expf` or `llvm.exp.f32`
(../shared/NOTES-backends.md, "Transcendentals on the CPU"), so each function here is written
out as range reduction plus a polynomial, with `select` instead of branches, and only
intrinsics that have vector forms (fma, fabs, rint, copysign) plus integer bit tricks on the
exponent field. There are no fast-math flags: NaN, +-inf, -0.0 and denormals keep their IEEE
behaviour, and every function matches numpy on them.

    FUNCTIONS[name](builder, x) / emit(name, builder, x)

take a scalar float or double `x` and return the result in the same type (half precision is
widened by the caller).

Accuracy: worst error in ulp against the unrounded reference (numpy in float64 for float32,
long double libm for float64, scipy and mpmath for erf), so 0.5 would be correct rounding.
float32 was checked on every input once (tests/codegen/test_mathlib.py samples it), float64 on
about 20M points spread over all exponents and each function's working range (erf: 25k points
against mpmath; against math.erf the 20M stay within 1.00):

             exp   expm1  log   log1p  tanh  sigmoid  erf   sin   cos
    float32  0.98  1.44   0.84  0.84   2.42  2.40     1.00  1.73  1.82
    float64  0.98  1.83   0.79  0.81   2.52  2.12     1.09  1.63  1.68

The special functions (erfc, erfinv, lgamma, digamma and trigamma, polygamma(1, x)) compute in
double precision for either width and round once; against mpmath at 40 digits, float64:
erfc 17 ulp, erfinv 2.3, lgamma 6e-15 relative (absolute near its zeros at 1 and 2), digamma
60 ulp where |digamma| > 0.1 (4e-16 absolute near its zeros), trigamma 6 ulp.

sin and cos hold that for |x| <= 1e5 (float32) and |x| <= 1e9 (float64), the ranges tested.
Past them the three-part Cody-Waite reduction by pi loses bits (float32 is off by ~1e3 ulp at
1e7, and past 2**23 * pi the quadrant is lost) and the result is only guaranteed to lie in
[-1, 1]: a generated kernel notices such an argument and computes its rows again with libm
(REDUCED below); the inline functions themselves, called alone, do not.

The polynomial coefficients are near-minimax fits (Lawson's iteration on weighted least
squares at Chebyshev nodes, in mpmath at 50 digits) of the relative error of the final
function, each coefficient rounded to the target type in turn and the rest refitted. The
algorithms follow the classic shapes (Cephes and fdlibm for log and log1p, Sleef for the pi
reduction of sin and cos); the code and the fits are our own.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

from llvmlite import ir

from ..coefficients import ERF_FAR as _ERF_FAR
from ..coefficients import ERF_FAR_P as _ERF_FAR_P
from ..coefficients import ERF_FAR_T0 as _ERF_FAR_T0
from ..coefficients import ERF_NEAR as _ERF_NEAR
from ..coefficients import ERF_SATURATE as _ERF_SATURATE
from ..coefficients import SPECIAL as _special

# Tables below are keyed by the float width in bits (32 or 64).

# expm1(r) = r + r^2 * P(r) on |r| <= ln2/2 + 0.001.
_EXPM1 = {
    32: (0.5, 0.16666666, 0.041666493, 0.008333543, 0.0013932384, 0.00019764429),
    64: (
        0.5,
        0.16666666666666677,
        0.04166666666666666,
        0.008333333333321629,
        0.0013888888888905439,
        0.00019841269885981984,
        2.4801587261369744e-05,
        2.7557244368578015e-06,
        2.755734056269162e-07,
        2.510899555707663e-08,
        2.089150817097433e-09,
    ),
}
# log1p(f) = f - hfsq + s*(hfsq + z*G(z)), s = f/(2+f), z = s^2, hfsq = f^2/2, on
# z <= (3 - 2*sqrt(2))^2 (f between sqrt(1/2) - 1 and sqrt(2) - 1).
_LOG = {
    32: (0.66666776, 0.3997757, 0.29871348),
    64: (
        0.6666666666666735,
        0.3999999999940985,
        0.2857142874348321,
        0.22222198457523223,
        0.18183570538159274,
        0.15313885965310658,
        0.14797656060517092,
    ),
}
# sin(r) = r + r*z*S(z), z = r^2, on |r| <= pi/2 + 0.01 (the margin absorbs a rounded quotient).
_SIN = {
    32: (-0.1666666, 0.0083330665, -0.00019809435, 2.6051127e-06),
    64: (
        -0.16666666666666666,
        0.008333333333333203,
        -0.00019841269841210506,
        2.7557319211149155e-06,
        -2.5052106860423508e-08,
        1.6058938574716584e-10,
        -7.642951631198399e-13,
        2.7206660119901083e-15,
    ),
}
# Past these, tanh rounds to +-1.
_TANH_SATURATE = {32: 10.0, 64: 22.0}

# Constants split in parts, each part rounded to the width: ln2 = hi + lo, pi = p1 + p2 + p3.
_LN2 = {32: (0.6931472, -1.9046542e-09), 64: (0.6931471805599453, 2.3190468138462996e-17)}
_PI = {
    32: (3.1415927, -8.742278e-08, -3.430249e-15),
    64: (3.141592653589793, 1.2246467991473532e-16, -2.9947698097183397e-33),
}
_LOG2E = {32: 1.442695, 64: 1.4426950408889634}
_INV_PI = {32: 0.31830987, 64: 0.3183098861837907}
# Clamps for the exp argument: below, the result rounds to 0; above, it is +inf. They keep the
# scale 2^k within two normal factors.
_EXP_RANGE = {32: (-104.0, 89.0), 64: (-746.0, 710.0)}
# Below these, expm1 rounds to -1.
_EXPM1_LOW = {32: -30.0, 64: -40.0}


class _Emitter:
    """IR-building shorthand for one float type at one builder position."""

    def __init__(self, builder: ir.IRBuilder, ty: ir.Type):
        if isinstance(ty, ir.FloatType):
            self.width, self.mant = 32, 23
        elif isinstance(ty, ir.DoubleType):
            self.width, self.mant = 64, 52
        else:
            raise TypeError(f"inline math takes float or double values, got {ty}")
        self.b = builder
        self.ty = ty
        self.int = ir.IntType(self.width)
        exponent_bits = self.width - self.mant - 1
        self.bias = (1 << (exponent_bits - 1)) - 1
        self.min_normal = 2.0 ** (1 - self.bias)

    # constants and intrinsics

    def const(self, value: float) -> ir.Constant:
        return ir.Constant(self.ty, value)

    def iconst(self, value: int) -> ir.Constant:
        return ir.Constant(self.int, value)

    def val(self, value) -> ir.Value:
        return value if isinstance(value, ir.Value) else self.const(value)

    def intrinsic(self, name: str, *args) -> ir.Value:
        full = f"llvm.{name}.{self.ty.intrinsic_name}"
        module = self.b.module
        fn = module.globals.get(full)
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(self.ty, [self.ty] * len(args)), full)
        return self.b.call(fn, [self.val(a) for a in args])

    # arithmetic

    def add(self, a, b):
        return self.b.fadd(self.val(a), self.val(b))

    def sub(self, a, b):
        return self.b.fsub(self.val(a), self.val(b))

    def mul(self, a, b):
        return self.b.fmul(self.val(a), self.val(b))

    def div(self, a, b):
        return self.b.fdiv(self.val(a), self.val(b))

    def neg(self, a):
        return self.b.fneg(self.val(a))

    def fma(self, a, b, c):
        return self.intrinsic("fma", a, b, c)

    def poly(self, x, coeffs) -> ir.Value:
        """coeffs[0] + coeffs[1]*x + ... by Horner's rule with fused multiply-adds."""
        acc = self.const(coeffs[-1])
        for c in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, c)
        return acc

    def abs(self, a):
        return self.intrinsic("fabs", a)

    def rint(self, a):
        return self.intrinsic("rint", a)

    def copysign(self, magnitude, sign):
        return self.intrinsic("copysign", magnitude, sign)

    # comparisons and selection (ordered: false when either side is NaN)

    def lt(self, a, b):
        return self.b.fcmp_ordered("<", self.val(a), self.val(b))

    def gt(self, a, b):
        return self.b.fcmp_ordered(">", self.val(a), self.val(b))

    def eq(self, a, b):
        return self.b.fcmp_ordered("==", self.val(a), self.val(b))

    def isnan(self, a):
        return self.b.fcmp_unordered("uno", a, a)

    def select(self, cond, a, b):
        return self.b.select(cond, self.val(a), self.val(b))

    def clamp(self, a, lo, hi):
        """a limited to [lo, hi]; NaN becomes hi, so integer conversions downstream stay
        defined (callers put NaN back). Each select is one min/max instruction on x86."""
        a = self.select(self.lt(a, hi), a, hi)
        return self.select(self.gt(a, lo), a, lo)

    # bits

    def bits(self, a):
        return self.b.bitcast(a, self.int)

    def from_bits(self, i):
        return self.b.bitcast(i, self.ty)

    def to_int(self, a):
        return self.b.fptosi(a, self.int)

    def to_float(self, i):
        return self.b.sitofp(i, self.ty)

    def pow2(self, k):
        """2.0**k for an integer k in the normal exponent range."""
        biased = self.b.add(k, self.iconst(self.bias))
        return self.from_bits(self.b.shl(biased, self.iconst(self.mant)))

    def ldexp(self, p, k):
        """p * 2**k in two steps, so 2**k need not be a normal number itself and a denormal
        result is rounded once, at the second product."""
        k1 = self.b.ashr(k, self.iconst(1))
        k2 = self.b.sub(k, k1)
        return self.mul(self.mul(p, self.pow2(k1)), self.pow2(k2))

    def sign_bit(self, a):
        """The sign bit of a, in place, as an integer."""
        return self.b.and_(self.bits(a), self.iconst(1 << (self.width - 1)))

    def sign_bit_if_odd(self, q):
        """The sign bit when the integer-valued float q >= 0 is odd, else 0: the low mantissa
        bit of q + 2**mant (exact for q < 2**mant; no fptosi, so NaN gives no poison)."""
        shifted = self.bits(self.add(q, 2.0**self.mant))
        return self.b.shl(self.b.and_(shifted, self.iconst(1)), self.iconst(self.width - 1))

    def flip_sign(self, a, sign):
        """a with its sign bit xor-ed with the integer sign."""
        return self.from_bits(self.b.xor(self.bits(a), sign))

    def table(self, table: dict):
        return table[self.width]


def _float_bits(value: float, width: int) -> int:
    if width == 32:
        return struct.unpack("<I", struct.pack("<f", value))[0]
    return struct.unpack("<Q", struct.pack("<d", value))[0]


# exp family


def _exp_reduce(m: _Emitter, x):
    """(k, expm1(r)) with x = k*ln2 + r, |r| <= ln2/2; x must be finite and clamped."""
    ln2_hi, ln2_lo = m.table(_LN2)
    k = m.rint(m.mul(x, m.table(_LOG2E)))
    # exact: k*ln2_hi is exact inside the fma and the difference needs no more bits than r has
    r = m.fma(k, -ln2_hi, x)
    r = m.fma(k, -ln2_lo, r)
    return k, m.fma(m.mul(r, r), m.poly(r, m.table(_EXPM1)), r)


def _exp(m: _Emitter, x):
    low, high = m.table(_EXP_RANGE)
    k, em = _exp_reduce(m, m.clamp(x, low, high))
    # below `low` exp is +0: the scaling starts from 0 there, since scaling 1.x down to a
    # denormal costs a microcode assist per lane (~100 cycles): a masked softmax's -inf
    # scores took 10 ns an element (32768 scores, half masked: 330 us, now ~60)
    p = m.select(m.lt(x, low), 0.0, m.add(em, 1.0))
    y = m.ldexp(p, m.to_int(k))
    return m.select(m.isnan(x), x, y)


def _expm1(m: _Emitter, x):
    _, high = m.table(_EXP_RANGE)
    k, em = _exp_reduce(m, m.clamp(x, m.table(_EXPM1_LOW), high))
    k = m.to_int(k)
    # 2^k*(1 + em) - 1 as one fma, while 2^k - 1 is exact; above that, the -1 is below half
    # an ulp of the result and 2^k may overflow, so scale as exp does
    large = m.b.icmp_signed(">", k, m.iconst(m.mant + 1))
    scale = m.pow2(m.b.select(large, m.iconst(m.mant + 1), k))
    y = m.select(large, m.ldexp(m.add(em, 1.0), k), m.fma(scale, em, m.sub(scale, 1.0)))
    y = m.select(m.eq(x, 0.0), x, y)  # keeps -0.0, which the sum above makes +0.0
    return m.select(m.isnan(x), x, y)


def _sigmoid(m: _Emitter, x):
    # exp(-|x|) never overflows; for x < 0 the quotient e/(1+e) keeps the tail's relative
    # precision down through the denormals
    e = _exp(m, m.neg(m.abs(x)))
    numerator = m.select(m.lt(x, 0.0), e, 1.0)
    return m.div(numerator, m.add(e, 1.0))


def _tanh(m: _Emitter, x):
    # tanh|x| = e/(e+2) with e = expm1(2|x|): relative accuracy near 0, no cancellation
    limit = m.table(_TANH_SATURATE)
    a = m.abs(x)
    a = m.select(m.gt(a, limit), limit, a)
    e = _expm1(m, m.add(a, a))
    return m.copysign(m.div(e, m.add(e, 2.0)), x)


# log family


def _log_split(m: _Emitter, u):
    """(k, f) with u = 2^k * (1 + f), 1 + f in [sqrt(1/2), sqrt(2)); u normal and positive."""
    sqrt_half = _float_bits(math.sqrt(0.5), m.width)
    one = _float_bits(1.0, m.width)
    # biasing by 1 - sqrt(1/2) moves the exponent boundary from 1 to sqrt(1/2)
    shifted = m.b.add(m.bits(u), m.iconst(one - sqrt_half))
    k = m.b.sub(m.b.ashr(shifted, m.iconst(m.mant)), m.iconst(m.bias))
    mantissa = m.b.and_(shifted, m.iconst((1 << m.mant) - 1))
    f = m.sub(m.from_bits(m.b.add(mantissa, m.iconst(sqrt_half))), 1.0)
    return k, f


def _log_combine(m: _Emitter, k, f, c):
    """k*ln2 + log1p(f) + c, with the small terms summed first so f is added exactly once."""
    ln2_hi, ln2_lo = m.table(_LN2)
    s = m.div(f, m.add(f, 2.0))
    z = m.mul(s, s)
    hfsq = m.mul(m.mul(f, f), 0.5)
    r = m.mul(z, m.poly(z, m.table(_LOG)))
    k = m.to_float(k)
    t = m.fma(s, m.add(hfsq, r), m.fma(k, ln2_lo, c))
    t = m.add(m.sub(t, hfsq), f)
    return m.fma(k, ln2_hi, t)


def _log(m: _Emitter, x):
    # denormals are scaled into the normal range first, and the scale taken off k
    denormal_shift = m.mant + 2
    tiny = m.lt(x, m.min_normal)
    u = m.select(tiny, m.mul(x, 2.0**denormal_shift), x)
    k, f = _log_split(m, u)
    k = m.b.sub(k, m.b.select(tiny, m.iconst(denormal_shift), m.iconst(0)))
    y = _log_combine(m, k, f, 0.0)
    y = m.select(m.eq(x, math.inf), x, y)
    y = m.select(m.eq(x, 0.0), -math.inf, y)
    y = m.select(m.lt(x, 0.0), math.nan, y)
    return m.select(m.isnan(x), x, y)


def _log1p(m: _Emitter, x):
    u = m.add(x, 1.0)
    k, f = _log_split(m, u)
    # c/u corrects for the rounding of u = 1 + x (log(1+x) = log(u) + log1p(c/u)); once 1 is
    # below x's last bit the rounding is gone
    k_ge2 = m.b.icmp_signed(">=", k, m.iconst(2))
    c = m.select(k_ge2, m.sub(1.0, m.sub(u, x)), m.sub(x, m.sub(u, 1.0)))
    c = m.div(c, u)
    c = m.select(m.b.icmp_signed("<", k, m.iconst(m.mant + 2)), c, 0.0)
    y = _log_combine(m, k, f, c)
    y = m.select(m.eq(x, math.inf), x, y)
    y = m.select(m.eq(x, -1.0), -math.inf, y)
    y = m.select(m.lt(x, -1.0), math.nan, y)
    y = m.select(m.eq(x, 0.0), x, y)  # keeps -0.0
    return m.select(m.isnan(x), x, y)


# erf


def _erf(m: _Emitter, x):
    # below 1, a + a*F(a^2) keeps the relative accuracy near 0; above, 1 - erfc where only
    # erfc's absolute error matters
    magnitude = m.abs(x)
    near = m.fma(magnitude, m.poly(m.mul(magnitude, magnitude), m.table(_ERF_NEAR)), magnitude)

    limit = m.table(_ERF_SATURATE)
    far = m.sub(1.0, _erfc_far(m, m.select(m.gt(magnitude, limit), limit, magnitude)))
    y = m.copysign(m.select(m.lt(magnitude, 1.0), near, far), x)
    return m.select(m.isnan(x), x, y)


def _erfc_far(m: _Emitter, a):
    """erfc(a) for 1 <= a <= ERF_SATURATE by erf's far polynomial g: exp(-a^2) g(a), with
    a^2 = hi + lo exactly: exp(-hi) * (1 - lo) (exp(-hi) alone would be off by up to a^2 * eps
    relative)."""
    hi = m.mul(a, a)
    lo = m.fma(a, a, m.neg(hi))
    if m.width == 32:
        g = m.poly(m.sub(a, 2.5), m.table(_ERF_FAR))
    else:
        t = m.div(1.0, m.fma(a, _ERF_FAR_P, 1.0))
        g = m.poly(m.sub(t, _ERF_FAR_T0), m.table(_ERF_FAR))
    return m.mul(_exp(m, m.neg(hi)), m.fma(m.neg(g), lo, g))


# sin and cos


def _sin_of_reduced(m: _Emitter, x, q, scale: float):
    """sin(x - q*pi*scale) for integer-valued q, scale 1 or 1/2 (exact halving of the parts).

    Each fma step is exact or rounds only relative to the remaining r. The result is clamped
    to [-1, 1]: near |r| = pi/2 the polynomial can round one ulp past 1, and past the range
    where the reduction holds it can be anything, even inf or NaN."""
    r = x
    for part in m.table(_PI):
        r = m.fma(q, -part * scale, r)
    z = m.mul(r, r)
    return m.clamp(m.fma(m.mul(r, z), m.poly(z, m.table(_SIN)), r), -1.0, 1.0)


def _finite_or_nan(m: _Emitter, x, y):
    """y where x is finite, NaN where x is +-inf or NaN (x - x makes that NaN)."""
    return m.select(m.lt(m.abs(x), math.inf), y, m.sub(x, x))


def _sin(m: _Emitter, x):
    # |x| = q*pi + r: sin(|x|) = (-1)^q sin(r), |r| <= pi/2; working on |x| makes sin exactly
    # odd, -0.0 included, at every magnitude
    a = m.abs(x)
    q = m.rint(m.mul(a, m.table(_INV_PI)))
    sign = m.b.xor(m.sign_bit_if_odd(q), m.sign_bit(x))
    return _finite_or_nan(m, x, m.flip_sign(_sin_of_reduced(m, a, q, 1.0), sign))


def _cos(m: _Emitter, x):
    # |x| = (2h+1)*pi/2 + r: cos(x) = (-1)^(h+1) sin(r), |r| <= pi/2; reducing by an odd
    # multiple of pi/2 keeps relative accuracy near the zeros of cos
    a = m.abs(x)
    h = m.rint(m.sub(m.mul(a, m.table(_INV_PI)), 0.5))
    y = _sin_of_reduced(m, a, m.fma(h, 2.0, 1.0), 0.5)
    return _finite_or_nan(m, x, m.flip_sign(m.neg(y), m.sign_bit_if_odd(h)))


# special functions: computed in double precision for either width (a float32 argument is
# widened, its result rounded once), by the algorithms and constants of the whole-array numpy
# forms in runtime/kernels/special.py, which states their accuracy (checked against mpmath in
# tests/runtime/test_special_functions.py)


def _in_double(rule: Callable) -> Callable:
    """rule(m, x) for a double emitter, applied to x of either width."""

    def widened(m: _Emitter, x):
        if m.width == 64:
            return rule(m, x)
        d = _Emitter(m.b, ir.DoubleType())
        return m.b.fptrunc(rule(d, m.b.fpext(x, d.ty)), m.ty)

    widened.__name__ = rule.__name__
    return widened


def _finite(m: _Emitter, x, stand_in: float):
    """x where it is finite, stand_in where it is +-inf or NaN (so nothing downstream makes
    poison or traps; callers put the special values back)."""
    return m.select(m.lt(m.abs(x), math.inf), x, stand_in)


def _exp_of_minus_square(m: _Emitter, a):
    """exp(-a^2) with a^2 = hi + lo exactly: exp(-hi) * (1 - lo)."""
    hi = m.mul(a, a)
    lo = m.fma(a, a, m.neg(hi))
    return m.mul(_exp(m, m.neg(hi)), m.sub(1.0, lo))


def _erfc_d(m: _Emitter, x):
    a = m.abs(x)
    near = m.sub(1.0, m.copysign(m.fma(a, m.poly(m.mul(a, a), _ERF_NEAR[64]), a), x))
    low = _erfc_far(m, m.clamp(a, 1.0, _special.ERFC_MID_FROM))  # 1 <= a <= 1.5
    # 1.5 <= a <= 3: exp(-a^2) times the fit of exp(a^2) erfc(a)
    b = m.clamp(a, _special.ERFC_MID_FROM, _special.ERFC_FRACTION_FROM)
    mid = m.mul(_exp_of_minus_square(m, b),
                m.poly(m.sub(b, _special.ERFC_MID_CENTER), _special.ERFC_MID))
    # past 3: the continued fraction K(d) = d + (1/2) / (d + 1 / (d + ...)) by its forward
    # recurrence (numerators and denominators, multiply-adds only, one division at the end)
    d = m.clamp(a, _special.ERFC_FRACTION_FROM, 30.0)
    num_prev, num = m.const(1.0), d
    den_prev, den = m.const(0.0), m.const(1.0)
    for n in range(1, _special.ERFC_TERMS + 1):
        num_prev, num = num, m.fma(d, num, m.mul(0.5 * n, num_prev))
        den_prev, den = den, m.fma(d, den, m.mul(0.5 * n, den_prev))
    far = m.div(m.mul(_exp_of_minus_square(m, d), den), m.mul(num, _special.SQRT_PI))
    value = m.select(m.lt(a, _special.ERFC_MID_FROM), low,
                     m.select(m.lt(a, _special.ERFC_FRACTION_FROM), mid, far))
    value = m.select(m.lt(x, 0.0), m.sub(2.0, value), value)
    y = m.select(m.lt(a, 1.0), near, value)
    return m.select(m.isnan(x), x, y)


def _erfinv_d(m: _Emitter, y):
    # Giles' polynomials, then one Halley step on erf(x) = a (erfc(x) = 1 - a past a = 1/2);
    # lanes with w >= 16 (|y| > 1 - 5.6e-8, float64 inputs only) are recomputed by the
    # caller (runtime/kernels/elementwise.py), as the numpy form does them
    a = m.abs(y)
    inside = m.lt(a, 1.0)
    a_in = m.select(inside, a, 0.5)
    w = m.neg(_log(m, m.mul(m.sub(1.0, a_in), m.add(1.0, a_in))))
    central = m.poly(m.sub(w, 2.5), _special.ERFINV_CENTRAL)
    root = m.intrinsic("sqrt", w)
    tail = m.poly(m.sub(root, 3.0), _special.ERFINV_TAIL)
    x = m.mul(m.select(m.lt(w, 5.0), central, tail), a_in)
    residual = m.select(m.gt(a_in, 0.5), m.sub(m.sub(1.0, a_in), _erfc_d(m, x)),
                        m.sub(_erf(m, x), a_in))
    step = m.div(residual, m.mul(_exp(m, m.neg(m.mul(x, x))), _special.TWO_OVER_SQRT_PI))
    x = m.sub(x, m.div(step, m.fma(x, step, 1.0)))
    x = m.select(inside, x, m.select(m.eq(a, 1.0), math.inf, math.nan))
    return m.select(m.isnan(y), y, m.copysign(x, y))


def _sin_pi_of_offset(m: _Emitter, x):
    """(r, sin(pi r)) for r = x - rint(x) in [-1/2, 1/2]: exact, so the reflections keep
    their bits at large |x|."""
    r = m.sub(x, m.rint(x))
    return r, _sin(m, m.mul(r, math.pi))


def _lgamma_d(m: _Emitter, x):
    reflected = m.lt(x, 0.5)
    z = _finite(m, m.select(reflected, m.sub(1.0, x), x), 1.0)
    s = m.sub(z, 1.0)
    total = m.const(_special.LANCZOS[0])
    for i, c in enumerate(_special.LANCZOS[1:], start=1):
        total = m.add(total, m.div(c, m.add(s, float(i))))
    t = m.add(s, _special.LANCZOS_G + 0.5)
    direct = m.add(m.sub(m.fma(m.add(s, 0.5), _log(m, t), _special.HALF_LOG_2PI), t),
                   _log(m, total))
    _, sine = _sin_pi_of_offset(m, _finite(m, x, 0.5))
    mirrored = m.sub(m.sub(_special.LOG_PI, _log(m, m.abs(sine))), direct)
    y = m.select(reflected, mirrored, direct)
    tiny = m.lt(m.abs(x), _special.LGAMMA_TINY)  # -log|x|: sin(pi x) of a subnormal is coarse
    y = m.select(tiny, m.neg(_log(m, m.abs(x))), y)
    y = m.select(m.eq(m.abs(x), math.inf), math.inf, y)
    return m.select(m.isnan(x), x, y)


def _shifted(m: _Emitter, z, start: float, steps: int, term):
    """(z raised by 1 while below start, at most steps times; the sum of term(z_k) over the
    values passed)."""
    total = m.const(0.0)
    for _ in range(steps):
        low = m.lt(z, start)
        total = m.add(total, m.select(low, term(z), 0.0))
        z = m.add(z, m.select(low, 1.0, 0.0))
    return z, total


def _digamma_d(m: _Emitter, x):
    reflected = m.lt(x, 0.5)
    z = _finite(m, m.select(reflected, m.sub(1.0, x), x), 1.0)
    shift = _special.SHIFT_TO
    z, behind = _shifted(m, z, shift, int(shift), lambda v: m.div(1.0, v))
    inv2 = m.div(1.0, m.mul(z, z))
    series = m.mul(m.poly(inv2, _special.DIGAMMA_SERIES), inv2)
    direct = m.sub(m.sub(m.sub(_log(m, z), m.div(0.5, z)), series), behind)
    r, sine = _sin_pi_of_offset(m, _finite(m, x, 0.5))
    cosine = _cos(m, m.mul(r, math.pi))
    y = m.select(reflected, m.sub(direct, m.div(m.mul(cosine, math.pi), sine)), direct)
    pole = m.b.and_(m.eq(r, 0.0), m.b.not_(m.gt(x, 0.0)))
    y = m.select(pole, math.nan, y)
    y = m.select(m.eq(x, 0.0), m.copysign(math.inf, m.neg(x)), y)  # -0: +inf, +0: -inf
    y = m.select(m.eq(x, math.inf), math.inf, y)
    y = m.select(m.eq(x, -math.inf), math.nan, y)
    return m.select(m.isnan(x), x, y)


def _trigamma_d(m: _Emitter, x):
    reflected = m.lt(x, 0.5)
    z = _finite(m, m.select(reflected, m.sub(1.0, x), x), 1.0)
    start = _special.SHIFT_TO + 2
    z, head = _shifted(m, z, start, int(start), lambda v: m.div(1.0, m.mul(v, v)))
    # zeta(2, z) ~ 1/z + 1/(2 z^2) + sum_j B_2j / z^(2j + 1)
    inv = m.div(1.0, z)
    inv2 = m.mul(inv, inv)
    tail = m.mul(m.mul(m.poly(inv2, _special.BERNOULLI), inv2), inv)
    direct = m.add(m.add(m.fma(inv2, 0.5, inv), tail), head)
    r, sine = _sin_pi_of_offset(m, _finite(m, x, 0.5))
    mirrored = m.sub(m.div(math.pi * math.pi, m.mul(sine, sine)), direct)
    y = m.select(reflected, mirrored, direct)
    pole = m.b.and_(m.eq(r, 0.0), m.b.not_(m.gt(x, 0.0)))
    y = m.select(pole, math.inf, y)
    y = m.select(m.eq(x, math.inf), 0.0, y)
    y = m.select(m.eq(x, -math.inf), math.nan, y)
    return m.select(m.isnan(x), x, y)


def _unary(rule: Callable) -> Callable[[ir.IRBuilder, ir.Value], ir.Value]:
    def emit_one(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
        return rule(_Emitter(builder, x.type), x)

    emit_one.__name__ = rule.__name__.lstrip("_")
    emit_one.__doc__ = f"Emit {emit_one.__name__}(x) for a float or double x at builder."
    return emit_one


# The magnitude up to which the reduction of sin and cos holds (the ranges tested, see the
# module docstring). A kernel with either checks its arguments against it and, when one is
# past it, computes its rows again with libm's calls (codegen/llvm/emit.py), which reduce
# exactly over the whole range: the inline code stays straight-line where it is right.
REDUCED = {"sin": {32: 1e5, 64: 1e9}, "cos": {32: 1e5, 64: 1e9}}

FUNCTIONS: dict[str, Callable[[ir.IRBuilder, ir.Value], ir.Value]] = {
    "exp": _unary(_exp),
    "expm1": _unary(_expm1),
    "log": _unary(_log),
    "log1p": _unary(_log1p),
    "tanh": _unary(_tanh),
    "sigmoid": _unary(_sigmoid),
    "erf": _unary(_erf),
    "sin": _unary(_sin),
    "cos": _unary(_cos),
}
# inline forms that only eager kernels map over arrays (windows.unary_math), never fused: the
# special functions, and polygamma(1, x) as trigamma
EAGER_ONLY: dict[str, Callable[[ir.IRBuilder, ir.Value], ir.Value]] = {
    "erfc": _unary(_in_double(_erfc_d)),
    "erfinv": _unary(_in_double(_erfinv_d)),
    "lgamma": _unary(_in_double(_lgamma_d)),
    "digamma": _unary(_in_double(_digamma_d)),
    "trigamma": _unary(_in_double(_trigamma_d)),
}


def emit(name: str, builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Emit name(x) at builder's position for a float or double x; the result has x's type."""
    rule = FUNCTIONS.get(name) or EAGER_ONLY.get(name)
    if rule is None:
        raise ValueError(
            f"no inline math function {name!r}; expected one of "
            f"{', '.join([*FUNCTIONS, *EAGER_ONLY])}"
        )
    return rule(builder, x)
