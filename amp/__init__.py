"""ember.amp (torch.amp): autocast and GradScaler, for mixed-precision training."""

from .autocast_mode import (  # noqa: F401
    autocast,
    get_autocast_dtype,
    is_autocast_available,
    is_autocast_enabled,
)
from .grad_scaler import GradScaler  # noqa: F401
