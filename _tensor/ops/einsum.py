"""ember.einsum: Einstein summation, written from primitives (diagonal, sum, permute, reshape,
expand, matmul), so it is traced, differentiated and compiled like them. Operands are
contracted left to right, each pair as one batched matrix product."""

from __future__ import annotations

import builtins
import math

from ...errors import runtime_error
from ..tensor import Tensor
from .arrange import diagonal
from .elementwise import cast
from .nn import matmul
from .reduce import sum
from .shape import expand, permute, reshape

_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _parse(equation: str, operands) -> tuple[list, str]:
    """Each operand's subscripts and the output's, with the ellipsis spelled out as letters of
    their own (chr(0x100 + k) for its k-th dim from the right)."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise runtime_error(f"einsum(): {len(terms)} operand subscripts in {equation!r} for "
                          f"{len(operands)} operands")
    spelled, widest = [], 0
    for term, x in zip(terms, operands):
        if term.count("...") > 1 or "." in term.replace("...", ""):
            raise runtime_error(f"einsum(): invalid subscripts {term!r}: at most one ellipsis")
        letters = term.replace("...", "")
        bad = [c for c in letters if c not in _LETTERS]
        if bad:
            raise runtime_error(f"einsum(): invalid subscript {bad[0]!r}: letters a-z, A-Z only")
        if "..." in term:
            width = x.ndim - len(letters)
            if width < 0:
                raise runtime_error(f"einsum(): the subscripts {term!r} have more dims than "
                                    f"the operand's {x.ndim}")
            widest = builtins.max(widest, width)
            term = term.replace("...", "".join(chr(0x100 + k) for k in reversed(range(width))))
        elif len(term) != x.ndim:
            raise runtime_error(f"einsum(): the subscripts {term!r} name {len(term)} dims for "
                                f"an operand of {x.ndim} dims (shape {list(x.shape)})")
        spelled.append(term)
    ellipsis = "".join(chr(0x100 + k) for k in reversed(range(widest)))
    if arrow:
        if rhs.count("...") > 1 or any(c not in _LETTERS for c in rhs.replace("...", "")):
            raise runtime_error(f"einsum(): invalid output subscripts {rhs!r}")
        out = rhs.replace("...", ellipsis)
        seen = "".join(spelled)
        for c in out:
            if c not in seen:
                raise runtime_error(f"einsum(): output subscript {c!r} appears in no operand")
            if out.count(c) > 1:
                raise runtime_error(f"einsum(): output subscript {c!r} appears more than once")
    else:  # implicit: the ellipsis, then the letters seen once, in alphabetical order
        counts = {}
        for c in "".join(t.replace("...", "") for t in terms):
            counts[c] = counts.get(c, 0) + 1
        out = ellipsis + "".join(sorted(c for c, n in counts.items() if n == 1))
    return spelled, out


def _take_diagonals(x: Tensor, term: str) -> tuple[Tensor, str]:
    """A letter repeated within one operand ("ii") reads its diagonal."""
    while True:
        repeated = next((c for c in term if term.count(c) > 1), None)
        if repeated is None:
            return x, term
        first = term.index(repeated)
        second = term.index(repeated, first + 1)
        if x.shape[first] != x.shape[second]:
            raise runtime_error(f"einsum(): subscript {repeated!r} is repeated for dims of "
                                f"sizes {x.shape[first]} and {x.shape[second]}")
        x = diagonal(x, 0, first, second)
        term = term[:first] + term[first + 1:second] + term[second + 1:] + repeated


def _sum_out(x: Tensor, term: str, keep: set) -> tuple[Tensor, str]:
    dims = [i for i, c in enumerate(term) if c not in keep]
    if not dims:
        return x, term
    return sum(x, dims), "".join(c for c in term if c in keep)


def _contract(a: Tensor, la: str, b: Tensor, lb: str, needed: set):
    """a (subscripts la) and b (lb) as one batched product: shared letters still needed are
    batch dims, shared letters no longer needed are summed (the product's inner dim)."""
    batch = [c for c in la if c in lb and c in needed]
    inner = [c for c in la if c in lb and c not in needed]
    a_only = [c for c in la if c not in lb]
    b_only = [c for c in lb if c not in la]
    size = {}
    for term, x in ((la, a), (lb, b)):
        for c, n in zip(term, x.shape):
            if size.get(c, 1) == 1:
                size[c] = n
            elif n not in (1, size[c]):
                raise runtime_error(f"einsum(): subscript {c!r} has size {size[c]} in one "
                                    f"operand and {n} in another")

    def arrange(x, term, order, out_shape):
        x = permute(x, *[term.index(c) for c in order])
        return reshape(expand(x, *[size[c] for c in order]), *out_shape)

    nb = math.prod(size[c] for c in batch)
    m, k, n = (math.prod(size[c] for c in cs) for cs in (a_only, inner, b_only))
    left = arrange(a, la, batch + a_only + inner, (nb, m, k))
    right = arrange(b, lb, batch + inner + b_only, (nb, k, n))
    out = reshape(matmul(left, right), *[size[c] for c in batch + a_only + b_only])
    return out, "".join(batch + a_only + b_only)


def einsum(equation: str, *operands) -> Tensor:
    """Einstein summation over the operands: einsum("bij,bjk->bik", a, b), with "..." for
    broadcast dims, repeated subscripts for diagonals and an implicit output when no "->"."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands or not all(isinstance(x, Tensor) for x in operands):
        raise runtime_error("einsum(): expected at least one tensor operand")
    # bool operands count (their sums and products are integers), as PyTorch's einsum does
    operands = tuple(cast(x, "int64") if x.dtype.name == "bool" else x for x in operands)
    terms, out = _parse(equation, operands)
    pairs = [_take_diagonals(x, t) for x, t in zip(operands, terms)]
    x, term = pairs[0]
    for k in range(1, len(pairs) + 1):
        # letters still needed: the output's and those of the operands not yet contracted
        later = set(out).union(*(t for _, t in pairs[k:]))
        x, term = _sum_out(x, term, later | (set(pairs[k][1]) if k < len(pairs) else set()))
        if k == len(pairs):
            break
        y, yterm = pairs[k]
        y, yterm = _sum_out(y, yterm, later | set(term))
        x, term = _contract(x, term, y, yterm, later)
    return permute(x, *[term.index(c) for c in out]) if term != out else x
