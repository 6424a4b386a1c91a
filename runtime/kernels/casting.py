"""Casting an elementwise op's operands to its compute dtype, before its kernel runs.

Which dtype an op computes in is the schema's decision (OpSchema.compute_dtype_of); this is
the cast itself, shared by eager dispatch, the Program executor and constant folding's
evaluator, so a value is the same whichever of them computes it. Arrays are cast only where
their dtype differs; Python numbers become scalars of the dtype, and integers out of its range
wrap around as PyTorch's do (uint8 - 2 == 254). A float out of a float dtype's range is inf,
silently (this module's numpy warnings are ignored as the kernels' are).

bfloat16 (ml_dtypes') is a storage type only, as in PyTorch's CPU kernels: an op whose compute
dtype is bfloat16 gets its operands rounded to bfloat16 and then widened to float32, computes in
float32, and its caller rounds the result back to bfloat16 (the output dtype). Other ops widen
their bfloat16 operands to float32 the same way (widen_bfloat16): reductions accumulate in
float32 and matmul multiplies float32, as PyTorch's do.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

_NUMBERS = (int, float)  # bool is an int
_ndarray = np.ndarray
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
_FLOAT32 = np.dtype(np.float32)
# PyTorch's CPU kernels of these ops keep a scalar operand (a Python number, or a 0-d tensor
# as the second operand) in float32, their "opmath" type, when the result is bfloat16; every
# other op rounds it to bfloat16 first (x + 1.1 adds 1.1015625, x * 1.1 multiplies by
# float32 1.1)
FLOAT32_SCALAR_OPS = frozenset({"mul", "div", "floor_divide"})


def float32_scalar(op: str | None, index: int, x) -> bool:
    """Whether operand `index` of op, computing in bfloat16, keeps its float32 value."""
    if op not in FLOAT32_SCALAR_OPS:
        return False
    if isinstance(x, _NUMBERS):
        return True
    return index == 1 and x.ndim == 0 and x.dtype != BFLOAT16


def compute_as(dtype: np.dtype) -> np.dtype:
    """The dtype kernels compute in for an op whose compute dtype is `dtype`."""
    return _FLOAT32 if dtype == BFLOAT16 else dtype


def widen_bfloat16(operands: list) -> list:
    """Widen the bfloat16 arrays among operands to float32, in place (a no-op without any)."""
    for i, x in enumerate(operands):
        if getattr(x, "dtype", None) == BFLOAT16:
            operands[i] = x.astype(_FLOAT32)
    return operands


def _bfloat16_operand(x, op: str | None, index: int):
    """Operand `index` of an op computing in bfloat16, as the float32 its kernel gets."""
    number = x.__class__ is not _ndarray and isinstance(x, _NUMBERS)
    if float32_scalar(op, index, x):
        return _FLOAT32.type(x) if number else x.astype(_FLOAT32)
    if number:
        return _FLOAT32.type(BFLOAT16.type(x))
    if x.dtype == BFLOAT16:
        return x.astype(_FLOAT32)
    return x.astype(BFLOAT16).astype(_FLOAT32)


def cast_operands(operands: list, start: int, dtype: np.dtype, op: str | None = None) -> list:
    """Cast operands[start:] (arrays, numpy or cupy, and Python numbers) to dtype, in place;
    the operands before start keep theirs (where's condition). Returns operands. For bfloat16,
    the operands become float32 (see the module's docstring; `op` says how numbers round).

    This runs in every eager elementwise op: it iterates rather than indexes, and tests an
    operand's class before isinstance (slow for an ndarray against the number types)."""
    if dtype == BFLOAT16:
        for i in range(start, len(operands)):
            operands[i] = _bfloat16_operand(operands[i], op, i)
        return operands
    i = start
    for x in operands[start:] if start else operands:
        if x.__class__ is not _ndarray and isinstance(x, _NUMBERS):
            try:
                operands[i] = dtype.type(x)
            except OverflowError:  # an integer out of range wraps around
                operands[i] = np.array(x).astype(dtype)[()]
        elif x.dtype != dtype:
            operands[i] = x.astype(dtype)
        i += 1
    return operands


def cast_scalar(dtype: np.dtype, x, op: str | None = None):
    """A Python number as a numpy scalar of dtype, as cast_operands makes it."""
    return cast_operands([x], 0, dtype, op)[0]
