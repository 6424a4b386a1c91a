"""SummaryWriter against PyTorch's: the same calls give the same events, read back by
TensorBoard's reader (scalars, histogram buckets and edges, image pixels, text)."""

import io

import ember
import numpy as np
import pytest

torch = pytest.importorskip("torch")
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")
Image = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.oracle


def _log(module, log_dir, data):
    writer = module.utils.tensorboard.SummaryWriter(str(log_dir))
    for step, v in enumerate(data["scalars"]):
        writer.add_scalar("loss", module.tensor(v), step, walltime=1.0 + step)
    for bins in ("tensorflow", 30):
        writer.add_histogram(f"w_{bins}", module.tensor(data["weights"]), 3, bins=bins,
                             walltime=5.0)
    writer.add_histogram("merged", module.tensor(data["weights"]), 3, bins=64, max_bins=20,
                         walltime=5.0)
    writer.add_image("img", module.tensor(data["image"]), 4, walltime=6.0)
    writer.add_images("imgs", module.tensor(data["images"]), 4, walltime=6.0)
    writer.add_text("note", "a **b**", 5, walltime=7.0)
    writer.close()
    reader = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    reader.Reload()
    return reader


def test_same_events_as_torchs_summary_writer(tmp_path):
    import importlib

    importlib.import_module("torch.utils.tensorboard")
    rng = np.random.default_rng(0)
    data = {"scalars": rng.standard_normal(4).astype(np.float32),
            "weights": rng.standard_normal(300).astype(np.float32),
            "image": rng.random((3, 6, 5)).astype(np.float32),
            "images": rng.random((11, 3, 4, 4)).astype(np.float32)}
    mine = _log(ember, tmp_path / "ember", data)
    theirs = _log(torch, tmp_path / "torch", data)
    assert ([(s.step, s.wall_time, s.value) for s in mine.Scalars("loss")]
            == [(s.step, s.wall_time, s.value) for s in theirs.Scalars("loss")])
    for tag in ("w_tensorflow", "w_30", "merged"):
        a, b = mine.Histograms(tag)[0], theirs.Histograms(tag)[0]
        assert a.step == b.step
        ha, hb = a.histogram_value, b.histogram_value
        assert (ha.min, ha.max, ha.num) == (hb.min, hb.max, hb.num)
        assert ha.sum == pytest.approx(hb.sum, rel=1e-6)
        assert ha.sum_squares == pytest.approx(hb.sum_squares, rel=1e-6)
        assert list(ha.bucket) == list(hb.bucket)
        np.testing.assert_allclose(ha.bucket_limit, hb.bucket_limit, rtol=1e-12)
    for tag in ("img", "imgs"):
        a, b = mine.Images(tag)[0], theirs.Images(tag)[0]
        assert (a.step, a.width, a.height) == (b.step, b.width, b.height)
        pixels = [np.asarray(Image.open(io.BytesIO(x.encoded_image_string))) for x in (a, b)]
        np.testing.assert_array_equal(*pixels)
    assert (mine.Tensors("note/text_summary")[0].tensor_proto.string_val
            == theirs.Tensors("note/text_summary")[0].tensor_proto.string_val)
