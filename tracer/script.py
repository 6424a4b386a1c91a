"""ember.script: capture a function or module into graphs guarded by everything they assumed.

The first call with a new combination of argument structure, shapes, dtypes, devices,
requires_grad, grad mode, module modes and non-tensor argument values runs eagerly while the
tracer records it; later calls with the same combination run the recorded graph, then check
the values the Python code had read (bool(), item(), ...) before anything is written back or
returned. A failed guard retraces, and says which fact changed. Past max_specializations, or
when recording had to stop, the function runs eagerly with one warning giving the reason and
line; strict=True raises instead.
"""

from __future__ import annotations

import functools
import inspect
import operator
import threading
import types
import warnings

import numpy as np

from .. import _tensor
from .._log import log
from .._tensor import autocast, hooks
from .._tensor.tensor import META_EPOCH
from ..autograd import grad_mode
from ..errors import EmberError, EmberRuntimeError, user_frame
from ..ir.dtypes import _BY_NP, from_numpy
from ..ir.dtypes import dtype as DType
from ..ir.passes import run_pipeline
from ..runtime import random
from ..runtime.compiled import build_program
from ..runtime.device import CPU, array_module, device_of_array
from ..runtime.device import device as Device
from ..runtime.graph_entry import build_entry_program
from ..runtime.program import evaluate_with_kernels
from .compiled_autograd import one_result_call, run_split
from .dynamic import dims_to_trace, make_dynamic
from .guards import (
    _UNGUARDED,
    CallKey,
    GradType,
    ModuleState,
    OptimizerState,
    SameTensor,
    TensorLeaf,
    _grad_text,
    _outside_names,
    _tensor_differences,
    alias_pattern,
    aliases_in_words,
    free_values,
    leaf_record,
    overlapping,
    overlaps_any,
    tensor_leaves,
)
from .pytree import flatten, unflatten
from .reach import Reach
from .tracer import Trace, read_value, tracing

_FACTS = operator.attrgetter("_dtype", "_device", "_requires_grad")
_DATA = operator.attrgetter("_data")
_SHAPE = operator.attrgetter("shape")


class GuardFailed(Exception):
    """A value guard did not hold on this call (internal: the call retraces)."""


class ScriptFallback(EmberRuntimeError):
    """strict=True and the function could not run as a captured graph."""


class Specialization:
    """One recorded graph and the facts it holds under."""

    def __init__(self, key: CallKey, names):
        self.key = key
        self.names = names
        self.eager_reason: str | None = None
        self.graph = None  # the optimized graph Program runs (what fn.graph shows)
        self.recorded = None  # the graph as recorded, which replay under autograd runs
        self.program = None
        self.input_leaves: list[int] = []  # which argument leaves are graph inputs, in order
        self.captured: list = []  # tensors from outside, fed after the arguments
        self.captured_keys: tuple = ()  # their TensorLeaf records
        # per captured tensor (dtype, device, requires_grad), and its shape, as traced
        self._captured_facts: tuple = ((), ())
        self._captured_epoch = -1  # META_EPOCH when they were last found to hold
        self.mutated: list = []  # ("leaf", i) or ("captured", tensor), in graph-output order
        self.value_guards: list = []
        self.out_spec = None
        # per result leaf: ("tensor",) a graph output, ("value", v) a Python value, or
        # ("leaf", i) / ("captured", t): a tensor from outside, returned as the same object
        self.out_template: list = []
        self.n_results = 0
        self.calls = 0
        self._plain = None  # see _is_plain, decided on the first run
        self._direct = None  # see _direct_call, decided on the first plain run
        self._one_result = None  # see _one_result_call, decided on the first plain run
        self._constants = None
        self.no_grad_nodes: set = set()  # nodes replay runs under no_grad, as the trace did
        # graph inputs after the arguments: ("captured", tensor) or ("grad", tensor) (the
        # tensor's .grad at the call's start)
        self.sources: list = []
        self.grad_guards: list = []  # (tensor, GradType of its .grad at start, or None)
        self.grad_writes: list = []  # (tensor, wrote a tensor?) in graph-output order
        self.self_contained = False  # ran backward() inside: runs without autograd recording
        # nothing the call returns or writes carries autograd history (its ops ran under
        # no_grad, as an optimizer's step does): runs without autograd recording too
        self.no_history = False
        self.grad_results: list = []  # results that required grad (in a self-contained step)
        self.split = None  # compiled forward + backward for calls autograd records
        self.reached: list = []  # reach.Guard per value reached beyond the arguments
        self.stores: list = []  # reach.Store per Python store the call made, replayed
        self.draws = False  # the graph draws random numbers and has value guards
        # argument leaves of a whole training step that it used only through detach() (an
        # LSTM's carried hidden state): their requires_grad changes nothing the step does, so
        # keys that differ from `key` only there are this specialization's too (`also`)
        self.grad_free: frozenset = frozenset()
        self.also: list = []
        # the graph holds for this key's argument aliasing only (alias_pattern): it was traced
        # with one tensor passed twice (one value for both), or it writes into an argument
        self.alias_sensitive = False
        # (argument leaf, tensor from outside) pairs that were one memory as traced: the trace
        # took them for one value, so the (eager) specialization serves only such calls
        self.outside_aliases: list = []
        # the tensors from outside the graph reads or writes, where it writes anything: a call
        # passing one of them (or a view) as an argument must not run it
        self.outside_written: list = []

    # -- checking ----------------------------------------------------------------------------

    def captured_hold(self) -> bool:
        """Whether the tensors from outside still have the shape, dtype, device and
        requires_grad the graph was traced with (their TensorLeaf): compared as whole tuples
        read in C (attrgetter over the list), then record by record where they differ. While
        no tensor's metadata changed since they last held (META_EPOCH), they still hold."""
        epoch = META_EPOCH[0]
        if epoch == self._captured_epoch:
            return True
        if self._captured_facts_hold():
            self._captured_epoch = epoch
            return True
        return False

    def _captured_facts_hold(self) -> bool:
        captured = self.captured
        facts, shapes = self._captured_facts
        if tuple(map(_FACTS, captured)) == facts and tuple(map(_SHAPE, map(_DATA, captured))) \
                == shapes:
            return True
        # equal but distinct objects (a dtype, a device) are compared fully
        return tuple(leaf_record(t) for t in captured) == self.captured_keys

    def matches(self, key: CallKey) -> bool:
        if self.key is key or self.key == key:
            return True
        if not self.grad_free:
            return False
        if any(k is key for k in self.also) or key in self.also:
            return True
        if not self._grad_free_only(key):
            return False
        if len(self.also) < 8:
            self.also.append(key)
        return True

    def own_key(self, key: CallKey) -> CallKey:
        """The key this specialization holds that equals key (its own, or one of `also`),
        which later calls with the same facts then match by identity."""
        if self.key is key or not self.also:
            return self.key
        return next((k for k in self.also if k is key or k == key), self.key)

    def _grad_free_only(self, key: CallKey) -> bool:
        """Whether key differs from this specialization's only in the requires_grad of
        argument leaves in grad_free."""
        mine = self.key
        if not mine.same_but_leaves(key):
            return False
        for i, (a, b) in enumerate(zip(mine.leaves, key.leaves)):
            if a is b or a == b:
                continue
            if (i not in self.grad_free or not isinstance(a, TensorLeaf)
                    or not isinstance(b, TensorLeaf)
                    or (a.shape, a.dtype, a.device) != (b.shape, b.dtype, b.device)):
                return False
        return True

    def grad_changes(self) -> list[str]:
        """How the .grad of the tensors this graph reads differs from what it was traced
        with (empty when every grad guard holds)."""
        out = []
        for tensor, meta in self.grad_guards:
            grad = tensor._grad
            held = grad is None if meta is None else meta.holds(grad)
            if held:
                continue
            out.append(f".grad of a tensor of shape {list(tensor.shape)}: "
                       f"{_grad_text(meta)} -> {_grad_text(GradType.of(grad))}")
        return out

    # -- running ------------------------------------------------------------------------------

    def run(self, leaves):
        one = self._one_result
        if one:  # see _one_result_call
            self.calls += 1
            return one(leaves)
        direct = self._direct
        if direct:  # see _direct_call
            sources, make = direct
            arrays = [leaves[i]._data for i in self.input_leaves]
            arrays += [t._data for t in sources]
            self.calls += 1
            return make(self.program(np, arrays))
        inputs = [leaves[i] for i in self.input_leaves]
        if self.sources:
            inputs += [t if kind == "captured" else t._grad for kind, t in self.sources]
        records = False
        if grad_mode.state.enabled and not self.self_contained and not self.no_history:
            for t in inputs:
                if t._requires_grad:
                    records = True
                    break
        if not records:
            outs = self._execute(inputs)
        elif self.split is not None:
            dev = inputs[0]._device if inputs else CPU
            outs = run_split(self.split, inputs, np if dev is CPU else array_module(dev), _wrap)
        else:
            outs = self._replay(inputs)
        plain = self._plain
        if plain is None:
            plain = self._plain = self._is_plain()
        if plain:  # results only, each a fresh tensor: nothing to check or write back
            if direct is None:
                self._direct = () if records else self._direct_call(inputs, outs)
            if self._one_result is None:
                self._one_result = (self._one_result_call(inputs, outs)
                                    if records and self.split is not None else False)
            self.calls += 1
            if self.out_spec.kind == "leaf":
                value = outs[0]
                return value if isinstance(value, _tensor.Tensor) else _wrap(value)
            return unflatten([v if isinstance(v, _tensor.Tensor) else _wrap(v) for v in outs],
                             self.out_spec)
        results = outs[: self.n_results]
        states = outs[self.n_results : self.n_results + len(self.mutated)]
        n_grads = sum(wrote for _, wrote in self.grad_writes)
        start = self.n_results + len(self.mutated)
        grads = iter(outs[start : start + n_grads])
        guards = outs[start + n_grads :]
        for guard, value in zip(self.value_guards, guards):
            got = read_value(guard.kind, _host(value))
            if got != guard.expected:
                raise GuardFailed(guard.describe(got))
        for (kind, target), value in zip(self.mutated, states):
            tensor = leaves[target] if kind == "leaf" else target
            data = value._data if isinstance(value, _tensor.Tensor) else value
            if data is not tensor._data:  # else the program wrote into it already
                tensor._data[...] = data
            tensor._version[0] += 1
            if isinstance(value, _tensor.Tensor) and value._requires_grad:
                # as eager's in-place write: the state now carries the written value's history
                tensor._grad_fn, tensor._output_nr = value._grad_fn, value._output_nr
                tensor._requires_grad = True
        for tensor, wrote in self.grad_writes:
            if not wrote:
                tensor._grad = None
                continue
            value = next(grads)
            tensor._grad = (value.detach() if isinstance(value, _tensor.Tensor)
                            else _wrap(value))
        self.calls += 1
        it = iter(results)
        filled = []
        for kind, *target in self.out_template:
            if kind == "value":
                filled.append(target[0])
                continue
            value = next(it)
            if kind == "leaf":
                filled.append(leaves[target[0]])
            elif kind == "captured":
                filled.append(target[0])
            else:
                filled.append(value if isinstance(value, _tensor.Tensor) else _wrap(value))
        for k in self.grad_results:
            # a whole step ran without recording autograd: a result that required grad in
            # eager (an LSTM's hidden state, its graph spent by the backward) still says so
            filled[k]._requires_grad = True
        return unflatten(filled, self.out_spec)

    def _direct_call(self, inputs, outs) -> tuple:
        """(tensors from outside, results from the program's arrays) for later calls of a
        plain specialization that autograd does not record, on the CPU, fed by arguments
        and tensors from outside only: such a call hands the program their arrays and wraps
        what it returns, nothing more; () where that does not hold. Whether autograd records
        stays as this call found it: grad mode and every input's requires_grad are guarded
        (the arguments by the call key, the outside tensors by captured_hold)."""
        if (any(kind != "captured" for kind, _ in self.sources)
                or any(t._device is not CPU for t in inputs)
                or any(o.__class__ is not np.ndarray for o in outs)):
            return ()
        sources = [t for _, t in self.sources]
        spec = self.out_spec
        if spec.kind == "leaf":
            dtype, make_tensor = _BY_NP.get(outs[0].dtype), _tensor.Tensor._make
            if dtype is None:
                return ()
            return sources, lambda arrays: make_tensor(arrays[0], dtype, CPU)
        return sources, lambda arrays: unflatten([_wrap(a) for a in arrays], spec)

    def _one_result_call(self, inputs, outs):
        """For later calls of a plain specialization that autograd records through its split,
        on the CPU, fed by its arguments alone (as they are) and returning one tensor: the
        split's forward and its backward node, without run()'s general steps
        (compiled_autograd.one_result_call); False where that does not hold. Autograd records
        every later call as it did this one: grad mode and the arguments' requires_grad are
        in the call key."""
        if (self.sources or self.out_spec.kind != "leaf" or len(outs) != 1
                or self.input_leaves != list(range(len(self.names)))
                or any(t._device is not CPU for t in inputs)
                or outs[0].__class__ is not _tensor.Tensor
                or outs[0]._data.__class__ is not np.ndarray):
            return False
        dtype = _BY_NP.get(outs[0]._data.dtype)
        if dtype is None:
            return False
        return one_result_call(self.split, _tensor.Tensor._make, dtype, CPU, np) or False

    def _is_plain(self) -> bool:
        """Whether a call only returns graph outputs: no state written back, no grads, no
        value guards, every result a tensor the graph computed."""
        return (not self.mutated and not self.grad_writes and not self.value_guards
                and all(kind == "tensor" for kind, *_ in self.out_template)
                and len(self.out_template) == self.n_results)

    def _execute(self, inputs):
        dev = inputs[0]._device if inputs else CPU
        xp = np if dev is CPU else array_module(dev)
        return self.program(xp, [t._data for t in inputs])

    def _replay(self, inputs):
        """Run the graph op by op through dispatch, so autograd records it as eager would."""
        from .._tensor.factories import tensor as make_tensor

        graph = self.recorded
        env = dict(zip(graph.inputs, inputs))
        if self._constants is None:
            self._constants = {c: make_tensor(c.constant) for c in graph.constants}
        env.update(self._constants)
        for node in graph.nodes:
            args = tuple(env[x] if not isinstance(x, (bool, int, float)) else x
                         for x in node.inputs)
            if node in self.no_grad_nodes:
                with grad_mode.no_grad():
                    out = _tensor.dispatch(node.op, args, node.attrs)
            else:
                out = _tensor.dispatch(node.op, args, node.attrs)
            outs = out if isinstance(out, tuple) else (out,)
            env.update(zip(node.outputs, outs))
        return [env[v] for v in graph.outputs]


def _object_defaults(signature) -> tuple:
    """(position or None, name, default) of each parameter whose default is an object, not a
    simple value (None, a number, a string, a tuple of them), that a call may pass by name."""
    if signature is None:
        return ()
    found = []
    for position, (name, param) in enumerate(signature.parameters.items()):
        if param.default is inspect.Parameter.empty or _simple(param.default):
            continue
        if param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            found.append((position, name, param.default))
        elif param.kind is inspect.Parameter.KEYWORD_ONLY:
            found.append((None, name, param.default))
    return tuple(found)


def _simple(value) -> bool:
    """Whether a default holds no state a graph could bake in: a plain value, a dtype or
    device, a function or class (a module or optimizer is neither)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, DType,
                                           Device, type, types.FunctionType,
                                           types.BuiltinFunctionType, np.ufunc)):
        return True
    return isinstance(value, (tuple, frozenset)) and all(_simple(v) for v in value)


def _refuse_writes_to_overlaps(recording, leaves, aliases, names) -> None:
    """Stop a recording that wrote in place into an argument sharing memory with another
    argument object (a tensor and its view, two views of one tensor): the graph holds them as
    two values, so eager's write through one would not reach the other. (One object passed
    twice is one traced value, which the trace follows.)"""
    written = {id(t) for t in recording.mutated.values()}
    for i, j, same in aliases:
        if not same and (id(leaves[i]) in written or id(leaves[j]) in written):
            recording.stop(f"an in-place write to {names[i]} or {names[j]}, which share "
                           f"memory (as a tensor and its view): the graph would hold them as "
                           f"two values")
            return


def _refuse_outside_aliases(sp, recording, leaves, outside) -> None:
    """Stop a recording whose arguments share memory with a tensor the function reads from
    outside (`f(w)` where f also reads the global w, `model(model.weight)`): the trace took
    them for one value, and a graph of that would compute with the argument where a later
    call's function reads the outside tensor. The specialization left runs eagerly and serves
    only calls aliased as this one (Specialization.outside_aliases)."""
    pairs = [(i, label, t) for label, t in outside for i, x in enumerate(leaves)
             if isinstance(x, _tensor.Tensor) and overlapping(x, t)]
    if pairs:
        sp.outside_aliases = [(i, t) for i, _, t in pairs]
        i, label, _ = pairs[0]
        recording.stop(f"{sp.names[i]} shares memory with {label}, which the function also "
                       f"reads: the graph would take them for one value")


def _first_change(guards) -> str | None:
    for guard in guards:
        change = guard.change()
        if change is not None:
            return change
    return None


_TENSOR_ARGS: dict = {}  # number of tensor-only positional arguments -> their Spec


def _host(value):
    data = value._data if isinstance(value, _tensor.Tensor) else value
    return data if isinstance(data, np.ndarray) else data.get()


def _wrap(array):
    dtype = _BY_NP.get(array.dtype) or from_numpy(array.dtype)
    device = CPU if array.__class__ is np.ndarray else device_of_array(array)
    return _tensor.Tensor._make(array, dtype, device)


class ScriptFunction:
    """The callable ember.script returns for a function."""

    def __init__(self, fn, *, strict: bool = False, max_specializations: int = 8,
                 state_key=None, name: str | None = None, signature_of=None,
                 dynamic: bool | None = None, quiet: bool = False, state_covers=None):
        functools.update_wrapper(self, fn)
        self.quiet = quiet  # fallbacks are logged, not warned (ember's own compiled paths)
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", "fn")
        self._profiled = False  # inside its own profiler range (__call__)
        self.strict = strict
        self.max_specializations = max_specializations
        self.dynamic = dynamic  # None: sizes become dynamic after a size-only retrace
        self.specializations: list[Specialization] = []
        self.recompiles: list[str] = []
        self.fallbacks: list[str] = []
        self.gave_up: str | None = None
        self._last_key: CallKey | None = None  # of the specialization the last call ran
        self._fast = None  # (specialization, its key): see __call__
        self._ran = threading.local()  # .sp: the specialization this thread's call last ran
        self._state_key = state_key or functools.partial(free_values, fn)
        # the module whose whole module_state() state_key holds (a ScriptModule's): the guard
        # Reach would add on it as the bound `self` checks the same facts again
        self._state_covers = state_covers
        try:
            signature = inspect.signature(signature_of or fn)
        except (TypeError, ValueError):
            signature = None
        self._params = [] if signature is None else list(signature.parameters)
        self._object_defaults = _object_defaults(signature)

    # -- the call ------------------------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        if hooks.active_trace is not None and hooks.trace_here() is not None:
            return self.fn(*args, **kwargs)  # called while tracing another function: inline it
        if hooks.op_profiler is not None and not self._profiled:
            # a profile sees the compiled program as one range (its ops run natively)
            self._profiled = True
            try:
                with hooks.op_profiler.range(f"ember.script: {self.name}"):
                    return self(*args, **kwargs)
            finally:
                self._profiled = False
        if self._object_defaults:
            args, kwargs = self._with_defaults(args, kwargs)
        fast = self._fast
        if fast is not None and not kwargs:
            # the specialization the last call ran, when it only hands arrays to its program
            # (Specialization._direct_call): the same guards as below, checked in a line
            sp, key = fast
            records = tensor_leaves(args)
            if (records is not None and records == key.leaves
                    and (len(args) < 2 or alias_pattern(args) is None)
                    and grad_mode.state.enabled is key.grad_enabled and not autocast.enabled
                    and self._state_key() == key.state and sp.captured_hold()
                    and (not sp.reached or _first_change(sp.reached) is None)):
                sources, make = sp._direct
                arrays = [x._data for x in args]
                arrays += [t._data for t in sources]
                sp.calls += 1
                return make(sp.program(np, arrays))
        self._fast = None
        leaves, spec, key = self.guard_key(args, kwargs)
        if self.gave_up is not None:
            return self.fn(*args, **kwargs)
        failure = None
        grad_failure = None
        for sp in self.specializations:
            if not sp.matches(key) or not sp.captured_hold():
                continue
            if sp.alias_sensitive and sp.key.aliases != key.aliases:
                continue
            if sp.outside_aliases:
                if not all(overlapping(leaves[i], t) for i, t in sp.outside_aliases):
                    continue
            elif sp.outside_written and overlaps_any(leaves, sp.outside_written):
                continue
            if sp.reached:
                change = _first_change(sp.reached)
                if change is not None:  # the latest such specialization's, the nearest
                    grad_failure = change
                    continue
            self._last_key = sp.own_key(key)
            if sp.grad_guards:
                changes = sp.grad_changes()
                if changes:
                    grad_failure = grad_failure or "; ".join(changes)
                    continue
            if sp.eager_reason is not None:
                return self.fn(*args, **kwargs)
            drawn = sp.draws and random.stream_state()
            self._ran.sp = sp
            try:
                out = sp.run(leaves)
            except GuardFailed as exc:
                failure = str(exc)
                if drawn:  # the retrace draws the numbers this run drew, as eager would
                    random.restore_stream_state(drawn)
                continue
            if sp.stores:  # the Python stores the traced call made, with this call's values
                out, values = out
                for store, value in zip(sp.stores, values):
                    store.apply(value)
            elif (sp._direct and not sp.grad_guards and not sp.draws and not kwargs
                  and key.structure is _TENSOR_ARGS.get(len(args))
                  and sp.input_leaves == list(range(len(args)))
                  and isinstance(key.grad_enabled, bool) and key.aliases is None):
                self._fast = (sp, self._last_key)
            return out
        if failure is None:
            failure = grad_failure or self._why_new(key)
        return self._retrace(args, kwargs, leaves, spec, key, failure)

    def _with_defaults(self, args, kwargs) -> tuple:
        """(args, kwargs) with every object default the call leaves out (a `model=model` or
        `opt=opt` of the function's signature) passed explicitly, after the arguments where
        it comes next, else by name: the graph reads such a default as it reads an argument,
        so it is guarded as one (an optimizer's state, a module's parameters), where a
        default read unguarded ran a graph traced on the optimizer's first step with the step
        count of that step baked in."""
        added = None
        for position, name, value in self._object_defaults:
            if (position is not None and position < len(args)) or name in kwargs:
                continue
            if position is not None and position == len(args) and added is None:
                args = (*args, value)
                continue
            if added is None:
                added = dict(kwargs)
            added[name] = value
        return args, kwargs if added is None else added

    def guard_key(self, args, kwargs):
        """(argument leaves, their structure, the CallKey every guard but value reads
        checks)."""
        records = None if kwargs else tensor_leaves(args)
        if records is not None:
            # the common call, tensors only: the structure depends on their number alone
            leaves = list(args)
            spec = _TENSOR_ARGS.get(len(args))
            if spec is None:
                spec = _TENSOR_ARGS[len(args)] = flatten((args, kwargs))[1]
        else:
            leaves, spec = flatten((args, kwargs))
            records = tuple([leaf_record(x) for x in leaves])
        mode = grad_mode.state.enabled
        if autocast.enabled:  # a graph holds the casts autocast made: a guard on its state
            mode = (mode, tuple(sorted((k, d.name) for k, d in autocast.enabled.items())))
        aliases = alias_pattern(leaves) if len(leaves) > 1 else None
        facts = (spec, records, mode, self._state_key(), aliases)
        last = self._last_key
        # a call with the facts of the last one that ran a graph (the usual case) takes that
        # specialization's own key, which it then matches by identity (the tuples compare
        # item by item, by identity first: equal leaves are one record, see guards._shared)
        if last is not None and facts == (last.structure, last.leaves, last.grad_enabled,
                                          last.state, last.aliases):
            return leaves, spec, last
        return leaves, spec, CallKey(*facts)

    def _why_new(self, key) -> str | None:
        if not self.specializations:
            return None
        # the nearest specialization (same structure, fewest changes, the latest on a tie)
        # says best what changed
        nearest = min(reversed(self.specializations),
                      key=lambda sp: (sp.key.structure != key.structure,
                                      len(self._differences(sp.key, key))))
        differences = self._differences(nearest.key, key)
        if not differences:
            differences = self._captured_differences(key)
        return "; ".join(differences) or "a captured tensor changed"

    def _captured_differences(self, key) -> list[str]:
        """How the tensors from outside changed since the specialization with this key."""
        for sp in self.specializations:
            if sp.key != key or sp.captured_hold():
                continue
            names = _outside_names(self.fn)
            out = []
            for i, (tensor, old) in enumerate(zip(sp.captured, sp.captured_keys)):
                new = leaf_record(tensor)
                if new != old:
                    name = names.get(id(tensor), f"captured tensor {i}")
                    out += _tensor_differences(name, old.describe(), new.describe())
            return out
        return []

    def _differences(self, old: CallKey, new: CallKey) -> list[str]:
        if old.structure != new.structure:
            before, after = old.structure.describe(), new.structure.describe()
            return [f"argument structure: {before} -> {after}"]
        out = []
        names = self._leaf_names(new.structure)
        for name, a, b in zip(names, old.leaves, new.leaves):
            if a == b:
                continue
            if isinstance(a, TensorLeaf) and isinstance(b, TensorLeaf):
                out += _tensor_differences(name, a.describe(), b.describe())
            else:
                out.append(f"{name}: {a.in_words()} -> {b.in_words()}")
        if old.grad_enabled != new.grad_enabled:
            out.append(f"grad mode: {old.grad_enabled} -> {new.grad_enabled}")
        if old.state != new.state:
            out.append(self._describe_state(old.state, new.state))
        if old.aliases != new.aliases:
            out.append(f"{aliases_in_words(old.aliases, names)} -> "
                       f"{aliases_in_words(new.aliases, names)}")
        return out

    @staticmethod
    def _describe_state(old, new) -> str:
        pairs = old or new
        if pairs and isinstance(pairs[0], tuple) and len(pairs[0]) == 2:
            before, after = dict(old), dict(new)
            changed = []
            for name in [*before, *(n for n in after if n not in before)]:
                a, b = before.get(name, _UNGUARDED), after.get(name, _UNGUARDED)
                if a == b:
                    continue
                if a is _UNGUARDED or b is _UNGUARDED:
                    changed.append(f"{name}: {'added' if a is _UNGUARDED else 'removed'}")
                elif isinstance(a, SameTensor) and isinstance(b, SameTensor):
                    changed.append(f"{name}: replaced by another tensor")
                elif isinstance(a, OptimizerState) and isinstance(b, OptimizerState):
                    changed.append(f"{name}: {b.change_from(a)}")
                elif isinstance(a, ModuleState) and isinstance(b, ModuleState):
                    changed.append(f"{name}: "
                                   f"{ScriptFunction._describe_state(a.entries, b.entries)}")
                else:
                    changed.append(f"{name}: {a!r} -> {b!r}")
            return "; ".join(changed) or "the globals and closure variables it reads changed"
        return "module state (training mode, parameters or attributes): changed"

    def _leaf_names(self, spec) -> list[str]:
        names: list[str] = []

        def walk(s, prefix):
            if s.kind == "leaf":
                names.append(prefix)
            elif s.kind == "dict":
                for k, c in zip(s.meta, s.children):
                    walk(c, f"{prefix}[{k!r}]")
            else:
                for i, c in enumerate(s.children):
                    walk(c, f"{prefix}[{i}]")

        args_spec, kwargs_spec = spec.children
        for i, child in enumerate(args_spec.children):
            walk(child, self._params[i] if i < len(self._params) else f"args[{i}]")
        for k, child in zip(kwargs_spec.meta, kwargs_spec.children):
            walk(child, k)
        return names

    # -- tracing ---------------------------------------------------------------------------------

    def _retrace(self, args, kwargs, leaves, spec, key, failure):
        name = self.name
        if failure is not None:
            self.recompiles.append(failure)
            log("guards", f"{name}: guard failed: {failure}")
        if len(self.specializations) >= self.max_specializations:
            reason = (f"{len(self.specializations)} specializations (max_specializations) "
                      f"reached; last change: {failure}")
            return self._fall_back(reason, args, kwargs, give_up=True)
        if failure is not None:
            log("recompiles", f"{name}: retracing because {failure}")
        sp = Specialization(key, self._leaf_names(spec))
        recording = Trace(name)
        dims = dims_to_trace(self, key, failure)
        for i, x in enumerate(leaves):
            if isinstance(x, _tensor.Tensor):
                recording.add_input(x, f"arg{i}", dims.get(i, ()))
                sp.input_leaves.append(i)
        reach = Reach(self.fn, leaves, sp.names)
        reach.states_before()
        with tracing(recording), reach.watching():
            result = self.fn(*args, **kwargs)
        symbolic = None
        combined = result
        if recording.broken is None:
            reach.finish(self.fn)
            guards, covered = reach.guards(), self._state_covers
            sp.reached = [g for g in guards if not (
                covered is not None and g.kind == "module" and g.label == "self"
                and g.expected is covered)]
            sp.stores, refused = reach.stores(guards)
            if refused is not None:  # every later call would store again: stay eager
                recording.broken = refused
                self.gave_up = refused
            elif sp.stores:
                combined = (result, tuple(s.value for s in sp.stores))
        if recording.broken is None and key.aliases:
            _refuse_writes_to_overlaps(recording, leaves, key.aliases, sp.names)
        if recording.broken is None:
            _refuse_outside_aliases(sp, recording, leaves, reach.tensors())
        if recording.broken is None:
            out_leaves, sp.out_spec = flatten(combined)
            try:
                recording.outputs(out_leaves)
            except Exception as exc:  # an output the graph cannot return
                recording.stop(f"an output the graph cannot return ({exc})")
            if recording.sizes and recording.broken is None:
                symbolic = recording.finish_symbolic(out_leaves)
        if recording.broken is not None:
            sp.eager_reason = recording.broken
            # a call traced with arguments sharing memory may have stopped for that: calls
            # with distinct arguments trace their own graph
            sp.alias_sensitive = key.aliases is not None
            self.specializations.append(sp)
            self.fallbacks.append(recording.broken)
            log("breaks", f"{name}: runs eagerly: {recording.broken}")
            if self.strict:
                raise ScriptFallback(f"ember.script(strict=True): {name} cannot be captured: "
                                     f"{recording.broken}")
            if not self.quiet:
                warnings.warn(f"ember.script: {name} runs eagerly: {recording.broken}",
                              stacklevel=3)
            return result
        self._finish(sp, recording, out_leaves)
        self.specializations.append(sp)
        if symbolic is not None and recording.broken is None:
            dynamic = make_dynamic(self, sp, symbolic)
            log("recompiles", f"{name}: {dynamic.describe_dims(sp.names)} dynamic")
        log("graph", f"{name}: captured graph\n{sp.graph}")
        return result

    def _finish(self, sp, recording, out_leaves) -> None:
        # the recorded graph is what replay (under autograd) runs, node for node, with its
        # no_grad marks; calls that record no gradient run an optimized copy of it
        sp.recorded = recording.graph
        sp.graph = recording.graph.copy()
        run_pipeline(sp.graph, evaluate=evaluate_with_kernels)
        device = next((t._device for t in recording_inputs(recording)), None)
        sp.captured = [t for t, _ in recording.captured]
        sp.captured_keys = tuple(leaf_record(t) for t in sp.captured)
        sp._captured_facts = (tuple(map(_FACTS, sp.captured)),
                              tuple(map(_SHAPE, map(_DATA, sp.captured))))
        source_of = {v: ("captured", t) for t, v in recording.captured}
        source_of.update({v: ("grad", t) for t, v in recording.grad_inputs})
        n_args = len(sp.input_leaves)
        sp.sources = [source_of[v] for v in recording.graph.inputs[n_args:]]
        sp.grad_guards = [(t, GradType.of(g)) for t, g in recording.grad_reads.values()]
        sp.grad_writes = [(t, g is not None) for t, g in recording.grad_writes.values()]
        sp.self_contained = recording.ran_backward
        # eager would leave no history on anything it returns or writes, so there is nothing
        # for autograd to record: a scripted optimizer step ran op by op through dispatch
        # (replay) because its parameters require grad, 17 ms against eager's 1.1 for a GPT's
        sp.no_history = (
            not any(isinstance(x, _tensor.Tensor) and x._grad_fn is not None for x in out_leaves)
            and not any(t._grad_fn is not None for t in recording.mutated.values()))
        if sp.self_contained:
            sp.grad_free = frozenset(i for i, (t, _) in zip(sp.input_leaves, recording.inputs)
                                     if id(t) not in recording.used)
        leaf_of = {id(t): i for i, t in enumerate(recording_inputs(recording))}
        for tensor in recording.mutated.values():
            if id(tensor) in leaf_of:
                sp.mutated.append(("leaf", sp.input_leaves[leaf_of[id(tensor)]]))
            else:
                sp.mutated.append(("captured", tensor))
        sp.alias_sensitive = (any(kind == "leaf" for kind, _ in sp.mutated)
                              or any(same for _, _, same in sp.key.aliases or ()))
        if sp.mutated:
            sp.outside_written = [*sp.captured,
                                  *(t for kind, t in sp.mutated if kind == "captured")]
        sp.value_guards = list(recording.value_guards)
        sp.draws = bool(sp.value_guards) and any(n.schema.kind == "random"
                                                 for n in recording.graph.nodes)
        sp.no_grad_nodes = recording.no_grad_nodes
        captured = {id(t) for t in sp.captured}

        def template(x):
            # eager returns an argument (or outside tensor) as itself, written in place or not
            if not isinstance(x, _tensor.Tensor):
                return ("value", x)
            if id(x) in leaf_of:
                return ("leaf", sp.input_leaves[leaf_of[id(x)]])
            return ("captured", x) if id(x) in captured else ("tensor",)

        sp.out_template = [template(x) for x in out_leaves]
        if sp.self_contained:
            sp.grad_results = [k for k, (x, (kind, *_)) in enumerate(zip(out_leaves,
                                                                         sp.out_template))
                               if kind == "tensor" and x._requires_grad]
        sp.n_results = sum(t[0] != "value" for t in sp.out_template)
        # a state the call writes may be written straight into its own array, unless a value
        # guard checked after the run can still fail: then the retrace must find it unwritten
        donate = {}
        for m, (kind, target) in enumerate(sp.mutated if not sp.value_guards else ()):
            if kind == "leaf":
                donate[sp.n_results + m] = sp.input_leaves.index(target)
            else:
                positions = [k for k, src in enumerate(sp.sources) if src[1] is target
                             and src[0] == "captured"]
                if positions:
                    donate[sp.n_results + m] = len(sp.input_leaves) + positions[0]
        traced = [t for t, _ in recording.inputs]
        grads_read = {id(t): g for t, g in recording.grad_reads.values()}
        traced += [t if kind == "captured" else grads_read[id(t)] for kind, t in sp.sources]
        records = (grad_mode.state.enabled and not sp.self_contained and not sp.no_history
                   and any(t._requires_grad for t in traced))
        # a call autograd does not record runs the graph as one native entry where every
        # step has a native form (runtime/graph_entry.py), as a loaded graph does
        if records:
            sp.program = build_program(sp.graph, self.name, device, donate=donate)
        else:
            sp.program = build_entry_program(sp.graph, self.name, device, donate=donate,
                                             alias_inputs=True)
        if records:
            from .compiled_autograd import split

            results = [x for x in out_leaves if isinstance(x, _tensor.Tensor)]
            try:
                sp.split = split(sp, recording, traced, results, self.name, device)
            except EmberError as exc:  # the backward could not be captured: replay instead
                log("breaks", f"{self.name}: backward not compiled: {exc}")
            log("graph", f"{self.name}: backward compiled: {sp.split is not None}")

    def _fall_back(self, reason, args, kwargs, give_up=False):
        name = self.name
        where = user_frame()
        text = f"{reason} (called at {where})" if where else reason
        self.fallbacks.append(text)
        if self.strict:
            raise ScriptFallback(f"ember.script(strict=True): {name}: {text}")
        if give_up:
            self.gave_up = text
            if not self.quiet:
                warnings.warn(f"ember.script: {name} runs eagerly from now on: {text}",
                              stacklevel=3)
        log("breaks", f"{name}: runs eagerly: {text}")
        return self.fn(*args, **kwargs)

    # -- seeing what happened ----------------------------------------------------------------

    @property
    def graph(self):
        """The graph of the most recent captured specialization."""
        for sp in reversed(self.specializations):
            if sp.graph is not None:
                return sp.graph
        return None

    @property
    def graphs(self) -> list:
        return [sp.graph for sp in self.specializations if sp.graph is not None]

    @property
    def code(self) -> str:
        """The LLVM IR of the kernels of the most recent captured specialization ("" when it
        runs no native kernel)."""
        for sp in reversed(self.specializations):
            if sp.program is not None:
                return getattr(sp.program, "code", "")
        return ""

    def source(self, *args, backend: str = "llvm", **kwargs) -> str:
        """What would be compiled for these example inputs: the kernel specs and the LLVM IR
        (backend="llvm") or CUDA C (backend="cuda") of their kernels, on any machine, GPU or
        not. Runs the function once to capture it."""
        if backend not in ("llvm", "cuda"):
            raise EmberRuntimeError(
                f"source(): unknown backend {backend!r}; expected 'llvm' or 'cuda'"
            )
        from ..runtime.compiled import CompiledProgram
        from .tracer import trace

        graph = trace(lambda *a: self.fn(*a, **kwargs), tuple(args))
        run_pipeline(graph, evaluate=evaluate_with_kernels)
        program = CompiledProgram(graph, self.name, backend=backend)
        return program.describe() + "\n\n" + program.code

    def explain(self) -> str:
        name = self.name
        lines = [f"ember.script({name}): {len(self.graphs)} graph(s), "
                 f"{len(self.recompiles)} recompile(s), {len(self.fallbacks)} fallback(s)"]
        for k, sp in enumerate(self.specializations):
            if sp.eager_reason is not None:
                lines.append(f"  specialization {k}: eager: {sp.eager_reason}")
                continue
            kernels = getattr(sp.program, "kernel_count", 0)
            lines.append(f"  specialization {k}: {len(sp.graph.nodes)} ops, "
                         f"{len(sp.captured)} captured tensor(s), {sp.calls} cached call(s)")
            if kernels:  # a compiled program: its steps are ("native" | "eager", ...)
                eager = sum(1 for step in sp.program.steps if step[0] == "eager")
                lines.append(f"    compiled: {kernels} native kernel(s), {eager} eager step(s)")
            else:
                lines.append("    compiled: eager kernels only")
            dynamic = getattr(sp, "_dims_of_leaf", {})
            for i, (name_, leaf) in enumerate(zip(sp.names, sp.key.leaves)):
                described = leaf.describe()
                if i in dynamic:  # a dynamic size: any size of at least 2, equal per symbol
                    described["shape"] = tuple(f"{dynamic[i][d]} (>= 2)" if d in dynamic[i]
                                               else n for d, n in enumerate(described["shape"]))
                lines.append(f"    guard {name_}: {described}")
            for a, op, b, result, where in getattr(sp, "guards", ()):
                lines.append(f"    guard ({a} {op} {b}) is {result} at {where or '?'}")
            lines.append(f"    guard grad mode: {sp.key.grad_enabled}")
            for tensor, meta in sp.grad_guards:
                lines.append(f"    guard .grad of a tensor of shape {list(tensor.shape)}: "
                             f"{_grad_text(meta)}")
            if sp.self_contained:
                lines.append("    whole training step: backward() and .grad captured; runs "
                             "without recording autograd history")
            for guard in sp.value_guards:
                lines.append(f"    guard {guard.describe()}")
            for guard in sp.reached:
                lines.append(f"    guard {guard.describe()}")
            for store in sp.stores:
                lines.append(f"    replays the store to {store.label} ({store.op})")
        for r in self.recompiles:
            lines.append(f"  recompiled: {r}")
        for f in self.fallbacks:
            lines.append(f"  fell back: {f}")
        return "\n".join(lines)


def recording_inputs(recording: Trace) -> list:
    return [t for t, _ in recording.inputs]
