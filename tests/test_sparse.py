"""Sparse COO tensors (gcn/gat's adjacency and feature matrices): construction, coalescing,
to_dense/to_sparse, sparse @ dense and its gradients, dense + sparse, and clear refusals."""

import ember
import numpy as np
import pytest
from ember.autograd import gradcheck

torch = pytest.importorskip("torch")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _sparse_dense(shape, density=0.3, seed=0):
    rng = _rng(seed)
    return rng.standard_normal(shape) * (rng.random(shape) < density)


def test_to_sparse_gives_torchs_coalesced_indices_and_values():
    a = _sparse_dense((5, 7))
    ours, theirs = ember.tensor(a).to_sparse(), torch.tensor(a).to_sparse()
    assert ours.is_sparse and ours.layout is ember.sparse_coo and ours.is_coalesced()
    np.testing.assert_array_equal(ours.indices().numpy(), theirs.indices().numpy())
    np.testing.assert_array_equal(ours.values().numpy(), theirs.values().numpy())
    assert ours.shape == (5, 7) and ours._nnz() == theirs._nnz()
    np.testing.assert_array_equal(ours.to_dense().numpy(), a)


def test_repeated_indices_add_up_and_coalesce_sorts_them():
    indices = [[2, 0, 2, 1], [1, 3, 1, 0]]
    values = [1.0, 2.0, 3.0, 4.0]
    ours = ember.sparse_coo_tensor(indices, values, (3, 4))
    theirs = torch.sparse_coo_tensor(indices, values, (3, 4))
    assert not ours.is_coalesced()
    with pytest.raises(RuntimeError, match="uncoalesced"):
        ours.indices()
    np.testing.assert_array_equal(ours.to_dense().numpy(), theirs.to_dense().numpy())
    c, tc = ours.coalesce(), theirs.coalesce()
    np.testing.assert_array_equal(c.indices().numpy(), tc.indices().numpy())
    np.testing.assert_array_equal(c.values().numpy(), tc.values().numpy())


def test_sparse_coo_tensor_takes_numpy_indices_a_dtype_and_infers_the_size():
    # gcn/gat: torch.sparse_coo_tensor(edges.T, torch.ones(E), (V, V), dtype=torch.int64)
    edges = np.array([[0, 1], [2, 0], [1, 2]], dtype=np.int32)
    adj = ember.sparse_coo_tensor(edges.T, ember.ones(3), (3, 3), dtype=ember.int64)
    assert adj.dtype == ember.int64 and adj._indices().dtype == ember.int64
    # dense + sparse is dense, with type promotion (float32 eye + int64 adjacency)
    out = ember.eye(3) + adj
    expected = np.eye(3, dtype=np.float32)
    expected[edges[:, 0], edges[:, 1]] += 1
    assert out.dtype == ember.float32 and out.layout is ember.strided
    np.testing.assert_array_equal(out.numpy(), expected)
    assert ember.sparse_coo_tensor([[0, 4]], [1.0, 2.0]).shape == (5,)


@pytest.mark.parametrize("form", ["matmul", "mm", "spmm", "sparse.mm"])
def test_sparse_times_dense_matches_torch(form):
    a, b = _sparse_dense((6, 5)), _rng(1).standard_normal((5, 4))
    results = []
    for fw in (torch, ember):
        s, d = fw.tensor(a).to_sparse(), fw.tensor(b)
        fn = {"matmul": lambda x, y: x @ y, "mm": fw.mm, "spmm": fw.spmm,
              "sparse.mm": fw.sparse.mm}[form]
        results.append(fn(s, d).numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-12)


def test_dense_times_sparse_and_a_chain_match_torch():
    # gcn: degree_mat @ adj_mat @ degree_mat with sparse diagonals around a dense matrix
    deg, adj = np.diag(_rng(2).random(5)), _rng(3).random((5, 5))
    outs = []
    for fw in (torch, ember):
        d = fw.tensor(deg).to_sparse()
        outs.append((d @ fw.tensor(adj) @ d).numpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-12)


def test_sparse_times_dense_gradients_match_torch_and_gradcheck():
    a, b = _sparse_dense((6, 5), seed=4), _rng(5).standard_normal((5, 3))
    weights = _rng(6).standard_normal((6, 3))
    grads = []
    for fw in (torch, ember):
        d = fw.tensor(b).requires_grad_(True)
        (fw.mm(fw.tensor(a).to_sparse(), d) * fw.tensor(weights)).sum().backward()
        grads.append(d.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)
    s = ember.tensor(a).to_sparse()
    assert gradcheck(lambda d: ember.spmm(s, d), [ember.tensor(b, requires_grad=True)])
    indices = s.indices()
    assert gradcheck(
        lambda v: ember.sparse_coo_tensor(indices, v, (6, 5)) @ ember.tensor(b),
        [ember.tensor(s.values().numpy(), requires_grad=True)],
    )


def test_sparse_plus_sparse_and_times_a_number_stay_sparse():
    a, b = _sparse_dense((4, 4), seed=7), _sparse_dense((4, 4), seed=8)
    s = ember.tensor(a).to_sparse() + ember.tensor(b).to_sparse()
    assert s.is_sparse and s.is_coalesced()
    np.testing.assert_allclose(s.to_dense().numpy(), a + b)
    np.testing.assert_allclose((2 * ember.tensor(a).to_sparse()).to_dense().numpy(), 2 * a)


def test_bad_sparse_inputs_are_clear_errors():
    s = ember.tensor(np.eye(3)).to_sparse()
    with pytest.raises(RuntimeError, match=r"add\(sparse, dense\) is not supported") as e:
        s + ember.ones(3, 3)
    assert isinstance(e.value, ember.EmberError)
    with pytest.raises(NotImplementedError, match=r"relu: ember has no sparse COO form.*to_dense"):
        ember.relu(s)
    with pytest.raises(NotImplementedError, match=r"Tensor.view: .*sparse"):
        s.view(9)
    with pytest.raises(RuntimeError, match="same nnz"):
        ember.sparse_coo_tensor([[0, 1]], [1.0, 2.0, 3.0], (3,))
    with pytest.raises(RuntimeError, match="for dim 0, size is 3 but found index 5"):
        ember.sparse_coo_tensor([[0, 5]], [1.0, 2.0], (3,))
    with pytest.raises(RuntimeError, match=r"sizes do not match.*\[3, 3\].*\[4, 2\]"):
        s @ ember.ones(4, 2, dtype=ember.float64)
    with pytest.raises(RuntimeError, match="expected scalar type float64 but found float32"):
        s @ ember.ones(3, 2)
