"""Two-stream fusion models (thesis ch. 3): Table 3.1 parameter counts, fusion invariants,
serialisation and export."""

import gc

import keras
import numpy as np
import pytest

from tfzoo.backbones.vgg import VGGTower
from tfzoo.models.fusion import TwoStreamFusion, TwoStreamNet
from tfzoo.registry import create_model, get_entry, list_models

TINY = dict(width_multiplier=1 / 32, fc6_kernel=1)
FULL = 224


def _clip(b=2, t=5, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "rgb": rng.uniform(0, 255, (b, t, size, size, 3)).astype("float32"),
        "flow": rng.normal(0, 3, (b, t, size, size, 20)).astype("float32"),
    }


@pytest.fixture
def zeros_init(monkeypatch):
    """Full-size towers with zero weights: counts don't depend on values, and filling 180M
    weights with zeros is ~10x faster than drawing them at random."""
    monkeypatch.setattr(
        keras.initializers.GlorotUniform, "__call__",
        lambda self, shape, dtype=None: keras.ops.zeros(shape, dtype or "float32"),
    )


def _params(**kwargs) -> int:
    # Building VGG-M at full size is cheap (no forward pass); free it before the next one.
    model = kwargs.pop("cls", TwoStreamFusion)(**kwargs)
    n = model.count_params()
    del model
    keras.backend.clear_session()
    gc.collect()
    return n


# -- Table 3.1 -------------------------------------------------------------------------------

VGGM_RELU5 = dict(spatial_arch="vggm", temporal_arch="vggm", fusion_layers=("relu5",),
                  keep_temporal=False, temporal_pool="2d", fusion_kernel=(1, 1, 1), num_classes=101)


def test_table_3_1_parameter_counts(zeros_init):
    rows = [
        ("Sum, Softmax (two towers)", dict(cls=TwoStreamNet, num_classes=101), 181.42e6),
        ("Max, ReLU5", dict(fusion="max", **VGGM_RELU5), 97.31e6),
        ("Concatenation, ReLU5", dict(fusion="concat", **VGGM_RELU5), 172.81e6),
        ("Sum, ReLU5", dict(fusion="sum", **VGGM_RELU5), 97.31e6),
        ("Conv, ReLU5", dict(fusion="conv", **VGGM_RELU5), 97.58e6),
    ]
    lines = [f"{'Table 3.1 (VGG-M-2048, 101 classes)':38s} {'ours':>9s} {'paper':>9s} {'diff':>7s}"]
    failures = []
    for label, kwargs, paper in rows:
        ours = _params(**kwargs)
        rel = (ours - paper) / paper
        lines.append(f"{label:38s} {ours / 1e6:8.2f}M {paper / 1e6:8.2f}M {100 * rel:+6.2f}%")
        if abs(rel) > 0.005:
            failures.append(label)
    print("\n" + "\n".join(lines))
    assert not failures, f"parameter counts off by more than 0.5%: {failures}\n" + "\n".join(lines)


@pytest.mark.slow
def test_table_3_2_parameter_counts(zeros_init):
    # Conv fusion at different layers. The paper's last row (ReLU3 + ReLU5 + FC6, 190.06M) is
    # not reproducible from its own description: two towers up to fc6 plus one fc7/fc8 are
    # 172.7M and a 1x1 conv fusing the two 4096-d fc6 outputs adds 33.6M, so it is printed
    # but not checked.
    base = {**VGGM_RELU5, "fusion": "conv"}
    rows = [
        ("ReLU2", dict(base, fusion_layers=("relu2",)), 91.90e6, True),
        ("ReLU3", dict(base, fusion_layers=("relu3",)), 93.08e6, True),
        ("ReLU4", dict(base, fusion_layers=("relu4",)), 95.48e6, True),
        ("ReLU5", dict(base), 97.57e6, True),
        ("ReLU5 + FC8", dict(base, fusion_layers=("relu5", "fc8")), 181.68e6, True),
        ("ReLU3 + ReLU5 + FC6", dict(base, fusion_layers=("relu3", "relu5", "fc6")), 190.06e6, False),
    ]
    lines, failures = [], []
    for label, kwargs, paper, checked in rows:
        ours = _params(**kwargs)
        rel = (ours - paper) / paper
        lines.append(f"{label:22s} {ours / 1e6:8.2f}M {paper / 1e6:8.2f}M {100 * rel:+6.2f}%")
        if checked and abs(rel) > 0.005:
            failures.append(label)
    print("\nTable 3.2\n" + "\n".join(lines))
    assert not failures, "\n".join(lines)


def test_proposed_fusion_kernel_is_3x3x3x1024x512(zeros_init):
    model = create_model("fusion_vggm_conv_relu5", num_classes=101)
    assert tuple(model.get_layer("fusion_relu5").kernel.shape) == (3, 3, 3, 1024, 512)
    del model
    keras.backend.clear_session()


# -- towers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch, sizes",
    [
        ("vggm", {"relu1": 109, "relu2": 26, "relu3": 13, "relu5": 13, "pool5": 6, "fc6": 1, "fc8": 1}),
        ("vgg16", {"relu1": 224, "relu2": 112, "relu3": 56, "relu5": 14, "pool5": 7, "fc6": 1, "fc8": 1}),
    ],
)
def test_tower_endpoint_sizes_at_224(arch, sizes):
    # fc6 is a full-size (6x6 / 7x7) valid conv: 224 -> 1x1, as the pretrained nets.
    tower = VGGTower(arch, num_classes=7, width_multiplier=1 / 64)
    ends = tower.build(keras.Input((None, FULL, FULL, 3)))
    for name, size in sizes.items():
        assert tuple(ends[name].shape[2:4]) == (size, size), name
        assert ends[name].shape[-1] == (7 if name == "fc8" else tower.channels(name))


def test_tower_rejects_unknown_endpoint_and_arch():
    with pytest.raises(ValueError, match="'conv5'.*expected one of"):
        VGGTower("vggm").build(keras.Input((None, 64, 64, 3)), stop="conv5")
    with pytest.raises(ValueError, match="'vgg19'"):
        VGGTower("vgg19")


# -- fusion invariants ---------------------------------------------------------------------------


def _copy_weights(src, dst):
    for layer in src.layers:
        if layer.weights:
            dst.get_layer(layer.name).set_weights(layer.get_weights())


def test_conv_fusion_identity_init_equals_sum_fusion_model():
    common = dict(spatial_arch="vggm", temporal_arch="vggm", num_classes=5, keep_temporal=False,
                  temporal_pool="2d", **TINY)
    conv = TwoStreamFusion(fusion="conv", fusion_kernel=(1, 1, 1), fusion_init_weights=(1, 1), **common)
    summ = TwoStreamFusion(fusion="sum", **common)
    _copy_weights(summ, conv)  # same towers; conv has only the extra fusion layer
    x = _clip()
    np.testing.assert_allclose(conv(x).numpy(), summ(x).numpy(), rtol=1e-4, atol=1e-5)


def _logits(out):
    return out["fused"] if isinstance(out, dict) else out


def test_kept_towers_are_averaged_at_test():
    model = create_model("fusion_vggm_conv_relu5", num_classes=6, **TINY)
    x = _clip()
    out = {k: v.numpy() for k, v in model(x).items()}
    assert set(out) == {"rgb", "flow", "fused"}
    np.testing.assert_allclose(out["fused"], (out["rgb"] + out["flow"]) / 2, rtol=1e-5, atol=1e-6)
    # The motion tower sees only the flow; the fused tower sees both.
    out2 = model(dict(x, rgb=x["rgb"][::-1].copy()))
    np.testing.assert_allclose(out2["flow"].numpy(), out["flow"], rtol=1e-6)
    assert not np.allclose(out2["rgb"].numpy(), out["rgb"])
    out3 = model(dict(x, flow=x["flow"][::-1].copy()))
    assert not np.allclose(out3["rgb"].numpy(), out["rgb"])


def test_two_losses_train_step():
    # As tfzoo.train compiles two-stream models: one loss per tower, none on "fused".
    model = create_model("fusion_vggm_conv_relu5", num_classes=4, **TINY)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), jit_compile=False,
                  loss={"rgb": ce, "flow": ce})
    x = _clip(b=2, t=3)
    y = np.array([1, 3])
    before = model.get_layer("fusion_relu5").get_weights()[0].copy()
    logs = model.train_on_batch(x, {"rgb": y, "flow": y, "fused": y}, return_dict=True)
    assert {"rgb_loss", "flow_loss"} <= set(logs), logs
    assert np.isfinite(logs["loss"])
    assert not np.allclose(model.get_layer("fusion_relu5").get_weights()[0], before)


def test_baseline_averages_softmax_posteriors():
    model = create_model("twostream_vggm", num_classes=5, **TINY)
    out = model(_clip())
    probs = keras.ops.softmax(out["fused"]).numpy()
    mean = (keras.ops.softmax(out["rgb"]).numpy() + keras.ops.softmax(out["flow"]).numpy()) / 2
    np.testing.assert_allclose(probs, mean, rtol=1e-5, atol=1e-7)


def test_freeze_below_fusion_trains_only_from_the_fusion_layer_up():
    model = create_model("fusion_vggm_conv_relu5", num_classes=3, freeze_below_fusion=True, **TINY)
    for tower in ("spatial", "temporal"):
        assert not any(model.get_layer(f"{tower}_conv{i}").trainable for i in range(1, 6))
        assert model.get_layer(f"{tower}_fc6").trainable and model.get_layer(f"{tower}_fc8").trainable
    assert model.get_layer("fusion_relu5").trainable
    # 3 layers above the fusion per tower (fc6..fc8) + the fusion layer, kernel and bias each
    assert len(model.trainable_weights) == 2 * (3 * 2) + 2


def test_mixed_towers_are_aligned_at_relu5():
    # VGG-16 relu5_3 is 14x14, VGG-M relu5 13x13 at 224 (thesis §3.3.5): zero-padded to fuse.
    model = create_model("fusion_vgg16m_conv_relu5", num_classes=3, **TINY)
    assert model.get_layer("fusion_relu5_align") is not None
    y = model(_clip(b=1, t=2, size=FULL))["fused"]
    assert y.shape == (1, 3) and np.all(np.isfinite(y.numpy()))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(fusion="conv", fusion_layers=("relu5", "fc8"), fusion_kernel=(1, 1, 1)),  # Fig. 3.1 right
        dict(fusion="conv", fusion_layers=("relu3", "relu5", "fc6"), temporal_pool="2d"),
        dict(fusion="sum", fusion_layers=("fc7",), keep_temporal=True),
        dict(fusion="concat", fusion_layers=("relu4",), keep_temporal=True),
        dict(fusion="bilinear", fusion_layers=("relu5",), keep_temporal=True),
    ],
)
def test_fusion_layer_options_run(kwargs):
    model = TwoStreamFusion(spatial_arch="vggm", temporal_arch="vggm", num_classes=4, **TINY, **kwargs)
    y = _logits(model(_clip(b=1, t=3))).numpy()
    assert y.shape == (1, 4) and np.all(np.isfinite(y))


def test_runs_on_other_frame_sizes_and_clip_lengths():
    # Fully convolutional, any number of chunks (the 3-D pool5 uses "same" padding in time).
    model = create_model("fusion_vgg16_conv_relu5", num_classes=3, **TINY)
    for b, t, size in ((1, 1, 64), (1, 7, 96)):
        assert model(_clip(b=b, t=t, size=size))["fused"].shape == (b, 3)


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="fusion method 'avg'"):
        TwoStreamFusion(fusion="avg", **TINY)
    with pytest.raises(ValueError, match="fusion layer 'conv5'.*relu5"):
        TwoStreamFusion(fusion_layers=("conv5",), **TINY)
    with pytest.raises(ValueError, match="bilinear.*fusion_layers=\\['fc6'\\]"):
        TwoStreamFusion(fusion="bilinear", fusion_layers=("fc6",), **TINY)
    with pytest.raises(ValueError, match="temporal_pool '1d'"):
        TwoStreamFusion(temporal_pool="1d", **TINY)
    # VGG-16 relu2 has 128 channels, VGG-M relu2 256: sum fusion cannot pair them.
    with pytest.raises(ValueError, match="equal channel counts"):
        TwoStreamFusion(spatial_arch="vgg16", temporal_arch="vggm", fusion="sum",
                        fusion_layers=("relu2",), **TINY)


def test_input_checks_name_the_input():
    from tfzoo.models.base import InputSpecError

    model = create_model("twostream_vggm", num_classes=3, **TINY)
    x = _clip(b=1, t=1)
    with pytest.raises(InputSpecError, match="'flow'.*3 channels.*expected 20"):
        model({"rgb": x["rgb"], "flow": x["flow"][..., :3]})
    with pytest.raises(InputSpecError, match="missing input 'flow'"):
        model({"rgb": x["rgb"]})


# -- registry, serialisation, export ---------------------------------------------------------------


def test_registered_names():
    names = set(list_models("fusion_*")) | set(list_models("twostream_*"))
    assert {"fusion_vggm_conv_relu5", "fusion_vgg16_conv_relu5", "twostream_vggm"} <= names
    entry = get_entry("fusion_vgg16_conv_relu5")
    assert entry.defaults["fusion_kernel"] == (3, 3, 3) and entry.defaults["keep_temporal"]


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("fusion_vgg16_conv_relu5", {}),
        ("fusion_vggm_concat_relu5", {}),
        ("twostream_vggm", {"score_fusion": "logits"}),
    ],
)
def test_keras_round_trip(tmp_path, name, overrides):
    model = create_model(name, num_classes=4, **get_entry(name).test_overrides, **overrides)
    x = _clip(b=1, t=5)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    again = keras.saving.load_model(path)  # safe mode: no Lambda layers
    assert type(again) is type(model)
    assert again.get_config() == model.get_config()
    y0, y1 = model(x), again(x)
    if isinstance(y0, dict):
        for k in y0:
            np.testing.assert_allclose(y1[k].numpy(), y0[k].numpy(), rtol=1e-6)
    else:
        np.testing.assert_allclose(y1.numpy(), y0.numpy(), rtol=1e-6)


@pytest.mark.slow
def test_savedmodel_signature_rgb_uint8_and_flow(tmp_path):
    import tensorflow as tf

    model = create_model("fusion_vggm_conv_relu5", num_classes=4, **TINY)

    @tf.function(input_signature=[
        tf.TensorSpec((None, None, None, None, 3), tf.uint8, name="rgb"),
        tf.TensorSpec((None, None, None, None, 20), tf.float32, name="flow"),
    ])
    def serve(rgb, flow):
        logits = model({"rgb": tf.cast(rgb, tf.float32), "flow": flow}, training=False)["fused"]
        return {"probabilities": tf.nn.softmax(logits)}

    module = tf.Module()
    module.model = model
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": serve})
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    x = _clip(b=1, t=5)
    rgb = x["rgb"].astype("uint8")
    out = loaded.signatures["serving_default"](rgb=tf.constant(rgb), flow=tf.constant(x["flow"]))
    expected = keras.ops.softmax(model({"rgb": rgb.astype("float32"), "flow": x["flow"]})["fused"]).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_recipe_stages_chain_by_layer_name():
    # configs/fusion_vgg16_*: stage 2 (fusion) starts from stage 1 (two streams) by layer name,
    # so every tower layer of the fusion model must exist with the same shape in the baseline.
    from tfzoo.config import load_config_file, stage_configs

    for recipe in ("fusion_vgg16_ucf101", "fusion_vgg16_hmdb51"):
        (_, s1), (_, s2) = stage_configs(load_config_file(recipe))
        assert (s1.model, s2.model, s2.num_frames, s2.batch_size) == (
            "twostream_vgg16", "fusion_vgg16_conv_relu5", 5, 96)
        assert (s1.weights, s2.weights) == ("imagenet", None)  # ImageNet towers, then stage 1's
    first = create_model("twostream_vgg16", num_classes=3, **TINY)
    second = create_model("fusion_vgg16_conv_relu5", num_classes=3, freeze_below_fusion=True, **TINY)
    by_name = {layer.name: layer for layer in first.layers}
    fresh = [layer.name for layer in second.layers if layer.weights and layer.name not in by_name]
    assert fresh == ["fusion_relu5"]
    for layer in second.layers:
        if layer.weights and layer.name in by_name:
            assert [w.shape for w in layer.weights] == [w.shape for w in by_name[layer.name].weights]


def test_logits_are_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = create_model("fusion_vgg16m_conv_relu5", num_classes=3, **TINY)
        out = model(_clip(b=1, t=3))
        assert model.get_layer("fusion_relu5").compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert {k: v.dtype.name for k, v in out.items()} == {"rgb": "float32", "flow": "float32", "fused": "float32"}


# -- ImageNet VGG-16 transplant ------------------------------------------------------------

def test_vgg16_transplant_reproduces_keras_vgg16(zeros_init):
    from tfzoo.backbones.transplant import TransplantError

    keras.utils.set_random_seed(0)
    # Random weights stand in for ImageNet's (tests never download). zeros_init zeroes every
    # Glorot init (fast for our 270M weights), so the source's are drawn here, He-scaled so
    # that activations keep their magnitude through 15 layers.
    src = keras.applications.VGG16(weights=None, include_top=True)
    rng = np.random.default_rng(0)
    src.set_weights([
        (rng.normal(0, np.sqrt(2 / np.prod(w.shape[:-1])), w.shape) if w.ndim > 1
         else rng.normal(0, 0.1, w.shape)).astype("float32") for w in src.get_weights()])
    model = TwoStreamNet(num_classes=5, spatial_arch="vgg16", temporal_arch="vgg16")
    done = model.load_pretrained(src)
    assert len(done) == 2 * 15  # 13 convs + fc6 + fc7 per tower; fc8 keeps its init
    frame = rng.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    ours = keras.Model(model.inputs[0], [model.get_layer("spatial_relu5_3").output,
                                          model.get_layer("spatial_relu7").output])
    relu5, fc7 = ours(frame[:, None])
    theirs = keras.Model(src.input, [src.get_layer("block5_conv3").output,
                                     src.get_layer("fc2").output])
    ref5, ref7 = theirs(keras.applications.vgg16.preprocess_input(frame.copy()))
    for ours_, ref in ((relu5.numpy()[:, 0], ref5.numpy()), (fc7.numpy()[:, 0, 0, 0], ref7.numpy())):
        assert ref.std() > 1.0  # real activations, not a vanished signal
        np.testing.assert_allclose(ours_, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # The motion tower: conv1_1 averaged over colour and replicated over the 20 flow channels.
    k = src.get_layer("block1_conv1").get_weights()[0]
    np.testing.assert_allclose(model.get_layer("temporal_conv1_1").get_weights()[0][0],
                               np.repeat(k.mean(2, keepdims=True), 20, axis=2), rtol=1e-6)
    np.testing.assert_array_equal(model.get_layer("temporal_fc7").get_weights()[0][0, 0, 0],
                                  src.get_layer("fc2").get_weights()[0])
    del model, ours
    gc.collect()
    with pytest.raises(TransplantError, match="VGG-16 only"):
        TwoStreamNet(num_classes=5, **TINY).load_pretrained(src)
    with pytest.raises(TransplantError, match="width_multiplier=1.0"):
        TwoStreamNet(num_classes=5, spatial_arch="vgg16", temporal_arch="vgg16",
                     **TINY).load_pretrained(src)


def test_vgg16_imagenet_without_cache_is_a_clear_error(tmp_path, monkeypatch):
    from tfzoo.backbones.transplant import TransplantError

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    model = TwoStreamNet(num_classes=5, spatial_arch="vgg16", temporal_arch="vgg16", **TINY)
    with pytest.raises(TransplantError, match="not in the Keras cache.*does not download"):
        model.load_pretrained({"rgb": "imagenet", "flow": None})
