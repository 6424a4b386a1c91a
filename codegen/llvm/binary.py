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

from llvmlite import ir

_TYPES = {"float32": ir.FloatType(), "float64": ir.DoubleType()}
_I64 = ir.IntType(64)
OPS = {"add": "fadd", "subtract": "fsub", "multiply": "fmul"}  # numpy's names -> LLVM's


def binary_name(op: str, dtype: str, in_place: bool) -> str:
    return f"ember_binary_{op}_{dtype}{'_into' if in_place else ''}"


def binary_ir(op: str, dtype: str, in_place: bool) -> str:
    """The task out[i] = x[i] op y[i] for i in [start, end). argv: x, y, out (in place: x, y;
    out is x)."""
    ty = _TYPES[dtype]
    name = binary_name(op, dtype, in_place)
    module = ir.Module(name=name)
    ptr = ir.PointerType()
    task = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr, _I64, _I64]), name)
    argv, start, end = task.args
    entry, loop, done = (task.append_basic_block(n) for n in ("entry", "loop", "exit"))
    b = ir.IRBuilder(entry)

    def word(k):
        return b.load(b.gep(argv, [ir.Constant(_I64, k)], source_etype=_I64), typ=ptr)

    x, y = word(0), word(1)
    out = x if in_place else word(2)
    b.cbranch(b.icmp_signed("<", start, end), loop, done)
    b.position_at_end(loop)
    i = b.phi(_I64)
    i.add_incoming(start, entry)
    a = b.load(b.gep(x, [i], inbounds=True, source_etype=ty), typ=ty)
    c = b.load(b.gep(y, [i], inbounds=True, source_etype=ty), typ=ty)
    value = getattr(b, OPS[op])(a, c)
    b.store(value, b.gep(out, [i], inbounds=True, source_etype=ty))
    after = b.add(i, ir.Constant(_I64, 1))
    i.add_incoming(after, b.block)
    b.cbranch(b.icmp_signed("<", after, end), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return str(module)
