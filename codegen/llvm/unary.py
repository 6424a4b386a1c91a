"""LLVM IR for one inline math function mapped over an array: the eager kernel of the ops whose
numpy form is slow or missing (erf: numpy has none, and a Python call per element costs ~100x),
so eager and compiled code compute them with the same instructions (codegen/llvm/mathlib.py).

The task (windows.task_header's calling convention: argv words, then [start, end)) reads
x[start:end] and writes out[start:end]; its loop has no calls, so LLVM vectorizes it.
"""

from __future__ import annotations

from llvmlite import ir

from . import mathlib

_TYPES = {"float32": ir.FloatType(), "float64": ir.DoubleType()}
_I64 = ir.IntType(64)


def unary_name(op: str, dtype: str) -> str:
    return f"ember_unary_{op}_{dtype}"


def unary_ir(op: str, dtype: str) -> str:
    """The task out[i] = op(x[i]) for i in [start, end). argv: x, out."""
    ty = _TYPES[dtype]
    module = ir.Module(name=unary_name(op, dtype))
    ptr = ir.PointerType()
    task = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr, _I64, _I64]),
                       unary_name(op, dtype))
    argv, start, end = task.args
    entry, loop, done = (task.append_basic_block(n) for n in ("entry", "loop", "exit"))
    b = ir.IRBuilder(entry)
    x = b.load(b.gep(argv, [ir.Constant(_I64, 0)], source_etype=_I64), typ=ptr)
    out = b.load(b.gep(argv, [ir.Constant(_I64, 1)], source_etype=_I64), typ=ptr)
    b.cbranch(b.icmp_signed("<", start, end), loop, done)
    b.position_at_end(loop)
    i = b.phi(_I64)
    i.add_incoming(start, entry)
    value = b.load(b.gep(x, [i], inbounds=True, source_etype=ty), typ=ty)
    b.store(mathlib.emit(op, b, value), b.gep(out, [i], inbounds=True, source_etype=ty))
    after = b.add(i, ir.Constant(_I64, 1))
    i.add_incoming(after, b.block)
    b.cbranch(b.icmp_signed("<", after, end), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return str(module)
