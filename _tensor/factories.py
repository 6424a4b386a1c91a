"""Tensor factories: tensor, as_tensor, from_numpy, zeros, ones, full, arange, rand, ..."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from ..errors import (
    not_implemented_error,
    out_of_memory_error,
    runtime_error,
    type_error,
    type_name,
    value_error,
)
from ..ir.dtypes import as_dtype, bool_, get_default_dtype, int64, promote_types
from ..ir.dtypes import from_numpy as dtype_from_numpy
from ..runtime import random
from ..runtime.device import CPU, array_module, as_device, device, device_of_array, to_device
from . import hooks
from .tensor import Size, Tensor

_default_device: device | None = None  # set_default_device's; None is the CPU


def set_default_device(dev) -> None:
    """The device factories use when given none (torch.set_default_device); None resets it
    to the CPU."""
    global _default_device
    _default_device = None if dev is None else _device(dev)


def get_default_device() -> device:
    return _default_device or CPU


def _device(dev) -> device:
    dev = as_device(dev if dev is not None else _default_device)
    if dev.type == "cuda" and dev.index is None:
        dev = device("cuda", 0)
    return dev


def _exact_sizes(fn):
    """A factory whose numbers (data, fill values, ranges) become constants of a traced
    graph: a size read under a symbolic trace that reaches them is made exact."""

    @functools.wraps(fn)
    def factory(*args, **kwargs):
        if hooks.active_trace is not None:
            hooks.specialize((args, kwargs))
        return fn(*args, **kwargs)

    return factory


def _made(t: Tensor) -> Tensor:
    """Tell an active trace that a factory made t (a constant of the graph)."""
    if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None:
        trace.factory(t, False, "")
    return t


def _finish(array, dtype, dev, requires_grad) -> Tensor:
    array = to_device(array, dev)
    t = _made(Tensor._make(array, dtype, dev))
    if requires_grad:
        t.requires_grad_(True)
    return t


def _size_or_keyword(name: str, size_args: tuple, size) -> tuple:
    """The size of zeros(2, 3), zeros((2, 3)) or zeros(size=(2, 3)), as PyTorch takes it."""
    if size is None:
        return size_args
    if size_args:
        raise type_error(f"{name}() got multiple values for argument 'size'")
    return (size,)


def _size(size) -> tuple:
    if (
        len(size) == 1
        and isinstance(size[0], (Sequence, np.ndarray))
        and not isinstance(size[0], str)
    ):
        size = tuple(size[0])
    out = []
    for d in size:
        if isinstance(d, Tensor):
            d = int(d)
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool):
            raise type_error(f"size must be a sequence of ints, got {type(d).__name__} in {size}")
        if d < 0:
            raise runtime_error(
                f"Trying to create tensor with negative dimension {d}: {list(size)}"
            )
        # a symbolic size (an int subclass, under a trace) stays itself, for _traced
        out.append(d if d.__class__ is not np.int64 and isinstance(d, int) else int(d))
    return tuple(out)


def check_number(value, what: str) -> None:
    """A fill value or bound must be a number: Python's, numpy's, or a one-element tensor."""
    if isinstance(value, (int, float)) or (
        isinstance(value, np.generic) and value.dtype.kind in "biuf"
    ) or (isinstance(value, Tensor) and value.numel() == 1):
        return
    raise type_error(f"{what} must be Number, not {type(value).__name__}")


def _traced(op: str, size: tuple, d, dev, requires_grad, **attrs) -> Tensor | None:
    """Under a trace, a factory call as the graph op `op` (full, uniform, normal, randint),
    so its sizes stay symbolic and random numbers are drawn on every call, in eager's order
    from eager's stream; None where it is not traced so (a constant of the graph then)."""
    if (hooks.active_trace is None or hooks.trace_here() is None or dev.type != "cpu"
            or requires_grad):
        return None
    from .dispatch import dispatch

    return dispatch(op, (), {"shape": size, "dtype": d.name, **attrs})


def _element_dtype(value):
    """The dtype one element of tensor()'s data asks for: a numpy scalar keeps its own."""
    if isinstance(value, np.generic):  # before float: np.float64 is a Python float
        return dtype_from_numpy(value.dtype)
    if isinstance(value, bool):
        return bool_
    if isinstance(value, int):
        return int64
    if isinstance(value, float):
        return get_default_dtype()
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.dtype
    if isinstance(value, (str, bytes)):
        raise type_error(f"tensor(): invalid data type '{type(value).__name__}'")
    if isinstance(value, complex):
        raise not_implemented_error("tensor(): ember has no complex dtypes")
    raise runtime_error(f"tensor(): could not infer dtype of {type(value).__name__}")


def _ragged_error(data, dim: int = 0):
    """The error for nested sequences that are not rectangular, naming where, as PyTorch."""
    if not isinstance(data, (list, tuple)):
        return None
    lengths = [len(v) if isinstance(v, (list, tuple)) else None for v in data]
    if any(n is None for n in lengths) and any(n is not None for n in lengths):
        return type_error(f"tensor(): nested sequences mix numbers and sequences at dim "
                          f"{dim + 1}")
    for n in lengths:
        if n != lengths[0]:
            return value_error(
                f"tensor(): expected sequence of length {lengths[0]} at dim {dim + 1} (got {n})"
            )
    for v in data:
        error = _ragged_error(v, dim + 1)
        if error is not None:
            return error
    return None


def _infer_dtype(data):
    """PyTorch's dtype for nested data: the promotion of its elements' dtypes, where a bool is
    bool, an int int64, a float the default dtype and a numpy scalar its own dtype."""
    if isinstance(data, (int, float, np.generic)):
        return _element_dtype(data)
    flat = np.asarray(data, dtype=object).reshape(-1)
    if len(flat) == 0:
        return get_default_dtype()
    result = None
    for v in flat:
        if isinstance(v, (list, tuple)):
            raise _ragged_error(data) or value_error("tensor(): nested sequences must be "
                                                     "rectangular")
        d = _element_dtype(v)
        result = d if result is None else promote_types(result, d)
    return result


@_exact_sizes
def tensor(data, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of data (nested lists, numbers, arrays or tensors)."""
    dev = _device(device) if device is not None or _default_device is not None else None
    if isinstance(data, Tensor):
        src = data.detach()
        out = src.to(dtype=dtype) if dtype is not None else src
        out = out.clone() if out is src else out
        out = out.to(dev) if dev is not None else out
        if requires_grad:
            out.requires_grad_(True)
        return out
    if isinstance(data, np.generic):  # a numpy scalar is a 0-d array and keeps its dtype
        data = np.asarray(data)
    if isinstance(data, np.ndarray) or hasattr(data, "__cuda_array_interface__"):
        d = as_dtype(dtype) if dtype is not None else dtype_from_numpy(data.dtype)
        array = data.astype(d.np, copy=True)
        return _finish(array, d, dev or device_of_array(array), requires_grad)
    d = as_dtype(dtype) if dtype is not None else _infer_dtype(data)
    try:
        with np.errstate(over="ignore"):  # 1e5 as float16 is inf, silently, as in PyTorch
            array = np.array(data, dtype=d.np)
    except (ValueError, TypeError) as exc:
        _infer_dtype(data)  # raises the error PyTorch gives for this data, where it has one
        raise value_error(
            f"tensor(): could not build a tensor from {type(data).__name__}: {exc}"
        ) from None
    if array.dtype == object:
        raise type_error("tensor(): nested sequences must be rectangular and hold numbers")
    return _finish(array, d, dev or CPU, requires_grad)


@_exact_sizes
def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like tensor(), but shares memory with a tensor or array when dtype and device allow."""
    if isinstance(data, Tensor):
        out = data if dtype is None else data.to(dtype=dtype)
        return out if device is None else out.to(_device(device))
    if isinstance(data, np.ndarray) and (device is None or _device(device).type == "cpu"):
        d = as_dtype(dtype) if dtype is not None else dtype_from_numpy(data.dtype)
        if data.dtype == d.np:
            hooks.stop_trace("a tensor sharing a numpy array's memory (as_tensor)")
            return Tensor._make(data, d, CPU)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor sharing array's memory (writes through either are seen by both)."""
    if not isinstance(array, np.ndarray):
        raise type_error(f"from_numpy() expected an np.ndarray, got {type(array).__name__}")
    hooks.stop_trace("a tensor sharing a numpy array's memory (from_numpy)")
    return Tensor._make(array, dtype_from_numpy(array.dtype), CPU)


def from_dlpack(ext_tensor) -> Tensor:
    """A tensor sharing the memory of any object with __dlpack__ (a PyTorch or cupy tensor,
    a numpy array), as torch.from_dlpack: CPU memory becomes a CPU tensor, CUDA memory a
    CUDA one (cupy)."""
    if isinstance(ext_tensor, Tensor):
        return ext_tensor
    if not hasattr(ext_tensor, "__dlpack__"):
        raise type_error(f"from_dlpack() expected an object with __dlpack__, got "
                         f"{type_name(ext_tensor)}")
    device_type = ext_tensor.__dlpack_device__()[0] if hasattr(
        ext_tensor, "__dlpack_device__") else 1
    hooks.stop_trace("a tensor sharing another library's memory (from_dlpack)")
    if device_type == 1:  # kDLCPU
        array = np.from_dlpack(ext_tensor)
        return Tensor._make(array, dtype_from_numpy(array.dtype), CPU)
    import cupy

    array = cupy.from_dlpack(ext_tensor)
    return Tensor._make(array, dtype_from_numpy(array.dtype), device_of_array(array))


def _filled(fill, size, dtype, dev, requires_grad, default=None, value=None):
    dev = _device(dev)
    d = as_dtype(dtype) if dtype is not None else (default or get_default_dtype())
    if value is not None and hooks.active_trace is not None:
        shape = _size(size)
        if any(n.__class__ is not int for n in shape):  # a symbolic size: keep it so
            made = _traced("full", shape, d, dev, requires_grad, value=value)
            if made is not None:
                return made
    xp = array_module(dev)
    shape = _size(size)
    try:
        if dev.type == "cuda":
            with xp.cuda.Device(dev.index):
                array = fill(xp, shape, d.np)
        else:
            array = fill(xp, shape, d.np)
    except MemoryError as exc:  # numpy's and cupy's out-of-memory errors alike
        raise out_of_memory_error(
            f"can't allocate memory for a tensor of size {list(shape)} and dtype {d.name} on "
            f"{dev}: {exc}"
        ) from None
    t = _made(Tensor._make(array, d, dev))
    if requires_grad:
        t.requires_grad_(True)
    return t


def zeros(*size_args, size=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    size = _size_or_keyword("zeros", size_args, size)
    return _filled(lambda xp, s, d: xp.zeros(s, d), size, dtype, device, requires_grad,
                   value=0)


def ones(*size_args, size=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    size = _size_or_keyword("ones", size_args, size)
    return _filled(lambda xp, s, d: xp.ones(s, d), size, dtype, device, requires_grad,
                   value=1)


def empty(*size_args, size=None, dtype=None, device=None, requires_grad=False,
          memory_format=None) -> Tensor:
    size = _size_or_keyword("empty", size_args, size)
    # (under a trace with a symbolic size, zeros: a graph has no uninitialized memory)
    return _relaid(memory_format, None,
                   _filled(lambda xp, s, d: xp.empty(s, d), size, dtype, device, requires_grad,
                           value=0))


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_number(fill_value, "full(): argument 'fill_value'")
    if hooks.active_trace is not None:
        hooks.specialize(fill_value)  # a constant of the graph; the sizes may stay symbolic
    if dtype is None:
        dtype = (
            as_dtype("bool")
            if isinstance(fill_value, bool)
            else int64
            if isinstance(fill_value, int)
            else get_default_dtype()
        )
    return _filled(lambda xp, s, d: xp.full(s, fill_value, d), (size,), dtype, device,
                   requires_grad, value=fill_value)


def _like(fn, input, dtype, device, requires_grad, *args):
    _check_like(fn.__name__, input)
    return fn(
        *args,
        tuple(input.shape),
        dtype=dtype or input.dtype,
        device=device if device is not None else input.device,
        requires_grad=requires_grad,
    )


def zeros_like(input, *, dtype=None, device=None, requires_grad=False,
               memory_format=None) -> Tensor:
    return _relaid(memory_format, input, _like(zeros, input, dtype, device, requires_grad))


def ones_like(input, *, dtype=None, device=None, requires_grad=False,
              memory_format=None) -> Tensor:
    return _relaid(memory_format, input, _like(ones, input, dtype, device, requires_grad))


def empty_like(input, *, dtype=None, device=None, requires_grad=False,
               memory_format=None) -> Tensor:
    return _relaid(memory_format, input, _like(empty, input, dtype, device, requires_grad))


def _relaid(fmt, like, t):
    from .memory_format import relaid  # deferred: a small module most programs never load

    return t if fmt is None and (like is None or like._data.flags.c_contiguous) \
        else relaid(t, fmt, like)


def _check_like(name: str, input) -> None:
    if not isinstance(input, Tensor):
        raise type_error(f"{name}_like(): argument 'input' must be Tensor, not "
                         f"{type_name(input)}")


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False,
              memory_format=None) -> Tensor:
    _check_like("full", input)
    return _relaid(memory_format, input, full(
        tuple(input.shape),
        fill_value,
        dtype=dtype or input.dtype,
        device=device if device is not None else input.device,
        requires_grad=requires_grad,
    ))


@_exact_sizes
def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    if end is None:
        start, end = 0, start
    for name, value in (("start", start), ("end", end), ("step", step)):
        check_number(value, f"arange(): argument '{name}'")
    if step == 0:
        raise runtime_error("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise runtime_error(
            f"upper bound and larger bound inconsistent with step sign: start={start}, "
            f"end={end}, step={step}"
        )
    if dtype is None:
        is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end, step))
        dtype = int64 if is_int else get_default_dtype()
    d = as_dtype(dtype)
    n = max(0, math.ceil((end - start) / step))
    if n > np.iinfo(np.int64).max // max(d.itemsize, 1):
        raise runtime_error(f"arange: invalid size, possible overflow? ({n} elements from "
                            f"start={start}, end={end}, step={step})")
    return _filled(
        lambda xp, s, npd: (
            (start + step * xp.arange(n, dtype=np.float64)).astype(npd)
            if d.is_floating_point
            else xp.arange(start, start + n * step, step, dtype=npd)[:n]
        ),
        (n,),
        d,
        device,
        requires_grad,
    )


@_exact_sizes
def linspace(start, end, steps: int, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    if steps < 0:
        raise runtime_error("linspace: number of steps must be non-negative")
    return _filled(
        lambda xp, s, npd: xp.linspace(start, end, steps).astype(npd),
        (steps,),
        dtype,
        device,
        requires_grad,
    )


@_exact_sizes
def logspace(
    start, end, steps: int, base: float = 10.0, *, dtype=None, device=None, requires_grad=False
) -> Tensor:
    return _filled(
        lambda xp, s, npd: xp.logspace(start, end, steps, base=base).astype(npd),
        (steps,),
        dtype,
        device,
        requires_grad,
    )


@_exact_sizes
def eye(n: int, m: int | None = None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled(
        lambda xp, s, npd: xp.eye(n, m, dtype=npd),
        (n, n if m is None else m),
        dtype,
        device,
        requires_grad,
    )


def manual_seed(seed: int):
    """Seed every device's generator; the same seed gives the same numbers. Returns the
    global CPU stream's Generator (ember.default_generator), as PyTorch does."""
    random.manual_seed(seed)
    return default_generator


def seed() -> int:
    s = int(np.random.SeedSequence().entropy % (2**63))
    random.manual_seed(s)
    return s


def initial_seed() -> int:
    return random.initial_seed()


class Generator(random.Generator):
    """A seeded CPU random stream of its own, as torch.Generator: passed as `generator=`."""

    def get_state(self) -> Tensor:
        """The stream's position as a uint8 tensor: set_state() of it resumes from here."""
        return from_numpy(super().get_state())


class _DefaultGenerator(Generator):
    """The global CPU stream as a Generator, as torch.default_generator: manual_seed()
    returns it, and passed as generator= it draws from the global stream itself."""

    def __init__(self):
        self.device = CPU

    @property
    def _np(self) -> np.random.Generator:
        return random.generator(np)

    @property
    def _seed(self) -> int:
        return random.initial_seed()

    def manual_seed(self, seed: int) -> Generator:  # (Generator.seed() reseeds through it)
        random.manual_seed(seed)
        return self

    def __repr__(self) -> str:
        return f"<ember.Generator(device='cpu', default, initial_seed={self._seed})>"


default_generator = _DefaultGenerator()


def rand(
    *size_args, size=None, dtype=None, device=None, requires_grad=False, generator=None
) -> Tensor:
    size = _size_or_keyword("rand", size_args, size)
    _float_only("rand", dtype)
    made = _random("uniform", "rand", size, dtype, device, requires_grad, generator)
    if made is not None:
        return made
    return _filled(
        lambda xp, s, d: random.uniform(xp, s, d, generator), size, dtype, device, requires_grad
    )


def randn(
    *size_args, size=None, dtype=None, device=None, requires_grad=False, generator=None
) -> Tensor:
    size = _size_or_keyword("randn", size_args, size)
    _float_only("randn", dtype)
    made = _random("normal", "randn", size, dtype, device, requires_grad, generator)
    if made is not None:
        return made
    return _filled(
        lambda xp, s, d: random.normal(xp, s, d, generator), size, dtype, device, requires_grad
    )


def _random(op, name, size, dtype, dev, requires_grad, generator, default=None, **attrs):
    """Under a trace: the draw as a graph op (the stream's next numbers on every call), or,
    where it cannot be one (a generator of its own, a GPU, requires_grad), a fallback."""
    if hooks.active_trace is None or hooks.trace_here() is None:
        return None
    if generator is None:
        d = as_dtype(dtype) if dtype is not None else (default or get_default_dtype())
        made = _traced(op, _size(size), d, _device(dev), requires_grad, **attrs)
        if made is not None:
            return made
    hooks.stop_trace(f"the random factory ember.{name} with a generator of its own, on a GPU "
                     f"or requiring grad (its numbers would be frozen)")
    return None


def _float_only(op, dtype):
    if dtype is not None and not as_dtype(dtype).is_floating_point:
        # PyTorch: a RuntimeError ("normal_kernel_cpu" not implemented for 'Long')
        raise runtime_error(f"{op}: expected a floating-point dtype, got {as_dtype(dtype).name}")


def randint(
    low, high=None, size=None, *, dtype=None, device=None, requires_grad=False, generator=None
) -> Tensor:
    if size is None:
        # randint(high, size)
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if low >= high:
        raise runtime_error(
            f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}"
        )
    made = _random("randint", "randint", (tuple(size),), dtype, device, requires_grad,
                   generator, default=int64, low=int(low), high=int(high))
    if made is not None:
        return made
    return _filled(
        lambda xp, s, d: random.integers(xp, low, high, s, d, generator),
        (tuple(size),),
        dtype or int64,
        device,
        requires_grad,
        default=int64,
    )


def randperm(n: int, *, dtype=None, device=None, requires_grad=False, generator=None) -> Tensor:
    hooks.stop_trace("the random factory ember.randperm (its numbers would be frozen)")
    return _filled(
        lambda xp, s, d: random.permutation(xp, n, generator).astype(d),
        (n,),
        dtype or int64,
        device,
        requires_grad,
        default=int64,
    )


def rand_like(input, *, dtype=None, device=None, requires_grad=False,
              memory_format=None) -> Tensor:
    return _relaid(memory_format, input, _like(rand, input, dtype, device, requires_grad))


def randn_like(input, *, dtype=None, device=None, requires_grad=False,
               memory_format=None) -> Tensor:
    return _relaid(memory_format, input, _like(randn, input, dtype, device, requires_grad))


def randint_like(input, low=0, high=None, *, dtype=None, device=None) -> Tensor:
    if high is None:
        low, high = 0, low
    return randint(
        low,
        high,
        tuple(input.shape),
        dtype=dtype or input.dtype,
        device=device if device is not None else input.device,
    )


def _rebuild(array, requires_grad, dev):
    t = tensor(array, device=dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


class _TypedTensorType(type):
    """torch.FloatTensor and friends: FloatTensor(2, 3) is an uninitialized 2x3 float32
    tensor, FloatTensor([1, 2]) a float32 tensor of that data, FloatTensor(x.size()) one of
    that shape; isinstance(t, FloatTensor) asks whether t is a float32 CPU tensor."""

    def __call__(cls, *args, device=None):
        dtype = cls._dtype
        if len(args) == 1 and not isinstance(args[0], int):
            data = args[0]
            if isinstance(data, Size):
                return empty(*data, dtype=dtype, device=device)
            if isinstance(data, Tensor):
                return data.to(dtype=dtype)
            return tensor(data, dtype=dtype, device=device)
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in args):
            raise type_error(f"{cls.__name__}(): expected a sequence of data or integer sizes, "
                             f"got {', '.join(type(a).__name__ for a in args)}")
        return empty(*(args or (0,)), dtype=dtype, device=device)

    def __instancecheck__(cls, obj) -> bool:
        return (isinstance(obj, Tensor) and obj.dtype is as_dtype(cls._dtype)
                and obj.device.type == "cpu")


def _typed(name: str, dtype: str):
    return _TypedTensorType(name, (), {"_dtype": dtype, "__module__": "ember"})


FloatTensor = _typed("FloatTensor", "float32")
DoubleTensor = _typed("DoubleTensor", "float64")
HalfTensor = _typed("HalfTensor", "float16")
LongTensor = _typed("LongTensor", "int64")
IntTensor = _typed("IntTensor", "int32")
ShortTensor = _typed("ShortTensor", "int16")
CharTensor = _typed("CharTensor", "int8")
ByteTensor = _typed("ByteTensor", "uint8")
BoolTensor = _typed("BoolTensor", "bool")
