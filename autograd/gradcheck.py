"""gradcheck and gradgradcheck: analytical gradients against central finite differences."""

from __future__ import annotations

import sys
import types

import numpy as np

from ..errors import EmberRuntimeError
from .engine import grad


class GradcheckError(EmberRuntimeError):
    """The analytical and numerical gradients disagree."""


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _outputs(fn, inputs):
    return tuple(o for o in _as_tuple(fn(*inputs)) if hasattr(o, "_data"))


def _differentiable(inputs):
    return [i for i, x in enumerate(inputs) if hasattr(x, "_data") and x.requires_grad]


def _numerical(fn, inputs, wrt, eps):
    """d(outputs)/d(inputs[wrt]) by central differences: one (out.numel, in.numel) per pair."""
    # grad mode stays as the caller set it: fn may itself call grad() (gradgradcheck does)
    outs = _outputs(fn, inputs)
    jac = [[np.zeros((o.numel(), inputs[i].numel())) for i in wrt] for o in outs]
    for col, i in enumerate(wrt):
        x = inputs[i]
        flat = x._data.reshape(-1) if x._data.flags.c_contiguous else None
        if flat is None:
            raise GradcheckError("gradcheck needs contiguous inputs")
        for k in range(flat.size):
            orig = flat[k].item()
            flat[k] = orig + eps
            plus = [
                o.detach().numpy(force=True).astype(np.float64).reshape(-1).copy()
                for o in _outputs(fn, inputs)
            ]
            flat[k] = orig - eps
            minus = [
                o.detach().numpy(force=True).astype(np.float64).reshape(-1).copy()
                for o in _outputs(fn, inputs)
            ]
            flat[k] = orig
            for r, (p, m) in enumerate(zip(plus, minus)):
                jac[r][col][:, k] = (p - m) / (2 * eps)
    return outs, jac


def _analytical(fn, inputs, wrt):
    from .._tensor.factories import zeros_like
    from .._tensor.memory_format import contiguous_format

    outs = _outputs(fn, inputs)
    jac = [[np.zeros((o.numel(), inputs[i].numel())) for i in wrt] for o in outs]
    targets = [inputs[i] for i in wrt]
    for r, out in enumerate(outs):
        if not out.requires_grad:
            continue
        for k in range(out.numel()):
            # contiguous, so that writing through reshape(-1) reaches it (zeros_like keeps
            # a channels-last output's layout)
            g = zeros_like(out, memory_format=contiguous_format)
            g._data.reshape(-1)[k] = 1
            grads = grad([out], targets, [g], retain_graph=True, allow_unused=True)
            for col, gi in enumerate(grads):
                if gi is not None:
                    jac[r][col][k, :] = gi.detach().numpy(force=True).astype(np.float64).reshape(-1)
    return jac


def gradcheck(
    fn,
    inputs,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    **_ignored,
) -> bool:
    """True when fn's autograd gradients match finite differences (use float64 inputs)."""
    inputs = _as_tuple(inputs)
    wrt = _differentiable(inputs)
    if not wrt:
        raise GradcheckError("gradcheck expects at least one input tensor to require gradient")
    for i in wrt:
        if inputs[i].dtype.name != "float64":
            import warnings

            warnings.warn(
                f"gradcheck: input {i} is {inputs[i].dtype.name}, not float64; "
                "finite differences will be inaccurate",
                stacklevel=2,
            )
    _, numerical = _numerical(fn, inputs, wrt, eps)
    analytical = _analytical(fn, inputs, wrt)
    for r, (num_row, ana_row) in enumerate(zip(numerical, analytical)):
        for col, (n, a) in enumerate(zip(num_row, ana_row)):
            if not np.allclose(a, n, rtol=rtol, atol=atol, equal_nan=True):
                if not raise_exception:
                    return False
                worst = np.unravel_index(np.nanargmax(np.abs(a - n)), a.shape)
                raise GradcheckError(
                    f"Jacobian mismatch for output {r} with respect to input {wrt[col]}:\n"
                    f"numerical:{n}\nanalytical:{a}\n"
                    f"largest difference at {worst}: numerical {n[worst]}, analytical {a[worst]}"
                )
    return True


def gradgradcheck(
    fn,
    inputs,
    grad_outputs=None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    **_ignored,
) -> bool:
    """gradcheck of the first derivative: checks second-order gradients."""
    from .._tensor.factories import randn

    inputs = _as_tuple(inputs)
    wrt = _differentiable(inputs)
    outs = _outputs(fn, inputs)
    if grad_outputs is None:
        grad_outputs = tuple(
            randn(tuple(o.shape), dtype=o.dtype, device=o.device).requires_grad_(True)
            for o in outs
            if o.requires_grad
        )
    grad_outputs = _as_tuple(grad_outputs)
    n = len(inputs)

    def first_derivative(*args):
        xs, gos = args[:n], args[n:]
        outs = [o for o in _outputs(fn, xs) if o.requires_grad]
        gs = grad(outs, [xs[i] for i in wrt], list(gos), create_graph=True, allow_unused=True)
        from .._tensor.factories import zeros_like

        return tuple(g if g is not None else zeros_like(xs[i]) for g, i in zip(gs, wrt))

    return gradcheck(
        first_derivative,
        inputs + grad_outputs,
        eps=eps,
        atol=atol,
        rtol=rtol,
        raise_exception=raise_exception,
    )


class _CallableModule(types.ModuleType):
    """This module, callable as gradcheck: `import ember.autograd.gradcheck` run before
    `ember.autograd.gradcheck` is first read makes the import system set the package's
    attribute to the module, so a later `ember.autograd.gradcheck(fn, inputs)` (a function in
    PyTorch, whatever was imported) would otherwise fail with "module is not callable"."""

    def __call__(self, *args, **kwargs):
        return gradcheck(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
