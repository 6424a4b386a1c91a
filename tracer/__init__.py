"""Capture: ember.trace, ember.script (with guards and eager fallback) and ember.explain."""

from __future__ import annotations

import functools
import inspect

from .._tensor import autocast as _autocast
from .._tensor import hooks as _hooks
from .._tensor.tensor import Tensor as _Tensor
from ..autograd import grad_mode as _grad_mode
from ..errors import EmberError
from ..runtime.device import CPU as _CPU
from .guards import SameTensor, simple_value
from .pytree import flatten
from .script import GuardFailed, ScriptFallback, ScriptFunction
from .tracer import trace

__all__ = ["ScriptFallback", "ScriptFunction", "ScriptModule", "compile", "explain", "script",
           "trace"]


def _no_state() -> tuple:
    return ()


class _CompositeScript(ScriptFunction):
    """The tensor layer's composite compiler (hooks.CompositeCompiler): a quiet script of one
    of ember's composite ops (softmax, layer_norm, gelu, a loss: _tensor/composites.py).

    Such code is ember's own and pure: the globals it reads are ember's functions and
    constants, never a user's value, and it reads no tensor but its arguments, writes
    nothing, draws no numbers. So what a call runs follows from its arguments' facts alone
    (each tensor's shape, dtype and requires_grad; the other arguments' values) and the grad
    mode: a later call with the same facts runs that specialization straight away, without
    the general guard walk (~10 us of a small layer_norm's ~25)."""

    def __init__(self, fn, name: str):
        # every model of a process shares the one script of an op: more combinations of
        # dtypes, reductions, grad modes and sizes than one function of a user's would see
        super().__init__(fn, name=name, quiet=True, state_key=_no_state,
                         max_specializations=MAX_COMPOSITE_SPECIALIZATIONS)
        self._by_facts: dict = {}

    def known(self, args: tuple):
        """The call run by the specialization its facts picked before, or None where there
        is none yet (the caller takes the general way). Such a run calls no Python op code
        back, so it needs no guard against re-entering the op (Composite.__call__)."""
        facts = _composite_facts(args)
        if facts is not None:
            sp = self._by_facts.get(facts)
            if sp is not None:
                try:
                    return sp.run(list(args))
                except GuardFailed:  # a value guard: the general way retraces
                    self._by_facts.pop(facts, None)
        return None

    def __call__(self, *args):
        done = self.known(args)
        if done is not None:
            return done
        facts = _composite_facts(args)
        ran = self._ran  # per thread: another thread's call may run meanwhile
        ran.sp = None
        out = super().__call__(*args)
        sp = ran.sp
        if facts is not None and sp is not None and _runs_from_arguments(sp, args):
            if len(self._by_facts) >= 64:
                self._by_facts.clear()
            self._by_facts[facts] = sp
        return out


MAX_COMPOSITE_SPECIALIZATIONS = 32
_FACT_TYPES = frozenset({int, float, bool, type(None)})


def _composite_facts(args) -> tuple | None:
    """What a composite call's specialization follows from (see _CompositeScript), or None
    where an argument is neither a CPU tensor nor a plain number (or autocast is on)."""
    if _autocast.enabled:
        return None
    facts = [_grad_mode.state.enabled]
    for x in args:
        if isinstance(x, _Tensor):
            if x._device is not _CPU:
                return None
            facts.append((x._data.shape, x._dtype, x._requires_grad))
        elif x.__class__ in _FACT_TYPES:
            facts.append((x.__class__, x))
        elif x.__class__ is tuple and all(v.__class__ is int for v in x):
            facts.append((tuple, x))
        else:
            return None
    return tuple(facts)


def _runs_from_arguments(sp, args) -> bool:
    """Whether sp's run depends on the call's arguments alone, handed to it as they are."""
    if (sp.stores or sp.draws or sp.grad_guards or sp.reached or sp.sources
            or sp.eager_reason is not None):
        return False
    leaves = flatten((args, {}))[0]
    return len(leaves) == len(args) and all(a is b for a, b in zip(leaves, args))


def _quiet_script(fn, name: str) -> ScriptFunction:
    return _CompositeScript(fn, name)


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
