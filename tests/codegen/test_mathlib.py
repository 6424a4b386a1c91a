"""codegen/llvm/mathlib: the inline transcendentals stay within a few ulp of numpy over the whole
float range, match it exactly on NaN, +-inf, -0.0 and the overflow edges, and leave the loop
around them vectorized."""

import ctypes
import math
import re

import numpy as np
import pytest
from ember.codegen.llvm import mathlib, target
from hypothesis import given, settings
from hypothesis import strategies as st
from llvmlite import ir

DTYPES = [np.float32, np.float64]
NAMES = sorted(mathlib.FUNCTIONS)
SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
MAX_ULP = 4.0
# Where sin and cos promise MAX_ULP; past it only a result in [-1, 1].
TRIG_RANGE = {np.float32: 1e5, np.float64: 1e9}
LONG_PI = np.longdouble("3.14159265358979323846264338327950288")


# kernels: y[i] = f(x[i])


def kernel_ir(name, dtype):
    ty = ir.FloatType() if dtype == np.float32 else ir.DoubleType()
    i64 = ir.IntType(64)
    module = ir.Module(name=f"mathlib_{name}")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.PointerType()] * 2 + [i64]), "k")
    x_ptr, y_ptr, n = fn.args
    x_ptr.add_attribute("noalias")
    y_ptr.add_attribute("noalias")
    entry, loop, done = (fn.append_basic_block(b) for b in ("entry", "loop", "done"))
    builder = ir.IRBuilder(entry)
    builder.cbranch(builder.icmp_signed(">", n, i64(0)), loop, done)
    builder.position_at_end(loop)
    i = builder.phi(i64)
    i.add_incoming(i64(0), entry)
    x = builder.load(builder.gep(x_ptr, [i], source_etype=ty), typ=ty)
    builder.store(mathlib.emit(name, builder, x), builder.gep(y_ptr, [i], source_etype=ty))
    following = builder.add(i, i64(1))
    i.add_incoming(following, loop)
    builder.cbranch(builder.icmp_signed("<", following, n), loop, done)
    builder.position_at_end(done)
    builder.ret_void()
    return str(module)


_kernels = {}


def apply(name, x):
    """name(x) through a compiled kernel, built once per (function, dtype)."""
    x = np.ascontiguousarray(x)
    key = (name, x.dtype)
    if key not in _kernels:
        library = target.ObjectLibrary(target.emit_object(kernel_ir(name, x.dtype.type)))
        _kernels[key] = (library, library.function("k", SIGNATURE))
    y = np.empty_like(x)
    _kernels[key][1](x.ctypes.data, y.ctypes.data, x.size)
    return y


# references: float64 for float32 results, long double (64-bit mantissa on x86) for float64;
# erf has no long double form in numpy, so float64 takes math.erf


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x < 0, e, 1) / (1 + e)


_erf = np.frompyfunc(math.erf, 1, 1)

REFERENCES = {
    "exp": np.exp,
    "expm1": np.expm1,
    "log": np.log,
    "log1p": np.log1p,
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "sin": np.sin,
    "cos": np.cos,
    "erf": lambda x: _erf(x.astype(np.float64)).astype(np.float64),
}


def reference(name, x):
    wide = np.float64 if x.dtype == np.float32 else np.longdouble
    with np.errstate(all="ignore"):
        return REFERENCES[name](x.astype(wide))


def ulp_error(got, ref, dtype):
    """|got - ref| in units of the spacing of dtype at ref (denormal spacing below the normal
    range), against the unrounded reference, so a correctly rounded result scores <= 0.5.
    Where the reference is NaN, infinite or exactly zero, or got is NaN or infinite, anything
    but the identical value (with the same sign of zero) scores inf."""
    info = np.finfo(dtype)
    with np.errstate(all="ignore"):
        rounded = ref.astype(dtype)
        identical = (got == rounded) & (np.signbit(got) == np.signbit(rounded))
        identical |= np.isnan(got) & np.isnan(rounded)
        _, exponent = np.frexp(ref)
        spacing = np.ldexp(np.ones_like(ref), np.maximum(exponent - 1, info.minexp) - info.nmant)
        error = (np.abs(got.astype(ref.dtype) - ref) / spacing).astype(np.float64)
    special = ~np.isfinite(rounded) | ~np.isfinite(got) | (ref == 0)
    return np.where(identical, 0.0, np.where(special, np.inf, error))


# inputs


def edges(dtype):
    """Specials, range ends and the points where exp, log and expm1 change regime."""
    info = np.finfo(dtype)
    tiny = info.smallest_subnormal
    points = [0.0, np.inf, tiny, 2 * tiny, info.smallest_normal, info.max, 1e-10]
    points += [0.5, 1.0, 1.5, 2.0, 3.0, 10.0, 20.0, 100.0, math.pi / 2, math.pi]
    points += [math.log(info.max), math.log(tiny), math.log(tiny) - math.log(2)]
    points += [math.log(info.smallest_normal)]
    x = np.array(points, dtype)
    with np.errstate(over="ignore"):
        x = np.concatenate([x, np.nextafter(x, dtype(np.inf)), np.nextafter(x, dtype(-np.inf))])
    x = np.concatenate([x, -x, np.array([-1.0, np.nextafter(-1, 0), np.nextafter(-1, -2)], dtype)])
    return np.append(x, dtype(np.nan))


# the interval where each function is neither constant nor trivially x, for dense sampling
INTERESTING = {
    "exp": (-750.0, 750.0),
    "expm1": (-50.0, 750.0),
    "log": (0.0, 4.0),
    "log1p": (-1.0, 4.0),
    "tanh": (-25.0, 25.0),
    "sigmoid": (-750.0, 750.0),
    "erf": (-7.0, 7.0),
    "sin": (-10.0, 10.0),
    "cos": (-10.0, 10.0),
}


def whole_range(name, dtype):
    """float32: every 1021st bit pattern (all exponents, both signs, denormals); float64:
    200k random bit patterns. Both: 100k uniform points in the interesting interval, edges."""
    rng = np.random.default_rng(1234)
    if dtype == np.float32:
        x = np.arange(0, 2**32, 1021, dtype=np.uint64).astype(np.uint32).view(np.float32)
    else:
        x = rng.integers(0, 2**64, 200_000, dtype=np.uint64).view(np.float64)
    low, high = INTERESTING[name]
    dense = rng.uniform(low, high, 100_000).astype(dtype)
    return np.concatenate([x, dense, edges(dtype)])


def near_multiples_of_half_pi(dtype):
    """The floats nearest to k*pi/2 and their neighbours, up to TRIG_RANGE: where the reduction
    cancels the most bits."""
    count = int(TRIG_RANGE[dtype] / (math.pi / 2))
    if dtype == np.float32:
        k = np.arange(1, count, dtype=np.float64)
    else:
        k = np.random.default_rng(99).integers(1, count, 100_000).astype(np.longdouble)
    x = (k * (LONG_PI / 2)).astype(dtype)
    x = np.concatenate([x, np.nextafter(x, dtype(0)), np.nextafter(x, dtype(np.inf))])
    return np.concatenate([x, -x])


def trig_inputs(dtype):
    rng = np.random.default_rng(5)
    x = whole_range("sin", dtype)
    x = x[~(np.abs(x) > TRIG_RANGE[dtype])]
    log_uniform = np.exp(rng.uniform(-5, np.log(TRIG_RANGE[dtype]), 100_000))
    return np.concatenate([x, log_uniform.astype(dtype), near_multiples_of_half_pi(dtype)])


def worst(name, x):
    got = apply(name, x)
    error = ulp_error(got, reference(name, x), x.dtype)
    i = int(np.argmax(error))
    return error[i], x[i], got[i]


# accuracy


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", NAMES)
def test_whole_float_range_is_within_ulp_bound(name, dtype):
    x = trig_inputs(dtype) if name in ("sin", "cos") else whole_range(name, dtype)
    error, at, got = worst(name, x)
    assert error <= MAX_ULP, (
        f"{name} {dtype.__name__}: worst error {error:.3f} ulp at x={at!r} (got {got!r}, "
        f"numpy {reference(name, np.array([at]))[0]!r})"
    )


SPECIAL_CASES = [
    ("exp", -np.inf, 0.0),
    ("exp", np.inf, np.inf),
    ("exp", 1000.0, np.inf),
    ("exp", -1000.0, 0.0),
    ("expm1", -np.inf, -1.0),
    ("expm1", -0.0, -0.0),
    ("expm1", 1e-10, np.expm1),
    ("log", 0.0, -np.inf),
    ("log", -0.0, -np.inf),
    ("log", -1.0, np.nan),
    ("log", -np.inf, np.nan),
    ("log", np.inf, np.inf),
    ("log", 1.0, 0.0),
    ("log1p", -1.0, -np.inf),
    ("log1p", -2.0, np.nan),
    ("log1p", -0.0, -0.0),
    ("log1p", 1e-10, np.log1p),
    ("log1p", np.inf, np.inf),
    ("tanh", 1e-10, np.tanh),
    ("tanh", -0.0, -0.0),
    ("tanh", np.inf, 1.0),
    ("tanh", -50.0, -1.0),
    ("sigmoid", -np.inf, 0.0),
    ("sigmoid", np.inf, 1.0),
    ("sigmoid", 0.0, 0.5),
    ("erf", -0.0, -0.0),
    ("erf", np.inf, 1.0),
    ("erf", -np.inf, -1.0),
    ("sin", -0.0, -0.0),
    ("sin", np.inf, np.nan),
    ("sin", -np.inf, np.nan),
    ("cos", np.inf, np.nan),
    ("cos", -0.0, 1.0),
] + [(name, np.nan, np.nan) for name in NAMES]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize(("name", "x", "expected"), SPECIAL_CASES)
def test_special_values_are_exact(name, x, expected, dtype):
    """expected: the value, or the numpy function whose result must be matched exactly."""
    got = apply(name, np.array([x], dtype))[0]
    if callable(expected):
        expected = expected(np.array([x], dtype))[0]
    assert got == expected or (np.isnan(got) and np.isnan(expected)), (name, x, got)
    if expected == 0:
        assert np.signbit(got) == np.signbit(expected), f"{name}({x!r}) = {got!r}: sign of zero"


def test_sigmoid_left_tail_keeps_relative_precision():
    x = np.array([-80.0, -87.0, -100.0], np.float32)
    got = apply("sigmoid", x)
    assert got[0] == pytest.approx(1.8048513e-35, rel=1e-6)
    np.testing.assert_array_equal(got[1:], np.exp(x[1:].astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", ["sin", "cos"])
def test_trig_past_tested_range_stays_within_one(name, dtype):
    rng = np.random.default_rng(7)
    log_max = np.log(np.finfo(dtype).max)
    x = np.exp(rng.uniform(np.log(TRIG_RANGE[dtype]), log_max, 100_000)).astype(dtype)
    got = apply(name, np.concatenate([x, -x]))
    assert np.all(np.abs(got) <= 1), got[~(np.abs(got) <= 1)][:5]


# vectorization


def test_every_function_vectorizes_without_libm_calls():
    features = target.llvm().get_host_cpu_features()
    if not features.get("avx2"):
        pytest.skip("host CPU without AVX2: no ymm/zmm registers to look for")
    for name in NAMES:
        asm = target.assembly(kernel_ir(name, np.float32))
        vector_ops = re.findall(r"^\s+v\w+\s.*%[yz]mm\d+", asm, flags=re.MULTILINE)
        assert len(vector_ops) >= 10, f"{name}: loop not vectorized"
        calls = re.findall(r"^\s+(?:call|jmp)\w*\s+(\S+)", asm, flags=re.MULTILINE)
        libm = [c for c in calls if re.search(r"exp|log|sin|cos|tanh|erf|pow|fma", c)]
        assert not libm, f"{name}: calls {libm}"


# identities


floats32 = st.floats(width=32, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(floats32, min_size=1, max_size=32))
def test_tanh_erf_and_sin_are_odd_and_cos_even(values):
    x = np.array(values, np.float32)
    for name in ("tanh", "erf", "sin"):
        np.testing.assert_array_equal(apply(name, -x), -apply(name, x), err_msg=name)
    np.testing.assert_array_equal(apply("cos", -x), apply("cos", x), err_msg="cos")


@settings(max_examples=200, deadline=None)
@given(st.lists(floats32, min_size=1, max_size=32))
def test_sigmoid_of_x_and_minus_x_sum_to_one(values):
    x = np.array(values, np.float32)
    total = apply("sigmoid", x).astype(np.float64) + apply("sigmoid", -x)
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=3e-7)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=2.0**-100, max_value=2.0**100, width=32), min_size=1, max_size=32)
)
def test_exp_inverts_log(values):
    x = np.array(values, np.float32)
    back = apply("exp", apply("log", x))
    # log's last-bit error is absolute in log x, so relative in exp(log x)
    tolerance = 4 * np.finfo(np.float32).eps * (1 + np.abs(np.log(x)))
    assert np.all(np.abs(back / x - 1) <= tolerance)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-1e5, max_value=1e5, width=32), min_size=1, max_size=32))
def test_sin_squared_plus_cos_squared_is_one(values):
    x = np.array(values, np.float32)
    s, c = apply("sin", x).astype(np.float64), apply("cos", x).astype(np.float64)
    np.testing.assert_allclose(s * s + c * c, 1.0, rtol=0, atol=4e-7)


def test_unknown_function_and_integer_type_are_refused():
    builder = ir.IRBuilder(
        ir.Function(ir.Module(), ir.FunctionType(ir.VoidType(), []), "f").append_basic_block()
    )
    with pytest.raises(ValueError, match="'gamma'.*expected one of"):
        mathlib.emit("gamma", builder, ir.Constant(ir.FloatType(), 1.0))
    with pytest.raises(TypeError, match="float or double"):
        mathlib.emit("exp", builder, ir.Constant(ir.IntType(32), 1))


def test_functions_in_one_module_share_intrinsic_declarations():
    module = ir.Module()
    fn = ir.Function(module, ir.FunctionType(ir.FloatType(), [ir.FloatType()]), "f")
    builder = ir.IRBuilder(fn.append_basic_block())
    y = fn.args[0]
    for name in NAMES:
        y = mathlib.emit(name, builder, y)
    builder.ret(y)
    text = str(module)
    assert text.count('declare float @"llvm.fma.f32"') == 1
    assert not re.search(r"\b(fast|contract|nnan|ninf|afn|reassoc)\b", text)
    target.emit_object(text)  # parses and verifies
