"""Grad mode: no_grad, enable_grad and set_grad_enabled, as context managers and decorators."""

from __future__ import annotations

import functools
import threading


class _State(threading.local):
    enabled = True


state = _State()


def is_grad_enabled() -> bool:
    return state.enabled


class _GradModeContext:
    _target: bool

    def __enter__(self):
        self._prev = state.enabled
        state.enabled = self._target
        return self

    def __exit__(self, *exc):
        state.enabled = self._prev
        return False

    def __call__(self, fn):
        target = self._target

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = state.enabled
            state.enabled = target
            try:
                return fn(*args, **kwargs)
            finally:
                state.enabled = prev

        return wrapper


class no_grad(_GradModeContext):
    """Disable gradient recording inside the block or the decorated function."""

    def __init__(self):
        self._target = False


class enable_grad(_GradModeContext):
    """Enable gradient recording inside the block or the decorated function."""

    def __init__(self):
        self._target = True


class set_grad_enabled(_GradModeContext):
    """Set grad mode to `mode`; takes effect at once, and as a context manager restores it."""

    def __init__(self, mode: bool):
        self._prev = state.enabled
        self._target = bool(mode)
        state.enabled = self._target

    def __enter__(self):
        state.enabled = self._target
        return self

    def __call__(self, fn):
        # used as a decorator, it must not change the mode at decoration time
        state.enabled = self._prev
        return super().__call__(fn)


class inference_mode(no_grad):
    def __init__(self, mode: bool = True):
        self._target = not mode
