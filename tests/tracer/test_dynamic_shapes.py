"""Dynamic shapes: a retrace caused only by a changed size (or dynamic=True, from the first call)
traces that size symbolically, so later sizes run the same graph (specialized and compiled per
size) without re-running the Python function. Sizes the Python code reads keep their
expressions; branches on them become shape guards; whatever a graph cannot express (a loop
count, a factory's size, a float) makes the size exact, never wrong."""

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import nn


def _mlp():
    ember.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.LayerNorm(16), nn.Linear(16, 4),
                         nn.Flatten(0))


def _x(n, seed=0):
    return ember.tensor(np.random.default_rng(seed + n).standard_normal((n, 8)).astype("f4"))


def test_a_size_only_retrace_makes_the_size_dynamic_for_every_later_size():
    model = _mlp()
    scripted = ember.script(model)
    calls = []
    for n in (4, 6, 9, 32, 4, 17):
        x = _x(n)
        with ember.no_grad():
            got, want = scripted(x), model(x)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
        calls.append(len(scripted.recompiles))
    assert calls == [0, 1, 1, 1, 1, 1]  # one retrace (4 -> 6), then no more
    assert len(scripted.specializations) == 1
    assert "s0" in str(scripted.graph)  # the input's batch size is the symbol
    assert "s0 (>= 2)" in scripted.explain()


def test_a_linear_size_in_an_attr_follows_the_symbol():
    def fn(x):
        return F.softmax((x * 2).reshape(-1), 0).reshape(-1, 4).sum(1)

    scripted = ember.script(fn)
    for n in (2, 3, 5, 11):
        x = ember.tensor(np.arange(n * 4, dtype=np.float32).reshape(n, 4) / 10)
        np.testing.assert_allclose(scripted(x).numpy(), fn(x).numpy(), rtol=1e-5, atol=1e-7)
    assert len(scripted.recompiles) == 1 and len(scripted.specializations) == 1


def test_size_one_is_specialized_on_its_own():
    model = _mlp()
    scripted = ember.script(model)
    with ember.no_grad():
        for n in (4, 6, 1, 5):
            np.testing.assert_allclose(scripted(_x(n)).numpy(), model(_x(n)).numpy(),
                                       rtol=1e-5, atol=1e-6)
    assert len(scripted.specializations) == 2  # the dynamic one, and size 1


def test_a_size_the_function_reads_itself_stays_exact():
    def fn(x):
        if x.shape[0] > 5:  # a plain int in Python's hands: range(n), 1.0 / n, list[n] would
            return x * 2  # read its value unseen, so the size it came from stays exact
        return x * 3

    scripted = ember.script(fn)
    for n in (6, 8, 3):
        x = ember.ones(n, 2)
        np.testing.assert_allclose(scripted(x).numpy(), fn(x).numpy())
    assert len(scripted.specializations) == 3


def test_dynamic_false_keeps_one_specialization_per_size():
    model = _mlp()
    scripted = ember.script(model, dynamic=False)
    with ember.no_grad():
        for n in (4, 6, 9):
            scripted(_x(n))
    assert len(scripted.specializations) == 3


def test_gradients_through_a_dynamic_specialization_match_eager():
    eager, copy_ = _mlp(), _mlp()
    scripted = ember.script(copy_)
    for n in (4, 6, 10, 3):
        x = _x(n)
        for net in (eager, scripted):
            net.zero_grad()
            (F.relu(net(x)) ** 2).sum().backward()
        for p, q in zip(copy_.parameters(), eager.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_two_sizes_changing_differently_get_two_symbols():
    def fn(x, y):
        return (x.sum(0) * 2).unsqueeze(0) + y.sum(0).unsqueeze(0)

    scripted = ember.script(fn)
    for n, m in ((4, 5), (6, 9), (7, 3), (3, 7), (5, 5)):
        x, y = ember.ones(n, 3), ember.ones(m, 3)
        np.testing.assert_allclose(scripted(x, y).numpy(), fn(x, y).numpy())
    assert len(scripted.recompiles) == 1 and len(scripted.specializations) == 1
    text = scripted.explain()
    assert "'s0 (>= 2)'" in text and "'s1 (>= 2)'" in text


@pytest.mark.parametrize("n", [2, 7])
def test_the_program_for_each_size_is_compiled_once(n):
    model = _mlp()
    scripted = ember.script(model)
    with ember.no_grad():
        for size in (3, 5, n, n, n):
            scripted(_x(size))
    dynamic = scripted.specializations[0]
    assert (n,) in dynamic._by_size and dynamic.calls == 3  # 3 traced, 5 retraced
