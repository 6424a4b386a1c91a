"""Run the CUDA C that codegen/cuda/emit.py generates on the CPU, to check what it computes
where no GPU is at hand.

The generated translation unit is compiled by the host C++ compiler with a small harness in
front of it: `__global__`/`__device__` vanish, `__shared__` arrays become statics (blocks run
one after another, so a block's threads share them), and a launch runs every thread of a
block as a real thread, with `__syncthreads()` a barrier over the block and
`__shfl_down_sync` an exchange through memory between two barriers of the warp. float16 is
g++'s `_Float16` (round to nearest even, as `__float2half`).

This checks the generated indexing, loops, reductions and dtype handling, not the GPU: the
device's own math library, memory model and launch limits remain unverified without one.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

import numpy as np
from ember.codegen.cuda.emit import STORAGE
from ember.runtime.program import run_eager_step

CXX = shutil.which("g++")
BLOCK = 64  # two warps: the reductions' cross-warp step runs too
GRID = 3  # few blocks, so every grid-stride loop goes around

HARNESS = r"""
#include <cmath>
#include <cstring>
#include <functional>
#include <pthread.h>
#include <thread>
#include <vector>
using namespace std;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

typedef _Float16 __half;
static inline float __half2float(__half h) { return (float)h; }
static inline __half __float2half(float f) { return (__half)f; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline double __longlong_as_double(long long i) { double d; memcpy(&d, &i, 8); return d; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }

struct alignas(16) float4 { float x, y, z, w; };

struct ember_dim3 { unsigned x = 0, y = 1, z = 1; };
static thread_local ember_dim3 threadIdx, blockIdx;
static ember_dim3 blockDim, gridDim;
static pthread_barrier_t ember_block_barrier;
static pthread_barrier_t ember_warp_barrier[32];
static unsigned char ember_slots[1024 * 8];

static inline void __syncthreads() { pthread_barrier_wait(&ember_block_barrier); }

template <typename T> T __shfl_down_sync(unsigned, T v, int offset) {
    T* slots = reinterpret_cast<T*>(ember_slots);
    unsigned warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    slots[threadIdx.x] = v;
    pthread_barrier_wait(&ember_warp_barrier[warp]);
    T r = lane + offset < 32 ? slots[threadIdx.x + offset] : v;
    pthread_barrier_wait(&ember_warp_barrier[warp]);
    return r;
}

static void ember_launch(unsigned grid, unsigned block, const function<void()>& kernel) {
    gridDim.x = grid;
    blockDim.x = block;
    pthread_barrier_init(&ember_block_barrier, nullptr, block);
    for (unsigned w = 0; w < block / 32; ++w)
        pthread_barrier_init(&ember_warp_barrier[w], nullptr, 32);
    for (unsigned b = 0; b < grid; ++b) {
        vector<thread> threads;
        for (unsigned t = 0; t < block; ++t)
            threads.emplace_back([&kernel, b, t] {
                blockIdx.x = b;
                threadIdx.x = t;
                kernel();
            });
        for (auto& th : threads) th.join();
    }
    pthread_barrier_destroy(&ember_block_barrier);
    for (unsigned w = 0; w < block / 32; ++w) pthread_barrier_destroy(&ember_warp_barrier[w]);
}
"""


def _translation_unit(program) -> str:
    source = program.cuda_source.replace("#include <cuda_fp16.h>", "")
    launchers = []
    for kind, step, _ in program.steps:
        if kind != "native":
            continue
        spec = step.spec
        casts = ", ".join(f"({STORAGE[d]}*)a[{i}]" for i, d in enumerate(spec.args))
        launchers.append(
            f'extern "C" void launch_{spec.name}(void** a, long long start, long long end, '
            f"unsigned grid, unsigned block) {{\n"
            f"    ember_launch(grid, block, [&] {{ {spec.name}({casts}, start, end); }});\n}}")
    return "\n".join([HARNESS, source, *launchers]) + "\n"


class Emulated:
    """A CUDA-backend CompiledProgram, its kernels built for the host and run as above."""

    def __init__(self, program, workdir: str | None = None):
        self.program = program
        unit = _translation_unit(program)
        digest = hashlib.sha256(unit.encode()).hexdigest()[:16]
        workdir = workdir or tempfile.mkdtemp(prefix="ember-cuda-emu-")
        src = os.path.join(workdir, f"{digest}.cpp")
        lib = os.path.join(workdir, f"{digest}.so")
        with open(src, "w") as f:
            f.write(unit)
        result = subprocess.run(
            [CXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-pthread", "-w", src, "-o", lib],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"the generated CUDA C does not build on the host:\n"
                               f"{result.stderr[-4000:]}")
        self.library = ctypes.CDLL(lib)

    def __call__(self, arrays):
        program = self.program
        values = [None] * program.size
        values[: program.n_inputs] = arrays
        values[program.n_inputs : program.n_inputs + len(program.constants)] = program.constants
        keep = []
        for kind, step, _ in program.steps:
            if kind == "eager":
                with np.errstate(all="ignore"):
                    run_eager_step(np, values, step)
                continue
            pointers = []
            for index in step.inputs:
                a = values[index] = np.ascontiguousarray(values[index])
                pointers.append(a.ctypes.data)
            for index, shape, dtype, _, _ in step.outputs:
                out = values[index] = np.empty(shape, dtype)
                pointers.append(out.ctypes.data)
            argv = (ctypes.c_void_p * len(pointers))(*pointers)
            keep.append(argv)
            launch = getattr(self.library, f"launch_{step.spec.name}")
            launch.argtypes = [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_longlong,
                               ctypes.c_uint, ctypes.c_uint]
            launch(argv, 0, step.rows, GRID, BLOCK)
        return [values[i] for i in program.outputs]
