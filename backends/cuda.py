"""ember.backends.cuda: matmul precision switches (kept; ember's cupy matmuls use the array's
own dtype), and whether ember can use CUDA."""


class _MatmulSwitches:
    """torch.backends.cuda.matmul: allow_tf32 and the reduced-precision reductions."""

    def __init__(self) -> None:
        self.allow_tf32 = False
        self.allow_fp16_reduced_precision_reduction = True
        self.allow_bf16_reduced_precision_reduction = True


matmul = _MatmulSwitches()


def is_built() -> bool:
    """Whether this ember can run on CUDA at all (cupy importable)."""
    from ..runtime.device import is_cuda_available

    return is_cuda_available()
