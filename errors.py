"""The errors ember raises: each is an EmberError and also the builtin PyTorch raises there."""

from __future__ import annotations

import itertools
import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class EmberError(Exception):
    """Base class of every error ember raises for a user's mistake."""


class EmberRuntimeError(EmberError, RuntimeError):
    """Shapes that do not fit, devices that do not match, autograd misuse."""


class EmberOutOfMemoryError(EmberRuntimeError, MemoryError):
    """An array too large for the device's memory (PyTorch: a RuntimeError; still a
    MemoryError for code that catches those)."""


class EmberValueError(EmberError, ValueError):
    """An argument with a valid type but an invalid value."""


class EmberTypeError(EmberError, TypeError):
    """An argument of the wrong type or dtype."""


class EmberIndexError(EmberError, IndexError):
    """A dimension or an index out of range."""


class EmberKeyError(EmberError, KeyError):
    """A name that is not allowed or not found where PyTorch raises a KeyError (module names)."""


class EmberNotImplementedError(EmberError, NotImplementedError):
    """A valid request ember does not support yet on this device or dtype."""


class IRError(EmberError, ValueError):
    """A graph that breaks the IR's rules: bad IR text or graph data, a failed invariant."""


_USER_FOLDERS = ("tests", "examples", "benchmarks")


def _is_internal(filename: str) -> bool:
    if filename.startswith("<"):  # <string>, <stdin>: the user's code; <frozen ...>: Python's
        return filename.startswith("<frozen")
    path = os.path.abspath(filename)
    if not path.startswith(_PACKAGE_DIR + os.sep):
        return False
    top = path[len(_PACKAGE_DIR) + 1 :].split(os.sep, 1)[0]
    return top not in _USER_FOLDERS


def user_frame() -> str | None:
    """file:line of the innermost caller outside the ember package, or None."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _is_internal(filename):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _with_location(message: str) -> str:
    where = user_frame()
    return f"{message} (at {where})" if where else message


def type_name(value) -> str:
    """type(value).__name__, qualified by its package where that is not ember or Python
    itself: a PyTorch tensor handed to ember reads "torch.Tensor" (the bare names read
    "expected Tensor, got Tensor"), with a word on converting it."""
    cls = type(value)
    package = (cls.__module__ or "").split(".")[0]
    if package in ("builtins", "ember", ""):
        return cls.__name__
    if package == "torch" and cls.__name__ in ("Tensor", "Parameter"):
        return (f"torch.{cls.__name__} (a PyTorch tensor: ember takes its own; convert with "
                f"ember.from_dlpack(t) or ember.tensor(t.numpy()))")
    return f"{package}.{cls.__name__}"


def runtime_error(message: str) -> EmberRuntimeError:
    return EmberRuntimeError(_with_location(message))


def out_of_memory_error(message: str) -> EmberOutOfMemoryError:
    return EmberOutOfMemoryError(_with_location(message))


def value_error(message: str) -> EmberValueError:
    return EmberValueError(_with_location(message))


def type_error(message: str) -> EmberTypeError:
    return EmberTypeError(_with_location(message))


def index_error(message: str) -> EmberIndexError:
    return EmberIndexError(_with_location(message))


def key_error(message: str) -> EmberKeyError:
    return EmberKeyError(_with_location(message))


def not_implemented_error(message: str) -> EmberNotImplementedError:
    return EmberNotImplementedError(_with_location(message))


def _without_internal_frames(tb):
    """The traceback with ember's own frames left out (the user's frames stay)."""
    kept = []
    while tb is not None:
        if not _is_internal(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    for a, b in itertools.pairwise(kept):
        a.tb_next = b
    if kept:
        kept[-1].tb_next = None
        return kept[0]
    return None


def _excepthook(exc_type, exc, tb):
    if issubclass(exc_type, EmberError) and os.environ.get("EMBER_TRACEBACK") != "full":
        tb = _without_internal_frames(tb) or tb
    _previous_excepthook(exc_type, exc, tb)


# An uncaught EmberError prints the user's frames only, unless EMBER_TRACEBACK=full.
_previous_excepthook = sys.excepthook
if sys.excepthook is sys.__excepthook__:
    sys.excepthook = _excepthook
