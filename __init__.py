"""ember: a PyTorch-style deep-learning framework on numpy (CPU) and cupy (CUDA).

The package is lazy (PEP 562): `import ember.runtime` stays small, and each public name
loads its module on first use.
"""

from __future__ import annotations

import importlib
import sys as _sys

_EXPORTS = {
    # tensors
    "Tensor": "_tensor",
    "Size": "_tensor",
    "dispatch": "_tensor",
    "is_tensor": "_tensor",
    # dtypes
    **{
        name: "ir.dtypes"
        for name in (
            "dtype",
            "float16",
            "bfloat16",
            "float32",
            "float64",
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "get_default_dtype",
            "set_default_dtype",
            "promote_types",
        )
    },
    "finfo": "ir.dtype_info",
    "iinfo": "ir.dtype_info",
    # devices
    "device": "runtime.device",
    # threads: one budget for the native pool and BLAS (runtime/threads.py)
    "set_num_threads": "runtime.threads",
    "get_num_threads": "runtime.threads",
    # memory formats
    **{
        name: "_tensor.memory_format"
        for name in ("memory_format", "contiguous_format", "channels_last", "channels_last_3d",
                     "preserve_format")
    },
    # layouts: dense and sparse COO
    **{
        name: "_tensor.sparse"
        for name in ("layout", "strided", "sparse_coo", "sparse_coo_tensor", "spmm")
    },
    # mixed precision
    "autocast": "amp",
    "is_autocast_enabled": "amp",
    "get_autocast_dtype": "amp",
    # factories
    **{
        name: "_tensor.factories"
        for name in (
            "tensor",
            "as_tensor",
            "from_numpy",
            "from_dlpack",
            "zeros",
            "ones",
            "empty",
            "full",
            "zeros_like",
            "ones_like",
            "empty_like",
            "full_like",
            "arange",
            "linspace",
            "logspace",
            "eye",
            "manual_seed",
            "set_default_device",
            "get_default_device",
            "seed",
            "initial_seed",
            "rand",
            "randn",
            "randint",
            "randperm",
            "rand_like",
            "randn_like",
            "randint_like",
            "FloatTensor",
            "DoubleTensor",
            "HalfTensor",
            "LongTensor",
            "IntTensor",
            "ShortTensor",
            "CharTensor",
            "ByteTensor",
            "BoolTensor",
        )
    },
    # autograd
    **{
        name: "autograd.grad_mode"
        for name in (
            "no_grad",
            "enable_grad",
            "set_grad_enabled",
            "is_grad_enabled",
            "inference_mode",
        )
    },
    # random streams
    "Generator": "_tensor.factories",
    "default_generator": "_tensor.factories",
    # checkpoints
    "save": "serialization",
    "load": "serialization",
    "CheckpointError": "serialization",
    # capture
    "script": "tracer",
    "trace": "tracer",
    "explain": "tracer",
    "compile": "tracer",
    "export": "tracer.export",
    # the nn.functional functions torch also has at the top level (torch.conv3d, ...)
    **{
        name: "nn._toplevel"
        for name in (
            "adaptive_avg_pool1d",
            "adaptive_max_pool1d",
            "avg_pool1d",
            "batch_norm",
            "bilinear",
            "binary_cross_entropy_with_logits",
            "celu",
            "conv1d",
            "conv3d",
            "conv_transpose1d",
            "conv_transpose2d",
            "conv_transpose3d",
            "ctc_loss",
            "dropout",
            "embedding",
            "embedding_bag",
            "group_norm",
            "instance_norm",
            "kl_div",
            "layer_norm",
            "max_pool1d",
            "max_pool3d",
            "pixel_shuffle",
            "pixel_unshuffle",
            "prelu",
            "selu",
        )
    },
    # errors
    **{
        name: "errors"
        for name in (
            "EmberError",
            "EmberRuntimeError",
            "EmberValueError",
            "EmberTypeError",
            "EmberIndexError",
        )
    },
}
_ALIASES = {
    "bool": ("ir.dtypes", "bool_"),
    "half": ("ir.dtypes", "float16"),
    "float": ("ir.dtypes", "float32"),
    "double": ("ir.dtypes", "float64"),
    "long": ("ir.dtypes", "int64"),
    "int": ("ir.dtypes", "int32"),
    "short": ("ir.dtypes", "int16"),
}
_SUBMODULES = {
    "tracer",
    "autograd",
    "cuda",
    "ir",
    "runtime",
    "errors",
    "library",
    "nn",
    "optim",
    "utils",
    "serialization",
    "distributed",
    "backends",
    "amp",
    "cpu",
    "distributions",
    "special",
    "fx",
}
# public submodules that live elsewhere: ember.onnx is tracer/onnx_export.py (so that inside
# ember an absolute `import onnx` always finds the real onnx package); ember.ops, the op
# functions, is the tensor layer's
_RENAMED_SUBMODULES = {"onnx": "tracer.onnx_export", "ops": "_tensor.ops", "jit": "tracer.jit",
                       "accelerator": "runtime.accelerator", "sparse": "_tensor.sparse",
                       "multiprocessing": "_tensor.sharing", "testing": "utils.testing",
                       "profiler": "utils.profiler"}
# the layers that run tensor code: loading one also loads the tracer, which plugs its
# compiler into the tensor layer (_tensor/hooks.py), since that layer never imports it
_TENSOR_CODE = ("_tensor", "nn", "optim", "autograd", "utils", "distributed", "distributions",
                "special")


class _RenamedSubmodules:
    """Import hook: `import ember.onnx` (and the other renamed submodules) gives the module
    that holds it, loaded on first import, so the statement works as the attribute does."""

    @staticmethod
    def find_spec(fullname: str, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in _RENAMED_SUBMODULES:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(fullname, _RenamedSubmodules)

    @staticmethod
    def create_module(spec):
        module = _load(_RENAMED_SUBMODULES[spec.name.rpartition(".")[2]])
        _RenamedSubmodules._own_spec = module.__spec__
        return module

    @staticmethod
    def exec_module(module) -> None:
        module.__spec__ = _RenamedSubmodules._own_spec  # the import set the alias's spec


if not any(finder is _RenamedSubmodules for finder in _sys.meta_path):
    _sys.meta_path.append(_RenamedSubmodules)


def _load(module: str):
    loaded = importlib.import_module(f".{module}", __name__)
    if module.startswith(_TENSOR_CODE) and "ember.tracer" not in _sys.modules:
        importlib.import_module(".tracer", __name__)
    return loaded



def __getattr__(name: str):
    if name == "__version__":  # _version.py's, a leaf module: the kernel cache keys code by it
        return _load("_version").__version__
    if name.startswith("__") or name.startswith("pytest_"):
        # dunders and the hooks pytest looks up on any module it imports (it imports this
        # file as a package when run from the repository root) are not ops
        raise AttributeError(f"module 'ember' has no attribute {name!r}")
    if name in _SUBMODULES:
        value = _load(name)
    elif name in _RENAMED_SUBMODULES:
        value = _load(_RENAMED_SUBMODULES[name])
    elif name in _EXPORTS:
        value = getattr(_load(_EXPORTS[name]), name)
    elif name in _ALIASES:
        module, attr = _ALIASES[name]
        value = getattr(_load(module), attr)
    else:
        ops = _load("_tensor.ops")
        if name.startswith("_") or not hasattr(ops, name):
            raise AttributeError(f"module 'ember' has no attribute {name!r}")
        value = getattr(ops, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(
        set(globals()) | set(_EXPORTS) | set(_ALIASES) | _SUBMODULES | set(_RENAMED_SUBMODULES)
    )
