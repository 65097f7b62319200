"""Box operations of the R-FCN / D&T detector (thesis §8.3.2, §8.5.2).

Boxes are `(..., 4)` rows `x1, y1, x2, y2` in pixels with the inclusive-pixel convention of
the Caffe/MATLAB detectors and the ImageNet devkit: a box covers pixels x1..x2, so its width is
`x2 - x1 + 1`. Every op takes numpy or TF tensors and runs in a `tf.function`; none loops over
boxes in Python.

Example:
>>> import numpy as np
>>> a = np.array([[0, 0, 9, 9], [5, 0, 14, 9]], "float32")
>>> float(iou_matrix(a, a)[0, 1])  # 50 shared pixels of 150
0.3333333432674408
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

# R-CNN box-target normalisation (py-faster-rcnn's BBOX_NORMALIZE_STDS, R-FCN): targets are
# divided by these so that the four regressors see comparable magnitudes.
BOX_STDS = (0.1, 0.1, 0.2, 0.2)
# Detectron's clamp: exp() of an untrained dw overflows without it (log(1000 / 16)).
MAX_LOG_SCALE = math.log(1000.0 / 16)


# ------------------------------------------------------------------------------ anchors
def generate_anchors(base_size: int = 16, ratios=(0.5, 1.0, 2.0),
                     scales=(2, 4, 8, 16, 32)) -> np.ndarray:
    """The Faster R-CNN anchors around the cell `[0, 0, base_size-1, base_size-1]`:
    (len(ratios) * len(scales), 4), ratio-major (for each ratio h/w, every scale).

    D&T uses 15 anchors, 5 scales x 3 ratios (thesis §8.5.2): areas (32..512)^2 at stride 16.
    Widths are rounded as Faster R-CNN does (`np.round` of sqrt(area / ratio)), so the anchors
    are the reference ones to the pixel.
    """
    ratios = np.asarray(ratios, np.float64)
    scales = np.asarray(scales, np.float64)
    size = float(base_size)
    centre = 0.5 * (size - 1)
    ws = np.round(np.sqrt(size * size / ratios))
    hs = np.round(ws * ratios)
    w = (ws[:, None] * scales[None]).reshape(-1)
    h = (hs[:, None] * scales[None]).reshape(-1)
    return np.stack([centre - 0.5 * (w - 1), centre - 0.5 * (h - 1),
                     centre + 0.5 * (w - 1), centre + 0.5 * (h - 1)], 1).astype(np.float32)


def shifted_anchors(height, width, stride: int = 16, base_anchors=None):
    """All anchors of a (height, width) feature map: (height * width * A, 4), ordered
    (y, x, anchor) so that they line up with an RPN output reshaped to (H, W, A, ...)."""
    base = tf.constant(generate_anchors(stride) if base_anchors is None else base_anchors,
                       tf.float32)
    ys = tf.cast(tf.range(height) * stride, tf.float32)
    xs = tf.cast(tf.range(width) * stride, tf.float32)
    yy, xx = tf.meshgrid(ys, xs, indexing="ij")
    shifts = tf.reshape(tf.stack([xx, yy, xx, yy], -1), [-1, 1, 4])
    return tf.reshape(shifts + base[None], [-1, 4])


# ------------------------------------------------------------------------ box coding
def _centre_size(b):
    w = b[..., 2] - b[..., 0] + 1.0
    h = b[..., 3] - b[..., 1] + 1.0
    return b[..., 0] + 0.5 * w, b[..., 1] + 0.5 * h, w, h


def encode_boxes(boxes, targets, stds=BOX_STDS, means=(0.0, 0.0, 0.0, 0.0)):
    """R-CNN regression targets that move `boxes` onto `targets` (both (..., 4)):
    `((tx - x) / w, (ty - y) / h, log(tw / w), log(th / h)) - means) / stds` with centres x, y
    and sizes w, h (Girshick et al. 2014, App. C; the D&T tracking targets eq. 8.2-8.3 are this
    form with means 0 and stds 1). `means`/`stds`: the normalisation of the box regressor's
    targets (`tfzoo.detection.box_target_statistics` computes them from training data)."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    targets = tf.convert_to_tensor(targets, tf.float32)
    x, y, w, h = _centre_size(boxes)
    tx, ty, tw, th = _centre_size(targets)
    d = tf.stack([(tx - x) / w, (ty - y) / h, tf.math.log(tw / w), tf.math.log(th / h)], -1)
    return (d - tf.constant(means, tf.float32)) / tf.constant(stds, tf.float32)


def decode_boxes(boxes, deltas, stds=BOX_STDS, means=(0.0, 0.0, 0.0, 0.0)):
    """Inverse of `encode_boxes`: applies (..., 4) `deltas` (normalised by `means` and `stds`)
    to `boxes`. Differentiable in `deltas`; the log-scales are clamped at log(1000/16)."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    deltas = (tf.convert_to_tensor(deltas, tf.float32) * tf.constant(stds, tf.float32)
              + tf.constant(means, tf.float32))
    x, y, w, h = _centre_size(boxes)
    cx = x + deltas[..., 0] * w
    cy = y + deltas[..., 1] * h
    pw = w * tf.exp(tf.minimum(deltas[..., 2], MAX_LOG_SCALE))
    ph = h * tf.exp(tf.minimum(deltas[..., 3], MAX_LOG_SCALE))
    # exact inverse of the +1 widths (py-faster-rcnn's x2 = cx + w/2 is one pixel wider)
    return tf.stack([cx - 0.5 * pw, cy - 0.5 * ph, cx + 0.5 * pw - 1.0, cy + 0.5 * ph - 1.0], -1)


# ------------------------------------------------------------------------------ geometry
def box_area(boxes):
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    return (tf.maximum(boxes[..., 2] - boxes[..., 0] + 1.0, 0.0)
            * tf.maximum(boxes[..., 3] - boxes[..., 1] + 1.0, 0.0))


def iou_matrix(a, b):
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4): (N, M)."""
    a = tf.convert_to_tensor(a, tf.float32)
    b = tf.convert_to_tensor(b, tf.float32)
    lo = tf.maximum(a[:, None, :2], b[None, :, :2])
    hi = tf.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = tf.reduce_prod(tf.maximum(hi - lo + 1.0, 0.0), -1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return tf.math.divide_no_nan(inter, union)


def clip_boxes(boxes, height, width):
    """Clips (..., 4) boxes to an image of `height` x `width` pixels (coordinates 0..W-1)."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    wmax = tf.cast(width, tf.float32) - 1.0
    hmax = tf.cast(height, tf.float32) - 1.0
    return tf.stack([tf.clip_by_value(boxes[..., 0], 0.0, wmax),
                     tf.clip_by_value(boxes[..., 1], 0.0, hmax),
                     tf.clip_by_value(boxes[..., 2], 0.0, wmax),
                     tf.clip_by_value(boxes[..., 3], 0.0, hmax)], -1)


def remove_small_boxes(boxes, min_size):
    """Indices (int32) of the boxes at least `min_size` pixels wide and high (the proposal
    layer's filter: Faster R-CNN uses 16 pixels at the input scale)."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    return tf.cast(tf.reshape(tf.where((w >= min_size) & (h >= min_size)), [-1]), tf.int32)


# ------------------------------------------------------------------------------------ NMS
def nms(boxes, scores, iou_threshold: float, max_output: int | None = None):
    """Greedy non-maximum suppression: indices (int32) of the kept boxes by decreasing score;
    a box is dropped when its IoU with a kept, higher-scoring box exceeds `iou_threshold`
    (the Caffe/MATLAB `nms`). `tf.image.non_max_suppression` with the boxes' far edges moved
    by +1 computes exactly the inclusive-pixel IoU, so it is used as is."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.convert_to_tensor(scores, tf.float32)
    n = tf.shape(boxes)[0] if max_output is None else max_output
    yxyx = tf.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] + 1.0, boxes[:, 2] + 1.0], 1)
    return tf.image.non_max_suppression(yxyx, scores, n, iou_threshold=iou_threshold)


def nms_box_voting(boxes, scores, iou_threshold: float = 0.4, vote_threshold: float = 0.5,
                   max_output: int | None = None, add_val: float = 0.0):
    """NMS followed by box voting (Gidaris & Komodakis 2015, §5), as D&T applies before linking
    (the authors' make_tubes: NMS 0.4 per class, at most 25 boxes per frame and class, votes
    weighted by the score: `add_val` 0; Gidaris & Komodakis' own default is 1.5).

    Each kept box is replaced by the weighted mean of all input boxes whose IoU with it is at
    least `vote_threshold`, with weights `eps + max(0, score + add_val)`; its score is
    unchanged. Returns (boxes (K, 4), scores (K,), kept indices).
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.convert_to_tensor(scores, tf.float32)
    keep = nms(boxes, scores, iou_threshold, max_output)
    kept = tf.gather(boxes, keep)
    overlap = iou_matrix(kept, boxes)  # (K, N)
    # eps: a box whose neighbours all score 0 keeps its own coordinates (it is its neighbour)
    weight = tf.where(overlap >= vote_threshold,
                      tf.maximum(scores + add_val, 0.0)[None] + 1e-12, 0.0)
    voted = tf.math.divide_no_nan(weight @ boxes, tf.reduce_sum(weight, 1, keepdims=True))
    return voted, tf.gather(scores, keep), keep
