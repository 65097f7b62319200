"""Two-stream fusion layers against numpy references (thesis eq. 3.1-3.6)."""

import math

import keras
import numpy as np
import pytest

from tfzoo.backbones.vgg import LocalResponseNormalization
from tfzoo.layers.fusion import (
    AlignSpatial,
    BilinearFusion,
    ConvFusion,
    LateFusion,
    SpatialFusion,
    conv_fusion_kernel,
    fusion_layer,
    gaussian_kernel,
)
from tfzoo.layers.pooling import SpatioTemporalMaxPooling

RNG = np.random.default_rng(0)


def _pair(shape_a=(2, 3, 5, 4, 6), shape_b=None):
    a = RNG.normal(size=shape_a).astype("float32")
    b = RNG.normal(size=shape_b or shape_a).astype("float32")
    return a, b


def np_conv3d_same(x, kernel, bias=None):
    """Reference 'same' (zero padded, stride 1) 3-D convolution, channels last."""
    kt, kh, kw, _, cout = kernel.shape
    b, t, h, w, _ = x.shape
    xp = np.pad(x, [(0, 0), (kt // 2,) * 2, (kh // 2,) * 2, (kw // 2,) * 2, (0, 0)])
    out = np.zeros((b, t, h, w, cout), "float64")
    for dt in range(kt):
        for dh in range(kh):
            for dw in range(kw):
                out += np.einsum("bthwc,cd->bthwd", xp[:, dt : dt + t, dh : dh + h, dw : dw + w], kernel[dt, dh, dw])
    return out + (0 if bias is None else bias)


def np_smooth_same(x, g):
    """Correlates every channel of x with the (T, H, W) kernel g, zero padded."""
    c = x.shape[-1]
    return np_conv3d_same(x, g[..., None, None] * np.eye(c))


def _roundtrip(layer):
    cfg = keras.saving.serialize_keras_object(layer)
    return keras.saving.deserialize_keras_object(cfg)


# -- spatial fusion (eq. 3.1-3.3) ------------------------------------------------------------


@pytest.mark.parametrize(
    "method, ref",
    [
        ("sum", lambda a, b: a + b),
        ("max", np.maximum),
        ("concat", lambda a, b: np.concatenate([a, b], -1)),
    ],
)
def test_spatial_fusion_matches_numpy(method, ref):
    a, b = _pair()
    layer = SpatialFusion(method)
    np.testing.assert_allclose(layer([a, b]).numpy(), ref(a, b), rtol=1e-6)
    again = _roundtrip(layer)
    assert again.get_config() == layer.get_config()
    np.testing.assert_allclose(again([a, b]).numpy(), ref(a, b), rtol=1e-6)


def test_max_fusion_routes_gradient_to_the_larger_input():
    import tensorflow as tf

    a, b = (tf.constant(v) for v in _pair((1, 1, 2, 2, 3)))
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        y = tf.reduce_sum(SpatialFusion("max")([a, b]))
    ga, gb = tape.gradient(y, [a, b])
    np.testing.assert_array_equal(ga.numpy() + gb.numpy(), np.ones(a.shape))
    np.testing.assert_array_equal(ga.numpy(), (a.numpy() > b.numpy()).astype("float32"))


def test_sum_fusion_rejects_different_channel_counts():
    a, b = _pair((1, 1, 2, 2, 4), (1, 1, 2, 2, 3))
    with pytest.raises(ValueError, match=r"equal channel counts, got 4 \(x_a\) and 3"):
        SpatialFusion("sum")([a, b])


def test_unknown_fusion_methods_are_named():
    with pytest.raises(ValueError, match="'avg'.*expected one of"):
        SpatialFusion("avg")
    with pytest.raises(ValueError, match="'product'"):
        fusion_layer("product", name="f")
    with pytest.raises(ValueError, match="'gauss'"):
        ConvFusion(init="gauss")


# -- conv fusion (eq. 3.4, 3.6) ----------------------------------------------------------------


def test_gaussian_kernel_is_normalised_and_isotropic():
    g = gaussian_kernel((3, 3, 3), sigma=1.0)
    assert g.shape == (3, 3, 3)
    assert math.isclose(g.sum(), 1.0, rel_tol=1e-12)
    # exp(-d^2 / 2) falloff: centre / face neighbour = e^0.5, centre / corner = e^1.5
    assert math.isclose(g[1, 1, 1] / g[0, 1, 1], math.exp(0.5), rel_tol=1e-12)
    assert math.isclose(g[1, 1, 1] / g[0, 0, 0], math.exp(1.5), rel_tol=1e-12)
    np.testing.assert_allclose(g, np.transpose(g, (2, 0, 1)))
    assert gaussian_kernel((1, 1, 1)).item() == 1.0


def test_conv_fusion_identity_init_equals_sum_fusion():
    a, b = _pair()
    conv = ConvFusion(kernel_size=(1, 1, 1), init_weights=(1.0, 1.0))
    np.testing.assert_allclose(conv([a, b]).numpy(), SpatialFusion("sum")([a, b]).numpy(), atol=1e-5)
    assert conv.kernel.shape == (1, 1, 1, 12, 6)


def test_3d_conv_fusion_init_is_gaussian_smoothed_weighted_sum():
    # Thesis §3.3.5: [0.25 I; 0.75 I] x normalised 3x3x3 Gaussian (sigma 1).
    a, b = _pair((2, 5, 6, 7, 4))
    layer = ConvFusion(kernel_size=(3, 3, 3), init_weights=(0.25, 0.75), sigma=1.0)
    expected = np_smooth_same(0.25 * a.astype("float64") + 0.75 * b, gaussian_kernel((3, 3, 3), 1.0))
    np.testing.assert_allclose(layer([a, b]).numpy(), expected, atol=1e-5)
    # Away from the borders a constant input passes through with weight 0.25 + 0.75.
    ones = np.ones((1, 5, 5, 5, 4), "float32")
    y = layer([ones, ones]).numpy()
    np.testing.assert_allclose(y[0, 2, 2, 2], np.ones(4), rtol=1e-6)


def test_conv_fusion_with_trained_weights_matches_numpy_conv():
    a, b = _pair((1, 4, 5, 6, 3), (1, 4, 5, 6, 2))
    layer = ConvFusion(filters=5, kernel_size=(3, 1, 3), init="random")
    layer([a, b])
    kernel = RNG.normal(size=(3, 1, 3, 5, 5)).astype("float32")
    bias = RNG.normal(size=(5,)).astype("float32")
    layer.set_weights([kernel, bias])
    expected = np_conv3d_same(np.concatenate([a, b], -1).astype("float64"), kernel, bias)
    np.testing.assert_allclose(layer([a, b]).numpy(), expected, atol=1e-4)
    again = _roundtrip(layer)
    again([a, b])
    again.set_weights(layer.get_weights())
    np.testing.assert_allclose(again([a, b]).numpy(), expected, atol=1e-4)
    assert again.get_config() == layer.get_config()


def test_conv_fusion_kernel_rectangular_identities():
    k = conv_fusion_kernel((1, 1, 1), channels_a=3, channels_b=2, filters=3, weights=(0.5, 2.0))
    assert k.shape == (1, 1, 1, 5, 3)
    np.testing.assert_array_equal(k[0, 0, 0, :3], 0.5 * np.eye(3))
    np.testing.assert_array_equal(k[0, 0, 0, 3:], 2.0 * np.eye(2, 3))


# -- bilinear fusion (eq. 3.5) ------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [False, True])
def test_bilinear_fusion_matches_numpy(normalize):
    a, b = _pair((2, 3, 4, 5, 3), (2, 3, 4, 5, 2))
    y = np.einsum("bthwi,bthwj->btij", a.astype("float64"), b).reshape(2, 3, 6)
    if normalize:
        y = np.sign(y) * np.sqrt(np.abs(y))
        y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    layer = BilinearFusion(normalize=normalize)
    np.testing.assert_allclose(layer([a, b]).numpy(), y, rtol=1e-4, atol=1e-5)
    assert _roundtrip(layer).get_config() == layer.get_config()


# -- alignment and score fusion -----------------------------------------------------------------


def test_align_spatial_pads_and_crops_bottom_right():
    x = RNG.normal(size=(1, 2, 13, 15, 3)).astype("float32")
    ref = np.zeros((1, 2, 14, 14, 7), "float32")
    y = AlignSpatial()([x, ref]).numpy()
    expected = np.zeros((1, 2, 14, 14, 3), "float32")
    expected[:, :, :13, :14] = x[:, :, :, :14]
    np.testing.assert_array_equal(y, expected)


def test_score_fusion_modes():
    s = [RNG.normal(size=(4, 6)).astype("float32") for _ in range(2)]
    np.testing.assert_allclose(LateFusion("logits")(s).numpy(), (s[0] + s[1]) / 2, rtol=1e-6)

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    out = LateFusion("softmax")(s).numpy()
    np.testing.assert_allclose(softmax(out), (softmax(s[0]) + softmax(s[1])) / 2, rtol=1e-5)
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="'max'"):
        LateFusion("max")


# -- 3-D pooling (§3.3.3) -------------------------------------------------------------------------


def np_max_pool(x, size, strides, temporal_padding, spatial_padding):
    """Brute-force 3-D max pooling with TF-style padding (-inf, extra at the end)."""
    pads = []
    for n, k, s, p in zip(x.shape[1:4], size, strides, (temporal_padding,) + (spatial_padding,) * 2):
        if p == "same":
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        else:
            pads.append((0, 0))
    xp = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-np.inf)
    outs = [(xp.shape[i + 1] - k) // s + 1 for i, (k, s) in enumerate(zip(size, strides))]
    y = np.empty((x.shape[0], *outs, x.shape[-1]), x.dtype)
    for t in range(outs[0]):
        for i in range(outs[1]):
            for j in range(outs[2]):
                win = xp[:, t * strides[0] : t * strides[0] + size[0],
                         i * strides[1] : i * strides[1] + size[1],
                         j * strides[2] : j * strides[2] + size[2]]
                y[:, t, i, j] = win.max(axis=(1, 2, 3))
    return y


@pytest.mark.parametrize(
    "t, size, strides, tpad, spad",
    [
        (5, (3, 3, 3), (2, 2, 2), "same", "valid"),  # the proposed pool5 (VGG-M), T = 5 -> 3
        (5, (3, 2, 2), (2, 2, 2), "valid", "valid"),  # VGG-16 pool5, valid in time -> 2
        (4, (2, 3, 3), (1, 2, 2), "same", "same"),
        (3, (1, 3, 3), (1, 2, 2), "same", "valid"),  # 2-D pooling
    ],
)
def test_spatiotemporal_max_pooling_matches_numpy(t, size, strides, tpad, spad):
    x = RNG.normal(size=(2, t, 13, 13, 3)).astype("float32")
    layer = SpatioTemporalMaxPooling(size, strides, temporal_padding=tpad, spatial_padding=spad)
    y = layer(x).numpy()
    np.testing.assert_array_equal(y, np_max_pool(x, size, strides, tpad, spad))
    assert tuple(layer.compute_output_shape(x.shape)) == y.shape
    again = _roundtrip(layer)
    assert again.get_config() == layer.get_config()
    np.testing.assert_array_equal(again(x).numpy(), y)


def test_spatiotemporal_max_pooling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="temporal_padding.*'full'"):
        SpatioTemporalMaxPooling(temporal_padding="full")
    with pytest.raises(ValueError, match="pool_size"):
        SpatioTemporalMaxPooling(pool_size=(3, 3))


# -- VGG-M's local response normalisation --------------------------------------------------------


def test_local_response_normalization_matches_numpy():
    x = np.abs(RNG.normal(size=(2, 3, 4, 4, 9))).astype("float32") * 50
    layer = LocalResponseNormalization(radius=2, bias=2.0, alpha=1e-4, beta=0.75)
    sq = np.pad(x.astype("float64") ** 2, [(0, 0)] * 4 + [(2, 2)])
    window = sum(sq[..., i : i + 9] for i in range(5))
    expected = x / (2.0 + 1e-4 * window) ** 0.75
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5)
    assert _roundtrip(layer).get_config() == layer.get_config()
