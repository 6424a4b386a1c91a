"""RMSprop: gradients scaled by a running root mean square, optionally centered and with
momentum."""

from __future__ import annotations

from collections.abc import Iterable

from .._tensor.factories import zeros_like
from ..errors import value_error
from .optimizer import Optimizer, addcdiv_, addcmul_, new_step_counter


class RMSprop(Optimizer):
    """PyTorch's RMSprop: v = alpha * v + (1 - alpha) * g * g; with centered, the running mean
    of g is subtracted: avg = sqrt(v - mean(g)^2) + eps, else sqrt(v) + eps; then
    p -= lr * g / avg, or through a momentum buffer buf = momentum * buf + g / avg."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        if not 0.0 <= lr:
            raise value_error(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise value_error(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise value_error(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise value_error(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise value_error(f"Invalid alpha value: {alpha}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _update_group(self, group: dict) -> None:
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        weight_decay, momentum, centered = (
            group["weight_decay"],
            group["momentum"],
            group["centered"],
        )
        for p, grad in self._gradients(group):
            state = self.state[p]
            if not state:
                state["step"] = new_step_counter()
                state["square_avg"] = zeros_like(p)
                if momentum > 0:
                    state["momentum_buffer"] = zeros_like(p)
                if centered:
                    state["grad_avg"] = zeros_like(p)
            state["step"].add_(1)
            if weight_decay != 0:
                grad = grad.add(p, alpha=weight_decay)

            square_avg = addcmul_(state["square_avg"].mul_(alpha), grad, grad, value=1 - alpha)
            if centered:
                grad_avg = state["grad_avg"].lerp_(grad, 1 - alpha)
                avg = (square_avg - grad_avg * grad_avg).sqrt() + eps
            else:
                avg = square_avg.sqrt() + eps

            if momentum > 0:
                buf = state.get("momentum_buffer")
                if buf is None:  # momentum switched on after the first step
                    buf = state["momentum_buffer"] = zeros_like(p)
                addcdiv_(buf.mul_(momentum), grad, avg)
                p.add_(buf, alpha=-lr)
            else:
                addcdiv_(p, grad, avg, value=-lr)
