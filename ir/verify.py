"""The verifier: check every invariant of a Graph, as torch.fx's lint and a jaxpr's typecheck do.

A graph built through the Graph API keeps these by construction; a pass that edits fields
directly, or a bug, can break them, so the pass pipeline runs verify() between passes in debug
mode (EMBER_DEBUG). Checked: SSA (each value defined once, before its uses, with a unique
name), every op in the schema table, inputs that are values of this graph or Python numbers,
as many as the op takes, attrs of plain data that fit the op's declaration, output types
equal to what the op's type rule infers, constants whose arrays match their types, `users`
lists that match the actual uses, and defined outputs.
"""

from __future__ import annotations

import numpy as np

from ..errors import EmberError, IRError
from .attrs import freeze, normalize_attrs
from .graph import VALUE_NAME, Graph, Node, Value, check_type, infer_types
from .printer import format_node, format_type
from .schema import SCHEMAS, check_node


def _where(node: Node, position: int) -> str:
    try:
        text = format_node(node)
    except (AttributeError, KeyError, TypeError, ValueError):  # too broken to print
        text = f"{node.op}(...)"
    return f"node {position} ({text})"


def _check_value(value, graph: Graph, where: str, seen: dict) -> None:
    if not isinstance(value, Value):
        raise IRError(f"{where}: expected a Value, got {type(value).__name__}")
    if value.graph is not graph:
        raise IRError(f"{where}: %{value.name} belongs to another graph or was erased")
    if not isinstance(value.name, str) or not VALUE_NAME.match(value.name):
        raise IRError(f"{where}: {value.name!r} is not a valid value name")
    if id(value) in seen:
        raise IRError(f"{where}: %{value.name} is defined twice ({seen[id(value)]} and here)")
    check_type(value.type, f"{where}: %{value.name}")
    seen[id(value)] = where


def verify(graph: Graph) -> None:
    """Raise an IRError that names the first broken invariant of `graph`."""
    defined: dict[int, str] = {}  # id(value) -> where it is defined
    names: dict[str, str] = {}

    def define(value, where: str) -> None:
        _check_value(value, graph, where, defined)
        if value.name in names:
            raise IRError(f"{where}: the name %{value.name} is already used by {names[value.name]}")
        names[value.name] = where

    for i, value in enumerate(graph.inputs):
        define(value, f"input {i}")
        if value.node is not None or value.constant is not None:
            raise IRError(f"input {i}: %{value.name} is marked as defined by a node or constant")

    for i, value in enumerate(graph.constants):
        where = f"constant {i}"
        define(value, where)
        array = value.constant
        if value.node is not None or not isinstance(array, np.ndarray):
            raise IRError(f"{where}: %{value.name} holds no array")
        if array.dtype != value.type.dtype.np or array.shape != value.type.shape:
            raise IRError(
                f"{where}: %{value.name} is typed {format_type(value.type)} but holds a "
                f"{array.dtype} array of shape {list(array.shape)}"
            )

    uses: dict[int, dict] = {}  # id(value) -> {node: count}, as the nodes say
    for position, node in enumerate(graph.nodes):
        where = f"node {position} ({getattr(node, 'op', node)!r})"
        if not isinstance(node, Node) or node.graph is not graph:
            raise IRError(f"{where}: not a node of this graph")
        schema = SCHEMAS.get(node.op)
        if schema is None:
            raise IRError(f"{where}: unknown op {node.op!r}: it has no schema")
        where = _where(node, position)
        for i, x in enumerate(node.inputs):
            if isinstance(x, Value):
                if id(x) not in defined:
                    state = (
                        "used before it is defined"
                        if x.graph is graph and x.node in graph.nodes
                        else "not defined in this graph"
                    )
                    raise IRError(f"{where}: input {i} %{x.name} is {state}")
                counts = uses.setdefault(id(x), {})
                counts[node] = counts.get(node, 0) + 1
            elif x.__class__ not in (bool, int, float):
                raise IRError(f"{where}: input {i} is a {type(x).__name__}, not a Value or number")
        try:
            if not isinstance(node.attrs, dict) or freeze(normalize_attrs(node.attrs)) != freeze(
                node.attrs
            ):
                raise IRError("attrs must be held normalized (plain Python data)")
        except IRError as exc:
            raise IRError(f"{where}: {exc}") from None
        if node.source is not None and (not isinstance(node.source, str) or "\n" in node.source):
            raise IRError(f"{where}: source must be one line of text")
        try:
            check_node(schema, node.inputs, node.attrs)
        except IRError as exc:
            raise IRError(f"{where}: {exc}") from None
        if len(node.outputs) != schema.num_outputs:
            raise IRError(
                f"{where}: {node.op} has {schema.num_outputs} outputs, the node {len(node.outputs)}"
            )
        try:
            inferred = infer_types(schema, node.input_types(), node.attrs)
        except (EmberError, IRError) as exc:
            raise IRError(f"{where}: the type rule rejects the inputs: {exc}") from None
        for i, (value, expected) in enumerate(zip(node.outputs, inferred)):
            define(value, f"{where} output {i}")
            if value.node is not node or value.index != i or value.constant is not None:
                raise IRError(f"{where}: output %{value.name} does not point back to its node")
            if value.type != expected:
                raise IRError(
                    f"{where}: %{value.name} is typed {format_type(value.type)} but {node.op} "
                    f"gives {format_type(expected)}"
                )

    nodes = set(graph.nodes)
    for value in graph.values():
        actual = uses.get(id(value), {})
        if value._uses != actual or any(n not in nodes for n in value._uses):
            recorded = {
                format_node(n) if n in nodes else f"erased {n.op}": c
                for n, c in value._uses.items()
            }
            found = {format_node(n): c for n, c in actual.items()}
            raise IRError(
                f"%{value.name}: users are out of date: recorded {recorded}, used by {found}"
            )

    for i, value in enumerate(graph.outputs):
        if not isinstance(value, Value) or id(value) not in defined:
            name = f"%{value.name}" if isinstance(value, Value) else repr(value)
            raise IRError(f"output {i}: {name} is not defined in this graph")
