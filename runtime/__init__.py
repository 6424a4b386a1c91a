"""The runtime: devices, array backends and the eager kernel of every primitive.

Importing it loads no tracer, nn, optim or autograd code.
"""

from .device import device, is_cuda_available  # noqa: F401
from .kernels import KERNELS  # noqa: F401
