"""Trains small models with DistributedDataParallel, each rank on its share of every batch,
and saves what the test compares with one process training on the whole batches.

    mpiexec -n N python ddp_worker.py out_dir

Writes out_dir/rank{r}.npz (parameters, gradients, buffers, and the data used, by scenario)
and out_dir/rank{r}.json (facts: state_dict keys, errors, bucket counts). The model builders
are shared with the test, which imports this file.
"""

import json
import sys

import ember
import ember.distributed as dist
import numpy as np
from ember import nn
from ember.nn import functional as F
from ember.nn.parallel import DistributedDataParallel as DDP

BATCH = 12  # rows per step, split evenly among 2 or 3 ranks
STEPS = 20


def mlp():
    return nn.Sequential(
        nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    ).double()


def bn_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    ).double()


class TwoHeads(nn.Module):
    """head_b takes part only when asked: an unused parameter set, some iterations."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(4, 8)
        self.head_a = nn.Linear(8, 2)
        self.head_b = nn.Linear(8, 2)

    def forward(self, x, use_b: bool):
        h = self.trunk(x).tanh()
        out = self.head_a(h)
        if use_b:
            out = out + self.head_b(h)
        return out


def two_heads():
    return TwoHeads().double()


def sgd(model):
    return ember.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def mine(array: np.ndarray, rank: int, size: int) -> np.ndarray:
    n = len(array) // size
    return array[rank * n : (rank + 1) * n]


def save_state(saved: dict, prefix: str, module) -> None:
    for name, t in module.state_dict().items():
        saved[f"{prefix}/{name}"] = t.numpy().copy()


def train_mlp(saved, facts, rank, size, name, bucket_cap_mb=None):
    ember.manual_seed(100 + rank)  # different on every rank: DDP starts them from rank 0's
    model = mlp()
    save_state(saved, f"{name}/before", model)
    ddp = DDP(model, bucket_cap_mb=bucket_cap_mb)
    save_state(saved, f"{name}/init", model)
    facts[f"{name}/buckets"] = [list(b.indices) for b in ddp.reducer.buckets]
    launched_before_last = []
    first = next(iter(model.parameters()))
    first.register_post_accumulate_grad_hook(
        lambda p: launched_before_last.append(ddp.reducer.next_bucket)
    )
    optimizer = sgd(ddp)
    rng = np.random.default_rng(7)
    for step in range(STEPS):
        x, y = rng.standard_normal((BATCH, 5)), rng.standard_normal((BATCH, 3))
        saved[f"{name}/x{step}"], saved[f"{name}/y{step}"] = x, y
        loss = F.mse_loss(ddp(ember.tensor(mine(x, rank, size))), ember.tensor(mine(y, rank, size)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    facts[f"{name}/launched_before_last_grad"] = launched_before_last
    save_state(saved, f"{name}/final", model)
    return ddp


def train_bn(saved, rank, size):
    ember.manual_seed(5)
    model = bn_cnn()
    ddp = DDP(model)
    save_state(saved, "bn/init", model)
    optimizer = sgd(ddp)
    rng = np.random.default_rng(11)
    for step in range(STEPS):
        x = rng.standard_normal((BATCH, 1, 6, 6))
        y = rng.integers(0, 3, BATCH)
        saved[f"bn/x{step}"], saved[f"bn/y{step}"] = x, y
        logits = ddp(ember.tensor(mine(x, rank, size)))
        loss = F.cross_entropy(logits, ember.tensor(mine(y, rank, size)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_state(saved, "bn/final", model)


def train_no_sync(saved, facts, rank, size):
    ember.manual_seed(9)
    model = mlp()
    ddp = DDP(model)
    save_state(saved, "accumulate/init", model)
    optimizer = sgd(ddp)
    rng = np.random.default_rng(13)
    local_norms = []
    for step in range(5):
        optimizer.zero_grad()
        for micro in range(3):
            x, y = rng.standard_normal((BATCH, 5)), rng.standard_normal((BATCH, 3))
            saved[f"accumulate/x{step}.{micro}"], saved[f"accumulate/y{step}.{micro}"] = x, y
            x, y = ember.tensor(mine(x, rank, size)), ember.tensor(mine(y, rank, size))
            if micro < 2:
                with ddp.no_sync():
                    (F.mse_loss(ddp(x), y) / 3).backward()
                local_norms.append(float(model[0].weight.grad.abs().sum()))
            else:
                (F.mse_loss(ddp(x), y) / 3).backward()
        optimizer.step()
    facts["accumulate/local_grad_norms"] = local_norms
    save_state(saved, "accumulate/final", model)


def unused_parameters(saved, facts, rank, size):
    ember.manual_seed(21)
    model = two_heads()
    ddp = DDP(model, find_unused_parameters=True)
    save_state(saved, "unused/init", model)
    rng = np.random.default_rng(17)
    for step, use_b in enumerate([False, rank == 0]):
        x = rng.standard_normal((BATCH, 4))
        saved[f"unused/x{step}"] = x
        model.zero_grad(set_to_none=True)
        ddp(ember.tensor(mine(x, rank, size)), use_b).sum().backward()
        for name, p in model.named_parameters():
            facts[f"unused/{step}/{name}/has_grad"] = p.grad is not None
            if p.grad is not None:
                saved[f"unused/{step}/{name}"] = p.grad.numpy().copy()

    # without find_unused_parameters, an unused parameter stops the next iteration
    strict = DDP(two_heads())
    strict(ember.ones(2, 4, dtype=ember.float64), False).sum().backward()
    try:
        strict(ember.ones(2, 4, dtype=ember.float64), False)
    except RuntimeError as exc:
        facts["unused/strict_error"] = str(exc)


def buffers(facts, rank):
    for broadcast_buffers in (True, False):
        model = bn_cnn()
        ddp = DDP(model, broadcast_buffers=broadcast_buffers)
        bn = model[1]
        with ember.no_grad():
            bn.running_mean.fill_(float(rank + 1))
        model.eval()  # the forward reads the running statistics and leaves them alone
        ddp(ember.ones(2, 1, 6, 6, dtype=ember.float64))
        facts[f"buffers/{broadcast_buffers}"] = bn.running_mean.tolist()


def main() -> None:
    out_dir = sys.argv[1]
    dist.init_process_group("mpi", timeout=60)
    rank, size = dist.get_rank(), dist.get_world_size()
    saved: dict = {}
    facts: dict = {}
    ddp = train_mlp(saved, facts, rank, size, "mlp")
    facts["state_dict_keys"] = list(ddp.state_dict())
    if rank == 0:
        ember.save(ddp.module.state_dict(), f"{out_dir}/checkpoint.safetensors")
    train_mlp(saved, facts, rank, size, "buckets", bucket_cap_mb=1e-5)
    train_bn(saved, rank, size)
    train_no_sync(saved, facts, rank, size)
    unused_parameters(saved, facts, rank, size)
    buffers(facts, rank)
    dist.barrier()
    dist.destroy_process_group()
    np.savez(f"{out_dir}/rank{rank}.npz", **saved)
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(facts, f)


if __name__ == "__main__":
    main()
