"""Capture: ember.trace, ember.script (with guards and eager fallback) and ember.explain."""

from __future__ import annotations

import functools
import inspect

from .._tensor import hooks as _hooks
from ..errors import EmberError
from .guards import SameTensor, simple_value
from .script import ScriptFallback, ScriptFunction
from .tracer import trace

__all__ = ["ScriptFallback", "ScriptFunction", "ScriptModule", "compile", "explain", "script",
           "trace"]


def _no_state() -> tuple:
    return ()


def _quiet_script(fn, name: str) -> ScriptFunction:
    """The tensor layer's composite compiler (hooks.CompositeCompiler). A composite is
    ember's own primitive code: the globals it reads are ember's functions and constants,
    never a user's value, so its calls skip reading them for guards (free_values, a few
    microseconds a call, always () for them)."""
    return ScriptFunction(fn, name=name, quiet=True, state_key=_no_state)


_hooks.set_composite_compiler(_quiet_script)


def plain_attributes(module) -> tuple:
    """A module's plain attributes of simple value (numbers, strings, tuples of them): what
    forward may read and bake into a graph, so it is guarded by value."""
    return tuple(
        (name, value) for name, value in vars(module).items()
        if not name.startswith("_") and name != "training" and simple_value(value)
    )


def module_state(module) -> tuple:
    """(name, value) pairs of every fact of a module tree that forward may bake into a graph:
    training flags, which parameter and buffer objects it holds, plain attributes (so a
    changed one is named in the recompile message: "self.training: True -> False")."""
    state = []
    for prefix, m in module.named_modules():
        path = f"self.{prefix}" if prefix else "self"
        state.append((f"{path}.training", m.training))
        for tensors in (m._parameters, m._buffers):
            state += [(f"{path}.{name}", None if t is None else SameTensor(t))
                      for name, t in tensors.items()]
        state += [(f"{path}.{name}", value) for name, value in plain_attributes(m)]
    return tuple(state)


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
                object.__setattr__(self, "_state", module_state(module))
                object.__setattr__(self, "_state_epoch", Module._epoch)
            return self._state

        function = ScriptFunction(module.__call__, state_key=state_key,
                                  name=f"{type(module).__name__}.forward",
                                  signature_of=module.forward, state_covers=module, **options)
        object.__setattr__(self, "_function", function)

    def __call__(self, *args, **kwargs):
        return self._function(*args, **kwargs)

    def forward(self, *args, **kwargs):
        return self._function(*args, **kwargs)

    def __getattr__(self, name):
        if name in ("graph", "graphs", "explain", "specializations", "recompiles", "fallbacks",
                    "code", "source"):
            return getattr(self._function, name)
        attr = getattr(self._module, name)
        if not inspect.ismethod(attr) or attr.__self__ is not self._module:
            return attr

        @functools.wraps(attr)
        def method(*args, **kwargs):
            # methods that return the module (train, eval, to, ...) return the scripted one,
            # so `ember.script(net).eval()` stays scripted
            out = attr(*args, **kwargs)
            return self if out is self._module else out

        return method

    def __getitem__(self, index):
        return self._module[index]

    def __len__(self) -> int:
        return len(self._module)

    def __iter__(self):
        return iter(self._module)

    def __setattr__(self, name, value):
        setattr(self._module, name, value)

    def __repr__(self) -> str:
        return f"ScriptModule({self._module!r})"


def script(fn=None, *, strict: bool = False, dynamic=None, max_specializations: int = 8):
    """Capture fn (a function, method or nn.Module) into guarded graphs; as a decorator too.

    strict=True raises ScriptFallback where the function would otherwise run eagerly.
    dynamic: None (the default, as torch.compile's automatic dynamic) or True makes sizes
    dynamic once a call retraced only because they changed; False keeps every size exact.
    """
    options = {"strict": strict, "max_specializations": max_specializations,
               "dynamic": dynamic}

    def wrap(target):
        from ..nn.module import Module

        if isinstance(target, Module):
            return ScriptModule(target, **options)
        return ScriptFunction(target, **options)

    return wrap(fn) if fn is not None else wrap


_COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune",
                  "max-autotune-no-cudagraphs")
_COMPILE_BACKENDS = ("inductor", "eager", "aot_eager", "cudagraphs")


def compile(model=None, *, fullgraph: bool = False, dynamic=None, backend="inductor",
            mode=None, options=None, disable: bool = False):
    """torch.compile's signature over ember.script: fullgraph=True is strict=True (a graph
    break raises instead of running eagerly), dynamic as in ember.script. mode, the named
    backends and options are accepted and all mean ember's one compiler; disable=True returns
    model unchanged. As a decorator too."""
    if mode not in _COMPILE_MODES:
        raise EmberError(f"ember.compile: unknown mode {mode!r}; expected one of "
                         f"{', '.join(repr(m) for m in _COMPILE_MODES)}")
    if not (isinstance(backend, str) and backend in _COMPILE_BACKENDS):
        raise EmberError(f"ember.compile: backend {backend!r} is not available: ember "
                         f"compiles with its own compiler (backends accepted by name: "
                         f"{', '.join(_COMPILE_BACKENDS)})")
    if options is not None and not isinstance(options, dict):
        raise EmberError(f"ember.compile: options must be a dict, got {type(options).__name__}")

    def wrap(target):
        if disable:
            return target
        return script(target, strict=bool(fullgraph), dynamic=dynamic)

    return wrap(model) if model is not None else wrap


def explain(fn, *args, **kwargs) -> str:
    """Call fn (scripted or not) with args and report its graphs, guards, recompiles and
    fallbacks with their reasons."""
    scripted = fn if isinstance(fn, (ScriptFunction, ScriptModule)) else script(fn)
    scripted(*args, **kwargs)
    function = scripted._function if isinstance(scripted, ScriptModule) else scripted
    return function.explain()
