"""Guards: the facts a captured graph assumes, as comparable values, and their changes in words.

A call's guard key (CallKey) holds its argument structure, per argument leaf a TensorLeaf (a
tensor's shape, dtype, device and requires_grad), a ValueLeaf (a simple value) or an ObjectLeaf
(any other object, by identity), the grad mode, and the state it reads: the globals and
closure variables a function reads are guarded by value (tensors by identity, optimizers by
their options and state, modules by their modes and attributes). Its parts are frozen
records and tuples of them, compared by ==, so keys compare and hash as the facts they hold
(the specialization cache's keys). When a key no longer matches, the helpers here say which
fact changed, as "x.shape[0]: 32 -> 8" or "param_groups[0]['lr']: 0.1 -> 0.02".
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

from .. import _tensor


@dataclass(frozen=True, slots=True)
class TensorLeaf:
    """A tensor argument (or a tensor from outside): what a graph assumes about it."""

    shape: tuple
    dtype: object
    device: object
    requires_grad: bool

    def describe(self) -> dict:
        return {"shape": tuple(self.shape), "dtype": self.dtype, "device": self.device,
                "requires_grad": self.requires_grad}

    def in_words(self) -> str:
        return "a tensor"


@dataclass(frozen=True, slots=True)
class ValueLeaf:
    """A simple value (None, a bool, number or string, a tuple or frozenset of them), with
    its type, so that 1, 1.0 and True differ."""

    type: type
    value: object

    def describe(self) -> dict:
        return {"value": self.value}

    def in_words(self) -> str:
        return repr(self.value)  # as Python writes it, so 3 and '3' differ


@dataclass(frozen=True, slots=True)
class ObjectLeaf:
    """Any other object, guarded by identity."""

    id: int

    def describe(self) -> dict:
        return {"value": self.in_words()}

    def in_words(self) -> str:
        return f"<object at {hex(self.id)}>"


@dataclass(frozen=True, slots=True)
class CallKey:
    """Everything a call's guards check but the values the code read: the argument structure,
    a record per argument leaf, the grad mode and the state the function reads."""

    structure: object  # the arguments' pytree Spec
    leaves: tuple  # TensorLeaf, ValueLeaf or ObjectLeaf per argument leaf
    grad_enabled: bool
    state: tuple  # free_values(fn), or a module's module_state()
    # which argument tensors share memory (alias_pattern): None when none do. Not compared
    # with the other facts: only a graph that depends on it (Specialization.alias_sensitive)
    # checks it, so two detached views of one zero state still share a step's graph
    aliases: tuple | None = field(default=None, compare=False)

    def same_but_leaves(self, other: CallKey) -> bool:
        """Whether other has these facts, except perhaps the argument leaves' own."""
        return (self.structure == other.structure and self.grad_enabled == other.grad_enabled
                and self.state == other.state and len(self.leaves) == len(other.leaves))


_LEAVES: dict = {}  # facts -> their record, for the leaves tensor_leaf and leaf_record share
# equal values of these types are the same value (unlike 0.0 and -0.0, or (1, 2.0) and
# (1.0, 2)): one record can stand for all of them, and a message shows any of them alike
_SHARED_VALUE_TYPES = frozenset({int, str, bool, type(None)})


def _shared(facts, make):
    """The one record of these facts (made by make() the first time). Calls with the same
    facts then have the same records, so their keys compare leaf by leaf by identity."""
    leaf = _LEAVES.get(facts)
    if leaf is None:
        if len(_LEAVES) >= 4096:  # shapes seen once each (varying lengths): bounded
            _LEAVES.clear()
        leaf = _LEAVES[facts] = make()
    return leaf


def tensor_leaf(tensor) -> TensorLeaf:
    """tensor's TensorLeaf (see _shared)."""
    # the record holds its device, so that device's id is not reused while it is shared
    facts = (tensor._data.shape, tensor._dtype, id(tensor._device), tensor._requires_grad)
    leaf = _LEAVES.get(facts)
    if leaf is not None:
        return leaf
    return _shared(facts, lambda: TensorLeaf(tensor._data.shape, tensor._dtype,
                                             tensor._device, tensor._requires_grad))


def tensor_leaves(values) -> tuple | None:
    """The TensorLeaf of each of values, or None when one is not a tensor (a call's usual
    arguments: this runs on every call, so the shared record is looked up in place)."""
    get = _LEAVES.get
    leaves = []
    for x in values:
        if not isinstance(x, _tensor.Tensor):
            return None
        leaf = get((x._data.shape, x._dtype, id(x._device), x._requires_grad))
        leaves.append(leaf if leaf is not None else tensor_leaf(x))
    return tuple(leaves)


def alias_pattern(values) -> tuple | None:
    """Which of values (a call's argument leaves) are tensors sharing memory: None when no two
    do (the usual call, found by the arrays' owners alone), else a sorted tuple of
    (i, j, same) per pair i < j that may overlap, same when they are one tensor object. A
    graph traced with f(x, y) reads and writes two arrays; f(x, x) must not run it, since
    eager's write through one argument is seen by the other."""
    owners: dict = {}
    shared = False
    borrowed = []  # tensors over memory no array owns (shared memory, a bytes buffer)
    for i, x in enumerate(values):
        if isinstance(x, _tensor.Tensor):
            owner, borrowing = _owner(x._data)
            if borrowing:
                borrowed.append(i)
            key = id(owner)
            if key in owners:
                owners[key].append(i)
                shared = True
            else:
                owners[key] = [i]
    if not shared and not borrowed:
        return None
    pairs = set()
    for members in owners.values():
        for n, i in enumerate(members):
            for j in members[n + 1:]:
                a, b = values[i], values[j]
                if a is b:
                    pairs.add((i, j, True))
                elif _may_overlap(a._data, b._data):
                    pairs.add((i, j, False))
    # two buffers may still be one memory (two frombuffer arrays of one bytes object): their
    # tensors are compared with every other tensor by bounds
    found = {(i, j) for i, j, _ in pairs}
    tensors = [i for i, x in enumerate(values) if isinstance(x, _tensor.Tensor)]
    for i in borrowed:
        for j in tensors:
            pair = (min(i, j), max(i, j))
            if j != i and pair not in found and _may_overlap(values[i]._data, values[j]._data):
                found.add(pair)
                pairs.add((*pair, values[i] is values[j]))
    return tuple(sorted(pairs)) or None


def _owner(data):
    """(the array owning data's memory, whether that memory is borrowed: an array over a
    buffer no array owns, share_memory_() or frombuffer; then the buffer). A view's base is
    the array that owns its memory, or one over a buffer, whose own base is that buffer."""
    base = data.base
    if base is None:
        return data, False
    while base.__class__ is data.__class__ and base.base is not None:
        base = base.base
    return base, base.__class__ is not data.__class__


def overlapping(a, b) -> bool:
    """Whether two tensors may share memory (one tensor, a tensor and its view)."""
    if a is b:
        return True
    x, y = a._data, b._data
    (ox, bx), (oy, by) = _owner(x), _owner(y)
    return (ox is oy or bx or by) and _may_overlap(x, y)


def overlaps_any(leaves, tensors) -> bool:
    """Whether a tensor among leaves may share memory with one of tensors (a call's few
    arguments against a training step's parameters and states: ~0.1 us per tensor)."""
    owners: dict = {}  # id of an owning array -> the leaves over it
    borrowing = False
    for x in leaves:
        if isinstance(x, _tensor.Tensor):
            owner, borrowed = _owner(x._data)
            owners.setdefault(id(owner), []).append(x)
            borrowing |= borrowed
    if not owners:
        return False
    for t in tensors:
        data = t._data
        if data.base is None:
            over = owners.get(id(data))
            if over is not None and any(overlapping(x, t) for x in over):
                return True
            if not borrowing:
                continue
        owner, borrowed = _owner(data)
        if borrowing or borrowed:
            if any(overlapping(x, t) for over in owners.values() for x in over):
                return True
        elif id(owner) in owners and any(overlapping(x, t) for x in owners[id(owner)]):
            return True
    return False


def _may_overlap(a, b) -> bool:
    """Whether two arrays of one owner may share bytes (their bounds overlap): slices of one
    buffer side by side do not."""
    import numpy as np

    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.may_share_memory(a, b))
    return True  # another array library's: taken to overlap


def aliases_in_words(aliases, names) -> str:
    """aliases (alias_pattern's) as a sentence naming the arguments."""
    if not aliases:
        return "no arguments share memory"
    return "; ".join(f"{names[i]} and {names[j]} are "
                     f"{'the same tensor' if same else 'views of the same memory'}"
                     for i, j, same in aliases)


def leaf_record(x):
    """The record of one argument leaf in a call's guard key."""
    if isinstance(x, _tensor.Tensor):
        leaf = _LEAVES.get((x._data.shape, x._dtype, id(x._device), x._requires_grad))
        return leaf if leaf is not None else tensor_leaf(x)
    kind = type(x)
    if kind in _SHARED_VALUE_TYPES:
        leaf = _LEAVES.get((kind, x))
        return leaf if leaf is not None else _shared((kind, x), lambda: ValueLeaf(kind, x))
    if isinstance(x, (bool, int, float, str)):
        return ValueLeaf(kind, x)
    if isinstance(x, (tuple, frozenset)) and all(
        v is None or isinstance(v, (bool, int, float, str)) for v in x
    ):
        return ValueLeaf(kind, x)
    return ObjectLeaf(id(x))


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


@dataclass(frozen=True, slots=True)
class ParamGroupState:
    """One param group: its options by value ((name, value) sorted by name), and per
    parameter, by identity, the parameter, its state dict and each value in it (the
    optimizer's buffers and step counts: a buffer created or replaced changes them)."""

    options: tuple
    params: tuple


@dataclass(frozen=True, slots=True)
class OptimizerState:
    """What a traced optimizer step bakes in: a ParamGroupState per param group."""

    groups: tuple

    def change_from(self, old: OptimizerState) -> str:
        """What changed since `old`, in words."""
        if len(old.groups) != len(self.groups):
            return f"param groups: {len(old.groups)} -> {len(self.groups)}"
        for i, (a, b) in enumerate(zip(old.groups, self.groups)):
            before, after = dict(a.options), dict(b.options)
            for key in sorted(set(before) | set(after)):
                if before.get(key) != after.get(key):
                    return (f"param_groups[{i}]['{key}']: {before.get(key)!r} -> "
                            f"{after.get(key)!r}")
            if a.params != b.params:
                return (f"param_groups[{i}]: the optimizer's state changed (buffers created or "
                        f"replaced)")
        return "optimizer state changed"


@dataclass(frozen=True, slots=True)
class ModuleState:
    """A module a function reads as a global: its module_state() (name, value) pairs."""

    entries: tuple


_UNGUARDED = object()


@functools.cache
def _stateful_classes() -> tuple:
    """(Module, Optimizer, module_state), imported once, on first use: a guard key is made on
    every call, and an import statement there would cost more than the rest of it."""
    from ..nn.module import Module
    from ..optim.optimizer import Optimizer
    from . import module_state

    return Module, Optimizer, module_state


def _guarded(value):
    if simple_value(value):
        return value
    if isinstance(value, _tensor.Tensor):
        return SameTensor(value)
    module_class, optimizer_class, _ = _stateful_classes()
    if isinstance(value, optimizer_class):
        return optimizer_state(value)
    if isinstance(value, module_class):
        return ModuleState(cached_module_state(value))
    return _UNGUARDED


def optimizer_state(optimizer) -> OptimizerState:
    """What a traced optimizer step bakes in: each group's options (lr, momentum, ...) by
    value, and which state each parameter has (by identity: made on every call, so only ids
    are taken, in C-speed tuples)."""
    groups = []
    state = optimizer.state
    for group in optimizer.param_groups:
        options = tuple(sorted((k, v) for k, v in group.items()
                               if k != "params" and simple_value(v)))
        params = []
        for p in group["params"]:
            held = state.get(p)
            params.append((id(p), None) if held is None
                          else (id(p), id(held), tuple(held), tuple(map(id, held.values()))))
        groups.append(ParamGroupState(options, tuple(params)))
    return OptimizerState(tuple(groups))


def optimizer_unchanged(optimizer):
    """A function telling, fast, whether optimizer still has the options and state it has
    now (optimizer_state() equal), for a guard checked on every call: the same groups with
    the same options, and per parameter the same state dict holding the same objects (ids
    compared as whole tuples, in C)."""
    groups = optimizer.param_groups
    shape = [(g, tuple(k for k, v in g.items() if k != "params" and simple_value(v)), len(g),
              g["params"], len(g["params"])) for g in groups]
    values = [tuple(map(g.__getitem__, keys)) for g, keys, *_ in shape]
    state = optimizer.state
    params = tuple(p for g in groups for p in g["params"])
    entries = tuple(map(state.get, params))
    entry_ids = tuple(map(id, entries))
    held = tuple(e for e in entries if e is not None)
    held_ids = tuple(map(id, itertools.chain.from_iterable(map(dict.values, held))))
    n_groups = len(shape)

    def unchanged() -> bool:
        if (optimizer.param_groups is not groups or optimizer.state is not state
                or len(groups) != n_groups):
            return False
        for (g, keys, n, group_params, n_params), expected, now in zip(shape, values, groups):
            if (g is not now or len(g) != n or g["params"] is not group_params
                    or len(group_params) != n_params
                    or tuple(map(g.__getitem__, keys)) != expected):
                return False
        return (tuple(map(id, map(state.get, params))) == entry_ids
                and tuple(map(id, itertools.chain.from_iterable(map(dict.values, held))))
                == held_ids)

    return unchanged


_module_states: dict = {}


def cached_module_state(module) -> tuple:
    """module_state() of a module a function reads as a global, recomputed only when some
    module changed (Module._epoch)."""
    module_class, _, module_state = _stateful_classes()
    epoch = module_class._epoch
    cached = _module_states.get(id(module))
    if cached is None or cached[0] != epoch or cached[1] is not module:
        cached = _module_states[id(module)] = (epoch, module, module_state(module))
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


@dataclass(frozen=True, slots=True)
class GradType:
    """The shape and dtype of the .grad a graph found on a tensor at the call's start, and
    whether it required grad (a gradient made under create_graph=True carries history: the
    graph's results then carry it too, and a specialization traced without it records none)."""

    shape: tuple
    dtype: object
    requires_grad: bool = False

    @staticmethod
    def of(grad) -> GradType | None:
        return (None if grad is None
                else GradType(tuple(grad.shape), grad._dtype, grad._requires_grad))

    def holds(self, grad) -> bool:
        return (grad is not None and tuple(grad.shape) == self.shape
                and grad._dtype == self.dtype and grad._requires_grad == self.requires_grad)


def _grad_text(meta: GradType | None) -> str:
    if meta is None:
        return "None"
    history = " that requires grad" if meta.requires_grad else ""
    return f"a gradient of shape {list(meta.shape)}{history}"
