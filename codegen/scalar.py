"""The scalar vocabulary of fused kernels: which ops a kernel spec may hold, and for which dtypes.

Every backend provides a template for each op listed here (codegen/llvm/scalar.py for the CPU;
the CUDA backend emits the same names), so the fusion pass decides what is fusable from this
table alone. An op absent from it, or present without the dtype kind at hand, runs its eager
kernel instead.

Kinds: "f" floating point, "i" signed integer, "u" unsigned integer, "b" bool. An op computes
in one dtype (its compute dtype, as in eager dispatch); comparisons return bool.
"""

from __future__ import annotations

FLOAT_ONLY = frozenset({
    "exp", "expm1", "log", "log1p", "tanh", "sigmoid", "erf", "sin", "cos", "sqrt", "rsqrt",
    "reciprocal", "div", "isfinite",
})
ARITHMETIC = frozenset({"add", "sub", "mul", "neg", "abs", "maximum", "minimum", "relu", "sign",
                        "clamp", "floor", "ceil", "round", "trunc", "pow"})
COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
LOGICAL = frozenset({"logical_and", "logical_or", "logical_xor", "logical_not"})
ANY_DTYPE = frozenset({"where", "select", "masked_fill", "cast", "clone"})

REDUCTIONS = frozenset({"sum", "max", "min", "prod"})

# pow is fused only with a constant exponent numpy itself computes without powf (x*x, sqrt,
# 1/x), so compiled and eager round alike; float16 power always goes through powf, which only
# x*x and 1/x match exactly
POW_EXPONENTS = frozenset({0.5, 1.0, 2.0, -1.0})
POW_EXPONENTS_FLOAT16 = frozenset({1.0, 2.0, -1.0})


def supports(op: str, kind: str) -> bool:
    """Whether every backend can emit `op` computing in a dtype of `kind`."""
    if op in FLOAT_ONLY:
        return kind == "f"
    if op in ARITHMETIC:
        return kind in "fiu" or (kind == "b" and op in ("add", "mul", "maximum", "minimum"))
    return op in COMPARISONS or op in LOGICAL or op in ANY_DTYPE
