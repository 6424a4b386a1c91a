"""NativeGraph: a graph with static sizes run as ONE native call.

CompiledProgram (compiled.py) runs a graph as a Python loop: fused kernels through ctypes one
by one, matmul, conv and pooling in numpy, arrays allocated per step. When every step of a
graph is a fused kernel or an extern op native code can run (linear and matmul as BLAS GEMMs,
conv2d as im2col and a product per image, max and average pooling, views of contiguous values),
NativeGraph plans it instead as one function (codegen/entry.py, emitted by
codegen/llvm/entry.py): every intermediate at a fixed offset of one arena (values whose
lifetimes do not overlap share bytes), GEMMs through numpy's own BLAS (runtime/blas.py). A
call checks its inputs, allocates the outputs and makes one ctypes call, which drops the GIL.

Convolutions with small weights multiply in LLVM register tiles (codegen/llvm/tiles.py); the
elementwise kernel after one (bias, batch norm, ReLU) then runs on the tiles while they are in
registers (Epilogue); runs of such convolutions and poolings go image by image (ImageChain),
the images shared with the native pool; one image's product shares its blocks of weight rows.

Each thread has its own arena, so many threads may call one NativeGraph at once; callers
inside entries at once split the thread budget between them (their GEMMs and pool kernels),
since OpenBLAS's thread count is one setting of the process.
`build_entry_program` picks it where it applies and otherwise builds what build_program
builds, saying which on the "kernels" log channel (EMBER_LOG=kernels); EMBER_NATIVE_ENTRY=0
switches it off.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import threading
import time
import warnings
import zlib
from time import perf_counter
from typing import NamedTuple

import numpy as np

from .._log import log
from ..codegen.entry import (
    AttentionCall,
    BiasCall,
    ConvCall,
    ConvWeightCall,
    CopyCall,
    EntryPlan,
    Epilogue,
    GatherCall,
    GemmCall,
    ImageChain,
    KernelCall,
    MaskOperand,
    PoolCall,
    Ref,
    Strided,
    StridedConvCall,
    WinogradWeightCall,
    conv_operand,
)
from ..codegen.llvm import winograd
from ..codegen.llvm.cache import default_cache
from ..codegen.llvm.emit import symbol
from ..codegen.llvm.entry import (
    SHARED_ITEMS_MIN,
    STACK_COLUMNS_MAX,
    depthwise_shared,
    shares_items,
    tiled_weight,
)
from ..codegen.llvm.tiles import columns_ld, epilogue_channel
from ..errors import EmberError, index_error
from ..ir.graph import Graph
from . import blas
from .compiled import (
    RECYCLE_MIN_BYTES,
    REMEMBER_MAX_BYTES,
    CompiledProgram,
    _safe,
    build_program,
    native_enabled,
)
from .kernels.pool import _divisor, _geometry
from .native import _pool as native_pool
from .native import data_pointer, load_pool
from .threads import before_blas, blas_single_threaded, callers, limit, threads

ALIGN = 64  # bytes: every arena value starts on a cache line
# views: each value is its root's bytes at an offset with strides (a _Layout), read in place
# by the calls that take strides and copied once (CopyCall) for the others
VIEWS = frozenset({"reshape", "view", "squeeze", "unsqueeze", "permute", "expand", "slice"})
FLOATS = ("float32", "float64")
# ops whose values need no float type: they move bytes
BYTE_OPS = frozenset({"index_select"})
# the native entry's type: ctypes gives the GIL away for the call (other Python threads run
# meanwhile), or, for the second, keeps it
ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64)
ENTRY_TYPE_HOLDING_GIL = ctypes.PYFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64)
# a call whose native part takes less keeps the GIL. Giving the GIL away and taking it back
# wakes a waiting thread each way, and on this 2-core KVM machine those wake-ups cost more
# than a short call gains from running beside another caller's Python: the digits CNN's
# batch-1 call (19 us native, 8 us Python) from two Python threads made 0.62x the calls of
# one thread when it gave the GIL away. Measured with a C function spinning for a set time
# behind 12 us of Python, two threads against one: 13 us 0.68x, 20 us 0.71x, 30 us 1.52x,
# 40 us 1.81x (keeping the GIL: 0.96-1.00x at each).
HOLD_GIL_BELOW_S = 25e-6
TIMED_CALLS = 16  # a call's native time is the least of this many (NativeGraph._timed)
# threads calling entries at once share the thread budget (threads._Callers); False gives
# every caller the whole budget, as before (benchmarks/entry_threads.py compares the two)
SHARE_BY_CALLERS = True
# runs of convolutions and poolings go image by image (ImageChain); False runs each call over
# every image in turn, as before (for comparisons)
IMAGE_CHAINS = True
# 3x3 stride-1 convolutions with a constant weight run as Winograd F(2x2, 3x3) products where
# codegen/llvm/winograd.py says they gain; False multiplies their im2col columns, as before
WINOGRAD = True


class _Layout(NamedTuple):
    """A view's elements: at root's bytes + offset elements, element i at sum(i_d * strides[d])
    further (strides in elements; 0 for a broadcast dim)."""

    root: int
    offset: int
    shape: tuple
    strides: tuple

    @property
    def contiguous(self) -> bool:
        return all(n == 1 or s == c for n, s, c in
                   zip(self.shape, self.strides, _contiguous_strides(self.shape)))


def _contiguous_strides(shape) -> tuple:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _collapse(shape, strides) -> tuple[tuple, tuple]:
    """The same elements in the same order over fewer dims: size-1 dims dropped, a dim merged
    into the one before it where that one's stride is its stride times its size."""
    dims = [(n, s) for n, s in zip(shape, strides) if n != 1] or [(1, 1)]
    merged = [dims[0]]
    for n, st in dims[1:]:
        pn, ps = merged[-1]
        if ps == st * n:
            merged[-1] = (pn * n, st)
        else:
            merged.append((n, st))
    return tuple(n for n, _ in merged), tuple(s for _, s in merged)


class Unsupported(Exception):
    """The graph has a step the native entry cannot run (the reason says which)."""


def entry_enabled() -> bool:
    """EMBER_NATIVE_ENTRY=0 (or off) runs graphs step by step (CompiledProgram)."""
    return os.environ.get("EMBER_NATIVE_ENTRY", "1").strip().lower() not in (
        "0", "off", "false", "no")


class NativeGraph(CompiledProgram):
    """A graph as one native function over one arena (see the module docstring)."""

    PAIRS_COLUMN_SUMS = False  # its steps are planned node by node

    execution = "native entry"
    # linear layers read their constant weight W (n, k) as W^T (k, n), copied once at build:
    # OpenBLAS's GEMM packs a B it need not transpose faster (the C library reads every
    # weight from its file, and keeps W: runtime/library.py)
    PACK_WEIGHTS = True

    def __init__(self, graph: Graph, name: str = "graph", packed: dict | None = None,
                 alias_inputs: bool = False):
        # W^T per weight, shared by the programs of one loaded file (one per batch size):
        # keyed by the weight's address, shape, strides and dtype
        self._packed_cache = {} if packed is None else packed
        # an output that is a view of an input must be that view, as eager's is (ember.script:
        # writing to it writes the input), so such a graph is refused; a loaded graph's
        # outputs are copies
        self.alias_inputs = alias_inputs
        self._source = graph
        super().__init__(graph, name)
        # the inputs given channels last (NHWC strides) -> the program that reads them so
        self._channels_last: dict[frozenset, CompiledProgram] = {}
        self._channels_last_lock = threading.Lock()

    def _check_supported(self, build) -> None:
        """Refuse (Unsupported) what the entry cannot run, before anything is planned."""
        if self.backend != "llvm":
            raise Unsupported("the native entry runs on the CPU only")
        for value in [*self.graph.inputs, *self.graph.constants,
                      *(v for n in self.graph.nodes for v in n.outputs)]:
            if not all(isinstance(d, int) for d in value.type.shape):
                raise Unsupported(f"%{value.name} has symbolic sizes {value.type.shape}")
        for kind, step, node in self.steps:
            if kind != "eager":
                continue
            op = node.op
            if op not in EXTERN and not (op in VIEWS and node.schema.view):
                raise Unsupported(f"no native form of {op}")
            if any(arg.slot is not None and arg.extra is not None for arg in step.args):
                raise Unsupported(f"{op} casts its inputs")
            types = [x.type for x in node.inputs if hasattr(x, "type")]
            types += [v.type for v in node.outputs]
            if op in VIEWS:
                if node.outputs[0].type.dtype != node.inputs[0].type.dtype:
                    raise Unsupported(f"{op} changes the dtype")
            elif op not in BYTE_OPS:
                if op == "attention" and node.attrs["mask"]:
                    types.remove(node.inputs[3].type)  # bool, or the scores' dtype
                    if node.inputs[3].type.dtype.name not in ("bool", *FLOATS):
                        raise Unsupported(f"attention with a {node.inputs[3].type} mask")
                dtypes = {t.dtype.name for t in types}
                if len(dtypes) != 1 or not dtypes <= set(FLOATS):
                    raise Unsupported(f"{op} on {sorted(dtypes)} (float32 or float64 only)")
            if any(math.prod(t.shape) == 0 for t in types):
                raise Unsupported(f"{op} on an empty tensor")
        self.gemm = blas.gemm()
        if self.gemm is None and any(k == "eager" and n.op in GEMM_OPS
                                     for k, _, n in self.steps):
            raise Unsupported("no BLAS GEMM found in this process (runtime/blas.py)")

    def _plan_layouts(self) -> None:
        """Each view's _Layout over its root (a value that is no view), found by running the
        view's own eager kernel on a numpy array with the root's strides over a probe buffer:
        a result inside the buffer is a view (self.views), one outside it was a copy (the view
        becomes a root that a CopyCall fills: self.copies)."""
        self.views: dict[int, _Layout] = {}
        self.copies: dict[int, _Layout] = {}
        probes: dict[int, np.ndarray] = {}
        for kind, step, node in self.steps:
            if kind != "eager" or node.op not in VIEWS:
                continue
            source = step.args[0].slot
            if source is None or any(a.slot is not None for a in step.args[1:]):
                raise Unsupported(f"{node.op} of a tensor argument")
            t = self.types[source]
            layout = self.views.get(source) or _Layout(source, 0, tuple(t.shape),
                                                       _contiguous_strides(t.shape))
            root_type = self.types[layout.root]
            dtype = np.dtype(root_type.dtype.np)
            buffer = probes.get(layout.root)
            if buffer is None:
                buffer = probes[layout.root] = np.empty(max(math.prod(root_type.shape), 1),
                                                        dtype)
            probe = np.lib.stride_tricks.as_strided(
                buffer[layout.offset:], layout.shape, [s * dtype.itemsize for s in layout.strides])
            result = step.kernel(np, probe, *(a.extra for a in step.args[1:]), **step.attrs)
            out = step.outs[0].slot
            shape = tuple(node.outputs[0].type.shape)
            if isinstance(result, np.ndarray) and result.shape == shape and _inside(result,
                                                                                    buffer):
                start = result.__array_interface__["data"][0] - buffer.ctypes.data
                self.views[out] = _Layout(layout.root, start // dtype.itemsize, shape,
                                          tuple(s // dtype.itemsize for s in result.strides))
            else:
                self.copies[out] = layout  # a reshape numpy copies: the source's elements

    def _plan_arena(self, build) -> None:
        """Place every value: inputs, outputs and constants at their own argv pointers,
        views at their root's bytes (or copied where a step needs them contiguous), each
        intermediate (and each step's scratch) at an arena offset shared with values whose
        lifetimes do not overlap."""
        graph = self.graph
        slots = build.slots
        self.n_buffers = 0
        types = {slots[v]: v.type for v in [*graph.inputs, *graph.constants]}
        for kind, step, node in self.steps:
            outs = step.outputs if kind == "native" else step.outs
            values = ([o.value for o in outs] if kind == "native" else node.outputs)
            for out, value in zip(outs, values):
                types[out.slot] = value.type
        self.types = types
        self._plan_layouts()
        views = self.views
        n_in, n_out, n_const = len(graph.inputs), len(graph.outputs), len(graph.constants)
        where: dict[int, Ref] = {}
        for i in range(n_in):
            where[i] = Ref(i)
        for k in range(n_const):
            where[n_in + k] = Ref(n_in + n_out + k)
        # views a step reads in place where it takes strides, else copied at the view's step
        for kind, step, node in self.steps:
            reads = step.inputs if kind == "native" else [a.slot for a in step.args]
            strided = STRIDED_READS.get(node.op, ()) if kind == "eager" else ()
            for position, slot in enumerate(reads):
                layout = views.get(slot)
                if layout is None or (kind == "eager" and node.op in VIEWS):
                    continue
                if not (layout.contiguous or (position in strided and _matrix_ld(layout))
                        or position in ANY_STRIDES.get(node.op if kind == "eager" else "", ())):
                    self.copies[slot] = views.pop(slot)
        for j, slot in enumerate(self.outputs):
            layout = views.get(slot)
            if layout is None:
                continue
            if self.alias_inputs and layout.root < n_in:
                raise Unsupported("an output is a view of an input")
            whole = (layout.offset == 0 and layout.contiguous
                     and math.prod(layout.shape) == math.prod(types[layout.root].shape))
            if (not whole or layout.root in where
                    or sum(views.get(s, _Layout(s, 0, (), ())).root == layout.root
                           for s in self.outputs) > 1 or layout.root in self.outputs):
                self.copies[slot] = views.pop(slot)

        def root(slot):
            layout = views.get(slot)
            return slot if layout is None else layout.root

        self.root = root
        output_roots = [root(s) for s in self.outputs]
        if len(set(output_roots)) != len(output_roots):
            raise Unsupported("two outputs share their data")
        for j, r in enumerate(output_roots):
            if r in where:
                raise Unsupported("an output is an input or a constant")
            where[r] = Ref(n_in + j)
        self._plan_packed(n_in, n_out, n_const)
        self.arena_arg = n_in + n_out + n_const + len(self.packed)
        self.epilogues = self._plan_epilogues()
        fused = {after for after, _ in self.epilogues.values()}
        self.chains = self._plan_chains()
        # lifetimes of the arena's values, in step positions (an epilogue's outputs are
        # written by its convolution: born a step early)
        born, dies, sizes = {}, {}, {}
        for position, (kind, step, node) in enumerate(self.steps):
            if kind == "eager" and node.op in VIEWS:
                out = step.outs[0].slot
                if out in views:
                    continue  # no work: its readers keep its root alive
                reads = [self.copies[out].root]
            else:
                reads = step.inputs if kind == "native" else [a.slot for a in step.args
                                                              if a.slot is not None]
            for s in reads:
                dies[root(s)] = position
            outs = step.outputs if kind == "native" else step.outs
            for out in outs:
                r = root(out.slot)
                if r not in where and r not in born:
                    born[r] = position - 1 if position in fused else position
                    dies.setdefault(r, position)
                    t = types[r]
                    sizes[r] = math.prod(t.shape) * np.dtype(t.dtype.np).itemsize
            scratch = self._scratch_bytes(kind, step, node)
            if scratch:
                key = ("scratch", position)
                born[key], dies[key], sizes[key] = position, position, scratch
        # a chain runs its steps image by image: what they touch lives through all of them
        for first, last, _ in self.chains:
            for kind, step, node in self.steps[first:last + 1]:
                slots = (list(step.inputs) + [o.slot for o in step.outputs] if kind == "native"
                         else [a.slot for a in step.args if a.slot is not None]
                         + [o.slot for o in step.outs])
                for slot in slots:
                    r = root(slot)
                    if r in born:
                        born[r], dies[r] = min(born[r], first), max(dies[r], last)
        offsets, total = _place(born, dies, sizes)
        # the tag word first (EntryPlan.tag_word), then the values, then what the entry
        # prepares once per arena: the Winograd transforms of constant weights
        offsets = {key: offset + ALIGN for key, offset in offsets.items()}
        total += ALIGN
        self.prepared: dict[int, tuple[Ref, WinogradWeightCall]] = {}
        for position, (kind, step, node) in enumerate(self.steps):
            slot = step.args[1].slot if kind == "eager" and node.op == "conv2d" else None
            if slot is None or slot in self.prepared or not _winograd(self, step, node):
                continue
            w = node.inputs[1].type
            o, c = w.shape[:2]
            out = Ref(self.arena_arg, total)
            self.prepared[slot] = (out, WinogradWeightCall(w.dtype.name, o, c, where[slot], out))
            size = winograd.weight_elements(o, c) * np.dtype(w.dtype.np).itemsize
            total += -(-size // ALIGN) * ALIGN
        for key, offset in offsets.items():
            if not isinstance(key, tuple):
                where[key] = Ref(self.arena_arg, offset)
        self.scratch = {key[1]: Ref(self.arena_arg, off) for key, off in offsets.items()
                        if isinstance(key, tuple)}
        self.where = where
        # the word where a failed index check leaves the index, after everything else
        self.error_word = Ref(self.arena_arg, -(-total // ALIGN) * ALIGN)
        self.arena_bytes = self.error_word.offset + ALIGN
        self.errors: list[str] = []
        self.specs = [step.spec for kind, step, _ in self.steps if kind == "native"]

    def _plan_packed(self, n_in: int, n_out: int, n_const: int) -> None:
        """W^T of each linear's constant weight (self.packed, in argv after the constants;
        self.packed_refs: the weight's slot -> its Ref)."""
        self.packed: list[np.ndarray] = []
        self.packed_refs: dict[int, Ref] = {}
        if not self.PACK_WEIGHTS:
            return
        for kind, step, node in self.steps:
            if kind != "eager" or node.op != "linear":
                continue
            slot = step.args[1].slot
            if slot is None or not n_in <= slot < n_in + n_const or slot in self.packed_refs:
                continue
            w = self.constants[slot - n_in]
            if w.ndim != 2 or w.dtype.name not in FLOATS:
                continue
            key = (w.__array_interface__["data"][0], w.shape, w.strides, w.dtype.str)
            packed = self._packed_cache.get(key)
            if packed is None:
                packed = np.ascontiguousarray(w.T)
                packed.setflags(write=False)
                packed = self._packed_cache.setdefault(key, packed)
            self.packed_refs[slot] = Ref(n_in + n_out + n_const + len(self.packed))
            self.packed.append(packed)

    def _scratch_bytes(self, kind, step, node) -> int:
        if kind == "eager" and node.op == "attention":
            batch, l, s = _attention_sizes(node)
            size = np.dtype(node.outputs[0].type.dtype.np).itemsize
            if math.prod(batch) >= SHARED_ITEMS_MIN and l * s * size <= STACK_COLUMNS_MAX:
                return 0  # shared with the pool, the scores on each thread's stack
            return l * s * size
        if kind == "eager" and node.op == "conv2d_backward_weight":
            from ..codegen.llvm.entry import weight_gradient_slot

            conv = _weight_geometry(node)
            return (weight_gradient_slot(conv) * max(1, conv.slots)
                    * np.dtype(node.outputs[0].type.dtype.np).itemsize)
        if kind != "eager" or node.op != "conv2d":
            return 0
        if _strided_conv(self, step, node):
            return _strided_conv_scratch(self, step, node)
        if _pointwise_conv(node):
            return 0
        return self._image_columns(step, node) * max(1, self._column_slots(step, node))

    def _image_columns(self, step, node) -> int:
        """The bytes of one image's columns (or Winograd scratch) of a groups-1 conv2d."""
        x, w = (a.type for a in node.inputs[:2])
        out = node.outputs[0].type
        if _winograd(self, step, node):
            return winograd.scratch_elements(_conv_geometry(node)) * np.dtype(x.dtype.np).itemsize
        depth = x.shape[1] * w.shape[2] * w.shape[3]
        ld = columns_ld(out.shape[2] * out.shape[3], x.dtype.name)
        return depth * ld * np.dtype(x.dtype.np).itemsize

    def _column_slots(self, step, node) -> int:
        """ConvCall.slots of a groups-1 conv2d: its images shared with the pool, each part's
        columns in a slot of the arena, where they are too large for a thread's stack."""
        from ..codegen.llvm.entry import column_slots

        return column_slots(node.inputs[0].type.shape[0], self._image_columns(step, node),
                            limit())

    def _emit_entry(self, build) -> None:
        """The plan's calls, and its module's LLVM IR."""
        from ..codegen.llvm.entry import (
            emit_entry_module,
            shares_images,
            shares_rows,
            tiles_conv,
        )

        placed = []  # (position of the step, call)
        fused = {after for after, _ in self.epilogues.values()}
        for position, (kind, step, node) in enumerate(self.steps):
            if position in fused:
                continue  # runs as its convolution's epilogue
            if kind == "native":
                refs = [self._ref(s) for s in step.inputs]
                refs += [self._ref(o.slot) for o in step.outputs]
                made = [KernelCall(step.spec, step.parallel, tuple(refs))]
            elif node.op in VIEWS:
                out = step.outs[0].slot
                made = [self._copy(self.copies[out], self.where[out])] \
                    if out in self.copies else []
            else:
                made = EXTERN[node.op](self, position, step, node)
            placed += [(position, call) for call in made]
        calls = self._chain_calls(placed)
        calls = [call for _, call in self.prepared.values()] + calls
        n_args = self.arena_arg + 1
        gemm = getattr(self, "gemm", None)
        name = f"{_safe(self.name)}_entry"
        # the tag: this plan's, from what it prepares and where (nonzero: 0 is "none")
        tag = zlib.crc32(repr((name, [call for _, call in self.prepared.values()])).encode())
        self.plan = EntryPlan(
            name=name, calls=tuple(calls), n_args=n_args,
            sgemm_arg=n_args, dgemm_arg=n_args + 1,
            blas_int_bits=gemm.int_bits if gemm is not None else 64,
            errors=tuple(self.errors), error_word=self.error_word,
            tag_word=Ref(self.arena_arg, 0), tag=tag << 1 | 1)
        # convolutions in register tiles (tiles.py) call no BLAS
        self.uses_blas = any(isinstance(c, (GemmCall, AttentionCall, ConvWeightCall))
                             or (isinstance(c, ConvCall) and not tiles_conv(c))
                             or (isinstance(c, StridedConvCall) and not c.depthwise)
                             for c in calls)
        # convolutions (attentions) whose images (heads) the pool shares run one small GEMM
        # per image on each thread: OpenBLAS itself then stays on one thread
        self.shared_convs = any((isinstance(c, ConvCall) and shares_images(c)
                                 and not tiles_conv(c))
                                or (isinstance(c, ConvWeightCall) and c.conv.slots > 1)
                                or (isinstance(c, AttentionCall) and c.scratch is None)
                                for c in calls)
        self.parallel = any(isinstance(c, ImageChain)
                            or (isinstance(c, ConvCall) and (shares_images(c) or shares_rows(c)))
                            or (isinstance(c, ConvWeightCall) and c.conv.slots > 1)
                            or (isinstance(c, AttentionCall) and c.scratch is None)
                            or (isinstance(c, KernelCall) and c.parallel)
                            or (isinstance(c, StridedConvCall) and c.depthwise
                                and depthwise_shared(c))
                            for c in calls)
        self.llvm_ir = emit_entry_module(self.plan)

    def _plan_epilogues(self) -> dict[int, tuple]:
        """{position of a convolution: (position of the fused kernel that finishes its product
        in registers, the kernel's channel dim)}: the kernel comes right after it, is the only
        reader of its output, and is elementwise over it with per-channel operands
        (tiles.epilogue_channel); the convolution multiplies in tiles (tiled_weight)."""
        readers: dict[int, list] = {}
        for position, (kind, step, node) in enumerate(self.steps):
            reads = (step.inputs if kind == "native"
                     else [a.slot for a in step.args if a.slot is not None])
            for slot in reads:
                readers.setdefault(slot, []).append(position)
        found = {}
        for position, (kind, step, node) in enumerate(self.steps[:-1]):
            if (kind != "eager" or node.op != "conv2d" or _pointwise_conv(node)
                    or _strided_conv(self, step, node)):  # (a StridedConvCall: no epilogue)
                continue
            out = step.outs[0].slot
            after_kind, after, _ = self.steps[position + 1]
            if (after_kind != "native" or readers.get(out) != [position + 1]
                    or out in self.outputs or out in self.views or out in self.copies
                    or list(after.inputs).count(out) != 1 or len(after.outputs) != 1):
                continue
            if after.outputs[0].slot in self.views:
                continue
            n, o, *hw = node.outputs[0].type.shape
            w = node.inputs[1].type
            if not tiled_weight(o, math.prod(w.shape[1:]), w.dtype.name):
                continue  # BLAS writes the product to memory: the kernel runs after it
            channel = epilogue_channel(after.spec, list(after.inputs).index(out), n, o,
                                       math.prod(hw))
            if channel is not None:
                found[position] = (position + 1, channel)
        return found

    def _chain_calls(self, placed: list) -> list:
        """The calls, each chain's made one ImageChain; `placed`: (step position, call)."""
        calls, chains = [], list(self.chains)
        for position, call in placed:
            if chains and position > chains[0][1]:
                chains.pop(0)
            if chains and chains[0][0] <= position:
                if not isinstance(call, (ConvCall, PoolCall)):
                    raise AssertionError(f"{type(call).__name__} in an image chain")
                if calls and isinstance(calls[-1], ImageChain) and \
                        calls[-1].first == chains[0][0]:
                    calls[-1] = dataclasses.replace(calls[-1], calls=(*calls[-1].calls, call))
                else:
                    calls.append(ImageChain(chains[0][2], (call,), chains[0][0]))
            else:
                calls.append(call)
        return calls

    def _plan_chains(self) -> list[tuple[int, int, int]]:
        """[(first position, last position, images)]: runs of steps that work image by image
        (ImageChain): convolutions in register tiles whose columns fit a thread's stack,
        their epilogues, max and average poolings of 4-d values; the same number of images,
        at least two such steps, each reading what another wrote only as it was written
        (no view between them)."""
        if not IMAGE_CHAINS:
            return []
        epilogue_of = {after: conv for conv, (after, _) in self.epilogues.items()}
        chains, current = [], None

        def close():
            if current is not None and current["work"] >= 2:
                chains.append((current["first"], current["last"], current["n"]))

        for position, (kind, step, node) in enumerate(self.steps):
            images, reads, writes = self._chain_step(position, kind, step, node, epilogue_of)
            joins = (images is not None and current is not None
                     and current["last"] == position - 1 and images in (0, current["n"])
                     and not any(self.root(s) in current["written"] and s in self.views
                                 for s in reads))
            if position in epilogue_of and joins:
                current["written"] |= {self.root(s) for s in writes}
                current["last"] = position
                continue
            if not joins:
                close()
                current = None
                if not images:
                    continue
                current = {"first": position, "n": images, "work": 0, "written": set()}
            if any(self.root(s) in current["written"] for s in reads[1:]):
                close()  # a weight or an operand written by the chain: start again here
                current = {"first": position, "n": images, "work": 0, "written": set()}
            current["written"] |= {self.root(s) for s in writes}
            current["last"] = position
            current["work"] += 1
        close()
        return chains

    def _chain_step(self, position, kind, step, node, epilogue_of):
        """(images or None, slots read (the image operand first), slots written) of a step
        an ImageChain can take: 0 images for an epilogue (it takes its convolution's)."""
        if position in epilogue_of:
            return 0, list(step.inputs), [o.slot for o in step.outputs]
        if kind != "eager" or node.op not in ("conv2d", "max_pool2d", "avg_pool2d"):
            return None, [], []
        x = node.inputs[0].type
        if x.ndim != 4 or x.shape[0] < 2:
            return None, [], []
        reads = [a.slot for a in step.args if a.slot is not None]
        writes = [step.outs[0].slot]
        if node.op == "conv2d":
            w = node.inputs[1].type
            if _pointwise_conv(node) or _strided_conv(self, step, node):
                return None, [], []
            if not tiled_weight(w.shape[0], math.prod(w.shape[1:]), w.dtype.name):
                return None, [], []
            if self._scratch_bytes(kind, step, node) > STACK_COLUMNS_MAX:
                return None, [], []
            if position in self.epilogues:
                after = self.epilogues[position][0]
                writes = [o.slot for o in self.steps[after][1].outputs]
        return x.shape[0], reads, writes

    def _ref(self, slot: int) -> Ref:
        """Where a contiguous value starts."""
        layout = self.views.get(slot)
        if layout is None:
            return self.where[slot]
        assert layout.contiguous, f"%{slot} is read in place but is not contiguous"
        return self._at(layout)

    def _at(self, layout: _Layout) -> Ref:
        base = self.where[layout.root]
        itemsize = np.dtype(self.types[layout.root].dtype.np).itemsize
        return Ref(base.arg, base.offset + layout.offset * itemsize)

    def _layout(self, slot: int) -> _Layout:
        layout = self.views.get(slot)
        if layout is None:
            shape = tuple(self.types[slot].shape)
            return _Layout(slot, 0, shape, _contiguous_strides(shape))
        return layout

    def _copy(self, layout: _Layout, target: Ref) -> CopyCall:
        shape, strides = _collapse(layout.shape, layout.strides)
        return CopyCall(self.types[layout.root].dtype.name, shape, strides, self._at(layout),
                        target)

    def error(self, message: str) -> int:
        """The number the entry returns when the check with this message fails."""
        self.errors.append(message)
        return len(self.errors)

    def _link_entry(self, build) -> None:
        started = time.perf_counter()
        if self.parallel:
            load_pool()
        library = default_cache().load(self.llvm_ir)
        self._library = library  # the code lives as long as the program
        self._entry = library.function(symbol(self.plan.name), ENTRY_TYPE)
        # the same function called with the GIL held, for calls too short to give it away
        self._entry_holding_gil = library.function(symbol(self.plan.name),
                                                   ENTRY_TYPE_HOLDING_GIL)
        # the native time of a call (_timed): none known yet, so the first calls keep the GIL
        self._native_s, self._least_s, self._counted = 0.0, math.inf, 0
        self.schedule = []
        graph = self.graph
        # dtype objects: a call compares them with its arrays' (a numpy type converts each time)
        self.input_specs = [(tuple(v.type.shape), np.dtype(v.type.dtype.np))
                            for v in graph.inputs]
        self.output_specs = [(tuple(v.type.shape), np.dtype(v.type.dtype.np))
                             for v in graph.outputs]
        # outputs large enough that a fresh array's page faults cost more than its values:
        # the caller's dropped array from the last call is reused (CompiledProgram._fresh)
        self.recycled = any(math.prod(shape) * dtype.itemsize >= RECYCLE_MIN_BYTES
                            for shape, dtype in self.output_specs)
        self.constants = [np.ascontiguousarray(c) for c in self.constants]
        self.argv_type = ctypes.c_void_p * (self.plan.n_args + 2)
        self.first_output_arg = len(self.input_specs)
        log("kernels", f"{self.name}: one native entry ({len(self.plan.calls)} calls, "
                       f"{len(self.specs)} kernel(s), arena {self.arena_bytes} bytes) ready in "
                       f"{(time.perf_counter() - started) * 1e3:.1f} ms")

    PIPELINE = (CompiledProgram._rewrite, CompiledProgram._fuse, CompiledProgram._lower,
                CompiledProgram._order_and_prune, CompiledProgram._number_slots,
                _check_supported, _plan_arena, _emit_entry, _link_entry)

    # -- running -----------------------------------------------------------------------------

    def _thread_state(self):
        """This thread's argv array (constants, arena and BLAS pointers filled in once), its
        arena, and per input the array whose pointer argv holds (see __call__)."""
        state = getattr(self._local, "state", None)
        if state is None:
            argv = self.argv_type()
            n_in, n_out = len(self.input_specs), len(self.output_specs)
            for k, c in enumerate(self.constants):
                argv[n_in + n_out + k] = data_pointer(c) if c.size else None
            for j, p in enumerate(self.packed):
                argv[n_in + n_out + len(self.constants) + j] = data_pointer(p)
            arena = np.empty(self.arena_bytes, np.uint8)
            arena[:8] = 0  # the tag word: nothing prepared yet
            argv[self.arena_arg] = data_pointer(arena)
            gemm = getattr(self, "gemm", None)
            if gemm is not None:
                argv[self.plan.sgemm_arg] = gemm.sgemm
                argv[self.plan.dgemm_arg] = gemm.dgemm
            state = self._local.state = (argv, arena, [None] * n_in)
        return state

    def __call__(self, xp, arrays):
        if xp is not np:
            return self.fallback(xp, arrays)
        state = getattr(self._local, "state", None)
        argv, _, held = state if state is not None else self._thread_state()
        if len(arrays) != len(held):
            raise EmberError(f"{self.name}: expected {len(self.input_specs)} inputs, "
                             f"got {len(arrays)}")
        # an input that is the very array this thread's last call took (a model's weights,
        # call after call) was checked then, and argv still holds its pointer: a numpy
        # array's data never moves, and `held` keeps it alive. (Its shape is the callers' to
        # check: ember.script's guards and LoadedProgram do, every call.)
        for a, last in zip(arrays, held):
            if a is not last:
                return self._call_new(argv, held, arrays)
        return self._run_entry(argv)

    def release_inputs(self) -> None:
        """Drop this thread's references to the last call's inputs, for a caller whose inputs
        are fresh arrays call after call (runtime/conv_entry.py's eager convolutions): they
        are freed with the caller's tensors, and the next call checks its inputs anew."""
        state = getattr(self._local, "state", None)
        if state is not None:
            held = state[2]
            for i in range(len(held)):
                held[i] = None

    def _call_new(self, argv, held, arrays):
        """A call with an input array other than the last call's: every input checked, its
        pointer put in argv."""
        nhwc = frozenset(i for i, (a, last, (shape, dtype))
                         in enumerate(zip(arrays, held, self.input_specs))
                         if a is not last and _channels_last(a) and a.shape == shape
                         and a.dtype == dtype)
        if nhwc:
            return self._nhwc_program(nhwc)(np, [
                a.transpose(0, 2, 3, 1) if i in nhwc else a for i, a in enumerate(arrays)])
        copies = []  # arrays made for this call: alive until it returns
        for i, (a, (shape, dtype)) in enumerate(zip(arrays, self.input_specs)):
            if a is held[i]:
                continue
            given = a
            if a.__class__ is not np.ndarray or a.shape != shape or a.dtype != dtype:
                a = np.asarray(a)
                if a.shape != shape or a.dtype != dtype:
                    raise EmberError(
                        f"{self.name}: input {i} must be {np.dtype(dtype).name}{list(shape)}, "
                        f"got {a.dtype.name}{list(a.shape)}")
            if not a.flags.c_contiguous:
                a = np.ascontiguousarray(a)
            argv[i] = data_pointer(a)
            if a is given and a.nbytes <= REMEMBER_MAX_BYTES:
                held[i] = a
            else:  # a copy: the next call copies again (the original may change meanwhile)
                held[i] = None
                copies.append(a)
        return self._run_entry(argv)

    def _run_entry(self, argv):
        """Fresh outputs (the caller's to keep: no later call writes them), then the one
        native call, with this caller's share of the threads."""
        if self.recycled:
            outputs = [self._fresh(j, shape, dtype)
                       for j, (shape, dtype) in enumerate(self.output_specs)]
        else:
            outputs = [np.empty(shape, dtype) for shape, dtype in self.output_specs]
        j = self.first_output_arg
        for out in outputs:
            argv[j] = data_pointer(out)
            j += 1
        # every caller inside an entry counts (threads._Callers): one whose entry calls BLAS
        # takes its share of the threads for its GEMMs; a pool-only entry offers the pool the
        # whole budget, since a job another caller holds just makes it run its own rows
        inside = callers.enter() if SHARE_BY_CALLERS else 1
        # a call shorter than HOLD_GIL_BELOW_S keeps the GIL (_timed)
        entry = self._entry_holding_gil if self._native_s < HOLD_GIL_BELOW_S else self._entry
        started = perf_counter()
        try:
            if self.uses_blas:
                status = self._blas_entry(entry, argv, inside)
            elif self.parallel:
                status = entry(argv, native_pool.threads_of(threads()))
            else:
                status = entry(argv, 1)
        finally:
            if SHARE_BY_CALLERS:
                callers.leave()
        self._timed(perf_counter() - started)
        if status:
            self._raise(status)
        return outputs

    def _timed(self, seconds: float) -> None:
        """Count one call's time. The native time is the least of TIMED_CALLS calls: a
        call's time also holds the waits for the GIL (given away, or taken by another thread
        at a bytecode boundary), and some call of a run of them has none. (Racing callers
        may each write the counts: they only pick when to look again.)"""
        least = self._least_s
        self._least_s = seconds if seconds < least else least
        self._counted += 1
        if self._counted >= TIMED_CALLS:
            self._native_s, self._least_s, self._counted = self._least_s, math.inf, 0

    def _blas_entry(self, entry, argv, inside: int) -> int:
        """The native call of an entry that calls BLAS, with this caller's share of the
        thread budget: its GEMMs with OpenBLAS set to that many threads, its pool kernels
        over as many."""
        share = callers.share(inside) if SHARE_BY_CALLERS else threads()
        if self.shared_convs:
            blas_single_threaded()
        else:
            before_blas(share)
        return entry(argv, native_pool.threads_of(share) if self.parallel else 1)

    def _nhwc_program(self, inputs: frozenset):
        """The program of this graph whose `inputs` are given NHWC (a channels-last array's
        bytes as they lie) and permuted to NCHW inside, where a conv reads them in place
        (StridedConvCall); built on the first such call, then kept."""
        program = self._channels_last.get(inputs)
        if program is None:
            with self._channels_last_lock:
                program = self._channels_last.get(inputs)
                if program is None:
                    graph = _nhwc_inputs(self._source, inputs)
                    name = f"{self.name}_channels_last"
                    try:
                        program = NativeGraph(graph, name, self._packed_cache,
                                              self.alias_inputs)
                    except Unsupported as why:
                        log("kernels", f"{name}: runs step by step: {why}")
                        program = build_program(graph, name)
                    self._channels_last[inputs] = program
        return program

    def _raise(self, status: int):
        _, arena, _ = self._thread_state()
        offset = self.error_word.offset
        value = int(arena[offset:offset + 8].view(np.int64)[0])
        raise index_error(self.plan.errors[status - 1].format(index=value))

    def describe(self) -> str:
        lines = [f"{self.name}: one native entry, {len(self.specs)} native kernel(s), arena "
                 f"{self.arena_bytes} bytes"]
        for call in self.plan.calls:
            if isinstance(call, KernelCall):
                lines.append("  " + call.spec.dump().replace("\n", "\n  "))
            else:
                lines.append(f"  {type(call).__name__} {_brief(call)}")
        return "\n".join(lines)


def _brief(call) -> str:
    if isinstance(call, ImageChain):
        return f"{call.n} images, each through: " + "; ".join(
            f"{type(c).__name__} {_brief(c)}" for c in call.calls)
    if isinstance(call, AttentionCall):
        return (f"{call.dtype} {list(call.batch)} x ({call.l}x{call.e} @ {call.e}x{call.s}) "
                f"{'causal ' if call.causal else ''}@ {call.s}x{call.ev}")
    if isinstance(call, CopyCall):
        return f"{call.dtype} {list(call.shape)} strides {list(call.strides)}"
    if isinstance(call, GatherCall):
        return f"{call.count} of {call.outer}x{call.rows} rows of {call.inner}"
    if isinstance(call, GemmCall):
        return f"{call.dtype} {call.batch}x({call.m}x{call.k} @ {call.k}x{call.n})"
    if isinstance(call, ConvCall):
        finish = f" then {call.epilogue.spec.name} in registers" if call.epilogue else ""
        method = " as Winograd F(2x2, 3x3) products" if call.winograd else ""
        return (f"{call.dtype} n{call.n} {call.c}->{call.o} {call.h}x{call.w} "
                f"k{call.kernel} s{call.stride} p{call.padding}{method}{finish}")
    if isinstance(call, ConvWeightCall):
        c = call.conv
        parts = f", {c.slots} parts" if c.slots > 1 else ""
        return (f"{c.dtype} n{c.n} gradient of ({c.o}, {c.c}, {c.kernel[0]}, {c.kernel[1]}) "
                f"over {c.h}x{c.w} s{c.stride} p{c.padding}{parts}")
    if isinstance(call, WinogradWeightCall):
        return f"{call.dtype} ({call.o}, {call.c}, 3, 3) -> (16, {call.o}, {call.c}), once"
    if isinstance(call, StridedConvCall):
        return (f"{call.dtype} n{call.n} {call.c}->{call.o} groups {call.groups} "
                f"{call.h}x{call.w} strides {list(call.x_strides)} k{call.kernel} "
                f"s{call.stride} p{call.padding}{' depthwise' if call.depthwise else ''}")
    if isinstance(call, PoolCall):
        return f"{call.kind} {call.dtype} {call.rows}x{call.h}x{call.w} -> {call.out_hw}"
    return f"{call.dtype} {call.rows}x{call.cols}"


def _place(born: dict, dies: dict, sizes: dict) -> tuple[dict, int]:
    """Arena offsets: the largest values first, each at the lowest aligned offset where it
    overlaps no placed value that is alive at the same time. Returns (offsets, total bytes)."""
    placed = []  # (offset, end, born, dies)
    offsets = {}
    total = 0
    for key in sorted(sizes, key=lambda k: (-sizes[k], born[k], str(k))):
        size = -(-sizes[key] // ALIGN) * ALIGN
        lo, hi = born[key], dies[key]
        clashes = sorted((o, e) for o, e, b, d in placed if b <= hi and lo <= d)
        offset = 0
        for o, e in clashes:
            if offset + size <= o:
                break
            offset = max(offset, e)
        placed.append((offset, offset + size, lo, hi))
        offsets[key] = offset
        total = max(total, offset + size)
    return offsets, total


def _channels_last(a) -> bool:
    """Whether a is a 4-D numpy array whose bytes lie NHWC (torch's channels_last: shape
    NCHW, channels the fastest dim), not also NCHW contiguous."""
    if a.__class__ is not np.ndarray or a.ndim != 4 or a.flags.c_contiguous:
        return False
    return a.transpose(0, 2, 3, 1).flags.c_contiguous


def _nhwc_inputs(graph: Graph, inputs: frozenset) -> Graph:
    """A copy of graph whose inputs at the positions `inputs` are (n, h, w, c), each
    permuted to the (n, c, h, w) the graph computes on before its first node."""
    graph = graph.copy()
    first = graph.nodes[0] if graph.nodes else None
    for i in sorted(inputs):
        old = graph.inputs[i]
        n, c, h, w = old.type.shape
        new = graph.add_input(type(old.type)((n, h, w, c), old.type.dtype))
        graph.inputs.pop()
        graph.inputs[i] = new
        if first is None:
            permuted = graph.add_node("permute", [new], {"dims": [0, 3, 1, 2]}).outputs[0]
        else:
            with graph.inserting_before(first):
                permuted = graph.add_node("permute", [new], {"dims": [0, 3, 1, 2]}).outputs[0]
        graph.replace_all_uses(old, permuted)
    return graph


def _inside(result: np.ndarray, buffer: np.ndarray) -> bool:
    """Whether every element of result lies in buffer's bytes (so it is a view of it)."""
    start = result.__array_interface__["data"][0]
    low = start + sum(min(0, (n - 1) * s) for n, s in zip(result.shape, result.strides))
    high = start + sum(max(0, (n - 1) * s) for n, s in zip(result.shape, result.strides))
    base = buffer.ctypes.data
    return base <= low and high + result.itemsize <= base + buffer.nbytes


def _matrix_ld(layout: _Layout) -> int | None:
    """The leading dimension of the last two dims read as a row-major matrix in place
    (columns contiguous, rows at least a row apart), None where BLAS cannot read them."""
    rows, cols = layout.shape[-2:]
    row_stride, col_stride = layout.strides[-2:]
    if cols > 1 and col_stride != 1:
        return None
    if rows == 1:
        return max(cols, 1)
    return row_stride if row_stride >= max(cols, 1) else None


def _attention_sizes(node) -> tuple[tuple, int, int]:
    out = node.outputs[0].type
    return tuple(out.shape[:-2]), out.shape[-2], node.inputs[1].type.shape[-2]


def _pointwise_conv(node) -> bool:
    w = node.inputs[1].type
    a = node.attrs
    return (w.shape[2:] == (1, 1) and tuple(a["stride"]) == (1, 1)
            and tuple(a["padding"]) == (0, 0))


# -- the extern ops: each gives the calls that run its node ------------------------------------


def _linear(program: NativeGraph, position, step, node):
    x, w = node.inputs[0].type, node.inputs[1].type
    if w.ndim != 2 or x.ndim < 1 or len(node.inputs) > 3:
        raise Unsupported(f"linear of {x} and {w}")
    refs = [program._ref(a.slot) for a in step.args]
    out = program._ref(step.outs[0].slot)
    n, k = w.shape
    m = math.prod(x.shape[:-1])
    dtype = x.dtype.name
    packed = program.packed_refs.get(step.args[1].slot)
    if packed is not None:  # W^T (k, n), copied once: no transpose
        calls = [GemmCall(dtype, m, n, k, refs[0], k, packed, n, False, out, n)]
    else:
        calls = [GemmCall(dtype, m, n, k, refs[0], k, refs[1], k, True, out, n)]
    if len(refs) == 3:
        if node.inputs[2].type.shape != (n,):
            raise Unsupported(f"linear's bias {node.inputs[2].type}")
        calls.append(BiasCall(dtype, m, n, out, refs[2]))
    return calls


def _matmul(program: NativeGraph, position, step, node):
    a, b = node.inputs[0].type, node.inputs[1].type
    refs = [program._ref(arg.slot) for arg in step.args]
    out = program._ref(step.outs[0].slot)
    dtype = a.dtype.name
    if a.ndim >= 2 and b.ndim == 2:
        k, n = b.shape
        m = math.prod(a.shape[:-1])
        return [GemmCall(dtype, m, n, k, refs[0], k, refs[1], n, False, out, n)]
    if a.ndim >= 3 and a.ndim == b.ndim and a.shape[:-2] == b.shape[:-2]:
        m, k = a.shape[-2:]
        n = b.shape[-1]
        return [GemmCall(dtype, m, n, k, refs[0], k, refs[1], n, False, out, n,
                         batch=math.prod(a.shape[:-2]), stride_a=m * k, stride_b=k * n,
                         stride_c=m * n)]
    raise Unsupported(f"matmul of {a} and {b}")


def _strided_conv(program: NativeGraph, step, node) -> bool:
    """Whether a conv2d runs as a StridedConvCall: groups, or an input read through strides
    (a view, such as an NHWC tensor permuted to NCHW)."""
    return (node.attrs["groups"] != 1
            or not program._layout(step.args[0].slot).contiguous)


def _strided_conv_call(program: NativeGraph, step, node, x_ref=None, weight=None, out=None,
                       cols=None) -> StridedConvCall:
    """The node's StridedConvCall (its geometry alone where the Refs are left out)."""
    x, w = node.inputs[0].type, node.inputs[1].type
    attrs = node.attrs
    return StridedConvCall(
        x.dtype.name, *x.shape, w.shape[0], attrs["groups"], tuple(w.shape[2:]),
        tuple(attrs["stride"]), tuple(attrs["padding"]), tuple(attrs["dilation"]),
        tuple(node.outputs[0].type.shape[2:]), x_ref,
        tuple(program._layout(step.args[0].slot).strides), weight, out, cols)


def _strided_conv_scratch(program: NativeGraph, step, node) -> int:
    """The bytes of one group's columns (none for a depthwise conv, or where the channels are
    the GEMM's operand as they lie)."""
    geometry = _strided_conv_call(program, step, node)
    if geometry.depthwise or conv_operand(geometry) is not None:
        return 0
    w, out = node.inputs[1].type, node.outputs[0].type
    depth = w.shape[1] * w.shape[2] * w.shape[3]
    return depth * out.shape[2] * out.shape[3] * np.dtype(w.dtype.np).itemsize


def _conv_geometry(node, x_ref=None, w_ref=None, out_ref=None, cols=None,
                   winograd_weight: bool = False) -> ConvCall:
    """The groups-1 conv2d node's ConvCall (its geometry alone where the Refs are left
    out)."""
    x, w = node.inputs[0].type, node.inputs[1].type
    attrs = node.attrs
    return ConvCall(
        x.dtype.name, x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0],
        tuple(w.shape[2:]), tuple(attrs["stride"]), tuple(attrs["padding"]),
        tuple(attrs["dilation"]), tuple(node.outputs[0].type.shape[2:]), x_ref, w_ref,
        out_ref, cols, winograd=winograd_weight)


def _winograd(program: NativeGraph, step, node) -> bool:
    """Whether a conv2d runs as Winograd products (codegen/llvm/winograd.py): groups 1, a
    contiguous 4-d input, a constant weight (its transform is made once per arena)."""
    x, w = node.inputs[0].type, node.inputs[1].type
    slot = step.args[1].slot
    n_in = len(program.graph.inputs)
    if (not WINOGRAD or x.ndim != 4 or w.ndim != 4 or _strided_conv(program, step, node)
            or slot is None or not n_in <= slot < n_in + len(program.graph.constants)):
        return False
    c = _conv_geometry(node)
    return winograd.applies(c.dtype, c.c, c.o, c.kernel, c.stride, c.dilation, c.out_hw)


def _conv2d(program: NativeGraph, position, step, node):
    x, w = node.inputs[0].type, node.inputs[1].type
    attrs = node.attrs
    if x.ndim == 4 and w.ndim == 4 and _strided_conv(program, step, node):
        return [_strided_conv_call(
            program, step, node, program._at(program._layout(step.args[0].slot)),
            program._ref(step.args[1].slot), program._ref(step.outs[0].slot),
            program.scratch.get(position))]
    if attrs["groups"] != 1 or x.ndim != 4 or w.ndim != 4:
        raise Unsupported(f"conv2d of {x} with {w}, groups {attrs['groups']}")
    x_ref, w_ref = (program._ref(a.slot) for a in step.args[:2])
    prepared = program.prepared.get(step.args[1].slot) if _winograd(program, step, node) \
        else None
    if prepared is not None:  # the weight's Winograd transform, in the arena
        w_ref = prepared[0]
    pointwise = _pointwise_conv(node)
    call = _conv_geometry(node, x_ref, w_ref, program._ref(step.outs[0].slot),
                          None if pointwise else program.scratch[position],
                          prepared is not None)
    if not pointwise:
        call = dataclasses.replace(call, slots=program._column_slots(step, node))
    if position in program.epilogues:
        after, channel = program.epilogues[position]
        _, kernel, _ = program.steps[after]
        refs = tuple(program._ref(s) for s in kernel.inputs)
        target = program._ref(kernel.outputs[0].slot)
        epilogue = Epilogue(kernel.spec, (*refs, target),
                            list(kernel.inputs).index(step.outs[0].slot), channel)
        call = dataclasses.replace(call, out=target, epilogue=epilogue)
    return [call]


# a weight gradient runs in the entry (ConvWeightCall: one GEMM per image) with at least this
# many output positions per image; with fewer, the batch's single GEMM (the eager kernel) has
# the longer products
WEIGHT_BY_IMAGES_MIN_PLANE = 256


def _weight_geometry(node) -> ConvCall:
    """The forward geometry of a conv2d_backward_weight node, its slots chosen: each thread
    sums its part of the images (ConvWeightCall)."""
    x, g = node.inputs[0].type, node.inputs[1].type
    a = node.attrs
    o, c, kh, kw = a["weight_shape"]
    threads_limit = limit()
    slots = min(x.shape[0], threads_limit) if x.shape[0] > 1 and threads_limit > 1 else 0
    return ConvCall(x.dtype.name, x.shape[0], x.shape[1], x.shape[2], x.shape[3], o, (kh, kw),
                    tuple(a["stride"]), tuple(a["padding"]), tuple(a["dilation"]),
                    tuple(g.shape[2:]), None, None, None, None, slots=slots)


def _conv_weight(program: NativeGraph, position, step, node):
    x, g = node.inputs[0].type, node.inputs[1].type
    if node.attrs["groups"] != 1 or x.ndim != 4 or g.ndim != 4:
        raise Unsupported(f"conv2d_backward_weight of {x} and {g}, "
                          f"groups {node.attrs['groups']}")
    if g.shape[2] * g.shape[3] < WEIGHT_BY_IMAGES_MIN_PLANE:
        raise Unsupported(f"conv2d_backward_weight over planes of {g.shape[2:]} (the batch's "
                          f"GEMM)")
    conv = dataclasses.replace(_weight_geometry(node), x=program._ref(step.args[0].slot),
                               cols=program.scratch[position])
    return [ConvWeightCall(conv, program._ref(step.args[1].slot),
                           program._ref(step.outs[0].slot))]


def _pool(kind):
    def calls(program: NativeGraph, position, step, node):
        x = node.inputs[0].type
        a = node.attrs
        if x.ndim < 3:
            raise Unsupported(f"{node.op} of {x}")
        kernel, stride, padding = tuple(a["kernel_size"]), tuple(a["stride"]), tuple(a["padding"])
        dilation = tuple(a.get("dilation", (1, 1)))
        out_hw, extra = _geometry(x.shape, kernel, stride, padding, dilation, a["ceil_mode"])
        if tuple(node.outputs[0].type.shape[-2:]) != out_hw:
            raise Unsupported(f"{node.op}: output {node.outputs[0].type} is not {out_hw}")
        divisors = divisor = None
        if kind == "avg":
            if a.get("divisor_override"):
                divisor = float(a["divisor_override"])
            else:
                table = _divisor(np, x.shape[-2:], kernel, stride, padding, extra, out_hw,
                                 a.get("count_include_pad", True), x.dtype.np)
                divisors = tuple(float(d) for d in table.ravel())
        return [PoolCall(kind, x.dtype.name, math.prod(x.shape[:-2]), x.shape[-2], x.shape[-1],
                         out_hw, kernel, stride, padding, dilation,
                         program._ref(step.args[0].slot), program._ref(step.outs[0].slot),
                         divisors, divisor)]

    return calls


def _index_select(program: NativeGraph, position, step, node):
    x, index = node.inputs[0].type, node.inputs[1].type
    dim = node.attrs["dim"]
    if x.ndim == 0 or index.dtype.name not in ("int64", "int32"):
        raise Unsupported(f"index_select of {x} by {index}")
    dim = dim % x.ndim
    if node.outputs[0].type.dtype != x.dtype:
        raise Unsupported(f"index_select of {x} to {node.outputs[0].type}")
    size = x.shape[dim]
    error = program.error(f"index_select(): index {{index}} is out of range for dimension "
                          f"{node.attrs['dim']} with size {size}")
    return [GatherCall(np.dtype(x.dtype.np).itemsize, math.prod(x.shape[:dim]), size,
                       math.prod(x.shape[dim + 1:]), math.prod(index.shape), index.dtype.name,
                       program._ref(step.args[0].slot), program._ref(step.args[1].slot),
                       program._ref(step.outs[0].slot), error)]


def _attention(program: NativeGraph, position, step, node):
    a = node.attrs
    if a["dropout_p"] or len(node.inputs) != 3 + int(a["mask"]):
        raise Unsupported("attention with dropout")
    q, k, v = (x.type for x in node.inputs[:3])
    batch, l, s = _attention_sizes(node)
    e, ev = q.shape[-1], v.shape[-1]

    def operand(arg) -> Strided:
        layout = program._layout(arg.slot)
        # the batch dims aligned to the output's, broadcast dims read with stride 0
        strides = [0] * len(batch)
        own = layout.shape[:-2]
        for d in range(1, len(own) + 1):
            if own[-d] != 1:
                strides[-d] = layout.strides[-d - 2]
        return Strided(program._at(layout), tuple(strides), _matrix_ld(layout))

    scale = a["scale"] if a["scale"] is not None else (1.0 / math.sqrt(e) if e else 1.0)
    call = AttentionCall(q.dtype.name, batch, l, s, e, ev, float(scale), bool(a["causal"]),
                         *(operand(arg) for arg in step.args[:3]),
                         program._ref(step.outs[0].slot), program._ref(step.outs[1].slot),
                         program.scratch.get(position),
                         _mask_operand(program, step.args[3], batch) if a["mask"] else None)
    assert (call.scratch is None) == shares_items(call)
    return [call]


def _mask_operand(program: NativeGraph, arg, batch: tuple) -> MaskOperand:
    """An attention mask read in place where it lies: its dims aligned to the scores'
    (batch..., l, s) from the right, a dim it broadcasts (size 1 or missing) at stride 0."""
    layout = program._layout(arg.slot)
    rank = len(batch) + 2
    shape = (1,) * (rank - len(layout.shape)) + tuple(layout.shape)
    strides = (0,) * (rank - len(layout.strides)) + tuple(layout.strides)
    strides = tuple(0 if n == 1 else st for n, st in zip(shape, strides))
    is_bool = program.types[layout.root].dtype.name == "bool"
    return MaskOperand(program._at(layout), strides[:-2], strides[-2], strides[-1], is_bool)


EXTERN = {"linear": _linear, "matmul": _matmul, "conv2d": _conv2d,
          "conv2d_backward_weight": _conv_weight,
          "max_pool2d": _pool("max"), "avg_pool2d": _pool("avg"),
          "index_select": _index_select, "attention": _attention}
# the inputs (positions) an op reads in place as strided matrices (_matrix_ld)
STRIDED_READS = {"attention": (0, 1, 2)}
# the inputs (positions) an op reads in place through any strides
ANY_STRIDES = {"conv2d": (0,), "attention": (3,)}
GEMM_OPS = frozenset({"linear", "matmul", "conv2d", "conv2d_backward_weight", "attention"})


def build_entry_program(graph: Graph, name: str = "graph", device=None,
                        donate: dict | None = None, packed: dict | None = None,
                        alias_inputs: bool = False):
    """A NativeGraph where the graph allows one (CPU, static sizes, every step supported),
    else what build_program builds; EMBER_LOG=kernels says which, and why. `packed`: a dict
    the programs of one set of weights share their transposed weights in; `alias_inputs`:
    outputs that view an input must stay views (ember.script), which the entry refuses."""
    cpu = device is None or str(getattr(device, "type", device)) == "cpu"
    if cpu and not donate and native_enabled() and entry_enabled():
        try:
            return NativeGraph(graph, name, packed, alias_inputs)
        except Unsupported as why:
            log("kernels", f"{name}: runs step by step, not as one native entry: {why}")
        except Exception as exc:  # noqa: BLE001  (the step-by-step path still runs it)
            log("kernels", f"{name}: the native entry failed, running step by step: "
                           f"{type(exc).__name__}: {exc}")
            warnings.warn(f"ember: the native entry of {name} failed ({type(exc).__name__}: "
                          f"{exc}); it runs step by step", RuntimeWarning, stacklevel=2)
    return build_program(graph, name, device=device, donate=donate)
