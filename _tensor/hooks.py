"""The tensor layer's side of capture: the protocol a trace implements, and where it plugs in.

The tensor layer never imports the tracer (tests/test_layering.py checks it). A trace
(tracer/tracer.py's Trace) implements TraceHooks and is opened on a thread with
begin_trace(); dispatch, the factories, indexing and the Tensor's own reads then tell it what
happens through the functions below. The compiler plugs in the same way: it registers a
CompositeCompiler (set_composite_compiler), which composites.py uses to run a large eager call
of softmax, layer_norm, batch_norm or cross_entropy as one compiled program.

Each thread records into its own trace, trace_here(). While any thread traces, active_trace
is the number of traces open (else None: the one check the hot paths make), and tracer_hook
routes every dispatched op to the calling thread's trace.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol


class TraceHooks(Protocol):
    """What a trace hears from the tensor layer, and the two questions it answers."""

    # symbol -> size of the symbolic sizes it traces with (empty: every size is exact)
    sizes: dict

    def record(self, op: str, inputs: tuple, attrs: dict, out) -> None:
        """A dispatched op ran: inputs (tensors and numbers) and attrs gave out."""

    def infer_concrete(self, infer: Callable, inputs: tuple, attrs: dict) -> tuple:
        """(output types, attrs) of a call under symbolic sizes: the type rule run on this
        call's plain numbers, and the attrs with every symbolic size a plain int."""

    def read_shape(self, tensor, dim: int | None, by_ember: bool) -> tuple:
        """tensor's sizes as read by ember's own code (by_ember: symbolic sizes stay
        symbolic) or by the user's (the sizes read, all or only `dim`, become exact)."""

    def layout_read(self) -> None:
        """A tensor's strides or contiguity was read: they follow from every size."""

    def specialize(self, value) -> None:
        """The symbolic sizes in value (numbers, sequences, dicts) become exact: a factory's
        arguments or an index list, which a graph holds as constants."""

    def read(self, tensor, kind: str, value) -> None:
        """The Python code read tensor's value (kind: item, bool, int, float, tolist)."""

    def read_grad(self, tensor):
        """tensor.grad as this trace sees it (state: an input of the call, or what the call
        wrote into it)."""

    def write_grad(self, tensor, grad) -> None:
        """tensor.grad = grad."""

    def alias(self, source, alias) -> None:
        """alias shares source's storage (detach)."""

    def grad_facts_read(self, tensor) -> None:
        """The code read tensor's requires_grad, is_leaf or grad_fn."""

    def written(self, tensor, result) -> None:
        """tensor was written in place with result's value."""

    def factory(self, tensor, random: bool, what: str) -> None:
        """A factory made tensor: a constant of the graph (or random numbers, `what`)."""

    def stop(self, reason: str) -> None:
        """The code did something no graph can hold; recording stops (eager fallback)."""


class CompositeCompiler(Protocol):
    def __call__(self, fn: Callable, name: str) -> Callable:
        """fn (primitive code) compiled as a quiet script: a call it cannot capture runs
        eagerly without a warning. The script may offer known(args): the call's result from
        a specialization made before, or None (composites.py tries it first)."""


# the running profile (autograd/profiler.py), whose time_op each dispatch goes through; None
# when no profile is on (the one check dispatch makes)
op_profiler: Any = None
tracer_hook: Callable | None = None
active_trace: int | None = None
_tracing = threading.local()
_tracing_lock = threading.Lock()
_composite_compiler: CompositeCompiler | None = None


def trace_here() -> TraceHooks | None:
    """The trace recording on this thread, or None: a trace started by another thread hears
    nothing this thread does."""
    return getattr(_tracing, "trace", None)


def _record_here(op, inputs, attrs, out) -> None:
    trace = getattr(_tracing, "trace", None)
    if trace is not None:
        trace.record(op, inputs, attrs, out)


def begin_trace(trace: TraceHooks) -> None:
    """Route this thread's tensor events to trace until end_trace()."""
    global active_trace, tracer_hook
    _tracing.trace = trace
    with _tracing_lock:
        active_trace = (active_trace or 0) + 1
        tracer_hook = _record_here


def end_trace() -> None:
    global active_trace, tracer_hook
    _tracing.trace = None
    with _tracing_lock:
        active_trace = (active_trace - 1) or None
        if active_trace is None:
            tracer_hook = None


def stop_trace(reason: str) -> None:
    """Tell this thread's trace, if any, that recording must stop, and why."""
    trace = trace_here() if active_trace is not None else None
    if trace is not None:
        trace.stop(reason)


def specialize(value: Any) -> None:
    """Make the symbolic sizes in value exact, if this thread traces."""
    trace = trace_here() if active_trace is not None else None
    if trace is not None:
        trace.specialize(value)


def set_composite_compiler(compiler: CompositeCompiler | None) -> None:
    """Register the compiler that composites.py runs large eager calls through."""
    global _composite_compiler
    _composite_compiler = compiler


def composite_compiler() -> CompositeCompiler | None:
    return _composite_compiler
