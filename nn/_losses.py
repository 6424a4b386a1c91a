"""The loss functions of ember.nn.functional, composed from primitives, with PyTorch's
reductions ('mean', 'sum', 'none'), legacy size_average/reduce arguments, and weighting rules.

Values that a `where` discards (the log-probability of an ignored target, log(0) in binary
cross entropy, t * log(t) at t = 0) are computed on safe inputs, so that their gradients,
multiplied by zero, stay zero instead of becoming NaN.
"""

from __future__ import annotations

import warnings

from .._tensor import Tensor, composites, hooks
from .._tensor import ops as E
from .._tensor.autocast import float32_inputs
from ..autograd.grad_mode import no_grad
from ..errors import index_error, runtime_error, value_error
from ._activations import log_softmax, logsigmoid

_REDUCTIONS = ("mean", "sum", "none")


def _legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """The reduction named by the deprecated size_average / reduce flags, when either is set."""
    if size_average is None and reduce is None:
        return reduction
    warnings.warn(
        "size_average and reduce args will be deprecated, please use reduction='"
        f"{_legacy_string(size_average, reduce)}' instead.",
        stacklevel=3,
    )
    return _legacy_string(size_average, reduce)


def _legacy_string(size_average: bool | None, reduce: bool | None) -> str:
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if size_average and reduce:
        return "mean"
    return "sum" if reduce else "none"


def _check_reduction(reduction: str, allowed=_REDUCTIONS) -> None:
    if reduction not in allowed:
        raise value_error(f"{reduction} is not a valid value for reduction")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    _check_reduction(reduction)
    if reduction == "mean":
        return E.mean(loss)
    if reduction == "sum":
        return E.sum(loss)
    return loss


def _weighted_reduce(loss: Tensor, weight: Tensor | None, input: Tensor, reduction: str) -> Tensor:
    """The plain reduction without a weight; with one (input's shape), sum(loss * weight) /
    sum(weight) for 'mean', as mse_loss and l1_loss weight."""
    if weight is None:
        return _reduce(loss, reduction)
    _check_weight_shape(weight, input)
    _check_reduction(reduction)
    loss = E.mul(loss, weight)
    if reduction == "mean":
        return E.div(E.sum(loss), E.sum(weight))
    return E.sum(loss) if reduction == "sum" else loss


def _broadcast_pair(input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if tuple(target.shape) != tuple(input.shape):
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}). This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=3,
        )
        return E.broadcast_tensors(input, target)
    return input, target


def _check_weight_shape(weight: Tensor, input: Tensor) -> None:
    if tuple(weight.shape) != tuple(input.shape):
        raise value_error("Weights and input must have the same size.")


# -- classification ----------------------------------------------------------------------------


def _class_weight_shape(ndim: int, classes: int) -> tuple:
    return (classes,) if ndim == 1 else (1, classes) + (1,) * (ndim - 2)


def _check_nll_shapes(input: Tensor, target: Tensor, weight: Tensor | None) -> None:
    if input.ndim < 1:
        raise value_error(f"Expected 1 or more dimensions (got {input.ndim})")
    if input.ndim == 1:
        if target.ndim != 0:
            raise runtime_error(
                f"0D or 1D target tensor expected, multi-target not supported (input "
                f"{list(input.shape)}, target {list(target.shape)})"
            )
    elif target.ndim == 0 or input.shape[0] != target.shape[0]:
        raise value_error(
            f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
            f"({target.shape[0] if target.ndim else 0})."
        )
    elif tuple(target.shape[1:]) != tuple(input.shape[2:]):
        raise runtime_error(
            f"size mismatch (got input: {list(input.shape)}, target: {list(target.shape)})"
        )
    if target.dtype.is_floating_point:
        raise runtime_error(
            f"expected scalar type Long but found {target.dtype.name} (nll_loss takes class "
            "indices)"
        )
    classes = input.shape[0 if input.ndim == 1 else 1]
    if weight is not None and (weight.ndim != 1 or weight.shape[0] != classes):
        raise runtime_error(
            f"weight tensor should be defined either for all {classes} classes or no classes "
            f"but got weight tensor of shape: {list(weight.shape)}"
        )


def _tracing() -> bool:
    """Whether this thread traces: a graph does not read values, so the checks of values
    (targets in range, probabilities in [0, 1]) are eager only, as in torch.compile."""
    return hooks.active_trace is not None and hooks.trace_here() is not None


def _check_class_targets(target: Tensor, classes: int, ignore_index: int) -> None:
    """PyTorch's IndexError for a class index outside [0, classes) (ignore_index aside)."""
    if _tracing():
        return
    with no_grad():
        outside = E.logical_and(
            E.ne(target, ignore_index), E.logical_or(E.lt(target, 0), E.ge(target, classes))
        )
        if bool(E.any(outside)):
            first = int(target[outside][0])
            raise index_error(f"Target {first} is out of bounds (for {classes} classes).")


def _target_weights(target: Tensor, valid: Tensor, weight: Tensor | None, dtype) -> Tensor:
    """weight[target] where the target counts, else 0 (1 where the target counts if no weight)."""
    if weight is None:
        return E.cast(valid, dtype)
    safe = E.where(valid, target, 0)
    picked = E.reshape(E.index_select(weight, 0, E.reshape(safe, (-1,))), tuple(target.shape))
    return E.where(valid, picked, 0.0)


@float32_inputs
def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """-weight[t] * input[t] for log-probabilities input (N, C, d1, ...) or (C,) and class
    indices target (N, d1, ...) or (); targets equal to ignore_index count for nothing.

    'mean' divides by the summed weights of the counted targets (NaN when none counts).
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _check_nll_shapes(input, target, weight)
    _check_class_targets(target, input.shape[0 if input.ndim == 1 else 1], ignore_index)
    unbatched = input.ndim == 1
    if unbatched:
        input, target = E.unsqueeze(input, 0), E.unsqueeze(target, 0)
    valid = E.ne(target, ignore_index)
    # ignored targets read class 0, whose value the where below then discards
    safe = E.where(valid, target, 0)
    picked = E.squeeze(E.gather(input, 1, E.unsqueeze(safe, 1)), 1)
    weights = _target_weights(target, valid, weight, input.dtype)
    loss = E.neg(picked) if weight is None else E.mul(E.neg(picked), weights)
    loss = E.where(valid, loss, 0.0)
    if reduction == "none":
        return E.squeeze(loss, 0) if unbatched else loss
    if reduction == "sum":
        return E.sum(loss)
    return E.div(E.sum(loss), E.sum(weights))


@float32_inputs
def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross entropy of logits input (N, C, d1, ...) or (C,) against class indices (an
    integer target, see nll_loss) or class probabilities (a float target shaped like input).

    label_smoothing mixes the target with the uniform distribution over the C classes;
    with class indices, the smoothing term is weighted and normalized like the main term.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise runtime_error(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if input.ndim < 1:
        raise value_error(f"Expected 1 or more dimensions (got {input.ndim})")
    class_dim = 0 if input.ndim == 1 else 1
    if (weight is None and label_smoothing == 0.0 and input.ndim == 2
            and not target.dtype.is_floating_point and reduction != "none"
            and _CROSS_ENTROPY.wants(input)):
        # fifteen small ops forward and as many backward: one compiled program and node
        _check_class_targets(target, input.shape[1], ignore_index)
        return _CROSS_ENTROPY(input, target, ignore_index, reduction)
    classes = input.shape[class_dim]
    logp = log_softmax(input, class_dim)
    if target.dtype.is_floating_point:
        return _cross_entropy_probabilities(
            logp, target, weight, reduction, label_smoothing, class_dim
        )
    loss = nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing == 0.0:
        return loss
    valid = E.ne(target, ignore_index)
    if weight is not None:
        logp = E.mul(logp, E.reshape(weight, _class_weight_shape(logp.ndim, classes)))
    smooth = E.where(valid, E.neg(E.sum(logp, class_dim)), 0.0)
    if reduction == "mean":
        denominator = _target_weights(target, valid, weight, logp.dtype)
        smooth = E.div(E.sum(smooth), E.sum(denominator))
    elif reduction == "sum":
        smooth = E.sum(smooth)
    # int(): a class count read under a symbolic trace becomes exact (a float reads it unseen)
    return E.add(E.mul(loss, 1.0 - label_smoothing),
                 E.mul(smooth, label_smoothing / int(classes)))


def _cross_entropy_probabilities(
    logp: Tensor,
    target: Tensor,
    weight: Tensor | None,
    reduction: str,
    label_smoothing: float,
    class_dim: int,
) -> Tensor:
    if tuple(target.shape) != tuple(logp.shape):
        raise runtime_error(
            f"cross_entropy: class-probability targets must have the input's shape "
            f"{list(logp.shape)}, got {list(target.shape)}"
        )
    classes = logp.shape[class_dim]
    if label_smoothing > 0.0:
        target = E.add(E.mul(target, 1.0 - label_smoothing), label_smoothing / int(classes))
    terms = E.mul(logp, target)
    if weight is not None:
        terms = E.mul(terms, E.reshape(weight, _class_weight_shape(logp.ndim, classes)))
    if reduction == "none":
        return E.neg(E.sum(terms, class_dim))
    total = E.neg(E.sum(terms))
    if reduction == "sum":
        return total
    # the mean is over the samples (every position but the class dim), not the weights
    return E.div(total, logp.numel() // classes if classes else 0)


def _clamped_log(x: Tensor) -> Tensor:
    """max(log(x), -100), PyTorch's bound on BCE's logs, with a zero gradient at x = 0."""
    positive = E.gt(x, 0)
    log = E.log(E.where(positive, x, 1.0))
    return E.where(positive, E.clamp(log, min=-100.0), -100.0)


def _check_probabilities(t: Tensor, name: str) -> None:
    """PyTorch's eager check that every element of t is in [0, 1] (NaN is not)."""
    if _tracing():
        return
    # a check of the values, not an op whose result anyone keeps: one pass on the array
    # (numpy's or cupy's) where four dispatches took ~15 us, a tenth of a small BCE's call
    data = t._data
    if not bool(((data >= 0) & (data <= 1)).all()):
        raise runtime_error(f"all elements of {name} should be between 0 and 1")


@float32_inputs
def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """-(t * log(x) + (1 - t) * log(1 - x)) for probabilities x, each log clamped to >= -100."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise value_error(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}) is deprecated. Please ensure they have the same size."
        )
    _check_probabilities(input, "input")
    _check_probabilities(target, "target")
    if weight is None and reduction != "none" and _BINARY_CROSS_ENTROPY.wants(input):
        # a dozen small ops forward and as many backward: one compiled program and node
        return _BINARY_CROSS_ENTROPY(input, target, reduction)
    loss = _binary_cross_entropy_terms(input, target)
    if weight is not None:
        loss = E.mul(loss, weight)
    return _reduce(loss, reduction)


def _binary_cross_entropy_terms(input: Tensor, target: Tensor) -> Tensor:
    return E.sub(
        E.mul(E.sub(target, 1), _clamped_log(E.sub(1, input))), E.mul(target, _clamped_log(input))
    )


_BINARY_CROSS_ENTROPY = composites.Composite(
    "binary_cross_entropy",
    lambda input, target, reduction: _reduce(_binary_cross_entropy_terms(input, target),
                                             reduction),
    min_elements=0)


@float32_inputs
def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """binary_cross_entropy(sigmoid(x), t) computed as (1 - t) * x - lw * logsigmoid(x),
    with lw = 1 + (pos_weight - 1) * t: finite for any logits."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise value_error(
            f"Target size ({target.shape}) must be the same as input size ({input.shape})"
        )
    log_sigmoid = logsigmoid(input)
    if pos_weight is not None:
        log_sigmoid = E.mul(log_sigmoid, E.add(E.mul(E.sub(pos_weight, 1), target), 1))
    loss = E.sub(E.mul(E.sub(1, target), input), log_sigmoid)
    if weight is not None:
        loss = E.mul(loss, weight)
    return _reduce(loss, reduction)


def _xlogy_self(t: Tensor) -> Tensor:
    """t * log(t), 0 where t == 0 (NaN for t < 0), with a finite gradient at 0."""
    zero = E.eq(t, 0)
    return E.where(zero, 0.0, E.mul(t, E.log(E.where(zero, 1.0, t))))


@float32_inputs
def kl_div(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:
    """KL(target || exp(input)) pointwise: target * (log(target) - input), for log-probability
    input; target is a probability, or a log-probability with log_target.

    'batchmean' divides the sum by the batch size (the true KL divergence per sample);
    'mean' divides by the number of elements, and warns.
    """
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction)
    elif reduction == "mean":
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support "
            "size.'batchmean' divides only by the batch size, and aligns with the KL div math "
            "definition.'mean' will be changed to behave the same as 'batchmean' in the next "
            "major release.",
            stacklevel=2,
        )
    _check_reduction(reduction, _REDUCTIONS + ("batchmean",))
    if log_target:
        loss = E.mul(E.exp(target), E.sub(target, input))
    else:
        loss = E.sub(_xlogy_self(target), E.mul(target, input))
    if reduction == "batchmean":
        total = E.sum(loss)
        return E.div(total, input.shape[0]) if input.ndim else total
    return _reduce(loss, reduction)


# -- regression ------------------------------------------------------------------------------


@float32_inputs
def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """(input - target)^2; a weight (input's shape) makes 'mean' sum(w * loss) / sum(w)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    expanded_input, expanded_target = _broadcast_pair(input, target)
    diff = E.sub(expanded_input, expanded_target)
    loss = E.mul(diff, diff)
    return _weighted_reduce(loss, weight, input, reduction)


@float32_inputs
def l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """|input - target|; a weight (input's shape) makes 'mean' sum(w * loss) / sum(w)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    expanded_input, expanded_target = _broadcast_pair(input, target)
    loss = E.abs(E.sub(expanded_input, expanded_target))
    return _weighted_reduce(loss, weight, input, reduction)


@float32_inputs
def smooth_l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Tensor:
    """0.5 * d^2 / beta where |d| < beta, else |d| - 0.5 * beta, for d = input - target."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if beta < 0:
        raise runtime_error("smooth_l1_loss does not support negative values for beta.")
    if beta == 0.0:
        return l1_loss(input, target, reduction=reduction)
    expanded_input, expanded_target = _broadcast_pair(input, target)
    diff = E.sub(expanded_input, expanded_target)
    distance = E.abs(diff)
    loss = E.where(
        E.lt(distance, beta),
        E.div(E.mul(E.mul(diff, diff), 0.5), beta),
        E.sub(distance, 0.5 * beta),
    )
    return _reduce(loss, reduction)


@float32_inputs
def huber_loss(
    input: Tensor,
    target: Tensor,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: Tensor | None = None,
) -> Tensor:
    """0.5 * d^2 where |d| < delta, else delta * (|d| - 0.5 * delta), for d = input - target;
    a weight (input's shape) multiplies the loss before the plain reduction."""
    if delta <= 0:
        raise runtime_error("huber_loss does not support non-positive values for delta.")
    expanded_input, expanded_target = _broadcast_pair(input, target)
    diff = E.sub(expanded_input, expanded_target)
    distance = E.abs(diff)
    loss = E.where(
        E.lt(distance, delta),
        E.mul(E.mul(diff, diff), 0.5),
        E.mul(E.sub(distance, 0.5 * delta), delta),
    )
    if weight is not None:
        _check_weight_shape(weight, input)
        loss = E.mul(loss, weight)
    return _reduce(loss, reduction)


def _class_index_cross_entropy(input, target, ignore_index, reduction):
    return nll_loss(log_softmax(input, 1), target, ignore_index=ignore_index,
                    reduction=reduction)


_CROSS_ENTROPY = composites.Composite("cross_entropy", _class_index_cross_entropy,
                                      min_elements=0)
