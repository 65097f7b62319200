"""Training clips packed as uint8 in the input pipeline and made float on the device.

A two-stream ST-ResNet training clip of 11 chunks at 224 x 224 (RGB + 20 flow channels) is
51 MB of float32; making it on the host (bilinear crop-resize, flow codes to pixels, the copy
into the batch, its fresh pages) cost four times the JPEG decoding it starts from (issue 22,
docs/data.md). `RecordSource` (training, `packed=True`) therefore stops at what decoding
gives: the decoded crop window of each frame, uint8; each distinct flow field once, uint8; and
the crop box on that window. That is a few MB per clip, and it is what crosses a tf.data
service. The model's train step (`tfzoo.models.base.VideoModel.train_step`) calls `unpack`
first, on the device: the flow stacks assembled in uint8, one `tf.image.crop_and_resize` per
stream, flow codes to pixels. The float clip is the host pipeline's to float rounding
(tests/data/test_data_packed.py).

The packed inputs of a batch (padded batching: windows differ in size) are `{PACKED: {...}}`
with, per clip:

  window          int32 (2,): the height and width of the crop window, ringed by one replicated
                  pixel (`augment.crop_window`, `augment.pad_edges`); the rest is padding
  box             float32 (4,): [y0, x0, y1, x1] of the crop on that window, x0 > x1 for a
                  flipped clip
  rgb             uint8 (T, h, w, 3): the frames' crop windows (RGB stream)
  flow_u, flow_v  uint8 (N, h, w, 1): the distinct flow fields' windows, as stored (codes)
  flow_fields     int32 (T, L): which of the N fields each chunk stacks, in order
  flow_negate_u   bool: a flipped clip mirrors u (code 255 - q decodes to exactly -u)
  flow_scale      float32 (2,): factors for u and v (1 unless `ClipSpec.flow_rescale`)

`unpack` gives what the source would give unpacked: the RGB clip (B, T, H, W, 3) in [0, 255]
or the flow clip (B, T, H, W, 2L) in pixels, or {"rgb": ..., "flow": ...} for both; anything
that is not packed comes back unchanged. The output size is `size` (static), recorded in the
packed dict as the shape of `size`, an empty (H, W, 0) tensor.

>>> import tensorflow as tf
>>> frame = tf.constant([[[[[0, 0, 0], [0, 0, 0]], [[100, 50, 2], [100, 50, 2]]]]], tf.uint8)
>>> x = {PACKED: {"window": [[2, 2]], "box": [[0.5, 0.0, 0.5, 1.0]],
...               "size": tf.zeros([1, 1, 2, 0]), "rgb": frame}}  # B, T = 1; 2 x 2 pixels
>>> unpack(x)[0, 0].numpy().tolist()  # one row halfway down the window, two columns
[[[50.0, 25.0, 1.0], [50.0, 25.0, 1.0]]]
"""

from __future__ import annotations

import tensorflow as tf

from tfzoo.data.records import FLOW_BOUND, decode_flow

PACKED = "packed_clip"


def is_packed(x) -> bool:
    return isinstance(x, dict) and PACKED in x


def resample(images, window, box, size):
    """Bilinear crop-resize of uint8 windows (B, K, h, w, C), zero-padded beyond each clip's
    `window` [h, w] -> float32 (B, K, H, W, C): each clip's `box` (relative to its window) for
    all K of its images. The samples stay half a pixel inside the window (`augment.
    crop_window`), so the padding is never read."""
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    b, k = shape[0], shape[1]
    # crop_and_resize maps a box to the corner pixels of the canvas, not of the window
    span = tf.cast(tf.cast(window, tf.int32) - 1, tf.float32) / tf.cast(shape[2:4] - 1,
                                                                         tf.float32)
    box = tf.cast(box, tf.float32) * tf.tile(span, [1, 2])
    x = tf.image.crop_and_resize(tf.reshape(images, tf.concat([[b * k], shape[2:]], 0)),
                                 tf.repeat(box, k, axis=0), tf.range(b * k), size)
    return tf.reshape(x, tf.concat([[b, k], size, shape[-1:]], 0))


def _flow(p, size):
    fields = tf.convert_to_tensor(p["flow_fields"])
    t, l = fields.shape[1], fields.shape[2]
    if t is None or l is None:
        t, l = tf.shape(fields)[1], tf.shape(fields)[2]
    u = tf.convert_to_tensor(p["flow_u"])[..., 0]
    negate = tf.reshape(tf.cast(p["flow_negate_u"], tf.bool), [-1, 1, 1, 1])
    u = tf.where(negate, tf.constant(255, tf.uint8) - u, u)
    planes = tf.stack([u, tf.convert_to_tensor(p["flow_v"])[..., 0]], axis=2)  # B, N, 2, h, w
    # the chunks' stacks in uint8, channels u1, v1, u2, v2, ... (a quarter of float's bytes)
    x = tf.gather(planes, fields, axis=1, batch_dims=1)  # (B, T, L, 2, h, w)
    shape = tf.shape(x)
    x = tf.transpose(tf.reshape(x, tf.concat([[-1, t, 2 * l], shape[4:]], 0)), [0, 1, 3, 4, 2])
    # bilinear weights sum to one: decoding the interpolated code is decoding first
    x = decode_flow(resample(x, p["window"], p["box"], size), FLOW_BOUND)
    scale = tf.tile(tf.cast(p["flow_scale"], tf.float32), tf.stack([1, l]))  # sx, sy, sx, ...
    return x * scale[:, None, None, None, :]


def unpack(x):
    """Packed inputs of a batch -> the float model inputs; anything else unchanged."""
    if not is_packed(x):
        return x
    p = x[PACKED]
    size = list(p["size"].shape[1:3])
    out = {}
    if "rgb" in p:
        out["rgb"] = resample(tf.convert_to_tensor(p["rgb"]), p["window"], p["box"], size)
    if "flow_u" in p:
        out["flow"] = _flow(p, size)
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
