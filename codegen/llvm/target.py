"""The host CPU as LLVM sees it: one target machine, the optimization pipeline, and the JIT
that loads object code.

Everything here is built once per process, lazily, so `import ember` does not start LLVM.
The target machine names the host CPU and its features, or the vectorizers stay on SSE2
(../shared/NOTES-backends.md); a cache entry built for another CPU is never loaded
(cache.py keys by `target_key()`).
"""

from __future__ import annotations

import ctypes
import functools
import threading

_lock = threading.Lock()


@functools.cache
def llvm():
    """llvmlite.binding, with the native target initialized."""
    from llvmlite import binding

    binding.initialize_native_target()
    binding.initialize_native_asmprinter()
    binding.initialize_native_asmparser()
    return binding


@functools.cache
def target_machine():
    """The process-wide target machine that optimizes and emits code."""
    return _create_target_machine()


def _create_target_machine():
    binding = llvm()
    target = binding.Target.from_triple(binding.get_process_triple())
    return target.create_target_machine(
        cpu=binding.get_host_cpu_name(),
        features=features(),
        opt=3,
        reloc="static",
        codemodel="jitdefault",
        jit=True,
    )


@functools.cache
def target_key() -> tuple:
    """What object code depends on besides its IR: triple, CPU, features, llvmlite version."""
    import llvmlite

    binding = llvm()
    return (
        binding.get_process_triple(),
        binding.get_host_cpu_name(),
        features(),
        llvmlite.__version__,
    )


@functools.cache
def features() -> str:
    """The host CPU's features as the target machines are given them (tuned_features)."""
    binding = llvm()
    return tuned_features(binding.get_host_cpu_features().flatten(),
                          binding.get_process_triple())


def tuned_features(flat: str, triple: str) -> str:
    """`flat` (LLVM's feature string), with `-prefer-256-bit` added on an x86 CPU with
    AVX-512. LLVM's tuning for most Intel AVX-512 CPUs (Skylake-X on, and the Rocket Lake
    that a KVM guest's model number names) prefers 256-bit vectors, against the frequency
    drop of the first ones, and then splits every 64-byte vector of the register tiles
    (tiles.py) in two: twice the accumulator registers, which spill. Whole, the digits CNN's
    batch-1 entry took 16.1 us of a thread's time against 18.3 (Intel Xeon, AVX-512)."""
    if triple.startswith(("x86_64", "i686", "i386")) and "+avx512f" in flat.split(","):
        return flat + ",-prefer-256-bit"
    return flat


def data_layout() -> str:
    return str(target_machine().target_data)


def optimize(module_ir: str):
    """Parse LLVM IR text and run the O3 pipeline with loop and SLP vectorization; returns the
    optimized llvmlite ModuleRef."""
    binding = llvm()
    module = binding.parse_assembly(module_ir)
    module.triple = binding.get_process_triple()
    module.data_layout = data_layout()
    module.verify()
    options = binding.create_pipeline_tuning_options(speed_level=3)
    options.loop_vectorization = True
    options.slp_vectorization = True
    options.loop_unrolling = True
    builder = binding.create_pass_builder(target_machine(), options)
    builder.getModulePassManager().run(module, builder)
    return module


def emit_object(module_ir: str) -> bytes:
    """Optimized object code for the host CPU."""
    with _lock:  # LLVM's pass pipeline and emitter share per-context state
        return target_machine().emit_object(optimize(module_ir))


def assembly(module_ir: str) -> str:
    """The host assembly of the optimized module (for reading, and for tests that check
    vectorization)."""
    with _lock:
        return target_machine().emit_assembly(optimize(module_ir))


class ObjectLibrary:
    """Object code loaded into a JIT engine: function addresses by name. The engine lives as
    long as the library (MCJIT cannot unload code; numba keeps engines alive the same way)."""

    def __init__(self, objects: bytes):
        binding = llvm()
        with _lock:
            # the engine takes ownership of its target machine and frees it with itself, so
            # each engine gets its own (the shared one must outlive every library)
            self._engine = binding.create_mcjit_compiler(
                binding.parse_assembly(""), _create_target_machine()
            )
            self._engine.add_object_file(binding.ObjectFileRef.from_data(objects))
            self._engine.finalize_object()
        self._functions = {}

    def address(self, name: str) -> int:
        address = self._engine.get_function_address(name)
        if not address:
            raise KeyError(f"no function {name!r} in this object code")
        return address

    def function(self, name: str, signature: ctypes._CFuncPtr):
        """The function `name` as a ctypes callable of type `signature` (a CFUNCTYPE)."""
        key = (name, signature)
        fn = self._functions.get(key)
        if fn is None:
            fn = self._functions[key] = signature(self.address(name))
        return fn


@functools.cache
def _shared_target_machine():
    """A target machine for position-independent object code (a shared library's), for the
    host CPU as the JIT's is."""
    binding = llvm()
    target = binding.Target.from_triple(binding.get_process_triple())
    return target.create_target_machine(
        cpu=binding.get_host_cpu_name(),
        features=features(),
        opt=3,
        reloc="pic",
        codemodel="default",
    )


def emit_shared_object(module_ir: str, keep: tuple = ()) -> bytes:
    """Optimized position-independent object code for the host CPU, for a shared library:
    every function and global the module defines, except those named in `keep`, made internal
    first, so that the objects of several modules link together without clashes."""
    binding = llvm()
    module = binding.parse_assembly(module_ir)
    for item in [*module.functions, *module.global_variables]:
        if not item.is_declaration and item.name not in keep:
            item.linkage = "internal"
    with _lock:
        return _shared_target_machine().emit_object(optimize(str(module)))
