"""ember.cpu (torch.cpu): the CPU device's namespace; ember.cpu.amp holds the old spellings of
autocast and GradScaler."""

from __future__ import annotations


def is_available() -> bool:
    return True


def device_count() -> int:
    return 1


def synchronize(device=None) -> None:
    """The CPU runs ops as they are called: nothing to wait for."""


def __getattr__(name: str):
    # loaded on first use: amp imports the tensor layer, which `import ember.cpu` should not
    if name == "amp":
        import importlib

        return importlib.import_module(".amp", __name__)
    raise AttributeError(f"module 'ember.cpu' has no attribute {name!r}")
