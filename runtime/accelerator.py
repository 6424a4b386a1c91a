"""ember.accelerator: torch.accelerator's questions, answered for CUDA (ember's one
accelerator): is one usable, which, how many, and waiting for it."""

from __future__ import annotations

from .device import device, is_cuda_available
from .device import device_count as _device_count


def is_available() -> bool:
    return is_cuda_available()


def current_accelerator(check_available: bool = False):
    """device('cuda') when CUDA is usable, else None."""
    return device("cuda") if is_cuda_available() else None


def device_count() -> int:
    return _device_count() if is_cuda_available() else 0


def current_device_index() -> int:
    if not is_cuda_available():
        return -1
    from .device import cupy_module

    return int(cupy_module().cuda.runtime.getDevice())


def synchronize(device=None) -> None:
    if is_cuda_available():
        from .device import cupy_module

        cupy_module().cuda.get_current_stream().synchronize()
