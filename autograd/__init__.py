"""The one autograd engine: graph, backward, grad, grad modes, Function, gradcheck.

Loaded lazily (PEP 562) so that importing grad modes does not pull in the engine.
"""

import importlib

_EXPORTS = {
    "backward": "engine",
    "grad": "engine",
    "Function": "function",
    "FunctionCtx": "function",
    "enable_grad": "grad_mode",
    "inference_mode": "grad_mode",
    "is_grad_enabled": "grad_mode",
    "no_grad": "grad_mode",
    "set_grad_enabled": "grad_mode",
    "GradcheckError": "gradcheck",
    "gradcheck": "gradcheck",
    "gradgradcheck": "gradcheck",
    "Variable": "variable",
}

__all__ = list(_EXPORTS)


# submodules reached as attributes (torch.autograd.profiler.profile)
_SUBMODULES = {"profiler", "graph", "engine", "function", "grad_mode", "gradcheck"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ember.autograd' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
