"""A scripted call that autograd records, as one node: a compiled forward, a compiled backward.

When a captured function is called with inputs that require grad, eager PyTorch would record
one autograd node per op. Instead, on the tracing call, the backward of the recorded ops is
traced too (autograd.grad through dispatch, with a placeholder gradient per output), giving a
backward graph whose inputs are the output gradients and the forward values it reads. The
forward graph returns those saved values besides its results. Later calls run both graphs
compiled: the forward program, then, when backward reaches it, one `CompiledBackward` node that
runs the backward program and hands each input its gradient.

Higher-order gradients (backward with create_graph=True) need the forward ops themselves in the
autograd graph: the node then recomputes the forward eagerly from the inputs it kept (checking
they were not changed in place since) and differentiates that, as activation checkpointing
does.

A call may also write state that carries no gradient (BatchNorm's running statistics and
num_batches_tracked in training mode, other buffers updated under no_grad): the forward
program returns the new values among its outputs and the caller writes them back after it,
as for any scripted call; only the differentiable results go through the node. Calls that
write .grad, write a tensor that requires grad, or return an input keep the op-by-op replay.
"""

from __future__ import annotations

import numpy as np

from .. import _tensor
from ..autograd import grad_mode
from ..autograd.graph import _FREED_MESSAGE, Node, edge_of, next_sequence_nr
from ..errors import runtime_error
from ..ir.passes import run_pipeline
from ..runtime.compiled import build_program
from ..runtime.program import evaluate_with_kernels
from .remat import rematerialize
from .tracer import Trace, tracing


class SplitGraphs:
    """The forward and backward programs of one specialization, and how they connect."""

    def __init__(self, forward, backward, n_outputs, diff_inputs, diff_outputs, has_grad,
                 replay, written=(), kept=(), saved_results=()):
        self.forward = forward  # returns the recorded outputs, then the saved values
        self.backward = backward  # (output grads..., saved...) -> the present input grads
        self.n_outputs = n_outputs
        self.diff_inputs = diff_inputs  # indices of the inputs that require grad
        self.diff_outputs = diff_outputs  # indices of the results autograd flows through
        self.has_grad = has_grad  # per diff input: whether the backward graph returns one
        self.replay = replay  # runs the recorded graph eagerly (for create_graph)
        # indices of the inputs the call writes (state written back after the forward): the
        # version check of create_graph's recomputation leaves them out, and those whose old
        # value the differentiable results depend on (`kept`) are copied before the write
        self.written = frozenset(written)
        self.kept = tuple(kept)
        # indices of the results the backward reads (a saved value is the result or a view of
        # it): changed in place before backward, they fail it, as in eager autograd
        self.saved_results = tuple(saved_results)


def _float(t) -> bool:
    return t._dtype.is_floating_point


def split(sp, recording, inputs: list, results: list, name: str, device):
    """SplitGraphs for a specialization traced with autograd on, or None when the call needs
    the op-by-op replay (.grad or a tensor that requires grad written, inputs returned as
    outputs, backward not traceable)."""
    from .._tensor.factories import tensor as make_tensor

    if sp.grad_writes or any(k != "tensor" for k, *_ in sp.out_template if k != "value"):
        return None
    if any(t._requires_grad for t in recording.mutated.values()):
        return None  # a write with a history (or into a parameter): autograd must see it
    diff_inputs = [i for i, t in enumerate(inputs) if t._requires_grad and _float(t)]
    diff_outputs = [j for j, t in enumerate(results)
                    if isinstance(t, _tensor.Tensor) and t._requires_grad and _float(t)]
    if not diff_inputs or not diff_outputs:
        return None
    grad_outputs = [make_tensor(np.ones(tuple(results[j].shape), dtype=results[j]._dtype.np))
                    for j in diff_outputs]
    backward = Trace(f"{name}.backward")
    for k, g in enumerate(grad_outputs):
        backward.add_input(g, f"grad_output{k}")
    from ..autograd.engine import partial_grad
    from ..autograd.graph import edge_of

    if len({edge_of(inputs[i]) for i in diff_inputs}) < len(diff_inputs):
        return None  # one tensor in two places: autograd tells its two gradients apart only
        # as the op-by-op replay records them
    with tracing(backward):
        grads = partial_grad([results[j] for j in diff_outputs],
                             [inputs[i] for i in diff_inputs], grad_outputs)
    if backward.broken is not None or backward.value_guards or backward.mutated:
        return None
    has_grad = [g is not None for g in grads]
    if not any(has_grad):
        return None
    backward.outputs([g for g in grads if g is not None])
    # what the backward reads from the forward: values the forward trace bound
    saved = []
    for tensor, _ in backward.captured:
        entry = recording.env.get(id(tensor))
        if entry is None or entry[0] is not tensor or id(tensor) in recording.mutated:
            return None  # (a state's value after the write is not what the rule read)
        saved.append(entry[1])
    written = [i for i, t in enumerate(inputs) if id(t) in recording.mutated]
    if any(i in diff_inputs for i in written):
        return None
    differentiable = {recording.graph.outputs[j] for j in diff_outputs}
    kept = [i for i in written
            if not _reached(recording.graph.inputs[i]).isdisjoint(differentiable)]
    # the saved values an elementwise chain gives back from cheaper ones are recomputed
    backward_graph = backward.graph
    if [v for _, v in backward.captured] == backward_graph.inputs[len(grad_outputs):]:
        saved, backward_graph = rematerialize(
            recording.graph, saved, backward_graph, len(grad_outputs),
            {recording.graph.inputs[i] for i in written})
    mapping: dict = {}
    forward_graph = recording.graph.copy(mapping)
    forward_graph.set_outputs([*forward_graph.outputs, *(mapping[v] for v in saved)])
    run_pipeline(forward_graph, evaluate=evaluate_with_kernels)
    run_pipeline(backward_graph, evaluate=evaluate_with_kernels)
    n = len(recording.graph.outputs)
    backward_graph.checked_gathers = _checked_gathers(forward_graph, n, backward_graph,
                                                      len(grad_outputs))
    saved_roots = {_view_root(v) for v in forward_graph.outputs[n:]}
    saved_results = [j for j, v in enumerate(forward_graph.outputs[:n])
                     if _view_root(v) in saved_roots]
    return SplitGraphs(
        build_program(forward_graph, name, device),
        build_program(backward_graph, f"{name}.backward", device),
        len(recording.graph.outputs), diff_inputs, diff_outputs, has_grad, sp._replay,
        written, kept, saved_results,
    )


def _checked_gathers(forward_graph, n: int, backward_graph, first: int) -> frozenset:
    """Names of the backward's gather_backward results whose index the forward's gathers
    checked along the same dim of the same size: the index computed the same way from the
    same values (codegen/rewrites.py may then select instead of scattering). Forward output
    n + k is backward input first + k; values compare by how they are computed from the
    forward's inputs (the backward recomputes an index from the saved targets)."""
    gathers = [node for node in forward_graph.nodes if node.op == "gather"]
    wanted = [node for node in backward_graph.nodes if node.op == "gather_backward"]
    if not gathers or not wanted:
        return frozenset()
    prints = _Fingerprints()
    forward = {id(v): ("input", k) for k, v in enumerate(forward_graph.inputs)}
    saved = {id(v): forward_graph.outputs[n + k - first]
             for k, v in enumerate(backward_graph.inputs) if k >= first}
    checked = set()
    for node in gathers:
        x, index = node.inputs
        dim = node.attrs["dim"] % len(x.shape)
        checked.add((prints(index, forward, {}), dim, x.shape[dim]))
    found = set()
    backward: dict = {}
    for node in wanted:
        shape = node.attrs["shape"]
        dim = node.attrs["dim"] % len(shape)
        try:
            index = prints(node.inputs[1], backward, saved, forward)
        except RecursionError:
            continue
        if (index, dim, shape[dim]) in checked:
            found.add(node.outputs[0].name)
    return frozenset(found)


class _Fingerprints:
    """A value's computation as a number: equal numbers, equal computations (ops, attrs and
    operands down to the forward's inputs; constants by their bytes)."""

    def __init__(self):
        self.table: dict = {}  # (what, ...) -> its number

    def number(self, key) -> int:
        return self.table.setdefault(key, len(self.table))

    def __call__(self, value, known: dict, saved: dict, forward: dict | None = None) -> int:
        """value's number; known: its graph's values numbered so far (the forward's inputs
        given); saved: the graph's inputs that are forward values, numbered in `forward`."""
        if not hasattr(value, "type"):
            return self.number(("number", repr(value)))
        found = known.get(id(value))
        if isinstance(found, tuple):
            found = known[id(value)] = self.number(found)
        if found is not None:
            return found
        if id(value) in saved:
            found = self(saved[id(value)], forward, {})
        elif value.node is None and value.is_constant:
            array = value.constant
            found = self.number(("constant", str(array.dtype), array.shape, array.tobytes()))
        elif value.node is None:
            found = self.number(("unknown input", id(value)))
        else:
            node = value.node
            found = self.number((node.op, repr(sorted(node.attrs.items())), value.index,
                                 tuple(self(x, known, saved, forward) for x in node.inputs)))
        known[id(value)] = found
        return found


def _view_root(value):
    """The value whose memory `value` is (through view ops)."""
    while value.node is not None and value.node.schema.view:
        value = value.node.inputs[0]
    return value


def _reached(value) -> set:
    """The values computed from `value` (itself included)."""
    seen = {value}
    stack = [value]
    while stack:
        for node in stack.pop().users:
            for out in node.outputs:
                if out not in seen:
                    seen.add(out)
                    stack.append(out)
    return seen


def run_split(graphs: SplitGraphs, inputs: list, xp, wrap) -> list:
    """Run the forward program and link its results to one CompiledBackward node: the graph's
    outputs, the results autograd flows through as tensors with that node as grad_fn."""
    if graphs.kept:  # the values create_graph's recomputation reads, before the write-back
        kept = list(inputs)
        for i in graphs.kept:
            kept[i] = wrap(inputs[i]._data.copy())
    else:
        kept = inputs
    outs = graphs.forward(xp, [t._data for t in inputs])
    n = graphs.n_outputs
    node = CompiledBackward(graphs, kept, outs[n:], xp)
    results = [wrap(a) for a in outs[:n]]
    node.result_versions = [(j, results[j]._version, 0) for j in graphs.saved_results]
    out_meta = node.out_meta
    for k, j in enumerate(graphs.diff_outputs):
        t = results[j]
        t._requires_grad = True
        t._grad_fn = node
        if k:
            t._output_nr = k
        out_meta.append((t._data.shape, t._dtype, t._device))
    return results


def one_result_call(graphs: SplitGraphs, make_tensor, dtype, device, xp):
    """run_split for a call of one result that autograd flows through, read from the
    program's first output, whose inputs are the call's arguments as they are (an eager
    composite such as softmax): the same steps without their loops, ~1 us of a small call's
    ~8. None where the call is not so."""
    if graphs.kept or graphs.n_outputs != 1 or tuple(graphs.diff_outputs) != (0,):
        return None
    forward = graphs.forward
    saved_result = 0 in graphs.saved_results

    def call(inputs):
        outs = forward(xp, [t._data for t in inputs])
        node = CompiledBackward(graphs, inputs, outs[1:], xp)
        result = make_tensor(outs[0], dtype, device)
        result._requires_grad = True
        result._grad_fn = node
        if saved_result:
            node.result_versions = ((0, result._version, 0),)
        node.out_meta.append((outs[0].shape, dtype, device))
        return result

    return call


def _modified(what: str, now: int, expected: int):
    return runtime_error(
        "one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: {what} of a scripted call, is at version {now}; expected "
        f"version {expected} instead. Clone it before changing it in place, or change it "
        "after backward()."
    )


class CompiledBackward(Node):
    """The backward of a scripted call: the compiled backward graph over the saved values."""

    __slots__ = ("graphs", "inputs", "out_meta", "result_versions", "saved", "versions", "xp")

    def __init__(self, graphs: SplitGraphs, inputs: list, saved: list, xp):
        self.pre_hooks = None
        self.sequence_nr = next_sequence_nr()
        self.graphs = graphs
        self.inputs = inputs  # kept for create_graph's recomputation
        self.versions = [t._version[0] for t in inputs]
        self.saved = saved
        self.xp = xp
        self.next_functions = tuple([edge_of(inputs[i]) for i in graphs.diff_inputs])
        self.out_meta: list = []
        self.result_versions = ()  # (index, version cell, version) of the saved results

    def name(self) -> str:
        return "CompiledFunctionBackward"

    def num_outputs(self) -> int:
        return len(self.out_meta)

    def output_meta(self, i):
        return self.out_meta[i]

    def release(self) -> None:
        self.saved = None

    def apply(self, grads: list) -> list:
        from .._tensor.factories import zeros

        grads = [g if g is not None else zeros(*meta[:1], dtype=meta[1], device=meta[2])
                 for g, meta in zip(grads, self.out_meta)]
        if grad_mode.state.enabled:
            return self._recompute(grads)
        if self.saved is None:
            raise runtime_error(_FREED_MESSAGE)
        self._check_inputs(saved_only=True)
        for j, cell, v in self.result_versions:
            if cell[0] != v:
                raise _modified(f"result {j}", cell[0], v)
        arrays = [g._data if g._dtype is meta[1] else g.to(meta[1])._data
                  for g, meta in zip(grads, self.out_meta)]
        outs = iter(self.graphs.backward(self.xp, arrays + list(self.saved)))
        from .script import _wrap

        return [_wrap(next(outs)) if present else None for present in self.graphs.has_grad]

    def _check_inputs(self, saved_only: bool) -> None:
        """Raise where an input changed in place since the call (saved_only: an input whose
        memory a saved value shares): eager autograd raises there, and the backward would
        read the new values. The inputs the call itself wrote are left out. The compiled
        backward also checks the results it saved (result_versions)."""
        written = self.graphs.written
        for i, (t, v) in enumerate(zip(self.inputs, self.versions)):
            if (t._version[0] != v and i not in written
                    and (not saved_only or self._reads(t._data))):
                raise _modified(f"[ember.{t._dtype.name} {list(t.shape)}], an input",
                                t._version[0], v)

    def _reads(self, array) -> bool:
        may_share = self.xp.may_share_memory
        return any(may_share(array, s) for s in self.saved)

    def _recompute(self, grads: list) -> list:
        """create_graph: the forward again, op by op under autograd, differentiated."""
        from ..autograd.engine import partial_grad

        self._check_inputs(saved_only=False)
        results = self.graphs.replay(self.inputs)
        outputs = [results[j] for j in self.graphs.diff_outputs]
        wanted = [self.inputs[i] for i in self.graphs.diff_inputs]
        return list(partial_grad(outputs, wanted, grads, create_graph=True))
