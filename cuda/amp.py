"""ember.cuda.amp (torch.cuda.amp): autocast("cuda") and GradScaler("cuda") by their old names,
which warn that they are deprecated; without CUDA both are constructed disabled, with
PyTorch's warning."""

from ..amp.autocast_mode import _deprecated_autocast
from ..amp.grad_scaler import _deprecated_grad_scaler

autocast = _deprecated_autocast("cuda")
GradScaler = _deprecated_grad_scaler("cuda")
