"""CompiledProgram: a graph run as fused native kernels and eager steps.

Built once per graph: the fusion pass groups the nodes (codegen/fusion.py), each group is
lowered to a kernel spec (codegen/lower.py), and all the kernels of the program are emitted
into one LLVM module, compiled once and cached on disk (codegen/llvm/cache.py), or, for the
cuda backend, into one CUDA source run through cupy. Nodes that no kernel can hold (matmul,
conv, indexing, ...) run their eager kernel, as Program does; a view runs only where something
outside the kernels needs it. Kernels are called as runtime/native.py says.

Memory planning: every intermediate a kernel writes gets a planned buffer. Buffers are shared
by values whose lifetimes do not overlap and are kept per thread across calls, so a call
neither page-faults fresh memory nor holds more than the peak of live intermediates. An output
the caller receives is a fresh array, the caller's own dropped output from the last call, or
(for a state the caller asked to be updated in place) that state's own array.

A CompiledProgram keeps no per-call state outside thread-local buffers, so threads may call
one at once.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
import time
from typing import NamedTuple

import numpy as np

from .._log import log
from ..codegen.fusion import Group, fusion_groups, summing_gemm
from ..codegen.llvm.cache import default_cache
from ..codegen.llvm.emit import emit_module, run_symbol, symbol
from ..codegen.lower import lower
from ..codegen.rewrites import (
    gather_gradient_as_select,
    reduced_dims_last,
    slice_gradients_as_cat,
    small_linear_as_reduction,
    split_linear_bias,
)
from ..ir.digraph import DiGraph, lexicographical_topological_sort
from ..ir.graph import Graph, Node, Value
from .cats import write_cats_in_place
from .kernels.nn import matmul_with_column_sum, matmul_with_row_sum
from .native import NativeKernel, NativeRun, data_pointer, load_pool
from .program import (
    EagerStep,
    Output,
    Program,
    Slots,
    constant_arrays,
    eager_step,
    run_eager_step,
)

# outputs of at least this size are recycled once the caller has dropped them (below it,
# malloc's own free lists already avoid fresh pages)
RECYCLE_MIN_BYTES = 1 << 20
# a cat of fused kernels' outputs is written by those kernels (runtime/cats.py); False keeps
# the eager cat, as before (for comparisons)
CATS_IN_PLACE = True


class Step(NamedTuple):
    """One step of a compiled program. kind "eager": `run` is the EagerStep of `node`;
    "native": `run` is a NativeKernel. (A call walks the schedule instead: (kind, run) pairs,
    where kind "run" is a NativeRun of consecutive kernels.)"""

    kind: str
    run: object
    node: Node | None


@dataclasses.dataclass(slots=True)
class KernelOutput:
    """A native kernel's output: the slot it goes to, its shape and numpy dtype, where its
    array comes from (`buffer`: None for a fresh array per call, an int for a planned buffer
    (set by _plan), ("input", position) for that graph input's own array (set by _donate)),
    and the graph value it is."""

    slot: int
    shape: tuple
    dtype: np.dtype
    buffer: object
    value: Value
    recycle: bool = False  # a fresh output large enough for _fresh's reuse (set by _link)

    def __iter__(self):  # unpacks as (slot, shape, dtype, buffer, value)
        return iter((self.slot, self.shape, self.dtype, self.buffer, self.value))


class Lowered(NamedTuple):
    """A unit of the fusion schedule: a Group lowered to a kernel spec that reads the values
    `ins` and writes `outs`, or a node that runs eagerly (spec, ins and outs None)."""

    unit: Group | Node
    spec: object
    ins: list | None
    outs: list | None


@dataclasses.dataclass
class _Build:
    """What the compile stages hand on to each other, kept only while a program is built."""

    shown: Graph  # the graph as captured (fn.graph): render() draws the fusion groups on it
    units: list = dataclasses.field(default_factory=list)  # groups and lone nodes, in order
    lowered: list = dataclasses.field(default_factory=list)  # Lowered, in the order they run
    slots: Slots | None = None
    runs: list = dataclasses.field(default_factory=list)  # kernels one native call runs


class CompiledProgram:
    """A graph compiled for the CPU: native kernels over planned buffers, eager steps between."""

    def __init__(self, graph: Graph, name: str = "graph", backend: str = "llvm",
                 donate: dict | None = None):
        if backend not in ("llvm", "cuda"):
            raise ValueError(f"unknown backend {backend!r}: expected 'llvm' or 'cuda'")
        self.name = name
        self.backend = backend
        # graph output position -> graph input position whose array the output may be written
        # into (a parameter's update written over the parameter): see _donate
        self.donate = dict(donate or {})
        self.fallback = Program(graph)  # for arrays the backend does not run on
        self.graph = graph.copy()  # rewritten for the backend; fn.graph stays as captured
        self._local = threading.local()
        self._cuda_functions = None  # compiled on the first call on a GPU
        build = _Build(shown=graph)
        for stage in self.PIPELINE:
            stage(self, build)
        log("fusion", self.describe())

    # -- the compile pipeline: each stage reads what the stages before it set ------------------

    def _rewrite(self, build: _Build) -> None:
        """Rewrite the graph for the CPU kernels: a small linear as a reduction, a linear's
        bias as its own add (which then fuses), the summed gradients of tiling slices as a
        cat, a reduction's dims moved last, a gather's one-per-line gradient as a select."""
        small_linear_as_reduction(self.graph)
        split_linear_bias(self.graph)
        slice_gradients_as_cat(self.graph)
        reduced_dims_last(self.graph)
        gather_gradient_as_select(self.graph)

    def _fuse(self, build: _Build) -> None:
        """Group the nodes for fusion (codegen/fusion.py), and set the groups on the shown
        graph, on its nodes where they exist, for graph.render() to draw."""
        graph = self.graph
        build.units = fusion_groups(graph, columns=self.backend == "llvm")
        groups = [u for u in build.units if isinstance(u, Group)]
        by_position = {id(n): k for k, n in enumerate(graph.nodes)}
        shown_nodes = {n.outputs[0].name: n for n in build.shown.nodes if n.outputs}
        build.shown.fusion_groups = [
            [shown_nodes[n.outputs[0].name] for n in g.nodes
             if n.outputs and n.outputs[0].name in shown_nodes and id(n) in by_position]
            for g in groups
        ]

    def _lower(self, build: _Build) -> None:
        """Lower every group to a kernel spec of the values it reads and the values someone
        outside it reads (codegen/lower.py)."""
        prefix = _safe(self.name)
        groups = [u for u in build.units if isinstance(u, Group)]
        grouped = {n for g in groups for n in g.nodes}
        outputs_of = {id(g): _group_outputs(g, self.graph, grouped) for g in groups}
        build.lowered = []
        for i, unit in enumerate(build.units):
            if isinstance(unit, Group):
                spec, ins, outs = lower(unit, outputs_of[id(unit)], f"{prefix}_k{i}")
                build.lowered.append(Lowered(unit, spec, ins, outs))
            else:
                build.lowered.append(Lowered(unit, None, None, None))

    def _order_and_prune(self, build: _Build) -> None:
        """Order the units by what each reads, then keep only the kernels and eager steps
        whose outputs someone reads (or that act on the world)."""
        needed = set(self.graph.outputs)
        keep = []
        for lowered in reversed(_ordered(build.lowered)):
            unit, spec, ins, outs = lowered
            if spec is not None:
                if not any(v in needed for v in outs):
                    continue  # every reader recomputes what this kernel would store
                needed.update(ins)
                keep.append(lowered)
            elif any(v in needed for v in unit.outputs) or unit.schema.side_effects:
                needed.update(x for x in unit.inputs if isinstance(x, Value))
                keep.append(lowered)
        keep.reverse()
        build.lowered = keep

    def _number_slots(self, build: _Build) -> None:
        """Number the values into slots (inputs, constants, then each step's outputs) and
        make the steps: an eager step per lone node, a NativeKernel per group."""
        graph = self.graph
        slots = build.slots = Slots(graph)
        self.constants = constant_arrays(graph)
        self.steps: list[Step] = []
        for unit, spec, ins, outs in build.lowered:
            if spec is None:
                self.steps.append(Step("eager", eager_step(unit, slots), unit))
                continue
            in_slots = [slots[v] for v in ins]
            out_info = [KernelOutput(slots.add(v), tuple(v.shape), v.dtype.np, None, v)
                        for v in outs]
            self.steps.append(Step("native", NativeKernel(spec, in_slots, out_info), None))
        self.outputs = tuple(slots[v] for v in graph.outputs)
        self.size = len(slots)
        self.n_inputs = len(graph.inputs)

    # a step's (A @ dY) and dY's sum over its leading dims run as one GEMM (below); the native
    # entry (graph_entry.py), which plans each node as itself, leaves them apart
    PAIRS_COLUMN_SUMS = True

    def _pair_column_sums(self, build: _Build) -> None:
        """Run each sum of a float tensor v over its leading dims (a linear layer's bias
        gradient) in the step of a matmul whose right operand is v as a matrix (the weight's
        gradient, A @ dY): the packed GEMM adds B's columns up as it packs them
        (matmul_with_column_sum), so a training step reads dY once for both. The pair runs
        where the matmul runs, so the sum's readers must all come after it."""
        if not (self.PAIRS_COLUMN_SUMS and self.backend == "llvm"):
            return
        slots = build.slots
        position = {id(step.node): k for k, step in enumerate(self.steps)
                    if step.kind == "eager"}
        reads: dict = {}  # slot -> positions of the steps that read it
        for k, step in enumerate(self.steps):
            ins = (step.run.inputs if step.kind == "native"
                   else [arg.slot for arg in step.run.args if arg.slot is not None])
            for slot in ins:
                reads.setdefault(slot, []).append(k)
        paired = {}  # matmul position -> (its new step, the sum's position)
        for k, step in enumerate(self.steps):
            found = _column_sum_pair(step, position) if step.kind == "eager" else None
            if found is None:
                continue
            m, kernel = found
            total = step.node.outputs[0]
            if m in paired or any(r <= m for r in reads.get(slots[total], ())):
                continue
            mm = self.steps[m]
            outs = mm.run.outs + (Output(slots[total], total.type.dtype.np),)
            pair = EagerStep(kernel, mm.run.args, {}, outs)
            paired[m] = (Step("eager", pair, mm.node), k)
        if not paired:
            return
        gone = {k for _, k in paired.values()}
        self.steps = [paired[k][0] if k in paired else step
                      for k, step in enumerate(self.steps) if k not in gone]
        log("fusion", f"{self.name}: {len(paired)} column sum(s) run in their GEMM")

    def _plan_memory(self, build: _Build) -> None:
        """Give the kernels' outputs their buffers (_plan, _donate); the specs as planned (an
        output written over an input marks the spec's aliased arguments). On the CPU, a cat
        of kernels' outputs is first written by those kernels in place (runtime/cats.py)."""
        self.cat_slots = set()
        if self.backend == "llvm" and CATS_IN_PLACE:
            graph_outputs = {build.slots[v] for v in self.graph.outputs}
            self.steps, self.cat_slots = write_cats_in_place(self.steps, graph_outputs)
        self.n_buffers = self._plan(build.slots)
        self.specs = [step.run.spec for step in self.steps if step.kind == "native"]

    def _emit(self, build: _Build) -> None:
        """The program's kernels as one CUDA source, or one LLVM module in which consecutive
        kernels also run from one native call (the batch-1 MLP: three kernels, one ctypes
        call)."""
        specs = self.specs
        self.llvm_ir = ""
        self.cuda_source = ""
        module_name = f"{_safe(self.name)}_kernels"
        if self.backend == "cuda":
            from ..codegen.cuda.emit import emit_source

            self.cuda_source = emit_source(specs, module_name) if specs else ""
            return
        build.runs = _consecutive_kernels(self.steps)
        if specs:
            self.llvm_ir = emit_module(
                specs, module_name,
                runs=[[(k.spec, k.parallel) for k in run] for run in build.runs])

    def _link(self, build: _Build) -> None:
        """Compile the LLVM module (cached on disk), bind each kernel to its function, and
        make the schedule a call walks: (kind, run) pairs of the steps, plain tuples for
        the hot loop, with each run of kernels in place of its kernels."""
        self.schedule = [(step.kind, step.run) for step in self.steps]
        for step in self.steps:  # the shapes are final here (cats.py changes some)
            if step.kind == "native":
                for output in step.run.outputs:
                    nbytes = math.prod(output.shape) * np.dtype(output.dtype).itemsize
                    output.recycle = nbytes >= RECYCLE_MIN_BYTES
        if not (self.specs and self.backend == "llvm"):
            return
        started = time.perf_counter()
        runs = build.runs
        if any(k.parallel for run in runs for k in run):
            load_pool()  # the runs link against its ember_parallel_for
        library = default_cache().load(self.llvm_ir)
        for step in self.steps:
            if step.kind == "native":
                step.run.bind(library)
        module_name = f"{_safe(self.name)}_kernels"
        for j, run in reversed(list(enumerate(runs))):
            first = next(i for i, (_, r) in enumerate(self.schedule) if r is run[0])
            self.schedule[first : first + len(run)] = [
                ("run", NativeRun(run, library, run_symbol(module_name, j)))]
        log("kernels", f"{self.name}: {len(self.specs)} kernel(s) ready in "
                       f"{(time.perf_counter() - started) * 1e3:.1f} ms")

    def _shortcut(self, build: _Build) -> None:
        """A program of one native kernel over fresh outputs (a composite's forward, softmax
        say: most of a small eager call's cost was this walk) gets a call of its own
        (`single`): the pointers of its inputs, its fresh outputs, one native call."""
        self.single = None
        if self.backend != "llvm" or len(self.schedule) != 1 or self.schedule[0][0] != "native":
            return
        kernel = self.schedule[0][1]
        if any(o.buffer is not None or o.recycle for o in kernel.outputs):
            return
        n_inputs, constants = self.n_inputs, self.constants
        sources = []  # per kernel input: (argument position, None) or (None, constant pointer)
        for index in kernel.inputs:
            if index < n_inputs:
                sources.append((index, None))
                continue
            constant = (constants[index - n_inputs]
                        if index < n_inputs + len(constants) else None)
            if not (isinstance(constant, np.ndarray) and constant.flags.c_contiguous):
                return
            sources.append((None, data_pointer(constant)))
        made = {o.slot: k for k, o in enumerate(kernel.outputs)}
        picks = []  # per program output: (True, k) the kernel's output k, (False, i) input i
        for i in self.outputs:
            if i in made:
                picks.append((True, made[i]))
            elif i < n_inputs:
                picks.append((False, i))
            else:
                return
        layouts = [(o.shape, o.dtype) for o in kernel.outputs]
        pointer_of, empty, contiguous = data_pointer, np.empty, np.ascontiguousarray

        def single(arrays):
            pointers = []
            held = []  # contiguous copies, alive until the kernel has run
            for position, pointer in sources:
                if position is not None:
                    a = arrays[position]
                    if not a.flags.c_contiguous:
                        a = contiguous(a)
                        held.append(a)
                    pointer = pointer_of(a)
                pointers.append(pointer)
            outs = [empty(shape, dtype) for shape, dtype in layouts]
            pointers += [pointer_of(o) for o in outs]
            kernel(pointers)
            return [outs[k] if mine else arrays[k] for mine, k in picks]

        self.single = single

    PIPELINE = (_rewrite, _fuse, _lower, _order_and_prune, _number_slots, _pair_column_sums,
                _plan_memory, _emit, _link, _shortcut)

    # -- memory planning ---------------------------------------------------------------------

    def _plan(self, slots: Slots) -> int:
        """Give kernel outputs that are intermediates a buffer id, sharing ids between values
        whose lifetimes do not overlap; returns the number of buffers."""
        graph = self.graph
        escaping = set(graph.outputs)
        # a view's result aliases its source: the source lives as long as the view, and
        # escapes with it
        alias_of: dict[int, int] = {}
        for kind, step, node in self.steps:
            if kind == "eager" and node.schema.view:
                for out in step.outs:
                    if step.args and step.args[0].slot is not None:
                        alias_of[out.slot] = step.args[0].slot
        outputs_slots = {slots[v] for v in escaping}

        def root(index):
            while index in alias_of:
                index = alias_of[index]
            return index

        escaping_roots = {root(i) for i in outputs_slots}
        last_use: dict[int, int] = {}
        for position, (kind, step, _) in enumerate(self.steps):
            reads = ([a.slot for a in step.args if a.slot is not None] if kind == "eager"
                     else step.inputs)
            for index in reads:
                last_use[root(index)] = position
            if kind == "eager":
                for out in step.outs:
                    r = root(out.slot)
                    last_use[r] = max(last_use.get(r, position), position)
        self._donate(slots, last_use, escaping_roots)
        # a cat's array that its parts' kernels write (write_cats_in_place): one buffer,
        # never one of a kernel's dead inputs, which the kernel reads at other elements
        cat_slots = self.cat_slots
        free: dict[tuple, list[int]] = {}
        n_buffers = 0
        releases: dict[int, list] = {}
        buffer_of: dict[int, int] = {}  # slot -> planned buffer
        for position, (kind, step, _) in enumerate(self.steps):
            if kind == "native":
                reusable = {buffer_of[i]: k for k, i in enumerate(step.inputs)
                            if i in buffer_of and last_use.get(i) == position}
                aliased, pairs = [], []
                for j, out in enumerate(step.outputs):
                    if out.slot in escaping_roots or out.buffer is not None:
                        continue
                    if out.slot in buffer_of:  # a later part of a cat written in place
                        out.buffer = buffer_of[out.slot]
                        continue
                    key = (out.shape, np.dtype(out.dtype).str)
                    arg = (None if out.slot in cat_slots else
                           self._in_place(step, j, key, reusable, releases.get(position, [])))
                    if arg is not None:
                        # written over a dead input that it reads only where it writes
                        buffer = buffer_of[step.inputs[arg]]
                        del reusable[buffer]
                        releases[position].remove((key, buffer))
                        aliased += [arg, len(step.inputs) + j]
                        pairs.append((arg, len(step.inputs) + j))
                    else:
                        ids = free.get(key)
                        buffer = ids.pop() if ids else n_buffers
                        if buffer == n_buffers:
                            n_buffers += 1
                    out.buffer = buffer
                    buffer_of[out.slot] = buffer
                    end = last_use.get(out.slot, position)
                    releases.setdefault(end, []).append((key, buffer))
                if aliased:
                    step.spec = dataclasses.replace(
                        step.spec, aliased=tuple(sorted(aliased)),
                        written_over=tuple(sorted(step.spec.written_over + tuple(pairs))))
            for key, buffer in releases.pop(position, []):
                free.setdefault(key, []).append(buffer)
        return n_buffers

    def _donate(self, slots: Slots, last_use, escaping_roots) -> None:
        """Write each donated output over its input's array where that is legal: the kernel
        that computes it is the input's last reader, reads the input only at the element it
        writes, and no other output of the kernel reads the input (the update of a parameter,
        stored over the parameter instead of copied back)."""
        graph = self.graph
        producer = {}
        for position, (kind, step, _) in enumerate(self.steps):
            if kind == "native":
                for j, out in enumerate(step.outputs):
                    producer[out.slot] = (position, step, j)
        donated = set()
        for out_pos, in_pos in self.donate.items():
            value, source = graph.outputs[out_pos], graph.inputs[in_pos]
            found = producer.get(slots[value])
            if found is None or value.type != source.type or in_pos in escaping_roots:
                continue
            position, step, j = found
            spec = step.spec
            # (a reduction reads its row before the row's stores: it may read the input)
            if last_use.get(in_pos, -1) > position or step.outputs[j].buffer is not None:
                continue
            store = next(s for s in spec.stores if s.access.arg == spec.n_inputs + j)
            args = [k for k, i in enumerate(step.inputs) if i == in_pos]
            if in_pos in donated or not self._read_where_written(spec, args, store):
                continue
            donated.add(in_pos)
            step.outputs[j].buffer = ("input", in_pos)
            aliased = set(spec.aliased) | set(args) | {spec.n_inputs + j}
            pairs = spec.written_over + tuple((a, spec.n_inputs + j) for a in args)
            step.spec = dataclasses.replace(spec, aliased=tuple(sorted(aliased)),
                                            written_over=tuple(sorted(pairs)))

    @classmethod
    def _read_where_written(cls, spec, args, store) -> bool:
        """Whether the kernel loads arguments `args` only at the store's own element, for
        values stored in the same loop as the store: the emitter computes all of a loop's
        values before its first store (codegen/llvm/emit.py), so an optimizer's update of m,
        v and the parameter from m and v may write m over m. A row-level store is written
        before the inner loop, which must then not read what it overwrote."""
        levels = spec.inner_level()
        inner = spec.inner_store(store, levels)
        others = [s for s in spec.stores
                  if s is not store and spec.inner_store(s, levels) != inner]
        return cls._reads_only_under(spec, args, store, others)

    @staticmethod
    def _reads_only_under(spec, args, store, others=None) -> bool:
        """Whether the kernel loads arguments `args` only at the store's own element and only
        for that store's value (no other store's value, of `others` where given, depends on
        them). Never for a column sum's store: the kernel zeroes its output first and reads
        it back at every row."""
        if store.accumulate:
            return False
        loads = {k for k, e in enumerate(spec.exprs) if e.op == "load" and e.attr.arg in args}
        for k in loads:
            a = spec.exprs[k].attr
            if a.strides != store.access.strides or a.offset != store.access.offset:
                return False
        for other in spec.stores if others is None else others:
            if other is store:
                continue
            stack, seen = [other.expr], set()
            while stack:
                k = stack.pop()
                if k in loads:
                    return False
                if k not in seen:
                    seen.add(k)
                    stack.extend(spec.exprs[k].args)
        return True

    @classmethod
    def _in_place(cls, step, j, key, reusable, releasing):
        """The input argument output j may overwrite, or None: a planned buffer of the same
        shape and dtype, dead after this kernel, read only at the element being written."""
        spec = step.spec
        # the emitter stores row-level values before the inner loop and several outputs one
        # after another: only a lone store, written in the inner loop right after its own
        # loads, can take the place of what it reads
        if len(spec.stores) != 1 or not any(spec.stores[0].access.strides[spec.outer:]):
            return None
        for buffer, arg in reusable.items():
            if (key, buffer) in releasing and cls._reads_only_under(spec, [arg], spec.stores[0]):
                return arg
        return None

    def _fresh(self, index: int, shape: tuple, dtype) -> np.ndarray:
        """An output array for the caller, of RECYCLE_MIN_BYTES or more: the array this thread
        returned from the same slot last call when nothing else holds it any more (the caller
        dropped it): reusing it skips the page faults of fresh memory, as a caching allocator
        does."""
        returned = getattr(self._local, "returned", None)
        if returned is None:
            returned = self._local.returned = {}
        previous = returned.get(index)
        # three references: the dict's, this function's and getrefcount's argument; a view
        # or a tensor the caller kept would hold a fourth
        if previous is not None and sys.getrefcount(previous) == 3 and previous.shape == shape:
            return previous
        out = returned[index] = np.empty(shape, dtype)
        return out

    def _buffers(self) -> list:
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = [None] * self.n_buffers
        return buffers

    # -- running -----------------------------------------------------------------------------

    @property
    def code(self) -> str:
        """The generated code: LLVM IR, or CUDA C for the cuda backend."""
        return self.cuda_source if self.backend == "cuda" else self.llvm_ir

    def __call__(self, xp, arrays):
        if self.backend == "cuda":
            return self._call_cuda(xp, arrays)
        if xp is not np:
            return self.fallback(xp, arrays)
        if self.single is not None:
            return self.single(arrays)
        values = [None] * self.size
        values[: self.n_inputs] = arrays
        values[self.n_inputs : self.n_inputs + len(self.constants)] = self.constants
        state = getattr(self._local, "state", None)  # this thread's (buffers, seen)
        if state is None:
            state = self._local.state = (self._buffers(), {})
        buffers, seen = state
        pointers = self._pointers
        for kind, step in self.schedule:
            if kind == "eager":
                run_eager_step(np, values, step)
            elif kind == "native":
                step(pointers(step, values, buffers, seen))
            else:  # a run of kernels: all their pointers, one native call
                step([p for kernel in step.kernels
                      for p in pointers(kernel, values, buffers, seen)])
        return [values[i] for i in self.outputs]

    def _pointers(self, kernel, values, buffers, seen) -> list:
        """The data pointers of a kernel's arguments: its inputs (made contiguous where they
        are not) and its outputs (fresh, planned or donated arrays, put in `values`).

        `seen` remembers, per slot, the last small contiguous input array and its pointer:
        the same array again (a parameter, call after call) skips the contiguity check and
        the pointer read. A numpy array's data never moves, and the entry holds the array."""
        pointer_of = data_pointer
        pointers = []
        for index in kernel.inputs:
            a = values[index]
            entry = seen.get(index)
            if entry is not None and entry[0] is a:
                pointers.append(entry[1])
                continue
            if not a.flags.c_contiguous:
                a = values[index] = np.ascontiguousarray(a)
                pointers.append(pointer_of(a))
                continue
            pointer = pointer_of(a)
            if a.nbytes <= REMEMBER_MAX_BYTES:
                seen[index] = (a, pointer)
            pointers.append(pointer)
        for output in kernel.outputs:
            index = output.slot
            shape = output.shape
            dtype = output.dtype
            buffer = output.buffer
            if buffer is None:
                out = self._fresh(index, shape, dtype) if output.recycle else np.empty(shape, dtype)
            elif buffer.__class__ is tuple:  # donated: over the input's own array
                out = values[buffer[1]]
                if not (out.flags.c_contiguous and out.flags.writeable):
                    # a copy of it: the kernel reads the input through this output's pointer
                    # (KernelSpec.written_over), so the output must start as the input
                    out = np.array(out, dtype, order="C")
            else:
                out = buffers[buffer]
                if out is None or out.shape != shape or out.dtype != dtype:
                    out = buffers[buffer] = np.empty(shape, dtype)
            values[index] = out
            pointers.append(pointer_of(out))
        return pointers

    def _call_cuda(self, xp, arrays):
        """Run on cupy arrays: the generated kernels through cupy.RawModule (NVRTC, cached by
        cupy on disk), eager steps through the cupy kernels."""
        if xp is np or not self.specs:
            return self.fallback(xp, arrays)
        functions = self._cuda_functions
        if functions is None:
            from ..codegen.cuda.emit import launch_shape

            started = time.perf_counter()
            module = xp.RawModule(code=self.cuda_source, options=("--std=c++17",))
            functions = {}
            for kind, kernel, _ in self.steps:
                if kind == "native":
                    fn = module.get_function(kernel.spec.name)
                    functions[kernel.spec.name] = (fn, launch_shape(kernel.spec, kernel.rows))
            self._cuda_functions = functions
            log("kernels", f"{self.name}: {len(functions)} CUDA kernel(s) compiled in "
                           f"{(time.perf_counter() - started) * 1e3:.1f} ms")
        values = [None] * self.size
        values[: self.n_inputs] = arrays
        values[self.n_inputs : self.n_inputs + len(self.constants)] = [
            xp.asarray(c) for c in self.constants
        ]
        for kind, step in self.schedule:
            if kind == "eager":
                run_eager_step(xp, values, step)
                continue
            args = []
            for index in step.inputs:
                a = values[index]
                if not a.flags.c_contiguous:
                    a = values[index] = xp.ascontiguousarray(a)
                args.append(a)
            for output in step.outputs:
                out = values[output.slot] = xp.empty(output.shape, output.dtype)
                args.append(out)
            fn, (blocks, threads) = functions[step.spec.name]
            fn((blocks,), (threads,), (*args, np.int64(0), np.int64(step.rows)))
        return [values[i] for i in self.outputs]

    # -- seeing what happened ----------------------------------------------------------------

    @property
    def kernel_count(self) -> int:
        return len(self.specs)

    def describe(self) -> str:
        eager = sum(s.kind == "eager" for s in self.steps)
        head = (f"{self.name}: {len(self.specs)} native kernel(s), {eager} eager step(s), "
                f"{self.n_buffers} planned buffer(s)")
        lines = [head]
        for kind, step, node in self.steps:
            if kind == "native":
                lines.append("  " + step.spec.dump().replace("\n", "\n  "))
            else:
                lines.append(f"  eager {node.op}")
        return "\n".join(lines)


def _ordered(units: list) -> list:
    """The units in an order where each runs after the units that write what it reads (the
    values a kernel loads, the inputs an eager node takes); ties keep the graph's order."""
    writer = {}
    for i, (unit, spec, ins, outs) in enumerate(units):
        for v in (outs if spec is not None else unit.outputs):
            writer[v] = i
    order = DiGraph()
    order.add_nodes_from(range(len(units)))
    for i, (unit, spec, ins, outs) in enumerate(units):
        reads = ins if spec is not None else [x for x in unit.inputs if isinstance(x, Value)]
        for v in reads:
            if v in writer and writer[v] != i:
                order.add_edge(writer[v], i)
    return [units[i] for i in lexicographical_topological_sort(order)]


def _column_sum_pair(step: Step, position: dict):
    """(the position of the eager matmul step that may compute this eager step's sum of v over
    its leading dims, its kernel; codegen/fusion.py's summing_gemm); None where there is
    none."""
    found = summing_gemm(step.node)
    if found is None or id(found[0]) not in position:
        return None
    matmul, kind = found
    return position[id(matmul)], (matmul_with_column_sum if kind == "column"
                                  else matmul_with_row_sum)


REMEMBER_MAX_BYTES = 1 << 22  # inputs whose pointer a program remembers (see _pointers)


def _consecutive_kernels(steps) -> list[list[NativeKernel]]:
    """The maximal runs of two or more kernels with no eager step between them."""
    runs, current = [], []
    for kind, step, _ in [*steps, Step("eager", None, None)]:
        if kind == "native":
            current.append(step)
            continue
        if len(current) >= 2:
            runs.append(current)
        current = []
    return runs


def _safe(name: str) -> str:
    return symbol(name)[:40] or "graph"


def _group_outputs(group: Group, graph: Graph, grouped: set) -> list[Value]:
    """The member values something outside the group reads (directly, or through views that
    lead outside), and the graph's outputs. A kernel that reads a recomputable member
    (Group.inline: computed from the graph's inputs alone) directly computes it again
    (codegen/lower.py), so that read needs no store: a backward's factors of the saved values
    alone (GELU's exp(-x^2 / 2), layer norm's rstd^3) were merged into the first kernel of
    their loop space and stored there, 4.7 MB a nanoGPT step that nothing loaded."""
    members = set(group.nodes)
    graph_outputs = set(graph.outputs)
    inline = group.inline

    def read_outside(value: Value) -> bool:
        if value in graph_outputs:
            return True
        for user in value.users:
            if user in members:
                continue
            if user.schema.view:  # views are never members: who reads the view?
                if any(read_outside(v) for v in user.outputs):
                    return True
                continue
            if user in grouped and value.node in inline:
                continue  # that kernel computes the value itself
            return True
        return False

    outs = []
    for node in group.nodes:
        for v in node.outputs:
            if read_outside(v):
                outs.append(v)
    return outs


def _environ_reader(name: str):
    """A reader of os.environ[name] or None, read at each call (a test or a user may set it).
    os.environ keeps its values in `_data` under encoded keys: a lookup there skips the
    encoding of the key (~0.4 us of an eager composite call's ~10); os.environ.get where
    that dict is missing."""
    data = getattr(os.environ, "_data", None)
    try:
        key = os.environ.encodekey(name)
        decode = os.environ.decodevalue
    except AttributeError:
        data = None
    if not isinstance(data, dict):
        return lambda: os.environ.get(name)

    def read():
        raw = data.get(key)
        return None if raw is None else decode(raw)

    return read


_compile_setting = _environ_reader("EMBER_COMPILE")


def native_enabled() -> bool:
    """EMBER_COMPILE=0 (or off, eager) runs graphs on the eager kernels only."""
    value = _compile_setting()
    return value is None or value.strip().lower() not in ("0", "off", "eager", "false", "no")


def build_program(graph: Graph, name: str = "graph", device=None, donate: dict | None = None):
    """The executor for a graph: native kernels (LLVM on the CPU, generated CUDA C on a GPU),
    or the eager kernels when compilation is switched off or fails (logged on the "kernels"
    channel, never silent)."""
    cpu = device is None or str(getattr(device, "type", device)) == "cpu"
    if not native_enabled():
        return Program(graph)
    try:
        return CompiledProgram(graph, name, backend="llvm" if cpu else "cuda",
                               donate=donate if cpu else None)
    except Exception as exc:  # noqa: BLE001  (a compiler failure must not stop the program)
        log("kernels", f"{name}: native compilation failed, running eager kernels: "
                       f"{type(exc).__name__}: {exc}")
        import warnings

        warnings.warn(f"ember: compiling {name} failed ({type(exc).__name__}: {exc}); it runs "
                      "on the eager kernels", RuntimeWarning, stacklevel=2)
        return Program(graph)
