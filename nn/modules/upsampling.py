"""torch.nn.modules.upsampling's path to ember's layers (scripts import them from here)."""

from ..layers.upsampling import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d  # noqa: F401
