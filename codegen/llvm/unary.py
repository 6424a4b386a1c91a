"""LLVM IR for one inline math function mapped over an array: the eager kernel of the ops whose
numpy form is slow or missing (erf: numpy has none, and a Python call per element costs ~100x),
so eager and compiled code compute them with the same instructions (codegen/llvm/mathlib.py).

The task (windows.task_header's calling convention: argv words, then [start, end)) reads
x[start:end] and writes out[start:end]; its loop has no calls, so LLVM vectorizes it.
"""

from __future__ import annotations

from llvmlite import ir

from . import mathlib
from .emit import counted_loop

FLOAT_TYPES = {"float32": ir.FloatType(), "float64": ir.DoubleType()}
_I64 = ir.IntType(64)


def unary_name(op: str, dtype: str) -> str:
    return f"ember_unary_{op}_{dtype}"


def map_task(name: str, words: int, element, before=None) -> str:
    """The module of a pool task `name` (argv, start, end) that reads `words` pointers from
    argv and calls element(b, pointers, i) for i in [start, end): a loop without calls, which
    LLVM vectorizes. before(b, pointers), given, runs once ahead of the loop (what every
    element reads: a scalar operand). unary_ir's and binary.py's tasks."""
    module = ir.Module(name=name)
    ptr = ir.PointerType()
    task = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr, _I64, _I64]), name)
    argv, start, end = task.args
    b = ir.IRBuilder(task.append_basic_block("entry"))
    pointers = [b.load(b.gep(argv, [ir.Constant(_I64, k)], source_etype=_I64), typ=ptr)
                for k in range(words)]
    if before is not None:
        before(b, pointers)
    counted_loop(b, start, end, lambda i: element(b, pointers, i))
    b.ret_void()
    return str(module)


def unary_ir(op: str, dtype: str) -> str:
    """The task out[i] = op(x[i]) for i in [start, end). argv: x, out."""
    ty = FLOAT_TYPES[dtype]

    def element(b, pointers, i):
        x, out = pointers
        value = b.load(b.gep(x, [i], inbounds=True, source_etype=ty), typ=ty)
        b.store(mathlib.emit(op, b, value), b.gep(out, [i], inbounds=True, source_etype=ty))

    return map_task(unary_name(op, dtype), 2, element)
