"""Position-sensitive RoI pooling (R-FCN; Li et al., NIPS 2016), used by D&T (thesis §8.3.2)."""

from __future__ import annotations

import keras
import tensorflow as tf
from tfzoo.errors import InputSpecError, TfzooError


def c_round(x):
    """C's `round` (halves away from zero), which Caffe's R-FCN layer uses; `tf.round` rounds
    halves to even and would move a RoI edge at x.5 by one pixel."""
    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def psroi_bins(rois, k: int, spatial_scale: float, height, width):
    """Integer bin edges of every RoI: (hstart, hend, wstart, wend), each (N, k) int32, with
    the Caffe R-FCN arithmetic (float32, edges clipped to the map)."""
    rois = tf.cast(rois, tf.float32)
    scale = tf.constant(spatial_scale, tf.float32)

    def edges(lo, hi, size):
        start = c_round(lo) * scale
        end = (c_round(hi) + 1.0) * scale
        extent = tf.maximum(end - start, 0.1)
        # In a graph (tf.function, SavedModel) grappler turns a division by a constant into a
        # multiplication by its reciprocal, which is not the IEEE quotient: 9.625 / 7 came out
        # 1.3750001 and moved a bin edge at exactly 12 to ceil(12.000001) = 13. The float64
        # quotient rounded to float32 is Caffe's float32 quotient, rewritten or not.
        step = tf.cast(tf.cast(extent, tf.float64) / float(k), tf.float32)
        p = tf.range(k, dtype=tf.float32)
        s = tf.floor(p[None] * step[:, None] + start[:, None])
        e = tf.math.ceil((p[None] + 1.0) * step[:, None] + start[:, None])
        size = tf.cast(size, tf.float32)
        s = tf.clip_by_value(s, 0.0, size)
        e = tf.clip_by_value(e, 0.0, size)
        return tf.cast(s, tf.int32), tf.cast(e, tf.int32)

    hs, he = edges(rois[:, 2], rois[:, 4], height)
    ws, we = edges(rois[:, 1], rois[:, 3], width)
    return hs, he, ws, we


@keras.saving.register_keras_serializable(package="tfzoo")
class PSRoIPooling(keras.layers.Layer):
    """Position-sensitive RoI average pooling with the Caffe R-FCN semantics.

    Li et al., "R-FCN: Object Detection via Region-based Fully Convolutional Networks", NIPS
    2016; D&T pools its class scores, box offsets and tracking features with it (thesis §8.3.2).
    Called on `(score_maps, rois)`: `score_maps` (B, H, W, k*k*channels), `rois` (N, 5) rows
    `[batch_index, x1, y1, x2, y2]` in input-image pixels. Returns (N, k, k, channels): bin
    (ph, pw) of RoI n is the mean of input channel `(c * k + ph) * k + pw` over
    `[floor(start + p * size/k), ceil(start + (p+1) * size/k))` (clipped to the map), where
    `start = round(x1) * spatial_scale`, `end = (round(x2) + 1) * spatial_scale`,
    `size = max(end - start, 0.1)`; an empty bin is 0.

    The sums come from an integral image of the maps (in float64, so differences of large
    partial sums stay exact to float32), four gathers of contiguous C-vectors per bin: the cost
    does not grow with the RoI size and there is no loop over RoIs. Differentiable with respect to the maps (RoIs are
    coordinates, as in Caffe, and get no gradient).

    Args:
      k: bins per side (R-FCN and D&T: 7).
      channels: output channels per bin (C + 1 class scores, or 4 box offsets).
      spatial_scale: map pixels per input pixel (1/16 at stride 16).

    Example:
    >>> import numpy as np
    >>> maps = np.ones((1, 8, 8, 2 * 2 * 3), "float32")
    >>> rois = np.array([[0, 0, 0, 63, 63]], "float32")
    >>> PSRoIPooling(2, 3, 1 / 8)([maps, rois]).shape
    TensorShape([1, 2, 2, 3])
    """

    def __init__(self, k: int, channels: int, spatial_scale: float, **kwargs):
        super().__init__(**kwargs)
        for name, v in (("k", k), ("channels", channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TfzooError(f"PSRoIPooling {name} must be a positive integer, got {v!r}")
        if not spatial_scale > 0:
            raise TfzooError(f"PSRoIPooling spatial_scale must be > 0, got {spatial_scale!r}")
        self.k = k
        self.channels = channels
        self.spatial_scale = float(spatial_scale)

    def build(self, input_shape):
        maps, rois = input_shape
        want = self.k * self.k * self.channels
        if len(maps) != 4 or maps[-1] != want:
            raise InputSpecError(f"{self.name}: score maps must be (B, H, W, k*k*channels = {want}), "
                             f"got {tuple(maps)}")
        if len(rois) != 2 or rois[-1] != 5:
            raise InputSpecError(f"{self.name}: rois must be (N, 5) rows [batch_index, x1, y1, x2, "
                             f"y2], got {tuple(rois)}")

    def call(self, inputs):
        maps, rois = inputs
        out_dtype = maps.dtype
        k, c = self.k, self.channels
        shape = tf.shape(maps)
        h, w = shape[1], shape[2]
        hs, he, ws, we = psroi_bins(rois, k, self.spatial_scale, h, w)
        # integral image with a zero first row/column: sum over [y0, y1) x [x0, x1)
        # = I[y1, x1] - I[y0, x1] - I[y1, x0] + I[y0, x0], as two matmuls with (n+1, n) "sum of
        # the first y" matrices (1.7x less CPU than TF's float64 cumsum, identical values).
        # The second one also reorders channels (c, ph, pw) -> (ph, pw, c), so that a bin's C
        # values are contiguous: one gather of a C-vector per corner, not C scattered reads.
        maps = tf.reshape(tf.cast(maps, tf.float64), [shape[0], h, w, c, k * k])
        rows_before = tf.cast(tf.range(h)[None, :] < tf.range(h + 1)[:, None], tf.float64)
        cols_before = tf.cast(tf.range(w)[None, :] < tf.range(w + 1)[:, None], tf.float64)
        integral = tf.einsum("yh,bhwcq->bywcq", rows_before, maps)
        integral = tf.einsum("xw,bywcq->byxqc", cols_before, integral)
        rows = tf.reshape(integral, [-1, c])  # row ((b*(H+1) + y)*(W+1) + x)*k*k + ph*k + pw
        b = tf.cast(rois[:, 0], tf.int32)[:, None, None]  # (N, 1, 1)
        y0, y1 = hs[:, :, None], he[:, :, None]  # (N, k, 1)
        x0, x1 = ws[:, None, :], we[:, None, :]  # (N, 1, k)
        bin_index = tf.range(k)[:, None] * k + tf.range(k)[None, :]  # (k, k)

        def at(y, x):
            return tf.gather(rows, ((b * (h + 1) + y) * (w + 1) + x) * (k * k) + bin_index)

        total = at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0)  # (N, k, k, C)
        area = tf.cast((y1 - y0) * (x1 - x0), tf.float64)[..., None]
        mean = tf.where(area > 0, total / tf.maximum(area, 1.0), tf.zeros_like(total))
        return tf.cast(mean, out_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], self.k, self.k, self.channels)

    def get_config(self):
        return {**super().get_config(), "k": self.k, "channels": self.channels,
                "spatial_scale": self.spatial_scale}
