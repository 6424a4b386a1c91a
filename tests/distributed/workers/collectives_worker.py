"""Runs the collective cases listed in a JSON file on every rank; saves inputs and outputs.

    mpiexec -n N python collectives_worker.py cases.json out_dir [cuda]

Each rank writes out_dir/rank{r}.npz (case i's arrays as "i/in", "i/out", "i/out.k") and
out_dir/rank{r}.json (per case: version counter moves, contiguity, senders, errors). The test
that listed the cases computes what each output must be from the saved inputs. With `cuda`,
the tensors live on the rank's GPU and the NCCL backend moves them.
"""

import json
import sys

import ember
import ember.distributed as dist
import numpy as np

SHAPE = (3, 4)
DEVICE = "cpu"


def values(dtype: str, shape, rank: int, index: int) -> np.ndarray:
    rng = np.random.default_rng([index, rank])
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("float"):
        # small magnitudes: products and float16 sums stay well inside float16's range
        return rng.uniform(0.5, 1.5, size=shape).astype(dtype)
    return rng.integers(1, 4, size=shape).astype(dtype)


def tensor(array: np.ndarray, layout: str):
    """A tensor with array's values: contiguous, or a transposed (non-contiguous) view."""
    if layout == "contiguous" or array.ndim < 2:
        return ember.tensor(array, device=DEVICE)
    t = ember.tensor(np.ascontiguousarray(array.T), device=DEVICE).t()
    assert not t.is_contiguous()
    return t


def empty(shape, dtype: str, layout: str):
    return tensor(np.zeros(shape, dtype=dtype), layout)


def run_case(case: dict, index: int, rank: int, size: int, saved: dict, report: dict):
    kind, dtype, layout = case["kind"], case["dtype"], case.get("layout", "contiguous")
    op = getattr(dist.ReduceOp, case.get("op", "SUM"))
    last = size - 1

    def keep(name, t):
        saved[f"{index}/{name}"] = np.array(t.cpu().numpy() if isinstance(t, ember.Tensor) else t)

    if kind == "all_reduce":
        x = values(dtype, SHAPE, rank, index)
        t = tensor(x, layout)
        before = t._version[0]
        report["contiguous"] = t.is_contiguous()
        if case.get("async"):
            work = dist.all_reduce(t, op=op, async_op=True)
            report["work_type"] = type(work).__name__
            report["wait"] = work.wait()
            report["completed"] = work.is_completed()
            report["result_is_tensor"] = work.result()[0] is t
        else:
            report["returned"] = repr(dist.all_reduce(t, op=op))
        report["version_moved"] = t._version[0] - before
        keep("in", x)
        keep("out", t)
    elif kind == "broadcast":
        x = values(dtype, SHAPE, rank, index)
        t = tensor(x, layout)
        dist.broadcast(t, src=last)
        keep("in", x)
        keep("out", t)
    elif kind == "reduce":
        x = values(dtype, SHAPE, rank, index)
        t = tensor(x, layout)
        dist.reduce(t, dst=min(1, last), op=op)
        keep("in", x)
        keep("out", t)
    elif kind == "all_gather":
        x = values(dtype, SHAPE, rank, index)
        outs = [empty(SHAPE, dtype, layout) for _ in range(size)]
        dist.all_gather(outs, tensor(x, layout))
        keep("in", x)
        for k, o in enumerate(outs):
            keep(f"out.{k}", o)
    elif kind == "all_gather_into_tensor":
        x = values(dtype, SHAPE, rank, index)
        stacked = case.get("stacked", False)
        shape = (size, *SHAPE) if stacked else (size * SHAPE[0], SHAPE[1])
        out = empty(shape, dtype, "contiguous" if stacked else layout)
        dist.all_gather_into_tensor(out, tensor(x, layout))
        keep("in", x)
        keep("out", out)
    elif kind == "reduce_scatter_tensor":
        x = values(dtype, (size * SHAPE[0], SHAPE[1]), rank, index)
        out = empty(SHAPE, dtype, layout)
        dist.reduce_scatter_tensor(out, tensor(x, layout), op=op)
        keep("in", x)
        keep("out", out)
    elif kind == "reduce_scatter":
        xs = [values(dtype, SHAPE, rank, index * 100 + k) for k in range(size)]
        out = empty(SHAPE, dtype, layout)
        dist.reduce_scatter(out, [tensor(x, layout) for x in xs], op=op)
        keep("in", np.stack(xs))
        keep("out", out)
    elif kind == "gather":
        x = values(dtype, SHAPE, rank, index)
        outs = [empty(SHAPE, dtype, layout) for _ in range(size)] if rank == 0 else None
        dist.gather(tensor(x, layout), outs, dst=0)
        keep("in", x)
        for k, o in enumerate(outs or []):
            keep(f"out.{k}", o)
    elif kind == "scatter":
        xs = [values(dtype, SHAPE, rank, index * 100 + k) for k in range(size)]
        out = empty(SHAPE, dtype, layout)
        dist.scatter(out, [tensor(x, layout) for x in xs] if rank == last else None, src=last)
        keep("in", np.stack(xs))
        keep("out", out)
    elif kind == "all_to_all_single":
        if case.get("uneven"):
            # rank r sends r + j + 1 rows to rank j
            send_rows = [rank + j + 1 for j in range(size)]
            recv_rows = [j + rank + 1 for j in range(size)]
        else:
            send_rows = recv_rows = [2] * size
        x = values(dtype, (sum(send_rows), 3), rank, index)
        out = empty((sum(recv_rows), 3), dtype, layout)
        splits = (recv_rows, send_rows) if case.get("uneven") else (None, None)
        dist.all_to_all_single(out, tensor(x, layout), *splits)
        keep("in", x)
        keep("out", out)
        report["send_rows"] = send_rows
    elif kind == "all_to_all":
        xs = [values(dtype, (j + 1, 2), rank, index * 100 + j) for j in range(size)]
        outs = [empty((rank + 1, 2), dtype, "contiguous") for _ in range(size)]
        dist.all_to_all(outs, [ember.tensor(x, device=DEVICE) for x in xs])
        for j, x in enumerate(xs):
            keep(f"in.{j}", x)
        for j, o in enumerate(outs):
            keep(f"out.{j}", o)
    elif kind == "send_recv":
        # a ring: each rank sends to the next, receives from the previous (or from anyone)
        x = values(dtype, SHAPE, rank, index)
        out = empty(SHAPE, dtype, layout)
        work = dist.isend(tensor(x, layout), dst=(rank + 1) % size)
        src = None if case.get("any_source") else (rank - 1) % size
        report["sender"] = dist.recv(out, src=src)
        work.wait()
        keep("in", x)
        keep("out", out)
    else:
        raise ValueError(f"unknown case kind {kind}")


def main() -> None:
    global DEVICE
    cases_path, out_dir = sys.argv[1], sys.argv[2]
    with open(cases_path) as f:
        cases = json.load(f)
    cuda = sys.argv[3:] == ["cuda"]
    dist.init_process_group("nccl" if cuda else "mpi")
    rank, size = dist.get_rank(), dist.get_world_size()
    if cuda:
        DEVICE = f"cuda:{rank % ember.cuda.device_count()}"
    saved, reports = {}, []
    for index, case in enumerate(cases):
        report = {}
        run_case(case, index, rank, size, saved, report)
        reports.append(report)
    dist.barrier()
    dist.destroy_process_group()
    np.savez(f"{out_dir}/rank{rank}.npz", **saved)
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(reports, f)


if __name__ == "__main__":
    main()
