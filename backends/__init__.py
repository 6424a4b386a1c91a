"""ember.backends: torch.backends' switches, as a CPU-only PyTorch build has them.

ember runs on numpy (CPU) and cupy (CUDA), with no cuDNN, MPS or oneDNN: the switches scripts
set (cudnn.benchmark, cudnn.deterministic, cuda.matmul.allow_tf32, ...) are accepted and kept,
and change nothing, as on a PyTorch build without those libraries; the is_available() queries
answer for this machine.
"""

from . import cuda, cudnn, mkldnn, mps, openmp  # noqa: F401

__all__ = ["cuda", "cudnn", "mkldnn", "mps", "openmp"]
