"""Collectives inside ember.script: recorded as graph ops in call order, run by the compiled
program, and interoperating with ranks that run the same code eagerly."""

import json
import sys

import ember
import numpy as np
import pytest
from dist_helpers import WORKERS, launch
from ember.ir.schema import SCHEMAS
from ember.nn import functional as F

sys.path.insert(0, WORKERS)
import script_worker


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    results = {}
    for world in (2, 3):
        folder = tmp_path_factory.mktemp(f"script{world}")
        launch("script_worker.py", world, folder, timeout=120)
        arrays = [dict(np.load(folder / f"rank{r}.npz")) for r in range(world)]
        facts = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(world)]
        results[world] = arrays, facts
    return results


def test_collective_ops_are_side_effects_outside_autograd():
    for op in ("dist_all_reduce", "dist_broadcast", "dist_all_gather", "dist_reduce_scatter"):
        assert SCHEMAS[op].side_effects and not SCHEMAS[op].pure
        assert not SCHEMAS[op].differentiable


@pytest.mark.parametrize("world", [2, 3])
def test_a_scripted_data_parallel_step_matches_one_process_on_the_whole_batch(outcome, world):
    arrays, facts = outcome[world]
    a = arrays[0]
    model = script_worker.mlp()
    model.load_state_dict({k[5:]: ember.tensor(v) for k, v in a.items() if k.startswith("init/")})
    optimizer = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for i in range(script_worker.STEPS):
        loss = F.mse_loss(model(ember.tensor(a[f"x{i}"])), ember.tensor(a[f"y{i}"]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for r in range(world):
        for k, v in model.state_dict().items():
            np.testing.assert_allclose(arrays[r][f"final/{k}"], v.numpy(), rtol=1e-10)
    # one all-reduce per parameter, in the graph the compiled program ran
    assert facts[0]["step_graph"].count("dist_all_reduce(") == 4
    assert 'op="AVG"' in facts[0]["step_graph"]


@pytest.mark.parametrize("world", [2, 3])
def test_scripted_collectives_meet_eager_ones_on_the_other_ranks(outcome, world):
    _, facts = outcome[world]
    graph = facts[0]["collectives_graph"]
    counts = {"dist_all_gather": 2, "dist_all_reduce": 1, "dist_reduce_scatter": 2}
    for op, n in {**counts, "dist_broadcast": 2}.items():
        assert graph.count(f"{op}(") == n, op
    for r in range(world):
        for call, got in enumerate(facts[r]["collectives"]):
            xs = [np.array([s, 10.0 * call, -1.0]) for s in range(world)]
            gathered, total, part, copy, flat, summed, first = got
            assert gathered == np.stack([2 * x for x in xs]).tolist()
            assert total == np.max([x + 1 for x in xs], axis=0).tolist()
            assert part == pytest.approx(np.mean(xs, axis=0).tolist())
            assert copy == xs[-1].tolist()
            assert flat == np.concatenate(xs).tolist()
            assert summed == np.sum(xs, axis=0).tolist()
            assert first == xs[0].tolist()


@pytest.mark.parametrize("world", [2, 3])
def test_collectives_that_cannot_be_recorded_run_eagerly_and_say_why(outcome, world):
    _, facts = outcome[world]
    for r in range(world):
        warnings = facts[r]["warnings"]
        assert any("a collective (all_to_all_single) runs outside the graph" in w for w in warnings)
        assert any(
            "a collective (all_reduce) on a tensor that requires grad" in w for w in warnings
        )
        assert facts[r]["all_to_all_values"] == [float(s) for s in range(world) for _ in range(2)]
        assert facts[r]["needs_grad_values"] == [2.0 * world] * 2
