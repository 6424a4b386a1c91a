"""A DDP training loop in which rank 1 fails at step 3; the others must not wait for ever.

    mpiexec -n N python failing_worker.py raise|exit|kill [timeout_seconds]

raise: rank 1 raises ValueError in its forward (the uncaught-exception hook aborts the job);
exit: rank 1 leaves quietly (sys.exit(0)), so the others wait in a collective until the
timeout; kill: rank 1 is killed by SIGKILL (the MPI launcher ends the job).
"""

import os
import signal
import sys

import ember
import ember.distributed as dist
from ember import nn
from ember.nn.parallel import DistributedDataParallel as DDP


class Failing(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.how = how
        self.step = 0

    def forward(self, x):
        self.step += 1
        if self.step == 3 and dist.get_rank() == 1:
            if self.how == "raise":
                raise ValueError("rank 1 cannot go on")
            if self.how == "exit":
                sys.exit(0)
            os.kill(os.getpid(), signal.SIGKILL)
        return self.linear(x)


def main() -> None:
    how = sys.argv[1]
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    dist.init_process_group("mpi", timeout=timeout)
    ddp = DDP(Failing(how))
    optimizer = ember.optim.SGD(ddp.parameters(), lr=0.1)
    for _ in range(10):
        loss = ddp(ember.randn(8, 4)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"rank {dist.get_rank()} finished", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
