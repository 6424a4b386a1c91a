"""Packed sequences without torch: pack and pad round trips, batch sizes and permutations,
PyTorch's errors, gradients by finite differences, and RNN, LSTM and GRU over a packed batch
equal to running each sequence alone (values and gradients), eager and under ember.script."""

import ember
import numpy as np
import pytest
from ember import nn
from ember.autograd import gradcheck
from ember.errors import EmberRuntimeError, EmberValueError
from ember.nn import functional as F
from ember.nn.utils.rnn import (
    PackedSequence,
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
    pad_sequence,
    unpack_sequence,
)


def _randn(*shape, seed=0, dtype="float64"):
    return ember.tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def _random_lengths(rng, batch, steps):
    lengths = rng.integers(1, steps + 1, size=batch)
    lengths[rng.integers(batch)] = steps  # the longest fills the padded input
    return [int(n) for n in lengths]


# -- packing and padding -----------------------------------------------------------------------


def test_packing_follows_the_time_major_order_of_the_sorted_batch():
    seq = ember.tensor([[1, 2, 0], [3, 0, 0], [4, 5, 6]])
    packed = pack_padded_sequence(seq, [2, 1, 3], batch_first=True, enforce_sorted=False)
    assert isinstance(packed, PackedSequence) and isinstance(packed, tuple)
    assert packed.data.tolist() == [4, 1, 3, 5, 2, 6]
    assert packed[0] is packed.data
    assert packed.batch_sizes.tolist() == [3, 2, 1]
    assert packed.batch_sizes.dtype == ember.int64 and packed.batch_sizes.device.type == "cpu"
    assert packed.sorted_indices.tolist() == [2, 0, 1]
    assert packed.unsorted_indices.tolist() == [1, 2, 0]
    padded, lengths = pad_packed_sequence(packed, batch_first=True)
    assert padded.tolist() == seq.tolist()
    assert lengths.tolist() == [2, 1, 3] and lengths.dtype == ember.int64


def test_sorted_packing_keeps_no_permutation():
    packed = pack_padded_sequence(_randn(4, 3, 2), ember.tensor([4, 3, 1]))
    assert packed.sorted_indices is None and packed.unsorted_indices is None
    assert packed.batch_sizes.tolist() == [3, 2, 2, 1]
    assert tuple(packed.data.shape) == (8, 2)
    data, batch_sizes, sorted_indices, unsorted_indices = packed
    assert data is packed.data and batch_sizes is packed.batch_sizes
    assert "PackedSequence(data=" in repr(packed)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_pack_then_pad_gives_the_input_with_the_padding_zeroed(batch_first, seed):
    rng = np.random.default_rng(seed)
    batch, steps = int(rng.integers(1, 6)), int(rng.integers(1, 7))
    lengths = _random_lengths(rng, batch, steps)
    x = rng.standard_normal((batch, steps, 3, 2) if batch_first else (steps, batch, 3, 2))
    packed = pack_padded_sequence(ember.tensor(x), lengths, batch_first=batch_first,
                                  enforce_sorted=False)
    assert int(packed.batch_sizes.sum().item()) == sum(lengths)
    expected_sizes = [sum(n > t for n in lengths) for t in range(max(lengths))]
    assert packed.batch_sizes.tolist() == expected_sizes
    padded, got_lengths = pad_packed_sequence(packed, batch_first=batch_first)
    running = np.arange(steps)[:, None] < np.asarray(lengths)[None, :]  # (T, B)
    mask = (running.T if batch_first else running)[..., None, None]
    np.testing.assert_array_equal(padded.numpy(), np.where(mask, x, 0.0))
    assert got_lengths.tolist() == lengths


def test_pad_fills_with_padding_value_up_to_total_length():
    packed = pack_sequence([ember.ones(3), ember.ones(1) * 2])
    padded, lengths = pad_packed_sequence(packed, padding_value=-1.0, total_length=5)
    assert padded.tolist() == [[1, 2], [1, -1], [1, -1], [-1, -1], [-1, -1]]
    assert lengths.tolist() == [3, 1]
    with pytest.raises(EmberValueError, match="total_length=2 and max sequence length being 3"):
        pad_packed_sequence(packed, total_length=2)


def test_pack_sequence_and_unpack_sequence_round_trip_in_the_original_order():
    seqs = [_randn(n, 2, seed=n) for n in (2, 5, 1, 5)]
    with pytest.raises(EmberRuntimeError, match="enforce_sorted"):
        pack_sequence(seqs)
    packed = pack_sequence(seqs, enforce_sorted=False)
    assert packed.batch_sizes.tolist() == [4, 3, 2, 2, 2]
    back = unpack_sequence(packed)
    assert len(back) == 4
    for got, want in zip(back, seqs):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    sorted_seqs = sorted(seqs, key=lambda s: -s.shape[0])
    padded = pad_sequence(sorted_seqs)
    np.testing.assert_array_equal(pack_sequence(sorted_seqs).data.numpy(),
                                  pack_padded_sequence(padded, [5, 5, 2, 1]).data.numpy())


def test_packed_sequence_converts_its_data_like_a_tensor():
    packed = pack_padded_sequence(_randn(3, 2, 2), [3, 1])
    assert packed.to(ember.float64) is packed
    as_float = packed.float()
    assert isinstance(as_float, PackedSequence) and as_float.data.dtype == ember.float32
    assert as_float.batch_sizes is packed.batch_sizes
    assert packed.long().data.dtype == ember.int64
    assert packed.double() is packed
    assert packed.cpu() is packed and not packed.is_cuda


def test_packing_refuses_bad_lengths_as_torch_does():
    x = _randn(4, 3, 2)
    with pytest.raises(EmberRuntimeError, match="sorted in decreasing order.*enforce_sorted"):
        pack_padded_sequence(x, [4, 2, 3])
    with pytest.raises(EmberRuntimeError, match="greater than 0"):
        pack_padded_sequence(x, [4, 3, 0])
    with pytest.raises(EmberRuntimeError, match="greater than 0"):
        pack_padded_sequence(x, [0, 4, 1], enforce_sorted=False)
    with pytest.raises(EmberRuntimeError, match=r"length \(5\) is longer than the input's 4"):
        pack_padded_sequence(x, [5, 3, 2])
    with pytest.raises(EmberRuntimeError, match="got 2 \\(batch_size=3\\)"):
        pack_padded_sequence(x, [4, 3])
    with pytest.raises(EmberRuntimeError, match="1D CPU int64 tensor, but got 2D"):
        pack_padded_sequence(x, ember.tensor([[4, 3, 2]]))
    with pytest.raises(IndexError, match=r"at least 2 dimensions.*\(4,\)"):
        pack_padded_sequence(_randn(4), [4])
    with pytest.raises(TypeError, match="expected a PackedSequence"):
        pad_packed_sequence(x)
    with pytest.raises(ValueError, match="empty list"):
        pack_sequence([])


@pytest.mark.parametrize("batch_first", [False, True])
def test_gradients_flow_through_pack_and_pad(batch_first):
    lengths = [2, 4, 1]
    x = _randn(3, 4, 2) if batch_first else _randn(4, 3, 2)
    x.requires_grad_(True)

    def round_trip(x):
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        padded, _ = pad_packed_sequence(packed, batch_first=batch_first, total_length=5)
        return padded * 3.0, packed.data

    assert gradcheck(round_trip, (x,))
    out, _ = round_trip(x)
    out.sum().backward()
    running = np.arange(4)[:, None] < np.asarray(lengths)[None, :]
    mask = running.T if batch_first else running
    np.testing.assert_array_equal(
        x.grad.numpy(), np.broadcast_to(np.where(mask, 3.0, 0.0)[..., None], tuple(x.shape)))


# -- recurrent layers over a packed batch --------------------------------------------------------


_CASES = [
    ("LSTM", {}),
    ("LSTM", {"bidirectional": True}),
    ("LSTM", {"num_layers": 2}),
    ("LSTM", {"num_layers": 2, "bidirectional": True}),
    ("LSTM", {"num_layers": 2, "bidirectional": True, "proj_size": 3}),
    ("GRU", {}),
    ("GRU", {"num_layers": 2, "bidirectional": True}),
    ("RNN", {"bidirectional": True}),
    ("RNN", {"num_layers": 2, "bidirectional": True, "nonlinearity": "relu"}),
]


def _states(module, batch, seed):
    """A random initial state (h, or (h, c) for an LSTM) of the module, batch-sized."""
    layers = module.num_layers * (2 if module.bidirectional else 1)
    hidden = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    h = _randn(layers, batch, hidden, seed=seed)
    if module.mode != "LSTM":
        return h
    return h, _randn(layers, batch, module.hidden_size, seed=seed + 1)


def _finals(result):
    return result if isinstance(result, tuple) else (result,)


def _grads(module, *tensors):
    return [p.grad.numpy().copy() for p in module.parameters()] + [
        t.grad.numpy().copy() for t in tensors
    ]


@pytest.mark.parametrize("mode,options", _CASES)
@pytest.mark.parametrize("with_hx", [False, True])
def test_a_packed_batch_equals_each_sequence_run_alone(mode, options, with_hx):
    ember.manual_seed(0)
    module = getattr(nn, mode)(3, 4, **options).double()
    lengths, steps = [3, 5, 1, 5, 2], 5
    x = _randn(steps, len(lengths), 3, seed=1).requires_grad_(True)
    hx = _states(module, len(lengths), seed=2) if with_hx else None
    rng = np.random.default_rng(3)
    out_weight = ember.tensor(rng.standard_normal((steps, len(lengths), module.weight_hh_l0.shape[1]
                                                   * (2 if module.bidirectional else 1))))
    final_weights = [ember.tensor(rng.standard_normal(h.shape))
                     for h in _finals(_states(module, len(lengths), seed=4))]

    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    output, finals = module(packed, hx)
    assert isinstance(output, PackedSequence)
    assert output.batch_sizes is packed.batch_sizes
    padded, _ = pad_packed_sequence(output)
    finals = _finals(finals)
    loss = (padded * out_weight).sum() + sum((f * w).sum() for f, w in zip(finals, final_weights))
    loss.backward()
    packed_grads = _grads(module, x)

    module.zero_grad()
    x.grad = None
    alone_loss = 0.0
    for b, n in enumerate(lengths):
        state = None
        if with_hx:
            state = tuple(h[:, b:b + 1] for h in _finals(hx))
            state = state if mode == "LSTM" else state[0]
        out_b, finals_b = module(x[:n, b:b + 1], state)
        np.testing.assert_allclose(padded[:n, b:b + 1].detach().numpy(),
                                   out_b.detach().numpy(), atol=1e-12)
        assert np.all(padded[n:, b].detach().numpy() == 0.0)
        for f, f_b, w in zip(finals, _finals(finals_b), final_weights):
            np.testing.assert_allclose(f[:, b:b + 1].detach().numpy(), f_b.detach().numpy(),
                                       atol=1e-12)
            alone_loss = alone_loss + (f_b * w[:, b:b + 1]).sum()
        alone_loss = alone_loss + (out_b * out_weight[:n, b:b + 1]).sum()
    alone_loss.backward()
    np.testing.assert_allclose(loss.item(), alone_loss.item(), atol=1e-10)
    for got, want in zip(packed_grads, _grads(module, x)):
        np.testing.assert_allclose(got, want, atol=1e-10)


def test_lstm_over_a_packed_float32_batch_matches_the_padded_run_where_sequences_run():
    ember.manual_seed(0)
    lstm = nn.LSTM(3, 5, batch_first=True)
    x = _randn(4, 6, 3, dtype="float32")
    lengths = [6, 4, 4, 2]
    out_packed, (h_n, c_n) = lstm(pack_padded_sequence(x, lengths, batch_first=True))
    out_padded, _ = lstm(x)
    padded, _ = pad_packed_sequence(out_packed, batch_first=True)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(padded[b, :n].detach().numpy(),
                                   out_padded[b, :n].detach().numpy(), atol=1e-6)
        np.testing.assert_allclose(h_n[0, b].detach().numpy(),
                                   out_padded[b, n - 1].detach().numpy(), atol=1e-6)
    assert out_packed.data.dtype == ember.float32 and c_n.shape == (1, 4, 5)


def test_lstm_gradients_through_a_packed_bidirectional_batch_match_finite_differences():
    ember.manual_seed(0)
    lstm = nn.LSTM(2, 3, bidirectional=True).double()
    x = _randn(3, 3, 2).requires_grad_(True)
    h0 = _randn(2, 3, 3, seed=1).requires_grad_(True)
    c0 = _randn(2, 3, 3, seed=2).requires_grad_(True)

    def run(x, h0, c0):
        packed = pack_padded_sequence(x, [2, 3, 1], enforce_sorted=False)
        output, (h_n, c_n) = lstm(packed, (h0, c0))
        return pad_packed_sequence(output)[0], h_n, c_n

    assert gradcheck(run, (x, h0, c0))


def test_recurrent_layers_refuse_mismatched_packed_inputs():
    lstm = nn.LSTM(3, 4)
    packed = pack_padded_sequence(_randn(4, 3, 3, dtype="float32"), [4, 2, 1])
    with pytest.raises(EmberRuntimeError, match=r"Expected hidden\[0\] size \(1, 3, 4\), got"):
        lstm(packed, (ember.zeros(1, 2, 4), ember.zeros(1, 2, 4)))
    with pytest.raises(EmberRuntimeError, match="hx and cx should also be 3-D"):
        lstm(packed, (ember.zeros(3, 4), ember.zeros(3, 4)))
    with pytest.raises(EmberRuntimeError, match="Expected 4, got 3"):
        nn.GRU(4, 4)(packed)
    with pytest.raises(EmberValueError, match="dtype"):
        nn.RNN(3, 4)(packed.double())


# -- whole programs ------------------------------------------------------------------------------


class _CaptionDecoder(nn.Module):
    """yunjey/pytorch-tutorial image_captioning's DecoderRNN.forward, with its loss."""

    def __init__(self, embed_size=6, hidden_size=8, vocab_size=20, num_layers=1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.lstm = nn.LSTM(embed_size, hidden_size, num_layers, batch_first=True)
        self.linear = nn.Linear(hidden_size, vocab_size)

    def forward(self, features, captions, lengths):
        embeddings = self.embed(captions)
        embeddings = ember.cat((features.unsqueeze(1), embeddings), 1)
        packed = pack_padded_sequence(embeddings, lengths, batch_first=True)
        hiddens, _ = self.lstm(packed)
        outputs = self.linear(hiddens[0])
        targets = pack_padded_sequence(captions, lengths, batch_first=True)[0]
        return F.cross_entropy(outputs, targets)


def _caption_batch(seed=0):
    ember.manual_seed(seed)
    return ember.randn(3, 6), ember.randint(0, 20, (3, 5))


def test_the_image_captioning_decoder_trains_on_packed_captions():
    features, captions = _caption_batch()
    lengths = [5, 4, 2]
    decoder = _CaptionDecoder()
    loss = decoder(features, captions, lengths)
    loss.backward()
    assert all(p.grad is not None for p in decoder.parameters())
    assert float(np.abs(decoder.lstm.weight_hh_l0.grad.numpy()).sum()) > 0

    # the same loss from the padded run, read where each caption runs
    embeddings = ember.cat((features.unsqueeze(1), decoder.embed(captions)), 1)
    hiddens, _ = decoder.lstm(embeddings)
    picked = [(b, t) for t in range(5) for b, n in enumerate(lengths) if t < n]
    rows = ember.stack([hiddens[b, t] for b, t in picked])
    targets = ember.stack([captions[b, t] for b, t in picked])
    expected = F.cross_entropy(decoder.linear(rows), targets)
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-6)


def test_a_scripted_decoder_with_packing_gives_the_eager_loss_and_gradients():
    features, captions = _caption_batch(1)
    decoder = _CaptionDecoder()
    scripted = ember.script(decoder)
    for lengths in ([5, 4, 2], [5, 4, 2], [5, 5, 3]):
        decoder.zero_grad()
        eager = decoder(features, captions, lengths)
        eager.backward()
        eager_grads = _grads(decoder)
        decoder.zero_grad()
        got = scripted(features, captions, lengths)
        got.backward()
        np.testing.assert_allclose(got.item(), eager.item(), rtol=1e-5)
        for a, b in zip(_grads(decoder), eager_grads):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_scripted_bidirectional_gru_encoder_over_unsorted_lengths_matches_eager():
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(4, 5, num_layers=2, bidirectional=True)

        def forward(self, x, lengths):
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            output, h_n = self.gru(packed)
            padded, _ = pad_packed_sequence(output)
            return padded.sum() + (h_n * h_n).sum()

    ember.manual_seed(2)
    encoder = Encoder()
    scripted = ember.script(encoder)
    x = ember.randn(6, 4, 4)
    for lengths in (ember.tensor([2, 6, 3, 6]), ember.tensor([2, 6, 3, 6]),
                    ember.tensor([6, 1, 1, 4])):
        np.testing.assert_allclose(scripted(x, lengths).item(), encoder(x, lengths).item(),
                                   rtol=1e-5)
