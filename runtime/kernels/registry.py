"""The kernel table and its registration decorator."""

from __future__ import annotations

from typing import Callable

KERNELS: dict[str, Callable] = {}


def kernel(*names: str) -> Callable:
    """Decorator: register the function as the eager kernel of each op in `names`."""

    def wrap(fn: Callable) -> Callable:
        for name in names:
            if name in KERNELS:
                raise ValueError(f"a kernel for {name!r} is already registered")
            KERNELS[name] = fn
        return fn

    return wrap
