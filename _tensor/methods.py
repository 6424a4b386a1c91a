"""Tensor methods and Python operators, bound from the op functions in ops.py."""

from __future__ import annotations

from ..autograd import grad_mode
from ..autograd.grad_mode import no_grad
from ..errors import runtime_error
from ..ir.schema import declared
from ..runtime.kernels import KERNELS
from . import factories
from . import ops as E
from .dispatch import dispatch
from .factories import check_number, full, full_like, ones_like, rand, randn, tensor
from .indexing import getitem, setitem
from .inplace import apply_inplace
from .tensor import Tensor

# methods that are the op function with self first: the declared ops' (ir/ops: variants),
# then these, which are written from primitives or take other arguments
_SAME_NAME = [
    "nan_to_num",
    "logit",
    "sinc",
    "mvlgamma",
    "clamp_min",
    "clamp_max",
    "square",
    "isnan",
    "isinf",
    "isfinite",
    "lerp",
    "allclose",
    "equal",
    "sum",
    "prod",
    "mean",
    "var",
    "std",
    "logsumexp",
    "amax",
    "amin",
    "max",
    "min",
    "argmax",
    "argmin",
    "all",
    "any",
    "cumsum",
    "cumprod",
    "logcumsumexp",
    "norm",
    "count_nonzero",
    "reshape",
    "view",
    "view_as",
    "reshape_as",
    "permute",
    "transpose",
    "swapaxes",
    "swapdims",
    "t",
    "squeeze",
    "unsqueeze",
    "flatten",
    "unflatten",
    "expand",
    "expand_as",
    "broadcast_to",
    "repeat",
    "narrow",
    "split",
    "chunk",
    "unbind",
    "select",
    "flip",
    "tril",
    "triu",
    "contiguous",
    "movedim",
    "gather",
    "scatter",
    "scatter_add",
    "scatter_reduce",
    "index_select",
    "index_add",
    "masked_select",
    "nonzero",
    "argwhere",
    "take_along_dim",
    "matmul",
    "mm",
    "bmm",
    "mv",
    "dot",
    "outer",
    "where",
    "var_mean",
    "std_mean",
    "softmax",
    "log_softmax",
    "argsort",
    "msort",
    "topk",
    "kthvalue",
    "median",
    "nanmedian",
    "mode",
    "unique",
    "unique_consecutive",
    "bincount",
    "histc",
    "isclose",
    "frac",
    "roll",
    "diagonal",
    "diag",
    "diag_embed",
    "trace",
    "unfold",
    "repeat_interleave",
    "multinomial",
]

for _schema in declared("method"):
    for _name in (_schema.name, *_schema.aliases):
        setattr(Tensor, _name, getattr(E, _name))

for _name in _SAME_NAME:
    if _name == "where":
        Tensor.where = lambda self, condition, other: E.where(condition, self, other)
    elif _name == "contiguous":
        Tensor.contiguous = E.contiguous
    else:
        setattr(Tensor, _name, getattr(E, _name))

Tensor.type_as = lambda self, other: E.cast(self, other.dtype)
Tensor.moveaxis = E.movedim
Tensor.frac_ = lambda self: self.sub_(E.trunc(self))
Tensor.polygamma = lambda self, n: E.polygamma(n, self)
Tensor.polygamma_ = lambda self, n: apply_inplace(self, lambda src: E.polygamma(n, src))
Tensor.mT = property(E.mT)
Tensor.T = property(lambda self: E.permute(self, *reversed(range(self.ndim))))
Tensor.__getitem__ = getitem
Tensor.__setitem__ = setitem


def _reflected(fn):
    return lambda self, other: fn(other, self)


Tensor.__add__ = E.add
Tensor.__radd__ = _reflected(E.add)
Tensor.__sub__ = E.sub
Tensor.__rsub__ = _reflected(E.sub)
Tensor.__mul__ = E.mul
Tensor.__rmul__ = _reflected(E.mul)
Tensor.__truediv__ = E.div
Tensor.__rtruediv__ = _reflected(E.div)
Tensor.__floordiv__ = E.floor_divide
Tensor.__rfloordiv__ = _reflected(E.floor_divide)
Tensor.__mod__ = E.remainder
Tensor.__rmod__ = _reflected(E.remainder)
Tensor.__pow__ = E.pow
Tensor.__rpow__ = _reflected(E.pow)
Tensor.__matmul__ = E.matmul
Tensor.__rmatmul__ = _reflected(E.matmul)
Tensor.__neg__ = E.neg
Tensor.__abs__ = E.abs
Tensor.__pos__ = lambda self: self
Tensor.__eq__ = E.eq
Tensor.__ne__ = E.ne
Tensor.__lt__ = E.lt
Tensor.__le__ = E.le
Tensor.__gt__ = E.gt
Tensor.__ge__ = E.ge


def _bitwise(logical: str, bitwise: str, reflected: bool = False):
    """&, |, ^ as PyTorch reads them: logical on bool tensors (so masks stay logical ops that
    fuse and export as such), bitwise on integers; floats raise (the bitwise op's type rule)."""
    logical_fn, bitwise_fn = getattr(E, logical), getattr(E, bitwise)

    def fn(self, other):
        a, b = (other, self) if reflected else (self, other)
        if self._dtype.name == "bool" and (
                isinstance(other, bool) or getattr(other, "_dtype", None) is self._dtype):
            return logical_fn(a, b)
        return bitwise_fn(a, b)

    return fn


def _invert(self):
    return E.logical_not(self) if self._dtype.name == "bool" else E.bitwise_not(self)


def _shift(fn, reflected: bool = False):
    return (lambda self, other: fn(other, self)) if reflected else fn


for _op, _logical_op, _bitwise_op in (("and", "logical_and", "bitwise_and"),
                                      ("or", "logical_or", "bitwise_or"),
                                      ("xor", "logical_xor", "bitwise_xor")):
    setattr(Tensor, f"__{_op}__", _bitwise(_logical_op, _bitwise_op))
    setattr(Tensor, f"__r{_op}__", _bitwise(_logical_op, _bitwise_op, reflected=True))
Tensor.__invert__ = _invert
Tensor.__lshift__ = E.bitwise_left_shift
Tensor.__rlshift__ = _shift(E.bitwise_left_shift, reflected=True)
Tensor.__rshift__ = E.bitwise_right_shift
Tensor.__rrshift__ = _shift(E.bitwise_right_shift, reflected=True)


# -- in-place forms: the declared ops' (ir/ops: variants), then these ------------------------

_INPLACE = [
    "nan_to_num",
    "logit",
    "sinc",
    "mvlgamma",
    "cumsum",
    "cumprod",
    "clamp_min",
    "clamp_max",
    "scatter",
    "scatter_add",
    "scatter_reduce",
    "index_add",
    "lerp",
    "tril",
    "triu",
]


def _records_grad(self, args) -> bool:
    if not grad_mode.state.enabled:
        return False
    return self._requires_grad or any(isinstance(a, Tensor) and a._requires_grad for a in args)


def _inplace_method(name):
    fn = getattr(E, name)
    # a primitive of the same name whose kernel can write into its output (the ufuncs) lets
    # the in-place form write straight into the tensor's array when no gradient is recorded:
    # no temporary, no copy (optimizer steps, no_grad updates)
    direct = getattr(KERNELS.get(name), "writes_out", False)

    def method(self, *args, **kwargs):
        if direct and len(args) <= 1 and not _records_grad(self, args):
            alpha = kwargs.get("alpha", 1) if set(kwargs) <= {"alpha"} else None
            if alpha is not None:
                operands = args if alpha == 1 else (E.mul(args[0], alpha),)
                if dispatch(name, (self, *operands), out=self) is not None:
                    return self
        return apply_inplace(self, lambda src: fn(src, *args, **kwargs))

    method.__name__ = name + "_"
    return method


for _schema in declared("inplace"):
    for _name in (_schema.name, *_schema.aliases):
        setattr(Tensor, _name + "_", _inplace_method(_name))
for _name in _INPLACE:
    setattr(Tensor, _name + "_", _inplace_method(_name))

Tensor.__iadd__ = Tensor.add_
Tensor.__isub__ = Tensor.sub_
Tensor.__imul__ = Tensor.mul_
Tensor.__itruediv__ = Tensor.div_
Tensor.__ipow__ = Tensor.pow_
Tensor.__imod__ = Tensor.remainder_
Tensor.__iand__ = Tensor.bitwise_and_
Tensor.__ior__ = Tensor.bitwise_or_
Tensor.__ixor__ = Tensor.bitwise_xor_
Tensor.__ilshift__ = Tensor.bitwise_left_shift_
Tensor.__irshift__ = Tensor.bitwise_right_shift_
Tensor.__ifloordiv__ = Tensor.floor_divide_


def _fill(self, value):
    check_number(value, "fill_(): argument 'value'")
    if isinstance(value, Tensor):
        value = value.item()
    if not self._requires_grad:
        return apply_inplace(self, lambda src: full_like(src, value))
    # keeps the tensor in the graph with a zero gradient, as PyTorch's fill_
    return apply_inplace(self, lambda src: E.masked_fill(src, ones_like(src, dtype="bool"), value))


def _zero(self):
    return _fill(self, 0)


def _copy(self, src, non_blocking=False):
    src = src.to(self.device) if src.device != self.device else src
    return apply_inplace(self, lambda dst: E.expand(E.cast(src, self.dtype), tuple(dst.shape)))


def _uniform(self, a=0.0, b=1.0):
    if a > b:
        raise runtime_error(f"uniform_ expects to return a [from, to) range, but found "
                            f"from={a} > to={b}")
    r = rand(tuple(self.shape), dtype=self.dtype, device=self.device)
    return _copy_nograd(self, r * (b - a) + a)


def _normal(self, mean=0.0, std=1.0):
    if std < 0:
        raise runtime_error(f"normal expects std >= 0.0, but found std {std}")
    r = randn(tuple(self.shape), dtype=self.dtype, device=self.device)
    return _copy_nograd(self, r * std + mean)


def _bernoulli_(self, p=0.5):
    if not 0 <= p <= 1:
        raise runtime_error(f"bernoulli_ expects p to be in [0, 1], but got p={p}")
    return _copy_nograd(self, E.bernoulli(full_like(self, p, dtype="float32")))


def _copy_nograd(self, value):
    with no_grad():
        return _copy(self, value)


Tensor.fill_ = _fill
Tensor.zero_ = _zero
Tensor.copy_ = _copy
Tensor.uniform_ = _uniform
Tensor.normal_ = _normal
Tensor.bernoulli_ = _bernoulli_
Tensor.bernoulli = lambda self, p=None: E.bernoulli(self, p)
Tensor.new_zeros = lambda self, *size, dtype=None, device=None, requires_grad=False: _new(
    "zeros", self, size, dtype, device, requires_grad
)
Tensor.new_ones = lambda self, *size, dtype=None, device=None, requires_grad=False: _new(
    "ones", self, size, dtype, device, requires_grad
)
Tensor.new_empty = lambda self, *size, dtype=None, device=None, requires_grad=False: _new(
    "empty", self, size, dtype, device, requires_grad
)


def _new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
    return full(
        tuple(size),
        fill_value,
        dtype=dtype or self.dtype,
        device=device or self.device,
        requires_grad=requires_grad,
    )


def _new_tensor(self, data, *, dtype=None, device=None, requires_grad=False):
    return tensor(
        data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad
    )


def _new(kind, self, size, dtype, device, requires_grad):
    return getattr(factories, kind)(
        *size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad
    )


Tensor.new_full = _new_full
Tensor.new_tensor = _new_tensor
Tensor.index_put_ = lambda self, indices, values, accumulate=False: apply_inplace(
    self, lambda src: _index_put(src, indices, values, accumulate)
)
Tensor.index_put = lambda self, indices, values, accumulate=False: _index_put(
    self, indices, values, accumulate
)


def _index_put(x, indices, values, accumulate):
    indices = tuple(indices)
    return dispatch(
        "index_put",
        (x, E.cast(values, x.dtype), *indices),
        {"dims": tuple(range(len(indices))), "accumulate": bool(accumulate)},
    )
