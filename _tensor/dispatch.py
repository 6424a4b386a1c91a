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
from ..errors import out_of_memory_error, runtime_error, type_error, type_name
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


def _as_view(out: Tensor, x: Tensor, op: str, attrs: dict) -> Tensor:
    """out (sharing x's version counter) made a view of x's base, by op after x's own views."""
    out._base = x._base if x._base is not None else x
    out._view_chain = x._view_chain + ((op, attrs),)
    out._view_version = x._version[0]
    return out


def _py_number(x):
    return x.item() if isinstance(x, np.generic) else x


# Elementwise, reduction and extern (matmul, linear, conv, pooling) calls on CPU tensors (and
# Python numbers) whose type rule, casts and kernel were once seen to need nothing but the
# kernel: (op, each input's dtype or number class, the shapes (for elementwise ops, only
# where they differ), the attrs) -> (output dtype, the dtype numbers are cast to or None,
# differentiable). A type rule answers from those alone (pow's, which reads a number's value,
# is declared reads_numbers and never planned), so its answer is reused; every other call
# takes the general way.
_PLANS: dict = {}
_MAX_PLANS = 8192
_PYTHON_NUMBERS = (float, int, bool)
# kind -> whether its plans are keyed by the shapes always
_PLANNED_KINDS = {"elementwise": False, "reduction": True, "extern": True}
_PLANNABLE = {}  # op -> whether its key holds the shapes always (filled as plans are made)


def _tensor_key(op: str, inputs: tuple, attrs: dict, by_shape: bool):
    """_plan_key's answer for one or two CPU tensors (most calls), without its general loop,
    or None where the general loop must make the key."""
    if len(inputs) == 1:
        x = inputs[0]
        if not isinstance(x, Tensor) or x._device is not CPU:
            return None
        data = x._data
        if data.__class__ is not _ndarray:
            return None
        key = (op, x._dtype, (data.shape,)) if by_shape else (op, x._dtype)
        arrays = [data]
        needs_grad = x._requires_grad
    else:
        a, b = inputs
        if (not isinstance(a, Tensor) or not isinstance(b, Tensor) or a._device is not CPU
                or b._device is not CPU):
            return None
        da, db = a._data, b._data
        if da.__class__ is not _ndarray or db.__class__ is not _ndarray:
            return None
        sa, sb = da.shape, db.shape
        if by_shape or sa != sb:
            key = (op, a._dtype, b._dtype, (sa, sb))
        else:
            key = (op, a._dtype, b._dtype)
        arrays = [da, db]
        needs_grad = a._requires_grad or b._requires_grad
    if attrs:
        key = (*key, tuple(attrs.items()))
    return key, arrays, needs_grad


def _plan_key(op: str, inputs: tuple, attrs: dict, by_shape: bool):
    """(the key of the call's plan, the kernel's operands, whether an input requires grad),
    or None for a call no plan may take."""
    if 0 < len(inputs) <= 2:
        keyed = _tensor_key(op, inputs, attrs, by_shape)
        if keyed is not None:
            return keyed
    key = [op]
    shapes = []
    arrays = []
    needs_grad = False
    for x in inputs:
        if isinstance(x, Tensor):
            data = x._data
            if x._device is not CPU or data.__class__ is not _ndarray:
                return None
            key.append(x._dtype)
            shapes.append(data.shape)
            arrays.append(data)
            if x._requires_grad:
                needs_grad = True
        elif x.__class__ in _PYTHON_NUMBERS:
            key.append(x.__class__)
            arrays.append(x)
        else:
            return None
    if not shapes:
        return None
    if by_shape:
        key.append(tuple(shapes))
    else:
        first = shapes[0]
        for shape in shapes:
            if shape != first:
                key.append(tuple(shapes))  # broadcasting: the plan holds for these shapes
                break
    if attrs:
        key.append(tuple(attrs.items()))
    return tuple(key), arrays, needs_grad


def _planned(op: str, inputs: tuple, attrs: dict):
    """The call run by its plan (see _PLANS), or None where it has none."""
    by_shape = _PLANNABLE.get(op)
    if by_shape is None:
        return None
    keyed = _plan_key(op, inputs, attrs, by_shape)
    if keyed is None:
        return None
    key, arrays, needs_grad = keyed
    try:
        plan = _PLANS.get(key)
    except TypeError:  # an attr that is a list
        return None
    if plan is None:
        return None
    out_dtype, numbers_as, differentiable, direct, planned_kernel = plan
    if numbers_as is not None:
        for i, x in enumerate(arrays):
            if x.__class__ is not _ndarray:
                try:
                    arrays[i] = numbers_as(x)
                except OverflowError:  # the general way wraps it around
                    return None
    try:
        kernel = KERNELS[op]
        if direct is not None and kernel is planned_kernel:
            result = direct(*arrays)  # the kernel's own function of the arrays (a numpy ufunc)
        else:
            result = kernel(np, *arrays, **attrs)
    except MemoryError:
        return None  # the general way says what could not be allocated
    if result.__class__ is not _ndarray:  # a numpy scalar, from a 0-d result
        result = np.asarray(result)
    out = Tensor._make(result, out_dtype, CPU)
    if needs_grad and _grad_state.enabled and differentiable:
        link_op(op, inputs, attrs, (out,))
    if hooks.tracer_hook is not None:
        hooks.tracer_hook(op, inputs, attrs, out)
    return out


def _make_plan(op, schema, inputs, attrs, args, out_type, result) -> None:
    """After a general call: whether a call like it may take the plan (see _PLANS)."""
    by_shape = _PLANNED_KINDS[schema.kind]
    keyed = _plan_key(op, inputs, attrs, by_shape) if len(_PLANS) < _MAX_PLANS else None
    if keyed is None:
        return
    try:
        hash(keyed[0])
    except TypeError:  # an attr that is a list
        return
    for i, (x, arg) in enumerate(zip(inputs, args)):
        if isinstance(x, Tensor) and arg is not x._data:
            return  # cast to the compute dtype
        if not isinstance(x, Tensor) and (schema.reads_numbers or i < schema.cast_start):
            return  # a number the plan would cast (where's condition is a tensor)
    if (not isinstance(result, (_ndarray, np.generic)) or result.dtype != out_type.dtype.np
            or result.shape != tuple(out_type.shape)):
        return
    numbers_as = None
    if schema.compute_dtype is not None:
        numbers_as = schema.compute_dtype_of(inputs, out_type.dtype).np.type
    # a kernel may give the function of the arrays it calls (direct_for: numpy's ufunc),
    # which the plan then calls itself while that kernel is the op's (a test may swap it)
    kernel = KERNELS[op]
    direct_for = None if attrs else getattr(kernel, "direct_for", None)
    direct = None if direct_for is None else direct_for(args)
    _PLANS[keyed[0]] = (out_type.dtype, numbers_as, schema.differentiable, direct, kernel)
    _PLANNABLE[op] = by_shape


_VIEW_TYPES: dict = {}  # (view op, dtype, shape, attrs) -> its type rule's answer


def _view_type(op, schema, inputs, attrs):
    """A view's type rule answers from its input's dtype and shape and its attrs alone: the
    answer is kept per those (views are most of a model's small ops)."""
    x = inputs[0]
    try:
        key = (op, x._dtype, x._data.shape, tuple(attrs.items()))
        return _VIEW_TYPES[key]
    except KeyError:
        out_type = schema.infer(inputs, attrs)
        if len(_VIEW_TYPES) < _MAX_PLANS:
            _VIEW_TYPES[key] = out_type
        return out_type
    except (TypeError, AttributeError):  # an attr that is a list; not a tensor
        return schema.infer(inputs, attrs)


_VIEW_SCHEMAS = {name: schema for name, schema in SCHEMAS.items() if schema.view}


def _planned_view(op: str, inputs: tuple, attrs: dict):
    """A view of one CPU tensor whose type rule answered for its dtype, shape and attrs
    before (_view_type): the kernel's view wrapped, and linked, without the general way's
    checks (views are most of a model's small ops). None for any other call."""
    if len(inputs) != 1:
        return None
    x = inputs[0]
    if not isinstance(x, Tensor) or x._device is not CPU:
        return None
    data = x._data
    try:
        out_type = _VIEW_TYPES[(op, x._dtype, data.shape, tuple(attrs.items()))]
    except (KeyError, TypeError):  # not seen yet; an attr that is a list
        return None
    result = KERNELS[op](np, data, **attrs)
    if result.__class__ is not _ndarray or result.dtype is not data.dtype:
        return None
    out = _as_view(Tensor._make(result, out_type.dtype, CPU, x._version), x, op, attrs)
    if x._requires_grad and _grad_state.enabled and _VIEW_SCHEMAS[op].differentiable:
        link_op(op, inputs, attrs, (out,))
    if hooks.tracer_hook is not None:
        hooks.tracer_hook(op, inputs, attrs, out)
    return out


def dispatch(op: str, inputs: tuple, attrs: dict = _EMPTY, out: Tensor | None = None,
             _timed: bool = False):
    """Run primitive `op` on `inputs` (tensors and Python numbers) with `attrs`.

    Returns a Tensor, or a tuple of Tensors for ops with several outputs. With `out` (used by
    in-place ops when no gradient is recorded), an elementwise kernel writes into out's array
    and out is returned; None means out cannot take the result (the caller goes the general
    way, which reports any error). While a profile is on (hooks.op_profiler) the call is
    timed through it (_timed: the profiler's own call).
    """
    if hooks.op_profiler is not None and not _timed:
        return hooks.op_profiler.time_op(dispatch, op, inputs, attrs, out)
    if out is None and hooks.active_trace is None and not autocast.enabled:
        if op in _VIEW_SCHEMAS:
            done = _planned_view(op, inputs, attrs)
        else:
            done = _planned(op, inputs, attrs)
        if done is not None:
            return done
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
            other_layout = getattr(type(x), "__ember_dispatch__", None)
            if other_layout is not None:  # a sparse tensor (sparse.py) runs its own form
                return other_layout(op, inputs, attrs)
            raise type_error(f"{op}(): expected Tensor or number arguments, got {type_name(x)}")
    if dev is None:
        dev = CPU
    if autocast.enabled and op in autocast.LOWER_PRECISION_OPS and dev.type in autocast.enabled:
        inputs = autocast.lower_precision_inputs(inputs, dev.type)
    kattrs = attrs
    if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None and trace.sizes:
        # a trace with symbolic sizes: it records their expressions (and autograd keeps them
        # for the derivatives); the type rule and the kernel see this call's plain numbers
        out_types, kattrs = trace.infer_concrete(schema.infer, inputs, attrs)
    elif schema.view and hooks.active_trace is None and len(inputs) == 1:
        out_types = _view_type(op, schema, inputs, attrs)
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
    if (schema.kind in _PLANNED_KINDS and dev is CPU
            and hooks.active_trace is None and not autocast.enabled
            and schema.num_outputs == 1 and not schema.view):
        _make_plan(op, schema, inputs, attrs, args, out_types, result)

    if schema.num_outputs == 1:
        if schema.view:
            out = _as_view(_wrap(result, out_types, dev, inputs[0]._version), inputs[0], op,
                           attrs)
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

