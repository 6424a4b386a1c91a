"""Compiled programs (fused native kernels) compute what the eager kernels compute: values,
dtypes and shapes, NaN positions and zero signs, through broadcasting, views, edge values,
fused reductions, threads, memory planning, ember.script and loaded graph files."""

import re
import threading
import warnings

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import runtime
from ember.ir.passes import run_pipeline
from ember.runtime.compiled import CompiledProgram
from ember.runtime.program import Program, evaluate_with_kernels
from hypothesis import given, settings
from hypothesis import strategies as st

FLOATS = (np.float16, np.float32, np.float64)
# few-ulp tolerance of one transcendental (mathlib promises 2 ulp; numpy's own are ~1 ulp)
ULP_RTOL = {np.dtype(np.float16): 2e-3, np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-14}


def _named(rows):
    """parametrize rows whose first item is the case's name, as its id."""
    return [pytest.param(*row, id=row[0]) for row in rows]


# -- building and running ----------------------------------------------------------------------


def optimized_graph(fn, *arrays):
    """fn traced on tensors holding these arrays, optimized as ember.script optimizes it."""
    with np.errstate(all="ignore"):  # the trace runs fn eagerly: x / 0 is fine
        graph = ember.trace(fn, tuple(ember.tensor(np.array(a)) for a in arrays))
    run_pipeline(graph, evaluate=evaluate_with_kernels)
    return graph


def executors(fn, *arrays, name="test"):
    """(compiled, eager) executors of fn's optimized graph. Compilation must succeed: a
    CompiledProgram never falls back, so a kernel the backend cannot build fails the test."""
    graph = optimized_graph(fn, *arrays)
    eager = Program(graph)  # built first: compiling may rewrite the graph (linear's bias)
    return CompiledProgram(graph, name), eager


def run_both(compiled, eager, arrays):
    """Both executors' outputs on copies of the same inputs."""
    with np.errstate(all="ignore"):  # eager steps of either warn on x / 0
        want = eager(np, [np.array(a) for a in arrays])
        got = compiled(np, [np.array(a) for a in arrays])
    assert len(got) == len(want)
    return got, want


def assert_same(got, want, what=""):
    """Equal dtype, shape and bits: NaN at the same places, zeros with the same sign."""
    assert got.dtype == want.dtype, what
    assert got.shape == want.shape, what
    np.testing.assert_array_equal(got, want, err_msg=what)
    if got.dtype.kind == "f":
        zero = want == 0
        np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(want[zero]), err_msg=what)


def assert_close(got, want, rtol, atol=0.0, what=""):
    """Equal dtype and shape, NaN and infinities at the same places, finite values close."""
    assert got.dtype == want.dtype, what
    assert got.shape == want.shape, what
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN mask {what}")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"+inf {what}")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"-inf {what}")
    finite = np.isfinite(want)
    np.testing.assert_allclose(
        got[finite].astype(np.float64),
        want[finite].astype(np.float64),
        rtol=rtol,
        atol=atol,
        err_msg=what,
    )


def edge_values(dtype):
    """Special values of a float dtype: signed zeros and infinities, NaN, denormals, the
    largest and smallest magnitudes, halfway points of rounding, and ordinary numbers."""
    info = np.finfo(dtype)
    tiny = [info.smallest_subnormal, info.smallest_normal / 3, info.smallest_normal, info.eps]
    huge = [info.max, info.max / 2]
    plain = [0.5, 1.5, 2.5, 1.0, 3.0, 7.25, 0.1, 100.0]
    values = [0.0, -0.0, np.inf, -np.inf, np.nan] + [
        s * v for v in tiny + huge + plain for s in (1, -1)
    ]
    if dtype == np.float32:
        values += [1e-40, -1e-40, 3e38, -3e38, 1e-30]  # a denormal, huge and tiny
    return np.array(values, dtype)


# -- 1. random chains of elementwise ops ---------------------------------------------------------

UNARY = {
    "relu": lambda h: h.relu(),
    "abs": lambda h: h.abs(),
    "neg": lambda h: -h,
    "sqrt": lambda h: h.sqrt(),
    "rsqrt": lambda h: h.rsqrt(),
    "reciprocal": lambda h: h.reciprocal(),
    "floor": lambda h: h.floor(),
    "ceil": lambda h: h.ceil(),
    "round": lambda h: h.round(),
    "trunc": lambda h: h.trunc(),
    "sign": lambda h: h.sign(),
    "pow2": lambda h: h**2,
    "pow05": lambda h: h**0.5,
    "clamp": lambda h: h.clamp(-1.5, 2),
    "clamp_min": lambda h: h.clamp(min=0.5),
    "clamp_max": lambda h: ember.clamp(h, max=1),
}
BINARY = {
    "add": lambda h, o, p: h + o,
    "sub": lambda h, o, p: h - o,
    "rsub": lambda h, o, p: o - h,
    "mul": lambda h, o, p: h * o,
    "div": lambda h, o, p: h / o,
    "rdiv": lambda h, o, p: o / h,
    "maximum": lambda h, o, p: ember.maximum(h, o),
    "minimum": lambda h, o, p: ember.minimum(o, h),
    "gt": lambda h, o, p: h > o,
    "lt": lambda h, o, p: h < o,
    "ge": lambda h, o, p: h >= o,
    "le": lambda h, o, p: h <= o,
    "eq": lambda h, o, p: h == o,
    "ne": lambda h, o, p: h != o,
    "where": lambda h, o, p: ember.where(h > o, h, p),
    "where_flip": lambda h, o, p: ember.where(h <= o, p, h),
}
TRANSCENDENTAL = {
    "exp": lambda h: h.exp(),
    "log": lambda h: (h.abs() + 1).log(),
    "tanh": lambda h: h.tanh(),
    "sigmoid": lambda h: h.sigmoid(),
    "erf": lambda h: ember.erf(h),
    "sin": lambda h: h.clamp(-10, 10).sin(),  # sin(1e4) turns an ulp of its input into 1e-3
    "cos": lambda h: h.clamp(-10, 10).cos(),
    "expm1": lambda h: (h.clamp(-20, 20)).expm1(),
    "log1p": lambda h: h.abs().log1p(),
}
SMOOTH_UNARY = {  # continuous ops, for chains compared with a tolerance
    "relu": UNARY["relu"],
    "abs": UNARY["abs"],
    "neg": UNARY["neg"],
    "clamp": UNARY["clamp"],
    "pow2": UNARY["pow2"],
    "sqrt_abs": lambda h: h.abs().sqrt(),
    "pow05_abs": lambda h: h.abs() ** 0.5,
    "pow3": lambda h: h.clamp(-30, 30) ** 3,
    "pow_minus2": lambda h: (h.abs() + 0.5) ** -2,
}
SMOOTH_BINARY = {
    "add": BINARY["add"],
    "sub": BINARY["sub"],
    "mul": BINARY["mul"],
    "maximum": BINARY["maximum"],
    "minimum": BINARY["minimum"],
    "div_positive": lambda h, o, p: h / (o * o + 0.5),
    "where_operand": lambda h, o, p: ember.where(o > 0, h, p),
}
ALL_UNARY = {**UNARY, **TRANSCENDENTAL, **SMOOTH_UNARY}
ALL_BINARY = {**BINARY, **SMOOTH_BINARY}
DTYPES = ["float16", "float32", "float64", "int8", "uint8", "int32", "int64", "bool"]
SHAPES = ["NM", "M", "N1", "1M", "", "11", "21M", "1"]  # broadcasting against each other
SCALARS = [0, 1, 2, -3, 0.5, -1.25, 1.5, 0.1, 3.3, True, False]
# Bugs these chains once steered around are fixed (each keeps its own test below): float16
# constants float16 cannot hold, float16 signed-zero ties, float16 rsqrt and pow(x, 0.5), and
# a negative Python int with a uint8 tensor. The tables stay empty unless a new bug needs one.
F16_EXACT: dict = {}
F16_AVOID: set = set()


def _shape(code, n, m):
    return tuple({"N": n, "M": m, "1": 1, "2": 2}[c] for c in code)


def _operand(v, tensors, h):
    if isinstance(v, str):
        return tensors[v]
    return v


def chain_function(steps, tap):
    """fn(x, a, b): the steps applied to x in turn, operands naming x, a, b or a scalar; the
    result, and the value after step `tap` as a second output when tap >= 0."""

    def fn(x, a, b):
        tensors = {"x": x, "a": a, "b": b}
        h, mid = x, None
        for i, (op, o, p) in enumerate(steps):
            try:
                if op == "cast":
                    target = getattr(ember, o)
                    # float to integer is undefined out of range (LLVM) and numpy's choice
                    to_int = not (target.is_floating_point or target == ember.bool)
                    if not (to_int and h.dtype.is_floating_point):
                        h = h.to(target)
                elif op in ALL_UNARY:
                    h = ALL_UNARY[op](h)
                else:
                    h = ALL_BINARY[op](h, _operand(o, tensors, h), _operand(p, tensors, h))
            except ember.EmberError:
                pass  # an op the dtype does not allow (neg of bool): skip it
            if i == tap:
                mid = h
        return (h, mid) if mid is not None else h

    return fn


_PROGRAMS: dict = {}


def chain_executors(steps, shapes, dtypes, tap):
    """Built once per chain (hypothesis replays chains while shrinking)."""
    key = repr((steps, shapes, dtypes, tap))  # repr: True and 1 are different chains
    if key not in _PROGRAMS:
        arrays = [np.zeros(s, d) for s, d in zip(shapes, dtypes)]
        _PROGRAMS[key] = executors(chain_function(steps, tap), *arrays, name="chain")
    return _PROGRAMS[key]


def random_array(rng, shape, dtype, specials):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        a = rng.standard_normal(shape) * rng.choice([1.0, 3.0, 100.0])
        if specials:
            pick = rng.random(shape) < 0.3
            extra = rng.choice([0.0, -0.0, np.inf, -np.inf, np.nan, 0.5, -0.5, 2.5], size=shape)
            a = np.where(pick, extra, a)
        return np.asarray(a).astype(dtype)
    if dtype.kind == "b":
        return np.asarray(rng.random(shape) < 0.5)
    info = np.iinfo(dtype)
    lo, hi = (info.min, info.max) if specials else (max(info.min, -20), min(info.max, 20))
    return np.asarray(rng.integers(lo, hi, size=shape, endpoint=True)).astype(dtype)


@st.composite
def chains(draw, menu, dtypes, scalars):
    n = draw(st.integers(1, 4))
    m = draw(st.sampled_from([1, 2, 3, 5, 8, 17, 33]))  # 17, 33: vector bodies and tails
    codes = [draw(st.sampled_from(["NM", "NM", "N1", "1M", ""]))]
    codes += [draw(st.sampled_from(SHAPES)) for _ in range(2)]
    types = tuple(draw(st.sampled_from(dtypes)) for _ in range(3))
    operand = st.sampled_from(["x", "a", "b", "a", "b"]) | st.sampled_from(scalars)
    steps = []
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(menu))
        o, p = draw(operand), draw(operand)
        if op == "cast":
            o = draw(st.sampled_from(dtypes))
        steps.append((op, o, p))
    if "float16" in types or any(op == "cast" and o == "float16" for op, o, _ in steps):
        steps = [
            (
                op,
                F16_EXACT.get(o, o) if isinstance(o, float) else o,
                F16_EXACT.get(p, p) if isinstance(p, float) else p,
            )
            for op, o, p in steps
            if op not in F16_AVOID
        ] or [("abs", "x", "x")]
    tap = draw(st.integers(-1, len(steps) - 1))
    return tuple(steps), tuple(_shape(c, n, m) for c in codes), types, tap


@settings(max_examples=100, deadline=None)
@given(
    chain=chains(sorted(UNARY) + sorted(BINARY) + ["cast"], DTYPES, SCALARS),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_elementwise_chains_are_bit_identical_to_eager(chain, seed):
    """Chains of arithmetic, comparisons, where, clamp, rounding and casts over every dtype,
    with broadcasting operands (rows, columns, 0-d) and Python scalars: each op rounds as
    eager's does, so the results are the same bits, NaN and signed zeros included."""
    steps, shapes, dtypes, tap = chain
    compiled, eager = chain_executors(steps, shapes, dtypes, tap)
    rng = np.random.default_rng(seed)
    for specials in (False, True):
        arrays = [random_array(rng, s, d, specials) for s, d in zip(shapes, dtypes)]
        got, want = run_both(compiled, eager, arrays)
        for g, w in zip(got, want):
            assert_same(g, w, f"{steps} on {shapes} {dtypes}")


# a chain of smooth ops with transcendentals amplifies each op's last-ulp difference (exp by
# |x|, subtraction by cancellation): loose tolerances, and a fixed set of examples so that a
# rare amplified rounding cannot make the test flaky
CHAIN_RTOL = {"float16": 2e-2, "float32": 1e-4, "float64": 1e-10}


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    chain=chains(
        sorted(SMOOTH_UNARY) + sorted(SMOOTH_BINARY) + sorted(TRANSCENDENTAL),
        ["float16", "float32", "float64"],
        [0, 2, -3, 0.5, -1.25, 0.1],
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_transcendental_chains_match_eager_within_rounding(chain, seed):
    """exp, log, tanh, sigmoid, erf, sin, cos, expm1 and log1p inside chains of continuous
    ops over float16/32/64 match eager within a tolerance for the amplified last-ulp
    differences of the inline transcendentals; NaN and infinities at the same places."""
    steps, shapes, dtypes, tap = chain
    compiled, eager = chain_executors(steps, shapes, dtypes, tap)
    rng = np.random.default_rng(seed)
    arrays = [random_array(rng, s, d, False) for s, d in zip(shapes, dtypes)]
    got, want = run_both(compiled, eager, arrays)
    rtol = max(CHAIN_RTOL[d] for d in dtypes)  # the least precise input's rounding spreads
    for g, w in zip(got, want):
        scale = float(np.max(np.abs(w[np.isfinite(w)]), initial=1.0))
        assert_close(g, w, rtol=rtol, atol=rtol * scale, what=f"{steps} {shapes} {dtypes}")


# -- 2. non-contiguous inputs and views ----------------------------------------------------------

BASE = np.random.default_rng(7).standard_normal((8, 12)).astype(np.float32)
SQUARE = np.random.default_rng(8).standard_normal((6, 6)).astype(np.float32)
CUBE = np.random.default_rng(9).standard_normal((2, 3, 4)).astype(np.float32)


@pytest.mark.parametrize(
    "name, fn, array",
    _named(
        [
            ("transposed", lambda x: x * 2 + 1, BASE.T),
            ("stepped slice", lambda x: (x - 0.25).relu(), BASE[::2, ::3]),
            ("negative strides", lambda x: x.abs() * x, BASE[::-1, ::-2]),
            ("broadcast_to", lambda x: x * x - 1, np.broadcast_to(BASE[0], (5, 12))),
            ("broadcast_to softmax", lambda x: F.softmax(x, -1), np.broadcast_to(BASE[0], (5, 12))),
            ("transposed softmax", lambda x: F.softmax(x, -1), BASE.T),
            ("stepped row sum", lambda x: x.sum(-1, keepdim=True) * x, BASE[1::3, ::2]),
        ]
    ),
)
def test_non_contiguous_input_arrays_give_the_values_of_their_contiguous_copies(name, fn, array):
    """A transposed, stepped or broadcast (zero-stride) numpy array passed to a compiled
    program reads as its contiguous copy does; the result equals eager's."""
    assert not array.flags.c_contiguous
    compiled, eager = executors(fn, np.ascontiguousarray(array))
    (got,) = compiled(np, [array])
    (again,) = compiled(np, [np.ascontiguousarray(array)])
    (want,) = eager(np, [np.ascontiguousarray(array)])
    np.testing.assert_array_equal(got, again)
    assert_close(got, want, rtol=ULP_RTOL[want.dtype] * 4, atol=1e-7)


@pytest.mark.parametrize(
    "name, fn, array",
    _named(
        [
            ("t", lambda x: x.t() * 2 + x.t().abs(), BASE),
            ("t of t", lambda x: x + x.t().t(), BASE),
            ("x + x.t()", lambda x: x + x.t(), SQUARE),
            ("softmax(x + x.t())", lambda x: F.softmax(x + x.t(), -1), SQUARE),
            ("permute", lambda x: x.permute(2, 0, 1) * 3 - 1, CUBE),
            ("permute then reduce", lambda x: x.permute(0, 2, 1).sum(-1), CUBE),
            ("transpose minus permute", lambda x: x.transpose(1, 2) * 2 - x.permute(0, 2, 1), CUBE),
            ("reshape", lambda x: (x.reshape(6, 4) + 1).reshape(2, 12).relu(), CUBE),
            ("unsqueeze outer product", lambda x: x.unsqueeze(1) * x.unsqueeze(2), BASE),
            ("slices", lambda x: x[1:, ::2] * 2 + x[:-1, 1::2], BASE),
            ("expand", lambda x: x[:, :1].expand(8, 12) + x, BASE),
            ("expand of a member", lambda x: (x * 2)[:, :1].expand(8, 12) + x, BASE),
            ("t of a member", lambda x: (x * 2).t() + 1, SQUARE),
            ("strided view of a member", lambda x: (x * 2).reshape(4, 24)[:, ::3].exp(), BASE),
            ("row and column picks", lambda x: x[2] + x[:, 3].sum(), BASE),
            ("t then reduce", lambda x: (x.t() * 2).sum(-1), BASE),
            ("t then softmax-like", lambda x: (x.t() - x.t().amax(-1, keepdim=True)).exp(), BASE),
            ("reduce then t", lambda x: (x - x.mean(-1, keepdim=True)).t() * 2, BASE),
        ]
    ),
)
def test_views_inside_the_graph_fold_into_kernel_loads_and_match_eager(name, fn, array):
    """t(), permute, reshape, unsqueeze, slices and expand inside the graph are read through
    as strided loads (no eager view steps), and the values equal eager's."""
    compiled, eager = executors(fn, array)
    assert compiled.kernel_count >= 1
    eager_ops = [node.op for kind, _, node in compiled.steps if kind == "eager"]
    assert not eager_ops, f"views ran eagerly: {eager_ops}"
    got, want = run_both(compiled, eager, [array])
    for g, w in zip(got, want):
        assert_close(g, w, rtol=ULP_RTOL[w.dtype] * 4, atol=1e-6)


# -- 3. edge values ---------------------------------------------------------------------------

EDGE_UNARY = {k: v for k, v in UNARY.items() if k not in ("pow2", "pow05")}
EDGE_UNARY.update(
    {
        "clamp0": lambda h: h.clamp(min=0.0),
        "isfinite": lambda h: ember.isfinite(h),
        "isnan": lambda h: ember.isnan(h),
        "isinf": lambda h: ember.isinf(h),
        "to_float64": lambda h: h.to(ember.float64),
        "to_float16": lambda h: h.to(ember.float16),
        "to_bool": lambda h: h.to(ember.bool),
    }
)
F16_TIES: set = set()  # float16 cases to leave out (none since the tie and rsqrt fixes)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.__name__)
def test_edge_values_through_every_elementwise_op_match_eager_bit_for_bit(dtype):
    """inf, -inf, NaN, -0.0, denormals, the largest and smallest magnitudes and rounding
    halfway points through each elementwise op (one program, a kernel per op): the same
    bits, NaN positions and zero signs as eager."""
    names = [k for k in EDGE_UNARY if not (dtype == np.float16 and k in F16_TIES)]
    x = edge_values(dtype)
    compiled, eager = executors(lambda x: tuple(EDGE_UNARY[k](x) for k in names), x)
    assert compiled.kernel_count >= 1
    got, want = run_both(compiled, eager, [x])
    for name, g, w in zip(names, got, want):
        assert_same(g, w, name)


EDGE_BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "maximum": lambda a, b: ember.maximum(a, b),
    "minimum": lambda a, b: ember.minimum(a, b),
    "where": lambda a, b: ember.where(a > b, a, b),
    "where_ge0": lambda a, b: ember.where(a >= 0, a, b),
    "clamp_by_tensor": lambda a, b: a.clamp(min=b),
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
}


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.__name__)
def test_edge_values_pairwise_through_binary_ops_match_eager_bit_for_bit(dtype):
    """Every pair of edge values (a column against a row, broadcast) through arithmetic,
    maximum/minimum (NaN propagates), where and comparisons (NaN compares false, != true)."""
    a = edge_values(dtype).reshape(-1, 1)
    b = edge_values(dtype)
    names = list(EDGE_BINARY)
    compiled, eager = executors(lambda a, b: tuple(EDGE_BINARY[k](a, b) for k in names), a, b)
    got, want = run_both(compiled, eager, [a, b])
    for name, g, w in zip(names, got, want):
        assert_same(g, w, name)


TRANSCENDENTAL_EDGE = {
    "exp": lambda h: h.exp(),
    "expm1": lambda h: h.expm1(),
    "log": lambda h: h.log(),
    "log1p": lambda h: h.log1p(),
    "tanh": lambda h: h.tanh(),
    "sigmoid": lambda h: h.sigmoid(),
    "erf": lambda h: ember.erf(h),
    "sin": lambda h: h.sin(),
    "cos": lambda h: h.cos(),
}
# mathlib's sin and cos are accurate up to these magnitudes, beyond only within [-1, 1]
TRIG_RANGE = {np.dtype(np.float16): 1e5, np.dtype(np.float32): 1e5, np.dtype(np.float64): 1e9}


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.__name__)
def test_edge_values_through_transcendentals_match_eager_within_a_few_ulp(dtype):
    """The inline exp, expm1, log, log1p, tanh, sigmoid, erf, sin and cos on edge values and
    on a sweep across their ranges: NaN, infinities and zero signs exactly as eager, finite
    values within a few ulp (float16: the float32 result rounded once, as numpy does)."""
    sweep = np.concatenate(
        [
            np.linspace(-30, 30, 241),
            np.geomspace(1e-6, 700, 60),
            -np.geomspace(1e-6, 700, 60),
            [88.7, 89.0, -87.3, -104.0, 709.0],
        ]
    )
    x = np.concatenate([edge_values(dtype), sweep.astype(dtype)])
    names = list(TRANSCENDENTAL_EDGE)
    compiled, eager = executors(lambda x: tuple(TRANSCENDENTAL_EDGE[k](x) for k in names), x)
    got, want = run_both(compiled, eager, [x])
    rtol = ULP_RTOL[np.dtype(dtype)]
    tiny = float(np.finfo(dtype).smallest_normal)
    for name, g, w in zip(names, got, want):
        if name in ("sin", "cos"):
            far = ~(np.abs(x.astype(np.float64)) <= TRIG_RANGE[np.dtype(dtype)])  # NaN, inf stay
            assert np.all(np.abs(g[far & np.isfinite(x)]) <= 1), name
            g, w = np.where(far & np.isfinite(x), 0, g), np.where(far & np.isfinite(x), 0, w)
        assert_close(g, w, rtol=rtol, atol=tiny * 4, what=name)
        zero = w == 0
        np.testing.assert_array_equal(np.signbit(g[zero]), np.signbit(w[zero]), err_msg=name)


@pytest.mark.parametrize(
    "dtype, exponent",
    [
        pytest.param(d, e, id=f"{d.__name__}-{e}")
        for d in FLOATS
        for e in (2.0, 0.5, 1.0, -1.0, 3.0, -2.0, -0.5)
    ],
)
def test_pow_with_a_constant_exponent_matches_eager_bit_for_bit(dtype, exponent):
    """x ** e fuses for the exponents eager computes without powf (x*x, sqrt, 1/x, and x ** 3
    as (x*x)*x; float16 always uses powf or rounds each product, so only x*x and 1/x), bit
    for bit with edge values; other exponents run eager's kernel."""
    x = edge_values(dtype)
    compiled, eager = executors(lambda x: x**exponent, x)
    fused = exponent in ((1.0, 2.0, -1.0) if dtype == np.float16
                         else (1.0, 2.0, 3.0, 0.5, -1.0))
    assert compiled.kernel_count == (1 if fused else 0)
    got, want = run_both(compiled, eager, [x])
    assert_same(got[0], want[0])


@pytest.mark.parametrize("dtype", [np.float16, np.int8, np.uint8])
def test_narrow_dtype_chains_round_or_wrap_after_every_op_like_eager(dtype):
    """Fused float16 ops each round to float16 (as numpy does), int8/uint8 ops each wrap:
    computing a chain wider and rounding once at the end would differ."""
    rng = np.random.default_rng(0)
    if dtype == np.float16:
        x = (rng.standard_normal(4000) * 8).astype(dtype)
    else:
        x = rng.integers(0, 255, 4000).astype(dtype)

    def fn(x):
        return (((x * 3 + 5) * x - 7) * 5 + x) * x

    compiled, eager = executors(fn, x)
    assert compiled.kernel_count == 1
    got, want = run_both(compiled, eager, [x])
    assert_same(got[0], want[0])


# -- known elementwise bugs (strict xfail: they fail the suite once fixed) ------------------------


def test_pow_minus_one_is_the_reciprocal_like_eager():
    """x ** -1 is 1/x: the template squares for every exponent but 1, 3 and 0.5."""
    x = np.array([2.0, -4.0, 0.5], np.float32)
    compiled, eager = executors(lambda x: x**-1.0, x)
    got, want = run_both(compiled, eager, [x])
    np.testing.assert_array_equal(want[0], [0.5, -0.25, 2.0])
    assert_same(got[0], want[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_pow_minus_half_at_negative_zero_and_minus_infinity_matches_eager(dtype):
    """numpy's pow(-0.0, -0.5) is +inf and pow(-inf, -0.5) is 0 (C's pow)."""
    x = np.array([-0.0, -np.inf, 4.0], dtype)
    compiled, eager = executors(lambda x: x**-0.5, x)
    got, want = run_both(compiled, eager, [x])
    assert_same(got[0], want[0])


def test_float16_pow_half_at_negative_zero_and_minus_infinity_matches_eager():
    """numpy computes float16 power with powf (no sqrt shortcut as for float32/64)."""
    x = np.array([-0.0, -np.inf, 4.0], np.float16)
    compiled, eager = executors(lambda x: x**0.5, x)
    got, want = run_both(compiled, eager, [x])
    assert_same(got[0], want[0])


def test_float16_scalar_constants_round_to_float16_like_eager():
    """x / 3.3 in float16 divides by float16(3.3) = 3.30078125, as eager does."""
    x = np.array([3.0, 1.0, 0.5], np.float16)
    compiled, eager = executors(lambda x: (x / 3.3, x * 0.1 + 0.3), x)
    got, want = run_both(compiled, eager, [x])
    for g, w in zip(got, want):
        assert_same(g, w)


@pytest.mark.parametrize("op", ["relu", "maximum", "minimum", "clamp_min"])
def test_float16_ties_of_signed_zeros_keep_eagers_sign(op):
    """relu(-0.0), maximum(-0.0, 0.0), minimum(0.0, -0.0), clamp(-0.0, min=0) in float16."""
    fns = {
        "relu": lambda a, b: a.relu(),
        "maximum": lambda a, b: ember.maximum(a, b),
        "minimum": lambda a, b: ember.minimum(b, a),
        "clamp_min": lambda a, b: a.clamp(min=0.0),
    }
    a = np.array([-0.0, 0.0, -0.0], np.float16)
    b = np.array([0.0, -0.0, -0.0], np.float16)
    compiled, eager = executors(fns[op], a, b)
    got, want = run_both(compiled, eager, [a, b])
    assert_same(got[0], want[0])


def test_float16_rsqrt_rounds_like_eager():
    """rsqrt(x) of float16 x near 65504 and 89: the same float16 as eager."""
    x = np.array([65504.0, 89.0, 3.0], np.float16)
    compiled, eager = executors(lambda x: x.rsqrt(), x)
    got, want = run_both(compiled, eager, [x])
    assert_same(got[0], want[0])


def test_masked_fill_with_a_scalar_value_compiles_and_matches_eager():
    """x.masked_fill(x > 1, -0.0) is one kernel equal to eager."""
    x = np.array([0.5, 2.0, -np.inf, np.nan], np.float32)
    compiled, eager = executors(lambda x: x.masked_fill(x > 1, -0.0), x)
    got, want = run_both(compiled, eager, [x])
    assert_same(got[0], want[0])


def test_a_negative_python_int_with_a_uint8_tensor_runs_scripted_like_eager():
    """ember.script(lambda x: x + (-3)) on uint8 wraps around as eager does."""
    x = ember.tensor(np.array([1, 5, 200], np.uint8))
    scripted = ember.script(lambda x: x + (-3))
    want = (x + (-3)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(2):
            assert_same(scripted(x).numpy(), want)


# -- 4. fused reductions ----------------------------------------------------------------------

ROWS = np.random.default_rng(3).standard_normal((6, 10)).astype(np.float32)
ROWS3 = np.random.default_rng(4).standard_normal((2, 3, 10)).astype(np.float32)
WEIGHT = np.random.default_rng(5).standard_normal(10).astype(np.float32)
BIAS = np.random.default_rng(6).standard_normal(10).astype(np.float32)


def _with_edge_rows(x):
    """x with rows holding +inf, -inf, NaN, only -inf, and huge values (float32)."""
    x = x.copy()
    x[0, 3] = np.inf
    x[1, 2] = -np.inf
    x[2, 5] = np.nan
    x[3, :] = -np.inf
    x[4, :] = 3e37 * np.sign(x[4, :])  # huge, yet no order of summing overflows
    return x


@pytest.mark.parametrize(
    "name, fn, arrays",
    _named(
        [
            ("softmax", lambda x: F.softmax(x, dim=-1), [ROWS]),
            ("softmax 3-d", lambda x: F.softmax(x, dim=-1), [ROWS3]),
            ("softmax float64", lambda x: F.softmax(x, dim=-1), [ROWS.astype(np.float64)]),
            ("softmax float16", lambda x: F.softmax(x, dim=-1), [ROWS.astype(np.float16)]),
            ("log_softmax", lambda x: F.log_softmax(x, dim=-1), [ROWS]),
            ("log_softmax 3-d", lambda x: F.log_softmax(x, dim=-1), [ROWS3]),
            ("layer_norm", lambda x, w, b: F.layer_norm(x, (10,), w, b), [ROWS, WEIGHT, BIAS]),
            ("layer_norm no affine", lambda x: F.layer_norm(x, (10,)), [ROWS3]),
            ("layer_norm two dims", lambda x: F.layer_norm(x, (3, 10)), [ROWS3]),
        ]
    ),
)
def test_softmax_log_softmax_and_layer_norm_are_one_kernel_equal_to_eager(name, fn, arrays):
    """Each is one native kernel (the reductions and their prologue and epilogue in one pass
    per row), no eager step, and equals eager within rounding of the sums."""
    compiled, eager = executors(fn, *arrays)
    assert compiled.kernel_count == 1, compiled.describe()
    assert not [s for s in compiled.steps if s[0] == "eager"]
    got, want = run_both(compiled, eager, arrays)
    rtol = {np.float16: 2e-3, np.float32: 1e-5, np.float64: 1e-12}[arrays[0].dtype.type]
    assert_close(got[0], want[0], rtol=rtol, atol=rtol)


def test_softmax_row_loops_stay_rolled_and_keep_several_accumulators():
    """A row kernel with a transcendental keeps its inner loops rolled (unrolled, its passes
    spill the row and ran 30% slower) yet interleaved: the max loop holds 4 vector maxima."""
    from ember.codegen.llvm import target

    x = np.random.default_rng(0).standard_normal((64, 1024)).astype(np.float32)
    compiled, eager = executors(lambda m: F.softmax(m, -1), x)
    module = compiled.llvm_ir
    assert module.count("llvm.loop.unroll.disable") == 1
    assert len(re.findall(r"br label .*, !llvm.loop !\d+", module)) == 3
    if target.llvm().get_host_cpu_features().get("avx2"):
        asm = target.assembly(module)
        loops = re.split(r"\n\.LBB\d+_\d+:", asm)
        assert max(len(re.findall(r"vmaxps", part)) for part in loops) >= 4
    got, want = run_both(compiled, eager, [x])
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-7)


def test_causal_softmax_row_max_vectorizes_with_an_infinite_fill():
    """softmax(masked_fill(x, mask, -inf)): -inf is llvm.maximum's identity, and seen as a
    constant it let LLVM turn the row max into a select per element that stayed scalar
    (283 us against 113 for (128, 4, 16, 16) scores). Infinities are emitted as loads the
    optimizer cannot fold: the kernel has the vector maxima a finite fill's has, and values
    equal eager's, a row of -inf scores and the masked lanes included."""
    from ember.codegen.llvm import target

    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 4, 16, 16)).astype(np.float32)
    x[0, 0, 3] = -np.inf  # a row whose unmasked scores are -inf too
    mask = np.triu(np.ones((16, 16), bool), 1)
    vector_maxima = []
    for fill in (float("-inf"), -1e9):
        compiled, eager = executors(lambda s, m: F.softmax(s.masked_fill(m, fill), -1), x,
                                    mask)
        assert compiled.kernel_count == 1
        got, want = run_both(compiled, eager, [x, mask])
        np.testing.assert_array_equal(np.isnan(got[0]), np.isnan(want[0]))
        assert_close(got[0], want[0], rtol=1e-6, atol=1e-7)
        vector_maxima.append(target.assembly(compiled.llvm_ir).count("vmaxps"))
    if target.llvm().get_host_cpu_features().get("avx2"):
        assert vector_maxima[0] == vector_maxima[1] > 0


def test_avx512_hosts_vectorize_on_whole_512_bit_registers():
    """On an x86 CPU with AVX-512 the target machine is told not to prefer 256-bit vectors
    (LLVM's tuning for most Intel ones, under which a matrix-vector row kernel ran on ymm
    registers); elsewhere the host's features are passed on as they are."""
    from ember.codegen.llvm import target

    flat = "+64bit,+avx2,+avx512f,+fma"
    assert target.tuned_features(flat, "x86_64-unknown-linux-gnu") == flat + ",-prefer-256-bit"
    for flat, triple in [("+64bit,+avx2,-avx512f", "x86_64-unknown-linux-gnu"),
                         ("+neon,+avx512f", "aarch64-unknown-linux-gnu")]:
        assert target.tuned_features(flat, triple) == flat
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1024)).astype(np.float32)
    w = rng.standard_normal((128, 1024)).astype(np.float32)
    compiled, eager = executors(lambda x, w: (x * w).sum(-1), x, w)
    got, want = run_both(compiled, eager, [x, w])
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    if target.llvm().get_host_cpu_features().get("avx512f"):
        assert target.features().endswith(",-prefer-256-bit")
        fmas = re.findall(r"vfmadd\w+\s+[^\n]*%([xyz])mm", target.assembly(compiled.llvm_ir))
        assert fmas and set(fmas) == {"z"}


def test_layer_norm_prefetches_the_next_row_and_softmax_and_a_row_sum_do_not():
    """A memory-bound row kernel that passes over its rows twice prefetches the next row (one
    prefetch per 64-byte line of its 4 KB rows); softmax, busy with exp, and a kernel that
    passes over each row once (a row sum, a matrix-vector product) leave it to the hardware.
    Values stay eager's, the last row included (its prefetch points past the array, which
    never faults)."""
    x = np.random.default_rng(1).standard_normal((33, 1024)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal(1024).astype(np.float32)
    compiled, eager = executors(lambda m, w: F.layer_norm(m, (1024,), w), x, w)
    assert compiled.llvm_ir.count("call void @\"llvm.prefetch.p0\"") == 1
    assert re.search(r"icmp slt i64 %\S+, 64\b", compiled.llvm_ir)  # 4096 bytes / 64
    got, want = run_both(compiled, eager, [x, w])
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    compiled, _ = executors(lambda m: F.softmax(m, -1), x)
    assert "llvm.prefetch" not in compiled.llvm_ir
    compiled, eager = executors(lambda m, w: ember.relu((m * w).sum(-1) + 1.0), x, w)
    assert "llvm.prefetch" not in compiled.llvm_ir
    got, want = run_both(compiled, eager, [x, w])
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp", "amax", "sum"])
def test_reductions_over_rows_with_inf_and_nan_put_nan_and_inf_where_eager_does(name):
    """Rows holding +inf, -inf, NaN, only -inf, and +-3e37: the same NaN and inf positions
    (a NaN max propagates, logsumexp of only -inf is -inf, softmax of +inf is NaN)."""
    fns = {
        "softmax": lambda x: F.softmax(x, -1),
        "log_softmax": lambda x: F.log_softmax(x, -1),
        "logsumexp": lambda x: ember.logsumexp(x, -1),
        "amax": lambda x: x.amax(-1),
        "sum": lambda x: x.sum(-1),
    }
    x = _with_edge_rows(ROWS)
    compiled, eager = executors(fns[name], x)
    assert compiled.kernel_count == 1
    got, want = run_both(compiled, eager, [x])
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)


def test_cross_entropy_with_probability_targets_is_at_most_two_kernels():
    """cross_entropy against class probabilities: at most 2 native kernels, equal to eager."""
    target = np.random.default_rng(1).random((6, 10)).astype(np.float32)
    target /= target.sum(-1, keepdims=True)
    compiled, eager = executors(lambda x, t: F.cross_entropy(x, t), ROWS, target)
    assert 1 <= compiled.kernel_count <= 2, compiled.describe()
    got, want = run_both(compiled, eager, [ROWS, target])
    assert_close(got[0], want[0], rtol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_with_class_indices_matches_eager(reduction):
    """cross_entropy against class indices (ignore_index rows included): equal to eager."""
    target = np.array([1, 0, 9, -100, 4, 4])
    compiled, eager = executors(
        lambda x, t: F.cross_entropy(x, t, reduction=reduction), ROWS, target
    )
    got, want = run_both(compiled, eager, [ROWS, target])
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)


def test_cross_entropy_with_class_indices_is_at_most_two_kernels():
    """cross_entropy(x, class indices) compiles to at most 2 native kernels (+ the gather)."""
    target = np.array([1, 0, 9, 3, 4, 4])
    compiled, _ = executors(lambda x, t: F.cross_entropy(x, t), ROWS, target)
    assert compiled.kernel_count <= 2, compiled.describe()


REDUCTIONS = {
    "sum": lambda x, dim, keep: x.sum(dim=dim, keepdim=keep),
    "mean": lambda x, dim, keep: x.mean(dim=dim, keepdim=keep),
    "amax": lambda x, dim, keep: x.amax(dim=dim, keepdim=keep),
    "amin": lambda x, dim, keep: x.amin(dim=dim, keepdim=keep),
    "var": lambda x, dim, keep: x.var(dim=dim, keepdim=keep),
    "var biased": lambda x, dim, keep: x.var(dim=dim, keepdim=keep, correction=0),
    "logsumexp": lambda x, dim, keep: ember.logsumexp(x, dim=dim, keepdim=keep),
    "prod": lambda x, dim, keep: x.prod(dim=dim, keepdim=keep),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_trailing_dim_reductions_with_and_without_keepdim_match_eager(name, dtype):
    """Each reduction over the last dim, the last two dims and every dim (to 0-d; logsumexp
    takes all dims explicitly), keepdim True and False, with a pointwise epilogue: one
    kernel per set of reduced dims (the keepdim variants share their loop space, so sibling
    fusion runs them in one pass), the eager dtype and shape, values within rounding."""
    x = ROWS3.astype(dtype)
    dims = [-1, (-2, -1), (0, 1, 2) if name == "logsumexp" else None]
    cases = [(d, k) for d in dims for k in (False, True)]

    def fn(x):
        outs = []
        for d, k in cases:
            r = REDUCTIONS[name](x, d, k)
            outs += [r, r * 2 - 1]
        return tuple(outs)

    compiled, eager = executors(fn, x)
    assert compiled.kernel_count == len(dims)
    assert not [s for s in compiled.steps if s[0] == "eager"]
    got, want = run_both(compiled, eager, [x])
    assert [w.shape for w in want[::2]] == [(2, 3), (2, 3, 1), (2,), (2, 1, 1), (), (1, 1, 1)]
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for g, w in zip(got, want):
        if name in ("amax", "amin"):
            assert_same(g, w)
        else:
            assert_close(g, w, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64])
def test_integer_sums_accumulate_in_int64_and_max_min_keep_the_dtype(dtype):
    """Sums of int8/uint8/int32 rows (large enough to overflow their own dtype) are exact
    int64, as eager; amax/amin keep the dtype; a full sum is a 0-d int64."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    x = rng.integers(info.min // 2 + info.max // 2, info.max, size=(5, 37), endpoint=True)
    x = x.astype(dtype)
    x[0, :4] = info.max
    x[1, :4] = info.min

    def fn(x):
        return (x.sum(-1), x.sum(-1, keepdim=True), x.sum(), x.amax(-1), x.amin(-1), x.sum(-1) * 2)

    compiled, eager = executors(fn, x)
    assert compiled.kernel_count >= 1
    got, want = run_both(compiled, eager, [x])
    assert want[0].dtype == np.int64 and want[2].shape == ()
    assert want[3].dtype == dtype
    for g, w in zip(got, want):
        assert_same(g, w)


def test_where_of_two_affine_branches_is_exactly_one_kernel():
    """where(x > 0, x * 1.5 + 0.5, x * 0.1): the condition and both branches in one kernel."""
    compiled, eager = executors(lambda x: ember.where(x > 0, x * 1.5 + 0.5, x * 0.1), ROWS)
    assert compiled.kernel_count == 1
    assert len(compiled.steps) == 1
    got, want = run_both(compiled, eager, [ROWS])
    assert_same(got[0], want[0])


# -- 5. eager steps with fused epilogues ------------------------------------------------------

MAT = np.random.default_rng(11).standard_normal((10, 4)).astype(np.float32)
VEC4 = np.random.default_rng(12).standard_normal(4).astype(np.float32)


def _eager_ops(compiled):
    return [node.op for kind, _, node in compiled.steps if kind == "eager"]


@pytest.mark.parametrize(
    "name, fn, arrays, kernels, eager_ops",
    _named(
        [
            (
                "relu(x @ w + b)",
                lambda x, w, b: (x @ w + b).relu(),
                [ROWS, MAT, VEC4],
                1,
                ["matmul"],
            ),
            (
                "relu(linear(x, w, b))",
                lambda x, w, b: F.linear(x, w, b).relu(),
                [ROWS, np.ascontiguousarray(MAT.T), VEC4],
                1,
                ["linear"],
            ),
            (
                "relu(linear) on 2 rows: one dot-product kernel",
                lambda x, w, b: F.linear(x, w, b).relu(),
                [ROWS[:2], np.ascontiguousarray(MAT.T), VEC4],
                1,
                [],
            ),
            # a sum over leading dims is a kernel's column sums (read by another kernel)
            ("sum(dim=0) then relu", lambda x: (x.sum(dim=0) - 1).relu(), [ROWS], 2, []),
            ("scale, sum(dim=0), relu", lambda x: (x * 2).sum(dim=0).relu(), [ROWS], 2, []),
            (
                "mean(dim=0) centering",
                lambda x: x - x.mean(dim=0, keepdim=True),
                [ROWS],
                1,
                ["mean"],
            ),
            ("softmax(x @ w)", lambda x, w: F.softmax(x @ w, -1), [ROWS, MAT], 1, ["matmul"]),
        ]
    ),
)
def test_matmul_and_leading_dim_reductions_stay_eager_and_their_epilogue_fuses(
    name, fn, arrays, kernels, eager_ops
):
    """matmul, linear and reductions over leading dims other than sums run their eager
    kernels (a sum's are column sums of a kernel); the pointwise (or row-reduction) work
    after them is fused into the expected kernel count."""
    compiled, eager = executors(fn, *arrays)
    assert _eager_ops(compiled) == eager_ops, compiled.describe()
    assert compiled.kernel_count == kernels, compiled.describe()
    got, want = run_both(compiled, eager, arrays)
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_reductions_over_n_h_w_fuse_with_the_work_before_them_and_match_eager(dtype):
    """A batch norm's statistics and gradient sums, over (0, 2, 3) of (N, C, H, W) with and
    without keepdim (and amax over (0, 3)), read their input through a permute that puts the
    reduced dims last: fused kernels (the keepdim reshapes of their outputs are views), no
    eager reduction, eager's shapes, values within rounding."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 3, 5, 6)).astype(dtype)
    g = rng.standard_normal((4, 3, 5, 6)).astype(dtype)

    def fn(x, g):
        mean = x.mean((0, 2, 3), keepdim=True)
        centered = x - mean
        squares = (centered * centered).sum((0, 2, 3), keepdim=True)
        return mean, squares, (g * centered).sum((0, 2, 3)), x.amax((0, 3)) + 1

    compiled, eager = executors(fn, x, g)
    assert set(_eager_ops(compiled)) <= {"reshape"}, compiled.describe()
    got, want = run_both(compiled, eager, [x, g])
    assert [w.shape for w in want] == [(1, 3, 1, 1), (1, 3, 1, 1), (3,), (3, 5)]
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for gv, w in zip(got, want):
        assert_close(gv, w, rtol=rtol, atol=rtol)


# -- 6. threads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1 << 20, 1000], ids=["thread pool", "inline"])
def test_two_threads_calling_one_program_at_once_get_their_own_correct_results(n):
    """Two Python threads each call the same program 20 times at once on their own inputs
    (1M elements: split over the kernel thread pool; 1000: run inline) and always get the
    eager result: no per-call state is shared, planned buffers are per thread."""
    x0 = np.linspace(-3, 3, n, dtype=np.float32).reshape(-1, 1000 if n == 1000 else 1024)

    def fn(x):
        h = x * 1.5 - 0.25
        return h - h.amax(-1, keepdim=True), (h.sum(dim=0) * 2).relu()  # eager sum between

    compiled, eager = executors(fn, x0)
    assert compiled.kernel_count >= 2 and compiled.n_buffers >= 1
    inputs = [x0 + np.float32(k) for k in range(2)]
    with np.errstate(all="ignore"):
        wants = [eager(np, [x]) for x in inputs]
    errors = []
    start = threading.Barrier(2)

    def worker(k):
        try:
            start.wait()
            for _ in range(20):
                got = compiled(np, [inputs[k]])
                for g, w in zip(got, wants[k]):
                    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4)
        except Exception as exc:  # noqa: BLE001 (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


# -- 7. memory planning -------------------------------------------------------------------------


def test_each_call_returns_fresh_outputs_that_a_later_call_does_not_overwrite():
    """Outputs (a kernel's, a view of a kernel's, one read by a later kernel too) are fresh
    arrays per call: the first call's results survive the second call unchanged."""

    def fn(x):
        h = x * 2 + 1
        return h, h.t(), (h @ h.t()).relu() + h.sum(-1, keepdim=True), h.amax(-1)

    compiled, eager = executors(fn, SQUARE)
    first = compiled(np, [SQUARE])
    kept = [a.copy() for a in first]
    second = compiled(np, [SQUARE * 3])
    for a, b, k in zip(first, second, kept):
        np.testing.assert_array_equal(a, k)
        assert not np.shares_memory(a, b)
    for got, x in ((first, SQUARE), (second, SQUARE * 3)):
        for g, w in zip(got, eager(np, [x])):
            assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_intermediates_share_a_few_planned_buffers_and_stay_correct():
    """A chain of kernel -> matmul -> kernel ... has an intermediate per stage, each dead
    after the next matmul: they share at most two planned buffers, across calls too."""
    w = (np.random.default_rng(2).standard_normal((12, 12)) / 4).astype(np.float64)

    def fn(x, w):
        h = x
        for k in range(6):
            h = ((h * 0.5 + k).tanh()) @ w
        return h

    x = BASE.astype(np.float64)
    compiled, eager = executors(fn, x, w)
    assert _eager_ops(compiled) == ["matmul"] * 6
    assert 1 <= compiled.n_buffers <= 2
    for call in range(3):
        xs = [x + call, w]
        got, want = run_both(compiled, eager, xs)
        assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)


def test_intermediates_alive_at_the_same_time_get_distinct_buffers():
    """a = x * 2 + 1 and b = relu(y - 1), both of one shape and both read by two matmuls,
    are alive together: two planned buffers, and the matmuls see each its own values."""

    def fn(x, y):
        a = x * 2 + 1
        b = (y - 1).relu()
        return a @ b - b @ a

    y = SQUARE[::-1].copy()
    compiled, eager = executors(fn, SQUARE, y)
    assert _eager_ops(compiled) == ["matmul", "matmul"]
    assert compiled.n_buffers == 2
    for call in range(2):
        got, want = run_both(compiled, eager, [SQUARE + call, y])
        assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)


def test_a_kernel_written_over_a_dead_input_it_reads_elementwise_stays_correct():
    """An intermediate read by one kernel only at the element it writes may be overwritten
    by that kernel's output (aliased, not noalias): results equal eager, large and small."""

    def fn(x):
        a = x.cumsum(0) * 2  # after an eager op: a kernel's intermediate, not recomputable
        s = a.sum(dim=0, keepdim=True)  # eager: a stays an intermediate
        b = (a - s).exp() + a  # reads a elementwise; a is dead after it
        return b.t() @ b

    for rows in (4, 16384):  # 16384 x 64: split over the thread pool
        x = np.random.default_rng(rows).standard_normal((rows, 64)) / 8
        compiled, eager = executors(fn, x)
        assert any(spec.aliased for spec in compiled.specs), compiled.describe()
        got, want = run_both(compiled, eager, [x])
        assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)


def test_a_row_output_planned_over_an_input_does_not_clobber_it_before_it_is_read():
    """x * (y * 2) - x.sum(-1, keepdim=True), the row sum also feeding a matmul: the sum's
    planned buffer may not be y * 2's while the kernel still reads y * 2 after storing."""

    def fn(x, y, w):
        scaled = y * 2
        s = x.sum(-1, keepdim=True)
        return x * scaled - s, s.t() @ w

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((4, 8)), rng.standard_normal((4, 1)), rng.standard_normal((4, 3))]
    compiled, eager = executors(fn, *arrays)
    got, want = run_both(compiled, eager, arrays)
    for g, w in zip(got, want):
        assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_an_output_planned_over_an_input_it_does_not_read_leaves_it_for_later_outputs():
    """o0 = x * 3 (read by a matmul) and o0 * (y2 + colsum(y2)), y2 = y * 2 dead after the
    kernel: o0 may not overwrite y2 before the second output reads it."""

    def fn(x, y, w):
        y2 = y * 2
        column = y2.sum(dim=0, keepdim=True)
        o0 = x * 3
        return o0 * (y2 + column), o0 @ w

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((4, 8)), rng.standard_normal((4, 8)), rng.standard_normal((8, 3))]
    compiled, eager = executors(fn, *arrays)
    got, want = run_both(compiled, eager, arrays)
    for g, w in zip(got, want):
        assert_close(g, w, rtol=1e-12, atol=1e-12)


# -- 8. ember.script ----------------------------------------------------------------------------


def _mlp_head(x, w, b):
    return F.softmax((x @ w + b).relu() * 0.5, -1)


def test_a_scripted_function_runs_native_kernels_and_equals_eager():
    """Later calls of a scripted function run its compiled program and equal eager; .code
    is the LLVM IR, .source() the specs and IR, explain() counts the native kernels."""
    x, w, b = ember.tensor(ROWS), ember.tensor(MAT), ember.tensor(VEC4)
    scripted = ember.script(_mlp_head)
    want = _mlp_head(x, w, b).numpy()
    for _ in range(3):
        got = scripted(x, w, b).numpy()
        assert_close(got, want, rtol=1e-5, atol=1e-7)
    program = scripted.specializations[0].program
    assert isinstance(program, CompiledProgram) and program.kernel_count >= 1
    assert "define" in scripted.code
    source = scripted.source(x, w, b)
    assert "kernel" in source and "define" in source
    assert "native kernel" in scripted.explain()


def test_ember_log_fusion_prints_the_groups_to_stderr(monkeypatch, capfd):
    """EMBER_LOG=fusion,kernels prints the program's kernels and compile lines to stderr."""
    monkeypatch.setenv("EMBER_LOG", "fusion,kernels")
    scripted = ember.script(lambda x: F.softmax(x * 2, -1))
    scripted(ember.tensor(ROWS))
    err = capfd.readouterr().err
    assert "[ember fusion]" in err and "native kernel" in err
    assert "[ember kernels]" in err


def test_ember_compile_0_runs_scripted_functions_on_the_eager_kernels(monkeypatch):
    """EMBER_COMPILE=0 before scripting: the program is the eager Program (no kernels, no
    IR), and the values still equal eager."""
    monkeypatch.setenv("EMBER_COMPILE", "0")
    x, w, b = ember.tensor(ROWS), ember.tensor(MAT), ember.tensor(VEC4)
    scripted = ember.script(_mlp_head)
    for _ in range(2):
        got = scripted(x, w, b).numpy()
    program = scripted.specializations[0].program
    assert not hasattr(program, "kernel_count")
    assert "define" not in scripted.code
    assert "eager kernels only" in scripted.explain()
    np.testing.assert_allclose(got, _mlp_head(x, w, b).numpy(), rtol=1e-6)


def test_graph_render_draws_each_fusion_group_as_a_cluster(tmp_path):
    """After compiling, graph.render(path.dot) writes DOT with a cluster per fused kernel."""
    scripted = ember.script(lambda x: ember.where(x > 0, x * 1.5 + 0.5, x * 0.1).sum(-1))
    scripted(ember.tensor(ROWS))
    path = tmp_path / "g.dot"
    scripted.graph.render(str(path))
    text = path.read_text()
    assert text.startswith("digraph") and "cluster_" in text


# -- 9. loaded graph files -----------------------------------------------------------------------


def test_an_exported_graph_file_loads_as_a_compiled_program_equal_to_eager(tmp_path):
    """ember.export then ember.runtime.load: the file runs on native kernels (static shapes)
    and its outputs equal the eager function's."""
    w, b = ember.tensor(MAT), ember.tensor(VEC4)

    def head(x):
        h = (x @ w + b).relu()
        return F.log_softmax(h, -1), F.layer_norm(x, (10,))

    path = tmp_path / "head.ember"
    ember.export(head, ember.tensor(ROWS), path)
    loaded = runtime.load(path)
    assert isinstance(loaded._program, CompiledProgram)
    assert loaded._program.kernel_count >= 2
    for scale in (1.0, 3.0):
        x = ROWS * np.float32(scale)
        got = loaded(x)
        with ember.no_grad():
            want = [t.numpy() for t in head(ember.tensor(x))]
        for g, e in zip(got, want):
            assert_close(np.asarray(g), e, rtol=1e-5, atol=1e-6)


def test_a_remembered_input_pointer_follows_in_place_writes_and_new_arrays():
    """The program remembers the last small contiguous array per input slot and its pointer:
    values written into that same array are read on the next call, and another array (or
    a non-contiguous view, copied each call) is read from its own memory."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    compiled, eager = executors(lambda a: (a * 2 + 1) * a - 3, x)
    a = x.copy()
    for step in range(3):
        np.testing.assert_array_equal(compiled(np, [a])[0], eager(np, [a.copy()])[0])
        a += 1  # in place: the same array, new values
    other = x[::-1].copy()
    np.testing.assert_array_equal(compiled(np, [other])[0], eager(np, [other])[0])
    wide = np.arange(24, dtype=np.float32).reshape(3, 8)[:, ::2]  # not contiguous
    for _ in range(2):
        np.testing.assert_array_equal(compiled(np, [wide])[0], eager(np, [wide.copy()])[0])
        wide += 1
