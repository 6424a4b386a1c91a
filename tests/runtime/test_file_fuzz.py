"""A fuzzer of the files ember reads: graph files (ember.runtime.load, then a call) and
checkpoints (ember.load), mutated by bit flips, truncation, shifted data, header and JSON
edits, arity and attribute edits and huge sizes.

Every case runs in a forked child under a time limit and an address-space limit
(RLIMIT_AS), with EMBER_MAX_BYTES set below that limit, and ends in one outcome:

    error    a clean ember error (FormatError, CheckpointError, any EmberError)
    same     loaded (and ran) and gave the unmutated file's result
    changed  loaded (and ran) and gave another result: the mutation changed a weight or a
             number that the file may legitimately hold
    corrupt  a changed result from a mutation that only shifts the data (a header length off
             by some bytes, bytes inserted or removed before the data): silent corruption
    foreign  an exception that is not an EmberError (a bare TypeError, numpy's errors)
    memory   MemoryError: an allocation past the memory limit, so past the size budget
    crash    the child died on a signal or without a word
    hang     the child ran past the time limit and was killed

The first five are the acceptable ones, of which corrupt is not. The suite runs a few
hundred cases; the full count is one command (README, Tests):

    EMBER_FUZZ_CASES=10000 EMBER_SKIP_NVCC_CHECK=1 \
        python -m pytest -q tests/runtime/test_file_fuzz.py

and `python tests/runtime/test_file_fuzz.py [cases]` prints the outcome counts (EMBER_FUZZ_SEED
picks another sequence of cases).
"""

from __future__ import annotations

import collections
import json
import os
import random
import resource
import select
import signal
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

CASES = int(os.environ.get("EMBER_FUZZ_CASES", "300"))
SEED = int(os.environ.get("EMBER_FUZZ_SEED", "0"))
TIMEOUT_S = float(os.environ.get("EMBER_FUZZ_TIMEOUT", "20"))
BUDGET = 256 << 20  # EMBER_MAX_BYTES in the children
HEADROOM = 1536 << 20  # the children's address space beyond the supervisor's
ACCEPTABLE = ("error", "same", "changed")
OUTCOMES = ("error", "same", "changed", "corrupt", "foreign", "memory", "crash", "hang")

HUGE = [2**20, 2**26, 2**30, 2**31, 2**32, 2**40, 2**62, 2**63, 2**64]
ODD_VALUES = ["no", "", True, False, 1.5, -0.5, None, -1, 0, 1, 2, -(2**31), [], {"tuple": []},
              {"tuple": [0, 0]}, {"tuple": [-1, -1]}, {"tuple": [1, 2, 3]}, [1], {"size": "q"},
              {"size": "B*0"}, {"float": "nan"}, {"dict": {}}, 2**40, "float32", "sum"]


@dataclass
class Seed:
    """An unmutated file, what the child does with it, and what that gave."""

    name: str
    kind: str  # "graph" | "checkpoint"
    raw: bytes
    args: tuple = ()  # a graph file's call arguments
    arrays: dict = field(default_factory=dict)  # a graph file's tensors
    reference: list = field(default_factory=list)  # the flattened result


# -- the seed files ---------------------------------------------------------------------------


def _flatten(value, out: list) -> list:
    """Every leaf of a result, arrays as numpy, in order (dict keys sorted)."""
    if isinstance(value, dict):
        for key in sorted(value, key=repr):
            out.append(("key", repr(key)))
            _flatten(value[key], out)
    elif isinstance(value, (list, tuple)):
        out.append((type(value).__name__, len(value)))
        for item in value:
            _flatten(item, out)
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        _flatten(value.numpy(), out)
    elif isinstance(value, np.ndarray):
        out.append(("array", value.dtype.str, value.shape, value.tobytes()))
    else:
        out.append(("leaf", repr(value)))
    return out


def build_seeds(directory: str) -> list[Seed]:
    """The files the mutations start from: three graph files that cover weights, dynamic
    sizes, convolution and pooling and many attrs, and a checkpoint."""
    import ember
    import ember.nn.functional as F
    from ember import nn, runtime
    from ember.runtime.graph_file import read_container

    ember.manual_seed(0)
    seeds = []

    def graph_seed(name, fn, example, dynamic_dims=None):
        path = os.path.join(directory, f"{name}.ember")
        ember.export(fn, example, path, dynamic_dims=dynamic_dims)
        examples = example if isinstance(example, tuple) else (example,)
        args = tuple(e.numpy() for e in examples)
        program = runtime.load(path)
        reference = _flatten(program(*args), [])
        arrays = {k: np.array(v) for k, v in read_container(path).tensors.items()}
        with open(path, "rb") as f:
            seeds.append(Seed(name, "graph", f.read(), args, arrays, reference))

    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    graph_seed("mlp", mlp, ember.randn(3, 8), {0: {0: "batch"}})

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)

        def forward(self, x):
            y = F.max_pool2d(self.conv(x).relu(), 2)
            y = F.avg_pool2d(y, 2, ceil_mode=True)
            return y.reshape(y.shape[0], -1).sum(dim=1, keepdim=True)

    graph_seed("cnn", Net().eval(), ember.randn(2, 2, 8, 8))

    table = ember.randn(5, 3)

    def shapes(x, i):
        a = x.repeat(2, 1).cumsum(dim=0)
        b = F.pad(x, (1, 2)).amax(dim=1, keepdim=True)
        c = x.unsqueeze(0).expand(4, 2, 3).sum(dim=0)
        d = F.one_hot(i, 4).sum(dim=-1)
        e = ember.cat([x, x.flip(0)], 1).permute(1, 0).argmax(dim=0)
        f = table[i].sort(dim=1)[0].mean(dim=(0, 1))
        return a, b + c, {"d": d, "e": e}, f.clamp(min=-1.0)

    graph_seed("shapes", shapes, (ember.randn(2, 3), ember.tensor([1, 3])))

    def dynamic(x):
        return (x.reshape(x.shape[0] * 2, 2) * 2.0).softmax(dim=-1).transpose(0, 1)

    graph_seed("dynamic", dynamic, ember.randn(3, 4), {0: {0: "n"}})

    state = {
        "model": mlp.state_dict(),
        "step": 3,
        "lr": 0.5,
        "names": ["a", "b"],
        "pair": (1, 2.5),
        "dtype": ember.float16,
        "ids": ember.tensor([1, 2, 3]),
        "half": ember.randn(2, 2).half(),
    }
    path = os.path.join(directory, "state.pt")
    ember.save(state, path)
    with open(path, "rb") as f:
        seeds.append(Seed("state", "checkpoint", f.read(), reference=_flatten(
            ember.load(path), [])))
    return seeds


# -- mutations ----------------------------------------------------------------------------------


def split(raw: bytes):
    """(header dict, data bytes, header length) of a well-formed safetensors file."""
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :], n


def pack(header: dict, data: bytes) -> bytes:
    """A safetensors file as the writer lays it out: the header padded with spaces so the
    data starts at a multiple of 8."""
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + data


def bit_flips(rng, seed):
    raw = bytearray(seed.raw)
    header_end = 8 + split(seed.raw)[2]
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(header_end) if rng.random() < 0.7 else rng.randrange(len(raw))
        raw[at] ^= 1 << rng.randrange(8)
    return bytes(raw)


def truncation(rng, seed):
    return seed.raw[: rng.randrange(len(seed.raw))]


def shifted(rng, seed):
    """The data moved by a few bytes against the header: the mutations whose every load
    must fail or give the same result."""
    raw = seed.raw
    _, _, n = split(raw)
    k = rng.choice([1, 1, 2, 2, 3, 7, 8])
    end = 8 + n
    how = rng.randrange(6)
    if how == 0:  # the length field off, nothing else
        size = n + rng.choice([-k, k])
        return struct.pack("<Q", size) + raw[8:]
    if how == 1:  # the length field off and the file's tail cut to match
        return struct.pack("<Q", n - k) + raw[8:-k]
    if how == 2:  # bytes inserted in the padding, the length unchanged
        return raw[:end] + b" " * k + raw[end:]
    if how == 3:  # bytes inserted in the padding and the tail cut to match
        return raw[:end] + b" " * k + raw[end:-k]
    if how == 4:  # bytes inserted and the length field moved with them
        return struct.pack("<Q", n + k) + raw[8:end] + b" " * k + raw[end:]
    # the padding's last bytes removed and the length field moved with them
    pad = len(raw[8:end]) - len(raw[8:end].rstrip(b" "))
    k = min(k, pad) or 1
    return struct.pack("<Q", n - k) + raw[8 : end - k] + raw[end:]


def header_edit(rng, seed):
    header, data, _ = split(seed.raw)
    names = [k for k in header if k != "__metadata__"]
    if not names:
        header["x"] = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
        return pack(header, data + b"\0" * 4)
    name = rng.choice(names)
    entry = header[name]
    how = rng.randrange(7)
    if how == 0:
        entry["dtype"] = rng.choice(["F16", "BF16", "F32", "F64", "I8", "I32", "I64", "U8",
                                     "BOOL", "F8_E4M3", "c64", 3])
    elif how == 1:
        entry["shape"] = rng.choice([entry["shape"][::-1], [], [0], entry["shape"] + [1],
                                     [rng.choice(HUGE)], [-1], ["2"], [2**32, 2**32, 0]])
    elif how == 2:
        begin, end = entry["data_offsets"]
        entry["data_offsets"] = rng.choice([[begin + 1, end + 1], [begin, end + 8],
                                            [end, begin], [0, end - begin], [begin, 2**64],
                                            [begin - 8, end - 8]])
    elif how == 3 and len(names) > 1:  # two tensors swap their data
        other = header[rng.choice([n for n in names if n != name])]
        entry["data_offsets"], other["data_offsets"] = other["data_offsets"], entry[
            "data_offsets"]
    elif how == 4:
        del header[name]
    elif how == 5:
        header[name + "_copy"] = dict(entry)
    else:
        entry[rng.choice(["extra", "dtype", "shape", "data_offsets"])] = rng.choice(ODD_VALUES)
    return pack(header, data)


def _json_paths(value, path=()):
    """Every (path, value) inside a JSON value."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _json_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _json_paths(v, path + (i,))


def _set(doc, path, value):
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _odd_value(rng, old):
    if isinstance(old, int) and not isinstance(old, bool) and rng.random() < 0.6:
        return rng.choice([old + 1, old - 1, -old, 0, -1, 2**31, rng.choice(HUGE),
                           -rng.choice(HUGE)])
    return rng.choice(ODD_VALUES)


def metadata_edit(rng, seed):
    """A value somewhere inside one metadata JSON document replaced or removed."""
    header, data, _ = split(seed.raw)
    metadata = header["__metadata__"]
    key = rng.choice(sorted(metadata))
    try:
        doc = json.loads(metadata[key])
    except ValueError:
        doc = metadata[key]
    paths = [p for p, _ in _json_paths(doc) if p]
    how = rng.randrange(4)
    if how == 0 or not paths:
        metadata[key] = rng.choice(["", "[", "{}", "[]", "null", '{"a": NaN}', "[" * 5000,
                                    json.dumps(rng.choice(ODD_VALUES)), metadata[key] + " x"])
        return pack(header, data)
    path = rng.choice(paths)
    old = doc
    for k in path:
        old = old[k]
    if how == 1:
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        del parent[path[-1]]
    else:
        _set(doc, path, _odd_value(rng, old))
    metadata[key] = json.dumps(doc)
    return pack(header, data)


def _retyped(graph: dict, signature: dict, seed: Seed):
    """graph (JSON) with every recorded type re-derived by the type rules, and the signature
    to match: an edit that survives this is one the loader cannot refuse for a stale type."""
    from ember.ir.dtypes import as_dtype
    from ember.ir.graph import Graph
    from ember.ir.parser import parse_size
    from ember.ir.serialize import decode_attr, to_data
    from ember.ir.types import TensorType

    def decoded(t):
        return TensorType(tuple(parse_size(d) if isinstance(d, str) else d for d in t["shape"]),
                          as_dtype(t["dtype"]))

    g, values = Graph(), {}
    for entry in graph["inputs"]:
        values[entry["name"]] = g.add_input(decoded(entry["type"]), entry["name"])
    for entry in graph["constants"]:
        array = seed.arrays[entry["name"]]
        values[entry["name"]] = g.add_constant(array, as_dtype(entry["type"]["dtype"]),
                                               entry["name"])
    for entry in graph["nodes"]:
        inputs = [values[x] if isinstance(x, str) else x for x in entry["inputs"]]
        attrs = {k: decode_attr(v, k) for k, v in entry["attrs"].items()}
        node = g.add_node(entry["op"], inputs, attrs, entry.get("source"),
                          names=[o["name"] for o in entry["outputs"]])
        values.update((v.name, v) for v in node.outputs)
    g.set_outputs([values[name] for name in graph["outputs"]])
    for spec, value in zip(signature["outputs"], g.outputs):
        spec["dtype"] = value.type.dtype.name
        spec["shape"] = [d if isinstance(d, int) else str(d) for d in value.type.shape]
    return to_data(g, constant_data=False), signature


def graph_edit(rng, seed):
    """One node's op, inputs or attrs edited, its recorded types re-derived (mostly), so the
    file is consistent except for the edit."""
    from ember.ir.schema import SCHEMAS

    header, data, _ = split(seed.raw)
    metadata = header["__metadata__"]
    graph = json.loads(metadata["graph"])
    signature = json.loads(metadata["signature"])
    index = rng.randrange(len(graph["nodes"]))
    node = graph["nodes"][index]
    defined = [v["name"] for v in graph["inputs"] + graph["constants"]]
    defined += [o["name"] for n in graph["nodes"][:index] for o in n["outputs"]]
    how = rng.randrange(8)
    attrs = node["attrs"]
    if how == 0:
        node["inputs"].append(rng.choice(defined + [2.0, 1, True]))
    elif how == 1 and node["inputs"]:
        node["inputs"].pop(rng.randrange(len(node["inputs"])))
    elif how == 2:
        node["op"] = rng.choice(sorted(SCHEMAS))
    elif how == 3 and attrs:
        del attrs[rng.choice(sorted(attrs))]
    elif how == 4:
        attrs[rng.choice(["bogus", "out", "dim", "dims", "keepdim", "shape", "value"])] = (
            rng.choice(ODD_VALUES))
    else:
        paths = [(p, v) for p, v in _json_paths(attrs) if p]
        ints = [(p, v) for p, v in paths if isinstance(v, int) and not isinstance(v, bool)]
        if how >= 6 and ints:  # a size or an index made huge or out of range
            path, old = rng.choice(ints)
            _set(attrs, path, rng.choice(HUGE) if how == 6 else _odd_value(rng, old))
        elif paths:
            path, old = rng.choice(paths)
            _set(attrs, path, _odd_value(rng, old))
        else:
            attrs[rng.choice(["dim", "keepdim"])] = rng.choice(ODD_VALUES)
    if rng.random() < 0.75:
        try:
            graph, signature = _retyped(graph, signature, seed)
        except Exception:  # noqa: BLE001 - the type rules refuse it: the loader must too
            pass
    metadata["graph"] = json.dumps(graph)
    metadata["signature"] = json.dumps(signature)
    metadata["ops"] = json.dumps(sorted({n["op"] for n in graph["nodes"]
                                         if isinstance(n.get("op"), str)}))
    return pack(header, data)


def signature_edit(rng, seed):
    header, data, _ = split(seed.raw)
    metadata = header["__metadata__"]
    signature = json.loads(metadata["signature"])
    graph = json.loads(metadata["graph"])
    entry = rng.choice(signature["inputs"])
    position = signature["inputs"].index(entry)
    dim = rng.randrange(len(entry["shape"])) if entry["shape"] else None
    if dim is not None:
        new = rng.choice(HUGE + [0, 1, "n", "batch"])
        entry["shape"][dim] = new
        graph["inputs"][position]["type"]["shape"][dim] = new
    else:
        entry["dtype"] = rng.choice(["float64", "int32", "bool"])
    try:
        graph, signature = _retyped(graph, signature, seed)
    except Exception:  # noqa: BLE001
        pass
    metadata["graph"] = json.dumps(graph)
    metadata["signature"] = json.dumps(signature)
    return pack(header, data)


# (name, mutation, strict): a strict mutation's file that loads must give the same result
GRAPH_MUTATIONS = [
    ("bit_flips", bit_flips, False),
    ("truncation", truncation, True),
    ("shifted", shifted, True),
    ("header_edit", header_edit, False),
    ("metadata_edit", metadata_edit, False),
    ("graph_edit", graph_edit, False),
    ("graph_edit", graph_edit, False),
    ("graph_edit", graph_edit, False),
    ("signature_edit", signature_edit, False),
]
CHECKPOINT_MUTATIONS = [
    ("bit_flips", bit_flips, False),
    ("truncation", truncation, True),
    ("shifted", shifted, True),
    ("header_edit", header_edit, False),
    ("metadata_edit", metadata_edit, False),
    ("metadata_edit", metadata_edit, False),
]


def make_case(seeds: list[Seed], index: int):
    """The index-th case of this seed: (seed, mutation name, strict, mutated bytes)."""
    rng = random.Random(f"{SEED}:{index}")
    seed = rng.choice(seeds)
    mutations = GRAPH_MUTATIONS if seed.kind == "graph" else CHECKPOINT_MUTATIONS
    name, mutate, strict = rng.choice(mutations)
    try:
        raw = mutate(rng, seed)
    except (ValueError, KeyError, IndexError, TypeError):  # a seed this edit does not fit
        raw = bit_flips(rng, seed)
        name, strict = "bit_flips", False
    return seed, name, strict, raw


# -- running a case -----------------------------------------------------------------------------


def _run(seed: Seed, path: str) -> str:
    if seed.kind == "graph":
        from ember import runtime

        result = runtime.load(path)(*seed.args)
    else:
        import ember

        result = ember.load(path)
    return "same" if _flatten(result, []) == seed.reference else "changed"


def _child(seed: Seed, path: str, limit: int, write_fd: int) -> None:
    """In the forked child: run the case under the limits and write its outcome."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.environ["EMBER_MAX_BYTES"] = str(BUDGET)
        import ember

        try:
            outcome, detail = _run(seed, path), ""
        except ember.EmberError as exc:
            outcome, detail = "error", f"{type(exc).__name__}: {exc}"
        except MemoryError as exc:
            outcome, detail = "memory", f"MemoryError: {exc}"
        except BaseException as exc:  # noqa: BLE001 - what the fuzzer looks for
            outcome, detail = "foreign", f"{type(exc).__name__}: {exc}"
        os.write(write_fd, json.dumps([outcome, detail[:300]]).encode())
    finally:
        os._exit(0)


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def run_case(seed: Seed, raw: bytes, directory: str, index: int) -> tuple[str, str]:
    """(outcome, detail) of one mutated file, run in a forked child."""
    path = os.path.join(directory, f"case{index}" + (".ember" if seed.kind == "graph" else
                                                      ".pt"))
    with open(path, "wb") as f:
        f.write(raw)
    limit = _address_space() + HEADROOM
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(seed, path, limit, write_fd)
    os.close(write_fd)
    message, deadline, status = b"", time.monotonic() + TIMEOUT_S, None
    try:
        while status is None:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "hang", f"killed after {TIMEOUT_S:.0f} s"
            ready, _, _ = select.select([read_fd], [], [], min(left, 0.05))
            if ready:
                chunk = os.read(read_fd, 1 << 16)
                message += chunk
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
                while chunk := os.read(read_fd, 1 << 16):
                    message += chunk
    finally:
        os.close(read_fd)
        os.unlink(path)
    if os.WIFSIGNALED(status):
        return "crash", f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    if not message:
        return "crash", f"exit status {os.waitstatus_to_exitcode(status)}, no outcome written"
    outcome, detail = json.loads(message)
    return outcome, detail


def fuzz(cases: int, directory: str, progress=None):
    """The outcome counts of `cases` cases, and up to 3 examples of each outcome."""
    import ember  # noqa: F401 - imported once here, not in every child

    seeds = build_seeds(directory)
    counts = collections.Counter()
    by_mutation = collections.defaultdict(collections.Counter)
    examples = collections.defaultdict(list)
    for index in range(cases):
        seed, name, strict, raw = make_case(seeds, index)
        outcome, detail = run_case(seed, raw, directory, index)
        if strict and outcome == "changed":
            outcome = "corrupt"
        counts[outcome] += 1
        by_mutation[name][outcome] += 1
        if len(examples[outcome]) < 3:
            examples[outcome].append(f"case {index} ({seed.name}, {name}): {detail}")
        if progress and (index + 1) % progress == 0:
            print(f"{index + 1} cases: {dict(counts)}", flush=True)
    return counts, by_mutation, examples


def report(counts, by_mutation, examples) -> str:
    lines = ["outcomes: " + ", ".join(f"{o} {counts[o]}" for o in OUTCOMES)]
    for name, c in sorted(by_mutation.items()):
        lines.append(f"  {name:15s} " + ", ".join(f"{o} {c[o]}" for o in OUTCOMES if c[o]))
    for outcome in OUTCOMES:
        for example in examples.get(outcome, []) if outcome not in ("same", "changed") else []:
            lines.append(f"  [{outcome}] {example}")
    return "\n".join(lines)


def test_every_mutated_file_fails_cleanly_or_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "kernels"))
    counts, by_mutation, examples = fuzz(CASES, str(tmp_path))
    text = report(counts, by_mutation, examples)
    print(text)
    assert sum(counts.values()) == CASES
    bad = {o: counts[o] for o in OUTCOMES if o not in ACCEPTABLE and counts[o]}
    assert not bad, text
    # the mutations reach past the first checks: some files still load and run
    assert counts["same"] + counts["changed"] > 0, text


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("EMBER_CACHE_DIR", os.path.join(tmp, "kernels"))
        n = int(sys.argv[1]) if len(sys.argv) > 1 else CASES
        start = time.perf_counter()
        result = fuzz(n, tmp, progress=max(n // 10, 1))
        print(report(*result))
        print(f"{n} cases in {time.perf_counter() - start:.0f} s")
