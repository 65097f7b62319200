"""D&T, Detect to Track and Track to Detect (Feichtenhofer, Pinz, Zisserman, ICCV 2017; thesis
ch. 8): the R-FCN detector with the RoI tracking head (correlation features of conv3/4/5 and both
frames' box maps, PS-RoI pooled to the box deltas t -> t+tau).

`DetectTrack` is an `RFCN` (same constructor arguments, same per-frame detection, export and
evaluation) plus `tfzoo.detection.RoITracking`, and runs each frame's network once for both:
- `detect_track_clip(clips)`: clips (B, T, H, W, 3) -> every frame's detections (NMS with box
  voting, at most `link_max_per_class` per class, as D&T links) and the tracks between
  consecutive frames; it can carry the last frame's maps into the next call (a video in runs).
- `detect_track(pairs)`: the same on frame pairs (B, 2, H, W, 3), `track_boxes` (B, M, 4) the
  boxes at t+tau of frame t's detections: the `detect_track` contract of `tfzoo.detect`.
- `tracking_loss(pairs, gt_boxes, gt_track_ids)`: the third term of eq. 8.1 on a batch of
  pairs (ground-truth boxes present in both frames, `tfzoo.detection.tracking_targets`).
- `fit` on frame pairs (the detection source with `pairs=True`) trains eq. 8.1 whole
  (`train_step`: one forward pass of the 2B frames feeds the detection and tracking terms);
  the export adds the `detect_track`, `detect_track_clip` and `class_names` signatures
  (`DetectionTask.extra_signatures`).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras.src.losses.loss import unscale_loss_for_distribution

from tfzoo.backbones.resnet import STAGE_BLOCKS
from tfzoo.detection.boxes import BOX_STDS, decode_boxes
from tfzoo.detection.tracking import (
    TRACK_STDS, RoITracking, tracking_loss, tracking_rois, tracking_targets)
from tfzoo.errors import InputSpecError, TfzooError
from tfzoo.models._registry import register_model
from tfzoo.models.base import _multi_worker_logs, check_inputs
from tfzoo.models.rfcn import RFCN, STRIDE, TINY, check_box_normalisation

DT_ARGUMENTS = ("max_displacement", "conv3_stride", "link_max_per_class", "link_nms",
                "link_vote_offset", "link_score_threshold", "link_max_detections",
                "link_tracklets", "tracking_stds", "tracking_weight")
LINK_TRACKLETS = ("proposals", "detections")
# test_track_reg: a tracklet starts at every proposal's regressed box whose best class
# probability is above this
TRACKLET_MIN_SCORE = 0.01
# the maps of a frame the tracker reads (RoITracking)
TRACK_MAPS = ("conv3", "conv4", "conv5", "reg_maps")


@keras.saving.register_keras_serializable(package="tfzoo")
class DetectTrack(RFCN):
    """R-FCN + RoI tracking (thesis §8.3). Arguments: those of `RFCN` (same defaults), and

    Args:
      max_displacement: d of the correlations (8).
      conv3_stride: position and displacement step of the conv3 correlation (2).
      link_max_per_class: detections per class and frame kept for linking (25; NMS with box
        voting, no score floor and no cap across classes: the authors' make_tubes).
      link_nms: the IoU of that NMS (0.4, make_tubes; the thesis gives none for it).
      link_vote_offset: added to the scores that weight the box votes (0: make_tubes weights
        by the score; Gidaris & Komodakis' 1.5 was tfzoo's before issue 20).
      link_score_threshold: a score floor on those detections (None: none, make_tubes; 0.001
        before issue 20).
      link_max_detections: a cap on them across classes per frame (None: C x
        `link_max_per_class`, i.e. none; 300 before issue 20).
      link_tracklets: the tracklets `detect_track(_clip)` returns for linking: "proposals"
        (every proposal's regressed box whose best class probability is above 0.01, the
        authors' test_track_reg) or "detections" (the detections' own tracks, as before issue
        20). With the three above at 1.5, 0.001 and 300, `link_nms=0.3` and "detections",
        the model links as tfzoo did before issue 20 (a before/after on one trained model).
      tracking_stds: a normalisation of the tracking targets and deltas; (1, 1, 1, 1) is eq.
        8.2-8.3 as written (and the authors' code). Runs saved before this argument existed
        load with the detector's (0.1, 0.1, 0.2, 0.2), which they were trained with.
      tracking_weight: lambda of eq. 8.1, the tracking term's weight (1); 0 trains the
        detector alone on the same pairs ("D" in a controlled comparison).

    Example:
    >>> import numpy as np
    >>> from tfzoo.models.rfcn import TINY
    >>> model = DetectTrack(num_classes=2, max_displacement=2, **TINY)
    >>> out = model.detect_track(np.zeros((1, 2, 64, 64, 3), "uint8"))
    >>> tuple(out["detection_boxes"].shape[:2]), tuple(out["track_boxes"].shape[-1:])
    ((1, 2), (4,))
    >>> clip = model.detect_track_clip(np.zeros((1, 3, 64, 64, 3), "uint8"))  # 3 passes
    >>> tuple(clip["num_detections"].shape), tuple(clip["track_boxes"].shape[:2])
    ((1, 3), (1, 2))
    """

    def __init__(
        self,
        num_classes: int = 30,
        blocks=STAGE_BLOCKS[101],
        width: int = 64,
        normalization: str = "caffe",
        bn_momentum: float = 0.99,
        freeze_bn: bool = True,
        frozen_stages=("conv1", "conv2"),
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
        box_means=(0.0, 0.0, 0.0, 0.0),
        box_stds=BOX_STDS,
        max_displacement: int = 8,
        conv3_stride: int = 2,
        link_max_per_class: int = 25,
        link_nms: float = 0.4,
        link_vote_offset: float = 0.0,
        link_score_threshold: float | None = None,
        link_max_detections: int | None = None,
        link_tracklets: str = "proposals",
        tracking_stds=TRACK_STDS,
        tracking_weight: float = 1.0,
        **kwargs,
    ):
        config = self.capture(locals())
        check_box_normalisation((0, 0, 0, 0), tracking_stds)
        if link_tracklets not in LINK_TRACKLETS:
            raise TfzooError(f"link_tracklets={link_tracklets!r}: expected one of "
                             f"{LINK_TRACKLETS}")
        if link_max_detections is not None and not (
                isinstance(link_max_detections, int) and link_max_detections >= 1):
            raise TfzooError(f"link_max_detections={link_max_detections!r}: expected None or "
                             "an integer >= 1")
        if not (isinstance(tracking_weight, (int, float)) and tracking_weight >= 0):
            raise TfzooError(f"tracking_weight={tracking_weight!r}: expected a number >= 0 "
                             "(lambda of eq. 8.1)")
        kwargs.setdefault("name", "dt")
        super().__init__(**{n: v for n, v in config.items() if n not in DT_ARGUMENTS},
                         **kwargs)
        self._tfzoo_config = config
        self.tracker = RoITracking(k=k, spatial_scale=1.0 / STRIDE,
                                   max_displacement=max_displacement, conv3_stride=conv3_stride,
                                   name="roi_tracking", dtype="float32")
        # the tracking term's running mean in the training logs, next to the total loss
        self.tracking_loss_tracker = keras.metrics.Mean(name="tracking_loss")

    @classmethod
    def from_config(cls, config):
        # runs saved before `tracking_stds` existed trained the tracker on targets divided by
        # the detector's fixed stds; they keep decoding with them
        config = dict(config)
        config.setdefault("tracking_stds", list(BOX_STDS))
        return super().from_config(config)

    # ------------------------------------------------------------------------- test
    def link_detection_options(self) -> dict:
        """The `detect_from_maps` options of the detections D&T links (by default the
        authors' make_tubes): NMS `link_nms` (0.4) with box voting weighted by the score
        (+ `link_vote_offset`), at most `link_max_per_class` (25) per class, no score floor
        and no cap across classes unless `link_score_threshold` / `link_max_detections` set
        them (the caps of what is drawn or written apply after rescoring)."""
        cfg = self._tfzoo_config
        per_class = cfg["link_max_per_class"]
        floor, cap = cfg.get("link_score_threshold"), cfg.get("link_max_detections")
        return {"box_voting": True, "nms_threshold": cfg["link_nms"],
                "max_per_class": per_class,
                "max_detections": cap or self.num_classes * per_class,
                "score_threshold": -1.0 if floor is None else floor,
                "vote_offset": cfg.get("link_vote_offset", 0.0)}

    def _frame_maps(self, frames):
        """One forward pass of frames (N, H, W, 3): their tracking maps (float32, at the
        resized scale), detections (`link_detection_options`) in input pixels with each
        proposal's regressed box and best score, and the resize scale."""
        frames = tf.convert_to_tensor(frames)
        resized, scale = self._resize(frames)
        maps = self.features(resized)
        sizes = tf.tile(tf.shape(frames)[None, 1:3], [tf.shape(frames)[0], 1])
        det = self.detect_from_maps(maps, sizes, scale, **self.link_detection_options())
        return {n: tf.cast(maps[n], tf.float32) for n in TRACK_MAPS}, det, scale

    def _track(self, maps_t, maps_tau, boxes, valid, scale):
        """Frame-t boxes (N, M, 4) (input pixels, `valid` (N, M) the real ones) tracked from
        `maps_t` to `maps_tau` (N frames each): boxes at t+tau and deltas, (N, M, 4) each,
        zero where not valid."""
        n, m = tf.shape(boxes)[0], tf.shape(boxes)[1]
        index = tf.repeat(tf.range(n), m)
        rois = tf.concat([tf.cast(index, tf.float32)[:, None],
                          tf.reshape(boxes, [-1, 4]) * scale], 1)
        deltas = self.tracker([maps_t, maps_tau, rois])
        moved = decode_boxes(rois[:, 1:], deltas, self._tfzoo_config["tracking_stds"]) / scale
        valid = valid[..., None]
        return (tf.where(valid, tf.reshape(moved, [n, m, 4]), 0.0),
                tf.where(valid, tf.reshape(deltas, [n, m, 4]), 0.0))

    def detect_track_clip(self, clips, previous=None, *, return_state: bool = False):
        """Clips of consecutive frames (B, T, H, W, 3) -> every frame's detections and the
        tracks between consecutive frames, each frame's network run once (T passes for T
        frames and T - 1 tracked pairs): `detection_boxes` (B, T, M, 4) in input pixels,
        `detection_scores`, `detection_classes` (B, T, M), `num_detections` (B, T),
        `track_boxes` (B, T - 1, M, 4) (frame t's detections at t + 1; zero past
        `num_detections`), `track_deltas` (B, T - 1, M, 4) (`encode_boxes` units), and the
        tracklets linking uses (the authors' test_track_reg): `tracklets` (B, T - 1, P, 8),
        every proposal's regressed box at t whose best class probability is above
        `TRACKLET_MIN_SCORE` (0.01) and its tracked box at t + 1, first `num_tracklets`
        (B, T - 1) rows valid (zero after).

        `return_state=True` also returns the last frames' state, and `previous=` that state
        from the call on each clip's preceding frames: the tracks then start at that frame
        (B, T, M, 4), whose maps are not recomputed (a video in chunks, each frame once).
        """
        clips = tf.convert_to_tensor(clips)
        if clips.shape.rank != 5 or clips.shape[-1] not in (None, 3) or 0 in clips.shape[:2]:
            raise InputSpecError(f"clips have shape (B, T, H, W, 3) with B, T >= 1; got "
                             f"{clips.shape}")
        if previous is not None:
            for n, v in previous.get("maps", {}).items():
                if n in TRACK_MAPS and v.shape[0] not in (None, clips.shape[0]):
                    raise InputSpecError(f"previous state is for {v.shape[0]} clips, the clips "
                                     f"are {clips.shape[0]}")
        shape = tf.shape(clips)
        b, t = shape[0], shape[1]
        maps, det, scale = self._frame_maps(tf.reshape(clips, tf.concat([[b * t], shape[2:]], 0)))
        per_clip = lambda v: tf.reshape(v, tf.concat([[b, t], tf.shape(v)[1:]], 0))
        maps = {n: per_clip(v) for n, v in maps.items()}
        det = {k: per_clip(det[k]) for k in ("boxes", "scores", "classes", "num_detections",
                                              "regressed_boxes", "best_scores")}
        # the tracklet starts: the proposals above the score, moved to the front (stable)
        confident = det["best_scores"] > TRACKLET_MIN_SCORE
        order = tf.argsort(tf.cast(~confident, tf.int32), axis=-1, stable=True)
        starts = tf.gather(det["regressed_boxes"], order, batch_dims=2)
        num_starts = tf.reduce_sum(tf.cast(confident, tf.int32), -1)
        state = {"maps": {n: v[:, -1] for n, v in maps.items()}, "boxes": det["boxes"][:, -1],
                 "num_detections": det["num_detections"][:, -1],
                 "tracklet_starts": starts[:, -1], "num_tracklets": num_starts[:, -1]}
        boxes, num = det["boxes"], det["num_detections"]
        if previous is not None:
            maps = {n: tf.concat([tf.cast(previous["maps"][n], tf.float32)[:, None], v], 1)
                    for n, v in maps.items()}
            boxes = tf.concat([tf.cast(previous["boxes"], tf.float32)[:, None], boxes], 1)
            num = tf.concat([tf.cast(previous["num_detections"], tf.int32)[:, None], num], 1)
            starts = tf.concat([tf.cast(previous["tracklet_starts"], tf.float32)[:, None],
                                starts], 1)
            num_starts = tf.concat(
                [tf.cast(previous["num_tracklets"], tf.int32)[:, None], num_starts], 1)
        # pair p of clip i is its frames (p, p + 1); a one-frame clip has no pair, but a layer
        # cannot run on an empty batch: its frame is paired with itself and the result dropped
        frames = tf.shape(boxes)[1]
        pairs = tf.maximum(frames - 1, 1)
        first = tf.reshape(tf.range(b)[:, None] * frames + tf.range(pairs)[None], [-1])
        second = first + tf.minimum(frames - 1, 1)
        flat = lambda v: tf.reshape(v, tf.concat([[-1], tf.shape(v)[2:]], 0))
        # the detections and the tracklet starts go through the tracker together (one
        # correlation per pair)
        m, p = tf.shape(boxes)[2], tf.shape(starts)[2]
        rois = tf.concat([tf.gather(flat(boxes), first), tf.gather(flat(starts), first)], 1)
        valid = tf.concat([tf.range(m)[None] < tf.gather(flat(num), first)[:, None],
                           tf.range(p)[None] < tf.gather(flat(num_starts), first)[:, None]], 1)
        moved, deltas = self._track({n: tf.gather(flat(v), first) for n, v in maps.items()},
                                    {n: tf.gather(flat(v), second) for n, v in maps.items()},
                                    rois, valid, scale)
        per_pair = lambda v, k: tf.reshape(v, [b, pairs, k, tf.shape(v)[-1]])[:, :frames - 1]
        tracklets = tf.concat([tf.where(valid[:, m:, None], rois[:, m:], 0.0), moved[:, m:]], -1)
        if self._tfzoo_config.get("link_tracklets", "proposals") == "detections":
            # the detections' own tracks (tfzoo before issue 20), in the tracklets' layout
            tracklets, p = tf.concat([rois[:, :m], moved[:, :m]], -1), m
            num_starts = num
        out = {"detection_boxes": det["boxes"], "detection_scores": det["scores"],
               "detection_classes": det["classes"], "num_detections": det["num_detections"],
               "track_boxes": per_pair(moved[:, :m], m), "track_deltas": per_pair(deltas[:, :m], m),
               "tracklets": per_pair(tracklets, p),
               "num_tracklets": tf.reshape(tf.gather(flat(num_starts), first),
                                           [b, pairs])[:, :frames - 1]}
        return (out, state) if return_state else out

    def detect_track(self, pairs) -> dict:
        """Frame pairs (B, 2, H, W, 3) -> the `tfzoo.detect` contract: `detection_boxes`
        (B, 2, M, 4) in input pixels, `detection_scores`, `detection_classes` (B, 2, M),
        `num_detections` (B, 2), `track_boxes` (B, M, 4) (frame t's detections at t+tau),
        `track_deltas` (B, M, 4), `tracklets` (B, P, 8) and `num_tracklets` (B,):
        `detect_track_clip` with T = 2 (2 network passes a pair)."""
        pairs = tf.convert_to_tensor(pairs)
        if pairs.shape.rank != 5 or pairs.shape[1] not in (None, 2):
            raise InputSpecError(f"frame pairs have shape (B, 2, H, W, 3); got {pairs.shape}")
        out = self.detect_track_clip(pairs)
        return {**out, **{k: out[k][:, 0] for k in ("track_boxes", "track_deltas", "tracklets",
                                                     "num_tracklets")}}

    # ------------------------------------------------------------------------- training
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # fit's batches may be frame pairs (B, 2, H, W, 3), which are not the per-frame
        # detector's input: only the optimizer is built before the first trace (the losses
        # and their trackers are the model's own).
        if iterator is not None and self._distribute_strategy is None:
            if self.optimizer is not None and not self.optimizer.built:
                self.optimizer.build(self.trainable_variables)
            return None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        """A batch of frame pairs (images (B, 2, H, W, 3), ground truth (B, 2, ...); the
        detection source with `pairs=True`) trains eq. 8.1 whole: the detection terms on the
        2B frames and the tracking term on the pairs, both from one forward pass (training
        mode) of the 2B frames; the logs add `tracking_loss`, the tracking term's running
        mean. Single frames (B, H, W, 3) train the detection terms only, as an `RFCN`."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if x.shape.rank != 5:
            return super().train_step(data)
        if sample_weight is not None:
            raise TfzooError("D&T pair training takes no sample weights (eq. 8.1 weighs its "
                             "terms itself); got a third element in the batch")
        if x.shape[1] != 2:
            raise InputSpecError(f"frame pairs have shape (B, 2, H, W, 3); got {x.shape}")
        flat = lambda v: tf.reshape(v, tf.concat([[-1], tf.shape(v)[2:]], 0))
        # pair-major: frame 2b is t, 2b + 1 is t+tau of pair b
        x, labels = flat(x), {k: flat(v) for k, v in y.items()}
        check_inputs(self, x)
        # Keras' train step, with the forward pass through `features` so the tracking term
        # reads the same maps as the detection terms (no second backbone pass)
        with tf.GradientTape() as tape:
            maps = self.features(x, training=True)
            y_pred = {n: maps[n] for n in self.output}
            loss = self.compute_loss(x, labels, y_pred, training=True)
            tracking = self._tracking_loss(maps, y["gt_boxes"], y["gt_track_ids"])
            replica = tf.distribute.get_replica_context()
            if replica is not None and replica.num_replicas_in_sync > 1:
                tracking = tracking / replica.num_replicas_in_sync
            loss = loss + tracking
            self.tracking_loss_tracker.update_state(unscale_loss_for_distribution(tracking))
            self._loss_tracker.update_state(unscale_loss_for_distribution(loss),
                                            sample_weight=tf.shape(x)[0])
            loss = self.optimizer.scale_loss(loss)
        weights = self.trainable_weights
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return _multi_worker_logs(self, self.compute_metrics(x, labels, y_pred))

    def _tracking_loss(self, maps, gt_boxes, gt_track_ids):
        """Eq. 8.1's tracking term from the maps of 2B frames, pair-major (frame 2b is t and
        2b + 1 is t+tau of pair b), with the pairs' ground truth (B, 2, G, 4) / (B, 2, G)."""
        cfg = self._tfzoo_config
        targets, valid = tracking_targets(gt_boxes, gt_track_ids, cfg["tracking_stds"])
        rois, idx = tracking_rois(gt_boxes, valid)
        # unstack, not maps[n][0::2]: a strided slice's gradient is a slow StridedSliceGrad
        pairs = {n: tf.unstack(tf.reshape(tf.cast(maps[n], tf.float32),
                                          tf.concat([[-1, 2], tf.shape(maps[n])[1:]], 0)),
                               2, axis=1) for n in TRACK_MAPS}
        deltas = self.tracker([{n: v[0] for n, v in pairs.items()},
                               {n: v[1] for n, v in pairs.items()}, rois])
        return tracking_loss(deltas, tf.gather_nd(targets, idx), weight=cfg["tracking_weight"])

    def tracking_loss(self, pairs, gt_boxes, gt_track_ids, training: bool = False):
        """Eq. 8.1's tracking term on a batch of pairs (B, 2, H, W, 3) with their ground truth
        (B, 2, G, 4) / (B, 2, G) in the pairs' pixels (frames used at the size given)."""
        pairs = tf.cast(pairs, tf.float32)
        maps = self.features(tf.reshape(pairs, tf.concat([[-1], tf.shape(pairs)[2:]], 0)),
                             training=training)
        return self._tracking_loss(maps, gt_boxes, gt_track_ids)


def register() -> None:
    """Registers the D&T presets (called once by `tfzoo.models`)."""
    register_model("dt_resnet101", DetectTrack, blocks=STAGE_BLOCKS[101],
                   description="D&T: R-FCN ResNet-101 + correlation RoI tracking (thesis ch. 8)",
                   test_overrides={**TINY, "max_displacement": 2},
                   tags=("imagenet", "detection"))
    register_model(
        "dt", DetectTrack, blocks=(1, 1, 1, 1), width=16, bn_momentum=0.9, freeze_bn=False,
        frozen_stages=(), k=3,
        head_channels=64, rpn_channels=64, anchor_scales=(2, 4, 8), short_side=192,
        max_side=256, max_displacement=4,
        description="Small D&T for the embedded synthetic detection demo",
        test_overrides={**TINY, "max_displacement": 2}, tags=("detection",))
