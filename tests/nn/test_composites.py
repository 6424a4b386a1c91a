"""Large eager softmax, log_softmax and layer_norm run as one compiled program
(_tensor/composites.py): the same values and gradients as the op-by-op path, one autograd node, and
the op-by-op path wherever the compiled one does not apply."""

import warnings

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import nn
from ember._tensor import composites as _composites
from ember._tensor.ops import nn as ops
from ember.nn import _activations
from ember.nn import functional as NF

ROWS, COLS = 64, 1024  # 64K elements: past _composites.MIN_ELEMENTS and parallel


def _op_by_op(monkeypatch):
    monkeypatch.setattr(_composites, "MIN_ELEMENTS", 1 << 62)


CASES = {
    "softmax": (lambda x, w, b: F.softmax(x, -1), ops._SOFTMAX),
    "log_softmax": (lambda x, w, b: F.log_softmax(x, dim=1), ops._LOG_SOFTMAX),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (COLS,), w, b, 1e-5), NF._LAYER_NORM),
    "layer_norm no affine": (lambda x, w, b: F.layer_norm(x, (COLS,)) * w, NF._LAYER_NORM),
    "gelu": (lambda x, w, b: F.gelu(x), _activations._GELU),
    "gelu tanh": (lambda x, w, b: F.gelu(x, approximate="tanh"), _activations._GELU_TANH),
}


def _inputs(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [ember.tensor(rng.standard_normal(s) * 3, dtype=dtype, requires_grad=True)
            for s in [(ROWS, COLS), (COLS,), (COLS,)]]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_large_eager_calls_take_the_compiled_path_with_op_by_op_values_and_gradients(
        name, dtype, monkeypatch):
    fn, composite = CASES[name]
    # a fresh script: one that other tests' shapes brought to its specialization limit would
    # give up before this test's calls
    monkeypatch.setattr(composite, "_script", None)
    monkeypatch.setattr(composite, "_seen", 0)
    dtype = getattr(ember, dtype)
    results = []
    for compiled in (True, False):
        if not compiled:
            _op_by_op(monkeypatch)
        for call in range(5):  # warm-up calls, a trace, then the compiled program
            x, w, b = _inputs(dtype, seed=call)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # the compiled path never warns
                out = fn(x, w, b)
            grad_out = ember.tensor(np.random.default_rng(9).standard_normal(out.shape),
                                    dtype=dtype)
            out.backward(grad_out)
            if compiled and call == 4 and name != "layer_norm no affine":
                assert out.grad_fn.name() == "CompiledFunctionBackward"
            results.append((out.detach().numpy(), x.grad.numpy(),
                            None if w.grad is None else w.grad.numpy()))
    script = composite._script
    assert script is not None and not script.fallbacks
    assert sum(sp.calls for sp in script.specializations) >= 2
    tol = 2e-5 if dtype is ember.float32 else 1e-12
    for got, want in zip(results[:5], results[5:]):
        for a, b in zip(got, want):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_double_backward_through_the_compiled_softmax_matches_op_by_op(monkeypatch):
    def second(compiled):
        if not compiled:
            _op_by_op(monkeypatch)
        x = ember.tensor(np.random.default_rng(1).standard_normal((ROWS, COLS)),
                         requires_grad=True)
        for _ in range(5):
            y = F.softmax(x, -1)
        (g,) = ember.autograd.grad((y * y).sum(), x, create_graph=True)
        (gg,) = ember.autograd.grad((g * g).sum(), x)
        return gg.numpy()

    np.testing.assert_allclose(second(True), second(False), rtol=1e-10, atol=1e-12)


def test_small_inputs_other_dims_and_traces_keep_the_primitive_ops():
    small = ember.randn(4, 8, requires_grad=True)
    assert F.softmax(small, -1).grad_fn.name() == "DivBackward0"
    big = ember.randn(ROWS, COLS, requires_grad=True)
    assert F.softmax(big, 0).grad_fn.name() == "DivBackward0"  # not the last dim

    scripted = ember.script(lambda x: F.layer_norm(F.softmax(x, -1), (COLS,)))
    scripted(big)
    ops_seen = {n.op for n in scripted.graphs[0].nodes}
    assert {"exp", "sum", "div", "mean", "rsqrt"} <= ops_seen, ops_seen


def test_ember_compile_0_keeps_the_op_by_op_path(monkeypatch):
    monkeypatch.setenv("EMBER_COMPILE", "0")
    x = ember.randn(ROWS, COLS, requires_grad=True)
    assert F.softmax(x, -1).grad_fn.name() == "DivBackward0"


def test_grad_with_respect_to_a_non_leaf_does_not_run_what_made_it():
    """grad(y, h) stops at h: h's own grad_fn is not run, as in PyTorch (the compiled path's
    backward is traced this way, so it never reads what made its input)."""
    ran = []

    class Double(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            ran.append(True)
            return g * 2

    x = ember.randn(3, requires_grad=True)
    h = Double.apply(x)
    y = (h * h).sum()
    (g,) = ember.autograd.grad(y, h, retain_graph=True)
    np.testing.assert_allclose(g.numpy(), 2 * h.detach().numpy())
    assert not ran
    (gx,) = ember.autograd.grad(y, x)  # through h: now it runs
    assert ran
    np.testing.assert_allclose(gx.numpy(), 8 * x.detach().numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("affine", [True, False])
def test_training_batch_norm_eager_paths_match_op_by_op_values_grads_and_stats(
        dtype, affine, monkeypatch):
    """BatchNorm2d in training, 5 calls: outputs, input and parameter gradients and the
    running statistics match the op-by-op path. With a weight and bias, every call is the
    batch_norm_train op (ir/ops/norm.py); without, the later calls ran compiled."""
    dtype = getattr(ember, dtype)
    results = []
    for fused in (True, False):
        if not fused:
            _op_by_op(monkeypatch)
            monkeypatch.setattr(NF, "_one_op_batch_norm", lambda *args: False)
        ember.manual_seed(0)
        bn = ember.nn.BatchNorm2d(16, affine=affine).to(dtype)
        for call in range(5):
            rng = np.random.default_rng(call)
            x = ember.tensor(rng.standard_normal((32, 16, 8, 8)) * 2 + 1, dtype=dtype,
                             requires_grad=True)
            out = bn(x)
            out.backward(ember.tensor(rng.standard_normal(out.shape), dtype=dtype))
            if fused:
                expected = "BatchNormTrainBackward0" if affine else (
                    "CompiledFunctionBackward" if call == 4 else None)
                if expected is not None:
                    assert out.grad_fn.name() == expected
            grads = [x.grad.numpy()] + [p.grad.numpy().copy() for p in bn.parameters()]
            results.append([out.detach().numpy()] + grads
                           + [bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()])
            bn.zero_grad()
    tol = 2e-5 if dtype is ember.float32 else 1e-12
    for got, want in zip(results[:5], results[5:]):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    if not affine:
        assert not NF._BATCH_NORM._script.fallbacks


def test_training_batch_norm_op_output_may_be_written_in_place():
    """The one-op batch norm keeps its statistics for the backward, not its output: an
    in-place ReLU after it (DCGAN's generator) leaves the backward valid, with the
    gradients of the out-of-place ReLU."""
    rng = np.random.default_rng(3)
    x = ember.tensor(rng.standard_normal((6, 4, 3, 3)), dtype=ember.float32, requires_grad=True)
    grads = []
    for inplace in (True, False):
        ember.manual_seed(0)
        bn = ember.nn.BatchNorm2d(4)
        out = F.relu(bn(x), inplace=inplace)
        out.sum().backward()
        grads.append([x.grad.numpy().copy(), bn.weight.grad.numpy().copy()])
        x.grad = None
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_class_index_cross_entropy_runs_compiled_at_any_size(dtype, reduction, monkeypatch):
    """cross_entropy with class indices (some ignored) is one compiled program even on a
    small batch: the same loss, gradient and double-backward gradient as op by op, and an
    out-of-range class is still a clear error."""
    from ember.nn import _losses

    # a script of its own: other tests' calls leave it other specializations (dynamic sizes)
    monkeypatch.setattr(_losses._CROSS_ENTROPY, "_script", None)
    monkeypatch.setattr(_losses._CROSS_ENTROPY, "_seen", 0)

    dtype = getattr(ember, dtype)
    results = []
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(_losses._CROSS_ENTROPY, "wants", lambda x: False)
        for call in range(5):
            rng = np.random.default_rng(call)
            x = ember.tensor(rng.standard_normal((16, 7)) * 3, dtype=dtype, requires_grad=True)
            target = rng.integers(0, 7, 16)
            target[:3] = -100
            loss = F.cross_entropy(x, ember.tensor(target), reduction=reduction)
            (g,) = ember.autograd.grad(loss, x, create_graph=True)
            (gg,) = ember.autograd.grad((g * g).sum(), x)
            if compiled and call == 4:
                assert loss.grad_fn.name() == "CompiledFunctionBackward"
            results.append((loss.item(), g.detach().numpy(), gg.numpy()))
    tol = 2e-5 if dtype is ember.float32 else 1e-12
    for got, want in zip(results[:5], results[5:]):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    monkeypatch.undo()
    x = ember.tensor(np.zeros((16, 7)), dtype=dtype)
    with pytest.raises(ember.EmberError, match="out of bounds"):
        F.cross_entropy(x, ember.tensor(np.full(16, 7)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_binary_cross_entropy_runs_compiled_at_any_size(dtype, reduction, monkeypatch):
    """binary_cross_entropy (DCGAN's loss, 16 probabilities, some at the clamped 0 and 1) is
    one compiled program at any size: the same loss, gradients and double-backward gradient
    as op by op, and a probability outside [0, 1] or NaN is still a clear error."""
    from ember.nn import _losses

    # a script of its own: other tests' calls leave it other specializations (dynamic sizes)
    monkeypatch.setattr(_losses._BINARY_CROSS_ENTROPY, "_script", None)
    monkeypatch.setattr(_losses._BINARY_CROSS_ENTROPY, "_seen", 0)

    dtype = getattr(ember, dtype)
    results = []
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(_losses._BINARY_CROSS_ENTROPY, "wants", lambda x: False)
        for call in range(5):
            rng = np.random.default_rng(call)
            p = rng.uniform(0, 1, 16)
            p[:2] = (0.0, 1.0)
            x = ember.tensor(p, dtype=dtype, requires_grad=True)
            t = ember.tensor(rng.uniform(0, 1, 16), dtype=dtype, requires_grad=True)
            loss = F.binary_cross_entropy(x, t, reduction=reduction)
            gx, gt = ember.autograd.grad(loss, (x, t), create_graph=True)
            (gg,) = ember.autograd.grad((gt * gt).sum(), x)
            if compiled and call == 4:
                assert loss.grad_fn.name() == "CompiledFunctionBackward"
            results.append((loss.item(), gx.detach().numpy(), gt.detach().numpy(), gg.numpy()))
    tol = 2e-5 if dtype is ember.float32 else 1e-12
    for got, want in zip(results[:5], results[5:]):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    monkeypatch.undo()
    ones = ember.ones(16, dtype=dtype)
    for bad in (1.5, -0.25, float("nan")):
        with pytest.raises(ember.EmberError, match="between 0 and 1"):
            F.binary_cross_entropy(ember.full((16,), bad, dtype=dtype), ones)
        with pytest.raises(ember.EmberError, match="between 0 and 1"):
            F.binary_cross_entropy(ones, ember.full((16,), bad, dtype=dtype))


@pytest.mark.parametrize("name", list(CASES))
def test_a_composite_whose_script_runs_eagerly_goes_op_by_op(name, monkeypatch):
    """A composite's script that gave up (its specializations spent) or falls back runs the
    op's own code eagerly; that code must then go op by op, not back into the script (it
    recursed without end)."""
    fn, composite = CASES[name]
    monkeypatch.setattr(composite, "_script", None)
    monkeypatch.setattr(composite, "_seen", 0)
    x, w, b = _inputs("float32")
    for _ in range(_composites.WARMUP_CALLS + 1):
        fn(x, w, b)
    assert composite._script is not None
    expected = fn(x, w, b).detach().numpy()
    monkeypatch.setattr(composite._script, "gave_up", "specializations spent (test)")
    np.testing.assert_allclose(fn(x, w, b).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(composite._script, "gave_up", None)
    monkeypatch.setattr(composite._script, "specializations", [])
    monkeypatch.setattr(composite._script, "max_specializations", 0)  # every call falls back
    np.testing.assert_allclose(fn(x, w, b).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_repeated_calls_run_their_specialization_by_the_arguments_facts(monkeypatch):
    """A composite call whose arguments have the facts of an earlier call (shapes, dtypes,
    requires_grad, the other arguments' values, grad mode) runs that call's specialization
    without the general guard walk; calls that differ in any fact each get their own, and
    every one equals the op-by-op path."""
    from ember.tracer.script import ScriptFunction

    walks = []
    general = ScriptFunction.guard_key
    monkeypatch.setattr(ScriptFunction, "guard_key",
                        lambda self, *a: walks.append(self.name) or general(self, *a))
    rng = np.random.default_rng(0)
    kinds = [(np.float32, (8, 16), True, True), (np.float32, (8, 16), False, True),
             (np.float64, (8, 16), True, True), (np.float32, (4, 16), True, True),
             (np.float32, (8, 16), True, False)]
    for call in range(4):
        for dtype, shape, grad_input, grad_mode in kinds:
            x = rng.standard_normal(shape).astype(dtype)
            w, b = (rng.standard_normal(16).astype(dtype) for _ in range(2))
            results = []
            for composite in (True, False):
                xt = ember.tensor(x, requires_grad=grad_input)
                wt, bt = (ember.tensor(a, requires_grad=True) for a in (w, b))
                with ember.set_grad_enabled(grad_mode):
                    y = (F.layer_norm(xt, (16,), wt, bt, 1e-4) if composite
                         else NF._affine(NF._standardize(xt, (-1,), 1e-4), wt, bt))
                if not grad_mode:
                    assert y.grad_fn is None
                    results.append([y.numpy()])
                    continue
                leaves = [t for t in (xt, wt, bt) if t.requires_grad]
                grads = ember.autograd.grad((y * y.cos()).sum(), leaves)
                results.append([y.detach().numpy()] + [g.numpy() for g in grads])
            tol = 1e-4 if dtype == np.float32 else 1e-10
            for got, want in zip(*results):
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        if call == 2:
            walks.clear()  # every kind has compiled by now
    assert "layer_norm" not in walks


def test_a_layer_norm_module_applied_twice_gets_its_weight_gradient_once(monkeypatch):
    """A norm layer shared across positions (weight sharing, a block applied in a loop): its
    second call's input depends on its own weight. The compiled call's backward holds the
    partial derivatives, so the weight's gradient equals the op-by-op one (it counted the
    path through the input twice before)."""
    def grads(compiled):
        ember.manual_seed(0)
        norm, mix = nn.LayerNorm(32), nn.Linear(32, 32)
        x = ember.randn(8, 32)
        for _ in range(4):  # past the composite's warm-up calls
            norm.zero_grad()
            mix.zero_grad()
            y = norm(mix(norm(x)).relu())
            (y * y.sin()).sum().backward()
        return [p.grad.numpy() for p in (*norm.parameters(), *mix.parameters())]

    compiled = grads(True)
    assert NF._LAYER_NORM._script.specializations[-1].split is not None
    _op_by_op(monkeypatch)
    for got, want in zip(compiled, grads(False)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_threads_calling_one_composite_with_different_shapes_get_their_own_results():
    """Calls from several threads at once (each releases the GIL in its native kernels):
    each call's specialization is recorded per thread, so no thread's facts are paired with
    another thread's program (which gave outputs of another thread's shape)."""
    import threading

    shapes = [(8 + i, 16) for i in range(6)]
    failures = []

    def work(shape):
        rng = np.random.default_rng(shape[0])
        x = ember.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
        w = ember.tensor(rng.standard_normal(16).astype(np.float32), requires_grad=True)
        b = ember.tensor(rng.standard_normal(16).astype(np.float32), requires_grad=True)
        want = NF._affine(NF._standardize(x, (-1,), 1e-5), w, b).detach().numpy()
        for _ in range(200):
            y = F.layer_norm(x, (16,), w, b)
            if tuple(y.shape) != shape or not np.allclose(y.detach().numpy(), want, atol=1e-4):
                failures.append((shape, tuple(y.shape)))
                return

    threads = [threading.Thread(target=work, args=(s,)) for s in shapes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
