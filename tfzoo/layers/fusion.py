"""Fusing two streams: spatial fusion functions (thesis eq. 3.1-3.5), 3-D conv fusion (eq. 3.6)
and late score fusion.

Every fusion layer is called on a pair `[x_a, x_b]` of (B, T, H, W, C) maps: `x_a` is the
stream fused *into* (appearance), `x_b` the stream fused *from* (motion). Feichtenhofer, Pinz,
Zisserman, "Convolutional Two-Stream Network Fusion for Video Action Recognition", CVPR 2016;
thesis chapter 3.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfzoo.errors import InputSpecError, TfzooError
from tfzoo.layers.pooling import _triple
from tfzoo.utils import check_choice

SPATIAL_FUSIONS = ("sum", "max", "concat")
FUSION_METHODS = ("sum", "max", "concat", "conv", "bilinear")
CONV_FUSION_INITS = ("identity", "random")
LATE_FUSIONS = ("logits", "softmax")


def _pair(inputs, layer: str):
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
        raise InputSpecError(f"{layer} takes a pair [x_a, x_b] of feature maps, got {type(inputs).__name__}")
    return inputs


def gaussian_kernel(size=(3, 3, 3), sigma: float = 1.0) -> np.ndarray:
    """A (T, H, W) Gaussian centred on the kernel, normalised to sum to one."""
    size = _triple(size, "size")
    if sigma <= 0:
        raise TfzooError(f"sigma must be positive, got {sigma}")
    axes = [np.arange(n) - (n - 1) / 2.0 for n in size]
    t, h, w = np.meshgrid(*axes, indexing="ij")
    g = np.exp(-(t**2 + h**2 + w**2) / (2.0 * sigma**2))
    return g / g.sum()


def conv_fusion_kernel(
    kernel_size=(1, 1, 1),
    channels_a: int = 1,
    channels_b: int = 1,
    filters: int | None = None,
    weights=(1.0, 1.0),
    sigma: float = 1.0,
) -> np.ndarray:
    """The paper's conv-fusion initialisation, shape (T, H, W, C_a + C_b, filters).

    `[w_a I; w_b I]` (two stacked identities, eq. 3.4, so (1, 1) is sum fusion) times a
    normalised Gaussian over the T x H x W taps (thesis §3.3.5: 3x3x3, sigma 1, with the
    motion identity 3x larger than the appearance one: weights (0.25, 0.75)). When the channel
    counts differ the identities are rectangular (channel i feeds output i).
    """
    filters = channels_a if filters is None else filters
    w_a, w_b = (float(w) for w in weights)
    eye = np.concatenate([w_a * np.eye(channels_a, filters), w_b * np.eye(channels_b, filters)], 0)
    g = gaussian_kernel(kernel_size, sigma)
    return (g[..., None, None] * eye[None, None, None]).astype("float32")


@keras.saving.register_keras_serializable(package="tfzoo")
class SpatialFusion(keras.layers.Layer):
    """Parameter-free spatial fusion of two streams at the same pixels (thesis §3.3.1).

    - "sum" (eq. 3.1): y = x_a + x_b; needs C_a == C_b.
    - "max" (eq. 3.2): y = max(x_a, x_b); needs C_a == C_b.
    - "concat" (eq. 3.3): y = [x_a, x_b] along channels (C_a + C_b). The paper interleaves the
      channels; stacking the blocks differs only by a permutation of the next layer's inputs.

    Example:
    >>> import numpy as np
    >>> a, b = np.ones((1, 1, 2, 2, 3), "float32"), np.full((1, 1, 2, 2, 3), 2.0, "float32")
    >>> float(SpatialFusion("sum")([a, b])[0, 0, 0, 0, 0]), SpatialFusion("concat")([a, b]).shape
    (3.0, TensorShape([1, 1, 2, 2, 6]))
    """

    def __init__(self, method: str = "sum", **kwargs):
        super().__init__(**kwargs)
        check_choice("spatial fusion", method, SPATIAL_FUSIONS,
                     hint="(use ConvFusion for 'conv' and BilinearFusion for 'bilinear')")
        self.method = method

    def build(self, input_shape):
        sa, sb = _pair(input_shape, type(self).__name__)
        if self.method != "concat" and sa[-1] is not None and sb[-1] is not None and sa[-1] != sb[-1]:
            raise InputSpecError(
                f"{self.name}: {self.method} fusion needs equal channel counts, got {sa[-1]} "
                f"(x_a) and {sb[-1]} (x_b); use 'concat' or 'conv' fusion instead"
            )

    def call(self, inputs):
        a, b = _pair(inputs, type(self).__name__)
        if self.method == "sum":
            return a + b
        if self.method == "max":
            return ops.maximum(a, b)
        return ops.concatenate([a, b], axis=-1)

    def compute_output_shape(self, input_shape):
        sa, sb = input_shape
        if self.method != "concat":
            return tuple(sa)
        c = None if sa[-1] is None or sb[-1] is None else sa[-1] + sb[-1]
        return (*sa[:-1], c)

    def get_config(self):
        return {**super().get_config(), "method": self.method}


@keras.saving.register_keras_serializable(package="tfzoo")
class ConvFusion(keras.layers.Layer):
    """Conv fusion (thesis eq. 3.4) and 3-D conv fusion (eq. 3.6, §3.3.4).

    Stacks [x_a, x_b] along channels and convolves with a T x H x W x (C_a + C_b) x filters
    kernel ("same" padding, stride 1). `kernel_size=(1, 1, 1)` is the 2-D 1x1 conv fusion of
    Table 3.1; the proposed architecture uses (3, 3, 3) with 1024 -> 512 channels.

    Initialisation ("identity", the paper's): `conv_fusion_kernel`, i.e. `[w_a I; w_b I]`
    times a normalised Gaussian (sigma) over the taps, zero bias. With (1, 1, 1) and weights
    (1, 1) the layer equals sum fusion; with (3, 3, 3) it is a Gaussian-smoothed weighted sum.
    The paper reports identity init trains 8x faster than "random" for the same accuracy.

    Args:
      filters: output channels; None = C_a, so the fused-into tower continues unchanged.
      kernel_size: (T, H, W) extent.
      init: "identity" or "random" (Glorot uniform).
      init_weights: (w_a, w_b), appearance and motion identity scales; (0.25, 0.75) in §3.3.5
        because motion activations at relu5 are ~3x smaller than appearance ones.
      sigma: Gaussian width over the taps.

    Example:
    >>> import numpy as np
    >>> a, b = np.ones((1, 1, 2, 2, 4), "float32"), np.full((1, 1, 2, 2, 4), 2.0, "float32")
    >>> float(ConvFusion(init_weights=(1.0, 1.0))([a, b])[0, 0, 0, 0, 0])
    3.0
    """

    def __init__(
        self,
        filters: int | None = None,
        kernel_size=(1, 1, 1),
        init: str = "identity",
        init_weights=(1.0, 1.0),
        sigma: float = 1.0,
        use_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("conv fusion init", init, CONV_FUSION_INITS)
        if len(tuple(init_weights)) != 2:
            raise TfzooError(f"init_weights must be (w_appearance, w_motion), got {init_weights!r}")
        if filters is not None and int(filters) < 1:
            raise TfzooError(f"filters must be positive or None, got {filters}")
        self.filters = None if filters is None else int(filters)
        self.kernel_size = _triple(kernel_size, "kernel_size")
        self.init = init
        self.init_weights = tuple(float(w) for w in init_weights)
        self.sigma = float(sigma)
        self.use_bias = use_bias

    def build(self, input_shape):
        sa, sb = _pair(input_shape, type(self).__name__)
        ca, cb = sa[-1], sb[-1]
        if ca is None or cb is None:
            raise InputSpecError(f"{self.name}: channel counts must be known, got {ca} and {cb}")
        out = self.filters or ca
        shape = (*self.kernel_size, ca + cb, out)
        if self.init == "identity":
            value = conv_fusion_kernel(self.kernel_size, ca, cb, out, self.init_weights, self.sigma)

            def initializer(shape, dtype=None):
                return ops.convert_to_tensor(value, dtype=dtype or "float32")
        else:
            initializer = keras.initializers.GlorotUniform()
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=initializer)
        self.bias = (
            self.add_weight(name="bias", shape=(out,), initializer="zeros") if self.use_bias else None
        )

    def call(self, inputs):
        a, b = _pair(inputs, type(self).__name__)
        x = ops.concatenate([a, b], axis=-1)
        y = ops.conv(x, ops.cast(self.kernel, x.dtype), strides=1, padding="same")
        if self.bias is not None:
            y = y + ops.cast(self.bias, y.dtype)
        return y

    def compute_output_shape(self, input_shape):
        sa, _ = input_shape
        return (*sa[:-1], self.filters or sa[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "init": self.init,
            "init_weights": list(self.init_weights),
            "sigma": self.sigma,
            "use_bias": self.use_bias,
        }


@keras.saving.register_keras_serializable(package="tfzoo")
class BilinearFusion(keras.layers.Layer):
    """Bilinear fusion (thesis eq. 3.5): outer products x_a x_b^T summed over locations.

    (B, T, H, W, C_a), (B, T, H, W, C_b) -> (B, T, C_a * C_b), one descriptor per chunk; space
    is marginalised, so it can only be the last layer before a (linear) classifier. With
    `normalize` the descriptor gets the signed square root and L2 normalisation of Lin et
    al. 2015, which the paper applies before its linear SVM.

    Example:
    >>> import numpy as np
    >>> a = np.ones((1, 1, 2, 2, 2), "float32"); b = np.full((1, 1, 2, 2, 3), 2.0, "float32")
    >>> BilinearFusion(normalize=False)([a, b]).numpy().ravel().tolist()
    [8.0, 8.0, 8.0, 8.0, 8.0, 8.0]
    """

    def __init__(self, normalize: bool = True, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.normalize = normalize
        self.epsilon = epsilon

    def call(self, inputs):
        a, b = _pair(inputs, type(self).__name__)
        y = ops.einsum("bthwi,bthwj->btij", a, b)
        shape = ops.shape(y)
        y = ops.reshape(y, (shape[0], shape[1], a.shape[-1] * b.shape[-1]))
        if self.normalize:
            y = ops.sign(y) * ops.sqrt(ops.abs(y) + self.epsilon)
            y = y / ops.sqrt(ops.sum(ops.square(y), axis=-1, keepdims=True) + self.epsilon)
        return y

    def compute_output_shape(self, input_shape):
        sa, sb = input_shape
        c = None if sa[-1] is None or sb[-1] is None else sa[-1] * sb[-1]
        return (sa[0], sa[1], c)

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="tfzoo")
class AlignSpatial(keras.layers.Layer):
    """Zero-pads (or crops) x at the bottom/right to the height and width of a reference map.

    Thesis §3.3.5: to fuse VGG-16 relu5_3 (14x14) with VGG-M relu5 (13x13) "we pad the slightly
    smaller output of VGG-M with a row and a column of zeros". Called as `[x, reference]`.

    Example:
    >>> import numpy as np
    >>> x, ref = np.ones((1, 1, 13, 13, 2), "float32"), np.ones((1, 1, 14, 14, 5), "float32")
    >>> AlignSpatial()([x, ref]).shape
    TensorShape([1, 1, 14, 14, 2])
    """

    def call(self, inputs):
        x, ref = _pair(inputs, type(self).__name__)
        h, w = tf.shape(ref)[2], tf.shape(ref)[3]
        x = x[:, :, :h, :w]
        pad_h, pad_w = h - tf.shape(x)[2], w - tf.shape(x)[3]
        return tf.pad(x, [[0, 0], [0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def compute_output_shape(self, input_shape):
        sx, sref = input_shape
        return (sx[0], sx[1], sref[2], sref[3], sx[4])


@keras.saving.register_keras_serializable(package="tfzoo")
class LateFusion(keras.layers.Layer):
    """Late fusion of per-tower class scores (B, K) into one (B, K) logit tensor.

    - "logits": the mean of the towers' pre-softmax scores (thesis §3.4.4: "we average the FC8
      predictions for both towers").
    - "softmax": the two-stream baseline's average of softmax posteriors (Simonyan & Zisserman
      2014; Table 3.1 "Sum, Softmax"), returned as log(mean softmax) so that the output is
      still a logit tensor whose softmax is exactly the averaged posterior.

    `stream_weights` weights the towers (normalised to sum 1), e.g. (1, 3) to weight the motion stream
    3x as on HMDB51 (thesis §5.5.3); None averages uniformly.

    Example:
    >>> import numpy as np
    >>> s = [np.array([[0.0, 2.0]], "float32"), np.array([[2.0, 0.0]], "float32")]
    >>> LateFusion("logits")(s).numpy().tolist()
    [[1.0, 1.0]]
    """

    def __init__(self, mode: str = "logits", stream_weights=None, **kwargs):
        super().__init__(**kwargs)
        check_choice("score fusion", mode, LATE_FUSIONS)
        if stream_weights is not None and (min(stream_weights) < 0 or sum(stream_weights) <= 0):
            raise TfzooError(
                f"stream_weights must be >= 0 with a positive sum, got {stream_weights!r}")
        self.mode = mode
        self.stream_weights = None if stream_weights is None else [float(w) for w in stream_weights]

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise InputSpecError(f"{self.name} takes a non-empty list of score tensors")
        x = ops.stack([ops.cast(t, self.compute_dtype) for t in inputs], axis=0)
        n = len(inputs)
        if self.stream_weights is not None and len(self.stream_weights) != n:
            raise InputSpecError(f"{self.name}: {len(self.stream_weights)} weights for {n} score tensors")
        w = [1.0 / n] * n if self.stream_weights is None else [v / sum(self.stream_weights) for v in self.stream_weights]
        w = ops.reshape(ops.convert_to_tensor(w, x.dtype), (n,) + (1,) * (len(x.shape) - 1))
        if self.mode == "logits":
            return ops.sum(w * x, axis=0)
        # log of the weighted mean of the posteriors, computed stably.
        logp = ops.log_softmax(x, axis=-1) + ops.log(w)
        return ops.logsumexp(logp, axis=0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "stream_weights": self.stream_weights}


def fusion_layer(method: str, *, name: str, **kwargs) -> keras.layers.Layer:
    """The layer for one of FUSION_METHODS; kwargs go to ConvFusion / BilinearFusion."""
    if method in SPATIAL_FUSIONS:
        return SpatialFusion(method, name=name)
    if method == "conv":
        return ConvFusion(name=name, **kwargs)
    if method == "bilinear":
        return BilinearFusion(name=name, **kwargs)
    check_choice("fusion method", method, FUSION_METHODS)
    raise AssertionError(f"fusion method {method!r} is listed in FUSION_METHODS but has no layer")
