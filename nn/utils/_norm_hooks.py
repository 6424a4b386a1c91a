"""What weight_norm and spectral_norm share: the forward pre-hook each puts on a module for a
parameter, the parameter it takes over, and taking the hook off again."""

from __future__ import annotations

from ...errors import runtime_error, value_error
from ..module import Module
from ..parameter import Parameter


def hook_on(module: Module, kind: type, name: str):
    """(key, hook): module's forward pre-hook of class `kind` that rewrites `name`, or None."""
    for key, hook in module._forward_pre_hooks.items():
        if isinstance(hook, kind) and hook.name == name:
            return key, hook
    return None


def parameter_to_take(module: Module, kind: type, name: str, what: str) -> Parameter:
    """module's parameter `name`, for `what` (weight_norm, spectral_norm) to take over: an error
    where kind's hook has it already, or where there is no such parameter."""
    if hook_on(module, kind, name) is not None:
        raise runtime_error(f"Cannot register two {what} hooks on the same parameter {name}")
    weight = module._parameters.get(name)
    if weight is None:
        raise value_error(
            f"{what}: {type(module).__name__} has no parameter '{name}' to normalize "
            f"(its parameters: {list(module._parameters)})"
        )
    return weight


def remove_hook(module: Module, kind: type, name: str, what: str) -> Module:
    """Fold kind's hook on `name` back into one parameter and take it off; returns module."""
    found = hook_on(module, kind, name)
    if found is None:
        raise value_error(f"{what} of '{name}' not found in {type(module).__name__}")
    key, hook = found
    hook.remove(module)
    del module._forward_pre_hooks[key]
    return module
