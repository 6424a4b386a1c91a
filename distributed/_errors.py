"""The errors of ember.distributed, named as torch.distributed names them."""

from __future__ import annotations

from ..errors import EmberRuntimeError, _with_location


class DistError(EmberRuntimeError):
    """A distributed operation failed: misuse of a process group, or a collective that broke."""


class DistBackendError(DistError):
    """The communication library (MPI, NCCL) reported an error, or a collective timed out."""


def dist_error(message: str) -> DistError:
    return DistError(_with_location(message))


def backend_error(message: str) -> DistBackendError:
    return DistBackendError(_with_location(message))
