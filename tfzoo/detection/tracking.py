"""D&T's tracking half (thesis §8.3.3-8.3.4): the RoI tracking layer, its targets and its loss.

Frame pairs: a D&T training batch holds B pairs (t, t+tau); tensors carry a pair axis after the
batch axis, index 0 = frame t and 1 = frame t+tau: images (B, 2, H, W, 3), `gt_boxes`
(B, 2, G, 4), `gt_classes` (B, 2, G) (-1 = padding), `gt_track_ids` (B, 2, G) (-1 = none).
A DET image becomes a pair of two copies of itself, whose track ids are 0..G-1 in both frames
(every object present in both, with a zero target), as the thesis trains on DET.

- `tracking_targets`: eq. 8.2-8.3 as written (unnormalised, as the authors' code,
  `append_track_regression_targets`) for every ground-truth box of frame t whose track id is
  also in frame t+tau.
- `RoITracking`: correlation features (eq. 8.4) of conv3 (stride-2 sampling), conv4 and conv5,
  stacked with the box-regression maps of both frames, a 1x1 conv to 4 k^2 position-sensitive
  tracking maps, PS-RoI pooling on frame-t RoIs and average voting: the deltas t -> t+tau.
- `tracking_loss`: the third term of eq. 8.1, smooth L1 averaged over the N_tra boxes.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfzoo.detection.boxes import encode_boxes
from tfzoo.errors import TfzooError
from tfzoo.layers.correlation import Correlation
from tfzoo.layers.roi_pooling import PSRoIPooling

# The order of the stack the 1x1 conv reads, as in the authors' prototxt
# (train_val_track.prototxt: concat of rfcn_bbox frame 1, frame 2, then corr (res5c), corr2
# (res3b3, stride 2), corr3 (res4b22)).
CORRELATION_LEVELS = ("conv5", "conv3", "conv4")
# Eq. 8.2-8.3 as written: the tracking targets are not normalised (the authors' code neither).
# D&T runs saved before 2026-12-03 divided them by the detector's BOX_STDS
# (`DetectTrack(tracking_stds=...)` keeps that for them).
TRACK_STDS = (1.0, 1.0, 1.0, 1.0)


def tracking_targets(gt_boxes, gt_track_ids, stds=TRACK_STDS):
    """Tracking regression targets of eq. 8.2-8.3 for a batch of frame pairs.

    Args:
      gt_boxes: (B, 2, G, 4) ground-truth boxes x1 y1 x2 y2 of frames t and t+tau (padded).
      gt_track_ids: (B, 2, G) int track ids; -1 marks padding or an untracked box.
      stds: a normalisation of the targets (`encode_boxes`'s); 1 is eq. 8.2-8.3 as written.

    Returns:
      (targets (B, G, 4), valid (B, G) bool): for box g of frame t, `valid` when its track id
      (>= 0) is also in frame t+tau, and then `targets[b, g] = encode_boxes(box_t, box_tau,
      stds)` ((B_x^{t+tau} - B_x^t) / B_w^t, ..., log(B_h^{t+tau} / B_h^t), divided by stds);
      0 elsewhere. The frame-t boxes themselves are the tracking RoIs (thesis: the tracking
      loss is active only on ground-truth RoIs with a track correspondence).

    Example:
    >>> import numpy as np
    >>> boxes = np.array([[[[0, 0, 9, 9], [20, 20, 39, 39]],
    ...                    [[5, 0, 14, 9], [0, 0, 1, 1]]]], "float32")
    >>> ids = np.array([[[7, 3], [7, -1]]])  # track 3 left the frame
    >>> targets, valid = tracking_targets(boxes, ids)
    >>> valid.numpy().tolist(), targets.numpy()[0, 0].tolist()  # moved by half its width
    ([[True, False]], [0.5, 0.0, 0.0, 0.0])
    """
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    ids = tf.convert_to_tensor(gt_track_ids, tf.int32)
    if gt_boxes.shape.rank != 4 or gt_boxes.shape[1] != 2 or gt_boxes.shape[-1] != 4:
        raise TfzooError(f"gt_boxes must be (B, 2, G, 4) (pairs of frames), got {gt_boxes.shape}")
    if ids.shape.rank != 3 or ids.shape[1] != 2:
        raise TfzooError(f"gt_track_ids must be (B, 2, G), got {ids.shape}")
    ids_t, ids_tau = ids[:, 0], ids[:, 1]
    same = (ids_t[:, :, None] == ids_tau[:, None, :]) & (ids_t[:, :, None] >= 0)  # (B, G, G)
    valid = tf.reduce_any(same, -1)
    match = tf.argmax(tf.cast(same, tf.int32), -1, output_type=tf.int32)  # the first match
    boxes_tau = tf.gather(gt_boxes[:, 1], match, batch_dims=1)
    # unmatched boxes get their own box as target (0), so no log of a padding size is taken
    boxes_tau = tf.where(valid[..., None], boxes_tau, gt_boxes[:, 0])
    targets = encode_boxes(gt_boxes[:, 0], boxes_tau, stds)
    return tf.where(valid[..., None], targets, 0.0), valid


def tracking_rois(gt_boxes, valid):
    """The RoIs of the tracking term: the frame-t ground-truth boxes with a target, as PS-RoI
    rows `[batch_index, x1, y1, x2, y2]` (N_tra, 5), with the (N_tra, 2) `[b, g]` indices into
    the (B, G) targets (`tf.gather_nd(targets, indices)` lines them up)."""
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    indices = tf.cast(tf.where(valid), tf.int32)
    boxes = tf.gather_nd(gt_boxes[:, 0], indices)
    return tf.concat([tf.cast(indices[:, :1], tf.float32), boxes], 1), indices


def smooth_l1(x, sigma: float = 1.0):
    """Fast R-CNN's smooth L1, elementwise: 0.5 (sigma x)^2 if |x| < 1 / sigma^2, else
    |x| - 0.5 / sigma^2 (sigma = 1 for the R-FCN box and D&T tracking losses, 3 for the RPN)."""
    x = tf.convert_to_tensor(x)
    s2 = sigma * sigma
    ax = tf.abs(x)
    return tf.where(ax < 1.0 / s2, 0.5 * s2 * x * x, ax - 0.5 / s2)


def tracking_loss(deltas, targets, valid=None, weight: float = 1.0):
    """The tracking term of eq. 8.1: `weight / N_tra * sum_i smooth_l1(deltas_i - targets_i)`
    (summed over the 4 coordinates), over the boxes with `valid` (all when None); 0 when there
    are none. `weight` is lambda (1 in the thesis).

    Args:
      deltas, targets: (..., 4) predicted and target tracking regressions.
      valid: (...) bool, the ground-truth boxes present in both frames.
    """
    deltas = tf.convert_to_tensor(deltas)
    targets = tf.cast(targets, deltas.dtype)
    per_box = tf.reduce_sum(smooth_l1(deltas - targets), -1)
    if valid is None:
        valid = tf.ones_like(per_box, tf.bool)
    mask = tf.cast(valid, deltas.dtype)
    count = tf.reduce_sum(mask)
    return weight * tf.math.divide_no_nan(tf.reduce_sum(per_box * mask), count)


@keras.saving.register_keras_serializable(package="tfzoo")
class RoITracking(keras.layers.Layer):
    """RoI tracking (thesis §8.3.3-8.3.4, Fig. 8.2): box deltas of frame-t RoIs to frame t+tau.

    Called on `(features_t, features_tau, rois)`: two dicts with the backbone and head maps of
    the two frames (`RFCN.features`) — `conv3` (stride 8), `conv4`, `conv5` (stride 16) and
    `reg_maps` (B, H, W, 4 k^2, stride 16) — and `rois` (N, 5) rows `[batch_index, x1, y1, x2,
    y2]` in input pixels of frame t. Returns (N, 4) deltas in the units of the targets it was
    trained on (eq. 8.2-8.3: `decode_boxes(rois[:, 1:], deltas, TRACK_STDS)` gives the boxes at
    t+tau).

    As the authors' prototxt: correlations (eq. 8.4, `Correlation`, max displacement d) of
    conv5 and conv4 (stride 1, (2d+1)^2 channels each) and of conv3 (positions and
    displacements stepped by 2, (d+1)^2 channels, at conv4's size) are stacked with the
    `reg_maps` of both frames, `[reg_t, reg_tau, corr5, corr3, corr4]`; a 1x1 conv maps the
    stack to 4 k^2 position-sensitive tracking maps; PS-RoI pooling of the frame-t RoIs on
    them and the mean over the k x k bins (average voting) gives the 4 deltas.

    Args:
      k: PS-RoI bins per side (7).
      spatial_scale: map pixels per input pixel of conv4/conv5/reg_maps (1/16).
      max_displacement: d of the correlations (8).
      conv3_stride: position and displacement step of the conv3 correlation (2, the prototxt's
        `stride_1 = stride_2 = 2`; conv3 must then be twice conv4's size, rounded up).

    Example:
    >>> import numpy as np
    >>> r = lambda *shape: np.random.rand(*shape).astype("float32")
    >>> f = lambda: {"conv3": r(1, 8, 8, 4), "conv4": r(1, 4, 4, 6), "conv5": r(1, 4, 4, 6),
    ...              "reg_maps": r(1, 4, 4, 4 * 2 * 2)}
    >>> layer = RoITracking(k=2, spatial_scale=1 / 16, max_displacement=2)
    >>> layer([f(), f(), np.array([[0, 0, 0, 31, 31]], "float32")]).shape
    TensorShape([1, 4])
    """

    def __init__(self, k: int = 7, spatial_scale: float = 1 / 16, max_displacement: int = 8,
                 conv3_stride: int = 2, **kwargs):
        super().__init__(**kwargs)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise TfzooError(f"RoITracking k must be a positive integer, got {k!r}")
        self.k = k
        self.spatial_scale = float(spatial_scale)
        self.max_displacement = max_displacement
        self.conv3_stride = conv3_stride
        d = max_displacement
        self.correlations = {
            "conv5": Correlation(d, name="corr_conv5"),
            "conv3": Correlation(d, stride=conv3_stride, displacement_stride=conv3_stride,
                                 name="corr_conv3"),
            "conv4": Correlation(d, name="corr_conv4"),
        }
        # Caffe's gaussian(0.01) filler, zero bias, as the prototxt's rfcn_disp
        self.conv = keras.layers.Conv2D(
            4 * k * k, 1, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="track_maps")
        # the stack's depth depends only on k and d: built now, so a model holding this layer
        # loads its weights before any call
        r3 = max_displacement // conv3_stride
        self.conv.build((None, None, None, 8 * k * k + 2 * (2 * max_displacement + 1) ** 2
                         + (2 * r3 + 1) ** 2))
        self.pool = PSRoIPooling(k, 4, spatial_scale, name="track_psroi")

    def _check(self, shapes, which):
        missing = [n for n in (*CORRELATION_LEVELS, "reg_maps") if n not in shapes]
        if missing:
            raise TfzooError(f"{self.name}: features_{which} lack {missing}; expected a dict with "
                             f"conv3, conv4, conv5 and reg_maps (RFCN.features)")
        reg = tuple(shapes["reg_maps"])
        if reg[-1] is not None and reg[-1] != 4 * self.k * self.k:
            raise TfzooError(f"{self.name}: reg_maps has {reg[-1]} channels, expected 4 k^2 = "
                             f"{4 * self.k * self.k}")
        c3, c4 = tuple(shapes["conv3"]), tuple(shapes["conv4"])
        s = self.conv3_stride
        if None not in (c3[1], c3[2], c4[1], c4[2]) and (
                -(-c3[1] // s), -(-c3[2] // s)) != (c4[1], c4[2]):
            raise TfzooError(f"{self.name}: conv3 is {c3[1:3]}, conv4 {c4[1:3]}: conv3 sampled "
                             f"with stride {s} must match conv4's size")

    def build(self, input_shape):
        shapes_t, shapes_tau, rois = input_shape
        self._check(shapes_t, "t")
        self._check(shapes_tau, "tau")
        self.pool.build([(None, None, None, 4 * self.k * self.k), tuple(rois)])

    def track_maps(self, features_t, features_tau):
        """The 4 k^2 position-sensitive tracking maps (B, H, W, 4 k^2) of a batch of pairs."""
        features_t = {n: tf.convert_to_tensor(v) for n, v in features_t.items()}
        features_tau = {n: tf.convert_to_tensor(v) for n, v in features_tau.items()}
        self._check({n: v.shape for n, v in features_t.items()}, "t")
        self._check({n: v.shape for n, v in features_tau.items()}, "tau")
        stack = [features_t["reg_maps"], features_tau["reg_maps"]]
        for name in CORRELATION_LEVELS:
            corr = self.correlations[name]([features_t[name], features_tau[name]])
            stack.append(tf.cast(corr, features_t["reg_maps"].dtype))
        return self.conv(tf.concat(stack, -1))

    def call(self, inputs):
        features_t, features_tau, rois = inputs
        bins = self.pool([self.track_maps(features_t, features_tau), rois])  # (N, k, k, 4)
        return tf.reduce_mean(bins, [1, 2])

    def get_config(self):
        return {**super().get_config(), "k": self.k, "spatial_scale": self.spatial_scale,
                "max_displacement": self.max_displacement, "conv3_stride": self.conv3_stride}
