"""Automatic dynamic shapes: after a retrace caused only by a size change, one graph for all sizes.

When a scripted function is traced again because some tensor dims changed size (a batch of 32,
then of 8) and nothing else did, the two recorded graphs are compared. If they are the same
ops, and every attr that differs (a reshape to x.shape[0] * 4) is a linear function of the
changed size through both traces, the two specializations become one dynamic specialization:
a graph whose changed dims are one symbolic size, guarded by shape *patterns* (those dims equal
to each other and at least 2, as PyTorch specializes 0 and 1), specialized to concrete sizes
when called and compiled once per size, with no Python re-run. Everything else (value guards,
captured tensors, state writes) must agree between the two traces, or they stay separate.

A function whose own code reads a size into Python (x.shape[0], len(x), x.size(1)) keeps
exact sizes: Python may branch on the number, which no graph comparison can see (PyTorch's
dynamo guards such branches symbolically; ember stays exact instead). ember's own layers read
sizes freely: their code does not branch on batch sizes.
"""

from __future__ import annotations

import copy

from ..ir.graph import Value
from ..ir.passes import run_pipeline
from ..ir.specialize import specialize
from ..ir.symbolic import SymInt
from ..ir.types import TensorType
from ..runtime.compiled import build_program
from ..runtime.program import evaluate_with_kernels

SYMBOL = "s0"
MAX_SIZES = 16  # concrete sizes kept compiled per dynamic specialization


def changed_dims(old_key, new_key) -> tuple | None:
    """((leaf, dim), ...) where two guard keys differ, when they differ only in tensor sizes,
    all changed dims had one size and all now have another (both at least 2); else None."""
    if old_key[0] != new_key[0] or old_key[2:] != new_key[2:]:
        return None
    dims, old_sizes, new_sizes = [], set(), set()
    for i, (a, b) in enumerate(zip(old_key[1], new_key[1])):
        if a == b:
            continue
        if a[0] != "T" or b[0] != "T" or a[2:] != b[2:] or len(a[1]) != len(b[1]):
            return None
        for d, (x, y) in enumerate(zip(a[1], b[1])):
            if x != y:
                dims.append((i, d))
                old_sizes.add(x)
                new_sizes.add(y)
    if not dims or len(old_sizes) != 1 or len(new_sizes) != 1:
        return None
    if min(*old_sizes, *new_sizes) < 2:
        return None
    return tuple(dims)


def _linear(a, b, size_a: int, size_b: int, symbol: SymInt):
    """An attr traced as a at size_a and b at size_b: the same, or, entry by entry, the
    integer-linear function of the symbol through both points; None when it is neither."""
    if isinstance(a, (list, tuple)) and type(a) is type(b):
        if len(a) != len(b):
            return None
        items = [_linear(x, y, size_a, size_b, symbol) for x, y in zip(a, b)]
        if any(item is _NONE for item in items):
            return _NONE
        return items if isinstance(a, list) else tuple(items)
    if a == b and type(a) is type(b):
        return a
    if a.__class__ is int and b.__class__ is int:
        slope, rest = divmod(b - a, size_b - size_a)
        if rest:
            return _NONE
        return symbol * slope + (a - slope * size_a)
    return _NONE


_NONE = object()


def symbolic_graph(graph_a, graph_b, size_a: int, size_b: int, inputs: list) -> object | None:
    """graph_b with a symbol at the changed input dims and linear attrs, or None when the two
    traces are not the same computation. `inputs` lists (input position, dim)."""
    if ([n.op for n in graph_a.nodes] != [n.op for n in graph_b.nodes]
            or len(graph_a.inputs) != len(graph_b.inputs)
            or len(graph_a.outputs) != len(graph_b.outputs)):
        return None
    symbol = SymInt(SYMBOL)
    mapping: dict = {}
    graph = graph_b.copy(mapping)
    for node_a, node_b, node in zip(graph_a.nodes, graph_b.nodes, graph.nodes):
        if set(node_a.attrs) != set(node_b.attrs):
            return None
        if any(isinstance(x, Value) != isinstance(y, Value) or
               (not isinstance(x, Value) and x != y)
               for x, y in zip(node_a.inputs, node_b.inputs)):
            return None  # a Python number computed from the size: not linear in our sense
        attrs = {}
        for key in node_b.attrs:
            value = _linear(node_a.attrs[key], node_b.attrs[key], size_a, size_b, symbol)
            if value is _NONE:
                return None
            attrs[key] = value
        node.attrs = attrs
    for position, dim in inputs:
        value = graph.inputs[position]
        shape = list(value.type.shape)
        shape[dim] = symbol
        value.type = TensorType(tuple(shape), value.type.dtype)
    try:
        for node in graph.nodes:
            for value, new_type in zip(node.outputs, node.infer()):
                value.type = new_type
    except Exception:  # noqa: BLE001  (a type rule that cannot take the symbol)
        return None
    return graph


class DynamicSpecialization:
    """Two specializations that differ only in one size, as one: specialized per call."""

    def __init__(self, base, dims: tuple, recorded, names, function_name: str):
        self.function_name = function_name
        self.base = base  # the latest traced specialization: guards, templates, state
        self.dims = dims  # (argument leaf, dim) positions holding the symbol
        self.recorded = recorded  # the symbolic recorded graph
        self.names = names
        self.key = base.key
        self.eager_reason = None
        self.graph = recorded
        self.calls = 0
        self._by_size: dict = {}

    # what ScriptFunction reads from a specialization
    def __getattr__(self, name):
        return getattr(self.base, name)

    def matches(self, key) -> bool:
        base = self.base.key
        if key[0] != base[0] or key[2:] != base[2:] or len(key[1]) != len(base[1]):
            return False
        dynamic = {}
        for i, d in self.dims:
            dynamic.setdefault(i, set()).add(d)
        size = None
        for i, (a, b) in enumerate(zip(base[1], key[1])):
            if i not in dynamic:
                if a != b:
                    return False
                continue
            if b[0] != "T" or a[2:] != b[2:] or len(a[1]) != len(b[1]):
                return False
            for d, (x, y) in enumerate(zip(a[1], b[1])):
                if d in dynamic[i]:
                    if y < 2 or (size is not None and y != size):
                        return False
                    size = y
                elif x != y:
                    return False
        return True

    def size_of(self, leaves) -> int:
        i, d = self.dims[0]
        return leaves[i].shape[d]

    def concrete(self, size: int):
        """The base specialization with this size's graphs and program."""
        sp = self._by_size.get(size)
        if sp is None:
            base = self.base
            sp = copy.copy(base)
            sizes = {SYMBOL: size}
            sp.recorded = specialize(self.recorded, sizes)
            positions = {node: k for k, node in enumerate(base.recorded.nodes)}
            sp.no_grad_nodes = {sp.recorded.nodes[positions[n]] for n in base.no_grad_nodes
                                if n in positions}
            sp.graph = sp.recorded.copy()
            run_pipeline(sp.graph, evaluate=evaluate_with_kernels)
            sp.program = build_program(sp.graph, self.function_name, None,
                                       donate=getattr(base.program, "donate", None))
            sp.split = None  # under autograd a new size replays op by op
            sp._constants = None
            if len(self._by_size) >= MAX_SIZES:
                self._by_size.clear()
            self._by_size[size] = sp
        return sp

    def run(self, leaves):
        self.calls += 1
        return self.concrete(self.size_of(leaves)).run(leaves)


def _identities(items) -> list:
    """items with every object that is not a plain value replaced by its identity (tensors
    compare elementwise, so == on them is no test of sameness)."""
    out = []
    for item in items:
        if isinstance(item, tuple):
            out.append(tuple(_identities(item)))
        elif item is None or isinstance(item, (bool, int, float, str)):
            out.append(item)
        else:
            out.append(("id", id(item)))
    return out


def try_dynamic(function, new) -> DynamicSpecialization | None:
    """A dynamic specialization from `new` and an earlier specialization of `function` that
    differs from it only in one size, or None."""
    if new.eager_reason is not None or new.graph is None or new.reads_shapes:
        return None
    for old in function.specializations:
        if old is new or old.eager_reason is not None or isinstance(old, DynamicSpecialization):
            continue
        dims = changed_dims(old.key, new.key)
        if dims is None or old.recorded is None or old.reads_shapes:
            continue
        if (old.input_leaves != new.input_leaves
                or _identities(old.mutated) != _identities(new.mutated)
                or [g.kind for g in old.value_guards] != [g.kind for g in new.value_guards]
                or _identities([g.expected for g in old.value_guards])
                != _identities([g.expected for g in new.value_guards])
                or _identities(old.out_template) != _identities(new.out_template)
                or _identities(old.grad_writes) != _identities(new.grad_writes)
                or [id(t) for t in old.captured] != [id(t) for t in new.captured]):
            continue
        leaf_position = {leaf: k for k, leaf in enumerate(new.input_leaves)}
        if any(i not in leaf_position for i, _ in dims):
            continue
        size_a = old.key[1][dims[0][0]][1][dims[0][1]]
        size_b = new.key[1][dims[0][0]][1][dims[0][1]]
        inputs = [(leaf_position[i], d) for i, d in dims]
        graph = symbolic_graph(old.recorded, new.recorded, size_a, size_b, inputs)
        if graph is None:
            continue
        dynamic = DynamicSpecialization(new, dims, graph, new.names, function.name)
        dynamic._by_size[size_b] = new
        function.specializations.remove(old)
        function.specializations.remove(new)
        function.specializations.append(dynamic)
        return dynamic
    return None
