"""D&T, Detect to Track and Track to Detect (Feichtenhofer, Pinz, Zisserman, ICCV 2017; thesis
ch. 8): the R-FCN detector with the RoI tracking head (correlation features of conv3/4/5 and both
frames' box maps, PS-RoI pooled to the box deltas t -> t+tau).

`DetectTrack` is an `RFCN` (same constructor arguments, same per-frame detection, export and
evaluation) plus `tfzoo.detection.RoITracking`:
- `detect_track(pairs)`: frame pairs (B, 2, H, W, 3) -> both frames' detections (NMS with box
  voting, at most `link_max_per_class` per class, as D&T links) and `track_boxes`, the boxes at
  t+tau of frame t's detections: the `detect_track` contract of `tfzoo.detect`.
- `tracking_loss(pairs, labels)`: the third term of eq. 8.1 on a batch of pairs (ground-truth
  boxes present in both frames, `tfzoo.detection.tracking_targets`).
- `fit` on frame pairs (the detection source with `pairs=True`) trains eq. 8.1 whole
  (`train_step`, `compute_loss`); the export adds the `detect_track` and `class_names`
  signatures (`DetectionTask.extra_signatures`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfzoo.detection.boxes import BOX_STDS, decode_boxes
from tfzoo.detection.tracking import RoITracking, tracking_loss, tracking_rois, tracking_targets
from tfzoo.backbones.resnet import STAGE_BLOCKS
from tfzoo.models.rfcn import RFCN, STRIDE, TINY

DT_ARGUMENTS = ("max_displacement", "conv3_stride", "link_max_per_class")


@keras.saving.register_keras_serializable(package="tfzoo")
class DetectTrack(RFCN):
    """R-FCN + RoI tracking (thesis §8.3). Arguments: those of `RFCN` (same defaults), and

    Args:
      max_displacement: d of the correlations (8).
      conv3_stride: position and displacement step of the conv3 correlation (2).
      link_max_per_class: detections per class and frame kept for linking (25; NMS with box
        voting).

    Example:
    >>> import numpy as np
    >>> from tfzoo.models.rfcn import TINY
    >>> model = DetectTrack(num_classes=2, max_displacement=2, **TINY)
    >>> out = model.detect_track(np.zeros((1, 2, 64, 64, 3), "uint8"))
    >>> tuple(out["detection_boxes"].shape[:2]), tuple(out["track_boxes"].shape[-1:])
    ((1, 2), (4,))
    """

    def __init__(
        self,
        num_classes: int = 30,
        blocks=STAGE_BLOCKS[101],
        width: int = 64,
        normalization: str = "caffe",
        bn_momentum: float = 0.99,
        freeze_bn: bool = True,
        k: int = 7,
        head_channels: int = 512,
        head_dilation: int = 6,
        rpn_channels: int = 512,
        anchor_scales=(2, 4, 8, 16, 32),
        anchor_ratios=(0.5, 1.0, 2.0),
        short_side: int | None = 600,
        max_side: int | None = 1000,
        train_pre_nms: int = 6000,
        train_post_nms: int = 300,
        test_pre_nms: int = 6000,
        test_post_nms: int = 300,
        rpn_nms: float = 0.7,
        min_size: float = 16.0,
        ohem: int = 128,
        rpn_batch: int = 256,
        test_nms: float = 0.3,
        max_per_class: int = 100,
        max_detections: int = 300,
        score_threshold: float = 0.001,
        max_displacement: int = 8,
        conv3_stride: int = 2,
        link_max_per_class: int = 25,
        **kwargs,
    ):
        config = self.capture(locals())
        kwargs.setdefault("name", "dt")
        super().__init__(**{n: v for n, v in config.items() if n not in DT_ARGUMENTS},
                         **kwargs)
        self._tfzoo_config = config
        self.tracker = RoITracking(k=k, spatial_scale=1.0 / STRIDE,
                                   max_displacement=max_displacement, conv3_stride=conv3_stride,
                                   name="roi_tracking", dtype="float32")

    def _track(self, images_t, images_tau, rois):
        """Deltas (N, 4) of `rois` (N, 5) of frame t, on frames already resized."""
        both = self.features(tf.concat([images_t, images_tau], 0))
        b = tf.shape(images_t)[0]
        names = ("conv3", "conv4", "conv5", "reg_maps")
        ft = {n: tf.cast(both[n][:b], tf.float32) for n in names}
        fu = {n: tf.cast(both[n][b:], tf.float32) for n in names}
        return self.tracker([ft, fu, rois])

    def detect_track(self, pairs) -> dict:
        """Frame pairs (B, 2, H, W, 3) -> the `tfzoo.detect` contract: `detection_boxes`
        (B, 2, M, 4) in input pixels, `detection_scores`, `detection_classes` (B, 2, M),
        `num_detections` (B, 2), `track_boxes` (B, M, 4) (frame t's detections at t+tau) and
        `track_deltas` (B, M, 4)."""
        pairs = tf.convert_to_tensor(pairs)
        shape = tf.shape(pairs)
        b = shape[0]
        flat = tf.reshape(pairs, tf.concat([[2 * b], shape[2:]], 0))
        per_class = self._tfzoo_config["link_max_per_class"]
        det = self.detect(flat, box_voting=True, max_per_class=per_class)
        m = tf.shape(det["boxes"])[1]
        frames = tf.reshape(flat, tf.concat([[b, 2], shape[2:]], 0))
        resized, scale = self._resize(frames[:, 0])
        resized_tau, _ = self._resize(frames[:, 1])
        boxes = tf.reshape(det["boxes"], [b, 2, m, 4])
        index = tf.repeat(tf.range(b), m)
        rois = tf.concat([tf.cast(index, tf.float32)[:, None],
                          tf.reshape(boxes[:, 0], [-1, 4]) * scale], 1)
        deltas = self._track(resized, resized_tau, rois)
        moved = decode_boxes(rois[:, 1:], deltas, BOX_STDS) / scale
        valid = tf.range(m)[None] < tf.reshape(det["num_detections"], [b, 2])[:, :1]
        return {"detection_boxes": boxes,
                "detection_scores": tf.reshape(det["scores"], [b, 2, m]),
                "detection_classes": tf.reshape(det["classes"], [b, 2, m]),
                "num_detections": tf.reshape(det["num_detections"], [b, 2]),
                "track_boxes": tf.where(valid[..., None], tf.reshape(moved, [b, m, 4]), 0.0),
                "track_deltas": tf.where(valid[..., None], tf.reshape(deltas, [b, m, 4]), 0.0)}

    # ------------------------------------------------------------------------- training
    def train_step(self, data):
        """A batch of frame pairs (images (B, 2, H, W, 3), ground truth (B, 2, ...); the
        detection source with `pairs=True`) trains eq. 8.1 whole: the detection terms on the
        2B frames and the tracking term on the pairs (`compute_loss`). Single frames
        (B, H, W, 3) train the detection terms only, as an `RFCN`."""
        x, y = data[0], data[1]
        if x.shape.rank != 5:
            return super().train_step(data)
        if x.shape[1] != 2:
            raise ValueError(f"frame pairs have shape (B, 2, H, W, 3); got {x.shape}")
        flat = lambda v: tf.reshape(v, tf.concat([[-1], tf.shape(v)[2:]], 0))
        # pair-major: frame 2b is t, 2b + 1 is t+tau of pair b (compute_loss folds them back)
        labels = {k: flat(v) for k, v in y.items()}
        labels["pair_frames"] = tf.tile(tf.range(2), [tf.shape(x)[0]])
        return super().train_step((flat(x), labels))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """`RFCN.compute_loss` (the detection terms) plus, for frames that `train_step`
        unfolded from pairs, eq. 8.1's tracking term with lambda = 1."""
        if not (isinstance(y, dict) and "pair_frames" in y):
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        y = {k: v for k, v in y.items() if k != "pair_frames"}
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        pair = lambda v: tf.reshape(v, tf.concat([[-1, 2], tf.shape(v)[1:]], 0))
        tracking = self.tracking_loss(pair(x), pair(y["gt_boxes"]), pair(y["gt_track_ids"]))
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            tracking = tracking / replica.num_replicas_in_sync
        return loss + tracking

    def tracking_loss(self, pairs, gt_boxes, gt_track_ids):
        """Eq. 8.1's tracking term on a batch of pairs (B, 2, H, W, 3) with their ground truth
        (B, 2, G, 4) / (B, 2, G) in the pairs' pixels (frames used at the size given)."""
        targets, valid = tracking_targets(gt_boxes, gt_track_ids)
        rois, idx = tracking_rois(gt_boxes, valid)
        pairs = tf.cast(pairs, tf.float32)
        deltas = self._track(pairs[:, 0], pairs[:, 1], rois)
        return tracking_loss(deltas, tf.gather_nd(targets, idx))


def register() -> None:
    """Registers the D&T presets (called once by `tfzoo.models`)."""
    from tfzoo.registry import register_model

    register_model("dt_resnet101", DetectTrack, blocks=STAGE_BLOCKS[101],
                   description="D&T: R-FCN ResNet-101 + correlation RoI tracking (thesis ch. 8)",
                   test_overrides={**TINY, "max_displacement": 2},
                   tags=("imagenet", "detection"))
    register_model(
        "dt", DetectTrack, blocks=(1, 1, 1, 1), width=16, bn_momentum=0.9, freeze_bn=False, k=3,
        head_channels=64, rpn_channels=64, anchor_scales=(2, 4, 8), short_side=192,
        max_side=256, max_displacement=4,
        description="Small D&T for the embedded synthetic detection demo",
        test_overrides={**TINY, "max_displacement": 2}, tags=("detection",))
