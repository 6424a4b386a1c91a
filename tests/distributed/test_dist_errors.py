"""Misuse and failure: clear errors (EmberError subclasses) on every rank, never a hang.

The misuse cases run in one 2-process launch (workers/errors_worker.py); each failing-rank
scenario is a launch of its own, which must end, non-zero, well within its timeout."""

import json
import os
import subprocess
import sys
import time

import ember
import ember.distributed as dist
import pytest
from dist_helpers import WORKERS, launch


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    folder = tmp_path_factory.mktemp("errors")
    launch("errors_worker.py", 2, folder, timeout=120)
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


def error_of(outcome, case: str, rank: int = 0) -> dict:
    result = outcome[rank][case]
    assert result["error"] is not None, f"{case} on rank {rank} raised nothing: {result}"
    assert result["ember"], f"{case}: {result['error']} is not an EmberError"
    return result


# -- before init (in this process: nothing is started) ----------------------------------------


def test_a_collective_before_init_process_group_is_a_clear_error():
    assert not dist.is_initialized()
    # a ValueError, as in PyTorch
    with pytest.raises(ember.EmberValueError, match="Default process group has not been init"):
        dist.all_reduce(ember.ones(2))
    with pytest.raises(ember.EmberError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(ember.EmberError, match="init_process_group"):
        dist.barrier()
    with pytest.raises(ember.EmberError, match="init_process_group"):
        ember.nn.parallel.DistributedDataParallel(ember.nn.Linear(2, 2))


def test_distributed_is_available_with_mpi4py():
    pytest.importorskip("mpi4py")
    assert dist.is_available() and dist.is_mpi_available()


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, kind, words",
    [
        ("world_size_mismatch", "EmberValueError", "launcher started 2 process"),
        ("rank_mismatch", "EmberValueError", "rank=7"),
        ("init_method", "EmberValueError", "MPI launcher"),
        ("unknown_backend", "EmberValueError", "unknown backend 'gloo'"),
        ("init_twice", "EmberValueError", "twice"),
        ("avg_on_integers", "EmberValueError", "ReduceOp.AVG is not defined on integer"),
        ("band_on_floats", "EmberValueError", "ReduceOp.BAND is not defined on floating"),
        ("op_not_a_reduce_op", "EmberTypeError", "op must be a ReduceOp"),
        ("not_a_tensor", "EmberTypeError", "tensor must be an ember Tensor, got list"),
        ("all_gather_list_length", "EmberValueError", "one tensor per rank of the group (2)"),
        ("all_gather_into_tensor_size", "EmberValueError", "expected world size x input numel"),
        ("broadcast_src_outside", "EmberValueError", "global rank 2 is not part of the group"),
        ("read_only_output", "EmberRuntimeError", "read-only"),
        ("leaf_requiring_grad", "EmberRuntimeError", "leaf tensor that requires grad"),
        ("ddp_device_ids_on_cpu", "EmberValueError", "device_ids"),
    ],
)
def test_misuse_raises_a_clear_error_on_every_rank(outcome, case, kind, words):
    for rank in range(2):
        result = error_of(outcome, case, rank)
        assert result["error"] == kind, result
        assert words in result["message"], result["message"]


def test_gather_list_is_for_the_destination_only(outcome):
    # rank 0 (the destination) passed none, rank 1 passed one: both are told before sending
    missing = error_of(outcome, "gather_list_off_destination", rank=0)
    assert "gather_list is required on the destination rank" in missing["message"]
    extra = error_of(outcome, "gather_list_off_destination", rank=1)
    assert "must not be given on non-destination ranks" in extra["message"]


def test_a_leaf_requiring_grad_takes_a_collective_under_no_grad(outcome):
    for rank in range(2):
        assert outcome[rank]["leaf_under_no_grad"] == {"error": None, "value": [2.0, 2.0, 2.0]}


def test_a_collective_moves_the_version_so_backward_through_its_old_value_fails(outcome):
    for rank in range(2):
        result = error_of(outcome, "backward_after_collective_on_saved_tensor", rank)
        assert "modified by an inplace operation" in result["message"]


# -- ranks that disagree -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, rank0, rank1",
    [
        ("shape_mismatch", "all_reduce of 4 float32", "all_reduce of 6 float32"),
        ("dtype_mismatch", "all_reduce of 4 float32", "all_reduce of 4 float64"),
        ("collective_mismatch", "rank 0: all_reduce", "rank 1: broadcast"),
    ],
)
def test_ranks_that_disagree_get_an_error_naming_each_ranks_call(outcome, case, rank0, rank1):
    for rank in range(2):
        result = error_of(outcome, case, rank)
        assert result["error"] == "DistError"
        assert "the ranks do not agree" in result["message"]
        assert rank0 in result["message"] and rank1 in result["message"]


def test_a_receive_that_does_not_match_the_send_is_an_error(outcome):
    larger = error_of(outcome, "recv_larger_than_sent", rank=1)
    assert "rank 0 sent 12 bytes" in larger["message"] and "holds 20" in larger["message"]
    smaller = error_of(outcome, "recv_smaller_than_sent", rank=1)
    assert smaller["error"] == "DistBackendError" and "truncat" in smaller["message"].lower()
    assert outcome[0]["recv_larger_than_sent"]["error"] is None


def test_a_rank_that_does_not_arrive_times_out_and_leaves_the_group_unusable(outcome):
    result = error_of(outcome, "timeout", rank=0)
    assert result["error"] == "DistBackendError"
    assert "did not finish within 1 s" in result["message"]
    assert 1.0 <= outcome[0]["timeout_seconds"] < 1.9  # rank 1 arrived after 2 s
    assert outcome[1]["timeout"]["error"] is None
    after = error_of(outcome, "group_unusable_after_timeout", rank=0)
    assert "unusable" in after["message"]


def test_a_rank_outside_a_group_skips_its_collectives_with_a_warning(outcome):
    member, outsider = outcome[0]["non_member"], outcome[1]["non_member"]
    assert member["value"] == [1.0, 1.0] and member["rank_in_group"] == 0
    assert member["size_of_group"] == 1 and member["global_ranks"] == [0]
    assert outsider["returned"] == "None" and outsider["value"] == [2.0, 2.0]
    assert outsider["rank_in_group"] == -1 and outsider["size_of_group"] == -1
    assert any("does not belong to the given group" in w for w in outsider["warned"])


def test_ddp_refuses_models_that_differ_between_ranks(outcome):
    for rank in range(2):
        result = error_of(outcome, "ddp_different_models", rank)
        assert "DDP expects same model across all ranks" in result["message"]
        assert "weight" in result["message"]


def test_destroy_process_group_uninitializes(outcome):
    for rank in range(2):
        assert "has not been initialized" in error_of(outcome, "after_destroy", rank)["message"]


# -- a failing rank ends the run ---------------------------------------------------------------


def _run_failing(how: str, timeout_arg: float, launcher: bool = False):
    start = time.monotonic()
    result = launch(
        "failing_worker.py", 2, how, timeout_arg, timeout=60, check=False, launcher=launcher
    )
    return result, time.monotonic() - start


def test_a_rank_that_raises_ends_every_rank_with_its_error():
    result, seconds = _run_failing("raise", 60)
    assert result.returncode != 0
    assert "rank 1 (of 2) failed with ValueError: rank 1 cannot go on" in result.stderr
    assert "Traceback" in result.stderr
    assert "finished" not in result.stdout
    assert seconds < 20  # far below the group's 60 s timeout: the job was aborted


def test_under_plain_mpiexec_a_rank_that_exits_leaves_the_others_to_time_out_clearly():
    # nothing watches the ranks: rank 1 waits in MPI's finalize, rank 0 in DDP's all_reduce
    # until the group's timeout (the launcher ends such a job within seconds: below)
    result, seconds = _run_failing("exit", 3)
    assert result.returncode != 0
    assert "rank 0 (of 2) failed with DistBackendError" in result.stderr
    assert "did not finish within 3 s" in result.stderr
    assert seconds < 30


def test_a_killed_rank_ends_the_run():
    result, seconds = _run_failing("kill", 60)
    assert result.returncode != 0
    assert "finished" not in result.stdout
    assert seconds < 20


def test_under_the_launcher_a_rank_that_leaves_ddp_fails_the_others_within_seconds():
    # rank 1 ends its script cleanly at step 3; rank 0 waits for its gradients in DDP's
    # bucket all_reduce (started from an autograd hook) and fails, naming it, long before
    # the group's 60 s timeout
    result, seconds = _run_failing("exit", 60, launcher=True)
    assert result.returncode == 1
    assert (
        "all_reduce on rank 0 (of 2) cannot finish: rank 1 has left the process group (its "
        "script ended with exit code 0) while this rank waited for it" in result.stderr
    )
    assert "finished" not in result.stdout
    assert seconds < 30


def test_under_the_launcher_a_killed_rank_is_named():
    result, seconds = _run_failing("kill", 60, launcher=True)
    assert result.returncode == 128 + 9
    assert "ember.distributed.run: rank 1 (of 2, pid " in result.stderr
    assert "was killed by signal SIGKILL; stopped rank 0" in result.stderr
    assert "finished" not in result.stdout
    assert seconds < 30


def test_a_script_started_by_torchrun_style_variables_without_mpi_is_told_how_to_start(tmp_path):
    pytest.importorskip("mpi4py")
    result = subprocess.run(
        [sys.executable, os.path.join(WORKERS, "hello_worker.py"), str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, WORLD_SIZE="2"),
    )
    assert result.returncode != 0
    assert "WORLD_SIZE=2 is set but MPI started this process alone" in result.stderr
    assert "python -m ember.distributed.run --nproc 2" in result.stderr
