"""In-place ops: compute out of place through dispatch, write back, keep autograd right.

An in-place op bumps the tensor's version counter (shared with its views), so a backward
that saved the old value fails loudly. Writing through a view rebases the view's base onto a
CopySlices node, as PyTorch does, so gradients flow to both the base and the written value.
"""

from __future__ import annotations

from ..autograd import grad_mode
from ..autograd.graph import Node, edge_of
from ..errors import runtime_error
from ..ir.ops.shape import SCATTERABLE_VIEWS
from ..ir.schema import fmt_shape
from . import hooks
from .dispatch import dispatch
from .factories import ones, zeros_like
from .tensor import META_EPOCH, Tensor


def _dispatch(op, args, attrs):
    return dispatch(op, tuple(args), attrs)


def replay_chain(value, chain, apply):
    """The view `chain` (view ops and their attrs, from a tensor's _view_chain) of value;
    `apply(op, args, attrs)` runs an op (dispatch eagerly; the tracer adds graph nodes)."""
    for op, attrs in chain:
        value = apply(op, [value], attrs)
    return value


def _replay(base: Tensor, chain) -> Tensor:
    return replay_chain(base, chain, _dispatch)


def scatter_chain(base, src, chain, apply):
    """base with the view `chain` of it replaced by src, functionally: one view_scatter per
    view op, innermost first, through the intermediate views. `apply(op, args, attrs)` runs
    an op (dispatch eagerly; the tracer adds graph nodes)."""
    parents = [base]
    for op, attrs in chain[:-1]:
        parents.append(apply(op, [parents[-1]], attrs))
    new = src
    for (op, attrs), parent in zip(reversed(chain), reversed(parents)):
        new = apply("view_scatter", [parent, new], {"view_op": op, **attrs})
    return new


class CopySlices(Node):
    """Backward of writing `src` into a view of `base`: the base's old value gets the
    gradient outside the view, src gets the gradient inside it."""

    __slots__ = ("chain", "meta")

    def apply(self, grads):
        (g,) = grads
        region = _replay(g, self.chain)
        grad_src = region.clone()
        if all(op in SCATTERABLE_VIEWS for op, _ in self.chain):
            # functional, so a trace of this backward (compiled autograd) sees it whole
            return [scatter_chain(g, zeros_like(region), self.chain, _dispatch), grad_src]
        hooks.stop_trace("a write through a view no trace can follow (in a backward)")
        grad_base = g.clone()
        with grad_mode.no_grad():
            _replay(grad_base, self.chain)._data[...] = 0
        return [grad_base, grad_src]

    def output_meta(self, i):
        return self.meta


def _check_leaf(self: Tensor) -> None:
    if self._grad_fn is None and self._requires_grad:
        raise runtime_error(
            "a leaf Variable that requires grad is being used in an in-place operation. "
            f"(tensor of shape {fmt_shape(self.shape)}; wrap the update in `with ember.no_grad():`)"
        )
    base = self._base
    if base is not None and base._grad_fn is None and base._requires_grad:
        raise runtime_error(
            "a view of a leaf Variable that requires grad is being used in an in-place operation."
        )


def _write(self: Tensor, result: Tensor) -> None:

    if hooks.active_trace is not None and (trace := hooks.trace_here()) is not None:
        trace.written(self, result)
    if tuple(result.shape) != tuple(self.shape):
        raise runtime_error(
            f"output with shape {fmt_shape(self.shape)} doesn't match the broadcast shape "
            f"{fmt_shape(result.shape)}"
        )
    if result._dtype.category > self._dtype.category:
        raise runtime_error(
            f"result type {result._dtype.name} can't be cast to the desired output type "
            f"{self._dtype.name}"
        )
    try:
        self._data[...] = result._data
    except ValueError as exc:
        raise runtime_error(
            "unsupported operation: more than one element of the written-to tensor refers to a "
            f"single memory location (an expanded or read-only tensor): {exc}"
        ) from None
    self._version[0] += 1


def overwrite(self: Tensor, value: Tensor) -> Tensor:
    """self's values replaced by value's (its shape and dtype, on its device), recorded by
    no autograd graph: copy_ under no_grad, without the dispatches of its cast and expand
    (batch norm's running statistics, twice a call)."""
    if value._device != self._device or value._dtype is not self._dtype:
        raise runtime_error(f"overwrite: expected a {self._dtype.name} tensor on "
                            f"{self._device}, got {value._dtype.name} on {value._device}")
    _write(self, value)
    return self


def apply_inplace(self: Tensor, compute, saves_source: bool = True) -> Tensor:
    """Run compute(source) out of place and write its result into self. saves_source=False
    says that compute's backward never reads its input (relu keeps its output, leaky_relu its
    1-or-slope scale): self is then its source, without a copy."""
    recording = grad_mode.state.enabled
    if recording:
        _check_leaf(self)
        # backward may need self's old value, which the write destroys: compute on a copy
        copy = saves_source and self._requires_grad
        source = dispatch("clone", (self,)) if copy else self
    else:
        source = self
    result = compute(source)
    if not isinstance(result, Tensor):
        raise runtime_error("in-place op produced no tensor")
    _write(self, result)
    if recording and (result._requires_grad or self._requires_grad):
        if not result._requires_grad and self._base is None:
            result = _constant_write(source, result)
        _rebase_history(self, result)
    return self


def _constant_write(source: Tensor, result: Tensor) -> Tensor:
    """result, linked to source with a zero gradient: the old value was overwritten by a
    constant, so self stays in the graph but nothing flows back to its history."""
    keep = ones(tuple(result.shape), dtype="bool", device=result.device)
    return dispatch("where", (keep, result, source))


def _rebase_history(self: Tensor, result: Tensor) -> None:
    base = self._base
    if not self._requires_grad or (base is not None and not base._requires_grad):
        META_EPOCH[0] += 1  # an existing tensor starts requiring grad
    if base is None:
        self._grad_fn, self._output_nr = result._grad_fn, result._output_nr
        self._requires_grad = True
        return
    node = CopySlices()
    node.pre_hooks = None
    node.chain = self._view_chain
    node.meta = (tuple(base.shape), base._dtype, base._device)
    node.next_functions = (edge_of(base), edge_of(result))
    base._grad_fn, base._output_nr, base._requires_grad = node, 0, True
    view = _replay(base, self._view_chain)
    self._grad_fn, self._output_nr, self._requires_grad = view._grad_fn, view._output_nr, True
    self._view_version = self._version[0]
