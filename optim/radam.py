"""RAdam: Adam whose adaptive learning rate is rectified by the variance of its estimate."""

from __future__ import annotations

from collections.abc import Iterable

from .. import _tensor
from .._tensor.factories import zeros_like
from ._scalars import power, step_value, traced
from .adamax import _check_adam_like
from .optimizer import Optimizer, addcmul_, new_step_counter


class RAdam(Optimizer):
    """PyTorch's RAdam: with rho_inf = 2 / (1 - beta2) - 1 and
    rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t), the step is m / (1 - beta1^t) times lr,
    times the rectification r_t * sqrt(1 - beta2^t) / (sqrt(v) + eps) only where rho_t > 5."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_adam_like(lr, betas, eps, weight_decay)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "decoupled_weight_decay": decoupled_weight_decay,
            "differentiable": differentiable,
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
                state["exp_avg_sq"] = zeros_like(p)
            step = step_value(state["step"].add_(1))
            if weight_decay != 0:
                if group["decoupled_weight_decay"]:
                    p.mul_(1 - lr * weight_decay)
                else:
                    grad = grad.add(p, alpha=weight_decay)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            addcmul_(exp_avg_sq.mul_(beta2), grad, grad, value=1 - beta2)
            bias_correction1 = 1 - power(beta1, step)
            bias_correction2 = 1 - power(beta2, step)
            corrected = exp_avg / bias_correction1
            rho_inf = 2 / (1 - beta2) - 1
            rho_t = rho_inf - 2 * step * power(beta2, step) / bias_correction2

            def rect():
                return ((rho_t - 4) * (rho_t - 2) * rho_inf
                        / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5

            def adaptive_lr():
                return (bias_correction2**0.5) / (exp_avg_sq.sqrt() + eps)

            if traced():
                # both branches as tensors; the unrectified one wherever rho_t <= 5
                rectified = rect().to(p.dtype) * adaptive_lr()
                update = _tensor.ops.where(rho_t > 5.0, rectified, 1.0)
                p.add_(corrected * lr * update, alpha=-1.0)
            elif rho_t > 5.0:
                p.add_(corrected * lr * adaptive_lr() * rect(), alpha=-1.0)
            else:
                p.add_(corrected * lr, alpha=-1.0)
