"""ember.utils: helpers around training, as torch.utils spells them (checkpoint, data, hooks,
tensorboard).

Lazy (PEP 562), so that importing ember.utils.hooks does not load the data pipeline.
"""

import importlib


def __getattr__(name: str):
    if name in ("checkpoint", "data", "hooks", "tensorboard"):
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'ember.utils' has no attribute {name!r}")
