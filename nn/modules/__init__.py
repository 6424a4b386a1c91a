"""ember.nn.modules: the module paths of torch.nn.modules (torch.nn.modules.linear.Linear,
torch.nn.modules.batchnorm._BatchNorm, ...), for scripts that import layers from there; the
layers themselves live in ember/nn/layers."""

from . import (  # noqa: F401
    activation,
    batchnorm,
    container,
    conv,
    dropout,
    flatten,
    fold,
    linear,
    loss,
    module,
    normalization,
    padding,
    pixelshuffle,
    pooling,
    rnn,
    sparse,
    transformer,
    upsampling,
)
from .module import Module  # noqa: F401
