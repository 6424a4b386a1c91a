"""An argument that is (or shares memory with) a tensor the function also reads from outside: a
global, a closure variable, a module's parameter. The trace of such a call takes the two for one
value, and a graph that writes one must not run when a call passes the other."""

import warnings

import ember
import numpy as np
import pytest

W = ember.full((3,), 3.0)
ROWS = ember.full((2, 3), 3.0)


def _times_global(a):
    return a * W


def _write_arg_read_global(a):
    a.add_(1.0)
    return a * W


def _write_global_read_arg(a):
    W.mul_(2.0)
    return a + 1.0


@pytest.fixture(autouse=True)
def _fresh_global():
    W.fill_(3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the aliased calls run eagerly, with a warning
        yield


def test_traced_on_the_global_then_called_with_another_tensor():
    scripted = ember.script(_times_global)
    np.testing.assert_array_equal(scripted(W).numpy(), np.full(3, 9.0))
    for _ in range(3):  # before: the graph traced as a * a gave 1
        np.testing.assert_array_equal(scripted(ember.ones(3)).numpy(), np.full(3, 3.0))
    np.testing.assert_array_equal(scripted(W).numpy(), np.full(3, 9.0))


def test_a_view_of_the_global_is_an_alias_too():
    def f(a):
        a.add_(1.0)
        return a * ROWS

    scripted = ember.script(f)
    for _ in range(3):
        ROWS.fill_(3.0)
        np.testing.assert_array_equal(scripted(ember.ones(3)).numpy(), np.full((2, 3), 6.0))
    ROWS.fill_(3.0)
    result = scripted(ROWS[0])  # eager: row 0 becomes 4, then row 0 * ROWS
    np.testing.assert_array_equal(result.numpy(), [[16.0] * 3, [12.0] * 3])
    np.testing.assert_array_equal(ROWS.numpy(), [[4.0] * 3, [3.0] * 3])


@pytest.mark.parametrize("fn, expect_w", [(_write_arg_read_global, 4.0),
                                          (_write_global_read_arg, 6.0)])
def test_a_graph_that_writes_does_not_run_on_the_global(fn, expect_w):
    scripted = ember.script(fn)
    for _ in range(3):  # traced and run on other tensors
        W.fill_(3.0)
        scripted(ember.ones(3))
    W.fill_(3.0)
    result = scripted(W)
    W_after = W.numpy().copy()
    W.fill_(3.0)
    expected = fn(W)
    np.testing.assert_array_equal(W_after, np.full(3, expect_w))
    np.testing.assert_array_equal(result.numpy(), expected.numpy())
    W.fill_(3.0)  # calls on other tensors still run the graph, and match eager
    np.testing.assert_array_equal(scripted(ember.ones(3)).numpy(), fn(ember.ones(3)).numpy())
    assert any(sp.eager_reason is None for sp in scripted.specializations)


def test_closure_tensor():
    w = ember.full((3,), 2.0)

    def f(a):
        a.mul_(3.0)
        return a + w

    scripted = ember.script(f)
    for _ in range(3):
        np.testing.assert_array_equal(scripted(ember.ones(3)).numpy(), np.full(3, 5.0))
    result = scripted(w)  # eager: w = 6, then w + w
    np.testing.assert_array_equal(result.numpy(), np.full(3, 12.0))
    np.testing.assert_array_equal(w.numpy(), np.full(3, 6.0))


def test_module_parameter_as_argument():
    ember.manual_seed(0)
    lin = ember.nn.Linear(3, 3, bias=False)
    scripted = ember.script(lin)
    x = ember.randn(3, 3)
    with ember.no_grad():
        np.testing.assert_allclose(scripted(lin.weight).numpy(), lin(lin.weight).numpy(),
                                   rtol=1e-6)
        for _ in range(2):
            np.testing.assert_allclose(scripted(x).numpy(), lin(x).numpy(), rtol=1e-6)
        np.testing.assert_allclose(scripted(lin.weight).numpy(), lin(lin.weight).numpy(),
                                   rtol=1e-6)


def test_distinct_tensors_keep_the_graph_and_reach_no_eager_path():
    scripted = ember.script(_write_arg_read_global)
    for _ in range(4):
        scripted(ember.ones(3))
    assert len(scripted.specializations) == 1
    assert scripted.specializations[0].eager_reason is None
    assert scripted.specializations[0].outside_written  # the writing graph checks its calls


@pytest.mark.parametrize("write", ["copy_", "fill_", "zero_", "copy_ returned"])
def test_a_write_to_an_outside_tensor_it_never_reads_is_kept_on_every_call(write):
    # the trace bound the written value but recorded no state: the first (traced) call wrote
    # W, later calls of the graph did not
    def f(a):
        if write == "copy_":
            W.copy_(a + 1.0)
        elif write == "fill_":
            W.fill_(7.0)
        elif write == "zero_":
            W.zero_()
        else:
            return W.copy_(a + 1.0)
        return a * 2.0

    scripted = ember.script(f)
    for _ in range(4):
        W.fill_(3.0)
        got = scripted(ember.full((3,), 5.0))
        after = W.numpy().copy()
        W.fill_(3.0)
        expected = f(ember.full((3,), 5.0))
        np.testing.assert_array_equal(after, W.numpy())
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    W.fill_(3.0)  # and the graph that writes W does not run on W itself
    got = scripted(W).numpy().copy()
    W.fill_(3.0)
    np.testing.assert_array_equal(got, f(W).numpy())


def test_a_module_buffer_written_without_a_read():
    class Keep(ember.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("last", ember.zeros(3))

        def forward(self, x):
            self.last.copy_(x + 1.0)
            return x * 2.0

    module = Keep()
    scripted = ember.script(module)
    for step in range(4):
        scripted(ember.full((3,), float(step)))
        np.testing.assert_array_equal(module.last.numpy(), np.full(3, step + 1.0))


def test_every_argument_over_one_array_is_checked():
    flat = ember.zeros(20)
    first = flat[0:10]

    def g(a, b):
        a.add_(1.0)
        b.add_(1.0)
        return a * first

    scripted = ember.script(g)
    for _ in range(3):
        scripted(ember.zeros(10), ember.zeros(10))
    flat.zero_()
    result = scripted(flat[0:10], flat[10:20])  # the first argument is `first`
    np.testing.assert_array_equal(result.numpy(), np.ones(10))
    np.testing.assert_array_equal(flat.numpy(), np.ones(20))
