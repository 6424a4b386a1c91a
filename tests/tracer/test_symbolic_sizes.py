"""dynamic=True traces symbolic sizes from the first call, and sizes the Python code reads stay
expressions (SizeInt): one graph serves every size, and whatever a graph cannot express makes
its size exact again. Every case is checked against eager at sizes it was not traced with."""

import types
import warnings

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import nn
from ember.tracer.sizes import SizeInt


def _x(*shape, seed=0):
    return ember.tensor(np.random.default_rng(seed + sum(shape)).standard_normal(shape)
                        .astype("f4"))


def _check(fn, shapes, *, retraces, specializations=1, **options):
    scripted = ember.script(fn, **options)
    for shape in shapes:
        x = _x(*shape)
        got, want = scripted(x), fn(x)
        got = got if isinstance(got, tuple) else (got,)
        want = want if isinstance(want, tuple) else (want,)
        for g, w in zip(got, want):
            if isinstance(w, ember.Tensor):
                assert tuple(g.shape) == tuple(w.shape)
                np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)
            else:
                assert g == w and type(g) is int
    assert len(scripted.recompiles) == retraces, scripted.explain()
    assert len(scripted.specializations) == specializations, scripted.explain()
    return scripted


def test_dynamic_true_makes_every_argument_dim_symbolic_from_the_first_call():
    scripted = _check(lambda x: (x * 2).sum(1).softmax(0), [(4, 3), (7, 5), (2, 9)],
                      retraces=0, dynamic=True)
    assert "s0" in str(scripted.graph) and "s1" in str(scripted.graph)


def test_sizes_ember_reads_follow_the_symbol_into_attrs():
    # flatten, cross_entropy's reshapes and softmax's read sizes inside ember: symbolic
    def fn(x):
        return F.log_softmax(x.flatten(), 0).reshape(-1, 1).expand(-1, 3).sum(0)

    scripted = _check(fn, [(4, 6), (3, 8), (5, 2)], retraces=0, dynamic=True)
    assert "s0*s1" in str(scripted.graph)


def test_a_size_the_function_reads_itself_becomes_exact_and_only_that_one():
    def fn(x):
        b = x.size(0)  # a plain int in the function's hands: exact
        return x.reshape(b, -1, 1).sum(2) * 2

    scripted = _check(fn, [(4, 6), (4, 8), (4, 3), (5, 3)], retraces=1, specializations=2,
                      dynamic=True)
    assert "'s1 (>= 2)'" in scripted.explain()
    assert type(fn_reads(lambda x: x.shape[0])) is int


def fn_reads(read):
    seen = []
    ember.script(lambda x: seen.append(read(x)) or x * 1, dynamic=True)(_x(3, 2))
    return seen[0]


def test_a_loop_over_a_size_makes_it_exact():
    def fn(x):
        total = x[0]
        for i in range(1, x.shape[0]):  # the unrolled loop holds for this size only
            total = total + x[i] * i
        return total

    _check(fn, [(3, 2), (5, 2), (5, 4)], retraces=2, specializations=3, dynamic=True)


def test_sizes_as_number_operands_or_float_arithmetic_are_exact():
    _check(lambda x: x * x.shape[0], [(3, 2), (4, 2)], retraces=1, specializations=2,
           dynamic=True)
    _check(lambda x: x.sum() / x.shape[1], [(3, 2), (3, 5)], retraces=1, specializations=2,
           dynamic=True)
    _check(lambda x: x * (1.0 / x.shape[0]), [(3, 2), (4, 2)], retraces=1,
           specializations=2, dynamic=True)


def test_factories_made_from_sizes_are_exact():
    _check(lambda x: x + ember.zeros(x.shape[0], 1), [(3, 2), (4, 2)], retraces=1,
           specializations=2, dynamic=True)
    _check(lambda x: x + ember.arange(x.shape[1]), [(3, 2), (3, 4)], retraces=1,
           specializations=2, dynamic=True)
    _check(lambda x: x * ember.tensor([x.shape[0]]), [(3, 2), (4, 2)], retraces=1,
           specializations=2, dynamic=True)


def test_like_factories_and_draws_keep_symbolic_sizes():
    """zeros_like, ones_like, full_like, empty_like and randn_like are graph ops of the
    input's (symbolic) shape: one graph for every size."""
    scripted = _check(lambda x: ember.zeros_like(x) + ember.ones_like(x) * 2
                      + ember.full_like(x, 0.5) + ember.empty_like(x).fill_(1.0),
                      [(3, 2), (4, 2), (7, 5)], retraces=0, dynamic=True)
    assert "full(shape=(s0, s1)" in str(scripted.graph), scripted.graph
    drawn = ember.script(lambda x: x + ember.randn_like(x) * 0, dynamic=True)
    for n in (3, 5, 8):
        assert tuple(drawn(_x(n, 2)).shape) == (n, 2)
    assert len(drawn.specializations) == 1 and not drawn.recompiles


def test_a_returned_size_is_the_size_of_each_call():
    _check(lambda x: (x * 2, x.shape[0], len(x)), [(3, 2), (4, 2), (4, 2)], retraces=1,
           specializations=2, dynamic=True)


def _as_ember_code(fn):
    """fn as if ember's own code (a layer) had it: the sizes it reads are SizeInts."""
    return types.FunctionType(fn.__code__, {**fn.__globals__, "__name__": "ember.layer"},
                              fn.__name__, fn.__defaults__, fn.__closure__)


def test_a_branch_in_ember_code_on_a_size_becomes_a_shape_guard():
    inner = _as_ember_code(lambda x: x * 2 if x.shape[0] % 2 == 0 else x * 3)
    scripted = _check(lambda x: inner(x) + 1, [(4, 2), (6, 2), (5, 2), (7, 2), (8, 2)],
                      retraces=1, specializations=2, dynamic=True)
    text = scripted.explain()
    assert "(s0%2 == 0) is True" in text and "(s0%2 == 0) is False" in text
    assert "s0%2 == 0 at" in scripted.specializations[0].failed_guard((5,))


def test_a_symbol_meeting_a_fixed_size_becomes_exact():
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    scripted = ember.script(model, dynamic=True)
    with ember.no_grad():
        for n in (4, 6, 9):
            x = _x(n, 8)
            np.testing.assert_allclose(scripted(x).numpy(), model(x).numpy(), rtol=1e-5,
                                       atol=1e-6)
    assert len(scripted.recompiles) == 0 and len(scripted.specializations) == 1
    assert "'s0 (>= 2)', 8" in scripted.explain()  # the batch is symbolic, the features exact


def test_size_one_and_another_rank_are_not_served_by_the_symbolic_graph():
    # 1 is specialized (as in PyTorch), and a new rank is a new structure: each traces afresh
    _check(lambda x: x.sum(0) * 2, [(4, 3), (5, 3), (1, 3), (5, 3), (2, 3, 4), (3, 2, 5)],
           retraces=2, specializations=3, dynamic=True)


def test_gradients_through_symbolic_graphs_match_eager():
    ember.manual_seed(0)
    eager = nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.LayerNorm(12), nn.Linear(12, 3))
    copy_ = nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.LayerNorm(12), nn.Linear(12, 3))
    copy_.load_state_dict(eager.state_dict())
    scripted = ember.script(copy_, dynamic=True)
    for n in (4, 7, 3, 10):
        x = _x(n, 6)
        for net in (eager, scripted):
            net.zero_grad()
            out = net(x)
            F.cross_entropy(out, ember.tensor(np.arange(n) % 3)).backward()
        for p, q in zip(copy_.parameters(), eager.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert len(scripted.recompiles) == 0


def test_a_whole_training_step_with_symbolic_batch_matches_eager():
    def build():
        ember.manual_seed(1)
        model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
        return model, ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    (m1, o1), (m2, o2) = build(), build()

    def make_step(model, opt):
        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return step

    eager_step, scripted = make_step(m1, o1), ember.script(make_step(m2, o2), dynamic=True)
    for k, n in enumerate((6, 4, 9, 4, 7)):
        x, y = _x(n, 5, seed=k), ember.tensor(np.arange(n) % 3)
        np.testing.assert_allclose(scripted(x, y).item(), eager_step(x, y).item(), rtol=1e-5)
    for p, q in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
    # the first call finds no .grad and no momentum buffers: the second retraces for that,
    # and its graph, symbolic in the batch, serves every later size
    assert len(scripted.specializations) == 2 and len(scripted.recompiles) == 1
    assert "'s0 (>= 2)', 5" in scripted.explain()


def test_attention_with_a_symbolic_sequence_length_matches_eager():
    ember.manual_seed(0)
    attention = nn.MultiheadAttention(16, 4, batch_first=True)
    attention.eval()

    def fn(x):
        return attention(x, x, x, need_weights=False)[0]

    scripted = ember.script(fn, dynamic=True)
    with ember.no_grad():
        for b, t in ((2, 5), (3, 7), (2, 9)):
            x = _x(b, t, 16)
            np.testing.assert_allclose(scripted(x).numpy(), fn(x).numpy(), rtol=1e-4,
                                       atol=1e-5)
    assert len(scripted.recompiles) == 0


def test_size_int_arithmetic_keeps_the_expression_and_the_value():
    from ember.ir.symbolic import SymInt
    from ember.tracer.tracer import Trace, tracing

    trace = Trace("t")
    trace.sizes = {"s0": 5}
    n = SizeInt(5, SymInt("s0"), trace)
    values = [n + 1, 2 * n, n - 1, 3 - n, n // 2, n % 3, -n, n * n, n * 4 // 2]
    assert [int.__int__(v) for v in values] == [6, 10, 4, -2, 2, 2, -5, 25, 10]
    assert all(isinstance(v, SizeInt) for v in values)
    assert [str(v.expr) for v in values] == [
        "s0 + 1", "s0*2", "s0 - 1", "-s0 + 3", "s0//2", "s0%3", "-s0", "s0*s0", "s0*2"]
    with tracing(trace):
        assert n > 1 and n != 1 and n + 1 > n and not trace.size_guards  # decided: s0 >= 2
        assert n > 4 and trace.size_guards[-1][1:4] == (">", 4, True)
        assert not trace.fixed
        assert n / 2 == 2.5 and trace.fixed == {"s0": 5}  # a float result: exact


def _ones_f64(*shape):
    return ember.tensor(np.ones(shape))


@pytest.mark.parametrize("dynamic", [True, None], ids=["dynamic_true", "size_retrace"])
def test_stride_read_by_the_function_makes_its_sizes_exact(dynamic):
    """A stride read by the function follows from the sizes: they become exact (a graph
    reused at another size would return this call's stride)."""

    def fn(x):
        return x * x.stride(0)

    scripted = ember.script(fn, dynamic=dynamic)
    for n in (4, 5, 6, 9):
        x = _ones_f64(3, n)
        np.testing.assert_array_equal(scripted(x).numpy(), fn(x).numpy(),
                                      err_msg=f"size {n}")


def test_is_contiguous_read_by_the_function_makes_its_sizes_exact():
    """Contiguity read by the function follows from the sizes: x[::2] of an (n, 3) input is
    contiguous only when n == 2, so a graph traced there must not serve n == 3, 4, 6."""

    def fn(x):
        y = x[::2]
        return y * 2 if y.is_contiguous() else y * 3

    scripted = ember.script(fn, dynamic=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in (2, 3, 4, 6):
            x = _ones_f64(n, 3)
            np.testing.assert_array_equal(scripted(x).numpy(), fn(x).numpy(),
                                          err_msg=f"size {n}")
