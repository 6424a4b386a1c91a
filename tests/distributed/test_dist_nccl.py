"""The NCCL backend (cupy) on CUDA tensors: the collective cases of test_dist_collectives that
NCCL supports, one rank per GPU (up to 2). Marked `cuda`: skipped on machines without a GPU,
so these have not run where ember was written."""

import json

import numpy as np
import pytest
import test_dist_collectives as spec
from dist_helpers import launch

# NCCL has no int16, no bitwise reductions, no logical xor, and no receive from any rank
CASES = [
    c
    for c in spec.CASES
    if c["dtype"] != "int16"
    and c.get("op") not in ("BAND", "BOR", "BXOR")
    and not c.get("any_source")
]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    import ember

    world = min(2, ember.cuda.device_count())
    cases = [c for c in CASES if world > 1 or c["kind"] != "send_recv"]
    folder = tmp_path_factory.mktemp("nccl")
    (folder / "cases.json").write_text(json.dumps(cases))
    launch("collectives_worker.py", world, folder / "cases.json", folder, "cuda", timeout=300)
    arrays = [dict(np.load(folder / f"rank{r}.npz")) for r in range(world)]
    return world, cases, arrays


@pytest.mark.cuda
def test_nccl_collectives_match_numpy(outcome):
    world, cases, arrays = outcome
    assert any(c["kind"] == "all_to_all_single" for c in cases)
    for index, case in enumerate(cases):
        for rank, wanted in enumerate(spec.expected_outputs(case, arrays, world, index)):
            got = {
                k.split("/", 1)[1]: v for k, v in arrays[rank].items() if k.startswith(f"{index}/")
            }
            assert {k for k in got if k.startswith("out")} == set(wanted), (case, rank)
            for name, expected in wanted.items():
                spec.assert_equal(got[name], expected)
