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

from ..errors import IRError, index_error, runtime_error, type_error
from .dtypes import ALL as ALL_DTYPES
from .dtypes import FLOAT, bool_, get_default_dtype, result_type
from .symbolic import SymInt
from .types import TensorType

NUMBER = (int, float, bool)
_NUMBER_TYPES = frozenset(NUMBER)
_DTYPE_NAMES = frozenset(d.name for d in ALL_DTYPES)
MAX_ATTR_ITEMS = 64  # a sequence attr's length: numpy's most dims (shapes, dims, pads)


# -- attr declarations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Attr:
    """The values one attr of an op takes. kind: "int", "bool", "number" (bool, int or
    float), "choice" (one of `choices`), "dtype" (a dtype's name) or "ints" (a list or tuple
    of ints). Ints lie in [low, high] (a bound of None: none); a
    symbolic size may stand for an int where `symbolic`. nullable: None is a value too;
    optional: a node may leave the attr out."""

    kind: str
    low: int | None = None
    high: int | None = None
    length: int | None = None  # "ints": exactly this many
    symbolic: bool = False
    choices: tuple = ()
    nullable: bool = False
    optional: bool = False

    def describe(self) -> str:
        if self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "bool":
            text = "a bool"
        elif self.kind == "number":
            text = "a number"
        elif self.kind == "dtype":
            text = "a dtype name"
        else:
            ints = "ints" if self.kind != "int" else "an int"
            if self.low is not None and self.high is not None:
                ints += f" in [{self.low}, {self.high}]"
            elif self.low is not None:
                ints += f" >= {self.low}"
            elif self.high is not None:
                ints += f" <= {self.high}"
            if self.symbolic:
                ints += " (or symbolic sizes)"
            if self.kind == "ints":
                count = f"{self.length} " if self.length is not None else ""
                text = f"a list or tuple of {count}{ints}"
            else:
                text = ints
        return f"None or {text}" if self.nullable else text

    def _int_fits(self, value) -> bool:
        if value.__class__ is not int:
            return self.symbolic and isinstance(value, SymInt)
        return ((self.low is None or value >= self.low)
                and (self.high is None or value <= self.high))

    def _ints_fit(self, value) -> bool:
        return (isinstance(value, (list, tuple)) and len(value) <= MAX_ATTR_ITEMS
                and (self.length is None or len(value) == self.length)
                and all(self._int_fits(v) for v in value))

    def fits(self, value) -> bool:
        """Whether value is one this attr takes."""
        if value is None:
            return self.nullable
        kind = self.kind
        if kind == "int":
            return self._int_fits(value)
        if kind == "bool":
            return value.__class__ is bool
        if kind == "number":
            return value.__class__ in _NUMBER_TYPES
        if kind == "choice":
            return value.__class__ is str and value in self.choices
        if kind == "dtype":
            return value.__class__ is str and value in _DTYPE_NAMES
        if kind == "ints":
            return self._ints_fit(value)
        raise ValueError(f"unknown attr kind {kind!r}")


def int_attr(low=None, high=None, **more) -> Attr:
    return Attr("int", low=low, high=high, **more)


def ints_attr(low=None, high=None, **more) -> Attr:
    return Attr("ints", low=low, high=high, **more)


def bool_attr(**more) -> Attr:
    return Attr("bool", **more)


def number_attr(**more) -> Attr:
    return Attr("number", **more)


def choice_attr(*choices, **more) -> Attr:
    return Attr("choice", choices=tuple(choices), **more)


def dtype_attr(**more) -> Attr:
    return Attr("dtype", **more)


# the attrs many ops share
DIM = int_attr()
DIMS = ints_attr(0)  # dims of the input, each once, in increasing order (normalize_dims)
KEEPDIM = bool_attr()
SHAPE = ints_attr(0, symbolic=True)  # a tensor's sizes


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
    # The type rule reads a Python number's value, not only its type (pow refuses an integer
    # to a negative power): eager dispatch never reuses its answer for calls with numbers.
    reads_numbers: bool = False

    # -- public forms -------------------------------------------------------------------------
    # "function" (ember.name), "method" (Tensor.name), "inplace" (Tensor.name_); each alias
    # (ember.negative for neg) gets the same forms
    variants: tuple = ()
    aliases: tuple = ()
    # the number of inputs of a plain op, whose public function is dispatch over exactly its
    # inputs (ember.exp(x), ember.mul(x, y)): made from this declaration; None: written
    # by hand in _tensor/ops (ember.add takes alpha=)
    arity: int | None = None

    # -- what a node of the op holds: checked by check_node() wherever a graph comes from
    # outside (a graph file, the verifier) ---------------------------------------------------
    # the number of inputs: an int, or (least, most) with most None for no bound; None: the
    # arity, or, for an op declared without either (a custom op), any number
    num_inputs: int | tuple | None = None
    # attr name -> Attr; None: undeclared (a custom op), any attrs its kernel takes
    attrs: dict | None = None
    # an attr naming another op whose attrs this op takes as well (view_scatter's view_op)
    attrs_of: str | None = None

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

    def input_bounds(self) -> tuple | None:
        """(least, most) inputs a node of the op has (most None: no bound); None when the
        op does not declare it."""
        count = self.num_inputs if self.num_inputs is not None else self.arity
        if count is None:
            return None
        return (count, count) if isinstance(count, int) else tuple(count)


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


def check_node(schema: OpSchema, inputs, attrs: dict) -> None:
    """Raise an IRError when a node of this op with these inputs and attrs does not fit the
    op's declaration: its number of inputs, its attrs' names, kinds and ranges. Ranges that
    depend on the inputs' shapes (a dim of the input) are the type rule's to check."""
    bounds = schema.input_bounds()
    if bounds is not None:
        least, most = bounds
        if len(inputs) < least or (most is not None and len(inputs) > most):
            wanted = (f"{least}" if least == most else f"at least {least}" if most is None
                      else f"{least} to {most}")
            plural = "" if wanted == "1" else "s"
            raise IRError(f"{schema.name} takes {wanted} input{plural}, got {len(inputs)}")
    declared = schema.attrs
    if declared is None:
        return
    if schema.attrs_of is not None:
        named, spec = attrs.get(schema.attrs_of), declared[schema.attrs_of]
        if not spec.fits(named):
            raise IRError(f"{schema.name}: attr {schema.attrs_of} is {named!r}; expected "
                          f"{spec.describe()}")
        declared = {**(SCHEMAS[named].attrs or {}), **declared}
    unknown = sorted(set(attrs) - set(declared))
    if unknown:
        raise IRError(
            f"{schema.name} has no attr {unknown[0][:64]!r} (its attrs: "
            f"{', '.join(declared) or 'none'})"
        )
    for name, spec in declared.items():
        if name not in attrs:
            if not spec.optional:
                raise IRError(f"{schema.name}: the attr {name!r} is missing")
            continue
        value = attrs[name]
        if not spec.fits(value):
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise IRError(f"{schema.name}: attr {name} is {shown}; expected {spec.describe()}")


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
    if dim.__class__ is int and ndim.__class__ is int:  # the common call, answered at once
        if 0 <= dim < ndim:
            return dim
        if -ndim <= dim < 0:
            return dim + ndim
    bound = max(ndim, 1)
    dim = _as_dim(dim)
    if dim < -bound or dim >= bound:
        raise index_error(
            f"Dimension out of range (expected to be in range of [{-bound}, {bound - 1}], "
            f"but got {dim})"
        )
    return dim + bound if dim < 0 else dim


_NORMALIZED: dict = {}  # (dims, ndim) -> normalize_dims' answer, for None and plain ints


def normalize_dims(dims, ndim: int) -> tuple:
    """None -> every dim; int or sequence -> sorted non-negative tuple without repeats."""
    cls = dims.__class__
    if cls is int or dims is None:  # the common calls, answered once (bool is not int here)
        known = _NORMALIZED.get((dims, ndim))
        if known is not None:
            return known
        if dims is None:
            known = tuple(range(ndim))
        else:
            dim = normalize_dim(dims, ndim)  # range-checked, 0-d tensors included
            known = (dim,) if ndim else ()
        if len(_NORMALIZED) < 4096 and ndim.__class__ is int:
            _NORMALIZED[dims, ndim] = known
        return known
    if cls is tuple and all(d.__class__ is int for d in dims):
        known = _NORMALIZED.get((dims, ndim))
        if known is not None:
            return known
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
    out = out if ndim else ()
    if cls is tuple and len(_NORMALIZED) < 4096 and ndim.__class__ is int \
            and all(d.__class__ is int for d in dims):
        _NORMALIZED[dims, ndim] = out
    return out


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
    "DIM",
    "DIMS",
    "KEEPDIM",
    "SCHEMAS",
    "SHAPE",
    "Attr",
    "OpSchema",
    "TensorType",
    "bool_",
    "bool_attr",
    "broadcast_shapes",
    "check_node",
    "choice_attr",
    "declared",
    "dtype_attr",
    "int_attr",
    "ints_attr",
    "normalize_dim",
    "normalize_dims",
    "number_attr",
    "promoted",
    "promoted_float",
    "register",
    "schema",
]
