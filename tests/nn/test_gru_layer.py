"""The gru_layer op: nn.GRU in float32 and float64 runs one op per layer and direction (and one
backward op), equal to the layer stepped in Tensor ops and to torch.nn.GRU; GRUCell is one
op of one step; scripted graphs hold one node per layer; the op's errors, graph files and
ONNX export (against onnxruntime)."""

import copy

import ember
import numpy as np
import pytest
from ember import nn
from ember._tensor import dispatch
from ember.nn.layers import rnn as rnn_layers

TOLERANCE = {"float32": (2e-5, 2e-6), "float64": (1e-11, 1e-12)}

CONFIGS = [
    {},
    {"num_layers": 2, "bidirectional": True},
    {"batch_first": True, "bias": False},
    {"num_layers": 3, "batch_first": True, "bidirectional": True},
]


def _inputs(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _model(dtype, options, input_size=6, hidden=9):
    ember.manual_seed(1)
    return nn.GRU(input_size, hidden, **options).to(getattr(ember, dtype))


def _case(dtype, options, steps=7, batch=4, input_size=6, hidden=9):
    model = _model(dtype, options, input_size, hidden)
    layers_dirs = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    shape = (batch, steps) if options.get("batch_first") else (steps, batch)
    x = _inputs(shape + (input_size,), dtype)
    h0 = _inputs((layers_dirs, batch, hidden), dtype, 1)
    weigh = _inputs(shape + (hidden * (2 if options.get("bidirectional") else 1),), dtype, 3)
    return model, x, h0, weigh


def _run(model, x, h0, weigh):
    """Output, h_n and the gradients of input, h0 and every parameter."""
    model.zero_grad()
    x = ember.tensor(x, requires_grad=True)
    h0 = ember.tensor(h0, requires_grad=True)
    out, h_n = model(x, h0)
    ((out * ember.tensor(weigh)).sum() + (h_n * h_n).sum()).backward()
    grads = [x.grad, h0.grad, *(p.grad for p in model.parameters())]
    return [t.detach().numpy().copy() for t in (out, h_n, *grads)]


def _stepped(monkeypatch):
    """Make nn.GRU step its layers in Tensor ops, as it did before the op."""
    def step(x_proj, state, w):
        return (rnn_layers._gru_step(x_proj, state[0], w["weight_hh"], w.get("bias_hh")),)

    monkeypatch.setattr(rnn_layers, "_gru_layer", rnn_layers._stepped(step))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("options", CONFIGS, ids=str)
@pytest.mark.parametrize("sizes", [(7, 4, 9), (3, 1, 1), (5, 25, 40)], ids=str)
def test_the_op_equals_the_stepped_layer(monkeypatch, dtype, options, sizes):
    steps, batch, hidden = sizes
    model, x, h0, weigh = _case(dtype, options, steps, batch, hidden=hidden)
    one_op = _run(model, x, h0, weigh)
    _stepped(monkeypatch)
    stepped = _run(model, x, h0, weigh)
    rtol, atol = TOLERANCE[dtype]
    for a, b in zip(one_op, stepped):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("options", CONFIGS, ids=str)
@pytest.mark.parametrize("sizes", [(7, 4, 6, 9), (3, 1, 2, 33), (12, 5, 17, 64)], ids=str)
def test_values_and_gradients_match_torch(dtype, options, sizes):
    torch = pytest.importorskip("torch")
    steps, batch, input_size, hidden = sizes
    model, x, h0, weigh = _case(dtype, options, steps, batch, input_size, hidden)
    theirs = torch.nn.GRU(input_size, hidden, **options).to(getattr(torch, dtype))
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in model.state_dict().items()})
    tx = torch.tensor(x, requires_grad=True)
    th = torch.tensor(h0, requires_grad=True)
    out, h_n = theirs(tx, th)
    ((out * torch.tensor(weigh)).sum() + (h_n * h_n).sum()).backward()
    expected = [t.detach().numpy() for t in (out, h_n, tx.grad, th.grad,
                                             *(p.grad for p in theirs.parameters()))]
    rtol, atol = TOLERANCE[dtype]
    if dtype == "float32":
        atol *= 10  # sums over 12 steps of 64-wide rows
    for got, want, name in zip(_run(model, x, h0, weigh), expected,
                               ["output", "h_n", "x.grad", "h0.grad",
                                *(n for n, _ in theirs.named_parameters())]):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


def test_a_gru_dispatches_one_op_per_layer_and_direction(dispatched_ops):
    options = {"num_layers": 2, "bidirectional": True}
    model, x, h0, weigh = _case("float32", options)
    seen = dispatched_ops(lambda: _run(model, x, h0, weigh))
    assert seen.count("gru_layer") == 4 and seen.count("gru_layer_backward") == 4
    assert "sigmoid" not in seen and "tanh" not in seen
    # no op per time step: twice the steps dispatch the same ops
    model, x, h0, weigh = _case("float32", options, steps=14)
    assert dispatched_ops(lambda: _run(model, x, h0, weigh)) == seen


def test_float16_keeps_the_stepped_layer(dispatched_ops):
    model = nn.GRU(4, 5).to(ember.float16)
    seen = dispatched_ops(lambda: model(ember.randn(3, 2, 4).to(ember.float16)))
    assert "gru_layer" not in seen and "sigmoid" in seen


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_a_cell_is_one_op_equal_to_its_stepped_ops(monkeypatch, dtype, bias, batched,
                                                   dispatched_ops):
    ember.manual_seed(2)
    cell = nn.GRUCell(5, 7, bias=bias).to(getattr(ember, dtype))
    x = _inputs((3, 5) if batched else (5,), dtype)
    h = _inputs((3, 7) if batched else (7,), dtype, 1)

    def run():
        cell.zero_grad()
        xt, ht = ember.tensor(x, requires_grad=True), ember.tensor(h, requires_grad=True)
        out = cell(xt, ht)
        (out * out).sum().backward()
        return [t.detach().numpy().copy() for t in (out, xt.grad, ht.grad,
                                                     *(p.grad for p in cell.parameters()))]

    seen = dispatched_ops(run)
    assert seen.count("gru_layer") == 1 and "sigmoid" not in seen
    one_op = run()
    _stepped(monkeypatch)
    monkeypatch.setattr(rnn_layers, "float32", None)  # the cell's dtype test then fails
    monkeypatch.setattr(rnn_layers, "float64", None)
    assert "gru_layer" not in dispatched_ops(run)
    rtol, atol = TOLERANCE[dtype]
    for a, b in zip(one_op, run()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_a_cell_without_a_state_starts_from_zeros():
    ember.manual_seed(3)
    cell = nn.GRUCell(4, 6)
    x = ember.randn(2, 4)
    np.testing.assert_allclose(cell(x).detach().numpy(),
                               cell(x, ember.zeros(2, 6)).detach().numpy(), rtol=0, atol=0)


def test_scripted_model_holds_one_node_per_layer_and_equals_eager():
    eager, x, h0, weigh = _case("float32", {"num_layers": 2})
    scripted = ember.script(copy.deepcopy(eager))
    want = _run(eager, x, h0, weigh)
    got = _run(scripted, x, h0, weigh)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert scripted.fallbacks == [] and scripted.graph is not None
    graph = str(scripted.graph)
    assert graph.count("gru_layer(") == 2 and "sigmoid" not in graph, graph


def test_a_graph_file_runs_the_op(tmp_path):
    from ember import runtime

    model = _model("float32", {"bidirectional": True}).eval()

    def fn(x):
        return model(x)

    path = tmp_path / "gru.ember"
    ember.export(fn, (ember.tensor(_inputs((5, 2, 6), "float32")),), path,
                 dynamic_dims={0: {0: "t"}})
    program = runtime.load(path)
    for steps in (5, 8):
        x = _inputs((steps, 2, 6), "float32", steps)
        with ember.no_grad():
            want = fn(ember.tensor(x))
        got = program(x)
        assert len(got) == 2
        for a, b in zip(got, want):
            np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-6, atol=1e-7)


# -- the op's own checks -----------------------------------------------------------------------


def _op_inputs(steps=3, batch=2, features=4, hidden=5, dtype="float32"):
    shapes = [(steps, batch, features), (batch, hidden), (3 * hidden, features),
              (3 * hidden, hidden), (3 * hidden,), (3 * hidden,)]
    return [ember.tensor(_inputs(s, dtype, i)) for i, s in enumerate(shapes)]


@pytest.mark.parametrize("index,replacement,message", [
    (1, (3, 5), r"h0 \[3, 5\] does not fit input \[3, 2, 4\]"),
    (2, (15, 3), r"weight_ih \[15, 3\] does not fit"),
    (3, (12, 5), r"weight_hh \[12, 5\].*3 \* hidden_size"),
    (5, (14,), r"bias_hh \[14\] does not fit"),
    (0, (3, 4), r"expected a 3-D input .* got input \[3, 4\]"),
])
def test_bad_shapes_raise_naming_them(index, replacement, message):
    inputs = _op_inputs()
    inputs[index] = ember.zeros(*replacement)
    with pytest.raises(ember.EmberError, match=message) as info:
        dispatch("gru_layer", tuple(inputs), {"reverse": False})
    assert isinstance(info.value, RuntimeError)


def test_bad_dtypes_raise_naming_them():
    inputs = _op_inputs()
    inputs[1] = inputs[1].double()
    with pytest.raises(ember.EmberError, match="h0 to have the input's dtype float32, got "
                                               "float64"):
        dispatch("gru_layer", tuple(inputs), {"reverse": False})
    ints = [t.long() for t in _op_inputs()]
    with pytest.raises(ember.EmberError, match="float32 or float64 input, got int64") as info:
        dispatch("gru_layer", tuple(ints), {"reverse": False})
    assert isinstance(info.value, TypeError)


def test_the_modules_own_errors_are_kept():
    model = nn.GRU(4, 5)
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
        model(ember.randn(3, 2, 6))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 2, 5\), got "
                                           r"\[1, 3, 5\]"):
        model(ember.randn(3, 2, 4), ember.zeros(1, 3, 5))


# -- ONNX ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{"num_layers": 2, "bidirectional": True},
                                     {"bias": False, "batch_first": True}], ids=str)
def test_onnx_export_runs_in_onnxruntime(tmp_path, options):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _model("float32", options).eval()
    layers_dirs = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)

    def fn(x, h0):
        return model(x, h0)

    seq_dim = 1 if options.get("batch_first") else 0
    shape = [3, 3]
    shape[seq_dim] = 5
    arrays = [_inputs((*shape, 6), "float32"), _inputs((layers_dirs, 3, 9), "float32", 1)]
    path = tmp_path / "gru.onnx"
    ember.onnx.export(fn, tuple(ember.tensor(a) for a in arrays), path,
                      dynamic_dims={0: {seq_dim: "t"}})
    assert "GRU" in {n.op_type for n in onnx.load(str(path)).graph.node}
    options_ = ort.SessionOptions()
    options_.log_severity_level = 3
    session = ort.InferenceSession(str(path), options_, providers=["CPUExecutionProvider"])
    for steps in (5, 9):
        shape[seq_dim] = steps
        arrays[0] = _inputs((*shape, 6), "float32", steps)
        got = session.run(None, {i.name: a for i, a in zip(session.get_inputs(), arrays)})
        with ember.no_grad():
            want = fn(*(ember.tensor(a) for a in arrays))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5)
