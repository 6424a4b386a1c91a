"""The communication libraries behind ember.distributed: MPI (mpi.py) and NCCL (nccl.py).

A backend moves contiguous arrays (numpy for MPI, cupy for NCCL); tensors, checks and waiting
are collectives.py's and work.py's, shared by both.
"""
