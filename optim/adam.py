"""Adam and AdamW: adaptive moment estimation, with L2 or decoupled weight decay."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .._tensor import hooks
from .._tensor.factories import zeros_like
from ..errors import value_error
from ..runtime import updates
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
            # under ember.script the bias corrections are tensor ops on the step counter, so a
            # captured step stays right on every call (PyTorch's capturable=True); eagerly they
            # are Python floats, as PyTorch computes them
            if on_arrays(p, grad, exp_avg, exp_avg_sq):  # eager: no trace to see tensor ops
                _update_arrays(p, grad, state, lr, beta1, beta2, eps, weight_decay, amsgrad,
                               decoupled)
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
                step_size = lr / (1 - (step * math.log(beta1)).exp())
                bias_correction2_sqrt = (1 - (step * math.log(beta2)).exp()).sqrt()
            else:
                step_size = lr / (1 - beta1**step)
                bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            if amsgrad:
                if "max_exp_avg_sq" not in state:  # amsgrad switched on after the first step
                    state["max_exp_avg_sq"] = zeros_like(p)
                second_moment = state["max_exp_avg_sq"].maximum_(exp_avg_sq)
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


def _update_arrays(p, grad, state, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled):
    """The eager step of one parameter straight on its numpy arrays: the same operations,
    scalars and rounding order as the tensor ops above (so the results are bit for bit
    theirs), without a dispatch per op; one native pass over the arrays where it can
    (runtime/updates.py), else numpy's passes. Versions move as the in-place ops would."""
    f = p._data.dtype.type
    P, G = p._data, grad._data
    step_t, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
    M, V = exp_avg._data, exp_avg_sq._data
    step_t._data += step_t._data.dtype.type(1)
    step = step_t._data.item()
    touched = [step_t, p, exp_avg, exp_avg_sq]
    peak = None
    if amsgrad:
        if "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = zeros_like(p)
        peak = state["max_exp_avg_sq"]
        touched.append(peak)
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    arrays = [P, G, M, V] + ([peak._data] if amsgrad else [])
    if updates.usable(*arrays):
        if weight_decay == 0:
            decay, value = "none", 0.0
        else:
            decay = "decoupled" if decoupled else "coupled"
            value = 1 - lr * weight_decay if decoupled else weight_decay
        updates.adam(P, G, M, V, peak._data if amsgrad else None, decay, value, beta1, beta2,
                     bias_correction2_sqrt, eps, step_size)
    else:
        if weight_decay != 0:
            if decoupled:
                P *= f(1 - lr * weight_decay)
            else:
                G = G + P * f(weight_decay)
        M += f(1 - beta1) * (G - M)  # lerp: m + w * (g - m)
        V *= f(beta2)
        V += (G * f(1 - beta2)) * G
        if amsgrad:
            np.maximum(peak._data, V, out=peak._data)
        second = peak._data if amsgrad else V
        denom = np.sqrt(second) / f(bias_correction2_sqrt) + f(eps)
        P += (M * f(-step_size)) / denom
    for t in touched:
        t._version[0] += 1
