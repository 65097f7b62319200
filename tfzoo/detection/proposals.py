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

import numpy as np
import tensorflow as tf

from tfzoo.detection.boxes import clip_boxes, decode_boxes, iou_matrix, nms, remove_small_boxes
from tfzoo.detection.source import resize_for_detection

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


def multiscale_proposals(model, frames, scales, *, post_nms: int = 300,
                         nms_threshold: float = 0.7):
    """Proposals of a batch of frames (B, H, W, 3) from an R-FCN's RPN run at each shorter side
    in `scales` (the longer side capped in the model's `max_side / short_side` ratio), in the
    frames' pixels, merged as Faster R-CNN's multi-scale testing does: NMS at `nms_threshold`
    over the proposals of every scale, then the `post_nms` highest objectness. D&T extracts its
    300 proposals a frame from 5 scales this way (thesis §8.5.2); one scale is the model's own
    test path at that size.

    Returns boxes (B, post_nms, 4) zero-padded, scores (B, post_nms) and counts (B,) (numpy).

    Example:
    >>> import numpy as np
    >>> from tfzoo.models.rfcn import RFCN, TINY
    >>> model = RFCN(num_classes=2, **TINY)
    >>> boxes, scores, counts = multiscale_proposals(model, np.zeros((1, 64, 96, 3)), (48, 64))
    >>> boxes.shape, bool(counts[0] <= 300)
    ((1, 300, 4), True)
    """
    cfg = model.get_config()
    frames = tf.cast(frames, tf.float32)
    ratio = (cfg["max_side"] / cfg["short_side"]) if cfg.get("max_side") and cfg.get(
        "short_side") else None
    height, width = frames.shape[1], frames.shape[2]
    per_scale = []
    for s in scales:
        resized, scale = resize_for_detection(frames, int(s), int(s * ratio) if ratio else None)
        outputs = model(resized, training=False)
        size = tf.cast(tf.shape(resized)[1:3], tf.float32)
        boxes, scores, counts = model.proposals(
            outputs, tf.tile(size[None], [tf.shape(frames)[0], 1]), training=False)
        per_scale.append((boxes.numpy() / float(scale), scores.numpy(), counts.numpy()))
    out_boxes = np.zeros((len(frames), post_nms, 4), np.float32)
    out_scores = np.zeros((len(frames), post_nms), np.float32)
    out_counts = np.zeros(len(frames), np.int32)
    for i in range(len(frames)):
        b = np.concatenate([p[0][i, :p[2][i]] for p in per_scale])
        s = np.concatenate([p[1][i, :p[2][i]] for p in per_scale])
        b = clip_boxes(b, height, width).numpy()
        # one scale: already NMSed at its size (the inclusive-pixel IoU is not scale-free)
        keep = (np.argsort(-s, kind="stable")[:post_nms] if len(per_scale) == 1
                else nms(b, s, nms_threshold, max_output=post_nms).numpy())
        out_boxes[i, :len(keep)], out_scores[i, :len(keep)] = b[keep], s[keep]
        out_counts[i] = len(keep)
    return out_boxes, out_scores, out_counts


def proposal_recall(proposals, counts, gt_boxes, iou_threshold: float = 0.5):
    """(found, total): how many of the ground-truth boxes have a proposal with IoU >=
    `iou_threshold`, over frames given as sequences of (P, 4) `proposals` with their valid
    `counts` and (G, 4) `gt_boxes`."""
    found = total = 0
    for props, n, gt in zip(proposals, counts, gt_boxes):
        gt = np.asarray(gt, np.float32).reshape(-1, 4)
        total += len(gt)
        if len(gt) and n:
            found += int((iou_matrix(gt, np.asarray(props)[:n]).numpy().max(1)
                          >= iou_threshold).sum())
    return found, total


if __name__ == "__main__":
    # `python -m tfzoo.detection.proposals`, the program's first name: the library module runs
    # the program module (which imports the run directory layer, above this one).
    import runpy

    runpy.run_module("tfzoo.detection.proposal_recall", run_name="__main__", alter_sys=True)
