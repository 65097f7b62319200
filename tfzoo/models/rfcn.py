"""R-FCN, the per-frame detector of D&T (thesis §8.3.2, §8.5.1-8.5.2; Dai et al., "R-FCN:
Object Detection via Region-based Fully Convolutional Networks", NIPS 2016).

The network is fully convolutional; everything after the dense maps (proposals, RoI targets,
position-sensitive pooling, voting, OHEM, NMS) is a function of the model's outputs, so the
functional Keras model stays exportable and the D&T tracking head reads the same maps
(`RFCN.features`).
"""

from __future__ import annotations

import functools
import math

import keras
import tensorflow as tf

from tfzoo.backbones.resnet import STAGE_BLOCKS, batch_norm, bottleneck_unit, resnet_body
from tfzoo.detection.boxes import (
    BOX_STDS, clip_boxes, decode_boxes, generate_anchors, nms_box_voting, shifted_anchors
)
from tfzoo.detection.proposals import propose
from tfzoo.detection.source import resize_for_detection
from tfzoo.detection.targets import anchor_targets, ohem_select, roi_targets
from tfzoo.detection.tracking import smooth_l1
from tfzoo.errors import TfzooError
from tfzoo.layers.roi_pooling import PSRoIPooling
from tfzoo.models._registry import register_model
from tfzoo.models.base import VideoModel
from tfzoo.models.features import feature_extractor

STRIDE = 16  # conv4 and the dilated conv5 (thesis §8.5.1)
STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")  # layer-name prefixes of the backbone
# The variant the tests build: tiny, trains in seconds on 64-128 px frames.
TINY = dict(blocks=(1, 1, 1, 1), width=8, k=3, head_channels=32, rpn_channels=32,
            anchor_scales=(1, 2, 4), short_side=None, max_side=None)


def check_box_normalisation(means, stds) -> None:
    """One clear error for box target means/stds that are not 4 finite numbers (stds > 0)."""
    try:
        m, s = [float(v) for v in means], [float(v) for v in stds]
    except (TypeError, ValueError):
        m = s = []
    if len(m) != 4 or len(s) != 4 or not all(math.isfinite(v) for v in m + s) or min(s) <= 0:
        raise TfzooError(f"box_means={means!r}, box_stds={stds!r}: expected 4 finite numbers "
                         "each, the stds > 0")


@keras.saving.register_keras_serializable(package="tfzoo")
class FrameAxis(keras.layers.Layer):
    """Adds (`add=True`) or removes a length-1 frame axis: tfzoo's ResNet body runs on video
    tensors (B, T, H, W, C); a detector's frames are (B, H, W, C)."""

    def __init__(self, add: bool, **kwargs):
        super().__init__(**kwargs)
        self.add = add

    def call(self, x):
        return x[:, None] if self.add else x[:, 0]

    def compute_output_shape(self, shape):
        return (shape[0], 1, *shape[1:]) if self.add else (shape[0], *shape[2:])

    def get_config(self):
        return {**super().get_config(), "add": self.add}


@keras.saving.register_keras_serializable(package="tfzoo")
class RFCN(VideoModel):
    """R-FCN with a ResNet backbone at output stride 16, as D&T's detector (thesis §8.3.2).

    An RPN (3x3 conv + 1x1 objectness / box convs, `len(anchor_scales) * len(anchor_ratios)`
    anchors per cell, 15 in D&T) on conv4; on conv5 (stride 16, dilation 2) a randomly
    initialised 3x3 dilation-6 conv to `head_channels` (`rfcn_features`), then 1x1 convs to
    `k*k*(C+1)` position-sensitive class maps (`cls_maps`) and class-agnostic `4*k*k` box maps
    (`reg_maps`). A RoI's class scores / box offsets are its PS-RoI pooled bins averaged
    ("voting"). Training (`DetectionTask`): RPN anchor targets and smooth-L1 box loss, RoI
    targets at IoU >= 0.5 on the proposals plus the ground truth, OHEM (loss on all RoIs,
    gradient from the `ohem` hardest per image). Test: per-class NMS.

    Input: `images` (B, H, W, 3), RGB in [0, 255]. Outputs (float32): `rpn_scores` (B, h, w, A)
    objectness logits, `rpn_deltas` (B, h, w, 4A), `cls_maps`, `reg_maps`.

    Args:
      num_classes: object classes C (background excluded): 30 for ImageNet VID.
      blocks, width, normalization, bn_momentum: the ResNet backbone (`tfzoo.backbones`);
        ImageNet weights transplant exactly (`tfzoo.create_model(..., weights="imagenet")`).
      freeze_bn: BN layers run on their stored statistics and are not trained (R-FCN / D&T:
        one image per GPU is too few for batch statistics); False to train them (from scratch).
      frozen_stages: backbone stages whose layers are not trained (`conv1` .. `conv5`):
        conv1 and conv2 (res2), as the authors' R-FCN and D&T prototxts (lr_mult 0) for an
        ImageNet-initialised backbone; () for one trained from scratch.
      k: PS-RoI pooling bins per side (7).
      head_channels, head_dilation: the 3x3 conv on conv5 (512, dilation 6).
      rpn_channels: the RPN's 3x3 conv (512).
      anchor_scales, anchor_ratios: anchors of the 16-px cell (scales 2..32 = 32..512 px).
      short_side, max_side: `detect` resizes frames so the shorter side is `short_side` and the
        longer at most `max_side` (600 / 1000), and maps boxes back; None keeps their size.
      train_pre_nms, train_post_nms, test_pre_nms, test_post_nms, rpn_nms, min_size: the
        proposal layer (`tfzoo.detection.proposals.propose`): 6000 / 300, NMS 0.7, 16 px.
      ohem: RoIs per image that carry the head's gradient (128).
      rpn_batch: anchors sampled per image for the RPN loss (256, half positive at most).
      test_nms: per-class NMS threshold at test (0.3).
      box_means, box_stds: the normalisation of the R-FCN box targets and deltas
        (`encode_boxes`): training computes them from the training data
        (`DetectionTask.prepare_model`, `tfzoo.detection.box_target_statistics`) and records
        them in the run; the defaults are py-R-FCN's fixed (0, 0, 0, 0) / (0.1, 0.1, 0.2, 0.2).
      max_per_class, max_detections, score_threshold: kept detections per class and image.

    Example:
    >>> import numpy as np
    >>> model = RFCN(num_classes=2, blocks=(1, 1, 1, 1), width=8, k=3, head_channels=16,
    ...              rpn_channels=16, short_side=None, max_side=None)
    >>> out = model.detect(np.zeros((1, 64, 96, 3), "uint8"))
    >>> tuple(out["boxes"].shape[::2]), out["classes"].dtype.name
    ((1, 4), 'int32')
    >>> tuple(model.features(np.zeros((1, 64, 96, 3), "float32"))["cls_maps"].shape)
    (1, 4, 6, 27)
    """

    TASK = "detection"

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
        **kwargs,
    ):
        config = self.capture(locals())
        if num_classes < 1:
            raise TfzooError(f"num_classes={num_classes}; expected at least 1 object class")
        check_box_normalisation(box_means, box_stds)
        unknown = sorted(set(frozen_stages) - set(STAGES))
        if isinstance(frozen_stages, str) or unknown:
            raise TfzooError(f"frozen_stages={frozen_stages!r}: expected a list of backbone "
                             f"stages among {list(STAGES)}")
        num_anchors = len(anchor_scales) * len(anchor_ratios)
        norm = functools.partial(batch_norm, momentum=bn_momentum)
        images = keras.Input((None, None, 3), name="images")
        video = FrameAxis(True, name="add_frame_axis")(images)
        body = resnet_body(video, blocks=tuple(blocks), width=width, normalization=normalization,
                           output_stride=STRIDE, norm=norm,
                           unit_fn=lambda x, spec: bottleneck_unit(x, spec, norm=norm))
        maps = {n: FrameAxis(False, name=f"{n}_frame")(body[n]) for n in ("conv4", "conv5")}
        # R-FCN's initialisation of the new layers: N(0, 0.01^2), the RPN's offsets N(0, 0.001^2)
        conv = functools.partial(keras.layers.Conv2D,
                                 kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))

        rpn = conv(rpn_channels, 3, padding="same", activation="relu",
                   name="rpn_conv")(maps["conv4"])
        rpn_scores = conv(num_anchors, 1, name="rpn_cls")(rpn)
        rpn_deltas = conv(4 * num_anchors, 1, name="rpn_bbox",
                          kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))(rpn)
        feats = conv(head_channels, 3, padding="same", dilation_rate=head_dilation,
                     activation="relu", name="rfcn_features")(maps["conv5"])
        cls_maps = conv(k * k * (num_classes + 1), 1, name="rfcn_cls")(feats)
        reg_maps = conv(4 * k * k, 1, name="rfcn_bbox")(feats)
        as_float = lambda n, t: keras.layers.Activation("linear", dtype="float32", name=n)(t)
        outputs = {"rpn_scores": as_float("rpn_scores", rpn_scores),
                   "rpn_deltas": as_float("rpn_deltas", rpn_deltas),
                   "cls_maps": as_float("cls_maps", cls_maps),
                   "reg_maps": as_float("reg_maps", reg_maps)}
        # conv1..conv5 are published as the body's (B, 1, h, w, C) maps (conv1..3 feed no
        # head, so a frame-axis layer after them would not be part of the model);
        # `features` drops the frame axis.
        endpoints = {**body, "rfcn_features": feats, "cls_maps": cls_maps, "reg_maps": reg_maps}
        kwargs.setdefault("name", "rfcn")
        super().__init__(images, outputs, config=config, endpoints=endpoints, **kwargs)
        self.blocks = tuple(blocks)
        for layer in self.layers:
            if (freeze_bn and isinstance(layer, keras.layers.BatchNormalization)) or any(
                    layer.name.startswith(f"{stage}_") for stage in frozen_stages):
                layer.trainable = False
        self.num_classes = num_classes
        self.base_anchors = generate_anchors(STRIDE, anchor_ratios, anchor_scales)
        # float32 under mixed precision too: scores, losses and box offsets are read from them
        self.cls_pool = PSRoIPooling(k, num_classes + 1, 1.0 / STRIDE, name="psroi_cls",
                                     dtype="float32")
        self.reg_pool = PSRoIPooling(k, 4, 1.0 / STRIDE, name="psroi_bbox", dtype="float32")
        self._features = None

    # ------------------------------------------------------------------------- features
    def features(self, images, training: bool = False) -> dict:
        """Every map of a batch of frames (B, H, W, 3) from one forward pass: the endpoints
        conv1..conv5 and rfcn_features, and the outputs rpn_scores, rpn_deltas, cls_maps and
        reg_maps (float32). What `detect_from_maps` and the D&T tracking head read, so a
        frame's backbone runs once for both."""
        if self._features is None:
            endpoints = feature_extractor(self)
            # the outputs (float32 under mixed precision) replace the endpoints' cls/reg maps
            self._features = keras.Model(self.inputs[0], {**endpoints.output, **self.output},
                                         name=f"{self.name}_features")
        maps = self._features(tf.cast(images, tf.float32), training=training)
        return {n: (m[:, 0] if m.shape.rank == 5 else m) for n, m in maps.items()}

    def set_box_normalisation(self, means, stds) -> None:
        """Sets `box_means`/`box_stds` (the R-FCN box targets' normalisation, read when the
        loss and `detect` are traced) before training, e.g. to the values
        `tfzoo.detection.box_target_statistics` computes from the training data; `get_config`
        (and so the run's run.json) records them."""
        check_box_normalisation(means, stds)
        self._tfzoo_config["box_means"] = [float(v) for v in means]
        self._tfzoo_config["box_stds"] = [float(v) for v in stds]

    # ------------------------------------------------------------------------- proposals
    def anchors(self, height, width):
        """All anchors of an (height, width) output map, ordered like the RPN outputs."""
        return shifted_anchors(height, width, STRIDE, self.base_anchors)

    def proposals(self, outputs, image_sizes, *, training: bool = False):
        """Per image (B, P, 4) boxes, (B, P) objectness and (B,) valid counts (`propose`)."""
        cfg = self._tfzoo_config
        pre, post = ((cfg["train_pre_nms"], cfg["train_post_nms"]) if training
                     else (cfg["test_pre_nms"], cfg["test_post_nms"]))
        scores, deltas = outputs["rpn_scores"], outputs["rpn_deltas"]
        shape = tf.shape(scores)
        anchors = self.anchors(shape[1], shape[2])
        scores = tf.reshape(scores, [shape[0], -1])
        deltas = tf.reshape(deltas, [shape[0], -1, 4])
        sizes = tf.cast(image_sizes, tf.float32)

        def one(args):
            s, d, size = args
            return propose(tf.sigmoid(s), d, anchors, size[0], size[1], pre_nms=pre,
                           post_nms=post, nms_threshold=cfg["rpn_nms"], min_size=cfg["min_size"])

        return tf.map_fn(one, (scores, deltas, sizes),
                         fn_output_signature=(tf.TensorSpec([post, 4], tf.float32),
                                              tf.TensorSpec([post], tf.float32),
                                              tf.TensorSpec([], tf.int32)))

    def head(self, outputs, rois):
        """Class logits (N, C+1) and box offsets (N, 4) of `rois` (N, 5) rows [batch index,
        x1, y1, x2, y2]: PS-RoI pooled bins averaged (R-FCN's voting)."""
        rois = tf.stop_gradient(tf.cast(rois, tf.float32))
        logits = tf.reduce_mean(self.cls_pool([outputs["cls_maps"], rois]), axis=[1, 2])
        deltas = tf.reduce_mean(self.reg_pool([outputs["reg_maps"], rois]), axis=[1, 2])
        return logits, deltas

    # ------------------------------------------------------------------------- training
    def detection_losses(self, outputs, labels, *, seed=(0, 0)) -> dict:
        """The four losses of one batch: `rpn_cls` (sigmoid cross-entropy of the sampled
        anchors), `rpn_box` (smooth L1, sigma 3, over positives / sampled), `cls` (softmax
        cross-entropy) and `box` (smooth L1 of foreground RoIs), both averaged over the OHEM
        selection. `labels`: gt_boxes (B, G, 4) in input pixels, gt_classes (B, G) int
        (-1 = padding), image_size (B, 2) the unpadded (height, width) (`fit` fills it in
        with the batch's frame size when absent)."""
        cfg = self._tfzoo_config
        gt_boxes = tf.cast(labels["gt_boxes"], tf.float32)
        gt_classes = tf.cast(labels["gt_classes"], tf.int32)
        sizes = tf.cast(labels["image_size"], tf.float32)
        scores, deltas = outputs["rpn_scores"], outputs["rpn_deltas"]
        shape = tf.shape(scores)
        batch = shape[0]
        anchors = self.anchors(shape[1], shape[2])
        n_anchors = tf.shape(anchors)[0]
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)

        def rpn_targets(args):
            boxes, classes, size, i = args
            valid = classes >= 0
            lab, tgt, _ = anchor_targets(anchors, tf.boolean_mask(boxes, valid), size[0], size[1],
                                         batch_size=cfg["rpn_batch"], seed=seed + tf.stack([0, i]))
            return lab, tgt

        rpn_labels, rpn_targets_ = tf.map_fn(
            rpn_targets, (gt_boxes, gt_classes, sizes, tf.range(batch)),
            fn_output_signature=(tf.TensorSpec([None], tf.int32),
                                 tf.TensorSpec([None, 4], tf.float32)))
        rpn_labels = tf.reshape(rpn_labels, [batch, n_anchors])
        rpn_targets_ = tf.reshape(rpn_targets_, [batch, n_anchors, 4])
        logits = tf.reshape(scores, [batch, -1])
        sampled = tf.cast(rpn_labels >= 0, tf.float32)
        positive = tf.cast(rpn_labels == 1, tf.float32)
        count = tf.maximum(tf.reduce_sum(sampled), 1.0)
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=logits)
        rpn_cls = tf.reduce_sum(ce * sampled) / count
        l1 = tf.reduce_sum(smooth_l1(tf.reshape(deltas, [batch, -1, 4]) - rpn_targets_, 3.0), -1)
        rpn_box = tf.reduce_sum(l1 * positive) / count

        props, _, counts = self.proposals(outputs, sizes, training=True)
        post = cfg["train_post_nms"]
        g = tf.shape(gt_boxes)[1]

        def head_targets(args):
            p, n, boxes, classes = args
            valid = classes >= 0
            rois = tf.concat([p, boxes], 0)  # the ground truth joins the proposals
            ok = tf.concat([tf.range(post) < n, valid], 0)
            lab, tgt, _ = roi_targets(rois, tf.boolean_mask(boxes, valid),
                                      tf.boolean_mask(classes, valid), stds=cfg["box_stds"],
                                      means=cfg["box_means"])
            return rois, tf.where(ok, lab, -1), tgt

        rois, roi_labels, box_targets = tf.map_fn(
            head_targets, (props, counts, gt_boxes, gt_classes),
            fn_output_signature=(tf.TensorSpec([None, 4], tf.float32),
                                 tf.TensorSpec([None], tf.int32),
                                 tf.TensorSpec([None, 4], tf.float32)))
        per_image = post + g
        index = tf.repeat(tf.range(batch), per_image)
        rois = tf.reshape(rois, [-1, 4])
        roi_labels = tf.reshape(roi_labels, [-1])
        box_targets = tf.reshape(box_targets, [-1, 4])
        cls_logits, box_deltas = self.head(
            outputs, tf.concat([tf.cast(index, tf.float32)[:, None], rois], 1))
        valid = roi_labels >= 0
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.maximum(roi_labels, 0), logits=cls_logits)
        fg = tf.cast(roi_labels > 0, tf.float32)
        l1 = tf.reduce_sum(smooth_l1(box_deltas - box_targets), -1) * fg
        hard = ohem_select(ce + l1, cfg["ohem"], index, valid)
        n_hard = tf.maximum(tf.reduce_sum(hard), 1.0)
        return {"rpn_cls": rpn_cls, "rpn_box": rpn_box,
                "cls": tf.reduce_sum(hard * tf.where(valid, ce, 0.0)) / n_hard,
                "box": tf.reduce_sum(hard * l1) / n_hard}

    def detection_loss(self, outputs, labels, *, seed=(0, 0)):
        """The training loss: `detection_losses` summed with unit weights (Faster R-CNN's
        lambda = 1); `DetectionTask.loss` and `fit` (`compute_loss`) both use it."""
        return tf.add_n(list(self.detection_losses(outputs, labels, seed=seed).values()))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # Keras' fit hook: `detection_loss` (the targets need the ground truth inside the
        # step), plus any regularisation losses the layers add.
        if isinstance(y, dict) and "image_size" not in y and x is not None:
            # unpadded frames: each frame's extent is the batch's
            shape = tf.shape(x)
            y = {**y, "image_size": tf.tile(shape[None, 1:3], [shape[0], 1])}
        step = self.optimizer.iterations if self.optimizer is not None else 0
        # a new anchor sample every step (anchor_targets draws it from a stateless seed)
        loss = self.detection_loss(y_pred, y, seed=tf.stack([tf.cast(step, tf.int32), 0]))
        if self.losses:
            loss = loss + tf.add_n([tf.cast(v, tf.float32) for v in self.losses])
        # Keras sums the replicas' gradients and multiplies the logged loss back: each replica
        # returns its share (what Keras' own compiled losses do).
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            loss = loss / replica.num_replicas_in_sync
        return loss

    # ------------------------------------------------------------------------- test
    def _resize(self, images):
        cfg = self._tfzoo_config
        return resize_for_detection(images, cfg["short_side"], cfg["max_side"])

    def detect(self, images, image_sizes=None, *, proposals=None, nms_threshold=None,
               max_per_class=None, max_detections=None, score_threshold=None,
               box_voting: bool = False) -> dict:
        """Detections of a batch of frames (B, H, W, 3) after per-class NMS.

        Returns padded per-image results: `boxes` (B, M, 4) x1 y1 x2 y2 in the input's pixels,
        `scores` (B, M), `classes` (B, M) int32 in [0, C), `num_detections` (B,), and the RPN's
        `proposals` (B, P, 4) (input pixels) with `num_proposals` (B,).
        `image_sizes` (B, 2): the unpadded (height, width) of frames padded into one batch.
        `proposals`: (boxes (B, P, 4) in input pixels, counts (B,)) to use instead of the RPN's
        (e.g. ground-truth boxes, to measure the head alone). NMS options default to the
        model's config (`test_nms` 0.3, `max_per_class`, `max_detections`). `box_voting`:
        NMS with box voting per class (`tfzoo.detection.nms_box_voting`, each kept box the
        score-weighted mean of the boxes with IoU >= 0.5), as D&T does before linking (the
        authors' make_tubes: NMS 0.4, `max_per_class=25`, no score floor: see
        `DetectTrack.link_detection_options`). Also returns every proposal's regressed box
        `regressed_boxes` (B, P, 4) (input pixels) and its best class probability
        `best_scores` (B, P) (0 past `num_proposals`): D&T's test-time tracklets start there.
        """
        images = tf.convert_to_tensor(images)
        if image_sizes is None:
            image_sizes = tf.tile(tf.shape(images)[None, 1:3], [tf.shape(images)[0], 1])
        resized, scale = self._resize(images)
        outputs = keras.Model.__call__(self, resized, training=False)
        return self.detect_from_maps(outputs, image_sizes, scale, proposals=proposals,
                                     nms_threshold=nms_threshold, max_per_class=max_per_class,
                                     max_detections=max_detections,
                                     score_threshold=score_threshold, box_voting=box_voting)

    def detect_from_maps(self, maps, image_sizes, scale, *, proposals=None, nms_threshold=None,
                         max_per_class=None, max_detections=None, score_threshold=None,
                         box_voting: bool = False) -> dict:
        """`detect` from the maps of frames already resized by `scale` (`features` or the
        model's outputs: rpn_scores, rpn_deltas, cls_maps, reg_maps), so a caller that needs
        the maps for more than detection (D&T's tracker) runs the network once.
        `image_sizes` (B, 2) and the returned boxes are in the input's (unresized) pixels.

        Example:
        >>> import numpy as np
        >>> model = RFCN(num_classes=2, blocks=(1, 1, 1, 1), width=8, k=3, head_channels=16,
        ...              rpn_channels=16, short_side=None, max_side=None)
        >>> x = np.random.default_rng(0).uniform(0, 255, (1, 64, 96, 3)).astype("float32")
        >>> out = model.detect_from_maps(model.features(x), [[64, 96]], 1.0)
        >>> np.allclose(out["scores"], model.detect(x)["scores"], atol=1e-6)
        True
        """
        cfg = self._tfzoo_config
        nms_threshold = cfg["test_nms"] if nms_threshold is None else nms_threshold
        max_per_class = max_per_class or cfg["max_per_class"]
        max_detections = max_detections or cfg["max_detections"]
        score_threshold = cfg["score_threshold"] if score_threshold is None else score_threshold
        scale = tf.cast(scale, tf.float32)
        sizes = tf.round(tf.cast(image_sizes, tf.float32) * scale)
        if proposals is None:
            boxes, _, counts = self.proposals(maps, sizes, training=False)
        else:
            boxes, counts = proposals
            boxes = tf.cast(boxes, tf.float32) * scale
            counts = tf.cast(counts, tf.int32)
        batch, p = tf.shape(boxes)[0], tf.shape(boxes)[1]
        index = tf.repeat(tf.range(batch), p)
        rois = tf.concat([tf.cast(index, tf.float32)[:, None], tf.reshape(boxes, [-1, 4])], 1)
        logits, deltas = self.head(maps, rois)
        probs = tf.reshape(tf.nn.softmax(logits)[:, 1:], [batch, p, self.num_classes])
        valid = tf.range(p)[None] < counts[:, None]
        probs = tf.where(valid[..., None], probs, 0.0)
        decoded = decode_boxes(tf.reshape(boxes, [-1, 4]), deltas, cfg["box_stds"],
                               cfg["box_means"])
        decoded = tf.reshape(decoded, [batch, p, 4])
        decoded = clip_boxes(decoded, sizes[:, 0, None], sizes[:, 1, None])
        extra = {"proposals": boxes / scale, "num_proposals": counts,
                 "regressed_boxes": tf.where(valid[..., None], decoded / scale, 0.0),
                 "best_scores": tf.reduce_max(probs, -1)}
        if box_voting:
            boxes_out, scores, classes, n = self._voted(
                decoded, probs, valid, nms_threshold, max_per_class, max_detections,
                score_threshold)
            keep = tf.range(max_detections)[None] < n[:, None]
            return {"boxes": tf.where(keep[..., None], boxes_out / scale, 0.0), "scores": scores,
                    "classes": classes, "num_detections": n, **extra}
        # Inclusive-pixel IoU: the far edges moved by +1 (as tfzoo.detection.nms does).
        yxyx = tf.stack([decoded[..., 1], decoded[..., 0], decoded[..., 3] + 1.0,
                         decoded[..., 2] + 1.0], -1)
        nmsed = tf.image.combined_non_max_suppression(
            yxyx[:, :, None], probs, max_output_size_per_class=max_per_class,
            max_total_size=max_detections, iou_threshold=nms_threshold,
            score_threshold=score_threshold, pad_per_class=False, clip_boxes=False)
        b = nmsed.nmsed_boxes
        out_boxes = tf.stack([b[..., 1], b[..., 0], b[..., 3] - 1.0, b[..., 2] - 1.0], -1)
        n = nmsed.valid_detections
        keep = tf.range(tf.shape(b)[1])[None] < n[:, None]
        return {"boxes": tf.where(keep[..., None], out_boxes / scale, 0.0),
                "scores": nmsed.nmsed_scores,
                "classes": tf.cast(nmsed.nmsed_classes, tf.int32),
                "num_detections": tf.cast(n, tf.int32), **extra}

    def _voted(self, boxes, probs, valid, nms_threshold, max_per_class, max_detections,
               score_threshold):
        """Per-class NMS with box voting of (B, P, 4) boxes with (B, P, C) scores (`valid`
        (B, P): the real proposals), the classes merged by score: padded (B, M, 4), (B, M),
        (B, M), counts (B,)."""
        def one(args):
            b, p, v = args
            parts = []
            for c in range(self.num_classes):
                keep = tf.reshape(tf.where((p[:, c] > score_threshold) & v), [-1])
                vb, vs, _ = nms_box_voting(tf.gather(b, keep), tf.gather(p[:, c], keep),
                                           nms_threshold, max_output=max_per_class)
                parts.append((vb, vs, tf.fill(tf.shape(vs), c)))
            vb, vs, vc = (tf.concat([q[i] for q in parts], 0) for i in range(3))
            top = tf.math.top_k(vs, k=tf.minimum(max_detections, tf.shape(vs)[0]))
            n = tf.shape(top.indices)[0]
            pad = max_detections - n
            return (tf.pad(tf.gather(vb, top.indices), [[0, pad], [0, 0]]),
                    tf.pad(top.values, [[0, pad]]), tf.pad(tf.gather(vc, top.indices), [[0, pad]]), n)

        return tf.map_fn(one, (boxes, probs, valid), fn_output_signature=(
            tf.TensorSpec([max_detections, 4], tf.float32), tf.TensorSpec([max_detections], tf.float32),
            tf.TensorSpec([max_detections], tf.int32), tf.TensorSpec([], tf.int32)))


def register() -> None:
    """Registers the R-FCN presets (called once by `tfzoo.models`)."""
    for depth in (50, 101):
        register_model(f"rfcn_resnet{depth}", RFCN, blocks=STAGE_BLOCKS[depth],
                       description=f"R-FCN on ResNet-{depth} at stride 16 (D&T's detector)",
                       test_overrides=TINY, tags=("imagenet", "detection"))
    # The detection demo: trains from scratch on the embedded synthetic set on a CPU.
    register_model(
        "rfcn", RFCN, blocks=(1, 1, 1, 1), width=16, bn_momentum=0.9, freeze_bn=False,
        frozen_stages=(), k=3,
        head_channels=64, rpn_channels=64, anchor_scales=(2, 4, 8), short_side=192,
        max_side=256, description="Small R-FCN for the embedded synthetic detection demo",
        test_overrides=TINY, tags=("detection",))
