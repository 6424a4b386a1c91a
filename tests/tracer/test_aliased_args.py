"""Arguments that share memory: a graph traced on distinct tensors must not run when one
tensor is passed twice (or a tensor and its view), since eager's write through one argument
is seen by the other."""

import warnings

import ember
import numpy as np
import pytest


def _update(a, b):
    a.add_(1.0)
    b.mul_(2.0)
    return a + b


def _run_both(fn, make_args):
    """fn eager and scripted on fresh arguments from make_args(): results and the
    arguments after the call."""
    scripted = ember.script(fn)
    out = []
    for f in (fn, scripted):
        args = make_args()
        result = f(*args)
        out.append((result.numpy().copy(), [a.numpy().copy() for a in args]))
    return out, scripted


def test_same_tensor_twice_after_distinct_calls_retraces():
    scripted = ember.script(_update)
    for _ in range(3):  # traced and run on distinct tensors, the fast path taken
        x, y = ember.ones(4), ember.ones(4)
        np.testing.assert_array_equal(scripted(x, y).numpy(), np.full(4, 4.0))
    x = ember.ones(4)
    result = scripted(x, x)
    # eager: x = (1 + 1) * 2 = 4, then x + x
    np.testing.assert_array_equal(x.numpy(), np.full(4, 4.0))
    np.testing.assert_array_equal(result.numpy(), np.full(4, 8.0))
    assert len(scripted.specializations) == 2
    assert "the same tensor" in scripted.recompiles[-1]
    # both kinds of call keep their own graph
    for _ in range(2):
        x = ember.ones(4)
        np.testing.assert_array_equal(scripted(x, x).numpy(), np.full(4, 8.0))
        np.testing.assert_array_equal(x.numpy(), np.full(4, 4.0))
        x, y = ember.ones(4), ember.ones(4)
        np.testing.assert_array_equal(scripted(x, y).numpy(), np.full(4, 4.0))
        np.testing.assert_array_equal(y.numpy(), np.full(4, 2.0))
    assert len(scripted.specializations) == 2


def test_same_tensor_twice_first_then_distinct():
    scripted = ember.script(_update)
    x = ember.ones(3)
    np.testing.assert_array_equal(scripted(x, x).numpy(), np.full(3, 8.0))
    x, y = ember.ones(3), ember.ones(3)
    np.testing.assert_array_equal(scripted(x, y).numpy(), np.full(3, 4.0))
    np.testing.assert_array_equal(x.numpy(), np.full(3, 2.0))
    np.testing.assert_array_equal(y.numpy(), np.full(3, 2.0))


def test_random_values_same_tensor_matches_eager():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((5, 6)).astype(np.float32)

    def fn(a, b):
        a.mul_(b)
        b.add_(a.exp())
        return (a * b).sum(dim=1)

    def make():
        x = ember.tensor(data.copy())
        return (x, x)

    (eager, eager_args), (compiled, compiled_args) = _run_both(fn, make)[0]
    np.testing.assert_allclose(compiled, eager, rtol=1e-6)
    for a, b in zip(eager_args, compiled_args):
        np.testing.assert_allclose(b, a, rtol=1e-6)


def test_write_into_a_tensor_with_its_view_passed_runs_eagerly():
    def fn(a, row):
        a.add_(1.0)
        return row * 2.0

    scripted = ember.script(fn)
    x, y = ember.zeros(2, 3), ember.zeros(2, 3)
    scripted(x, y[0])  # distinct memory: a graph
    x = ember.zeros(2, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = scripted(x, x[0])
    np.testing.assert_array_equal(result.numpy(), np.full(3, 2.0))  # the write is seen
    assert any("share memory" in str(w.message) for w in caught)
    x = ember.zeros(2, 3)
    np.testing.assert_array_equal(scripted(x, x[1]).numpy(), np.full(3, 2.0))
    np.testing.assert_array_equal(x.numpy(), np.ones((2, 3)))


def test_views_without_writes_keep_a_graph():
    def fn(a, b):
        return a @ b + 1.0

    scripted = ember.script(fn)
    rng = np.random.default_rng(1)
    x = ember.tensor(rng.standard_normal((4, 4)).astype(np.float32))
    np.testing.assert_allclose(scripted(x, x.t()).numpy(), fn(x, x.t()).numpy(), rtol=1e-6)
    assert not scripted.fallbacks
    assert scripted.specializations[-1].eager_reason is None


def test_side_by_side_slices_of_one_buffer_are_not_aliases():
    from ember.tracer.guards import alias_pattern

    whole = ember.zeros(8)
    a, b = whole[:4], whole[4:]
    assert alias_pattern([a, b]) is None
    assert alias_pattern([whole, a]) == ((0, 1, False),)
    assert alias_pattern([a, 3, a]) == ((0, 2, True),)
    assert alias_pattern([ember.zeros(2), ember.zeros(2)]) is None


def test_same_tensor_twice_gradients_match_eager():
    rng = np.random.default_rng(2)
    data = rng.standard_normal((3, 4))

    def fn(a, b):
        return (a * b.sin()).sum()

    grads = []
    for f in (fn, ember.script(fn)):
        for _ in range(2):
            x = ember.tensor(data.copy(), requires_grad=True)
            f(x, x).backward()
        grads.append(x.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)
    expected = np.sin(data) + data * np.cos(data)
    np.testing.assert_allclose(grads[0], expected, rtol=1e-12)


def test_strict_refuses_writes_through_overlapping_arguments():
    def fn(a, b):
        a.zero_()
        return b.sum()

    scripted = ember.script(fn, strict=True)
    x = ember.ones(2, 2)
    with pytest.raises(ember.EmberError, match="share memory"):
        scripted(x, x[0])


def test_a_graph_that_neither_writes_nor_was_traced_aliased_serves_aliased_calls():
    def fn(a, b):
        return a * 2.0 + b

    scripted = ember.script(fn)
    x, y = ember.ones(3), ember.ones(3)
    scripted(x, y)
    z = ember.ones(3)
    np.testing.assert_array_equal(scripted(z, z).numpy(), np.full(3, 3.0))
    np.testing.assert_array_equal(scripted(z, z.detach()).numpy(), np.full(3, 3.0))
    assert len(scripted.specializations) == 1


def test_a_graph_traced_on_one_tensor_twice_does_not_serve_distinct_ones():
    def fn(a, b):
        return a * 2.0 + b

    scripted = ember.script(fn)
    z = ember.ones(3)
    np.testing.assert_array_equal(scripted(z, z).numpy(), np.full(3, 3.0))
    x, y = ember.ones(3), ember.full((3,), 5.0)
    np.testing.assert_array_equal(scripted(x, y).numpy(), np.full(3, 7.0))
    assert len(scripted.specializations) == 2


def test_distinct_arguments_after_an_overlapping_call_get_a_graph():
    def fn(a, row):
        a.add_(1.0)
        return row * 2.0

    scripted = ember.script(fn)
    x = ember.zeros(2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted(x, x[0])  # runs eagerly: the write goes through overlapping arguments
    x, y = ember.zeros(2, 3), ember.zeros(2, 3)
    scripted(x, y[0])
    assert scripted.specializations[-1].eager_reason is None
    np.testing.assert_array_equal(x.numpy(), np.ones((2, 3)))


def test_tensors_over_a_buffer_no_array_owns_are_compared_by_bounds():
    from ember.tracer.guards import alias_pattern

    buffer = bytearray(np.zeros(6, np.float32).tobytes())
    x = ember.from_numpy(np.frombuffer(buffer, np.float32))
    assert alias_pattern([x, x[2:]]) == ((0, 1, False),)
    other = ember.from_numpy(np.frombuffer(buffer, np.float32)[3:])  # a second array, same bytes
    assert alias_pattern([x, other]) == ((0, 1, False),)
    assert alias_pattern([x[:3], other]) is None
    assert alias_pattern([x, ember.zeros(6)]) is None

    def fn(a, b):
        a.add_(1.0)
        b.mul_(2.0)
        return a + 0.0

    scripted = ember.script(fn)
    for _ in range(3):
        scripted(ember.zeros(6), ember.zeros(4))
    buffer[:] = np.zeros(6, np.float32).tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted(x, x[2:])
    np.testing.assert_array_equal(x.numpy(), [1, 1, 2, 2, 2, 2])
