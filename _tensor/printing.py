"""repr() of tensors, formatted as PyTorch formats them."""

from __future__ import annotations

import numpy as np

from ..runtime.device import CPU, to_device

_SUMMARIZE = 1000
_EDGE = 3


def _visible(array: np.ndarray) -> np.ndarray:
    """The elements the printout shows (the corners of a large tensor)."""
    if array.size <= _SUMMARIZE:
        return array.reshape(-1)
    parts = array
    for d in range(array.ndim):
        if array.shape[d] > 2 * _EDGE:
            head = np.take(parts, range(_EDGE), axis=d)
            tail = np.take(parts, range(array.shape[d] - _EDGE, array.shape[d]), axis=d)
            parts = np.concatenate([head, tail], axis=d)
    return parts.reshape(-1)


def _float_formatter(array: np.ndarray):
    shown = _visible(array).astype(np.float64)
    finite = np.abs(shown[np.isfinite(shown)])
    nonzero = finite[finite != 0]
    integral = bool(np.all(finite == np.round(finite)))
    sci = bool(nonzero.size) and (
        nonzero.max() / nonzero.min() > 1000.0 or nonzero.max() > 1e8 or nonzero.min() < 1e-4
    )

    def raw(v: float) -> str:
        if np.isnan(v):
            return "nan"
        if np.isinf(v):
            return "inf" if v > 0 else "-inf"
        if sci:
            return f"{v:.4e}"
        if integral:
            return f"{v:.0f}."
        return f"{v:.4f}"

    width = max((len(raw(v)) for v in shown), default=0)
    return lambda v: raw(float(v)).rjust(width)


def tensor_repr(t) -> str:
    array = to_device(t._data, CPU)
    if t._dtype.is_floating_point and t._dtype.itemsize == 2:  # float16, bfloat16
        array = array.astype(np.float32)
    if array.dtype == np.bool_:
        formatter = {
            "bool": lambda v: ("True" if v else "False").rjust(5 if not np.all(array) else 4)
        }
    elif t._dtype.is_floating_point:
        formatter = {"float_kind": _float_formatter(array)}
    else:
        formatter = None
    body = np.array2string(
        array,
        separator=", ",
        formatter=formatter,
        threshold=_SUMMARIZE,
        edgeitems=_EDGE,
        max_line_width=81,
        prefix="tensor(",
    )
    suffix = []
    if t._device != CPU:
        suffix.append(f"device='{t._device}'")
    if array.size == 0:
        body = "[]"
        if array.shape != (0,):
            suffix.insert(0, f"size={tuple(array.shape)}")
    if t._dtype.name not in ("float32", "int64", "bool") or (
        array.size == 0 and t._dtype.name != "float32"
    ):
        suffix.append(f"dtype=ember.{t._dtype.name}")
    if t._grad_fn is not None:
        suffix.append(f"grad_fn=<{t._grad_fn.name()}>")
    elif t._requires_grad:
        suffix.append("requires_grad=True")
    return _with_suffixes("tensor(" + body, suffix)


def _with_suffixes(text: str, suffixes: list, indent: int = len("tensor(")) -> str:
    """PyTorch's layout of dtype=, grad_fn=, ...: on the last line while it stays within 80
    columns, else each on a line of its own."""
    parts = [text]
    last_line = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last_line + len(suffix) + 2 > 80:
            parts.append(",\n" + " " * indent + suffix)
            last_line = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last_line += len(suffix) + 2
    return "".join(parts) + ")"
