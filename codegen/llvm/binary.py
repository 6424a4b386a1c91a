"""LLVM IR for a large same-shape add, subtract or multiply of two float arrays, as a pool task:
the eager kernels of those ops on arrays worth sharing between threads (numpy runs them on one;
inside a training step they are memory-bound passes, the residual adds and the gradient sums,
and a second core's bandwidth halves them, as PyTorch's OpenMP loops do).

The task (windows.run_task's calling convention: argv words, then [start, end)) computes
out[i] = x[i] op y[i]. The in-place form reads and writes x itself (x op= y), so the loop reads
through one pointer what it writes and LLVM's vectorizer checks only x against y. The float
operations are IEEE's own (no contraction, no fast-math), so every result equals numpy's.
"""

from __future__ import annotations

from .unary import FLOAT_TYPES, map_task

OPS = {"add": "fadd", "subtract": "fsub", "multiply": "fmul"}  # numpy's names -> LLVM's


def binary_name(op: str, dtype: str, in_place: bool) -> str:
    return f"ember_binary_{op}_{dtype}{'_into' if in_place else ''}"


def binary_ir(op: str, dtype: str, in_place: bool) -> str:
    """The task out[i] = x[i] op y[i] for i in [start, end). argv: x, y, out (in place: x, y;
    out is x)."""
    ty = FLOAT_TYPES[dtype]

    def element(b, pointers, i):
        x, y = pointers[:2]
        out = x if in_place else pointers[2]
        a = b.load(b.gep(x, [i], inbounds=True, source_etype=ty), typ=ty)
        c = b.load(b.gep(y, [i], inbounds=True, source_etype=ty), typ=ty)
        b.store(getattr(b, OPS[op])(a, c), b.gep(out, [i], inbounds=True, source_etype=ty))

    return map_task(binary_name(op, dtype, in_place), 2 if in_place else 3, element)
