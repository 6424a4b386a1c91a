"""Layer behaviour that needs no oracle: dropout statistics, argument checks, shapes, helpers."""

import math
import warnings

import ember
import numpy as np
import pytest
from ember import nn


def _numpy(t):
    return t.detach().numpy()


# -- dropout -----------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_zeroes_at_rate_p_and_rescales_survivors(p):
    ember.manual_seed(0)
    n = 200_000
    out = _numpy(nn.Dropout(p)(ember.ones(n, dtype="float64")))
    zeros = np.count_nonzero(out == 0)
    # binomial count: within 6 standard deviations of n * p
    assert abs(zeros - n * p) < 6 * math.sqrt(n * p * (1 - p))
    np.testing.assert_allclose(out[out != 0], 1 / (1 - p))
    # so the expectation is kept
    assert abs(out.mean() - 1) < 6 * math.sqrt(p / (1 - p) / n)


def test_dropout_masks_differ_between_calls_and_repeat_with_the_seed():
    drop = nn.Dropout(0.5)
    x = ember.ones(64)
    ember.manual_seed(3)
    a, b = _numpy(drop(x)), _numpy(drop(x))
    ember.manual_seed(3)
    np.testing.assert_array_equal(_numpy(drop(x)), a)
    assert not np.array_equal(a, b)


def test_dropout_gradient_uses_the_same_mask():
    ember.manual_seed(1)
    x = ember.ones(1000, requires_grad=True)
    out = nn.Dropout(0.3)(x)
    out.sum().backward()
    np.testing.assert_array_equal(_numpy(x.grad), _numpy(out))


def test_dropout_edge_probabilities_and_eval():
    x = ember.randn(50)
    np.testing.assert_array_equal(_numpy(nn.Dropout(1.0)(x)), np.zeros(50))
    assert nn.Dropout(0.9).eval()(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(-0.1)


def test_dropout_inplace_writes_into_its_input():
    ember.manual_seed(2)
    x = ember.ones(100)
    out = nn.Dropout(0.5, inplace=True)(x)
    assert out is x and (_numpy(x) == 0).any()


@pytest.mark.parametrize(
    "layer, shape, channel_axes",
    [
        (nn.Dropout1d, (8, 50, 7), 2),
        (nn.Dropout1d, (50, 7), 1),  # unbatched (C, L)
        (nn.Dropout2d, (8, 50, 3, 4), 2),
        (nn.Dropout2d, (8, 50, 7), 2),  # read as (N, C, L), as PyTorch does
        (nn.Dropout3d, (4, 50, 2, 3, 2), 2),
        (nn.Dropout3d, (50, 2, 3, 2), 1),  # unbatched (C, D, H, W)
    ],
)
def test_channel_dropout_zeroes_whole_channels(layer, shape, channel_axes):
    ember.manual_seed(0)
    p = 0.4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _numpy(layer(p)(ember.ones(*shape, dtype="float64")))
    assert out.shape == shape
    per_channel = out.reshape(shape[:channel_axes] + (-1,))
    # every channel is all zeros or all 1 / (1 - p), and both occur
    assert np.all(per_channel.min(-1) == per_channel.max(-1))
    np.testing.assert_allclose(np.unique(per_channel), [0.0, 1 / (1 - p)])
    n = per_channel[..., 0].size
    assert abs(np.count_nonzero(per_channel[..., 0] == 0) - n * p) < 6 * math.sqrt(n * p * (1 - p))


def test_channel_dropout_gradient_is_the_channel_mask():
    ember.manual_seed(1)
    x = ember.randn(4, 6, 3, 3, dtype="float64", requires_grad=True)
    out = nn.functional.dropout2d(x, 0.5)
    out.sum().backward()
    mask = _numpy(out) / _numpy(x)
    np.testing.assert_allclose(_numpy(x.grad), mask)


def test_channel_dropout_eval_edge_probabilities_and_inplace():
    x = ember.ones(2, 3, 4)
    assert nn.Dropout1d(0.7).eval()(x) is x
    np.testing.assert_array_equal(_numpy(nn.Dropout1d(1.0)(x)), np.zeros((2, 3, 4)))
    ember.manual_seed(2)
    y = ember.ones(3, 40)
    out = nn.Dropout1d(0.5, inplace=True)(y)
    assert out is y and (_numpy(y) == 0).any() and (_numpy(y) == 2).any()
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout2d(1.5)


def test_channel_dropout_rank_checks_match_pytorch():
    with pytest.raises(RuntimeError, match=r"Expected 2D or 3D input.*\[2, 3, 4, 5\]") as e:
        nn.Dropout1d()(ember.ones(2, 3, 4, 5))
    assert isinstance(e.value, ember.EmberError)
    # a 2-D input to dropout2d warns and drops per (N, C) entry, as PyTorch does
    with pytest.warns(UserWarning, match="Received a 2-D input to dropout2d"):
        nn.Dropout2d(0.5)(ember.ones(4, 6))
    with pytest.raises(RuntimeError, match="at least 2 dimensions"), pytest.warns(UserWarning):
        nn.functional.dropout2d(ember.ones(5))


# -- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: nn.Linear(3, 2, **kw),
        lambda **kw: nn.Conv1d(2, 2, 3, **kw),
        lambda **kw: nn.Conv2d(2, 2, 3, **kw),
        lambda **kw: nn.BatchNorm2d(3, **kw),
        lambda **kw: nn.LayerNorm(3, **kw),
        lambda **kw: nn.GroupNorm(1, 3, **kw),
        lambda **kw: nn.Embedding(4, 3, **kw),
        lambda **kw: nn.MultiheadAttention(4, 2, **kw),
        lambda **kw: nn.TransformerEncoderLayer(4, 2, 8, **kw),
    ],
)
def test_factory_kwargs_set_the_dtype_of_every_float_tensor(make):
    module = make(dtype="float64", device="cpu")
    floats = [t for t in module.state_dict().values() if t.is_floating_point()]
    assert floats and all(t.dtype == ember.float64 for t in floats)


# -- argument checks ---------------------------------------------------------------------------


def test_conv_argument_checks():
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="out_channels must be divisible by groups"):
        nn.Conv2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        nn.Conv1d(4, 4, 3, groups=0)
    with pytest.raises(ValueError, match="Invalid padding string"):
        nn.Conv2d(2, 2, 3, padding="full")
    with pytest.raises(ValueError, match="strided convolutions"):
        nn.Conv1d(2, 2, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(2, 2, 3, padding_mode="mirror")


def test_conv_attributes_are_tuples_like_torch():
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1)
    assert conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (1, 1)
    assert conv.dilation == (1, 1) and tuple(conv.weight.shape) == (4, 2, 3, 3)
    conv1 = nn.Conv1d(2, 4, 5, padding="same")
    assert conv1.kernel_size == (5,) and conv1.padding == "same"
    assert conv1._reversed_padding_repeated_twice == [2, 2]


@pytest.mark.parametrize(
    ("layer", "shape", "message"),
    [
        (nn.BatchNorm1d(3), (2, 3, 4, 5), "expected 2D or 3D input"),
        (nn.BatchNorm2d(3), (2, 3), "expected 4D input"),
        (nn.BatchNorm3d(3), (2, 3, 4, 5), "expected 5D input"),
    ],
)
def test_batchnorm_checks_input_rank(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer(ember.randn(*shape))


def test_batchnorm_momentum_none_is_a_cumulative_average():
    bn = nn.BatchNorm1d(2, momentum=None).double()
    batches = [np.random.default_rng(i).standard_normal((6, 2)) * (i + 1) + i for i in range(3)]
    for b in batches:
        bn(ember.tensor(b))
    np.testing.assert_allclose(_numpy(bn.running_mean), np.mean([b.mean(0) for b in batches], 0))
    expected_var = np.mean([b.var(0, ddof=1) for b in batches], 0)
    np.testing.assert_allclose(_numpy(bn.running_var), expected_var)
    assert bn.num_batches_tracked.item() == 3


def test_batchnorm_eval_uses_running_statistics():
    bn = nn.BatchNorm1d(2).double()
    with ember.no_grad():
        bn.running_mean.copy_(ember.tensor([1.0, -2.0]))
        bn.running_var.copy_(ember.tensor([4.0, 0.25]))
    bn.eval()
    out = _numpy(bn(ember.tensor([[3.0, -1.0]], dtype="float64")))
    np.testing.assert_allclose(out, [[2 / math.sqrt(4 + 1e-5), 1 / math.sqrt(0.25 + 1e-5)]])


def test_group_norm_and_embedding_checks():
    with pytest.raises(ValueError, match="divisible by num_groups"):
        nn.GroupNorm(3, 4)
    with pytest.raises(ValueError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(5, 2, padding_idx=5)
    with pytest.raises(ValueError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(5, 2, padding_idx=-6)
    assert nn.Embedding(5, 2, padding_idx=-2).padding_idx == 3


def test_embedding_padding_row_gets_no_gradient():
    emb = nn.Embedding(4, 3, padding_idx=1)
    out = emb(ember.tensor([[1, 2], [1, 1]]))
    np.testing.assert_array_equal(_numpy(out[0, 0]), np.zeros(3))
    out.sum().backward()
    grad = _numpy(emb.weight.grad)
    np.testing.assert_array_equal(grad[1], np.zeros(3))
    np.testing.assert_array_equal(grad[2], np.ones(3))


def test_embedding_from_pretrained():
    weights = ember.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    emb = nn.Embedding.from_pretrained(weights)
    assert not emb.weight.requires_grad and emb.num_embeddings == 3 and emb.embedding_dim == 2
    np.testing.assert_array_equal(_numpy(emb(ember.tensor([2, 0]))), [[5.0, 6.0], [1.0, 2.0]])
    assert nn.Embedding.from_pretrained(weights, freeze=False).weight.requires_grad
    with pytest.raises(ValueError, match="2-dimensional"):
        nn.Embedding.from_pretrained(ember.ones(3))


def test_flatten_unflatten_shapes():
    x = ember.randn(2, 3, 4, 5)
    assert tuple(nn.Flatten()(x).shape) == (2, 60)
    assert tuple(nn.Flatten(1, 2)(x).shape) == (2, 12, 5)
    assert tuple(nn.Unflatten(1, (3, 4))(ember.randn(2, 12)).shape) == (2, 3, 4)
    with pytest.raises(TypeError):
        nn.Unflatten(1, 12)
    assert nn.Identity(1, 2, k=3)(x) is x


def test_softmax_modules_normalise_along_dim():
    x = ember.randn(3, 4, 5)
    np.testing.assert_allclose(_numpy(nn.Softmax(dim=1)(x)).sum(1), np.ones((3, 5)), rtol=1e-6)
    np.testing.assert_allclose(
        np.exp(_numpy(nn.LogSoftmax(dim=-1)(x))).sum(-1), np.ones((3, 4)), rtol=1e-6
    )


# -- attention ---------------------------------------------------------------------------------


def test_multihead_attention_argument_checks():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="greater than 0"):
        nn.MultiheadAttention(0, 1)
    mha = nn.MultiheadAttention(8, 2)
    x = ember.randn(4, 2, 8)
    with pytest.raises(ValueError, match="unbatched 2D or batched 3D"):
        mha(ember.randn(1, 4, 2, 8), x, x)
    with pytest.raises(ValueError, match="expected `key` and `value` to be 3-D"):
        mha(x, ember.randn(4, 8), x)
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        mha(x, x, x, is_causal=True)
    with pytest.raises(RuntimeError, match="The shape of the 2D attn_mask"):
        mha(x, x, x, attn_mask=ember.zeros(3, 4))
    with pytest.raises(TypeError, match="only bool and floating types"):
        mha(x, x, x, key_padding_mask=ember.zeros(2, 4, dtype="int64"))


def test_multihead_attention_shapes_and_weights():
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    q, kv = ember.randn(3, 4, 8), ember.randn(3, 6, 8)
    out, weights = mha(q, kv, kv)
    assert tuple(out.shape) == (3, 4, 8) and tuple(weights.shape) == (3, 4, 6)
    np.testing.assert_allclose(_numpy(weights).sum(-1), np.ones((3, 4)), rtol=1e-5)
    _, per_head = mha(q, kv, kv, average_attn_weights=False)
    assert tuple(per_head.shape) == (3, 2, 4, 6)
    np.testing.assert_allclose(_numpy(per_head).mean(1), _numpy(weights), rtol=1e-5, atol=1e-7)
    out2, none = mha(q, kv, kv, need_weights=False)
    assert none is None
    np.testing.assert_allclose(_numpy(out2), _numpy(out), rtol=1e-5, atol=1e-6)


def test_multihead_attention_masked_keys_get_zero_weight():
    mha = nn.MultiheadAttention(8, 2)
    x = ember.randn(5, 2, 8)
    mask = ember.tensor([[False, True, False, False, True], [False] * 5])
    _, weights = mha(x, x, x, key_padding_mask=mask)
    w = _numpy(weights)
    assert np.all(w[0, :, [1, 4]] == 0) and np.all(w[1] > 0)
    causal = ember.triu(ember.ones(5, 5, dtype="bool"), diagonal=1)
    _, weights = mha(x, x, x, attn_mask=causal)
    assert np.all(np.triu(_numpy(weights), k=1) == 0)


def test_transformer_encoder_layer_activation_choices():
    assert nn.TransformerEncoderLayer(8, 2, 16).activation_relu_or_gelu == 1
    assert nn.TransformerEncoderLayer(8, 2, 16, activation="gelu").activation_relu_or_gelu == 2
    layer = nn.TransformerEncoderLayer(8, 2, 16, activation=lambda x: x * 2)
    assert layer.activation_relu_or_gelu == 0
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(8, 2, 16, activation="tanh")


def test_transformer_encoder_keeps_shape_and_trains():
    ember.manual_seed(0)
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2, norm=nn.LayerNorm(8)
    )
    x = ember.randn(3, 5, 8)
    out = enc(x)
    assert tuple(out.shape) == (3, 5, 8)
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in enc.parameters())


# -- losses ------------------------------------------------------------------------------------


def test_loss_modules_default_to_mean_and_pass_reduction():
    x, y = ember.tensor([1.0, 2.0, 4.0]), ember.tensor([1.0, 0.0, 0.0])
    assert nn.MSELoss()(x, y).item() == pytest.approx(20 / 3)
    assert nn.MSELoss(reduction="sum")(x, y).item() == pytest.approx(20)
    assert tuple(nn.L1Loss(reduction="none")(x, y).shape) == (3,)
    assert nn.HuberLoss(delta=1.0)(x, y).item() == pytest.approx((1.5 + 3.5) / 3)


def test_loss_weight_is_a_buffer_that_follows_dtype():
    loss = nn.CrossEntropyLoss(weight=ember.tensor([1.0, 2.0]))
    assert "weight" in dict(loss.named_buffers())
    loss.double()
    assert loss.weight.dtype == ember.float64
    assert "weight" not in nn.CrossEntropyLoss().state_dict()


@pytest.mark.parametrize("mask", ["none", "causal", "float", "bool"])
def test_batch_first_self_attention_fast_path_matches_the_general_path(mask, monkeypatch):
    """Self-attention on (N, L, E) takes the heads as views of one projection; the general
    path (taken when key and value are other tensors) must give the same outputs and
    gradients."""
    ember.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).double()
    rng = np.random.default_rng(0)
    x = ember.tensor(rng.standard_normal((3, 5, 8)), requires_grad=True)
    kwargs = {"need_weights": False}
    if mask == "causal":
        causal = ember.triu(ember.full((5, 5), float("-inf"), dtype=ember.float64), diagonal=1)
        kwargs.update(attn_mask=causal, is_causal=True)
    elif mask == "float":
        kwargs["attn_mask"] = ember.tensor(rng.standard_normal((5, 5)))
    elif mask == "bool":
        kwargs["attn_mask"] = ember.tensor(rng.random((5, 5)) < 0.3)
    calls = []
    fast_path = nn.MultiheadAttention._self_attend_batch_first
    monkeypatch.setattr(nn.MultiheadAttention, "_self_attend_batch_first",
                        lambda self, *a: calls.append(1) or fast_path(self, *a))
    fast, _ = mha(x, x, x, **kwargs)
    (fast * fast).sum().backward()
    fast_grads = [x.grad.numpy().copy()] + [p.grad.numpy().copy() for p in mha.parameters()]
    x.grad = None
    mha.zero_grad()
    y = x * 1.0  # another tensor: the general path
    slow, _ = mha(y, y * 1.0, y * 1.0, **kwargs)
    (slow * slow).sum().backward()
    assert calls == [1]  # the first call took the fast path, the second did not
    slow_grads = [x.grad.numpy()] + [p.grad.numpy() for p in mha.parameters()]
    np.testing.assert_allclose(fast.detach().numpy(), slow.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    for a, b in zip(fast_grads, slow_grads):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
