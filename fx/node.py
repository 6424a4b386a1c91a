"""Node: one operation of an fx Graph, which knows its inputs and its users.

A Node's args and kwargs may nest Nodes inside tuples, lists, dicts and slices; the Node
keeps the set of Nodes it reads (all_input_nodes) and each of those keeps it among its
users, so rewiring a graph (args assignment, replace_all_uses_with) keeps both sides true.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Union

from ..errors import runtime_error, type_error, value_error

if TYPE_CHECKING:
    from .graph import Graph

Target = Union[Callable[..., Any], str]
Argument = Any  # a Node, a number, a string, a slice, or a tuple/list/dict of Arguments

OPCODES = ("placeholder", "call_method", "call_module", "call_function", "get_attr", "output",
           "root")


def map_aggregate(a: Argument, fn: Callable[[Argument], Argument]) -> Argument:
    """fn applied to every leaf of a (tuples, named tuples, lists, dicts and slices are
    walked into), the structure rebuilt around the results."""
    if isinstance(a, tuple):
        mapped = tuple(map_aggregate(elem, fn) for elem in a)
        return type(a)(*mapped) if hasattr(a, "_fields") else mapped
    if isinstance(a, list):
        return [map_aggregate(elem, fn) for elem in a]
    if isinstance(a, dict):
        return {key: map_aggregate(value, fn) for key, value in a.items()}
    if isinstance(a, slice):
        return slice(map_aggregate(a.start, fn), map_aggregate(a.stop, fn),
                     map_aggregate(a.step, fn))
    return fn(a)


def map_arg(a: Argument, fn: Callable[[Node], Argument]) -> Argument:
    """fn applied to every Node inside a (a nested argument), other values kept."""
    if not callable(fn):
        raise type_error(f"map_arg(): fn must be callable, got {type(fn).__name__}")
    return map_aggregate(a, lambda x: fn(x) if isinstance(x, Node) else x)


def _qualified_name(target: Callable) -> str:
    """module.name of a callable, with the public spelling of ember's own functions."""
    from ._patching import public_name

    public = public_name(target)
    if public is not None:
        return public
    name = getattr(target, "__name__", None)
    if name is None:
        raise type_error(f"cannot name the callable {target!r}: it has no __name__")
    module = getattr(target, "__module__", None) or "builtins"
    if module == "_operator":
        module = "operator"
    return f"{module}.{name}"


def pretty_target(target: Target) -> str:
    """target as a person reads it: a string as is, a callable by its qualified name."""
    if isinstance(target, str):
        return target
    return _qualified_name(target)


def _format_arg(arg: Argument) -> str:
    if isinstance(arg, list):
        return "[" + ", ".join(_format_arg(a) for a in arg) + "]"
    if isinstance(arg, tuple):
        items = ", ".join(_format_arg(a) for a in arg)
        return f"({items},)" if len(arg) == 1 else f"({items})"
    if isinstance(arg, dict):
        return "{" + ", ".join(f"{k}: {_format_arg(v)}" for k, v in arg.items()) + "}"
    if isinstance(arg, Node):
        return "%" + str(arg)
    return str(arg)


class Node:
    """One operation of a Graph: `op` says what kind (placeholder, get_attr, call_function,
    call_method, call_module, output), `target` what it calls or reads, `args`/`kwargs` what
    it passes, and `name` the variable that holds its value in generated code."""

    def __init__(self, graph: Graph, name: str, op: str, target: Target, args: tuple,
                 kwargs: dict, return_type: Any = None) -> None:
        if op not in OPCODES:
            raise value_error(f"Node: op must be one of {OPCODES[:-1]}, got {op!r}")
        if op in ("call_method", "call_module", "get_attr", "placeholder", "output"):
            if not isinstance(target, str):
                raise type_error(f"Node: a {op} node's target must be a str, got "
                                 f"{type(target).__name__} ({target!r})")
        elif op == "call_function" and not callable(target):
            raise type_error(f"Node: a call_function node's target must be callable, got "
                             f"{type(target).__name__} ({target!r})")
        self.graph = graph
        self.name = name
        self.op = op
        self.target = target
        self._input_nodes: dict[Node, None] = {}
        self._args: tuple = ()
        self._kwargs: dict = {}
        self.users: dict[Node, None] = {}
        self.type = return_type
        self.meta: dict[str, Any] = {}
        self._prev = self
        self._next = self
        self._erased = False
        self._update_args_kwargs(args, kwargs)

    # -- position in the graph's list ---------------------------------------------------------

    @property
    def next(self) -> Node:
        """The node after this one (the graph's root sentinel after the last)."""
        return self._next

    @property
    def prev(self) -> Node:
        """The node before this one (the graph's root sentinel before the first)."""
        return self._prev

    def prepend(self, x: Node) -> None:
        """Move or insert x just before this node."""
        if x is self:
            raise value_error("Node.prepend(): cannot prepend a node to itself")
        if x.graph is not self.graph:
            raise value_error(f"Node.prepend(): {x} belongs to another graph")
        x._remove_from_list()
        p = self._prev
        p._next, x._prev = x, p
        x._next, self._prev = self, x

    def append(self, x: Node) -> None:
        """Move or insert x just after this node."""
        self._next.prepend(x)

    def _remove_from_list(self) -> None:
        # the node keeps its own links: an iteration standing on it can still move on
        p, n = self._prev, self._next
        p._next, n._prev = n, p

    # -- arguments and the use edges they imply ----------------------------------------------

    @property
    def args(self) -> tuple:
        """The positional arguments; assigning them updates the use edges."""
        return self._args

    @args.setter
    def args(self, a: tuple) -> None:
        self._update_args_kwargs(a, self._kwargs)

    @property
    def kwargs(self) -> dict:
        """The keyword arguments; assigning them updates the use edges."""
        return self._kwargs

    @kwargs.setter
    def kwargs(self, k: dict) -> None:
        self._update_args_kwargs(self._args, k)

    @property
    def all_input_nodes(self) -> list[Node]:
        """Every Node this node reads, in the order args and kwargs name them."""
        return list(self._input_nodes)

    def update_arg(self, idx: int, arg: Argument) -> None:
        """Set args[idx] to arg."""
        args = list(self._args)
        args[idx] = arg
        self.args = tuple(args)

    def update_kwarg(self, key: str, arg: Argument) -> None:
        """Set kwargs[key] to arg."""
        self.kwargs = {**self._kwargs, key: arg}

    def _update_args_kwargs(self, new_args: tuple, new_kwargs: dict) -> None:
        if not isinstance(new_args, tuple):
            raise type_error(f"Node {self.name}: args must be a tuple, got "
                             f"{type(new_args).__name__}")
        if not isinstance(new_kwargs, dict):
            raise type_error(f"Node {self.name}: kwargs must be a dict, got "
                             f"{type(new_kwargs).__name__}")
        for old_input in self._input_nodes:
            old_input.users.pop(self, None)
        self._input_nodes = {}
        self._args = map_arg(new_args, self._note_input)
        self._kwargs = map_arg(new_kwargs, self._note_input)

    def _note_input(self, n: Node) -> Node:
        if n.graph is not self.graph:
            raise value_error(f"Node {self.name} cannot read {n.name}: it belongs to another "
                              "graph (copy it in with Graph.node_copy)")
        self._input_nodes.setdefault(n)
        n.users.setdefault(self)
        return n

    def replace_all_uses_with(self, replace_with: Node,
                              delete_user_cb: Callable[[Node], bool] = lambda user: True, *,
                              propagate_meta: bool = False) -> list[Node]:
        """Make every user of this node read replace_with instead (those delete_user_cb
        accepts); returns the users that changed."""
        if not isinstance(replace_with, Node):
            raise type_error(f"replace_all_uses_with(): expected a Node, got "
                             f"{type(replace_with).__name__}")
        if propagate_meta:
            if replace_with.meta:
                raise runtime_error("replace_all_uses_with(propagate_meta=True): the "
                                    f"replacement {replace_with} already has meta")
            replace_with.meta.update(self.meta)
        changed = [user for user in list(self.users) if delete_user_cb(user)]
        for user in changed:
            user._replace_input(self, replace_with)
        return changed

    def replace_input_with(self, old_input: Node, new_input: Node) -> None:
        """Make this node read new_input wherever it read old_input."""
        self._replace_input(old_input, new_input)

    def _replace_input(self, old: Node, new: Node) -> None:
        def swap(n: Node) -> Node:
            return new if n is old else n

        self._update_args_kwargs(map_arg(self._args, swap), map_arg(self._kwargs, swap))

    # -- properties of the operation ----------------------------------------------------------

    def is_impure(self) -> bool:
        """Whether removing this node could change what the program does, even when nothing
        reads its value: inputs, outputs, and calls of in-place methods and modules."""
        if self.op in ("placeholder", "output"):
            return True
        if self.op == "call_method":
            return self.target.endswith("_") and not self.target.endswith("__")
        if self.op == "call_function":
            from ._symbolic_trace import is_side_effectful

            return is_side_effectful(self.target)
        if self.op == "call_module":
            owner = self.graph.owning_module
            if owner is None:
                return False
            try:
                module = owner.get_submodule(self.target)
            except (AttributeError, KeyError, LookupError):
                return False
            return bool(getattr(module, "_is_impure", False))
        return False

    # -- printing ----------------------------------------------------------------------------

    def format_node(self, placeholder_names: list[str] | None = None,
                    maybe_return_typename: list[str] | None = None) -> str | None:
        """The line that shows this node in str(graph): `%name : [num_users=N] =
        op[target=...](args = ..., kwargs = ...)`."""
        if self.op == "placeholder":
            if placeholder_names:
                placeholder_names.append(self.target)
                return None
            default = f"(default={self.args[0]})" if self.args else ""
            return (f"%{self.name} : [num_users={len(self.users)}] = "
                    f"placeholder[target={self.target}]{default}")
        if self.op == "get_attr":
            return (f"%{self.name} : [num_users={len(self.users)}] = "
                    f"get_attr[target={self.target}]")
        if self.op == "output":
            return f"return {self.args[0]}"
        return (f"%{self.name} : [num_users={len(self.users)}] = "
                f"{self.op}[target={pretty_target(self.target)}]"
                f"(args = {_format_arg(self.args)}, kwargs = {_format_arg(self.kwargs)})")

    def __repr__(self) -> str:
        return self.name

