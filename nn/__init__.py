"""ember.nn: modules, layers, functional, init and utils, as torch.nn spells them."""

from . import functional, init, parallel, utils  # noqa: F401
from .containers import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential  # noqa: F401
from .layers import *
from .module import Module  # noqa: F401
from .parameter import Buffer, Parameter  # noqa: F401
