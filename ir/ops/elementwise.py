"""Type rules of the elementwise primitives: broadcasting and PyTorch's type promotion."""

from __future__ import annotations

from ..dtypes import FLOAT, as_dtype, bool_
from ..schema import NUMBER, broadcast_inputs, promoted, promoted_float, register
from ..types import TensorType
from ...errors import runtime_error


def _same(inputs, attrs):
    return TensorType(broadcast_inputs(inputs), promoted(inputs))


def _float(inputs, attrs):
    return TensorType(broadcast_inputs(inputs), promoted_float(inputs))


def _to_bool(inputs, attrs):
    return TensorType(broadcast_inputs(inputs), bool_)


def _no_bool(op):
    def rule(inputs, attrs):
        out = _same(inputs, attrs)
        if out.dtype is bool_:
            raise runtime_error(f"{op}: not supported for bool tensors; use logical ops instead")
        return out

    return rule


_FLOAT_UNARY = ("exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "reciprocal", "sin", "cos",
                "tanh", "sigmoid", "erf")
for _name in _FLOAT_UNARY:
    register(_name, kind="elementwise", compute_dtype="output")(_float)

for _name in ("abs", "relu", "floor", "ceil", "round", "trunc", "sign"):
    register(_name, kind="elementwise", compute_dtype="output")(_same)

register("neg", kind="elementwise", compute_dtype="output")(_no_bool("neg"))

for _name in ("add", "mul", "maximum", "minimum"):
    register(_name, kind="elementwise", compute_dtype="output")(_same)

register("sub", kind="elementwise", compute_dtype="output")(_no_bool("sub"))
register("remainder", kind="elementwise", compute_dtype="output")(_no_bool("remainder"))
register("div", kind="elementwise", compute_dtype="output")(_float)


for _name in ("floor_divide", "trunc_divide"):
    register(_name, kind="elementwise", compute_dtype="output")(_no_bool(_name))


@register("pow", kind="elementwise", compute_dtype="output")
def _pow(inputs, attrs):
    out = _same(inputs, attrs)
    exponent = inputs[1]
    if out.dtype.category != FLOAT and isinstance(exponent, NUMBER) and exponent < 0:
        raise runtime_error("Integers to negative integer powers are not allowed.")
    return out


for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
    register(_name, kind="elementwise", compute_dtype=promoted, differentiable=False)(_to_bool)

for _name in ("logical_and", "logical_or", "logical_xor", "logical_not"):
    register(_name, kind="elementwise", differentiable=False)(_to_bool)


@register("where", kind="elementwise", compute_dtype=promoted, cast_start=1)
def _where(inputs, attrs):
    cond = inputs[0]
    if isinstance(cond, NUMBER) or cond.dtype is not bool_:
        got = (type(cond).__name__ if isinstance(cond, NUMBER)
               else f"a tensor with dtype {cond.dtype.name}")
        raise runtime_error(f"where expected condition to be a boolean tensor, but got {got}")
    return TensorType(broadcast_inputs(inputs), promoted(inputs[1:]))


@register("clamp", kind="elementwise")
def _clamp(inputs, attrs):
    lo, hi = attrs.get("min"), attrs.get("max")
    if lo is None and hi is None:
        raise runtime_error("torch.clamp: At least one of 'min' or 'max' must not be None")
    x = inputs[0]
    bounds = [b for b in (lo, hi) if b is not None]
    out = TensorType(tuple(x.shape), promoted([x, *bounds]))
    if out.dtype is bool_:
        raise runtime_error("clamp is not supported for bool tensors")
    return out


@register("cast", kind="elementwise")
def _cast(inputs, attrs):
    (x,) = inputs
    return TensorType(tuple(x.shape), as_dtype(attrs["dtype"]))
