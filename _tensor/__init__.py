"""The eager tensor layer: Tensor, dispatch (the one door of every op), the op functions,
factories, methods, indexing, the sparse COO layout, in-place ops, composites and printing.

Named _tensor so that ember.tensor stays the factory function, as torch._tensor does. The load
order is here and only here: the Tensor class, then dispatch, then the op functions (by kind),
then methods.py, which binds them to Tensor as methods and operators. The layer never imports
the tracer: a trace plugs in through hooks.py.
"""

# ruff: noqa: I001  (the order below is the load order)
from .tensor import Size, Tensor
from .dispatch import dispatch, is_tensor
from . import factories  # noqa: F401  (before the ops, which make tensors)
from . import ops
from . import methods  # noqa: F401  (binds the op functions to Tensor)
from . import sparse  # noqa: F401  (the sparse COO layout; binds Tensor.to_sparse)
from . import sharing  # noqa: F401  (shared memory; binds Tensor.share_memory_)

__all__ = ["Size", "Tensor", "dispatch", "is_tensor", "ops"]
