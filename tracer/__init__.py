"""Capture: ember.trace, ember.script (with guards and eager fallback) and ember.explain."""

from __future__ import annotations

from .script import ScriptFallback, ScriptFunction, simple_value
from .tracer import trace

__all__ = ["ScriptFallback", "ScriptFunction", "ScriptModule", "explain", "script", "trace"]


def plain_attributes(module) -> tuple:
    """A module's plain attributes of simple value (numbers, strings, tuples of them): what
    forward may read and bake into a graph, so it is guarded by value."""
    return tuple(
        (name, value) for name, value in vars(module).items()
        if not name.startswith("_") and name != "training" and simple_value(value)
    )


class ScriptModule:
    """A scripted nn.Module: calls run captured graphs, and everything else is the module's
    own (parameters, state_dict, train/eval, submodules), so it still trains as one."""

    def __init__(self, module, **options):
        from ..nn.module import Module

        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_state_epoch", None)
        object.__setattr__(self, "_state", None)

        def state_key():
            # recomputed only when some module changed (train/eval, registration, to())
            if self._state_epoch != Module._epoch:
                modules = list(module.modules())
                state = (tuple(m.training for m in modules),
                         tuple(id(t) for m in modules for t in m._parameters.values()),
                         tuple(id(t) for m in modules for t in m._buffers.values()),
                         tuple(plain_attributes(m) for m in modules))
                object.__setattr__(self, "_state", state)
                object.__setattr__(self, "_state_epoch", Module._epoch)
            return self._state

        function = ScriptFunction(module.__call__, state_key=state_key,
                                  name=f"{type(module).__name__}.forward",
                                  signature_of=module.forward, **options)
        object.__setattr__(self, "_function", function)

    def __call__(self, *args, **kwargs):
        return self._function(*args, **kwargs)

    def forward(self, *args, **kwargs):
        return self._function(*args, **kwargs)

    def __getattr__(self, name):
        if name in ("graph", "graphs", "explain", "specializations", "recompiles", "fallbacks"):
            return getattr(self._function, name)
        return getattr(self._module, name)

    def __setattr__(self, name, value):
        setattr(self._module, name, value)

    def __repr__(self) -> str:
        return f"ScriptModule({self._module!r})"


def script(fn=None, *, strict: bool = False, dynamic=None, max_specializations: int = 8):
    """Capture fn (a function, method or nn.Module) into guarded graphs; as a decorator too.

    strict=True raises ScriptFallback where the function would otherwise run eagerly.
    dynamic is accepted for PyTorch compatibility; shapes are specialized exactly for now.
    """
    options = {"strict": strict, "max_specializations": max_specializations}

    def wrap(target):
        from ..nn.module import Module

        if isinstance(target, Module):
            return ScriptModule(target, **options)
        return ScriptFunction(target, **options)

    return wrap(fn) if fn is not None else wrap


def explain(fn, *args, **kwargs) -> str:
    """Call fn (scripted or not) with args and report its graphs, guards, recompiles and
    fallbacks with their reasons."""
    scripted = fn if isinstance(fn, (ScriptFunction, ScriptModule)) else script(fn)
    scripted(*args, **kwargs)
    function = scripted._function if isinstance(scripted, ScriptModule) else scripted
    return function.explain()
