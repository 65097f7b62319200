"""Issue 22: training clips cross the input pipeline packed as uint8 (`tfzoo.data.packed`) and
become float in the model's train step; the float batch is the one the host pipeline made."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from _data_fixtures import write_prepared
from tfzoo.data import augment, packed, records
from tfzoo.data.base import ClipSpec
from tfzoo.data.readers import RecordSource, _decode_jpegs


def _old_flow_code_stacks(flow_u, flow_v, idx, window, negate_u):
    # tfzoo/data/readers.py at 5d5ecd8 (before packing), verbatim but for the names
    t, l = tf.shape(idx)[0], tf.shape(idx)[1]
    fields, pos = tf.unique(tf.reshape(idx, [-1]))
    u = _decode_jpegs(tf.gather(flow_u, fields), 1, window)[..., 0]
    v = _decode_jpegs(tf.gather(flow_v, fields), 1, window)[..., 0]
    u = tf.cond(negate_u, lambda: tf.constant(255, tf.uint8) - u, lambda: u)
    planes = tf.gather(tf.stack([u, v], axis=1), pos)
    h, w = tf.shape(planes)[2], tf.shape(planes)[3]
    return tf.transpose(tf.reshape(planes, [t, 2 * l, h, w]), [0, 2, 3, 1])


def _old_train_crops(ex, d, spec, streams):
    """The float training clip as the host pipeline made it at 5d5ecd8 (`_train_crops`)."""
    h, w = tf.cast(ex["height"], tf.int32), tf.cast(ex["width"], tf.int32)
    window, wbox = augment.crop_window(h, w, d["box"], spec.image_size)
    wbox = tf.where(d["flip"], tf.gather(wbox, [0, 3, 2, 1]), wbox)
    t = tf.shape(d["idx"])[0]
    boxes, box_idx = tf.tile(wbox[None], [t, 1]), tf.range(t)
    out = {}
    if "rgb" in streams:
        x = augment.pad_edges(_decode_jpegs(tf.gather(ex["frames"], d["idx"]), 3, window))
        out["rgb"] = tf.image.crop_and_resize(x, boxes, box_idx, spec.image_size)
    if "flow" in streams:
        x = _old_flow_code_stacks(ex["flow_u"], ex["flow_v"], d["flow_idx"], window, d["flip"])
        x = tf.image.crop_and_resize(augment.pad_edges(x), boxes, box_idx, spec.image_size)
        x = records.decode_flow(x, records.FLOW_BOUND)
        if spec.flow_rescale:
            box = d["box"]
            sy = spec.image_size[0] / ((box[2] - box[0]) * tf.cast(h, tf.float32))
            sx = spec.image_size[1] / ((box[3] - box[1]) * tf.cast(w, tf.float32))
            c = tf.shape(x)[-1]
            x = x * tf.where(tf.range(c) % 2 == 0, sx, sy)
        out["flow"] = x
    return out


def _videos(rng, sizes, t=14):
    out = []
    for i, (h, w) in enumerate(sizes):
        smooth = np.cumsum(np.cumsum(rng.normal(0, 4, (t, h, w, 3)), 1), 2)
        rgb = np.clip(smooth - smooth.min() + 20, 0, 255).astype(np.uint8)
        flow = rng.uniform(-25, 25, (t - 1, h, w, 2)).astype(np.float32)
        out.append((rgb, flow, i % 2))
    return out


def _padded_batch(elements):
    ds = functools.reduce(lambda a, b: a.concatenate(b),
                          [tf.data.Dataset.from_tensors(e) for e in elements])
    return next(iter(ds.padded_batch(len(elements))))


@pytest.mark.parametrize("crop,rescale", [("auto", False), ("motion", True)])
def test_packed_batch_unpacks_to_the_old_float_batch(tmp_path, crop, rescale):
    # videos of different sizes (one portrait): windows of different sizes in one padded batch
    rng = np.random.default_rng(5)
    d = write_prepared(tmp_path, _videos(rng, [(40, 62), (52, 34), (30, 44)]))
    spec = ClipSpec(num_frames=4, stride_range=(1, 4), image_size=(24, 28), flow_stack=4,
                    crop=crop, flow_rescale=rescale, scale_jitter=0.5, border=0.4)
    streams = ("rgb", "flow")
    src = RecordSource(d, streams=streams)
    recs = list(tf.data.TFRecordDataset(str(d / "shard-00000-of-00001.tfrecord")))
    old, new, flips, sizes = [], [], set(), set()
    for i in range(12):
        rec, seed = recs[i % 3], tf.constant([11, i], tf.int64)
        ex = records.parse_example(rec, with_flow=True)
        draws = src._draw(ex, seed, spec, training=True)
        old.append(_old_train_crops(ex, draws, spec, streams))
        x, _ = src._sample(rec, seed, spec, training=True)
        new.append(x)
        flips.add(bool(draws["flip"]))
        sizes.add(tuple(x[packed.PACKED]["rgb"].shape[1:3]))
    assert flips == {True, False} and len(sizes) > 3
    p = new[0][packed.PACKED]
    assert p["rgb"].dtype == tf.uint8 and p["flow_u"].dtype == tf.uint8
    batch = _padded_batch(new)
    got = tf.function(packed.unpack)(batch)  # as in the train step: a graph
    assert got["rgb"].shape[2:] == (24, 28, 3) and got["flow"].shape[2:] == (24, 28, 8)
    for k in streams:
        want = np.stack([o[k].numpy() for o in old])
        assert got[k].shape == want.shape and got[k].dtype == tf.float32
        # the same kernel on the same pixels; the box is rescaled from the clip's window to
        # the batch's padded canvas, which moves sample positions by float rounding
        np.testing.assert_allclose(got[k].numpy(), want, rtol=1e-5, atol=1e-3, err_msg=k)
    # the float path in the pipeline (packed=False) is the same function per clip
    one = RecordSource(d, streams=streams, packed=False)._sample(recs[1], tf.constant([11, 1],
                                                                 tf.int64), spec, True)[0]
    for k in streams:
        np.testing.assert_allclose(one[k].numpy(), got[k][1].numpy(), rtol=1e-5, atol=1e-3)


def test_packed_clip_is_a_fraction_of_the_float_bytes(tmp_path):
    # 256 x 340 frames, 8 chunks of 224 x 224, L = 10: the packed clip (uint8 windows, each
    # distinct field once) against the float32 clip the pipeline used to emit
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (20, 256, 340, 3), np.uint8)
    flow = rng.uniform(-5, 5, (19, 256, 340, 2)).astype(np.float32)
    d = write_prepared(tmp_path, [(rgb, flow, 0)])
    spec = ClipSpec(num_frames=8, stride_range=(2, 2), image_size=(224, 224), flow_stack=10)
    src = RecordSource(d, streams=("rgb", "flow"))
    rec = next(iter(tf.data.TFRecordDataset(str(d / "shard-00000-of-00001.tfrecord"))))
    x, _ = src._sample(rec, tf.constant([0, 0], tf.int64), spec, True)
    packed_bytes = sum(v.numpy().nbytes for v in tf.nest.flatten(x))
    float_bytes = sum(v.numpy().nbytes for v in tf.nest.flatten(packed.unpack_one(x)))
    assert float_bytes == 8 * 224 * 224 * (3 + 20) * 4
    assert packed_bytes < float_bytes / 8, (packed_bytes, float_bytes)


def test_train_step_unpacks_packed_batches(tmp_path):
    # fit on packed batches trains exactly as fit on the float batches they unpack to: the
    # conversion is the train step's first op (VideoModel.train_step), on the device
    import tfzoo

    rng = np.random.default_rng(1)
    d = write_prepared(tmp_path, _videos(rng, [(40, 50), (36, 48)], t=10), flow=False)
    spec = ClipSpec(num_frames=3, stride_range=(1, 2), image_size=(32, 32))
    ds = RecordSource(d, shuffle_buffer=1).dataset("train", training=True, spec=spec, seed=0)
    ds = ds.padded_batch(2).take(1)
    floats = ds.map(lambda x, y: (packed.unpack(x), y))
    assert packed.is_packed(ds.element_spec[0]) and floats.element_spec[0].dtype == tf.float32

    def train(data):
        keras.utils.set_random_seed(0)
        model = tfzoo.create_model("tresnet_small", num_classes=2, blocks=(1, 1, 1, 1),
                                   width=4)
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        hist = model.fit(data, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
        return hist.history["loss"][0], model.get_weights()

    loss_p, w_p = train(ds)
    loss_f, w_f = train(floats)
    assert np.isfinite(loss_p) and loss_p == pytest.approx(loss_f, rel=1e-5)
    for a, b in zip(w_p, w_f):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
