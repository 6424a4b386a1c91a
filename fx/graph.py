"""Graph: the ordered list of Nodes an fx program is made of, and the tools to edit it.

Nodes live in a doubly linked list around a sentinel root node; new nodes go in at the
current insertion point (the end, unless inside `inserting_before`/`inserting_after`).
Every node name is unique in its graph, is a valid Python identifier, and shadows no
builtin, so `python_code` (graph_codegen.py) can use the names as variables.
"""

from __future__ import annotations

import builtins
import copy
import inspect
import keyword
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import runtime_error, type_error, value_error
from .node import Argument, Node, Target, map_arg

# names a generated program's globals hold besides the builtins
RESERVED_GLOBALS = ("inf", "nan", "NoneType", "ember", "device")

_ILLEGAL_CHAR = re.compile("[^0-9a-zA-Z_]+")
_NAME_SUFFIX = re.compile(r"(.*)_(\d+)$")
_SNAKE_CASE = re.compile(r"(?<=[a-z])([A-Z])")


def snake_case(s: str) -> str:
    """`s` as a Python-style variable name: `fooBar` -> `foo_bar`."""
    return _SNAKE_CASE.sub(r"_\1", s).lower()


class Namespace:
    """Hands out unique, legal identifiers: `add`, `add_1`, ...; a name that is a keyword,
    a builtin or a reserved global (`float`, `max`, `ember`) gets a suffix (`float_1`)."""

    def __init__(self) -> None:
        self._obj_to_name: dict[int, str] = {}
        self._used_names: set[str] = set()
        self._base_count: dict[str, int] = defaultdict(int)

    def create_name(self, candidate: str, obj: Any = None) -> str:
        """A fresh name close to candidate (the same name again for the same obj)."""
        if obj is not None and id(obj) in self._obj_to_name:
            return self._obj_to_name[id(obj)]
        candidate = _ILLEGAL_CHAR.sub("_", candidate) or "_unnamed"
        if candidate[0].isdigit():
            candidate = f"_{candidate}"
        match = _NAME_SUFFIX.match(candidate)
        if match is None:
            base, num = candidate, None
        else:
            base, num = match.group(1), int(match.group(2))
        candidate = base if num is None else f"{base}_{num}"
        if not num:
            num = self._base_count[base]
        while candidate in self._used_names or self._is_illegal(candidate, obj):
            num += 1
            candidate = f"{base}_{num}"
        self._used_names.add(candidate)
        self._base_count[base] = num
        if obj is not None:
            self._obj_to_name[id(obj)] = candidate
        return candidate

    def associate_name_with_obj(self, name: str, obj: Any) -> None:
        """Record that name stands for obj."""
        self._obj_to_name[id(obj)] = name

    @staticmethod
    def _is_illegal(name: str, obj: Any) -> bool:
        if keyword.iskeyword(name):
            return True
        if name in builtins.__dict__:
            return obj is not builtins.__dict__[name]
        return name in RESERVED_GLOBALS


class _NodeList:
    """The nodes of a graph in order (or in reverse), safe against erasing the current
    node while iterating."""

    def __init__(self, graph: Graph, direction: str = "_next") -> None:
        self._graph = graph
        self._direction = direction

    def __len__(self) -> int:
        return self._graph._len

    def __iter__(self) -> Iterator[Node]:
        root = self._graph._root
        cur = getattr(root, self._direction)
        while cur is not root:
            if not cur._erased:
                yield cur
            # an erased node keeps its links, so erasing the current node is safe
            cur = getattr(cur, self._direction)

    def __reversed__(self) -> Iterator[Node]:
        return iter(_NodeList(self._graph, "_prev" if self._direction == "_next" else "_next"))

    def __repr__(self) -> str:
        return repr(list(self))


class _InsertPoint:
    """Context manager that moves a graph's insertion point and restores it on exit."""

    def __init__(self, graph: Graph, new_insert: Callable[[Node], None]) -> None:
        self.graph = graph
        self.orig_insert, graph._insert = graph._insert, new_insert

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc) -> None:
        self.graph._insert = self.orig_insert


def _target_to_str(target: Target) -> str:
    name = target if isinstance(target, str) else getattr(target, "__name__", None)
    if name is None:
        raise type_error(f"cannot name a node after {target!r}: it has no __name__")
    if name.startswith("__") and name.endswith("__") and len(name) > 4:
        name = name[2:-2]
    return snake_case(name)


class Graph:
    """An fx program: placeholders (inputs), operations, and one output node, in order."""

    def __init__(self, owning_module=None, tracer_cls=None, tracer_extras=None) -> None:
        self._root = Node(self, "", "root", "", (), {})
        self._namespace = Namespace()
        self._len = 0
        self._insert = self._root.prepend
        self.owning_module = owning_module
        self._tracer_cls = tracer_cls
        self._tracer_extras = tracer_extras

    @property
    def nodes(self) -> _NodeList:
        """The nodes in program order; supports len() and reversed()."""
        return _NodeList(self)

    def find_nodes(self, *, op: str, target: Target | None = None) -> list[Node]:
        """The nodes with this op (and this target, when given)."""
        return [n for n in self.nodes
                if n.op == op and (target is None or n.target == target)]

    # -- building ----------------------------------------------------------------------------

    def create_node(self, op: str, target: Target, args: tuple | None = None,
                    kwargs: dict | None = None, name: str | None = None,
                    type_expr: Any = None) -> Node:
        """Insert a new node at the insertion point; its name is `name` (or one made from
        target) made unique."""
        args = () if args is None else args
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(args, tuple):
            raise type_error(f"create_node(): args must be a tuple, got {type(args).__name__}")
        if not isinstance(kwargs, dict):
            raise type_error(f"create_node(): kwargs must be a dict, got "
                             f"{type(kwargs).__name__}")
        candidate = name if name is not None else _target_to_str(target)
        unique = self._namespace.create_name(candidate, None)
        node = Node(self, unique, op, target, args, kwargs, type_expr)
        self._insert(node)
        self._len += 1
        return node

    def placeholder(self, name: str, type_expr: Any = None,
                    default_value: Any = inspect.Signature.empty) -> Node:
        """An input of the program named name (with a default value, when given)."""
        args = () if default_value is inspect.Signature.empty else (default_value,)
        return self.create_node("placeholder", name, args, type_expr=type_expr)

    def get_attr(self, qualified_name: str, type_expr: Any = None) -> Node:
        """A read of the owning module's attribute at qualified_name ("sub.weight")."""
        return self.create_node("get_attr", qualified_name, type_expr=type_expr)

    def call_module(self, module_name: str, args: tuple | None = None,
                    kwargs: dict | None = None, type_expr: Any = None) -> Node:
        """A call of the owning module's submodule at module_name."""
        return self.create_node("call_module", module_name, args, kwargs, type_expr=type_expr)

    def call_method(self, method_name: str, args: tuple | None = None,
                    kwargs: dict | None = None, type_expr: Any = None) -> Node:
        """A call of the method method_name on args[0]."""
        return self.create_node("call_method", method_name, args, kwargs, type_expr=type_expr)

    def call_function(self, the_function: Callable, args: tuple | None = None,
                      kwargs: dict | None = None, type_expr: Any = None) -> Node:
        """A call of a free function."""
        return self.create_node("call_function", the_function, args, kwargs,
                                type_expr=type_expr)

    def output(self, result: Argument, type_expr: Any = None) -> Node:
        """The output node: the program returns result."""
        return self.create_node("output", "output", (result,), type_expr=type_expr)

    def node_copy(self, node: Node, arg_transform: Callable[[Node], Argument] = lambda x: x
                  ) -> Node:
        """A copy of node (from any graph) inserted here, its input nodes mapped through
        arg_transform."""
        args = map_arg(node.args, arg_transform)
        kwargs = map_arg(node.kwargs, arg_transform)
        result = self.create_node(node.op, node.target, args, kwargs, node.name, node.type)
        result.meta = copy.copy(node.meta)
        return result

    def graph_copy(self, g: Graph, val_map: dict[Node, Node], return_output_node: bool = False
                   ) -> Any:
        """Copy every node of g here (val_map gives, and receives, the node standing for each
        node of g); returns the copied output value (and g's output node, when asked)."""
        for node in g.nodes:
            if node in val_map:
                continue
            if node.op == "output":
                value = map_arg(node.args[0], lambda n: val_map[n])
                return (value, node) if return_output_node else value
            val_map[node] = self.node_copy(node, lambda n: val_map[n])
        return None

    # -- editing -----------------------------------------------------------------------------

    def inserting_before(self, n: Node | None = None) -> _InsertPoint:
        """`with graph.inserting_before(n):` new nodes go just before n (at the start, when n
        is None)."""
        if n is None:
            return self.inserting_after(self._root)
        self._check_owned(n, "inserting_before")
        return _InsertPoint(self, n.prepend)

    def inserting_after(self, n: Node | None = None) -> _InsertPoint:
        """`with graph.inserting_after(n):` new nodes go just after n (each new one right
        after n, as torch.fx does; at the end when n is None)."""
        if n is None:
            return self.inserting_before(self._root)
        self._check_owned(n, "inserting_after")
        return _InsertPoint(self, n.append)

    def erase_node(self, to_erase: Node) -> None:
        """Remove a node nothing reads any more."""
        self._check_owned(to_erase, "erase_node")
        if to_erase._erased:
            raise runtime_error(f"erase_node(): {to_erase} was already erased")
        if to_erase.users:
            raise runtime_error(
                f"Tried to erase Node {to_erase} but it still had {len(to_erase.users)} users "
                f"in the graph: {list(to_erase.users)}!")
        to_erase._remove_from_list()
        to_erase._erased = True
        self._len -= 1
        to_erase._update_args_kwargs(map_arg(to_erase.args, lambda n: None),
                                     map_arg(to_erase.kwargs, lambda n: None))

    def eliminate_dead_code(self, is_impure_node: Callable[[Node], bool] | None = None
                            ) -> bool:
        """Erase every node whose value nothing reads and whose call has no side effect
        (Node.is_impure); returns whether anything was erased."""
        self.lint()
        impure = is_impure_node or (lambda n: n.is_impure())
        changed = False
        for node in reversed(self.nodes):
            if not node.users and not impure(node):
                self.erase_node(node)
                changed = True
        return changed

    def _check_owned(self, n: Node, where: str) -> None:
        if not isinstance(n, Node):
            raise type_error(f"{where}(): expected a Node, got {type(n).__name__}")
        if n.graph is not self:
            raise value_error(f"{where}(): node {n} belongs to another graph")

    # -- checking ----------------------------------------------------------------------------

    def lint(self) -> None:
        """Check the graph's invariants: nodes belong to it, names are unique, every input
        is defined before its use, the use edges agree, and the attributes and submodules
        named by get_attr/call_module exist in the owning module."""
        seen: set[Node] = set()
        names: set[str] = set()
        for node in self.nodes:
            if node.graph is not self:
                raise runtime_error(f"lint: node {node} does not belong to this graph")
            if node.name in names:
                raise runtime_error(f"lint: node name {node.name!r} is used twice")
            names.add(node.name)
            for arg in node.all_input_nodes:
                if arg.graph is not self:
                    raise runtime_error(f"lint: {node} reads {arg}, a node of another graph")
                if arg not in seen:
                    raise runtime_error(f"lint: {node} reads {arg} before it is defined (or "
                                        "after it was erased)")
                if node not in arg.users:
                    raise runtime_error(f"lint: {node} reads {arg} but is not among its users")
            for user in node.users:
                if user._erased or node not in user._input_nodes:
                    raise runtime_error(f"lint: {user} is among {node}'s users but does not "
                                        "read it")
            seen.add(node)
        outputs = [n for n in self.nodes if n.op == "output"]
        if len(outputs) > 1:
            raise runtime_error(f"lint: the graph has {len(outputs)} output nodes")
        module = self.owning_module
        if module is None:
            return
        for node in self.nodes:
            if node.op not in ("get_attr", "call_module"):
                continue
            obj = module
            for atom in node.target.split("."):
                if not hasattr(obj, atom):
                    raise runtime_error(f"lint: node {node} targets {node.target}, but "
                                        f"{type(module).__name__} has no attribute {atom!r} "
                                        "on that path")
                obj = getattr(obj, atom)

    # -- printing ----------------------------------------------------------------------------

    def __str__(self) -> str:
        placeholder_names: list[str] = []
        lines = [n.format_node(placeholder_names) for n in self.nodes]
        text = f"graph({', '.join(placeholder_names)}):"
        for line in lines:
            if line:
                text += "\n    " + line
        return text

    def print_tabular(self) -> None:
        """Print the nodes as a table: opcode, name, target, args, kwargs."""
        headers = ["opcode", "name", "target", "args", "kwargs"]
        rows = [[n.op, n.name, str(n.target), str(n.args), str(n.kwargs)] for n in self.nodes]
        widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                 for row in [headers, ["-" * w for w in widths], *rows]]
        print("\n".join(lines))

    def python_code(self, root_module: str = "self") -> PythonCode:
        """The source of a `forward(self, ...)` that runs this graph, and the globals it
        needs (graph_codegen.py)."""
        from .graph_codegen import generate

        return generate(self, root_module)


class PythonCode:
    """Generated source and the globals it runs in."""

    def __init__(self, src: str, globals: dict[str, Any]) -> None:
        self.src = src
        self.globals = globals
