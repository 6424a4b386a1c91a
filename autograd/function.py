"""autograd.Function: user-defined ops with a forward and a hand-written backward."""

from __future__ import annotations

from .._tensor import hooks
from ..errors import runtime_error
from . import grad_mode
from .graph import Node, edge_of


class FunctionCtx:
    """The ctx a Function's forward and backward share."""

    def __init__(self):
        self.saved_tensors = ()
        self.needs_input_grad = ()
        self.non_differentiable = set()
        self.materialize_grads = True
        self._saved_versions = ()

    def save_for_backward(self, *tensors) -> None:
        self.saved_tensors = tensors
        self._saved_versions = tuple(t._version[0] if t is not None else None for t in tensors)

    def mark_non_differentiable(self, *tensors) -> None:
        self.non_differentiable.update(id(t) for t in tensors)

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = value


class _FunctionNode(Node):
    __slots__ = ("ctx", "fn_class", "freed", "meta", "n_inputs")

    def name(self) -> str:
        return f"{self.fn_class.__name__}Backward"

    def apply(self, grads):
        if self.freed:
            from .graph import _FREED_MESSAGE

            raise runtime_error(_FREED_MESSAGE)
        for t, v in zip(self.ctx.saved_tensors, self.ctx._saved_versions):
            if t is not None and t._version[0] != v:
                raise runtime_error(
                    "one of the variables needed for gradient computation has been modified by "
                    f"an inplace operation: saved by {self.name()}, is at version "
                    f"{t._version[0]}; expected version {v} instead."
                )
        result = self.fn_class.backward(self.ctx, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        if len(result) < self.n_inputs:
            raise runtime_error(
                f"function {self.name()} returned an incorrect number of gradients (expected "
                f"{self.n_inputs}, got {len(result)})"
            )
        return list(result[: self.n_inputs])

    def release(self) -> None:
        if self.ctx.saved_tensors:
            self.freed = True
        self.ctx.saved_tensors = ()

    def num_outputs(self) -> int:
        return len(self.meta)

    def output_meta(self, i):
        return self.meta[i]


class Function:
    """Subclass with static forward(ctx, *args) and backward(ctx, *grads); call .apply."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("Function subclasses must implement forward")

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("Function subclasses must implement backward")

    @classmethod
    def apply(cls, *args):
        from .._tensor import Tensor

        hooks.stop_trace(f"the custom autograd.Function {cls.__name__}")
        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a._requires_grad for a in args)
        with grad_mode.no_grad():
            outputs = cls.forward(ctx, *args)
        single = not isinstance(outputs, tuple)
        outs = (outputs,) if single else outputs
        if grad_mode.state.enabled and any(ctx.needs_input_grad):
            node = _FunctionNode()
            node.pre_hooks = None
            node.fn_class, node.ctx, node.n_inputs, node.freed = cls, ctx, len(args), False
            node.next_functions = tuple(
                edge_of(a) if isinstance(a, Tensor) and a._requires_grad else None for a in args
            )
            node.meta = tuple((tuple(o.shape), o._dtype, o._device) for o in outs)
            wrapped = []
            for i, o in enumerate(outs):
                if any(o is a for a in args):
                    o = o.detach()  # an input returned as is becomes a new output
                if id(o) not in ctx.non_differentiable and o._dtype.is_floating_point:
                    o._requires_grad, o._grad_fn, o._output_nr = True, node, i
                wrapped.append(o)
            outs = tuple(wrapped)
        return outs[0] if single else outs
