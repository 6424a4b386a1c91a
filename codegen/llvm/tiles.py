"""A convolution's small GEMM, out = weight @ columns, as register tiles of LLVM vectors.

Per image a convolution multiplies its weight (o, depth) by its columns (depth, positions):
64 x 288 by 288 x 64 in the digits CNN. OpenBLAS packs both operands on every such call and
reached ~100 GFLOP/s of a core's ~190 there; these tiles read both in place. A tile is `rows`
weight rows by up to TILE_VECTORS vectors of positions (64 bytes each: 16 float32): its
accumulators stay in registers over the whole depth, each step one vector load per column
block, one broadcast per weight row and rows x vectors fused multiply-adds. The columns' rows
are `ld` elements apart, `ld` a whole number of vectors (columns_ld), so a tile's loads never
leave them; the last vector of a row that ends inside it is stored element by element.

An epilogue (codegen/entry.py Epilogue: a fused elementwise kernel over the product) may
finish each tile while it is in registers: its expressions are computed on the vectors, each
operand one value per output row (channel) or one for all, with the semantics of the scalar
templates (scalar.py): one rounding per op, maximum and relu keeping NaN.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir

from .emit import I32, I64, STORAGE

VECTOR_BYTES = 64  # one AVX-512 register; LLVM splits it where the CPU has narrower ones
TILE_VECTORS = 4  # vectors of positions per tile
ACCUMULATORS = 24  # of the 32 vector registers: the rest hold the column loads


def lanes(dtype: str) -> int:
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def columns_ld(positions: int, dtype: str) -> int:
    """The row stride of columns the tiles read: positions rounded up to whole vectors."""
    n = lanes(dtype)
    return -(-positions // n) * n


def _const(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


def _blocks(total: int, size: int) -> list[tuple[int, int, int]]:
    """[(first, count, width)]: `count` blocks of `width` from `first` on, covering
    range(total) with blocks of `size`, the last one narrower where size does not divide."""
    full, rest = divmod(total, size)
    blocks = [(0, full, size)] if full else []
    if rest:
        blocks.append((full * size, 1, rest))
    return blocks


def _isnan(b, x):
    return b.fcmp_unordered("uno", x, x)


def _maximum(b, x, y):  # numpy's: x wins when greater or NaN, y on a tie
    return b.select(b.or_(b.fcmp_ordered(">", x, y), _isnan(b, x)), x, y)


def _minimum(b, x, y):
    return b.select(b.or_(b.fcmp_ordered("<", x, y), _isnan(b, x)), x, y)


# the ops an epilogue may compute, on vectors
VECTOR_OPS = {
    "add": lambda b, x, y: b.fadd(x, y),
    "sub": lambda b, x, y: b.fsub(x, y),
    "mul": lambda b, x, y: b.fmul(x, y),
    "div": lambda b, x, y: b.fdiv(x, y),
    "neg": lambda b, x: b.fneg(x),
    "maximum": _maximum,
    "minimum": _minimum,
    "relu": lambda b, x: _maximum(b, x, ir.Constant(x.type, [ir.Constant(x.type.element, 0.0)]
                                                    * x.type.count)),
}


def epilogue_channel(spec, source: int, n: int, o: int, positions: int) -> int | None:
    """Which loop dim of a fused kernel indexes the output channel when it can run as the
    epilogue of a product (n, o, positions) that it reads as argument `source` (-1: none,
    o == 1), else None. It can when it computes elementwise ops of VECTOR_OPS in the
    product's dtype, reads the source and stores its one output contiguously over its loop
    dims (the product's shape, size-1 dims dropped and neighbours merged as the fuser leaves
    them), and reads every other operand once per channel or once for all."""
    if math.prod(spec.shape) != n * o * positions or len(spec.stores) != 1:
        return None
    contiguous, step = [], 1
    for size in reversed(spec.shape):
        contiguous.insert(0, step)
        step *= size
    channel = -1
    for d, (size, stride) in enumerate(zip(spec.shape, contiguous)):
        if size == 1 or stride >= o * positions or stride * size <= positions:
            continue  # images, or positions in an image
        if stride != positions or size != o:
            return None  # the channel merged with its neighbours
        channel = d
    dtype = spec.args[source]
    store = spec.stores[0].access
    if store.arg < spec.n_inputs or spec.args[store.arg] != dtype:
        return None
    if tuple(store.strides) != tuple(contiguous) or store.offset:
        return None
    for e in spec.exprs:
        if e.dtype != dtype:
            return None
        if e.op == "load":
            a = e.attr
            if a.arg == source:
                if tuple(a.strides) != tuple(contiguous) or a.offset:
                    return None
            elif any(st for d, st in enumerate(a.strides) if d != channel):
                return None
        elif e.op != "const" and e.op not in VECTOR_OPS:
            return None
    return channel


def row_blocks(m: int, n: int, dtype: str) -> int:
    """How many blocks of weight rows emit_tiled_gemm cuts an (m, n) product into (the last
    one narrower where the tile's rows do not divide m)."""
    return -(-m // tile_rows(m, n, dtype))


def tile_rows(m: int, n: int, dtype: str) -> int:
    """The weight rows of one tile of an (m, n) product (a block of rows_blocks)."""
    per_tile = min(TILE_VECTORS, -(-n // lanes(dtype)))
    return max(1, min(m, ACCUMULATORS // per_tile))


def emit_tiled_gemm(e, dtype: str, m: int, n: int, k: int, weight, columns, ld: int, out,
                    epilogue=None, blocks=None, rows: int | None = None) -> None:
    """out[i, j] = sum_d weight[i, d] * columns[d, j] for i < m, j < n: weight (m, k)
    row-major, columns (k, n) with row stride ld (columns_ld), out (m, n) row-major; with
    `epilogue` (spec, pointers, source, channel dim: epilogue_channel), out[i, j] = the spec's
    value of that element. `blocks`: (start, end) values, only those blocks of rows
    (row_blocks, or of `rows` rows where given, at most tile_rows), so threads may share one
    product. `e` is the entry emitter whose builder and loops it uses."""
    b = e.b
    width = lanes(dtype)
    vectors = -(-n // width)
    per_tile = min(TILE_VECTORS, vectors)
    rows = tile_rows(m, n, dtype) if rows is None else rows
    column_blocks = _blocks(vectors, per_tile)
    first, count, size = column_blocks[-1]
    if n % width and count > 1:  # the block whose last vector ends past n on its own
        column_blocks[-1:] = [(first, count - 1, size), (first + (count - 1) * size, 1, size)]

    def row_block(first_row, r_width: int) -> None:
        """Every tile of the rows [first_row, first_row + r_width)."""
        for v_first, v_count, v_width in column_blocks:
            # only the last block's last vector ends past n: it is stored element by element
            ragged = bool(n % width) and v_first + v_width * v_count == vectors

            def tile(v_block, v_first=v_first, v_width=v_width, ragged=ragged):
                first_vector = b.add(_const(v_first), b.mul(v_block, _const(v_width)))
                _tile(e, dtype, first_row, r_width, first_vector, v_width,
                      n if ragged else None, k, weight, columns, ld, out, n, epilogue)

            _loop(e, v_count, tile)

    full, rest = divmod(m, rows)

    def one(r):
        if not rest:
            row_block(b.mul(r, _const(rows)), rows)
            return
        if not full:
            row_block(_const(0), rest)
            return
        with b.if_else(b.icmp_signed("<", r, _const(full))) as (then, otherwise):
            with then:
                row_block(b.mul(r, _const(rows)), rows)
            with otherwise:
                row_block(_const(full * rows), rest)

    if blocks is not None:
        e.loop(blocks[0], blocks[1], one)
        return
    for r_first, r_count, r_width in _blocks(m, rows):
        _loop(e, r_count, lambda r, r_first=r_first, r_width=r_width: row_block(
            b.add(_const(r_first), b.mul(r, _const(r_width))), r_width))


def _loop(e, count: int, body) -> None:
    if count == 1:
        body(_const(0))
    else:
        e.loop(0, count, body)


def splat(b, value, vec):
    """value in every lane of a vector of type vec."""
    mask = ir.Constant(ir.VectorType(I32, vec.count), [ir.Constant(I32, 0)] * vec.count)
    return b.shuffle_vector(b.insert_element(ir.Constant(vec, ir.Undefined), value,
                                             ir.Constant(I32, 0)),
                            ir.Constant(vec, ir.Undefined), mask)


def epilogue_vector(e, epilogue, row, acc, dtype, cache: dict):
    """The epilogue's stored value for the vector acc of output row `row`; row-level
    operands (splats of per-channel loads and constants) are made once per row (cache)."""
    spec, pointers, source, channel = epilogue
    b = e.b
    vec = acc.type
    values = []
    for i, x in enumerate(spec.exprs):
        if x.op == "load" and x.attr.arg == source:
            values.append(acc)
        elif x.op in ("load", "const"):
            if i not in cache:
                if x.op == "const":
                    cache[i] = ir.Constant(vec, [ir.Constant(vec.element, float(x.attr))]
                                           * vec.count)
                else:
                    a = x.attr
                    at = _const(a.offset)
                    if channel >= 0 and a.strides[channel]:
                        at = b.add(at, b.mul(row, _const(a.strides[channel])))
                    scalar = b.load(e.element(pointers[a.arg], at, dtype), typ=vec.element)
                    cache[i] = splat(b, scalar, vec)
            values.append(cache[i])
        else:
            values.append(VECTOR_OPS[x.op](b, *(values[a] for a in x.args)))
    return values[spec.stores[0].expr]


def _tile(e, dtype, first_row, rows, first_vector, vectors, ragged_n, k, weight, columns, ld,
          out, n, epilogue) -> None:
    b = e.b
    t = STORAGE[dtype]
    width = lanes(dtype)
    vec = ir.VectorType(t, width)
    zero = ir.Constant(vec, [ir.Constant(t, 0.0)] * width)
    name = f"llvm.fma.v{width}f{np.dtype(dtype).itemsize * 8}"
    fma = e.module.globals.get(name) or ir.Function(e.module, ir.FunctionType(vec, [vec] * 3),
                                                    name=name)
    align = np.dtype(dtype).itemsize
    first_column = b.mul(first_vector, _const(width))
    slots = [[e.local(vec, zero) for _ in range(vectors)] for _ in range(rows)]
    row_starts = [b.mul(b.add(first_row, _const(i)), _const(k)) for i in range(rows)]

    def step(d):
        at = b.add(b.mul(d, _const(ld)), first_column)
        loaded = [b.load(e.element(columns, b.add(at, _const(j * width)), dtype), typ=vec,
                         align=align) for j in range(vectors)]
        for i in range(rows):
            w = b.load(e.element(weight, b.add(row_starts[i], d), dtype), typ=t)
            broadcast = splat(b, w, vec)
            for j in range(vectors):
                slot = slots[i][j]
                b.store(b.call(fma, [broadcast, loaded[j], b.load(slot, typ=vec)]), slot)

    e.loop(0, k, step)
    for i in range(rows):
        row = b.add(first_row, _const(i))
        cache: dict = {}
        base = b.add(b.mul(row, _const(n)), first_column)
        for j in range(vectors):
            acc = b.load(slots[i][j], typ=vec)
            if epilogue is not None:
                acc = epilogue_vector(e, epilogue, row, acc, dtype, cache)
            at = b.add(base, _const(j * width))
            if ragged_n is not None and j == vectors - 1:
                for lane in range(n % width):
                    b.store(b.extract_element(acc, ir.Constant(I32, lane)),
                            e.element(out, b.add(at, _const(lane)), dtype))
            else:
                b.store(acc, e.element(out, at, dtype), align=align)
