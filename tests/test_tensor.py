"""The Tensor API as a PyTorch user expects it: factories, attributes, conversion, repr,
devices, Python operators, in-place forms and views that share storage."""

from __future__ import annotations

import ember
import numpy as np
import pytest


def assert_same(e, expected, dtype, rtol=1e-6, atol=1e-6):
    """An ember tensor has the expected shape, ember dtype and values (array-like, as PyTorch
    gives them); floats compare within a tolerance, integers and bools exactly."""
    expected = np.asarray(expected)
    assert isinstance(e, ember.Tensor)
    assert tuple(e.shape) == expected.shape
    assert e.dtype == dtype
    if dtype.is_floating_point:
        np.testing.assert_allclose(e.detach().numpy(), expected, rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(e.detach().numpy(), expected)


@pytest.fixture
def default_float32():
    yield
    ember.set_default_dtype(ember.float32)


# -- factories -----------------------------------------------------------------------------


class TestFactories:
    def test_tensor_copies_nested_lists(self):
        data = [[1.5, 2.0], [3.0, 4.25]]
        t = ember.tensor(data)
        assert t.shape == (2, 2)
        assert t.tolist() == data
        data[0][0] = 100.0
        assert t[0, 0].item() == 1.5

    @pytest.mark.parametrize("name", ["zeros", "ones", "empty", "rand", "randn"])
    def test_size_may_be_given_by_keyword(self, name):
        # gat/main.py: torch.empty(size=(in_features, n_hidden * n_heads))
        factory = getattr(ember, name)
        assert factory(size=(2, 3)).shape == (2, 3)
        assert factory(size=[4], dtype=ember.float64).dtype == ember.float64
        with pytest.raises(TypeError, match="multiple values for argument 'size'"):
            factory(2, size=(2, 3))

    def test_tensor_copies_a_numpy_array(self):
        a = np.arange(4.0)
        t = ember.tensor(a)
        a[0] = 42.0
        assert t[0].item() == 0.0
        assert t.dtype == ember.float64

    def test_tensor_of_a_scalar_is_zero_dim(self):
        t = ember.tensor(3.5)
        assert t.shape == ()
        assert t.dim() == 0
        assert t.item() == 3.5

    def test_tensor_with_dtype_and_requires_grad(self):
        t = ember.tensor([1, 2], dtype=ember.float64, requires_grad=True)
        assert t.dtype == ember.float64
        assert t.requires_grad and t.is_leaf

    def test_from_numpy_shares_memory_both_ways(self):
        a = np.zeros(3, dtype=np.float32)
        t = ember.from_numpy(a)
        a[1] = 5.0
        assert t.tolist() == [0.0, 5.0, 0.0]
        t[2] = 7.0
        assert a[2] == 7.0
        t.add_(1)
        np.testing.assert_array_equal(a, [1.0, 6.0, 8.0])

    def test_from_numpy_keeps_the_dtype(self):
        for np_dtype, name in [(np.float64, "float64"), (np.int32, "int32"), (np.bool_, "bool")]:
            assert ember.from_numpy(np.zeros(2, dtype=np_dtype)).dtype.name == name

    def test_from_numpy_rejects_non_arrays(self):
        with pytest.raises(ember.EmberError):
            ember.from_numpy([1, 2, 3])

    def test_as_tensor_shares_numpy_memory_when_dtype_matches(self):
        a = np.ones(3, dtype=np.float32)
        t = ember.as_tensor(a)
        a[0] = 9.0
        assert t[0].item() == 9.0
        converted = ember.as_tensor(a, dtype=ember.float64)
        a[1] = 8.0
        assert converted[1].item() == 1.0

    def test_as_tensor_returns_a_tensor_itself(self):
        t = ember.ones(2)
        assert ember.as_tensor(t) is t

    @pytest.mark.parametrize("name", ["zeros", "ones", "empty"])
    def test_filled_factories_take_sizes_as_varargs_or_a_tuple(self, name):
        a = getattr(ember, name)(2, 3)
        b = getattr(ember, name)((2, 3))
        assert a.shape == b.shape == (2, 3)
        assert a.dtype == ember.float32
        if name != "empty":
            assert_same(a, np.full((2, 3), 1.0 if name == "ones" else 0.0), ember.float32)

    def test_full_infers_its_dtype_from_the_fill_value(self):
        assert_same(ember.full((2, 2), 1.5), [[1.5, 1.5], [1.5, 1.5]], ember.float32)
        assert_same(ember.full((2,), 3), [3, 3], ember.int64)
        assert_same(ember.full((2,), True), [True, True], ember.bool)

    @pytest.mark.parametrize(
        "args,expected,dtype",
        [
            ((5,), [0, 1, 2, 3, 4], "int64"),
            ((2, 7), [2, 3, 4, 5, 6], "int64"),
            ((0, 10, 3), [0, 3, 6, 9], "int64"),
            ((10, 0, -2), [10, 8, 6, 4, 2], "int64"),
            ((0.0, 1.0, 0.25), [0.0, 0.25, 0.5, 0.75], "float32"),
            ((1, 2.5, 0.5), [1.0, 1.5, 2.0], "float32"),
            ((3.0, -1.0, -0.5), [3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0, -0.5], "float32"),
        ],
    )
    def test_arange_values_and_dtype(self, args, expected, dtype):
        """Integer arguments give int64, any float argument the default float dtype."""
        assert_same(ember.arange(*args), expected, getattr(ember, dtype))

    def test_arange_with_dtype(self):
        assert_same(ember.arange(4, dtype=ember.float64), [0.0, 1.0, 2.0, 3.0], ember.float64)

    def test_arange_with_inconsistent_step_raises(self):
        with pytest.raises(ember.EmberError):
            ember.arange(0, 10, -1)

    def test_linspace_and_eye(self):
        assert_same(ember.linspace(-1, 1, 5), [-1.0, -0.5, 0.0, 0.5, 1.0], ember.float32)
        assert_same(ember.linspace(0, 1, 1), [0.0], ember.float32)
        assert_same(ember.eye(3), [[1, 0, 0], [0, 1, 0], [0, 0, 1]], ember.float32)
        assert_same(ember.eye(2, 4), [[1, 0, 0, 0], [0, 1, 0, 0]], ember.float32)

    def test_like_factories_keep_shape_dtype_and_device(self):
        x = ember.ones(2, 3, dtype=ember.float64)
        for name in ["zeros_like", "ones_like", "empty_like", "rand_like", "randn_like"]:
            y = getattr(ember, name)(x)
            assert y.shape == (2, 3) and y.dtype == ember.float64 and y.device == x.device
        assert ember.zeros_like(x).tolist() == [[0.0] * 3] * 2
        assert ember.ones_like(x).tolist() == [[1.0] * 3] * 2
        assert ember.full_like(x, 7).tolist() == [[7.0] * 3] * 2
        assert ember.zeros_like(x, dtype=ember.int32).dtype == ember.int32
        r = ember.randint_like(ember.zeros(50, dtype=ember.int64), 3, 6)
        assert r.dtype == ember.int64 and r.shape == (50,)
        assert 3 <= r.min().item() and r.max().item() < 6

    def test_rand_is_in_the_unit_interval(self):
        r = ember.rand(10_000).numpy()
        assert r.min() >= 0.0 and r.max() < 1.0
        assert abs(r.mean() - 0.5) < 0.02

    def test_randn_moments_are_roughly_standard_normal(self):
        r = ember.randn(20_000).numpy().astype(np.float64)
        assert abs(r.mean()) < 0.03
        assert abs(r.std() - 1.0) < 0.03
        assert ember.randn(3, 4).dtype == ember.float32

    def test_randint_bounds_and_dtype(self):
        r = ember.randint(2, 5, (1000,))
        assert r.dtype == ember.int64
        assert set(r.tolist()) == {2, 3, 4}
        r = ember.randint(3, (10,))
        assert 0 <= r.min().item() and r.max().item() < 3

    def test_manual_seed_makes_random_numbers_reproducible(self):
        ember.manual_seed(123)
        a = (ember.rand(5), ember.randn(5), ember.randint(0, 100, (5,)))
        ember.manual_seed(123)
        b = (ember.rand(5), ember.randn(5), ember.randint(0, 100, (5,)))
        for x, y in zip(a, b):
            assert x.tolist() == y.tolist()
        ember.manual_seed(124)
        assert ember.rand(5).tolist() != a[0].tolist()

    def test_consecutive_random_draws_differ(self):
        ember.manual_seed(0)
        assert ember.rand(5).tolist() != ember.rand(5).tolist()


class TestDtypeInference:
    def test_python_ints_floats_and_bools(self):
        assert ember.tensor([1, 2]).dtype == ember.int64
        assert ember.tensor([1.0, 2]).dtype == ember.float32
        assert ember.tensor([True, False]).dtype == ember.bool
        assert ember.tensor([True, 2]).dtype == ember.int64
        assert ember.tensor(3).dtype == ember.int64
        assert ember.tensor(3.0).dtype == ember.float32

    def test_set_default_dtype_changes_float_factories(self, default_float32):
        ember.set_default_dtype(ember.float64)
        assert ember.get_default_dtype() == ember.float64
        assert ember.tensor([1.0]).dtype == ember.float64
        assert ember.zeros(2).dtype == ember.float64
        assert ember.arange(0.0, 1.0, 0.5).dtype == ember.float64
        assert ember.tensor([1]).dtype == ember.int64
        ember.set_default_dtype(ember.float32)
        assert ember.tensor([1.0]).dtype == ember.float32

    def test_dtype_aliases(self):
        assert ember.float is ember.float32
        assert ember.double is ember.float64
        assert ember.long is ember.int64


# -- attributes and conversion ---------------------------------------------------------------


class TestAttributes:
    def test_shape_is_a_size_and_a_tuple(self):
        t = ember.zeros(2, 3, 4)
        assert isinstance(t.shape, ember.Size)
        assert isinstance(t.shape, tuple)
        assert t.shape == (2, 3, 4)
        assert repr(t.shape) == "ember.Size([2, 3, 4])"
        assert t.shape.numel() == 24

    def test_size_dim_ndim_numel(self):
        t = ember.zeros(2, 3, 4)
        assert t.size() == (2, 3, 4)
        assert t.size(1) == 3
        assert t.size(-1) == 4
        assert t.dim() == t.ndim == 3
        assert t.numel() == 24
        assert len(t) == 2

    def test_dtype_and_device(self):
        t = ember.zeros(2, dtype=ember.int32)
        assert t.dtype == ember.int32
        assert t.device == ember.device("cpu")
        assert t.device.type == "cpu"
        assert not t.is_cuda

    def test_numpy_shares_memory(self):
        t = ember.zeros(3)
        a = t.numpy()
        a[0] = 4.0
        assert t[0].item() == 4.0

    def test_numpy_refuses_tensors_that_require_grad(self):
        t = ember.ones(2, requires_grad=True)
        with pytest.raises(ember.EmberError, match="detach"):
            t.numpy()
        assert t.detach().numpy().tolist() == [1.0, 1.0]

    def test_item_and_tolist(self):
        assert ember.tensor([2.5]).item() == 2.5
        assert isinstance(ember.tensor(3).item(), int)
        assert ember.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
        with pytest.raises(ember.EmberError):
            ember.ones(2).item()

    def test_clone_is_independent(self):
        x = ember.tensor([1.0, 2.0])
        y = x.clone()
        y[0] = 10.0
        assert x.tolist() == [1.0, 2.0]
        x.fill_(3.0)
        assert y.tolist() == [10.0, 2.0]

    def test_detach_shares_storage_and_stops_grad(self):
        x = ember.tensor([1.0, 2.0], requires_grad=True)
        y = x * 2
        d = y.detach()
        assert not d.requires_grad and d.grad_fn is None and d.is_leaf
        d[0] = 100.0
        assert y[0].item() == 100.0

    def test_contiguous(self):
        x = ember.arange(6).reshape(2, 3)
        t = x.t()
        assert not t.is_contiguous()
        c = t.contiguous()
        assert c.is_contiguous()
        assert c.tolist() == [[0, 3], [1, 4], [2, 5]]
        assert x.contiguous().is_contiguous()

    def test_array_protocol(self):
        t = ember.tensor([[1.0, 2.0]])
        a = np.asarray(t)
        assert a.shape == (1, 2) and a.dtype == np.float32
        np.testing.assert_array_equal(a, [[1.0, 2.0]])
        assert np.asarray(t, dtype=np.float64).dtype == np.float64
        assert np.asarray(ember.ones(1, requires_grad=True)).tolist() == [1.0]

    def test_dlpack_shares_memory(self):
        t = ember.arange(4.0)
        a = np.from_dlpack(t)
        np.testing.assert_array_equal(a, [0.0, 1.0, 2.0, 3.0])
        t[1] = 9.0
        assert a[1] == 9.0
        # torch.from_dlpack on an ember tensor: tests/test_tensor_oracle.py


class TestRepr:
    def test_float_tensor(self):
        assert repr(ember.tensor([1.0, 2.0])) == "tensor([1., 2.])"
        assert repr(ember.tensor([1.5, 2.25])) == "tensor([1.5000, 2.2500])"

    def test_int_and_bool_tensors(self):
        assert repr(ember.tensor([1, 2])) == "tensor([1, 2])"
        assert repr(ember.tensor([True, False])) == "tensor([ True, False])"

    def test_non_default_dtype_is_shown(self):
        assert repr(ember.tensor([1, 2], dtype=ember.int32)) == "tensor([1, 2], dtype=ember.int32)"
        assert repr(ember.tensor([1.0], dtype=ember.float64)) == "tensor([1.], dtype=ember.float64)"

    def test_rows_hold_as_many_numbers_as_80_columns_allow(self):
        text = repr(ember.full((12,), -0.5))
        assert text.splitlines()[0] == "tensor([" + ", ".join(["-0.5000"] * 8) + ","

    def test_a_suffix_that_does_not_fit_goes_on_its_own_line(self):
        x = ember.full((1, 8), -0.5, requires_grad=True) * 1
        assert repr(x).splitlines()[-1] == "       grad_fn=<MulBackward0>)"
        assert repr(ember.ones(2, requires_grad=True) * 1) == (
            "tensor([1., 1.], grad_fn=<MulBackward0>)"
        )

    def test_scalar_and_matrix(self):
        assert repr(ember.tensor(3.0)) == "tensor(3.)"
        assert repr(ember.eye(2)) == "tensor([[1., 0.],\n        [0., 1.]])"

    def test_requires_grad_and_grad_fn(self):
        x = ember.tensor([1.0, 2.0], requires_grad=True)
        assert repr(x) == "tensor([1., 2.], requires_grad=True)"
        assert repr(x * 2) == "tensor([2., 4.], grad_fn=<MulBackward0>)"
        assert (x * 2).grad_fn.name() == "MulBackward0"


no_gpu = pytest.mark.skipif(ember.cuda.is_available(), reason="checks the behaviour without a GPU")

# -- devices --------------------------------------------------------------------------------


class TestDevices:
    def test_device_parsing(self):
        d = ember.device("cuda:1")
        assert d.type == "cuda" and d.index == 1
        assert str(d) == "cuda:1"
        assert d == ember.device("cuda", 1)
        assert d == "cuda:1"
        assert d != ember.device("cuda:0")
        assert ember.device("cpu").index is None
        assert str(ember.device("cpu")) == "cpu"
        assert repr(d) == "device(type='cuda', index=1)"
        assert hash(d) == hash(ember.device("cuda", 1))

    def test_bad_device_strings_raise(self):
        with pytest.raises(ember.EmberError):
            ember.device("tpu")
        with pytest.raises(ember.EmberError):
            ember.device("cuda:x")

    def test_to_dtype_and_to_other(self):
        x = ember.tensor([1.7, -2.2])
        y = x.to(ember.int32)
        assert y.dtype == ember.int32 and y.tolist() == [1, -2]
        assert x.to(ember.float32) is x
        other = ember.zeros(1, dtype=ember.float64)
        z = x.to(other)
        assert z.dtype == ember.float64 and z.device == other.device
        assert x.to(dtype=ember.float64).dtype == ember.float64
        assert x.double().dtype == ember.float64 and x.long().dtype == ember.int64

    def test_cpu_is_a_no_op_on_cpu(self):
        x = ember.ones(2)
        assert x.cpu() is x
        assert x.to("cpu") is x

    @no_gpu
    def test_cuda_is_not_available_here(self):
        assert ember.cuda.is_available() is False
        assert ember.cuda.device_count() == 0

    @no_gpu
    def test_cuda_raises_a_clear_ember_error(self):
        with pytest.raises(ember.EmberError, match="CUDA"):
            ember.ones(2).cuda()
        with pytest.raises(ember.EmberError, match="CUDA"):
            ember.ones(2, device="cuda")


# -- operators -------------------------------------------------------------------------------


BINARY = [
    ("add", lambda a, b: a + b),
    ("sub", lambda a, b: a - b),
    ("mul", lambda a, b: a * b),
    ("truediv", lambda a, b: a / b),
    ("pow", lambda a, b: a**b),
    ("floordiv", lambda a, b: a // b),
    ("mod", lambda a, b: a % b),
]


class TestOperators:
    @pytest.fixture
    def pair(self):
        rng = np.random.default_rng(0)
        a = rng.uniform(0.5, 2.0, (3, 4)).astype(np.float32)
        b = rng.uniform(0.5, 2.0, (4,)).astype(np.float32)
        return a, b

    # Expected values: the same operator on the inputs widened to float64 (floor division and
    # modulo with Python's floor semantics, as in PyTorch); the result stays float32.

    @pytest.mark.parametrize("name,fn", BINARY)
    def test_binary_operators_broadcast_and_keep_float32(self, name, fn, pair):
        a, b = pair
        expected = fn(a.astype(np.float64), b.astype(np.float64))
        assert_same(fn(ember.tensor(a), ember.tensor(b)), expected, ember.float32, rtol=1e-5)

    @pytest.mark.parametrize("name,fn", BINARY)
    def test_reflected_operators_with_python_scalars(self, name, fn, pair):
        a, _ = pair
        a64 = a.astype(np.float64)
        assert_same(fn(2, ember.tensor(a)), fn(2, a64), ember.float32, rtol=1e-5)
        assert_same(fn(1.5, ember.tensor(a)), fn(1.5, a64), ember.float32, rtol=1e-5)
        assert_same(fn(ember.tensor(a), 3), fn(a64, 3), ember.float32, rtol=1e-5)

    def test_reflected_subtraction_division_and_power(self):
        x = ember.tensor([1.0, 2.0, 4.0])
        assert (2 - x).tolist() == [1.0, 0.0, -2.0]
        assert (2 / x).tolist() == [2.0, 1.0, 0.5]
        assert (2**x).tolist() == [2.0, 4.0, 16.0]

    def test_integer_scalar_promotion(self):
        """int64 tensor * int stays int64; * float and true division give the default float."""
        i = ember.tensor([1, 2, 3])
        assert_same(i * 2, [2, 4, 6], ember.int64)
        assert_same(i * 2.5, [2.5, 5.0, 7.5], ember.float32)
        assert_same(i / 2, [0.5, 1.0, 1.5], ember.float32)

    def test_unary_matmul_and_comparisons(self, pair):
        a, b = pair
        e = ember.tensor(a)
        assert_same(-e, -a, ember.float32)
        assert_same(abs(-e), a, ember.float32)
        matmul = a.astype(np.float64) @ b.astype(np.float64)
        assert_same(e @ ember.tensor(b), matmul, ember.float32, rtol=1e-5)
        assert_same(e > 1.0, a > 1.0, ember.bool)
        assert_same(e == e.round(), a == np.round(a), ember.bool)
        assert_same(1.0 < e, 1.0 < a, ember.bool)

    def test_numpy_scalars_on_either_side(self):
        x = ember.tensor([1.0, 2.0])
        assert (x * np.float32(2)).tolist() == [2.0, 4.0]
        assert (x * np.float32(2)).dtype == ember.float32
        assert (ember.tensor([1, 2]) * np.int64(3)).tolist() == [3, 6]
        for scalar in (np.float32(2), np.float64(2), np.int32(2)):
            out = scalar * x
            assert isinstance(out, ember.Tensor) and out.tolist() == [2.0, 4.0]
        assert (np.float32(3) - x).tolist() == [2.0, 1.0]


INPLACE = [  # name, the in-place call, its result computed with numpy
    ("iadd", lambda x: x.__iadd__(2), lambda a: a + 2),
    ("isub", lambda x: x.__isub__(0.5), lambda a: a - 0.5),
    ("imul", lambda x: x.__imul__(3), lambda a: a * 3),
    ("idiv", lambda x: x.__itruediv__(4), lambda a: a / 4),
    ("add_", lambda x: x.add_(2, alpha=3), lambda a: a + 2 * 3),
    ("sub_", lambda x: x.sub_(1.5), lambda a: a - 1.5),
    ("mul_", lambda x: x.mul_(-2), lambda a: a * -2),
    ("div_", lambda x: x.div_(3), lambda a: a / 3),
    ("zero_", lambda x: x.zero_(), np.zeros_like),
    ("fill_", lambda x: x.fill_(7.5), lambda a: np.full_like(a, 7.5)),
    ("clamp_", lambda x: x.clamp_(-0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5)),
    ("clamp_min", lambda x: x.clamp_(min=0.0), lambda a: np.maximum(a, 0.0)),
]


class TestInplace:
    @pytest.mark.parametrize("name,fn,expected", INPLACE)
    def test_inplace_ops_compute_in_place_and_return_self(self, name, fn, expected):
        a = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
        e = ember.tensor(a)
        out = fn(e)
        assert out is e
        assert_same(e, expected(a.astype(np.float64)), ember.float32)

    def test_inplace_with_a_broadcast_tensor(self):
        a = np.arange(6, dtype=np.float32).reshape(2, 3)
        e = ember.tensor(a)
        e += ember.tensor([1.0, 2.0, 3.0])
        e.mul_(ember.tensor([[2.0], [3.0]]))
        assert_same(e, [[2.0, 6.0, 10.0], [12.0, 18.0, 24.0]], ember.float32)

    def test_iadd_keeps_identity(self):
        x = ember.zeros(2)
        alias = x
        x += 1
        assert alias is x and alias.tolist() == [1.0, 1.0]

    def test_copy_(self):
        x = ember.zeros(2, 3)
        x.copy_(ember.tensor([1, 2, 3]))
        assert x.dtype == ember.float32
        assert x.tolist() == [[1.0, 2.0, 3.0]] * 2

    def test_masked_fill_(self):
        a = np.arange(6, dtype=np.float32).reshape(2, 3)
        mask = a % 2 == 0
        e = ember.tensor(a)
        assert e.masked_fill_(ember.tensor(mask), -1.0) is e
        assert_same(e, [[-1.0, 1.0, -1.0], [3.0, -1.0, 5.0]], ember.float32)

    def test_inplace_cannot_widen_the_dtype(self):
        x = ember.tensor([1, 2])
        with pytest.raises(ember.EmberError):
            x.add_(0.5)

    def test_inplace_bumps_the_version_counter(self):
        x = ember.zeros(3)
        v = x._version_counter
        x.add_(1)
        x[0] = 2.0
        assert x._version_counter == v + 2


class TestViewsShareStorage:
    def test_write_through_an_index(self):
        x = ember.zeros(2, 3)
        row = x[0]
        row[1] = 5.0
        row.add_(1)
        assert x.tolist() == [[1.0, 6.0, 1.0], [0.0, 0.0, 0.0]]

    def test_write_through_view(self):
        x = ember.zeros(2, 3)
        v = x.view(6)
        v[4] = 3.0
        assert x[1, 1].item() == 3.0
        v.mul_(2)
        assert x[1, 1].item() == 6.0

    def test_write_through_transpose(self):
        x = ember.zeros(2, 3)
        t = x.t()
        t[2, 0] = 1.0
        assert x[0, 2].item() == 1.0

    def test_write_through_narrow(self):
        x = ember.arange(10.0)
        n = x.narrow(0, 2, 3)
        n.fill_(-1.0)
        assert x.tolist() == [0.0, 1.0, -1.0, -1.0, -1.0, 5.0, 6.0, 7.0, 8.0, 9.0]

    def test_base_writes_are_seen_by_views(self):
        x = ember.zeros(4)
        v = x[1:3]
        x.fill_(2.0)
        assert v.tolist() == [2.0, 2.0]

    def test_slice_assignment(self):
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        e = ember.tensor(a)
        e[1:, ::2] = 0.5
        e[:, 1] *= 10
        e[e > 20] = -1.0
        expected = [[0.0, 10.0, 2.0, 3.0], [0.5, -1.0, 0.5, 7.0], [0.5, -1.0, 0.5, 11.0]]
        assert_same(e, expected, ember.float32)
        a[1:, ::2] = 0.5  # the same writes on a numpy array agree
        a[:, 1] *= 10
        a[a > 20] = -1.0
        np.testing.assert_array_equal(a, expected)


class TestDefaultDevice:
    def test_set_default_device_is_used_by_factories_given_no_device(self):
        try:
            ember.set_default_device("cpu")
            assert ember.get_default_device() == ember.device("cpu")
            assert ember.zeros(2).device == ember.device("cpu")
            assert ember.tensor([1.0]).device == ember.device("cpu")
        finally:
            ember.set_default_device(None)
        assert ember.get_default_device() == ember.device("cpu")

    def test_an_unknown_default_device_is_refused(self):
        with pytest.raises(ember.EmberError, match="device type"):
            ember.set_default_device("tpu")
        assert ember.get_default_device() == ember.device("cpu")

    @pytest.mark.skipif(ember.cuda.is_available(), reason="checks the error without a GPU")
    def test_a_cuda_default_without_a_gpu_fails_at_the_factory(self):
        try:
            ember.set_default_device("cuda")
            with pytest.raises(ember.EmberError, match="CUDA"):
                ember.ones(2)
        finally:
            ember.set_default_device(None)
        assert ember.ones(2).device == ember.device("cpu")


def test_an_integer_index_of_a_zero_dimensional_tensor_says_use_item():
    loss = ember.tensor(2.5)
    with pytest.raises(IndexError, match=r"tensor\.item\(\)"):
        loss.data[0]
    assert loss.item() == 2.5


@pytest.mark.parametrize("make", [
    lambda: ember.arange(12),
    lambda: ember.arange(24.0).reshape(4, 6),
    lambda: ember.arange(24.0).reshape(4, 6).t(),  # rows of a transposed view
    lambda: ember.arange(60).reshape(3, 4, 5)[1:],
    lambda: ember.arange(5.0).reshape(1, 5),  # one row: indexing records no slice
])
def test_iterating_gives_the_views_indexing_gives(make):
    x = make()
    rows = list(x)
    assert len(rows) == len(x)
    for i, row in enumerate(rows):
        want = x[i]
        assert row.shape == want.shape and row.dtype == want.dtype
        np.testing.assert_array_equal(row.numpy(), want.numpy())
        assert row._base is want._base and row._view_chain == want._view_chain
    # a row is a view: writing it writes the tensor and bumps the shared version
    before = x._version[0]
    rows[-1].fill_(7)
    assert (x[-1] == 7).all().item() and x._version[0] == before + 1


def test_iterating_a_tensor_that_requires_grad_records_each_row():
    x = ember.arange(6.0).reshape(3, 2).requires_grad_()
    total = sum((row * (i + 1)).sum() for i, row in enumerate(x))
    total.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1, 1], [2, 2], [3, 3]])


def test_iterating_inside_a_script_matches_eager():
    def f(x):
        return ember.stack([row * 2 for row in x]).sum(0)

    scripted = ember.script(f)
    for n in (3, 3, 5):
        x = ember.randn(n, 4)
        np.testing.assert_allclose(scripted(x).numpy(), f(x).numpy(), rtol=1e-6)


def test_a_0d_tensor_formats_as_its_number():
    acc = ember.tensor(3) * 100 / 7
    assert "{}".format(acc) == format(acc.item()) and f"{acc:.1f}" == "42.9"
    assert f"{ember.tensor(5)}" == "5" and f"{ember.tensor(1.5, requires_grad=True) * 2}" == "3.0"
    assert f"{ember.ones(2)}" == repr(ember.ones(2))
    with pytest.raises(TypeError):
        f"{ember.ones(2):.2f}"


def test_manual_seed_returns_the_global_streams_generator():
    # as torch.manual_seed: the default generator, which as generator= draws from the
    # global stream itself, with get_state/set_state on that stream
    g = ember.manual_seed(3)
    assert g is ember.default_generator and isinstance(g, ember.Generator)
    assert g.initial_seed() == 3 == ember.initial_seed()
    a = ember.randn(4)
    ember.manual_seed(3)
    np.testing.assert_array_equal(ember.randn(4, generator=g).numpy(), a.numpy())
    state = g.get_state()
    first = ember.rand(3)
    g.set_state(state)
    np.testing.assert_array_equal(ember.rand(3).numpy(), first.numpy())
    assert g.manual_seed(7) is g and ember.initial_seed() == 7


def test_from_dlpack_takes_any_dlpack_object_and_refuses_others():
    a = np.arange(3, dtype=np.int64)
    e = ember.from_dlpack(a)
    a[0] = 9
    assert e.dtype == ember.int64 and e.tolist() == [9, 1, 2]
    assert ember.from_dlpack(e) is e
    with pytest.raises(ember.EmberError, match="expected an object with __dlpack__, got list"):
        ember.from_dlpack([1, 2])
