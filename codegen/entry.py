"""The plan of a whole graph as one native function: every step, in order, over pointers.

A graph whose steps are all fused kernels or extern ops that native code can run (GEMMs,
convolutions, pooling, attention, row gathers; views are read in place or copied once) becomes
one function `status = entry(argv, threads)`. `argv` holds pointers: the graph's inputs, its
outputs, its constants, the arena that holds every intermediate, then the BLAS functions. A
`Ref` is a byte offset from one of those pointers; the runtime decides them
(runtime/graph_entry.py), a backend emits the calls (codegen/llvm/entry.py). Sizes are all
static: a graph with symbolic sizes is planned once per set of sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import KernelSpec


@dataclass(frozen=True)
class Ref:
    """The pointer argv[arg] + offset bytes."""

    arg: int
    offset: int = 0


@dataclass(frozen=True)
class KernelCall:
    """A fused kernel over all its rows; `parallel`: shared with the native pool when the
    call's thread count is above 1."""

    spec: KernelSpec
    parallel: bool
    refs: tuple[Ref, ...]


@dataclass(frozen=True)
class GemmCall:
    """C[i] = A[i] @ B[i] (B[i] transposed when trans_b), for i < batch, each matrix row-major
    with leading dimensions lda, ldb, ldc and the i-th one `stride_*` elements after the one
    before (a stride of 0 shares one matrix)."""

    dtype: str
    m: int
    n: int
    k: int
    a: Ref
    lda: int
    b: Ref
    ldb: int
    trans_b: bool
    c: Ref
    ldc: int
    batch: int = 1
    stride_a: int = 0
    stride_b: int = 0
    stride_c: int = 0


@dataclass(frozen=True)
class BiasCall:
    """out[r, j] += bias[j] for a (rows, cols) row-major out."""

    dtype: str
    rows: int
    cols: int
    out: Ref
    bias: Ref


@dataclass(frozen=True)
class Epilogue:
    """An elementwise fused kernel over a convolution's output, run on each part of the
    product while it is still in registers: `spec` loops over (n, o, positions...), reads the
    convolution's output as its argument `source` (never from memory), every other load one
    value per output channel or one for all, and stores one value per element to `out`, which
    the convolution then writes instead of its own output. `refs`: the spec's pointers (the
    source's unused); `channel`: the loop dim of the output channel (-1: none)."""

    spec: KernelSpec
    refs: tuple[Ref, ...]
    source: int
    channel: int


@dataclass(frozen=True)
class ConvCall:
    """conv2d of NCHW x (n, c, h, w) with weight (o, c, kh, kw), groups 1: per image, the
    columns (c*kh*kw, oh*ow) written to `cols` (im2col), then weight @ columns into that
    image's (o, oh*ow) output. `cols` is None for a 1x1 kernel with stride 1 and no padding,
    whose image is its own columns. With an `epilogue`, `out` holds the epilogue's result.
    `winograd`: a 3x3 stride-1 convolution computed as Winograd F(2x2, 3x3) products
    (codegen/llvm/winograd.py): `weight` is then the weight's transform (16, o, c) that a
    WinogradWeightCall prepared, and `cols` that method's scratch. `slots` > 1: `cols` holds
    that many images' columns (or scratch) one after another, and the images are shared with
    the pool in as many parts, each part's columns in its own slot (columns too large for a
    thread's stack); 0: one image's."""

    dtype: str
    n: int
    c: int
    h: int
    w: int
    o: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    out_hw: tuple[int, int]
    x: Ref
    weight: Ref
    out: Ref
    cols: Ref | None
    epilogue: Epilogue | None = None
    winograd: bool = False
    slots: int = 0


@dataclass(frozen=True)
class ConvWeightCall:
    """The weight gradient of a groups-1 conv2d, out (o, c*kh*kw) = the sum over the images
    of g_n (o, oh*ow) @ columns_n^T: `conv` is the forward convolution's geometry (its x the
    images, its cols the scratch, its weight and out unused), `g` the output's gradient
    (n, o, oh, ow). Per image, im2col writes the columns, then one GEMM adds the image's
    product, transposed, to a partial sum. `conv.slots` > 1: the images are shared with the
    pool in that many parts, each with a slot of the scratch (one image's columns, then a
    (c*kh*kw, o) partial sum); after them `out` is the sum of the slots' partial sums
    transposed."""

    conv: ConvCall
    g: Ref
    out: Ref


@dataclass(frozen=True)
class WinogradWeightCall:
    """out (16, o, c) = the Winograd F(2x2, 3x3) transform G g G^T of each 3x3 filter g of
    the constant weight (o, c, 3, 3). It runs once per arena, not once per call: the entry
    runs its WinogradWeightCalls only when the arena's tag word (EntryPlan.tag_word) does not
    hold the plan's tag, and then writes it."""

    dtype: str
    o: int
    c: int
    weight: Ref
    out: Ref


@dataclass(frozen=True)
class StridedConvCall:
    """conv2d of x (n, c, h, w) read in place through its element strides `x_strides` (NCHW,
    or an NHWC tensor permuted to NCHW: no copy), weight (o, c / groups, kh, kw) contiguous,
    in `groups` groups (output channels g*o/groups.. read input channels g*c/groups..). A
    depthwise conv (one input channel per group) is a direct loop per output plane; any other
    is, per image and group, the group's columns (c/groups*kh*kw, oh*ow) written to `cols`
    then one GEMM into the group's rows of the output. `cols` is None where the group's
    channels can be the GEMM's operand as they are (a 1x1 kernel, stride 1, no padding, each
    channel's plane or each position's channels contiguous)."""

    dtype: str
    n: int
    c: int
    h: int
    w: int
    o: int
    groups: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    out_hw: tuple[int, int]
    x: Ref
    x_strides: tuple[int, int, int, int]
    weight: Ref
    out: Ref
    cols: Ref | None

    @property
    def depthwise(self) -> bool:
        return self.c == self.groups


def conv_operand(call) -> tuple[int, bool] | None:
    """(ldb, trans_b) where a StridedConvCall's group of channels is the GEMM's B as it lies,
    no columns written: a 1x1 kernel, stride 1, no padding, over a (c/groups, h*w) matrix
    whose positions are contiguous (NCHW) or whose channels are (NHWC: B transposed). None
    otherwise (call: anything with the StridedConvCall's geometry fields)."""
    if (tuple(call.kernel) != (1, 1) or tuple(call.stride) != (1, 1)
            or tuple(call.padding) != (0, 0)):
        return None
    _, sc, sh, sw = call.x_strides
    cg, plane = call.c // call.groups, call.h * call.w
    if (call.w == 1 or sw == 1) and (call.h == 1 or sh == call.w):  # each plane contiguous
        if cg == 1 or sc >= plane:
            return (sc if cg > 1 else plane), False
    step = sw if call.w > 1 else sh // call.w if call.h > 1 else max(cg, 1)
    if ((cg == 1 or sc == 1) and step >= cg and (call.w == 1 or sw == step)
            and (call.h == 1 or sh == call.w * step)):  # each position's channels contiguous
        return step, True
    return None


@dataclass(frozen=True)
class PoolCall:
    """Max or average pooling of (rows, h, w) planes into (rows, oh, ow): each window's
    taps in order, taps outside the input counted as -inf (max) or 0 (average); the average
    divides by `divisors` (one per output position, row-major) or by `divisor`."""

    kind: str  # "max" | "avg"
    dtype: str
    rows: int
    h: int
    w: int
    out_hw: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    x: Ref
    out: Ref
    divisors: tuple[float, ...] | None = None
    divisor: float | None = None


@dataclass(frozen=True)
class ImageChain:
    """Calls that each work image by image (convolutions in register tiles with their
    epilogues, poolings of the images' planes) run one image at a time through all of them,
    so an image's values stay in cache from one call to the next, the images shared with the
    pool. Every call has `n` images (a pooling, rows = n x its planes per image), and reads
    what an earlier call of the chain wrote only as that call wrote it (the same pointer)."""

    n: int
    calls: tuple
    first: int = 0  # the position of its first step in the plan's graph (for the planner)


@dataclass(frozen=True)
class CopyCall:
    """dst (contiguous, row-major over `shape`) = the strided elements of src: element
    (i0, i1, ...) at src + sum(i_d * strides[d]) elements (strides may be 0 or negative).
    Materializes a view that a step needs contiguous."""

    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    src: Ref
    dst: Ref


@dataclass(frozen=True)
class GatherCall:
    """index_select: out[o, i, :] = table[o, index[i], :] over a table viewed as
    (outer, rows, inner) elements of `itemsize` bytes, `count` indices of `index_dtype`. An
    index outside [0, rows) stops the entry: it stores the index at the plan's error word and
    returns `error` (1 + the position of the call's message in EntryPlan.errors)."""

    itemsize: int
    outer: int
    rows: int
    inner: int
    count: int
    index_dtype: str  # "int64" | "int32"
    table: Ref
    index: Ref
    out: Ref
    error: int


@dataclass(frozen=True)
class Strided:
    """An operand read in place: batch index b (row-major over `batch`) at ref +
    sum(b_d * batch_strides[d]) elements, its (rows, cols) matrix with row stride `ld` and
    contiguous columns."""

    ref: Ref
    batch_strides: tuple[int, ...]
    ld: int


@dataclass(frozen=True)
class MaskOperand:
    """An attention mask read in place: batch index b at ref + sum(b_d * batch_strides[d])
    elements, its (l, s) element (i, j) row_stride * i + col_stride * j further (0 for a dim
    it broadcasts). bool (True: attend) or of the scores' dtype (added to them)."""

    ref: Ref
    batch_strides: tuple[int, ...]
    row_stride: int
    col_stride: int
    is_bool: bool


@dataclass(frozen=True)
class AttentionCall:
    """out[b] = softmax(q[b] @ k[b]^T * scale (causal: key j > query i masked; `mask`: the
    keys a bool mask holds False for masked, a float mask added)) @ v[b], and
    lse[b] = each query row's logsumexp, for b over `batch`: per b, one GEMM of scores into
    an (l, s) scratch, a softmax per row, one GEMM into out. q (l, e), k (s, e), v (s, ev)
    are read in place (Strided); out (batch, l, ev) and lse (batch, l) are contiguous.
    `scratch` None: the batch is shared with the pool, each chunk's scores on its stack. A
    row that attends no key gets zeros and a logsumexp of -inf, as the eager kernel."""

    dtype: str
    batch: tuple[int, ...]
    l: int  # noqa: E741
    s: int
    e: int
    ev: int
    scale: float
    causal: bool
    q: Strided
    k: Strided
    v: Strided
    out: Ref
    lse: Ref | None
    scratch: Ref | None
    mask: MaskOperand | None = None


@dataclass(frozen=True)
class EntryPlan:
    """What the entry runs, in order, and where argv's parts start. The entry returns 0, or
    k + 1 when the call of errors[k] stopped it (the offending value at `error_word`)."""

    name: str
    calls: tuple
    n_args: int  # pointers in argv before the BLAS functions
    sgemm_arg: int
    dgemm_arg: int
    blas_int_bits: int
    errors: tuple = ()  # messages, each with an {index} to fill in
    error_word: Ref | None = None
    # the arena's first word: the tag of the plan whose prepared values (WinogradWeightCall)
    # the arena holds. Every entry writes it (0 when it prepares nothing), so entries that
    # share arenas (a C library's, one per batch size) never read another's as their own
    tag_word: Ref | None = None
    tag: int = 0
