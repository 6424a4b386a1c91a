"""Tensor and dispatch(): the single door every op goes through (named _tensor so that
ember.tensor stays the factory function, as torch._tensor does).


dispatch(op, inputs, attrs) checks the inputs against the op's schema (the type rule raises a
clear error), runs the eager kernel on the device's array module, and, when grad mode is on
and an input requires grad, links an autograd node holding the op's derivative rule. Tracing
hooks in here too, so eager calls, traced calls and backward can never drift apart.
"""

from __future__ import annotations

import sys
import threading
import weakref

import numpy as np

from .autograd import grad_mode
from .errors import runtime_error, type_error
from .ir import ops as _ir_ops  # noqa: F401  (registers the schemas)
from .ir.dtypes import as_dtype, from_numpy, is_dtype_name
from .ir.dtypes import dtype as DType
from .ir.schema import NUMBER, SCHEMAS, fmt_shape
from .runtime.device import CPU, array_module, as_device, device, device_of_array, to_device
from .runtime.kernels import KERNELS
from .runtime.memory import tune_malloc

tune_malloc()  # keep freed eager arrays' memory for the next ones (runtime/memory.py)

_EMPTY: dict = {}
_ndarray = np.ndarray
_grad_state = grad_mode.state

# Tracing (ember.tracer): each thread records into its own trace, trace_here(). While any
# thread traces, active_trace is the number of traces open (else None: the one check the
# hot paths make) and tracer_hook routes every dispatched op to the calling thread's trace;
# what dispatch cannot see (values read into Python, aliases, escapes) goes to trace_here().
tracer_hook = None
active_trace = None
_tracing = threading.local()
_tracing_lock = threading.Lock()


def trace_here():
    """The trace recording on this thread, or None: a trace started by another thread hears
    nothing this thread does."""
    return getattr(_tracing, "trace", None)


def _record_here(op, inputs, attrs, out) -> None:
    trace = getattr(_tracing, "trace", None)
    if trace is not None:
        trace.record(op, inputs, attrs, out)


def begin_trace(trace) -> None:
    global active_trace, tracer_hook
    _tracing.trace = trace
    with _tracing_lock:
        active_trace = (active_trace or 0) + 1
        tracer_hook = _record_here


def end_trace() -> None:
    global active_trace, tracer_hook
    _tracing.trace = None
    with _tracing_lock:
        active_trace = (active_trace - 1) or None
        if active_trace is None:
            tracer_hook = None


def _traced_shape(t, dim=None) -> tuple:
    """t's sizes while a trace runs: SizeInts where the trace made them symbolic, when ember's
    own code reads them. The traced function's own code gets plain ints, and the sizes it
    reads become exact (all of them, or only `dim` for x.size(dim)): an int that Python code
    holds escapes any bookkeeping (range(n), 1.0 / n and list[n] read its value directly), so
    only ember's code, which is written to keep sizes symbolic, sees SizeInts."""
    trace = trace_here()
    if trace is None or not trace.sizes or trace.plain_shapes:
        return t._data.shape
    shape = trace.traced_shape(t)
    caller = sys._getframe(2).f_globals.get("__name__", "")
    if caller == "ember" or caller.startswith("ember."):
        return shape
    for d in range(len(shape)) if dim is None else (dim,):
        if shape[d].__class__ is not int:
            shape[d].specialize()
    return t._data.shape


def _layout_read() -> None:
    """A tensor's memory layout (strides, contiguity) was read while tracing: it follows from
    sizes (a view's from its base's), so under a trace with symbolic sizes every size becomes
    exact."""
    trace = trace_here()
    if trace is not None and trace.sizes:
        trace.fix(list(trace.sizes))


def _stop_trace(reason: str) -> None:
    trace = trace_here() if active_trace is not None else None
    if trace is not None:
        trace.stop(reason)


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

    def __init__(self, *args, **kwargs):
        raise type_error("create tensors with ember.tensor(...), ember.zeros(...) and friends")

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
        if active_trace is not None:
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
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def size(self, dim: int | None = None):
        if dim is not None:
            from .ir.schema import normalize_dim

            dim = normalize_dim(dim, self._data.ndim)
        shape = self._data.shape if active_trace is None else _traced_shape(self, dim)
        return Size(shape) if dim is None else shape[dim]

    def numel(self) -> int:
        if active_trace is not None:
            n = 1
            for d in _traced_shape(self):
                n = d * n
            return n
        return int(self._data.size)

    nelement = numel

    def element_size(self) -> int:
        return self._dtype.itemsize

    def stride(self, dim: int | None = None):
        if active_trace is not None:
            _layout_read()
        strides = tuple(s // self._dtype.itemsize for s in self._data.strides)
        return strides if dim is None else strides[dim]

    def is_contiguous(self) -> bool:
        if active_trace is not None:
            _layout_read()
        return bool(self._data.flags.c_contiguous)

    def is_floating_point(self) -> bool:
        return self._dtype.is_floating_point

    @property
    def data(self) -> Tensor:
        """The same storage, detached from autograd."""
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        _stop_trace("assigning tensor.data")
        self._version[0] += 1
        self._data = value._data
        self._dtype = value._dtype
        self._device = value._device

    @property
    def grad(self) -> Tensor | None:
        """The gradient accumulated by backward(), or None."""
        if active_trace is not None and (trace := trace_here()) is not None:
            # .grad is state, like a tensor's value: the trace reads it as an input of the
            # call (or as what this call wrote into it)
            return trace.read_grad(self)
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if active_trace is not None and (trace := trace_here()) is not None:
            trace.write_grad(self, value)
        self._grad = value

    @property
    def requires_grad(self) -> bool:
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
        self._requires_grad = bool(requires_grad)
        return self

    @property
    def grad_fn(self):
        if self._base is not None and self._grad_fn is not None:
            from .autograd.graph import edge_of

            edge_of(self)  # brings a view's grad_fn up to date with its base's in-place ops
        return self._grad_fn

    @property
    def is_leaf(self) -> bool:
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
        _stop_trace("a tensor's memory handed to numpy (numpy())")
        return self._data

    def _read(self, kind: str):
        """The Python value of this one-element tensor (item, bool, int or float)."""
        if self._data.size != 1:
            if kind == "bool":
                raise runtime_error(
                    f"Boolean value of Tensor with more than one value is ambiguous (shape "
                    f"{fmt_shape(self._data.shape)})"
                )
            raise runtime_error(
                f"a Tensor with {self._data.size} elements cannot be converted to Scalar"
            )
        value = to_device(self._data, CPU).reshape(()).item()
        value = value if kind == "item" else {"bool": bool, "int": int, "float": float}[kind](value)
        if active_trace is not None and (trace := trace_here()) is not None:
            trace.read(self, kind, value)
        return value

    def item(self):
        return self._read("item")

    def tolist(self):
        value = to_device(self._data, CPU).tolist()
        if active_trace is not None and (trace := trace_here()) is not None:
            trace.read(self, "tolist", value)
        return value

    def __array__(self, dtype=None, copy=None):
        _stop_trace("a tensor converted to a numpy array")
        array = to_device(self._data, CPU)
        return array if dtype is None else array.astype(dtype)

    def __dlpack__(self, *args, **kwargs):
        _stop_trace("a tensor exported through DLPack")
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
        if active_trace is not None:
            # len() hands Python a plain int: a symbolic size becomes exact
            size = _traced_shape(self, 0)[0]
            return size.specialize() if hasattr(size, "specialize") else size
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise type_error("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self)))  # len(): a traced size becomes exact

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        from .printing import tensor_repr

        _stop_trace("printing a tensor")
        return tensor_repr(self)

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        if self._data.ndim == 0 and spec:
            return format(self.item(), spec)
        return repr(self)

    def __reduce_ex__(self, protocol):
        from .factories import _rebuild

        return (_rebuild, (self.detach().numpy(force=True), self._requires_grad, str(self._device)))

    # -- devices and dtypes ------------------------------------------------------------------

    def to(self, *args, **kwargs) -> Tensor:
        """to(device), to(dtype), to(device, dtype), to(other): a copy only when needed."""
        dev, dt = kwargs.pop("device", None), kwargs.pop("dtype", None)
        copy = kwargs.pop("copy", False)
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
                from .ops import to_device_op

                out = to_device_op(out, dev)
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
        from .ops import cast

        return cast(self, as_dtype(dt))

    def float(self):
        return self.type("float32")

    def double(self):
        return self.type("float64")

    def half(self):
        return self.type("float16")

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
        if active_trace is not None and (trace := trace_here()) is not None:
            trace.alias(self, t)
        return t

    def detach_(self) -> Tensor:
        self._grad_fn = None
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

        class _Handle:
            def remove(self_inner):
                hooks.pop(key, None)

        return _Handle()

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        from .autograd.engine import backward

        backward(
            [self], [gradient], retain_graph=retain_graph, create_graph=create_graph, inputs=inputs
        )


def _device_error(op: str, a: device, b: device):
    return runtime_error(
        f"Expected all tensors to be on the same device, but found at least two devices, {a} "
        f"and {b}! (when checking arguments for {op})"
    )


def _wrap(array, out_type, dev, version=None) -> Tensor:
    if type(array) is not _ndarray and dev.type == "cpu":
        array = np.asarray(array)
    expected = out_type.dtype.np
    if array.dtype != expected:
        array = array.astype(expected)
    return Tensor._make(array, out_type.dtype, dev, version)


def _py_number(x):
    return x.item() if isinstance(x, np.generic) else x


def dispatch(op: str, inputs: tuple, attrs: dict = _EMPTY, out: Tensor | None = None):
    """Run primitive `op` on `inputs` (tensors and Python numbers) with `attrs`.

    Returns a Tensor, or a tuple of Tensors for ops with several outputs. With `out` (used by
    in-place ops when no gradient is recorded), an elementwise kernel writes into out's array
    and out is returned; None means out cannot take the result (the caller goes the general
    way, which reports any error).
    """
    schema = SCHEMAS.get(op)
    if schema is None:
        raise type_error(f"unknown op {op!r}")
    dev = None
    needs_grad = False
    for x in inputs:
        if isinstance(x, Tensor):
            d = x._device
            if dev is None:
                dev = d
            elif d is not dev and d != dev:
                raise _device_error(op, dev, d)
            if x._requires_grad:
                needs_grad = True
        elif not isinstance(x, NUMBER):
            if isinstance(x, np.generic) and x.dtype.kind in "biuf":
                # numpy scalars (np.float32(2)) act as the Python numbers they hold
                return dispatch(op, tuple(_py_number(v) for v in inputs), attrs)
            raise type_error(f"{op}(): expected Tensor or number arguments, got {type(x).__name__}")
    if dev is None:
        dev = CPU
    kattrs = attrs
    if active_trace is not None and (trace := trace_here()) is not None and trace.sizes:
        # a trace with symbolic sizes: it records their expressions (and autograd keeps them
        # for the derivatives); the type rule and the kernel see this call's plain numbers
        from .tracer.sizes import concrete

        kattrs = concrete(attrs)
        trace.plain_shapes += 1
        try:
            out_types = schema.infer(inputs, kattrs)
        finally:
            trace.plain_shapes -= 1
    else:
        out_types = schema.infer(inputs, attrs)

    compute = schema.compute_dtype
    if compute is not None:
        compute = out_types.dtype.np if compute == "output" else compute(inputs).np
        start = schema.cast_start
        args = list(inputs[:start])
        for x in inputs[start:]:
            if isinstance(x, Tensor):
                data = x._data
                args.append(data if data.dtype == compute else data.astype(compute))
            else:
                try:
                    args.append(compute.type(x))
                except OverflowError:  # integers wrap around, as PyTorch's do: uint8 - 2 == 254
                    args.append(np.array(x).astype(compute)[()])
        for i in range(start):
            args[i] = inputs[i]._data
    else:
        args = [x._data if isinstance(x, Tensor) else x for x in inputs]
    kernel = KERNELS[op]
    xp = np if dev is CPU else array_module(dev)
    if out is not None:
        return _into(out, op, kernel, xp, args, kattrs, out_types, inputs, needs_grad)
    result = kernel(xp, *args, **kattrs)

    if schema.num_outputs == 1:
        if schema.view:
            base = inputs[0]
            out = _wrap(result, out_types, dev, base._version)
            out._base = base._base if base._base is not None else base
            out._view_chain = base._view_chain + ((op, attrs),)
            out._view_version = base._version[0]
        else:
            out = _wrap(result, out_types, dev)
        outputs = (out,)
    else:
        outputs = out = tuple(_wrap(r, t, dev) for r, t in zip(result, out_types))
    if needs_grad and _grad_state.enabled and schema.differentiable:
        link_op(op, inputs, attrs, outputs)
    if tracer_hook is not None:
        tracer_hook(op, inputs, attrs, out)
    return out


def _into(out, op, kernel, xp, args, attrs, out_types, inputs, needs_grad):
    if (
        (needs_grad and _grad_state.enabled)
        or not getattr(kernel, "writes_out", False)
        or out_types.dtype is not out._dtype
        or tuple(out_types.shape) != out._data.shape
    ):
        return None
    try:
        kernel(xp, *args, out=out._data, **attrs)
    except ValueError:  # a read-only (expanded) array: the general path explains it
        return None
    out._version[0] += 1
    if tracer_hook is not None:
        tracer_hook(op, inputs, attrs, out)
    return out


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


from . import ops  # noqa: F401  (ops binds the Tensor methods and operators at its end)
from .autograd.graph import link_op
