"""Weight normalization (torch.nn.utils.weight_norm): a parameter split into a magnitude
`<name>_g` and a direction `<name>_v`, recombined as g * v / ||v|| before every forward."""

from __future__ import annotations

from typing import TypeVar

from ..._tensor import Tensor
from ..._tensor import ops as E
from ...errors import value_error
from ..module import Module
from ..parameter import Parameter
from ._norm_hooks import parameter_to_take, remove_hook

__all__ = ["WeightNorm", "norm_except_dim", "remove_weight_norm", "weight_norm"]

T_module = TypeVar("T_module", bound=Module)


def norm_except_dim(v: Tensor, pow: float = 2, dim: int = 0) -> Tensor:
    """The pow-norm of v over every dim but `dim`, kept with size 1 (dim=-1: over all of v,
    a 0-d tensor, as torch.norm_except_dim)."""
    if dim == -1:
        return E.norm(v, pow)
    if not -v.ndim <= dim < v.ndim:
        raise value_error(
            f"weight_norm: dim {dim} is out of range for a weight of shape {list(v.shape)}"
        )
    dim %= v.ndim
    others = tuple(d for d in range(v.ndim) if d != dim)
    return E.norm(v, pow, others, True)


class WeightNorm:
    """The forward pre-hook that writes `<name>` from `<name>_g` and `<name>_v`."""

    def __init__(self, name: str, dim: int | None) -> None:
        self.name = name
        self.dim = -1 if dim is None else dim

    def compute_weight(self, module: Module) -> Tensor:
        g = getattr(module, self.name + "_g")
        v = getattr(module, self.name + "_v")
        return E.mul(v, E.div(g, norm_except_dim(v, 2, self.dim)))

    @staticmethod
    def apply(module: Module, name: str, dim: int | None) -> WeightNorm:
        weight = parameter_to_take(module, WeightNorm, name, "weight_norm")
        fn = WeightNorm(name, dim)
        del module._parameters[name]
        module.register_parameter(
            name + "_g", Parameter(norm_except_dim(weight, 2, fn.dim).detach())
        )
        module.register_parameter(name + "_v", Parameter(weight.detach()))
        setattr(module, name, fn.compute_weight(module))
        module.register_forward_pre_hook(fn)
        return fn

    def remove(self, module: Module) -> None:
        weight = self.compute_weight(module)
        delattr(module, self.name)
        del module._parameters[self.name + "_g"]
        del module._parameters[self.name + "_v"]
        setattr(module, self.name, Parameter(weight.detach()))

    def __call__(self, module: Module, inputs) -> None:
        setattr(module, self.name, self.compute_weight(module))


def weight_norm(module: T_module, name: str = "weight", dim: int | None = 0) -> T_module:
    """Reparametrize module's `name` as g * v / ||v||, the norm taken over every dim but `dim`
    (over the whole tensor when dim is None); g and v are the parameters `<name>_g` and
    `<name>_v`. Returns module."""
    WeightNorm.apply(module, name, dim)
    return module


def remove_weight_norm(module: T_module, name: str = "weight") -> T_module:
    """Fold weight_norm's g and v back into one parameter `name`. Returns module."""
    return remove_hook(module, WeightNorm, name, "weight_norm")
