"""The fused attention op behind F.scaled_dot_product_attention: values and gradients against
the composite formula and PyTorch, blocks of keys, masks, dropout, capture, export, memory."""

import tracemalloc

import ember
import ember._tensor.hooks as tensor_hooks
import ember.nn.functional as F
import numpy as np
import pytest
from ember import dispatch
from ember.autograd import gradcheck
from ember.runtime.kernels import KERNELS
from ember.runtime.kernels import attention as attention_kernels

torch = pytest.importorskip("torch")

MASKS = ["none", "causal", "bool", "float"]
SHAPES = {
    "4d_several_blocks": ((2, 3, 300, 16), (2, 3, 260, 16), (2, 3, 260, 8)),
    "4d_more_queries": ((1, 2, 140, 8), (1, 2, 130, 8), (1, 2, 130, 4)),
    "3d": ((3, 37, 8), (3, 45, 8), (3, 45, 5)),
    "2d": ((20, 4), (300, 4), (300, 6)),
    "broadcast_heads": ((2, 3, 40, 8), (2, 1, 50, 8), (2, 1, 50, 8)),
}


def _inputs(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _mask(kind, shapes, rng):
    """The attn mask of a kind over (L, S), with a fully masked query row."""
    length, source = shapes[0][-2], shapes[1][-2]
    if kind == "bool":
        m = rng.random((length, source)) < 0.7
        m[1] = False  # a query that attends no key
        return m
    if kind == "float":
        m = rng.standard_normal((length, source))
        m[rng.random((length, source)) < 0.2] = -np.inf
        m[0] = -np.inf
        return m
    return None


def _ember_and_torch(arrays, mask, dtype, kind):
    e = [ember.tensor(a, requires_grad=True) for a in arrays]
    t = [torch.tensor(a, requires_grad=True) for a in arrays]
    kw_e, kw_t = {"is_causal": kind == "causal"}, {"is_causal": kind == "causal"}
    if mask is not None:
        m = mask if mask.dtype == bool else mask.astype(dtype)
        kw_e["attn_mask"], kw_t["attn_mask"] = ember.tensor(m), torch.tensor(m)
    return e, t, kw_e, kw_t


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("kind", MASKS)
def test_values_and_grads_match_torch_and_the_composite(kind, shape, dtype):
    shapes = SHAPES[shape]
    rng = np.random.default_rng(1)
    if kind == "causal" and shape == "2d":
        shapes = ((300, 4), (300, 4), (300, 6))
    arrays = _inputs(shapes, dtype)
    mask = _mask(kind, shapes, rng)
    e, t, kw_e, kw_t = _ember_and_torch(arrays, mask, dtype, kind)
    out = F.scaled_dot_product_attention(*e, **kw_e)
    assert out.grad_fn.name() == "AttentionBackward0"  # the fused op, not the composite
    composite = F.scaled_dot_product_attention_composite(*e, **kw_e)
    expected = torch.nn.functional.scaled_dot_product_attention(*t, **kw_t)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), **tol)
    np.testing.assert_allclose(out.detach().numpy(), composite.detach().numpy(), **tol)
    g = rng.standard_normal(tuple(out.shape)).astype(dtype)
    grads = ember.autograd.grad(out, e, ember.tensor(g))
    grads_composite = ember.autograd.grad(composite, e, ember.tensor(g))
    expected.backward(torch.tensor(g))
    for got, want, other in zip(grads, t, grads_composite):
        assert got.dtype == e[0].dtype and tuple(got.shape) == tuple(want.shape)
        np.testing.assert_allclose(got.numpy(), want.grad.numpy(), **tol)
        np.testing.assert_allclose(got.numpy(), other.numpy(), **tol)


def test_a_query_that_attends_no_key_gives_zeros_and_zero_gradients():
    q, k, v = (ember.tensor(a, requires_grad=True)
               for a in _inputs(((2, 5, 4), (2, 7, 4), (2, 7, 3)), "float64"))
    mask = np.ones((5, 7), bool)
    mask[2] = False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=ember.tensor(mask))
    assert np.all(out.detach().numpy()[:, 2] == 0)
    out.sum().backward()
    assert np.all(q.grad.numpy()[:, 2] == 0)
    assert all(np.isfinite(t.grad.numpy()).all() for t in (q, k, v))
    _, lse = dispatch("attention", (q, k, v, ember.tensor(mask)),
                      {"scale": None, "causal": False, "mask": True, "dropout_p": 0.0})
    assert lse.dtype == ember.float64 and np.all(lse.detach().numpy()[:, 2] == -np.inf)


def test_half_precision_keeps_a_float32_logsumexp():
    q, k, v = (ember.tensor(a) for a in _inputs(((2, 9, 4), (2, 9, 4), (2, 9, 4)), "float16"))
    out, lse = dispatch("attention", (q, k, v),
                        {"scale": 0.5, "causal": True, "mask": False, "dropout_p": 0.0})
    assert out.dtype == ember.float16 and lse.dtype == ember.float32
    want = F.scaled_dot_product_attention_composite(q.float(), k.float(), v.float(),
                                                    is_causal=True, scale=0.5)
    np.testing.assert_allclose(out.float().numpy(), want.numpy(), atol=2e-3)


@pytest.fixture
def numpy_kernels(monkeypatch):
    """The numpy kernels, not the native ones they are the reference of."""
    monkeypatch.setattr(attention_kernels, "NATIVE", False)


@pytest.fixture
def small_blocks(monkeypatch, numpy_kernels):
    """Blocks of 4 keys: the sizes a float64 gradcheck can afford still span several."""
    monkeypatch.setattr(attention_kernels, "BLOCK", 4)


@pytest.mark.parametrize("kind", MASKS)
def test_gradcheck_over_several_key_blocks(small_blocks, kind):
    shapes = ((2, 11, 3), (2, 10, 3), (2, 10, 2))
    if kind == "causal":
        shapes = ((2, 10, 3), (2, 13, 3), (2, 13, 2))
    rng = np.random.default_rng(3)
    inputs = tuple(ember.tensor(a, requires_grad=True) for a in _inputs(shapes, "float64"))
    mask = _mask(kind, shapes, rng)
    extra = () if mask is None else (ember.tensor(mask),)
    attrs = {"scale": 0.7, "causal": kind == "causal", "mask": mask is not None,
             "dropout_p": 0.0}

    def fn(q, k, v):
        out, lse = dispatch("attention", (q, k, v, *extra), attrs)
        # the logsumexp output is differentiable too
        return out, ember.where(ember.isinf(lse), 0.0, lse)

    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shapes", [((2, 3, 6, 3), (2, 3, 6, 3), (2, 3, 6, 2)),
                                    ((2, 7, 3), (2, 5, 3), (2, 5, 4)),
                                    ((2, 2, 5, 3), (2, 1, 5, 3), (2, 1, 5, 2))])
def test_keys_in_one_block_take_the_single_block_path_and_pass_gradcheck(
        monkeypatch, numpy_kernels, causal, shapes):
    calls = []
    for name in ("_attention_one_block", "_attention_backward_one_block"):
        original = getattr(attention_kernels, name)

        def spy(*args, _original=original, _name=name):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(attention_kernels, name, spy)
    inputs = tuple(ember.tensor(a, requires_grad=True) for a in _inputs(shapes, "float64", 5))
    attrs = {"scale": 0.7, "causal": causal, "mask": False, "dropout_p": 0.0}

    def fn(q, k, v):
        out, lse = dispatch("attention", (q, k, v), attrs)
        return out, lse

    assert gradcheck(fn, inputs)
    assert {"_attention_one_block", "_attention_backward_one_block"} <= set(calls)
    out = F.scaled_dot_product_attention(*inputs, is_causal=causal, scale=0.7)
    t = [torch.tensor(a.detach().numpy(), requires_grad=True) for a in inputs]
    want = torch.nn.functional.scaled_dot_product_attention(*t, is_causal=causal, scale=0.7)
    np.testing.assert_allclose(out.detach().numpy(), want.detach().numpy(), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_two_free_threads_split_the_batch_and_give_the_one_thread_values(monkeypatch,
                                                                        numpy_kernels, causal):
    from ember.runtime import threads

    arrays = _inputs(((6, 2, 64, 8), (6, 2, 64, 8), (6, 2, 64, 4)), "float32", 9)
    attrs = {"scale": None, "causal": causal, "mask": False, "dropout_p": 0.0}
    rng = np.random.default_rng(4)

    def run():
        out, lse = KERNELS["attention"](np, *arrays, **attrs)
        grad_out = rng.standard_normal(out.shape).astype(np.float32)
        grad_lse = rng.standard_normal(lse.shape).astype(np.float32)
        grads = KERNELS["attention_backward"](np, *arrays, out, lse, grad_out, grad_lse,
                                              **attrs)
        return [out, lse, *grads]

    monkeypatch.setattr(attention_kernels, "SPLIT_MIN_SCORES", 1)
    monkeypatch.setattr(threads, "threads", lambda: 1)
    alone = run()
    rng = np.random.default_rng(4)
    monkeypatch.setattr(threads, "threads", lambda: 2)
    submitted = []
    helper = attention_kernels._helper()
    monkeypatch.setattr(helper, "submit",
                        lambda *a, _submit=helper.submit: submitted.append(a) or _submit(*a))
    split = run()
    assert len(submitted) == 2  # the forward's and the backward's first halves
    for a, b in zip(split, alone):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_dropout_draws_what_the_composite_draws_and_scripted_agrees():
    arrays = _inputs(((2, 2, 20, 8), (2, 2, 24, 8), (2, 2, 24, 8)), "float64")

    def run(fn):
        q, k, v = (ember.tensor(a, requires_grad=True) for a in arrays)
        ember.manual_seed(5)
        out = fn(q, k, v)
        out.backward(ember.ones_like(out))
        return [out.detach().numpy(), *(t.grad.numpy() for t in (q, k, v))]

    def fused(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.4)

    def composite(q, k, v):
        return F.scaled_dot_product_attention_composite(q, k, v, dropout_p=0.4)

    eager = run(fused)
    for got, want in zip(eager, run(composite)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for got, want in zip(run(ember.script(fused)), eager):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    no_dropout = run(lambda q, k, v: F.scaled_dot_product_attention(q, k, v))
    assert not np.allclose(eager[0], no_dropout[0])


@pytest.mark.parametrize("kind", MASKS)
def test_scripted_equals_eager_and_never_materializes_the_scores(kind):
    length, source = 48, 40
    shapes = ((2, 2, length, 16), (2, 2, source, 16), (2, 2, source, 16))
    mask = _mask(kind, shapes, np.random.default_rng(4))
    masks = () if mask is None else (ember.tensor(mask.astype("float32")
                                                  if mask.dtype != bool else mask),)

    def fn(q, k, v, *m):
        out = F.scaled_dot_product_attention(q, k, v, *m, is_causal=kind == "causal")
        return (out * out).sum()

    arrays = _inputs(shapes, "float32", seed=2)
    results = []
    scripted = ember.script(fn)
    for f in (fn, scripted):
        q, k, v = (ember.tensor(a, requires_grad=True) for a in arrays)
        loss = f(q, k, v, *masks)
        loss.backward()
        results.append([loss.detach().numpy(), *(t.grad.numpy() for t in (q, k, v))])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    split = scripted.specializations[-1].split
    graphs = (split.forward.graph, split.backward.graph)
    ops = {n.op for g in graphs for n in g.nodes}
    assert {"attention", "attention_backward"} <= ops
    assert not {"softmax", "exp"} & ops
    for g in graphs:
        for node in g.nodes:
            for value in node.outputs:
                assert tuple(value.type.shape[-2:]) != (length, source), (node.op, value.type)


def test_mha_and_transformer_layers_use_the_fused_op(monkeypatch):
    # the spy below is the tracer's hook: a composite (layer_norm) compiling inside the spied
    # call would start a trace, whose end resets the hook, so composites go op by op here
    from ember._tensor import composites

    monkeypatch.setattr(composites, "MIN_ELEMENTS", 1 << 62)
    ember.manual_seed(0)
    layer = ember.nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0,
                                             batch_first=True)
    seen = []
    previous = tensor_hooks.tracer_hook
    tensor_hooks.tracer_hook = lambda op, *rest: seen.append(op)
    try:
        mask = ember.nn.Transformer.generate_square_subsequent_mask(5)
        layer(ember.randn(2, 5, 16), src_mask=mask, is_causal=True).sum().backward()
    finally:
        tensor_hooks.tracer_hook = previous
    assert "attention" in seen and "attention_backward" in seen
    assert "softmax" not in seen


def test_a_float_mask_that_requires_grad_takes_the_composite():
    q, k, v = (ember.tensor(a, requires_grad=True)
               for a in _inputs(((4, 3), (5, 3), (5, 2)), "float64"))
    mask = ember.zeros(4, 5, dtype=ember.float64, requires_grad=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out.sum().backward()
    assert mask.grad is not None and tuple(mask.grad.shape) == (4, 5)
    with pytest.raises(ember.EmberError, match="float attn_mask"):
        out, _ = dispatch("attention", (q, k, v, mask),
                          {"scale": None, "causal": False, "mask": True, "dropout_p": 0.0})
        out.sum().backward()


@pytest.mark.parametrize("case, message", [
    (lambda: ((2, 4, 3), (2, 5, 4), (2, 5, 3)), "do not fit"),
    (lambda: ((2, 4, 3), (2, 5, 3), (2, 6, 3)), "do not fit"),
    (lambda: ((3, 4, 3), (2, 5, 3), (2, 5, 3)), "must match"),
])
def test_inputs_that_do_not_fit_are_named(case, message):
    q, k, v = (ember.randn(*s) for s in case())
    with pytest.raises(ember.EmberError, match=message):
        F.scaled_dot_product_attention(q, k, v)


def test_a_mask_of_the_wrong_shape_or_dtype_is_named():
    q, k, v = (ember.randn(2, 4, 3) for _ in range(3))
    with pytest.raises(ember.EmberError, match=r"attn_mask \[3, 4\]"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=ember.ones(3, 4, dtype=ember.bool))
    # a 1-D mask: PyTorch reads its dim -2 and raises IndexError
    with pytest.raises(IndexError, match=r"attn_mask \[4\] needs at least 2 dims") as info:
        F.scaled_dot_product_attention(q, k, v, attn_mask=ember.ones(4, dtype=ember.bool))
    assert isinstance(info.value, ember.EmberError)
    with pytest.raises(ember.EmberError, match="bool or float"):
        dispatch("attention", (q, k, v, ember.ones(4, 4, dtype=ember.int64)),
                 {"scale": None, "causal": False, "mask": True, "dropout_p": 0.0})
    with pytest.raises(ember.EmberError, match="expected 4 inputs"):
        dispatch("attention", (q, k, v),
                 {"scale": None, "causal": False, "mask": True, "dropout_p": 0.0})


def test_the_kernel_never_holds_the_full_scores():
    # L = S = 2048 over B*H = 4: the scores would be 64 MiB of float32; a block is 4 MiB
    batch, length, head = 4, 2048, 32
    rng = np.random.default_rng(0)
    q, k, v, g = (rng.standard_normal((batch, length, head)).astype("float32")
                  for _ in range(4))
    full_scores = batch * length * length * 4
    attrs = {"scale": None, "causal": False, "mask": False, "dropout_p": 0.0}
    tracemalloc.start()
    try:
        out, lse = KERNELS["attention"](np, q, k, v, **attrs)
        _, forward_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        KERNELS["attention_backward"](np, q, k, v, out, lse, g, np.zeros_like(lse), **attrs)
        _, backward_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the forward holds one block of scores, the backward a block of probabilities and one
    # of their gradients: a few blocks at most, never the whole
    assert forward_peak < full_scores / 6, forward_peak
    assert backward_peak < full_scores / 3, backward_peak


def test_one_graph_serves_every_sequence_length():
    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    scripted = ember.script(fn, dynamic=True)
    for t in (5, 140, 9):
        q, k, v = (ember.tensor(a) for a in _inputs(((2, 3, t, 8),) * 3, "float32", seed=t))
        np.testing.assert_allclose(scripted(q, k, v).numpy(), fn(q, k, v).numpy(),
                                   rtol=1e-5, atol=1e-6)
    assert len(scripted.specializations) == 1 and not scripted.recompiles, scripted.explain()
    assert "attention" in str(scripted.graph)


def test_an_exported_graph_file_runs_the_kernel(tmp_path):
    from ember import runtime

    def fn(q, k, v, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    arrays = _inputs(((2, 6, 8), (2, 9, 8), (2, 9, 4)), "float32")
    mask = np.random.default_rng(0).random((6, 9)) < 0.6
    mask[3] = False
    path = tmp_path / "attention.ember"
    ember.export(fn, (*(ember.tensor(a) for a in arrays), ember.tensor(mask)), path,
                 dynamic_dims={0: {1: "t"}, 3: {0: "t"}})
    program = runtime.load(path)
    assert "attention" in {n.op for n in program.graph.nodes}
    for t in (6, 200):
        q = np.random.default_rng(t).standard_normal((2, t, 8)).astype("float32")
        m = np.random.default_rng(t).random((t, 9)) < 0.6
        want = fn(ember.tensor(q), ember.tensor(arrays[1]), ember.tensor(arrays[2]),
                  ember.tensor(m)).numpy()
        got = program(q, arrays[1], arrays[2], m)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_no_keys_give_zeros_as_in_torch(causal):
    q = ember.randn(2, 3, 4, requires_grad=True)
    k, v = ember.randn(2, 0, 4), ember.randn(2, 0, 5)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    want = torch.nn.functional.scaled_dot_product_attention(
        torch.randn(2, 3, 4), torch.randn(2, 0, 4), torch.randn(2, 0, 5), is_causal=causal)
    np.testing.assert_array_equal(out.detach().numpy(), want.numpy())
    out.sum().backward()
    np.testing.assert_array_equal(q.grad.numpy(), np.zeros((2, 3, 4), np.float32))


def test_double_backward_through_masks_and_dropout():
    from ember.autograd import gradgradcheck

    rng = np.random.default_rng(6)
    inputs = tuple(ember.tensor(a, requires_grad=True)
                   for a in _inputs(((2, 4, 3), (2, 5, 3), (2, 5, 2)), "float64"))
    keep = ember.tensor(rng.random((4, 5)) < 0.7)
    keep[1] = False  # a query that attends no key
    additive = ember.tensor(np.where(rng.random((4, 5)) < 0.3, -np.inf, rng.random((4, 5))))

    def fn(q, k, v):
        ember.manual_seed(0)  # the same dropout draws at every evaluation
        return (F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
                F.scaled_dot_product_attention(q, k, v, attn_mask=additive, scale=0.4),
                F.scaled_dot_product_attention(q, k, v, dropout_p=0.3))

    outputs = fn(*inputs)
    assert all(o.grad_fn.name() == "AttentionBackward0" for o in outputs)
    grad_outputs = tuple(ember.tensor(rng.standard_normal(tuple(o.shape)), requires_grad=True)
                         for o in outputs)
    assert gradgradcheck(fn, inputs, grad_outputs)
