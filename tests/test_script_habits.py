"""Keywords, attributes and module paths that real training scripts use with PyTorch:
DataLoader's worker options, the nn.modules.<file> paths, the device predicates and the
serialization allow-list."""

import ember
import numpy as np
import pytest
from ember.utils.data import DataLoader, TensorDataset


def test_dataloader_takes_pytorchs_worker_and_pinning_options():
    ds = TensorDataset(ember.arange(10.0).reshape(10, 1), ember.arange(10))
    plain = [b[1].tolist() for b in DataLoader(ds, batch_size=4)]
    for options in ({"pin_memory": True, "pin_memory_device": "cuda"},
                    {"num_workers": 2, "persistent_workers": True, "prefetch_factor": 2},
                    {"multiprocessing_context": "spawn", "in_order": False}):
        loader = DataLoader(ds, batch_size=4, **options)
        for _ in range(2):  # two passes, as epochs
            assert [b[1].tolist() for b in loader] == plain
    with pytest.raises(ember.EmberError, match="persistent_workers option needs num_workers"):
        DataLoader(ds, persistent_workers=True)


def test_layers_are_importable_from_torchs_module_paths():
    from ember.nn.modules.activation import MultiheadAttention
    from ember.nn.modules.batchnorm import _BatchNorm
    from ember.nn.modules.container import Sequential
    from ember.nn.modules.linear import Linear
    from ember.nn.modules.module import Module

    assert Linear is ember.nn.Linear and Module is ember.nn.Module
    assert Sequential is ember.nn.Sequential and MultiheadAttention is ember.nn.MultiheadAttention
    assert isinstance(ember.nn.BatchNorm2d(3), _BatchNorm)
    assert ember.nn.modules.conv.Conv2d is ember.nn.Conv2d


def test_device_predicates():
    x = ember.randn(2)
    assert x.is_cpu and not x.is_cuda
    assert not (x.is_mps or x.is_xpu or x.is_meta or x.is_sparse or x.is_quantized)


def test_safe_globals_are_recorded_and_loading_still_unpickles_nothing(tmp_path):
    class Config:
        pass

    ember.serialization.clear_safe_globals()
    with ember.serialization.safe_globals([Config]):
        assert ember.serialization.get_safe_globals() == [Config]
    assert ember.serialization.get_safe_globals() == []
    ember.serialization.add_safe_globals([Config])
    try:
        path = tmp_path / "w.safetensors"
        ember.save({"w": ember.ones(2)}, path)
        np.testing.assert_array_equal(ember.load(path, weights_only=True)["w"].numpy(), [1, 1])
    finally:
        ember.serialization.clear_safe_globals()
    with pytest.raises(ember.EmberError):
        ember.serialization.add_safe_globals(Config)
