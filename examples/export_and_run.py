"""Export the quickstart's digits CNN to one graph file and run it with the standalone runtime.

The model trains for an epoch (pass --epochs 0 to export it untrained), is exported with a
dynamic batch dimension (ember.export checks the file against eager), and is then run on
test images by the `python -m ember.runtime` command line, which loads no autograd, nn or
tracer code; the outputs it writes are compared with eager's.

    pip install -e ".[examples]" && python examples/export_and_run.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import ember
import numpy as np
from ember.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import digits_cnn
from quickstart import load_data, train


def main(epochs: int = 1) -> float:
    """Train, export, run through the CLI; the largest |runtime - eager| difference."""
    ember.manual_seed(0)
    x_train, y_train, x_test, _ = load_data()
    model = digits_cnn(ember)
    if epochs:
        train(
            model,
            DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True),
            epochs=epochs,
        )
    model.eval()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "digits.ember")
        result = ember.export(model, x_test[:8], path, dynamic_dims={"input": {0: "batch"}})
        print(
            f"exported {path}: {result.size} bytes, ops {', '.join(result.ops)}, "
            f"check max |diff| {result.max_difference:.2e}"
        )

        images = x_test[:37].numpy()  # another batch size than the example's
        np.save(os.path.join(folder, "images.npy"), images)
        command = [sys.executable, "-m", "ember.runtime"]
        info = subprocess.run([*command, "info", path], capture_output=True, text=True, check=True)
        print(info.stdout)
        out = os.path.join(folder, "logits.npz")
        ran = subprocess.run(
            [*command, "run", path, "--input", f"input={folder}/images.npy", "--output", out],
            capture_output=True,
            text=True,
            check=True,
        )
        print(ran.stdout)
        logits = np.load(out)["output"]
    with ember.no_grad():
        expected = model(ember.tensor(images)).numpy()
    difference = float(np.abs(logits - expected).max())
    print(f"CLI vs eager on {len(images)} images: max |diff| {difference:.2e}")
    if not np.allclose(logits, expected, rtol=1e-4, atol=1e-5):
        raise SystemExit("the exported model disagrees with eager")
    return difference


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    main(parser.parse_args().epochs)
