"""The autograd graph: nodes (grad_fn), edges to the nodes of the inputs, saved tensors."""

from __future__ import annotations

import itertools
import threading
import weakref

from ..errors import runtime_error
from .grad_mode import state as _grad_state

_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed when "
    "you call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward "
    "through the graph a second time or if you need to access saved tensors after calling "
    "backward."
)


# a number for each node made, in order (PyTorch's sequence_nr): a node numbered below a value
# taken before some code ran existed before it (utils/checkpoint.py finds its segment's nodes)
next_sequence_nr = itertools.count().__next__


class Node:
    """A backward function: turns the gradients of its outputs into those of its inputs.

    next_functions[i] is the edge (node, output_nr) the i-th input's gradient flows to, or
    None when that input needs no gradient.
    """

    __slots__ = ("__dict__", "__weakref__", "next_functions", "pre_hooks", "sequence_nr")

    def __init__(self):
        self.next_functions: tuple = ()
        self.pre_hooks: dict | None = None
        self.sequence_nr = next_sequence_nr()

    def name(self) -> str:
        return type(self).__name__

    def apply(self, grads: list) -> list:
        raise NotImplementedError

    def release(self) -> None:
        """Free saved tensors (after a backward without retain_graph)."""

    def add_pre_hook(self, output_nr: int, hook) -> None:
        if self.pre_hooks is None:
            self.pre_hooks = {}
        hooks = self.pre_hooks.setdefault(output_nr, [])
        # retain_grad's hook stays last, so .grad holds what the other hooks made of it
        if hooks and getattr(hooks[-1], "retains_grad", False):
            hooks.insert(len(hooks) - 1, hook)
        else:
            hooks.append(hook)

    def num_outputs(self) -> int:
        return 1

    def output_meta(self, i):
        raise NotImplementedError

    def zero_fills(self, i: int) -> bool:
        """Whether output i's gradient is zeros (else None) when no gradient reached it."""
        return True

    def __repr__(self) -> str:
        return f"<{self.name()} object at {hex(id(self))}>"


class AccumulateGrad(Node):
    """The sink of a leaf tensor: adds the incoming gradient to leaf.grad.

    A leaf holds its accumulator (edge_of makes one per leaf, once) and the accumulator holds
    the leaf weakly, so neither keeps the other in a cycle; a leaf that is gone when backward
    reaches its accumulator gets nothing (nothing could read its .grad), and `variable` is
    None then. A leaf with hooks is the other way round: its accumulator holds it (`_held`),
    so its hooks run as PyTorch's would after the caller dropped it, and the leaf holds the
    accumulator weakly (edge_of), so the graph's lifetime is the pair's."""

    __slots__ = ("_held", "_meta", "_variable")

    def __init__(self, variable):
        super().__init__()
        self._variable = weakref.ref(variable)
        self._meta = (tuple(variable._data.shape), variable._dtype, variable._device)
        hooked = variable._hooks or variable._post_accumulate_grad_hooks
        self._held = variable if hooked else None

    @property
    def variable(self):
        """The leaf tensor (None once it is gone)."""
        return self._variable()

    def apply(self, grads: list) -> list:
        (g,) = grads
        return self.accumulate(g, False)

    def accumulate(self, g, owned: bool) -> list:
        """Add g to the leaf's .grad. owned: nothing but this call refers to g or its array
        (the engine checked the reference counts), so a first gradient may be kept as .grad
        itself, as PyTorch steals an unshared gradient; otherwise .grad gets a copy, never a
        tensor or array something else holds (a clone's backward hands its gradient on
        unchanged, a hook may return the caller's own tensor)."""
        var = self._variable()
        if g is None or var is None:
            return []
        if var._hooks:
            for hook in var._hooks:
                new = hook(g)
                if new is not None and new is not g:
                    g, owned = new, False
        with _ACCUMULATING:  # threads running backward into one leaf add, none is lost
            _store(var, g, owned)
        run_post_accumulate_grad_hooks(var)
        return []

    def output_meta(self, i):
        v = self._variable()
        if v is None:
            return self._meta
        return tuple(v.shape), v._dtype, v._device


# held while a gradient is added to a leaf's .grad (PyTorch locks each accumulator): a
# re-entrant lock, as the add dispatches an op
_ACCUMULATING = threading.RLock()


def _store(var, g, owned: bool) -> None:
    """var.grad += g, or var.grad = g (owned: kept as it is, see AccumulateGrad.accumulate)
    when var has none yet."""
    if owned and g._base is None and g._data.base is None and g._grad_fn is None:
        if (g.__class__ is _Tensor and var._grad is None and not g._requires_grad
                and _hooks.active_trace is None and g._dtype is var._dtype
                and g._device is var._device and g._data.shape == var._data.shape):
            # the common first gradient, outside a trace (which records .grad writes): kept
            # as .grad without the setter's checks
            var._grad = g
            return
        if var.grad is None:
            var.grad = g.detach()
            return
    if var.grad is None:
        if g._grad_fn is not None:
            var.grad = g.clone()  # create_graph: keep the gradient's own history
        else:
            var.grad = g.detach().clone()
    else:
        var.grad = var.grad + g


def run_post_accumulate_grad_hooks(var) -> None:
    """Call the hooks registered by register_post_accumulate_grad_hook, once var.grad holds
    this backward's gradient (DDP starts reducing a gradient bucket from them)."""
    hooks = var._post_accumulate_grad_hooks
    if hooks:
        for hook in tuple(hooks.values()):
            hook(var)


class OpNode(Node):
    """The backward of one primitive op; its derivative rule is written in Tensor ops."""

    __slots__ = (
        "attrs",
        "freed",
        "input_meta",
        "inputs",
        "needs_input_grad",
        "op",
        "out_meta",
        "outputs",
        "rule",
        "saved_versions",
    )

    def name(self) -> str:
        return "".join(p.capitalize() for p in self.op.split("_")) + "Backward0"

    def apply(self, grads: list) -> list:
        if self.freed:
            raise runtime_error(_FREED_MESSAGE)
        if self.saved_versions:
            self._check_versions()
        saved = self.outputs
        if saved is not None and _grad_state.enabled:
            # create_graph: the rule reads the saved outputs with their history (this node),
            # so the gradient it builds differentiates through them again
            self.outputs = tuple([_with_history(t, self, i) for i, t in enumerate(saved)])
            try:
                result = self.rule.fn(self, *grads)
            finally:
                self.outputs = saved
        else:
            result = self.rule.fn(self, *grads)
        if not isinstance(result, (tuple, list)):
            result = (result,)
        # a gradient's sizes as the input's metadata holds them: the array's own, or under
        # a trace the symbolic ones the trace reads (Tensor.shape)
        traced = _hooks.active_trace is not None
        out = []
        n = len(result)
        metas = self.input_meta
        for i, edge in enumerate(self.next_functions):
            g = result[i] if i < n else None
            if edge is None or g is None:
                out.append(None)
                continue
            shape, dtype, _ = metas[i]
            found = g._data.shape if g.__class__ is _Tensor and not traced else tuple(g.shape)
            if len(found) != len(shape) or found != shape:  # ranks first: no size compared
                g = sum_to(g, shape)
            if g._dtype is not dtype:
                g = g.to(dtype)
            out.append(g)
        return out

    def _check_versions(self) -> None:
        for tensors, versions in self.saved_versions:
            for t, v in zip(tensors, versions):
                if t is not None and v is not None and t._version[0] != v:
                    kind = "output" if tensors is self.outputs else "input"
                    raise runtime_error(
                        "one of the variables needed for gradient computation has been modified "
                        f"by an inplace operation: [ember.{t._dtype.name} {list(t.shape)}], which "
                        f"is {kind} of {self.name()}, is at version {t._version[0]}; expected "
                        f"version {v} instead. Hint: the backtrace further above shows the "
                        "operation that failed to compute its gradient."
                    )

    def release(self) -> None:
        if self.saved_versions:
            self.freed = True
            # its records hold the saved tensors too: an output saved by its own node (exp's,
            # attention's) would otherwise keep a cycle, freed only by the garbage collector
            self.saved_versions = ()
        self.inputs = None
        self.outputs = None

    def num_outputs(self) -> int:
        return len(self.out_meta)

    def output_meta(self, i):
        return self.out_meta[i]

    def zero_fills(self, i: int) -> bool:
        return i not in self.rule.optional_grads


def _saved_output(o):
    """What a node keeps of its own output o for its rule: outside a trace, an alias of o's
    array and version counter without o's history. Keeping o itself would make a cycle (o's
    grad_fn is the node), which only the garbage collector frees: a forward that is never
    backpropagated (an evaluation with grad on) would hold its activations until it runs, as
    PyTorch's SavedVariable does not. A trace keeps o: it knows tensors by identity."""
    if _hooks.active_trace is not None:
        return o
    return _alias(o)


def _alias(t):
    """A tensor of t's array and version counter, without t's history."""
    return _Tensor._make(t._data, t._dtype, t._device, t._version)


def _with_history(t, node, i):
    """A saved output alias given its history back (node's output i), for create_graph."""
    if t is None or t._grad_fn is not None or not t._dtype.is_floating_point:
        return t
    out = _alias(t)
    out._requires_grad = True
    out._grad_fn = node
    if i:
        out._output_nr = i
    return out


def edge_of(tensor):
    """The edge a gradient for `tensor` flows into: its grad_fn, or its leaf accumulator."""
    if tensor._grad_fn is not None:
        if tensor._base is not None and tensor._view_version != tensor._version[0]:
            _refresh_view(tensor)
        return (tensor._grad_fn, tensor._output_nr)
    if not tensor._requires_grad:
        return None
    acc = tensor._grad_accumulator
    if acc.__class__ is weakref.ref:  # a hooked leaf's (AccumulateGrad)
        acc = acc()
    if acc is None:
        acc = AccumulateGrad(tensor)
        tensor._grad_accumulator = acc if acc._held is None else weakref.ref(acc)
    return (acc, 0)


def _refresh_view(view) -> None:
    """Replay a view from its base after the base changed in place (the version moved), so
    the view's grad_fn includes that change, as PyTorch regenerates a view's grad_fn."""
    from .._tensor import dispatch
    from . import grad_mode

    view._view_version = view._version[0]
    t = view._base
    prev = grad_mode.state.enabled
    grad_mode.state.enabled = True
    try:
        for op, attrs in view._view_chain:
            t = dispatch(op, (t,), attrs)
    finally:
        grad_mode.state.enabled = prev
    if t._grad_fn is not None:
        view._grad_fn, view._output_nr = t._grad_fn, t._output_nr


def _meta(t):
    return tuple(t._data.shape), t._dtype, t._device


_derivatives = None
_new_node = object.__new__


_Tensor = None
_hooks = None


def _traced_metas(node, inputs) -> None:
    """Under a trace with symbolic sizes, the derivative rules read the inputs' sizes as the
    trace knows them (SizeInts), so the backward they record is symbolic too."""
    trace = _hooks.trace_here()
    if trace is None or not trace.sizes:
        return
    node.input_meta = tuple(
        m if m is None else (trace.read_shape(x, None, True), *m[1:])
        for x, m in zip(inputs, node.input_meta)
    )


def link_op(op: str, inputs: tuple, attrs: dict, outputs: tuple) -> None:
    """Record op in the autograd graph: a node from the outputs back to the inputs."""
    global _derivatives, _Tensor, _hooks
    if _derivatives is None:
        # deferred: the tensor layer imports this module while it loads
        from .._tensor import Tensor, hooks
        from .derivatives import DERIVATIVES

        _derivatives, _Tensor, _hooks = DERIVATIVES, Tensor, hooks
    Tensor = _Tensor
    rule = _derivatives[op]
    node = _new_node(OpNode)  # every slot is set here (Node.__init__ would set two twice)
    node.sequence_nr = next_sequence_nr()
    node.pre_hooks = None
    node.op = op
    node.attrs = attrs
    node.rule = rule
    node.freed = False
    if len(outputs) == 1 and _hooks.active_trace is None:
        n = len(inputs)
        if n == 1:
            _link_one(node, rule, inputs, outputs[0])
            return
        if n == 2 and isinstance(inputs[0], Tensor) and isinstance(inputs[1], Tensor):
            _link_two(node, rule, inputs, outputs[0])
            return
    _link_general(node, rule, inputs, outputs)


def _link_general(node, rule, inputs: tuple, outputs: tuple) -> None:
    """link_op for any call: inputs may hold numbers, several outputs, a trace may run."""
    Tensor = _Tensor
    # one pass over the inputs (most calls have one or two, all tensors): the edges, the
    # metadata the backward checks its gradients against, which inputs need a gradient
    edges = []
    metas = []
    needs = []
    numbers = False
    for x in inputs:
        if x.__class__ is Tensor or isinstance(x, Tensor):
            e = _edge(x)
            edges.append(e)
            needs.append(e is not None)
            metas.append((x._data.shape, x._dtype, x._device))
        else:
            numbers = True
            edges.append(None)
            metas.append(None)
            needs.append(False)
    node.next_functions = tuple(edges)
    node.needs_input_grad = needs = tuple(needs)
    node.input_meta = tuple(metas)
    if _hooks.active_trace is not None:
        _traced_metas(node, inputs)
    if len(outputs) == 1:
        o = outputs[0]
        node.out_meta = ((o._data.shape, o._dtype, o._device),)
    else:
        node.out_meta = tuple([(o._data.shape, o._dtype, o._device) for o in outputs])
    save = rule.save_inputs
    if save is not True and save is not False:
        # the rule saves only the inputs its gradients will read (mul: a only if b needs grad)
        mask = save(needs)
        inputs = tuple([x if m or meta is None else None
                        for x, m, meta in zip(inputs, mask, metas)])
        save = True in mask
    versions = []
    if save:
        node.inputs = inputs
        if numbers:
            versions.append((inputs, tuple([x._version[0] if meta is not None and x is not None
                                            else None for x, meta in zip(inputs, metas)])))
        else:
            versions.append((inputs, tuple([None if x is None else x._version[0]
                                            for x in inputs])))
    elif numbers:
        node.inputs = tuple([None if meta is not None else x for x, meta in zip(inputs, metas)])
    else:
        node.inputs = (None,) * len(inputs)
    if rule.save_outputs:
        if rule.save_outputs is not True:
            outputs_kept = tuple([_saved_output(o) if m else None
                                  for o, m in zip(outputs, rule.save_outputs)])
            node.outputs = outputs_kept
            versions.append((outputs_kept, tuple([None if o is None else o._version[0]
                                                  for o in outputs_kept])))
        else:
            kept = tuple([_saved_output(o) for o in outputs])
            node.outputs = kept
            versions.append((kept, tuple([o._version[0] for o in kept])))
    else:
        node.outputs = None
    node.saved_versions = versions
    for i, o in enumerate(outputs):
        if o._dtype.is_floating_point:
            o._requires_grad = True
            o._grad_fn = node
            if i:
                o._output_nr = i


def _edge(x):
    """edge_of's common case inline: an op's output that is not a view."""
    grad_fn = x._grad_fn
    if grad_fn is not None and x._base is None:
        return (grad_fn, x._output_nr)
    return edge_of(x)


def _link_output(node, rule, o) -> None:
    """The one output's part of link_op (see it): its metadata, whether the node keeps it,
    and its history."""
    dtype = o._dtype
    node.out_meta = ((o._data.shape, dtype, o._device),)
    save = rule.save_outputs
    if not save:
        node.outputs = None
    elif save is True or save[0]:
        outputs = (_alias(o),)  # as _saved_output keeps it (no trace runs on this path)
        node.outputs = outputs
        node.saved_versions.append((outputs, (o._version[0],)))
    else:
        node.outputs = (None,)
        node.saved_versions.append(((None,), (None,)))
    if dtype.is_floating_point:
        o._requires_grad = True
        o._grad_fn = node


def _link_one(node, rule, inputs, out) -> None:
    """link_op for one tensor input (which requires grad: else no node is made) and one
    output, outside a trace: the same node, built without the general loops."""
    x = inputs[0]
    node.next_functions = (_edge(x),)
    node.needs_input_grad = (True,)
    node.input_meta = ((x._data.shape, x._dtype, x._device),)
    save = rule.save_inputs
    if save is not True and save is not False:
        save = save((True,))[0]
    if save:
        node.inputs = inputs
        node.saved_versions = [(inputs, (x._version[0],))]
    else:
        node.inputs = (None,)
        node.saved_versions = []
    _link_output(node, rule, out)


def _link_two(node, rule, inputs, out) -> None:
    """link_op for two tensor inputs and one output, outside a trace (see _link_one)."""
    a, b = inputs
    ea = _edge(a) if a._requires_grad else None
    eb = _edge(b) if b._requires_grad else None
    node.next_functions = (ea, eb)
    node.needs_input_grad = needs = (ea is not None, eb is not None)
    node.input_meta = ((a._data.shape, a._dtype, a._device), (b._data.shape, b._dtype, b._device))
    save = rule.save_inputs
    if save is True:
        node.inputs = inputs
        node.saved_versions = [(inputs, (a._version[0], b._version[0]))]
    elif save is False:
        node.inputs = (None, None)
        node.saved_versions = []
    else:
        keep_a, keep_b = save(needs)
        if keep_a or keep_b:
            kept = (a if keep_a else None, b if keep_b else None)
            node.inputs = kept
            node.saved_versions = [(kept, (a._version[0] if keep_a else None,
                                           b._version[0] if keep_b else None))]
        else:
            node.inputs = (None, None)
            node.saved_versions = []
    _link_output(node, rule, out)


def sum_to(g, shape: tuple):
    """Sum a broadcast gradient back down to `shape` (a fresh tensor, never a view)."""
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if dims:
        g = g.sum(dim=dims, keepdim=True)
    return g


class _ToDevice(Node):
    __slots__ = ("meta", "source_device")

    def apply(self, grads):
        (g,) = grads
        return [g.to(self.source_device)]

    def output_meta(self, i):
        return self.meta


def to_device(tensor, dev):
    """A copy of tensor on dev; differentiable (the gradient goes back to the source device)."""
    from .._tensor import Tensor
    from ..runtime.device import to_device as move
    from . import grad_mode

    out = Tensor._make(move(tensor._data, dev), tensor._dtype, dev)
    if grad_mode.state.enabled and tensor._requires_grad:
        node = _ToDevice()
        node.pre_hooks = None
        node.source_device = tensor._device
        node.next_functions = (edge_of(tensor),)
        node.meta = _meta(out)
        out._requires_grad = True
        out._grad_fn = node
    return out
