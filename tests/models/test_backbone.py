"""Video ResNet backbone: exact keras.applications transplant and T-ResNet invariants."""

import numpy as np
import keras
import pytest
import tensorflow as tf

import tfzoo
from tfzoo.backbones import VideoResNet, transplant
from tfzoo.backbones.transplant import TransplantError, convert_kernel
from tfzoo.models import FrameResNet, TResNet

KERAS_RESNETS = {50: keras.applications.ResNet50, 101: keras.applications.ResNet101,
                 152: keras.applications.ResNet152}
LAST_UNIT = {50: "conv5_block3_out", 101: "conv5_block3_out", 152: "conv5_block3_out"}


def framewise_reference(keras_model, clip):
    b, t, h, w, c = clip.shape
    frames = keras.applications.resnet.preprocess_input(clip.reshape(b * t, h, w, c).copy())
    out = keras_model(frames).numpy()
    return out.reshape(b, t, *out.shape[1:])


@pytest.mark.parametrize("shape", [(1, 3, 37, 45), (2, 1, 64, 64), (1, 2, 33, 97)])
def test_conv5_equals_keras_applications_framewise(keras_resnet50, shape):
    net = VideoResNet()
    transplant(keras_resnet50, net)
    clip = np.random.default_rng(0).uniform(0, 255, (*shape, 3)).astype("float32")
    ours = net(clip)["conv5"].numpy()
    ref = framewise_reference(keras_resnet50, clip)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_create_model_loads_h5_path(keras_resnet50, tmp_path):
    path = tmp_path / "resnet50_notop.weights.h5"
    keras_resnet50.save_weights(path)
    # keras.applications loads `.h5` weight files by layer topology.
    h5 = tmp_path / "resnet50_notop.h5"
    keras_resnet50.save(h5)
    model = tfzoo.create_model("tresnet50", num_classes=4, weights=str(h5))
    np.testing.assert_array_equal(
        model.get_layer("conv3_block2_2_conv").kernel.numpy()[0],
        keras_resnet50.get_layer("conv3_block2_2_conv").kernel.numpy(),
    )


def test_imagenet_without_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(TransplantError, match="not in the Keras cache.*does not download"):
        tfzoo.create_model("resnet50", weights="imagenet")


def test_imagenet_weights_need_a_standard_depth():
    with pytest.raises(TransplantError, match="blocks"):
        tfzoo.create_model("resnet_small", weights="imagenet")


def test_flow_stream_conv1_is_rgb_mean_replicated(keras_resnet50):
    net = VideoResNet(in_channels=20, normalization="none")
    transplant(keras_resnet50, net)
    ours = net.get_layer("conv1_conv").kernel.numpy()[0]  # (7, 7, 20, 64)
    rgb = keras_resnet50.get_layer("conv1_conv").kernel.numpy()  # (7, 7, 3, 64)
    expected = np.repeat(rgb.mean(axis=2, keepdims=True), 20, axis=2)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_temporal_inflation_modes():
    w = np.random.default_rng(0).normal(size=(1, 1, 4, 5)).astype("float32")
    avg = convert_kernel(w, (3, 1, 1, 4, 5), "avg")
    np.testing.assert_allclose(avg.sum(0), w, rtol=1e-6)  # eq. 4.5: w / 3 on each tap
    np.testing.assert_allclose(avg[0], w / 3, rtol=1e-6)
    center = convert_kernel(w, (3, 1, 1, 4, 5), "center")
    np.testing.assert_array_equal(center[1], w)
    assert not center[0].any() and not center[2].any()
    with pytest.raises(TransplantError):
        convert_kernel(w, (3, 3, 3, 4, 5))


def test_output_stride_16_dilates_conv5():
    net = VideoResNet(blocks=(1, 1, 1, 1), width=8, output_stride=16)
    out = net(np.zeros((1, 2, 64, 96, 3), "float32"))
    assert tuple(out["conv4"].shape[2:4]) == (4, 6)
    assert tuple(out["conv5"].shape[2:4]) == (4, 6)
    assert net.get_layer("conv5_block1_2_conv").dilation_rate == (1, 2, 2)


def _endpoint(model, name):
    return keras.Model(model.inputs, model.get_layer(name).output)


def test_tresnet_with_zero_scale_is_the_framewise_resnet():
    kw = dict(num_classes=3, blocks=(1, 2, 1, 1), width=8)
    spatial = FrameResNet(**kw)
    temporal = TResNet(temporal_units=(1, 2), **kw)
    for layer in spatial.layers:  # same names, so stage 2 starts from stage 1
        if layer.weights:
            temporal.get_layer(layer.name).set_weights(layer.get_weights())
    scales = [l for l in temporal.layers if l.name.endswith("_t_scale")]
    assert len(scales) == 5  # units 1 and 2 of conv3, unit 1 elsewhere
    for layer in scales:
        np.testing.assert_allclose(layer.gamma.numpy(), 0.01)  # eq. 7.6 init
        np.testing.assert_array_equal(layer.beta.numpy(), 0)
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    clip = np.random.default_rng(0).uniform(0, 255, (2, 4, 40, 40, 3)).astype("float32")
    a = _endpoint(spatial, "conv5_block1_out")(clip).numpy()
    b = _endpoint(temporal, "conv5_block1_out")(clip).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_tresnet_temporal_receptive_field_grows_by_two_per_temporal_unit():
    model = TResNet(num_classes=2, blocks=(1, 1, 1, 1), width=4, temporal_units=(1,))
    t, mid = 11, 5
    clip = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, t, 32, 32, 3)), tf.float32)
    for stage, expected in (("conv2", 3), ("conv3", 5), ("conv4", 7), ("conv5", 9)):
        sub = _endpoint(model, f"{stage}_block1_out")
        with tf.GradientTape() as tape:
            tape.watch(clip)
            y = tf.reduce_sum(sub(clip)[:, mid])
        g = tape.gradient(y, clip).numpy()
        frames = np.nonzero(np.abs(g).reshape(t, -1).max(1) > 0)[0]
        assert len(frames) == expected, (stage, frames)
        assert frames.min() == mid - expected // 2


def test_temporal_pool_max_vs_avg_and_config_roundtrip():
    model = TResNet(num_classes=3, blocks=(1, 1, 1, 1), width=4, temporal_pool="avg",
                    temporal_init="avg")
    config = model.get_config()
    assert config["temporal_pool"] == "avg" and config["temporal_init"] == "avg"
    clone = TResNet.from_config(config)
    assert clone.get_config() == config
    with pytest.raises(ValueError, match="pooling mode"):
        TResNet(num_classes=3, blocks=(1, 1, 1, 1), width=4, temporal_pool="median")
    with pytest.raises(ValueError, match="temporal init"):
        TResNet(num_classes=3, blocks=(1, 1, 1, 1), width=4, temporal_init="zeros")


@pytest.mark.slow
@pytest.mark.parametrize("depth", [101, 152])
def test_deep_resnets_equal_keras_applications(depth):
    src = KERAS_RESNETS[depth](weights=None, include_top=False)
    model = tfzoo.create_model(f"resnet{depth}", num_classes=2, weights=src)
    clip = np.random.default_rng(0).uniform(0, 255, (1, 2, 45, 51, 3)).astype("float32")
    ours = _endpoint(model, LAST_UNIT[depth])(clip).numpy()
    np.testing.assert_allclose(ours, framewise_reference(src, clip), atol=1e-4)


def _dilated_keras_resnet(model, dilation=2):
    """keras.applications' ResNet with conv5 at stride 16: its first unit's stride moved to 1
    and every conv5 3x3 conv dilated by `dilation` (D&T, thesis §8.5.1), same weights."""

    def clone(layer):
        config = layer.get_config()
        if layer.name in ("conv5_block1_1_conv", "conv5_block1_0_conv"):
            config["strides"] = (1, 1)
        elif layer.name.startswith("conv5_") and layer.name.endswith("_2_conv"):
            config["dilation_rate"] = (dilation, dilation)
        return layer.__class__.from_config(config)

    dilated = keras.models.clone_model(model, clone_function=clone)
    dilated.set_weights(model.get_weights())
    return dilated


def test_output_stride_16_transplant_is_exact_on_conv4_and_dilated_conv5(keras_resnet50):
    net = VideoResNet(output_stride=16)
    transplant(keras_resnet50, net)
    clip = np.random.default_rng(1).uniform(0, 255, (1, 1, 64, 80, 3)).astype("float32")
    out = net(clip)
    conv4 = keras.Model(keras_resnet50.inputs, keras_resnet50.get_layer("conv4_block6_out").output)
    np.testing.assert_allclose(out["conv4"].numpy(), framewise_reference(conv4, clip),
                               atol=1e-4, rtol=0)
    dilated = _dilated_keras_resnet(keras_resnet50)
    ref = framewise_reference(dilated, clip)
    assert ref.shape[2:4] == (4, 5)  # stride 16, not 32
    np.testing.assert_allclose(out["conv5"].numpy(), ref, atol=1e-4, rtol=0)
    # the dilation matters: stride 1 without it gives other conv5 values
    undilated = framewise_reference(_dilated_keras_resnet(keras_resnet50, 1), clip)
    assert np.abs(undilated - ref).max() > 1e-2
