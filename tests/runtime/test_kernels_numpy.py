"""The eager kernels are the reference every backend must match, so each elementwise and
reduction kernel is checked here against the direct numpy (or math) computation: on random
float and integer inputs, and on the edge cases PyTorch defines (nan/inf propagation, silent
inf/nan, Python's remainder, truncating division, stable logsumexp and sigmoid)."""

import math
import operator
import warnings

import numpy as np
import pytest
from ember.errors import EmberError
from ember.ir import ops as _ir_ops  # noqa: F401  (registers the schemas)
from ember.ir.schema import SCHEMAS
from ember.runtime.kernels import KERNELS

# A kernel must never warn: PyTorch gives inf/nan silently where numpy would complain.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

FLOATS = (np.float16, np.float32, np.float64)
INTS = (np.uint8, np.int8, np.int16, np.int32, np.int64)
SEEDS = range(3)
SHAPES = ((), (7,), (3, 4), (2, 3, 5))

_TOL = {np.float16: (2e-3, 1e-4), np.float32: (2e-6, 1e-7), np.float64: (1e-13, 1e-300)}


def close(actual, expected, dtype=None):
    """Same shape, same nan/inf positions, values within the dtype's rounding."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    dtype = np.dtype(dtype or expected.dtype).type
    if np.issubdtype(dtype, np.floating):
        rtol, atol = _TOL[dtype]
        np.testing.assert_allclose(
            actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol
        )
    else:
        np.testing.assert_array_equal(actual, expected)


def random_array(rng, shape, dtype, low=-5.0, high=5.0):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        lo = max(int(low), int(np.iinfo(dtype).min))
        return rng.integers(lo, int(high) + 1, size=shape).astype(dtype)
    return rng.uniform(low, high, size=shape).astype(dtype)


def _erf64(x):
    return np.vectorize(math.erf, otypes=[np.float64])(np.asarray(x, np.float64))


def _sigmoid64(x):
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _in64(fn):
    """A reference computed in float64 and rounded to the input's dtype once."""

    def reference(x):
        return np.asarray(fn(np.asarray(x, np.float64))).astype(np.asarray(x).dtype)

    return reference


def _quiet(fn):
    def reference(*args):
        with np.errstate(all="ignore"):
            return fn(*args)

    return reference


# -- elementwise: op -> (reference, dtypes it is called with, input range) -------------------

_FLOAT_UNARY = {
    "exp": (_quiet(np.exp), (-8, 8)),
    "log": (_quiet(np.log), (-1, 10)),
    "log1p": (_quiet(np.log1p), (-2, 10)),
    "expm1": (_quiet(np.expm1), (-8, 8)),
    "sqrt": (_quiet(np.sqrt), (-1, 10)),
    "rsqrt": (_in64(_quiet(lambda x: 1 / np.sqrt(x))), (-1, 10)),
    "reciprocal": (_in64(_quiet(lambda x: 1 / x)), (-10, 10)),
    "sin": (np.sin, (-10, 10)),
    "cos": (np.cos, (-10, 10)),
    "tanh": (np.tanh, (-10, 10)),
    "sigmoid": (_in64(_sigmoid64), (-30, 30)),
    "erf": (_in64(_erf64), (-4, 4)),
    "asin": (_quiet(np.arcsin), (-1.2, 1.2)),
    "acos": (_quiet(np.arccos), (-1.2, 1.2)),
    "atan": (np.arctan, (-20, 20)),
    "sinh": (_quiet(np.sinh), (-20, 20)),
    "cosh": (_quiet(np.cosh), (-20, 20)),
    "asinh": (np.arcsinh, (-20, 20)),
    "acosh": (_quiet(np.arccosh), (0.5, 20)),
    "atanh": (_quiet(np.arctanh), (-1.2, 1.2)),
    "log2": (_quiet(np.log2), (-1, 100)),
    "log10": (_quiet(np.log10), (-1, 100)),
    "exp2": (_quiet(np.exp2), (-30, 30)),
    "tan": (np.tan, (-1.5, 1.5)),
    "erfc": (_in64(np.vectorize(math.erfc, otypes=[np.float64])), (-6, 6)),
    "lgamma": (_in64(np.vectorize(math.lgamma, otypes=[np.float64])), (0.05, 30)),
}
_ANY_UNARY = {
    "abs": np.abs,
    "floor": np.floor,
    "ceil": np.ceil,
    "round": np.round,
    "trunc": np.trunc,
    "sign": np.sign,
    "relu": lambda x: np.where(x < 0, np.zeros_like(x), x),
    "clone": np.copy,
}
_SIGNED_UNARY = {"neg": np.negative}
_BOOL_UNARY = {"logical_not": np.logical_not}


def _trunc_divide(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f":
        with np.errstate(all="ignore"):
            return np.trunc(a / b)
    # exact integer truncation toward zero, as C and PyTorch divide
    q = np.abs(a.astype(np.int64)) // np.abs(b.astype(np.int64))
    return np.where((a < 0) != (b < 0), -q, q).astype(np.result_type(a, b))


def _python_mod(a, b):
    out = np.frompyfunc(operator.mod, 2, 1)(
        *(
            np.asarray(v).astype(object if np.asarray(v).dtype.kind in "iu" else float)
            for v in (a, b)
        )
    )
    return np.asarray(out, dtype=np.result_type(a, b))


_ARITHMETIC = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "div": _quiet(np.true_divide),
    "floor_divide": _quiet(np.floor_divide),
    "trunc_divide": _trunc_divide,
    "remainder": _python_mod,
    "pow": _quiet(np.power),
}
_COMPARE = {
    "eq": np.equal,
    "ne": np.not_equal,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}
def _xlogy(x, y):
    with np.errstate(all="ignore"):
        out = x * np.log(y)
    return np.where((x == 0) & ~np.isnan(y), 0, out).astype(out.dtype)


_FLOAT_BINARY = {
    "atan2": np.arctan2,
    "hypot": _quiet(np.hypot),
    "logaddexp": _quiet(np.logaddexp),
    "logaddexp2": _quiet(np.logaddexp2),
    "copysign": np.copysign,
    "xlogy": _xlogy,
    "fmod": _quiet(np.fmod),
}
_BITWISE = {
    "bitwise_and": np.bitwise_and,
    "bitwise_or": np.bitwise_or,
    "bitwise_xor": np.bitwise_xor,
    "bitwise_left_shift": np.left_shift,
    "bitwise_right_shift": np.right_shift,
}
_SPECIAL = {"where", "clamp", "cast", "masked_fill", "bitwise_not", "erfinv", "digamma",
            "polygamma"}
_REDUCTIONS = {
    "sum",
    "prod",
    "mean",
    "var",
    "logsumexp",
    "amax",
    "amin",
    "all",
    "any",
    "max_dim",
    "min_dim",
    "argmax",
    "argmin",
    "cumsum",
    "sort",
    "cummax",
    "cummin",
    "cumprod",
    "logcumsumexp",
    "median",
}

COVERED = (
    set(_FLOAT_UNARY)
    | set(_ANY_UNARY)
    | set(_SIGNED_UNARY)
    | set(_BOOL_UNARY)
    | set(_ARITHMETIC)
    | set(_COMPARE)
    | set(_FLOAT_BINARY)
    | set(_BITWISE)
    | _SPECIAL
    | _REDUCTIONS
)


def test_every_elementwise_and_reduction_kernel_is_checked_here():
    kinds = {op: SCHEMAS[op].kind for op in KERNELS if op in SCHEMAS}
    wanted = {op for op, kind in kinds.items() if kind in ("elementwise", "reduction")}
    assert not wanted - COVERED, f"kernels with no numpy check here: {sorted(wanted - COVERED)}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", sorted(_FLOAT_UNARY))
def test_float_unary_kernel_matches_numpy(op, dtype, seed):
    reference, (low, high) = _FLOAT_UNARY[op]
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        x = random_array(rng, shape, dtype, low, high)
        out = KERNELS[op](np, x)
        assert np.asarray(out).dtype == dtype, f"{op} changed {dtype.__name__} to {out.dtype}"
        close(out, reference(x), dtype)


@pytest.mark.parametrize("dtype", FLOATS + INTS)
@pytest.mark.parametrize("op", sorted(_ANY_UNARY) + sorted(_SIGNED_UNARY))
def test_unary_kernel_matches_numpy_on_floats_and_ints(op, dtype):
    reference = {**_ANY_UNARY, **_SIGNED_UNARY}[op]
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        x = random_array(rng, shape, dtype, -50, 50)
        if np.dtype(dtype).kind == "f":
            x = (x * 4).round() / 4  # exact halves, so round() meets ties (to even)
        out = KERNELS[op](np, x)
        close(out, reference(x), dtype)


@pytest.mark.parametrize("dtype", (np.bool_, np.float32, np.int32))
def test_logical_not_kernel_matches_numpy(dtype):
    x = random_array(np.random.default_rng(1), (4, 5), dtype, -2, 2)
    np.testing.assert_array_equal(KERNELS["logical_not"](np, x), np.logical_not(x))


def _binary_inputs(op, dtype, rng, shape_a, shape_b):
    kind = np.dtype(dtype).kind
    if op == "pow":
        if kind == "f":
            return random_array(rng, shape_a, dtype, 0.1, 4), random_array(
                rng, shape_b, dtype, -3, 3
            )
        return random_array(rng, shape_a, dtype, -3, 3), random_array(rng, shape_b, dtype, 0, 4)
    a = random_array(rng, shape_a, dtype, -50, 50)
    b = random_array(rng, shape_b, dtype, -50, 50)
    if op in ("div", "floor_divide", "trunc_divide", "remainder") and kind in "iu":
        b = np.where(b == 0, np.ones_like(b), b)  # integer division by zero is an error
    return a, b


# div computes in float: dispatch never hands it integers
BINARY_CASES = [
    (op, dtype)
    for op in sorted(_ARITHMETIC) + sorted(_COMPARE)
    for dtype in FLOATS + INTS
    if not (op == "div" and np.dtype(dtype).kind in "iu")
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op, dtype", BINARY_CASES)
def test_binary_kernel_matches_numpy_with_broadcasting(op, dtype, seed):
    reference = {**_ARITHMETIC, **_COMPARE}[op]
    rng = np.random.default_rng(seed)
    for shape_a, shape_b in (((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 5), (3, 1)), ((), (6,))):
        a, b = _binary_inputs(op, dtype, rng, shape_a, shape_b)
        close(KERNELS[op](np, a, b), reference(a, b), dtype if op in _ARITHMETIC else None)
        # a Python number arrives as a numpy scalar of the compute dtype
        scalar = b.reshape(-1)[0] if b.size else b.dtype.type(1)
        close(
            KERNELS[op](np, a, scalar), reference(a, scalar), dtype if op in _ARITHMETIC else None
        )


@pytest.mark.parametrize("dtype", (np.bool_,))
@pytest.mark.parametrize("op", ("logical_and", "logical_or", "logical_xor", "eq", "ne"))
def test_binary_kernel_on_bools(op, dtype):
    rng = np.random.default_rng(3)
    a, b = random_array(rng, (4, 5), dtype), random_array(rng, (5,), dtype)
    np.testing.assert_array_equal(KERNELS[op](np, a, b), _COMPARE[op](a, b))


@pytest.mark.parametrize("dtype", FLOATS + (np.int64,))
def test_where_kernel_matches_numpy(dtype):
    rng = np.random.default_rng(4)
    cond = rng.random((3, 4)) < 0.5
    a, b = random_array(rng, (4,), dtype), random_array(rng, (3, 1), dtype)
    np.testing.assert_array_equal(KERNELS["where"](np, cond, a, b), np.where(cond, a, b))


@pytest.mark.parametrize("dtype", FLOATS)
def test_where_keeps_every_bit_of_the_chosen_value(dtype):
    """The CPU where is a bitwise blend: -0.0, infinities and NaN payloads come through as
    numpy's where gives them, with scalar or array branches, broadcast or not."""
    rng = np.random.default_rng(5)
    cond = rng.random((6, 5)) < 0.5
    special = np.array([-0.0, np.inf, -np.inf, np.nan, 1e-45, -3.5], dtype)
    ints = {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
    payload = special[3:4].view(ints) | ints(1)  # a NaN with a payload
    a = rng.choice(np.concatenate([special, payload.view(dtype)]), size=(6, 5))
    b = rng.choice(special, size=(5,))
    for x, y in [(a, b), (a, dtype(0)), (a, dtype(-0.0)), (dtype(2.5), b), (b, a)]:
        got = KERNELS["where"](np, cond, x, y)
        want = np.where(cond, x, y)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got.view(ints), want.view(ints))


@pytest.mark.parametrize("dtype", FLOATS)
def test_where_of_two_numbers_keeps_their_bits_in_one_array(dtype):
    """Both branches numbers (leaky_relu's 1-or-slope scale): every bit of the chosen one,
    for any pair of specials, blended in the mask's own array (no second one)."""
    import tracemalloc

    rng = np.random.default_rng(7)
    cond = rng.random((256, 256)) < 0.5
    special = [-0.0, 0.0, np.inf, -np.inf, np.nan, 1e-45, -3.5, 0.2, 1.0]
    ints = {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
    for x in special:
        for y in special:
            x_, y_ = np.asarray(dtype(x)), np.asarray(dtype(y))
            KERNELS["where"](np, cond, x_, y_)  # a native pass compiles on its first call
            tracemalloc.start()
            got = KERNELS["where"](np, cond, x_, y_)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            want = np.where(cond, x_, y_)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got.view(ints), want.view(ints))
            assert peak < 1.5 * want.nbytes, peak / want.nbytes


def test_where_blend_allocates_only_its_mask_and_result():
    # each fresh array this size is a fresh mapping whose pages fault in: the blend works in
    # place in its mask and result, so a where costs two arrays, not four
    import tracemalloc

    rng = np.random.default_rng(6)
    x = rng.standard_normal((16, 16, 16, 16)).astype(np.float32)
    cond = x > 0
    for a, b in [(x, np.float32(0.2)), (np.float32(1.0), np.float32(0.2))]:
        KERNELS["where"](np, cond, a, b)  # a native pass compiles on its first call
        tracemalloc.start()
        got = KERNELS["where"](np, cond, a, b)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        np.testing.assert_array_equal(got, np.where(cond, a, b))
        assert peak < 2.5 * x.nbytes, peak / x.nbytes
    # a branch wider than the mask: the blend cannot be in place there, and is still right
    wide = rng.standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_array_equal(KERNELS["where"](np, cond[0, 0, 0], np.float32(2.0), wide),
                                  np.where(cond[0, 0, 0], np.float32(2.0), wide))


@pytest.mark.parametrize("dtype", FLOATS + INTS)
def test_clamp_kernel_matches_numpy(dtype):
    x = random_array(np.random.default_rng(5), (5, 6), dtype, 0, 50)
    lo, hi = 10, 30
    close(KERNELS["clamp"](np, x, min=lo, max=hi), np.clip(x, lo, hi), dtype)
    close(KERNELS["clamp"](np, x, min=lo), np.maximum(x, x.dtype.type(lo)), dtype)
    close(KERNELS["clamp"](np, x, max=hi), np.minimum(x, x.dtype.type(hi)), dtype)
    # min > max: PyTorch gives max everywhere
    close(KERNELS["clamp"](np, x, min=hi, max=lo), np.full_like(x, lo), dtype)


@pytest.mark.parametrize(
    "target", ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool")
)
@pytest.mark.parametrize("source", (np.float32, np.int64, np.bool_))
def test_cast_kernel_matches_numpy_astype(source, target):
    x = random_array(np.random.default_rng(6), (4, 5), source, 0, 100)
    out = KERNELS["cast"](np, x, dtype=target)
    assert out.dtype == np.dtype(target)
    np.testing.assert_array_equal(out, x.astype(target))


@pytest.mark.parametrize("dtype", (np.float32, np.int64, np.bool_))
def test_masked_fill_kernel_matches_numpy(dtype):
    rng = np.random.default_rng(7)
    x = random_array(rng, (3, 4), dtype)
    mask = rng.random((4,)) < 0.5
    out = KERNELS["masked_fill"](np, x, mask, value=1)
    np.testing.assert_array_equal(out, np.where(mask, x.dtype.type(1), x))
    assert out.dtype == x.dtype


# -- reductions --------------------------------------------------------------------------------


def _all_dims(ndim):
    dims = [()] if ndim == 0 else [tuple(range(ndim))] + [(d,) for d in range(ndim)]
    if ndim >= 3:
        dims.append((0, 2))
    return dims


def _acc(x):
    return np.int64 if x.dtype.kind in "biu" else None


_DIM_REDUCTIONS = {
    "sum": lambda x, axis, keep: np.sum(x, axis=axis, keepdims=keep, dtype=_acc(x)),
    "prod": lambda x, axis, keep: np.prod(x, axis=axis, keepdims=keep, dtype=_acc(x)),
    "amax": lambda x, axis, keep: np.max(x, axis=axis, keepdims=keep),
    "amin": lambda x, axis, keep: np.min(x, axis=axis, keepdims=keep),
    "all": lambda x, axis, keep: np.all(x, axis=axis, keepdims=keep),
    "any": lambda x, axis, keep: np.any(x, axis=axis, keepdims=keep),
}
_FLOAT_REDUCTIONS = {
    "mean": lambda x, axis, keep: np.mean(x.astype(np.float64), axis=axis, keepdims=keep),
    "logsumexp": lambda x, axis, keep: np.logaddexp.reduce(
        x.astype(np.float64), axis=axis, keepdims=keep
    ),
}


@pytest.mark.parametrize("keepdim", (False, True))
@pytest.mark.parametrize("dtype", FLOATS + INTS + (np.bool_,))
@pytest.mark.parametrize("op", sorted(_DIM_REDUCTIONS))
def test_reduction_kernel_matches_numpy(op, dtype, keepdim):
    rng = np.random.default_rng(8)
    for shape in SHAPES:
        # values near 1 keep prod from overflowing; ints stay small for the same reason
        x = (
            random_array(rng, shape, dtype, 0.5, 1.5)
            if op == "prod"
            else random_array(rng, shape, dtype, -9, 9)
        )
        if op == "prod" and np.dtype(dtype).kind in "iu":
            x = random_array(rng, shape, dtype, 0, 2)
        for dims in _all_dims(len(shape)):
            out = KERNELS[op](np, x, dims=dims, keepdim=keepdim)
            expected = _DIM_REDUCTIONS[op](x, dims, keepdim)
            if op in ("sum", "prod") and np.dtype(dtype).kind == "f":
                expected = _DIM_REDUCTIONS[op](x.astype(np.float64), dims, keepdim)
                expected = expected.astype(dtype)
            close(out, expected, dtype if op not in ("all", "any") else None)


@pytest.mark.parametrize("keepdim", (False, True))
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", sorted(_FLOAT_REDUCTIONS))
def test_float_reduction_kernel_matches_numpy(op, dtype, keepdim):
    rng = np.random.default_rng(9)
    for shape in SHAPES:
        x = random_array(rng, shape, dtype, -9, 9)
        for dims in _all_dims(len(shape)):
            out = KERNELS[op](np, x, dims=dims, keepdim=keepdim)
            expected = _FLOAT_REDUCTIONS[op](x, dims, keepdim).astype(dtype)
            close(out, expected, dtype)


@pytest.mark.parametrize("correction", (0, 1, 2))
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_var_kernel_matches_numpy(dtype, correction):
    rng = np.random.default_rng(10)
    for shape in SHAPES[1:]:
        x = random_array(rng, shape, dtype)
        for dims in _all_dims(len(shape)):
            for keepdim in (False, True):
                out = KERNELS["var"](np, x, dims=dims, keepdim=keepdim, correction=correction)
                n = math.prod(x.shape[d] for d in dims)
                with np.errstate(all="ignore"):
                    expected = np.var(x.astype(np.float64), axis=dims, keepdims=keepdim)
                    # as PyTorch: no degrees of freedom left divides by 0 (inf, or nan for 0/0)
                    expected = expected * n / max(n - correction, 0)
                close(out, expected.astype(dtype), dtype)


def test_var_with_too_few_elements_is_nan_silently():
    x = np.array([[1.0, 2.0]], np.float32)
    out = KERNELS["var"](np, x, dims=(0,), keepdim=False, correction=1)
    assert np.isnan(out).all() and out.shape == (2,)


@pytest.mark.parametrize("keepdim", (False, True))
@pytest.mark.parametrize("dtype", FLOATS + (np.int32, np.int64, np.uint8))
@pytest.mark.parametrize("op", ("max_dim", "min_dim"))
def test_max_min_dim_kernel_returns_values_and_first_indices(op, dtype, keepdim):
    rng = np.random.default_rng(11)
    for shape in SHAPES[1:]:
        # few distinct values, so ties occur and the first index must win
        x = random_array(rng, shape, dtype, 0, 3)
        for dim in range(len(shape)):
            values, indices = KERNELS[op](np, x, dim=dim, keepdim=keepdim)
            pick = np.argmax if op == "max_dim" else np.argmin
            expected_idx = pick(x, axis=dim, keepdims=keepdim)
            reduce = np.max if op == "max_dim" else np.min
            close(values, reduce(x, axis=dim, keepdims=keepdim), dtype)
            np.testing.assert_array_equal(indices, expected_idx)
            assert np.asarray(indices).dtype == np.int64


@pytest.mark.parametrize("keepdim", (False, True))
@pytest.mark.parametrize("dtype", (np.float32, np.int64))
@pytest.mark.parametrize("op", ("argmax", "argmin"))
def test_argmax_argmin_kernel_matches_numpy(op, dtype, keepdim):
    rng = np.random.default_rng(12)
    pick = np.argmax if op == "argmax" else np.argmin
    for shape in SHAPES[1:]:
        x = random_array(rng, shape, dtype, 0, 3)
        for dim in range(len(shape)):
            out = KERNELS[op](np, x, dim=dim, keepdim=keepdim)
            np.testing.assert_array_equal(out, pick(x, axis=dim, keepdims=keepdim))
        flat = KERNELS[op](np, x, dim=None, keepdim=keepdim)
        expected = pick(x)
        if keepdim:
            expected = np.reshape(expected, (1,) * x.ndim)
        np.testing.assert_array_equal(flat, expected)


@pytest.mark.parametrize("dtype", FLOATS + INTS + (np.bool_,))
def test_cumsum_kernel_matches_numpy(dtype):
    rng = np.random.default_rng(13)
    for shape in SHAPES[1:]:
        x = random_array(rng, shape, dtype, -9, 9)
        for dim in range(len(shape)):
            out = KERNELS["cumsum"](np, x, dim=dim)
            if dtype is np.float16:  # sequential float16 rounding: numpy's own result
                expected = np.cumsum(x, axis=dim)
            elif np.dtype(dtype).kind == "f":
                expected = np.cumsum(x.astype(np.float64), axis=dim).astype(dtype)
            else:
                expected = np.cumsum(x, axis=dim, dtype=np.int64)
            close(out, expected, None if np.dtype(dtype).kind == "f" else np.int64)


# -- edge cases --------------------------------------------------------------------------------

NAN, INF = np.nan, np.inf


@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_propagates_through_max_min_reductions(dtype):
    x = np.array([[1.0, NAN, 3.0, NAN], [1.0, 2.0, -INF, INF], [-1.0, -2.0, 5.0, 0.0]], dtype)
    for op, fill in (("amax", [NAN, INF, 5.0]), ("amin", [NAN, -INF, -2.0])):
        close(KERNELS[op](np, x, dims=(1,), keepdim=False), np.array(fill, dtype))
        assert np.isnan(KERNELS[op](np, x, dims=(0, 1), keepdim=False))
    for op, idx, val in (
        ("max_dim", [1, 3, 2], [NAN, INF, 5.0]),
        ("min_dim", [1, 2, 1], [NAN, -INF, -2.0]),
    ):
        values, indices = KERNELS[op](np, x, dim=1, keepdim=False)
        close(values, np.array(val, dtype))
        np.testing.assert_array_equal(indices, idx)  # the first NaN is the max and the min
    for op, idx in (("argmax", [1, 3, 2]), ("argmin", [1, 2, 1])):
        np.testing.assert_array_equal(KERNELS[op](np, x, dim=1, keepdim=False), idx)
    assert KERNELS["argmax"](np, x, dim=None, keepdim=False) == 1


@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_and_inf_propagate_through_elementwise_max_min_relu_clamp(dtype):
    x = np.array([NAN, INF, -INF, 2.0, -2.0, NAN], dtype)
    y = np.array([1.0, 1.0, 1.0, NAN, NAN, NAN], dtype)
    both_nan = [True, False, False, True, True, True]
    for op in ("maximum", "minimum"):
        for a, b in ((x, y), (y, x)):
            out = KERNELS[op](np, a, b)
            np.testing.assert_array_equal(np.isnan(out), both_nan)
    close(KERNELS["maximum"](np, x[1:3], y[1:3]), np.array([INF, 1.0], dtype))
    close(KERNELS["minimum"](np, x[1:3], y[1:3]), np.array([1.0, -INF], dtype))
    close(KERNELS["relu"](np, x), np.array([NAN, INF, 0.0, 2.0, 0.0, NAN], dtype))
    close(
        KERNELS["clamp"](np, x, min=-1.0, max=1.0),
        np.array([NAN, 1.0, -1.0, 1.0, -1.0, NAN], dtype),
    )
    close(KERNELS["clamp"](np, x, min=0.0), np.array([NAN, INF, 0.0, 2.0, 0.0, NAN], dtype))
    close(KERNELS["clamp"](np, x, max=0.0), np.array([NAN, 0.0, -INF, 0.0, -2.0, NAN], dtype))


@pytest.mark.parametrize("dtype", FLOATS)
def test_sigmoid_saturates_without_overflow_and_keeps_its_tails(dtype):
    x = np.array([-1000.0, 1000.0, -INF, INF, NAN, 0.0], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = KERNELS["sigmoid"](np, x)
    assert out.dtype == dtype
    close(out, np.array([0.0, 1.0, 0.0, 1.0, NAN, 0.5], dtype))
    # the left tail is tiny, not zero: relative accuracy, as 1 / (1 + exp(-x)) gives
    limit = {np.float16: 9.0, np.float32: 80.0, np.float64: 700.0}[dtype]
    tail = np.linspace(-limit, limit, 2001).astype(dtype)
    expected = _sigmoid64(tail).astype(dtype)
    rtol = {np.float16: 4e-3, np.float32: 4e-6, np.float64: 1e-13}[dtype]
    np.testing.assert_allclose(
        KERNELS["sigmoid"](np, tail).astype(np.float64),
        expected.astype(np.float64),
        rtol=rtol,
        atol=0,
    )


@pytest.mark.parametrize("dtype", FLOATS)
def test_division_by_zero_gives_inf_and_nan_silently(dtype):
    a = np.array([1.0, -1.0, 0.0, INF, NAN], dtype)
    zero = np.zeros(5, dtype)
    close(KERNELS["div"](np, a, zero), np.array([INF, -INF, NAN, INF, NAN], dtype))
    close(KERNELS["div"](np, a, dtype(0)), np.array([INF, -INF, NAN, INF, NAN], dtype))
    close(KERNELS["floor_divide"](np, a, zero), np.array([INF, -INF, NAN, INF, NAN], dtype))
    close(KERNELS["trunc_divide"](np, a, zero), np.array([INF, -INF, NAN, INF, NAN], dtype))
    assert np.isnan(KERNELS["remainder"](np, a, zero)).all()
    close(KERNELS["reciprocal"](np, np.array([0.0, -0.0], dtype)), np.array([INF, -INF], dtype))
    close(KERNELS["rsqrt"](np, np.array([0.0, -1.0], dtype)), np.array([INF, NAN], dtype))
    close(KERNELS["log"](np, np.array([0.0, -1.0], dtype)), np.array([-INF, NAN], dtype))
    close(
        KERNELS["pow"](np, np.array([0.0, -8.0], dtype), dtype(-1.5)), np.array([INF, NAN], dtype)
    )
    close(KERNELS["exp"](np, np.array([np.finfo(dtype).max], dtype)), np.array([INF], dtype))


def test_erf_matches_math_erf_over_its_range():
    x = np.linspace(-6.0, 6.0, 120_001)
    np.testing.assert_allclose(KERNELS["erf"](np, x), _erf64(x), rtol=1e-14, atol=1e-16)
    x32 = x.astype(np.float32)
    np.testing.assert_array_max_ulp(
        KERNELS["erf"](np, x32), _erf64(x32).astype(np.float32), maxulp=1
    )
    x16 = np.linspace(-4, 4, 801).astype(np.float16)
    np.testing.assert_array_max_ulp(
        KERNELS["erf"](np, x16), _erf64(x16).astype(np.float16), maxulp=1
    )


def test_erf_at_infinities_nan_zero_and_tiny_values():
    x = np.array([-INF, INF, NAN, 0.0, -0.0, 1e-300, -1e-30, 1e-10, 5e-324, 7.0, -30.0])
    out = KERNELS["erf"](np, x)
    np.testing.assert_array_equal(out[:2], [-1.0, 1.0])
    assert np.isnan(out[2])
    assert out[3] == 0 and out[4] == 0 and np.signbit(out[4])
    # near zero erf(x) ~ 2x/sqrt(pi): relative accuracy, not just absolute
    np.testing.assert_allclose(out[5:], _erf64(x[5:]), rtol=1e-14, atol=0)


@pytest.mark.parametrize("dtype", (np.int8, np.int16, np.int32, np.int64))
def test_trunc_divide_rounds_negative_integers_toward_zero(dtype):
    values = np.arange(-20, 21)
    a, b = np.meshgrid(values, values[values != 0], indexing="ij")
    a, b = a.astype(dtype), b.astype(dtype)
    expected = np.vectorize(lambda p, q: int(p / q))(a.astype(int), b.astype(int))
    out = KERNELS["trunc_divide"](np, a, b)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == dtype
    assert KERNELS["trunc_divide"](np, np.array([-7], dtype), dtype(2))[0] == -3
    assert KERNELS["trunc_divide"](np, np.array([7], dtype), dtype(-2))[0] == -3


def test_trunc_divide_of_floats_rounds_toward_zero():
    a = np.array([-7.0, 7.0, -7.5, 7.5, -0.5], np.float32)
    out = KERNELS["trunc_divide"](np, a, np.float32(2.0))
    np.testing.assert_array_equal(out, [-3.0, 3.0, -3.0, 3.0, -0.0])


@pytest.mark.parametrize("dtype", (np.int8, np.int16, np.int32, np.int64))
def test_integer_remainder_takes_the_divisors_sign_like_python(dtype):
    values = np.arange(-20, 21)
    a, b = np.meshgrid(values, values[values != 0], indexing="ij")
    expected = np.vectorize(lambda p, q: p % q)(a, b)
    out = KERNELS["remainder"](np, a.astype(dtype), b.astype(dtype))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_float_remainder_takes_the_divisors_sign_like_python(dtype):
    rng = np.random.default_rng(14)
    a = random_array(rng, (200,), dtype, -100, 100)
    b = random_array(rng, (200,), dtype, -10, 10)
    b[b == 0] = 1
    out = KERNELS["remainder"](np, a, b)
    close(out, _python_mod(a, b), dtype)
    nonzero = out != 0
    assert (np.sign(out[nonzero]) == np.sign(b[nonzero])).all()
    assert (np.abs(out) < np.abs(b)).all()
    special = KERNELS["remainder"](
        np, np.array([5.0, -5.0, INF], dtype), np.array([INF, INF, 2.0], dtype)
    )
    close(special, np.array([5.0 % INF, -5.0 % INF, NAN], dtype))


@pytest.mark.parametrize("dtype", FLOATS)
def test_logsumexp_handles_infinite_rows_and_huge_values(dtype):
    big = {np.float16: 6e4, np.float32: 1e30, np.float64: 1e300}[dtype]
    x = np.array(
        [
            [-INF, -INF, -INF],
            [-INF, 0.0, -INF],
            [INF, 1.0, -INF],
            [1000.0, 1000.0, 1000.0] if dtype is not np.float16 else [10.0, 10.0, 10.0],
            [-1000.0, -1000.0, -1000.0] if dtype is not np.float16 else [-10.0, -10.0, -10.0],
            [big, big, 0.0],
            [NAN, 0.0, 1.0],
        ],
        dtype,
    )
    out = KERNELS["logsumexp"](np, x, dims=(1,), keepdim=False)
    lse3 = float(np.log(np.float64(3)))
    mid = 10.0 if dtype is np.float16 else 1000.0
    expected = np.array(
        [-INF, 0.0, INF, mid + lse3, -mid + lse3, float(big) + math.log(2), NAN], dtype
    )
    close(out, expected, dtype)
    keep = KERNELS["logsumexp"](np, x, dims=(1,), keepdim=True)
    assert keep.shape == (7, 1)
    assert KERNELS["logsumexp"](np, x[:2], dims=(0, 1), keepdim=False) == 0.0


def test_logsumexp_over_an_empty_dim_is_minus_inf():
    x = np.zeros((2, 0), np.float32)
    out = KERNELS["logsumexp"](np, x, dims=(1,), keepdim=False)
    np.testing.assert_array_equal(out, [-INF, -INF])
    assert KERNELS["logsumexp"](np, x, dims=(0,), keepdim=False).shape == (0,)
    assert KERNELS["logsumexp"](np, x, dims=(1,), keepdim=True).shape == (2, 1)


@pytest.mark.parametrize("shape, k", [((2, 3, 8, 8), 2), ((1, 2, 9, 7), 3), ((4, 6, 6), 2)])
def test_tiled_max_pool_backward_equals_the_tap_by_tap_rule(shape, k):
    """The fast path for windows that tile the input gives what the general tap loop gives:
    the gradient to the first maximum of each window, or to its first NaN, ties included."""
    from ember.runtime.kernels import KERNELS
    from ember.runtime.kernels.pool import _geometry

    rng = np.random.default_rng(k)
    x = rng.integers(0, 3, size=shape).astype(np.float64)  # many ties
    x.flat[rng.choice(x.size, size=3, replace=False)] = np.nan
    out_hw, _ = _geometry(x.shape, (k, k), (k, k), (0, 0), (1, 1), False)
    g = rng.standard_normal((*shape[:-2], *out_hw))
    fast = KERNELS["max_pool2d_backward"](np, g, x, (k, k), (k, k), (0, 0), False)
    want = np.zeros_like(x)  # window by window, as PyTorch defines it
    for idx in np.ndindex(*shape[:-2], *out_hw):
        lead, (i, j) = idx[:-2], idx[-2:]
        window = x[lead + (slice(i * k, i * k + k), slice(j * k, j * k + k))].reshape(-1)
        nan = np.flatnonzero(np.isnan(window))
        pick = nan[0] if nan.size else int(np.argmax(window))
        want[lead + (i * k + pick // k, j * k + pick % k)] += g[idx]
    np.testing.assert_array_equal(fast, want)


@pytest.mark.parametrize("shape", [(4, 3, 5), (2, 3, 4, 5), (0, 3, 5), (3, 0, 5)])
@pytest.mark.parametrize("transposed", [False, True])
def test_a_stack_times_a_matrix_is_numpys_matmul(shape, transposed):
    """matmul and linear fold (..., m, k) @ (k, n) into one GEMM over the stacked rows; the
    result is numpy's matmul (to rounding), for non-contiguous and empty stacks too."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal(shape[::-1] if transposed else shape)
    if transposed:
        a = a.transpose(*range(a.ndim)[::-1])
    b = rng.standard_normal((shape[-1], 6))
    w = rng.standard_normal((6, shape[-1]))
    got = KERNELS["matmul"](np, a, b)
    assert got.shape == np.matmul(a, b).shape
    np.testing.assert_allclose(got, np.matmul(a, b), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(KERNELS["linear"](np, a, w, b[0]), np.matmul(a, w.T) + b[0],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,dim,n", [((48, 64), 0, 1024), ((5, 40, 7), 1, 300),
                                         ((3, 4, 30), 2, 200), ((10, 3), 0, 5)])
def test_index_add_sums_repeated_rows_like_add_at(dtype, shape, dim, n):
    """index_add adds the rows natively (dim 0) or sorted and reduced per index (np.add.at
    goes element by element): the same sums, to rounding, with every index repeated many
    times."""
    from ember.runtime.kernels.index import _index_add

    rng = np.random.default_rng(n)
    x = rng.standard_normal(shape).astype(dtype)
    index = rng.integers(0, shape[dim], n)
    src_shape = list(shape)
    src_shape[dim] = n
    src = rng.standard_normal(src_shape).astype(dtype)
    want = x.copy()
    np.add.at(want, (slice(None),) * dim + (index,), src)
    got = _index_add(np, x, index, src, dim)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert got.dtype == x.dtype and not np.shares_memory(got, x)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("index", [
    [1, 0, 1, 2, 3, 4, 5, 4],  # a reflection pad's gradient: three runs
    [0, 0, 0, 1, 2, 3, 3, 3],  # a replicate pad's
    [4, 5, 0, 1, 2, 3, 4, 5, 0, 1],  # a circular pad's
    [5, 4, 3, 2, 1, 0],
    [2, 2, 2],
    [3, 1, 4, 1, 5, 0, 2, 5, 3, 0, 1, 4],  # more runs than are sliced: add.at's path
    list(range(6)) * 8,  # 48 entries in 8 runs
])
def test_index_add_by_runs_of_indices_sums_as_add_at(dim, index):
    """Few indices that step by +1 or -1 are added run by run, one slice each: repeated
    indices across runs accumulate as np.add.at's do."""
    from ember.runtime.kernels.index import _index_add, _index_runs

    rng = np.random.default_rng(len(index))
    shape = [3, 6, 6]
    x = rng.standard_normal(shape)
    src_shape = list(shape)
    src_shape[dim] = len(index)
    src = rng.standard_normal(src_shape)
    index = np.array(index)
    want = x.copy()
    np.add.at(want, (slice(None),) * dim + (index,), src)
    np.testing.assert_allclose(_index_add(np, x, index, src, dim), want, rtol=1e-14, atol=1e-14)
    runs = _index_runs(index)
    if runs is not None:
        assert sum(end - first for first, end, _, _ in runs) == len(index)


def test_index_add_by_runs_takes_long_runs_too():
    # a 9x9 convolution's reflection pad of 64-wide planes: 72 indices in three runs, past
    # the sorted sums' threshold; 200 random indices fall back to them
    from ember.runtime.kernels.index import _index_add, _index_runs
    from ember.runtime.kernels.shape import pad_source_index

    rng = np.random.default_rng(3)
    for index in (pad_source_index(64, 4, 4, "reflect"), rng.integers(0, 64, 200)):
        src = rng.standard_normal((2, 3, index.size))
        x = rng.standard_normal((2, 3, 64))
        want = x.copy()
        np.add.at(want, (slice(None), slice(None), index), src)
        np.testing.assert_allclose(_index_add(np, x, index, src, 2), want, rtol=1e-13,
                                   atol=1e-13)
    assert len(_index_runs(pad_source_index(64, 4, 4, "reflect"))) == 3
    assert _index_runs(rng.integers(0, 64, 200)) is None


def test_reflection_pad_gradient_equals_the_dense_jacobians():
    import ember

    x = ember.randn(2, 3, 5, 6, dtype=ember.float64, requires_grad=True)
    for mode in ("reflect", "replicate", "circular"):
        assert ember.autograd.gradcheck(
            lambda t: ember.nn.functional.pad(t, (2, 1, 1, 3), mode=mode), (x,))


@pytest.mark.parametrize("indices", [10, 64])
def test_index_add_refuses_a_source_that_does_not_match_the_indices(indices):
    """PyTorch requires source.size(dim) == index.numel() and the input's other sizes: a
    mismatch is a clear error on both kernel paths (the sorted-rows one, from 64 indices, once
    dropped the extra rows silently)."""
    import ember

    x = ember.zeros(5, 3, dtype=ember.float64)
    index = ember.tensor(np.arange(indices) % 5)
    for source in (ember.ones(indices + 36, 3, dtype=ember.float64),
                   ember.ones(indices - 4, 3, dtype=ember.float64),
                   ember.ones(indices, 4, dtype=ember.float64)):
        with pytest.raises(ember.EmberError, match="does not match"):
            x.index_add(0, index, source)
    assert float(x.index_add(0, index, ember.ones(indices, 3, dtype=ember.float64)).sum()) \
        == 3 * indices


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.bool_])
@pytest.mark.parametrize("shape,dims", [((6, 5, 4, 3), (0, 2, 3)), ((6, 5, 4, 3), (0, 1, 3)),
                                        ((6, 5, 4), (0, 2)), ((2, 3, 4, 5), (0, 1, 2)),
                                        ((6, 5, 4, 3), (1, 3))])
@pytest.mark.parametrize("keepdim", [False, True])
def test_sum_over_leading_and_later_dims_equals_one_numpy_sum(dtype, shape, dims, keepdim):
    """sum over a leading run of dims plus others reduces the leading ones first: the same
    result (to rounding), shape and dtype as numpy's one-pass sum."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    got = KERNELS["sum"](np, x, dims, keepdim)
    want = np.sum(x, axis=dims, keepdims=keepdim,
                  dtype=np.int64 if np.dtype(dtype).kind in "biu" else None)
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", sorted(_FLOAT_BINARY))
def test_float_binary_kernel_matches_numpy(op, dtype):
    rng = np.random.default_rng(11)
    a = random_array(rng, (3, 4), dtype, -20, 20)
    b = random_array(rng, (4,), dtype, -20, 20)
    if op == "xlogy":
        a[0, :2] = 0
        b[0] = np.nan
    close(KERNELS[op](np, a, b), _FLOAT_BINARY[op](a, b), dtype)


@pytest.mark.parametrize("dtype", INTS)
def test_fmod_kernel_on_integers_takes_the_dividends_sign(dtype):
    a = np.array([-7, 7, -7, 7, 0], dtype=dtype) if np.dtype(dtype).kind == "i" else \
        np.array([7, 8, 9, 250, 0], dtype=dtype)
    b = np.array([3, -3, -3, 3, 5], dtype=dtype) if np.dtype(dtype).kind == "i" else \
        np.array([3, 3, 4, 7, 5], dtype=dtype)
    np.testing.assert_array_equal(KERNELS["fmod"](np, a, b), np.fmod(a, b))
    with pytest.raises(EmberError, match="division by zero"):
        KERNELS["fmod"](np, a, np.zeros_like(b))


@pytest.mark.parametrize("dtype", INTS + (np.bool_,))
@pytest.mark.parametrize("op", sorted(_BITWISE))
def test_bitwise_kernel_matches_numpy(op, dtype):
    if op.endswith("shift") and dtype is np.bool_:
        return
    rng = np.random.default_rng(12)
    a = random_array(rng, (3, 4), dtype, -100, 100)
    b = random_array(rng, (4,), dtype, 0, 12) if op.endswith("shift") else \
        random_array(rng, (4,), dtype, -100, 100)
    np.testing.assert_array_equal(KERNELS[op](np, a, b), _BITWISE[op](a, b))
    np.testing.assert_array_equal(KERNELS["bitwise_not"](np, a), np.invert(a))


@pytest.mark.parametrize("dtype", FLOATS + (np.int64,))
def test_sort_kernel_is_stable_with_nan_greatest(dtype):
    rng = np.random.default_rng(13)
    x = rng.integers(-3, 3, (4, 9)).astype(dtype)  # many ties
    if np.dtype(dtype).kind == "f":
        x[1, 2] = x[3, 0] = np.nan
    for dim in (0, 1):
        values, idx = KERNELS["sort"](np, x, dim, False)
        expected = np.argsort(x, axis=dim, kind="stable")
        np.testing.assert_array_equal(idx, expected)
        np.testing.assert_array_equal(values, np.take_along_axis(x, expected, dim))
        values, idx = KERNELS["sort"](np, x, dim, True)
        # descending: NaN first, ties in their original order
        key = np.where(np.isnan(x), -np.inf, -x) if np.dtype(dtype).kind == "f" else -x
        expected = np.argsort(key, axis=dim, kind="stable")
        np.testing.assert_array_equal(idx, expected)


@pytest.mark.parametrize("dtype", FLOATS + (np.int32, np.bool_))
@pytest.mark.parametrize("op", ["cummax", "cummin"])
def test_cumulative_extreme_kernels_match_a_running_loop(op, dtype):
    rng = np.random.default_rng(14)
    x = rng.integers(-2, 3, (3, 7)).astype(dtype)  # ties
    if np.dtype(dtype).kind == "f":
        x[1, 3] = x[2, 1] = x[2, 5] = np.nan
    better = (lambda a, b: a >= b) if op == "cummax" else (lambda a, b: a <= b)
    for dim in (0, 1):
        values, indices = KERNELS[op](np, x, dim)
        moved, vals, idxs = np.moveaxis(x, dim, -1), np.moveaxis(values, dim, -1), \
            np.moveaxis(indices, dim, -1)
        for row, vrow, irow in zip(moved.reshape(-1, moved.shape[-1]),
                                   vals.reshape(-1, moved.shape[-1]),
                                   idxs.reshape(-1, moved.shape[-1])):
            best, at = row[0], 0
            for i, v in enumerate(row):
                if i and (np.isnan(v) if np.dtype(dtype).kind == "f" else False) or (
                        i and not (np.dtype(dtype).kind == "f" and np.isnan(best))
                        and better(v, best)):
                    best, at = v, i
                np.testing.assert_array_equal(vrow[i], best)
                assert irow[i] == at


@pytest.mark.parametrize("dtype", FLOATS + (np.int32, np.bool_))
def test_cumprod_kernel_is_numpys_with_integers_in_int64(dtype):
    x = np.random.default_rng(15).integers(-2, 3, (3, 5)).astype(dtype)
    for dim in (0, 1):
        out = KERNELS["cumprod"](np, x, dim)
        expected = np.cumprod(x, axis=dim, dtype=None if x.dtype.kind == "f" else np.int64)
        assert out.dtype == expected.dtype
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", FLOATS)
def test_logcumsumexp_kernel_is_a_stable_running_log_sum(dtype):
    rng = np.random.default_rng(16)
    x = rng.standard_normal((3, 6)).astype(dtype)
    for dim in (0, 1):
        expected = np.log(np.cumsum(np.exp(x.astype(np.float64)), axis=dim))
        close(KERNELS["logcumsumexp"](np, x, dim), expected.astype(dtype), dtype)
    far = np.array([-1000.0, 0.0, 1000.0, -np.inf], dtype)
    np.testing.assert_allclose(KERNELS["logcumsumexp"](np, far, 0), [-1000.0, 0.0, 1000.0, 1000.0])


@pytest.mark.parametrize("dtype", FLOATS + (np.int64,))
@pytest.mark.parametrize("ignore_nan", [False, True])
def test_median_kernel_is_the_lower_median(dtype, ignore_nan):
    rng = np.random.default_rng(17)
    for n in (1, 2, 7, 10):
        x = rng.integers(-5, 5, n).astype(dtype)
        expected = np.sort(x)[(n - 1) // 2]
        np.testing.assert_array_equal(KERNELS["median"](np, x.reshape(-1, 1), ignore_nan),
                                      expected)
    if np.dtype(dtype).kind == "f":
        x = np.array([3.0, np.nan, 1.0, 2.0, 0.0], dtype)
        out = KERNELS["median"](np, x, ignore_nan)
        np.testing.assert_array_equal(out, 1.0 if ignore_nan else np.nan)
        assert np.isnan(KERNELS["median"](np, np.full(3, np.nan, dtype), ignore_nan))


@pytest.mark.parametrize("right", [False, True])
def test_searchsorted_kernel_matches_numpy_on_rows_without_nan(right):
    rng = np.random.default_rng(18)
    sequence = np.sort(rng.integers(-6, 6, (3, 9)), axis=1).astype(np.float32)
    values = rng.integers(-8, 8, (3, 5)).astype(np.float64)
    side = "right" if right else "left"
    out = KERNELS["searchsorted"](np, sequence, values, right, False)
    for row in range(3):
        np.testing.assert_array_equal(out[row], np.searchsorted(sequence[row], values[row], side))
    flat = KERNELS["searchsorted"](np, sequence[0], values, right, True)
    assert flat.dtype == np.int32
    np.testing.assert_array_equal(flat, np.searchsorted(sequence[0], values, side))


@pytest.mark.parametrize("consecutive", [False, True])
def test_unique_kernel_matches_a_dictionary_of_rows(consecutive):
    x = np.random.default_rng(19).integers(0, 3, (7, 2))
    values, inverse, counts = KERNELS["unique"](np, x, 0, consecutive)
    rows = [tuple(r) for r in x]
    if consecutive:
        firsts = [i for i in range(len(rows)) if i == 0 or rows[i] != rows[i - 1]]
        expected = [rows[i] for i in firsts]
    else:
        expected = sorted(set(rows))
    assert [tuple(r) for r in values] == expected
    np.testing.assert_array_equal(values[inverse], x)
    assert counts.sum() == len(rows) and len(counts) == len(expected)
    flat_values, flat_inverse, flat_counts = KERNELS["unique"](np, x, None, consecutive)
    assert flat_inverse.shape == x.shape
    np.testing.assert_array_equal(flat_values[flat_inverse], x)
    if not consecutive:
        np.testing.assert_array_equal(flat_values, np.unique(x))
        np.testing.assert_array_equal(flat_counts, np.unique(x, return_counts=True)[1])


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("dtype", (np.float64, np.int64))
def test_scatter_reduce_kernel_matches_a_loop_over_the_index(reduce, include_self, dtype):
    rng = np.random.default_rng(20)
    x = rng.integers(-4, 5, (3, 4)).astype(dtype)
    index = rng.integers(0, 3, (5, 4))
    src = rng.integers(-4, 5, (6, 5)).astype(dtype)  # larger than the index: its corner is used
    out = KERNELS["scatter_reduce"](np, x, index, src, 0, reduce, include_self)
    gathered = {}
    for (i, j), target in np.ndenumerate(index):
        gathered.setdefault((target, j), []).append(src[i, j])
    fold = {"sum": sum, "mean": sum, "prod": np.prod, "amax": max, "amin": min}[reduce]
    expected = x.copy()
    for (i, j), values in gathered.items():
        values = ([x[i, j]] if include_self else []) + values
        total = fold(values)
        if reduce == "mean":
            total = total / len(values) if dtype == np.float64 else total // len(values)
        expected[i, j] = total
    assert out.dtype == x.dtype
    np.testing.assert_allclose(out, expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dims, keepdim", [((0, 1), False), ((1, 0), True), ((0,), False)])
def test_sums_over_leading_dims_run_as_one_gemv_and_match_numpy(monkeypatch, dtype, dims,
                                                                 keepdim):
    from ember.runtime.kernels import reduce as reduce_kernels

    calls = []
    original = reduce_kernels._leading_by_gemv
    monkeypatch.setattr(reduce_kernels, "_leading_by_gemv",
                        lambda *a: calls.append(a) or original(*a))
    x = np.random.default_rng(2).standard_normal((64, 8, 24)).astype(dtype)
    clean = x.copy()
    x[3, 5, 7], x[1, 2, 3] = np.inf, np.nan
    got = KERNELS["sum"](np, x, dims, keepdim)
    want = x.sum(dims, keepdims=keepdim)
    assert calls and got.shape == want.shape and got.dtype == want.dtype
    # rounding of sums of 64 to 512 terms, some cancelling to near 0
    tol = {"rtol": 1e-5, "atol": 1e-4} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(got, want, **tol)
    # few rows, integers and trailing dims keep numpy's reduction
    for small in (x[:4, :8], clean.astype(np.int64), x):
        calls.clear()
        KERNELS["sum"](np, small, (2,) if small is x else (0, 1), False)
        assert not calls


def test_a_bias_gradient_from_the_leading_sum_is_kept_without_a_copy(monkeypatch):
    """The leading-dims sum (a linear layer's bias gradient) is the GEMV's own array, not a
    reshaped view of it, so the bias's AccumulateGrad keeps it as .grad instead of cloning
    it: no copy of it in a linear layer's backward, and the values are the sum's."""
    import ember

    ember.manual_seed(3)
    layer = ember.nn.Linear(24, 16)
    x = ember.randn(8, 64, 24)
    assert KERNELS["sum"](np, x.numpy(), (0, 1), False).base is None
    clones = []
    original = KERNELS["clone"]
    monkeypatch.setitem(KERNELS, "clone", lambda xp, *a, **k: clones.append(a) or original(
        xp, *a, **k))
    out = layer(x)
    g = ember.randn(*out.shape)
    out.backward(g)
    assert not [a for a in clones if a[0].shape == (16,)]  # (the root gradient may be copied)
    assert layer.bias.grad.numpy().base is None
    np.testing.assert_allclose(layer.bias.grad.numpy(), g.numpy().sum((0, 1)), rtol=1e-5,
                               atol=1e-5)


def _layouts(a):
    """a in C order, Fortran order, as a strided view, and reversed in its last dim."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    return [a, np.asfortranarray(a), wide[..., ::2], a[..., ::-1]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 5), (2, 3, 5), (1, 5), (4, 1, 5)])
def test_linear_with_a_bias_is_one_gemm_onto_the_bias_in_any_layout(dtype, shape):
    """linear's bias is the GEMM's starting output (beta = 1): the result is numpy's
    x @ w.T + b for inputs and weights in C or Fortran order, strided and reversed."""
    from ember.runtime.kernels import nn as nn_kernels

    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((6, shape[-1])).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for xs in _layouts(x):
        for ws in _layouts(w) + [w.T.copy().T, w[::2]]:
            bias = b[: ws.shape[0]]
            want = np.matmul(xs, ws.T) + bias
            assert nn_kernels._linear_with_bias(xs, ws, bias) is not None
            got = KERNELS["linear"](np, xs, ws, bias)
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_allclose(got, want, **tol)
    # a zero input gives the bias itself, bit for bit; inf and nan in the bias stay
    b[1], b[2] = np.inf, np.nan
    got = KERNELS["linear"](np, np.zeros_like(x), w, b)
    np.testing.assert_array_equal(got, np.broadcast_to(b, got.shape))


def test_linear_keeps_numpys_path_where_one_gemm_does_not_apply():
    """Empty inputs, a 1-D input and integer dtypes take the product-then-add path."""
    from ember.runtime.kernels import nn as nn_kernels

    rng = np.random.default_rng(4)
    w, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    for x in (np.zeros((0, 4)), rng.standard_normal(4), rng.standard_normal((2, 0))[:, :0]):
        ws = w[:, : x.shape[-1]]
        assert x.ndim < 2 or nn_kernels._linear_with_bias(x, ws, b) is None
        np.testing.assert_allclose(KERNELS["linear"](np, x, ws, b), np.matmul(x, ws.T) + b)
    xi, wi, bi = np.arange(8).reshape(2, 4), np.arange(12).reshape(3, 4), np.arange(3)
    assert nn_kernels._linear_with_bias(xi, wi, bi) is None
    np.testing.assert_array_equal(KERNELS["linear"](np, xi, wi, bi), xi @ wi.T + bi)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
def test_slice_backward_places_the_gradient_in_zeros_for_every_kind_of_slice(dtype):
    """slice_backward is zeros of the input's shape with g in the sliced region: a run along
    one dim (a split's piece, written once), steps, several dims, empty and whole slices."""
    rng = np.random.default_rng(5)
    shape = (4, 6, 9)
    cases = [((0, 0, 3), (4, 6, 6), (1, 1, 1)), ((0, 0, 0), (4, 6, 3), (1, 1, 1)),
             ((0, 0, 6), (4, 6, 9), (1, 1, 1)), ((1, 0, 0), (3, 6, 9), (1, 1, 1)),
             ((0, 0, 0), (4, 6, 9), (1, 1, 1)), ((0, 0, 4), (4, 6, 4), (1, 1, 1)),
             ((0, 1, 0), (4, 6, 9), (1, 2, 1)), ((1, 2, 3), (3, 5, 9), (1, 1, 2))]
    for starts, stops, steps in cases:
        region = tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))
        want = np.zeros(shape, dtype)
        g = rng.standard_normal(want[region].shape)
        g = (g > 0) if dtype == np.bool_ else (g * 10).astype(dtype)
        # garbage where the output may land, so zeros that were not written show
        del want
        np.full(shape, 7, dtype)
        want = np.zeros(shape, dtype)
        want[region] = g
        got = KERNELS["slice_backward"](np, g, shape=shape, starts=starts, stops=stops,
                                        steps=steps)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", FLOATS)
def test_erfinv_digamma_and_polygamma_kernels_match_their_definitions(dtype):
    """erfinv against math.erf (erf of the result), digamma against lgamma's central
    difference, trigamma against its series; tests/runtime/test_special_functions.py checks
    them over their whole ranges."""
    rng = np.random.default_rng(7)
    y = random_array(rng, (64,), dtype, -0.9, 0.9)
    x = KERNELS["erfinv"](np, y)
    assert x.dtype == dtype
    back = np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64))
    np.testing.assert_allclose(back, y, rtol=4 * np.finfo(dtype).eps, atol=np.finfo(dtype).eps)
    z = random_array(rng, (64,), np.float64, 0.5, 20)
    h = 1e-5
    lg = np.vectorize(math.lgamma, otypes=[np.float64])
    slope = (lg(z + h) - lg(z - h)) / (2 * h)
    np.testing.assert_allclose(KERNELS["digamma"](np, z.astype(dtype)), slope.astype(dtype),
                               rtol=max(1e-6, 8 * np.finfo(dtype).eps))
    k = np.arange(200000.0)
    series = np.array([(1.0 / (v + k) ** 2).sum() + 1.0 / (v + k[-1] + 0.5) for v in z])
    np.testing.assert_allclose(KERNELS["polygamma"](np, z.astype(dtype), n=1),
                               series.astype(dtype), rtol=max(1e-9, 8 * np.finfo(dtype).eps))
