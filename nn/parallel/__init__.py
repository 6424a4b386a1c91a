"""ember.nn.parallel: DistributedDataParallel, as torch.nn.parallel.

Lazy (PEP 562), so that importing ember.nn does not load ember.distributed.
"""

import importlib

__all__ = ["DistributedDataParallel"]


def __getattr__(name: str):
    if name == "DistributedDataParallel":
        value = importlib.import_module(".distributed", __name__).DistributedDataParallel
        globals()[name] = value
        return value
    if name == "distributed":
        return importlib.import_module(".distributed", __name__)
    raise AttributeError(f"module 'ember.nn.parallel' has no attribute {name!r}")
