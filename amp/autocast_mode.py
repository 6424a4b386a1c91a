"""ember.autocast (torch.amp.autocast): run matmul, linear and convolutions in a lower precision
inside a `with` block or a decorated function, as PyTorch's autocast on its devices."""

from __future__ import annotations

import functools
import warnings

from .._tensor import autocast as _state
from ..errors import runtime_error
from ..ir.dtypes import as_dtype, bfloat16, float16
from ..runtime.device import is_cuda_available

# the autocast dtype of each device type when none is given (PyTorch's defaults)
DEFAULT_DTYPES = {"cpu": bfloat16, "cuda": float16}
# the dtypes autocast accepts on each device type
SUPPORTED_DTYPES = {"cpu": (bfloat16, float16), "cuda": (bfloat16, float16)}


def is_autocast_available(device_type: str) -> bool:
    return device_type in DEFAULT_DTYPES


def is_autocast_enabled(device_type: str | None = None) -> bool:
    """Whether autocast is on for device_type (for CUDA, as torch, when None is given)."""
    return (device_type or "cuda") in _state.enabled


def get_autocast_dtype(device_type: str):
    return _state.enabled.get(device_type, DEFAULT_DTYPES.get(device_type, bfloat16))


class autocast:
    """with ember.autocast("cpu"): ... or @ember.autocast("cpu", dtype=ember.bfloat16).

    Inside, matmul, linear and convolutions cast their floating inputs to `dtype` (bfloat16 on
    the CPU by default), losses compute in float32, and other ops keep their inputs' dtype.
    enabled=False turns autocast off for the block (nested inside an enabled one, too)."""

    def __init__(self, device_type: str, dtype=None, enabled: bool = True,
                 cache_enabled: bool | None = None):
        if not isinstance(device_type, str):
            raise runtime_error(
                f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
        if not is_autocast_available(device_type):
            raise runtime_error(
                f"User specified an unsupported autocast device_type '{device_type}'")
        self.device = device_type
        self.fast_dtype = DEFAULT_DTYPES[device_type] if dtype is None else as_dtype(dtype)
        self._enabled = bool(enabled)
        if device_type == "cuda" and self._enabled and not is_cuda_available():
            warnings.warn("User provided device_type of 'cuda', but CUDA is not available. "
                          "Disabling", stacklevel=2)
            self._enabled = False
        if self._enabled and self.fast_dtype not in SUPPORTED_DTYPES[device_type]:
            warnings.warn(
                f"In {device_type.upper()} autocast, but the target dtype is not supported. "
                f"Disabling autocast.\n{device_type.upper()} Autocast only supports dtypes of "
                + ", ".join(f"torch.{d.name}" for d in SUPPORTED_DTYPES[device_type])
                + " currently.", stacklevel=2)
            self._enabled = False
        self._saved: list = []

    def __enter__(self):
        self._saved.append(_state.enabled.get(self.device))
        if self._enabled:
            _state.enabled[self.device] = self.fast_dtype
        else:
            _state.enabled.pop(self.device, None)
        return self

    def __exit__(self, *exc) -> bool:
        before = self._saved.pop()
        if before is None:
            _state.enabled.pop(self.device, None)
        else:
            _state.enabled[self.device] = before
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)

        return wrapper


def _deprecated_autocast(device_type: str):
    """torch.cpu.amp.autocast / torch.cuda.amp.autocast: the old spellings, which warn."""

    class device_autocast(autocast):
        def __init__(self, enabled: bool = True, dtype=None, cache_enabled: bool = True):
            warnings.warn(
                f"`torch.{device_type}.amp.autocast(args...)` is deprecated. Please use "
                f"`torch.amp.autocast('{device_type}', args...)` instead.",
                FutureWarning, stacklevel=2)
            super().__init__(device_type, dtype=dtype, enabled=enabled,
                             cache_enabled=cache_enabled)

    device_autocast.__name__ = device_autocast.__qualname__ = "autocast"
    return device_autocast
