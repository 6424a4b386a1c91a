"""The derivative table and its registration decorator."""

from __future__ import annotations

from typing import Callable, NamedTuple


class Rule(NamedTuple):
    fn: Callable
    save_inputs: bool
    save_outputs: bool


DERIVATIVES: dict[str, Rule] = {}


def derivative(*names: str, save_inputs: bool = True, save_outputs: bool = False) -> Callable:
    """Decorator: register fn as the derivative rule of each op in names.

    save_inputs / save_outputs say what backward needs kept alive (and version-checked).
    """

    def wrap(fn: Callable) -> Callable:
        for name in names:
            if name in DERIVATIVES:
                raise ValueError(f"a derivative for {name!r} is already registered")
            DERIVATIVES[name] = Rule(fn, save_inputs, save_outputs)
        return fn

    return wrap
