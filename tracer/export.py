"""ember.export: capture a function or module into one graph file that ember.runtime runs.

The call is traced once on the example inputs (as ember.trace does), except that tensors from
outside the function (a module's parameters and buffers, globals) become constants stored in
the file, named after the parameter when there is one. Dynamic dimensions are traced with
symbolic sizes, as ember.script(dynamic=True) traces them (tracer/sizes.py), named by the
user's symbols: a size the code computes from one stays an expression in the graph, and what
would make one exact (a type rule that cannot take it, a size used as a plain number, a branch
on sizes) is refused with its line. The graph is optimized by the IR pipeline and written with
its signature; with `check`, the file is loaded back and run against eager on the examples
(and, with dynamic dimensions, on a second size) and the largest difference is reported.

Two exports of the same model give the same bytes. Each node keeps the user's file:line it
came from, for messages; `source_paths` says how much of the path the file keeps: "relative"
(the default) to the deepest of the working directory and the sys.path entries that holds
it (a script's own name, a library's module path "timm/models/resnet.py"), else the file name
alone, so no user name, home or checkout path of the exporting machine is written; "absolute" keeps
them as they were; "strip" writes no sources.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import pathlib
import re
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from .. import __version__
from .._tensor import Tensor
from ..autograd import grad_mode
from ..errors import EmberError, value_error
from ..ir.graph import VALUE_NAME
from ..ir.passes import run_pipeline
from ..ir.serialize import to_data
from ..runtime import random
from ..runtime.device import CPU, to_device
from ..runtime.graph_file import FORMAT_NAME, SCHEMA_VERSION, write_container
from ..runtime.program import evaluate_with_kernels
from .pytree import Spec, flatten, unflatten
from .tracer import Trace, tracing

_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# |runtime - eager| <= atol + rtol * |eager|, per float dtype; other dtypes must be equal
TOLERANCES = {"float16": (1e-2, 1e-2), "float32": (1e-4, 1e-5), "float64": (1e-10, 1e-12)}


@dataclass
class ExportResult:
    """What export wrote: the file, its signature and ops, and the check's largest
    |runtime - eager| difference (None without check)."""

    path: str
    signature: dict
    ops: list
    max_difference: float | None
    size: int
    # with native=: what ember.runtime.library.compile_library wrote (runtime/library.py)
    library: object = None


class _ExportTrace(Trace):
    """A trace whose tensors from outside the function become constants (weights)."""

    def __init__(self, name: str, weight_names: dict):
        super().__init__(name)
        self.weight_names = weight_names  # id(tensor) -> "layer.weight"

    def value_of(self, tensor):
        entry = self.env.get(id(tensor))
        if (entry is not None and entry[0] is tensor) or self.factory_made.get(
            id(tensor)
        ) is tensor:
            return super().value_of(tensor)
        name = self.weight_names.get(id(tensor))
        if name is None or not VALUE_NAME.match(name) or name in self.graph._names:
            name = None
        array = np.array(to_device(tensor._data, CPU))
        value = self.graph.add_constant(array, dtype=tensor.dtype.name, name=name)
        self._bind(tensor, value)
        return value

    def read_shape(self, tensor, dim, by_ember: bool):
        # the function's own code gets symbolic sizes too (ember.script gives it plain ints,
        # since a graph it keeps must be right without a check): a size it computes from a
        # dynamic dim (x.reshape(x.shape[0] * 2, -1)) stays an expression; one it uses as a
        # plain number makes the dim exact, which export refuses; the check at another size
        # catches a size that escaped unseen
        return super().read_shape(tensor, dim, True)


# -- nesting and names -------------------------------------------------------------------------


def _with_nones(spec, leaves):
    """spec with each leaf that holds None (in order, from the iterator `leaves`) made a
    "none" node: a structure without a tensor there."""
    if spec.kind == "leaf":
        return Spec("none") if next(leaves) is None else spec
    return Spec(spec.kind, spec.meta, tuple(_with_nones(c, leaves) for c in spec.children))


def _structure(spec, where: str):
    """The JSON form of a pytree Spec (see runtime/loaded.py); a None is null."""
    if spec.kind == "leaf":
        return "*"
    if spec.kind == "none":
        return None
    if spec.kind == "dict":
        bad = [k for k in spec.meta if not isinstance(k, str)]
        if bad:
            raise EmberError(f"export: {where} has the dict key {bad[0]!r}; keys must be str")
        return {
            "dict": [
                [k, _structure(c, f"{where}[{k!r}]")] for k, c in zip(spec.meta, spec.children)
            ]
        }
    return {spec.kind: [_structure(c, f"{where}[{i}]") for i, c in enumerate(spec.children)]}


def _leaf_names(spec, prefix: str) -> list:
    if spec.kind == "leaf":
        return [prefix]
    if spec.kind == "none":
        return []
    keys = spec.meta if spec.kind == "dict" else range(len(spec.children))
    names = []
    for key, child in zip(keys, spec.children):
        part = str(key) if re.fullmatch(r"[A-Za-z0-9_]+", str(key)) else f"k{len(names)}"
        names += _leaf_names(child, f"{prefix}.{part}")
    return names


def _parameter_names(target, count: int) -> list:
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [names[i] if i < len(names) else f"arg{i}" for i in range(count)]


def _as_tensor(x, where: str):
    from .._tensor.factories import tensor as make_tensor

    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return make_tensor(x)
    raise EmberError(
        f"export: {where} is a {type(x).__name__}; exported inputs are tensors or numpy arrays "
        f"(a constant is baked in: close over it instead of passing it)"
    )


# -- dynamic dimensions ------------------------------------------------------------------------


def _dynamic_symbols(dynamic_dims, arg_names: list, inputs: dict, leaves_of_arg: dict) -> dict:
    """{input name: {dim: symbol}} from dynamic_dims keyed by argument name or position,
    checked against the example inputs ({input name: tensor})."""
    out: dict = {}
    sizes: dict = {}
    for key, dims in (dynamic_dims or {}).items():
        if isinstance(key, int) and 0 <= key < len(arg_names):
            key = arg_names[key]
        if leaves_of_arg.get(key) != [key]:
            raise EmberError(
                f"export: dynamic_dims names {key!r}, which is not a tensor "
                f"argument (the arguments are {arg_names})"
            )
        if not isinstance(dims, dict):
            raise EmberError(f"export: dynamic_dims[{key!r}] is {{dim: symbol}}, got {dims!r}")
        shape = inputs[key]._data.shape
        ndim = len(shape)
        for dim, symbol in dims.items():
            if not isinstance(dim, int) or not -ndim <= dim < ndim:
                raise EmberError(f"export: input {key!r} has {ndim} dims, no dim {dim!r}")
            if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
                raise EmberError(f"export: a dynamic dim is named by an identifier, got {symbol!r}")
            size = shape[dim]
            if sizes.setdefault(symbol, size) != size:
                raise EmberError(
                    f"export: the dynamic dim {symbol} is {sizes[symbol]} in "
                    f"one example input and {size} in {key!r}"
                )
            out.setdefault(key, {})[dim % ndim] = symbol
    return out


def _symbolic_graph(recording: _ExportTrace, symbols: dict, out_leaves: list, name: str):
    """The traced graph with the dynamic dims' symbols kept through it (the sizes Python
    computed from them too: a reshape to x.shape[0] * 4), or an EmberError that names what
    made a dim exact (an op whose type rule cannot take the symbol, a size used as a plain
    number) or the comparison of sizes the code branched on, with the user's line."""
    finished = recording.finish_symbolic(out_leaves)
    kept = finished[1] if finished is not None else {}
    for input_name, dims in symbols.items():
        for dim, symbol in dims.items():
            if symbol not in kept:
                why = recording.fixed_by.get(symbol, "the graph could not be typed with it")
                raise EmberError(
                    f"export: with dynamic dims, {input_name}.shape[{dim}] ({symbol}) cannot "
                    f"stay symbolic: {why}"
                )
    graph, _, guards = finished
    if guards:
        a, op, b, result, where = guards[0]
        raise EmberError(
            f"export: with dynamic dims, {name} branches on the sizes ({a} {op} {b} is "
            f"{result} at {where or '?'}): its graph would hold only for some sizes"
        )
    return graph


# -- export ------------------------------------------------------------------------------------


def _capture(fn, name: str, args: tuple, weight_names: dict, arg_names: list, dynamic_dims):
    recording = _ExportTrace(name, weight_names)
    leaves_of_arg = {}
    structures = []
    inputs = {}  # input name -> example tensor, in order
    for arg_name, arg in zip(arg_names, args):
        leaves, spec = flatten(arg)
        structures.append(_structure(spec, arg_name))
        names = _leaf_names(spec, arg_name)
        leaves_of_arg[arg_name] = names
        for leaf_name, leaf in zip(names, leaves):
            if not isinstance(leaf, Tensor):
                raise EmberError(
                    f"export: input {leaf_name} is a {type(leaf).__name__}; "
                    f"exported inputs are tensors"
                )
            if any(leaf is earlier for earlier in inputs.values()):
                raise EmberError(
                    f"export: input {leaf_name} is the same tensor as an earlier "
                    f"input; pass it once"
                )
            inputs[leaf_name] = leaf
    symbols = _dynamic_symbols(dynamic_dims, arg_names, inputs, leaves_of_arg)
    for leaf_name, leaf in inputs.items():
        recording.add_input(leaf, leaf_name, symbols.get(leaf_name, {}))
    with grad_mode.no_grad(), tracing(recording):
        result = fn(*args)
    if recording.broken:
        raise EmberError(f"export: cannot export {name}: {recording.broken}")
    if recording.value_guards:
        reads = "; ".join(g.describe() for g in recording.value_guards)
        raise EmberError(
            f"export: {name} reads tensor values into Python, so its graph would "
            f"hold only for these values: {reads}"
        )
    if recording.mutated:
        raise EmberError(
            f"export: {name} writes in place into {len(recording.mutated)} "
            f"input or outside tensor(s); an exported graph has no state"
        )
    out_leaves, out_spec = flatten(result)
    for i, leaf in enumerate(out_leaves):
        if not isinstance(leaf, Tensor) and leaf is not None:
            raise EmberError(
                f"export: output leaf {i} of {name} is a {type(leaf).__name__}; "
                f"exported outputs are tensors (or None)"
            )
    # a None in the result ((logits, None) when no targets are given) stays in the signature
    out_spec = _with_nones(out_spec, iter(out_leaves))
    out_leaves = [leaf for leaf in out_leaves if leaf is not None]
    recording.outputs(out_leaves)
    graph = recording.graph
    if symbols:
        graph = _symbolic_graph(recording, symbols, out_leaves, name)
    input_structure = {"tuple": structures}
    return graph, result, input_structure, out_spec, symbols


def _difference(got, expected, where: str) -> float:
    expected = np.asarray(expected)
    if got.shape != expected.shape or got.dtype != expected.dtype:
        raise EmberError(
            f"export check: {where}: the runtime gives {got.dtype}"
            f"{list(got.shape)}, eager {expected.dtype}{list(expected.shape)}"
        )
    if expected.size == 0:
        return 0.0
    if expected.dtype.name not in TOLERANCES:
        if not np.array_equal(got, expected):
            raise EmberError(
                f"export check: {where}: the runtime's {expected.dtype} values differ from eager's"
            )
        return 0.0
    rtol, atol = TOLERANCES[expected.dtype.name]
    if not np.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True):
        diff = float(np.nanmax(np.abs(got.astype(np.float64) - expected)))
        raise EmberError(
            f"export check: {where}: the runtime differs from eager by up to {diff:g} "
            f"(tolerance {atol:g} + {rtol:g}*|eager|)"
        )
    both = np.isfinite(got) & np.isfinite(expected)
    if not both.any():
        return 0.0
    return float(np.max(np.abs(got[both].astype(np.float64) - expected[both])))


def _compare(program, args: tuple, eager_result) -> float:
    leaves, _ = flatten(args)
    arrays = [np.array(to_device(x._data, CPU)) for x in leaves]
    out = program(*unflatten(arrays, flatten(args)[1]))
    got, got_spec = flatten(out)
    expected, expected_spec = flatten(eager_result)
    if got_spec != expected_spec or [g is None for g in got] != [e is None for e in expected]:
        raise EmberError(f"export check: the runtime returns {got_spec.describe()}, eager "
                         f"{expected_spec.describe()}")
    got = [g for g in got if g is not None]
    expected = [e for e in expected if e is not None]
    worst = 0.0
    for i, (g, e) in enumerate(zip(got, expected)):
        worst = max(worst, _difference(g, to_device(e._data, CPU), f"output {i}"))
    return worst


def _grown(args: tuple, symbols: dict, arg_names: list, more: int = 1) -> tuple:
    """The example arguments with every dynamic dim `more` larger (its items repeated)."""
    from .._tensor.factories import tensor as make_tensor

    grown = list(args)
    for i, name in enumerate(arg_names):
        if name in symbols:
            array = np.array(to_device(args[i]._data, CPU))
            for dim in symbols[name]:
                n = array.shape[dim]
                array = np.take(array, np.arange(n + more) % max(n, 1), axis=dim)
            grown[i] = make_tensor(array, device=args[i].device)
    return tuple(grown)


@dataclass
class Captured:
    """A function's optimized graph as export captures it, with what it was captured from:
    the example arguments, eager's result on them, the input and output structures and the
    dynamic symbols ({input name: {dim: symbol}})."""

    graph: object
    args: tuple
    eager_result: object
    input_structure: dict
    out_spec: object
    symbols: dict
    arg_names: list
    module: object


@contextlib.contextmanager
def module_mode(module, training: bool):
    """Run a module (None: a plain function) in training or eval mode, restoring its mode."""
    if module is None:
        yield
        return
    was_training = module.training
    module.train(training)
    try:
        yield
    finally:
        module.train(was_training)


def capture(
    fn_or_module, example_inputs, *, dynamic_dims: dict | None = None, training: bool = False
) -> Captured:
    """Trace fn_or_module on example_inputs into one graph, outside tensors as constants,
    with symbolic dynamic dims, optimized by the IR pipeline: what ember.export writes and
    ember.onnx.export translates. A module is traced in eval mode unless training=True."""
    from ..nn.module import Module

    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    args = tuple(
        _as_tensor(a, f"example input {i}") if not isinstance(a, (tuple, list, dict)) else a
        for i, a in enumerate(args)
    )
    module = fn_or_module if isinstance(fn_or_module, Module) else None
    target = module.forward if module is not None else fn_or_module
    name = type(module).__name__ if module is not None else getattr(target, "__name__", "fn")
    arg_names = _parameter_names(target, len(args))
    weight_names = {}
    if module is not None:
        for pname, tensor in [*module.named_parameters(), *module.named_buffers()]:
            weight_names.setdefault(id(tensor), pname)
        if module.training and not training:
            warnings.warn(
                f"export: {name} was in training mode; it is exported in eval mode "
                f"(pass training=True to keep training mode)",
                stacklevel=3,
            )
    with module_mode(module, training):
        graph, eager_result, input_structure, out_spec, symbols = _capture(
            fn_or_module, name, args, weight_names, arg_names, dynamic_dims
        )
    run_pipeline(graph, verify=True, evaluate=evaluate_with_kernels)
    return Captured(
        graph, args, eager_result, input_structure, out_spec, symbols, arg_names, module
    )


SOURCE_PATHS = ("relative", "absolute", "strip")


def _relative_source(source: str) -> str:
    filename, colon, line = source.rpartition(":")
    if not colon or not line.isdigit() or not os.path.isabs(filename):
        return source  # "<stdin>:3", "<string>:1": nothing of the machine in them
    filename = os.path.normpath(filename)
    # the deepest of the working directory and the import roots that holds the file: a
    # script's own name, a package's module path; never the root itself
    bases = {os.path.normpath(os.path.abspath(p)) for p in [os.getcwd(), *sys.path] if p}
    holding = [
        base
        for base in bases
        if os.path.dirname(base) != base and os.path.commonpath([base, filename]) == base
    ]
    if holding:
        relative = os.path.relpath(filename, max(holding, key=len))
    else:
        relative = os.path.basename(filename)
    return f"{pathlib.PurePath(relative).as_posix()}:{line}"


def _rewrite_sources(graph_data: dict, source_paths: str) -> dict:
    if source_paths == "absolute":
        return graph_data
    for node in graph_data["nodes"]:
        if "source" in node:
            if source_paths == "strip":
                del node["source"]
            else:
                node["source"] = _relative_source(node["source"])
    return graph_data


def export(
    fn_or_module,
    example_inputs,
    path,
    *,
    dynamic_dims: dict | None = None,
    check: bool = True,
    include_examples: bool = False,
    training: bool = False,
    seed_input: bool = False,
    source_paths: str = "relative",
    native: bool | str = False,
    native_sizes: list | None = None,
) -> ExportResult:
    """Export fn_or_module, as called on example_inputs (a tensor or a tuple of arguments), to
    the graph file `path`. A module runs in eval mode unless training=True (its mode is
    restored after). dynamic_dims makes sizes symbolic: {"x": {0: "batch"}} or {0: {0:
    "batch"}}. With check, the file is run by ember.runtime and compared with eager.

    A graph that draws random numbers (dropout in training mode, randn_like, ...) is refused
    unless seed_input=True: then every call of the loaded graph takes seed=<int> and draws
    the numbers eager draws after ember.manual_seed(seed).

    source_paths: how the file names the user's source files ("relative", the default,
    "absolute" or "strip"; see the module's docstring).

    native: also compile the file to a shared library with a C ABI and its header
    (runtime/library.py): True writes lib<name>.so beside the file, a str names the library.
    A graph with symbolic sizes gets one entry per {symbol: size} of native_sizes (default:
    the example's sizes). The library reads its weights from the file."""
    if not isinstance(native, (bool, str, os.PathLike)):
        raise value_error(f"export: native must be True, False or the library's path, "
                          f"got {native!r}")
    if source_paths not in SOURCE_PATHS:
        raise value_error(
            f"export: source_paths must be one of {', '.join(map(repr, SOURCE_PATHS))}, "
            f"got {source_paths!r}"
        )
    with random.seeded(0) if seed_input else contextlib.nullcontext():  # the user's stream
        captured = capture(fn_or_module, example_inputs, dynamic_dims=dynamic_dims,
                           training=training)
    graph, args, symbols = captured.graph, captured.args, captured.symbols
    drawn = next((node for node in graph.nodes if node.schema.kind == "random"), None)
    if drawn is not None and not seed_input:
        raise EmberError(
            f"export: {getattr(fn_or_module, '__name__', type(fn_or_module).__name__)} draws "
            f"random numbers ({drawn.op} at {drawn.source or '?'}); an exported graph is "
            f"deterministic. Export the model in eval mode (dropout off), pass the noise in "
            f"as an input, or pass seed_input=True (each call then takes seed=<int>)")
    signature = _signature(graph, captured.input_structure, captured.out_spec)
    if drawn is not None:
        signature["seed"] = True
    ops = sorted({node.op for node in graph.nodes})
    tensors = {c.name: c.constant for c in graph.constants}
    metadata = {
        "format": FORMAT_NAME,
        "schema_version": f"{SCHEMA_VERSION[0]}.{SCHEMA_VERSION[1]}",
        "ember_version": __version__,
        "graph": json.dumps(
            _rewrite_sources(to_data(graph, constant_data=False), source_paths),
            separators=(",", ":"),
        ),
        "ops": json.dumps(ops),
        "signature": json.dumps(signature, separators=(",", ":")),
    }
    if include_examples:
        names = [v.name for v in graph.inputs]
        metadata["examples"] = json.dumps(names)
        for value, leaf in zip(graph.inputs, flatten(args)[0]):
            tensors[f"example:{value.name}"] = np.array(to_device(leaf._data, CPU))
    path = str(path)
    write_container(path, tensors, metadata)
    difference = None
    if check:
        from ..runtime.loaded import load

        program = load(path)
        if drawn is not None:  # eager and the file, each drawing from the same seed
            with random.seeded(0), grad_mode.no_grad(), module_mode(captured.module, training):
                expected = fn_or_module(*args)
            program = functools.partial(program, seed=0)
            difference = _compare(program, args, expected)
        else:
            difference = _compare(program, args, captured.eager_result)
        if symbols:
            grown = _grown(args, symbols, captured.arg_names, more=2)
            try:
                with (random.seeded(0), grad_mode.no_grad(),
                      module_mode(captured.module, training)):
                    expected = fn_or_module(*grown)
            except EmberError:
                expected = None  # the function itself does not take the other size
            if expected is not None:
                difference = max(difference, _compare(program, grown, expected))
    library = None
    if native:
        from ..runtime.library import compile_library

        stem = os.path.splitext(os.path.basename(path))[0]
        target = (os.path.join(os.path.dirname(path), f"lib{stem}.so") if native is True
                  else native)
        if native_sizes is None and symbols:
            native_sizes = [_example_sizes(signature, args)]
        library = compile_library(path, str(target), sizes=native_sizes)
    return ExportResult(path, signature, ops, difference, os.path.getsize(path), library)


def _example_sizes(signature: dict, args) -> dict:
    """{symbol: size} as the example inputs give them."""
    sizes = {}
    for spec, leaf in zip(signature["inputs"], flatten(args)[0]):
        for dim, size in zip(spec["shape"], leaf.shape):
            if isinstance(dim, str):
                sizes.setdefault(dim, int(size))
    return sizes


def _signature(graph, input_structure, out_spec) -> dict:
    output_structure = _structure(out_spec, "the output")
    out_names = _leaf_names(out_spec, "output")

    def describe(value, name):
        shape = [d if isinstance(d, int) else str(d) for d in value.type.shape]
        return {"name": name, "dtype": value.type.dtype.name, "shape": shape}

    return {
        "inputs": [describe(v, v.name) for v in graph.inputs],
        "outputs": [describe(v, n) for v, n in zip(graph.outputs, out_names)],
        "input_structure": input_structure,
        "output_structure": output_structure,
    }
