"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution of one image as 16 small products.

(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016.) Each 2x2 block of
outputs (a tile) comes from the 4x4 patch d of the zero-padded input under it:
Y = A^T [(G g G^T) * (B^T d B)] A for each filter g, the product elementwise. Summed over
the input channels, the elementwise products are, for each of the 16 positions p of a 4x4,
one GEMM M[p] (o, tiles) = U[p] (o, c) @ V[p] (c, tiles), multiplied in register tiles
(tiles.py): 16 products of o x c x tiles in place of one of o x 9c x 4 tiles, 2.25x fewer
multiply-adds, for a few additions per input and output element. The digits CNN's second
convolution (8x8, 32 -> 64) has 16 tiles, one AVX-512 vector of float32.

U, the weight's transform (16, o, c), is made once per arena (emit_weight_transform, run by
the entry under its tag word: codegen/entry.py WinogradWeightCall). Per image,
emit_input_transform pads each channel's rows in registers and writes V;
emit_products multiplies and runs the output transform on vectors of tiles, the epilogue
(an elementwise kernel fused after the convolution) on them while they are in registers, then
stores each lane's four outputs.

Scratch per image (elements, each part starting on a vector): V (16, c, ld) and M (16, o, ld),
ld = the tiles rounded up to whole vectors (columns_ld); the lanes past the
tiles hold values no output reads.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from .emit import I32, I64, STORAGE
from .tiles import columns_ld, emit_tiled_gemm, epilogue_vector, lanes, tile_rows

POSITIONS = 16  # of a 4x4 patch: one product each
# at most this many tiles per image: the output transform's stores are unrolled per lane
TILES_MAX = 64
# fewer input or output channels than this, and the transforms cost what the products save
CHANNELS_MIN = 16
# the largest weight transform (16, o, c) in bytes, kept in each arena
WEIGHT_BYTES_MAX = 1 << 21


def _const(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


def grid(out_hw: tuple[int, int]) -> tuple[int, int]:
    """The tiles of one image: (rows, columns) of 2x2 output blocks, the last ones ragged
    where an output size is odd."""
    return -(-out_hw[0] // 2), -(-out_hw[1] // 2)


def applies(dtype: str, c: int, o: int, kernel, stride, dilation, out_hw) -> bool:
    """Whether a groups-1 convolution of this geometry runs as Winograd products."""
    th, tw = grid(out_hw)
    return (tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and dtype in ("float32", "float64") and c >= CHANNELS_MIN and o >= CHANNELS_MIN
            and th * tw <= TILES_MAX
            and POSITIONS * o * c * np.dtype(dtype).itemsize <= WEIGHT_BYTES_MAX)


def weight_elements(o: int, c: int) -> int:
    return POSITIONS * o * c


def _plane(call) -> tuple[int, int]:
    th, tw = grid(call.out_hw)
    return 2 * th + 2, 2 * tw + 2


def _parts(call) -> tuple[int, int, int]:
    """(ld, start of V, start of M) in the scratch."""
    th, tw = grid(call.out_hw)
    ld = columns_ld(th * tw, call.dtype)
    return ld, 0, POSITIONS * call.c * ld


def scratch_elements(call) -> int:
    """The scratch one image needs (see the module docstring)."""
    ld, _, m_start = _parts(call)
    return m_start + POSITIONS * call.o * ld


def _rows(call) -> int:
    """The output channels of one block of the products when threads share them:
    tiles.tile_rows, or fewer where that leaves an odd number of blocks, so that two threads
    get as many each (the digits CNN's 64 channels: 4 blocks of 16, not 24, 24 and 16)."""
    ld = _parts(call)[0]
    rows = tile_rows(call.o, ld, call.dtype)
    blocks = -(-call.o // rows)
    return -(-call.o // (blocks + 1)) if blocks > 1 and blocks % 2 else rows


def row_blocks(call) -> int:
    """How many blocks of output channels emit_products may be given."""
    return -(-call.o // _rows(call))


def _g_rows(b, v0, v1, v2, half):
    """G (v0, v1, v2): the 4 rows G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2],
    [0, 0, 1]] makes of 3."""
    return [v0, b.fmul(b.fadd(b.fadd(v0, v1), v2), half),
            b.fmul(b.fadd(b.fsub(v0, v1), v2), half), v2]


def emit_weight_transform(e, call, weight, out) -> None:
    """out[p, i, j] = (G g G^T)[p] of filter g = weight[i, j] (3x3), for every (i, j) of an
    (o, c, 3, 3) weight; out (16, o, c). `call`: a WinogradWeightCall."""
    b = e.b
    t = STORAGE[call.dtype]
    half = ir.Constant(t, 0.5)
    filters = call.o * call.c

    def one(f):
        base = b.mul(f, _const(9))
        g = [[b.load(e.element(weight, b.add(base, _const(3 * r + s)), call.dtype), typ=t)
              for s in range(3)] for r in range(3)]
        columns = [_g_rows(b, g[0][s], g[1][s], g[2][s], half) for s in range(3)]
        for r in range(4):
            row = _g_rows(b, columns[0][r], columns[1][r], columns[2][r], half)
            for s in range(4):
                at = b.add(_const((4 * r + s) * filters), f)
                b.store(row[s], e.element(out, at, call.dtype))

    e.loop(0, filters, one)


def _bt(b, d):
    """B^T d over the first index of 4 values: B^T = [[1, 0, -1, 0], [0, 1, 1, 0],
    [0, -1, 1, 0], [0, 1, 0, -1]]."""
    return [b.fsub(d[0], d[2]), b.fadd(d[1], d[2]), b.fsub(d[2], d[1]), b.fsub(d[1], d[3])]


def _lanes(b, vector, picked: list):
    """The vector of `vector`'s lanes `picked` (one value where one lane is picked)."""
    if len(picked) == 1:
        return b.extract_element(vector, ir.Constant(I32, picked[0]))
    mask = ir.Constant(ir.VectorType(I32, len(picked)), [ir.Constant(I32, i) for i in picked])
    return b.shuffle_vector(vector, ir.Constant(vector.type, ir.Undefined), mask)


def emit_input_transform(e, call, x, scratch) -> None:
    """V[p, ci, t] = (B^T d B)[p] of the 4x4 patch d of tile t of channel ci of the image at
    x (c, h, w), into the scratch."""
    b = e.b
    t = STORAGE[call.dtype]
    size = np.dtype(call.dtype).itemsize
    th, tw = grid(call.out_hw)
    ph, pw = _plane(call)
    ld, v_start, _ = _parts(call)
    pad_y, pad_x = call.padding
    v = e.element(scratch, _const(v_start), call.dtype)
    channels = call.c
    # a padded row from a row of the image: its w values after pad_x zeros, zeros after them
    # (pw >= pad_x + w + pad_x); made in registers, never stored and loaded back (a vector load
    # across the stores of two copied rows waits for them to reach the cache: 12% of the
    # digits CNN's batch-256 chain)
    image_row = ir.VectorType(t, call.w)
    padded = ir.Constant(ir.VectorType(I32, pw), [
        ir.Constant(I32, j - pad_x if pad_x <= j < pad_x + call.w else call.w)
        for j in range(pw)])
    zeros = ir.Constant(ir.VectorType(t, pw), None)

    def channel(ci):
        source = e.element(x, b.mul(ci, _const(call.h * call.w)), call.dtype)
        row_of_v = b.mul(ci, _const(ld))
        if ld > th * tw:  # lanes past the tiles: zeros, so the products past them stay finite
            for p in range(POSITIONS):
                start = b.add(row_of_v, _const(p * channels * ld + th * tw))
                e.memset(e.element(v, start, call.dtype), (ld - th * tw) * size)

        # B over each padded row, on vectors of the tiles across it: x[2tx + s] for s < 4
        # are lanes 2tx + s of the row, taken apart by four shuffles
        rows = []
        for r in range(ph):
            y = r - pad_y
            if 0 <= y < call.h:
                values = b.load(e.element(source, _const(y * call.w), call.dtype),
                                typ=image_row, align=size)
                row = b.shuffle_vector(values, ir.Constant(image_row, None), padded)
            else:
                row = zeros
            d = [_lanes(b, row, [2 * tx + s for tx in range(tw)]) for s in range(4)]
            rows.append(_bt(b, d))
        # then B^T down each tile row's 4 padded rows; V's lanes of a tile row are contiguous
        for ty in range(th):
            for s in range(4):
                column = _bt(b, [rows[2 * ty + u][s] for u in range(4)])
                for u in range(4):
                    at_v = b.add(row_of_v, _const((4 * u + s) * channels * ld + ty * tw))
                    b.store(column[u], e.element(v, at_v, call.dtype), align=size)

    e.loop(0, channels, channel)


def emit_products(e, call, u, scratch, out, epilogue=None, blocks=None) -> None:
    """The 16 products M[p] = U[p] @ V[p] and the output transform into the image's output
    `out` (o, oh, ow), with the epilogue (spec, pointers, source, channel dim) when given;
    `blocks`: (start, end) values, only those blocks of output channels (row_blocks), so
    threads may share one image."""
    b = e.b
    ld, v_start, m_start = _parts(call)
    v = e.element(scratch, _const(v_start), call.dtype)
    m = e.element(scratch, _const(m_start), call.dtype)
    o, c = call.o, call.c
    rows = None if blocks is None else _rows(call)  # one tile of rows per block

    def product(p):
        e_u = e.element(u, b.mul(p, _const(o * c)), call.dtype)
        e_v = e.element(v, b.mul(p, _const(c * ld)), call.dtype)
        e_m = e.element(m, b.mul(p, _const(o * ld)), call.dtype)
        emit_tiled_gemm(e, call.dtype, o, ld, c, e_u, e_v, ld, e_m, blocks=blocks, rows=rows)

    e.loop(0, POSITIONS, product)
    if blocks is None:
        first, last = _const(0), _const(o)
    else:
        first = b.mul(blocks[0], _const(rows))
        end = b.mul(blocks[1], _const(rows))
        last = b.select(b.icmp_signed("<", end, _const(o)), end, _const(o))
    e.loop(first, last, lambda channel: _outputs(e, call, m, channel, out, epilogue))


def _outputs(e, call, m, channel, out, epilogue) -> None:
    """Output channel `channel`: Y = A^T M A per tile on vectors of tiles (A^T = [[1, 1, 1,
    0], [0, 1, -1, -1]]), the epilogue on them, each lane's outputs stored."""
    b = e.b
    t = STORAGE[call.dtype]
    width = lanes(call.dtype)
    vec = ir.VectorType(t, width)
    ld = _parts(call)[0]
    th, tw = grid(call.out_hw)
    oh, ow = call.out_hw
    tiles = th * tw
    row = b.mul(channel, _const(ld))
    target = e.element(out, b.mul(channel, _const(oh * ow)), call.dtype)
    cache: dict = {}
    align = np.dtype(call.dtype).itemsize
    for j in range(-(-tiles // width)):
        at = b.add(row, _const(j * width))
        x = [[b.load(e.element(m, b.add(at, _const((4 * r + s) * call.o * ld)), call.dtype),
                     typ=vec, align=align) for s in range(4)] for r in range(4)]
        # A^T over rows, then over columns
        top = [b.fadd(b.fadd(x[0][s], x[1][s]), x[2][s]) for s in range(4)]
        bottom = [b.fsub(b.fsub(x[1][s], x[2][s]), x[3][s]) for s in range(4)]
        y = [[b.fadd(b.fadd(h[0], h[1]), h[2]), b.fsub(b.fsub(h[1], h[2]), h[3])]
             for h in (top, bottom)]
        if epilogue is not None:
            y = [[epilogue_vector(e, epilogue, channel, value, call.dtype, cache)
                  for value in pair] for pair in y]
        for i in range(2):
            # lanes 2l + k: output (2ty + i, 2tx + k) of tile j * width + l; runs of them
            # that lie side by side in a row are stored as one vector
            pair = b.shuffle_vector(y[i][0], y[i][1], ir.Constant(
                ir.VectorType(I32, 2 * width),
                [ir.Constant(I32, q // 2 + (q % 2) * width) for q in range(2 * width)]))
            run: list[int] = []
            start = None
            for q in range(2 * width):
                tile = j * width + q // 2
                ty, tx = divmod(tile, tw)
                oy, ox = 2 * ty + i, 2 * tx + q % 2
                if tile >= tiles or oy >= oh or ox >= ow:
                    continue
                at = oy * ow + ox
                if run and at != start + len(run):
                    _store_run(e, call, pair, run, target, start)
                    run = []
                if not run:
                    start = at
                run.append(q)
            if run:
                _store_run(e, call, pair, run, target, start)


def _store_run(e, call, vector, lanes_of_run: list, target, at: int) -> None:
    """Store the lanes of `vector` listed at target[at], target[at + 1], ..."""
    value = _lanes(e.b, vector, lanes_of_run)
    e.b.store(value, e.element(target, _const(at), call.dtype),
              align=np.dtype(call.dtype).itemsize)
