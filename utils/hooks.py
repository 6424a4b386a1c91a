"""RemovableHandle: what register_*_hook returns, as torch.utils.hooks spells it."""

from __future__ import annotations

import itertools


class RemovableHandle:
    """Returned by register_*_hook; remove() unregisters the hook (also as a context)."""

    _ids = itertools.count()

    def __init__(self, hooks: dict):
        self.hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
