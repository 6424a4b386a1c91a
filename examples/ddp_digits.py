"""The quickstart's digits CNN, trained data-parallel in several processes.

Each process holds a replica of the model (DistributedDataParallel) and trains on its own share
of each epoch (DistributedSampler); backward averages the gradients across the processes, so
every replica takes the same steps as one model trained on the whole batches. Only rank 0
prints. Spelled as in PyTorch; the processes are started by MPI:

    pip install -e ".[examples,distributed]"
    python -m ember.distributed.run --nproc 2 examples/ddp_digits.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import ember
import ember.distributed as dist
from ember.nn import functional as F
from ember.nn.parallel import DistributedDataParallel
from ember.utils.data import DataLoader, DistributedSampler, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import digits_cnn
from quickstart import BATCH_SIZE, EPOCHS, MIN_TEST_ACCURACY, accuracy, load_data


def log(*args) -> None:
    if dist.get_rank() == 0:
        print(*args, flush=True)


def train(model, loader, sampler, epochs: int) -> None:
    optimizer = ember.optim.Adam(model.parameters(), lr=2e-3)
    scheduler = ember.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)  # a fresh shuffle, the same on every rank
        model.train()
        totals = ember.zeros(2, dtype=ember.float64)  # loss sum, sample count
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()  # returns with every rank's gradients averaged
            optimizer.step()
            totals += ember.tensor([loss.item() * len(labels), len(labels)], dtype=ember.float64)
        scheduler.step()
        dist.all_reduce(totals)  # the epoch's loss over every rank's samples
        log(f"epoch {epoch + 1:2d}: train loss {(totals[0] / totals[1]).item():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()

    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    x_train, y_train, x_test, y_test = load_data()
    train_set = TensorDataset(x_train, y_train)
    sampler = DistributedSampler(train_set, shuffle=True, seed=0)
    # the quickstart's batch of 64, split among the ranks
    loader = DataLoader(train_set, batch_size=BATCH_SIZE // world, sampler=sampler)

    ember.manual_seed(0)
    model = DistributedDataParallel(digits_cnn(ember))  # every rank starts from rank 0's weights
    ember.manual_seed(1 + rank)  # each rank draws its own dropout masks
    log(f"{world} processes, {len(sampler)} training images each per epoch")
    start = time.perf_counter()
    train(model, loader, sampler, args.epochs)
    seconds = time.perf_counter() - start

    if rank == 0:
        acc = accuracy(model.module, x_test, y_test)
        log(f"test accuracy {acc:.4f} after {args.epochs} epochs in {seconds:.1f} s")
        if args.epochs == EPOCHS:
            assert acc >= MIN_TEST_ACCURACY, f"test accuracy {acc:.4f} < {MIN_TEST_ACCURACY}"
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
