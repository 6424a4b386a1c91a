"""ember.finfo and ember.iinfo: the numeric limits of a dtype, as PyTorch reports them."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from ..errors import type_error
from .dtypes import as_dtype, get_default_dtype


class finfo:
    """The limits of a floating-point dtype (ember.finfo(ember.bfloat16).eps); without an
    argument, of the default dtype."""

    def __init__(self, type=None):
        d = get_default_dtype() if type is None else as_dtype(type)
        if not d.is_floating_point:
            raise type_error(
                f"torch.finfo() requires a floating point input type, got {d}. Use "
                "torch.iinfo to handle it"
            )
        # ml_dtypes' finfo also knows bfloat16, which numpy's does not
        info = ml_dtypes.finfo(d.np)
        self.dtype = d.name
        self.bits = d.itemsize * 8
        self.eps = float(info.eps)
        self.max = float(info.max)
        self.min = float(info.min)
        self.tiny = self.smallest_normal = float(info.smallest_normal)
        self.resolution = 10.0 ** -math.floor(-math.log10(self.eps))

    def __eq__(self, other) -> bool:
        return isinstance(other, finfo) and other.dtype == self.dtype

    def __hash__(self) -> int:
        return hash(("finfo", self.dtype))

    def __repr__(self) -> str:
        return (
            f"finfo(resolution={self.resolution:g}, min={self.min:g}, max={self.max:g}, "
            f"eps={self.eps:g}, smallest_normal={self.smallest_normal:g}, "
            f"tiny={self.tiny:g}, dtype={self.dtype})"
        )


class iinfo:
    """The limits of an integer (or bool) dtype: ember.iinfo(ember.int32).max."""

    def __init__(self, type):
        d = as_dtype(type)
        if d.is_floating_point:
            raise type_error(
                f"torch.iinfo() requires an integer input type, got {d}. Use torch.finfo to "
                "handle it"
            )
        if d.name == "bool":
            raise type_error("torch.bool is not supported by torch.iinfo")
        info = np.iinfo(d.np)
        self.dtype = d.name
        self.bits = d.itemsize * 8
        self.min, self.max = int(info.min), int(info.max)

    def __eq__(self, other) -> bool:
        return isinstance(other, iinfo) and other.dtype == self.dtype

    def __hash__(self) -> int:
        return hash(("iinfo", self.dtype))

    def __repr__(self) -> str:
        return f"iinfo(min={self.min:g}, max={self.max:g}, dtype={self.dtype})"
