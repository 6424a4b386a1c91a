"""ember.cuda: whether a CUDA device is usable, and how many."""

from __future__ import annotations

from ..runtime.device import device_count as _device_count
from ..runtime.device import is_cuda_available


def is_available() -> bool:
    return is_cuda_available()


def device_count() -> int:
    return _device_count()


def synchronize() -> None:
    if is_cuda_available():
        from ..runtime.device import cupy_module

        cupy_module().cuda.get_current_stream().synchronize()


def manual_seed(seed: int) -> None:
    from ..runtime import random

    random.manual_seed(seed)


manual_seed_all = manual_seed


def __getattr__(name: str):
    # loaded on first use: amp imports the tensor layer, which `import ember.cuda` should not
    if name == "amp":
        import importlib

        return importlib.import_module(".amp", __name__)
    raise AttributeError(f"module 'ember.cuda' has no attribute {name!r}")
