"""The prepared-data format: one tf.train.Example per video in sharded TFRecord files.

    OUT/manifest.json                 what is there (see `prepare`), written last
    OUT/plan.json                     the shard assignment and parameters (for resuming)
    OUT/shard-00007-of-00040.tfrecord one Example per video
    OUT/shard-00007-of-00040.json     per-shard summary; its presence marks the shard finished

Example features (frames at the prepared resolution, shorter side 256 by default):
    video_id      bytes        unique id (relative path without extension)
    label         int64        class index (-1: none, e.g. an ImageNet VID snippet without
                               objects of the 30 classes)
    splits        bytes list   split names the video belongs to ("train1", "test", ...)
    num_frames, height, width  int64
    fps           float
    frames        bytes list   RGB JPEG per frame
    flow_u/flow_v bytes list   grey JPEG per flow field (num_frames - 1 of each, or absent):
                               flow field i is from frame i to frame i + 1, in pixels at the
                               stored resolution, clipped to +/-FLOW_BOUND and mapped
                               linearly to uint8 (thesis §3.3.5, §4.3.5)
    sample_frames int64 list   training frames of a snippet (ImageNet VID, §8.5.1), optional
    box_frame, box_track, box_label  int64 lists; box float list (xmin, ymin, xmax, ymax per
                               box, pixels at the stored resolution): ImageNet VID/DET objects
    attrs         bytes        JSON of extra attributes (camera, source, group)
"""

from __future__ import annotations

import json
import os
import struct
import tempfile

import google_crc32c
import numpy as np
import tensorflow as tf

from tfzoo.errors import DataError
from tfzoo.flow.encoding import DEFAULT_BOUND, decode_flow, encode_flow
from tfzoo.utils import varint as _varint

FORMAT_VERSION = 1
FLOW_BOUND = DEFAULT_BOUND  # px; larger displacements are clipped before storage
FLOW_STEP = 2 * FLOW_BOUND / 255.0  # one uint8 level in pixels (0.157 px)
MANIFEST = "manifest.json"
PLAN = "plan.json"


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}"


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """RGB (H, W, 3) or grey (H, W) uint8 -> JPEG bytes (OpenCV's libjpeg: faster than TF's
    in worker processes; the reader decodes with tf.io.decode_jpeg)."""
    import cv2  # deferred: optional OpenCV (the test extra)

    img = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    # 4:4:4 chroma for frames keeps colour edges; flow planes are grey anyway
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR") and image.ndim == 3:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buf = cv2.imencode(".jpg", img, params)
    if not ok:
        raise DataError(f"JPEG encoding failed for an image of shape {image.shape}")
    return buf.tobytes()


def encode_flow_jpegs(flow: np.ndarray, quality: int) -> tuple[bytes, bytes]:
    """One flow field (H, W, 2) in pixels -> (u JPEG, v JPEG)."""
    q = encode_flow(flow, FLOW_BOUND)
    return encode_jpeg(q[..., 0], quality), encode_jpeg(q[..., 1], quality)


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def make_example(*, video_id: str, label: int, splits, frames: list[bytes], height: int,
                 width: int, fps: float = 0.0, flow_u: list[bytes] | None = None,
                 flow_v: list[bytes] | None = None, sample_frames=None, boxes=None,
                 attrs: dict | None = None) -> bytes:
    """Serialises one video. `boxes`: list of (frame, track, label, xmin, ymin, xmax, ymax)."""
    f = {
        "video_id": _bytes([video_id.encode()]),
        "label": _ints([label]),
        "splits": _bytes([s.encode() for s in splits]),
        "num_frames": _ints([len(frames)]),
        "height": _ints([height]),
        "width": _ints([width]),
        "fps": _floats([fps]),
        "frames": _bytes(frames),
        "attrs": _bytes([json.dumps(attrs or {}, sort_keys=True).encode()]),
    }
    if flow_u is not None:
        if len(flow_u) != len(frames) - 1 or len(flow_v) != len(flow_u):
            raise DataError(f"{video_id}: expected {len(frames) - 1} flow fields, got "
                             f"{len(flow_u)} u and {len(flow_v or [])} v")
        f["flow_u"] = _bytes(flow_u)
        f["flow_v"] = _bytes(flow_v)
    if sample_frames is not None:
        f["sample_frames"] = _ints(sample_frames)
    if boxes:
        b = np.asarray(boxes, np.float64)
        f["box_frame"] = _ints(b[:, 0])
        f["box_track"] = _ints(b[:, 1])
        f["box_label"] = _ints(b[:, 2])
        f["box"] = _floats(b[:, 3:7].reshape(-1))
    return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString()


# ------------------------------------------------------------ streamed writing
# A video's JPEGs are spooled to disk as they are encoded and streamed into its record, so
# writing one video holds a window of decoded frames, never the whole video (issue 24 item 4).
# The record is the protobuf wire encoding of the Example make_example builds (tests parse
# both and compare), framed as TFRecord (length, masked CRC-32C of it, data, masked CRC-32C);
# TensorFlow's reader checks both checksums.

STREAMED = ("frames", "flow_u", "flow_v")  # the per-frame byte lists, in record order


def _delimited_size(n: int) -> int:
    """Bytes of a length-delimited field (1-byte tag) whose payload is n bytes."""
    return 1 + len(_varint(n)) + n


def _masked_crc(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class RecordWriter:
    """A TFRecord file written one record at a time, each record from pieces (so a record
    larger than memory can be streamed). `write(bytes)` is tf.io.TFRecordWriter.write."""

    def __init__(self, path):
        self._f = open(path, "wb")

    def write(self, record: bytes) -> None:
        self.write_pieces(len(record), [record])

    def write_pieces(self, length: int, pieces) -> None:
        head = struct.pack("<Q", length)
        self._f.write(head + struct.pack("<I", _masked_crc(google_crc32c.value(head))))
        crc, written = google_crc32c.Checksum(), 0
        for piece in pieces:
            crc.update(piece)
            self._f.write(piece)
            written += len(piece)
        if written != length:
            raise AssertionError(f"record pieces hold {written} bytes, announced {length}")
        self._f.write(struct.pack("<I", _masked_crc(int.from_bytes(crc.digest(), "big"))))

    def close(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())  # the shard is renamed into place next: it must be whole
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
        else:
            self._f.close()


class SpooledExample:
    """One video's Example built frame by frame: `add("frames", jpeg)` (or "flow_u", "flow_v")
    spools the bytes to a temporary file in `tmp_dir`; `write_to(writer, **fields)` streams
    the record (the other fields as make_example takes them). Memory: the lengths only."""

    def __init__(self, tmp_dir=None):
        self._files = {k: tempfile.TemporaryFile(dir=tmp_dir) for k in STREAMED}
        self.lengths: dict[str, list[int]] = {k: [] for k in STREAMED}

    def add(self, key: str, data: bytes) -> None:
        self._files[key].write(data)
        self.lengths[key].append(len(data))

    def count(self, key: str) -> int:
        return len(self.lengths[key])

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def write_to(self, writer: RecordWriter, **fields) -> None:
        keys = [k for k in STREAMED if self.lengths[k] or k == "frames"]
        if self.lengths["flow_u"]:
            n = self.count("frames")
            if not self.count("flow_u") == self.count("flow_v") == n - 1:
                raise DataError(f"{fields.get('video_id')}: expected {n - 1} flow fields, got "
                                 f"{self.count('flow_u')} u and {self.count('flow_v')} v")
        # the small features through protobuf; the placeholder byte lists are dropped again
        small = tf.train.Example.FromString(make_example(
            frames=[b""] * self.count("frames"), **fields)).features
        for k in STREAMED:
            if k in small.feature:
                del small.feature[k]
        body = small.SerializeToString()  # Features' map entries
        entry_heads, sizes = [], []
        for k in keys:
            bytes_list = sum(_delimited_size(n) for n in self.lengths[k])
            feature = _delimited_size(bytes_list)
            key = k.encode()
            entry = _delimited_size(len(key)) + _delimited_size(feature)
            entry_heads.append(b"\x0a" + _varint(entry) + b"\x0a" + _varint(len(key)) + key
                               + b"\x12" + _varint(feature) + b"\x0a" + _varint(bytes_list))
            sizes.append(_delimited_size(entry))
        features = len(body) + sum(sizes)
        head = b"\x0a" + _varint(features)
        writer.write_pieces(len(head) + features, self._pieces(head + body, keys, entry_heads))

    def _pieces(self, first: bytes, keys, entry_heads, chunk: int = 1 << 20):
        buf = bytearray(first)
        for k, entry_head in zip(keys, entry_heads):
            buf += entry_head
            f = self._files[k]
            f.seek(0)
            for n in self.lengths[k]:
                buf += b"\x0a" + _varint(n) + f.read(n)
                if len(buf) >= chunk:
                    yield bytes(buf)
                    buf.clear()
        yield bytes(buf)


def _spec(with_flow: bool, with_boxes: bool = False):
    spec = {
        "video_id": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "num_frames": tf.io.FixedLenFeature([], tf.int64),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "frames": tf.io.RaggedFeature(tf.string),
    }
    if with_flow:
        spec["flow_u"] = tf.io.RaggedFeature(tf.string)
        spec["flow_v"] = tf.io.RaggedFeature(tf.string)
    if with_boxes:
        spec.update({k: tf.io.RaggedFeature(tf.int64) for k in ("box_frame", "box_track",
                                                                "box_label", "sample_frames")})
        spec["box"] = tf.io.RaggedFeature(tf.float32)
        spec["attrs"] = tf.io.FixedLenFeature([], tf.string)
    return spec


SPLITS_SPEC = {"splits": tf.io.RaggedFeature(tf.string)}


def parse_example(serialized, *, with_flow: bool = False, with_boxes: bool = False) -> dict:
    """tf op: a serialized Example -> dict of tensors (JPEG strings not yet decoded)."""
    return tf.io.parse_single_example(serialized, _spec(with_flow, with_boxes))


def read_examples(path) -> list[dict]:
    """Eager helper (tests, tools): every Example of one shard as a Python dict."""
    out = []
    for rec in tf.data.TFRecordDataset(str(path)):
        ex = tf.train.Example.FromString(rec.numpy())
        d = {}
        for k, v in ex.features.feature.items():
            kind = v.WhichOneof("kind")
            d[k] = list(getattr(v, kind).value)
        d["video_id"] = d["video_id"][0].decode()
        d["label"] = d["label"][0]
        d["splits"] = [s.decode() for s in d["splits"]]
        d["attrs"] = json.loads(d["attrs"][0])
        out.append(d)
    return out
