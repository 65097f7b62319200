"""Local correlation of two feature maps (D&T eq. 8.4; FlowNet's correlation layer)."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from tfzoo.errors import InputSpecError, TfzooError


def _check_int(name, v, low):
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise TfzooError(f"Correlation {name} must be an integer >= {low}, got {v!r}")


def _subsample(x, s: int):
    """x[:, ::s, ::s] of a (B, H, W, D) map, as a reshape of the map padded to multiples of s
    and a slice of whole D-vectors: TF's strided slice copies element by element (a conv3 map
    of a 600x1000 frame: 15 -> 4 ms CPU)."""
    if s == 1:
        return x
    shape = tf.shape(x)
    h, w = shape[1], shape[2]
    x = tf.pad(x, [[0, 0], [0, (-h) % s], [0, (-w) % s], [0, 0]])
    x = tf.reshape(x, [shape[0], (h + s - 1) // s, s, (w + s - 1) // s, s, shape[3]])
    return x[:, :, 0, :, 0]


def _blocked_correlation(a, b, r: int, tile_rows: int = 4, tile_cols: int = 16):
    """Sum over channels of a(i, j) * b(i + p, j + q), |p|, |q| <= r, zero outside the map:
    (B, H, W, (2r+1)^2), channel (p + r) * (2r+1) + (q + r).

    a is cut into tiles of nh x n positions (tile_rows x tile_cols); a tile reads the nh + 2r
    rows of b around it, each in the n + 2r columns it can reach (its window). Per window row
    u, one batched matmul of every tile against row u of its window, then the |p|, |q| <= r
    band gathered from the products: (nh + 2r)(n + 2r) / (2r + 1)^2 times the MACs of the
    direct sum (r = 8: 640 / 289 = 2.2x) as (nh n) x D by D x (n + 2r) matmuls. b's rows are
    stored interleaved, [row mod nh][row div nh], so the rows that one u reads for all tile
    rows are a slice of the outer axes, which TF passes as a view where another layout copies
    them. (4 x 16 was the fastest tile of 4..16 x 8..32 on conv4/5-sized maps, 13% less CPU
    than 1-D blocks of 32 columns per vertical offset; docs/detection.md, Speed.)
    """
    shape = tf.shape(a)
    batch, h, w, depth = shape[0], shape[1], shape[2], shape[3]
    nh, n, k = tile_rows, tile_cols, 2 * r + 1
    tiles_h, tiles_w = (h + nh - 1) // nh, (w + n - 1) // n
    hp, wp = tiles_h * nh, tiles_w * n
    a_t = tf.pad(a, [[0, 0], [0, hp - h], [0, wp - w], [0, 0]])
    a_t = tf.reshape(a_t, [batch, tiles_h, nh, tiles_w, n, depth])
    a_t = tf.reshape(tf.transpose(a_t, [1, 3, 0, 2, 4, 5]),
                     [tiles_h, tiles_w, batch, nh * n, depth])
    # b padded by r around (rows up to a whole number of row groups of nh), cut into the
    # overlapping column windows [t n - r, (t + 1) n + r) of every tile column t
    groups = tiles_h + (2 * r + nh - 1) // nh
    b_pad = tf.pad(b, [[0, 0], [r, groups * nh - h - r], [r, wp - w + r], [0, 0]])
    b_win = tf.signal.frame(b_pad, n + 2 * r, n, axis=2)  # (B, groups nh, tiles_w, n + 2r, D)
    b_win = tf.reshape(b_win, [batch, groups, nh, tiles_w, n + 2 * r, depth])
    b_win = tf.transpose(b_win, [2, 1, 3, 0, 4, 5])  # (nh, groups, tiles_w, B, n + 2r, D)
    # unstacked once, and sliced with tf.slice, whose gradient is a pad: strided slices'
    # gradients (StridedSliceGrad) made the backward pass 5x slower
    b_rows = tf.unstack(b_win, nh)
    prods = []
    for u in range(nh + 2 * r):
        # padded row T nh + u of every tile row T
        rows = tf.slice(b_rows[u % nh], [u // nh, 0, 0, 0, 0], [tiles_h, -1, -1, -1, -1])
        prods.append(tf.matmul(a_t, rows, transpose_b=True))  # (tiles_h, tiles_w, B, nh n, n + 2r)
    prod = tf.reshape(tf.stack(prods, 3), [tiles_h, tiles_w, batch, -1])
    # position (y, x) of a tile, offset (p - r, q - r): window row u = y + p, column v = x + q
    y, x, p, q = np.meshgrid(np.arange(nh), np.arange(n), np.arange(k), np.arange(k),
                             indexing="ij")
    band = (((y + p) * nh + y) * n + x) * (n + 2 * r) + x + q  # into (u, y n + x, v)
    out = tf.gather(prod, band.reshape(nh * n, k * k), axis=3)  # (tiles_h, tiles_w, B, nh n, k^2)
    out = tf.reshape(out, [tiles_h, tiles_w, batch, nh, n, k * k])
    out = tf.reshape(tf.transpose(out, [2, 0, 3, 1, 4, 5]), [batch, hp, wp, k * k])
    return tf.slice(out, [0, 0, 0, 0], [-1, h, w, -1])


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

    With stride == displacement_stride (stride 1, and the conv3 variant) this is the stride-1
    correlation of the subsampled maps with radius R, computed on tiles of 4 x 16 positions
    of x_t: per row of the (4 + 2R) x (16 + 2R) window of x_t_tau a tile can reach, one
    batched matmul of all tiles against that row, then the band gathered (for d = 8,
    640/289 = 2.2x the MACs of the direct sum, as dense matmuls). Other stride pairs multiply
    whole rows (W x W products per row) and gather the band. On the conv5 map of a 600x1000
    frame (38x63x2048, d = 8) that is 110-130 ms of CPU time on a shared 2-core machine, 18x
    less than a shift-and-multiply loop and about 3% of R-FCN ResNet-101's `detect` on the
    frame (`python -m tfzoo.detection.dt_blocks_bench --what correlation,tracking`; docs/detection.md,
    Speed).

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
            raise TfzooError(f"Correlation displacement_stride ({displacement_stride}) must divide "
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
            raise InputSpecError(f"{self.name}: expects two (B, H, W, D) maps of the same shape, got "
                             f"{tuple(a)} and {tuple(b)}")

    def call(self, inputs):
        x1, x2 = inputs
        s, s2 = self.stride, self.displacement_stride
        if s == s2:
            # positions and offsets on the same grid (stride 1, and the conv3 variant): the
            # correlation of the subsampled maps with radius R, whose offsets are contiguous
            out = _blocked_correlation(_subsample(x1, s), _subsample(x2, s), self.radius)
        else:
            out = self._banded(x1, x2)
        return tf.cast(out / tf.cast(tf.shape(x1)[3], out.dtype), x1.dtype)

    def _banded(self, x1, x2):
        """Any stride pair: per vertical offset, rows of x_t against the whole shifted row of
        x_t_tau (W' x W products), the |q| <= d band gathered from them."""
        d, s, s2, r = self.max_displacement, self.stride, self.displacement_stride, self.radius
        shape = tf.shape(x1)
        h = shape[1]
        a = _subsample(x1, s)  # (B, H', W', D)
        w_out = tf.shape(a)[2]
        # only columns j*s + q of x_t_tau are read, all multiples of g = gcd(s, s2)
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
        return tf.concat(planes, -1)  # channel (p/s2 + R) * (2R+1) + (q/s2 + R)

    def compute_output_shape(self, input_shape):
        a = input_shape[0]
        ceil = lambda n: None if n is None else -(-n // self.stride)  # noqa: E731
        return (a[0], ceil(a[1]), ceil(a[2]), (2 * self.radius + 1) ** 2)

    def get_config(self):
        return {**super().get_config(), "max_displacement": self.max_displacement,
                "stride": self.stride, "displacement_stride": self.displacement_stride}
