"""Graph breaks: what cannot be captured runs eagerly, gives the eager result, warns once with
the reason and the user's line, and is listed by explain(); data-dependent branches stay right."""

import inspect
import warnings

import ember
import numpy as np
import pytest
from ember import autograd
from ember.tracer import ScriptFallback


def line_of(fn, marker: str) -> str:
    lines, start = inspect.getsourcelines(fn)
    for offset, text in enumerate(lines):
        if marker in text:
            return f"{inspect.getsourcefile(fn)}:{start + offset}"
    raise AssertionError(f"{marker!r} not in {fn.__name__}")


_GENERATOR = ember.Generator()


def _random_factory(x):
    # ember.randn from the global stream is a graph op; a generator of its own is not
    _GENERATOR.manual_seed(7)
    return x + ember.randn(*x.shape, generator=_GENERATOR)  # break


def _printing(x):
    text = repr(x * 2)  # break
    return x * len(text)


def _numpy(x):
    doubled = x.numpy() * 2  # break
    return ember.tensor(doubled) + x


def _from_numpy(x):
    return x + ember.from_numpy(np.ones(tuple(x.shape), dtype=np.float32))  # break


def _dlpack(x):
    return x * float(np.from_dlpack(x).sum())  # break


class _Cube(autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x * x


def _custom_function(x):
    return _Cube.apply(x) + 1  # break



def _data_assignment(x):
    h = x * 2
    h.data = x * 3  # break
    return h + 1


def _mask_index(x):
    return x[x > 0.5] * 2  # break


BREAKS = [
    (_random_factory, "the random factory ember.randn with a generator"),
    (_printing, "printing a tensor"),
    (_numpy, "numpy()"),
    (_from_numpy, "from_numpy"),
    (_dlpack, "DLPack"),
    (_custom_function, "the custom autograd.Function _Cube"),
    (_data_assignment, "assigning tensor.data"),
    (_mask_index, "whose output shape depends on the values"),
]


def _input(call: int, shape=(2, 3)):
    data = np.arange(float(np.prod(shape))).reshape(shape) / 4.0 - 0.5 + call
    return ember.tensor(data.astype(np.float32))


@pytest.mark.parametrize("fn, reason", BREAKS, ids=[fn.__name__.strip("_") for fn, _ in BREAKS])
def test_graph_break_runs_eagerly_with_one_warning(fn, reason):
    scripted = ember.script(fn)
    where = line_of(fn, "# break")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for call in range(4):
            ember.manual_seed(call)
            got = scripted(_input(call))
            ember.manual_seed(call)
            want = fn(_input(call))
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)
    messages = [str(w.message) for w in caught if "ember.script" in str(w.message)]
    assert len(messages) == 1, messages
    assert reason in messages[0] and where in messages[0], messages[0]
    assert scripted.graph is None
    text = scripted.explain()
    assert "fell back" in text and reason in text and where in text


@pytest.mark.parametrize("fn, reason", BREAKS[:3], ids=["random", "printing", "numpy"])
def test_graph_break_in_strict_mode_raises(fn, reason):
    scripted = ember.script(fn, strict=True)
    with pytest.raises(ScriptFallback, match="cannot be captured") as info:
        scripted(_input(0))
    assert reason in str(info.value)


def test_graph_break_reason_in_ember_explain():
    with pytest.warns(UserWarning, match="printing a tensor"):
        text = ember.explain(_printing, _input(0))
    assert "printing a tensor" in text and line_of(_printing, "# break") in text


def test_break_on_a_new_shape_warns_again_for_that_shape():
    scripted = ember.script(_random_factory)
    with pytest.warns(UserWarning, match="random factory"):
        scripted(_input(0, (2, 3)))
    with pytest.warns(UserWarning, match="random factory"):
        scripted(_input(0, (4, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scripted(_input(1, (2, 3)))
        scripted(_input(1, (4, 3)))


def _branchy(x):
    if x.sum() > 0:
        return x * 2 + 1
    return x.abs() - 3


def test_data_dependent_branch_alternates_correctly():
    scripted = ember.script(_branchy)
    rng = np.random.default_rng(0)
    signs = [1, -1, 1, 1, -1, -1, 1, -1, 1, -1]
    for sign in signs:
        x = ember.tensor((sign * (rng.random((3, 4)) + 0.1)).astype(np.float32))
        np.testing.assert_allclose(scripted(x).numpy(), _branchy(x).numpy(), rtol=1e-6)
    # one graph per side, each reused: one retrace when the branch first flipped
    assert len(scripted.specializations) == 2
    assert len(scripted.recompiles) == 1
    assert sum(sp.calls for sp in scripted.specializations) == len(signs) - 2
    assert scripted.fallbacks == []


def test_data_dependent_branch_with_gradients():
    scripted = ember.script(_branchy)
    for sign in [1, -1, 1, -1, 1, -1]:
        data = (sign * np.linspace(0.5, 2.0, 6)).reshape(2, 3)
        x1 = ember.tensor(data, requires_grad=True)
        x2 = ember.tensor(data, requires_grad=True)
        scripted(x1).sum().backward()
        _branchy(x2).sum().backward()
        np.testing.assert_array_equal(x1.grad.numpy(), x2.grad.numpy())
    assert len(scripted.specializations) == 2


def test_value_guard_failure_writes_nothing_back():
    def f(x, buf):
        buf.add_(x)
        if buf.sum() > 10:
            return buf * 0
        return buf * 1

    scripted = ember.script(f)
    b1, b2 = ember.zeros(3), ember.zeros(3)
    for _ in range(6):
        x = ember.ones(3)
        np.testing.assert_array_equal(scripted(x, b1).numpy(), f(x, b2).numpy())
        np.testing.assert_array_equal(b1.numpy(), b2.numpy())


def test_breaks_channel_logs_the_reason(monkeypatch, capsys):
    monkeypatch.setenv("EMBER_LOG", "breaks")
    scripted = ember.script(_numpy)
    with pytest.warns(UserWarning):
        scripted(_input(0))
    err = capsys.readouterr().err
    assert "[ember breaks]" in err and "runs eagerly" in err
    assert "numpy()" in err and line_of(_numpy, "# break") in err


def test_another_threads_eager_work_during_a_trace_is_not_recorded_into_it():
    """A trace hears only the thread that runs it: another thread's eager ops, in-place writes
    and numpy() reads while the function is being traced neither enter its graph nor make it
    fall back, and the scripted function keeps giving its own results."""
    import threading

    import numpy as np

    inside, release = threading.Event(), threading.Event()

    def fn(x):
        y = x * 2
        inside.set()
        release.wait(10)  # the other thread works while this trace is open
        return y + 1

    scripted = ember.script(fn)
    other = ember.ones(4)
    seen = []

    def meddle():
        inside.wait(10)
        other.add_(5)  # an in-place write on this thread's own tensor
        seen.append(other.numpy().copy())
        seen.append((other * 3).sum().item())
        release.set()

    helper = threading.Thread(target=meddle)
    helper.start()
    x = ember.arange(4.0)
    got = scripted(x)
    helper.join()
    np.testing.assert_array_equal(got.numpy(), np.arange(4.0) * 2 + 1)
    assert seen[1] == 72.0
    assert not scripted.fallbacks, scripted.fallbacks
    ops = [n.op for n in scripted.graphs[0].nodes]
    assert ops == ["mul", "add"], ops
    other.fill_(0)  # the graph must not replay the other thread's write
    inside.clear()
    release.set()
    np.testing.assert_array_equal(scripted(x + 1).numpy(), (np.arange(4.0) + 1) * 2 + 1)
    np.testing.assert_array_equal(other.numpy(), np.zeros(4))
