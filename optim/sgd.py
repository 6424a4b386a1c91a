"""SGD: stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from collections.abc import Iterable

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
            # one native pass (runtime/updates.py), bit for bit the tensor ops below; the
            # first step with momentum, which makes the buffer, runs as tensor ops
            if (momentum == 0 or buf is not None) and on_arrays(
                    p, grad, *([buf] if buf is not None else [])):
                updates.sgd(p._data, grad._data, None if buf is None else buf._data,
                            weight_decay, momentum, dampening, nesterov, lr)
                for t in (p, buf) if buf is not None else (p,):
                    t._version[0] += 1
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
