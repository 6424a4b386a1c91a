"""Python source for an fx Graph: the `forward` a GraphModule runs, laid out as torch.fx
lays it out, one statement per node, each value set to None after its last use."""

from __future__ import annotations

import builtins
import enum
import math
import operator
from typing import TYPE_CHECKING, Any

from ..errors import type_error
from ._patching import public_name
from .graph import Namespace, PythonCode
from .node import Node, _qualified_name

if TYPE_CHECKING:
    from .graph import Graph

# operator functions written as Python operators: name -> format
BINARY_OPERATORS = {
    "add": "{} + {}", "sub": "{} - {}", "mul": "{} * {}", "truediv": "{} / {}",
    "floordiv": "{} // {}", "mod": "{} % {}", "pow": "{} ** {}", "matmul": "{} @ {}",
    "lshift": "{} << {}", "rshift": "{} >> {}", "and_": "{} & {}", "or_": "{} | {}",
    "xor": "{} ^ {}", "eq": "{} == {}", "ne": "{} != {}", "lt": "{} < {}", "le": "{} <= {}",
    "gt": "{} > {}", "ge": "{} >= {}",
}
UNARY_OPERATORS = {"neg": "-{}", "pos": "+{}", "invert": "~{}"}
INPLACE_OPERATORS = {
    "iadd": "{} += {}", "isub": "{} -= {}", "imul": "{} *= {}", "itruediv": "{} /= {}",
    "ifloordiv": "{} //= {}", "imod": "{} %= {}", "ipow": "{} **= {}", "imatmul": "{} @= {}",
    "ilshift": "{} <<= {}", "irshift": "{} >>= {}", "iand": "{} &= {}", "ior": "{} |= {}",
    "ixor": "{} ^= {}",
}
WRAP_CALL = "ember.fx._symbolic_trace.wrap"


def _is_operator(target: Any, table: dict) -> bool:
    name = getattr(target, "__name__", None)
    return name in table and getattr(operator, name, None) is target


def format_target(base: str, path: str) -> str:
    """`base.a.b` for the attribute path "a.b", with getattr() for parts that are not
    identifiers ("layer.0" -> `getattr(self.layer, "0")`)."""
    text = base
    for atom in path.split("."):
        if atom.isidentifier():
            text = f"{text}.{atom}"
        else:
            text = f'getattr({text}, "{atom}")'
    return text


class _Emitter:
    def __init__(self, graph: Graph, root_module: str) -> None:
        import ember

        self.graph = graph
        self.root_module = root_module
        self.namespace = Namespace()
        for node in graph.nodes:
            self.namespace.create_name(node.name, node)
        self.globals: dict[str, Any] = {"inf": math.inf, "nan": math.nan,
                                        "NoneType": type(None), "ember": ember,
                                        "device": ember.device}
        self.wrapped: list[str] = []

    def add_global(self, obj: Any) -> str:
        """The name the generated code uses for obj: its public spelling for ember's
        functions, its own name for builtins, else a new global."""
        spelling = public_name(obj)
        if spelling is not None:
            return spelling
        if getattr(builtins, getattr(obj, "__name__", ""), None) is obj:
            return obj.__name__
        hint = _qualified_name(obj) if callable(obj) else type(obj).__name__
        name = self.namespace.create_name(hint, obj)
        self.globals[name] = obj
        return name

    def repr_arg(self, arg: Any) -> str:
        if isinstance(arg, Node):
            return arg.name
        if isinstance(arg, tuple) and hasattr(arg, "_fields"):
            cls = self.add_global(type(arg))
            return f"{cls}({', '.join(self.repr_arg(a) for a in arg)})"
        if isinstance(arg, tuple):
            items = ", ".join(self.repr_arg(a) for a in arg)
            return f"({items},)" if len(arg) == 1 else f"({items})"
        if isinstance(arg, list):
            return "[" + ", ".join(self.repr_arg(a) for a in arg) + "]"
        if isinstance(arg, dict):
            return "{" + ", ".join(f"{self.repr_arg(k)}: {self.repr_arg(v)}"
                                   for k, v in arg.items()) + "}"
        if isinstance(arg, slice):
            return (f"slice({self.repr_arg(arg.start)}, {self.repr_arg(arg.stop)}, "
                    f"{self.repr_arg(arg.step)})")
        if isinstance(arg, enum.Enum):
            return f"{self.add_global(type(arg))}.{arg.name}"
        if callable(arg):
            return self.add_global(arg)
        return repr(arg)

    def format_args(self, args: tuple, kwargs: dict) -> str:
        parts = [self.repr_arg(a) for a in args]
        parts += [f"{k} = {self.repr_arg(v)}" for k, v in kwargs.items()]
        return ", ".join(parts)

    def statement(self, node: Node) -> str | None:
        name, target, args, kwargs = node.name, node.target, node.args, node.kwargs
        if node.op == "placeholder":
            raw = target.replace("*", "")
            return None if raw == name else f"{name} = {raw}"
        if node.op == "get_attr":
            return f"{name} = {format_target(self.root_module, target)}"
        if node.op == "call_module":
            module = format_target(self.root_module, target)
            return f"{name} = {module}({self.format_args(args, kwargs)})"
        if node.op == "call_method":
            if not args:
                raise type_error(f"node {name}: call_method {target!r} needs the object it is "
                                 "called on as args[0]")
            receiver = format_target(self.repr_arg(args[0]), target)
            return f"{name} = {receiver}({self.format_args(args[1:], kwargs)})"
        if node.op == "call_function":
            return f"{name} = {self.call_expression(node)}"
        if node.op == "output":
            return f"return {self.repr_arg(args[0])}"
        raise type_error(f"node {name}: unknown op {node.op!r}")

    def call_expression(self, node: Node) -> str:
        target, args, kwargs = node.target, node.args, node.kwargs
        if not kwargs:
            if len(args) == 2 and _is_operator(target, BINARY_OPERATORS):
                return BINARY_OPERATORS[target.__name__].format(*map(self.repr_arg, args))
            if len(args) == 1 and _is_operator(target, UNARY_OPERATORS):
                return UNARY_OPERATORS[target.__name__].format(self.repr_arg(args[0]))
            if len(args) == 2 and target is operator.getitem:
                return f"{self.repr_arg(args[0])}[{self.repr_arg(args[1])}]"
            if (len(args) == 2 and target is builtins.getattr and isinstance(args[1], str)
                    and args[1].isidentifier()):
                return f"{self.repr_arg(args[0])}.{args[1]}"
        if node.meta.get("is_wrapped") and public_name(target) is None:
            function = self.add_global(target)
            if function not in self.wrapped:
                self.wrapped.append(function)
        else:
            function = self.add_global(target)
        return f"{function}({self.format_args(args, kwargs)})"


def generate(graph: Graph, root_module: str) -> PythonCode:
    """The source of `def forward(self, <placeholders>)` running graph, and its globals."""
    emitter = _Emitter(graph, root_module)
    nodes = list(graph.nodes)

    # each value is dropped (`x = None`) right after the node that reads it last
    last_uses: dict[Node, list[Node]] = {}
    seen: set[Node] = set()
    for node in reversed(nodes):
        for used in node.all_input_nodes:
            if used not in seen:
                seen.add(used)
                last_uses.setdefault(node, []).append(used)

    free_vars: list[str] = []
    body: list[str] = []
    for node in nodes:
        if node.op == "placeholder":
            text = node.target
            if node.args:
                text += f" = {emitter.repr_arg(node.args[0])}"
            free_vars.append(text)
        line = emitter.statement(node)
        if line is None:
            continue
        if node.op == "output":
            body.append(line + "\n")
            continue
        dropped = list(last_uses.get(node, []))
        if not node.users:
            dropped.append(node)
        if dropped and node.op != "placeholder":
            line += ";  " + " = ".join([n.name for n in dropped] + ["None"])
        body.append(line + "\n")
    if not any(n.op == "output" for n in nodes):
        body.append("pass\n")

    code = "".join(body).lstrip("\n")
    code = "\n".join("    " + line for line in code.split("\n"))
    wrap_statements = "\n".join(f'{WRAP_CALL}("{name}")' for name in emitter.wrapped)
    signature = ", ".join([emitter.root_module, *free_vars])
    src = f"\n{wrap_statements}\n\ndef forward({signature}):\n{code}"
    return PythonCode(src, emitter.globals)
