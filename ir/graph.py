"""The SSA graph: Values, the Nodes that define them, and the Graph that orders both.

A Graph has inputs, constants, nodes in topological order and outputs. A Node applies one op
of the schema table to Values and Python numbers, with attrs of plain data; its output Values
get their types from the op's type rule when the node is added, so a graph is typed by
construction. Every Value knows the nodes that use it (`users`), kept up to date by the Graph
and by Node.inputs, as torch.fx does; a node whose outputs are still used cannot be erased.

Constants live in the graph's constant table, not in nodes: a constant is a Value holding a
read-only numpy array (a graph file stores them as tensors), and every node stays an op of the
one vocabulary.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator

import numpy as np

from ..errors import EmberError, IRError
from . import ops  # noqa: F401  (registers every primitive's schema)
from .attrs import normalize_attrs
from .dtypes import ALL as ALL_DTYPES
from .dtypes import as_dtype, bool_, get_default_dtype, int64
from .schema import NUMBER, SCHEMAS, OpSchema
from .symbolic import SymInt
from .types import TensorType

VALUE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]*\Z")


def check_type(value_type, where: str) -> TensorType:
    """value_type as a TensorType with a tuple shape of ints and SymInts; IRError otherwise."""
    shape, dtype = getattr(value_type, "shape", None), getattr(value_type, "dtype", None)
    if not isinstance(shape, (tuple, list)) or dtype not in ALL_DTYPES:
        raise IRError(f"{where}: expected a TensorType(shape, dtype), got {value_type!r}")
    for d in shape:
        if not (isinstance(d, SymInt) or (isinstance(d, int) and not isinstance(d, bool))):
            raise IRError(f"{where}: a size must be an int or a SymInt, got {d!r} in {shape}")
    if value_type.__class__ is TensorType and shape.__class__ is tuple:
        return value_type
    return TensorType(tuple(shape), dtype)


class Value:
    """A typed SSA value: a graph input, a constant, or an output of one node."""

    __slots__ = ("_uses", "constant", "graph", "index", "name", "node", "type")

    def __init__(self, name: str, value_type: TensorType, graph: Graph, node=None, index=0):
        self.name = name
        self.type = value_type
        self.graph = graph  # None once erased
        self.node = node  # the defining Node, None for inputs and constants
        self.index = index  # which output of node
        self.constant = None  # the read-only numpy array of a constant
        self._uses: dict[Node, int] = {}  # user node -> how many of its inputs are this

    @property
    def users(self) -> list[Node]:
        """The nodes that take this value as an input, in the order they started to."""
        return list(self._uses)

    @property
    def is_input(self) -> bool:
        return self.node is None and self.constant is None

    @property
    def is_constant(self) -> bool:
        return self.constant is not None

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    def _add_use(self, node: Node) -> None:
        self._uses[node] = self._uses.get(node, 0) + 1

    def _drop_use(self, node: Node) -> None:
        count = self._uses[node] - 1
        if count:
            self._uses[node] = count
        else:
            del self._uses[node]

    def __repr__(self) -> str:
        from .printer import format_type

        return f"%{self.name}: {format_type(self.type)}"


class Node:
    """One application of an op: outputs = op(inputs, **attrs), with an optional source line."""

    __slots__ = ("_inputs", "attrs", "graph", "op", "outputs", "source")

    def __init__(self, op: str, attrs: dict, source: str | None, graph: Graph):
        self.op = op
        self._inputs: tuple = ()
        self.attrs = attrs
        self.outputs: tuple[Value, ...] = ()
        self.source = source
        self.graph = graph  # None once erased

    @property
    def schema(self) -> OpSchema:
        return SCHEMAS[self.op]

    @property
    def inputs(self) -> tuple:
        """The op's inputs: Values and Python numbers. Assigning keeps `users` up to date."""
        return self._inputs

    @inputs.setter
    def inputs(self, inputs: Iterable) -> None:
        inputs = self.graph._check_inputs(inputs, f"{self.op}: ")
        for x in self._inputs:
            if isinstance(x, Value):
                x._drop_use(self)
        self._inputs = inputs
        for x in inputs:
            if isinstance(x, Value):
                x._add_use(self)

    @property
    def output(self) -> Value:
        """The one output of a single-output node."""
        if len(self.outputs) != 1:
            raise IRError(f"{self.op} has {len(self.outputs)} outputs; use .outputs")
        return self.outputs[0]

    def replace_input(self, old: Value, new) -> int:
        """Replace every occurrence of `old` among the inputs; the number replaced."""
        count = sum(1 for x in self._inputs if x is old)
        if count:
            self.inputs = [new if x is old else x for x in self._inputs]
        return count

    def input_types(self) -> tuple:
        """The inputs as a type rule takes them: TensorTypes and Python numbers."""
        return tuple(x.type if isinstance(x, Value) else x for x in self._inputs)

    def infer(self):
        """The output types the op's type rule gives for the current inputs and attrs: a tuple
        with one TensorType per output."""
        return infer_types(self.schema, self.input_types(), self.attrs)

    def __repr__(self) -> str:
        from .printer import format_node

        return format_node(self)


def infer_types(schema: OpSchema, input_types: tuple, attrs: dict) -> tuple:
    """Run the op's type rule: one TensorType per output, as a tuple. EmberErrors (the errors
    eager mode raises for the same inputs) pass through; anything else is an IRError."""
    try:
        out = schema.infer(input_types, attrs)
    except EmberError:
        raise
    except Exception as exc:
        raise IRError(
            f"{schema.name}: the type rule failed on these inputs and attrs: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    outs = (out,) if isinstance(out, TensorType) or not isinstance(out, tuple) else out
    if len(outs) != schema.num_outputs:
        raise IRError(
            f"{schema.name}: the type rule gave {len(outs)} outputs, the schema says "
            f"{schema.num_outputs}"
        )
    return tuple(check_type(t, f"{schema.name} output") for t in outs)


# the kinds of values a constant of each dtype kind takes as they are: numpy would truncate
# 1.5 to an int and read 2 as True
_ACCEPTED_KINDS = {"b": "b", "u": "biu", "i": "biu", "f": "biuf"}


def constant_array(value, dtype=None) -> np.ndarray:
    """value (a number, nested lists or an array) as the read-only array a constant holds."""
    if dtype is None:
        if isinstance(value, NUMBER):
            dtype = (
                bool_
                if isinstance(value, bool)
                else (int64 if isinstance(value, int) else get_default_dtype())
            )
        else:
            dtype = as_dtype(np.asarray(value).dtype)
    dtype = as_dtype(dtype)
    try:
        given = np.asarray(value)
        given_kind = "f" if given.dtype.name == "bfloat16" else given.dtype.kind
        if given.size and given_kind not in _ACCEPTED_KINDS[dtype.kind]:
            raise ValueError(f"its values are not {dtype.name} values")
        array = np.array(value, dtype=dtype.np)
    except (OverflowError, ValueError, TypeError) as exc:
        raise IRError(f"constant: {value!r} does not fit {dtype.name}: {exc}") from None
    array.setflags(write=False)
    return array


class Graph:
    """An SSA graph: inputs, constants, nodes in topological order, outputs."""

    def __init__(self):
        self.inputs: list[Value] = []
        self.constants: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self._names: dict[str, Value] = {}  # the defined values by name
        self._used_names: set[str] = set()  # every name ever given: fresh names skip them
        self._counters: dict[str, int] = {}
        self._insert_before: Node | None = None
        # names of gather_backward results whose index a gather already checked against
        # its dim's size (in a backward graph: the forward's gather, which always runs first)
        self.checked_gathers: frozenset = frozenset()

    # -- names -----------------------------------------------------------------------------

    def _fresh_name(self, prefix: str) -> str:
        n = self._counters.get(prefix, 0)
        while f"{prefix}{n}" in self._used_names:
            n += 1
        self._counters[prefix] = n + 1
        name = f"{prefix}{n}"
        self._used_names.add(name)
        return name

    def _claim_name(self, name: str | None, prefix: str) -> str:
        if name is None:
            return self._fresh_name(prefix)
        if not isinstance(name, str) or not VALUE_NAME.match(name):
            raise IRError(f"a value name is letters, digits, '_' and '.', got {name!r}")
        if name in self._names:
            raise IRError(f"the name %{name} is already defined in this graph")
        self._used_names.add(name)
        return name

    def value(self, name: str) -> Value:
        """The value named `name` (without the %)."""
        try:
            return self._names[name]
        except KeyError:
            raise IRError(f"no value %{name} in this graph") from None

    def values(self) -> Iterator[Value]:
        """Every defined value, in definition order: inputs, constants, node outputs."""
        yield from self.inputs
        yield from self.constants
        for node in self.nodes:
            yield from node.outputs

    # -- building --------------------------------------------------------------------------

    def add_input(self, value_type: TensorType, name: str | None = None) -> Value:
        """A new graph input of type `value_type`."""
        value_type = check_type(value_type, "graph input")
        value = Value(self._claim_name(name, "in"), value_type, self)
        self._names[value.name] = value
        self.inputs.append(value)
        return value

    def add_constant(self, value, dtype=None, name: str | None = None) -> Value:
        """A new constant holding `value` (a number, nested lists, or an array); its dtype is
        `dtype`, or the value's own (a Python float: the default float dtype)."""
        array = constant_array(value, dtype)
        const = Value(
            self._claim_name(name, "c"),
            TensorType(tuple(int(d) for d in array.shape), as_dtype(array.dtype)),
            self,
        )
        const.constant = array
        self._names[const.name] = const
        self.constants.append(const)
        return const

    def share_constant(self, other: Value) -> Value:
        """A constant of this graph with other's name and type holding other's array itself
        (constant arrays are read-only, so graphs may share them: a loaded file's weights)."""
        const = Value(self._claim_name(other.name, "c"), other.type, self)
        const.constant = other.constant
        self._names[const.name] = const
        self.constants.append(const)
        return const

    def _check_inputs(self, inputs: Iterable, where: str) -> tuple:
        out = []
        for i, x in enumerate(inputs):
            if isinstance(x, Value):
                if x.graph is not self:
                    state = "an erased value" if x.graph is None else "a value of another graph"
                    raise IRError(f"{where}input {i} (%{x.name}) is {state}")
            elif x.__class__ in (bool, int, float):
                pass
            elif isinstance(x, NUMBER):
                x = bool(x) if isinstance(x, bool) else int(x) if isinstance(x, int) else float(x)
            elif (
                getattr(x, "shape", None) == ()
                and getattr(x, "dtype", None) is not None
                and (getattr(x.dtype, "kind", "") in "biuf")
            ):
                x = x.item()  # a numpy scalar acts as the Python number it holds
            else:
                raise IRError(
                    f"{where}input {i} must be a Value of this graph or a Python number, got "
                    f"{type(x).__name__}"
                )
            out.append(x)
        return tuple(out)

    def add_node(
        self,
        op: str,
        inputs: Iterable = (),
        attrs: dict | None = None,
        source: str | None = None,
        *,
        names: Iterable[str | None] | None = None,
    ) -> Node:
        """Append `op(inputs, **attrs)` (or insert it where inserting_before() says); its
        output Values are typed by the op's type rule, which raises the error eager mode would
        if the inputs do not fit. `names` names the outputs (fresh numbers otherwise)."""
        schema = SCHEMAS.get(op)
        if schema is None:
            raise IRError(f"unknown op {op!r}: it has no schema in ir.schema.SCHEMAS")
        where = f"{op}: "
        inputs = self._check_inputs(inputs, where)
        attrs = normalize_attrs(attrs, where)
        if source is not None and (not isinstance(source, str) or "\n" in source):
            raise IRError(f"{where}source must be one line of text, like 'model.py:12'")
        types = infer_types(
            schema, tuple(x.type if isinstance(x, Value) else x for x in inputs), attrs
        )
        names = [None] * len(types) if names is None else list(names)
        if len(names) != len(types):
            raise IRError(f"{where}{len(names)} names given for {len(types)} outputs")
        claimed = []
        for n in names:
            claimed.append(self._claim_name(n, ""))
            if n is not None and claimed.count(n) > 1:
                raise IRError(f"{where}the name %{n} is given twice")
        node = Node(op, attrs, source, self)
        node.inputs = inputs
        node.outputs = tuple(
            Value(n, t, self, node, i) for i, (n, t) in enumerate(zip(claimed, types))
        )
        for value in node.outputs:
            self._names[value.name] = value
        if self._insert_before is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(self.nodes.index(self._insert_before), node)
        return node

    @contextlib.contextmanager
    def inserting_before(self, node: Node):
        """Within the block, add_node() inserts before `node` instead of appending."""
        if node.graph is not self:
            raise IRError(f"inserting_before: {node.op} is not a node of this graph")
        saved, self._insert_before = self._insert_before, node
        try:
            yield
        finally:
            self._insert_before = saved

    def set_outputs(self, values: Iterable[Value]) -> None:
        """Make `values` the graph's outputs."""
        values = list(values)
        for i, v in enumerate(values):
            if not isinstance(v, Value) or v.graph is not self:
                raise IRError(f"output {i} must be a Value of this graph, got {v!r}")
        self.outputs = values

    # -- editing ---------------------------------------------------------------------------

    def replace_all_uses(self, old: Value, new: Value) -> int:
        """Make every user of `old` (and the outputs) use `new`, of the same type; the number
        of uses replaced."""
        if not isinstance(new, Value) or new.graph is not self:
            raise IRError(
                f"replace_all_uses: the replacement for %{old.name} must be a Value of "
                f"this graph, got {new!r}"
            )
        if new.type != old.type:
            raise IRError(
                f"replace_all_uses: %{new.name} ({new!r}) cannot stand for "
                f"%{old.name} ({old!r}): their types differ"
            )
        if new is old:
            return 0
        count = 0
        for node in old.users:
            count += node.replace_input(old, new)
        for i, v in enumerate(self.outputs):
            if v is old:
                self.outputs[i] = new
                count += 1
        return count

    def _uses_text(self, value: Value) -> str:
        uses = [f"%{u.outputs[0].name} = {u.op}(...)" if u.outputs else u.op for u in value.users]
        if any(v is value for v in self.outputs):
            uses.append("the graph's outputs")
        return ", ".join(uses)

    def erase_node(self, node: Node) -> None:
        """Remove `node`; refused while any of its outputs is used or is a graph output."""
        if node.graph is not self:
            raise IRError(f"erase_node: {node.op} is not a node of this graph")
        for value in node.outputs:
            uses = self._uses_text(value)
            if uses:
                raise IRError(f"erase_node: %{value.name} of {node.op} is still used by {uses}")
        self.nodes.remove(node)
        node.inputs = ()
        node.graph = None
        for value in node.outputs:
            del self._names[value.name]
            value.graph = None

    def erase_input(self, value: Value) -> None:
        """Remove the graph input `value`; refused while it is used or is a graph output."""
        if value.graph is not self or value not in self.inputs:
            raise IRError(f"erase_input: %{value.name} is not an input of this graph")
        uses = self._uses_text(value)
        if uses:
            raise IRError(f"erase_input: %{value.name} is still used by {uses}")
        self.inputs.remove(value)
        del self._names[value.name]
        value.graph = None

    def erase_constant(self, value: Value) -> None:
        """Remove the constant `value`; refused while it is used or is a graph output."""
        if value.graph is not self or not value.is_constant:
            raise IRError(f"erase_constant: %{value.name} is not a constant of this graph")
        uses = self._uses_text(value)
        if uses:
            raise IRError(f"erase_constant: %{value.name} is still used by {uses}")
        self.constants.remove(value)
        del self._names[value.name]
        value.graph = None

    # -- checks and copies -----------------------------------------------------------------

    def check_topological(self) -> None:
        """Raise an IRError if a node uses a value that no earlier node, input or constant
        defines."""
        defined = {id(v) for v in self.inputs}
        defined.update(id(v) for v in self.constants)
        for position, node in enumerate(self.nodes):
            for x in node.inputs:
                if isinstance(x, Value) and id(x) not in defined:
                    later = x.graph is self and x.node is not None and x.node in self.nodes
                    raise IRError(
                        f"node {position} ({node.op}) uses %{x.name} "
                        + (
                            "before the node that defines it"
                            if later
                            else "which this graph does not define"
                        )
                    )
            defined.update(id(v) for v in node.outputs)
        for v in self.outputs:
            if id(v) not in defined:
                raise IRError(f"the graph returns %{v.name}, which it does not define")

    def copy(self, value_map: dict | None = None, *, copy_constants: bool = False) -> Graph:
        """An independent graph with the same structure and names. Constant arrays are shared
        (they are read-only) unless copy_constants. value_map, if given, receives old Value ->
        new Value for every value."""
        new = Graph()
        mapping = {} if value_map is None else value_map
        for v in self.inputs:
            mapping[v] = new.add_input(v.type, v.name)
        for v in self.constants:
            c = mapping[v] = new.share_constant(v)
            if copy_constants:
                c.constant = v.constant.copy()
                c.constant.setflags(write=False)
        for node in self.nodes:
            copied = Node(node.op, _copy_attr(node.attrs), node.source, new)
            copied.inputs = [mapping[x] if isinstance(x, Value) else x for x in node.inputs]
            copied.outputs = tuple(
                Value(v.name, v.type, new, copied, v.index) for v in node.outputs
            )
            for old_value, new_value in zip(node.outputs, copied.outputs):
                mapping[old_value] = new_value
                new._names[new_value.name] = new_value
                new._used_names.add(new_value.name)
            new.nodes.append(copied)
        new.outputs = [mapping[v] for v in self.outputs]
        new._counters = dict(self._counters)
        new._used_names = set(self._used_names)
        new.checked_gathers = self.checked_gathers
        return new

    def render(self, path: str) -> str:
        """Draw the graph to path (.dot text, or .svg/.png through Graphviz), with its fusion
        groups as clusters once a compiled program has grouped it."""
        from .render import render

        return render(self, path)

    def __copy__(self) -> Graph:
        return self.copy()

    def __deepcopy__(self, memo) -> Graph:
        return self.copy(copy_constants=True)

    def __str__(self) -> str:
        from .printer import format_graph

        return format_graph(self)

    def __repr__(self) -> str:
        return (
            f"<Graph: {len(self.inputs)} inputs, {len(self.constants)} constants, "
            f"{len(self.nodes)} nodes, {len(self.outputs)} outputs>"
        )


def _copy_attr(value):
    if isinstance(value, list):
        return [_copy_attr(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy_attr(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy_attr(v) for k, v in value.items()}
    return value
