"""ember.utils: helpers around training, as torch.utils spells them (data loading first)."""

from . import data  # noqa: F401
