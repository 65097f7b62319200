"""Training clips packed as uint8 in the input pipeline and made float on the device.

A two-stream ST-ResNet training clip of 11 chunks at 224 x 224 (RGB + 20 flow channels) is
51 MB of float32; making it on the host (bilinear crop-resize, flow codes to pixels, the copy
into the batch, its fresh pages) cost four times the JPEG decoding it starts from (issue 22,
docs/data.md). `RecordSource` (training, `packed=True`) therefore stops at what decoding
gives: the decoded crop window of each frame, uint8; each distinct flow field once, uint8; and
the sampling grid of the crop (the two source rows and columns of every output pixel, and
their weights). That is a few MB per clip, and it is what crosses a tf.data service. The
model's train step (`tfzoo.models.base.VideoModel.train_step`) calls `unpack` first, on the
device: two gathers and the bilinear weights give the float clip, to float rounding the values
the host pipeline made before (`tf.image.crop_and_resize`'s arithmetic on the same grid;
tests/data/test_data_packed.py).

The packed inputs of a batch (padded batching: windows differ in size; the grid never reads
the padding) are `{PACKED: {...}}` with, per clip:

  rows, cols      int32 (H, 2), (W, 2): the window rows (columns) above and below (left and
                  right of) each output row (column); an edge pixel repeats at the borders
  row_weights,    float32 (H,), (W,): the weight of the second of the two
  col_weights
  rgb             uint8 (T, h, w, 3): the frames' crop windows (RGB stream)
  flow_u, flow_v  uint8 (N, h, w, 1): the distinct flow fields' windows, as stored (codes)
  flow_fields     int32 (T, L): which of the N fields each chunk stacks, in order
  flow_negate_u   bool: a flipped clip mirrors u (code 255 - q decodes to exactly -u)
  flow_scale      float32 (2,): factors for u and v (1 unless `ClipSpec.flow_rescale`)

`unpack` gives what the source would give unpacked: the RGB clip (B, T, H, W, 3) in [0, 255]
or the flow clip (B, T, H, W, 2L) in pixels, or {"rgb": ..., "flow": ...} for both; anything
that is not packed comes back unchanged.

>>> import tensorflow as tf
>>> x = {PACKED: {"rows": [[[0, 1], [1, 1]]], "row_weights": [[0.5, 0.0]],
...               "cols": [[[0, 0]]], "col_weights": [[0.0]],
...               "rgb": tf.constant([[[[[0, 0, 0]], [[100, 50, 2]]]]], tf.uint8)}}
>>> unpack(x)[0, 0, :, 0].numpy().tolist()
[[50.0, 25.0, 1.0], [100.0, 50.0, 2.0]]
"""

from __future__ import annotations

import tensorflow as tf

from tfzoo.flow.encoding import DEFAULT_BOUND, decode_flow

PACKED = "packed_clip"


def is_packed(x) -> bool:
    return isinstance(x, dict) and PACKED in x


def sampling_grid(window_box, window_size, size) -> dict:
    """The grid of `tf.image.crop_and_resize(pad_edges(window)[None], [window_box], [0], size)`.

    `window_box` [y0, x0, y1, x1] is `augment.crop_window`'s box on the window padded with one
    replicated pixel each side; `window_size` is the (unpadded) window's [h, w]. Returns
    `rows`, `row_weights`, `cols`, `col_weights` (see the module docstring), computed with the
    kernel's float32 arithmetic, so that sampling the window itself gives its values.
    """
    box = tf.cast(window_box, tf.float32)
    window_size = tf.cast(window_size, tf.int32)

    def axis(lo, hi, n, out):
        # crop_and_resize's source coordinate of output pixel i, in the padded window of n + 2
        span = tf.cast(n + 1, tf.float32)  # padded size - 1
        if out > 1:
            step = (hi - lo) * span / float(out - 1)
            coord = lo * span + tf.range(out, dtype=tf.float32) * step
        else:
            coord = tf.fill([1], 0.5 * (lo + hi) * span)
        top = tf.floor(coord)
        # padded pixel p is window pixel p - 1; the padding repeats the edge
        first = tf.clip_by_value(tf.cast(top, tf.int32) - 1, 0, n - 1)
        second = tf.clip_by_value(tf.cast(tf.math.ceil(coord), tf.int32) - 1, 0, n - 1)
        return tf.stack([first, second], -1), coord - top

    rows, row_weights = axis(box[0], box[2], window_size[0], int(size[0]))
    cols, col_weights = axis(box[1], box[3], window_size[1], int(size[1]))
    return {"rows": rows, "row_weights": row_weights, "cols": cols, "col_weights": col_weights}


def resample(images, grid):
    """Bilinear sampling of uint8 `images` (B, K, h, w, C) on each clip's grid ->
    float32 (B, K, H, W, C): gathers of the two rows, then the two columns, then the kernel's
    lerps (top and bottom across, then down)."""
    x = tf.gather(images, grid["rows"], axis=2, batch_dims=1)  # (B, K, H, 2, w, C)
    x = tf.gather(x, grid["cols"], axis=4, batch_dims=1)  # (B, K, H, 2, W, 2, C)
    x = tf.cast(x, tf.float32)
    wx = tf.cast(grid["col_weights"], tf.float32)[:, None, None, :, None]
    wy = tf.cast(grid["row_weights"], tf.float32)[:, None, :, None, None]
    top_left, top_right = x[:, :, :, 0, :, 0], x[:, :, :, 0, :, 1]
    bottom_left, bottom_right = x[:, :, :, 1, :, 0], x[:, :, :, 1, :, 1]
    top = top_left + (top_right - top_left) * wx
    bottom = bottom_left + (bottom_right - bottom_left) * wx
    return top + (bottom - top) * wy


def _flow(p, grid):
    u = tf.convert_to_tensor(p["flow_u"])
    negate = tf.reshape(tf.cast(p["flow_negate_u"], tf.bool), [-1, 1, 1, 1, 1])
    u = tf.where(negate, tf.constant(255, tf.uint8) - u, u)
    planes = tf.concat([u, tf.convert_to_tensor(p["flow_v"])], axis=-1)  # (B, N, h, w, 2)
    # bilinear weights sum to one: decoding the interpolated code is decoding first
    x = decode_flow(resample(planes, grid), DEFAULT_BOUND)
    x = x * tf.cast(p["flow_scale"], tf.float32)[:, None, None, None, :]
    fields = tf.convert_to_tensor(p["flow_fields"])
    x = tf.gather(x, fields, axis=1, batch_dims=1)  # (B, T, L, H, W, 2)
    shape = tf.shape(x)
    x = tf.transpose(x, [0, 1, 3, 4, 2, 5])  # channels u1, v1, u2, v2, ...
    return tf.reshape(x, tf.concat([shape[:2], shape[3:5], [2 * shape[2]]], 0))


def unpack(x):
    """Packed inputs of a batch -> the float model inputs; anything else unchanged."""
    if not is_packed(x):
        return x
    p = x[PACKED]
    grid = {k: tf.convert_to_tensor(p[k]) for k in ("rows", "row_weights", "cols",
                                                      "col_weights")}
    out = {}
    if "rgb" in p:
        out["rgb"] = resample(tf.convert_to_tensor(p["rgb"]), grid)
    if "flow_u" in p:
        out["flow"] = _flow(p, grid)
    return out if len(out) > 1 else next(iter(out.values()))


def unpack_data(data):
    """`unpack` on the inputs of a Keras batch `x` or `(x, y[, sample_weight])`."""
    if isinstance(data, (tuple, list)) and data:
        return (unpack(data[0]), *data[1:])
    return unpack(data)


def unpack_one(x):
    """`unpack` of one unbatched element (the float clip in the pipeline)."""
    if not is_packed(x):
        return x
    one = unpack(tf.nest.map_structure(lambda v: tf.expand_dims(v, 0), x))
    return tf.nest.map_structure(lambda v: v[0], one)
