"""Habits of PyTorch scripts: the legacy torch.Tensor constructor, torch.save of a whole module
(refused, saying what to save), torch.load's keywords, and `import torch.onnx`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ember
import numpy as np
import pytest


def test_tensor_of_data_is_default_float():
    t = ember.Tensor([1, 2, 3])
    assert t.dtype is ember.float32 and t.tolist() == [1.0, 2.0, 3.0]
    assert ember.Tensor(np.arange(4)).dtype is ember.float32
    assert ember.Tensor((2, 3)).tolist() == [2.0, 3.0]  # a tuple is data, as in PyTorch


def test_tensor_of_ints_is_an_uninitialized_shape():
    assert ember.Tensor(2, 3).shape == (2, 3)
    assert ember.Tensor(ember.Size([4, 1])).shape == (4, 1)
    assert ember.Tensor().shape == (0,)
    assert ember.Tensor(2, 3).dtype is ember.float32


def test_tensor_of_a_tensor_shares_its_data():
    a = ember.tensor([1, 2])
    b = ember.Tensor(a)
    b[0] = 5
    assert a.tolist() == [5, 2] and b.dtype is ember.int64


def test_tensor_refuses_a_dtype_as_pytorch_does():
    with pytest.raises(TypeError):
        ember.Tensor([1, 2], dtype=ember.float64)
    assert isinstance(ember.nn.Parameter(ember.ones(2)), ember.Tensor)


def test_saving_a_whole_optimizer_says_to_save_its_state_dict(tmp_path):
    model = ember.nn.Linear(3, 2)
    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(ember.randn(4, 3)).sum().backward()
    opt.step()
    with pytest.raises(TypeError, match=r"torch\.save\(optimizer\.state_dict\(\), path\)"):
        ember.save(opt, tmp_path / "opt.pt")


@pytest.mark.parametrize(
    "map_location",
    ["cpu", ember.device("cpu"), {"cpu": "cpu"}, lambda storage, location: storage, None],
    ids=["str", "device", "dict", "callable", "none"],
)
def test_load_takes_the_keywords_scripts_pass(tmp_path, map_location):
    model = ember.nn.Linear(3, 2)
    path = tmp_path / "model.pt"
    ember.save(model.state_dict(), path)
    loaded = ember.load(path, map_location=map_location, weights_only=True, mmap=True)
    fresh = ember.nn.Linear(3, 2)
    fresh.load_state_dict(loaded)
    assert ember.equal(fresh.weight, model.weight) and ember.equal(fresh.bias, model.bias)
    assert set(ember.load(path, "cpu", encoding="latin1")) == {"weight", "bias"}


def test_import_ember_onnx_is_a_real_module():
    root = Path(ember.__file__).resolve().parent.parent
    code = (
        "import sys, ember.onnx\n"
        "from ember.onnx import export\n"
        "assert sys.modules['ember.onnx'] is ember.onnx and callable(export)\n"
        "import ember.ops\n"
        "assert ember.ops.add is ember.add\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True,
                            text=True, env={"PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr
