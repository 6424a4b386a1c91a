"""The convolutions of the DCGAN and the digits CNN (benchmarks/training_steps.py), whose
eager kernels run through the native entries (runtime/conv_entry.py), against torch: outputs
and the gradients of input and weight, float32 and float64."""

import ember
import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.oracle

# (transposed, x shape, w shape, stride, padding)
LAYERS = {
    "discriminator-first": (False, (4, 3, 32, 32), (16, 3, 4, 4), 2, 1),
    "discriminator-middle": (False, (4, 16, 16, 16), (32, 16, 4, 4), 2, 1),
    "discriminator-last": (False, (4, 64, 4, 4), (1, 64, 4, 4), 1, 0),
    "generator-first": (True, (4, 32, 1, 1), (32, 64, 4, 4), 1, 0),
    "generator-middle": (True, (4, 64, 4, 4), (64, 32, 4, 4), 2, 1),
    "generator-stride-1": (True, (4, 16, 6, 6), (16, 8, 3, 3), 1, 1),
    "digits-second": (False, (8, 32, 8, 8), (64, 32, 3, 3), 1, 1),
}


@pytest.mark.parametrize("layer", LAYERS.values(), ids=LAYERS.keys())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_convolution_values_and_gradients_match_torch(layer, dtype):
    transposed, x_shape, w_shape, stride, padding = layer
    rng = np.random.default_rng(sum(x_shape) + len(dtype))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) * 0.1).astype(dtype)
    results = []
    for fw in (ember, torch):
        tx = fw.tensor(x).requires_grad_(True)
        tw = fw.tensor(w).requires_grad_(True)
        fn = fw.nn.functional.conv_transpose2d if transposed else fw.nn.functional.conv2d
        out = fn(tx, tw, stride=stride, padding=padding)
        g = np.random.default_rng(1).standard_normal(tuple(out.shape)).astype(dtype)
        out.backward(fw.tensor(g))
        results.append([out.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()])
    tol = 1e-4 if dtype == "float32" else 1e-10
    for got, want in zip(*results):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
