"""The R-FCN detector (issue 13): proposal layer against numpy, the model, its task, training,
evaluation and export through the TF1 session loader."""

import numpy as np
import pytest
import tensorflow as tf

from tests.test_detection_boxes import iou_loop, nms_loop
from tfzoo.detection import generate_anchors, shifted_anchors
from tfzoo.detection.proposals import propose


def propose_loop(scores, deltas, anchors, h, w, pre, post, thr, min_size):
    """Faster R-CNN's proposal layer, one box at a time in float64."""
    boxes = []
    for a, d in zip(anchors.astype(np.float64), deltas.astype(np.float64)):
        aw, ah = a[2] - a[0] + 1, a[3] - a[1] + 1
        cx, cy = a[0] + 0.5 * aw + d[0] * aw, a[1] + 0.5 * ah + d[1] * ah
        pw, ph = aw * np.exp(min(d[2], np.log(1000 / 16))), ah * np.exp(min(d[3], np.log(1000 / 16)))
        b = [cx - 0.5 * pw, cy - 0.5 * ph, cx + 0.5 * pw - 1, cy + 0.5 * ph - 1]
        b = [min(max(b[0], 0), w - 1), min(max(b[1], 0), h - 1),
             min(max(b[2], 0), w - 1), min(max(b[3], 0), h - 1)]
        boxes.append(b)
    boxes = np.array(boxes)
    big = [i for i, b in enumerate(boxes) if b[2] - b[0] + 1 >= min_size and b[3] - b[1] + 1 >= min_size]
    order = sorted(big, key=lambda i: -scores[i])[:pre]
    keep = [order[j] for j in nms_loop(boxes[order].astype(np.float32), scores[order], thr)][:post]
    return boxes[keep], scores[keep]


@pytest.mark.parametrize("pre,post", [(6000, 300), (40, 12)])
def test_proposal_layer_matches_numpy_loop(pre, post):
    rng = np.random.default_rng(0)
    h, w = 70, 90  # a 5 x 6 map at stride 16
    anchors = shifted_anchors(5, 6, 16, generate_anchors(16, scales=(1, 2, 4))).numpy()
    n = len(anchors)
    scores = rng.permutation(n).astype("float32") / n  # distinct: a unique order
    deltas = rng.normal(0, 0.3, (n, 4)).astype("float32")
    boxes, s, count = propose(scores, deltas, anchors, h, w, pre_nms=pre, post_nms=post,
                              nms_threshold=0.7, min_size=16)
    want_boxes, want_scores = propose_loop(scores, deltas, anchors, h, w, pre, post, 0.7, 16)
    count = int(count)
    assert count == len(want_boxes) and 0 < count <= post
    np.testing.assert_allclose(boxes.numpy()[:count], want_boxes, atol=1e-3)
    np.testing.assert_array_equal(s.numpy()[:count], want_scores)
    assert not boxes.numpy()[count:].any()  # zero padding
    kept = boxes.numpy()[:count]
    assert iou_loop(kept, kept)[np.triu_indices(count, 1)].max() <= 0.7 + 1e-6
