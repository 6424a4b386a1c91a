"""The command line of the runtime: `python -m ember.runtime info|run|compile FILE ...` (and
ember-run).

info prints a graph file's signature, ops, sizes and versions; run loads the inputs from .npy
files, runs the file and saves the outputs to an .npz file (or prints their shapes); compile
writes a shared library with a C ABI and its header (runtime/library.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from ..errors import EmberError
from .loaded import load


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def info(path: str) -> str:
    """A graph file described in text."""
    start = time.perf_counter()
    program = load(path)
    took = time.perf_counter() - start
    graph = program.graph
    weights = sum(c.constant.nbytes for c in graph.constants)
    lines = [
        f"file:     {path} ({os.path.getsize(path)} bytes, loaded in {took * 1e3:.1f} ms)",
        (
            f"format:   {program.metadata['format']} {program.schema_version}, written by "
            f"ember {program.ember_version}"
        ),
        f"graph:    {len(graph.nodes)} nodes, {len(graph.constants)} constants ({weights} bytes)",
        f"ops:      {', '.join(program.ops)}",
        "inputs:",
    ]
    lines += [
        f"  {name}: {dtype}{_shape(shape)}" for name, dtype, shape in program.signature.inputs
    ]
    lines.append("outputs:")
    lines += [
        f"  {name}: {dtype}{_shape(shape)}" for name, dtype, shape in program.signature.outputs
    ]
    if program.examples:
        lines.append(f"examples: {', '.join(program.examples)}")
    if program.signature.seeded:
        lines.append("draws random numbers: run it with --seed N (the numbers eager draws "
                     "after manual_seed(N))")
    return "\n".join(lines)


def _read_inputs(program, given: list) -> list:
    named = {}
    for item in given:
        name, sep, file = item.partition("=")
        if not sep:
            raise EmberError(f"--input takes name=path.npy, got {item!r}")
        named[name] = np.load(file, allow_pickle=False)
    names = [name for name, _, _ in program.signature.inputs]
    unknown = sorted(set(named) - set(names))
    if unknown:
        raise EmberError(f"no input named {unknown[0]!r}; the inputs are {names}")
    missing = [n for n in names if n not in named and n not in program.examples]
    if missing:
        raise EmberError(f"missing --input for {', '.join(missing)}")
    return [named[n] if n in named else program.examples[n] for n in names]


def run(path: str, inputs: list, output: str | None, seed: int | None = None) -> str:
    """Run a graph file on .npy inputs (and the seed a graph that draws takes); the outputs
    go to an .npz file."""
    from .loaded import flatten_as, unflatten_as

    program = load(path)
    leaves = _read_inputs(program, inputs)
    args = unflatten_as(iter(leaves), program.signature.input_structure)
    start = time.perf_counter()
    result = program(*args, seed=seed)
    took = time.perf_counter() - start
    flat: list = []
    flatten_as(result, program.signature.output_structure, "outputs", flat)
    names = [name for name, _, _ in program.signature.outputs]
    arrays = {name: value for name, (_, value) in zip(names, flat)}
    lines = [f"ran {path} in {took * 1e3:.1f} ms"]
    lines += [f"  {name}: {a.dtype}{_shape(a.shape)}" for name, a in arrays.items()]
    if output:
        np.savez(output, **arrays)
        lines.append(f"wrote {output}")
    return "\n".join(lines)


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ember-run", description="Run ember graph files.")
    commands = parser.add_subparsers(dest="command", required=True)
    info_parser = commands.add_parser("info", help="print a graph file's signature and ops")
    info_parser.add_argument("file")
    run_parser = commands.add_parser("run", help="run a graph file on .npy inputs")
    run_parser.add_argument("file")
    run_parser.add_argument("--input", action="append", default=[], metavar="NAME=PATH.npy")
    run_parser.add_argument("--output", metavar="OUT.npz")
    run_parser.add_argument("--seed", type=int, help="the seed of a graph that draws random "
                            "numbers (exported with seed_input=True)")
    compile_parser = commands.add_parser(
        "compile", help="compile a graph file to a shared library with a C ABI (and header)")
    compile_parser.add_argument("file")
    compile_parser.add_argument("-o", "--output", required=True, metavar="LIBMODEL.so")
    compile_parser.add_argument("--sizes", action="append", default=[],
                                metavar="SYMBOL=N[,SYMBOL=N]",
                                help="the sizes of one entry (repeat for more), for a graph "
                                "with symbolic sizes")
    compile_parser.add_argument("--prefix", default="model",
                                help="prefix of the C functions and header (default: model)")
    compile_parser.add_argument("--header", metavar="PATH.h",
                                help="where the header goes (default: PREFIX.h beside the "
                                "library)")
    options = parser.parse_args(argv)
    try:
        if options.command == "info":
            print(info(options.file))
        elif options.command == "compile":
            from .library import compile_library, describe, parse_sizes

            print(describe(compile_library(options.file, options.output,
                                           sizes=parse_sizes(options.sizes),
                                           prefix=options.prefix, header=options.header)))
        else:
            print(run(options.file, options.input, options.output, options.seed))
    except (EmberError, OSError, ValueError) as exc:
        print(f"ember-run: error: {exc}", file=sys.stderr)
        return 1
    return 0
