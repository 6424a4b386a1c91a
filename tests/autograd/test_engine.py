"""The autograd engine as a PyTorch user drives it: backward(), grad(), higher-order gradients,
grad modes, leaves and hooks, autograd.Function, gradcheck, deep graphs, freed graphs, in-place
ops and writes through views, version counters."""

from __future__ import annotations

import sys

import ember
import numpy as np
import pytest
from ember import autograd


def leaf(values, dtype=ember.float64):
    return ember.tensor(values, dtype=dtype, requires_grad=True)


def close(e, expected, rtol=1e-10, atol=1e-12):
    """An ember float64 tensor has the expected shape and values (array-like, worked out by
    hand or with numpy as PyTorch gives them)."""
    expected = np.asarray(expected, dtype=np.float64)
    assert e is not None
    assert e.dtype == ember.float64
    assert tuple(e.shape) == expected.shape
    np.testing.assert_allclose(e.detach().numpy(), expected, rtol=rtol, atol=atol)


@pytest.fixture
def values():
    return np.random.default_rng(0).uniform(0.5, 1.5, (3, 4)).tolist()


# -- backward() ---------------------------------------------------------------------------------


class TestBackward:
    def test_scalar_backward(self, values):
        x = leaf(values)
        ((x * x).sin().sum() / x.mean()).backward()
        # f = S / m with S = sum sin(x^2), m = mean x: df/dx = 2x cos(x^2) / m - S / (n m^2)
        xs = np.array(values)
        s, m, n = np.sin(xs**2).sum(), xs.mean(), xs.size
        close(x.grad, 2 * xs * np.cos(xs**2) / m - s / (n * m**2))

    def test_non_scalar_backward_needs_a_gradient(self, values):
        x = leaf(values)
        y = x * 3
        with pytest.raises(ember.EmberError, match="scalar"):
            y.backward()
        g = ember.tensor(np.arange(12.0).reshape(3, 4))
        y.backward(g)
        close(x.grad, np.arange(12.0).reshape(3, 4) * 3)

    def test_gradient_of_the_wrong_shape_raises(self):
        x = leaf([1.0, 2.0])
        with pytest.raises(ember.EmberError, match="shape"):
            (x * 2).backward(ember.ones(3, dtype=ember.float64))

    def test_backward_on_a_tensor_without_grad_raises(self):
        with pytest.raises(ember.EmberError, match="does not require grad"):
            ember.ones(1).sum().backward()

    def test_inputs_limits_which_leaves_accumulate(self):
        x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
        (x * w).sum().backward(inputs=[x])
        close(x.grad, [3.0, 4.0])
        assert w.grad is None

    def test_inputs_can_be_a_non_leaf(self):
        x = leaf([1.0, 2.0])
        h = x * x
        (h * 3).sum().backward(inputs=[h])
        close(h.grad, [3.0, 3.0])
        assert x.grad is None

    def test_create_graph_makes_grad_differentiable(self):
        x = leaf([1.5, -0.5])
        (x**3).sum().backward(create_graph=True)
        assert x.grad.requires_grad
        first = x.grad
        x.grad = None
        first.sum().backward()
        close(x.grad, [6 * 1.5, 6 * -0.5])

    def test_backward_of_several_tensors(self):
        x = leaf([1.0, 2.0])
        a, b = x * 2, x**2
        autograd.backward([a.sum(), b.sum()])
        close(x.grad, [2 + 2.0, 2 + 4.0])


# -- autograd.grad() ----------------------------------------------------------------------------


class TestGrad:
    def test_grad_returns_a_tuple_and_leaves_dot_grad_alone(self, values):
        x = leaf(values)
        result = autograd.grad((x.exp() * x).sum(), x)
        assert isinstance(result, tuple) and len(result) == 1
        (gx,) = result
        xs = np.array(values)
        close(gx, np.exp(xs) * (1 + xs))
        assert x.grad is None
        assert not gx.requires_grad

    def test_grad_outputs(self, values):
        x = leaf(values)
        go = np.random.default_rng(1).normal(size=(3, 4))
        (gx,) = autograd.grad(x.tanh(), [x], grad_outputs=[ember.tensor(go)])
        close(gx, go * (1 - np.tanh(np.array(values)) ** 2))

    def test_grad_of_several_inputs(self):
        x, w = leaf([1.0, 2.0]), leaf([3.0, 5.0])
        gx, gw = autograd.grad((x * w * w).sum(), [x, w])
        close(gx, [9.0, 25.0])
        close(gw, [6.0, 20.0])

    def test_unused_input_raises_unless_allow_unused(self):
        x, unused = leaf([1.0]), leaf([2.0])
        with pytest.raises(ember.EmberError, match="allow_unused"):
            autograd.grad((x * 2).sum(), [x, unused])
        y = (x * 2).sum()
        gx, gu = autograd.grad(y, [x, unused], allow_unused=True)
        close(gx, [2.0])
        assert gu is None

    def test_input_that_does_not_require_grad_raises(self):
        x = leaf([1.0])
        with pytest.raises(ember.EmberError, match="does not require grad"):
            autograd.grad((x * 2).sum(), [ember.ones(1)])

    def test_grad_frees_the_graph_unless_retained(self):
        x = leaf([1.0, 2.0])
        y = (x * x).sum()
        autograd.grad(y, x, retain_graph=True)
        autograd.grad(y, x)
        with pytest.raises(ember.EmberError, match="second time"):
            autograd.grad(y, x)

    def test_grad_with_respect_to_an_intermediate(self):
        x = leaf([1.0, 2.0])
        h = x * 3
        (gh,) = autograd.grad((h * h).sum(), h)
        close(gh, [6.0, 12.0])


# -- higher-order gradients ------------------------------------------------------------------


class TestHigherOrder:
    def test_second_and_third_derivative_of_cube(self):
        x = leaf([0.5, -2.0, 3.0])
        (d1,) = autograd.grad((x**3).sum(), x, create_graph=True)
        (d2,) = autograd.grad(d1.sum(), x, create_graph=True)
        (d3,) = autograd.grad(d2.sum(), x)
        xs = np.array([0.5, -2.0, 3.0])
        np.testing.assert_allclose(d1.detach().numpy(), 3 * xs**2)
        np.testing.assert_allclose(d2.detach().numpy(), 6 * xs)
        np.testing.assert_allclose(d3.numpy(), [6.0, 6.0, 6.0])

    def test_second_derivative_of_sin(self):
        xs = np.linspace(-3, 3, 7)
        x = leaf(xs.tolist())
        (d1,) = autograd.grad(x.sin().sum(), x, create_graph=True)
        (d2,) = autograd.grad(d1.sum(), x)
        np.testing.assert_allclose(d1.detach().numpy(), np.cos(xs), atol=1e-12)
        np.testing.assert_allclose(d2.numpy(), -np.sin(xs), atol=1e-12)

    def test_hessian_vector_product(self):
        rng = np.random.default_rng(2)
        a = rng.normal(size=(4, 4))
        a = a + a.T
        xs, vs = rng.normal(size=4), rng.normal(size=4)
        x, v, A = leaf(xs.tolist()), ember.tensor(vs), ember.tensor(a)
        # f(x) = 0.5 x^T A x + sum(x^3): H = A + diag(6x)
        f = 0.5 * (x @ (A @ x)) + (x**3).sum()
        (g,) = autograd.grad(f, x, create_graph=True)
        (hv,) = autograd.grad(g, x, grad_outputs=v)
        np.testing.assert_allclose(hv.numpy(), (a + np.diag(6 * xs)) @ vs, rtol=1e-10)

    def test_double_backward_through_backward_with_create_graph(self):
        x = leaf([0.3, 0.7])
        (g,) = autograd.grad((x.exp() * x.sin()).sum(), x, create_graph=True)
        (g * g).sum().backward()
        # g = e^x (sin x + cos x), g' = 2 e^x cos x: d/dx sum(g^2) = 2 g g'
        xs = np.array([0.3, 0.7])
        g_np = np.exp(xs) * (np.sin(xs) + np.cos(xs))
        close(g, g_np)
        close(x.grad, 2 * g_np * 2 * np.exp(xs) * np.cos(xs))


# -- grad modes -----------------------------------------------------------------------------


class TestGradMode:
    def test_no_grad_context(self):
        x = leaf([1.0])
        with ember.no_grad():
            y = x * 2
            assert not ember.is_grad_enabled()
        assert ember.is_grad_enabled()
        assert not y.requires_grad and y.grad_fn is None

    def test_no_grad_and_enable_grad_as_decorators(self):
        x = leaf([1.0])

        @ember.no_grad()
        def frozen(t):
            return t * 2

        @ember.enable_grad()
        def tracked(t):
            return t * 2

        assert not frozen(x).requires_grad
        with ember.no_grad():
            assert tracked(x).requires_grad
            assert not ember.is_grad_enabled()
        assert ember.is_grad_enabled()

    def test_enable_grad_inside_no_grad(self):
        x = leaf([1.0])
        with ember.no_grad():
            with ember.enable_grad():
                y = x * 2
            z = x * 2
        assert y.requires_grad and not z.requires_grad

    def test_set_grad_enabled_as_context_manager(self):
        x = leaf([1.0])
        with ember.set_grad_enabled(False):
            assert not (x * 2).requires_grad
            with ember.set_grad_enabled(True):
                assert (x * 2).requires_grad
            assert not ember.is_grad_enabled()
        assert ember.is_grad_enabled()

    def test_set_grad_enabled_as_a_plain_call(self):
        x = leaf([1.0])
        try:
            ember.set_grad_enabled(False)
            assert not ember.is_grad_enabled()
            assert not (x * 2).requires_grad
            ember.set_grad_enabled(True)
            assert (x * 2).requires_grad
        finally:
            ember.set_grad_enabled(True)

    def test_set_grad_enabled_as_decorator_does_not_change_the_mode_when_applied(self):
        @ember.set_grad_enabled(False)
        def frozen(t):
            assert not ember.is_grad_enabled()
            return t * 2

        assert ember.is_grad_enabled()
        assert not frozen(leaf([1.0])).requires_grad
        assert ember.is_grad_enabled()

    def test_mode_is_restored_when_the_block_raises(self):
        with pytest.raises(ValueError), ember.no_grad():
            raise ValueError
        assert ember.is_grad_enabled()

    def test_no_grad_is_thread_local(self):
        import threading

        seen = []
        with ember.no_grad():
            thread = threading.Thread(target=lambda: seen.append(ember.is_grad_enabled()))
            thread.start()
            thread.join()
        assert seen == [True]


# -- leaves, .grad, hooks ---------------------------------------------------------------------


class TestLeavesAndHooks:
    def test_requires_grad_(self):
        x = ember.ones(2, dtype=ember.float64)
        assert not x.requires_grad and x.is_leaf
        assert x.requires_grad_() is x
        assert x.requires_grad
        (x * 3).sum().backward()
        close(x.grad, [3.0, 3.0])
        x.requires_grad_(False)
        assert not (x * 2).requires_grad

    def test_integer_tensors_cannot_require_grad(self):
        with pytest.raises(ember.EmberError, match="floating point"):
            ember.tensor([1, 2]).requires_grad_()

    def test_grad_accumulates_over_two_backwards(self):
        x = leaf([1.0, 2.0])
        (x * x).sum().backward()
        (x * 3).sum().backward()
        close(x.grad, [2 + 3.0, 4 + 3.0])
        x.grad = None
        (x * 3).sum().backward()
        close(x.grad, [3.0, 3.0])

    def test_leaf_and_non_leaf(self):
        x = leaf([1.0, 2.0])
        y = x * 2
        z = y.sum()
        assert x.is_leaf and not y.is_leaf
        assert y.grad_fn is not None and x.grad_fn is None
        z.backward()
        assert y.grad is None
        assert x.grad is not None

    def test_retain_grad_keeps_a_non_leaf_gradient(self):
        x = leaf([1.0, 2.0])
        y = x * 2
        y.retain_grad()
        assert y.retains_grad
        (y * y).sum().backward()
        close(y.grad, [4.0, 8.0])
        close(x.grad, [8.0, 16.0])

    def test_retained_grad_sees_the_hooks_result_and_accumulates(self):
        def run(t):
            y = t * 2
            y.retain_grad()
            y.register_hook(lambda g: g * 2)
            (y * 3).sum().backward(retain_graph=True)
            (y * y).sum().backward()
            return y.grad, t.grad

        # y = 2t; first backward: 3 -> hook -> 6, so y.grad = 6 and t.grad = 12;
        # second: 2y = 4t -> hook -> 8t, added: y.grad = 6 + 8t, t.grad = 12 + 16t
        y_grad, t_grad = run(leaf([1.0, 2.0]))
        close(y_grad, [14.0, 22.0])
        close(t_grad, [28.0, 44.0])

    def test_hook_on_a_leaf_sees_and_replaces_the_gradient(self):
        x = leaf([1.0, 2.0])
        seen = []
        x.register_hook(lambda g: seen.append(g.tolist()))
        x.register_hook(lambda g: g * 10)
        (x * 3).sum().backward()
        assert seen == [[3.0, 3.0]]
        close(x.grad, [30.0, 30.0])

    def test_hook_on_a_non_leaf_replaces_the_gradient_flowing_on(self):
        x = leaf([1.0, 2.0])
        y = x * 2
        seen = []
        y.register_hook(lambda g: seen.append(g.tolist()))
        y.register_hook(lambda g: g + 1)
        (y * 3).sum().backward()
        assert seen == [[3.0, 3.0]]
        close(x.grad, [8.0, 8.0])

    def test_hook_on_a_non_leaf_changes_only_the_path_through_it(self, values):
        x = leaf(values)
        h = x.exp()
        h.register_hook(lambda g: g * g)
        (h * x).sum().backward()
        # direct path: h = e^x; through h: the gradient x is squared by the hook, times e^x
        xs = np.array(values)
        close(x.grad, np.exp(xs) + xs**2 * np.exp(xs))

    def test_removed_hook_is_not_called(self):
        x = leaf([1.0])
        calls = []
        handle = x.register_hook(lambda g: calls.append(1))
        y = x * 2
        h2 = y.register_hook(lambda g: calls.append(2))
        handle.remove()
        h2.remove()
        (y * 1).sum().backward()
        assert calls == []
        close(x.grad, [2.0])

    def test_hook_on_a_tensor_without_grad_raises(self):
        with pytest.raises(ember.EmberError):
            ember.ones(1).register_hook(lambda g: g)

    def test_detach_stops_gradients(self):
        x = leaf([1.0, 2.0])
        y = x * x
        z = (y.detach() * x).sum()
        z.backward()
        close(x.grad, [1.0, 4.0])

    def test_tensor_used_twice_accumulates(self, values):
        x = leaf(values)
        a = x * 2
        (a * a + a.sin() + x).sum().backward()
        xs = np.array(values)
        close(x.grad, (2 * (2 * xs) + np.cos(2 * xs)) * 2 + 1)

    def test_same_leaf_twice_in_one_op(self):
        x = leaf([3.0])
        (x * x).backward()
        close(x.grad, [6.0])
        x.grad = None
        (x + x).backward()
        close(x.grad, [2.0])

    def test_broadcast_gradients_sum_back(self):
        rng = np.random.default_rng(3)
        a, b = rng.normal(size=(3, 1, 4)), rng.normal(size=(5, 1))
        x, w = leaf(a.tolist()), leaf(b.tolist())
        (x * w).sum().backward()  # (3, 5, 4): x[i, 0, k] * w[j, 0]
        close(x.grad, np.full((3, 1, 4), b.sum()))
        close(w.grad, np.full((5, 1), a.sum()))


# -- autograd.Function ----------------------------------------------------------------------


class Cube(autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x * x


class WrongCube(autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 2 * x * x  # deliberately wrong: should be 3 x^2


class TestFunction:
    def test_custom_function_forward_and_backward(self):
        x = leaf([1.0, 2.0])
        y = Cube.apply(x)
        assert y.requires_grad and y.grad_fn is not None
        assert "Cube" in y.grad_fn.name()
        y.sum().backward()
        close(x.grad, [3.0, 12.0])

    def test_needs_input_grad(self):
        seen = []

        class Mul(autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                seen.append(ctx.needs_input_grad)
                ctx.save_for_backward(a, b)
                return a * b

            @staticmethod
            def backward(ctx, g):
                a, b = ctx.saved_tensors
                return (
                    g * b if ctx.needs_input_grad[0] else None,
                    g * a if ctx.needs_input_grad[1] else None,
                )

        a, b = leaf([2.0]), ember.tensor([5.0], dtype=ember.float64)
        Mul.apply(a, b).sum().backward()
        assert seen == [(True, False)]
        close(a.grad, [5.0])
        assert b.grad is None

    def test_multiple_outputs_and_mark_non_differentiable(self):
        class SortWithIndex(autograd.Function):
            @staticmethod
            def forward(ctx, x):
                order = np.argsort(x.detach().numpy())
                idx = ember.tensor(order)
                ctx.mark_non_differentiable(idx)
                ctx.save_for_backward(idx)
                return x[idx], idx

            @staticmethod
            def backward(ctx, g, g_idx):
                (idx,) = ctx.saved_tensors
                out = ember.zeros_like(g)
                out[idx] = g
                return out

        x = leaf([3.0, 1.0, 2.0])
        values, idx = SortWithIndex.apply(x)
        assert values.tolist() == [1.0, 2.0, 3.0]
        assert idx.tolist() == [1, 2, 0]
        assert values.requires_grad and not idx.requires_grad
        (values * ember.tensor([1.0, 10.0, 100.0], dtype=ember.float64)).sum().backward()
        close(x.grad, [100.0, 1.0, 10.0])

    def test_two_differentiable_outputs(self):
        class SinCos(autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x.sin(), x.cos()

            @staticmethod
            def backward(ctx, gs, gc):
                (x,) = ctx.saved_tensors
                return gs * x.cos() - gc * x.sin()

        x = leaf([0.2, 1.1])
        s, c = SinCos.apply(x)
        (s * 2 + c * 3).sum().backward()
        xs = np.array([0.2, 1.1])
        np.testing.assert_allclose(x.grad.numpy(), 2 * np.cos(xs) - 3 * np.sin(xs))

    def test_gradcheck_passes_a_right_backward(self):
        x = leaf(np.random.default_rng(4).normal(size=(2, 3)).tolist())
        assert autograd.gradcheck(Cube.apply, (x,))
        assert autograd.gradcheck(lambda t: (t.sin() * t).sum(dim=1), (x,))

    def test_gradcheck_detects_a_wrong_backward(self):
        x = leaf([0.5, -1.0, 2.0])
        with pytest.raises(autograd.GradcheckError, match="mismatch"):
            autograd.gradcheck(WrongCube.apply, (x,))
        assert autograd.gradcheck(WrongCube.apply, (x,), raise_exception=False) is False

    def test_gradgradcheck_passes_ops_and_detects_a_wrong_double_backward(self):
        x = leaf([0.5, -1.0, 2.0])
        assert autograd.gradgradcheck(lambda t: t.sin() * t, (x,))

        class WrongSecond(autograd.Function):
            """Right first derivative (3x^2), written with x*x detached: second is wrong."""

            @staticmethod
            def forward(ctx, t):
                ctx.save_for_backward(t)
                return t * t * t

            @staticmethod
            def backward(ctx, g):
                (t,) = ctx.saved_tensors
                return g * 3 * (t * t).detach()

        assert autograd.gradcheck(WrongSecond.apply, (x,))
        with pytest.raises(autograd.GradcheckError, match="mismatch"):
            autograd.gradgradcheck(WrongSecond.apply, (x,))

    def test_modifying_a_saved_tensor_fails_backward(self):
        x = leaf([1.0, 2.0])
        h = x * 1
        y = Cube.apply(h)
        h.add_(1)
        with pytest.raises(ember.EmberError, match="modified by an inplace operation"):
            y.sum().backward()


# -- deep graphs and freed graphs ------------------------------------------------------------


class TestGraphLifetime:
    def test_ten_thousand_op_chain_needs_no_recursion(self):
        x = leaf([1.0])
        y = x
        for i in range(5000):
            y = y * 1.0001
            y = y + 0.0
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(200)
        try:
            y.backward()
        finally:
            sys.setrecursionlimit(limit)
        np.testing.assert_allclose(x.grad.numpy(), [1.0001**5000], rtol=1e-9)

    def test_graph_is_freed_after_backward(self):
        x = leaf([1.0, 2.0])
        y = (x * x).sum()
        y.backward()
        with pytest.raises(ember.EmberError, match="second time"):
            y.backward()

    def test_retain_graph_allows_a_second_backward_and_grads_add(self):
        x = leaf([1.0, 2.0])
        y = (x * x).sum()
        y.backward(retain_graph=True)
        close(x.grad, [2.0, 4.0])
        y.backward()
        close(x.grad, [4.0, 8.0])

    def test_freeing_a_shared_subgraph_breaks_a_later_backward(self):
        x = leaf([1.0])
        h = x.exp()
        (h * 2).sum().backward()
        with pytest.raises(ember.EmberError, match="second time"):
            (h * 3).sum().backward()


# -- in-place ops, views, version counters -----------------------------------------------------


class TestInplaceAutograd:
    def test_inplace_on_a_non_leaf(self, values):
        x = leaf(values)
        y = x * 2
        y.add_(1)
        y.mul_(x)
        y.sin_()
        y.sum().backward()
        # y = sin((2x + 1) x)
        xs = np.array(values)
        close(x.grad, np.cos(2 * xs**2 + xs) * (4 * xs + 1))

    def test_inplace_ops_update_grad_fn(self):
        x = leaf([1.0])
        y = x * 2
        y.mul_(3)
        assert y.grad_fn.name() == "MulBackward0"
        assert not y.is_leaf

    def test_inplace_on_a_leaf_that_requires_grad_raises(self):
        x = leaf([1.0])
        with pytest.raises(ember.EmberError, match="leaf"):
            x.add_(1)
        with pytest.raises(ember.EmberError, match="leaf"):
            x[0] = 2.0
        with ember.no_grad():
            x.add_(1)
        assert x.tolist() == [2.0]

    def test_writes_through_views_flow_to_base_and_value(self, values):
        w_values = [7.0, 8.0, 9.0, 10.0]
        x, w = leaf(values), leaf(w_values)
        z = x * 1
        z[0] = w * w
        z[1:, 1] *= 2
        (z * z).sum().backward()
        # row 0 is w^2 (x's row 0 is overwritten); z[1:, 1] = 2x, the rest of rows 1: are x
        xs, ws = np.array(values), np.array(w_values)
        expected_x = 2 * xs
        expected_x[0] = 0.0
        expected_x[1:, 1] = 8 * xs[1:, 1]
        close(x.grad, expected_x)
        close(w.grad, 4 * ws**3)

    def test_inplace_through_a_view_of_a_non_leaf(self, values):
        x = leaf(values)
        z = x.sin()
        row = z[1]
        row.mul_(x[0])
        z.t()[2].add_(5)
        (z * x).sum().backward()
        # z[i, j] = sin(x[i, j]) * (x[0, j] if i == 1 else 1) + (5 if j == 2 else 0)
        # d/dx[a, b] sum(z * x) = z[a, b] + x[a, b] cos(x[a, b]) factor[a, b]
        #                        + (a == 0) x[1, b] sin(x[1, b])
        xs = np.array(values)
        factor = np.ones_like(xs)
        factor[1] = xs[0]
        z_np = np.sin(xs) * factor
        z_np[:, 2] += 5
        expected = z_np + xs * np.cos(xs) * factor
        expected[0] += xs[1] * np.sin(xs[1])
        close(z, z_np)
        close(x.grad, expected)

    def test_view_sees_the_gradient_history_of_its_base(self, values):
        x = leaf(values)
        z = x * 1
        view = z[:, 0]
        z.mul_(3)
        (view * view).sum().backward()
        # view = 3 x[:, 0]: d/dx sum(view^2) = 18 x[:, 0] in column 0, zero elsewhere
        xs = np.array(values)
        expected = np.zeros_like(xs)
        expected[:, 0] = 18 * xs[:, 0]
        close(x.grad, expected)

    def test_view_sees_a_write_through_a_sibling_view(self, values):
        w_values = [2.0, 3.0, 4.0, 5.0]
        x, w = leaf(values), leaf(w_values)
        z = x * 1
        row, column = z[0], z[:, 1]
        row.mul_(w)
        (column * column).sum().backward()
        # column = [x[0, 1] w[1], x[1, 1], x[2, 1]]
        xs, ws = np.array(values), np.array(w_values)
        expected_x = np.zeros_like(xs)
        expected_x[:, 1] = 2 * xs[:, 1]
        expected_x[0, 1] *= ws[1] ** 2
        expected_w = np.zeros_like(ws)
        expected_w[1] = 2 * xs[0, 1] ** 2 * ws[1]
        close(x.grad, expected_x)
        close(w.grad, expected_w)

    def test_masked_fill_and_index_assignment_with_grad(self, values):
        x = leaf(values)
        xs = np.array(values)
        mask = xs > 1.0
        z = x * x
        z.masked_fill_(ember.tensor(mask), 0.0)
        z[z > 0.8] = 1.0
        z.sum().backward()
        # only entries neither masked nor overwritten (x^2 <= 0.8) keep the gradient 2x
        kept = ~mask & ~(xs**2 > 0.8)
        overwritten = ~mask & (xs**2 > 0.8)
        assert kept.any() and mask.any()
        close(z, np.where(mask, 0.0, np.where(overwritten, 1.0, xs**2)))
        close(x.grad, np.where(kept, 2 * xs, 0.0))

    def test_modified_saved_tensor_raises_a_version_error(self):
        x = leaf([1.0, 2.0])
        h = x * 1
        y = h * h
        h.add_(1)
        with pytest.raises(ember.EmberError, match="modified by an inplace operation"):
            y.sum().backward()

    def test_modified_saved_output_raises_a_version_error(self):
        x = leaf([1.0, 2.0])
        y = x.exp()
        y.add_(1)
        with pytest.raises(ember.EmberError, match="modified by an inplace operation"):
            y.sum().backward()

    def test_modifying_an_unsaved_input_is_fine(self):
        x = leaf([1.0, 2.0])
        h = x * 1
        y = h + 1
        h.add_(1)
        y.sum().backward()
        close(x.grad, [1.0, 1.0])

    def test_modifying_through_a_view_bumps_the_shared_version(self):
        x = leaf([1.0, 2.0, 3.0])
        h = x * 1
        y = h * h
        h[1:].mul_(2)
        with pytest.raises(ember.EmberError, match="modified by an inplace operation"):
            y.sum().backward()


class TestSharedGradients:
    """A backward that hands one tensor to several edges (add's gives g to both inputs):
    ops' backwards share it, as PyTorch's engine does; a leaf gets a tensor of its own, since
    it keeps what it receives as .grad and hooks may change that in place."""

    def test_two_leaves_of_one_add_get_gradients_of_their_own(self):
        a = ember.ones(3, requires_grad=True)
        b = ember.ones(3, requires_grad=True)
        (a + b).sum().backward()
        a.grad.mul_(5)
        np.testing.assert_array_equal(b.grad.numpy(), np.ones(3, np.float32))

    def test_ops_backwards_of_one_add_share_its_gradient(self):
        x = ember.ones(3, requires_grad=True)
        u, v = x * 2, x * 3
        seen = []
        u.register_hook(seen.append)
        v.register_hook(seen.append)
        (u + v).sum().backward()
        assert len(seen) == 2 and seen[0] is seen[1]
        np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 5, np.float32))

    @pytest.mark.parametrize("leaf_first", [True, False])
    def test_a_leafs_in_place_hook_leaves_the_shared_gradient_of_an_op_alone(self, leaf_first):
        w = ember.ones(3, requires_grad=True)
        u = ember.ones(3, requires_grad=True)
        h = u * 2
        w.register_post_accumulate_grad_hook(lambda p: p.grad.mul_(0))
        out = (w + h) if leaf_first else (h + w)
        (out * ember.tensor([1.0, 2.0, 3.0])).sum().backward()
        np.testing.assert_array_equal(w.grad.numpy(), np.zeros(3, np.float32))
        np.testing.assert_array_equal(u.grad.numpy(), np.array([2, 4, 6], np.float32))


def test_gradcheck_stays_callable_after_its_module_is_imported_first():
    """`import ember.autograd.gradcheck` before the attribute is read sets the package's
    attribute to the module (the import system does): it is callable as the function, as
    torch.autograd.gradcheck is."""
    import os
    import subprocess
    import sys

    script = (
        "import ember.autograd.gradcheck\n"
        "import ember\n"
        "from ember.autograd.gradcheck import gradcheck\n"
        "x = ember.randn(3, dtype=ember.float64, requires_grad=True)\n"
        "assert ember.autograd.gradcheck(lambda t: (t * t).sum(), (x,))\n"
        "assert gradcheck(lambda t: t.exp().sum(), (x,))\n"
        "print('ok')\n"
    )
    root = os.path.dirname(os.path.dirname(ember.__file__))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def _count_in_place_sums(monkeypatch):
    """The engine's in-place gradient sums (held.add_(g)) counted."""
    calls = []
    original = ember.Tensor.add_

    def add_(self, *args, **kwargs):
        calls.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ember.Tensor, "add_", add_)
    return calls


def test_gradients_of_a_split_sum_in_place_into_one_buffer_with_the_same_values(monkeypatch):
    """A tensor read by several ops (a split's pieces, a residual) gets the sum of their
    gradients; the engine adds them in place into a fresh gradient only it holds."""
    calls = _count_in_place_sums(monkeypatch)
    from ember.runtime.kernels import KERNELS

    made = []  # the whole-size zero tensors a slice's rule makes
    slice_backward = KERNELS["slice_backward"]
    monkeypatch.setitem(KERNELS, "slice_backward",
                        lambda *a, **kw: made.append(1) or slice_backward(*a, **kw))
    rng = np.random.default_rng(0)
    xv, wv = rng.standard_normal((4, 6)), rng.standard_normal((6, 9))
    x, w = leaf(xv), leaf(wv)
    h = x @ w
    q, k, v = h.split(3, dim=1)
    loss = (q * k).sum() + v.sin().sum() + h.cos().sum()
    loss.backward()
    hv = xv @ wv
    qv, kv, vv = hv[:, :3], hv[:, 3:6], hv[:, 6:]
    dh = -np.sin(hv)
    dh[:, :3] += kv
    dh[:, 3:6] += qv
    dh[:, 6:] += np.cos(vv)
    close(w.grad, xv.T @ dh)
    close(x.grad, dh @ wv.T)
    # the pieces' gradients go into h's one buffer: the slices add into their regions
    # (Rule.accumulate), where a gradient is there already, instead of each making a zero
    # tensor of h's size that is then added in whole
    assert len(made) <= 1
    assert (4, 9) in calls or not made


def test_a_gradient_someone_else_holds_is_never_summed_into(monkeypatch):
    """A gradient something else refers to (another slot: add's backward hands one g to
    both inputs; a name; a view of its array; a detached alias), a root gradient the caller
    passed and one a hook kept are summed out of place: what they hold keeps its values."""
    from ember.autograd.engine import _accumulate

    calls = _count_in_place_sums(monkeypatch)

    def gradient():
        return ember.tensor([1.0, 2.0], dtype=ember.float64) * 1.0

    with ember.no_grad():  # as backward runs the rules
        # a fresh gradient only the slot holds: summed into
        slots = {0: gradient()}
        total = _accumulate(slots, 0, gradient())
        assert calls == [(2,)] and total is slots[0]
        close(total, [2.0, 4.0])
        # held by another slot, by a name, or through its array by a view: left as it is
        shared = gradient()
        for others in ({1: shared}, [shared], [shared._data[:1]], [shared.detach()]):
            slots = {0: shared}
            total = _accumulate(slots, 0, gradient())
            assert total is not shared and calls == [(2,)]
            close(shared, [1.0, 2.0])
            close(total, [2.0, 4.0])
            del others
    # an in-place sum under grad mode would go unrecorded: not then
    slots = {0: gradient()}
    with ember.enable_grad():
        assert _accumulate(slots, 0, gradient()) is not slots[0]

    x = leaf([1.0, 2.0])
    y = x.exp()
    g = ember.tensor([1.0, 1.0], dtype=ember.float64)
    kept = []
    y.register_hook(lambda grad: kept.append(grad))
    (y + y * 2.0).backward(g)
    close(g, [1.0, 1.0])
    close(kept[0], [3.0, 3.0])
    close(x.grad, 3.0 * np.exp([1.0, 2.0]))


def test_second_order_gradients_still_sum_out_of_place(monkeypatch):
    """Under create_graph the sum of two gradients is itself differentiated: no in-place."""
    calls = _count_in_place_sums(monkeypatch)
    x = leaf([0.5, -1.0])
    y = x.sin() + x.cos()
    (g,) = autograd.grad(y.sum(), x, create_graph=True)
    assert not calls
    (gg,) = autograd.grad(g.sum(), x)
    close(g, np.cos([0.5, -1.0]) - np.sin([0.5, -1.0]))
    close(gg, -np.sin([0.5, -1.0]) - np.cos([0.5, -1.0]))


def test_a_root_gradient_the_caller_passes_never_becomes_a_grad_it_shares():
    """backward(g) hands g itself to a non-leaf root's rule (no copy: a rule only reads it);
    a leaf root's .grad, or a .grad reached through views of g, is the leaf's own memory."""
    g = ember.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=ember.float64)
    x = leaf([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    x.view(2, 3).backward(g)  # the view's backward gives back a view of g
    z = leaf([[0.0] * 3] * 2)
    z.backward(g)  # a leaf root
    w = leaf([1.0, 1.0, 1.0])
    (w * 2.0).backward(g[0])
    g.mul_(10.0)
    close(x.grad, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    close(z.grad, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    close(w.grad, [2.0, 4.0, 6.0])
