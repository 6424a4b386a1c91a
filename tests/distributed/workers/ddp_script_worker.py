"""DistributedDataParallel around an ember.script'ed module: each rank trains on its share of
every batch; the final weights and facts about the run go to out_dir.

    mpiexec -n N python ddp_script_worker.py out_dir
"""

import json
import sys

import ember
import ember.distributed as dist
import numpy as np
from ember import nn
from ember.nn import functional as F
from ember.nn.parallel import DistributedDataParallel

STEPS = 6
BATCH = 12


def mlp():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).double()


def batches():
    rng = np.random.default_rng(7)
    return [
        (rng.standard_normal((BATCH, 6)), rng.standard_normal((BATCH, 3))) for _ in range(STEPS)
    ]


def main() -> None:
    out_dir = sys.argv[1]
    dist.init_process_group()
    rank, size = dist.get_rank(), dist.get_world_size()
    ember.manual_seed(0)
    model = mlp()
    scripted = ember.script(model)
    ddp = DistributedDataParallel(scripted)
    optimizer = ember.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    nodes = []
    for x, y in batches():
        out = ddp(ember.tensor(x[rank::size]))
        nodes.append(type(out.grad_fn).__name__)
        loss = F.mse_loss(out, ember.tensor(y[rank::size]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    np.savez(f"{out_dir}/rank{rank}.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(
            {"nodes": nodes, "keys": sorted(ddp.state_dict()), "graphs": len(scripted.graphs)}, f
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
