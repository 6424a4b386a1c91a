"""What the tests of ember's eager GEMM paths share (test_pool_gemm.py, BLAS calls on the
pool's threads; test_packed_gemm.py and test_column_sums.py, ember's packed GEMM): the packed
GEMM's CPU condition, a spy on which path a product took, a linear layer and a matmul run
through the kernels against numpy, and callers on several Python threads at once."""

import threading

import ember
import numpy as np
import pytest
from ember.codegen.llvm import target

# the packed GEMM's tiles are sized for AVX-512's registers; elsewhere every product goes to
# BLAS (test_packed_gemm.py tests that on a CPU made to look so)
AVX512 = "+avx512f" in target.features().split(",")
needs_avx512 = pytest.mark.skipif(not AVX512, reason="no AVX-512: BLAS runs every product")


def products_taken(monkeypatch, path) -> list:
    """A list that gets, per call of path.product from now on, whether it took the
    product (returned an array rather than None)."""
    taken = []
    original = path.product

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(path, "product", spy)
    return taken


def linear_and_matmul_match_numpy() -> None:
    """A linear layer's forward and both its gradients, and a matmul, in float64 (sizes either
    path takes), equal to numpy's."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 64, 128))
    w = rng.standard_normal((256, 128))
    bias = rng.standard_normal(256)
    g = rng.standard_normal((8, 64, 256))
    tx, tw, tb = (ember.tensor(v, requires_grad=True) for v in (x, w, bias))
    y = ember.nn.functional.linear(tx, tw, tb)
    (y * ember.tensor(g)).sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), x @ w.T + bias, rtol=1e-10, atol=1e-10)
    flat_x, flat_g = x.reshape(-1, 128), g.reshape(-1, 256)
    np.testing.assert_allclose(tx.grad.numpy(), (flat_g @ w).reshape(x.shape), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(tw.grad.numpy(), flat_g.T @ flat_x, rtol=1e-10, atol=1e-10)
    z = ember.tensor(x[0]) @ ember.tensor(w.T)
    np.testing.assert_allclose(z.numpy(), x[0] @ w.T, rtol=1e-10, atol=1e-10)


def at_once(work, callers: int = 4) -> None:
    """work(seed) on `callers` threads at once; an error on any of them fails the test."""
    errors = []

    def run(seed):
        try:
            work(seed)
        except Exception as error:  # reported below, on the test's thread
            errors.append(error)

    workers = [threading.Thread(target=run, args=(seed,)) for seed in range(callers)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors, errors
