"""ember.amp.GradScaler: loss scaling for low-precision training, as PyTorch's GradScaler.

scale(loss) multiplies the loss by the scale; step(optimizer) unscales the gradients (unless
unscale_ did) and steps only when they are all finite; update() halves the scale after a
skipped step and doubles it after growth_interval good ones. A disabled scaler (enabled=False,
or CUDA asked for where there is none, with a warning as PyTorch gives) passes everything
through: scale() returns the loss unchanged and step() just steps.
"""

from __future__ import annotations

import warnings
from enum import Enum

import numpy as np

from ..autograd.grad_mode import no_grad
from ..errors import runtime_error
from ..ir.dtypes import float16, float32
from ..runtime.device import is_cuda_available


class OptState(Enum):
    READY = 0
    UNSCALED = 1
    STEPPED = 2


def _float32(value: float) -> float:
    return float(np.float32(value))  # PyTorch keeps the scale in a float32 tensor


class GradScaler:
    def __init__(self, device: str = "cuda", init_scale: float = 2.0**16,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True):
        self._device = device
        self._enabled = enabled
        if device == "cuda" and enabled and not is_cuda_available():
            warnings.warn("torch.cuda.amp.GradScaler is enabled, but CUDA is not available.  "
                          "Disabling.", stacklevel=2)
            self._enabled = False
        if self._enabled:
            if growth_factor <= 1.0:
                raise runtime_error("The growth factor must be > 1.0.")
            if backoff_factor >= 1.0:
                raise runtime_error("The backoff factor must be < 1.0.")
        self._scale = _float32(init_scale)
        self._growth_factor = growth_factor
        self._backoff_factor = backoff_factor
        self._growth_interval = growth_interval
        self._growth_tracker = 0
        self._per_optimizer: dict[int, dict] = {}

    def is_enabled(self) -> bool:
        return self._enabled

    def _state(self, optimizer) -> dict:
        return self._per_optimizer.setdefault(
            id(optimizer), {"stage": OptState.READY, "found_inf": False})

    def scale(self, outputs):
        """outputs (a tensor or nested lists/tuples of them) multiplied by the scale."""
        if not self._enabled:
            return outputs
        from .._tensor.factories import tensor

        scale = tensor(self._scale, dtype=float32, device=_first_device(outputs))

        def apply(value):
            if isinstance(value, (list, tuple)):
                return type(value)(apply(v) for v in value)
            return value * scale

        return apply(outputs)

    def unscale_(self, optimizer) -> None:
        """Divide the optimizer's gradients by the scale, in place, noting any inf or NaN."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] is OptState.UNSCALED:
            raise runtime_error(
                "unscale_() has already been called on this optimizer since the last update().")
        if state["stage"] is OptState.STEPPED:
            raise runtime_error("unscale_() is being called after step().")
        inv_scale = _float32(1.0 / self._scale)
        found_inf = False
        with no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    if p.grad.dtype is float16:
                        raise runtime_error("Attempting to unscale FP16 gradients.")
                    found_inf |= not bool(p.grad.isfinite().all())
                    p.grad.mul_(inv_scale)
        state["found_inf"] = found_inf
        state["stage"] = OptState.UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """optimizer.step(), skipped when the unscaled gradients hold an inf or NaN."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise runtime_error(
                "Closure use is not currently supported if GradScaler is enabled.")
        state = self._state(optimizer)
        if state["stage"] is OptState.STEPPED:
            raise runtime_error(
                "step() has already been called since the last update().")
        if state["stage"] is OptState.READY:
            self.unscale_(optimizer)
        result = None if state["found_inf"] else optimizer.step(*args, **kwargs)
        state["stage"] = OptState.STEPPED
        return result

    def update(self, new_scale=None) -> None:
        """Set the next scale: new_scale if given, else backed off after an inf or NaN and grown
        after growth_interval steps without one."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = _float32(float(new_scale))
        else:
            if not self._per_optimizer:
                raise runtime_error("No inf checks were recorded prior to update.")
            if any(s["found_inf"] for s in self._per_optimizer.values()):
                self._scale = _float32(self._scale * self._backoff_factor)
                self._growth_tracker = 0
            else:
                successful = self._growth_tracker + 1
                if successful == self._growth_interval:
                    grown = _float32(self._scale * self._growth_factor)
                    if np.isfinite(grown):
                        self._scale = grown
                    self._growth_tracker = 0
                else:
                    self._growth_tracker = successful
        self._per_optimizer = {}

    def get_scale(self) -> float:
        return self._scale if self._enabled else 1.0

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = new_factor

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = new_factor

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = new_interval

    def state_dict(self) -> dict:
        if not self._enabled:
            return {}
        return {
            "scale": self.get_scale(),
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": self._growth_tracker,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise runtime_error(
                "The source state dict is empty, possibly because it was saved from a disabled "
                "instance of GradScaler.")
        self._scale = _float32(state_dict["scale"])
        self._growth_factor = state_dict["growth_factor"]
        self._backoff_factor = state_dict["backoff_factor"]
        self._growth_interval = state_dict["growth_interval"]
        self._growth_tracker = int(state_dict["_growth_tracker"])


def _first_device(outputs):
    if isinstance(outputs, (list, tuple)):
        for v in outputs:
            found = _first_device(v)
            if found is not None:
                return found
        return None
    return getattr(outputs, "device", None)


def _deprecated_grad_scaler(device_type: str):
    """torch.cuda.amp.GradScaler / torch.cpu.amp.GradScaler: the old spellings, which warn."""

    class DeviceGradScaler(GradScaler):
        def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0,
                     backoff_factor: float = 0.5, growth_interval: int = 2000,
                     enabled: bool = True):
            warnings.warn(
                f"`torch.{device_type}.amp.GradScaler(args...)` is deprecated. Please use "
                f"`torch.amp.GradScaler('{device_type}', args...)` instead.",
                FutureWarning, stacklevel=2)
            super().__init__(device_type, init_scale, growth_factor, backoff_factor,
                             growth_interval, enabled)

    DeviceGradScaler.__name__ = DeviceGradScaler.__qualname__ = "GradScaler"
    return DeviceGradScaler
