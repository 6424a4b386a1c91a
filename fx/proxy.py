"""Proxy: a stand-in value that records what is done with it as nodes of a Graph.

Every Python operator on a Proxy records a call_function of the `operator` function,
an attribute read followed by a call records a call_method, and ember's public functions
called with a Proxy record a call_function (_patching.py). What cannot be recorded, because
it needs a concrete value (bool() for control flow, len(), iteration of unknown length),
raises a TraceError that says so.
"""

from __future__ import annotations

import dis
import inspect
import operator
from collections.abc import Callable
from typing import Any

from ..errors import EmberValueError, user_frame
from . import _patching
from .graph import Graph
from .node import Argument, Node, Target, map_aggregate

# plain values a graph holds as constants
_BASE_TYPES = (str, int, float, bool, complex, type(None), type(...), range, bytes)


class TraceError(EmberValueError):
    """Symbolic tracing met code that needs a concrete value."""

    def __init__(self, message: str) -> None:
        where = user_frame()
        super().__init__(f"{message} (at {where})" if where else message)


class TracerBase:
    """What every tracer does: turn calls on Proxies into nodes of `self.graph`."""

    graph: Graph

    def create_node(self, kind: str, target: Target, args: tuple, kwargs: dict,
                    name: str | None = None, type_expr: Any = None) -> Node:
        """Insert a node into self.graph (overridable to tag or redirect nodes)."""
        return self.graph.create_node(kind, target, args, kwargs, name, type_expr)

    def proxy(self, node: Node) -> Proxy:
        """The Proxy standing for node."""
        return Proxy(node, self)

    def create_proxy(self, kind: str, target: Target, args: tuple, kwargs: dict,
                     name: str | None = None, type_expr: Any = None,
                     proxy_factory_fn: Callable[[Node], Proxy] | None = None) -> Proxy:
        """Record one operation: its arguments become graph arguments (create_arg), a node
        is made (create_node), and the Proxy for that node is returned."""
        args_ = self.create_arg(args)
        kwargs_ = self.create_arg(kwargs)
        node = self.create_node(kind, target, args_, kwargs_, name, type_expr)
        return self.proxy(node) if proxy_factory_fn is None else proxy_factory_fn(node)

    def create_arg(self, a: Any) -> Argument:
        """a as a graph argument: Proxies become their nodes, containers are converted
        item by item, plain constants are kept; anything else is refused."""
        if isinstance(a, Proxy):
            return a.node
        if isinstance(a, Node):
            return a
        if isinstance(a, tuple):
            items = tuple(self.create_arg(elem) for elem in a)
            return type(a)(*items) if hasattr(a, "_fields") else items
        if isinstance(a, list):
            return [self.create_arg(elem) for elem in a]
        if isinstance(a, dict):
            converted = {}
            for key, value in a.items():
                key = self.create_arg(key)
                if isinstance(key, Node):
                    raise TraceError(f"a dict key cannot be a traced value ({key})")
                converted[key] = self.create_arg(value)
            return converted
        if isinstance(a, slice):
            return slice(self.create_arg(a.start), self.create_arg(a.stop),
                         self.create_arg(a.step))
        if isinstance(a, _BASE_TYPES) or _is_ember_constant(a) or callable(a):
            return a
        raise TraceError(f"cannot record an argument of type {type(a).__name__} ({a!r}) in "
                         "a graph")

    def to_bool(self, obj: Proxy) -> bool:
        """bool() of a traced value: refused, since the graph would hold one branch only."""
        raise TraceError("symbolically traced variables cannot be used as inputs to control "
                         "flow (bool() of a Proxy; pass the value as concrete_args, or move "
                         "the branch into a function registered with ember.fx.wrap)")

    def iter(self, obj: Proxy):
        """Iteration of a traced value: refused, its length is unknown."""
        raise TraceError("Proxy object cannot be iterated: a traced value has no known "
                         "length (index it, or unpack it with a fixed number of names, "
                         "`a, b = proxy`)")

    def keys(self, obj: Proxy) -> Any:
        """`**proxy`: record a call of its keys() method."""
        return Attribute(obj, "keys")()


class GraphAppendingTracer(TracerBase):
    """A tracer that appends to an existing graph: Proxies made on it record there."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph


def _is_ember_constant(a: Any) -> bool:
    import ember
    from ember.ir.dtypes import dtype

    return isinstance(a, (dtype, ember.device))


class Proxy:
    """A traced value: operations on it are recorded as nodes of `tracer`'s graph."""

    def __init__(self, node: Node, tracer: TracerBase | None = None) -> None:
        _patching.install()  # ember's functions record calls on proxies from now on
        if tracer is None:
            tracer = GraphAppendingTracer(node.graph)
        self.tracer = tracer
        self.node = node

    def __repr__(self) -> str:
        return f"Proxy({self.node.name})"

    def __getattr__(self, k: str) -> Attribute:
        if k.startswith("__") and k.endswith("__"):
            raise AttributeError(k)
        return Attribute(self, k)

    def __call__(self, *args, **kwargs) -> Proxy:
        return self.tracer.create_proxy("call_method", "__call__", (self, *args), kwargs)

    def __iter__(self):
        frame = inspect.currentframe().f_back
        for instruction in dis.get_instructions(frame.f_code):
            if instruction.offset == frame.f_lasti and instruction.opname == "UNPACK_SEQUENCE":
                return (self[i] for i in range(instruction.argval))
        return self.tracer.iter(self)

    def __bool__(self) -> bool:
        return self.tracer.to_bool(self)

    def __len__(self) -> int:
        raise TraceError("'len' is not supported in symbolic tracing by default: the length of "
                         "a traced value is unknown (call ember.fx.wrap('len') at module scope "
                         "to record len() calls)")

    def keys(self) -> Any:
        return self.tracer.keys(self)

    def __hash__(self) -> int:
        return id(self)

    def __setitem__(self, index, value) -> None:
        self.tracer.create_proxy("call_function", operator.setitem, (self, index, value), {})

    def __getstate__(self):
        return self.__dict__

    def __setstate__(self, state) -> None:
        self.__dict__ = state


class Attribute(Proxy):
    """`proxy.name`: a call_method when called, else a getattr node made on first use."""

    def __init__(self, root: Proxy, attr: str) -> None:
        self.root = root
        self.attr = attr
        self.tracer = root.tracer
        self._node: Node | None = None

    @property
    def node(self) -> Node:
        if self._node is None:
            self._node = self.tracer.create_proxy("call_function", getattr,
                                                  (self.root, self.attr), {}).node
        return self._node

    def __call__(self, *args, **kwargs) -> Proxy:
        return self.tracer.create_proxy("call_method", self.attr, (self.root, *args), kwargs)


# Python's operators on a Proxy: dunder name -> the operator function recorded
_BINARY = ("add", "sub", "mul", "floordiv", "truediv", "mod", "pow", "lshift", "rshift",
           "and_", "or_", "xor", "matmul")
_COMPARE = ("eq", "ne", "lt", "gt", "le", "ge")
_UNARY = ("neg", "pos", "invert", "abs")


def _dunder(name: str) -> str:
    return f"__{name.rstrip('_')}__"


def _define_operators() -> None:
    def forward(fn):
        def method(self, *rest):
            return self.tracer.create_proxy("call_function", fn, (self, *rest), {})

        return method

    def reflected(fn):
        def method(self, other):
            return self.tracer.create_proxy("call_function", fn, (other, self), {})

        return method

    for name in (*_BINARY, *_COMPARE, *_UNARY, "getitem"):
        fn = getattr(operator, name)
        setattr(Proxy, _dunder(name), forward(fn))
    for name in _BINARY:
        fn = getattr(operator, name)
        setattr(Proxy, f"__r{name.rstrip('_')}__", reflected(fn))


_define_operators()

__all__ = ["Attribute", "GraphAppendingTracer", "Proxy", "TraceError", "TracerBase",
           "map_aggregate"]
