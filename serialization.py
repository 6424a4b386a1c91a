"""Checkpoints: ember.save and ember.load of nested containers of tensors, as one safetensors file.

The file's tensors are the tensor leaves; its `__metadata__` holds the format name, a version
and, as JSON, the nested structure: every container, every plain value and, per tensor leaf,
the tensor's key, dtype, shape, device and flags. Loading never unpickles and never evals:
the file is read as data, and every field is checked, so a broken or hostile file fails with a
CheckpointError saying what is wrong.

Whole objects (torch.save(model, f), an argparse.Namespace in a checkpoint) are saved as their
class's name and their attributes; a function or class they hold (a layer's activation) as its
name; a tensor or object met twice as a reference to the first, so tied weights stay tied.
Such a file is version 2. Loading rebuilds an object only of a class the caller allowed, as
PyTorch's weights_only loader does (ember.serialization.add_safe_globals, or the
safe_globals(...) block): it looks the name up among the allowed classes and functions, never
imports what a file names, creates the object without calling its __init__ and sets its
attributes. weights_only=False also accepts classes and functions of modules the program has
already imported (still importing nothing).
"""

from __future__ import annotations

import inspect
import io
import json
import os
import sys
import types
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from ._tensor import Size, Tensor
from .errors import EmberError, type_error
from .ir.dtypes import ALL as _ALL_DTYPES
from .ir.dtypes import dtype as DType
from .ir.dtypes import from_name
from .runtime import atomic_file, safetensors_writer
from .runtime.device import CPU, as_device, device, is_cuda_available, to_device
from .runtime.safetensors_file import (
    DTYPE_CODES,
    MAX_HEADER_BYTES,
    Problem,
    SafetensorsFile,
)

FORMAT = "ember.checkpoint"
VERSION = 1  # a file of data alone; 2: with objects, names and references (see above)
OBJECTS_VERSION = 2
# MAX_HEADER_BYTES (100 MB, safetensors' own limit): ember refuses larger headers before
# reading them, and refuses to write them
MAX_DEPTH = 64


class CheckpointError(EmberError, RuntimeError):
    """A file that ember.load cannot accept: not a checkpoint, truncated, or tampered with."""


_DTYPE_BY_NAME = {d.name: d for d in _ALL_DTYPES}
_DTYPE_BY_NP = {d.np: d for d in _ALL_DTYPES}

# The fields each kind of node carries (besides "kind"); a node with others is refused.
_FIELDS = {
    "none": set(),
    "bool": {"value"},
    "int": {"value"},
    "float": {"value"},
    "str": {"value"},
    "bytes": {"value"},
    "dtype": {"value"},
    "device": {"value"},
    "size": {"value"},
    "list": {"items"},
    "tuple": {"items"},
    "dict": {"items"},
    "ordered_dict": {"items"},
    "tensor": {"key", "dtype", "shape", "device", "requires_grad", "parameter"},
    "ndarray": {"key", "dtype", "shape"},
    # version 2 only
    "set": {"items"},
    "frozenset": {"items"},
    "object": {"class", "state"},
    "global": {"name"},
    "ref": {"id"},
}
_OBJECT_KINDS = {"set", "frozenset", "object", "global", "ref"}
_KEY_KINDS = {"none", "bool", "int", "float", "str", "bytes", "dtype", "device", "size", "tuple"}


# -- saving ----------------------------------------------------------------------------------


def _parameter_type():
    # Only a loaded ember.nn can have made Parameters, so saving never imports it.
    module = sys.modules.get(f"{__package__}.nn.parameter")
    return getattr(module, "Parameter", None)


class _Encoder:
    """Walks the object, giving each tensor leaf a unique name and each value a JSON node."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self.parameter = _parameter_type()
        self._on_path: set[int] = set()
        # tensors and objects met so far: id -> (its index, the value, kept alive so no other
        # value takes its id while this save runs)
        self._seen: dict[int, tuple[int, Any]] = {}
        self.version = VERSION

    def _remembered(self, obj) -> dict | None:
        """A reference to obj when it was met before; else obj is remembered (None)."""
        seen = self._seen.get(id(obj))
        if seen is not None:
            self.version = OBJECTS_VERSION
            return {"kind": "ref", "id": seen[0]}
        self._seen[id(obj)] = (len(self._seen), obj)
        return None

    def _name(self, path: list) -> str:
        base = ".".join(map(str, path)) or "tensor"
        name, n = base, 1
        while name in self.arrays or name == "__metadata__":
            name, n = f"{base}#{n}", n + 1
        return name

    def _array_leaf(self, array: np.ndarray, path: list, where: str) -> dict:
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        if array.dtype not in _DTYPE_BY_NP:
            raise type_error(
                f"ember.save: {where} has numpy dtype {array.dtype}; checkpoints "
                f"hold {', '.join(_DTYPE_BY_NAME)}"
            )
        if not array.flags.c_contiguous:
            array = array.copy(order="C")
        name = self._name(path)
        self.arrays[name] = array
        return {"key": name, "dtype": _DTYPE_BY_NP[array.dtype].name, "shape": list(array.shape)}

    def encode(self, obj, path: list, depth: int, as_key: bool = False) -> dict:
        """The JSON node of obj, found at path (the keys and indices leading to it)."""
        where = "obj" + "".join(f"[{p!r}]" for p in path)
        if depth > MAX_DEPTH:
            raise type_error(f"ember.save: {where} is nested deeper than {MAX_DEPTH} levels")
        kind = type(obj)
        if obj is None:
            return {"kind": "none"}
        if kind in (bool, int, str):
            return {"kind": kind.__name__, "value": obj}
        if kind is float:
            return {"kind": "float", "value": obj.hex()}
        if kind is bytes:
            return {"kind": "bytes", "value": obj.hex()}
        if kind is DType:
            return {"kind": "dtype", "value": obj.name}
        if kind is device:
            return {"kind": "device", "value": str(obj)}
        if kind is Size:
            return {"kind": "size", "value": [int(d) for d in obj]}
        if kind is tuple or (not as_key and kind in (list, dict, OrderedDict)):
            if id(obj) in self._on_path:
                raise type_error(f"ember.save: {where} contains itself (a reference cycle)")
            self._on_path.add(id(obj))
            try:
                if kind in (list, tuple):
                    items = [
                        self.encode(v, path + [i], depth + 1, as_key) for i, v in enumerate(obj)
                    ]
                else:
                    items = [
                        [
                            self.encode(k, path + [k], depth + 1, as_key=True),
                            self.encode(v, path + [k], depth + 1),
                        ]
                        for k, v in obj.items()
                    ]
            finally:
                self._on_path.discard(id(obj))
            name = "ordered_dict" if kind is OrderedDict else kind.__name__
            return {"kind": name, "items": items}
        if kind in (set, frozenset) and not as_key:
            items = [self.encode(v, path + [i], depth + 1, as_key=True)
                     for i, v in enumerate(obj)]
            items.sort(key=lambda item: json.dumps(item, sort_keys=True))  # the same bytes
            self.version = OBJECTS_VERSION
            return {"kind": kind.__name__, "items": items}
        if not as_key and isinstance(obj, Tensor):
            ref = self._remembered(obj)
            if ref is not None:
                return ref
            array = to_device(obj.detach()._data, CPU)
            leaf = self._array_leaf(array, path, where)
            is_parameter = self.parameter is not None and isinstance(obj, self.parameter)
            return {
                "kind": "tensor",
                **leaf,
                "device": str(obj.device),
                "requires_grad": obj.requires_grad,
                "parameter": is_parameter,
            }
        if not as_key and kind is np.ndarray:
            return {"kind": "ndarray", **self._array_leaf(obj, path, where)}
        if not as_key and isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
            self.version = OBJECTS_VERSION
            return {"kind": "global", "name": _named(obj, where)}
        if not as_key and _plain_object(obj):
            ref = self._remembered(obj)
            if ref is not None:
                return ref
            self.version = OBJECTS_VERSION
            name = _named(type(obj), where)
            state = obj.__getstate__()
            if state is None:  # object.__getstate__ of an instance with no attributes
                state = {}
            if type(state) is not dict or not all(type(k) is str for k in state):
                raise type_error(f"ember.save: {where} ({name}) gives a state that is not a "
                                 "dict of attribute names (its __getstate__)")
            # (a reference back to obj from its attributes is a "ref": it was remembered)
            try:
                attributes = [[{"kind": "str", "value": k},
                               self.encode(v, path + [k], depth + 1)] for k, v in state.items()]
            except EmberError as exc:
                if not callable(getattr(obj, "state_dict", None)):
                    raise
                # an optimizer (its state is keyed by parameters): its state_dict saves
                noun = "model" if hasattr(obj, "parameters") else "optimizer"
                raise type_error(
                    f"{exc} {where} ({name}) cannot be saved whole: save its state with "
                    f"torch.save({noun}.state_dict(), path), and restore it into a {noun} "
                    f"built in code with {noun}.load_state_dict(torch.load(path))"
                ) from None
            return {"kind": "object", "class": name,
                    "state": {"kind": "dict", "items": attributes}}
        what = "a dict key" if as_key else "a checkpoint value"
        hint = " (use .item() for numpy scalars)" if isinstance(obj, np.generic) else ""
        raise type_error(
            f"ember.save: {where} is a {kind.__module__}.{kind.__qualname__}, which cannot be "
            f"{what}{hint}. Checkpoints hold tensors, numpy arrays, None, bool, int, float, "
            f"str, bytes, dtypes, devices, Size, lists, tuples, sets, dicts and OrderedDicts "
            f"of them (dict keys: plain values and tuples), functions and classes found by "
            f"their names, and objects of plain classes (a module) made of these."
        )


def _plain_object(obj) -> bool:
    """Whether obj is saved as its class's name and attributes: an instance of a Python
    class with a __dict__, pickled by default (no __reduce__ or __slots__ of its own)."""
    cls = type(obj)
    return (isinstance(getattr(obj, "__dict__", None), dict)
            and not isinstance(obj, (type, types.ModuleType, np.generic))
            and cls.__reduce_ex__ is object.__reduce_ex__
            and cls.__reduce__ is object.__reduce__
            and not any("__slots__" in vars(k) for k in cls.__mro__[:-1]))


def _named(value, where: str) -> str:
    """'module:qualname' of a class or function, which must be found again by that name."""
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", "")
    if _by_name(module, qualname) is not value:
        raise type_error(
            f"ember.save: {where} is {value!r}, which cannot be found by its name "
            f"{module}.{qualname} (a lambda, a nested function or class): a checkpoint names "
            f"the functions and classes it holds"
        )
    return f"{module}:{qualname}"


def _by_name(module: str | None, qualname: str):
    """The value module.qualname names in a module already imported, or None (nothing is
    imported, and only plain attributes are read)."""
    found = sys.modules.get(module) if isinstance(module, str) else None
    if found is None or not qualname or "<" in qualname:
        return None
    for part in qualname.split("."):
        found = inspect.getattr_static(found, part, None)
        if isinstance(found, (staticmethod, classmethod)):
            found = found.__func__
        if found is None:
            return None
    return found


def save(obj: Any, f: str | os.PathLike | BinaryIO) -> None:
    """Save obj (tensors, numbers, strings and nested lists/tuples/dicts of them) to the path
    or binary file f, as one safetensors file. Nothing is pickled. The same obj gives the same
    bytes. A path is replaced whole or not at all: a save that fails or is killed leaves the
    old file and no partial one (runtime/atomic_file.py)."""
    encoder = _Encoder()
    root = encoder.encode(obj, [], 0)
    try:
        structure = json.dumps({"root": root}, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:  # an int too long for JSON
        raise type_error(f"ember.save: {exc}") from None
    metadata = {"format": FORMAT, "version": str(encoder.version), "structure": structure}
    prepared = safetensors_writer.prepare(encoder.arrays, metadata)
    if prepared.header_size > MAX_HEADER_BYTES:
        raise type_error(
            f"ember.save: the checkpoint's header would be {prepared.header_size} bytes, over "
            f"the {MAX_HEADER_BYTES} that ember.load accepts"
        )
    if isinstance(f, (str, os.PathLike)):
        with atomic_file.replacing(f) as out:
            safetensors_writer.write(out, prepared)
    elif callable(getattr(f, "write", None)):
        if isinstance(f, io.TextIOBase):
            raise type_error("ember.save: the file is open in text mode; open it with 'wb'")
        safetensors_writer.write(f, prepared)
    else:
        raise type_error(f"ember.save: expected a path or a binary file, got {type(f).__name__}")


# -- loading ---------------------------------------------------------------------------------


def _what_it_looks_like(head: bytes) -> str:
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return " (it looks like a pickle; ember never unpickles)"
    if head[:4] == b"PK\x03\x04":
        return " (it looks like a zip archive, as torch.save writes; ember never unpickles)"
    return ""


# the safetensors reader's problems (runtime/safetensors_file.Problem) as ember.load words them;
# {looks} says what a file that is not safetensors looks like (a pickle, a zip archive)
_WORDING = {
    "short": "not a safetensors file: only {size} bytes, fewer than the 8 of the header "
    "length{looks}",
    "length_over_limit": "not a safetensors file: its header length field says {n} bytes, "
    "over the {limit} limit{looks}",
    "length_beyond_file": "truncated or not a safetensors file: the header needs {n} bytes "
    "but only {after} follow{looks}",
    "length_too_small": "not a safetensors file: its header length field says {n} bytes, "
    "too few for a JSON object{looks}",
    "json": "not a safetensors file: its header is not valid JSON ({reason}){looks}",
    "not_object": "not a safetensors file: its header is not a JSON object",
    "offsets": "tensor {name!r} has no valid data_offsets in the header",
    "beyond_data": "truncated: tensor {name!r} needs bytes up to {end} of the data, but the "
    "file holds {data_size}",
}


class _Reader:
    """The checkpoint's safetensors file, read and checked by the runtime's reader
    (runtime/safetensors_file.py); `fail` makes the errors, naming the file."""

    def __init__(self, f):
        if isinstance(f, (str, os.PathLike)):
            self.name = os.fspath(f)
            source = self.name
        elif callable(getattr(f, "read", None)):
            self.name = getattr(f, "name", None) or type(f).__name__
            data = None if isinstance(f, io.TextIOBase) else f.read()
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise type_error("ember.load: the file is open in text mode; open it with 'rb'")
            source = bytes(data)
        else:
            raise type_error(
                f"ember.load: expected a path or a binary file, got {type(f).__name__}"
            )
        self.file = SafetensorsFile(source, fail=self._refused, max_header_bytes=MAX_HEADER_BYTES)

    def fail(self, problem: str) -> CheckpointError:
        return CheckpointError(f"ember.load({self.name!r}): {problem}")

    def _refused(self, problem: Problem) -> CheckpointError:
        """The reader's problem in a checkpoint's words (the reader's, naming the field, for
        the problems _WORDING does not list)."""
        template = _WORDING.get(problem.code)
        if template is None:
            return self.fail(problem.message)
        looks = _what_it_looks_like(problem.details.get("head", b""))
        return self.fail(template.format(**problem.details, looks=looks, message=problem.message))

    def metadata(self) -> dict:
        metadata = self.file.metadata
        if metadata.get("format") != FORMAT:
            raise self.fail(
                f"a safetensors file but not an ember checkpoint: its metadata "
                f"format is {metadata.get('format')!r}, expected {FORMAT!r}"
            )
        version = metadata.get("version")
        if version not in (str(VERSION), str(OBJECTS_VERSION)):
            raise self.fail(
                f"checkpoint version {version!r} is not one this ember reads "
                f"({VERSION!r} or {OBJECTS_VERSION!r})"
            )
        self.version = int(version)
        structure = metadata.get("structure")
        if not isinstance(structure, str):
            raise self.fail("the metadata has no 'structure' string")
        try:
            parsed = json.loads(structure)
        except (ValueError, RecursionError) as exc:
            raise self.fail(
                f"the structure metadata is not valid JSON ({type(exc).__name__}: {exc})"
            ) from None
        if not isinstance(parsed, dict) or set(parsed) != {"root"}:
            raise self.fail("the structure metadata must be an object with one field, 'root'")
        return parsed

    def entries(self) -> dict:
        """The header's tensor entries, checked to lie inside the file and fill its data."""
        return self.file.entries()

    def arrays(self) -> dict[str, np.ndarray]:
        """The tensors, as read-only arrays over the file's data."""
        return self.file.tensors()


class _Decoder:
    """Rebuilds the object from the structure, checking every node against the file."""

    def __init__(self, reader: _Reader, entries: dict, map_location, weights_only=None):
        self.reader = reader
        self.entries = entries
        self.map_location = map_location
        self.used: set[str] = set()
        self.leaves: list[tuple[dict, Callable]] = []
        self.remembered: list = []  # the tensors and objects a "ref" node may name, in order
        self.allowed = _allowed()
        self.imported_too = weights_only is False

    def fail(self, where: str, problem: str) -> CheckpointError:
        return self.reader.fail(f"{where}: {problem}")

    def decode(self, node, where: str, depth: int, as_key: bool = False):
        if depth > MAX_DEPTH:
            raise self.fail(where, f"nested deeper than {MAX_DEPTH} levels")
        if not isinstance(node, dict) or not isinstance(node.get("kind"), str):
            raise self.fail(where, "a structure node must be an object with a 'kind'")
        kind = node["kind"]
        if kind not in _FIELDS:
            raise self.fail(where, f"unknown kind {kind!r}")
        if as_key and kind not in _KEY_KINDS:
            raise self.fail(where, f"a {kind} cannot be a dict key")
        if kind in _OBJECT_KINDS and self.reader.version < OBJECTS_VERSION:
            raise self.fail(where, f"a {kind} node in a version {self.reader.version} file")
        fields = set(node) - {"kind"}
        if fields != _FIELDS[kind]:
            raise self.fail(
                where,
                f"a {kind} node has fields {sorted(fields)}, expected {sorted(_FIELDS[kind])}",
            )
        value = node.get("value")
        try:
            return getattr(self, f"_{kind}")(node, value, where, depth, as_key)
        except (TypeError, ValueError, OverflowError, AttributeError, EmberError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise self.fail(where, f"invalid {kind} value {value!r} ({exc})") from None

    @staticmethod
    def _expect(value, types, what: str):
        if type(value) not in types:
            raise TypeError(f"expected {what}")
        return value

    def _none(self, node, value, where, depth, as_key):
        return None

    def _bool(self, node, value, where, depth, as_key):
        return self._expect(value, (bool,), "true or false")

    def _int(self, node, value, where, depth, as_key):
        return self._expect(value, (int,), "a JSON integer")

    def _float(self, node, value, where, depth, as_key):
        return float.fromhex(self._expect(value, (str,), "a float in hex form"))

    def _str(self, node, value, where, depth, as_key):
        return self._expect(value, (str,), "a string")

    def _bytes(self, node, value, where, depth, as_key):
        return bytes.fromhex(self._expect(value, (str,), "a hex string"))

    def _dtype(self, node, value, where, depth, as_key):
        if value not in _DTYPE_BY_NAME:
            raise ValueError(f"expected one of {', '.join(_DTYPE_BY_NAME)}")
        return from_name(value)

    def _device(self, node, value, where, depth, as_key):
        return device(self._expect(value, (str,), "a device string"))

    def _size(self, node, value, where, depth, as_key):
        return Size(self._shape(value))

    @staticmethod
    def _shape(value) -> list[int]:
        if type(value) is not list or not all(type(d) is int and d >= 0 for d in value):
            raise TypeError("expected a list of non-negative ints")
        return value

    def _items(self, node, where, depth, as_key):
        items = node["items"]
        if type(items) is not list:
            raise self.fail(where, "'items' must be a list")
        return [
            self.decode(item, f"{where}[{i}]", depth + 1, as_key) for i, item in enumerate(items)
        ]

    def _list(self, node, value, where, depth, as_key):
        return self._items(node, where, depth, as_key)

    def _tuple(self, node, value, where, depth, as_key):
        return tuple(self._items(node, where, depth, as_key))

    def _dict(self, node, value, where, depth, as_key, factory=dict):
        items = node["items"]
        if type(items) is not list:
            raise self.fail(where, "'items' must be a list of [key, value] pairs")
        out = factory()
        for pair in items:
            if type(pair) is not list or len(pair) != 2:
                raise self.fail(where, "'items' must be a list of [key, value] pairs")
            key = self.decode(pair[0], f"{where}.<key>", depth + 1, as_key=True)
            if key in out:
                raise self.fail(where, f"the key {key!r} appears twice")
            out[key] = self.decode(pair[1], f"{where}[{key!r}]", depth + 1)
        return out

    def _ordered_dict(self, node, value, where, depth, as_key):
        return self._dict(node, value, where, depth, as_key, factory=OrderedDict)

    def _leaf(self, node, where) -> tuple[str, DType, list[int]]:
        key, dtype_name = node["key"], node["dtype"]
        if type(key) is not str or key not in self.entries:
            raise self.fail(where, f"names tensor {key!r}, which the file does not hold")
        if key in self.used:
            raise self.fail(where, f"tensor {key!r} is named by two leaves")
        self.used.add(key)
        if dtype_name not in _DTYPE_BY_NAME:
            raise self.fail(where, f"unknown dtype {dtype_name!r}")
        shape = self._shape(node["shape"])
        entry = self.entries[key]
        if entry.dtype != DTYPE_CODES[dtype_name]:
            raise self.fail(
                where,
                f"the structure says dtype {dtype_name} but the file stores "
                f"tensor {key!r} as {entry.dtype!r}",
            )
        if list(entry.shape) != shape:
            raise self.fail(
                where,
                f"the structure says shape {shape} but the file stores "
                f"tensor {key!r} with shape {list(entry.shape)!r}",
            )
        return key, _DTYPE_BY_NAME[dtype_name], shape

    def _ndarray(self, node, value, where, depth, as_key):
        key, dtype, shape = self._leaf(node, where)
        return _Pending(key, dtype, shape, where, lambda array: array)

    def _set(self, node, value, where, depth, as_key, factory=set):
        items = self._items(node, where, depth, as_key=True)
        out = factory(items)
        if len(out) != len(items):
            raise self.fail(where, "a set holds one value twice")
        return out

    def _frozenset(self, node, value, where, depth, as_key):
        return self._set(node, value, where, depth, as_key, factory=frozenset)

    def _ref(self, node, value, where, depth, as_key):
        n = node["id"]
        if type(n) is not int or not 0 <= n < len(self.remembered):
            raise self.fail(where, f"a reference to {n!r}, which no earlier tensor or object is")
        return self.remembered[n]

    def _global(self, node, value, where, depth, as_key):
        found = self._find(node["name"], where)
        if not isinstance(found, (type, types.FunctionType, types.BuiltinFunctionType)):
            raise self.fail(where, f"{node['name']!r} names a {type(found).__name__}, not a "
                                   "function or class")
        return found

    def _object(self, node, value, where, depth, as_key):
        cls = self._find(node["class"], where)
        if not isinstance(cls, type) or cls.__new__ is not object.__new__:
            raise self.fail(where, f"{node['class']!r} is not a class ember can rebuild "
                                   "(a Python class without a __new__ of its own)")
        pending = _PendingObject(cls, where)
        self.remembered.append(pending)
        state = node["state"]
        if not isinstance(state, dict) or state.get("kind") != "dict":
            raise self.fail(where, "an object's state must be a dict node")
        pending.state = self.decode(state, f"{where}.<state>", depth + 1)
        if not all(type(k) is str for k in pending.state):
            raise self.fail(where, "an object's state must have attribute names as keys")
        return pending

    def _find(self, name, where: str):
        """The class or function a file names: one the caller allowed (add_safe_globals,
        safe_globals), or with weights_only=False one of a module already imported."""
        if type(name) is not str or name.count(":") != 1:
            raise self.fail(where, f"{name!r} is not a 'module:qualname' name")
        found = self.allowed.get(name)
        if found is None and self.imported_too:
            found = _by_name(*name.split(":"))
        if found is None:
            dotted = name.replace(":", ".")
            short = name.split(":")[1].split(".")[-1]
            raise self.fail(
                where,
                f"the checkpoint holds {dotted}, which is not an allowed class or function. "
                f"Allow what you trust: ember.serialization.add_safe_globals([{short}]), or load "
                f"inside `with ember.serialization.safe_globals([{short}]):` (weights_only=False "
                f"allows every class and function of the modules already imported; ember never "
                f"imports what a file names)",
            )
        return found

    def _tensor(self, node, value, where, depth, as_key):
        key, dtype, shape = self._leaf(node, where)
        requires_grad = self._expect(node["requires_grad"], (bool,), "a bool requires_grad")
        parameter = self._expect(node["parameter"], (bool,), "a bool parameter flag")
        if requires_grad and not dtype.is_floating_point:
            raise self.fail(where, f"a {dtype.name} tensor cannot require grad")
        saved_on = str(device(self._expect(node["device"], (str,), "a device string")))

        def build(array: np.ndarray):
            t = self._place(Tensor._make(array, dtype, CPU), saved_on, where)
            if parameter:
                from .nn.parameter import Parameter

                return Parameter(t, requires_grad)
            return t.requires_grad_(True) if requires_grad else t

        pending = _Pending(key, dtype, shape, where, build)
        self.remembered.append(pending)
        return pending

    def _place(self, t: Tensor, saved_on: str, where: str) -> Tensor:
        """The tensor on the device map_location chooses (by default, the one it was saved
        from)."""
        target = self.map_location
        if target is None:
            target = saved_on
        elif callable(target):
            moved = target(t, saved_on)
            if moved is not None:
                if not isinstance(moved, Tensor):
                    raise type_error(
                        f"map_location returned a {type(moved).__name__}, expected a Tensor or None"
                    )
                return moved
            target = saved_on
        elif isinstance(target, dict):
            target = target.get(saved_on, saved_on)
        dev = as_device(target)
        if dev.type == "cuda" and not is_cuda_available():
            chosen = f"saved on {saved_on}" if self.map_location is None else f"mapped to {dev}"
            raise self.fail(
                where,
                f"the tensor was {chosen}, but no CUDA device is available; pass "
                f"map_location='cpu' to load it on the CPU",
            )
        return t.to(dev)

    def finish(self, obj):
        """Replace the pending leaves with tensors read from the file."""
        unused = sorted(set(self.entries) - self.used)
        if unused:
            raise self.reader.fail(
                f"the file holds tensors the structure does not name: {unused[:5]}"
            )
        arrays = self.reader.arrays() if self.entries else {}
        return _fill(obj, arrays, self.reader, {})


class _Pending:
    """A leaf decoded from the structure whose data is read after the structure is checked."""

    __slots__ = ("build", "dtype", "key", "shape", "where")

    def __init__(self, key, dtype, shape, where, build):
        self.key, self.dtype, self.shape, self.where, self.build = key, dtype, shape, where, build


class _PendingObject:
    """An object decoded from the structure, rebuilt once its tensors are read."""

    __slots__ = ("cls", "state", "where")

    def __init__(self, cls, where):
        self.cls, self.where, self.state = cls, where, None


def _fill(obj, arrays: dict, reader: _Reader, built: dict):
    """obj with its pending leaves and objects built; `built` maps each pending one to what
    it became, so a value referenced twice is one value."""
    # Only containers this module built (never user types) are walked here.
    kind = type(obj)
    if kind is _Pending or kind is _PendingObject:
        done = built.get(id(obj))
        if done is not None:
            return done[1]
    if kind is _Pending:
        array = arrays.get(obj.key)
        if array is None or array.dtype != obj.dtype.np or list(array.shape) != obj.shape:
            raise reader.fail(f"{obj.where}: tensor {obj.key!r} as read does not match the header")
        # copied: the reader's buffers are read-only views of the file
        value = obj.build(np.array(array, copy=True, order="C"))
        built[id(obj)] = (obj, value)
        return value
    if kind is _PendingObject:
        # made before its attributes, so an attribute may refer back to it; __init__ is not
        # called: the attributes are the object's state, as unpickling sets them
        value = object.__new__(obj.cls)
        built[id(obj)] = (obj, value)
        state = _fill(obj.state, arrays, reader, built)
        setstate = getattr(obj.cls, "__setstate__", None)
        if setstate is not None:
            setstate(value, state)
        else:
            value.__dict__.update(state)
        return value
    if kind is list:
        return [_fill(v, arrays, reader, built) for v in obj]
    if kind is tuple:
        return tuple(_fill(v, arrays, reader, built) for v in obj)
    if kind in (dict, OrderedDict):
        out = kind()
        for k, v in obj.items():
            out[k] = _fill(v, arrays, reader, built)
        return out
    return obj


def load(
    f: str | os.PathLike | BinaryIO,
    map_location=None,
    pickle_module=None,
    *,
    weights_only: bool | None = None,
    mmap: bool | None = None,
    **pickle_load_args,
) -> Any:
    """Load what ember.save wrote to the path or binary file f.

    map_location places the tensors: None (where they were saved), a device or its name, a
    dict from saved device names to devices, or a callable(tensor_on_cpu, saved_device_name)
    returning a Tensor (or None for the default). Nothing in the file is ever executed. A
    saved object is rebuilt only when its class is allowed (add_safe_globals, safe_globals),
    or with weights_only=False when its class's module is already imported; nothing is ever
    imported.
    pickle_module and pickle_load_args (encoding=...) are accepted and unused, as there is
    nothing to unpickle; mmap is accepted: the file is read as a memory map where it can be,
    and the tensors are always copies.

    Raises CheckpointError for a file that is not an ember checkpoint, is truncated, or whose
    metadata is inconsistent.
    """
    reader = _Reader(f)
    structure = reader.metadata()
    decoder = _Decoder(reader, reader.entries(), map_location, weights_only)
    obj = decoder.decode(structure["root"], "root", 0)
    return decoder.finish(obj)


# -- torch.serialization's allow-list ----------------------------------------------------------
# The classes and functions ember.load may rebuild objects of, or hand back, when a checkpoint
# names them (a whole saved model): PyTorch's weights_only loader takes the same list.
_SAFE_GLOBALS: list = []


def _allowed() -> dict:
    """'module:qualname' -> each allowed class or function."""
    allowed = {}
    for entry in _SAFE_GLOBALS:
        value = entry[0] if isinstance(entry, tuple) else entry
        module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
        if isinstance(module, str) and isinstance(qualname, str):
            allowed[f"{module}:{qualname}"] = value
    return allowed


def add_safe_globals(safe_globals: list) -> None:
    """Allow ember.load to rebuild objects of these classes, and hand back these functions,
    where a checkpoint names them (classes, functions, or (value, name) pairs as
    torch.serialization takes)."""
    if not isinstance(safe_globals, (list, tuple)):
        raise type_error(f"add_safe_globals expects a list, got {type(safe_globals).__name__}")
    _SAFE_GLOBALS.extend(safe_globals)


def get_safe_globals() -> list:
    return list(_SAFE_GLOBALS)


def clear_safe_globals() -> None:
    _SAFE_GLOBALS.clear()


class safe_globals:
    """with ember.serialization.safe_globals([...]): the list added for the block only."""

    def __init__(self, safe_globals: list):
        self.safe_globals = list(safe_globals)

    def __enter__(self):
        self._before = list(_SAFE_GLOBALS)
        add_safe_globals(self.safe_globals)
        return self

    def __exit__(self, *exc):
        _SAFE_GLOBALS[:] = self._before
        return False
