"""Distances and similarities between vectors: ember.cdist, cosine_similarity,
pairwise_distance (the latter two also in ember.nn.functional, as in PyTorch)."""

from __future__ import annotations

import builtins

from ...errors import runtime_error
from ...ir.dtypes import promote_types
from ..tensor import Tensor
from .elementwise import cast, div, lt, mul, sub, where
from .reduce import norm, sum
from .shape import broadcast_tensors, unsqueeze


def cdist(x1: Tensor, x2: Tensor, p: float = 2.0, compute_mode=None) -> Tensor:
    """The p-norm distance between every row of x1 (..., P, M) and every row of x2
    (..., R, M): (..., P, R). Computed directly for every size (PyTorch switches to a matmul
    expansion past 25 rows for p=2, which rounds differently)."""
    if x1.ndim < 2 or x2.ndim < 2:
        raise runtime_error(f"cdist only supports at least 2D tensors, X1 got: {x1.ndim}D, "
                            f"X2 got: {x2.ndim}D")
    if x1.shape[-1] != x2.shape[-1]:
        raise runtime_error(f"X1 and X2 must have the same number of columns. X1: "
                            f"{x1.shape[-1]} X2: {x2.shape[-1]}")
    if p < 0:
        raise runtime_error(f"cdist only supports non-negative p values, got {p}")
    if not (x1.dtype.is_floating_point and x2.dtype.is_floating_point):
        raise runtime_error(f"cdist only supports floating-point dtypes, X1 got: "
                            f"{x1.dtype.name}, X2 got: {x2.dtype.name}")
    difference = sub(unsqueeze(x1, -2), unsqueeze(x2, -3))
    return norm(difference, p, -1)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """sum(x1 / |x1| * x2 / |x2|) along dim, each norm at least eps, as PyTorch's: the clamp
    changes the value only, the gradient still flows through the norm."""
    if not (x1.dtype.is_floating_point or x2.dtype.is_floating_point):
        raise runtime_error(f"cosine_similarity(): expected common dtype to be floating point, "
                            f"got {x1.dtype.name} and {x2.dtype.name}")
    common = promote_types(x1.dtype, x2.dtype)
    x1, x2 = broadcast_tensors(cast(x1, common), cast(x2, common))

    def clamped_norm(x):
        n = norm(x, 2, dim, keepdim=True)
        # n - n is exactly 0: the value is eps, the derivative the norm's
        return where(lt(n, eps), sub(n, n.detach()) + eps, n)

    return sum(mul(div(x1, clamped_norm(x1)), div(x2, clamped_norm(x2))), dim)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> Tensor:
    """norm(x1 - x2 + eps, p) over the last dim, as PyTorch's."""
    innermost = builtins.max(x1.ndim, x2.ndim) - 1
    difference = sub(x1, x2) + eps
    if innermost < 0:  # two scalars: the norm of the one difference
        return norm(difference, p)
    return norm(difference, p, innermost, keepdim)
