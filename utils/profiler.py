"""ember.profiler: torch.profiler's profile (activities, schedule, on_trace_ready, step),
record_function, schedule and tensorboard_trace_handler, over the op profiler of
autograd/profiler.py (which times every dispatched op and named range on the profiling
thread; CPU only: a CUDA activity is accepted and times the host side)."""

from __future__ import annotations

import enum
import os
import socket
import time
from collections.abc import Callable, Iterable

from ..autograd.profiler import EventList, FunctionEvent, record_function
from ..autograd.profiler import profile as _op_profile
from ..errors import value_error


class ProfilerActivity(enum.Enum):
    CPU = "CPU"
    CUDA = "CUDA"
    XPU = "XPU"
    MTIA = "MTIA"


class ProfilerAction(enum.Enum):
    NONE = 0
    WARMUP = 1
    RECORD = 2
    RECORD_AND_SAVE = 3


def schedule(*, wait: int, warmup: int, active: int, repeat: int = 0,
             skip_first: int = 0) -> Callable[[int], ProfilerAction]:
    """The action of each step: skip_first steps of nothing, then cycles of wait steps of
    nothing, warmup steps, and active steps recorded (the last one saves), repeat cycles
    (0: forever)."""
    for name, value in (("wait", wait), ("warmup", warmup), ("active", active),
                        ("repeat", repeat), ("skip_first", skip_first)):
        if not isinstance(value, int) or value < 0:
            raise value_error(f"schedule(): {name} must be a non-negative int, got {value!r}")
    if active < 1:
        raise value_error("schedule(): active must be at least 1")

    def action(step: int) -> ProfilerAction:
        if step < skip_first:
            return ProfilerAction.NONE
        step -= skip_first
        cycle = wait + warmup + active
        if repeat and step >= cycle * repeat:
            return ProfilerAction.NONE
        position = step % cycle
        if position < wait:
            return ProfilerAction.NONE
        if position < wait + warmup:
            return ProfilerAction.WARMUP
        return (ProfilerAction.RECORD_AND_SAVE if position == cycle - 1
                else ProfilerAction.RECORD)

    return action


def tensorboard_trace_handler(dir_name: str, worker_name: str | None = None,
                              use_gzip: bool = False) -> Callable:
    """on_trace_ready that writes each saved trace to dir_name as
    <worker>.<milliseconds>.pt.trace.json (Chrome trace format, as TensorBoard's profiler
    plugin reads it)."""
    if use_gzip:
        raise value_error("tensorboard_trace_handler(): use_gzip is not supported by ember")

    def handler(prof: profile) -> None:
        os.makedirs(dir_name, exist_ok=True)
        worker = worker_name or f"{socket.gethostname()}_{os.getpid()}"
        path = os.path.join(dir_name, f"{worker}.{int(time.time() * 1000)}.pt.trace.json")
        prof.export_chrome_trace(path)

    return handler


class profile:
    """torch.profiler.profile: records while on (or, with a schedule, in the steps it marks
    active; call step() once per training step); key_averages(), events(),
    export_chrome_trace() read the last recorded window."""

    def __init__(self, *, activities: Iterable[ProfilerActivity] | None = None,
                 schedule: Callable[[int], ProfilerAction] | None = None,
                 on_trace_ready: Callable | None = None, record_shapes: bool = False,
                 profile_memory: bool = False, with_stack: bool = False,
                 with_flops: bool = False, with_modules: bool = False, **_ignored):
        self.activities = set(activities or (ProfilerActivity.CPU,))
        self.schedule = schedule
        self.on_trace_ready = on_trace_ready
        self.record_shapes = record_shapes
        self.step_num = 0
        self._current: _op_profile | None = None
        self.profiler: _op_profile | None = None  # the last finished window
        self._action = ProfilerAction.NONE

    def _action_of(self, step: int) -> ProfilerAction:
        return self.schedule(step) if self.schedule else ProfilerAction.RECORD

    def _begin(self) -> None:
        self._current = _op_profile(record_shapes=self.record_shapes)
        self._current.__enter__()

    def _finish(self, save: bool) -> None:
        if self._current is not None:
            self._current.__exit__(None, None, None)
            self.profiler, self._current = self._current, None
            if save and self.on_trace_ready is not None:
                self.on_trace_ready(self)

    def start(self) -> None:
        self._action = self._action_of(self.step_num)
        if self._action in (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE):
            self._begin()

    def stop(self) -> None:
        self._finish(save=self._current is not None)

    def step(self) -> None:
        """The end of one step: the schedule's next action starts or ends a window."""
        previous = self._action
        self.step_num += 1
        self._action = self._action_of(self.step_num)
        recording = (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)
        if previous == ProfilerAction.RECORD_AND_SAVE:
            self._finish(save=True)
        if self._action in recording and self._current is None:
            self._begin()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _window(self) -> _op_profile:
        window = self.profiler or self._current
        if window is None:
            raise value_error("profile: nothing was recorded (no active step yet)")
        return window

    def events(self) -> EventList:
        return self._window().events()

    def key_averages(self, group_by_input_shape: bool = False, **kwargs) -> EventList:
        return self._window().key_averages(group_by_input_shape, **kwargs)

    def export_chrome_trace(self, path) -> None:
        self._window().export_chrome_trace(path)


__all__ = ["EventList", "FunctionEvent", "ProfilerAction", "ProfilerActivity", "profile",
           "record_function", "schedule", "tensorboard_trace_handler"]
