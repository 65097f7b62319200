"""PSRoIPooling against a brute-force loop written from the Caffe R-FCN layer's arithmetic."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from tfzoo.layers import PSRoIPooling
from _references import psroi_reference


def random_rois(rng, n, batch, img_h, img_w):
    x = rng.uniform(-20, img_w + 20, (n, 2))
    y = rng.uniform(-20, img_h + 20, (n, 2))
    rois = np.stack([rng.integers(0, batch, n), x.min(1), y.min(1), x.max(1), y.max(1)], 1)
    return rois.astype("float32")


def test_psroi_pooling_matches_caffe_loop():
    rng = np.random.default_rng(0)
    k, c, scale = 3, 2, 1 / 4
    maps = rng.normal(size=(2, 9, 11, k * k * c)).astype("float32")
    rois = random_rois(rng, 40, 2, 36, 44)
    # edge cases: halves (C rounds 2.5 -> 3, tf.round -> 2), a degenerate RoI (size clamps to
    # 0.1, bins collapse), a RoI entirely outside the map (all bins empty -> 0)
    rois = np.concatenate([rois, np.array([[0, 2.5, 5.5, 13.5, 21.5], [1, 7, 7, 7, 7],
                                           [1, 100, 100, 120, 130], [0, 0, 0, 43, 35]],
                                          "float32")])
    got = PSRoIPooling(k, c, scale)([maps, rois]).numpy()
    want = psroi_reference(maps, rois, k, c, scale)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.all(got[-2] == 0)  # outside the map
    assert np.any(got[-1] != 0)


def test_psroi_pooling_in_a_graph_matches_caffe_loop():
    # y from 60 to 213 at scale 1/16: extent 9.625, bins of 9.625 / 7 = 1.375, the end of bin 5
    # exactly 12.0; a graph that divides by 7 as a multiplication by 1/7 gets 12.000001 -> 13
    rng = np.random.default_rng(2)
    k, c, scale = 7, 1, 1 / 16
    maps = rng.normal(size=(1, 16, 16, k * k * c)).astype("float32")
    rois = np.concatenate([np.array([[0, 0, 60, 100, 213]], "float32"),
                           random_rois(rng, 20, 1, 256, 256)])
    want = psroi_reference(maps, rois, k, c, scale)
    layer = PSRoIPooling(k, c, scale)
    got = tf.function(lambda m, r: layer([m, r]))(maps, rois).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_psroi_pooling_reads_the_position_sensitive_channel():
    # one constant value per input channel: bin (ph, pw) of output c must read channel
    # (c * k + ph) * k + pw, whatever the RoI
    k, c = 2, 3
    maps = np.broadcast_to(np.arange(k * k * c, dtype="float32"), (1, 6, 6, k * k * c)).copy()
    got = PSRoIPooling(k, c, 1.0)([maps, np.array([[0, 1, 1, 4, 4]], "float32")]).numpy()[0]
    for ph in range(k):
        for pw in range(k):
            for cc in range(c):
                assert got[ph, pw, cc] == (cc * k + ph) * k + pw


def test_psroi_pooling_gradient():
    rng = np.random.default_rng(1)
    k, c = 2, 2
    maps = tf.constant(rng.normal(size=(1, 5, 6, k * k * c)), tf.float64)
    rois = tf.constant([[0, 0, 0, 20, 15], [0, 6, 3, 23, 19]], tf.float32)
    layer = PSRoIPooling(k, c, 1 / 4, dtype="float64")
    theo, num = tf.test.compute_gradient(tf.function(lambda m: layer([m, rois])), [maps])
    np.testing.assert_allclose(theo[0], num[0], atol=1e-6)
    assert np.abs(theo[0]).sum() > 0


def test_psroi_pooling_config_and_errors():
    layer = PSRoIPooling(7, 31, 1 / 16, name="ps")
    cfg = layer.get_config()
    assert (cfg["k"], cfg["channels"], cfg["spatial_scale"]) == (7, 31, 1 / 16)
    again = PSRoIPooling.from_config(cfg)
    assert (again.k, again.channels, again.spatial_scale) == (7, 31, 1 / 16)
    maps = keras.Input((10, 10, 7 * 7 * 31))
    rois = keras.Input((5,), batch_size=None)
    model = keras.Model([maps, rois], PSRoIPooling(7, 31, 1 / 16)([maps, rois]))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    x = np.random.rand(1, 10, 10, 7 * 7 * 31).astype("float32")
    r = np.array([[0, 10, 20, 100, 150]], "float32")
    np.testing.assert_allclose(restored([x, r]), model([x, r]))
    with pytest.raises(ValueError, match="k\\*k\\*channels = 1519"):
        PSRoIPooling(7, 31, 1 / 16)([np.zeros((1, 4, 4, 10), "float32"), r])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        PSRoIPooling(0, 3, 1.0)
