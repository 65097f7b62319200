"""The papers' temporal sampling and spatial augmentation, as TF ops for tf.data.

Every random choice takes an explicit stateless `seed` (shape [2] int), so a pipeline is
deterministic under its seed whatever the parallelism. A clip is (T, H, W, C); the same crop
and flip apply to every frame of a clip (and to both streams of a two-stream sample).
"""

from __future__ import annotations

import tensorflow as tf
from tfzoo.errors import TfzooError


def _split(seed, n: int):
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def train_indices(num_video_frames, num_frames: int, stride_range: tuple[int, int], seed):
    """Frame indices of a training clip: random stride tau in [a, b], random first frame.

    In a video too short for (num_frames - 1) * b + 1 frames, tau is drawn uniformly from the
    strides that fit, [min(a, fits), fits] (YUP++'s 5 s clips fit 16 frames at tau <= 9: tau
    is uniform in [5, 9], not clamped, which would put tau = 9 in 7 of 11 draws); if even
    stride 1 does not fit, the last frame is repeated (never an index error).
    """
    lo, hi = stride_range
    if not 1 <= lo <= hi:
        raise TfzooError(f"stride_range must satisfy 1 <= a <= b, got {stride_range}")
    s_tau, s_start = _split(seed, 2)
    n = tf.cast(num_video_frames, tf.int32)
    hi_t, lo_t = tf.constant(hi), tf.constant(lo)
    if num_frames > 1:
        fits = tf.maximum((n - 1) // (num_frames - 1), 1)
        hi_t = tf.minimum(hi_t, fits)
        lo_t = tf.minimum(lo_t, hi_t)
    tau = tf.random.stateless_uniform([], s_tau, lo_t, hi_t + 1, dtype=tf.int32)
    span = (num_frames - 1) * tau + 1
    start = tf.random.stateless_uniform(
        [], s_start, 0, tf.maximum(n - span, 0) + 1, dtype=tf.int32
    )
    return tf.minimum(start + tau * tf.range(num_frames), n - 1)


def jitter_crop_box(height, width, seed, *, scale_jitter: float = 0.25, border: float = 0.25,
                    base_fraction: float = 224 / 256):
    """A crop box [y0, x0, y1, x1] (normalised) for the appearance augmentation.

    The crop is `base_fraction` of the shorter side (224 of 256 in the papers), its width and
    height independently jittered by +/- `scale_jitter`, placed at most `border` (relative to
    the frame size) from each image border (thesis §4.3.5, §7.3.3).
    """
    s_h, s_w, s_y, s_x = _split(seed, 4)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    base = base_fraction * tf.minimum(h, w)

    def side(size, s_size, s_pos):
        c = base * tf.random.stateless_uniform([], s_size, 1 - scale_jitter, 1 + scale_jitter)
        c = tf.minimum(c, size)
        lo = tf.maximum(0.0, size - c - border * size)
        hi = tf.minimum(size - c, border * size)
        lo, hi = tf.where(lo > hi, (size - c) / 2, lo), tf.where(lo > hi, (size - c) / 2, hi)
        start = tf.random.stateless_uniform([], s_pos, lo, hi + 1e-6)
        return start / size, (start + c) / size

    y0, y1 = side(h, s_h, s_y)
    x0, x1 = side(w, s_w, s_x)
    return tf.stack([y0, x0, y1, x1])


MULTISCALE_SIDES = (256, 224, 192, 168)


def multiscale_corner_box(height, width, seed, *, sides=MULTISCALE_SIDES, reference: int = 256):
    """A crop box for the motion stream: width and height each drawn from `sides` (relative to a
    frame whose shorter side is `reference`), at one of the four corners or the centre
    (Wang et al. 2016 / thesis §4.3.5)."""
    s_h, s_w, s_pos = _split(seed, 3)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    scale = tf.minimum(h, w) / reference
    choices = tf.constant(sides, tf.float32) * scale
    ch = tf.minimum(tf.gather(choices, tf.random.stateless_uniform([], s_h, 0, len(sides), tf.int32)), h)
    cw = tf.minimum(tf.gather(choices, tf.random.stateless_uniform([], s_w, 0, len(sides), tf.int32)), w)
    # 0..3 corners, 4 centre
    pos = tf.random.stateless_uniform([], s_pos, 0, 5, tf.int32)
    fy = tf.gather([0.0, 0.0, 1.0, 1.0, 0.5], pos)
    fx = tf.gather([0.0, 1.0, 0.0, 1.0, 0.5], pos)
    y0 = fy * (h - ch)
    x0 = fx * (w - cw)
    return tf.stack([y0 / h, x0 / w, (y0 + ch) / h, (x0 + cw) / w])


def _sample_span(lo, hi, n, out):
    """Pixel coordinates of the first and last of `out` samples spread over [lo, hi] * n."""
    step = (hi - lo) * n / out  # source pixels per output pixel
    first = lo * n + 0.5 * step - 0.5  # centre of the first output pixel, in pixels
    return first, first + step * (out - 1)


def crop_window(height, width, box, size: tuple[int, int]):
    """The part of a frame that `crop_resize(clip, box, size)` reads, and the box to use on it.

    Returns `(window, window_box)`: `window` = [y, x, h, w] (int32 pixels, what
    `tf.io.decode_and_crop_jpeg` takes) covers every pixel the bilinear samples touch;
    `window_box` [y0, x0, y1, x1] is for `tf.image.crop_and_resize` on that window with a
    one-pixel replicated border (`pad_edges`). Together they give `crop_resize`'s values (to
    float rounding) while decoding, converting and copying only the window, not the frame.
    Swapping x0 and x1 of `window_box` gives the horizontally mirrored crop.

    >>> window, wbox = crop_window(256, 340, [0.1, 0.2, 0.9, 0.8], (224, 224))
    >>> [int(v) for v in window]
    [24, 66, 208, 208]
    """
    box = tf.cast(box, tf.float32)
    oh, ow = float(size[0]), float(size[1])

    def axis(lo, hi, n, out):
        n = tf.cast(n, tf.float32)
        first, last = _sample_span(lo, hi, n, out)
        # a sample reads the pixels either side of it; one more on each side absorbs rounding
        start = tf.clip_by_value(tf.floor(first) - 1.0, 0.0, n - 1.0)
        stop = tf.clip_by_value(tf.floor(last) + 2.0, 0.0, n - 1.0)
        extent = stop - start + 1.0
        # frame pixel i sits at i - start + 1 in the padded window, whose corners
        # crop_and_resize maps to 0 and 1
        return start, extent, (first - start + 1.0) / (extent + 1.0), \
            (last - start + 1.0) / (extent + 1.0)

    y, h, y0, y1 = axis(box[0], box[2], height, oh)
    x, w, x0, x1 = axis(box[1], box[3], width, ow)
    window = tf.cast(tf.stack([y, x, h, w]), tf.int32)
    return window, tf.stack([y0, x0, y1, x1])


def pad_edges(images):
    """(N, H, W, ...) -> (N, H + 2, W + 2, ...): one replicated pixel on each side (what a
    one-pixel SYMMETRIC pad gives, without its cost)."""
    images = tf.concat([images[:, :1], images, images[:, -1:]], axis=1)
    return tf.concat([images[:, :, :1], images, images[:, :, -1:]], axis=2)


def crop_resize(clip, box, size: tuple[int, int]):
    """Applies one crop box to every frame of a (T, H, W, C) clip and resizes (bilinear).

    `box` = [y0, x0, y1, x1] as fractions of the frame (the crop covers rows y0*H .. y1*H).
    Samples sit at pixel centres (as `tf.image.resize`), so a crop whose size equals `size`
    returns exactly the cropped pixels; `tf.image.crop_and_resize` alone maps a box to the
    corner pixels [y0*(H-1), y1*(H-1)], which shrinks and shifts the crop by up to a pixel.
    """
    clip = tf.convert_to_tensor(clip)
    shape = tf.shape(clip)
    t = shape[0]
    h = tf.cast(shape[1], tf.float32)
    w = tf.cast(shape[2], tf.float32)
    box = tf.cast(box, tf.float32)
    out_h, out_w = float(size[0]), float(size[1])

    def axis(lo, hi, n, out):
        first, last = _sample_span(lo, hi, n, out)
        # +1: coordinates in the padded frame below
        return (first + 1.0) / (n + 1.0), (last + 1.0) / (n + 1.0)

    y0, y1 = axis(box[0], box[2], h, out_h)
    x0, x1 = axis(box[1], box[3], w, out_w)
    boxes = tf.tile(tf.stack([y0, x0, y1, x1])[None], [t, 1])
    # An enlarging crop at the border samples up to half a pixel outside the frame: a one-pixel
    # mirrored border makes those samples repeat the edge (as tf.image.resize does).
    padded = tf.pad(clip, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    return tf.image.crop_and_resize(
        tf.cast(padded, tf.float32), boxes, tf.range(t), size, method="bilinear"
    )


def flip_flow(flow):
    """Mirrors a flow clip (..., W, 2L) horizontally: columns reversed and every u negated."""
    flow = tf.reverse(flow, axis=[-2])
    c = tf.shape(flow)[-1]
    sign = tf.where(tf.range(c) % 2 == 0, -1.0, 1.0)
    return flow * tf.cast(sign, flow.dtype)


def maybe_flip(clip, seed, flow: bool = False):
    """Horizontally flips the whole clip with probability 1/2. Returns (clip, flipped)."""
    flipped = tf.random.stateless_uniform([], seed) < 0.5
    mirrored = flip_flow(clip) if flow else tf.reverse(clip, axis=[-2])
    return tf.where(flipped, mirrored, clip), flipped


def resize_short_side(clip, short_side: int):
    """Resizes a (T, H, W, C) clip so its shorter side is `short_side`, keeping the aspect."""
    shape = tf.shape(clip)
    h = tf.cast(shape[1], tf.float32)
    w = tf.cast(shape[2], tf.float32)
    s = short_side / tf.minimum(h, w)
    new = tf.cast(tf.round(tf.stack([h * s, w * s])), tf.int32)
    # prepared data is usually stored at the test size already: resizing to the same size is
    # the identity, so skip its pass over the whole clip
    return tf.cond(tf.reduce_all(new == shape[1:3]), lambda: tf.cast(clip, tf.float32),
                   lambda: tf.image.resize(tf.cast(clip, tf.float32), new, method="bilinear"))
