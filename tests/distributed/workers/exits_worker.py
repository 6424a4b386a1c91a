"""Ranks that end early, each in its own way, in the middle of a loop of all_reduce.

    python -m ember.distributed.run --nproc N exits_worker.py how out_dir

Rank 1 ends at step 3 of 10 as `how` says; just before, it writes the time to
out_dir/failed_at, so that a test can time how long the job takes to end after it. A rank that
completes the loop prints "rank R finished". The group's timeout is 60 s: a job that ends
within seconds was ended by the launcher, not by a collective timing out.

how:
  os_exit0, os_exit7      os._exit(0), os._exit(7)
  sys_exit3               sys.exit(3)
  sigkill                 SIGKILL to itself
  raise                   an uncaught ValueError
  sys_exit0               sys.exit(0): a clean end, while the others wait for it in all_reduce
  leave_then_collective   rank 1 leaves (destroy_process_group) and ends; rank 0 then calls
                          one more all_reduce, which cannot finish
  leave_early             rank 1 leaves after the loop and ends; rank 0 goes on for 4 s
                          without collectives, then ends: a clean job
  all_os_exit0            every rank calls os._exit(0) after the loop: a clean job too
  run_long                every rank writes its pid to out_dir/pid{rank}, then runs its loop
                          slowly (3 s a step), to be stopped from outside
  sigterm_ignored         rank 1 calls sys.exit(3), while rank 0, busy outside collectives
                          for 30 s, ignores the SIGTERM that stops the job: the launcher has
                          to kill it
"""

import os
import signal
import sys
import time

import ember
import ember.distributed as dist


def end_early(how: str, out_dir: str) -> None:
    with open(os.path.join(out_dir, "failed_at"), "w") as f:
        f.write(repr(time.time()))
    sys.stdout.flush()
    if how == "os_exit0":
        os._exit(0)
    if how == "os_exit7":
        os._exit(7)
    if how in ("sys_exit3", "sigterm_ignored"):
        sys.exit(3)
    if how == "sys_exit0":
        sys.exit(0)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "raise":
        raise ValueError("rank 1 cannot go on")
    raise SystemExit(f"unknown how: {how}")


def main() -> None:
    how, out_dir = sys.argv[1], sys.argv[2]
    dist.init_process_group("mpi", timeout=60)
    rank = dist.get_rank()
    if how == "sigterm_ignored" and rank == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if how == "run_long":
        with open(os.path.join(out_dir, f"pid{rank}"), "w") as f:
            f.write(str(os.getpid()))
    for step in range(10):
        if how == "run_long":
            time.sleep(3)
        if step == 3 and rank == 1 and how not in ("leave_early", "all_os_exit0", "run_long"):
            if how == "leave_then_collective":
                dist.destroy_process_group()
                with open(os.path.join(out_dir, "failed_at"), "w") as f:
                    f.write(repr(time.time()))
                return
            end_early(how, out_dir)
        if step == 3 and rank == 0 and how == "sigterm_ignored":
            time.sleep(30)
        if step == 3 and rank == 0 and how == "leave_then_collective":
            time.sleep(1.0)  # rank 1 has left by now
            dist.all_reduce(ember.ones(4))
        total = ember.ones(4)
        dist.all_reduce(total)
        assert total.tolist() == [dist.get_world_size()] * 4
    print(f"rank {rank} finished", flush=True)
    if how == "all_os_exit0":
        dist.barrier()
        os._exit(0)
    dist.destroy_process_group()
    if how == "leave_early" and rank == 0:
        time.sleep(4.0)
        print("rank 0 finished its own work", flush=True)


if __name__ == "__main__":
    main()
