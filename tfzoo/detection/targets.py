"""Training targets of the RPN and the R-FCN head, and OHEM (thesis §8.5.2; Faster R-CNN, Ren
et al. 2015; R-FCN, Li et al. 2016; OHEM, Shrivastava et al. 2016).

Labels: 1/class+1 foreground, 0 background, -1 ignored (no loss). All ops are TF graph ops
(deterministic under their `seed`), with no Python loop over boxes.

Example:
>>> import numpy as np
>>> from tfzoo.detection import shifted_anchors
>>> anchors = shifted_anchors(4, 4, stride=16)
>>> labels, _, _ = anchor_targets(anchors, np.array([[8, 8, 40, 40]], "float32"), 64, 64)
>>> int((labels.numpy() == 1).sum()) >= 1  # the best anchor of a ground-truth box is positive
True
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfzoo.detection.boxes import BOX_STDS, encode_boxes, iou_matrix
from tfzoo.errors import TfzooError


def _random_subset(mask, keep, seed):
    """`mask` with all but `keep` randomly chosen True entries switched off."""
    key = tf.random.stateless_uniform(tf.shape(mask), seed=seed)
    key = tf.where(mask, key, 2.0)  # candidates first
    rank = tf.argsort(tf.argsort(key))
    return mask & (rank < tf.cast(keep, rank.dtype))


def _match(boxes, gt_boxes):
    """(max IoU over gt, index of that gt) per box, and the IoU matrix; zeros without gt."""
    iou = iou_matrix(boxes, gt_boxes)
    iou_padded = tf.concat([iou, tf.zeros([tf.shape(iou)[0], 1])], 1)  # no gt: max 0, index 0
    return tf.reduce_max(iou_padded, 1), tf.argmax(iou_padded, 1, output_type=tf.int32), iou


def anchor_targets(anchors, gt_boxes, height, width, *, positive: float = 0.7,
                   negative: float = 0.3, batch_size: int = 256, fg_fraction: float = 0.5,
                   allowed_border: float = 0.0, stds=(1.0, 1.0, 1.0, 1.0), seed=(0, 0)):
    """RPN targets of one image (Faster R-CNN §3.1.2, as D&T trains its RPN).

    An anchor is positive if its IoU with some ground-truth box is >= `positive` or it is (one
    of) the best anchors of some ground-truth box; negative if its best IoU is < `negative`
    (positives win); anchors crossing the image border by more than `allowed_border` pixels are
    ignored. Then at most `batch_size * fg_fraction` positives and `batch_size` minus the
    positives kept negatives are sampled at random; the rest become -1.

    Returns labels (A,) int32 in {1, 0, -1}, box targets (A, 4) (`encode_boxes` to the best
    ground truth, unnormalised as the RPN's are; 0 for non-positives) and the matched gt index.
    """
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    gt_boxes = tf.reshape(tf.convert_to_tensor(gt_boxes, tf.float32), [-1, 4])
    w = tf.cast(width, tf.float32)
    h = tf.cast(height, tf.float32)
    inside = ((anchors[:, 0] >= -allowed_border) & (anchors[:, 1] >= -allowed_border)
              & (anchors[:, 2] < w + allowed_border) & (anchors[:, 3] < h + allowed_border))
    best, match, iou = _match(anchors, gt_boxes)
    # best anchor(s) of each gt, among the anchors inside (ties all count, as in Faster R-CNN)
    iou_inside = tf.where(inside[:, None], iou, -1.0)
    gt_best = tf.reduce_max(iou_inside, 0)
    is_gt_best = tf.reduce_any((iou_inside == gt_best[None]) & (gt_best[None] > 0), 1)
    labels = tf.fill(tf.shape(best), -1)
    labels = tf.where(best < negative, 0, labels)
    labels = tf.where(is_gt_best | (best >= positive), 1, labels)
    labels = tf.where(inside, labels, -1)
    seed = tf.convert_to_tensor(seed, tf.int32)
    num_fg = int(batch_size * fg_fraction)
    fg = _random_subset(labels == 1, num_fg, seed)
    num_bg = batch_size - tf.reduce_sum(tf.cast(fg, tf.int32))
    bg = _random_subset(labels == 0, num_bg, seed + 1)
    labels = tf.where(fg, 1, tf.where(bg, 0, -1))
    gt = tf.gather(tf.concat([gt_boxes, tf.zeros([1, 4])], 0), match)
    targets = tf.where(fg[:, None], encode_boxes(anchors, tf.where(fg[:, None], gt, anchors),
                                                 stds), 0.0)
    return labels, targets, match


def roi_targets(rois, gt_boxes, gt_classes, *, fg_threshold: float = 0.5,
                bg_threshold_lo: float = 0.0, stds=BOX_STDS, means=(0.0, 0.0, 0.0, 0.0)):
    """R-FCN head targets of one image's RoIs (N, 4) (thesis §8.3.3: foreground at IoU >= 0.5).

    With OHEM the head uses every RoI (no sampling, as the D&T/R-FCN OHEM config): label =
    ground-truth class + 1 if the best IoU is >= `fg_threshold`, 0 (background) if it is in
    [`bg_threshold_lo`, `fg_threshold`), -1 below. Box targets (class-agnostic) are
    `encode_boxes(roi, gt, stds, means)` for foreground RoIs, 0 otherwise. Training usually appends
    the ground-truth boxes to the proposals first (so every gt has a perfect RoI).

    Returns labels (N,) int32, box targets (N, 4), matched gt index (N,).
    """
    rois = tf.convert_to_tensor(rois, tf.float32)
    gt_boxes = tf.reshape(tf.convert_to_tensor(gt_boxes, tf.float32), [-1, 4])
    gt_classes = tf.reshape(tf.convert_to_tensor(gt_classes, tf.int32), [-1])
    best, match, _ = _match(rois, gt_boxes)
    cls = tf.gather(tf.concat([gt_classes, [-1]], 0), match)
    fg = (best >= fg_threshold) & (tf.shape(gt_boxes)[0] > 0)
    labels = tf.where(fg, cls + 1, tf.where(best >= bg_threshold_lo, 0, -1))
    gt = tf.gather(tf.concat([gt_boxes, tf.zeros([1, 4])], 0), match)
    targets = tf.where(fg[:, None],
                       encode_boxes(rois, tf.where(fg[:, None], gt, rois), stds, means), 0.0)
    return labels, targets, match


def box_target_statistics(frames, *, threshold: float = 0.5):
    """Means and stds of the box regressor's targets over training data, as py-faster-rcnn's
    `add_bbox_regression_targets` and the D&T MATLAB code (`fast_rcnn_prepare_image_roidb`)
    compute them, class-agnostic as R-FCN's box maps.

    `frames`: an iterable of `(rois (N, 4), gt_boxes (G, 4))` per frame. The RoIs of a frame
    are its `rois` plus its ground-truth boxes; each RoI whose best IoU with the ground truth
    is >= `threshold` contributes its unnormalised target (`encode_boxes` with means 0, stds 1)
    to that best box. Returns `(means, stds)`, two tuples of 4 floats (population std), the
    values `roi_targets(..., means=, stds=)` and `decode_boxes` take; `ValueError` when no
    frame has a ground-truth box.

    Example:
    >>> import numpy as np
    >>> gt = np.array([[10, 10, 29, 29]], "float32")        # 20 x 20
    >>> rois = np.array([[12, 10, 31, 29], [10, 12, 29, 31],  # moved 2 px right, 2 px down
    ...                  [8, 10, 31, 29], [10, 8, 29, 31]], "float32")  # 4 px wider, higher
    >>> means, stds = box_target_statistics([(rois, gt)])  # the 4 RoIs and the gt itself
    >>> [round(v, 3) for v in means]  # (-0.1, 0, 0, 0), (0, -0.1, 0, 0), ..., 0 over 5
    [-0.02, -0.02, -0.036, -0.036]
    """
    total = np.zeros(4)
    squares = np.zeros(4)
    count = 0
    for rois, gt in frames:
        gt = np.asarray(gt, np.float32).reshape(-1, 4)
        if not len(gt):
            continue
        rois = np.concatenate([np.asarray(rois, np.float32).reshape(-1, 4), gt])
        iou = iou_matrix(rois, gt).numpy()
        keep = iou.max(1) >= threshold
        d = encode_boxes(rois[keep], gt[iou.argmax(1)[keep]], (1, 1, 1, 1)).numpy()
        total += d.sum(0, dtype=np.float64)
        squares += (d.astype(np.float64) ** 2).sum(0)
        count += len(d)
    if not count:
        raise TfzooError("box_target_statistics: no frame has a ground-truth box")
    means = total / count
    stds = np.sqrt(np.maximum(squares / count - means ** 2, 0.0))
    if not (stds > 0).all():
        raise TfzooError(f"box_target_statistics: stds {stds.tolist()} over {count} RoIs; "
                         "every coordinate needs some spread (more frames or RoIs)")
    return tuple(float(v) for v in means), tuple(float(v) for v in stds)


def ohem_select(losses, num: int = 128, batch_index=None, valid=None):
    """Online hard example mining (R-FCN's OHEM): a 0/1 float mask (N,) of the `num` RoIs with
    the largest loss per image (`batch_index` (N,) groups RoIs by image; None = one image),
    among the `valid` ones. Multiply the per-RoI loss by it (the mask carries no gradient):
    the loss is evaluated on all RoIs, back-propagated on the hardest."""
    losses = tf.stop_gradient(tf.convert_to_tensor(losses, tf.float32))
    n = tf.shape(losses)[0]
    if valid is not None:
        losses = tf.where(tf.convert_to_tensor(valid, tf.bool), losses, -float("inf"))
    batch = tf.zeros([n], tf.int32) if batch_index is None else tf.cast(batch_index, tf.int32)
    by_loss = tf.argsort(losses, direction="DESCENDING", stable=True)
    order = tf.gather(by_loss, tf.argsort(tf.gather(batch, by_loss), stable=True))
    grouped = tf.gather(batch, order)
    first = tf.searchsorted(grouped, grouped, side="left")  # start of each image's run
    rank = tf.range(n) - first
    chosen = (rank < num) & (tf.gather(losses, order) > -float("inf"))
    return tf.scatter_nd(order[:, None], tf.cast(chosen, tf.float32), [n])
