"""Adadelta: steps scaled by the ratio of running RMS of updates to running RMS of gradients."""

from __future__ import annotations

from collections.abc import Iterable

from .._tensor.factories import zeros_like
from ..errors import value_error
from .optimizer import Optimizer, addcmul_, new_step_counter


class Adadelta(Optimizer):
    """PyTorch's Adadelta: v = rho * v + (1 - rho) * g * g;
    delta = sqrt(u + eps) / sqrt(v + eps) * g; u = rho * u + (1 - rho) * delta * delta;
    p -= lr * delta."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        if not 0.0 <= lr:
            raise value_error(f"Invalid learning rate: {lr}")
        if not 0.0 <= rho <= 1.0:
            raise value_error(f"Invalid rho value: {rho}")
        if not 0.0 <= eps:
            raise value_error(f"Invalid epsilon value: {eps}")
        if not 0.0 <= weight_decay:
            raise value_error(f"Invalid weight_decay value: {weight_decay}")
        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "capturable": capturable,
            "foreach": foreach,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def _update_group(self, group: dict) -> None:
        lr, rho, eps, weight_decay = group["lr"], group["rho"], group["eps"], group["weight_decay"]
        for p, grad in self._gradients(group):
            state = self.state[p]
            if not state:
                state["step"] = new_step_counter()
                state["square_avg"] = zeros_like(p)
                state["acc_delta"] = zeros_like(p)
            state["step"].add_(1)
            if weight_decay != 0:
                grad = grad.add(p, alpha=weight_decay)
            square_avg, acc_delta = state["square_avg"], state["acc_delta"]
            addcmul_(square_avg.mul_(rho), grad, grad, value=1 - rho)
            std = (square_avg + eps).sqrt()
            delta = (acc_delta + eps).sqrt() / std * grad
            addcmul_(acc_delta.mul_(rho), delta, delta, value=1 - rho)
            p.add_(delta, alpha=-lr)
