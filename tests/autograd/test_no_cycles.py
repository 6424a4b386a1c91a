"""A training step leaves no reference cycles behind: once backward has run (without
retain_graph), every tensor and node of the step is freed by reference counting, as in
PyTorch, instead of waiting for the garbage collector with the activations it holds."""

import contextlib
import gc

import ember
import ember.nn as nn
import ember.nn.functional as F
import numpy as np


class _Block(nn.Module):
    def __init__(self, width=32, heads=4):
        super().__init__()
        self.heads = heads
        self.ln = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.fc = nn.Linear(width, 2 * width)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, c))
        h = F.gelu(self.fc(x))
        return x + h[..., :c].exp() * F.softmax(h[..., c:], dim=-1)


@contextlib.contextmanager
def _collector_off():
    """The garbage collector off (after one collection): what is freed meanwhile, reference
    counting freed."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _garbage_after(step) -> int:
    with _collector_off():
        step()
        return gc.collect()


def test_a_training_step_leaves_no_cycles():
    ember.manual_seed(0)
    model = _Block()
    opt = ember.optim.AdamW(model.parameters(), lr=1e-3)
    x = ember.tensor(np.random.default_rng(0).standard_normal((4, 16, 32)).astype(np.float32))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(x).square().mean()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):  # composites compile on their third call
        step()
    assert _garbage_after(step) == 0


def test_an_op_that_saves_its_output_is_freed_after_backward():
    x = ember.randn(64, requires_grad=True)

    def step():
        y = x.exp()  # y's node keeps y for its gradient
        y.sum().backward()

    step()
    assert _garbage_after(step) == 0
    assert x.grad is not None


def test_retain_graph_still_allows_a_second_backward():
    x = ember.randn(8, requires_grad=True)
    y = x.exp().sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(x.detach().numpy()), rtol=1e-6)


def test_a_leaf_and_its_accumulator_make_no_cycle():
    import weakref

    with _collector_off():
        w = ember.randn(4, requires_grad=True)
        (w * 2).sum().backward()
        acc = w._grad_accumulator
        assert acc.variable is w and acc._held is None
        gone = weakref.ref(w)
        del w
        assert gone() is None  # freed by reference counting alone
        assert acc.variable is None


def test_one_accumulator_per_leaf_across_steps():
    w = ember.randn(3, requires_grad=True)
    y1 = (w * 2).sum()
    first = y1.grad_fn.next_functions[0][0].next_functions[0][0]
    y1.backward()
    y2 = (w * 3).sum()
    second = y2.grad_fn.next_functions[0][0].next_functions[0][0]
    y2.backward()
    assert first is second and first.variable is w
    np.testing.assert_allclose(w.grad.numpy(), np.full(3, 5.0))


def test_a_dropped_leaf_gets_no_gradient_and_the_rest_still_do():
    keep = ember.randn(3, requires_grad=True)
    loss = (ember.randn(3, requires_grad=True) * keep).sum()  # the first leaf is dropped
    loss.backward()
    assert keep.grad is not None


def test_a_dropped_leaf_with_hooks_still_runs_them():
    seen, after = [], []

    def make_loss():
        w = ember.ones(3, requires_grad=True)
        w.register_hook(lambda g: seen.append(g.numpy().copy()))
        w.register_post_accumulate_grad_hook(lambda t: after.append(t.grad.numpy().copy()))
        return (w * 2.0).sum()

    make_loss().backward()
    np.testing.assert_array_equal(seen[0], np.full(3, 2.0))
    np.testing.assert_array_equal(after[0], np.full(3, 2.0))
    # hooks registered after the accumulator exists hold the leaf too
    v = ember.ones(2, requires_grad=True)
    y = (v * 3.0).sum()
    v.register_hook(lambda g: seen.append(g.numpy().copy()))
    del v
    y.backward()
    np.testing.assert_array_equal(seen[-1], np.full(2, 3.0))


def test_a_first_gradient_is_kept_as_grad_and_later_ones_add():
    w = ember.ones(2, 3, requires_grad=True)
    (w * 2.0).sum().backward()
    first = w.grad
    assert first.shape == (2, 3) and first.grad_fn is None and not first.requires_grad
    (w * 3.0).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.full((2, 3), 5.0))
    # a gradient that is a view of something else's array is copied, not kept
    v = ember.ones(4, requires_grad=True)
    v.backward(ember.arange(8.0)[::2])
    assert v.grad._data.base is None and v.grad.tolist() == [0.0, 2.0, 4.0, 6.0]


def test_a_forward_that_is_never_backpropagated_leaves_no_cycles():
    # an evaluation with grad on: the outputs a node keeps for its rule (exp's, softmax's,
    # attention's) are aliases without history, so the graph goes with its last reference
    ember.manual_seed(1)
    model = _Block()
    x = ember.tensor(np.random.default_rng(1).standard_normal((2, 8, 32)).astype(np.float32))
    for _ in range(3):
        model(x)
    assert _garbage_after(lambda: model(x).sum()) == 0


def test_saved_outputs_differentiate_again_under_create_graph():
    rng = np.random.default_rng(2)
    xv = rng.standard_normal(5)
    x = ember.tensor(xv, requires_grad=True)
    for fn, first, second in (
        (ember.exp, np.exp, np.exp),
        (ember.sigmoid, lambda v: np.exp(-v) / (1 + np.exp(-v)) ** 2,
         lambda v: np.exp(-v) * (np.exp(-v) - 1) / (1 + np.exp(-v)) ** 3),
        (ember.tanh, lambda v: 1 - np.tanh(v) ** 2,
         lambda v: -2 * np.tanh(v) * (1 - np.tanh(v) ** 2)),
    ):
        (g,) = ember.autograd.grad(fn(x).sum(), x, create_graph=True)
        np.testing.assert_allclose(g.detach().numpy(), first(xv), rtol=1e-10)
        (gg,) = ember.autograd.grad(g.sum(), x)
        np.testing.assert_allclose(gg.numpy(), second(xv), rtol=1e-9, atol=1e-12)


def test_an_in_place_write_to_a_saved_output_is_still_caught():
    x = ember.randn(4, requires_grad=True)
    y = x.sigmoid()
    with ember.no_grad():
        y.add_(1.0)  # the node's alias shares y's version counter
    with np.testing.assert_raises(RuntimeError):
        y.sum().backward()


def test_a_hooked_leaf_and_its_accumulator_make_no_cycle_either():
    import weakref

    with _collector_off():
        w = ember.ones(3, requires_grad=True)
        handle = w.register_hook(lambda g: None)
        (w * 2).sum().backward()
        handle.remove()
        gone = weakref.ref(w)
        del w
        assert gone() is None


def test_a_gradient_two_leaves_receive_is_never_shared_between_their_grads():
    # a clone's backward hands its gradient on unchanged: one tensor reaches both leaves
    a, b = ember.ones(3, requires_grad=True), ember.ones(3, requires_grad=True)
    ((a.clone() + b.clone()) * ember.full((3,), 2.0)).sum().backward()
    assert a.grad is not b.grad
    assert not np.shares_memory(a.grad.numpy(), b.grad.numpy())
    a.grad.zero_()
    assert b.grad.tolist() == [2.0, 2.0, 2.0]


def test_a_hooks_own_tensor_is_copied_into_grad():
    x = ember.ones(3, requires_grad=True)
    mine = ember.full((3,), 7.0)
    y = x.clone()
    y.register_hook(lambda g: mine)
    y.sum().backward()
    assert x.grad is not mine and not np.shares_memory(x.grad.numpy(), mine.numpy())
    x.grad.zero_()
    assert mine.tolist() == [7.0, 7.0, 7.0]


def test_threads_running_backward_into_one_leaf_lose_no_gradient():
    import sys
    import threading

    w = ember.zeros(64, requires_grad=True)
    calls, threads = 150, 4
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        def run():
            for _ in range(calls):
                (w * 1.0).sum().backward()

        workers = [threading.Thread(target=run) for _ in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    finally:
        sys.setswitchinterval(previous)
    np.testing.assert_array_equal(w.grad.numpy(), np.full(64, float(calls * threads)))
