"""Casting to the compute dtype (runtime/kernels/casting.py, decided by
OpSchema.compute_dtype_of): one rule and one cast, so eager dispatch, the Program executor and
constant folding give the same values."""

import ember
import numpy as np
import pytest
from ember.ir.dtypes import float32, int64, uint8
from ember.ir.passes.fold import evaluate_scalars
from ember.ir.schema import SCHEMAS
from ember.ir.types import TensorType
from ember.runtime.kernels.casting import cast_operands, cast_scalar
from ember.runtime.program import Program, evaluate_with_kernels


def test_arrays_are_cast_only_where_their_dtype_differs():
    same = np.arange(3, dtype=np.float32)
    other = np.arange(3, dtype=np.int64)
    cast = cast_operands([same, other], 0, np.dtype(np.float32))
    assert cast[0] is same
    assert cast[1].dtype == np.float32 and cast[1] is not other


def test_operands_before_start_keep_their_dtype():
    condition = np.array([True, False])
    cast = cast_operands([condition, np.arange(2), 1], 1, np.dtype(np.float64))
    assert cast[0] is condition
    assert cast[1].dtype == np.float64 and type(cast[2]) is np.float64


@pytest.mark.parametrize("value, expected", [(300, 44), (-2, 254), (True, 1), (7, 7)])
def test_python_integers_become_scalars_of_the_dtype_wrapping_around(value, expected):
    result = cast_scalar(np.dtype(np.uint8), value)
    assert type(result) is np.uint8 and result == expected


def test_the_compute_dtype_is_the_schemas_rule():
    ints = TensorType((2,), int64)
    assert SCHEMAS["add"].compute_dtype_of((ints, ints), int64) is int64  # "output"
    assert SCHEMAS["eq"].compute_dtype_of((ints, 1.5), ember.bool) is float32  # promoted
    assert SCHEMAS["matmul"].compute_dtype_of((ints, ints), int64) is None


def test_eager_program_and_folding_wrap_an_out_of_range_scalar_alike(monkeypatch):
    monkeypatch.setenv("EMBER_COMPILE", "0")  # the scripted graph runs on a Program
    x = ember.tensor([1, 2, 250], dtype=ember.uint8)
    eager = (x - 300).numpy()
    np.testing.assert_array_equal(eager, np.array([1, 2, 250], np.uint8) - np.uint8(44))
    fn = ember.script(lambda t: t - 300)
    for _ in range(3):
        scripted = fn(x).numpy()
    assert isinstance(fn.specializations[-1].program, Program)
    np.testing.assert_array_equal(scripted, eager)
    folded = evaluate_with_kernels("sub", (x.numpy(), 300), {})
    np.testing.assert_array_equal(folded.astype(np.uint8), eager)
    scalar = evaluate_scalars("sub", (np.array(1, np.uint8), 300), {})
    assert scalar.dtype == uint8.np and scalar == eager[0]
