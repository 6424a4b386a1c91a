"""Short runs of the examples: each must learn (reach its loss or accuracy threshold)."""

import os
import runpy
import subprocess
import sys

import ember
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.fixture
def examples_path(monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)
    yield
    for name in ("quickstart", "char_transformer", "models", "export_and_run"):
        sys.modules.pop(name, None)


def test_quickstart_cnn_learns_the_digits(examples_path):
    import quickstart
    from ember.utils.data import DataLoader, TensorDataset
    from models import digits_cnn

    ember.manual_seed(0)
    x_train, y_train, x_test, y_test = quickstart.load_data()
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True)
    model = digits_cnn(ember)
    quickstart.train(model, loader, epochs=3)
    assert quickstart.accuracy(model, x_test, y_test) > 0.93


def test_ddp_digits_learns_the_digits_in_two_processes():
    pytest.importorskip("mpi4py")
    script = os.path.join(EXAMPLES, "ddp_digits.py")
    result = subprocess.run(
        [sys.executable, "-m", "ember.distributed.run", "--nproc", "2", script, "--epochs", "3"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "2 processes, 719 training images each per epoch"
    assert sum(line.startswith("epoch  1:") for line in lines) == 1  # only rank 0 prints
    (final,) = [line for line in lines if line.startswith("test accuracy")]
    assert float(final.split()[2]) > 0.93  # as the quickstart's 3-epoch test


def test_char_transformer_learns_the_sonnets(examples_path):
    import char_transformer

    loss, text = char_transformer.train(steps=150, verbose=False)
    assert loss < 2.9  # a uniform guess over the characters costs ln(61) = 4.1 nats
    assert text.startswith("Shall I ") and len(text) == len("Shall I ") + 200


def test_raw_autograd_spirals_example_runs():
    runpy.run_path(os.path.join(EXAMPLES, "spirals_autograd.py"), run_name="__main__")


def test_export_and_run_example_matches_eager_through_the_cli(examples_path):
    import export_and_run

    assert export_and_run.main(epochs=0) <= 1e-5
