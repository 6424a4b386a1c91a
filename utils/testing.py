"""ember.testing: torch.testing's assert_close (and make_tensor), for tests written against
PyTorch. Tensors are compared elementwise with |actual - expected| <= atol + rtol *
|expected|, the tolerances by dtype as PyTorch's defaults; sequences and mappings are compared
item by item; Python numbers as 0-d values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .._tensor.factories import rand, randint
from .._tensor.tensor import Tensor
from ..errors import type_error, type_name, value_error

# dtype name -> (rtol, atol): PyTorch's defaults for assert_close
_TOLERANCES = {
    "float16": (1e-3, 1e-5),
    "bfloat16": (1.6e-2, 1e-5),
    "float32": (1.3e-6, 1e-5),
    "float64": (1e-7, 1e-7),
}


def _as_array(value) -> tuple[np.ndarray, str, str]:
    """(float64-or-exact numpy array, dtype name, device) of a tensor or a number."""
    if isinstance(value, Tensor):
        data = value.detach()
        if data.dtype.name == "bfloat16":
            data = data.float()
        return np.asarray(data.cpu().numpy()), value.dtype.name, str(value.device)
    if isinstance(value, bool):
        return np.asarray(value), "bool", "cpu"
    if isinstance(value, int):
        return np.asarray(value, dtype=np.int64), "int64", "cpu"
    if isinstance(value, float):
        return np.asarray(value, dtype=np.float64), "float64", "cpu"
    raise type_error(f"assert_close: no comparison for {type_name(value)}")


def _compare(actual, expected, rtol, atol, equal_nan, check_dtype, check_device, path, msg):
    a, a_dtype, a_device = _as_array(actual)
    e, e_dtype, e_device = _as_array(expected)
    where = f" at {path}" if path else ""
    if check_device and a_device != e_device:
        raise AssertionError(msg or f"The values for attribute 'device' do not match{where}: "
                                    f"{a_device} != {e_device}.")
    if check_dtype and isinstance(actual, Tensor) and isinstance(expected, Tensor) \
            and a_dtype != e_dtype:
        raise AssertionError(msg or f"The values for attribute 'dtype' do not match{where}: "
                                    f"ember.{a_dtype} != ember.{e_dtype}.")
    if a.shape != e.shape:
        raise AssertionError(msg or f"The values for attribute 'shape' do not match{where}: "
                                    f"{list(a.shape)} != {list(e.shape)}.")
    exact = a.dtype.kind in "biu" and e.dtype.kind in "biu"
    if rtol is None:
        rtol, atol = (0.0, 0.0) if exact else max(
            (_TOLERANCES.get(d, (0.0, 0.0)) for d in (a_dtype, e_dtype)), key=lambda t: t[0])
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore"):
        difference = np.abs(a64 - e64)
        close = (difference <= atol + rtol * np.abs(e64)) | (a64 == e64)
    if equal_nan:
        close |= np.isnan(a64) & np.isnan(e64)
    if close.all():
        return
    bad = int((~close).sum())
    flat = np.flatnonzero(~close.reshape(-1))
    worst_abs = np.nanmax(np.where(close, 0.0, difference)) if bad else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(close, 0.0, difference / np.abs(e64))
    worst_rel = np.nanmax(relative)
    first = np.unravel_index(flat[0], a.shape) if a.shape else ()
    text = (f"{'Scalars' if not a.shape else 'Tensor-likes'} are not close{where}!\n\n"
            f"Mismatched elements: {bad} / {a.size} ({100.0 * bad / max(a.size, 1):.1f}%)\n"
            f"Greatest absolute difference: {worst_abs} (up to {atol} allowed)\n"
            f"Greatest relative difference: {worst_rel} (up to {rtol} allowed)\n"
            f"First mismatch at index {tuple(int(i) for i in first)}")
    raise AssertionError(msg or text)


def _walk(actual, expected, path, compare):
    if isinstance(actual, Mapping) and isinstance(expected, Mapping):
        if set(actual) != set(expected):
            where = f" at {path}" if path else ""
            raise AssertionError(f"The keys of the mappings do not match{where}: "
                                 f"{sorted(map(str, actual))} != {sorted(map(str, expected))}")
        for key in actual:
            _walk(actual[key], expected[key], f"{path}[{key!r}]", compare)
        return
    if (isinstance(actual, Sequence) and isinstance(expected, Sequence)
            and not isinstance(actual, str) and not isinstance(expected, str)):
        if len(actual) != len(expected):
            raise AssertionError(f"The length of the sequences do not match"
                                 f"{' at ' + path if path else ''}: {len(actual)} != "
                                 f"{len(expected)}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            _walk(a, e, f"{path}[{i}]", compare)
        return
    compare(actual, expected, path)


def assert_close(actual, expected, *, allow_subclasses: bool = True, rtol: float | None = None,
                 atol: float | None = None, equal_nan: bool = False, check_device: bool = True,
                 check_dtype: bool = True, check_layout: bool = True,
                 check_stride: bool = False, msg: str | None = None) -> None:
    """Raise AssertionError unless actual and expected are close: every element within
    atol + rtol * |expected| (the dtype's defaults when both are None), NaN equal to NaN only
    with equal_nan, and (checked by default) the same shape, dtype and device."""
    if (rtol is None) != (atol is None):
        raise value_error("assert_close: both 'rtol' and 'atol' must be either specified or "
                          "omitted, but got no atol." if atol is None else
                          "assert_close: both 'rtol' and 'atol' must be either specified or "
                          "omitted, but got no rtol.")
    if rtol is not None and (rtol < 0 or atol < 0 or math.isnan(rtol) or math.isnan(atol)):
        raise value_error(f"assert_close: rtol and atol must be non-negative, got {rtol}, "
                          f"{atol}")

    def compare(a, e, path):
        _compare(a, e, rtol, atol, equal_nan, check_dtype, check_device, path, msg)

    _walk(actual, expected, "", compare)


assert_allclose = assert_close


def make_tensor(*shape, dtype, device=None, low=None, high=None, requires_grad: bool = False):
    """A tensor of the given shape and dtype with values drawn uniformly from [low, high)
    (floats: [-9, 9) by default, integers [-9, 10), bool: either)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if dtype.name == "bool":
        return randint(0, 2, shape, device=device).bool()
    if not dtype.is_floating_point:
        lo = -9 if low is None else int(math.ceil(low))
        hi = 10 if high is None else int(high)
        if dtype.name == "uint8":
            lo = max(lo, 0)
        return randint(lo, hi, shape, dtype=dtype, device=device)
    lo = -9.0 if low is None else float(low)
    hi = 9.0 if high is None else float(high)
    values = rand(*shape, dtype=dtype, device=device) * (hi - lo) + lo
    return values.requires_grad_(requires_grad) if requires_grad else values


__all__ = ["assert_close", "assert_allclose", "make_tensor"]
