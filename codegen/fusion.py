"""The fusion pass: which nodes of a graph run together in one kernel.

Greedy, in topological order: each fusable node joins the group of one of its producers when
their loop spaces agree, or starts a group of its own. A group is pointwise (every member has
the group's shape) or a reduction group: a loop space whose trailing dims are reduced, with
pointwise prologues and epilogues at full or row level (softmax: max, then sum of exp, then a
divide, in one kernel). Views are never members: a member reading a view reads through it
(codegen/indexing.py), and a view that something outside needs runs as itself.

Legality is reachability on the graph of units (groups and ungrouped nodes, views read
through), contracted as groups grow (ir/digraph.py): a merge is refused when a path leaves the
merged set and comes back into it, which would make a cycle between kernels.
Matmul, conv and the other extern ops, and indexing stay single nodes that run their eager
kernels (BLAS through numpy); the pointwise epilogues after them fuse among themselves.

A sum over leading dims (a bias's or a layer norm weight's gradient, over the batch's rows)
joins a group whose rows are those dims, on the CPU (`columns`): the kernel adds each row onto
the sums as it goes (a column sum, Store.accumulate), so it runs its rows in one call, in order.
That costs the group its second core, and saves an eager pass over a materialized input, whose
Python alone, inside a training step, took ~30 us (a GPT step has 19 such sums). Such a group
is kept to COLUMN_SUM_MAX_ELEMENTS; a member never reads a column sum of its own group, which
is complete only when the kernel ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..ir.digraph import DiGraph
from ..ir.graph import Graph, Node, Value
from ..ir.symbolic import SymInt
from .indexing import AffineMap, broadcast_map, view_map
from .scalar import POW_EXPONENTS, POW_EXPONENTS_FLOAT16, supports

# reductions a kernel can fuse, over trailing dims
REDUCTIONS = frozenset({"sum", "mean", "amax", "amin", "prod", "logsumexp", "var"})
# the most elements a group with column sums loops over: the group runs on one thread, and
# past this its lost second core costs more than the eager sums it saves (a small layer-norm
# model's scripted step, hot: (8, 64, 128) the same either way, (16, 64, 512) 6% slower)
COLUMN_SUM_MAX_ELEMENTS = 1 << 17


@dataclass
class Group:
    """A set of nodes that become one kernel."""

    nodes: list[Node] = field(default_factory=list)
    shape: tuple = ()
    outer: int = 0  # leading dims of shape that are rows; the rest are reduced (if reducing)
    reduces: bool = False
    columns: bool = False  # holds column sums (sums over the `outer` row dims): runs serially
    # pointwise nodes computed from the graph's inputs alone, which a kernel recomputes from
    # those inputs instead of loading their result (shared by every group of one graph)
    inline: frozenset = frozenset()

    def __repr__(self) -> str:
        ops = ", ".join(n.op for n in self.nodes)
        kind = "reduce" if self.reduces else "columns" if self.columns else "pointwise"
        return f"<Group {kind} {list(self.shape)}: {ops}>"

    @property
    def rowwise(self) -> bool:
        """Whether the kernel's rows are `outer` dims of its own (a reduction's, or column
        sums'), rather than every dim but the last."""
        return self.reduces or self.columns


def static_shape(shape) -> bool:
    """Whether every size of shape is an int (no symbolic size)."""
    return not any(isinstance(d, SymInt) for d in shape)


def _kind(dtype) -> str:
    return {"f": "f", "i": "i", "u": "u", "b": "b"}[dtype.np.kind]


def compute_dtype(node: Node):
    """The dtype an elementwise node computes in: dispatch's rule (OpSchema.compute_dtype_of),
    or, for an op without one, its output dtype."""
    out = node.outputs[0].type.dtype
    compute = node.schema.compute_dtype_of(node.input_types(), out)
    return out if compute is None else compute


def _bfloat16(node: Node) -> bool:
    """Whether node reads or writes bfloat16, which no backend emits: such nodes run their
    eager kernels (which compute in float32 and round, as PyTorch's CPU kernels)."""
    values = [x for x in node.inputs if isinstance(x, Value)] + list(node.outputs)
    return any(v.type.dtype.name == "bfloat16" for v in values)


def pointwise(node: Node) -> bool:
    """Whether every backend can emit `node` inside a fused kernel."""
    if node.schema.kind != "elementwise" or len(node.outputs) != 1 or _bfloat16(node):
        return False
    if not static_shape(node.outputs[0].shape):
        return False
    if node.op == "pow":
        e = node.inputs[1]
        allowed = (POW_EXPONENTS_FLOAT16 if node.outputs[0].dtype.name == "float16"
                   else POW_EXPONENTS)
        if not isinstance(e, (int, float)) or isinstance(e, bool) or float(e) not in allowed:
            return False
    if node.op == "cast":
        return True
    return supports(node.op, _kind(compute_dtype(node)))


def reduction(node: Node) -> int | None:
    """For a fusable reduction, the number of leading (kept) dims of its input; else None."""
    if node.op not in REDUCTIONS or len(node.outputs) != 1 or _bfloat16(node):
        return None
    x = node.inputs[0]
    if not isinstance(x, Value) or not static_shape(x.shape) or math.prod(x.shape) == 0:
        return None
    ndim = len(x.shape)
    dims = node.attrs.get("dims")
    dims = tuple(range(ndim)) if dims is None else tuple(dims)
    if dims != tuple(range(ndim - len(dims), ndim)):
        return None
    kind = x.type.dtype.np.kind
    if node.op in ("sum", "prod"):
        return ndim - len(dims) if kind in "fiu" else None
    if node.op in ("amax", "amin"):
        return ndim - len(dims) if kind in "fiu" else None
    return ndim - len(dims) if kind == "f" else None


def summing_gemm(node: Node) -> tuple | None:
    """(matmul node, "column" or "row") for a sum of v over all its dims but the last that a
    matmul reading v computes as it multiplies (runtime/compiled.py pairs them): v as a
    matrix (v itself, or v reshaped to (rows, columns)) is the matmul's right operand
    (X^T @ dY: its column sums), or, transposed, its left one (dY^T @ X: its row sums), as a
    linear layer's weight and bias gradients are; None where there is none."""
    if node.op != "sum" or node.attrs.get("keepdim"):
        return None
    v = node.inputs[0]
    dims = node.attrs.get("dims")
    shape = v.type.shape
    if (dims is None or v.type.dtype.name not in ("float32", "float64") or len(shape) < 2
            or sorted(dims) != list(range(len(dims))) or len(dims) != len(shape) - 1
            or not static_shape(shape)):
        return None
    matrix = (math.prod(shape[:-1]), shape[-1])
    operands = [v] if len(shape) == 2 else []
    operands += [u.outputs[0] for u in v.users if u.op == "reshape" and u.outputs
                 and tuple(u.outputs[0].type.shape) == matrix]
    for b in operands:
        for user in b.users:
            if (user.op == "matmul" and len(user.inputs) == 2 and user.inputs[1] is b
                    and user.inputs[0] is not b and len(user.inputs[0].type.shape) == 2):
                return user, "column"
            if user.op == "permute" and tuple(user.attrs.get("dims", ())) == (1, 0):
                t = user.outputs[0]
                for reader in t.users:
                    if (reader.op == "matmul" and len(reader.inputs) == 2
                            and reader.inputs[0] is t and reader.inputs[1] is not t
                            and len(reader.inputs[1].type.shape) == 2):
                        return reader, "row"
    return None


def column_sum(node: Node) -> int | None:
    """For a sum over leading dims that a kernel can hold as column sums, the number of
    leading dims it sums; else None (also where a matmul adds it up: summing_gemm)."""
    if node.op != "sum" or len(node.outputs) != 1 or len(node.inputs) != 1:
        return None
    if summing_gemm(node) is not None:
        return None
    x = node.inputs[0]
    if (not isinstance(x, Value) or not static_shape(x.shape) or not x.shape
            or math.prod(x.shape) == 0 or math.prod(x.shape) > COLUMN_SUM_MAX_ELEMENTS
            or x.dtype.name not in ("float32", "float64")
            or node.outputs[0].type.dtype != x.dtype):
        return None
    dims = node.attrs.get("dims")
    if dims is None:
        return None
    dims = tuple(sorted(dims))
    if not dims or dims != tuple(range(len(dims))) or len(dims) >= len(x.shape):
        return None
    return len(dims)


def through_views(value) -> tuple:
    """(base, affine): the value a chain of views starts from, and whether every view in the
    chain has an index map (so a computed base can be read through it)."""
    affine = True
    while isinstance(value, Value) and value.node is not None and value.node.schema.view:
        node = value.node
        source = node.inputs[0]
        if view_map(node.op, source.shape, value.shape, node.attrs) is None:
            affine = False
        value = source
    return value, affine


class _Fusion:
    def __init__(self, graph: Graph, columns: bool = False):
        self.graph = graph
        self.columns = columns  # whether column sums may join groups (the CPU backend)
        self.dag = DiGraph()
        for node in graph.nodes:
            self.dag.add_node(node)
            for x in node.inputs:
                if isinstance(x, Value) and x.node is not None:
                    self.dag.add_edge(x.node, node)
        self.group_of: dict[Node, Group] = {}
        self.inline = self._recomputable()

    def _recomputable(self) -> frozenset:
        """Pointwise nodes whose inputs are graph inputs, constants or such nodes: cheap to
        compute again wherever they are read (a cross-entropy's target mask)."""
        found = set()
        for node in self.graph.nodes:
            if not pointwise(node):
                continue
            if all(not isinstance(x, Value) or x.node is None or x.node in found
                   for x in node.inputs):
                found.add(node)
        return frozenset(found)

    def producers(self, node: Node) -> list[tuple[Node, bool]]:
        """(producing node, readable through affine views) of each tensor input."""
        out = []
        for x in node.inputs:
            if isinstance(x, Value):
                base, affine = through_views(x)
                if base.node is not None:
                    out.append((base.node, affine))
        return out

    def column_lead(self, node: Node) -> int | None:
        """column_sum(node), where this graph's groups may hold column sums."""
        return column_sum(node) if self.columns else None

    def legal(self, node: Node, group: Group) -> bool:
        """Whether node may join group: no reshape without an index map between them, no
        column sum of the group read, and no path from the group to the node through another
        unit (a cycle once merged)."""
        members = set(group.nodes)
        if _reads_through_reshape([node], members) or _reads_column_sum([node], members):
            return False
        return self.acyclic([group, node])

    # -- the graph of units (groups and ungrouped nodes), kept contracted as groups grow --------

    def _build_units(self) -> None:
        # views are read through, so they are not units: a node that reads a view depends on
        # the node the view's chain starts from
        self.units = DiGraph()
        self.units.add_nodes_from(id(n) for n in self.graph.nodes if not n.schema.view)
        for a, b in self.dag.edges:
            if b.schema.view:
                continue
            while a is not None and a.schema.view:
                a = a.inputs[0].node
            if a is not None:
                self.units.add_edge(id(a), id(b))

    def _contract(self, keep, gone) -> None:
        """Unit `gone` (a node or group) became part of unit `keep`."""
        k, g = id(keep), id(gone)
        if k == g or g not in self.units:
            return
        if k not in self.units:
            self.units.add_node(k)
        for p in list(self.units.predecessors(g)):
            if p != k:
                self.units.add_edge(p, k)
        for s in list(self.units.successors(g)):
            if s != k:
                self.units.add_edge(k, s)
        self.units.remove_node(g)

    def acyclic(self, parts: list) -> bool:
        """Whether merging the units `parts` keeps the unit graph acyclic: no path leaves the
        set and comes back into it."""
        ids = {id(p) for p in parts}
        frontier = [s for p in ids if p in self.units for s in self.units.successors(p)
                    if s not in ids]
        seen = set(frontier)
        while frontier:
            u = frontier.pop()
            for s in self.units.successors(u):
                if s in ids:
                    return False
                if s not in seen:
                    seen.add(s)
                    frontier.append(s)
        return True

    def fits(self, node: Node, group: Group) -> tuple | None:
        """The group's (shape, outer, reduces) once `node` joins it, or None."""
        lead = self.column_lead(node)
        if lead is not None:
            x_shape = tuple(node.inputs[0].shape)
            if x_shape != group.shape:
                return None
            if group.rowwise:
                return (group.shape, group.outer, group.reduces) if lead == group.outer else None
            return x_shape, lead, False
        keep = reduction(node)
        if keep is not None:
            x_shape = tuple(node.inputs[0].shape)
            if group.rowwise:
                if x_shape == group.shape and keep == group.outer:
                    return group.shape, group.outer, True
                return None
            if x_shape == group.shape:
                return x_shape, keep, True
            return None
        shape = tuple(node.outputs[0].shape)
        if shape == group.shape:
            return group.shape, group.outer, group.reduces
        if group.reduces:
            rows = group.shape[: group.outer]
            pad = (1,) * (len(group.shape) - group.outer)
            if shape in (rows, rows + pad):
                return group.shape, group.outer, True
        return None

    def merged_space(self, a: Group, b: Group) -> tuple | None:
        """The loop space of a and b as one group, or None when they do not share one."""
        if a.shape != b.shape:
            return None
        reduces = a.reduces or b.reduces
        if a.rowwise and b.rowwise:
            return (a.shape, a.outer, reduces) if a.outer == b.outer else None
        if a.rowwise or b.rowwise:
            return (a.shape, a.outer if a.rowwise else b.outer, reduces)
        return a.shape, a.outer, False

    def legal_union(self, a: Group, b: Group) -> bool:
        """Whether groups a and b can run as one kernel: no member reads the other group
        through a reshape without an index map, nor a column sum of the union, and no path
        between them through another unit."""
        members = set(a.nodes) | set(b.nodes)
        if _reads_through_reshape(members, members) or _reads_column_sum(members, members):
            return False
        if (a.columns or b.columns) and math.prod(a.shape) > COLUMN_SUM_MAX_ELEMENTS:
            return False
        return self.acyclic([a, b])

    def rows_consistent(self, members: set, shape: tuple, outer: int) -> bool:
        """Whether every member reads the values that depend on a reduction of the set at
        their own row: a row's reductions are computed in that row only, so reading another
        row's result (through a transpose, say) needs a kernel boundary."""
        after_reduce: set = set()
        for node in self.graph.nodes:
            if node not in members:
                continue
            depends = reduction(node) is not None
            # a reduction and a column sum read their input over the whole loop space
            whole = depends or column_sum(node) is not None
            read_at = tuple(node.inputs[0].shape) if whole else tuple(node.outputs[0].shape)
            for x in node.inputs:
                if not isinstance(x, Value):
                    continue
                source, index = _resolve(x, read_at)
                if source is None or source.node not in members:
                    continue
                if source.node in after_reduce:
                    depends = True
                    loop = _native(shape if whole else read_at, shape, outer)
                    if loop is None or loop.then(index) != _native(tuple(source.shape),
                                                                    shape, outer):
                        return False
            if depends:
                after_reduce.add(node)
        return True

    def run(self) -> list:
        """Groups and single nodes, in an order that respects every dependency."""
        groups: list[Group] = []
        self._build_units()
        for node in self.graph.nodes:
            keep = reduction(node)
            lead = self.column_lead(node)
            if keep is None and lead is None and not pointwise(node):
                continue
            candidates = []
            for producer, affine in self.producers(node):
                if producer in self.inline and node not in self.inline:
                    continue  # read by recomputing it: no reason to share its kernel
                group = self.group_of.get(producer)
                if group is not None and affine and all(group is not c for c in candidates):
                    candidates.append(group)
            joined = None
            for group in candidates:
                fit = self.fits(node, group)
                if (fit is not None and self.legal(node, group)
                        and self.rows_consistent(set(group.nodes) | {node}, fit[0], fit[1])):
                    group.shape, group.outer, group.reduces = fit
                    group.columns = group.columns or lead is not None
                    joined = group
                    break
            if joined is None:
                if lead is not None:
                    joined = Group(shape=tuple(node.inputs[0].shape), outer=lead, columns=True)
                elif keep is not None:
                    joined = Group(shape=tuple(node.inputs[0].shape), outer=keep, reduces=True)
                else:
                    shape = tuple(node.outputs[0].shape)
                    joined = Group(shape=shape, outer=len(shape))
                groups.append(joined)
            if not joined.nodes:
                self.units.add_node(id(joined))
            joined.nodes.append(node)
            self.group_of[node] = joined
            self._contract(joined, node)
            # the node's other producer groups join too, when they share the loop space:
            # where(c, a * 1.5, a * 0.1) is one kernel, not three
            for other in candidates:
                if other is joined:
                    continue
                space = self.merged_space(joined, other)
                union = set(joined.nodes) | set(other.nodes)
                if (space is None or not self.legal_union(joined, other)
                        or not self.rows_consistent(union, space[0], space[1])):
                    continue
                joined.shape, joined.outer, joined.reduces = space
                joined.columns = joined.columns or other.columns
                joined.nodes += other.nodes
                for n in other.nodes:
                    self.group_of[n] = joined
                self._contract(joined, other)
                groups.remove(other)
        self.merge_siblings(groups)
        position = {node: i for i, node in enumerate(self.graph.nodes)}
        for group in groups:
            group.nodes.sort(key=position.__getitem__)
            group.inline = self.inline
        return self.in_graph_order()

    def merge_siblings(self, groups: list[Group]) -> None:
        """Merge groups that share a loop space (or one runs over the other's rows) and do not
        depend on each other: one pass over the data instead of two, one kernel call. Past 64
        groups only a group of column sums looks for a sibling (each look costs a walk of
        the graph): its sums then ride on a pass over the same rows, where alone they would
        cost a kernel call and a pass of their own."""
        every = len(groups) <= 64
        i = 0
        while i < len(groups):
            a = groups[i]
            j = i + 1
            while j < len(groups):
                b = groups[j]
                if not (every or a.columns or b.columns):
                    j += 1
                    continue
                space = self.merged_space(a, b) or self.row_space(a, b) or self.row_space(b, a)
                union = set(a.nodes) | set(b.nodes)
                if (space is not None and self.legal_union(a, b)
                        and self.rows_consistent(union, space[0], space[1])):
                    a.shape, a.outer, a.reduces = space
                    a.columns = a.columns or b.columns
                    a.nodes += b.nodes
                    for n in b.nodes:
                        self.group_of[n] = a
                    self._contract(a, b)
                    groups.pop(j)
                    continue
                j += 1
            i += 1

    @staticmethod
    def row_space(a: Group, b: Group) -> tuple | None:
        """a's loop space, when b is pointwise over a's rows."""
        if not a.reduces or b.rowwise:
            return None
        rows = a.shape[: a.outer]
        if b.shape in (rows, rows + (1,) * (len(a.shape) - a.outer)) and a.outer:
            return a.shape, a.outer, True
        return None

    def in_graph_order(self) -> list:
        """Every group and ungrouped node, in graph order (a group where its first member
        is). The caller orders them by what each finally reads (views are read through)."""
        out, placed = [], set()
        for node in self.graph.nodes:
            unit = self.group_of.get(node, node)
            if id(unit) not in placed:
                placed.add(id(unit))
                out.append(unit)
        return out


def _reads_column_sum(readers, members: set) -> bool:
    """Whether a reader reads (through views) a column sum among members: its sums are
    complete only when the kernel that adds them up ends."""
    for node in readers:
        for x in node.inputs:
            if isinstance(x, Value) and x.node is not None:
                base, _ = through_views(x)
                if base.node in members and column_sum(base.node) is not None:
                    return True
    return False


def _reads_through_reshape(readers, members: set) -> bool:
    """Whether a reader reads a member through a reshape that has no index map (a kernel
    cannot read its own values so)."""
    for node in readers:
        for x in node.inputs:
            if isinstance(x, Value) and x.node is not None:
                base, affine = through_views(x)
                if not affine and base.node in members:
                    return True
    return False


def _resolve(x: Value, shape: tuple):
    """(source, map): the value a chain of views starts from, and the map from an index of a
    node of output `shape` reading x (broadcast) to the source's index; (None, None) when a
    view in the chain has no map."""
    index = broadcast_map(tuple(x.shape), shape)
    while x.node is not None and x.node.schema.view:
        node = x.node
        source = node.inputs[0]
        inner = view_map(node.op, tuple(source.shape), tuple(x.shape), node.attrs)
        if inner is None:
            return None, None
        index = index.then(inner)
        x = source
    return x, index


def _native(shape: tuple, loop: tuple, outer: int):
    """The map from the loop space to the index of a member of `shape`: the identity for the
    full shape, the row dims for a row-shaped one; None for any other shape."""
    n = len(loop)
    if shape == loop:
        return AffineMap.identity(n)
    rows = loop[:outer]
    if shape not in (rows, rows + (1,) * (n - outer)):
        return None
    out = []
    for d in range(len(shape)):
        unit = tuple(1 if (j == d and d < outer) else 0 for j in range(n))
        out.append((unit, 0))
    return AffineMap(n, tuple(out))


def fusion_groups(graph: Graph, columns: bool = False) -> list:
    """The graph's nodes as Groups (fused kernels) and single Nodes, in graph order; with
    `columns`, sums over leading dims join groups as column sums (see the module's text)."""
    return _Fusion(graph, columns).run()
