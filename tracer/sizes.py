"""Sizes read while tracing with symbolic dims: Python ints that remember their expression.

A trace that makes some argument dims symbolic (ember.script's dynamic shapes, ember.export's
dynamic dims) gives every size read from a traced tensor (x.shape[0], x.size(1), x.numel()) as
a SizeInt: the concrete int this call has, which also knows its expression over the symbols
(s0, s0*4). Arithmetic with ints keeps the expression, so a size computed in Python and passed
back as an attr (a reshape to s0*4) stays symbolic in the graph. A comparison the symbols'
lower bound cannot decide (x.shape[0] > 5) becomes a shape guard, checked against every later
call's sizes (export refuses it: a graph file holds for every size).

Whatever turns a size into something the graph cannot express symbolically (int(), an index,
range(), float arithmetic, a factory's size or fill value, a Python number operand of an op)
*specializes* its symbols: they become exact for this graph, so a wrong value cannot follow.
This is the rule that keeps dynamic graphs correct: a size either stays an expression the
graph recomputes, or it becomes a constant that the guards check.
"""

from __future__ import annotations

import operator

from ..errors import IRError
from ..ir.symbolic import SymInt, definitely_less

_COMPARE = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}


# why a size becomes exact when nothing more precise is known
_PLAIN = "a size used as a plain number (int(), len(), an index, range(), float arithmetic)"


def _is_plain_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, SizeInt)


def evaluate(expr, values: dict) -> int:
    """An expression (SymInt or int) at the given symbol values."""
    return expr.subs(values) if isinstance(expr, SymInt) else expr


def decide(op: str, a, b):
    """Whether a OP b holds for every value of the symbols (True/False), or None when it
    depends on their values."""
    if not isinstance(a, SymInt) and not isinstance(b, SymInt):
        return _COMPARE[op](a, b)
    if op in ("==", "!="):
        if a == b:
            same = True
        elif definitely_less(a, b) or definitely_less(b, a):
            same = False
        else:
            return None
        return same if op == "==" else not same
    try:
        return bool(_COMPARE[op](a, b))
    except IRError:
        return None


class SizeInt(int):
    """A size read from a tensor with symbolic dims while tracing: an int that carries its
    expression. See the module docstring."""

    def __new__(cls, value: int, expr, trace):
        self = int.__new__(cls, value)
        self.value = int.__int__(self)
        self.expr = expr
        self.trace = trace
        return self

    @staticmethod
    def make(value: int, expr, trace):
        """A SizeInt, or the plain int when the expression has no symbol left."""
        return SizeInt(value, expr, trace) if isinstance(expr, SymInt) else value

    def symbolic(self):
        """The expression, with the symbols specialized since it was read made concrete."""
        fixed = self.trace.fixed
        return self.expr.subs(fixed) if fixed and isinstance(self.expr, SymInt) else self.expr

    def specialize(self, why: str = _PLAIN) -> int:
        """This size's symbols become exact for the trace; the plain value."""
        self.trace.fix_expression(self.expr, why)
        return self.value

    # -- arithmetic that stays symbolic --------------------------------------------------

    def _arith(self, other, op, reflected: bool):
        if isinstance(other, SizeInt):
            ov, oe = other.value, other.symbolic()
        elif isinstance(other, int) and not isinstance(other, bool):
            ov = oe = other
        elif isinstance(other, (float, complex)) or type(other).__module__ == "numpy":
            # a float (or numpy) result cannot stay symbolic: the size becomes exact
            self.specialize()
            return op(other, self.value) if reflected else op(self.value, other)
        else:
            return NotImplemented
        if reflected:
            value, expr = op(ov, self.value), (ov, self.symbolic())
        else:
            value, expr = op(self.value, ov), (self.symbolic(), oe)
        try:
            symbolic = op(*expr)
        except (IRError, ZeroDivisionError, TypeError):
            self.specialize()
            if isinstance(other, SizeInt):
                other.specialize()
            return value
        return SizeInt.make(value, symbolic, self.trace)

    def __add__(self, other):
        return self._arith(other, operator.add, False)

    def __radd__(self, other):
        return self._arith(other, operator.add, True)

    def __sub__(self, other):
        return self._arith(other, operator.sub, False)

    def __rsub__(self, other):
        return self._arith(other, operator.sub, True)

    def __mul__(self, other):
        return self._arith(other, operator.mul, False)

    def __rmul__(self, other):
        return self._arith(other, operator.mul, True)

    def __floordiv__(self, other):
        return self._arith(other, operator.floordiv, False)

    def __rfloordiv__(self, other):
        return self._arith(other, operator.floordiv, True)

    def __mod__(self, other):
        return self._arith(other, operator.mod, False)

    def __rmod__(self, other):
        return self._arith(other, operator.mod, True)

    def __neg__(self):
        return SizeInt.make(-self.value, -self.symbolic(), self.trace)

    def __pos__(self):
        return self

    # -- comparisons: decided by the symbols' bounds, or guarded ----------------------------

    def _compare(self, other, op: str):
        if isinstance(other, SizeInt):
            ov, oe = other.value, other.symbolic()
        elif isinstance(other, int):
            ov = oe = int(other)
        elif isinstance(other, float):
            self.specialize()
            return _COMPARE[op](self.value, other)
        else:
            return NotImplemented
        result = _COMPARE[op](self.value, ov)
        a = self.symbolic()
        if decide(op, a, oe) is not result:
            self.trace.size_guard(a, op, oe, result)
        return result

    def __eq__(self, other):
        return self._compare(other, "==")

    def __ne__(self, other):
        return self._compare(other, "!=")

    def __lt__(self, other):
        return self._compare(other, "<")

    def __le__(self, other):
        return self._compare(other, "<=")

    def __gt__(self, other):
        return self._compare(other, ">")

    def __ge__(self, other):
        return self._compare(other, ">=")

    def __bool__(self):
        return self._compare(0, "!=")

    def __hash__(self):
        return hash(self.value)

    # -- everything else makes the size exact ---------------------------------------------

    def __index__(self):
        return self.specialize()

    def __int__(self):
        return self.specialize()

    def __float__(self):
        return float(self.specialize())

    def __complex__(self):
        return complex(self.specialize())

    def __reduce__(self):
        return (int, (self.specialize(),))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def _exact(name):
    method = getattr(int, name)

    def escape(self, *args):
        return method(self.specialize(), *args)

    escape.__name__ = name
    return escape


for _name in ("__truediv__", "__rtruediv__", "__pow__", "__rpow__", "__divmod__",
              "__rdivmod__", "__lshift__", "__rlshift__", "__rshift__", "__rrshift__",
              "__and__", "__rand__", "__or__", "__ror__", "__xor__", "__rxor__", "__invert__",
              "__abs__", "__round__", "__trunc__", "__floor__", "__ceil__", "bit_length",
              "to_bytes", "conjugate", "as_integer_ratio"):
    setattr(SizeInt, _name, _exact(_name))


def _map(value, leaf):
    """value with leaf(s) for every SizeInt s in it (also inside lists, tuples and dicts)."""
    if isinstance(value, SizeInt):
        return leaf(value)
    if isinstance(value, (list, tuple)):
        items = [_map(v, leaf) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: _map(v, leaf) for k, v in value.items()}
    return value


def has_sizes(value) -> bool:
    if isinstance(value, SizeInt):
        return True
    if isinstance(value, (list, tuple)):
        return any(has_sizes(v) for v in value)
    if isinstance(value, dict):
        return any(has_sizes(v) for v in value.values())
    return False


def concrete(value):
    """value with every SizeInt in it a plain int (value itself when it holds none)."""
    return _map(value, lambda size: size.value) if has_sizes(value) else value


def symbolic(value):
    """value with every SizeInt in it its expression (a SymInt, or an int once specialized)."""
    return _map(value, SizeInt.symbolic)


def specialize_all(value, why: str = _PLAIN) -> None:
    """Make every SizeInt in value exact (a factory's arguments, an op's number operand)."""
    _map(value, lambda size: size.specialize(why))
