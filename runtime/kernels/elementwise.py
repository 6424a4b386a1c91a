"""Elementwise kernels: one numpy-API call (or a short stable formula) per op."""

from __future__ import annotations

import numpy as np

from ...ir import ops as _ops  # noqa: F401  (registers the declarations)
from ...ir.schema import SCHEMAS
from .. import windows
from . import special
from .registry import KERNELS, kernel

# ops whose edge cases (x/0, log(0), 0**-1) are meant to give inf/nan silently, as in PyTorch
_QUIET = {"log", "log1p", "sqrt", "div", "pow", "exp", "expm1", "asin", "acos", "acosh",
          "atanh", "log2", "log10", "exp2", "sinh", "cosh", "logaddexp", "logaddexp2", "hypot"}


def _quiet_caller():
    """quiet(f): f called with numpy's floating-point errors ignored, as under
    np.errstate(all="ignore"). numpy 2 keeps that state in a context variable: setting it
    directly costs ~0.2 us where a fresh errstate costs ~0.85 (a small op's whole kernel is
    ~0.3). Other numpy versions use errstate."""
    try:
        from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj

        ignore = _make_extobj(all="ignore")
        with np.errstate(all="ignore"):
            assert _extobj_contextvar.get() is not None
    except (ImportError, AttributeError, TypeError, AssertionError):
        def quiet(fn, *args):
            with np.errstate(all="ignore"):
                return fn(*args)

        return quiet

    def quiet(fn, *args):
        token = _extobj_contextvar.set(ignore)
        try:
            return fn(*args)
        finally:
            _extobj_contextvar.reset(token)

    return quiet


quiet = _quiet_caller()


# from this many elements an add, subtract, multiply or divide of float arrays (of one shape,
# or an array and a scalar) runs as a native pool task (windows.binary). Inside a training step
# these are memory-bound passes into fresh arrays while earlier results stay alive: there, on
# 131072 floats, numpy took 38-42 us a multiply and the pool 16-19 (makemore's eager GPT step:
# 18.3 ms to 17.1). Hot in cache, numpy alone is faster below it (65536: 5.8 us against 13.5),
# and makemore's step gained nothing more from 65536.
POOLED_MIN_ELEMENTS = 1 << 17
# codegen/llvm/binary.py's OPS
_POOLED = frozenset({"add", "subtract", "multiply", "true_divide"})


def _scalar_like(x, dtype):
    """x as a 0-d array when it is a scalar of `dtype` (a numpy scalar or a 0-d array), else
    None."""
    if x.__class__ is np.ndarray:
        return x if x.ndim == 0 and x.dtype == dtype else None
    if x.__class__ is dtype.type:
        return np.asarray(x)
    return None


def _pooled(name: str, a, b, out):
    """a name b on the pool (windows.binary), or None where numpy's ufunc runs it: other
    shapes (broadcasting but for a scalar side), dtypes or layouts, small arrays, an out=
    other than a itself, or an in-place write into memory b reads."""
    if a.__class__ is np.ndarray and a.size >= POOLED_MIN_ELEMENTS and a.ndim:
        if b.__class__ is np.ndarray and b.shape == a.shape:
            if b.dtype != a.dtype or not windows.available(a, b):
                return None
        else:
            b = _scalar_like(b, a.dtype)
            if b is None or not windows.available(a):
                return None
        if out is not None:
            if out is not a or not a.flags.writeable:
                return None
            if np.may_share_memory(a, b):
                if b.ndim:
                    return None
                # x.mul_(x[0]): every chunk of the task loads the scalar, some after
                # another chunk wrote it; numpy reads a copy, as here
                b = b.copy()
        return windows.binary(name, a, b, out)
    if (out is None and b.__class__ is np.ndarray and b.size >= POOLED_MIN_ELEMENTS
            and b.ndim):
        a = _scalar_like(a, b.dtype)
        if a is None or not windows.available(b):
            return None
        return windows.binary(name, a, b)
    return None


def _ufunc_kernel(name: str, quiet_errors: bool):
    # out= lets in-place ops write straight into the tensor's array (see dispatch's out)
    function = getattr(np, name)
    if quiet_errors:
        def numpy_run(xp, *args, out=None):
            with np.errstate(all="ignore"):
                return getattr(xp, name)(*args, out=out)

        def numpy_direct(*arrays):
            return quiet(function, *arrays)
    else:
        def numpy_run(xp, *args, out=None):
            return getattr(xp, name)(*args, out=out)

        numpy_direct = function
    if name in _POOLED:  # (the pool's float operations raise no numpy warnings)
        def run(xp, *args, out=None):
            if xp is np and len(args) == 2:
                done = _pooled(name, args[0], args[1], out)
                if done is not None:
                    return done
            return numpy_run(xp, *args, out=out)

        def direct(a, b):
            # (small operands, most calls, go straight to numpy)
            if ((a.__class__ is np.ndarray and a.size >= POOLED_MIN_ELEMENTS)
                    or (b.__class__ is np.ndarray and b.size >= POOLED_MIN_ELEMENTS)):
                done = _pooled(name, a, b, None)
                if done is not None:
                    return done
            return numpy_direct(a, b)
    else:
        run, direct = numpy_run, numpy_direct
    # dispatch's planned calls (CPU arrays of the plan's dtypes, no out) call this instead
    run.direct_for = lambda arrays: direct
    run.__name__ = f"kernel_{name}"
    run.writes_out = True
    run.ufunc = name  # the numpy function that does the work (tests time kernels against it)
    return run


# the ops whose declaration names a numpy function (ir/ops: ufunc=) run it as their kernel
for _schema in SCHEMAS.values():
    if _schema.ufunc is not None:
        KERNELS[_schema.name] = _ufunc_kernel(_schema.ufunc, _schema.name in _QUIET)


def _multiply(a, b, out=None):
    """np.multiply(a, b, out=out), on the pool where it is large (_pooled)."""
    done = _pooled("multiply", a, b, out)
    return np.multiply(a, b, out=out) if done is None else done


def _integral_power(numpy_power):
    """pow's kernel: numpy's power, except a float array to a whole-number power (x ** 3 in
    GELU's approximate form, polynomial features): numpy's float power of a negative base took ~45
    ns an element here (x ** 3.0 on 131072 floats: 6.2 ms, against 0.14 for |x| ** 3.0). x ** 2
    and x ** 3 are x * x and x * x * x in float32 and float64, as PyTorch computes them (equal
    bit for bit; numpy's power(x, 2.0) took 40 us on 131072 floats, x * x 10); other whole
    powers, and float16's, are |x| ** n with x's sign put back for odd n (as accurate as
    numpy's: within an ulp; float16's rounded once from float32, numpy's own)."""

    def run(xp, x, exponent, out=None):
        if (xp is np and x.__class__ is np.ndarray and x.dtype.kind == "f"
                and isinstance(exponent, (int, float, np.number))
                and float(exponent).is_integer()):
            with np.errstate(all="ignore"):
                if exponent in (2, 3) and x.itemsize >= 4:  # (float16 rounds once, as numpy)
                    if exponent == 2:
                        return _multiply(x, x, out=out)
                    return _multiply(_multiply(x, x), x, out=out)
                if exponent == 2:
                    return numpy_power(xp, x, exponent, out=out)
                magnitude = np.power(np.abs(x), x.dtype.type(exponent))
                if exponent % 2:
                    return np.copysign(magnitude, x, out=out)
                if out is None:
                    return magnitude
                out[...] = magnitude
                return out
        return numpy_power(xp, x, exponent, out=out)

    run.__name__ = "kernel_power"  # the declared ufunc's kernel, refined
    run.writes_out = True
    run.ufunc = "power"
    return run


KERNELS["pow"] = _integral_power(KERNELS["pow"])


def _negative_into_strided(numpy_negative):
    """neg's kernel: numpy's negative, except into a strided out. numpy 2.4's negative writes
    wrong elements into an out of some strides (a float32 column of a 4-wide matrix: 16
    bytes; float64's 64): in place on such a view, x[:, 3:].neg_() gave [-4, -5] for [-4, -8].
    There it negates apart, then copies."""

    def run(xp, x, out=None):
        if xp is np and out is not None and not out.flags.c_contiguous:
            out[...] = np.negative(x)
            return out
        return numpy_negative(xp, x, out=out)

    run.direct_for = numpy_negative.direct_for  # (a planned call has no out)
    run.__name__ = "kernel_negative"  # the declared ufunc's kernel, refined
    run.writes_out = True
    run.ufunc = "negative"
    return run


KERNELS["neg"] = _negative_into_strided(KERNELS["neg"])


@kernel("rsqrt")
def _rsqrt(xp, x):
    with np.errstate(all="ignore"):
        return 1 / xp.sqrt(x)


@kernel("reciprocal")
def _reciprocal(xp, x):
    with np.errstate(all="ignore"):
        return 1 / x


# from about this many elements a native pass (one ctypes call) beats numpy's three
_NATIVE_SIGMOID_MIN = 4096


@kernel("sigmoid")
def _sigmoid(xp, x):
    if xp is np and x.size >= _NATIVE_SIGMOID_MIN and windows.available(x):
        # the compiled kernels' own sigmoid (within 2.4 ulp) in one pass over the array, on
        # the pool when large: numpy's three passes took 2-3x PyTorch's time
        return windows.unary_math("sigmoid", x)
    # PyTorch's 1 / (1 + exp(-x)): exp(-x) overflowing to inf gives exactly 0, and the left
    # tail keeps its relative precision (the hyperbolic-tangent form rounds sigmoid(-20) to 0).
    # float16 computes in float32, whose exp does not overflow where float16's would.
    wide = x.astype(np.float32) if x.dtype == np.float16 else x
    with np.errstate(over="ignore"):
        out = 1 / (1 + xp.exp(-wide))
    return out.astype(x.dtype, copy=False)


@kernel("relu")
def _relu(xp, x):
    return xp.maximum(x, x.dtype.type(0))


def _relu_direct_for(arrays):
    zero = arrays[0].dtype.type(0)  # the plan's dtype is fixed: its zero is made once
    return lambda x: np.maximum(x, zero)


_relu.direct_for = _relu_direct_for


@kernel("sign")
def _sign(xp, x):
    if x.dtype == np.bool_:
        return x.copy()
    if x.dtype.kind == "f":
        # PyTorch's (0 < x) - (x < 0): NaN has sign 0, where numpy's sign gives NaN
        return (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)
    return xp.sign(x)


def _special(xp, x, name: str, numpy_form, cupy_name: str, *cupy_args):
    """The special function `name` of x: cupyx.scipy.special's on CUDA, the inline IR mapped
    natively over the array (llvm/mathlib.py; float widths other than 32 and 64 go through
    float64, rounded once), or its whole-array numpy form where there is no native code."""
    if xp is not np:
        from cupyx.scipy import special as cupy_special

        return getattr(cupy_special, cupy_name)(*cupy_args, x).astype(x.dtype, copy=False)
    if x.size == 0:
        return x.copy()
    if not windows.available():
        return numpy_form(x)
    wide = x if x.dtype.name in ("float32", "float64") else x.astype(np.float64)
    if not wide.flags.c_contiguous:
        wide = np.ascontiguousarray(wide)
    return windows.unary_math(name, wide).astype(x.dtype, copy=False)


@kernel("erf")
def _erf(xp, x):
    # the compiled kernels' own erf (within 1.1 ulp), vectorized: numpy has none
    return _special(xp, x, "erf", special.erf, "erf")


@kernel("erfc")
def _erfc(xp, x):
    return _special(xp, x, "erfc", special.erfc, "erfc")


@kernel("erfinv")
def _erfinv(xp, x):
    out = _special(xp, x, "erfinv", special.erfinv, "erfinv")
    if xp is np and x.dtype == np.float64 and windows.available() and x.size:
        # the inline form's one Halley step holds up to w = -log(1 - x^2) = 16: the few
        # float64 values closer to +-1 take the numpy form's Newton steps on log erfc
        far = np.nonzero((np.abs(x) > 1.0 - 5.6e-8).reshape(-1))[0]
        if far.size:
            out = np.array(out)
            out.reshape(-1)[far] = special.erfinv(x.reshape(-1)[far])
    return out


@kernel("lgamma")
def _lgamma(xp, x):
    return _special(xp, x, "lgamma", special.lgamma, "gammaln")


@kernel("digamma")
def _digamma(xp, x):
    return _special(xp, x, "digamma", special.digamma, "digamma")


@kernel("polygamma")
def _polygamma(xp, x, n):
    if n == 0:
        return _digamma(xp, x)
    if n == 1 and xp is np:
        return _special(xp, x, "trigamma", lambda v: special.polygamma(1, v), "polygamma", 1)
    if xp is not np:
        return _special(xp, x, "polygamma", None, "polygamma", n)
    return special.polygamma(n, x) if x.size else x.copy()


def _check_integer_divisor(xp, b) -> None:
    # PyTorch raises on an integer division by zero, where numpy gives 0 with a warning
    kind = b.dtype.kind if hasattr(b, "dtype") else np.asarray(b).dtype.kind
    if kind in "iu" and not bool(xp.all(b)):
        from ...errors import runtime_error

        raise runtime_error("ZeroDivisionError: integer division by zero")


def _divisor_checked(ufunc: str):
    def run(xp, a, b):
        _check_integer_divisor(xp, b)
        with np.errstate(all="ignore"):
            return getattr(xp, ufunc)(a, b)

    run.__name__ = f"kernel_{ufunc}"
    run.ufunc = ufunc
    return run


# the numpy functions that divide: refused integer zero divisors, silent float ones
for _op in ("floor_divide", "remainder", "fmod"):
    KERNELS[_op] = _divisor_checked(_op)


@kernel("xlogy")
def _xlogy(xp, x, y):
    # x * log(y), and 0 where x is 0 unless y is NaN (0 * log(0) would be NaN), as PyTorch
    with np.errstate(all="ignore"):
        out = xp.multiply(x, xp.log(y))
    zero = (xp.asarray(x) == 0) & ~xp.isnan(y)
    return xp.where(zero, out.dtype.type(0), out)


@kernel("trunc_divide")
def _trunc_divide(xp, a, b):
    _check_integer_divisor(xp, b)
    with np.errstate(all="ignore"):
        if np.dtype(getattr(a, "dtype", None) or np.asarray(a).dtype).kind == "f":
            return xp.trunc(xp.true_divide(a, b))
        q = xp.floor_divide(a, b)
        # floor and trunc differ by one where the exact quotient is negative and inexact
        fix = (xp.remainder(a, b) != 0) & ((xp.asarray(a) < 0) != (xp.asarray(b) < 0))
        return q + fix.astype(q.dtype)


_SAME_WIDTH_INT = {2: np.int16, 4: np.int32, 8: np.int64}
# from about this many elements where's native pass beats the numpy blend
_NATIVE_SELECT_MIN = 4096


def select(xp, cond, a, b):
    """where(cond, a, b). On the CPU, for floats, as a bitwise blend of a and b under a mask
    of all-ones or all-zeros words: numpy's where branches per element and takes ~4 ns each
    on a random mask (relu's backward: 970 us for 262K floats, the blend ~60 us). The masks
    keep the condition's own shape (an attention mask of 64x64 stays small) and broadcast in
    the blend. The blend copies bits, as where does: NaN payloads and -0.0 stay."""
    if xp is not np:
        return xp.where(cond, a, b)
    a, b = np.asarray(a), np.asarray(b)
    dtype = a.dtype
    ints = _SAME_WIDTH_INT.get(dtype.itemsize)
    if (dtype.kind != "f" or b.dtype != dtype or ints is None
            or not isinstance(cond, np.ndarray) or cond.dtype != np.bool_ or cond.ndim == 0):
        return np.where(cond, a, b)
    if (cond.size >= _NATIVE_SELECT_MIN and a.shape in (cond.shape, ()) and b.shape in
            (cond.shape, ()) and cond.flags.c_contiguous and windows.available(a, b)):
        # one native pass: the blend below takes two to four and a mask array
        return windows.select(cond, a, b)
    shape = _repeats(cond, a, b)
    if shape is not None and windows.available(a, b):
        # a mask over the trailing dims (masked_fill of scores by a causal mask), read again
        # for each leading index: the blend made a full-size mask and wrote twice
        return windows.select(cond, a, b, shape)
    mask = np.negative(cond, dtype=ints, casting="unsafe")  # True -> -1: every bit set
    if a.ndim == 0 and b.ndim == 0:
        # two numbers (leaky_relu's scale): ((a ^ b) & mask) ^ b, in the mask's own array,
        # two passes after it where the general blend takes four and a second array
        np.bitwise_and(mask, _bits(a, ints) ^ _bits(b, ints), out=mask)
        return np.bitwise_xor(mask, _bits(b, ints), out=mask).view(dtype)
    out = np.bitwise_and(mask, _bits(a, ints))
    if b.ndim or b or np.signbit(b):  # else b is the scalar +0.0: its bits are all zero
        # in place where the shapes allow: a fresh array of this size is a fresh mapping
        # whose pages fault in (~100 us for 256 KiB), several times the blend's arithmetic
        np.invert(mask, out=mask)
        other = np.bitwise_and(mask, _bits(b, ints), out=_into(mask, b))
        out = np.bitwise_or(out, other, out=_into(out, other))
    return out.view(dtype)


def _repeats(cond, a, b):
    """The output's shape where one side has it and the other is 0-d, and a contiguous cond
    repeats along its leading dims (cond's shape, leading 1s aside, is the output's trailing
    dims); else None."""
    full = a if a.ndim else b
    other = b if a.ndim else a
    shape = full.shape
    if other.ndim or full.size < _NATIVE_SELECT_MIN or not cond.flags.c_contiguous:
        return None
    dims = cond.shape
    while dims and dims[0] == 1:
        dims = dims[1:]
    if len(cond.shape) > len(shape) or not dims or shape[len(shape) - len(dims):] != dims:
        return None
    return shape


def _into(target, operand):
    """target, where a binary op of target and operand has target's shape; else None."""
    shape = target.shape
    return target if operand.ndim <= len(shape) and all(
        d == 1 or d == t for d, t in zip(operand.shape[::-1], shape[::-1])) else None


def _bits(x, ints):
    """x's bits as integers of its width (a 0-d x as a scalar, which views cannot give)."""
    return x.view(ints) if x.ndim else x.reshape(1).view(ints)[0]


@kernel("where")
def _where(xp, cond, a, b):
    return select(xp, cond, a, b)


@kernel("clamp")
def _clamp(xp, x, min=None, max=None):
    if min is not None and max is not None:
        out = xp.minimum(xp.maximum(x, min), max)
    elif min is not None:
        out = xp.maximum(x, min)
    else:
        out = xp.minimum(x, max)
    return out


@kernel("cast")
def _cast(xp, x, dtype):
    from ...ir.dtypes import as_dtype

    return x.astype(as_dtype(dtype).np)


@kernel("clone")
def _clone(xp, x):
    return x.copy()


@kernel("masked_fill")
def _masked_fill(xp, x, mask, value):
    return select(xp, mask, x.dtype.type(value), x)
