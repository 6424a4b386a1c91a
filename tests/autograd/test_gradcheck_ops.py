"""gradcheck in float64 over every differentiable primitive, through the public API.

Each case is a function of a few float64 tensors that require grad, built from a seeded
generator. Inputs keep away from the points where an op is not differentiable (ties for
max/min, bounds for clamp, integers for floor/round, zero for abs/relu). A coverage test runs
every case under the dispatch hook and fails when a differentiable op in the schema table is
exercised by no case, so a new primitive cannot slip in without a gradient check.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import ember
import ember._tensor.hooks as tensor_module
import numpy as np
import pytest
from ember import ops as E
from ember._tensor import dispatch
from ember.autograd import gradcheck, gradgradcheck
from ember.ir.schema import SCHEMAS

# -- inputs ----------------------------------------------------------------------------------


def _leaf(array) -> ember.Tensor:
    return ember.tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


def normal(r, *shape):
    return _leaf(r.standard_normal(shape))


def positive(r, *shape, low=0.5, high=2.0):
    return _leaf(r.uniform(low, high, shape))


def nonzero(r, *shape):
    """Magnitudes in [0.2, 1.5] with random signs: away from the kink at 0."""
    return _leaf(r.uniform(0.2, 1.5, shape) * r.choice([-1.0, 1.0], shape))


def distinct(r, *shape, offset=0.037):
    """Values 0.1 apart in random order: no ties, never 0, an integer or a multiple of 0.05."""
    n = int(np.prod(shape))
    return _leaf(((r.permutation(n) - n // 2) * 0.1 + offset).reshape(shape))


def off_grid(r, *shape):
    """Integers plus a fraction in [0.1, 0.4]: away from floor/ceil/round/trunc's steps."""
    return _leaf(r.integers(-3, 3, shape) + r.uniform(0.1, 0.4, shape))


def quotient_pair(r, *shape):
    """(a, b) with b away from 0 and a / b away from every integer."""
    b = r.uniform(0.6, 1.8, shape) * r.choice([-1.0, 1.0], shape)
    q = (r.integers(0, 3, shape) + r.uniform(0.2, 0.8, shape)) * r.choice([-1.0, 1.0], shape)
    return _leaf(q * b), _leaf(b)


def index(values) -> ember.Tensor:
    return ember.tensor(np.asarray(values, dtype=np.int64))


def mask(values) -> ember.Tensor:
    return ember.tensor(np.asarray(values, dtype=bool))


def first_grads(fn):
    """The function (*inputs, grad_output) -> gradients of fn w.r.t. inputs, with a graph.

    Checking it with gradcheck checks the derivative of the backward primitives
    (conv2d_backward_input, slice_backward, ...) that fn's derivative rule dispatches.
    """

    def grads(*args):
        *inputs, grad_output = args
        out = fn(*inputs)
        return ember.autograd.grad(out, inputs, grad_output, create_graph=True, allow_unused=True)

    return grads


# -- the cases -------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    fn: Callable
    make: Callable  # rng -> tuple of inputs
    gradgrad: bool = False
    check: dict = field(default_factory=dict)

    def inputs(self) -> tuple:
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        made = self.make(rng)
        return made if isinstance(made, tuple) else (made,)


CASES: list[Case] = []


def case(name, fn, make, gradgrad=False, **check):
    CASES.append(Case(name, fn, make, gradgrad, check))


# elementwise, unary
for _name, _make in [
    ("exp", normal),
    ("expm1", normal),
    ("sin", normal),
    ("cos", normal),
    ("tanh", normal),
    ("sigmoid", normal),
    ("erf", normal),
    ("log", positive),
    ("log1p", positive),
    ("sqrt", positive),
    ("rsqrt", positive),
    ("reciprocal", positive),
    ("abs", nonzero),
    ("relu", nonzero),
    ("sign", nonzero),
    ("floor", off_grid),
    ("ceil", off_grid),
    ("round", off_grid),
    ("trunc", off_grid),
]:
    case(_name, getattr(ember, _name), lambda r, m=_make: m(r, 2, 3), gradgrad=True)

def inside_unit(r, *shape):
    """Values in (-0.9, 0.9): inside asin's, acos's and atanh's domain, away from its ends."""
    return _leaf(r.uniform(-0.9, 0.9, shape))


for _name, _make in [
    ("asin", inside_unit),
    ("acos", inside_unit),
    ("atan", normal),
    ("sinh", normal),
    ("cosh", normal),
    ("asinh", normal),
    ("acosh", lambda r, *s: positive(r, *s, low=1.2, high=3.0)),
    ("atanh", inside_unit),
    ("log2", positive),
    ("log10", positive),
    ("exp2", normal),
    ("tan", inside_unit),
    ("erfc", normal),
    ("erfinv", inside_unit),
    ("lgamma", positive),
    ("digamma", positive),
]:
    case(_name, getattr(ember, _name), lambda r, m=_make: m(r, 2, 3), gradgrad=True)
for _name, _make in [
    ("atan2", lambda r: (normal(r, 2, 3), nonzero(r, 3))),
    ("hypot", lambda r: (nonzero(r, 2, 3), nonzero(r, 3))),
    ("logaddexp", lambda r: (normal(r, 2, 3), normal(r, 3))),
    ("logaddexp2", lambda r: (normal(r, 2, 3), normal(r, 3))),
    ("copysign", lambda r: (nonzero(r, 2, 3), nonzero(r, 3))),
    ("xlogy", lambda r: (normal(r, 2, 3), positive(r, 3))),
    ("fmod", lambda r: quotient_pair(r, 2, 3)),
]:
    case(_name, getattr(ember, _name), _make, gradgrad=True)
case("xlogy_scalar_other", lambda x: ember.xlogy(x, 1.5), lambda r: normal(r, 2, 3))
case("atan2_scalar_first", lambda x: ember.atan2(x, 0.7), lambda r: normal(r, 4))
for _n in (1, 2):
    case(f"polygamma{_n}", lambda x, n=_n: ember.polygamma(n, x), lambda r: positive(r, 2, 3),
         gradgrad=True)

case("sort", lambda x: ember.sort(x, dim=1, descending=True).values, lambda r: distinct(r, 3, 4),
     gradgrad=True)
case("topk", lambda x: ember.topk(x, 2, dim=0).values * 2, lambda r: distinct(r, 3, 4))
case("kthvalue", lambda x: x.kthvalue(2, dim=1).values, lambda r: distinct(r, 3, 4))
case("cummax", lambda x: ember.cummax(x, 1).values, lambda r: distinct(r, 3, 4), gradgrad=True)
case("cummin", lambda x: x.cummin(0)[0], lambda r: distinct(r, 3, 4), gradgrad=True)
case("neg_operator", lambda x: -x, lambda r: normal(r, 2, 3), gradgrad=True)
case("abs_operator", abs, lambda r: nonzero(r, 3, 2), gradgrad=True)
case("exp_method_3d", lambda x: x.exp(), lambda r: normal(r, 2, 1, 3), gradgrad=True)
case("clamp_both", lambda x: x.clamp(-0.5, 0.5), lambda r: distinct(r, 3, 4), gradgrad=True)
case("clamp_min", lambda x: ember.clamp(x, min=0.2), lambda r: distinct(r, 3, 4))
case("clamp_max", lambda x: x.clamp_max(-0.3), lambda r: distinct(r, 3, 4))
case(
    "clamp_tensor_bounds",
    lambda x, lo: x.clamp(min=lo),
    lambda r: (distinct(r, 3, 4), distinct(r, 4, offset=0.061)),
)
case("clone", lambda x: x.clone(), lambda r: normal(r, 2, 3), gradgrad=True)
# a float32 round trip: finite differences need a larger step than float32's resolution
case(
    "cast_float32_roundtrip", lambda x: x.float().double() * 2, lambda r: normal(r, 2, 3), eps=1e-3
)
case(
    "cast_in_promotion",
    lambda x, y: x.float() * y,
    lambda r: (normal(r, 3), normal(r, 2, 3)),
    eps=1e-3,
    atol=1e-4,
)

# elementwise, binary, with broadcasting and scalars
_BROADCAST = (3, 1, 4), (2, 4)
case(
    "add_broadcast",
    lambda a, b: a + b,
    lambda r: (normal(r, *_BROADCAST[0]), normal(r, *_BROADCAST[1])),
    gradgrad=True,
)
case(
    "add_alpha",
    lambda a, b: ember.add(a, b, alpha=2.5),
    lambda r: (normal(r, 2, 3), normal(r, 3)),
    gradgrad=True,
)
case("add_scalar_reflected", lambda x: 2 + x, lambda r: normal(r, 2, 3))
case(
    "sub_broadcast",
    lambda a, b: a - b,
    lambda r: (normal(r, *_BROADCAST[0]), normal(r, *_BROADCAST[1])),
    gradgrad=True,
)
case("sub_scalar_reflected", lambda x: 1.5 - x, lambda r: normal(r, 2, 3))
case(
    "mul_broadcast",
    lambda a, b: a * b,
    lambda r: (normal(r, *_BROADCAST[0]), normal(r, *_BROADCAST[1])),
    gradgrad=True,
)
case("mul_same_tensor", lambda x: x * x, lambda r: normal(r, 2, 3), gradgrad=True)
case("mul_scalar_reflected", lambda x: 3 * x, lambda r: normal(r, 2, 3))
case(
    "div_broadcast",
    lambda a, b: a / b,
    lambda r: (normal(r, *_BROADCAST[0]), nonzero(r, *_BROADCAST[1])),
    gradgrad=True,
)
case("div_scalar_reflected", lambda x: 2 / x, lambda r: nonzero(r, 2, 3), gradgrad=True)
case("div_by_scalar", lambda x: x / 3, lambda r: normal(r, 2, 3))
case("pow_scalar_exponent", lambda x: x**3, lambda r: normal(r, 2, 3), gradgrad=True)
case(
    "pow_fractional_exponent",
    lambda x: ember.pow(x, 2.5),
    lambda r: positive(r, 2, 3),
    gradgrad=True,
)
case("pow_zero_exponent", lambda x: x**0, lambda r: normal(r, 2, 3))
case(
    "pow_tensor_broadcast",
    lambda a, b: a**b,
    lambda r: (positive(r, *_BROADCAST[0]), normal(r, *_BROADCAST[1])),
    gradgrad=True,
)
case("pow_scalar_base", lambda x: 2.0**x, lambda r: normal(r, 2, 3), gradgrad=True)
case(
    "maximum_broadcast",
    ember.maximum,
    lambda r: (distinct(r, *_BROADCAST[0]), distinct(r, *_BROADCAST[1], offset=0.061)),
    gradgrad=True,
)
case(
    "minimum_broadcast",
    ember.minimum,
    lambda r: (distinct(r, *_BROADCAST[0]), distinct(r, *_BROADCAST[1], offset=0.061)),
    gradgrad=True,
)
case("remainder_tensors", lambda a, b: a % b, lambda r: quotient_pair(r, 2, 3), gradgrad=True)
case(
    "remainder_scalar",
    lambda x: ember.remainder(x, 1.7),
    lambda r: _leaf(np.array([[0.5, 2.1, -0.6], [3.0, -2.2, 4.6]])),
    gradgrad=True,
)
case(
    "remainder_scalar_reflected",
    lambda x: 5.0 % x,
    lambda r: _leaf(np.array([[1.5, 2.2, -1.6], [3.0, -2.3, 0.7]])),
)
case("floor_divide", lambda a, b: a // b, lambda r: quotient_pair(r, 2, 3), gradgrad=True)
case(
    "trunc_divide",
    lambda a, b: ember.div(a, b, rounding_mode="trunc"),
    lambda r: quotient_pair(r, 2, 3),
    gradgrad=True,
)
case(
    "where_broadcast",
    lambda a, b, c: ember.where(c, a, b),
    lambda r: (normal(r, 2, 4), normal(r, 3, 1, 4), mask(r.random((3, 1, 1)) < 0.5)),
    gradgrad=True,
)
case(
    "where_scalar_other",
    lambda a, c: ember.where(c, a, 0.5),
    lambda r: (normal(r, 3, 4), mask(r.random((3, 4)) < 0.5)),
    gradgrad=True,
)
case(
    "masked_fill_broadcast",
    lambda x, m: x.masked_fill(m, 2.0),
    lambda r: (normal(r, 3, 4), mask([[True, False, False, True]])),
    gradgrad=True,
)

# reductions
_X3 = (2, 3, 4)
for _dim, _keepdim in [(None, False), ((0, 2), False), ((0, 2), True), (-1, False), (1, True)]:
    _id = f"dim={_dim}-keepdim={_keepdim}"
    case(
        f"sum[{_id}]",
        lambda x, d=_dim, k=_keepdim: x.sum(dim=d, keepdim=k),
        lambda r: normal(r, *_X3),
    )
    case(f"mean[{_id}]", lambda x, d=_dim, k=_keepdim: E.mean(x, d, k), lambda r: normal(r, *_X3))
    case(
        f"var[{_id}]",
        lambda x, d=_dim, k=_keepdim: x.var(dim=d, keepdim=k),
        lambda r: normal(r, *_X3),
    )
    if _dim is not None:
        case(
            f"logsumexp[{_id}]",
            lambda x, d=_dim, k=_keepdim: E.logsumexp(x, d, k),
            lambda r: normal(r, *_X3),
        )
        case(
            f"amax[{_id}]", lambda x, d=_dim, k=_keepdim: x.amax(d, k), lambda r: distinct(r, *_X3)
        )
        case(
            f"amin[{_id}]",
            lambda x, d=_dim, k=_keepdim: E.amin(x, d, k),
            lambda r: distinct(r, *_X3),
        )
case(
    "sum_scalar_result_squared",
    lambda x: x.sum() * x.sum(),
    lambda r: normal(r, 2, 3),
    gradgrad=True,
)
case("var_correction_0", lambda x: x.var(1, correction=0), lambda r: normal(r, 3, 4))
case(
    "std_correction_2",
    lambda x: x.std(dim=(0, 1), correction=2, keepdim=True),
    lambda r: normal(r, 2, 3, 2),
)
case("prod_all", lambda x: x.prod(), lambda r: nonzero(r, 2, 3))
case("prod_dims_keepdim", lambda x: E.prod(x, (0, 2), keepdim=True), lambda r: nonzero(r, *_X3))
# a product is a polynomial: exact gradients even with one or two zeros in a group
case(
    "prod_with_zeros",
    lambda x: x.prod(1),
    lambda r: _leaf([[0.0, 1.5, -2.0, 0.7], [0.0, 0.0, 1.3, 0.9], [1.1, -0.8, 1.2, 2.0]]),
)
case("max_all", lambda x: x.max(), lambda r: distinct(r, 3, 4))
case("min_all", lambda x: x.min(), lambda r: distinct(r, 3, 4))
case("max_dim", lambda x: x.max(dim=1).values, lambda r: distinct(r, *_X3))
case("max_dim_keepdim", lambda x: E.max(x, -1, keepdim=True)[0], lambda r: distinct(r, *_X3))
case("min_dim", lambda x: x.min(0).values, lambda r: distinct(r, *_X3))
case("min_dim_keepdim", lambda x: E.min(x, 2, True).values, lambda r: distinct(r, *_X3))
case("cumsum", lambda x: x.cumsum(1), lambda r: normal(r, *_X3))
case("cumsum_last", lambda x: ember.cumsum(x, dim=-1), lambda r: normal(r, 2, 3))

# shapes and views
case("reshape", lambda x: x.reshape(4, 6), lambda r: normal(r, *_X3))
case("reshape_noncontiguous", lambda x: x.permute(2, 0, 1).reshape(-1), lambda r: normal(r, *_X3))
case("view", lambda x: x.view(6, 4) * 2, lambda r: normal(r, *_X3))
case("view_flat", lambda x: x.view(-1), lambda r: normal(r, 2, 3))
case("flatten", lambda x: x.flatten(1), lambda r: normal(r, *_X3))
case("permute", lambda x: x.permute(2, 0, 1), lambda r: normal(r, *_X3))
case("transpose", lambda x: x.transpose(0, 2), lambda r: normal(r, *_X3))
case("t_and_mT", lambda x, y: x.t() + y.mT, lambda r: (normal(r, 2, 3), normal(r, 2, 3)))
case("squeeze_dim", lambda x: x.squeeze(1), lambda r: normal(r, 2, 1, 3))
case("squeeze_all", lambda x: E.squeeze(x), lambda r: normal(r, 1, 3, 1))
case("unsqueeze", lambda x: x.unsqueeze(0).unsqueeze(-1), lambda r: normal(r, 2, 3))
case("expand", lambda x: x.expand(2, 3, 4), lambda r: normal(r, 3, 1))
case("expand_minus_one", lambda x: x.expand(2, -1, 4), lambda r: normal(r, 3, 1))
case("broadcast_to", lambda x: ember.broadcast_to(x, (2, 3)), lambda r: normal(r, 3))
case("slice_steps", lambda x: x[1:, ::2], lambda r: normal(r, 3, 5))
case("slice_int_none_ellipsis", lambda x: x[..., 1][:, None, 1:3], lambda r: normal(r, *_X3))
case("slice_negative", lambda x: x[-2:, 1:-1], lambda r: normal(r, 3, 4))
case("narrow", lambda x: x.narrow(1, 1, 2), lambda r: normal(r, *_X3))
case("split_chunk", lambda x: (*x.split([1, 3], 2), *x.chunk(2, 0)), lambda r: normal(r, *_X3))
case("unbind_select", lambda x: x.unbind(1)[2] * x.select(0, -1)[1], lambda r: normal(r, 2, 3, 4))
case(
    "gather_backward",
    first_grads(lambda x: E.gather(x, 1, ember.tensor([[2, 0], [1, 1], [0, 2]]))),
    lambda r: (normal(r, 3, 3), normal(r, 3, 2)),
)
case(
    "gather_backward_one_per_row",
    first_grads(lambda x: E.gather(x, 0, ember.tensor([[1, 0, 2]]))),
    lambda r: (normal(r, 3, 3), normal(r, 1, 3)),
)
case(
    "slice_backward",
    first_grads(lambda x: x[1:, ::2]),
    lambda r: (normal(r, 3, 5), normal(r, 2, 3)),
)
case(
    "view_scatter",
    lambda x, src: dispatch(
        "view_scatter",
        (x, dispatch("view_scatter", (x.permute(1, 0), src),
                     {"view_op": "slice", "starts": (0, 1), "stops": (4, 3), "steps": (1, 1)})),
        {"view_op": "permute", "dims": (1, 0)}),
    lambda r: (normal(r, 3, 4), normal(r, 4, 2)),
    gradgrad=True,
)
case(
    "view_scatter_squeeze_reshape",
    lambda x, src: dispatch("view_scatter", (x, src), {"view_op": "reshape", "shape": (2, 6)})
    + dispatch("view_scatter", (x[1:2], src[0, :4]), {"view_op": "squeeze", "dims": (0,)}).sum(),
    lambda r: (normal(r, 3, 4), normal(r, 2, 6)),
)
case("repeat", lambda x: x.repeat(2, 1, 2), lambda r: normal(r, 2, 3))
case(
    "cat",
    lambda a, b, c: ember.cat([a, b, c], dim=1),
    lambda r: (normal(r, 2, 1, 3), normal(r, 2, 2, 3), normal(r, 2, 1, 3)),
)
case(
    "cat_single_and_stack",
    lambda a, b: ember.cat([a]) * ember.stack([a, b], dim=1).sum(1),
    lambda r: (normal(r, 2, 3), normal(r, 2, 3)),
)
case("flip", lambda x: x.flip((0, 2)), lambda r: normal(r, *_X3))
case("flip_int_dim", lambda x: ember.flip(x, -1), lambda r: normal(r, 2, 3))
case("tril", lambda x: x.tril(), lambda r: normal(r, 3, 4))
case("tril_diagonal_batched", lambda x: ember.tril(x, -1), lambda r: normal(r, 2, 3, 4))
case("triu", lambda x: x.triu(1), lambda r: normal(r, 4, 3))
case("triu_batched", lambda x: ember.triu(x, -1), lambda r: normal(r, 2, 3, 3))
for _mode, _pads in [
    ("constant", (1, 2)),
    ("constant", (1, 0, 2, 1)),
    ("constant", (-1, 1, 0, -1)),
    ("reflect", (2, 1)),
    ("reflect", (1, 2, 2, 1)),
    ("replicate", (2, 3, 1, 0)),
    ("circular", (1, 2)),
    ("circular", (2, 1, 1, 2)),
]:
    case(
        f"pad[{_mode}-{_pads}]",
        lambda x, p=_pads, m=_mode: E.pad(x, p, mode=m),
        lambda r: normal(r, 1, 2, 3, 4),
    )
case("pad_constant_value", lambda x: E.pad(x, (1, 1), value=2.5), lambda r: normal(r, 2, 3))

# indexing
case("index_tensor", lambda x: x[index([[0, 2], [2, 2]])], lambda r: normal(r, 3, 4))
case("index_tensor_second_dim", lambda x: x[:, index([3, 0, 3])], lambda r: normal(r, 3, 4))
case("index_nonadjacent", lambda x: x[index([1, 0]), :, index([2, 2])], lambda r: normal(r, *_X3))
case("index_int_and_tensor", lambda x: x[1, index([0, 2, 0])], lambda r: normal(r, 3, 4))
case(
    "index_bool_mask",
    lambda x: x[mask([[True, False, True], [False, True, True]])],
    lambda r: normal(r, 2, 3),
)
case("index_list", lambda x: x[[0, 0, 1]], lambda r: normal(r, 2, 3))
case(
    "index_put_accumulate",
    lambda x, v: x.index_put((index([0, 2, 0]),), v, accumulate=True),
    lambda r: (normal(r, 3, 4), normal(r, 3, 4)),
)
case(
    "index_put_broadcast_values",
    lambda x, v: x.index_put((index([2, 0]), index([1, 3])), v),
    lambda r: (normal(r, 3, 4), normal(r, 1)),
)
case(
    "setitem_tensor_index",
    lambda x, v: _setitem(x * 1, (slice(None), index([3, 1])), v),
    lambda r: (normal(r, 3, 4), normal(r, 3, 2)),
)
case("setitem_mask", lambda x: _setitem(x * 1, x > 0.5, 0.0), lambda r: distinct(r, 3, 4))
case(
    "setitem_slice",
    lambda x, v: _setitem(x * 1, (slice(1, None), 0), v),
    lambda r: (normal(r, 3, 4), normal(r, 2)),
)
case(
    "gather",
    lambda x: ember.gather(x, 1, index([[0, 2], [1, 1], [3, 0]])),
    lambda r: normal(r, 3, 4),
)
case("gather_dim0", lambda x: x.gather(0, index([[2, 0, 1]])), lambda r: normal(r, 3, 4))
case(
    "scatter",
    lambda x, s: ember.scatter(x, 1, index([[0, 2], [3, 1]]), s),
    lambda r: (normal(r, 2, 4), normal(r, 2, 3)),
)
case(
    "scatter_value",
    lambda x: x.scatter(0, index([[1, 0, 1]]), value=1.5),
    lambda r: normal(r, 2, 3),
)
case(
    "scatter_add",
    lambda x, s: ember.scatter_add(x, 0, index([[0, 1, 0], [0, 0, 1]]), s),
    lambda r: (normal(r, 2, 3), normal(r, 3, 3)),
)
case("index_select", lambda x: x.index_select(1, index([2, 0, 2])), lambda r: normal(r, 2, 3))
case(
    "index_select_embedding",
    lambda w: E.embedding(index([[1, 0], [1, 1]]), w),
    lambda r: normal(r, 3, 2),
)
case(
    "index_add",
    lambda x, s: x.index_add(0, index([1, 0, 1]), s, alpha=2.0),
    lambda r: (normal(r, 2, 3), normal(r, 3, 3)),
)

# linear algebra, convolution and pooling
for _a, _b in [
    ((2, 3), (3, 4)),
    ((2, 1, 2, 3), (3, 3, 2)),
    ((3,), (3, 2)),
    ((2, 3), (3,)),
    ((3,), (3,)),
    ((2, 2, 3), (3,)),
    ((3,), (2, 3, 2)),
    ((2, 4, 3), (3, 2)),  # a stack times one matrix: one GEMM over the stacked rows
    ((4, 2, 3), (3, 5)),
]:
    case(
        f"matmul[{_a}@{_b}]",
        lambda a, b: a @ b,
        lambda r, sa=_a, sb=_b: (normal(r, *sa), normal(r, *sb)),
        gradgrad=True,
    )
case(
    "linear_batched_and_vector",
    lambda x, v, w: (ember.nn.functional.linear(x, w), ember.nn.functional.linear(v, w)),
    lambda r: (normal(r, 2, 3, 4), normal(r, 4), normal(r, 5, 4)),
    gradgrad=True,
)
case(
    "matmul_stack_of_a_transposed_view",
    lambda a, b: a.transpose(0, 1) @ b,  # not contiguous: reshaped by a copy
    lambda r: (normal(r, 3, 2, 4), normal(r, 4, 3)),
    gradgrad=True,
)
case(
    "mm_bmm_mv_dot",
    lambda a, b, v, w: (
        ember.mm(a, b).sum(0) + ember.bmm(a[None], b[None])[0, 1] + ember.mv(b.t(), w) + v.dot(v)
    ),
    lambda r: (normal(r, 3, 2), normal(r, 2, 3), normal(r, 3), normal(r, 2)),
)
for _kw in [
    {},
    {"stride": 2, "padding": 1},
    {"dilation": 2, "padding": (2, 1)},
    {"groups": 2, "stride": (1, 2)},
    {"padding": "same", "dilation": (1, 2)},
]:
    _groups = _kw.get("groups", 1)
    case(
        f"conv2d[{_kw}]",
        lambda x, w, kw=_kw: E.conv2d(x, w, **kw),
        lambda r, g=_groups: (normal(r, 1, 2, 5, 5), normal(r, 4, 2 // g, 3, 3)),
    )
case(
    "conv2d_bias_unbatched",
    lambda x, w, b: E.conv2d(x, w, b, padding=1),
    lambda r: (normal(r, 2, 4, 4), normal(r, 2, 2, 2, 2), normal(r, 2)),
)
case(
    "conv2d_backward",
    first_grads(lambda x, w: E.conv2d(x, w, stride=2, padding=1, groups=2)),
    lambda r: (normal(r, 1, 2, 4, 4), normal(r, 2, 1, 3, 3), normal(r, 1, 2, 2, 2)),
)
case(
    "conv2d_backward_dilated",
    first_grads(lambda x, w: E.conv2d(x, w, dilation=2)),
    lambda r: (normal(r, 1, 1, 5, 5), normal(r, 2, 1, 2, 2), normal(r, 1, 2, 3, 3)),
)
for _kw in [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 2, "stride": 2, "ceil_mode": True},
    {"kernel_size": 2, "stride": 1, "dilation": 2},
]:
    case(
        f"max_pool2d[{_kw}]",
        lambda x, kw=_kw: E.max_pool2d(x, **kw),
        lambda r: distinct(r, 1, 2, 5, 5),
    )
for _kw in [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
    {"kernel_size": 2, "stride": 2, "ceil_mode": True},
    {"kernel_size": (2, 3), "stride": (1, 2), "divisor_override": 4},
]:
    case(
        f"avg_pool2d[{_kw}]",
        lambda x, kw=_kw: E.avg_pool2d(x, **kw),
        lambda r: normal(r, 1, 2, 5, 5),
    )
case("avg_pool2d_unbatched", lambda x: E.avg_pool2d(x, 2, 1), lambda r: normal(r, 2, 3, 3))
case(
    "avg_pool2d_backward",
    first_grads(lambda x: E.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)),
    lambda r: (normal(r, 1, 1, 4, 4), normal(r, 1, 1, 3, 3)),
)

_ATTENTION = {"scale": 0.6, "causal": False, "mask": True, "dropout_p": 0.0}
case(
    "attention",  # both outputs: the logsumexp's gradient goes into the same backward op
    lambda q, k, v: dispatch("attention", (q, k, v, mask([[1, 0, 1, 1], [1, 1, 0, 0],
                                                           [0, 1, 1, 1]])), _ATTENTION),
    lambda r: (normal(r, 2, 3, 2), normal(r, 2, 4, 2), normal(r, 1, 4, 3)),
    gradgrad=True,  # create_graph: the backward in Tensor ops
)
case(
    "attention_causal_longer_keys",
    lambda q, k, v: dispatch("attention", (q, k, v), dict(_ATTENTION, causal=True, mask=False,
                                                          scale=None)),
    lambda r: (normal(r, 3, 2), normal(r, 5, 2), normal(r, 5, 2)),
    gradgrad=True,
)

# one LSTM layer over a sequence (T=4, B=2, I=3, H=2): output, h_n and c_n; double backward
# runs the backward's formulas in Tensor ops, through the saved gates and cells
case(
    "lstm_layer",
    lambda x, h, c, w_ih, w_hh, b_ih, b_hh: dispatch(
        "lstm_layer", (x, h, c, w_ih, w_hh, b_ih, b_hh), {"reverse": False})[:3],
    lambda r: (normal(r, 4, 2, 3), normal(r, 2, 2), normal(r, 2, 2), normal(r, 8, 3),
               normal(r, 8, 2), normal(r, 8), normal(r, 8)),
    gradgrad=True,
)
case(
    "lstm_layer_reverse_no_bias",
    lambda x, h, c, w_ih, w_hh: dispatch(
        "lstm_layer", (x, h, c, w_ih, w_hh), {"reverse": True})[:3],
    lambda r: (normal(r, 3, 1, 2), normal(r, 1, 3), normal(r, 1, 3), normal(r, 12, 2),
               normal(r, 12, 3)),
    gradgrad=True,
)

# one GRU layer over a sequence (T=4, B=2, I=3, H=2): output and h_n; double backward runs the
# backward's formulas in Tensor ops, through the saved gates
case(
    "gru_layer",
    lambda x, h, w_ih, w_hh, b_ih, b_hh: dispatch(
        "gru_layer", (x, h, w_ih, w_hh, b_ih, b_hh), {"reverse": False})[:2],
    lambda r: (normal(r, 4, 2, 3), normal(r, 2, 2), normal(r, 6, 3), normal(r, 6, 2),
               normal(r, 6), normal(r, 6)),
    gradgrad=True,
)
case(
    "gru_layer_reverse_no_bias",
    lambda x, h, w_ih, w_hh: dispatch("gru_layer", (x, h, w_ih, w_hh), {"reverse": True})[:2],
    lambda r: (normal(r, 3, 1, 2), normal(r, 1, 3), normal(r, 9, 2), normal(r, 9, 3)),
    gradgrad=True,
)

# training batch norm as one op (x (3, 2, 2, 2), per-channel weight, bias, running stats):
# the output alone goes through batch_norm_train_backward; with the statistics and the
# updated running ones differentiated too, and in double backward, the Tensor-ops formulas
_BATCH_NORM_TRAIN = {"eps": 1e-3, "momentum": 0.3}
case(
    "batch_norm_train",
    lambda x, w, b, rm, rv: dispatch("batch_norm_train", (x, w, b, rm, rv),
                                     _BATCH_NORM_TRAIN)[0],
    lambda r: (normal(r, 3, 2, 2, 2), normal(r, 2), normal(r, 2), normal(r, 2),
               positive(r, 2)),
    gradgrad=True,
)
case(
    "batch_norm_train_statistics",
    lambda x, w, b, rm, rv: dispatch("batch_norm_train", (x, w, b, rm, rv), _BATCH_NORM_TRAIN),
    lambda r: (normal(r, 4, 3, 2), normal(r, 3), normal(r, 3), normal(r, 3), positive(r, 3)),
    gradgrad=True,
)

# composites spanning several primitives
case(
    "softmax_like",
    lambda x: (x - x.amax(1, keepdim=True)).exp() / x.exp().sum(1, True),
    lambda r: distinct(r, 2, 3),
)

# -- issue 16: scans, sorting-based and scatter ops --


def with_zeros(r, *shape):
    """Normal values with a few exact zeros (one or two per row): the cases whose gradients
    need more than a division by the input."""
    x = r.standard_normal(shape)
    x[..., 1] = 0.0
    x[0, ..., 3] = 0.0
    return _leaf(x)


case("cumprod", lambda x: ember.cumprod(x, 1), lambda r: nonzero(r, 3, 5), gradgrad=True)
case("cumprod_with_zeros", lambda x: x.cumprod(-1), lambda r: with_zeros(r, 3, 5),
     gradgrad=True)
case("logcumsumexp", lambda x: ember.logcumsumexp(x, 0), lambda r: normal(r, 4, 3),
     gradgrad=True)
case("median", lambda x: ember.median(x) * 2, lambda r: distinct(r, 3, 4))
case("nanmedian_with_nan", lambda x: x.nanmedian(),
     lambda r: _leaf([[0.5, 1.5, np.nan], [1.7, -0.5, 2.5]]))
for _reduce in ("sum", "prod", "mean", "amax", "amin"):
    for _include_self in (True, False):
        case(f"scatter_reduce_{_reduce}_{'with' if _include_self else 'without'}_self",
             lambda x, s, reduce=_reduce, include_self=_include_self: x.scatter_reduce(
                 1, index([[0, 2, 0], [1, 1, 1]]), s, reduce, include_self=include_self),
             lambda r: (distinct(r, 2, 4), distinct(r, 3, 3, offset=0.011)),
             gradgrad=_reduce in ("sum", "mean"))
case("scatter_reduce_prod_with_zeros",
     lambda x, s: x.scatter_reduce(0, index([0, 1, 0, 2]), s, "prod"),
     lambda r: (_leaf([0.0, 1.5, -0.7]), _leaf([0.8, 0.0, 1.2, 0.0])))


def _setitem(x, key, value):
    x[key] = value
    return x


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_gradcheck(c: Case):
    inputs = c.inputs()
    assert any(isinstance(x, ember.Tensor) and x.requires_grad for x in inputs)
    assert gradcheck(c.fn, inputs, **c.check)


GRADGRAD_CASES = [c for c in CASES if c.gradgrad]


@pytest.mark.parametrize("c", GRADGRAD_CASES, ids=[c.name for c in GRADGRAD_CASES])
def test_gradgradcheck(c: Case):
    inputs = c.inputs()
    outputs = c.fn(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    rng = np.random.default_rng(7)
    grad_outputs = tuple(_leaf(rng.standard_normal(tuple(o.shape))) for o in outputs)
    assert gradgradcheck(c.fn, inputs, grad_outputs, **c.check)


def _ops_differentiated_by(c: Case) -> set:
    """The ops a case links into the autograd graph (so that its gradcheck checks them)."""
    seen = set()

    def record(op, inputs, attrs, out):
        if ember.is_grad_enabled() and any(
            isinstance(x, ember.Tensor) and x.requires_grad for x in inputs
        ):
            seen.add(op)

    previous = tensor_module.tracer_hook
    tensor_module.tracer_hook = record
    try:
        c.fn(*c.inputs())
    finally:
        tensor_module.tracer_hook = previous
    return seen


def test_every_differentiable_op_has_a_gradcheck_case():
    differentiable = {name for name, s in SCHEMAS.items() if s.differentiable}
    covered = set()
    for c in CASES:
        covered |= _ops_differentiated_by(c)
    missing = sorted(differentiable - covered)
    assert not missing, f"differentiable ops without a gradcheck case: {missing}"


def test_coverage_hook_sees_what_a_case_dispatches():
    by_name = {c.name: c for c in CASES}
    assert _ops_differentiated_by(by_name["slice_backward"]) >= {"slice", "slice_backward"}
    assert _ops_differentiated_by(by_name["exp"]) == {"exp"}
    assert "conv2d_backward_input" in _ops_differentiated_by(by_name["conv2d_backward"])
