"""tf.data readers of prepared TFRecords (`python -m tfzoo.data.prepare`): a `VideoSource`.

Training (thesis §4.3.5, §5.4.1, §7.3.3): one clip per visit of a video, `spec.num_frames`
frames with a random first frame and a random temporal stride tau in `spec.stride_range`
(a video shorter than (T-1)*tau+1 frames gets the largest stride that fits, then repeats its
last frame: see `augment.train_indices`). Each motion chunk stacks L = `spec.flow_stack` flow
fields centred on its RGB frame t: fields t-L/2 .. t+L/2-1 (field i is frame i -> i+1),
clamped to the video, channels u1, v1, u2, v2, ... One crop box and one flip for every frame
and for both streams: the appearance crop (width/height jitter +/-25%, at most 25% from the
borders) for RGB and two-stream inputs; a flow-only source uses the motion crop (width and
height from {256, 224, 192, 168} at a corner or the centre). `spec.crop="motion"` (a stage training only the motion stream) uses the motion crop for
two-stream inputs too. Resized to `spec.image_size`; flow values stay as stored, as in the
reference code (`spec.flow_rescale` scales them by the resize factor instead), and a flip
negates u. The pipeline decodes only the crop's window of each frame and flow field and leaves
the clip packed (`tfzoo.data.packed`); the resize and the rest run in the model's train step.

Test: every video once, in the stored order, `spec.test_num_frames` equally spaced frames,
the full frame with its shorter side resized to `spec.test_short_side` (no flip: evaluate adds
it).

Everything random is drawn from stateless seeds derived from `seed` and the element's position,
so a pipeline is deterministic under its seed at any parallelism.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from pathlib import Path

import tensorflow as tf

from tfzoo.data import augment, packed, records
from tfzoo.flow.stacks import flow_indices
from tfzoo.data.base import ClipSpec, DatasetInfo, DataError
from tfzoo.video import test_indices

AUTOTUNE = tf.data.AUTOTUNE
STREAMS = ("rgb", "flow")


def load_manifest(data_dir) -> dict:
    path = Path(data_dir) / records.MANIFEST
    if not path.exists():
        raise DataError(f"{str(data_dir)!r} is not a prepared dataset: {records.MANIFEST} is "
                        f"missing (run `python -m tfzoo.data.prepare ... --out {data_dir}` and "
                        f"let it finish)")
    m = json.loads(path.read_text())
    if m.get("format_version") != records.FORMAT_VERSION:
        raise DataError(f"{path}: format_version {m.get('format_version')!r}, expected "
                        f"{records.FORMAT_VERSION} (prepare the data again)")
    return m


def _decode_jpegs(strings, channels: int, window=None):
    """JPEG strings -> uint8 (N, H, W, C); with `window` [y, x, h, w] only those pixels (libjpeg
    skips the rest of each row and stops after the last row: `tf.io.decode_and_crop_jpeg`)."""
    if window is None:
        def fn(b):
            return tf.io.decode_jpeg(b, channels=channels)
    else:
        def fn(b):
            return tf.io.decode_and_crop_jpeg(b, window, channels=channels)
    return tf.map_fn(fn, strings, fn_output_signature=tf.uint8)


def flow_code_stacks(flow_u, flow_v, idx):
    """JPEG flow planes -> uint8 codes (T, H, W, 2L), channels u1, v1, u2, v2, ...

    Each distinct field of `idx` (T, L) is decoded once (neighbouring chunks share fields), and
    the stacks are assembled in uint8, a quarter of the bytes of float.
    """
    t, l = tf.shape(idx)[0], tf.shape(idx)[1]
    fields, pos = tf.unique(tf.reshape(idx, [-1]))
    u = _decode_jpegs(tf.gather(flow_u, fields), 1)[..., 0]
    v = _decode_jpegs(tf.gather(flow_v, fields), 1)[..., 0]
    planes = tf.gather(tf.stack([u, v], axis=1), pos)  # (T*L, 2, H, W)
    h, w = tf.shape(planes)[2], tf.shape(planes)[3]
    return tf.transpose(tf.reshape(planes, [t, 2 * l, h, w]), [0, 2, 3, 1])


def decode_flow_chunks(flow_u, flow_v, idx):
    """JPEG flow planes -> float32 (T, H, W, 2L) in pixels, channels u1, v1, u2, v2, ..."""
    return records.decode_flow(flow_code_stacks(flow_u, flow_v, idx), records.FLOW_BOUND)


def scale_flow(flow, sy, sx):
    """Multiplies u channels by sx and v channels by sy (after resizing by those factors)."""
    c = tf.shape(flow)[-1]
    factor = tf.where(tf.range(c) % 2 == 0, tf.cast(sx, tf.float32), tf.cast(sy, tf.float32))
    return flow * factor


class RecordSource:
    """Prepared TFRecords as a `VideoSource`.

    data_dir: output of `python -m tfzoo.data.prepare`.
    streams: ("rgb",) (default), ("flow",), or ("rgb", "flow"). One stream gives a tensor
        (T, H, W, 3) or (T, H, W, 2L); two give {"rgb": ..., "flow": ...}.
    shuffle_buffer: videos held for shuffling in training (each is a whole serialized video,
        a few MB at 256 px: keep it modest; the shard order is shuffled too).
    cycle_length: shards read in parallel (interleaved) in training.
    num_input_pipelines, input_pipeline_id: multi-worker sharding (or pass a
        tf.distribute.InputContext to `dataset`): each worker reads its own subset of shards,
        or of records when there are fewer shards than workers.
    packed: training clips leave the pipeline packed (`tfzoo.data.packed`: the decoded crop
        windows in uint8 and the crop box on them, a few MB instead of tens) and become
        the float clip in the model's train step, on the device; batch them with
        `padded_batch`. False: the float clip in the pipeline (the same values), as every
        VideoSource gives; for code that reads training clips itself.
    """

    def __init__(self, data_dir, *, streams=("rgb",), shuffle_buffer: int = 64,
                 cycle_length: int = 4, num_input_pipelines: int = 1,
                 input_pipeline_id: int = 0, packed: bool = True):
        self.data_dir = Path(data_dir)
        self.manifest = load_manifest(data_dir)
        streams = tuple(streams)
        if not streams or any(s not in STREAMS for s in streams) or len(set(streams)) != len(streams):
            raise DataError(f"streams={streams!r}: expected a non-empty subset of {STREAMS}")
        if "flow" in streams and "flow" not in self.manifest["streams"]:
            raise DataError(f"{data_dir} has no optical flow (prepared with --flow none); "
                            f"prepare it with --flow tvl1 or --flow opencv to read the flow stream")
        if not 0 <= input_pipeline_id < num_input_pipelines:
            raise DataError(f"input_pipeline_id {input_pipeline_id} not in "
                            f"[0, {num_input_pipelines})")
        self.streams = streams
        self.shuffle_buffer = int(shuffle_buffer)
        self.cycle_length = int(cycle_length)
        self.num_input_pipelines = int(num_input_pipelines)
        self.input_pipeline_id = int(input_pipeline_id)
        self.packed = bool(packed)
        m = self.manifest
        self.info = DatasetInfo(
            name=m["dataset"], class_names=list(m["class_names"]), num_videos=dict(m["splits"]),
            streams=streams,
            extra={"data_dir": str(self.data_dir), "counts": m["counts"],
                   "short_side": m["params"]["short_side"], "skipped": len(m["skipped"])})

    # ------------------------------------------------------------------ helpers
    def _files(self, split: str) -> list[str]:
        if split not in self.manifest["splits"]:
            raise DataError(f"split {split!r} not in {self.data_dir}; available: "
                            f"{sorted(self.manifest['splits'])}")
        return [str(self.data_dir / s["file"]) for s in self.manifest["shards"]
                if s["splits"].get(split, 0) > 0]

    def _records(self, split, files, *, training, seed, n_pipes, pipe_id):
        split_t = tf.constant(split)
        by_file = len(files) >= n_pipes
        if by_file and n_pipes > 1:
            files = files[pipe_id::n_pipes]
        ds = tf.data.Dataset.from_tensor_slices(files)
        if training:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
            ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(self.cycle_length,
                               len(files)), num_parallel_calls=AUTOTUNE, deterministic=True)
        else:
            ds = ds.flat_map(tf.data.TFRecordDataset)

        def in_split(x):
            return tf.reduce_any(tf.equal(tf.io.parse_single_example(x, records.SPLITS_SPEC)
                                          ["splits"], split_t))

        ds = ds.filter(in_split)
        if not by_file and n_pipes > 1:
            ds = ds.shard(n_pipes, pipe_id)
        if "flow" in self.streams:
            def has_flow(x):
                ex = tf.io.parse_single_example(
                    x, {"num_frames": tf.io.FixedLenFeature([], tf.int64)})
                return ex["num_frames"] >= 2
            ds = ds.filter(has_flow)
        if training:
            ds = ds.shuffle(self.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
        return ds

    def _draw(self, ex, seed, spec: ClipSpec, training: bool) -> dict:
        """Every random choice of one clip: frame indices, flow fields, crop box, flip."""
        n = tf.cast(ex["num_frames"], tf.int32)
        s_idx, s_crop, s_flip = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        if training:
            idx = augment.train_indices(n, spec.num_frames, spec.stride_range, s_idx)
        else:
            idx = test_indices(n, spec.test_num_frames)
        out = {"idx": idx}
        if "flow" in self.streams:
            out["flow_idx"] = flow_indices(idx, n, spec.flow_stack)
        if training:
            h = tf.cast(ex["height"], tf.int32)
            w = tf.cast(ex["width"], tf.int32)
            if spec.crop == "motion" or (spec.crop == "auto" and self.streams == ("flow",)):
                out["box"] = augment.multiscale_corner_box(h, w, s_crop)
            else:
                out["box"] = augment.jitter_crop_box(h, w, s_crop, scale_jitter=spec.scale_jitter,
                                                     border=spec.border)
            out["flip"] = (tf.random.stateless_uniform([], s_flip) < 0.5 if spec.flip
                           else tf.constant(False))
        return out

    def _sample(self, serialized, seed, spec: ClipSpec, training: bool):
        ex = records.parse_example(serialized, with_flow="flow" in self.streams)
        d = self._draw(ex, seed, spec, training)
        if training:
            inputs = self._train_packed(ex, d, spec)
            if not self.packed:
                inputs = packed.unpack_one(inputs)
        else:
            out = self._test_frames(ex, d, spec)
            inputs = out[self.streams[0]] if len(self.streams) == 1 else out
        return inputs, tf.cast(ex["label"], tf.int32)

    def _train_packed(self, ex, d, spec: ClipSpec) -> dict:
        # The crop box is drawn before decoding, so only the window it reads is decoded (and
        # ringed by its edge pixels); the rest (flow stacks, flip of u, bilinear resize, flow
        # codes to pixels) is
        # `packed.unpack`'s, on the device. Together they give `augment.crop_resize` of the
        # full decoded frames, with the flip done by mirroring the box
        # (tests/data/test_data_readers.py checks the values against it).
        h, w = tf.cast(ex["height"], tf.int32), tf.cast(ex["width"], tf.int32)
        window, wbox = augment.crop_window(h, w, d["box"], spec.image_size)
        wbox = tf.where(d["flip"], tf.gather(wbox, [0, 3, 2, 1]), wbox)
        # the output size travels as the static shape of an empty tensor (no bytes)
        p = {"window": window[2:] + 2, "box": wbox, "size": tf.zeros([*spec.image_size, 0])}
        if "rgb" in self.streams:
            p["rgb"] = augment.pad_edges(
                _decode_jpegs(tf.gather(ex["frames"], d["idx"]), 3, window))
        if "flow" in self.streams:
            # each distinct field once: neighbouring chunks share fields
            fields, pos = tf.unique(tf.reshape(d["flow_idx"], [-1]))
            p["flow_u"] = augment.pad_edges(
                _decode_jpegs(tf.gather(ex["flow_u"], fields), 1, window))
            p["flow_v"] = augment.pad_edges(
                _decode_jpegs(tf.gather(ex["flow_v"], fields), 1, window))
            p["flow_fields"] = tf.reshape(pos, [spec.num_frames, spec.flow_stack])
            p["flow_negate_u"] = d["flip"]
            if spec.flow_rescale:
                box = d["box"]
                sy = spec.image_size[0] / ((box[2] - box[0]) * tf.cast(h, tf.float32))
                sx = spec.image_size[1] / ((box[3] - box[1]) * tf.cast(w, tf.float32))
                p["flow_scale"] = tf.stack([sx, sy])
            else:
                p["flow_scale"] = tf.ones([2], tf.float32)
        return {packed.PACKED: p}

    def _test_frames(self, ex, d, spec: ClipSpec) -> dict:
        out = {}
        if "rgb" in self.streams:
            out["rgb"] = _decode_jpegs(tf.gather(ex["frames"], d["idx"]), 3)
        if "flow" in self.streams:
            out["flow"] = decode_flow_chunks(ex["flow_u"], ex["flow_v"], d["flow_idx"])
        hf = tf.cast(ex["height"], tf.float32)
        wf = tf.cast(ex["width"], tf.float32)
        for k in out:
            x = out[k]
            if spec.test_short_side is not None:
                x = augment.resize_short_side(x, spec.test_short_side)
                if k == "flow" and spec.flow_rescale:
                    nh = tf.cast(tf.shape(x)[1], tf.float32)
                    nw = tf.cast(tf.shape(x)[2], tf.float32)
                    x = scale_flow(x, nh / hf, nw / wf)
            out[k] = tf.cast(x, tf.float32)
        return out

    # ------------------------------------------------------------------ protocol
    def dataset(self, split: str, *, training: bool, spec: ClipSpec, seed: int,
                input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Unbatched (inputs, label); training: shuffled, augmented, repeated forever, and
        packed unless `packed=False` (`tfzoo.data.packed`: batch with `padded_batch`)."""
        if training:
            keep_large_blocks()
        return self.clips(split, self._sample, training=training, spec=spec, seed=seed,
                          input_context=input_context)

    def clips(self, split: str, sample_fn, *, training: bool, spec: ClipSpec, seed: int,
              input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """The records of `split` mapped by `sample_fn(serialized, seed, spec, training)`, with
        the per-clip seeds, parallelism and options of `dataset` (which passes `_sample`; the
        input bench passes its decode-only floor, to time the same JPEGs the same way)."""
        files = self._files(split)
        if not files:
            raise DataError(f"split {split!r} of {self.data_dir} holds no videos")
        n_pipes, pipe_id = self.num_input_pipelines, self.input_pipeline_id
        if input_context is not None:
            n_pipes, pipe_id = input_context.num_input_pipelines, input_context.input_pipeline_id
        seed = int(seed)
        ds = self._records(split, files, training=training, seed=seed, n_pipes=n_pipes,
                           pipe_id=pipe_id)
        ds = ds.enumerate()

        def fn(i, x):
            # per-element seed from (seed, worker, position): reproducible at any parallelism
            s = tf.stack([tf.cast(seed * 1000003 + pipe_id, tf.int64), i])
            return sample_fn(x, s, spec, training)

        ds = ds.map(fn, num_parallel_calls=AUTOTUNE, deterministic=True)
        opts = tf.data.Options()
        opts.deterministic = True
        # the shards are already split per worker above
        opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(opts).prefetch(AUTOTUNE)


_LARGE_BLOCKS_KEPT = False


def keep_large_blocks() -> None:
    """Lets glibc's malloc reuse freed blocks of up to 1 GB instead of unmapping them.

    A training clip is tens of MB (11 x 224 x 224 x 20 float32 flow is 44 MB, its batch four
    times that): above glibc's 32 MB ceiling for heap blocks, every clip is a fresh mmap whose
    pages fault in and are zeroed again, which cost as much as the crop itself (measured in
    docs/data.md). Raising the mmap and trim thresholds keeps such blocks for the next clip;
    the price is that freed memory stays with the process. Called once by a training
    pipeline and by a tf.data service worker; does nothing on other C libraries.
    """
    global _LARGE_BLOCKS_KEPT
    if _LARGE_BLOCKS_KEPT:
        return
    _LARGE_BLOCKS_KEPT = True

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc (musl, macOS): their allocators decide for themselves
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    mallopt(m_mmap_threshold, 1 << 30)
    mallopt(m_trim_threshold, (1 << 31) - 1)
