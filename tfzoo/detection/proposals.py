"""The RPN's proposal layer (Faster R-CNN, Ren et al. 2015, §3.1; as R-FCN and D&T use it,
thesis §8.5.2).

Example:
>>> import numpy as np
>>> from tfzoo.detection import shifted_anchors
>>> anchors = shifted_anchors(2, 2, 16)                      # 2 x 2 cells x 15 anchors
>>> scores = np.linspace(0, 1, 60).astype("float32")
>>> boxes, s, n = propose(scores, np.zeros((60, 4), "float32"), anchors, 32, 32, post_nms=5)
>>> boxes.shape, int(n) <= 5
(TensorShape([5, 4]), True)
"""

from __future__ import annotations

import tensorflow as tf

from tfzoo.detection.boxes import clip_boxes, decode_boxes, nms, remove_small_boxes

RPN_STDS = (1.0, 1.0, 1.0, 1.0)  # the RPN's box targets are not normalised (Faster R-CNN)


def propose(scores, deltas, anchors, height, width, *, pre_nms: int = 6000, post_nms: int = 300,
            nms_threshold: float = 0.7, min_size: float = 16.0):
    """Proposals of one image from its RPN outputs.

    `scores` (A,) objectness, `deltas` (A, 4) box offsets (`encode_boxes` form with unit stds)
    of the `anchors` (A, 4); `height` x `width` the image's size (unpadded). Faster R-CNN's
    order: decode, clip to the image, drop boxes smaller than `min_size` pixels, keep the
    `pre_nms` highest scores, NMS at `nms_threshold`, keep the `post_nms` highest.

    Returns boxes (post_nms, 4) and scores (post_nms,) by decreasing score, zero-padded, and the
    number of valid rows (int32). No gradient flows into the proposals (they are coordinates).
    """
    scores = tf.stop_gradient(tf.reshape(tf.cast(scores, tf.float32), [-1]))
    deltas = tf.stop_gradient(tf.reshape(tf.cast(deltas, tf.float32), [-1, 4]))
    boxes = clip_boxes(decode_boxes(anchors, deltas, RPN_STDS), height, width)
    keep = remove_small_boxes(boxes, min_size)
    boxes, scores = tf.gather(boxes, keep), tf.gather(scores, keep)
    top = tf.math.top_k(scores, k=tf.minimum(pre_nms, tf.shape(scores)[0]), sorted=True)
    boxes, scores = tf.gather(boxes, top.indices), top.values
    keep = nms(boxes, scores, nms_threshold, max_output=post_nms)
    boxes, scores = tf.gather(boxes, keep), tf.gather(scores, keep)
    count = tf.shape(keep)[0]
    pad = post_nms - count
    return (tf.pad(boxes, [[0, pad], [0, 0]]), tf.pad(scores, [[0, pad]]), count)
