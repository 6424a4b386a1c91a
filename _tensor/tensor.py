"""Tensor: an n-dimensional array on a device (numpy or cupy), with autograd state.

Its ops are bound as methods by methods.py; every one of them goes through dispatch().
"""

from __future__ import annotations

import sys
import weakref

import numpy as np

from ..autograd.graph import edge_of
from ..errors import runtime_error, type_error, value_error
from ..ir.dtypes import as_dtype, from_numpy, get_default_dtype, is_dtype_name
from ..ir.dtypes import dtype as DType
from ..ir.schema import fmt_shape, normalize_dim
from ..runtime.device import CPU, as_device, device, device_of_array, to_device
from ..runtime.memory import tune_malloc
from . import hooks
from .printing import tensor_repr

tune_malloc()  # keep freed eager arrays' memory for the next ones (runtime/memory.py)



def _traced_shape(t, dim=None) -> tuple:
    """t's sizes while a trace runs: symbolic where the trace made them so, when ember's own
    code reads them; the traced function's own code gets plain ints (hooks.TraceHooks)."""
    trace = hooks.trace_here()
    if trace is None or not trace.sizes:
        return t._data.shape
    caller = sys._getframe(2).f_globals.get("__name__", "")
    return trace.read_shape(t, dim, caller == "ember" or caller.startswith("ember."))


def _layout_read() -> None:
    trace = hooks.trace_here()
    if trace is not None and trace.sizes:
        trace.layout_read()


class Size(tuple):
    """A tensor's shape: a tuple of ints, printed as PyTorch prints it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ember.Size([{', '.join(str(d) for d in self)}])"

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= d
        return n


# Bumped whenever an existing tensor's metadata changes (data, dtype, device through
# `.data =`; requires_grad through requires_grad_/detach_/an in-place op that starts
# recording): a captured graph's guard on the tensors it read holds while this is unchanged.
META_EPOCH = [0]


class Tensor:
    """An n-dimensional array on a device, with autograd. Backed by a numpy or cupy array."""

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_data",
        "_device",
        "_dtype",
        "_grad_fn",
        "_requires_grad",
        "_version",
    )

    # Rarely-set state lives in the instance dict with these class defaults, so making a
    # tensor (on every op) sets only the slots above.
    _grad = None
    _output_nr = 0
    _base = None
    _view_chain = ()
    _view_version = 0  # the base's version when this view's grad_fn was made
    _grad_accumulator = None
    _retains_grad = False
    _hooks = None
    _post_accumulate_grad_hooks = None

    # Tensors win over numpy arrays in mixed binary operators.
    __array_priority__ = 1000

    def __new__(cls, *args, device=None):
        """PyTorch's legacy constructor: ember.Tensor(data) is a tensor of the default float
        dtype holding data; ember.Tensor(2, 3) (or a Size) an uninitialized one of that shape;
        ember.Tensor(other) shares other's data; ember.Tensor() is empty."""
        if cls is not Tensor:  # a subclass (Parameter, Buffer) builds itself
            return object.__new__(cls)
        from .factories import empty, tensor  # deferred: factories imports this module

        if len(args) == 1 and isinstance(args[0], Tensor):
            return args[0].detach()
        if len(args) == 1 and isinstance(args[0], Size):
            return empty(tuple(args[0]), device=device)
        if not args or all(type(a) is int for a in args):
            return empty(args or (0,), device=device)
        if len(args) == 1:
            return tensor(args[0], dtype=get_default_dtype(), device=device)
        raise type_error(
            f"Tensor(): expected data, a shape of ints or a Tensor, got "
            f"({', '.join(type(a).__name__ for a in args)})"
        )

    def __init__(self, *args, **kwargs):
        pass  # __new__ built it

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def _make(cls, data, dtype: DType | None = None, dev: device | None = None, version=None):
        t = object.__new__(cls)
        t._data = data
        t._dtype = dtype if dtype is not None else from_numpy(data.dtype)
        t._device = dev if dev is not None else device_of_array(data)
        t._requires_grad = False
        t._grad_fn = None
        t._version = version if version is not None else [0]
        return t

    # -- attributes --------------------------------------------------------------------------

    @property
    def shape(self) -> Size:
        if hooks.active_trace is not None:
            return Size(_traced_shape(self))
        return Size(self._data.shape)

    @property
    def dtype(self) -> DType:
        return self._dtype

    @property
    def device(self) -> device:
        return self._device

    @property
    def is_cuda(self) -> bool:
        return self._device.type == "cuda"

    @property
    def is_cpu(self) -> bool:
        return self._device.type == "cpu"

    # devices and layouts ember has no form of: always False, as on a PyTorch build without them
    is_mps = is_xpu = is_meta = is_sparse = is_quantized = is_mkldnn = is_nested = property(
        lambda self: False)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def size(self, dim: int | None = None):
        if dim is not None:
            dim = normalize_dim(dim, self._data.ndim)
        shape = self._data.shape if hooks.active_trace is None else _traced_shape(self, dim)
        return Size(shape) if dim is None else shape[dim]

    def numel(self) -> int:
        if hooks.active_trace is not None:
            n = 1
            for d in _traced_shape(self):
                n = d * n
            return n
        return int(self._data.size)

    nelement = numel

    def element_size(self) -> int:
        return self._dtype.itemsize

    def stride(self, dim: int | None = None):
        if hooks.active_trace is not None:
            _layout_read()
        strides = tuple(s // self._dtype.itemsize for s in self._data.strides)
        return strides if dim is None else strides[dim]

    def is_contiguous(self, memory_format=None) -> bool:
        if hooks.active_trace is not None:
            _layout_read()
        if memory_format is not None:
            from .memory_format import is_contiguous_as  # deferred: seldom needed

            return is_contiguous_as(self, memory_format)
        return bool(self._data.flags.c_contiguous)

    def is_floating_point(self) -> bool:
        return self._dtype.is_floating_point

    @property
    def data(self) -> Tensor:
        """The same storage, detached from autograd."""
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        hooks.stop_trace("assigning tensor.data")
        self._version[0] += 1
        META_EPOCH[0] += 1
        self._data = value._data
        self._dtype = value._dtype
        self._device = value._device

    @property
    def grad(self) -> Tensor | None:
        """The gradient accumulated by backward(), or None."""
        if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None:
            # .grad is state, like a tensor's value: the trace reads it as an input of the
            # call (or as what this call wrote into it)
            return trace.read_grad(self)
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if value is not None:
            self._check_grad(value)
        if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None:
            trace.write_grad(self, value)
        self._grad = value

    def _check_grad(self, value) -> None:
        """PyTorch's checks on `t.grad = value`: a tensor like t (dtype, device, size)."""
        if not isinstance(value, Tensor):
            raise type_error(
                "assigned grad expected to be a Tensor or None but got grad of type "
                f"{type(value).__name__}"
            )
        if value is self:
            raise runtime_error("can't assign Variable as its own grad")
        if value._dtype is not self._dtype:
            raise runtime_error(
                f"attempting to assign a gradient with dtype {value._dtype.name} to a tensor "
                f"with dtype {self._dtype.name}. The gradient must match the tensor's dtype"
            )
        if value._device != self._device:
            raise runtime_error(
                f"attempting to assign a gradient on device {value._device} to a tensor on "
                f"device {self._device}. Please ensure that the gradient and the tensor are on "
                "the same device"
            )
        if value._data.shape != self._data.shape:
            raise runtime_error(
                f"attempting to assign a gradient of size {fmt_shape(value._data.shape)} to a "
                f"tensor of size {fmt_shape(self._data.shape)}. Please ensure that the gradient "
                "and the tensor are the same size"
            )

    @property
    def requires_grad(self) -> bool:
        if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None:
            trace.grad_facts_read(self)
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if not self.is_leaf:
            if not requires_grad:
                raise runtime_error(
                    "you can only change requires_grad flags of leaf variables. If you want to "
                    "use a computed variable in a subgraph that doesn't require differentiation "
                    "use var_no_grad = var.detach()."
                )
            return self
        if requires_grad and not self._dtype.is_floating_point:
            raise runtime_error(
                f"only Tensors of floating point dtype can require gradients, got "
                f"{self._dtype.name}"
            )
        if self._requires_grad != bool(requires_grad):
            META_EPOCH[0] += 1
            self._requires_grad = bool(requires_grad)
        return self

    @property
    def grad_fn(self):
        if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None:
            trace.grad_facts_read(self)
        if self._base is not None and self._grad_fn is not None:
            edge_of(self)  # brings a view's grad_fn up to date with its base's in-place ops
        return self._grad_fn

    @property
    def is_leaf(self) -> bool:
        if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None:
            trace.grad_facts_read(self)
        return self._grad_fn is None

    @property
    def _version_counter(self) -> int:
        return self._version[0]

    @property
    def _version_value(self) -> int:
        return self._version[0]

    # -- conversion ------------------------------------------------------------------------

    def numpy(self, *, force: bool = False) -> np.ndarray:
        if self._requires_grad and not force:
            raise runtime_error(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead."
            )
        if self._device.type != "cpu":
            if not force:
                raise type_error(
                    f"can't convert {self._device} device type tensor to numpy. Use "
                    "Tensor.cpu() to copy the tensor to host memory first."
                )
            return to_device(self._data, CPU)
        if self._dtype.name == "bfloat16" and not force:
            # as PyTorch: numpy has no bfloat16 of its own (ml_dtypes' is ember's storage)
            raise type_error("Got unsupported ScalarType BFloat16")
        hooks.stop_trace("a tensor's memory handed to numpy (numpy())")
        return self._data

    def _read(self, kind: str):
        """The Python value of this one-element tensor (item, bool, int or float)."""
        if self._data.size != 1:
            if kind == "bool":
                raise runtime_error(
                    f"Boolean value of Tensor with more than one value is ambiguous (shape "
                    f"{fmt_shape(self._data.shape)})"
                )
            if kind in ("int", "float"):  # int(t), float(t): PyTorch's ValueError
                raise value_error(
                    f"only one element tensors can be converted to Python scalars (got "
                    f"{self._data.size} elements)"
                )
            raise runtime_error(
                f"a Tensor with {self._data.size} elements cannot be converted to Scalar"
            )
        value = to_device(self._data, CPU).reshape(()).item()
        value = value if kind == "item" else {"bool": bool, "int": int, "float": float}[kind](value)
        if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None:
            trace.read(self, kind, value)
        return value

    def item(self):
        return self._read("item")

    def tolist(self):
        value = to_device(self._data, CPU).tolist()
        if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None:
            trace.read(self, "tolist", value)
        return value

    def __array__(self, dtype=None, copy=None):
        hooks.stop_trace("a tensor converted to a numpy array")
        array = to_device(self._data, CPU)
        return array if dtype is None else array.astype(dtype)

    def __dlpack__(self, *args, **kwargs):
        hooks.stop_trace("a tensor exported through DLPack")
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def __bool__(self) -> bool:
        return self._read("bool")

    def __float__(self) -> float:
        return self._read("float")

    def __int__(self) -> int:
        return self._read("int")

    def __index__(self) -> int:
        if self._dtype.is_floating_point or self._data.size != 1:
            raise type_error(
                "only integer tensors of a single element can be converted to an index"
            )
        return self._read("int")

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise type_error("len() of a 0-d tensor")
        if hooks.active_trace is not None:
            # len() hands Python a plain int: a symbolic size becomes exact
            size = _traced_shape(self, 0)[0]
            return size.specialize() if hasattr(size, "specialize") else size
        return self._data.shape[0]

    def __iter__(self):
        data = self._data
        if data.ndim == 0:
            raise type_error("iteration over a 0-d tensor")
        if (data.__class__ is np.ndarray and not self._requires_grad
                and hooks.active_trace is None and hooks.tracer_hook is None):
            return self._rows()
        return (self[i] for i in range(len(self)))  # len(): a traced size becomes exact

    def _rows(self):
        """The rows of a CPU tensor autograd and tracing do not see, as the views self[i]
        gives, made from the array's own rows: nanoGPT's get_batch iterates a (12,) index
        tensor twice a step, and indexing took ~4 us a row (PyTorch's iteration, ~0.5)."""
        data, dtype, device, version = self._data, self._dtype, self._device, self._version
        base = self._base if self._base is not None else self
        chain = self._view_chain
        rest = data.shape[1:]
        zeros, ones = (0,) * len(rest), (1,) * (len(rest) + 1)
        squeeze = ("squeeze", {"dims": (0,)})
        n = data.shape[0]
        for i in range(n):
            row = Tensor._make(data[i, ...], dtype, device, version)
            row._base = base
            # (indexing leaves out the slice of a whole dim of size 1)
            row._view_chain = chain + ((squeeze,) if n == 1 else (
                ("slice", {"starts": (i, *zeros), "stops": (i + 1, *rest), "steps": ones}),
                squeeze))
            row._view_version = version[0]
            yield row

    # by identity, as PyTorch's (== is elementwise); object's own is C-speed, which the
    # optimizers' state dicts and the capture guards keyed by tensors feel
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        hooks.stop_trace("printing a tensor")
        return tensor_repr(self)

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        # as PyTorch's: a 0-d tensor formats as its number, spec or not (f"{loss}" prints
        # 2.5, not tensor(2.5)); others as object's, which takes only the empty spec
        if self._data.ndim == 0:
            return format(self.item(), spec)
        return object.__format__(self, spec)

    def __reduce_ex__(self, protocol):
        from .factories import _rebuild  # deferred: factories.py imports this module

        return (_rebuild, (self.detach().numpy(force=True), self._requires_grad, str(self._device)))

    # -- devices and dtypes ------------------------------------------------------------------

    def to(self, *args, **kwargs) -> Tensor:
        """to(device), to(dtype), to(device, dtype), to(other): a copy only when needed."""
        dev, dt = kwargs.pop("device", None), kwargs.pop("dtype", None)
        copy = kwargs.pop("copy", False)
        fmt = kwargs.pop("memory_format", None)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise type_error(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for arg in args:
            if isinstance(arg, Tensor):
                dev, dt = arg._device, arg._dtype
            elif isinstance(arg, (DType, type)) or (isinstance(arg, str) and is_dtype_name(arg)):
                dt = arg
            elif arg is not None:
                dev = arg
        out = self
        if dt is not None and as_dtype(dt) is not self._dtype:
            out = out.type(dt)
        if dev is not None:
            dev = as_device(dev)
            if dev.type == "cuda" and dev.index is None:
                dev = device("cuda", 0)
            if dev != out._device:
                from .ops import to_device_op  # deferred: ops/ imports this module

                out = to_device_op(out, dev)
        if fmt is not None:
            from .memory_format import in_format  # deferred: seldom needed

            return in_format(out, fmt, "to()", copy=copy and out is self)
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, device_index: int | None = None) -> Tensor:
        return self.to(device("cuda", device_index or 0))

    def type(self, dt=None):
        if dt is None:
            return f"ember.{self._dtype.name}"
        from .ops import cast  # deferred: ops/ imports this module

        if isinstance(dt, str) and not is_dtype_name(dt):
            raise value_error(f"invalid type: {dt!r}")
        return cast(self, as_dtype(dt))

    def float(self):
        return self.type("float32")

    def double(self):
        return self.type("float64")

    def half(self):
        return self.type("float16")

    def bfloat16(self):
        return self.type("bfloat16")

    def int(self):
        return self.type("int32")

    def long(self):
        return self.type("int64")

    def bool(self):
        return self.type("bool")

    def byte(self):
        return self.type("uint8")

    def char(self):
        return self.type("int8")

    def short(self):
        return self.type("int16")

    # -- autograd ----------------------------------------------------------------------------

    def detach(self) -> Tensor:
        t = Tensor._make(self._data, self._dtype, self._device, self._version)
        if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None:
            trace.alias(self, t)
        return t

    def detach_(self) -> Tensor:
        self._grad_fn = None
        if self._requires_grad:
            META_EPOCH[0] += 1
            self._requires_grad = False
        return self

    def retain_grad(self) -> None:
        if not self._requires_grad:
            raise runtime_error("can't retain_grad on Tensor that has requires_grad=False")
        if self.is_leaf or self._retains_grad:
            return
        self._retains_grad = True
        ref = weakref.ref(self)

        def retain(grad):
            t = ref()
            if t is not None:
                t.grad = grad.clone() if t.grad is None else t.grad + grad

        retain.retains_grad = True  # Node.add_pre_hook keeps it after the user's hooks
        self.grad_fn.add_pre_hook(self._output_nr, retain)

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def register_hook(self, hook):
        """hook(grad) -> Tensor or None, called with this tensor's gradient in backward."""
        if not self._requires_grad:
            raise runtime_error("cannot register a hook on a tensor that doesn't require gradient")
        if self._grad_fn is not None:
            # a non-leaf's gradient is the input of its grad_fn's output: hook it there
            node = self.grad_fn
            node.add_pre_hook(self._output_nr, hook)
            hooks = node.pre_hooks[self._output_nr]
        else:
            if self._hooks is None:
                self._hooks = []
            self._hooks.append(hook)
            hooks = self._hooks
            self._hold_by_accumulator()

        class _Handle:
            def remove(self_inner):
                if hook in hooks:
                    hooks.remove(hook)

        return _Handle()

    def register_post_accumulate_grad_hook(self, hook):
        """hook(tensor) -> None, called on a leaf once backward has accumulated its .grad."""
        if not self._requires_grad:
            raise runtime_error("cannot register a hook on a tensor that doesn't require gradient")
        if self._grad_fn is not None:
            raise runtime_error(
                "post accumulate grad hooks cannot be registered on non-leaf tensors"
            )
        hooks = self._post_accumulate_grad_hooks
        if hooks is None:
            hooks = self._post_accumulate_grad_hooks = {}
        key = object()
        hooks[key] = hook
        self._hold_by_accumulator()

        class _Handle:
            def remove(self_inner):
                hooks.pop(key, None)

        return _Handle()

    def _hold_by_accumulator(self) -> None:
        """A hooked leaf's accumulator holds it strongly and the leaf holds the accumulator
        weakly (AccumulateGrad): its hooks run in a backward that outlives the caller's
        reference, and the pair makes no cycle."""
        acc = self._grad_accumulator
        if acc.__class__ is weakref.ref:
            return
        if acc is not None:
            acc._held = self
            self._grad_accumulator = weakref.ref(acc)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        from ..autograd.engine import backward  # deferred: the engine imports this layer

        backward(
            [self], [gradient], retain_graph=retain_graph, create_graph=create_graph, inputs=inputs
        )


