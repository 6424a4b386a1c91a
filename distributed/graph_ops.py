"""Collectives inside ember.script: recorded as graph ops, run by the compiled program.

While a function is traced, all_reduce, broadcast, all_gather_into_tensor and
reduce_scatter_tensor dispatch a side-effect op (ir/ops/collectives.py) instead of calling the
backend themselves, and write its result into their output tensor as an in-place op does (the
trace functionalizes the write). The op's kernel (runtime/kernels/collectives.py) calls this
file's GraphCollectives, which runs the collective on arrays through the same backends,
checks and timeout as an eager call: so ranks running the compiled graph and ranks running
eagerly meet in the same collectives. Other collectives, and collectives on tensors that
require grad, end the capture (the function runs eagerly, with a warning saying why).
"""

from __future__ import annotations

from .. import _tensor
from .._tensor import hooks
from ..autograd import grad_mode
from ..ir.dtypes import from_numpy
from ..runtime.device import array_module, device_of_array
from ._common import ReduceOp, _codes, _describe, _issue, _reduction
from .work import Work, start_check


def recording(tensors, what: str) -> bool:
    """Whether this collective is recorded into the graph being traced (if any)."""
    if hooks.trace_here() is None:
        return False
    if any(t._requires_grad for t in tensors):
        # eagerly a collective is invisible to autograd; a recorded in-place write is not
        hooks.stop_trace(f"a collective ({what}) on a tensor that requires grad")
        return False
    return True


def record(pg, what: str, output, op: str, source, attrs: dict, async_op: bool):
    """Dispatch graph op `op` on source and write its result into output (reshaped to it:
    the gathering and scattering ops work on flat tensors)."""
    from .._tensor.inplace import apply_inplace

    shape = tuple(output.shape)

    def compute(_):
        if source is output:  # all_reduce, broadcast: a view of output would stop the trace
            return _tensor.dispatch(op, (source,), attrs)
        return _tensor.dispatch(op, (source.reshape(-1),), attrs).reshape(shape)

    with grad_mode.no_grad():
        apply_inplace(output, compute)
    work = Work(pg, pg.control(), what, [], None, [output])  # already complete
    return work if async_op else None


class GraphCollectives:
    """A process group's collectives on arrays, for the kernels of the collective graph ops.
    Each returns its result as a new array, and blocks until it has it."""

    def __init__(self, pg):
        self.pg = pg

    def _run(self, what: str, array, codes: list[int], call_name: str, *args):
        pg = self.pg
        pg.check_usable(what)
        backend = pg.backend_for(device_of_array(array), what)
        check = start_check(pg, codes, _describe)
        requests = _issue(pg, backend, what, getattr(backend, call_name), *args)
        Work(pg, backend, what, requests, None, (), check).wait()
        return backend

    @staticmethod
    def _copy(x):
        return array_module(device_of_array(x)).array(x, copy=True, order="C")

    def _reduce(self, what: str, x, op: str):
        reduce_op = ReduceOp[op]
        dtype = from_numpy(x.dtype)
        backend = self.pg.backend_for(device_of_array(x), what)
        return reduce_op, dtype, _reduction(reduce_op, dtype, backend, what)

    def all_reduce(self, x, op: str):
        what = "all_reduce"
        reduce_op, dtype, (reduction, average) = self._reduce(what, x, op)
        out = self._copy(x)
        codes = _codes(what, dtype, out.size, reduce_op)
        self._run(what, out, codes, "all_reduce", out, reduction)
        if average:
            out /= self.pg.size()
        return out

    def broadcast(self, x, src: int):
        what = "broadcast"
        out = self._copy(x)
        codes = _codes(what, from_numpy(x.dtype), out.size, root=src)
        self._run(what, out, codes, "broadcast", out, src)
        return out

    def all_gather(self, x):
        what = "all_gather_into_tensor"
        send = self._copy(x)
        xp = array_module(device_of_array(x))
        out = xp.empty(send.size * self.pg.size(), dtype=send.dtype)
        codes = _codes("all_gather", from_numpy(x.dtype), send.size)
        self._run(what, send, codes, "all_gather", send, out)
        return out

    def reduce_scatter(self, x, op: str):
        what = "reduce_scatter_tensor"
        reduce_op, dtype, (reduction, average) = self._reduce(what, x, op)
        send = self._copy(x)
        xp = array_module(device_of_array(x))
        out = xp.empty(send.size // self.pg.size(), dtype=send.dtype)
        codes = _codes("reduce_scatter", dtype, out.size, reduce_op)
        self._run(what, send, codes, "reduce_scatter", send, out, reduction)
        if average:
            out /= self.pg.size()
        return out
