"""ember against PyTorch: values, dtypes and gradients of every op, on seeded random inputs.

Each case is one function `fn(m, *inputs)` written once and run twice, with `m` the ember
module and with the torch module (`F(m)` is the functional namespace: ember.ops or
torch.nn.functional). Inputs are numpy arrays turned into tensors of either library; float
inputs require grad, and the gradients of a random-weighted sum of the outputs are compared
too. Inputs PyTorch rejects must be rejected with an exception of the same kind. A coverage
test runs every case under a profiler and fails when a public function of ember.ops or a
Tensor method that mirrors PyTorch is called by no case.
"""

from __future__ import annotations

import inspect
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import ember
import numpy as np
import pytest
from ember import ops as E

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel"),
]

FLOATS = ("float32", "float64")
INTS = (None,)  # the case's inputs carry their own (integer, bool or mixed) dtypes


def F(m):
    """The functional namespace: torch.nn.functional, or ember.ops."""
    return torch.nn.functional if m is torch else E


# -- inputs ----------------------------------------------------------------------------------


class NoGrad:
    """A float input that must not require grad (a bound, a weight, a mask-like tensor)."""

    def __init__(self, array):
        self.array = array


def rn(r, d, *shape):
    return r.standard_normal(shape).astype(d)


def rp(r, d, *shape, low=0.5, high=2.0):
    return r.uniform(low, high, shape).astype(d)


def rd(r, d, *shape, offset=0.037):
    """Distinct values 0.1 apart: no ties for max/argmax/pooling, never 0 or an integer."""
    n = int(np.prod(shape))
    return ((r.permutation(n) - n // 2) * 0.1 + offset).reshape(shape).astype(d)


def rnz(r, d, *shape):
    return (r.uniform(0.3, 2.0, shape) * r.choice([-1.0, 1.0], shape)).astype(d)


def ri(r, *shape, low=-4, high=5, dtype="int64"):
    return r.integers(low, high, shape).astype(dtype)


def rb(r, *shape):
    return r.random(shape) < 0.5


def ix(values):
    return np.asarray(values, dtype=np.int64)


def bm(values):
    return np.asarray(values, dtype=bool)


# -- cases -----------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    fn: Callable
    make: Callable  # (rng, dtype name or None) -> tuple of numpy arrays, numbers, NoGrad
    dtypes: tuple = FLOATS
    grad: bool = True
    marks: tuple = ()


CASES: list[Case] = []


def case(name, fn, make, dtypes=FLOATS, grad=True, marks=()):
    CASES.append(Case(name, fn, make, dtypes, grad, marks))


def ints(name, fn, make):
    case(name, fn, make, dtypes=INTS, grad=False)


# elementwise, unary: as functions, as methods, in place
_UNARY = {
    "neg": rn,
    "negative": rn,
    "abs": rd,
    "absolute": rd,
    "sign": rd,
    "exp": rn,
    "log": rp,
    "log1p": rp,
    "expm1": rn,
    "sqrt": rp,
    "rsqrt": rp,
    "reciprocal": rnz,
    "sin": rn,
    "cos": rn,
    "tanh": rn,
    "sigmoid": rn,
    "relu": rd,
    "erf": rn,
    "floor": rd,
    "ceil": rd,
    "trunc": rd,
    "round": rd,
    "square": rn,
    "asin": lambda r, d, *s: r.uniform(-0.9, 0.9, s).astype(d),
    "arcsin": lambda r, d, *s: r.uniform(-0.9, 0.9, s).astype(d),
    "acos": lambda r, d, *s: r.uniform(-0.9, 0.9, s).astype(d),
    "arccos": lambda r, d, *s: r.uniform(-0.9, 0.9, s).astype(d),
    "atan": rn,
    "arctan": rn,
    "sinh": rn,
    "cosh": rn,
    "asinh": rn,
    "arcsinh": rn,
    "acosh": lambda r, d, *s: r.uniform(1.1, 4.0, s).astype(d),
    "arccosh": lambda r, d, *s: r.uniform(1.1, 4.0, s).astype(d),
    "atanh": lambda r, d, *s: r.uniform(-0.9, 0.9, s).astype(d),
    "arctanh": lambda r, d, *s: r.uniform(-0.9, 0.9, s).astype(d),
    "log2": rp,
    "log10": rp,
    "exp2": rn,
    "tan": lambda r, d, *s: r.uniform(-1.2, 1.2, s).astype(d),
    "erfc": rn,
    "erfinv": lambda r, d, *s: r.uniform(-0.9, 0.9, s).astype(d),
    "lgamma": lambda r, d, *s: r.uniform(0.2, 6.0, s).astype(d),
    "digamma": lambda r, d, *s: r.uniform(0.2, 6.0, s).astype(d),
    "sinc": rn,
    "logit": lambda r, d, *s: r.uniform(0.05, 0.95, s).astype(d),
    "nan_to_num": rn,
}
# PyTorch's trigamma (digamma's derivative) is within ~5e-10 of mpmath, over this file's
# float64 tolerance (ember's within 6 ulp): digamma's gradients and trigamma are compared in
# tests/runtime/test_special_functions_oracle.py instead
_TRIGAMMA_GRAD = {"digamma"}
for _op, _gen in _UNARY.items():
    case(f"{_op}", lambda m, x, op=_op: getattr(m, op)(x), lambda r, d, g=_gen: (g(r, d, 3, 4),),
         grad=_op not in _TRIGAMMA_GRAD)
    case(f"{_op}_method", lambda m, x, op=_op: getattr(x, op)(), lambda r, d, g=_gen: (g(r, d, 5),),
         grad=_op not in _TRIGAMMA_GRAD)
_INPLACE_UNARY = [op for op in _UNARY if hasattr(ember.Tensor, op + "_")]
# torch has no derivative for these in place (ember's is the out-of-place one): values only
_NO_TORCH_INPLACE_GRAD = {"asinh", "arcsinh", "acosh", "arccosh", "atanh", "arctanh"}
for _op in _INPLACE_UNARY:
    case(
        f"{_op}_",
        lambda m, x, op=_op: getattr(x * 1, op + "_")(),
        lambda r, d, g=_UNARY[_op]: (g(r, d, 2, 3),),
        grad=_op not in _NO_TORCH_INPLACE_GRAD | _TRIGAMMA_GRAD,
    )
case("round_decimals", lambda m, x: m.round(x * 10, decimals=1), lambda r, d: (rd(r, d, 4),))
for _n in (0, 3):
    case(f"polygamma{_n}", lambda m, x, n=_n: (m.polygamma(n, x), x.polygamma(n),
                                              (x * 1).polygamma_(n)),
         lambda r, d: (r.uniform(0.3, 5.0, (3, 4)).astype(d),), grad=_n != 0)
case("mvlgamma", lambda m, x: (m.mvlgamma(x, 3), x.mvlgamma(2), (x * 1).mvlgamma_(4)),
     lambda r, d: (r.uniform(2.0, 6.0, (3, 4)).astype(d),))
case("logit_eps", lambda m, x: (m.logit(x, eps=0.1), x.logit(1e-3)),
     lambda r, d: (r.uniform(0.0, 1.0, (8,)).astype(d),))
case("nan_to_num_values",
     lambda m, x: (m.nan_to_num(x), x.nan_to_num(nan=1.0, posinf=2.0, neginf=-2.0),
                   (x * 1).nan_to_num_(nan=3.0)),
     lambda r, d: (NoGrad(np.array([np.nan, np.inf, -np.inf, 0.5, -1.0], d)),), grad=False)
case(
    "sigmoid_tails",
    lambda m, x: m.sigmoid(x),
    lambda r, d: (np.array([-30.0, -12.0, 0.0, 12.0, 30.0], d),),
)
case(
    "exp_log_at_edges",
    lambda m, x: (m.log(x), m.exp(-1 / x), m.sqrt(x - 1)),
    lambda r, d: (NoGrad(np.array([0.0, 0.5, 1.0, 2.0], d)),),
    grad=False,
)
case("operators_unary", lambda m, x: (-x, abs(x), +x), lambda r, d: (rd(r, d, 2, 3),))
ints(
    "unary_int",
    lambda m, x: (
        -x,
        x.abs(),
        x.sign(),
        x.square(),
        m.relu(x),
        x.floor(),
        x.ceil(),
        x.round(),
        x.trunc(),
        abs(x),
    ),
    lambda r, d: (ri(r, 2, 5, dtype="int32"),),
)
ints(
    "unary_int_to_float",
    lambda m, x: (
        x.exp(),
        m.sqrt(x.abs()),
        x.sigmoid(),
        m.sin(x),
        x.reciprocal(),
        m.erf(x),
        m.log1p(x.abs()),
    ),
    lambda r, d: (ri(r, 2, 3, low=1, high=5),),
)
ints(
    "logical_not",
    lambda m, x, b: (m.logical_not(x), b.logical_not(), ~b, x.logical_not_()),
    lambda r, d: (ri(r, 5, low=-1, high=2), rb(r, 5)),
)
ints("logical_not_", lambda m, b: b.clone().logical_not_(), lambda r, d: (rb(r, 6),))

ints(
    "bitwise_ops",
    lambda m, a, b, t, f: (
        m.bitwise_and(a, b), a.bitwise_or(b), m.bitwise_xor(a, 3), m.bitwise_not(a),
        a & b, a | 5, 6 ^ a, ~a, (a * 1).bitwise_and_(b), t & f, t | f, t ^ f, ~t,
    ),
    lambda r, d: (ri(r, 3, 4, low=-20, high=20), ri(r, 4, low=-20, high=20), rb(r, 3, 4),
                  rb(r, 4)),
)
ints(
    "bitwise_shifts",
    lambda m, a, n: (
        m.bitwise_left_shift(a, n), a.bitwise_right_shift(n), a << 2, a >> n, 1 << n,
        m.bitwise_left_shift(a, 40), a >> 70,
    ),
    lambda r, d: (ri(r, 3, 4, low=-100, high=100), ri(r, 4, low=0, high=8)),
)
def _bitwise_in_place(a, b, n):
    x = a * 1
    x.bitwise_or_(b)
    x.bitwise_xor_(b)
    x.bitwise_not_()
    y = a * 1
    y.bitwise_left_shift_(n)
    y.bitwise_right_shift_(1)
    z = a * 1
    z |= b
    z ^= 3
    z <<= n
    z >>= 1
    return x, y, z, 2 >> n


ints(
    "bitwise_in_place",
    lambda m, a, b, n: _bitwise_in_place(a, b, n),
    lambda r, d: (ri(r, 3, 4, low=-50, high=50), ri(r, 4, low=-50, high=50),
                  ri(r, 4, low=0, high=6)),
)
ints(
    "bitwise_small_ints",
    lambda m, a, b: (a & b, a | b, ~a, a << 3, a >> 1),
    lambda r, d: (ri(r, 6, low=-100, high=100, dtype="int8"),
                  ri(r, 6, low=0, high=255, dtype="uint8")),
)
ints(
    "fmod_ints",
    lambda m, a, b: (m.fmod(a, b), a.fmod(3), m.fmod(-a, b)),
    lambda r, d: (ri(r, 3, 4, low=-20, high=20), ri(r, 4, low=1, high=6)),
)
case(
    "xlogy_zeros_and_nan",
    lambda m, x, y: (m.xlogy(x, y), m.xlogy(x * 0, y), m.xlogy(x * 0, y * float("nan"))),
    lambda r, d: (rn(r, d, 5), rp(r, d, 5)),
    grad=False,
)


case(
    "sort_argsort_msort",
    lambda m, x: (
        m.sort(x)[0], m.sort(x, dim=0, descending=True).values, x.sort(1)[1],
        m.argsort(x, dim=-1, descending=True), x.argsort(0), m.msort(x),
        m.sort(x, stable=True, dim=1).indices,
    ),
    lambda r, d: (rd(r, d, 4, 5),),
)
case(
    "topk_kthvalue",
    lambda m, x: (
        m.topk(x, 3)[0], x.topk(2, dim=0, largest=False).values, m.topk(x, 2, dim=1).indices,
        m.kthvalue(x, 2).values, x.kthvalue(3, dim=0, keepdim=True)[0],
        m.kthvalue(x, 1, 1)[1],
    ),
    lambda r, d: (rd(r, d, 4, 5),),
)
case(
    "sort_nan_and_ties_stable",
    lambda m, x: (
        m.sort(x, stable=True), m.sort(x, descending=True, stable=True),
        m.argsort(x, stable=True),
    ),
    lambda r, d: (np.array([[3.0, 1.0, np.nan, 1.0, 2.0], [0.0, -1.0, 5.0, 5.0, np.nan]], d),),
    grad=False,
)
ints(
    "sort_ints",
    lambda m, x: (m.sort(x, stable=True), m.topk(x + m.arange(5), 2).values),
    lambda r, d: (ri(r, 3, 5),),
)


case(
    "roll_diagonal_repeat_interleave_frac",
    lambda m, a: (
        m.roll(a, 2), m.roll(a, (1, -3), (0, 2)), a.roll(-1, 1),
        m.diagonal(a, 1, 1, 2), a.diagonal(-1, 0, 2), m.diag(a[0]), a[0].diag(1),
        m.diag(a[0, 0], 2), m.repeat_interleave(a, 2, dim=1), a.repeat_interleave(3),
        m.frac(a * 3), (a * 3).frac(), (a * 3).frac_(), m.moveaxis(a, 0, 2), a.moveaxis(1, 0),
    ),
    lambda r, d: (rn(r, d, 3, 4, 5),),
)
case(
    "isclose",
    lambda m, a, b: (m.isclose(a, b), a.isclose(b, rtol=0.5), m.isclose(a, a + 1e-9),
                     m.isclose(a, b, atol=1.0, equal_nan=True)),
    lambda r, d: (rn(r, d, 3, 4), rn(r, d, 4)),
    grad=False,
)
ints(
    "meshgrid_repeat_interleave_counts",
    lambda m, a, b, n: (
        *m.meshgrid(a, b, indexing="xy"), *m.meshgrid(a, b, indexing="ij"),
        m.repeat_interleave(b, n), b.repeat_interleave(n, dim=0),
    ),
    lambda r, d: (ri(r, 3), ri(r, 4), ri(r, 4, low=0, high=3)),
)
case(
    "multinomial_on_certain_distributions",  # one category per row: no randomness to compare
    lambda m, p: (m.multinomial(p, 3, replacement=True), p.multinomial(1),
                  m.multinomial(p[0], 2, True)),
    lambda r, d: (NoGrad(np.eye(4, dtype=d)[[2, 0, 3]]),),
    grad=False,
)


_EINSUMS = [
    ("ij,jk->ik", (3, 4), (4, 5)), ("bij,bjk->bik", (2, 3, 4), (2, 4, 5)), ("ii->i", (4, 4)),
    ("ii", (4, 4)), ("ij->", (3, 4)), ("ij->ji", (3, 4)), ("i,j->ij", (3,), (4,)),
    ("i,i->", (5,), (5,)), ("...ij,...jk->...ik", (2, 3, 4, 5), (5, 6)),
    ("bhqd,bhkd->bhqk", (2, 3, 4, 5), (2, 3, 6, 5)), ("ijk,jl,lk->i", (2, 3, 4), (3, 5), (5, 4)),
    ("ij,ij->ij", (3, 4), (3, 4)), ("bij,jk", (2, 3, 4), (4, 5)), ("...,...->...", (2, 3), (3,)),
    ("iij->j", (3, 3, 4)), ("ab...,b->a...", (2, 3, 4, 5), (3,)), (" i j , j k -> i k ", (2, 3),
                                                                   (3, 2)),
]
for _k, (_eq, *_shapes) in enumerate(_EINSUMS):
    case(
        f"einsum_{_k}",
        lambda m, *xs, eq=_eq: m.einsum(eq, *xs) if len(xs) != 2 else m.einsum(eq, [*xs]),
        lambda r, d, shapes=_shapes: tuple(rn(r, d, *s) for s in shapes),
    )


case(
    "device_and_layout_predicates",
    lambda m, x: m.tensor([x.is_cpu, x.is_cuda, x.is_mps, x.is_xpu, x.is_meta, x.is_sparse,
                           x.is_quantized, x.is_mkldnn, x.is_nested]),
    lambda r, d: (rn(r, d, 3),),
    grad=False,
)


case(
    "cummax_cummin",
    lambda m, x: (m.cummax(x, 1).values, x.cummax(0)[1], m.cummin(x, -1)[0],
                  x.cummin(dim=0).indices, m.cummax(x[0], 0).values),
    lambda r, d: (rd(r, d, 4, 5),),
)
case(
    "cummax_cummin_nan_and_ties",
    lambda m, x: (m.cummax(x, 1), m.cummin(x, 1), m.cummax(x, 0), m.cummin(x, 0)),
    lambda r, d: (np.array([[1.0, np.nan, 2.0, np.nan], [1.0, 1.0, 0.0, 1.0],
                            [3.0, 1.0, 3.0, 2.0]], d),),
    grad=False,
)
ints(
    "cummax_cummin_ints",
    lambda m, x, b: (m.cummax(x, 1), m.cummin(x, 0), m.cummin(b, 1), m.cummax(b, 0)),
    lambda r, d: (ri(r, 3, 6, low=-2, high=3), rb(r, 3, 6)),
)


# elementwise, binary: broadcasting, scalars on either side, operators, in place
_BC = ((3, 1, 4), (2, 4))
_BINARY = {
    "add": (rn, rn),
    "sub": (rn, rn),
    "subtract": (rn, rn),
    "mul": (rn, rn),
    "multiply": (rn, rn),
    "div": (rn, rnz),
    "divide": (rn, rnz),
    "true_divide": (rn, rnz),
    "maximum": (rd, lambda r, d, *s: rd(r, d, *s, offset=0.061)),
    "minimum": (rd, lambda r, d, *s: rd(r, d, *s, offset=0.061)),
    "pow": (rp, rn),
    "remainder": (rn, rnz),
    "fmod": (rn, rnz),
    "atan2": (rn, rnz),
    "arctan2": (rn, rnz),
    "hypot": (rnz, rnz),
    "logaddexp": (rn, rn),
    "logaddexp2": (rn, rn),
    "copysign": (rnz, rnz),
    "xlogy": (rn, rp),
}
for _op, (_ga, _gb) in _BINARY.items():
    case(
        f"{_op}_broadcast",
        lambda m, a, b, op=_op: getattr(m, op)(a, b),
        lambda r, d, ga=_ga, gb=_gb: (ga(r, d, *_BC[0]), gb(r, d, *_BC[1])),
    )
    if _op not in ("maximum", "minimum", "atan2", "arctan2", "hypot", "logaddexp",
                   "logaddexp2"):  # torch takes no scalar there
        case(
            f"{_op}_method_scalar",
            lambda m, a, op=_op: getattr(a, op)(1.5),
            lambda r, d, ga=_ga: (ga(r, d, 2, 3),),
        )
case(
    "add_sub_alpha",
    lambda m, a, b: (m.add(a, b, alpha=2), a.sub(b, alpha=0.5)),
    lambda r, d: (rn(r, d, 2, 3), rn(r, d, 3)),
)
case(
    "div_rounding_modes",
    lambda m, a, b: (
        m.div(a, b, rounding_mode="floor"),
        a.div(b, rounding_mode="trunc"),
        m.divide(a, 2.5, rounding_mode="trunc"),
    ),
    lambda r, d: (rn(r, d, 2, 4) * 4, rnz(r, d, 4)),
)
case(
    "operators_binary",
    lambda m, a, b: (a + b, a - b, a * b, a / b, (a // b).detach(), a % b, abs(a) ** b),
    lambda r, d: (rn(r, d, 3, 1, 4) * 3, rnz(r, d, 2, 4)),
)
case(
    "operators_reflected",
    lambda m, a: (
        2 + a,
        2.5 - a,
        3 * a,
        1.5 / a,
        (7.0 // a).detach(),
        (5.5 % a).detach(),
        2**a,
        1.5**a,
    ),
    lambda r, d: (rnz(r, d, 2, 3),),
)
case(
    "operators_scalar_right",
    lambda m, a: (
        a + 1,
        a - 2.5,
        a * 3,
        a / 4,
        (a // 0.7).detach(),
        a % 0.7,
        abs(a) ** 0.5,
        a**2,
        a**0,
    ),
    lambda r, d: (rnz(r, d, 2, 3),),
)
case(
    "operators_inplace", lambda m, a, b: _iops(a * 1, b), lambda r, d: (rp(r, d, 2, 3), rp(r, d, 3))
)
_INPLACE_BINARY = [
    "add", "sub", "mul", "div", "pow", "remainder", "subtract", "multiply", "divide", "true_divide",
    "fmod", "atan2", "arctan2", "hypot", "copysign", "xlogy",
]
for _op in _INPLACE_BINARY:
    case(
        f"{_op}_",
        lambda m, a, b, op=_op: getattr(a * 1, op + "_")(b),
        lambda r, d: (rp(r, d, 2, 3), rp(r, d, 3)),
    )
# torch has no derivative for floor_divide (ember's is zero): compare values only
case(
    "floor_divide",
    lambda m, a, b: (m.floor_divide(a, b), a.floor_divide(1.5), (a * 1).floor_divide_(b[0])),
    lambda r, d: (rn(r, d, *_BC[0]) * 3, rnz(r, d, *_BC[1])),
    grad=False,
)
case(
    "add_inplace_alpha",
    lambda m, a, b: (a * 1).add_(b, alpha=3).sub_(b, alpha=0.5),
    lambda r, d: (rn(r, d, 2, 3), rn(r, d, 3)),
)
case(
    "remainder_signs",
    lambda m, a, b: (a % b, m.remainder(a, -1.5), m.floor_divide(a, b).detach()),
    lambda r, d: (np.array([5.5, -5.5, 3.25, -3.25], d), np.array([2.0, 2.0, -1.5, -1.5], d)),
)
case(
    "pow_forms",
    lambda m, a, b: (m.pow(a, b), m.pow(a, 3), m.pow(2.0, b), a.pow(0.5)),
    lambda r, d: (rp(r, d, 2, 3), rn(r, d, 3)),
)


def _iops(a, b):
    a += b
    a -= 0.5
    a *= b
    a /= 2
    a **= 1.5
    c = a * 1
    c %= 0.9
    e = a.detach() * 1
    e //= 0.3
    return a, c, e


# comparison and logical ops
case(
    "comparisons",
    lambda m, a, b: (
        m.eq(a, b),
        m.ne(a, b),
        m.lt(a, b),
        m.le(a, 0.1),
        m.gt(a, b),
        m.ge(a, b),
        m.less(a, b),
        m.less_equal(a, b),
        m.greater(a, b),
        m.greater_equal(a, b),
        a == b,
        a != b,
        a < b,
        a <= b,
        a > b,
        a >= 0.0,
        0.5 < a,
        a.eq(b),
        a.ne(b),
        a.lt(b),
        a.le(b),
        a.gt(b),
        a.ge(b),
        a.less(b),
        a.less_equal(b),
        a.greater(b),
        a.greater_equal(b),
    ),
    lambda r, d: (np.round(rn(r, d, 3, 1, 4)), np.round(rn(r, d, 2, 4))),
    grad=False,
)
ints(
    "comparisons_mixed_dtypes",
    lambda m, a, b: (a == b, a < 2.5, a > b, m.eq(a, 3)),
    lambda r, d: (ri(r, 3, 4, dtype="int32"), rn(r, "float32", 4)),
)
ints(
    "logical_binary",
    lambda m, a, b, x: (
        m.logical_and(a, b),
        m.logical_or(a, b),
        m.logical_xor(a, b),
        m.logical_and(x, b),
        a.logical_or(x),
        a.logical_xor(b),
        a.logical_and(b),
        a & b,
        a | b,
        a ^ b,
        True & a,
        False | a,
    ),
    lambda r, d: (rb(r, 3, 4), rb(r, 4), ri(r, 3, 4, low=-1, high=2)),
)
ints(
    "bool_methods_rand_ror",
    lambda m, a, b: (a.__rand__(b), a.__ror__(b)),
    lambda r, d: (rb(r, 5), rb(r, 5)),
)

# type promotion
ints(
    "promote_int32_plus_float",
    lambda m, a: (a + 2.5, 2.5 * a, a - 1, a * True),
    lambda r, d: (ri(r, 2, 3, dtype="int32"),),
)
ints(
    "promote_uint8_int8",
    lambda m, a, b: (a + b, a * b, m.maximum(a, b), a - b),
    lambda r, d: (
        ri(r, 4, low=0, high=100, dtype="uint8"),
        ri(r, 4, low=-50, high=50, dtype="int8"),
    ),
)
ints(
    "promote_bool_plus_int",
    lambda m, b: (b + 1, b * 2.5, b + b, b * b, b.sum(), b.mean(dtype=m.float32)),
    lambda r, d: (rb(r, 2, 3),),
)
ints(
    "promote_int_div_int",
    lambda m, a, b: (
        a / b,
        a // b,
        a % b,
        m.div(a, b),
        m.div(a, b, rounding_mode="trunc"),
        m.div(a, b, rounding_mode="floor"),
        a / 2,
        7 / b,
    ),
    lambda r, d: (ri(r, 3, 4, low=-9, high=10), ri(r, 4, low=1, high=4) * np.array([1, -1, 1, -1])),
)
ints(
    "promote_int_pow",
    lambda m, a: (a**2, 2**a, a**1.5, a.pow(3)),
    lambda r, d: (ri(r, 5, low=0, high=6),),
)
ints(
    "promote_tensor_categories",
    lambda m, i32, i64, f32, f64_0d, i_0d: (
        i32 + i64,
        i64 * f32,
        f32 + f64_0d,
        i32 + f64_0d,
        f32 * i_0d,
        i32 * i_0d,
        m.where(i32 > 0, i32, f32),
    ),
    lambda r, d: (
        ri(r, 4, dtype="int32"),
        ri(r, 4),
        rn(r, "float32", 4),
        np.array(2.5, "float64"),
        np.array(3, "int64"),
    ),
)
ints(
    "promote_int_mean_sum_prod",
    lambda m, a: (
        a.sum(),
        a.sum(1),
        a.prod(0),
        a.cumsum(1),
        a.sum(dtype=m.float64),
        a.float().mean(),
        a.max(),
        a.argmax(),
        m.amin(a, 0),
    ),
    lambda r, d: (ri(r, 3, 4, dtype="int32"),),
)
ints(
    "result_type_can_cast",
    lambda m, a, b: (
        m.result_type(a, b),
        m.result_type(a, 2.5),
        m.result_type(b, 1),
        m.can_cast(m.float32, m.int32),
        m.can_cast(m.int32, m.float32),
        m.can_cast(m.int64, m.int8),
    ),
    lambda r, d: (ri(r, 3, dtype="uint8"), ri(r, 3, dtype="int16")),
)

# where, clamp, lerp and friends
case(
    "where",
    lambda m, c, a, b: (m.where(c, a, b), m.where(c, a, 0.5), a.where(c, b)),
    lambda r, d: (rb(r, 3, 1, 1), rn(r, d, 2, 4), rn(r, d, 3, 1, 4)),
)
ints(
    "where_scalars_and_promotion",
    lambda m, c, a: (m.where(c, a, 2.5), m.where(c, 1, 0), m.where(c, a, a.float())),
    lambda r, d: (rb(r, 2, 3), ri(r, 2, 3)),
)
ints("where_single_argument", lambda m, c: m.where(c), lambda r, d: (rb(r, 3, 4),))
case(
    "clamp",
    lambda m, x: (
        m.clamp(x, -0.5, 0.5),
        x.clamp(min=0.2),
        x.clamp(max=-0.1),
        m.clip(x, -0.3, 0.3),
        m.clamp_min(x, 0.1),
        x.clamp_max(0.4),
        x.clip(max=0.25),
    ),
    lambda r, d: (rd(r, d, 3, 4),),
)
case(
    "clamp_tensor_bounds",
    lambda m, x, lo, hi: (m.clamp(x, lo, hi), x.clamp(min=lo)),
    lambda r, d: (rd(r, d, 3, 4), rd(r, d, 4, offset=-0.6), rd(r, d, 3, 1, offset=0.61)),
)
case(
    "clamp_inplace",
    lambda m, x: (
        (x * 1).clamp_(-0.5, 0.5),
        (x * 1).clamp_min_(0.0),
        (x * 1).clamp_max_(0.2),
        (x * 1).clip_(-0.1, 0.1),
    ),
    lambda r, d: (rd(r, d, 3, 4),),
)
ints("clamp_int", lambda m, x: (x.clamp(-2, 2), x.clamp(min=0.5)), lambda r, d: (ri(r, 3, 4),))
case(
    "lerp",
    lambda m, a, b, w: (m.lerp(a, b, 0.3), a.lerp(b, w), (a * 1).lerp_(b, 0.7)),
    lambda r, d: (rn(r, d, 2, 3), rn(r, d, 3), rp(r, d, 2, 3, low=0.0, high=1.0)),
)
ints(
    "isnan_isinf_isfinite",
    lambda m, x, i: (m.isnan(x), x.isinf(), m.isfinite(x), m.isinf(i), i.isfinite(), m.isnan(i)),
    lambda r, d: (np.array([1.0, np.nan, np.inf, -np.inf, 0.0], "float32"), ri(r, 3)),
)
ints(
    "allclose_equal",
    lambda m, a, b: (
        m.allclose(a, a + 1e-9),
        a.allclose(b),
        m.equal(a, a * 1),
        a.equal(b),
        m.allclose(a, b, atol=10.0),
    ),
    lambda r, d: (rn(r, "float64", 3), rn(r, "float64", 3)),
)

# reductions
_X3 = (2, 3, 4)
for _dim, _keep in [
    (None, False),
    (1, False),
    (-1, True),
    ((0, 2), False),
    ((0, 2), True),
    ((), False),
]:
    _id = f"dim={_dim}-keepdim={_keep}"
    case(
        f"sum[{_id}]",
        lambda m, x, d=_dim, k=_keep: m.sum(x, d, k) if d is not None else x.sum(),
        lambda r, d: (rn(r, d, *_X3),),
    )
    if _dim != ():
        case(
            f"reductions[{_id}]",
            lambda m, x, d=_dim, k=_keep: (
                x.sum(dim=d, keepdim=k),
                m.mean(x, dim=d, keepdim=k),
                x.var(dim=d, keepdim=k),
                m.std(x, dim=d, keepdim=k),
                x.amax(() if d is None else d, k),
                m.amin(x, () if d is None else d, k),
                m.prod(x, d, k) if isinstance(d, int) else x.prod(),
            ),
            lambda r, d: (rd(r, d, *_X3),),
        )
case(
    "logsumexp",
    lambda m, x: (m.logsumexp(x, 1), x.logsumexp((0, 2), keepdim=True), m.logsumexp(x * 50, -1)),
    lambda r, d: (rn(r, d, *_X3),),
)
case(
    "softmax_log_softmax_methods",
    lambda m, x: (
        x.softmax(-1),
        m.softmax(x, 1),
        x.log_softmax(0),
        m.log_softmax(x * 20, -1),
        x.softmax(1, dtype=m.float64),
    ),
    lambda r, d: (rn(r, d, *_X3),),
)
case(
    "type_as",
    lambda m, x, y: (x.type_as(y), y.type_as(x) * 2),
    lambda r, d: (rn(r, d, 3, 4), rn(r, np.float64 if d != np.float64 else np.float32, 3, 4)),
    grad=False,
)
case(
    "var_std_correction",
    lambda m, x: (
        x.var(1, correction=0),
        m.var(x, (0, 2), correction=2),
        x.std(unbiased=False),
        m.std(x, 1, keepdim=True, correction=0),
        x.var(0, unbiased=True),
        m.var(x),
    ),
    lambda r, d: (rn(r, d, *_X3),),
)
case(
    "var_mean_std_mean",
    lambda m, x: (
        *m.var_mean(x, 1),
        *m.std_mean(x, (0, 2), keepdim=True),
        *m.var_mean(x, correction=0),
    ),
    lambda r, d: (rn(r, d, *_X3),),
)
case(
    "prod",
    lambda m, x: (x.prod(), m.prod(x, 1), x.prod(-1, keepdim=True)),
    lambda r, d: (rnz(r, d, 3, 4),),
)
case(
    "prod_with_zeros",
    lambda m, x: (m.prod(x, 1), x.prod()),
    lambda r, d: (np.array([[0.0, 1.5, -2.0], [0.0, 0.0, 1.3], [1.1, -0.8, 1.2]], d),),
)
case(
    "max_min",
    lambda m, x: (
        x.max(),
        m.min(x),
        *m.max(x, 1),
        *x.min(dim=-1, keepdim=True),
        m.max(x, 0, True).values,
        x.min(0).indices,
    ),
    lambda r, d: (rd(r, d, 3, 4),),
)
case(
    "max_min_other",
    lambda m, a, b: (m.max(a, b), a.min(b)),
    lambda r, d: (rd(r, d, 3, 4), rd(r, d, 4, offset=0.061)),
)
case(
    "argmax_argmin",
    lambda m, x: (
        x.argmax(),
        m.argmin(x),
        m.argmax(x, 1),
        x.argmin(0, True),
        x.argmax(dim=-1, keepdim=True),
        m.argmax(x, keepdim=True),
    ),
    lambda r, d: (rd(r, d, 3, 4),),
    grad=False,
)
ints(
    "argmax_ties_and_nan",
    lambda m, x, y: (x.argmax(1), x.argmin(1), y.argmax(), y.max(0)),
    lambda r, d: (
        np.array([[1, 3, 3], [2, 2, 0]], "int64"),
        np.array([1.0, np.nan, 3.0, np.nan], "float32"),
    ),
)
ints(
    "all_any",
    lambda m, b, x, i: (
        b.all(),
        m.any(b),
        m.all(b, 1),
        b.any(0, keepdim=True),
        m.all(x),
        x.any(1),
        i.all(),
        m.any(i, (0, 1)),
    ),
    lambda r, d: (
        rb(r, 3, 4),
        np.array([[0.0, 1.0], [2.0, 3.0]], "float32"),
        ri(r, 2, 3, low=0, high=2),
    ),
)
case(
    "cumsum",
    lambda m, x: (x.cumsum(1), m.cumsum(x, -1), m.cumsum(x, 0, dtype=m.float64)),
    lambda r, d: (rn(r, d, *_X3),),
)
ints(
    "cumsum_int",
    lambda m, x, b: (x.cumsum(0), m.cumsum(b, 1), x.cumsum(1, dtype=m.float32)),
    lambda r, d: (ri(r, 3, 4, dtype="int8"), rb(r, 3, 4)),
)
case(
    "norm",
    lambda m, x: (
        m.norm(x),
        x.norm(1),
        m.norm(x, float("inf")),
        x.norm(3, dim=1),
        m.norm(x, dim=(0, 1), keepdim=True),
        x.norm("fro"),
    ),
    lambda r, d: (rd(r, d, 3, 4),),
)
ints(
    "count_nonzero",
    lambda m, x: (m.count_nonzero(x), x.count_nonzero(1), m.count_nonzero(x, (0, 1))),
    lambda r, d: (ri(r, 3, 4, low=-1, high=2),),
)
case(
    "mean_dtype",
    lambda m, x: (x.mean(dtype=m.float64), m.sum(x, 1, dtype=m.float64)),
    lambda r, d: (rn(r, d, 3, 4),),
)

# shapes and views
case(
    "reshape_view",
    lambda m, x: (
        x.reshape(4, 6),
        m.reshape(x, (-1, 3)),
        x.view(6, 4),
        x.view(-1),
        x.reshape(2, -1),
        x.view(2, 3, 4),
        x.permute(2, 0, 1).reshape(-1),
    ),
    lambda r, d: (rn(r, d, *_X3),),
)
case(
    "view_as_reshape_as",
    lambda m, x, y: (x.view_as(y), x.reshape_as(y.t())),
    lambda r, d: (rn(r, d, 3, 4), NoGrad(rn(r, d, 2, 6))),
)
case(
    "permute_transpose",
    lambda m, x: (
        x.permute(2, 0, 1),
        m.permute(x, (1, 2, 0)),
        x.transpose(0, 2),
        m.transpose(x, -1, 1),
        x.swapaxes(0, 1),
        m.swapdims(x, 1, 2),
        x.mT,
        x.permute(-1, 0, 1),
    ),
    lambda r, d: (rn(r, d, *_X3),),
)
case("t", lambda m, x, v: (x.t(), m.t(x), v.t(), x.T), lambda r, d: (rn(r, d, 2, 3), rn(r, d, 3)))
# a sparse COO round trip (of a matrix with zeros): to_sparse, to_sparse_coo, to_dense
case("to_sparse", lambda m, x: (x.to_sparse().to_dense(), (x * 2).to_sparse_coo().to_dense(),
                                x.to_dense()),
     lambda r, d: (rn(r, d, 3, 4) * rb(r, 3, 4),))
case(
    "squeeze_unsqueeze",
    lambda m, x: (
        x.squeeze(),
        m.squeeze(x, 1),
        x.squeeze(0),
        x.squeeze((1, 3)),
        x.squeeze(-1),
        x.unsqueeze(0),
        m.unsqueeze(x, -1),
        x.unsqueeze(2),
    ),
    lambda r, d: (rn(r, d, 2, 1, 3, 1),),
)
case(
    "flatten_unflatten",
    lambda m, x: (
        x.flatten(),
        m.flatten(x, 1),
        x.flatten(0, 1),
        m.flatten(x, -2, -1),
        x.unflatten(2, (2, 2)),
        m.unflatten(x, 1, (3, 1)),
    ),
    lambda r, d: (rn(r, d, *_X3),),
)
case(
    "expand_broadcast",
    lambda m, x, y: (
        x.expand(2, 3, 4),
        x.expand(-1, 4),
        x.expand_as(y),
        m.broadcast_to(x, (2, 3, 4)),
        *m.broadcast_tensors(x, y),
    ),
    lambda r, d: (rn(r, d, 3, 1), rn(r, d, 2, 3, 4)),
)
case(
    "repeat",
    lambda m, x: (x.repeat(2, 1), x.repeat(2, 1, 3), x.repeat((1, 2))),
    lambda r, d: (rn(r, d, 2, 3),),
)
case(
    "cat_stack",
    lambda m, a, b, c: (
        m.cat([a, b], 1),
        m.concat((a, c), dim=-1),
        m.concatenate([b, b], 0),
        m.stack([a, c], 0),
        m.stack([a, c], -1),
        m.hstack([a, b]),
        m.vstack([a, c]),
        m.cat([a]),
    ),
    lambda r, d: (rn(r, d, 2, 3), rn(r, d, 2, 2), rn(r, d, 2, 3)),
)
ints(
    "cat_promotes",
    lambda m, a, b: (m.cat([a, b]), m.stack([b, a])),
    lambda r, d: (ri(r, 3, dtype="int32"), rn(r, "float32", 3)),
)
case(
    "hstack_vstack_1d",
    lambda m, a, b: (m.hstack([a, b]), m.vstack([a, b])),
    lambda r, d: (rn(r, d, 3), rn(r, d, 3)),
)
case(
    "split_chunk",
    lambda m, x: (
        *x.split(2, 1),
        *m.split(x, [1, 3], -1),
        *x.chunk(2, 0),
        *m.chunk(x, 3, 2),
        *x.split([2, 1], dim=1),
    ),
    lambda r, d: (rn(r, d, 2, 3, 4),),
)
case(
    "narrow_select_unbind",
    lambda m, x: (
        x.narrow(1, 1, 2),
        m.narrow(x, 2, -2, 2),
        x.select(0, 1),
        m.select(x, 2, -1),
        *x.unbind(1),
        *m.unbind(x, -1),
    ),
    lambda r, d: (rn(r, d, 2, 3, 4),),
)
case(
    "flip",
    lambda m, x: (x.flip(0), m.flip(x, (0, 2)), x.flip(-1), m.flip(x, [1, 2])),
    lambda r, d: (rn(r, d, *_X3),),
)
case(
    "tril_triu",
    lambda m, x, y: (
        x.tril(),
        m.tril(x, 1),
        x.triu(-1),
        m.triu(y, 1),
        y.tril(-1),
        (x * 1).tril_(1),
        (y * 1).triu_(),
    ),
    lambda r, d: (rn(r, d, 3, 4), rn(r, d, 2, 4, 3)),
)
case(
    "clone_contiguous",
    lambda m, x: (x.clone(), m.clone(x.t()), x.t().contiguous(), x.contiguous()),
    lambda r, d: (rn(r, d, 3, 4),),
)
case(
    "movedim",
    lambda m, x: (x.movedim(0, 2), m.movedim(x, (0, 1), (2, 0)), m.movedim(x, -1, 0)),
    lambda r, d: (rn(r, d, *_X3),),
)
for _mode, _pads in [
    ("constant", (1, 2)),
    ("constant", (1, 0, 2, 1)),
    ("constant", (-1, 1)),
    ("reflect", (2, 1, 1, 2)),
    ("replicate", (2, 3, 1, 0)),
    ("circular", (1, 2, 2, 1)),
]:
    case(
        f"pad[{_mode}-{_pads}]",
        lambda m, x, p=_pads, mo=_mode: F(m).pad(x, p, mode=mo),
        lambda r, d: (rn(r, d, 1, 2, 3, 4),),
    )
case(
    "pad_value", lambda m, x: F(m).pad(x, (1, 1, 0, 2), value=-2.5), lambda r, d: (rn(r, d, 2, 3),)
)

# indexing
_GETITEM_KEYS = {
    "slices_steps": (slice(1, None), slice(None, None, 2)),
    "negative_slices": (slice(-2, None), slice(None, -1)),
    "int": 1,
    "int_negative": (-1, slice(None), 2),
    "none_ellipsis": (None, Ellipsis, 1),
    "ellipsis_none_middle": (Ellipsis, None, slice(1, 3)),
    "step_past_end": (slice(None, None, 3), slice(1, 100)),
    "list": [0, 1, 1],
}
for _key_name, _key in _GETITEM_KEYS.items():
    case(f"getitem[{_key_name}]", lambda m, x, k=_key: x[k], lambda r, d: (rn(r, d, *_X3),))
case(
    "getitem_int_tensors",
    lambda m, x, i, j: (
        x[i],
        x[:, j],
        x[i[:2], j[:2]],
        x[i, :, j],
        x[1, j],
        x[..., j],
        x[i[:2].reshape(2, 1), j[:2]],
    ),
    lambda r, d: (rn(r, d, *_X3), ix([1, 0, 1]), ix([2, 0, 1])),
)
case(
    "getitem_bool_masks",
    lambda m, x, b, b0: (x[b], x[:, b0], x[x > 0], x[1][b0]),
    lambda r, d: (
        rn(r, d, 3, 4),
        bm([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 0]]),
        bm([True, False, True, True]),
    ),
)
case("getitem_bool_scalar", lambda m, x: (x[True], x[False]), lambda r, d: (rn(r, d, 2, 3),))
case(
    "setitem_basic", lambda m, x, v: _setitems(x * 1, v), lambda r, d: (rn(r, d, 3, 4), rn(r, d, 4))
)
case(
    "setitem_advanced",
    lambda m, x, v, i: _setitems_advanced(x * 1, v, i),
    lambda r, d: (rn(r, d, 3, 4), rn(r, d, 2), ix([2, 0])),
)
ints("setitem_int_tensor", lambda m, x: _setitems_int(x.clone()), lambda r, d: (ri(r, 3, 4),))
case(
    "gather",
    lambda m, x, i: (
        m.gather(x, 1, i),
        x.gather(0, i[:2]),
        m.take_along_dim(x, i, 1),
        x.take_along_dim(i, dim=1),
    ),
    lambda r, d: (rn(r, d, 3, 4), ix([[0, 2], [1, 1], [2, 0]])),
)
case(
    "scatter",
    lambda m, x, s, i: (
        m.scatter(x, 1, i, s),
        x.scatter(0, i.t()[:1], s.t()[:1]),
        x.scatter(1, i, 2.5),
        (x * 1).scatter_(1, i, s),
    ),
    lambda r, d: (rn(r, d, 3, 4), rn(r, d, 3, 2), ix([[0, 2], [2, 1], [1, 0]])),
)
case(
    "scatter_add",
    lambda m, x, s, i: (
        m.scatter_add(x, 0, i, s),
        (x * 1).scatter_add_(0, i, s),
        x.scatter_add(1, i.t(), s.t()),
    ),
    lambda r, d: (rn(r, d, 3, 3), rn(r, d, 3, 3), ix([[0, 1, 0], [0, 0, 2], [2, 2, 1]])),
)
case(
    "index_select",
    lambda m, x, i: (m.index_select(x, 1, i), x.index_select(0, i[:2]), x.index_select(-1, i)),
    lambda r, d: (rn(r, d, 3, 4), ix([2, 0, 2])),
)
case(
    "index_add",
    lambda m, x, s, i: (
        m.index_add(x, 0, i, s),
        x.index_add(0, i, s, alpha=2.0),
        (x * 1).index_add_(0, i, s),
    ),
    lambda r, d: (rn(r, d, 3, 4), rn(r, d, 4, 4), ix([2, 0, 2, 1])),
)
case(
    "index_put",
    lambda m, x, v, i: (
        x.index_put((i,), v),
        x.index_put((i, i), v[:, 0], accumulate=True),
        (x * 1).index_put_((i,), v, accumulate=True),
    ),
    lambda r, d: (rn(r, d, 3, 3), rn(r, d, 2, 3), ix([2, 0])),
)
case(
    "masked_fill",
    lambda m, x, b, v: (
        m.masked_fill(x, b, 2.5),
        x.masked_fill(b[0], -1.0),
        x.masked_fill(b, v),
        (x * 1).masked_fill_(b, 0.5),
    ),
    lambda r, d: (rn(r, d, 3, 4), rb(r, 3, 4), NoGrad(np.array(1.5, d))),
)
case(
    "masked_select",
    lambda m, x, b: (m.masked_select(x, b), x.masked_select(b[0])),
    lambda r, d: (rn(r, d, 3, 4), rb(r, 3, 4)),
)
ints(
    "one_hot",
    lambda m, i: (F(m).one_hot(i, 5), F(m).one_hot(i), F(m).one_hot(i[0], 4)),
    lambda r, d: (ri(r, 2, 3, low=0, high=4),),
)
ints(
    "nonzero_argwhere",
    lambda m, x, b: (
        m.nonzero(x),
        x.nonzero(as_tuple=True),
        b.nonzero(),
        m.argwhere(x),
        x.argwhere(),
    ),
    lambda r, d: (ri(r, 3, 4, low=-1, high=2), rb(r, 5)),
)
case(
    "embedding",
    lambda m, w, i: F(m).embedding(i, w),
    lambda r, d: (rn(r, d, 5, 3), ix([[1, 4], [1, 0]])),
)

# linear algebra
for _a, _b in [
    ((2, 3), (3, 4)),
    ((2, 1, 2, 3), (3, 3, 2)),
    ((3,), (3, 2)),
    ((2, 3), (3,)),
    ((3,), (3,)),
    ((2, 2, 3), (3,)),
    ((3,), (2, 3, 2)),
    ((4, 2, 3), (3, 2)),
]:
    case(
        f"matmul[{_a}@{_b}]",
        lambda m, a, b: (m.matmul(a, b), a @ b, a.matmul(b), b.__rmatmul__(a)),
        lambda r, d, sa=_a, sb=_b: (rn(r, d, *sa), rn(r, d, *sb)),
    )
case(
    "mm_bmm_mv_dot_outer",
    lambda m, a, b, v, w: (
        m.mm(a, b),
        a.mm(b),
        m.bmm(a[None], b[None]),
        a[None].bmm(b[None]),
        m.mv(a, v),
        a.mv(v),
        m.dot(v, v),
        v.dot(v),
        m.outer(v, w),
        v.outer(w),
    ),
    lambda r, d: (rn(r, d, 2, 3), rn(r, d, 3, 4), rn(r, d, 3), rn(r, d, 2)),
)

# convolution and pooling
for _kw in [
    {},
    {"stride": 2, "padding": 1},
    {"stride": (2, 1), "padding": (0, 2)},
    {"dilation": 2, "padding": 2},
    {"dilation": (2, 1)},
    {"groups": 2},
    {"padding": "same"},
    {"padding": "same", "dilation": 2},
    {"padding": "valid"},
]:
    _groups = _kw.get("groups", 1)
    case(
        f"conv2d[{_kw}]",
        lambda m, x, w, b, kw=_kw: F(m).conv2d(x, w, b, **kw),
        lambda r, d, g=_groups: (
            rn(r, d, 2, 4, 6, 5),
            rn(r, d, 4, 4 // g, 3, 3),
            rn(r, d, 4),
        ),
    )
case(
    "conv2d_even_kernel_same",
    lambda m, x, w: F(m).conv2d(x, w, padding="same"),
    lambda r, d: (rn(r, d, 1, 2, 5, 4), rn(r, d, 3, 2, 2, 4)),
)
case(
    "conv2d_unbatched_no_bias",
    lambda m, x, w: m.conv2d(x, w, stride=2),
    lambda r, d: (rn(r, d, 2, 5, 5), rn(r, d, 3, 2, 3, 3)),
)
for _kw in [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 2, "stride": 2, "ceil_mode": True},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": (2, 3), "stride": (1, 2)},
    {"kernel_size": 2, "dilation": 2},
]:
    case(
        f"max_pool2d[{_kw}]",
        lambda m, x, kw=_kw: F(m).max_pool2d(x, **kw),
        lambda r, d: (rd(r, d, 2, 2, 5, 6),),
    )
case("max_pool2d_unbatched", lambda m, x: F(m).max_pool2d(x, 2), lambda r, d: (rd(r, d, 2, 4, 4),))
for _kw in [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
    {"kernel_size": 2, "stride": 2, "ceil_mode": True},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
    {"kernel_size": (2, 3), "stride": (1, 2), "divisor_override": 5},
]:
    case(
        f"avg_pool2d[{_kw}]",
        lambda m, x, kw=_kw: F(m).avg_pool2d(x, **kw),
        lambda r, d: (rn(r, d, 2, 2, 5, 6),),
    )
case(
    "avg_pool2d_unbatched", lambda m, x: F(m).avg_pool2d(x, 2, 1), lambda r, d: (rn(r, d, 2, 4, 4),)
)

# random ops where the outcome is certain
case(
    "dropout_deterministic",
    lambda m, x: (F(m).dropout(x, 0.5, training=False), F(m).dropout(x, 0.0), F(m).dropout(x, 1.0)),
    lambda r, d: (rn(r, d, 3, 4),),
)
case(
    "bernoulli_certain",
    lambda m, p: (m.bernoulli(p), p.bernoulli(), p.bernoulli(1.0), (p * 1).bernoulli_(0.0)),
    lambda r, d: (NoGrad(np.array([[0.0, 1.0], [1.0, 0.0]], d)),),
    grad=False,
)

# dtype conversions, fills, copies, new tensors
ints(
    "conversions",
    lambda m, x: (
        x.float(),
        x.double(),
        x.half(),
        x.bfloat16().float(),  # (numpy() of a bfloat16 tensor is refused, as torch refuses it)
        x.int(),
        x.long(),
        x.bool(),
        x.short(),
        x.char(),
        x.abs().byte(),
        x.to(m.int32),
        x.to(dtype=m.float64),
        x.type(m.int16),
        x.to(x.int()),
        x.float().to("cpu"),
        x.cpu(),
    ),
    lambda r, d: (rn(r, "float32", 3, 4) * 5,),
)
case(
    "conversions_grad",
    lambda m, x: (x.float() * 2, x.double(), x.to(m.float32)),
    lambda r, d: (rn(r, d, 3),),
)
case("fill_zero_copy", lambda m, x, y: _fills(x * 1, y), lambda r, d: (rn(r, d, 3, 4), rn(r, d, 4)))
ints(
    "copy_casts",
    lambda m, x, i: (x.clone().copy_(i), i.clone().copy_(x[1])),
    lambda r, d: (rn(r, "float32", 2, 3) * 4, ri(r, 3, dtype="int32")),
)
ints(
    "new_tensors",
    lambda m, x: (
        x.new_zeros(2, 3),
        x.new_ones((2,)),
        x.new_full((2, 2), 7),
        x.new_tensor([1, 2]),
        x.new_zeros(3, dtype=m.float64),
        x.new_empty(2, 3).shape,
        x.new_ones(2, dtype=m.bool),
    ),
    lambda r, d: (ri(r, 3, dtype="int32"),),
)
ints(
    "uniform_normal_degenerate",
    lambda m, x: (x.clone().uniform_(2.0, 2.0), x.clone().normal_(1.5, 0.0)),
    lambda r, d: (rn(r, "float32", 3),),
)

# edge cases: 0-d and empty tensors, ties, boundaries, special values, views written in place
case(
    "zero_dim",
    lambda m, x: (
        x.sum(),
        x.sum(0),
        x.mean(-1),
        *m.max(x, 0),
        x.unsqueeze(0),
        x.reshape(1, 1),
        x.expand(2, 3),
        x.cumsum(0),
        x.argmax(),
        m.stack([x, x]),
        x.repeat(2),
        x * 2,
        x.flatten(),
        x[None],
        x[...],
        x.amax(),
        x.t(),
    ),
    lambda r, d: (np.array(1.5, d),),
)
case(
    "empty",
    lambda m, x: (
        x.sum(),
        x.sum(0),
        x.mean(1),
        x.prod(0),
        x.cumsum(0),
        m.cat([x, x], 0),
        x.reshape(3, 0),
        x * 2,
        x.amax(1),
        x.t(),
    ),
    lambda r, d: (np.zeros((0, 3), d),),
)
ints(
    "empty_int_and_bool",
    lambda m, x, b: (
        x.sum(),
        b.all(),
        b.any(),
        x.prod(),
        m.cat([x, m.tensor([], dtype=m.int64)]),
        x.nonzero(),
    ),
    lambda r, d: (np.zeros(0, "int64"), np.zeros(0, bool)),
)
case(
    "ties_amax_max",
    lambda m, x: (x.amax(1), x.max(), m.amin(x, 0), x.min()),
    lambda r, d: (np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.5], [0.5, 3.0, 3.0]], d),),
)
case(
    "ties_maximum_minimum",
    lambda m, a, b: (m.maximum(a, b), m.minimum(a, b), m.max(a, b)),
    lambda r, d: (np.array([1.0, 2.0, 3.0], d), np.array([1.0, 0.0, 3.0], d)),
)
case(
    "ties_max_dim",
    lambda m, x: (*m.max(x, 1), *x.min(0)),
    lambda r, d: (np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.5]], d),),
)
case(
    "boundaries",
    lambda m, x: (
        x.clamp(-1.0, 1.0),
        m.relu(x),
        x.abs(),
        x.sign(),
        x**2,
        m.maximum(x, m.zeros_like(x)),
    ),
    lambda r, d: (np.array([-1.0, 0.0, 1.0, 2.0], d),),
)
case(
    "pow_at_zero",
    lambda m, x, e: (x**2, x**0, m.pow(x, e), x**1),
    lambda r, d: (np.array([0.0, 1.5, 0.0], d), np.array([2.0, 0.5, 0.0], d)),
)
case(
    "norm_of_zero_rows",
    lambda m, x: (x.norm(dim=1), m.norm(x, 1, dim=1)),
    lambda r, d: (np.array([[0.0, 0.0], [3.0, 4.0]], d),),
)
case(
    "round_half_even",
    lambda m, x: (x.round(), m.round(x, decimals=-1), x.round(decimals=1)),
    lambda r, d: (np.array([0.5, 1.5, 2.5, -0.5, -2.5, 15.0, 25.0, 0.25], d),),
)
case(
    "special_values",
    lambda m, x: (
        x.exp(),
        m.sigmoid(x),
        x.tanh(),
        x.relu(),
        x.abs(),
        x.floor(),
        m.sign(x),
        x.clamp(-1, 1),
        x * 0,
        x.sum(),
        x.amax(),
        x.argmax(),
        m.logsumexp(x, 0),
        x.cumsum(0),
    ),
    lambda r, d: (NoGrad(np.array([np.inf, -np.inf, 1.0, np.nan, -0.0], d)),),
    grad=False,
)
case(
    "logsumexp_infinite",
    lambda m, x: (m.logsumexp(x, 1), x.logsumexp(0)),
    lambda r, d: (NoGrad(np.array([[-np.inf, -np.inf], [np.inf, 1.0], [0.0, -np.inf]], d)),),
    grad=False,
)
case(
    "division_by_zero",
    lambda m, x, z: (
        x / z,
        x // z,
        x % z,
        m.div(x, z, rounding_mode="trunc"),
        m.remainder(x, 0.0),
        m.floor_divide(x, 0.0),
    ),
    lambda r, d: (NoGrad(np.array([1.0, -1.0, 0.0], d)), NoGrad(np.zeros(3, d))),
    grad=False,
)
# no degrees of freedom left: torch's backward there is its own (not max(n - correction, 0))
case(
    "var_small_counts",
    lambda m, x: (
        x[:1].var(),
        x.detach().var(correction=5),
        x[:1].std(0),
        m.var(x, 0, correction=0),
        x.detach().var(correction=3),
    ),
    lambda r, d: (rn(r, d, 3),),
)
ints(
    "small_ints_wrap",
    lambda m, a, b: (a + b, a * 3, b - a, a + 100, b * 2),
    lambda r, d: (np.array([250, 7, 128], "uint8"), np.array([127, -128, 5], "int8")),
)
case(
    "float16",
    lambda m, x, y: (
        x + y,
        x * 2.5,
        x.exp(),
        x.sum(1),
        x.mean(),
        x.float(),
        m.where(x > 0, x, y),
        x.abs().sqrt(),
        m.cat([x, y]),
    ),
    lambda r, d: (rn(r, d, 2, 3), rn(r, d, 2, 3)),
    dtypes=("float16",),
    grad=False,
)
case(
    "noncontiguous_inputs",
    lambda m, x, y: (
        x.t() + y,
        x.t().exp(),
        x.t().sum(0),
        x.t() @ x,
        x.t().reshape(-1),
        x[:, ::2].cumsum(1),
        x.t()[1:, None],
        x.t().flip(0).tril(),
        x.expand(2, 3, 4).sum((0, 2)),
    ),
    lambda r, d: (rn(r, d, 3, 4), rn(r, d, 4, 3)),
)
case(
    "inplace_on_views",
    lambda m, x, b: _inplace_views(x * 1, b),
    lambda r, d: (rn(r, d, 3, 4), rn(r, d, 3)),
)
case(
    "getitem_more",
    lambda m, x, i: (
        x[i],
        x[-1],
        x[:, -2:],
        x[1:2, None, ..., ::3],
        x[[True, False, True]],
        x[i][:, 1],
        x[:, i.reshape(1, 2)],
        x[m.tensor(1)],
        x[m.tensor([[0], [2]]), m.tensor([1, 3])],
    ),
    lambda r, d: (rn(r, d, 3, 4), ix([-1, 0])),
)
case(
    "getitem_then_setitem",
    lambda m, x, v, i: _get_set(x * 1, v, i),
    lambda r, d: (rn(r, d, 4, 3), rn(r, d, 3), ix([3, 0])),
)
case(
    "modify_input_whose_value_backward_does_not_need",
    lambda m, x: _modify_after_scalar_mul(x * 1),
    lambda r, d: (rn(r, d, 3),),
)
case(
    "augmented_setitem",
    lambda m, x, v, i: _augmented_setitem(x * 1, v, i),
    lambda r, d: (rn(r, d, 4, 3), rn(r, d, 3), ix([3, 0])),
)
ints(
    "matmul_int",
    lambda m, a, b: (a @ b, m.matmul(a[0], b), a.mm(b)),
    lambda r, d: (ri(r, 2, 3), ri(r, 3, 2)),
)
ints(
    "shape_ops_int_bool",
    lambda m, x, b: (
        x.flip(0),
        x.tril(),
        b.triu(1),
        x.repeat(2, 1),
        m.cat([x, x], 1),
        x.t(),
        b.reshape(-1),
        x[1:, ::2],
        m.stack([b, b]),
        x.expand(2, 3, 4),
        F(m).pad(x, (1, 1), value=7),
    ),
    lambda r, d: (ri(r, 3, 4), rb(r, 3, 4)),
)
ints(
    "int_reductions",
    lambda m, u, i8: (
        u.sum(),
        u.prod(),
        u.cumsum(0),
        i8.sum(0),
        u.max(),
        i8.amin(),
        i8.argmin(),
        u.float().mean(),
    ),
    lambda r, d: (np.array([200, 100, 3], "uint8"), np.array([[-100, 50], [-100, 3]], "int8")),
)
ints(
    "equal_allclose_edge",
    lambda m, a, b: (
        m.equal(a, a[:2]),
        m.allclose(a, a, equal_nan=True),
        m.allclose(a, b),
        a.equal(a),
    ),
    lambda r, d: (np.array([1.0, np.nan, 3.0], "float32"), np.array([1.0, 2.0, 3.0], "float32")),
)
case(
    "chunk_uneven",
    lambda m, x: (*x.chunk(3), *m.chunk(x, 4, 1), *x.split(3, 1)),
    lambda r, d: (rn(r, d, 4, 5),),
)
for _kw in [
    {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2},
    {"kernel_size": 3, "stride": 3, "padding": 1, "ceil_mode": True},
    {"kernel_size": (3, 2), "stride": (2, 3), "padding": (1, 1), "ceil_mode": True},
]:
    case(
        f"max_pool2d_more[{_kw}]",
        lambda m, x, kw=_kw: F(m).max_pool2d(x, **kw),
        lambda r, d: (rd(r, d, 1, 2, 7, 6),),
    )
for _kw in [
    {"kernel_size": 3, "stride": 3, "padding": 1, "ceil_mode": True},
    {"kernel_size": 2, "stride": 3, "padding": 1, "ceil_mode": True, "count_include_pad": False},
    {"kernel_size": 3, "padding": 1, "divisor_override": 2},
]:
    case(
        f"avg_pool2d_more[{_kw}]",
        lambda m, x, kw=_kw: F(m).avg_pool2d(x, **kw),
        lambda r, d: (rn(r, d, 1, 2, 7, 6),),
    )
for _mode, _shape, _pads in [
    ("reflect", (2, 5), (2, 3)),
    ("replicate", (1, 2, 4), (3, 1)),
    ("circular", (1, 1, 3, 4), (0, 3, 2, 0)),
    ("constant", (2, 3, 4), (1, 0, 0, 2, 1, 1)),
]:
    case(
        f"pad_more[{_mode}-{_shape}]",
        lambda m, x, p=_pads, mo=_mode: F(m).pad(x, p, mode=mo),
        lambda r, d, s=_shape: (rn(r, d, *s),),
    )

ints(
    "view_as_other_dtype",
    lambda m, x, i: (x.view(m.int32), i.view(m.float32), x.view(m.float32), x.t().view(m.int32)),
    lambda r, d: (rn(r, "float32", 2, 3), ri(r, 4, dtype="int32")),
)
ints(
    "reductions_of_ints_to_float_and_bytes",
    lambda m, i, u: (
        m.logsumexp(i, 0),
        i.logsumexp(1, keepdim=True),
        u.all(),
        m.any(u, 1),
        u.all(0, keepdim=True),
    ),
    lambda r, d: (ri(r, 2, 3), ri(r, 2, 3, low=0, high=2, dtype="uint8")),
)
case(
    "zero_dim_indexing",
    lambda m, x, i: (
        x.index_select(0, i),
        x.index_select(-1, i[0]),
        m.gather(x, 0, i[0]),
        m.nonzero(x, as_tuple=True),
        x.nonzero(),
    ),
    lambda r, d: (rn(r, d), ix([0])),
)
case(
    "norm_p0_and_stacks_of_0d",
    lambda m, x, s: (
        x.norm(0),
        m.norm(x, 0, dim=1),
        m.hstack([s, s * 2]),
        m.vstack([s, s]),
        m.vstack([x[0], x[1]]),
        m.take_along_dim(x, m.tensor([5, 0])),
    ),
    lambda r, d: (np.array([[0.0, 1.5, -2.0], [0.0, 0.0, 3.0]], d), rn(r, d)),
)
case(
    "var_mean_std_mean_positional_unbiased",
    lambda m, x: (*m.var_mean(x, False), *m.std_mean(x, True), *m.var_mean(x, 0, False)),
    lambda r, d: (rn(r, d, 3, 4),),
)

case(
    "zero_spread_and_zero_base",
    lambda m, x, y: (x.std(), m.std(x, 0, keepdim=True), 0.0**y, x.norm()),
    lambda r, d: (np.ones(3, d), np.array([0.0, 2.0, -1.0], d)),
)
case(
    "clamp_tensor_bound_ties",
    lambda m, x, lo, hi: (x.clamp(min=lo), m.clamp(x, max=hi), x.clamp(lo, hi)),
    lambda r, d: (np.array([1.0, 2.0, 3.0], d), np.array([2.0, 2.0, 2.0], d), np.array(3.0, d)),
)


def _inplace_views(y, b):
    y.t().mul_(2)
    y[:, 1:3].add_(b[:2])
    y.view(-1)[::5].zero_()
    y[0].unsqueeze(0).sub_(b[0])
    column = y[:, 3]
    column.mul_(b)
    return y, column, y.sum(0)


def _get_set(x, v, i):
    x[i] = x[1:3].exp() + v
    x[1] = x[2].exp()
    x[:, 0] -= x[:, 1]
    return x


def _augmented_setitem(x, v, i):
    x[i] += v
    return x


def _modify_after_scalar_mul(y):
    z = y * 2  # needs no saved value of y: torch's MulBackward0 keeps none
    w = y * y.detach().clone()  # saves the clone (its own version), not y
    y.add_(1)
    return z, w, y


def _setitems(x, v):
    x[0] = v
    x[1:, ::2] = 0.5
    x[..., -1] = v[:3]
    x[None, 2, 1] = -1.0
    return x


def _setitems_advanced(x, v, i):
    x[i, 1] = v
    x[x > 0.5] = 0.25
    x[:, i] = v[:1]
    x[[1]] = 3.0
    return x


def _setitems_int(x):
    x[0] = 7
    x[:, 1] = 2.9  # a float written into an int tensor truncates
    x[x < 0] = 0
    x[..., [0, 2]] = -3
    return x


def _fills(x, y):
    a = (x * 1).fill_(2.5)
    b = (x * 1).zero_()
    c = (x * 1).copy_(y)
    d = x * 1
    d[1].fill_(-1.0)
    return a, b, c, d


# -- issue 16: scans, sorting-based and scatter ops --


def _with_zeros(r, d, *shape):
    x = r.standard_normal(shape)
    x[..., 2] = 0.0  # one zero in every row
    x[0, ..., 4] = 0.0  # two in the first
    return x.astype(d)


case(
    "cumprod",
    lambda m, x, z: (m.cumprod(x, 1), x.cumprod(dim=0), m.cumprod(z, -1), z.cumprod(0),
                     m.cumprod(x, 0, dtype=m.float64)),
    lambda r, d: (rn(r, d, 3, 5), _with_zeros(r, d, 3, 6)),
)
case(
    "cumprod_in_place",
    lambda m, x: ((x * 1).cumprod_(1), (x * 1).cumsum_(0)),
    lambda r, d: (_with_zeros(r, d, 2, 5),),
)
ints(
    "cumprod_ints",
    lambda m, x, b: (m.cumprod(x, 1), m.cumprod(b, 0), x.int().cumprod(0), m.cumprod(x[0, 0], 0)),
    lambda r, d: (ri(r, 3, 4), rb(r, 3, 4)),
)
case(
    "logcumsumexp",
    lambda m, x, w: (m.logcumsumexp(x, 1), x.logcumsumexp(0), m.logcumsumexp(w, -1),
                     m.logcumsumexp(x[0, 0], 0)),
    lambda r, d: (rn(r, d, 3, 5),
                  # far apart: exp of each overflows or underflows, their log-sum does not
                  np.array([[-1000.0, 0.0, 2.0, -3000.0], [800.0, 799.0, -np.inf, 900.0]], d)),
)


case(
    "median_nanmedian",
    lambda m, x: (m.median(x), x.median(1), m.median(x, 0, keepdim=True), x.nanmedian(),
                  m.nanmedian(x, dim=-1), x.median(dim=-2).indices, m.median(x[0], 0).values,
                  m.median(x[0, 0]), m.median(x[0, 0], 0)),
    lambda r, d: (rd(r, d, 4, 5),),
)
case(
    "median_of_ties_shares_the_gradient",
    lambda m, x: (m.median(x), x.nanmedian()),
    lambda r, d: (np.array([[1.0, 2.0, 2.0], [3.0, 2.0, 0.5]], d),),
)
case(
    "median_nanmedian_with_nan",
    # the index of an all-NaN row's nanmedian is PyTorch's nth_element's choice: values only
    lambda m, x: (m.median(x, 1), m.nanmedian(x[:2], 1), m.nanmedian(x, 1).values, x.median(),
                  x.nanmedian(), m.nanmedian(x[2]), x.nanmedian(0, True)),
    lambda r, d: (np.array([[1.0, np.nan, 2.0, np.nan, 0.5], [1.0, 2.0, 3.0, 4.0, 5.0],
                            [np.nan, np.nan, np.nan, np.nan, np.nan]], d),),
    grad=False,
)
ints(
    "median_mode_ints",
    lambda m, x: (m.median(x), m.median(x, 1).values, x.nanmedian(), m.mode(x, 1), x.mode(0),
                  m.mode(x, keepdim=True), m.mode(x[0, 0])),
    lambda r, d: (ri(r, 4, 9, low=0, high=4),),
)
case(
    "mode",
    lambda m, x: (m.mode(x), x.mode(0).values, m.mode(x, -1, keepdim=True).values),
    # repeats, several values equally frequent
    lambda r, d: (np.array([[1.5, 2.5, 1.5, 2.5, 0.5, 2.5], [0.5, 0.5, 1.5, 1.5, 3.5, 2.5],
                            [3.5, 0.5, 0.5, 3.5, 1.5, 1.5]], d),),
)
ints(
    "unique",
    lambda m, x: (m.unique(x), x.unique(return_inverse=True), m.unique(x, return_counts=True),
                  m.unique(x, sorted=False, return_inverse=True, return_counts=True),
                  m.unique(x[:, :2], dim=0, return_inverse=True, return_counts=True),
                  x[:2].unique(dim=1, return_counts=True), m.unique(x, dim=-1),
                  m.unique(x[0, 0])),
    lambda r, d: (np.array([[3, 1, 2, 1], [3, 1, 0, 0], [2, 2, 3, 3], [3, 1, 5, 1]]),),
)
ints(
    "unique_consecutive",
    lambda m, x: (m.unique_consecutive(x[0]), x.unique_consecutive(return_inverse=True),
                  m.unique_consecutive(x, return_counts=True, return_inverse=True),
                  m.unique_consecutive(x, dim=0, return_inverse=True, return_counts=True),
                  x.unique_consecutive(dim=1, return_counts=True)),
    lambda r, d: (np.array([[1, 1, 2, 2, 3, 1, 1], [1, 1, 2, 2, 3, 1, 1], [0, 0, 2, 2, 3, 1, 4]]),),
)
case(
    "unique_floats_with_nan",
    lambda m, x: (m.unique(x, return_inverse=True, return_counts=True),
                  m.unique_consecutive(x, return_counts=True)),
    lambda r, d: (np.array([2.5, 1.0, np.nan, 1.0, 1.0, np.nan, -0.5], d),),
    grad=False,
)
case(
    "searchsorted_bucketize",
    lambda m, s, v, b: (m.searchsorted(s, v), m.searchsorted(s, v, right=True),
                        m.searchsorted(s, v, side="right", out_int32=True),
                        m.searchsorted(s[1], v), m.searchsorted(s[0], 0.25),
                        m.searchsorted(s[0], 0.25, side="right"),
                        m.searchsorted(s[1], s[1]), m.searchsorted(s[1], s[1], right=True),
                        m.searchsorted(b, v[0], sorter=m.argsort(b)),
                        m.searchsorted(s, s, side="left"),
                        m.bucketize(v, s[0]), m.bucketize(v, s[0], right=True),
                        m.bucketize(0.25, s[1], out_int32=True)),
    lambda r, d: (np.sort(np.round(r.uniform(-2, 2, (3, 6)), 1), axis=1).astype(d),
                  np.round(r.uniform(-2.5, 2.5, (3, 4)), 1).astype(d),
                  r.permutation(8).astype(d) / 4 - 1),
    grad=False,
)
ints(
    "searchsorted_ints_and_nan",
    lambda m, s, v, f, fv: (m.searchsorted(s, v), m.searchsorted(s, v, right=True),
                            m.searchsorted(s, 2), m.searchsorted(s, fv),
                            m.searchsorted(f, fv), m.searchsorted(f, fv, right=True),
                            m.searchsorted(f[None].expand(2, 4).contiguous(), fv[None, :2]
                                           .expand(2, 2).contiguous(), right=True)),
    lambda r, d: (np.array([0, 2, 2, 2, 5, 9]), np.array([[2, -1, 10], [5, 3, 9]]),
                  np.array([0.5, 1.5, np.nan, np.nan]), np.array([np.nan, 1.0, 1.5, 3.0])),
)
ints(
    "bincount",
    lambda m, x, w, iw: (m.bincount(x), x.bincount(), m.bincount(x, w), m.bincount(x, iw),
                         m.bincount(x, minlength=12), x.bincount(w.float(), 3),
                         m.bincount(x[:0]), m.bincount(x[:0], minlength=2)),
    lambda r, d: (np.array([1, 4, 1, 0, 7, 4, 4]), r.standard_normal(7), np.arange(7)),
)
case(
    "histc",
    lambda m, x: (m.histc(x), x.histc(bins=7), m.histc(x, 4, min=-1, max=1),
                  m.histc(x[0, :1], 3), m.histc(x, 5, min=0.5, max=0.5)),
    lambda r, d: (np.round(r.uniform(-2, 2, (3, 20)), 2).astype(d) + 0.003,),
    grad=False,
)


def _scatter_inputs(r, d, zeros=False):
    """(input, index, src): src larger than index (PyTorch differentiates only the index's
    shape of it); rounded values, so that
    ties (for amax, amin) and, with zeros, zeros (for prod) meet in one place."""
    x = np.round(r.uniform(-2, 2, (3, 5)) * 2) / 2
    src = np.round(r.uniform(-2, 2, (5, 6)) * 2) / 2
    if not zeros:
        x[x == 0], src[src == 0] = 0.25, -0.75
    return x.astype(d), r.integers(0, 3, (4, 5)), src.astype(d)


for _reduce in ("sum", "prod", "mean", "amax", "amin"):
    case(
        f"scatter_reduce_{_reduce}",
        lambda m, x, i, s, reduce=_reduce: (
            m.scatter_reduce(x, 0, i, s[:4, :5], reduce),
            x.scatter_reduce(0, i, s[:4, :5], reduce, include_self=False),
            x.scatter_reduce(-1, i[:2, :3].flip(1), s[:2, :3], reduce=reduce),
            m.scatter_reduce(x, 1, i[:3, :2], s[:3, :2], reduce, include_self=False)),
        lambda r, d: _scatter_inputs(r, d, zeros=True),
    )
case(
    "scatter_reduce_in_place_and_scatter_with_reduce",
    lambda m, x, i, s: (
        (x * 1).scatter_reduce_(0, i, s[:4, :5], "amax"),
        (x * 1).scatter_reduce_(1, i[:3, :2], s[:3, :2], "mean", include_self=False),
        m.scatter(x.detach(), 0, i, s.detach(), reduce="add"),
        x.detach().scatter(-2, i, s.detach(), reduce="multiply"),
        x.detach().scatter_(0, i, 2.5, reduce="multiply"),
        x.detach().scatter(1, i[:3, :2], value=-1.5, reduce="add")),
    lambda r, d: _scatter_inputs(r, d),
)
ints(
    "scatter_reduce_ints",
    lambda m, x, i, s: tuple(
        f(reduce)
        for reduce in ("sum", "prod", "mean", "amax", "amin")
        for f in (lambda reduce: m.scatter_reduce(x, 0, i, s, reduce),
                  lambda reduce: x.scatter_reduce(0, i, s, reduce, include_self=False))),
    lambda r, d: (ri(r, 3, 5), r.integers(0, 3, (4, 5)), ri(r, 5, 6, low=-9, high=9)),
)
case(
    "gather_scatter_index_select_negative_dims",
    lambda m, x, i, s: (
        m.gather(x, -1, i[:3, :2]), x.scatter(-2, i, s[:4, :5]),
        m.scatter_add(x, -2, i, s[:4, :5]),
        x.index_select(-1, i[0]), m.take_along_dim(x, i[:3, :2], dim=-1),
        m.take_along_dim(x, i[:1, :2], 1), x.take_along_dim(i[:3, :1], dim=-2),
        m.take_along_dim(x, i)),
    lambda r, d: _scatter_inputs(r, d),
)
case(
    "diag_embed_trace_unfold",
    lambda m, x: (m.diag_embed(x), x.diag_embed(1), m.diag_embed(x, -2, 0, 2),
                  m.diag_embed(x[0], offset=1, dim1=-1, dim2=0), m.trace(x), x[:, :2].trace(),
                  x.unfold(1, 2, 1), x.unfold(-1, 3, 2), x.unfold(0, 3, 1), x[0, 0].unfold(0, 1, 1),
                  x.unfold(1, 0, 1)),
    lambda r, d: (rn(r, d, 3, 4),),
)
ints(
    "trace_and_count_nonzero_ints",
    lambda m, x: (m.trace(x), x.int().trace(), m.count_nonzero(x), x.count_nonzero(0),
                  m.count_nonzero(x, dim=(0, 1)), x.count_nonzero(-1), m.diag_embed(x)),
    lambda r, d: (ri(r, 3, 4, low=-1, high=2),),
)
case(
    "cdist",
    lambda m, a, b: (m.cdist(a, b), m.cdist(a, b, p=1), m.cdist(a, b, 3.5),
                     m.cdist(a, b, p=float("inf")), m.cdist(a[0], b[0], 0.0),
                     m.cdist(a[:1], b), m.cdist(a, a)),
    lambda r, d: (rn(r, d, 2, 5, 3), rn(r, d, 2, 4, 3)),
)
case(
    "cosine_similarity_pairwise_distance",
    lambda m, a, b, z: (F(m).cosine_similarity(a, b), m.cosine_similarity(a, b, dim=-1),
                        F(m).cosine_similarity(a, b[0], 0), m.cosine_similarity(a, z, eps=1e-3),
                        F(m).pairwise_distance(a, b), m.pairwise_distance(a, b, p=1, eps=0.0),
                        F(m).pairwise_distance(a, b[0], 3.0, keepdim=True),
                        m.pairwise_distance(a[0], z[0], p=float("inf"))),
    lambda r, d: (rn(r, d, 4, 3), rn(r, d, 4, 3), np.zeros((4, 3), d)),
)
ints(
    "pairwise_distance_of_ints",
    lambda m, a, b: (F(m).pairwise_distance(a.double(), b.double()),
                     m.cosine_similarity(a.double(), b)),
    lambda r, d: (ri(r, 3, 4), ri(r, 3, 4)),
)

def _rejected_like_torch(fn):
    """fn raises with torch, and raises with ember an EmberError of the same builtin kind."""
    with pytest.raises(Exception) as torch_error:
        fn(torch)
    kind = next(
        k
        for k in (IndexError, NotImplementedError, TypeError, ValueError, RuntimeError)
        if isinstance(torch_error.value, k)
    )
    with pytest.raises(Exception) as ember_error:
        fn(ember)
    assert isinstance(ember_error.value, ember.EmberError), repr(ember_error.value)
    assert isinstance(ember_error.value, kind), (
        f"torch raises {type(torch_error.value).__name__}, ember "
        f"{type(ember_error.value).__name__}: {ember_error.value}"
    )


REJECTED_SCANS_SORTS_SCATTERS = {
    "logcumsumexp_of_int": lambda m: m.logcumsumexp(m.tensor([1, 2]), 0),
    "cumprod_dim_out_of_range": lambda m: m.ones(2, 3).cumprod(2),
    "median_of_empty_dim": lambda m: m.median(m.ones(2, 0), 1),
    "mode_of_empty_dim": lambda m: m.mode(m.ones(2, 0), 1),
    "nanmedian_dim_out_of_range": lambda m: m.ones(2).nanmedian(1),
    "unique_dim_out_of_range": lambda m: m.unique(m.ones(2, 3), dim=2),
    "searchsorted_batch_mismatch": lambda m: m.searchsorted(m.ones(1, 3), m.ones(2, 2)),
    "searchsorted_scalar_into_2d": lambda m: m.searchsorted(m.ones(2, 3), 2.0),
    "searchsorted_side_against_right": lambda m: m.searchsorted(m.ones(3), m.ones(2),
                                                                right=True, side="left"),
    "searchsorted_unknown_side": lambda m: m.searchsorted(m.ones(3), m.ones(2), side="middle"),
    "searchsorted_sorter_of_other_size": lambda m: m.searchsorted(
        m.ones(3), m.ones(2), sorter=m.tensor([0, 1])),
    "bucketize_2d_boundaries": lambda m: m.bucketize(m.ones(3), m.ones(2, 2)),
    "bincount_negative": lambda m: m.bincount(m.tensor([1, -1])),
    "bincount_2d": lambda m: m.bincount(m.tensor([[1, 1]])),
    "bincount_of_float": lambda m: m.bincount(m.tensor([1.0, 1.0])),
    "bincount_negative_minlength": lambda m: m.bincount(m.tensor([1, 2]), minlength=-1),
    "bincount_weights_of_other_length": lambda m: m.bincount(m.tensor([1, 2]),
                                                             m.tensor([1.0])),
    "histc_of_int": lambda m: m.histc(m.tensor([1, 2])),
    "histc_no_bins": lambda m: m.histc(m.tensor([1.0, 2.0]), bins=0),
    "histc_max_below_min": lambda m: m.histc(m.tensor([1.0, 2.0]), min=3, max=1),
    "histc_infinite_range": lambda m: m.histc(m.tensor([1.0, float("inf")])),
    "scatter_reduce_unknown_reduction": lambda m: m.zeros(3).scatter_reduce(
        0, m.tensor([0, 1]), m.ones(2), "median"),
    "scatter_unknown_reduction": lambda m: m.zeros(3).scatter(0, m.tensor([0, 1]), m.ones(2),
                                                              reduce="sum"),
    "scatter_reduce_index_out_of_range": lambda m: m.zeros(3).scatter_reduce(
        0, m.tensor([0, 3]), m.ones(2), "sum"),
    "scatter_reduce_negative_index": lambda m: m.zeros(3).scatter_reduce(
        0, m.tensor([0, -1]), m.ones(2), "amax"),
    "scatter_reduce_index_of_other_rank": lambda m: m.zeros(3, 2).scatter_reduce(
        0, m.tensor([0, 1]), m.ones(2), "sum"),
    "scatter_reduce_dim_out_of_range": lambda m: m.zeros(3).scatter_reduce(
        1, m.tensor([0, 1]), m.ones(2), "prod"),
    "scatter_reduce_float_index": lambda m: m.zeros(3).scatter_reduce(
        0, m.tensor([0.0, 1.0]), m.ones(2), "sum"),
    "scatter_reduce_src_of_other_dtype": lambda m: m.zeros(3).scatter_reduce(
        0, m.tensor([0, 1]), m.ones(2, dtype=m.float64), "sum"),
    "gather_float_index": lambda m: m.zeros(2, 3).gather(0, m.tensor([[0.0]])),
    "scatter_add_float_index": lambda m: m.zeros(2, 3).scatter_add(0, m.tensor([[0.0]]),
                                                                   m.zeros(2, 3)),
    "index_select_float_index": lambda m: m.zeros(2, 3).index_select(0, m.tensor([0.0])),
    "index_select_out_of_range": lambda m: m.zeros(2, 3).index_select(0, m.tensor([2])),
    "index_add_out_of_range": lambda m: m.zeros(2, 3).index_add(0, m.tensor([5]),
                                                                m.ones(1, 3)),
    "scatter_add_out_of_range": lambda m: m.zeros(2, 3).scatter_add(0, m.tensor([[5]]),
                                                                    m.ones(1, 1)),
    "take_along_dim_float_indices": lambda m: m.zeros(2, 3).take_along_dim(m.tensor([[0.0]]),
                                                                           1),
    "take_along_dim_flat_out_of_range": lambda m: m.take_along_dim(m.zeros(2, 3),
                                                                   m.tensor([7])),
    "take_along_dim_of_other_rank": lambda m: m.take_along_dim(m.zeros(2, 3), m.tensor([0]),
                                                               1),
    "diag_embed_same_dims": lambda m: m.diag_embed(m.ones(2, 3), dim1=1, dim2=-2),
    "diag_embed_dim_out_of_range": lambda m: m.diag_embed(m.ones(2, 3), dim1=3),
    "trace_of_3d": lambda m: m.trace(m.ones(2, 2, 2)),
    "unfold_size_too_large": lambda m: m.ones(2, 3).unfold(1, 4, 1),
    "unfold_zero_step": lambda m: m.ones(2, 3).unfold(1, 2, 0),
    "unfold_dim_out_of_range": lambda m: m.ones(2, 3).unfold(2, 1, 1),
    "cdist_of_1d": lambda m: m.cdist(m.ones(3), m.ones(2, 3)),
    "cdist_columns_differ": lambda m: m.cdist(m.ones(2, 3), m.ones(2, 4)),
    "cdist_negative_p": lambda m: m.cdist(m.ones(2, 3), m.ones(2, 3), p=-1),
    "cdist_of_ints": lambda m: m.cdist(m.ones(2, 3, dtype=m.int64), m.ones(2, 3, dtype=m.int64)),
    "cosine_similarity_of_ints": lambda m: m.cosine_similarity(m.ones(2, 3, dtype=m.int64),
                                                               m.ones(2, 3, dtype=m.int64)),
    "cosine_similarity_shapes_differ": lambda m: m.cosine_similarity(m.ones(2, 3), m.ones(2, 4)),
    "count_nonzero_repeated_dim": lambda m: m.count_nonzero(m.ones(2, 3), dim=(0, 0)),
}


@pytest.mark.parametrize("name", sorted(REJECTED_SCANS_SORTS_SCATTERS))
def test_scans_sorts_and_scatters_reject_what_torch_rejects(name):
    _rejected_like_torch(REJECTED_SCANS_SORTS_SCATTERS[name])


# -- running a case in both libraries --------------------------------------------------------


def _inputs(c: Case, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{c.name}-{dtype}".encode()))
    return c.make(rng, dtype)


def _to_lib(m, value, grad: bool):
    if isinstance(value, NoGrad):
        return _to_lib(m, value.array, False)
    if not isinstance(value, np.ndarray):
        return value
    wants_grad = grad and value.dtype.kind == "f"
    if m is torch:
        return torch.tensor(value.copy(), requires_grad=wants_grad)
    return ember.tensor(value.copy(), requires_grad=wants_grad)


def _leaves(values):
    return [v for v in values if isinstance(v, (ember.Tensor, torch.Tensor)) and v.requires_grad]


def _flatten(out) -> list:
    if isinstance(out, (tuple, list)) and not isinstance(out, (torch.Size, ember.Size)):
        return [y for x in out for y in _flatten(x)]
    return [out]


def _tolerance(dtype_name):
    return {"float16": (1e-3, 1e-3), "float32": (2e-5, 2e-5)}.get(dtype_name, (1e-10, 1e-12))


def _assert_same(e, t, where: str):
    if isinstance(t, torch.Tensor):
        assert isinstance(e, ember.Tensor), f"{where}: expected a Tensor, got {type(e).__name__}"
        assert tuple(e.shape) == tuple(t.shape), f"{where}: shape {e.shape} vs {t.shape}"
        t_dtype = str(t.dtype).removeprefix("torch.")
        assert e.dtype.name == t_dtype, f"{where}: dtype {e.dtype.name} vs {t_dtype}"
        ev, tv = e.detach().numpy(), t.detach().numpy()
        if e.dtype.is_floating_point:
            rtol, atol = _tolerance(t_dtype)
            np.testing.assert_allclose(ev, tv, rtol=rtol, atol=atol, equal_nan=True, err_msg=where)
        else:
            np.testing.assert_array_equal(ev, tv, err_msg=where)
    elif isinstance(t, torch.dtype):
        assert e.name == str(t).removeprefix("torch."), f"{where}: {e} vs {t}"
    elif isinstance(t, torch.Size):
        assert tuple(e) == tuple(t), f"{where}: {e} vs {t}"
    else:
        assert type(e) is type(t) and e == t, f"{where}: {e!r} vs {t!r}"


def _run(c: Case, m, dtype):
    inputs = tuple(_to_lib(m, v, c.grad) for v in _inputs(c, dtype))
    return inputs, c.fn(m, *inputs)


def _check(c: Case, dtype):
    e_in, e_out = _run(c, ember, dtype)
    t_in, t_out = _run(c, torch, dtype)
    e_flat, t_flat = _flatten(e_out), _flatten(t_out)
    assert len(e_flat) == len(t_flat), f"{len(e_flat)} outputs vs torch's {len(t_flat)}"
    for k, (e, t) in enumerate(zip(e_flat, t_flat)):
        _assert_same(e, t, f"output {k}")
    if not c.grad:
        return
    rng = np.random.default_rng(1234)
    e_loss = t_loss = 0
    for k, (e, t) in enumerate(zip(e_flat, t_flat)):
        if not isinstance(t, torch.Tensor):
            continue
        assert e.requires_grad == t.requires_grad, f"output {k}: requires_grad differs"
        if t.requires_grad:
            weight = rng.standard_normal(tuple(t.shape)).astype(t.detach().numpy().dtype)
            e_loss = e_loss + (e * ember.tensor(weight)).sum()
            t_loss = t_loss + (t * torch.tensor(weight)).sum()
    e_leaves, t_leaves = _leaves(e_in), _leaves(t_in)
    if isinstance(t_loss, int):
        return
    e_loss.backward()
    t_loss.backward()
    for k, (e, t) in enumerate(zip(e_leaves, t_leaves)):
        if t.grad is None:
            assert e.grad is None or not e.grad.numpy().any(), f"input {k}: unexpected grad"
            continue
        assert e.grad is not None, f"input {k}: no gradient where torch has one"
        _assert_same(e.grad, t.grad, f"gradient of input {k}")


_PARAMS = [
    pytest.param(c, d, id=f"{c.name}-{d}" if d else c.name, marks=c.marks)
    for c in CASES
    for d in c.dtypes
]


@pytest.mark.parametrize("c, dtype", _PARAMS)
def test_matches_torch(c: Case, dtype):
    _check(c, dtype)


# -- errors: what PyTorch rejects, ember rejects with an exception of the same kind ----------


def _twice_backward(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    y.backward()


def _leaf_inplace(m):
    m.tensor([1.0], requires_grad=True).add_(1)


REJECTED = {
    "inplace_result_cannot_be_cast": lambda m: m.tensor([1, 2]).add_(1.5),
    "inplace_broadcast_grows_self": lambda m: m.zeros(3).add_(m.ones(2, 3)),
    "neg_of_bool": lambda m: -m.tensor([True, False]),
    "sub_of_bools": lambda m: m.tensor([True]) - m.tensor([False]),
    "int_to_negative_int_power": lambda m: m.tensor([2, 3]) ** -1,
    "broadcast_mismatch": lambda m: m.ones(2, 3) + m.ones(4),
    "matmul_mismatch": lambda m: m.ones(2, 3) @ m.ones(2, 3),
    "matmul_0d": lambda m: m.matmul(m.tensor(1.0), m.ones(2)),
    "cat_mismatch": lambda m: m.cat([m.ones(2, 3), m.ones(2, 4)], 0),
    "stack_mismatch": lambda m: m.stack([m.ones(2), m.ones(3)]),
    "reshape_bad_size": lambda m: m.ones(2, 3).reshape(4, 2),
    "view_of_transposed": lambda m: m.ones(2, 3).t().view(-1),
    "expand_bad_size": lambda m: m.ones(2, 3).expand(4, 3),
    "permute_bad_dims": lambda m: m.ones(2, 3).permute(0, 0),
    "dim_out_of_range": lambda m: m.ones(2, 3).sum(2),
    "int_index_out_of_range": lambda m: m.ones(2, 3)[2],
    "tensor_index_out_of_range": lambda m: m.ones(2, 3)[m.tensor([0, 2])],
    "too_many_indices": lambda m: m.ones(2, 3)[0, 0, 0],
    "float_index": lambda m: m.ones(2, 3)[m.tensor([0.0])],
    "gather_index_out_of_range": lambda m: m.gather(m.ones(2, 3), 1, m.tensor([[3]])),
    "index_select_2d_index": lambda m: m.ones(2, 3).index_select(0, m.tensor([[0]])),
    "mean_of_int": lambda m: m.tensor([1, 2]).mean(),
    "requires_grad_on_int": lambda m: m.tensor([1, 2]).requires_grad_(),
    "inplace_on_leaf_requiring_grad": _leaf_inplace,
    "backward_twice": _twice_backward,
    "backward_of_non_scalar": lambda m: (m.ones(2, requires_grad=True) * 2).backward(),
    "item_of_many": lambda m: m.ones(2).item(),
    "bool_of_many": lambda m: bool(m.ones(2)),
    "conv2d_channel_mismatch": lambda m: F(m).conv2d(m.ones(1, 3, 5, 5), m.ones(2, 2, 3, 3)),
    "conv2d_kernel_too_large": lambda m: F(m).conv2d(m.ones(1, 1, 2, 2), m.ones(1, 1, 3, 3)),
    "max_pool2d_padding_too_large": lambda m: F(m).max_pool2d(m.ones(1, 1, 4, 4), 2, padding=2),
    "one_hot_class_out_of_range": lambda m: F(m).one_hot(m.tensor([0, 3]), 3),
    "where_condition_not_bool": lambda m: m.where(m.tensor([1, 0]), m.ones(2), m.zeros(2)),
    "masked_fill_mask_not_bool": lambda m: m.ones(2).masked_fill(m.tensor([1, 0]), 0.0),
    "reflect_pad_too_large": lambda m: F(m).pad(m.ones(1, 1, 3), (3, 0), mode="reflect"),
    "split_sizes_do_not_sum": lambda m: m.ones(5).split([2, 2]),
    "narrow_past_the_end": lambda m: m.ones(5).narrow(0, 3, 3),
    "tril_of_1d": lambda m: m.ones(3).tril(),
    "var_of_int": lambda m: m.tensor([1, 2]).var(),
    "int_floor_divide_by_zero": lambda m: m.tensor([1, 2]) // m.tensor([1, 0]),
    "int_remainder_by_zero": lambda m: m.tensor([1, 2]) % 0,
    "int_trunc_divide_by_zero": lambda m: m.div(m.tensor([3]), 0, rounding_mode="trunc"),
    "index_select_of_0d_with_2_indices": lambda m: m.tensor(1.0).index_select(0, m.tensor([0, 0])),
    "view_as_dtype_of_other_size": lambda m: m.ones(3).view(m.float64),
    "gather_negative_index": lambda m: m.ones(2, 3).gather(1, m.tensor([[-1]])),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejects_what_torch_rejects(name):
    fn = REJECTED[name]
    with pytest.raises(Exception) as torch_error:
        fn(torch)
    kind = next(
        k
        for k in (IndexError, TypeError, ValueError, RuntimeError)
        if isinstance(torch_error.value, k)
    )
    with pytest.raises(Exception) as ember_error:
        fn(ember)
    assert isinstance(ember_error.value, ember.EmberError), repr(ember_error.value)
    assert isinstance(ember_error.value, kind), (
        f"torch raises {type(torch_error.value).__name__}, ember "
        f"{type(ember_error.value).__name__}: {ember_error.value}"
    )


# -- coverage: every mirrored function and method is called by some case -------------------

# Tensor attributes that are infrastructure, not ops (covered by the tensor and autograd tests)
_INFRASTRUCTURE = {
    "__init__",
    "__repr__",
    "__str__",
    "__format__",
    "__hash__",
    "__reduce_ex__",
    "__array__",
    "__dlpack__",
    "__dlpack_device__",
    "__bool__",
    "__float__",
    "__int__",
    "__index__",
    "__len__",
    "__iter__",
    "backward",
    "grad",
    "register_hook",
    "register_post_accumulate_grad_hook",
    "retain_grad",
    "requires_grad_",
    "detach",
    "detach_",
    "numpy",
    "item",
    "tolist",
    "size",
    "dim",
    "numel",
    "nelement",
    "stride",
    "is_contiguous",
    "is_floating_point",
    "element_size",
    "cuda",
    "data",
    "shape",
    "dtype",
    "device",
    "grad_fn",
    "is_leaf",
    "requires_grad",
    "retains_grad",
    "ndim",
    "is_cuda",
    "type",
    "layout",
    "is_shared",
    "share_memory_",
}


def _key(fn):
    closure = tuple(cell.cell_contents for cell in fn.__closure__ or ())
    return fn.__code__, tuple(id(v) for v in closure)


def _frame_key(frame):
    code = frame.f_code
    values = frame.f_locals
    return code, tuple(id(values[name]) for name in code.co_freevars)


def _mirrored_functions() -> dict:
    """name -> key of every ember.ops function and Tensor method that torch also has."""
    wanted = {}
    for name, fn in vars(E).items():
        if name.startswith("_") or not inspect.isfunction(fn) or not fn.__module__.startswith(
            E.__name__
        ):
            continue
        if hasattr(torch, name) or hasattr(torch.nn.functional, name):
            wanted[f"ember.ops.{name}"] = _key(fn)
    for name, attr in vars(ember.Tensor).items():
        if name in _INFRASTRUCTURE or not hasattr(torch.Tensor, name):
            continue
        fn = attr.fget if isinstance(attr, property) else attr
        if inspect.isfunction(fn):
            wanted[f"Tensor.{name}"] = _key(fn)
    return wanted


def test_every_mirrored_op_and_method_is_exercised():
    here = __file__
    called = set()

    def profile(frame, event, arg):
        if event == "call" and frame.f_back is not None and frame.f_back.f_code.co_filename == here:
            try:
                called.add(_frame_key(frame))
            except KeyError:
                pass

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        for c in CASES:
            for d in c.dtypes:
                _run(c, ember, d)
    finally:
        sys.setprofile(previous)
    wanted = _mirrored_functions()
    assert len(wanted) > 200
    missing = sorted(name for name, key in wanted.items() if key not in called)
    assert not missing, f"ember ops and methods that no oracle case calls: {missing}"


@pytest.mark.oracle
def test_reductions_accept_numpys_axis_and_keepdims_as_pytorch_does():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    e, t = ember.tensor(x), torch.tensor(x)
    for name in ("sum", "mean", "prod", "std", "var", "amax", "amin", "logsumexp"):
        for kwargs in ({"axis": 1}, {"dim": 1, "keepdims": True}, {"axis": 0, "keepdims": True}):
            np.testing.assert_allclose(getattr(ember, name)(e, **kwargs).numpy(),
                                       getattr(torch, name)(t, **kwargs).numpy(), rtol=1e-6)
    for name in ("max", "min"):
        ours, theirs = getattr(e, name)(axis=1, keepdims=True), getattr(t, name)(axis=1,
                                                                            keepdims=True)
        np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
    for name in ("argmax", "argmin", "all", "any", "count_nonzero", "cumsum", "softmax",
                 "log_softmax"):
        arg_e, arg_t = (e > 0, t > 0) if name in ("all", "any") else (e, t)
        np.testing.assert_allclose(getattr(ember, name)(arg_e, axis=1).numpy(),
                                   getattr(torch, name)(arg_t, axis=1).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(ember.sort(e, axis=0).indices.numpy(),
                                  torch.sort(t, axis=0).indices.numpy())
    with pytest.raises(ember.EmberError, match="both dim= and its alias axis="):
        e.sum(dim=0, axis=1)


@pytest.mark.oracle
def test_rearranging_ops_match_torch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5))
    e, t = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)

    def run(m, a):
        return [
            m.roll(a, 2), m.roll(a, (1, -3), (0, 2)), a.roll(-1, 1),
            m.diagonal(a, 1, 1, 2), a.diagonal(-1, 0, 2), m.diag(a[0]), m.diag(a[0, 0], 2),
            m.diag(a[1, :, 1], -1), a[0].diag(1),
            m.repeat_interleave(a, 2, dim=1), a.repeat_interleave(3), m.repeat_interleave(
                a, (m.arange(5) % 3) if m is torch else ember.arange(5) % 3, dim=2),
            m.frac(a * 3), m.moveaxis(a, 0, 2), a.moveaxis(1, 0),
        ]

    ours, theirs = run(ember, e), run(torch, t)
    for o, r in zip(ours, theirs):
        np.testing.assert_allclose(o.detach().numpy(), r.detach().numpy(), rtol=1e-12)
    sum(o.sum() * (k + 1) for k, o in enumerate(ours)).backward()
    sum(r.sum() * (k + 1) for k, r in enumerate(theirs)).backward()
    np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-12)
    for indexing in ("ij", "xy"):
        for o, r in zip(ember.meshgrid(ember.arange(3), ember.arange(4), ember.arange(2),
                                       indexing=indexing),
                        torch.meshgrid(torch.arange(3), torch.arange(4), torch.arange(2),
                                       indexing=indexing)):
            np.testing.assert_array_equal(o.numpy(), r.numpy())


@pytest.mark.oracle
def test_isclose_matches_torch_on_special_values():
    a = np.array([1.0, 1.0 + 1e-6, np.nan, np.inf, -np.inf, 2.0, 0.0, np.nan], np.float32)
    b = np.array([1.0, 1.0, np.nan, np.inf, np.inf, 2.1, 1e-9, 1.0], np.float32)
    for kwargs in ({}, {"equal_nan": True}, {"rtol": 0.1, "atol": 0.0}):
        np.testing.assert_array_equal(
            ember.isclose(ember.tensor(a), ember.tensor(b), **kwargs).numpy(),
            torch.isclose(torch.tensor(a), torch.tensor(b), **kwargs).numpy())
    np.testing.assert_array_equal(ember.tensor([1, 2, 3]).isclose(ember.tensor([1, 2, 4])).numpy(),
                                  torch.tensor([1, 2, 3]).isclose(torch.tensor([1, 2, 4])).numpy())


@pytest.mark.oracle
def test_typed_constructors_match_torch():
    for name in ("FloatTensor", "DoubleTensor", "LongTensor", "IntTensor", "BoolTensor",
                 "ByteTensor"):
        ours, theirs = getattr(ember, name)([1, 0, 2]), getattr(torch, name)([1, 0, 2])
        assert str(ours.dtype).split(".")[-1] == str(theirs.dtype).split(".")[-1]
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
        assert tuple(getattr(ember, name)(2, 3).shape) == (2, 3)
        assert tuple(getattr(ember, name)().shape) == tuple(getattr(torch, name)().shape)
        assert tuple(getattr(ember, name)(ember.zeros(4, 2).size()).shape) == (4, 2)
        assert isinstance(ours, getattr(ember, name))
        assert isinstance(ours, getattr(ember, "FloatTensor")) == (name == "FloatTensor")


@pytest.mark.oracle
def test_repeat_interleave_counts_alone_and_einsum_on_bools_match_torch():
    counts = [2, 0, 3, 1]
    np.testing.assert_array_equal(ember.repeat_interleave(ember.tensor(counts)).numpy(),
                                  torch.repeat_interleave(torch.tensor(counts)).numpy())
    np.testing.assert_array_equal(ember.repeat_interleave(ember.arange(3), np.int64(2)).numpy(),
                                  torch.repeat_interleave(torch.arange(3), 2).numpy())
    a, b = [True, False, True], [True, True]
    assert ember.einsum("i,j->", ember.tensor(a), ember.tensor(b)).item() == torch.einsum(
        "i,j->", torch.tensor(a), torch.tensor(b)).item()

