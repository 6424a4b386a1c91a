"""The native attention kernels (codegen/llvm/attention.py through
runtime/kernels/native_attention.py): values and gradients against the numpy kernels they
replace, over masks, dropout, broadcast and strided operands, odd sizes and query blocks;
the same numbers on one thread and on the pool; scripted graphs call them too; the cases they
leave to numpy fall back."""

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import dispatch
from ember.autograd import gradcheck
from ember.runtime import native, threads
from ember.runtime.kernels import KERNELS, native_attention
from ember.runtime.kernels import attention as attention_kernels

TOL = {"float32": {"rtol": 2e-5, "atol": 2e-6}, "float64": {"rtol": 1e-12, "atol": 1e-13}}


class _Calls:
    """Counts the native kernels' runs that gave a result."""

    def __init__(self, monkeypatch):
        self.forward = self.backward = 0
        for name in ("forward", "backward"):
            original = getattr(native_attention, name)

            def spy(*args, _original=original, _name=name):
                found = _original(*args)
                if found is not None:
                    setattr(self, _name, getattr(self, _name) + 1)
                return found

            monkeypatch.setattr(native_attention, name, spy)


@pytest.fixture
def calls(monkeypatch):
    return _Calls(monkeypatch)


def _mask(kind, batch, length, source, rng, dtype):
    """An attention mask of `kind` over (*batch, L, S), with a query that attends no key."""
    if kind == "bool":
        m = rng.random((*batch, length, source)) < 0.7
        m[..., min(1, length - 1), :] = False
        return m
    if kind == "float":
        m = rng.standard_normal((*batch, length, source)).astype(dtype)
        m[rng.random(m.shape) < 0.2] = -np.inf
        m[..., 0, :] = -np.inf
        return m
    return None


def _both(monkeypatch, op, *args, **attrs):
    """op's kernel on the native path and on the numpy path: (native, numpy) results."""
    native_result = KERNELS[op](np, *args, **attrs)
    monkeypatch.setattr(attention_kernels, "NATIVE", False)
    numpy_result = KERNELS[op](np, *args, **attrs)
    monkeypatch.setattr(attention_kernels, "NATIVE", True)
    return native_result, numpy_result


def _assert_close(got, want, dtype):
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, **TOL[dtype])


CASES = {
    # name: (q shape, k shape, v shape, mask kind, mask batch, causal, dropout)
    "gpt": ((2, 4, 64, 32), (2, 4, 64, 32), (2, 4, 64, 32), None, None, True, 0.0),
    "full": ((2, 3, 50, 16), (2, 3, 50, 16), (2, 3, 50, 16), None, None, False, 0.0),
    "odd_sizes_causal": ((1, 3, 131, 8), (1, 3, 77, 8), (1, 3, 77, 5), None, None, True, 0.0),
    "more_keys_causal": ((3, 7, 8), (3, 150, 8), (3, 150, 8), None, None, True, 0.0),
    "one_item": ((1, 1, 200, 64), (1, 1, 200, 64), (1, 1, 200, 64), None, None, True, 0.0),
    "2d": ((9, 4), (70, 4), (70, 6), None, None, False, 0.0),
    "broadcast": ((2, 3, 33, 16), (1, 3, 47, 16), (2, 1, 47, 16), None, None, False, 0.0),
    "bool_mask": ((2, 3, 33, 16), (2, 3, 47, 16), (2, 3, 47, 16), "bool", (), False, 0.0),
    "bool_mask_per_batch": ((2, 3, 33, 16), (2, 3, 47, 16), (2, 3, 47, 16), "bool", (2, 1),
                            False, 0.0),
    "float_mask": ((3, 21, 16), (3, 47, 16), (3, 47, 16), "float", (3,), False, 0.0),
    "dropout_causal": ((2, 3, 70, 16), (2, 3, 70, 16), (2, 3, 70, 16), None, None, True, 0.3),
    "dropout_mask": ((2, 2, 70, 16), (2, 2, 90, 16), (2, 2, 90, 16), "bool", (), False, 0.2),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_values_and_gradients_match_the_numpy_kernels(monkeypatch, calls, case, dtype):
    q_shape, k_shape, v_shape, kind, mask_batch, causal, dropout = CASES[case]
    rng = np.random.default_rng(len(case))
    q, k, v = (rng.standard_normal(s).astype(dtype) for s in (q_shape, k_shape, v_shape))
    length, source = q_shape[-2], k_shape[-2]
    rest = []
    batch = np.broadcast_shapes(q_shape[:-2], k_shape[:-2], v_shape[:-2])
    if kind is not None:
        rest.append(_mask(kind, mask_batch, length, source, rng, dtype))
    if dropout:
        rest.append((rng.random(batch + (length, source)) >= dropout).astype(dtype))
    attrs = {"scale": 0.3 if case == "float_mask" else None, "causal": causal,
             "mask": kind is not None, "dropout_p": dropout}
    (out, lse), want = _both(monkeypatch, "attention", q, k, v, *rest, **attrs)
    _assert_close((out, lse), want, dtype)
    grad_out = rng.standard_normal(out.shape).astype(dtype)
    grad_lse = (rng.standard_normal(lse.shape) * 0.1).astype(lse.dtype)
    got, want = _both(monkeypatch, "attention_backward", q, k, v, out, lse, grad_out,
                      grad_lse, *rest, **attrs)
    _assert_close(got, want, dtype)
    assert (calls.forward, calls.backward) == (1, 1)


@pytest.mark.parametrize("causal", [False, True])
def test_views_are_read_in_place_and_match_their_copies(monkeypatch, calls, causal):
    # q, k and v as the heads of one (B, T, 3, H, E) projection: strided rows and batch dims
    rng = np.random.default_rng(2)
    qkv = rng.standard_normal((3, 40, 3, 4, 16)).astype(np.float32)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    attrs = {"scale": None, "causal": causal, "mask": False, "dropout_p": 0.0}
    out, lse = KERNELS["attention"](np, q, k, v, **attrs)
    copies = [np.ascontiguousarray(a) for a in (q, k, v)]
    want = KERNELS["attention"](np, *copies, **attrs)
    np.testing.assert_array_equal(out, want[0])
    np.testing.assert_array_equal(lse, want[1])
    grad_out = rng.standard_normal(out.shape).astype(np.float32)[..., ::-1]  # strided too
    grads = KERNELS["attention_backward"](np, q, k, v, out, lse, grad_out, np.zeros_like(lse),
                                          **attrs)
    want = KERNELS["attention_backward"](np, *copies, out, lse, np.ascontiguousarray(grad_out),
                                         np.zeros_like(lse), **attrs)
    for a, b in zip(grads, want):
        np.testing.assert_array_equal(a, b)
    assert (calls.forward, calls.backward) == (2, 2)


@pytest.mark.parametrize("block", [1, 3, 16])
@pytest.mark.parametrize("causal", [False, True])
def test_query_blocks_of_any_size_give_the_same_numbers(monkeypatch, block, causal):
    """Rows in blocks of `block` (the last one short: 37 rows): values as one block gives."""
    rng = np.random.default_rng(block)
    q, k, v = (rng.standard_normal((3, 37, 8)).astype(np.float64) for _ in range(3))
    attrs = {"scale": None, "causal": causal, "mask": False, "dropout_p": 0.0}
    whole = KERNELS["attention"](np, q, k, v, **attrs)
    g = rng.standard_normal(whole[0].shape)
    whole_grads = KERNELS["attention_backward"](np, q, k, v, *whole, g, np.zeros(37 * 3).reshape(
        3, 37), **attrs)
    monkeypatch.setattr(native_attention, "MAX_BLOCK", block)
    blocked = KERNELS["attention"](np, q, k, v, **attrs)
    blocked_grads = KERNELS["attention_backward"](np, q, k, v, *blocked, g,
                                                  np.zeros((3, 37)), **attrs)
    _assert_close((*blocked, *blocked_grads), (*whole, *whole_grads), "float64")


@pytest.mark.parametrize("kind", ["none", "causal", "bool", "float"])
def test_gradcheck_through_scaled_dot_product_attention(monkeypatch, calls, kind):
    # blocks of 4 query rows: the gradcheck's small sizes still span several
    monkeypatch.setattr(native_attention, "MAX_BLOCK", 4)
    rng = np.random.default_rng(5)
    shapes = ((2, 1, 11, 3), (2, 1, 10, 3), (2, 1, 10, 2))
    inputs = tuple(ember.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes)
    mask = _mask(kind, (), 11, 10, rng, "float64")
    extra = {} if mask is None else {"attn_mask": ember.tensor(mask)}

    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=kind == "causal",
                                              scale=0.7, **extra)

    assert gradcheck(fn, inputs)
    assert calls.forward and calls.backward


def test_one_and_two_threads_give_the_same_numbers(monkeypatch):
    if native.thread_count() < 2:
        pytest.skip("one core: no pool")
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((5, 3, 70, 16)).astype(np.float32) for _ in range(3))
    grad_out = rng.standard_normal((5, 3, 70, 16)).astype(np.float32)
    attrs = {"scale": None, "causal": True, "mask": False, "dropout_p": 0.0}
    shared = []
    original = native._pool.parallel_for

    def parallel_for():
        run = original()
        if run is None:
            return None

        def counted(*args):
            shared.append(args[2])  # the units shared
            return run(*args)

        return counted

    monkeypatch.setattr(native._pool, "parallel_for", parallel_for)
    monkeypatch.setattr(native_attention, "MAX_BLOCK", 16)  # the forward: 15 x 5 units

    def run():
        out, lse = KERNELS["attention"](np, q, k, v, **attrs)
        grads = KERNELS["attention_backward"](np, q, k, v, out, lse, grad_out,
                                              np.zeros_like(lse), **attrs)
        return [out, lse, *grads]

    monkeypatch.setattr(threads._budget, "now", lambda: 1)
    alone = run()
    assert shared == []
    monkeypatch.setattr(threads._budget, "now", lambda: 2)
    monkeypatch.setattr(native_attention, "PARALLEL_MIN_SCORES", 1)
    pooled = run()
    assert shared == [15 * 5, 15]  # the forward's units, the backward's items
    for a, b in zip(pooled, alone):
        np.testing.assert_array_equal(a, b)


def test_scripted_training_step_runs_the_native_kernels(calls):
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal((2, 2, 24, 8)).astype(np.float32) for _ in range(3)]

    def fn(q, k, v):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return (out * out).sum()

    scripted = ember.script(fn)
    results = []
    for f in (fn, scripted, scripted):
        q, k, v = (ember.tensor(a, requires_grad=True) for a in arrays)
        loss = f(q, k, v)
        loss.backward()
        results.append([loss.detach().numpy(), *(t.grad.numpy() for t in (q, k, v))])
    for run in results[1:]:
        for got, want in zip(run, results[0]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # eager, the trace and the compiled call: every forward and backward was native
    assert calls.forward >= 3 and calls.backward >= 3


def test_what_the_native_kernels_leave_to_numpy_still_runs(calls):
    rng = np.random.default_rng(8)
    attrs = {"scale": None, "causal": False, "mask": False, "dropout_p": 0.0}
    half = [rng.standard_normal((2, 9, 4)).astype(np.float16) for _ in range(3)]
    out, lse = KERNELS["attention"](np, *half, **attrs)
    assert out.dtype == np.float16 and lse.dtype == np.float32
    empty = [np.zeros((2, 0, 4), np.float32), np.zeros((2, 5, 4), np.float32),
             np.zeros((2, 5, 3), np.float32)]
    out, lse = KERNELS["attention"](np, *empty, **attrs)
    assert out.shape == (2, 0, 3) and lse.shape == (2, 0)
    assert (calls.forward, calls.backward) == (0, 0)
    # keys so many that a row of scores would pass the stack scratch
    many = [np.zeros((1, 1 << 17, 2)) for _ in range(3)]
    assert native_attention.forward(*many, None, None, None, False, 0.0) is None


def test_a_query_that_attends_no_key_gives_zeros_and_finite_gradients(calls):
    q, k, v = (ember.tensor(np.random.default_rng(1).standard_normal(s), requires_grad=True)
               for s in ((2, 5, 4), (2, 7, 4), (2, 7, 3)))
    mask = np.ones((5, 7), bool)
    mask[2] = False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=ember.tensor(mask))
    assert np.all(out.detach().numpy()[:, 2] == 0)
    out.sum().backward()
    assert np.all(q.grad.numpy()[:, 2] == 0)
    assert all(np.isfinite(t.grad.numpy()).all() for t in (q, k, v))
    _, lse = dispatch("attention", (q, k, v, ember.tensor(mask)),
                      {"scale": None, "causal": False, "mask": True, "dropout_p": 0.0})
    assert np.all(lse.detach().numpy()[:, 2] == -np.inf)
    assert calls.forward == 2 and calls.backward == 1


def test_masks_of_other_dtypes_and_layouts_are_converted_first(monkeypatch, calls):
    """A float64 mask on float32 inputs, a transposed (strided) bool mask and a bool keep
    mask: read converted or in place, the numpy kernels' values."""
    rng = np.random.default_rng(11)
    q, k, v = (rng.standard_normal((2, 3, 20, 8)).astype(np.float32) for _ in range(3))
    wide = rng.standard_normal((20, 20))
    transposed = (rng.random((20, 20)) < 0.8).T
    keep = rng.random((2, 3, 20, 20)) >= 0.25
    for mask, dropout in ((wide, 0.0), (transposed, 0.0), (transposed, 0.25)):
        rest = (mask, keep) if dropout else (mask,)
        attrs = {"scale": None, "causal": False, "mask": True, "dropout_p": dropout}
        got, want = _both(monkeypatch, "attention", q, k, v, *rest, **attrs)
        _assert_close(got, want, "float32")
        g = rng.standard_normal(got[0].shape).astype(np.float32)
        grads, want = _both(monkeypatch, "attention_backward", q, k, v, *got, g,
                            np.zeros_like(got[1]), *rest, **attrs)
        _assert_close(grads, want, "float32")
    assert (calls.forward, calls.backward) == (3, 3)


def test_every_kernel_variant_compiles():
    """Each (direction, dtype, causal, mask kind, dropout) kernel goes through LLVM's full
    pipeline (the assertion-enabled LLVM of llvmlite aborts the process on a vectorizer bug,
    as it did on an inference entry's maxnum loop: codegen/llvm/attention.py softmax_row)."""
    from ember.codegen.llvm import attention, target

    built = 0
    for direction, make in (("forward", attention.forward_ir),
                            ("backward", attention.backward_ir)):
        for dtype in ("float32", "float64"):
            for causal, mask in ((False, None), (True, None), (False, "bool"),
                                 (False, "float")):
                for dropout in (False, True):
                    assert target.emit_object(make(dtype, causal, mask, dropout, 64))
                    built += 1
    assert built == 32
