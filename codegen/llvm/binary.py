"""LLVM IR for a large add, subtract, multiply or divide of float arrays, as a pool task: the
eager kernels of those ops on arrays worth sharing between threads (numpy runs them on one;
inside a training step they are memory-bound passes, the residual adds, the activations' scalar
products and the gradient sums, and a second core's bandwidth halves them, as PyTorch's OpenMP
loops do).

The task (windows.run_task's calling convention: argv words, then [start, end)) computes
out[i] = x[i] op y[i], where one side may be a scalar that every element reads (`form`):

    "arrays"  x and y arrays of one shape       "right"  y a scalar: x[i] op y
    "into"    in place: x op= y (arrays)        "left"   x a scalar: x op y[i]
    "right_into"  in place: x op= y, y a scalar

The in-place forms read and write x itself, so the loop reads through one pointer what it
writes and LLVM's vectorizer checks only x against y. A scalar is loaded ahead of the loop,
once per chunk of rows the pool runs: so it must not be memory the call writes (the caller
copies one that is). The float operations are IEEE's own (no contraction, no fast-math), so
every result equals numpy's.
"""

from __future__ import annotations

from .unary import FLOAT_TYPES, map_task

# numpy's names: LLVM's
OPS = {"add": "fadd", "subtract": "fsub", "multiply": "fmul", "true_divide": "fdiv"}
FORMS = ("arrays", "into", "right", "right_into", "left")
_IN_PLACE = ("into", "right_into")


def binary_name(op: str, dtype: str, form: str) -> str:
    return f"ember_binary_{op}_{dtype}" + ("" if form == "arrays" else f"_{form}")


def binary_ir(op: str, dtype: str, form: str) -> str:
    """The task out[i] = x op y for i in [start, end), x and y each an array's element or a
    scalar (see the module's forms). argv: x, y, out (in place: x, y; out is x)."""
    ty = FLOAT_TYPES[dtype]
    in_place = form in _IN_PLACE
    scalar = {"right": 1, "right_into": 1, "left": 0}.get(form)
    held = {}

    def before(b, pointers):
        if scalar is not None:
            held["scalar"] = b.load(pointers[scalar], typ=ty)

    def operand(b, pointers, k, i):
        if k == scalar:
            return held["scalar"]
        return b.load(b.gep(pointers[k], [i], inbounds=True, source_etype=ty), typ=ty)

    def element(b, pointers, i):
        out = pointers[0] if in_place else pointers[2]
        value = getattr(b, OPS[op])(operand(b, pointers, 0, i), operand(b, pointers, 1, i))
        b.store(value, b.gep(out, [i], inbounds=True, source_etype=ty))

    return map_task(binary_name(op, dtype, form), 2 if in_place else 3, element, before)
