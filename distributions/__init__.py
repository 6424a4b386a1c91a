"""ember.distributions: the torch.distributions subset real programs use (Categorical for
policies, Normal and kl_divergence for VAEs), written in ember's tensor ops so gradients flow
through log_prob and rsample."""

from . import constraints, kl  # noqa: F401  (torch.distributions.<module> paths)
from .bernoulli import Bernoulli
from .categorical import Categorical
from .distribution import Distribution
from .independent import Independent
from .kl import kl_divergence, register_kl
from .normal import Normal
from .one_hot_categorical import OneHotCategorical
from .uniform import Uniform

__all__ = [
    "Bernoulli",
    "Categorical",
    "Distribution",
    "Independent",
    "Normal",
    "OneHotCategorical",
    "Uniform",
    "constraints",
    "kl_divergence",
    "register_kl",
]
