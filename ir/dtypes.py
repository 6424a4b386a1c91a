"""ember's dtypes and PyTorch's type-promotion rules."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from ..errors import type_error

BOOL, INT, FLOAT = 0, 1, 2


class dtype:
    """A tensor element type, named and printed as PyTorch does (ember.float32)."""

    __slots__ = ("category", "is_floating_point", "is_signed", "itemsize", "kind", "name", "np")

    def __init__(self, name: str, np_name, category: int):
        self.name = name
        self.np = np.dtype(np_name)
        self.category = category
        self.itemsize = self.np.itemsize
        self.is_floating_point = category == FLOAT
        self.is_signed = category == FLOAT or (category == INT and self.np.kind == "i")
        # numpy's kind letter, except that ml_dtypes' bfloat16 (kind "V") is a float, "f"
        self.kind = "f" if category == FLOAT else self.np.kind

    def __repr__(self) -> str:
        return f"ember.{self.name}"

    def __reduce__(self):
        return (from_name, (self.name,))

    @property
    def is_complex(self) -> bool:
        return False


float16 = dtype("float16", "float16", FLOAT)
float32 = dtype("float32", "float32", FLOAT)
float64 = dtype("float64", "float64", FLOAT)
int8 = dtype("int8", "int8", INT)
int16 = dtype("int16", "int16", INT)
int32 = dtype("int32", "int32", INT)
int64 = dtype("int64", "int64", INT)
uint8 = dtype("uint8", "uint8", INT)
bool_ = dtype("bool", "bool", BOOL)
# numpy has no bfloat16; ml_dtypes adds it. Kernels never compute in it: every op widens its
# bfloat16 operands to float32 and rounds the result back (runtime/kernels/casting.py), as
# PyTorch's CPU kernels do.
bfloat16 = dtype("bfloat16", ml_dtypes.bfloat16, FLOAT)

# bfloat16 last: a dtype's index in ALL is its code in distributed messages
ALL = (float16, float32, float64, int8, int16, int32, int64, uint8, bool_, bfloat16)
FLOATS = (float16, float32, float64, bfloat16)
_BY_NP = {d.np: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL}
_BY_NAME.update({"half": float16, "float": float32, "double": float64, "short": int16,
                 "int": int32, "long": int64})

_default_float = float32


def is_dtype_name(name: str) -> bool:
    """Whether name spells a dtype ("float32", or an alias such as "half" or "long")."""
    return name in _BY_NAME


def from_name(name: str) -> dtype:
    return _BY_NAME[name]


def from_numpy(np_dtype) -> dtype:
    """The ember dtype of a numpy dtype; a TypeError for one ember does not have."""
    try:
        return _BY_NP[np.dtype(np_dtype)]
    except (KeyError, TypeError):
        raise type_error(
            f"can't convert numpy dtype {np_dtype}: ember supports "
            + ", ".join(d.name for d in ALL)
        ) from None


def as_dtype(value) -> dtype:
    """Accept an ember dtype, a numpy dtype or type, a name, or a Python type."""
    if isinstance(value, dtype):
        return value
    if value is float:
        return _default_float
    if value is int:
        return int64
    if value is bool:
        return bool_
    if isinstance(value, str) and value in _BY_NAME:
        return _BY_NAME[value]
    return from_numpy(value)


def get_default_dtype() -> dtype:
    return _default_float


def set_default_dtype(d) -> None:
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise type_error(f"only floating-point types are supported as the default type, got {d}")
    _default_float = d


def promote_types(a: dtype, b: dtype) -> dtype:
    """PyTorch's promote_types: the smallest dtype both fit in, by category first."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    if a is bfloat16 or b is bfloat16:
        # neither 16-bit float holds the other: bfloat16 with float16 is float32
        other = b if a is bfloat16 else a
        return float32 if other is float16 else other
    return _BY_NP[np.promote_types(a.np, b.np)]


def scalar_dtype(value) -> dtype:
    """The dtype PyTorch gives a Python number standing alone (a 'wrapped number')."""
    if isinstance(value, bool):
        return bool_
    if isinstance(value, int):
        return int64
    return _default_float


def _category_of(value) -> int:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    return FLOAT


def _combine(higher: dtype | None, lower: dtype | None) -> dtype | None:
    # PyTorch's combine_categories: a lower-priority operand only matters when it is
    # of a higher category (a float scalar upcasts an int tensor, never a float16 one).
    if higher is None:
        return lower
    if lower is None:
        return higher
    if higher.is_floating_point:
        return higher
    if higher is bool_ or lower.is_floating_point:
        return promote_types(higher, lower)
    return higher


def result_type(shapes_dtypes, scalars=()) -> dtype:
    """The result dtype of an op over tensors ((shape, dtype) pairs) and Python numbers.

    Tensors with dimensions outrank zero-dimensional tensors, which outrank Python numbers;
    a lower rank only counts when it is of a higher category (bool < int < float).
    """
    dim_result = zero_result = wrapped = None
    for shape, d in shapes_dtypes:
        if len(shape):
            dim_result = d if dim_result is None else promote_types(dim_result, d)
        else:
            zero_result = d if zero_result is None else promote_types(zero_result, d)
    for value in scalars:
        d = scalar_dtype(value)
        wrapped = d if wrapped is None else promote_types(wrapped, d)
    return _combine(dim_result, _combine(zero_result, wrapped))
