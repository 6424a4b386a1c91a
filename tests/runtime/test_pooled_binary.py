"""Large add, subtract, multiply and divide of float arrays (of one shape, or an array and a
scalar on either side) run as native pool tasks (codegen/llvm/binary.py through
windows.binary): the results equal numpy's bit for bit, fresh and in place, and every call the
task cannot take (broadcasting, mixed dtypes, strided or overlapping memory, small arrays)
keeps numpy's way."""

import ember
import numpy as np
import pytest
from ember.runtime import windows
from ember.runtime.kernels import KERNELS
from ember.runtime.kernels import elementwise as ew

# numpy itself warns on inf - inf (the references); the task, like PyTorch, does not
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

N = ew.POOLED_MIN_ELEMENTS
OPS = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply,
       "true_divide": np.true_divide}
KERNEL_OF = {"add": "add", "subtract": "sub", "multiply": "mul", "true_divide": "div"}


def _arrays(dtype, n=N + 37, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    a[:5] = [np.inf, -np.inf, np.nan, 0.0, -0.0]
    b[:5] = [np.inf, np.inf, 1.0, -0.0, -0.0]
    return a, b


@pytest.fixture
def task_runs(monkeypatch):
    ran = []
    original = windows.binary

    def spy(op, x, y, out=None):
        ran.append((op, out is x))
        return original(op, x, y, out)

    monkeypatch.setattr(windows, "binary", spy)
    return ran


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS)
def test_the_task_equals_numpy_fresh_and_in_place(op, dtype, task_runs):
    a, b = _arrays(dtype)
    kernel = KERNELS[KERNEL_OF[op]]
    got = kernel(np, a, b)
    np.testing.assert_array_equal(got, OPS[op](a, b))
    assert got.dtype == dtype and got.flags.c_contiguous
    into = a.copy()
    assert kernel(np, into, b, out=into) is into
    np.testing.assert_array_equal(into, OPS[op](a, b))
    assert task_runs == [(op, False), (op, True)]


@pytest.mark.parametrize("op", OPS)
def test_tensors_take_the_task_through_dispatch(op, task_runs):
    a, b = _arrays(np.float32, seed=1)
    x, y = ember.tensor(a.reshape(-1)), ember.tensor(b.reshape(-1))
    fn = {"add": lambda: x + y, "subtract": lambda: x - y, "multiply": lambda: x * y,
          "true_divide": lambda: x / y}[op]
    for _ in range(3):  # the general way, then the planned one
        np.testing.assert_array_equal(fn().numpy(), OPS[op](a, b))
    assert len(task_runs) == 3


def test_an_in_place_sum_of_gradients_takes_the_task(task_runs):
    a, b = _arrays(np.float32, seed=2)
    x = ember.tensor(a.copy())
    x.add_(ember.tensor(b))
    np.testing.assert_array_equal(x.numpy(), a + b)
    assert task_runs == [("add", True)]


def test_calls_the_task_cannot_take_keep_numpys_way(task_runs):
    a, b = _arrays(np.float32)
    kernel = KERNELS["add"]
    cases = [
        (a[: N // 2], b[: N // 2]),  # small
        (a.reshape(1, -1), b),  # broadcasting shapes
        (a, b.astype(np.float64)),  # mixed dtypes
        (a[::2], b[::2]),  # strided
        (a.astype(np.int32), b.astype(np.int32)),  # not float
    ]
    for x, y in cases:
        np.testing.assert_array_equal(kernel(np, x, y), np.add(x, y))
    # in place over memory the other operand reads: numpy's buffered way gives a[i-1] + a[i]
    buf = np.arange(N + 2, dtype=np.float32)
    x, y = buf[1:], buf[:-1]
    expected = x + y
    kernel(np, x, y, out=x)
    np.testing.assert_array_equal(x, expected)
    # out= another array
    out = np.empty_like(a)
    kernel(np, a, b, out=out)
    np.testing.assert_array_equal(out, a + b)
    assert task_runs == []


def test_the_task_runs_on_one_thread_too(monkeypatch):
    from ember.runtime import threads

    monkeypatch.setattr(threads._budget, "now", lambda: 1)
    a, b = _arrays(np.float64, seed=3)
    np.testing.assert_array_equal(windows.binary("multiply", a, b), a * b)


def test_arrays_in_the_other_byte_order_keep_numpys_way(task_runs):
    a, b = _arrays(np.float32)
    big_a, big_b = a.astype(">f4"), b.astype(">f4")
    np.testing.assert_array_equal(KERNELS["add"](np, big_a, big_b), a + b)
    assert task_runs == [] and not windows.available(big_a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS)
def test_a_scalar_on_either_side_takes_the_task(op, dtype, task_runs):
    a, _ = _arrays(dtype, seed=4)
    kernel = KERNELS[KERNEL_OF[op]]
    for scalar in (dtype(0.37), np.asarray(-2.5, dtype), dtype(0.0), dtype(np.inf)):
        for x, y in ((a, scalar), (scalar, a)):
            got = kernel(np, x, y)
            assert got.dtype == dtype and got.shape == a.shape
            np.testing.assert_array_equal(got, OPS[op](x, y))
    into = a.copy()
    assert kernel(np, into, dtype(3.0), out=into) is into
    np.testing.assert_array_equal(into, OPS[op](a, dtype(3.0)))
    assert len(task_runs) == 9 and task_runs[-1] == (op, True)


@pytest.mark.parametrize("op", OPS)
def test_tensors_times_numbers_take_the_task_through_dispatch(op, task_runs):
    a, _ = _arrays(np.float32, seed=5)
    x = ember.tensor(a)
    fn = {"add": lambda: (x + 0.25, 1.5 + x), "subtract": lambda: (x - 0.25, 1 - x),
          "multiply": lambda: (x * 0.25, 3 * x), "true_divide": lambda: (x / 0.25, 2.0 / x)}[op]
    f32 = np.float32
    expected = {"add": (a + f32(0.25), f32(1.5) + a), "subtract": (a - f32(0.25), f32(1) - a),
                "multiply": (a * f32(0.25), f32(3) * a),
                "true_divide": (a / f32(0.25), f32(2.0) / a)}[op]
    for _ in range(3):  # the general way, then the planned one
        for got, want in zip(fn(), expected):
            assert got.dtype == ember.float32
            np.testing.assert_array_equal(got.numpy(), want)
    assert len(task_runs) == 6


def test_scalars_the_task_cannot_take_keep_numpys_way(task_runs):
    a, b = _arrays(np.float32, seed=6)
    kernel = KERNELS["mul"]
    cases = [
        (a, np.float64(0.5)),  # another dtype: numpy's promotion decides the result's
        (np.asarray(0.5, np.float64), a),
        (a, np.ones(1, np.float32)),  # a one-element array broadcasts, not a scalar
        (a, 0.5),  # a Python number: dispatch makes it the array's dtype first
        (a[: N // 2], np.float32(0.5)),  # small
    ]
    for x, y in cases:
        got = kernel(np, x, y)
        want = np.multiply(x, y)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    # the scalar on the left, written into the array: numpy's way
    into = a.copy()
    kernel(np, np.float32(2.0), into, out=into)
    np.testing.assert_array_equal(into, np.float32(2.0) * a)
    assert task_runs == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_squares_and_cubes_are_products_on_the_task(dtype, task_runs):
    a, _ = _arrays(dtype, seed=7)
    power = KERNELS["pow"]
    np.testing.assert_array_equal(power(np, a, 2.0), a * a)
    np.testing.assert_array_equal(power(np, a, 3), a * a * a)
    x = ember.tensor(a, requires_grad=True)
    y = x ** 3
    y.backward(ember.ones_like(y))
    np.testing.assert_allclose(x.grad.numpy(), 3 * a.astype(np.float64) ** 2, rtol=1e-6)
    assert ("multiply", False) in task_runs and len(task_runs) >= 5


@pytest.mark.parametrize("op", ["mul_", "add_", "sub_", "div_"])
@pytest.mark.parametrize("at", [0, -1, 300])
def test_in_place_by_an_element_of_itself_reads_the_element_before_the_write(op, at):
    """x.mul_(x[0]): the scalar is a 0-d view into x. Each pool chunk loads the scalar when it
    starts, so one starting after the chunk that wrote it read the new value (3/4 of x came
    out multiplied twice); numpy reads a copy, and so does the task now."""
    rng = np.random.default_rng(8)
    data = rng.uniform(1.0, 2.0, N + 37).astype(np.float32)
    x = ember.tensor(data.copy())
    getattr(x, op)(x[at])
    ref = {"mul_": np.multiply, "add_": np.add, "sub_": np.subtract,
           "div_": np.true_divide}[op](data, data[at])
    np.testing.assert_array_equal(x.numpy(), ref)
