"""The profiler: torch.autograd.profiler's profile and record_function (ember.profiler adds
torch.profiler's schedule and trace handlers on top).

While a profile is on, every op dispatch runs (eager ops, and each backward node's ops, under
an "autograd::engine::evaluate_function: <Node>" range) is timed on the calling thread, and
record_function marks a named range around user code. An event's self time is its time less
its children's; key_averages() groups events by name (and by input shapes with
record_shapes), and table() prints them as PyTorch does. A compiled program (ember.script)
runs as one native call, so its ops are not seen one by one: a record_function around the
call names its time. When no profile is on, dispatch pays one attribute check."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from .._tensor import hooks
from ..errors import runtime_error, value_error


@dataclass
class FunctionEvent:
    """One timed op or range: start and end in microseconds since the profile began."""

    name: str
    start_us: float
    end_us: float = 0.0
    thread: int = 0
    input_shapes: list = field(default_factory=list)
    is_user_annotation: bool = False
    children_us: float = 0.0
    count: int = 1

    @property
    def cpu_time_total(self) -> float:
        return self.end_us - self.start_us

    @property
    def self_cpu_time_total(self) -> float:
        return self.cpu_time_total - self.children_us

    @property
    def cpu_time(self) -> float:
        return self.cpu_time_total / max(self.count, 1)

    @property
    def key(self) -> str:
        return self.name

    # PyTorch's spellings of the same figures
    cpu_time_total_str = property(lambda self: _format_us(self.cpu_time_total))
    self_cpu_time_total_str = property(lambda self: _format_us(self.self_cpu_time_total))


@dataclass
class FunctionEventAvg:
    """The events of one name (and input shapes, when grouped by them), summed."""

    key: str
    count: int = 0
    cpu_time_total: float = 0.0
    self_cpu_time_total: float = 0.0
    input_shapes: list = field(default_factory=list)

    @property
    def cpu_time(self) -> float:
        return self.cpu_time_total / max(self.count, 1)

    def add(self, event: FunctionEvent) -> None:
        self.count += 1
        self.cpu_time_total += event.cpu_time_total
        self.self_cpu_time_total += event.self_cpu_time_total


def _format_us(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


_SORT_KEYS = {
    "cpu_time_total": "cpu_time_total", "self_cpu_time_total": "self_cpu_time_total",
    "cpu_time": "cpu_time", "count": "count", "self_cpu_time": "self_cpu_time_total",
}


class EventList(list):
    """A list of events (FunctionEvent or FunctionEventAvg) that prints as a table."""

    def __init__(self, events: Iterable = (), total_us: float | None = None,
                 shapes: bool = False):
        super().__init__(events)
        self._total_us = total_us
        self._shapes = shapes

    @property
    def self_cpu_time_total(self) -> float:
        return sum(e.self_cpu_time_total for e in self)

    def table(self, sort_by: str | None = None, row_limit: int = 100,
              max_name_column_width: int = 55, header: str | None = None,
              top_level_events_only: bool = False, **_ignored) -> str:
        """The events as PyTorch's profiler table: name, self CPU (% and time), CPU total (%
        and time), CPU time average, number of calls (and input shapes where recorded);
        sorted by sort_by (e.g. "cpu_time_total", "self_cpu_time_total"), descending."""
        rows = list(self)
        if sort_by is not None:
            attribute = _SORT_KEYS.get(sort_by)
            if attribute is None:
                raise value_error(f"table(): cannot sort by {sort_by!r}; expected one of "
                                  f"{', '.join(sorted(_SORT_KEYS))}")
            rows.sort(key=lambda e: getattr(e, attribute), reverse=True)
        if row_limit is not None and row_limit > 0:
            rows = rows[:row_limit]
        total = self._total_us if self._total_us is not None else self.self_cpu_time_total
        total = max(total, 1e-9)
        width = min(max([len(e.key) for e in rows] + [4]), max_name_column_width)
        columns = ["Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total",
                   "CPU time avg", "# of Calls"]
        widths = [width, 12, 12, 12, 12, 12, 12]
        if self._shapes:
            columns.append("Input Shapes")
            widths.append(max([len(str(e.input_shapes)) for e in rows] + [12]))
        rule = "  ".join("-" * w for w in widths)

        def line(cells):
            first = str(cells[0])
            if len(first) > width:
                first = first[: width - 3] + "..."
            parts = [first.ljust(width)] + [str(c).rjust(w) for c, w in
                                            zip(cells[1:], widths[1:])]
            return "  ".join(parts)

        out = [header] if header else []
        out += [rule, line(columns), rule]
        for e in rows:
            cells = [e.key, f"{100 * e.self_cpu_time_total / total:.2f}%",
                     _format_us(e.self_cpu_time_total),
                     f"{100 * e.cpu_time_total / total:.2f}%", _format_us(e.cpu_time_total),
                     _format_us(e.cpu_time), e.count]
            if self._shapes:
                cells.append(str(e.input_shapes))
            out.append(line(cells))
        out += [rule, f"Self CPU time total: {_format_us(total)}", ""]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


class profile:
    """Time every op and record_function range on this thread while on:

        with ember.autograd.profiler.profile(record_shapes=True) as prof:
            model(x).sum().backward()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))

    (use_cuda, profile_memory, with_stack, with_flops, with_modules are accepted; ember
    times CPU work only.)"""

    def __init__(self, enabled: bool = True, *, use_cuda: bool = False,
                 record_shapes: bool = False, profile_memory: bool = False,
                 with_stack: bool = False, with_flops: bool = False,
                 with_modules: bool = False, use_kineto: bool = False, use_cpu: bool = True,
                 **_ignored):
        self.enabled = enabled
        self.record_shapes = record_shapes
        self.function_events = EventList(shapes=record_shapes)
        self._thread = None
        self._stack: list[FunctionEvent] = []
        self._origin = 0.0
        self._running = False
        self._dispatching = False

    # -- on and off -------------------------------------------------------------------------

    def __enter__(self):
        if not self.enabled:
            return self
        if self._running:
            raise runtime_error("profiler: this profile is already running")
        self._thread = threading.get_ident()
        self._origin = time.perf_counter()
        _ROUTER.add(self)
        self._running = True
        return self

    def __exit__(self, *exc) -> None:
        if not self._running:
            return
        self._running = False
        _ROUTER.remove(self)
        while self._stack:  # ranges left open by an exception
            self._close(self._stack[-1])

    # -- what dispatch and record_function call ---------------------------------------------

    def _now(self) -> float:
        return (time.perf_counter() - self._origin) * 1e6

    def _open(self, name: str, shapes=None, annotation: bool = False) -> FunctionEvent:
        event = FunctionEvent(name, self._now(), thread=self._thread,
                              input_shapes=shapes or [], is_user_annotation=annotation)
        self._stack.append(event)
        return event

    def _close(self, event: FunctionEvent) -> None:
        event.end_us = self._now()
        if self._stack and self._stack[-1] is event:
            self._stack.pop()
        elif event in self._stack:  # a range closed out of order: its inner ones end too
            while self._stack and self._stack[-1] is not event:
                self._close(self._stack[-1])
            self._stack.pop()
        if self._stack:
            self._stack[-1].children_us += event.cpu_time_total
        self.function_events.append(event)

    def time_op(self, dispatch, op, inputs, attrs, out):
        """Run dispatch(op, ...) as one timed event (ops it dispatches inside are its own
        time, not events of their own). Another thread's ops run untimed."""
        if self._dispatching:
            return dispatch(op, inputs, attrs, out, _timed=True)
        shapes = None
        if self.record_shapes:
            shapes = [list(x.shape) if hasattr(x, "shape") else [] for x in inputs]
        event = self._open(op, shapes)
        self._dispatching = True
        try:
            return dispatch(op, inputs, attrs, out, _timed=True)
        finally:
            self._dispatching = False
            self._close(event)

    @contextlib.contextmanager
    def range(self, name: str):
        """A named range (what record_function and the autograd engine open)."""
        if self._dispatching:
            yield
            return
        event = self._open(name, annotation=True)
        try:
            yield
        finally:
            self._close(event)

    # -- results ----------------------------------------------------------------------------

    def events(self) -> EventList:
        return self.function_events

    def key_averages(self, group_by_input_shape: bool = False, **_ignored) -> EventList:
        groups: dict = {}
        for event in self.function_events:
            key = (event.name, str(event.input_shapes) if group_by_input_shape else "")
            if key not in groups:
                groups[key] = FunctionEventAvg(event.name, input_shapes=event.input_shapes)
            groups[key].add(event)
        total = sum(e.self_cpu_time_total for e in self.function_events)
        return EventList(groups.values(), total_us=total,
                         shapes=self.record_shapes and group_by_input_shape)

    @property
    def self_cpu_time_total(self) -> float:
        return sum(e.self_cpu_time_total for e in self.function_events)

    def table(self, *args, **kwargs) -> str:
        return self.key_averages().table(*args, **kwargs)

    def export_chrome_trace(self, path) -> None:
        """The events as a Chrome trace (chrome://tracing, Perfetto): one complete event
        ("ph": "X") each, timestamps and durations in microseconds."""
        trace = {"traceEvents": [
            {"name": e.name, "ph": "X", "ts": e.start_us, "dur": e.cpu_time_total,
             "pid": os.getpid(), "tid": e.thread,
             "cat": "user_annotation" if e.is_user_annotation else "cpu_op",
             "args": {"Input Dims": e.input_shapes} if e.input_shapes else {}}
            for e in self.function_events]}
        with open(os.fspath(path), "w", encoding="utf-8") as f:
            json.dump(trace, f)

    def __str__(self) -> str:
        return self.table()


class _Router:
    """What dispatch and the autograd engine reach through hooks.op_profiler while any
    profile runs: each thread's ops and ranges go to the profile running on that thread
    (one at a time: a second one there raises, as PyTorch's does), and hooks.op_profiler is
    None again once the last profile stops, in whatever order they stop."""

    def __init__(self):
        self._by_thread: dict[int, profile] = {}
        self._lock = threading.Lock()

    def add(self, prof: profile) -> None:
        with self._lock:
            if prof._thread in self._by_thread:
                raise runtime_error("profiler: a profile is already running on this thread "
                                    "(stop it before starting another)")
            self._by_thread[prof._thread] = prof
            hooks.op_profiler = self

    def remove(self, prof: profile) -> None:
        with self._lock:
            if self._by_thread.get(prof._thread) is prof:
                del self._by_thread[prof._thread]
            if not self._by_thread:
                hooks.op_profiler = None

    def time_op(self, dispatch, op, inputs, attrs, out):
        prof = self._by_thread.get(threading.get_ident())
        if prof is None:
            return dispatch(op, inputs, attrs, out, _timed=True)
        return prof.time_op(dispatch, op, inputs, attrs, out)

    def range(self, name: str):
        prof = self._by_thread.get(threading.get_ident())
        return prof.range(name) if prof is not None else contextlib.nullcontext()


_ROUTER = _Router()


class record_function(contextlib.ContextDecorator):
    """with record_function("name"): ... marks a named range in the running profile (nothing
    without one); also a decorator."""

    def __init__(self, name: str, args: str | None = None):
        if not isinstance(name, str):
            raise value_error(f"record_function(): the name must be a str, got "
                              f"{type(name).__name__}")
        self.name = name
        self.args = args
        self._context = None

    def __enter__(self):
        profiler = hooks.op_profiler
        if profiler is not None:
            self._context = profiler.range(self.name)
            self._context.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        context, self._context = self._context, None
        if context is not None:
            context.__exit__(*exc)
        return False


def _record_function_enter(name: str, args: str | None = None) -> record_function:
    """torch.ops.profiler._record_function_enter: the range entered, as a handle."""
    handle = record_function(name, args)
    handle.__enter__()
    return handle


def _record_function_exit(handle: record_function) -> None:
    handle.__exit__(None, None, None)
