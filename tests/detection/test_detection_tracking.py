"""D&T tracking (thesis §8.3.3-8.3.4): targets, the RoI tracking layer and the loss, each against a
brute-force numpy computation written from the equations and the authors' prototxt."""

import math

import numpy as np
import pytest
import tensorflow as tf
from _references import correlation_loop
from _references import psroi_reference

from tfzoo.detection import decode_boxes
from tfzoo.detection.tracking import (
    RoITracking, smooth_l1, tracking_loss, tracking_rois, tracking_targets,
)

def targets_loop(boxes, ids, stds=(1, 1, 1, 1)):
    """Eq. 8.2-8.3 per box, from centres and inclusive widths (divided by `stds`: 1 is the
    equations as written)."""
    b, _, g, _ = boxes.shape
    out = np.zeros((b, g, 4))
    valid = np.zeros((b, g), bool)
    for n in range(b):
        for i in range(g):
            if ids[n, 0, i] < 0:
                continue
            match = [h for h in range(g) if ids[n, 1, h] == ids[n, 0, i]]
            if not match:
                continue
            x1, y1, x2, y2 = boxes[n, 0, i]
            u1, v1, u2, v2 = boxes[n, 1, match[0]]
            w, h, tw, th = x2 - x1 + 1, y2 - y1 + 1, u2 - u1 + 1, v2 - v1 + 1
            cx, cy, tx, ty = x1 + w / 2, y1 + h / 2, u1 + tw / 2, v1 + th / 2
            out[n, i] = np.array([(tx - cx) / w, (ty - cy) / h, math.log(tw / w),
                                  math.log(th / h)]) / np.asarray(stds)
            valid[n, i] = True
    return out, valid


def test_tracking_targets_are_eq_8_2_8_3_unnormalised_by_hand():
    # frame t: 10 x 20 box centred at (5, 10); frame t+tau: 10 x 24 centred at (9, 14)
    boxes = np.array([[[[0, 0, 9, 19]], [[4, 2, 13, 25]]]], "float32")
    got, valid = tracking_targets(boxes, np.array([[[4], [4]]]))
    assert valid.numpy().tolist() == [[True]]
    # Delta x = 4 / 10, Delta y = 4 / 20, log(10 / 10), log(24 / 20): not divided by the
    # detector's box stds (0.1, 0.1, 0.2, 0.2), as the authors' append_track_regression_targets
    np.testing.assert_allclose(got.numpy()[0, 0], [0.4, 0.2, 0.0, math.log(1.2)], rtol=1e-6)
    # the normalised form of the runs saved before, on request
    old, _ = tracking_targets(boxes, np.array([[[4], [4]]]), stds=(0.1, 0.1, 0.2, 0.2))
    np.testing.assert_allclose(old.numpy()[0, 0], [4.0, 2.0, 0.0, math.log(1.2) / 0.2],
                               rtol=1e-5)


def test_tracking_targets_match_the_equations():
    rng = np.random.default_rng(0)
    b, g = 3, 6
    xy = rng.uniform(0, 100, (b, 2, g, 2))
    wh = rng.uniform(5, 60, (b, 2, g, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype("float32")
    ids = np.stack([np.stack([rng.permutation(g), rng.permutation(g)]) for _ in range(b)])
    ids[rng.uniform(size=ids.shape) < 0.3] = -1  # padding / untracked / left the frame
    ids[0, 1] = -1  # a pair with no correspondence at all
    got, valid = tracking_targets(boxes, ids)
    want, want_valid = targets_loop(boxes.astype(np.float64), ids)
    np.testing.assert_array_equal(valid.numpy(), want_valid)
    assert want_valid.sum() > 3 and not want_valid[0].any()
    np.testing.assert_allclose(got.numpy(), want, atol=1e-4)
    # decoding the targets from the frame-t boxes gives the frame-t+tau boxes
    rois, idx = tracking_rois(boxes, valid)
    moved = decode_boxes(rois[:, 1:], tf.gather_nd(got, idx), (1, 1, 1, 1)).numpy()
    want_boxes = [boxes[n, 1, list(ids[n, 1]).index(ids[n, 0, i])] for n, i in idx.numpy()]
    np.testing.assert_allclose(moved, np.array(want_boxes), atol=1e-3)
    np.testing.assert_array_equal(rois[:, 0].numpy(), idx[:, 0].numpy())
    with pytest.raises(ValueError, match="\\(B, 2, G, 4\\)"):
        tracking_targets(boxes[:, 0], ids)


def features(rng, b, h, w, k):
    return {"conv3": rng.normal(size=(b, 2 * h, 2 * w, 3)).astype("float32"),
            "conv4": rng.normal(size=(b, h, w, 5)).astype("float32"),
            "conv5": rng.normal(size=(b, h, w, 4)).astype("float32"),
            "reg_maps": rng.normal(size=(b, h, w, 4 * k * k)).astype("float32")}


def roi_tracking_loop(ft, fu, rois, kernel, bias, k, scale, d):
    """The prototxt's graph in numpy: correlations, the stack, a 1x1 conv, PS-RoI, voting."""
    stack = [ft["reg_maps"], fu["reg_maps"],
             correlation_loop(ft["conv5"], fu["conv5"], d),
             correlation_loop(ft["conv3"], fu["conv3"], d, stride=2, s2=2),
             correlation_loop(ft["conv4"], fu["conv4"], d)]
    stack = np.concatenate([s.astype(np.float64) for s in stack], -1)
    maps = stack @ kernel.reshape(kernel.shape[-2:]).astype(np.float64) + bias
    return psroi_reference(maps, rois, k, 4, scale).mean((1, 2))


def test_roi_tracking_matches_the_prototxt_graph():
    rng = np.random.default_rng(1)
    k, d, scale = 2, 2, 1 / 8
    ft, fu = features(rng, 2, 4, 5, k), features(rng, 2, 4, 5, k)
    rois = np.array([[0, 0, 0, 39, 31], [1, 3, 5, 20, 17], [1, 10.5, 2, 38, 30],
                     [0, 17, 9, 18, 10]], "float32")
    layer = RoITracking(k=k, spatial_scale=scale, max_displacement=d)
    got = layer([ft, fu, rois]).numpy()
    # 2 + 2 reg maps of 16, correlations 25 (conv5) + 9 (conv3, steps of 2) + 25 (conv4)
    kernel, bias = layer.conv.get_weights()
    assert kernel.shape == (1, 1, 2 * 16 + 25 + 9 + 25, 16)
    bias = rng.normal(size=bias.shape).astype("float32")
    kernel = rng.normal(size=kernel.shape).astype("float32")
    layer.conv.set_weights([kernel, bias])
    got = layer([ft, fu, rois]).numpy()
    want = roi_tracking_loop(ft, fu, rois, kernel, bias, k, scale, d)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the config round-trips and rebuilds the same layer
    again = RoITracking.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


def test_roi_tracking_gradient_is_the_finite_difference():
    # the output is quadratic in the inputs jointly (bilinear correlations, linear conv and
    # pooling), so a central difference along a random direction is exact up to rounding
    rng = np.random.default_rng(2)
    k = 2
    ft, fu = features(rng, 1, 3, 4, k), features(rng, 1, 3, 4, k)
    rois = np.array([[0, 0, 0, 31, 23], [0, 8, 4, 20, 20]], "float32")
    layer = RoITracking(k=k, spatial_scale=1 / 8, max_displacement=2)
    layer([ft, fu, rois])
    layer.conv.set_weights([rng.normal(size=w.shape).astype("float32")
                            for w in layer.conv.get_weights()])
    proj = rng.normal(size=(2, 4)).astype("float32")
    names = sorted(ft)
    xs = [tf.Variable(v) for v in [ft[n] for n in names] + [fu[n] for n in names]]

    def f(vs):
        a = dict(zip(names, vs[:4]))
        b = dict(zip(names, vs[4:]))
        return tf.reduce_sum(layer([a, b, rois]) * proj)

    with tf.GradientTape() as tape:
        y = f(xs)
    grads = tape.gradient(y, xs)
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
    direction = [rng.normal(size=x.shape).astype("float32") for x in xs]
    eps = 0.05
    plus = f([x + eps * v for x, v in zip(xs, direction)])
    minus = f([x - eps * v for x, v in zip(xs, direction)])
    numeric = float(plus - minus) / (2 * eps)
    analytic = sum(float(tf.reduce_sum(g * v)) for g, v in zip(grads, direction))
    assert abs(numeric - analytic) <= 1e-3 * max(1.0, abs(analytic))


def test_roi_tracking_bad_input():
    rng = np.random.default_rng(3)
    ft, fu = features(rng, 1, 4, 4, 2), features(rng, 1, 4, 4, 2)
    rois = np.zeros((1, 5), "float32")
    with pytest.raises(ValueError, match="lack \\['conv3'\\]"):
        RoITracking(k=2)([{n: v for n, v in ft.items() if n != "conv3"}, fu, rois])
    with pytest.raises(ValueError, match="reg_maps has 16 channels, expected 4 k\\^2 = 36"):
        RoITracking(k=3)([ft, fu, rois])
    with pytest.raises(ValueError, match="must match conv4's size"):
        RoITracking(k=2)([{**ft, "conv3": ft["conv4"]}, {**fu, "conv3": fu["conv4"]}, rois])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        RoITracking(k=0)


def test_tracking_loss_is_eq_8_1_third_term():
    rng = np.random.default_rng(4)
    deltas = rng.normal(scale=1.5, size=(2, 5, 4)).astype("float32")
    targets = rng.normal(size=(2, 5, 4)).astype("float32")
    valid = rng.uniform(size=(2, 5)) < 0.6
    x = np.abs(deltas - targets).astype(np.float64)
    per_box = np.where(x < 1, 0.5 * x * x, x - 0.5).sum(-1)
    want = per_box[valid].sum() / valid.sum()
    np.testing.assert_allclose(float(tracking_loss(deltas, targets, valid)), want, rtol=1e-5)
    np.testing.assert_allclose(float(tracking_loss(deltas, targets, valid, weight=2.0)),
                               2 * want, rtol=1e-5)
    assert float(tracking_loss(deltas, targets, np.zeros_like(valid))) == 0.0
    assert float(tracking_loss(targets, targets, valid)) == 0.0
    # the gradient reaches only the boxes present in both frames; it is smooth L1's derivative
    d = tf.Variable(deltas)
    with tf.GradientTape() as tape:
        loss = tracking_loss(d, targets, valid)
    g = tape.gradient(loss, d).numpy()
    assert np.all(g[~valid] == 0)
    diff = deltas - targets
    np.testing.assert_allclose(g[valid], (np.clip(diff, -1, 1) / valid.sum())[valid], rtol=1e-5)
    np.testing.assert_allclose(smooth_l1(np.array([-2.0, -0.5, 0.0, 0.5, 2.0])).numpy(),
                               [1.5, 0.125, 0.0, 0.125, 1.5])

