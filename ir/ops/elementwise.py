"""The elementwise primitives' declarations: type rules (broadcasting and PyTorch's type
promotion), public forms, eager ufunc, fusion dtypes, C math function and ONNX operator."""

from __future__ import annotations

from ...errors import runtime_error
from ..dtypes import FLOAT, as_dtype, bool_
from ..schema import (
    NUMBER,
    broadcast_inputs,
    dtype_attr,
    int_attr,
    number_attr,
    promoted,
    promoted_float,
    register,
)
from ..types import TensorType


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


# The public forms of most elementwise ops: ember.exp(x), x.exp(), x.exp_()
ALL = ("function", "method", "inplace")
NOT_BOOL = "fiu"  # arithmetic fuses for every dtype but bool
ANY = "fiub"


def _declare(name, rule, fuse, ufunc=None, *, arity=1, variants=ALL, num_inputs=None,
             **more):
    register(name, kind="elementwise", compute_dtype="output", arity=arity, variants=variants,
             fuse=fuse, ufunc=ufunc, num_inputs=num_inputs, attrs={}, **more)(rule)


# Unary ops on floats: integers and bool compute in the default float dtype.
#   name          numpy ufunc   C math   inline polynomial (CPU)   ONNX
for _name, _ufunc, _libm, _mathlib, _onnx in (
    ("exp",        "exp",        "exp",   True,                     "Exp"),
    ("expm1",      "expm1",      "expm1", True,                     None),
    ("log",        "log",        "log",   True,                     "Log"),
    ("log1p",      "log1p",      "log1p", True,                     None),
    ("sqrt",       "sqrt",       "sqrt",  False,                    "Sqrt"),
    ("rsqrt",      None,         None,    False,                    None),
    ("reciprocal", None,         None,    False,                    "Reciprocal"),
    ("sin",        "sin",        "sin",   True,                     "Sin"),
    ("cos",        "cos",        "cos",   True,                     "Cos"),
    ("tanh",       "tanh",       "tanh",  True,                     "Tanh"),
    ("sigmoid",    None,         None,    True,                     "Sigmoid"),
    ("erf",        None,         "erf",   True,                     "Erf"),
):
    _declare(_name, _float, "f", _ufunc, libm=_libm, mathlib=_mathlib, onnx=_onnx)

# Unary ops on floats that run their eager kernel inside compiled programs too (no fused
# template yet). aliases: numpy's names, which PyTorch accepts as well.
for _name, _ufunc, _onnx, _alias in (
    ("asin",  "arcsin",  "Asin",  "arcsin"),
    ("acos",  "arccos",  "Acos",  "arccos"),
    ("atan",  "arctan",  "Atan",  "arctan"),
    ("tan",   "tan",     "Tan",   None),
    ("sinh",  "sinh",    "Sinh",  None),
    ("cosh",  "cosh",    "Cosh",  None),
    ("asinh", "arcsinh", "Asinh", "arcsinh"),
    ("acosh", "arccosh", "Acosh", "arccosh"),
    ("atanh", "arctanh", "Atanh", "arctanh"),
    ("log2",  "log2",    None,    None),
    ("log10", "log10",   None,    None),
    ("exp2",  "exp2",    None,    None),
):
    _declare(_name, _float, "", _ufunc, onnx=_onnx, aliases=(_alias,) if _alias else ())

# Special functions on floats (torch.special's): eager kernels only, mapping inline IR in
# double precision over the array (llvm/mathlib.py EAGER_ONLY), whole-array numpy without it
# (runtime/kernels/special.py). polygamma(n, x) is written by hand (n comes first).
for _name in ("erfc", "erfinv", "lgamma", "digamma"):
    _declare(_name, _float, "", None)
register("polygamma", kind="elementwise", compute_dtype="output", num_inputs=1, variants=(),
         fuse="", attrs={"n": int_attr(low=0)})(_float)

# Unary ops that keep their input's dtype (round is ember.round(x, decimals=0), by hand).
for _name, _ufunc, _libm, _onnx, _extra in (
    ("abs",   "absolute", None,    "Abs",   {"aliases": ("absolute",)}),
    ("relu",  None,       None,    "Relu",  {}),
    ("floor", "floor",    "floor", "Floor", {}),
    ("ceil",  "ceil",     "ceil",  "Ceil",  {}),
    ("round", "round",    "rint",  "Round", {"arity": None, "num_inputs": 1}),
    ("trunc", "trunc",    "trunc", None,    {}),
    ("sign",  None,       None,    "Sign",  {}),
):
    _declare(_name, _same, NOT_BOOL, _ufunc, libm=_libm, onnx=_onnx, **_extra)

_declare("neg", _no_bool("neg"), NOT_BOOL, "negative", onnx="Neg", aliases=("negative",))

# Binary ops with broadcasting and PyTorch's type promotion. add, sub, div and pow are written
# by hand in _tensor/ops (alpha=, rounding_mode=, operand checks).
_declare("add", _same, ANY, "add", arity=None, num_inputs=2, onnx="Add")
_declare("mul", _same, ANY, "multiply", arity=2, onnx="Mul", aliases=("multiply",))
_declare("maximum", _same, ANY, "maximum", arity=2, onnx="Max")
_declare("minimum", _same, ANY, "minimum", arity=2, onnx="Min")
_declare("sub", _no_bool("sub"), NOT_BOOL, "subtract", arity=None, num_inputs=2, onnx="Sub",
         aliases=("subtract",))
_declare("div", _float, "f", "true_divide", arity=None, num_inputs=2, onnx="Div",
         aliases=("divide", "true_divide"))
# numpy's remainder and floor division raise on an integer zero divisor (runtime kernels)
_declare("remainder", _no_bool("remainder"), "", arity=2)
_declare("floor_divide", _no_bool("floor_divide"), "", arity=2)
_declare("trunc_divide", _no_bool("trunc_divide"), "", arity=None, num_inputs=2, variants=())


# Binary ops on floats (integers compute in the default float dtype), eager kernels only.
_declare("atan2", _float, "", "arctan2", arity=2, aliases=("arctan2",))
_declare("hypot", _float, "", "hypot", arity=2)
_declare("logaddexp", _float, "", "logaddexp", arity=2)
_declare("logaddexp2", _float, "", "logaddexp2", arity=2)
_declare("copysign", _float, "", "copysign", arity=2)
_declare("xlogy", _float, "", None, arity=2)
# C's fmod: the remainder takes the dividend's sign (remainder: the divisor's)
_declare("fmod", _no_bool("fmod"), "", None, arity=2)


def _integral(op):
    """Bitwise ops: integer and bool tensors only, in their promoted dtype."""

    def rule(inputs, attrs):
        out = _same(inputs, attrs)
        if out.dtype.category == FLOAT:
            raise runtime_error(f'"{op}" not implemented for \'{out.dtype.name}\': bitwise ops '
                                "take integer and bool tensors")
        return out

    return rule


for _name, _ufunc in (("bitwise_and", "bitwise_and"), ("bitwise_or", "bitwise_or"),
                      ("bitwise_xor", "bitwise_xor")):
    register(_name, kind="elementwise", compute_dtype="output", differentiable=False, arity=2,
             variants=ALL, fuse="iub", ufunc=_ufunc, attrs={})(_integral(_name))
register("bitwise_not", kind="elementwise", compute_dtype="output", differentiable=False,
         arity=1, variants=ALL, fuse="iub", ufunc="invert", attrs={})(_integral("bitwise_not"))
# shifts: a count past the width gives 0 (or -1 for a negative number shifted right), as in
# PyTorch; numpy's shifts agree, C's would be undefined, so they do not fuse
for _name, _ufunc in (("bitwise_left_shift", "left_shift"),
                      ("bitwise_right_shift", "right_shift")):
    register(_name, kind="elementwise", compute_dtype="output", differentiable=False, arity=2,
             variants=ALL, ufunc=_ufunc, attrs={})(_integral(_name))


@register("pow", kind="elementwise", compute_dtype="output", variants=ALL, fuse=NOT_BOOL,
          ufunc="power", onnx="Pow", num_inputs=2, attrs={}, reads_numbers=True)
def _pow(inputs, attrs):
    out = _same(inputs, attrs)
    exponent = inputs[1]
    if out.dtype.category != FLOAT and isinstance(exponent, NUMBER) and exponent < 0:
        raise runtime_error("Integers to negative integer powers are not allowed.")
    return out


for _name, _ufunc, _alias in (("eq", "equal", ()), ("ne", "not_equal", ()),
                              ("lt", "less", ("less",)), ("le", "less_equal", ("less_equal",)),
                              ("gt", "greater", ("greater",)),
                              ("ge", "greater_equal", ("greater_equal",))):
    register(_name, kind="elementwise", compute_dtype=promoted, differentiable=False, arity=2,
             variants=("function", "method"), aliases=_alias, fuse=ANY, ufunc=_ufunc,
             attrs={})(_to_bool)

for _name in ("logical_and", "logical_or", "logical_xor"):
    register(_name, kind="elementwise", differentiable=False, arity=2,
             variants=("function", "method"), fuse=ANY, ufunc=_name, attrs={})(_to_bool)
register("logical_not", kind="elementwise", differentiable=False, arity=1, variants=ALL,
         fuse=ANY, ufunc="logical_not", attrs={})(_to_bool)


@register("where", kind="elementwise", compute_dtype=promoted, cast_start=1,
          variants=("function",), fuse=ANY, num_inputs=3, attrs={})
def _where(inputs, attrs):
    cond = inputs[0]
    if isinstance(cond, NUMBER) or cond.dtype is not bool_:
        got = (type(cond).__name__ if isinstance(cond, NUMBER)
               else f"a tensor with dtype {cond.dtype.name}")
        raise runtime_error(f"where expected condition to be a boolean tensor, but got {got}")
    return TensorType(broadcast_inputs(inputs), promoted(inputs[1:]))


@register("clamp", kind="elementwise", variants=ALL, aliases=("clip",), fuse=NOT_BOOL,
          num_inputs=1, attrs={"min": number_attr(nullable=True, optional=True),
                               "max": number_attr(nullable=True, optional=True)})
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


@register("cast", kind="elementwise", fuse=ANY, num_inputs=1, attrs={"dtype": dtype_attr()})
def _cast(inputs, attrs):
    (x,) = inputs
    return TensorType(tuple(x.shape), as_dtype(attrs["dtype"]))
