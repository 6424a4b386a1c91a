"""Symbolic sizes must not leak out of ember's own code as plain numbers.

ember.script(fn, dynamic=True) traces every argument dim (>= 2) symbolically and reuses the one
graph for other sizes without re-running Python. Sizes that ember's own code reads are SizeInts;
a C-level path that reads their plain value (range(n), float / n, numpy, list[n]) without
making the size exact would bake this call's number into the graph, and the reused graph would
compute wrong results at other sizes. Each case below calls the ember API on inputs whose size
varies, without reading a size itself, and checks the scripted results, gradients taken outside
the script (backward) and gradients taken inside it (autograd.grad, which records the derivative
rules into the graph) against eager at several sizes.
"""

import copy

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import autograd, nn

SIZES = (3, 5, 2, 8)


def _rand(shape, seed, grad=True):
    a = np.random.default_rng(seed).standard_normal(shape)
    return ember.tensor(a, dtype=ember.float64, requires_grad=grad)


def _ints(shape, high, seed):
    return ember.tensor(np.random.default_rng(seed).integers(0, high, shape).astype(np.int64))


def _leaves(value):
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _float_outputs(out):
    return [o for o in _leaves(out)
            if isinstance(o, ember.Tensor) and o.dtype.is_floating_point and o.requires_grad]


def _compare(got, want, what, n):
    got, want = _leaves(got), _leaves(want)
    assert len(got) == len(want), f"{what} at size {n}: {len(got)} results, eager {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        if not isinstance(w, ember.Tensor):
            assert g == w, f"{what} at size {n}, result {k}"
            continue
        assert tuple(g.shape) == tuple(w.shape), (
            f"{what} at size {n}, result {k}: shape {tuple(g.shape)}, eager {tuple(w.shape)}")
        np.testing.assert_allclose(g.detach().numpy(), w.detach().numpy(), rtol=1e-7,
                                   atol=1e-9, err_msg=f"{what} at size {n}, result {k}")


def _loss(out):
    total = 0
    for o in _float_outputs(out):
        total = total + (o * o.tanh()).sum()  # nonlinear: the gradient depends on the values
    return total


def _with_inner_grad(fn):
    """fn, also returning the gradients of a loss of its results, taken inside the script."""

    def inner(*args):
        out = fn(*args)
        wrt = [a for a in args if isinstance(a, ember.Tensor) and a.requires_grad]
        if not _float_outputs(out) or not wrt:
            return out
        grads = autograd.grad(_loss(out), wrt, allow_unused=True)
        return out, tuple(g for g in grads if g is not None)

    return inner


def _check(fn, make, sizes=SIZES, grad=True):
    forward = ember.script(fn, dynamic=True)
    backward = ember.script(fn, dynamic=True)
    inner = _with_inner_grad(fn)
    inner_scripted = ember.script(inner, dynamic=True)
    for n in sizes:
        # forward without autograd: the compiled program of the symbolic graph
        args = make(n)
        with ember.no_grad():
            _compare(forward(*args), fn(*args), "forward", n)
        if not grad:
            continue
        # backward outside the script
        eager_args, script_args = make(n), make(n)
        want, got = fn(*eager_args), backward(*script_args)
        _compare(got, want, "forward (grad mode)", n)
        if _float_outputs(want):
            _loss(want).backward()
            _loss(got).backward()
            for k, (a, b) in enumerate(zip(script_args, eager_args)):
                if isinstance(b, ember.Tensor) and b.grad is not None:
                    assert a.grad is not None, f"input {k} got no gradient at size {n}"
                    _compare(a.grad, b.grad, f"gradient of input {k}", n)
        # gradients recorded into the traced graph (autograd.grad inside the function)
        args = make(n)
        _compare(inner_scripted(*args), inner(*args), "inner autograd.grad", n)
    for s in (forward, backward, inner_scripted):
        assert not s.fallbacks, s.fallbacks
    return forward


def _x(*shape):
    """make(n): one float64 input, n substituted for every 'n' in shape."""
    return lambda n: (_rand(tuple(n if d == "n" else d for d in shape), n),)


# -- views, shapes and indexing ------------------------------------------------------------

VIEWS = {
    "reshape_infer": (lambda x: x.reshape(-1, 3) * 2, _x("n", 6)),
    "reshape_flat": (lambda x: x.reshape(-1), _x(2, "n", 3)),
    "view": (lambda x: x.view(2, -1) + 1, _x("n", 4)),
    "reshape_after_transpose": (lambda x: x.transpose(0, 1).reshape(-1, 2), _x("n", 4)),
    "flatten": (lambda x: x.flatten(1), _x(2, "n", 3)),
    "flatten_all": (lambda x: x.flatten(), _x("n", 2, 3)),
    "unflatten": (lambda x: x.unflatten(1, (2, 3)), _x("n", 6)),
    "unflatten_infer": (lambda x: x.unflatten(0, (2, -1)), _x(2, "n", 3)),
    "expand": (lambda x: x.unsqueeze(0).expand(4, -1, -1), _x("n", 3)),
    "expand_as": (lambda x: x.sum(1, keepdim=True).expand_as(x), _x("n", 3)),
    "repeat": (lambda x: x.repeat(2, 3), _x("n", 3)),
    "permute": (lambda x: x.permute(2, 0, 1), _x(2, "n", 3)),
    "transpose": (lambda x: x.transpose(0, 1), _x("n", 3)),
    "mT": (lambda x: x.mT, _x(2, "n", 3)),
    "movedim": (lambda x: ember.movedim(x, 1, 0), _x(2, "n", 3)),
    "narrow": (lambda x: x.narrow(1, 1, 1), _x(2, "n", 3)),
    "narrow_negative": (lambda x: x.narrow(1, -2, 2), _x(2, "n", 3)),
    "chunk": (lambda x: x.chunk(2, 1), _x(2, "n", 3)),
    "split": (lambda x: x.split(2, 0), _x("n", 3)),
    "unbind": (lambda x: x.unbind(0), _x("n", 3)),
    "select_negative": (lambda x: x.select(0, -1), _x("n", 3)),
    "cat": (lambda x: ember.cat([x, x * 2, x[:1]], 0), _x("n", 3)),
    "cat_dim1": (lambda x: ember.cat([x, x.flip(1)], 1), _x(2, "n")),
    "stack": (lambda x: ember.stack([x, x + 1], 1), _x("n", 3)),
    "squeeze": (lambda x: x.squeeze(1) * 3, _x("n", 1, 3)),
    "squeeze_all": (lambda x: x.squeeze(), _x("n", 1, 3)),
    "unsqueeze": (lambda x: x.unsqueeze(-1) * x.unsqueeze(-2), _x("n", 3)),
    "flip": (lambda x: x.flip(0), _x("n", 3)),
    "tril_triu": (lambda x: x.tril(-1) + x.triu(1) * 2, _x("n", "n")),
    "index_last": (lambda x: x[-1], _x("n", 3)),
    "index_second_last_col": (lambda x: x[:, -2], _x(2, "n")),
    "slice_drop_last": (lambda x: x[:-1], _x("n", 3)),
    "slice_drop_first": (lambda x: x[1:] - x[:-1], _x("n", 3)),
    "slice_last_two": (lambda x: x[-2:], _x("n", 3)),
    "slice_step": (lambda x: x[::2], _x("n", 3)),
    "slice_step_offset": (lambda x: x[1::3], _x("n", 3)),
    "slice_inner": (lambda x: x[..., 1:-1], _x(2, "n")),
    "slice_past_end": (lambda x: x[:100], _x("n", 3)),
    "slice_none": (lambda x: x[None, 1:, None], _x("n", 3)),
    "index_tensor_negative": (lambda x: x[ember.tensor([0, -1, -2])], _x("n", 3)),
    "index_list": (lambda x: x[[0, -1]], _x("n", 3)),
    "setitem_negative": (lambda x: _set(x, (slice(None), -1), 5.0), _x(2, "n")),
    "setitem_slice": (lambda x: _set(x, slice(1, None), 0.0), _x("n", 3)),
    "iterate_rows": (lambda x: ember.stack(list(x)) * 2, _x("n", 3)),
    "iterate_sum": (lambda x: sum(row * row for row in x), _x("n", 3)),
    "gather": (lambda x: x.gather(1, (x.abs() * 3).long() % 3), _x("n", 3)),
    "index_select": (lambda x: x.index_select(0, ember.tensor([0, 1, 0])), _x("n", 3)),
    "masked_fill": (lambda x: x.masked_fill(x > 0.5, -1.0), _x("n", 3)),
    "where": (lambda x: ember.where(x > 0, x, x * 0.1), _x("n", 3)),
    "broadcast": (lambda x: x * x.mean(0) + x.sum(1, keepdim=True), _x("n", 3)),
    "cumsum": (lambda x: x.cumsum(0), _x("n", 3)),
    "contiguous_after_permute": (lambda x: x.t().contiguous().view(-1), _x("n", 3)),
    "new_zeros_like": (lambda x: x + ember.zeros_like(x), _x("n", 3)),
    "copy_into_clone": (lambda x: x.clone().copy_(x * 2) + 1, _x("n", 3)),
}


def _set(x, key, value):
    y = x.clone()
    y[key] = value
    return y * x


@pytest.mark.parametrize("name", list(VIEWS))
def test_views_and_indexing(name):
    fn, make = VIEWS[name]
    _check(fn, make)


# -- reductions ----------------------------------------------------------------------------

REDUCTIONS = {
    "sum_dim": (lambda x: x.sum(0), _x("n", 3)),
    "mean_all": (lambda x: x.mean(), _x("n", 3)),
    "mean_dim": (lambda x: x.mean(0), _x("n", 3)),
    "mean_keepdim": (lambda x: x - x.mean(1, keepdim=True), _x(2, "n")),
    "var_dim": (lambda x: x.var(0), _x("n", 3)),
    "var_all": (lambda x: x.var(), _x("n", 3)),
    "var_biased": (lambda x: x.var(1, unbiased=False), _x(2, "n")),
    "std_dim": (lambda x: x.std(0), _x("n", 3)),
    "var_mean": (lambda x: ember.var_mean(x, 0), _x("n", 3)),
    "logsumexp": (lambda x: x.logsumexp(0), _x("n", 3)),
    "amax": (lambda x: x.amax(0), _x("n", 3)),
    "max_dim": (lambda x: x.max(0).values, _x("n", 3)),
    "max_dim_flattened": (lambda x: x.flatten(1).max(0).values, _x(2, "n", 3)),
    "min_dim_keepdim": (lambda x: x.min(1, keepdim=True)[0] * x, _x(2, "n")),
    "prod": (lambda x: x.prod(0), _x("n", 3)),
    "norm": (lambda x: x.norm(dim=0), _x("n", 3)),
}


@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reductions(name):
    fn, make = REDUCTIONS[name]
    _check(fn, make)


# -- nn.functional ---------------------------------------------------------------------------


def _logits_and_targets(classes_symbolic, probabilities=False, ignore=False):
    def make(n):
        shape = (4, n) if classes_symbolic else (n, 5)
        x = _rand(shape, n)
        if probabilities:
            t = F.softmax(_rand(shape, n + 100, grad=False), 1)
        else:
            t = _ints(shape[:1], shape[1], n + 100)
            if ignore:
                t = ember.where(ember.arange(shape[0]) % 2 == 0, t, -100)
        return x, t

    return make


def _mask(kind):
    def make(n):
        q, k, v = (_rand((2, 2, n, 4), n + i) for i in range(3))
        if kind == "bool":
            m = ember.tensor(np.random.default_rng(n).random((n, n)) > 0.3) | ember.eye(n, dtype=ember.bool)
        else:
            m = _rand((n, n), n + 50, grad=False)
        return q, k, v, m

    return make


def _qkv(n, source=None):
    return (_rand((2, 2, n, 4), n), _rand((2, 2, source or n, 4), n + 1),
            _rand((2, 2, source or n, 4), n + 2))


FUNCTIONAL = {
    "softmax_last": (lambda x: F.softmax(x, -1), _x(2, "n")),
    "softmax_first": (lambda x: F.softmax(x, 0), _x("n", 3)),
    "log_softmax": (lambda x: F.log_softmax(x, 1), _x(2, "n", 3)),
    "softmin": (lambda x: F.softmin(x, 1), _x(2, "n")),
    "layer_norm": (lambda x: F.layer_norm(x, (6,)), _x("n", 6)),
    "layer_norm_weighted": (lambda x, w, b: F.layer_norm(x, (4,), w, b),
                            lambda n: (_rand((2, n, 4), n), _rand((4,), 1), _rand((4,), 2))),
    "group_norm_batch": (lambda x: F.group_norm(x, 2), _x("n", 4, 5)),
    "group_norm_spatial": (lambda x: F.group_norm(x, 2), _x(2, 4, "n")),
    "batch_norm_train": (lambda x: F.batch_norm(x, None, None, training=True), _x("n", 3)),
    "batch_norm_train_spatial": (lambda x: F.batch_norm(x, None, None, training=True),
                                 _x(2, 3, "n")),
    "embedding": (lambda i, w: F.embedding(i, w),
                  lambda n: (_ints((2, n), 7, n), _rand((7, 4), n))),
    "embedding_padding_idx": (lambda i, w: F.embedding(i, w, padding_idx=-1),
                              lambda n: (_ints((2, n), 7, n), _rand((7, 4), n))),
    "embedding_symbolic_rows": (lambda i, w: F.embedding(i, w, padding_idx=-1),
                                lambda n: (_ints((5,), n, n), _rand((n, 4), n))),
    "one_hot": (lambda t: F.one_hot(t, 6), lambda n: (_ints((n,), 6, n),)),
    "one_hot_inferred": (lambda t: F.one_hot(t), lambda n: (_ints((n,), 4, n) * 0 + 3,)),
    "normalize_dim1": (lambda x: F.normalize(x, dim=1), _x("n", 3)),
    "normalize_dim0": (lambda x: F.normalize(x, dim=0), _x("n", 3)),
    "normalize_p1": (lambda x: F.normalize(x, p=1.0, dim=1), _x(2, "n")),
    "dropout_eval": (lambda x: F.dropout(x, 0.5, training=False) * 2, _x("n", 3)),
    "dropout_module_eval": (lambda x: nn.Dropout(0.3).eval()(x) + 1, _x("n", 3)),
    "glu": (lambda x: F.glu(x, 0), lambda n: (_rand((2 * n, 3), n),)),
    "gelu_silu": (lambda x: F.gelu(x) + F.silu(x) + F.gelu(x, approximate="tanh"), _x("n", 3)),
    "pad_constant": (lambda x: F.pad(x, (1, 2), value=0.5), _x(2, "n")),
    "pad_negative": (lambda x: F.pad(x, (-1, 1)), _x(2, "n")),
    "pad_reflect": (lambda x: F.pad(x, (1, 1), mode="reflect"), _x(2, 2, "n")),
    "pad_replicate": (lambda x: F.pad(x, (2, 1), mode="replicate"), _x(2, 2, "n")),
    "pad_circular": (lambda x: F.pad(x, (1, 1), mode="circular"), _x(2, 2, "n")),
    "pad_2d_reflect": (lambda x: F.pad(x, (1, 1, 1, 1), mode="reflect"), _x(2, 2, "n", 4)),
    "linear": (lambda x, w, b: F.linear(x, w, b),
               lambda n: (_rand((2, n, 4), n), _rand((3, 4), 1), _rand((3,), 2))),
    "linear_symbolic_features": (lambda x, w: F.linear(x, w),
                                 lambda n: (_rand((3, n), n), _rand((2, n), n + 1))),
    "matmul": (lambda a, b: a @ b, lambda n: (_rand((2, n, 4), n), _rand((4, n), n + 1))),
    "bmm_inner": (lambda a, b: ember.bmm(a, b),
                  lambda n: (_rand((2, 3, n), n), _rand((2, n, 4), n + 1))),
    "conv1d": (lambda x, w: F.conv1d(x, w, padding=1),
               lambda n: (_rand((2, 3, n), n), _rand((4, 3, 3), 1))),
    "conv1d_stride": (lambda x, w: F.conv1d(x, w, stride=2),
                      lambda n: (_rand((2, 3, n + 2), n), _rand((4, 3, 2), 1))),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, padding=1),
               lambda n: (_rand((2, 3, n, 5), n), _rand((4, 3, 3, 3), 1), _rand((4,), 2))),
    "conv2d_same": (lambda x, w: F.conv2d(x, w, padding="same"),
                    lambda n: (_rand((2, 3, 5, n), n), _rand((2, 3, 2, 3), 1))),
    "conv2d_stride_dilation": (lambda x, w: F.conv2d(x, w, stride=2, dilation=2),
                               lambda n: (_rand((2, 3, n + 4, n + 5), n), _rand((2, 3, 2, 2), 1))),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), _x(2, 3, "n", 6)),
    "max_pool2d_ceil": (lambda x: F.max_pool2d(x, 2, ceil_mode=True), _x(2, 3, "n", 5)),
    "max_pool2d_pad": (lambda x: F.max_pool2d(x, 3, stride=2, padding=1), _x(2, "n", "n")),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 2), _x(2, 3, "n", 6)),
    "avg_pool2d_pad": (lambda x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False),
                       _x(2, 3, "n", 4)),
    "avg_pool1d": (lambda x: F.avg_pool1d(x, 2), _x(2, 3, "n")),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (2, 3)), _x(2, 3, "n", "n")),
    "adaptive_avg_pool2d_one": (lambda x: F.adaptive_avg_pool2d(x, 1), _x(2, 3, "n", 4)),
}


@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_functional(name):
    fn, make = FUNCTIONAL[name]
    grad = name not in ("one_hot", "one_hot_inferred")
    _check(fn, make, grad=grad)


# -- losses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("classes_symbolic", [False, True], ids=["batch_n", "classes_n"])
@pytest.mark.parametrize("options", [
    {}, {"reduction": "sum"}, {"reduction": "none"},
    {"label_smoothing": 0.1}, {"label_smoothing": 0.2, "reduction": "sum"},
    {"label_smoothing": 0.1, "reduction": "none"},
], ids=["mean", "sum", "none", "smooth_mean", "smooth_sum", "smooth_none"])
def test_cross_entropy_class_indices(options, classes_symbolic):
    _check(lambda x, t: F.cross_entropy(x, t, **options), _logits_and_targets(classes_symbolic))


@pytest.mark.parametrize("options", [{}, {"reduction": "sum"}, {"label_smoothing": 0.2}],
                         ids=["mean", "sum", "smooth"])
def test_cross_entropy_ignore_index(options):
    _check(lambda x, t: F.cross_entropy(x, t, **options),
           _logits_and_targets(False, ignore=True))


@pytest.mark.parametrize("classes_symbolic", [False, True], ids=["batch_n", "classes_n"])
@pytest.mark.parametrize("options", [{}, {"reduction": "none"}, {"label_smoothing": 0.3}],
                         ids=["mean", "none", "smooth"])
def test_cross_entropy_probabilities(options, classes_symbolic):
    _check(lambda x, t: F.cross_entropy(x, t, **options),
           _logits_and_targets(classes_symbolic, probabilities=True))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss(reduction):
    _check(lambda x, t: F.nll_loss(F.log_softmax(x, 1), t, reduction=reduction),
           _logits_and_targets(False, ignore=True))


LOSSES = {
    "mse_mean": lambda x, y: F.mse_loss(x, y),
    "mse_sum": lambda x, y: F.mse_loss(x, y, reduction="sum"),
    "mse_none": lambda x, y: F.mse_loss(x, y, reduction="none"),
    "l1": lambda x, y: F.l1_loss(x, y),
    "smooth_l1": lambda x, y: F.smooth_l1_loss(x, y, beta=0.5),
    "huber": lambda x, y: F.huber_loss(x, y, delta=0.7),
    "bce_logits": lambda x, y: F.binary_cross_entropy_with_logits(x, y.sigmoid()),
    "bce": lambda x, y: F.binary_cross_entropy(x.sigmoid(), y.sigmoid()),
    "kl_div_batchmean": lambda x, y: F.kl_div(F.log_softmax(x, 1), F.softmax(y, 1),
                                              reduction="batchmean"),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_regression_losses(name):
    _check(LOSSES[name], lambda n: (_rand((n, 3), n), _rand((n, 3), n + 7, grad=False)))


# -- attention -------------------------------------------------------------------------------

SDPA = {
    "plain": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v), _qkv),
    "causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), _qkv),
    "causal_longer_keys": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v,
                                                                          is_causal=True),
                           lambda n: _qkv(n, n + 2)),
    "fixed_keys": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
                   lambda n: _qkv(n, 3)),
    "bool_mask": (lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                  _mask("bool")),
    "float_mask": (lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                   _mask("float")),
    "scale": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=0.3), _qkv),
    "gqa": (lambda q, k, v: F.scaled_dot_product_attention(q, k[:, :1], v[:, :1],
                                                           enable_gqa=True), _qkv),
}


@pytest.mark.parametrize("name", list(SDPA))
def test_scaled_dot_product_attention(name):
    fn, make = SDPA[name]
    _check(fn, make)


def _double(module):
    ember.manual_seed(0)
    return module.double().eval()


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention(need_weights, batch_first):
    attention = _double(nn.MultiheadAttention(8, 2, batch_first=batch_first))

    def fn(x):
        return attention(x, x, x, need_weights=need_weights)

    shape = (2, "n", 8) if batch_first else ("n", 2, 8)
    _check(fn, _x(*shape))


@pytest.mark.parametrize("masks", ["causal", "padding", "both", "cross"])
def test_multihead_attention_masks(masks):
    attention = _double(nn.MultiheadAttention(8, 2, batch_first=True))

    def fn(x, causal, padding, memory):
        if masks == "causal":
            return attention(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)[0]
        if masks == "padding":
            return attention(x, x, x, key_padding_mask=padding)
        if masks == "cross":
            return attention(x, memory, memory, need_weights=False)[0]
        return attention(x, x, x, attn_mask=causal, key_padding_mask=padding)

    def make(n):
        causal = nn.Transformer.generate_square_subsequent_mask(n) if hasattr(
            nn, "Transformer") else ember.triu(ember.full((n, n), float("-inf")), 1)
        padding = ember.arange(n).unsqueeze(0).expand(2, n) >= n - 1
        memory = _rand((2, n + 3, 8), n + 9)
        return _rand((2, n, 8), n), causal.double(), padding, memory

    _check(fn, make)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer(norm_first):
    layer = _double(nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0,
                                               batch_first=True, norm_first=norm_first))
    _check(lambda x: layer(x), _x(2, "n", 8))


def test_transformer_encoder_with_causal_mask():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    encoder = _double(nn.TransformerEncoder(layer, 2))

    def make(n):
        return _rand((2, n, 8), n), ember.triu(ember.full((n, n), float("-inf")), 1).double()

    _check(lambda x, m: encoder(x, mask=m, is_causal=True), make)


# -- layers ----------------------------------------------------------------------------------


def test_sequential_conv_net():
    net = _double(nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3,
                                                                            padding="same"),
        nn.GroupNorm(2, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)))
    _check(lambda x: net(x), lambda n: (_rand((2, 3, 2 * n, n + 3), n),))


def test_conv1d_module():
    conv = _double(nn.Conv1d(3, 4, 3, padding=2, dilation=2))
    _check(lambda x: conv(x), _x(2, 3, "n"))


def test_embedding_module_and_layer_norm():
    embed = _double(nn.Embedding(10, 6, padding_idx=0))
    norm = _double(nn.LayerNorm(6))
    _check(lambda i: norm(embed(i)), lambda n: (_ints((2, n), 10, n),), grad=False)


@pytest.mark.parametrize("dims", [("n", 3), (2, 3, "n")], ids=["batch_n", "length_n"])
def test_batch_norm_module_train_updates_running_stats(dims):
    eager = nn.BatchNorm1d(3).double()
    scripted_bn = copy.deepcopy(eager)
    scripted = ember.script(lambda x: scripted_bn(x), dynamic=True)
    for n in SIZES:
        (x,) = _x(*dims)(n)
        with ember.no_grad():
            _compare(scripted(x), eager(x), "forward", n)
        _compare(scripted_bn.running_mean, eager.running_mean, "running_mean", n)
        _compare(scripted_bn.running_var, eager.running_var, "running_var", n)
