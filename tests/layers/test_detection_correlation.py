"""Correlation against a brute-force loop over positions and offsets (eq. 8.4)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfzoo.layers import Correlation
from _references import correlation_loop


@pytest.mark.parametrize("h, w, d, stride, s2", [(7, 9, 3, 1, 1), (7, 9, 4, 2, 1),
                                                 (8, 11, 4, 2, 2), (5, 6, 0, 1, 1),
                                                 (4, 5, 6, 1, 1),
                                                 # wider than one 32-column block
                                                 (3, 70, 3, 1, 1), (4, 75, 4, 2, 2)])
def test_correlation_matches_loop(h, w, d, stride, s2):
    rng = np.random.default_rng(h * w + d)
    x1 = rng.normal(size=(2, h, w, 5)).astype("float32")
    x2 = rng.normal(size=(2, h, w, 5)).astype("float32")
    got = Correlation(d, stride=stride, displacement_stride=s2)([x1, x2]).numpy()
    np.testing.assert_allclose(got, correlation_loop(x1, x2, d, stride, s2), atol=1e-5)


def test_correlation_in_a_graph_of_unknown_sizes():
    # a SavedModel with free image sizes traces the layer once with (None, None, None, D) maps
    layer = Correlation(3)
    spec = tf.TensorSpec((None, None, None, 4), tf.float32)
    fn = tf.function(lambda a, b: layer([a, b]), input_signature=[spec, spec])
    rng = np.random.default_rng(5)
    for h, w in ((5, 21), (9, 6)):
        x1, x2 = (rng.normal(size=(1, h, w, 4)).astype("float32") for _ in range(2))
        np.testing.assert_allclose(fn(x1, x2).numpy(), correlation_loop(x1, x2, 3), atol=1e-5)


def test_correlation_finds_the_shift():
    # x_tau is x_t moved down 2 and left 1: the response at (p, q) = (2, -1) is the largest
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 12, 12, 128)).astype("float32")
    shifted = np.zeros_like(x)
    shifted[:, 2:, :-1] = x[:, :-2, 1:]
    c = Correlation(3)([x, shifted]).numpy()[0, 3:9, 3:9]
    assert np.all(c.argmax(-1) == (2 + 3) * 7 + (-1 + 3))


@pytest.mark.parametrize("d, stride, s2", [(1, 2, 1), (1, 1, 1), (2, 2, 2)])
def test_correlation_gradient(d, stride, s2):
    # (1, 2, 1): the banded path; the others the blocked one (stride == displacement stride)
    rng = np.random.default_rng(1)
    x1 = tf.constant(rng.normal(size=(1, 3, 4, 2)), tf.float64)
    x2 = tf.constant(rng.normal(size=(1, 3, 4, 2)), tf.float64)
    layer = Correlation(d, stride=stride, displacement_stride=s2, dtype="float64")
    theo, num = tf.test.compute_gradient(tf.function(lambda a, b: layer([a, b])), [x1, x2])
    for t, n in zip(theo, num):
        np.testing.assert_allclose(t, n, atol=1e-6)
        assert np.abs(t).sum() > 0


def test_correlation_config_and_errors():
    layer = Correlation(8, stride=2, displacement_stride=2)
    again = Correlation.from_config(layer.get_config())
    assert (again.max_displacement, again.stride, again.displacement_stride) == (8, 2, 2)
    a, b = keras.Input((6, 7, 4)), keras.Input((6, 7, 4))
    out = Correlation(2, stride=2)([a, b])
    assert tuple(out.shape) == (None, 3, 4, 25)
    with pytest.raises(ValueError, match="must divide max_displacement"):
        Correlation(8, displacement_stride=3)
    with pytest.raises(ValueError, match="same shape"):
        Correlation(2)([np.zeros((1, 4, 4, 3), "float32"), np.zeros((1, 4, 5, 3), "float32")])
