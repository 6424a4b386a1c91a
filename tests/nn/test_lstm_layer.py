"""The lstm_layer op: nn.LSTM runs one op per layer and direction (and one backward op), whose
native pass over the steps equals its numpy pass and torch.nn.LSTM; scripted graphs hold one
node per layer; the op's errors, graph files and ONNX export (against onnxruntime)."""

import copy

import ember
import numpy as np
import pytest
from ember import nn
from ember._tensor import dispatch
from ember.runtime.kernels import rnn as rnn_kernels

TOLERANCE = {"float32": (2e-5, 2e-6), "float64": (1e-11, 1e-12)}


def _inputs(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _run(model, x, states, weigh):
    """Outputs, final states and the gradients of input, states and every parameter."""
    model.zero_grad()
    x = ember.tensor(x, requires_grad=True)
    states = tuple(ember.tensor(s, requires_grad=True) for s in states)
    out, (h_n, c_n) = model(x, states)
    loss = (out * ember.tensor(weigh)).sum() + (h_n * h_n).sum() + (c_n * 3).sum()
    loss.backward()
    grads = [x.grad, *(s.grad for s in states), *(p.grad for p in model.parameters())]
    return [t.detach().numpy().copy() for t in (out, h_n, c_n, *grads)]


CONFIGS = [
    {},
    {"num_layers": 2, "bidirectional": True},
    {"batch_first": True, "bias": False},
    {"num_layers": 3, "batch_first": True, "bidirectional": True},
]


def _model(dtype, options, input_size=6, hidden=9):
    ember.manual_seed(1)
    return nn.LSTM(input_size, hidden, **options).to(getattr(ember, dtype))


def _case(dtype, options, steps=7, batch=4, input_size=6, hidden=9):
    model = _model(dtype, options, input_size, hidden)
    layers_dirs = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    shape = (batch, steps) if options.get("batch_first") else (steps, batch)
    x = _inputs(shape + (input_size,), dtype)
    states = [_inputs((layers_dirs, batch, hidden), dtype, seed) for seed in (1, 2)]
    weigh = _inputs(shape + (hidden * (2 if options.get("bidirectional") else 1),), dtype, 3)
    return model, x, states, weigh


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("options", CONFIGS, ids=str)
@pytest.mark.parametrize("sizes", [(7, 4, 9), (5, 25, 40), (3, 5, 1), (3, 3, 2)], ids=str)
def test_native_pass_equals_the_numpy_pass(monkeypatch, dtype, options, sizes):
    # (5, 25, 40): whole register tiles of rows (6 forward, 12 backward) and the rows left,
    # unit blocks in pairs and one alone (40 units: 16, 16, 8 in float32; five of 8 in float64);
    # (3, 5, 1) and (3, 3, 2): the numpy pass's gate views have strides numpy 2.4's in-place
    # negative wrote wrong
    steps, batch, hidden = sizes
    model, x, states, weigh = _case(dtype, options, steps, batch, hidden=hidden)
    native = _run(model, x, states, weigh)
    monkeypatch.setattr(rnn_kernels, "_native", lambda *arrays: False)
    stepped = _run(model, x, states, weigh)
    rtol, atol = TOLERANCE[dtype]
    for a, b in zip(native, stepped):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("chunks", [2, 3])
@pytest.mark.parametrize("options", [{}, {"bidirectional": True}], ids=str)
@pytest.mark.parametrize("batch", [1, 4, 25])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_steps_shared_over_threads_equal_the_numpy_pass(monkeypatch, chunks, options, batch,
                                                        dtype):
    # whatever the machine's thread budget now, the batch's rows cut into `chunks` parts for
    # the whole pass, or, for a batch of one row, every step's hidden units (40 units: blocks
    # of 16, 16 and 8 in float32); the pool's caller runs the parts no worker claims
    model, x, states, weigh = _case(dtype, options, batch=batch, hidden=40)
    monkeypatch.setattr(rnn_kernels, "PARALLEL_MIN_STEP_WORK", 0)
    monkeypatch.setattr(rnn_kernels._pool, "parallel_for", lambda: True)
    monkeypatch.setattr(rnn_kernels._pool, "threads", lambda: chunks)
    shared = _run(model, x, states, weigh)
    monkeypatch.setattr(rnn_kernels, "_native", lambda *arrays: False)
    stepped = _run(model, x, states, weigh)
    rtol, atol = TOLERANCE[dtype]
    for a, b in zip(shared, stepped):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_native_pass_is_taken_for_float_arrays_on_the_cpu():
    arrays = [np.zeros((2, 3), np.float32)]
    assert rnn_kernels._native(np, *arrays)
    assert not rnn_kernels._native(np, np.zeros((0, 3), np.float32))


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("options", CONFIGS, ids=str)
@pytest.mark.parametrize("sizes", [(7, 4, 6, 9), (3, 1, 2, 33), (12, 5, 17, 64)], ids=str)
def test_values_and_gradients_match_torch(dtype, options, sizes):
    torch = pytest.importorskip("torch")
    steps, batch, input_size, hidden = sizes
    model, x, states, weigh = _case(dtype, options, steps, batch, input_size, hidden)
    theirs = torch.nn.LSTM(input_size, hidden, **options).to(getattr(torch, dtype))
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in model.state_dict().items()})
    tx = torch.tensor(x, requires_grad=True)
    ts = tuple(torch.tensor(s, requires_grad=True) for s in states)
    out, (h_n, c_n) = theirs(tx, ts)
    ((out * torch.tensor(weigh)).sum() + (h_n * h_n).sum() + (c_n * 3).sum()).backward()
    expected = [t.detach().numpy() for t in (out, h_n, c_n, tx.grad, *(s.grad for s in ts),
                                             *(p.grad for p in theirs.parameters()))]
    rtol, atol = TOLERANCE[dtype]
    if dtype == "float32":
        atol *= 10  # sums over 12 steps of 64-wide rows
    for got, want, name in zip(_run(model, x, states, weigh), expected,
                               ["output", "h_n", "c_n", "x.grad", "h0.grad", "c0.grad",
                                *(n for n, _ in theirs.named_parameters())]):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


def test_an_lstm_dispatches_one_op_per_layer_and_direction(dispatched_ops):
    options = {"num_layers": 2, "bidirectional": True}
    model, x, states, weigh = _case("float32", options)
    seen = dispatched_ops(lambda: _run(model, x, states, weigh))
    assert seen.count("lstm_layer") == 4 and seen.count("lstm_layer_backward") == 4
    assert "sigmoid" not in seen and "tanh" not in seen
    # no op per time step: twice the steps dispatch the same ops
    model, x, states, weigh = _case("float32", options, steps=14)
    assert dispatched_ops(lambda: _run(model, x, states, weigh)) == seen


@pytest.mark.parametrize("options", [{"proj_size": 3}, {}], ids=["proj_size", "float16"])
def test_projections_and_other_dtypes_keep_the_stepped_layer(options, dispatched_ops):
    model = nn.LSTM(4, 5, **options)
    x = ember.randn(3, 2, 4)
    if not options:
        model, x = model.to(ember.float16), x.to(ember.float16)
    seen = dispatched_ops(lambda: model(x))
    assert "lstm_layer" not in seen and "sigmoid" in seen


def test_scripted_model_and_step_hold_one_node_per_layer_and_equal_eager():
    eager, x, states, weigh = _case("float32", {"num_layers": 2, "dropout": 0.0})
    compiled = copy.deepcopy(eager)
    scripted = ember.script(compiled)
    want = _run(eager, x, states, weigh)
    got = _run(scripted, x, states, weigh)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert scripted.fallbacks == [] and scripted.graph is not None
    graph = str(scripted.graph)
    assert graph.count("lstm_layer(") == 2 and "sigmoid" not in graph, graph


def test_dropout_between_layers_stays_outside_the_op_and_script_draws_the_same():
    eager, x, states, weigh = _case("float32", {"num_layers": 2, "dropout": 0.5})
    compiled = copy.deepcopy(eager)
    ember.manual_seed(5)
    want = _run(eager, x, states, weigh)
    scripted = ember.script(compiled)
    ember.manual_seed(5)
    got = _run(scripted, x, states, weigh)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    eager.eval()
    assert not np.allclose(_run(eager, x, states, weigh)[0], want[0])


def test_one_graph_serves_every_sequence_length_and_batch():
    model = _model("float32", {"num_layers": 2})

    def fn(x):
        out, (h_n, c_n) = model(x)
        return out.sum(-1), h_n, c_n

    scripted = ember.script(fn, dynamic=True)
    for steps, batch in ((5, 3), (11, 3), (4, 7)):
        x = ember.tensor(_inputs((steps, batch, 6), "float32", steps))
        for a, b in zip(scripted(x), fn(x)):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-6,
                                       atol=1e-7)
    assert len(scripted.specializations) == 1 and not scripted.recompiles, scripted.explain()


def test_a_graph_file_runs_the_op(tmp_path):
    from ember import runtime

    model = _model("float32", {"bidirectional": True}).eval()

    def fn(x):
        out, (h_n, c_n) = model(x)
        return out, h_n, c_n

    path = tmp_path / "lstm.ember"
    ember.export(fn, (ember.tensor(_inputs((5, 2, 6), "float32")),), path,
                 dynamic_dims={0: {0: "t"}})
    program = runtime.load(path)
    for steps in (5, 8):
        x = _inputs((steps, 2, 6), "float32", steps)
        with ember.no_grad():
            want = fn(ember.tensor(x))
        got = program(x)
        assert len(got) == 3
        for a, b in zip(got, want):
            np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-6, atol=1e-7)


# -- the op's own checks -----------------------------------------------------------------------


def _op_inputs(steps=3, batch=2, features=4, hidden=5, dtype="float32", bias=True):
    shapes = [(steps, batch, features), (batch, hidden), (batch, hidden),
              (4 * hidden, features), (4 * hidden, hidden)]
    if bias:
        shapes += [(4 * hidden,), (4 * hidden,)]
    return [ember.tensor(_inputs(s, dtype, i)) for i, s in enumerate(shapes)]


@pytest.mark.parametrize("index,replacement,message", [
    (1, (3, 5), r"h0 \[3, 5\] does not fit input \[3, 2, 4\]"),
    (3, (20, 3), r"weight_ih \[20, 3\] does not fit"),
    (4, (18, 5), r"weight_hh \[18, 5\].*4 \* hidden_size"),
    (6, (19,), r"bias_hh \[19\] does not fit"),
    (0, (3, 4), r"expected a 3-D input .* got input \[3, 4\]"),
])
def test_bad_shapes_raise_naming_them(index, replacement, message):
    inputs = _op_inputs()
    inputs[index] = ember.zeros(*replacement)
    with pytest.raises(ember.EmberError, match=message) as info:
        dispatch("lstm_layer", tuple(inputs), {"reverse": False})
    assert isinstance(info.value, RuntimeError)


def test_bad_dtypes_raise_naming_them():
    inputs = _op_inputs()
    inputs[2] = inputs[2].double()
    with pytest.raises(ember.EmberError, match="c0 to have the input's dtype float32, got "
                                               "float64"):
        dispatch("lstm_layer", tuple(inputs), {"reverse": False})
    ints = [t.long() for t in _op_inputs()]
    with pytest.raises(ember.EmberError, match="float32 or float64 input, got int64") as info:
        dispatch("lstm_layer", tuple(ints), {"reverse": False})
    assert isinstance(info.value, TypeError)


def test_the_modules_own_errors_are_kept():
    model = nn.LSTM(4, 5)
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
        model(ember.randn(3, 2, 6))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[1\] size \(1, 2, 5\), got "
                                           r"\[1, 3, 5\]"):
        model(ember.randn(3, 2, 4), (ember.zeros(1, 2, 5), ember.zeros(1, 3, 5)))


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_an_empty_sequence_raises_torchs_error(name, batch_first):
    model = getattr(nn, name)(3, 4, batch_first=batch_first)
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
        model(ember.randn(2, 0, 3) if batch_first else ember.randn(0, 2, 3))


# -- ONNX ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{"num_layers": 2, "bidirectional": True},
                                     {"bias": False, "batch_first": True}], ids=str)
def test_onnx_export_runs_in_onnxruntime(tmp_path, options):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _model("float32", options).eval()
    layers_dirs = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)

    def fn(x, h0, c0):
        out, (h_n, c_n) = model(x, (h0, c0))
        return out, h_n, c_n

    seq_dim = 1 if options.get("batch_first") else 0
    shape = [3, 3]
    shape[seq_dim] = 5
    arrays = [_inputs((*shape, 6), "float32"), _inputs((layers_dirs, 3, 9), "float32", 1),
              _inputs((layers_dirs, 3, 9), "float32", 2)]
    path = tmp_path / "lstm.onnx"
    ember.onnx.export(fn, tuple(ember.tensor(a) for a in arrays), path,
                      dynamic_dims={0: {seq_dim: "t"}})
    assert "LSTM" in {n.op_type for n in onnx.load(str(path)).graph.node}
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


def test_large_panels_are_the_calls_own_and_small_ones_the_threads_buffer(monkeypatch):
    # W_hh's panels past RETAINED_PANEL_BYTES go into an array freed after the pass, so a
    # large LSTM leaves no buffer of its size behind in the thread; the results are the same
    model, x, states, weigh = _case("float32", {}, hidden=40)
    kept = _run(model, x, states, weigh)
    small, own = rnn_kernels._panels(np.zeros((160, 40), np.float32))
    assert own is None and small % 64 == 0
    monkeypatch.setattr(rnn_kernels, "RETAINED_PANEL_BYTES", 0)
    large, own = rnn_kernels._panels(np.zeros((160, 40), np.float32))
    assert own is not None and large % 64 == 0 and own.nbytes >= 4 * 40 * 48 * 4
    for a, b in zip(_run(model, x, states, weigh), kept):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_an_lstm_cell_is_one_op_of_one_step_and_equals_the_stepped_cell(dtype, bias, batched,
                                                                         dispatched_ops):
    # scripts step LSTMCell in Python loops: one lstm_layer op (and one backward op) a call
    # instead of its ~15 ops; the same values and gradients as those ops (rnn._lstm_step)
    from ember.nn.layers import rnn as rnn_layers

    ember.manual_seed(2)
    cell = nn.LSTMCell(5, 7, bias=bias).to(getattr(ember, dtype))
    shape = (3, 5) if batched else (5,)
    x = ember.tensor(_inputs(shape, dtype), requires_grad=True)
    h0 = ember.tensor(_inputs(shape[:-1] + (7,), dtype, 1), requires_grad=True)
    c0 = ember.tensor(_inputs(shape[:-1] + (7,), dtype, 2), requires_grad=True)

    def run(step):
        for t in (x, h0, c0, *cell.parameters()):
            t.grad = None
        h, c = step()
        ((h * 2).sum() + (c * c).sum()).backward()
        return [t.detach().numpy().copy() for t in (h, c, x.grad, h0.grad, c0.grad,
                                                      *(p.grad for p in cell.parameters()))]

    seen = dispatched_ops(lambda: run(lambda: cell(x, (h0, c0))))
    assert seen.count("lstm_layer") == 1 and seen.count("lstm_layer_backward") == 1
    assert "sigmoid" not in seen
    got = run(lambda: cell(x, (h0, c0)))

    def stepped():
        xs, hs, cs = (t if batched else t.unsqueeze(0) for t in (x, h0, c0))
        x_proj = ember.nn.functional.linear(xs, cell.weight_ih, cell.bias_ih)
        h, c = rnn_layers._lstm_step(x_proj, hs, cs, cell.weight_hh, cell.bias_hh, None)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))

    rtol, atol = TOLERANCE[dtype]
    for a, b in zip(got, run(stepped)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    # no state given: zeros, as PyTorch
    h, c = cell(x)
    want_h, want_c = cell(x, (ember.zeros(shape[:-1] + (7,), dtype=getattr(ember, dtype)),) * 2)
    np.testing.assert_array_equal(h.detach().numpy(), want_h.detach().numpy())
    np.testing.assert_array_equal(c.detach().numpy(), want_c.detach().numpy())
