"""TransformerDecoderLayer, TransformerDecoder and Transformer without torch: compiled equal to
eager, shapes, causality taken from the hints only, and PyTorch's errors."""

import copy

import ember
import numpy as np
import pytest
from ember import nn
from ember.errors import EmberRuntimeError


def _decoder(batch_first=False, **options):
    ember.manual_seed(0)
    layer = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=batch_first, **options)
    return nn.TransformerDecoder(layer, 2, norm=nn.LayerNorm(8))


def _data(seed, batch_first=False):
    rng = np.random.default_rng(seed)
    tgt = rng.standard_normal((3, 4, 8) if batch_first else (4, 3, 8)).astype(np.float32)
    memory = rng.standard_normal((3, 5, 8) if batch_first else (5, 3, 8)).astype(np.float32)
    return ember.tensor(tgt), ember.tensor(memory)


@pytest.mark.parametrize("options", [{}, {"norm_first": True, "batch_first": True},
                                     {"activation": "gelu", "bias": False}], ids=str)
def test_scripted_forward_and_backward_equal_eager(options):
    batch_first = options.get("batch_first", False)
    eager = _decoder(**options)
    compiled = copy.deepcopy(eager)
    mask = nn.Transformer.generate_square_subsequent_mask(4)

    def make_step(model):
        def step(tgt, memory):
            model.zero_grad()
            out = model(tgt, memory, tgt_mask=mask, tgt_is_causal=True)
            loss = (out * out).mean()
            loss.backward()
            return loss

        return step

    eager_step, scripted = make_step(eager), ember.script(make_step(compiled))
    for call in range(4):
        tgt, memory = _data(call, batch_first)
        want, got = eager_step(tgt, memory), scripted(tgt, memory)
        np.testing.assert_allclose(got.item(), want.item(), rtol=1e-5)
        for (k, p), q in zip(compiled.named_parameters(), eager.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6,
                                       err_msg=k)
    assert scripted.fallbacks == [] and scripted.graph is not None
    assert sum(sp.calls for sp in scripted.specializations) >= 2


def test_causality_is_never_read_from_the_mask_values():
    # a compiled decoder given a tgt_mask and no hint must not guard on the mask's values:
    # changing them neither retraces nor is ignored
    model = _decoder().eval()
    scripted = ember.script(lambda tgt, memory, mask: model(tgt, memory, tgt_mask=mask))
    causal = nn.Transformer.generate_square_subsequent_mask(4)
    other = ember.tensor(np.random.default_rng(9).standard_normal((4, 4)).astype(np.float32))
    tgt, memory = _data(0)
    for mask in (causal, other, causal, other):
        np.testing.assert_allclose(scripted(tgt, memory, mask).detach().numpy(),
                                   model(tgt, memory, tgt_mask=mask).detach().numpy(),
                                   rtol=1e-5, atol=1e-6)
    assert len(scripted.specializations) == 1, scripted.recompiles
    assert scripted.fallbacks == []


def test_a_causal_mask_with_or_without_the_hint_gives_the_same_output():
    model = _decoder().eval()
    tgt, memory = _data(1)
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    hinted = model(tgt, memory, tgt_mask=mask, tgt_is_causal=True)
    plain = model(tgt, memory, tgt_mask=mask)
    unmasked = model(tgt, memory)
    np.testing.assert_allclose(hinted.detach().numpy(), plain.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(plain.detach().numpy(), unmasked.detach().numpy(), atol=1e-3)


def test_the_first_target_position_sees_only_itself_under_a_causal_mask():
    layer = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0).eval()
    tgt, memory = _data(2)
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    changed = tgt.clone()
    changed[1:] = changed[1:] + 1.0  # later positions change; position 0 must not notice
    a = layer(tgt, memory, tgt_mask=mask, tgt_is_causal=True)
    b = layer(changed, memory, tgt_mask=mask, tgt_is_causal=True)
    np.testing.assert_allclose(a[0].detach().numpy(), b[0].detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(a[1].detach().numpy(), b[1].detach().numpy(), atol=1e-3)


@pytest.mark.parametrize("batch_first", [False, True])
def test_shapes_batched_and_unbatched(batch_first):
    model = nn.Transformer(8, 2, 1, 2, 16, batch_first=batch_first)
    src = ember.randn(3, 5, 8) if batch_first else ember.randn(5, 3, 8)
    tgt = ember.randn(3, 4, 8) if batch_first else ember.randn(4, 3, 8)
    assert tuple(model(src, tgt).shape) == tuple(tgt.shape)
    assert tuple(model(ember.randn(5, 8), ember.randn(4, 8)).shape) == (4, 8)
    names = [k for k, _ in model.named_parameters()]
    assert "decoder.layers.1.multihead_attn.in_proj_weight" in names
    assert "decoder.layers.1.norm3.weight" in names and "decoder.norm.bias" in names
    assert "encoder.layers.0.linear2.weight" in names and "encoder.layers.1.norm1.weight" \
        not in names


def test_custom_encoder_and_decoder_replace_the_stacks():
    encoder, decoder = nn.Identity(), _decoder()
    model = nn.Transformer(8, 2, custom_encoder=encoder, custom_decoder=decoder)
    assert model.encoder is encoder and model.decoder is decoder


def test_a_callable_activation_is_used():
    layer = nn.TransformerDecoderLayer(8, 2, 16, activation=nn.functional.silu)
    assert layer.activation is nn.functional.silu
    assert nn.TransformerDecoderLayer(8, 2, activation="gelu").activation is nn.functional.gelu


@pytest.mark.parametrize("call,message", [
    (lambda m: m(ember.randn(5, 3, 8), ember.randn(4, 2, 8)),
     r"the batch number of src and tgt must be equal \(src of shape \(5, 3, 8\), tgt of "
     r"shape \(4, 2, 8\)"),
    (lambda m: m(ember.randn(5, 3, 8), ember.randn(4, 3, 6)),
     r"the feature number of src and tgt must be equal to d_model \(8\)"),
    (lambda m: m.decoder(ember.randn(4, 3, 8), ember.randn(5, 3, 8), tgt_is_causal=True),
     "Need attn_mask if specifying the is_causal hint"),
])
def test_bad_input_raises_torchs_errors(call, message):
    model = nn.Transformer(8, 2, 1, 1, 16)
    with pytest.raises(EmberRuntimeError, match=message):
        call(model)


def test_an_unknown_activation_name_is_a_runtime_error():
    with pytest.raises(EmberRuntimeError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerDecoderLayer(8, 2, activation="tanh")


def test_layers_are_exported_where_torch_has_them():
    from ember.nn.modules.transformer import Transformer, TransformerDecoder

    assert Transformer is nn.Transformer and TransformerDecoder is nn.TransformerDecoder
    assert nn.TransformerDecoderLayer.__module__ == "ember.nn.layers.transformer"
