"""Emit kernel specs (codegen/spec.py) as CUDA C source, for NVRTC (cupy.RawModule) or nvcc.

Every kernel is `extern "C" __global__ void name(T0* a0, ..., long long start, long long end)`,
over rows [start, end) of the spec's flattened outer dims, as the LLVM backend's are.

- A kernel without reductions is elementwise: a grid-stride loop over the flat index of every
  element of those rows, each thread decomposing its index into the loop dims. When every
  argument is float32 at the flat index itself and all are 16-byte aligned, the loop moves
  four elements a step through float4 loads and stores, the rest one by one.
- A kernel with reductions gives each row to one block (grid-stride over rows): the threads
  stride over the row's inner elements, each reduction combines per-thread partials with warp
  shuffles and one shared-memory step across warps, and every thread then sees the result for
  the next loop; the inner-level stores come last, row-level ones are written by thread 0.

Values compute as the dtypes say: float16 is stored as __half and computed in float, rounded
to half after every op as numpy does; bool is stored as one byte. maximum/minimum propagate
NaN with numpy's choice between equal operands, and float sums accumulate in their dtype (float
for float16), as the CPU kernels do.
"""

from __future__ import annotations

import math

from ..spec import KernelSpec
from .scalar import KIND, REGISTER, TEMPLATES, Operands, cast, literal, truth

STORAGE = {"float16": "__half", "float32": "float", "float64": "double", "int8": "signed char",
           "int16": "short", "int32": "int", "int64": "long long", "uint8": "unsigned char",
           "bool": "unsigned char"}
# threads per block: elementwise kernels, and reductions (one block per row)
BLOCK = 256
REDUCE_BLOCK = 256

PRELUDE = r"""#include <cuda_fp16.h>

// numpy's maximum/minimum: a wins when greater (less) or NaN; on a tie the second operand,
// except for float16 (first). Integer versions are plain comparisons.
template <typename T> __device__ __forceinline__ T ember_max(T a, T b) {
    return (a > b || a != a) ? a : b;
}
template <typename T> __device__ __forceinline__ T ember_min(T a, T b) {
    return (a < b || a != a) ? a : b;
}
__device__ __forceinline__ float ember_max_h(float a, float b) {
    return (a >= b || a != a) ? a : b;
}
__device__ __forceinline__ float ember_min_h(float a, float b) {
    return (a <= b || a != a) ? a : b;
}
__device__ __forceinline__ float ember_r16(float x) { return __half2float(__float2half(x)); }

template <typename T> struct ember_sum { __device__ T operator()(T a, T b) const { return a + b; } };
template <typename T> struct ember_prod { __device__ T operator()(T a, T b) const { return a * b; } };
template <typename T> struct ember_maxop {
    __device__ T operator()(T a, T b) const { return (a > b || a != a) ? a : b; }
};
template <typename T> struct ember_minop {
    __device__ T operator()(T a, T b) const { return (a < b || a != a) ? a : b; }
};

// the reduction of v over the block, returned to every thread; `shared` holds 32 values
template <typename T, typename Op>
__device__ T ember_block_reduce(T v, T identity, T* shared, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (warp == 0) {
        int warps = (blockDim.x + 31) >> 5;
        v = lane < warps ? shared[lane] : identity;
        for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
        if (lane == 0) shared[0] = v;
    }
    __syncthreads();
    v = shared[0];
    __syncthreads();
    return v;
}
"""

class _Kernel:
    def __init__(self, spec: KernelSpec):
        self.spec = spec
        self.level = spec.inner_level()
        self.lines: list[str] = []
        self.names: dict[int, str] = {}

    # -- expressions ---------------------------------------------------------------------------

    def _dtype(self, k: int) -> str:
        return self.spec.exprs[k].dtype

    def _expr(self, k: int, args: list[str]) -> str:
        e = self.spec.exprs[k]
        emit = TEMPLATES.get(e.op)
        if emit is None:
            raise NotImplementedError(f"the CUDA backend has no template for {e.op!r}")
        return emit(Operands(args, [self._dtype(a) for a in e.args], e.dtype, e.attr))

    def value(self, k: int, scope: dict, offsets: dict) -> str:
        """The C name of expr k's value in this scope, emitting the statements it needs."""
        if k in scope:
            return scope[k]
        spec = self.spec
        e = spec.exprs[k]
        name = f"e{k}_{len(self.lines)}"
        if e.op == "load":
            a = e.attr
            stored = spec.args[a.arg]
            text = f"a{a.arg}[{offsets[(a.strides, a.offset)]}]"
            if stored == "float16":
                text = f"__half2float({text})"
            elif stored == "bool":
                text = f"({text} != 0)"
            text = cast(text, "float32" if stored == "float16" else stored,
                              "float32" if e.dtype == "float16" else e.dtype)
        elif e.op == "const":
            text = literal(e.attr, e.dtype)
        else:
            args = [self.value(a, scope, offsets) for a in e.args]
            if e.op == "cast":
                text = cast(args[0], self._dtype(e.args[0]), e.dtype)
            else:
                text = self._expr(k, args)
            if e.dtype == "float16" and e.op not in ("cast",) and not text.startswith("ember_r16"):
                text = f"ember_r16({text})"
        self.lines.append(f"{REGISTER[e.dtype]} {name} = {text};")
        scope[k] = name
        return name

    def store(self, s, value: str, offsets: dict) -> str:
        spec = self.spec
        stored = spec.args[s.access.arg]
        source = spec.exprs[s.expr].dtype
        if stored == "float16":
            value = f"__float2half((float)({value}))"
        elif stored == "bool":
            value = f"(unsigned char)({truth(value, source)})"
        else:
            value = f"({STORAGE[stored]})({value})"
        return f"a{s.access.arg}[{offsets[(s.access.strides, s.access.offset)]}] = {value};"

    # -- the kernel ----------------------------------------------------------------------------

    def _offsets(self, index: list[str], dims) -> dict:
        offsets = {}
        for a in self.spec.accesses():
            key = (a.strides, a.offset)
            if key in offsets:
                continue
            terms = [f"{index[j]} * {a.strides[j]}LL" for j in dims if a.strides[j]]
            offsets[key] = " + ".join([*terms, f"{a.offset}LL"])
        return offsets

    def _decompose(self, flat: str, dims: list[int], prefix: str) -> list[str]:
        """Statements naming the index of each of dims from a flat index over them."""
        shape = self.spec.shape
        names = {}
        rest = flat
        for j in reversed(dims):
            names[j] = f"{prefix}{j}"
            if j == dims[0]:
                self.lines.append(f"long long {prefix}{j} = {rest};")
            else:
                self.lines.append(f"long long {prefix}{j} = {rest} % {shape[j]}LL;")
                rest = f"({rest} / {shape[j]}LL)"
        return names

    def _inner_store(self, s) -> bool:
        return self.spec.inner_store(s, self.level)

    def emit(self) -> str:
        spec = self.spec
        params = []
        for i, dtype in enumerate(spec.args):
            const = "const " if i < spec.n_inputs and i not in spec.aliased else ""
            restrict = "" if i in spec.aliased else " __restrict__"
            params.append(f"{const}{STORAGE[dtype]}*{restrict} a{i}")
        params += ["long long start", "long long end"]
        reduces = [k for k, e in enumerate(spec.exprs) if e.op == "reduce"]
        body = self._reduction_body(reduces) if reduces else self._elementwise_body()
        head = f'extern "C" __global__ void {spec.name}({", ".join(params)}) {{'
        return "\n".join([head, *("    " + line for line in body), "}"])

    def _elementwise_body(self) -> list[str]:
        spec = self.spec
        n = len(spec.shape)
        inner = math.prod(spec.shape[spec.outer:])
        head = [f"long long total = (end - start) * {inner}LL;",
                "long long first = blockIdx.x * (long long)blockDim.x + threadIdx.x;",
                "long long stride = (long long)gridDim.x * blockDim.x;"]
        scalar = self._scalar_loop("first", n, inner)
        if not self._vectorizable():
            return head + scalar
        # every argument a float32 array read or written at the flat index itself: where all
        # are 16-byte aligned at this range, four elements per thread and step, as float4
        pointers = " | ".join(f"(unsigned long long)(a{i} + start * {inner}LL)"
                              for i in range(len(spec.args)))
        lines = head + [f"if ((({pointers}) & 15ULL) == 0) {{",
                        "    long long quads = total / 4;",
                        "    for (long long q = first; q < quads; q += stride) {",
                        f"        long long f = start * {inner}LL + 4 * q;"]
        body = []
        for i in range(spec.n_inputs):
            body.append(f"float4 v{i} = *reinterpret_cast<const float4*>(a{i} + f);")
        outputs = range(spec.n_inputs, len(spec.args))
        body += [f"float4 v{i};" for i in outputs]
        key = {(a.strides, a.offset) for a in spec.accesses()}
        for lane in range(4):
            self.lines = []
            offsets = {k: str(lane) for k in key}
            scope: dict = {}
            for s in spec.stores:
                self.lines.append(self.store(s, self.value(s.expr, scope, offsets), offsets))
            # each lane's block names the arguments as the lanes of the vectors
            body.append("{")
            body += [f"    const float* a{i} = reinterpret_cast<const float*>(&v{i});"
                     for i in range(spec.n_inputs)]
            body += [f"    float* a{i} = reinterpret_cast<float*>(&v{i});" for i in outputs]
            body += ["    " + line for line in self.lines]
            body.append("}")
        body += [f"*reinterpret_cast<float4*>(a{i} + f) = v{i};" for i in outputs]
        lines += ["        " + line for line in body]
        lines += ["    }",
                  *("    " + line for line in self._scalar_loop("quads * 4 + first", n, inner)),
                  "} else {",
                  *("    " + line for line in scalar),
                  "}"]
        return lines

    def _scalar_loop(self, first: str, n: int, inner: int) -> list[str]:
        """for t from `first` over the range's flat element indices, one element a step."""
        spec = self.spec
        self.lines = []
        index = self._decompose(f"(start * {inner}LL + t)", list(range(n)), "i")
        offsets = self._offsets([index[j] for j in range(n)], range(n))
        scope: dict = {}
        for s in spec.stores:
            self.lines.append(self.store(s, self.value(s.expr, scope, offsets), offsets))
        return [f"for (long long t = {first}; t < total; t += stride) {{",
                *("    " + line for line in self.lines), "}"]

    def _vectorizable(self) -> bool:
        """Whether every argument is float32 and every access is at the flat index itself
        (row-major over the whole loop space, no offset): float4 loads and stores."""
        spec = self.spec
        if any(dtype != "float32" for dtype in spec.args):
            return False
        contiguous, step = [0] * len(spec.shape), 1
        for j in range(len(spec.shape) - 1, -1, -1):
            contiguous[j] = step
            step *= spec.shape[j]
        return all(tuple(a.strides) == tuple(contiguous) and a.offset == 0
                   for a in spec.accesses())

    def _reduction_body(self, reduces: list[int]) -> list[str]:
        spec = self.spec
        n = len(spec.shape)
        outer, inner_dims = spec.outer, list(range(spec.outer, n))
        inner_size = math.prod(spec.shape[outer:])
        lines = []
        for k in reduces:
            lines.append(f"__shared__ {REGISTER[spec.exprs[k].dtype]} s{k}[32];")
        lines.append("for (long long r = start + blockIdx.x; r < end; r += gridDim.x) {")
        self.lines = []
        row = self._decompose("r", list(range(outer)), "i") if outer else {}
        row_offsets = self._offsets([row.get(j, "0") for j in range(n)], range(outer))
        row_scope: dict = {}
        for k in reduces:
            e = spec.exprs[k]
            init = literal({"sum": 0, "prod": 1, "max": -math.inf, "min": math.inf}[e.attr]
                            if KIND[e.dtype] == "f" else self._int_init(e.attr, e.dtype),
                            e.dtype)
            # the row-level values the loop needs, computed once per row
            self._row_values(e.args[0], row_scope, row_offsets)
            acc = f"acc{k}"
            self.lines.append(f"{REGISTER[e.dtype]} {acc} = {init};")

            def accumulate(scope, offsets, e=e, acc=acc):
                body = self.value(e.args[0], scope, offsets)
                body = cast(body, self._dtype(e.args[0]), e.dtype)
                self.lines.append(f"{acc} = {self._combine(e, acc, body)};")

            self._inner_loop(inner_dims, inner_size, row_scope, row, accumulate)
            op = {"sum": "ember_sum", "prod": "ember_prod", "max": "ember_maxop",
                  "min": "ember_minop"}[e.attr]
            t = REGISTER[e.dtype]
            self.lines.append(f"{acc} = ember_block_reduce<{t}>({acc}, ({t})({init}), s{k}, "
                              f"{op}<{t}>());")
            row_scope[k] = acc
        row_stores = [s for s in spec.stores if not self._inner_store(s)]
        inner_stores = [s for s in spec.stores if self._inner_store(s)]
        if row_stores:
            for s in row_stores:
                self._row_values(s.expr, row_scope, row_offsets)
            stores = [self.store(s, self.value(s.expr, row_scope, row_offsets), row_offsets)
                      for s in row_stores]
            self.lines.append("if (threadIdx.x == 0) {")
            self.lines += ["    " + line for line in stores]
            self.lines.append("}")
        if inner_stores:
            for s in inner_stores:
                self._row_values(s.expr, row_scope, row_offsets)

            def store_all(scope, offsets):
                for s in inner_stores:
                    self.lines.append(self.store(s, self.value(s.expr, scope, offsets), offsets))

            self._inner_loop(inner_dims, inner_size, row_scope, row, store_all)
        return lines + ["    " + line for line in self.lines] + ["}"]

    @staticmethod
    def _int_init(kind: str, dtype: str) -> int:
        bits = {"int8": 8, "int16": 16, "int32": 32, "int64": 64, "uint8": 8, "bool": 8}[dtype]
        signed = KIND[dtype] == "i"
        if kind == "sum":
            return 0
        if kind == "prod":
            return 1
        if kind == "max":
            return -(1 << (bits - 1)) if signed else 0
        return (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1

    def _combine(self, e, acc: str, value: str) -> str:
        if e.attr == "sum":
            return f"{acc} + {value}"
        if e.attr == "prod":
            return f"{acc} * {value}"
        fn = "ember_max" if e.attr == "max" else "ember_min"
        return f"{fn}({acc}, {value})"

    def _row_values(self, root: int, scope: dict, offsets: dict) -> None:
        for k in self.spec.row_inputs(root, self.level):
            self.value(k, scope, offsets)  # a no-op for a value the row has already

    def _inner_loop(self, inner_dims, inner_size, row_scope, row, body) -> None:
        n = len(self.spec.shape)
        self.lines.append(f"for (long long j = threadIdx.x; j < {inner_size}LL; "
                          "j += blockDim.x) {")
        saved, self.lines = self.lines, []
        index = dict(row)
        if inner_dims:
            index.update(self._decompose("j", inner_dims, "j"))
        offsets = self._offsets([index.get(j, "0") for j in range(n)], range(n))
        body(dict(row_scope), offsets)
        saved += ["    " + line for line in self.lines]
        saved.append("}")
        self.lines = saved


def emit_source(specs, name: str = "ember_kernels") -> str:
    """One CUDA translation unit holding an extern "C" kernel per spec."""
    if isinstance(specs, KernelSpec):
        specs = [specs]
    parts = [f"// {name}: generated by ember from {len(specs)} kernel spec(s)", PRELUDE]
    for spec in specs:
        parts.append(_Kernel(spec).emit())
    return "\n\n".join(parts) + "\n"


def launch_shape(spec: KernelSpec, rows: int) -> tuple[int, int]:
    """(blocks, threads per block) for a call over `rows` rows."""
    if any(e.op == "reduce" for e in spec.exprs):
        return max(1, min(rows, 65535)), REDUCE_BLOCK
    total = rows * math.prod(spec.shape[spec.outer:])
    return max(1, min((total + BLOCK - 1) // BLOCK, 65535)), BLOCK
