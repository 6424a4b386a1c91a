"""CUDA C templates of the scalar vocabulary (codegen/scalar.py): one function per op name.

The CUDA twin of codegen/llvm/scalar.py. A template takes the expression's operands as C
expressions (Operands) and returns the C expression of its result, in the register type of its
dtype (float for float16, which the emitter rounds back to half after every op, as numpy does).
Ops whose scalar is a C math function (the declaration's `libm`: expf, sqrtf, ...) get their
template from the op table; the rest are written here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...ir import ops as _ops  # noqa: F401  (registers the declarations)
from ...ir.schema import SCHEMAS

REGISTER = {"float16": "float", "float32": "float", "float64": "double", "int8": "signed char",
            "int16": "short", "int32": "int", "int64": "long long", "uint8": "unsigned char",
            "bool": "bool"}
KIND = {"float16": "f", "float32": "f", "float64": "f", "int8": "i", "int16": "i", "int32": "i",
        "int64": "i", "uint8": "u", "bool": "b"}


@dataclass(frozen=True)
class Operands:
    """One expression's operands as C text, with the dtypes that decide its form."""

    args: list
    arg_dtypes: list
    dtype: str  # the result's
    attr: dict

    @property
    def f64(self) -> bool:
        return self.dtype == "float64" or bool(self.arg_dtypes) and self.arg_dtypes[0] == "float64"

    @property
    def half(self) -> bool:
        return self.dtype == "float16" or bool(self.arg_dtypes) and self.arg_dtypes[0] == "float16"

    @property
    def kind(self) -> str:
        return KIND[self.dtype]

    def math(self, name: str) -> str:
        """A C math function at this precision: sqrt for double, sqrtf for float."""
        return name if self.f64 else f"{name}f"

    @property
    def one(self) -> str:
        return "1.0" if self.f64 else "1.0f"


TEMPLATES: dict[str, Callable[[Operands], str]] = {}


def template(*names: str):
    def register(fn):
        for name in names:
            TEMPLATES[name] = fn
        return fn

    return register


def literal(value, dtype: str) -> str:
    """value as a C literal of dtype (NaN and infinities by their bits)."""
    kind = KIND[dtype]
    if kind == "b":
        return "true" if value else "false"
    if kind == "f":
        if dtype == "float16":
            value = float(np.float16(value))  # the float16 number eager computes with
        value = float(value)
        if math.isnan(value):
            return "__int_as_float(0x7fc00000)" if dtype != "float64" else \
                "__longlong_as_double(0x7ff8000000000000LL)"
        if math.isinf(value):
            text = "__int_as_float(0x7f800000)" if dtype != "float64" else \
                "__longlong_as_double(0x7ff0000000000000LL)"
            return text if value > 0 else f"(-{text})"
        text = repr(value)
        return text if dtype == "float64" else f"{text}f"
    bits = {"int8": 8, "int16": 16, "int32": 32, "int64": 64, "uint8": 8}[dtype]
    value = int(value)
    if kind == "u":
        value %= 1 << bits
    else:
        value = (value + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))
    if dtype == "int64":
        return f"{value}LL" if value != -(1 << 63) else "(-9223372036854775807LL - 1)"
    return f"(({REGISTER[dtype]}){value})" if value >= 0 else f"(({REGISTER[dtype]})({value}))"


def truth(value: str, dtype: str) -> str:
    return value if dtype == "bool" else f"({value} != 0)"


def cast(value: str, source: str, target: str) -> str:
    if source == target:
        return value
    if target == "bool":
        return f"({value} != 0)"
    text = f"(({REGISTER[target]})({value}))"
    return f"ember_r16({text})" if target == "float16" else text


# -- arithmetic ------------------------------------------------------------------------------


def _arithmetic(symbol: str, bool_symbol: str | None = None):
    def emit(x: Operands) -> str:
        if x.kind == "b" and bool_symbol:
            return f"({x.args[0]} {bool_symbol} {x.args[1]})"
        return f"({x.args[0]} {symbol} {x.args[1]})"

    return emit


for _name, _symbol, _bool in (("add", "+", "||"), ("sub", "-", None), ("mul", "*", "&&"),
                              ("div", "/", None)):
    TEMPLATES[_name] = _arithmetic(_symbol, _bool)


@template("neg")
def _neg(x: Operands) -> str:
    return f"(-{x.args[0]})"


@template("abs")
def _abs(x: Operands) -> str:
    a = x.args[0]
    if x.kind == "f":
        return f"{'fabs' if x.f64 else 'fabsf'}({a})"
    if x.kind == "u":
        return a
    return f"({a} < 0 ? ({REGISTER[x.dtype]})(-{a}) : {a})"


def _max(x: Operands) -> str:
    return "ember_max_h" if x.dtype == "float16" else "ember_max"


def _min(x: Operands) -> str:
    return "ember_min_h" if x.dtype == "float16" else "ember_min"


@template("maximum")
def _maximum(x: Operands) -> str:
    if x.kind == "b":
        return f"({x.args[0]} || {x.args[1]})"
    return f"{_max(x)}({x.args[0]}, {x.args[1]})"


@template("minimum")
def _minimum(x: Operands) -> str:
    if x.kind == "b":
        return f"({x.args[0]} && {x.args[1]})"
    return f"{_min(x)}({x.args[0]}, {x.args[1]})"


@template("relu")
def _relu(x: Operands) -> str:
    return f"{_max(x)}({x.args[0]}, {literal(0, x.dtype)})"


@template("clamp")
def _clamp(x: Operands) -> str:
    value = x.args[0]
    if x.attr.get("min") is not None:
        value = f"{_max(x)}({value}, {literal(x.attr['min'], x.dtype)})"
    if x.attr.get("max") is not None:
        value = f"{_min(x)}({value}, {literal(x.attr['max'], x.dtype)})"
    return value


@template("sign")
def _sign(x: Operands) -> str:
    t, a = REGISTER[x.dtype], x.args[0]
    if x.kind == "u":
        return f"(({t})({a} != 0))"
    return f"(({t})({a} > 0) - ({t})({a} < 0))"


def _libm(function: str):
    def emit(x: Operands) -> str:
        if x.kind != "f":
            return x.args[0]  # floor/ceil/round/trunc of an integer
        return f"{x.math(function)}({x.args[0]})"

    return emit


@template("sigmoid")
def _sigmoid(x: Operands) -> str:
    return f"({x.one} / ({x.one} + {x.math('exp')}(-{x.args[0]})))"


@template("rsqrt")
def _rsqrt(x: Operands) -> str:
    root = f"{x.math('sqrt')}({x.args[0]})"
    return f"({x.one} / {'ember_r16(' + root + ')' if x.half else root})"


@template("reciprocal")
def _reciprocal(x: Operands) -> str:
    return f"({x.one} / {x.args[0]})"


@template("pow")
def _pow(x: Operands) -> str:
    # only codegen.scalar.POW_EXPONENTS reach here, as in the LLVM backend
    exponent, a = float(x.attr["exponent"]), x.args[0]
    if exponent == 1.0:
        return a
    if exponent == 2.0:
        return f"({a} * {a})"
    if exponent == 3.0:
        return f"(({a} * {a}) * {a})"
    if exponent == 0.5:
        return f"{x.math('sqrt')}({a})"
    return f"({literal(1, x.dtype)} / {a})"


@template("isfinite")
def _isfinite(x: Operands) -> str:
    return f"isfinite({x.args[0]})"


# -- comparisons, logic and selection --------------------------------------------------------


def _comparison(symbol: str):
    return lambda x: f"({x.args[0]} {symbol} {x.args[1]})"


for _name, _symbol in (("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"),
                       ("ge", ">=")):
    TEMPLATES[_name] = _comparison(_symbol)


def _logical(symbol: str):
    def emit(x: Operands) -> str:
        a, b = (truth(v, d) for v, d in zip(x.args, x.arg_dtypes))
        return f"({a} {symbol} {b})"

    return emit


for _name, _symbol in (("logical_and", "&&"), ("logical_or", "||"), ("logical_xor", "!=")):
    TEMPLATES[_name] = _logical(_symbol)


@template("logical_not")
def _logical_not(x: Operands) -> str:
    return f"(!{truth(x.args[0], x.arg_dtypes[0])})"


for _name, _symbol in (("bitwise_and", "&"), ("bitwise_or", "|"), ("bitwise_xor", "^")):
    TEMPLATES[_name] = _comparison(_symbol)  # the same form: (a op b)


@template("bitwise_not")
def _bitwise_not(x: Operands) -> str:
    # bool registers are C++ bools, where ~true is -2 (true again): negate them logically
    return f"(!{x.args[0]})" if x.kind == "b" else f"(({REGISTER[x.dtype]})(~{x.args[0]}))"


@template("where", "select")
def _where(x: Operands) -> str:
    return f"({truth(x.args[0], x.arg_dtypes[0])} ? {x.args[1]} : {x.args[2]})"


@template("masked_fill")
def _masked_fill(x: Operands) -> str:
    return f"({truth(x.args[1], x.arg_dtypes[1])} ? {x.args[2]} : {x.args[0]})"


@template("clone")
def _clone(x: Operands) -> str:
    return x.args[0]


# the ops whose scalar is a C math function, from their declarations (ir/ops)
for _schema in SCHEMAS.values():
    if _schema.libm is not None:
        TEMPLATES[_schema.name] = _libm(_schema.libm)
