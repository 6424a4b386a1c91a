"""GraphModule: an nn.Module whose forward is Python generated from an fx Graph.

It holds the submodules, parameters and buffers its graph names (copied from the root it
was made from), and runs as ember code: calling it runs ember ops, gradients flow through
it, and tracing it again gives back its graph. After editing `.graph`, `recompile()`
regenerates `forward`.
"""

from __future__ import annotations

import linecache
import sys
from typing import Any

from ..errors import type_error
from ..nn import Module
from .graph import Graph, PythonCode


def _copy_attr(from_module: Module, to_module: Module, target: str) -> None:
    """Install from_module's attribute at path target on to_module, making empty modules
    for the path's missing parts."""
    *prefix, field = target.split(".")
    for item in prefix:
        f = getattr(from_module, item)
        t = getattr(to_module, item, None)
        if f is t:
            return  # the whole submodule is already installed
        if t is None:
            t = Module()
            setattr(to_module, item, t)
        from_module, to_module = f, t
    _assign(to_module, field, getattr(from_module, field))


def _assign_attr(value: Any, to_module: Module, target: str) -> None:
    *prefix, field = target.split(".")
    for item in prefix:
        t = getattr(to_module, item, None)
        if t is None:
            t = Module()
            setattr(to_module, item, t)
        to_module = t
    _assign(to_module, field, value)


def _assign(module: Module, field: str, value: Any) -> None:
    from .._tensor import Tensor
    from ..nn import Parameter

    if isinstance(value, Tensor) and not isinstance(value, Parameter):
        module.register_buffer(field, value)
    else:
        setattr(module, field, value)


class GraphModule(Module):
    """A Module made of `root`'s attributes and a Graph: `gm.graph`, `gm.code` (the
    generated forward's source), `gm.recompile()`."""

    def __new__(cls, *args, **kwargs):
        # each instance gets its own class, so that recompile() can set forward on it
        # (tracing a GraphModule reads type(gm).forward, as for any module)
        for base in cls.__mro__:
            if base.__qualname__.split(".")[-1] != "GraphModuleImpl":
                cls = base
                break

        class GraphModuleImpl(cls):
            pass

        return super().__new__(GraphModuleImpl)

    def __init__(self, root: Module | dict, graph: Graph, class_name: str = "GraphModule"
                 ) -> None:
        super().__init__()
        self.__class__.__name__ = class_name
        if isinstance(root, Module):
            self.training = root.training
            for node in graph.nodes:
                if node.op in ("get_attr", "call_module"):
                    _copy_attr(root, self, node.target)
        elif isinstance(root, dict):
            for node in graph.nodes:
                if node.op in ("get_attr", "call_module"):
                    if node.target not in root:
                        raise type_error(f"GraphModule(): node {node.name} targets "
                                         f"{node.target!r}, which the root dict lacks")
                    _assign_attr(root[node.target], self, node.target)
        else:
            raise type_error(f"GraphModule(): root must be an nn.Module or a dict, got "
                             f"{type(root).__name__}")
        self.graph = graph

    @property
    def graph(self) -> Graph:
        """The Graph this module runs; assigning one recompiles forward."""
        return self.__dict__["_graph"]

    @graph.setter
    def graph(self, g: Graph) -> None:
        if not isinstance(g, Graph):
            raise type_error(f"GraphModule.graph must be an fx Graph, got {type(g).__name__}")
        self.__dict__["_graph"] = g
        g.owning_module = self
        self.recompile()

    @property
    def code(self) -> str:
        """The Python source of the generated forward."""
        return self.__dict__["_code"]

    def recompile(self) -> PythonCode:
        """Regenerate forward from self.graph (after editing the graph)."""
        python_code = self.graph.python_code(root_module="self")
        self.__dict__["_code"] = python_code.src
        cls = type(self)
        filename = f"<eval_with_key>.{id(self)}.{_next_key()}"
        # register the source so that tracebacks and inspect show the generated lines
        lines = python_code.src.splitlines(keepends=True)
        linecache.cache[filename] = (len(python_code.src), None, lines, filename)
        namespace = dict(python_code.globals)
        exec(compile(python_code.src, filename, "exec"), namespace)
        cls.forward = namespace["forward"]
        return python_code

    def __str__(self) -> str:
        return f"{super().__repr__()}\n\n\n{self.code}"

    def print_readable(self, print_output: bool = True) -> str:
        """The generated code under a `class <Name>(ember.nn.Module)` header."""
        body = "\n".join("    " + line for line in self.code.strip("\n").split("\n"))
        text = f"class {type(self).__name__}(ember.nn.Module):\n{body}\n"
        if print_output:
            sys.stdout.write(text)
        return text


_key = 0


def _next_key() -> int:
    global _key
    _key += 1
    return _key
