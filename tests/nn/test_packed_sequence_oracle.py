"""Packed sequences against PyTorch: the packing functions' results, and RNN, LSTM and GRU with
the same weights over a packed batch of unsorted lengths (outputs, final states and parameter
gradients), and the image-captioning decoder's loss and gradients."""

import ember
import numpy as np
import pytest
from ember import nn
from ember.nn.utils import rnn as ember_rnn

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.oracle

torch_rnn = torch.nn.utils.rnn


def _pair(array, requires_grad=False):
    return (torch.tensor(array, requires_grad=requires_grad),
            ember.tensor(array, requires_grad=requires_grad))


def _copy_parameters(torch_module, ember_module):
    for name, parameter in torch_module.named_parameters():
        ember_module.get_parameter(name).data = ember.tensor(parameter.detach().numpy())


def _assert_close(ember_tensor, torch_tensor, atol=1e-5):
    np.testing.assert_allclose(ember_tensor.detach().numpy(), torch_tensor.detach().numpy(),
                               atol=atol, rtol=1e-5)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_packing_and_padding_match_torch(batch_first, enforce_sorted):
    rng = np.random.default_rng(0)
    lengths = [6, 4, 4, 2, 1] if enforce_sorted else [2, 6, 1, 4, 4]
    x = rng.standard_normal((5, 6, 3) if batch_first else (6, 5, 3)).astype(np.float32)
    tx, ex = _pair(x)
    want = torch_rnn.pack_padded_sequence(tx, lengths, batch_first=batch_first,
                                          enforce_sorted=enforce_sorted)
    got = ember_rnn.pack_padded_sequence(ex, ember.tensor(lengths), batch_first=batch_first,
                                         enforce_sorted=enforce_sorted)
    np.testing.assert_array_equal(got.data.numpy(), want.data.numpy())
    assert got.batch_sizes.tolist() == want.batch_sizes.tolist()
    for g, w in ((got.sorted_indices, want.sorted_indices),
                 (got.unsorted_indices, want.unsorted_indices)):
        assert (g is None and w is None) or g.tolist() == w.tolist()
    want_padded, want_lengths = torch_rnn.pad_packed_sequence(
        want, batch_first=batch_first, padding_value=-2.0, total_length=8)
    got_padded, got_lengths = ember_rnn.pad_packed_sequence(
        got, batch_first=batch_first, padding_value=-2.0, total_length=8)
    np.testing.assert_array_equal(got_padded.numpy(), want_padded.numpy())
    assert got_lengths.tolist() == want_lengths.tolist()


def test_pack_sequence_matches_torch():
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((n, 2)) for n in (3, 5, 1)]
    want = torch_rnn.pack_sequence([torch.tensor(a) for a in arrays], enforce_sorted=False)
    got = ember_rnn.pack_sequence([ember.tensor(a) for a in arrays], enforce_sorted=False)
    np.testing.assert_array_equal(got.data.numpy(), want.data.numpy())
    assert got.batch_sizes.tolist() == want.batch_sizes.tolist()
    for g, w in zip(ember_rnn.unpack_sequence(got), torch_rnn.unpack_sequence(want)):
        np.testing.assert_array_equal(g.numpy(), w.numpy())


def _states(rng, layers, batch, sizes, dtype):
    arrays = [rng.standard_normal((layers, batch, size)).astype(dtype) for size in sizes]
    pairs = [_pair(a, requires_grad=True) for a in arrays]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("with_hx", [False, True])
def test_recurrent_layers_over_packed_unsorted_batches_match_torch(
        mode, batch_first, bidirectional, num_layers, with_hx):
    options = {"num_layers": num_layers, "bidirectional": bidirectional,
               "batch_first": batch_first}
    if mode.startswith("RNN"):
        options["nonlinearity"] = "tanh" if mode == "RNN_TANH" else "relu"
    name = mode.split("_")[0]
    torch.manual_seed(0)
    torch_module = getattr(torch.nn, name)(3, 4, **options)
    ember_module = getattr(nn, name)(3, 4, **options)
    _copy_parameters(torch_module, ember_module)

    rng = np.random.default_rng(2)
    lengths = [3, 6, 1, 6, 2, 3]
    batch, steps = len(lengths), 6
    x = rng.standard_normal((batch, steps, 3) if batch_first else (steps, batch, 3))
    tx, ex = _pair(x.astype(np.float32), requires_grad=True)
    state_count = num_layers * (2 if bidirectional else 1)
    sizes = (4, 4) if name == "LSTM" else (4,)
    t_hx = e_hx = None
    if with_hx:
        t_states, e_states = _states(rng, state_count, batch, sizes, np.float32)
        t_hx, e_hx = ((tuple(t_states), tuple(e_states)) if name == "LSTM"
                      else (t_states[0], e_states[0]))

    t_packed = torch_rnn.pack_padded_sequence(tx, lengths, batch_first=batch_first,
                                              enforce_sorted=False)
    e_packed = ember_rnn.pack_padded_sequence(ex, lengths, batch_first=batch_first,
                                              enforce_sorted=False)
    t_out, t_finals = torch_module(t_packed, t_hx)
    e_out, e_finals = ember_module(e_packed, e_hx)
    assert isinstance(e_out, ember_rnn.PackedSequence)
    _assert_close(e_out.data, t_out.data)
    assert e_out.batch_sizes.tolist() == t_out.batch_sizes.tolist()
    t_finals = t_finals if name == "LSTM" else (t_finals,)
    e_finals = e_finals if name == "LSTM" else (e_finals,)
    for e_final, t_final in zip(e_finals, t_finals):
        _assert_close(e_final, t_final)

    t_padded, _ = torch_rnn.pad_packed_sequence(t_out, batch_first=batch_first)
    e_padded, _ = ember_rnn.pad_packed_sequence(e_out, batch_first=batch_first)
    _assert_close(e_padded, t_padded)
    weight = rng.standard_normal(tuple(t_padded.shape)).astype(np.float32)
    final_weights = [rng.standard_normal(tuple(f.shape)).astype(np.float32) for f in t_finals]
    t_loss = (t_padded * torch.tensor(weight)).sum() + sum(
        (f * torch.tensor(w)).sum() for f, w in zip(t_finals, final_weights))
    e_loss = (e_padded * ember.tensor(weight)).sum() + sum(
        (f * ember.tensor(w)).sum() for f, w in zip(e_finals, final_weights))
    t_loss.backward()
    e_loss.backward()
    for param_name, parameter in torch_module.named_parameters():
        _assert_close(ember_module.get_parameter(param_name).grad, parameter.grad)
    _assert_close(ex.grad, tx.grad)
    if with_hx:
        for e_state, t_state in zip(e_states, t_states):
            _assert_close(e_state.grad, t_state.grad)


def test_lstm_with_projections_over_a_packed_batch_matches_torch():
    torch.manual_seed(1)
    torch_module = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2).double()
    ember_module = nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2).double()
    _copy_parameters(torch_module, ember_module)
    x = np.random.default_rng(3).standard_normal((4, 3, 3))
    tx, ex = _pair(x, requires_grad=True)
    lengths = [2, 4, 3]
    t_out, (t_h, t_c) = torch_module(torch_rnn.pack_padded_sequence(tx, lengths,
                                                                     enforce_sorted=False))
    e_out, (e_h, e_c) = ember_module(ember_rnn.pack_padded_sequence(ex, lengths,
                                                                     enforce_sorted=False))
    _assert_close(e_out.data, t_out.data)
    _assert_close(e_h, t_h)
    _assert_close(e_c, t_c)
    (t_out.data.sum() + t_h.sum() + t_c.sum()).backward()
    (e_out.data.sum() + e_h.sum() + e_c.sum()).backward()
    for param_name, parameter in torch_module.named_parameters():
        _assert_close(ember_module.get_parameter(param_name).grad, parameter.grad)


def _caption_decoder(lib, rnn_utils):
    class DecoderRNN(lib.nn.Module):
        """yunjey/pytorch-tutorial image_captioning's DecoderRNN, its loss included."""

        def __init__(self):
            super().__init__()
            self.embed = lib.nn.Embedding(20, 6)
            self.lstm = lib.nn.LSTM(6, 8, 1, batch_first=True)
            self.linear = lib.nn.Linear(8, 20)

        def forward(self, features, captions, lengths):
            embeddings = self.embed(captions)
            embeddings = lib.cat((features.unsqueeze(1), embeddings), 1)
            packed = rnn_utils.pack_padded_sequence(embeddings, lengths, batch_first=True)
            hiddens, _ = self.lstm(packed)
            outputs = self.linear(hiddens[0])
            targets = rnn_utils.pack_padded_sequence(captions, lengths, batch_first=True)[0]
            return lib.nn.functional.cross_entropy(outputs, targets)

    return DecoderRNN()


def test_the_image_captioning_decoder_matches_torch():
    torch.manual_seed(0)
    t_decoder = _caption_decoder(torch, torch_rnn)
    e_decoder = _caption_decoder(ember, ember_rnn)
    _copy_parameters(t_decoder, e_decoder)
    rng = np.random.default_rng(4)
    features = rng.standard_normal((4, 6)).astype(np.float32)
    captions = rng.integers(0, 20, size=(4, 5))
    lengths = [5, 5, 3, 2]
    t_loss = t_decoder(torch.tensor(features), torch.tensor(captions), lengths)
    e_loss = e_decoder(ember.tensor(features), ember.tensor(captions), lengths)
    np.testing.assert_allclose(e_loss.item(), t_loss.item(), rtol=1e-5)
    t_loss.backward()
    e_loss.backward()
    for param_name, parameter in t_decoder.named_parameters():
        _assert_close(e_decoder.get_parameter(param_name).grad, parameter.grad)
