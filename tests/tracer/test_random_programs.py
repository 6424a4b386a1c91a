"""Differential testing at scale: random Trainer-style programs run scripted and eagerly, and
must agree on every call, in values, gradients, parameters and Python side effects.

Each program is a `step` method of a World (a model, an optimizer, a config, a dict, a list
and a plain object, reached through `self` as real training code reaches them) built from
blocks: the ops, views and in-place writes of test_script_matches_eager.py, whole training
steps (backward, optional clipping, the optimizer's step), control flow through tensor values
(value guards) and through the config (attribute guards), stores to Python objects (replayed),
and random draws. Between calls the programs change what guards must notice: the config, the
learning rate, the training mode (before calls 2 and 4 of 6, so that graphs are reused in
between). Some programs run with dynamic sizes.

The CI runs EMBER_RANDOM_PROGRAMS programs (default 160); the full count is one command:

    EMBER_RANDOM_PROGRAMS=10000 EMBER_SKIP_NVCC_CHECK=1 \
        python -m pytest -q tests/tracer/test_random_programs.py

(the session-end nvcc check of every kernel's CUDA source, tests/conftest.py, would compile
the thousands of kernels 10,000 programs make in one file, past its 10-minute limit).

A failure names the program's seed; `describe(seed)` prints it.
"""

from __future__ import annotations

import os
import random
import warnings
from types import SimpleNamespace

import ember
import ember.nn as nn
import numpy as np
import pytest
from test_script_matches_eager import STEPS

COUNT = int(os.environ.get("EMBER_RANDOM_PROGRAMS", "160"))
CHUNK = 20
OPTIMIZERS = {
    "sgd": lambda p: ember.optim.SGD(p, lr=0.05),
    "momentum": lambda p: ember.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda p: ember.optim.Adam(p, lr=0.01),
    "adamw": lambda p: ember.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "rmsprop": lambda p: ember.optim.RMSprop(p, lr=0.01),
    "adagrad": lambda p: ember.optim.Adagrad(p, lr=0.05),
}
BLOCKS = ("op", "op", "op", "train", "value_branch", "config", "store", "draw")
EVENTS = ("scale", "flag", "reps", "lr", "eval", "none", "none")
# ops whose result keeps h 2-D with at least one row and column (every STEPS entry does)
OPS = sorted(STEPS)


class Config:
    def __init__(self):
        self.scale = 1.0
        self.flag = True
        self.reps = 1


class Holder:
    pass


def program(seed: int) -> SimpleNamespace:
    """The program of this seed: its blocks, optimizer, events and options."""
    r = random.Random(seed)
    blocks = []
    for _ in range(r.randint(1, 6)):
        kind = r.choice(BLOCKS)
        blocks.append((kind, r.choice(OPS) if kind == "op" else r.choice(("norm", "value", ""))))
    return SimpleNamespace(
        seed=seed,
        blocks=blocks,
        optimizer=r.choice(sorted(OPTIMIZERS)),
        events=[r.choice(EVENTS) for _ in range(2)],
        dynamic=r.random() < 0.25,
        set_to_none=r.random() < 0.5,
        width=r.randint(1, 4),
    )


def describe(seed: int) -> str:
    p = program(seed)
    return (f"seed {seed}: blocks {p.blocks}, optimizer {p.optimizer}, events {p.events}, "
            f"dynamic {p.dynamic}")


class World:
    """One side's state (eager or scripted), built alike from the program's seed."""

    def __init__(self, p):
        ember.manual_seed(p.seed)
        self.p = p
        self.model = nn.Linear(p.width, 2).double()
        self.optimizer = OPTIMIZERS[p.optimizer](self.model.parameters())
        self.cfg = Config()
        self.box = {}
        self.history = []
        self.holder = Holder()

    def step(self, x, y, w, idx, buf):
        a = SimpleNamespace(y=y, w=w, idx=idx, buf=buf)
        h = x
        for kind, option in self.p.blocks:
            h = getattr(self, f"_{kind}")(h, a, x, option)
        return h, h.sum(dim=0)

    def _op(self, h, a, x, name):
        return STEPS[name](h, a)

    def _train(self, h, a, x, clip):
        loss = ((self.model(x) - h.detach().mean()) ** 2).mean() * self.cfg.scale
        loss.backward()
        if clip == "norm":
            nn.utils.clip_grad_norm_(self.model.parameters(), 0.1)
        elif clip == "value":
            nn.utils.clip_grad_value_(self.model.parameters(), 0.01)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=self.p.set_to_none)
        self.last_loss = loss.detach()
        return h + self.model.weight.sum() * 0.01

    def _value_branch(self, h, a, x, option):
        # a value guard, on a quantity without rounding-level ties (a centered h sums to
        # +-1e-17, whose sign compiled and eager sums may disagree on)
        if h.amax() > 0.5:
            return h * 0.5
        return h - 1.0

    def _config(self, h, a, x, option):
        h = h * self.cfg.scale if self.cfg.flag else h + 1.0
        for _ in range(self.cfg.reps):
            h = h.tanh()
        return h

    def _store(self, h, a, x, option):
        self.box["h"] = h
        self.history.append(h.sum())
        self.holder.last = h * 2
        return h

    def _draw(self, h, a, x, option):
        return h + ember.randn_like(h) * 0.01

    def change(self, event):
        if event == "scale":
            self.cfg.scale *= 1.5
        elif event == "flag":
            self.cfg.flag = not self.cfg.flag
        elif event == "reps":
            self.cfg.reps = 3 - self.cfg.reps
        elif event == "lr":
            for group in self.optimizer.param_groups:
                group["lr"] *= 0.5
        elif event == "eval":
            self.model.train(not self.model.training)

    def observed(self):
        """Everything a call leaves behind, as arrays (None where absent)."""
        out = [p.detach().numpy() for p in self.model.parameters()]
        out += [None if p.grad is None else p.grad.numpy() for p in self.model.parameters()]
        out.append(None if "h" not in self.box else self.box["h"].detach().numpy())
        out += [v.detach().numpy() for v in self.history]
        last = getattr(self.holder, "last", None)
        out.append(None if last is None else last.detach().numpy())
        loss = getattr(self, "last_loss", None)
        out.append(None if loss is None else loss.numpy())
        return out


def _inputs(rng, n, width):
    def floats(*shape):
        return rng.standard_normal(shape)

    return (floats(n, width), floats(8), floats(8, 8), rng.integers(0, 8, size=5), floats(8))


def _close(got, want, what, seed):
    if want is None or got is None:
        assert got is None and want is None, f"{describe(seed)}: {what}: {got} vs {want}"
        return
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6,
                               err_msg=f"{describe(seed)}: {what}")


def run_program(seed: int) -> int:
    """Run the program of this seed scripted and eagerly; the number of calls that ran a
    captured graph (the rest traced, or ran eagerly after a fallback)."""
    p = program(seed)
    eager, scripted = World(p), World(p)
    step = ember.script(scripted.step, dynamic=True if p.dynamic else None)
    rng = np.random.default_rng(seed)
    for call in range(6):
        n = int(rng.integers(2, 6)) if p.dynamic else 3
        arrays = _inputs(rng, n, p.width)
        if call in (2, 4):  # a change the guards must notice, then calls that reuse graphs
            for world in (eager, scripted):
                world.change(p.events[call // 2 - 1])
        results = []
        for world, fn in ((eager, eager.step), (scripted, step)):
            args = [ember.tensor(a) for a in arrays]
            ember.manual_seed(1000 + call)
            out = fn(*args)
            results.append(([o.detach().numpy() for o in out], args[4].detach().numpy(),
                            world.observed()))
        (e_out, e_buf, e_seen), (s_out, s_buf, s_seen) = results
        for k, (g, w) in enumerate(zip(s_out, e_out)):
            _close(g, w, f"call {call}: output {k}", seed)
        _close(s_buf, e_buf, f"call {call}: the input written in place", seed)
        assert len(s_seen) == len(e_seen), f"{describe(seed)}: call {call}: stores differ"
        for k, (g, w) in enumerate(zip(s_seen, e_seen)):
            _close(g, w, f"call {call}: state {k}", seed)
    return sum(sp.calls for sp in step.specializations)


@pytest.mark.parametrize("chunk", range(max(1, (COUNT + CHUNK - 1) // CHUNK)))
def test_random_programs_agree_scripted_and_eager(chunk):
    seeds = range(chunk * CHUNK, min(COUNT, (chunk + 1) * CHUNK))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fallbacks are allowed; wrong numbers are not
        reused = sum(run_program(seed) for seed in seeds)
    # the graphs really ran: most programs reuse theirs between the changes
    assert reused >= len(seeds), f"only {reused} cached calls in {len(seeds)} programs"
