"""Devices and their array modules: numpy for the CPU, cupy for CUDA devices."""

from __future__ import annotations

import functools

import numpy as np

from ..errors import runtime_error, type_error


class device:
    """A device as PyTorch spells it: device('cpu'), device('cuda'), device('cuda', 1)."""

    __slots__ = ("type", "index")

    def __init__(self, type: "str | device", index: int | None = None):
        if isinstance(type, device):
            self.type, self.index = type.type, type.index
            return
        if not isinstance(type, str):
            raise type_error(f"device() expects a string like 'cpu' or 'cuda:0', got {type!r}")
        name, _, number = type.partition(":")
        if name not in ("cpu", "cuda"):
            raise runtime_error(
                f"Expected one of cpu, cuda device type at start of device string: {type}"
            )
        if number:
            if index is not None or not number.isdigit():
                raise runtime_error(f"Invalid device string: '{type}'")
            index = int(number)
        if name == "cpu" and index not in (None, 0):
            raise runtime_error(f"CPU device index must be -1 or zero, got {index}")
        self.type = name
        self.index = index if name == "cuda" else None

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __repr__(self) -> str:
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


CPU = device("cpu")


@functools.lru_cache(maxsize=None)
def _cupy():
    try:
        import cupy
    except Exception:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:
        return None
    return cupy


def is_cuda_available() -> bool:
    return _cupy() is not None


def device_count() -> int:
    cp = _cupy()
    return cp.cuda.runtime.getDeviceCount() if cp is not None else 0


def cupy_module():
    """cupy, or a clear error when no CUDA device can be used."""
    cp = _cupy()
    if cp is None:
        raise runtime_error(
            "Torch not compiled with CUDA enabled: no CUDA device is available to ember "
            "(cupy is missing or sees no GPU)"
        )
    return cp


def as_device(value) -> device:
    if isinstance(value, device):
        return CPU if value.type == "cpu" else value
    if value is None or value == "cpu":
        return CPU
    if isinstance(value, int):
        return device("cuda", value)
    return device(value)


def array_module(dev: device):
    return np if dev.type == "cpu" else cupy_module()


def device_of_array(array) -> device:
    if isinstance(array, np.ndarray):
        return CPU
    return device("cuda", array.device.id)


def to_device(array, dev: device):
    """Copy an array to `dev` (a no-op when it is there already)."""
    if dev.type == "cpu":
        return array if isinstance(array, np.ndarray) else array.get()
    cp = cupy_module()
    with cp.cuda.Device(dev.index or 0):
        return cp.asarray(array)
