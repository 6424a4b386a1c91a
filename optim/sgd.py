"""SGD: stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..errors import value_error
from ..runtime import updates
from .optimizer import Optimizer, on_arrays


class SGD(Optimizer):
    """PyTorch's SGD: g = grad + wd * p; buf = momentum * buf + (1 - dampening) * g (the first
    step's buf is g itself); g = g + momentum * buf (Nesterov) or buf; p -= lr * g."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        if lr < 0.0:
            raise value_error(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise value_error(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise value_error(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise value_error("Nesterov momentum requires a momentum and zero dampening")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _update_group(self, group: dict) -> None:
        lr, momentum = group["lr"], group["momentum"]
        dampening, weight_decay = group["dampening"], group["weight_decay"]
        nesterov = group["nesterov"]
        for p, grad in self._gradients(group):
            buf = self.state[p].get("momentum_buffer") if momentum != 0 else None
            if on_arrays(p, grad, *([buf] if buf is not None else [])):
                _update_arrays(self.state, p, grad, buf, lr, momentum, dampening,
                               weight_decay, nesterov)
                continue
            if weight_decay != 0:
                grad = grad.add(p, alpha=weight_decay)
            if momentum != 0:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.detach().clone()
                else:
                    buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                grad = grad.add(buf, alpha=momentum) if nesterov else buf
            p.add_(grad, alpha=-lr)


def _update_arrays(state, p, grad, buf, lr, momentum, dampening, weight_decay, nesterov):
    """One parameter's eager step on its numpy arrays: the tensor path's operations, scalars
    and rounding order (bit for bit, tested), without a dispatch per op."""
    f = p._data.dtype.type
    P, G = p._data, grad._data
    if momentum != 0 and buf is not None and updates.usable(P, G, buf._data):
        # one native pass (runtime/updates.py), bit for bit the numpy passes below
        updates.sgd(P, G, buf._data, weight_decay, momentum, dampening, nesterov, lr)
        buf._version[0] += 1
        p._version[0] += 1
        return
    if weight_decay != 0:
        G = G + P * f(weight_decay)
    if momentum != 0:
        if buf is None:
            from .._tensor.factories import tensor as make_tensor

            # np.array: a copy that stays an array of P's dtype (G is a numpy scalar at 0-d)
            buf = state[p]["momentum_buffer"] = make_tensor(np.array(G, dtype=P.dtype))
        else:
            B = buf._data
            B *= f(momentum)
            B += G if dampening == 0 else G * f(1 - dampening)  # add's alpha=1 skips the mul
            buf._version[0] += 1
        G = G + buf._data * f(momentum) if nesterov else buf._data
    P += G * f(-lr)
    p._version[0] += 1
