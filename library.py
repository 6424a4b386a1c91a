"""The custom-op API: a user's op joins the one op vocabulary like any primitive.

    @ember.library.custom_op("mylib::scaled_tanh", infer=lambda inputs, attrs: inputs[0])
    def scaled_tanh(xp, x, scale):           # the eager kernel, numpy API (numpy or cupy)
        return xp.tanh(x) * scale

    @scaled_tanh.derivative(save_outputs=True)
    def _(node, g):                          # written in Tensor ops
        out = node.outputs[0]
        return (g * (node.attrs["scale"] - out * out / node.attrs["scale"]),)

    y = scaled_tanh(x, scale=2.0)

The op gets a schema and type rule, a kernel and, optionally, a derivative rule, all keyed by
its name, and runs through dispatch: checked, differentiable, and seen by the tracer.
"""

from __future__ import annotations

from collections.abc import Callable

from ._tensor import dispatch
from .autograd.derivatives import DERIVATIVES
from .autograd.derivatives import derivative as _register_derivative
from .errors import value_error
from .ir.schema import SCHEMAS
from .ir.schema import register as _register_schema
from .ir.types import TensorType
from .runtime.kernels import KERNELS
from .runtime.kernels import kernel as _register_kernel


class CustomOp:
    """A registered custom op; call it with tensors (and numbers) and keyword attrs."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *inputs, **attrs):
        return dispatch(self.name, inputs, attrs)

    def derivative(
        self, fn: Callable | None = None, *, save_inputs: bool = True, save_outputs: bool = False
    ):
        """Register fn(node, *grad_outputs) -> input gradients as this op's derivative."""

        def wrap(rule: Callable) -> Callable:
            if not SCHEMAS[self.name].differentiable:
                raise value_error(f"custom op {self.name!r} was defined non-differentiable")
            _register_derivative(self.name, save_inputs=save_inputs, save_outputs=save_outputs)(
                rule
            )
            return rule

        return wrap(fn) if fn is not None else wrap

    def __repr__(self) -> str:
        return f"<ember custom op {self.name}>"


def _as_type_rule(infer: Callable) -> Callable:
    def rule(inputs, attrs):
        out = infer(inputs, attrs)
        if isinstance(out, tuple) and not isinstance(out, TensorType):
            return tuple(TensorType(tuple(o.shape), o.dtype) for o in out)
        return TensorType(tuple(out.shape), out.dtype)

    return rule


def custom_op(
    name: str, *, infer: Callable, differentiable: bool = True, num_outputs: int = 1
) -> Callable[[Callable], CustomOp]:
    """Decorator: register the decorated eager kernel as op `name`.

    infer(inputs, attrs) returns something with .shape and .dtype (a TensorType, or one of
    the inputs when the output has its type), or a tuple of them for several outputs.
    """
    if "::" not in name:
        raise value_error(f"custom op names take a namespace, like 'mylib::{name}'")
    if name in SCHEMAS or name in KERNELS or name in DERIVATIVES:
        raise value_error(f"op {name!r} is already registered")

    def wrap(kernel_fn: Callable) -> CustomOp:
        _register_schema(
            name, kind="custom", differentiable=differentiable, num_outputs=num_outputs
        )(_as_type_rule(infer))
        _register_kernel(name)(kernel_fn)
        return CustomOp(name)

    return wrap
