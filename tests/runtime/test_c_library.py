"""A graph file compiled to a shared library with a C ABI (runtime/library.py) runs from a C
program without Python and gives eager's outputs; it refuses a graph file other than the one
it was compiled for, and reports bad calls as error codes with a message."""

import ctypes
import os
import shutil
import subprocess
import sys
import threading

import ember
import numpy as np
import pytest
from ember import nn
from ember.ir.specialize import specialize
from ember.runtime import library as library_module
from ember.runtime.graph_entry import build_entry_program
from ember.runtime.graph_file import read_container, write_container
from ember.runtime.library import LibraryError, compile_library

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "examples", "c", "run_model.c")
CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc or gcc) on this machine "
                                "to build the library and the C program")


def _cnn(seed: int):
    ember.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, kernel_size=3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def _program(folder, library, header_dir):
    exe = os.path.join(folder, "run_model")
    subprocess.run([CC, "-O2", "-Wall", "-Werror", f"-I{header_dir}", "-o", exe, EXAMPLE,
                    library, "-lm", "-lpthread", f"-Wl,-rpath,{os.path.dirname(library)}"],
                   check=True, capture_output=True, text=True)
    return exe


def _run(exe, *args):
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=60)


def _outputs(stdout: str) -> list:
    lines = stdout.splitlines()
    outs = []
    for head, values in zip(lines[::2], lines[1::2]):
        assert head.startswith("output ")
        shape = [int(d) for d in head[head.index("[") + 1:-1].split(", ")]
        outs.append(np.array(values.split(), np.float64).reshape(shape))
    return outs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A static batch-2 CNN exported with native=True, and the C program built against it."""
    folder = tmp_path_factory.mktemp("clib")
    model = _cnn(0)
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8)).astype(np.float32)
    path = os.path.join(folder, "cnn.ember")
    result = ember.export(model, ember.tensor(x), path, native=True)
    lib = result.library
    assert lib.library == os.path.join(folder, "libcnn.so") and os.path.exists(lib.library)
    exe = _program(folder, lib.library, os.path.dirname(lib.header))
    return folder, model, path, lib.library, exe


def _eager(model, x):
    with ember.no_grad():
        return model(ember.tensor(x)).numpy()


def test_c_program_gives_eager_outputs(built):
    folder, model, path, _, exe = built
    x = np.random.default_rng(7).standard_normal((2, 1, 8, 8)).astype(np.float32)
    x.tofile(os.path.join(folder, "x.bin"))
    done = _run(exe, path, os.path.join(folder, "x.bin"))
    assert done.returncode == 0, done.stderr
    (got,) = _outputs(done.stdout)
    np.testing.assert_allclose(got, _eager(model, x), rtol=1e-5, atol=1e-5)
    assert got.shape == (2, 10)


def _needed(lib: str) -> list:
    dynamic = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True).stdout
    return [line.split("[")[1].rstrip("]") for line in dynamic.splitlines()
            if "(NEEDED)" in line]


def test_library_needs_no_python(built):
    """The library's dependencies: libc, libm, pthreads, and numpy's OpenBLAS (by rpath) only
    where a step calls a GEMM: this CNN's convolutions multiply in register tiles and its
    batch-2 linear layers are kernels (the GPT's test checks the OpenBLAS it links)."""
    _, _, _, lib, _ = built
    needed = _needed(lib)
    assert not [n for n in needed if "python" in n.lower()], needed
    assert not [n for n in needed if "openblas" in n], needed
    assert all(n.startswith(("libc.", "libm.", "libpthread", "ld-linux")) for n in needed), needed
    exported = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True,
                              text=True).stdout.split()
    assert "model_run" in exported and "model_open" in exported
    # only the C API is exported: the pool's and the entries' symbols stay inside
    assert not [s for s in exported if s.startswith(("ember_", "scipy_"))]


def test_refuses_other_weights_other_graph_and_corrupt_data(built, tmp_path):
    _, _, path, _, exe = built
    container = read_container(path)
    tensors = {k: np.array(v) for k, v in container.tensors.items()}
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1  # other weights, the same layout: a new data_crc32
    other_weights = str(tmp_path / "weights.ember")
    write_container(other_weights, tensors, container.metadata)
    assert os.path.getsize(other_weights) == os.path.getsize(path)
    done = _run(exe, other_weights)
    assert done.returncode == 1
    assert "error 4:" in done.stderr and "weights are not the ones" in done.stderr

    # the same size and weights, another header: refused by the header's hash
    metadata = dict(container.metadata)
    version = metadata["ember_version"]
    metadata["ember_version"] = ("9" if version[0] != "9" else "8") + version[1:]
    other_header = str(tmp_path / "header.ember")
    write_container(other_header, dict(container.tensors), metadata)
    assert os.path.getsize(other_header) == os.path.getsize(path)
    done = _run(exe, other_header)
    assert done.returncode == 1 and "its graph is not the one" in done.stderr

    other_graph = str(tmp_path / "graph.ember")
    ember.export(_cnn(0), ember.tensor(np.zeros((3, 1, 8, 8), np.float32)), other_graph)
    done = _run(exe, other_graph)
    assert done.returncode == 1 and "error 4:" in done.stderr
    assert "not the graph file this library was compiled for" in done.stderr

    corrupt = str(tmp_path / "corrupt.ember")
    data = bytearray(open(path, "rb").read())
    data[-3] ^= 0x40  # a weight's byte: the header is unchanged
    open(corrupt, "wb").write(bytes(data))
    done = _run(exe, corrupt)
    assert done.returncode == 1 and "its data is corrupt" in done.stderr

    done = _run(exe, str(tmp_path / "missing.ember"))
    assert done.returncode == 1 and "error 3:" in done.stderr and "cannot open" in done.stderr


class _Api:
    """The library through ctypes: the same C functions a C program calls."""

    def __init__(self, lib):
        self.lib = ctypes.CDLL(lib)
        self.lib.model_last_error.restype = ctypes.c_char_p
        self.lib.model_input_name.restype = ctypes.c_char_p
        self.lib.model_input_dtype.restype = ctypes.c_char_p
        self.lib.model_symbol_name.restype = ctypes.c_char_p

    def open(self, path):
        handle = ctypes.c_void_p()
        code = self.lib.model_open(str(path).encode(), ctypes.byref(handle))
        assert code == 0, self.error()
        return handle

    def error(self) -> str:
        return self.lib.model_last_error().decode()

    def run(self, handle, inputs, outputs, n_in=None, n_out=None, entry=0):
        ins = (ctypes.c_void_p * max(len(inputs), 1))(*[a.ctypes.data for a in inputs])
        outs = (ctypes.c_void_p * max(len(outputs), 1))(*[a.ctypes.data for a in outputs])
        return self.lib.model_run_entry(handle, entry, ins,
                                        len(inputs) if n_in is None else n_in, outs,
                                        len(outputs) if n_out is None else n_out)


def test_bad_calls_return_codes_with_messages(built):
    _, model, path, lib, _ = built
    api = _Api(lib)
    handle = api.open(path)
    x = np.ones((2, 1, 8, 8), np.float32)
    out = np.zeros((2, 10), np.float32)
    assert api.run(handle, [x], [out], n_in=2) == 1
    assert api.error() == "model_run: expected 1 inputs, got 2"
    assert api.run(handle, [x], [out], n_out=0) == 1
    assert "expected 1 outputs, got 0" in api.error()
    assert api.run(handle, [x], [out], entry=1) == 1
    assert "entry 1 is not in [0, 1)" in api.error()
    misaligned = np.zeros(2 * 64 + 1, np.float32)[1:].view(np.uint8)[1:]
    ins = (ctypes.c_void_p * 1)(misaligned.ctypes.data)
    outs = (ctypes.c_void_p * 1)(out.ctypes.data)
    assert api.lib.model_run(handle, ins, 1, outs, 1) == 1
    assert "input 0 (" in api.error() and "not aligned" in api.error()
    ins = (ctypes.c_void_p * 1)(None)
    assert api.lib.model_run(handle, ins, 1, outs, 1) == 1 and "is NULL" in api.error()
    assert api.lib.model_input_name(3) is None and "index 3 is not in [0, 1)" in api.error()
    # a good call still runs after the bad ones
    assert api.run(handle, [x], [out]) == 0
    np.testing.assert_allclose(out, _eager(model, x), rtol=1e-5, atol=1e-5)
    assert api.lib.model_input_count() == 1 and api.lib.model_output_count() == 1
    dims = (ctypes.c_int64 * 4)()
    assert api.lib.model_input_shape(0, 0, dims) == 4 and list(dims) == [2, 1, 8, 8]
    assert api.lib.model_input_dtype(0) == b"float32"
    api.lib.model_close(handle)


def test_the_c_program_calls_from_several_threads_at_once(built):
    """run_model --callers: threads of C calling one model at once, every call's outputs the
    single call's (the program checks them and fails otherwise)."""
    folder, model, path, _, exe = built
    x = np.random.default_rng(4).standard_normal((2, 1, 8, 8)).astype(np.float32)
    x.tofile(os.path.join(folder, "x4.bin"))
    proc = _run(exe, path, os.path.join(folder, "x4.bin"), "--bench", 200, "--callers", 3)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(_outputs("\n".join(proc.stdout.splitlines()[:2]))[0],
                               _eager(model, x), rtol=1e-5, atol=1e-5)
    rate = proc.stdout.splitlines()[-1]
    assert rate.startswith("callers 3: ") and float(rate.split()[2]) > 0


def test_many_threads_run_one_model(built):
    _, model, path, lib, _ = built
    api = _Api(lib)
    handle = api.open(path)
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((2, 1, 8, 8)).astype(np.float32) for _ in range(6)]
    wanted = [_eager(model, x) for x in xs]
    failures = []

    def work(i):
        out = np.zeros((2, 10), np.float32)
        for _ in range(50):
            code = api.run(handle, [xs[i]], [out])
            if code != 0 or not np.allclose(out, wanted[i], rtol=1e-5, atol=1e-5):
                failures.append((i, code))
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    api.lib.model_close(handle)
    assert not failures


def test_dynamic_batch_compiles_one_entry_per_size(tmp_path):
    """Through the CLI: --sizes batch=1 --sizes batch=5; each entry runs its own batch, and
    sizes not compiled are an error that lists those that are."""
    model = _cnn(2)
    path = str(tmp_path / "dyn.ember")
    x = np.random.default_rng(4).standard_normal((3, 1, 8, 8)).astype(np.float32)
    ember.export(model, ember.tensor(x), path, dynamic_dims={0: {0: "batch"}})
    lib = str(tmp_path / "libdyn.so")
    done = subprocess.run([sys.executable, "-m", "ember.runtime", "compile", path, "-o", lib,
                           "--sizes", "batch=1", "--sizes", "batch=5"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "entry 1: batch=5" in done.stdout
    api = _Api(lib)
    assert api.lib.model_entry_count() == 2 and api.lib.model_symbol_name(0) == b"batch"
    assert api.lib.model_find_entry((ctypes.c_int64 * 1)(5), 1) == 1
    assert api.lib.model_find_entry((ctypes.c_int64 * 1)(4), 1) == -1
    assert "no entry was compiled for batch=4 (compiled: batch=1; batch=5)" in api.error()
    handle = api.open(path)
    for entry, batch in ((0, 1), (1, 5)):
        xb = np.random.default_rng(batch).standard_normal((batch, 1, 8, 8)).astype(np.float32)
        out = np.zeros((batch, 10), np.float32)
        assert api.run(handle, [xb], [out], entry=entry) == 0, api.error()
        np.testing.assert_allclose(out, _eager(model, xb), rtol=1e-5, atol=1e-5)
    # the pool's threads: batch 5 shares its images, and gives the same outputs
    assert api.lib.model_set_threads(2) in (1, 2)
    xb = np.random.default_rng(9).standard_normal((5, 1, 8, 8)).astype(np.float32)
    out = np.zeros((5, 10), np.float32)
    assert api.run(handle, [xb], [out], entry=1) == 0
    np.testing.assert_allclose(out, _eager(model, xb), rtol=1e-5, atol=1e-5)
    api.lib.model_close(handle)

    done = subprocess.run([sys.executable, "-m", "ember.runtime", "compile", path, "-o", lib],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "name the sizes to compile" in done.stderr


def test_entries_sharing_arenas_each_use_their_own_winograd_weights(tmp_path):
    """The entries of one library take their arenas from one free list: each remakes its
    Winograd weight transform when the arena's tag word names another entry, whose values
    may have overwritten it (codegen/entry.py EntryPlan.tag_word)."""
    ember.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(32, 16, 3, padding=1), nn.Flatten(),
                          nn.Linear(16 * 6 * 6, 10)).eval()
    rng = np.random.default_rng(7)
    path = str(tmp_path / "w.ember")
    ember.export(model, ember.tensor(rng.standard_normal((2, 16, 6, 6)).astype(np.float32)),
                 path, dynamic_dims={0: {0: "batch"}})
    lib = str(tmp_path / "libw.so")
    compile_library(path, lib, sizes=[{"batch": 1}, {"batch": 4}])
    # the library plans as the runtime does: both convolutions as Winograd products
    graph = specialize(ember.runtime.load(path).graph, {"batch": 4})
    assert build_entry_program(graph, "w").describe().count("Winograd F(2x2, 3x3)") == 2
    api = _Api(lib)
    handle = api.open(path)
    for entry, batch in [(0, 1), (1, 4), (0, 1), (1, 4), (0, 1)]:
        x = rng.standard_normal((batch, 16, 6, 6)).astype(np.float32)
        out = np.zeros((batch, 10), np.float32)
        assert api.run(handle, [x], [out], entry=entry) == 0, api.error()
        np.testing.assert_allclose(out, _eager(model, x), rtol=1e-4, atol=1e-4)
    api.lib.model_close(handle)


def test_without_a_c_compiler_the_object_and_source_are_kept(built, tmp_path, monkeypatch):
    """No compiler: the .o, the C source and the header are written with the command that
    links them; that command makes a working library."""
    _, model, path, _, _ = built
    monkeypatch.setattr(library_module, "_compiler", lambda: None)
    output = str(tmp_path / "libkept.so")
    result = compile_library(path, output)
    assert result.library is None and not os.path.exists(output)
    assert "no C compiler" in result.note
    assert sorted(os.path.basename(k) for k in result.kept) == ["libkept.c", "libkept.o"]
    command = result.note.split("link it with: ", 1)[1]
    subprocess.run(command, shell=True, check=True, cwd=tmp_path, capture_output=True)
    api = _Api(output)
    handle = api.open(path)
    x = np.ones((2, 1, 8, 8), np.float32)
    out = np.zeros((2, 10), np.float32)
    assert api.run(handle, [x], [out]) == 0
    np.testing.assert_allclose(out, _eager(model, x), rtol=1e-5, atol=1e-5)


def test_unsupported_graph_is_refused_by_name(tmp_path):
    path = str(tmp_path / "sort.ember")
    ember.export(lambda x: ember.sort(x, dim=1)[0], ember.randn(2, 5), path)
    with pytest.raises(LibraryError, match="cannot be compiled to a library: no native form"):
        compile_library(path, str(tmp_path / "libsort.so"))


def test_export_native_takes_a_bool_or_a_path(tmp_path):
    with pytest.raises(ValueError, match="native must be True, False or the library's path"):
        ember.export(_cnn(0), ember.randn(1, 1, 8, 8), str(tmp_path / "m.ember"), native=3)


def test_a_gpt_runs_from_c_and_an_index_out_of_range_is_an_error_code(tmp_path):
    """Token gathers, attention and views in the library's entry; a token id past the vocabulary
    is refused with MODEL_ERR_INDEX (6) and eager's message, and the next call still runs."""
    sys.path.insert(0, os.path.join(HERE, "..", "..", "examples"))
    from models import gpt

    ember.manual_seed(20)
    model = gpt(ember, vocab_size=40, context=12, d_model=16, heads=2, layers=2).eval()
    idx = np.random.default_rng(20).integers(0, 40, (1, 12))
    path = str(tmp_path / "gpt.ember")
    lib = ember.export(model, ember.tensor(idx), path, native=True).library
    exe = _program(str(tmp_path), lib.library, os.path.dirname(lib.header))
    needed = _needed(lib.library)  # its GEMMs call numpy's OpenBLAS, linked by its path
    assert [n for n in needed if "openblas" in n] and not [n for n in needed if "python" in n]
    idx.tofile(tmp_path / "idx.bin")
    done = _run(exe, path, tmp_path / "idx.bin")
    assert done.returncode == 0, done.stderr
    (got,) = _outputs(done.stdout)
    np.testing.assert_allclose(got, _eager(model, idx), rtol=1e-4, atol=1e-5)
    api = _Api(lib.library)
    handle = api.open(path)
    out = np.zeros((1, 12, 40), np.float32)
    bad = idx.copy()
    bad[0, 5] = 40
    assert api.run(handle, [bad], [out]) == 6
    assert api.error() == "index_select(): index 40 is out of range for dimension 0 with size 40"
    assert api.run(handle, [idx], [out]) == 0
    np.testing.assert_allclose(out, _eager(model, idx), rtol=1e-4, atol=1e-5)
    api.lib.model_close(handle)


class _MaskedBlock(nn.Module):
    """A MobileNet-style stem (depthwise 3x3 stride 2, grouped 1x1, pointwise) then attention
    over the positions under a fixed bool mask: the native entry's grouped convs and masked
    attention, compiled into the library."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.grouped = nn.Conv2d(8, 8, 1, groups=2)
        self.pointwise = nn.Conv2d(8, 12, 1)
        self.register_buffer("mask", ember.tensor(
            np.random.default_rng(3).random((16, 16)) < 0.7) | ember.eye(16, dtype=ember.bool))

    def forward(self, x):
        x = nn.functional.relu(self.stem(x))
        x = nn.functional.relu(self.grouped(self.depthwise(x)))
        x = self.pointwise(x)  # (B, 12, 4, 4)
        tokens = x.flatten(2).transpose(1, 2).reshape(x.shape[0], 16, 3, 4).transpose(1, 2)
        y = nn.functional.scaled_dot_product_attention(tokens, tokens, tokens,
                                                       attn_mask=self.mask)
        return y.transpose(1, 2).reshape(x.shape[0], 16, 12)


def test_grouped_convs_and_masked_attention_run_from_c(tmp_path):
    ember.manual_seed(5)
    model = _MaskedBlock().eval()
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 8)).astype(np.float32)
    path = str(tmp_path / "block.ember")
    lib = ember.export(model, ember.tensor(x), path, native=True).library
    exe = _program(str(tmp_path), lib.library, os.path.dirname(lib.header))
    x.tofile(tmp_path / "x.bin")
    done = _run(exe, path, tmp_path / "x.bin")
    assert done.returncode == 0, done.stderr
    (got,) = _outputs(done.stdout)
    np.testing.assert_allclose(got, _eager(model, x), rtol=1e-4, atol=1e-5)
