"""Indexing kernels: advanced indices, gather/scatter, index_select, one_hot, nonzero."""

from __future__ import annotations

import numpy as np

from .. import windows
from .registry import kernel


def _index_tuple(ndim, indices, dims):
    key = [slice(None)] * (max(dims) + 1)
    for d, i in zip(dims, indices):
        key[d] = i
    return tuple(key)


def _check_bounds(xp, x_shape, indices, dims):
    from ...errors import index_error

    for d, i in zip(dims, indices):
        size = x_shape[d]
        if i.size and (int(i.max()) >= size or int(i.min()) < -size):
            bad = int(i.max()) if int(i.max()) >= size else int(i.min())
            raise index_error(f"index {bad} is out of bounds for dimension {d} with size {size}")


@kernel("index")
def _index(xp, x, *indices, dims):
    _check_bounds(xp, x.shape, indices, dims)
    return x[_index_tuple(x.ndim, indices, dims)]


def add_at(xp, target, key, values):
    """target[key] += values with repeated indices accumulating (numpy's add.at)."""
    if xp is np:
        np.add.at(target, key, values)
    else:
        import cupyx

        cupyx.scatter_add(target, key, values)


@kernel("index_put")
def _index_put(xp, x, values, *indices, dims, accumulate):
    _check_bounds(xp, x.shape, indices, dims)
    out = x.copy()
    key = _index_tuple(x.ndim, indices, dims)
    values = values.astype(x.dtype, copy=False)
    if accumulate:
        shape = out[key].shape
        add_at(xp, out, key, xp.broadcast_to(values, shape))
    else:
        out[key] = values
    return out


def _along_axis_key(xp, index, dim):
    # an open grid over every dim but `dim`, which takes the index tensor
    if index.ndim == 2:  # the common case, without meshgrid's Python
        if dim == 1:
            return xp.arange(index.shape[0])[:, None], index
        return index, xp.arange(index.shape[1])[None, :]
    grids = list(xp.meshgrid(*[xp.arange(s) for s in index.shape], indexing="ij", sparse=True))
    grids[dim] = index
    return tuple(grids)


def _check_range(index, size, op, dim):
    # PyTorch takes no negative indices here, and raises a RuntimeError, not an IndexError
    from ...errors import runtime_error

    if index.size:
        low, high = int(index.min()), int(index.max())
        if low < 0 or high >= size:
            raise runtime_error(
                f"{op}(): index {high if high >= size else low} is out of bounds for dimension "
                f"{dim} with size {size}"
            )


@kernel("gather")
def _gather(xp, x, index, dim):
    _check_range(index, x.shape[dim], "gather", dim)
    return x[_along_axis_key(xp, index, dim)]


@kernel("gather_backward")
def _gather_backward(xp, g, index, dim, shape):
    _check_range(index, shape[dim], "gather_backward", dim)
    out = xp.zeros(shape, g.dtype)
    key = _along_axis_key(xp, index, dim)
    if index.shape[dim] == 1:
        out[key] = g  # one index per line along dim: nothing to add up (scatter_add's case)
    else:
        add_at(xp, out, key, g)
    return out


@kernel("scatter")
def _scatter(xp, x, index, src, dim):
    _check_range(index, x.shape[dim], "scatter", dim)
    out = x.copy()
    src = src[tuple(slice(0, s) for s in index.shape)]
    out[_along_axis_key(xp, index, dim)] = src
    return out


@kernel("scatter_add")
def _scatter_add(xp, x, index, src, dim):
    _check_range(index, x.shape[dim], "scatter_add", dim)
    out = _writable_copy(xp, x)
    src = src[tuple(slice(0, s) for s in index.shape)]
    key = _along_axis_key(xp, index, dim)
    if index.shape[dim] == 1:
        # one index per line along dim: no two elements meet, so a plain indexed add is
        # add.at's result (a cross-entropy's one-hot gradient: ~5x faster)
        out[key] += src
    else:
        add_at(xp, out, key, src)
    return out


def _writable_copy(xp, x):
    """A fresh copy of x to write into: where x is one value broadcast (the zeros a gradient
    is scattered into), a fill, not a copy through zero strides."""
    if xp is np and x.size and not any(x.strides):
        out = np.empty(x.shape, x.dtype)
        out.fill(x.flat[0])
        return out
    return x.copy()


def _reduce_at(xp, reduce, target, key, values):
    """target[key] = reduce(target[key], values), repeated keys folding in one by one."""
    if reduce in ("sum", "mean"):
        add_at(xp, target, key, values)
    elif xp is np:
        {"prod": np.multiply, "amax": np.maximum, "amin": np.minimum}[reduce].at(
            target, key, values)
    elif reduce == "prod":  # cupy has no scatter-multiply: the host's
        host = xp.asnumpy(target)
        np.multiply.at(host, tuple(xp.asnumpy(k) for k in key), xp.asnumpy(values))
        target[...] = xp.asarray(host)
    else:
        import cupyx

        (cupyx.scatter_max if reduce == "amax" else cupyx.scatter_min)(target, key, values)


def _identity(reduce, dtype):
    if reduce in ("sum", "mean"):
        return 0
    if reduce == "prod":
        return 1
    if dtype.kind == "f":
        return -np.inf if reduce == "amax" else np.inf
    if dtype.kind == "b":
        return reduce == "amin"
    info = np.iinfo(dtype)
    return info.min if reduce == "amax" else info.max


@kernel("scatter_reduce")
def _scatter_reduce(xp, x, index, src, dim, reduce, include_self):
    _check_range(index, x.shape[dim], "scatter_reduce", dim)
    out = x.copy()
    src = src[tuple(slice(0, s) for s in index.shape)]
    key = _along_axis_key(xp, index, dim)
    if not include_self:  # the places written start from the reduction's identity
        out[key] = _identity(reduce, x.dtype)
    _reduce_at(xp, reduce, out, key, src)
    if reduce == "mean":
        counts = xp.full(x.shape, 1 if include_self else 0, dtype=np.int64)
        add_at(xp, counts, key, xp.ones(index.shape, dtype=np.int64))
        counts = xp.maximum(counts, 1)
        if x.dtype.kind == "f":
            out = (out / counts).astype(x.dtype, copy=False)
        else:  # integers round down, as PyTorch's
            out = xp.floor_divide(out, counts).astype(x.dtype, copy=False)
    return out


@kernel("index_select")
def _index_select(xp, x, index, dim):
    from ...errors import index_error

    size = x.shape[dim] if x.ndim else 1
    if index.size and (int(index.min()) < 0 or int(index.max()) >= size):
        # an IndexError here, as PyTorch's index_select raises
        bad = int(index.max()) if int(index.max()) >= size else int(index.min())
        raise index_error(f"index_select(): index {bad} is out of range for dimension {dim} "
                          f"with size {size}")
    if x.ndim == 0:
        return x.copy()
    return xp.take(x, index.reshape(-1), axis=dim)


@kernel("index_add")
def _index_add(xp, x, index, src, dim):
    _check_range(index, x.shape[dim], "index_add", dim)
    out = _writable_copy(xp, x)
    index = index.reshape(-1)
    src = src.astype(x.dtype, copy=False)
    if xp is np and dim == 0 and src.ndim and windows.available(out, src):
        windows.index_add_rows(out, index, src)
        return out
    repeats = _repeats(xp, index) if src.ndim else None
    if repeats is not None:  # each of m consecutive indices k times in a row: block sums
        start, m, k = repeats
        blocks = src.reshape(src.shape[:dim] + (m, k) + src.shape[dim + 1:])
        target = out[(slice(None),) * dim + (slice(start, start + m),)]
        if k > _SLICED_REPEATS:
            target += blocks.sum(axis=dim + 1)
            return out
        # k strided slices added in turn: numpy's sum over a short inner axis of 2 took 40x
        # longer (2.7 ms for 2x64x64x64 float32, 0.07 this way)
        for j in range(k):
            target += blocks[(slice(None),) * (dim + 1) + (j,)]
        return out
    runs = _index_runs(index) if xp is np and src.ndim else None
    if runs is not None:
        lead = (slice(None),) * dim
        for first, end, start, step in runs:
            stop = start + step * (end - first)
            target = slice(start, stop if stop >= 0 else None, step)
            out[lead + (target,)] += src[lead + (slice(first, end),)]
        return out
    if xp is np and src.ndim > 1 and index.size >= _FEW_INDICES:
        _add_rows(np.moveaxis(out, dim, 0), index, np.moveaxis(src, dim, 0))
        return out
    key = (slice(None),) * dim + (index,)
    add_at(xp, out, key, src)
    return out


# index_add's indices from this many are sorted and summed per index (_add_rows) where they
# do not fall into a few runs (_index_runs looks at up to _RUN_INDICES of them, in Python, and
# stops at the ninth run: random indices cost it a few entries)
_FEW_INDICES = 64
_RUN_INDICES = 4096
_MOST_RUNS = 8


_SLICED_REPEATS = 16  # _repeats' blocks of at most this many are summed slice by slice


def _repeats(xp, index) -> tuple[int, int, int] | None:
    """(start, m, k) where index is start, start, ... (k times), start + 1 (k times), ...,
    start + m - 1 (k times), k >= 2: the gradient of nearest upsampling by an integer factor
    (F.interpolate, nn.Upsample), whose index_add is then one block sum. fast_neural_style's
    upsampling by 2 of (2, 64, 32, 32) took 2.9 ms a dim through the sorted sums."""
    n = index.size
    if n < 2 or int(index[0]) != int(index[1]):
        return None
    k = int((index != index[0]).argmax()) or n
    if n % k:
        return None
    start, m = int(index[0]), n // k
    grid = index.reshape(m, k)
    if bool((grid != grid[:, :1]).any()) or bool((grid[:, 0] - start != xp.arange(m)).any()):
        return None
    return start, m, k


def _index_runs(index) -> list | None:
    """index cut into at most _MOST_RUNS runs that step by +1 or -1 (first, end, start, step):
    entries first..end-1 are start, start + step, ...; None where there are more (or more
    than _RUN_INDICES entries). No run repeats an index, so each is one sliced add: a
    reflection pad's gradient (indices 1, 0, 1, 2, ..., n-1, n-2) is three, where numpy's
    add.at took 10x longer (2x128x16x18 into 16 columns: 500 us, now ~40) and the sorted
    sums 4x (a 9x9 convolution's reflection pad of 64x64 planes: 1.5 ms a call)."""
    if index.size > _RUN_INDICES:
        return None
    values = index.tolist()
    runs, i, n = [], 0, len(values)
    while i < n:
        j = i + 1
        step = values[j] - values[i] if j < n and abs(values[j] - values[i]) == 1 else 1
        while j < n and values[j] - values[j - 1] == step:
            j += 1
        runs.append((i, j, values[i], step))
        if len(runs) > _MOST_RUNS:
            return None
        i = j
    return runs


def _add_rows(out, index, src):
    """out[index[i]] += src[i] for rows i, equal indices accumulating in their order: the
    rows sorted by index (stably) and summed per index with one reduceat. np.add.at does this
    element by element: an embedding's backward over 1024 tokens took ~230 us, now ~30."""
    order = np.argsort(index, kind="stable")
    ordered = index[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    out[ordered[starts]] += np.add.reduceat(src[order], starts, axis=0)


@kernel("one_hot")
def _one_hot(xp, x, num_classes):
    from ...errors import runtime_error

    if x.size and (int(x.min()) < 0 or int(x.max()) >= num_classes):
        raise runtime_error(f"one_hot: class values must be in [0, {num_classes}), got "
                            f"{int(x.min())}..{int(x.max())}")
    return (x[..., None] == xp.arange(num_classes)).astype(np.int64)


@kernel("nonzero")
def _nonzero(xp, x):
    if not x.ndim:
        return xp.zeros((int(bool(x)), 0), np.int64)
    return xp.stack(xp.nonzero(x), axis=-1).astype(np.int64)


def _runs(xp, rows):
    """For rows (n, k): whether each row differs from the one before (the first always)."""
    change = xp.ones(rows.shape[0], dtype=bool)
    if rows.shape[0] > 1:
        change[1:] = xp.any(rows[1:] != rows[:-1], axis=1)
    return change


@kernel("unique")
def _unique(xp, x, dim, consecutive):
    """(values, inverse, counts): the distinct elements (dim None) or slices along dim, sorted,
    or the first of each run of equal ones when consecutive. NaNs are all distinct."""
    moved = x.reshape(-1, 1) if dim is None else xp.moveaxis(x, dim, 0) if x.ndim else \
        x.reshape(1)
    rows = moved.reshape(moved.shape[0], -1)
    n = rows.shape[0]
    if consecutive or n == 0:
        order = xp.arange(n)
        ordered = rows
    else:
        # rows sorted lexicographically (NaN last, equal rows in their order), then runs
        order = xp.lexsort(rows.T[::-1]) if rows.shape[1] else xp.arange(n)
        ordered = rows[order]
    change = _runs(xp, ordered) if rows.shape[1] else xp.arange(n) == 0
    run_id = xp.cumsum(change) - 1
    inverse = xp.empty(n, dtype=np.int64)
    inverse[order] = run_id
    starts = xp.flatnonzero(change)
    counts = xp.diff(xp.concatenate([starts, xp.asarray([n])])).astype(np.int64)
    firsts = order[starts]
    if dim is None:
        return moved.reshape(-1)[firsts], inverse.reshape(x.shape), counts
    values = xp.moveaxis(moved[firsts], 0, dim) if x.ndim else moved[firsts].reshape(-1)
    return values, inverse, counts


@kernel("searchsorted")
def _searchsorted(xp, sequence, values, right, out_int32):
    common = np.result_type(sequence.dtype, values.dtype)
    sequence, values = sequence.astype(common, copy=False), values.astype(common, copy=False)
    return binary_search(xp, sequence, values, right).astype(
        np.int32 if out_int32 else np.int64, copy=False)


def binary_search(xp, sequence, values, right: bool):
    """Where each value goes in the sorted last dim of sequence (1-d, or one row per row of
    values), as int64: a binary search over every value at once, log2(n) vectorized steps.
    A step goes right unless the probe is >= the value (> for right), as PyTorch's: a NaN
    value lands at the end, and a NaN in the sequence counts as below every value."""
    n = sequence.shape[-1]
    if sequence.ndim == 1:
        def probe_at(positions):
            return sequence[positions]
    else:
        def probe_at(positions):
            return xp.take_along_axis(sequence, positions, axis=-1)
    low = xp.zeros(values.shape, dtype=np.int64)
    high = xp.full(values.shape, n, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        for _ in range(int(n).bit_length()):
            middle = (low + high) // 2
            probe = probe_at(xp.minimum(middle, n - 1))
            go_right = ~((probe > values) if right else (probe >= values))
            active = low < high
            low, high = (xp.where(active & go_right, middle + 1, low),
                         xp.where(active & ~go_right, middle, high))
    return low
