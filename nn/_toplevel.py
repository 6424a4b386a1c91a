"""The nn.functional functions PyTorch also exposes at the top level (torch.conv3d,
torch.celu, torch.batch_norm, ...), which the public API exports as ember.conv3d, ...

Where torch's top-level form takes the arguments of nn.functional's, it is the same callable.
Nine take ATen's arguments instead, and get an adapter here: batch_norm and instance_norm
(weight and bias before the running statistics, all positional), layer_norm and group_norm
(a trailing cudnn flag), kl_div, binary_cross_entropy_with_logits and ctc_loss (the reduction
as ATen's enum, 1 mean, 2 sum, others none; left out, torch's binding passes 0, so they do not
reduce), adaptive_max_pool1d (always the values and the indices) and embedding_bag (ATen's
order and mode enum, four outputs). Two replace the tensor layer's op functions at the top level:
embedding takes the weight first, and dropout names its flag train.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._tensor import Tensor
from .._tensor import ops as E
from .._tensor.factories import full, zeros
from ..autograd.grad_mode import no_grad
from ..errors import type_error, value_error
from ..ir.dtypes import float32
from . import functional as F
from .functional import (  # noqa: F401  (re-exported: the same callables as torch's)
    adaptive_avg_pool1d,
    avg_pool1d,
    bilinear,
    celu,
    conv1d,
    conv3d,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    max_pool1d,
    max_pool3d,
    pixel_shuffle,
    pixel_unshuffle,
    prelu,
    selu,
)


def _reduction(reduction: int, name: str) -> str:
    """ATen's Reduction enum as nn.functional's name: 1 mean, 2 sum, any other int none (as
    ATen's apply_loss_reduction reads it)."""
    if isinstance(reduction, bool) or not isinstance(reduction, int):
        raise type_error(
            f"{name}(): argument 'reduction' must be int, not "
            f"{type(reduction).__name__}"
        )
    return {1: "mean", 2: "sum"}.get(reduction, "none")


def batch_norm(
    input: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
    cudnn_enabled: bool,
) -> Tensor:
    """Batch normalization in ATen's argument order (torch.batch_norm)."""
    return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def layer_norm(
    input: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    cudnn_enable: bool = True,
) -> Tensor:
    """Layer normalization over the trailing normalized_shape dims (torch.layer_norm)."""
    return F.layer_norm(input, normalized_shape, weight, bias, eps)


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    cudnn_enabled: bool = True,
) -> Tensor:
    """Group normalization over num_groups channel groups (torch.group_norm)."""
    return F.group_norm(input, num_groups, weight, bias, eps)


def instance_norm(
    input: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    use_input_stats: bool,
    momentum: float,
    eps: float,
    cudnn_enabled: bool,
) -> Tensor:
    """Instance normalization in ATen's argument order (torch.instance_norm)."""
    return F.instance_norm(input, running_mean, running_var, weight, bias, use_input_stats,
                           momentum, eps)


def kl_div(input: Tensor, target: Tensor, reduction: int = 0, *, log_target: bool = False
           ) -> Tensor:
    """KL divergence with the reduction as ATen's enum (torch.kl_div)."""
    name = _reduction(reduction, "kl_div")
    # the plain mean, without nn.functional's warning that 'mean' is not 'batchmean'
    out = F.kl_div(input, target, reduction="none" if name == "mean" else name,
                   log_target=log_target)
    return out.mean() if name == "mean" else out


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    pos_weight: Tensor | None = None,
    reduction: int = 0,
) -> Tensor:
    """Binary cross-entropy of logits with the reduction as ATen's enum
    (torch.binary_cross_entropy_with_logits)."""
    return F.binary_cross_entropy_with_logits(
        input, target, weight, reduction=_reduction(reduction, "binary_cross_entropy_with_logits"),
        pos_weight=pos_weight,
    )


def ctc_loss(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Tensor | Sequence[int],
    target_lengths: Tensor | Sequence[int],
    blank: int = 0,
    reduction: int = 0,
    zero_infinity: bool = False,
) -> Tensor:
    """CTC loss with the reduction as ATen's enum (torch.ctc_loss); left out, torch's binding
    passes 0, so it does not reduce."""
    return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank,
                      _reduction(reduction, "ctc_loss"), zero_infinity)


def adaptive_max_pool1d(input: Tensor, output_size: int | Sequence[int]
                        ) -> tuple[Tensor, Tensor]:
    """(values, indices) of adaptive max pooling over the last dim (torch.adaptive_max_pool1d)."""
    return F.adaptive_max_pool1d(input, output_size, return_indices=True)


def embedding(
    weight: Tensor,
    indices: Tensor,
    padding_idx: int = -1,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    """Rows of weight picked by indices, weight first (torch.embedding); a negative
    padding_idx is none, as ATen reads it (nn.functional's normalizes its own)."""
    return F.embedding(indices, weight, padding_idx if padding_idx >= 0 else None,
                       scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)


_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


def embedding_bag(
    weight: Tensor,
    indices: Tensor,
    offsets: Tensor,
    scale_grad_by_freq: bool = False,
    mode: int = 0,
    sparse: bool = False,
    per_sample_weights: Tensor | None = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bags of weight's rows in ATen's argument order, mode as its enum (0 sum, 1 mean, 2 max)
    and a negative padding_idx as none (torch.embedding_bag). Returns ATen's (output,
    offset2bag, bag_size, max_indices) as its CPU kernel fills them: for mode sum, offset2bag
    is empty (float32 weight and no padding_idx: its fast path) and the others zeros of
    offsets' length; for mean, max_indices is bag_size; for max, the row giving each maximum."""
    if mode not in _BAG_MODES:
        raise value_error(f"embedding_bag(): mode must be 0 (sum), 1 (mean) or 2 (max), got {mode}")
    name = _BAG_MODES[mode]
    if padding_idx is not None and padding_idx < 0:
        padding_idx = None
    out, flat, target, sizes = F._embedding_bag(
        indices, weight, offsets, None, 2.0, scale_grad_by_freq, name, sparse,
        per_sample_weights, include_last_offset, padding_idx,
    )
    bags, dim = out.shape
    index_dtype, device = indices.dtype, indices.device
    with no_grad():
        _, bag_of, _ = F._bag_index(indices, offsets, include_last_offset)
        offset2bag = E.cast(E.clamp(bag_of, max=max(bags - 1, 0)), index_dtype)
        if name == "sum":
            if padding_idx is None and weight.dtype is float32:
                offset2bag = zeros(0, dtype=index_dtype, device=device)
            unused = zeros(offsets.shape[0], dtype=index_dtype, device=device)
            return out, offset2bag, unused, unused.clone()
        bag_size = E.cast(sizes, index_dtype)
        if name == "mean":
            return out, offset2bag, bag_size, bag_size.clone()
        # the row of each maximum: the smallest row index among the bag's rows equal to it
        maxima = E.index_select(E.cat([out.detach(), zeros(1, dim, dtype=out.dtype,
                                                           device=device)]), 0, target)
        rows = E.embedding(flat, weight.detach())
        hit = E.logical_and(E.eq(rows, maxima), E.unsqueeze(E.lt(target, bags), 1))
        no_row = weight.shape[0]
        candidates = E.where(hit, E.unsqueeze(flat, 1), no_row)
        first = E.scatter_reduce(
            full((bags + 1, dim), no_row, dtype=flat.dtype, device=device), 0,
            E.expand(E.unsqueeze(target, 1), flat.shape[0], dim), candidates, "amin",
        )[:bags]
        max_indices = E.cast(E.where(E.eq(first, no_row), 0, first), index_dtype)
        return out, offset2bag, bag_size, max_indices


def dropout(input: Tensor, p: float, train: bool) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) when train
    (torch.dropout)."""
    return E.dropout(input, p, train)
