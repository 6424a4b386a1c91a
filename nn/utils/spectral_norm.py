"""Spectral normalization (torch.nn.utils.spectral_norm): a parameter divided by its largest
singular value, estimated by power iteration on the buffers `<name>_u` and `<name>_v`."""

from __future__ import annotations

from typing import TypeVar

from ..._tensor import Tensor
from ..._tensor import ops as E
from ...autograd.grad_mode import no_grad
from ...errors import value_error
from .. import functional as F
from ..layers.conv import ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from ..module import Module
from ..parameter import Parameter
from ._norm_hooks import parameter_to_take, remove_hook

__all__ = ["SpectralNorm", "remove_spectral_norm", "spectral_norm"]

T_module = TypeVar("T_module", bound=Module)


class SpectralNorm:
    """The forward pre-hook that writes `<name>` = `<name>_orig` / sigma, sigma = u^T W v;
    in training mode it first runs n_power_iterations steps that update u and v in place."""

    def __init__(
        self, name: str = "weight", n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12
    ) -> None:
        if n_power_iterations <= 0:
            raise value_error(
                "Expected n_power_iterations to be positive, but got "
                f"n_power_iterations={n_power_iterations}"
            )
        self.name = name
        self.dim = dim
        self.n_power_iterations = n_power_iterations
        self.eps = eps

    def reshape_weight_to_matrix(self, weight: Tensor) -> Tensor:
        """weight as a matrix with `dim` as its rows."""
        if self.dim != 0:
            rest = [d for d in range(weight.ndim) if d != self.dim]
            weight = E.permute(weight, self.dim, *rest)
        return E.reshape(weight, (weight.shape[0], -1))

    def compute_weight(self, module: Module, do_power_iteration: bool) -> Tensor:
        weight = getattr(module, self.name + "_orig")
        u = getattr(module, self.name + "_u")
        v = getattr(module, self.name + "_v")
        weight_mat = self.reshape_weight_to_matrix(weight)
        if do_power_iteration:
            with no_grad():
                for _ in range(self.n_power_iterations):
                    F.normalize(E.mv(E.t(weight_mat), u), dim=0, eps=self.eps, out=v)
                    F.normalize(E.mv(weight_mat, v), dim=0, eps=self.eps, out=u)
                # copies: backward must not see the next forward's in-place update
                u = u.clone()
                v = v.clone()
        sigma = E.dot(u, E.mv(weight_mat, v))
        return E.div(weight, sigma)

    def remove(self, module: Module) -> None:
        with no_grad():
            weight = self.compute_weight(module, do_power_iteration=False)
        delattr(module, self.name)
        delattr(module, self.name + "_u")
        delattr(module, self.name + "_v")
        delattr(module, self.name + "_orig")
        module.register_parameter(self.name, Parameter(weight.detach()))

    def __call__(self, module: Module, inputs) -> None:
        setattr(module, self.name, self.compute_weight(module, module.training))

    @staticmethod
    def apply(
        module: Module, name: str, n_power_iterations: int, dim: int, eps: float
    ) -> SpectralNorm:
        weight = parameter_to_take(module, SpectralNorm, name, "spectral_norm")
        if not -weight.ndim <= dim < max(weight.ndim, 1):
            raise value_error(
                f"spectral_norm: dim {dim} is out of range for a weight of shape "
                f"{list(weight.shape)}"
            )
        fn = SpectralNorm(name, n_power_iterations, dim % max(weight.ndim, 1), eps)
        with no_grad():
            weight_mat = fn.reshape_weight_to_matrix(weight)
            h, w = weight_mat.shape
            u = F.normalize(weight.new_empty(h).normal_(0, 1), dim=0, eps=fn.eps)
            v = F.normalize(weight.new_empty(w).normal_(0, 1), dim=0, eps=fn.eps)
        delattr(module, name)
        module.register_parameter(name + "_orig", weight)
        setattr(module, name, weight.detach())
        module.register_buffer(name + "_u", u)
        module.register_buffer(name + "_v", v)
        module.register_forward_pre_hook(fn)
        return fn


def spectral_norm(
    module: T_module,
    name: str = "weight",
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    dim: int | None = None,
) -> T_module:
    """Divide module's `name` by its spectral norm before every forward; the parameter
    becomes `<name>_orig` and the power iteration's vectors the buffers `<name>_u`,
    `<name>_v`. dim (the output dim) defaults to 1 for transposed convolutions, else 0.
    Returns module."""
    if dim is None:
        dim = 1 if isinstance(module, (ConvTranspose1d, ConvTranspose2d, ConvTranspose3d)) else 0
    SpectralNorm.apply(module, name, n_power_iterations, dim, eps)
    return module


def remove_spectral_norm(module: T_module, name: str = "weight") -> T_module:
    """Fold spectral_norm back into one parameter `name` (the current u and v's estimate).
    Returns module."""
    return remove_hook(module, SpectralNorm, name, "spectral_norm")
