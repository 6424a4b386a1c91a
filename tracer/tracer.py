"""Tracing with values: run a function eagerly and record every dispatched op into a Graph.

The traced call is a real eager call on real tensors, so its result is the eager result; what
the tracer adds is the record. Every fact the Python code reads from a tensor becomes a guard
(values read through item(), bool(), int(), float(), tolist()); in-place writes rebind the
written tensor to its new Value, and writes to tensors from outside the function are returned
by the graph as mutated state. What cannot be captured correctly (a random factory, printing
or exporting a tensor's memory, a write through a view, a custom autograd.Function) stops
the recording: the call finishes eagerly and the reason is kept, never a wrong graph.
"""

from __future__ import annotations

from .._tensor import hooks
from ..autograd import grad_mode
from ..errors import user_frame
from ..ir.graph import Graph, Value, infer_types
from ..ir.schema import SCHEMAS
from ..ir.specialize import resolve, specialize
from ..ir.symbolic import SymInt
from ..ir.types import TensorType
from .sizes import SizeInt, concrete, decide, has_sizes, specialize_all, symbolic


def active() -> Trace | None:
    """The trace recording on this thread, if any."""
    return hooks.trace_here()


class ValueGuard:
    """A tensor value the Python code read (bool(), item(), ...), checked on every call."""

    __slots__ = ("expected", "kind", "value", "where")

    def __init__(self, value, kind: str, expected, where: str | None):
        self.value, self.kind, self.expected, self.where = value, kind, expected, where

    def describe(self, got=None) -> str:
        text = f"{self.kind}(tensor) at {self.where or '?'}"
        if got is None:
            return f"{text} == {self.expected!r}"
        return f"{text}: {self.expected!r} -> {got!r}"


def read_value(kind: str, array):
    """The Python value a read of `kind` gives for an array (as Tensor's methods give it)."""
    if kind == "tolist":
        return array.tolist()
    scalar = array.reshape(()).item()
    if kind == "bool":
        return bool(scalar)
    if kind == "int":
        return int(scalar)
    if kind == "float":
        return float(scalar)
    return scalar


class Trace:
    """The recording of one traced call."""

    def __init__(self, name: str):
        self.name = name
        self.graph = Graph()
        self.env: dict[int, tuple] = {}  # id(tensor) -> (tensor, Value)
        self.inputs: list = []  # (tensor, Value) of the function's tensor arguments
        self.captured: list = []  # (tensor, Value): tensors from outside, read live each call
        self.states: dict[int, object] = {}  # id -> input or captured tensor
        self.mutated: dict[int, object] = {}  # id -> state tensor written in place
        self.views: dict[int, object] = {}  # id -> a tensor that is a view or has views
        # id -> the tensors sharing its storage whole (detach() aliases and their sources)
        self.aliased: dict[int, list] = {}
        self.factory_made: dict[int, object] = {}  # id -> tensor a factory made while tracing
        self.value_guards: list[ValueGuard] = []
        # nodes that record no gradient (run under no_grad, or detach): replay runs them so too
        self.no_grad_nodes: set = set()
        self.broken: str | None = None  # why recording stopped, with the user's line
        # .grad as state: what each call finds there (guarded), and what it leaves there
        self.grad_reads: dict[int, tuple] = {}  # id -> (tensor, grad tensor or None) at start
        self.grad_writes: dict[int, tuple] = {}  # id -> (tensor, final grad tensor or None)
        self.grad_inputs: list = []  # (tensor, Value): tensor.grad at the call's start
        self.ran_backward = False  # the function ran backward(): a whole training step
        # ids of the tensors the trace saw used other than through detach() (as an op's
        # input, written, read, returned, their grad or requires_grad read): an argument
        # outside it had a requires_grad the call never depended on
        self.used: set[int] = set()
        # symbolic dims (dynamic shapes): symbol -> the size it has in this call; the symbols
        # made exact while tracing; the comparisons of sizes the Python code made (SizeInt)
        self.sizes: dict[str, int] = {}
        self.fixed: dict[str, int] = {}
        self.fixed_by: dict[str, str] = {}  # symbol -> what made it exact, and where
        self.size_guards: list = []  # (expression, op, expression, result, where)
        self.plain_shapes = 0  # > 0 while infer_concrete runs the type rule: plain sizes

    # -- binding tensors to values -----------------------------------------------------------

    def add_input(self, tensor, name: str, dims=()):
        """tensor as the next graph input; the dims listed in `dims` get symbolic sizes, one
        symbol per distinct size (so equal sizes stay equal, as PyTorch's duck sizing), or,
        when `dims` is a dict {dim: symbol}, the symbols it names (export's, the user's)."""
        shape = list(tensor._data.shape)
        named = dims if isinstance(dims, dict) else None
        for d in dims:
            size = shape[d]
            if named is not None:
                symbol = named[d]
                if self.sizes.setdefault(symbol, size) != size:
                    raise ValueError(f"the symbol {symbol} is {self.sizes[symbol]} and {size}")
            else:
                symbol = next((s for s, v in self.sizes.items() if v == size), None)
                if symbol is None:
                    symbol = f"s{len(self.sizes)}"
                    self.sizes[symbol] = size
            shape[d] = SymInt(symbol)
        value = self.graph.add_input(TensorType(tuple(shape), tensor.dtype), name=name)
        self._bind(tensor, value)
        self.inputs.append((tensor, value))
        self.states[id(tensor)] = tensor
        return value

    def _bind(self, tensor, value) -> None:
        self.env[id(tensor)] = (tensor, value)

    def value_of(self, tensor):
        self.used.add(id(tensor))
        return self._value(tensor)

    def _value(self, tensor):
        entry = self.env.get(id(tensor))
        if entry is not None and entry[0] is tensor:
            return entry[1]
        made = self.factory_made.get(id(tensor))
        if made is tensor:
            value = self.graph.add_constant(tensor._data.copy() if hasattr(tensor._data, "copy")
                                            else tensor._data, dtype=tensor.dtype.name)
        else:
            # a tensor from outside the function (a global, a closure, a module's parameter):
            # a live input of every call, so its current value and gradient are used
            value = self.graph.add_input(TensorType(tensor._data.shape, tensor.dtype),
                                         name=f"captured_{len(self.captured)}")
            self.captured.append((tensor, value))
            self.states[id(tensor)] = tensor
        self._bind(tensor, value)
        return value

    # -- events from the tensor layer ------------------------------------------------------------

    def record(self, op: str, inputs: tuple, attrs: dict, out) -> None:
        if self.broken:
            return
        from .._tensor import Tensor

        args = [self.value_of(x) if isinstance(x, Tensor) else x for x in inputs]
        outs = out if isinstance(out, tuple) else (out,)
        if self.sizes:
            args, attrs = self._symbolic_node(op, args, attrs, outs)
        node = self.graph.add_node(op, args, attrs, source=user_frame())
        if not grad_mode.state.enabled:
            self.no_grad_nodes.add(node)
        if any(isinstance(d, int) and d != n
               for t, v in zip(outs, node.outputs) for d, n in zip(v.type.shape, t._data.shape)):
            # the type rule cannot know this size (nonzero, x[mask] say -1): a graph would keep
            # the traced one for every call (a symbolic size is the type rule's to check)
            self.stop(f"{op}, whose output shape depends on the values (as x[mask])")
            return
        schema = node.schema
        for tensor, value in zip(outs, node.outputs):
            if id(tensor) in self.env and self.env[id(tensor)][0] is tensor:
                self._written(tensor, value)  # dispatch wrote into this tensor (out=)
            else:
                self._bind(tensor, value)
        if schema.view:
            base = inputs[0]
            self.views[id(base)] = base
            self.views[id(outs[0])] = outs[0]

    def written(self, tensor, result) -> None:
        """An in-place op wrote result's value into tensor."""
        if self.broken:
            return
        self._written(tensor, self.value_of(result))

    def _written(self, tensor, value) -> None:
        self.used.add(id(tensor))
        if id(tensor) in self.views or tensor._base is not None:
            self._written_through_view(tensor, value)
            return
        entry = self.env.get(id(tensor))
        if entry is None or entry[0] is not tensor:
            # a tensor from outside written before the trace read it (W.copy_(x), W.zero_()):
            # a state like any other, so the call writes it back (its old value an input)
            self._value(tensor)
        self._bind(tensor, value)
        if id(tensor) in self.states:
            self.mutated[id(tensor)] = tensor

    def _written_through_view(self, tensor, value) -> None:
        """Functionalize a write into a view or into a tensor that has views: the base's new
        value is the old one with the written view scattered back in (one view_scatter per
        view op of the chain, innermost first), and every view of the base traced so far is
        taken afresh from that new value. What the trace cannot see whole falls back: a
        detach() alias (it shares memory without a view chain), a base from outside the
        function (an argument that is itself a view), a view op with no scatter."""
        from ..ir.ops.shape import SCATTERABLE_VIEWS

        base = tensor._base if tensor._base is not None else tensor
        chain = tensor._view_chain if tensor._base is not None else ()
        entry = self.env.get(id(base))
        # a write through a detach() alias (p.data.add_, a .grad the engine detached) writes
        # every tensor of the storage: the base's whole aliases take the new value too
        group = self.aliased.get(id(base), [base])
        if (entry is None or entry[0] is not base
                or any(t._base is not None for t in group)
                or (chain and self.views.get(id(tensor)) is not tensor)
                or any(op not in SCATTERABLE_VIEWS for op, _ in chain)):
            self.stop("an in-place write to a tensor that is a view or has views, which the "
                      "trace cannot follow")
            return
        from .._tensor.inplace import replay_chain, scatter_chain

        where = user_frame()

        def add(op, args, attrs):
            return self._add(op, args, attrs, where)

        new = scatter_chain(entry[1], value, chain, add)
        for member in group:
            self._bind(member, new)
            if id(member) in self.states:
                self.mutated[id(member)] = member
        members = {id(t) for t in group}
        for t in list(self.views.values()):
            if id(t) not in members and t._base is not None and id(t._base) in members:
                self._bind(t, replay_chain(new, t._view_chain, add))

    def _add(self, op, args, attrs, where):
        if self.sizes:
            attrs = symbolic(attrs)
        node = self.graph.add_node(op, args, attrs, source=where)
        if not grad_mode.state.enabled:
            self.no_grad_nodes.add(node)
        return node.outputs[0]

    # -- symbolic sizes (see tracer/sizes.py) ----------------------------------------------------

    def _symbolic_node(self, op, args, attrs, outs):
        """(args, attrs) of a node in a trace with symbolic dims: sizes in attrs as their
        expressions, a size used as a number operand made exact. When the op's type rule
        cannot take the symbols (a symbolic size meeting a parameter's fixed one in a matmul),
        or gives a type this call's tensors do not have, the symbols involved become exact:
        the graph then holds for the sizes it can prove, never for others."""
        for a in args:
            if isinstance(a, SizeInt):
                a.specialize(f"a size used as a number operand of {op}")
        args = [a.value if isinstance(a, SizeInt) else a for a in args]
        if has_sizes(attrs):
            attrs = symbolic(attrs)
        free = self._free_symbols(args, attrs)
        if not free or self._infers(op, args, attrs, outs, {}):
            return args, attrs
        # the fewest symbols to make exact: one alone if one suffices (a batch size stays
        # symbolic when only the features meet a weight), the latest-made first; else all
        order = sorted(free, key=lambda n: -list(self.sizes).index(n))
        chosen = next((n for n in order if self._infers(op, args, attrs, outs,
                                                        {n: self.sizes[n]})), None)
        shapes = ", ".join(str(a.type) if isinstance(a, Value) else repr(a) for a in args)
        self.fix([chosen] if chosen is not None else free,
                 f"{op}({shapes}) cannot take the symbolic sizes")
        return args, resolve(attrs, self.fixed)

    def _infers(self, op, args, attrs, outs, trial: dict) -> bool:
        """Whether op's type rule takes these symbolic inputs (with the `trial` symbols made
        exact) and gives this call's output shapes."""
        types = []
        for a in args:
            if isinstance(a, Value):
                t = a.type
                types.append(TensorType(resolve(tuple(t.shape), trial), t.dtype) if trial else t)
            else:
                types.append(a)
        try:
            out_types = infer_types(SCHEMAS[op], tuple(types), resolve(attrs, trial))
        except Exception:  # noqa: BLE001  (a type rule that cannot take the symbols)
            return False
        return all(resolve(tuple(t.shape), self.sizes) == o._data.shape
                   for t, o in zip(out_types, outs))

    @staticmethod
    def _free_symbols(args, attrs) -> set:
        free: set = set()
        for a in args:
            if isinstance(a, Value):
                for d in a.type.shape:
                    if isinstance(d, SymInt):
                        free |= d.free_symbols
        _collect_symbols(attrs, free)
        return free

    def fix_expression(self, expr, why: str) -> None:
        if isinstance(expr, SymInt):
            self.fix(expr.free_symbols, why)

    def fix(self, names, why: str = "a size the graph cannot keep symbolic") -> None:
        """Make these symbols exact (their sizes in this call) throughout the graph so far;
        `why` says what needed it (kept with the user's line in fixed_by)."""
        new = {n: self.sizes[n] for n in names if n in self.sizes and n not in self.fixed}
        if not new:
            return
        self.fixed.update(new)
        where = user_frame()
        reason = f"{why} at {where}" if where else why
        for n in new:
            self.fixed_by[n] = reason
        graph = self.graph
        for value in graph.inputs:
            value.type = TensorType(resolve(tuple(value.type.shape), new), value.type.dtype)
        for node in graph.nodes:
            node.attrs = resolve(node.attrs, new)
            for value in node.outputs:
                value.type = TensorType(resolve(tuple(value.type.shape), new), value.type.dtype)

    def size_guard(self, a, op: str, b, result: bool) -> None:
        """The Python code compared sizes in a way the symbols' bounds cannot decide."""
        if self.broken or hooks.trace_here() is not self:
            return
        self.size_guards.append((a, op, b, result, user_frame()))

    def _traced_shape(self, tensor):
        """tensor's sizes as this trace knows them: SizeInts where they are symbolic."""
        shape = tensor._data.shape
        entry = self.env.get(id(tensor))
        if entry is None or entry[0] is not tensor or self.broken:
            return shape
        dims = entry[1].type.shape
        if all(d.__class__ is int for d in dims):
            return shape
        fixed = self.fixed
        return tuple(SizeInt.make(n, d.subs(fixed) if fixed and isinstance(d, SymInt) else d,
                                  self)
                     for n, d in zip(shape, dims))

    # -- the rest of hooks.TraceHooks: sizes as the tensor layer reads them -------------------

    def read_shape(self, tensor, dim, by_ember: bool):
        """tensor's sizes read while tracing: SizeInts where this trace made them symbolic,
        when ember's own code reads them. The traced function's own code gets plain ints,
        and the sizes it reads become exact (all of them, or only `dim` for x.size(dim)): an
        int that Python code holds escapes any bookkeeping (range(n), 1.0 / n and list[n]
        read its value directly), so only ember's code, which is written to keep sizes
        symbolic, sees SizeInts."""
        if self.plain_shapes:
            return tensor._data.shape
        shape = self._traced_shape(tensor)
        if by_ember:
            return shape
        for d in range(len(shape)) if dim is None else (dim,):
            if shape[d].__class__ is not int:
                shape[d].specialize("a size the function's own code read")
        return tensor._data.shape

    def infer_concrete(self, infer, inputs, attrs):
        """The type rule on this call's plain numbers (the trace records the expressions)."""
        plain = concrete(attrs)
        self.plain_shapes += 1
        try:
            return infer(inputs, plain), plain
        finally:
            self.plain_shapes -= 1

    def layout_read(self) -> None:
        """Strides and contiguity follow from sizes (a view's from its base's): every size
        becomes exact."""
        self.fix(list(self.sizes), "strides or contiguity read")

    def specialize(self, value) -> None:
        specialize_all(value, "a size passed to a factory")

    def finish_symbolic(self, out_leaves):
        """After a trace with symbolic dims: (the graph with the symbols left, those symbols
        with this call's sizes, the size guards over them), or None when every symbol became
        exact. The trace's own graph is made concrete for this call's sizes, in place."""
        # a size returned to Python is a value of this call only
        specialize_all(out_leaves, "a size returned by the function")
        if self.broken:
            return None
        # a guard whose symbols were all specialized is decided now
        guards = []
        for a, op, b, result, where in self.size_guards:
            a, b = resolve(a, self.fixed), resolve(b, self.fixed)
            if decide(op, a, b) is not result:
                guards.append((a, op, b, result, where))
        left = {n: v for n, v in self.sizes.items() if n not in self.fixed}
        graph = None
        if left:
            try:
                graph = specialize(self.graph, {})  # every type inferred again, symbolically
            except Exception:  # noqa: BLE001  (should not happen: be exact rather than wrong)
                graph = None
        self.fix(list(self.sizes), "the trace's end")  # the recorded graph: this call's sizes
        if graph is None:
            return None
        return graph, left, guards

    def read(self, tensor, kind: str, result) -> None:
        """The Python code read a tensor's value: guard it."""
        if self.broken:
            return
        value = self.value_of(tensor)
        self.value_guards.append(ValueGuard(value, kind, result, user_frame()))

    def factory(self, tensor, random: bool, what: str) -> None:
        if self.broken:
            return
        if random:
            self.stop(f"the random factory ember.{what} (its numbers would be frozen)")
            return
        self.factory_made[id(tensor)] = tensor
        if self.sizes:
            # a constant has the sizes of this call: a symbol whose size it has (zeros_like(x),
            # zeros(x.shape) made from plain ints) becomes exact, in case that is where it came
            # from; a symbol can never leak into a constant this way
            made = set(tensor._data.shape)
            self.fix([n for n, v in self.sizes.items() if v in made],
                     f"a tensor made by a factory{f' (ember.{what})' if what else ''} with "
                     f"that size")

    def alias(self, source, alias) -> None:
        """alias shares source's storage (detach): it stands for the same value."""
        if self.broken:
            return
        value = self._value(source)
        if source._requires_grad:
            # the same numbers, but no gradient may flow through them when the graph is
            # replayed under autograd: a copy recorded as a no-grad node stands for them
            node = self.graph.add_node("clone", [value], {}, source=user_frame())
            self.no_grad_nodes.add(node)
            value = node.outputs[0]
        self._bind(alias, value)
        self.views[id(source)] = source
        self.views[id(alias)] = alias
        group = self.aliased.get(id(source), [source])
        if all(t is not alias for t in group):
            group = [*group, alias]
        for t in group:
            self.aliased[id(t)] = group

    def grad_facts_read(self, tensor) -> None:
        self.used.add(id(tensor))

    def read_grad(self, tensor):
        """tensor.grad read while tracing: this call's own write if it made one, else the
        value the call found there, which becomes an input (and its None-ness a guard)."""
        self.used.add(id(tensor))
        written = self.grad_writes.get(id(tensor))
        if written is not None and written[0] is tensor:
            return written[1]
        grad = tensor._grad
        if self.broken:
            return grad
        if id(tensor) not in self.grad_reads:
            self.grad_reads[id(tensor)] = (tensor, grad)
            if grad is not None:
                value = self.graph.add_input(TensorType(grad._data.shape, grad.dtype),
                                             name=f"grad_{len(self.grad_inputs)}")
                self._bind(grad, value)
                self.grad_inputs.append((tensor, value))
        return grad

    def write_grad(self, tensor, grad) -> None:
        """tensor.grad assigned while tracing: the call leaves that value there."""
        if self.broken:
            return
        if grad is not None:
            self.value_of(grad)  # bound, or a tensor from outside read live
        self.grad_writes[id(tensor)] = (tensor, grad)

    def stop(self, reason: str) -> None:
        if not self.broken:
            where = user_frame()
            self.broken = f"{reason} at {where}" if where else reason

    def outputs(self, leaves) -> None:
        from .._tensor import Tensor

        values = [self.value_of(x) for x in leaves if isinstance(x, Tensor)]
        values += [self.env[id(t)][1] for t in self.mutated.values()]
        values += [self.value_of(g) for _, g in self.grad_writes.values() if g is not None]
        values += [g.value for g in self.value_guards]
        self.graph.set_outputs(values)


def _collect_symbols(value, into: set) -> None:
    if isinstance(value, SymInt):
        into |= value.free_symbols
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect_symbols(v, into)
    elif isinstance(value, dict):
        for v in value.values():
            _collect_symbols(v, into)


class tracing:
    """Context manager: record dispatched ops into `trace` on this thread."""

    def __init__(self, trace: Trace):
        self.trace = trace

    def __enter__(self):
        if active() is not None:
            raise RuntimeError("ember: nested tracing is not supported")
        hooks.begin_trace(self.trace)
        return self.trace

    def __exit__(self, *exc):
        hooks.end_trace()
        return False


def trace(fn, example_inputs=(), name: str | None = None) -> Graph:
    """Run fn(*example_inputs) once, recording its ops: the Graph of that call.

    Tensor arguments become graph inputs (in order, nested structures flattened), tensors from
    outside the function become further inputs named captured_N, and the graph returns fn's
    tensor outputs. Raises an EmberError if the call cannot be captured, with the reason.

    ember.trace(matrix), with a tensor in place of fn, is torch.trace: the sum of the
    matrix's diagonal (a script written for torch calls it so).
    """
    from .._tensor import Tensor
    from .._tensor import ops as E
    from ..errors import runtime_error
    from .pytree import flatten

    if isinstance(fn, Tensor):
        return E.trace(fn)

    if not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)
    leaves, _ = flatten(example_inputs)
    recording = Trace(name or getattr(fn, "__name__", "fn"))
    for i, x in enumerate(leaves):
        if isinstance(x, Tensor):
            recording.add_input(x, f"arg{i}")
    with tracing(recording):
        result = fn(*example_inputs)
    if recording.broken:
        raise runtime_error(f"ember.trace: cannot capture {recording.name}: {recording.broken}")
    out_leaves, _ = flatten(result)
    recording.outputs(out_leaves)
    return recording.graph
