"""TransformerDecoderLayer, TransformerDecoder and Transformer against torch.nn: a torch
state_dict loaded into ember gives the same outputs and gradients, for every option and mask."""

import ember
import numpy as np
import pytest
from ember import nn

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.filterwarnings("ignore:enable_nested_tensor is True"),
    pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask"),
]

TOLERANCE = {"float32": (1e-5, 1e-5), "float64": (1e-10, 1e-11)}
D_MODEL, NHEAD, FF = 8, 2, 16
T, S, N = 4, 5, 3


def _load(ours, theirs):
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict({k: ember.tensor(v.numpy()) for k, v in theirs.state_dict().items()})


def _close(ours, theirs, dtype, what):
    rtol, atol = TOLERANCE[dtype]
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=rtol,
                               atol=atol, err_msg=what)


def _masks(lib, kind, batched, dtype):
    """Keyword masks of one kind for T target and S memory positions."""
    rng = np.random.default_rng(5)
    float_dtype = getattr(lib, dtype)
    causal = np.triu(np.full((T, T), -np.inf), 1)
    padding_t = np.zeros((N, T), dtype=bool)
    padding_t[1, -1] = True
    padding_s = np.zeros((N, S), dtype=bool)
    padding_s[0, -2:] = True
    if not batched:
        padding_t, padding_s = padding_t[1], padding_s[0]
    if kind == "none":
        return {}
    if kind == "causal_float":
        return {"tgt_mask": lib.tensor(causal, dtype=float_dtype)}
    if kind == "causal_hint":
        return {"tgt_mask": lib.tensor(causal, dtype=float_dtype), "tgt_is_causal": True}
    if kind == "bool_masks":
        memory = rng.random((T, S)) < 0.3
        memory[:, 0] = False
        return {"tgt_mask": lib.tensor(np.isinf(causal)), "memory_mask": lib.tensor(memory)}
    if kind == "padding":
        return {"tgt_key_padding_mask": lib.tensor(padding_t),
                "memory_key_padding_mask": lib.tensor(padding_s),
                "tgt_mask": lib.tensor(causal, dtype=float_dtype)}
    if kind == "float_memory_mask":
        return {"memory_mask": lib.tensor(rng.standard_normal((T, S)), dtype=float_dtype)}
    raise AssertionError(kind)


LAYER_OPTIONS = [
    {},
    {"norm_first": True},
    {"batch_first": True, "activation": "gelu"},
    {"bias": False, "layer_norm_eps": 1e-3},
    {"activation": "callable", "norm_first": True, "batch_first": True},
]
MASK_KINDS = ["none", "causal_float", "causal_hint", "bool_masks", "padding",
              "float_memory_mask"]


def _options(lib, options):
    options = dict(options)
    if options.get("activation") == "callable":
        options["activation"] = lib.nn.functional.silu
    return options


def _inputs(batch_first, batched, rng):
    if not batched:
        return rng.standard_normal((T, D_MODEL)), rng.standard_normal((S, D_MODEL))
    if batch_first:
        return rng.standard_normal((N, T, D_MODEL)), rng.standard_normal((N, S, D_MODEL))
    return rng.standard_normal((T, N, D_MODEL)), rng.standard_normal((S, N, D_MODEL))


def _run_and_compare(theirs, ours, call, arrays, dtype):
    results = []
    for lib, module in ((torch, theirs), (ember, ours)):
        module.eval()
        leaves = [lib.tensor(a, dtype=getattr(lib, dtype), requires_grad=True) for a in arrays]
        out = call(lib, module, *leaves)
        weights = lib.tensor(np.linspace(-1, 1, out.numel()).reshape(tuple(out.shape)),
                             dtype=getattr(lib, dtype))
        (out * weights).sum().backward()
        results.append((out, leaves))
    (t_out, t_leaves), (e_out, e_leaves) = results
    assert tuple(e_out.shape) == tuple(t_out.shape)
    _close(e_out, t_out, dtype, "output")
    for i, (e, t) in enumerate(zip(e_leaves, t_leaves)):
        _close(e.grad, t.grad, dtype, f"grad of input {i}")
    for (k, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert (p.grad is None) == (tp.grad is None), k
        if tp.grad is not None:
            _close(p.grad, tp.grad, dtype, f"grad of {k}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("masks", MASK_KINDS)
@pytest.mark.parametrize("options", LAYER_OPTIONS, ids=str)
def test_decoder_layer_matches_torch(options, masks, dtype):
    torch.manual_seed(0)
    theirs = torch.nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF, **_options(torch, options))
    ours = nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF, **_options(ember, options))
    theirs.to(getattr(torch, dtype))
    ours.to(getattr(ember, dtype))
    _load(ours, theirs)
    arrays = _inputs(options.get("batch_first", False), True, np.random.default_rng(1))
    _run_and_compare(theirs, ours,
                     lambda lib, m, tgt, mem: m(tgt, mem, **_masks(lib, masks, True, dtype)),
                     arrays, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("masks", ["none", "causal_float", "causal_hint", "padding"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
def test_decoder_stack_with_final_norm_matches_torch(batch_first, batched, masks, dtype):
    torch.manual_seed(1)
    layer = torch.nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF, batch_first=batch_first)
    theirs = torch.nn.TransformerDecoder(layer, 3, norm=torch.nn.LayerNorm(D_MODEL))
    ours = nn.TransformerDecoder(
        nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF, batch_first=batch_first), 3,
        norm=nn.LayerNorm(D_MODEL))
    theirs.to(getattr(torch, dtype))
    ours.to(getattr(ember, dtype))
    _load(ours, theirs)
    arrays = _inputs(batch_first, batched, np.random.default_rng(2))
    _run_and_compare(theirs, ours,
                     lambda lib, m, tgt, mem: m(tgt, mem, **_masks(lib, masks, batched, dtype)),
                     arrays, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("options", [{}, {"batch_first": True, "norm_first": True},
                                     {"activation": "gelu", "bias": False}], ids=str)
def test_transformer_matches_torch_with_all_masks(options, dtype):
    torch.manual_seed(2)
    args = {"d_model": D_MODEL, "nhead": NHEAD, "num_encoder_layers": 2,
            "num_decoder_layers": 2, "dim_feedforward": FF, **options}
    theirs = torch.nn.Transformer(**args).to(getattr(torch, dtype))
    ours = nn.Transformer(**args).to(getattr(ember, dtype))
    _load(ours, theirs)
    batch_first = options.get("batch_first", False)
    tgt, _ = _inputs(batch_first, True, np.random.default_rng(3))
    src = np.random.default_rng(4).standard_normal((N, S, D_MODEL) if batch_first
                                                   else (S, N, D_MODEL))

    def call(lib, m, src, tgt):
        masks = _masks(lib, "padding", True, dtype)
        return m(src, tgt, src_key_padding_mask=masks["memory_key_padding_mask"],
                 tgt_mask=lib.nn.Transformer.generate_square_subsequent_mask(T),
                 tgt_is_causal=True, **{k: v for k, v in masks.items() if k != "tgt_mask"})

    _run_and_compare(theirs, ours, call, (src, tgt), dtype)


def test_generate_square_subsequent_mask_matches_torch():
    for size in (1, 4):
        np.testing.assert_array_equal(
            nn.Transformer.generate_square_subsequent_mask(size).numpy(),
            torch.nn.Transformer.generate_square_subsequent_mask(size).numpy())
    mask = nn.Transformer.generate_square_subsequent_mask(3, dtype=ember.float64)
    assert mask.dtype == ember.float64


def test_transformer_init_draws_like_torch():
    ours, theirs = nn.Transformer(16, 4, 1, 1, 32), torch.nn.Transformer(16, 4, 1, 1, 32)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    for (k, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        if p.dim() > 1:  # xavier_uniform_: the same bound, so nearly the same spread
            bound = np.sqrt(6 / sum(p.shape[:2]))
            assert np.abs(p.detach().numpy()).max() <= bound, k
            assert abs(p.detach().numpy().std() - tp.detach().numpy().std()) < 0.3 * bound, k
        elif np.ptp(tp.detach().numpy()) == 0:  # LayerNorm ones and zeros, attention's zeros
            np.testing.assert_array_equal(p.detach().numpy(), tp.detach().numpy(), err_msg=k)
        else:  # Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) biases, fan_in 16 or 32
            values = p.detach().numpy()
            assert np.abs(values).max() <= 0.25 and np.ptp(values) > 0, k
