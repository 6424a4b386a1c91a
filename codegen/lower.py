"""Lower a fusion group (codegen/fusion.py) to a kernel spec (codegen/spec.py).

Every value a member computes becomes scalar expressions evaluated at an affine index of the
kernel's loop space: the group's outputs at their own index, operands at broadcast indices,
views of members through their index maps, and values from outside the group as strided loads
of their (contiguous) buffers. The casts eager dispatch makes (each elementwise op computes in
one dtype) become explicit `cast` expressions, so compiled and eager round the same way.

Composite reductions become primitive ones here: mean is a sum over a count, var two passes,
logsumexp a max and a sum of exponentials, as the eager kernels compute them.
"""

from __future__ import annotations

import math

from ..ir.graph import Value
from .fusion import Group, column_sum, compute_dtype
from .indexing import AffineMap, StridedView, broadcast_map, view_map
from .spec import Access, Expr, KernelSpec, Store

_COMPARE_OR_LOGIC = frozenset({"eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or",
                               "logical_xor", "logical_not", "isfinite"})


class _Lowering:
    def __init__(self, group: Group, name: str):
        self.group = group
        self.name = name
        self.members = set(group.nodes)
        self.shape = tuple(group.shape) or (1,)
        self.n = len(self.shape)
        self.exprs: list[Expr] = []
        self.memo: dict = {}
        self.inputs: list[Value] = []  # the buffers read, in argument order
        self.outputs: list[Value] = []

    # -- building expressions ----------------------------------------------------------------

    def add(self, op, args, dtype, attr=None) -> int:
        key = (op, tuple(args), dtype, repr(attr))
        found = self.memo.get(key)
        if found is None:
            self.exprs.append(Expr(op, tuple(args), dtype, attr))
            found = self.memo[key] = len(self.exprs) - 1
        return found

    def const(self, value, dtype: str) -> int:
        return self.add("const", (), dtype, value)

    def cast(self, k: int, dtype: str) -> int:
        return k if self.exprs[k].dtype == dtype else self.add("cast", (k,), dtype)

    def native(self, value: Value) -> AffineMap:
        """The index at which a member's own output is read in the loop space."""
        shape = tuple(value.shape) or (1,)
        if shape == self.shape:
            return AffineMap.identity(self.n)
        outer = self.group.outer
        rows = []
        for d in range(len(value.shape)):
            if d < outer:
                rows.append((tuple(1 if j == d else 0 for j in range(self.n)), 0))
            else:  # a kept dim of size 1
                rows.append(((0,) * self.n, 0))
        return AffineMap(self.n, tuple(rows))

    def value(self, value, index: AffineMap, dtype: str | None = None) -> int:
        """The expression of `value` (a Value or a Python number) read at `index`, in dtype."""
        if not isinstance(value, Value):
            return self.const(value, dtype)
        k = self._value(value, index)
        return k if dtype is None else self.cast(k, dtype)

    def _value(self, value: Value, index: AffineMap) -> int:
        node = value.node
        if node is not None and (node in self.members or node in self.group.inline):
            return self.compute(node, index)
        if node is not None and node.schema.view:
            source = node.inputs[0]
            inner = view_map(node.op, source.shape, value.shape, node.attrs)
            if inner is not None and self._reaches_member(source):
                return self._value(source, index.then(inner))
        if value.is_constant and value.constant.ndim == 0:
            return self.const(value.constant.item(), value.dtype.name)
        base, view = self._strided(value)
        strides, offset = view.at(index)
        if base not in self.inputs:
            self.inputs.append(base)
        return self.add("load", (), value.dtype.name,
                        Access(self.inputs.index(base), strides, offset))

    def _reaches_member(self, value: Value) -> bool:
        while value.node is not None and value.node not in self.members:
            if not value.node.schema.view:
                return False
            value = value.node.inputs[0]
        return value.node is not None

    def _strided(self, value: Value):
        """(buffer, StridedView) of a value read from outside the group through views."""
        chain = []
        while value.node is not None and value.node.schema.view and value.node.op != "view_dtype":
            view = StridedView.contiguous(tuple(value.node.inputs[0].shape))
            chain.append(value.node)
            value = value.node.inputs[0]
        view = StridedView.contiguous(tuple(value.shape))
        for node in reversed(chain):
            nxt = view.view(node.op, tuple(node.outputs[0].shape), node.attrs)
            if nxt is None:
                # not expressible (a reshape of an expanded value copies): read this view's
                # own materialized result, through the views after it
                value = node.outputs[0]
                nxt = StridedView.contiguous(tuple(value.shape))
            view = nxt
        return value, view

    def compute(self, node, index: AffineMap) -> int:
        out = node.outputs[0]
        if self.group.columns and column_sum(node) == self.group.outer:
            # a column sum: its input at the loop's index, which the store adds up
            return self.value(node.inputs[0], index, out.dtype.name)
        if node.op in ("sum", "mean", "amax", "amin", "prod", "logsumexp", "var"):
            return self.reduce(node, index)
        shape = tuple(out.shape)
        compute = compute_dtype(node).name
        start = node.schema.cast_start
        args = []
        for i, x in enumerate(node.inputs):
            at = index.then(broadcast_map(tuple(x.shape), shape)) if isinstance(x, Value) else None
            want = compute if i >= start and node.schema.compute_dtype is not None else None
            if not isinstance(x, Value):
                want = compute
            args.append(self.value(x, at, want) if isinstance(x, Value) else self.const(x, want))
        op, attr = node.op, None
        if op == "cast":
            return self.cast(args[0], out.dtype.name)
        if op == "pow":
            attr = {"exponent": float(node.inputs[1])}
            args = args[:1]
        elif op == "clamp":
            attr = {"min": node.attrs.get("min"), "max": node.attrs.get("max")}
            args = [self.cast(args[0], out.dtype.name)]
            compute = out.dtype.name
        elif op == "masked_fill":
            args = [self.cast(args[0], out.dtype.name), args[1],
                    self.const(node.attrs["value"], out.dtype.name)]
            compute = out.dtype.name
        result = "bool" if op in _COMPARE_OR_LOGIC else compute
        k = self.add(op, args, result, attr)
        return self.cast(k, out.dtype.name)

    def reduce(self, node, index: AffineMap) -> int:
        x = node.inputs[0]
        out = node.outputs[0]
        p = self.group.outer
        keep = len(x.shape) - (self.n - p)
        rows = []
        for d in range(len(x.shape)):
            if d < keep:  # kept dims are the output's leading dims, keepdim or not
                rows.append(index.rows[d])
            else:
                rows.append((tuple(1 if j == p + d - keep else 0 for j in range(self.n)), 0))
        at = AffineMap(self.n, tuple(rows))
        dtype = out.dtype.name
        count = math.prod(self.shape[p:])
        if node.op in ("sum", "prod"):
            acc = dtype
            body = self.value(x, at, acc)
            return self.add("reduce", (body,), acc, node.op)
        if node.op in ("amax", "amin"):
            body = self.value(x, at)
            return self.add("reduce", (body,), dtype, "max" if node.op == "amax" else "min")
        if node.op == "mean":
            total = self.add("reduce", (self.value(x, at, dtype),), dtype, "sum")
            return self.add("div", (total, self.const(count, dtype)), dtype)
        if node.op == "var":
            body = self.value(x, at, dtype)
            total = self.add("reduce", (body,), dtype, "sum")
            mean = self.add("div", (total, self.const(count, dtype)), dtype)
            dev = self.add("sub", (body, mean), dtype)
            squares = self.add("reduce", (self.add("mul", (dev, dev), dtype),), dtype, "sum")
            divisor = max(count - node.attrs.get("correction", 1), 0)
            return self.add("div", (squares, self.const(divisor, dtype)), dtype)
        # logsumexp: log(sum(exp(x - m))) + m, with m the max where finite, else 0
        body = self.value(x, at, dtype)
        top = self.add("reduce", (body,), dtype, "max")
        finite = self.add("isfinite", (top,), "bool")
        shift = self.add("select", (finite, top, self.const(0.0, dtype)), dtype)
        exps = self.add("exp", (self.add("sub", (body, shift), dtype),), dtype)
        total = self.add("reduce", (exps,), dtype, "sum")
        return self.add("add", (self.add("log", (total,), dtype), shift), dtype)

    # -- the kernel --------------------------------------------------------------------------

    def lower(self, outputs: list[Value]) -> KernelSpec:
        stores = []
        for value in outputs:
            columns = self.group.columns and column_sum(value.node) == self.group.outer
            index = AffineMap.identity(self.n) if columns else self.native(value)
            stores.append((value, self.compute(value.node, index), columns))
        n_in = len(self.inputs)
        arg_dtypes = [v.dtype.name for v in self.inputs]
        store_list = []
        for j, (value, k, columns) in enumerate(stores):
            if columns:
                # the sums (the inner dims' values, keepdim's leading 1s aside) at the loop's
                # inner index, the same place for every row
                strides = [0] * self.n
                step = 1
                for d in range(self.n - 1, self.group.outer - 1, -1):
                    strides[d] = step
                    step *= self.shape[d]
                store_list.append(Store(k, Access(n_in + j, tuple(strides), 0), True))
                arg_dtypes.append(value.dtype.name)
                continue
            contiguous = StridedView.contiguous(tuple(value.shape) or (1,))
            if not value.shape:
                contiguous = StridedView((1,), (0,), 0)
            strides, offset = contiguous.at(self.native(value) if value.shape else
                                            AffineMap(self.n, (((0,) * self.n, 0),)))
            store_list.append(Store(k, Access(n_in + j, strides, offset)))
            arg_dtypes.append(value.dtype.name)
        self.outputs = list(outputs)
        outer = self.group.outer if self.group.rowwise else self.n
        spec = KernelSpec(self.name, self.shape, outer, tuple(arg_dtypes), n_in,
                          tuple(self.exprs), tuple(store_list))
        return collapse(spec, pointwise=not self.group.rowwise)


def collapse(spec: KernelSpec, pointwise: bool) -> KernelSpec:
    """Merge adjacent loop dims that every access walks contiguously, and drop size-1 dims;
    a pointwise kernel then loops rows over all dims but the last."""
    shape = list(spec.shape)
    accesses = list(spec.accesses())
    groups = []  # runs of original dims that become one dim
    for j in range(len(shape)):
        if shape[j] == 1 and len(shape) > 1:
            continue
        if groups:
            prev = groups[-1][-1]
            same_side = (prev < spec.outer) == (j < spec.outer)
            if same_side and all(a.strides[prev] == a.strides[j] * shape[j] for a in accesses):
                groups[-1].append(j)
                continue
        groups.append([j])
    if not groups:
        groups = [[0]]
    new_shape = tuple(math.prod(shape[j] for j in g) for g in groups)
    outer = sum(1 for g in groups if g[0] < spec.outer)

    def fix(access: Access) -> Access:
        return Access(access.arg, tuple(access.strides[g[-1]] for g in groups), access.offset)

    exprs = tuple(Expr(e.op, e.args, e.dtype, fix(e.attr)) if e.op == "load" else e
                  for e in spec.exprs)
    stores = tuple(Store(s.expr, fix(s.access), s.accumulate) for s in spec.stores)
    if pointwise:
        outer = max(1, len(new_shape) - 1)
    if outer == 0 and not pointwise and len(new_shape) == 0:
        outer = 0
    return KernelSpec(spec.name, new_shape, outer, spec.args, spec.n_inputs, exprs, stores,
                      spec.aliased, spec.written_over)


def lower(group: Group, outputs: list[Value], name: str) -> tuple[KernelSpec, list, list]:
    """The spec of `group` storing `outputs`; with the input and output Values in argument
    order."""
    lowering = _Lowering(group, name)
    spec = lowering.lower(outputs)
    return spec, lowering.inputs, lowering.outputs
