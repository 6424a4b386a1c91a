"""ASGD: averaged stochastic gradient descent (Polyak and Juditsky)."""

from __future__ import annotations

from collections.abc import Iterable

from .._tensor import ops
from .._tensor.factories import ones_like, zeros_like
from ..errors import value_error
from ._scalars import scalar_state, traced
from .optimizer import Optimizer, new_step_counter


class ASGD(Optimizer):
    """PyTorch's ASGD: p = p * (1 - lambd * eta) - eta * g; the average ax follows p once
    step > t0 (ax += mu * (p - ax)); then eta = lr / (1 + lambd * lr * t)^alpha and
    mu = 1 / max(1, t - t0). eta and mu are kept in state as PyTorch's float32 scalars."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        if not 0.0 <= lr:
            raise value_error(f"Invalid learning rate: {lr}")
        if not 0.0 <= weight_decay:
            raise value_error(f"Invalid weight_decay value: {weight_decay}")
        defaults = {
            "lr": lr,
            "lambd": lambd,
            "alpha": alpha,
            "t0": t0,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def _update_group(self, group: dict) -> None:
        lr, lambd, alpha, t0 = group["lr"], group["lambd"], group["alpha"], group["t0"]
        weight_decay = group["weight_decay"]
        for p, grad in self._gradients(group):
            state = self.state[p]
            if not state:
                state["step"] = new_step_counter()
                state["eta"] = scalar_state(lr)
                state["mu"] = scalar_state(1.0)
                state["ax"] = zeros_like(p)
            step_t, eta, mu, ax = state["step"], state["eta"], state["mu"], state["ax"]
            step_t.add_(1)
            if weight_decay != 0:
                grad = grad.add(p, alpha=weight_decay)
            if traced():
                rate = eta.to(p.dtype)
                p.mul_(1 - lambd * rate)
                p.sub_(grad * rate)
                ax.add_((p - ax) * mu.to(p.dtype))
                eta.copy_(lr / ((1 + lambd * lr * step_t) ** alpha))
                mu.copy_(1 / ops.maximum(step_t - t0, ones_like(step_t)))
                continue
            rate = eta.item()
            p.mul_(1 - lambd * rate)
            p.add_(grad, alpha=-rate)
            if mu.item() != 1:
                ax.add_((p - ax).mul_(mu.to(p.dtype)))
            else:
                ax.copy_(p)
            step = step_t.item()
            # PyTorch makes each new value a tensor of the default dtype before copying it in,
            # so it is rounded so even where a loaded state made eta and mu float64
            eta.fill_(scalar_state(lr / ((1 + lambd * lr * step) ** alpha)).item())
            mu.fill_(scalar_state(1 / max(1, step - t0)).item())
