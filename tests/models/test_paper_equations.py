"""The models follow the thesis's equations (issue 12), each checked against a numpy reference."""

from __future__ import annotations

import keras
import numpy as np

from tfzoo.models.heads import classification_head


def test_eq_5_10_temporal_max_per_location_then_spatial_average():
    # Each location peaks at a different time: max_t per location then mean_hw (eq. 5.10)
    # differs from mean_hw then max_t.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 3, 3, 4)).astype("float32")
    inp = keras.Input((None, 3, 3, 4))
    paper = keras.Model(inp, classification_head(inp, None, temporal_pool="max", time_first=True))
    other = keras.Model(inp, classification_head(inp, None, temporal_pool="max"))
    np.testing.assert_allclose(paper(x).numpy(), x.max(1).mean((1, 2)), rtol=1e-6)
    np.testing.assert_allclose(other(x).numpy(), x.mean((2, 3)).max(1), rtol=1e-6)
    assert np.abs(x.max(1).mean((1, 2)) - x.mean((2, 3)).max(1)).min() > 1e-3


def test_mulnet_logits_pool_conv5_by_eq_5_10():
    from tfzoo.models.two_stream_resnet import MulNet

    model = MulNet(num_classes=3, rgb_blocks=(2, 2, 2, 2), flow_blocks=(2, 2, 2, 2), width=4,
                   flow_dropout=0.0)
    assert model.get_config()["pool_order"] == "time_first"
    rng = np.random.default_rng(1)
    x = {"rgb": rng.uniform(0, 255, (2, 4, 64, 64, 3)).astype("float32"),
         "flow": rng.normal(size=(2, 4, 64, 64, 20)).astype("float32")}
    conv5 = keras.Model(model.inputs, model.get_layer("rgb_temporal_pool").input)(x).numpy()
    w, b = model.get_layer("rgb_predictions").get_weights()
    want = conv5.max(1).mean((1, 2)) @ w + b
    np.testing.assert_allclose(model(x)["rgb"].numpy(), want, rtol=1e-4, atol=1e-5)


def test_fusion_3d_pool5_covers_all_five_chunks():
    # §3.3.4: after fusion the 3-D pooling operates on the T = 5 chunks; a response that only
    # chunk t has reaches the pooled output for every t (window 3 / stride 2 dropped chunks
    # 1 and 3 from the middle output and kept 3 outputs)
    from tfzoo.layers.pooling import SpatioTemporalMaxPooling
    from tfzoo.models.fusion import TwoStreamFusion

    layer = SpatioTemporalMaxPooling((None, 2, 2), (1, 2, 2))
    for t in range(5):
        x = np.zeros((1, 5, 4, 4, 2), "float32")
        x[0, t, 1, 2, 0] = 7.0
        y = layer(x).numpy()
        assert y.shape == (1, 1, 2, 2, 2) and y[0, 0, 0, 1, 0] == 7.0 and y.sum() == 7.0
    model = TwoStreamFusion(num_classes=3, spatial_arch="vgg16", temporal_arch="vgg16",
                            width_multiplier=1 / 32, fc6_kernel=1)
    pools = [l for l in model.layers if isinstance(l, SpatioTemporalMaxPooling)]
    assert pools and all(p.pool_size[0] is None for p in pools)
    inner = keras.Model(model.inputs, [p.output for p in pools])
    out = inner({"rgb": np.zeros((1, 5, 64, 64, 3), "float32"),
                 "flow": np.zeros((1, 5, 64, 64, 20), "float32")})
    assert all(o.shape[1] == 1 for o in out)


def test_tresnet_random_temporal_filters_are_n_0_001():
    # §7.3.3: W_t "initialized randomly"; the reference code draws N(0, 0.01^2)
    from tfzoo.layers.temporal import temporal_kernel_initializer

    w = temporal_kernel_initializer("random", seed=0)((3, 1, 1, 256, 256)).numpy()
    assert abs(w.mean()) < 2e-4 and abs(w.std() - 0.01) < 2e-4
    he = temporal_kernel_initializer("he_normal", seed=0)((3, 1, 1, 256, 256)).numpy()
    assert abs(he.std() - np.sqrt(2 / (3 * 256))) < 3e-3  # the kept option


def test_vgg_temporal_tower_dropout_is_0_9_spatial_0_85():
    from tfzoo.models.fusion import TwoStreamFusion, TwoStreamNet

    for cls in (TwoStreamNet, TwoStreamFusion):
        model = cls(num_classes=3, spatial_arch="vggm", temporal_arch="vggm",
                    width_multiplier=1 / 32, fc6_kernel=1)
        rates = {l.name: l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)}
        assert rates and all(r == (0.9 if n.startswith("temporal_") else 0.85)
                             for n, r in rates.items()), rates
        assert any(n.startswith("temporal_") for n in rates)


def test_cross_stream_gate_taps_the_pre_relu_appearance_output():
    # eq. 4.2 / 5.5: the gated branch input is x^a_l * f(x^m_l) with x^a_l the appearance
    # unit's output before its ReLU, so negative appearance responses pass the gate and get a
    # gradient f(x^m_l) (a rectified x^a would give 0 and a zero gradient there).
    import tensorflow as tf

    from tfzoo.models.two_stream_resnet import MulNet

    for model_cls, kw in ((MulNet, dict(rgb_blocks=(2, 2, 2, 2), flow_blocks=(2, 2, 2, 2))),):
        model = model_cls(num_classes=3, width=4, **kw)
        cross = model.get_layer("rgb_conv2_block2_cross")
        pre = model.get_layer("rgb_conv2_block1_add").output
        sub = keras.Model(model.inputs, [pre, *cross.input, cross.output])
        rng = np.random.default_rng(2)
        x = {"rgb": rng.uniform(0, 255, (1, 2, 32, 32, 3)).astype("float32"),
             "flow": rng.normal(0, 5, (1, 2, 32, 32, 20)).astype("float32")}
        p, a, m, out = (t.numpy() for t in sub(x))
        np.testing.assert_array_equal(a, p)  # the gate's appearance input is the pre-ReLU map
        assert (a < 0).mean() > 0.1
        np.testing.assert_allclose(out, a * np.maximum(m, 0), rtol=1e-5, atol=1e-5)
        assert ((out < 0) & (a < 0)).any()
        # gradient at negative appearance values is f(x^m), not zero
        a_t = tf.constant(a)
        with tf.GradientTape() as tape:
            tape.watch(a_t)
            y = tf.reduce_sum(cross([a_t, tf.constant(m)]))
        g = tape.gradient(y, a_t).numpy()
        neg = a < 0
        np.testing.assert_allclose(g[neg], np.maximum(m, 0)[neg], rtol=1e-6)
        assert (g[neg] > 0).any()
    post = MulNet(num_classes=3, width=4, rgb_blocks=(2, 2, 2, 2), flow_blocks=(2, 2, 2, 2),
                  cross_input="post_relu")
    c = post.get_layer("rgb_conv2_block2_cross")
    assert c.input[0] is post.get_layer("rgb_conv2_block1_out").output


def test_stresnet_per_chunk_loss_is_the_mean_of_per_chunk_cross_entropies():
    # §4.3.5: "no pooling over time ... a single loss for each of the 5 inputs"
    import tensorflow as tf

    from tfzoo.models.two_stream_resnet import STResNet
    from tfzoo.tasks import get_task

    model = STResNet(num_classes=4, blocks=(2, 2, 2, 2), width=4)
    rng = np.random.default_rng(3)
    x = {"rgb": rng.uniform(0, 255, (2, 5, 32, 32, 3)).astype("float32"),
         "flow": rng.normal(0, 3, (2, 5, 32, 32, 20)).astype("float32")}
    y = np.array([1, 3])
    out = model(x, training=False)
    task = get_task(model)
    assert task.heads(model) == ["flow_chunks", "rgb_chunks"]
    want = 0.0
    for s in ("rgb", "flow"):
        z = out[f"{s}_chunks"].numpy()
        assert z.shape == (2, 5, 4)
        np.testing.assert_allclose(out[s].numpy(), z.mean(1), rtol=1e-5, atol=1e-6)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        want += np.mean([-logp[b, t, y[b]] for b in range(2) for t in range(5)])
    got = float(task.loss(model, out, tf.constant(y)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # the loss of the averaged logits is a different number (what the code did before)
    avg = sum(float(keras.losses.sparse_categorical_crossentropy(y, out[s], from_logits=True)
                    .numpy().mean()) for s in ("rgb", "flow"))
    assert abs(avg - want) > 1e-4
    assert task.num_classes(model) == 4 and task.test_score(out).shape == (2, 4)
