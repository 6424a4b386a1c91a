"""DistributedDataParallel in 2 and 3 processes, each rank on its share of every batch, against
one process on the whole batches: same parameters after 20 SGD-with-momentum steps (float64,
tight tolerance), gradient accumulation with no_sync, unused parameters, BatchNorm buffers,
checkpoints. One MPI launch per world size runs every scenario (workers/ddp_worker.py)."""

import json
import os
import sys

import ember
import numpy as np
import pytest
from dist_helpers import WORKERS, launch
from ember.nn import functional as F

sys.path.insert(0, WORKERS)
import ddp_worker

RTOL = 1e-10


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """world size -> (per-rank arrays, per-rank facts, output folder)."""
    cache = {}

    def get(world: int):
        if world not in cache:
            folder = tmp_path_factory.mktemp(f"ddp{world}")
            launch("ddp_worker.py", world, folder, timeout=120)
            arrays = [dict(np.load(folder / f"rank{r}.npz")) for r in range(world)]
            facts = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(world)]
            cache[world] = arrays, facts, folder
        return cache[world]

    return get


def load(model, arrays: dict, prefix: str):
    state = {
        k[len(prefix) + 1 :]: ember.tensor(v)
        for k, v in arrays.items()
        if k.startswith(prefix + "/")
    }
    model.load_state_dict(state)
    return model


def assert_state(arrays: dict, prefix: str, model, rtol=RTOL) -> None:
    state = model.state_dict()
    for name, t in state.items():
        np.testing.assert_allclose(arrays[f"{prefix}/{name}"], t.numpy(), rtol=rtol, atol=1e-12)


def test_construction_broadcasts_rank_0s_parameters(trained):
    arrays, _, _ = trained(2)
    before0 = {k: v for k, v in arrays[0].items() if k.startswith("mlp/before/")}
    assert before0
    for name, value in before0.items():
        init = name.replace("/before/", "/init/")
        # rank 1 started elsewhere and now holds exactly rank 0's values
        assert not np.array_equal(arrays[1][name], value)
        np.testing.assert_array_equal(arrays[1][init], value)
        np.testing.assert_array_equal(arrays[0][init], value)


def reference_mlp(arrays: dict, name: str):
    """One process, whole batches: what every rank's model must end as."""
    model = load(ddp_worker.mlp(), arrays, f"{name}/init")
    optimizer = ddp_worker.sgd(model)
    for step in range(ddp_worker.STEPS):
        x, y = ember.tensor(arrays[f"{name}/x{step}"]), ember.tensor(arrays[f"{name}/y{step}"])
        loss = F.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("name", ["mlp", "buckets"])
def test_ddp_mlp_matches_one_process_on_the_whole_batch(trained, world, name):
    arrays, _, _ = trained(world)
    reference = reference_mlp(arrays[0], name)
    for r in range(world):
        assert_state(arrays[r], f"{name}/final", reference)


def test_gradients_are_reduced_in_reverse_buckets_while_backward_runs(trained):
    _, facts, _ = trained(2)
    # the default 25 MiB cap holds this small model in one bucket; a tiny cap gives one bucket
    # per parameter, last registered first
    assert facts[0]["mlp/buckets"] == [[5, 4, 3, 2, 1, 0]]
    assert facts[0]["buckets/buckets"] == [[5], [4], [3], [2], [1], [0]]
    # when the first layer's weight got its gradient, the later layers' buckets were already
    # being reduced
    launched = facts[0]["buckets/launched_before_last_grad"]
    assert len(launched) == ddp_worker.STEPS and all(n >= 2 for n in launched)


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_batchnorm_cnn_matches_per_rank_statistics_emulated_in_one_process(trained, world):
    """Each rank's BatchNorm normalizes with its own share's statistics (as in PyTorch), and
    rank 0's running statistics are broadcast before each forward. One process emulates it:
    every share through the same model, the buffers as rank 0 leaves them, the mean loss."""
    arrays, _, _ = trained(world)
    a = arrays[0]
    model = load(ddp_worker.bn_cnn(), a, "bn/init")
    optimizer = ddp_worker.sgd(model)
    n = ddp_worker.BATCH // world
    for step in range(ddp_worker.STEPS):
        x, y = a[f"bn/x{step}"], a[f"bn/y{step}"]
        start = {k: v.clone() for k, v in model.named_buffers()}
        losses = []
        for r in reversed(range(world)):  # rank 0 last: its buffer update is the one kept
            with ember.no_grad():
                for k, v in model.named_buffers():
                    v.copy_(start[k])
            logits = model(ember.tensor(x[r * n : (r + 1) * n]))
            losses.append(F.cross_entropy(logits, ember.tensor(y[r * n : (r + 1) * n])))
        loss = sum(losses) / world
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert_state(arrays[0], "bn/final", model)
    params = {k for k, _ in model.named_parameters()}
    for r in range(1, world):
        for k in params:
            np.testing.assert_allclose(
                arrays[r][f"bn/final/{k}"], a[f"bn/final/{k}"], rtol=RTOL, atol=1e-12
            )


@pytest.mark.parametrize("world", [2, 3])
def test_no_sync_accumulation_equals_the_large_batch(trained, world):
    arrays, facts, _ = trained(world)
    a = arrays[0]
    model = load(ddp_worker.mlp(), a, "accumulate/init")
    optimizer = ddp_worker.sgd(model)
    for step in range(5):
        x = np.concatenate([a[f"accumulate/x{step}.{m}"] for m in range(3)])
        y = np.concatenate([a[f"accumulate/y{step}.{m}"] for m in range(3)])
        loss = F.mse_loss(model(ember.tensor(x)), ember.tensor(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for r in range(world):
        assert_state(arrays[r], "accumulate/final", model)
    # inside no_sync nothing was exchanged: each rank's accumulating gradient is its own
    norms = [facts[r]["accumulate/local_grad_norms"] for r in range(world)]
    assert all(norms[0][i] != norms[1][i] for i in range(len(norms[0])))


def test_unused_parameters_are_found_and_keep_no_gradient(trained):
    world = 2
    arrays, facts, _ = trained(world)
    n = ddp_worker.BATCH // world
    model = load(ddp_worker.two_heads(), arrays[0], "unused/init")
    names = [k for k, _ in model.named_parameters()]
    for step in range(2):
        x = arrays[0][f"unused/x{step}"]
        grads = []
        for r in range(world):
            model.zero_grad(set_to_none=True)
            use_b = step == 1 and r == 0
            model(ember.tensor(x[r * n : (r + 1) * n]), use_b).sum().backward()
            grads.append(
                {
                    k: None if p.grad is None else p.grad.numpy().copy()
                    for k, p in model.named_parameters()
                }
            )
        for k in names:
            used = [g[k] for g in grads if g[k] is not None]
            for r in range(world):
                if not used:  # unused on every rank: .grad stays None everywhere
                    assert facts[r][f"unused/{step}/{k}/has_grad"] is False
                    continue
                # used somewhere: the average, counting the ranks that did not use it as zero
                expected = sum(used) / world
                np.testing.assert_allclose(arrays[r][f"unused/{step}/{k}"], expected, rtol=RTOL)
    assert facts[0]["unused/0/head_b.weight/has_grad"] is False
    assert facts[1]["unused/1/head_b.weight/has_grad"] is True  # rank 1 did not use it


def test_an_unused_parameter_without_find_unused_parameters_stops_the_next_iteration(trained):
    _, facts, _ = trained(2)
    for r in range(2):
        message = facts[r]["unused/strict_error"]
        assert "Expected to have finished reduction in the prior iteration" in message
        assert "find_unused_parameters=True" in message
        assert "head_b.weight" in message and "head_b.bias" in message
        assert "head_a.weight" not in message


def test_broadcast_buffers_gives_every_rank_rank_0s_buffers_before_forward(trained):
    _, facts, _ = trained(3)
    for r in range(3):
        assert facts[r]["buffers/True"] == [1.0] * 4
        assert facts[r]["buffers/False"] == [float(r + 1)] * 4


def test_checkpoint_saved_on_rank_0_loads_into_a_single_process_model(trained):
    arrays, facts, folder = trained(2)
    assert facts[0]["state_dict_keys"][:2] == ["module.0.weight", "module.0.bias"]
    assert all(k.startswith("module.") for k in facts[1]["state_dict_keys"])
    model = ddp_worker.mlp()
    model.load_state_dict(ember.load(os.path.join(folder, "checkpoint.safetensors")))
    for name, t in model.state_dict().items():
        np.testing.assert_array_equal(t.numpy(), arrays[1][f"mlp/final/{name}"])
