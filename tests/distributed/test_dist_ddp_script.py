"""DistributedDataParallel around an ember.script'ed module: the scripted calls run compiled
(one CompiledFunctionBackward node per call), the bucketed all-reduce averages their gradients,
and 2 ranks on halves of each batch end where one process on the whole batch ends."""

import json
import sys

import ember
import numpy as np
from dist_helpers import WORKERS, launch
from ember.nn import functional as F

sys.path.insert(0, WORKERS)
import ddp_script_worker as worker


def test_ddp_of_a_scripted_module_trains_like_one_process_on_the_whole_batch(tmp_path):
    world = 2
    launch("ddp_script_worker.py", world, tmp_path, timeout=120)
    ember.manual_seed(0)
    model = worker.mlp()
    optimizer = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in worker.batches():
        # each rank's mean loss over its half, averaged by DDP: the mean of the halves' means
        loss = (
            sum(
                F.mse_loss(model(ember.tensor(x[r::world])), ember.tensor(y[r::world]))
                for r in range(world)
            )
            / world
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    want = {k: v.numpy() for k, v in model.state_dict().items()}
    for rank in range(world):
        got = dict(np.load(tmp_path / f"rank{rank}.npz"))
        for key, value in want.items():
            np.testing.assert_allclose(got[key], value, rtol=1e-12, atol=1e-12, err_msg=key)
        facts = json.loads((tmp_path / f"rank{rank}.json").read_text())
        # the first call traces (eager autograd nodes); every later one runs compiled
        assert facts["nodes"][1:] == ["CompiledBackward"] * (worker.STEPS - 1), facts["nodes"]
        assert all(k.startswith("module.") for k in facts["keys"])
        assert facts["graphs"] == 1
