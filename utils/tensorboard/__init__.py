"""ember.utils.tensorboard: SummaryWriter, as torch.utils.tensorboard spells it (writer.py)."""

from .writer import SummaryWriter

__all__ = ["SummaryWriter"]
