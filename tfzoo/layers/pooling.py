"""Pooling over the space and time axes of (B, T, H, W, C) tensors."""

from __future__ import annotations

import keras
from keras import ops

from tfzoo.errors import TfzooError
from tfzoo.utils import check_choice

POOL_MODES = ("max", "avg")


def _check_mode(mode: str) -> str:
    return check_choice("pooling mode", mode, POOL_MODES)


@keras.saving.register_keras_serializable(package="tfzoo")
class GlobalSpatialPooling(keras.layers.Layer):
    """(B, T, H, W, C) -> (B, T, C), averaging (or max) over H and W.

    Example:
    >>> import numpy as np
    >>> x = np.arange(8, dtype="float32").reshape(1, 2, 2, 2, 1)
    >>> GlobalSpatialPooling()(x).numpy().ravel().tolist()
    [1.5, 5.5]
    """

    def __init__(self, mode: str = "avg", **kwargs):
        super().__init__(**kwargs)
        self.mode = _check_mode(mode)

    def call(self, x):
        return (ops.mean if self.mode == "avg" else ops.max)(x, axis=(2, 3))

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="tfzoo")
class GlobalTemporalPooling(keras.layers.Layer):
    """(B, T, ...) -> (B, ...), max (thesis eq. 7.7) or average over time.

    Example:
    >>> import numpy as np
    >>> GlobalTemporalPooling("max")(np.array([[[1.0], [3.0], [2.0]]], "float32")).numpy().tolist()
    [[3.0]]
    """

    def __init__(self, mode: str = "max", **kwargs):
        super().__init__(**kwargs)
        self.mode = _check_mode(mode)

    def call(self, x):
        return (ops.mean if self.mode == "avg" else ops.max)(x, axis=1)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _triple(value, what: str, *, all_time: bool = False) -> tuple:
    if isinstance(value, int):
        value = (value, value, value)
    value = tuple(None if v is None and all_time and i == 0 else int(v)
                  for i, v in enumerate(value))
    if len(value) != 3 or min(v for v in value if v is not None) < 1:
        raise TfzooError(f"{what} must be a positive int or 3 positive ints (T, H, W), got {value}")
    return value


_PADDINGS = ("valid", "same")


@keras.saving.register_keras_serializable(package="tfzoo")
class SpatioTemporalMaxPooling(keras.layers.Layer):
    """3-D max pooling over (T, H, W) with its own padding in time and in space.

    Thesis §3.3.3, Fig. 3.2(b) (Feichtenhofer, Pinz, Zisserman, CVPR 2016): max pooling inside
    a T' x H' x W' cube of the stacked per-chunk feature maps, each channel separately. It
    replaces pool5 of the two-stream fusion towers. Max pooling over a box is separable, so
    this is a temporal pooling followed by a spatial one; that is what lets time use "same"
    padding (any number of chunks, T = 5 -> 3 with window 3, stride 2) while space keeps the
    towers' "valid" pool5 (13x13 -> 6x6 for VGG-M, so fc6 still sees its 6x6 input).
    A temporal window of 1 is plain per-chunk 2-D pooling (Fig. 3.2(a)); a temporal window of
    None pools all chunks into one (§3.3.4: the fusion net pools its T = 5 chunks).

    Example:
    >>> import numpy as np
    >>> x = np.arange(5, dtype="float32").reshape(1, 5, 1, 1, 1)
    >>> layer = SpatioTemporalMaxPooling((3, 1, 1), (2, 1, 1))
    >>> layer(x).numpy().ravel().tolist()
    [1.0, 3.0, 4.0]
    """

    def __init__(
        self,
        pool_size=(3, 3, 3),
        strides=(2, 2, 2),
        temporal_padding: str = "same",
        spatial_padding: str = "valid",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pool_size = _triple(pool_size, "pool_size", all_time=True)
        self.strides = _triple(strides, "strides")
        for what, p in (("temporal_padding", temporal_padding), ("spatial_padding", spatial_padding)):
            check_choice(what, p, _PADDINGS)
        self.temporal_padding = temporal_padding
        self.spatial_padding = spatial_padding

    def call(self, x):
        kt, kh, kw = self.pool_size
        st, sh, sw = self.strides
        if kt is None:
            x = ops.max(x, axis=1, keepdims=True)
        elif kt > 1 or st > 1:
            x = ops.max_pool(x, (kt, 1, 1), (st, 1, 1), padding=self.temporal_padding)
        if kh > 1 or kw > 1 or sh > 1 or sw > 1:
            x = ops.max_pool(x, (1, kh, kw), (1, sh, sw), padding=self.spatial_padding)
        return x

    def compute_output_shape(self, input_shape):
        b, *dims, c = input_shape
        pads = (self.temporal_padding, self.spatial_padding, self.spatial_padding)
        out = []
        for n, k, s, pad in zip(dims, self.pool_size, self.strides, pads):
            if k is None:
                out.append(1)
            elif n is None:
                out.append(None)
            elif pad == "same":
                out.append(-(-n // s))
            else:
                out.append((n - k) // s + 1)
        return (b, *out, c)

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "temporal_padding": self.temporal_padding,
            "spatial_padding": self.spatial_padding,
        }
