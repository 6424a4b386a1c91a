"""The op table: every primitive's declaration, keyed by the op's name.

An op is declared once, here (through register()), with everything the other layers need to
know of it: its type rule, its public variants (as PyTorch's native_functions.yaml lists
them), and for elementwise ops what its eager kernel, fused scalar and ONNX node are. The
other tables are derived from the declarations (ember.exp, Tensor.exp_, the numpy kernel,
the fusion vocabulary, the CUDA math function, the ONNX translation) or keyed by the same
name and checked against them (the derivative, the LLVM template): a completeness test walks
every op (tests/ir/test_op_table_completeness.py) and names the table that lacks it.

A type rule takes the op's inputs as type-like objects (anything with .shape and .dtype; a
Python number for a scalar operand) and its attrs, and returns the output TensorType, or a
tuple of them for ops with several outputs. It raises an EmberError naming shapes and dtypes
when the inputs do not fit. Eager dispatch, the tracer and the IR verifier all call it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import index_error, runtime_error, type_error
from .dtypes import FLOAT, bool_, get_default_dtype, result_type
from .types import TensorType

NUMBER = (int, float, bool)
_NUMBER_TYPES = frozenset(NUMBER)


@dataclass(frozen=True)
class OpSchema:
    """What the compiler and the runtime know of one primitive op."""

    name: str
    infer: Callable
    kind: str = "other"  # elementwise | reduction | view | shape | index | extern | random
    differentiable: bool = True
    # Elementwise ops compute in one dtype: dispatch casts tensor inputs and scalars to it.
    # A callable of the inputs, or "output" when it is the output's dtype.
    compute_dtype: Callable | str | None = None
    cast_start: int = 0  # inputs before this index keep their dtype (where's condition)
    # A view's output aliases its first input's storage.
    view: bool = False
    num_outputs: int = 1
    attrs: dict = field(default_factory=dict)
    # An op that acts on the world (a collective, a print) runs even when its outputs are
    # unused, and never merges with an equal call.
    side_effects: bool = False

    # -- public forms -------------------------------------------------------------------------
    # "function" (ember.name), "method" (Tensor.name), "inplace" (Tensor.name_); each alias
    # (ember.negative for neg) gets the same forms
    variants: tuple = ()
    aliases: tuple = ()
    # the number of inputs of a plain op, whose public function is dispatch over exactly its
    # inputs (ember.exp(x), ember.mul(x, y)): made from this declaration; None: written
    # by hand in _tensor/ops (ember.add takes alpha=)
    arity: int | None = None

    # -- elementwise ops: kernel, fusion and export ---------------------------------------------
    # the dtype kinds a fused kernel may compute the op in ("f" float, "i" signed, "u"
    # unsigned, "b" bool); empty: it never fuses
    fuse: str = ""
    ufunc: str | None = None  # the numpy (and cupy) function that is its eager kernel
    libm: str | None = None  # the C math function of its scalar (CUDA emits expf for float)
    mathlib: bool = False  # the CPU backend emits it from inline polynomials (llvm/mathlib.py)
    onnx: str | None = None  # the ONNX operator it is, one to one, on inputs of its dtype

    def compute_dtype_of(self, inputs, out_dtype):
        """The dtype this op computes in, for these inputs (tensors, IR values or types, and
        Python numbers) and this output dtype; None for an op that computes in its inputs'
        dtypes. Eager dispatch, the Program executor and constant folding all ask here."""
        rule = self.compute_dtype
        if rule is None:
            return None
        return out_dtype if rule == "output" else rule(inputs)

    @property
    def pure(self) -> bool:
        """Whether the op's outputs depend on its inputs and attrs alone and it does nothing
        else: what dead-code elimination and common-subexpression elimination assume."""
        return self.kind != "random" and not self.side_effects


SCHEMAS: dict[str, OpSchema] = {}
VARIANTS = frozenset({"function", "method", "inplace"})


def register(name: str, **kwargs) -> Callable:
    """Decorator: register the decorated type rule as the schema of op `name`."""

    def wrap(infer: Callable) -> Callable:
        if name in SCHEMAS:
            raise ValueError(f"op {name!r} is already registered")
        unknown = set(kwargs.get("variants", ())) - VARIANTS
        if unknown:
            raise ValueError(f"op {name!r}: unknown variants {sorted(unknown)}")
        SCHEMAS[name] = OpSchema(name=name, infer=infer, **kwargs)
        return infer

    return wrap


def declared(variant: str) -> list[OpSchema]:
    """The ops that declare `variant` ("function", "method" or "inplace"), in order."""
    return [s for s in SCHEMAS.values() if variant in s.variants]


def schema(name: str) -> OpSchema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise type_error(f"unknown op {name!r}") from None


# -- helpers shared by the type rules ------------------------------------------------------


def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def broadcast_shapes(*shapes) -> tuple:
    """numpy/PyTorch broadcasting of shapes, with PyTorch's error message.

    Symbolic sizes (ir.symbolic) broadcast as sizes other than 1: B against 1 gives B, B
    against B gives B, and B against 4 or against C is an error.
    """
    first = shapes[0]
    if all(s == first for s in shapes):
        return tuple(first)
    ndim = max(len(s) for s in shapes)
    result = [1] * ndim
    for s in shapes:
        offset = ndim - len(s)
        for i, d in enumerate(s):
            r = result[offset + i]
            if r == 1:
                result[offset + i] = d
            elif d != 1 and d != r:
                a, b = shapes[0], s
                raise runtime_error(
                    f"The size of tensor a ({r}) must match the size of tensor b ({d}) at "
                    f"non-singleton dimension {offset + i}: shapes {fmt_shape(a)} and "
                    f"{fmt_shape(b)} do not broadcast"
                )
    return tuple(result)


def _as_dim(dim) -> int:
    if isinstance(dim, int) and not isinstance(dim, bool):
        return dim  # a symbolic size under a trace (an int subclass) stays itself
    if not isinstance(dim, bool) and hasattr(dim, "__index__"):
        try:
            return operator.index(dim)  # numpy integers, integer 0-d tensors
        except TypeError:
            pass
    raise type_error(f"dim must be an int, got {type(dim).__name__}")


def normalize_dim(dim: int, ndim: int) -> int:
    """A dim in [-ndim, ndim) made non-negative; IndexError as PyTorch words it otherwise."""
    bound = max(ndim, 1)
    dim = _as_dim(dim)
    if dim < -bound or dim >= bound:
        raise index_error(
            f"Dimension out of range (expected to be in range of [{-bound}, {bound - 1}], "
            f"but got {dim})"
        )
    return dim + bound if dim < 0 else dim


def normalize_dims(dims, ndim: int) -> tuple:
    """None -> every dim; int or sequence -> sorted non-negative tuple without repeats."""
    if dims is None:
        return tuple(range(ndim))
    if not isinstance(dims, (tuple, list)):
        if isinstance(dims, bool) or not hasattr(dims, "__index__"):
            raise type_error(
                f"dim must be an int or a tuple of ints, got {type(dims).__name__}"
            )
        dims = (dims,)
    out = tuple(sorted(normalize_dim(d, ndim) for d in dims))
    if len(set(out)) != len(out):
        raise runtime_error(f"dim {tuple(dims)} appears multiple times in the list of dims")
    # a 0-d tensor accepts dim 0 or -1, which names no axis of its empty shape
    return out if ndim else ()


def shapes_and_dtypes(inputs):
    tensors, scalars = [], []
    for x in inputs:
        if isinstance(x, NUMBER):
            scalars.append(x)
        elif x is not None:
            tensors.append((x.shape, x.dtype))
    return tensors, scalars


def _scalar_category(value) -> int:
    return 0 if isinstance(value, bool) else 1 if isinstance(value, int) else 2


def promoted(inputs):
    """The dtype elementwise ops compute in: PyTorch's result_type over the inputs."""
    # fast path: tensors of one dtype, and scalars that cannot upcast it
    common = None
    scalars = False
    for x in inputs:
        if x is None:
            continue
        if x.__class__ in _NUMBER_TYPES or isinstance(x, NUMBER):
            scalars = True
            continue
        d = getattr(x, "_dtype", None) or x.dtype
        if common is None:
            common = d
        elif d is not common:
            common = None
            break
    if common is not None:
        if not scalars:
            return common
        category = common.category
        for x in inputs:
            if isinstance(x, NUMBER) and _scalar_category(x) > category:
                break
        else:
            return common
    tensors, scalars = shapes_and_dtypes(inputs)
    return result_type(tensors, scalars)


def promoted_float(inputs):
    """As promoted(), but integers and bool go to the default float dtype (exp, sqrt, /)."""
    d = promoted(inputs)
    return d if d.category == FLOAT else get_default_dtype()


def tensor_shapes(inputs):
    return [x.shape for x in inputs if x is not None and not isinstance(x, NUMBER)]


def _shape_of(x):
    """A tensor's shape as a plain tuple (its array's: no Size is built, no trace is told of
    a read), or an IR value's type shape."""
    data = getattr(x, "_data", None)
    return data.shape if data is not None else tuple(x.shape)


def broadcast_inputs(inputs) -> tuple:
    """The broadcast shape of the tensor inputs (scalars do not take part)."""
    shapes = [_shape_of(x) for x in inputs
              if x is not None and x.__class__ not in _NUMBER_TYPES and not isinstance(x, NUMBER)]
    if len(shapes) == 1:
        return shapes[0]
    if len(shapes) == 2 and shapes[0] == shapes[1]:  # the common case, checked first
        return shapes[0]
    return broadcast_shapes(*shapes) if shapes else ()


def expect_float(op: str, x) -> None:
    if not x.dtype.is_floating_point:
        raise type_error(f"{op}: expected a floating-point tensor, got {x.dtype.name}")


__all__ = [
    "SCHEMAS",
    "OpSchema",
    "TensorType",
    "bool_",
    "broadcast_shapes",
    "declared",
    "normalize_dim",
    "normalize_dims",
    "promoted",
    "promoted_float",
    "register",
    "schema",
]
