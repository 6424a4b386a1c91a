"""dispatch(): the single door every op goes through.

dispatch(op, inputs, attrs) checks the inputs against the op's schema (the type rule raises a
clear error), runs the eager kernel on the device's array module, and, when grad mode is on
and an input requires grad, links an autograd node holding the op's derivative rule. A trace
(hooks.py) hears every call here, so eager calls, traced calls and backward cannot drift apart.
"""

from __future__ import annotations

import numpy as np

from ..autograd import grad_mode
from ..autograd.graph import link_op
from ..errors import out_of_memory_error, runtime_error, type_error
from ..ir import ops as _ir_ops  # noqa: F401  (registers the schemas)
from ..ir.schema import NUMBER, SCHEMAS
from ..runtime.device import CPU, array_module, device
from ..runtime.kernels import KERNELS
from ..runtime.kernels.casting import BFLOAT16, cast_operands, widen_bfloat16
from . import autocast, hooks
from .tensor import Tensor

_EMPTY: dict = {}
_ndarray = np.ndarray
_grad_state = grad_mode.state

def _device_error(op: str, a: device, b: device):
    return runtime_error(
        f"Expected all tensors to be on the same device, but found at least two devices, {a} "
        f"and {b}! (when checking arguments for {op})"
    )


def _out_of_memory(op: str, types, exc: MemoryError):
    shapes = ", ".join(f"{list(t.shape)} {t.dtype.name}" for t in types)
    return out_of_memory_error(f"{op}: can't allocate memory for its result ({shapes}): {exc}")


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
    if autocast.enabled and op in autocast.LOWER_PRECISION_OPS and dev.type in autocast.enabled:
        inputs = autocast.lower_precision_inputs(inputs, dev.type)
    kattrs = attrs
    if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None and trace.sizes:
        # a trace with symbolic sizes: it records their expressions (and autograd keeps them
        # for the derivatives); the type rule and the kernel see this call's plain numbers
        out_types, kattrs = trace.infer_concrete(schema.infer, inputs, attrs)
    else:
        out_types = schema.infer(inputs, attrs)

    args = [x._data if isinstance(x, Tensor) else x for x in inputs]
    if schema.compute_dtype is not None:
        compute = schema.compute_dtype_of(inputs, out_types.dtype)
        cast_operands(args, schema.cast_start, compute.np, op)
    if not schema.view:
        # bfloat16 is stored, never computed in: the kernel gets float32 (and _wrap rounds)
        widen_bfloat16(args)
    kernel = KERNELS[op]
    xp = np if dev is CPU else array_module(dev)
    if out is not None:
        return _into(out, op, kernel, xp, args, kattrs, out_types, inputs, needs_grad)
    try:
        result = kernel(xp, *args, **kattrs)
    except MemoryError as exc:  # numpy's and cupy's out-of-memory errors alike
        types = (out_types,) if schema.num_outputs == 1 else out_types
        raise _out_of_memory(op, types, exc) from None

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
    if hooks.tracer_hook is not None:
        hooks.tracer_hook(op, inputs, attrs, out)
    return out


def _into(out, op, kernel, xp, args, attrs, out_types, inputs, needs_grad):
    if (
        (needs_grad and _grad_state.enabled)
        or not getattr(kernel, "writes_out", False)
        or out_types.dtype is not out._dtype
        or out._data.dtype == BFLOAT16  # the kernel computes float32; the general way rounds
        or tuple(out_types.shape) != out._data.shape
    ):
        return None
    try:
        kernel(xp, *args, out=out._data, **attrs)
    except ValueError:  # a read-only (expanded) array: the general path explains it
        return None
    out._version[0] += 1
    if hooks.tracer_hook is not None:
        hooks.tracer_hook(op, inputs, attrs, out)
    return out


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)

