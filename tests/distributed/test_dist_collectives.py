"""Every collective, in 2 and 3 processes, against numpy: each dtype, contiguous and
non-contiguous tensors, every reduction. The cases below run in one MPI launch per world size
(workers/collectives_worker.py); each test checks one case's outputs on every rank."""

import json

import numpy as np
import pytest
from dist_helpers import launch

DTYPES = ["float32", "float64", "int32", "int64", "float16", "uint8", "bool"]
LAYOUTS = ["contiguous", "strided"]


def reductions(dtype: str) -> list[str]:
    if dtype == "bool":
        return ["SUM", "PRODUCT", "MIN", "MAX", "BXOR"]
    if dtype.startswith("float"):
        return ["SUM", "AVG", "PRODUCT", "MIN", "MAX"]
    return ["SUM", "PRODUCT", "MIN", "MAX", "BAND", "BOR", "BXOR"]


def _cases() -> list[dict]:
    cases = []
    for dtype in [*DTYPES, "int8", "int16"]:
        for op in reductions(dtype):
            for layout in LAYOUTS:
                cases.append({"kind": "all_reduce", "dtype": dtype, "op": op, "layout": layout})
    for dtype in DTYPES:
        for layout in LAYOUTS:
            common = {"dtype": dtype, "layout": layout}
            cases += [
                {"kind": "broadcast", **common},
                {"kind": "reduce", "op": "SUM", **common},
                {"kind": "reduce", "op": "MAX", **common},
                {"kind": "all_gather", **common},
                {"kind": "all_gather_into_tensor", **common},
                {"kind": "reduce_scatter_tensor", "op": "SUM", **common},
                {"kind": "gather", **common},
                {"kind": "scatter", **common},
                {"kind": "all_to_all_single", **common},
                {"kind": "all_to_all_single", "uneven": True, **common},
                {"kind": "send_recv", **common},
            ]
        cases += [
            {"kind": "all_gather_into_tensor", "dtype": dtype, "stacked": True},
            {"kind": "reduce_scatter", "dtype": dtype, "op": "MAX"},
            {"kind": "all_to_all", "dtype": dtype},
            {"kind": "send_recv", "dtype": dtype, "any_source": True},
        ]
        if dtype.startswith("float"):
            cases.append({"kind": "reduce_scatter_tensor", "dtype": dtype, "op": "AVG"})
    for layout in LAYOUTS:
        cases.append(
            {"kind": "all_reduce", "dtype": "float32", "op": "SUM", "layout": layout, "async": 1}
        )
    return cases


CASES = _cases()


def _id(case: dict) -> str:
    return "-".join(str(v) if k != "async" else "async" for k, v in case.items() if k != "kind")


@pytest.fixture(scope="session")
def outcomes(tmp_path_factory):
    """world size -> (per-rank arrays, per-rank reports), from one launch each."""
    cache = {}

    def get(world: int):
        if world not in cache:
            folder = tmp_path_factory.mktemp(f"collectives{world}")
            cases = folder / "cases.json"
            cases.write_text(json.dumps(CASES))
            launch("collectives_worker.py", world, cases, folder, timeout=120)
            arrays = [dict(np.load(folder / f"rank{r}.npz")) for r in range(world)]
            reports = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(world)]
            cache[world] = arrays, reports
        return cache[world]

    return get


def combine(op: str, stack: np.ndarray) -> np.ndarray:
    """What reducing the ranks' arrays (stacked on axis 0) with op gives."""
    dtype = stack.dtype
    if dtype == np.bool_:
        table = {"SUM": np.any, "MAX": np.any, "PRODUCT": np.all, "MIN": np.all}
        if op == "BXOR":
            return np.logical_xor.reduce(stack, axis=0)
        return table[op](stack, axis=0)
    if op == "AVG":
        return (stack.astype(np.float64).mean(axis=0)).astype(dtype)
    table = {
        "SUM": lambda s: s.sum(axis=0, dtype=dtype),
        "PRODUCT": lambda s: s.prod(axis=0, dtype=dtype),
        "MIN": lambda s: s.min(axis=0),
        "MAX": lambda s: s.max(axis=0),
        "BAND": lambda s: np.bitwise_and.reduce(s, axis=0),
        "BOR": lambda s: np.bitwise_or.reduce(s, axis=0),
        "BXOR": lambda s: np.bitwise_xor.reduce(s, axis=0),
    }
    return table[op](stack).astype(dtype)


def assert_equal(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if actual.dtype.kind == "f":
        rtol = {np.float16: 1e-2, np.float32: 1e-6, np.float64: 1e-12}[actual.dtype.type]
        np.testing.assert_allclose(actual, expected, rtol=rtol)
    else:
        np.testing.assert_array_equal(actual, expected)


def expected_outputs(case: dict, inputs: list[dict], world: int, i: int) -> list[dict]:
    """For each rank, its output arrays by name, from every rank's inputs."""
    kind, last = case["kind"], world - 1

    def inp(r, name="in"):
        return inputs[r][f"{i}/{name}"]

    if kind == "all_reduce":
        total = combine(case["op"], np.stack([inp(r) for r in range(world)]))
        return [{"out": total} for _ in range(world)]
    if kind == "broadcast":
        return [{"out": inp(last)} for _ in range(world)]
    if kind == "reduce":
        dst = min(1, last)
        total = combine(case["op"], np.stack([inp(r) for r in range(world)]))
        return [{"out": total if r == dst else inp(r)} for r in range(world)]
    if kind == "all_gather":
        return [{f"out.{k}": inp(k) for k in range(world)} for _ in range(world)]
    if kind == "all_gather_into_tensor":
        stacked = np.stack([inp(r) for r in range(world)])
        out = stacked if case.get("stacked") else stacked.reshape(-1, stacked.shape[-1])
        return [{"out": out} for _ in range(world)]
    if kind == "reduce_scatter_tensor":
        total = combine(case["op"], np.stack([inp(r) for r in range(world)]))
        chunks = np.split(total, world)
        return [{"out": chunks[r]} for r in range(world)]
    if kind == "reduce_scatter":
        return [
            {"out": combine(case["op"], np.stack([inp(s)[r] for s in range(world)]))}
            for r in range(world)
        ]
    if kind == "gather":
        return [{f"out.{k}": inp(k) for k in range(world)}] + [{} for _ in range(last)]
    if kind == "scatter":
        return [{"out": inp(last)[r]} for r in range(world)]
    if kind == "all_to_all_single":
        outs = []
        for r in range(world):
            pieces = []
            for s in range(world):
                rows = [s + j + 1 for j in range(world)] if case.get("uneven") else [2] * world
                start = sum(rows[:r])
                pieces.append(inp(s)[start : start + rows[r]])
            outs.append({"out": np.concatenate(pieces)})
        return outs
    if kind == "all_to_all":
        return [{f"out.{s}": inp(s, f"in.{r}") for s in range(world)} for r in range(world)]
    if kind == "send_recv":
        return [{"out": inp((r - 1) % world)} for r in range(world)]
    raise AssertionError(kind)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("index", range(len(CASES)), ids=[_id(c) for c in CASES])
def test_collective_matches_numpy(outcomes, world, index):
    case = CASES[index]
    arrays, reports = outcomes(world)
    for rank, wanted in enumerate(expected_outputs(case, arrays, world, index)):
        got = {k.split("/", 1)[1]: v for k, v in arrays[rank].items() if k.startswith(f"{index}/")}
        got_outputs = {k: v for k, v in got.items() if k.startswith("out")}
        assert set(got_outputs) == set(wanted), f"rank {rank}"
        for name, expected in wanted.items():
            assert_equal(got_outputs[name], expected)
    if case["kind"] == "send_recv":
        assert [reports[r][index]["sender"] for r in range(world)] == [
            (r - 1) % world for r in range(world)
        ]


@pytest.mark.parametrize("world", [2, 3])
def test_all_reduce_writes_in_place_and_moves_the_version_counter(outcomes, world):
    _, reports = outcomes(world)
    for index, case in enumerate(CASES):
        if case["kind"] != "all_reduce":
            continue
        for r in range(world):
            report = reports[r][index]
            assert report["version_moved"] == 1
            assert report["contiguous"] == (case["layout"] == "contiguous")
            if not case.get("async"):
                assert report["returned"] == "None"


@pytest.mark.parametrize("world", [2, 3])
def test_async_all_reduce_returns_a_work_that_waits(outcomes, world):
    _, reports = outcomes(world)
    asyncs = [i for i, c in enumerate(CASES) if c.get("async")]
    assert len(asyncs) == 2
    for index in asyncs:
        for r in range(world):
            report = reports[r][index]
            assert report["work_type"] == "Work"
            assert report["wait"] is True and report["completed"] is True
            assert report["result_is_tensor"] is True
