"""ember.autograd.profiler and ember.profiler: every dispatched op and named range on the
profiling thread is one event, self times are totals less children's, key_averages groups
by name (and input shapes), the table and Chrome trace are written, schedules pick the steps
recorded, and nothing is hooked once a profile ends (an exception included)."""

import json
import threading

import ember
import ember.nn as nn
import pytest
from ember._tensor import hooks
from ember.autograd.profiler import profile, record_function
from ember.profiler import ProfilerAction, schedule, tensorboard_trace_handler


def _by_name(prof):
    return {e.key: e for e in prof.key_averages()}


def test_each_dispatched_op_is_one_event():
    x = ember.randn(4, 5)
    with profile() as prof:
        y = ember.relu(x * 2 + 1)
        y = y * y
    counts = {k: e.count for k, e in _by_name(prof).items()}
    assert counts["mul"] == 2 and counts["add"] == 1 and counts["relu"] == 1
    assert hooks.op_profiler is None
    assert all(e.cpu_time_total >= 0 for e in prof.events())


def test_ranges_hold_their_ops_and_self_time_is_total_less_children():
    x = ember.randn(64, 64)
    with profile() as prof:
        with record_function("outer"):
            with record_function("inner"):
                x @ x
            x + x
    events = {e.name: e for e in prof.events()}
    outer, inner = events["outer"], events["inner"]
    assert outer.start_us <= inner.start_us and inner.end_us <= outer.end_us
    matmul, add = events["matmul"], events["add"]
    assert inner.self_cpu_time_total == pytest.approx(inner.cpu_time_total - matmul.cpu_time_total)
    assert outer.self_cpu_time_total == pytest.approx(
        outer.cpu_time_total - inner.cpu_time_total - add.cpu_time_total)
    assert outer.is_user_annotation and not matmul.is_user_annotation


def test_backward_nodes_are_ranges_around_their_ops():
    w = ember.randn(3, 3, requires_grad=True)
    with profile() as prof:
        (w * w).sum().backward()
    names = [e.name for e in prof.events()]
    assert "autograd::engine::evaluate_function: MulBackward0" in names
    assert "autograd::engine::evaluate_function: SumBackward0" in names


def test_record_shapes_groups_by_input_shape():
    with profile(record_shapes=True) as prof:
        ember.randn(2, 3) + ember.randn(2, 3)
        ember.randn(4) + ember.randn(4)
    grouped = [e for e in prof.key_averages(group_by_input_shape=True) if e.key == "add"]
    assert sorted(str(e.input_shapes) for e in grouped) == ["[[2, 3], [2, 3]]", "[[4], [4]]"]
    assert "Input Shapes" in prof.key_averages(group_by_input_shape=True).table()


def test_the_table_sorts_and_limits_rows():
    x = ember.randn(128, 128)
    with profile() as prof:
        for _ in range(3):
            x @ x
        x + 1
    table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=1)
    lines = [line for line in table.splitlines() if line and not line.startswith("-")]
    assert lines[0].split()[0] == "Name" and lines[1].split()[0] == "matmul"
    assert lines[1].split()[-1] == "3" and "Self CPU time total" in table
    with pytest.raises(ember.EmberError, match="sort by"):
        prof.key_averages().table(sort_by="gpu_magic")


def test_an_exception_ends_the_profile_and_no_profile_costs_nothing():
    with pytest.raises(RuntimeError):
        with profile() as prof:
            with record_function("failing"):
                ember.ones(2) + 1
                raise RuntimeError("boom")
    assert hooks.op_profiler is None
    assert any(e.name == "failing" for e in prof.events())
    with record_function("nobody listens"):  # no profile: a no-op
        ember.ones(2) * 3


def test_other_threads_are_not_recorded():
    x = ember.randn(8)
    with profile() as prof:
        worker = threading.Thread(target=lambda: [ember.exp(x) for _ in range(5)])
        worker.start()
        worker.join()
        ember.sin(x)
    names = {e.name for e in prof.events()}
    assert "sin" in names and "exp" not in names


def test_chrome_trace(tmp_path):
    with profile() as prof:
        with record_function("step"):
            ember.ones(3) * 2
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(path)
    trace = json.loads(path.read_text())
    events = {e["name"]: e for e in trace["traceEvents"]}
    assert events["step"]["cat"] == "user_annotation" and events["mul"]["cat"] == "cpu_op"
    assert all(e["ph"] == "X" and e["dur"] >= 0 for e in trace["traceEvents"])


def test_schedule_actions():
    act = schedule(skip_first=1, wait=1, warmup=1, active=2, repeat=1)
    got = [act(step) for step in range(8)]
    assert got == [ProfilerAction.NONE, ProfilerAction.NONE, ProfilerAction.WARMUP,
                   ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE, ProfilerAction.NONE,
                   ProfilerAction.NONE, ProfilerAction.NONE]
    with pytest.raises(ember.EmberError):
        schedule(wait=-1, warmup=0, active=1)


def test_profile_with_a_schedule_records_the_active_steps(tmp_path):
    model = nn.Linear(4, 2)
    x = ember.randn(3, 4)
    seen = []
    handler = tensorboard_trace_handler(str(tmp_path), worker_name="w")

    def ready(prof):
        seen.append((prof.step_num, sum(1 for e in prof.events() if e.name == "linear")))
        handler(prof)

    with ember.profiler.profile(schedule=schedule(wait=1, warmup=1, active=2, repeat=1),
                                on_trace_ready=ready) as prof:
        for _ in range(6):
            model(x).sum().backward()
            prof.step()
    assert seen == [(4, 2)]  # steps 2 and 3 recorded, saved at the end of step 3
    (written,) = list(tmp_path.iterdir())
    assert written.name.startswith("w.") and written.name.endswith(".pt.trace.json")


def test_torch_ops_profiler_handles():
    with profile() as prof:
        handle = ember.ops.profiler._record_function_enter("manual")
        ember.ones(2) + 1
        ember.ops.profiler._record_function_exit(handle)
    events = {e.name: e for e in prof.events()}
    assert events["manual"].cpu_time_total >= events["add"].cpu_time_total


def test_profiles_stopped_in_any_order_leave_nothing_running():
    first, second = profile(), profile()
    first.__enter__()
    with pytest.raises(ember.EmberError, match="already running on this thread"):
        second.__enter__()
    worker_events = []

    def work():
        with profile() as inner:
            ember.exp(ember.ones(3))
        worker_events.extend(e.name for e in inner.events())

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    ember.sin(ember.ones(3))
    first.__exit__(None, None, None)
    assert hooks.op_profiler is None
    assert worker_events == ["exp"]  # the worker's own profile, not the main thread's
    names = [e.name for e in first.events()]
    assert "sin" in names and "exp" not in names
    count = len(first.events())
    ember.ones(2) + 1
    assert len(first.events()) == count


def test_scripted_calls_and_optimizer_steps_are_ranges():
    model = nn.Linear(4, 2)
    scripted = ember.script(model)
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    x = ember.randn(3, 4)
    for _ in range(2):
        scripted(x).sum().backward()
    with profile() as prof:
        opt.zero_grad()
        scripted(x).sum().backward()
        opt.step()
    names = {e.name for e in prof.events()}
    assert "ember.script: Linear.forward" in names  # one range: its ops run natively
    assert "autograd::engine::evaluate_function: CompiledFunctionBackward" in names
    assert "Optimizer.step#SGD.step" in names
