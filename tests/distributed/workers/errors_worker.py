"""Runs the misuse cases of ember.distributed in every rank and records what each raised.

    mpiexec -n 2 python errors_worker.py out_dir

Writes out_dir/rank{r}.json: {case: {"error": type name, "message": ..., ...}}. Cases where
the ranks disagree run on a group of their own (new_group), since a failed collective leaves
its group unusable.
"""

import json
import sys
import time
import warnings

import ember
import ember.distributed as dist
from ember import nn


def attempt(results: dict, name: str, fn) -> None:
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001  (the test checks which error, and its message)
        results[name] = {"error": type(exc).__name__, "message": str(exc)}
        results[name]["ember"] = isinstance(exc, ember.EmberError)
    else:
        results[name] = {"error": None, "value": value}


def main() -> None:
    out_dir = sys.argv[1]
    results: dict = {}
    attempt(results, "world_size_mismatch", lambda: dist.init_process_group("mpi", world_size=5))
    attempt(results, "rank_mismatch", lambda: dist.init_process_group("mpi", rank=7))
    attempt(
        results,
        "init_method",
        lambda: dist.init_process_group("mpi", init_method="tcp://10.0.0.1:23456"),
    )
    attempt(results, "unknown_backend", lambda: dist.init_process_group("gloo"))
    dist.init_process_group("mpi", timeout=30)
    rank, size = dist.get_rank(), dist.get_world_size()
    attempt(results, "init_twice", lambda: dist.init_process_group("mpi"))

    # arguments the collective refuses before anything is sent (every rank alike)
    attempt(
        results,
        "avg_on_integers",
        lambda: dist.all_reduce(ember.ones(3, dtype=ember.int64), op=dist.ReduceOp.AVG),
    )
    attempt(
        results, "band_on_floats", lambda: dist.all_reduce(ember.ones(3), op=dist.ReduceOp.BAND)
    )
    attempt(results, "op_not_a_reduce_op", lambda: dist.all_reduce(ember.ones(3), op="sum"))
    attempt(results, "not_a_tensor", lambda: dist.all_reduce([1.0, 2.0]))
    attempt(
        results,
        "all_gather_list_length",
        lambda: dist.all_gather([ember.zeros(3)], ember.ones(3)),
    )
    attempt(
        results,
        "all_gather_into_tensor_size",
        lambda: dist.all_gather_into_tensor(ember.zeros(5), ember.ones(3)),
    )
    attempt(
        results,
        "gather_list_off_destination",
        lambda: dist.gather(ember.ones(2), [ember.zeros(2)] * size if rank else None, dst=0),
    )
    attempt(results, "broadcast_src_outside", lambda: dist.broadcast(ember.ones(2), src=size))
    attempt(results, "read_only_output", lambda: dist.all_reduce(ember.ones(1).expand(3)))

    # autograd: a collective writes in place
    leaf = ember.ones(3, requires_grad=True)
    attempt(results, "leaf_requiring_grad", lambda: dist.all_reduce(leaf))

    def under_no_grad():
        with ember.no_grad():
            dist.all_reduce(leaf)
        return leaf.detach().tolist()

    attempt(results, "leaf_under_no_grad", under_no_grad)

    def saved_tensor_modified():
        x = ember.ones(3, requires_grad=True)
        y = x * 2
        z = (y * y).sum()  # saves y for backward
        dist.all_reduce(y)
        z.backward()

    attempt(results, "backward_after_collective_on_saved_tensor", saved_tensor_modified)

    # the ranks disagree: every rank gets an error naming what each rank passed
    def disagree(make):
        group = dist.new_group()
        tensor, kind = make()
        if kind == "broadcast":
            dist.broadcast(tensor, src=0, group=group)
        else:
            dist.all_reduce(tensor, group=group)

    attempt(
        results,
        "shape_mismatch",
        lambda: disagree(lambda: (ember.ones(4 if rank == 0 else 6), "all_reduce")),
    )
    attempt(
        results,
        "dtype_mismatch",
        lambda: disagree(
            lambda: (
                ember.ones(4, dtype=ember.float32 if rank == 0 else ember.float64),
                "all_reduce",
            )
        ),
    )
    attempt(
        results,
        "collective_mismatch",
        lambda: disagree(lambda: (ember.ones(4), "all_reduce" if rank == 0 else "broadcast")),
    )

    # point to point: a receive that does not match the send
    def recv_mismatch(n_recv):
        group = dist.new_group()
        if rank == 0:
            dist.send(ember.ones(3), dst=1, group=group)
        elif rank == 1:
            dist.recv(ember.zeros(n_recv), src=0, group=group)

    attempt(results, "recv_larger_than_sent", lambda: recv_mismatch(5))
    attempt(results, "recv_smaller_than_sent", lambda: recv_mismatch(2))

    # a rank that does not arrive: the others time out instead of waiting for ever
    slow = dist.new_group(timeout=1.0)

    def late_rank():
        t = ember.ones(2)
        if rank == 0:
            start = time.monotonic()
            try:
                dist.all_reduce(t, group=slow)
            finally:
                results["timeout_seconds"] = time.monotonic() - start
        else:
            time.sleep(2.0)  # arrives after rank 0 gave up, so the collective can finish
            dist.all_reduce(t, group=slow)

    attempt(results, "timeout", late_rank)
    attempt(
        results,
        "group_unusable_after_timeout",
        lambda: dist.all_reduce(ember.ones(2), group=slow) if rank == 0 else None,
    )

    # groups: members and non-members
    only_zero = dist.new_group([0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = ember.full((2,), float(rank + 1))
        returned = dist.all_reduce(t, group=only_zero)
    results["non_member"] = {
        "returned": repr(returned),
        "value": t.tolist(),
        "warned": [str(w.message) for w in caught],
        "rank_in_group": dist.get_rank(only_zero),
        "size_of_group": dist.get_world_size(only_zero),
        "global_ranks": dist.get_process_group_ranks(only_zero) if rank == 0 else None,
    }

    # DDP: the model must be the same everywhere
    def different_models():
        model = nn.Linear(3, 2 + rank)
        nn.parallel.DistributedDataParallel(model)

    attempt(results, "ddp_different_models", different_models)

    def bad_device_ids():
        nn.parallel.DistributedDataParallel(nn.Linear(3, 2), device_ids=[0])

    attempt(results, "ddp_device_ids_on_cpu", bad_device_ids)

    dist.barrier()
    dist.destroy_process_group()
    attempt(results, "after_destroy", lambda: dist.all_reduce(ember.ones(2)))
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
