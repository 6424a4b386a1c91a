"""torch.nn.modules.container's path to ember's layers (scripts import them from here)."""

from ..containers import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential  # noqa: F401
