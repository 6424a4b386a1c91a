"""A graph file compiled to a shared library with a plain C ABI, which runs without Python.

    python -m ember.runtime compile model.ember -o libmodel.so [--sizes batch=1 ...]

Each set of sizes (one for a graph without symbolic sizes) is planned as the runtime plans it
(runtime/graph_entry.py: the graph as one native function over one arena) and emitted as
position-independent object code for the host CPU; the pool's code (codegen/llvm/pool.py)
goes with it where a step is parallel. A C part (runtime/library_source.py) opens the graph
file, checks it is the one compiled for, and runs an entry on the caller's pointers. The
weights stay in the .ember file: the library maps it, and refuses one whose graph or weights
differ from what it was compiled for.

GEMMs call the OpenBLAS that numpy ships (numpy.libs/libscipy_openblas64_*.so, ILP64, found
and probed by runtime/blas.py), linked by its path with an rpath: the library then needs that
file where it was, but no Python. It is the BLAS the Python runtime's figures come from, and
this machine has no system BLAS to prefer; a library whose graph needs no GEMM links none.
The objects are linked by the system C compiler (`cc`, or $CC); where there is none, the
object file, the C source and the header are written beside the output with the command that
would link them, and the build says so.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import EmberError
from .graph_entry import NativeGraph, Unsupported
from .library_source import HEADER, SOURCE

PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}\Z")
POOL_SYMBOLS = ("ember_parallel_for", "ember_pool_start", "ember_pool_stop", "ember_pool_park")


class LibraryError(EmberError, RuntimeError):
    """A graph file that cannot be compiled to a library, or a failed build."""


@dataclass
class Library:
    """What compile_library wrote: the shared library (None when there is no C compiler),
    its header, and the files kept for linking by hand then; `note` says which."""

    library: str | None
    header: str
    entries: list  # the sizes of each entry, {symbol: size}
    kept: list = field(default_factory=list)
    note: str = ""


class _Planned(NativeGraph):
    """A NativeGraph planned and emitted but not loaded: its IR goes into the library."""

    PIPELINE = NativeGraph.PIPELINE[:-1]
    PACK_WEIGHTS = False  # every weight the entry reads is the file's own bytes


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name:
            found = shutil.which(shlex.split(name)[0]) if name.strip() else None
            if found:
                return name
    return None


def _header_of(path: str) -> tuple[int, bytes]:
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        return length, f.read(length)


def _fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _data_crc(path: str, start: int) -> int:
    crc = 0
    with open(path, "rb") as f:
        f.seek(start)
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc & 0xFFFFFFFF


def _parse_sizes(graph, sizes: list | None) -> tuple[list, list]:
    """The graph's symbols in order of appearance, and each entry's sizes (checked)."""
    symbols: list[str] = []
    for value in graph.inputs:
        for d in value.type.shape:
            if not isinstance(d, int) and str(d) not in symbols:
                symbols.append(str(d))
    sets = list(sizes or [])
    if symbols and not sets:
        raise LibraryError(
            f"the graph has symbolic sizes ({', '.join(symbols)}): name the sizes to compile, "
            f"one entry per set, e.g. --sizes {symbols[0]}=1")
    if not symbols and sets and any(sets):
        raise LibraryError(f"the graph has no symbolic sizes; got sizes {sets}")
    if not symbols:
        return [], [{}]
    checked = []
    for entry in sets:
        if set(entry) != set(symbols):
            raise LibraryError(f"sizes {entry}: name every symbol of the graph, "
                               f"{', '.join(symbols)}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                   for v in entry.values()):
            raise LibraryError(f"sizes {entry}: each size must be an int >= 1")
        if entry in checked:
            raise LibraryError(f"sizes {entry} given twice")
        checked.append(dict(entry))
    return symbols, checked


def _constant_offsets(program: NativeGraph, loaded_graph, tensors: dict) -> list:
    """The byte offset in the file's data of each weight the entry reads: each must be a
    tensor stored in the file (same name, dtype, shape and bytes), never a value made at
    compile time."""
    by_name = {c.name: c.constant for c in loaded_graph.constants}
    offsets = []
    for value, array in zip(program.graph.constants, program.constants):
        stored = by_name.get(value.name)
        entry = tensors.get(value.name)
        if (stored is None or entry is None or not array.size or array.dtype != stored.dtype
                or array.shape != stored.shape
                or not np.array_equal(np.ascontiguousarray(array).reshape(-1).view(np.uint8),
                                      np.ascontiguousarray(stored).reshape(-1).view(np.uint8))):
            raise LibraryError(f"the entry reads %{value.name}, which is not a tensor stored "
                               f"in the file (the library reads its weights from the file)")
        offsets.append(entry["data_offsets"][0])
    return offsets


def _c_strings(items) -> str:
    return ", ".join(json.dumps(str(s)) for s in items) or "0"


def _c_ints(items) -> str:
    return ", ".join(str(int(i)) for i in items) or "0"


def compile_library(path: str, output: str, *, sizes: list | None = None,
                    prefix: str = "model", header: str | None = None) -> Library:
    """Compile the graph file at `path` to the shared library `output` (see the module
    docstring); the header goes to `header` (default: <prefix>.h beside output). `sizes`: for
    a graph with symbolic sizes, one {symbol: size} per entry to compile."""
    from ..ir.specialize import specialize
    from .budget import check_budget
    from .loaded import load

    if not isinstance(prefix, str) or not PREFIX.match(prefix):
        raise LibraryError(f"prefix must be a C identifier of at most 32 characters, "
                           f"got {prefix!r}")
    path, output = str(path), str(output)
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise LibraryError(f"cannot write {output}: the folder {folder} does not exist")
    program = load(path)
    if program.signature.seeded:
        raise LibraryError(f"{path} draws random numbers (exported with seed_input=True); "
                           f"the C library runs deterministic graphs only")
    graph = program.graph
    symbols, entry_sizes = _parse_sizes(graph, sizes)
    header_bytes, header_text = _header_of(path)
    tensors = {k: v for k, v in json.loads(header_text).items() if k != "__metadata__"}
    file_bytes = os.path.getsize(path)
    data_crc = _data_crc(path, 8 + header_bytes)
    stated = program.metadata.get("data_crc32")
    if stated is not None and stated != f"{data_crc:08x}":
        raise LibraryError(f"{path}: the data's CRC-32 {data_crc:08x} is not its data_crc32 "
                           f"{stated}")

    from ..codegen.llvm import pool, target
    from ..codegen.llvm.emit import symbol

    planned, modules, entry_names = [], [], []
    for i, entry in enumerate(entry_sizes):
        specialized = graph
        if entry:
            check_budget(graph, entry)
            specialized = specialize(graph, entry)
        try:
            plan = _Planned(specialized, f"ember_entry{i}")
        except Unsupported as why:
            raise LibraryError(f"{path} cannot be compiled to a library: {why}") from None
        planned.append(plan)
        modules.append(plan.llvm_ir)
        entry_names.append(symbol(plan.plan.name))
    has_pool = any(p.parallel for p in planned)
    gemm = next((p.gemm for p in planned if p.uses_blas), None)

    binding = target.llvm()
    merged = None
    for text in modules + ([pool.module_ir(binding.get_process_triple())] if has_pool else []):
        module = binding.parse_assembly(text)
        for item in [*module.functions, *module.global_variables]:
            if not item.is_declaration and item.name not in (*entry_names, *POOL_SYMBOLS):
                item.linkage = "internal"
        if merged is None:
            merged = module
        else:
            merged.link_in(module)
    objects = target.emit_shared_object(str(merged), keep=(*entry_names, *POOL_SYMBOLS))

    def dims(shape):
        return "{" + _c_ints(shape) + "}"

    inputs, outputs = graph.inputs, graph.outputs
    entries_c, error_tables = [], []
    for i, (plan, entry) in enumerate(zip(planned, entry_sizes)):
        formats = [m.replace("%", "%%").replace("{index}", "%lld") for m in plan.plan.errors]
        error_tables.append(f"static const char *const entry{i}_errors[] = "
                            f"{{{_c_strings(formats)}}};")
        offsets = _constant_offsets(plan, graph, tensors)
        in_dims = ", ".join(dims(v.type.shape) for v in plan.graph.inputs) or "{0}"
        out_dims = ", ".join(dims(v.type.shape) for v in plan.graph.outputs) or "{0}"
        entries_c.append(
            f"    {{{symbol(plan.plan.name)}, {int(plan.parallel)}, {len(offsets)}, "
            f"{{{_c_ints(entry[s] for s in symbols)}}}, {{{in_dims}}}, {{{out_dims}}}, "
            f"{{{_c_ints(offsets)}}}, {plan.error_word.offset}, entry{i}_errors}},")
    names_in = [name for name, _, _ in program.signature.inputs]
    names_out = [name for name, _, _ in program.signature.outputs]
    dtypes_in = [v.type.dtype.name for v in inputs]
    dtypes_out = [v.type.dtype.name for v in outputs]
    blas_declarations = ""
    sgemm = dgemm = "NULL"
    blas_threads = "(void)threads;"
    if gemm is not None:
        s_name, d_name = gemm.symbols
        blas_declarations = f"extern void {s_name}(void);\nextern void {d_name}(void);"
        sgemm, dgemm = f"(void *)&{s_name}", f"(void *)&{d_name}"
        setter = _blas_thread_setter(gemm.path)
        if setter:
            blas_declarations += f"\nextern void {setter}(int64_t);"
            # a convolution whose images the pool shares runs one small GEMM per image on
            # each thread: OpenBLAS then stays on one thread (as in graph_entry.py)
            shared = any(p.shared_convs for p in planned)
            blas_threads = f"{setter}({'1' if shared else 'threads'});"
    fields = dict(
        prefix=prefix, PREFIX=prefix.upper(), version=program.ember_version[:32],
        source=os.path.basename(path), library=os.path.basename(output),
        link_name=re.sub(r"^lib|\.so.*$", "", os.path.basename(output)),
        n_inputs=len(inputs), n_outputs=len(outputs), n_entries=len(planned),
        n_symbols=len(symbols),
        max_ndim=max([v.type.ndim for v in [*inputs, *outputs]] + [1]),
        max_constants=max([len(p.constants) for p in planned] + [1]),
        max_args=max(p.plan.n_args + 2 for p in planned),
        arena_bytes=max(p.arena_bytes for p in planned),
        file_bytes=file_bytes, header_bytes=header_bytes,
        header_hash=f"{_fnv1a(header_text):016x}", data_crc32=f"{data_crc:08x}",
        has_pool=int(has_pool),
        entry_declarations="\n".join(f"int64_t {n}(void **argv, int64_t threads);"
                                     for n in entry_names),
        error_tables="\n".join(error_tables),
        blas_declarations=blas_declarations, blas_threads=blas_threads,
        sgemm=sgemm, dgemm=dgemm,
        input_names=_c_strings(names_in), output_names=_c_strings(names_out),
        input_dtypes=_c_strings(dtypes_in), output_dtypes=_c_strings(dtypes_out),
        input_itemsizes=_c_ints(np.dtype(v.type.dtype.np).itemsize for v in inputs),
        output_itemsizes=_c_ints(np.dtype(v.type.dtype.np).itemsize for v in outputs),
        input_ndims=_c_ints(v.type.ndim for v in inputs),
        output_ndims=_c_ints(v.type.ndim for v in outputs),
        symbol_names=_c_strings(symbols), entries="\n".join(entries_c),
        compiled_sizes="; ".join(", ".join(f"{s}={e[s]}" for s in symbols)
                                 for e in entry_sizes) or "none",
    )
    header_path = header or os.path.join(os.path.dirname(os.path.abspath(output)),
                                         f"{prefix}.h")
    with open(header_path, "w") as f:
        f.write(HEADER.substitute(fields))
    return _link(output, header_path, prefix, objects, SOURCE.substitute(fields), gemm,
                 entry_sizes)


def _blas_thread_setter(path: str) -> str | None:
    import ctypes

    from .threads import _Blas

    library = ctypes.CDLL(path)
    return next((name for name in _Blas._SET if name.endswith("64_")
                 and getattr(library, name, None) is not None), None)


def _link(output: str, header_path: str, prefix: str, objects: bytes, source: str, gemm,
          entry_sizes: list) -> Library:
    blas = []
    if gemm is not None:
        folder, name = os.path.split(os.path.realpath(gemm.path))
        blas = [f"-L{folder}", f"-l:{name}", f"-Wl,-rpath,{folder}"]
    compiler = _compiler()
    stem = os.path.splitext(output)[0]
    if compiler is None:
        kept = [f"{stem}.o", f"{stem}.c"]
        with open(kept[0], "wb") as f:
            f.write(objects)
        with open(kept[1], "w") as f:
            f.write(source)
        command = ["cc", "-shared", "-fPIC", "-O2", f"-I{os.path.dirname(header_path)}",
                   "-o", output, kept[1], kept[0], *blas, "-lpthread", "-lm"]
        return Library(None, header_path, entry_sizes, kept,
                       "no C compiler (cc, gcc, clang or $CC) on this machine: the library was "
                       f"not linked; link it with: {shlex.join(command)}")
    with tempfile.TemporaryDirectory(prefix="ember-lib-") as work:
        obj = os.path.join(work, f"{prefix}_entries.o")
        with open(obj, "wb") as f:
            f.write(objects)
        c_file = os.path.join(work, f"{prefix}.c")
        with open(c_file, "w") as f:
            f.write(source)
        shutil.copy(header_path, os.path.join(work, f"{prefix}.h"))
        script = os.path.join(work, "exports.map")
        with open(script, "w") as f:
            f.write(f"{{ global: {prefix}_*; local: *; }};\n")
        temporary = os.path.join(os.path.dirname(os.path.abspath(output)),
                                 f".{os.path.basename(output)}.{os.getpid()}.tmp")
        command = [*shlex.split(compiler), "-shared", "-fPIC", "-O2", "-std=gnu11", "-o",
                   temporary, c_file, obj, *blas, "-lpthread", "-lm",
                   f"-Wl,--version-script={script}", "-Wl,-z,noexecstack"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise LibraryError(f"linking {output} failed ({shlex.join(command)}):\n"
                               f"{done.stderr.strip()[-4000:]}")
        os.replace(temporary, output)
    return Library(output, header_path, entry_sizes)


def parse_sizes(items: list) -> list:
    """--sizes arguments ("batch=1", "batch=8,seq=64") as one {symbol: size} per entry."""
    entries = []
    for item in items:
        entry = {}
        for part in item.split(","):
            name, sep, value = part.partition("=")
            if not sep or not name.strip() or not value.strip().isdigit():
                raise LibraryError(f"--sizes takes symbol=size[,symbol=size...], got {item!r}")
            entry[name.strip()] = int(value)
        entries.append(entry)
    return entries


def describe(result: Library) -> str:
    lines = []
    if result.library:
        lines.append(f"wrote {result.library} ({os.path.getsize(result.library)} bytes)")
    lines.append(f"wrote {result.header}")
    for kept in result.kept:
        lines.append(f"wrote {kept}")
    for i, entry in enumerate(result.entries):
        if entry:
            lines.append(f"  entry {i}: " + ", ".join(f"{k}={v}" for k, v in entry.items()))
    if result.note:
        lines.append(result.note)
    return "\n".join(lines)

