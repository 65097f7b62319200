"""Box ops and training targets against brute-force numpy loops."""

import numpy as np
import pytest
import tensorflow as tf

from tfzoo.detection import (
    anchor_targets, clip_boxes, decode_boxes, encode_boxes, generate_anchors, iou_matrix, nms,
    nms_box_voting, ohem_select, remove_small_boxes, roi_targets, shifted_anchors,
)
from _references import iou_loop, nms_loop


def random_boxes(rng, n, size=100):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(4, size / 2, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype("float32")


def test_anchors_are_faster_rcnn_s():
    # the 9 anchors printed in Faster R-CNN's generate_anchors.py (scales 8, 16, 32)
    want = [[-84, -40, 99, 55], [-176, -88, 191, 103], [-360, -184, 375, 199],
            [-56, -56, 71, 71], [-120, -120, 135, 135], [-248, -248, 263, 263],
            [-36, -80, 51, 95], [-80, -168, 95, 183], [-168, -344, 183, 359]]
    np.testing.assert_array_equal(generate_anchors(16, scales=(8, 16, 32)), want)
    a = generate_anchors()  # D&T: 5 scales x 3 ratios
    assert a.shape == (15, 4)
    w, h = a[:, 2] - a[:, 0] + 1, a[:, 3] - a[:, 1] + 1
    np.testing.assert_allclose(np.sqrt(w * h), np.tile([32, 64, 128, 256, 512], 3), rtol=0.05)
    np.testing.assert_allclose(h / w, np.repeat([0.5, 1, 2], 5), rtol=0.1)
    s = shifted_anchors(2, 3, stride=16).numpy().reshape(2, 3, 15, 4)
    np.testing.assert_array_equal(s[1, 2], a + [32, 16, 32, 16])


def test_box_coding_round_trip_and_formula():
    rng = np.random.default_rng(0)
    b, g = random_boxes(rng, 50), random_boxes(rng, 50)
    d = encode_boxes(b, g).numpy()
    bw, bh = b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1
    gw, gh = g[:, 2] - g[:, 0] + 1, g[:, 3] - g[:, 1] + 1
    want = np.stack([((g[:, 0] + gw / 2) - (b[:, 0] + bw / 2)) / bw,
                     ((g[:, 1] + gh / 2) - (b[:, 1] + bh / 2)) / bh,
                     np.log(gw / bw), np.log(gh / bh)], 1) / [0.1, 0.1, 0.2, 0.2]
    np.testing.assert_allclose(d, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(decode_boxes(b, d), g, atol=1e-3)
    # differentiable in the deltas (the proposal layer and the RoI tracker decode predictions)
    delta = tf.constant(d[:3], tf.float64)
    theo, num = tf.test.compute_gradient(
        lambda x: tf.cast(decode_boxes(b[:3], tf.cast(x, tf.float32)), tf.float64), [delta])
    np.testing.assert_allclose(theo[0], num[0], rtol=2e-2, atol=2e-2)


def test_iou_clip_small():
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 20), random_boxes(rng, 15)
    np.testing.assert_allclose(iou_matrix(a, b), iou_loop(a, b), atol=1e-6)
    assert iou_matrix(a, np.zeros((0, 4), "float32")).shape == (20, 0)
    c = clip_boxes(np.array([[-5, 3, 120, 70]], "float32"), 60, 100).numpy()
    np.testing.assert_array_equal(c, [[0, 3, 99, 59]])
    keep = remove_small_boxes(np.array([[0, 0, 15, 15], [0, 0, 14, 30], [5, 5, 30, 20]],
                                       "float32"), 16).numpy()
    np.testing.assert_array_equal(keep, [0, 2])


def test_nms_matches_greedy_loop():
    rng = np.random.default_rng(2)
    for thr in (0.3, 0.5, 0.7):
        b = random_boxes(rng, 60, size=60)
        s = rng.permutation(60).astype("float32") / 60  # distinct scores
        assert nms(b, s, thr).numpy().tolist() == nms_loop(b, s, thr)
    # exactly at the threshold a box is kept (suppression needs IoU > threshold)
    b = np.array([[0, 0, 9, 9], [5, 0, 14, 9]], "float32")  # IoU 1/3
    assert nms(b, np.array([0.9, 0.8], "float32"), 1 / 3 + 1e-6).numpy().tolist() == [0, 1]
    assert nms(b, np.array([0.9, 0.8], "float32"), 0.3).numpy().tolist() == [0]


def test_nms_box_voting_matches_loop():
    rng = np.random.default_rng(3)
    b = random_boxes(rng, 40, size=50)
    s = rng.permutation(40).astype("float32") / 40
    # the defaults are the authors' make_tubes: NMS 0.4, votes weighted by the score
    for kw, iou_thr, add in (({}, 0.4, 0.0), ({"iou_threshold": 0.3, "add_val": 1.5}, 0.3, 1.5)):
        voted, scores, keep = nms_box_voting(b, s, **kw)
        keep = keep.numpy()
        assert keep.tolist() == nms_loop(b, s, iou_thr)
        for row, k in zip(voted.numpy(), keep):
            ov = iou_loop(b, b[[k]])[:, 0]
            m = ov >= 0.5
            wgt = np.maximum(s[m] + add, 0) + 1e-12
            np.testing.assert_allclose(row, (b[m] * wgt[:, None]).sum(0) / wgt.sum(), rtol=1e-5)
        np.testing.assert_array_equal(scores, s[keep])


def anchor_labels_loop(anchors, gt, h, w, pos=0.7, neg=0.3):
    iou = iou_loop(anchors, gt)
    labels = np.full(len(anchors), -1)
    inside = [(a[0] >= 0 and a[1] >= 0 and a[2] < w and a[3] < h) for a in anchors]
    for j in range(len(gt)):
        col = [iou[i, j] if inside[i] else -1 for i in range(len(anchors))]
        for i in range(len(anchors)):
            if inside[i] and col[i] == max(col) and col[i] > 0:
                labels[i] = 1
    for i in range(len(anchors)):
        if not inside[i]:
            labels[i] = -1
        elif iou[i].max() >= pos:
            labels[i] = 1
        elif labels[i] != 1 and iou[i].max() < neg:
            labels[i] = 0
    return labels


def test_anchor_targets_rules_and_sampling():
    anchors = shifted_anchors(6, 6, stride=16).numpy()
    gt = np.array([[10, 12, 60, 50], [40, 30, 95, 90]], "float32")
    want = anchor_labels_loop(anchors, gt, 96, 96)
    # a batch larger than the candidates: no sampling, the labels are the rules' exactly
    labels, targets, match = anchor_targets(anchors, gt, 96, 96, batch_size=10_000,
                                            fg_fraction=0.5)
    np.testing.assert_array_equal(labels, want)
    pos = want == 1
    np.testing.assert_allclose(targets.numpy()[pos],
                               encode_boxes(anchors[pos], gt[match.numpy()[pos]], (1, 1, 1, 1)),
                               atol=1e-6)
    assert np.all(targets.numpy()[~pos] == 0)
    # sampling: at most 4 positives, 8 in all, drawn from the candidates, fixed by the seed
    l1, _, _ = anchor_targets(anchors, gt, 96, 96, batch_size=8, seed=(1, 2))
    l2, _, _ = anchor_targets(anchors, gt, 96, 96, batch_size=8, seed=(1, 2))
    l3, _, _ = anchor_targets(anchors, gt, 96, 96, batch_size=8, seed=(5, 2))
    l1 = l1.numpy()
    np.testing.assert_array_equal(l1, l2)
    assert not np.array_equal(l1, l3.numpy())
    assert (l1 == 1).sum() == min(4, pos.sum()) and (l1 >= 0).sum() == 8
    assert np.all(want[l1 == 1] == 1) and np.all(want[l1 == 0] == 0)
    # no ground truth: every inside anchor is a negative candidate
    l0, t0, _ = anchor_targets(anchors, np.zeros((0, 4), "float32"), 96, 96, batch_size=10_000)
    assert set(np.unique(l0.numpy())) <= {0, -1} and (l0.numpy() == 0).sum() > 0


def test_roi_targets_match_loop():
    rng = np.random.default_rng(4)
    gt = random_boxes(rng, 3)
    rois = np.concatenate([random_boxes(rng, 30), gt + rng.uniform(-3, 3, gt.shape)]).astype(
        "float32")
    classes = np.array([4, 0, 7])
    labels, targets, match = roi_targets(rois, gt, classes)
    iou = iou_loop(rois, gt)
    want = np.where(iou.max(1) >= 0.5, classes[iou.argmax(1)] + 1, 0)
    np.testing.assert_array_equal(labels, want)
    fg = want > 0
    assert fg.sum() >= 3
    np.testing.assert_allclose(targets.numpy()[fg], encode_boxes(rois[fg], gt[iou.argmax(1)[fg]]),
                               atol=1e-5)
    assert np.all(targets.numpy()[~fg] == 0)


def test_ohem_picks_hardest_per_image():
    rng = np.random.default_rng(5)
    losses = rng.uniform(size=40).astype("float32")
    batch = np.repeat([0, 1], 20)
    valid = rng.uniform(size=40) > 0.2
    mask = ohem_select(losses, num=5, batch_index=batch, valid=valid).numpy()
    want = np.zeros(40)
    for b in (0, 1):
        idx = [i for i in np.argsort(-losses) if batch[i] == b and valid[i]][:5]
        want[idx] = 1
    np.testing.assert_array_equal(mask, want)
    assert ohem_select(losses, num=128).numpy().sum() == 40


def test_box_target_statistics_equal_numpy_on_a_tiny_dataset():
    """Means and stds of the box targets (py-faster-rcnn's add_bbox_regression_targets): every
    RoI or ground-truth box with IoU >= 0.5 with a ground-truth box, its target to its best
    box, computed here one box at a time in numpy."""
    from tfzoo.detection import box_target_statistics

    rng = np.random.default_rng(0)
    frames, rows = [], []
    for _ in range(5):
        g = rng.integers(0, 4)  # a frame with no ground truth adds nothing
        xy = rng.uniform(0, 80, (g, 2))
        gt = np.concatenate([xy, xy + rng.uniform(10, 40, (g, 2))], 1).astype("float32")
        rois = (np.repeat(gt, 6, 0) + rng.normal(0, 4, (6 * g, 4))).astype("float32")
        rois = np.concatenate([rois, rng.uniform(0, 100, (5, 4)).astype("float32")[:, [0, 1, 0, 1]]
                               + [[0, 0, 20, 20]]])
        frames.append((rois, gt))
        for box in np.concatenate([rois, gt]):
            ious = list(iou_loop(box[None], gt)[0]) if len(gt) else []
            if ious and max(ious) >= 0.5:
                b = gt[int(np.argmax(ious))]
                w, h, tw, th = box[2] - box[0] + 1, box[3] - box[1] + 1, b[2] - b[0] + 1, b[3] - b[1] + 1
                rows.append([(b[0] + tw / 2 - box[0] - w / 2) / w, (b[1] + th / 2 - box[1] - h / 2) / h,
                             np.log(tw / w), np.log(th / h)])
    rows = np.array(rows, np.float64)
    assert len(rows) > 20
    means, stds = box_target_statistics(frames)
    np.testing.assert_allclose(means, rows.mean(0), atol=1e-5)
    np.testing.assert_allclose(stds, rows.std(0), rtol=1e-4)
    with pytest.raises(ValueError, match="no frame has a ground-truth box"):
        box_target_statistics([(frames[0][0], np.zeros((0, 4)))])
