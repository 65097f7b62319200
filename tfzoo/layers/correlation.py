"""Local correlation of two feature maps (D&T eq. 8.4; FlowNet's correlation layer)."""

from __future__ import annotations

import math

import keras
import tensorflow as tf


def _check_int(name, v, low):
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"Correlation {name} must be an integer >= {low}, got {v!r}")


@keras.saving.register_keras_serializable(package="tfzoo")
class Correlation(keras.layers.Layer):
    """Correlation features between frames t and t+tau (thesis §8.3.4, eq. 8.4).

    Called on `(x_t, x_t_tau)`, both (B, H, W, D); returns (B, H', W', (2R+1)^2) with
    R = max_displacement // displacement_stride and H' = ceil(H / stride): output channel
    `(p/s2 + R) * (2R+1) + (q/s2 + R)` at (i, j) holds
    `<x_t(i*stride, j*stride), x_t_tau(i*stride + p, j*stride + q)> / D` for offsets p
    (vertical), q (horizontal) in {-d, -d+s2, ..., d} (s2 = displacement_stride), with zeros
    outside the map and the division by D of the reference Caffe layer (kernel_size 1).

    D&T uses d = 8 at conv4 and conv5 (289 channels). At conv3 the thesis samples positions with
    stride 2 so the output matches conv4's size; the authors' prototxt
    (`train_val_track.prototxt`, layer corr2) also steps the displacements by 2
    (`stride_1: 2, stride_2: 2`, 81 channels): `Correlation(8, stride=2, displacement_stride=2)`.

    Computed as one batched matmul per vertical offset (rows of x_t against the shifted row of
    x_t_tau, W x W products) from which the |q| <= d band is gathered: the MACs are W/(2d+1)
    times the direct sum, but they run as dense matmuls instead of (2d+1)^2 memory-bound
    multiply-reduce passes (see `python -m tfzoo.detection.bench`).

    Args:
      max_displacement: d, the largest offset in pixels of the map.
      stride: sampling step of the positions i, j.
      displacement_stride: step of the offsets p, q (must divide d).

    Example:
    >>> import numpy as np
    >>> x = np.random.rand(1, 5, 6, 4).astype("float32")
    >>> c = Correlation(max_displacement=2)([x, x]).numpy()
    >>> c.shape, bool(np.allclose(c[..., 12], (x * x).mean(-1)))  # channel 12: p = q = 0
    ((1, 5, 6, 25), True)
    """

    def __init__(self, max_displacement: int, stride: int = 1, displacement_stride: int = 1,
                 **kwargs):
        super().__init__(**kwargs)
        _check_int("max_displacement", max_displacement, 0)
        _check_int("stride", stride, 1)
        _check_int("displacement_stride", displacement_stride, 1)
        if max_displacement % displacement_stride:
            raise ValueError(f"Correlation displacement_stride ({displacement_stride}) must divide "
                             f"max_displacement ({max_displacement})")
        self.max_displacement = max_displacement
        self.stride = stride
        self.displacement_stride = displacement_stride

    @property
    def radius(self) -> int:
        return self.max_displacement // self.displacement_stride

    def build(self, input_shape):
        a, b = input_shape
        if len(a) != 4 or tuple(a[1:]) != tuple(b[1:]):
            raise ValueError(f"{self.name}: expects two (B, H, W, D) maps of the same shape, got "
                             f"{tuple(a)} and {tuple(b)}")

    def call(self, inputs):
        x1, x2 = inputs
        dtype = x1.dtype
        d, s, s2, r = self.max_displacement, self.stride, self.displacement_stride, self.radius
        shape = tf.shape(x1)
        h, w = shape[1], shape[2]
        depth = tf.cast(shape[3], dtype)
        a = x1[:, ::s, ::s]  # (B, H', W', D)
        w_out = tf.shape(a)[2]
        # only columns j*s + q of x_t_tau are read, all multiples of g = gcd(s, s2): the
        # conv3 variant (s = s2 = 2) multiplies against every other column only
        g = math.gcd(s, s2)
        b = tf.pad(x2[:, :, ::g], [[0, 0], [d, d], [0, 0], [0, 0]])
        wg = tf.shape(b)[2]
        q = tf.range(-r, r + 1) * (s2 // g)
        band = tf.range(w_out)[:, None] * (s // g) + q[None, :] + d // g  # (W', 2R+1)
        flat = tf.range(w_out)[:, None] * (wg + 2 * (d // g)) + band  # into the flat products
        planes = []
        for p in range(-d, d + 1, s2):
            rows = b[:, d + p:d + p + h:s]  # x_t_tau rows i*s + p, (B, H', W/g, D)
            prod = tf.einsum("bhjd,bhvd->bhjv", a, rows)  # (B, H', W', W/g)
            prod = tf.pad(prod, [[0, 0], [0, 0], [0, 0], [d // g, d // g]])
            prod = tf.reshape(prod, [shape[0], tf.shape(a)[1], -1])
            planes.append(tf.gather(prod, flat, axis=2))  # (B, H', W', 2R+1)
        out = tf.concat(planes, -1) / depth  # channel (p/s2 + R) * (2R+1) + (q/s2 + R)
        return tf.cast(out, dtype)

    def compute_output_shape(self, input_shape):
        a = input_shape[0]
        ceil = lambda n: None if n is None else -(-n // self.stride)  # noqa: E731
        return (a[0], ceil(a[1]), ceil(a[2]), (2 * self.radius + 1) ** 2)

    def get_config(self):
        return {**super().get_config(), "max_displacement": self.max_displacement,
                "stride": self.stride, "displacement_stride": self.displacement_stride}
