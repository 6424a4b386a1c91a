"""ember.cpu.amp (torch.cpu.amp): autocast("cpu") and GradScaler("cpu") by their old names,
which warn that they are deprecated, as PyTorch's do."""

from ..amp.autocast_mode import _deprecated_autocast
from ..amp.grad_scaler import _deprecated_grad_scaler

autocast = _deprecated_autocast("cpu")
GradScaler = _deprecated_grad_scaler("cpu")
