"""NAdam: Adam with Nesterov momentum and a momentum schedule (Dozat)."""

from __future__ import annotations

from collections.abc import Iterable

from .._tensor.factories import zeros_like
from ..errors import value_error
from ._scalars import addcdiv, power, scalar_state, step_value, traced
from .adamax import _check_adam_like
from .optimizer import Optimizer, addcmul_, new_step_counter


class NAdam(Optimizer):
    """PyTorch's NAdam: mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay)), their running
    product kept in state as mu_product; p -= lr * ((1 - mu_t) / (1 - prod) * g
    + mu_{t+1} / (1 - prod * mu_{t+1}) * m) / (sqrt(v / (1 - beta2^t)) + eps)."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_adam_like(lr, betas, eps, weight_decay)
        if not 0.0 <= momentum_decay:
            raise value_error(f"Invalid momentum_decay value: {momentum_decay}")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def _update_group(self, group: dict) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay, momentum_decay = group["weight_decay"], group["momentum_decay"]
        for p, grad in self._gradients(group):
            state = self.state[p]
            if not state:
                state["step"] = new_step_counter()
                state["mu_product"] = scalar_state(1.0)
                state["exp_avg"] = zeros_like(p)
                state["exp_avg_sq"] = zeros_like(p)
            step = step_value(state["step"].add_(1))
            bias_correction2 = 1 - power(beta2, step)
            if weight_decay != 0:
                if group["decoupled_weight_decay"]:
                    p.mul_(1 - lr * weight_decay)
                else:
                    grad = grad.add(p, alpha=weight_decay)
            mu = beta1 * (1.0 - 0.5 * power(0.96, step * momentum_decay))
            mu_next = beta1 * (1.0 - 0.5 * power(0.96, (step + 1) * momentum_decay))
            mu_product = state["mu_product"].mul_(mu)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            addcmul_(exp_avg_sq.mul_(beta2), grad, grad, value=1 - beta2)
            denom = (exp_avg_sq / bias_correction2).sqrt() + eps
            # PyTorch reads the float32 product back as a Python float eagerly
            product = mu_product if traced() else mu_product.item()
            addcdiv(p, grad, denom, -lr * (1.0 - mu) / (1.0 - product))
            addcdiv(p, exp_avg, denom, (-lr * mu_next) / (1.0 - product * mu_next))
