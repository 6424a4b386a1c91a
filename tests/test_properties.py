"""Properties that must hold for every input, checked on random ones against numpy (and
against PyTorch's own tables where torch is installed): broadcasting, type promotion, views
that share storage and version counters, and indexing."""

import itertools
import math

import ember
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

try:
    import torch
except ImportError:  # the oracle comparisons below skip; the hand-coded rules still run
    torch = None

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# -- broadcasting --------------------------------------------------------------------------

BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.true_divide,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "remainder": np.remainder,
    "eq": np.equal,
    "lt": np.less,
    "ge": np.greater_equal,
}
finite = st.floats(-100, 100, allow_nan=False, width=64)


@SETTINGS
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
    op=st.sampled_from(sorted(BINARY)),
    data=st.data(),
)
def test_binary_ops_broadcast_like_numpy(shapes, op, data):
    a_shape, b_shape = shapes.input_shapes
    a = data.draw(hnp.arrays(np.float64, a_shape, elements=finite), label="a")
    b = data.draw(hnp.arrays(np.float64, b_shape, elements=finite), label="b")
    out = getattr(ember, op)(ember.tensor(a), ember.tensor(b))
    with np.errstate(all="ignore"):
        expected = BINARY[op](a, b)
    assert tuple(out.shape) == shapes.result_shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


@SETTINGS
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=4, max_side=3),
    data=st.data(),
)
def test_where_broadcasts_all_three_operands(shapes, data):
    c_shape, a_shape, b_shape = shapes.input_shapes
    cond = data.draw(hnp.arrays(np.bool_, c_shape), label="cond")
    a = data.draw(hnp.arrays(np.float64, a_shape, elements=finite), label="a")
    b = data.draw(hnp.arrays(np.float64, b_shape, elements=finite), label="b")
    out = ember.where(ember.tensor(cond), ember.tensor(a), ember.tensor(b))
    assert tuple(out.shape) == shapes.result_shape
    np.testing.assert_array_equal(out.numpy(), np.where(cond, a, b))


@SETTINGS
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
    data=st.data(),
)
def test_in_place_ops_broadcast_only_into_their_own_shape(shapes, data):
    a_shape, b_shape = shapes.input_shapes
    a = data.draw(hnp.arrays(np.float64, a_shape, elements=finite), label="a")
    b = data.draw(hnp.arrays(np.float64, b_shape, elements=finite), label="b")
    x = ember.tensor(a)
    if shapes.result_shape == tuple(a_shape):
        x.add_(ember.tensor(b))
        np.testing.assert_array_equal(x.numpy(), a + b)
    else:
        with pytest.raises(ember.EmberRuntimeError, match="doesn't match the broadcast shape"):
            x.add_(ember.tensor(b))
        np.testing.assert_array_equal(x.numpy(), a)


@st.composite
def incompatible_shapes(draw):
    a = list(draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4)))
    b = list(draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4)))
    k = draw(st.integers(1, min(len(a), len(b))))  # a dim counted from the right
    p, q = draw(st.lists(st.integers(2, 6), min_size=2, max_size=2, unique=True))
    a[-k], b[-k] = p, q
    return tuple(a), tuple(b)


@SETTINGS
@given(shapes=incompatible_shapes(), op=st.sampled_from(sorted(BINARY)))
def test_incompatible_shapes_raise_naming_both(shapes, op):
    a_shape, b_shape = shapes
    with pytest.raises(ValueError):
        np.broadcast_shapes(a_shape, b_shape)
    with pytest.raises(ember.EmberRuntimeError, match="must match the size of tensor b") as info:
        getattr(ember, op)(ember.ones(a_shape), ember.ones(b_shape))
    assert isinstance(info.value, RuntimeError)
    assert fmt(a_shape) in str(info.value) and fmt(b_shape) in str(info.value)


# -- type promotion --------------------------------------------------------------------------

DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
CATEGORY = {
    "bool": 0,
    "uint8": 1,
    "int8": 1,
    "int16": 1,
    "int32": 1,
    "int64": 1,
    "float16": 2,
    "float32": 2,
    "float64": 2,
}
BITS = {
    "bool": 1,
    "uint8": 8,
    "int8": 8,
    "int16": 16,
    "int32": 32,
    "int64": 64,
    "float16": 16,
    "float32": 32,
    "float64": 64,
}
SCALARS = (True, False, 3, -2, 0, 2.5, -0.5)


def dt(name: str):
    return getattr(ember, name)


def rule_promote(a: str, b: str) -> str:
    """PyTorch's promote_types, written out: category first, then size; uint8 and int8 meet
    in int16."""
    if a == b:
        return a
    if CATEGORY[a] != CATEGORY[b]:
        return a if CATEGORY[a] > CATEGORY[b] else b
    if {a, b} == {"uint8", "int8"}:
        return "int16"
    return a if BITS[a] > BITS[b] else b


def scalar_dtype(value, default_float="float32") -> str:
    if isinstance(value, bool):
        return "bool"
    return "int64" if isinstance(value, int) else default_float


def rule_result_type(operands, default_float="float32") -> str:
    """operands: ("dim", dtype) | ("zero", dtype) | ("scalar", value). Dimensioned tensors
    decide; zero-dim tensors, then Python numbers, only count when of a higher category, and
    then a Python number gives its category's default dtype (never upcasting a same-category
    tensor)."""
    groups = []
    for kind in ("dim", "zero", "scalar"):
        names = [
            scalar_dtype(v, default_float) if kind == "scalar" else v
            for k, v in operands
            if k == kind
        ]
        if names:
            groups.append(names[0] if len(names) == 1 else _fold(rule_promote, names))
    result = groups[0]
    for lower in groups[1:]:
        if CATEGORY[lower] > CATEGORY[result]:
            result = lower
    return result


def _fold(fn, items):
    out = items[0]
    for item in items[1:]:
        out = fn(out, item)
    return out


def make(kind: str, name: str):
    return ember.ones(2, 3, dtype=dt(name)) if kind == "dim" else ember.ones((), dtype=dt(name))


def torch_make(kind: str, name: str):
    shape = (2, 3) if kind == "dim" else ()
    return torch.ones(shape, dtype=getattr(torch, name))


@pytest.mark.parametrize("a, b", list(itertools.product(DTYPES, DTYPES)))
def test_promote_types_follows_pytorchs_table(a, b):
    expected = rule_promote(a, b)
    assert ember.promote_types(dt(a), dt(b)) is dt(expected)
    assert ember.promote_types(dt(b), dt(a)) is dt(expected)
    if torch is not None:
        assert str(torch.promote_types(getattr(torch, a), getattr(torch, b))) == f"torch.{expected}"


TENSOR_KINDS = (("dim", "dim"), ("zero", "dim"), ("dim", "zero"), ("zero", "zero"))


@pytest.mark.parametrize("a, b", list(itertools.product(DTYPES, DTYPES)))
def test_binary_result_dtype_of_every_tensor_pair(a, b):
    for ka, kb in TENSOR_KINDS:
        x, y = make(ka, a), make(kb, b)
        expected = rule_result_type([(ka, a), (kb, b)])
        for op in ("add", "mul", "maximum", "minimum"):
            out = getattr(ember, op)(x, y)
            assert out.dtype is dt(expected), (op, ka, a, kb, b, out.dtype)
            assert out.numpy().dtype == dt(expected).np  # the array agrees with the tensor
        assert ember.result_type(x, y) is dt(expected)
        if expected != "bool":
            assert ember.sub(x, y).dtype is dt(expected)
        true_div = expected if CATEGORY[expected] == 2 else "float32"
        assert (x / y).dtype is dt(true_div)
        assert (x < y).dtype is ember.bool
        if torch is not None:
            got = torch.result_type(torch_make(ka, a), torch_make(kb, b))
            assert str(got) == f"torch.{expected}", (ka, a, kb, b)


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("kind", ("dim", "zero"))
def test_python_scalars_do_not_upcast_tensors_of_their_category(name, kind):
    x = make(kind, name)
    for value in SCALARS:
        expected = rule_result_type([(kind, name), ("scalar", value)])
        for out in (x + value, value + x, x * value, ember.maximum(x, value)):
            assert out.dtype is dt(expected), (kind, name, value, out.dtype)
            assert out.numpy().dtype == dt(expected).np
        if CATEGORY[scalar_dtype(value)] <= CATEGORY[name]:
            assert expected == name  # a Python number never widens a same-category tensor
        if torch is not None:
            assert str(torch.result_type(torch_make(kind, name), value)) == f"torch.{expected}"


def test_a_python_float_upcasts_integers_to_the_default_dtype():
    x = ember.tensor([1, 2, 3], dtype=ember.int32)
    assert (x * 0.5).dtype is ember.float32
    assert (x + 1).dtype is ember.int32
    assert (ember.ones(3, dtype=ember.float16) * 1e3).dtype is ember.float16
    assert (ember.tensor([True]) + 1).dtype is ember.int64
    assert (ember.tensor(7, dtype=ember.int8) + ember.tensor([1], dtype=ember.uint8)).dtype is (
        ember.uint8
    )  # a zero-dim tensor of the same category does not count
    assert (ember.tensor(7.0, dtype=ember.float64) + ember.tensor([1])).dtype is ember.float64


@pytest.mark.parametrize(
    "a, b", list(itertools.product(("bool", "uint8", "int8", "int32", "int64"), repeat=2))
)
def test_integer_true_division_gives_the_default_float(a, b):
    rng = np.random.default_rng(0)
    x = rng.integers(0 if a in ("bool", "uint8") else -50, 2 if a == "bool" else 50, 6)
    y = rng.integers(1, 2 if b == "bool" else 50, 6)
    out = ember.tensor(x, dtype=dt(a)) / ember.tensor(y, dtype=dt(b))
    assert out.dtype is ember.float32
    np.testing.assert_allclose(out.numpy(), x.astype(a) / y.astype(b), rtol=1e-6)
    assert (ember.tensor(x, dtype=dt(a)) / 2).dtype is ember.float32
    if torch is not None:
        tx, ty = torch.tensor(x).to(getattr(torch, a)), torch.tensor(y).to(getattr(torch, b))
        assert (tx / ty).dtype == torch.float32


def test_the_default_dtype_decides_integer_division_and_float_scalars():
    ember.set_default_dtype(ember.float64)
    try:
        x = ember.tensor([1, 2, 3])
        assert (x / x).dtype is ember.float64
        assert (x * 0.5).dtype is ember.float64
        assert (ember.ones(3, dtype=ember.float16) * 0.5).dtype is ember.float16
    finally:
        ember.set_default_dtype(ember.float32)
    assert (x / x).dtype is ember.float32


def _values_of(name: str):
    if name == "bool":
        return st.booleans()
    if CATEGORY[name] == 1:
        info = np.iinfo(name)
        return st.integers(int(info.min), int(info.max))
    return st.floats(-1000, 1000, width=16 if name == "float16" else 32)


@SETTINGS
@given(
    a=st.sampled_from(DTYPES),
    b=st.sampled_from(DTYPES),
    zero_a=st.booleans(),
    op=st.sampled_from(("add", "mul", "maximum")),
    data=st.data(),
)
def test_mixed_dtype_values_are_computed_in_the_promoted_dtype(a, b, zero_a, op, data):
    shape_a = () if zero_a else (4,)
    xa = data.draw(hnp.arrays(np.dtype(a), shape_a, elements=_values_of(a)), label="a")
    xb = data.draw(hnp.arrays(np.dtype(b), (4,), elements=_values_of(b)), label="b")
    out = getattr(ember, op)(ember.tensor(xa), ember.tensor(xb))
    expected_dtype = rule_result_type([("zero" if zero_a else "dim", a), ("dim", b)])
    if op == "add" and expected_dtype == "bool":
        expected = xa | xb
    else:
        with np.errstate(all="ignore"):  # integer wrap-around, float16 overflow
            expected = BINARY.get(op, np.multiply)(
                xa.astype(expected_dtype), xb.astype(expected_dtype)
            )
    np.testing.assert_array_equal(out.numpy(), expected.astype(expected_dtype))


# -- views share storage ---------------------------------------------------------------------


def _shape_candidates(shape):
    n = math.prod(shape)
    out = {(n,), (-1,), tuple(reversed(shape)), (1, *shape), (*shape, 1)}
    if n == 1:
        out.add(())
    for i in range(len(shape) - 1):
        out.add(shape[:i] + (shape[i] * shape[i + 1],) + shape[i + 2 :])
    for i, d in enumerate(shape):
        for f in range(2, d):
            if d % f == 0:
                out.add(shape[:i] + (f, d // f) + shape[i + 1 :])
    return sorted(out, key=lambda s: (len(s), s))


def _resolved(shape, n):
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        return tuple(n // known if d == -1 else d for d in shape)
    return tuple(shape)


def _numpy_can_view(a, shape) -> bool:
    probe = a.view()
    try:
        probe.shape = _resolved(shape, a.size)
    except AttributeError:
        return False
    return True


@st.composite
def view_op(draw, a):
    """One view op valid for array a, as (name, args)."""
    nd = a.ndim
    names = ["reshape", "view", "unsqueeze", "permute"]
    if nd:
        names += ["transpose", "slice", "narrow", "select", "squeeze", "expand"]
    name = draw(st.sampled_from(names))
    if name in ("reshape", "view"):
        shape = draw(st.sampled_from(_shape_candidates(a.shape)))
        if name == "view" and not _numpy_can_view(a, shape):
            return ("view_error", (shape,))
        return (name, (shape,))
    if name == "unsqueeze":
        return (name, (draw(st.integers(-nd - 1, nd)),))
    if name == "permute":
        return (name, tuple(draw(st.permutations(range(nd)))))
    if name == "transpose":
        return (name, (draw(st.integers(-nd, nd - 1)), draw(st.integers(-nd, nd - 1))))
    if name == "squeeze":
        return (name, (draw(st.integers(0, nd - 1)),))
    dim = draw(st.integers(0, nd - 1))
    size = a.shape[dim]
    if name == "select" and size == 0:
        name = "narrow"
    if name == "select":
        return (name, (dim, draw(st.integers(-size, size - 1))))
    if name == "narrow":
        start = draw(st.integers(0, size))
        return (name, (dim, start, draw(st.integers(0, size - start))))
    if name == "expand":
        target = [
            draw(st.integers(1, 3)) if d == 1 else draw(st.sampled_from((d, -1))) for d in a.shape
        ]
        lead = draw(st.lists(st.integers(1, 2), max_size=2))
        return (name, (tuple(lead + target),))
    bound = st.one_of(st.none(), st.integers(-size - 2, size + 2))
    key = tuple(
        slice(draw(bound), draw(bound), draw(st.sampled_from((None, 1, 2, 3))))
        for _ in range(draw(st.integers(1, nd)))
    )
    return ("slice", (key,))


def numpy_view(a, op):
    name, args = op
    if name in ("reshape", "view"):
        return a.reshape(_resolved(args[0], a.size))
    if name == "view_error":
        return a
    if name == "unsqueeze":
        return np.expand_dims(a, args[0] if args[0] >= 0 else args[0] + a.ndim + 1)
    if name == "permute":
        return a.transpose(args)
    if name == "transpose":
        return np.swapaxes(a, *args)
    if name == "squeeze":
        return a.squeeze(args[0]) if a.shape[args[0]] == 1 else a[...]
    if name == "select":
        return a[(slice(None),) * args[0] + (args[1], Ellipsis)]  # a view, even when 0-d
    if name == "narrow":
        dim, start, length = args
        return a[(slice(None),) * dim + (slice(start, start + length),)]
    if name == "expand":
        target = _resolved_expand(a.shape, args[0])
        offset = len(target) - a.ndim
        if target[offset:] == a.shape and all(d == 1 for d in target[:offset]):
            return a.reshape(target)  # nothing repeats: a writable view, as in PyTorch
        return np.broadcast_to(a, target)
    return a[args[0]]


def _resolved_expand(shape, target):
    offset = len(target) - len(shape)
    return tuple(shape[i - offset] if t == -1 else t for i, t in enumerate(target))


def ember_view(t, op):
    name, args = op
    if name == "view_error":
        with pytest.raises(ember.EmberRuntimeError, match="view size is not compatible"):
            t.view(args[0])
        return t
    if name == "slice":
        return t[args[0]]
    if name == "permute":
        return t.permute(*args)
    return getattr(t, name)(*args)


@st.composite
def view_chains(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
    a = np.arange(math.prod(shape), dtype=np.float64).reshape(shape)
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(view_op(a))
        a = numpy_view(a, op)
        ops.append(op)
    return shape, ops


WRITES = ("setitem_all", "setitem_first", "add_", "mul_", "fill_", "copy_", "zero_")


@SETTINGS
@given(chain=view_chains(), write=st.sampled_from(WRITES), data=st.data())
def test_writes_through_views_reach_the_base_as_in_numpy(chain, write, data):
    shape, ops = chain
    base = np.arange(math.prod(shape), dtype=np.float64).reshape(shape).copy()
    x = ember.tensor(base)
    a, v = base, x
    for op in ops:
        a, v = numpy_view(a, op), ember_view(v, op)
        np.testing.assert_array_equal(v.numpy(), a)
        assert tuple(v.shape) == a.shape
    is_view = a is base or a.base is base
    if is_view:
        assert v._version is x._version, "a view must share its base's version counter"
    else:
        assert v._version is not x._version, "a copy must not share the version counter"
    if write == "setitem_first" and (a.ndim == 0 or a.shape[0] == 0):
        write = "setitem_all"
    value = data.draw(
        hnp.arrays(
            np.float64,
            a.shape[1:] if write == "setitem_first" else a.shape,
            elements=st.floats(-1e3, -1, width=64),
        ),
        label="value",
    )
    before = x._version[0]

    def write_ember():
        if write == "setitem_all":
            v[...] = ember.tensor(value)
        elif write == "setitem_first":
            v[0] = ember.tensor(value)
        elif write == "copy_":
            v.copy_(ember.tensor(value))
        elif write == "add_":
            v.add_(7.0)
        elif write == "mul_":
            v.mul_(-2.0)
        elif write == "fill_":
            v.fill_(-3.0)
        else:
            v.zero_()

    if not a.flags.writeable:  # expanded with repeats: PyTorch refuses the write too
        with pytest.raises(ember.EmberRuntimeError, match="single memory location"):
            write_ember()
        np.testing.assert_array_equal(x.numpy(), base)
        assert x._version[0] == before
        return
    write_ember()
    if write == "setitem_all" or write == "copy_":
        a[...] = value
    elif write == "setitem_first":
        a[0] = value
    elif write == "add_":
        a += 7.0
    elif write == "mul_":
        a *= -2.0
    elif write == "fill_":
        a[...] = -3.0
    else:
        a[...] = 0.0
    np.testing.assert_array_equal(x.numpy(), base)
    np.testing.assert_array_equal(v.numpy(), a)
    assert x._version[0] == before + (1 if is_view else 0)
    assert v._version[0] >= 1
    # and writes to the base show through the view
    x.add_(0.5)
    base += 0.5
    np.testing.assert_array_equal(v.numpy(), a)
    assert v._version[0] == x._version[0] or not is_view


def test_view_of_a_transposed_tensor_is_refused_and_reshape_copies():
    x = ember.arange(6.0).reshape(2, 3)
    with pytest.raises(ember.EmberRuntimeError, match="view size is not compatible"):
        x.t().view(6)
    for _ in range(2):  # the second answer comes from _viewable's cache
        y = x.t().reshape(6)
        y[0] = 100.0
        assert x.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
        assert x._version[0] == 0


def test_reshape_of_a_non_contiguous_tensor_that_can_be_viewed_is_a_view():
    x = ember.arange(24.0).reshape(2, 3, 4)
    for _ in range(2):  # the second answer comes from _viewable's cache
        z = x.transpose(0, 1).reshape(3, 2, 2, 2)  # splits the last dim: no copy needed
        z[0, 0, 0, 0] = -1.0
        assert x[0, 0, 0].item() == -1.0
        x[0, 0, 0] = 0.0
        w = x.transpose(0, 1).reshape(6, 4)  # merges dims 0 and 1 of the transpose: a copy
        w[0, 0] = -2.0
        assert x[0, 0, 0].item() == 0.0


# -- indexing --------------------------------------------------------------------------------


def _is_advanced(k) -> bool:
    return isinstance(k, (list, np.ndarray, ember.Tensor))


def _as_numpy_key(k):
    if isinstance(k, ember.Tensor):
        return k.numpy()
    if isinstance(k, list):
        return np.asarray(k)
    return k


def _numpy_key(ndim, key) -> tuple:
    """The key with numpy arrays for index lists and tensors, and its Ellipsis spelled out
    as slices (numpy counts even an empty Ellipsis as a gap between advanced indices; PyTorch
    does not)."""
    key = tuple(_as_numpy_key(k) for k in key)
    at = next((i for i, k in enumerate(key) if k is Ellipsis), None)
    if at is None:
        return key
    used = sum(
        k.ndim if isinstance(k, np.ndarray) and k.dtype == np.bool_ else 1
        for k in key
        if k is not None and k is not Ellipsis
    )
    return key[:at] + (slice(None),) * (ndim - used) + key[at + 1 :]


def reference_getitem(a, key):
    """numpy's a[key], with PyTorch's differences: integers select before the advanced
    indices apply (numpy counts them as advanced indices, which can move the result's dims),
    and an Ellipsis spans exactly the dims it covers."""
    key = _numpy_key(a.ndim, key)
    if not any(isinstance(k, np.ndarray) for k in key):
        return a[key]
    first, second = [], []
    for k in key:
        if isinstance(k, np.ndarray):
            first += [slice(None)] * (k.ndim if k.dtype == np.bool_ else 1)
            second.append(k)
        elif isinstance(k, int):
            first.append(k)
        else:
            first.append(k)
            second.append(Ellipsis if k is Ellipsis else slice(None))
    return a[tuple(first)][tuple(second)]


def reference_setitem(a, key, value):
    key = _numpy_key(a.ndim, key)
    if not any(isinstance(k, np.ndarray) for k in key):
        a[key] = value
        return
    first, second = [], []
    for k in key:
        if isinstance(k, np.ndarray):
            first += [slice(None)] * (k.ndim if k.dtype == np.bool_ else 1)
            second.append(k)
        elif isinstance(k, int):
            first.append(k)
        else:
            first.append(k)
            second.append(Ellipsis if k is Ellipsis else slice(None))
    view = a[tuple(first)]  # basic indexing: a view of a
    view[tuple(second)] = value


@st.composite
def shapes_broadcasting_to(draw, target, min_dims=0):
    """A shape that broadcasts to `target`: a suffix of it, some sides turned into 1."""
    k = draw(st.integers(min(min_dims, len(target)), len(target)))
    return tuple(1 if draw(st.booleans()) else d for d in target[len(target) - k :])


@st.composite
def index_keys(draw, shape):
    """A key mixing ints (negative too), slices with steps, None, Ellipsis, integer arrays
    (lists, ndarrays or tensors, broadcasting together) and boolean masks."""
    nd = len(shape)
    explicit = draw(st.integers(0, nd))
    ellipsis = draw(st.booleans())
    prefix = draw(st.integers(0, explicit)) if ellipsis else explicit
    dims = list(range(prefix)) + list(range(nd - (explicit - prefix), nd))
    advanced = draw(st.sampled_from(("none", "arrays", "mask")))
    broadcast = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=3))
    mask_used = False
    entries, i, ellipsis_at = [], 0, 0
    while i < len(dims):
        if i == prefix:
            ellipsis_at = len(entries)
        d = dims[i]
        size = shape[d]
        kinds = ["int", "slice"]
        if advanced == "arrays":
            kinds.append("array")
        if advanced == "mask" and not mask_used:
            kinds.append("mask")
        kind = draw(st.sampled_from(kinds))
        if kind == "int":
            entries.append(draw(st.integers(-size, size - 1)))
        elif kind == "slice":
            bound = st.one_of(st.none(), st.integers(-size - 2, size + 2))
            entries.append(slice(draw(bound), draw(bound), draw(st.sampled_from((None, 1, 2, 3)))))
        elif kind == "array":
            own = draw(shapes_broadcasting_to(broadcast, min_dims=1))
            values = draw(hnp.arrays(np.int64, own, elements=st.integers(-size, size - 1)))
            container = draw(st.sampled_from(("list", "ndarray", "tensor")))
            entries.append(
                values.tolist()
                if container == "list"
                else ember.tensor(values)
                if container == "tensor"
                else values
            )
        else:
            mask_used = True
            # a 2-d mask covers two neighbouring dims on one side of the ellipsis
            two = (
                i + 1 < len(dims)
                and dims[i + 1] == d + 1
                and (i + 1 < prefix or i >= prefix)
                and draw(st.booleans())
            )
            mask_shape = (size, shape[d + 1]) if two else (size,)
            mask = draw(hnp.arrays(np.bool_, mask_shape))
            entries.append(ember.tensor(mask) if draw(st.booleans()) else mask)
            i += 1 if two else 0
        i += 1
    if ellipsis:
        entries.insert(ellipsis_at if prefix < len(dims) else len(entries), Ellipsis)
    for _ in range(draw(st.integers(0, 2))):
        entries.insert(draw(st.integers(0, len(entries))), None)
    return tuple(entries)


@st.composite
def arrays_and_keys(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5))
    a = np.arange(math.prod(shape), dtype=np.int64).reshape(shape) * 10
    return a, draw(index_keys(shape))


def _check_reference_is_numpy(a, key, expected):
    ints_with_arrays = any(isinstance(k, int) for k in key) and any(map(_is_advanced, key))
    if not ints_with_arrays:
        direct = a[_numpy_key(a.ndim, key)]
        np.testing.assert_array_equal(expected, direct)


@SETTINGS
@given(case=arrays_and_keys())
def test_getitem_matches_numpy(case):
    a, key = case
    expected = reference_getitem(a, key)
    _check_reference_is_numpy(a, key, expected)
    out = ember.tensor(a)[key]
    assert tuple(out.shape) == expected.shape, (key, out.shape, expected.shape)
    np.testing.assert_array_equal(out.numpy(), expected)


@SETTINGS
@given(case=arrays_and_keys(), scalar=st.booleans(), data=st.data())
def test_setitem_matches_numpy(case, scalar, data):
    a, key = case
    target = reference_getitem(a, key).shape
    if scalar:
        value = -1
        ember_value = -1
    else:
        value_shape = data.draw(shapes_broadcasting_to(target), label="value shape")
        value = -1 - np.arange(math.prod(value_shape), dtype=np.int64).reshape(value_shape)
        ember_value = ember.tensor(value)
    expected = a.copy()
    reference_setitem(expected, key, value)
    x = ember.tensor(a)
    x[key] = ember_value
    np.testing.assert_array_equal(x.numpy(), expected)
    assert x._version[0] == 1


def test_integers_index_before_advanced_indices_as_in_pytorch():
    a = np.arange(24).reshape(2, 3, 4)
    x = ember.tensor(a)
    out = x[0, :, [1, 2]]
    assert tuple(out.shape) == (3, 2)  # numpy's a[0, :, [1, 2]] would be (2, 3)
    np.testing.assert_array_equal(out.numpy(), a[0][:, [1, 2]])
    np.testing.assert_array_equal(x[:, [0, 2], :][1].numpy(), a[1][[0, 2]])
    out = x[:, ember.tensor([1, 0]), 3]
    np.testing.assert_array_equal(out.numpy(), a[:, :, 3][:, [1, 0]])
    if torch is not None:
        t = torch.tensor(a)
        assert tuple(t[0, :, [1, 2]].shape) == (3, 2)
        np.testing.assert_array_equal(t[0, :, [1, 2]].numpy(), x[0, :, [1, 2]].numpy())


def test_range_and_tuple_entries_index_like_lists_as_in_pytorch():
    # mnist_forward_forward: x_[range(x.shape[0]), y] = x.max()
    a = np.arange(12.0).reshape(3, 4)
    x = ember.tensor(a)
    np.testing.assert_array_equal(x[range(3), [0, 1, 2]].numpy(), a[[0, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(x[range(1, 3)].numpy(), a[1:3])
    np.testing.assert_array_equal(x[(0, 2), ].numpy(), a[[0, 2]])
    assert tuple(x[range(0)].shape) == (0, 4)
    x[range(3), ember.tensor([3, 2, 1])] = 5.0
    expected = a.copy()
    expected[[0, 1, 2], [3, 2, 1]] = 5.0
    np.testing.assert_array_equal(x.numpy(), expected)
    if torch is not None:
        t = torch.tensor(a)
        t[range(3), torch.tensor([3, 2, 1])] = 5.0
        np.testing.assert_array_equal(t.numpy(), x.numpy())


@pytest.mark.parametrize("flag", (True, False))
def test_a_bool_key_adds_a_dim_as_in_numpy(flag):
    a = np.arange(6).reshape(2, 3)
    out = ember.tensor(a)[flag]
    assert tuple(out.shape) == a[flag].shape
    np.testing.assert_array_equal(out.numpy(), a[flag])
