"""Nested arguments and results: flatten tuples, lists and dicts to leaves, and back."""

from __future__ import annotations

from typing import Any


class Spec:
    """The structure of a nested value, with the leaves taken out (compared by ==)."""

    __slots__ = ("kind", "meta", "children")

    def __init__(self, kind: str, meta: Any = None, children: tuple = ()):
        self.kind, self.meta, self.children = kind, meta, children

    def __eq__(self, other) -> bool:
        return (isinstance(other, Spec) and self.kind == other.kind and self.meta == other.meta
                and self.children == other.children)

    def __hash__(self) -> int:
        return hash((self.kind, self.meta, self.children))

    def describe(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "dict":
            inner = ", ".join(f"{k!r}: {c.describe()}" for k, c in zip(self.meta, self.children))
            return "{" + inner + "}"
        inner = ", ".join(c.describe() for c in self.children)
        return f"({inner},)" if self.kind == "tuple" else f"[{inner}]"


LEAF = Spec("leaf")


def flatten(value) -> tuple[list, Spec]:
    """(leaves, spec): tuples, lists and dicts (in key order) are walked; all else is a leaf."""
    leaves: list = []
    return leaves, _flatten(value, leaves)


def _flatten(value, leaves: list) -> Spec:
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return Spec("tuple", None, tuple(_flatten(v, leaves) for v in value))
    if isinstance(value, list):
        return Spec("list", None, tuple(_flatten(v, leaves) for v in value))
    if isinstance(value, dict):
        keys = tuple(value)
        return Spec("dict", keys, tuple(_flatten(value[k], leaves) for k in keys))
    leaves.append(value)
    return LEAF


def unflatten(leaves, spec: Spec):
    """The nested value of `spec` with `leaves` put back in order."""
    it = iter(leaves)
    return _unflatten(it, spec)


def _unflatten(it, spec: Spec):
    if spec.kind == "leaf":
        return next(it)
    children = [_unflatten(it, c) for c in spec.children]
    if spec.kind == "tuple":
        return tuple(children)
    if spec.kind == "list":
        return children
    return dict(zip(spec.meta, children))
