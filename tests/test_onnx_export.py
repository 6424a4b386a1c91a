"""ember.onnx: the graph ember.export captures, written as an ONNX model that onnx's checker
accepts and onnxruntime runs equal to ember eager, with dynamic axes kept dynamic."""

import os
import sys

import ember
import numpy as np
import pytest
from ember.errors import EmberError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from examples.models import char_transformer, digits_cnn, mlp

F = ember.nn.functional


def _session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session, *arrays):
    feeds = {i.name: a for i, a in zip(session.get_inputs(), arrays)}
    return session.run(None, feeds)


def _eager(fn, *arrays):
    with ember.no_grad():
        out = fn(*(ember.tensor(a) for a in arrays))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _assert_matches_eager(fn, path, *arrays):
    session = _session(path)
    got = _run(session, *arrays)
    expected = _eager(fn, *arrays)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


MODELS = {
    "mlp": (lambda: mlp(ember, (20, 32, 32, 10)), lambda rng, n: rng.standard_normal((n, 20))),
    "digits_cnn": (lambda: digits_cnn(ember), lambda rng, n: rng.standard_normal((n, 1, 8, 8))),
    "char_transformer": (
        lambda: char_transformer(ember, 24, context=12),
        lambda rng, n: rng.integers(0, 24, (n, 12)),
    ),
}


def _example(make, rng, n):
    array = make(rng, n)
    return array.astype(np.float32) if array.dtype.kind == "f" else array.astype(np.int64)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_example_models_pass_the_checker_and_match_eager_at_two_batch_sizes(tmp_path, name):
    build, make = MODELS[name]
    ember.manual_seed(0)
    model = build().eval()
    rng = np.random.default_rng(0)
    path = tmp_path / f"{name}.onnx"
    model_proto = ember.onnx.export(
        model, ember.tensor(_example(make, rng, 4)), path, dynamic_dims={0: {0: "batch"}}
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert model_proto.opset_import[0].version == 17
    batch_dim = model_proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"
    for n in (1, 7):
        _assert_matches_eager(model, path, _example(make, rng, n))


def test_a_module_in_training_mode_is_exported_in_eval_mode_and_restored(tmp_path):
    ember.manual_seed(0)
    model = digits_cnn(ember)
    x = np.random.default_rng(1).standard_normal((3, 1, 8, 8)).astype(np.float32)
    with pytest.warns(UserWarning, match="training mode"):
        ember.onnx.export(model, ember.tensor(x), tmp_path / "cnn.onnx")
    assert model.training
    _assert_matches_eager(model.eval(), tmp_path / "cnn.onnx", x)


def _elementwise(x, y):
    a = (x * y + 2.0 - y / (ember.abs(x) + 1.0)).clamp(-3.0, 3.0)
    b = ember.where(x > y, ember.exp(a), ember.sigmoid(a)) + ember.tanh(y) * ember.erf(x)
    c = ember.maximum(a, b) - ember.minimum(x, y) + ember.sqrt(x * x + 1).rsqrt()
    d = ember.pow(ember.abs(b) + 1.0, 1.5) + ember.log(ember.abs(c) + 1.0) + F.relu(-a)
    mask = (x >= 0) & ~(y < 0.5) | (x == y) ^ (x != 1.0)
    return d + mask.float() + ember.remainder(x, 0.7) + (x < y).to(ember.int64).float()


def _more_elementwise(x, y):
    u = ember.tanh(x)  # inside (-1, 1)
    p = ember.abs(y) + 0.5
    return (
        ember.asin(u * 0.9) + ember.acos(u * 0.9) + ember.atan(x) + ember.atanh(u * 0.9),
        ember.sinh(x) + ember.cosh(y) + ember.asinh(x) + ember.acosh(p + 1.0),
        ember.log2(p) + ember.log10(p) + ember.exp2(x),
        ember.fmod(x * 3, p),
    )


def _reductions(x, y):
    values, indices = x.max(dim=1)
    return (
        x.sum(dim=(1, 2)),
        x.mean(dim=2, keepdim=True),
        x.var(dim=1),
        ember.logsumexp(x, dim=2),
        x.amax(dim=0) - y.amin(dim=(0, 2)).unsqueeze(-1),
        values,
        indices,
        x.argmin(dim=2),
        (x > 0).all(dim=2),
        (y > 0).any(dim=1),
        ember.cumsum(x, dim=1),
    )


def _shapes(x, y):
    a = ember.cat([x, y.flip(1)], dim=2).permute(2, 0, 1)
    b = F.pad(x, (1, 2, 0, 1), value=0.5).reshape(x.shape[0], -1)
    c = x[:, 1:3, ::2].unsqueeze(1).squeeze(1).expand(2, -1, -1, -1)
    d = ember.tril(x[:, :3, :3], diagonal=-1) + ember.triu(y[:, :3, :3])
    return a, b, c, d


def _indexing(x, y):
    index = (ember.abs(y) * 3).to(ember.int64).clamp(0, 2)
    picked = ember.gather(x, 2, index)
    rows = ember.index_select(x, 1, ember.tensor([0, 2, 2]))
    hot = F.one_hot(index[:, 0, 0], num_classes=4)
    last = x[:, [-1], :]  # advanced indexing: a Gather
    chosen = y[index[:, 0, 0]] + ember.zeros_like(y)
    pairs = x[index[:, 0, 0], index[:, 1, :1] - 1]  # two index tensors: a GatherND
    return picked, rows, hot, last, chosen, pairs


def _indexing_on_inner_dims(x, y):
    """Several index tensors past the leading dim: adjacent ones keep their place in the
    result (x[:, i, j]); ones a slice separates put theirs first (x[i, :, j]); and the
    writes, x[...] = v and += v, as ScatterND (negative indices counted from the end)."""
    index = (ember.abs(y) * 3).to(ember.int64).clamp(0, 3)
    rows, cols = index[:, 0, 0], -1 - index[:, 1, :1]
    inner = x[:, index[0, 0, :3], index[1, 1, :3] - 2]
    apart = x[rows, :, cols]
    written = x.clone()
    written[:, index[0, 0, :2], -1 - index[1, 1, :2]] = y[0, :2, 0]
    spread = x.clone()
    spread[rows, :, cols] = 2.5
    added = x.clone()
    added.index_put_((index[:, 0, 0],), y[:, :1, :], accumulate=True)
    return inner, apart, written, spread, added


def _pooling(x, y):
    images = x.unsqueeze(1)
    weight = y[:2, :2, :3].unsqueeze(1)
    conv = F.conv2d(images, weight, stride=1, padding=1)
    return (
        F.avg_pool2d(conv, 2, stride=2, ceil_mode=True, count_include_pad=False),
        F.avg_pool2d(conv, 3, stride=1, padding=1),
        F.max_pool2d(conv, 2, stride=1),
    )


def _transposed_conv(x, y):
    images = x.unsqueeze(0)  # (1, 5, 4, 6)
    weight = y[:, :2, :4].reshape(5, 2, 2, 2)
    return (
        F.conv_transpose2d(images, weight, stride=2, padding=1, output_padding=1),
        F.conv_transpose2d(images[:, :4], weight[:4, :1], stride=(1, 2), groups=2, dilation=2),
    )


def _rounding_divisions(x, y):
    q = (x * 7).round()  # integral values, so quotients land exactly on integers
    ints = q.to(ember.int64)
    divisor = (y.abs() * 3).to(ember.int64) + 1
    return (
        ember.trunc(x * 3),
        ember.trunc(q),  # exact integers: no rounding towards zero to do
        ember.floor_divide(x, y),
        ember.floor_divide(q, 0.1 + 0 * y),  # 1 // 0.1 is 9: floor(1 / 0.1) would be 10
        ember.floor_divide(q, -2.0),
        ember.floor_divide(ints, divisor),
        ember.floor_divide(-ints, divisor),
        ember.div(x, y, rounding_mode="trunc"),
        ember.div(ints, -divisor, rounding_mode="trunc"),
        ember.trunc(ints),
    )


def _tiles_scatters_and_sorts(x, y):
    index = (ember.abs(y) * 3).to(ember.int64).clamp(0, 3)
    ties = (x * 2).round()
    ascending, where_from = ties.sort(dim=2)
    descending, where_to = ember.sort(ties, dim=1, descending=True)
    return (
        x.repeat(2, 1, 3),
        x[0].repeat(2, 1, 1, 2),
        ember.scatter(x, 1, index, y),
        ember.scatter(ember.zeros(5, 4, 6), 1, index[:, :2, :3], y),  # src wider than index
        ember.scatter_add(x, 1, index, y),
        x.scatter(2, index, 1.5),
        ascending, where_from, descending, where_to,
    )


def _attention(x, y):
    # L = S = 4 queries and keys of 6 features over a batch of 5; masks with dead rows
    keep = (x[..., :4] > -0.3) & (y[..., :1] > -0.5)  # rows with y[..., 0] <= -0.5 attend none
    additive = (y[..., :4] * 2).masked_fill(x[..., :4] > 1.0, float("-inf"))
    return (
        F.scaled_dot_product_attention(x, y, y * 2),
        F.scaled_dot_product_attention(x, y, x, is_causal=True),
        F.scaled_dot_product_attention(x, y, x, attn_mask=keep, scale=0.3),
        F.scaled_dot_product_attention(x, y, y, attn_mask=additive),
        F.scaled_dot_product_attention(x[:, :3], y, y, is_causal=True),  # L != S
    )


@pytest.mark.parametrize(
    "fn",
    [_elementwise, _more_elementwise, _reductions, _shapes, _indexing, _indexing_on_inner_dims,
     _pooling, _transposed_conv, _rounding_divisions, _tiles_scatters_and_sorts, _attention],
)
def test_translated_ops_match_eager_on_random_inputs(tmp_path, fn):
    rng = np.random.default_rng(abs(hash(fn.__name__)) % 2**32)
    x = rng.standard_normal((5, 4, 6)).astype(np.float32)
    y = rng.standard_normal((5, 4, 6)).astype(np.float32)
    path = tmp_path / "fn.onnx"
    ember.onnx.export(fn, (ember.tensor(x), ember.tensor(y)), path)
    _assert_matches_eager(fn, path, x, y)


def test_causal_attention_exports_with_a_symbolic_sequence_length(tmp_path):
    def fn(q, k):
        return F.scaled_dot_product_attention(q, k, k * 0.5, is_causal=True)

    rng = np.random.default_rng(3)
    path = tmp_path / "attention.onnx"
    arrays = [rng.standard_normal((2, 3, 7, 4)).astype(np.float32) for _ in range(2)]
    ember.onnx.export(fn, tuple(ember.tensor(a) for a in arrays), path,
                      dynamic_dims={0: {2: "t"}, 1: {2: "t"}})
    assert "Softmax" in {n.op_type for n in onnx.load(str(path)).graph.node}
    for t in (7, 12):
        q, k = (rng.standard_normal((2, 3, t, 4)).astype(np.float32) for _ in range(2))
        _assert_matches_eager(fn, path, q, k)


def test_symbolic_sizes_in_attrs_are_computed_from_the_input_shape(tmp_path):
    def fn(x):
        # ones_like keeps the symbolic size: a ConstantOfShape of the input's shape
        return x.reshape(x.shape[0] * 2, -1)[: x.shape[0]] * 2.0, ember.ones_like(x) * 3

    path = tmp_path / "fn.onnx"
    ember.onnx.export(fn, ember.randn(4, 6), path, dynamic_dims={"x": {0: "n"}})
    for n in (3, 8):
        x = np.random.default_rng(n).standard_normal((n, 6)).astype(np.float32)
        _assert_matches_eager(fn, path, x)


def test_every_op_without_a_translation_is_named_in_one_error(tmp_path):
    def fn(x):
        wide = x.repeat(1, 2)
        return ember.cumprod(wide, 1) + ember.atan2(x, 2.0).repeat(1, 2).hypot(wide)

    with pytest.raises(EmberError) as info:
        ember.onnx.export(fn, ember.randn(3, 4), tmp_path / "fn.onnx")
    message = str(info.value)
    assert "cumprod" in message and "atan2" in message and "hypot" in message
    assert "repeat" not in message
    assert not (tmp_path / "fn.onnx").exists()


def test_opset_outside_the_supported_range_is_refused(tmp_path):
    with pytest.raises(EmberError, match="opset must be in 13"):
        ember.onnx.export(lambda x: x + 1, ember.randn(2), tmp_path / "f.onnx", opset=9)


def test_reductions_take_axes_as_inputs_from_opset_18(tmp_path):
    path = tmp_path / "fn.onnx"
    model = ember.onnx.export(
        _reductions, (ember.randn(5, 4, 6), ember.randn(5, 4, 6)), path, opset=18
    )
    reduce_max = [n for n in model.graph.node if n.op_type == "ReduceMax"]
    assert reduce_max and all(len(n.input) == 2 and not n.attribute[1:] for n in reduce_max)
    rng = np.random.default_rng(3)
    x, y = (rng.standard_normal((5, 4, 6)).astype(np.float32) for _ in range(2))
    _assert_matches_eager(_reductions, path, x, y)
