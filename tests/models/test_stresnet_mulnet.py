"""ST-ResNet (thesis ch. 4) and MulNet (ch. 5): behaviour, not only shapes.

The transplant invariants use a tiny Conv2D ResNet built with keras.applications' own residual
blocks (same layer names as ResNet50), so they run in seconds; the real ResNet-50/152 checks
are marked slow.
"""

import numpy as np
import pytest
import tensorflow as tf
import keras
from keras.src.applications.resnet import stack_residual_blocks_v1

import tfzoo
from tfzoo.layers import CrossStreamConnection, GhostBatchNormalization, TemporalConv
from tfzoo.layers.preprocessing import CAFFE_BGR_MEAN
from tfzoo.models.two_stream_resnet import MulNet, STResNet
from tfzoo.models.features import feature_extractor

TINY = (2, 2, 2, 2)
WIDTH = 4
SIZE = 32


def keras_style_resnet(blocks, width, seed):
    """keras.applications' ResNet v1 (names, padding, strides) at a test-sized width, with
    random non-trivial BN statistics."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((None, None, 3))
    x = keras.layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad")(inp)
    x = keras.layers.Conv2D(width, 7, strides=2, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=1.001e-5, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for i, n in enumerate(blocks):
        x = stack_residual_blocks_v1(
            x, width * 2**i, n, stride1=1 if i == 0 else 2, name=f"conv{i + 2}"
        )
    model = keras.Model(inp, x, name=f"tiny_resnet_{seed}")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([
                rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c),
            ])
    return model


def stream_features(model, stream):
    """The stream's maps conv1..conv5 (endpoints `<stream>/convN`), keyed convN."""
    fe = feature_extractor(model, [f"{stream}/conv{i}" for i in range(1, 6)])
    return lambda x, training=False: {k.split("/")[1]: v for k, v in fe(x, training=training).items()}


def framewise(source, blocks, frames):
    """The source applied to every frame: endpoints conv1..conv5 as (B, T, h, w, c)."""
    names = {"conv1": "pool1_pool"}
    names.update({f"conv{i + 2}": f"conv{i + 2}_block{n}_out" for i, n in enumerate(blocks)})
    taps = keras.Model(source.inputs[0], {k: source.get_layer(v).output for k, v in names.items()})
    b, t = frames.shape[:2]
    out = taps(frames.reshape(b * t, *frames.shape[2:]))
    return {k: v.numpy().reshape(b, t, *v.shape[1:]) for k, v in out.items()}


def caffe(rgb):
    return rgb[..., ::-1] - np.asarray(CAFFE_BGR_MEAN, "float32")


def flow_as_rgb(flow):
    # conv1 of the motion stream = mean RGB filter replicated 2L times, so on a flow stack it
    # computes what the RGB filters compute on an image whose 3 channels all hold sum(flow) / 3.
    s = flow.sum(-1, keepdims=True) / 3.0
    return np.repeat(s, 3, axis=-1)


def assert_close(actual, expected, what):
    err = np.abs(actual - expected).max()
    scale = np.abs(expected).max()
    assert err <= 1e-4 * scale + 1e-4, f"{what}: max error {err} (scale {scale})"


def clip(t, seed=0, batch=1):
    rng = np.random.default_rng(seed)
    return {
        "rgb": rng.uniform(0, 255, (batch, t, SIZE, SIZE, 3)).astype("float32"),
        "flow": rng.uniform(-20, 20, (batch, t, SIZE, SIZE, 20)).astype("float32"),  # pixels
    }


@pytest.fixture(scope="module")
def sources():
    return {"rgb": keras_style_resnet(TINY, WIDTH, 1), "flow": keras_style_resnet(TINY, WIDTH, 2)}


def check_streams_equal_framewise(model, sources, blocks, inputs, chunks=slice(None)):
    for stream in ("rgb", "flow"):
        feats = stream_features(model, stream)(inputs, training=False)
        frames = caffe(inputs["rgb"]) if stream == "rgb" else flow_as_rgb(inputs["flow"])
        ref = framewise(sources[stream], blocks[stream], frames)
        for k in ("conv1", "conv2", "conv3", "conv4", "conv5"):
            assert_close(feats[k].numpy()[:, chunks], ref[k][:, chunks], f"{stream} {k}")


# ------------------------------------------------------------------ transplant invariants


def test_stresnet_centre_init_without_connections_is_framewise_resnet(sources):
    model = STResNet(num_classes=3, blocks=TINY, width=WIDTH, fusion="none")
    model.load_pretrained(sources, temporal_init="center")
    blocks = {"rgb": TINY, "flow": TINY}
    check_streams_equal_framewise(model, sources, blocks, clip(4))


@pytest.mark.parametrize("placement", ["residual", pytest.param("shortcut", marks=pytest.mark.slow)])
def test_mulnet_identity_filters_without_connections_is_framewise_resnet(sources, placement):
    flow_blocks = (2, 3, 2, 2)  # a deeper motion stream, as in the 50/152 model
    src = {"rgb": sources["rgb"], "flow": keras_style_resnet(flow_blocks, WIDTH, 3)}
    model = MulNet(num_classes=3, rgb_blocks=TINY, flow_blocks=flow_blocks, width=WIDTH,
                   fusion="none", temporal_filters=placement, temporal_init="center")
    done = model.load_pretrained(src)
    assert "flow_conv3_block3_3_conv" in done
    check_streams_equal_framewise(model, src, {"rgb": TINY, "flow": flow_blocks}, clip(3))


def test_stresnet_average_init_on_constant_clip_is_framewise_on_interior_chunks(sources):
    model = STResNet(num_classes=3, blocks=TINY, width=WIDTH, fusion="none")
    model.load_pretrained(sources)  # eq. 4.5: w / 3 on each tap
    t = 19
    one = clip(1)
    const = {k: np.repeat(v, t, axis=1) for k, v in one.items()}
    for stream in ("rgb", "flow"):
        feats = stream_features(model, stream)(const, training=False)
        frames = caffe(one["rgb"]) if stream == "rgb" else flow_as_rgb(one["flow"])
        ref = framewise(sources[stream], TINY, frames)
        for k, radius in (("conv2", 2), ("conv3", 4), ("conv4", 6), ("conv5", 8)):
            got = feats[k].numpy()[0]
            assert_close(got[radius : t - radius], np.repeat(ref[k], t - 2 * radius, 1)[0],
                         f"{stream} {k} interior")
            # the zero-padded clip ends see fewer taps: the check above is not vacuous
            assert np.abs(got[0] - ref[k][0, 0]).max() > 1e-3


def test_create_model_with_weights_inflates_motion_conv1_and_spreads_temporal_taps(sources):
    entry = tfzoo.registry.get_entry("stresnet50")
    model = tfzoo.create_model("stresnet50", weights=sources["rgb"], num_classes=3,
                               **entry.test_overrides)  # one source for both streams
    w = sources["rgb"].get_layer("conv1_conv").get_weights()[0]  # (7, 7, 3, C)
    flow_k = model.get_layer("flow_conv1_conv").get_weights()[0]
    assert flow_k.shape == (1, 7, 7, 20, WIDTH)
    np.testing.assert_allclose(flow_k[0], np.repeat(w.mean(2, keepdims=True), 20, axis=2),
                               rtol=1e-6)
    np.testing.assert_allclose(model.get_layer("rgb_conv1_conv").get_weights()[0][0], w)
    temporal = [l for l in model.layers
                if isinstance(l, keras.layers.Conv3D) and l.kernel.shape[0] == 3]
    assert len(temporal) == 16  # 2 per stage per stream (thesis §4.4.1)
    for layer in temporal:
        src = sources["rgb"].get_layer(layer.name.split("_", 1)[1]).get_weights()[0]
        k = layer.get_weights()[0]
        for tap in range(3):  # eq. 4.5: w / 3 on every tap
            np.testing.assert_allclose(k[tap], src / 3, rtol=1e-6)


def test_mixed_sources_and_bad_weights_give_clear_errors(sources):
    model = MulNet(num_classes=3, rgb_blocks=TINY, flow_blocks=(2, 3, 2, 2), width=WIDTH)
    with pytest.raises(ValueError, match=r"units per stage \(2, 2, 2, 2\).*flow stream"):
        model.load_pretrained(sources["rgb"])  # the motion stream has an extra unit
    with pytest.raises(ValueError, match="unknown weights key .appearance.; expected one of"):
        model.load_pretrained({"appearance": sources["rgb"]})


# ------------------------------------------------------------------ receptive fields


def receptive_fields(model, inputs, pairs):
    """Chunks of input `wrt` with a nonzero gradient of stream's endpoints at the middle chunk."""
    x = {k: tf.constant(v) for k, v in inputs.items()}
    mid = inputs["rgb"].shape[1] // 2
    out = {}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(list(x.values()))
        feats = {s: stream_features(model, s)(x, training=False) for s in {p[0] for p in pairs}}
        targets = {(s, k): tf.reduce_sum(feats[s][k][:, mid])
                   for s in feats for k in ("conv2", "conv3", "conv4", "conv5")}
    for stream, wrt in pairs:
        fields = []
        for k in ("conv2", "conv3", "conv4", "conv5"):
            g = tape.gradient(targets[stream, k], x[wrt])  # None: not connected at all
            per_chunk = 0 if g is None else np.abs(g.numpy()).sum(axis=(0, 2, 3, 4))
            fields.append(int((np.atleast_1d(per_chunk) > 0).sum()))
        out[stream, wrt] = fields
    return out


def test_stresnet_temporal_receptive_fields_are_table_4_1():
    model = STResNet(num_classes=3, blocks=TINY, width=WIDTH)  # random init, "add" connections
    pairs = [("rgb", "rgb"), ("flow", "flow"), ("rgb", "flow"), ("flow", "rgb")]
    measured = receptive_fields(model, clip(21), pairs)
    print("ST-ResNet temporal receptive fields (chunks):", measured)
    for pair in pairs[:3]:
        assert measured[pair] == [5, 9, 13, 17], pair
    assert measured["flow", "rgb"] == [0, 0, 0, 0]  # the connection runs motion -> appearance


def test_mulnet_receptive_fields_and_directions():
    pairs = [("rgb", "rgb"), ("flow", "rgb"), ("rgb", "flow")]
    # "avg" taps: the centre init's zero taps pass no gradient at initialisation
    model = MulNet(num_classes=3, rgb_blocks=TINY, flow_blocks=TINY, width=WIDTH,
                   temporal_init="avg")
    measured = receptive_fields(model, clip(11), pairs)
    assert measured["rgb", "rgb"] == [3, 5, 7, 9]  # one 1x1x3 filter per stage (‡)
    assert measured["rgb", "flow"] == [3, 5, 7, 9]
    assert measured["flow", "rgb"] == [0, 0, 0, 0]
    model = MulNet(num_classes=3, rgb_blocks=TINY, flow_blocks=TINY, width=WIDTH,
                   temporal_init="avg", temporal_filters="section",
                   direction="appearance_to_motion")
    measured = receptive_fields(model, clip(11), pairs)
    assert measured["rgb", "rgb"] == [1, 1, 1, 3]  # § only in conv5
    assert measured["flow", "rgb"] == [1, 1, 1, 3]
    assert measured["rgb", "flow"] == [0, 0, 0, 0]


# ------------------------------------------------------------------ gating gradients (eq. 5.7)


@pytest.mark.parametrize("fusion", ["multiply", "add"])
def test_gate_gradient_to_motion_stream_is_scaled_by_appearance(fusion):
    model = MulNet(num_classes=3, rgb_blocks=TINY, flow_blocks=TINY, width=WIDTH, fusion=fusion)
    gate = model.get_layer("rgb_conv3_block2_cross")
    assert isinstance(gate, CrossStreamConnection)
    xa_t, xm_t = gate.input
    out_t = model.get_layer("rgb_conv3_block2_out").output
    # the unit's output as a function of (x^a, x^m), and of (x^a, gate output)
    through_gate = keras.Model([xa_t, xm_t], out_t)
    after_gate = keras.Model([xa_t, gate.output], out_t)
    xa, xm = (v.numpy() for v in keras.Model(model.inputs, [xa_t, xm_t])(clip(3)))
    assert (xm == 0).any() and (xm > 0).any()  # both sides of the ReLU are exercised
    shape = through_gate([xa, xm]).shape
    u = np.random.default_rng(0).normal(size=shape).astype("float32")

    def grads(fn, a, b):
        a, b = tf.constant(a), tf.constant(b)
        with tf.GradientTape() as tape:
            tape.watch(b)
            loss = tf.reduce_sum(fn([a, b], training=False) * u)
        return tape.gradient(loss, b).numpy()

    g_motion = grads(through_gate, xa, xm)
    g_gate = grads(after_gate, xa, gate([xa, xm]).numpy())
    scale = xa if fusion == "multiply" else 1.0
    np.testing.assert_allclose(g_motion, g_gate * scale * (xm > 0), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ model API


@pytest.fixture(scope="module")
def star():
    return STResNet(num_classes=4, blocks=TINY, width=WIDTH, star=True, flow_weight=3.0,
                    rgb_bn_group_size=2)


@pytest.fixture(scope="module")
def mulnet_variant():
    return MulNet(num_classes=3, rgb_blocks=TINY, flow_blocks=(2, 3, 2, 2), width=WIDTH,
                  connection="direct", fusion="add", direction="bidirectional",
                  temporal_filters="dagger", temporal_init="avg", flow_weight=3.0)


def test_outputs_fusion_and_star_pooling(star):
    inputs = clip(11, batch=2)
    out = star(inputs)
    np.testing.assert_allclose(out["fused"], (out["rgb"] + 3 * out["flow"]) / 4, rtol=1e-5)
    pooled = keras.Model(star.inputs, star.get_layer("rgb_chunk_pool").output)(inputs)
    assert pooled.shape == (2, 4, 8 * WIDTH * 4)  # 11 chunks -> 4 (Table 4.1)
    assert star.get_layer("rgb_temporal_pool").mode == "avg"
    assert star.get_layer("flow_chunk_pool").pool_size == 5


def test_mulnet_head_is_global_temporal_max_with_motion_dropout():
    mul = tfzoo.create_model("mulnet50_152", num_classes=4,
                             **tfzoo.registry.get_entry("mulnet50_152").test_overrides)
    assert mul.get_layer("rgb_temporal_pool").mode == "max"  # eq. 5.10
    assert mul.get_layer("flow_dropout").rate == 0.8
    assert "rgb_dropout" not in [layer.name for layer in mul.layers]
    crosses = [l.name for l in mul.layers if isinstance(l, CrossStreamConnection)]
    assert sorted(crosses) == [f"rgb_conv{s}_block2_cross" for s in (2, 3, 4, 5)]
    assert all(mul.get_layer(n).mode == "multiply" for n in crosses)
    temporal = sorted(l.name for l in mul.layers if isinstance(l, TemporalConv))
    assert temporal == sorted(f"{s}_conv{k}_block2_temporal" for s in ("rgb", "flow")
                              for k in (2, 3, 4, 5))  # ‡, centre init
    assert mul(clip(3))["fused"].shape == (1, 4)


def test_sub_batch_bn_per_stream(star):
    bns = [l for l in star.layers if isinstance(l, keras.layers.BatchNormalization)]
    ghost = [l for l in bns if isinstance(l, GhostBatchNormalization)]
    assert ghost and all(l.name.startswith("rgb_") and l.group_size == 2 for l in ghost)
    assert all(l.name.startswith("flow_") for l in bns if l not in ghost)


def test_direct_bidirectional_connections_feed_both_paths(mulnet_variant):
    for s in ("rgb", "flow"):
        cross = mulnet_variant.get_layer(f"{s}_conv4_block2_cross")
        consumers = {n.operation.name for n in cross._outbound_nodes}
        # direct: the fused signal feeds the shortcut (the Add) and the residual branch
        assert {f"{s}_conv4_block2_1_conv", f"{s}_conv4_block2_add"} <= consumers
        assert isinstance(mulnet_variant.get_layer(f"{s}_conv4_temporal"), TemporalConv)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rgb_blocks=(1, 1, 1, 1)), "at least 2"),
        (dict(direction="sideways"), "unknown direction .sideways.; expected one of"),
        (dict(temporal_filters="everywhere"), "unknown temporal_filters .everywhere.; expected one of"),
        (dict(fusion="concat"), "unknown fusion .concat.; expected one of"),
        (dict(num_classes=0), "num_classes"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, match):
    args = dict(num_classes=3, rgb_blocks=TINY, flow_blocks=TINY, width=WIDTH)
    with pytest.raises(ValueError, match=match):
        MulNet(**{**args, **kwargs})


def test_wrong_input_channels_are_reported(star):
    bad = clip(2)
    bad["flow"] = bad["flow"][..., :10]
    with pytest.raises(ValueError, match="'flow'.*10 channels"):
        star(bad)


@pytest.mark.parametrize("which", ["mulnet_variant", pytest.param("star", marks=pytest.mark.slow)])
def test_keras_round_trip_keeps_outputs(tmp_path, request, which):
    model = request.getfixturevalue(which)
    inputs = clip(5)
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    expected, got = model(inputs), loaded(inputs)
    for k in ("rgb", "flow", "fused"):
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-5)
    assert loaded.endpoints == model.endpoints


def test_registry_presets_carry_the_papers_settings():
    assert {"stresnet50", "stresnet50_star", "mulnet50_152"} <= set(tfzoo.list_models())
    get = tfzoo.registry.get_entry
    assert get("mulnet50_152").defaults["rgb_blocks"] == (3, 4, 6, 3)
    assert get("mulnet50_152").defaults["flow_blocks"] == (3, 8, 36, 3)
    assert get("stresnet50_star").defaults["star"] is True
    for name in ("stresnet50", "stresnet50_star"):
        assert get(name).defaults["rgb_bn_group_size"] == 4  # Table 4.2: BN batch 4


@pytest.mark.slow
def test_saved_model_signature_takes_rgb_and_flow(tmp_path, mulnet_variant):
    model = mulnet_variant
    path = str(tmp_path / "mulnet")
    model.export(path, verbose=False)
    loaded = tf.saved_model.load(path)
    sig = loaded.signatures["serving_default"]
    specs = sig.structured_input_signature[1]
    assert set(specs) == {"rgb", "flow"}
    assert specs["rgb"].shape.as_list() == [None, None, None, None, 3]
    assert specs["flow"].shape.as_list() == [None, None, None, None, 20]
    inputs = clip(3)
    out = sig(**{k: tf.constant(v) for k, v in inputs.items()})
    expected = model(inputs)
    for k in ("rgb", "flow", "fused"):
        np.testing.assert_allclose(out[k], expected[k], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ full size (slow)


@pytest.mark.slow
def test_mulnet50_152_full_size_transplant_from_keras_applications():
    model = tfzoo.create_model("mulnet50_152", num_classes=51)
    sources = {"rgb": keras.applications.ResNet50(weights=None, include_top=False),
               "flow": keras.applications.ResNet152(weights=None, include_top=False)}
    done = model.load_pretrained(sources)
    assert "flow_conv4_block36_3_conv" in done and "rgb_conv5_block3_3_bn" in done
    crosses = [l.name for l in model.layers if isinstance(l, CrossStreamConnection)]
    assert sorted(crosses) == [f"rgb_conv{s}_block2_cross" for s in (2, 3, 4, 5)]
    temporal = [l.name for l in model.layers if isinstance(l, TemporalConv)]
    assert len(temporal) == 8
    out = model(clip(2))
    assert out["fused"].shape == (1, 51)


@pytest.mark.slow
def test_stresnet50_full_size_equals_keras_resnet50_framewise():
    model = tfzoo.create_model("stresnet50", num_classes=101, fusion="none")
    source = keras.applications.ResNet50(weights=None, include_top=False)
    model.load_pretrained(source, temporal_init="center")
    inputs = clip(2)
    feats = stream_features(model, "rgb")(inputs, training=False)["conv5"].numpy()
    ref = source(caffe(inputs["rgb"]).reshape(-1, SIZE, SIZE, 3)).numpy()
    assert_close(feats.reshape(ref.shape), ref, "rgb conv5")


@pytest.mark.e2e
def test_train_streams_trains_one_stream_and_freezes_the_other():
    from tfzoo.models.base import set_trainable_streams

    keras.utils.set_random_seed(0)
    model = tfzoo.create_model("stresnet50", num_classes=3, blocks=TINY, width=WIDTH,
                               fusion="none", temporal_kernels=(1, 1, 1))
    frozen = set_trainable_streams(model, ("rgb",))
    assert frozen > 0
    assert all(not l.trainable for l in model.layers if l.name.startswith("flow_") and l.weights)
    before = {w.path: w.numpy().copy() for w in model.weights}
    sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.SGD(0.1), loss={"rgb": sce, "flow": sce})
    rng = np.random.default_rng(0)
    x = {"rgb": rng.uniform(0, 255, (4, 1, SIZE, SIZE, 3)).astype("float32"),
         "flow": rng.normal(0, 3, (4, 1, SIZE, SIZE, 20)).astype("float32")}
    y = np.array([0, 1, 2, 0])
    model.fit(x, {"rgb": y, "flow": y}, epochs=1, batch_size=4, verbose=0)
    moved = {p for p, v in before.items()
             if not np.array_equal(v, next(w for w in model.weights if w.path == p).numpy())}
    # Every change is in the appearance stream (kernels and BN statistics alike).
    assert moved and all(p.startswith("rgb_") for p in moved), sorted(moved)[:5]
    assert any("predictions" in p for p in moved)
    with pytest.raises(ValueError, match=r"subset of \['flow', 'rgb'\]"):
        set_trainable_streams(model, ("depth",))
    with pytest.raises(ValueError, match="no separate streams"):
        set_trainable_streams(tfzoo.create_model("resnet_small", num_classes=3), ("rgb",))
