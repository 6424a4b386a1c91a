"""Casting an elementwise op's operands to its compute dtype, before its kernel runs.

Which dtype an op computes in is the schema's decision (OpSchema.compute_dtype_of); this is
the cast itself, shared by eager dispatch, the Program executor and constant folding's
evaluator, so a value is the same whichever of them computes it. Arrays are cast only where
their dtype differs; Python numbers become scalars of the dtype, and integers out of its range
wrap around as PyTorch's do (uint8 - 2 == 254). A float out of a float dtype's range is inf,
silently (this module's numpy warnings are ignored as the kernels' are).
"""

from __future__ import annotations

import numpy as np

_NUMBERS = (int, float)  # bool is an int
_ndarray = np.ndarray


def cast_operands(operands: list, start: int, dtype: np.dtype) -> list:
    """Cast operands[start:] (arrays, numpy or cupy, and Python numbers) to dtype, in place;
    the operands before start keep theirs (where's condition). Returns operands.

    This runs in every eager elementwise op: it iterates rather than indexes, and tests an
    operand's class before isinstance (slow for an ndarray against the number types)."""
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


def cast_scalar(dtype: np.dtype, x):
    """A Python number as a numpy scalar of dtype, as cast_operands makes it."""
    return cast_operands([x], 0, dtype)[0]
