"""Sparse COO tensors: ember.sparse_coo_tensor, Tensor.to_sparse, and the ops that take them.

A SparseTensor holds int64 indices (sparse_dim, nnz) and dense values (nnz,), as PyTorch's
sparse_coo layout does (no dense trailing dims). It adds no primitive: to_dense scatters the
values with index_add, sparse @ dense gathers the dense rows that the nonzeros meet, scales
them and sums them into their rows with index_add. So these forms are differentiable in the
values and the dense operand, traceable, and run on every device the primitives run on.

Ops reach it through dispatch: an input that is not a Tensor but has `__ember_dispatch__`
runs that instead (add, matmul, mul); any other op refuses a sparse input by name.
"""

from __future__ import annotations

import math

from ..errors import not_implemented_error, runtime_error, type_error
from ..ir.dtypes import as_dtype, int64
from . import ops as E
from .factories import tensor as make_tensor
from .factories import zeros
from .tensor import Tensor

__all__ = ["SparseTensor", "layout", "mm", "sparse_coo", "sparse_coo_tensor", "spmm", "strided"]


class layout:
    """How a tensor's elements are stored: ember.strided (dense) or ember.sparse_coo."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ember.{self.name}"

    def __reduce__(self):
        return self.name


strided = layout("strided")
sparse_coo = layout("sparse_coo")
Tensor.layout = property(lambda self: strided)


class SparseTensor:
    """A sparse COO tensor of `size`: values[k] sits at indices[:, k]; repeats add up."""

    is_sparse = True
    layout = sparse_coo

    def __init__(self, indices: Tensor, values: Tensor, size, coalesced: bool = False) -> None:
        self._indices_ = indices
        self._values_ = values
        self._size = tuple(int(s) for s in size)
        self._coalesced = coalesced

    # -- what it is --------------------------------------------------------------------------

    @property
    def shape(self):
        from . import Size

        return Size(self._size)

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self._size[dim]

    def dim(self) -> int:
        return len(self._size)

    ndim = property(dim)

    def numel(self) -> int:
        return math.prod(self._size)

    @property
    def dtype(self):
        return self._values_.dtype

    @property
    def device(self):
        return self._values_.device

    @property
    def is_cuda(self) -> bool:
        return self._values_.is_cuda

    @property
    def requires_grad(self) -> bool:
        return self._values_.requires_grad

    def sparse_dim(self) -> int:
        return len(self._size)

    def dense_dim(self) -> int:
        return 0

    def _nnz(self) -> int:
        return self._values_.shape[0]

    def is_coalesced(self) -> bool:
        return self._coalesced

    def _indices(self) -> Tensor:
        return self._indices_

    def _values(self) -> Tensor:
        return self._values_

    def indices(self) -> Tensor:
        self._require_coalesced("indices")
        return self._indices_

    def values(self) -> Tensor:
        self._require_coalesced("values")
        return self._values_

    def _require_coalesced(self, what: str) -> None:
        if not self._coalesced:
            raise runtime_error(
                f"Cannot get {what} on an uncoalesced tensor, please call .coalesce() first"
            )

    def __len__(self) -> int:
        if not self._size:
            raise type_error("len() of a 0-d tensor")
        return self._size[0]

    def __repr__(self) -> str:
        pad = " " * len("tensor(indices=")
        indices = repr(self._indices_).replace("\n", "\n" + pad)
        values = repr(self._values_).replace("\n", "\n" + " " * len("       values="))
        return (
            f"tensor(indices={indices},\n       values={values},\n       "
            f"size={self._size}, nnz={self._nnz()}, layout=ember.sparse_coo)"
        )

    # -- conversions -------------------------------------------------------------------------

    def _linear(self) -> Tensor:
        """Each nonzero's position in the row-major flattened tensor."""
        flat = zeros(self._indices_.shape[1], dtype=int64, device=self.device)
        for d, size in enumerate(self._size):
            flat = flat * size + self._indices_[d]
        return flat

    def to_dense(self, dtype=None) -> Tensor:
        values = self._values_ if dtype is None else E.cast(self._values_, as_dtype(dtype))
        out = zeros(self.numel(), dtype=values.dtype, device=self.device)
        return E.index_add(out, 0, self._linear(), values).reshape(self._size)

    def coalesce(self) -> SparseTensor:
        """Indices sorted and unique, the values at a repeated index summed."""
        if self._coalesced:
            return self
        unique, inverse = E.unique(self._linear(), sorted=True, return_inverse=True)
        values = zeros(unique.shape[0], dtype=self.dtype, device=self.device)
        values = E.index_add(values, 0, inverse, self._values_)
        rows, rest = [], unique
        for size in reversed(self._size):
            rows.append(E.remainder(rest, size))
            rest = E.floor_divide(rest, size)
        indices = E.stack(rows[::-1]) if rows else self._indices_
        return SparseTensor(indices, values, self._size, coalesced=True)

    def to(self, *args, **kwargs) -> SparseTensor:
        values = self._values_.to(*args, **kwargs)
        return SparseTensor(self._indices_.to(values.device), values, self._size, self._coalesced)

    def cpu(self) -> SparseTensor:
        return self.to("cpu")

    def cuda(self, device=None) -> SparseTensor:
        return self.to("cuda" if device is None else device)

    def detach(self) -> SparseTensor:
        return SparseTensor(self._indices_, self._values_.detach(), self._size, self._coalesced)

    def to_sparse(self) -> SparseTensor:
        return self

    def t(self) -> SparseTensor:
        if self.ndim != 2:
            raise runtime_error(f"t() expects a 2-D sparse tensor, got {self.ndim}-D")
        return SparseTensor(E.flip(self._indices_, (0,)), self._values_, self._size[::-1])

    T = property(t)

    def __ember_dispatch__(op: str, inputs: tuple, attrs: dict):
        """dispatch's door for an op with a sparse input."""
        form = _SPARSE_FORMS.get(op)
        if form is None or attrs:
            raise not_implemented_error(
                f"{op}: ember has no sparse COO form of this op (inputs: "
                f"{', '.join(_describe(x) for x in inputs)}); call .to_dense() first"
            )
        return form(*inputs)

    __ember_dispatch__ = staticmethod(__ember_dispatch__)

    def __add__(self, other):
        return E.add(self, other)

    def __radd__(self, other):
        return E.add(other, self)

    def __mul__(self, other):
        return E.mul(self, other)

    __rmul__ = __mul__

    def __matmul__(self, other):
        return E.matmul(self, other)

    def __rmatmul__(self, other):
        return E.matmul(other, self)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise not_implemented_error(
            f"Tensor.{name}: ember has no sparse COO form of this method (a sparse tensor of "
            f"size {list(self._size)}); call .to_dense() first"
        )


def _describe(x) -> str:
    if isinstance(x, SparseTensor):
        return f"sparse {x.dtype.name}{list(x.shape)}"
    if isinstance(x, Tensor):
        return f"{x.dtype.name}{list(x.shape)}"
    return repr(x)


def _check_same(a, b, what: str) -> None:
    if a.dtype != b.dtype:
        raise runtime_error(
            f"{what}: expected scalar type {a.dtype.name} but found {b.dtype.name} "
            f"({_describe(a)} and {_describe(b)})"
        )
    if a.device != b.device:
        raise runtime_error(f"{what}: expected both on one device, got {a.device} and {b.device}")


def _sparse_dense_mm(sparse: SparseTensor, dense: Tensor) -> Tensor:
    """(M, K) sparse @ (K, N) dense: the dense rows the nonzeros meet, scaled, summed by row."""
    if sparse.ndim != 2 or dense.ndim != 2:
        raise runtime_error(
            f"mm: expected 2-D tensors, got {_describe(sparse)} and {_describe(dense)}"
        )
    if sparse.shape[1] != dense.shape[0]:
        raise runtime_error(
            f"mm: sizes do not match: {_describe(sparse)} @ {_describe(dense)} "
            f"(expected dim 0 of the dense operand to be {sparse.shape[1]})"
        )
    _check_same(sparse, dense, "mm")
    rows, cols = sparse._indices_[0], sparse._indices_[1]
    terms = E.index_select(dense, 0, cols) * E.unsqueeze(sparse._values_, 1)
    out = zeros(sparse.shape[0], dense.shape[1], dtype=dense.dtype, device=dense.device)
    return E.index_add(out, 0, rows, terms)


def _matmul(a, b) -> Tensor:
    if isinstance(a, SparseTensor) and isinstance(b, Tensor):
        return _sparse_dense_mm(a, b)
    if isinstance(a, Tensor) and isinstance(b, SparseTensor):
        if a.ndim != 2 or b.ndim != 2:
            raise runtime_error(f"mm: expected 2-D tensors, got {_describe(a)} and {_describe(b)}")
        return E.permute(_sparse_dense_mm(b.t(), E.permute(a, 1, 0)), 1, 0)
    return _sparse_dense_mm(a, b.to_dense())  # two sparse operands: the result is dense


def _add(a, b):
    if isinstance(a, SparseTensor) and isinstance(b, SparseTensor):
        if a.shape != b.shape:
            raise runtime_error(
                f"add: expected sizes to match, got {_describe(a)} and {_describe(b)}"
            )
        _check_same(a, b, "add")
        indices = E.cat([a._indices_, b._indices_], 1)
        return SparseTensor(indices, E.cat([a._values_, b._values_]), a._size).coalesce()
    if isinstance(a, SparseTensor):
        raise runtime_error("add(sparse, dense) is not supported. Use add(dense, sparse) instead.")
    return E.add(a, b.to_dense())


def _mul(a, b):
    sparse, other = (a, b) if isinstance(a, SparseTensor) else (b, a)
    if isinstance(other, (Tensor, SparseTensor)):
        if isinstance(other, Tensor) and other.ndim == 0:
            other = other.item()
        else:
            raise not_implemented_error(
                f"mul: ember multiplies a sparse tensor by a number only (got {_describe(a)} and "
                f"{_describe(b)}); call .to_dense() first"
            )
    return SparseTensor(sparse._indices_, sparse._values_ * other, sparse._size, sparse._coalesced)


_SPARSE_FORMS = {"matmul": _matmul, "add": _add, "mul": _mul}


def mm(mat1, mat2) -> Tensor:
    """ember.sparse.mm / ember.spmm: sparse @ dense (or dense @ sparse) as a dense tensor."""
    return _matmul(mat1, mat2)


spmm = mm


def sparse_coo_tensor(
    indices,
    values,
    size=None,
    *,
    dtype=None,
    device=None,
    requires_grad: bool = False,
    check_invariants=None,
    is_coalesced: bool | None = None,
) -> SparseTensor:
    """A sparse COO tensor from (sparse_dim, nnz) indices and (nnz,) values, as
    torch.sparse_coo_tensor; size defaults to the smallest that holds every index."""
    indices = _as_tensor(indices, int64, device)
    values = _as_tensor(values, dtype, device)
    if dtype is not None:
        values = E.cast(values, as_dtype(dtype))
    if indices.dtype.is_floating_point or indices.dtype.name == "bool":
        raise runtime_error(f"indices must be an int64 tensor, got {indices.dtype.name}")
    indices = E.cast(indices, int64)
    if indices.ndim != 2:
        raise runtime_error(
            f"indices must be sparse_dim x nnz, but got: {list(indices.shape)}"
        )
    if values.ndim != 1:
        raise not_implemented_error(
            f"sparse_coo_tensor: ember keeps no dense dims in a sparse tensor: values must be "
            f"1-D (nnz,), got {list(values.shape)}"
        )
    nnz = indices.shape[1]
    if values.shape[0] != nnz:
        raise runtime_error(
            f"indices and values must have same nnz, but got nnz from indices: {nnz}, nnz from "
            f"values: {values.shape[0]}"
        )
    high = E.amax(indices, 1).tolist() if nnz else [-1] * indices.shape[0]
    if size is None:
        size = [h + 1 for h in high]
    size = tuple(int(s) for s in size)
    if len(size) != indices.shape[0]:
        raise runtime_error(
            f"number of dimensions must be sparse_dim ({indices.shape[0]}) + dense_dim (0), but "
            f"got {len(size)}"
        )
    for d, (h, s) in enumerate(zip(high, size)):
        if h >= s:
            raise runtime_error(
                f"size is inconsistent with indices: for dim {d}, size is {s} but found index {h}"
            )
    if nnz and bool((indices < 0).any()):
        raise runtime_error("found negative index in the indices of a sparse tensor")
    if requires_grad:
        values.requires_grad_(True)
    return SparseTensor(indices, values, size, coalesced=bool(is_coalesced))


def _as_tensor(data, dtype, device) -> Tensor:
    if isinstance(data, Tensor):
        return data if device is None else data.to(device)
    return make_tensor(data, dtype=dtype, device=device)


def to_sparse(self: Tensor, sparse_dim: int | None = None, *, layout=None) -> SparseTensor:
    """The nonzeros of a dense tensor as a coalesced sparse COO tensor."""
    if layout not in (None, sparse_coo):
        raise not_implemented_error(f"to_sparse: ember has no {layout} layout (sparse_coo only)")
    if sparse_dim not in (None, self.ndim):
        raise not_implemented_error(
            f"to_sparse: ember keeps no dense dims in a sparse tensor: sparse_dim must be "
            f"{self.ndim} for a {self.ndim}-D tensor, got {sparse_dim}"
        )
    positions = E.nonzero(self)  # (nnz, ndim), row-major order: sorted and unique
    indices = E.permute(positions, 1, 0)
    values = self[tuple(indices[d] for d in range(self.ndim))] if self.ndim else self.reshape(1)
    return SparseTensor(indices, values, tuple(self.shape), coalesced=True)


Tensor.to_sparse = to_sparse
Tensor.to_sparse_coo = to_sparse
Tensor.to_dense = lambda self, dtype=None: self if dtype is None else E.cast(self, as_dtype(dtype))
