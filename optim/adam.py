"""Adam and AdamW: adaptive moment estimation, with L2 or decoupled weight decay."""

from __future__ import annotations

from collections.abc import Iterable

from .._tensor import hooks
from .._tensor.factories import zeros_like
from ..errors import value_error
from ..ir.dtypes import bfloat16, float32, float64
from ..runtime import updates
from ._scalars import power
from .optimizer import Optimizer, addcdiv_, addcmul_, new_step_counter, on_arrays


class Adam(Optimizer):
    """PyTorch's Adam, with its bias corrections and optional AMSGrad.

    m = lerp(m, g, 1 - beta1); v = beta2 * v + (1 - beta2) * g * g;
    p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps), where v is the running
    maximum of v under amsgrad. weight_decay adds wd * p to g, or, decoupled (AdamW), scales p
    by 1 - lr * wd first.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
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
        defaults = {
            "lr": lr,
            "betas": (float(betas[0]), float(betas[1])),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def _update_group(self, group: dict) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay, amsgrad = group["weight_decay"], group["amsgrad"]
        decoupled = group["decoupled_weight_decay"]
        for p, grad in self._gradients(group):
            state = self.state[p]
            if not state:
                state["step"] = new_step_counter()
                state["exp_avg"] = zeros_like(p)
                state["exp_avg_sq"] = zeros_like(p)
            step_t, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
            if amsgrad and "max_exp_avg_sq" not in state:  # amsgrad switched on after step 1
                state["max_exp_avg_sq"] = zeros_like(p)
            peak = state.get("max_exp_avg_sq") if amsgrad else None
            # under ember.script the bias corrections are tensor ops on the step counter, so a
            # captured step stays right on every call (PyTorch's capturable=True); eagerly they
            # are Python floats, as PyTorch computes them
            if on_arrays(p, grad, exp_avg, exp_avg_sq, *([peak] if amsgrad else [])):
                _update_native(p, grad, step_t, exp_avg, exp_avg_sq, peak, lr, beta1, beta2,
                               eps, weight_decay, decoupled)
                continue
            traced = hooks.trace_here() is not None
            step_t.add_(1)
            step = step_t if traced else step_t.item()

            if weight_decay != 0:
                if decoupled:
                    p.mul_(1 - lr * weight_decay)
                else:
                    grad = grad.add(p, alpha=weight_decay)

            exp_avg.lerp_(grad, 1 - beta1)
            addcmul_(exp_avg_sq.mul_(beta2), grad, grad, value=1 - beta2)

            if traced:
                # in double, as eager's Python floats (a float32 counter would round
                # 1 - beta2**t), then in the parameter's dtype, as eager's scalar operands
                # (bfloat16 ops keep such scalars in float32: runtime/kernels/casting.py)
                # beta**t as exp(t * log(beta)): a pow with a tensor exponent runs eagerly,
                # two per parameter, where exp fuses with the rest of the scalars
                step = step.to(float64)
                scalar_dtype = float32 if p.dtype is bfloat16 else p.dtype
                step_size = (lr / (1 - power(beta1, step))).to(scalar_dtype)
                bias_correction2_sqrt = ((1 - power(beta2, step)) ** 0.5).to(scalar_dtype)
            else:
                step_size = lr / (1 - beta1**step)
                bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            if amsgrad:
                second_moment = peak.maximum_(exp_avg_sq)
            else:
                second_moment = exp_avg_sq
            denom = second_moment.sqrt() / bias_correction2_sqrt + eps
            if traced:
                p.add_(exp_avg * (-step_size) / denom)
            else:
                addcdiv_(p, exp_avg, denom, value=-step_size)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr * wd each step."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
        )

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


def _update_native(p, grad, step_t, exp_avg, exp_avg_sq, peak, lr, beta1, beta2, eps,
                   weight_decay, decoupled):
    """The eager step of one parameter as one native pass over its arrays (runtime/updates.py):
    the tensor ops' operations, scalars and rounding order, so the results are bit for bit
    theirs (tested), without a dispatch per op. Versions move as the in-place ops would."""
    step_t._data += step_t._data.dtype.type(1)
    step = step_t._data.item()
    if weight_decay == 0:
        decay, value = "none", 0.0
    else:
        decay = "decoupled" if decoupled else "coupled"
        value = 1 - lr * weight_decay if decoupled else weight_decay
    updates.adam(p._data, grad._data, exp_avg._data, exp_avg_sq._data,
                 None if peak is None else peak._data, decay, value, beta1, beta2,
                 (1 - beta2**step) ** 0.5, eps, lr / (1 - beta1**step))
    for t in (step_t, p, exp_avg, exp_avg_sq, *([peak] if peak is not None else [])):
        t._version[0] += 1
