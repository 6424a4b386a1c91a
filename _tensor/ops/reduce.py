"""The reductions: ember.sum, ember.mean, ember.var, ember.max, ember.argmax, ember.cumsum, ..."""

from __future__ import annotations

import builtins
import functools
import math

from ...autograd import grad_mode
from ...errors import not_implemented_error, runtime_error, type_error
from ...ir.dtypes import get_default_dtype, int64
from ...ir.schema import normalize_dim, normalize_dims
from ..dispatch import dispatch
from ..factories import zeros
from ..out_arg import write_out
from ..tensor import Tensor
from .elementwise import abs, cast, eq, ne, pow, sqrt, where

# -- reductions ------------------------------------------------------------------------------


def _numpy_keywords(fn):
    """Accept numpy's axis= for dim= and keepdims= for keepdim=, as PyTorch does."""

    @functools.wraps(fn)
    def reduction(*args, **kwargs):
        if not kwargs:
            return fn(*args)
        if "axis" in kwargs or "keepdims" in kwargs:
            for alias, name in (("axis", "dim"), ("keepdims", "keepdim")):
                if alias in kwargs:
                    if name in kwargs:
                        raise type_error(f"{fn.__name__}() got both {name}= and its alias "
                                         f"{alias}=")
                    kwargs[name] = kwargs.pop(alias)
        return fn(*args, **kwargs)

    return reduction



def _empty_dims(dim) -> bool:
    return isinstance(dim, (tuple, list)) and not dim


def _dims(input, dim):
    return normalize_dims(dim, input.ndim)


def _sum_dims(input, dim):
    # sum, prod, mean and var read an empty dim list as every dim (all and any do not), as
    # PyTorch's sum, mean and var do
    return normalize_dims(None if isinstance(dim, (tuple, list)) and not dim else dim, input.ndim)


@_numpy_keywords
def sum(input, dim=None, keepdim=False, *, dtype=None, out=None) -> Tensor:
    if dtype is not None:
        input = cast(input, dtype)
    result = dispatch("sum", (input,), {"dims": _sum_dims(input, dim), "keepdim": keepdim})
    return result if out is None else write_out("sum", result, out)


@_numpy_keywords
def prod(input, dim=None, keepdim=False, *, dtype=None) -> Tensor:
    if dtype is not None:
        input = cast(input, dtype)
    return dispatch("prod", (input,), {"dims": _sum_dims(input, dim), "keepdim": keepdim})


@_numpy_keywords
def mean(input, dim=None, keepdim=False, *, dtype=None, out=None) -> Tensor:
    if dtype is not None:
        input = cast(input, dtype)
    result = dispatch("mean", (input,), {"dims": _sum_dims(input, dim), "keepdim": keepdim})
    return result if out is None else write_out("mean", result, out)


@_numpy_keywords
def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None) -> Tensor:
    if isinstance(dim, bool):  # var(x, False): the positional 'unbiased' form
        unbiased, dim = dim, None
    if correction is None:
        correction = 0 if unbiased is False else 1
    return dispatch(
        "var",
        (input,),
        {"dims": _sum_dims(input, dim), "keepdim": keepdim, "correction": correction},
    )


@_numpy_keywords
def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None) -> Tensor:
    return _root(var(input, dim, unbiased, keepdim, correction=correction), 2)


@_numpy_keywords
def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(dim, bool):  # var_mean(x, False): the positional 'unbiased' form
        unbiased, dim = dim, None
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


@_numpy_keywords
def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(dim, bool):
        unbiased, dim = dim, None
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


@_numpy_keywords
def logsumexp(input, dim, keepdim=False) -> Tensor:
    if not input.dtype.is_floating_point:  # integers and bool reduce in the default float
        input = cast(input, get_default_dtype())
    return dispatch("logsumexp", (input,), {"dims": _dims(input, dim), "keepdim": keepdim})


@_numpy_keywords
def amax(input, dim=(), keepdim=False) -> Tensor:
    if _empty_dims(dim):
        _check_whole_reduction("amax", input)
    dims = _dims(input, None if _empty_dims(dim) else dim)
    return dispatch("amax", (input,), {"dims": dims, "keepdim": keepdim})


@_numpy_keywords
def amin(input, dim=(), keepdim=False) -> Tensor:
    if _empty_dims(dim):
        _check_whole_reduction("amin", input)
    dims = _dims(input, None if _empty_dims(dim) else dim)
    return dispatch("amin", (input,), {"dims": dims, "keepdim": keepdim})


class _ValuesIndices(tuple):
    """(values, indices), also readable as .values and .indices, as PyTorch returns."""

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]


def _check_whole_reduction(op: str, input) -> None:
    """A max or min of every element of an empty tensor: PyTorch's RuntimeError (a named dim
    of size 0 is the type rule's IndexError)."""
    if input.numel() == 0:
        raise runtime_error(
            f"{op}(): Expected reduction dim to be specified for input.numel() == 0. Specify "
            f"the reduction dim with the 'dim' argument (input of shape {list(input.shape)})."
        )


def _max_or_min(op, full_op, input, dim, keepdim, other):
    if isinstance(dim, Tensor):
        other, dim = dim, None
    if other is not None:
        return dispatch("maximum" if op == "max_dim" else "minimum", (input, other))
    if dim is None:
        _check_whole_reduction("max" if op == "max_dim" else "min", input)
        return dispatch(full_op, (input,), {"dims": _dims(input, None), "keepdim": False})
    dim = normalize_dim(dim, input.ndim) if input.ndim else normalize_dim(dim, 0)
    if input.ndim == 0:
        index = zeros((), dtype=int64, device=input.device)
        return _ValuesIndices((dispatch("clone", (input,)), index))
    return _ValuesIndices(dispatch(op, (input,), {"dim": dim, "keepdim": keepdim}))


@_numpy_keywords
def max(input, dim=None, keepdim=False, *, other=None):
    return _max_or_min("max_dim", "amax", input, dim, keepdim, other)


@_numpy_keywords
def min(input, dim=None, keepdim=False, *, other=None):
    return _max_or_min("min_dim", "amin", input, dim, keepdim, other)


@_numpy_keywords
def argmax(input, dim=None, keepdim=False) -> Tensor:
    if dim is not None:
        dim = normalize_dim(dim, input.ndim)
    return dispatch("argmax", (input,), {"dim": dim, "keepdim": keepdim})


@_numpy_keywords
def argmin(input, dim=None, keepdim=False) -> Tensor:
    if dim is not None:
        dim = normalize_dim(dim, input.ndim)
    return dispatch("argmin", (input,), {"dim": dim, "keepdim": keepdim})


@_numpy_keywords
def all(input, dim=None, keepdim=False) -> Tensor:
    return dispatch("all", (input,), {"dims": _dims(input, dim), "keepdim": keepdim})


@_numpy_keywords
def any(input, dim=None, keepdim=False) -> Tensor:
    return dispatch("any", (input,), {"dims": _dims(input, dim), "keepdim": keepdim})


@_numpy_keywords
def cummax(input, dim: int):
    """(the running maximum along dim, the index of the element each came from)."""
    dim = normalize_dim(dim, builtins.max(input.ndim, 1))
    return _ValuesIndices(dispatch("cummax", (input,), {"dim": dim}))


@_numpy_keywords
def cummin(input, dim: int):
    """(the running minimum along dim, the index of the element each came from)."""
    dim = normalize_dim(dim, builtins.max(input.ndim, 1))
    return _ValuesIndices(dispatch("cummin", (input,), {"dim": dim}))


@_numpy_keywords
def cumsum(input, dim, *, dtype=None) -> Tensor:
    if dtype is not None:
        input = cast(input, dtype)
    return dispatch("cumsum", (input,), {"dim": normalize_dim(dim, input.ndim)})


@_numpy_keywords
def cumprod(input, dim, *, dtype=None) -> Tensor:
    """The running product along dim (integers and bool multiply in int64)."""
    if dtype is not None:
        input = cast(input, dtype)
    return dispatch("cumprod", (input,), {"dim": normalize_dim(dim, input.ndim)})


@_numpy_keywords
def logcumsumexp(input, dim) -> Tensor:
    """log(cumsum(exp(input), dim)), computed without overflow."""
    return dispatch("logcumsumexp", (input,), {"dim": normalize_dim(dim, input.ndim)})


def norm(input, p=2, dim=None, keepdim=False):
    if isinstance(p, str) and p != "fro":
        if p == "nuc":
            raise not_implemented_error("norm(p='nuc'): ember has no nuclear norm")
        raise runtime_error(f"norm: Order {p!r} not supported (a number, 'fro' or 'nuc')")
    if p == 2 or p == "fro":
        return _root(sum(input * input, dim, keepdim), 2)
    if p == 1:
        return sum(abs(input), dim, keepdim)
    if p == math.inf:
        return amax(abs(input), () if dim is None else dim, keepdim)
    if p == -math.inf:
        return amin(abs(input), () if dim is None else dim, keepdim)
    if p == 0:  # the count of non-zero entries, with a zero gradient
        return sum(where(ne(input, 0), 1.0, input * 0), dim, keepdim)
    return _root(sum(pow(abs(input), p), dim, keepdim), p)


def _root(total, p):
    """total ** (1 / p), with PyTorch's zero gradient (not inf * 0 = nan) where total is 0.
    Where no gradient is recorded (clip_grad_norm_ takes one norm per parameter under
    no_grad) the root alone gives the same numbers: 0 ** (1 / p) is 0."""
    if not (total._requires_grad and grad_mode.state.enabled):
        return sqrt(total) if p == 2 else pow(total, 1.0 / p)
    zero = eq(total, 0)
    safe = where(zero, 1.0, total)
    return where(zero, 0.0, sqrt(safe) if p == 2 else pow(safe, 1.0 / p))


@_numpy_keywords
def count_nonzero(input, dim=None):
    return sum(ne(input, 0), dim)
