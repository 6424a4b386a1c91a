"""Adamax: Adam with the infinity norm in place of the second moment."""

from __future__ import annotations

from collections.abc import Iterable

from .._tensor.factories import zeros_like
from ..errors import value_error
from ._scalars import addcdiv, power, step_value
from .optimizer import Optimizer, new_step_counter


class Adamax(Optimizer):
    """PyTorch's Adamax: m = lerp(m, g, 1 - beta1); u = max(beta2 * u, |g| + eps);
    p -= lr / (1 - beta1^t) * m / u."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        _check_adam_like(lr, betas, eps, weight_decay)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def _update_group(self, group: dict) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay = group["weight_decay"]
        for p, grad in self._gradients(group):
            state = self.state[p]
            if not state:
                state["step"] = new_step_counter()
                state["exp_avg"] = zeros_like(p)
                state["exp_inf"] = zeros_like(p)
            step = step_value(state["step"].add_(1))
            if weight_decay != 0:
                grad = grad.add(p, alpha=weight_decay)
            exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_inf.mul_(beta2).maximum_(grad.abs() + eps)
            addcdiv(p, exp_avg, exp_inf, -lr / (1 - power(beta1, step)))


def _check_adam_like(lr: float, betas, eps: float, weight_decay: float) -> None:
    """The checks PyTorch makes of the Adam family's options."""
    if not 0.0 <= lr:
        raise value_error(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise value_error(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise value_error(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise value_error(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise value_error(f"Invalid weight_decay value: {weight_decay}")
