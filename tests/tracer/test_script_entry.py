"""A scripted call autograd does not record runs its graph as one native entry (as a loaded
graph does), and every guard still decides which graph runs: changed weights, shapes and grad
mode give eager's numbers."""

import threading

import ember
import ember.nn as nn
import numpy as np
import pytest
from ember.runtime.compiled import CompiledProgram
from ember.runtime.graph_entry import NativeGraph


def _mlp(seed=0):
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def _close(got, want):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


def test_a_scripted_inference_call_runs_one_native_entry_equal_to_eager():
    net = _mlp()
    scripted = ember.script(net)
    rng = np.random.default_rng(0)
    with ember.no_grad():
        for _ in range(5):
            x = ember.tensor(rng.standard_normal((1, 784), dtype=np.float32))
            _close(scripted(x), net(x))
    (sp,) = scripted.specializations
    assert isinstance(sp.program, NativeGraph)
    assert sp.calls == 4


def test_weights_changed_in_place_or_replaced_give_the_new_numbers():
    net = _mlp(1)
    scripted = ember.script(net)
    x = ember.randn(1, 784)
    with ember.no_grad():
        scripted(x), scripted(x)
        net[0].weight.mul_(-2.0)  # in place: the same array, new values
        _close(scripted(x), net(x))
        net[2].bias.copy_(ember.randn(256))
        _close(scripted(x), net(x))
        net[4].weight.data = ember.randn(10, 256)  # a new array of the same shape
        _close(scripted(x), net(x))
        net[4].weight = nn.Parameter(ember.randn(10, 256))  # a new parameter: retraces
        _close(scripted(x), net(x))
    assert len(scripted.specializations) == 2
    assert all(isinstance(sp.program, NativeGraph) for sp in scripted.specializations)


def test_an_input_changed_in_place_between_calls_gives_the_new_numbers():
    net = _mlp(2)
    scripted = ember.script(net)
    x = ember.randn(1, 784)
    with ember.no_grad():
        for _ in range(3):
            _close(scripted(x), net(x))
            x.mul_(1.5).add_(0.25)


def test_a_changed_shape_retraces_and_every_size_gives_eagers_numbers():
    net = _mlp(3)
    scripted = ember.script(net, dynamic=False)
    with ember.no_grad():
        for batch in (1, 3, 1, 8, 3):
            x = ember.randn(batch, 784)
            _close(scripted(x), net(x))
    assert len(scripted.specializations) == 3
    assert len(scripted.recompiles) == 2


def test_switching_grad_mode_runs_the_recording_graph_and_back():
    net = _mlp(4)
    scripted = ember.script(net)
    x = ember.randn(1, 784)
    with ember.no_grad():
        _close(scripted(x), net(x))
        _close(scripted(x), net(x))
    out = scripted(x)  # grad mode on, parameters require grad: autograd records the call
    assert out.requires_grad
    out.sum().backward()
    got = [p.grad.numpy().copy() for p in net.parameters()]
    net.zero_grad()
    net(x).sum().backward()
    for g, p in zip(got, net.parameters()):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-4, atol=1e-5)
    with ember.no_grad():
        out = scripted(x)
        assert not out.requires_grad
        _close(out, net(x))
    modes = sorted(sp.key.grad_enabled for sp in scripted.specializations)
    assert modes == [False, True]
    recording = next(sp for sp in scripted.specializations if sp.key.grad_enabled)
    assert isinstance(recording.program, CompiledProgram)
    assert not isinstance(recording.program, NativeGraph)


def test_non_contiguous_inputs_give_the_numbers_of_their_contiguous_copies():
    net = _mlp(5)
    scripted = ember.script(net)
    wide = ember.randn(784, 2)
    with ember.no_grad():
        for k in range(2):
            x = wide[:, k].reshape(1, 784)  # a strided view of another tensor
            _close(scripted(x), net(x))
            _close(scripted(x.contiguous()), net(x))


def test_an_output_that_views_an_input_stays_a_view_of_it():
    """Eager returns a view: writing to it writes the input. The entry would copy it, so such
    a graph runs step by step."""
    fn = ember.script(lambda x: x.reshape(-1))
    x = ember.randn(2, 3)
    with ember.no_grad():
        for _ in range(3):
            y = fn(x)
        y[0] = 100.0
    assert x.numpy()[0, 0] == 100.0
    assert not isinstance(fn.specializations[-1].program, NativeGraph)


def test_threads_calling_one_scripted_model_at_once_each_get_their_own_results():
    net = _mlp(6)
    scripted = ember.script(net)
    inputs = [ember.randn(1, 784) for _ in range(4)]
    with ember.no_grad():
        wants = [net(x).numpy() for x in inputs]
        scripted(inputs[0])
    errors = []

    def work(k):
        try:
            with ember.no_grad():
                for _ in range(50):
                    np.testing.assert_allclose(scripted(inputs[k]).numpy(), wants[k],
                                               rtol=1e-4, atol=1e-5)
        except Exception as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_small_mlps_match_eager_through_the_entry(dtype):
    rng = np.random.default_rng(7)
    for trial in range(4):
        sizes = [int(s) for s in rng.integers(1, 70, size=4)]
        layers = []
        for i, o in zip(sizes, sizes[1:]):
            layers += [nn.Linear(i, o), nn.Tanh()]
        net = nn.Sequential(*layers[:-1])
        if dtype == np.float64:
            net = net.double()
        scripted = ember.script(net)
        batch = int(rng.integers(1, 5))
        with ember.no_grad():
            for _ in range(3):
                x = ember.tensor(rng.standard_normal((batch, sizes[0])).astype(dtype))
                np.testing.assert_allclose(scripted(x).numpy(), net(x).numpy(),
                                           rtol=1e-4 if dtype == np.float32 else 1e-10,
                                           atol=1e-5 if dtype == np.float32 else 1e-12)
        assert isinstance(scripted.specializations[-1].program, NativeGraph), trial


SCALE = 2.0
OFFSET = ember.ones(4)


def _scaled(x):
    return (x * SCALE + OFFSET).relu()


def test_calls_after_the_first_still_check_globals_captured_tensors_and_requires_grad():
    """Repeated calls take the shortest path to the program, past every guard: a changed
    global, a captured tensor of another shape, an argument that requires grad, and a
    second argument each still give eager's numbers."""
    global SCALE, OFFSET
    fn = ember.script(_scaled)
    x = ember.randn(4)
    try:
        with ember.no_grad():
            for _ in range(3):
                np.testing.assert_allclose(fn(x).numpy(), _scaled(x).numpy(), rtol=1e-6)
            SCALE = -3.0
            np.testing.assert_allclose(fn(x).numpy(), _scaled(x).numpy(), rtol=1e-6)
            OFFSET = ember.ones(1) * 0.5  # broadcast: another shape
            np.testing.assert_allclose(fn(x).numpy(), _scaled(x).numpy(), rtol=1e-6)
            np.testing.assert_allclose(fn(x).numpy(), _scaled(x).numpy(), rtol=1e-6)
        y = ember.randn(4, requires_grad=True)
        out = fn(y)
        assert out.requires_grad
        out.sum().backward()
        assert y.grad is not None
        with pytest.raises(TypeError):
            fn(x, x)
    finally:
        SCALE, OFFSET = 2.0, ember.ones(4)
    assert len(fn.specializations) >= 4


def test_a_large_output_the_caller_dropped_is_reused_and_one_it_holds_is_never():
    """A fresh 2 MB array per call would page-fault every call: the entry hands back the
    caller's dropped array of the last call instead, and never one the caller still holds."""
    fn = ember.script(lambda x: x * 2 + 1)
    x = ember.randn(1 << 19)

    def address(t):
        return t.numpy().__array_interface__["data"][0]

    with ember.no_grad():
        fn(x)
        a = fn(x)
        where = address(a)
        del a
        gap = np.ones(1 << 19, np.float32)  # would take the bytes of a freed `a`
        b = fn(x)
        assert address(b) == where and address(b) != gap.__array_interface__["data"][0]
        assert isinstance(fn.specializations[-1].program, NativeGraph)
        c = fn(x + 1)
        assert address(c) != address(b)
        np.testing.assert_allclose(b.numpy(), x.numpy() * 2 + 1, rtol=1e-6)
        np.testing.assert_allclose(c.numpy(), (x.numpy() + 1) * 2 + 1, rtol=1e-6)
