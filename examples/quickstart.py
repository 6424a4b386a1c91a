"""Quickstart: train a small CNN on scikit-learn's handwritten digits, save, reload and export it.

Everything is spelled as in PyTorch: nn.Module layers, a DataLoader over a TensorDataset,
Adam, cross-entropy, model.train()/model.eval(), state_dict checkpoints (a safetensors file;
never a pickle). The trained model is then exported with a dynamic batch dimension and run
by the `python -m ember.runtime` command line. The digits ship with scikit-learn, so nothing
is downloaded.

    pip install -e ".[examples]" && python examples/quickstart.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import ember
import numpy as np
from ember import nn
from ember.nn import functional as F
from ember.utils.data import DataLoader, TensorDataset
from sklearn.datasets import load_digits
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import digits_cnn

EPOCHS = 12
BATCH_SIZE = 64
MIN_TEST_ACCURACY = 0.97


def load_data(seed: int = 0):
    """Digits as (N, 1, 8, 8) float32 images in [0, 1] and int64 labels, split 80/20."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    split = int(0.8 * len(labels))
    train, test = order[:split], order[split:]
    return (
        ember.tensor(images[train]),
        ember.tensor(labels[train]),
        ember.tensor(images[test]),
        ember.tensor(labels[test]),
    )


@ember.no_grad()
def accuracy(model: nn.Module, images: ember.Tensor, labels: ember.Tensor) -> float:
    model.eval()
    predictions = model(images).argmax(dim=1)
    return (predictions == labels).float().mean().item()


def train(model: nn.Module, loader: DataLoader, epochs: int) -> None:
    optimizer = ember.optim.Adam(model.parameters(), lr=2e-3)
    scheduler = ember.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    for epoch in range(epochs):
        model.train()
        progress = tqdm(loader, desc=f"epoch {epoch + 1:2d}/{epochs}", leave=False, disable=None)
        total, count = 0.0, 0
        for images, labels in progress:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(labels)
            count += len(labels)
            progress.set_postfix(loss=f"{total / count:.4f}")
        scheduler.step()
        print(f"epoch {epoch + 1:2d}: train loss {total / count:.4f}")


def main() -> None:
    ember.manual_seed(0)
    x_train, y_train, x_test, y_test = load_data()
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=BATCH_SIZE, shuffle=True)
    model = digits_cnn(ember)
    print(model)
    start = time.perf_counter()
    train(model, loader, EPOCHS)
    seconds = time.perf_counter() - start
    acc = accuracy(model, x_test, y_test)
    print(f"test accuracy {acc:.4f} after {EPOCHS} epochs in {seconds:.1f} s")
    assert acc >= MIN_TEST_ACCURACY, f"test accuracy {acc:.4f} < {MIN_TEST_ACCURACY}"

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "digits_cnn.safetensors")
        ember.save(model.state_dict(), path)
        restored = digits_cnn(ember)
        restored.load_state_dict(ember.load(path))
        again = accuracy(restored, x_test, y_test)
        print(
            f"checkpoint {os.path.getsize(path) / 1024:.0f} KiB reloaded: test accuracy {again:.4f}"
        )
        assert again == acc, "the reloaded model must predict exactly as the trained one"

        # the trained model as one graph file, run by the standalone runtime's command line
        graph_path = os.path.join(folder, "digits_cnn.ember")
        result = ember.export(model, x_test[:8], graph_path, dynamic_dims={0: {0: "batch"}})
        images = os.path.join(folder, "images.npy")
        np.save(images, x_test.numpy())
        logits_path = os.path.join(folder, "logits.npz")
        subprocess.run(
            [sys.executable, "-m", "ember.runtime", "run", graph_path]
            + ["--input", f"input={images}", "--output", logits_path],
            check=True,
            capture_output=True,
        )
        cli_predictions = np.load(logits_path)["output"].argmax(axis=1)
        with ember.no_grad():
            eager_predictions = model(x_test).argmax(dim=1).numpy()
        agree = float((cli_predictions == eager_predictions).mean())
        print(
            f"exported {result.size / 1024:.0f} KiB graph; `python -m ember.runtime run` on "
            f"{len(cli_predictions)} test images agrees with eager on {agree:.1%} of predictions"
        )
        assert agree == 1.0, "the exported model must predict as the trained one"


if __name__ == "__main__":
    main()
