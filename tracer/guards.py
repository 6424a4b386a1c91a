"""Guards: the facts a captured graph assumes, as comparable values, and their changes in words.

A call's guard key holds, per argument leaf, a tensor's shape, dtype, device and requires_grad
or a simple value; the globals and closure variables a function reads are guarded by value
(tensors by identity, optimizers by their options and state, modules by their modes and
attributes). When a key no longer matches, the helpers here say which fact changed, as
"x.shape[0]: 32 -> 8" or "param_groups[0]['lr']: 0.1 -> 0.02".
"""

from __future__ import annotations

from .. import _tensor


def _leaf_key(x):
    if isinstance(x, _tensor.Tensor):
        return ("T", x._data.shape, x._dtype, x._device, x._requires_grad)
    if x is None or isinstance(x, (bool, int, float, str)):
        return ("V", type(x), x)
    if isinstance(x, (tuple, frozenset)) and all(
        v is None or isinstance(v, (bool, int, float, str)) for v in x
    ):
        return ("V", type(x), x)
    return ("O", id(x))


def simple_value(value) -> bool:
    """A value guards compare by ==: None, bools, numbers, strings and tuples of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, tuple) and all(simple_value(v) for v in value)


class SameTensor:
    """A tensor held by a global or closure variable, compared by identity: the graph reads
    that very tensor live, so a name rebound to another tensor must retrace."""

    __slots__ = ("tensor",)

    def __init__(self, tensor):
        self.tensor = tensor

    def __eq__(self, other) -> bool:
        return isinstance(other, SameTensor) and other.tensor is self.tensor

    def __hash__(self) -> int:
        return id(self.tensor)

    def __repr__(self) -> str:
        return f"<tensor of shape {list(self.tensor.shape)} at {hex(id(self.tensor))}>"


_UNGUARDED = object()


def _guarded(value):
    if simple_value(value):
        return value
    if isinstance(value, _tensor.Tensor):
        return SameTensor(value)
    from ..nn.module import Module
    from ..optim.optimizer import Optimizer

    if isinstance(value, Optimizer):
        return ("optimizer", optimizer_state(value))
    if isinstance(value, Module):
        return ("module", cached_module_state(value))
    return _UNGUARDED


def optimizer_state(optimizer) -> tuple:
    """What a traced optimizer step bakes in: each group's options (lr, momentum, ...) by
    value, and which state each parameter has (its tensors by identity and shape)."""
    groups = []
    for group in optimizer.param_groups:
        options = tuple(sorted((k, v) for k, v in group.items()
                               if k != "params" and simple_value(v)))
        params = []
        for p in group["params"]:
            entries = []
            for key, v in optimizer.state.get(p, {}).items():
                if isinstance(v, _tensor.Tensor):
                    entries.append((key, id(v), tuple(v.shape), v.dtype))
                elif simple_value(v):
                    entries.append((key, v))
            params.append((id(p), tuple(entries)))
        groups.append((options, tuple(params)))
    return tuple(groups)


_module_states: dict = {}


def cached_module_state(module) -> tuple:
    """module_state() of a module a function reads as a global, recomputed only when some
    module changed (Module._epoch)."""
    from ..nn.module import Module
    from . import module_state

    cached = _module_states.get(id(module))
    if cached is None or cached[0] != Module._epoch or cached[1] is not module:
        cached = _module_states[id(module)] = (Module._epoch, module, module_state(module))
    return cached[2]


def free_values(fn) -> tuple:
    """The simple-valued globals and closure variables fn's own code reads: a traced graph
    bakes them in, so they are guarded by value; tensors they hold are guarded by identity
    (functions fn calls are not looked into)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ()
    scope = getattr(fn, "__globals__", {})
    named = [(n, scope[n]) for n in code.co_names if n in scope]
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
        try:
            named.append((name, cell.cell_contents))
        except ValueError:  # an empty cell
            pass
    owner = getattr(fn, "__self__", None)
    if owner is not None:  # a bound method bakes in its object's state (an optimizer's step)
        named.append(("self", owner))
    values = [(n, _guarded(v)) for n, v in named]
    return tuple((n, v) for n, v in values if v is not _UNGUARDED)


def _outside_names(fn) -> dict:
    """id(tensor) -> a name for the tensors fn reaches from outside: its globals and closure
    variables, or, for a module's forward, the module's parameters and buffers."""
    owner = getattr(fn, "__self__", None)
    if hasattr(owner, "named_parameters") and hasattr(owner, "named_buffers"):
        named = [*owner.named_parameters(), *owner.named_buffers()]
        return {id(t): f"self.{n}" for n, t in named if t is not None}
    return {id(v.tensor): n for n, v in free_values(fn) if isinstance(v, SameTensor)}


def _tensor_differences(name: str, old: dict, new: dict) -> list[str]:
    """What changed between two described tensors, in words: "x.shape[0]: 32 -> 8"."""
    out = [f"{name}.{field}: {old[field]} -> {new[field]}"
           for field in ("dtype", "device", "requires_grad") if old[field] != new[field]]
    sa, sb = old["shape"], new["shape"]
    if len(sa) != len(sb):
        return out + [f"{name}.dim(): {len(sa)} -> {len(sb)}"]
    return out + [f"{name}.shape[{i}]: {x} -> {y}" for i, (x, y) in enumerate(zip(sa, sb))
                  if x != y]


def _describe_leaf(key) -> dict:
    if key[0] == "T":
        return {"shape": tuple(key[1]), "dtype": key[2], "device": key[3], "requires_grad": key[4]}
    return {"value": key[2] if key[0] == "V" else f"<object at {hex(key[1])}>"}


def _leaf_text(key) -> str:
    """An argument leaf in a recompile message: a value as Python writes it (so 3 and '3'
    differ), or what kind of thing it is."""
    if key[0] == "V":
        return repr(key[2])
    return "a tensor" if key[0] == "T" else _describe_leaf(key)["value"]


def _tagged(value, tag: str) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and value[0] == tag


def _optimizer_change(old: tuple, new: tuple) -> str:
    """What changed between two optimizer_state() fingerprints, in words."""
    if len(old) != len(new):
        return f"param groups: {len(old)} -> {len(new)}"
    for i, ((opts_a, params_a), (opts_b, params_b)) in enumerate(zip(old, new)):
        a, b = dict(opts_a), dict(opts_b)
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return f"param_groups[{i}]['{key}']: {a.get(key)!r} -> {b.get(key)!r}"
        if params_a != params_b:
            return f"param_groups[{i}]: the optimizer's state changed (buffers created or replaced)"
    return "optimizer state changed"


def _grad_text(meta) -> str:
    return "None" if meta is None else f"a gradient of shape {list(meta[0])}"
