"""Capture on Trainer-style code: state reached through attributes, dict and list items is
guarded, and the Python stores a traced call makes are replayed on cached calls or refused
(eager, with the reason and line), never dropped."""

from __future__ import annotations

import warnings

import ember
import ember.nn as nn
import numpy as np
import pytest
from ember.tracer import ScriptFallback


class Config:
    def __init__(self, scale=1.0):
        self.scale = scale


def batches(n, seed=0, shape=(16, 4)):
    rng = np.random.default_rng(seed)
    return [(ember.tensor(rng.standard_normal(shape).astype(np.float32)),
             ember.tensor(rng.standard_normal((shape[0], 1)).astype(np.float32)))
            for _ in range(n)]


def model(seed=0, dropout=0.0):
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 1))


class Trainer:
    """The usual shape: model, optimizer, scheduler and config held as attributes; the loss
    kept on the trainer for callbacks."""

    def __init__(self, net, optimizer="adam"):
        self.model = net
        self.optimizer = (ember.optim.Adam(net.parameters(), lr=0.05) if optimizer == "adam"
                          else ember.optim.SGD(net.parameters(), lr=0.05, momentum=0.9))
        self.scheduler = ember.optim.lr_scheduler.StepLR(self.optimizer, step_size=2, gamma=0.5)
        self.cfg = Config()
        self.loss = None

    def step(self, x, y):
        loss = ((self.model(x) - y) ** 2).mean() * self.cfg.scale
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.loss = loss
        return loss


def run_trainer(scripted, events, n=8, optimizer="adam", dropout=0.0):
    trainer = Trainer(model(dropout=dropout), optimizer)
    step = ember.script(trainer.step) if scripted else trainer.step
    losses, kept = [], []
    ember.manual_seed(1)
    for i, (x, y) in enumerate(batches(n)):
        events.get(i, lambda t: None)(trainer)
        losses.append(step(x, y).item())
        kept.append(trainer.loss.item())
        if i % 3 == 2:
            trainer.scheduler.step()
    params = [p.detach().numpy().copy() for p in trainer.model.parameters()]
    return losses, kept, params, step


def assert_same_run(events, **options):
    eager = run_trainer(False, events, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        scripted = run_trainer(True, events, **options)
    np.testing.assert_allclose(scripted[0], eager[0], rtol=1e-5)
    np.testing.assert_allclose(scripted[1], eager[1], rtol=1e-5)
    assert scripted[1] == scripted[0]  # self.loss is this call's loss, on every call
    for a, b in zip(scripted[2], eager[2]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return scripted[3]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_trainer_step_matches_eager_with_lazy_optimizer_state_and_a_scheduler(optimizer):
    step = assert_same_run({}, optimizer=optimizer)
    reasons = " ".join(step.recompiles)
    assert "self.optimizer" in reasons  # the state made on the first step retraced
    assert "['lr']" in reasons  # the scheduler's change retraced
    assert not step.fallbacks


def test_train_eval_switch_and_config_change_through_attributes_retrace():
    events = {3: lambda t: t.model.eval(), 5: lambda t: setattr(t.cfg, "scale", 2.0),
              6: lambda t: t.model.train()}
    step = assert_same_run(events, dropout=0.3)
    reasons = " | ".join(step.recompiles)
    assert "self.model.training: True -> False" in reasons, reasons
    assert "self.cfg.scale: 1.0 -> 2.0" in reasons, reasons


def test_a_replaced_model_or_optimizer_retraces():
    trainer = Trainer(model())
    step = ember.script(trainer.step)
    x, y = batches(1)[0]
    for _ in range(3):
        step(x, y)
    trainer.model = model(seed=5)
    trainer.optimizer = ember.optim.SGD(trainer.model.parameters(), lr=0.1)
    expected = ((trainer.model(x) - y) ** 2).mean().item()
    assert step(x, y).item() == pytest.approx(expected, rel=1e-6)
    assert "self.model: replaced by another object" in step.recompiles[-1]


def test_state_reached_through_dict_and_list_items_is_guarded():
    net = model()
    state = {"nets": [net], "opt": ember.optim.SGD(net.parameters(), lr=0.1), "scale": 1.0}

    def step(state, x, y):
        loss = ((state["nets"][0](x) - y) ** 2).mean() * state["scale"]
        loss.backward()
        state["opt"].step()
        state["opt"].zero_grad()
        return loss

    scripted = ember.script(step)
    twin = model()
    twin_opt = ember.optim.SGD(twin.parameters(), lr=0.1)
    twin_state = {"nets": [twin], "opt": twin_opt, "scale": 1.0}
    for i, (x, y) in enumerate(batches(6)):
        if i == 2:
            for s in (state, twin_state):
                s["opt"].param_groups[0]["lr"] = 0.01
        if i == 4:
            state["scale"] = twin_state["scale"] = 3.0
        got, want = scripted(state, x, y).item(), step(twin_state, x, y).item()
        assert got == pytest.approx(want, rel=1e-5)
    reasons = " | ".join(scripted.recompiles)
    assert "state['opt']: param_groups[0]['lr']: 0.1 -> 0.01" in reasons, reasons
    assert "state['scale']: 1.0 -> 3.0" in reasons, reasons


def test_a_scripted_module_guards_a_config_object_it_reads():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.config = Config(2.0)

        def forward(self, x):
            return self.fc(x) * self.config.scale

    net = Net()
    scripted = ember.script(net)
    x = ember.randn(3, 4)
    scripted(x)
    scripted(x)
    net.config.scale = 5.0
    np.testing.assert_allclose(scripted(x).detach().numpy(), net(x).detach().numpy(), rtol=1e-6)
    assert "self.config.scale: 2.0 -> 5.0" in scripted.recompiles[-1]


def test_stores_to_attributes_items_and_lists_are_replayed_with_each_calls_values():
    history, box = [], {}

    class Holder:
        pass

    holder = Holder()

    @ember.script
    def f(x):
        y = (x * 2).sum()
        history.append(y)
        box["y"] = y
        box["pair"] = (y, x)
        holder.last = y
        holder.tag = "seen"
        return y

    for i in range(5):
        x = ember.tensor([float(i), 1.0])
        f(x)
        assert box["pair"][1] is x  # the call's own argument, not the traced one
    assert [h.item() for h in history] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert box["y"].item() == 10.0 and box["pair"][0].item() == 10.0
    assert holder.last.item() == 10.0 and holder.tag == "seen"
    assert len(f.specializations) == 1 and f.specializations[0].calls == 4
    assert "replays the store to history" in f.explain()


def test_a_store_into_a_value_the_graph_reads_runs_eagerly_naming_the_line():
    class Counter:
        def __init__(self):
            self.steps = 0

    counter = Counter()

    def f(x):
        counter.steps += 1  # the store a graph cannot replay
        return x * counter.steps

    scripted = ember.script(f)
    with pytest.warns(UserWarning, match=r"counter\.steps.*0 -> 1.*test_reach\.py:\d+"):
        scripted(ember.ones(2))
    for i in range(2, 5):
        assert scripted(ember.ones(2)).numpy().tolist() == [float(i)] * 2
    assert counter.steps == 4
    with pytest.raises(ScriptFallback, match="counter.steps"):
        ember.script(f, strict=True)(ember.ones(2))


def test_a_store_of_a_new_object_runs_eagerly():
    class Record:
        def __init__(self, value):
            self.value = value

    log = {}

    def f(x):
        y = x + 1
        log["record"] = Record(y)
        return y

    scripted = ember.script(f)
    with pytest.warns(UserWarning, match=r"new Record object into log\['record'\]"):
        scripted(ember.ones(2))
    scripted(ember.zeros(2))
    assert log["record"].value.numpy().tolist() == [1.0, 1.0]


def test_objects_of_libraries_are_not_taken_for_the_programs_state():
    import logging

    logger = logging.getLogger("ember-test-reach")

    @ember.script
    def f(x):
        logger.isEnabledFor(logging.DEBUG)  # fills the logger's own cache
        return x * 2

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            f(ember.ones(2))
    assert len(f.specializations) == 1


def _all_codes(objects):
    """Every code object of these modules' functions and classes' methods, nested ones too."""
    import types

    codes, seen = [], set()

    def walk(code):
        if id(code) in seen:
            return
        seen.add(id(code))
        codes.append(code)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                walk(const)

    for module in objects:
        for value in vars(module).values():
            members = [value] + (list(vars(value).values()) if isinstance(value, type) else [])
            for f in members:
                code = getattr(getattr(f, "__func__", f), "__code__", None)
                if isinstance(code, types.CodeType):
                    walk(code)
    return codes


@pytest.mark.skipif(__import__("ember.tracer.reach").tracer.reach._SCAN is None,
                    reason="the bytecode scan is CPython 3.11's; others read names through dis")
def test_names_read_off_the_bytecode_equal_what_dis_gives():
    """The names (and lines) a code reads, scanned off 3.11's bytecode, equal dis's reading
    of it for every function of ember and of a few stdlib and numpy modules: extended
    arguments, cells, globals, constant keys, caches."""
    import collections
    import dataclasses
    import inspect
    import json
    import sys

    from ember.tracer import reach

    # the modules loaded already (importing more would set package attributes that
    # other tests read: ember.autograd.gradcheck is a function, and a module of that name)
    modules = [m for name, m in list(sys.modules.items())
               if name.startswith("ember.") and m is not None]
    modules += [np, json, collections, inspect, dataclasses]
    codes = _all_codes(modules)
    assert len(codes) > 2000
    wrong = [c for c in codes if reach._names_by_bytes_311(c) != reach._names_by_dis(c)]
    assert not wrong, wrong[:5]
    # one with an extended argument: a function reading its 300th global
    names = [f"g{i}" for i in range(300)]
    source = "def f(x):\n    return " + " + ".join(names) + " + x.attr\n"
    scope: dict = {}
    exec(compile(source, "<extended>", "exec"), scope)
    reads, lines = reach._names_by_bytes_311(scope["f"].__code__)
    assert reads >= {"g0", "g299", "attr"} and lines["g299"] == 2
    assert (reads, lines) == reach._names_by_dis(scope["f"].__code__)


def _traced_under(profiler_on, profiler_off):
    """A scripted function traced while a profiler runs: its result, eager's."""
    w = ember.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    fn = ember.script(lambda x: (x * w).sum(-1))
    x = ember.tensor(np.ones((2, 3), np.float32))
    profiler_on()
    try:
        got = [fn(x).numpy() for _ in range(3)]
    finally:
        profiler_off()
    return got, (x * w).sum(-1).numpy()


def test_a_trace_under_cprofile_runs_and_the_profiler_records_on():
    # `python -m cProfile train.py`: sys.getprofile() is cProfile's C profiler, which
    # cannot be called; the trace pauses it and turns it on again after
    import cProfile
    import pstats
    import sys

    profiler = cProfile.Profile()
    got, want = _traced_under(profiler.enable, profiler.disable)
    for value in got:
        np.testing.assert_array_equal(value, want)
    assert sys.getprofile() is None
    # the calls after the trace (the cached ones) are in the profile
    calls = {name for (_, _, name) in pstats.Stats(profiler).stats}
    assert "__call__" in calls


def test_a_python_profile_function_is_called_on_through_a_trace():
    import sys

    seen = []

    def mine(frame, event, arg):
        seen.append(event)

    got, want = _traced_under(lambda: sys.setprofile(mine), lambda: sys.setprofile(None))
    for value in got:
        np.testing.assert_array_equal(value, want)
    assert "call" in seen and "return" in seen
