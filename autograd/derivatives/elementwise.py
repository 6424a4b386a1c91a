"""Derivatives of the elementwise primitives."""

from __future__ import annotations

import math

from ..._tensor import ops as E
from .registry import derivative, save_first, save_other, save_second

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _is_tensor(x) -> bool:
    return hasattr(x, "_data")


@derivative("neg", save_inputs=False)
def _neg(node, g):
    return (E.neg(g),)


@derivative("add", save_inputs=False)
def _add(node, g):
    return g, g


@derivative("sub", save_inputs=False)
def _sub(node, g):
    return g, E.neg(g)


@derivative("clone", "cast", save_inputs=False)
def _identity(node, g):
    return (g,)


@derivative(
    "sign", "floor", "ceil", "round", "trunc", "floor_divide", "trunc_divide", save_inputs=False
)
def _zero(node, g):
    zero = E.mul(g, 0)
    return tuple(zero for _ in node.next_functions)


@derivative("abs")
def _abs(node, g):
    (x,) = node.inputs
    return (E.mul(g, E.sign(x)),)


@derivative("exp", save_inputs=False, save_outputs=True)
def _exp(node, g):
    return (E.mul(g, node.outputs[0]),)


@derivative("expm1", save_inputs=False, save_outputs=True)
def _expm1(node, g):
    return (E.mul(g, E.add(node.outputs[0], 1)),)


@derivative("log")
def _log(node, g):
    return (E.div(g, node.inputs[0]),)


@derivative("log1p")
def _log1p(node, g):
    return (E.div(g, E.add(node.inputs[0], 1)),)


@derivative("sqrt", save_inputs=False, save_outputs=True)
def _sqrt(node, g):
    return (E.div(g, E.mul(node.outputs[0], 2)),)


@derivative("rsqrt", save_inputs=False, save_outputs=True)
def _rsqrt(node, g):
    out = node.outputs[0]
    return (E.mul(E.mul(g, -0.5), E.mul(E.mul(out, out), out)),)


@derivative("reciprocal", save_inputs=False, save_outputs=True)
def _reciprocal(node, g):
    out = node.outputs[0]
    return (E.neg(E.mul(g, E.mul(out, out))),)


@derivative("sin")
def _sin(node, g):
    return (E.mul(g, E.cos(node.inputs[0])),)


@derivative("cos")
def _cos(node, g):
    return (E.neg(E.mul(g, E.sin(node.inputs[0]))),)


@derivative("tanh", save_inputs=False, save_outputs=True)
def _tanh(node, g):
    out = node.outputs[0]
    return (E.mul(g, E.sub(1, E.mul(out, out))),)


@derivative("sigmoid", save_inputs=False, save_outputs=True)
def _sigmoid(node, g):
    out = node.outputs[0]
    return (E.mul(g, E.mul(out, E.sub(1, out))),)


@derivative("relu", save_inputs=False, save_outputs=True)
def _relu(node, g):
    return (E.where(E.gt(node.outputs[0], 0), g, 0.0),)


@derivative("erf")
def _erf(node, g):
    x = node.inputs[0]
    return (E.mul(g, E.mul(E.exp(E.neg(E.mul(x, x))), _TWO_OVER_SQRT_PI)),)


@derivative("erfc")
def _erfc(node, g):
    x = node.inputs[0]
    return (E.mul(g, E.mul(E.exp(E.neg(E.mul(x, x))), -_TWO_OVER_SQRT_PI)),)


@derivative("erfinv", save_inputs=False, save_outputs=True)
def _erfinv(node, g):
    y = node.outputs[0]
    return (E.mul(g, E.mul(E.exp(E.mul(y, y)), math.sqrt(math.pi) / 2)),)


@derivative("lgamma")
def _lgamma(node, g):
    return (E.mul(g, E.digamma(node.inputs[0])),)


@derivative("digamma")
def _digamma(node, g):
    return (E.mul(g, E.polygamma(1, node.inputs[0])),)


@derivative("polygamma")
def _polygamma(node, g):
    return (E.mul(g, E.polygamma(node.attrs["n"] + 1, node.inputs[0])),)


@derivative("mul", save_inputs=save_other)
def _mul(node, g):
    a, b = node.inputs
    need_a, need_b = node.needs_input_grad
    return (E.mul(g, b) if need_a else None, E.mul(g, a) if need_b else None)


@derivative("div", save_inputs=lambda needs: (needs[1], needs[0] or needs[1]))
def _div(node, g):
    a, b = node.inputs
    need_a, need_b = node.needs_input_grad
    ga = E.div(g, b) if need_a else None
    gb = E.neg(E.div(E.mul(g, a), E.mul(b, b))) if need_b else None
    return ga, gb


@derivative("remainder")
def _remainder(node, g):
    a, b = node.inputs
    need_a, need_b = node.needs_input_grad
    gb = E.neg(E.mul(g, E.div(a, b, rounding_mode="floor"))) if need_b else None
    return (g if need_a else None), gb


@derivative("pow", save_outputs=True)
def _pow(node, g):
    a, b = node.inputs
    need_a, need_b = node.needs_input_grad
    ga = gb = None
    if need_a:
        if _is_tensor(b):
            da = E.mul(b, E.pow(a, E.sub(b, 1)))
            # a 0 (not 0 * inf = nan) where the exponent is 0, as PyTorch
            da = E.where(E.eq(b, 0), 0.0, da)
        elif b == 0:
            da = E.mul(a, 0)
        else:
            da = E.mul(E.pow(a, b - 1), b)
        ga = E.mul(g, da)
    if need_b:
        out = node.outputs[0]
        if _is_tensor(a):
            db = E.mul(out, E.log(a))
            db = E.where(E.logical_and(E.eq(a, 0), E.ge(b, 0)), 0.0, db)
        else:
            db = E.mul(out, math.log(a) if a > 0 else (-math.inf if a == 0 else math.nan))
            if a == 0:
                db = E.where(E.ge(b, 0), 0.0, db)
        gb = E.mul(g, db)
    return ga, gb


def _split_ties(node, g, wins):
    a, b = node.inputs
    need_a, need_b = node.needs_input_grad
    half = E.mul(g, 0.5)
    tie = E.eq(a, b)
    ga = E.where(wins(a, b), g, E.where(tie, half, 0.0)) if need_a else None
    gb = E.where(wins(b, a), g, E.where(tie, half, 0.0)) if need_b else None
    return ga, gb


@derivative("maximum")
def _maximum(node, g):
    return _split_ties(node, g, E.gt)


@derivative("minimum")
def _minimum(node, g):
    return _split_ties(node, g, E.lt)


@derivative("where", save_inputs=save_first)
def _where(node, g):
    cond = node.inputs[0]
    _, need_a, need_b = node.needs_input_grad
    # exact zeros on the unselected side: g * 0 would be NaN where g is inf, unlike PyTorch
    return (
        None,
        E.where(cond, g, 0.0) if need_a else None,
        E.where(cond, 0.0, g) if need_b else None,
    )


@derivative("clamp")
def _clamp(node, g):
    (x,) = node.inputs
    lo, hi = node.attrs.get("min"), node.attrs.get("max")
    keep = None
    if lo is not None:
        keep = E.ge(x, lo)
    if hi is not None:
        upper = E.le(x, hi)
        keep = upper if keep is None else E.logical_and(keep, upper)
    return (E.where(keep, g, 0.0),)


@derivative("masked_fill", save_inputs=save_second)
def _masked_fill(node, g):
    mask = node.inputs[1]
    return E.masked_fill(g, mask, 0.0), None


# -- inverse trigonometric and hyperbolic functions, logs and powers of 2 and 10 -------------
# PyTorch's formulas (derivatives.yaml), so gradients round as PyTorch's do


@derivative("asin")
def _asin(node, g):
    x = node.inputs[0]
    return (E.mul(g, E.rsqrt(E.add(E.neg(E.mul(x, x)), 1))),)


@derivative("acos")
def _acos(node, g):
    x = node.inputs[0]
    return (E.mul(g, E.neg(E.rsqrt(E.add(E.neg(E.mul(x, x)), 1)))),)


@derivative("tan", save_inputs=False, save_outputs=True)
def _tan(node, g):
    out = node.outputs[0]
    return (E.mul(g, E.add(E.mul(out, out), 1)),)


@derivative("atan")
def _atan(node, g):
    x = node.inputs[0]
    return (E.div(g, E.add(E.mul(x, x), 1)),)


@derivative("sinh")
def _sinh(node, g):
    return (E.mul(g, E.cosh(node.inputs[0])),)


@derivative("cosh")
def _cosh(node, g):
    return (E.mul(g, E.sinh(node.inputs[0])),)


@derivative("asinh")
def _asinh(node, g):
    x = node.inputs[0]
    return (E.mul(g, E.rsqrt(E.add(E.mul(x, x), 1))),)


@derivative("acosh")
def _acosh(node, g):
    x = node.inputs[0]
    return (E.mul(g, E.rsqrt(E.sub(E.mul(x, x), 1))),)


@derivative("atanh")
def _atanh(node, g):
    x = node.inputs[0]
    return (E.mul(g, E.div(1, E.sub(1, E.mul(x, x)))),)


@derivative("log2")
def _log2(node, g):
    return (E.div(g, E.mul(node.inputs[0], math.log(2.0))),)


@derivative("log10")
def _log10(node, g):
    return (E.div(g, E.mul(node.inputs[0], math.log(10.0))),)


@derivative("exp2", save_inputs=False, save_outputs=True)
def _exp2(node, g):
    return (E.mul(E.mul(g, node.outputs[0]), math.log(2.0)),)


# -- binary float ops ----------------------------------------------------------------------


@derivative("atan2")
def _atan2(node, g):
    a, b = node.inputs
    need_a, need_b = node.needs_input_grad
    scale = E.div(g, E.add(E.mul(a, a), E.mul(b, b)))
    return (E.mul(scale, b) if need_a else None,
            E.mul(scale, E.neg(a) if _is_tensor(a) else -a) if need_b else None)


@derivative("hypot", save_outputs=True)
def _hypot(node, g):
    a, b = node.inputs
    need_a, need_b = node.needs_input_grad
    out = node.outputs[0]
    return (E.div(E.mul(g, a), out) if need_a else None,
            E.div(E.mul(g, b), out) if need_b else None)


def _add_exp_grads(node, g, exp):
    a, b = node.inputs
    need_a, need_b = node.needs_input_grad
    return (E.div(g, E.add(exp(E.sub(b, a)), 1)) if need_a else None,
            E.div(g, E.add(exp(E.sub(a, b)), 1)) if need_b else None)


@derivative("logaddexp")
def _logaddexp(node, g):
    return _add_exp_grads(node, g, E.exp)


@derivative("logaddexp2")
def _logaddexp2(node, g):
    return _add_exp_grads(node, g, E.exp2)


@derivative("copysign", save_outputs=True)
def _copysign(node, g):
    a, _ = node.inputs
    need_a, need_b = node.needs_input_grad
    ga = None
    if need_a:
        # the output's sign over the input's: +-1, and 0 where the input is 0 (as PyTorch)
        ratio = E.div(node.outputs[0], a)
        ga = E.mul(g, E.where(E.eq(a, 0), 0.0, ratio))
    return ga, (E.mul(g, 0) if need_b else None)


@derivative("xlogy")
def _xlogy(node, g):
    x, y = node.inputs
    need_x, need_y = node.needs_input_grad
    gx = E.mul(g, E.xlogy(E.cast(E.ne(x, 0), g.dtype), y)) if need_x else None
    gy = E.div(E.mul(g, x), y) if need_y else None
    return gx, gy


@derivative("fmod")
def _fmod(node, g):
    a, b = node.inputs
    need_a, need_b = node.needs_input_grad
    gb = E.neg(E.mul(g, E.div(a, b, rounding_mode="trunc"))) if need_b else None
    return (g if need_a else None), gb
