"""Adagrad: per-coordinate learning rates from the running sum of squared gradients."""

from __future__ import annotations

from collections.abc import Iterable

from .._tensor.factories import full_like
from ..errors import value_error
from .optimizer import Optimizer, addcdiv_, addcmul_, new_step_counter


class Adagrad(Optimizer):
    """PyTorch's Adagrad: s += g * g; p -= clr * g / (sqrt(s) + eps), where
    clr = lr / (1 + (t - 1) * lr_decay) and s starts at initial_accumulator_value."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        if not 0.0 <= lr:
            raise value_error(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise value_error(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise value_error(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise value_error(
                f"Invalid initial_accumulator_value value: {initial_accumulator_value}"
            )
        if not 0.0 <= eps:
            raise value_error(f"Invalid epsilon value: {eps}")
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "maximize": maximize,
        }
        super().__init__(params, defaults)
        # PyTorch creates Adagrad's state up front, so state_dict() has it before any step
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _init_state(self, p, group: dict) -> dict:
        state = self.state[p]
        state["step"] = new_step_counter()
        state["sum"] = full_like(p, group["initial_accumulator_value"])
        return state

    def _update_group(self, group: dict) -> None:
        lr, lr_decay, eps = group["lr"], group["lr_decay"], group["eps"]
        weight_decay = group["weight_decay"]
        for p, grad in self._gradients(group):
            state = self.state[p]
            if not state:  # a group added after construction
                state = self._init_state(p, group)
            step = state["step"].add_(1).item()
            if weight_decay != 0:
                grad = grad.add(p, alpha=weight_decay)
            clr = lr / (1 + (step - 1) * lr_decay)
            state_sum = addcmul_(state["sum"], grad, grad)
            addcdiv_(p, grad, state_sum.sqrt() + eps, value=-clr)
