"""SummaryWriter: torch.utils.tensorboard's writer of scalars, histograms, images and text.

Training scripts log through it (karpathy's makemore, the DCGAN and RL examples); the files
it writes are TensorBoard's event files (_events.py), read by `tensorboard --logdir runs`.
PyTorch's writer needs the tensorboard package to write them; this one needs nothing.
Events are buffered and written when max_queue of them wait, when flush_secs have passed
since the last write, on flush() and on close().
"""

from __future__ import annotations

import math
import os
import socket
import struct
import threading
import time
import zlib
from datetime import datetime

import numpy as np

from ...errors import not_implemented_error, value_error
from . import _events

_FILES = [0]  # event files this process opened: part of each file's name, as TensorBoard's
_FILES_LOCK = threading.Lock()


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # an ember (or any torch-like) tensor
        x = x.detach()
        if hasattr(x, "cpu"):
            x = x.cpu()
        if getattr(getattr(x, "dtype", None), "name", None) == "bfloat16":
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _scalar(value, what: str) -> float:
    array = _numpy(value)
    if array.size != 1:
        raise value_error(f"{what}: expected a scalar (one element), got shape "
                          f"{list(array.shape)}")
    return float(array.reshape(()))


def _step(global_step) -> int:
    return 0 if global_step is None else int(_scalar(global_step, "global_step"))


class _EventFile:
    """One events.out.tfevents.* file: its records, buffered."""

    def __init__(self, log_dir: str, max_queue: int, flush_secs: float, suffix: str):
        os.makedirs(log_dir, exist_ok=True)
        with _FILES_LOCK:
            number = _FILES[0]
            _FILES[0] += 1
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{number}{suffix}")
        self.path = os.path.join(log_dir, name)
        self.max_queue = max(1, int(max_queue))
        self.flush_secs = flush_secs
        self.lock = threading.Lock()
        self.pending: list[bytes] = []
        self.file = open(self.path, "wb")  # noqa: SIM115  (closed by close())
        self.last_write = time.monotonic()
        self.add(_events.event(time.time(), file_version="brain.Event:2"))
        self.flush()

    def add(self, event: bytes) -> None:
        with self.lock:
            if self.file is None:
                raise value_error(f"the event file {self.path} is closed: make a new "
                                  "SummaryWriter to log again")
            self.pending.append(_events.record(event))
            if (len(self.pending) >= self.max_queue
                    or time.monotonic() - self.last_write >= self.flush_secs):
                self._write()

    def _write(self) -> None:
        if self.pending:
            self.file.write(b"".join(self.pending))
            self.pending.clear()
        self.file.flush()
        self.last_write = time.monotonic()

    def flush(self) -> None:
        with self.lock:
            if self.file is not None:
                self._write()

    def close(self) -> None:
        with self.lock:
            if self.file is not None:
                self._write()
                self.file.close()
                self.file = None


class SummaryWriter:
    """Writes TensorBoard event files under log_dir (default runs/<date>_<host><comment>),
    as torch.utils.tensorboard.SummaryWriter."""

    def __init__(self, log_dir: str | None = None, comment: str = "",
                 purge_step: int | None = None, max_queue: int = 10,
                 flush_secs: float = 120, filename_suffix: str = ""):
        if not log_dir:
            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs", f"{stamp}_{socket.gethostname()}{comment}")
        self.log_dir = str(log_dir)
        self._options = (max_queue, flush_secs, filename_suffix)
        self._file = _EventFile(self.log_dir, *self._options)
        self._scalar_files: dict[str, _EventFile] = {}  # add_scalars' writers by directory
        if purge_step is not None:
            # TensorBoard drops the events at and after this step that an earlier run left
            self._file.add(_events.event(time.time(), int(purge_step), session_start=True))
            self._file.flush()

    def get_logdir(self) -> str:
        return self.log_dir

    def _add(self, value: bytes, global_step, walltime, file: _EventFile | None = None):
        wall = time.time() if walltime is None else float(walltime)
        (file or self._file).add(_events.event(wall, _step(global_step),
                                               summary=_events.summary(value)))

    # -- what is logged ------------------------------------------------------------------------

    def add_scalar(self, tag: str, scalar_value, global_step=None, walltime=None,
                   new_style: bool = False, double_precision: bool = False) -> None:
        """One point of the curve `tag` at global_step."""
        number = _scalar(scalar_value, f"add_scalar({tag!r})")
        if not new_style:
            self._add(_events.value(tag, simple_value=number), global_step, walltime)
            return
        if double_precision:
            tensor = _events.tensor(_events.DT_DOUBLE, (), doubles=[number])
        else:
            tensor = _events.tensor(_events.DT_FLOAT, (), floats=[number])
        self._add(_events.value(tag, tensor=tensor,
                                metadata=_events.plugin_metadata("scalars")),
                  global_step, walltime)

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict, global_step=None,
                    walltime=None) -> None:
        """Several curves on one chart: each tag's points in a run of its own,
        log_dir/<main_tag>_<tag>, under the tag main_tag."""
        wall = time.time() if walltime is None else walltime
        for tag, scalar in tag_scalar_dict.items():
            directory = os.path.join(self.log_dir, f"{main_tag.replace('/', '_')}_{tag}")
            file = self._scalar_files.get(directory)
            if file is None:
                file = self._scalar_files[directory] = _EventFile(directory, *self._options)
            number = _scalar(scalar, f"add_scalars({main_tag!r}, {tag!r})")
            self._add(_events.value(main_tag, simple_value=number), global_step, wall, file)

    def add_histogram(self, tag: str, values, global_step=None, bins="tensorflow",
                      walltime=None, max_bins: int | None = None) -> None:
        """The distribution of values: bins as numpy.histogram takes them, or 'tensorflow'
        (TensorFlow's exponential buckets, the default)."""
        histo = _histogram(_numpy(values).astype(np.float64).reshape(-1), bins, max_bins, tag)
        self._add(_events.value(tag, histo=histo), global_step, walltime)

    def add_image(self, tag: str, img_tensor, global_step=None, walltime=None,
                  dataformats: str = "CHW") -> None:
        """One image: float values in [0, 1] or uint8 in [0, 255]; dataformats CHW, HWC, HW
        or WH (C: 1, 3 or 4 channels)."""
        hwc = _to_hwc(_numpy(img_tensor), dataformats.upper(), tag)
        self._add(_events.value(tag, image=_image(hwc)), global_step, walltime)

    def add_images(self, tag: str, img_tensor, global_step=None, walltime=None,
                   dataformats: str = "NCHW") -> None:
        """A batch of images as one grid, 8 to a row: dataformats NCHW or NHWC."""
        images = _numpy(img_tensor)
        layout = dataformats.upper()
        if layout not in ("NCHW", "NHWC") or images.ndim != 4:
            raise value_error(f"add_images({tag!r}): expected a 4-d batch in NCHW or NHWC, got "
                              f"shape {list(images.shape)} with dataformats {dataformats!r}")
        if layout == "NHWC":
            images = images.transpose(0, 3, 1, 2)
        self.add_image(tag, _grid(images), global_step, walltime, dataformats="CHW")

    def add_text(self, tag: str, text_string: str, global_step=None, walltime=None) -> None:
        """Text (markdown), shown by TensorBoard's text dashboard."""
        tensor = _events.tensor(_events.DT_STRING, (1,), strings=[str(text_string)])
        self._add(_events.value(f"{tag}/text_summary", tensor=tensor,
                                metadata=_events.plugin_metadata("text")),
                  global_step, walltime)

    def _refused(self, name: str):
        def refuse(*args, **kwargs):
            raise not_implemented_error(
                f"SummaryWriter.{name} is not supported by ember's writer: it logs scalars "
                "(add_scalar, add_scalars), histograms, images (add_image, add_images) and "
                "text")
        return refuse

    def __getattr__(self, name: str):
        if name in ("add_graph", "add_embedding", "add_figure", "add_audio", "add_video",
                    "add_pr_curve", "add_pr_curve_raw", "add_mesh", "add_hparams",
                    "add_custom_scalars", "add_histogram_raw", "add_image_with_boxes",
                    "add_onnx_graph"):
            return self._refused(name)
        raise AttributeError(f"'SummaryWriter' object has no attribute {name!r}")

    # -- the files -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every pending event to disk."""
        self._file.flush()
        for file in self._scalar_files.values():
            file.flush()

    def close(self) -> None:
        self._file.close()
        for file in self._scalar_files.values():
            file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- histograms ------------------------------------------------------------------------------


def _tensorflow_buckets() -> np.ndarray:
    """TensorFlow's bucket edges: +-1e-12 growing by 10% to 1e20, and 0."""
    edges = []
    v = 1e-12
    while v < 1e20:
        edges.append(v)
        v *= 1.1
    positive = np.array(edges)
    return np.concatenate([-positive[::-1], [0.0], positive])


_TF_BUCKETS = _tensorflow_buckets()


def _histogram(values: np.ndarray, bins, max_bins, tag: str) -> bytes:
    if values.size == 0:
        raise value_error(f"add_histogram({tag!r}): the values are empty")
    if not np.isfinite(values).all():
        raise value_error(f"add_histogram({tag!r}): the values hold NaN or infinity")
    counts, limits = np.histogram(values, bins=_TF_BUCKETS if bins == "tensorflow" else bins)
    if max_bins is not None and len(counts) > max_bins:
        # every `group` neighbouring buckets merged into one, as PyTorch's writer does
        group = len(counts) // max_bins
        counts = np.pad(counts, (0, (-len(counts)) % group)).reshape(-1, group).sum(1)
        limits = np.concatenate([limits[:-1:group], limits[-1:]])
    # TensorBoard reads each bucket's right edge: the empty buckets around the data are
    # dropped but one on the left, whose right edge is where the data starts
    nonzero = np.flatnonzero(counts)
    first, last = nonzero[0], nonzero[-1]
    right_edges = limits[first:last + 2]
    counts = counts[first - 1:last + 1] if first else np.concatenate([[0], counts[:last + 1]])
    return _events.histogram(float(values.min()), float(values.max()), float(values.size),
                             float(values.sum()), float(np.dot(values, values)),
                             [float(x) for x in right_edges], [float(c) for c in counts])


# -- images ----------------------------------------------------------------------------------


def _to_hwc(image: np.ndarray, layout: str, tag: str) -> np.ndarray:
    if layout not in ("CHW", "HWC", "HW", "WH") or image.ndim != len(layout):
        raise value_error(f"add_image({tag!r}): expected dataformats CHW, HWC, HW or WH matching "
                          f"the image's {image.ndim} dims, got {layout!r} for shape "
                          f"{list(image.shape)}")
    if layout == "HW":
        image = image[:, :, None]
    elif layout == "WH":
        image = image.T[:, :, None]
    elif layout == "CHW":
        image = image.transpose(1, 2, 0)
    if image.shape[2] not in (1, 3, 4):
        raise value_error(f"add_image({tag!r}): expected 1, 3 or 4 channels, got "
                          f"{image.shape[2]} (shape {list(image.shape)}, dataformats "
                          f"{layout!r})")
    scale = 1 if image.dtype == np.uint8 else 255
    return (image.astype(np.float32) * scale).clip(0, 255).astype(np.uint8)


def _grid(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """(N, C, H, W) as one (3, rows*H, columns*W) image; gray images made RGB."""
    n, c, h, w = images.shape
    if c == 1:
        images = np.repeat(images, 3, axis=1)
        c = 3
    columns = max(1, min(n, columns))
    rows = math.ceil(n / columns) if n else 1
    canvas = np.zeros((c, rows * h, columns * w), dtype=images.dtype)
    for i in range(n):
        r, col = divmod(i, columns)
        canvas[:, r * h:(r + 1) * h, col * w:(col + 1) * w] = images[i]
    return canvas


def _png(hwc: np.ndarray) -> bytes:
    """hwc (uint8, 1/3/4 channels) as a PNG file: no filter, zlib-compressed rows."""
    h, w, c = hwc.shape
    color = {1: 0, 3: 2, 4: 6}[c]  # gray, RGB, RGBA

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = np.concatenate([np.zeros((h, 1), np.uint8), hwc.reshape(h, w * c)], axis=1)
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes()))
            + chunk(b"IEND", b""))


def _image(hwc: np.ndarray) -> bytes:
    h, w, c = hwc.shape
    return _events.image(h, w, c, _png(hwc))
