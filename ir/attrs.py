"""Attribute values: the plain data a node's attrs may hold, checked, normalized and frozen.

An attr value is None, a bool, an int, a float, a str, a symbolic size (SymInt), or a list,
tuple or dict (str keys) of attr values. Tuples and lists stay distinct (the text form prints
(1, 2) and [1, 2]), so a type rule sees exactly what the op function passed.
"""

from __future__ import annotations

import math

from ..errors import IRError
from .dtypes import dtype as DType
from .symbolic import SymInt

_SCALARS = (bool, int, float, str)


def _is_numpy_number(value) -> bool:
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    return kind is not None and kind in "biuf" and getattr(value, "shape", None) == ()


def normalize_attr(value, where: str):
    """A checked copy of one attr value; numpy scalars become Python numbers and an ember
    dtype its name. `where` names the attr in the error."""
    if value is None or value.__class__ in _SCALARS or isinstance(value, SymInt):
        return value
    if isinstance(value, (list, tuple)):
        items = [normalize_attr(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise IRError(f"attr {where}: dict keys must be strings, got {k!r}")
            out[k] = normalize_attr(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, DType):
        return value.name
    if isinstance(value, _SCALARS):  # subclasses: IntEnum, numpy's float64
        return _SCALARS[[isinstance(value, t) for t in _SCALARS].index(True)](value)
    if _is_numpy_number(value):
        return value.item()
    raise IRError(
        f"attr {where}: {type(value).__name__} is not plain data (None, bool, int, float, str, "
        f"a symbolic size, or a list, tuple or dict of these)"
    )


def normalize_attrs(attrs, where: str = "") -> dict:
    """A checked, independent copy of a node's attrs dict."""
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise IRError(f"{where}attrs must be a dict, got {type(attrs).__name__}")
    out = {}
    for name, value in attrs.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise IRError(f"{where}attr names must be identifiers, got {name!r}")
        out[name] = normalize_attr(value, f"{where}{name}")
    return out


def freeze(value):
    """A hashable key equal for equal attr values only, type included: 1, 1.0 and True differ,
    as do (1,) and [1]. NaN equals NaN here, as the same value printed twice."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value)
    if isinstance(value, tuple):
        return ("tuple", tuple(freeze(v) for v in value))
    if isinstance(value, list):
        return ("list", tuple(freeze(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, freeze(v)) for k, v in value.items()))
    return (type(value).__name__, value)
