"""Loading a graph file into a callable program, and the signature that program checks.

`load(path)` reads the container (runtime/graph_file.py), refuses up front, in one message, a
newer schema major version and every op this runtime does not know, rebuilds the graph from
its JSON through ir.serialize (which checks every node against its op's declaration and
re-derives every type), checks the signature and the stored tensors against the graph, and
the sizes its values declare against the memory budget (runtime/budget.py). The
LoadedProgram it returns is called with arrays in the signature's order and nesting, checks
them (symbolic sizes must agree across inputs) and returns numpy arrays in the output
nesting. It keeps no per-call state but its programs per set of symbol sizes (a bounded
cache, least recently used out), so many threads may call one program at once.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
import re
import threading
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from ..errors import EmberError
from ..ir.dtypes import ALL as ALL_DTYPES
from ..ir.schema import SCHEMAS
from ..ir.serialize import from_data
from ..ir.specialize import resolve
from ..ir.symbolic import SymInt
from . import random
from .budget import check_budget
from .compiled import native_enabled
from .graph_entry import build_entry_program
from .graph_file import FORMAT_NAME, SCHEMA_VERSION, FormatError, parse_json, read_container
from .kernels import KERNELS
from .program import Program

_DTYPE_NAMES = {d.name for d in ALL_DTYPES}
_VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\Z")
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
REQUIRED_METADATA = ("format", "schema_version", "ember_version", "graph", "ops", "signature")
# programs a LoadedProgram keeps, one per set of symbol sizes it was called with; past this
# many, the least recently called one goes (the disk cache keeps its kernels cheap to rebuild)
SPECIALIZATIONS = 64


# -- nesting ---------------------------------------------------------------------------------


def check_structure(spec, where: str, depth: int = 0) -> int:
    """The number of leaves of a structure: "*" (a leaf), {"tuple": [...]}, {"list": [...]}
    or {"dict": [[key, structure], ...]}."""
    if depth > 32:
        raise FormatError(f"{where}: nested deeper than 32 levels")
    if spec == "*":
        return 1
    if spec is None:  # a None the model returns there
        return 0
    if not isinstance(spec, dict) or len(spec) != 1:
        raise FormatError(f'{where}: expected "*" or an object with one of tuple, list, dict')
    ((kind, children),) = spec.items()
    if kind in ("tuple", "list") and isinstance(children, list):
        return sum(
            check_structure(c, f"{where}.{kind}[{i}]", depth + 1) for i, c in enumerate(children)
        )
    if kind == "dict" and isinstance(children, list):
        total, keys = 0, set()
        for i, item in enumerate(children):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise FormatError(f"{where}.dict[{i}]: expected [key, structure]")
            if item[0] in keys:
                raise FormatError(f"{where}.dict[{i}]: the key {item[0]!r} appears twice")
            keys.add(item[0])
            total += check_structure(item[1], f"{where}.dict[{i}]", depth + 1)
        return total
    raise FormatError(f'{where}: expected "*" or an object with one of tuple, list, dict')


def flatten_as(value, spec, where: str, leaves: list) -> None:
    """Append value's leaves to `leaves`, checking that it is nested as `spec` says."""
    if spec == "*":
        leaves.append((where, value))
        return
    if spec is None:
        if value is not None:
            raise EmberError(f"{where}: expected None, got {type(value).__name__}")
        return
    ((kind, children),) = spec.items()
    if kind == "dict":
        if not isinstance(value, dict) or set(value) != {k for k, _ in children}:
            keys = [k for k, _ in children]
            raise EmberError(
                f"{where}: expected a dict with keys {keys}, got "
                f"{sorted(value) if isinstance(value, dict) else type(value).__name__}"
            )
        for key, child in children:
            flatten_as(value[key], child, f"{where}[{key!r}]", leaves)
        return
    if not isinstance(value, (tuple, list)) or len(value) != len(children):
        got = f"{len(value)} items" if isinstance(value, (tuple, list)) else type(value).__name__
        raise EmberError(f"{where}: expected a {kind} of {len(children)} items, got {got}")
    for i, (item, child) in enumerate(zip(value, children)):
        flatten_as(item, child, f"{where}[{i}]", leaves)


def unflatten_as(leaves, spec):
    """The nested value of `spec` with the leaves (an iterator) put back in order."""
    if spec == "*":
        return next(leaves)
    if spec is None:
        return None
    ((kind, children),) = spec.items()
    if kind == "dict":
        return {key: unflatten_as(leaves, child) for key, child in children}
    items = [unflatten_as(leaves, child) for child in children]
    return tuple(items) if kind == "tuple" else items


# -- the signature ---------------------------------------------------------------------------


def _check_tensor_specs(entries, where: str, graph_values, symbols_only: bool) -> list:
    if not isinstance(entries, list):
        raise FormatError(f"{where}: expected a list")
    if len(entries) != len(graph_values):
        raise FormatError(f"{where}: {len(entries)} entries, but the graph has {len(graph_values)}")
    out = []
    for i, (entry, value) in enumerate(zip(entries, graph_values)):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "dtype", "shape"}:
            raise FormatError(f"{at}: expected an object with name, dtype and shape")
        name, dtype, shape = entry["name"], entry["dtype"], entry["shape"]
        if not isinstance(name, str) or not 0 < len(name) <= 256:
            raise FormatError(f"{at}.name: expected a name, got {name!r}")
        if not isinstance(dtype, str) or dtype not in _DTYPE_NAMES:
            raise FormatError(f"{at}.dtype: expected one of {sorted(_DTYPE_NAMES)}, got {dtype!r}")
        if not isinstance(shape, list):
            raise FormatError(f"{at}.shape: expected a list")
        for j, d in enumerate(shape):
            symbol = isinstance(d, str) and (_SYMBOL.match(d) or not symbols_only)
            if not symbol and (d.__class__ is not int or d < 0):
                raise FormatError(f"{at}.shape[{j}]: expected a size or a symbol name, got {d!r}")
        recorded = [d if isinstance(d, int) else str(d) for d in value.type.shape]
        if dtype != value.type.dtype.name or shape != recorded:
            raise FormatError(
                f"{at}: {dtype}{shape} differs from the graph's "
                f"{value.type.dtype.name}{recorded} for %{value.name}"
            )
        out.append((name, dtype, tuple(shape)))
    return out


class Signature:
    """Input and output names, dtypes, shapes (a str is a symbolic size) and nesting."""

    def __init__(self, data, graph):
        if not isinstance(data, dict):
            raise FormatError("signature: expected a JSON object")
        fields = {"inputs", "outputs", "input_structure", "output_structure"}
        if not fields <= set(data) <= fields | {"seed"}:
            raise FormatError(
                f"signature: expected the fields {sorted(fields)} (and optionally 'seed'), "
                f"got {sorted(data)}"
            )
        self.seeded = data.get("seed", False)  # the graph draws: each call passes seed=
        if not isinstance(self.seeded, bool):
            raise FormatError(f"signature.seed: expected true or false, got {self.seeded!r}")
        self.inputs = _check_tensor_specs(data["inputs"], "signature.inputs", graph.inputs, True)
        self.outputs = _check_tensor_specs(
            data["outputs"], "signature.outputs", graph.outputs, False
        )
        for key, entries in (("input", self.inputs), ("output", self.outputs)):
            spec = data[f"{key}_structure"]
            if check_structure(spec, f"signature.{key}_structure") != len(entries):
                raise FormatError(
                    f"signature.{key}_structure: its leaves are not the {len(entries)} {key}s"
                )
        self.input_structure = data["input_structure"]
        self.output_structure = data["output_structure"]
        self.data = data

    def check_inputs(self, leaves) -> tuple:
        """The input arrays, checked against the signature (dtypes exactly, sizes equal or,
        for a symbol, equal wherever that symbol appears), and each symbol's size."""
        bound: dict[str, tuple] = {}
        arrays = []
        for (where, value), (name, dtype, shape) in zip(leaves, self.inputs):
            if not isinstance(value, np.ndarray) and hasattr(value, "numpy"):
                value = value.numpy()  # an ember or torch tensor
            array = np.asarray(value)
            if array.dtype.name != (dtype if dtype != "bool" else "bool"):
                raise EmberError(
                    f"input {name!r} ({where}): expected dtype {dtype}, got {array.dtype.name}"
                )
            if array.ndim != len(shape):
                raise EmberError(
                    f"input {name!r} ({where}): expected {len(shape)} dims "
                    f"{list(shape)}, got shape {list(array.shape)}"
                )
            for dim, (want, got) in enumerate(zip(shape, array.shape)):
                if isinstance(want, str):
                    first = bound.setdefault(want, (got, name, dim))
                    if first[0] != got:
                        raise EmberError(
                            f"input {name!r}: dim {dim} is the symbol {want}, {got} here but "
                            f"{first[0]} in input {first[1]!r} dim {first[2]}"
                        )
                elif want != got:
                    raise EmberError(
                        f"input {name!r} ({where}): expected shape {list(shape)}, "
                        f"got {list(array.shape)} (dim {dim} differs)"
                    )
            arrays.append(array)
        return arrays, {symbol: size for symbol, (size, _, _) in bound.items()}


# -- loading ---------------------------------------------------------------------------------


def _version(text) -> tuple:
    match = _VERSION.match(text) if isinstance(text, str) else None
    if not match:
        raise FormatError(f"metadata.schema_version: expected 'major.minor', got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _check_compatible(metadata: dict) -> list:
    """The ops list, after refusing in one message a newer major version and unknown ops."""
    problems = []
    major, minor = _version(metadata["schema_version"])
    if major != SCHEMA_VERSION[0]:
        problems.append(
            f"schema version {major}.{minor} (this runtime reads {SCHEMA_VERSION[0]}.x)"
        )
    ops = parse_json(metadata["ops"], "metadata.ops")
    if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
        raise FormatError("metadata.ops: expected a list of op names")
    unknown = sorted({op for op in ops if op not in SCHEMAS or op not in KERNELS})
    if unknown:
        problems.append(f"unknown ops {', '.join(repr(op[:64]) for op in unknown[:50])}")
    if problems:
        raise FormatError(
            f"{metadata['format']} file written by ember "
            f"{metadata['ember_version'][:32]!r} cannot be run: " + "; ".join(problems)
        )
    return ops


def _graph(metadata: dict, tensors: dict, ops: list):
    data = parse_json(metadata["graph"], "metadata.graph")
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if isinstance(nodes, list):
        used = {n["op"] for n in nodes if isinstance(n, dict) and isinstance(n.get("op"), str)}
        missing = sorted(used - set(ops))
        if missing:
            raise FormatError(f"metadata.graph: uses ops not listed in metadata.ops: {missing}")
    try:
        graph = from_data(data, tensors)
    except EmberError as exc:
        raise FormatError(f"metadata.{exc}") from None
    except (
        TypeError,
        ValueError,
        KeyError,
        IndexError,
        AttributeError,
        ArithmeticError,
        RecursionError,
    ) as exc:
        raise FormatError(f"metadata.graph: invalid graph ({type(exc).__name__}: {exc})") from None
    for i, node in enumerate(graph.nodes):
        # a declared op's attrs were checked against its declaration (ir.schema.check_node);
        # an undeclared one (a custom op) takes the attrs its kernel names
        allowed = _kernel_attrs(node.op) if SCHEMAS[node.op].attrs is None else None
        unknown = [] if allowed is None else sorted(set(node.attrs) - allowed)
        if unknown:
            raise FormatError(
                f"metadata.graph: nodes[{i}] ({node.op}): unknown attr {unknown[0][:64]!r}"
            )
    for c in graph.constants:
        # the graph holds the mapped array itself, not from_data's copy of it
        c.constant = tensors[c.name]
    return graph


@functools.cache
def _kernel_attrs(op: str) -> frozenset | None:
    """The attr names op's kernel takes (None when it takes any, as **attrs)."""
    params = inspect.signature(KERNELS[op]).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind is not p.VAR_POSITIONAL)


class LoadedProgram:
    """A graph file ready to run: call it with arrays nested as its signature says."""

    def __init__(
        self,
        path: str,
        metadata: dict,
        graph,
        signature: Signature,
        examples: dict,
        device: str,
        size: int,
    ):
        self.path = path
        self.metadata = metadata
        self.graph = graph
        self.signature = signature
        self.examples = examples  # input name -> array, when the file stores examples
        self.device = device
        self.size = size
        self.ops = sorted({node.op for node in graph.nodes})
        self._program = Program(graph)
        # steps whose attrs hold symbolic sizes (a reshape to batch*4): each call resolves them
        self._symbolic = {i for i, step in enumerate(self._program.steps)
                          if _has_symbol(step.attrs)}
        self._xp = np if device == "cpu" else _cupy(device)
        self._compile = native_enabled()
        # sizes -> the program for them, least recently called first (see _program_for)
        self._by_sizes: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._packed: dict = {}  # weights transposed once for all sizes' entries (graph_entry)
        self._per_sizes = bool(self._symbolic) or _has_symbolic_shapes(graph)
        # [(shapes and dtypes, program)] of the last call whose arguments were numpy arrays in
        # a flat tuple (_run's fast path), or [None]: the pair replaced whole, so a reader
        # sees one, in a list made once (the program's attributes stay as loaded)
        self._last: list = [None]
        structure = signature.input_structure
        self._flat_arrays = (isinstance(structure, dict) and "tuple" in structure
                             and all(c == "*" for c in structure["tuple"]))
        self._one_output = signature.output_structure == "*"
        if self._compile and not self._per_sizes:
            self._program = build_entry_program(graph, metadata.get("name") or "graph",
                                                device=device.split(":")[0],
                                                packed=self._packed)

    @property
    def schema_version(self) -> str:
        return self.metadata["schema_version"]

    @property
    def ember_version(self) -> str:
        return self.metadata["ember_version"]

    def __call__(self, *args, seed: int | None = None):
        """Run the graph on args; a graph exported with seed_input=True draws its random
        numbers from `seed` (the numbers eager draws after manual_seed(seed))."""
        if seed is None and not self.signature.seeded:
            return self._run(args)
        if self.signature.seeded:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise EmberError(
                    f"{os.path.basename(self.path)} draws random numbers: call it with "
                    f"seed=<int> (got {seed!r})")
            with random.seeded(int(seed)):
                return self._run(args)
        raise EmberError(f"{os.path.basename(self.path)} draws no random numbers; it takes "
                         f"no seed (exported without seed_input=True)")

    def _run(self, args):
        # the fast path: the arguments are numpy arrays of the shapes and dtypes of the last
        # call's, in the flat tuple the signature has (runtime/graph_entry.py checks again)
        last = self._last[0]
        if last is not None and len(args) == len(last[0]):
            for a, (shape, dtype) in zip(args, last[0]):
                if a.__class__ is not np.ndarray or a.shape != shape or a.dtype != dtype:
                    break
            else:
                outputs = last[1](np, args)
                if self._one_output and outputs[0].__class__ is np.ndarray:
                    return outputs[0]
                outputs = [np.asarray(o) for o in outputs]
                return unflatten_as(iter(outputs), self.signature.output_structure)
        leaves: list = []
        flatten_as(args, self.signature.input_structure, "inputs", leaves)
        arrays, sizes = self.signature.check_inputs(leaves)
        xp = self._xp
        if xp is not np:
            arrays = [xp.asarray(a) for a in arrays]
        program = self._program_for(sizes) if self._per_sizes else self._program
        if self._flat_arrays and xp is np and all(a.__class__ is np.ndarray for a in args):
            # the last call's only: a size no longer called goes
            self._last[0] = (tuple((a.shape, a.dtype) for a in args), program)
        outputs = program(xp, arrays)
        outputs = [np.asarray(o) if xp is np else xp.asnumpy(o) for o in outputs]
        return unflatten_as(iter(outputs), self.signature.output_structure)

    def _program_for(self, sizes: dict):
        """The program for these symbol sizes, built on the first call with them, after the
        values they give are checked against the memory budget (runtime/budget.py), and kept:
        the SPECIALIZATIONS most recently called are, so a steady mix of that many sizes
        never rebuilds."""
        key = tuple(sorted(sizes.items()))
        cache = self._by_sizes
        with self._lock:
            program = cache.get(key)
            if program is not None:
                cache.move_to_end(key)
                return program
        check_budget(self.graph, sizes)
        program = self._build_for(sizes)
        with self._lock:
            cache[key] = program
            while len(cache) > SPECIALIZATIONS:
                cache.popitem(last=False)
        return program

    def _build_for(self, sizes: dict):
        """Native kernels for these sizes: the graph specialized to them and compiled; or,
        on the eager kernels, the program with the sizes in its attrs (a copy of the steps, so
        nothing shared is ever changed under a caller)."""
        if self._compile:
            from ..ir.specialize import specialize

            return build_entry_program(specialize(self.graph, sizes), "graph",
                                       device=self.device.split(":")[0], packed=self._packed)
        if not self._symbolic:
            return self._program
        program = copy.copy(self._program)
        program.steps = [
            replace(step, attrs=resolve(step.attrs, sizes)) if i in self._symbolic else step
            for i, step in enumerate(self._program.steps)
        ]
        return program

    def __repr__(self) -> str:
        return f"LoadedProgram({self.path!r}, {len(self.graph.nodes)} nodes)"


def _has_symbolic_shapes(graph) -> bool:
    return any(_has_symbol(tuple(v.shape)) for v in graph.values())


def _has_symbol(value) -> bool:
    if isinstance(value, SymInt):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_symbol(v) for v in value)
    if isinstance(value, dict):
        return any(_has_symbol(v) for v in value.values())
    return False


def _cupy(device: str):
    from .device import as_device, cupy_module

    as_device(device)
    return cupy_module()


def load(path, device: str = "cpu") -> LoadedProgram:
    """Load the graph file at path; a FormatError names the first field that is wrong."""
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise EmberError(f"load: device is 'cpu' or 'cuda', got {device!r}")
    path = str(path)
    container = read_container(path)
    metadata = container.metadata
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise FormatError(f"metadata: missing {', '.join(missing)}")
    if metadata["format"] != FORMAT_NAME:
        raise FormatError(
            f"metadata.format: expected {FORMAT_NAME!r}, got {metadata['format'][:64]!r}"
        )
    ops = _check_compatible(metadata)
    tensors = container.tensors
    examples: dict = {}
    example_names = parse_json(metadata.get("examples", "[]"), "metadata.examples")
    if not isinstance(example_names, list) or not all(isinstance(n, str) for n in example_names):
        raise FormatError("metadata.examples: expected a list of input names")
    graph = _graph(metadata, {k: v for k, v in tensors.items() if ":" not in k}, ops)
    signature = Signature(parse_json(metadata["signature"], "metadata.signature"), graph)
    check_budget(graph)  # symbolic sizes at their least here, at their values at each call
    constants = {c.name for c in graph.constants}
    input_names = [name for name, _, _ in signature.inputs]
    if example_names and example_names != input_names:
        raise FormatError(
            f"metadata.examples: expected the inputs {input_names}, got {example_names[:16]}"
        )
    for name in example_names:
        if f"example:{name}" not in tensors:
            raise FormatError(f"metadata.examples: no tensor 'example:{name}' in the file")
        examples[name] = tensors[f"example:{name}"]
    extra = sorted(set(tensors) - constants - {f"example:{n}" for n in example_names})
    if extra:
        raise FormatError(
            f"tensors: {extra[0]!r} is neither a constant of the graph nor a listed example"
        )
    if examples:
        try:
            signature.check_inputs([(n, examples[n]) for n in input_names])
        except EmberError as exc:
            raise FormatError(f"metadata.examples: {exc}") from None
    return LoadedProgram(path, metadata, graph, signature, examples, device, container.size)
