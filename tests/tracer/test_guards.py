"""Guards: each fact a scripted function assumed is checked on every call; a changed fact
retraces and says which fact changed in plain words; an unchanged call runs the cached graph."""

import inspect
import warnings

import ember
import numpy as np
import pytest
from ember import nn
from ember.tracer import ScriptFallback


@pytest.fixture
def guard_log(monkeypatch, capsys):
    """stderr of the guards and recompiles channels, read (and cleared) by calling it."""
    monkeypatch.setenv("EMBER_LOG", "guards,recompiles")
    capsys.readouterr()

    def read() -> str:
        return capsys.readouterr().err

    return read


def line_of(fn, marker: str) -> str:
    """file:line of the first line of fn's source that contains marker."""
    lines, start = inspect.getsourcelines(fn)
    for offset, text in enumerate(lines):
        if marker in text:
            return f"{inspect.getsourcefile(fn)}:{start + offset}"
    raise AssertionError(f"{marker!r} not in {fn.__name__}")


def assert_retraced(fn, log: str, message: str, count: int = 2) -> None:
    assert message in log, log
    assert f"retracing because {message}" in log
    assert fn.recompiles[-1] == message
    assert len(fn.specializations) == count


def arange(*shape, dtype=ember.float32, requires_grad=False):
    data = np.arange(float(np.prod(shape))).reshape(shape) / 7.0 - 1.0
    return ember.tensor(data, dtype=dtype, requires_grad=requires_grad)


def test_failed_shape_guard_retraces_and_says_which_dim(guard_log):
    # dynamic=False: the two sizes stay two specializations (test_dynamic_shapes.py has the
    # automatic dynamic size)
    f = ember.script(lambda x: (x * 2).sum(dim=1), dynamic=False)
    f(arange(32, 4))
    out = f(arange(8, 4))
    assert_retraced(f, guard_log(), "x.shape[0]: 32 -> 8")
    np.testing.assert_allclose(out.numpy(), (arange(8, 4) * 2).sum(dim=1).numpy())


def test_rank_change_names_the_dim_count(guard_log):
    f = ember.script(lambda x: x + 1)
    f(arange(3, 4))
    f(arange(12))
    assert_retraced(f, guard_log(), "x.dim(): 2 -> 1")


def test_dtype_guard(guard_log):
    f = ember.script(lambda x: x * 3)
    f(arange(3))
    out = f(arange(3, dtype=ember.float64))
    assert_retraced(f, guard_log(), "x.dtype: ember.float32 -> ember.float64")
    assert out.dtype == ember.float64


def test_requires_grad_guard(guard_log):
    f = ember.script(lambda x: (x * x).sum())
    f(arange(3))
    x = arange(3, requires_grad=True)
    out = f(x)
    assert_retraced(f, guard_log(), "x.requires_grad: False -> True")
    out.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * arange(3).numpy())


def test_grad_mode_guard(guard_log):
    f = ember.script(lambda x: x * 2)
    x = arange(3, requires_grad=True)
    assert f(x).requires_grad
    with ember.no_grad():
        out = f(x)
    assert_retraced(f, guard_log(), "grad mode: True -> False")
    assert not out.requires_grad


def test_non_tensor_argument_value_guard(guard_log):
    def f(x, k, mode="add"):
        return x + k if mode == "add" else x * k

    scripted = ember.script(f)
    x = arange(3)
    scripted(x, 2)
    out = scripted(x, 3)
    assert_retraced(scripted, guard_log(), "k: 2 -> 3")
    np.testing.assert_allclose(out.numpy(), (x + 3).numpy())
    out = scripted(x, 3, mode="mul")
    message = "argument structure: ((*, *,), {},) -> ((*, *,), {'mode': *},)"
    assert_retraced(scripted, guard_log(), message, count=3)
    np.testing.assert_allclose(out.numpy(), (x * 3).numpy())
    out = scripted(x, 3, mode="pow")
    assert_retraced(scripted, guard_log(), "mode: 'mul' -> 'pow'", count=4)
    np.testing.assert_allclose(out.numpy(), (x * 3).numpy())


def test_module_training_mode_guard(guard_log):
    class Scale(nn.Module):
        def forward(self, x):
            return x * 2 if self.training else x - 1

    scripted = ember.script(Scale())
    x = arange(3)
    scripted(x)
    scripted.eval()
    out = scripted(x)
    assert_retraced(scripted._function, guard_log(), "self.training: True -> False")
    np.testing.assert_allclose(out.numpy(), (x - 1).numpy())
    scripted.train()
    np.testing.assert_allclose(scripted(x).numpy(), (x * 2).numpy())
    assert len(scripted.specializations) == 2  # back to the first graph, no retrace
    assert scripted.specializations[0].calls == 1


def test_tuple_length_guard(guard_log):
    f = ember.script(lambda xs: sum(x.sum() for x in xs))
    f((arange(2), arange(3)))
    out = f((arange(2), arange(3), arange(4)))
    assert_retraced(f, guard_log(), "argument structure: (((*, *,),), {},) -> (((*, *, *,),), {},)")
    np.testing.assert_allclose(out.item(), sum(arange(n).sum().item() for n in (2, 3, 4)))


def test_dict_keys_guard(guard_log):
    f = ember.script(lambda d: d["a"] * 2 + d.get("b", 0))
    f({"a": arange(3)})
    out = f({"a": arange(3), "b": arange(3)})
    assert_retraced(
        f, guard_log(), "argument structure: (({'a': *},), {},) -> (({'a': *, 'b': *},), {},)"
    )
    np.testing.assert_allclose(out.numpy(), (arange(3) * 3).numpy())


def _read_bool(x):
    if x.sum() > 0:  # read: bool
        return x * 2
    return -x


def _read_item(x):
    return x * x.max().item()  # read: item


def _read_int(x):
    return x * int(x.sum())  # read: int


def _read_float(x):
    return x + float(x.mean())  # read: float


def _read_tolist(x):
    return x * len([v for v in x.tolist() if v > 0])  # read: tolist


@pytest.mark.parametrize(
    "fn, kind, before, after",
    [
        (_read_bool, "bool", True, False),
        (_read_item, "item", 2.0, 5.0),
        (_read_int, "int", 3, 6),
        (_read_float, "float", 1.0, 2.0),
        (_read_tolist, "tolist", [1.0, 2.0, 0.0], [-1.0, 4.0, 2.0]),
    ],
)
def test_value_read_guard_names_the_line(guard_log, fn, kind, before, after):
    inputs = {
        "bool": ([1.0, 2.0, 0.0], [-1.0, -2.0, 0.0]),
        "item": ([1.0, 2.0, 0.0], [5.0, 2.0, 0.0]),
        "int": ([1.0, 2.0, 0.0], [1.0, 2.0, 3.0]),
        "float": ([1.0, 2.0, 0.0], [1.0, 2.0, 3.0]),
        "tolist": ([1.0, 2.0, 0.0], [-1.0, 4.0, 2.0]),
    }[kind]
    scripted = ember.script(fn)
    first, second = (ember.tensor(v) for v in inputs)
    scripted(first)
    scripted(first)  # the same value read: the graph runs
    assert scripted.specializations[0].calls == 1
    out = scripted(second)
    where = line_of(fn, f"# read: {kind}")
    assert_retraced(scripted, guard_log(), f"{kind}(tensor) at {where}: {before!r} -> {after!r}")
    np.testing.assert_allclose(out.numpy(), fn(second).numpy())


def test_unchanged_call_does_not_retrace(guard_log):
    f = ember.script(lambda x, y: (x @ y).relu())
    rng = np.random.default_rng(0)
    for call in range(5):
        x = ember.tensor(rng.standard_normal((4, 3)).astype(np.float32))
        y = ember.tensor(rng.standard_normal((3, 2)).astype(np.float32))
        np.testing.assert_allclose(f(x, y).numpy(), (x @ y).relu().numpy(), rtol=1e-6)
    assert len(f.specializations) == 1
    assert f.specializations[0].calls == 4
    assert f.recompiles == []
    assert guard_log() == ""


def test_specialization_bound_falls_back_with_one_warning(guard_log):
    # dynamic=False: with the automatic dynamic size, 1 -> 2 would give one graph for all
    f = ember.script(lambda x: x * 2, max_specializations=2, dynamic=False)
    f(arange(1))
    f(arange(2))
    with pytest.warns(UserWarning) as record:
        out = f(arange(3))
    assert len(record) == 1
    message = str(record[0].message)
    assert "max_specializations" in message
    assert "x.shape[0]: 2 -> 3" in message
    np.testing.assert_allclose(out.numpy(), (arange(3) * 2).numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # eager from now on, without another warning
        for n in (4, 5, 1):
            np.testing.assert_allclose(f(arange(n)).numpy(), (arange(n) * 2).numpy())
    assert len(f.specializations) == 2
    assert f.specializations[0].calls == 0  # even a shape it had a graph for runs eagerly


def test_strict_mode_raises_instead_of_falling_back():
    f = ember.script(lambda x: x * 2, strict=True, max_specializations=1)
    f(arange(2))
    f(arange(2))
    with pytest.raises(ScriptFallback, match="max_specializations"):
        f(arange(3))
    assert issubclass(ScriptFallback, ember.EmberError)


G = ember.ones(3)


def _uses_global(x):
    return x * G


def test_captured_global_is_read_live():
    global G
    G = ember.ones(3)
    f = ember.script(_uses_global)
    x = arange(3)
    f(x)
    G.mul_(3.0)  # updated in place: the graph reads its new value
    np.testing.assert_allclose(f(x).numpy(), (x * 3).numpy())
    G.add_(ember.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(f(x).numpy(), (x * ember.tensor([4.0, 5.0, 6.0])).numpy())
    assert len(f.specializations) == 1
    assert f.specializations[0].calls == 2


def test_captured_global_shape_change_retraces(guard_log):
    global G
    G = ember.ones(1)
    f = ember.script(_uses_global)
    x = arange(3)
    f(x)
    G.data = ember.tensor([1.0, 2.0, 3.0])
    out = f(x)
    assert_retraced(f, guard_log(), "G.shape[0]: 1 -> 3")
    np.testing.assert_allclose(out.numpy(), (x * ember.tensor([1.0, 2.0, 3.0])).numpy())


def test_rebound_global_tensor_retraces(guard_log):
    global G
    G = ember.ones(3)
    f = ember.script(_uses_global)
    x = arange(3)
    f(x)
    G = ember.full((3,), 5.0)  # a new tensor: the old graph input is stale
    out = f(x)
    assert_retraced(f, guard_log(), "G: replaced by another tensor")
    np.testing.assert_allclose(out.numpy(), (x * 5).numpy())


def test_closure_scalar_is_guarded_by_value(guard_log):
    scale = 2.0

    def f(x):
        return x * scale

    scripted = ember.script(f)
    x = arange(3)
    scripted(x)
    scale = 3.0
    out = scripted(x)
    assert_retraced(scripted, guard_log(), "scale: 2.0 -> 3.0")
    np.testing.assert_allclose(out.numpy(), (x * 3).numpy())


def test_explain_lists_guards():
    f = ember.script(_read_bool)
    f(ember.tensor([1.0, 3.0]))
    text = f.explain()
    assert "1 graph(s)" in text
    assert "guard x: {'shape': (2,)" in text
    assert f"bool(tensor) at {line_of(_read_bool, '# read: bool')} == True" in text


def test_graph_channel_prints_the_captured_graph(monkeypatch, capsys):
    monkeypatch.setenv("EMBER_LOG", "graph")
    f = ember.script(_read_float)
    f(arange(3))
    err = capsys.readouterr().err
    assert "[ember graph]" in err and str(f.graph) in err
    f(arange(3))
    assert capsys.readouterr().err == ""  # nothing captured, nothing printed


# -- known gaps: facts the tracer cannot see yet ----------------------------------------------


W = ember.tensor([1.0, 2.0], requires_grad=True)


def _sgd_on_global(lr):
    with ember.no_grad():
        W.sub_(W.grad * lr)


@pytest.mark.filterwarnings("ignore:ember.script")
def test_grad_attribute_is_never_frozen():
    # .grad is not captured yet: reading it falls back to eager, never a stale gradient
    W.data = ember.tensor([1.0, 2.0])
    scripted = ember.script(_sgd_on_global)
    expected = np.array([1.0, 2.0], dtype=np.float32)
    for step in range(3):
        W.grad = None
        ((W * W).sum() * (step + 1)).backward()
        scripted(0.1)
        expected = expected - 0.1 * 2 * (step + 1) * expected
        np.testing.assert_allclose(W.detach().numpy(), expected, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:ember.script")
def test_scripted_optimizer_step_matches_eager():
    # the step reads .grad (captured state) and creates its momentum buffers on the first
    # call: the optimizer's state is guarded, so the second call retraces with the buffers
    import copy

    from ember import optim

    ember.manual_seed(0)
    model = nn.Linear(3, 2)
    reference = copy.deepcopy(model)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt_reference = optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    step = ember.script(opt.step)
    x = ember.ones(4, 3)
    for _ in range(3):
        for net, optimizer, run in ((model, opt, step), (reference, opt_reference, None)):
            optimizer.zero_grad(set_to_none=False)
            (net(x) ** 2).sum().backward()
            (run or optimizer.step)()
        np.testing.assert_allclose(
            model.weight.detach().numpy(), reference.weight.detach().numpy(), rtol=1e-6
        )
    assert step.fallbacks == [] and step.graph is not None
    assert step.specializations[-1].calls >= 1


def test_guard_keys_are_records_that_compare_and_hash_by_the_facts():
    import dataclasses

    from ember.tracer.guards import CallKey, ObjectLeaf, TensorLeaf, ValueLeaf

    scripted = ember.script(lambda x, n, obj: x * n)
    marker = object()
    x = ember.ones(2, 3)
    key = scripted.guard_key((x, 2, marker), {})[2]
    same = scripted.guard_key((ember.zeros(2, 3), 2, marker), {})[2]
    assert isinstance(key, CallKey) and key == same and hash(key) == hash(same)
    assert {key: "graph"}[same] == "graph"  # a key finds its specialization by its facts
    assert key.leaves == (TensorLeaf((2, 3), x.dtype, x.device, False), ValueLeaf(int, 2),
                          ObjectLeaf(id(marker)))
    assert ValueLeaf(int, 1) != ValueLeaf(bool, True) != ValueLeaf(float, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.leaves[0].shape = (3, 3)
    for changed in ((ember.ones(3, 3), 2, marker), (x.double(), 2, marker),
                    (ember.ones(2, 3, requires_grad=True), 2, marker), (x, 2.0, marker),
                    (x, 2, object())):
        assert scripted.guard_key(changed, {})[2] != key


def test_optimizer_and_module_globals_changes_are_named():
    from ember import optim

    ember.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = ember.script(opt.step)
    for lr in (0.1, 0.1, 0.02):
        opt.zero_grad(set_to_none=False)
        (model(ember.ones(4, 3)) ** 2).sum().backward()
        opt.param_groups[0]["lr"] = lr
        step()
    assert step.recompiles == [
        "self: param_groups[0]: the optimizer's state changed (buffers created or replaced)",
        "self: param_groups[0]['lr']: 0.1 -> 0.02",
    ]

    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))

    def forward(x):
        return net(x)

    scripted = ember.script(forward)
    scripted(ember.ones(2, 3))
    net.eval()
    scripted(ember.ones(2, 3))
    assert scripted.recompiles == [
        "net: self.training: True -> False; self.0.training: True -> False; "
        "self.1.training: True -> False"
    ]


def _captured_weight_step():
    weight = ember.randn(3, 3, requires_grad=True)

    @ember.script
    def f(x):
        return (x @ weight).tanh().sum()

    x = ember.randn(2, 3)
    for _ in range(3):  # traced, then cached calls that find the captured tensor unchanged
        f(x)
    return f, weight, x


@pytest.mark.parametrize("change", ["data", "requires_grad_", "detach_", "inplace"])
def test_captured_metadata_changes_after_cached_calls_are_seen(change):
    """The cached check on captured tensors trusts a metadata epoch; every way a tensor's
    shape, dtype or requires_grad changes in place bumps it, so the next call sees it."""
    f, weight, x = _captured_weight_step()
    leaf = weight
    if change == "data":
        weight.data = ember.randn(3, 3, dtype=ember.float64)
        x = x.double()
    elif change == "requires_grad_":
        weight.requires_grad_(False)
    elif change == "detach_":
        weight.detach_()
    else:
        weight.requires_grad_(False)
        f(x)  # cached without grad
        leaf = ember.zeros(3, 3, requires_grad=True)
        weight.add_(leaf)  # now records: requires grad, its gradient flows to `leaf`
        assert weight.requires_grad
    out = f(x)
    expected = (x @ weight).tanh().sum()
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-6)
    assert out.requires_grad == weight.requires_grad
    assert f.recompiles, "the change was not seen"
    if weight.requires_grad:
        out.backward()
        expected_grad = (1 - (x @ weight.detach()).tanh() ** 2)
        np.testing.assert_allclose(leaf.grad.numpy(), (x.t() @ expected_grad).numpy(), rtol=1e-5)
