"""Index arithmetic: how views and broadcasts fold into the loads of a fused kernel.

A fused kernel loops over one index space. Every value it computes is read at some affine
function of the loop index (an `AffineMap`): identity for the kernel's own outputs, a map that
drops broadcast dims for a smaller operand, a permutation for a transposed one. A view of a
computed value is another map composed in front; a view of a buffer is a `StridedView` (shape,
element strides, offset), so reading a buffer through any chain of views, at any map, is one
strided load. A reshape that merges or splits dims has no affine map of its own, but it is still
a strided view of a buffer whenever numpy could do it without copying.

Each view op has one rule here, keyed by its name: the map from its output index to its input
index (VIEW_MAPS). Adding a view op means adding its rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Row = tuple[tuple[int, ...], int]  # (coefficient per loop dim, constant)


@dataclass(frozen=True)
class AffineMap:
    """index[k] = sum_j rows[k][0][j] * loop[j] + rows[k][1], for a loop space of rank n."""

    n: int
    rows: tuple[Row, ...]

    @staticmethod
    def identity(n: int) -> AffineMap:
        return AffineMap(n, tuple((_unit(n, j), 0) for j in range(n)))

    def then(self, inner: AffineMap) -> AffineMap:
        """The map loop -> inner's target: `inner` applied to this map's result (inner's loop
        space is this map's target space)."""
        rows = []
        for coeffs, const in inner.rows:
            total = [0] * self.n
            offset = const
            for c, (row, row_const) in zip(coeffs, self.rows):
                if c:
                    offset += c * row_const
                    for j, r in enumerate(row):
                        total[j] += c * r
            rows.append((tuple(total), offset))
        return AffineMap(self.n, tuple(rows))

    def uses(self, dims) -> bool:
        """Whether the index depends on any of the loop dims `dims`."""
        return any(row[j] for row, _ in self.rows for j in dims)


def _unit(n: int, j: int) -> tuple[int, ...]:
    return tuple(1 if i == j else 0 for i in range(n))


def _from_out(n_out: int, picks) -> AffineMap:
    """A map from an output index of rank n_out: picks[k] is ("dim", j, scale, const) or
    ("zero",) for input dim k."""
    rows = []
    for pick in picks:
        if pick[0] == "zero":
            rows.append(((0,) * n_out, 0))
        else:
            _, j, scale, const = pick
            rows.append((tuple(scale if i == j else 0 for i in range(n_out)), const))
    return AffineMap(n_out, tuple(rows))


def broadcast_map(in_shape: tuple, out_shape: tuple) -> AffineMap:
    """The map from an index of the broadcast result to the index of an operand."""
    offset = len(out_shape) - len(in_shape)
    picks = []
    for k, size in enumerate(in_shape):
        j = k + offset
        picks.append(("zero",) if size == 1 and out_shape[j] != 1 else ("dim", j, 1, 0))
    return _from_out(len(out_shape), picks)


# -- view rules: output index -> input index ---------------------------------------------------


def _expand(in_shape, out_shape, attrs):
    return broadcast_map(in_shape, out_shape)


def _permute(in_shape, out_shape, attrs):
    dims = [d % len(in_shape) for d in attrs["dims"]] if in_shape else []
    where = {d: i for i, d in enumerate(dims)}
    return _from_out(len(out_shape), [("dim", where[k], 1, 0) for k in range(len(in_shape))])


def _squeeze_or_unsqueeze(in_shape, out_shape, attrs):
    return _regroup_ones(in_shape, out_shape)


def _slice(in_shape, out_shape, attrs):
    picks = []
    for k, (a, b, c) in enumerate(zip(attrs["starts"], attrs["stops"], attrs["steps"])):
        r = range(in_shape[k])[slice(a, b, c)]
        picks.append(("dim", k, r.step, r.start))
    return _from_out(len(out_shape), picks)


def _reshape(in_shape, out_shape, attrs):
    return _regroup_ones(in_shape, out_shape)


def _regroup_ones(in_shape, out_shape):
    """A reshape that only adds or removes dims of size 1 (squeeze, unsqueeze, and such
    reshapes) as a map; None for one that merges or splits dims."""
    kept_in = [k for k, s in enumerate(in_shape) if s != 1]
    kept_out = [j for j, s in enumerate(out_shape) if s != 1]
    if [in_shape[k] for k in kept_in] != [out_shape[j] for j in kept_out]:
        return None
    picks = [("zero",)] * len(in_shape)
    for k, j in zip(kept_in, kept_out):
        picks[k] = ("dim", j, 1, 0)
    return _from_out(len(out_shape), picks)


VIEW_MAPS: dict[str, Callable] = {
    "expand": _expand,
    "permute": _permute,
    "squeeze": _squeeze_or_unsqueeze,
    "unsqueeze": _squeeze_or_unsqueeze,
    "slice": _slice,
    "reshape": _reshape,
    "view": _reshape,
}


def view_map(op: str, in_shape: tuple, out_shape: tuple, attrs: dict) -> AffineMap | None:
    """The map from the view's output index to its input index, or None when the view is not
    affine (a reshape that merges or splits dims) or is not a view op of this table."""
    rule = VIEW_MAPS.get(op)
    return None if rule is None else rule(tuple(in_shape), tuple(out_shape), attrs)


# -- strided views of buffers ------------------------------------------------------------------


@dataclass(frozen=True)
class StridedView:
    """A buffer read as shape with element strides from an element offset."""

    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int = 0

    @staticmethod
    def contiguous(shape: tuple) -> StridedView:
        strides, step = [], 1
        for size in reversed(shape):
            strides.append(step)
            step *= max(size, 1)
        return StridedView(tuple(shape), tuple(reversed(strides)), 0)

    def at(self, index: AffineMap) -> tuple[tuple[int, ...], int]:
        """(strides over the loop dims, offset) of reading this view at `index`."""
        strides = [0] * index.n
        offset = self.offset
        for s, (coeffs, const) in zip(self.strides, index.rows):
            offset += s * const
            for j, c in enumerate(coeffs):
                strides[j] += s * c
        return tuple(strides), offset

    def view(self, op: str, out_shape: tuple, attrs: dict) -> StridedView | None:
        """This view seen through the view op `op`; None when it is not a strided view."""
        out_shape = tuple(out_shape)
        if op in ("reshape", "view"):
            strides = _reshape_strides(self.shape, self.strides, out_shape)
            return None if strides is None else StridedView(out_shape, strides, self.offset)
        index = view_map(op, self.shape, out_shape, attrs)
        if index is None:
            return None
        strides, offset = self.at(index)
        return StridedView(out_shape, strides, offset)


def _reshape_strides(shape, strides, new_shape):
    """Strides that read `shape`/`strides` as `new_shape` without copying, or None (numpy's
    rule: each run of merged dims must be contiguous with respect to each other)."""
    old = [(s, st) for s, st in zip(shape, strides) if s != 1]
    new = [s for s in new_shape if s != 1]
    if 0 in shape:
        return StridedView.contiguous(new_shape).strides
    out = []
    i = j = 0
    while i < len(old) and j < len(new):
        # grow the old run [i, i2) and the new run [j, j2) until their sizes agree
        i2, j2 = i + 1, j + 1
        size_old, size_new = old[i][0], new[j]
        while size_old != size_new:
            if size_old < size_new:
                if i2 == len(old):
                    return None
                size_old *= old[i2][0]
                i2 += 1
            else:
                if j2 == len(new):
                    return None
                size_new *= new[j2]
                j2 += 1
        for k in range(i, i2 - 1):
            if old[k][1] != old[k + 1][1] * old[k + 1][0]:
                return None
        step = old[i2 - 1][1]
        run = []
        for k in range(j2 - 1, j - 1, -1):
            run.append(step)
            step *= new[k]
        out += reversed(run)
        i, j = i2, j2
    if i != len(old) or j != len(new):
        return None
    it = iter(out)
    return tuple(next(it) if s != 1 else 0 for s in new_shape)
