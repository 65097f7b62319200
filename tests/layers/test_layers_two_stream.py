"""Layers of the two-stream ResNets against numpy references: ghost BN, temporal conv and
pooling, cross-stream connections, score fusion."""

import numpy as np
import pytest

from tfzoo.layers.fusion import LateFusion
import tensorflow as tf
import keras

from tfzoo.layers import (
    CrossStreamConnection,
    GhostBatchNormalization,
    TemporalConv,
    TemporalPooling,
)

RNG = np.random.default_rng(0)


def roundtrip(layer):
    return layer.__class__.from_config(layer.get_config())


# ---------------------------------------------------------------- ghost batch normalisation


def ghost_bn_reference(x, group_size, gamma, beta, eps):
    out = np.empty_like(x)
    means, variances, sizes = [], [], []
    for start in range(0, len(x), group_size):
        g = x[start : start + group_size]
        axes = tuple(range(g.ndim - 1))
        m, v = g.mean(axes), g.var(axes)
        out[start : start + group_size] = (g - m) / np.sqrt(v + eps) * gamma + beta
        means.append(m), variances.append(v), sizes.append(g.size / g.shape[-1])
    w = np.array(sizes)[:, None] / sum(sizes)
    return out, (w * np.array(means)).sum(0), (w * np.array(variances)).sum(0)


@pytest.mark.parametrize("batch,group_size", [(8, 4), (6, 4), (3, 1), (5, 8)])
def test_ghost_bn_matches_numpy_per_group(batch, group_size):
    x = RNG.normal(2.0, 3.0, (batch, 3, 4, 4, 5)).astype("float32")
    bn = GhostBatchNormalization(group_size, epsilon=1e-3, momentum=0.9)
    bn.build(x.shape)
    gamma, beta = RNG.normal(size=5).astype("float32"), RNG.normal(size=5).astype("float32")
    bn.gamma.assign(gamma), bn.beta.assign(beta)
    y = bn(x, training=True).numpy()
    ref, mean, var = ghost_bn_reference(x, group_size, gamma, beta, 1e-3)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    # moving averages start at (0, 1) and move 10% towards the batch's group statistics
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-4)


def test_ghost_bn_differs_from_full_batch_bn_and_equals_it_for_one_group():
    x = RNG.normal(size=(8, 2, 3, 3, 4)).astype("float32")
    x[4:] += 5.0  # the two halves have different statistics
    ghost, plain = GhostBatchNormalization(4), keras.layers.BatchNormalization()
    assert not np.allclose(ghost(x, training=True), plain(x, training=True), atol=1e-2)
    one_group = GhostBatchNormalization(8)
    np.testing.assert_allclose(
        one_group(x, training=True), keras.layers.BatchNormalization()(x, training=True), atol=1e-4
    )


def test_ghost_bn_inference_is_plain_bn_and_weights_are_interchangeable():
    x = RNG.normal(size=(4, 2, 3, 3, 4)).astype("float32")
    plain = keras.layers.BatchNormalization(epsilon=1e-3)
    plain.build(x.shape)
    plain.set_weights([RNG.uniform(0.5, 2, 4).astype("float32") for _ in range(4)])
    ghost = GhostBatchNormalization(2, epsilon=1e-3)
    ghost.build(x.shape)
    ghost.set_weights(plain.get_weights())
    np.testing.assert_allclose(ghost(x, training=False), plain(x, training=False), atol=1e-5)


def test_ghost_bn_dynamic_batch_in_graph_and_config():
    bn = GhostBatchNormalization(3, momentum=0.5)
    fn = tf.function(lambda t: bn(t, training=True),
                     input_signature=[tf.TensorSpec([None, 2, 3])])
    x = RNG.normal(size=(7, 2, 3)).astype("float32")
    ref, _, _ = ghost_bn_reference(x, 3, 1.0, 0.0, bn.epsilon)
    np.testing.assert_allclose(fn(x), ref, atol=1e-4)
    clone = roundtrip(bn)
    assert clone.group_size == 3 and clone.momentum == 0.5


def test_ghost_bn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="group_size"):
        GhostBatchNormalization(0)
    with pytest.raises(ValueError, match="channel axis last"):
        GhostBatchNormalization(2, axis=1)(np.zeros((2, 3, 4), "float32"))


# ---------------------------------------------------------------- temporal convolution


def temporal_conv_reference(x, kernel, bias):
    k = kernel.shape[0]
    pad = np.pad(x, ((0, 0), (k // 2, k // 2), (0, 0), (0, 0), (0, 0)))
    out = sum(np.einsum("bthwc,cd->bthwd", pad[:, i : i + x.shape[1]], kernel[i, 0, 0])
              for i in range(k))
    return out + bias


@pytest.mark.parametrize("init", ["center", "avg", "diff", "random"])
def test_temporal_conv_matches_numpy(init):
    x = RNG.normal(size=(2, 5, 3, 3, 4)).astype("float32")
    layer = TemporalConv(3, init=init)
    y = layer(x).numpy()
    kernel, bias = (w.numpy() for w in layer.weights)
    np.testing.assert_allclose(y, temporal_conv_reference(x, kernel, bias), rtol=1e-4, atol=1e-4)
    taps = {"center": [0, 1, 0], "avg": [1 / 3] * 3, "diff": [-1, 3, -1]}.get(init)
    if taps is not None:  # eq. 5.9: identity (x) f
        np.testing.assert_allclose(kernel[:, 0, 0], np.multiply.outer(taps, np.eye(4)), atol=1e-7)
    assert not bias.any()


def test_temporal_conv_identity_inits():
    x = RNG.normal(size=(1, 6, 2, 2, 3)).astype("float32")
    np.testing.assert_allclose(TemporalConv(3, init="center")(x), x, atol=1e-6)
    const = np.repeat(x[:, :1], 6, axis=1)
    y = TemporalConv(3, init="avg")(const).numpy()
    np.testing.assert_allclose(y[:, 1:-1], const[:, 1:-1], atol=1e-5)  # interior only
    np.testing.assert_allclose(y[:, 0], const[:, 0] * 2 / 3, atol=1e-5)  # zero padding


def test_temporal_conv_config_and_errors():
    layer = TemporalConv(5, init="noise", filters=7, use_bias=False, name="t")
    clone = roundtrip(layer)
    assert (clone.kernel_size, clone.init, clone.filters, clone.use_bias) == (5, "noise", 7, False)
    assert clone(np.zeros((1, 2, 1, 1, 3), "float32")).shape == (1, 2, 1, 1, 7)
    with pytest.raises(ValueError, match="odd"):
        TemporalConv(2)
    with pytest.raises(ValueError, match="unknown temporal init 'bogus'"):
        TemporalConv(3, init="bogus")
    with pytest.raises(ValueError, match="C, C"):
        TemporalConv(3, init="center", filters=5)(np.zeros((1, 2, 1, 1, 3), "float32"))


# ---------------------------------------------------------------- temporal pooling


@pytest.mark.parametrize("t,mode", [(11, "max"), (25, "max"), (9, "avg"), (3, "max")])
def test_temporal_pooling_matches_numpy(t, mode):
    x = RNG.normal(size=(2, t, 3, 2, 4)).astype("float32")
    k, s = 5, 2
    padded = np.concatenate([x] + [x[:, -1:]] * max(0, k - t), axis=1)
    reduce = np.max if mode == "max" else np.mean
    ref = np.stack([reduce(padded[:, i : i + k], axis=1)
                    for i in range(0, padded.shape[1] - k + 1, s)], axis=1)
    layer = TemporalPooling(k, s, mode)
    np.testing.assert_allclose(layer(x), ref, rtol=1e-5, atol=1e-6)
    assert layer.compute_output_shape(x.shape)[1] == ref.shape[1]
    if t == 11:
        assert ref.shape[1] == 4  # Table 4.1: 11 training chunks -> 4 pooled outputs


def test_temporal_pooling_rank3_dynamic_and_config():
    layer = TemporalPooling(3, 1, "max")
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, 2])])
    x = RNG.normal(size=(1, 4, 2)).astype("float32")
    ref = np.stack([x[:, i : i + 3].max(1) for i in range(2)], axis=1)
    np.testing.assert_allclose(fn(x), ref)
    assert roundtrip(layer).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="mode"):
        TemporalPooling(mode="median")


# ---------------------------------------------------------------- cross-stream connection


@pytest.mark.parametrize("mode", ["add", "multiply"])
def test_cross_stream_connection_forward_and_gradients(mode):
    xa = RNG.normal(size=(2, 3, 4, 4, 5)).astype("float32")
    xm = RNG.normal(size=(2, 3, 4, 4, 5)).astype("float32")
    upstream = RNG.normal(size=xa.shape).astype("float32")
    layer = CrossStreamConnection(mode)
    a, m = tf.constant(xa), tf.constant(xm)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a, m])
        y = layer([a, m])
        loss = tf.reduce_sum(y * upstream)
    relu_m, active = np.maximum(xm, 0), (xm > 0).astype("float32")
    if mode == "add":  # eq. 4.2 / 5.3 / 5.4
        ref, ga, gm = xa + relu_m, upstream, upstream * active
    else:  # eq. 5.5 / 5.6 / 5.7: each stream's gradient is scaled by the other's signal
        ref, ga, gm = xa * relu_m, upstream * relu_m, upstream * xa * active
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, a), ga, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, m), gm, rtol=1e-5, atol=1e-6)
    assert roundtrip(layer).mode == mode


def test_cross_stream_and_fusion_errors_and_fusion_math():
    with pytest.raises(ValueError, match="'concat'"):
        CrossStreamConnection("concat")
    with pytest.raises(ValueError, match="stream_weights"):
        LateFusion("logits", stream_weights=(1.0, -1.0))
    a, b = RNG.normal(size=(2, 4)).astype("float32"), RNG.normal(size=(2, 4)).astype("float32")
    fusion = roundtrip(LateFusion("logits", stream_weights=(1.0, 3.0)))
    np.testing.assert_allclose(fusion([a, b]), (a + 3 * b) / 4, rtol=1e-6)
