"""Dynamic shapes: one traced graph for every size of some argument dims.

A dim becomes dynamic when the scripted function was traced with `dynamic=True` (every dim of
every tensor argument, from the first call), or, by default, when a call had to retrace only
because that dim changed size (a batch of 32, then of 8), as torch.compile's automatic dynamic.
That retrace is *symbolic*: the changed dims get symbols (s0, s1; equal sizes share one, as
PyTorch's duck sizing), every size the code reads from them is a SizeInt that keeps its
expression (tracer/sizes.py), and the recorded graph keeps its sizes as expressions (a reshape
to s0*4). A size the graph cannot keep symbolic (it met a parameter's fixed size in a matmul,
became a factory's size, a float, a loop count) makes its symbol exact again, and a comparison
of sizes the Python code branched on (x.shape[0] > 5) becomes a shape guard.

The result is a DynamicSpecialization: it accepts any call whose symbolic dims have sizes of at
least 2 (0 and 1 are specialized, as in PyTorch), equal where they share a symbol, and that
satisfy its shape guards; everything else (dtypes, the exact dims, value guards, captured
tensors) is the traced specialization's. Each new set of sizes gets the symbolic graph
specialized and compiled once, without re-running the Python function.
"""

from __future__ import annotations

import copy

from ..ir.passes import run_pipeline
from ..ir.specialize import specialize
from ..ir.symbolic import SymInt
from ..runtime.compiled import build_program
from ..runtime.program import evaluate_with_kernels
from .guards import CallKey, TensorLeaf
from .sizes import _COMPARE, evaluate

MAX_SIZES = 16  # concrete sizes kept compiled per dynamic specialization


def _same_but_sizes(a, b) -> bool:
    """Whether two argument leaves are tensors that may differ only in their sizes."""
    return (isinstance(a, TensorLeaf) and isinstance(b, TensorLeaf)
            and (a.dtype, a.device, a.requires_grad) == (b.dtype, b.device, b.requires_grad)
            and len(a.shape) == len(b.shape))


def changed_dims(old_key: CallKey, new_key: CallKey) -> list | None:
    """[(leaf, dim), ...] where two guard keys differ, when they differ only in tensor sizes
    of the same rank and each changed dim is now at least 2; else None."""
    if not old_key.same_but_leaves(new_key):
        return None
    dims = []
    for i, (a, b) in enumerate(zip(old_key.leaves, new_key.leaves)):
        if a == b:
            continue
        if not _same_but_sizes(a, b):
            return None
        for d, (x, y) in enumerate(zip(a.shape, b.shape)):
            if x != y:
                if y < 2:
                    return None
                dims.append((i, d))
    return dims


def dims_to_trace(function, key: CallKey, failure) -> dict:
    """{leaf: [dim, ...]} to make symbolic in the trace of a call with this guard key."""
    leaves = key.leaves
    if function.dynamic is True:
        return {i: [d for d, n in enumerate(leaf.shape) if n >= 2]
                for i, leaf in enumerate(leaves) if isinstance(leaf, TensorLeaf)}
    if function.dynamic is False or failure is None:
        return {}
    chosen: dict = {}
    for sp in function.specializations:
        if sp.eager_reason is not None:
            continue
        dims = changed_dims(sp.key, key)  # a dynamic one's key is its traced call's
        if dims is None:
            continue
        # what changed, and what was dynamic already, stays dynamic
        dims += [dim for dim in getattr(sp, "dims", ()) if leaves[dim[0]].shape[dim[1]] >= 2]
        for i, d in dims:
            chosen.setdefault(i, set()).add(d)
    return {i: sorted(ds) for i, ds in chosen.items()}


class DynamicSpecialization:
    """A specialization traced with symbolic dims: it serves every size of those dims that
    its shape guards accept, specialized and compiled per size."""

    def __init__(self, base, graph, sizes: dict, guards: list, function_name: str):
        self.function_name = function_name
        self.base = base  # the traced specialization: guards, templates, state, its sizes
        self.recorded = graph  # the symbolic recorded graph
        self.symbols = list(sizes)
        self.guards = guards  # (expression, op, expression, result, where)
        self.key = base.key
        self.eager_reason = None
        self.graph = graph
        self.calls = 0
        # (leaf, dim) of each symbol, read from the symbolic graph's argument inputs
        where: dict = {}
        for k, value in enumerate(graph.inputs[: len(base.input_leaves)]):
            for d, size in enumerate(value.type.shape):
                if isinstance(size, SymInt):
                    where.setdefault(str(size), []).append((base.input_leaves[k], d))
        self.where = where
        self.dims = [dim for name in self.symbols for dim in where.get(name, ())]
        self._dims_of_leaf: dict = {}
        for name in self.symbols:
            for i, d in where.get(name, ()):
                self._dims_of_leaf.setdefault(i, {})[d] = name
        self._by_size: dict = {tuple(sizes[n] for n in self.symbols): base}
        self._accepts: dict = {}

    # what ScriptFunction reads from a specialization
    def __getattr__(self, name):
        return getattr(self.base, name)

    def sizes_in(self, key: CallKey) -> tuple | None:
        """The symbols' sizes in a call with this guard key, or None when the call's exact
        facts differ from the traced ones."""
        base = self.base.key
        if not base.same_but_leaves(key):
            return None
        sizes: dict = {}
        dims_of_leaf = self._dims_of_leaf
        for i, (a, b) in enumerate(zip(base.leaves, key.leaves)):
            dims = dims_of_leaf.get(i)
            if dims is None:
                if a != b:
                    return None
                continue
            if not _same_but_sizes(a, b):
                return None
            for d, (x, y) in enumerate(zip(a.shape, b.shape)):
                name = dims.get(d)
                if name is None:
                    if x != y:
                        return None
                elif y < 2 or sizes.setdefault(name, y) != y:
                    return None
        return tuple(sizes[n] for n in self.symbols)

    def failed_guard(self, sizes: tuple) -> str | None:
        """The first shape guard these sizes break, described, or None."""
        values = dict(zip(self.symbols, sizes))
        for a, op, b, result, where in self.guards:
            if _COMPARE[op](evaluate(a, values), evaluate(b, values)) is not result:
                return f"{a} {op} {b} at {where or '?'}: {result} -> {not result}"
        return None

    def matches(self, key) -> bool:
        sizes = self.sizes_in(key)
        if sizes is None:
            return False
        ok = self._accepts.get(sizes)
        if ok is None:
            if len(self._accepts) >= 4096:  # sizes seen once each (varying lengths): bounded
                self._accepts.clear()
            ok = self._accepts[sizes] = self.failed_guard(sizes) is None
        return ok

    def size_of(self, leaves) -> tuple:
        return tuple(leaves[self.where[n][0][0]].shape[self.where[n][0][1]]
                     for n in self.symbols)

    def concrete(self, sizes: tuple):
        """The traced specialization with these sizes' graphs and program."""
        sp = self._by_size.get(sizes)
        if sp is None:
            base = self.base
            sp = copy.copy(base)
            sp.recorded = specialize(self.recorded, dict(zip(self.symbols, sizes)))
            positions = {node: k for k, node in enumerate(base.recorded.nodes)}
            sp.no_grad_nodes = {sp.recorded.nodes[positions[n]] for n in base.no_grad_nodes
                                if n in positions}
            sp.graph = sp.recorded.copy()
            run_pipeline(sp.graph, evaluate=evaluate_with_kernels)
            sp.program = build_program(sp.graph, self.function_name, None,
                                       donate=getattr(base.program, "donate", None))
            sp.split = None  # under autograd a new size replays op by op
            sp._constants = None
            # the base's shortcuts hold its own programs: this size decides its own
            sp._direct = sp._one_result = sp._plain = None
            if len(self._by_size) >= MAX_SIZES:
                self._by_size.clear()
            self._by_size[sizes] = sp
        return sp

    def run(self, leaves):
        self.calls += 1
        return self.concrete(self.size_of(leaves)).run(leaves)

    def describe_dims(self, names) -> str:
        return ", ".join(f"{names[i]}.shape[{d}] = {n}" for n in self.symbols
                         for i, d in self.where.get(n, ()))


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


def _same_facts(a, b) -> bool:
    """Whether two specializations assumed and return the same things beyond sizes."""
    return (a.input_leaves == b.input_leaves
            and _identities(a.mutated) == _identities(b.mutated)
            and [g.kind for g in a.value_guards] == [g.kind for g in b.value_guards]
            and _identities([g.expected for g in a.value_guards])
            == _identities([g.expected for g in b.value_guards])
            and _identities(a.out_template) == _identities(b.out_template)
            and _identities(a.grad_writes) == _identities(b.grad_writes)
            and [id(t) for t in a.captured] == [id(t) for t in b.captured])


def make_dynamic(function, sp, symbolic) -> DynamicSpecialization:
    """The traced specialization sp, whose trace kept symbols, as a dynamic specialization in
    function's list; the older exact specializations it serves as well are dropped."""
    graph, sizes, guards = symbolic
    dynamic = DynamicSpecialization(sp, graph, sizes, guards, function.name)
    kept = []
    for old in function.specializations:
        if old is sp:
            continue
        if (old.eager_reason is None and not isinstance(old, DynamicSpecialization)
                and dynamic.matches(old.key) and _same_facts(old, sp)):
            continue
        kept.append(old)
    kept.append(dynamic)
    function.specializations[:] = kept
    return dynamic
