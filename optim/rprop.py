"""Rprop: resilient backpropagation, steps from gradient signs with adaptive step sizes."""

from __future__ import annotations

from collections.abc import Iterable

from .._tensor import ops
from .._tensor.factories import full_like, ones_like, zeros_like
from ..errors import value_error
from .optimizer import Optimizer, new_step_counter


class Rprop(Optimizer):
    """PyTorch's Rprop: each coordinate's step size grows by etaplus while its gradient keeps
    its sign and shrinks by etaminus when the sign flips (clamped to step_sizes); a flipped
    coordinate skips this step; p -= sign(g) * step_size."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        if not 0.0 <= lr:
            raise value_error(f"Invalid learning rate: {lr}")
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise value_error(f"Invalid eta values: {etas[0]}, {etas[1]}")
        defaults = {
            "lr": lr,
            "etas": etas,
            "step_sizes": step_sizes,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def _update_group(self, group: dict) -> None:
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        for p, grad in self._gradients(group):
            state = self.state[p]
            if not state:
                state["step"] = new_step_counter()
                state["prev"] = zeros_like(p)
                state["step_size"] = full_like(grad, group["lr"])
            state["step"].add_(1)
            prev, step_size = state["prev"], state["step_size"]
            sign = (grad * prev).sign()
            # the factors in p's dtype, as PyTorch writes them into its sign tensor
            factor = ops.where(ops.gt(sign, 0), full_like(sign, etaplus),
                               ops.where(ops.lt(sign, 0), full_like(sign, etaminus),
                                         ones_like(sign)))
            step_size.mul_(factor).clamp_(step_size_min, step_size_max)
            grad = ops.where(ops.lt(sign, 0), zeros_like(grad), grad)
            p.sub_(grad.sign() * step_size)
            prev.copy_(grad)
