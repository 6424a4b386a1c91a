"""repr() of tensors, formatted as PyTorch formats them."""

from __future__ import annotations

import numpy as np

from .runtime.device import CPU, to_device


def _format_array(array: np.ndarray, floating: bool) -> str:
    if floating:
        finite = array[np.isfinite(array)]
        integral = finite.size == 0 or bool(np.all(finite == np.round(finite)))
        large = finite.size and (np.abs(finite).max() >= 1e8 or
                                 (np.abs(finite[finite != 0]).min() < 1e-4 if np.any(finite) else False))

        def fmt(v):
            if np.isnan(v):
                return "nan"
            if np.isinf(v):
                return "inf" if v > 0 else "-inf"
            if large:
                return f"{v:.4e}"
            return f"{v:.0f}." if integral else f"{v:.4f}"

        formatter = {"float_kind": fmt}
    else:
        formatter = None
    body = np.array2string(array, separator=", ", formatter=formatter, threshold=1000,
                           edgeitems=3, max_line_width=80, prefix="tensor(")
    return body


def tensor_repr(t) -> str:
    array = to_device(t._data, CPU)
    floating = t._dtype.is_floating_point
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    if array.dtype == np.bool_:
        body = np.array2string(array, separator=", ", prefix="tensor(",
                               formatter={"bool": lambda v: "True" if v else "False"})
    else:
        body = _format_array(array, floating)
    suffix = []
    if t._device != CPU:
        suffix.append(f"device='{t._device}'")
    default_shown = {"float32", "int64", "bool"}
    if t._dtype.name not in default_shown or array.size == 0:
        suffix.append(f"dtype=ember.{t._dtype.name}")
    if array.size == 0:
        suffix.insert(0, f"size={tuple(array.shape)}")
        body = "[]"
    if t._grad_fn is not None:
        suffix.append(f"grad_fn=<{t._grad_fn.name()}>")
    elif t._requires_grad:
        suffix.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + s for s in suffix) + ")"
