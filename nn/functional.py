"""ember.nn.functional: the functional forms of the layers, composed from primitives.

Nothing here calls numpy or adds an op: every function is written in ember ops, so it is
differentiable, traceable and fusable for free, and runs on every device the primitives run
on. The activations and the softmax family live in nn/_activations.py, the losses in
nn/_losses.py and nn/_ctc_loss.py; all are re-exported here, as torch.nn.functional
spells them.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Sequence
from functools import lru_cache

from .._tensor import Tensor, autocast, composites, dispatch, hooks
from .._tensor import ops as E
from .._tensor.factories import arange, full, ones, tensor, zeros
from .._tensor.inplace import overwrite
from .._tensor.ops.distance import cosine_similarity, pairwise_distance  # noqa: F401
from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..errors import EmberNotImplementedError, runtime_error, type_error, type_name, value_error
from ..ir.dtypes import bool_, float32, float64
from ..ir.schema import broadcast_shapes
from ._activations import (  # noqa: F401  (re-exported)
    _maybe_inplace,
    celu,
    elu,
    gelu,
    glu,
    hardsigmoid,
    hardswish,
    hardtanh,
    leaky_relu,
    log_softmax,
    logsigmoid,
    mish,
    prelu,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    softmax,
    softmin,
    softplus,
    softsign,
    tanh,
)
from ._conv import (  # noqa: F401  (re-exported)
    conv3d,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
)
from ._ctc_loss import ctc_loss  # noqa: F401  (re-exported)
from ._grid_sample import affine_grid, grid_sample  # noqa: F401  (re-exported)
from ._interpolate import (  # noqa: F401  (re-exported)
    interpolate,
    upsample,
    upsample_bilinear,
    upsample_nearest,
)
from ._losses import (  # noqa: F401  (re-exported)
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from ._pooling import (  # noqa: F401  (re-exported)
    _max_pool_with_indices,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    adaptive_max_pool3d,
    avg_pool3d,
    lp_pool1d,
    lp_pool2d,
    lp_pool3d,
    max_pool3d,
    max_unpool1d,
    max_unpool2d,
    max_unpool3d,
)
from ._rearrange import (  # noqa: F401  (re-exported)
    fold,
    pixel_shuffle,
    pixel_unshuffle,
    unfold,
)

_IntOrInts = int | Sequence[int]
_OutputSize = int | None | Sequence[int | None]

# -- linear and convolution ------------------------------------------------------------------


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input @ weight.T + bias."""
    for name, value in (("input", input), ("weight", weight)):
        if not isinstance(value, Tensor):
            raise type_error(f"linear(): argument '{name}' must be Tensor, not "
                             f"{type_name(value)}")
    if weight.ndim == 2 and (bias is None or bias.shape == weight.shape[:1]):
        return dispatch("linear", (input, weight) if bias is None else (input, weight, bias))
    if autocast.enabled:
        input, weight, bias = autocast.lower_precision_inputs(
            (input, weight, bias), input._device.type)
    out = E.matmul(input, weight)
    return out if bias is None else E.add(out, bias)


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x1^T A x2 + b for each output feature: (..., i) x (o, i, j) x (..., j) -> (..., o)."""
    if (weight.ndim != 3 or input1.shape[-1:] != weight.shape[1:2]
            or input2.shape[-1:] != weight.shape[2:3]
            or input1.shape[:-1] != input2.shape[:-1]):
        raise runtime_error(
            f"bilinear: expected input1 (..., {'i' if weight.ndim != 3 else weight.shape[1]}) "
            f"and input2 (..., {'j' if weight.ndim != 3 else weight.shape[2]}) with the same "
            f"leading dims and a 3-D weight (out, i, j); got input1 {tuple(input1.shape)}, "
            f"input2 {tuple(input2.shape)}, weight {tuple(weight.shape)}"
        )
    left = E.matmul(E.unsqueeze(E.unsqueeze(input1, -2), -3), weight)
    out = E.matmul(left, E.unsqueeze(E.unsqueeze(input2, -2), -1))
    out = E.squeeze(E.squeeze(out, -1), -1)
    return out if bias is None else E.add(out, bias)


def _single(value: _IntOrInts, name: str) -> int:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 1:
            raise value_error(f"{name} must be an int or a 1-tuple, got {tuple(value)}")
        value = value[0]
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise type_error(f"{name} must be an int or a 1-tuple of ints, got "
                         f"{type(value).__name__}: {value!r}")
    return operator.index(value)


def conv1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: _IntOrInts = 1,
    padding: _IntOrInts | str = 0,
    dilation: _IntOrInts = 1,
    groups: int = 1,
) -> Tensor:
    """1-d convolution of (N, C, L) or (C, L) input: conv2d over a height of 1."""
    if input.ndim not in (2, 3):
        raise runtime_error(
            f"Expected 2D (unbatched) or 3D (batched) input to conv1d, but got input of size: "
            f"{list(input.shape)}"
        )
    batched = input.ndim == 3
    x = E.unsqueeze(input if batched else E.unsqueeze(input, 0), 2)
    if not isinstance(padding, str):
        padding = (0, _single(padding, "padding"))
    out = E.conv2d(
        x,
        E.unsqueeze(weight, 2),
        bias,
        (1, _single(stride, "stride")),
        padding,
        (1, _single(dilation, "dilation")),
        groups,
    )
    out = E.squeeze(out, 2)
    return out if batched else E.squeeze(out, 0)


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: _IntOrInts = 1,
    padding: _IntOrInts | str = 0,
    dilation: _IntOrInts = 1,
    groups: int = 1,
) -> Tensor:
    """2-d convolution of (N, C, H, W) or (C, H, W) input; padding may be 'same' or 'valid'."""
    if input.ndim not in (3, 4):
        raise runtime_error(
            f"Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: "
            f"{list(input.shape)}"
        )
    return E.conv2d(input, weight, bias, stride, padding, dilation, groups)


# -- pooling ---------------------------------------------------------------------------------


def max_pool2d(
    input: Tensor,
    kernel_size: _IntOrInts,
    stride: _IntOrInts | None = None,
    padding: _IntOrInts = 0,
    dilation: _IntOrInts = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """The max of each window of (N, C, H, W) or (C, H, W) input."""
    if return_indices:
        return _max_pool_with_indices(2, input, kernel_size, stride, padding, dilation, ceil_mode,
                                     True)
    return E.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode)


def avg_pool2d(
    input: Tensor,
    kernel_size: _IntOrInts,
    stride: _IntOrInts | None = None,
    padding: _IntOrInts = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """The mean of each window of (N, C, H, W) or (C, H, W) input."""
    return E.avg_pool2d(
        input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )


def _check_1d_pool_input(name: str, input: Tensor) -> None:
    if input.ndim not in (2, 3):
        raise runtime_error(
            f"{name}: Expected 2D or 3D (batch mode) tensor for input, but got {list(input.shape)}"
        )


def max_pool1d(
    input: Tensor,
    kernel_size: _IntOrInts,
    stride: _IntOrInts | None = None,
    padding: _IntOrInts = 0,
    dilation: _IntOrInts = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """The max of each window of (N, C, L) or (C, L) input."""
    _check_1d_pool_input("max_pool1d", input)
    if return_indices:
        return _max_pool_with_indices(1, input, kernel_size, stride, padding, dilation, ceil_mode,
                                     True)
    kernel = _single(kernel_size, "kernel_size")
    step = kernel if stride is None or stride == () else _single(stride, "stride")
    out = E.max_pool2d(
        E.unsqueeze(input, -2),
        (1, kernel),
        (1, step),
        (0, _single(padding, "padding")),
        (1, _single(dilation, "dilation")),
        ceil_mode,
    )
    return E.squeeze(out, -2)


def avg_pool1d(
    input: Tensor,
    kernel_size: _IntOrInts,
    stride: _IntOrInts | None = None,
    padding: _IntOrInts = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """The mean of each window of (N, C, L) or (C, L) input."""
    _check_1d_pool_input("avg_pool1d", input)
    kernel = _single(kernel_size, "kernel_size")
    step = kernel if stride is None or stride == () else _single(stride, "stride")
    out = E.avg_pool2d(
        E.unsqueeze(input, -2),
        (1, kernel),
        (1, step),
        (0, _single(padding, "padding")),
        ceil_mode,
        count_include_pad,
    )
    return E.squeeze(out, -2)


@lru_cache(maxsize=256)
def _adaptive_weights(size: int, out_size: int) -> tuple:
    """The (out_size, size) averaging matrix of PyTorch's adaptive bins, as nested tuples."""
    rows = []
    for i in range(out_size):
        start = (i * size) // out_size
        end = -((-(i + 1) * size) // out_size)
        rows.append(tuple(1.0 / (end - start) if start <= j < end else 0.0 for j in range(size)))
    return tuple(rows)


def _adaptive_avg(x: Tensor, dim: int, out_size: int) -> Tensor:
    """Adaptive average pooling of x along one (negative) dim."""
    size = int(x.shape[dim])  # the bins depend on it: exact under a trace
    if out_size <= 0:
        raise runtime_error(f"adaptive pooling: output size must be positive, got {out_size}")
    if size % out_size == 0:
        # equal, disjoint bins: a reshape and a mean
        shape = tuple(x.shape)
        d = x.ndim + dim
        split = shape[:d] + (out_size, size // out_size) + shape[d + 1 :]
        return E.mean(E.reshape(x, split), d + 1)
    # bins of unequal or overlapping extent: one matmul with the constant averaging matrix
    weights = tensor(_adaptive_weights(size, out_size), dtype=x.dtype, device=x.device)
    if dim == -1:
        return E.matmul(x, E.mT(weights))
    return E.matmul(weights, x)


def _output_sizes(output_size: _OutputSize, input: Tensor, n: int) -> tuple:
    sizes = (
        (output_size,) * n
        if output_size is None or isinstance(output_size, int)
        else tuple(output_size)
    )
    if len(sizes) != n:
        raise value_error(f"output_size must be an int or a {n}-tuple, got {output_size}")
    spatial = tuple(input.shape[-n:])
    return tuple(s if o is None else int(o) for o, s in zip(sizes, spatial))


def adaptive_avg_pool1d(input: Tensor, output_size: int | Sequence[int]) -> Tensor:
    """Average pooling of (N, C, L) or (C, L) input to output_size bins."""
    _check_1d_pool_input("adaptive_avg_pool1d", input)
    (size,) = _output_sizes(output_size, input, 1)
    return _adaptive_avg(input, -1, size)


def adaptive_avg_pool2d(input: Tensor, output_size: _OutputSize) -> Tensor:
    """Average pooling of (N, C, H, W) or (C, H, W) input to output_size bins (None keeps a
    dimension); bin i spans [floor(i * in / out), ceil((i + 1) * in / out))."""
    if input.ndim not in (3, 4):
        raise runtime_error(
            f"adaptive_avg_pool2d(): Expected 3D or 4D tensor, but got {list(input.shape)}"
        )
    height, width = _output_sizes(output_size, input, 2)
    if (height, width) == (1, 1):
        # global pooling: one mean over the plane, where a mean per dim took two ops and
        # their backwards (ResNet's 7x7 -> 1 at batch 16, 512 channels: 1.3 ms forward and
        # backward, 0.35 this way, PyTorch 0.13)
        return E.mean(input, (-2, -1), True)
    return _adaptive_avg(_adaptive_avg(input, -2, height), -1, width)


# -- dropout ---------------------------------------------------------------------------------


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) (training)."""
    if not 0.0 <= p <= 1.0:
        raise value_error(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0:
        return input
    return _maybe_inplace(input, lambda x: E.dropout(x, p, True), inplace)


def _feature_dropout(input: Tensor, p: float, training: bool, inplace: bool) -> Tensor:
    """Zero whole channels: one keep draw per (sample, channel) of (N, C, *) input."""
    if not 0.0 <= p <= 1.0:
        raise value_error(f"dropout probability has to be between 0 and 1, but got {p}")
    if input.ndim < 2:
        raise runtime_error(
            f"Feature dropout requires at least 2 dimensions in the input, got shape "
            f"{list(input.shape)}"
        )
    if not training or p == 0:
        return input
    mask_shape = tuple(input.shape[:2]) + (1,) * (input.ndim - 2)
    if p == 1:
        mask = zeros(mask_shape, dtype=input.dtype, device=input.device)
    else:
        keep = full(mask_shape, 1 - p, dtype=input.dtype, device=input.device)
        mask = E.mul(E.bernoulli(keep), 1.0 / (1 - p))
    return _maybe_inplace(input, lambda x: E.mul(x, mask), inplace)


def _unbatched_feature_dropout(input, p, training, inplace, batched: bool) -> Tensor:
    if batched:
        return _feature_dropout(input, p, training, inplace)
    def drop(x):
        return E.squeeze(_feature_dropout(E.unsqueeze(x, 0), p, training, False), 0)

    return _maybe_inplace(input, drop, inplace and training and p > 0)


def dropout1d(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> Tensor:
    """Zero whole channels of (N, C, L) or unbatched (C, L) input, scaling the rest by
    1 / (1 - p) (training)."""
    if input.ndim not in (2, 3):
        raise runtime_error(
            f"dropout1d: Expected 2D or 3D input, but received a {input.ndim}D input "
            f"(shape {list(input.shape)}). Note that dropout1d exists to provide channel-wise "
            "dropout on inputs with 1 spatial dimension, a channel dimension, and an optional "
            "batch dimension (i.e. 2D or 3D inputs)."
        )
    return _unbatched_feature_dropout(input, p, training, inplace, input.ndim == 3)


def dropout2d(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> Tensor:
    """Zero whole channels of (N, C, H, W) input. As PyTorch does, a 3-D input is read as
    (N, C, L) and any other rank as (N, C, *), with a warning."""
    if input.ndim not in (3, 4):
        warnings.warn(
            f"dropout2d: Received a {input.ndim}-D input to dropout2d, which is deprecated and "
            "will result in an error in a future release. To retain the behavior and silence "
            "this warning, please use dropout instead. Note that dropout2d exists to provide "
            "channel-wise dropout on inputs with 2 spatial dimensions, a channel dimension, and "
            "an optional batch dimension (i.e. 3D or 4D inputs).",
            stacklevel=2,
        )
    elif input.ndim == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D "
            "dropout behavior is desired - input is interpreted as shape (N, C, L), where C is "
            "the channel dim. To maintain the 1D channel-wise dropout behavior, please switch to "
            "using dropout1d instead.",
            stacklevel=2,
        )
    return _feature_dropout(input, p, training, inplace)


def dropout3d(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> Tensor:
    """Zero whole channels of (N, C, D, H, W) or unbatched (C, D, H, W) input."""
    if input.ndim not in (4, 5):
        warnings.warn(
            f"dropout3d: Received a {input.ndim}-D input to dropout3d, which is deprecated and "
            "will result in an error in a future release. To retain the behavior and silence "
            "this warning, please use dropout instead. Note that dropout3d exists to provide "
            "channel-wise dropout on inputs with 3 spatial dimensions, a channel dimension, and "
            "an optional batch dimension (i.e. 4D or 5D inputs).",
            stacklevel=2,
        )
    return _unbatched_feature_dropout(input, p, training, inplace, input.ndim != 4)


# -- normalization ---------------------------------------------------------------------------


def _standardize(x: Tensor, dims, eps: float) -> Tensor:
    """(x - mean) / sqrt(biased var + eps) over dims."""
    centered = E.sub(x, E.mean(x, dims, keepdim=True))
    var = E.mean(E.mul(centered, centered), dims, keepdim=True)
    return E.mul(centered, E.rsqrt(E.add(var, eps)))


def _affine(out: Tensor, weight: Tensor | None, bias: Tensor | None, shape=None) -> Tensor:
    if weight is not None:
        out = E.mul(out, weight if shape is None else E.reshape(weight, shape))
    if bias is not None:
        out = E.add(out, bias if shape is None else E.reshape(bias, shape))
    return out


def layer_norm(
    input: Tensor,
    normalized_shape,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Standardize over the trailing normalized_shape dims, then scale and shift."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or input.ndim < k or tuple(input.shape[input.ndim - k :]) != shape:
        raise runtime_error(
            f"Given normalized_shape={list(shape)}, expected input with shape "
            f"[*, {', '.join(str(d) for d in shape)}], but got input of size"
            f"{list(input.shape)}"
        )
    if _LAYER_NORM.wants(input):
        return _LAYER_NORM(input, weight, bias, k, eps)  # one compiled kernel (_composites.py)
    return _affine(_standardize(input, tuple(range(-k, 0)), eps), weight, bias)


_LAYER_NORM = composites.Composite(
    "layer_norm", lambda x, w, b, k, eps: _affine(_standardize(x, tuple(range(-k, 0)), eps), w, b))


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Standardize each group of channels of (N, C, *) input, then scale and shift per channel."""
    if input.ndim < 2:
        raise runtime_error(
            f"Expected at least 2 dimensions for input tensor but received {input.ndim}"
        )
    n, c = input.shape[:2]
    if num_groups <= 0 or c % num_groups:
        raise runtime_error(
            f"Expected number of channels in input to be divisible by num_groups, but got input "
            f"of shape {list(input.shape)} and num_groups={num_groups}"
        )
    per_group = (c // num_groups) * math.prod(input.shape[2:])
    grouped = E.reshape(input, (n, num_groups, per_group))
    out = E.reshape(_standardize(grouped, -1, eps), tuple(input.shape))
    return _affine(out, weight, bias, (1, c) + (1,) * (input.ndim - 2))


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float | Tensor = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Standardize each channel (dim 1) of (N, C, *) input.

    In training, with the batch's mean and biased variance; running_mean and running_var,
    when given, are updated in place (without grad) with the momentum and the batch's
    unbiased variance, as PyTorch does. Otherwise with the running statistics. momentum may
    be a 0-dim tensor (BatchNorm's cumulative average, 1 / num_batches_tracked).
    """
    if input.ndim < 2:
        raise runtime_error(
            f"batch_norm: expected an input of at least 2 dims (N, C, ...), got {list(input.shape)}"
        )
    c = input.shape[1]
    shape = (1, c) + (1,) * (input.ndim - 2)
    if not training:
        if running_mean is None or running_var is None:
            raise runtime_error("running_mean and running_var must be defined in evaluation mode")
        if eps < 0:
            raise value_error(f"batch_norm eps must be non-negative, but got {eps}")
        centered = E.sub(input, E.reshape(running_mean, shape))
        out = E.mul(centered, E.rsqrt(E.add(E.reshape(running_var, shape), eps)))
        return _affine(out, weight, bias, shape)
    count = input.numel() // c if c else 0
    if count == 0:  # an empty batch: nothing to standardize, the running stats stay
        return _affine(input, weight, bias, shape)
    if count == 1:
        raise value_error(
            f"Expected more than 1 value per channel when training, got input size "
            f"{list(input.shape)}"
        )
    if eps <= 0:
        raise value_error(f"batch_norm eps must be positive during training, but got {eps}")
    if _one_op_batch_norm(input, (weight, bias, running_mean, running_var), momentum):
        # the eager call as one op: statistics, output and running-stat update in one kernel
        out, _mean, _invstd, new_mean, new_var = dispatch(
            "batch_norm_train", (input, weight, bias, running_mean, running_var),
            {"eps": eps, "momentum": momentum})
        overwrite(running_mean, new_mean)  # copy_ under no_grad, without its dispatches
        overwrite(running_var, new_var)
        return out
    if _BATCH_NORM.wants(input):  # one compiled program and autograd node (_composites.py)
        out, mean, squares = _BATCH_NORM(input, weight, bias, eps, count)
    else:
        out, mean, squares = _batch_norm_train(input, weight, bias, eps, count)
    with no_grad():
        keep = 1 - momentum
        if running_mean is not None:
            running_mean.copy_(
                E.add(E.mul(E.reshape(mean, (c,)), momentum), E.mul(running_mean, keep))
            )
        if running_var is not None:
            unbiased = E.div(E.reshape(squares, (c,)), count - 1)
            running_var.copy_(E.add(E.mul(unbiased, momentum), E.mul(running_var, keep)))
    return out


def _one_op_batch_norm(input, per_channel: tuple, momentum) -> bool:
    """Whether an eager training call runs as the batch_norm_train op (ir/ops/norm.py): not
    under a trace (which records the primitives, for fusion), with an affine weight and bias
    and running statistics of the input's float dtype and device, and a number momentum."""
    if hooks.active_trace is not None or isinstance(momentum, Tensor):
        return False
    dtype, device, channels = input.dtype, input.device, (input.shape[1],)
    return dtype in (float32, float64) and all(
        isinstance(t, Tensor) and t.dtype is dtype and t.device == device
        and tuple(t.shape) == channels for t in per_channel)


def _batch_norm_train(input, weight, bias, eps: float, count: int):
    """Training batch norm: (the normalized, scaled and shifted input, the batch's mean, the
    sums of squared deviations), the last two per channel (keepdim) for the running stats."""
    dims = (0,) + tuple(range(2, input.ndim))
    shape = (1, input.shape[1]) + (1,) * (input.ndim - 2)
    mean = E.mean(input, dims, keepdim=True)
    centered = E.sub(input, mean)
    squares = E.sum(E.mul(centered, centered), dims, keepdim=True)
    out = E.mul(centered, E.rsqrt(E.add(E.div(squares, count), eps)))
    return _affine(out, weight, bias, shape), mean, squares


_BATCH_NORM = composites.Composite("batch_norm", _batch_norm_train)


def instance_norm(
    input: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Standardize each channel of each sample of (N, C, *) input over its spatial dims.

    With use_input_stats, running_mean and running_var, when given, are updated in place
    (without grad) with the batch average of the instances' mean and unbiased variance, as
    PyTorch does; otherwise the running statistics standardize the input.
    """
    if input.ndim < 3:
        raise value_error(
            f"instance_norm: expected an input of at least 3 dims (N, C, *), got "
            f"{list(input.shape)}"
        )
    c = input.shape[1]
    shape = (1, c) + (1,) * (input.ndim - 2)
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise runtime_error(
                "Expected running_mean and running_var to be defined when use_input_stats is "
                "false"
            )
        centered = E.sub(input, E.reshape(running_mean, shape))
        out = E.mul(centered, E.rsqrt(E.add(E.reshape(running_var, shape), eps)))
        return _affine(out, weight, bias, shape)
    count = math.prod(input.shape[2:])
    if count <= 1:
        raise value_error(
            f"Expected more than 1 spatial element when training, got input size "
            f"{list(input.shape)}"
        )
    dims = tuple(range(2, input.ndim))
    mean = E.mean(input, dims, keepdim=True)
    centered = E.sub(input, mean)
    squares = E.sum(E.mul(centered, centered), dims, keepdim=True)
    out = E.mul(centered, E.rsqrt(E.add(E.div(squares, count), eps)))
    with no_grad():
        keep = 1 - momentum
        n = input.shape[0]
        if running_mean is not None:
            batch_mean = E.mean(E.reshape(mean, (n, c)), 0)
            running_mean.copy_(E.add(E.mul(batch_mean, momentum), E.mul(running_mean, keep)))
        if running_var is not None:
            unbiased = E.mean(E.reshape(E.div(squares, count - 1), (n, c)), 0)
            running_var.copy_(E.add(E.mul(unbiased, momentum), E.mul(running_var, keep)))
    return _affine(out, weight, bias, shape)


def _vector_norm(input: Tensor, p: float, dim, keepdim: bool) -> Tensor:
    """The p-norm along dim, with a zero (not NaN) gradient where the norm is 0."""
    if p == math.inf:
        return E.amax(E.abs(input), dim, keepdim)
    if p == -math.inf:
        return E.amin(E.abs(input), dim, keepdim)
    if p == 0:
        return E.cast(E.sum(E.ne(input, 0), dim, keepdim), input.dtype)
    if p == 1:
        return E.sum(E.abs(input), dim, keepdim)
    total = E.sum(E.mul(input, input) if p == 2 else E.pow(E.abs(input), p), dim, keepdim)
    # the root's derivative is infinite at 0: route zero totals around it (only those: a NaN
    # total must stay NaN)
    zero = E.eq(total, 0)
    safe = E.where(zero, 1.0, total)
    root = E.sqrt(safe) if p == 2 else E.pow(safe, 1.0 / p)
    return E.where(zero, 0.0, root)


def normalize(
    input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: Tensor | None = None
) -> Tensor:
    """input / max(||input||_p, eps) along dim."""
    result = E.div(input, E.clamp(_vector_norm(input, p, dim, True), min=eps))
    if out is None:
        return result
    return out.copy_(result)


# -- embedding, one_hot and pad --------------------------------------------------------------


def _row_counts(index: Tensor, rows: int, dtype) -> Tensor:
    """How many times each of `rows` rows appears in the flat index."""
    flat = E.reshape(index, (-1,))
    return E.index_add(
        zeros(rows, dtype=dtype, device=index.device),
        0,
        flat,
        ones(flat.shape[0], dtype=dtype, device=index.device),
    )


def _embedding_renorm_(weight: Tensor, input: Tensor, max_norm: float, norm_type: float) -> None:
    with no_grad():
        used = E.gt(_row_counts(input, weight.shape[0], weight.dtype), 0)
        norms = _vector_norm(weight, norm_type, 1, False)
        scale = E.where(
            E.logical_and(used, E.gt(norms, max_norm)), E.div(max_norm, E.add(norms, 1e-7)), 1.0
        )
        weight.mul_(E.unsqueeze(scale, 1))


def embedding(
    input: Tensor,
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    """Rows of weight picked by the integer input: output shape input.shape + (dim,).

    Lookups of padding_idx give no gradient to that row; max_norm renormalizes (in place,
    without grad) the looked-up rows whose norm exceeds it; scale_grad_by_freq divides each
    row's gradient by how often the row appears in input.
    """
    if sparse:
        raise EmberNotImplementedError(
            "embedding(sparse=True): ember has no sparse gradients; use sparse=False"
        )
    if weight.ndim != 2:
        raise runtime_error(f"'weight' must be 2-D, got {list(weight.shape)}")
    rows = weight.shape[0]
    if padding_idx is not None:
        if not -rows <= padding_idx < rows:
            raise value_error("Padding_idx must be within num_embeddings")
        padding_idx %= rows
    if max_norm is not None:
        _embedding_renorm_(weight, input, max_norm, norm_type)
    out = E.embedding(input, weight)
    if padding_idx is None and not scale_grad_by_freq:
        return out
    frozen = out.detach()
    if not scale_grad_by_freq:
        return E.where(E.unsqueeze(E.ne(input, padding_idx), -1), out, frozen)
    counts = E.index_select(_row_counts(input, rows, weight.dtype), 0, E.reshape(input, (-1,)))
    scale = E.reshape(E.reciprocal(counts), tuple(input.shape) + (1,))
    if padding_idx is not None:
        scale = E.where(E.unsqueeze(E.ne(input, padding_idx), -1), scale, 0.0)
    # the value is exactly `out` (out - frozen is 0); the gradient is scaled
    return E.add(frozen, E.mul(E.sub(out, frozen), scale))


_BAG_MODES = ("sum", "mean", "max")


def _bag_index(input: Tensor, offsets: Tensor | None, include_last_offset: bool):
    """(flat indices, the bag of each, the number of bags) for embedding_bag's two input
    forms; an index past the last bag (after include_last_offset's end) gets bag `bags`."""
    if input.ndim == 2:
        if offsets is not None:
            raise value_error(
                "if input is 2D, then offsets has to be None, as input is treated is a "
                "mini-batch of fixed length sequences. However, found offsets of shape "
                f"{list(offsets.shape)}"
            )
        bags, length = input.shape
        bag_of = E.reshape(
            E.expand(E.unsqueeze(arange(bags, device=input.device), 1), bags, length), (-1,)
        )
        return E.reshape(input, (-1,)), bag_of, bags
    if input.ndim != 1:
        raise value_error(
            f"input has to be 1D or 2D Tensor, but got Tensor of dimension {input.ndim} "
            f"(shape {list(input.shape)})"
        )
    if offsets is None:
        raise value_error("offsets has to be a 1D Tensor but got None")
    if offsets.ndim != 1:
        raise value_error(
            f"offsets has to be a 1D Tensor, but got Tensor of dimension {offsets.ndim}"
        )
    if offsets.dtype.is_floating_point or offsets.dtype is bool_:
        raise runtime_error(
            f"embedding_bag(): offsets must be int64 or int32, got {offsets.dtype.name}"
        )
    count = input.shape[0]
    bags = offsets.shape[0] - 1 if include_last_offset else offsets.shape[0]
    if bags < 0:
        raise value_error("embedding_bag(): include_last_offset needs at least one offset")
    if offsets.shape[0]:
        first, last = int(offsets[0]), int(E.amax(offsets))
        if first != 0:
            raise runtime_error(
                "offsets[0] has to be 0, i.e., the first sequence in the mini-batch has to "
                f"start from position 0. However, got {first}"
            )
        if last > count:
            raise runtime_error(
                f"offsets[-1] can not be greater than input's length {count} but got "
                f"offsets[-1] of {last}"
            )
        if offsets.shape[0] > 1 and bool(E.any(E.lt(offsets[1:], offsets[:-1]))):
            raise runtime_error(
                f"embedding_bag(): offsets must be non-decreasing, got {offsets.tolist()}"
            )
    # a 1 where each bag starts; its running sum numbers the bag of every index
    starts = E.index_add(
        zeros(count + 1, dtype=offsets.dtype, device=input.device),
        0,
        offsets,
        ones(offsets.shape[0], dtype=offsets.dtype, device=input.device),
    )
    bag_of = E.sub(E.cumsum(starts, 0)[:count], 1)
    return input, E.where(E.lt(bag_of, 0), bags, bag_of), bags


def _embedding_bag(
    input: Tensor,
    weight: Tensor,
    offsets: Tensor | None,
    max_norm: float | None,
    norm_type: float,
    scale_grad_by_freq: bool,
    mode: str,
    sparse: bool,
    per_sample_weights: Tensor | None,
    include_last_offset: bool,
    padding_idx: int | None,
):
    """embedding_bag's output, with the flat indices, the bag each index was summed into
    (`bags` for one left out) and the number of indices each bag holds."""
    if weight.ndim != 2:
        raise value_error(
            f"weight has to be a 2D Tensor, but got Tensor of dimension {weight.ndim} "
            f"(shape {list(weight.shape)})"
        )
    if input.dtype.is_floating_point or input.dtype is bool_:
        raise runtime_error(
            "embedding_bag(): input must hold indices of dtype int64 or int32, got "
            f"{input.dtype.name}"
        )
    if mode not in _BAG_MODES:
        raise value_error(f"mode has to be one of sum, mean or max, got {mode!r}")
    if sparse:
        raise EmberNotImplementedError(
            "embedding_bag(sparse=True): ember has no sparse gradients; use sparse=False"
        )
    if per_sample_weights is not None:
        if mode != "sum":
            raise EmberNotImplementedError(
                "embedding_bag: per_sample_weights was not None. per_sample_weights is only "
                f"supported for mode='sum' (got mode='{mode}')"
            )
        if tuple(per_sample_weights.shape) != tuple(input.shape):
            raise value_error(
                f"embedding_bag: If per_sample_weights ({list(per_sample_weights.shape)}) is "
                f"not None, then it must have the same shape as the input "
                f"({list(input.shape)})"
            )
    rows = weight.shape[0]
    if padding_idx is not None:
        if not -rows <= padding_idx < rows:
            raise value_error(
                f"padding_idx must be within num_embeddings ({rows}), got {padding_idx}"
            )
        padding_idx %= rows
    flat, bag_of, bags = _bag_index(input, offsets, include_last_offset)
    if max_norm is not None:
        _embedding_renorm_(weight, flat, max_norm, norm_type)
    looked_up = embedding(flat, weight, scale_grad_by_freq=scale_grad_by_freq)
    # indices left out (padding, past the last bag) go to an extra bag that is dropped
    kept = E.lt(bag_of, bags)
    if padding_idx is not None:
        kept = E.logical_and(kept, E.ne(flat, padding_idx))
    target = E.where(kept, bag_of, bags)
    dim = weight.shape[1]
    sizes = E.index_add(
        zeros(bags + 1, dtype=weight.dtype, device=weight.device),
        0,
        target,
        ones(flat.shape[0], dtype=weight.dtype, device=weight.device),
    )[:bags]
    if mode == "max":
        out = E.scatter_reduce(
            zeros(bags + 1, dim, dtype=weight.dtype, device=weight.device),
            0,
            E.expand(E.unsqueeze(target, 1), flat.shape[0], dim),
            looked_up,
            "amax",
            include_self=False,
        )[:bags]
        return out, flat, target, sizes
    if per_sample_weights is not None:
        looked_up = E.mul(looked_up, E.unsqueeze(E.reshape(per_sample_weights, (-1,)), 1))
    out = E.index_add(
        zeros(bags + 1, dim, dtype=weight.dtype, device=weight.device), 0, target, looked_up
    )[:bags]
    if mode == "mean":
        out = E.div(out, E.unsqueeze(E.clamp(sizes, min=1), 1))
    return out, flat, target, sizes


def embedding_bag(
    input: Tensor,
    weight: Tensor,
    offsets: Tensor | None = None,
    max_norm: float | None = None,
    norm_type: float = 2,
    scale_grad_by_freq: bool = False,
    mode: str = "mean",
    sparse: bool = False,
    per_sample_weights: Tensor | None = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
) -> Tensor:
    """The sum, mean or max of each bag of weight's rows: (bags, embedding_dim).

    A 2-D input (B, N) is B bags of N indices; a 1-D input is cut into bags where offsets
    start them (with include_last_offset, offsets' last entry ends the last bag). padding_idx
    entries are left out of their bag; an empty bag gives zeros. per_sample_weights (input's
    shape, mode='sum' only) scale each row before the sum.
    """
    out, _, _, _ = _embedding_bag(
        input,
        weight,
        offsets,
        max_norm,
        norm_type,
        scale_grad_by_freq,
        mode,
        sparse,
        per_sample_weights,
        include_last_offset,
        padding_idx,
    )
    return out


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 tensor of shape tensor.shape + (num_classes,) with a 1 at each value."""
    return E.one_hot(tensor, num_classes)


def pad(
    input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None
) -> Tensor:
    """Pad the last len(pad) // 2 dims, last dim first: (left, right, top, bottom, ...).

    mode is 'constant' (with value, default 0), 'reflect', 'replicate' or 'circular';
    negative padding crops. The other modes pad the last dim of a 2-D or 3-D input, the last
    two of a 3-D or 4-D one, or the last three of a 4-D or 5-D one, as PyTorch's do.
    """
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise EmberNotImplementedError(f"Unrecognised padding mode {mode}")
    if len(pad) % 2:
        raise runtime_error("Padding length must be divisible by 2")
    if len(pad) // 2 > input.ndim:
        raise runtime_error(
            f"Padding length should be less than or equal to two times the input dimension but "
            f"got padding length {len(pad)} and input of dimension {input.ndim}"
        )
    if mode != "constant":
        if value is not None and value != 0:
            raise runtime_error(f'Padding mode "{mode}" doesn\'t take in value argument')
        dims = len(pad) // 2
        if not (1 <= dims <= 3 and input.ndim in (dims + 1, dims + 2)):
            raise EmberNotImplementedError(
                f"Padding size {len(pad)} is not supported for {input.ndim}D input tensor. "
                "Supported combinations for non-constant padding: 2D or 3D input with padding "
                "size 2, 3D or 4D input with padding size 4, 4D or 5D input with padding size 6"
            )
    return E.pad(input, pad, mode, value)


# -- attention -------------------------------------------------------------------------------


def _repeat_heads(x: Tensor, heads: int) -> Tensor:
    """(..., H, S, E) -> (..., heads, S, E), each head repeated heads // H times in place."""
    h = x.shape[-3]
    if heads % h:
        raise runtime_error(
            f"enable_gqa: the number of query heads ({heads}) must be a multiple of the number "
            f"of key/value heads ({h})"
        )
    shape = tuple(x.shape)
    expanded = E.expand(E.unsqueeze(x, -3), shape[:-2] + (heads // h,) + shape[-2:])
    return E.reshape(expanded, shape[:-3] + (heads,) + shape[-2:])


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(query @ key^T * scale + mask) @ value over (..., L, E) and (..., S, E) inputs.

    A boolean attn_mask marks with True the keys each query may attend to; a float one is
    added to the scores. is_causal lets query i attend to keys 0..i. A query that may attend
    to no key gets zeros, as in PyTorch. dropout_p applies to the attention weights.

    It runs as one fused op ("attention": blocked over the keys with an online softmax, its
    backward recomputing the probabilities), except where `_fused_attention_applies` says
    otherwise: then as the composite, scaled_dot_product_attention_composite.
    """
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise runtime_error("scaled_dot_product_attention: query, key and value must be >= 2-D")
    if not 0.0 <= dropout_p <= 1.0:
        raise value_error(f"dropout probability has to be between 0 and 1, but got {dropout_p}")
    if not _fused_attention_applies(query, attn_mask, dropout_p):
        return scaled_dot_product_attention_composite(
            query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    if enable_gqa and query.ndim >= 3:
        key = _repeat_heads(key, query.shape[-3])
        value = _repeat_heads(value, query.shape[-3])
    if is_causal and attn_mask is not None:
        raise runtime_error(
            "_scaled_dot_product_attention: Explicit attn_mask should not be set when "
            "is_causal=True"
        )
    inputs = [query, key, value]
    if attn_mask is not None:
        inputs.append(attn_mask)
    if dropout_p > 0.0:
        # the keep mask F.dropout would draw over the weights: the same draws, in the same
        # order, from the same stream, so the composite, eager and compiled runs agree
        weights = broadcast_shapes(
            tuple(query.shape[:-2]), tuple(key.shape[:-2]),
            *([tuple(attn_mask.shape[:-2])] if attn_mask is not None else []),
        ) + (query.shape[-2], key.shape[-2])
        probs = full(weights, 1 - dropout_p, dtype=query.dtype, device=query.device)
        inputs.append(dispatch("bernoulli", (probs,)))
    attrs = {"scale": None if scale is None else float(scale), "causal": bool(is_causal),
             "mask": attn_mask is not None, "dropout_p": float(dropout_p)}
    return dispatch("attention", tuple(inputs), attrs)[0]


def _fused_attention_applies(query, attn_mask, dropout_p) -> bool:
    """Whether the fused attention op computes this call. Not for a float mask that needs a
    gradient (the op does not give one: PyTorch's fused kernels do not either), a float
    mask of another dtype than the query (the composite promotes the scores to it), an
    integer mask (the composite adds it), or dropout_p = 1 (no draw: every weight is 0)."""
    if dropout_p >= 1.0:
        return False
    if attn_mask is None or attn_mask.dtype is bool_:
        return True
    return (attn_mask.dtype is query.dtype
            and not (attn_mask.requires_grad and is_grad_enabled()))


def scaled_dot_product_attention_composite(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """scaled_dot_product_attention as a composite of primitives (matmul, the mask, softmax,
    dropout, matmul), materializing the (..., L, S) scores: the fallback of the fused op,
    and its reference in tests and benchmarks."""
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise runtime_error("scaled_dot_product_attention: query, key and value must be >= 2-D")
    length, source = query.shape[-2], key.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    if enable_gqa and query.ndim >= 3:
        key = _repeat_heads(key, query.shape[-3])
        value = _repeat_heads(value, query.shape[-3])
    if is_causal and attn_mask is not None:
        raise runtime_error(
            "_scaled_dot_product_attention: Explicit attn_mask should not be set when "
            "is_causal=True"
        )
    # the scale goes on the queries, L x E numbers, rather than on the L x S scores
    scores = E.matmul(E.mul(query, scale), E.transpose(key, -2, -1))
    if is_causal and source > 0:
        # every query keeps key 0 (and its own position): no row is fully masked. The mask
        # is added (-inf above the diagonal, 0 elsewhere): the same scores as a masked_fill,
        # and its backward passes the gradient through instead of another pass over it
        above = E.triu(full((length, source), -math.inf, dtype=scores.dtype,
                            device=query.device), 1)
        weights = softmax(E.add(scores, above), -1)
    elif is_causal or attn_mask is None:
        weights = softmax(scores, -1)
    else:
        if attn_mask.dtype is bool_:
            scores = E.masked_fill(scores, E.logical_not(attn_mask), -math.inf)
        else:
            scores = E.add(scores, attn_mask)
        # rows with every key masked: zeros, and no NaN from softmax's discarded value
        dead = E.all(E.eq(scores, -math.inf), -1, keepdim=True)
        weights = E.masked_fill(softmax(E.masked_fill(scores, dead, 0.0), -1), dead, 0.0)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, True)
    return E.matmul(weights, value)
