"""Bad arguments to the public API, as a careless user passes them: each call runs in ember and
in PyTorch. Where PyTorch raises, ember raises an EmberError that is also PyTorch's builtin
error class (IndexError, ValueError, TypeError, RuntimeError); where PyTorch returns, ember
returns the same values. Never a numpy or Python internal error, and never a silently
different result."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember.errors import EmberError

_BUILTINS = (IndexError, KeyError, ValueError, TypeError, RuntimeError, NotImplementedError)


def _lib(module):
    return SimpleNamespace(t=module, nn=module.nn, F=module.nn.functional, optim=module.optim,
                           data=module.utils.data)


EMBER = _lib(ember)


def _x(L, *shape):
    """A float tensor of the given shape holding 0, 1, 2, ... (the same in both libraries)."""
    n = math.prod(shape)
    return L.t.arange(float(n)).reshape(*shape) / max(n, 1)


def _param(L, *shape):
    return L.nn.Parameter(_x(L, *shape))


def _set_grad(L, value):
    p = _param(L, 3)
    p.grad = value(L)
    return p.grad


def _sgd_step_after(L, grad):
    p = _param(L, 3)
    opt = L.optim.SGD([p], lr=0.1)
    p.grad = grad(L)
    opt.step()
    return p


def _setitem(L, x, key, value):
    x[key] = value
    return x


def _backward(L, make, **kwargs):
    x = _x(L, 3).requires_grad_()
    make(L, x).backward(**kwargs)
    return x.grad


# -- the findings of issue 20, each stated without PyTorch at hand ---------------------------


@pytest.mark.parametrize("shape, key", [
    ((5,), [True, False, True]),
    ((2,), [True, False, True]),
    ((3, 4), np.ones((3, 3), bool)),
    ((3, 4), (slice(None), [True, False])),
    ((2, 3, 4), (Ellipsis, [True, False, True])),
    ((2, 3), (None, [True, False, True])),
], ids=["short", "long", "2d", "after_slice", "after_ellipsis", "after_new_axis"])
def test_bool_mask_of_another_shape_is_an_index_error(shape, key):
    def as_masks(k):
        if isinstance(k, tuple):
            return tuple(as_masks(e) for e in k)
        return ember.tensor(k) if isinstance(k, (list, np.ndarray)) else k

    x = ember.zeros(*shape)
    for k in (key, as_masks(key)):
        with pytest.raises(ember.EmberError, match="shape of the mask") as info:
            x[k]
        assert isinstance(info.value, IndexError)
        with pytest.raises(IndexError, match="shape of the mask"):
            x[k] = 1.0
    assert x.sum().item() == 0  # nothing written


def test_bool_mask_of_the_right_shape_still_selects():
    x = ember.arange(12.0).reshape(3, 4)
    assert x[ember.tensor([True, False, True])].tolist() == [[0, 1, 2, 3], [8, 9, 10, 11]]
    assert x[:, ember.tensor([False, True, True, False])].tolist() == [[1, 2], [5, 6], [9, 10]]
    x[x > 9] = 0.0
    assert x.sum().item() == sum(range(10))


@pytest.mark.parametrize("grad, error, words", [
    (lambda: ember.ones(1), RuntimeError, r"size \[1\] to a tensor of size \[3\]"),
    (lambda: ember.ones(3, 1), RuntimeError, "same size"),
    (lambda: "a", TypeError, "Tensor or None but got grad of type str"),
    (lambda: [1.0, 2.0, 3.0], TypeError, "of type list"),
    (lambda: ember.ones(3, dtype=ember.int64), RuntimeError, "dtype int64 to a tensor with dtype"),
    (lambda: ember.ones(3, dtype=ember.float64), RuntimeError, "float64"),
], ids=["shape", "rank", "str", "list", "int_dtype", "float64"])
def test_grad_assignment_refuses_what_pytorch_refuses(grad, error, words):
    p = ember.nn.Parameter(ember.ones(3))
    with pytest.raises(ember.EmberError, match=words) as info:
        p.grad = grad()
    assert isinstance(info.value, error) and p.grad is None


def test_sgd_never_broadcasts_a_gradient_of_another_shape():
    p = ember.nn.Parameter(ember.ones(3))
    opt = ember.optim.SGD([p], lr=0.5)
    with pytest.raises(RuntimeError):
        p.grad = ember.ones(1)
    p.grad = ember.ones(3)  # the right one still goes in, and steps
    opt.step()
    assert p.tolist() == [0.5, 0.5, 0.5]
    with pytest.raises(RuntimeError, match="own grad"):
        p.grad = p
    p.grad = None
    assert p.grad is None


def test_normalize_keeps_nan_and_zero_vectors_stay_zero():
    out = F.normalize(ember.tensor([[math.nan, 1.0, 2.0], [3.0, 4.0, 0.0]]), dim=1)
    assert np.isnan(out[0].numpy()).all()
    np.testing.assert_allclose(out[1].numpy(), [0.6, 0.8, 0.0], rtol=1e-6)
    for p in (1, 2, 3, math.inf):
        assert np.isnan(F.normalize(ember.tensor([math.nan, 1.0]), p=p, dim=0).numpy()).all()
    x = ember.zeros(2, 3, requires_grad=True)
    F.normalize(x).sum().backward()  # a zero vector: zero output, zero (not NaN) gradient
    assert F.normalize(ember.zeros(2, 3)).abs().sum().item() == 0
    assert np.isfinite(x.grad.numpy()).all()


# call, input shape, weight shape or None, output shape (PyTorch 2.13's)
EMPTY_BATCH = [
    ("conv1d", lambda x, w: F.conv1d(x, w), (0, 3, 8), (4, 3, 3), (0, 4, 6)),
    ("conv2d", lambda x, w: F.conv2d(x, w), (0, 3, 5, 5), (4, 3, 3, 3), (0, 4, 3, 3)),
    ("conv2d_same", lambda x, w: F.conv2d(x, w, padding="same"), (0, 3, 5, 5), (4, 3, 2, 2),
     (0, 4, 5, 5)),
    ("conv2d_groups", lambda x, w: F.conv2d(x, w, groups=2, padding=1), (0, 4, 5, 5),
     (4, 2, 3, 3), (0, 4, 5, 5)),
    ("conv3d", lambda x, w: F.conv3d(x, w, padding=1), (0, 3, 4, 5, 5), (4, 3, 3, 3, 3),
     (0, 4, 4, 5, 5)),
    ("conv_transpose1d", lambda x, w: F.conv_transpose1d(x, w, stride=2), (0, 3, 8), (3, 4, 3),
     (0, 4, 17)),
    ("conv_transpose2d", lambda x, w: F.conv_transpose2d(x, w, stride=2), (0, 3, 5, 5),
     (3, 4, 3, 3), (0, 4, 11, 11)),
    ("conv_transpose3d", lambda x, w: F.conv_transpose3d(x, w), (0, 3, 4, 5, 5),
     (3, 4, 3, 3, 3), (0, 4, 6, 7, 7)),
    ("max_pool1d", lambda x, w: F.max_pool1d(x, 2), (0, 3, 8), None, (0, 3, 4)),
    ("max_pool2d", lambda x, w: F.max_pool2d(x, 3, 2, 1), (0, 3, 8, 8), None, (0, 3, 4, 4)),
    ("max_pool2d_indices", lambda x, w: F.max_pool2d(x, 2, return_indices=True)[0],
     (0, 3, 8, 8), None, (0, 3, 4, 4)),
    ("max_pool3d", lambda x, w: F.max_pool3d(x, 2), (0, 3, 4, 4, 4), None, (0, 3, 2, 2, 2)),
    ("avg_pool1d", lambda x, w: F.avg_pool1d(x, 2), (0, 3, 8), None, (0, 3, 4)),
    ("avg_pool2d", lambda x, w: F.avg_pool2d(x, 3, 2, 1), (0, 3, 8, 8), None, (0, 3, 4, 4)),
    ("avg_pool3d", lambda x, w: F.avg_pool3d(x, 2), (0, 3, 4, 4, 4), None, (0, 3, 2, 2, 2)),
    ("adaptive_avg_pool2d", lambda x, w: F.adaptive_avg_pool2d(x, 3), (0, 3, 8, 8), None,
     (0, 3, 3, 3)),
    ("adaptive_max_pool2d", lambda x, w: F.adaptive_max_pool2d(x, 3), (0, 3, 8, 8), None,
     (0, 3, 3, 3)),
    ("batch_norm_training", lambda x, w: F.batch_norm(x, None, None, w, training=True),
     (0, 3, 8, 8), (3,), (0, 3, 8, 8)),
]


@pytest.mark.parametrize("call, x_shape, w_shape, out_shape",
                         [case[1:] for case in EMPTY_BATCH], ids=[c[0] for c in EMPTY_BATCH])
def test_an_empty_batch_gives_an_empty_result_and_gradient(call, x_shape, w_shape, out_shape):
    x = ember.randn(*x_shape, requires_grad=True)
    w = ember.randn(*w_shape, requires_grad=True) if w_shape else None
    out = call(x, w)
    assert tuple(out.shape) == out_shape
    out.sum().backward()
    assert tuple(x.grad.shape) == x_shape
    if w is not None:
        assert tuple(w.grad.shape) == w_shape and w.grad.abs().sum().item() == 0


def test_batch_norm_on_an_empty_batch_leaves_the_running_statistics():
    bn = ember.nn.BatchNorm2d(3)
    assert tuple(bn(ember.zeros(0, 3, 4, 4)).shape) == (0, 3, 4, 4)
    assert bn.running_mean.tolist() == [0.0] * 3 and bn.running_var.tolist() == [1.0] * 3
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(ember.zeros(1, 3, 1, 1))


_CONV_IN = {1: (1, 2, 8), 2: (1, 2, 6, 6), 3: (1, 2, 5, 5, 5)}
WINDOW_ARGUMENTS = [
    (f"{layer}{n}d_{name}", layer, n, kwargs, error, words)
    for n in (1, 2, 3)
    for layer in ("Conv", "ConvTranspose")
    for name, kwargs, error, words in (
        ("stride_0", {"stride": 0}, RuntimeError, "non-positive stride"),
        ("stride_negative", {"stride": -1}, RuntimeError, "non-positive stride"),
        ("padding_negative", {"padding": -1}, RuntimeError, "negative padding"),
        ("dilation_0", {"dilation": 0}, RuntimeError, "dilation should be greater than zero"),
        ("kernel_0", {"kernel_size": 0}, RuntimeError, "kernel size should be greater"),
        ("float_stride", {"stride": 1.5}, TypeError, "stride must be"),
    )
] + [
    (f"{layer}{n}d_{name}", layer, n, kwargs, RuntimeError, words)
    for n in (1, 2, 3)
    for layer in ("MaxPool", "AvgPool")
    for name, kwargs, words in (
        ("kernel_0", {"kernel_size": 0}, "kernel_size should be greater than zero"),
        ("stride_0", {"kernel_size": 2, "stride": 0}, "stride should be greater than zero"),
        ("padding_negative", {"kernel_size": 2, "padding": -1}, "pad must be non-negative"),
    )
    if (layer, n) != ("AvgPool", 1)  # ember has no nn.AvgPool1d (F.avg_pool1d below)
] + [
    (f"MaxPool{n}d_dilation_0", "MaxPool", n, {"kernel_size": 2, "dilation": 0}, RuntimeError,
     "dilation should be greater than zero")
    for n in (1, 2, 3)
]


@pytest.mark.parametrize("layer, n, kwargs, error, words", [c[1:] for c in WINDOW_ARGUMENTS],
                         ids=[c[0] for c in WINDOW_ARGUMENTS])
def test_window_arguments_out_of_range_are_refused(layer, n, kwargs, error, words):
    if layer.startswith("Conv"):
        args = {"in_channels": 2, "out_channels": 2, "kernel_size": 3, **kwargs}
    else:
        args = kwargs
    with pytest.raises(ember.EmberError, match=words) as info:
        getattr(ember.nn, f"{layer}{n}d")(**args)(ember.zeros(*_CONV_IN[n]))
    assert isinstance(info.value, error)


@pytest.mark.parametrize("call, words", [
    (lambda x, w: F.conv1d(x[..., 0], w[..., 0], stride=0), "non-positive stride"),
    (lambda x, w: F.conv2d(x, w, padding=-1), "negative padding"),
    (lambda x, w: F.conv2d(x, w, dilation=0), "dilation should be greater than zero"),
    (lambda x, w: F.conv2d(x, w, groups=0), "non-positive groups"),
    (lambda x, w: F.conv_transpose2d(x, w, output_padding=-1), "negative output_padding"),
    (lambda x, w: F.max_pool2d(x, 0), "kernel_size should be greater than zero"),
    (lambda x, w: F.max_pool2d(x, 2, stride=0), "stride should be greater than zero"),
    (lambda x, w: F.max_pool2d(x, 2, dilation=(1, 0)), "dilation should be greater than zero"),
    (lambda x, w: F.avg_pool2d(x, 2, stride=0), "stride should be greater than zero"),
    (lambda x, w: F.avg_pool2d(x, 2, padding=-1), "pad must be non-negative"),
    (lambda x, w: F.max_pool1d(x[..., 0], 2, stride=0), "stride should be greater than zero"),
    (lambda x, w: F.avg_pool1d(x[..., 0], 0), "kernel_size should be greater than zero"),
    (lambda x, w: F.max_pool3d(x[None], 2, stride=0), "stride should be greater than zero"),
    (lambda x, w: F.avg_pool3d(x[None], 2, padding=-1), "pad must be non-negative"),
], ids=["conv1d_stride", "conv2d_padding", "conv2d_dilation", "conv2d_groups",
        "conv_transpose2d_output_padding", "max_pool2d_kernel", "max_pool2d_stride",
        "max_pool2d_dilation", "avg_pool2d_stride", "avg_pool2d_padding", "max_pool1d_stride",
        "avg_pool1d_kernel", "max_pool3d_stride", "avg_pool3d_padding"])
def test_functional_window_arguments_out_of_range_are_runtime_errors(call, words):
    with pytest.raises(ember.EmberError, match=words) as info:
        call(ember.zeros(1, 2, 6, 6), ember.zeros(2, 2, 3, 3))
    assert isinstance(info.value, RuntimeError)


def test_a_pool_stride_of_zero_is_not_the_default_stride():
    with pytest.raises(RuntimeError, match="stride"):
        ember.nn.AvgPool2d(2, stride=0)(ember.zeros(1, 1, 4, 4))
    # None and an empty sequence still mean "the kernel size", as in PyTorch
    assert tuple(F.avg_pool2d(ember.zeros(1, 1, 4, 4), 2, stride=None).shape) == (1, 1, 2, 2)
    assert tuple(F.max_pool2d(ember.zeros(1, 1, 4, 4), 2, stride=[]).shape) == (1, 1, 2, 2)


@pytest.mark.parametrize("input, target, name", [
    ([1.5], [1.0], "input"), ([-0.5], [1.0], "input"), ([math.nan], [1.0], "input"),
    ([0.5], [1.5], "target"), ([0.5], [-1.0], "target"),
], ids=["input_above_1", "input_negative", "input_nan", "target_above_1", "target_negative"])
def test_binary_cross_entropy_refuses_values_outside_0_1(input, target, name):
    with pytest.raises(ember.EmberError, match=f"all elements of {name} should be between"):
        F.binary_cross_entropy(ember.tensor(input), ember.tensor(target))
    with pytest.raises(RuntimeError):
        ember.nn.BCELoss()(ember.tensor(input), ember.tensor(target))


def test_binary_cross_entropy_takes_the_edges_and_traces_without_reading_values():
    x, t = ember.tensor([0.0, 1.0, 0.25]), ember.tensor([0.0, 1.0, 1.0])
    assert F.binary_cross_entropy(x, t).item() == pytest.approx(-math.log(0.25) / 3)
    scripted = ember.script(lambda a, b: F.binary_cross_entropy(a, b))
    for scale in (1.0, 0.5):  # another value: the same graph (no value was guarded)
        y = ember.tensor([0.2, 0.7, 0.9]) * scale
        assert scripted(y, t).item() == pytest.approx(F.binary_cross_entropy(y, t).item())


@pytest.mark.parametrize("value, dtype", [
    (np.float64("nan"), ember.float64), (np.float64(1.5), ember.float64),
    (np.float32(1.5), ember.float32), (np.float16(1.5), ember.float16),
    (np.int64(7), ember.int64), (np.int32(7), ember.int32), (np.int16(7), ember.int16),
    (np.int8(7), ember.int8), (np.uint8(7), ember.uint8), (np.bool_(True), ember.bool),
    ([np.float64(1), np.float64(2)], ember.float64), ([np.float64(1), 2.0], ember.float64),
    ([np.float32(1), 2.0], ember.float32), ([np.int32(1), 2], ember.int64),
    ([np.int32(1), 2.5], ember.float32), ([np.uint8(1), np.int8(1)], ember.int16),
    ([np.float16(1), 2.0], ember.float32), ([True, np.int16(3)], ember.int16),
    (1.5, ember.float32), (7, ember.int64), ([True, 1], ember.int64),
], ids=lambda v: getattr(v, "name", None) or repr(v))
def test_tensor_of_numpy_scalars_keeps_their_dtype(value, dtype):
    t = ember.tensor(value)
    assert t.dtype is dtype
    np.testing.assert_array_equal(t.numpy(), np.asarray(value, dtype=dtype.np))
    assert ember.as_tensor(value).dtype is dtype


@pytest.mark.parametrize("dim, error", [
    (1.5, TypeError), ([1.5], TypeError), ("a", TypeError), ({1}, TypeError),
    (True, TypeError), (5, IndexError), ([0, -3], IndexError), ([0, 0], RuntimeError),
], ids=["float", "float_in_list", "str", "set", "bool", "out_of_range", "list_out_of_range",
        "repeated"])
@pytest.mark.parametrize("reduction", ["sum", "mean", "prod", "amax", "amin", "var", "std",
                                       "logsumexp"])
def test_reduction_dims_must_be_ints_in_range(reduction, dim, error):
    x = ember.ones(2, 3)
    if reduction in ("var", "std") and dim is True:
        pytest.skip("var(x, True) is the positional unbiased=True, as in PyTorch")
    with pytest.raises(ember.EmberError) as info:
        getattr(x, reduction)(dim=dim)
    assert isinstance(info.value, error), info.value


def test_reduction_dims_take_numpy_and_tensor_integers():
    x = ember.arange(6.0).reshape(2, 3)
    assert x.sum(dim=np.int64(1)).tolist() == [3.0, 12.0]
    assert x.sum(dim=(np.int32(0), 1)).item() == 15.0
    assert x.amax(dim=ember.tensor(0)).tolist() == [3.0, 4.0, 5.0]


@pytest.mark.parametrize("call", [
    lambda: ember.zeros(10**13), lambda: ember.randn(10**7, 10**7),
    lambda: ember.arange(10**15), lambda: ember.ones(3).expand(10**13, 3) + 1,
    lambda: ember.ones(3).repeat(10**13),
], ids=["zeros", "randn", "arange", "add_of_expanded", "repeat"])
def test_a_tensor_too_large_for_memory_is_an_ember_runtime_error(call):
    with pytest.raises(ember.EmberError, match="can't allocate memory") as info:
        call()
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, MemoryError)


def test_optimizer_options_must_be_numbers_but_subclasses_choose_their_own():
    p = ember.nn.Parameter(ember.ones(2))
    with pytest.raises(TypeError, match="lr must be a number, got str"):
        ember.optim.SGD([p], lr="0.1")
    with pytest.raises(TypeError, match="betas must be a tuple of numbers"):
        ember.optim.Adam([p], betas=(0.9, "0.999"))
    assert ember.optim.SGD([p], lr=ember.tensor(0.1), momentum=np.float32(0.9))

    class Scheduled(ember.optim.SGD):  # a user's option with a number default and other values
        def __init__(self, params, lr=0.1, schedule=0):
            super().__init__(params, lr=lr)
            self.schedule = schedule

    assert Scheduled([p], schedule="cosine").schedule == "cosine"


# (id, call): the call gets a namespace L with t (the library), nn, F, optim and data
PROBES = [
    # -- indexing (finding: a bool mask of the wrong length was accepted)
    ("mask_too_short", lambda L: _x(L, 5)[L.t.tensor([True, False, True])]),
    ("mask_too_long", lambda L: _x(L, 2)[L.t.tensor([True, False, True])]),
    ("mask_list_wrong_length", lambda L: _x(L, 5)[[True, False, True]]),
    ("mask_numpy_2d_wrong_shape", lambda L: _x(L, 3, 4)[np.ones((3, 3), bool)]),
    ("mask_2d_wrong_shape", lambda L: _x(L, 3, 4)[L.t.ones(3, 3, dtype=L.t.bool)]),
    ("mask_after_slice_wrong_length", lambda L: _x(L, 3, 4)[:, L.t.tensor([True, False])]),
    ("mask_right_shape", lambda L: _x(L, 3, 4)[_x(L, 3, 4) > 0.3]),
    ("mask_setitem_wrong_length",
     lambda L: _setitem(L, _x(L, 5), L.t.tensor([True, False, True]), 1.0)),
    ("mask_setitem_2d_wrong_shape",
     lambda L: _setitem(L, _x(L, 3, 4), L.t.ones(3, 3, dtype=L.t.bool), 1.0)),
    ("index_out_of_range", lambda L: _x(L, 3)[5]),
    ("index_float", lambda L: _x(L, 3)[1.5]),
    ("index_str", lambda L: _x(L, 3)["a"]),
    ("index_list_out_of_range", lambda L: _x(L, 3)[[0, 5]]),
    ("index_too_many", lambda L: _x(L, 3)[0, 0]),
    ("index_float_tensor", lambda L: _x(L, 3)[L.t.tensor([0.0, 1.0])]),
    ("setitem_shape_mismatch", lambda L: _setitem(L, _x(L, 3), slice(None), _x(L, 2))),
    ("setitem_str", lambda L: _setitem(L, _x(L, 3), 0, "a")),
    # -- .grad assignment (finding: any shape or object was accepted)
    ("grad_wrong_shape", lambda L: _set_grad(L, lambda L: L.t.ones(1))),
    ("grad_str", lambda L: _set_grad(L, lambda L: "a")),
    ("grad_int_dtype", lambda L: _set_grad(L, lambda L: L.t.ones(3, dtype=L.t.int64))),
    ("grad_float64", lambda L: _set_grad(L, lambda L: L.t.ones(3, dtype=L.t.float64))),
    ("grad_list", lambda L: _set_grad(L, lambda L: [1.0, 2.0, 3.0])),
    ("grad_right", lambda L: _set_grad(L, lambda L: L.t.ones(3))),
    ("grad_none", lambda L: _set_grad(L, lambda L: None)),
    ("sgd_with_wrong_grad_shape", lambda L: _sgd_step_after(L, lambda L: L.t.ones(1))),
    # -- reductions (finding: dim=1.5 said "'float' object is not iterable")
    ("sum_float_dim", lambda L: _x(L, 2, 3).sum(dim=1.5)),
    ("sum_float_in_dim_list", lambda L: _x(L, 2, 3).sum(dim=[1.5])),
    ("sum_str_dim", lambda L: _x(L, 2, 3).sum(dim="a")),
    ("sum_dim_out_of_range", lambda L: _x(L, 2, 3).sum(dim=5)),
    ("sum_repeated_dims", lambda L: _x(L, 2, 3).sum(dim=[0, 0])),
    ("sum_numpy_int_dim", lambda L: _x(L, 2, 3).sum(dim=np.int64(1))),
    ("mean_float_dim", lambda L: _x(L, 2, 3).mean(dim=1.5)),
    ("mean_dim_out_of_range", lambda L: _x(L, 2, 3).mean(dim=-3)),
    ("amax_float_dim", lambda L: _x(L, 2, 3).amax(dim=1.5)),
    ("amin_dim_out_of_range", lambda L: _x(L, 2, 3).amin(dim=2)),
    ("prod_float_dim", lambda L: _x(L, 2, 3).prod(dim=1.5)),
    ("var_float_dim", lambda L: _x(L, 2, 3).var(dim=1.5)),
    ("std_dim_out_of_range", lambda L: _x(L, 2, 3).std(dim=4)),
    ("logsumexp_float_dim", lambda L: _x(L, 2, 3).logsumexp(dim=1.5)),
    ("max_dim_out_of_range", lambda L: _x(L, 2, 3).max(dim=2)),
    ("argmax_dim_out_of_range", lambda L: _x(L, 2, 3).argmax(dim=2)),
    ("cumsum_dim_out_of_range", lambda L: _x(L, 2, 3).cumsum(dim=2)),
    ("cumsum_float_dim", lambda L: _x(L, 2, 3).cumsum(dim=1.5)),
    ("softmax_dim_out_of_range", lambda L: L.F.softmax(_x(L, 2, 3), dim=2)),
    ("softmax_float_dim", lambda L: L.F.softmax(_x(L, 2, 3), dim=1.5)),
    ("sort_dim_out_of_range", lambda L: _x(L, 2, 3).sort(dim=3)),
    ("topk_too_large", lambda L: _x(L, 3).topk(5)),
    ("all_dim_out_of_range", lambda L: (_x(L, 2, 3) > 0).all(dim=2)),
    # -- tensor() of numpy scalars (finding: np.float64 became float32)
    ("tensor_np_float64_nan", lambda L: L.t.tensor(np.float64("nan"))),
    ("tensor_np_float64", lambda L: L.t.tensor(np.float64(1.5))),
    ("tensor_np_float16", lambda L: L.t.tensor(np.float16(1.5))),
    ("tensor_np_float32", lambda L: L.t.tensor(np.float32(1.5))),
    ("tensor_np_int32", lambda L: L.t.tensor(np.int32(7))),
    ("tensor_np_int64", lambda L: L.t.tensor(np.int64(7))),
    ("tensor_np_bool", lambda L: L.t.tensor(np.bool_(True))),
    ("tensor_list_of_np_float64", lambda L: L.t.tensor([np.float64(1), np.float64(2)])),
    ("tensor_np_int32_and_int", lambda L: L.t.tensor([np.int32(1), 2])),
    ("tensor_np_int32_and_float", lambda L: L.t.tensor([np.int32(1), 2.5])),
    ("tensor_np_uint8_and_int8", lambda L: L.t.tensor([np.uint8(1), np.int8(1)])),
    ("tensor_ragged", lambda L: L.t.tensor([[1, 2], [3]])),
    ("tensor_str", lambda L: L.t.tensor("abc")),
    ("tensor_none", lambda L: L.t.tensor(None)),
    ("tensor_mixed_str", lambda L: L.t.tensor([1, "a"])),
    # -- factories
    ("zeros_negative", lambda L: L.t.zeros(-1)),
    ("zeros_float_size", lambda L: L.t.zeros(2.5)),
    ("zeros_str_size", lambda L: L.t.zeros("a")),
    ("ones_none_in_size", lambda L: L.t.ones(2, None)),
    ("full_str_value", lambda L: L.t.full((2,), "a")),
    ("empty_negative", lambda L: L.t.empty(3, -2)),
    ("arange_zero_step", lambda L: L.t.arange(0, 10, 0)),
    ("arange_wrong_sign", lambda L: L.t.arange(10, 0, 1)),
    ("arange_str", lambda L: L.t.arange("a")),
    ("linspace_negative_steps", lambda L: L.t.linspace(0, 1, -1)),
    ("eye_negative", lambda L: L.t.eye(-1)),
    ("randn_negative", lambda L: L.t.randn(-2)),
    ("rand_int_dtype", lambda L: L.t.rand(2, dtype=L.t.int64)),
    ("randint_empty_range", lambda L: L.t.randint(5, 2, (3,))),
    ("randint_float_size", lambda L: L.t.randint(0, 5, (3.5,))),
    ("zeros_like_str", lambda L: L.t.zeros_like("a")),
    ("full_like_str_value", lambda L: L.t.full_like(_x(L, 2), "a")),
    # -- shape ops
    ("reshape_two_minus_ones", lambda L: _x(L, 6).reshape(-1, -1)),
    ("reshape_wrong_numel", lambda L: _x(L, 6).reshape(4)),
    ("reshape_float", lambda L: _x(L, 6).reshape(2.5)),
    ("view_wrong_numel", lambda L: _x(L, 6).view(7)),
    ("permute_repeated", lambda L: _x(L, 2, 3).permute(0, 0)),
    ("permute_too_few", lambda L: _x(L, 2, 3).permute(0)),
    ("transpose_out_of_range", lambda L: _x(L, 2, 3).transpose(0, 5)),
    ("squeeze_out_of_range", lambda L: _x(L, 2, 3).squeeze(5)),
    ("unsqueeze_out_of_range", lambda L: _x(L, 2, 3).unsqueeze(5)),
    ("expand_wrong_size", lambda L: _x(L, 2).expand(3, 3)),
    ("expand_negative", lambda L: _x(L, 2).expand(-2)),
    ("repeat_negative", lambda L: _x(L, 2).repeat(-1)),
    ("repeat_too_few", lambda L: _x(L, 2, 3).repeat(2)),
    ("flatten_start_after_end", lambda L: _x(L, 2, 3, 4).flatten(2, 0)),
    ("narrow_past_end", lambda L: _x(L, 3).narrow(0, 2, 5)),
    ("split_zero", lambda L: _x(L, 4).split(0)),
    ("chunk_zero", lambda L: _x(L, 4).chunk(0)),
    ("cat_shape_mismatch", lambda L: L.t.cat([_x(L, 2, 3), _x(L, 2, 4)])),
    ("cat_empty_list", lambda L: L.t.cat([])),
    ("cat_dim_out_of_range", lambda L: L.t.cat([_x(L, 2), _x(L, 2)], dim=3)),
    ("cat_not_tensors", lambda L: L.t.cat([1, 2])),
    ("cat_zero_dimensional", lambda L: L.t.cat([L.t.tensor(1.0), L.t.tensor(2.0)])),
    ("cat_one_zero_dimensional", lambda L: L.t.cat([L.t.tensor(1.0)])),
    ("index_of_a_zero_dimensional_tensor", lambda L: L.t.tensor(1.0)[0]),
    ("stack_empty_list", lambda L: L.t.stack([])),
    ("stack_shape_mismatch", lambda L: L.t.stack([_x(L, 2), _x(L, 3)])),
    ("index_select_float_index", lambda L: _x(L, 3).index_select(0, L.t.tensor([0.0]))),
    ("index_select_out_of_range", lambda L: _x(L, 3).index_select(0, L.t.tensor([5]))),
    ("gather_out_of_range", lambda L: _x(L, 2, 3).gather(1, L.t.tensor([[0], [7]]))),
    ("gather_dims_mismatch", lambda L: _x(L, 2, 3).gather(1, L.t.tensor([0, 1]))),
    ("scatter_out_of_range",
     lambda L: L.t.zeros(3).scatter(0, L.t.tensor([5]), L.t.ones(1))),
    ("masked_fill_float_mask", lambda L: _x(L, 3).masked_fill(_x(L, 3), 0.0)),
    ("masked_fill_shape_mismatch",
     lambda L: _x(L, 3).masked_fill(L.t.ones(4, dtype=L.t.bool), 0.0)),
    ("where_float_condition", lambda L: L.t.where(_x(L, 3), _x(L, 3), _x(L, 3))),
    ("tril_1d", lambda L: _x(L, 3).tril()),
    ("roll_shifts_dims_mismatch", lambda L: _x(L, 2, 3).roll((1, 1), (0,))),
    ("flip_dim_out_of_range", lambda L: _x(L, 2, 3).flip(3)),
    # -- arithmetic and math
    ("add_shape_mismatch", lambda L: _x(L, 2, 3) + _x(L, 4)),
    ("add_str", lambda L: _x(L, 3) + "a"),
    ("mul_none", lambda L: _x(L, 3) * None),
    ("add_list", lambda L: L.t.add(_x(L, 3), [1, 2, 3])),
    ("pow_str", lambda L: _x(L, 3).pow("a")),
    ("matmul_shape_mismatch", lambda L: _x(L, 2, 3) @ _x(L, 2, 3)),
    ("matmul_0d", lambda L: L.t.matmul(L.t.tensor(1.0), _x(L, 3))),
    ("mm_1d", lambda L: L.t.mm(_x(L, 3), _x(L, 3))),
    ("bmm_2d", lambda L: L.t.bmm(_x(L, 2, 2), _x(L, 2, 2))),
    ("dot_2d", lambda L: L.t.dot(_x(L, 2, 2), _x(L, 2, 2))),
    ("dot_length_mismatch", lambda L: L.t.dot(_x(L, 2), _x(L, 3))),
    ("clamp_no_bounds", lambda L: _x(L, 3).clamp()),
    ("clamp_str", lambda L: _x(L, 3).clamp(min="a")),
    ("int_dtype_mean", lambda L: L.t.arange(4).mean()),
    ("bitwise_and_float", lambda L: _x(L, 3) & _x(L, 3)),
    ("float_to_int_overflow_shift", lambda L: L.t.tensor([1]) << _x(L, 1)),
    ("item_of_many", lambda L: _x(L, 3).item()),
    ("bool_of_many", lambda L: bool(_x(L, 3))),
    ("int_of_many", lambda L: int(_x(L, 3))),
    ("to_bad_dtype_str", lambda L: _x(L, 3).to("float99")),
    ("to_bad_device", lambda L: _x(L, 3).to("foo")),
    ("type_bad_name", lambda L: _x(L, 3).type("foo")),
    ("fill_str", lambda L: _x(L, 3).fill_("a")),
    # -- autograd
    ("requires_grad_int", lambda L: L.t.arange(3).requires_grad_()),
    ("inplace_on_leaf", lambda L: _x(L, 3).requires_grad_().add_(1)),
    ("backward_non_scalar", lambda L: _backward(L, lambda L, x: x * 2)),
    ("backward_wrong_grad_shape",
     lambda L: _backward(L, lambda L, x: x * 2, gradient=L.t.ones(2))),
    ("backward_no_grad_fn", lambda L: _x(L, 1).sum().backward()),
    ("numpy_of_grad_tensor", lambda L: _x(L, 3).requires_grad_().numpy()),
    ("grad_of_unused", lambda L: L.t.autograd.grad(_x(L, 3).requires_grad_().sum(), [])),
    # -- nn layers
    ("linear_negative_features", lambda L: L.nn.Linear(-1, 2)),
    ("linear_str_features", lambda L: L.nn.Linear("a", 2)),
    ("linear_wrong_input", lambda L: L.nn.Linear(3, 2)(_x(L, 2, 4))),
    ("conv2d_wrong_channels", lambda L: L.nn.Conv2d(3, 4, 3)(_x(L, 1, 2, 5, 5))),
    ("conv2d_2d_input", lambda L: L.nn.Conv2d(3, 4, 3)(_x(L, 5, 5))),
    ("conv2d_stride_0", lambda L: L.nn.Conv2d(3, 4, 3, stride=0)(_x(L, 1, 3, 5, 5))),
    ("conv2d_stride_negative", lambda L: L.nn.Conv2d(3, 4, 3, stride=-1)(_x(L, 1, 3, 5, 5))),
    ("conv2d_padding_negative", lambda L: L.nn.Conv2d(3, 4, 3, padding=-1)(_x(L, 1, 3, 5, 5))),
    ("conv2d_dilation_0", lambda L: L.nn.Conv2d(3, 4, 3, dilation=0)(_x(L, 1, 3, 5, 5))),
    ("conv2d_kernel_0", lambda L: L.nn.Conv2d(3, 4, 0)(_x(L, 1, 3, 5, 5))),
    ("conv2d_float_stride", lambda L: L.nn.Conv2d(3, 4, 3, stride=1.5)(_x(L, 1, 3, 5, 5))),
    ("conv2d_groups_0", lambda L: L.nn.Conv2d(3, 4, 3, groups=0)),
    ("conv2d_bad_padding_string", lambda L: L.nn.Conv2d(3, 4, 3, padding="foo")),
    ("conv1d_stride_0", lambda L: L.nn.Conv1d(3, 4, 3, stride=0)(_x(L, 1, 3, 8))),
    ("conv1d_padding_negative", lambda L: L.nn.Conv1d(3, 4, 3, padding=-1)(_x(L, 1, 3, 8))),
    ("conv1d_dilation_0", lambda L: L.nn.Conv1d(3, 4, 3, dilation=0)(_x(L, 1, 3, 8))),
    ("conv3d_stride_0", lambda L: L.nn.Conv3d(2, 2, 3, stride=0)(_x(L, 1, 2, 5, 5, 5))),
    ("conv3d_dilation_0", lambda L: L.nn.Conv3d(2, 2, 3, dilation=0)(_x(L, 1, 2, 5, 5, 5))),
    ("conv_transpose2d_stride_0",
     lambda L: L.nn.ConvTranspose2d(3, 4, 3, stride=0)(_x(L, 1, 3, 5, 5))),
    ("conv_transpose2d_output_padding_negative",
     lambda L: L.nn.ConvTranspose2d(3, 4, 3, output_padding=-1)(_x(L, 1, 3, 5, 5))),
    ("conv_transpose1d_dilation_0",
     lambda L: L.nn.ConvTranspose1d(3, 4, 3, dilation=0)(_x(L, 1, 3, 8))),
    ("F_conv2d_stride_0", lambda L: L.F.conv2d(_x(L, 1, 2, 5, 5), _x(L, 2, 2, 3, 3), stride=0)),
    ("F_conv2d_padding_negative",
     lambda L: L.F.conv2d(_x(L, 1, 2, 5, 5), _x(L, 2, 2, 3, 3), padding=-1)),
    ("F_conv2d_dilation_0",
     lambda L: L.F.conv2d(_x(L, 1, 2, 5, 5), _x(L, 2, 2, 3, 3), dilation=0)),
    ("F_conv2d_groups_0", lambda L: L.F.conv2d(_x(L, 1, 2, 5, 5), _x(L, 2, 2, 3, 3), groups=0)),
    ("F_conv1d_stride_0", lambda L: L.F.conv1d(_x(L, 1, 2, 8), _x(L, 2, 2, 3), stride=0)),
    ("F_conv2d_weight_dtype", lambda L: L.F.conv2d(_x(L, 1, 2, 5, 5),
                                                   _x(L, 2, 2, 3, 3).double())),
    ("maxpool2d_kernel_0", lambda L: L.nn.MaxPool2d(0)(_x(L, 1, 3, 5, 5))),
    ("maxpool2d_stride_0", lambda L: L.nn.MaxPool2d(2, stride=0)(_x(L, 1, 3, 5, 5))),
    ("maxpool2d_padding_negative", lambda L: L.nn.MaxPool2d(2, padding=-1)(_x(L, 1, 3, 5, 5))),
    ("maxpool2d_padding_too_big", lambda L: L.nn.MaxPool2d(2, padding=2)(_x(L, 1, 3, 5, 5))),
    ("maxpool2d_dilation_0", lambda L: L.nn.MaxPool2d(2, dilation=0)(_x(L, 1, 3, 5, 5))),
    ("maxpool2d_float_kernel", lambda L: L.nn.MaxPool2d(1.5)(_x(L, 1, 3, 5, 5))),
    ("maxpool1d_kernel_0", lambda L: L.nn.MaxPool1d(0)(_x(L, 1, 3, 8))),
    ("maxpool1d_stride_0", lambda L: L.F.max_pool1d(_x(L, 1, 3, 8), 2, stride=0)),
    ("maxpool3d_stride_0", lambda L: L.nn.MaxPool3d(2, stride=0)(_x(L, 1, 2, 4, 4, 4))),
    ("maxpool3d_float_kernel", lambda L: L.nn.MaxPool3d(1.5)(_x(L, 1, 2, 4, 4, 4))),
    ("avgpool2d_stride_0", lambda L: L.nn.AvgPool2d(2, stride=0)(_x(L, 1, 3, 5, 5))),
    ("avgpool2d_kernel_0", lambda L: L.nn.AvgPool2d(0)(_x(L, 1, 3, 5, 5))),
    ("avgpool2d_padding_negative", lambda L: L.F.avg_pool2d(_x(L, 1, 3, 5, 5), 2, padding=-1)),
    ("avgpool1d_stride_0", lambda L: L.F.avg_pool1d(_x(L, 1, 3, 8), 2, stride=0)),
    ("avgpool3d_kernel_0", lambda L: L.nn.AvgPool3d(0)(_x(L, 1, 2, 4, 4, 4))),
    ("maxpool2d_too_small_input", lambda L: L.nn.MaxPool2d(3)(_x(L, 1, 1, 2, 2))),
    ("adaptive_avg_pool2d_negative", lambda L: L.F.adaptive_avg_pool2d(_x(L, 1, 2, 4, 4), -1)),
    ("batchnorm_wrong_channels", lambda L: L.nn.BatchNorm2d(3)(_x(L, 2, 4, 2, 2))),
    ("batchnorm1d_single_sample", lambda L: L.nn.BatchNorm1d(3)(_x(L, 1, 3))),
    ("batchnorm1d_3d_wrong_channels", lambda L: L.nn.BatchNorm1d(3)(_x(L, 2, 4, 5))),
    ("layernorm_wrong_shape", lambda L: L.nn.LayerNorm(5)(_x(L, 2, 4))),
    ("groupnorm_indivisible", lambda L: L.nn.GroupNorm(3, 4)),
    ("groupnorm_wrong_channels", lambda L: L.nn.GroupNorm(2, 4)(_x(L, 2, 6, 3))),
    ("embedding_index_out_of_range", lambda L: L.nn.Embedding(10, 3)(L.t.tensor([10]))),
    ("embedding_negative_index", lambda L: L.nn.Embedding(10, 3)(L.t.tensor([-1]))),
    ("embedding_float_index", lambda L: L.nn.Embedding(10, 3)(L.t.tensor([1.0]))),
    ("embedding_negative_size", lambda L: L.nn.Embedding(-1, 3)),
    ("dropout_p_too_big", lambda L: L.nn.Dropout(p=1.5)),
    ("dropout_p_negative", lambda L: L.F.dropout(_x(L, 3), p=-0.1)),
    ("softmax_layer_dim_out_of_range", lambda L: L.nn.Softmax(dim=5)(_x(L, 2, 3))),
    ("lstm_wrong_input_size", lambda L: L.nn.LSTM(4, 5)(_x(L, 2, 3, 3))),
    ("gru_2d_wrong_size", lambda L: L.nn.GRU(4, 5)(_x(L, 2, 3))),
    ("rnn_bad_nonlinearity", lambda L: L.nn.RNN(4, 5, nonlinearity="foo")),
    ("flatten_layer_bad_dims", lambda L: L.nn.Flatten(3)(_x(L, 2, 3))),
    ("sequential_not_module", lambda L: L.nn.Sequential(1)),
    ("module_list_append_int", lambda L: L.nn.ModuleList().append(1)),
    ("parameter_of_str", lambda L: L.nn.Parameter("a")),
    ("register_buffer_dotted", lambda L: L.nn.Module().register_buffer("a.b", _x(L, 2))),
    ("add_module_empty_name", lambda L: L.nn.Module().add_module("", L.nn.ReLU())),
    ("load_state_dict_missing_key", lambda L: L.nn.Linear(2, 2).load_state_dict({})),
    ("load_state_dict_wrong_shape", lambda L: L.nn.Linear(2, 2).load_state_dict(
        {"weight": _x(L, 3, 3), "bias": _x(L, 2)})),
    ("module_to_bad_device", lambda L: L.nn.Linear(2, 2).to("foo")),
    # -- functional
    ("normalize_nan", lambda L: L.F.normalize(L.t.tensor([math.nan, 1.0, 2.0]), dim=0)),
    ("normalize_zeros", lambda L: L.F.normalize(L.t.zeros(2, 3))),
    ("normalize_inf", lambda L: L.F.normalize(L.t.tensor([math.inf, 1.0]), dim=0)),
    ("normalize_dim_out_of_range", lambda L: L.F.normalize(_x(L, 2, 3), dim=2)),
    ("one_hot_too_few_classes", lambda L: L.F.one_hot(L.t.tensor([0, 3]), 2)),
    ("one_hot_float", lambda L: L.F.one_hot(L.t.tensor([0.0, 1.0]))),
    ("one_hot_negative", lambda L: L.F.one_hot(L.t.tensor([-1, 1]), 3)),
    ("pad_odd_length", lambda L: L.F.pad(_x(L, 2, 3), (1,))),
    ("pad_bad_mode", lambda L: L.F.pad(_x(L, 1, 2, 3), (1, 1), mode="foo")),
    ("pad_reflect_too_big", lambda L: L.F.pad(_x(L, 1, 2, 3), (3, 3), mode="reflect")),
    ("interpolate_no_size", lambda L: L.F.interpolate(_x(L, 1, 1, 4, 4))),
    ("interpolate_bad_mode", lambda L: L.F.interpolate(_x(L, 1, 1, 4, 4), scale_factor=2,
                                                      mode="foo")),
    ("interpolate_size_and_scale", lambda L: L.F.interpolate(_x(L, 1, 1, 4, 4), size=2,
                                                            scale_factor=2)),
    ("linear_F_wrong_shape", lambda L: L.F.linear(_x(L, 2, 3), _x(L, 4, 4))),
    ("gelu_bad_approximate", lambda L: L.F.gelu(_x(L, 3), approximate="foo")),
    ("layer_norm_F_wrong_shape", lambda L: L.F.layer_norm(_x(L, 2, 3), (4,))),
    ("softmax_int", lambda L: L.F.softmax(L.t.arange(3), 0)),
    ("unfold_kernel_too_big", lambda L: L.F.unfold(_x(L, 1, 1, 3, 3), 5)),
    ("pixel_shuffle_indivisible", lambda L: L.F.pixel_shuffle(_x(L, 1, 3, 2, 2), 2)),
    # -- losses
    ("bce_input_above_1", lambda L: L.F.binary_cross_entropy(L.t.tensor([1.5]),
                                                            L.t.tensor([1.0]))),
    ("bce_input_negative", lambda L: L.F.binary_cross_entropy(L.t.tensor([-0.5]),
                                                             L.t.tensor([1.0]))),
    ("bce_input_nan", lambda L: L.F.binary_cross_entropy(L.t.tensor([math.nan]),
                                                        L.t.tensor([1.0]))),
    ("bce_target_above_1", lambda L: L.F.binary_cross_entropy(L.t.tensor([0.5]),
                                                             L.t.tensor([1.5]))),
    ("bce_target_negative", lambda L: L.nn.BCELoss()(L.t.tensor([0.5]), L.t.tensor([-1.0]))),
    ("bce_valid_edges", lambda L: L.F.binary_cross_entropy(L.t.tensor([0.0, 1.0, 0.5]),
                                                          L.t.tensor([0.0, 1.0, 1.0]))),
    ("bce_shape_mismatch", lambda L: L.F.binary_cross_entropy(_x(L, 3), _x(L, 2))),
    ("cross_entropy_class_out_of_range",
     lambda L: L.F.cross_entropy(_x(L, 2, 3), L.t.tensor([0, 5]))),
    ("cross_entropy_negative_class",
     lambda L: L.F.cross_entropy(_x(L, 2, 3), L.t.tensor([0, -2]))),
    ("cross_entropy_float_target_wrong_shape",
     lambda L: L.F.cross_entropy(_x(L, 2, 3), _x(L, 2))),
    ("cross_entropy_batch_mismatch", lambda L: L.F.cross_entropy(_x(L, 2, 3), L.t.tensor([0]))),
    ("cross_entropy_bad_reduction",
     lambda L: L.F.cross_entropy(_x(L, 2, 3), L.t.tensor([0, 1]), reduction="foo")),
    ("cross_entropy_label_smoothing_too_big",
     lambda L: L.F.cross_entropy(_x(L, 2, 3), L.t.tensor([0, 1]), label_smoothing=1.5)),
    ("nll_loss_class_out_of_range", lambda L: L.F.nll_loss(_x(L, 2, 3), L.t.tensor([0, 3]))),
    ("nll_loss_float_target", lambda L: L.F.nll_loss(_x(L, 2, 3), L.t.tensor([0.0, 1.0]))),
    ("mse_loss_bad_reduction", lambda L: L.F.mse_loss(_x(L, 3), _x(L, 3), reduction="foo")),
    ("mse_loss_not_broadcastable", lambda L: L.F.mse_loss(_x(L, 3), _x(L, 2))),
    ("l1_loss_int_target", lambda L: L.F.l1_loss(_x(L, 3), L.t.arange(3))),
    ("kl_div_bad_reduction", lambda L: L.F.kl_div(_x(L, 3), _x(L, 3), reduction="foo")),
    ("bce_with_logits_shape_mismatch",
     lambda L: L.F.binary_cross_entropy_with_logits(_x(L, 3), _x(L, 2))),
    # -- optimizers
    ("sgd_negative_lr", lambda L: L.optim.SGD([_param(L, 2)], lr=-1)),
    ("sgd_empty_params", lambda L: L.optim.SGD([], lr=0.1)),
    ("sgd_negative_momentum", lambda L: L.optim.SGD([_param(L, 2)], lr=0.1, momentum=-1)),
    ("sgd_nesterov_without_momentum",
     lambda L: L.optim.SGD([_param(L, 2)], lr=0.1, nesterov=True)),
    ("sgd_tensor_as_params", lambda L: L.optim.SGD(_param(L, 2), lr=0.1)),
    ("sgd_negative_weight_decay",
     lambda L: L.optim.SGD([_param(L, 2)], lr=0.1, weight_decay=-1)),
    ("adam_beta_too_big", lambda L: L.optim.Adam([_param(L, 2)], betas=(1.5, 0.9))),
    ("adam_negative_eps", lambda L: L.optim.Adam([_param(L, 2)], eps=-1)),
    ("adam_negative_lr", lambda L: L.optim.Adam([_param(L, 2)], lr=-1)),
    ("adamw_negative_weight_decay", lambda L: L.optim.AdamW([_param(L, 2)], weight_decay=-1)),
    ("rmsprop_negative_alpha", lambda L: L.optim.RMSprop([_param(L, 2)], alpha=-1)),
    ("step_lr_negative_gamma", lambda L: L.optim.lr_scheduler.StepLR(
        L.optim.SGD([_param(L, 2)], lr=0.1), step_size=2, gamma="a")),
    ("clip_grad_norm_str", lambda L: L.nn.utils.clip_grad_norm_([_param(L, 2)], "a")),
    # -- data
    ("dataloader_batch_size_0", lambda L: L.data.DataLoader(L.data.TensorDataset(_x(L, 4)),
                                                           batch_size=0)),
    ("dataloader_batch_size_negative",
     lambda L: L.data.DataLoader(L.data.TensorDataset(_x(L, 4)), batch_size=-1)),
    ("dataloader_num_workers_negative",
     lambda L: L.data.DataLoader(L.data.TensorDataset(_x(L, 4)), num_workers=-1)),
    ("dataloader_sampler_and_shuffle", lambda L: L.data.DataLoader(
        L.data.TensorDataset(_x(L, 4)), shuffle=True,
        sampler=L.data.SequentialSampler(range(4)))),
    ("tensor_dataset_size_mismatch", lambda L: L.data.TensorDataset(_x(L, 4), _x(L, 3))),
    ("random_split_bad_lengths", lambda L: L.data.random_split(range(4), [3, 3])),
    ("random_split_bad_fractions", lambda L: L.data.random_split(range(4), [0.5, 0.6])),
    # -- a second round: more common calls, each with one careless argument
    ("linear_layer_of_none", lambda L: L.nn.Linear(3, 2)(None)),
    ("linear_layer_of_ints", lambda L: L.nn.Linear(3, 2)(L.t.arange(6).reshape(2, 3))),
    ("linear_F_none_weight", lambda L: L.F.linear(_x(L, 2, 3), None)),
    ("matmul_str", lambda L: L.t.matmul(_x(L, 2, 2), "a")),
    ("view_indivisible", lambda L: _x(L, 6).view(-1, 4)),
    ("reshape_none", lambda L: _x(L, 6).reshape(None)),
    ("dropout_training_str", lambda L: L.F.dropout(_x(L, 3), p=0.5, training=False)),
    ("embedding_F_out_of_range", lambda L: L.F.embedding(L.t.tensor([3]), _x(L, 3, 2))),
    ("one_hot_negative_classes", lambda L: L.F.one_hot(L.t.tensor([0, 1]), -2)),
    ("cosine_similarity_mismatch", lambda L: L.F.cosine_similarity(_x(L, 2, 3), _x(L, 2, 4))),
    ("pairwise_distance_mismatch", lambda L: L.F.pairwise_distance(_x(L, 2, 3), _x(L, 3, 4))),
    ("where_str_other", lambda L: L.t.where(_x(L, 3) > 0.1, _x(L, 3), "a")),
    ("masked_fill_str", lambda L: _x(L, 3).masked_fill(_x(L, 3) > 0.1, "a")),
    ("index_add_wrong_source", lambda L: L.t.zeros(3, 2).index_add(0, L.t.tensor([0, 1]),
                                                                  L.t.ones(3, 2))),
    ("scatter_add_index_too_big", lambda L: L.t.zeros(3).scatter_add(0, L.t.tensor([3]),
                                                                     L.t.ones(1))),
    ("topk_negative", lambda L: _x(L, 3).topk(-1)),
    ("kthvalue_zero", lambda L: _x(L, 3).kthvalue(0)),
    ("kthvalue_too_big", lambda L: _x(L, 3).kthvalue(5)),
    ("multinomial_negative", lambda L: L.t.multinomial(L.t.tensor([0.5, -0.5]), 1)),
    ("multinomial_too_many", lambda L: L.t.multinomial(L.t.tensor([0.5, 0.5]), 3)),
    ("multinomial_zero_sum", lambda L: L.t.multinomial(L.t.zeros(3), 1)),
    ("randperm_negative", lambda L: L.t.randperm(-1)),
    ("bernoulli_p_above_1", lambda L: L.t.bernoulli(L.t.tensor([1.5]))),
    ("uniform_reversed", lambda L: L.t.zeros(3).uniform_(1, 0)),
    ("normal_negative_std", lambda L: L.t.zeros(3).normal_(0, -1)),
    ("full_float_into_int", lambda L: L.t.full((2,), 1.5, dtype=L.t.int64)),
    ("embedding_padding_idx_too_big", lambda L: L.nn.Embedding(10, 3, padding_idx=20)),
    ("mha_indivisible_heads", lambda L: L.nn.MultiheadAttention(5, 2)),
    ("transformer_layer_indivisible", lambda L: L.nn.TransformerEncoderLayer(5, 2)),
    ("unflatten_wrong_sizes", lambda L: L.nn.Unflatten(1, (2, 2))(_x(L, 2, 3))),
    ("interpolate_negative_size", lambda L: L.F.interpolate(_x(L, 1, 1, 4, 4), size=-1)),
    ("interpolate_size_too_short", lambda L: L.F.interpolate(_x(L, 1, 1, 4, 4), size=(2,))),
    ("interpolate_negative_scale", lambda L: L.F.interpolate(_x(L, 1, 1, 4, 4),
                                                            scale_factor=-1.0)),
    ("affine_grid_wrong_theta", lambda L: L.F.affine_grid(_x(L, 1, 3, 3), [1, 1, 4, 4],
                                                         align_corners=False)),
    ("grid_sample_wrong_grid", lambda L: L.F.grid_sample(_x(L, 1, 1, 4, 4), _x(L, 1, 4, 4, 3),
                                                        align_corners=False)),
    ("fold_wrong_blocks", lambda L: L.F.fold(_x(L, 1, 4, 5), (3, 3), 2)),
    ("einsum_wrong_operand_count", lambda L: L.t.einsum("ij,jk->ik", _x(L, 2, 2))),
    ("einsum_unknown_output_letter", lambda L: L.t.einsum("ij->k", _x(L, 2, 2))),
    ("einsum_wrong_rank", lambda L: L.t.einsum("ijk->i", _x(L, 2, 2))),
    ("norm_bad_p", lambda L: _x(L, 3).norm(p="foo")),
    ("unbind_out_of_range", lambda L: _x(L, 2, 3).unbind(5)),
    ("movedim_out_of_range", lambda L: _x(L, 2, 3).movedim(0, 5)),
    ("broadcast_to_smaller", lambda L: L.t.broadcast_to(_x(L, 3), (1,))),
    ("diag_3d", lambda L: L.t.diag(_x(L, 2, 2, 2))),
    ("argsort_dim_out_of_range", lambda L: _x(L, 3).argsort(dim=5)),
    ("expand_as_incompatible", lambda L: _x(L, 3).expand_as(_x(L, 2, 2))),
    ("view_as_incompatible", lambda L: _x(L, 3).view_as(_x(L, 2, 2))),
    ("new_tensor_str", lambda L: _x(L, 3).new_tensor("a")),
    ("xavier_uniform_1d", lambda L: L.nn.init.xavier_uniform_(L.t.zeros(3))),
    ("kaiming_bad_mode", lambda L: L.nn.init.kaiming_normal_(L.t.zeros(3, 3), mode="foo")),
    ("calculate_gain_unknown", lambda L: L.nn.init.calculate_gain("foo")),
    ("orthogonal_1d", lambda L: L.nn.init.orthogonal_(L.t.zeros(3))),
    ("module_train_str", lambda L: L.nn.Linear(2, 2).train("yes")),
    ("sgd_str_lr", lambda L: L.optim.SGD([_param(L, 2)], lr="a")),
    ("add_param_group_duplicate", lambda L: _duplicate_group(L)),
    ("optimizer_load_wrong_groups", lambda L: L.optim.SGD([_param(L, 2)], lr=0.1)
     .load_state_dict({"state": {}, "param_groups": []})),
    ("one_cycle_without_steps", lambda L: L.optim.lr_scheduler.OneCycleLR(
        L.optim.SGD([_param(L, 2)], lr=0.1), max_lr=1.0)),
    ("multistep_lr_str_milestones", lambda L: L.optim.lr_scheduler.MultiStepLR(
        L.optim.SGD([_param(L, 2)], lr=0.1), milestones=[1, "a"])),
    ("tensor_dataset_none", lambda L: L.data.TensorDataset(None)),
    ("cross_entropy_weight_wrong_size", lambda L: L.F.cross_entropy(
        _x(L, 2, 3), L.t.tensor([0, 1]), weight=L.t.ones(2))),
    ("nll_loss_1d_target_for_2d", lambda L: L.F.nll_loss(_x(L, 2, 3), L.t.tensor([[0, 1]]))),
    ("smooth_l1_negative_beta", lambda L: L.F.smooth_l1_loss(_x(L, 3), _x(L, 3), beta=-1.0)),
    ("huber_negative_delta", lambda L: L.F.huber_loss(_x(L, 3), _x(L, 3), delta=-1.0)),
    ("layer_norm_negative_eps", lambda L: L.nn.LayerNorm(3, eps=-1.0)(_x(L, 2, 3))),
    ("batchnorm_negative_features", lambda L: L.nn.BatchNorm1d(-1)),
    ("lstm_zero_layers", lambda L: L.nn.LSTM(4, 5, num_layers=0)),
    ("lstm_dropout_above_1", lambda L: L.nn.LSTM(4, 5, dropout=1.5)),
    ("conv2d_bias_wrong_size", lambda L: L.F.conv2d(_x(L, 1, 2, 5, 5), _x(L, 2, 2, 3, 3),
                                                   bias=L.t.ones(3))),
    ("conv2d_int_input", lambda L: L.F.conv2d(L.t.ones(1, 2, 5, 5, dtype=L.t.int64),
                                             L.t.ones(2, 2, 3, 3, dtype=L.t.int64))),
    ("max_pool2d_int_input", lambda L: L.F.max_pool2d(L.t.ones(1, 1, 4, 4, dtype=L.t.int64), 2)),
    ("avg_pool2d_int_input", lambda L: L.F.avg_pool2d(L.t.ones(1, 1, 4, 4, dtype=L.t.int64), 2)),
    ("adaptive_avg_pool2d_bad_rank", lambda L: L.F.adaptive_avg_pool2d(_x(L, 4), 2)),
    ("pad_negative_cuts", lambda L: L.F.pad(_x(L, 2, 3), (-1, -1))),
    ("pad_too_many", lambda L: L.F.pad(_x(L, 3), (1, 1, 1, 1))),
    ("log_softmax_int", lambda L: L.F.log_softmax(L.t.arange(3), 0)),
    ("softmax_int_with_dtype", lambda L: L.F.softmax(L.t.arange(3), 0, dtype=L.t.float32)),
    ("sigmoid_int", lambda L: L.t.sigmoid(L.t.arange(3))),
    ("relu_bool", lambda L: L.F.relu(L.t.tensor([True, False]))),
    ("neg_bool", lambda L: -L.t.tensor([True, False])),
    ("sub_bool", lambda L: L.t.tensor([True]) - L.t.tensor([False])),
    ("div_int_by_zero", lambda L: L.t.tensor([1]) // L.t.tensor([0])),
    ("remainder_int_by_zero", lambda L: L.t.tensor([1]) % L.t.tensor([0])),
    ("arange_huge_step_count", lambda L: L.t.arange(0, 1, 1e-20).shape),
    ("cumsum_bool", lambda L: L.t.tensor([True, True]).cumsum(0)),
    ("mean_bool", lambda L: L.t.tensor([True, False]).mean()),
    ("std_int", lambda L: L.t.arange(3).std()),
    ("argmax_empty", lambda L: L.t.zeros(0).argmax()),
    ("max_empty", lambda L: L.t.zeros(0).max()),
    ("amax_empty_dim", lambda L: L.t.zeros(0, 3).amax(0)),
    ("sum_empty", lambda L: L.t.zeros(0, 3).sum(0)),
    ("min_empty_dim", lambda L: L.t.zeros(2, 0).min(1)),
    ("norm_minus_inf", lambda L: L.t.tensor([0.0, -1.0, 2.0]).norm(p=-math.inf)),
    ("norm_nuc_1d", lambda L: _x(L, 3).norm(p="nuc")),
    ("zeros_too_large", lambda L: L.t.zeros(10**13)),
    ("randn_too_large", lambda L: L.t.randn(10**7, 10**7)),
    ("arange_too_large", lambda L: L.t.arange(10**15)),
    ("contiguous_too_large", lambda L: L.t.ones(3).expand(10**13, 3).contiguous()),
    ("repeat_too_large", lambda L: L.t.ones(3).repeat(10**13)),
]


# Where ember refuses, on purpose, a call PyTorch serves: the probe then asks for a clear
# EmberError (a refusal that says what is missing), not PyTorch's result.
REFUSED_ON_PURPOSE = {
    "conv2d_int_input": "ember convolves in floating point only",
    "avg_pool2d_int_input": "ember averages in floating point only",
}


def _duplicate_group(L):
    p = _param(L, 2)
    opt = L.optim.SGD([p], lr=0.1)
    opt.add_param_group({"params": [p]})


def _torch():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch.nn.functional")  # so that torch.nn.functional is an attribute
    pytest.importorskip("torch.utils.data")
    return torch


def _outcome(L, call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return "ok", call(L)
        except Exception as exc:  # the outcome compared is the exception itself
            return "raised", exc


def _values(result):
    """A comparable form of a call's result: arrays for tensors, recursively."""
    if isinstance(result, ember.Tensor):
        return result.detach().numpy()
    if type(result).__module__.startswith("torch") and hasattr(result, "detach"):
        return result.detach().cpu().numpy()
    if isinstance(result, (tuple, list)):
        return [_values(r) for r in result]
    return None  # modules, optimizers, loaders: their existence is the outcome


def _assert_same_values(ours, theirs, name):
    if isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray), name
        assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
        assert str(ours.dtype) == str(theirs.dtype), (name, ours.dtype, theirs.dtype)
        np.testing.assert_allclose(ours.astype(np.float64), theirs.astype(np.float64),
                                   rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=name)
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), name
        for a, b in zip(ours, theirs):
            _assert_same_values(a, b, name)


def mismatch(name, call) -> str | None:
    """How ember's outcome of the call differs from PyTorch's, or None when it does not."""
    torch_kind, torch_value = _outcome(_lib(_torch()), call)
    ours_kind, ours_value = _outcome(EMBER, call)
    if name in REFUSED_ON_PURPOSE:
        if ours_kind == "raised" and isinstance(ours_value, EmberError):
            return None
        return f"expected a clear refusal ({REFUSED_ON_PURPOSE[name]}), got {ours_value!r}"
    if torch_kind == "raised":
        if ours_kind != "raised":
            return f"PyTorch raised {type(torch_value).__name__}: {torch_value}; ember returned"
        if not isinstance(ours_value, EmberError):
            return f"not an EmberError: {type(ours_value).__name__}: {ours_value}"
        family = next((b for b in _BUILTINS if isinstance(torch_value, b)), None)
        if family is not None and not isinstance(ours_value, family):
            return (f"PyTorch raised a {family.__name__} ({torch_value}), ember a "
                    f"{type(ours_value).__name__} ({ours_value})")
        return None
    if ours_kind == "raised":
        return f"PyTorch returned; ember raised {type(ours_value).__name__}: {ours_value}"
    try:
        _assert_same_values(_values(ours_value), _values(torch_value), name)
    except AssertionError as exc:
        return f"different results: {exc}"
    return None


@pytest.mark.parametrize("name, call", PROBES, ids=[name for name, _ in PROBES])
def test_bad_argument_fails_as_pytorch_does(name, call):
    problem = mismatch(name, call)
    assert problem is None, problem


def test_probes_have_unique_names():
    names = [name for name, _ in PROBES]
    assert len(names) == len(set(names))


if __name__ == "__main__":  # python tests/test_bad_arguments.py: the mismatches, counted
    found = [(name, mismatch(name, call)) for name, call in PROBES]
    for name, problem in found:
        if problem:
            print(f"{name}: {problem[:300]}")
    print(f"{len(PROBES)} probes, {sum(p is not None for _, p in found)} mismatches")
