"""The runtime: devices, array backends, the eager kernel of every primitive, and graph files.

Importing it loads no tracer, nn, optim or autograd code.
"""

from .device import device, is_cuda_available  # noqa: F401
from .graph_file import FormatError  # noqa: F401
from .kernels import KERNELS  # noqa: F401
from .loaded import LoadedProgram, load  # noqa: F401
