"""RNN, LSTM, GRU and their cells without torch: gradients by finite differences, compiled
equal to eager, shapes for every option, and PyTorch's errors for bad input."""

import itertools

import ember
import numpy as np
import pytest
from ember import nn
from ember.autograd import gradcheck
from ember.errors import EmberRuntimeError, EmberTypeError, EmberValueError


def _randn(*shape, seed=0):
    return ember.tensor(np.random.default_rng(seed).standard_normal(shape))


# -- gradients ---------------------------------------------------------------------------------


def _call_with(module, names, weights, *args):
    """module(*args) with its parameters replaced by the tensors weights (which gradcheck
    perturbs), restored afterwards."""
    saved = dict(module._parameters)
    module._parameters.update(zip(names, weights))
    try:
        return module(*args)
    finally:
        module._parameters.update(saved)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cell_gradients_wrt_input_state_and_weights_match_finite_differences(name, bias):
    ember.manual_seed(0)
    cell = getattr(nn, name)(3, 4, bias=bias).double()
    names = [k for k, _ in cell.named_parameters()]
    weights = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    x = _randn(2, 3, seed=1).requires_grad_()
    h = _randn(2, 4, seed=2).requires_grad_()
    c = _randn(2, 4, seed=3).requires_grad_()

    def fn(x, h, c, *ws):
        if name == "LSTMCell":
            return tuple(_call_with(cell, names, ws, x, (h, c)))
        return _call_with(cell, names, ws, x, h) + 0 * c

    assert gradcheck(fn, (x, h, c, *weights))


@pytest.mark.parametrize("name,options", [
    ("RNN", {"num_layers": 2, "bidirectional": True}),
    ("RNN", {"nonlinearity": "relu"}),
    ("LSTM", {"proj_size": 2, "bidirectional": True}),
    ("GRU", {"num_layers": 2, "batch_first": True}),
])
def test_layer_gradients_match_finite_differences(name, options):
    ember.manual_seed(1)
    module = getattr(nn, name)(2, 3, **options).double()
    names = [k for k, _ in module.named_parameters()]
    weights = [p.detach().clone().requires_grad_() for p in module.parameters()]
    x = _randn(3, 2, 2, seed=4).requires_grad_()

    def fn(x, *ws):
        out, final = _call_with(module, names, ws, x)
        return (out, *final) if isinstance(final, tuple) else (out, final)

    assert gradcheck(fn, (x, *weights))


# -- compiled equals eager ---------------------------------------------------------------------


def _training_step(module, cell=False):
    def step(x):
        module.zero_grad()
        if cell:
            state = None
            for x_t in x.unbind(0):
                state = module(x_t, state)
            out = state[0] if isinstance(state, tuple) else state
        else:
            out, _ = module(x)
        loss = (out * out).sum()
        loss.backward()
        return loss

    return step


@pytest.mark.parametrize("name,options", [
    ("RNN", {"num_layers": 2, "nonlinearity": "relu"}),
    ("LSTM", {"bidirectional": True, "proj_size": 3}),
    ("GRU", {"num_layers": 2, "batch_first": True, "bidirectional": True}),
    ("RNNCell", {}),
    ("LSTMCell", {}),
    ("GRUCell", {}),
])
def test_scripted_forward_and_backward_equal_eager(name, options):
    import copy

    ember.manual_seed(2)
    eager = getattr(nn, name)(4, 5, **options)
    compiled = copy.deepcopy(eager)
    cell = name.endswith("Cell")
    eager_step = _training_step(eager, cell)
    scripted = ember.script(_training_step(compiled, cell))
    for call in range(4):  # the second call retraces: the .grad it reads now exists
        x = ember.tensor(
            np.random.default_rng(call).standard_normal((6, 3, 4)).astype(np.float32))
        want = eager_step(x)
        got = scripted(x)
        np.testing.assert_allclose(got.item(), want.item(), rtol=1e-5)
        for (k, p), q in zip(compiled.named_parameters(), eager.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6,
                                       err_msg=k)
    assert scripted.fallbacks == [] and scripted.graph is not None
    assert sum(sp.calls for sp in scripted.specializations) >= 2


# -- shapes ------------------------------------------------------------------------------------

SHAPE_OPTIONS = list(itertools.product(
    ["RNN", "LSTM", "GRU"], [1, 2], [False, True], [False, True], [False, True], [0, 2]))


@pytest.mark.parametrize("name,layers,bidirectional,batch_first,bias,proj", [
    case for case in SHAPE_OPTIONS if case[0] == "LSTM" or case[5] == 0])
def test_output_and_state_shapes_for_every_option(name, layers, bidirectional, batch_first,
                                                   bias, proj):
    options = {"num_layers": layers, "bidirectional": bidirectional,
               "batch_first": batch_first, "bias": bias}
    if proj:
        options["proj_size"] = proj
    module = getattr(nn, name)(3, 4, **options)
    dirs = 2 if bidirectional else 1
    out_size = proj or 4
    length, batch = 5, 2
    x = ember.randn(*((batch, length) if batch_first else (length, batch)), 3)
    out, final = module(x)
    assert tuple(out.shape) == tuple(x.shape[:2]) + (dirs * out_size,)
    h = final[0] if name == "LSTM" else final
    assert tuple(h.shape) == (layers * dirs, batch, out_size)
    if name == "LSTM":
        assert tuple(final[1].shape) == (layers * dirs, batch, 4)
    # unbatched: the batch dim is dropped from the output and the states, values unchanged
    x1 = x[0] if batch_first else x[:, 0]
    out1, final1 = module(x1)
    assert tuple(out1.shape) == (length, dirs * out_size)
    h1 = final1[0] if name == "LSTM" else final1
    assert tuple(h1.shape) == (layers * dirs, out_size)
    want = out[0] if batch_first else out[:, 0]
    np.testing.assert_allclose(out1.detach().numpy(), want.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    names = {k for k, _ in module.named_parameters()}
    assert ("bias_ih_l0" in names) == bias
    assert ("weight_hh_l0_reverse" in names) == bidirectional
    assert (f"weight_ih_l{layers - 1}" in names) and (f"weight_ih_l{layers}" not in names)
    assert ("weight_hr_l0" in names) == bool(proj)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_take_batched_and_unbatched_input(name):
    cell = getattr(nn, name)(3, 4)
    x = ember.randn(2, 3)
    out = cell(x)
    h = out[0] if name == "LSTMCell" else out
    assert tuple(h.shape) == (2, 4)
    single = cell(x[1])
    h1 = single[0] if name == "LSTMCell" else single
    assert tuple(h1.shape) == (4,)
    np.testing.assert_allclose(h1.detach().numpy(), h[1].detach().numpy(), rtol=1e-6)


def test_dropout_between_layers_applies_only_in_training():
    ember.manual_seed(3)
    module = nn.GRU(3, 4, num_layers=2, dropout=0.5)
    x = ember.randn(5, 2, 3)
    module.eval()
    first, _ = module(x)
    second, _ = module(x)
    np.testing.assert_array_equal(first.detach().numpy(), second.detach().numpy())
    module.train()
    trained = [module(x)[0].detach().numpy() for _ in range(2)]
    assert not np.allclose(trained[0], trained[1])
    assert not np.allclose(trained[0], first.detach().numpy())


def test_the_zero_initial_state_is_the_default():
    module = nn.LSTM(3, 4, num_layers=2)
    x = ember.randn(5, 2, 3)
    zeros = (ember.zeros(2, 2, 4), ember.zeros(2, 2, 4))
    np.testing.assert_array_equal(module(x)[0].detach().numpy(),
                                  module(x, zeros)[0].detach().numpy())


def test_a_reverse_direction_reads_the_sequence_backwards():
    # the reverse direction of a bidirectional RNN is a forward RNN over the flipped input
    ember.manual_seed(4)
    both = nn.RNN(3, 4, bidirectional=True)
    forward_only = nn.RNN(3, 4)
    forward_only.load_state_dict({k.replace("_reverse", ""): v
                                  for k, v in both.state_dict().items() if "_reverse" in k})
    x = ember.randn(5, 2, 3)
    out, h = both(x)
    out_rev, h_rev = forward_only(x.flip(0))
    np.testing.assert_allclose(out[:, :, 4:].detach().numpy(),
                               out_rev.flip(0).detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h[1].detach().numpy(), h_rev[0].detach().numpy(), rtol=1e-6)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("make,error,message", [
    (lambda: nn.RNN(3, 4, nonlinearity="sigmoid"), EmberValueError, "Unknown nonlinearity"),
    (lambda: nn.GRU(3, 4, proj_size=2), EmberValueError, "only supported for LSTM"),
    (lambda: nn.LSTM(3, 4, proj_size=4), EmberValueError, "smaller than hidden_size"),
    (lambda: nn.LSTM(3, 4, proj_size=-1), EmberValueError, "positive integer or zero"),
    (lambda: nn.LSTM(3, 4, dropout=1.5), EmberValueError, "range \\[0, 1\\]"),
    (lambda: nn.LSTM(3, 4.0), EmberTypeError, "hidden_size should be of type int"),
    (lambda: nn.LSTM(0, 4), EmberValueError, "input_size must be greater than zero"),
    (lambda: nn.GRU(3, 4, num_layers=0), EmberValueError, "num_layers must be greater"),
    (lambda: nn.GRU(3, 4, bias=1), EmberTypeError, "bias should be of type bool"),
])
def test_bad_constructor_arguments_raise_torchs_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_dropout_on_a_single_layer_warns():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.LSTM(3, 4, dropout=0.2)


@pytest.mark.parametrize("call,error,message", [
    (lambda m: m(ember.randn(2, 2, 2, 3)), EmberValueError,
     r"GRU: Expected input to be 2D or 3D, got 4D instead \(input of shape \(2, 2, 2, 3\)\)"),
    (lambda m: m(ember.randn(5, 2, 7)), EmberRuntimeError,
     r"input.size\(-1\) must be equal to input_size. Expected 3, got 7"),
    (lambda m: m(ember.randn(5, 2, 3), ember.zeros(1, 3, 4)), EmberRuntimeError,
     r"Expected hidden size \(1, 2, 4\), got \[1, 3, 4\]"),
    (lambda m: m(ember.randn(5, 2, 3), ember.zeros(2, 4)), EmberRuntimeError,
     "For batched 3-D input, hx should also be 3-D but got 2-D tensor"),
    (lambda m: m(ember.randn(5, 3), ember.zeros(1, 2, 4)), EmberRuntimeError,
     "For unbatched 2-D input, hx should also be 2-D but got 3-D tensor"),
    (lambda m: m(ember.randn(5, 2, 3).double()), EmberValueError,
     "input dtype .*float64.* does not match weight dtype .*float32"),
])
def test_bad_input_raises_torchs_errors_naming_the_shapes(call, error, message):
    with pytest.raises(error, match=message):
        call(nn.GRU(3, 4))


def test_lstm_state_errors_name_which_state_is_wrong():
    lstm = nn.LSTM(3, 4, proj_size=2)
    x = ember.randn(5, 2, 3)
    with pytest.raises(EmberRuntimeError, match=r"Expected hidden\[0\] size \(1, 2, 2\), got "
                       r"\[1, 2, 4\]"):
        lstm(x, (ember.zeros(1, 2, 4), ember.zeros(1, 2, 4)))
    with pytest.raises(EmberRuntimeError, match=r"Expected hidden\[1\] size \(1, 2, 4\), got "
                       r"\[1, 2, 2\]"):
        lstm(x, (ember.zeros(1, 2, 2), ember.zeros(1, 2, 2)))
    with pytest.raises(EmberRuntimeError, match=r"hx and cx should also be 3-D but got "
                       r"\(2-D, 3-D\)"):
        lstm(x, (ember.zeros(2, 2), ember.zeros(1, 2, 4)))


@pytest.mark.parametrize("call,error,message", [
    (lambda c: c(ember.randn(2, 2, 3)), EmberValueError,
     "Expected input to be 1D or 2D, got 3D instead"),
    (lambda c: c(ember.randn(2, 5)), EmberRuntimeError,
     "input has inconsistent input_size: got 5, expected 3"),
    (lambda c: c(ember.randn(2, 3), ember.zeros(3, 4)), EmberRuntimeError,
     "Input batch size 2 doesn't match hidden batch size 3"),
    (lambda c: c(ember.randn(2, 3), ember.zeros(2, 6)), EmberRuntimeError,
     "hidden has inconsistent hidden_size: got 6, expected 4"),
])
def test_bad_cell_input_raises_torchs_errors(call, error, message):
    with pytest.raises(error, match=message):
        call(nn.GRUCell(3, 4))


def test_rnn_cell_with_an_unknown_nonlinearity_fails_at_forward_like_torch():
    cell = nn.RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(EmberRuntimeError, match="Unknown nonlinearity: gelu"):
        cell(ember.randn(2, 3))


def test_layers_are_exported_where_torch_has_them():
    from ember.nn.modules.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell

    assert (RNN, LSTM, GRU) == (nn.RNN, nn.LSTM, nn.GRU)
    assert (RNNCell, LSTMCell, GRUCell) == (nn.RNNCell, nn.LSTMCell, nn.GRUCell)
    assert isinstance(nn.LSTM(2, 3), RNNBase)


# -- nn.utils.rnn ------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_sequence_stacks_with_padding_and_unpad_inverts_it(batch_first, side):
    from ember.nn.utils.rnn import pad_sequence, unpad_sequence

    seqs = [_randn(n, 2, seed=n).requires_grad_() for n in (3, 1, 4)]
    padded = pad_sequence(seqs, batch_first=batch_first, padding_value=-1.0, padding_side=side)
    assert tuple(padded.shape) == ((3, 4, 2) if batch_first else (4, 3, 2))
    rows = padded if batch_first else padded.transpose(0, 1)
    for row, seq in zip(rows, seqs):
        n = seq.shape[0]
        kept = row[:n] if side == "right" else row[4 - n:]
        pad = row[n:] if side == "right" else row[:4 - n]
        np.testing.assert_array_equal(kept.detach().numpy(), seq.detach().numpy())
        assert (pad.detach().numpy() == -1.0).all()
    padded.sum().backward()
    assert all((s.grad.numpy() == 1).all() for s in seqs)
    if side == "right":
        back = unpad_sequence(padded, ember.tensor([3, 1, 4]), batch_first=batch_first)
        for b, s in zip(back, seqs):
            np.testing.assert_array_equal(b.detach().numpy(), s.detach().numpy())


@pytest.mark.oracle
def test_pad_sequence_matches_torch():
    torch = pytest.importorskip("torch")
    arrays = [np.random.default_rng(n).standard_normal((n, 3)) for n in (2, 5, 3)]
    want = torch.nn.utils.rnn.pad_sequence([torch.tensor(a) for a in arrays], padding_value=7.0)
    got = nn.utils.rnn.pad_sequence([ember.tensor(a) for a in arrays], padding_value=7.0)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
