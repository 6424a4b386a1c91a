"""Raw autograd: classify three interleaved spirals with an MLP written in raw ember tensors.

No nn or optim yet: the weights are plain tensors that require grad, the loss is a numerically
stable cross entropy written from primitives, and the update is SGD with momentum under
no_grad(). The script fails loudly (an AssertionError) if the network does not learn, so it
doubles as an end-to-end check of the ops and the autograd engine.

    python examples/spirals_autograd.py
"""

from __future__ import annotations

import math
import time

import ember

NUM_CLASSES = 3
POINTS_PER_CLASS = 200
HIDDEN = 64
STEPS = 1000
LEARNING_RATE = 0.1
MOMENTUM = 0.9
PRINT_EVERY = 100
MIN_TEST_ACCURACY = 0.90


def spirals(points_per_class: int, num_classes: int, noise: float = 0.05):
    """Points on `num_classes` interleaved spiral arms; returns (x: [N, 2], labels: [N])."""
    xs, labels = [], []
    for k in range(num_classes):
        # sqrt spreads the points evenly along the arm's length rather than its angle
        radius = ember.rand(points_per_class).sqrt()
        angle = radius * 3 * math.pi + k * 2 * math.pi / num_classes
        arm = ember.stack([radius * angle.cos(), radius * angle.sin()], dim=1)
        xs.append(arm + noise * ember.randn(points_per_class, 2))
        labels.append(ember.full((points_per_class,), k, dtype=ember.int64))
    return ember.cat(xs), ember.cat(labels)


def init_weight(fan_in: int, fan_out: int) -> ember.Tensor:
    """He-initialized weight: a leaf tensor that requires grad."""
    return (ember.randn(fan_in, fan_out) * math.sqrt(2.0 / fan_in)).requires_grad_()


def forward(params: list[ember.Tensor], x: ember.Tensor) -> ember.Tensor:
    w1, b1, w2, b2, w3, b3 = params
    h = (x @ w1 + b1).relu()
    h = (h @ w2 + b2).relu()
    return h @ w3 + b3


def cross_entropy(logits: ember.Tensor, labels: ember.Tensor) -> ember.Tensor:
    """Mean of -log softmax(logits)[label], with the row max subtracted before exp()."""
    shift = logits.amax(dim=1, keepdim=True).detach()
    log_sum_exp = (logits - shift).exp().sum(dim=1).log() + shift.squeeze(1)
    one_hot = (labels.unsqueeze(1) == ember.arange(logits.shape[1]).unsqueeze(0)).float()
    correct_logit = (logits * one_hot).sum(dim=1)
    return (log_sum_exp - correct_logit).mean()


def accuracy(logits: ember.Tensor, labels: ember.Tensor) -> float:
    return (logits.argmax(dim=1) == labels).float().mean().item()


def main() -> None:
    ember.manual_seed(0)
    x_train, y_train = spirals(POINTS_PER_CLASS, NUM_CLASSES)
    x_test, y_test = spirals(POINTS_PER_CLASS, NUM_CLASSES)

    params = [
        init_weight(2, HIDDEN),
        ember.zeros(HIDDEN, requires_grad=True),
        init_weight(HIDDEN, HIDDEN),
        ember.zeros(HIDDEN, requires_grad=True),
        init_weight(HIDDEN, NUM_CLASSES),
        ember.zeros(NUM_CLASSES, requires_grad=True),
    ]
    velocities = [ember.zeros_like(p) for p in params]

    print(
        f"{NUM_CLASSES} spirals, {len(y_train)} training and {len(y_test)} test points; "
        f"MLP 2-{HIDDEN}-{HIDDEN}-{NUM_CLASSES}, {STEPS} full-batch steps"
    )
    start = time.perf_counter()
    for step in range(1, STEPS + 1):
        logits = forward(params, x_train)
        loss = cross_entropy(logits, y_train)
        loss.backward()
        with ember.no_grad():
            for p, v in zip(params, velocities):
                v.mul_(MOMENTUM).add_(p.grad)
                p -= LEARNING_RATE * v
                p.grad = None
        if step % PRINT_EVERY == 0 or step == 1:
            print(
                f"step {step:5d}  loss {loss.item():.4f}  "
                f"train accuracy {accuracy(logits.detach(), y_train):.3f}"
            )
    elapsed = time.perf_counter() - start

    with ember.no_grad():
        train_accuracy = accuracy(forward(params, x_train), y_train)
        test_accuracy = accuracy(forward(params, x_test), y_test)
    print(
        f"final: train accuracy {train_accuracy:.3f}, test accuracy {test_accuracy:.3f} "
        f"({elapsed:.1f} s, {1000 * elapsed / STEPS:.2f} ms/step)"
    )
    assert test_accuracy >= MIN_TEST_ACCURACY, (
        f"test accuracy {test_accuracy:.3f} is below {MIN_TEST_ACCURACY}: "
        "the ops or autograd are broken"
    )


if __name__ == "__main__":
    main()
