"""A user's mistake raises an EmberError that is also the builtin PyTorch raises there, names
the shapes, dtypes and devices involved, and points at the user's line (in this file)."""

import contextlib
import os
import re
import subprocess
import sys

import ember
import numpy as np
import pytest
from ember.runtime.kernels import KERNELS

THIS_FILE = os.path.abspath(__file__)


@contextlib.contextmanager
def user_error(builtin, match, *names):
    """Expect an EmberError that is `builtin`, matches `match`, mentions every one of `names`,
    and reports the line of this file that made the call."""
    test_frame = sys._getframe(2)
    with pytest.raises(builtin, match=match) as info:
        yield info
    error = info.value
    message = str(error)
    assert isinstance(error, ember.EmberError), f"{type(error).__name__} is not an EmberError"
    for name in names:
        assert name in message, f"{name!r} is not named in: {message}"
    where = re.search(r"\(at (.+):(\d+)\)$", message)
    assert where, f"no user location in: {message}"
    assert os.path.basename(__file__) in message
    assert os.path.abspath(where.group(1)) == THIS_FILE
    tb = error.__traceback__
    while tb is not None and tb.tb_frame is not test_frame:
        tb = tb.tb_next
    assert tb is not None
    assert int(where.group(2)) == tb.tb_lineno, "not the line that made the mistake"


def test_broadcast_mismatch_names_both_shapes():
    a, b = ember.ones(2, 3), ember.ones(4, 3)
    with user_error(
        RuntimeError,
        r"size of tensor a \(2\) must match the size of tensor b \(4\)",
        "[2, 3]",
        "[4, 3]",
    ):
        a + b
    with user_error(RuntimeError, "must match", "[5]", "[2, 3]"):
        ember.mul(a, ember.ones(5))


def test_matmul_inner_size_mismatch_names_both_shapes():
    with user_error(RuntimeError, r"cannot be multiplied \(2x3 and 4x5\)", "[2, 3]", "[4, 5]"):
        ember.ones(2, 3) @ ember.ones(4, 5)
    with user_error(RuntimeError, "cannot be multiplied", "[7, 2, 3]", "[2, 5]"):
        ember.matmul(ember.ones(7, 2, 3), ember.ones(2, 5))
    with user_error(RuntimeError, "inconsistent tensor size", "[3]", "[4]") as info:
        ember.ones(3) @ ember.ones(4)
    assert "{" not in str(info.value), "an unformatted placeholder in the message"


def test_matmul_dtype_mismatch_names_both_dtypes():
    with user_error(RuntimeError, "same dtype", "float32", "float64"):
        ember.ones(2, 3) @ ember.ones(3, 2, dtype=ember.float64)


def test_reshape_numel_mismatch_names_the_shapes():
    x = ember.ones(2, 3)
    with user_error(RuntimeError, r"shape '\[4, 2\]' is invalid for input of size 6", "[2, 3]"):
        x.reshape(4, 2)
    with user_error(RuntimeError, "is invalid for input of size 6", "[2, 3]"):
        x.reshape(-1, 4)
    with user_error(RuntimeError, r"shape '\[7\]' is invalid", "[2, 3]"):
        x.view(7)


@pytest.mark.parametrize(
    "method, args, low, high, got",
    [
        ("sum", (2,), -2, 1, 2),
        ("sum", ((0, -3),), -2, 1, -3),
        ("unsqueeze", (3,), -3, 2, 3),
        ("unsqueeze", (-4,), -3, 2, -4),
        ("logsumexp", (2,), -2, 1, 2),
        ("amax", (-3,), -2, 1, -3),
        ("argmax", (2,), -2, 1, 2),
        ("max", (5,), -2, 1, 5),
        ("cumsum", (-3,), -2, 1, -3),
        ("mean", (2,), -2, 1, 2),
        ("transpose", (0, 2), -2, 1, 2),
        ("select", (2, 0), -2, 1, 2),
    ],
)
def test_dim_out_of_range_is_an_index_error(method, args, low, high, got):
    x = ember.ones(2, 3)
    expected = (
        rf"Dimension out of range \(expected to be in range of \[{low}, {high}\], but got {got}\)"
    )
    with user_error(IndexError, expected):
        getattr(x, method)(*args)


def test_index_out_of_range_is_an_index_error():
    x = ember.arange(3)
    with user_error(IndexError, "index 5 is out of bounds for dimension 0 with size 3"):
        x[5]
    with user_error(IndexError, "index -4 is out of bounds for dimension 0 with size 3"):
        x[-4]
    with user_error(IndexError, "index 7 is out of bounds for dimension 1 with size 4"):
        ember.zeros(2, 4)[:, 7]
    with user_error(IndexError, "index 5 is out of bounds for dimension 0 with size 3"):
        x[5] = 1


def test_integer_tensor_index_out_of_range_is_an_index_error():
    x = ember.arange(3)
    with user_error(IndexError, "index 5 is out of bounds for dimension 0 with size 3"):
        x[ember.tensor([0, 5])]
    with user_error(IndexError, "index -4 is out of bounds for dimension 0 with size 3"):
        x[[0, -4]]
    with user_error(IndexError, "index 9 is out of bounds for dimension 1 with size 4"):
        ember.zeros(2, 4)[:, ember.tensor([[1], [9]])]
    with user_error(IndexError, "index 3 is out of bounds for dimension 0 with size 3"):
        x[ember.tensor([3])] = 0


def test_mixed_devices_are_refused_before_any_kernel_runs(monkeypatch):
    ran = []
    for op in ("add", "mul", "matmul", "where"):
        kernel = KERNELS[op]
        monkeypatch.setitem(
            KERNELS, op, lambda *a, op=op, kernel=kernel, **kw: ran.append(op) or kernel(*a, **kw)
        )
    cpu, row = ember.zeros(3), ember.zeros(1, 3)
    gpu, column = ember.zeros(3), ember.zeros(3, 1)
    gpu._device = column._device = ember.device("cuda", 0)
    same_device = "Expected all tensors to be on the same device"
    with user_error(RuntimeError, same_device, "cpu", "cuda:0", "add"):
        cpu + gpu
    with user_error(RuntimeError, same_device, "cpu", "cuda:0", "mul"):
        ember.mul(gpu, cpu)
    with user_error(RuntimeError, same_device, "cpu", "cuda:0", "matmul"):
        ember.matmul(row, column)
    with user_error(RuntimeError, same_device, "cpu", "cuda:0", "where"):
        ember.where(cpu > 0, gpu, gpu)
    assert not ran, f"kernels ran before the device check: {ran}"
    assert (cpu + cpu).shape == (3,) and ran == ["add"]  # the spy does see a kernel run


def test_backward_of_a_non_scalar_needs_a_gradient():
    x = ember.ones(3, requires_grad=True)
    y = x * 2
    with user_error(RuntimeError, "grad can be implicitly created only for scalar outputs", "[3]"):
        y.backward()
    y.backward(ember.ones(3))
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_second_backward_through_a_freed_graph():
    x = ember.ones(3, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with user_error(RuntimeError, "backward through the graph a second time", "retain_graph"):
        y.backward()
    z = (x.exp()).sum()
    z.backward(retain_graph=True)
    z.backward()  # kept by retain_graph


def test_requires_grad_on_an_integer_tensor():
    with user_error(RuntimeError, "only Tensors of floating point", "int64"):
        ember.zeros(3, dtype=ember.int64).requires_grad_()
    with user_error(RuntimeError, "only Tensors of floating point", "int64"):
        ember.tensor([1, 2], requires_grad=True)
    x = ember.zeros(3, dtype=ember.uint8)
    with user_error(RuntimeError, "only Tensors of floating point", "uint8"):
        x.requires_grad = True


def test_in_place_on_a_leaf_that_requires_grad():
    x = ember.ones(3, requires_grad=True)
    with user_error(RuntimeError, "leaf Variable", "[3]"):
        x.add_(1)
    with user_error(RuntimeError, "leaf Variable"):
        x[0] = 5.0
    with user_error(RuntimeError, "leaf Variable"):
        x.mul_(2)
    with ember.no_grad():
        x.add_(1)
    assert x.tolist() == [2.0, 2.0, 2.0]


def test_in_place_change_of_a_saved_input_fails_in_backward():
    x = ember.ones(3, requires_grad=True)
    y = x * 2
    z = y * y  # saves y
    y.add_(1)
    with user_error(
        RuntimeError,
        "modified by an inplace operation",
        "[3]",
        "float32",
        "version 1",
        "expected version 0",
    ):
        z.sum().backward()


def test_in_place_change_of_a_saved_output_fails_in_backward():
    x = ember.ones(3, requires_grad=True)
    z = (x * 2).exp()  # saves its output
    z.mul_(3)
    z.add_(1)
    with user_error(
        RuntimeError, "modified by an inplace operation", "version 2", "expected version 0"
    ):
        z.sum().backward()


def test_numpy_of_a_tensor_that_requires_grad():
    x = ember.ones(3, requires_grad=True)
    with user_error(RuntimeError, r"Can't call numpy\(\) on Tensor that requires grad", "detach"):
        x.numpy()
    assert isinstance(x.detach().numpy(), np.ndarray)


def test_wrong_argument_types_are_type_errors():
    x = ember.ones(3)
    with user_error(TypeError, "str"):
        ember.add(x, "a")
    with user_error(TypeError, "str"):
        x + "a"
    with user_error(TypeError, "NoneType"):
        ember.mul(x, None)
    with user_error(TypeError, "dict"):
        ember.sub(x, {1: 2})
    with user_error(TypeError, "object"):
        ember.maximum(x, object())
    with user_error(TypeError, "list"):
        ember.matmul(x, [1.0, 2.0, 3.0])


def test_where_with_a_non_bool_condition():
    x = ember.ones(3)
    with user_error(RuntimeError, "where expected condition to be a boolean tensor", "float32"):
        ember.where(x, x, x)
    with user_error(RuntimeError, "boolean tensor", "int64"):
        ember.where(ember.ones(3, dtype=ember.int64), x, x)


def test_cat_with_mismatched_shapes():
    with user_error(
        RuntimeError, "Sizes of tensors must match except in dimension 0", "[2, 3]", "[2, 4]"
    ):
        ember.cat([ember.ones(2, 3), ember.ones(2, 4)])
    with user_error(RuntimeError, "same number of dimensions", "[2, 3]", "[5]"):
        ember.cat([ember.ones(2, 3), ember.ones(5)], dim=0)


def test_conv2d_channel_mismatch_names_input_and_weight():
    with user_error(
        RuntimeError, "to have 2 channels, but got 3 channels", "[1, 3, 5, 5]", "[4, 2, 3, 3]"
    ):
        ember.conv2d(ember.ones(1, 3, 5, 5), ember.ones(4, 2, 3, 3))


def test_unknown_op_through_dispatch():
    with user_error(TypeError, "unknown op 'frobnicate'"):
        ember.dispatch("frobnicate", (ember.ones(3),))


def test_code_run_with_python_c_reports_its_own_line():
    # `python -c` code is the user's even when run from inside the repository
    repository = os.path.dirname(os.path.dirname(THIS_FILE))
    code = "import ember\nember.ones(2) + ember.ones(3)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=repository, check=False
    )
    assert result.returncode != 0
    assert "must match the size of tensor b" in result.stderr
    assert "(at <string>:2)" in result.stderr
