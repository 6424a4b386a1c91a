"""The scalar vocabulary of fused kernels: which ops a kernel spec may hold, and for which dtypes.

An elementwise op declares the dtype kinds it fuses for (its declaration's `fuse`, in ir/ops):
"f" floating point, "i" signed integer, "u" unsigned integer, "b" bool. Every backend has a
template for each such op (codegen/llvm/scalar.py, codegen/cuda/scalar.py; the op-table
completeness test checks both), so the fusion pass decides what is fusable from the
declarations alone. An op that declares none, or not the kind at hand, runs its eager kernel.
An op computes in one dtype (its compute dtype, as in eager dispatch); comparisons return bool.
"""

from __future__ import annotations

from ..ir import ops as _ops  # noqa: F401  (registers the declarations)
from ..ir.schema import SCHEMAS

# ops of kernel specs that no graph holds: the lowering makes them (a guarded softmax shift)
SPEC_ONLY = {"select": "fiub", "isfinite": "f"}
# ops each emitter converts itself, between register types, rather than through a template
CONVERSIONS = frozenset({"cast"})

REDUCTIONS = frozenset({"sum", "max", "min", "prod"})

# pow is fused only with a constant exponent numpy itself computes without powf (x*x, sqrt,
# 1/x), so compiled and eager round alike; float16 power always goes through powf, which only
# x*x and 1/x match exactly
POW_EXPONENTS = frozenset({0.5, 1.0, 2.0, 3.0, -1.0})
POW_EXPONENTS_FLOAT16 = frozenset({1.0, 2.0, -1.0})


def supports(op: str, kind: str) -> bool:
    """Whether every backend can emit `op` computing in a dtype of `kind`."""
    declared = SCHEMAS.get(op)
    kinds = declared.fuse if declared is not None else SPEC_ONLY.get(op, "")
    return kind in kinds
