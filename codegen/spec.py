"""The kernel spec: one fused kernel described without any backend in mind.

A kernel loops over `shape`. Its first `outer` dims are rows: a call runs rows [start, end) of
their flattened index, so rows can be split across threads (CPU) or blocks (GPU). The remaining
dims are looped inside each row; a reduction reduces over exactly those. The body is a DAG of
scalar expressions in SSA (`exprs`): loads of the pointer arguments at affine offsets, constants,
the elementwise ops of the op vocabulary and a few helpers (`cast`, `isfinite`, `select`), and
reductions. Stores write expressions to output arguments.

An expression is row-level when it does not depend on the inner dims: a reduction, or anything
computed from row-level operands only; a backend computes it once per row. A row runs each
reduction as a loop over the inner dims, in order (a later one may use an earlier one: softmax
is max, then the sum of exp(x - max)), then one loop for the inner-level stores.

`dump()` prints a spec for people; `key()` is the stable text a cache hashes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Access:
    """Where a load or store goes: argument `arg`, element strides per loop dim, offset."""

    arg: int
    strides: tuple[int, ...]
    offset: int = 0


@dataclass(frozen=True)
class Expr:
    """One scalar operation. op is "load" (attr: Access), "const" (attr: the number),
    "reduce" (attr: "sum" | "max" | "min" | "prod"; args: the body), "cast", "select",
    "isfinite", or an elementwise op of the vocabulary (attr: its extra scalar attrs)."""

    op: str
    args: tuple[int, ...]
    dtype: str
    attr: object = None


@dataclass(frozen=True)
class Store:
    """expr stored at access; with `accumulate`, added onto what is there instead: a column
    sum (a sum over the row dims, its access 0 along them) that the kernel zeroes when it
    starts at row 0 and adds each row onto, in row order, so such a kernel runs all its rows
    in one call (KernelSpec.serial)."""

    expr: int
    access: Access
    accumulate: bool = False


@dataclass(frozen=True)
class KernelSpec:
    name: str
    shape: tuple[int, ...]
    outer: int
    args: tuple[str, ...]  # dtype name of each pointer argument: inputs, then outputs
    n_inputs: int
    exprs: tuple[Expr, ...]
    stores: tuple[Store, ...]
    # arguments that may share memory with another (an output written over an input): a
    # backend must not promise the compiler they do not alias
    aliased: tuple[int, ...] = ()
    # (input, output) argument pairs of aliased: the output written over the input, which the
    # kernel reads only at the element being written (runtime/compiled.py plans them). A
    # backend may read such an input through its output's pointer: the same address, one
    # pointer, so the compiler sees each element read and then written, and no alias check
    # (LLVM's vectorizer checked the two pointers at run time, found them equal and ran its
    # scalar loop: an AdamW update took 3.6x the time of the same kernel on distinct arrays)
    written_over: tuple[tuple[int, int], ...] = ()

    @property
    def rows(self) -> int:
        return math.prod(self.shape[: self.outer])

    @property
    def serial(self) -> bool:
        """Whether the kernel must run its rows in one call, in order (its column sums)."""
        return any(s.accumulate for s in self.stores)

    @property
    def inner(self) -> tuple[int, ...]:
        return self.shape[self.outer :]

    def inner_level(self) -> list[bool]:
        """For each expr, whether it depends on the inner dims."""
        inner_dims = range(self.outer, len(self.shape))
        level = []
        for e in self.exprs:
            if e.op == "load":
                level.append(any(e.attr.strides[j] for j in inner_dims))
            elif e.op == "reduce":
                level.append(False)
            else:
                level.append(any(level[a] for a in e.args))
        return level

    def accesses(self):
        """Every Access of the kernel: its loads', then its stores'."""
        for e in self.exprs:
            if e.op == "load":
                yield e.attr
        for s in self.stores:
            yield s.access

    def inner_store(self, store: Store, levels: list[bool]) -> bool:
        """Whether a store runs in the inner loop: its value is inner-level, or a row-level
        value is stored across the inner dims (a broadcast output)."""
        inner = range(self.outer, len(self.shape))
        return levels[store.expr] or any(store.access.strides[j] for j in inner)

    def row_inputs(self, root: int, levels: list[bool]) -> list[int]:
        """The row-level exprs that `root` needs, reached without passing through another
        row-level expr: what a backend computes once per row before the loops that use it."""
        found, seen, stack = [], set(), [root]
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            if not levels[k]:
                found.append(k)
            else:
                stack.extend(self.exprs[k].args)
        return found

    def key(self) -> str:
        """The spec as stable text (its name excluded: equal kernels share a cache entry)."""
        return repr((self.shape, self.outer, self.args, self.n_inputs, self.exprs,
                     self.stores, self.aliased, self.written_over))

    def dump(self) -> str:
        """The spec as text a person can read."""
        rows = "x".join(str(s) for s in self.shape[: self.outer]) or "1"
        inner = "x".join(str(s) for s in self.inner) or "-"
        lines = [f"kernel {self.name}: rows {rows}, inner {inner}"]
        for i, dtype in enumerate(self.args):
            role = "in " if i < self.n_inputs else "out"
            lines.append(f"  {role} a{i}: {dtype}{' (aliased)' if i in self.aliased else ''}")
        levels = self.inner_level()
        for i, e in enumerate(self.exprs):
            where = "inner" if levels[i] else "row  "
            if e.op == "load":
                a = e.attr
                text = f"load a{a.arg}[{_index(a)}]"
            elif e.op == "const":
                text = f"const {e.attr!r}"
            elif e.op == "reduce":
                text = f"reduce.{e.attr}(e{e.args[0]})"
            else:
                args = ", ".join(f"e{a}" for a in e.args)
                extra = "" if e.attr in (None, {}) else f" {e.attr}"
                text = f"{e.op}({args}){extra}"
            lines.append(f"  {where} e{i}: {e.dtype} = {text}")
        for s in self.stores:
            sign = "+=" if s.accumulate else "="
            lines.append(f"  store a{s.access.arg}[{_index(s.access)}] {sign} e{s.expr}")
        return "\n".join(lines)


def _index(access: Access) -> str:
    terms = [f"{s}*i{j}" if s != 1 else f"i{j}" for j, s in enumerate(access.strides) if s]
    if access.offset or not terms:
        terms.append(str(access.offset))
    return " + ".join(terms)
