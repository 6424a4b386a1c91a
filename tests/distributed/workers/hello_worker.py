"""Joins the process group and writes rank, world size and its arguments to out_dir.

python -m ember.distributed.run --nproc N hello_worker.py out_dir args...
"""

import json
import os
import sys

import ember
import ember.distributed as dist


def main() -> None:
    out_dir = sys.argv[1]
    dist.init_process_group()
    rank, size = dist.get_rank(), dist.get_world_size()
    total = ember.tensor([rank + 1.0])
    dist.all_reduce(total)
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(
            {
                "rank": rank,
                "size": size,
                "args": sys.argv[2:],
                "sum": total.item(),
                "threads": os.environ.get("OMP_NUM_THREADS"),
            },
            f,
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
