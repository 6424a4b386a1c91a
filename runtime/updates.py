"""Optimizer updates as one native pass per parameter (codegen/llvm/updates.py).

The optimizers' eager paths call these when every array is a contiguous CPU float32/float64
array of one dtype and no two share memory; the results are bit for bit the numpy paths'.
"""

from __future__ import annotations

import numpy as np

from . import windows
from .native import data_pointer

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def usable(*arrays) -> bool:
    """Whether the native updates take these arrays (see the module docstring). Called per
    parameter per step, so it checks only what it must, cheaply."""
    if not windows.available():  # llvmlite here (no arrays: nothing else checked)
        return False
    dtype = arrays[0].dtype
    if dtype not in _FLOATS:
        return False
    pointers = set()
    for a in arrays:
        if a.__class__ is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
            return False
        pointers.add(data_pointer(a))
    return len(pointers) == len(arrays)


def _bits(values) -> list:
    return np.array(values, dtype=np.float64).view(np.int64).tolist()


def adam(p, g, m, v, peak, decay: str, decay_value: float, beta1: float, beta2: float,
         bias_correction2_sqrt: float, eps: float, step_size: float) -> None:
    """One Adam step in place on p, m, v (and peak, the running maximum of v, with amsgrad)."""
    from ..codegen.llvm.updates import adam_ir, adam_name

    dtype, amsgrad = windows.dtype_name(p), peak is not None
    arrays = [p, g, m, v] + ([peak] if amsgrad else [])
    scalars = [decay_value, 1 - beta1, beta2, 1 - beta2, bias_correction2_sqrt, eps,
               -step_size]
    windows.run_task(adam_name(dtype, decay, amsgrad), lambda: adam_ir(dtype, decay, amsgrad),
                     [data_pointer(a) for a in arrays] + _bits(scalars), p.size, p.size)


def sgd(p, g, b, weight_decay: float, momentum: float, dampening: float, nesterov: bool,
        lr: float) -> None:
    """One SGD step in place on p, and on its momentum buffer b (None without momentum)."""
    from ..codegen.llvm.updates import sgd_ir, sgd_name

    dtype, decay, dampened, has_buffer = windows.dtype_name(p), weight_decay != 0, dampening != 0, \
        b is not None
    if has_buffer:
        words = [data_pointer(p), data_pointer(g), data_pointer(b)] + _bits(
            [weight_decay, momentum, 1 - dampening, -lr])
    else:
        words = [data_pointer(p), data_pointer(g)] + _bits([weight_decay, -lr])
    name = sgd_name(dtype, decay, dampened, nesterov, has_buffer)
    windows.run_task(name, lambda: sgd_ir(dtype, decay, dampened, nesterov, has_buffer), words,
                     p.size, p.size)
