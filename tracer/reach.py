"""What a traced call reached beyond its arguments, and the Python stores it made there.

A graph bakes in more than its arguments: the module a Trainer holds as `self.model`, the
optimizer in `self.optimizer` (its learning rate, which state it has), a config's
`self.cfg.scale`. Before a call is traced, Reach takes a shallow snapshot of the Python objects
reachable from the function's roots (its bound `self`, its object arguments, the globals its
code names and its closure cells), following attributes, dict items and list items a few levels
deep. While the call is traced, a profile hook notes which code ran; the names that code loads
(attributes, globals, constant keys) say which of the reached objects it could have read.

- **Guards**: every value reached from a root along names the code read is guarded as it was
  before the call: simple values by value, tensors and other objects by identity, modules by
  identity and module_state() (training flags, parameters, plain attributes), optimizers by
  identity and optimizer_state() (hyperparameters, which state each parameter has). A later
  call with any of them changed retraces, and says which, as "self.cfg.scale: 1.0 -> 2.0".
- **Stores**: comparing the snapshot with the objects after the call gives the stores the code
  made (attribute and item assignment, deletion, list appends, globals and closure cells).
  Each is replayed on every cached call with that call's own tensors (`self.loss = loss`,
  `history.append(loss)`), or refused when it cannot be (a store into a value the graph also
  reads, or a new object the graph cannot rebuild): then the function runs eagerly, with the
  reason and the line.
"""

from __future__ import annotations

import dis
import functools
import sys
import types
from dataclasses import dataclass

from .. import _tensor
from ..errors import _is_internal
from .guards import (
    _stateful_classes,
    cached_module_state,
    optimizer_state,
    optimizer_unchanged,
    simple_value,
)
from .pytree import flatten

_MAX_DEPTH = 6
_MAX_CONTAINERS = 2000
_MAX_ITEMS = 64  # lists, tuples and dicts longer than this are not looked into
_MISSING = object()
_MODULE_GROUPS = ("_modules", "_parameters", "_buffers")
_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF",
                    "LOAD_CLASSDEREF"})
_NOT_LOOKED_INTO = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
                    types.MethodType, functools.partial, property)


@functools.lru_cache(maxsize=4096)
def _code_names(code) -> tuple[frozenset, dict]:
    """(names code reads: attributes, globals, constant keys; name -> the first line storing
    or naming it)."""
    if _SCAN is not None:
        return _SCAN(code)
    return _names_by_dis(code)


def _names_by_dis(code) -> tuple[frozenset, dict]:
    """_code_names through dis.get_instructions (any Python version)."""
    reads = set()
    lines: dict = {}
    stores: dict = {}
    line = code.co_firstlineno
    for ins in dis.get_instructions(code):
        if ins.starts_line is not None:
            line = ins.starts_line
        value = ins.argval
        if ins.opname in _LOADS or (ins.opname == "LOAD_CONST" and isinstance(value, str)):
            reads.add(value)
            lines.setdefault(value, line)
        elif ins.opname.startswith("STORE_") and isinstance(value, str):
            stores.setdefault(value, line)
    return frozenset(reads), {**lines, **stores}


def _names_by_bytes_311(code) -> tuple[frozenset, dict]:
    """_code_names read off CPython 3.11's bytecode directly: a traced training step runs
    ~1,100 code objects (ember's own included) and dis builds an Instruction, with its
    argrepr, for every instruction of each: 0.2 s of the 0.4 s from script() to a small
    MLP step's first results. The same names and lines (tested against _names_by_dis)."""
    raw, names, consts = code.co_code, code.co_names, code.co_consts
    local_name = code._varname_from_oparg  # 3.11: a cell's or local's index, as dis reads it
    starts = dict(dis.findlinestarts(code))
    reads = set()
    lines: dict = {}
    stores: dict = {}
    line = code.co_firstlineno
    extended = 0
    for offset in range(0, len(raw), 2):
        line = starts.get(offset, line)
        op = raw[offset]
        if op < _HAVE_ARGUMENT:  # CACHE words among them: 3.11's co_code has them zeroed
            extended = 0
            continue
        arg = raw[offset + 1] | extended
        if op == _EXTENDED_ARG:
            extended = arg << 8
            continue
        extended = 0
        if op in _NAME_LOADS:
            value = names[arg]
        elif op == _LOAD_GLOBAL:
            value = names[arg >> 1]  # 3.11: the low bit says whether NULL is pushed first
        elif op in _CELL_LOADS:
            value = local_name(arg)
        elif op == _LOAD_CONST:
            value = consts[arg]
            if value.__class__ is not str:
                continue
        elif op in _NAME_STORES:
            stores.setdefault(names[arg], line)
            continue
        elif op in _LOCAL_STORES:
            stores.setdefault(local_name(arg), line)
            continue
        else:
            continue
        reads.add(value)
        if value not in lines:
            lines[value] = line
    return frozenset(reads), {**lines, **stores}


_SCAN = None
if sys.version_info[:2] == (3, 11) and hasattr(types.CodeType, "_varname_from_oparg"):
    import opcode as _opcode

    _ops = _opcode.opmap
    _HAVE_ARGUMENT, _EXTENDED_ARG = _opcode.HAVE_ARGUMENT, _ops["EXTENDED_ARG"]
    _NAME_LOADS = frozenset(_ops[n] for n in ("LOAD_ATTR", "LOAD_METHOD", "LOAD_NAME"))
    _LOAD_GLOBAL, _LOAD_CONST = _ops["LOAD_GLOBAL"], _ops["LOAD_CONST"]
    _CELL_LOADS = frozenset(_ops[n] for n in ("LOAD_DEREF", "LOAD_CLASSDEREF"))
    _NAME_STORES = frozenset(_ops[n] for n in ("STORE_NAME", "STORE_ATTR", "STORE_GLOBAL"))
    _LOCAL_STORES = frozenset(_ops[n] for n in ("STORE_FAST", "STORE_DEREF"))
    _SCAN = _names_by_bytes_311


def _label(path: str, kind: str, key) -> str:
    if kind == "attr":
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


@dataclass(slots=True)
class _Container:
    """A mutable object reached before the call, with a shallow copy of its contents."""

    obj: object
    kind: str  # "object" (its __dict__), "dict", "list", "cell"
    label: str
    items: object  # dict copy, list copy, or the cell's contents


@dataclass(slots=True)
class Guard:
    """One reached value as the call found it: `get()` reads it now."""

    label: str
    get: object
    kind: str  # "value", "same", "module", "optimizer"
    expected: object
    state: object = None  # the module's or optimizer's state before the call

    def describe(self) -> str:
        if self.kind == "value":
            return f"{self.label} == {self.expected!r}"
        what = {"same": "the same object", "module": "the same module, same modes and "
                "attributes", "optimizer": "the same optimizer, same options and state keys"}
        return f"{self.label} is {what[self.kind]}"

    def change(self) -> str | None:
        """What changed since the trace, in words (None: it holds)."""
        now = self.get()
        kind, expected = self.kind, self.expected
        if kind == "value":
            if now is expected or (type(now) is type(expected) and now == expected):
                return None
            return f"{self.label}: {_words(expected)} -> {_words(now)}"
        if now is not expected:
            return f"{self.label}: replaced by another object"
        if kind == "module":
            state = cached_module_state(now)
            if state is self.state or state == self.state:
                return None
            before, after = dict(self.state), dict(state)
            for name in [*before, *after]:
                if before.get(name, _MISSING) != after.get(name, _MISSING):
                    shown = name.replace("self", self.label, 1)
                    return (f"{shown}: {_words(before.get(name, _MISSING))} -> "
                            f"{_words(after.get(name, _MISSING))}")
            return f"{self.label}: module state changed"
        if kind == "optimizer":
            unchanged, before = self.state
            if unchanged():
                return None
            return f"{self.label}: {optimizer_state(now).change_from(before)}"
        return None


def _words(value) -> str:
    if value is _MISSING:
        return "(absent)"
    return repr(value) if simple_value(value) else f"<{type(value).__name__}>"


def _getter(root, steps: tuple):
    """A function reading the value at root.steps now (_MISSING where the path breaks)."""
    module_class = _stateful_classes()[0]

    def get():
        value = root()
        try:
            for kind, key in steps:
                if kind == "attr":
                    if isinstance(value, module_class):
                        value = getattr(value, key)
                    else:
                        value = value.__dict__[key]
                elif kind == "cell":
                    value = value.cell_contents
                else:
                    value = value[key]
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            return _MISSING
        return value

    return get


class Reach:
    """The objects one call reached from its roots (see the module docstring)."""

    def __init__(self, fn, leaves, leaf_names):
        self.module_class, self.optimizer_class, _ = _stateful_classes()
        self.containers: list[_Container] = []
        self.known: set = set()  # ids of every object reached, so their stores keep them
        self.keep: list = []  # what `known` names, alive until the trace ends
        self.codes: set = set()
        self.names: frozenset = frozenset()
        self.nodes: list = []  # (value, label, root getter, steps, parent kind)
        self._walk(fn, leaves, leaf_names)

    # -- before the call: the snapshot --------------------------------------------------------

    def _walk(self, fn, leaves, leaf_names) -> None:
        queue = []
        code = getattr(fn, "__code__", None)
        owner = getattr(fn, "__self__", None)
        if owner is not None and not isinstance(owner, types.ModuleType):
            queue.append((owner, "self", (lambda o=owner: o), (), "root"))
        for i, x in enumerate(leaves):
            if not isinstance(x, _tensor.Tensor) and not simple_value(x):
                name = leaf_names[i] if i < len(leaf_names) else f"args[{i}]"
                queue.append((x, name, (lambda o=x: o), (), "root"))
        if code is not None and not _is_internal(code.co_filename):
            scope = getattr(fn, "__globals__", {})
            names = [n for n in code.co_names if n in scope]
            self._add(scope, "globals", "", {n: scope[n] for n in names})
            for name in names:
                queue.append((scope[name], name, (lambda s=scope: s), (("item", name),),
                              "global"))
            for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
                try:
                    contents = cell.cell_contents
                except ValueError:
                    continue
                self._add(cell, "cell", name, contents)
                queue.append((contents, name, (lambda c=cell: c), (("cell", None),), "global"))
        depth = 0
        while queue and depth <= _MAX_DEPTH:
            following = []
            for value, label, root, steps, parent in queue:
                following += self._visit(value, label, root, steps, parent)
            queue, depth = following, depth + 1

    def _add(self, obj, kind: str, label: str, items) -> None:
        self.containers.append(_Container(obj, kind, label, items))

    def _visit(self, value, label, root, steps, parent) -> list:
        self.nodes.append((value, label, root, steps, parent))
        if simple_value(value) or id(value) in self.known:
            return []
        self.known.add(id(value))
        self.keep.append(value)
        if (isinstance(value, (_tensor.Tensor, self.optimizer_class, *_NOT_LOOKED_INTO))
                or len(self.containers) >= _MAX_CONTAINERS):
            return []
        is_module = isinstance(value, self.module_class)
        edges = []
        if isinstance(value, dict):
            self._add(value, "dict", label, dict(value))
            if len(value) <= _MAX_ITEMS:
                edges = [("item", k, v) for k, v in value.items()
                         if isinstance(k, (str, int))]
        elif isinstance(value, list):
            self._add(value, "list", label, list(value))
            if len(value) <= _MAX_ITEMS:
                edges = [("item", i, v) for i, v in enumerate(value)]
        elif isinstance(value, tuple):
            if len(value) <= _MAX_ITEMS:
                edges = [("item", i, v) for i, v in enumerate(value)]
        elif hasattr(value, "__dict__") and (is_module or _users_class(type(value))):
            attrs = value.__dict__
            self._add(value, "object", label, dict(attrs))
            edges = [("attr", k, v) for k, v in attrs.items()
                     if not (is_module and k.startswith("_"))]
            if is_module:  # what the code reads as self.fc: submodules, parameters, buffers
                edges += [("attr", k, v) for group in _MODULE_GROUPS
                          for k, v in attrs[group].items()]
                edges += [("attr", group, attrs[group]) for group in _MODULE_GROUPS]
        kind = "module" if is_module else "other"
        return [(v, _label(label, k, key), root, (*steps, (k, key)), kind)
                for k, key, v in edges]

    # -- while tracing: which code ran -------------------------------------------------------

    def watching(self):
        """A context manager noting the code objects that run (a chained profile hook)."""
        return _Watch(self)

    # -- after the call ----------------------------------------------------------------------

    def finish(self, fn) -> None:
        code = getattr(fn, "__code__", None)
        if code is not None:
            self.codes.add(code)
        names = set()
        for c in self.codes:
            names |= _code_names(c)[0]
        self.names = frozenset(names)

    def guards(self) -> list[Guard]:
        """A Guard per value reached along names the code read, as it was before the call."""
        out = []
        first = set()  # modules and optimizers given their state guard once
        for value, label, root, steps, parent in self.nodes:
            if not all(self._readable(k, key) for k, key in steps):
                continue
            if not steps and not isinstance(value, (self.optimizer_class, self.module_class)):
                continue  # an argument (its identity is in the call's key) or `self`
            get = _getter(root, steps)
            if simple_value(value):
                # a global's is in free_values, a module's in its module_state
                if parent not in ("global", "module"):
                    out.append(Guard(label, get, "value", value))
                continue
            stateful = isinstance(value, (self.optimizer_class, self.module_class))
            if stateful and parent not in ("global", "module") and id(value) not in first:
                first.add(id(value))
                if isinstance(value, self.optimizer_class):
                    out.append(Guard(label, get, "optimizer", value, self._opt_states[id(value)]))
                else:
                    out.append(Guard(label, get, "module", value, self._mod_states[id(value)]))
            elif parent != "global" or not (stateful or isinstance(value, _tensor.Tensor)):
                out.append(Guard(label, get, "same", value))
        return out

    def tensors(self) -> list:
        """(label, tensor) per tensor reached along names the code read."""
        return [(label, value) for value, label, _, steps, _ in self.nodes
                if steps and isinstance(value, _tensor.Tensor)
                and all(self._readable(k, key) for k, key in steps)]

    def _readable(self, kind, key) -> bool:
        if kind == "cell" or isinstance(key, int):
            return True
        return key in self.names and key not in _MODULE_GROUPS

    def states_before(self) -> None:
        """The modules' and optimizers' states as the call found them (taken before it)."""
        self._opt_states = {id(v): (optimizer_unchanged(v), optimizer_state(v))
                            for v, *_ in self.nodes if isinstance(v, self.optimizer_class)}
        self._mod_states = {id(v): cached_module_state(v) for v, *_ in self.nodes
                            if isinstance(v, self.module_class)}

    def where(self, name) -> str:
        """' (at file:line)' of the first code that ran and stores or names `name`."""
        for c in sorted(self.codes, key=lambda c: (c.co_filename, c.co_firstlineno)):
            if _is_internal(c.co_filename):
                continue
            line = _code_names(c)[1].get(name)
            if line is not None:
                return f" (at {c.co_filename}:{line})"
        return ""

    def stores(self, guards) -> tuple[list, str | None]:
        """(the stores the call made, as Store records; the reason they cannot be replayed,
        or None)."""
        guarded = {g.label for g in guards}
        out = []
        for c in self.containers:
            if c.kind == "list":
                now, before = list(c.obj), c.items
                if now == before and all(a is b for a, b in zip(now, before)):
                    continue
                if len(now) >= len(before) and all(a is b for a, b in zip(now, before)):
                    out += [Store("append", c.obj, None, v, c.label) for v in now[len(before):]]
                else:
                    out.append(Store("replace", c.obj, None, now, c.label))
                continue
            if c.kind == "cell":
                try:
                    now = c.obj.cell_contents
                except ValueError:
                    return out, f"deletes the closure variable {c.label}{self.where(c.label)}"
                if not _same(now, c.items):
                    out.append(Store("cell", c.obj, None, now, c.label))
                continue
            now = c.obj.__dict__ if c.kind == "object" else c.obj
            before = c.items
            if c.kind == "globals":
                now = {k: now[k] for k in before if k in now}
            kind = "attr" if c.kind == "object" else "item"
            for key in [*before, *(k for k in now if k not in before)]:
                a, b = before.get(key, _MISSING), now.get(key, _MISSING)
                if _same(a, b):
                    continue
                label = _label(c.label, kind, key)
                if b is _MISSING:
                    out.append(Store("del", c.obj, key, None, label))
                    continue
                if label in guarded or (c.kind == "globals" and key in self.names):
                    return out, (f"stores into {label}, which the graph also reads "
                                 f"({_words(a)} -> {_words(b)}){self.where(key)}")
                out.append(Store("set", now if c.kind != "globals" else c.obj, key, b, label))
        for s in out:
            _leaves, _ = flatten(s.value)
            for leaf in _leaves:
                if not (isinstance(leaf, _tensor.Tensor) or simple_value(leaf)
                        or id(leaf) in self.known):
                    name = s.label.rsplit(".", 1)[-1]
                    return out, (f"stores a new {type(leaf).__name__} object into {s.label}, "
                                 f"which a graph cannot rebuild{self.where(name)}")
        return out, None


def _same(a, b) -> bool:
    return a is b or (simple_value(a) and type(a) is type(b) and a == b)


@functools.lru_cache(maxsize=1024)
def _users_class(cls) -> bool:
    """Whether objects of cls are the user's own data, looked into for state and stores: not
    ember's (modules aside), the standard library's or an installed package's (a lock, a
    logger, a data loader keep their own bookkeeping, which is not the program's state)."""
    top = cls.__module__.split(".", 1)[0]
    if top == "ember" or top in sys.stdlib_module_names or top == "builtins":
        return False
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None) or ""
    return "site-packages" not in path and "dist-packages" not in path


@dataclass(slots=True)
class Store:
    """One store a traced call made: replayed on every cached call with that call's values."""

    op: str  # "set", "del", "append", "replace", "cell"
    target: object  # the dict (an object's __dict__ for attributes), list or cell
    key: object
    value: object
    label: str

    def apply(self, value) -> None:
        op, target = self.op, self.target
        if op == "set":
            target[self.key] = value
        elif op == "append":
            target.append(value)
        elif op == "del":
            target.pop(self.key, None)
        elif op == "replace":
            target[:] = value
        else:
            target.cell_contents = value


class _Watch:
    def __init__(self, reach: Reach):
        self.reach = reach

    def __enter__(self):
        codes = self.reach.codes
        previous = self.previous = sys.getprofile()
        # a profile function in Python is called on; a profiler in C (cProfile's, whose
        # object sys.getprofile returns and which cannot be called) pauses for the trace
        chained = previous if callable(previous) else None

        def profile(frame, event, arg):
            if event == "call":
                codes.add(frame.f_code)
            if chained is not None:
                chained(frame, event, arg)

        sys.setprofile(profile)
        return self

    def __exit__(self, *exc):
        previous = self.previous
        if previous is None or callable(previous):
            sys.setprofile(previous)
        else:
            sys.setprofile(None)
            previous.enable()  # the C profiler on again, as `python -m cProfile` left it
        return False
