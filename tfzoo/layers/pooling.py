"""Pooling over the space and time axes of (B, T, H, W, C) tensors."""

from __future__ import annotations

import keras
from keras import ops

POOL_MODES = ("max", "avg")


def _check_mode(mode: str) -> str:
    if mode not in POOL_MODES:
        raise ValueError(f"pooling mode must be one of {POOL_MODES}, got {mode!r}")
    return mode


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
