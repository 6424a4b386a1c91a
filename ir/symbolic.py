"""Symbolic sizes: SymInt, an integer expression over named dimensions (B, B*16, (H - 1)//2 + 1).

A tensor dimension in the IR is an int or a SymInt. A SymInt is kept in one canonical form, a
sum of integer multiples of products of atoms, where an atom is a symbol or a floor division or
remainder that could not be simplified. So equality is structural (B*4 == 4*B), products and
exact quotients of the same symbols simplify ((B*16)//4 == B*4, (B*H)//H == B), and an
expression that turns out constant is returned as a plain int: a SymInt is never a number.

Symbols stand for sizes of at least 2, as in PyTorch's dynamic shapes, where 0 and 1 are
specialized: so B broadcasts against 1, B == 1 is False, and B - 2 < 0 is decidably False.
An ordering that depends on the symbols' values cannot be decided and raises an IRError; type
rules use definitely_less() for checks that should fail only when the mistake is certain.
"""

from __future__ import annotations

import re

from ..errors import IRError

SYMBOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# words the IR text gives to literals, so they cannot name a size
RESERVED = frozenset({"None", "True", "False", "inf", "nan"})
# the least value a symbol stands for (0 and 1 are specialized, never symbolic)
SYMBOL_MIN = 2


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _operand_text(value) -> str:
    """An operand of // or % as text: bare when it is a symbol or a non-negative int."""
    if isinstance(value, int):
        return str(value) if value >= 0 else f"({value})"
    return str(value) if value.is_symbol else f"({value})"


class _Atom:
    """A factor of a monomial: a symbol, or an opaque floor division or remainder."""

    __slots__ = ("_hash", "den", "key", "kind", "name", "num")

    def __init__(self, kind: str, name: str | None = None, num=None, den=None):
        self.kind = kind  # "sym" | "//" | "%"
        self.name = name
        self.num = num  # an int or a SymInt, for "//" and "%"
        self.den = den
        if kind == "sym":
            self.key = name
        else:
            self.key = f"{_operand_text(num)}{kind}{_operand_text(den)}"
        self._hash = hash(self.key)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Atom) and self.key == other.key

    def __hash__(self) -> int:
        return self._hash

    def lower_bound(self) -> int | None:
        if self.kind == "sym":
            return SYMBOL_MIN
        low = lower_bound(self.num)
        if low is None or low < 0 or not (isinstance(self.den, SymInt) or self.den > 0):
            return None
        if self.kind == "%":
            return 0
        return low // self.den if isinstance(self.den, int) else 0

    def substitute(self, values: dict):
        if self.kind == "sym":
            return values.get(self.name, SymInt(self.name))
        num = self.num.subs(values) if isinstance(self.num, SymInt) else self.num
        den = self.den.subs(values) if isinstance(self.den, SymInt) else self.den
        return num // den if self.kind == "//" else num % den

    def symbols(self) -> set:
        if self.kind == "sym":
            return {self.name}
        return {
            name
            for operand in (self.num, self.den)
            if isinstance(operand, SymInt)
            for name in operand.free_symbols
        }


def _sorted_monomial(powers: dict) -> tuple:
    return tuple(sorted(powers.items(), key=lambda item: item[0].key))


def _monomial_key(monomial) -> tuple:
    # more factors first, then symbols before divisions, then by text: B*H, B, H, H//2, 1
    return (-sum(p for _, p in monomial), [(a.kind != "sym", a.key, -p) for a, p in monomial])


def _mul_monomials(a: tuple, b: tuple) -> tuple:
    if not a:
        return b
    if not b:
        return a
    powers = dict(a)
    for atom, p in b:
        powers[atom] = powers.get(atom, 0) + p
    return _sorted_monomial(powers)


def _div_monomials(a: tuple, b: tuple) -> tuple | None:
    """a / b when b divides a, else None."""
    powers = dict(a)
    for atom, p in b:
        left = powers.get(atom, 0) - p
        if left < 0:
            return None
        if left:
            powers[atom] = left
        else:
            del powers[atom]
    return _sorted_monomial(powers)


def _from_terms(terms: dict):
    """The canonical value of a sum of terms: an int when no symbol is left, else a SymInt."""
    terms = {m: c for m, c in terms.items() if c}
    if not terms:
        return 0
    if len(terms) == 1 and () in terms:
        return terms[()]
    expr = object.__new__(SymInt)
    expr._terms = tuple(sorted(terms.items(), key=lambda item: _monomial_key(item[0])))
    expr._hash = hash(expr._terms)
    return expr


def _terms_of(value) -> dict:
    if isinstance(value, SymInt):
        return dict(value._terms)
    return {(): value} if value else {}


def _is_operand(value) -> bool:
    return isinstance(value, SymInt) or _is_int(value)


class SymInt:
    """An integer expression over named sizes, in canonical form; see the module docstring.

    SymInt("B") is the symbol B; arithmetic (+, -, *, //, %) with ints and other SymInts builds
    expressions. A SymInt is immutable and hashable, and prints as it parses back: B*16,
    (H - 1)//2 + 1.
    """

    __slots__ = ("_hash", "_terms")

    def __init__(self, name: str):
        if not isinstance(name, str) or not SYMBOL_NAME.match(name) or name in RESERVED:
            raise IRError(
                f"a size symbol is named by an identifier other than "
                f"{', '.join(sorted(RESERVED))}; got {name!r}"
            )
        self._terms = ((((_Atom("sym", name), 1),), 1),)
        self._hash = hash(self._terms)

    # -- structure -------------------------------------------------------------------------

    @property
    def is_symbol(self) -> bool:
        """Whether this is a bare symbol (B), not a compound expression."""
        if len(self._terms) != 1:
            return False
        monomial, coeff = self._terms[0]
        return (
            coeff == 1
            and len(monomial) == 1
            and monomial[0][1] == 1
            and monomial[0][0].kind == "sym"
        )

    @property
    def free_symbols(self) -> frozenset:
        """The names of the symbols this expression depends on."""
        found = set()
        for monomial, _ in self._terms:
            for atom, _ in monomial:
                found |= atom.symbols()
        return frozenset(found)

    def subs(self, values: dict):
        """This expression with symbols replaced (a dict of names to ints or SymInts): an int
        when no symbol is left."""
        total = 0
        for monomial, coeff in self._terms:
            term = coeff
            for atom, p in monomial:
                factor = atom.substitute(values)
                for _ in range(p):
                    term = term * factor
            total = total + term
        return total

    # -- equality and hashing: structural --------------------------------------------------

    def __eq__(self, other) -> bool:
        if isinstance(other, SymInt):
            return self._hash == other._hash and self._terms == other._terms
        return False  # a SymInt is never constant, so never equal to a number

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return self._hash

    # -- arithmetic ------------------------------------------------------------------------

    def __add__(self, other):
        if not _is_operand(other):
            return NotImplemented
        terms = dict(self._terms)
        for m, c in _terms_of(other).items():
            terms[m] = terms.get(m, 0) + c
        return _from_terms(terms)

    __radd__ = __add__

    def __neg__(self):
        return _from_terms({m: -c for m, c in self._terms})

    def __pos__(self):
        return self

    def __sub__(self, other):
        if not _is_operand(other):
            return NotImplemented
        return self + (-other)

    def __rsub__(self, other):
        if not _is_int(other):
            return NotImplemented
        return (-self) + other

    def __mul__(self, other):
        if not _is_operand(other):
            return NotImplemented
        terms: dict = {}
        for ma, ca in self._terms:
            for mb, cb in _terms_of(other).items():
                m = _mul_monomials(ma, mb)
                terms[m] = terms.get(m, 0) + ca * cb
        return _from_terms(terms)

    __rmul__ = __mul__

    def __floordiv__(self, other):
        return _floordiv(self, other) if _is_operand(other) else NotImplemented

    def __rfloordiv__(self, other):
        return _floordiv(other, self) if _is_int(other) else NotImplemented

    def __mod__(self, other):
        return _mod(self, other) if _is_operand(other) else NotImplemented

    def __rmod__(self, other):
        return _mod(other, self) if _is_int(other) else NotImplemented

    # -- ordering: only where it is decidable ----------------------------------------------

    def _decide(self, claim: str, holds: bool, fails: bool) -> bool:
        if holds:
            return True
        if fails:
            return False
        raise IRError(f"cannot decide whether {self} {claim}: it depends on the sizes' values")

    def __lt__(self, other):
        if not _is_operand(other):
            return NotImplemented
        return self._decide(
            f"< {other}", definitely_less(self, other), definitely_less_equal(other, self)
        )

    def __le__(self, other):
        if not _is_operand(other):
            return NotImplemented
        return self._decide(
            f"<= {other}", definitely_less_equal(self, other), definitely_less(other, self)
        )

    def __gt__(self, other):
        if not _is_operand(other):
            return NotImplemented
        return self._decide(
            f"> {other}", definitely_less(other, self), definitely_less_equal(self, other)
        )

    def __ge__(self, other):
        if not _is_operand(other):
            return NotImplemented
        return self._decide(
            f">= {other}", definitely_less_equal(other, self), definitely_less(self, other)
        )

    def __bool__(self) -> bool:
        # structurally never 0, yet H - 2 is 0 when H is 2: answer only when it is certain
        return self._decide("!= 0", definitely_less(0, self), False)

    def __index__(self) -> int:
        raise IRError(f"the symbolic size {self} has no concrete value here")

    __int__ = __index__

    # -- text ------------------------------------------------------------------------------

    def __str__(self) -> str:
        parts = []
        for monomial, coeff in self._terms:
            size = abs(coeff)
            if not monomial:
                text = str(size)
            else:
                factors = []
                for atom, p in monomial:
                    # a division prints bare only as a whole term: B*(H//2), not B*H//2
                    bare = atom.kind == "sym" or (len(monomial) == 1 and p == 1 and coeff == 1)
                    factors += [atom.key if bare else f"({atom.key})"] * p
                if size != 1:
                    factors.append(str(size))
                text = "*".join(factors)
            if not parts:
                parts.append(text if coeff > 0 else "-" + text)
            else:
                parts.append(f" {'+' if coeff > 0 else '-'} {text}")
        return "".join(parts)

    def __repr__(self) -> str:
        return f"SymInt({str(self)!r})"

    def __reduce__(self):
        return (_rebuild, (self._terms,))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def _rebuild(terms):
    return _from_terms(dict(terms))


def symbol(name: str) -> SymInt:
    """The size named `name` (an identifier), as a SymInt."""
    return SymInt(name)


def symbols(names: str) -> tuple:
    """symbols("B H W") -> (B, H, W)."""
    return tuple(SymInt(n) for n in names.split())


def is_symbolic(value) -> bool:
    return isinstance(value, SymInt)


# -- division ------------------------------------------------------------------------------


def _exact_quotient(num: dict, den: dict) -> dict | None:
    """num / den as terms when den divides num exactly, else None."""
    if len(den) == 1:
        ((dm, dc),) = den.items()
        out = {}
        for m, c in num.items():
            q = _div_monomials(m, dm)
            if q is None or c % dc:
                return None
            out[q] = c // dc
        return out
    # a divisor of several terms divides num exactly when num is an integer multiple of it
    first_m, first_c = next(iter(den.items()))
    if first_m not in num or num[first_m] % first_c:
        return None
    k = num[first_m] // first_c
    if len(num) != len(den) or any(num.get(m) != c * k for m, c in den.items()):
        return None
    return {(): k}


def _split_by_int(num: dict, den: int) -> tuple:
    """(q, r) with num == den*q + r, where q takes every term whose coefficient is a multiple
    of den and r keeps the rest, its constant in [0, den)."""
    q, r = {}, {}
    for m, c in num.items():
        if m and c % den:
            r[m] = c
        else:
            q[m] = c // den
    constant = num.get((), 0)
    q[()] = constant // den
    r[()] = constant % den
    return q, r


def _opaque(kind: str, a, b) -> SymInt:
    return _from_terms({((_Atom(kind, num=a, den=b), 1),): 1})


def _floordiv(a, b):
    if b == 0:
        raise ZeroDivisionError(f"symbolic size {a} divided by zero")
    num, den = _terms_of(a), _terms_of(b)
    if not num:
        return 0
    exact = _exact_quotient(num, den)
    if exact is not None:
        return _from_terms(exact)
    if not (_is_int(b) and b > 0):
        return _opaque("//", a, b)
    # (b*q + r) // b == q + r // b when q is integer-valued
    q, r = _split_by_int(num, b)
    rest = _from_terms(r)
    if isinstance(rest, int):  # in [0, b)
        return _from_terms(q)
    if len(rest._terms) == 1:
        ((monomial, coeff),) = rest._terms
        if coeff == 1 and len(monomial) == 1 and monomial[0][1] == 1:
            atom = monomial[0][0]
            if atom.kind == "//" and _is_int(atom.den) and atom.den > 0:
                # (x // c) // b == x // (c*b) for positive c and b
                return _from_terms(q) + _opaque("//", atom.num, atom.den * b)
    return _from_terms(q) + _opaque("//", rest, b)


def _mod(a, b):
    if b == 0:
        raise ZeroDivisionError(f"symbolic size {a} modulo zero")
    num, den = _terms_of(a), _terms_of(b)
    if not num or _exact_quotient(num, den) is not None:
        return 0
    if not (_is_int(b) and b > 0):
        return _opaque("%", a, b)
    # (b*q + r) % b == r % b when q is integer-valued
    rest = _from_terms(_split_by_int(num, b)[1])
    return rest if isinstance(rest, int) else _opaque("%", rest, b)


# -- bounds --------------------------------------------------------------------------------


def lower_bound(value) -> int | None:
    """The least value `value` takes when every symbol is at least SYMBOL_MIN, or None when
    no bound is known (a negative multiple of a symbol is unbounded below)."""
    if isinstance(value, int):
        return value
    total = 0
    for monomial, coeff in value._terms:
        if not monomial:
            total += coeff
            continue
        if coeff < 0:
            return None
        low = coeff
        for atom, p in monomial:
            atom_low = atom.lower_bound()
            if atom_low is None:
                return None
            low *= atom_low**p
        total += low
    return total


def definitely_less(a, b) -> bool:
    """Whether a < b for every value of the symbols (for ints, simply a < b)."""
    if a.__class__ is int and b.__class__ is int:
        return a < b
    low = lower_bound(b - a)
    return low is not None and low > 0


def definitely_less_equal(a, b) -> bool:
    """Whether a <= b for every value of the symbols."""
    if a.__class__ is int and b.__class__ is int:
        return a <= b
    low = lower_bound(b - a)
    return low is not None and low >= 0


__all__ = [
    "SymInt",
    "definitely_less",
    "definitely_less_equal",
    "is_symbolic",
    "lower_bound",
    "symbol",
    "symbols",
]
