"""The elementwise op functions: ember.add, ember.where, ember.clamp, ... (the plain ones, such
as ember.exp, are made from their declarations in ir/ops)."""

from __future__ import annotations

import builtins
import math

import numpy as np

from ...errors import runtime_error, type_error, type_name, value_error
from ...ir.dtype_info import finfo
from ...ir.dtypes import as_dtype, get_default_dtype
from ...ir.schema import NUMBER, OpSchema, declared
from ..dispatch import dispatch
from ..factories import check_number
from ..out_arg import write_out
from ..tensor import Tensor


def _plain(schema: OpSchema):
    """The public function of a plain op (ir/ops: arity=): dispatch over exactly its inputs."""
    name = schema.name
    if schema.arity == 1:
        def fn(input: Tensor, *, out=None) -> Tensor:
            if out is None:
                return dispatch(name, (input,))
            return write_out(name, dispatch(name, (input,)), out)

        fn.__doc__ = f"Elementwise {name}."
    else:
        def fn(input, other, *, out=None) -> Tensor:
            if out is None:
                return dispatch(name, (input, other))
            return write_out(name, dispatch(name, (input, other)), out)

        fn.__doc__ = f"Elementwise {name} with broadcasting and type promotion."
    fn.__name__ = fn.__qualname__ = name
    return fn


# ember.exp(x), ember.mul(x, y), ...: the plain ops' functions, made from their declarations
PLAIN = {s.name: _plain(s) for s in declared("function") if s.arity is not None}
globals().update(PLAIN)
abs, eq, ne, lt, le, gt, mul, logical_and, logical_not, logical_or = (  # the ones used below
    PLAIN[name] for name in ("abs", "eq", "ne", "lt", "le", "gt", "mul", "logical_and",
                             "logical_not", "logical_or")
)


def round(input: Tensor, decimals: int = 0) -> Tensor:
    if decimals:
        scale = 10.0**decimals
        return dispatch("round", (input * scale,)) / scale
    return dispatch("round", (input,))


def polygamma(n: int, input: Tensor, *, out=None) -> Tensor:
    """The n-th derivative of digamma (n = 0: digamma itself), elementwise."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise runtime_error(f"polygamma(n, x) does not support negative n (or a non-int n): "
                            f"got {n!r}")
    result = dispatch("polygamma", (input,), {"n": n})
    return result if out is None else write_out("polygamma", result, out)


def _check_operand(op, x):
    if not isinstance(x, (Tensor, *NUMBER)):
        raise type_error(
            f"{op}(): argument 'other' must be Tensor or Number, not {type_name(x)}"
        )


def add(input, other, *, alpha=1, out=None) -> Tensor:
    if alpha != 1:
        other = mul(other, alpha)
    if out is None:
        return dispatch("add", (input, other))
    return write_out("add", dispatch("add", (input, other)), out)


def sub(input, other, *, alpha=1, out=None) -> Tensor:
    if alpha != 1:
        other = mul(other, alpha)
    _check_operand("sub", other)
    if out is None:
        return dispatch("sub", (input, other))
    return write_out("sub", dispatch("sub", (input, other)), out)



def div(input, other, *, rounding_mode: str | None = None, out=None) -> Tensor:
    if out is not None:
        return write_out("div", div(input, other, rounding_mode=rounding_mode), out)
    _check_operand("div", other)
    if rounding_mode is None:
        return dispatch("div", (input, other))
    if rounding_mode == "floor":
        return dispatch("floor_divide", (input, other))
    if rounding_mode == "trunc":
        return dispatch("trunc_divide", (input, other))
    raise value_error(
        f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
        f"'{rounding_mode}'"
    )



def pow(input, exponent, *, out=None) -> Tensor:
    _check_operand("pow", exponent)
    if out is None:
        return dispatch("pow", (input, exponent))
    return write_out("pow", dispatch("pow", (input, exponent)), out)


def where(condition: Tensor, input=None, other=None) -> Tensor:
    if input is None and other is None:
        from .index import nonzero  # where(condition) is nonzero(condition, as_tuple=True)

        return nonzero(condition, as_tuple=True)
    return dispatch("where", (condition, input, other))


def clamp(input: Tensor, min=None, max=None) -> Tensor:
    for name, bound in (("min", min), ("max", max)):
        if bound is not None and not isinstance(bound, Tensor):
            check_number(bound, f"clamp(): argument '{name}'")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        # where, not maximum/minimum: at a tie the gradient goes to input, as PyTorch's
        out = input
        if min is not None:
            out = where(lt(out, min), min, out)
        if max is not None:
            out = where(gt(out, max), max, out)
        return out
    return dispatch("clamp", (input,), {"min": min, "max": max})



def clamp_min(input, min):
    return clamp(input, min=min)


def clamp_max(input, max):
    return clamp(input, max=max)


def cast(input: Tensor, dtype) -> Tensor:
    dtype = as_dtype(dtype)
    if input._dtype is dtype:
        return input
    return dispatch("cast", (input,), {"dtype": dtype.name})


def square(input):
    return mul(input, input)


def isnan(input):
    return ne(input, input)


def isinf(input):
    return eq(abs(input), math.inf) if input.dtype.is_floating_point else zeros_like_bool(input)


def isfinite(input):
    if not input.dtype.is_floating_point:
        return logical_not(zeros_like_bool(input))
    return logical_not(logical_or(isnan(input), isinf(input)))


def zeros_like_bool(input):
    return ne(input, input) if input.dtype.is_floating_point else dispatch("ne", (input, input))


def nan_to_num(input: Tensor, nan: float = 0.0, posinf: float | None = None,
               neginf: float | None = None, *, out=None) -> Tensor:
    """NaN, +inf and -inf replaced by nan, posinf and neginf (by default the dtype's largest
    and lowest finite values); integer and bool tensors come back as they are."""
    if not isinstance(input, Tensor):
        raise type_error(f"nan_to_num(): argument 'input' must be Tensor, not {type_name(input)}")
    if not input.dtype.is_floating_point:
        result = dispatch("clone", (input,))
    else:
        info_max = finfo(input.dtype).max
        high = info_max if posinf is None else float(posinf)
        low = -info_max if neginf is None else float(neginf)
        result = where(isnan(input), float(nan), input)
        result = where(eq(result, math.inf), high, result)
        result = where(eq(result, -math.inf), low, result)
    return result if out is None else write_out("nan_to_num", result, out)


def logit(input: Tensor, eps: float | None = None, *, out=None) -> Tensor:
    """log(p / (1 - p)), p = input clamped to [eps, 1 - eps] where eps is given."""
    p = input if eps is None else clamp(input, float(eps), 1.0 - float(eps))
    result = dispatch("log", (div(p, sub(1.0, p)),))
    return result if out is None else write_out("logit", result, out)


def sinc(input: Tensor, *, out=None) -> Tensor:
    """sin(pi x) / (pi x), 1 at 0 (the normalized sinc); half-precision inputs compute in
    float32 and round once, as PyTorch's (pi x in float16 misses the zeros of sin)."""
    narrow = isinstance(input, Tensor) and input.dtype.name in ("float16", "bfloat16")
    x = dispatch("cast", (input,), {"dtype": "float32"}) if narrow else input
    scaled = mul(x, math.pi)
    zero = eq(x, 0)
    safe = where(zero, 1.0, scaled)
    result = where(zero, 1.0, div(dispatch("sin", (safe,)), safe))
    if narrow:
        result = dispatch("cast", (result,), {"dtype": input.dtype.name})
    return result if out is None else write_out("sinc", result, out)


def mvlgamma(input: Tensor, p: int, *, out=None) -> Tensor:
    """The log of the multivariate gamma function of dimension p: p(p-1)/4 log(pi) +
    sum over j < p of lgamma(x - j/2), which needs every x > (p - 1) / 2."""
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise runtime_error(f"mvlgamma: p has to be greater than or equal to 1, got {p!r}")
    if bool(le(input, (p - 1) / 2).any()):
        raise runtime_error(f"All elements must be greater than (p-1)/2 = {(p - 1) / 2}")
    total = None
    for j in range(p):
        term = dispatch("lgamma", (sub(input, j / 2),))
        total = term if total is None else add(total, term)
    result = add(total, p * (p - 1) / 4 * math.log(math.pi))
    return result if out is None else write_out("mvlgamma", result, out)


def lerp(input, end, weight):
    return input + weight * (end - input)


def isclose(input, other, rtol: float = 1e-5, atol: float = 1e-8,
            equal_nan: bool = False) -> Tensor:
    """|input - other| <= atol + rtol * |other| elementwise, as PyTorch's: equal values
    (infinities included) are close, NaN is close to NaN only with equal_nan."""
    if rtol < 0 or atol < 0:
        raise value_error(f"isclose: rtol and atol must be non-negative, got rtol={rtol} and "
                          f"atol={atol}")
    close = eq(input, other)
    floating = any(getattr(x, "dtype", None) is not None and x.dtype.is_floating_point
                   for x in (input, other))
    if not floating:
        a = cast(input, get_default_dtype()) if isinstance(input, Tensor) else input
        b = cast(other, get_default_dtype()) if isinstance(other, Tensor) else other
    else:
        a, b = input, other
    if equal_nan and floating:
        close = logical_or(close, logical_and(ne(a, a), ne(b, b)))
    difference = abs(sub(a, b))
    allowed = add(abs(mul(b, rtol)) if isinstance(b, Tensor) else builtins.abs(b * rtol), atol)
    finite = eq(difference, difference) if not floating else logical_not(
        logical_or(ne(difference, difference), eq(difference, math.inf)))
    return logical_or(close, logical_and(finite, le(difference, allowed)))


def frac(input: Tensor) -> Tensor:
    """The fractional part, with input's sign: input - trunc(input)."""
    if not input.dtype.is_floating_point:
        raise runtime_error(f'"frac" not implemented for \'{input.dtype.name}\'')
    return sub(input, dispatch("trunc", (input,)))


def allclose(input, other, rtol=1e-5, atol=1e-8, equal_nan=False) -> bool:
    a = input.detach().numpy(force=True)
    b = other.detach().numpy(force=True) if isinstance(other, Tensor) else other
    return bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(input, other) -> bool:
    return input.shape == other.shape and bool(eq(input, other).all())
