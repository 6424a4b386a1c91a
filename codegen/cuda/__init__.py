"""The CUDA backend: kernel specs (codegen/spec.py) emitted as CUDA C source for NVRTC/nvcc."""
