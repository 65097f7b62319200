"""TV-L1 optical flow (Zach et al. 2007) and TVNet (Fan et al. CVPR 2018) as Keras layers.

The solver is the duality-based TV-L1 of Zach, Pock and Bischof, "A Duality Based Approach for
Realtime TV-L1 Optical Flow" (DAGM 2007), in the multi-scale form of Sanchez, Meinhardt-Llopis
and Facciolo (IPOL 2013), written with TensorFlow ops so that it runs inside a model graph,
compiles with XLA and can be differentiated (TVNet: Fan et al., "End-to-End Learning of Motion
Representation for Video Understanding", CVPR 2018, eq. 11 and its supplementary eq. 1).

Everything below works on a stack of grey images `(N, H, W)`; the layers fold `(B, T)` pairs
into N so that one solver call serves a whole batch.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfzoo.errors import TfzooError
from tfzoo.utils import check_choice

# Presmoothing of the input and per-level antialiasing follow the IPOL reference
# (PRESMOOTHING_SIGMA 0.8; zoom-out sigma 0.6 * sqrt(1/z^2 - 1)).
_ZOOM_SIGMA_FACTOR = 0.6
# The thresholding step divides by |grad I1w|^2; below this the image is flat and the step is
# zero anyway, so clamping the divisor only removes the 0/0.
_TINY_GRAD = 1e-9
# The reference's coarsest level is about this many pixels along the diagonal (IPOL: 16).
_COARSEST_DIAGONAL = 16.0

# Fixed kernels of TV-L1, used as initial values of the TVNet kernels.
IMAGE_GRAD_TAPS = (-0.5, 0.0, 0.5)  # centred difference of the warped image
FORWARD_GRAD_TAPS = (-1.0, 1.0)  # forward difference of the flow (taps at i, i+1)
DIVERGENCE_TAPS = (-1.0, 1.0)  # backward difference of the dual field (taps at i-1, i)

_RGB_TO_GREY = (0.299, 0.587, 0.114)


# Where OpenCV's cv2.optflow.DualTVL1OpticalFlow differs from the IPOL scheme in structure rather
# than in parameter values: it does not presmooth, downsamples each level without a Gaussian,
# and its cubic remap reads zeros outside the image (BORDER_CONSTANT).
OPENCV = {"sigma": 0.0, "antialias": False, "border": "zero"}


class FlowInputError(TfzooError):
    """Frames that cannot be turned into optical flow (shape, channels, values)."""


# ---------------------------------------------------------------------------------------------
# Small building blocks. Images are (N, H, W) unless stated; taps are python floats (TV-L1, so
# zero taps vanish from the graph) or scalar tensors (TVNet, trainable).


def _is_const(c) -> bool:
    return isinstance(c, (int, float))


def _lin(terms):
    """sum(c * x) that skips zero python coefficients and multiplications by one."""
    out = None
    for c, x in terms:
        if _is_const(c):
            if c == 0:
                continue
            t = x if c == 1 else (-x if c == -1 else x * c)
        else:
            t = x * c
        out = t if out is None else out + t
    if out is None:
        return tf.zeros_like(terms[0][1])
    return out


def _replicate_pad(x, r: int, axis: int):
    if r == 0:
        return x
    n = tf.shape(x)[axis]
    first = tf.gather(x, [0] * r, axis=axis)
    last = tf.gather(x, tf.fill([r], n - 1), axis=axis)
    return tf.concat([first, x, last], axis=axis)


def _centred_grad(img, taps_x, taps_y):
    """Centred differences with replicated borders (the gradient of the image)."""
    px = _replicate_pad(img, 1, 2)
    py = _replicate_pad(img, 1, 1)
    gx = _lin([(taps_x[0], px[:, :, :-2]), (taps_x[1], img), (taps_x[2], px[:, :, 2:])])
    gy = _lin([(taps_y[0], py[:, :-2, :]), (taps_y[1], img), (taps_y[2], py[:, 2:, :])])
    return gx, gy


def _forward_grad(u, taps_x, taps_y):
    """Forward differences, zero on the last column/row (Neumann), as in Chambolle 2004."""
    gx = _lin([(taps_x[0], u[:, :, :-1]), (taps_x[1], u[:, :, 1:])])
    gy = _lin([(taps_y[0], u[:, :-1, :]), (taps_y[1], u[:, 1:, :])])
    return tf.pad(gx, [[0, 0], [0, 0], [0, 1]]), tf.pad(gy, [[0, 0], [0, 1], [0, 0]])


def _divergence(px, py, taps_x, taps_y):
    """Backward-difference divergence, minus the adjoint of `_forward_grad` at the init taps."""
    qx = px[:, :, :-1]
    qy = py[:, :-1, :]
    dx = tf.pad(_lin([(taps_x[1], qx)]), [[0, 0], [0, 0], [0, 1]]) + tf.pad(
        _lin([(taps_x[0], qx)]), [[0, 0], [0, 0], [1, 0]]
    )
    dy = tf.pad(_lin([(taps_y[1], qy)]), [[0, 0], [0, 1], [0, 0]]) + tf.pad(
        _lin([(taps_y[0], qy)]), [[0, 0], [1, 0], [0, 0]]
    )
    return dx + dy


def _gaussian_taps(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(2.0 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _gaussian_blur(img, sigma: float):
    if sigma <= 0:
        return img
    k = _gaussian_taps(sigma)
    r = len(k) // 2
    dt = img.dtype
    x = _replicate_pad(img, r, 2)
    w = tf.shape(img)[2]
    img = tf.add_n([tf.cast(k[i], dt) * x[:, :, i : i + w] for i in range(len(k))])
    y = _replicate_pad(img, r, 1)
    h = tf.shape(img)[1]
    return tf.add_n([tf.cast(k[i], dt) * y[:, i : i + h, :] for i in range(len(k))])


def _resize(x, size):
    """Bilinear resize of (N, H, W, C) to `size` (half-pixel centres, as tf.image.resize).

    Written with gathers because tf.image.resize returns float32 for any input, which would
    cap float64 runs (gradient checks) at single precision.
    """
    dt = x.dtype

    def axis_weights(n_in, n_out):
        scale = tf.cast(n_in, dt) / tf.cast(n_out, dt)
        src = (tf.cast(tf.range(n_out), dt) + 0.5) * scale - 0.5
        src = tf.clip_by_value(src, 0.0, tf.cast(n_in - 1, dt))
        i0 = tf.cast(tf.floor(src), tf.int32)
        i1 = tf.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - tf.floor(src)

    shape = tf.shape(x)
    size = tf.unstack(tf.convert_to_tensor(size, tf.int32)) if not isinstance(size, tuple) \
        else size
    y0, y1, fy = axis_weights(shape[1], size[0])
    x = tf.gather(x, y0, axis=1) * (1.0 - fy)[None, :, None, None] + tf.gather(
        x, y1, axis=1) * fy[None, :, None, None]
    x0, x1, fx = axis_weights(shape[2], size[1])
    return tf.gather(x, x0, axis=2) * (1.0 - fx)[None, None, :, None] + tf.gather(
        x, x1, axis=2) * fx[None, None, :, None]


_BORDERS = ("replicate", "zero")


def _axis_taps(pos, n, offsets, weights, border):
    """Indices and weights of the taps of one axis; taps outside [0, n) follow `border`."""
    base = tf.cast(tf.floor(pos), tf.int32)
    taps = []
    for d, wgt in zip(offsets, weights):
        idx = base + d
        if border == "zero":
            wgt = wgt * tf.cast((idx >= 0) & (idx < n), wgt.dtype)[..., None]
        taps.append((tf.clip_by_value(idx, 0, n - 1), wgt))
    return taps


def _warp(img, flow, kernel, border):
    """Separable resampling of `img` (N, H, W, C) at x + flow; `kernel(t)` gives the taps."""
    check_choice("border", border, _BORDERS)
    dt = img.dtype
    shape = tf.shape(img)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]
    gy, gx = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")
    x = tf.cast(gx, dt)[None] + flow[..., 0]
    y = tf.cast(gy, dt)[None] + flow[..., 1]
    if border == "replicate":
        # Clamping the position (not just the taps) samples the edge pixel itself outside.
        x = tf.clip_by_value(x, 0.0, tf.cast(w - 1, dt))
        y = tf.clip_by_value(y, 0.0, tf.cast(h - 1, dt))
    else:
        # Far outside, every tap is outside: bounded positions keep the int32 indices sane.
        x = tf.clip_by_value(x, -3.0, tf.cast(w + 2, dt))
        y = tf.clip_by_value(y, -3.0, tf.cast(h + 2, dt))
    offsets, wx = kernel((x - tf.floor(x))[..., None])
    _, wy = kernel((y - tf.floor(y))[..., None])
    xs = _axis_taps(x, w, offsets, wx, border)
    ys = _axis_taps(y, h, offsets, wy, border)
    flat = tf.reshape(img, [-1, c])
    base = (tf.range(n) * h * w)[:, None, None]
    out = None
    for iy, wgt_y in ys:
        row = base + iy * w
        line = tf.add_n([tf.gather(flat, row + ix) * wgt_x for ix, wgt_x in xs])
        out = line * wgt_y if out is None else out + line * wgt_y
    return out


def _linear_kernel(t):
    return (0, 1), (1.0 - t, t)


def _cubic_kernel(t, a=-0.75):
    # Keys' cubic convolution kernel at distances 1+t, t, 1-t, 2-t.
    t2, t3 = t * t, t * t * t
    w0 = a * (t3 - 2.0 * t2 + t)
    w1 = (a + 2.0) * t3 - (a + 3.0) * t2 + 1.0
    w2 = -(a + 2.0) * t3 + (2.0 * a + 3.0) * t2 - a * t
    w3 = a * (t2 - t3)
    return (-1, 0, 1, 2), (w0, w1, w2, w3)


def bilinear_warp(img, flow, border: str = "replicate"):
    """Samples `img` (N, H, W, C) at x + u, y + v with bilinear weights.

    `flow` is (N, H, W, 2) in pixels. Outside the image, `border="replicate"` repeats the edge
    pixels and `"zero"` reads zeros (OpenCV's `remap` default, BORDER_CONSTANT). Differentiable
    in both `img` and `flow`; this replaces tensorflow-addons' dense_image_warp (note the sign:
    addons subtracts the flow).
    """
    return _warp(img, flow, _linear_kernel, border)


def bicubic_warp(img, flow, a: float = -0.75, border: str = "replicate"):
    """Like `bilinear_warp` with Keys' bicubic kernel (OpenCV's INTER_CUBIC uses a = -0.75).

    Bilinear resampling biases sub-pixel TV-L1 estimates towards whole pixels; the cubic kernel
    removes most of that bias for 16 instead of 4 gathers per warping.
    """
    return _warp(img, flow, lambda t: _cubic_kernel(t, a), border)


_WARPS = {"bilinear": bilinear_warp, "bicubic": bicubic_warp}


def to_grey(frames):
    """RGB (..., 3) in [0, 255] -> grey (...) with ITU-R BT.601 luma weights."""
    w = tf.constant(_RGB_TO_GREY, dtype=frames.dtype)
    return tf.tensordot(frames, w, axes=[[-1], [0]])


def num_scales(height: int, width: int, zfactor: float = 0.5, max_scales: int = 5) -> int:
    """Pyramid depth: coarsest level about 16 px along the diagonal, at most `max_scales`."""
    n = 1 + math.log(math.hypot(height, width) / _COARSEST_DIAGONAL) / math.log(1.0 / zfactor)
    return int(max(1, min(max_scales, math.floor(n))))


def level_sizes(height: int, width: int, zfactor: float, n: int) -> list[tuple[int, int]]:
    sizes = [(height, width)]
    for _ in range(1, n):
        h, w = sizes[-1]
        sizes.append((max(1, int(h * zfactor + 0.5)), max(1, int(w * zfactor + 0.5))))
    return sizes


# ---------------------------------------------------------------------------------------------
# The solver.


class _Kernels:
    """The five difference kernels and the initial flow, as python floats or tensors."""

    def __init__(self, img_x, img_y, fwd_x, fwd_y, div_x, div_y, init_flow=None):
        self.img_x, self.img_y = img_x, img_y
        self.fwd_x, self.fwd_y = fwd_x, fwd_y
        self.div_x, self.div_y = div_x, div_y
        self.init_flow = init_flow  # None or (gh, gw, 2) tensor, resized to the coarsest level

    @classmethod
    def fixed(cls):
        return cls(IMAGE_GRAD_TAPS, IMAGE_GRAD_TAPS, FORWARD_GRAD_TAPS, FORWARD_GRAD_TAPS,
                   DIVERGENCE_TAPS, DIVERGENCE_TAPS)


def _solve_level(i0, i1, u1, u2, k: _Kernels, *, tau, lbda, theta, epsilon, warps, iterations,
                 interpolation, border):
    """`warps` x `iterations` TV-L1 primal-dual steps at one pyramid level."""
    l_t = lbda * theta
    taut = tau / theta
    i1x, i1y = _centred_grad(i1, k.img_x, k.img_y)
    # I1 and its gradient are warped together: one gather of three channels.
    i1_stack = tf.stack([i1, i1x, i1y], axis=-1)
    zeros = tf.zeros_like(u1)

    def iteration(i, u1, u2, p11, p12, p21, p22, i1wx, i1wy, grad, rho_c):
        rho = rho_c + i1wx * u1 + i1wy * u2
        # The three-case thresholding of the L1 data term in one expression:
        # d = -clip(rho / |grad|^2, -l_t, l_t) * grad I1w.
        step = -tf.clip_by_value(rho / tf.maximum(grad, _TINY_GRAD), -l_t, l_t)
        v1 = u1 + step * i1wx
        v2 = u2 + step * i1wy
        u1 = v1 + theta * _divergence(p11, p12, k.div_x, k.div_y)
        u2 = v2 + theta * _divergence(p21, p22, k.div_x, k.div_y)
        u1x, u1y = _forward_grad(u1, k.fwd_x, k.fwd_y)
        u2x, u2y = _forward_grad(u2, k.fwd_x, k.fwd_y)
        # epsilon keeps the square root differentiable where the flow is constant
        # (TVNet supplementary eq. 1-2).
        ng1 = 1.0 + taut * tf.sqrt(u1x * u1x + u1y * u1y + epsilon)
        ng2 = 1.0 + taut * tf.sqrt(u2x * u2x + u2y * u2y + epsilon)
        p11 = (p11 + taut * u1x) / ng1
        p12 = (p12 + taut * u1y) / ng1
        p21 = (p21 + taut * u2x) / ng2
        p22 = (p22 + taut * u2y) / ng2
        return i + 1, u1, u2, p11, p12, p21, p22, i1wx, i1wy, grad, rho_c

    def warp(w, u1, u2, p11, p12, p21, p22):
        warped = _WARPS[interpolation](i1_stack, tf.stack([u1, u2], axis=-1), border=border)
        i1w, i1wx, i1wy = warped[..., 0], warped[..., 1], warped[..., 2]
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
        out = tf.while_loop(
            lambda i, *_: i < iterations,
            iteration,
            (tf.constant(0), u1, u2, p11, p12, p21, p22, i1wx, i1wy, grad, rho_c),
            maximum_iterations=iterations,
        )
        return (w + 1,) + tuple(out[1:7])

    out = tf.while_loop(
        lambda w, *_: w < warps,
        warp,
        (tf.constant(0), u1, u2, zeros, zeros, zeros, zeros),
        maximum_iterations=warps,
    )
    return out[1], out[2]


def _static_hw(x):
    h, w = x.shape[1], x.shape[2]
    return (int(h), int(w)) if h is not None and w is not None else None


def tvl1_grey(frames, k: _Kernels, *, tau, lbda, theta, epsilon, zfactor, max_scales, warps,
              iterations, sigma, interpolation="bilinear", border="replicate", antialias=False):
    """Flow between consecutive grey frames: (N, T, H, W) -> (N, T-1, H, W, 2)."""
    dt = frames.dtype
    shape = tf.shape(frames)
    nb, nt = shape[0], shape[1]
    static = _static_hw(frames[:, 0])
    g = tf.reshape(frames, tf.concat([[-1], shape[2:]], 0))
    g = _gaussian_blur(g, sigma)
    zsigma = _ZOOM_SIGMA_FACTOR * math.sqrt(1.0 / (zfactor * zfactor) - 1.0)

    if static is not None:
        n_scales = num_scales(*static, zfactor, max_scales)
        sizes = level_sizes(*static, zfactor, n_scales)
    else:
        # Unknown H, W at trace time (e.g. a SavedModel with dynamic frames): build every level
        # and switch the ones beyond the image's own depth off with tf.cond.
        hw = tf.cast(tf.shape(g)[1:3], tf.float32)
        n_float = 1.0 + tf.math.log(tf.norm(hw) / _COARSEST_DIAGONAL) / math.log(1.0 / zfactor)
        n_scales = tf.clip_by_value(tf.cast(tf.floor(n_float), tf.int32), 1, max_scales)
        sizes = [tf.shape(g)[1:3]]
        for _ in range(1, max_scales):
            prev = tf.cast(sizes[-1], tf.float32)
            sizes.append(tf.maximum(1, tf.cast(prev * zfactor + 0.5, tf.int32)))

    pyramid = [g]
    for s in range(1, len(sizes)):
        blurred = _gaussian_blur(pyramid[-1], zsigma) if antialias else pyramid[-1]
        pyramid.append(_resize(blurred[..., None], sizes[s])[..., 0])

    def pair_split(level):
        lvl = tf.reshape(level, tf.concat([[nb, nt], tf.shape(level)[1:]], 0))
        i0 = tf.reshape(lvl[:, :-1], tf.concat([[-1], tf.shape(level)[1:]], 0))
        i1 = tf.reshape(lvl[:, 1:], tf.concat([[-1], tf.shape(level)[1:]], 0))
        return i0, i1

    params = dict(tau=tau, lbda=lbda, theta=theta, epsilon=epsilon, warps=warps,
                  iterations=iterations, interpolation=interpolation, border=border)

    def initial_flow(i0):
        zeros = tf.zeros_like(i0)
        if k.init_flow is None:
            return zeros, zeros
        f = _resize(tf.cast(k.init_flow, dt)[None], tf.shape(i0)[1:3])[0]
        return zeros + f[..., 0], zeros + f[..., 1]

    u1 = u2 = None
    for s in reversed(range(len(sizes))):
        i0, i1 = pair_split(pyramid[s])
        if u1 is None:
            init = initial_flow(i0)
        else:
            up = _resize(tf.stack([u1, u2], -1), tf.shape(i0)[1:3]) / zfactor
            init = (up[..., 0], up[..., 1])
        if static is not None:
            u1, u2 = _solve_level(i0, i1, *init, k, **params)
        else:
            coarsest = tf.equal(s, n_scales - 1)
            init = tf.cond(coarsest, lambda i0=i0: initial_flow(i0), lambda init=init: init)
            u1, u2 = tf.cond(
                s < n_scales,
                lambda i0=i0, i1=i1, init=init: _solve_level(i0, i1, *init, k, **params),
                lambda init=init: (tf.zeros_like(init[0]), tf.zeros_like(init[1])),
            )
    flow = tf.stack([u1, u2], axis=-1)
    return tf.reshape(flow, tf.concat([[nb, nt - 1], shape[2:], [2]], 0))


# ---------------------------------------------------------------------------------------------
# Keras layers.


def _check_frames_static(x, who: str):
    shape = x.shape
    if shape.rank is not None and shape.rank != 5:
        raise FlowInputError(
            f"{who}: got a rank-{shape.rank} tensor of shape {tuple(shape)}; expected rank 5, "
            "(batch, frames, height, width, 3) RGB in [0, 255]"
        )
    if shape.rank == 5:
        if shape[-1] is not None and shape[-1] != 3:
            raise FlowInputError(
                f"{who}: got {shape[-1]} channels (shape {tuple(shape)}); expected 3 (RGB)"
            )
        if shape[1] is not None and shape[1] < 2:
            raise FlowInputError(
                f"{who}: got {shape[1]} frame(s) (shape {tuple(shape)}); expected at least 2 "
                "consecutive frames"
            )


def _check_finite(x, who: str):
    """Raises FlowInputError on NaN/Inf eagerly; in a graph, a CheckNumerics op fails the call.

    XLA drops CheckNumerics, so a model compiled as a whole (not the layer's own
    `jit_compile`) passes non-finite frames through; they come out as NaN flow.
    """
    if not x.dtype.is_floating:
        return x
    message = (f"{who}: the frames contain NaN or Inf; expected finite RGB values in "
               "[0, 255]")
    if tf.executing_eagerly():
        bad = int(tf.size(x)) - int(tf.math.count_nonzero(tf.math.is_finite(x)))
        if bad:
            raise FlowInputError(message.replace("NaN or Inf", f"{bad} non-finite value(s)"))
        return x
    return tf.debugging.check_numerics(x, message)


@keras.saving.register_keras_serializable(package="tfzoo")
class TVL1(keras.layers.Layer):
    """Dual TV-L1 optical flow between consecutive frames, as a Keras layer.

    Zach, Pock, Bischof, "A Duality Based Approach for Realtime TV-L1 Optical Flow", DAGM 2007;
    multi-scale scheme of Sanchez et al., IPOL 2013; the unrolled form of Fan et al., "End-to-End
    Learning of Motion Representation for Video Understanding" (TVNet), CVPR 2018.

    Input `(B, T, H, W, 3)` RGB in [0, 255]; output `(B, T-1, H, W, 2)`, the flow from frame t to
    frame t+1 in pixels (u horizontal, v vertical): frame[t](x) ~ frame[t+1](x + flow[t](x)).
    The frames are converted to grey, smoothed (Gaussian, `sigma`), and solved coarse-to-fine on
    a pyramid (`zfactor`, depth from the image size, at most `max_scales`; `antialias` blurs each
    level before downsampling, as the IPOL reference does); each level runs `warps` warpings of
    the second frame (`interpolation` bicubic or bilinear; outside the image `border` replicates
    the edge or reads zeros) with `iterations` primal-dual steps each (time step `tau`, data
    weight `lbda`, coupling `theta`; `epsilon` smooths |grad u|).
    `TVL1(**OPENCV)` takes OpenCV's DualTVL1 choices (no presmoothing, no antialiasing, zero
    border); with the same tau, lambda, theta, depth, warps and iterations it reproduces
    OpenCV's flow to a few percent of the flow magnitude (docs/flow.md).
    Runs under XLA (`tf.function(jit_compile=True)`) and on any batch and frame size;
    `jit_compile=True` compiles the solver with XLA inside the layer (several times faster on
    CPU).

    Example:
    >>> import numpy as np
    >>> from tfzoo.flow import TVL1
    >>> rng = np.random.default_rng(0)
    >>> img = rng.uniform(0, 255, (32, 40, 3)).astype("float32")
    >>> frames = np.stack([img, np.roll(img, 1, axis=1)])[None]   # moves 1 px to the right
    >>> flow = TVL1(iterations=20)(frames)
    >>> tuple(flow.shape)
    (1, 1, 32, 40, 2)
    >>> bool(abs(float(np.median(flow[0, 0, 8:-8, 8:-8, 0])) - 1.0) < 0.1)
    True
    """

    _trainable_kernels = False

    def __init__(
        self,
        tau: float = 0.25,
        lbda: float = 0.15,
        theta: float = 0.3,
        epsilon: float = 1e-6,
        warps: int = 5,
        zfactor: float = 0.5,
        max_scales: int = 5,
        iterations: int = 50,
        sigma: float = 0.8,
        interpolation: str = "bicubic",
        border: str = "replicate",
        antialias: bool = False,
        jit_compile: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("trainable", self._trainable_kernels)
        super().__init__(**kwargs)
        _check_params(tau=tau, lbda=lbda, theta=theta, epsilon=epsilon, warps=warps,
                      zfactor=zfactor, max_scales=max_scales, iterations=iterations, sigma=sigma)
        self.tau = float(tau)
        self.lbda = float(lbda)
        self.theta = float(theta)
        self.epsilon = float(epsilon)
        self.warps = int(warps)
        self.zfactor = float(zfactor)
        self.max_scales = int(max_scales)
        self.iterations = int(iterations)
        self.sigma = float(sigma)
        check_choice("interpolation", interpolation, sorted(_WARPS))
        check_choice("border", border, _BORDERS)
        self.interpolation = interpolation
        self.border = border
        self.antialias = bool(antialias)
        self.jit_compile = bool(jit_compile)
        self._compiled = None

    def _kernels(self) -> _Kernels:
        return _Kernels.fixed()

    def _solve(self, grey):
        return tvl1_grey(
            grey, self._kernels(), tau=self.tau, lbda=self.lbda, theta=self.theta,
            epsilon=self.epsilon, zfactor=self.zfactor, max_scales=self.max_scales,
            warps=self.warps, iterations=self.iterations, sigma=self.sigma,
            interpolation=self.interpolation, border=self.border, antialias=self.antialias,
        )

    def call(self, frames):
        who = f"{type(self).__name__} {self.name!r}"
        _check_frames_static(frames, who)
        frames = _check_finite(tf.cast(frames, self.compute_dtype), who)
        if tf.executing_eagerly() and frames.shape[1] < 2:
            raise FlowInputError(f"{who}: got {frames.shape[1]} frame(s); expected at least 2")
        grey = to_grey(frames)
        if self.jit_compile:
            if self._compiled is None:
                self._compiled = tf.function(self._solve, jit_compile=True, reduce_retracing=True)
            return self._compiled(grey)
        return self._solve(grey)

    def compute_output_shape(self, input_shape):
        b, t, h, w = input_shape[:4]
        return (b, None if t is None else t - 1, h, w, 2)

    def get_config(self):
        return {
            **super().get_config(),
            "tau": self.tau, "lbda": self.lbda, "theta": self.theta, "epsilon": self.epsilon,
            "warps": self.warps, "zfactor": self.zfactor, "max_scales": self.max_scales,
            "iterations": self.iterations, "sigma": self.sigma, "interpolation": self.interpolation,
            "border": self.border, "antialias": self.antialias, "jit_compile": self.jit_compile,
        }


@keras.saving.register_keras_serializable(package="tfzoo")
class TVNet(TVL1):
    """TVNet: TV-L1 unrolled with trainable difference kernels and initial flow.

    Fan, Huang, Gan, Ermon, Gong, Huang, "End-to-End Learning of Motion Representation for Video
    Understanding", CVPR 2018 (sec. 3.2-3.3). At initialisation it computes exactly `TVL1`; the
    image-gradient (3 taps), flow-gradient (2 taps) and divergence (2 taps) kernels of each
    direction and a coarse initial flow grid (`init_flow_grid`, resized to the coarsest level)
    are weights, so the layer can sit in front of a motion stream and be trained with it
    (RGB in, class scores out), or alone with `unsupervised_loss` (photometric L1 +
    smoothness; CLI: `python -m tfzoo.flow.train`). Defaults follow the paper's TVNet-50 (one
    scale, one warp, 50 iterations).

    Example:
    >>> import numpy as np, keras
    >>> from tfzoo.flow import TVNet
    >>> frames = keras.Input((2, 24, 32, 3))
    >>> flow = TVNet(iterations=10)(frames)                      # (None, 1, 24, 32, 2)
    >>> scores = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling3D()(flow))
    >>> model = keras.Model(frames, scores)
    >>> len(model.trainable_weights)   # 3 kernels + initial flow + Dense kernel and bias
    6
    """

    _trainable_kernels = True

    def __init__(
        self,
        tau: float = 0.25,
        lbda: float = 0.15,
        theta: float = 0.3,
        epsilon: float = 1e-6,
        warps: int = 1,
        zfactor: float = 0.5,
        max_scales: int = 1,
        iterations: int = 50,
        sigma: float = 0.8,
        interpolation: str = "bicubic",
        border: str = "replicate",
        antialias: bool = False,
        jit_compile: bool = False,
        init_flow_grid: tuple[int, int] = (4, 4),
        **kwargs,
    ):
        super().__init__(tau=tau, lbda=lbda, theta=theta, epsilon=epsilon, warps=warps,
                         zfactor=zfactor, max_scales=max_scales, iterations=iterations,
                         sigma=sigma, interpolation=interpolation, border=border,
                         antialias=antialias, jit_compile=jit_compile, **kwargs)
        gh, gw = (int(v) for v in init_flow_grid)
        if gh < 1 or gw < 1:
            raise TfzooError(f"init_flow_grid must be two positive ints, got {init_flow_grid!r}")
        self.init_flow_grid = (gh, gw)

    def build(self, input_shape):
        const = keras.initializers.Constant

        def taps(name, values):
            return self.add_weight(name=name, shape=(2, len(values)),
                                   initializer=const(np.array([values, values])))

        self.image_grad = taps("image_grad", IMAGE_GRAD_TAPS)  # rows: x, y
        self.forward_grad = taps("forward_grad", FORWARD_GRAD_TAPS)
        self.divergence = taps("divergence", DIVERGENCE_TAPS)
        self.init_flow = self.add_weight(name="init_flow", shape=(*self.init_flow_grid, 2),
                                         initializer="zeros")

    def _kernels(self) -> _Kernels:
        dt = self.compute_dtype

        def rows(v):
            v = tf.cast(v, dt)
            n = v.shape[1]
            return tuple(v[0, j] for j in range(n)), tuple(v[1, j] for j in range(n))

        ix, iy = rows(self.image_grad)
        fx, fy = rows(self.forward_grad)
        dx, dy = rows(self.divergence)
        return _Kernels(ix, iy, fx, fy, dx, dy, tf.cast(self.init_flow, dt))

    def unsupervised_loss(self, frames, flow=None, smoothness: float = 1.0):
        """Photometric L1 of the warped next frame plus L1 smoothness of the flow.

        Fan et al. 2018 sec. 3.3's unsupervised objective, on grey frames in [0, 255] so that
        the two terms have the scale of TV-L1's energy (lambda * data + TV).
        """
        frames = tf.cast(frames, self.compute_dtype)
        if flow is None:
            flow = self(frames)
        grey = to_grey(frames)
        shape = tf.shape(grey)
        i0 = tf.reshape(grey[:, :-1], [-1, shape[2], shape[3]])
        i1 = tf.reshape(grey[:, 1:], [-1, shape[2], shape[3], 1])
        f = tf.reshape(flow, [-1, shape[2], shape[3], 2])
        warped = bilinear_warp(i1, f)[..., 0]
        photometric = tf.reduce_mean(tf.abs(warped - i0))
        dx = f[:, :, 1:] - f[:, :, :-1]
        dy = f[:, 1:] - f[:, :-1]
        smooth = tf.reduce_mean(tf.abs(dx)) + tf.reduce_mean(tf.abs(dy))
        return self.lbda * photometric + smoothness * smooth

    def get_config(self):
        return {**super().get_config(), "init_flow_grid": list(self.init_flow_grid)}


def _check_params(**p):
    positive = ("tau", "lbda", "theta", "warps", "max_scales", "iterations")
    for name in positive:
        if not p[name] > 0:
            raise TfzooError(f"{name} must be > 0, got {p[name]!r}")
    if not 0.0 < p["zfactor"] < 1.0:
        raise TfzooError(f"zfactor must be in (0, 1), got {p['zfactor']!r}")
    if p["epsilon"] < 0 or p["sigma"] < 0:
        raise TfzooError(f"epsilon and sigma must be >= 0, got {p['epsilon']!r}, {p['sigma']!r}")


# ---------------------------------------------------------------------------------------------
# numpy convenience.

_FN_CACHE: dict = {}


def _as_frame(img, name: str) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise FlowInputError(
            f"{name}: got shape {a.shape}; expected (H, W, 3) RGB or (H, W) grey in [0, 255]"
        )
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise FlowInputError(f"{name}: got dtype {a.dtype}; expected a float or integer type")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise FlowInputError(
            f"{name}: contains {int((~np.isfinite(a)).sum())} non-finite value(s); expected "
            "finite values in [0, 255]"
        )
    return a


def tvl1(img0, img1, **params) -> np.ndarray:
    """Flow from `img0` to `img1` (numpy (H, W, 3) RGB or (H, W) grey, [0, 255]) -> (H, W, 2).

    `params` are `TVL1`'s constructor arguments; the solver is XLA-compiled and cached per
    image size and parameters.
    """
    a = _as_frame(img0, "img0")
    b = _as_frame(img1, "img1")
    if a.shape != b.shape:
        raise FlowInputError(
            f"img0 and img1 must have the same size; got {a.shape[:2]} and {b.shape[:2]}"
        )
    return tvl1_video(np.stack([a, b]), **params)[0]


def tvl1_video(frames, batch: int = 2, **params) -> np.ndarray:
    """Flow between consecutive frames of a numpy (T, H, W, 3) clip -> (T-1, H, W, 2)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise FlowInputError(
            f"frames: got shape {frames.shape}; expected (T >= 2, H, W, 3) RGB in [0, 255]"
        )
    fn = _compiled_solver(tuple(sorted(params.items())))
    pairs = frames.shape[0] - 1
    batch = max(1, min(int(batch), pairs))
    out = []
    for s in range(0, pairs, batch):
        chunk = frames[s : s + batch + 1].astype(np.float32)
        n = chunk.shape[0] - 1
        # A short last chunk is padded to the full length: one compiled shape per clip size.
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        out.append(fn(tf.constant(chunk[None]))[0, :n].numpy())
    return np.concatenate(out, axis=0)


def _compiled_solver(key):
    if key not in _FN_CACHE:
        layer = TVL1(**dict(key))
        grey_fn = tf.function(
            lambda frames: layer._solve(to_grey(frames)), jit_compile=True, reduce_retracing=True
        )

        def run(frames):
            _check_finite(frames, "tvl1")
            return grey_fn(frames)

        _FN_CACHE[key] = run
    return _FN_CACHE[key]
