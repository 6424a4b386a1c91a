"""link_op's short paths (one tensor input, or two, and one output, outside a trace) build the
node the general loop builds: the same edges, metadata, saved tensors and version records. Each
case runs the op twice: once through link_op as dispatch calls it, once through the general
loop (the short paths switched off), and compares the two nodes field by field."""

import warnings

import ember
import numpy as np
import pytest
from ember.autograd import graph
from ember.runtime.compiled import native_enabled


def _general_only(monkeypatch):
    """Route link_op's short paths to the general loop."""
    def general(node, rule, inputs, out):
        graph._link_general(node, rule, inputs, (out,))

    monkeypatch.setattr(graph, "_link_one", general)
    monkeypatch.setattr(graph, "_link_two", general)


def _fields(result):
    """The node of `result` with tensors named by what they are to the call (the result, or
    an input by identity) and edges by where they lead (a leaf's variable, or a node's kind)."""
    node = result.grad_fn

    def name(t):
        if t is None:
            return None
        if t is result or (isinstance(t, ember.Tensor) and t._data is result._data
                           and t._version is result._version):
            return "result"  # the result, or the alias of it a node keeps (_saved_output)
        if not isinstance(t, ember.Tensor):
            return t  # a number the node keeps
        # an input the case made (b.t()) is a new tensor in each run: named by its history
        return id(t) if t.grad_fn is None else (t.grad_fn.name(), tuple(t.shape))

    def names(items):
        return None if items is None else tuple(name(t) for t in items)

    def edge(e):
        if e is None:
            return None
        target, nr = e
        if isinstance(target, graph.AccumulateGrad):
            return ("leaf", id(target.variable), nr)
        return (target.name(), nr)

    return {
        "op": node.op,
        "attrs": node.attrs,
        "next": tuple(edge(e) for e in node.next_functions),
        "needs": tuple(node.needs_input_grad),
        "input_meta": tuple(node.input_meta),
        "out_meta": tuple(node.out_meta),
        "inputs": names(node.inputs),
        "outputs": names(node.outputs),
        "versions": [(names(tensors), tuple(v)) for tensors, v in node.saved_versions],
        "freed": node.freed,
        "pre_hooks": node.pre_hooks,
    }


def _leaf(shape, requires_grad=True, seed=0):
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return ember.tensor(data, requires_grad=requires_grad)


CASES = {
    "mul, both need grad": lambda a, b, c: a * b,
    "mul, one needs grad": lambda a, b, c: a * c,
    "mul, the other needs grad": lambda a, b, c: c * a,
    "add, a non-leaf input": lambda a, b, c: (a * 2.0) + b,
    "matmul": lambda a, b, c: a @ b.t(),
    "exp (saves its output)": lambda a, b, c: a.exp(),
    "relu": lambda a, b, c: a.relu(),
    "sum over a dim": lambda a, b, c: a.sum(-1),
    "view of a leaf": lambda a, b, c: a.view(12),
    "view of a view": lambda a, b, c: a.view(12).view(2, 6),
    "slice": lambda a, b, c: a[:, 1:3],
    "div": lambda a, b, c: a / b,
    "mul by a number (the general loop both times)": lambda a, b, c: a * 0.5,
}


@pytest.mark.parametrize("name", CASES)
def test_short_paths_build_the_general_node(name, monkeypatch):
    a, b, c = _leaf((3, 4)), _leaf((3, 4), seed=1), _leaf((3, 4), False, seed=2)
    fn = CASES[name]
    fast = fn(a, b, c)
    with monkeypatch.context() as m:
        _general_only(m)
        slow = fn(a, b, c)
    assert type(fast.grad_fn) is type(slow.grad_fn)
    assert _fields(fast) == _fields(slow)
    assert fast.requires_grad and slow.requires_grad
    # and both give the same gradients
    (ga,) = ember.autograd.grad(fast.sum(), a, allow_unused=True)
    (gs,) = ember.autograd.grad(slow.sum(), a, allow_unused=True)
    np.testing.assert_array_equal(ga.numpy(), gs.numpy())


def test_short_paths_keep_the_version_checks():
    a = _leaf((2, 3))
    out = a.exp()  # saves its output
    with ember.no_grad():
        out.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_an_integer_output_gets_no_history():
    a = _leaf((2, 3))
    ints = a.argmax(-1)
    assert not ints.requires_grad and ints.grad_fn is None


def test_planned_quiet_ops_stay_quiet():
    # exp overflows and log of zero: inf and -inf without a warning, planned calls included
    x = ember.tensor([1000.0, 0.0])
    for _ in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            big = x.exp()
            logs = x.log()
        assert np.isinf(big.numpy()[0]) and np.isneginf(logs.numpy()[1])
    # numpy's own error state is untouched outside the call
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.exp(np.float32(1000.0))
    assert any(issubclass(w.category, RuntimeWarning) for w in caught)


def test_a_negative_dim_and_a_bad_dim_after_the_short_path():
    x = ember.ones(2, 3)
    assert x.transpose(-1, 0).shape == (3, 2)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.transpose(2, 0)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.sum(-3)


def test_ember_compile_is_read_at_each_call(monkeypatch):
    assert native_enabled()
    monkeypatch.setenv("EMBER_COMPILE", "0")
    assert not native_enabled()
    monkeypatch.setenv("EMBER_COMPILE", "1")
    assert native_enabled()
    monkeypatch.delenv("EMBER_COMPILE")
    assert native_enabled()
