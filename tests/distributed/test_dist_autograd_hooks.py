"""What DDP builds on in autograd: post-accumulate-grad hooks and end-of-backward callbacks."""

import ember
import pytest
from ember.autograd.engine import queue_callback


def test_post_accumulate_grad_hook_sees_the_accumulated_grad():
    w = ember.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.tolist()))
    (w * 3).sum().backward()
    (w * 2).sum().backward()  # accumulates: the hook sees the running total
    assert seen == [[3.0, 3.0], [5.0, 5.0]]


def test_post_accumulate_grad_hook_runs_once_per_backward_for_a_leaf_used_twice():
    w = ember.tensor([1.0], requires_grad=True)
    calls = []
    w.register_post_accumulate_grad_hook(lambda p: calls.append(p.grad.item()))
    (w * w + w * 4).sum().backward()
    assert calls == [6.0]


def test_post_accumulate_grad_hook_handle_removes_it():
    w = ember.ones(2, requires_grad=True)
    calls = []
    handle = w.register_post_accumulate_grad_hook(lambda p: calls.append(1))
    w.sum().backward()
    handle.remove()
    w.sum().backward()
    assert calls == [1]


def test_post_accumulate_grad_hook_runs_for_backward_with_inputs():
    w = ember.ones(2, requires_grad=True)
    calls = []
    w.register_post_accumulate_grad_hook(lambda p: calls.append(p.grad.tolist()))
    (w * 5).sum().backward(inputs=[w])
    assert calls == [[5.0, 5.0]]


def test_post_accumulate_grad_hook_is_for_leaves_that_require_grad():
    w = ember.ones(2, requires_grad=True)
    with pytest.raises(ember.EmberError, match="non-leaf"):
        (w * 2).register_post_accumulate_grad_hook(lambda p: None)
    with pytest.raises(ember.EmberError, match="doesn't require gradient"):
        ember.ones(2).register_post_accumulate_grad_hook(lambda p: None)


def test_queued_callback_runs_after_every_node_of_the_backward():
    a = ember.ones(2, requires_grad=True)
    b = ember.ones(2, requires_grad=True)
    order = []

    def first_hook(p):
        order.append("a")
        queue_callback(lambda: order.append(("end", a.grad.tolist(), b.grad.tolist())))
        queue_callback(lambda: queue_callback(lambda: order.append("queued by a callback")))

    a.register_post_accumulate_grad_hook(first_hook)
    b.register_post_accumulate_grad_hook(lambda p: order.append("b"))
    (a * 2 + b * 3).sum().backward()
    assert sorted(order[:2]) == ["a", "b"]
    assert order[2:] == [("end", [2.0, 2.0], [3.0, 3.0]), "queued by a callback"]
    del order[:]
    (a * 2).sum().backward()  # callbacks belong to one backward: the first ones do not rerun
    assert order == ["a", ("end", [4.0, 4.0], [3.0, 3.0]), "queued by a callback"]


def test_queue_callback_outside_backward_is_an_error():
    with pytest.raises(ember.EmberError, match="only be installed during backward"):
        queue_callback(lambda: None)
