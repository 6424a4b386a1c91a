"""Emit a kernel spec (codegen/spec.py) as an LLVM module for the host CPU.

The function is `void name(ptr a0, ..., ptr aN, i64 start, i64 end)`: rows [start, end) of the
spec's flattened outer dims. Pointers are `noalias` unless the spec says they may share memory,
so the loop vectorizer needs no runtime alias checks. Addresses are computed with GEPs only
(NOTES-backends.md: integer address arithmetic can be miscompiled after unrolling).

Per row: the row-level expressions are computed once, each reduction is a loop nest over the
inner dims accumulating into a phi (sums carry `reassoc` so the vectorizer may keep several
accumulators), then one loop nest stores the inner-level outputs. Rows that share an operand
(a batch-1 linear's x) run in blocks of rows instead (blocked.py). Fast-math flags are
`contract` only (fused multiply-add), which keeps NaN, Inf and signed zeros as eager has them.
"""

from __future__ import annotations

import math
import re

import numpy as np
from llvmlite import ir

from ...ir.schema import SCHEMAS
from ..spec import KernelSpec
from .scalar import TEMPLATES

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
POINTER = ir.PointerType()
CHUNKS_PER_THREAD = 4  # a parallel kernel's rows are claimed in this many chunks per thread
PREFETCH_ROW_BYTES = 16384  # next rows larger than this (all streams) are not prefetched

# storage type of each dtype in memory, and its register type
STORAGE = {
    "float16": ir.HalfType(), "float32": ir.FloatType(), "float64": ir.DoubleType(),
    "int8": ir.IntType(8), "int16": ir.IntType(16), "int32": ir.IntType(32),
    "int64": ir.IntType(64), "uint8": ir.IntType(8), "bool": I8,
}
KIND = {"float16": "f", "float32": "f", "float64": "f", "int8": "i", "int16": "i",
        "int32": "i", "int64": "i", "uint8": "u", "bool": "b"}


def register_type(dtype: str) -> ir.Type:
    """The type a value of `dtype` has in registers (float16 computes as float32)."""
    if dtype == "bool":
        return I1
    if dtype == "float16":
        return ir.FloatType()
    return STORAGE[dtype]


def symbol(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


class _Context:
    """What templates see: the builder, flags, intrinsics, and dtype facts."""

    fmf = ()  # no contraction: a*b+c rounds twice, as numpy computes it
    trig_flag = None  # the i1 slot sin and cos set past their inline reduction's range
    exact_trig = False  # emitting the second pass: sin and cos call libm

    def __init__(self, module: ir.Module, spec: KernelSpec):
        self.module = module
        self.spec = spec
        self.b: ir.IRBuilder | None = None

    def call(self, name: str, *args: ir.Value) -> ir.Value:
        return self.b.call(intrinsic(self.module, name, args[0].type, len(args)), args)

    def round_half(self, value: ir.Value) -> ir.Value:
        """A float32 value rounded to float16 and back (numpy rounds each float16 op)."""
        return self.b.fpext(self.b.fptrunc(value, ir.HalfType()), ir.FloatType())

    def signed(self, expr) -> bool:
        return KIND[expr.dtype] == "i"

    def signed_args(self, expr) -> bool:
        return KIND[self.spec.exprs[expr.args[0]].dtype] == "i"


class Callee:
    """A function pointer loaded as an opaque `ptr`, callable with llvmlite's builder (which
    reads the callee's function type from it): the BLAS functions argv hands a native entry
    or pass."""

    def __init__(self, value, function_type):
        self.value = value
        self.function_type = function_type
        self.type = value.type

    def get_reference(self):
        return self.value.get_reference()


def counted_loop(b: ir.IRBuilder, lo, hi, body, loop_id=None, carried=None):
    """for i in [lo, hi): body(i), lo and hi ints or i64 values; `loop_id` (metadata) goes on
    the back edge. With `carried` (the values a loop starts with), body(i, values) returns the
    next iteration's values and the loop returns them as they leave it (its phis)."""
    lo = ir.Constant(I64, lo) if isinstance(lo, int) else lo
    hi = ir.Constant(I64, hi) if isinstance(hi, int) else hi
    pre = b.block
    header = b.append_basic_block("loop")
    inner = b.append_basic_block("body")
    done = b.append_basic_block("done")
    b.branch(header)
    b.position_at_end(header)
    i = b.phi(I64)
    i.add_incoming(lo, pre)
    phis = []
    for value in carried or ():
        phi = b.phi(value.type)
        phi.add_incoming(value, pre)
        phis.append(phi)
    b.cbranch(b.icmp_signed("<", i, hi), inner, done)
    b.position_at_end(inner)
    if carried is None:
        body(i)
    else:
        for phi, value in zip(phis, body(i, phis) or ()):
            phi.add_incoming(value, b.block)
    i.add_incoming(b.add(i, ir.Constant(I64, 1), flags=("nsw",)), b.block)
    back = b.branch(header)
    if loop_id is not None:
        back.set_metadata("llvm.loop", loop_id)
    b.position_at_end(done)
    return phis


def intrinsic(module: ir.Module, name: str, t: ir.Type, arity: int) -> ir.Function:
    """The overloaded LLVM intrinsic `name` on type t with `arity` operands of that type."""
    fnty = ir.FunctionType(t, [t] * arity)
    return module.declare_intrinsic(name, [t], fnty)


def infinity(module: ir.Module, b: ir.IRBuilder, t: ir.Type, value: float) -> ir.Value:
    """+-inf as a load from a global the optimizer cannot see through (a loop hoists it).
    Seen as a constant, -inf is llvm.maximum's identity, and a row max over
    masked_fill(x, mask, -inf) (a causal softmax) became select(mask, max, maximum(max, x)),
    which LLVM's vectorizer leaves scalar: 104 us against 25 for (128, 16, 16) scores."""
    name = f"ember.{'neg' if value < 0 else 'pos'}inf.{t}"
    g = module.globals.get(name)
    if g is None:
        g = ir.GlobalVariable(module, t, name)
        g.initializer = ir.Constant(t, value)
        g.linkage = "linkonce_odr"
    return b.load(g, typ=t)


def cast(b: ir.IRBuilder, v: ir.Value, source: str, target: str) -> ir.Value:
    """numpy's astype between register values (float to int truncates toward zero)."""
    src_t, dst_t = register_type(source), register_type(target)
    if source == target or src_t == dst_t and KIND[source] == KIND[target]:
        return v
    sk, dk = KIND[source], KIND[target]
    if dk == "b":
        if sk == "f":
            return b.fcmp_unordered("!=", v, ir.Constant(src_t, 0.0))
        return b.icmp_unsigned("!=", v, ir.Constant(src_t, 0))
    if sk == "b":
        return b.uitofp(v, dst_t) if dk == "f" else b.zext(v, dst_t)
    if sk == "f" and dk == "f":
        if src_t == dst_t:
            return v
        wider = isinstance(dst_t, ir.DoubleType)
        return b.fpext(v, dst_t) if wider else b.fptrunc(v, dst_t)
    if sk == "f":
        return b.fptosi(v, dst_t) if dk == "i" else b.fptoui(v, dst_t)
    if dk == "f":
        return b.sitofp(v, dst_t) if sk == "i" else b.uitofp(v, dst_t)
    if src_t.width == dst_t.width:
        return v
    if src_t.width > dst_t.width:
        return b.trunc(v, dst_t)
    return b.sext(v, dst_t) if sk == "i" else b.zext(v, dst_t)


# the inner size up to which a row's expensive values are kept in a stack buffer (64 KiB of
# float64 at most: small enough for the stack, and for the L1/L2 cache)
ROW_CACHE_LIMIT = 8192
# ops whose inline polynomial code is worth keeping a row's values for
TRANSCENDENTAL = frozenset(s.name for s in SCHEMAS.values() if s.mathlib)

_REDUCE_INIT = {"sum": 0, "prod": 1, "max": -math.inf, "min": math.inf}


def _reduce_init(kind: str, dtype: str) -> ir.Constant:
    t = register_type(dtype)
    init = _REDUCE_INIT[kind]
    if KIND[dtype] == "f":
        return ir.Constant(t, float(init))
    if math.isinf(init):
        bits = t.width
        signed = KIND[dtype] == "i"
        if init < 0:
            return ir.Constant(t, -(1 << (bits - 1)) if signed else 0)
        return ir.Constant(t, (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1)
    return ir.Constant(t, init)


class _Emitter:
    def __init__(self, spec: KernelSpec, module: ir.Module):
        self.spec = spec
        self.module = module
        self.ctx = _Context(self.module, spec)
        self.level = spec.inner_level()
        # which exprs depend on a reduction: a divide by one inside the inner loop becomes a
        # multiply by its reciprocal, computed once per row (softmax's e / sum)
        after = []
        for e in spec.exprs:
            after.append(e.op == "reduce" or any(after[a] for a in e.args))
        self.ctx.per_row_divisor = [
            e.op == "div" and self.level[i] and not self.level[e.args[1]] and after[e.args[1]]
            for i, e in enumerate(spec.exprs)
        ]
        # A row kernel with a transcendental (softmax) keeps its inner loops rolled: fully
        # unrolled, its passes over a row share loads and spill them, and the polynomial
        # bodies swell the code (softmax 4096x1024 ran 30% slower unrolled). The vectorizer
        # still interleaves these loops.
        self.rolled_inner = (any(e.op == "reduce" for e in spec.exprs)
                             and any(e.op in TRANSCENDENTAL for e in spec.exprs))
        self._no_unroll = None

    def emit(self) -> str:
        spec = self.spec
        fnty = ir.FunctionType(ir.VoidType(), [POINTER] * len(spec.args) + [I64, I64])
        fn = ir.Function(self.module, fnty, name=symbol(spec.name))
        # an input an output is written over is read through the output's pointer
        # (KernelSpec.written_over): then every pointer that is dereferenced is the only way
        # to its memory, and noalias holds for each
        over = dict(spec.written_over)
        paired = set(over) | set(over.values())
        for i, arg in enumerate(fn.args[: len(spec.args)]):
            if i not in spec.aliased or i in paired:
                arg.add_attribute("noalias")
        fn.attributes.add("nounwind")
        self.pointers = [fn.args[over.get(i, i)] for i in range(len(spec.args))]
        start, end = fn.args[len(spec.args) :]
        entry = fn.append_basic_block("entry")
        b = ir.IRBuilder(entry)
        self.ctx.b = b
        self._plan_row_cache(b)
        from .mathlib import REDUCED

        if spec.serial:
            # column sums: zeroed by the call that starts at row 0 (the one call: runtime
            # runs such a kernel serially), then each row added on in order; rows run once
            # (no blocks of rows, no second pass for sin and cos: libm's from the start)
            self._zero_sums(b, start)
            if any(e.op in REDUCED for e in spec.exprs):
                self.ctx.trig_flag = b.alloca(ir.IntType(1))
                self.ctx.exact_trig = True
            self._loop(b, start, end, self._row)
            b.ret_void()
            return
        if not any(e.op in REDUCED for e in spec.exprs):
            from .blocked import RowBlocks, row_block

            block = 1 if self.rolled_inner or self.cached else row_block(spec, self.level)
            if block > 1:
                RowBlocks(self, block).loop(b, start, end)
            else:
                self._loop(b, start, end, self._row)
            b.ret_void()
            return
        # sin and cos: straight-line code for the arguments its reduction holds for; a flag
        # (promoted to a register and or-reduced) notes any other, and then the rows run
        # again with libm's sin and cos. A kernel that writes over its inputs cannot run
        # twice: it calls libm from the start.
        flag = self.ctx.trig_flag = b.alloca(ir.IntType(1))
        b.store(ir.Constant(ir.IntType(1), 0), flag)
        self.ctx.exact_trig = bool(spec.aliased)
        self._loop(b, start, end, self._row)
        again = b.append_basic_block("exact_trig")
        done = b.append_basic_block("done_trig")
        b.cbranch(b.load(flag), again, done)
        b.position_at_end(again)
        self.ctx.exact_trig = True
        self._loop(b, start, end, self._row)
        b.branch(done)
        b.position_at_end(done)
        b.ret_void()

    def _zero_sums(self, b, start) -> None:
        """Zero each column sum's output (the inner dims' values) when the call starts at
        row 0."""
        spec = self.spec
        size = math.prod(spec.inner) if spec.inner else 1
        memset = self.module.globals.get("llvm.memset.p0.i64") or ir.Function(
            self.module, ir.FunctionType(ir.VoidType(), [POINTER, I8, I64, I1]),
            name="llvm.memset.p0.i64")
        with b.if_then(b.icmp_signed("==", start, ir.Constant(I64, 0))):
            for arg in sorted({s.access.arg for s in spec.stores if s.accumulate}):
                nbytes = size * np.dtype(spec.args[arg]).itemsize
                b.call(memset, [self.pointers[arg], ir.Constant(I8, 0), ir.Constant(I64, nbytes),
                                ir.Constant(I1, 0)])

    # -- per-row scratch for expensive values several inner loops need -----------------------

    def _plan_row_cache(self, b) -> None:
        """Softmax needs exp(x - max) in the sum's loop and again in the store loop: computed
        once, kept in a stack buffer of one row, and loaded back, instead of computed twice.
        Only transcendental values, in rows of at most ROW_CACHE_LIMIT elements."""
        spec = self.spec
        self.cached: dict[int, tuple] = {}  # expr -> (producing loop, scratch pointer)
        self.loop_id = None
        inner = spec.inner
        size = math.prod(inner) if inner else 0
        if not inner or size > ROW_CACHE_LIMIT:
            return
        loops = [k for k, e in enumerate(spec.exprs) if e.op == "reduce"]
        uses: dict[int, list] = {}
        for loop in loops:
            for k in self._inner_needs(spec.exprs[loop].args[0]):
                uses.setdefault(k, []).append(loop)
        for s in spec.stores:
            if self._inner_store(s):
                for k in self._inner_needs(s.expr):
                    uses.setdefault(k, []).append("store")
        for k, where in uses.items():
            if spec.exprs[k].op in TRANSCENDENTAL and len(set(where)) > 1:
                scratch = b.alloca(ir.ArrayType(register_type(spec.exprs[k].dtype), size))
                self.cached[k] = (where[0], scratch)
        if self.cached:
            strides, step = [0] * len(spec.shape), 1
            for dim in range(len(spec.shape) - 1, spec.outer - 1, -1):
                strides[dim] = step
                step *= spec.shape[dim]
            self.flat_key = (tuple(strides), -1)  # offset -1: no access uses it

    def _inner_needs(self, root: int) -> set:
        found, stack = set(), [root]
        while stack:
            k = stack.pop()
            if k in found or not self.level[k]:
                continue
            found.add(k)
            stack.extend(self.spec.exprs[k].args)
        return found

    # -- loops -------------------------------------------------------------------------------

    def _loop(self, b: ir.IRBuilder, lo, hi, body, carried=(), rolled=False):
        """for i in [lo, hi): carried = body(i, carried); returns the final carried values.
        `rolled` forbids the unroller to unroll it (llvm.loop.unroll.disable)."""
        return counted_loop(b, lo, hi, body, self._unroll_disable() if rolled else None,
                            carried=tuple(carried))

    def _nest(self, b, dims, bases, body, carried=()):
        """Loops over the inner dims `dims`, each access's offset advanced by its stride;
        body(offsets, carried) at the innermost level."""
        if not dims:
            return body(bases, carried)
        dim, rest = dims[0], dims[1:]
        size = self.spec.shape[dim]

        def step(i, values):
            offsets = {key: self._advance(b, base, i, key[0][dim]) for key, base in bases.items()}
            return self._nest(b, rest, offsets, body, values)

        return self._loop(b, ir.Constant(I64, 0), ir.Constant(I64, size), step, carried,
                          rolled=self.rolled_inner)

    def _unroll_disable(self):
        """A fresh loop ID `!N = !{!N, !{"llvm.loop.unroll.disable"}, interleave 4}` (a loop
        ID names itself first, which keeps it distinct to each loop)."""
        if self._no_unroll is None:
            md = self.module.add_metadata
            self._no_unroll = (
                md([ir.MetaDataString(self.module, "llvm.loop.unroll.disable")]),
                # the vectorizer reads unroll.disable as "do not interleave" too; several
                # accumulators are what make the reductions fast, so ask for them
                md([ir.MetaDataString(self.module, "llvm.loop.interleave.count"),
                    ir.Constant(ir.IntType(32), 4)]))
        options = self._no_unroll
        # add_metadata shares nodes of equal operands: a counter makes each one new, and is
        # then replaced by the self-reference
        loop_id = self.module.add_metadata([*options, ir.Constant(I64, len(self.module.metadata))])
        loop_id.operands = (loop_id, *options)
        return loop_id

    @staticmethod
    def _advance(b, base, i, stride):
        if stride == 0:
            return base
        term = i if stride == 1 else b.mul(i, ir.Constant(I64, stride), flags=("nsw",))
        return b.add(base, term, flags=("nsw",))

    # -- one row -----------------------------------------------------------------------------

    def _row(self, r, _carried):
        spec, b = self.spec, self.ctx.b
        bases = self.row_bases(r)
        self._prefetch_next_row(b, bases)
        self.row_values: dict[int, ir.Value] = {}
        inner_dims = list(range(spec.outer, len(spec.shape)))
        for k, e in enumerate(spec.exprs):
            if e.op == "reduce":
                self._prepare(e.args[0], bases)
                self.row_values[k] = self._reduce(k, inner_dims, bases)
        inner_stores = [s for s in spec.stores if self._inner_store(s)]
        # every value of a level is computed before the first of its stores: an output written
        # over an input it was computed from (runtime/compiled.py's _donate) must not be read
        # back by another output's value at the same element
        row_stores = [s for s in spec.stores if not self._inner_store(s)]
        for s in row_stores:
            self._prepare(s.expr, bases)
        row_values = [self._value(s.expr, {}, bases) for s in row_stores]
        for s, value in zip(row_stores, row_values):
            self._store(s, value, bases)
        if inner_stores:
            for s in inner_stores:
                self._prepare(s.expr, bases)
            self.loop_id = "store"

            def body(offsets, carried):
                scope = {}
                values = [self._value(s.expr, scope, offsets) for s in inner_stores]
                for s, value in zip(inner_stores, values):
                    self._store(s, value, offsets)
                return carried

            self._nest(b, inner_dims, bases, body)
        return ()

    def row_bases(self, r) -> dict:
        """Each access's element offset at the start of row r, keyed by (strides, offset)."""
        spec, b = self.spec, self.ctx.b
        # the index of each outer dim, from the flattened row number
        index, rest = [None] * spec.outer, r
        for dim in range(spec.outer - 1, -1, -1):
            size = ir.Constant(I64, spec.shape[dim])
            if dim == 0:
                index[dim] = rest
            else:
                index[dim] = b.urem(rest, size)
                rest = b.udiv(rest, size)
        bases = {}
        for access in spec.accesses():
            key = (access.strides, access.offset)
            if key in bases:
                continue
            offset = ir.Constant(I64, access.offset)
            for dim in range(spec.outer):
                offset = self._advance(b, offset, index[dim], access.strides[dim])
            bases[key] = offset
        if self.cached:
            bases[self.flat_key] = ir.Constant(I64, 0)
        return bases

    def _prefetch_next_row(self, b, bases) -> None:
        """A row kernel that passes over its row several times (the reductions, then the
        stores) and is not held up by transcendentals starts by prefetching the next row into
        L1, one prefetch per cache line.
        The hardware prefetchers lose the stream at each page, and a 4 KB row is one page:
        layer_norm 4096x1024 took 1.43 ms on one core without this and 0.62 ms with it.
        A kernel that passes over its row once (reductions with row-level stores only: a
        matrix-vector product) is left to the hardware: its prefetches take load slots its
        one pass needs (the digits CNN's 128x1024 linear at batch 1 on a Zen 4 core: 9.3 us
        with them, 7.1 us without)."""
        spec = self.spec
        if not spec.outer or not any(e.op == "reduce" for e in spec.exprs) or self.rolled_inner:
            return  # (softmax's exp keeps the core busy while the hardware fetches: 5% slower)
        if not any(self._inner_store(s) for s in spec.stores):
            return
        inner_size = math.prod(spec.shape[spec.outer :])
        streams, seen = [], set()
        for e in spec.exprs:
            a = e.attr if e.op == "load" else None
            if a is None or (a.strides, a.offset) in seen:
                continue
            seen.add((a.strides, a.offset))
            # rows of contiguous elements, one after another
            if a.strides[spec.outer - 1] and a.strides[-1] == 1 and \
                    all(a.strides[d] for d in range(spec.outer, len(spec.shape))):
                stored = spec.args[a.arg]
                itemsize = 1 if stored == "bool" else np.dtype(stored).itemsize
                streams.append((a, inner_size * itemsize))
        if not streams or sum(size for _, size in streams) > PREFETCH_ROW_BYTES:
            return
        prefetch = self.module.globals.get("llvm.prefetch.p0") or ir.Function(
            self.module, ir.FunctionType(ir.VoidType(), [POINTER, I32, I32, I32]),
            name="llvm.prefetch.p0")
        for a, size in streams:
            next_row = b.add(bases[(a.strides, a.offset)],
                             ir.Constant(I64, a.strides[spec.outer - 1]))
            # past the last row this points beyond the array: a prefetch never faults
            start = b.gep(self.pointers[a.arg], [next_row], source_etype=STORAGE[spec.args[a.arg]])

            def line(i, _carried, start=start):
                at = b.gep(start, [b.mul(i, ir.Constant(I64, 64))], source_etype=I8)
                # read, locality 3 (keep in every level), data cache
                b.call(prefetch, [at, ir.Constant(I32, 0), ir.Constant(I32, 3),
                                  ir.Constant(I32, 1)])
                return ()

            self._loop(b, ir.Constant(I64, 0), ir.Constant(I64, -(-size // 64)), line,
                       rolled=True)

    def _inner_store(self, s) -> bool:
        return self.spec.inner_store(s, self.level)

    def _prepare(self, root: int, bases) -> None:
        """Compute, at row scope, every row-level value that `root` needs (so loops reuse
        them instead of recomputing them per element)."""
        for k in self.spec.row_inputs(root, self.level):
            if k not in self.row_values:
                self.row_values[k] = self._value(k, {}, bases)

    def _reduce(self, k, inner_dims, bases):
        spec, b = self.spec, self.ctx.b
        e = spec.exprs[k]
        body_expr = spec.exprs[e.args[0]]
        init = _reduce_init(e.attr, e.dtype)

        self.loop_id = k

        def body(offsets, carried):
            value = self._value(e.args[0], {}, offsets)
            value = cast(b, value, body_expr.dtype, e.dtype)
            return [self._accumulate(e, carried[0], value)]

        (acc,) = self._nest(b, inner_dims, bases, body, [init])
        return acc

    def _accumulate(self, e, acc, value):
        b = self.ctx.b
        floating = KIND[e.dtype] == "f"
        if e.attr == "sum":
            if floating:
                return b.fadd(acc, value, flags=("reassoc",))
            return b.add(acc, value)
        if e.attr == "prod":
            if floating:
                return b.fmul(acc, value, flags=("reassoc",))
            return b.mul(acc, value)
        # max/min propagate NaN, as numpy's
        if floating:
            name = "llvm.maximum" if e.attr == "max" else "llvm.minimum"
            return b.call(intrinsic(self.module, name, acc.type, 2), [acc, value])
        signed = KIND[e.dtype] == "i"
        cmp = b.icmp_signed if signed else b.icmp_unsigned
        keep = cmp(">" if e.attr == "max" else "<", acc, value)
        return b.select(keep, acc, value)

    # -- expressions -------------------------------------------------------------------------

    def _value(self, k: int, scope: dict, offsets) -> ir.Value:
        if k in self.row_values:
            return self.row_values[k]
        if k in scope:
            return scope[k]
        spec, b = self.spec, self.ctx.b
        e = spec.exprs[k]
        cache = self.cached.get(k)
        if cache is not None:
            producer, scratch = cache
            slot = b.gep(scratch, [ir.Constant(I64, 0), offsets[self.flat_key]], inbounds=True)
            if producer != self.loop_id:
                value = scope[k] = b.load(slot, typ=register_type(e.dtype))
                return value
        if e.op == "load":
            a = e.attr
            ptr = b.gep(self.pointers[a.arg], [offsets[(a.strides, a.offset)]], inbounds=True,
                        source_etype=STORAGE[spec.args[a.arg]])
            value = b.load(ptr, typ=STORAGE[spec.args[a.arg]])
            stored = spec.args[a.arg]
            if stored == "bool":
                value = b.icmp_unsigned("!=", value, ir.Constant(I8, 0))
            elif stored == "float16":
                value = b.fpext(value, ir.FloatType())
            value = cast(b, value, "float32" if stored == "float16" else stored,
                         "float32" if e.dtype == "float16" else e.dtype)
        elif e.op == "const":
            t = register_type(e.dtype)
            if e.dtype == "bool":
                value = ir.Constant(I1, int(bool(e.attr)))
            elif KIND[e.dtype] == "f" and math.isinf(float(e.attr)):
                value = infinity(self.module, b, t, float(e.attr))
            elif e.dtype == "float16":  # the float16 number eager computes with
                value = ir.Constant(t, float(np.float16(e.attr)))
            elif KIND[e.dtype] == "f":
                value = ir.Constant(t, float(e.attr))
            else:
                value = ir.Constant(t, int(e.attr))
        elif e.op == "cast":
            (a,) = e.args
            source = spec.exprs[a].dtype
            value = self._value(a, scope, offsets)
            value = cast(b, value, "float32" if source == "float16" else source,
                         "float32" if e.dtype == "float16" else e.dtype)
            if e.dtype == "float16" and source != "float16":
                value = self._round_half(value)
        else:
            args = [self._value(a, scope, offsets) for a in e.args]
            self.ctx.current = k
            value = TEMPLATES[e.op](self.ctx, *args, e)
            if e.dtype == "float16":
                value = self._round_half(value)
        scope[k] = value
        if cache is not None:
            b.store(value, slot)
        return value

    def _round_half(self, value):
        # numpy rounds every float16 op's result to float16; keep that rounding
        return self.ctx.round_half(value)

    def _store(self, s, value, offsets):
        spec, b = self.spec, self.ctx.b
        a = s.access
        stored = spec.args[a.arg]
        source = spec.exprs[s.expr].dtype
        if stored == "bool":
            value = b.zext(cast(b, value, source, "bool"), I8)
        elif stored == "float16":
            value = cast(b, value, "float32" if source == "float16" else source, "float32")
            value = b.fptrunc(value, ir.HalfType())
        else:
            value = cast(b, value, "float32" if source == "float16" else source, stored)
        ptr = b.gep(self.pointers[a.arg], [offsets[(a.strides, a.offset)]], inbounds=True,
                    source_etype=STORAGE[stored])
        if s.accumulate:  # a column sum (float32 or float64): this row's value added on
            value = b.fadd(b.load(ptr, typ=STORAGE[stored]), value)
        b.store(value, ptr)


def emit_module(specs, name: str = "ember_kernels", runs=()) -> str:
    """The LLVM IR text of one module holding a function per spec, named after it (one
    module per program: one optimization run, one object file, one cache entry), and a
    function per run (see emit_run)."""
    if isinstance(specs, KernelSpec):
        specs = [specs]
    module = ir.Module(name=symbol(name))
    for spec in specs:
        emit_kernel(module, spec)
    for k, calls in enumerate(runs):
        emit_run(module, run_symbol(name, k), calls)
    return str(module)


def emit_kernel(module: ir.Module, spec: KernelSpec) -> None:
    """Add spec's function and its pool task (see _emit_task) to module."""
    _Emitter(spec, module).emit()
    _emit_task(module, spec)


PARALLEL_FOR = "ember_parallel_for"  # pool.py's entry, resolved when the object code loads


def run_symbol(module_name: str, k: int) -> str:
    return f"{symbol(module_name)}_run{k}"


def emit_run(module: ir.Module, name: str, calls) -> None:
    """`run(slots, threads)`: several kernels called one after another from one native call,
    so a small graph costs one ctypes call instead of one per kernel. `calls` lists
    (spec, parallel) in order; `slots` holds every kernel's pointers, concatenated. A
    parallel kernel goes through the thread pool when `threads` > 1."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [POINTER, I64]), name=name)
    fn.attributes.add("nounwind")
    slots, threads = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    widest = max((len(spec.args) for spec, parallel in calls if parallel), default=0)
    argv = b.alloca(ir.ArrayType(POINTER, widest)) if widest else None
    pool = None
    if widest:
        pool = module.globals.get(PARALLEL_FOR) or ir.Function(
            module, ir.FunctionType(ir.VoidType(), [POINTER, POINTER, I64, I64]),
            name=PARALLEL_FOR)
    offset = 0
    for spec, parallel in calls:
        kernel = module.get_global(symbol(spec.name))
        pointers = []
        for i in range(len(spec.args)):
            slot = b.gep(slots, [ir.Constant(I64, offset + i)], inbounds=True,
                         source_etype=POINTER)
            pointers.append(b.load(slot, typ=POINTER))
        offset += len(spec.args)
        rows = ir.Constant(I64, spec.rows)
        if not parallel:
            b.call(kernel, [*pointers, ir.Constant(I64, 0), rows])
            continue
        shared = b.icmp_signed(">", threads, ir.Constant(I64, 1))
        with b.if_else(shared) as (then, otherwise):
            with then:
                for i, p in enumerate(pointers):
                    b.store(p, b.gep(argv, [ir.Constant(I64, 0), ir.Constant(I64, i)],
                                     inbounds=True))
                wanted = b.mul(threads, ir.Constant(I64, CHUNKS_PER_THREAD))
                chunks = b.select(b.icmp_signed("<", wanted, rows), wanted, rows)
                b.call(pool, [module.get_global(task_symbol(spec.name)), argv, rows, chunks])
            with otherwise:
                b.call(kernel, [*pointers, ir.Constant(I64, 0), rows])
    b.ret_void()


def task_symbol(name: str) -> str:
    return symbol(name) + "_task"


def _emit_task(module: ir.Module, spec: KernelSpec) -> None:
    """`<kernel>_task(argv, start, end)`: the kernel with its pointers read from an array, the
    one signature the thread pool (pool.py) calls every kernel through."""
    kernel = module.get_global(symbol(spec.name))
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [POINTER, I64, I64]),
                     name=task_symbol(spec.name))
    fn.attributes.add("nounwind")
    argv, start, end = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    pointers = [b.load(b.gep(argv, [ir.Constant(I64, i)], inbounds=True, source_etype=POINTER),
                       typ=POINTER)
                for i in range(len(spec.args))]
    b.call(kernel, [*pointers, start, end])
    b.ret_void()
