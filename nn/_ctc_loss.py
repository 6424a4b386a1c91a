"""The connectionist temporal classification loss (nn.functional.ctc_loss), from primitives.

The forward (alpha) recursion runs in log space over each target's extended label sequence
(blanks interleaved: blank, l1, blank, l2, ..., blank), vectorized over the batch and the label
positions, one step per time step; autograd differentiates it, so there is no backward pass of
its own. Log-sums of entries that are all -inf are masked, so that impossible alignments give
-inf values with zero gradients instead of NaN.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from .._tensor import Tensor, hooks
from .._tensor import ops as E
from .._tensor.autocast import float32_inputs
from .._tensor.factories import arange, full, tensor
from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..errors import index_error, not_implemented_error, runtime_error, value_error
from ..ir.dtypes import int64

_REDUCTIONS = ("mean", "sum", "none")


def _log_sum_exp(x: Tensor, dim: int) -> Tensor:
    """log(sum(exp(x))) over dim; -inf, with a zero gradient, where every entry is -inf."""
    with no_grad():
        top = E.amax(x, dim, keepdim=True)
        finite = E.isfinite(top)
        shift = E.where(finite, top, 0.0)
    total = E.sum(E.exp(E.sub(x, shift)), dim, keepdim=True)
    # where the maximum is finite the sum is at least 1; elsewhere log reads a harmless 1
    out = E.where(finite, E.add(E.log(E.where(finite, total, 1.0)), shift), float("-inf"))
    return E.squeeze(out, dim)


def _lengths(lengths, name: str, batch: int) -> list[int]:
    """A tensor, tuple or list of lengths as Python ints, checked to be one per sample."""
    if isinstance(lengths, Tensor):
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex:
            raise runtime_error(f"{name} must be integral, got dtype {lengths.dtype.name}")
        values = E.reshape(lengths, (-1,)).tolist()
    elif isinstance(lengths, int):
        values = [lengths]
    else:
        values = list(lengths)
    try:
        values = [operator.index(v) for v in values]
    except TypeError:
        raise runtime_error(f"{name} must be integral, got {values}") from None
    if len(values) != batch:
        raise runtime_error(
            f"{name} must be of size batch_size ({batch}), got {len(values)} values: {values}"
        )
    return values


def _check_lengths(name: str, values: list[int], most: int, bound: str) -> None:
    for value in values:
        if value < 0:
            raise runtime_error(f"Expected {name} to have value at least 0, but got value {value}")
        if value > most:
            raise runtime_error(
                f"Expected {name} to have value at most {most} ({bound}), but got value {value}"
            )


def _padded_targets(targets: Tensor, target_lengths: list[int], batch: int) -> Tensor:
    """targets as (N, S) class indices: a padded (N, S) tensor as given, or one row per sample
    cut from the concatenated 1-D form."""
    if targets.ndim == 2:
        if targets.shape[0] != batch:
            raise runtime_error(
                f"ctc_loss: padded targets must have batch_size ({batch}) rows, got targets of "
                f"shape {list(targets.shape)}"
            )
        _check_lengths("target_lengths", target_lengths, targets.shape[1],
                       f"the targets' padded length, targets shape {list(targets.shape)}")
        return E.cast(targets, int64)
    if targets.ndim != 1:
        raise runtime_error(
            f"ctc_loss: expected targets of 1 (concatenated) or 2 (N, S) dimensions, got "
            f"shape {list(targets.shape)}"
        )
    _check_lengths("target_lengths", target_lengths, targets.shape[0],
                   f"the concatenated targets' length {targets.shape[0]}")
    if sum(target_lengths) != targets.shape[0]:
        raise runtime_error(
            f"ctc_loss: concatenated targets must hold sum(target_lengths) = "
            f"{sum(target_lengths)} labels, got targets of shape {list(targets.shape)}"
        )
    longest = max(target_lengths, default=0)
    if targets.shape[0] == 0:
        return full((batch, longest), 0, dtype=int64, device=targets.device)
    starts = [sum(target_lengths[:n]) for n in range(batch)]
    index = E.add(E.unsqueeze(tensor(starts, dtype=int64, device=targets.device), 1),
                  E.unsqueeze(arange(longest, dtype=int64, device=targets.device), 0))
    index = E.clamp(index, max=targets.shape[0] - 1)  # past a row's end: any label, masked later
    return E.reshape(E.index_select(E.cast(targets, int64), 0, E.reshape(index, (-1,))),
                     (batch, longest))


def _check_labels(labels: Tensor, classes: int) -> None:
    """An index error for a label outside [0, classes), where torch reads past its input."""
    if hooks.active_trace is not None and hooks.trace_here() is not None:
        return  # a graph does not read values
    with no_grad():
        outside = E.logical_or(E.lt(labels, 0), E.ge(labels, classes))
        if bool(E.any(outside)):
            first = int(labels[outside][0])
            raise index_error(f"ctc_loss: target {first} is out of bounds (for {classes} classes)")


def _extended_labels(labels: Tensor, blank: int) -> Tensor:
    """(N, 2S + 1): blank, labels[:, 0], blank, labels[:, 1], ..., blank."""
    batch, longest = labels.shape
    blanks = full((batch, longest), blank, dtype=int64, device=labels.device)
    pairs = E.reshape(E.stack([blanks, labels], 2), (batch, 2 * longest))
    return E.cat([pairs, full((batch, 1), blank, dtype=int64, device=labels.device)], 1)


def _skips(extended: Tensor) -> Tensor:
    """(N, 2S + 1) bool: where the recursion may come from two positions back, skipping a
    blank: at a label that differs from the label before it (two blanks never differ)."""
    batch, positions = extended.shape
    device = extended.device
    if positions < 3:
        return full((batch, positions), False, device=device)
    differs = E.ne(extended[:, 2:], extended[:, :-2])
    return E.cat([full((batch, 2), False, device=device), differs], 1)


def _shifted(alpha: Tensor, by: int) -> Tensor:
    """alpha moved by positions to the right along dim 1, -inf coming in."""
    batch, positions = alpha.shape
    fill = full((batch, min(by, positions)), float("-inf"), dtype=alpha.dtype,
                device=alpha.device)
    return E.cat([fill, alpha[:, : positions - by]], 1) if positions > by else fill


def _logit_gradient(log_probs: Tensor, input_length: Tensor) -> Tensor:
    """(N,) zeros whose gradient is exp(log_probs) at each sample's time steps. torch's
    ctc_loss returns, as the gradient of log_probs, that of the logits under log_softmax: the
    true gradient plus this term. Through log_softmax the two agree (each step's exp sums to 1).
    """
    probs = E.exp(log_probs)
    zero = E.sub(probs, probs.detach())
    steps = E.lt(E.unsqueeze(arange(log_probs.shape[0], dtype=int64, device=log_probs.device), 1),
                 E.transpose(input_length, 0, 1))
    return E.sum(E.where(E.unsqueeze(steps, 2), zero, 0.0), (0, 2))


@float32_inputs
def ctc_loss(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Tensor | Sequence[int],
    target_lengths: Tensor | Sequence[int],
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> Tensor:
    """-log of the summed probability of every alignment of each target with its input, for
    log_probs (T, N, C) or (T, C), targets padded (N, S) or concatenated (sum of
    target_lengths), and one input and target length per sample.

    'mean' divides each loss by its target length (at least 1), then averages over the batch.
    An impossible alignment gives an infinite loss with a zero gradient (torch's is NaN);
    zero_infinity makes that loss zero. As torch's, the gradient of log_probs is the logits'
    gradient under log_softmax: the true one plus exp(log_probs) at each sample's time steps.
    """
    if reduction not in _REDUCTIONS:
        raise value_error(f"{reduction} is not a valid value for reduction")
    if not log_probs.dtype.is_floating_point:
        raise not_implemented_error(
            f'"ctc_loss" not implemented for {log_probs.dtype.name} log_probs (a floating '
            "dtype is expected)"
        )
    if log_probs.ndim not in (2, 3):
        raise runtime_error(
            f"ctc_loss: expected log_probs of shape (T, N, C) or (T, C), got shape "
            f"{list(log_probs.shape)}"
        )
    batched = log_probs.ndim == 3
    if not batched:
        # a 1-D target is the one sample's concatenated form: exactly its target length
        log_probs = E.unsqueeze(log_probs, 1)
    steps, batch, classes = log_probs.shape
    if not 0 <= blank < classes:
        raise runtime_error(f"blank must be in label range [0, {classes}), got blank {blank}")
    input_lengths = _lengths(input_lengths, "input_lengths", batch)
    target_lengths = _lengths(target_lengths, "target_lengths", batch)
    _check_lengths("input_lengths", input_lengths, steps,
                   f"T, log_probs shape {list(log_probs.shape)}")
    labels = _padded_targets(targets, target_lengths, batch)
    device, dtype = log_probs.device, log_probs.dtype
    target_length = tensor(target_lengths, dtype=int64, device=device)
    # positions past a sample's target length read as blanks, whatever the padding holds
    counted = E.lt(E.unsqueeze(arange(labels.shape[1], dtype=int64, device=device), 0),
                   E.unsqueeze(target_length, 1))
    labels = E.where(counted, labels, blank)
    _check_labels(labels, classes)

    extended = _extended_labels(labels, blank)
    positions = extended.shape[1]
    skips = _skips(extended)
    emissions = E.gather(log_probs, 2, E.expand(E.unsqueeze(extended, 0),
                                                (steps, batch, positions)))
    # before the first step: the empty prefix, probability 1 at position 0
    start = E.cat([full((batch, 1), 0.0, dtype=dtype, device=device),
                   full((batch, positions - 1), float("-inf"), dtype=dtype, device=device)], 1)
    input_length = E.unsqueeze(tensor(input_lengths, dtype=int64, device=device), 1)
    alpha = final = start
    for t in range(max(input_lengths, default=0)):
        paths = E.stack([alpha, _shifted(alpha, 1),
                         E.where(skips, _shifted(alpha, 2), float("-inf"))], 2)
        alpha = E.add(_log_sum_exp(paths, 2), emissions[t])
        if t + 1 in input_lengths:
            final = E.where(E.eq(input_length, t + 1), alpha, final)

    # the last label or the blank after it, at each sample's own target length
    last = E.unsqueeze(E.mul(target_length, 2), 1)
    ends = E.gather(final, 1, E.cat([last, E.clamp(E.sub(last, 1), min=0)], 1))
    ends = E.where(E.cat([full((batch, 1), True, device=device), E.gt(last, 0)], 1),
                   ends, float("-inf"))
    loss = E.neg(_log_sum_exp(ends, 1))
    if log_probs.requires_grad and is_grad_enabled():
        loss = E.where(E.isfinite(loss), E.add(loss, _logit_gradient(log_probs, input_length)),
                       loss)
    if zero_infinity:
        loss = E.where(E.isinf(loss), 0.0, loss)
    if reduction == "mean":
        return E.mean(E.div(loss, E.clamp(E.cast(target_length, dtype), min=1)))
    if reduction == "sum":
        return E.sum(loss)
    return loss if batched else E.squeeze(loss, 0)
