"""ember.utils.tensorboard.SummaryWriter: the event files it writes, read back by TensorBoard's
own reader (EventAccumulator) and images by Pillow."""

import glob
import io
import os

import ember
import numpy as np
import pytest
from ember.utils.tensorboard import SummaryWriter, _events

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="the test extras install tensorboard")
Image = pytest.importorskip("PIL.Image", reason="tensorboard installs Pillow")


def _read(log_dir):
    everything = {"scalars": 0, "histograms": 0, "images": 0, "tensors": 0}
    reader = event_accumulator.EventAccumulator(str(log_dir), size_guidance=everything)
    reader.Reload()
    return reader


def test_crc32c_is_castagnolis():
    """The TFRecord checksum: CRC-32C's check value, and the empty string's."""
    assert _events.crc32c(b"123456789") == 0xE3069283
    assert _events.crc32c(b"") == 0


def test_scalars_read_back_by_tensorboard(tmp_path):
    """add_scalar takes tensors, numpy and Python numbers, and global_step as a tensor."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal(6).astype(np.float32)
    with SummaryWriter(tmp_path) as writer:
        for step, v in enumerate(values):
            value = (ember.tensor(v), np.float32(v), float(v))[step % 3]
            writer.add_scalar("Loss/train", value, ember.tensor(step) if step % 2 else step,
                              walltime=100.0 + step)
    got = _read(tmp_path).Scalars("Loss/train")
    assert [s.step for s in got] == list(range(6))
    assert [s.wall_time for s in got] == [100.0 + i for i in range(6)]
    np.testing.assert_array_equal(np.array([s.value for s in got], np.float32), values)


def test_new_style_scalars_are_tensors_of_the_scalars_plugin(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalar("a", 0.1, 1, new_style=True)
        writer.add_scalar("b", 0.1, 2, new_style=True, double_precision=True)
    reader = _read(tmp_path)
    a, b = reader.Tensors("a")[0], reader.Tensors("b")[0]
    assert (a.step, b.step) == (1, 2)
    assert a.tensor_proto.float_val == [np.float32(0.1)]
    assert b.tensor_proto.double_val == [0.1]
    assert reader.SummaryMetadata("a").plugin_data.plugin_name == "scalars"


def test_add_scalars_writes_one_run_per_tag(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        for step in range(3):
            writer.add_scalars("loss/all", {"train": step * 1.0, "test": step * 2.0}, step)
    runs = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "loss_all_*")))
    assert runs == ["loss_all_test", "loss_all_train"]
    test = _read(tmp_path / "loss_all_test").Scalars("loss/all")
    assert [(s.step, s.value) for s in test] == [(0, 0.0), (1, 2.0), (2, 4.0)]


@pytest.mark.parametrize("bins", ["tensorflow", 20, "auto"])
def test_histograms_count_every_value_between_their_edges(tmp_path, bins):
    """TensorBoard's histogram: min, max, count, sum, sum of squares, and the buckets' counts
    each between its right edge and the one before."""
    values = np.random.default_rng(1).standard_normal(500) * 3
    with SummaryWriter(tmp_path) as writer:
        writer.add_histogram("weights", ember.tensor(values), 7, bins=bins)
    histo = _read(tmp_path).Histograms("weights")[0]
    h = histo.histogram_value
    assert histo.step == 7
    assert (h.min, h.max, h.num) == (values.min(), values.max(), 500)
    assert h.sum == pytest.approx(values.sum()) and h.sum_squares == pytest.approx(values @ values)
    assert sum(h.bucket) == 500
    edges = np.array(h.bucket_limit)
    assert len(edges) == len(h.bucket) and np.all(np.diff(edges) > 0)
    assert h.bucket[0] == 0 and edges[0] <= values.min() and edges[-1] >= values.max()
    counted = np.histogram(values, bins=np.concatenate([[edges[0]], edges[1:]]))[0]
    np.testing.assert_array_equal(counted, h.bucket[1:])


def test_max_bins_merges_neighbouring_buckets(tmp_path):
    values = np.arange(100.0)
    with SummaryWriter(tmp_path) as writer:
        writer.add_histogram("x", values, 0, bins=40, max_bins=10)
    h = _read(tmp_path).Histograms("x")[0].histogram_value
    assert len(h.bucket) <= 11 and sum(h.bucket) == 100


@pytest.mark.parametrize("layout,shape", [("CHW", (3, 5, 7)), ("HWC", (5, 7, 3)), ("HW", (5, 7)),
                                          ("CHW", (1, 5, 7)), ("HWC", (5, 7, 4))])
def test_images_decode_to_their_pixels(tmp_path, layout, shape):
    """Floats in [0, 1] scaled to bytes (clipped), in the layout given, as PNG."""
    rng = np.random.default_rng(2)
    image = rng.random(shape).astype(np.float32) * 1.2 - 0.1
    with SummaryWriter(tmp_path) as writer:
        writer.add_image("img", ember.tensor(image), 3, dataformats=layout)
    got = _read(tmp_path).Images("img")[0]
    assert (got.step, got.width, got.height) == (3, 7, 5)
    pixels = np.asarray(Image.open(io.BytesIO(got.encoded_image_string)))
    hwc = {"CHW": lambda a: a.transpose(1, 2, 0), "HWC": lambda a: a,
           "HW": lambda a: a[:, :, None]}[layout](image)
    want = (hwc * 255).clip(0, 255).astype(np.uint8)
    np.testing.assert_array_equal(pixels.reshape(want.shape), want)


def test_add_images_makes_a_grid_of_eight_columns(tmp_path):
    rng = np.random.default_rng(3)
    batch = rng.integers(0, 256, (10, 1, 4, 6)).astype(np.uint8)
    with SummaryWriter(tmp_path) as writer:
        writer.add_images("batch", batch, 0)
    got = _read(tmp_path).Images("batch")[0]
    pixels = np.asarray(Image.open(io.BytesIO(got.encoded_image_string)))
    assert pixels.shape == (8, 48, 3)
    np.testing.assert_array_equal(pixels[4:8, 6:12, 0], batch[9, 0])  # row 2, column 2
    assert not pixels[4:8, 12:].any()  # the rest of the last row is empty


def test_text_is_a_string_tensor_of_the_text_plugin(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_text("notes", "lr **3e-4**", 2)
    reader = _read(tmp_path)
    text = reader.Tensors("notes/text_summary")[0]
    assert text.step == 2 and text.tensor_proto.string_val == [b"lr **3e-4**"]
    assert reader.SummaryMetadata("notes/text_summary").plugin_data.plugin_name == "text"


def test_events_wait_in_the_queue_until_flush(tmp_path):
    writer = SummaryWriter(tmp_path, max_queue=100, flush_secs=3600)
    writer.add_scalar("x", 1.0, 0)
    assert "x" not in _read(tmp_path).Tags()["scalars"]
    writer.flush()
    assert [s.value for s in _read(tmp_path).Scalars("x")] == [1.0]
    writer.close()
    with pytest.raises(ember.EmberError, match="closed"):
        writer.add_scalar("x", 2.0, 1)


def test_default_log_dir_is_under_runs_with_the_comment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    writer = SummaryWriter(comment="_lr0.1")
    writer.close()
    assert writer.get_logdir().startswith("runs" + os.sep) and writer.get_logdir().endswith(
        "_lr0.1")
    assert glob.glob(os.path.join(writer.get_logdir(), "events.out.tfevents.*"))


def test_bad_values_and_unsupported_methods_are_clear_errors(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        with pytest.raises(ember.EmberError, match=r"one element.*\[2\]"):
            writer.add_scalar("x", ember.ones(2), 0)
        with pytest.raises(ember.EmberError, match="NaN or infinity"):
            writer.add_histogram("h", [1.0, float("nan")], 0)
        with pytest.raises(ember.EmberError, match="channels"):
            writer.add_image("i", np.zeros((2, 4, 4)), 0)
        with pytest.raises(ember.EmberError, match="add_graph is not supported"):
            writer.add_graph(None)


def test_torch_utils_tensorboard_spelling_imports():
    """`from torch.utils.tensorboard import SummaryWriter` with ember for torch."""
    import importlib

    module = importlib.import_module("ember.utils.tensorboard")
    assert module.SummaryWriter is SummaryWriter
    assert ember.utils.tensorboard.SummaryWriter is SummaryWriter
