"""Sampling, augmentation and the tf.data reader of prepared records."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from _data_fixtures import write_prepared
from tfzoo.data import augment, records
from tfzoo.data.base import ClipSpec, DataError
from tfzoo.data.readers import RecordSource
from tfzoo.flow.stacks import flow_indices
from tfzoo import video


def _seed(i):
    return tf.constant([7, i], tf.int64)


def test_train_strides_in_range_and_cover_it():
    taus = set()
    for i in range(300):
        idx = augment.train_indices(400, 8, (5, 15), _seed(i)).numpy()
        d = np.diff(idx)
        assert (d == d[0]).all() and 5 <= d[0] <= 15
        assert idx[0] >= 0 and idx[-1] < 400
        taus.add(int(d[0]))
    assert taus == set(range(5, 16))


def test_stride_jitter_is_uniform_over_the_strides_that_fit():
    # thesis §7.3.3: tau in [5, 15]; a 5 s YUP++ clip (150 frames) fits 16 frames at tau <= 9,
    # so tau is uniform on {5..9} (each ~1/5), not clamped to 9 for every draw above it
    taus = [int(np.diff(augment.train_indices(150, 16, (5, 15), _seed(i)).numpy())[0])
            for i in range(500)]
    counts = np.bincount(taus, minlength=16)
    assert set(taus) == set(range(5, 10))
    assert counts[5:10].max() / counts[5:10].min() < 1.6, counts[5:10]


@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_short_video_rule(n):
    # T*tau exceeds the video: the largest stride that fits, then the last frame repeats
    for i in range(20):
        idx = augment.train_indices(n, 16, (5, 15), _seed(i)).numpy()
        assert idx.min() >= 0 and idx.max() <= n - 1 and (np.diff(idx) >= 0).all()
        if n >= 16:
            assert len(set(idx)) == 16  # stride >= 1 still fits
        else:
            assert idx[-1] == n - 1 and len(set(idx)) == n


def test_test_indices_equally_spaced():
    np.testing.assert_array_equal(video.test_indices(31, 4).numpy(), [0, 10, 20, 30])


def test_crop_resize_is_the_manual_crop_on_every_frame():
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (5, 40, 60, 3)).astype(np.uint8)
    y0, x0, ch, cw = 7, 11, 20, 30
    box = tf.constant([y0 / 40, x0 / 60, (y0 + ch) / 40, (x0 + cw) / 60])
    out = augment.crop_resize(clip, box, (ch, cw)).numpy()
    np.testing.assert_allclose(out, clip[:, y0:y0 + ch, x0:x0 + cw], atol=1e-3)


def test_crop_boxes_obey_the_papers_limits():
    for i in range(200):
        y0, x0, y1, x1 = augment.jitter_crop_box(256, 340, _seed(i)).numpy()
        for lo, hi in ((y0, y1), (x0, x1)):
            if hi - lo >= 0.5:  # at most 25% from each border ...
                assert lo <= 0.25 + 1e-5 and hi >= 0.75 - 1e-5
            else:  # ... cannot hold for a crop under half the frame: it is centred
                assert np.isclose(lo, 1 - hi, atol=1e-4)
        assert 0.75 * 224 - 1 <= (y1 - y0) * 256 <= 1.25 * 224 + 1
        y0, x0, y1, x1 = augment.multiscale_corner_box(256, 340, _seed(i)).numpy()
        assert round((y1 - y0) * 256) in (256, 224, 192, 168)
        assert round((x1 - x0) * 340) in (256, 224, 192, 168)
        assert any(np.isclose(v, c, atol=1e-4) for v, c in ((y0, 0), (y1, 1), ((y0 + y1) / 2, .5)))


def test_flow_jpeg_round_trip_within_quantisation_bound():
    rng = np.random.default_rng(1)
    import cv2

    f = cv2.GaussianBlur(rng.normal(0, 1, (64, 80, 2)).astype(np.float32), (0, 0), 6)
    f = f / np.abs(f).max() * 25.0  # exceeds the +/-20 px clip in places
    clipped = np.clip(f, -20, 20)
    q = records.decode_flow(records.encode_flow(f))
    assert np.abs(q - clipped).max() <= records.FLOW_STEP / 2 + 1e-5
    u, v = records.encode_flow_jpegs(f, 95)
    back = np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE)
                     for b in (u, v)], -1)
    err = np.abs(records.decode_flow(back) - clipped)
    # quality 95 JPEG adds at most two levels on smooth flow (0.31 px), half a level on average
    assert err.max() <= 2.5 * records.FLOW_STEP and err.mean() <= 0.5 * records.FLOW_STEP


def _ramp_video(t=12, h=32, w=48):
    x = np.arange(w, dtype=np.float32)
    rgb = np.zeros((t, h, w, 3), np.uint8)
    rgb[..., 0] = (x * 5).astype(np.uint8)
    rgb[..., 1] = np.arange(t)[:, None, None] * 20  # frame number in green
    flow = np.zeros((t - 1, h, w, 2), np.float32)
    flow[..., 0] = x / w * 10 - 5  # u encodes the source column too
    flow[..., 1] = 3.0 + np.arange(t - 1)[:, None, None] * 0.5  # v encodes the field index
    return rgb, flow


def test_same_crop_and_flip_for_all_frames_and_both_streams(tmp_path):
    rgb, flow = _ramp_video()
    d = write_prepared(tmp_path, [(rgb, flow, 1)])
    spec = ClipSpec(num_frames=4, stride_range=(1, 3), image_size=(16, 16), flow_stack=4,
                    flow_rescale=True)
    src = RecordSource(d, streams=("rgb", "flow"), shuffle_buffer=1, packed=False)
    signs = set()
    for x, y in src.dataset("train", training=True, spec=spec, seed=0).take(24):
        r, f = x["rgb"].numpy(), x["flow"].numpy()
        assert y.numpy() == 1 and f.shape == (4, 16, 16, 8)
        # same spatial crop for every frame: the red ramp (about 15 levels per output pixel)
        # is identical across frames up to JPEG error
        np.testing.assert_allclose(r[..., 0], np.broadcast_to(r[:1, ..., 0], r[..., 0].shape),
                                   atol=2.0)
        # the flow's u follows the same source columns as the image (same crop and flip):
        # u = s * (col / w * 10 - 5) * sx where col = red / 5, s = -1 after a flip
        col = r[0, ..., 0].ravel() / 5
        u = f[0, ..., 0].ravel()
        slope, icpt = np.polyfit(col / 48 * 10 - 5, u, 1)
        assert np.abs(u - (slope * (col / 48 * 10 - 5) + icpt)).max() < 0.35
        assert abs(icpt) < 0.3
        signs.add(np.sign(slope))
        # v is never negated: the field index is recoverable, positive
        assert (f[..., 1::2] > 0).all()
        # sx: 16 output px per crop width; |u| scale between 16/48 (full width) and 16/(0.5*48)
        assert 16 / 48 * 0.95 <= abs(slope) <= 16 / 18 * 1.05
    assert signs == {-1.0, 1.0}


def test_motion_chunks_are_centred_on_the_rgb_frames(tmp_path):
    rgb, flow = _ramp_video()
    d = write_prepared(tmp_path, [(rgb, flow, 0)])
    spec = ClipSpec(test_num_frames=3, test_short_side=None, flow_stack=4)
    x, _ = next(iter(RecordSource(d, streams=("rgb", "flow")).dataset(
        "test", training=False, spec=spec, seed=0)))
    frame = np.round(x["rgb"].numpy()[:, 0, 0, 1] / 20).astype(int)
    np.testing.assert_array_equal(frame, [0, 6, 11])
    field = np.round((x["flow"].numpy()[:, 5, 5, 1::2] - 3.0) / 0.5).astype(int)
    np.testing.assert_array_equal(field, [[0, 0, 0, 1], [4, 5, 6, 7], [9, 10, 10, 10]])
    np.testing.assert_array_equal(flow_indices(tf.constant([6]), 12, 10).numpy()[0],
                                  np.arange(1, 11))


def test_deterministic_under_seed_and_test_set_once_in_order(tmp_path):
    rng = np.random.default_rng(0)
    vids = [(rng.integers(0, 255, (9, 20, 30, 3)).astype(np.uint8), None, i % 2) for i in range(5)]
    d = write_prepared(tmp_path, vids, flow=False)
    spec = ClipSpec(num_frames=3, stride_range=(1, 2), image_size=(12, 12), test_num_frames=2,
                    test_short_side=10)
    src = RecordSource(d, shuffle_buffer=4, packed=False)

    def run(seed):
        return [(x.numpy(), int(y)) for x, y in
                src.dataset("train", training=True, spec=spec, seed=seed).take(8)]

    a, b, c = run(3), run(3), run(4)
    assert all(np.array_equal(p[0], q[0]) and p[1] == q[1] for p, q in zip(a, b))
    assert not all(np.array_equal(p[0], q[0]) for p, q in zip(a, c))
    test = list(src.dataset("test", training=False, spec=spec, seed=0))
    assert [int(y) for _, y in test] == [0, 1, 0, 1, 0]
    assert test[0][0].shape == (2, 10, 15, 3)
    # multi-worker: two pipelines see disjoint halves
    w = [RecordSource(d, num_input_pipelines=2, input_pipeline_id=i) for i in (0, 1)]
    seen = [[x.numpy()[0, 0, 0, 0] for x, _ in s.dataset("test", training=False, spec=spec,
                                                         seed=0)] for s in w]
    assert len(seen[0]) + len(seen[1]) == 5


def test_reader_errors(tmp_path):
    with pytest.raises(DataError, match="manifest.json is missing"):
        RecordSource(tmp_path)
    d = write_prepared(tmp_path, [(np.zeros((3, 8, 8, 3), np.uint8), None, 0)], flow=False)
    with pytest.raises(DataError, match="--flow"):
        RecordSource(d, streams=("rgb", "flow"))
    with pytest.raises(DataError, match="available"):
        RecordSource(d).dataset("val", training=False, spec=ClipSpec(), seed=0)


def test_stored_flow_is_not_rescaled_by_default_and_motion_stage_uses_motion_crops(tmp_path):
    # the reference code feeds the stored flow values unchanged after crop + resize; a stage
    # training only the flow stream crops at corners/centre with sides {256,224,192,168}/256
    from tfzoo.config import TrainConfig
    from tfzoo.data import clip_spec

    rgb, flow = _ramp_video(h=48, w=48)
    d = write_prepared(tmp_path, [(rgb, flow, 1)])
    src = RecordSource(d, streams=("rgb", "flow"), shuffle_buffer=1, packed=False)
    base = TrainConfig(num_frames=2, stride_range=(1, 1), image_size=(16, 16))
    assert clip_spec(base).crop == "auto" and not clip_spec(base).flow_rescale
    motion = clip_spec(base.replace(train_streams=("flow",)))
    assert motion.crop == "motion"
    motion = dataclasses.replace(motion, flow_stack=4)
    for x, _ in src.dataset("train", training=True, spec=motion, seed=0).take(30):
        r, f = x["rgb"].numpy(), x["flow"].numpy()
        col = r[0, ..., 0].ravel() / 5
        u = f[0, ..., 0].ravel()
        slope, _ = np.polyfit(col / 48 * 10 - 5, u, 1)
        assert abs(abs(slope) - 1.0) < 0.06, slope  # raw stored values


def test_streamed_record_is_make_examples_record(tmp_path):
    """Issue 24 item 4: prepare streams each video's JPEGs from a spool file into its record;
    TensorFlow's reader accepts the framing (it checks both CRC-32Cs) and the Example parses
    equal to the one make_example builds in memory."""
    rng = np.random.default_rng(0)
    blobs = {k: [rng.bytes(int(n)) for n in rng.integers(1, 300, 6 if k == "frames" else 5)]
             for k in records.STREAMED}
    blobs["frames"][2] = rng.bytes(200_000)  # lengths with multi-byte varints, > 1 chunk
    fields = dict(video_id="a/b", label=3, splits=("train1", "test2"), height=24, width=32,
                  fps=25.0, sample_frames=[0, 2, 5], attrs={"camera": "static"},
                  boxes=[(0, 1, 2, 1.5, 2.5, 10.0, 12.0), (3, 0, 1, 0.0, 0.0, 5.0, 6.0)])
    path = tmp_path / "x.tfrecord"
    with records.RecordWriter(path) as w:
        for with_flow in (True, False):
            with records.SpooledExample(tmp_path) as sp:
                for k in records.STREAMED if with_flow else ("frames",):
                    for b in blobs[k]:
                        sp.add(k, b)
                sp.write_to(w, **fields)
        w.write(b"plain")
    got = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    assert len(got) == 3 and got[2] == b"plain"
    for rec, with_flow in zip(got, (True, False)):
        want = records.make_example(frames=blobs["frames"],
                                    flow_u=blobs["flow_u"] if with_flow else None,
                                    flow_v=blobs["flow_v"] if with_flow else None, **fields)
        assert tf.train.Example.FromString(rec) == tf.train.Example.FromString(want)
        parsed = records.parse_example(rec, with_flow=with_flow)
        assert [b for b in parsed["frames"].numpy()] == blobs["frames"]


def _reference_train_clip(ex, d, spec, streams):
    """The training clip by definition, for the draws `d`: decode whole frames, stack the flow
    fields in numpy, `augment.crop_resize` in float, flip by reversing columns (and u)."""
    out = {}
    h, w = int(ex["height"]), int(ex["width"])
    box = d["box"]
    flipped = bool(d["flip"])
    if "rgb" in streams:
        frames = np.stack([tf.io.decode_jpeg(ex["frames"][i]).numpy() for i in d["idx"]])
        x = augment.crop_resize(frames.astype(np.float32), box, spec.image_size).numpy()
        out["rgb"] = x[:, :, ::-1] if flipped else x
    if "flow" in streams:
        def planes(key):
            return np.stack([tf.io.decode_jpeg(ex[key][i]).numpy()[..., 0]
                             for i in d["flow_idx"].numpy().ravel()])
        uv = records.decode_flow(np.stack([planes("flow_u"), planes("flow_v")], -1))
        t, l = d["flow_idx"].shape
        uv = uv.reshape(t, l, h, w, 2).transpose(0, 2, 3, 1, 4).reshape(t, h, w, 2 * l)
        x = augment.crop_resize(uv, box, spec.image_size).numpy()
        if spec.flow_rescale:
            b = box.numpy()
            x[..., 0::2] *= spec.image_size[1] / ((b[3] - b[1]) * w)
            x[..., 1::2] *= spec.image_size[0] / ((b[2] - b[0]) * h)
        if flipped:
            x = x[:, :, ::-1].copy()
            x[..., 0::2] *= -1
        out["flow"] = x
    return out


@pytest.mark.parametrize("crop,rescale", [("auto", False), ("motion", True)])
def test_windowed_training_crops_equal_the_full_frame_reference(tmp_path, crop, rescale):
    # the reader decodes only the crop's window (decode_and_crop_jpeg), assembles flow stacks in
    # uint8 with each field once, and flips by mirroring the box and u's code: for the same
    # draws the values must be the reference's (full decode, float crop_resize, reversed columns)
    rng = np.random.default_rng(3)
    t, h, w = 14, 40, 62
    smooth = np.cumsum(np.cumsum(rng.normal(0, 4, (t, h, w, 3)), 1), 2)
    rgb = np.clip(smooth - smooth.min() + 20, 0, 255).astype(np.uint8)
    flow = rng.uniform(-25, 25, (t - 1, h, w, 2)).astype(np.float32)  # beyond the clip too
    d = write_prepared(tmp_path, [(rgb, flow, 1)])
    spec = ClipSpec(num_frames=4, stride_range=(1, 4), image_size=(24, 28), flow_stack=4,
                    crop=crop, flow_rescale=rescale, scale_jitter=0.5, border=0.4)
    streams = ("rgb", "flow")
    src = RecordSource(d, streams=streams, packed=False)
    rec = next(iter(tf.data.TFRecordDataset(str(d / "shard-00000-of-00001.tfrecord"))))
    ex = records.parse_example(rec, with_flow=True)
    flips, edges = set(), 0
    for i in range(24):
        draws = src._draw(ex, _seed(i), spec, training=True)
        fast, label = src._sample(rec, _seed(i), spec, training=True)
        ref = _reference_train_clip(ex, draws, spec, streams)
        flips.add(bool(draws["flip"]))
        window = augment.crop_window(h, w, draws["box"], spec.image_size)[0].numpy()
        edges += window[0] == 0 or window[1] == 0 or window[0] + window[2] == h \
            or window[1] + window[3] == w
        assert int(label) == 1
        for k in streams:
            assert fast[k].shape == ref[k].shape, k
            np.testing.assert_allclose(fast[k].numpy(), ref[k], atol=2e-3, rtol=1e-4,
                                       err_msg=f"{k}, draw {i}")
    assert flips == {True, False} and edges > 0  # both flips and frame borders exercised


def test_training_pipelines_reuse_freed_clip_sized_blocks():
    # a 44 MB flow clip is above glibc's 32 MB mmap ceiling: without keep_large_blocks every
    # clip is a fresh mapping whose pages fault in again (docs/data.md: 22.7k -> 10.9k faults
    # and 179 -> 127 CPU ms per clip). After it, a freed block of that size is reused.
    import ctypes
    import ctypes.util
    import platform
    import resource

    from tfzoo.data.readers import keep_large_blocks

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt thresholds are glibc's")
    keep_large_blocks()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size = 48 << 20

    def faults_of_touching_a_fresh_block():
        # malloc, not numpy: numpy asks for huge pages, which would hide the 4 KB faults
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_touching_a_fresh_block()  # the heap grows once
    assert faults_of_touching_a_fresh_block() < size // 4096 // 10
