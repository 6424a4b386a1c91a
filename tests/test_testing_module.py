"""ember.testing.assert_close: PyTorch's default tolerances by dtype, nested containers,
NaN, shape/dtype/device checks and messages; make_tensor's ranges."""

import ember
import numpy as np
import pytest
from ember.testing import assert_close, make_tensor


def test_close_tensors_pass_and_far_ones_fail_with_a_report():
    x = ember.tensor([1.0, 2.0, 3.0])
    assert_close(x, x + 1e-7)
    with pytest.raises(AssertionError, match=r"Mismatched elements: 1 / 3") as caught:
        assert_close(x, ember.tensor([1.0, 2.5, 3.0]))
    assert "Greatest absolute difference: 0.5" in str(caught.value)


@pytest.mark.parametrize("dtype,inside,outside", [
    (ember.float32, 1e-6, 1e-4), (ember.float64, 1e-8, 1e-6), (ember.float16, 4e-4, 1e-2),
])
def test_default_tolerances_follow_the_dtype(dtype, inside, outside):
    base = ember.ones(4, dtype=dtype)
    assert_close(base * (1 + inside), base)
    with pytest.raises(AssertionError):
        assert_close(base * (1 + outside), base)


def test_integers_must_be_equal_and_explicit_tolerances_apply():
    assert_close(ember.tensor([1, 2]), ember.tensor([1, 2]))
    with pytest.raises(AssertionError):
        assert_close(ember.tensor([1, 2]), ember.tensor([1, 3]))
    assert_close(ember.tensor([1.0]), ember.tensor([1.5]), rtol=0.0, atol=0.6)
    with pytest.raises(ValueError):
        assert_close(ember.tensor([1.0]), ember.tensor([1.0]), rtol=0.1)


def test_nan_needs_equal_nan_and_infinities_match_themselves():
    x = ember.tensor([np.nan, np.inf, -np.inf])
    with pytest.raises(AssertionError):
        assert_close(x, x.clone())
    assert_close(x, x.clone(), equal_nan=True)


def test_shape_dtype_and_containers():
    with pytest.raises(AssertionError, match="shape"):
        assert_close(ember.zeros(2), ember.zeros(3))
    with pytest.raises(AssertionError, match="dtype"):
        assert_close(ember.zeros(2), ember.zeros(2, dtype=ember.float64))
    assert_close(ember.zeros(2), ember.zeros(2, dtype=ember.float64), check_dtype=False)
    assert_close({"a": [ember.ones(2), 3.0]}, {"a": [ember.ones(2), 3.0]})
    with pytest.raises(AssertionError, match=r"\['a'\]\[1\]"):
        assert_close({"a": [ember.ones(2), 3.0]}, {"a": [ember.ones(2), 4.0]})
    with pytest.raises(AssertionError, match="length"):
        assert_close([1.0], [1.0, 2.0])


def test_a_custom_message_replaces_the_report():
    with pytest.raises(AssertionError, match="^mine$"):
        assert_close(ember.zeros(1), ember.ones(1), msg="mine")


def test_make_tensor_ranges():
    ember.manual_seed(0)
    x = make_tensor(3, 4, dtype=ember.float32, low=-1, high=1)
    assert x.shape == (3, 4) and x.dtype == ember.float32
    assert float(x.min()) >= -1 and float(x.max()) < 1
    n = make_tensor((100,), dtype=ember.int64, low=0, high=5)
    assert int(n.min()) >= 0 and int(n.max()) < 5
    assert make_tensor(2, dtype=ember.bool).dtype == ember.bool
