"""Proxy-aware ember functions: what `__torch_function__` does for torch.fx.

ember's functions take tensors, not fx Proxies. Importing ember.fx (and, after an
uninstall(), the next Proxy made) replaces each public function of the `ember` namespace
and of `ember.nn.functional` with a thin wrapper of the same name (uninstall() puts the
functions back; the test suite does, so that the rest of it sees the functions
themselves). Called with a Proxy anywhere in its arguments (lists, tuples and dicts are
searched), a wrapper records a call_function node on the Proxy's tracer; otherwise it calls the
function. The wrapper is the public object from then on (`ember.add` is it), so a node's
target compares equal to `ember.add`, and generated code and printed graphs name it by its
public spelling (`ember.add`, `ember.nn.functional.relu`), as torch.fx prints `torch.add`.

Calls inside ember's own code go through its modules' private names and are not wrapped.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

# wrapper or original function (by id) -> the public spelling, e.g. "ember.nn.functional.relu"
_PUBLIC_NAMES: dict[int, str] = {}
# public spelling -> its wrapper (which also keeps the ids above valid)
_WRAPPERS: dict[str, Callable] = {}
_installed = False
# what install() replaced, to put back: (module, name, whether the module held the name,
# the value it held)
_saved: list[tuple[Any, str, bool, Any]] = []

# the modules whose functions are ember's public ops (the names ember.__getattr__ resolves)
_OP_SOURCES = ("_tensor.factories", "nn._toplevel")


_proxy_type: type = type(None)  # fx.proxy.Proxy, set by install()
_CONTAINERS = (list, tuple, dict)


def _search(value):
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        if isinstance(item, _proxy_type):
            return item
        if isinstance(item, _CONTAINERS):
            found = _search(item)
            if found is not None:
                return found
    return None


def find_proxy(args: tuple, kwargs: dict):
    """The first fx Proxy in args or kwargs (searched through lists, tuples and dicts), or
    None."""
    # the common case, no Proxy among plain tensors and numbers, must stay cheap: every
    # public ember call made while ember.fx is loaded passes here
    found = _search(args)
    if found is None and kwargs:
        found = _search(kwargs)
    return found


def _proxy_aware(fn: Callable, name: str | None = None) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        proxy = find_proxy(args, kwargs)
        if proxy is None:
            return fn(*args, **kwargs)
        return proxy.tracer.create_proxy("call_function", wrapper, args, kwargs)

    if name is not None:
        # an alias (ember.arctan of atan) is its own function, as torch.arctan is
        wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__ember_fx_original__ = fn
    return wrapper


def public_name(obj: Any) -> str | None:
    """The public spelling of one of ember's functions (wrapped or not), else None."""
    return _PUBLIC_NAMES.get(id(obj))


def _is_public_function(value: Any) -> bool:
    return (isinstance(value, types.FunctionType)
            and (value.__module__ or "").startswith("ember.")
            and not value.__name__.startswith("_"))


def _wrap_namespace(module, names, prefix: str, private: bool = False) -> None:
    for name in sorted(names):
        if name.startswith("_") and not private:
            continue
        try:
            value = getattr(module, name)
        except AttributeError:
            continue
        original = getattr(value, "__ember_fx_original__", value)
        if not (private or _is_public_function(original)):
            continue
        spelling = f"{prefix}.{name}"
        wrapper = _WRAPPERS.get(spelling)
        if wrapper is None:
            wrapper = _proxy_aware(original, name)
            _WRAPPERS[spelling] = wrapper
        _PUBLIC_NAMES[id(wrapper)] = spelling
        _PUBLIC_NAMES.setdefault(id(original), spelling)
        _saved.append((module, name, name in vars(module), vars(module).get(name)))
        setattr(module, name, wrapper)


def install() -> None:
    """Make the public functions of `ember` and `ember.nn.functional` proxy-aware (once)."""
    global _installed, _proxy_type
    if _installed:
        return
    import ember
    import ember.nn.functional as functional
    from ember._tensor import ops

    from .proxy import Proxy

    _proxy_type = Proxy

    op_names = {name for name in dir(ops) if not name.startswith("_")}
    op_names |= {name for name, source in ember._EXPORTS.items() if source in _OP_SOURCES}
    _wrap_namespace(ember, op_names, "ember")
    _wrap_namespace(functional, set(dir(functional)), "ember.nn.functional")
    # torch.ops.profiler's range functions, which a tracer records around profiled code
    _wrap_namespace(ops.profiler, {"_record_function_enter", "_record_function_exit"},
                    "ember.ops.profiler", private=True)
    _installed = True


def uninstall() -> None:
    """Put back the functions install() replaced (the wrappers are kept, so a later install
    gives the same objects again)."""
    global _installed
    for module, name, held, value in reversed(_saved):
        if held:
            setattr(module, name, value)
        elif name in vars(module):
            delattr(module, name)
    _saved.clear()
    _installed = False
