"""Tracer and symbolic_trace: run a module's forward on Proxies and record a Graph.

While `Tracer.trace` runs, a few things are patched and restored afterwards:
`nn.Module.__call__` (leaf modules become call_module nodes, the others are traced
through), `nn.Module.__getattr__` (parameters and buffers become get_attr nodes), the
Tensor methods (a concrete tensor combined with a Proxy records the call), and the
functions registered with `wrap` in the modules that registered them. ember's public
functions are proxy-aware whenever ember.fx is loaded (_patching.py).
"""

from __future__ import annotations

import builtins
import functools
import inspect
import math
import operator
import types
from collections.abc import Callable
from typing import Any

from ..errors import not_implemented_error, runtime_error, type_error
from ._patching import find_proxy
from .graph import Graph
from .node import Argument
from .proxy import Proxy, TraceError, TracerBase

# (id of a module's globals, name) -> those globals: the functions wrap() registered
_wrapped_fns_to_patch: dict[tuple[int, str], dict] = {}
# functions whose calls have effects beyond their value: dead-code elimination keeps them
_side_effectful_functions: set[Callable] = {operator.setitem}

# Tensor's binary operators: with a Proxy on the other side they defer to the Proxy
_TENSOR_OPERATORS = tuple(
    f"__{prefix}{name}__"
    for name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and",
                 "or", "xor", "lshift", "rshift")
    for prefix in ("", "r")) + ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__")


def has_side_effect(fn: Callable) -> Callable:
    """Mark fn as side-effectful: eliminate_dead_code keeps its calls. Returns fn."""
    _side_effectful_functions.add(fn)
    return fn


def is_side_effectful(fn: Any) -> bool:
    """Whether calls of fn must survive dead-code elimination."""
    original = getattr(fn, "__ember_fx_original__", fn)
    return fn in _side_effectful_functions or original in _side_effectful_functions


def wrap(fn_or_name: str | Callable) -> str | Callable:
    """Record calls of a module-level function as call_function nodes instead of tracing
    through it. Call at the top level of the module that defines or imports the function:
    `ember.fx.wrap(my_fn)` or `ember.fx.wrap("len")`. Returns its argument."""
    if callable(fn_or_name):
        name = getattr(fn_or_name, "__name__", None)
        if name is None or name == "<lambda>":
            raise type_error("wrap(): a function with a name is needed (not a lambda); got "
                             f"{fn_or_name!r}")
    elif isinstance(fn_or_name, str):
        name = fn_or_name
    else:
        raise type_error(f"wrap(): expected a function or a function's name, got "
                         f"{type(fn_or_name).__name__}")
    frame = inspect.currentframe().f_back
    if frame.f_code.co_name != "<module>":
        raise not_implemented_error("wrap() must be called at the top level of a module, "
                                    f"not inside {frame.f_code.co_name}()")
    _wrapped_fns_to_patch[(id(frame.f_globals), name)] = frame.f_globals
    return fn_or_name


class _Patcher:
    """Sets attributes and dict entries for the duration of a trace, then restores them."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def setattr(self, obj: Any, name: str, value: Any) -> None:
        if name in vars(obj):
            original = vars(obj)[name]
            self._undo.append(lambda: setattr(obj, name, original))
        else:
            self._undo.append(lambda: delattr(obj, name))
        setattr(obj, name, value)

    def setitem(self, mapping: dict, key: str, value: Any) -> None:
        if key in mapping:
            original = mapping[key]
            self._undo.append(lambda: mapping.__setitem__(key, original))
        else:
            self._undo.append(lambda: mapping.pop(key, None))
        mapping[key] = value

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


def _wrapped_function(original: Callable) -> Callable:
    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        proxy = find_proxy(args, kwargs)
        if proxy is None:
            return original(*args, **kwargs)
        result = proxy.tracer.create_proxy("call_function", original, args, kwargs)
        result.node.meta["is_wrapped"] = True
        return result

    return wrapper


def _tensor_method(name: str, original: Callable) -> Callable:
    @functools.wraps(original)
    def method(self, *args, **kwargs):
        proxy = find_proxy(args, kwargs)
        if proxy is None:
            return original(self, *args, **kwargs)
        return proxy.tracer.create_proxy("call_method", name, (self, *args), kwargs)

    return method


def _tensor_operator(original: Callable) -> Callable:
    @functools.wraps(original)
    def method(self, other):
        if isinstance(other, Proxy):
            return NotImplemented
        return original(self, other)

    return method


def _tensor_getitem(original: Callable) -> Callable:
    @functools.wraps(original)
    def method(self, index):
        proxy = find_proxy((index,), {})
        if proxy is None:
            return original(self, index)
        return proxy.tracer.create_proxy("call_function", operator.getitem, (self, index), {})

    return method


class PHBase:
    """The type of PH, the concrete_args value that keeps an input a placeholder."""

    def __repr__(self) -> str:
        return "PH"


PH = PHBase()


class Tracer(TracerBase):
    """Records a Graph by running a module's forward (or a function) on Proxies.

    Override is_leaf_module to choose which submodules stay call_module nodes, call_module
    to act on each module call, create_proxy/create_node to see or change every node."""

    def __init__(self, autowrap_modules: tuple = (math,), autowrap_functions: tuple = (),
                 param_shapes_constant: bool = False) -> None:
        super().__init__()
        self._autowrap_function_ids = {
            id(value) for module in autowrap_modules
            for name, value in vars(module).items()
            if not name.startswith("_") and callable(value)}
        self._autowrap_function_ids |= {id(fn) for fn in autowrap_functions}
        self.param_shapes_constant = param_shapes_constant
        self.submodule_paths: dict[int, str] | None = None
        self.tensor_attrs: dict[int, str] = {}

    # -- the overridable policy ----------------------------------------------------------------

    def is_leaf_module(self, m, module_qualified_name: str) -> bool:
        """Whether m stays one call_module node: ember.nn's own layers do (as torch.nn's do
        in torch.fx), except containers such as Sequential; user modules are traced
        through."""
        from ..nn import Sequential

        module = type(m).__module__ or ""
        return module.startswith("ember.nn.") and not isinstance(m, Sequential)

    def path_of_module(self, mod) -> str:
        """The qualified name of mod inside the root module ("layer1.0.conv1")."""
        if self.submodule_paths is not None:
            path = self.submodule_paths.get(id(mod))
            if path is not None:
                return path
        for name, module in self.root.named_modules():
            if module is mod:
                return name
        raise runtime_error(f"module {type(mod).__name__} is not installed as a submodule of "
                            "the traced module")

    def call_module(self, m, forward: Callable, args: tuple, kwargs: dict) -> Any:
        """A module call met while tracing: a call_module node for a leaf module, else its
        forward traced through."""
        module_qualified_name = self.path_of_module(m)
        if not self.is_leaf_module(m, module_qualified_name):
            return forward(*args, **kwargs)
        return self.create_proxy("call_module", module_qualified_name, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        """A module attribute read while tracing: parameters and buffers become get_attr
        Proxies (one per attribute), everything else is returned as is."""
        from .._tensor import Tensor

        if not isinstance(attr_val, Tensor):
            return attr_val
        path = self.tensor_attrs.get(id(attr_val))
        if path is None:
            return attr_val
        if path not in parameter_proxy_cache:
            parameter_proxy_cache[path] = self.create_proxy("get_attr", path, (), {})
        return parameter_proxy_cache[path]

    def create_arg(self, a: Any) -> Argument:
        """Like TracerBase.create_arg, and tensors become get_attr nodes: the module's own
        parameters and buffers by their names, other tensors as new `_tensor_constantN`
        attributes of the root."""
        from .._tensor import Tensor
        from ..nn import Module

        if isinstance(a, Tensor):
            path = self.tensor_attrs.get(id(a))
            if path is None:
                i = 0
                while hasattr(self.root, f"_tensor_constant{i}"):
                    i += 1
                path = f"_tensor_constant{i}"
                self.root.register_buffer(path, a, persistent=False)
                self.tensor_attrs[id(a)] = path
            return self.create_node("get_attr", path, (), {})
        if isinstance(a, Module):
            path = self.path_of_module(a)
            return self.create_node("get_attr", path, (), {})
        return super().create_arg(a)

    # -- tracing --------------------------------------------------------------------------------

    def create_args_for_root(self, fn: Callable, is_module: bool,
                             concrete_args: dict | None) -> list:
        """The arguments the root is called with: a placeholder Proxy per parameter, or the
        concrete value concrete_args gives (PH keeps the placeholder)."""
        concrete_args = concrete_args or {}
        params = list(inspect.signature(fn).parameters.values())[1 if is_module else 0:]
        unknown = set(concrete_args) - {p.name for p in params}
        if unknown:
            raise type_error(f"concrete_args names {sorted(unknown)}, which "
                             f"{getattr(fn, '__qualname__', fn)} does not take")
        args = []
        for param in params:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise not_implemented_error(
                    f"symbolic_trace: cannot trace {getattr(fn, '__qualname__', fn)}, which takes "
                    f"*{param.name}/**{param.name}; give it named parameters")
            default = () if param.default is param.empty else (param.default,)
            type_expr = param.annotation if param.annotation is not param.empty else None
            if param.name in concrete_args and not isinstance(concrete_args[param.name], PHBase):
                value = concrete_args[param.name]
                # the input keeps its place in the signature; its value is fixed to value
                self.create_proxy("placeholder", f"{param.name}_1", (value,), {})
                args.append(value)
                continue
            args.append(self.create_proxy("placeholder", param.name, default, {},
                                          type_expr=type_expr))
        return args

    def trace(self, root, concrete_args: dict | None = None) -> Graph:
        """Run root (an nn.Module's forward, or a function) on Proxies and return the
        recorded Graph."""
        from .._tensor import Tensor
        from ..nn import Module

        if isinstance(root, Module):
            self.root = root
            fn = type(root).forward
            is_module = True
        elif callable(root):
            self.root = Module()
            fn = root
            is_module = False
        else:
            raise type_error(f"trace(): expected an nn.Module or a function, got "
                             f"{type(root).__name__}")
        self.graph = Graph(tracer_cls=type(self))
        self.submodule_paths = {id(m): name for name, m in self.root.named_modules()}
        self.tensor_attrs = {}
        for name, tensor in self.root.named_parameters():
            self.tensor_attrs.setdefault(id(tensor), name)
        for name, tensor in self.root.named_buffers():
            self.tensor_attrs.setdefault(id(tensor), name)

        args = self.create_args_for_root(fn, is_module, concrete_args)
        if is_module:
            args = [root, *args]

        patcher = _Patcher()
        parameter_proxy_cache: dict[str, Proxy] = {}
        original_call = Module.__call__
        original_getattr = Module.__getattr__
        tracer = self

        def module_call_wrapper(mod, *args, **kwargs):
            def forward(*args, **kwargs):
                return original_call(mod, *args, **kwargs)

            forward_globals = getattr(getattr(type(mod), "forward", None), "__globals__", None)
            if forward_globals is not None:
                tracer._autowrap(patcher, forward_globals)
            return tracer.call_module(mod, forward, args, kwargs)

        def module_getattr_wrapper(mod, attr):
            return tracer.getattr(attr, original_getattr(mod, attr), parameter_proxy_cache)

        try:
            patcher.setattr(Module, "__call__", module_call_wrapper)
            patcher.setattr(Module, "__getattr__", module_getattr_wrapper)
            self._patch_tensor(patcher, Tensor)
            self._patch_wrapped_functions(patcher)
            self._autowrap(patcher, fn.__globals__ if hasattr(fn, "__globals__") else {})
            result = fn(*args)
            self.create_node("output", "output", (self.create_arg(result),), {},
                             type_expr=getattr(fn, "__annotations__", {}).get("return"))
        finally:
            patcher.restore()
        self.submodule_paths = None
        return self.graph

    # -- what trace patches ---------------------------------------------------------------------

    @staticmethod
    def _patch_tensor(patcher: _Patcher, tensor_cls: type) -> None:
        for name, value in list(vars(tensor_cls).items()):
            if not isinstance(value, types.FunctionType):
                continue
            if name in _TENSOR_OPERATORS:
                patcher.setattr(tensor_cls, name, _tensor_operator(value))
            elif name == "__getitem__":
                patcher.setattr(tensor_cls, name, _tensor_getitem(value))
            elif not name.startswith("_"):
                patcher.setattr(tensor_cls, name, _tensor_method(name, value))

    @staticmethod
    def _patch_wrapped_functions(patcher: _Patcher) -> None:
        for (_, name), frame_globals in list(_wrapped_fns_to_patch.items()):
            if name in frame_globals:
                original = frame_globals[name]
            elif hasattr(builtins, name):
                original = getattr(builtins, name)
            else:
                continue
            original = getattr(original, "__wrapped_for_fx__", original)
            wrapper = _wrapped_function(original)
            wrapper.__wrapped_for_fx__ = original
            patcher.setitem(frame_globals, name, wrapper)

    def _autowrap(self, patcher: _Patcher, frame_globals: dict) -> None:
        for name, value in list(frame_globals.items()):
            if (not name.startswith("_") and callable(value)
                    and id(value) in self._autowrap_function_ids):
                wrapper = _wrapped_function(value)
                wrapper.__wrapped_for_fx__ = value
                patcher.setitem(frame_globals, name, wrapper)


def symbolic_trace(root, concrete_args: dict | None = None):
    """Trace root (an nn.Module or a function) into a GraphModule whose forward runs the
    recorded graph."""
    from .graph_module import GraphModule

    tracer = Tracer()
    graph = tracer.trace(root, concrete_args)
    name = type(root).__name__ if hasattr(root, "forward") else root.__name__
    return GraphModule(tracer.root, graph, name)


__all__ = ["PH", "PHBase", "TraceError", "Tracer", "has_side_effect", "symbolic_trace", "wrap"]
