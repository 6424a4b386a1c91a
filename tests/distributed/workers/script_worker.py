"""Collectives inside ember.script: a scripted data-parallel training step, and scripted
collectives run next to the same function run eagerly on the other ranks.

    mpiexec -n N python script_worker.py out_dir
"""

import json
import sys
import warnings

import ember
import ember.distributed as dist
import numpy as np
from ember import nn
from ember.distributed import functional as DF
from ember.nn import functional as F

STEPS = 10
BATCH = 12


def mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).double()


def data_parallel_steps(saved, facts, rank, size):
    ember.manual_seed(3)
    model = mlp()
    saved.update({f"init/{k}": v.numpy().copy() for k, v in model.state_dict().items()})
    optimizer = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    @ember.script(strict=True)
    def step(x, y):
        loss = F.mse_loss(model(x), y)
        loss.backward()
        with ember.no_grad():
            for p in model.parameters():
                p.grad = DF.all_reduce(p.grad, dist.ReduceOp.AVG)
        optimizer.step()
        return loss

    rng = np.random.default_rng(5)
    n = BATCH // size
    for i in range(STEPS):
        x, y = rng.standard_normal((BATCH, 4)), rng.standard_normal((BATCH, 2))
        saved[f"x{i}"], saved[f"y{i}"] = x, y
        optimizer.zero_grad()
        step(ember.tensor(x[rank * n : (rank + 1) * n]), ember.tensor(y[rank * n : (rank + 1) * n]))
    saved.update({f"final/{k}": v.numpy().copy() for k, v in model.state_dict().items()})
    facts["step_graph"] = str(step.graph)


def collectives(x, world: int, last: int):
    gathered = ember.zeros(world, 3)
    dist.all_gather_into_tensor(gathered, x * 2)
    total = x + 1
    dist.all_reduce(total, op=dist.ReduceOp.MAX)
    part = ember.zeros(3)
    dist.reduce_scatter_tensor(part, ember.cat([x] * world), op=dist.ReduceOp.AVG)
    copy = x.clone()
    dist.broadcast(copy, src=last)
    gathered_f = DF.all_gather_tensor(x)
    summed_f = DF.reduce_scatter_tensor(ember.cat([x] * world), dist.ReduceOp.SUM)
    first_f = DF.broadcast(x, src=0)
    return gathered, total, part, copy, gathered_f, summed_f, first_f


def scripted_next_to_eager(facts, rank, size):
    # rank 0 runs the compiled graph, the others run the same function eagerly
    fn = ember.script(collectives, strict=True) if rank == 0 else collectives
    outputs = []
    for call in range(3):
        x = ember.tensor([rank, 10.0 * call, -1.0], dtype=ember.float32)
        outputs.append([t.tolist() for t in fn(x, size, size - 1)])
    facts["collectives"] = outputs
    if rank == 0:
        facts["collectives_graph"] = str(fn.graph)


def fallbacks(facts, rank, size):
    @ember.script
    def uneven(x):
        out = ember.zeros(size * 2)
        dist.all_to_all_single(out, x)
        return out * 1

    @ember.script
    def needs_grad(w):
        dist.all_reduce(w)
        return w * 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = uneven(ember.full((size * 2,), float(rank)))
        facts["all_to_all_values"] = result.tolist()
        w = ember.ones(2, requires_grad=True) * 2
        facts["needs_grad_values"] = needs_grad(w).tolist()
    facts["warnings"] = [str(w.message) for w in caught]


def main() -> None:
    out_dir = sys.argv[1]
    dist.init_process_group("mpi", timeout=60)
    rank, size = dist.get_rank(), dist.get_world_size()
    saved, facts = {}, {}
    data_parallel_steps(saved, facts, rank, size)
    scripted_next_to_eager(facts, rank, size)
    fallbacks(facts, rank, size)
    dist.destroy_process_group()
    np.savez(f"{out_dir}/rank{rank}.npz", **saved)
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(facts, f)


if __name__ == "__main__":
    main()
